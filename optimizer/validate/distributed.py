"""Walk-forward windows claimed by any number of workers through the study storage (issue 15, point 1).

Design: a worker claims a WHOLE window and runs its study as one sequential study (the single-process path:
``run_study`` with one process; the sampler seeds each trial's draws from the spec's seed and the trial's index),
so every window's study is the one a single-process run makes, trial for trial, even when it was resumed; the coordinator stitches the windows in window order. Windows
are independent given the spec (a window's train span never depends on an earlier winner), so the order in which
workers finish does not matter. Several workers on the trials of ONE window are not used: TPE with parallel
workers is not sequence-identical to a sequential run, and identical results are the point.

Claims live in the storage itself, through Optuna's storage API only (works on SQLite and PostgreSQL, any machine):
a marker study ``<study>-wf-claims`` (``records.claims_name``; hidden from listings) holds the run's settings
(``records.write_wf_run``: spec hash, trials per window, final, the window studies' names) and one RUNNING trial
per claim, created from a template in one transaction with its window and worker (``records.claim_template``;
the window's index in the run also as the claim's one parameter, so optuna-dashboard can compute the study's importances).
A claim carries Optuna's heartbeat (``make_storage``'s grace period, env ``ACCUMOPT_HEARTBEAT_GRACE``): a thread
beats every held claim; a claim whose beat is older than the grace period is failed (``fail_stale_no_retry``),
which frees its window. Among the live claims of a window the one with the lowest trial id wins (ids are
assigned by the database, atomically): a worker creates its claim, reads the window's claims back and withdraws
(FAIL) unless its own is the first live one, so two workers never both run a window. A finished window's claim is
COMPLETE. A killed worker's window is resumed by the next worker that finds its claim stale: the window's stored
trials are kept (each trial is committed when it finishes) and the study runs on to exactly the configured
number of trials, the trials an uninterrupted run draws (``registry.StepRounding``, as any resumed study).

A live worker whose claim was failed (its heartbeat thread starved past the grace period) notices on its next
beat and stops its window after the running trial; documented limit: that trial may still be written.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from optimizer.errors import AccumoptError, Interrupted, ParameterError  # Interrupted: re-exported
from optimizer.study.records import claim_template, claims_name, end_claim, read_claim, read_wf_run, write_wf_run
from optimizer.study.storage import fail_stale_no_retry, has_heartbeat

__all__ = ["WindowClaims", "work_windows", "wait_for_run", "worker_id", "Interrupted", "DONE", "HELD", "FREE", "POLL"]

DONE, HELD, FREE = "done", "held", "free"
POLL = 0.5  # seconds between two looks at the claims while every window left is held by another worker


def worker_id() -> str:
    """``host:pid`` of this process (what a claim records)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def wait_for_run(storage: optuna.storages.BaseStorage, study_name: str, wait: float,
                 on_ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """The settings of the walk-forward of ``study_name`` a coordinator registered in ``storage``, waiting up to
    ``wait`` seconds for it to appear. ``on_ready``: called once, before the first look (this process is up and its
    storage open: a coordinator started from now on is joined)."""
    name = claims_name(study_name)
    t_end = time.monotonic() + wait
    if on_ready is not None:
        on_ready()
    while True:
        try:
            run = read_wf_run(optuna.load_study(study_name=name, storage=storage))
            if run is not None:
                return run
        except KeyError:
            pass
        if time.monotonic() >= t_end:
            raise AccumoptError(f"no walk-forward of {study_name!r} to join in this storage (no study {name!r} after "
                                f"waiting {wait:.0f} s); start `accumopt walkforward SPEC --storage URL` first")
        time.sleep(1.0)


class WindowClaims:
    """The claims study of one walk-forward on ``storage`` (a heartbeat storage from ``make_storage``).

    ``create=True`` (the coordinator): create the claims study if needed and record ``run`` (the run's settings);
    otherwise (a worker) wait up to ``wait`` seconds for a coordinator to have recorded one."""

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, run: dict[str, Any] | None = None,
                 wait: float = 0.0, worker: str | None = None) -> None:
        if not has_heartbeat(storage):
            raise ParameterError("a distributed walk-forward needs a storage with heartbeats (SQLite or another "
                                 "RDB URL such as postgresql://...); journal and in-memory storages run the windows "
                                 "in one process")
        self.storage = storage
        self.worker = worker or worker_id()
        self.name = claims_name(study_name)
        self.interval = float(storage.get_heartbeat_interval() or 1)
        if run is not None:
            study = optuna.create_study(study_name=self.name, storage=storage, load_if_exists=True)
            write_wf_run(study, run)
        else:
            wait_for_run(storage, study_name, wait)
            study = optuna.load_study(study_name=self.name, storage=storage)
        self.study = study
        self.sid = study._study_id
        settings = run if run is not None else read_wf_run(study) or {}
        self.key = settings.get("key")
        self.windows = tuple(settings.get("windows") or ())  # the claims' ``window`` parameter's choices
        self._held: dict[int, str] = {}
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._beat_loop, name="wf-claims-heartbeat", daemon=True)
        self._beat.start()

    @property
    def run(self) -> dict[str, Any]:
        """The run's settings as the coordinator recorded them."""
        return read_wf_run(optuna.load_study(study_name=self.name, storage=self.storage)) or {}

    # -- claims
    def _claims(self) -> list[tuple[int, TrialState, str]]:
        """(trial id, state, window) of each claim of this run's settings (``key``): a window finished by an earlier
        run of other settings (more trials per window, another spec or other data) is not done for this one."""
        out = []
        for t in self.storage.get_all_trials(self.sid, deepcopy=False):
            c = read_claim(t)
            if c is not None and (c.get("key") == self.key or t.state != TrialState.COMPLETE):
                out.append((t._trial_id, t.state, c["window"]))
        return out

    def states(self, windows: Sequence[str]) -> dict[str, str]:
        """Each window: DONE (a COMPLETE claim), HELD (a live RUNNING claim) or FREE. Stale claims are failed
        first (their workers are dead), which frees their windows."""
        fail_stale_no_retry(self.storage, self.sid)
        out = dict.fromkeys(windows, FREE)
        for _, state, w in self._claims():
            if w not in out:
                continue
            if state == TrialState.COMPLETE:
                out[w] = DONE
            elif state == TrialState.RUNNING and out[w] == FREE:
                out[w] = HELD
        return out

    def claim(self, window: str) -> int | None:
        """Claim ``window``: the claim's trial id when this worker now owns it, else None (done or owned)."""
        if self.states([window])[window] != FREE:
            return None
        template = claim_template(window, self.worker, self.key, self.windows)
        tid = self.storage.create_new_trial(self.sid, template_trial=template)
        mine = [(i, s) for i, s, w in self._claims() if w == window and s in (TrialState.RUNNING, TrialState.COMPLETE)]
        if any(s == TrialState.COMPLETE for _, s in mine) or min(i for i, _ in mine) != tid:
            done = [i for i, s in mine if s == TrialState.COMPLETE]  # another worker's claim came first: withdraw
            by = self.storage.get_trial(done[0] if done else min(i for i, _ in mine))
            held = (read_claim(by) or {}).get("worker")
            end_claim(self.storage, tid, read_claim(template) or {},
                      f"withdrawn: claim {by.number} (worker {held}) {'had finished' if done else 'held'} the window")
            self._set(tid, TrialState.FAIL)
            return None
        with self._lock:
            self._held[tid] = window
        return tid

    def lost(self, tid: int) -> bool:
        """Whether the claim ``tid`` was failed by another worker (its heartbeat was judged stale)."""
        with self._lock:
            return tid in self._lost

    def finish(self, tid: int) -> None:
        """The window is done: its claim becomes COMPLETE."""
        self._drop(tid)
        self._set(tid, TrialState.COMPLETE, [0.0])

    def release(self, tid: int) -> None:
        """Give the window back unfinished (interrupted): its claim fails, any worker may take the window."""
        self._drop(tid)
        end_claim(self.storage, tid, self._claim_of(tid), "released: the worker stopped (interrupted or an error) "
                  "before the window's trials were all run; any worker resumes the window")
        self._set(tid, TrialState.FAIL)

    def _claim_of(self, tid: int) -> dict[str, Any]:
        return read_claim(self.storage.get_trial(tid)) or {}

    def close(self) -> None:
        """Stop beating; claims still held are released."""
        for tid in list(self._held):
            self.release(tid)
        self._stop.set()
        self._beat.join(timeout=10)

    def _drop(self, tid: int) -> None:
        with self._lock:
            self._held.pop(tid, None)

    def _set(self, tid: int, state: TrialState, values: list[float] | None = None) -> None:
        try:
            self.storage.set_trial_state_values(tid, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # already failed as stale by another worker

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self._held)
            for tid in held:
                try:
                    if self.storage.get_trial(tid).state != TrialState.RUNNING:
                        with self._lock:
                            self._lost.add(tid)
                        continue
                    self.storage.record_heartbeat(tid)
                except Exception:  # noqa: BLE001 - a transient storage error must not kill the beat; the next beat retries
                    continue


def work_windows(claims: WindowClaims, windows: Sequence[str],
                 run_one: Callable[[str, Callable[[], bool]], bool],
                 on_pass: Callable[[dict[str, str]], None] | None = None) -> list[str]:
    """Claim and run windows (in order) until every one of ``windows`` is done; the windows this worker ran.

    ``run_one(window, lost)`` runs the window's study and returns True when it finished its trials, False when it
    was interrupted (``lost()`` tells it the claim was taken over: it should stop after its running trial; the
    window is then the other worker's, and this one goes on with the next free window).
    Windows other workers hold are waited for (polling every ``POLL`` seconds); a dead worker's window is
    taken over once its claim is stale. ``on_pass``: called with the windows' states after each pass."""
    ran: list[str] = []
    while True:
        states = claims.states(windows)
        if on_pass is not None:
            on_pass(states)
        if all(s == DONE for s in states.values()):
            return ran
        progressed = False
        for w in windows:
            if states[w] != FREE or (tid := claims.claim(w)) is None:
                continue
            if run_one(w, lambda tid=tid: claims.lost(tid)):
                claims.finish(tid)
                ran.append(w)
            else:
                lost = claims.lost(tid)
                claims.release(tid)
                if not lost:
                    raise Interrupted(f"walk-forward window {w!r} interrupted before all its trials were run; "
                                      "run the walk-forward again to resume it")
                # taken over by another worker (this one's beat was judged stale): it finishes the window
            progressed = True
            break  # re-read the states: the next free window in order
        if not progressed:
            time.sleep(min(claims.interval, POLL))
