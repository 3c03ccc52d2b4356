"""The ONE owner of what accumopt stores on an Optuna study and its trials (user attributes).

Everything is plain JSON in Optuna's user attributes, so optuna-dashboard and ``optuna.load_study`` show it as is.
Nothing else in the package reads or writes a user attribute by its string key: it goes through this module.

* ``StudyRecord``: written once when ``open_study`` creates a study (the spec text and hash, the data
  fingerprint, version and commit, the objective, the span and folds the study optimizes over, the purge /
  embargo / inner splits, regime, universe size, trial target, creation time; a walk-forward window's study also
  holds its window: ``wf_window``, ``wf_train``, ``wf_test``, ``last_session_seen``). ``read_study`` /
  ``write_study``; ``StudyRecord.spec()`` parses the stored spec.
* ``TrialRecord``: the JSON attributes of a trial: ``metrics`` (overall metrics of a complete trial, the pruning
  information of a pruned one or the reason of a failed one, with ``duration_s`` and ``pruned_at_fold``),
  ``folds`` (per-fold metrics, exact; for optuna-dashboard, which cuts an attribute at 1,024 characters, also one
  ``fold_<i>`` a fold at 6 significant digits, display only: ``shown_fold``), ``config`` (the trial's complete
  effective configuration, a ``ConfigRecord``, written as soon as the trial's parameters are drawn) and
  ``repeat_of`` (the trial whose stored result a repeated configuration reused). ``read_trial``, ``write_config``, ``TrialRecord.complete`` / ``pruned`` / ``failed`` /
  ``repeat`` and ``write``.
* ``ConfigRecord``: everything that decides a trial's numbers: every engine parameter after fixed values, presets
  and conditions (costs, caps and sizing included), the universe (spec value, size and hash of the resolved
  symbols), the span (panel start, signal start / end, data end, reserve start, study end), regime filter,
  min_periods and the data fingerprint. ``study best`` writes it and ``backtest --params`` reads it back
  (``optimizer.study.paramsfile``).
* A walk-forward window's evaluated result (``wf_result`` on the window's study: the winner's out-of-sample
  evaluation, the window's DSR, PBO and SPA, under the key of everything they were computed from):
  ``write_window_result`` / ``read_window_result``, so a resumed walk-forward does not compute a finished window
  again; ``trials_digest`` identifies the trials a result was computed from.
* Markers: ``seeded`` (phase-B seeding done: source, trials and the narrowed weight space); the legacy
  reserve-opening log (``openings`` on a ``<study>-reserve-log`` study; the ledger now lives in the DuckDB store,
  ``optimizer.study.reserve``).
* ``LOST`` / ``RETRY_OF`` (``lost_reason``, ``retry_of``): why the heartbeat check failed a trial (its process was
  killed) and, on its retry, the failed trial's number; written by the storage's heartbeat override
  (``storage._BudgetRDBStorage``), which defines the keys. ``end_claim``: why a window claim ends unfinished.
* Reading a study's trials: ``trial_counts``, ``complete_trials``, ``direction_sign``, ``ranked_trials``,
  ``distinct_configurations`` (what DSR, PBO and SPA count), ``find_repeat``; ``is_internal`` tells the marker
  studies that listings hide.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optimizer import engine  # engine.evaluate.Config when a record is turned into one (not at import: no kernels)
from optimizer.data.calendar import stamp
from optimizer.errors import DataError, ParameterError, SpecError
from optimizer.params import PARAMS
from optimizer.study.spec import StudySpec, parse_spec
from optimizer.study.storage import LOST, RETRY_OF, user_attrs_in_one_transaction

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy

    from optimizer.engine.evaluate import Config

__all__ = [
    "StudyRecord", "TrialRecord", "ConfigRecord", "read_study", "write_study", "read_trial", "write_config",
    "config_key", "COMPARISON_COLUMNS",
    "STUDY_KEYS", "METRICS", "FOLDS", "FOLD_SHOWN", "fold_key", "shown_fold", "CONFIG", "REPEAT_OF",
    "SEEDED", "OPENINGS", "seeded", "seeded_label",
    "mark_seeded", "reserve_openings", "add_reserve_opening", "reserve_log_name", "is_internal", "window_attrs",
    "set_trials_target", "trial_counts", "complete_trials", "direction_sign", "ranked_trials",
    "distinct_configurations", "configuration_identities", "group_configurations", "find_repeat", "WF_RUN", "WF_CLAIM", "claims_name",
    "write_wf_run", "read_wf_run", "claim_template", "read_claim", "WF_RESULT", "write_window_result",
    "read_window_result", "trials_digest", "lost_to_kill", "LEGACY_ROUNDED_TOLERANCE", "rounded_metrics",
    "metrics_tolerance", "rounded_note", "defaulted_note", "LOST", "RETRY_OF", "lost_reason", "retry_of",
    "end_claim",
]

# the columns of a comparison of a trial's stored metrics with its configuration evaluated again: `backtest
# --params` (backtest.compare_metrics) and `study replay` (study.replay) make the same table, one name a column
# (JSON keys too; before 2026-12-05 the recomputed value was `backtest` in one and `replayed` in the other)
COMPARISON_COLUMNS = ("metric", "stored", "recomputed", "equal")

# trial attribute keys
METRICS = "metrics"
FOLDS = "folds"
# what optuna-dashboard shows of the folds: one attribute per fold, ``fold_0``, ``fold_1``, ... (``fold_key``), its
# metrics at 6 significant digits (``shown_fold``). Display only: ``folds`` holds the exact values, which every
# reader of the tool reads (``read_trial``); a study written before 2026-12-05 has no ``fold_<i>`` and reads the same.
FOLD_SHOWN = "fold_"
SHOWN_DIGITS = 6
DASHBOARD_CHARS = 1024  # optuna-dashboard (0.21) shows an attribute's first 1,024 characters
CONFIG = "config"
REPEAT_OF = "repeat_of"
# study marker keys
SEEDED = "seeded"
OPENINGS = "openings"
# a distributed walk-forward's claims study: the run's settings on the study, one claim per trial
WF_RUN = "wf_run"
WF_CLAIM = "wf_claim"
# a walk-forward window's evaluated result, on the window's study
WF_RESULT = "wf_result"
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
    universe: Any = None
    reserve_start: str | None = None
    coverage: Mapping[str, Any] | None = None
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
            return parse_spec(self.spec_text, path=self.spec_path, stored=True)
        except SpecError as e:
            raise DataError(f"the spec stored with study {self.spec_name!r} no longer parses ({e})") from None


STUDY_KEYS: tuple[str, ...] = tuple(f.name for f in fields(StudyRecord))


def window_attrs(index: int, train: Sequence[str], test: Sequence[str], last_session_seen: str) -> dict[str, Any]:
    """The walk-forward window fields of a window's study record (``extra_attrs`` of ``run_study``)."""
    return {"wf_window": index, "wf_train": list(train), "wf_test": list(test), "last_session_seen": last_session_seen}


def read_study(study: optuna.Study | FrozenStudy) -> StudyRecord:
    """The record of a study, or of a ``FrozenStudy`` (``storage.get_all_studies()``: no trial read)."""
    return StudyRecord.from_attrs(study.user_attrs)


def write_study(study: optuna.Study, record: StudyRecord) -> None:
    """Store ``record`` on ``study`` (its user attributes), in one transaction where the storage allows it."""
    attrs = record.to_attrs()
    if not user_attrs_in_one_transaction(study, attrs):
        for k, v in attrs.items():
            study.set_user_attr(k, v)


def _now_iso() -> str:
    return stamp()  # New York time with its offset, whatever the machine's zone


def set_trials_target(study: optuna.Study, n: int) -> None:
    """Record what the study was asked to run (``n_trials_target``). Only a run that asks for more calls it
    (``run.open_study``): a resume asking for fewer runs no trial and leaves the target, so the target is never
    below the trials the study holds."""
    study.set_user_attr("n_trials_target", int(n))


# ------------------------------------------------------------------------------------------------ configuration


def _plain(v: Any, digits: int | None = None) -> Any:
    """JSON-ready value; floats kept exactly (``digits`` None: JSON writes the shortest repr, which reads back to
    the same bits) or rounded to ``digits`` significant digits."""
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return float(f"{v:.{digits}g}") if digits is not None and math.isfinite(v) else v
    if isinstance(v, Mapping):
        return {str(k): _plain(x, digits) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x, digits) for x in v]
    return _plain(v.item(), digits) if hasattr(v, "item") else str(v)


def _canonical(v: Any) -> Any:
    """JSON-ready value with floats rounded to 12 significant digits: the identity of a configuration (keys of
    configurations equal to 12 digits are equal). What is STORED keeps every bit (``_plain``)."""
    return _plain(v, 12)


def config_key(params: Mapping[str, Any]) -> str:
    """16 hex chars of sha256 over the canonical engine parameters: equal configurations have equal keys. A registry
    parameter ``params`` lacks counts at its default: a record written before the parameter existed ran it at its
    default (a parameter is added with the earlier behaviour as its default), so such a record of a configuration
    has the key today's complete record of it has."""
    doc = json.dumps(_canonical(_DEFAULTS | dict(params)), sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


_DEFAULTS: dict[str, Any] = {k: p.default for k, p in PARAMS.items()}


def _stored_key(c: Mapping[str, Any]) -> str:
    """The configuration key of a stored ``ConfigRecord`` JSON: its ``key``, computed again when its params lack a
    registry parameter (a record written before the parameter existed stored the key of its shorter params: the same
    configuration as today's complete record, under another key)."""
    key = c.get("key")
    return key if key and c["params"].keys() >= _DEFAULTS.keys() else config_key(c["params"])


def _symbols_sha(symbols: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(symbols).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ConfigRecord:
    """A trial's complete effective configuration: what ``backtest --params`` needs to reproduce it exactly.

    ``params``: every engine parameter of the registry (``Config.to_params``: fixed values, presets and
    conditions applied; costs, caps and sizing included). ``universe``: the spec's value (a tier name or a list),
    ``symbols`` / ``symbols_sha``: how many symbols it resolved to and a hash of their sorted list. The span as
    dates: ``panel_start`` (first session loaded: z-scores depend on it), ``signal_start`` .. ``signal_end``
    (signals counted), ``data_end`` (last session visible), ``reserve_start`` (first session of the final reserve;
    None without one), ``study_end`` (last session of the study's data, its final reserve included: the spec's
    ``[data].end`` as a session, else the store's last session when the study ran; where ``backtest --final`` and
    ``sandbox --final`` stop, as ``walkforward --final`` does; None in a record written before 2026-12-05).
    ``regime``: the entry filter; ``min_periods``: of the z-scores; ``data_fingerprint``: of the panel the trial
    saw."""

    params: Mapping[str, Any]
    universe: Any = None
    symbols: int | None = None
    symbols_sha: str | None = None
    panel_start: str | None = None
    signal_start: str | None = None
    signal_end: str | None = None
    data_end: str | None = None
    reserve_start: str | None = None
    regime: str = "ALL"
    min_periods: int | None = None
    data_fingerprint: str | None = None
    study_end: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", dict(_plain(dict(self.params))))  # exact: the trial's own floats
        if isinstance(self.universe, (list, tuple)):
            object.__setattr__(self, "universe", tuple(self.universe))

    @property
    def key(self) -> str:
        """The configuration's identity (engine parameters only): equal keys = the same trades on the same data."""
        return config_key(self.params)

    def config(self) -> Config:
        """The engine configuration (every key checked by ``Config.from_params``)."""
        return engine.evaluate.Config.from_params(self.params)

    @classmethod
    def of(cls, config: Config, *, universe: Any, symbols: Sequence[str], dates: Sequence[Any], signal_start: int,
           signal_end: int, data_end: int, reserve_start: Any, regime: str, min_periods: int | None,
           fingerprint: str, study_end: Any = None) -> "ConfigRecord":
        """The record of ``config`` run on a panel whose sessions are ``dates`` (row indices: the signal span
        ``[signal_start, signal_end)``, data visible up to ``data_end`` exclusive); ``study_end``: the last session
        of the study's data, final reserve included (a date)."""
        d = [str(x)[:10] for x in (dates[0], dates[signal_start], dates[signal_end - 1], dates[data_end - 1])]
        return cls(config.to_params(), list(universe) if isinstance(universe, (list, tuple)) else universe,
                   len(symbols), _symbols_sha(symbols), d[0], d[1], d[2], d[3],
                   None if reserve_start is None else str(reserve_start)[:10], regime, min_periods, fingerprint,
                   None if study_end is None else str(study_end)[:10])

    def context(self) -> dict[str, Any]:
        """Everything but the parameters (the data the configuration ran on)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("params", "key")}

    def check_start(self, first: _dt.date, flag: str = "start") -> None:
        """Refuse a signal start ``first`` (``--start``) before the panel start: a run of this record loads its
        panel from ``panel_start`` (the z-scores warm up from it, as in the study), so an earlier start would
        silently begin at the panel start instead."""
        if self.panel_start is not None and first.isoformat() < self.panel_start:
            raise ParameterError(f"{flag} must be on or after {self.panel_start}, the trial's panel start (its z-scores "
                                 f"warm up from it, as in the study), got {flag}={first.isoformat()}; to start earlier, "
                                 "pass the trial's parameters without its record (the file's \"params\" object)")

    def defaulted(self) -> tuple[str, ...]:
        """The engine parameters this record does not hold: a record written before they existed (one of 5080b8c
        holds 20 of today's 44). Each runs at its default, which is how the trial ran (a parameter is added with
        the earlier behaviour as its default); ``defaulted_note`` says so."""
        return tuple(k for k in _DEFAULTS if k not in self.params)

    def symbols_match(self, symbols: Sequence[str]) -> bool:
        return self.symbols_sha is None or _symbols_sha(symbols) == self.symbols_sha

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON: ``key``, ``universe``, ``symbols``, ``symbols_sha``, ``span`` {``start``, ``end``,
        ``panel_start``, ``data_end``, ``study_end``}, ``reserve_start``, ``regime``, ``min_periods``,
        ``data_fingerprint``, ``params``. ``params`` (~1,000 characters) comes last: optuna-dashboard shows an
        attribute's first 1,024 characters only, so the span, reserve, regime and fingerprint stay in view, and the
        trial's parameters are its Optuna params there too."""
        return {
            "key": self.key,
            "universe": list(self.universe) if isinstance(self.universe, tuple) else self.universe,
            "symbols": self.symbols, "symbols_sha": self.symbols_sha,
            "span": {"start": self.signal_start, "end": self.signal_end, "panel_start": self.panel_start,
                     "data_end": self.data_end, "study_end": self.study_end},
            "reserve_start": self.reserve_start, "regime": self.regime, "min_periods": self.min_periods,
            "data_fingerprint": self.data_fingerprint, "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ConfigRecord":
        """The record from its stored JSON (``to_dict``); a malformed one is a DataError."""
        if not isinstance(d, Mapping) or not isinstance(d.get("params"), Mapping):
            raise DataError(f"a configuration record must be an object with a params object, got {d!r:.200}")
        span = d.get("span") or {}
        if not isinstance(span, Mapping):
            raise DataError(f"a configuration record's span must be an object, got span={span!r}")
        return cls(d["params"], d.get("universe"), d.get("symbols"), d.get("symbols_sha"), span.get("panel_start"),
                   span.get("start"), span.get("end"), span.get("data_end"), d.get("reserve_start"),
                   d.get("regime") or "ALL", d.get("min_periods"), d.get("data_fingerprint"), span.get("study_end"))


def write_config(trial: optuna.trial.BaseTrial, record: ConfigRecord) -> None:
    """Store the trial's effective configuration (as soon as its parameters are drawn: a failed trial keeps it)."""
    trial.set_user_attr(CONFIG, record.to_dict())


# ------------------------------------------------------------------------------------------------ trial


@dataclass(frozen=True)
class TrialRecord:
    """A trial's JSON attributes. ``metrics``: a complete trial's overall metrics plus ``duration_s`` and
    ``pruned_at_fold`` (None); a pruned trial's ``pruned_at_fold``, ``pruned_reason`` and ``duration_s``; a failed
    one's ``fail_reason``. ``folds``: one metrics dict per evaluated fold. ``config``: the complete effective
    configuration (the ``ConfigRecord`` JSON; None when not stored). ``repeat_of``: the number of the earlier
    trial of the same configuration whose result this one reused (None: evaluated)."""

    metrics: Mapping[str, Any] = field(default_factory=dict)
    folds: Sequence[Mapping[str, Any]] = ()
    config: Mapping[str, Any] | None = None
    repeat_of: int | None = None

    @classmethod
    def complete(cls, overall: Mapping[str, Any], folds: Sequence[Mapping[str, Any]], duration_s: float,
                 config: Mapping[str, Any] | None = None) -> "TrialRecord":
        return cls({**overall, "duration_s": round(duration_s, 6), "pruned_at_fold": None}, list(folds), config)

    @classmethod
    def pruned(cls, fold: int, reason: str, folds: Sequence[Mapping[str, Any]], duration_s: float,
               config: Mapping[str, Any] | None = None) -> "TrialRecord":
        return cls({"pruned_at_fold": fold, "pruned_reason": reason, "duration_s": round(duration_s, 6)},
                   list(folds), config)

    @classmethod
    def failed(cls, reason: str, folds: Sequence[Mapping[str, Any]], duration_s: float,
               config: Mapping[str, Any] | None = None) -> "TrialRecord":
        return cls({"fail_reason": str(reason), "duration_s": round(duration_s, 6)}, list(folds), config)

    def repeat(self, of: int, duration_s: float) -> "TrialRecord":
        """This (stored) result reused by a later trial of the same configuration: same metrics, folds and
        pruning reason, its own duration, marked ``repeat_of``."""
        return TrialRecord({**self.metrics, "duration_s": round(duration_s, 6)}, list(self.folds), self.config, int(of))

    @property
    def config_record(self) -> ConfigRecord | None:
        """The stored effective configuration as a ``ConfigRecord`` (None when the trial has none)."""
        return None if self.config is None else ConfigRecord.from_dict(self.config)

    @property
    def fail_reason(self) -> str | None:
        return self.metrics.get("fail_reason")

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
        for i, f in enumerate(self.folds):  # for optuna-dashboard: ``folds`` (~600 characters a fold) is cut there
            trial.set_user_attr(fold_key(i), shown_fold(f))
        trial.set_user_attr(METRICS, dict(self.metrics))
        if self.config is not None:
            trial.set_user_attr(CONFIG, dict(self.config))
        if self.repeat_of is not None:
            trial.set_user_attr(REPEAT_OF, int(self.repeat_of))


def fold_key(i: int) -> str:
    """The display attribute of fold ``i`` (``fold_0``)."""
    return f"{FOLD_SHOWN}{int(i)}"


def shown_fold(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A fold's metrics as optuna-dashboard shows them whole: each finite float at ``SHOWN_DIGITS`` significant
    digits (0.0314088517302807 -> 0.0314089; ~400 characters for today's 18 metrics, the exact ones ~610), fewer
    digits if that still passed the dashboard's 1,024 characters. Display only: ``folds`` keeps the exact values."""
    for digits in (SHOWN_DIGITS, 4, 3):
        out = {str(k): (float(f"{v:.{digits}g}") if isinstance(v, float) and math.isfinite(v) else v)
               for k, v in metrics.items()}
        if len(json.dumps(out)) <= DASHBOARD_CHARS:
            break
    return out


def read_trial(t: FrozenTrial) -> TrialRecord:
    """A trial's record; attributes of the wrong shape (not written by accumopt) read as empty."""
    m, f, c = t.user_attrs.get(METRICS), t.user_attrs.get(FOLDS), t.user_attrs.get(CONFIG)
    r = t.user_attrs.get(REPEAT_OF)
    return TrialRecord(m if isinstance(m, dict) else {}, f if isinstance(f, list) else [],
                       c if isinstance(c, dict) else None,
                       r if isinstance(r, int) and not isinstance(r, bool) else None)


# A trial recorded before 2026-12-03 (00b213b) stored its metrics rounded to 10 decimals, its objective value computed
# from the rounded fold metrics, and its parameters rounded to 12 significant digits; backtest and replay of that
# version compared within a relative 1e-9 (``tol * max(1, |a|, |b|)``). Such a record is compared by that rule: it
# cannot hold the bits that an exact comparison asks for.
LEGACY_ROUNDED_TOLERANCE = 1e-9
_LEGACY_DECIMALS = 10


def _decimals(x: float) -> int:
    """Decimals of the shortest repr of a finite float (0.0290847079 -> 10; 2.5e-11 -> 12)."""
    mant, _, exp = repr(x).partition("e")
    frac = mant.partition(".")[2].rstrip("0")
    return max(len(frac) - int(exp or 0), 0)


def rounded_metrics(metrics: Mapping[str, Any]) -> bool:
    """Whether a trial's stored ``metrics`` were rounded to 10 decimals (a record written before 2026-12-03):
    no float of more than 10 decimals and at least three of exactly 10. A metric stored at full precision has ~17
    significant digits (short ones are exact fractions such as a hit rate of 39/64 = 0.609375), so three floats
    ending at exactly the 10th decimal and none beyond is the rounding, not chance."""
    ds = [_decimals(float(v)) for v in metrics.values()
          if isinstance(v, float) and math.isfinite(v)]
    return bool(ds) and max(ds) <= _LEGACY_DECIMALS and sum(d == _LEGACY_DECIMALS for d in ds) >= 3


def metrics_tolerance(metrics: Mapping[str, Any]) -> float:
    """The relative tolerance a re-run of a trial whose stored metrics are ``metrics`` is compared with: 0 (bit for
    bit), or ``LEGACY_ROUNDED_TOLERANCE`` for metrics rounded by a record written before 2026-12-03."""
    return LEGACY_ROUNDED_TOLERANCE if rounded_metrics(metrics) else 0.0


def defaulted_note(names: Sequence[str]) -> str:
    """The line a command reading an older record states (``ConfigRecord.defaulted``): which parameters it lacks and
    the default each takes."""
    shown = ", ".join(f"{k}={_DEFAULTS[k]!r}" for k in names)
    return (f"the record predates {len(names)} engine parameter(s), run at their defaults (how the trial ran before they "
            f"existed): {shown}")


def rounded_note(what: str) -> str:
    """The line a comparison states when it used ``LEGACY_ROUNDED_TOLERANCE`` (``what``: the trial)."""
    return (f"{what} was recorded before 2026-12-03, with its metrics rounded to 10 decimals: compared within a "
            f"relative {LEGACY_ROUNDED_TOLERANCE:g} (the rule of that version), not bit for bit")


def lost_to_kill(t: FrozenTrial) -> bool:
    """Whether ``t`` failed outside the objective: FAIL with no failure reason stored (the objective stores one
    for each trial it fails, ``TrialRecord.failed``). Such a trial was left RUNNING by a killed process and failed
    when its heartbeat went stale (its parameters retried), or stopped the run with an error. A resumed study's
    sampler does not count it when it numbers its draws (``registry.StepRounding``), so the study draws what an
    uninterrupted run draws; an objective's own failure counts (the next trial must not draw its parameters again)."""
    return t.state == TrialState.FAIL and read_trial(t).fail_reason is None


def lost_reason(t: FrozenTrial) -> str | None:
    """Why the heartbeat check failed ``t`` (``LOST``, written by the storage just before the FAIL: its process was
    killed or stopped answering), None for any other trial."""
    v = t.user_attrs.get(LOST)
    return v if isinstance(v, str) else None


def retry_of(t: FrozenTrial) -> int | None:
    """The number of the trial the heartbeat check failed that ``t`` runs again (``RETRY_OF``), else None."""
    v = t.user_attrs.get(RETRY_OF)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# ------------------------------------------------------------------------------------------------ markers


def seeded(study: optuna.Study) -> dict[str, Any] | None:
    """``{"from": study, "n": k, "trials": [numbers], "space": {name: [low, high] or [choices]}}`` once the study
    was seeded from an earlier one (``space``: the weight ranges ``weight_radius`` narrowed), else None."""
    return study.user_attrs.get(SEEDED) or None


def seeded_label(study: optuna.Study) -> str | None:
    """What a seeded study took from ``[seed_from]``, for its run's output and its report: the source study, its
    trials, the trials here that run them (the enqueued ones, a failed one's retry aside) and the weight ranges the
    seeding narrowed; None for a study that was not seeded."""
    mark = seeded(study)
    if not mark:
        return None
    src = [int(n) for n in mark.get("trials") or []]
    seeds = [t for t in study.get_trials(deepcopy=False)
             if "fixed_params" in t.system_attrs and "failed_trial" not in t.system_attrs]
    here = [t.number for t in seeds if t.state != optuna.trial.TrialState.WAITING]
    waiting = len(seeds) - len(here)
    text = (f"{mark.get('n', len(src))} trial(s) of study {mark.get('from')!r}"
            + (f" (its trials {', '.join(map(str, src))})" if src else "")
            + (f", run here as trial{'s' if len(here) > 1 else ''} {', '.join(map(str, here))}" if here
               else ", not run here yet")
            + (f"; {waiting} still waiting" if here and waiting else ""))
    space = mark.get("space") or {}
    if space:
        text += "; weight ranges narrowed around them: " + ", ".join(
            f"{k} [{', '.join(f'{v:g}' if isinstance(v, (int, float)) else str(v) for v in vals)}]"
            for k, vals in space.items())
    return text


def mark_seeded(study: optuna.Study, source: str, n: int, trials: Sequence[int] = (),
                space: Mapping[str, Any] | None = None) -> None:
    study.set_user_attr(SEEDED, {"from": source, "n": int(n), "trials": [int(t) for t in trials],
                                 "space": {k: list(v) for k, v in (space or {}).items()}})


def is_internal(study: Any) -> bool:
    """A marker study of the tool, not a study of the user's (the legacy ``<study>-reserve-log``, a walk-forward's
    ``<study>-wf-claims``): listings hide it."""
    attrs = study.user_attrs
    return (OPENINGS in attrs or WF_RUN in attrs) and "spec_hash" not in attrs


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


def claims_name(study_name: str) -> str:
    """The marker study through which workers claim the windows of ``study_name``'s walk-forward."""
    return f"{study_name}-wf-claims"


def write_wf_run(study: optuna.Study, run: Mapping[str, Any]) -> None:
    """The walk-forward run the coordinator started (``spec_hash``, ``n_trials`` per window, ``final``,
    ``windows``: the window studies' names in order; ``key``: the hash of everything that decides a window's study,
    which each claim carries), so workers run exactly the same windows."""
    study.set_user_attr(WF_RUN, dict(run))


def read_wf_run(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(WF_RUN) or None


def claim_template(window: str, worker: str, key: str | None = None,
                   windows: Sequence[str] | None = None) -> FrozenTrial:
    """A RUNNING trial of the claims study saying ``worker`` claims window study ``window`` for the run whose
    settings key is ``key`` (the run's ``key``: a window done for a run of other settings is not done for this
    one); created from this template, its attributes are stored in the same transaction as the trial itself.

    The claim also holds its window's place in the run as the parameter ``window`` (an integer: the index of
    ``window`` in ``windows``, the run's window studies, 0 without them): optuna-dashboard 0.21 divides by the
    number of parameters when it computes the importances of a study of two or more COMPLETE trials whose
    importances are empty, so a claims study without parameters answered HTTP 500 on its importances page. An
    integer range, not the window names as choices: Optuna refuses a categorical parameter whose choices change
    within a study, and one claims study holds the claims of every run of the study name (a later run over more
    data has more windows). The claims are read from ``WF_CLAIM`` (``read_claim``), never from the parameter."""
    claim = {"window": window, "worker": worker} | ({} if key is None else {"key": key})
    names = list(windows) if windows and window in windows else [window]
    return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, datetime_start=_dt.datetime.now(),
                       datetime_complete=None, params={"window": names.index(window)},
                       distributions={"window": optuna.distributions.IntDistribution(0, len(names) - 1)},
                       user_attrs={WF_CLAIM: claim}, system_attrs={},
                       intermediate_values={}, trial_id=-1)


def end_claim(storage: optuna.storages.BaseStorage, trial_id: int, claim: Mapping[str, Any], why: str) -> None:
    """Say on a RUNNING claim, before it is failed, why it ends unfinished (``why``: withdrawn, released): the
    claim's ``WF_CLAIM`` with ``end`` added. A claim failed meanwhile (stale) keeps its ``LOST`` note instead."""
    try:
        storage.set_trial_user_attr(trial_id, WF_CLAIM, dict(claim) | {"end": why})
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def read_claim(t: FrozenTrial) -> dict[str, str] | None:
    """``{"window": study name, "worker": id[, "key": the run's settings key]}`` of a claims-study trial (None for
    any other trial)."""
    c = t.user_attrs.get(WF_CLAIM)
    return c if isinstance(c, dict) and "window" in c else None


# ------------------------------------------------------------------------------------------------ window results


def _pack(v: Any) -> Any:
    """``v`` as strict JSON that ``_unpack`` turns back into the same values bit for bit: a numpy array or scalar
    as ``{"__nd__": [dtype, shape, base64 of its bytes]}`` (an unpacked scalar is the same numpy type), a float
    that is not finite as ``{"__f__": "nan" | "inf" | "-inf"}`` (a finite float is written as its shortest repr,
    which reads back to the same bits), a tuple as a list; dict keys must be strings."""
    if isinstance(v, (np.ndarray, np.generic)):
        a = np.asarray(v) if np.ndim(v) == 0 else np.ascontiguousarray(v)  # (ascontiguousarray makes a scalar 1-d)
        if a.dtype.hasobject:
            raise TypeError(f"an object array cannot be stored, got dtype {a.dtype}")
        return {"__nd__": [a.dtype.str, list(a.shape), base64.b64encode(a.tobytes()).decode("ascii")]}
    if isinstance(v, float):
        return v if math.isfinite(v) else {"__f__": repr(v)}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, Mapping):
        if not all(isinstance(k, str) for k in v):
            raise TypeError(f"only string keys can be stored, got {sorted(map(repr, v))[:3]}")
        return {k: _pack(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_pack(x) for x in v]
    raise TypeError(f"a {type(v).__name__} cannot be stored")


def _unpack(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"__nd__"}:
            dtype, shape, data = v["__nd__"]
            a = np.frombuffer(base64.b64decode(data, validate=True), dtype=np.dtype(dtype)).reshape(shape).copy()
            return a[()] if a.ndim == 0 else a
        if set(v) == {"__f__"}:
            return float(v["__f__"])
        return {k: _unpack(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unpack(x) for x in v]
    return v


def write_window_result(study: optuna.Study, key: str, figures: Mapping[str, Any]) -> None:
    """Store a walk-forward window's evaluated result on its study: ``figures`` (numpy arrays and scalars, floats
    NaN included, kept bit for bit) under ``key``, the digest of everything they were computed from (the caller's:
    the data, the spec, the trials, the code). One result per study: a later one replaces it."""
    study.set_user_attr(WF_RESULT, {"key": str(key), "figures": _pack(dict(figures))})


def read_window_result(study: optuna.Study, key: str) -> dict[str, Any] | None:
    """The figures ``write_window_result`` stored on ``study`` under ``key``, as they were written; None when the
    study holds none, or one computed from other inputs (another key), or one that cannot be read back (with a
    warning naming the study: the caller computes the result again and replaces it)."""
    doc = study.user_attrs.get(WF_RESULT)
    if not isinstance(doc, dict) or doc.get("key") != key:
        return None
    try:
        figures = _unpack(doc["figures"])
        if not isinstance(figures, dict):
            raise TypeError(f"the figures are a {type(figures).__name__}, not an object")
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        warnings.warn(f"the walk-forward result stored on window study {study.study_name!r} is unreadable "
                      f"({type(e).__name__}: {e}); it is computed again", stacklevel=2)
        return None
    return figures


def trials_digest(trials: optuna.Study | Iterable[FrozenTrial]) -> str:
    """16 hex chars of sha256 over every trial as stored (number, state, values, params and user attributes),
    in trial-number order: equal digests, the same trials."""
    ts = trials.get_trials(deepcopy=False) if isinstance(trials, optuna.Study) else list(trials)
    rows = [[t.number, t.state.name, t.values, t.params, t.user_attrs] for t in sorted(ts, key=lambda t: t.number)]
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=repr).encode()).hexdigest()[:16]


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


def _identity(t: FrozenTrial) -> str:
    """A trial's configuration identity: its stored configuration key, else (no record: an older or foreign
    trial, or one that failed before its parameters were drawn) its Optuna params."""
    c = t.user_attrs.get(CONFIG)
    if isinstance(c, dict) and isinstance(c.get("params"), dict):
        return "c:" + _stored_key(c)
    return "p:" + json.dumps(_canonical(t.params), sort_keys=True)


def group_configurations(trials: optuna.Study | Iterable[FrozenTrial]) -> list[list[FrozenTrial]]:
    """The finished trials (complete, pruned, failed) grouped by configuration (the stored effective configuration;
    the params for a trial without one), each group in trial-number order, groups by their first trial."""
    ts = trials.get_trials(deepcopy=False) if isinstance(trials, optuna.Study) else list(trials)
    groups: dict[str, list[FrozenTrial]] = {}
    for t in sorted(ts, key=lambda t: t.number):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            groups.setdefault(_identity(t), []).append(t)
    return list(groups.values())


def distinct_configurations(trials: optuna.Study | Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The distinct configurations a study tried, complete, pruned and failed ones included (running and waiting
    ones are not tried yet): the first trial of each, in trial-number order. What the Deflated Sharpe ratio counts:
    a repeated configuration is one configuration tried."""
    return [g[0] for g in group_configurations(trials)]


def configuration_identities(trials: optuna.Study | Iterable[FrozenTrial]) -> list[str]:
    """The identity (stored configuration key, else the params) of each of ``distinct_configurations(trials)``, in
    the same order: what tells the same configuration apart from another across studies (a walk-forward counts
    the configurations its windows tried once over all of them)."""
    return [_identity(g[0]) for g in group_configurations(trials)]


def find_repeat(trials: Iterable[FrozenTrial], key: str, before: int | None = None) -> FrozenTrial | None:
    """The earliest COMPLETE or PRUNED trial (numbered below ``before``) whose stored configuration has ``key``."""
    best = None
    for t in trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or (before is not None and t.number >= before):
            continue
        c = t.user_attrs.get(CONFIG)
        if isinstance(c, dict) and isinstance(c.get("params"), dict) and _stored_key(c) == key:
            if best is None or t.number < best.number:
                best = t
    return best


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials best first (ties: lower trial number first); for several objectives the Pareto front
    sorted by the first objective."""
    pool = study.best_trials if len(study.directions) > 1 else complete_trials(study)
    s = direction_sign(study.directions[0])
    return sorted(pool, key=lambda t: (s * t.values[0], t.number))
