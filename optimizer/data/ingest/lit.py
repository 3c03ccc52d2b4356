"""Lit-market buy/sell flow -> ``lit_flow_daily``, from trade prints (``lit-trades``) or daily aggregates (``lit-flow``).

lit-trades: CSV or Parquet with columns ``timestamp``, ``price``, ``size``, optional ``bid``/``ask`` and
``symbol`` (else the symbol is the file name up to the first ``_``: ``AAPL_2024-03.csv`` -> AAPL).

* ``timestamp``: ISO-8601 text (an explicit offset is honoured; a naive time is taken as UTC) or an epoch
  number, whose unit follows its magnitude (>= 1e17 ns, >= 1e14 us, >= 1e11 ms, else s). Times are converted to
  ``Settings.market_tz``; only trades with ``rth_start <= local time < rth_end`` are kept (default 09:30-16:15,
  half-open) and the session date is the local date.
* Each (symbol, day) is classified on its own, trades in time order (file order breaks ties):
  quote rule first (price > mid -> buy, price < mid -> sell; needs bid > 0, ask >= bid), else the tick rule
  against the previous kept trade of the same symbol and day (uptick / zero-uptick -> buy, downtick /
  zero-downtick -> sell). A trade with neither (first trade of the day with no usable quote, or only zero ticks
  since the open) is unclassified volume. ``method`` is quote, tick or quote+tick by which rules classified
  trades that day ("tick" when no trade could be classified).
* Row invariants (rejected, or fatal under strict): price > 0, size > 0, non-empty symbol.
* One file must hold all trades of each (symbol, day) it covers: its daily rows replace the stored ones.

lit-flow: CSV ``date,symbol,lit_buy_volume,lit_sell_volume[,lit_unclassified_volume][,method]`` (method default
"provided"); volumes must be >= 0 and (date, symbol) unique.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputFileError
from optimizer.data.symbols import apply_symbol_map
from optimizer.data.ingest._common import (
    Parsed,
    RowText,
    collect_rejects,
    decode_bytes,
    duplicate_rejects,
    parse_dates,
    parse_numeric,
    read_csv_text,
    rejects_frame,
)

__all__ = ["parse_lit_trades", "parse_lit_flow", "classify_trades", "parse_timestamps"]

_FLOW_COLS = ["date", "symbol", "lit_buy_volume", "lit_sell_volume", "lit_unclassified_volume", "method"]


def parse_timestamps(file: str, values: pd.Series, line_no: np.ndarray) -> pd.Series:
    """Text or epoch numbers -> tz-aware UTC timestamps (see module doc); first bad value -> InputFileError."""
    s = values
    if pd.api.types.is_datetime64_any_dtype(s):
        ts = pd.to_datetime(s)
        ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        return ts.reset_index(drop=True)
    txt = s.astype(str).str.strip()
    num = pd.to_numeric(txt, errors="coerce")
    if len(txt) and num.notna().all():
        mx = float(np.nanmax(np.abs(num.to_numpy(dtype=float)))) if len(num) else 0.0
        unit = "ns" if mx >= 1e17 else "us" if mx >= 1e14 else "ms" if mx >= 1e11 else "s"
        return pd.to_datetime(num.astype("int64"), unit=unit, utc=True).reset_index(drop=True)
    ts = pd.to_datetime(txt, utc=True, format="ISO8601", errors="coerce")
    bad = ts.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise InputFileError(file, int(line_no[i]), f"unparseable timestamp {txt.iat[i]!r} (expected ISO-8601 or epoch)")
    return ts.reset_index(drop=True)


def classify_trades(
    symbol: np.ndarray,
    day: np.ndarray,
    price: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Trade direction (+1 buy, -1 sell, 0 unclassified) and rule used (1 quote, 2 tick, 0 none), per trade.

    Trades must already be in time order within each (symbol, day). Pure numpy/pandas, no per-trade loop.
    """
    price = np.asarray(price, dtype=float)
    bid = np.asarray(bid, dtype=float)
    ask = np.asarray(ask, dtype=float)
    valid_q = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask >= bid)
    mid = (bid + ask) / 2.0
    qdir = np.where(valid_q, np.sign(price - np.where(valid_q, mid, 0.0)), 0.0)
    group = pd.Series(pd.factorize(pd.MultiIndex.from_arrays([symbol, day]))[0])
    prev = pd.Series(price).groupby(group).shift(1)
    tick = np.sign(price - prev.to_numpy())
    tick = pd.Series(np.where(tick == 0, np.nan, tick))
    tdir = tick.groupby(group).ffill().fillna(0.0).to_numpy()
    direction = np.where(qdir != 0, qdir, tdir).astype(np.int8)
    rule = np.where(qdir != 0, 1, np.where(tdir != 0, 2, 0)).astype(np.int8)
    return direction, rule


def _read_trades(file: str, data: bytes) -> tuple[pd.DataFrame, list[str] | None]:
    if data[:4] == b"PAR1":
        try:
            df = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises several types
            raise InputFileError(file, None, f"unreadable Parquet ({exc})") from None
        df.columns = [str(c).strip().lower() for c in df.columns]
        for c in ("timestamp", "price", "size"):
            if c not in df.columns:
                raise InputFileError(file, None, f"missing column {c!r} (columns: {','.join(df.columns)})")
        keep = [c for c in ("timestamp", "symbol", "price", "size", "bid", "ask") if c in df.columns]
        df = df[keep].copy()
        if "symbol" in df.columns:
            df["symbol"] = df["symbol"].astype(str).fillna("")
        df["_line"] = np.arange(1, len(df) + 1)
        return df.reset_index(drop=True), None
    text = decode_bytes(file, data)
    df, lines = read_csv_text(
        file,
        text,
        required=("timestamp", "price", "size"),
        optional=("symbol", "bid", "ask"),
        aliases={"ts": "timestamp", "time": "timestamp", "datetime": "timestamp", "ticker": "symbol"},
    )
    return df, lines


def parse_lit_trades(file: str, data: bytes, symmap: pd.DataFrame, settings) -> Parsed:
    df, lines = _read_trades(file, data)
    line_no = df["_line"].to_numpy()
    if "symbol" in df.columns:
        sym = df["symbol"].astype(str).to_numpy()
    else:
        stem = Path(file).name.split(".")[0]
        guess = stem.split("_")[0].strip()
        if "_" not in stem or not guess:
            raise InputFileError(file, 1, "missing column 'symbol' and the file name is not TICKER_*.csv")
        sym = np.full(len(df), guess, dtype=object)
    ts = parse_timestamps(file, df["timestamp"], line_no)
    price = parse_numeric(file, df, "price")
    size = parse_numeric(file, df, "size")
    bid = parse_numeric(file, df, "bid", required=False) if "bid" in df.columns else np.full(len(df), np.nan)
    ask = parse_numeric(file, df, "ask", required=False) if "ask" in df.columns else np.full(len(df), np.nan)
    local = ts.dt.tz_convert(settings.market_tz)
    day = local.dt.tz_localize(None).dt.normalize().astype("datetime64[s]")
    frame = pd.DataFrame({"date": day, "symbol": sym, "ts": ts, "price": price, "size": size, "bid": bid, "ask": ask})
    frame = apply_symbol_map(frame, symmap)
    checks = [
        ((frame["symbol"].astype(str).str.strip() == "").to_numpy(), "empty symbol"),
        (~(price > 0), lambda ix: [f"non-positive price {price[i]}" for i in ix]),
        (~(size > 0), lambda ix: [f"non-positive size {size[i]}" for i in ix]),
    ]
    bad, found = collect_rejects(checks, len(frame))
    tod = (local - local.dt.normalize()).to_numpy()
    lo = pd.Timedelta(settings.rth_start + ":00").to_timedelta64()
    hi = pd.Timedelta(settings.rth_end + ":00").to_timedelta64()
    keep = (~bad) & (tod >= lo) & (tod < hi)
    t = frame.loc[keep].sort_values(["symbol", "date", "ts"], kind="stable").reset_index(drop=True)
    rows = _aggregate(t)
    cover = rows[["date", "symbol"]].reset_index(drop=True)
    raw_fb = None if lines is not None else RowText(df.drop(columns=["_line"]))
    return Parsed("lit_flow_daily", rows, cover, rejects_frame(found, line_no, lines, raw_fb))


def _aggregate(t: pd.DataFrame) -> pd.DataFrame:
    if not len(t):
        return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in zip(_FLOW_COLS, ["datetime64[s]", str, float, float, float, str])})
    direction, rule = classify_trades(
        t["symbol"].to_numpy(), t["date"].to_numpy(), t["price"].to_numpy(), t["bid"].to_numpy(), t["ask"].to_numpy()
    )
    size = t["size"].to_numpy()
    agg = pd.DataFrame(
        {
            "date": t["date"],
            "symbol": t["symbol"],
            "lit_buy_volume": np.where(direction > 0, size, 0.0),
            "lit_sell_volume": np.where(direction < 0, size, 0.0),
            "lit_unclassified_volume": np.where(direction == 0, size, 0.0),
            "q": rule == 1,
            "k": rule == 2,
        }
    ).groupby(["date", "symbol"], sort=True).agg(
        lit_buy_volume=("lit_buy_volume", "sum"),
        lit_sell_volume=("lit_sell_volume", "sum"),
        lit_unclassified_volume=("lit_unclassified_volume", "sum"),
        q=("q", "any"),
        k=("k", "any"),
    ).reset_index()
    agg["method"] = np.where(agg["q"] & agg["k"], "quote+tick", np.where(agg["q"], "quote", "tick"))
    return agg[_FLOW_COLS]


def parse_lit_flow(file: str, text: str, symmap: pd.DataFrame) -> Parsed:
    df, lines = read_csv_text(
        file,
        text,
        required=("date", "symbol", "lit_buy_volume", "lit_sell_volume"),
        optional=("lit_unclassified_volume", "method"),
    )
    line_no = df["_line"].to_numpy()
    frame = pd.DataFrame(
        {
            "date": parse_dates(file, df, "date"),
            "symbol": df["symbol"].to_numpy(),
            "lit_buy_volume": parse_numeric(file, df, "lit_buy_volume"),
            "lit_sell_volume": parse_numeric(file, df, "lit_sell_volume"),
            "lit_unclassified_volume": (
                np.nan_to_num(parse_numeric(file, df, "lit_unclassified_volume", required=False), nan=0.0)
                if "lit_unclassified_volume" in df.columns
                else np.zeros(len(df))
            ),
            "method": df["method"].where(df["method"] != "", "provided").to_numpy() if "method" in df.columns else "provided",
        }
    )
    frame = apply_symbol_map(frame, symmap)
    dup, dup_reason = duplicate_rejects(
        frame[["date", "symbol"]], line_no, ("date", "symbol")
    )
    checks = [((frame["symbol"].astype(str).str.strip() == "").to_numpy(), "empty symbol")]
    for c in ("lit_buy_volume", "lit_sell_volume", "lit_unclassified_volume"):
        v = frame[c].to_numpy()
        checks.append((v < 0, lambda ix, v=v, c=c: [f"negative {c} {v[i]}" for i in ix]))
    checks.append((dup, dup_reason))
    bad, found = collect_rejects(checks, len(frame))
    rows = frame.loc[~bad, _FLOW_COLS].reset_index(drop=True)
    return Parsed("lit_flow_daily", rows, rows[["date", "symbol"]].copy(), rejects_frame(found, line_no, lines))
