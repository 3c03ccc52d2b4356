"""optuna-dashboard can show a distributed walk-forward's claims study (``<study>-wf-claims``).

Found by an audit: the claims' trials had no parameters, and optuna-dashboard 0.21 divides by the number of the
study's parameters when the importances of two or more COMPLETE trials come out empty, so the dashboard's
importances request on the claims study answered HTTP 500 (ZeroDivisionError). Each claim now holds its window as
the integer parameter ``window`` (its index among the run's window studies: a categorical of the window names
broke the claims of a later run with other windows in the same claims study); the claims are still read from
their ``WF_CLAIM`` attribute. Oracle: the dashboard's own WSGI application, asked as its page asks."""

from __future__ import annotations

import io
import json

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from optimizer.study.records import claim_template, claims_name, read_claim
from optimizer.study.storage import make_storage
from optimizer.validate.distributed import DONE, FREE, WindowClaims

WINDOWS = ["wfd-wf00", "wfd-wf01", "wfd-wf02"]


def _get(app, path: str) -> tuple[str, bytes]:
    status = []
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http",
           "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False}
    body = b"".join(app(env, lambda s, h, exc_info=None: status.append(s)))
    return status[0], body


@pytest.mark.filterwarnings("ignore:Target and region quantiles:UserWarning")  # optuna, all claims value 0
def test_the_dashboard_computes_the_claims_studys_importances(tmp_path):
    dashboard = pytest.importorskip("optuna_dashboard")
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    claims = WindowClaims(make_storage(url), "wfd", run={"n_trials": 1, "windows": WINDOWS, "key": "k"}, worker="a")
    try:
        for w in WINDOWS:
            claims.finish(claims.claim(w))
        assert claims.states(WINDOWS) == dict.fromkeys(WINDOWS, DONE)
    finally:
        claims.close()
    study = optuna.load_study(study_name=claims_name("wfd"), storage=url)
    status, body = _get(dashboard.wsgi(url), f"/api/studies/{study._study_id}/param_importances")
    assert status.startswith("200"), (status, body[:300])  # before: 500 Internal Server Error
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert [read_claim(t)["window"] for t in done] == WINDOWS
    assert [t.params for t in done] == [{"window": i} for i in range(len(WINDOWS))]
    assert {t.distributions["window"] for t in done} == {IntDistribution(0, len(WINDOWS) - 1)}
    assert [[i["name"] for i in obj] for obj in json.loads(body)["param_importances"]] == [["window"]]


def test_a_claim_outside_the_runs_windows_holds_only_its_own():
    t = claim_template("wfd-wf09", "host:1", "k", WINDOWS)
    assert t.params == {"window": 0} and t.distributions == {"window": IntDistribution(0, 0)}
    assert read_claim(t) == {"window": "wfd-wf09", "worker": "host:1", "key": "k"}
    assert claim_template("wfd-wf01", "h", None).distributions["window"] == IntDistribution(0, 0)
    assert claim_template("wfd-wf02", "h", "k", WINDOWS).params == {"window": 2}


def test_runs_with_other_windows_claim_in_one_claims_study(tmp_path):
    """One claims study holds the claims of every run of a study name; a later run over more data has more (other)
    windows. With the window names as a categorical's choices, SQLite refused the second run's first claim
    (Optuna: 'CategoricalDistribution does not support dynamic value space'): the walk-forward could not claim."""
    url = f"sqlite:///{tmp_path / 'c.db'}"  # claims need heartbeats: SQLite / PostgreSQL only
    later = WINDOWS + ["wfd-wf03", "wfd-wf04"]
    for key, windows in (("k1", WINDOWS), ("k2", later), ("k3", ["other-wf00"])):
        c = WindowClaims(make_storage(url), "wfd", run={"n_trials": 1, "windows": windows, "key": key}, worker=key)
        try:
            for w in windows:
                tid = c.claim(w)
                assert tid is not None, (key, w)
                c.finish(tid)
            assert c.states(windows) == dict.fromkeys(windows, DONE)
        finally:
            c.close()
    st = optuna.load_study(study_name=claims_name("wfd"), storage=make_storage(url))
    assert len(st.get_trials(states=(TrialState.COMPLETE,))) == len(WINDOWS) + len(later) + 1


def test_claims_without_a_window_list_still_claim_and_free(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    a = WindowClaims(make_storage(url), "x", run={"n_trials": 1}, worker="a")
    try:
        tid = a.claim("w0")
        assert tid is not None and a.claim("w0") is None
        a.release(tid)
        assert a.states(["w0"]) == {"w0": FREE}
    finally:
        a.close()
