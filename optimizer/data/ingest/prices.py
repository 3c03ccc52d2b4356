"""Daily OHLCV bars -> ``prices_daily``.

Accepted forms:

* CSV (plain or gzip) with header ``date,symbol,open,high,low,close,volume`` (case-insensitive, any order, extra
  columns ignored). ``source`` or ``source_repo``, when present, is kept as the row's source; else the file name.
* Polygon daily aggregates JSON ``{"ticker": "AAPL", "results": [{"t": <ms epoch>, "o", "h", "l", "c", "v"}]}``
  (what ``optimizer.data.fetch.fetch_polygon_prices`` saves). ``t`` is the session start in UTC milliseconds;
  it is converted to the America/New_York calendar date. Source = ``polygon``.

A file replaces the stored rows of the (date, symbol) keys it holds. Row invariants (rejected, or fatal under
strict): prices > 0, low <= open, close <= high (1e-9 relative tolerance), volume >= 0, (date, symbol) unique.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputFileError
from optimizer.data.symbols import apply_symbol_map
from optimizer.data.ingest._common import Parsed, collect_rejects, duplicate_rejects, parse_dates, parse_numeric, read_csv_text, rejects_frame

__all__ = ["parse_prices", "polygon_dates"]

_TOL = 1e-9
_COLS = ["date", "symbol", "open", "high", "low", "close", "volume", "source"]


def polygon_dates(ms: np.ndarray | pd.Series, tz: str = "America/New_York") -> pd.Series:
    """Polygon bar start times (UTC epoch ms) -> session dates in ``tz`` (tz-naive midnight timestamps)."""
    ts = pd.to_datetime(pd.Series(np.asarray(ms, dtype="int64")), unit="ms", utc=True).dt.tz_convert(tz)
    return ts.dt.tz_localize(None).dt.normalize().astype("datetime64[s]")


def parse_prices(file: str, text: str, symmap: pd.DataFrame, market_tz: str = "America/New_York") -> Parsed:
    if text.lstrip()[:1] in ("{", "["):
        frame, line_no, raw_lines, raw_fb = _from_polygon(file, text, market_tz)
    else:
        df, raw_lines = read_csv_text(
            file,
            text,
            required=("date", "symbol", "open", "high", "low", "close", "volume"),
            optional=("source",),
            aliases={"source_repo": "source", "ticker": "symbol"},
        )
        line_no = df["_line"].to_numpy()
        raw_fb = None
        src = df["source"].where(df["source"] != "", Path(file).name) if "source" in df.columns else Path(file).name
        frame = pd.DataFrame(
            {
                "date": parse_dates(file, df, "date"),
                "symbol": df["symbol"].to_numpy(),
                **{c: parse_numeric(file, df, c) for c in ("open", "high", "low", "close", "volume")},
                "source": src if isinstance(src, str) else src.to_numpy(),
            }
        )
    frame = apply_symbol_map(frame, symmap)
    o, h, lo, c, v = (frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    tol = _TOL * np.abs(h)
    dup, dup_reason = duplicate_rejects(
        frame[["date", "symbol"]], line_no, ("date", "symbol")
    )
    checks = [
        ((frame["symbol"].astype(str).str.strip() == "").to_numpy(), "empty symbol"),
        ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0),
         lambda ix: [f"non-positive price (open {o[i]}, high {h[i]}, low {lo[i]}, close {c[i]})" for i in ix]),
        (lo > h + tol, lambda ix: [f"low {lo[i]} > high {h[i]}" for i in ix]),
        ((o > h + tol) | (o < lo - tol), lambda ix: [f"open {o[i]} outside [low {lo[i]}, high {h[i]}]" for i in ix]),
        ((c > h + tol) | (c < lo - tol), lambda ix: [f"close {c[i]} outside [low {lo[i]}, high {h[i]}]" for i in ix]),
        (v < 0, lambda ix: [f"negative volume {v[i]}" for i in ix]),
        (dup, dup_reason),
    ]
    bad, found = collect_rejects(checks, len(frame))
    rows = frame.loc[~bad, _COLS].reset_index(drop=True)
    cover = rows[["date", "symbol"]].drop_duplicates().reset_index(drop=True)
    return Parsed("prices_daily", rows, cover, rejects_frame(found, line_no, raw_lines, raw_fb))


def _from_polygon(file: str, text: str, tz: str):
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(file, exc.lineno, f"invalid JSON ({exc.msg})") from None
    docs = doc if isinstance(doc, list) else [doc]
    frames = []
    for d in docs:
        if not isinstance(d, dict) or "results" not in d:
            raise InputFileError(file, None, "JSON is not a Polygon aggregates response: missing key 'results'")
        ticker = str(d.get("ticker") or "").strip()
        if not ticker:
            raise InputFileError(file, None, "Polygon JSON has no 'ticker'")
        res = d.get("results") or []
        if not isinstance(res, list):
            raise InputFileError(file, None, "Polygon JSON 'results' is not a list")
        recs = pd.DataFrame(res)
        for k in ("t", "o", "h", "l", "c", "v"):
            if len(recs) and k not in recs.columns:
                raise InputFileError(file, None, f"Polygon result records lack key {k!r}")
        recs = recs.reindex(columns=["t", "o", "h", "l", "c", "v"])
        recs["ticker"] = ticker
        frames.append(recs)
    recs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["t", "o", "h", "l", "c", "v", "ticker"])
    recs["_line"] = np.arange(1, len(recs) + 1)
    num = {}
    for k in ("t", "o", "h", "l", "c", "v"):
        col = recs[k].astype(object).map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x))
        num[k] = parse_numeric(file, pd.DataFrame({k: col, "_line": recs["_line"]}), k, label=f"record field {k!r}")
    frame = pd.DataFrame(
        {
            "date": polygon_dates(num["t"].astype("int64"), tz),
            "symbol": recs["ticker"].to_numpy(),
            "open": num["o"],
            "high": num["h"],
            "low": num["l"],
            "close": num["c"],
            "volume": num["v"],
            "source": "polygon",
        }
    )
    raw = recs.drop(columns=["_line"]).to_dict("records")
    return frame, recs["_line"].to_numpy(), None, [json.dumps(r, default=str) for r in raw]
