"""Daily OHLCV bars -> ``prices_daily``.

Accepted forms:

* CSV (plain or gzip) with header ``date,symbol,open,high,low,close,volume`` (case-insensitive, any order; a column
  not read is named in a warning, ``_common.unread_warnings``). ``source`` or ``source_repo``, when present, is kept as the row's source; else the file name.
* Polygon daily aggregates JSON ``{"ticker": "AAPL", "results": [{"t": <ms epoch>, "o", "h", "l", "c", "v"}]}``
  (what ``optimizer.data.fetch.fetch_polygon_prices`` saves). ``t`` is the session start in UTC milliseconds;
  it is converted to the America/New_York calendar date. Source = ``polygon``.

A file replaces the stored rows of the (date, symbol) keys it holds. Row invariants (rejected, or fatal under
strict): a valid symbol, the date an NYSE session between 1990-01-02 and today, prices > 0, low <= open,
close <= high (1e-9 relative tolerance), 0 <= volume <= 1e13, (date, symbol) unique. Prices are expected
split-adjusted (Yahoo ``auto_adjust``, Polygon ``adjusted=true``); FINRA volumes are adjusted to them with the
split table (``accumopt ingest splits``).
A file on another basis than the stored history of a symbol (an unadjusted split: a nightly file after a 10:1 split
next to the stored pre-split bars) is not refused (real crashes exist) but WARNED (``split_warnings``, in
``FileResult.warnings``): the file's first bar of a symbol against the symbol's latest stored bar before it, and the
file's last bar against the symbol's earliest stored bar after it (each from another file, at most
``SPLIT_GAP_DAYS`` calendar days apart), when the close ratio is <= ``SPLIT_LOW`` or >= ``SPLIT_HIGH``; index
symbols (``^VIX``) never split and are not checked. One query per file over the symbols it holds.
A Polygon document whose ``ticker`` is not one string (e.g. a list) fails the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.data.calendar import MARKET_TZ
from optimizer.errors import InputFileError
from optimizer.data.ingest._common import (
    EARLIEST_DATE,
    MAX_VOLUME,
    Col,
    Ctx,
    Plan,
    Prep,
    Spec,
    Summary,
    accepted,
    csv_header,
    date_rules,
    frame_relation,
    lines_relation,
    load_json,
    rejects_sql,
    sql_str,
    unread_warnings,
)
from optimizer.data.ingest._source import Lines, RawFile

__all__ = ["JSON_OK", "prepare", "spec", "plan", "polygon_dates", "price_rules", "split_warnings", "stale_rows", "SPLIT_LOW",
           "SPLIT_HIGH", "SPLIT_GAP_DAYS"]

JSON_OK = True
_TOL = 1e-9
_COLS = ["date", "symbol", "open", "high", "low", "close", "volume", "source"]
_PX = ("open", "high", "low", "close")
# a close ratio against the stored neighbouring bar of the symbol at or beyond these reads as a split the file is not
# adjusted for (2:1 -> 0.5, 10:1 -> 0.1, 1:10 -> 10; the largest real one-day moves of the real test prices, ^VIX
# apart, are 0.65 and 1.36); the stored bar counts only when at most SPLIT_GAP_DAYS calendar days away
SPLIT_LOW = 0.55
SPLIT_HIGH = 1.8
SPLIT_GAP_DAYS = 14
_SPLIT_SHOWN = 10  # per file, the symbols named one per warning; the rest in one line
# Polygon bar fields not read, without a warning: volume-weighted price, number of trades, the OTC flag
POLYGON_KNOWN = ("vw", "n", "otc")


def polygon_dates(ms: np.ndarray | pd.Series, tz: str = MARKET_TZ) -> pd.Series:
    """Polygon bar start times (UTC epoch ms) -> session dates in ``tz`` (tz-naive midnight timestamps).

    A Polygon day bar starts at midnight New York time: its session is the New York date, whatever the machine's
    zone or ``MARKET_TZ`` (a zone west of New York dated every bar a session early: Tuesday's bar on Monday, a
    look ahead). Only :func:`stale_rows` passes another ``tz``: the zone an earlier reading was recorded under."""
    ts = pd.to_datetime(pd.Series(np.asarray(ms, dtype="int64")), unit="ms", utc=True).dt.tz_convert(tz)
    return ts.dt.tz_localize(None).dt.normalize().astype("datetime64[s]")


def price_rules(ctx: Ctx) -> list[tuple[str, str]]:
    """The row invariants of a daily bar, in order (after the symbol check)."""
    o, h, lo, c, v = ('"open"', '"high"', '"low"', '"close"', '"volume"')
    s = lambda e: f"CAST({e} AS VARCHAR)"  # noqa: E731 - Python's float repr
    tol = f"{_TOL!r} * abs({h})"
    return date_rules(ctx, '"date"', "date", EARLIEST_DATE) + [
        (f"{o} <= 0 OR {h} <= 0 OR {lo} <= 0 OR {c} <= 0",
         f"printf('non-positive price (open %s, high %s, low %s, close %s)', {s(o)}, {s(h)}, {s(lo)}, {s(c)})"),
        (f"{lo} > {h} + {tol}", f"printf('low %s > high %s', {s(lo)}, {s(h)})"),
        (f"{o} > {h} + {tol} OR {o} < {lo} - {tol}", f"printf('open %s outside [low %s, high %s]', {s(o)}, {s(lo)}, {s(h)})"),
        (f"{c} > {h} + {tol} OR {c} < {lo} - {tol}", f"printf('close %s outside [low %s, high %s]', {s(c)}, {s(lo)}, {s(h)})"),
        (f"{v} < 0", f"printf('negative volume %s', {s(v)})"),
        (f"{v} > {MAX_VOLUME:g}", f"printf('volume %g is above the maximum {MAX_VOLUME:g}', {v})"),
    ]


def prepare(ctx: Ctx, raw: RawFile, fid: int, lines: Lines | None, text: str | None) -> Prep:
    if text is not None:
        frame, unread = _polygon(ctx, raw.file, text)
        return Prep(("polygon", fid), frame=frame,
                    warnings=unread_warnings("prices", raw.file, unread, POLYGON_KNOWN, "record field"))
    header = lines.first if lines.first_no == 1 else ""
    unread: list[str] = []
    index, ncols = csv_header(
        raw.file,
        header,
        required=("date", "symbol", "open", "high", "low", "close", "volume"),
        optional=("source",),
        aliases={"source_repo": "source", "ticker": "symbol"},
        unread=unread,
    )
    return Prep(("csv", tuple(sorted(index.items())), ncols), warnings=unread_warnings("prices", raw.file, unread))


def spec(ctx: Ctx, sig: tuple, fids: list[int], preps: dict) -> Spec:
    ctx.ensure_sessions()
    if sig[0] == "polygon":
        fid = sig[1]
        cols = [Col("t", "number", "record field 't'"), Col("date", "date"), Col("symbol", "symbol")] + [
            Col(k, "number", f"record field {k[0]!r}") for k in (*_PX, "volume")
        ]
        rel = frame_relation(ctx, fid, preps[fid].frame, len(cols))
        return Spec(rel, cols, len(cols), "expected %d fields, found %d", "date", ("date", "symbol"), ("date", "symbol"),
                    rejects=price_rules(ctx), raw_in_rows=True)
    index, ncols = dict(sig[1]), sig[2]
    cols = [Col("date", "date"), Col("symbol", "symbol")] + [Col(k, "number") for k in (*_PX, "volume")]
    if "source" in index:
        cols.append(Col("source", "text", required=False))
    return Spec(lines_relation(index, ",", fids), cols, ncols, "expected %d comma-separated fields, found %d", "date",
                ("date", "symbol"), ("date", "symbol"), rejects=price_rules(ctx))


def plan(ctx: Ctx, sig: tuple, sp: Spec, table: str, fid: int, prep: Prep, s: Summary, file: str) -> Plan:
    name = sql_str(Path(file).name)
    if sig[0] == "polygon":
        source = "'polygon'"
    elif any(c.name == "source" for c in sp.cols):
        source = f'coalesce("source", {name})'
    else:
        source = name
    select = f'SELECT "date", "symbol", "open", "high", "low", "close", "volume", {source} {accepted(table, fid)}'
    delete = (f"DELETE FROM prices_daily AS t USING (SELECT DISTINCT \"date\", \"symbol\" {accepted(table, fid)}) AS k "
              "WHERE t.date = k.date AND t.symbol = k.symbol")
    return Plan("prices_daily", _COLS, select, delete, s.n_rows, s.n_rejects, s.first_reject, rejects_sql(sp, table, fid))


def _text(x) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return str(x)


def _polygon(ctx: Ctx, file: str, text: str) -> tuple[pd.DataFrame, list[str]]:
    """A Polygon aggregates document -> (the staged frame (one row per result record), the record fields not read)."""
    doc = load_json(file, text)
    docs = doc if isinstance(doc, list) else [doc]
    rows: list[dict[str, str]] = []
    unread: dict[str, None] = {}
    for d in docs:
        if not isinstance(d, dict) or "results" not in d:
            raise InputFileError(file, None, "JSON is not a Polygon aggregates response: missing key 'results'")
        ticker = d.get("ticker")
        if ticker is not None and not isinstance(ticker, str):
            raise InputFileError(
                file, None, f"Polygon JSON 'ticker' must be one string, got a {type(ticker).__name__}: {json.dumps(ticker)[:60]}"
            )
        ticker = (ticker or "").strip()
        if not ticker:
            raise InputFileError(file, None, "Polygon JSON has no 'ticker'")
        res = d.get("results") or []
        if not isinstance(res, list):
            raise InputFileError(file, None, "Polygon JSON 'results' is not a list")
        for r in res:
            if not isinstance(r, dict):
                raise InputFileError(file, len(rows) + 1, "Polygon result record is not an object")
            for k in ("t", "o", "h", "l", "c", "v"):
                if k not in r:
                    raise InputFileError(file, None, f"Polygon result records lack key {k!r}")
            unread.update((str(k), None) for k in r if k not in ("t", "o", "h", "l", "c", "v"))
            rows.append({"raw": json.dumps(r, default=str), "t_symbol": ticker, **{f"t_{k}": _text(r[k]) for k in "tohlcv"}})
    frame = pd.DataFrame(rows, columns=["raw", "t_symbol", *[f"t_{k}" for k in "tohlcv"]]).astype(object)
    frame.insert(0, "line", np.arange(1, len(frame) + 1, dtype=np.int64))
    ms = pd.to_numeric(frame["t_t"].replace("", None), errors="coerce")
    ok = (ms.notna() & (ms.abs() < 1e15)).to_numpy(dtype=bool)
    dates = np.full(len(frame), "", dtype=object)
    if ok.any():
        dates[ok] = polygon_dates(ms[ok].astype("int64").to_numpy()).dt.strftime("%Y-%m-%d").to_numpy()
    frame["t_date"] = dates
    frame = frame.rename(columns={"t_o": "t_open", "t_h": "t_high", "t_l": "t_low", "t_c": "t_close", "t_v": "t_volume"})
    return frame.astype({c: str for c in frame.columns if c != "line"}), list(unread)


def split_warnings(ctx: Ctx, table: str, fid: int, file: str) -> list[str]:
    """Warnings for the symbols of file ``fid`` (accepted rows of the staged ``table``, already written) whose first
    bar jumps by a split-like ratio against the symbol's latest stored bar before it, or whose last bar does against
    the earliest stored bar after it (module doc). Run in the file's transaction."""
    where = f"{accepted(table, fid)} AND NOT starts_with(symbol, '^')"
    g, split = SPLIT_GAP_DAYS, f"NOT ({SPLIT_LOW!r} < %s AND %s < {SPLIT_HIGH!r})"
    got = ctx.con.execute(f"""
        WITH f AS (SELECT symbol, min("date") AS d0, arg_min("close", "date") AS c0,
                          max("date") AS d1, arg_max("close", "date") AS c1 {where} GROUP BY symbol)
        SELECT * FROM (
            SELECT p.symbol, any_value(f.d0) AS d0, any_value(f.c0) AS c0, any_value(f.d1) AS d1, any_value(f.c1) AS c1,
                   max(p.date) FILTER (WHERE p.date < f.d0) AS bd,
                   arg_max(p.close, p.date) FILTER (WHERE p.date < f.d0) AS bc,
                   arg_max(p.source, p.date) FILTER (WHERE p.date < f.d0) AS bs,
                   min(p.date) FILTER (WHERE p.date > f.d1) AS ad,
                   arg_min(p.close, p.date) FILTER (WHERE p.date > f.d1) AS ac,
                   arg_min(p.source, p.date) FILTER (WHERE p.date > f.d1) AS asrc
            FROM prices_daily AS p JOIN f ON p.symbol = f.symbol
            WHERE p.date BETWEEN f.d0 - {g} AND f.d1 + {g} AND (p.date < f.d0 OR p.date > f.d1)
            GROUP BY p.symbol)
        WHERE {split % ("c0 / bc", "c0 / bc")} OR {split % ("ac / c1", "ac / c1")}
        ORDER BY symbol""").fetchall()
    rows = []
    for sym, d0, c0, d1, c1, bd, bc, bs, ad, ac, asrc in got:
        if bd is not None and not SPLIT_LOW < c0 / bc < SPLIT_HIGH:
            rows.append((sym, 0, bd, bc, d0, c0, bs, c0 / bc))
        if ad is not None and not SPLIT_LOW < ac / c1 < SPLIT_HIGH:
            rows.append((sym, 1, d1, c1, ad, ac, asrc, ac / c1))
    if not rows:
        return []
    name = Path(file).name
    out = []
    for sym, side, d_from, c_from, d_to, c_to, src, ratio in rows[:_SPLIT_SHOWN]:
        if side == 0:
            where_from, where_to = f"stored {c_from:g} on {d_from} (source {src})", f"this file's {c_to:g} on {d_to}"
        else:
            where_from, where_to = f"this file's {c_from:g} on {d_from}", f"stored {c_to:g} on {d_to} (source {src})"
        out.append(
            f"prices: {name}: {sym} close jumps from {where_from} to {where_to}, ratio {ratio:.3g}: a split the "
            f"prices are not adjusted for? Prices must be split-adjusted on one basis: ingest {sym}'s whole "
            "split-adjusted price history again, and the split (`accumopt ingest splits`, then `accumopt metrics "
            "build`) so its FINRA volumes are adjusted too; nothing to do if the move is real")
    if len(rows) > _SPLIT_SHOWN:
        more = sorted({r[0] for r in rows[_SPLIT_SHOWN:]})
        out.append(f"prices: {name}: {len(rows) - _SPLIT_SHOWN} more split-like close jump(s) against the stored "
                   f"bars, symbols {', '.join(more[:20])}{' ...' if len(more) > 20 else ''}")
    return out


def stale_rows(ctx: Ctx, prep: Prep, table: str, fid: int, file: str, earlier: object, rules: int) -> int:
    """Delete the rows an earlier reading of this Polygon file under other settings (``earlier``: its
    ``market_tz``, recorded as ``tz=...`` by an accumopt that dated Polygon bars in ``MARKET_TZ``; ``rules``: the
    reading rules' version, which prices do not record: always 1) stored on (date,
    symbol) keys this reading does not cover: a bar whose session date moved. Only a row that is still that reading's bar (source 'polygon', the same open, high, low, close and volume) is deleted:
    a row another file wrote there since is kept. CSV dates do not depend on the settings: nothing to do. Run in
    the file's transaction; returns the rows deleted."""
    if prep.sig[0] != "polygon":
        return 0
    con = ctx.con
    bars = con.execute(f'SELECT "t", "symbol", "open", "high", "low", "close", "volume" FROM {table} '
                       f'WHERE _fid = {int(fid)} AND "t" IS NOT NULL AND "symbol" IS NOT NULL').df()
    if bars.empty:
        return 0
    bars["date"] = polygon_dates(bars["t"].astype("int64").to_numpy(), earlier.market_tz).to_numpy()
    name = f"_ing_stale_{int(fid)}"
    ctx.register(name, bars.drop(columns="t"))
    try:
        got = con.execute(
            f"DELETE FROM prices_daily AS p USING {name} AS k WHERE p.date = CAST(k.date AS DATE) AND p.symbol = k.symbol "
            "AND p.source = 'polygon' AND p.open = k.open AND p.high = k.high AND p.low = k.low AND p.close = k.close "
            "AND p.volume = k.volume AND NOT EXISTS (SELECT 1 FROM "
            f"{table} AS a WHERE a._fid = {int(fid)} AND a._reason IS NULL AND a.date = CAST(k.date AS DATE) "
            "AND a.symbol = k.symbol)"
        ).fetchone()
    finally:
        ctx.unregister(name)
    return int(got[0]) if got else 0
