"""A study killed at any point and resumed ends with the trials an uninterrupted run with the same seed makes.

Standard: "Deterministic. Same data + spec + seed -> same trials and best parameters." A single-process study
(``study run``, each walk-forward window study) writes every finished trial before the next starts, so a SIGKILL
leaves the storage at a trial boundary (the running trial never reaches it). Resuming from there must draw the same
next trial as the uninterrupted process: the k-th trial's draw depends only on (seed, k, the trials before it),
never on the sampler RNG's history in this process (``optimizer.study.registry.StepRounding.before_trial``).

Fast in-process variants: an uninterrupted study against one stopped after ``k`` trials (exactly what a SIGKILL
leaves) and resumed, per sampler and with a pruner; a trial left RUNNING by a killed worker (stale heartbeat: FAIL
plus its retry) is not counted. The process-level SIGKILL tests live in tests/test_study_workers.py style below.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

import optuna
import pytest
from optuna.trial import TrialState

from optimizer.study.data import load_study_data, prepare_data
from optimizer.study.run import run_study
from optimizer.study.spec import load_spec
from optimizer.study.storage import make_storage

SPEC = """
[study]
name = "det"
[data]
universe = "tier1+3"
[space]
variant = {{ type = "categorical", choices = ["A", "B", "C"] }}
z_window = {{ type = "categorical", choices = [10, 20] }}
buy_threshold = {{ type = "int", low = 60, high = 80, step = 5 }}
sell_threshold = {{ type = "int", low = 20, high = 40, step = 10 }}
exit = {{ type = "categorical", choices = ["fixed_10d", "first_dist"] }}
stop_loss = {{ type = "float", low = 0.05, high = 0.15, step = 0.05 }}
time_stop = 10
[cv]
n_splits = 2
[objective]
name = "composite_rank_excess"
min_trades = 0
[sampler]
name = "{sampler}"
seed = 7
{sampler_options}
[pruner]
{pruner}
[run]
n_trials = {n}
"""

N = 9
K = 4  # the study is "killed" after K finished trials


def _spec(tmp_path, sampler: str = "tpe", options: str = "", pruner: str = 'name = "none"'):
    p = tmp_path / f"det-{sampler}.toml"
    p.write_text(SPEC.format(sampler=sampler, sampler_options=options, pruner=pruner, n=N), encoding="utf-8")
    return load_spec(p)


@pytest.fixture(scope="module")
def panel(synth_db):
    """The study data is loaded once (the spec's [data] is the same for every test here)."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        spec = _spec(Path(d))
        return load_study_data(spec, synth_db)


def _data(spec, panel):
    return prepare_data(spec, panel[0], 0, panel[1])


def _finished(url: str, name: str = "det") -> list[tuple]:
    st = make_storage(url, heartbeat=False)
    trials = optuna.load_study(study_name=name, storage=st).get_trials(deepcopy=False)
    return [(t.params, t.values, t.state.name, dict(t.intermediate_values))
            for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def _run(spec, panel, url, n, **kw):
    return run_study(spec, None, url, n_trials=n, data=_data(spec, panel), **kw)


SAMPLERS = [
    ("tpe", "n_startup_trials = 3"),
    ("random", ""),
    ("grid", ""),
    ("qmc", ""),
    ("qmc", "scramble = true"),
    ("nsga2", "population_size = 4"),
]


@pytest.mark.parametrize("sampler,options", SAMPLERS, ids=[f"{s}{'-' + o.split()[0] if o else ''}" for s, o in SAMPLERS])
def test_stopped_and_resumed_study_draws_the_uninterrupted_trials(synth_db, panel, tmp_path, sampler, options):
    spec = _spec(tmp_path, sampler, options)
    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    parts = f"sqlite:///{tmp_path / 'parts.db'}"
    a = _run(spec, panel, whole, N)
    _run(spec, panel, parts, K)  # what a SIGKILL during trial K leaves: K finished trials, nothing RUNNING
    _run(spec, panel, parts, K + 2)  # killed again
    b = _run(spec, panel, parts, N)
    fa, fb = _finished(whole), _finished(parts)
    assert len(fa) == N and fb == fa
    assert b.best_params == a.best_params and b.best_value == a.best_value
    assert len({str(p) for p, *_ in fa}) > 1  # the trials differ from each other (the draws are not all one point)


@pytest.mark.parametrize("pruner", ['name = "median"\nn_startup_trials = 2\nn_warmup_steps = 0',
                                    'name = "hyperband"\nmin_resource = 1\nmax_resource = 2'],
                         ids=["median", "hyperband"])
def test_pruned_history_is_the_uninterrupted_one(synth_db, panel, tmp_path, pruner):
    """Pruners read only the stored fold reports: the resumed study prunes the trials the uninterrupted one
    prunes, at the same fold (states and intermediate values compared trial by trial)."""
    spec = _spec(tmp_path, "random", "", pruner)
    whole, parts = f"sqlite:///{tmp_path / 'whole.db'}", f"sqlite:///{tmp_path / 'parts.db'}"
    _run(spec, panel, whole, N)
    _run(spec, panel, parts, K)
    _run(spec, panel, parts, N)
    fa = _finished(whole)
    assert _finished(parts) == fa
    assert len(fa) == N and any(state == "PRUNED" for _, _, state, _ in fa)  # the pruner did prune


def test_a_trial_left_running_by_a_killed_process_is_not_counted(synth_db, panel, tmp_path, monkeypatch):
    """A trial a killed worker left RUNNING is failed on resume once its heartbeat is stale, and its parameters
    are retried (``make_storage``'s heartbeat callback). It is lost to the kill: the draws after it are numbered
    without it, so the finished trials are the uninterrupted run's (its parameters are the uninterrupted trial K's,
    as a killed single-process run would have drawn them)."""
    monkeypatch.setenv("ACCUMOPT_HEARTBEAT_GRACE", "2")
    spec = _spec(tmp_path, "tpe", "n_startup_trials = 3")
    whole, parts = f"sqlite:///{tmp_path / 'whole.db'}", f"sqlite:///{tmp_path / 'parts.db'}"
    _run(spec, panel, whole, N)
    ref = optuna.load_study(study_name="det", storage=make_storage(whole, heartbeat=False)).trials[K]
    _run(spec, panel, parts, K)
    storage = make_storage(parts)
    sid = storage.get_study_id_from_name("det")
    tid = storage.create_new_trial(sid)  # RUNNING, with a heartbeat (as a worker's trial)
    for name, dist in ref.distributions.items():
        storage.set_trial_param(tid, name, dist.to_internal_repr(ref.params[name]), dist)
    storage.engine.dispose()
    with closing(sqlite3.connect(tmp_path / "parts.db")) as con, con:  # its process died long ago
        con.execute("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00' WHERE trial_id = ?", (tid,))
    b = _run(spec, panel, parts, N)
    trials = optuna.load_study(study_name="det", storage=make_storage(parts, heartbeat=False)).trials
    assert [t.state.name for t in trials].count("FAIL") == 1 and trials[K].state == TrialState.FAIL
    assert _finished(parts) == _finished(whole)
    assert b.best_params == optuna.load_study(study_name="det", storage=make_storage(whole, heartbeat=False)).best_params


def test_an_objective_failure_still_counts():
    """A trial the objective failed (reason stored) is not lost to a kill: it keeps its place in the numbering, so
    the trial after it does not draw the failed trial's parameters again; one failed outside the objective is."""
    from optimizer.study.records import TrialRecord, lost_to_kill

    study = optuna.create_study()
    t = study.ask()
    TrialRecord.failed("ValueError: boom", [], 0.0).write(t)
    study.tell(t, state=TrialState.FAIL)
    study.tell(study.ask(), state=TrialState.FAIL)  # no reason: what a stale RUNNING trial becomes
    study.tell(study.ask(), 1.0)
    assert [lost_to_kill(t) for t in study.trials] == [False, True, False]


@pytest.mark.slow
def test_study_run_sigkilled_mid_trial_and_resumed_draws_the_uninterrupted_trials(synth_db, panel, tmp_path,
                                                                                   monkeypatch):
    """`accumopt study run` SIGKILLed while a trial runs (after >= 2 finished trials), then resumed: the finished
    trials (params, values, states, in order) and the best parameters are the uninterrupted run's. The killed process
    sleeps per fold (tests/_slow_objective.py: composite_rank_excess's values) so that it is caught in a trial."""
    import os
    import signal
    import time

    from _slow_objective import SLEEP_ENV, slowed
    from test_study_workers import _start, _trials

    monkeypatch.delenv(SLEEP_ENV, raising=False)
    path = tmp_path / "det.toml"
    path.write_text(slowed(SPEC.format(sampler="tpe", sampler_options="n_startup_trials = 3", pruner='name = "none"',
                                       n=N)), encoding="utf-8")
    spec = load_spec(path)
    whole, url = f"sqlite:///{tmp_path / 'whole.db'}", f"sqlite:///{tmp_path / 'kill.db'}"
    a = _run(spec, panel, whole, N)
    p = _start(["study", "run", str(path), "--db", str(synth_db), "--storage", url], tmp_path, tmp_path / "first",
               slow=True)
    killed, t_end = None, time.monotonic() + 120
    try:
        while killed is None and time.monotonic() < t_end and p.poll() is None:
            if sum(t.state == TrialState.COMPLETE for t in _trials(url, "det")) >= 2:
                os.kill(p.pid, signal.SIGKILL)
                killed = len(_trials(url, "det"))
            time.sleep(0.05)
    finally:
        if p.poll() is None and killed is None:
            p.kill()
        p.wait(timeout=30)
    assert killed is not None and killed < N and p.returncode == -signal.SIGKILL
    b = _run(spec, panel, url, N)
    assert _finished(url) == _finished(whole)
    assert b.best_params == a.best_params and b.best_value == a.best_value


def test_ctrl_c_in_a_window_of_a_journal_walkforward_stops_the_run(synth_db, tmp_path, monkeypatch):
    """A journal storage runs the windows in this process (no claims): Ctrl-C during a window's study stops the
    study after its running trial, and the walk-forward stops there (``Interrupted``: resumable) instead of judging
    the window on the trials it had and going on with the next ones."""
    import signal

    from optimizer.errors import Interrupted
    from optimizer.validate import walkforward as wfmod
    from test_walkforward_distributed import N as WF_N
    from test_walkforward_distributed import SPEC

    real = wfmod.run_study

    def ctrl_c_after_first_trial(*a, **k):
        def cb(study, trial):
            if trial.number == 0:
                signal.raise_signal(signal.SIGINT)  # a real SIGINT: run_study's handler takes it
        return real(*a, **{**k, "callbacks": [*(k.get("callbacks") or []), cb]})

    monkeypatch.setattr(wfmod, "run_study", ctrl_c_after_first_trial)
    spec = tmp_path / "wfd.toml"
    spec.write_text(SPEC, encoding="utf-8")
    url = f"journal:{tmp_path / 'wf.log'}"
    with pytest.raises(Interrupted, match=rf"interrupted after [1-9]\d* of its {WF_N} trials; run the walk-forward again"):
        wfmod.run_walkforward(load_spec(spec), synth_db, url, out_dir=None)
    storage = make_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    assert len(names) == 1 and 1 <= len(optuna.load_study(study_name=names[0], storage=storage).trials) < WF_N
