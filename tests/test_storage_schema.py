"""Optuna's table-schema check on every RDB storage ``make_storage`` opens (optimizer/study/storage.py).

Optuna reads its alembic head revision from its ~90 migration scripts (each one executed) at every storage it opens
with the check on: ~0.1-0.2 s of CPU per open, 7 opens per walk-forward. ``_check_schema`` runs the same check with
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
