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
