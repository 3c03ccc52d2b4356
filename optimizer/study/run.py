"""Create or resume a study (spec-hash guard) and run it: the single-writer mirrored loop, the budgeted loop of
several workers, ``--jobs`` (a coordinator and compute processes, ``_pool``; worker processes on a journal file),
Ctrl-C, the progress bar."""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from objectives import make_objective
from optimizer import __version__
from optimizer.engine.warmup import needs_parallel, warm_kernels
from optimizer.paths import resolve_storage
from optimizer.errors import AccumoptError, ParameterError, SpecError, check_param
from optimizer.study.records import (
    STUDY_KEYS, StudyRecord, lost_to_kill, read_study, read_trial, seeded, set_trials_target, trial_counts,
    write_study,
)
from optimizer.study.registry import build_pruner, build_sampler
from optimizer.study.space import grid_search_space
from optimizer.study.spec import StudySpec
from optimizer.data.calendar import stamp
from optimizer.data.splitcheck import panel_split_lines
from optimizer.study.data import StudyData, load_study_data, prepare_data, span_lines
from optimizer.study._pool import deadline, optimize_pool
from optimizer.study.seed import pruned_seeds_note, seed_from_study
from optimizer.study.storage import StudyFull, has_heartbeat, hide_passwords, make_storage, naming_its_storage, study_names
from optimizer.study.trial import TrialFailed, TrialObjective

__all__ = ["StudyRunResult", "open_study", "run_study", "git_commit", "study_record", "worker_stop"]


def _optimize_mirrored(study: optuna.Study, storage: Any, objective: Callable, target: int, timeout: float | None,
                       callbacks: list[Callable]) -> bool:
    """Single-worker fast path: run trials on an in-process copy of the stored study and write each finished
    trial back to the storage in ONE transaction (params, fold reports, attributes, values, state).

    The sampler and pruner read the in-memory copy, so a trial costs no storage reads and one write instead of a
    round trip per suggest, report and attribute. Every finished trial is committed before the next one starts,
    so a SIGKILL loses at most the running trial, which never reaches the storage (it is never counted).
    Stored WAITING trials (enqueued seeds) run first and are completed in place, with everything the finished
    trial carries (params, fold reports, user and system attributes, values, state).

    Meant for a study this process is the only writer of (``--jobs 1``, not ``study worker``), and it checks that
    it is: each write counts the study's trials against the budget in its own transaction and compares the
    number the trial gets with the count this copy knows. Returns True, having stopped (the trial just run is
    kept if the budget still had room for it, else dropped), when another process writes to the study: a
    RUNNING trial stored at the start (a live worker, or one a kill left behind, which only the heartbeat path
    can fail and retry), a trial added meanwhile, or an enqueued trial taken. The caller then goes on through the
    storage itself (``_optimize_budget``), so the budget stays exact and the sampler sees every trial.
    """
    sid = storage.get_study_id_from_name(study.study_name)
    local = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=study.sampler,
                                pruner=study.pruner, directions=study.directions, study_name=study.study_name)
    waiting: dict[int, int] = {}  # local trial number -> stored trial id of an enqueued (WAITING) trial
    stored = study.get_trials(deepcopy=True)
    if any(t.state == TrialState.RUNNING for t in stored):
        return True  # another writer's trial, or a killed one's: the storage path fails stale ones and retries them
    for t in stored:
        if t.state == TrialState.WAITING:
            waiting[len(local.get_trials(deepcopy=False))] = t._trial_id
        local.add_trial(t)
    known = [len(stored)]  # the study's stored trials, as this copy knows them
    others = [False]

    def write_back(st: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        if others[0]:
            return
        stored_id = waiting.pop(frozen.number, None)
        if stored_id is None:
            if hasattr(storage, "append_finished_trial"):  # one transaction of a few bulk statements
                try:
                    _, number = storage.append_finished_trial(sid, frozen, budget=target)
                except StudyFull:  # another process's trials took the rest of the budget: this one is dropped
                    others[0] = True
                    st.stop()
                    return
                if number != known[0]:
                    others[0] = True
                    st.stop()
                known[0] = number + 1
            else:
                storage.create_new_trial(sid, template_trial=frozen)
            return
        if not storage.set_trial_state_values(stored_id, TrialState.RUNNING):  # the enqueued trial, in place
            others[0] = True  # another process took it: its run is that process's
            st.stop()
            return
        for k, d in frozen.distributions.items():
            if k not in storage.get_trial(stored_id).params:
                storage.set_trial_param(stored_id, k, d.to_internal_repr(frozen.params[k]), d)
        for step, v in frozen.intermediate_values.items():
            storage.set_trial_intermediate_value(stored_id, step, v)
        for k, v in frozen.user_attrs.items():
            storage.set_trial_user_attr(stored_id, k, v)
        for k, v in frozen.system_attrs.items():  # the sampler's and pruner's own (rungs, generation, grid id)
            storage.set_trial_system_attr(stored_id, k, v)
        storage.set_trial_state_values(stored_id, frozen.state, frozen.values)

    c = trial_counts(local)
    remaining = target - c["complete"] - c["pruned"]
    if remaining <= 0:
        return False
    t_end = None if timeout is None else time.monotonic() + timeout  # (Optuna's timeout reads the wall clock)
    local.optimize(objective, n_trials=remaining + len(waiting), catch=(TrialFailed,),
                   callbacks=[write_back, optuna.study.MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                              *deadline(t_end), *callbacks])
    return others[0]


_WAIT_POLL = 1.0  # seconds between two looks at a study whose trial budget other workers' running trials hold


def _optimize_budget(study: optuna.Study, storage: Any, objective: Callable, target: int, timeout: float | None,
                     callbacks: list[Callable], should_stop: Callable[[], bool] = lambda: False,
                     n_trials: int | None = None) -> None:
    """Run trials until the study holds ``target`` finished (complete + pruned) trials, never more.

    Every worker gets the same budget (see ``_BudgetRDBStorage``). When the budget is used up by trials other
    workers still run, this worker waits (polling every ``_WAIT_POLL`` seconds, or the heartbeat interval when
    shorter) until they finish, or until the heartbeat marks them stale (FAIL + a WAITING retry that this worker
    then runs). It stops waiting when the study has not changed for max(60 s, 4 x grace period) (a slow live
    worker, or a foreign one without a heartbeat). Storages without a heartbeat cannot tell a dead worker from a slow one, so there it stops at once.
    ``n_trials``: at most this many trials in this process; ``timeout`` and ``should_stop`` end the loop between
    trials.
    """
    if hasattr(storage, "set_trial_budget"):
        storage.set_trial_budget(study._study_id, target)
    t_end = None if timeout is None else time.monotonic() + timeout
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    idle_limit = max(60.0, 4.0 * (getattr(storage, "grace_period", None) or 2 * (interval or 0)))
    ran = [0]
    seen, changed = None, time.monotonic()

    def _count(st: optuna.Study, tr) -> None:
        ran[0] += 1

    while not should_stop():
        c = trial_counts(study)
        if (snap := tuple(c.values())) != seen:
            seen, changed = snap, time.monotonic()
        left = target - c["complete"] - c["pruned"]
        quota = left if n_trials is None else min(left, n_trials - ran[0])
        t_left = None if t_end is None else t_end - time.monotonic()
        if quota <= 0 or (t_left is not None and t_left <= 0):
            return
        try:
            study.optimize(objective, n_trials=quota, catch=(TrialFailed,),
                           callbacks=[_count, *deadline(t_end), *callbacks])
            return  # quota, timeout or stop(): nothing left for this process to do
        except StudyFull:
            pass
        if interval is None or time.monotonic() - changed > idle_limit:
            return
        time.sleep(min(interval, _WAIT_POLL))  # (the interval is up to 5 s: a worker lingered that long at the end)
        optuna.storages.fail_stale_trials(study)


@functools.cache  # the code this process runs was loaded once: a checkout moved since does not change it
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _sampler(spec: StudySpec, offset: int = 0):
    """The spec's sampler with seed ``spec seed + offset`` (unseeded when the spec's seed is None). It seeds its
    draws before each trial from (that seed, the trial's index; trials ``records.lost_to_kill`` not counted),
    so a study resumed after a kill draws what an uninterrupted run draws (``registry.StepRounding``)."""
    seed = None if spec.sampler.seed is None else (spec.sampler.seed + offset) % 2**32
    return build_sampler(spec.sampler.name, seed, spec.sampler.options,
                         grid_search_space(spec) if spec.sampler.name == "grid" else None, uncounted=lost_to_kill)


def _fold_dates(data: StudyData) -> tuple[tuple[int, str, str], ...]:
    """(fold, first test session, last test session) of each fold ``data`` scores (``StudyRecord.folds``)."""
    d = data.panel.dates
    return tuple((f.fold, str(d[f.test_start]), str(d[f.test_end - 1])) for f in data.folds)


def _show_folds(folds) -> str:
    return f"{len(folds)} fold(s), " + ", ".join(f"{a[:10]}..{b[:10]}" for _, a, b in folds)


def _stored_path(path: str | None) -> str | None:
    """The spec's path as its study stores it, which optuna-dashboard shows to whoever opens it: as written when
    relative, relative to the working folder when under it, else the file's name alone (never the machine's folders,
    a home folder and its user name: the spec's text is stored anyway, the path only names the file)."""
    if not path or not Path(path).is_absolute():
        return path
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return Path(path).name


def study_record(spec: StudySpec, data: StudyData, extra_attrs: Mapping[str, Any] | None = None,
                 n_trials: int | None = None) -> StudyRecord:
    """What a new study of ``spec`` over ``data`` stores about itself (``extra_attrs``: further StudyRecord
    fields, e.g. a walk-forward window's ``records.window_attrs``; an unknown key is an error). ``n_trials``: the
    trials it is asked to run (default the spec's [run].n_trials)."""
    unknown = sorted(set(extra_attrs or {}) - set(STUDY_KEYS))
    if unknown:
        raise ParameterError(f"extra_attrs must be StudyRecord fields, got unknown key(s) {', '.join(unknown)}")
    d0, d1 = data.train_dates
    return StudyRecord.from_attrs({
        "spec_hash": spec.spec_hash, "spec_text": hide_passwords(spec.source), "spec_path": _stored_path(spec.path),
        "spec_name": spec.name,
        "data_fingerprint": data.fingerprint, "accumopt_version": __version__, "git_commit": git_commit(),
        "objective": spec.objective.name, "aggregate": spec.objective.aggregate,
        "train_start": d0, "train_end": d1, "symbols": len(data.panel.symbols),
        "folds": [list(f) for f in _fold_dates(data)],
        "purge": spec.purge(), "embargo": data.cv_embargo, "cv_n_splits": data.cv_n_splits,
        "span_lo": data.lo, "span_hi": data.hi, "regime": spec.data.regime,
        "n_trials_target": n_trials or spec.run.n_trials, "created": stamp(),
        "universe": list(spec.data.universe) if isinstance(spec.data.universe, (list, tuple)) else spec.data.universe,
        "reserve_start": data.reserve_start,
        "coverage": data.panel.coverage.to_dict() if data.panel.coverage is not None else None,
        **(extra_attrs or {}),
    })


def other_code_note(study: optuna.Study, finished: int) -> str | None:
    """The warning for a run about to add trials to a study whose ``finished`` trials another accumopt computed
    (its record's version or git commit differ from this process's): the spec, data and folds match (``open_study``
    checked them), but numbers the engine computes differently now would differ between its old and new trials.
    None when the study holds no finished trial, was made by this code, or records no version (another tool)."""
    if not finished:
        return None
    rec = read_study(study)
    if rec.accumopt_version is None:
        return None
    now = (__version__, git_commit())
    was = (rec.accumopt_version, rec.git_commit)
    if was == now or (was[0] == now[0] and None in (was[1], now[1])):  # a commit unknown on one side: the version
        return None

    def name(v: tuple[str | None, str | None]) -> str:
        return f"accumopt {v[0]}" + (f" (commit {v[1]})" if v[1] else "")

    return (f"study {study.study_name!r} holds {finished} finished trial(s) of {name(was)}; this run's trials are "
            f"computed by {name(now)}: a number the engine computes differently since differs between its old and "
            "new trials (`backtest --params` of an old trial then says DIFFERENT); to compare like with like, start "
            "a new study (--name NEW)")


# --new-name only picks another name for a CHANGED SPEC: a study refused for other data or other folds needs --name
_REMEDY = "Use --name NEW to start a new study (for a changed spec, --new-name picks NAME-2, NAME-3, ...)"


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage, data: StudyData, name: str | None = None,
               new_name: bool = False, extra_attrs: Mapping[str, Any] | None = None,
               seed_offset: int = 0, n_trials: int | None = None, remedy: str = _REMEDY,
               creating: Callable[[], Mapping[str, Any]] | None = None) -> optuna.Study:
    """Create or resume the spec's study. A study of the same name made from a different spec is refused;
    with ``new_name`` the first ``NAME-k`` made from this spec is resumed, else a free ``NAME-k`` is created.
    ``n_trials``: the trials this run asks for (recorded as the study's ``n_trials_target``). ``remedy``: what a
    refusal tells the user to do (a walk-forward has no --name / --new-name). ``creating``: called only when a new
    study is about to be created, its result recorded under ``extra_attrs`` (which win on a shared key):
    ``run_study`` warms the kernels there, so resuming an existing study pays no warm-up here.

    The sampler is seeded with ``seed + seed_offset``, resumed or not: it seeds each trial's draws from (seed,
    the trial's index), so a resumed study neither re-draws its first trials nor draws other trials than an
    uninterrupted run (``registry.StepRounding``).
    """
    asked = name
    name = name or spec.run.study_name or spec.name
    pruner = build_pruner(spec.pruner.name, spec.pruner.options)
    directions = list(spec.objective.directions)
    existing = set(study_names(storage))  # reads no trial
    if name in existing:
        st = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
        old = read_study(st)
        if old.spec_hash is None:  # no record: made by another tool, or a run killed between creating it and
            held = len(st.get_trials(deepcopy=False))  # writing its record (then it holds no trial yet)
            want = [optuna.study.StudyDirection[d.upper()] if isinstance(d, str) else d for d in directions]
            if held or st.directions != want:
                raise SpecError("study", f"study {name!r} holds {held} trial(s) but no record of the spec, data and "
                                         "settings they ran with (made by another tool, not by accumopt); refusing to "
                                         f"resume it. {remedy}")
            created = dict(creating()) if creating is not None else {}
            if read_study(st).spec_hash is not None:  # its creator (another worker) recorded it meanwhile: check it
                return open_study(spec, storage, data, asked, new_name, extra_attrs, seed_offset, n_trials, remedy)
            st.sampler = _sampler(spec, seed_offset)
            return _record_study(st, spec, data, extra_attrs, n_trials, created)
        if old.spec_hash is not None and not spec.matches_stored(old.spec_hash, old.spec_text):
            if not new_name:
                diff = spec.differences(old.spec_text)
                raise SpecError("study", f"study {name!r} was created from a different spec (hash {old.spec_hash}, this spec "
                                         f"{spec.spec_hash}{f': {diff}' if diff else ''}); refusing to resume it. "
                                         f"{remedy}")
            name = _next_free_name(name, existing, storage, spec)
            st = optuna.load_study(study_name=name, storage=storage, pruner=pruner) if name in existing else None
        if st is not None:
            rec = read_study(st)
            fp = rec.data_fingerprint
            if fp is not None and fp != data.fingerprint:
                raise SpecError("data", _other_data(name, spec, rec, data, remedy))
            folds = _fold_dates(data)
            if rec.folds and rec.folds != folds:  # e.g. a walk-forward's [walkforward] n_splits / embargo changed
                raise SpecError("cv", f"study {name!r} scored its trials on other folds ({_show_folds(rec.folds)}; this "
                                      f"run: {_show_folds(folds)}); refusing to mix trials. {remedy}")
            st.sampler = _sampler(spec, seed_offset)
            target = read_study(st).n_trials_target
            if n_trials is not None and (target is None or n_trials > target):  # never below the trials it holds
                set_trials_target(st, n_trials)
            return st
    created = dict(creating()) if creating is not None else {}
    try:
        st = optuna.create_study(study_name=name, storage=storage, sampler=_sampler(spec, seed_offset), pruner=pruner,
                                 directions=directions)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it since the listing above: join it
        return open_study(spec, storage, data, asked, new_name, extra_attrs, seed_offset, n_trials, remedy, creating)
    return _record_study(st, spec, data, extra_attrs, n_trials, created)


def _drop_unseeded(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """A study whose ``[seed_from]`` was refused before it held a trial or a seed holds nothing: it is deleted, so
    the spec fixed as the refusal says runs under the same name (it was kept with the refused spec's record, and
    the fixed spec was then refused as 'created from a different spec'). A study holding a trial, or seeded by an
    earlier run, is kept."""
    if study.get_trials(deepcopy=False) or seeded(study):
        return
    optuna.delete_study(study_name=study.study_name, storage=storage)


def _record_study(st: optuna.Study, spec: StudySpec, data: StudyData, extra_attrs: Mapping[str, Any] | None,
                  n_trials: int | None, created: Mapping[str, Any]) -> optuna.Study:
    """Write a new study's record (its metric names and ``StudyRecord``): when it is created, or when a run finds
    it without one and empty (its creator killed before writing it)."""
    with warnings.catch_warnings():  # set_metric_names is marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        st.set_metric_names(make_objective(spec.objective.name, spec.objective.options).metric_names)
    write_study(st, study_record(spec, data, {**created, **(extra_attrs or {})}, n_trials))
    return st


def _other_data(name: str, spec: StudySpec, rec: StudyRecord, data: StudyData, remedy: str) -> str:
    """The refusal of a study stored with other data than ``data``, saying what moved and how to go on. A spec
    without ``[data].end`` follows the store's last session: each night's ingest moves the span's end and the final
    reserve, so its study is refused every night; the key that keeps one study on fixed data is named."""
    was = (rec.coverage or {}).get("end")
    now = data.study_end
    head = f"study {name!r} was run on different data (fingerprint {rec.data_fingerprint}, now {data.fingerprint})"
    if not spec.sets("data", "end") and was is not None and now is not None and str(was)[:10] != now:
        reserve = lambda r: f" (final reserve from {r})" if r else ""  # noqa: E731
        return (f"{head}: the spec sets no [data].end, so its span and final reserve follow the store's last session, "
                f"which moved from {str(was)[:10]}{reserve(rec.reserve_start)} to {now}{reserve(data.reserve_start)}; "
                f"refusing to mix trials. To keep one study resumable while the store grows, set [data].end in the "
                f"spec (e.g. end = \"{now}\"; a changed spec: start it as a new study, below), or go on with the data "
                f"as it is now in a new study. {remedy}")
    if was is None:  # a study stored before its coverage was: what moved is not known
        return f"{head}; refusing to mix trials. {remedy}"
    return (f"{head}: the store's rows of its span changed since (a re-published day, a revised close, a split, a "
            f"symbol-map change or another universe, rebuilt into daily_metrics); refusing to mix trials. {remedy}")


def _next_free_name(name: str, existing, storage, spec: StudySpec) -> str:
    """The first ``NAME-k`` (k >= 2) made from ``spec`` (``StudySpec.matches_stored``: resumed), else the first
    free one."""
    i = 2
    while f"{name}-{i}" in existing:
        rec = read_study(optuna.load_study(study_name=f"{name}-{i}", storage=storage))
        if spec.matches_stored(rec.spec_hash, rec.spec_text):
            return f"{name}-{i}"
        i += 1
    return f"{name}-{i}"


@dataclass
class StudyRunResult:
    """The outcome of ``run_study``: the study as stored at the end (``study``), its trial counts and best."""

    study_name: str
    storage: str
    counts: dict[str, int]
    best_value: Any
    best_params: dict[str, Any] | None
    seconds: float
    interrupted: bool
    study: optuna.Study | None = None
    first_failure: str | None = None  # "trial N: reason" of the first failed trial, when any failed
    warnings: tuple[str, ...] = ()  # what the user should know about this run (e.g. [seed_from] on other data)


def _best(study: optuna.Study):
    try:
        if len(study.directions) > 1:
            return [t.values for t in study.best_trials], None
        return study.best_value, study.best_params
    except ValueError:
        return None, None


_FAIL_STOP = 5  # a run whose first this-many finished trials all failed stops (the error is not going away)


class _FailureGuard:
    """Callback: stops the run when its first ``_FAIL_STOP`` finished trials all failed."""

    def __init__(self) -> None:
        self.finished = 0
        self.failed = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.finished += 1
        self.failed += trial.state == TrialState.FAIL
        if self.finished == self.failed == _FAIL_STOP:
            study.stop()


def _first_failure(study: optuna.Study) -> str | None:
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    if not failed:
        return None
    t = min(failed, key=lambda t: t.number)
    return f"trial {t.number}: {read_trial(t).fail_reason or 'no reason stored (failed outside the objective)'}"


# What a person at a terminal sees while numba compiles the engine kernels before the first trial (or loads them
# from its cache, about a second): the first run after an install compiles for about 30 s on an idle machine.
WARMUP_STATUS = "preparing the engine kernels (numba compiles them on a first run: ~30 s)"


def _busy(enabled: bool, message: str) -> Any:
    """A transient spinner with ``message`` on stderr while the block runs, when ``enabled`` (the progress rule of
    the command, ``cli._common.progress_enabled``); nothing otherwise."""
    import contextlib

    return Console(stderr=True).status(message) if enabled else contextlib.nullcontext()


class _Progress:
    """rich progress bar callback: done/total, pruned, failed, best so far, ETA."""

    def __init__(self, total: int, already: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        if not enabled:
            return
        self.p = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                          TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
                          console=Console(stderr=True))  # stderr: stdout is the command's report
        self.task = self.p.add_task("trials", total=total, completed=already, info="")
        self.p.start()

    def __call__(self, study: optuna.Study, trial) -> None:
        if not self.enabled:
            return
        c = trial_counts(study)
        best, _ = _best(study)
        b = f"{best:.6g}" if isinstance(best, float) else "-"
        self.p.update(self.task, completed=min(self.total, c["complete"] + c["pruned"]),
                      info=f"pruned {c['pruned']} failed {c['failed']} best {b}")

    def close(self) -> None:
        if self.enabled:
            self.p.stop()


def worker_stop() -> Callable[[], bool]:
    """For a forked worker process (``study run --jobs``, ``walkforward --jobs``), called first thing in it: from
    now on SIGINT sets a flag (the handler it inherited would set the PARENT's flag, in its own copy, and a parent
    started ignoring SIGINT, nohup or a script's ``cmd &``, would leave it ignored), and the returned
    ``should_stop()`` is true once SIGINT came or the parent is gone (killed: its parent id changed, the worker
    was orphaned and would run on). The worker checks it between trials: it stops after its running trial."""
    parent = os.getppid()
    stop = {"stop": False}

    def _sigint(signum, frame):
        stop["stop"] = True

    signal.signal(signal.SIGINT, _sigint)
    return lambda: stop["stop"] or os.getppid() != parent


def _worker(spec: StudySpec, storage_url: str | None, name: str, quota: int, data: StudyData, timeout: float | None,
            target: int, seed_offset: int) -> None:
    """One forked ``--jobs`` process on a journal file (an RDB storage runs ``_pool.optimize_pool``): its own
    storage connection, sampler seed ``seed + seed_offset``. It stops
    after its running trial on Ctrl-C (SIGINT: the handler it inherited set the PARENT's flag, in its own copy, so
    a worker ran on to its quota) and when its parent is gone (killed: the worker would run on, orphaned)."""
    should_stop = worker_stop()

    def _stopper(st: optuna.Study, tr) -> None:
        if should_stop():
            st.stop()

    warm_kernels(parallel=needs_parallel(data.panel))
    storage = make_storage(storage_url)
    study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(data.spec, seed_offset),
                              pruner=build_pruner(spec.pruner.name, spec.pruner.options))
    _optimize_budget(study, storage, TrialObjective(data), target, timeout, n_trials=quota, should_stop=should_stop,
                     callbacks=[_stopper, _FailureGuard(),
                                optuna.study.MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED))])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def unreproducible_note(spec: StudySpec, why: str, instead: str) -> str | None:
    """The note that the spec's [sampler] seed does not make this run's trials reproducible (``why``: several
    processes draw at once, ``instead``: what would make them so), said by ``study run --jobs N``, ``study worker``
    and ``api.run_study(jobs=N)``; None for an unseeded spec (nothing was promised)."""
    if spec.sampler.seed is None:
        return None
    return f"{why}, so [sampler] seed = {spec.sampler.seed} does not make the trials reproducible ({instead} does)"


@naming_its_storage
def run_study(
    spec: StudySpec,
    db: str | Path,
    storage_url: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    jobs: int = 1,
    name: str | None = None,
    new_name: bool = False,
    progress: bool = False,
    data: StudyData | None = None,
    extra_attrs: dict[str, Any] | None = None,
    callbacks: list[Callable] | None = None,
    worker: bool = False,
    seed: bool = True,
    remedy: str = _REMEDY,
) -> StudyRunResult:
    """Create or resume the study and run it until it holds ``n_trials`` finished (complete + pruned) trials.

    ``worker``: this process joins a study other processes run (``study worker``); its sampler seed also mixes
    in the process id, so workers started together do not draw the same parameters (not reproducible).
    ``seed``: seed from ``[seed_from]`` (walk-forward windows do not: the seed study saw later sessions).
    ``n_trials`` (default [run].n_trials) must be >= 1 and ``timeout`` (default [run].timeout) > 0 when given: 0
    is refused, never read as "not given".
    A trial that fails (``TrialFailed``) is stored with its reason and the run goes on; a run whose first 5
    trials all fail stops, and a study in which every trial failed is an ``AccumoptError`` giving the first
    failure's reason. ``remedy``: what refusing to resume the study tells the user to do (``open_study``).
    """
    check_param(n_trials is None or (_is_int(n_trials) and n_trials >= 1), "n_trials", "an integer >= 1", n_trials)
    check_param(timeout is None or (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                                    and math.isfinite(timeout) and timeout > 0),
                "timeout", "a finite number of seconds > 0", timeout)
    if n_trials is not None and spec.sampler.name == "grid":  # GridSampler stops the study once each is done
        size = math.prod(len(v) for v in grid_search_space(spec).values())
        check_param(n_trials <= size, "n_trials", f"<= {size}, the configurations of the grid (a grid study runs "
                                                  "each once and stops)", n_trials)
    t0 = time.perf_counter()
    splits: list[str] = []  # said once, by the run that loads the data (not by each walk-forward window's study)
    if data is None:
        panel, reserve = load_study_data(spec, db)
        data = prepare_data(spec, panel, 0, reserve)
        splits = [*span_lines(spec, panel), *panel_split_lines(panel)]
    parallel = needs_parallel(data.panel) and jobs <= 1
    warmed: list[float] = []

    def warm_up() -> dict[str, Any]:
        """numba compiles (or loads its cache) here, not inside the first timed trial; a run that forks workers
        leaves the parallel kernels to each worker (a process that ran them must not fork). Only a run that
        creates the study or has trials left to run pays it: a complete study is reported without it."""
        if not warmed:
            with _busy(progress, WARMUP_STATUS):  # up to a minute of silence otherwise, before the trials' bar
                warmed.append(warm_kernels(parallel=parallel))
        return {"kernel_warmup_s": round(warmed[0], 3)}

    storage_url = resolve_storage(storage_url, spec.run.storage)
    storage = make_storage(storage_url)
    if jobs > 1 and isinstance(storage, optuna.storages.InMemoryStorage):
        raise ParameterError(f"jobs must be 1 with an in-memory storage ({storage_url}): worker processes cannot see it, got jobs={jobs}")
    target = n_trials or spec.run.n_trials
    seed_offset = 1_000_003 * (os.getpid() % 997 + 1) if worker else 0
    study = open_study(spec, storage, data, name=name, new_name=new_name, extra_attrs=extra_attrs,
                       seed_offset=seed_offset, n_trials=target, remedy=remedy, creating=warm_up)
    optuna.storages.fail_stale_trials(study)  # trials left RUNNING by a killed process: FAIL (+ retried)
    notes: list[str] = [*splits]
    try:
        searched = seed_from_study(study, spec, storage, notes) if seed else spec
    except SpecError:
        _drop_unseeded(study, storage)
        raise
    if searched is not spec:  # the weight ranges narrowed around the seeds: the trials search those
        data = dataclasses.replace(data, spec=searched)
        if spec.sampler.name == "grid":
            study.sampler = _sampler(searched, seed_offset)
    timeout = timeout or spec.run.timeout
    c = trial_counts(study)
    remaining = max(0, target - c["complete"] - c["pruned"])
    if remaining > 0 and (note := other_code_note(study, c["complete"] + c["pruned"])):
        notes.append(note)
    if remaining > 0:
        warm_up()
    interrupted = False
    prog = _Progress(target, c["complete"] + c["pruned"], progress)
    stop_flag = {"stop": False}

    def _sigint(signum, frame):  # Ctrl-C: finish the running trial, then stop; the study stays resumable
        stop_flag["stop"] = True

    def _stopper(st: optuna.Study, tr) -> None:
        if stop_flag["stop"]:
            st.stop()

    old = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, _sigint)
    except ValueError:  # not the main thread
        old = None
    try:
        mirrored = remaining > 0 and jobs <= 1 and not worker and not isinstance(storage, optuna.storages.InMemoryStorage)
        t0 = time.monotonic()
        if mirrored and not _optimize_mirrored(
                study, storage, TrialObjective(data), target, timeout,
                callbacks=[prog, _stopper, _FailureGuard(), *(callbacks or [])]):
            pass  # the single writer it checked it was
        elif remaining > 0 and jobs <= 1:  # several writers (or another process met on the way): the storage path
            left = None if timeout is None else timeout - (time.monotonic() - t0)
            if not stop_flag["stop"] and (left is None or left > 0):
                if mirrored:  # the copy's sampler and pruner hold its study: fresh ones for the stored study
                    study.sampler = _sampler(data.spec, seed_offset)
                    study.pruner = build_pruner(spec.pruner.name, spec.pruner.options)
                _optimize_budget(
                    study, storage, TrialObjective(data), target, left, should_stop=lambda: stop_flag["stop"],
                    callbacks=[prog, _stopper, _FailureGuard(),
                               optuna.study.MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                               *(callbacks or [])],
                )
        elif remaining > 0 and not worker and hasattr(storage, "write_finished_trial"):  # SQLite, PostgreSQL
            optimize_pool(study, storage, data, jobs, target, timeout, should_stop=lambda: stop_flag["stop"],
                          callbacks=[prog, _stopper, _FailureGuard(), *(callbacks or [])])
        elif remaining > 0:  # a journal file: worker processes, each through the storage
            data.evaluator.features.warm()  # shared copy-on-write by the forked workers
            ctx = multiprocessing.get_context("fork")
            quotas = [remaining // jobs + (1 if i < remaining % jobs else 0) for i in range(jobs)]
            procs = [ctx.Process(target=_worker, args=(spec, storage_url, study.study_name, q, data, timeout, target,
                                                       100_003 * (i + 1)))
                     for i, q in enumerate(quotas) if q > 0]
            if hasattr(storage, "engine"):  # no pooled SQLite connection crosses the fork (SQLite forbids using one in
                storage.engine.dispose()  # a child, and its lock bookkeeping would be copied); reopened on next use
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                for p in procs:
                    p.join(timeout=0.5)
                prog(study, None)
                if stop_flag["stop"]:
                    for p in procs:
                        if p.is_alive():
                            os.kill(p.pid, signal.SIGINT)
            bad = [p.exitcode for p in procs if p.exitcode not in (0, None, -signal.SIGINT)]
            if bad:
                raise AccumoptError(f"{len(bad)} worker process(es) failed with exit codes {bad}")
        interrupted = stop_flag["stop"]
    finally:
        prog.close()
        if old is not None:
            signal.signal(signal.SIGINT, old)
    study = optuna.load_study(study_name=study.study_name, storage=storage)
    counts = trial_counts(study)
    failure = _first_failure(study)
    if failure is not None and counts["complete"] + counts["pruned"] == 0 and not interrupted:
        raise AccumoptError(f"study {study.study_name!r}: every trial failed ({counts['failed']}); first failure, {failure}")
    held, done = counts["running"], counts["complete"] + counts["pruned"]
    if held and done < target and not interrupted and not has_heartbeat(storage) \
            and not isinstance(storage, optuna.storages.InMemoryStorage):
        notes.append(f"{held} trial(s) still RUNNING hold {held} of the {target} trials, so this run stopped at "
                     f"{done} finished: {storage_url} keeps no heartbeat, so a trial left by a killed process is never "
                     "failed and retried (one a live worker runs finishes there). Studies that must survive a kill: "
                     "SQLite or PostgreSQL")
    if seed and (note := pruned_seeds_note(study)):
        notes.append(note)
    if seed and spec.seed_from is not None and counts["waiting"] and done >= target and not interrupted:  # explore21
        notes.append(f"{counts['waiting']} seed(s) of [seed_from] {spec.seed_from.study!r} still wait: its n_trials "
                     f"= {target} were done before them; raise n_trials to run them, or lower [seed_from] top")
    best, params = _best(study)
    return StudyRunResult(study.study_name, storage_url, counts, best, params,
                          time.perf_counter() - t0, interrupted, study, failure, tuple(notes))
