"""Study inspection: list, show, best, compare, export and delete the studies in an Optuna storage.

The library behind ``accumopt study list|show|best|compare|export|delete``. Every function takes a storage URL
(``sqlite:///output/studies.db``, ``journal:PATH``, any RDB URL, ``None`` = the default storage) or a ready
Optuna storage object, reads the trials once and returns plain pandas DataFrames / dicts, so the same calls work
from a notebook. Trial details come from each trial's ``records.TrialRecord`` (``metrics``: overall metrics,
``duration_s``, ``pruned_at_fold``, ``pruned_reason``; ``folds``: per-fold metrics); study details from its
``records.StudyRecord``. The comparison figure and page are ``optimizer.report.compare``.
An unknown study name is a ``DataError`` that lists the names the storage does hold.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optimizer.data.calendar import local_time
from optimizer.errors import DataError, check_param
from optimizer.paths import atomic_write, resolve_storage
from optimizer.study.records import (
    FOLD_SHOWN, FOLDS, METRICS, REPEAT_OF, direction_sign, is_internal, lost_reason, ranked_trials, read_study,
    read_trial, retry_of,
    trial_counts,
)
from optimizer.study.space import effective_params
from optimizer.study.storage import heartbeat_age, make_storage, stale_grace, study_names, trial_summary

__all__ = [
    "KEY_METRICS", "CompareResult", "list_studies", "show_study", "best_trial_json", "trial_detail", "compare_studies",
    "trials_table", "export_study", "delete_study", "open_storage", "open_named_study",
]

# The metrics ``show_study`` lifts out of the trial's ``metrics`` attribute, in display order.
KEY_METRICS = (
    "hit_rate", "avg_return", "win_loss", "sharpe", "portfolio_sharpe", "max_drawdown", "closed_trades",
    "signals_per_month", "false_positive_rate", "avg_excess_return", "rank_score",
)
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# ---------------------------------------------------------------------------------------------------------
# storage and study lookup


def open_storage(storage: Any, write: bool = False) -> tuple[Any, str]:
    """(Optuna storage, label for messages). A URL (None: env ACCUMOPT_STORAGE, else the default) is opened
    read-only (``make_storage(read_only=True)``; ``write``: writable, for ``delete``): inspecting never creates a
    storage file, never runs trials."""
    if storage is not None and not isinstance(storage, str):
        url = getattr(storage, "accumopt_url", None) or getattr(getattr(storage, "engine", None), "url", None)
        return storage, str(url) if url is not None else type(storage).__name__
    url = resolve_storage(storage)
    return make_storage(url, heartbeat=False, read_only=not write, create=False), url


def open_named_study(storage: Any, name: str, write: bool = False, label: str | None = None) -> tuple[optuna.Study, Any]:
    """(study, storage object); an unknown name is a DataError listing the storage's studies (``label``: how
    messages name an opened storage)."""
    st, opened_as = open_storage(storage, write)
    label = label or opened_as
    if name not in study_names(st):
        shown = sorted(s.study_name for s in st.get_all_studies() if not is_internal(s))  # as `study list` shows
        raise DataError(f"no study named {name!r} in {label}; studies: {', '.join(shown) or '(none)'}")
    return optuna.load_study(study_name=name, storage=st), st


def _is_multi(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def _value_columns(study: optuna.Study) -> list[str]:
    """``value`` for one objective; ``values_<metric name or index>`` for several (as trials_dataframe names them)."""
    if not _is_multi(study):
        return ["value"]
    names = study.metric_names or [str(i) for i in range(len(study.directions))]
    return [f"values_{n}" for n in names]


def _duration_s(t: FrozenTrial) -> float:
    """Wall time of a finished trial (start -> complete); the objective's own duration_s when datetimes are missing."""
    if t.datetime_start is not None and t.datetime_complete is not None:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    d = read_trial(t).duration_s
    return math.nan if d is None else d


# ---------------------------------------------------------------------------------------------------------
# list / show / best


def list_studies(storage: Any = None, internal: bool = False) -> pd.DataFrame:
    """One row per study: name, directions, trial counts by state, best value, created, spec name, the trials it
    was asked for (``n_trials_target``), and ``repeats`` (trials that reused the result of an earlier trial of the
    same configuration).

    ``best_value`` is NaN for multi-objective studies (see ``pareto_size``) and for studies without a completed
    trial. ``created`` is the start of the first trial, else the study's ``created`` user attribute. The tool's
    internal marker studies (``records.is_internal``: the legacy ``<study>-reserve-log``) are left out unless
    ``internal``.
    """
    st, _ = open_storage(storage)
    rows = []
    for s in sorted(st.get_all_studies(), key=lambda s: s.study_name):
        if not internal and is_internal(s):
            continue
        # an RDB storage sums a single-objective study's trials up in one SQL query; else its trials are read
        summary = trial_summary(st, s.study_name, REPEAT_OF) if len(s.directions) == 1 else None
        rows.append(_list_row_orm(st, s) if summary is None else _list_row_sql(s, summary))
    cols = ["name", "directions", "complete", "pruned", "failed", "running", "best_value", "pareto_size", "created",
            "spec_name", "n_trials_target", "repeats"]
    df = pd.DataFrame(rows, columns=cols)
    df["pareto_size"] = df["pareto_size"].astype("Int64")
    df["n_trials_target"] = pd.array(df["n_trials_target"].tolist(), dtype="Int64")
    return df


def _created(value: Any) -> pd.Timestamp:
    """A study's ``created`` as the list shows it: the machine's local time with its UTC offset
    (``calendar.local_time``; the first trial's start, which Optuna stores as naive local time, else the record's
    ``created``, New York time with its offset since 2026-12-05; an earlier record's naive local time is taken as
    written)."""
    return local_time(value)


def _list_row_orm(st: Any, s: Any) -> dict[str, Any]:
    """A ``list_studies`` row from the study's trials (read once): any storage, any number of objectives."""
    study = optuna.load_study(study_name=s.study_name, storage=st)
    trials = study.get_trials(deepcopy=False)
    ranked = ranked_trials(study)
    multi = _is_multi(study)
    rec = read_study(study)
    created = min((t.datetime_start for t in trials if t.datetime_start is not None), default=None) or rec.created
    return {
        "name": s.study_name,
        "directions": ",".join(d.name.lower() for d in study.directions),
        **{k: v for k, v in trial_counts(trials).items() if k != "waiting"},
        "best_value": float(ranked[0].value) if ranked and not multi else math.nan,
        "pareto_size": len(ranked) if multi else pd.NA,
        "created": _created(created),
        "spec_name": rec.spec_name,
        "n_trials_target": rec.n_trials_target,
        "repeats": sum(read_trial(t).repeat_of is not None for t in trials),
    }


def _list_row_sql(s: Any, summary: dict[TrialState, dict[str, Any]]) -> dict[str, Any]:
    """The same row as ``_list_row_orm`` for a single-objective study, from ``storage.trial_summary`` (per state:
    counts, first start, the best first-objective value of the complete trials as ``ranked_trials`` ranks them,
    +-inf included) and the study's attributes (``s``: a FrozenStudy)."""
    rec = read_study(s)
    n = {state: summary.get(state, {}).get("n", 0) for state in TrialState}
    c = summary.get(TrialState.COMPLETE, {})
    if s.directions[0] == StudyDirection.MAXIMIZE:
        best = (math.inf if c.get("inf_pos") else c["max"] if c.get("max") is not None
                else -math.inf if c.get("inf_neg") else math.nan)
    else:
        best = (-math.inf if c.get("inf_neg") else c["min"] if c.get("min") is not None
                else math.inf if c.get("inf_pos") else math.nan)
    created = min((x["first_start"] for x in summary.values() if x["first_start"] is not None),
                  default=None) or rec.created
    return {
        "name": s.study_name,
        "directions": s.directions[0].name.lower(),
        "complete": n[TrialState.COMPLETE], "pruned": n[TrialState.PRUNED], "failed": n[TrialState.FAIL],
        "running": n[TrialState.RUNNING],
        "best_value": float(best),
        "pareto_size": pd.NA,
        "created": _created(created),
        "spec_name": rec.spec_name,
        "n_trials_target": rec.n_trials_target,
        "repeats": sum(x["flagged"] for x in summary.values()),
    }


def _trial_row(study: optuna.Study, t: FrozenTrial, value_cols: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"number": t.number}
    row.update({c: float(v) for c, v in zip(value_cols, t.values)})
    row.update({f"param_{k}": v for k, v in t.params.items()})
    m = read_trial(t).metrics
    row.update({k: m.get(k, math.nan) for k in KEY_METRICS})
    row["duration_s"] = _duration_s(t)
    return row


def show_study(storage: Any, name: str, top: int = 10) -> pd.DataFrame:
    """The ``top`` best completed trials (multi-objective: the Pareto front, sorted by the first objective).

    Columns: number, value (or values_<name> per objective), param_<name> per parameter, the KEY_METRICS from the
    trial's ``metrics`` attribute (NaN when absent) and the trial's wall time ``duration_s``.
    """
    check_param(isinstance(top, int) and not isinstance(top, bool) and top >= 1, "top", "an integer >= 1", top)
    study, _ = open_named_study(storage, name)
    vcols = _value_columns(study)
    ranked = ranked_trials(study)[:top]
    rows = [_trial_row(study, t, vcols) for t in ranked]
    pcols = sorted({c for r in rows for c in r if c.startswith("param_")},
                   key=lambda c: _param_order(study).get(c[6:], 10**6))
    cols = ["number", *vcols, *pcols, *KEY_METRICS, "duration_s"]
    return pd.DataFrame(rows, columns=cols).reset_index(drop=True)


def _param_order(study: optuna.Study) -> dict[str, int]:
    """Parameter display order: the spec's declaration order when the spec is stored, else alphabetical."""
    try:
        spec = read_study(study).spec()
    except DataError:
        return {}
    return {p.name: i for i, p in enumerate(spec.space)} if spec is not None else {}


def best_trial_json(storage: Any, name: str, number: int | None = None) -> dict[str, Any]:
    """The best completed trial (or trial ``number``) as a parameters document for ``backtest --params``.

    ``{"study", "number", "value" | "values", "params", "metrics", "config"}``: ``config`` is the trial's complete
    effective configuration (``records.ConfigRecord``: every engine parameter with costs, caps and sizing, the
    universe and the hash of its symbols, the span as dates, the reserve start, the regime filter, min_periods,
    the data fingerprint), ``params`` its engine parameters, ``metrics`` the trial's stored overall metrics, which
    ``backtest --params`` reproduces exactly. A trial stored before configuration records has no ``config``: its
    ``params`` are the trial's params plus the active fixed values of the stored spec, with ``costs`` from its
    [data.costs]. For a multi-objective study the best trial is the Pareto-front trial best on the first objective.
    """
    study, _ = open_named_study(storage, name)
    if number is None:
        ranked = ranked_trials(study)
        if not ranked:
            c = trial_counts(study)
            raise DataError(f"study {name!r} has no completed trial (pruned {c['pruned']}, failed {c['failed']}, "
                            f"running {c['running']})")
        t = ranked[0]
    else:
        byn = {tr.number: tr for tr in study.get_trials(deepcopy=False)}
        t = byn.get(number)
        if t is None or t.state != TrialState.COMPLETE:
            state = "does not exist" if t is None else f"is {t.state.name}"
            raise DataError(f"study {name!r}: trial {number} {state}; only COMPLETE trials have a value")
    doc: dict[str, Any] = {"study": study.study_name, "number": t.number}
    if _is_multi(study):
        doc["values"] = [float(v) for v in t.values]
    else:
        doc["value"] = float(t.value)
    stored = read_trial(t)
    record = stored.config_record
    if record is not None:
        doc["params"] = dict(record.params)
        doc["metrics"] = dict(stored.metrics)
        doc["config"] = record.to_dict()
        return doc
    spec = read_study(study).spec()
    doc["params"] = effective_params(t.params, spec)
    doc["metrics"] = dict(stored.metrics)
    if spec is not None:
        doc["costs"] = {"commission_bps": spec.data.commission_bps, "slippage_bps": spec.data.slippage_bps}
    return doc


def _stale_running(storage: Any, t: FrozenTrial) -> str | None:
    """For a RUNNING trial nobody has beaten for longer than the grace period (its process was killed), what
    became of it and what happens next; None for any other trial (or where no heartbeat is stored)."""
    if t.state != TrialState.RUNNING:
        return None
    age, grace = heartbeat_age(storage, t._trial_id), stale_grace()
    if age is None or age <= grace:
        return None
    return (f"RUNNING with no heartbeat for {age:.0f} s (grace {grace} s): the process running it was killed or "
            "stopped answering; the next run of the study (study run, study worker) fails it and runs it again")


def _none_drawn(t: FrozenTrial, fail_reason: str | None, lost: str | None) -> str:
    """Why trial ``t`` has no parameters: it failed (or was lost) before drawing them, or has not drawn them yet."""
    if t.state == TrialState.FAIL:
        why = lost or fail_reason or "no reason was stored: its process ended before it could write one"
        return f"none: the trial failed before drawing its parameters ({why})"
    return f"none drawn yet ({t.state.name}" + (f": {lost})" if lost else ")")


def trial_detail(storage: Any, name: str, number: int) -> dict[str, Any]:
    """Trial ``number`` of study ``name`` in any state, for a one-trial view (``study show NAME --trial N``).

    ``{"study", "number", "state", "value" | "values" (a COMPLETE trial's; a PRUNED one's is Optuna's, its value at
    the fold where the pruner stopped it, None when pruned for min_trades; else None), "params" (the trial's params
    plus the stored spec's active fixed values, as ``best_trial_json``; empty when it drew none, and then
    "params_note" says why: it failed or was lost before drawing them, or has not drawn them yet), "metrics" (its
    ``metrics`` attribute without the pruning fields), "pruned_at_fold", "pruned_reason", "duration_s", "lost" (why the heartbeat check failed
    it, or will fail a RUNNING trial beaten longer ago than the grace period: its process was killed; else None), "retry_of" (the lost trial it runs again, else None), "folds" (one dict
    per evaluated fold, with ``fold`` and ``intermediate`` value)}``. An unknown number is a DataError naming the range.
    """
    study, _ = open_named_study(storage, name)
    trials = study.get_trials(deepcopy=False)
    byn = {t.number: t for t in trials}
    if number not in byn:
        span = f"0..{max(byn)}" if byn else "none"
        raise DataError(f"study {name!r} has no trial {number}; its trials are numbered {span}")
    t = byn[number]
    rec = read_trial(t)
    spec = read_study(study).spec()
    # a pruned trial's value is Optuna's, as optuna-dashboard and ``study export`` show it: its value at the fold
    # the pruner stopped it; none when pruned for min_trades (``trial.NO_FOLD_VALUE``)
    done = t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    doc: dict[str, Any] = {"study": study.study_name, "number": t.number, "state": t.state.name}
    if _is_multi(study):
        doc["values"] = [float(v) for v in t.values] if done and t.values else None
    else:
        doc["value"] = float(t.value) if done and t.value is not None else None
    lost = lost_reason(t) or _stale_running(storage, t)  # why the heartbeat check failed it, or will
    # the spec's fixed values are a trial's only with what it drew: a trial that drew nothing (its ConfigRecord is
    # written as soon as it has drawn) shows no parameters and says why, never the spec's fixed values as its own
    drew = bool(t.params) or rec.config_record is not None or done
    doc["params"] = effective_params(t.params, spec) if drew else {}
    if not drew:
        doc["params_note"] = _none_drawn(t, rec.fail_reason, lost)
    doc["metrics"] = {k: v for k, v in rec.metrics.items() if k not in ("pruned_at_fold", "pruned_reason", "duration_s")}
    doc["pruned_at_fold"] = rec.pruned_at_fold
    doc["pruned_reason"] = rec.pruned_reason
    doc["duration_s"] = _duration_s(t)
    doc["lost"] = lost
    doc["retry_of"] = retry_of(t)  # runs again the trial of that number, which the heartbeat check failed
    doc["folds"] = [{"fold": i, "intermediate": t.intermediate_values.get(i, math.nan), **dict(f)}
                    for i, f in enumerate(rec.folds)]
    return doc


# ---------------------------------------------------------------------------------------------------------
# compare


@dataclass
class CompareResult:
    """Tables comparing studies (how fast each found its best, how much pruning saved). See ``compare_studies``."""

    names: list[str]
    summary: pd.DataFrame
    prune_fold_hist: pd.DataFrame
    best_so_far: pd.DataFrame
    intermediate: pd.DataFrame


def _pruned_fold(t: FrozenTrial) -> int | None:
    """Fold where a pruned trial stopped: the ``pruned_at_fold`` attribute (also set by min_trades pruning,
    which reports ``trial.NO_FOLD_VALUE`` for that fold; before 2026-12-05 nothing), else the trial's last
    reported step."""
    f = read_trial(t).pruned_at_fold
    return t.last_step if f is None else f


def _nanmean(x: list[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(a[~np.isnan(a)].mean()) if np.any(~np.isnan(a)) else math.nan


def _time_saved(mean_complete: float, pruned: list[float]) -> float:
    """Sum over pruned trials of max(0, mean complete duration - their duration): a pruned trial would have cost
    about one mean complete trial; one that already ran longer saved nothing. NaN when nothing completed."""
    if not pruned:
        return 0.0
    if math.isnan(mean_complete):
        return math.nan
    return float(sum(max(0.0, mean_complete - d) for d in pruned if not math.isnan(d)))


def _running_clock(trials: list[FrozenTrial]) -> Callable[[datetime], float]:
    """``clock(t)``: the seconds before ``t`` during which at least one of ``trials`` ran (the union of their
    ``datetime_start``..``datetime_complete`` intervals, a RUNNING trial's up to now). A study resumed after a
    pause counts the time its trials ran, not the pause; trials run side by side (``--jobs``, workers) count once."""
    now = datetime.now()
    spans = sorted((t.datetime_start, t.datetime_complete or now) for t in trials if t.datetime_start is not None)
    merged: list[list[datetime]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, max(a, b)])

    def clock(t: datetime) -> float:
        return sum((min(b, t) - a).total_seconds() for a, b in merged if a < t)
    return clock


def _summary_row(study: optuna.Study, trials: list[FrozenTrial]) -> dict[str, Any]:
    # a repeat reused an earlier trial's result and ran nothing: its few milliseconds are neither what a complete
    # trial costs nor time that pruning saved (without pruning it would have reused the completed result)
    ran = [t for t in trials if read_trial(t).repeat_of is None]
    comp = [_duration_s(t) for t in ran if t.state == TrialState.COMPLETE]
    pruned = [_duration_s(t) for t in ran if t.state == TrialState.PRUNED]
    finished = [_duration_s(t) for t in trials if t.state in _FINISHED]
    mc, mp = _nanmean(comp), _nanmean(pruned)
    total = float(np.nansum(finished))
    saved = _time_saved(mc, pruned)
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    ranked = ranked_trials(study)
    return {
        "study": study.study_name, "directions": ",".join(d.name.lower() for d in study.directions),
        **{k: v for k, v in trial_counts(trials).items() if k != "waiting"},
        "best_value": float(ranked[0].values[0]) if ranked else math.nan,
        "best_number": ranked[0].number if ranked else pd.NA,
        "total_trial_s": total,
        "elapsed_s": _running_clock(trials)(max(ends)) if ends else math.nan,
        "mean_complete_s": mc, "mean_pruned_s": mp, "time_saved_s": saved,
        "saved_pct": 100.0 * saved / (total + saved) if total + saved > 0 else math.nan,
        "kernel_warmup_s": math.nan if (w := read_study(study).kernel_warmup_s) is None else float(w),
    }


def _prune_hist(name: str, study: optuna.Study, trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    folds = [_pruned_fold(t) for t in trials if t.state == TrialState.PRUNED]
    known = [f for f in folds if f is not None]
    n_folds = len(read_study(study).folds)
    top = max([n_folds - 1, *known]) if (known or n_folds) else -1
    return [{"study": name, "fold": f, "n_pruned": sum(k == f for k in known)} for f in range(0, top + 1)]


def _best_so_far(name: str, study: optuna.Study, trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """Finished trials in completion order with the running best of the first objective."""
    done = sorted((t for t in trials if t.state in _FINISHED and t.datetime_complete is not None),
                  key=lambda t: (t.datetime_complete, t.number))
    if not done:
        return []
    clock = _running_clock(trials)
    s = direction_sign(study.directions[0])
    best, rows = math.nan, []
    for i, t in enumerate(done, start=1):
        v = float(t.values[0]) if t.state == TrialState.COMPLETE and t.values else math.nan
        if not math.isnan(v) and (math.isnan(best) or s * v < s * best):
            best = v
        rows.append({"study": name, "number": t.number, "n_finished": i, "state": t.state.name,
                     "value": v, "elapsed_s": clock(t.datetime_complete), "best_value": best})
    return rows


def _intermediate(name: str, trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    return [{"study": name, "trial": t.number, "state": t.state.name, "step": int(step), "value": float(v)}
            for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            for step, v in sorted(t.intermediate_values.items())]


def compare_studies(storage: Any, names: list[str]) -> CompareResult:
    """Summary, prune-fold histogram, best-so-far curves and intermediate values of several studies.

    Multi-objective studies are compared on their first objective. Durations are trial wall times
    (``datetime_complete - datetime_start``); ``total_trial_s`` is their sum. ``elapsed_s`` (the summary's, and
    each best-so-far point's) is the time trials were running: the union of the trials' start..complete intervals
    up to the last (that point's) completion, so a study resumed after a pause does not count the pause, and
    trials run side by side (``--jobs``, workers) count once (``elapsed_s`` <= ``total_trial_s``).
    ``time_saved_s`` estimates what pruning saved: the sum over pruned trials of ``max(0, mean complete duration -
    their duration)``. Repeats (``repeat_of``: a trial that reused an
    earlier trial's result) are counted by state but left out of ``mean_complete_s``, ``mean_pruned_s`` and
    ``time_saved_s``: they ran nothing, and a pruned repeat would have reused a completed result without pruning. ``kernel_warmup_s``: the seconds ``study run``
    spent compiling (or loading from numba's cache) the engine kernels before the study's first trial (0: they
    were already loaded; NaN: a study made before the warm-up existed, whose first trial includes compilation).
    """
    check_param(len(names) >= 1, "names", "a non-empty list of study names", names)
    dup = sorted({n for n in names if names.count(n) > 1})
    check_param(not dup, "names", f"each study named once (repeated: {', '.join(map(str, dup))})", names)
    st, label = open_storage(storage)
    summary, hist, best, inter = [], [], [], []
    for name in names:
        study, _ = open_named_study(st, name, label=label)
        trials = study.get_trials(deepcopy=False)
        summary.append(_summary_row(study, trials))
        hist += _prune_hist(name, study, trials)
        best += _best_so_far(name, study, trials)
        inter += _intermediate(name, trials)
    sdf = pd.DataFrame(summary)
    sdf["best_number"] = sdf["best_number"].astype("Int64")
    return CompareResult(
        list(names), sdf,
        pd.DataFrame(hist, columns=["study", "fold", "n_pruned"]).astype({"fold": "int64", "n_pruned": "int64"}),
        pd.DataFrame(best, columns=["study", "number", "n_finished", "state", "value", "elapsed_s", "best_value"]),
        pd.DataFrame(inter, columns=["study", "trial", "state", "step", "value"]),
    )


# ---------------------------------------------------------------------------------------------------------
# export / delete


def _jsonable(v: Any) -> Any:
    return json.dumps(v, default=str, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v


def _expand(df: pd.DataFrame, col: str, prefix: str) -> pd.DataFrame:
    if col not in df.columns:
        return df
    recs = [v if isinstance(v, dict) else {} for v in df[col]]
    wide = pd.DataFrame(recs, index=df.index).add_prefix(prefix)
    return pd.concat([df.drop(columns=[col]), wide], axis=1)


def _expand_folds(df: pd.DataFrame) -> pd.DataFrame:
    col = f"user_attrs_{FOLDS}"
    if col not in df.columns:
        return df
    recs = [{f"fold{i}_{k}": v for i, m in enumerate(fl) if isinstance(m, dict) for k, v in m.items()}
            if isinstance(fl, list) else {} for fl in df[col]]
    return pd.concat([df.drop(columns=[col]), pd.DataFrame(recs, index=df.index)], axis=1)


def trials_table(storage: Any, name: str) -> pd.DataFrame:
    """``study.trials_dataframe()`` with the JSON attributes flattened: ``metric_<key>`` from ``metrics``,
    ``fold<i>_<key>`` from ``folds``; ``duration`` in seconds; any other nested attribute as a JSON string; a
    trial's start and end as the machine's local time with its UTC offset (``calendar.local_time``)."""
    study, _ = open_named_study(storage, name)
    df = study.trials_dataframe()
    if df.empty:
        return df
    df = _expand(df, f"user_attrs_{METRICS}", "metric_")
    df = _expand_folds(df)
    # the dashboard's rounded copies of the folds (``records.fold_key``): the exact fold<i>_<key> columns are above
    shown = [c for c in df.columns if re.fullmatch(rf"user_attrs_{re.escape(FOLD_SHOWN)}\d+", c)]
    df = df.drop(columns=shown)
    if "duration" in df.columns:
        df["duration"] = df["duration"].dt.total_seconds()
        df = df.rename(columns={"duration": "duration_s"})
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(_jsonable)
    for c in ("datetime_start", "datetime_complete"):  # Optuna's naive local times, with the machine's UTC offset
        if c in df.columns:
            df[c] = df[c].map(local_time)
    return df


def export_study(storage: Any, name: str, path: str | Path, fmt: str = "csv") -> Path:
    """Write ``trials_table`` to ``path`` as csv or parquet. Returns the path."""
    check_param(fmt in ("csv", "parquet"), "fmt", "csv or parquet", fmt)
    df = trials_table(storage, name)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        atomic_write(p, lambda t: df.to_csv(t, index=False))
    else:
        for c in ("datetime_start", "datetime_complete"):  # parquet holds an instant in UTC (its own time zone field)
            if c in df.columns:
                df[c] = pd.to_datetime(df[c], utc=True)
        for c in df.columns:  # parquet needs one type per column: mixed object columns become text
            if df[c].dtype == object and df[c].map(type).nunique() > 1:
                df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
        atomic_write(p, lambda t: df.to_parquet(t, index=False))
    return p


def delete_study(storage: Any, name: str) -> None:
    """Delete study ``name`` and all its trials (the CLI asks for confirmation first)."""
    _, st = open_named_study(storage, name, write=True)
    optuna.delete_study(study_name=name, storage=st)
