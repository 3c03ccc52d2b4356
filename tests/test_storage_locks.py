"""Several processes on one SQLite study storage.

A process that holds an SQLite study storage open must be able to open it again (``make_storage``, as every
walk-forward window's ``run_study`` does while the run's claim storage is open) without losing later commits.

Closing ANY descriptor of an SQLite database file drops every POSIX lock the process holds on it, including the
shared lock its open WAL connections hold. Another process that then closes its last connection takes the file
for unused, checkpoints it and deletes the WAL under the first process's connections: their later commits went
to an unlinked file and were lost (or failed with "disk I/O error", as a `walkforward --jobs 2` did once in a few
runs). ``make_storage`` read the file's first bytes with ``open()`` to tell an SQLite file; it now asks SQLite.

A reader (``study list``, the tests' polling, optuna-dashboard through ``make_storage``) that opened a storage a
writer was still creating wrote Optuna's missing version rows itself (through the reader's WAL-recovery path), and
the writer then failed with "UNIQUE constraint failed: alembic_version.version_num" (seen in the SIGKILL tests
under load). The reader now refuses a half-created storage, and a writer that loses that race retries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlite3

import optuna
import pytest
import sqlalchemy
from optuna.storages._rdb import models

from optimizer.errors import DataError
from optimizer.study.storage import _racing_create, make_storage


def _other_process_count(path: Path) -> int:
    """Trials in the file as another process sees them; that process's connection closes before it exits."""
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "print(c.execute('SELECT count(*) FROM trials').fetchone()[0]); c.close()")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout)


def _objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0)


def test_reopening_a_held_storage_loses_no_later_commit(tmp_path):
    path = tmp_path / "studies.db"
    url = f"sqlite:///{path}"
    st = make_storage(url)
    study = optuna.create_study(storage=st, study_name="s", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=3)  # the WAL holds these; the storage's pooled connection stays open
    assert Path(f"{path}-wal").is_file()

    make_storage(url)  # the same process opens the storage again
    assert _other_process_count(path) == 3  # another process reads and closes its last connection
    assert Path(f"{path}-wal").is_file()  # ... and must not have taken the file for unused

    study.optimize(_objective, n_trials=3)
    assert _other_process_count(path) == 6  # every commit of the first process is visible to the others
    assert len(optuna.load_study(study_name="s", storage=make_storage(url, read_only=True)).trials) == 6


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as c:
        n = c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    c.close()
    return n


def test_a_reader_refuses_a_storage_a_writer_is_still_creating_and_writes_nothing(tmp_path):
    path = tmp_path / "new.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    models.BaseModel.metadata.create_all(engine)  # the writer's first step; its version rows come next
    engine.dispose()
    assert _rows(path, "version_info") == 0

    with pytest.raises(DataError, match="holds no study yet .its tables are being created by a writer"):
        make_storage(f"sqlite:///{path}", read_only=True)
    assert _rows(path, "version_info") == 0  # the reader wrote nothing
    assert "alembic_version" not in {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}

    writer = make_storage(f"sqlite:///{path}")  # the writer completes the storage as usual
    optuna.create_study(storage=writer, study_name="s")
    assert _rows(path, "version_info") == 1 and _rows(path, "alembic_version") == 1
    assert [s.study_name for s in make_storage(f"sqlite:///{path}", read_only=True).get_all_studies()] == ["s"]


def test_an_emptied_storage_still_reads_as_an_empty_list(tmp_path):
    url = f"sqlite:///{tmp_path / 'emptied.db'}"
    st = make_storage(url)
    optuna.create_study(storage=st, study_name="gone")
    optuna.delete_study(study_name="gone", storage=st)
    assert make_storage(url, read_only=True).get_all_studies() == []  # complete version rows: not half-created


def _integrity(msg: str) -> sqlalchemy.exc.IntegrityError:
    return sqlalchemy.exc.IntegrityError("INSERT ...", {}, sqlite3.IntegrityError(msg))


@pytest.mark.parametrize("msg", ["UNIQUE constraint failed: alembic_version.version_num",
                                 "UNIQUE constraint failed: version_info.version_info_id",
                                 'duplicate key value violates unique constraint "alembic_version_pkc"',
                                 "table studies already exists"])
def test_a_writer_that_loses_the_create_race_retries(msg):
    calls = []

    def make():
        calls.append(1)
        if len(calls) == 1:
            raise _integrity(msg)
        return "storage"

    assert _racing_create(make) == "storage" and len(calls) == 2


def test_other_integrity_errors_are_not_retried():
    calls = []

    def make():
        calls.append(1)
        raise _integrity("UNIQUE constraint failed: trials.number")

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        _racing_create(make)
    assert len(calls) == 1
