"""A study resumed by another accumopt (version or commit) says so: its spec, data and folds match, so it resumes,
but its old and new trials were computed by different code (a leftover noted since stop 33: resuming compared the
spec, the data and the folds, not the code)."""

from __future__ import annotations

import optuna
import pytest

SPEC = {"study": {"name": "code"}, "data": {"universe": "tier1"},
        "space": {"variant": "D", "buy_threshold": {"type": "int", "low": 60, "high": 75, "step": 5},
                  "exit": "fixed_10d"},
        "cv": {"n_splits": 2}, "objective": {"name": "hit_rate", "min_trades": 1},
        "sampler": {"name": "grid"}, "run": {"n_trials": 2}}


def _notes(run) -> list[str]:
    return [w for w in run.warnings if "finished trial(s) of accumopt" in w]


@pytest.fixture()
def stored(synth_db, tmp_path):
    from optimizer import api

    url = f"sqlite:///{tmp_path / 's.db'}"
    run = api.run_study(SPEC, synth_db, url, n_trials=2)
    assert _notes(run) == []  # a new study: nothing to say
    return url


def _set_code(url: str, version: str, commit: str | None) -> None:
    st = optuna.load_study(study_name="code", storage=url)
    st.set_user_attr("accumopt_version", version)
    st.set_user_attr("git_commit", commit)


def test_a_study_resumed_by_other_code_says_so(stored, synth_db):
    from optimizer import api
    from optimizer.study.run import git_commit

    _set_code(stored, "0.0.9", "abc1234")
    with pytest.warns(UserWarning, match="finished trial"):  # the API says a run's warnings as UserWarnings
        run = api.run_study(SPEC, synth_db, stored, n_trials=3)
    assert run.counts["complete"] + run.counts["pruned"] == 3
    now = "accumopt 0.1.0" + (f" (commit {git_commit()})" if git_commit() else "")
    assert _notes(run) == [
        f"study 'code' holds 2 finished trial(s) of accumopt 0.0.9 (commit abc1234); this run's trials are computed by "
        f"{now}: a number the engine computes differently since differs between its old and new trials "
        "(`backtest --params` of an old trial then says DIFFERENT); to compare like with like, start a new study "
        "(--name NEW)"]
    # a complete study reported again adds no trial: nothing mixed, nothing said
    assert _notes(api.run_study(SPEC, synth_db, stored, n_trials=3)) == []


def test_the_same_code_or_an_unknown_commit_of_the_same_version_says_nothing(stored, synth_db):
    from optimizer import api

    _set_code(stored, "0.1.0", None)  # e.g. made from a release, resumed from a checkout of the same version
    assert _notes(api.run_study(SPEC, synth_db, stored, n_trials=3)) == []


def test_the_accumopt_process_sets_its_collector_thresholds_and_an_importer_keeps_its_own(tmp_path):
    """tspeed19 measured Python's cyclic collector at 0.40 of 2.2 CPU s of a 20-trial `study run` (default
    threshold 700) and 0.17 at 10,000, the trials identical: the script's entry sets it; importing the CLI or
    running it in-process (CliRunner, a notebook) does not touch the caller's."""
    import gc
    import subprocess
    import sys

    from optimizer.cli import GC_THRESHOLD

    before = gc.get_threshold()
    import optimizer.cli  # noqa: F401

    assert gc.get_threshold() == before
    code = ("import gc, sys\nsys.argv = ['accumopt', '--version']\nfrom optimizer.cli import entry\ntry:\n    entry()\n"
            "except SystemExit:\n    pass\nprint(gc.get_threshold())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == str(GC_THRESHOLD) and GC_THRESHOLD[0] > 700
    script = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print([e.value for e in "
                             "m.entry_points(group='console_scripts') if e.name == 'accumopt'])"],
                            capture_output=True, text=True, check=True).stdout
    assert script.strip() == "['optimizer.cli:entry']"


def test_scans_db_help_states_its_own_precedence():
    """explore22: every command's --db help said 'this flag > env ACCUMOPT_DB > the spec's [data].database', also
    scan's, whose store comes from SCANNER_DB_PATH first (scan's description said so, its --db help did not)."""
    from click.testing import CliRunner

    from optimizer.cli import main

    def db_help(*cmd: str) -> str:
        out = CliRunner().invoke(main, [*cmd, "--help"], terminal_width=200).output
        return " ".join(out.split("--db FILE", 1)[1].split("--", 1)[0].split())

    assert db_help("scan") == ("DuckDB store. Precedence: this flag > env SCANNER_DB_PATH (the pipeline's own "
                               "variable) > env ACCUMOPT_DB > <out>/darkpool.duckdb.")
    assert "(a command that reads a spec) the spec's [data].database" in db_help("ingest")


def test_backtests_help_writes_a_boolean_default_as_the_flag_takes_it():
    """explore22: `--regime-sizing` said "Default: False" where the flag takes true / false (README: `false`)."""
    from click.testing import CliRunner

    from optimizer.cli import main

    out = " ".join(CliRunner().invoke(main, ["backtest", "--help"], terminal_width=200).output.split())
    part = out.split("--regime-sizing BOOLEAN", 1)[1].split(" --", 1)[0]
    assert part.endswith("Default: false.") and "False" not in part
