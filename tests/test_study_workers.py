"""Process-level tests of ``accumopt study run`` / ``study worker``: SIGKILL + resume, ``--jobs 2``, external workers.

Every study here runs in real ``python -m optimizer.cli`` subprocesses on the planted store (``synth_db``) with a
temporary SQLite (WAL) storage (a journal file: tests/test_postgres.py), except the run that resumes a killed one and
``study run --jobs 2`` (which forks its own compute processes): they run the command in the test's process
(``run_here``). The heartbeat grace period is lowered to 3 s through ``ACCUMOPT_HEARTBEAT_GRACE`` (read by
``optimizer.study.make_storage``; default 15 s) so that a trial left RUNNING by a killed process is declared stale
within the test's time budget.

Exactness: ``study run --jobs N`` and several ``study worker`` processes on one storage must end with exactly the
requested number of finished (COMPLETE + PRUNED) trials; the tests assert exactness for both, plus no failed
trial, no duplicate trial number and no "database is locked" on stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import optuna
import pytest
from optuna.storages._rdb.models import TrialHeartbeatModel
from optuna.trial import TrialState

from optimizer.errors import DataError
from _cli_helpers import cli, finish_logged, ok
from _slow_objective import SLEEP_ENV
from optimizer.study import make_storage
from optimizer.study.run import run_study
from optimizer.study.spec import load_spec

pytestmark = pytest.mark.slow

GRACE = 3  # seconds; see the module docstring

SPEC = """
[study]
name = "{name}"
[data]
universe = "tier1+3"
[space]
variant = {{ type = "categorical", choices = ["A", "B", "C", "D", "vw_flow", "blended"] }}
w_short = {{ type = "float", low = 0.40, high = 0.70, step = 0.05 }}
w_lit = {{ type = "float", low = 0.20, high = 0.40, step = 0.05 }}
w_price = {{ type = "float", low = 0.10, high = 0.20, step = 0.05 }}
z_window = {{ type = "categorical", choices = [10, 15, 20, 30] }}
buy_threshold = {{ type = "int", low = 60, high = 80, step = 5 }}
sell_threshold = {{ type = "int", low = 20, high = 40, step = 5 }}
exit = {{ type = "categorical", choices = ["fixed_10d", "first_dist", "2x_consec_dist", "hybrid_20d", "score_decay"] }}
time_stop = 20
[cv]
n_splits = 3
[objective]
name = "{objective}"
min_trades = 5
[sampler]
name = "tpe"
seed = 5
n_startup_trials = 8
[pruner]
{pruner}
[run]
n_trials = {n_trials}
"""


def _spec(tmp_path: Path, name: str, n_trials: int, pruner: str = 'name = "none"',
          objective: str = "composite_rank_excess") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(SPEC.format(name=name, n_trials=n_trials, pruner=pruner, objective=objective), encoding="utf-8")
    return p


# The SIGKILL tests run the study they kill with a deterministically slow objective (tests/_slow_objective.py):
# every trial lasts >= 3 x SLOW seconds, so the test always catches one running, however loaded the machine is;
# the resumed run does not sleep.
SLOW_OBJECTIVE = "_slow_objective:SlowRankExcess"
SLOW = 0.2


def _env(slow: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ACCUMOPT_STORAGE", "ACCUMOPT_DB", SLEEP_ENV)}
    env["ACCUMOPT_HEARTBEAT_GRACE"] = str(GRACE)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")])
    if slow:
        env[SLEEP_ENV] = str(SLOW)
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "optimizer.cli", *args]


def _start(args: list[str], cwd: Path, log: Path, slow: bool = False) -> subprocess.Popen:
    """Start a CLI subprocess, its stdout and stderr to files (no pipe can fill up and block it); ``slow``: with the
    slow objective's sleep (see SLOW_OBJECTIVE)."""
    return subprocess.Popen(_cmd(*args), cwd=cwd, env=_env(slow), stdin=subprocess.DEVNULL,
                            stdout=open(log.with_suffix(".out"), "w"), stderr=open(log.with_suffix(".err"), "w"))


def run_here(args: list[str], slow: bool = False) -> tuple[str, str]:
    """Run a command in this process (click's runner; exit code 0 asserted), without the slow objective's sleep:
    what a test starts a process for only to run a command (the run that resumes a killed one, a ``--jobs 2`` run
    whose compute processes it forks itself) costs no new interpreter (~2 s of CPU in imports and kernel loading).
    ``slow``: with the slow objective's sleep (see SLOW_OBJECTIVE). Its (stdout, stderr)."""
    res = ok(cli(*args, env={"ACCUMOPT_HEARTBEAT_GRACE": str(GRACE), SLEEP_ENV: str(SLOW) if slow else None}))
    return res.stdout, res.stderr


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The trials as a fresh reading process sees them (new read-only storage object: no cache, no write lock)."""
    try:
        storage = make_storage(url, heartbeat=False, read_only=True)
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except (KeyError, DataError):  # the storage or the study is not created yet (or being created by the writer)
        return []


def age_heartbeats(storage: optuna.storages.RDBStorage, seconds: float) -> None:
    """Move every trial heartbeat of ``storage`` ``seconds`` into the past: what ``seconds`` of waiting does to a
    trial nobody beats for (Optuna calls a RUNNING trial stale when the database's now minus its heartbeat row
    exceeds the grace period), without the wait. A trial that has no heartbeat row stays without one."""
    session = storage.scoped_session()
    try:
        for beat in session.query(TrialHeartbeatModel).all():
            beat.heartbeat = beat.heartbeat - timedelta(seconds=seconds)
        session.commit()
    finally:
        session.close()


def _assert_clean(trials, n: int, *stderrs: str, failed: tuple[int, ...] = ()) -> None:
    """Unique, contiguous trial numbers; exactly ``n`` finished; FAIL only for ``failed``; clean stderr."""
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n, [(t.number, t.state.name) for t in trials]
    assert sorted(t.number for t in trials if t.state == TrialState.FAIL) == sorted(failed)
    for err in stderrs:
        assert "database is locked" not in err and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------------ SIGKILL + resume
def test_sigkill_single_run_then_resume_loses_only_the_running_trial(synth_db, tmp_path):
    """`study run` (one writer) keeps the running trial in memory and commits each finished trial: a SIGKILL loses
    only the trial that was running, which never reaches the storage; the resume completes exactly n trials."""
    n = 12  # killed at >= 3 complete (>= 0.6 s a trial): at most a few more before the kill lands
    spec = _spec(tmp_path, "killrun", n, objective=SLOW_OBJECTIVE)
    url = f"sqlite:///{tmp_path / 'killrun.db'}"
    args = ["study", "run", str(spec), "--db", str(synth_db), "--storage", url, "--format", "json"]
    p = _start(args, tmp_path, tmp_path / "first", slow=True)
    deadline = time.monotonic() + 90
    before: list = []
    try:
        while time.monotonic() < deadline and p.poll() is None:
            snap = _trials(url, "killrun")
            if sum(t.state == TrialState.COMPLETE for t in snap) >= 3:
                os.kill(p.pid, signal.SIGKILL)
                before = _trials(url, "killrun")
                break
            time.sleep(0.05)
        assert before, "the study finished before it could be killed (the slow objective should prevent that)"
    finally:
        if p.poll() is None and not before:
            p.kill()
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert len(before) < n and not any(t.state == TrialState.RUNNING for t in before)
    complete_before = {t.number: (t.value, t.params) for t in before if t.state == TrialState.COMPLETE}
    out, err = run_here(args)
    final = _trials(url, "killrun")
    _assert_clean(final, n, err)
    assert len(final) == n  # nothing RUNNING, FAIL or duplicated was left behind
    byn = {t.number: t for t in final}
    for num, (value, params) in complete_before.items():  # nothing completed before the kill was lost or redone
        assert byn[num].state == TrialState.COMPLETE and byn[num].value == value and byn[num].params == params
    assert json.loads(out)["complete"] + json.loads(out)["pruned"] == n


def test_sigkill_worker_then_resume_keeps_completed_trials_and_fails_the_killed_one(synth_db, tmp_path):
    """`study worker` (several writers) goes through the storage with a heartbeat: the killed worker's RUNNING
    trial is failed when its heartbeat goes stale and its parameters are retried."""
    n = 12  # killed at >= 3 complete (>= 0.6 s a trial): at most a few more before the kill lands
    spec = _spec(tmp_path, "killme", n, objective=SLOW_OBJECTIVE)
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    args = ["study", "worker", str(spec), "--db", str(synth_db), "--storage", url, "--format", "json"]
    p = _start(args, tmp_path, tmp_path / "first", slow=True)
    deadline = time.monotonic() + 90
    killed_at: list = []
    try:
        while time.monotonic() < deadline and p.poll() is None and not killed_at:
            if sum(t.state == TrialState.COMPLETE for t in _trials(url, "killme")) >= 3:
                os.kill(p.pid, signal.SIGSTOP)  # freeze it: the snapshot below is exactly the state at the kill
                snap = _trials(url, "killme")
                if any(t.state == TrialState.RUNNING for t in snap):
                    os.kill(p.pid, signal.SIGKILL)
                    killed_at = snap
                else:  # between two trials: let it start the next one
                    os.kill(p.pid, signal.SIGCONT)
            time.sleep(0.05)
        assert killed_at, "the study finished before it could be killed in a trial (the slow objective should prevent that)"
    finally:
        if p.poll() is None and not killed_at:
            p.kill()
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert {t.number: t.state for t in _trials(url, "killme")} == {t.number: t.state for t in killed_at}
    complete_before = {t.number: t.value for t in killed_at if t.state == TrialState.COMPLETE}
    running = [t.number for t in killed_at if t.state == TrialState.RUNNING]
    assert len(complete_before) >= 3 and len(running) == 1, [(t.number, t.state.name) for t in killed_at]
    assert len(killed_at) < n

    # the resume starts at once, before the killed trial's heartbeat is GRACE seconds old (before, the test slept
    # GRACE + 1 s first). A worker that finds the budget held by a RUNNING trial waits for it, fails it once its
    # heartbeat is stale and runs its retry (optimizer.study.run._optimize_budget)
    out, err = run_here(args)
    final = _trials(url, "killme")
    _assert_clean(final, n, err, failed=tuple(running))
    byn = {t.number: t for t in final}
    for num, value in complete_before.items():  # nothing completed before the kill was lost or redone
        assert byn[num].state == TrialState.COMPLETE and byn[num].value == value
    killed = byn[running[0]]
    assert killed.state == TrialState.FAIL  # heartbeat stale -> FAIL, never counted as finished
    # the heartbeat callback re-queued the killed trial's parameters (those suggested before the kill: it may have
    # died in the middle of suggesting) and the resumed run evaluated them
    retries = [t for t in final if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert killed.params.items() <= retries[0].params.items(), (killed.params, retries[0].params)
    assert json.loads(out)["complete"] == n


# ------------------------------------------------------------------------------------------------ workers
def test_jobs_2_finishes_exactly_n_trials(synth_db, tmp_path):
    n = 12
    spec = _spec(tmp_path, "jobs2", n, pruner='name = "median"\nn_startup_trials = 4')
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    out, err = run_here(["study", "run", str(spec), "--db", str(synth_db), "--storage", url, "--jobs", "2", "--format",
                         "json"])
    trials = _trials(url, "jobs2")
    _assert_clean(trials, n, err)
    assert len(trials) == n
    res = json.loads(out)
    assert res["complete"] + res["pruned"] == n and res["failed"] == 0
    # the two forked workers draw from other seeds (per trial): in TPE's random start-up phase (trials 0-7: fewer
    # than n_startup_trials = 8 had finished when each was drawn) no configuration is drawn twice (one of 315,000).
    # Not over all 12: TPE's later proposals may repeat a configuration whatever the seeds (the history each worker
    # sees depends on the interleaving; a fresh-clone CI once saw 11 distinct of 12)
    startup = [t for t in trials if t.number < 8]
    assert len(startup) == 8 and len({json.dumps(t.params, sort_keys=True) for t in startup}) == 8


def test_two_external_workers_share_one_study(synth_db, tmp_path):
    # SQLite here; two workers on a journal file: tests/test_postgres.py::test_two_workers_on_journal_file_finish_exactly_n_trials
    n = 10
    spec = _spec(tmp_path, "shared", n)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    # the study exists first (as when workers join a `study run`: run here, in this process, one process fewer; the
    # `study run` command runs in the tests above); then two workers join it at once: a worker process, and the same
    # command in this process (one interpreter fewer to start)
    first = run_study(load_spec(spec), synth_db, url, n_trials=1)
    assert first.counts["complete"] + first.counts["pruned"] == 1
    args = ["study", "worker", str(spec), "--db", str(synth_db), "--storage", url, "--format", "json"]
    p = _start(args, tmp_path, tmp_path / "w0")
    try:
        errs = [run_here(args)[1]]
    finally:
        errs.insert(0, finish_logged(p, tmp_path / "w0")[1])
    trials = _trials(url, "shared")
    _assert_clean(trials, n, *errs)
