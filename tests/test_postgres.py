"""Many workers, one study: `accumopt study worker` processes on a local PostgreSQL server and on a journal file.

A throw-away PostgreSQL server (module fixture): ``initdb --auth=trust`` into a fresh /tmp directory, started with
``pg_ctl`` on a free loopback port (as the ``postgres`` system user when the tests run as root: initdb refuses
root), database ``accumopt``; stopped (``pg_ctl stop -m fast``) and removed at teardown. Binaries come from
/usr/lib/postgresql/*/bin or $PATH; when absent, ``apt-get install -y postgresql`` is tried once (bounded), and the
PostgreSQL tests skip when that fails or when psycopg2 (the ``postgres`` extra) is not installed.

Store: the session's planted store (``synth_db``, tests/conftest.py: 2023-01-03 .. 2024-06-28, read only), of which
the spec reads the tier1 ETFs (15 symbols; a store of their own cost ~1.7 s of CPU to build). Spec: 3 purged
folds, median pruner (n_startup_trials 2, no warm-up), seeded TPE, N = 16 trials. The study is created once
in-process (``open_study``) with its first four trials enqueued (``planted``); then two ``study worker --n-trials
16`` join it: a process, and once it runs its first trial the same command in the test's process, beside it (the
heartbeat test's two workers are both processes: one is frozen and killed).

Some trial is pruned and some completed whatever the interleaving (two workers' TPE proposals and the median
pruner's comparisons depend on it: a run with only sampled trials once ended 16 completed, 0 pruned). The enqueued
trials are popped in order by whichever worker asks next: A, B, A again, then P, with fold values computed here
(the same objective on the same data): A >= B at every fold, and P's first fold value the unique minimum over the
whole search space. The first trial to finish cannot be pruned (no complete trial to compare it with). When P is
popped, its worker has just finished its own trial and the other runs at most one, so two of A, B, A are
finished, and complete: A and its repeat are never below the median of B and each other; B can be pruned only by
A and A complete. Every complete trial other than P's configuration has a first fold value above P's, and no trial
of P's configuration can complete once two trials have (it is below their median), so P (or, its worker killed,
its retry) is pruned at fold 0.

What is checked (each could fail):

* Exactly N finished (COMPLETE + PRUNED) trials after two independent workers, never N + 1. Optuna's
  ``MaxTrialsCallback`` runs AFTER a trial, so two workers whose trials end together each start one more (with the
  callback alone this study ended with 17 trials in 4 of 4 runs); ``optimizer.study`` now refuses to create a
  trial once COMPLETE + PRUNED + RUNNING + WAITING trials fill the budget, atomically with the creation.
* Trial numbers are unique and contiguous, there is no FAIL, RUNNING or WAITING trial left, both workers ran
  trials at the same time (some two trials' [start, complete] intervals overlap), and no report is lost: every
  COMPLETE trial has an intermediate value for each fold 0..2 and its 3 fold metrics, every PRUNED one for folds
  0..pruned_at_fold exactly.
* Heartbeat recovery: one worker is SIGKILLed while it runs a trial. With ``ACCUMOPT_HEARTBEAT_GRACE=5`` (interval
  1 s) the survivor marks that trial FAIL once it is stale, runs its retry (the same parameters, system attribute
  ``failed_trial`` = the killed trial's number) and the study still ends with exactly N finished trials.
* The journal-file storage (``journal:PATH``): the same two-worker exactness. Optuna 5's JournalStorage has no
  heartbeat (it does not implement BaseHeartbeat), so there a killed worker's trial stays RUNNING (never counted
  as finished); that case is not tested here.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from _slow_objective import SLEEP_ENV
from _cli_helpers import cli
from test_study_workers import age_heartbeats

from optimizer.study.spec import load_spec
from optimizer.study import load_study_data, make_storage, open_study, prepare_data
from optimizer.study.space import grid_search_space
from optimizer.study.trial import TrialObjective

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_TRIALS = 16
N_FOLDS = 3
STUDY = "workers"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SPEC = f"""
[study]
name = "{STUDY}"

[data]
universe = "tier1"
reserve_fraction = 0.2

[space]
variant = {{ type = "categorical", choices = ["A", "B", "C", "D"] }}
z_window = {{ type = "categorical", choices = [10, 15, 20] }}
buy_threshold = {{ type = "int", low = 60, high = 80, step = 5 }}
sell_threshold = {{ type = "int", low = 20, high = 40, step = 5 }}
exit = {{ type = "categorical", choices = ["fixed_5d", "first_dist"] }}
time_stop = 10

[cv]
n_splits = {N_FOLDS}
embargo = 20

[objective]
name = "_slow_objective:SlowRank"
min_trades = 0

[sampler]
name = "tpe"
seed = 7
n_startup_trials = 4

[pruner]
name = "median"
n_startup_trials = 2
n_warmup_steps = 0

[run]
n_trials = {N_TRIALS}
"""
WORKER_TIMEOUT = 90  # seconds, per worker process


# ------------------------------------------------------------------------------------------------ PostgreSQL
def _pg_bin() -> Path | None:
    """A directory holding initdb and pg_ctl (the newest /usr/lib/postgresql/*/bin first, then $PATH)."""
    cands = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                   reverse=True)
    if shutil.which("initdb"):
        cands.append(Path(shutil.which("initdb")).resolve().parent)
    return next((d for d in cands if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def _install_postgres() -> Path | None:
    """One bounded ``apt-get install -y postgresql`` (root only); the binaries' directory or None."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    try:
        if subprocess.run(cmd, env=env, capture_output=True, timeout=240).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=120)
            subprocess.run(cmd, env=env, capture_output=True, timeout=240)
    except (OSError, subprocess.SubprocessError):
        return None
    return _pg_bin()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg_user(user: str | None, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", user, "--", *args] if user else args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _pg_user() -> str | None:
    """The OS user that runs the server: None (this user) unless root, else ``postgres`` (created if missing)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
                       capture_output=True, timeout=30)
        pwd.getpwnam("postgres")  # KeyError -> the fixture skips
    return "postgres"


@pytest.fixture(scope="module")
def pg_url():
    """URL postgresql://postgres@127.0.0.1:PORT/accumopt of a fresh server, stopped and removed at teardown."""
    try:
        import psycopg2
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install -e '.[postgres]')")
    bindir = _pg_bin() or _install_postgres()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed and could not be installed")
    try:
        user = _pg_user()
    except (KeyError, OSError, subprocess.SubprocessError):
        pytest.skip("running as root and no 'postgres' system user could be created for the server")
    root = Path(tempfile.mkdtemp(prefix="accumopt-pg-"))  # under /tmp: pytest's tmp dirs are root-only (0700)
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    if user:
        shutil.chown(root, user)
        shutil.chown(sock, user)
    port = _free_port()
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        r = _as_pg_user(user, [str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                               "--no-sync"], timeout=120)
        assert r.returncode == 0, f"initdb failed:\n{r.stdout}\n{r.stderr}"
        r = _as_pg_user(user, [*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o",
                               f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], timeout=90)
        started = True
        assert r.returncode == 0, f"pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{log.read_text() if log.exists() else ''}"
        con = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=10)
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute("CREATE DATABASE accumopt")
        finally:
            con.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/accumopt"
    finally:
        if started:
            r = _as_pg_user(user, [*pg_ctl, "stop", "-m", "fast", "-w", "-t", "30"], timeout=60)
            pidfile = data / "postmaster.pid"
            if r.returncode != 0 and pidfile.exists():  # the server this fixture started, by its pid
                try:
                    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ store, spec, study
@pytest.fixture(scope="module")
def store(synth_db) -> Path:
    """The session's planted store (tests/conftest.py; read only), of which the spec reads the tier1 ETFs."""
    return synth_db


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("spec") / "workers.toml"
    p.write_text(SPEC)
    return p


@pytest.fixture(scope="module")
def study_data(store, spec_path):
    spec = load_spec(spec_path)
    panel, reserve = load_study_data(spec, store)
    return spec, prepare_data(spec, panel, 0, reserve)


@pytest.fixture(scope="module")
def planted(study_data) -> dict[str, dict]:
    """The enqueued configurations (see the module docstring): ``A`` and ``B`` (A >= B at every fold, both above
    ``P`` at fold 0) and ``P`` (the unique minimum of the first fold's value over every configuration of the space:
    600, ~1 s), with their fold values as the workers' objective reports them."""
    spec, data = study_data
    obj = TrialObjective(data)
    space = grid_search_space(spec)
    configs = [dict(zip(space, combo)) for combo in itertools.product(*space.values())]
    vals = [[obj.objective.fold_value(m) for m in obj.evaluate(c)["folds"]] for c in configs]
    first = sorted(v[0] for v in vals)
    assert first[0] < first[1], "the first fold's lowest value is not unique: P would not be below every other trial"
    p = min(range(len(configs)), key=lambda i: vals[i][0])
    # A: the configuration whose worst rank over the folds is the best; B: the best at fold 0 that A dominates
    ranks = [sorted(v[k] for v in vals) for k in range(N_FOLDS)]
    a = max(range(len(configs)), key=lambda i: min(ranks[k].index(vals[i][k]) for k in range(N_FOLDS)))
    below = [i for i in range(len(configs)) if i != a and all(vals[i][k] <= vals[a][k] for k in range(N_FOLDS))
             and vals[i][0] > vals[p][0] and configs[i] != configs[a]]
    assert below, "no configuration that A dominates at every fold"
    b = max(below, key=lambda i: vals[i][0])
    return {n: {"params": configs[i], "folds": vals[i]} for n, i in (("A", a), ("B", b), ("P", p))}


def _create(study_data, url: str, name: str, planted: dict[str, dict]) -> None:
    spec, data = study_data
    study = open_study(spec, make_storage(url), data, name=name)
    for n in ("A", "B", "A", "P"):
        study.enqueue_trial(planted[n]["params"])


def _trials(storage, name: str) -> list[optuna.trial.FrozenTrial]:
    """Every trial of study ``name``, read straight from ``storage`` (a ``make_storage`` object: no cache)."""
    return storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCUMOPT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(Path(__file__).resolve().parent),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    return env | (extra or {})


def _start_worker(spec_path, store, url, name, cwd, env=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "optimizer.cli", "study", "worker", str(spec_path), "--storage", url, "--db", str(store),
           "--name", name, "--n-trials", str(N_TRIALS), "--format", "json"]
    return subprocess.Popen(cmd, cwd=cwd, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen) -> dict:
    """Wait (bounded) for a worker; its JSON summary. A hung worker is killed and the test fails."""
    try:
        out, err = p.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        pytest.fail(f"worker {p.pid} did not finish within {WORKER_TIMEOUT} s\nstdout:\n{out}\nstderr:\n{err}")
    assert p.returncode == 0, f"worker exit {p.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return json.loads(out)


def _check_reports(trials) -> None:
    """No lost report: COMPLETE -> folds 0..2 reported and stored; PRUNED -> folds 0..pruned_at_fold exactly."""
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == list(range(N_FOLDS)), (t.number, t.intermediate_values)
            assert len(t.user_attrs["folds"]) == N_FOLDS and t.user_attrs["metrics"]["pruned_at_fold"] is None
        elif t.state == TrialState.PRUNED:
            k = t.user_attrs["metrics"]["pruned_at_fold"]
            assert sorted(t.intermediate_values) == list(range(k + 1)), (t.number, k, t.intermediate_values)
            assert len(t.user_attrs["folds"]) == k + 1


def _overlap(trials) -> bool:
    """Some two trials ran at the same time (only two processes can do that here)."""
    iv = sorted((t.datetime_start, t.datetime_complete) for t in trials if t.state in FINISHED)
    return any(b[0] < a[1] for a, b in zip(iv, iv[1:]))


def _assert_exact_study(trials, planted: dict[str, dict], allowed_fail: set[int] = frozenset()) -> None:
    states = {t.number: t.state for t in trials}
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials))), f"trial numbers not unique/contiguous: {numbers}"
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == N_TRIALS, f"{len(finished)} finished trials, expected exactly {N_TRIALS}: {states}"
    assert {n for n, s in states.items() if s == TrialState.FAIL} == set(allowed_fail), states
    assert not [n for n, s in states.items() if s in (TrialState.RUNNING, TrialState.WAITING)], states
    assert any(t.state == TrialState.PRUNED for t in trials) and any(t.state == TrialState.COMPLETE for t in trials), states
    # P's configuration (the enqueued trial, or its retry) was pruned at its first fold, on the value computed here
    p = [t for t in trials if t.params == planted["P"]["params"] and t.state in FINISHED]
    assert p and all(t.state == TrialState.PRUNED and t.intermediate_values == {0: planted["P"]["folds"][0]}
                     for t in p), [(t.number, t.state.name, t.intermediate_values) for t in p]
    _check_reports(trials)


def _two_workers_exact(study_data, spec_path, store, url, name, cwd, planted) -> list[dict]:
    _create(study_data, url, name, planted)
    storage = make_storage(url, heartbeat=False)
    assert [t.state for t in _trials(storage, name)] == [TrialState.WAITING] * 4  # the enqueued A, B, A, P
    # each fold sleeps 0.1 s (composite_rank's values, tests/_slow_objective.py). One worker is a process of its own;
    # once it runs its first trial, the second, the same command, runs in this process (no second interpreter to
    # start: ~2 s of CPU), beside it
    proc = _start_worker(spec_path, store, url, name, cwd, {SLEEP_ENV: "0.1"})
    try:
        t_end = time.monotonic() + WORKER_TIMEOUT
        while [t.state for t in _trials(storage, name)] == [TrialState.WAITING] * 4 and time.monotonic() < t_end:
            assert proc.poll() is None, "the worker process ended before it ran a trial"
            time.sleep(0.05)
        here = cli("study", "worker", spec_path, "--storage", url, "--db", store, "--name", name, "--n-trials",
                   N_TRIALS, "--format", "json", env={SLEEP_ENV: "0.1"})
        assert here.exit_code == 0, f"exit {here.exit_code}\n{here.stdout}\n{here.stderr}\n{here.exception!r}"
    finally:
        outs = [_finish(proc)]
    outs.append(json.loads(here.stdout))
    trials = _trials(storage, name)
    _assert_exact_study(trials, planted)
    assert _overlap(trials), "the two workers never ran trials at the same time"
    return outs


# ------------------------------------------------------------------------------------------------ tests
def test_two_workers_on_postgres_finish_exactly_n_trials(pg_url, study_data, spec_path, store, tmp_path, planted):
    outs = _two_workers_exact(study_data, spec_path, store, pg_url, "pg_exact", tmp_path, planted)
    for o in outs:  # with a heartbeat, the first worker out waits for the other's last trial: both see the end
        assert o["complete"] + o["pruned"] == N_TRIALS and o["failed"] == 0 and o["running"] == 0, o
        assert o["storage"] == pg_url


def test_killed_worker_trial_fails_and_is_retried_on_postgres(pg_url, study_data, spec_path, store, tmp_path, planted):
    name = "pg_kill"
    _create(study_data, pg_url, name, planted)
    storage = make_storage(pg_url, heartbeat=False)
    # heartbeat every 1 s, stale after 5 s; each fold sleeps 0.1 s (tests/_slow_objective.py), so a trial runs for
    # >= 0.3 s and can be caught RUNNING on a loaded machine (fast trials were over before the poll saw them)
    env = {"ACCUMOPT_HEARTBEAT_GRACE": "5", SLEEP_ENV: "0.1"}
    a, b = (_start_worker(spec_path, store, pg_url, name, tmp_path, env) for _ in range(2))
    killed = None
    try:
        t_end = time.monotonic() + 120
        while killed is None and time.monotonic() < t_end:
            assert a.poll() is None and b.poll() is None, "a worker ended before it could be caught running a trial"
            running = {t.number for t in _trials(storage, name) if t.state == TrialState.RUNNING}
            if not running:
                time.sleep(0.1)
                continue
            # Freeze the survivor b (well under the 5 s grace); a trial created after that is a's.
            os.kill(b.pid, signal.SIGSTOP)
            try:
                r0 = {t.number for t in _trials(storage, name) if t.state == TrialState.RUNNING}
                t_poll = time.monotonic() + 1.5
                while time.monotonic() < t_poll:
                    new = {t.number for t in _trials(storage, name) if t.state == TrialState.RUNNING} - r0
                    if new:
                        os.kill(a.pid, signal.SIGSTOP)
                        time.sleep(0.2)  # let a commit already on the wire land
                        mine = {t.number for t in _trials(storage, name) if t.state == TrialState.RUNNING} - r0
                        if len(mine) == 1:
                            os.kill(a.pid, signal.SIGKILL)
                            killed = mine.pop()
                            break
                        os.kill(a.pid, signal.SIGCONT)
                    time.sleep(0.05)
            finally:
                os.kill(b.pid, signal.SIGCONT)
            if killed is None:
                time.sleep(0.5)
        assert killed is not None, "could not catch worker a with a RUNNING trial within 120 s"
        a.wait(timeout=10)
        out = _finish(b)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=10)
    trials = _trials(storage, name)
    by_number = {t.number: t for t in trials}
    dead = by_number[killed]
    assert dead.state == TrialState.FAIL, f"the killed worker's trial {killed} ended {dead.state.name}"
    _assert_exact_study(trials, planted, allowed_fail={killed})
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state in FINISHED, [(t.number, t.state.name) for t in retries]
    assert retries[0].number > killed, (retries[0].number, killed)
    # the retry re-runs the killed trial's parameters (those drawn before the kill: maybe none)
    assert {k: retries[0].params.get(k) for k in dead.params} == dead.params, (retries[0].params, dead.params)
    assert out["complete"] + out["pruned"] == N_TRIALS and out["failed"] == 1 and out["running"] == 0, out


def test_study_run_jobs_2_on_postgres_finishes_exactly_n_trials(pg_url, study_data, spec_path, store, tmp_path,
                                                               planted):
    """`study run --jobs 2` (one coordinator, two compute processes: optimizer.study._pool) on PostgreSQL: its
    trials claimed through Optuna's budgeted trial creation and written in place by write_finished_trial's
    SQLAlchemy path; the enqueued A, B, A, P popped in the storage, as the two workers above pop them."""
    name = "pg_pool"
    _create(study_data, pg_url, name, planted)
    # the command in this process (its two compute processes are forked from it: no new interpreter to start),
    # with the workers' 0.1 s floor per fold
    res = cli("study", "run", spec_path, "--storage", pg_url, "--db", store, "--name", name, "--n-trials", N_TRIALS,
              "--jobs", "2", "--format", "json", env={SLEEP_ENV: "0.1"})
    assert res.exit_code == 0, f"exit {res.exit_code}\n{res.stdout}\n{res.stderr}\n{res.exception!r}"
    out = json.loads(res.stdout)
    trials = _trials(make_storage(pg_url, heartbeat=False), name)
    _assert_exact_study(trials, planted)
    assert _overlap(trials), "the two compute processes never ran trials at the same time"
    assert out["complete"] + out["pruned"] == N_TRIALS and out["failed"] == 0 and out["running"] == 0, out


def test_two_workers_on_journal_file_finish_exactly_n_trials(study_data, spec_path, store, tmp_path, planted):
    url = f"journal:{tmp_path / 'journal.log'}"
    outs = _two_workers_exact(study_data, spec_path, store, url, "journal_exact", tmp_path, planted)
    # no heartbeat on a journal: the first worker out stops at once, the other's last trial may still run
    assert max(o["complete"] + o["pruned"] for o in outs) == N_TRIALS
    assert all(o["failed"] == 0 and o["complete"] + o["pruned"] + o["running"] <= N_TRIALS for o in outs), outs


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_trial_killed_before_its_first_heartbeat_still_goes_stale(pg_url):
    """Optuna never marks a RUNNING trial WITHOUT a heartbeat row stale; a worker killed between ``ask`` and its
    heartbeat thread's first beat (or right after popping a WAITING trial) left a trial RUNNING forever, and the
    other workers waited for it. The storage now writes the first beat with the trial (and on the pop)."""
    storage = make_storage(pg_url, grace_period=2)  # heartbeat every 1 s, stale after 2 s
    study = optuna.create_study(study_name="first_beat", storage=storage)
    study.enqueue_trial({"x": 0.25})
    popped = study.ask()  # the enqueued WAITING trial -> RUNNING
    fresh = study.ask()  # a new trial
    assert popped.number == 0 and fresh.number == 1
    # ... and the worker dies here: no heartbeat thread ever ran for either trial
    optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 2  # not stale yet: beats are fresh
    age_heartbeats(storage, 3.2)  # 3.2 s pass for the beats (nobody beats: the worker died)
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL] * 2
    # each is queued again once (RetryHeartbeatStaleTrialCallback, max_retry=1), the popped one with its params
    retries = {t.system_attrs["failed_trial"]: t for t in trials[2:]}
    assert sorted(retries) == [0, 1] and all(t.state == TrialState.WAITING for t in retries.values())
    assert retries[0].params == {"x": 0.25} or retries[0].system_attrs.get("fixed_params") == {"x": 0.25}
