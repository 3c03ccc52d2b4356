"""What a user sees of accumopt's studies in optuna-dashboard (explore19's audit), asked in-process through the
dashboard's own WSGI application as its pages ask (no browser, no network).

* A trial the heartbeat check failed (its process was killed: a ``--jobs`` trial, a ``study worker``'s, a
  walk-forward window claim) was a FAIL with no parameters and no reason in the dashboard; its retry's link to it
  is an Optuna system attribute, which the dashboard does not show. It now holds ``lost`` (why), and its retry
  ``retry_of`` (the failed trial's number); a withdrawn or released window claim says why in its claim.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import optuna
import pytest
from optuna.storages._rdb.models import TrialHeartbeatModel
from optuna.trial import TrialState

from optimizer.study.inspect import trial_detail
from optimizer.study.records import claims_name, lost_reason, read_claim, retry_of
from optimizer.study.storage import make_storage
from optimizer.validate.distributed import FREE, WindowClaims

dashboard = pytest.importorskip("optuna_dashboard")


def _get(app, path: str) -> tuple[str, bytes]:
    status = []
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http",
           "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False}
    body = b"".join(app(env, lambda s, h, exc_info=None: status.append(s)))
    return status[0], body


def _dashboard_trials(url: str, study: optuna.Study) -> list[dict]:
    status, body = _get(dashboard.wsgi(make_storage(url, heartbeat=False)), f"/api/studies/{study._study_id}")
    assert status.startswith("200"), (status, body[:300])
    return json.loads(body)["trials"]


def _attrs(trial: dict) -> dict[str, str]:
    return {a["key"]: a["value"] for a in trial["user_attrs"]}


def _age_heartbeats(storage: optuna.storages.RDBStorage, seconds: float) -> None:
    """Every heartbeat ``seconds`` into the past: what that much waiting does to a trial nobody beats for."""
    session = storage.scoped_session()
    try:
        for beat in session.query(TrialHeartbeatModel).all():
            beat.heartbeat = beat.heartbeat - timedelta(seconds=seconds)
        session.commit()
    finally:
        session.close()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")  # ask(): a killed trial
def test_a_trial_failed_by_the_heartbeat_check_says_why_and_its_retry_names_it(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = make_storage(url, grace_period=2)
    study = optuna.create_study(study_name="lost", storage=storage)
    study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # RUNNING, its first heartbeat stored with it
    _age_heartbeats(storage, 60)  # its process was killed a minute ago
    optuna.storages.fail_stale_trials(study)  # what the next run (or worker) does first
    failed, retry = study.get_trials(deepcopy=False)
    assert (failed.state, retry.state) == (TrialState.FAIL, TrialState.WAITING)
    shown = _dashboard_trials(url, study)
    assert [t["state"] for t in shown] == ["Fail", "Waiting"]
    lost = _attrs(shown[0])
    assert "lost" in lost and "killed" in lost["lost"] and "over 2 s" in lost["lost"]  # before: no attribute at all
    assert _attrs(shown[1]) == {"retry_of": "0"}  # the retry names the failed trial, without its lost note
    assert lost_reason(failed) == lost["lost"] and lost_reason(retry) is None
    assert retry_of(retry) == 0 and retry_of(failed) is None
    d = trial_detail(make_storage(url, heartbeat=False), "lost", 0)
    assert d["state"] == "FAIL" and d["lost"] == lost["lost"] and d["retry_of"] is None
    assert trial_detail(make_storage(url, heartbeat=False), "lost", 1)["retry_of"] == 0


def test_an_objective_failure_is_not_called_lost(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = make_storage(url, grace_period=2)
    study = optuna.create_study(study_name="f", storage=storage)

    def boom(trial):
        trial.suggest_float("x", 0, 1)
        raise RuntimeError("bad")

    study.optimize(boom, n_trials=1, catch=(RuntimeError,))
    _age_heartbeats(storage, 60)
    optuna.storages.fail_stale_trials(study)  # nothing RUNNING: nothing to fail
    (t,) = study.get_trials(deepcopy=False)
    assert t.state == TrialState.FAIL and lost_reason(t) is None and "lost" not in _attrs(_dashboard_trials(url, study)[0])


def test_a_window_claim_that_ends_unfinished_says_why(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    windows = ["w-wf00", "w-wf01"]
    a = WindowClaims(make_storage(url), "w", run={"n_trials": 1, "windows": windows, "key": "k"}, worker="a")
    b = WindowClaims(make_storage(url), "w", run={"n_trials": 1, "windows": windows, "key": "k"}, worker="b")
    try:
        held = a.claim("w-wf00")
        monkeypatch.setattr(b, "states", lambda ws: dict.fromkeys(ws, FREE))  # b looked before a's claim was made
        assert held is not None and b.claim("w-wf00") is None  # b withdraws its claim
        a.release(held)  # a is interrupted before the window's trials all ran
    finally:
        a.close()
        b.close()
    study = optuna.load_study(study_name=claims_name("w"), storage=url)
    ts = study.get_trials(deepcopy=False)
    assert [t.state for t in ts] == [TrialState.FAIL, TrialState.FAIL]
    assert read_claim(ts[0])["end"].startswith("released: ")
    assert read_claim(ts[1])["end"] == "withdrawn: claim 0 (worker a) held the window"
    shown = [json.loads(_attrs(t)["wf_claim"]) for t in _dashboard_trials(url, study)]
    assert [c["end"].split(":")[0] for c in shown] == ["released", "withdrawn"]  # before: no reason
    assert [c["window"] for c in shown] == ["w-wf00", "w-wf00"]

