"""One configuration on the store: the library behind ``accumopt backtest``.

``backtest(params, db, ...)`` loads the universe's panel, evaluates the configuration over its span and, with
``save``, writes the run to the ``bt_`` tables of the store and to files under ``<out>/backtest/<run_id>/``
(``optimizer.report.backtest``): signal events with their context, the frequency baseline, one summary row (also
appended to ``<out>/backtest/backtest_runs.csv``, the index of every run). A parameters file is read by the one
reader, ``optimizer.study.paramsfile.load_params_record``.

* **A trial reproduced.** Given a trial's effective configuration (``record``, from ``study best --format json``),
  the run loads the same universe from the same panel start (z-scores depend on where the panel starts), through
  the same data end, counts signals over the same span with the same regime filter and min_periods: the trades and
  every metric equal the trial's stored ones. A store whose data differs from the trial's (the fingerprint of the
  sessions the trial saw, or the hash of the universe's symbols) is refused unless ``allow_data_change``.
* **The final reserve is guarded.** Without ``final`` a run must end before the reserve (the record's reserve
  start; without a record, the last 20% of the store's sessions of the universe: ``study.reserve``); with
  ``final`` it may run through it (a trial's run to its study's last session, ``ConfigRecord.study_end``, where
  ``walkforward --final`` stops too; without a record, or with one written before records held it, to the store's
  last session), and the opening is recorded in the store's reserve ledger (a second opening warns).

Parameters follow the registry (``optimizer.params``); a ``weights`` preset and ``use_*`` switches are accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optimizer.data.calendar import as_date
from optimizer.data.metrics import metrics_staleness
from optimizer.data.splitcheck import panel_split_lines
from optimizer.data.store import check_writable, connect
from optimizer.data.universe import is_all, universe_label, universe_spelling
from optimizer.engine.context import compute_context, market_regime_frame
from optimizer.engine.evaluate import Config, Evaluator, Result
from optimizer.engine.outcomes import backtest_summary, frequency_baseline, signal_events
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import regime_entry_mask
from optimizer.engine.simulate import Span
from optimizer.errors import DataError, ParameterError
from optimizer.params import engine_params
from optimizer.paths import check_out_writable, existing_store, under
from optimizer.report.backtest import make_run_id, write_backtest, write_backtest_files, write_market_regimes
from optimizer.study.data import load_universe_panel, priced_before, universe_symbols
from optimizer.study.records import COMPARISON_COLUMNS, ConfigRecord
from optimizer.study.reserve import opening_warning, record_if_opened, refuse_reserve, store_reserve_start

__all__ = ["BACKTEST_METRICS", "BacktestRun", "backtest", "save_backtest", "compare_metrics"]

# The metrics a backtest reports (``accumopt backtest`` prints them; JSON carries them), in display order.
BACKTEST_METRICS = (
    "total_signals", "total_trades", "hit_rate", "avg_return", "median_return", "win_loss", "sharpe",
    "portfolio_sharpe", "max_drawdown", "avg_hold_days", "signals_per_month", "false_positive_rate", "rank_score",
    "avg_excess_return", "avg_benchmark_return", "excess_sharpe", "closed_trades", "open_at_end",
)
_COUNTS = frozenset(("total_signals", "total_trades", "closed_trades", "open_at_end"))


@dataclass(frozen=True, eq=False)
class BacktestRun:
    """A backtest: the engine ``Result`` on ``panel`` (cut at the run's data end), the effective configuration
    record of the run (``record``: what ``study best`` would store for it), what was written (``outputs``: run_id
    and file paths, empty when not saved), ``warnings`` (a repeated opening of the reserve) and ``end_from``
    (where the span's end came from, in words: the commands print it)."""

    result: Result
    panel: Panel
    outputs: dict[str, str] = field(default_factory=dict)
    record: ConfigRecord | None = None
    warnings: list[str] = field(default_factory=list)
    opened_reserve: bool = False
    end_from: str = ""  # where the span's end came from (``--end``, the trial's data end, its study's end, ...)

    @property
    def metrics(self) -> dict[str, float]:
        """The reported metrics (``BACKTEST_METRICS``, every one the engine computes; the counts as integers)."""
        m = self.result.metrics
        return {k: int(m[k]) if k in _COUNTS else m[k] for k in BACKTEST_METRICS}


def compare_metrics(stored: Mapping[str, Any], now: Mapping[str, Any], tol: float = 0.0) -> pd.DataFrame:
    """Each metric both hold: stored value, this run's value (``recomputed``), and whether they agree (bit for bit
    by default; relative ``tol`` if given; NaN = NaN). Columns ``COMPARISON_COLUMNS``."""
    rows = []
    for k in now:
        if k not in stored or not isinstance(stored[k], (int, float)) or isinstance(stored[k], bool):
            continue
        a, b = float(stored[k]), float(now[k])
        same = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol * max(1.0, abs(a), abs(b))
        rows.append({"metric": k, "stored": a, "recomputed": b, "equal": bool(same)})
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def save_backtest(res: Result, panel: Panel, db: str | Path, out_root: str | Path = "output",
                  universe: Any = None, regime: str = "ALL", run_key: str = "",
                  min_periods: int | None = None) -> dict[str, str]:
    """Write the run to the ``bt_`` tables of the store at ``db`` and to files under
    ``<out_root>/backtest/<run_id>/``: signal events (with their context), the frequency baseline, one summary row
    (with ``universe``, ``regime``, the panel start and ``min_periods``; also appended to
    ``<out_root>/backtest/backtest_runs.csv``) and the market regimes of the panel's sessions. ``run_key``: what
    else tells this run from another on the same data (regime, min_periods).
    Returns the run_id and the file paths."""
    ctx = compute_context(panel)
    events = signal_events(res, panel, ctx)
    base = frequency_baseline(res.display, panel, res.config.thresholds, res.span, res.config.score.variant)
    summary = backtest_summary(res, events, panel, universe=universe, regime_filter=regime, min_periods=min_periods)
    d = panel.dates
    span_dates = (d[0], d[res.span.sig_start], d[res.span.sig_end - 1], d[res.span.data_end - 1])
    run_id = make_run_id(res.config, span_dates, f"{panel.fingerprint()}|{run_key}")
    con = connect(db)
    try:
        write_backtest(con, run_id, summary, events, base)
        write_market_regimes(con, market_regime_frame(panel, ctx))
    finally:
        con.close()
    folder = under(out_root, "backtest", run_id)
    files = write_backtest_files(summary, events, base, folder, run_id=run_id,
                                 runs_index=under(out_root, "backtest", "backtest_runs.csv"))
    return {"run_id": run_id, "folder": str(folder), **{k: str(v) for k, v in files.items()}}


def _day(d: Any) -> pd.Timestamp | None:
    return None if d is None else pd.Timestamp(d).normalize()


def _store_end(db: str | Path, symbols: list[str]) -> str | None:
    con = connect(db, read_only=True)
    try:
        v = con.execute("SELECT max(date) FROM daily_metrics WHERE symbol IN (SELECT unnest(?::VARCHAR[]))",
                        [symbols]).fetchone()[0]
    finally:
        con.close()
    return None if v is None else pd.Timestamp(v).date().isoformat()


def _reserve_start_for(db: str | Path, symbols: list[str]) -> str | None:
    con = connect(db, read_only=True)
    try:
        return store_reserve_start(con, symbols)
    finally:
        con.close()


def _default_end(db: str | Path, symbols: list[str], record: ConfigRecord | None, end: str | None, final: bool,
                 reserve_start: str | None) -> tuple[str | None, str]:
    """The last session a run may evaluate and where it comes from (printed beside the span): ``end``; with
    ``final`` the trial's study end (its final reserve's last session, where ``walkforward --final`` stops), else
    (no record, or a record written before records held it) the store's last session; a trial's data end; else the
    last session before the store's reserve."""
    if end is not None:
        return end, "the end given"
    if final:
        if record is not None and record.study_end is not None:
            return record.study_end, "the study's last session (its final reserve's end, as walkforward --final)"
        if record is not None:
            return _store_end(db, symbols), ("the store's last session (the trial's record does not hold its study's "
                                             "end: written before 2026-12-05; --end stops earlier)")
        return _store_end(db, symbols), "the store's last session"
    if record is not None and record.data_end is not None:
        return record.data_end, "the trial's data end"
    if reserve_start is None:
        return None, "the store's last session"
    return ((pd.Timestamp(reserve_start) - pd.Timedelta(days=1)).date().isoformat(),
            f"the last session before the final reserve (it starts {reserve_start}; --final runs through it)")


def backtest(params: Mapping[str, Any], db: str | Path, universe: Any = None, start: str | None = None,
             end: str | None = None, save: bool = True, out_root: str | Path = "output",
             record: ConfigRecord | None = None, regime: str | None = None, final: bool = False,
             allow_data_change: bool = False, min_periods: int | None = None) -> BacktestRun:
    """Evaluate the configuration ``params`` on the store at ``db`` (see the module docstring).

    ``record``: a trial's effective configuration (``params`` then hold its parameters, flags on top): universe,
    panel start, signal span, data end, regime filter and min_periods come from it unless ``universe`` / ``start``
    / ``end`` / ``regime`` override them. Without a record: ``universe`` (default tier1+3) from ``start`` (default
    the store's first session) to ``end`` (default the last session before the reserve), regime ``ALL``.
    ``final``: the run may include the final reserve (default end: the store's last session); the opening is
    recorded; a trial's record stops at its study's last session, as ``walkforward --final`` (a record without it:
    the store's last session). ``save``: also write the run (``save_backtest``) under ``out_root``.
    ``min_periods``: of the z-scores (default: the record's, else the engine's)."""
    first, _ = as_date(start, "start"), as_date(end, "end")  # a date that does not parse is one line naming the flag
    if record is not None and first is not None:
        record.check_start(first)
    db = existing_store(db)
    if save:  # the run ends by writing its bt_ tables to the store and its files under out_root
        check_writable(db)
        check_out_writable(out_root)
    cfg = Config.from_params(engine_params(params))
    # a universe given here is recorded (run record, bt_backtest_runs, backtest_runs.csv, JSON) in one spelling,
    # as resolved, never as typed (' Tier1 ', 'aapl, msft'); a trial's is kept as the trial recorded it
    uni = universe_spelling(universe) if universe is not None else (record.universe if record is not None else "tier1+3")
    uni = list(uni) if isinstance(uni, tuple) else uni
    reg = regime if regime is not None else (record.regime if record is not None else "ALL")
    if min_periods is None:
        min_periods = record.min_periods if record is not None else None
    # resolved from the value as given (the same symbols as ``uni``), so a refusal names it as typed ('BRK-B', not
    # ['BRK.B'])
    symbols = universe_symbols(db, universe if universe is not None else uni)
    reserve_start = record.reserve_start if record is not None else _reserve_start_for(db, symbols)
    panel_start = record.panel_start if record is not None else start
    sig_start = start if start is not None else (record.signal_start if record is not None else None)
    last, end_from = _default_end(db, symbols, record, end, final, reserve_start)
    if not final:
        refuse_reserve(last, reserve_start, "backtest (--end, or the parameters file's span)")
    if end is None and last is not None and sig_start is not None and _day(sig_start) > _day(last):
        # the end was not given: say what it defaulted to, not "end must be on or after start"
        where = (f"the trial's data end {last}" if record is not None and not final and record.data_end is not None
                 else f"the study's last session {last}" if final and record is not None and record.study_end
                 else f"the store's last session {last}" if final or reserve_start is None
                 else f"{last}, the last session before the final reserve (it starts {reserve_start}; --final runs "
                      "through it)")
        raise ParameterError(f"start must be on or before {where}, got start={sig_start}")
    load_end = last
    if record is not None and record.data_end is not None and _day(record.data_end) > _day(last or record.data_end):
        load_end = record.data_end  # load what the trial saw to check the data, evaluate up to ``last`` only
    panel = load_universe_panel(db, uni, panel_start, load_end)
    if record is not None and universe is None:  # another universe is a deliberate departure from the trial
        if is_all(uni) and record.data_end is not None:  # the trial's 'all': its symbols priced up to its data end
            panel = priced_before(panel, _rows_through(panel, record.data_end))
        _check_data(record, panel, allow_data_change)
    if last is not None:  # the sessions up to ``last`` (a trial: exactly the panel it saw)
        panel = panel.slice(0, _rows_through(panel, last))
    if not len(panel.dates):
        raise DataError(f"the store has no session of {uni!r} between {panel_start} and {last}")
    lo = 0 if sig_start is None else panel.index_of(sig_start)
    if lo >= len(panel.dates):
        raise ParameterError(f"start must be on or before the span's last session {str(panel.dates[-1])[:10]}, "
                             f"got start={sig_start}")
    span = Span(lo, len(panel.dates), len(panel.dates))
    run_record = ConfigRecord.of(cfg, universe=uni, symbols=panel.symbols, dates=panel.dates, signal_start=lo,
                                 signal_end=len(panel.dates), data_end=len(panel.dates), reserve_start=reserve_start,
                                 regime=reg, min_periods=min_periods, fingerprint=panel.fingerprint(),
                                 study_end=record.study_end if record is not None else _store_end(db, symbols))
    # the opening is recorded before anything is computed on the reserve, as walkforward --final and sandbox
    # --final record theirs: a run interrupted or killed after its figures were shown is counted all the same
    earlier = record_if_opened(db, reserve_start, panel.dates[-1], "backtest --final", f"config {run_record.key}")
    opened = earlier is not None
    ev = Evaluator(panel, min_periods=min_periods)
    res = ev.run(cfg, span, entry_ok=regime_entry_mask(panel, reg))
    warnings: list[str] = []
    con = connect(db, read_only=True)
    try:
        stale = metrics_staleness(con)  # raw data ingested since daily_metrics was built is not in this run
    finally:
        con.close()
    if stale:
        warnings.append(f"warning: {stale}")
    warnings += [f"warning: {w}" for w in panel_split_lines(panel)]
    w = opening_warning(reserve_start, earlier or [])
    if w:
        warnings.append(w)
    outputs = (save_backtest(res, panel, db, out_root, universe_label(uni), reg,
                             f"regime={reg}|min_periods={min_periods}", min_periods) if save else {})
    return BacktestRun(res, panel, outputs, run_record, warnings, opened, end_from)


def _rows_through(panel: Panel, day: Any) -> int:
    """How many of ``panel``'s sessions fall on or before ``day``."""
    return int(np.searchsorted(panel.dates, np.datetime64(_day(day).date(), "D"), side="right"))


def _check_data(record: ConfigRecord, panel: Panel, allow: bool) -> None:
    """The store must hold the data the trial saw: the same universe symbols and, over the sessions up to the
    trial's data end, the same fingerprint (``allow``: go on, for a knowingly changed store)."""
    problems = []
    if not record.symbols_match(panel.symbols):
        problems.append(f"the universe {record.universe!r} resolves to {len(panel.symbols)} symbols, the trial ran on "
                        f"{record.symbols} (symbols hash {record.symbols_sha})")
    elif record.data_fingerprint is not None and record.data_end is not None:
        k = panel.index_of(record.data_end)
        seen = panel.slice(0, k + 1) if k < len(panel.dates) else panel
        fp = seen.fingerprint()
        if fp != record.data_fingerprint:
            problems.append(f"its sessions {record.panel_start}..{record.data_end} have fingerprint {fp}, the trial's "
                            f"data {record.data_fingerprint}")
    if problems and not allow:
        raise DataError(f"the store's data differs from the trial's: {'; '.join(problems)}; the backtest would not "
                        "reproduce it (pass --allow-data-change, in Python allow_data_change=True, to run anyway)")
