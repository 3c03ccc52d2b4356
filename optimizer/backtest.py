"""One configuration on the store: the library behind ``accumopt backtest``.

``backtest(params, db, ...)`` loads the universe's panel, evaluates the configuration over every session and, with
``save``, writes the run to the ``bt_`` tables of the store and to files (``optimizer.report.backtest``):
signal events with their context, the frequency baseline and one summary row. A parameters file is read by the one
reader, ``optimizer.study.paramsfile.load_params_record``.
Parameters follow the registry (``optimizer.params``); a ``weights`` preset and ``use_*`` switches are accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimizer.data.store import connect
from optimizer.engine.context import compute_context, market_regime_frame
from optimizer.engine.evaluate import Config, Evaluator, Result
from optimizer.engine.outcomes import backtest_summary, frequency_baseline, signal_events
from optimizer.engine.panel import Panel
from optimizer.params import engine_params
from optimizer.report.backtest import make_run_id, write_backtest, write_backtest_files, write_market_regimes
from optimizer.study.data import load_universe_panel

__all__ = ["BACKTEST_METRICS", "BacktestRun", "backtest", "save_backtest"]

# The metrics a backtest reports (``accumopt backtest`` prints them; JSON carries them), in display order.
BACKTEST_METRICS = (
    "total_signals", "total_trades", "hit_rate", "avg_return", "median_return", "win_loss", "sharpe",
    "portfolio_sharpe", "max_drawdown", "avg_hold_days", "signals_per_month", "false_positive_rate", "rank_score",
    "avg_excess_return", "avg_benchmark_return", "closed_trades", "open_at_end",
)


@dataclass(frozen=True, eq=False)
class BacktestRun:
    """A backtest: the engine ``Result`` on ``panel`` and what was written (``outputs``: run_id and file paths,
    empty when not saved)."""

    result: Result
    panel: Panel
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """The reported metrics (``BACKTEST_METRICS``)."""
        return {k: self.result.metrics[k] for k in BACKTEST_METRICS}


def save_backtest(res: Result, panel: Panel, db: str | Path, out_dir: str | Path = "output",
                  universe: Any = None) -> dict[str, str]:
    """Write the run to the ``bt_`` tables of the store at ``db`` and to files under ``out_dir``: signal events
    (with their context), the frequency baseline, one summary row (with ``universe``) and the market regimes of
    the panel's sessions. Returns the run_id and the file paths."""
    ctx = compute_context(panel)
    events = signal_events(res, panel, ctx)
    base = frequency_baseline(res.display, panel, res.config.thresholds, res.span, res.config.score.variant)
    summary = backtest_summary(res, events, panel, universe=universe)
    run_id = make_run_id(res.config, (str(panel.dates[0]), str(panel.dates[-1])), panel.fingerprint())
    con = connect(db)
    try:
        write_backtest(con, run_id, summary, events, base)
        write_market_regimes(con, market_regime_frame(panel, ctx))
    finally:
        con.close()
    files = write_backtest_files(summary, events, base, out_dir, run_id=run_id)
    return {"run_id": run_id, **{k: str(v) for k, v in files.items()}}


def backtest(params: Mapping[str, Any], db: str | Path, universe: Any = "tier1+3", start: str | None = None,
             end: str | None = None, save: bool = True, out_dir: str | Path = "output") -> BacktestRun:
    """Evaluate the configuration ``params`` on ``universe`` over [start, end] of the store at ``db`` (every
    session; default: all of daily_metrics). ``save``: also write the run (see ``save_backtest``)."""
    cfg = Config.from_params(engine_params(params))
    panel = load_universe_panel(db, universe, start, end)
    res = Evaluator(panel).run(cfg)
    return BacktestRun(res, panel, save_backtest(res, panel, db, out_dir, universe) if save else {})
