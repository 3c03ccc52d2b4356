"""``study run --jobs J`` on an RDB storage: one coordinator process, J forked compute processes.

The coordinator owns an in-process copy of the stored study (``_Mirror``, Optuna's ``InMemoryStorage``), the
sampler and the pruner, and runs Optuna's own ``optimize(n_jobs=J)`` on it: each of Optuna's J threads hands its
trial, its parameters drawn here (``space.suggest``, the objective's first call), to a free compute process, which
runs the objective on a ``RemoteTrial`` whose calls (``report``, ``should_prune``, ``set_user_attr``,
``study.get_trials``, a ``suggest_*`` not drawn yet) come back over a pipe and run on the real Optuna trial here.
So sampling and pruning read in-memory trials, and a trial reaches the storage once, finished, in one transaction
(``_BudgetRDBStorage.write_finished_trial``), as with ``--jobs 1``. The compute processes never use the storage.

The storage stays the authority on the trial budget: each new trial first claims a RUNNING row through the
storage's budget check (``_BudgetRDBStorage.claim_trial``, with the row's first heartbeat; one thread here beats
for the J running rows), and its result is written into that row. A ``study worker`` sharing the study sees the J claims as
held slots, and this process sees its trials; enqueued (WAITING) rows are popped in the storage with its one
conditional UPDATE before they run here. A SIGKILL leaves at most J claimed rows RUNNING: their heartbeats go
stale, the next run fails them (lost to the kill: not counted, retried) and completes the budget.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optimizer.engine.warmup import needs_parallel, warm_kernels
from optimizer.errors import AccumoptError
from optimizer.study.data import StudyData
from optimizer.study.records import trial_counts
from optimizer.study.space import suggest
from optimizer.study.storage import StudyFull
from optimizer.study.trial import TrialFailed, TrialObjective

__all__ = ["RemoteTrial", "optimize_pool"]

# what a RemoteTrial forwards: methods called on the coordinator's trial (_ONE_WAY: without waiting for the
# answer; an error is raised at the trial's end), and attributes read from it
_METHODS = frozenset({"suggest_float", "suggest_int", "suggest_categorical", "report", "should_prune",
                      "set_user_attr", "set_system_attr"})
_ONE_WAY = frozenset({"report", "set_user_attr", "set_system_attr"})
_ATTRS = frozenset({"params", "distributions", "user_attrs", "system_attrs", "datetime_start"})
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class _RemoteStudy:
    """``trial.study`` of a ``RemoteTrial``: ``get_trials`` of the coordinator's study (what ``TrialObjective``
    reads to find an earlier trial of the same configuration). Finished trials never change: each is sent once
    to a compute process and kept there."""

    def __init__(self, trial: "RemoteTrial") -> None:
        self._trial = trial

    def get_trials(self, deepcopy: bool = False, states: Any = None) -> list[FrozenTrial]:
        states = tuple(states) if states is not None else None
        new, live = self._trial._ask("trials", states)
        cache = self._trial._cache
        for t in new:
            cache[t.number] = t
        out = [t for t in cache.values() if states is None or t.state in states] + list(live)
        return sorted(out, key=lambda t: t.number)


class RemoteTrial:
    """The trial a compute process's objective sees: each call runs on the Optuna trial in the coordinator
    (``_Slot.serve``). Only what the tool's objective uses is forwarded (``_METHODS``, ``_ATTRS``, ``number``,
    ``study``)."""

    def __init__(self, conn: Any, number: int, drawn: dict[str, Any], cache: dict[int, FrozenTrial]) -> None:
        self._conn = conn
        self.number = number
        self._drawn = drawn  # the parameters the coordinator drew before sending the trial (``space.suggest``)
        self._cache = cache
        self.study = _RemoteStudy(self)

    def _ask(self, kind: str, *payload: Any) -> Any:
        self._conn.send((kind, *payload))
        ok, value = self._conn.recv()
        if not ok:
            raise value
        return value

    def _suggest(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self._drawn:  # drawn by the same call in the coordinator
            return self._drawn[name]
        return self._ask("call", kind, (name, *args), kwargs)

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._suggest("suggest_float", name, *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._suggest("suggest_int", name, *args, **kwargs)

    def suggest_categorical(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._suggest("suggest_categorical", name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in _ATTRS:
            return self._ask("get", name)
        if name in _ONE_WAY:
            return lambda *args, **kwargs: self._conn.send(("tell", name, args, kwargs))
        if name in _METHODS:
            return lambda *args, **kwargs: self._ask("call", name, args, kwargs)
        raise AttributeError(f"{type(self).__name__} does not forward {name!r}")


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling (a trial's TrialPruned / TrialFailed, the tool's own errors), else an
    AccumoptError with its type and message (an exception class whose constructor pickle cannot call again)."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any pickling failure: the error is carried as text
        return AccumoptError(f"{type(e).__name__}: {e}")


def _serve_trials(conn: Any, data: StudyData, theirs: tuple = ()) -> None:
    """A compute process: run the objective for each trial number the coordinator sends, until it sends None or
    is gone (its pipe closed: killed, or it stopped). Ctrl-C goes to the coordinator, which lets the running trial
    finish: this process ignores SIGINT. ``theirs``: the coordinator's ends of the pipes, copied by the fork and
    closed here first (held open here, they would keep this process from ever seeing its coordinator gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for c in theirs:
        c.close()
    warm_kernels(parallel=needs_parallel(data.panel))
    objective = TrialObjective(data)
    cache: dict[int, FrozenTrial] = {}
    try:
        while (msg := conn.recv()) is not None:
            number, drawn = msg
            try:
                out = (True, objective(RemoteTrial(conn, number, drawn, cache)))
            except Exception as e:  # noqa: BLE001 - every outcome goes back to the coordinator's Optuna, which decides
                out = (False, _portable(e))
            conn.send(out)
    except (EOFError, OSError):  # the coordinator is gone: nothing to report to
        return


class _Slot:
    """One compute process and the coordinator's end of its pipe."""

    def __init__(self, ctx: Any, data: StudyData, target: Callable, others: list["_Slot"]) -> None:
        self.conn, child = ctx.Pipe()
        theirs = (self.conn, *(o.conn for o in others))  # every coordinator end the fork copies
        self.proc = ctx.Process(target=target, args=(child, data, theirs), daemon=True)
        self.proc.start()
        child.close()
        self.sent: set[int] = set()  # numbers of the finished trials this process holds

    def serve(self, trial: optuna.trial.Trial, study: optuna.Study, spec: Any) -> Any:
        """Run ``trial`` in the compute process, answering its calls; its value, or its exception raised here.
        Its parameters are drawn here first, by the call the objective makes (``space.suggest``), and sent with
        it: one message instead of a round trip per parameter."""
        suggest(trial, spec)
        self.conn.send((trial.number, dict(trial.params)))
        deferred: BaseException | None = None  # the first error of a one-way call
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                self.proc.join(timeout=5)
                raise AccumoptError(f"a study compute process died during trial {trial.number} "
                                    f"(exit code {self.proc.exitcode})") from None
            kind = msg[0]
            if kind is True:
                if deferred is not None:
                    raise deferred
                return msg[1]
            if kind is False:
                raise msg[1]
            if kind == "tell":
                _, name, args, kwargs = msg
                try:
                    if name not in _ONE_WAY:
                        raise AttributeError(name)
                    getattr(trial, name)(*args, **kwargs)
                except Exception as e:  # noqa: BLE001 - raised when the trial ends, the objective's outcome aside
                    deferred = deferred or e
                continue
            try:
                if kind == "call":
                    _, name, args, kwargs = msg
                    if name not in _METHODS:
                        raise AttributeError(name)
                    out = getattr(trial, name)(*args, **kwargs)
                elif kind == "get":
                    if msg[1] not in _ATTRS:
                        raise AttributeError(msg[1])
                    out = getattr(trial, msg[1])
                else:  # "trials": the finished trials this process has not seen, and the others as they stand
                    states = msg[1]
                    new, live = [], []
                    for t in study.get_trials(deepcopy=False, states=states):
                        if t.state in _FINISHED:
                            if t.number not in self.sent:
                                self.sent.add(t.number)
                                new.append(t)
                        else:
                            live.append(t)
                    out = (new, live)
                reply = (True, out)
            except Exception as e:  # noqa: BLE001 - raised in the compute process, where the objective called it
                reply = (False, _portable(e))
            self.conn.send(reply)

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass  # already gone
        self.conn.close()


class _Mirror(optuna.storages.InMemoryStorage):
    """The coordinator's copy of the stored study. A new trial is created here only after the storage gave it a
    row (``claiming``: the storage's budget check, ``StudyFull`` when the study's trials are all held), under one
    lock, so the copy numbers its trials as the storage does: another writer's rows in between are added as
    ``_foreign`` placeholders (RUNNING, no parameters: the sampler and the pruner read finished trials, and the
    progress bar counts no failure). A WAITING trial (an enqueued seed, a retry) runs here only once its stored row
    was popped (``set_trial_state_values``); one another process took stays here as that process's (RUNNING)."""

    def __init__(self, backend: Any, stored_study_id: int) -> None:
        super().__init__()
        self.backend = backend
        self.sid = stored_study_id
        self.stored: dict[int, int] = {}  # local trial id -> its stored row (claimed or popped): ours to write
        self.waiting: dict[int, int] = {}  # local trial id -> stored id of a WAITING row not yet popped
        self.claiming = False
        self._claim = threading.Lock()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is not None or not self.claiming:
            return super().create_new_trial(study_id, template_trial)
        with self._claim:
            stored, number = self.backend.claim_trial(self.sid)  # StudyFull when the budget is held
            while len(self._studies[study_id].trials) < number:
                super().create_new_trial(study_id, template_trial=_foreign())
            tid = super().create_new_trial(study_id)
            self.stored[tid] = stored
        return tid

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        if state != TrialState.RUNNING or not self.claiming:
            return super().set_trial_state_values(trial_id, state, values)
        with self._claim:  # a pop: one thread at a time (two of Optuna's threads may pick the same WAITING trial)
            stored = self.waiting.pop(trial_id, None)
            if stored is None:  # popped already (by another thread here, or by another process)
                return False
            try:
                took = self.backend.set_trial_state_values(stored, TrialState.RUNNING)
            except optuna.exceptions.UpdateFinishedTrialError:
                took = False
            if not took:  # another worker took (or finished) it: not ours to run
                super().set_trial_state_values(trial_id, TrialState.RUNNING)
                return False
            self.stored[trial_id] = stored
            return super().set_trial_state_values(trial_id, state, values)


def _foreign() -> FrozenTrial:
    """Another process's trial in the coordinator's copy: it holds its number, nothing else."""
    return optuna.trial.create_trial(state=TrialState.RUNNING)


def _mirror(study: optuna.Study, backend: Any) -> optuna.Study:
    """A ``_Mirror`` of ``study`` as stored now, numbered as stored (a RUNNING row: a ``_foreign`` placeholder)."""
    m = _Mirror(backend, study._study_id)
    local = optuna.create_study(storage=m, sampler=study.sampler, pruner=study.pruner, directions=study.directions,
                                study_name=study.study_name)
    for t in study.get_trials(deepcopy=True):
        if t.state == TrialState.RUNNING:
            local.add_trial(_foreign())
            continue
        local.add_trial(t)
        if t.state == TrialState.WAITING:
            m.waiting[local.get_trials(deepcopy=False)[-1]._trial_id] = t._trial_id
    m.claiming = True
    return local


_WAIT_POLL = 1.0  # seconds between two looks at a study whose trial budget other workers' running trials hold


def deadline(t_end: float | None) -> list[Callable]:
    """The Optuna callbacks that stop a run once ``time.monotonic()`` reaches ``t_end`` (none without one): the
    run's timeout, in place of Optuna's own ``timeout``, which measures the machine's local wall clock
    (``datetime.now()``): a daylight-saving change during a run moved it by an hour (in New York on 2024-03-10 a
    30-minute timeout ran no trial; in November a run went on an hour past it)."""
    if t_end is None:
        return []

    def stop(study: optuna.Study, _trial: FrozenTrial) -> None:
        if time.monotonic() >= t_end:
            study.stop()
    return [stop]


def optimize_pool(study: optuna.Study, storage: Any, data: StudyData, jobs: int, target: int,
                  timeout: float | None, callbacks: list[Callable], should_stop: Callable[[], bool]) -> None:
    """Run ``study`` (on ``storage``, an RDB storage of ``make_storage``) until it holds ``target`` finished
    (complete + pruned) trials, ``jobs`` trials at a time in forked compute processes (see the module docstring).
    ``callbacks`` run here after each trial, on the in-process copy; ``timeout`` and ``should_stop`` end the run
    between trials. When the budget is held by other workers' running trials it waits for them as
    ``run._optimize_budget`` does (their heartbeat going stale fails and retries them)."""
    storage.set_trial_budget(study._study_id, target)
    data.evaluator.features.warm()  # shared copy-on-write by the forked compute processes
    if hasattr(storage, "engine"):  # no pooled connection crosses the fork (SQLite forbids using one in a child)
        storage.engine.dispose()
    ctx = multiprocessing.get_context("fork")
    slots: list[_Slot] = []
    for _ in range(jobs):
        slots.append(_Slot(ctx, data, _serve_trials, slots))
    free: queue.Queue[_Slot] = queue.Queue()
    for s in slots:
        free.put(s)
    write = threading.Lock()
    t_end = None if timeout is None else time.monotonic() + timeout
    interval = storage.get_heartbeat_interval()
    idle_limit = max(60.0, 4.0 * (getattr(storage, "grace_period", None) or 2 * (interval or 0)))
    seen, changed = None, time.monotonic()
    beating: set[int] = set()  # stored ids of the trials running now: their heartbeats
    done = threading.Event()

    def beat() -> None:  # Optuna's heartbeat thread beats for one trial; this one for the J running here
        while not done.wait(interval):
            for tid in list(beating):
                storage.record_heartbeat(tid)

    def objective(local: optuna.Study) -> Callable[[optuna.trial.Trial], Any]:
        mirror: _Mirror = local._storage

        def run(trial: optuna.trial.Trial) -> Any:
            slot = free.get()
            stored = mirror.stored[trial._trial_id]
            beating.add(stored)
            try:
                return slot.serve(trial, local, data.spec)
            except (optuna.TrialPruned, TrialFailed):
                raise
            except BaseException:  # the run stops on it: the claimed row must not stay RUNNING
                storage.set_trial_state_values(stored, TrialState.FAIL)
                raise
            finally:
                beating.discard(stored)
                free.put(slot)
        return run

    def write_back(local: optuna.Study, frozen: FrozenTrial) -> None:
        stored = local._storage.stored.get(frozen._trial_id)
        if stored is None:
            return
        with write:
            if not storage.write_finished_trial(study._study_id, frozen, trial_id=stored):
                warnings.warn(f"study {study.study_name!r}: trial {frozen.number} finished after another process "
                              "failed its row as stale (its heartbeat lapsed): not stored, its retry runs it again",
                              RuntimeWarning, stacklevel=2)

    heart = threading.Thread(target=beat, name="accumopt-heartbeat", daemon=True)
    heart.start()
    try:
        while not should_stop():
            c = trial_counts(study)
            if (snap := tuple(c.values())) != seen:
                seen, changed = snap, time.monotonic()
            left = target - c["complete"] - c["pruned"]
            t_left = None if t_end is None else t_end - time.monotonic()
            if left <= 0 or (t_left is not None and t_left <= 0):
                return
            local = _mirror(study, storage)
            try:
                local.optimize(objective(local), n_trials=left, n_jobs=jobs, catch=(TrialFailed,),
                               callbacks=[write_back, *deadline(t_end), *callbacks])
                return  # done, stopped by a callback, or out of time (trials that failed leave their part of the
                # budget to a resumed run, as with one process)
            except StudyFull:
                pass
            if time.monotonic() - changed > idle_limit:
                return
            time.sleep(min(interval or _WAIT_POLL, _WAIT_POLL))
            optuna.storages.fail_stale_trials(study)
    finally:
        done.set()
        for s in slots:
            s.close()
        for s in slots:
            s.proc.join(timeout=30)
            if s.proc.is_alive():  # a trial still running after the coordinator stopped: not waited for
                s.proc.kill()
