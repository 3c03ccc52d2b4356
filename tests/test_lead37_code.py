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
