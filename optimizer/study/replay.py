"""Replay a stored trial: re-evaluate its parameters on the same data and compare with what the study stored.

The study's user attributes hold the spec text, the data fingerprint and the span it optimized over, so a trial can
be reproduced without the original command line. A different data fingerprint is refused, never silently compared.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from optimizer.errors import DataError
from optimizer.study.data import load_study_data, prepare_data
from optimizer.study.records import COMPARISON_COLUMNS, metrics_tolerance, read_study, read_trial, rounded_note
from optimizer.study.run import git_commit
from optimizer.study.storage import study_names
from optimizer.study.space import trial_config
from optimizer.study.trial import TrialObjective

__all__ = ["replay_trial"]


def _close(a: Any, b: Any, tol: float = 0.0) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    return a == b


def replay_trial(storage: Any, name: str, number: int, db: str | Path) -> dict[str, Any]:
    """Re-evaluate COMPLETE trial ``number`` of study ``name`` on the store ``db`` (same spec, span and folds as
    stored with the study; the trial's stored effective configuration) and compare value, overall metrics and
    per-fold metrics with the stored ones. The span ends before the final reserve by construction.
    ``{"reproduced", "comparison" (metric, stored, recomputed, equal: the columns of ``backtest --params``'s
    comparison), "params", "fingerprint", commits}``."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(study_names(storage)) or "(none)"
        raise DataError(f"no study named {name!r}; studies: {names}") from None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise DataError(f"study {name!r} has no trial {number} (trials 0..{max(trials) if trials else -1})")
    trial = trials[number]
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise DataError(f"trial {number} of {name!r} is {trial.state.name}; only COMPLETE trials can be replayed")
    rec = read_study(study)
    spec = rec.spec()
    if spec is None:
        raise DataError(f"study {name!r} was not created by accumopt (no spec_text attribute)")
    panel, reserve = load_study_data(spec, db)
    lo = 0 if rec.span_lo is None else int(rec.span_lo)
    hi = reserve if rec.span_hi is None else int(rec.span_hi)
    data = prepare_data(spec, panel, lo, hi, n_splits=rec.cv_n_splits, embargo=rec.embargo)
    if data.fingerprint != rec.data_fingerprint:
        raise DataError(
            f"the data differs from the study's (fingerprint {data.fingerprint} != stored {rec.data_fingerprint}); "
            "refusing to replay on other data"
        )
    out = TrialObjective(data).evaluate(dict(trial.params), trial_config(trial, spec))  # the stored configuration
    stored_trial = read_trial(trial)
    stored = stored_trial.metrics
    tol = metrics_tolerance(stored)  # a record of before 2026-12-03 rounded its metrics: that version's rule
    rows = []
    values = list(out["values"])
    for i, v in enumerate(values):
        sv = trial.values[i] if trial.values else None
        rows.append({"metric": "value" if len(values) == 1 else f"value_{i}", "stored": sv, "recomputed": v, "equal": _close(sv, v, tol)})
    for k, v in out["overall"].items():
        if k in stored:
            rows.append({"metric": k, "stored": stored[k], "recomputed": v, "equal": _close(stored[k], v, tol)})
    for i, (sf, rf) in enumerate(zip(stored_trial.folds, out["folds"])):
        for k in ("closed_trades", "rank_score", "avg_excess_return"):
            if k in sf:
                rows.append({"metric": f"fold{i}.{k}", "stored": sf[k], "recomputed": rf[k], "equal": _close(sf[k], rf[k], tol)})
    comp = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return {"study": name, "trial": number, "params": dict(trial.params), "reproduced": bool(comp["equal"].all()),
            "comparison": comp, "fingerprint": data.fingerprint,
            "stored_commit": rec.git_commit, "current_commit": git_commit(),
            "notes": [rounded_note(f"trial {number} of {name!r}")] if tol else []}
