"""Issue 12 point 5: specs that used to validate and then break at run time, study storages that are not what they
should be, and a run in which every trial fails: each is one line on stderr naming the key (or file) and the rule,
exit code 2, no traceback. Read-only commands open the storage read-only (no WAL pragma, nothing created)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import optuna
import pytest

from _cli_helpers import cli, ok, one_line_error

optuna.logging.set_verbosity(optuna.logging.WARNING)







@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)


# ------------------------------------------------------------------------------------------------ specs

_SPACE = '[space]\nvariant = "B"\n'
BAD_SPECS = {
    "hyperband_min_resource_0": (_SPACE + '[pruner]\nname = "hyperband"\nmin_resource = 0\n',
                                 ["[pruner]", "fail when used", "ZeroDivisionError"]),
    "n_startup_trials_ten": (_SPACE + '[sampler]\nname = "tpe"\nn_startup_trials = "ten"\n',
                             ["[sampler.n_startup_trials] must be an integer", "'ten'"]),
    "pruner_option_type": (_SPACE + '[pruner]\nname = "median"\nn_warmup_steps = 1.5\n',
                           ["[pruner.n_warmup_steps] must be an integer", "1.5"]),
    "sampler_callable_option": (_SPACE + '[sampler]\nname = "tpe"\ngamma = 3\n',
                                ["[sampler.gamma] must be a Python object", "which a spec cannot hold"]),
    "commission_inf": (_SPACE + "[data.costs]\ncommission_bps = inf\n",
                       ["[data.costs.commission_bps] must be a finite number >= 0, got commission_bps=inf"]),
    "commission_nan": (_SPACE + "[data.costs]\ncommission_bps = nan\n", ["[data.costs.commission_bps]", "nan"]),
    "slippage_neg_inf": (_SPACE + "[data.costs]\nslippage_bps = -inf\n", ["[data.costs.slippage_bps]", "-inf"]),
    "all_weights_zero": ('[space]\nw_short = 0\nw_lit = 0\nw_price = 0\n',
                         ["[space.w_short] the three weights can all be 0 at once"]),
    "weights_ranges_from_zero": ('[space]\nw_short = { type = "float", low = 0.0, high = 0.5, step = 0.1 }\n'
                                 'w_lit = 0\nw_price = { type = "int", low = 0, high = 2 }\n',
                                 ["the three weights can all be 0"]),
    "intensity_crossed": ('[space]\nintensity_lo = 1.5\n', ["[space.intensity_lo]", "<= every intensity_hi"]),
    "timeout_nan": (_SPACE + "[run]\ntimeout = nan\n", ["[run.timeout] must be > 0 seconds (a finite number)"]),
    "timeout_inf": (_SPACE + "[run]\ntimeout = inf\n", ["[run.timeout]", "inf"]),
    "when_maybe": ('[space]\nuse_stop_loss = { type = "categorical", choices = [false, true] }\n'
                   'stop_loss = { type = "float", low = 0.02, high = 0.1, when = { use_stop_loss = "maybe" } }\n',
                   ["[space.stop_loss.when.use_stop_loss] must be among the values use_stop_loss can take",
                    "false, true", "'maybe'"]),
    "when_out_of_range": ('[space]\nbuy_threshold = { type = "int", low = 60, high = 80 }\n'
                          'stop_loss = { type = "float", low = 0.02, high = 0.1, when = { buy_threshold = 95 } }\n',
                          ["[space.stop_loss.when.buy_threshold] must be a number in [60, 80]"]),
    "rolling_max_below_min": (_SPACE + '[cv]\nmode = "rolling"\nmin_train_size = 50\nmax_train_size = 40\n',
                              ["[cv.", "rolling"]),
    "max_below_min": (_SPACE + "[cv]\nmin_train_size = 50\nmax_train_size = 40\n",
                      ["[cv.max_train_size] must be >= min_train_size=50, got max_train_size=40"]),
    "name_empty": ('[study]\nname = ""\n' + _SPACE, ["[study.name] must be 1-100 letters", "got ''"]),
    "name_nul": ('[study]\nname = "a\\u0000b"\n' + _SPACE, ["[study.name] must be", "\\x00"]),
    "name_traversal": ('[study]\nname = "../../etc/passwd"\n' + _SPACE, ["[study.name]", "'../../etc/passwd'"]),
    "run_name_traversal": (_SPACE + '[run]\nstudy_name = "../x"\n', ["[run.study_name]", "'../x'"]),
    "seed_name_slash": (_SPACE + '[seed_from]\nstudy = "a/b"\n', ["[seed_from.study]", "'a/b'"]),
    "deep_array": ("x = " + "[" * 5000 + "]" * 5000 + "\n", ["[toml] nests arrays or tables too deeply"]),
    "objective_options_bogus": (_SPACE + "[objective]\noptions = { totally_bogus = 123 }\n",
                                ["[objective.options.totally_bogus] is not an option of objective 'composite_rank'"]),
    # sessions: train 6 minus purge 20 leaves -14 sessions to train on; only `accumopt walkforward` refused it
    "wf_train_shorter_than_purge": (_SPACE + '[walkforward]\nunit = "sessions"\ntrain = 6\npurge = 20\n',
                                    ["[walkforward.train] must leave at least 2 sessions after the purge",
                                     "train=6 sessions minus purge=20 sessions leaves -14 sessions after the purge"]),
    # the same with the purge not given: the run's default, the longest hold the space allows (20 here)
    "wf_train_shorter_than_default_purge": (_SPACE + '[walkforward]\nunit = "sessions"\ntrain = 21\n',
                                            ["[walkforward.train] must leave at least 2 sessions after the purge",
                                             "train=21 sessions minus purge=20 sessions leaves 1 sessions"]),
    # a cost in both places: the trials ran with the [space] values, the [data.costs] one was silently ignored
    "cost_in_data_costs_and_space": (_SPACE + 'slippage_bps = { type = "float", low = 0.0, high = 10.0 }\n'
                                     "[data.costs]\nslippage_bps = 3.0\n",
                                     ["[data.costs.slippage_bps] is also declared in [space.slippage_bps]"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_a_spec_that_would_break_at_run_time_is_refused_at_validation(case, tmp_path):
    text, fragments = BAD_SPECS[case]
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    line = one_line_error(cli("study", "validate", p), *fragments)
    assert str(p) in line or "[toml]" in line


def test_a_utf16_or_latin1_spec_is_refused_naming_the_file(tmp_path):
    p = tmp_path / "utf16.toml"
    p.write_text('[study]\nname = "x"\n' + _SPACE, encoding="utf-16")
    one_line_error(cli("study", "validate", p), str(p), "UTF-16", "UTF-8")
    q = tmp_path / "latin1.toml"
    q.write_bytes('[study]\ndescription = "café"\n'.encode("latin-1") + _SPACE.encode())
    one_line_error(cli("study", "validate", q), str(q), "is not UTF-8 text")
    d = tmp_path / "dir.toml"
    d.mkdir()
    one_line_error(cli("study", "validate", d), "is a directory")


def test_the_shipped_specs_still_validate():
    for p in sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.toml")):
        res = cli("study", "validate", p)
        assert res.exit_code == 0, res.output


# ------------------------------------------------------------------------------------------------ every trial fails

FAILING = '''
from objectives import Objective


class Boom(Objective):
    name = "boom"

    def fold_values(self, m):
        raise RuntimeError("boom: this objective always fails")
'''


def test_a_run_in_which_every_trial_fails_exits_non_zero_with_the_first_reason(synth_db, tmp_path, monkeypatch):
    (tmp_path / "boom_objective.py").write_text(textwrap.dedent(FAILING))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "boom.toml"
    spec.write_text('[study]\nname = "boom"\n[space]\nvariant = { type = "categorical", choices = ["B", "C"] }\n'
                    '[objective]\nname = "boom_objective:Boom"\nmin_trades = 0\n[cv]\nn_splits = 2\n'
                    '[pruner]\nname = "none"\n[run]\nn_trials = 20\n')
    url = f"sqlite:///{tmp_path / 's.db'}"
    one_line_error(cli("study", "run", spec, "--db", synth_db, "--storage", url),
                   "study 'boom': every trial failed", "first failure, trial 0: RuntimeError: boom: this objective")
    st = optuna.load_study(study_name="boom", storage=url)
    assert len(st.trials) == 5  # stopped after 5 failures in a row, not 20
    assert all(t.state == optuna.trial.TrialState.FAIL for t in st.trials)
    assert st.trials[0].user_attrs["metrics"]["fail_reason"].startswith("RuntimeError: boom")


# ------------------------------------------------------------------------------------------------ storages

@pytest.fixture(scope="module")
def good_storage(tmp_path_factory) -> Path:
    """An Optuna SQLite storage in rollback-journal mode (not WAL), with one study."""
    p = tmp_path_factory.mktemp("storage") / "good.db"
    st = optuna.storages.RDBStorage(f"sqlite:///{p}")
    optuna.create_study(study_name="s", storage=st).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    st.engine.dispose()
    with sqlite3.connect(p) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    return p


def _journal_mode(p: Path) -> str:
    with sqlite3.connect(p) as c:
        return c.execute("PRAGMA journal_mode").fetchone()[0]


def test_read_only_commands_open_the_storage_read_only(good_storage, tmp_path):
    p = tmp_path / "copy.db"
    shutil.copy(good_storage, p)
    url = f"sqlite:///{p}"
    for args in (("study", "list"), ("study", "show", "s"), ("study", "best", "s"), ("study", "compare", "s"),
                 ("study", "export", "s")):
        res = cli(*args, "--storage", url, "--out", tmp_path / "out")
        assert res.exit_code == 0, res.output
    assert _journal_mode(p) == "delete"  # no WAL pragma when only reading
    assert not (tmp_path / "copy.db-wal").exists()
    assert '"name":"s"' in ok(cli("study", "list", "--storage", url, "--format", "json")).stdout


def _bad_storages(good: Path, d: Path) -> dict[str, Path]:
    out = {}
    out["corrupt"] = d / "corrupt.db"
    out["corrupt"].write_bytes(b"\x00garbage" * 700)
    out["truncated"] = d / "truncated.db"
    data = good.read_bytes()
    out["truncated"].write_bytes(data[: len(data) // 3])
    out["other_schema"] = d / "other.db"
    with sqlite3.connect(out["other_schema"]) as c:
        c.execute("CREATE TABLE prices (symbol TEXT, close REAL)")
    out["empty_file"] = d / "empty.db"
    out["empty_file"].write_bytes(b"")
    return out


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "other_schema", "empty_file"])
@pytest.mark.parametrize("command", ["list", "show", "best", "run"])
def test_a_broken_storage_file_is_one_line_and_exit_2(kind, command, good_storage, tmp_path, synth_db):
    p = _bad_storages(good_storage, tmp_path)[kind]
    before = p.read_bytes()
    url = f"sqlite:///{p}"
    args = {"list": ("study", "list"), "show": ("study", "show", "s"), "best": ("study", "best", "s"),
            "run": ("study", "run", Path(__file__).resolve().parents[1] / "studies" / "demo.toml", "--db", synth_db,
                    "--n-trials", "1")}[command]
    if kind == "empty_file" and command == "run":  # an empty file is a new database to a writer: it works
        return
    line = one_line_error(cli(*args, "--storage", url), str(p))
    assert any(w in line for w in ("corrupt or truncated", "not an SQLite database", "not an Optuna study storage"))
    assert p.read_bytes() == before  # nothing was written into a file that is not ours


def test_a_read_only_storage_file_refuses_writers_but_serves_readers(good_storage, tmp_path, synth_db):
    p = tmp_path / "ro.db"
    shutil.copy(good_storage, p)
    if os.geteuid() == 0:  # root writes through file modes: make the file immutable instead
        if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr: a read-only file cannot be simulated")
    else:
        p.chmod(0o444)
    try:
        url = f"sqlite:///{p}"
        assert '"name":"s"' in cli("study", "list", "--storage", url, "--format", "json").stdout
        one_line_error(cli("study", "run", Path(__file__).resolve().parents[1] / "studies" / "demo.toml", "--db",
                           synth_db, "--storage", url, "--n-trials", "1"), str(p), "is read-only")
        one_line_error(cli("study", "delete", "s", "--yes", "--storage", url), "read-only")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)


def test_a_missing_storage_is_never_created_by_a_reader(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    for args in (("study", "list"), ("study", "show", "s"), ("study", "best", "s"), ("study", "delete", "s", "--yes"),
                 ("report", "s"), ("study", "export", "s"), ("study", "compare", "s")):
        one_line_error(cli(*args, "--storage", url, "--out", tmp_path / "out"), "does not exist")
    assert not (tmp_path / "none.db").exists() and not list(tmp_path.glob("none.db*"))
    journal = f"journal:{tmp_path / 'none.log'}"
    one_line_error(cli("study", "list", "--storage", journal), "does not exist")
    assert not (tmp_path / "none.log").exists()


# ------------------------------------------------------------------------------------------------ run flags

@pytest.mark.parametrize("args, fragment", [
    (("study", "run", "SPEC", "--n-trials", "0"), "--n-trials must be an integer >= 1, got 0"),
    (("study", "run", "SPEC", "--n-trials", "-3"), "--n-trials must be an integer >= 1, got -3"),
    (("study", "worker", "SPEC", "--n-trials", "0"), "--n-trials must be an integer >= 1, got 0"),
    (("study", "run", "SPEC", "--timeout", "0"), "--timeout must be a finite number of seconds > 0, got 0.0"),
    (("study", "run", "SPEC", "--timeout", "-5"), "--timeout must be a finite number of seconds > 0, got -5.0"),
    (("walkforward", "SPEC", "--n-trials", "0"), "--n-trials must be an integer >= 1, got 0"),
])
def test_a_run_flag_out_of_its_domain_is_refused_not_replaced_by_the_spec(args, fragment, tmp_path):
    """``--n-trials 0`` and ``--timeout 0`` used to be read as "not given" (``n_trials or spec.run.n_trials``): the
    study ran the spec's trials (or no time limit) instead; a negative count ran nothing and said nothing."""
    spec = tmp_path / "s.toml"
    spec.write_text('[study]\nname = "s"\n' + _SPACE + "[run]\nn_trials = 2\n", encoding="utf-8")
    args = [spec if a == "SPEC" else a for a in args]
    one_line_error(cli(*args, "--db", tmp_path / "none.duckdb", "--storage", f"sqlite:///{tmp_path / 's.db'}"),
                   fragment)
    assert not (tmp_path / "s.db").exists()


def test_a_stored_spec_with_a_cost_in_both_places_still_reads_back():
    """A study made before the rule keeps opening (its trials ran with the [space] values)."""
    from optimizer.study.spec import parse_spec

    text = BAD_SPECS["cost_in_data_costs_and_space"][0]
    assert parse_spec(text, stored=True).param("slippage_bps").high == 10.0


@pytest.mark.parametrize("text", [b"my notes\nline two\n", b"hello\n", b'{"not": "a journal entry"}\n'])
@pytest.mark.parametrize("command", ["list", "run"])
def test_a_journal_storage_that_is_another_file_is_one_line_and_left_alone(text, command, tmp_path, synth_db):
    """``--storage journal:PATH`` on a file that is not an Optuna journal (a typo'd path to a notes file): one line
    naming the file, and the file unchanged. Before: a JSONDecodeError traceback, or (one line) a storage read as
    holding no study, which ``study run`` then appended its log to."""
    p = tmp_path / "notes.txt"
    p.write_bytes(text)
    args = {"list": ("study", "list"),
            "run": ("study", "run", Path(__file__).resolve().parents[1] / "studies" / "demo.toml", "--db", synth_db,
                    "--n-trials", "1")}[command]
    one_line_error(cli(*args, "--storage", f"journal:{p}"), str(p), "is not an Optuna journal file")
    assert p.read_bytes() == text
