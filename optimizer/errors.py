"""Domain errors. Each message states the rule that was broken and shows the offending value.

The CLI turns every ``AccumoptError`` into a one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

__all__ = ["AccumoptError", "InputFileError", "SpecError", "ParameterError", "DataError", "Interrupted", "quoted",
           "QUOTE_MAX", "is_query_interrupt"]

QUOTE_MAX = 60  # characters of a user's or a file's value that a message quotes


class AccumoptError(Exception):
    """Base of every error the tool raises on purpose."""


class InputFileError(AccumoptError):
    """A raw input file broke a format rule. ``str()`` is ``file:line: reason``."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        self.file = str(file)
        self.line = line
        self.reason = reason
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {reason}")


class SpecError(AccumoptError):
    """A study spec broke a rule. ``str()`` names the key path: ``[space.z_window] ...``."""

    def __init__(self, key: str, reason: str, file: str | None = None) -> None:
        self.key = key
        self.reason = reason
        self.file = file
        prefix = f"{file}: " if file else ""
        super().__init__(f"{prefix}[{key}] {reason}")


class ParameterError(AccumoptError, ValueError):
    """A function or CLI parameter is out of its domain, e.g. ``window must be >= 2, got window=1``."""


class DataError(AccumoptError):
    """The store does not hold the data a command needs (unknown ticker, empty date range, missing table)."""


class Interrupted(AccumoptError):
    """Work stopped by Ctrl-C (SIGINT) before it was done, resumable (e.g. a walk-forward window whose study stopped
    before all its trials were run). The command line prints it on one line and exits 130, as for any Ctrl-C."""


def is_query_interrupt(e: BaseException) -> bool:
    """DuckDB's report of a Ctrl-C that came while it ran a query: it takes the SIGINT itself and raises
    ``RuntimeError('Query interrupted')`` (no KeyboardInterrupt reaches Python). Code that reacts to Ctrl-C must
    treat it as one."""
    return type(e) is RuntimeError and str(e) == "Query interrupted"


def check_param(ok: bool, name: str, rule: str, value: object) -> None:
    """Raise ``ParameterError('<name> must be <rule>, got <name>=<value>')`` unless ``ok``."""
    if not ok:
        raise ParameterError(f"{name} must be {rule}, got {name}={quoted(value) if isinstance(value, str) else repr(value)}")


def quoted(s: str) -> str:
    """``repr()`` of a value a user typed or a file holds, cut to ``QUOTE_MAX`` characters with its full length
    named (a 1 MiB field or a 5,000-character argument must not make a message of that size);
    ``optimizer.data.ingest._common.repr_sql`` is its SQL twin."""
    return repr(s[:QUOTE_MAX]) + (f"... ({len(s)} characters)" if len(s) > QUOTE_MAX else "")
