"""``study run`` with one process (``--jobs 1``) runs its trials on an in-process copy of the study and writes each
finished trial in one transaction (``run._optimize_mirrored``). That copy does not see another process's trials, so
the path checks that it is the study's only writer: each write is counted against the trial budget in its own
transaction (``_BudgetRDBStorage.append_finished_trial``) and the number the trial gets is compared with the count
the copy knows. When another process writes to the study (a `study worker` on other machines, a RUNNING trial a
worker's trial running when the run starts), the run goes on through the storage itself, where the budget is exact
and the sampler sees every trial. Before, the run wrote its own n_trials on top of the other process's trials
(n + theirs).

Here "another process" is a second storage object on the same file (its own connection), writing from a callback
of the run between two of its trials: deterministic, in-process.
"""

from __future__ import annotations


import optuna
from optuna.trial import TrialState

from test_study_workers import _assert_clean, _spec, _trials
from optimizer.study import make_storage
from optimizer.study.run import run_study
from optimizer.study.spec import load_spec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _foreign(url: str, name: str, k: int) -> None:
    """``k`` finished trials added to the study by another storage object, as another process's worker would."""
    study = optuna.load_study(study_name=name, storage=make_storage(url, heartbeat=False))
    d = optuna.distributions.FloatDistribution(0.0, 1.0)
    for i in range(k):
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=-1.0, params={"foreign": 0.5},
                                                  distributions={"foreign": d}))


def _after_trial(number: int, action):
    done = [False]

    def cb(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == number and not done[0]:
            done[0] = True
            action()
    return cb


def test_trials_another_process_adds_during_a_single_writer_run_count_in_its_budget(synth_db, tmp_path):
    n = 8
    spec = load_spec(_spec(tmp_path, "shared", n))
    url = f"sqlite:///{tmp_path / 's.db'}"
    res = run_study(spec, synth_db, url, callbacks=[_after_trial(2, lambda: _foreign(url, "shared", 3))])
    trials = _trials(url, "shared")
    _assert_clean(trials, n)  # before: 11 finished (the run's 8 and the other process's 3)
    assert sum("foreign" in t.params for t in trials) == 3
    assert res.counts["complete"] + res.counts["pruned"] == n


def test_a_single_writer_run_whose_budget_another_process_fills_stops_exactly(synth_db, tmp_path):
    n = 8
    spec = load_spec(_spec(tmp_path, "filled", n))
    url = f"sqlite:///{tmp_path / 'f.db'}"
    run_study(spec, synth_db, url, callbacks=[_after_trial(2, lambda: _foreign(url, "filled", 5))])
    trials = _trials(url, "filled")
    # the run's trials 0-2 and the other process's 5 fill the budget: the run's next trial is not stored
    _assert_clean(trials, n)  # before: 13 finished
    assert [t.number for t in trials if "foreign" in t.params] == [3, 4, 5, 6, 7]


def test_a_trial_another_worker_is_running_when_a_single_writer_run_starts_holds_its_place(synth_db, tmp_path):
    n = 4
    spec = load_spec(_spec(tmp_path, "live", n))
    url = f"sqlite:///{tmp_path / 'l.db'}"
    run_study(spec, synth_db, url, n_trials=1)
    other = make_storage(url)  # another worker, in its trial (a RUNNING row with a fresh heartbeat)
    sid = other.get_study_id_from_name("live")
    other.set_trial_budget(sid, n)
    tid, number = other.claim_trial(sid)
    assert number == 1
    finish = _after_trial(2, lambda: other.set_trial_state_values(tid, TrialState.COMPLETE, [-1.0]))
    run_study(spec, synth_db, url, callbacks=[finish])
    trials = _trials(url, "live")
    _assert_clean(trials, n)  # before: 5 finished (the run ignored the running trial and ran 3 of its own)
    assert trials[1].state == TrialState.COMPLETE and trials[1].value == -1.0
