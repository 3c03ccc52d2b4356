"""``study run --jobs J`` on SQLite: one coordinator (the in-process study copy, sampler, pruner, the storage
writes) and J forked compute processes (``optimizer.study._pool``).

* the storage is read a few times a run, not per trial, and each trial is written once, finished, in one
  transaction into the row it claimed (``_BudgetRDBStorage.claim_trial`` / ``write_finished_trial(trial_id=)``);
* the claim is the storage's budget check: a ``study worker`` sharing the study at the same time, and a SIGKILL
  of the run then a resume, still end with exactly ``n_trials``;
* pruned trials carry their fold reports and attributes as with one process.

Ctrl-C and a killed coordinator: tests/test_adversarial.py (``test_ctrl_c_stops_study_run_jobs_2_and_its_workers``,
``test_workers_of_a_killed_study_run_stop_instead_of_running_on_orphaned``); exactly n with distinct start-up
configurations: tests/test_study_workers.py::test_jobs_2_finishes_exactly_n_trials; PostgreSQL:
tests/test_postgres.py::test_study_run_jobs_2_on_postgres_finishes_exactly_n_trials.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime

import optuna
import pytest
from optuna.trial import TrialState

from _cli_helpers import finish_logged
from objectives import make_objective
from test_study_workers import _assert_clean, _spec, _start, _trials, age_heartbeats, run_here
from optimizer.study import make_storage
from optimizer.study import storage as storage_mod
from optimizer.study.run import run_study
from optimizer.study.spec import load_spec
from optimizer.study.storage import StudyFull

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# ------------------------------------------------------------------------------------------------ storage rows
def _finished(number: int, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    d = optuna.distributions.FloatDistribution(0.0, 1.0)
    t = optuna.trial.create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                                  params={"x": 0.25}, distributions={"x": d}, intermediate_values={0: 1.5, 1: 2.5},
                                  user_attrs={"metrics": {"a": 1}}, system_attrs={"fixed_params": {"x": 0.25}})
    t.number = number
    t.datetime_start = t.datetime_complete = datetime(2026, 1, 2, 3, 4, 5)
    return t


def test_claimed_row_is_completed_in_place_and_the_claim_is_budgeted(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = make_storage(url)
    study = optuna.create_study(study_name="claims", storage=storage)
    sid = study._study_id
    study.enqueue_trial({"x": 0.25})  # a WAITING row holds a slot
    storage.set_trial_budget(sid, 3)
    a, na = storage.claim_trial(sid)
    b, nb = storage.claim_trial(sid)
    assert (na, nb) == (1, 2)
    with pytest.raises(StudyFull):  # 3 slots held (WAITING + 2 RUNNING): the budget of 3 is used
        storage.claim_trial(sid)
    assert len(storage.get_all_trials(sid)) == 3  # the refused claim left no row
    # a claimed row carries its first heartbeat (else a killed coordinator's row would never go stale)
    assert storage._get_stale_trial_ids(sid) == []
    # the waiting row popped, then completed in place with everything the finished trial holds
    waiting = storage.get_all_trials(sid)[0]
    assert storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
    wid = waiting._trial_id
    assert storage.write_finished_trial(sid, _finished(0, TrialState.PRUNED), trial_id=wid) == wid
    assert storage.write_finished_trial(sid, _finished(1), trial_id=a) == a
    got = {t.number: t for t in make_storage(url, read_only=True).get_all_trials(sid)}
    assert [got[n].state for n in range(3)] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.RUNNING]
    for n in (0, 1):
        assert got[n].params == {"x": 0.25} and got[n].intermediate_values == {0: 1.5, 1: 2.5}
        assert got[n].user_attrs == {"metrics": {"a": 1}} and got[n].system_attrs == {"fixed_params": {"x": 0.25}}
    assert got[1].value == 0.5
    # a row no longer RUNNING (failed as stale meanwhile) is not written: its retry runs it
    storage.set_trial_state_values(b, TrialState.FAIL)
    assert storage.write_finished_trial(sid, _finished(2), trial_id=b) is None
    t = storage.get_trial(b)
    assert t.state == TrialState.FAIL and t.params == {} and t.user_attrs == {}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_claimed_row_whose_coordinator_died_goes_stale(tmp_path):
    """The claim writes the row's first heartbeat itself (SQL, not Optuna's ORM): a coordinator killed before any
    beat of its heartbeat thread leaves rows that go stale (failed and retried), never RUNNING forever."""
    storage = make_storage(f"sqlite:///{tmp_path / 'stale.db'}", grace_period=2)  # stale after 2 s
    study = optuna.create_study(study_name="stale", storage=storage)
    tid, number = storage.claim_trial(study._study_id)
    assert number == 0 and storage._get_stale_trial_ids(study._study_id) == []
    age_heartbeats(storage, 3.2)  # 3.2 s pass for the heartbeats (no coordinator beats meanwhile: it died)
    assert storage._get_stale_trial_ids(study._study_id) == [tid]
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING], states  # failed, and its retry queued


# ------------------------------------------------------------------------------------------------ the pool
@pytest.mark.slow
def test_jobs_2_reads_the_storage_per_run_not_per_trial(synth_db, tmp_path, monkeypatch):
    """Each --jobs worker read every trial from the storage ~8 times a trial (TPE, the pruner, MaxTrialsCallback,
    the waiting-trial pop, the repeat check) and committed each attribute: 2 workers were slower than 1 process.
    Now the compute processes never touch the storage, and the coordinator reads its trials a few times a run."""
    n = 12
    spec = load_spec(_spec(tmp_path, "reads", n, pruner='name = "median"\nn_startup_trials = 2'))
    log = tmp_path / "calls.txt"
    real_get, real_write = storage_mod._BudgetRDBStorage._get_trials, storage_mod._BudgetRDBStorage.write_finished_trial

    def note(what: str) -> None:  # a file: the forked processes inherit the patch and append to it too
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {what}\n")

    def get_trials(self, *args, **kwargs):
        note("read")
        return real_get(self, *args, **kwargs)

    def write(self, *args, **kwargs):
        note("write")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(storage_mod._BudgetRDBStorage, "_get_trials", get_trials)
    monkeypatch.setattr(storage_mod._BudgetRDBStorage, "write_finished_trial", write)
    log.write_text("")
    res = run_study(spec, synth_db, f"sqlite:///{tmp_path / 'r.db'}", jobs=2)
    assert res.counts["complete"] + res.counts["pruned"] == n and res.counts["failed"] == 0
    calls = [ln.split() for ln in log.read_text().splitlines()]
    assert {pid for pid, _ in calls} == {str(os.getpid())}, "a compute process used the storage"
    assert sum(w == "write" for _, w in calls) == n  # one write per trial
    assert sum(w == "read" for _, w in calls) <= 6, calls  # open, counts, the copy, the end: not per trial
    trials = res.study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner pruned nothing: the reports are not checked"
    objective = make_objective(spec.objective.name, spec.objective.options)
    for t in trials:  # every trial carries its fold reports and attributes, as with one process
        folds = t.user_attrs["folds"]
        assert t.user_attrs["config"]["params"] and folds  # the effective configuration, the folds scored
        # a report for each fold scored (a fold short of min_trades prunes without one), the fold's value
        assert set(t.intermediate_values) <= set(range(len(folds))) and len(t.intermediate_values) >= len(folds) - 1
        for k, v in t.intermediate_values.items():
            assert v == objective.fold_value(folds[k]), (t.number, k)
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["metrics"]["pruned_at_fold"] == len(folds) - 1
            assert t.user_attrs["metrics"]["pruned_reason"].startswith(f"fold {len(folds) - 1}: ")
        else:
            assert len(t.intermediate_values) == len(folds) == 3 and t.user_attrs["metrics"]["pruned_at_fold"] is None


@pytest.mark.slow
def test_jobs_2_and_an_external_worker_end_with_exactly_n_trials(synth_db, tmp_path):
    """A `study worker` joins a `study run --jobs 2` of the same study: the run's claims hold their slots in the
    storage, the worker's trials hold theirs, and together they end with exactly n finished trials."""
    n = 14
    spec = _spec(tmp_path, "mixed", n, objective="_slow_objective:SlowRankExcess")
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    run_study(load_spec(spec), synth_db, url, n_trials=1)  # the study exists: both join it at once
    common = ["--db", str(synth_db), "--storage", url, "--format", "json"]
    # the worker a process of its own, the run (which forks its two compute processes) in this process
    worker = _start(["study", "worker", str(spec), *common], tmp_path, tmp_path / "worker", slow=True)
    try:
        errs = [run_here(["study", "run", str(spec), "--jobs", "2", *common], slow=True)[1]]
    finally:
        errs.append(finish_logged(worker, tmp_path / "worker")[1])
    trials = _trials(url, "mixed")
    _assert_clean(trials, n, *errs)
    assert len(trials) == n
    # both took part (the worker's trials and the run's overlap in time)
    starts = sorted((t.datetime_start, t.datetime_complete) for t in trials if t.state in FINISHED)
    assert any(b[0] < a[1] for a, b in zip(starts, starts[1:]))


@pytest.mark.slow
def test_sigkill_of_study_run_jobs_2_loses_at_most_2_trials_and_resumes_exactly(synth_db, tmp_path):
    n = 14
    spec = _spec(tmp_path, "killpool", n, objective="_slow_objective:SlowRankExcess")
    url = f"sqlite:///{tmp_path / 'killpool.db'}"
    args = ["study", "run", str(spec), "--db", str(synth_db), "--storage", url, "--jobs", "2", "--format", "json"]
    p = _start(args, tmp_path, tmp_path / "first", slow=True)
    deadline = time.monotonic() + 120
    before: list = []
    try:
        while time.monotonic() < deadline and p.poll() is None:
            if sum(t.state == TrialState.COMPLETE for t in _trials(url, "killpool")) >= 4:
                os.kill(p.pid, signal.SIGKILL)
                before = _trials(url, "killpool")
                break
            time.sleep(0.05)
        assert before, "the study finished before it could be killed (the slow objective should prevent that)"
    finally:
        if p.poll() is None and not before:
            p.kill()
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    running = [t.number for t in before if t.state == TrialState.RUNNING]
    # at most J trials lost; at least one claimed row was left RUNNING (a trial is claimed as the last one ends),
    # so the resume goes through its heartbeat going stale
    assert 1 <= len(running) <= 2, [(t.number, t.state.name) for t in before]
    assert all(t.state in (*FINISHED, TrialState.RUNNING) for t in before)
    complete_before = {t.number: (t.value, t.params) for t in before if t.state == TrialState.COMPLETE}
    out, err = run_here(args)  # in this process; its --jobs 2 compute processes are forked from it
    final = _trials(url, "killpool")
    _assert_clean(final, n, err, failed=tuple(running))  # the killed claims: FAIL once stale, never counted
    byn = {t.number: t for t in final}
    for num, (value, params) in complete_before.items():  # nothing completed before the kill was lost or redone
        assert byn[num].state == TrialState.COMPLETE and byn[num].value == value and byn[num].params == params
    res = json.loads(out)
    assert res["complete"] + res["pruned"] == n and res["failed"] == len(running) and res["running"] == 0
