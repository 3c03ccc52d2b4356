"""What scripts and notebooks read (explore20): ``--format json`` documents, terminal output (80 columns, no escape
codes where none are wanted, a closed pipe) and the Python API (documented calls, clear refusals)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

ACCUMOPT = [sys.executable, "-m", "optimizer.cli"]
_ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(**extra: str) -> dict[str, str]:
    drop = ("CI", "COLUMNS", "NO_COLOR", "TERM", "ACCUMOPT_DB", "ACCUMOPT_STORAGE", "ACCUMOPT_OUTPUT")
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def _run_on_tty(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """``accumopt ARGS`` with stdout on a pseudo-terminal of 80 columns: (exit code, what the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    p = subprocess.Popen(ACCUMOPT + args, stdout=slave, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         env=env, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        try:
            d = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not d:
            break
        chunks.append(d)
    rc = p.wait(timeout=120)
    os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace")


# ------------------------------------------------------------------------------------------ terminal: escape codes
def test_no_color_writes_no_escape_code_to_a_terminal(tmp_path):
    """NO_COLOR=1 on a terminal: rich dropped the colours but still wrote bold and dim (46 escape codes in a
    `study show` table, \\x1b[1m / \\x1b[2m); now none, as TERM=dumb and a pipe. Without NO_COLOR the terminal
    still gets its bold header (the test can fail)."""
    args = ["symbols", "show", "brk/b", "bac-pl"]
    rc, plain = _run_on_tty(args, _env(TERM="xterm-256color"), tmp_path)
    assert rc == 0 and "BRK.B" in plain and _ESC.search(plain), plain
    rc, out = _run_on_tty(args, _env(TERM="xterm-256color", NO_COLOR="1"), tmp_path)
    assert rc == 0 and "BRK.B" in out
    assert not _ESC.search(out), repr(out)
    rc, out = _run_on_tty(args, _env(TERM="xterm-256color", NO_COLOR=""), tmp_path)  # empty: not set (no-color.org)
    assert _ESC.search(out)
