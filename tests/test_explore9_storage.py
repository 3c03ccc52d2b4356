"""Storages and round trips, as a researcher with several machines (audit explore9).

Oracles: the command's exit code and its one line (the rule: bad input is one line naming the parameter, exit 2,
no traceback, nothing created), Optuna's own storages and optuna-dashboard's own WSGI application."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.errors import DataError
from optimizer.study.storage import make_storage


def _run(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACCUMOPT_STORAGE", raising=False)
    optuna_dashboard = pytest.importorskip("optuna_dashboard")

    def serve(*a, **k):  # a storage the command should have refused: fail, never block on a port
        raise AssertionError("dashboard served the storage")

    monkeypatch.setattr(optuna_dashboard, "run_server", serve)
    res = CliRunner().invoke(main, args)
    return res


@pytest.mark.parametrize("url, says", [
    ("mysql://u@localhost/db", r"driver of mysql\+mysqldb is not installed \(No module named 'MySQLdb'\)"),
    ("postgresql+asyncpg://u@localhost/db", r"driver of postgresql\+asyncpg is not installed"),
    ("foo://bar", r"not a storage URL this tool can open; write sqlite:///relative/path"),
    ("sqlite:///", r"names no file"),
    ("journal:", r"names no file"),
    ("sqlite:/rel.db", r"is not an SQLite URL: write sqlite:///relative/path or sqlite:////absolute/path"),
])
@pytest.mark.parametrize("command", [["study", "list"], ["dashboard"]])
def test_a_storage_url_that_cannot_work_is_one_line_and_exit_2(url, says, command, tmp_path, monkeypatch):
    """Before: a URL whose driver is missing (mysql://, postgresql+asyncpg://) was Optuna's ImportError, a
    61-line traceback with exit 1, in every command (list, show, run, worker, walkforward, dashboard);
    ``sqlite:///`` (SQLAlchemy's private in-memory database per connection) made `dashboard` an AssertionError
    traceback and `study run` 'no such table: studies'; ``journal:`` a FileNotFoundError of ''."""
    import re

    res = _run([*command, "--storage", url], tmp_path, monkeypatch)
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    line = res.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert line.startswith("error: ") and url in line and re.search(says, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created


def test_make_storage_checks_the_url_before_opening_anything(tmp_path):
    for url in ("mysql://u@h/db", "sqlite:///", "journal:", "sqlite://x.db"):
        with pytest.raises(DataError, match="^study storage "):
            make_storage(url)


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_storage_is_refused_by_a_command_that_reads(url, tmp_path, monkeypatch):
    """Before: `study list --storage sqlite:///:memory:` listed no study and `dashboard` served an empty
    in-memory storage on a port, as if the URL named a storage that held nothing yet."""
    for command in (["study", "list"], ["study", "show", "s1"], ["dashboard"]):
        res = _run([*command, "--storage", url], tmp_path, monkeypatch)
        assert res.exit_code == 2, (command, res.exit_code, res.output)
        assert res.output.strip() == (f"error: study storage {url} is an in-process storage: it holds only the "
                                      "studies of the process that runs them, so there is nothing to read here; "
                                      "pass a file or server storage (sqlite:///PATH, journal:PATH, "
                                      "postgresql://...)"), res.output
    import optuna
    assert isinstance(make_storage(url), optuna.storages.InMemoryStorage)  # a run still gets one


def test_a_journal_study_held_by_a_killed_workers_running_trials_says_so(synth_db, tmp_path):
    """A journal file keeps no heartbeat: a `study run --jobs 2` (or `study worker`) on it SIGKILLed leaves its
    running trials RUNNING for good, and they hold their places in the trial budget, so every resumed run stopped
    short of n_trials (the audit: 28 of 30 finished after one kill, `running 2` in the report) without a word.
    The run now says why it stopped short. Stand-in for the killed worker: a trial asked and never told."""
    from test_study import spec_text

    from optimizer.study.data import load_study_data, prepare_data
    from optimizer.study.run import run_study
    from optimizer.study.spec import parse_spec

    import optuna

    spec = parse_spec(spec_text("jk", n_trials=3, sampler_opts="n_startup_trials = 2").replace(
        'universe = "tier1+3"', 'universe = "tier1"'))
    panel, reserve = load_study_data(spec, synth_db)
    data = prepare_data(spec, panel, 0, reserve)
    url = f"journal:{tmp_path / 'j.log'}"
    first = run_study(spec, synth_db, url, n_trials=2, data=data)
    assert first.counts["complete"] + first.counts["pruned"] == 2 and first.warnings == ()
    optuna.load_study(study_name="jk", storage=make_storage(url)).ask()  # the killed worker's trial: RUNNING
    res = run_study(spec, synth_db, url, data=data)
    assert (res.counts["complete"] + res.counts["pruned"], res.counts["running"]) == (2, 1)  # held, as before
    assert res.warnings == (
        f"1 trial(s) still RUNNING hold 1 of the 3 trials, so this run stopped at 2 finished: {url} keeps no "
        "heartbeat, so a trial left by a killed process is never failed and retried (one a live worker runs "
        "finishes there). Studies that must survive a kill: SQLite or PostgreSQL",)


@pytest.mark.parametrize("url, says", [
    ("postgresql://alice:s3cret@127.0.0.1:1/db", "failed: OperationalError: connection to server at"),
    ("mysql://alice:s3cret@localhost/db", "the database driver of mysql+mysqldb is not installed"),
])
def test_a_refused_storage_url_never_prints_its_password(url, says, tmp_path, monkeypatch):
    """Before: `study list --storage postgresql://alice:s3cret@host/db` on a server that refused the connection
    printed the URL whole, password included, on the error line (a terminal, a CI log). Loopback port 1: no
    network, refused at once."""
    from optimizer.study.storage import shown_url

    res = _run(["study", "list", "--storage", url], tmp_path, monkeypatch)
    assert res.exit_code == 2, res.output
    assert "s3cret" not in res.output and f"study storage {url.split(':s3cret')[0]}:***@" in res.output, res.output
    assert says in res.output, res.output
    assert shown_url("postgresql+psycopg2://u:p@w@h:5432/db") == "postgresql+psycopg2://u:***@h:5432/db"
    assert [shown_url(u) for u in ("postgresql://u@h/db", "sqlite:////tmp/a:b@c.db", "journal:/x:y@z")] == [
        "postgresql://u@h/db", "sqlite:////tmp/a:b@c.db", "journal:/x:y@z"]


@pytest.mark.parametrize("folder, in_url", [("a#b", "a#b"), ("p%41", "p%2541"), ("q?m", "q%3Fm"), ("s p", "s p")])
def test_a_storage_in_a_folder_named_with_url_characters_is_one_file_for_every_command(folder, in_url, tmp_path,
                                                                                        monkeypatch):
    """The SQLite URL names the file SQLAlchemy (so Optuna and optuna-dashboard) opens: its path percent-decoded,
    up to a '?'. Before: a reader opened the file through an SQLite ``file:`` URI built from the raw path, where '#'
    ends the path, so `study list` on a storage in folder 'a#b' said 'holds no study yet' and CREATED an empty file
    'a' beside it; a writer checked and created the raw path ('p%41') while SQLAlchemy opened the decoded one
    ('pA'): 'unable to open database file'."""
    import optuna

    (tmp_path / folder).mkdir()
    url = f"sqlite:///{tmp_path}/{in_url}/st.db"
    optuna.create_study(study_name="x", storage=make_storage(url, heartbeat=False)).optimize(
        lambda t: t.suggest_float("a", 0, 1), n_trials=2)
    assert (tmp_path / folder / "st.db").is_file()  # where the URL says
    assert optuna.load_study(study_name="x", storage=url).trials[1].state.name == "COMPLETE"  # Optuna's own reading
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    res = _run(["study", "list", "--storage", url], tmp_path, monkeypatch)
    assert res.exit_code == 0, res.output
    assert any(line.split()[:2] == ["x", "2"] for line in res.output.splitlines()), res.output
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # the reader created nothing


def test_a_journal_path_is_the_rest_of_its_url(tmp_path):
    """``journal:PATH`` is no URL: its writer opened 'j?x.log' while the readers' check looked for 'j' (split at
    '?'), refusing the file the run had just written."""
    from optimizer.paths import storage_path

    assert storage_path(f"journal:{tmp_path}/j?x.log") == tmp_path / "j?x.log"
    assert storage_path("sqlite:///a%2541/b%20c.db?mode=ro") == __import__("pathlib").Path("a%41/b c.db")


@pytest.mark.parametrize("url", ["sqlite:///~/studies.db", "journal:~/studies.log"])
def test_a_tilde_in_a_storage_url_is_refused_not_made_a_folder(url, tmp_path, monkeypatch):
    """Neither SQLAlchemy nor Optuna's journal expands '~': `study run --storage sqlite:///~/studies.db` made a
    folder named '~' in the working directory and ran the study there (the next `rm -rf ~` of that folder is a
    disaster). Refused with the absolute path to write instead."""
    import os

    for command in (["study", "list"], ["dashboard"]):
        res = _run([*command, "--storage", url], tmp_path, monkeypatch)
        assert res.exit_code == 2, res.output
        kind = url.split("~")[0]
        assert res.output.strip() == (f"error: study storage {url}: '~' is not expanded in a storage URL (it would "
                                      "make a folder named '~' here); write the absolute path: "
                                      f"{kind}{os.path.expanduser(url[len(kind):])}"), res.output
    with pytest.raises(DataError, match="'~' is not expanded"):
        make_storage(url)  # the writer (study run, worker, walkforward)
    assert list(tmp_path.iterdir()) == []


def test_a_study_run_on_an_in_memory_storage_points_at_no_dashboard(synth_db, tmp_path, monkeypatch):
    """`study run --storage sqlite:///:memory:` ended with 'dashboard: accumopt dashboard --storage
    sqlite:///:memory:', a command with nothing to show (the storage is gone with the run; now refused)."""
    from test_study import spec_text

    spec = tmp_path / "m.toml"
    spec.write_text(spec_text("mem", n_trials=2, sampler_opts="n_startup_trials = 2"))
    res = _run(["study", "run", str(spec), "--db", str(synth_db), "--storage", "sqlite:///:memory:",
                "--out", str(tmp_path / "out")], tmp_path, monkeypatch)
    assert res.exit_code == 0, res.output
    assert "complete" in res.output and "dashboard" not in res.output, res.output


def test_a_study_without_its_record_is_recorded_when_empty_and_refused_when_it_holds_trials(synth_db, tmp_path):
    """A study of the spec's name that holds no accumopt record (no spec hash, fingerprint, coverage): left by a
    run killed between Optuna's create_study and the record's write, or made by another tool. Before: it was
    resumed as it was, its trials ran, its record was never written, and a CHANGED spec (another cost) then resumed
    it too, mixing trials of two specs, since there was no hash to compare (audit: slippage 5 -> 7 accepted)."""
    import optuna
    from test_study import spec_text

    from optimizer.errors import SpecError
    from optimizer.study.data import load_study_data, prepare_data
    from optimizer.study.records import read_study
    from optimizer.study.run import run_study
    from optimizer.study.spec import parse_spec

    text = spec_text("half", n_trials=2, sampler_opts="n_startup_trials = 2").replace(
        'universe = "tier1+3"', 'universe = "tier1"')
    spec = parse_spec(text)
    panel, reserve = load_study_data(spec, synth_db)
    data = prepare_data(spec, panel, 0, reserve)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    optuna.create_study(study_name="half", storage=url, direction="maximize")  # the killed creation
    res = run_study(spec, synth_db, url, data=data)
    rec = read_study(res.study)
    assert (rec.spec_hash, rec.data_fingerprint) == (spec.spec_hash, data.fingerprint)  # recorded now
    other = parse_spec(text.replace("n_trials = 2", "n_trials = 2\n").replace(
        "[objective]", "[data.costs]\nslippage_bps = 7.0\n[objective]"))
    with pytest.raises(SpecError, match=r"slippage_bps"):
        run_study(other, synth_db, url, data=data)  # refused, naming the change
    # a record-less study that holds trials (another tool's) is never resumed
    foreign = optuna.create_study(study_name="half", storage=f"sqlite:///{tmp_path / 'f.db'}", direction="maximize")
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(SpecError, match=r"study 'half' holds 1 trial\(s\) but no record of the spec"):
        run_study(spec, synth_db, f"sqlite:///{tmp_path / 'f.db'}", data=data)


def test_a_record_less_study_recorded_by_another_worker_during_the_warm_up_is_checked_not_overwritten(
        synth_db, tmp_path):
    """A record-less empty study (its creator killed, or still between create_study and its record's write): the
    run that finds it warms the kernels first (``creating``, seconds), and another worker may write its record
    meanwhile. Before: the run then overwrote that record with its own, so two workers of different specs both ran
    in one study. Now the record is read again after the warm-up, and a different spec is refused by name."""
    import optuna
    from test_study import spec_text

    from optimizer.errors import SpecError
    from optimizer.study.data import load_study_data, prepare_data
    from optimizer.study.records import read_study
    from optimizer.study.run import open_study
    from optimizer.study.spec import parse_spec

    text = spec_text("half", n_trials=2, sampler_opts="n_startup_trials = 2").replace(
        'universe = "tier1+3"', 'universe = "tier1"')
    spec = parse_spec(text)
    other = parse_spec(text.replace("[objective]", "[data.costs]\nslippage_bps = 7.0\n[objective]"))
    panel, reserve = load_study_data(spec, synth_db)
    data = prepare_data(spec, panel, 0, reserve)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna.create_study(study_name="half", storage=url, direction="maximize")  # made, not yet recorded
    storage = make_storage(url)

    def warm_up() -> dict:  # meanwhile, the other worker (the other spec) records the study
        open_study(other, make_storage(url), data)
        return {}

    with pytest.raises(SpecError, match=r"slippage_bps"):
        open_study(spec, storage, data, creating=warm_up)
    st = optuna.load_study(study_name="half", storage=url)
    assert read_study(st).spec_hash == other.spec_hash  # the other worker's record stands
