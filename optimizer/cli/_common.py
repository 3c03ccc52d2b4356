"""Shared pieces of the command line: options, output helpers and the error-handling group.

Every ``accumopt`` process imports this module, so it imports no data library at its top: pandas and numpy load in
the helpers that format a frame or a value (a command that prints one has loaded them already), and DuckDB is never
imported here (an error can only be DuckDB's when DuckDB is loaded). ``accumopt --version`` stays that cheap.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from optimizer.cli._interrupt import EXIT_INTERRUPTED, print_interrupted
from optimizer.errors import (AccumoptError, DataError, Interrupted, ParameterError, is_query_interrupt,
                              is_storage_failure, machine_error, no_room)
from optimizer.paths import CACHE_ENV, DB_ENV, OUTPUT_ENV, STORAGE_ENV, caching_under, not_utf8, shown_name
from optimizer.report.terminal import Column, FrameView, print_command, print_frame, print_record

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "console", "err_console", "make_console", "shared_options", "wait_option", "format_option", "progress_enabled", "echo_json",
    "print_table", "print_kv", "print_cmd", "table_options", "warn_stale_metrics", "Column", "ErrorGroup",
]

def make_console(stderr: bool = False, **kw: Any) -> Console:
    """A rich Console for the command line. With env ``NO_COLOR`` set to anything but ``""`` (no-color.org) it
    writes no escape code at all: rich's own reading of NO_COLOR drops the colours but still wrote bold and dim
    (``\x1b[1m``, ``\x1b[2m``) to a terminal. ``TERM=dumb`` and a pipe or file get none either (rich's rules)."""
    import os

    if os.environ.get("NO_COLOR", "") != "":
        kw.setdefault("color_system", None)
    return _Console(stderr=stderr, **kw)


class PipeClosed(BrokenPipeError):
    """The reader of the command's output went away (``accumopt study list | head -1``): the command stops quietly
    with exit code 0 (``ErrorGroup``), as ripgrep does."""


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich's own reaction (exit code 1, while a closed pipe met by ``click.echo`` exited 0 or 1 by timing) is
        replaced by the command line's one rule for a closed pipe (``ErrorGroup``)."""
        self.quiet = True
        raise PipeClosed(32, "the reader of the output went away")


console = make_console()
err_console = make_console(stderr=True)


# ------------------------------------------------------------------------------------------------ shared options
_SHARED = {
    "db": (click.Path(dir_okay=False), f"DuckDB store. Precedence: this flag > env {DB_ENV} > (a command that reads "
                                       "a spec) the spec's [data].database > <out>/darkpool.duckdb."),
    "storage": (None, f"Optuna storage URL. Precedence: this flag > env {STORAGE_ENV} > the spec's [run].storage > "
                      "sqlite:///<out>/studies.db (journal:PATH for a journal file, postgresql://... for many machines)."),
    "out": (click.Path(file_okay=False), f"Output root (env {OUTPUT_ENV}, default output): every file the command "
                                         "writes goes in a per-run folder under it, and the default store and "
                                         "storage live in it (and <out>/.cache/: results reused by later commands; "
                                         f"env {CACHE_ENV}=off turns it off)."),
}
_UNUSED = {"db": "it reads no DuckDB store", "storage": "it reads no study storage",
           "out": "it writes no file and opens no default store"}


def shared_options(*uses: str, db_help: str | None = None) -> Callable[[Callable], Callable]:
    """``--db``, ``--storage`` and ``--out`` on a command (every command takes all three; defaults and precedence:
    ``optimizer.paths``). The callback receives those in ``uses`` (None when not given: the library resolves the
    environment, the spec and the default); one it does not use is refused when given, never silently ignored.
    ``db_help``: the help of ``--db`` of a command whose store is found another way (``scan``)."""
    bad = set(uses) - set(_SHARED)
    if bad:
        raise ParameterError(f"shared options must be among {', '.join(_SHARED)}, got {', '.join(sorted(bad))}")

    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, **kw: Any) -> Any:
            for name in _SHARED:
                value = kw.pop(name, None) if name not in uses else kw.get(name)
                if name not in uses and value is not None:
                    path = click.get_current_context().command_path
                    raise ParameterError(f"{path} does not use --{name} ({_UNUSED[name]}); leave it out, got --{name}={value}")
                if value is not None and not_utf8(str(value)):  # bytes of a name that are no UTF-8
                    shown = shown_name(str(value))
                    raise ParameterError(f"--{name} must be valid UTF-8 text (DuckDB, SQLite URLs and Parquet take "
                                         f"no other), got --{name}={shown!r}; rename it")
            if "out" not in uses:
                return f(*args, **kw)
            with caching_under(kw.get("out")):  # what the command computes and may reuse later: <out>/.cache/
                return f(*args, **kw)

        for name in reversed(list(_SHARED)):
            typ, help_ = _SHARED[name]
            help_ = db_help if name == "db" and db_help is not None else help_
            wrapper = click.option(f"--{name}", name, default=None, type=typ,
                                   help=help_ if name in uses else f"Not used by this command ({_UNUSED[name]}).")(wrapper)
        return wrapper
    return deco


_WAIT_HELP = ("Seconds to wait for the DuckDB store while another process holds it (an ingest or evening writing "
              "it, a study loading its panel, a notebook's connection), trying again; 0: fail at once naming that "
              "process.")


def wait_option(default: float = 0.0, passed: bool = False) -> Callable[[Callable], Callable]:
    """``--wait SECONDS`` of a command that opens the store (``store.lock_wait``): every store the command opens
    waits up to that long for another process's lock. A negative or NaN value is refused naming --wait.
    ``passed``: the callback receives ``wait`` (checked) and applies it itself (``evening``)."""

    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, **kw: Any) -> Any:
            from optimizer.data.store import checked_wait, lock_wait  # DuckDB: not at this module's import

            wait = checked_wait(kw.pop("wait"), "--wait")
            if passed:
                return f(*args, wait=wait, **kw)
            with lock_wait(wait):
                return f(*args, **kw)

        return click.option("--wait", "wait", type=float, default=default, show_default=True, metavar="SECONDS",
                            help=_WAIT_HELP)(wrapper)
    return deco


def format_option(*choices: str) -> Callable[[Callable], Callable]:
    choices = choices or ("table", "json")

    def deco(f: Callable) -> Callable:
        return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
                            help="Output format: a terminal table, or JSON for scripts.")(f)
    return deco


def progress_enabled(fmt: str = "table") -> bool:
    """Whether a long command shows progress (bars, stage lines) on stderr: only for a person watching it, i.e.
    stderr is a terminal, the command prints its table (not ``--format json``) and no CI runs it (env ``CI`` set
    to anything but ``""``, ``0`` or ``false``, as CI services set ``CI=true``). A pipe, a script or a CI log gets
    none."""
    import os

    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false")
    return fmt == "table" and sys.stderr.isatty() and not ci


def echo_json(obj: Any) -> None:
    """Print ``obj`` as the one JSON document of ``--format json``: strict JSON (a NaN or infinity, a Python float or
    a numpy one, anywhere in it, is null: ``json.dumps`` wrote them as the bare words NaN / Infinity, which strict
    parsers such as ``jq`` or JavaScript's ``JSON.parse`` refuse), session dates YYYY-MM-DD (``_jsonable``)."""
    click.echo(json.dumps(_finite(obj), default=_jsonable, indent=2, sort_keys=False, allow_nan=False))


def _finite(o: Any) -> Any:
    """``o`` with every non-finite float (numpy's included: np.float64 is a float) as None, in dicts, lists and
    tuples; any other value as it is."""
    if isinstance(o, float):
        return o if o == o and o not in (float("inf"), float("-inf")) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if type(o).__module__ == "numpy" and getattr(o, "dtype", None) is not None and o.dtype.kind == "f":
        return _finite(o.tolist())  # a numpy array or a float32 scalar (not a float subclass)
    return o


def _is_day(v: Any) -> bool:
    """One value that is a session date: a ``datetime.date``, or a tz-naive datetime (``pd.Timestamp`` too) at
    midnight exactly; a value with a time of day is a real time."""
    if isinstance(v, dt.datetime):
        return v.tzinfo is None and v.time() == dt.time() and getattr(v, "nanosecond", 0) == 0
    return isinstance(v, dt.date)


def _is_aware(v: Any) -> bool:
    """A real time that states its zone (NaT states none)."""
    return isinstance(v, dt.datetime) and v.tzinfo is not None


def _is_session_date(s: pd.Series) -> bool:
    """A column of session dates: ``datetime.date`` objects (DuckDB DATE), or tz-naive datetimes all at midnight.
    A column holding a time of day (a study's ``created``, a trial's start) is a real time, not a session date."""
    import pandas as pd

    vals = s.dropna()
    if not len(vals):
        return False
    if pd.api.types.is_datetime64_any_dtype(s):
        return getattr(s.dt, "tz", None) is None and bool((s.dropna() == s.dropna().dt.normalize()).all())
    if s.dtype == object:
        return bool(vals.map(_is_day).all())
    return False


def session_days(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its session-date columns as YYYY-MM-DD text (never ``...T00:00:00.000`` or epoch milliseconds):
    the one form every ``--format json`` writes a session date in. Real times are left as they are."""
    import pandas as pd

    days = {c: pd.to_datetime(df[c]).dt.strftime("%Y-%m-%d") for c in df.columns if _is_session_date(df[c])}
    return df.assign(**days) if days else df


def frame_json(df: pd.DataFrame) -> str:
    """A frame as the JSON records ``--format json`` prints (session dates YYYY-MM-DD, real times ISO 8601); a float
    column's numbers exact (the shortest text that reads back as the same float; pandas' ``to_json`` keeps 10
    digits), a NaN or infinity as null."""
    import math

    import pandas as pd

    records = json.loads(session_days(df).to_json(orient="records", date_format="iso", date_unit="us"))
    for c in df.columns:  # a time with its zone keeps its offset (to_json would write it in UTC, as ...Z)
        if isinstance(df[c].dtype, pd.DatetimeTZDtype) or (df[c].dtype == object and df[c].map(_is_aware).any()):
            for rec, v in zip(records, df[c].tolist()):
                rec[c] = v.isoformat() if _is_aware(v) else rec[c]
    for c in df.columns:
        if df[c].dtype.kind == "f":
            for rec, v in zip(records, df[c].tolist()):
                rec[c] = v if math.isfinite(v) else None
    return json.dumps(records, indent=2, separators=(",", ":"))  # the layout to_json wrote: "name":"s"


def _jsonable(o: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if _is_day(o):
        return o.strftime("%Y-%m-%d")  # a session date
    if isinstance(o, dt.datetime):  # pd.Timestamp too: a real time, as before
        return o.isoformat() if isinstance(o, pd.Timestamp) else str(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def table_options(f: Callable) -> Callable:
    """``--columns`` and ``--wide`` of a command that prints a table (``print_table``'s ``select`` and ``wide``).
    They choose what the terminal table shows: with another ``--format`` (json, csv: every column, never abridged)
    either is refused naming both, never silently ignored."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kw: Any) -> Any:
        fmt = kw.get("fmt", "table")
        given = [n for n, v in (("--columns", kw.get("columns")), ("--wide", kw.get("wide"))) if v]
        if given and fmt != "table":
            raise ParameterError(f"{' and '.join(given)} choose{'s' if len(given) == 1 else ''} what the terminal "
                                 f"table shows; --format {fmt} always writes every column: leave out {given[0]} or "
                                 f"use --format table, got {' '.join(given)} with --format {fmt}")
        return f(*args, **kw)

    wrapper = click.option("--wide", is_flag=True, help="Show every column at full width (lines may exceed the "
                                                        "terminal; --format table only).")(wrapper)
    return click.option("--columns", "columns", default=None, metavar="A,B,...",
                        help="Show exactly these columns (names as in --format json/csv; --format table only).")(wrapper)


def print_table(rows: pd.DataFrame | Iterable[dict], title: str | None = None,
                columns: Iterable[Column | str] | None = None, key: Sequence[str] | None = None,
                select: Sequence[str] | str | None = None, wide: bool = False, caption: str | None = None,
                hint: str | None = "--columns A,B,... or --wide") -> FrameView:
    """Print a table that fits the terminal (80 columns in a pipe): the ``key`` columns by default (all when
    None) as far as they fit, ``select`` exactly, every column with ``wide``; numbers rounded; never a cut or
    wrapped cell (``optimizer.report.terminal.print_frame``). ``columns``: display specs (label, format, style)."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return print_frame(df, console, title=title, columns=columns, key=key, select=select, wide=wide,
                       caption=caption, hint=hint)


def warn_stale_metrics(db: str | Path) -> list[str]:
    """Say once, on stderr, that the store's daily_metrics is older than its raw data
    (``metrics.store_metrics_staleness``), for a command that reads daily_metrics; the warning lines (``warning:
    ...``); the message for a ``--format json`` document's ``warnings`` (as a list), [] when it is current."""
    from optimizer.data.metrics import store_metrics_staleness

    stale = store_metrics_staleness(db)
    if not stale:
        return []
    err_console.print(f"warning: {stale}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    return [stale]


def print_kv(record: Mapping[str, Any] | Iterable[tuple[str, Any]], title: str | None = None) -> None:
    """Print one record vertically: ``key  value`` lines (``optimizer.report.terminal.print_record``)."""
    print_record(record, console, title=title)


def print_cmd(label: str, command: str) -> None:
    """A command the user should copy: ``label`` then the command alone on its own line, never wrapped."""
    print_command(label, command, console)


def _error_line(message: str) -> None:
    """``error: <message>`` on stderr as ONE line. The message is plain text, never rich markup: key paths such as
    ``[space.z_window]`` must survive."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", str(message).replace("\n", " ")),
                      highlight=False, soft_wrap=True)


def _is_store_open_error(e: BaseException) -> bool:
    """A DuckDB file that cannot be opened (not a DuckDB file, locked by another process): a user error. (Only a
    process that loaded DuckDB can meet one.)"""
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(e, duckdb.IOException)


def _is_query_interrupt(e: BaseException) -> bool:
    """DuckDB's report of a Ctrl-C that came while it ran a query (``errors.is_query_interrupt``; only a process
    that loaded DuckDB can meet one)."""
    return "duckdb" in sys.modules and is_query_interrupt(e)


def _is_storage_error(e: BaseException) -> bool:
    """An error of the study storage met while reading or writing it (a corrupt or truncated SQLite file): SQLite,
    SQLAlchemy or Optuna's storage error, or a journal file's line that is no JSON, met by Optuna's journal reader.
    (Opening one is checked by ``study.storage.make_storage``.)"""
    return is_storage_failure(e) or _is_journal_line_error(e)


def _is_journal_line_error(e: BaseException) -> bool:
    """A ValueError (JSONDecodeError, 'Invalid log format.') raised by Optuna's journal file reader: a damaged line."""
    if not isinstance(e, ValueError):
        return False
    tb = e.__traceback__
    while tb is not None:
        if "optuna/storages/journal/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


def _fd_reader_gone(stream: Any) -> bool:
    """Whether ``stream`` (sys.stdout / sys.stderr) is a pipe whose reader has closed it (poll says POLLERR)."""
    import select

    try:
        fd = stream.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no file descriptor (an in-process runner's buffer)
        return False


def _pipe_closed(e: BaseException) -> bool:
    """Whether ``e`` is a write to the command's stdout or stderr after its reader went away (``| head -1``), not
    another pipe's (a compute process's)."""
    import errno

    if isinstance(e, PipeClosed):
        return True
    return isinstance(e, OSError) and e.errno == errno.EPIPE and any(
        _fd_reader_gone(f) for f in (sys.stdout, sys.stderr))


def _leave_quietly() -> None:
    """What is left to write goes nowhere: the closed stream(s) point at /dev/null, so the flush at exit does not
    fail again (Python would print 'Exception ignored ... BrokenPipeError' and exit 120)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    for f in (sys.stdout, sys.stderr):
        if _fd_reader_gone(f):
            os.dup2(devnull, f.fileno())
    os.close(devnull)


def _root_cause(e: BaseException) -> BaseException:
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    return e


def _command_of(group: click.Group, ctx: click.Context, args: Sequence[str]) -> click.Command | None:
    """The command ``args`` (the words after ``accumopt``) run: its group's subcommands followed word by word
    (``study run``, ``walkforward worker``); None when they name none."""
    cmd: click.Command | None = group
    words = [a for a in args if not a.startswith("-")]
    while isinstance(cmd, click.Group) and words:
        cmd = cmd.get_command(ctx, words.pop(0))
    worker = getattr(cmd, "worker", None)
    if worker is not None and words[:1] == ["worker"]:
        cmd = worker
    return cmd if cmd is not group else None


def flag_message(message: str, command: click.Command | None, args: Sequence[str]) -> str:
    """A ParameterError's message (``z_window must be >= 2, got z_window=1``: the library's parameter) as the user
    typed it: each parameter whose value came from a flag on the command line (one of ``args``) named by that flag,
    as typed (``--buy`` or ``--buy-threshold``): ``--z-window must be >= 2, got 1``. The flag of a parameter is
    the command's click option (``Option.name`` -> its ``opts``; the engine parameters' flags are made from the
    registry, ``cli.backtest``): the one mapping. A value from a spec, a parameters file, the environment or a
    default keeps its parameter's name (a spec's own errors name its key). An option of several values
    (``--dates START END``) names each value by its metavar's word, which is the library parameter's name in
    capitals: ``start must be a date ...`` -> ``--dates START must be a date ...``."""
    if command is None:
        return message
    typed: dict[str, str] = {}
    for opt in command.params:
        if not isinstance(opt, click.Option) or not opt.name:
            continue
        flag = next((a.split("=", 1)[0] for a in args if a.split("=", 1)[0] in (*opt.opts, *opt.secondary_opts)
                     and a.startswith("--")), None)
        if flag is None:
            continue
        words = (opt.metavar or "").split()
        if opt.nargs > 1 and len(words) == opt.nargs:  # one flag, several values: each named by its metavar word
            typed.update({w.lower(): f"{flag} {w}" for w in words})
        else:
            typed[opt.name] = flag
    for name, flag in typed.items():
        if message.startswith(f"{name} "):
            message = flag + message[len(name):]
        message = re.sub(rf"\bgot (?:{re.escape(name)}|{re.escape(flag)})=", "got ", message)
        message = re.sub(rf"(?<![\w.-]){re.escape(name)}=", f"{flag} ", message)
    return message


class ErrorGroup(click.Group):
    """Turns AccumoptError and a usage error of click's (a missing file, an unknown option) (and an unopenable DuckDB store, a failing study storage, a failure of the machine: a full
    disk, a file size or open-file limit, a read-only place, no memory) into a one-line message and exit code 2;
    Ctrl-C (KeyboardInterrupt, or ``errors.Interrupted``) into one line and exit code 130 (``_interrupt``)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except OSError as e:  # `accumopt --help | head -1`: the one rule for a closed pipe, as in ``invoke``
            if not _pipe_closed(e):
                raise
            _leave_quietly()
            raise click.exceptions.Exit(0) from None
        except click.UsageError as e:  # a refused flag before any command (accumopt --bad): one line too
            _error_line(f"{e.format_message()} (usage: {info_name or 'accumopt'} --help)")
            raise click.exceptions.Exit(2) from None

    def invoke(self, ctx: click.Context) -> Any:
        args = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # the words after `accumopt`, as typed
        try:
            rv = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe met by the last write is met here, not at the exit's flush
            return rv
        except KeyboardInterrupt:  # Ctrl-C: one line, exit 130 (not click's "Aborted!" and exit 1)
            print_interrupted()
            ctx.exit(EXIT_INTERRUPTED)
        except Interrupted as e:  # work a Ctrl-C stopped, saying how to resume it
            print_interrupted(str(e))
            ctx.exit(EXIT_INTERRUPTED)
        except click.exceptions.NoArgsIsHelpError:  # a group named alone: its help, as click prints it
            raise
        except click.UsageError as e:  # a flag or argument click itself refused (a missing file, an unknown option):
            # the one line every error is (click wrote a usage line, a hint and 'Error: ...': 4 lines)
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            _error_line(f"{e.format_message()} (usage: {where} --help)")
            ctx.exit(2)
        except AccumoptError as e:
            for note in getattr(e, "__notes__", ()):  # what the command warned of before it failed (e.g. evening)
                err_console.print(note, style="yellow", markup=False, highlight=False, soft_wrap=True)
            # a parameter's error, or the data's refusal of a value typed on a flag (``--universe BRK-B`` naming a
            # symbol the store lacks), names the flag as typed
            _error_line(flag_message(str(e), _command_of(self, ctx, args), args)
                        if isinstance(e, (ParameterError, DataError)) else str(e))
            ctx.exit(2)
        except Exception as e:  # noqa: BLE001 - only store / storage errors are handled, the rest re-raised
            if _pipe_closed(e):  # the reader went away (`| head -1`): quiet, exit 0, every command and format
                _leave_quietly()
                ctx.exit(0)
            if _is_query_interrupt(e):
                print_interrupted()
                ctx.exit(EXIT_INTERRUPTED)
            machine = machine_error(e)  # a full disk, a limit, a read-only place: the file and the cause, one line
            if machine is not None:
                _error_line(str(machine))
                ctx.exit(2)
            if _is_store_open_error(e):
                _error_line(f"cannot open the DuckDB store: {e}")
                ctx.exit(2)
            if not _is_storage_error(e):
                raise
            cause = _root_cause(e)
            msg = str(getattr(cause, 'orig', None) or cause).splitlines()[0]
            room = no_room() if "disk i/o" in msg.lower() or "disk is full" in msg.lower() else None
            if _is_journal_line_error(e):
                room = "its journal file holds a line that is not whole JSON: an append cut short, e.g. by a full disk"
            _error_line(f"the study storage failed: {type(cause).__name__}: {msg}" + (f" ({room})" if room else ""))
            ctx.exit(2)
