"""The trial objective: suggest, combine, simulate and measure one configuration on every fold, reporting after
each so the pruner can stop it. Each trial stores a ``records.TrialRecord``: its effective configuration
(``records.ConfigRecord``, written as soon as its parameters are drawn), then its ``metrics`` and ``folds``.

A configuration the study already evaluated (same effective configuration: same trades on the same data) is not
run again: the trial reuses the stored result (same value, or pruned with the same reason) and is marked
``repeat_of`` the earlier trial. A trial that raises stores the reason (``fail_reason``) and raises
``TrialFailed`` (Optuna marks it FAIL, the run goes on); an objective value that is not finite fails the trial
the same way. Errors of the tool's own kind (``AccumoptError``) are not trial failures: they stop the run."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import make_objective
from optimizer.engine.evaluate import Config
from optimizer.engine.simulate import Span
from optimizer.errors import AccumoptError
from optimizer.study.data import StudyData
from optimizer.study.records import ConfigRecord, TrialRecord, find_repeat, read_trial, write_config
from optimizer.study.space import params_to_config, suggest

__all__ = ["TrialObjective", "TrialFailed", "NO_FOLD_VALUE"]

# The fold report of a trial pruned for ``min_trades`` at that fold: it had too few trades to have a value there.
# NaN, so Optuna stores no value for the pruned trial (its rule: a pruned trial's value is its last report, unless
# that is NaN) and optuna-dashboard, ``study show --trial`` and ``study export`` all show none; without the report
# the trial's value was the PREVIOUS fold's, shown as the value it was pruned with. Pruners never read it (they
# compare completed trials, or rung values of trials they checked); TPE ranks such a trial among those stopped at
# that fold, below every one of them with a value.
NO_FOLD_VALUE = math.nan


class TrialFailed(Exception):
    """A trial raised an error that is not one of the tool's own: its reason is stored on the trial, Optuna marks
    it FAIL and the run goes on (``run_study`` catches this class only)."""


def _clean(m: dict[str, float]) -> dict[str, float]:
    """Metrics as stored: plain Python floats at full precision (JSON keeps a float's shortest repr, which reads
    back to the same bits), so a stored trial re-run through ``backtest --params`` or ``study replay`` compares
    bit for bit."""
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in m.items()}


class TrialObjective:
    """Callable for ``study.optimize``: evaluates one configuration on every fold, reporting after each."""

    def __init__(self, data: StudyData) -> None:
        self.data = data
        self.spec = data.spec
        self.objective = make_objective(self.spec.objective.name, self.spec.objective.options)
        self.multi = len(self.spec.objective.directions) > 1
        self._context = dict(
            universe=self.spec.data.universe, symbols=data.panel.symbols, dates=data.panel.dates,
            signal_start=data.folds[0].test_start, signal_end=data.hi, data_end=data.hi,
            reserve_start=data.reserve_start, regime=self.spec.data.regime, min_periods=self.spec.data.min_periods,
            fingerprint=data.fingerprint, study_end=data.study_end,
        )

    def config_record(self, cfg: Config) -> ConfigRecord:
        """The effective configuration of ``cfg`` on this study's data (what the trial stores)."""
        return ConfigRecord.of(cfg, **self._context)

    def evaluate(self, params: dict[str, Any], cfg: Config | None = None) -> dict[str, Any]:
        """Pure re-evaluation of stored params (``study replay``), or of the configuration ``cfg`` itself: fold
        metrics, value(s) and overall metrics."""
        cfg = cfg if cfg is not None else params_to_config(params, self.spec)
        ev = self.data.evaluator
        disp = ev.display(cfg)
        folds = [_clean(ev.run(cfg, Span(f.test_start, f.test_end, f.data_end), disp, self.data.entry_ok).metrics)
                 for f in self.data.folds]
        values = self.objective.values(folds, self.spec.objective.aggregate, self.spec.objective.k,
                                         self.spec.objective.directions)
        f0 = self.data.folds[0]
        overall = ev.run(cfg, Span(f0.test_start, self.data.hi, self.data.hi), disp, self.data.entry_ok).metrics
        return {"folds": folds, "values": values, "overall": overall}

    def _reuse(self, trial: optuna.trial.Trial, prev: FrozenTrial, record: ConfigRecord,
               t0: float) -> float | tuple[float, ...]:
        """Return (or prune with) the stored result of ``prev``, the same configuration evaluated earlier."""
        stored = read_trial(prev)
        rec = TrialRecord(stored.metrics, stored.folds, record.to_dict()).repeat(prev.number, time.perf_counter() - t0)
        if not self.multi:
            for step, v in sorted(prev.intermediate_values.items()):
                trial.report(v, step)
        rec.write(trial)
        if prev.state == TrialState.PRUNED:
            raise optuna.TrialPruned(stored.pruned_reason or f"pruned like trial {prev.number}")
        return tuple(prev.values) if self.multi else prev.values[0]

    def __call__(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        t0 = time.perf_counter()
        values = suggest(trial, self.spec)
        cfg = params_to_config(values, self.spec)
        record = self.config_record(cfg)
        write_config(trial, record)
        study = getattr(trial, "study", None)  # a FixedTrial has none: nothing to repeat
        prev = None if study is None else find_repeat(
            study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)), record.key,
            before=trial.number)
        if prev is not None:
            return self._reuse(trial, prev, record, t0)
        fold_metrics: list[dict[str, float]] = []
        try:
            return self._run(trial, cfg, record, fold_metrics, t0)
        except (optuna.TrialPruned, AccumoptError):
            raise
        except Exception as e:  # noqa: BLE001 - the reason is stored on the trial, then Optuna marks it FAIL
            reason = f"{type(e).__name__}: {e}"
            TrialRecord.failed(reason, fold_metrics, time.perf_counter() - t0, record.to_dict()).write(trial)
            raise TrialFailed(reason) from e

    def _run(self, trial: optuna.trial.Trial, cfg: Config, record: ConfigRecord, fold_metrics: list[dict[str, float]],
             t0: float) -> float | tuple[float, ...]:
        ev = self.data.evaluator
        disp = ev.display(cfg)
        min_trades = self.spec.objective.min_trades
        for f in self.data.folds:
            m = ev.run(cfg, Span(f.test_start, f.test_end, f.data_end), disp, self.data.entry_ok).metrics
            fold_metrics.append(_clean(m))
            reason = None
            if m["closed_trades"] < min_trades:
                reason = f"fold {f.fold}: {int(m['closed_trades'])} closed trades < min_trades {min_trades}"
                if not self.multi:  # NO_FOLD_VALUE: the trial had no value here, and Optuna then stores none
                    trial.report(NO_FOLD_VALUE, f.fold)  # (else the previous fold's value became the trial's)
            elif not self.multi:
                trial.report(self.objective.fold_value(m), f.fold)
                if trial.should_prune():
                    reason = f"fold {f.fold}: pruner {self.spec.pruner.name} stopped the trial (fold value {self.objective.fold_value(m):.6g})"
            if reason is not None:
                TrialRecord.pruned(f.fold, reason, fold_metrics, time.perf_counter() - t0, record.to_dict()).write(trial)
                raise optuna.TrialPruned(reason)
        result = self.objective.values(fold_metrics, self.spec.objective.aggregate, self.spec.objective.k,
                                             self.spec.objective.directions)
        f0 = self.data.folds[0]
        overall = ev.run(cfg, Span(f0.test_start, self.data.hi, self.data.hi), disp, self.data.entry_ok).metrics
        ws, wl, wp = cfg.score.weights
        overall = _clean(overall) | {"w_short_norm": round(ws, 6), "w_lit_norm": round(wl, 6), "w_price_norm": round(wp, 6)}
        bad = [i for i, v in enumerate(result) if not math.isfinite(v)]
        if bad:  # Optuna fails a trial whose value is nan: an infinite one too, with the reason stored
            TrialRecord.failed(f"objective value {result[bad[0]]} is not finite (fold values "
                               f"{[round(self.objective.fold_value(m), 6) for m in fold_metrics]})",
                               fold_metrics, time.perf_counter() - t0, record.to_dict()).write(trial)
            result = tuple(math.nan if i in bad else v for i, v in enumerate(result))
        else:
            TrialRecord.complete(overall, fold_metrics, time.perf_counter() - t0, record.to_dict()).write(trial)
        return result if self.multi else result[0]
