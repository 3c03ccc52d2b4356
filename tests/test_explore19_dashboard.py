"""What a user sees of accumopt's studies in optuna-dashboard (explore19's audit), asked in-process through the
dashboard's own WSGI application as its pages ask (no browser, no network).

* A trial the heartbeat check failed (its process was killed: a ``--jobs`` trial, a ``study worker``'s, a
  walk-forward window claim) was a FAIL with no parameters and no reason in the dashboard; its retry's link to it
  is an Optuna system attribute, which the dashboard does not show. It now holds ``lost`` (why), and its retry
  ``retry_of`` (the failed trial's number); a withdrawn or released window claim says why in its claim.
* Every study's record is listed to whoever opens the dashboard: it held the spec's text verbatim, a password in
  ``[run].storage`` included, and the spec's path as given (a home folder). The password is now ``***`` and an
  absolute path is stored relative to the working folder, or as the file's name.
"""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from optimizer.study.inspect import trial_detail
from optimizer.study.records import claims_name, lost_reason, read_claim, read_study, retry_of
from optimizer.study.run import run_study
from optimizer.study.spec import parse_spec
from optimizer.study.storage import make_storage
from optimizer.validate.distributed import FREE, WindowClaims

dashboard = pytest.importorskip("optuna_dashboard")

from test_mend7_claims_dashboard import _get  # noqa: E402  (the dashboard's WSGI app, one GET)
from test_study_workers import age_heartbeats  # noqa: E402


def _dashboard_trials(url: str, study: optuna.Study) -> list[dict]:
    status, body = _get(dashboard.wsgi(make_storage(url, heartbeat=False)), f"/api/studies/{study._study_id}")
    assert status.startswith("200"), (status, body[:300])
    return json.loads(body)["trials"]


def _attrs(trial: dict) -> dict[str, str]:
    return {a["key"]: a["value"] for a in trial["user_attrs"]}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")  # ask(): a killed trial
def test_a_trial_failed_by_the_heartbeat_check_says_why_and_its_retry_names_it(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = make_storage(url, grace_period=2)
    study = optuna.create_study(study_name="lost", storage=storage)
    study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # RUNNING, its first heartbeat stored with it
    age_heartbeats(storage, 60)  # its process was killed a minute ago
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
    age_heartbeats(storage, 60)
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


_SPEC = """
[study]
name = "{name}"
[data]
universe = "tier1+3"
[space]
variant = {{ type = "categorical", choices = ["B", "D"] }}
z_window = {{ type = "int", low = 10, high = 40, log = true }}
buy_threshold = {{ type = "int", low = 60, high = 80, step = 5 }}
sell_threshold = 30
time_stop = 20
use_stop_loss = {{ type = "categorical", choices = [true, false] }}
stop_loss = {{ type = "float", low = 0.02, high = 0.10, log = true, when = {{ use_stop_loss = true }} }}
[cv]
n_splits = 3
[objective]
name = "composite_rank_excess"
min_trades = 1
[sampler]
name = "random"
seed = 5
[pruner]
name = "none"
[run]
n_trials = {n}
storage = "postgresql://alice:s3cret-pw@db.example.org:5432/studies"
"""


def test_a_study_shows_no_password_nor_machine_folder_in_the_dashboard(synth_db, tmp_path):
    """The study record is what optuna-dashboard lists for every study, to whoever opens it. It held the spec's
    text verbatim ([run].storage with its password) and the spec's path as given (/home/<user>/...)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = parse_spec(_SPEC.format(name="secret", n=1), path="/home/alice/research/specs/secret.toml")
    run_study(spec, synth_db, url)  # the explicit storage wins over the spec's
    status, body = _get(dashboard.wsgi(make_storage(url, heartbeat=False)), "/api/studies")
    assert status.startswith("200")
    (shown,) = json.loads(body)["study_summaries"]
    attrs = _attrs(shown)
    assert b"s3cret-pw" not in body and b"/home/alice" not in body  # before: both shown
    assert 'storage = "postgresql://alice:***@db.example.org:5432/studies"' in attrs["spec_text"]
    assert attrs["spec_path"] == "secret.toml"
    stored = read_study(optuna.load_study(study_name="secret", storage=url))
    assert stored.spec_hash == spec.spec_hash and stored.spec().spec_hash == spec.spec_hash  # [run] is not hashed
    run_study(spec, synth_db, url, n_trials=2)  # the study resumes from the stored (redacted) text
    assert len(optuna.load_study(study_name="secret", storage=url).trials) == 2


def test_the_dashboard_shows_a_trials_span_reserve_and_fingerprint(synth_db, tmp_path):
    """optuna-dashboard 0.21 shows the first 1,024 characters of a JSON attribute (``MAX_ATTR_LENGTH``); a trial's
    ``config`` is ~1,350 (44 engine parameters first): its span, reserve start, regime and data fingerprint, which
    say what data the trial was scored on, were cut off there. They now come before the parameters."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_study(parse_spec(_SPEC.format(name="cfg", n=1)), synth_db, url)
    study = optuna.load_study(study_name="cfg", storage=url)
    (t,) = study.get_trials(deepcopy=False)
    shown = _attrs(_dashboard_trials(url, study)[0])["config"]
    stored = t.user_attrs["config"]
    assert len(json.dumps(stored)) > 1024 and len(shown) == 1024  # the dashboard cuts it
    for k in ("span", "reserve_start", "regime", "min_periods", "data_fingerprint", "key"):
        assert f'"{k}": ' + json.dumps(stored[k]) in shown, k  # before: "span" etc. past character 1,024
    assert shown.index('"params"') > shown.index('"data_fingerprint"')


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")
def test_a_running_trial_left_by_a_killed_process_is_explained_before_the_next_run(tmp_path, monkeypatch):
    """Between a kill (``--jobs``, ``study worker``) and the next run, the dashboard and ``study show --trial N``
    showed a RUNNING trial (no parameters for a ``--jobs`` one) and nothing else; a reader cannot write to the
    storage, but ``study show`` can tell from its heartbeat that nobody runs it any more."""
    monkeypatch.delenv("ACCUMOPT_HEARTBEAT_GRACE", raising=False)  # the default 15 s
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = make_storage(url)
    study = optuna.create_study(study_name="k", storage=storage)
    study.ask()
    study.ask()
    reader = make_storage(url, heartbeat=False, read_only=True)
    assert trial_detail(reader, "k", 0)["lost"] is None  # beaten just now: maybe a live worker's
    age_heartbeats(storage, 40)
    study.ask()  # a live one, just started
    d = trial_detail(reader, "k", 0)
    assert d["state"] == "RUNNING" and d["lost"].startswith("RUNNING with no heartbeat for 4")  # before: None
    assert "(grace 15 s)" in d["lost"] and "killed" in d["lost"]
    assert trial_detail(reader, "k", 2)["lost"] is None
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.RUNNING] * 3  # the reader wrote nothing


def test_study_run_prints_its_storage_without_the_password(capsys):
    """`study run --format json` (and its table) printed the storage URL verbatim, password included, into a
    terminal, a cron log or a CI transcript (found by explore19; fails before: 's3cret-pw' in the output)."""
    from types import SimpleNamespace

    from optimizer.cli.study import _print_run

    res = SimpleNamespace(study=None, study_name="s", storage="postgresql://alice:s3cret-pw@db.example.org/studies",
                          counts={"complete": 1}, best_value=0.5, best_params={}, seconds=1.0, interrupted=False,
                          first_failure=None, warnings=[])
    for fmt in ("json", "table"):
        _print_run(res, fmt)
        out = capsys.readouterr().out
        assert "s3cret-pw" not in out and "alice:***@" in out
    res.storage = "sqlite:///tmp/x.db"
    _print_run(res, "json")
    assert json.loads(capsys.readouterr().out)["storage"] == "sqlite:///tmp/x.db"
