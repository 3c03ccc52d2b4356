"""Storages and round trips, as a researcher with several machines (audit explore9).

Oracles: the command's exit code and its one line (the rule: bad input is one line naming the parameter, exit 2,
no traceback, nothing created), Optuna's own storages and optuna-dashboard's own WSGI application."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.errors import DataError
from optimizer.study.storage import make_storage


def _run(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACCUMOPT_STORAGE", raising=False)
    optuna_dashboard = pytest.importorskip("optuna_dashboard")

    def serve(*a, **k):  # a storage the command should have refused: fail, never block on a port
        raise AssertionError("dashboard served the storage")

    monkeypatch.setattr(optuna_dashboard, "run_server", serve)
    res = CliRunner().invoke(main, args)
    return res


@pytest.mark.parametrize("url, says", [
    ("mysql://u@localhost/db", r"driver of mysql\+mysqldb is not installed \(No module named 'MySQLdb'\)"),
    ("postgresql+asyncpg://u@localhost/db", r"driver of postgresql\+asyncpg is not installed"),
    ("foo://bar", r"not a storage URL this tool can open; write sqlite:///relative/path"),
    ("sqlite:///", r"names no file"),
    ("journal:", r"names no file"),
    ("sqlite:/rel.db", r"is not an SQLite URL: write sqlite:///relative/path or sqlite:////absolute/path"),
])
@pytest.mark.parametrize("command", [["study", "list"], ["dashboard"]])
def test_a_storage_url_that_cannot_work_is_one_line_and_exit_2(url, says, command, tmp_path, monkeypatch):
    """Before: a URL whose driver is missing (mysql://, postgresql+asyncpg://) was Optuna's ImportError, a
    61-line traceback with exit 1, in every command (list, show, run, worker, walkforward, dashboard);
    ``sqlite:///`` (SQLAlchemy's private in-memory database per connection) made `dashboard` an AssertionError
    traceback and `study run` 'no such table: studies'; ``journal:`` a FileNotFoundError of ''."""
    import re

    res = _run([*command, "--storage", url], tmp_path, monkeypatch)
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    line = res.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert line.startswith("error: ") and url in line and re.search(says, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created


def test_make_storage_checks_the_url_before_opening_anything(tmp_path):
    for url in ("mysql://u@h/db", "sqlite:///", "journal:", "sqlite://x.db"):
        with pytest.raises(DataError, match="^study storage "):
            make_storage(url)


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_storage_is_refused_by_a_command_that_reads(url, tmp_path, monkeypatch):
    """Before: `study list --storage sqlite:///:memory:` listed no study and `dashboard` served an empty
    in-memory storage on a port, as if the URL named a storage that held nothing yet."""
    for command in (["study", "list"], ["study", "show", "s1"], ["dashboard"]):
        res = _run([*command, "--storage", url], tmp_path, monkeypatch)
        assert res.exit_code == 2, (command, res.exit_code, res.output)
        assert res.output.strip() == (f"error: study storage {url} is an in-process storage: it holds only the "
                                      "studies of the process that runs them, so there is nothing to read here; "
                                      "pass a file or server storage (sqlite:///PATH, journal:PATH, "
                                      "postgresql://...)"), res.output
    import optuna
    assert isinstance(make_storage(url), optuna.storages.InMemoryStorage)  # a run still gets one
