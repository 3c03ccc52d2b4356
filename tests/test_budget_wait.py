"""A worker whose study's trial budget is held by other workers' running trials waits for them
(optimizer/study/run.py ``_optimize_budget``), looking again every ``_WAIT_POLL`` second, not every heartbeat
interval (5 s with the default 15 s grace): a worker used to linger up to 5 s after the other's last trial ended
(the multi-worker tests of tests/test_postgres.py waited for it)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from optimizer.study import run as runmod
from optimizer.study.storage import make_storage


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # the other worker's trial: ask / tell
def test_a_worker_waiting_for_another_workers_last_trial_looks_again_every_second(tmp_path, monkeypatch):
    storage = make_storage(f"sqlite:///{tmp_path / 'b.db'}", grace_period=15)
    assert storage.get_heartbeat_interval() == 5
    study = optuna.create_study(study_name="b", storage=storage)
    other = study.ask()  # another worker's trial, running (its first heartbeat is written with it)
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # this worker waits; meanwhile the other worker's trial ends
        slept.append(seconds)
        study.tell(other, 1.0)

    monkeypatch.setattr(runmod, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    ran: list[int] = []
    runmod._optimize_budget(study, storage, lambda t: ran.append(t.number) or 0.0, target=1, timeout=None,
                            callbacks=[])
    assert slept == [1.0]  # one look after a second (before: after the 5 s heartbeat interval)
    assert ran == [] and [t.state for t in study.get_trials()] == [TrialState.COMPLETE]  # the budget held: no trial
