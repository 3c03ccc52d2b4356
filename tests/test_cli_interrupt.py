"""Ctrl-C on the command line (``optimizer.cli._interrupt``): one line on stderr saying what is kept and how to go
on, exit code 130 (128 + SIGINT), no traceback, no click "Aborted!" (exit 1).

Real SIGINTs to real ``python -m optimizer.cli`` processes, sent at a point that does not depend on the machine's
speed: the process sends SIGINT to itself when a given module starts to load (an import hook installed by a
tiny launcher), so the signal lands while the command line's libraries load (``click``) or while a command runs
(its module, loaded when the command is looked up). A walk-forward is interrupted in a window (slow).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _cli_helpers import CLEAN_ENV, cli

LAUNCHER = textwrap.dedent("""
    import os, runpy, signal, sys

    TARGET = sys.argv[1]

    class SigintOnImport:  # sends SIGINT to this process when module TARGET starts to load
        def find_spec(self, name, path=None, target=None):
            if name == TARGET:
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
            return None

    sys.meta_path.insert(0, SigintOnImport())
    sys.argv = ["accumopt", *sys.argv[2:]]
    runpy.run_module("optimizer.cli", run_name="__main__", alter_sys=True)
""")


def _run_interrupted(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    return subprocess.run([sys.executable, str(launcher), module, *args], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a shell starts it


def _assert_interrupted(p: subprocess.CompletedProcess, *fragments: str) -> str:
    assert p.returncode == 130, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr and "Aborted!" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), p.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def test_ctrl_c_while_the_command_line_loads(tmp_path):
    """SIGINT while ``optimizer.cli`` imports click (before any command runs): before, a KeyboardInterrupt
    traceback and death by SIGINT."""
    _assert_interrupted(_run_interrupted(tmp_path, "click.core", "--version"), "run the same command again")


def test_ctrl_c_while_a_command_runs(tmp_path):
    """SIGINT while a command runs (here while ``data synth`` loads its module): before, click's "Aborted!" and
    exit 1."""
    _assert_interrupted(_run_interrupted(tmp_path, "optimizer.data.synth", "data", "synth", "--help"),
                        "what had finished is kept")


def test_a_query_duckdb_interrupted_is_a_ctrl_c(monkeypatch, tmp_path):
    """DuckDB takes a SIGINT that comes during a query itself and raises RuntimeError('Query interrupted'): the
    same line and exit code, not a traceback (what a Ctrl-C during an ingest printed)."""
    import duckdb  # noqa: F401 - the error is DuckDB's only when DuckDB is loaded
    from optimizer.cli import data as data_cli

    def interrupted(*a, **k):
        raise RuntimeError("Query interrupted")

    monkeypatch.setattr(data_cli, "synth_to_db", interrupted)
    res = cli("data", "synth", "--out", tmp_path / "raw", "--db", tmp_path / "s.duckdb")
    assert res.exit_code == 130, (res.output, res.exception)
    assert res.stderr.strip().startswith("interrupted: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.slow
def test_ctrl_c_in_a_walkforward_window(synth_db, tmp_path):
    """SIGINT while a walk-forward window's study runs: the study finishes its running trial and stops, the window
    is released, and the command says so on one line (how to resume) with exit 130; before, "error: ..." and exit
    2, as if the input were wrong."""
    import time

    import optuna

    from _slow_objective import SLEEP_ENV, slowed
    from optimizer.study.storage import make_storage
    from test_walkforward_distributed import SPEC, _trials_by_window

    spec = tmp_path / "wfd.toml"
    spec.write_text(slowed(SPEC), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'wf.db'}"
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV} | {SLEEP_ENV: "0.2"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")])
    p = subprocess.Popen([sys.executable, "-m", "optimizer.cli", "walkforward", str(spec), "--db", str(synth_db),
                          "--storage", url, "--out", str(tmp_path / "out")], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t_end, sent = time.monotonic() + 180, False
    while not sent and time.monotonic() < t_end and p.poll() is None:
        time.sleep(0.1)
        try:
            sent = any(len(ts) >= 1 for ts in _trials_by_window(url).values())
        except (KeyError, optuna.exceptions.StorageInternalError, Exception):  # noqa: BLE001 - being created
            continue
    assert sent, "the walk-forward never started a window"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    done = _assert_interrupted(subprocess.CompletedProcess(p.args, p.returncode, out, err), "run the walk-forward again")
    assert "window" in done
    assert make_storage(url, heartbeat=False) is not None
