"""The trial objective: suggest, combine, simulate and measure one configuration on every fold, reporting after
each so the pruner can stop it. Each trial stores a ``records.TrialRecord`` (its ``metrics`` and ``folds``)."""

from __future__ import annotations

import math
import time
from typing import Any

import optuna

from objectives import make_objective
from optimizer.engine.simulate import Span
from optimizer.study.data import StudyData
from optimizer.study.records import TrialRecord
from optimizer.study.space import params_to_config, suggest

__all__ = ["TrialObjective"]


def _clean(m: dict[str, float]) -> dict[str, float]:
    return {k: (round(v, 10) if isinstance(v, float) and math.isfinite(v) else v) for k, v in m.items()}


class TrialObjective:
    """Callable for ``study.optimize``: evaluates one configuration on every fold, reporting after each."""

    def __init__(self, data: StudyData) -> None:
        self.data = data
        self.spec = data.spec
        self.objective = make_objective(self.spec.objective.name)
        self.multi = len(self.spec.objective.directions) > 1

    def evaluate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Pure re-evaluation of stored params (``study replay``): fold metrics, value(s) and overall metrics."""
        cfg = params_to_config(params, self.spec)
        ev = self.data.evaluator
        disp = ev.display(cfg)
        folds = [_clean(ev.run(cfg, Span(f.test_start, f.test_end, f.data_end), disp, self.data.entry_ok).metrics)
                 for f in self.data.folds]
        values = self.objective.values(folds, self.spec.objective.aggregate, self.spec.objective.k)
        f0 = self.data.folds[0]
        overall = ev.run(cfg, Span(f0.test_start, self.data.hi, self.data.hi), disp, self.data.entry_ok).metrics
        return {"folds": folds, "values": values, "overall": overall}

    def __call__(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        t0 = time.perf_counter()
        values = suggest(trial, self.spec)
        cfg = params_to_config(values, self.spec)
        ev = self.data.evaluator
        disp = ev.display(cfg)
        fold_metrics: list[dict[str, float]] = []
        min_trades = self.spec.objective.min_trades
        for f in self.data.folds:
            m = ev.run(cfg, Span(f.test_start, f.test_end, f.data_end), disp, self.data.entry_ok).metrics
            fold_metrics.append(_clean(m))
            reason = None
            if m["closed_trades"] < min_trades:
                reason = f"fold {f.fold}: {int(m['closed_trades'])} closed trades < min_trades {min_trades}"
            elif not self.multi:
                trial.report(self.objective.fold_value(m), f.fold)
                if trial.should_prune():
                    reason = f"fold {f.fold}: pruner {self.spec.pruner.name} stopped the trial (fold value {self.objective.fold_value(m):.6g})"
            if reason is not None:
                TrialRecord.pruned(f.fold, reason, fold_metrics, time.perf_counter() - t0).write(trial)
                raise optuna.TrialPruned(reason)
        result = self.objective.values(fold_metrics, self.spec.objective.aggregate, self.spec.objective.k)
        f0 = self.data.folds[0]
        overall = ev.run(cfg, Span(f0.test_start, self.data.hi, self.data.hi), disp, self.data.entry_ok).metrics
        ws, wl, wp = cfg.score.weights
        overall = _clean(overall) | {"w_short_norm": round(ws, 6), "w_lit_norm": round(wl, 6), "w_price_norm": round(wp, 6)}
        TrialRecord.complete(overall, fold_metrics, time.perf_counter() - t0).write(trial)
        return result if self.multi else result[0]
