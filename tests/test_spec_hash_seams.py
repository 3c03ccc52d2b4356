"""What a spec's hash covers, at the seams where a stored study or walk-forward is resumed (``StudySpec.spec_hash``,
``StudySpec.matches_stored``; README "Study specs").

The hash covers what changes what a trial computes. It used to cover ``[data].database`` (where the store lives)
and ``[study].name`` too, so a user who moved the store to a new disk and edited ``[data].database`` could not
resume a study (``created from a different spec ... [data.database] 'a' -> 'b'``), a walk-forward re-run after the
move was refused, and a ``walkforward worker`` whose spec named its own machine's store path was refused. The data
a study sees is checked by its fingerprint, which a copy of the store keeps.

Studies and walk-forward runs stored with the LEGACY hash (the one that covered both keys) keep resuming: the
legacy hash is computed here by an independent copy of the old rule (``_legacy_hash``) and written on a study by
hand. Stores: the planted ``synth_db`` (tests/conftest.py) and copies of it at other paths; a changed search-space
bound (a result-relevant key) is still refused, with the same message.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tomllib
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from _cli_helpers import cli, ok, one_line_error
from test_study import spec_text
from test_walkforward_distributed import N, SPEC as WF_SPEC, _copy_storage, _same, _trials_by_window

from optimizer.errors import SpecError
from optimizer.study.run import run_study
from optimizer.study.spec import StudySpec, load_spec, parse_spec
from optimizer.validate import walkforward as wfmod
from optimizer.validate.walkforward import run_walkforward


def _legacy_hash(text: str) -> str:
    """The hash studies stored before this change (an independent copy of the old rule): the spec's TOML without
    [run], [walkforward] and [study].description, [study].name and [data].database included."""
    doc = tomllib.loads(text)
    doc.pop("run", None)
    doc.pop("walkforward", None)
    doc.get("study", {}).pop("description", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _with_db(text: str, db: Path) -> str:
    """``text`` with ``[data].database = db``."""
    assert text.count("[data]\n") == 1
    return text.replace("[data]\n", f'[data]\ndatabase = "{db}"\n')


def _moved(store: Path, tmp_path: Path) -> Path:
    """A copy of ``store`` at another path (the store moved to a new disk): the same data, the same fingerprint."""
    dst = tmp_path / "new_disk" / "store.duckdb"
    dst.parent.mkdir()
    shutil.copy(store, dst)
    return dst


def _copy_storage_to(url: str, dst: Path) -> str:
    """A copy of the SQLite storage at ``url`` at ``dst`` (the pages still in the WAL file too)."""
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as src, closing(sqlite3.connect(dst)) as to:
        src.backup(to)
    return f"sqlite:///{dst}"


def _trials(url: str, name: str) -> list[tuple]:
    st = optuna.load_study(study_name=name, storage=url)
    return [(t.number, t.state.name, t.params, t.values) for t in st.get_trials(deepcopy=False)]


def _set_legacy(url: str, name: str) -> str:
    """Write the legacy hash of the study's stored spec text as its ``spec_hash`` (a study made before the change);
    returns it."""
    st = optuna.load_study(study_name=name, storage=url)
    legacy = _legacy_hash(st.user_attrs["spec_text"])
    st.set_user_attr("spec_hash", legacy)
    return legacy


@pytest.fixture(autouse=True)
def _no_db_env(monkeypatch):
    """The store is the one the spec's [data].database names (a ``--db`` / ``ACCUMOPT_DB`` would override it)."""
    monkeypatch.delenv("ACCUMOPT_DB", raising=False)


STUDY = spec_text("moving", sampler="random", sampler_opts="", n_trials=3)


@pytest.fixture(scope="module")
def first_run(synth_db, tmp_path_factory):
    """The study ``moving`` run once to its 3 trials from ``STUDY`` naming ``synth_db`` by ``[data].database`` (the
    first step of several tests below, run once; each test resumes a copy, ``_first_study``)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('first') / 'studies.db'}"
    return url, run_study(parse_spec(_with_db(STUDY, synth_db)), None, url)


def _first_study(first_run, tmp_path: Path) -> str:
    """A copy of ``first_run``'s storage in ``tmp_path`` (the module's run stays as the other tests expect it)."""
    return _copy_storage_to(first_run[0], tmp_path / "studies.db")


# ------------------------------------------------------------------------------------------------ the hash itself
def test_hash_ignores_database_and_study_name_and_matches_legacy_records():
    base = parse_spec(STUDY)
    assert "[study]" in STUDY and "database" not in STUDY
    other_db = parse_spec(_with_db(STUDY, Path("/mnt/new/store.duckdb")))
    renamed = parse_spec(STUDY.replace('name = "moving"', 'name = "renamed"'))
    unnamed = parse_spec(STUDY.replace('[study]\nname = "moving"\n', ""), path="moving.toml")
    assert base.spec_hash == other_db.spec_hash == renamed.spec_hash == unnamed.spec_hash
    assert other_db.differences(base.source) is None and renamed.differences(base.source) is None
    bound = parse_spec(STUDY.replace("high = 80", "high = 85"))
    assert bound.spec_hash != base.spec_hash

    # matches_stored: the new hash; the legacy hash of a stored text with the same result-relevant part; the
    # legacy hash of this spec's own text (a record without text); nothing else
    legacy = _legacy_hash(base.source)
    assert legacy != base.spec_hash  # [study].name was in the legacy hash
    assert other_db.matches_stored(base.spec_hash) and other_db.matches_stored(legacy, base.source)
    assert base.matches_stored(legacy) and not other_db.matches_stored(legacy)  # no text: only its own legacy hash
    assert not bound.matches_stored(legacy, base.source) and not bound.matches_stored(base.spec_hash, base.source)
    assert not other_db.matches_stored(legacy, bound.source)  # the stored text is not what that hash was made from
    assert not other_db.matches_stored(None, base.source) and not other_db.matches_stored(legacy, "[broken")


# ------------------------------------------------------------------------------------------------ study run
def test_study_resumes_after_the_store_moved_and_data_database_edited(synth_db, first_run, tmp_path):
    """The store moved to a new disk, ``[data].database`` edited: the study resumes (its trials kept, the new ones
    added) instead of 'created from a different spec ... [data.database]'."""
    assert first_run[1].counts["complete"] == 3
    url = _first_study(first_run, tmp_path)
    before = _trials(url, "moving")
    moved = parse_spec(_with_db(STUDY, _moved(synth_db, tmp_path)))
    res = run_study(moved, None, url, n_trials=5)
    assert res.study_name == "moving" and res.counts["complete"] == 5
    after = _trials(url, "moving")
    assert len(after) == 5 and after[:3] == before  # nothing re-run, nothing lost
    assert {s.study_name for s in optuna.get_all_study_summaries(url)} == {"moving"}


def test_study_run_command_resumes_after_the_store_moved_and_refuses_a_changed_bound(synth_db, tmp_path):
    """The user's commands: ``accumopt study run SPEC`` with the store named by ``[data].database`` (no --db), the
    store moved and the spec file edited: the study resumes to --n-trials; a changed bound is one line, exit 2."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = tmp_path / "moving.toml"
    spec.write_text(_with_db(STUDY, synth_db), encoding="utf-8")
    assert json.loads(ok(cli("study", "run", spec, "--storage", url, "--format", "json")).stdout)["complete"] == 3
    spec.write_text(_with_db(STUDY, _moved(synth_db, tmp_path)), encoding="utf-8")
    out = json.loads(ok(cli("study", "run", spec, "--storage", url, "--n-trials", 4, "--format", "json")).stdout)
    assert out["study"] == "moving" and out["complete"] == 4
    spec.write_text(spec.read_text(encoding="utf-8").replace("high = 80", "high = 85"), encoding="utf-8")
    one_line_error(cli("study", "run", spec, "--storage", url, "--n-trials", 5),
                   "study 'moving' was created from a different spec", "[space.buy_threshold.high] 80 -> 85")
    assert len(_trials(url, "moving")) == 4


def test_study_opened_by_name_resumes_after_study_name_edited(synth_db, tmp_path):
    """``study run SPEC --name keep`` after ``[study].name`` was edited in the spec: resumed (the name does not
    change what a trial computes; the study is the one named)."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    run_study(parse_spec(STUDY), synth_db, url, name="keep")
    before = _trials(url, "keep")
    renamed = parse_spec(STUDY.replace('name = "moving"', 'name = "renamed"'))
    res = run_study(renamed, synth_db, url, n_trials=4, name="keep")
    assert res.study_name == "keep" and res.counts["complete"] == 4 and _trials(url, "keep")[:3] == before


def test_a_changed_search_space_bound_is_still_refused_naming_only_that_key(synth_db, first_run, tmp_path):
    """A result-relevant change (a search-space bound) is refused as before, and the message names only what the
    hash covers (the edited [data].database beside it is not named)."""
    url = _first_study(first_run, tmp_path)
    spec = parse_spec(_with_db(STUDY, synth_db))
    changed = parse_spec(_with_db(STUDY.replace("high = 80", "high = 85"), _moved(synth_db, tmp_path)))
    assert changed.spec_hash != spec.spec_hash
    with pytest.raises(SpecError, match=rf"study 'moving' was created from a different spec \(hash {spec.spec_hash}, "
                                        rf"this spec {changed.spec_hash}: \[space\.buy_threshold\.high\] 80 -> 85\); "
                                        r"refusing to resume it\. Use --name NEW"):
        run_study(changed, None, url, n_trials=4)
    assert len(_trials(url, "moving")) == 3


# ------------------------------------------------------------------------------------------------ legacy studies
def test_a_study_stored_with_the_legacy_hash_resumes_and_a_changed_bound_is_refused(synth_db, first_run, tmp_path):
    """A study made before the change stores the legacy hash (covering [data].database and [study].name): the same
    spec resumes it, the spec with the store moved resumes it, a changed bound is refused with the same message
    (the stored legacy hash and this spec's hash)."""
    url = _first_study(first_run, tmp_path)
    text = _with_db(STUDY, synth_db)
    legacy = _set_legacy(url, "moving")
    before = _trials(url, "moving")
    assert run_study(parse_spec(text), None, url, n_trials=4).counts["complete"] == 4
    moved = parse_spec(_with_db(STUDY, _moved(synth_db, tmp_path)))
    res = run_study(moved, None, url, n_trials=5)
    assert res.study_name == "moving" and res.counts["complete"] == 5 and _trials(url, "moving")[:3] == before
    changed = parse_spec(_with_db(STUDY.replace("high = 80", "high = 85"), synth_db))
    with pytest.raises(SpecError, match=rf"different spec \(hash {legacy}, this spec {changed.spec_hash}: "
                                        r"\[space\.buy_threshold\.high\] 80 -> 85\); refusing to resume it"):
        run_study(changed, None, url, n_trials=6)
    assert len(_trials(url, "moving")) == 5


def test_new_name_resumes_a_legacy_name_k_study_after_the_store_moved(synth_db, first_run, tmp_path):
    """``--new-name`` resumes the first ``NAME-k`` made from this spec: a legacy ``moving-2`` of the same
    result-relevant spec is that study after the store moved (before: a third study ``moving-3`` was started and
    ``moving-2``'s trials were run again)."""
    url = _first_study(first_run, tmp_path)
    changed = STUDY.replace("high = 80", "high = 85")
    assert run_study(parse_spec(_with_db(changed, synth_db)), None, url, new_name=True).study_name == "moving-2"
    _set_legacy(url, "moving-2")
    before = _trials(url, "moving-2")
    res = run_study(parse_spec(_with_db(changed, _moved(synth_db, tmp_path))), None, url, n_trials=4, new_name=True)
    assert res.study_name == "moving-2" and res.counts["complete"] == 4 and _trials(url, "moving-2")[:3] == before
    assert {s.study_name for s in optuna.get_all_study_summaries(url)} == {"moving", "moving-2"}


# ------------------------------------------------------------------------------------------------ walk-forward
@pytest.fixture(scope="module")
def wf_run(synth_db, tmp_path_factory):
    """A finished walk-forward (SQLite, claims) whose spec names the store by ``[data].database``."""
    root = tmp_path_factory.mktemp("wfhash")
    spec_path = root / "wfd.toml"
    spec_path.write_text(_with_db(WF_SPEC, synth_db), encoding="utf-8")
    url = f"sqlite:///{root / 'one.db'}"
    return url, run_walkforward(load_spec(spec_path), synth_db, url, out_dir=None)


def _moved_spec(synth_db: Path, tmp_path: Path):
    p = tmp_path / "wfd.toml"
    p.write_text(_with_db(WF_SPEC, _moved(synth_db, tmp_path)), encoding="utf-8")
    return load_spec(p)


def test_walkforward_rerun_after_the_store_moved_resumes_its_windows(synth_db, wf_run, tmp_path):
    """The same walk-forward re-run after the store moved (``[data].database`` edited): every window counts as done
    (same run key), no trial is run again, the result is the first run's (before: refused, 'created from a
    different spec')."""
    url = _copy_storage(wf_run[0], tmp_path)
    before = _trials_by_window(url)
    assert len(before) == len(wf_run[1].windows) >= 4 and all(len(ts) == N for ts in before.values())
    res = run_walkforward(_moved_spec(synth_db, tmp_path), None, url, out_dir=None)
    assert _trials_by_window(url) == before
    _same(res, wf_run[1])


def test_walkforward_worker_whose_spec_names_its_own_store_path_is_accepted(synth_db, wf_run, tmp_path):
    """A worker on another machine whose spec names that machine's store path joins the run (here a finished one:
    nothing left to claim) instead of 'started from a different spec'."""
    url = _copy_storage(wf_run[0], tmp_path)
    before = _trials_by_window(url)
    assert wfmod.run_walkforward_worker(_moved_spec(synth_db, tmp_path), None, url, wait=0) == []
    assert _trials_by_window(url) == before


def test_a_legacy_walkforward_resumes_its_window_studies_after_the_store_moved(synth_db, wf_run, tmp_path,
                                                                              monkeypatch):
    """A walk-forward made before the change (run here with the legacy hash in place of ``spec_hash``: its window
    studies, run record and claims all carry it): re-run after the store moved, no window counts as done for the
    new settings key, so each window study is opened again and resumed with its N trials, none run again; the
    result is the one a new run gives."""
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    p = tmp_path / "legacy.toml"
    p.write_text(_with_db(WF_SPEC, synth_db), encoding="utf-8")
    with monkeypatch.context() as m:
        m.setattr(StudySpec, "spec_hash", property(lambda self: _legacy_hash(self.source)))
        run_walkforward(load_spec(p), synth_db, url, out_dir=None)
    before = _trials_by_window(url)
    legacy = _legacy_hash(p.read_text(encoding="utf-8"))
    assert len(before) == len(wf_run[1].windows)
    assert all(optuna.load_study(study_name=n, storage=url).user_attrs["spec_hash"] == legacy for n in before)
    assert before == _trials_by_window(wf_run[0])  # the same studies as a run of today's code
    res = run_walkforward(_moved_spec(synth_db, tmp_path), None, url, out_dir=None)
    assert _trials_by_window(url) == before
    _same(res, wf_run[1])
