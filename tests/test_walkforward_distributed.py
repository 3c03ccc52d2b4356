"""Walk-forward windows claimed through the study storage (``optimizer.validate.distributed``; issue 15 point 1).

A tiny spec on the planted store (``synth_db``: 33 symbols, 2023-01 .. 2024-06, 20 % reserve): train 4 / test 2
months (5 windows), 2 inner folds, 4 seeded TPE trials per window. What is checked (each could fail):

* ``--jobs 2`` on SQLite gives the single-process result: the same result dict (every window's winner, in- and
  out-of-sample metrics, the stitched OOS figures, the statistics and the verdict), the same trials in every
  window's study (parameters and values, trial by trial), and both processes ran windows (two workers in the
  claims).
* Two ``walkforward worker`` processes on a real PostgreSQL server (tests/test_postgres.py's loopback fixture)
  beside the coordinator: the same result as the single-process SQLite run.
* A worker SIGKILLed while it runs a window: the coordinator takes the window over once the claim is stale
  (``ACCUMOPT_HEARTBEAT_GRACE=2`` in that test only; the others use 60 s, so that a worker slowed by a loaded machine
  is never taken over), keeps the trials the killed worker stored, and every window ends with exactly
  the configured trials.
* The claim itself: of two claims on one window only the first wins; a finished window is never claimed again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pandas as pd
import pytest
from _cli_helpers import cli, descriptors_of, finish_logged, ok, timeless_json
from _slow_objective import SLEEP_ENV, slowed, unslowed
from optuna.trial import TrialState

from test_postgres import pg_url  # noqa: F401 - the loopback PostgreSQL server fixture

from optimizer.errors import DataError, SpecError
from optimizer.study.records import claims_name, read_claim
from optimizer.study.spec import load_spec
from optimizer.study.storage import make_storage
from optimizer.validate.distributed import DONE, FREE, HELD, Interrupted, WindowClaims, work_windows
from optimizer.validate import walkforward as wfmod
from optimizer.validate.walkforward import run_walkforward

N = 4  # trials per window
SPEC = f"""
[study]
name = "wfd"
[data]
universe = "tier1+3"
reserve_fraction = 0.2
[space]
variant = {{ type = "categorical", choices = ["A", "B", "C"] }}
z_window = {{ type = "categorical", choices = [10, 20] }}
buy_threshold = {{ type = "int", low = 60, high = 80, step = 5 }}
sell_threshold = {{ type = "int", low = 20, high = 40, step = 5 }}
exit = {{ type = "categorical", choices = ["fixed_10d", "first_dist"] }}
time_stop = 10
[cv]
n_splits = 2
[objective]
name = "composite_rank_excess"
min_trades = 0
[sampler]
name = "tpe"
seed = 3
n_startup_trials = 2
[pruner]
name = "none"
[run]
n_trials = {N}
[walkforward]
train = 4
test = 2
unit = "months"
n_trials = {N}
"""


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("wfd") / "wfd.toml"
    p.write_text(SPEC, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def single(synth_db, spec_path, tmp_path_factory):
    """The single-process run (SQLite) every other run must equal."""
    url = f"sqlite:///{tmp_path_factory.mktemp('wfd1') / 'one.db'}"
    return url, run_walkforward(load_spec(spec_path), synth_db, url, out_dir=None)


def _trials_by_window(url: str) -> dict[str, list[tuple]]:
    st = make_storage(url, read_only=True) if url.startswith("sqlite") else make_storage(url, heartbeat=False)
    out = {}
    for s in optuna.get_all_study_summaries(st, include_best_trial=False):
        if "-wf0" in s.study_name and not s.study_name.endswith("-wf-claims"):
            ts = optuna.load_study(study_name=s.study_name, storage=st).get_trials(deepcopy=False)
            out[s.study_name] = [(t.number, t.state.name, t.params, t.values) for t in ts]
    return out


def _claim_workers(url: str) -> set[str]:
    st = make_storage(url, heartbeat=False)
    study = optuna.load_study(study_name=claims_name("wfd"), storage=st)
    return {read_claim(t)["worker"] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}


def _same(a, b) -> None:
    assert timeless_json(a.to_dict()) == timeless_json(b.to_dict())
    assert a.verdict.line == b.verdict.line


def test_single_process_runs_every_window_with_exactly_n_trials(single):
    url, res = single
    by_window = _trials_by_window(url)
    assert len(res.windows) >= 4 and len(by_window) == len(res.windows)
    assert all(len(ts) == N and all(s == "COMPLETE" for _, s, _, _ in ts) for ts in by_window.values())
    assert len(_claim_workers(url)) == 1


def test_jobs_2_on_sqlite_equals_the_single_process_run(synth_db, spec_path, single, tmp_path, monkeypatch):
    url1, res1 = single
    url2 = f"sqlite:///{tmp_path / 'two.db'}"
    held = tmp_path / "held.txt"
    child = wfmod._child

    def recording_child(*args):  # the forked process starts with no descriptor of the storage file: no SQLite
        held.write_text(str(descriptors_of(tmp_path / "two.db")), encoding="utf-8")
        return child(*args)  # connection or lock bookkeeping of the coordinator crosses the fork

    monkeypatch.setattr(wfmod, "_child", recording_child)
    res2 = run_walkforward(load_spec(spec_path), synth_db, url2, out_dir=None, jobs=2)
    _same(res1, res2)
    assert _trials_by_window(url2) == _trials_by_window(url1)
    assert len(_claim_workers(url2)) == 2  # both processes ran windows
    if descriptors_of(tmp_path) is not None:  # a system with /proc/self/fd to look in
        assert held.read_text(encoding="utf-8") == "0"


def test_a_walkforward_resumed_mid_window_equals_the_uninterrupted_run(synth_db, spec_path, single, tmp_path):
    """Every window study stopped after 2 of its N trials (what a kill mid-window leaves: each finished trial is
    stored, the running one is not) and the walk-forward run again: the same trials in every window, the same
    winners, stitched trades, result and verdict as the uninterrupted run (tests/test_resume_determinism.py)."""
    url1, res1 = single
    url2 = f"sqlite:///{tmp_path / 'parts.db'}"
    run_walkforward(load_spec(spec_path), synth_db, url2, out_dir=None, n_trials=2)
    res2 = run_walkforward(load_spec(spec_path), synth_db, url2, out_dir=None)
    assert _trials_by_window(url2) == _trials_by_window(url1)
    _same(res1, res2)
    assert res2.trades.equals(res1.trades) and len(res1.trades) > 0


def test_claims_first_live_claim_wins_and_done_is_final(tmp_path):
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    a = WindowClaims(make_storage(url), "wfd", run={"n_trials": 1, "windows": ["w0", "w1"]}, worker="a")
    b = WindowClaims(make_storage(url), "wfd", wait=1, worker="b")
    try:
        assert a.states(["w0", "w1"]) == {"w0": FREE, "w1": FREE}
        ta = a.claim("w0")
        assert ta is not None and b.claim("w0") is None  # a holds it
        assert b.states(["w0"]) == {"w0": HELD}
        a.finish(ta)
        assert b.states(["w0", "w1"]) == {"w0": DONE, "w1": FREE}
        assert b.claim("w0") is None and a.claim("w0") is None
        tb = b.claim("w1")
        b.release(tb)  # given back unfinished: free again
        assert a.states(["w1"]) == {"w1": FREE}
    finally:
        a.close()
        b.close()


def test_a_worker_whose_claim_is_taken_over_goes_on_with_the_other_windows(tmp_path):
    """A live worker whose claim was failed as stale (its heartbeat starved on a loaded machine) and taken over
    stops that window and goes on with the next free one: no "interrupted" error (exit 2), the window is the
    other worker's."""
    url = f"sqlite:///{tmp_path / 'takeover.db'}"
    a = WindowClaims(make_storage(url, grace_period=3), "wfd", run={"n_trials": 1, "windows": ["w0", "w1"]}, worker="a")
    b = WindowClaims(make_storage(url, grace_period=3), "wfd", wait=1, worker="b")
    st = make_storage(url, heartbeat=False)
    calls = []

    def run_one(w: str, lost) -> bool:
        calls.append(w)
        if w != "w0":
            return True
        # b finds a's claim stale, fails it and runs the window itself
        mine = [t for t in optuna.load_study(study_name=claims_name("wfd"), storage=st).get_trials(deepcopy=False)
                if t.state == TrialState.RUNNING and read_claim(t)["window"] == "w0"]
        assert [read_claim(t)["worker"] for t in mine] == ["a"]
        st.set_trial_state_values(mine[0]._trial_id, TrialState.FAIL)
        tb = b.claim("w0")
        assert tb is not None
        b.finish(tb)
        t_end = time.monotonic() + 20
        while not lost() and time.monotonic() < t_end:  # a's next beat sees its claim failed
            time.sleep(0.1)
        assert lost()
        return False  # stopped after the running trial

    try:
        assert work_windows(a, ["w0", "w1"], run_one) == ["w1"]
        assert calls == ["w0", "w1"]
        assert a.states(["w0", "w1"]) == {"w0": DONE, "w1": DONE}
    finally:
        a.close()
        b.close()


def test_a_worker_interrupted_with_its_claim_still_held_releases_the_window_and_stops(tmp_path):
    """A window's study that stops early (Ctrl-C) while this worker still holds the claim: the claim is released
    (the window is free to resume), and the worker stops with the resumable "interrupted" error, running no other
    window."""
    url = f"sqlite:///{tmp_path / 'interrupt.db'}"
    a = WindowClaims(make_storage(url, grace_period=60), "wfi", run={"n_trials": 1, "windows": ["w0", "w1"]}, worker="a")
    calls = []

    def run_one(w: str, lost) -> bool:
        calls.append(w)
        assert len(calls) == 1, f"a second window run after the interruption: {calls}"
        return False  # stopped before its trials were run, the claim not lost

    try:
        with pytest.raises(Interrupted) as e:
            work_windows(a, ["w0", "w1"], run_one)
        assert str(e.value) == ("walk-forward window 'w0' interrupted before all its trials were run; run the walk-forward "
                                "again to resume it")
        assert calls == ["w0"] and a.states(["w0", "w1"]) == {"w0": FREE, "w1": FREE}
    finally:
        a.close()



def _copy_storage(url: str, tmp_path: Path) -> str:
    """A copy of the SQLite storage at ``url`` (the module's run stays as the other tests expect it)."""
    dst = tmp_path / "copy.db"
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as src, closing(sqlite3.connect(dst)) as to:
        src.backup(to)  # the pages still in the WAL file too
    copy = f"sqlite:///{dst}"
    assert _trials_by_window(copy) == _trials_by_window(url)
    return copy


def test_rerun_with_more_trials_per_window_extends_every_window(synth_db, spec_path, single, tmp_path):
    """A finished walk-forward re-run with more trials per window runs each window's study on to that many trials,
    as the single-process path does: a window done for the earlier run is not done for this one (its claim was
    for N trials). Before, every window counted as done and the result silently kept N trials per window."""
    url = _copy_storage(single[0], tmp_path)
    computed: list[int] = []
    figures = wfmod._window_figures
    with pytest.MonkeyPatch.context() as mp:  # each window's stored result was computed from N trials: not reused
        mp.setattr(wfmod, "_window_figures", lambda ctx, w, *a: computed.append(w.index) or figures(ctx, w, *a))
        res = run_walkforward(load_spec(spec_path), synth_db, url, n_trials=N + 1, out_dir=None)
    assert [w.n_trials_tried for w in res.windows] == [N + 1] * len(single[1].windows)
    assert all(len(ts) == N + 1 for ts in _trials_by_window(url).values())
    assert sorted(computed) == [w.window.index for w in res.windows]


def test_a_rerun_reads_each_windows_stored_result_back_only_for_the_same_inputs(synth_db, spec_path, single, tmp_path,
                                                                                 monkeypatch):
    """A finished walk-forward re-run computes no window's result again: each is read back from its window study
    (``records.read_window_result``), and the result is the first run's bit for bit (the result dict, the verdict,
    every window's OOS trades and excess). It is read only for the same inputs: a planted figure under the stored
    key is what the re-run reports (so the stored result is what is read), while other code or libraries, or
    another [walkforward] select (which the spec hash leaves out), give another key."""
    from optimizer.study.records import WF_RESULT, read_window_result, write_window_result

    url = _copy_storage(single[0], tmp_path)
    computed: list[int] = []
    figures = wfmod._window_figures
    monkeypatch.setattr(wfmod, "_window_figures", lambda ctx, w, *a: computed.append(w.index) or figures(ctx, w, *a))
    spec = load_spec(spec_path)
    again = run_walkforward(spec, synth_db, url, out_dir=None)
    assert computed == []
    _same(again, single[1])
    for a, b in zip(again.windows, single[1].windows):
        assert a.excess.tobytes() == b.excess.tobytes() and a.oos_metrics == b.oos_metrics
        for k in ("symbol", "entry_idx", "exit_idx", "entry_price", "exit_price", "exit_reason", "net_ret"):
            assert getattr(a.trades, k).tobytes() == getattr(b.trades, k).tobytes(), k
    w1 = single[1].windows[1]
    study = optuna.load_study(study_name=w1.study_name, storage=make_storage(url, heartbeat=False))
    key = study.user_attrs[WF_RESULT]["key"]
    write_window_result(study, key, read_window_result(study, key) | {"dsr": 0.123456789})
    assert run_walkforward(spec, synth_db, url, out_dir=None).windows[1].dsr_in_sample == 0.123456789
    assert computed == []
    # the key: the one a run computes for this window, another for other code or another [walkforward] select (a
    # key that differs computes the window again: the more-trials re-run above asserts it)
    ctx, windows, _ = wfmod._setup(spec, synth_db, url, False, None)
    data = wfmod._window_data(ctx, windows[1])
    assert wfmod._result_key(ctx, windows[1], study, data) == key
    with monkeypatch.context() as m:
        m.setattr(wfmod, "_code_digest", lambda: "other code")
        assert wfmod._result_key(ctx, windows[1], study, data) != key
    robust = tmp_path / "robust.toml"
    robust.write_text(SPEC + 'select = "robust"\n', encoding="utf-8")
    assert load_spec(robust).spec_hash == spec.spec_hash  # [walkforward] is not in the spec hash
    ctx_r = wfmod._setup(load_spec(robust), synth_db, url, False, None)[0]
    assert wfmod._result_key(ctx_r, windows[1], study, data) != key


def test_rerun_after_the_spec_changed_is_refused(synth_db, spec_path, single, tmp_path):
    """The same walk-forward re-run from a changed spec (other costs) is refused, as resuming a study from a changed
    spec is: before, every window counted as done and the result was the old spec's (1 + 5 bp) under the new one."""
    url = _copy_storage(single[0], tmp_path)
    changed = tmp_path / "wfd.toml"
    changed.write_text(SPEC.replace("reserve_fraction = 0.2", "reserve_fraction = 0.2\n[data.costs]\n"
                                    "commission_bps = 50.0"), encoding="utf-8")
    with pytest.raises(SpecError, match=r"created from a different spec") as e:
        run_walkforward(load_spec(changed), synth_db, url, out_dir=None)
    assert "--new-name" not in str(e.value) and "another name ([study] name" in str(e.value)  # walkforward's remedy



def test_rerun_with_other_inner_folds_is_refused(synth_db, spec_path, single, tmp_path):
    """[walkforward] n_splits sets the folds each window's study scores, but is not part of the spec hash ([walkforward]
    is left out): a re-run with other inner folds must not resume the window studies, whose trials were scored on
    the earlier folds (before: resumed, old and new trials mixed, the result reported under the new folds)."""
    url = _copy_storage(single[0], tmp_path)
    changed = tmp_path / "wfd.toml"
    changed.write_text(SPEC + "n_splits = 3\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"scored its trials on other folds") as e:
        run_walkforward(load_spec(changed), synth_db, url, n_trials=N + 1, out_dir=None)
    assert "another name ([study] name" in str(e.value)



def test_a_worker_whose_inner_folds_differ_from_the_coordinators_is_refused(synth_db, spec_path, tmp_path):
    """A worker's spec with other [walkforward] n_splits has the same spec hash ([walkforward] is left out) and gives
    the same window names, but its window studies would score other folds, which the coordinator would then report
    as its own: refused before it claims a window (before: it ran every window on its folds)."""
    from optimizer.validate.distributed import WindowClaims as Claims

    url = f"sqlite:///{tmp_path / 'w.db'}"
    spec = load_spec(spec_path)
    ctx, windows, _ = wfmod._setup(spec, synth_db, url, False, None)
    run = {"spec_hash": spec.spec_hash, "n_trials": ctx.n_trials, "final": False,
           "windows": [wfmod._window_name(ctx, w) for w in windows], "key": wfmod._run_key(ctx)}
    Claims(make_storage(url), spec.run.study_name, run=run).close()  # a coordinator registered its run
    other = tmp_path / "wfd.toml"
    other.write_text(SPEC + "n_splits = 3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"would differ from the coordinator's .* n_splits / embargo"):
        wfmod.run_walkforward_worker(load_spec(other), synth_db, url, wait=0)
    assert not _trials_by_window(url)  # no window study was made



def test_rerun_after_a_window_study_was_deleted_runs_that_window_again(synth_db, spec_path, single, tmp_path):
    """A finished walk-forward whose window study was deleted since (``study delete``, to redo it): the re-run runs
    that window's study again and gives the single-process result (before: a KeyError traceback, the window's claim
    being done)."""
    url = _copy_storage(single[0], tmp_path)
    gone = single[1].windows[1].study_name
    optuna.delete_study(study_name=gone, storage=make_storage(url, heartbeat=False))
    res = run_walkforward(load_spec(spec_path), synth_db, url, out_dir=None)
    _same(res, single[1])
    assert len(_trials_by_window(url)[gone]) == N



def test_walkforward_command_says_when_a_worker_process_died_and_the_run_timeout_cuts_no_window(synth_db, single,
                                                                                                   tmp_path, monkeypatch):
    """Two defects, one run (``walkforward --jobs 2`` from a spec with a tiny [run] timeout):

    * its forked process dies: the coordinator takes its windows over (the result is the single-process one) and
      the command says so on stderr. Before, the warning was caught with the others and only the reserve and
      seed_from ones were printed: a dead worker process went unmentioned.
    * [run] timeout bounds ``study run``; a walk-forward window runs exactly its trials per window (the result must
      not depend on the machine's speed). Before, every window's study stopped at the [run] timeout: 1 trial each
      with a tiny one, and the windows counted as done."""

    timed = tmp_path / "wfd.toml"
    timed.write_text(SPEC.replace("[run]\n", "[run]\ntimeout = 0.001\n"), encoding="utf-8")
    monkeypatch.setattr(wfmod, "_child", lambda *a: os._exit(3))
    url = f"sqlite:///{tmp_path / 'dead.db'}"
    res = ok(cli("walkforward", timed, "--jobs", "2", "--db", synth_db, "--storage", url, "--out",
                 tmp_path / "out", "--format", "json"))
    assert "1 walk-forward worker process(es) ended with exit codes [3]" in res.stderr
    d = json.loads(res.stdout)
    assert d["verdict_line"] == single[1].verdict.line
    assert [w["n_trials_tried"] for w in d["windows"]] == [N] * len(single[1].windows)
    assert all(len(ts) == N for ts in _trials_by_window(url).values())
    d.pop("files")
    note = "[run] timeout = 0.001 is not used by walk-forward windows"  # said since explore21, not ignored unsaid
    assert any(w.startswith(note) for w in d["warnings"]) and note in res.stderr
    d["warnings"] = [w for w in d["warnings"] if not w.startswith(note)]
    assert timeless_json(d) == timeless_json(single[1].to_dict())


# ------------------------------------------------------------------------------------------------ processes

def _env(grace: int = 2, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCUMOPT_")}
    env["ACCUMOPT_HEARTBEAT_GRACE"] = str(grace)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    return env | (extra or {})


def _start(args: list[str], log: Path, extra: dict[str, str] | None = None, grace: int = 60) -> subprocess.Popen:
    """A CLI process. ``grace``: its heartbeat grace period; long by default, so that a worker slowed by a loaded
    machine is never taken over (a takeover gives the same trials, tests/test_resume_determinism.py, but makes the
    claims' workers timing-dependent); the kill tests set 2 s."""
    return subprocess.Popen([sys.executable, "-m", "optimizer.cli", *args], env=_env(grace, extra), stdin=subprocess.DEVNULL,
                            stdout=open(log.with_suffix(".out"), "w"), stderr=open(log.with_suffix(".err"), "w"))


def _ready(p: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Wait for a ``walkforward worker``'s line saying it is up and looks for its coordinator's run (stderr)."""
    err, t_end = log.with_suffix(".err"), time.monotonic() + timeout
    while time.monotonic() < t_end and p.poll() is None:
        if err.read_text(encoding="utf-8").startswith("walkforward worker ready: joining the walk-forward of 'wfd' "
                                                      "(waiting up to 60 s for it)\n"):
            return
        time.sleep(0.05)
    pytest.fail(f"the worker never said it was ready (exit code {p.poll()}): {err.read_text(encoding='utf-8')}")


def _wait(p: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    out, err = finish_logged(p, log, timeout)
    assert "Traceback" not in err and "database is locked" not in err, err
    return out


@pytest.mark.slow
def test_postgres_two_workers_equal_the_single_process_run(synth_db, spec_path, single, pg_url, tmp_path, monkeypatch):
    """Two ``walkforward worker`` processes and a coordinator on PostgreSQL give the single-process result. The
    coordinator runs in this process (the library call the ``walkforward`` command makes; the command runs as a
    process of its own beside a worker process in the SIGKILL test below), with the workers' long grace period, and
    claims its first window only once a worker holds one (a coordinator that starts at once would otherwise run
    every window before the workers are up): the workers take part whatever the machine's load."""
    _, res1 = single
    common = ["--db", str(synth_db), "--storage", pg_url, "--out", str(tmp_path / "out"), "--format", "json"]
    # the workers first (they wait for the coordinator to register the run)
    workers = [_start(["walkforward", "worker", str(spec_path), *common], tmp_path / f"w{i}") for i in range(2)]
    real_work = wfmod.work_windows

    def work(claims, windows, run_one, on_pass=None):
        t_end = time.monotonic() + 120
        while set(claims.states(windows).values()) == {FREE} and time.monotonic() < t_end:
            time.sleep(0.1)
        return real_work(claims, windows, run_one, on_pass)

    monkeypatch.setattr(wfmod, "work_windows", work)
    monkeypatch.setenv("ACCUMOPT_HEARTBEAT_GRACE", "60")  # as _start gives the workers: no takeover of a slow one
    try:
        res2 = run_walkforward(load_spec(spec_path), synth_db, pg_url, out_dir=tmp_path / "out")
    finally:
        ran = [json.loads(_wait(w, tmp_path / f"w{i}"))["windows_run"] for i, w in enumerate(workers)]
    _same(res2, res1)
    assert sum(map(len, ran)) >= 1  # the workers took part
    assert len(_claim_workers(pg_url)) >= 2


@pytest.mark.slow
def test_killed_worker_window_is_resumed_with_exactly_n_trials(synth_db, spec_path, tmp_path):
    n = 8  # the worker is caught with 1 .. n - 3 trials of a window stored (>= 0.2 s a trial: 1 s to catch it)
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    common = ["--db", str(synth_db), "--storage", url, "--out", str(tmp_path / "out"), "--n-trials", str(n),
              "--format", "json"]
    # the killed worker runs composite_rank_excess's values with a 0.1 s floor per fold (tests/_slow_objective.py),
    # so its window is caught mid-way whatever the machine's speed; the coordinator runs at full speed
    slow = tmp_path / "wfd.toml"
    slow.write_text(slowed(SPEC), encoding="utf-8")
    spec_path = slow
    worker = _start(["walkforward", "worker", str(spec_path), "--db", str(synth_db), "--storage", url, "--format",
                     "json"], tmp_path / "worker", {SLEEP_ENV: "0.1"}, grace=2)
    _ready(worker, tmp_path / "worker")  # the worker is up (waiting for the run) when the coordinator registers it
    coord = _start(["walkforward", str(spec_path), *common], tmp_path / "coord", grace=2)
    st = make_storage(url, heartbeat=False)
    victim, before, t_end = None, None, time.monotonic() + 240
    while victim is None and time.monotonic() < t_end and worker.poll() is None:
        time.sleep(0.2)
        try:
            claims = optuna.load_study(study_name=claims_name("wfd"), storage=st).get_trials(deepcopy=False)
        except KeyError:
            continue
        held = [read_claim(t)["window"] for t in claims if t.state == TrialState.RUNNING
                and read_claim(t)["worker"].endswith(f":{worker.pid}")]
        for w in held:
            try:
                ts = optuna.load_study(study_name=w, storage=st).get_trials(deepcopy=False)
            except KeyError:
                continue
            if 1 <= len(ts) < n - 2:
                os.kill(worker.pid, signal.SIGKILL)
                victim, before = w, [(t.number, t.params, t.values) for t in ts]
                break
    worker.wait(timeout=30)
    assert victim is not None, "the worker never held a window with trials stored before finishing"
    d = json.loads(_wait(coord, tmp_path / "coord"))
    by_window = _trials_by_window(url)
    assert len(by_window) == len(d["windows"])
    for name, ts in by_window.items():
        assert [t[0] for t in ts] == list(range(n)), (name, ts)
        assert all(s == "COMPLETE" for _, s, _, _ in ts)
    kept = [(num, p, v) for num, _, p, v in by_window[victim]][:len(before)]
    assert kept == before  # the killed worker's trials were kept, the window resumed from them
    claims = optuna.load_study(study_name=claims_name("wfd"), storage=st).get_trials(deepcopy=False)
    won = {read_claim(t)["window"]: read_claim(t)["worker"] for t in claims if t.state == TrialState.COMPLETE}
    assert not won[victim].endswith(f":{worker.pid}")  # another worker finished it


@pytest.mark.slow
def test_a_walkforward_sigkilled_mid_window_and_resumed_equals_the_uninterrupted_run(synth_db, single, tmp_path):
    """`accumopt walkforward` (one process) SIGKILLed while a window study holds 1 .. N-1 trials, then run again (in
    this process):
    result.json (every window's winner, the stitched OOS figures, the statistics, the verdict) and the stitched
    trades are the uninterrupted run's. The killed run sleeps 0.1 s per fold (tests/_slow_objective.py, the same
    values as composite_rank_excess) so that it is caught mid-window; the resumed run does not sleep."""
    url1, res1 = single
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    slow = tmp_path / "wfd.toml"
    slow.write_text(slowed(SPEC), encoding="utf-8")
    args = ["walkforward", str(slow), "--db", str(synth_db), "--storage", url, "--out", str(tmp_path / "out"),
            "--format", "json"]
    p = _start(args, tmp_path / "first", {SLEEP_ENV: "0.1"}, grace=2)
    caught, t_end = None, time.monotonic() + 240
    while caught is None and time.monotonic() < t_end and p.poll() is None:
        time.sleep(0.1)
        try:
            by_window = _trials_by_window(url)
        except Exception:  # noqa: BLE001 - the storage is being created by the process under test
            continue
        caught = next((w for w, ts in by_window.items() if 1 <= len(ts) < N), None)
        if caught is not None:
            os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert caught is not None and p.returncode == -signal.SIGKILL, "the walk-forward was never caught mid-window"
    # the resume: the same command in this process (the kill needed a process; ~2 s of CPU for a new one saved)
    resumed = ok(cli(*args, env={"ACCUMOPT_HEARTBEAT_GRACE": "2", SLEEP_ENV: None}))
    assert "Traceback" not in resumed.stderr and "database is locked" not in resumed.stderr, resumed.stderr
    d = json.loads(resumed.stdout)
    files = Path(d.pop("files"))
    assert _trials_by_window(url) == _trials_by_window(url1)
    # the slowed objective's name and the spec hash differ by construction (tests/_slow_objective.unslowed)
    plain = res1.to_dict()
    assert timeless_json(unslowed(d, plain)) == timeless_json(plain)
    assert timeless_json(unslowed(json.loads((files / "result.json").read_text()), plain)) == timeless_json(plain)
    trades = pd.read_parquet(files / "oos_trades.parquet")
    assert len(trades) == len(res1.trades) > 0
    pd.testing.assert_frame_equal(trades.reset_index(drop=True), res1.trades.reset_index(drop=True), check_dtype=False)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_forked_walkforward_process_stops_after_its_running_trial_when_its_coordinator_is_killed(synth_db, tmp_path):
    """`walkforward --jobs 2`: the coordinator SIGKILLed while its forked process runs a window. The forked process
    sees its parent is gone (as `study run --jobs` workers do, run.worker_stop): it stops after its running trial,
    claims no other window, and exits; before, it ran on (orphaned) through every window left."""
    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    slow = tmp_path / "wfd.toml"
    slow.write_text(slowed(SPEC), encoding="utf-8")
    p = _start(["walkforward", str(slow), "--jobs", "2", "--db", str(synth_db), "--storage", url, "--out",
                str(tmp_path / "out")], tmp_path / "coord", {SLEEP_ENV: "0.2"})
    st = make_storage(url, heartbeat=False)
    child, before, t_end = None, None, time.monotonic() + 240
    while child is None and time.monotonic() < t_end and p.poll() is None:
        time.sleep(0.1)
        try:
            claims = optuna.load_study(study_name=claims_name("wfd"), storage=st).get_trials(deepcopy=False)
        except KeyError:
            continue
        for t in claims:
            c = read_claim(t)
            pid = int(c["worker"].rsplit(":", 1)[1])
            if t.state == TrialState.RUNNING and pid != p.pid:
                try:
                    n = len(optuna.load_study(study_name=c["window"], storage=st).get_trials(deepcopy=False))
                except KeyError:
                    continue
                if 1 <= n < N - 1:
                    os.kill(p.pid, signal.SIGKILL)
                    child, before = pid, {w: len(ts) for w, ts in _trials_by_window(url).items()}
                    break
    p.wait(timeout=30)
    assert child is not None, "the forked process was never caught in a window"
    t_end = time.monotonic() + 60
    while _alive(child) and time.monotonic() < t_end:
        time.sleep(0.2)
    assert not _alive(child), "the forked process ran on after its coordinator was killed"
    after = {w: len(ts) for w, ts in _trials_by_window(url).items()}
    assert set(after) == set(before)  # no other window was started
    assert sum(after.values()) - sum(before.values()) <= 1, (before, after)  # at most the trial that was running


# ------------------------------------------------------------------------------------------------ storage files

def test_a_new_sqlite_storage_is_the_file_optuna_makes_without_optuna_making_it_again(tmp_path, monkeypatch):
    """Every walk-forward window claim, study and test opens new SQLite storages: a new file is a copy of the empty
    storage Optuna made once in this process (``storage._new_sqlite_storage``), not Optuna creating its tables and
    reading its migration scripts again for each file (~75 ms CPU, ~250 ms wall a file under load). The copy is
    Optuna's own file: the same schema, version rows, alembic stamp and WAL mode as a file Optuna creates, and a
    study written to it reads back; a file that exists is never replaced."""
    from optuna.storages._rdb.storage import _VersionManager

    from optimizer.study import storage as stmod

    def dump(db: Path) -> tuple:
        with closing(sqlite3.connect(db)) as c:
            return (sorted(c.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(), key=str),
                    c.execute("SELECT schema_version, library_version FROM version_info").fetchall(),
                    c.execute("SELECT version_num FROM alembic_version").fetchall(),
                    c.execute("PRAGMA journal_mode").fetchall())

    own = tmp_path / "optuna.db"
    with closing(sqlite3.connect(own)) as c:
        c.execute("PRAGMA journal_mode=WAL")
    optuna.storages.RDBStorage(f"sqlite:///{own}").engine.dispose()  # Optuna's own new file
    make_storage(f"sqlite:///{tmp_path / 'first.db'}")  # the process's empty storage exists from here on
    heads = []
    real = _VersionManager.get_head_version
    monkeypatch.setattr(_VersionManager, "get_head_version", lambda self: heads.append(1) or real(self))
    urls = [f"sqlite:///{tmp_path / f'new{i}.db'}" for i in range(3)]
    for u in urls:
        optuna.create_study(study_name="s", storage=make_storage(u)).set_user_attr("k", u)
    assert heads == []  # no new file read Optuna's migration scripts
    for i, u in enumerate(urls):
        assert dump(tmp_path / f"new{i}.db") == dump(own)
        assert (tmp_path / f"new{i}.db").stat().st_mode == own.stat().st_mode  # SQLite's mode, not a temp file's
        assert optuna.load_study(study_name="s", storage=make_storage(u, read_only=True)).user_attrs == {"k": u}
    kept = tmp_path / "kept.db"
    kept.write_bytes(b"")  # an existing (empty) file is opened, never replaced by the copy
    stmod._new_sqlite_storage(kept)
    assert kept.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".new")) == []
