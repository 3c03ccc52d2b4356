"""The ONE owner of what accumopt stores on an Optuna study and its trials (user attributes).

Everything is plain JSON in Optuna's user attributes, so optuna-dashboard and ``optuna.load_study`` show it as is.
Nothing else in the package reads or writes a user attribute by its string key: it goes through this module.

* ``StudyRecord``: written once when ``open_study`` creates a study (the spec text and hash, the data
  fingerprint, version and commit, the objective, the span and folds the study optimizes over, the purge /
  embargo / inner splits, regime, universe size, trial target, creation time; a walk-forward window's study also
  holds its window: ``wf_window``, ``wf_train``, ``wf_test``, ``last_session_seen``). ``read_study`` /
  ``write_study``; ``StudyRecord.spec()`` parses the stored spec.
* ``TrialRecord``: the two JSON attributes of a trial: ``metrics`` (overall metrics of a complete trial, or the
  pruning information of a pruned one, with ``duration_s`` and ``pruned_at_fold``) and ``folds`` (per-fold
  metrics); ``config`` is reserved for the trial's complete effective configuration. ``read_trial``,
  ``TrialRecord.complete`` / ``pruned`` and ``write``.
* Markers: ``seeded`` (phase-B seeding done) and the reserve-opening log (``openings`` on the
  ``<study>-reserve-log`` study).
* Reading a study's trials: ``trial_counts``, ``complete_trials``, ``direction_sign``, ``ranked_trials``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optimizer.errors import DataError, ParameterError, SpecError
from optimizer.study.spec import StudySpec, parse_spec

__all__ = [
    "StudyRecord", "TrialRecord", "read_study", "write_study", "read_trial", "STUDY_KEYS", "METRICS", "FOLDS",
    "CONFIG", "SEEDED", "OPENINGS", "seeded", "mark_seeded", "reserve_openings", "add_reserve_opening",
    "reserve_log_name", "window_attrs", "trial_counts", "complete_trials", "direction_sign", "ranked_trials",
]

# trial attribute keys
METRICS = "metrics"
FOLDS = "folds"
CONFIG = "config"
# study marker keys
SEEDED = "seeded"
OPENINGS = "openings"
_WINDOW_KEYS = ("wf_window", "wf_train", "wf_test", "last_session_seen")


# ------------------------------------------------------------------------------------------------ study


@dataclass(frozen=True)
class StudyRecord:
    """What a study stores about itself; each field is one user attribute of the same name.

    Every field is optional on reading (a study made by another tool, or by an older accumopt, lacks some);
    ``folds`` holds ``(fold, first test date, last test date)`` per inner fold."""

    spec_hash: str | None = None
    spec_text: str | None = None
    spec_path: str | None = None
    spec_name: str | None = None
    data_fingerprint: str | None = None
    accumopt_version: str | None = None
    git_commit: str | None = None
    objective: str | None = None
    aggregate: str | None = None
    train_start: str | None = None
    train_end: str | None = None
    symbols: int | None = None
    folds: tuple[tuple[int, str, str], ...] = ()
    purge: int | None = None
    embargo: int | None = None
    cv_n_splits: int | None = None
    span_lo: int | None = None
    span_hi: int | None = None
    regime: str | None = None
    n_trials_target: int | None = None
    created: str | None = None
    kernel_warmup_s: float | None = None  # numba kernels compiled / loaded before the first trial (0.0: already warm)
    # a walk-forward window's study
    wf_window: int | None = None
    wf_train: tuple[str, str] | None = None
    wf_test: tuple[str, str] | None = None
    last_session_seen: str | None = None

    def __post_init__(self) -> None:  # JSON gives lists: hold tuples so records compare and hash by value
        object.__setattr__(self, "folds", tuple(tuple(f) for f in self.folds or ()))
        for k in ("wf_train", "wf_test"):
            if getattr(self, k) is not None:
                object.__setattr__(self, k, tuple(getattr(self, k)))

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "StudyRecord":
        """The record from a study's user attributes (unknown keys are ignored, missing ones are None)."""
        return cls(**{f.name: attrs[f.name] for f in fields(cls) if f.name in attrs})

    def to_attrs(self) -> dict[str, Any]:
        """The user attributes to store: every field (None included, so a missing commit reads as None), the
        walk-forward window only for a window's study; tuples as JSON lists."""
        out = {k: (list(map(list, v)) if k == "folds" else list(v) if isinstance(v, tuple) else v)
               for k, v in asdict(self).items()}
        for k in _WINDOW_KEYS:
            if out[k] is None:
                del out[k]
        return out

    def spec(self) -> StudySpec | None:
        """The StudySpec stored with the study (None when the study was not made by accumopt). A stored spec
        that no longer parses is a DataError (the study's fixed parameters and span cannot be recovered)."""
        if not self.spec_text:
            return None
        try:
            return parse_spec(self.spec_text, path=self.spec_path)
        except SpecError as e:
            raise DataError(f"the spec stored with study {self.spec_name!r} no longer parses ({e})") from None


STUDY_KEYS: tuple[str, ...] = tuple(f.name for f in fields(StudyRecord))


def window_attrs(index: int, train: Sequence[str], test: Sequence[str], last_session_seen: str) -> dict[str, Any]:
    """The walk-forward window fields of a window's study record (``extra_attrs`` of ``run_study``)."""
    return {"wf_window": index, "wf_train": list(train), "wf_test": list(test), "last_session_seen": last_session_seen}


def read_study(study: optuna.Study) -> StudyRecord:
    return StudyRecord.from_attrs(study.user_attrs)


def write_study(study: optuna.Study, record: StudyRecord) -> None:
    for k, v in record.to_attrs().items():
        study.set_user_attr(k, v)


def _now_iso() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------ trial


@dataclass(frozen=True)
class TrialRecord:
    """A trial's two JSON attributes. ``metrics``: a complete trial's overall metrics plus ``duration_s`` and
    ``pruned_at_fold`` (None); a pruned trial's ``pruned_at_fold``, ``pruned_reason`` and ``duration_s``.
    ``folds``: one metrics dict per evaluated fold. ``config``: the complete effective configuration (None when
    not stored)."""

    metrics: Mapping[str, Any] = field(default_factory=dict)
    folds: Sequence[Mapping[str, Any]] = ()
    config: Mapping[str, Any] | None = None

    @classmethod
    def complete(cls, overall: Mapping[str, Any], folds: Sequence[Mapping[str, Any]], duration_s: float,
                 config: Mapping[str, Any] | None = None) -> "TrialRecord":
        return cls({**overall, "duration_s": round(duration_s, 6), "pruned_at_fold": None}, list(folds), config)

    @classmethod
    def pruned(cls, fold: int, reason: str, folds: Sequence[Mapping[str, Any]], duration_s: float,
               config: Mapping[str, Any] | None = None) -> "TrialRecord":
        return cls({"pruned_at_fold": fold, "pruned_reason": reason, "duration_s": round(duration_s, 6)},
                   list(folds), config)

    @property
    def duration_s(self) -> float | None:
        d = self.metrics.get("duration_s")
        return float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else None

    @property
    def pruned_at_fold(self) -> int | None:
        f = self.metrics.get("pruned_at_fold")
        return int(f) if isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f) else None

    @property
    def pruned_reason(self) -> str | None:
        return self.metrics.get("pruned_reason")

    def write(self, trial: optuna.trial.BaseTrial) -> None:
        trial.set_user_attr(FOLDS, list(self.folds))
        trial.set_user_attr(METRICS, dict(self.metrics))
        if self.config is not None:
            trial.set_user_attr(CONFIG, dict(self.config))


def read_trial(t: FrozenTrial) -> TrialRecord:
    """A trial's record; attributes of the wrong shape (not written by accumopt) read as empty."""
    m, f, c = t.user_attrs.get(METRICS), t.user_attrs.get(FOLDS), t.user_attrs.get(CONFIG)
    return TrialRecord(m if isinstance(m, dict) else {}, f if isinstance(f, list) else [],
                       c if isinstance(c, dict) else None)


# ------------------------------------------------------------------------------------------------ markers


def seeded(study: optuna.Study) -> dict[str, Any] | None:
    """``{"from": study, "n": k}`` once the study was seeded from an earlier one, else None."""
    return study.user_attrs.get(SEEDED) or None


def mark_seeded(study: optuna.Study, source: str, n: int) -> None:
    study.set_user_attr(SEEDED, {"from": source, "n": int(n)})


def reserve_log_name(study_name: str) -> str:
    """The marker study that records openings of the final reserve of ``study_name``'s data."""
    return f"{study_name}-reserve-log"


def reserve_openings(log: optuna.Study) -> list[dict[str, str]]:
    """Every recorded opening: ``{"reserve_start": date, "at": ISO time}``, oldest first."""
    return list(log.user_attrs.get(OPENINGS, []))


def add_reserve_opening(log: optuna.Study, reserve_start: str) -> list[dict[str, str]]:
    """Record one more opening of the reserve starting ``reserve_start``; returns the openings before it."""
    before = reserve_openings(log)
    log.set_user_attr(OPENINGS, before + [{"reserve_start": reserve_start, "at": _now_iso()}])
    return before


# ------------------------------------------------------------------------------------------------ trials


def trial_counts(trials: optuna.Study | Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials by state: complete, pruned, failed, running, waiting."""
    ts = trials.get_trials(deepcopy=False) if isinstance(trials, optuna.Study) else trials
    states = [t.state for t in ts]
    return {k: sum(s == st for s in states) for k, st in (
        ("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED), ("failed", TrialState.FAIL),
        ("running", TrialState.RUNNING), ("waiting", TrialState.WAITING))}


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials that hold values, in trial-number order."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]


def direction_sign(direction: StudyDirection) -> float:
    """-1 for maximize, +1 for minimize: ``sorted(key=sign * value)`` puts the best first."""
    if direction not in (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE):
        raise ParameterError(f"direction must be maximize or minimize, got direction={direction!r}")
    return -1.0 if direction == StudyDirection.MAXIMIZE else 1.0


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials best first (ties: lower trial number first); for several objectives the Pareto front
    sorted by the first objective."""
    pool = study.best_trials if len(study.directions) > 1 else complete_trials(study)
    s = direction_sign(study.directions[0])
    return sorted(pool, key=lambda t: (s * t.values[0], t.number))
