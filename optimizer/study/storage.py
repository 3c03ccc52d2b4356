"""Optuna storages for the tool: SQLite in WAL mode, heartbeats, an exact trial budget shared by independent
workers, fewer commits per trial, read-only opening for commands that only read. Every override of Optuna's private
storage code lives in this module.

A storage file that is not what it should be (missing for a reader, not an SQLite file, truncated or corrupt, an
SQLite database of another schema, read-only for a writer) is a ``DataError`` with one line naming the file and
what is wrong, never a traceback (``storage_error`` turns errors raised later, while reading, the same way)."""

from __future__ import annotations

import contextlib
import functools
import fcntl
import importlib.util
import json
import os
import re
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file
from optuna.trial import TrialState
from sqlalchemy import and_, case, event, func, select, update
from sqlalchemy.pool import NullPool

from optimizer.errors import AccumoptError, DataError, ParameterError, is_storage_failure, no_room
from optimizer.paths import resolve_storage, storage_path

__all__ = ["make_storage", "IN_MEMORY", "shown_url", "study_names", "user_attrs_in_one_transaction", "StudyFull", "storage_error", "storage_failure", "storage_named", "naming_its_storage", "has_heartbeat", "fail_stale_no_retry",
           "trial_summary", "LOST", "RETRY_OF", "hide_passwords", "heartbeat_age", "stale_grace"]

_SQLITE_MAGIC = b"SQLite format 3\x00"

# Two trial attributes the heartbeat check writes (read through ``records``: ``records.lost_reason``): a trial whose
# process stopped beating holds ``LOST``, why it failed, written while it is still RUNNING, just before the FAIL; the
# copy of it that is run again holds ``RETRY_OF``, the failed trial's number. Optuna keeps the retry's link in system
# attributes, which optuna-dashboard does not show: such a trial was a FAIL without parameters or any reason there.
LOST = "lost"
RETRY_OF = "retry_of"


def _root_cause(e: BaseException) -> BaseException:
    seen = e
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    return seen


# Optuna's alembic head revision, read once per process: it depends only on the installed Optuna (its migration
# scripts), and Optuna reads it again from those ~90 scripts (each executed, ORM classes and all) at every RDB storage
# it opens with the schema check on, ~25-30 ms of CPU each (a walk-forward opens 7 storages, a test file hundreds).
_SCHEMA_HEAD: dict[str, str] = {}  # filled on first use, never at import


def _check_schema(storage: optuna.storages.RDBStorage) -> None:
    """Optuna's table-schema check (what ``RDBStorage(skip_compatibility_check=False)`` runs), with the head
    revision read once per process (``_SCHEMA_HEAD``). A storage whose revision is not the head gets Optuna's own
    check, so it is refused exactly as before (RuntimeError: "no longer compatible with the table schema ...")."""
    vm = storage._version_manager
    head = _SCHEMA_HEAD.get("head")
    if head is None:
        head = _SCHEMA_HEAD["head"] = vm.get_head_version()
    if vm.get_current_version() != head:
        vm.check_table_schema_compatibility()


def shown_url(url: str) -> str:
    """``url`` as an error line shows it: a server URL's password as ``***`` (``postgresql://u:***@host/db``), so a
    refused connection never writes the password to a terminal, a log or a CI transcript."""
    head, sep, rest = url.partition("://")
    auth, at, tail = rest.rpartition("@")
    if not (sep and at and ":" in auth) or head.startswith(("sqlite", "journal")):
        return url
    return f"{head}://{auth.split(':', 1)[0]}:***@{tail}"


_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"']+:)[^\s@\"']+@")


def hide_passwords(text: str) -> str:
    """``text`` with the password of every URL in it as ``***`` (``postgresql://u:***@host/db``, as ``shown_url``):
    what a study stores of its spec (``[run].storage`` may hold one) is shown to whoever opens optuna-dashboard."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", text)


def storage_failure(url: str, e: BaseException) -> DataError:
    """The one-line ``DataError`` for an error raised by a storage (its root cause, in words)."""
    url = shown_url(url)
    cause = _root_cause(e)
    msg = str(getattr(cause, "orig", None) or cause).splitlines()[0] if str(cause) else type(cause).__name__
    low = msg.lower()
    path = storage_path(url)
    room = no_room(path.parent if path is not None else None) if "disk i/o" in low or "disk is full" in low else None
    if "readonly" in low or "read-only" in low:
        why = "is read-only (file or folder permissions); running a study writes to it, listing and showing do not"
    elif room is not None or "disk is full" in low:  # SQLite's words for a file it could not write
        why = f"could not be written: {room or 'no space left on the device'} ({msg})"
    elif "not a database" in low or "malformed" in low or "disk i/o" in low:
        why = f"is corrupt or truncated ({msg})"
    elif "no such table" in low:
        why = f"is not an Optuna study storage ({msg})"
    elif "optuna storage upgrade" in low:  # Optuna's schema check: a storage written by an older Optuna
        found = re.search(r"set up by optuna ([^)\s]+)", msg)
        why = (f"was written by {'Optuna ' + found.group(1) if found else 'an older Optuna'}: this Optuna "
               f"{optuna.__version__} is no longer compatible with the table schema; upgrade its tables once (a copy "
               f"first: an older Optuna cannot open it afterwards): optuna storage upgrade --storage {url}")
    else:
        why = f"failed: {type(cause).__name__}: {msg}"
    return DataError(f"study storage {url} {why}")


@contextlib.contextmanager
def storage_error(url: str) -> Iterator[None]:
    """Turn an SQLite / SQLAlchemy / Optuna storage error raised inside into ``storage_failure``'s DataError."""
    try:
        yield
    except AccumoptError:
        raise
    except (sqlite3.Error, optuna.exceptions.StorageInternalError, RuntimeError, OSError) as e:
        raise storage_failure(url, e) from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's errors (imported by Optuna) have many classes; re-raised when foreign
        if not type(e).__module__.startswith("sqlalchemy"):
            raise
        raise storage_failure(url, e) from None


@contextlib.contextmanager
def storage_named(url: str) -> Iterator[None]:
    """Around work that runs other code too (a study's trials): a storage error raised inside becomes
    ``storage_failure``'s one-line DataError naming the storage (password hidden); every other error passes as it
    is (``storage_error`` also takes RuntimeError / OSError, which an objective may raise)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - only the storage's own errors are named; the rest re-raised
        if isinstance(e, AccumoptError) or not is_storage_failure(e):
            raise
        raise storage_failure(url, e) from None


def naming_its_storage(f: Any) -> Any:
    """Decorates a run ``f(spec, db, storage_url, ...)`` (a study, a walk-forward): a storage error met anywhere in
    it (a trial written back on a full disk, a server gone) is one line naming the storage the run resolved,
    password hidden (``storage_named``), not an unnamed "the study storage failed"."""

    @functools.wraps(f)
    def run(spec: Any, db: Any, storage_url: str | None = None, *args: Any, **kw: Any) -> Any:
        with storage_named(resolve_storage(storage_url, spec.run.storage)):
            return f(spec, db, storage_url, *args, **kw)
    return run


def _check_journal_file(url: str, path: Path) -> None:
    """An existing journal file must be Optuna's (an empty one is a new journal): its first line a JSON log entry
    with an ``op_code``. Another file (notes, a CSV) is refused, never read as a storage or appended to."""
    if not path.exists():
        return
    if path.is_dir():
        raise DataError(f"{url}: {path} is a directory, not a study storage file")
    with open(path, "rb") as f:
        first = f.readline(65536)
    if not first:
        return
    try:
        entry = json.loads(first)
    except (ValueError, RecursionError):  # not JSON, or [[[[...: deeper than the parser follows
        entry = None
    if not (isinstance(entry, dict) and "op_code" in entry):
        raise DataError(f"study storage {url} is not an Optuna journal file (its first line is {first[:40]!r}, not a "
                        "journal entry); pass another --storage")


def _check_sqlite_file(url: str, path: Path, read_only: bool, create: bool = True) -> None:
    """A reader needs an existing SQLite file holding Optuna's tables; a writer needs nothing (``create``), or an
    SQLite file that is empty or holds Optuna's tables (another schema is never written into)."""
    if not path.exists():
        if read_only or not create:
            raise DataError(f"{url}: the study storage file {path} does not exist; run a study first or pass --storage")
        return
    if path.is_dir():
        raise DataError(f"{url}: {path} is a directory, not a study storage file")
    # The file is never opened but through SQLite here: closing ANY descriptor of a database file drops every POSIX
    # lock this process holds on it (fcntl semantics), including the shared lock each of its open WAL connections
    # holds. Another process closing its last connection then takes the file for unused, checkpoints and DELETES
    # the WAL under this process's live connections: their later commits go to an unlinked file and are lost (or
    # fail with "disk I/O error"). A walk-forward or study process calls make_storage again while its own storage
    # is open, so only a file SQLite refuses is read directly, to show how it starts.
    if path.stat().st_size == 0:
        if not read_only:
            return  # an empty file: a new database
        raise DataError(f"study storage {url} is not an SQLite database (the file starts with b'')")
    try:
        con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=60)  # '#', '%', '?' quoted
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            half_created = read_only and "studies" in tables and _half_created(con, tables)
        finally:
            con.close()
        if not read_only:  # a writer needs a writable file: one write in a transaction rolled back changes nothing
            con = sqlite3.connect(str(path), timeout=60, isolation_level=None)
            try:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.execute(f"PRAGMA user_version = {int(version)}")
                finally:
                    con.execute("ROLLBACK")
            finally:
                con.close()
    except sqlite3.Error as e:
        if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            with open(path, "rb") as fh:  # not a database: no SQLite connection of this process holds its locks
                head = fh.read(16)
            if head != _SQLITE_MAGIC:
                raise DataError(f"study storage {url} is not an SQLite database (the file starts with {head!r})") from None
        raise storage_failure(url, e) from None
    if not tables and read_only:
        raise DataError(f"study storage {url} holds no study yet (an empty SQLite database); run a study first")
    if "studies" not in tables and (tables or read_only):
        shown = ", ".join(sorted(tables)[:8]) or "none"
        raise DataError(f"study storage {url} is not an Optuna study storage: an SQLite database with other tables "
                        f"({shown}); pass another --storage")
    if half_created:
        raise DataError(f"study storage {url} holds no study yet (its tables are being created by a writer); run a "
                        "study first, or try again")


def _half_created(con: sqlite3.Connection, tables: set[str]) -> bool:
    """Optuna's tables exist but no study, and Optuna's version rows are not written yet: a writer is creating the
    storage right now (or was killed doing it). A reader must not open it then: Optuna would write the missing
    version rows, through the recovery path of ``_sqlite_reader``, and the writer's own insert of them would fail
    (UNIQUE constraint failed: alembic_version.version_num)."""
    if con.execute("SELECT count(*) FROM studies").fetchone()[0]:
        return False
    for table in ("version_info", "alembic_version"):
        if table not in tables or not con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]:
            return True
    return False


def make_storage(url: str | None, heartbeat: bool = True, grace_period: int | None = None,
                 read_only: bool = False, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url`` (None: env ACCUMOPT_STORAGE, else ``sqlite:///output/studies.db``;
    ``optimizer.paths.resolve_storage``).

    ``read_only``: for commands that only read (list, show, best, compare, export, replay, report): the file must
    exist (nothing is created), SQLite is opened with ``mode=ro`` (no WAL pragma, no table creation), no
    heartbeat. ``create=False``: a missing storage file is refused instead of created (``study delete``,
    ``dashboard``).

    SQLite: WAL journal (readers never block the writer, a commit is one fsync of the WAL) and a 60 s busy
    timeout so several local worker processes never fail with "database is locked". Every RDB storage gets a
    heartbeat so trials left RUNNING by a killed process are failed and retried, never counted as complete.
    ``grace_period``: seconds without a heartbeat after which a RUNNING trial counts as stale (default: env
    ACCUMOPT_HEARTBEAT_GRACE, else 15; the heartbeat interval is min(5, grace // 3), at least 1).
    ``journal:PATH`` selects Optuna's journal-file storage (no heartbeat: a killed trial stays RUNNING, it is
    never counted as finished). ``sqlite:///:memory:`` (or ``sqlite://``) is an in-process InMemoryStorage:
    visible to this process only, so no heartbeat and no worker processes (and nothing to read: refused with
    ``read_only`` or ``create=False``). A URL that names no file, of an unknown kind or whose driver is not
    installed is refused before anything is opened (``_check_url``).
    ``postgresql://`` URLs get an explicit installed driver (``_rdb_url``). RDB and journal storages hold an
    exact per-study trial budget that ``run_study`` sets (``_BudgetRDBStorage``, ``_BudgetJournalStorage``: the
    journal one locks ``PATH.budget.lock``), so any number of workers on any machines end with exactly N trials.
    """
    url = resolve_storage(url)
    if url in IN_MEMORY:
        if read_only or not create:
            raise DataError(f"study storage {url} is an in-process storage: it holds only the studies of the process "
                            "that runs them, so there is nothing to read here; pass a file or server storage "
                            "(sqlite:///PATH, journal:PATH, postgresql://...)")
        return optuna.storages.InMemoryStorage()
    _check_url(url)
    if url.startswith("sqlite:///") and storage_path(url) is not None:
        _check_sqlite_file(url, storage_path(url), read_only, create)
    if url.startswith("journal:") and storage_path(url) is not None:
        _check_journal_file(url, storage_path(url))
    if read_only:
        return _read_only(url)
    jp = storage_path(url) if url.startswith("journal:") else None
    if not create and jp is not None and not jp.exists():
        raise DataError(f"{url}: the journal file {jp} does not exist; run a study first or pass --storage")
    with storage_error(url):
        return _writer(url, heartbeat, grace_period)


IN_MEMORY = ("sqlite:///:memory:", "sqlite://")  # the URLs of an in-process storage
_KINDS = "sqlite:///relative/path, sqlite:////absolute/path, journal:PATH or postgresql://USER@HOST/DB"


def _check_url(url: str) -> None:
    """A storage URL names a file or a database whose driver is installed, before anything is opened or created:
    ``sqlite:///`` or ``journal:`` without a path (SQLAlchemy's ``sqlite:///`` is a private in-memory database per
    connection, where Optuna's tables vanish between two calls), an SQLite URL with too few slashes, an unknown
    kind, or a kind whose driver is missing (``mysql://`` without MySQLdb: Optuna's ImportError) is one line."""
    if url.startswith(("sqlite:///", "journal:")):
        path = storage_path(url)
        if path is None:
            raise DataError(f"study storage {url} names no file; write {_KINDS} (sqlite:///:memory: for a storage "
                            "inside this process)")
        if path.parts[0].startswith("~"):  # neither SQLAlchemy nor Optuna's journal expands it: a folder named '~'
            prefix = "journal:" if url.startswith("journal:") else "sqlite:///"
            raise DataError(f"study storage {url}: '~' is not expanded in a storage URL (it would make a folder "
                            f"named {path.parts[0]!r} here); write the absolute path: {prefix}{os.path.expanduser(path)}")
        return
    if url.startswith("sqlite:"):
        raise DataError(f"study storage {url} is not an SQLite URL: write sqlite:///relative/path or "
                        "sqlite:////absolute/path (three slashes, then the path)")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    rdb, url = url, shown_url(url)
    try:
        dialect = make_url(_rdb_url(rdb)).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise DataError(f"study storage {url} is not a storage URL this tool can open; write {_KINDS}") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise DataError(f"study storage {url}: the database driver of {dialect.name}+{dialect.driver} is not "
                        f"installed ({e}); install it (PostgreSQL: pip install 'accumopt[postgres]'), or pass another "
                        "--storage") from None


def user_attrs_in_one_transaction(study: optuna.Study, attrs: Mapping[str, Any]) -> bool:
    """Write ``attrs`` as user attributes of ``study`` in ONE transaction when its storage is an RDB or journal
    storage from ``make_storage`` (Optuna commits each attribute on its own: a study record of ~30 keys was ~30
    transactions, each an ORM round trip, and on PostgreSQL a network one; on a journal file ~30 appends, each
    taking the file's lock and an fsync); False, nothing written, on any other storage (the caller,
    ``records.write_study``, then writes them one by one)."""
    backend = getattr(study._storage, "_backend", study._storage)  # Optuna wraps an RDB storage in its trial cache
    if isinstance(backend, _BudgetRDBStorage):
        backend.set_study_user_attrs(study._study_id, attrs)
        return True
    if isinstance(study._storage, _BudgetJournalStorage):
        study._storage.set_study_user_attrs(study._study_id, attrs)
        return True
    return False


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """The names of the studies in an opened storage, sorted. Reads no trial: Optuna's study summaries load every
    trial of every study, which made ``study show`` on a storage of 3,600 trials take 9 s."""
    return sorted(optuna.get_all_study_names(storage))


def trial_summary(storage: optuna.storages.BaseStorage, study_name: str,
                  flag_key: str) -> dict[TrialState, dict[str, Any]] | None:
    """One study's trials summed up per state in ONE SQL query, without loading a trial: per ``TrialState``
    ``n`` (trials), ``first_start`` (earliest ``datetime_start``, None when none started), ``max`` / ``min`` (of the
    finite first-objective values, None when none), ``inf_pos`` / ``inf_neg`` (trials whose first value is +inf /
    -inf) and ``flagged`` (trials holding the user attribute ``flag_key`` with a value other than null). None for a
    storage that is not an RDB storage (journal, in-memory): read its trials. ``study list`` read every trial
    through Optuna's ORM instead (~1.9 ms a trial on a slow host: 6.7 s for 3,600)."""
    if not isinstance(storage, optuna.storages.RDBStorage):
        return None
    t, v, a, s = models.TrialModel, models.TrialValueModel, models.TrialUserAttributeModel, models.StudyModel
    vt = models.TrialValueModel.TrialValueType
    finite = case((v.value_type == vt.FINITE, v.value))
    # Optuna >= 5 stores naive UTC (``_datetime_start_utc``) and shows local time; before, the column held local time
    start_utc = getattr(t, "_datetime_start_utc", None)
    start = start_utc if start_utc is not None else t.datetime_start
    q = (select(t.state, func.count(t.trial_id), func.min(start), func.max(finite), func.min(finite),
                func.sum(case((v.value_type == vt.INF_POS, 1), else_=0)),
                func.sum(case((v.value_type == vt.INF_NEG, 1), else_=0)),
                func.sum(case((and_(a.value_json.is_not(None), a.value_json != "null"), 1), else_=0)))
         .select_from(t).join(s, s.study_id == t.study_id)
         .outerjoin(v, and_(v.trial_id == t.trial_id, v.objective == 0))
         .outerjoin(a, and_(a.trial_id == t.trial_id, a.key == flag_key))
         .where(s.study_name == study_name).group_by(t.state))
    with storage.engine.connect() as con:
        rows = con.execute(q).all()

    def local(d: datetime | None) -> datetime | None:  # as Optuna's FrozenTrial.datetime_start shows it
        if d is None or start_utc is None:
            return d
        return d.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)

    return {state: {"n": int(n), "first_start": local(first), "max": hi, "min": lo, "inf_pos": int(ip or 0),
                    "inf_neg": int(ineg or 0), "flagged": int(fl or 0)}
            for state, n, first, hi, lo, ip, ineg, fl in rows}


def _read_only(url: str) -> optuna.storages.BaseStorage:
    path = storage_path(url)
    with storage_error(url):
        if url.startswith("sqlite:///") and path is not None:
            st = _sqlite_reader(url, path)
            st.accumopt_url = url  # how messages name it (its engine's URL is the internal mode=ro one)
            return st
        if url.startswith("journal:"):
            if path is None or not path.exists():
                raise DataError(f"{url}: the journal file {path} does not exist; run a study first or pass --storage")
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        st = optuna.storages.RDBStorage(_rdb_url(url), skip_table_creation=True, skip_compatibility_check=True)
        _check_schema(st)  # Optuna's check, its head revision read once per process
        return st


def _sqlite_reader(url: str, path: Path) -> optuna.storages.BaseStorage:
    """An SQLite storage for reading: ``mode=ro``, no pragma, no table creation, no connection pool (a reader holds
    no connection between calls: a lingering one would keep a stale view of a WAL file its writer has since
    checkpointed and removed). A WAL left by a killed writer needs recovering, which a ``mode=ro`` connection
    cannot do (SQLite says "attempt to write a readonly database"): then the file is opened as SQLite opens it by
    default, still with no pragma and no table creation, so SQLite itself replays the WAL."""
    kw = {"engine_kwargs": {"connect_args": {"timeout": 60}, "poolclass": NullPool}, "skip_table_creation": True,
          "skip_compatibility_check": True}  # checked by _check_schema (the same check, its head read once)
    try:
        # quoted twice: SQLAlchemy decodes its URL, then SQLite the file: URI (a '#' in a folder's name otherwise ended
        # the path, so a reader opened, and created, another file)
        st = optuna.storages.RDBStorage(f"sqlite:///file:{quote(quote(str(path.resolve())))}?mode=ro&uri=true", **kw)
        _check_schema(st)
        st.get_all_studies()
        return st
    except Exception as e:  # noqa: BLE001 - only the recovery case is retried; anything else goes to storage_error
        if "readonly" not in str(_root_cause(e)).lower():
            raise
    st = optuna.storages.RDBStorage(f"sqlite:///{quote(str(path))}", **kw)
    _check_schema(st)
    return st


def _writer(url: str, heartbeat: bool, grace_period: int | None) -> optuna.storages.BaseStorage:
    hb: dict[str, Any] = {}
    if heartbeat:
        cb = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        grace = _grace_period(grace_period)
        hb = dict(heartbeat_interval=max(1, min(5, grace // 3)), grace_period=grace)
        if cb is not None:
            hb["heartbeat_stale_trial_callback"] = _retry_callback(cb)(max_retry=1)
        else:  # optuna < 4.9
            hb["failed_trial_callback"] = _retry_callback(optuna.storages.RetryFailedTrialCallback)(max_retry=1)
    if url.startswith("journal:"):
        path = str(storage_path(url))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return _BudgetJournalStorage(_WholeLinesJournalFile(path), f"{path}.budget.lock")
    if url.startswith("sqlite:///"):
        path = str(storage_path(url) or "")  # the file SQLAlchemy opens for the URL (percent-decoded)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if not Path(path).exists():
                _new_sqlite_storage(Path(path))
            c = sqlite3.connect(path, timeout=60)  # closed here: `with` would only commit, and the connection's
            try:  # reference cycle (its statement cache) would keep it, and the file, open until a garbage collection
                c.execute("PRAGMA journal_mode=WAL")
            finally:
                c.close()
        st = _racing_create(lambda: _BudgetRDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}}, skip_compatibility_check=False, **hb
        ))
        _sqlite_pragmas(st.engine)
        return st
    return _racing_create(lambda: _BudgetRDBStorage(_rdb_url(url), **hb))


def _retry_callback(base: type) -> type:
    """Optuna's retry of a trial failed by the heartbeat check (``base``), whose WAITING copy holds ``RETRY_OF`` (the
    failed trial's number) instead of the failed trial's ``LOST`` note (the copy inherits its user attributes)."""

    class _Retry(base):  # type: ignore[misc, valid-type]
        def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != LOST} | {RETRY_OF: trial.number}
            super().__call__(study, trial)

    return _Retry


def _lost_note(grace: int | None) -> str:
    return (f"no heartbeat for over {grace} s while it ran: the process running it was killed or stopped answering, "
            "so the heartbeat check of a later run failed it; a study's trial is run again once, as a new trial "
            "(its retry_of names this one), a walk-forward window claim frees its window for any worker")


@functools.cache
def _empty_sqlite() -> bytes:
    """An empty Optuna SQLite storage (its tables, version rows and alembic stamp, WAL mode) as bytes, made once per
    process on first use, by Optuna, in a temporary folder (the file it creates for a new SQLite storage, every page
    checkpointed into the file)."""
    with tempfile.TemporaryDirectory(prefix="accumopt-storage-") as d:
        f = Path(d) / "empty.db"
        with contextlib.closing(sqlite3.connect(f)) as c:
            c.execute("PRAGMA journal_mode=WAL")
        _BudgetRDBStorage(f"sqlite:///{f}", engine_kwargs={"connect_args": {"timeout": 60}},
                          skip_compatibility_check=False).engine.dispose()
        with contextlib.closing(sqlite3.connect(f)) as c:  # every page in the file itself, the WAL emptied
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return f.read_bytes()


def _new_sqlite_storage(path: Path) -> None:
    """Create the SQLite storage file ``path`` (which does not exist) as a copy of the empty storage Optuna makes
    (``_empty_sqlite``: made once per process by Optuna itself, so the file is the one Optuna would write), put in
    place with a hard link, atomically: a process that finds the file finds it complete, and when another process
    made ``path`` first, its file stays. Optuna creating a new file itself costs ~13 table creations (each a commit
    and an fsync) and two reads of its ~90 migration scripts: ~75 ms CPU and ~250 ms wall a file on a loaded
    machine, against ~10 ms for opening an existing one. Where hard links fail (a file system without them), Optuna
    creates the file as before."""
    try:
        empty = _empty_sqlite()
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # SQLite's mode for a new file (less umask)
    except (OSError, sqlite3.Error):
        return  # no temporary folder, or a folder this process cannot write in: Optuna creates the file, as before
        # (and its error says why it cannot)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(empty)
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: its file is the storage
    except OSError:
        pass  # no hard links here (or no room): Optuna creates the file, as before
    finally:
        tmp.unlink(missing_ok=True)


def _lost_create_race(e: BaseException) -> bool:
    """Another process created the storage's tables ("already exists") or wrote Optuna's version rows (a UNIQUE /
    duplicate-key failure on ``alembic_version`` or ``version_info``) at the same moment."""
    msg = str(_root_cause(e)).lower()
    return "already exists" in msg or (("unique" in msg or "duplicate key" in msg)
                                       and ("alembic_version" in msg or "version_info" in msg))


def _racing_create(make: Any) -> Any:
    """``make()``, retried when another process created Optuna's tables or version rows at the same moment (two
    processes opening a new storage together: the loser's CREATE TABLE fails with "already exists", or its insert
    of the version rows with a UNIQUE failure; they are there now)."""
    for attempt in range(5):
        try:
            return make()
        except Exception as e:  # noqa: BLE001 - only the create-race is retried; anything else is re-raised
            if not _lost_create_race(e) or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _sqlite_pragmas(engine: Any) -> None:
    """WAL + synchronous=NORMAL on every SQLite connection (an SQLAlchemy 'connect' listener).

    In WAL mode, NORMAL syncs the WAL at checkpoints instead of at every commit: a committed trial survives a crash
    or SIGKILL of the process (the WAL is in the OS page cache and is replayed on open); only a power loss can drop
    the last commits. The file stays an ordinary SQLite database for optuna-dashboard and ``optuna.load_study``.
    """

    def _pragmas(dbapi_con, record) -> None:
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", _pragmas)
    engine.dispose()  # connections opened while creating the schema are reopened with the pragmas


def _grace_period(value: int | None) -> int:
    raw: Any = value if value is not None else os.environ.get("ACCUMOPT_HEARTBEAT_GRACE") or 15
    try:
        grace = int(raw)
    except (TypeError, ValueError):
        grace = 0
    if grace < 2:
        raise ParameterError(f"heartbeat grace_period (env ACCUMOPT_HEARTBEAT_GRACE) must be an integer >= 2 seconds, got {raw!r}")
    return grace


def _rdb_url(url: str) -> str:
    """A bare ``postgresql://`` / ``postgres://`` URL with an explicit, installed driver (psycopg2 first).

    SQLAlchemy >= 2.1 maps a bare ``postgresql://`` to psycopg 3 (and rejects ``postgres://``), while the
    ``postgres`` extra installs psycopg2-binary: without this, every PostgreSQL URL failed to import its driver.
    A URL naming its driver (``postgresql+psycopg://``) is left alone.
    """
    head, sep, rest = url.partition("://")
    if sep and head in ("postgresql", "postgres"):
        for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
            if importlib.util.find_spec(module) is not None:
                return f"postgresql+{driver}://{rest}"
        raise AccumoptError(f"storage {head}://...: no PostgreSQL driver is installed; "
                            "install it with `pip install 'accumopt[postgres]'` (psycopg2-binary)")
    return url


def has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    """Whether ``storage`` keeps heartbeats (an RDB storage from ``make_storage``): only then can a dead worker's
    RUNNING trial, or claim, be told from a live one."""
    return is_heartbeat_enabled(storage)


def heartbeat_age(storage: optuna.storages.BaseStorage, trial_id: int) -> float | None:
    """Seconds since trial ``trial_id``'s last heartbeat, by the database's clock as Optuna's stale check reads it;
    None where it cannot be told: not an RDB storage (journal, in-memory: no heartbeat), or no heartbeat stored (a
    trial run without one: ``study run --jobs 1`` stores a trial only once it finished)."""
    if not isinstance(storage, optuna.storages.RDBStorage):
        return None
    with _create_scoped_session(storage.scoped_session) as session:
        beat = session.execute(select(models.TrialHeartbeatModel.heartbeat)
                               .where(models.TrialHeartbeatModel.trial_id == trial_id)).scalar()
        if beat is None:
            return None
        now = session.execute(func.now()).scalar()
    return (now.replace(tzinfo=None) - beat.replace(tzinfo=None)).total_seconds()


def stale_grace() -> int:
    """The heartbeat grace period a run uses (env ACCUMOPT_HEARTBEAT_GRACE, else 15 s): a RUNNING trial beaten
    longer ago than this is failed and run again by the next run of its study."""
    return _grace_period(None)


def fail_stale_no_retry(storage: optuna.storages.BaseStorage, study_id: int) -> list[int]:
    """Mark FAIL the RUNNING trials of ``study_id`` whose heartbeat is older than the grace period, WITHOUT the
    storage's retry callback (``optuna.storages.fail_stale_trials`` would queue a WAITING copy: right for an
    objective's trial, wrong for a walk-forward window claim). The trial ids failed by this call."""
    if not has_heartbeat(storage):
        return []
    failed = []
    for tid in storage._get_stale_trial_ids(study_id):
        try:
            if storage.set_trial_state_values(tid, state=TrialState.FAIL):
                failed.append(tid)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another process failed it first
    return failed


# ---------------------------------------------------------------------------------------------------------
# an exact trial budget shared by independent workers

# States that hold one of the study's N trial slots: finished, in flight, or queued (enqueued seeds and
# heartbeat retries). FAIL frees the slot (its retry, if any, takes it back as WAITING).
_SLOT_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class StudyFull(Exception):
    """A new trial was refused: the study's trial budget is used up (control flow, caught by run_study)."""


def _insert_numbered_trial(cur: Any, study_id: int, state: str, start: str, end: str | None,
                           budget: int | None) -> tuple[int, int]:
    """SQLite, inside the caller's transaction: insert a trial row (which takes the write lock, so the counts
    below are final), refuse it (``StudyFull``) when the study's trials that hold the budget, this one counted,
    are then more than ``budget``, and give it its number (the count of the study's trials before it, as Optuna
    numbers). Returns (trial id, number)."""
    cur.execute("INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
                "VALUES (NULL, ?, ?, ?, ?)", (study_id, state, start, end))
    tid = int(cur.lastrowid)
    if budget is not None:
        marks = ", ".join("?" * len(_SLOT_STATES))
        taken = cur.execute(f"SELECT count(*) FROM trials WHERE study_id = ? AND state IN ({marks})",
                            (study_id, *(st.name for st in _SLOT_STATES))).fetchone()[0]
        if taken > budget:
            raise StudyFull(f"study id {study_id}: {taken - 1} trials already hold the budget of {budget}")
    number = int(cur.execute("SELECT count(*) FROM trials WHERE study_id = ? AND trial_id < ?",
                             (study_id, tid)).fetchone()[0])
    cur.execute("UPDATE trials SET number = ? WHERE trial_id = ?", (number, tid))
    return tid, number


_CHILD_MODELS = (models.TrialValueModel, models.TrialParamModel, models.TrialIntermediateValueModel,
                 models.TrialUserAttributeModel, models.TrialSystemAttributeModel)


def _child_rows(tid: int, frozen: optuna.trial.FrozenTrial) -> list[tuple[str, tuple[str, ...], list[tuple]]]:
    """(table, columns, rows) of a finished trial's values, params, fold reports and attributes, encoded as
    Optuna's models store them (enums by name, JSON text)."""
    def value(v: float) -> tuple:
        stored, kind = models.TrialValueModel.value_to_stored_repr(v)
        return stored, kind.name

    def inter(v: float) -> tuple:
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(v)
        return stored, kind.name

    to_json = optuna.distributions.distribution_to_json
    return [
        ("trial_values", ("trial_id", "objective", "value", "value_type"),
         [(tid, i, *value(v)) for i, v in enumerate(frozen.values or [])]),
        ("trial_params", ("trial_id", "param_name", "param_value", "distribution_json"),
         [(tid, k, d.to_internal_repr(frozen.params[k]), to_json(d)) for k, d in frozen.distributions.items()]),
        ("trial_intermediate_values", ("trial_id", "step", "intermediate_value", "intermediate_value_type"),
         [(tid, step, *inter(v)) for step, v in frozen.intermediate_values.items()]),
        ("trial_user_attributes", ("trial_id", "key", "value_json"),
         [(tid, k, json.dumps(v)) for k, v in frozen.user_attrs.items()]),
        ("trial_system_attributes", ("trial_id", "key", "value_json"),
         [(tid, k, json.dumps(v)) for k, v in frozen.system_attrs.items()]),
    ]


class _BudgetRDBStorage(optuna.storages.RDBStorage):
    """RDBStorage that creates a NEW trial only while fewer than the study's budget of trials hold a slot.

    The count runs inside Optuna's own trial-creation transaction, after it locked the study row (PostgreSQL,
    MySQL: ``SELECT ... FOR UPDATE``; SQLite: the single writer lock taken by the INSERT), so two workers on two
    machines can never both take the last slot. Trials made from a template (enqueue, heartbeat retry) are
    never refused. ``MaxTrialsCallback`` alone cannot do this: it runs after a trial, so workers whose trials
    finish together each start one more.

    With a heartbeat, a new trial gets its first heartbeat in the same transaction, and a popped WAITING trial
    right after the pop: Optuna never marks a RUNNING trial without any heartbeat stale, so a worker killed
    between ``ask`` and its heartbeat thread's first beat used to leave a trial RUNNING forever.
    """
    def __init__(self, *args: Any, skip_compatibility_check: bool = False, **kwargs: Any) -> None:
        self._budgets: dict[int, int] = {}
        self._pending: list[tuple] = []
        super().__init__(*args, skip_compatibility_check=True, **kwargs)
        if not skip_compatibility_check:
            _check_schema(self)  # Optuna's check, its head revision read once per process

    # -- fewer commits: a trial's suggested params are written with its next write (a fold report, an attribute
    # or its final state) in ONE transaction instead of one commit per suggest_* call. This process's trial cache
    # holds them at once; other processes see them from the trial's first report on.
    def _set_trial_param(self, trial_id, param_name, param_value_internal, distribution, previous_distribution):
        self._pending.append((trial_id, param_name, param_value_internal, distribution, previous_distribution))

    def _flush_params(self, session) -> None:
        pending, self._pending = self._pending, []
        for p in pending:
            self._set_trial_param_without_commit(session, *p)

    def set_trial_intermediate_value(self, trial_id, step, intermediate_value) -> None:
        with _create_scoped_session(self.scoped_session, True) as session:
            self._flush_params(session)
            self._set_trial_intermediate_value_without_commit(session, trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id, key, value) -> None:
        with _create_scoped_session(self.scoped_session, True) as session:
            self._flush_params(session)
            self._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key, value)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale RUNNING trials (every heartbeat check, ``fail_stale_trials`` and ``fail_stale_no_retry``,
        asks this before failing them), each given its ``LOST`` note first, while it can still be written: a trial
        failed by the check said nothing of why (no parameters either, for a ``--jobs`` trial killed while it ran)."""
        ids = super()._get_stale_trial_ids(study_id)
        for tid in ids:
            try:
                self.set_trial_user_attr(tid, LOST, _lost_note(self.grace_period or 2 * self.heartbeat_interval))
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another process failed (or a live worker finished) it meanwhile
        return ids

    def _flush_pending(self) -> None:
        if self._pending:
            with _create_scoped_session(self.scoped_session, True) as session:
                self._flush_params(session)

    def set_trial_budget(self, study_id: int, budget: int | None) -> None:
        self._budgets[study_id] = budget

    def set_study_user_attrs(self, study_id: int, attrs: Mapping[str, Any]) -> None:
        """Optuna's ``set_study_user_attr`` for each of ``attrs`` (the same rows), in ONE transaction."""
        with _create_scoped_session(self.scoped_session, True) as session:
            study = models.StudyModel.find_or_raise_by_id(study_id, session)
            for key, value in attrs.items():
                attribute = models.StudyUserAttributeModel.find_by_study_and_key(study, key, session)
                if attribute is None:
                    session.add(models.StudyUserAttributeModel(study_id=study_id, key=key, value_json=json.dumps(value)))
                else:
                    attribute.value_json = json.dumps(value)

    def append_finished_trial(self, study_id: int, frozen: optuna.trial.FrozenTrial,
                              budget: int | None = None) -> tuple[int, int]:
        """``write_finished_trial`` of a new row, returning (trial id, number). ``budget``: refuse the trial
        (``StudyFull``, nothing written) when the study's trials that hold the budget (complete, pruned, running,
        waiting) would then be more than ``budget``, counted in the write's own transaction, as ``claim_trial``
        counts: the single-writer path stays exact when another process adds trials meanwhile."""
        got = self._write_finished(study_id, frozen, None, budget)
        assert got is not None  # a new row is always written (or StudyFull raised)
        return got

    def write_finished_trial(self, study_id: int, frozen: optuna.trial.FrozenTrial,
                             trial_id: int | None = None) -> int | None:
        """Store a FINISHED trial (run elsewhere, e.g. on an in-process copy of the study) in ONE transaction of
        a few bulk statements (SQLAlchemy Core: the trial row, then its values, params, fold reports and
        attributes, each one ``executemany``), in Optuna's own tables and encodings, so the file stays a plain
        Optuna storage. ``create_new_trial(template_trial=...)`` writes the same rows through the ORM at about 50
        statements and 45 ms per trial; this is what makes the single-worker SQLite path as fast as in-memory.

        The trial number is the count of the study's trials stored before this one, computed after the insert
        (the row holds SQLite's write lock; PostgreSQL / MySQL lock the study row first), as Optuna does. The trial
        budget does not apply (the trial is already finished; the caller owns the study's trial count).

        ``trial_id``: write it into that stored row instead, a RUNNING trial this process claimed (``study run
        --jobs``: a new trial's row, or a popped WAITING one), keeping the row's number: its state and times are
        set and its child rows replaced by the finished trial's, in the same one transaction, only while the row is
        still RUNNING (None, nothing written, when it is not: failed as stale meanwhile, its retry queued)."""
        got = self._write_finished(study_id, frozen, trial_id, None)
        return None if got is None else got[0]

    def _write_finished(self, study_id: int, frozen: optuna.trial.FrozenTrial, trial_id: int | None,
                        budget: int | None) -> tuple[int, int] | None:
        if not frozen.state.is_finished():
            raise ValueError(f"write_finished_trial needs a finished trial, got state {frozen.state.name}")
        utc = lambda d: None if d is None else d.astimezone(timezone.utc).replace(tzinfo=None)  # noqa: E731
        now = datetime.now()
        start, end = utc(frozen.datetime_start or now), utc(frozen.datetime_complete or now)
        budget = budget if frozen.state in _SLOT_STATES else None  # a FAIL holds no place in the budget
        if self.engine.name == "sqlite":
            return self._write_finished_sqlite(study_id, frozen, start, end, trial_id, budget)
        T = models.TrialModel.__table__
        tables = {m.__tablename__: m.__table__ for m in _CHILD_MODELS}
        with _create_scoped_session(self.scoped_session) as session:
            if trial_id is not None:
                done = session.execute(update(T).where(T.c.trial_id == trial_id, T.c.state == TrialState.RUNNING)
                                       .values(state=frozen.state, datetime_start=start,
                                               datetime_complete=end)).rowcount
                if done != 1:
                    return None
                tid = trial_id
                number = session.execute(select(T.c.number).where(T.c.trial_id == tid)).scalar_one()
                for table in tables.values():
                    session.execute(table.delete().where(table.c.trial_id == tid))
            else:
                models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
                if budget is not None:
                    taken = session.execute(select(func.count()).select_from(T).where(
                        T.c.study_id == study_id, T.c.state.in_(_SLOT_STATES))).scalar_one()
                    if taken + 1 > budget:
                        raise StudyFull(f"study id {study_id}: {taken} trials already hold the budget of {budget}")
                tid = session.execute(T.insert().values(
                    study_id=study_id, number=None, state=frozen.state, datetime_start=start,
                    datetime_complete=end)).inserted_primary_key[0]
                number = session.execute(select(func.count()).select_from(T).where(
                    T.c.study_id == study_id, T.c.trial_id < tid)).scalar_one()
                session.execute(update(T).where(T.c.trial_id == tid).values(number=number))
            for table, cols, batch in _child_rows(tid, frozen):
                if batch:
                    session.execute(tables[table].insert(), [dict(zip(cols, r)) for r in batch])
        return int(tid), int(number)

    def _write_finished_sqlite(self, study_id: int, frozen: optuna.trial.FrozenTrial, start: datetime,
                               end: datetime, trial_id: int | None, budget: int | None) -> tuple[int, int] | None:
        """SQLite: the same rows through the driver itself (one pooled connection of the engine, so the WAL /
        synchronous pragmas hold), in its one implicit transaction; values encoded as SQLAlchemy stores them
        (enums by name, DATETIME as 'YYYY-MM-DD HH:MM:SS.ffffff')."""
        stamp = lambda d: d.strftime("%Y-%m-%d %H:%M:%S.%f")  # noqa: E731 - SQLAlchemy's SQLite DATETIME text
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if trial_id is not None:  # the claimed row, while it is RUNNING (the UPDATE takes the write lock)
                cur.execute("UPDATE trials SET state = ?, datetime_start = ?, datetime_complete = ? "
                            "WHERE trial_id = ? AND state = 'RUNNING'",
                            (frozen.state.name, stamp(start), stamp(end), trial_id))
                if cur.rowcount != 1:
                    cur.close()
                    raw.rollback()
                    return None
                tid = int(trial_id)
                number = cur.execute("SELECT number FROM trials WHERE trial_id = ?", (tid,)).fetchone()[0]
                for m in _CHILD_MODELS:
                    cur.execute(f"DELETE FROM {m.__tablename__} WHERE trial_id = ?", (tid,))
            else:
                tid, number = _insert_numbered_trial(cur, study_id, frozen.state.name, stamp(start), stamp(end),
                                                     budget)
            for table, cols, batch in _child_rows(tid, frozen):
                if batch:
                    cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                    batch)
            cur.close()
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        return tid, int(number)

    def claim_trial(self, study_id: int) -> tuple[int, int]:
        """Create a new RUNNING trial under the study's trial budget (``StudyFull`` when it is held), with its
        first heartbeat: what ``create_new_trial`` does, returning (trial id, number). On SQLite in ONE
        transaction of four statements through the driver (Optuna's ORM path and the number's read back cost
        ~5 ms of CPU a trial: ``study run --jobs`` claims a row for each trial it runs, ``_pool``); elsewhere
        Optuna's own ``create_new_trial``."""
        if self.engine.name != "sqlite":
            tid = self.create_new_trial(study_id)
            return tid, self.get_trial_number_from_id(tid)
        stamp = datetime.now(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        budget = self._budgets.get(study_id)
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            tid, number = _insert_numbered_trial(cur, study_id, "RUNNING", stamp, None, budget)
            if self.heartbeat_interval is not None:  # DB server time, like every beat (record_heartbeat)
                cur.execute("INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (?, CURRENT_TIMESTAMP)", (tid,))
            cur.close()
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        return tid, int(number)

    def _get_prepared_new_trial(self, study_id, template_trial, session):
        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        running = template_trial is None or template_trial.state == TrialState.RUNNING  # (a claim's template)
        if running and self.heartbeat_interval is not None:
            session.add(models.TrialHeartbeatModel(trial_id=trial.trial_id))  # DB server time, like every beat
        budget = self._budgets.get(study_id)
        if template_trial is None and budget is not None:
            taken = (session.query(models.TrialModel)
                     .filter(models.TrialModel.study_id == study_id, models.TrialModel.state.in_(_SLOT_STATES))
                     .count())  # includes the trial being created
            if taken > budget:
                raise StudyFull(f"study id {study_id}: {taken - 1} trials already hold the budget of {budget}")
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        self._flush_pending()
        if state == TrialState.RUNNING and values is None:
            ok = self._pop_waiting(trial_id)
        else:
            ok = super().set_trial_state_values(trial_id, state, values)
        if ok and state == TrialState.RUNNING and self.heartbeat_interval is not None:
            self.record_heartbeat(trial_id)  # a popped WAITING trial (retry, enqueued seed)
        return ok

    def _pop_waiting(self, trial_id: int) -> bool:
        """WAITING -> RUNNING in ONE conditional UPDATE (True: this process took the trial). Optuna reads the state,
        then writes it: on SQLite (no row lock; pysqlite starts the transaction at the write) two workers popping
        the same enqueued seed or heartbeat retry both read WAITING and both ran it, one trial counted twice
        against the workers' quotas (the study ended one trial short) and the second to finish failing its worker
        (UpdateFinishedTrialError). A finished trial raises that error, as Optuna's own check does."""
        T = models.TrialModel.__table__
        with _create_scoped_session(self.scoped_session) as session:
            # datetime_start holds naive UTC: Optuna's model converts on its attribute, this Core UPDATE writes the
            # column itself (the machine's local time there showed the trial's start 9 hours late in Tokyo)
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            took = session.execute(update(T).where(T.c.trial_id == trial_id, T.c.state == TrialState.WAITING)
                                   .values(state=TrialState.RUNNING, datetime_start=now)).rowcount
            if took != 1:
                self.check_trial_is_updatable(trial_id, models.TrialModel.find_or_raise_by_id(trial_id, session).state)
        return took == 1


class _WholeLinesJournalFile(JournalFileBackend):
    """Optuna's journal file, whose append that fails (a full disk, a file size limit) is cut back to the size the
    file had: it keeps whole lines only. Optuna's own append leaves the part it wrote; the next append completes
    it into a line no JSON reader accepts, and every later read of the journal fails (JSONDecodeError) with every
    trial in it. The size is taken under the journal's lock, so no other process appends in between."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        with get_lock_file(self._lock):
            size = os.path.getsize(self._file_path)
            try:
                with open(self._file_path, "ab") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException as e:
                os.truncate(self._file_path, size)
                if isinstance(e, OSError) and e.errno is not None and e.filename is None:  # name the journal
                    raise OSError(e.errno, e.strerror or str(e), self._file_path) from e
                raise


class _BudgetJournalStorage(optuna.storages.JournalStorage):
    """JournalStorage with the same budget; count + create run under an exclusive ``flock`` on ``lock_path``
    (the journal's own lock covers one append only). Killed holders release it with their file descriptor."""

    def __init__(self, backend: Any, lock_path: str) -> None:
        self._budgets: dict[int, int] = {}
        self._budget_lock = lock_path
        super().__init__(backend)

    def set_trial_budget(self, study_id: int, budget: int | None) -> None:
        self._budgets[study_id] = budget

    def set_study_user_attrs(self, study_id: int, attrs: Mapping[str, Any]) -> None:
        """Optuna's ``set_study_user_attr`` for each of ``attrs``: the same log entries, one per attribute, in the
        same order, written in ONE append (one lock and one fsync of the journal file instead of one each)."""
        from optuna.storages.journal._storage import JournalOperation

        if not attrs:
            return  # (an append of no entry would write an empty line)
        with self._thread_lock:
            worker = self._replay_result.worker_id
            self._backend.append_logs([{"op_code": JournalOperation.SET_STUDY_USER_ATTR, "worker_id": worker,
                                        "study_id": study_id, "user_attr": {k: v}} for k, v in attrs.items()])
            self._sync_with_backend()

    def create_new_trial(self, study_id: int, template_trial=None) -> int:
        budget = self._budgets.get(study_id)
        if template_trial is not None or budget is None:
            return super().create_new_trial(study_id, template_trial)
        with open(self._budget_lock, "a") as fh:
            t_end = time.monotonic() + 120
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > t_end:
                        raise AccumoptError(f"{self._budget_lock}: trial-budget lock held for over 120 s") from None
                    time.sleep(0.01)
            try:
                taken = len(self.get_all_trials(study_id, deepcopy=False, states=_SLOT_STATES))
                if taken >= budget:
                    raise StudyFull(f"study id {study_id}: {taken} trials already hold the budget of {budget}")
                return super().create_new_trial(study_id)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
