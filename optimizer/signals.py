"""The evening signal sheet: a configuration applied to the latest session (the library behind ``accumopt signals``).

The parameters file is read by ``optimizer.study.paramsfile.load_params_record`` (a ``ParamsRecord``: engine
parameters with costs, and the universe, span start and regime filter when the file states them).

``signal_sheet(record, db, date=None, ...)`` loads the universe's panel up to session D (default: the latest session
with FINRA data in the store; nothing after D is read), computes the configuration's display with the ``Evaluator``
and the decision of every symbol for the next open with ``engine.sheet.next_open`` (the engine's own simulation,
replayed from the span start), adds the point-in-time context of the actionable rows and, with a walk-forward run,
the out-of-sample hit rate and excess return of the ENTER row's quality bucket. ``write_signal_sheet`` stores it
in the DuckDB table ``signal_sheet`` (key: date, params_hash, symbol) and writes sheet.csv / sheet.json /
sheet.html under ``<out>/signals/<D>_<params_hash>/``. docs/SIGNALS.md describes every column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from optimizer.analytics.scanner import nearest_dates_message
from optimizer.data.calendar import as_date, nyse_sessions
from optimizer.data.coverage import CoverageError
from optimizer.data.metrics import store_metrics_staleness
from optimizer.data.store import connect, table_exists
from optimizer.data.symbols import canonical_symbol
from optimizer.data.universe import is_listed, universe_label, universe_spelling
from optimizer.engine.context import compute_context
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.outcomes import exit_strategy_name
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import REGIME_NAMES, regime_codes, regime_entry_mask
from optimizer.engine.sheet import (
    CONTEXT_COLUMNS, ENTER, EXIT, HOLD, NONE, OOS_COLUMNS, SHEET_COLUMNS, next_open, quality_buckets, sheet_context,
)
from optimizer.errors import DataError, check_param
from optimizer.report.sheet import sheet_charts, write_sheet_files, write_sheet_table
from optimizer.study.data import load_universe_panel
from optimizer.study.paramsfile import ParamsRecord
from optimizer.validate.walkforward import load_walkforward

__all__ = [
    "SignalSheet", "params_hash", "latest_finra_date", "signal_sheet",
    "write_signal_sheet", "stale_sheet_warning", "stale_metrics_warning", "unscored_warning", "unpriced_warning",
    "walkforward_warning", "DEFAULT_UNIVERSE",
]

DEFAULT_UNIVERSE = "tier1+3"


def _universe_key(universe: object) -> str:
    """The universe as the sheet runs it, one spelling per universe: a tier name lower-cased (``TIER1+3`` ->
    ``tier1+3``), a list as its canonical symbols, sorted, once each (``msft, aapl,,AAPL`` -> ``AAPL,MSFT``: the
    panel orders its symbols itself, so the list's order and spelling change no row)."""
    if isinstance(universe, str) and not is_listed(universe):
        return universe.strip().lower()
    names = universe.split(",") if isinstance(universe, str) else [str(x) for x in universe]  # type: ignore[union-attr]
    return ",".join(sorted({canonical_symbol(x, "universe symbol") for x in names if x.strip()}))


def params_hash(config: Config, universe: object, start: object, regime: str, min_periods: int | None = None,
                panel_start: object | None = None) -> str:
    """12 hex chars of sha256 over everything that decides the sheet's rows: the canonical parameters, the universe
    (``_universe_key``: however it is spelt), the span start, the regime filter, and the z-scores' ``min_periods``
    and ``panel_start`` (where they warm up: a trial's panel start before its span start) when given (not the data:
    the same configuration keeps its hash night after night, so (date, params_hash, symbol) keys one night's row).
    A sheet with neither keeps the hash it had before they were counted."""
    doc: dict[str, Any] = {"params": config.to_params(), "universe": _universe_key(universe), "start": str(start),
                           "regime": regime}
    if min_periods is not None:
        doc["min_periods"] = int(min_periods)
    if panel_start is not None and str(panel_start) != str(start):
        doc["panel_start"] = str(panel_start)
    payload = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def latest_finra_date(con: duckdb.DuckDBPyConnection) -> dt.date:
    """The latest session with FINRA short-sale data in the store (finra_short_daily; a darkpool-pipeline store
    without it: the latest daily_metrics row with a short ratio)."""
    if table_exists(con, "finra_short_daily"):
        d = con.execute("SELECT max(date) FROM finra_short_daily").fetchone()[0]
    elif table_exists(con, "daily_metrics"):
        d = con.execute("SELECT max(date) FROM daily_metrics WHERE short_buy_sell_ratio IS NOT NULL").fetchone()[0]
    else:
        d = None
    if d is None:
        raise DataError("the store holds no FINRA short-sale data; run `accumopt ingest finra-short ...` "
                        "(or `accumopt data synth --db ...`) first")
    return pd.Timestamp(d).date()


def _resolve_date(con, date: object | None) -> dt.date:
    latest = latest_finra_date(con)
    if date is None:
        return latest
    day = as_date(date, "date")  # the one rule for a date a user writes (no 'today': the machine's, not New York's)
    table = "finra_short_daily" if table_exists(con, "finra_short_daily") else "daily_metrics"
    n = con.execute(f"SELECT count(*) FROM {table} WHERE date = ?", [day]).fetchone()[0]
    if not n:
        raise DataError(nearest_dates_message(con, table, day, "FINRA data"))
    return day


def _load(db: str | Path, universe: object, day: dt.date, panel_start: object | None = None,
          origin: str | None = None) -> Panel:
    """The universe's daily_metrics panel from ``panel_start`` (default: the store's first session) through ``day``
    (nothing later), loaded as a study loads it (``load_universe_panel``: the same refusals of a store without
    daily_metrics, a universe it holds nothing of, a listed name without rows). ``origin``: where the span's start
    came from, said by a refusal of the span's coverage."""
    try:
        panel = load_universe_panel(db, universe, panel_start, day)
    except CoverageError as e:
        if origin is None:
            raise
        raise e.with_origin(origin) from None
    last = pd.Timestamp(panel.dates[-1]).date()
    if last != day:
        raise DataError(f"daily_metrics has no row on {day} (its last session for this universe is {last}); FINRA "
                        f"data for {day} is in the store: ingest that session's prices and run `accumopt metrics "
                        f"build --db {db}`")
    return panel


def _span_origin(rec: ParamsRecord, start: object | None, span_from: object | None) -> str:
    """Where the panel's first session comes from (:func:`signal_sheet`), for an error about the span."""
    src = rec.source or "the parameters record"
    if rec.record is not None:
        t = rec.trial or {}
        which = (f" (study {t['study']!r}, trial {t['number']})" if t.get("study") is not None and t.get("number") is not None
                 else "")
        return (f"its start {rec.record.panel_start} is the panel_start of the trial{which} in {src}: the scores "
                "warm up from it as in the study")
    if start is not None:
        return f"its start {span_from} is --start"
    if span_from is not None:
        return f"its start {span_from} is the span start in {src}"
    return "its start is the store's first session"


def _next_session(day: dt.date) -> dt.date:
    nxt = nyse_sessions(pd.Timestamp(day) + pd.Timedelta(days=1), pd.Timestamp(day) + pd.Timedelta(days=14))
    return nxt[0].date() if len(nxt) else (pd.Timestamp(day) + pd.offsets.BDay(1)).date()


@dataclass(frozen=True, eq=False)
class SignalSheet:
    """One night's sheet: ``rows`` holds every symbol of the universe (``SHEET_COLUMNS`` order, decision NONE for
    no action), the configuration and what it was applied to. ``panel`` / ``display`` (rows <= D) feed the charts."""

    date: dt.date
    next_session: dt.date
    params_hash: str
    config: Config
    universe: str
    span_start: dt.date
    regime: str
    rows: pd.DataFrame
    panel: Panel
    display: np.ndarray
    walkforward: str | None = None
    buckets: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str | None = None
    min_periods: int | None = None  # of the z-scores (None: each z-window's length)
    panel_start: dt.date | None = None  # where the z-scores warm up (a trial's panel start; else the span start)
    # the walk-forward run's settings the sheet differs from (its universe, regime filter, min_periods): its
    # out-of-sample bucket figures then describe other trades (``walkforward_mismatch``)
    walkforward_mismatch: tuple[str, ...] = ()

    def of(self, decision: str) -> pd.DataFrame:
        """The rows with ``decision`` (ENTER / EXIT / HOLD / NONE), ENTER by score, others by symbol."""
        df = self.rows[self.rows["decision"] == decision]
        if decision == ENTER:
            return df.sort_values(["score", "symbol"], ascending=[False, True], kind="mergesort")
        return df

    @property
    def counts(self) -> dict[str, int]:
        return {d: int((self.rows["decision"] == d).sum()) for d in (ENTER, EXIT, HOLD, NONE)}

    def meta(self) -> dict[str, Any]:
        """The sheet's identity and settings (JSON-ready)."""
        return {
            "date": self.date.isoformat(), "next_session": self.next_session.isoformat(),
            "params_hash": self.params_hash, "universe": self.universe, "span_start": self.span_start.isoformat(),
            "regime_filter": self.regime, "min_periods": self.min_periods,
            "panel_start": (self.panel_start or self.span_start).isoformat(),
            "symbols": int(len(self.rows)), "counts": self.counts,
            "params": self.config.to_params(), "exit_strategy": exit_strategy_name(self.config.exit),
            "walkforward": self.walkforward, "walkforward_mismatch": list(self.walkforward_mismatch),
            "params_file": self.source,
        }


def signal_sheet(record: ParamsRecord | Mapping[str, Any], db: str | Path, date: object | None = None,
                 universe: object | None = None, start: object | None = None, regime: str | None = None,
                 walkforward: str | Path | None = None) -> SignalSheet:
    """The sheet of ``record`` (a ``ParamsRecord`` or a flat parameter dict) on session ``date`` of the store at
    ``db`` (default: the latest FINRA session). ``universe`` / ``start`` / ``regime`` override the record's (defaults:
    tier1+3, the store's first session, ALL). A trial's record (``study best --format json``) also brings its panel
    start and min_periods: the scores are computed as the study computed them. ``walkforward``: a saved walk-forward run directory whose out-of-sample
    events give each ENTER row its quality bucket's hit rate and average excess return."""
    rec = record if isinstance(record, ParamsRecord) else ParamsRecord(dict(record))
    cfg = rec.config()
    # a universe given here is the sheet's in one spelling, as resolved, never as typed (' TIER1 ', 'aapl, msft'),
    # as backtest records it (``universe_spelling``)
    uni = universe_spelling(universe) if universe is not None else (rec.universe or DEFAULT_UNIVERSE)
    reg = regime if regime is not None else (rec.regime or "ALL")
    check_param(reg in REGIME_NAMES, "regime", f"one of {', '.join(REGIME_NAMES)}", reg)
    wf = load_walkforward(walkforward) if walkforward is not None else None
    buckets = quality_buckets(wf["events"]) if wf is not None else pd.DataFrame()
    con = connect(db, read_only=True)
    try:
        day = _resolve_date(con, date)
    finally:
        con.close()
    # the panel starts where ``backtest`` starts it, so the sheet's positions are the backtest's: a trial's record
    # (``study best``): its panel start and min_periods, so the scores are the study's; else the span start
    # (``--start`` or the file's: z-scores warm up inside the span, as in ``backtest --start``); else the first session
    trial = rec.record
    span_from = start if start is not None else rec.start
    if span_from is not None:
        first = as_date(span_from, "start")
        check_param(first <= day, "start", f"on or before the sheet's session {day}", span_from)
        if trial is not None and start is not None:
            trial.check_start(first)
    # loaded by the value as given (the same symbols as ``uni``), so a refusal names it as typed ('BRK-B', not
    # ['BRK.B'])
    panel = _load(db, universe if universe is not None else uni, day,
                  trial.panel_start if trial is not None else span_from, _span_origin(rec, start, span_from))
    lo = 0 if span_from is None else panel.index_of(span_from)
    check_param(lo < len(panel.dates), "start", f"on or before the sheet's session {day}", span_from)
    ev = Evaluator(panel, min_periods=trial.min_periods if trial is not None else rec.min_periods)
    disp = ev.display(cfg)
    need = trial.min_periods if trial is not None and trial.min_periods else cfg.score.z_window
    if len(panel.dates) < need and not np.isfinite(disp[-1]).any():  # a span too short to warm up the z-scores
        raise DataError(f"no symbol has a score on {day}: the span {pd.Timestamp(panel.dates[0]).date()}..{day} holds "
                        f"{len(panel.dates)} session(s) and the z-scores need {need} (they warm up inside the span, "
                        f"as in backtest --start); start the span earlier")
    mask = regime_entry_mask(panel, reg)
    nxt = _next_session(day)
    rows = next_open(panel, disp, cfg, lo, mask, nxt)
    act = rows.loc[rows["decision"] != NONE, "symbol"].tolist()
    ctx_cols = pd.DataFrame(index=pd.Index(rows["symbol"], name="symbol"), columns=list(CONTEXT_COLUMNS))
    if act:
        # context of the actionable symbols (+ their parent ETFs and the market, which the context reads)
        need = sorted({*act, *(panel.sectors[panel.symbol_index(s)] for s in act if
                               panel.sectors[panel.symbol_index(s)] in panel.symbols)})
        ctx = compute_context(panel.subset(need))
        ctx_cols.loc[act] = sheet_context(ev, cfg, disp, ctx, act, need).loc[act].to_numpy()
    full = pd.concat([rows.set_index("symbol"), ctx_cols], axis=1).reset_index()
    full = _with_oos(full, buckets)
    mp = trial.min_periods if trial is not None else rec.min_periods
    mismatch = _walkforward_mismatch(wf["result"].get("settings") if wf is not None else None, uni, reg, mp,
                                     cfg.costs)
    h = params_hash(cfg, uni, panel.dates[lo], reg, mp, panel.dates[0])
    full.insert(0, "date", pd.Timestamp(day))
    full.insert(1, "params_hash", h)
    full.insert(3, "next_session", pd.Timestamp(nxt))
    full = full[[c for c in SHEET_COLUMNS if c in full.columns]]
    return SignalSheet(day, nxt, h, cfg, universe_label(uni), pd.Timestamp(panel.dates[lo]).date(), reg, full,
                       panel, disp, None if walkforward is None else str(walkforward), buckets, rec.source, mp,
                       pd.Timestamp(panel.dates[0]).date(), mismatch)


def _walkforward_mismatch(settings: Mapping[str, Any] | None, universe: object, regime: str,
                          min_periods: int | None, costs: Any = None) -> tuple[str, ...]:
    """``key <run's value> -> <sheet's value>`` for each setting that decides which trades the walk-forward's
    out-of-sample buckets counted, or what they returned, and that the sheet runs otherwise: the universe (however
    spelt), the regime filter, the z-scores' min_periods, the costs per side (``costs``: the sheet's
    configuration's, with ``commission_bps`` / ``slippage_bps``; a bucket's hit rate and excess return are net of
    the run's costs). Empty for a run saved without its settings (before 2026-12-04)."""
    if not settings:
        return ()
    out = []
    run_uni = settings.get("universe")
    if run_uni is not None and _universe_key(run_uni) != _universe_key(universe):
        out.append(f"universe {universe_label(run_uni)!r} -> {universe_label(universe)!r}")
    if settings.get("regime", regime) != regime:
        out.append(f"regime {settings.get('regime')!r} -> {regime!r}")
    if "min_periods" in settings and settings["min_periods"] != min_periods:
        out.append(f"min_periods {settings['min_periods']!r} -> {min_periods!r}")
    run_costs = settings.get("costs")
    if costs is not None and isinstance(run_costs, Mapping):
        have = (float(run_costs.get("commission_bps", costs.commission_bps)),
                float(run_costs.get("slippage_bps", costs.slippage_bps)))
        want = (float(costs.commission_bps), float(costs.slippage_bps))
        if have != want:
            out.append(f"costs {have[0]:g} + {have[1]:g} -> {want[0]:g} + {want[1]:g} bp per side")
    return tuple(out)


def walkforward_warning(sheet: SignalSheet) -> str | None:
    """A warning when the sheet's out-of-sample bucket figures come from a walk-forward run of other settings
    (``SignalSheet.walkforward_mismatch``): its hit rates and excess returns were measured on other trades."""
    if not sheet.walkforward_mismatch:
        return None
    return (f"the out-of-sample figures come from the walk-forward run {sheet.walkforward}, which ran on other "
            f"settings than this sheet ({'; '.join(sheet.walkforward_mismatch)}): its hit rates and excess returns "
            "describe that run's trades, not this sheet's")


def stale_sheet_warning(sheet: SignalSheet, db: str | Path) -> str | None:
    """A warning when the store's prices of the sheet's symbols run past the sheet's next session: the sheet is
    for the latest FINRA session D, so its orders were for an open that has passed (tonight's FINRA file is not in
    the store yet). None when the sheet is the latest one the prices allow."""
    con = connect(db, read_only=True)
    try:
        last = con.execute("SELECT max(date) FROM prices_daily WHERE symbol IN (SELECT unnest(?::VARCHAR[]))",
                           [list(sheet.panel.symbols)]).fetchone()[0] if table_exists(con, "prices_daily") else None
    finally:
        con.close()
    if last is None or pd.Timestamp(last).date() < sheet.next_session:
        return None
    last = pd.Timestamp(last).date()
    missing = [str(d.date()) for d in nyse_sessions(pd.Timestamp(sheet.next_session), pd.Timestamp(last))]
    return (f"the sheet is for {sheet.date}, the latest session with FINRA data, but the store holds prices through "
            f"{last}: its orders were for the {sheet.next_session} open, which has passed. Ingest the FINRA file(s) "
            f"of {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} for a current sheet")


def unscored_warning(sheet: SignalSheet) -> str | None:
    """A warning when no symbol has a score on the sheet's session: then nothing can be entered and no position
    leaves by its score, which a sheet of ENTER 0 / EXIT 0 does not say. The usual cause is a session the store
    lacks FINRA short data for inside the z-scores' window (a file that never came): a gap is never bridged, so every
    z-score stays empty until the window no longer holds it (docs/DATA.md "Coverage and gaps"); those sessions are
    named. None when some symbol has a score."""
    if np.isfinite(sheet.display[-1]).any():
        return None
    p, w = sheet.panel, sheet.config.score.z_window
    need = w if sheet.min_periods is None else min(int(sheet.min_periods), w)
    finra = np.zeros(len(p.dates), dtype=bool)
    for k in ("short_buy_volume", "short_sell_volume"):
        if k in p.fields:
            finra |= np.isfinite(p.fields[k]).any(axis=1)
    lo = max(0, len(p.dates) - w)
    holes = [str(d)[:10] for d, ok in zip(p.dates[lo:], finra[lo:]) if not ok]
    if not holes:
        return (f"no symbol has a score on {sheet.date}: every symbol's z-score window (the last {w} sessions, "
                f"{need} with data needed) lacks data, so nothing can be entered and no position exits by its score")
    return (f"no symbol has a score on {sheet.date}: the store has no FINRA short data on {len(holes)} of the last {w} "
            f"sessions (the z-scores' window, {need} with data needed): {', '.join(holes[:5])}"
            f"{' ...' if len(holes) > 5 else ''}; a gap is never bridged, so nothing can be entered and no position "
            "exits by its score until the window no longer holds them: ingest the FINRA file(s) of those sessions")


def unpriced_warning(sheet: SignalSheet) -> str | None:
    """A warning when symbols of the sheet have FINRA data on its session but no price bar there, though they have
    earlier ones (tonight's prices not ingested, or not fetched for them): their scores lack the price term and their
    positions the session's close, so their decisions may change once the prices are in; without SPY's close the
    market regime (and a regime filter) is not the session's. None when every such symbol is priced."""
    p = sheet.panel
    if "close" not in p.fields or len(p.dates) < 2:
        return None
    close = p.fields["close"]
    finra = np.zeros(len(p.symbols), dtype=bool)
    for k in ("short_buy_volume", "short_sell_volume"):
        if k in p.fields:
            finra |= np.isfinite(p.fields[k][-1])
    lacking = finra & ~np.isfinite(close[-1]) & np.isfinite(close[:-1]).any(axis=0)
    spy = np.asarray(p.market.get("spy_close", np.full(len(p.dates), np.nan)), dtype=np.float64)
    no_spy = not np.isfinite(spy[-1]) and bool(np.isfinite(spy[:-1]).any())
    if not lacking.any() and not no_spy:
        return None
    names = [s for s, x in zip(p.symbols, lacking) if x]
    what = (f"{len(names)} symbol(s) of the sheet have FINRA data on {sheet.date} but no price bar there: "
            f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}; their scores lack the price term, their "
            "positions the session's close") if names else f"the store has no SPY price bar on {sheet.date}"
    regime = "; without SPY's close the market regime (and a regime filter) is not the session's" if no_spy else ""
    return f"{what}{regime}: ingest {sheet.date}'s prices and run the sheet again"


def stale_metrics_warning(db: str | Path) -> str | None:
    """A warning when the store's raw data changed since daily_metrics was built: the sheet reads daily_metrics, so
    a re-published day, a revised close or a split ingested since is not in it (``metrics.store_metrics_staleness``,
    the one check every command that reads daily_metrics makes)."""
    return store_metrics_staleness(db)


def _with_oos(rows: pd.DataFrame, buckets: pd.DataFrame) -> pd.DataFrame:
    out = rows.copy()
    for c in OOS_COLUMNS:
        out[c] = np.nan
    if buckets is None or buckets.empty:
        return out
    b = buckets.set_index("signal_quality")
    enter = out["decision"] == ENTER
    q = out.loc[enter, "signal_quality"]
    for c in OOS_COLUMNS:
        out.loc[enter, c] = q.map(b[c]).to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def write_signal_sheet(sheet: SignalSheet, db: str | Path, out_root: str | Path = "output",
                       chart_sessions: int = 120) -> dict[str, Path]:
    """Store the sheet in ``signal_sheet`` (its (date, params_hash) rows replaced in one transaction) and write
    sheet.csv, sheet.json and sheet.html (a price + score chart per ENTER / EXIT symbol) under
    ``<out_root>/signals/<D>_<params_hash>/``. Returns {"table", "csv", "json", "html"} paths."""
    meta = sheet.meta()
    table_frame = sheet.rows.assign(
        buy_threshold=sheet.config.thresholds.buy, sell_threshold=sheet.config.thresholds.sell,
        score_variant=sheet.config.score.variant, exit_strategy=meta["exit_strategy"],
        ticker_universe=sheet.universe, span_start=pd.Timestamp(sheet.span_start), regime_filter=sheet.regime,
        params=json.dumps(meta["params"], sort_keys=True),
    )
    con = connect(db)
    try:
        write_sheet_table(con, table_frame)
    finally:
        con.close()
    th = sheet.config.thresholds
    per_session = sheet.config.regime.threshold_rows(th, regime_codes(sheet.panel))  # regime-conditional buy
    charts = sheet_charts(sheet.rows, sheet.panel, sheet.display, th.buy if per_session is None else per_session[0],
                          th.sell, chart_sessions)
    out = Path(out_root) / "signals" / f"{sheet.date.isoformat()}_{sheet.params_hash}"
    files = write_sheet_files(sheet.rows, meta, charts, out, buckets=sheet.buckets)
    return {"table": Path("signal_sheet"), **files}
