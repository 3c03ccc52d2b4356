"""Defects the last audits noticed and left (mend16): studies, walk-forward, backtest."""

from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.data import store as store_mod
from optimizer.data.store import connect
from tests._cli_helpers import cli, ok, one_line_error
from tests.test_mend15_leftovers import _release_on_try, held

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "studies" / "demo.toml"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "s.duckdb"
    connect(db).close()
    return db


# ------------------------------------------------------------------ 1. walkforward waits for a held store when asked
def test_walkforward_waits_for_a_writer_only_when_asked(store, tmp_path, monkeypatch):
    """A walk-forward started by cron while `evening` wrote the store exited 2 at once: the command had no --wait
    (fails before: no such option --wait)."""
    args = ("walkforward", DEMO_SPEC, "--db", store, "--out", tmp_path / "out",
            "--storage", f"sqlite:///{tmp_path / 'st.db'}")
    with held(store, "rw") as h:
        monkeypatch.setattr(store_mod, "_sleep", lambda s: pytest.fail("slept without --wait"))
        one_line_error(cli(*args), f"database {store} is being written by another process", f"PID {h.pid})")
        pauses = _release_on_try(monkeypatch, h, 2)
        res = cli(*args, "--wait", "30")
    assert len(pauses) == 2 and f"waiting up to 30 s for database {store}" in res.stderr
    # it opened the store once the writer let go: the empty store's own error, not the held store's
    assert res.exit_code == 2 and "being written" not in res.stderr.split("error: ", 1)[1]


def test_a_walkforward_worker_waits_for_the_store_with_store_wait_and_for_its_coordinator_with_wait(
        store, tmp_path, monkeypatch):
    """The worker's --wait stays the coordinator's; the store's wait is --store-wait (fails before: no such option)."""
    from optimizer.validate import walkforward as wf

    seen: list[float] = []

    def worker(spec, db, url, jobs=1, wait=60.0, on_ready=None):
        seen.append(wait)
        connect(db, read_only=True).close()  # the worker's first reading of the store
        return ["w0"]

    monkeypatch.setattr(wf, "run_walkforward_worker", worker)
    args = ("walkforward", "worker", DEMO_SPEC, "--db", store, "--out", tmp_path / "out", "--format", "json")
    with held(store, "rw") as h:
        monkeypatch.setattr(store_mod, "_sleep", lambda s: pytest.fail("slept without --store-wait"))
        one_line_error(cli(*args, "--wait", "5"), f"database {store} is being written", f"PID {h.pid})")
        pauses = _release_on_try(monkeypatch, h, 1)
        res = ok(cli(*args, "--wait", "5", "--store-wait", "20"))
    assert len(pauses) == 1 and f"waiting up to 20 s for database {store}" in res.stderr
    assert seen == [5.0] and '"windows_run"' in res.stdout


@pytest.mark.parametrize("args,flag", [(("walkforward", str(DEMO_SPEC), "--wait", "-1"), "--wait"),
                                       (("walkforward", "worker", str(DEMO_SPEC), "--store-wait", "nan"), "--store-wait")])
def test_walkforward_refuses_a_bad_store_wait_naming_its_flag(tmp_path, args, flag):
    res = cli(*args, "--db", tmp_path / "s.duckdb", "--out", tmp_path / "out")
    one_line_error(res, f"{flag} must be a finite number of seconds >= 0")
    assert not (tmp_path / "s.duckdb").exists()


# ------------------------------------------------------------------ 2. a storage failing mid-run is named
def _failing_write(monkeypatch, after: int) -> None:
    """The storage's write of a finished trial fails as SQLite's does on a full disk, from the ``after``-th on."""
    import sqlite3

    import sqlalchemy.exc

    from optimizer.study import storage as storage_mod

    real = storage_mod._BudgetRDBStorage.append_finished_trial
    calls: list[int] = []

    def append(self, *a, **k):
        calls.append(1)
        if len(calls) >= after:
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))
        return real(self, *a, **k)

    monkeypatch.setattr(storage_mod._BudgetRDBStorage, "append_finished_trial", append)


def test_a_study_run_whose_storage_fails_names_the_storage(synth_db, tmp_path, monkeypatch):
    """A study run on a full disk (`ulimit -f`, 125 kB storage: 'error: the study storage failed: OperationalError:
    disk I/O error') did not say which storage failed (fails before: 'the study storage failed')."""
    _failing_write(monkeypatch, after=2)
    url = f"sqlite:///{tmp_path / 'st.db'}"
    res = cli("study", "run", DEMO_SPEC, "--db", synth_db, "--out", tmp_path / "out", "--storage", url,
              "--n-trials", "4", "--format", "json")
    one_line_error(res, f"error: study storage {url} ", "disk I/O error")


def test_storage_named_hides_the_password_and_leaves_other_errors_alone():
    import sqlite3

    import sqlalchemy.exc

    from optimizer.errors import DataError
    from optimizer.study.storage import storage_named

    with pytest.raises(DataError, match=r"^study storage postgresql://u:\*\*\*@db.example/x failed: OperationalError: "
                                        r"server closed the connection") as e:
        with storage_named("postgresql://u:hunter2@db.example/x"):
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(
                "server closed the connection"))
    assert "hunter2" not in str(e.value)
    with pytest.raises(RuntimeError, match="an objective's own bug"):  # not the storage's: passes as it is
        with storage_named("sqlite:///x.db"):
            raise RuntimeError("an objective's own bug")


def test_a_walkforward_whose_storage_fails_names_the_storage(synth_db, tmp_path, monkeypatch):
    """Same hole in `walkforward` (fails before: 'the study storage failed')."""
    _failing_write(monkeypatch, after=3)
    url = f"sqlite:///{tmp_path / 'st.db'}"
    res = cli("walkforward", DEMO_SPEC, "--db", synth_db, "--out", tmp_path / "out", "--storage", url,
              "--n-trials", "4", "--format", "json")
    one_line_error(res, f"error: study storage {url} ", "disk I/O error")
