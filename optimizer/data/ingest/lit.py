"""Lit-market buy/sell flow -> ``lit_flow_daily``, from trade prints (``lit-trades``) or daily aggregates (``lit-flow``).

lit-trades: CSV or Parquet with columns ``timestamp``, ``price``, ``size``, optional ``bid``/``ask``, ``side`` and
``symbol`` (else the symbol is the file name up to the first ``_``, read as every symbol is: ``AAPL_2024-03.csv`` ->
AAPL, ``BRK-B_2024-03.csv`` -> BRK.B; a name with no ``_``, or a date or an invalid symbol before it
(``2024.01.03_x.csv``), fails the file saying which).

* ``timestamp``: ISO-8601 text (an explicit offset is honoured; a naive time is taken as UTC, and a file with naive
  times some of whose trades fall outside the window is warned of: local times read as UTC) or an epoch
  number, whose unit follows its magnitude (>= 1e17 ns, >= 1e14 us, >= 1e11 ms, else s). Times are converted to
  ``Settings.market_tz``; only trades with ``rth_start <= local time < rth_end`` are kept (default 09:30-16:15,
  half-open; on an early-close session the window ends as far after its close, 13:15: ``in_session_window``) and
  the session date is the local date.
* ``side`` (aliases ``aggressor``, ``aggressor_side``): the aggressor side the vendor reports, used as the trade's
  side when given: ``B``, ``BUY``, ``1``, ``+1`` -> buy; ``S``, ``SELL``, ``-1`` -> sell (case-insensitive); empty or
  ``N`` (none) -> the rules below. Any other value fails the file (``file:line``: the accepted values), as a price
  that is not a number does.
* Each (symbol, day) is classified on its own, trades in time order (file order breaks ties): the ``side`` column
  where it gives one, else the quote rule (price > mid -> buy, price < mid -> sell; needs bid > 0, ask >= bid), else the tick rule
  against the previous kept trade of the same symbol and day (uptick / zero-uptick -> buy, downtick /
  zero-downtick -> sell). A trade with neither (first trade of the day with no usable quote, or only zero ticks
  since the open) is unclassified volume. ``method`` names the rules that classified trades that day, joined by
  ``+`` in the order side, quote, tick (``quote+tick``, ``side``, ``side+tick``, ...; "tick" when no trade could be
  classified). The tick rule compares prices whatever classified the previous trade.
* Row invariants (rejected, or fatal under strict): a valid symbol, price > 0, size > 0, the trade's session date
  an NYSE session between 1990-01-02 and today.
* One file must hold all trades of each (symbol, day) it covers: its daily rows replace the stored ones.

lit-flow: CSV ``date,symbol,lit_buy_volume,lit_sell_volume[,lit_unclassified_volume][,method]`` (method default
"provided"); a valid symbol, the date an NYSE session between 1990-01-02 and today, 0 <= volumes <= 1e13 and
(date, symbol) unique.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputFileError, quoted
from optimizer.data.calendar import MARKET_TZ, REGULAR_CLOSE, early_closes
from optimizer.data.symbols import canonical_symbol, symbol_problem
from optimizer.data.ingest._common import (
    EARLIEST_DATE,
    Col,
    Ctx,
    Plan,
    Prep,
    Spec,
    Summary,
    accepted,
    date_rules,
    frame_relation,
    lines_relation,
    rejects_sql,
    repr_sql,
    split_sql,
    sql_str,
    unread_warnings,
)
from optimizer.data.ingest._source import Limits, Lines, RawFile, read_raw, too_big
from optimizer.data.ingest.options import csv_prep, daily_value_rules

__all__ = [
    "trades_prepare", "trades_spec", "trades_plan", "trades_need_lines",
    "flow_prepare", "flow_spec", "flow_plan",
    "classify_trades", "parse_timestamps", "stale_rows", "in_session_window", "SIDE_BUY", "SIDE_SELL", "SIDE_NONE",
    "TRADES_RULES",
]

# The version of the rules that decide a lit-trades file's daily rows (which trades are kept, on which session), part
# of the file's identity (``ingest._parse_tag``: ``rules=N`` beside its checksum in ``ingest_log.sha256``), so that a
# file read under older rules is read again on its next ingest instead of being skipped as identical. Bump it by
# hand when a change of this module changes the rows a file gives, and keep the older rules in
# :func:`in_session_window` (``stale_rows`` finds the rows an older reading left with them):
#   1  before 2026-12-05 (325dacb): the window rth_start..rth_end on every session (a key without ``rules=``);
#   2  the window ends 15 minutes after an early close (13:15 by default).
TRADES_RULES = 2

_FLOW_COLS = ["date", "symbol", "lit_buy_volume", "lit_sell_volume", "lit_unclassified_volume", "method"]
_TRADE_ALIASES = {"ts": "timestamp", "time": "timestamp", "datetime": "timestamp", "ticker": "symbol",
                  "aggressor": "side", "aggressor_side": "side"}
# the side column's values (upper case): buy, sell, none (the quote / tick rules classify the trade)
SIDE_BUY = ("B", "BUY", "1", "+1")
SIDE_SELL = ("S", "SELL", "-1")
SIDE_NONE = ("N",)


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
    side: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Trade direction (+1 buy, -1 sell, 0 unclassified) and rule used (1 quote, 2 tick, 3 side, 0 none), per trade.

    ``side`` (+1 / -1 / 0 per trade, optional): the reported aggressor side, which classifies a trade before the
    quote and tick rules (0: not reported). Trades must already be in time order within each (symbol, day). Pure
    numpy/pandas, no per-trade loop.
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
    if side is not None:
        side = np.sign(np.asarray(side, dtype=float))
        given = side != 0
        direction = np.where(given, side, direction).astype(np.int8)
        rule = np.where(given, 3, rule).astype(np.int8)
    return direction, rule


def trades_need_lines(raw: RawFile) -> bool:
    """Parquet trades are read by pandas, not staged as lines."""
    if raw.data is not None:
        return raw.data[:4] != b"PAR1"
    with raw.path.open("rb") as fh:
        return fh.read(4) != b"PAR1"


def _parquet_frame(file: str, raw: RawFile, limits: Limits) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """A Parquet trades file -> (staged text frame, the timestamp column as read, the columns not read). The bytes
    :func:`~optimizer.data.ingest._source.read_raw` hashed are the ones read (a file above its INLINE_BYTES is read
    from disk, then checked against that checksum): rows are never stored under another content's checksum."""
    import pyarrow.parquet as pq  # only when a Parquet file comes

    src = (lambda: io.BytesIO(raw.data)) if raw.data is not None else (lambda: raw.path)
    try:  # the size cap of every input, on the file and on its uncompressed columns, before anything is loaded
        meta = pq.ParquetFile(src()).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types; the file is named in the message
        raise InputFileError(file, None, f"unreadable Parquet ({exc})") from None
    if max(size, raw.size) > limits.max_bytes:
        raise too_big(raw, limits)
    try:
        df = pd.read_parquet(src())
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types; the file is named in the message
        raise InputFileError(file, None, f"unreadable Parquet ({exc})") from None
    if raw.data is None and read_raw(raw.path, file).sha256 != raw.sha256:
        raise InputFileError(file, None, "the file changed while it was read (its checksum differs between two "
                                         "reads): ingest it again once it is complete")
    df.columns = [_TRADE_ALIASES.get(str(c).strip().lower(), str(c).strip().lower()) for c in df.columns]
    for c in ("timestamp", "price", "size"):
        if c not in df.columns:
            raise InputFileError(file, None, f"missing column {c!r} (columns: {','.join(df.columns)})")
    keep = [c for c in ("timestamp", "symbol", "price", "size", "bid", "ask", "side") if c in df.columns]
    unread = [c for c in df.columns if c not in keep]
    df = df[keep].reset_index(drop=True)
    text = pd.DataFrame({"line": np.arange(1, len(df) + 1, dtype=np.int64)})
    text["raw"] = [",".join("" if pd.isna(v) else str(v) for v in row) for row in df.itertuples(index=False)]
    for c in keep:
        if c != "timestamp":
            text[f"t_{c}"] = [_cell(v) for v in df[c].astype(object)]
    return text.astype({c: str for c in text.columns if c != "line"}), df["timestamp"], unread


def _cell(v: object) -> str:
    """A Parquet value as the text a CSV would hold (a whole float as an integer: a side of 1.0 reads as 1)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def trades_prepare(ctx: Ctx, raw: RawFile, fid: int, lines: Lines | None, text: str | None) -> Prep:
    """Timestamps are parsed here (pandas: ISO-8601 with offsets or epoch numbers) into the session date and
    the RTH flag; the row rules run in SQL with them."""
    file = raw.file
    if lines is None:
        frame, ts_raw, unread = _parquet_frame(file, raw, ctx.limits)
        warnings = unread_warnings("lit-trades", file, unread)
        line_no = frame["line"].to_numpy()
        index, ncols = None, len([c for c in frame.columns if c.startswith("t_")]) + 1
        names = [c[2:] for c in frame.columns if c.startswith("t_")]
    else:
        prep = csv_prep(raw, lines, ("timestamp", "price", "size"), ("symbol", "bid", "ask", "side"), _TRADE_ALIASES,
                        kind="lit-trades")
        warnings = prep.warnings
        index, ncols = dict(prep.sig[1]), prep.sig[2]
        names = list(index)
        got = ctx.con.execute(
            f"SELECT line, trim(f[{index['timestamp'] + 1}]) AS ts FROM (SELECT line, {split_sql('l', ',')} AS f "
            f"FROM _ing_lines WHERE _fid = {int(fid)} AND line > 1 AND trim(l) <> '') ORDER BY line"
        ).fetchnumpy()
        line_no = np.asarray(got["line"], dtype=np.int64)
        ts_raw = pd.Series(np.asarray(got["ts"], dtype=object)).fillna("")
        frame = None
    ts = parse_timestamps(file, ts_raw.reset_index(drop=True), line_no)
    local = ts.dt.tz_convert(ctx.settings.market_tz)
    times = pd.DataFrame({
        "line": line_no, "t_date": local.dt.tz_localize(None).dt.normalize().dt.strftime("%Y-%m-%d").to_numpy(dtype=object),
        "rth": in_session_window(local, ctx.settings.rth_start, ctx.settings.rth_end),
        "ts_ns": ts.astype("int64").to_numpy(),
    }).astype({"t_date": str})
    warnings = list(warnings) + _naive_warnings(ctx, file, ts_raw, times["rth"].to_numpy())
    guess = None if "symbol" in names else _name_ticker(file)
    if frame is not None:
        frame = frame.merge(times, on="line")
    unit = ts.dt.unit  # of ts_ns (the parsed resolution: ns, us, ...)
    return Prep(("trades", fid), frame=frame, data={"index": index, "ncols": ncols, "names": names, "times": times, "guess": guess,
                                                    "unit": unit}, warnings=warnings)


def in_session_window(local: pd.Series, rth_start: str, rth_end: str, rules: int = TRADES_RULES) -> np.ndarray:
    """Whether each trade (its time in the market zone, tz-aware) lies in the session window ``rth_start <= time <
    rth_end`` (HH:MM). On a session that closes early (``calendar.early_closes``: 13:00 the day after Thanksgiving,
    on Christmas Eve, ...) the window ends as far after that day's close as ``rth_end`` lies after the regular close
    (16:15 -> 13:15), and never later than ``rth_end``: the hours after an early close are after-hours trading, which
    the session's FINRA short volume (regular hours) does not count either. ``rules`` (:data:`TRADES_RULES`): the
    window of that version (1: ``rth_end`` on every session, as an accumopt before 2026-12-05 read the files)."""
    day_ns = local.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    day = day_ns.astype("datetime64[D]")
    tod = day_ns - day
    lo = pd.Timedelta(rth_start + ":00").to_timedelta64()
    hi = pd.Timedelta(rth_end + ":00").to_timedelta64()
    end = np.full(len(tod), hi)
    early = early_closes() if rules >= 2 else {}
    if early and len(day):
        dates = np.array(sorted(early), dtype="datetime64[D]")
        close = np.array([pd.Timedelta(f"{early[d]:%H:%M:%S}").to_timedelta64() for d in sorted(early)],
                         dtype="timedelta64[ns]")
        grace = max(hi - pd.Timedelta(f"{REGULAR_CLOSE:%H:%M:%S}").to_timedelta64(), np.timedelta64(0, "ns"))
        i = np.clip(np.searchsorted(dates, day), 0, len(dates) - 1)
        on = dates[i] == day
        end = np.where(on, np.minimum(hi, close[i] + grace), end)
    return (tod >= lo) & (tod < end)


# a date as a file name may start with it: 2024-01-03, 2024.01.03, 20240103, 01.03.2024, 1-3-24
_DATE_STEM = re.compile(r"\d{4}[-./]?\d{1,2}[-./]?\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def _name_ticker(file: str) -> str:
    """The canonical ticker a trades file without a ``symbol`` column is named for: the file name up to its first
    ``_`` (``BRK.B_2024-01.csv``, ``BRK-B_x.csv`` -> BRK.B, read as every symbol is, ``data.symbols``); a date
    (``2024.01.03_x.csv``), a part with no letter or an invalid symbol is an InputFileError saying which."""
    name = Path(file).name
    head = name.split("_")[0].strip() if "_" in name else ""
    advice = "add a 'symbol' column or name the file TICKER_*.csv (AAPL_2024-01-03.csv)"
    if not head:
        raise InputFileError(file, 1, f"missing column 'symbol', and the file name has no '_' after a ticker: {advice}")
    what = None
    if not any(ch.isalpha() for ch in head):
        what = "is a date, not a ticker" if _DATE_STEM.fullmatch(head) else "has no letter: not a ticker"
    elif (why := symbol_problem(head)) is not None:
        what = f"is not a ticker ({why})"
    if what is not None:
        raise InputFileError(file, 1, f"missing column 'symbol', and the file name's part before the first '_' "
                                      f"({quoted(head)}) {what}: {advice}")
    return canonical_symbol(head)


# a time of day followed by a UTC offset (Z, +HH, +HH:MM, +HHMM; UTC / GMT)
_OFFSET_RE = r"(?i)\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:z|utc|gmt|[+-]\d{2}(?::?\d{2})?)$"


def _naive_warnings(ctx: Ctx, file: str, ts_raw: pd.Series, rth: np.ndarray) -> list[str]:
    """The warning of a file whose timestamps carry no UTC offset (read as UTC) when some of its trades fall outside
    the session window: a vendor's local times read as UTC drop most of the day with no other trace; and of a file
    none of whose trades (their zones given) lies inside the window, e.g. under a MARKET_TZ set to the machine's zone
    (Asia/Tokyo: 09:30-16:15 there is night in New York): it stored nothing, with no other trace."""
    if pd.api.types.is_datetime64_any_dtype(ts_raw):
        naive = np.full(len(ts_raw), getattr(ts_raw.dt, "tz", None) is None)
    else:
        txt = ts_raw.astype(str).str.strip()
        naive = (pd.to_numeric(txt, errors="coerce").isna() & ~txt.str.contains(_OFFSET_RE, regex=True)).to_numpy()
    out = int(np.count_nonzero(~rth))
    st, tz = ctx.settings, ctx.settings.market_tz
    if out and out == len(rth) and not naive.any():  # every trade outside the window, their zones given: none counted
        hint = "" if tz == MARKET_TZ else f"; MARKET_TZ is the market's zone, the NYSE's is {MARKET_TZ}"
        return [f"lit-trades: {Path(file).name}: none of its {len(rth):,} trades lies inside the session window "
                f"{st.rth_start}-{st.rth_end} {tz}: nothing was counted{hint}"]
    if not naive.any() or not out:
        return []
    return [f"lit-trades: {Path(file).name}: {out:,} of {len(rth):,} trades lie outside the session window "
            f"{st.rth_start}-{st.rth_end} {tz} and were not counted; {int(naive.sum()):,} timestamps carry no UTC offset "
            f"and are read as UTC: if they are {tz} times, write them with their offset (2024-01-03T10:00:00-05:00) "
            "or as epoch numbers"]


def trades_spec(ctx: Ctx, sig: tuple, fids: list[int], preps: dict) -> Spec:
    ctx.ensure_sessions()
    fid = sig[1]
    d = preps[fid].data
    if preps[fid].frame is not None:
        rel = frame_relation(ctx, fid, preps[fid].frame, d["ncols"])
        raw_in_rows = True
    else:
        ctx.register(f"_ing_times_{fid}", d["times"])
        rel = (f"(SELECT s.*, CAST(t.t_date AS VARCHAR) AS t_date, t.rth, t.ts_ns FROM {lines_relation(d['index'], ',', [fid])} s "
               f"JOIN _ing_times_{fid} t ON t.line = s.line)")
        raw_in_rows = False
    if d["guess"] is not None:
        rel = f"(SELECT *, {sql_str(d['guess'])} AS t_symbol FROM {rel})"
    cols = [Col("symbol", "symbol"), Col("price", "number"), Col("size", "number"), Col("date", "date", "trade date")]
    cols += [Col(c, "number", required=False) for c in ("bid", "ask") if c in d["names"]]
    checks = []
    if "side" in d["names"]:
        cols.append(Col("side", "upper", required=False))
        ok = ", ".join(sql_str(v) for v in SIDE_BUY + SIDE_SELL + SIDE_NONE)
        rule = (f"invalid side %s (expected {'/'.join(SIDE_BUY)} for a buy, {'/'.join(SIDE_SELL)} for a sell, "
                f"empty or {'/'.join(SIDE_NONE)} for the quote and tick rules)")
        checks.append((f'"side" IS NOT NULL AND "side" NOT IN ({ok})', f"printf({sql_str(rule)}, {repr_sql(chr(34) + 't_side' + chr(34))})"))
    rejects = [
        ('NOT ("price" > 0)', "printf('non-positive price %s', CAST(\"price\" AS VARCHAR))"),
        ('NOT ("size" > 0)', "printf('non-positive size %s', CAST(\"size\" AS VARCHAR))"),
        *date_rules(ctx, '"date"', "trade date", EARLIEST_DATE),
    ]
    return Spec(rel, cols, d["ncols"], "expected %d comma-separated fields, found %d", "date", ("line",), ("line",),
                file_checks=checks, rejects=rejects, reject_dups=False, raw_in_rows=raw_in_rows)


def trades_plan(ctx: Ctx, sig: tuple, sp: Spec, table: str, fid: int, prep: Prep, s: Summary, file: str) -> Plan:
    """Classify the accepted RTH trades (quote rule, tick fallback) and aggregate them per (date, symbol)."""
    con = ctx.con
    names = {c.name for c in sp.cols}
    bid = '"bid"' if "bid" in names else "CAST(NULL AS DOUBLE)"
    ask = '"ask"' if "ask" in names else "CAST(NULL AS DOUBLE)"
    buy, sell = (", ".join(sql_str(v) for v in vals) for vals in (SIDE_BUY, SIDE_SELL))
    side = f'CASE WHEN "side" IN ({buy}) THEN 1 WHEN "side" IN ({sell}) THEN -1 ELSE 0 END' if "side" in names else "0"
    t = con.execute(
        f'SELECT "date" AS date, "symbol" AS symbol, "price" AS price, "size" AS size, {bid} AS bid, {ask} AS ask, '
        f"{side} AS side "
        f"{accepted(table, fid)} AND rth ORDER BY symbol, date, ts_ns, line"
    ).df()
    daily = _aggregate(t.assign(date=pd.to_datetime(t["date"]).astype("datetime64[s]")))
    ctx.register("_ing_lit_daily", daily)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _ing_lit AS SELECT CAST(date AS DATE) AS date, CAST(symbol AS VARCHAR) AS symbol, "
                    "lit_buy_volume, lit_sell_volume, lit_unclassified_volume, CAST(method AS VARCHAR) AS method FROM _ing_lit_daily")
    finally:
        ctx.unregister("_ing_lit_daily")
    delete = "DELETE FROM lit_flow_daily AS t USING _ing_lit AS k WHERE t.date = k.date AND t.symbol = k.symbol"
    select = f"SELECT *, {sql_str(Path(file).name)} FROM _ing_lit"
    return Plan("lit_flow_daily", [*_FLOW_COLS, "source_file"], select, delete, len(daily), s.n_rejects, s.first_reject,
                rejects_sql(sp, table, fid))


def _aggregate(t: pd.DataFrame) -> pd.DataFrame:
    if not len(t):
        return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in zip(_FLOW_COLS, ["datetime64[s]", str, float, float, float, str])})
    direction, rule = classify_trades(
        t["symbol"].to_numpy(), t["date"].to_numpy(), t["price"].to_numpy(), t["bid"].to_numpy(), t["ask"].to_numpy(),
        t["side"].to_numpy() if "side" in t else None,
    )
    size = t["size"].to_numpy()
    agg = pd.DataFrame(
        {
            "date": t["date"],
            "symbol": t["symbol"],
            "lit_buy_volume": np.where(direction > 0, size, 0.0),
            "lit_sell_volume": np.where(direction < 0, size, 0.0),
            "lit_unclassified_volume": np.where(direction == 0, size, 0.0),
            "s": rule == 3,
            "q": rule == 1,
            "k": rule == 2,
        }
    ).groupby(["date", "symbol"], sort=True).agg(
        lit_buy_volume=("lit_buy_volume", "sum"),
        lit_sell_volume=("lit_sell_volume", "sum"),
        lit_unclassified_volume=("lit_unclassified_volume", "sum"),
        s=("s", "any"),
        q=("q", "any"),
        k=("k", "any"),
    ).reset_index()
    used = [np.where(agg[c], name, "") for c, name in (("s", "side"), ("q", "quote"), ("k", "tick"))]
    method = pd.Series(["+".join(x for x in parts if x) for parts in zip(*used)], index=agg.index, dtype=object)
    agg["method"] = method.where(method != "", "tick")
    return agg[_FLOW_COLS]


_FLOW_REQ = ("date", "symbol", "lit_buy_volume", "lit_sell_volume")
_FLOW_OPT = ("lit_unclassified_volume", "method")


def flow_prepare(ctx: Ctx, raw: RawFile, fid: int, lines: Lines | None, text: str | None) -> Prep:
    return csv_prep(raw, lines, _FLOW_REQ, _FLOW_OPT, kind="lit-flow")


def flow_spec(ctx: Ctx, sig: tuple, fids: list[int], preps: dict) -> Spec:
    ctx.ensure_sessions()
    index, ncols = dict(sig[1]), sig[2]
    vols = ("lit_buy_volume", "lit_sell_volume") + (("lit_unclassified_volume",) if "lit_unclassified_volume" in index else ())
    cols = [Col("date", "date"), Col("symbol", "symbol")] + [Col(c, "number", required=c != "lit_unclassified_volume") for c in vols]
    if "method" in index:
        cols.append(Col("method", "text", required=False))
    return Spec(lines_relation(index, ",", fids), cols, ncols, "expected %d comma-separated fields, found %d", "date",
                ("date", "symbol"), ("date", "symbol"), rejects=daily_value_rules(ctx, vols, vols))


def flow_plan(ctx: Ctx, sig: tuple, sp: Spec, table: str, fid: int, prep: Prep, s: Summary, file: str) -> Plan:
    names = {c.name for c in sp.cols}
    unc = 'coalesce("lit_unclassified_volume", 0.0)' if "lit_unclassified_volume" in names else "0.0"
    method = "coalesce(\"method\", 'provided')" if "method" in names else "'provided'"
    select = (f'SELECT "date", "symbol", "lit_buy_volume", "lit_sell_volume", {unc}, {method}, '
              f"{sql_str(Path(file).name)} {accepted(table, fid)}")
    delete = (f'DELETE FROM lit_flow_daily AS t USING (SELECT DISTINCT "date", "symbol" {accepted(table, fid)}) AS k '
              "WHERE t.date = k.date AND t.symbol = k.symbol")
    return Plan("lit_flow_daily", [*_FLOW_COLS, "source_file"], select, delete, s.n_rows, s.n_rejects, s.first_reject,
                rejects_sql(sp, table, fid))


def stale_rows(ctx: Ctx, prep: Prep, table: str, fid: int, file: str, earlier: object, rules: int) -> int:
    """Delete the daily rows an earlier reading of this trades file under other settings (``earlier``: its
    ``market_tz``, ``rth_start``, ``rth_end``) or older rules (``rules``: their :data:`TRADES_RULES` version) stored
    on (date, symbol) keys this reading does not cover: a day whose trades moved to another session date or out of
    the window (an early-close session's after-hours trades, read by rules 1). Only rows still tagged with the
    file's name are deleted (a row another file wrote there since is kept). Run in the file's transaction; returns
    the rows deleted."""
    con = ctx.con
    got = con.execute(f'SELECT ts_ns, "symbol" AS symbol FROM {table} WHERE _fid = {int(fid)} AND "symbol" IS NOT NULL').df()
    if got.empty:
        return 0
    local = pd.to_datetime(got["ts_ns"].astype("int64"), unit=prep.data["unit"], utc=True).dt.tz_convert(earlier.market_tz)
    keys = pd.DataFrame({"date": local.dt.tz_localize(None).dt.normalize().astype("datetime64[s]").to_numpy(),
                         "symbol": got["symbol"].astype(str).to_numpy()})[
        in_session_window(local, earlier.rth_start, earlier.rth_end, rules)].drop_duplicates()
    if keys.empty:
        return 0
    name = f"_ing_stale_{int(fid)}"
    ctx.register(name, keys)
    try:
        out = con.execute(
            f"DELETE FROM lit_flow_daily AS t USING {name} AS k WHERE t.date = CAST(k.date AS DATE) AND t.symbol = k.symbol "
            f"AND t.source_file = {sql_str(Path(file).name)} AND NOT EXISTS (SELECT 1 FROM {table} AS a "
            f"WHERE a._fid = {int(fid)} AND a._reason IS NULL AND a.rth AND a.date = CAST(k.date AS DATE) AND a.symbol = k.symbol)"
        ).fetchone()
    finally:
        ctx.unregister(name)
    return int(out[0]) if out else 0
