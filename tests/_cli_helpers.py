"""Helpers for tests that run the command line in-process: a clean environment and the one-line error check."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from click.testing import CliRunner, Result

from optimizer.cli import main

# Environment the path options read; cleared so a developer's shell cannot change what the tests see.
CLEAN_ENV = {"ACCUMOPT_DB": None, "ACCUMOPT_STORAGE": None, "ACCUMOPT_OUTPUT": None, "ACCUMOPT_CACHE": None,
             "SCANNER_DB_PATH": None}


def cli(*args: object, env: dict | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=CLEAN_ENV | (env or {}), catch_exceptions=True)


def ok(res: Result, code: int = 0) -> Result:
    assert res.exit_code == code, f"exit {res.exit_code}\n{res.stdout}\n{res.stderr}\n{res.exception!r}"
    return res


def one_line_error(res: Result, *fragments: str) -> str:
    """Exit code 2, no traceback, exactly one ``error: ...`` line on stderr holding every fragment."""
    assert res.exit_code == 2, f"exit {res.exit_code}\n{res.stdout}\n{res.stderr}\n{res.exception!r}"
    assert "Traceback" not in res.output, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


def finish_logged(p: subprocess.Popen, log: Path, timeout: float = 120) -> tuple[str, str]:
    """Wait for a command started with its stdout/stderr in ``log.out`` / ``log.err`` (killed on ``timeout``);
    assert it exited 0; return its (stdout, stderr)."""
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    out, err = log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()
    assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err}"
    return out, err


def descriptors_of(prefix: Path) -> int | None:
    """How many of this process's open file descriptors point at a file whose path starts with ``prefix`` (a
    database and its -wal / -shm files); None where /proc/self/fd does not exist."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return None
    return sum(os.path.realpath(f).startswith(str(prefix)) for f in fds.iterdir())


def _timeless(d: object) -> object:
    """A result dict without the trials' wall times (``duration_s`` in the winners' in-sample metrics)."""
    if isinstance(d, dict):
        return {k: _timeless(v) for k, v in d.items() if k != "duration_s"}
    if isinstance(d, list):
        return [_timeless(v) for v in d]
    return d


def timeless_json(d: dict) -> str:
    """A walk-forward result dict (``WalkForwardResult.to_dict()``) as canonical JSON without wall times: two runs
    that made the same decisions give the same text."""
    return json.dumps(_timeless(json.loads(json.dumps(d, default=str))), sort_keys=True)


def drain_pty(master: int) -> bytes:
    """Everything a child process wrote to the pseudo-terminal whose master end is ``master``, read until the
    child closed its side (EIO or end of file)."""
    import os

    chunks = []
    while True:
        try:
            d = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not d:
            break
        chunks.append(d)
    return b"".join(chunks)


def bench_module(name: str, as_name: str | None = None):
    """The benchmark script bench/<name>.py imported as a module (``as_name``, default ``name``), for tests of its
    functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(as_name or name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
