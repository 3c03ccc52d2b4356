"""Issue 10 point 6 and issue 12 point 6: one output root.

Every command takes ``--db``, ``--storage`` and ``--out`` (one it does not use is refused, never ignored); every file
is written under the output root in a per-study / per-run folder named through ``optimizer.paths.safe_name``, so a
symbol or study name like ``../../../PWN`` never writes outside it; a command that only reads creates no store and
no storage file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click
import optuna
import pytest

from _cli_helpers import cli, ok, one_line_error
from optimizer.cli import main
from optimizer.paths import output_root, resolve_db, resolve_storage, run_label, safe_name, under
from optimizer.validate.walkforward import walkforward_dir

optuna.logging.set_verbosity(optuna.logging.WARNING)

ROOT = Path(__file__).resolve().parents[1]
EVIL = "../../../PWN"






def _walk(cmd: click.Command, path=()):
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, (*path, name))
    else:
        yield " ".join(path), cmd


LEAVES = dict(_walk(main))


def _files(d: Path) -> set[Path]:
    return {p for p in d.rglob("*") if p.is_file()}


@pytest.fixture
def jail(tmp_path, monkeypatch):
    """cwd = <tmp>/a/b/c (three levels, so ../../../ stays inside tmp): everything outside the output root is
    watched."""
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return tmp_path


# ------------------------------------------------------------------------------------------------ the helpers

def test_safe_name_keeps_good_names_and_defuses_the_rest():
    for good in ("AAPL", "BRK.B", "demo", "phase_b_fine", "2024-06-28", "tier1+3", "demo-wf00-2023-01-03_2023-06-30"):
        assert safe_name(good) == good
    seen = set()
    for bad in (EVIL, "", ".", "..", "a/b", "a\\b", "a\x00b", "\n", "/etc/passwd", ".hidden", "-rf", "a b", "é" * 200):
        s = safe_name(bad)
        assert s not in (".", "..") and "/" not in s and "\\" not in s and "\x00" not in s and s, (bad, s)
        assert not s.startswith((".", "-")) and len(s) <= 96 + 9
        seen.add(s)
    assert len(seen) == 13  # different names never share a file
    assert safe_name("a/b") != safe_name("a_b")


def test_under_never_leaves_the_root(tmp_path):
    assert under(tmp_path, "plots", "SPY_layered", suffix=".html") == tmp_path / "plots" / "SPY_layered.html"
    for evil in (EVIL, "..", "/tmp/x"):
        p = under(tmp_path, "reports", evil, suffix=".html")
        assert p.resolve().is_relative_to(tmp_path.resolve()) and p.parent == tmp_path / "reports"
    assert run_label("SPY", "weekly", None, "") == "SPY_weekly"


def test_precedence_of_the_store_and_the_storage(tmp_path):
    env = {"ACCUMOPT_DB": "/env/db.duckdb", "ACCUMOPT_STORAGE": "sqlite:////env/s.db", "ACCUMOPT_OUTPUT": "/envout"}
    assert resolve_db("flag.duckdb", "spec.duckdb", env=env) == Path("flag.duckdb")
    assert resolve_db(None, "spec.duckdb", env=env) == Path("/env/db.duckdb")
    assert resolve_db(None, "spec.duckdb", env={}) == Path("spec.duckdb")
    assert resolve_db(None, None, env={}) == Path("output/darkpool.duckdb")
    assert resolve_db(None, None, "root", env={}) == Path("root/darkpool.duckdb")
    assert resolve_db(None, None, env={"ACCUMOPT_OUTPUT": "/envout"}) == Path("/envout/darkpool.duckdb")
    assert resolve_storage("journal:x", "sqlite:///spec.db", env=env) == "journal:x"
    assert resolve_storage(None, "sqlite:///spec.db", env=env) == "sqlite:////env/s.db"
    assert resolve_storage(None, "sqlite:///spec.db", env={}) == "sqlite:///spec.db"
    assert resolve_storage(None, None, "r", env={}) == "sqlite:///r/studies.db"
    assert output_root(None, env={}) == Path("output") and output_root("x", env=env) == Path("x")
    assert walkforward_dir(tmp_path, "demo") != walkforward_dir(tmp_path, "demo", final=True)


# ------------------------------------------------------------------------------------------------ the options

def test_every_command_takes_db_storage_and_out():
    assert len(LEAVES) >= 30
    for name, cmd in LEAVES.items():
        opts = {p.name for p in cmd.params if isinstance(p, click.Option)}
        assert {"db", "storage", "out"} <= opts, (name, sorted(opts))
        for p in cmd.params:
            if p.name in ("db", "storage", "out"):
                assert p.default is None, (name, p.name, p.default)  # the library resolves env > spec > default


def test_an_option_a_command_does_not_use_is_refused():
    one_line_error(cli("study", "list", "--db", "x.duckdb"), "study list does not use --db", "reads no DuckDB store")
    one_line_error(cli("study", "validate", str(ROOT / "studies" / "demo.toml"), "--storage", "sqlite:///x.db"),
                   "study validate does not use --storage")
    one_line_error(cli("ingest", "prices", "x.csv", "--storage", "sqlite:///x.db"), "ingest does not use --storage")
    one_line_error(cli("demo", "--db", "x.duckdb"), "demo does not use --db")
    assert not Path("x.db").exists() and not Path("x.duckdb").exists()


# ------------------------------------------------------------------------------------------------ readers create nothing

def test_commands_that_only_read_create_no_store_and_no_storage(jail, tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"variant": "B"}))
    spec = ROOT / "studies" / "demo.toml"
    reads = [
        ("scan",), ("table",), ("plot", "SPY"), ("chart", "SPY"), ("sandbox", "SPY"), ("data", "info"),
        ("metrics", "build"), ("backtest", "--no-save"), ("backtest",), ("signals", "--params", p),
        ("symbols", "map", "list"), ("symbols", "map", "remove", "AAA"),
        ("study", "list"), ("study", "show", "demo"), ("study", "best", "demo"), ("study", "compare", "demo"),
        ("study", "export", "demo"), ("study", "replay", "demo", "0"), ("study", "delete", "demo", "--yes"),
        ("report", "demo"), ("walkforward", spec), ("study", "run", spec),
    ]
    for args in reads:
        res = cli(*args)
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output, (args, res.output)
        created = {f for f in _files(tmp_path) if f.suffix in (".duckdb", ".db", ".log") or ".db-" in f.name}
        assert created == set(), (args, created)


# ------------------------------------------------------------------------------------------------ names

def test_symbol_names_never_write_outside_the_output_root(store_copy, jail, tmp_path):
    out = Path("out")
    before = _files(tmp_path)
    for args in (("chart", EVIL), ("plot", EVIL), ("sandbox", EVIL), ("chart", "a/../../b"), ("plot", "..")):
        res = cli(*args, "--db", store_copy, "--out", out)
        assert res.exit_code in (0, 2), (args, res.output)
        if res.exit_code == 2:
            one_line_error(res)
    new = _files(tmp_path) - before
    assert all(f.resolve().is_relative_to((Path.cwd() / out).resolve()) for f in new), new
    assert not list(tmp_path.rglob("PWN*")) or all("out" in f.parts for f in tmp_path.rglob("PWN*"))


def test_study_names_never_write_outside_the_output_root(jail, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    st = optuna.storages.RDBStorage(url)
    for name in (EVIL, "/etc/passwd", "..", "ok"):  # names another tool may have stored
        optuna.create_study(study_name=name, storage=st).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    st.engine.dispose()
    out = Path("out")
    before = _files(tmp_path)
    for name in (EVIL, "/etc/passwd", ".."):
        for args in (("study", "compare", name, "ok"), ("study", "export", name), ("report", name)):
            res = cli(*args, "--storage", url, "--out", out)
            assert res.exit_code == 0, (args, res.output)
    new = _files(tmp_path) - before
    root = (Path.cwd() / out).resolve()
    assert new and all(f.resolve().is_relative_to(root) for f in new), sorted(new)
    assert {f.parent.name for f in new} == {"reports", "exports"}
    assert len({f.name for f in new if f.parent.name == "exports"}) == 3  # three names, three files
    assert not (tmp_path / "PWN").exists() and not Path("/PWN_trials.csv").exists()


def test_a_walkforward_of_a_study_named_outside_the_root_is_refused(jail, tmp_path):
    spec = tmp_path / "evil.toml"
    spec.write_text((ROOT / "studies" / "demo.toml").read_text().replace('name = "demo"', f'name = "{EVIL}"'))
    one_line_error(cli("walkforward", spec, "--db", "x.duckdb"), "[study.name]", EVIL)


# ------------------------------------------------------------------------------------------------ per-run folders

def test_each_run_writes_its_own_folder_under_the_root(store_copy, jail, tmp_path):
    out = Path("out")
    runs = [("chart", "SPY"), ("chart", "SPY", "--start", "2024-03-01"), ("chart", "SPY", "--timeframe", "weekly"),
            ("plot", "SPY"), ("plot", "SPY", "--dates", "2024-02-01", "2024-04-30"), ("sandbox", "SPY"),
            ("sandbox", "SPY", "--buy", "65"), ("table",), ("table", "--style", "analysis")]
    written = []
    for args in runs:
        res = cli(*args, "--db", store_copy, "--out", out, "--format", "json") if args[0] == "table" else \
            cli(*args, "--db", store_copy, "--out", out)
        assert res.exit_code == 0, (args, res.output)
        written.append(sorted(f for f in _files(Path.cwd() / out) if f.suffix == ".html"))
    for a, b in zip(written, written[1:]):
        assert set(b) > set(a), "a run overwrote an earlier run's file instead of writing its own"
    assert all(f.resolve().is_relative_to((Path.cwd() / out).resolve()) for f in written[-1])
    # the env variable is the root when --out is not given
    res = cli("chart", "SPY", "--db", store_copy, env={"ACCUMOPT_OUTPUT": str(tmp_path / "envroot")})
    assert res.exit_code == 0 and res.stdout.startswith(str(tmp_path / "envroot" / "charts"))


@pytest.fixture
def store_copy(synth_db, tmp_path) -> Path:
    p = tmp_path / "store.duckdb"
    shutil.copy(synth_db, p)
    return p
