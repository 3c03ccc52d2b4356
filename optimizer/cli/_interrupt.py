"""Ctrl-C (SIGINT) on the command line: ONE line on stderr saying what is kept and how to go on, exit code 130
(128 + SIGINT, what shells report for a command stopped by Ctrl-C), no traceback and no click "Aborted!".

Handled in the entry point only: while the command line's libraries load (``optimizer.cli``) and around every
command (``_common.ErrorGroup.invoke``). This module imports nothing but ``sys``, so that a Ctrl-C landing while
the other imports run is handled too. (``study run`` handles SIGINT itself: it finishes the running trial and
prints its report with ``interrupted: true``.)"""

from __future__ import annotations

import sys

__all__ = ["EXIT_INTERRUPTED", "KEPT", "print_interrupted"]

EXIT_INTERRUPTED = 130
KEPT = ("stopped by Ctrl-C; what had finished is kept (stored trials and walk-forward windows, ingested files, "
        "written reports): run the same command again to go on from there")


def print_interrupted(detail: str | None = None) -> None:
    """``interrupted: <detail or KEPT>`` on stderr, one line."""
    sys.stderr.write(f"interrupted: {(detail or KEPT).replace(chr(10), ' ')}\n")
    sys.stderr.flush()
