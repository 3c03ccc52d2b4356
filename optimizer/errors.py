"""Domain errors. Each message states the rule that was broken and shows the offending value.

The CLI turns every ``AccumoptError`` into a one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import errno
import os
import re

__all__ = ["AccumoptError", "InputFileError", "SpecError", "ParameterError", "DataError", "Interrupted", "quoted",
           "QUOTE_MAX", "is_query_interrupt", "is_storage_failure", "MachineError", "machine_error", "no_room"]

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


class MachineError(AccumoptError):
    """The machine, not the input, refused: a full disk, a file size or open-file limit, a read-only or forbidden
    place, a name too long, no memory. ``str()`` names the file (when one is known) and the cause in words."""


# errno -> the cause in words, for the failures of the machine a command reports in one line (``machine_error``)
_MACHINE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EFBIG: "file too large (the file size limit, ulimit -f, or the file system's largest file)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EMFILE: "too many open files (the open-file limit, ulimit -n)",
    errno.ENFILE: "too many open files in the system",
    errno.ENAMETOOLONG: "file name too long (at most 255 bytes per name)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENOMEM: "out of memory",
}
_STRERROR = {os.strerror(n).lower(): n for n in _MACHINE_ERRNOS}
# DuckDB's own report of a failed file operation: 'Could not write file "/x/s.duckdb.wal": No space left on device'
_DUCKDB_FILE = re.compile(r'(could not|cannot|failed to) (\w+) file "([^"]+)": ([^\n(]+?)\s*(?:\(|$)', re.I | re.M)
_PAST = {"write": "written", "open": "opened", "read": "read", "truncate": "truncated", "sync": "synced",
         "fsync": "synced", "create": "created", "remove": "removed", "move": "moved"}


def machine_error(e: BaseException) -> MachineError | None:
    """The one-line error for a failure of the machine found in ``e`` or the exceptions it came from (``__cause__``,
    ``__context__``), else None: an OSError of a full disk, a limit, a read-only or forbidden place or a name too long
    (naming its file), DuckDB's report of one (naming the store's file), or running out of memory."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        found = _machine_one(cur)
        if found is not None:
            return found
        cur = cur.__cause__ or cur.__context__
    return None


def _machine_one(e: BaseException) -> MachineError | None:
    if isinstance(e, OSError) and e.errno in _MACHINE_ERRNOS:
        words = _MACHINE_ERRNOS[e.errno]
        return MachineError(f"{e.filename}: {words}" if e.filename else f"{words} ({e})")
    if isinstance(e, MemoryError):
        return MachineError(f"out of memory ({type(e).__name__}{': ' + str(e) if str(e) else ''})")
    if type(e).__module__.split(".")[0] in ("duckdb", "_duckdb"):
        msg = str(e)
        if type(e).__name__ == "OutOfMemoryException":
            return MachineError(f"DuckDB ran out of memory ({msg.splitlines()[0]})")
        m = _DUCKDB_FILE.search(msg)
        if m and m.group(4).strip().lower() in _STRERROR:
            words = _MACHINE_ERRNOS[_STRERROR[m.group(4).strip().lower()]]
            tail = "; the transaction was not committed" if "failed to commit" in msg.lower() else ""
            done = _PAST.get(m.group(2).lower(), "used")
            return MachineError(f"the DuckDB store's file {m.group(3)} could not be {done}: {words}{tail}")
    return None


def no_room(folder: str | os.PathLike | None = None) -> str | None:
    """Why this process may be unable to write a file, when the machine says so, else None: a file size limit set
    on it (``ulimit -f``), or (``folder`` given) under 1 MiB free on the device holding ``folder``. SQLite reports
    either as a bare "disk I/O error" (a write past the limit, its shared-memory file on a full disk)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            return f"a file size limit of {soft:,} bytes is set (ulimit -f)"
    except (ImportError, OSError, ValueError):  # no POSIX limits here
        pass
    if folder is not None:
        import shutil

        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return None
        if free < (1 << 20):
            return f"no space left on the device holding {folder} ({free:,} bytes free)"
    return None


def is_query_interrupt(e: BaseException) -> bool:
    """DuckDB's report of a Ctrl-C that came while it ran a query: it takes the SIGINT itself and raises
    ``RuntimeError('Query interrupted')`` (no KeyboardInterrupt reaches Python). Code that reacts to Ctrl-C must
    treat it as one."""
    return type(e) is RuntimeError and str(e) == "Query interrupted"


def is_storage_failure(e: BaseException) -> bool:
    """An error the study storage itself raised (SQLite, SQLAlchemy, Optuna's ``StorageInternalError``, told by name
    so that this module imports neither), never one of the code around it: what ``study.storage.storage_named`` and
    the CLI's error line call the storage's failure."""
    import sqlite3

    return isinstance(e, sqlite3.Error) or type(e).__module__.startswith("sqlalchemy") or \
        type(e).__name__ == "StorageInternalError"


def check_param(ok: bool, name: str, rule: str, value: object) -> None:
    """Raise ``ParameterError('<name> must be <rule>, got <name>=<value>')`` unless ``ok``."""
    if not ok:
        raise ParameterError(f"{name} must be {rule}, got {name}={quoted(value) if isinstance(value, str) else repr(value)}")


def quoted(s: str) -> str:
    """``repr()`` of a value a user typed or a file holds, cut to ``QUOTE_MAX`` characters with its full length
    named (a 1 MiB field or a 5,000-character argument must not make a message of that size);
    ``optimizer.data.ingest._common.repr_sql`` is its SQL twin."""
    return repr(s[:QUOTE_MAX]) + (f"... ({len(s)} characters)" if len(s) > QUOTE_MAX else "")
