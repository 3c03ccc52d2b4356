"""A process that holds an SQLite study storage open must be able to open it again (``make_storage``, as every
walk-forward window's ``run_study`` does while the run's claim storage is open) without losing later commits.

Closing ANY descriptor of an SQLite database file drops every POSIX lock the process holds on it, including the
shared lock its open WAL connections hold. Another process that then closes its last connection takes the file
for unused, checkpoints it and deletes the WAL under the first process's connections: their later commits went
to an unlinked file and were lost (or failed with "disk I/O error", as a `walkforward --jobs 2` did once in a few
runs). ``make_storage`` read the file's first bytes with ``open()`` to tell an SQLite file; it now asks SQLite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna

from optimizer.study.storage import make_storage


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
