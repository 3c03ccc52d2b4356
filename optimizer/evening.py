"""The whole evening on new files (the library behind ``accumopt evening``).

1. New raw files: ``ingest_dir`` (every file under it, its kind told by its folder or name, see ``classify_files``)
   or, by default, a fetch of the FINRA daily files (CNMS) for the sessions after the store's latest FINRA date
   through ``through`` (default: tonight's session, ``calendar.tonight_session``: the latest whose file is due,
   FINRA posting a session's file by 18:00 New York time, whatever the machine's time zone) and for the sessions
   among the ``REFETCH_SESSIONS`` before it the store lacks (a file that did not come on its night), and, when
   POLYGON_API_KEY is set, Polygon prices of the universe (``all``: the symbols the sheet trades, those with a
   price in its span, ``study.data.universe_symbols``), SPY and ^VIX for the same days (a symbol whose
   split-adjusted history changed since it was stored -- a split -- gets its whole history again, see
   ``_fetch_prices``). Each file is ingested atomically and idempotently (an identical file is skipped). A
   prices file whose bars jump by a split-like ratio against the stored bars of another file (a local file not
   adjusted for a split) is stored and warned of (``ingest.prices.split_warnings``).
2. ``daily_metrics`` rebuilt from the raw tables (point-in-time).
3. The FINRA scanner on the latest FINRA session (``scanner_daily_metrics`` and ``<out>/scanner/<D>/``).
4. The signal sheet of the parameters file on that session (``signal_sheet`` and ``<out>/signals/<D>_<hash>/``).

Running it twice on the same files gives the same tables and the same files (tested): ingest skips identical files,
the metrics rebuild, the scan and the sheet replace their own rows with the same values.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optimizer.analytics.scanner import ScanResult, scan, write_scan
from optimizer.data.calendar import FINRA_PUBLISHED_BY, as_date, market_today, nyse_sessions, tonight_session
from optimizer.data.fetch import fetch_finra_short, fetch_polygon_prices
from optimizer.data.ingest import KINDS, expand_paths, ingest_paths
from optimizer.data.ingest.prices import polygon_dates
from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import DEFAULT_EVENING_WAIT, connect, lock_wait, table_exists
from optimizer.data.symbols import canonical_or_none
from optimizer.data.splitcheck import panel_split_lines
from optimizer.data.universe import MARKET_SYMBOL, VIX_SYMBOL, is_all, resolve_universe
from optimizer.errors import AccumoptError, DataError, ParameterError, check_param
from optimizer.paths import atomic_write
from optimizer.report.files import PNG_HINT, png_available
from optimizer.settings import Settings
from optimizer.signals import (
    DEFAULT_UNIVERSE, SignalSheet, latest_finra_date, signal_sheet, stale_sheet_warning, unpriced_warning,
    unscored_warning, walkforward_warning, write_signal_sheet,
)
from optimizer.study.data import universe_symbols
from optimizer.study.paramsfile import ParamsRecord, load_params_record

__all__ = ["EveningResult", "run_evening", "classify_files", "INGEST_ORDER"]

# Ingest order: FINRA first (it defines the sessions), prices, then the other layers.
INGEST_ORDER: tuple[str, ...] = ("finra-short", "prices", "splits", "lit-trades", "lit-flow", "otc-weekly", "options")
_NAME_RULES: tuple[tuple[str, re.Pattern], ...] = (
    ("finra-short", re.compile(r"(CNMS|FNSQ|FNQC|FNYX|FNRA|FORF)shvol\d{8}", re.I)),
    ("finra-short", re.compile(r"finra.*short|short.*(sale|volume)|regsho", re.I)),
    ("otc-weekly", re.compile(r"otc|weekly", re.I)),
    ("lit-trades", re.compile(r"lit.?trade|trades", re.I)),
    ("splits", re.compile(r"splits", re.I)),
    ("lit-flow", re.compile(r"(?<!sp)lit", re.I)),  # not the 'lit' of 'split'
    ("options", re.compile(r"option", re.I)),
    ("prices", re.compile(r"price|ohlc|bars|aggs", re.I)),
)


def classify_files(folder: str | Path) -> dict[str, list[Path]]:
    """The files under ``folder`` grouped by ingest kind. A file's kind is the name of the folder it sits in when
    that is a kind (``finra-short/``, ``prices/``, ``splits/``, ``lit-flow/``, ``lit-trades/``, ``otc-weekly/``,
    ``options/``), else told by its name: ``CNMSshvolYYYYMMDD.txt`` (and the other FINRA families), *finra*short* ->
    finra-short; *otc* / *weekly* -> otc-weekly; *lit*trade* -> lit-trades; *splits* -> splits; *lit* (not the
    'lit' of 'split') -> lit-flow; *option* -> options; *price* / *ohlc* / *bars* / *aggs* -> prices (first match
    wins). A file matching none is an error naming it (nothing is ingested)."""
    root = Path(folder)
    if not root.is_dir():
        raise ParameterError(f"ingest folder must be an existing directory, got ingest={str(folder)!r}")
    out: dict[str, list[Path]] = {}
    unknown = []
    try:
        files = expand_paths([root])
    except ParameterError:  # an existing folder: the only refusal is "no file in it", said as the evening's option
        raise ParameterError(f"ingest folder {root} holds no file") from None
    for f in files:
        kind = next((p.name for p in f.relative_to(root).parents if p.name in KINDS), None)
        if kind is None:
            kind = next((k for k, rx in _NAME_RULES if rx.search(f.name)), None)
        if kind is None:
            unknown.append(str(f))
            continue
        out.setdefault(kind, []).append(f)
    if unknown:
        raise ParameterError(f"cannot tell the kind of {len(unknown)} file(s) in {root} from their folder or name "
                             f"(e.g. {unknown[0]}); put them in a folder named after the kind "
                             f"({', '.join(KINDS)}) or name them like CNMSshvolYYYYMMDD.txt, prices*.csv, ...")
    return {k: out[k] for k in INGEST_ORDER if k in out}


@dataclass
class EveningResult:
    """What the evening did: per step a line and its wall time, the ingest totals per kind, the metrics build
    summary, the scan and the sheet with the paths they wrote."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    ingest: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    scan: ScanResult | None = None
    scan_files: dict[str, Path] = field(default_factory=dict)
    sheet: SignalSheet | None = None
    sheet_files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def outputs(self) -> dict[str, str]:
        """Where the outputs are (files and tables), for printing."""
        out = {f"scan_{k}": str(v) for k, v in self.scan_files.items()}
        out.update({f"sheet_{k}": str(v) for k, v in self.sheet_files.items()})
        return out


def _ingest(db: str | Path, files: dict[str, list[Path]], res: EveningResult, settings: Settings,
            progress: bool) -> None:
    con = connect(db)
    try:
        for kind, paths in files.items():
            rep = ingest_paths(con, kind, paths, settings=settings, progress=progress)
            res.ingest[kind] = rep.to_dict()["totals"] | {"exit_code": rep.exit_code}
            res.warnings += rep.warnings  # e.g. a prices file not adjusted for a split the stored bars are
            if rep.failed:
                f = rep.failed[0]
                raise DataError(f"evening stopped: {len(rep.failed)} {kind} file(s) failed to ingest, the store keeps "
                                f"its data without them (first: {f.message})")
            if rep.rows_rejected:
                res.warnings.append(f"{kind}: {rep.rows_rejected} row(s) rejected (see ingest_rejects)")
    finally:
        con.close()


# the evening asks again for the FINRA files of this many sessions before the store's latest that it lacks (a file
# that did not come on its night): one missing session empties every z-score for a window's length
REFETCH_SESSIONS = 20


def _finra_holes(con, last: dt.date) -> list[dt.date]:
    """The sessions among the REFETCH_SESSIONS before ``last`` (from the store's first FINRA session on) that the
    store has no FINRA short data for."""
    if not table_exists(con, "finra_short_daily"):
        return []
    window = [d.date() for d in nyse_sessions(last - dt.timedelta(days=2 * REFETCH_SESSIONS + 14),
                                              last - dt.timedelta(days=1))[-REFETCH_SESSIONS:]]
    if not window:
        return []
    first, = con.execute("SELECT min(date) FROM finra_short_daily").fetchone()
    if first is None:
        return []
    have = {pd.Timestamp(d).date() for (d,) in con.execute(
        "SELECT DISTINCT date FROM finra_short_daily WHERE date >= ?", [window[0]]).fetchall()}
    return [d for d in window if d >= pd.Timestamp(first).date() and d not in have]


def _fetch(db: str | Path, cache: Path, through: dt.date, universe: object, settings: Settings,
           res: EveningResult, start: object | None = None) -> dict[str, list[Path]]:
    """Fetch tonight's FINRA file(s) and prices (``start``: the sheet's span start, for ``all``)."""
    con = connect(db, read_only=True)
    try:
        last = latest_finra_date(con)
        holes = _finra_holes(con, last)
        has_metrics = table_exists(con, "daily_metrics")
        avail = [r[0] for r in con.execute("SELECT DISTINCT symbol FROM prices_daily").fetchall()] \
            if table_exists(con, "prices_daily") and not has_metrics else []
    finally:
        con.close()
    span_from = start
    start = last + dt.timedelta(days=1)
    new = start <= through and bool(len(nyse_sessions(start, through)))
    if not new:
        res.warnings.append(f"fetch: the store already holds FINRA data through {last}; no session after it "
                            f"through {through}")
        if not holes:
            return {}
    files: dict[str, list[Path]] = {"finra-short": []}
    for day in holes + ([start] if new else []):  # the sessions a night missed, then the new ones
        got = fetch_finra_short(day, through if day == start else day, cache / "finra", settings)
        files["finra-short"] += list(got)
        res.warnings += [f"missing {n}: {why}" for n, why in got.missing]
    if not new:
        return {k: v for k, v in files.items() if v}
    if settings.polygon_api_key:
        # every symbol of a named universe or list, stored or not (a new name is fetched too); `all`: the store's
        # symbols with a price in the sheet's span (study.data, the one home: the symbols the sheet trades); before
        # a first metrics build, those with a stored price
        every = is_all(universe)
        if every and has_metrics:
            names = universe_symbols(db, "all", None if span_from is None else str(span_from))
        else:
            names = resolve_universe(universe, avail or None) if every else resolve_universe(universe)
        syms = sorted({*names, MARKET_SYMBOL, VIX_SYMBOL})
        files["prices"] = _fetch_prices(db, syms, last, start, through, cache / "prices", settings, res)
    else:
        res.warnings.append("prices: not fetched (POLYGON_API_KEY is not set); ingest the session's prices with "
                            "--ingest DIR or `accumopt ingest prices ...`")
    return {k: v for k, v in files.items() if v}


# a stored close that differs from the vendor's adjusted close by more than this share was adjusted since (a split)
READJUST_TOL = 1e-4


def _fetch_prices(db: str | Path, syms: list[str], last: dt.date, start: dt.date, through: dt.date, cache: Path,
                  settings: Settings, res: EveningResult) -> list[Path]:
    """Polygon's split-adjusted bars of ``syms`` for the sessions ``start`` .. ``through``.

    Adjusted history changes after a split, so each symbol's request overlaps its own last stored bar on or before
    the store's last FINRA session ``last`` (``last`` itself, unless a night whose fetch failed left the symbol
    without bars there): a symbol whose stored close there differs from the vendor's has its whole history (from
    its first stored bar) fetched again, or the ex-date's return would read -90 % for a 10:1 split; for the others
    the overlap bar is dropped from the saved file and every bar after it is ingested (so the sessions a failed
    night missed are filled, not left as a hole for good). A symbol the store has no price for gets its history
    from the store's first price session (with no price stored at all: its first FINRA session, so the FINRA
    history already stored gets its prices)."""
    con = connect(db, read_only=True)
    try:
        has = table_exists(con, "prices_daily")
        # per symbol: the overlap session (its last bar on or before ``last``; ``last`` when it has none), the
        # close stored there, its first bar
        stored = {s: (o or last, c if o is not None else None, f) for s, o, c, f in con.execute(
            "SELECT symbol, max(date) FILTER (WHERE date <= ?), arg_max(close, date) FILTER (WHERE date <= ?), "
            "min(date) FROM prices_daily WHERE symbol IN (SELECT unnest(?::VARCHAR[])) GROUP BY symbol",
            [last, last, syms]).fetchall()} if has else {}
        first_any = con.execute("SELECT min(date) FROM prices_daily").fetchone()[0] if has else None
        if first_any is None:  # no price stored yet: the prices of the FINRA history too, not of the new days alone
            first_any = con.execute("SELECT min(date) FROM finra_short_daily").fetchone()[0] \
                if table_exists(con, "finra_short_daily") else None
    finally:
        con.close()
    fresh = [s for s in syms if s not in stored]
    out: list[Path] = []
    missing: list[tuple[str, str]] = []
    if fresh:  # no price stored: the history too
        got = fetch_polygon_prices(fresh, min(first_any, start) if first_any is not None else start, through, cache,
                                   settings)
        out += list(got)
        missing += got.missing
    px: list[Path] = []
    for o in sorted({stored[s][0] for s in syms if s in stored}):  # one request per overlap session (mostly one)
        got = fetch_polygon_prices([s for s in syms if s in stored and stored[s][0] == o], o, through, cache, settings)
        px += list(got)
        missing += got.missing
    for path in px:
        try:
            doc = json.loads(path.read_text())
            ticker, bars = doc["ticker"], doc.get("results") or []
            days = polygon_dates(np.asarray([b["t"] for b in bars], dtype="int64")).dt.date.tolist()
        except (ValueError, KeyError, TypeError, OverflowError):  # not comparable: the ingest names what is wrong
            out.append(path)
            continue
        o, close, first = stored.get(canonical_or_none(ticker) or ticker, (last, None, None))
        at_o = [float(b["c"]) for b, d in zip(bars, days) if d == o]
        if close is not None and at_o and abs(at_o[0] / close - 1.0) > READJUST_TOL:
            res.warnings.append(
                f"prices: {ticker}'s split-adjusted close of {o} is now {at_o[0]:g}, the store holds {close:g} "
                f"(a split): its whole price history from {first} was fetched again; ingest the split "
                "(`accumopt ingest splits`) so its FINRA volumes are adjusted too")
            again = fetch_polygon_prices([ticker], first, through, cache, settings)
            out += list(again)
            missing += again.missing
            continue
        new = [b for b, d in zip(bars, days) if d > o]
        if not new:
            path.unlink()
            missing.append((ticker, "no bars returned"))
            continue
        # written whole or not at all (a kill or a full disk mid-write left half a JSON file that failed the ingest;
        # a full disk now leaves the cached file whole: it is reused)
        text = json.dumps({**doc, "results": new})
        atomic_write(path, lambda t: t.write_text(text))
        out.append(path)
    res.warnings += [f"missing {n}: {why}" for n, why in missing]
    return out


def _ingest_line(totals: dict[str, dict[str, Any]]) -> str:
    """``finra-short 33 rows, prices unchanged, ...``: what each kind's files added."""
    parts = []
    for kind, v in totals.items():
        new = v["files"] - v.get("skipped_identical", 0)
        parts.append(f"{kind} {v['rows_accepted']} rows" if new else f"{kind} unchanged")
    return ", ".join(parts)


def run_evening(
    params: str | Path | ParamsRecord,
    db: str | Path,
    out_root: str | Path = "output",
    ingest_dir: str | Path | None = None,
    fetch: bool = True,
    through: object | None = None,
    universe: object | None = None,
    start: object | None = None,
    regime: str | None = None,
    walkforward: str | Path | None = None,
    settings: Settings | None = None,
    png: bool | None = False,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
    wait: float = DEFAULT_EVENING_WAIT,
) -> EveningResult:
    """Run the evening (module docstring) for the parameters file (or record) ``params`` on the store at ``db``.

    ``ingest_dir``: ingest the files under it instead of fetching; ``fetch=False``: neither (rebuild, scan and sheet
    only); ``through``: last day to fetch (default: tonight's session in New York, ``calendar.tonight_session``);
    ``universe`` / ``start`` / ``regime`` / ``walkforward``: as in ``signals.signal_sheet``. Outputs go under
    ``out_root`` (fetched raw files in ``<out_root>/raw``). ``echo`` receives one line per finished step. ``wait``:
    seconds each opening of the store waits for another process holding it (a study loading its panel between two
    steps; ``store.connect``), 0 to fail at once."""
    with lock_wait(wait):  # refuses a negative or unbounded wait by name
        return _run_evening(params, db, out_root, ingest_dir, fetch, through, universe, start, regime, walkforward,
                            settings, png, progress, echo)


def _run_evening(params, db, out_root, ingest_dir, fetch, through, universe, start, regime, walkforward, settings,
                 png, progress, echo) -> EveningResult:
    st = settings or Settings.from_env()
    rec = params if isinstance(params, ParamsRecord) else load_params_record(params)
    rec.config()  # a bad parameters file is refused before anything is written
    if png is True and not png_available():  # so is a PNG that cannot be written (not after the ingest and rebuild)
        raise DataError(f"PNG output needs kaleido: {PNG_HINT}")
    uni = universe if universe is not None else (rec.universe or DEFAULT_UNIVERSE)
    out = Path(out_root)
    res = EveningResult()
    say = echo or (lambda _line: None)

    def step(name: str, t0: float, detail: str) -> None:
        res.steps.append({"step": name, "detail": detail, "seconds": round(time.perf_counter() - t0, 2)})
        say(f"{name}: {detail} ({res.steps[-1]['seconds']} s)")

    try:
        t = time.perf_counter()
        if ingest_dir is not None:
            files = classify_files(ingest_dir)
            _ingest(db, files, res, st, progress)
            step("ingest", t, _ingest_line(res.ingest))
        elif fetch:
            today = market_today()  # New York's, whatever the machine's zone
            day = as_date(through, "through") if through is not None else tonight_session()
            check_param(day <= today, "through", f"on or before today in New York ({today})", str(through))
            if through is None and day < today and len(nyse_sessions(today, today)):
                res.warnings.append(f"fetch: today's session {today} is not in: its FINRA file is due by "
                                    f"{FINRA_PUBLISHED_BY:%H:%M} New York time; fetched through {day} (--through "
                                    f"{today} asks for it now)")
            files = _fetch(db, out / "raw", day, uni, st, res, start if start is not None else rec.start)
            if files:
                _ingest(db, files, res, st, progress)
            step("fetch", t, _ingest_line(res.ingest) or "nothing new")
        t = time.perf_counter()
        con = connect(db)
        try:
            res.metrics = build_daily_metrics(con, min_lit_volume=st.min_lit_volume, progress=progress)
            if not res.metrics.get("rows"):
                raise DataError(f"no raw data to build daily_metrics from in {db}; ingest FINRA and price files first")
            step("metrics", t, f"daily_metrics {res.metrics['rows']} rows through {res.metrics['last_date']}")
            t = time.perf_counter()
            res.scan = scan(con, lookback=st.scanner_lookback_days, top=st.scanner_top_n,
                            trend_days=st.scanner_trend_days, outlier_z=st.scanner_outlier_z,
                            volume_z=st.scanner_volume_z, ratio_z=st.scanner_ratio_z,
                            inference_version=st.scanner_inference_version)
            res.scan_files = write_scan(con, res.scan, out / "scanner", export_full=st.scanner_export_full, png=png)
            step("scan", t, f"{len(res.scan.metrics)} symbols on {res.scan.date}, top {len(res.scan.top)}")
            if res.scan.reason:  # why the scan ranked nothing (e.g. FINRA history shorter than its lookback)
                res.warnings.append(f"scan {res.scan.date}: {res.scan.reason}")
        finally:
            con.close()
        t = time.perf_counter()
        res.sheet = signal_sheet(rec, db, universe=uni, start=start, regime=regime, walkforward=walkforward)
        stale = stale_sheet_warning(res.sheet, db)  # tonight's prices are in, tonight's FINRA file is not
        for w in (unscored_warning(res.sheet), unpriced_warning(res.sheet), stale, walkforward_warning(res.sheet),
                  *panel_split_lines(res.sheet.panel)):  # a split the store does not record (data.splitcheck)
            if w:
                res.warnings.append(w)
        res.sheet_files = write_signal_sheet(res.sheet, db, out)
        c = res.sheet.counts
        step("signals", t, f"{res.sheet.date}: ENTER {c['ENTER']}, EXIT {c['EXIT']}, HOLD {c['HOLD']} for the "
                           f"{res.sheet.next_session} open")
    except AccumoptError as exc:  # what the evening warned of so far often says why a later step failed
        for w in res.warnings:
            exc.add_note(f"warning: {w}")
        raise
    return res
