"""Optuna's table-schema check on every RDB storage ``make_storage`` opens (optimizer/study/storage.py).

Optuna reads its alembic head revision from its ~90 migration scripts (each one executed) at every storage it opens
with the check on: ~25-30 ms of CPU per open, 7 opens per walk-forward. ``_check_schema`` runs the same check with
the head read once per process; a storage at another revision still gets Optuna's own check and refusal.
"""

from __future__ import annotations

import sqlite3

import pytest
from optuna.storages._rdb.storage import _VersionManager

from optimizer.errors import DataError
from optimizer.study import storage as stmod
from optimizer.study.storage import make_storage


@pytest.fixture
def head_reads(monkeypatch) -> list[int]:
    """Counts Optuna's reads of its head revision, from a process that has not read it yet."""
    calls: list[int] = []
    real = _VersionManager.get_head_version

    def counted(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(_VersionManager, "get_head_version", counted)
    monkeypatch.setattr(stmod, "_SCHEMA_HEAD", {}, raising=False)  # (absent before the per-process head)
    return calls


def test_the_head_revision_is_read_once_per_process(tmp_path, head_reads):
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_storage(url, heartbeat=False)  # a new storage: Optuna stamps it with the head, then the check reads it
    first = len(head_reads)
    assert 1 <= first <= 2
    make_storage(url, heartbeat=False)  # an existing storage, a writer ...
    make_storage(url, read_only=True)  # ... and a reader: the head is not read again
    make_storage(url)
    assert len(head_reads) == first


def test_a_storage_at_an_older_schema_revision_is_still_refused(tmp_path, head_reads):
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    vm = make_storage(url, heartbeat=False)._version_manager
    older = vm.get_all_versions()[1]  # newest first: the revision before the head
    assert older != vm.get_head_version()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE alembic_version SET version_num = ?", (older,))
    con.close()
    for kw in ({}, {"heartbeat": False}, {"read_only": True}):
        with pytest.raises(DataError, match="no longer compatible with the table schema"):
            make_storage(url, **kw)


def test_a_study_record_is_written_in_one_transaction_and_reads_back(tmp_path):
    """``records.write_study`` stores a study's record (~30 user attributes) in ONE transaction on an RDB storage
    (Optuna commits each attribute on its own), and on the in-memory storage one by one: the same attributes."""
    import optuna
    from sqlalchemy import event

    from optimizer.study.records import StudyRecord, read_study, write_study

    record = StudyRecord.from_attrs({"spec_hash": "abc", "spec_text": "[study]\nname = 'x'\n", "objective": "o",
                                     "n_trials_target": 7, "folds": [[0, "2024-01-02", "2024-02-01"]],
                                     "universe": ["AAA", "BBB"], "regime": "ALL", "span_lo": 0, "span_hi": 10})
    storage = make_storage(f"sqlite:///{tmp_path / 'r.db'}", heartbeat=False)
    study = optuna.create_study(study_name="r", storage=storage)
    study.set_user_attr("spec_hash", "old")  # an attribute already there is replaced
    commits: list[int] = []
    event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    write_study(study, record)
    assert len(commits) == 1
    again = optuna.load_study(study_name="r", storage=make_storage(f"sqlite:///{tmp_path / 'r.db'}", read_only=True))
    assert again.user_attrs == record.to_attrs() and read_study(again) == record
    mem = optuna.create_study(study_name="m", storage=make_storage("sqlite:///:memory:"))
    write_study(mem, record)
    assert mem.user_attrs == record.to_attrs()
