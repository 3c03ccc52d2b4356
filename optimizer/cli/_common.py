"""Shared pieces of the command line: options, output helpers and the error-handling group."""

from __future__ import annotations

import functools
import json
import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import duckdb
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from optimizer.errors import AccumoptError, ParameterError
from optimizer.paths import DB_ENV, OUTPUT_ENV, STORAGE_ENV

__all__ = [
    "console", "err_console", "shared_options", "format_option", "progress_enabled", "echo_json", "print_table",
    "ErrorGroup",
]

console = Console()
err_console = Console(stderr=True)


# ------------------------------------------------------------------------------------------------ shared options
_SHARED = {
    "db": (click.Path(dir_okay=False), f"DuckDB store. Precedence: this flag > env {DB_ENV} > the spec's "
                                       "[data].database > <out>/darkpool.duckdb."),
    "storage": (None, f"Optuna storage URL. Precedence: this flag > env {STORAGE_ENV} > the spec's [run].storage > "
                      "sqlite:///<out>/studies.db (journal:PATH for a journal file, postgresql://... for many machines)."),
    "out": (click.Path(file_okay=False), f"Output root (env {OUTPUT_ENV}, default output): every file the command "
                                         "writes goes in a per-run folder under it, and the default store and "
                                         "storage live in it."),
}
_UNUSED = {"db": "it reads no DuckDB store", "storage": "it reads no study storage",
           "out": "it writes no file and opens no default store"}


def shared_options(*uses: str) -> Callable[[Callable], Callable]:
    """``--db``, ``--storage`` and ``--out`` on a command (every command takes all three; defaults and precedence:
    ``optimizer.paths``). The callback receives those in ``uses`` (None when not given: the library resolves the
    environment, the spec and the default); one it does not use is refused when given, never silently ignored."""
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
            return f(*args, **kw)

        for name in reversed(list(_SHARED)):
            typ, help_ = _SHARED[name]
            wrapper = click.option(f"--{name}", name, default=None, type=typ,
                                   help=help_ if name in uses else f"Not used by this command ({_UNUSED[name]}).")(wrapper)
        return wrapper
    return deco


def format_option(*choices: str) -> Callable[[Callable], Callable]:
    choices = choices or ("table", "json")

    def deco(f: Callable) -> Callable:
        return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
                            help="Output format: a terminal table, or JSON for scripts.")(f)
    return deco


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, default=_jsonable, indent=2, sort_keys=False))


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def print_table(rows: pd.DataFrame | Iterable[dict], title: str | None = None,
                columns: Iterable[str] | None = None) -> None:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    t = Table(title=title, show_lines=False)
    cols = list(columns or df.columns)
    for c in cols:
        t.add_column(str(c), overflow="fold")
    for _, r in df.iterrows():
        t.add_row(*[_fmt(r[c]) for c in cols])
    console.print(t)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return "" if v is None else str(v)


def _error_line(message: str) -> None:
    """``error: <message>`` on stderr as ONE line. The message is plain text, never rich markup: key paths such as
    ``[space.z_window]`` must survive."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", str(message).replace("\n", " ")),
                      highlight=False, soft_wrap=True)


def _is_store_open_error(e: BaseException) -> bool:
    """A DuckDB file that cannot be opened (not a DuckDB file, locked by another process): a user error."""
    return isinstance(e, duckdb.IOException)


def _is_storage_error(e: BaseException) -> bool:
    """An error of the study storage met while reading or writing it (a corrupt or truncated SQLite file): SQLite,
    SQLAlchemy or Optuna's storage error. (Opening one is checked by ``study.storage.make_storage``.)"""
    return isinstance(e, sqlite3.Error) or type(e).__module__.startswith("sqlalchemy") or \
        type(e).__name__ == "StorageInternalError"


def _root_cause(e: BaseException) -> BaseException:
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    return e


class ErrorGroup(click.Group):
    """Turns AccumoptError (and an unopenable DuckDB store, a failing study storage) into a one-line message and
    exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AccumoptError as e:
            _error_line(str(e))
            ctx.exit(2)
        except Exception as e:  # noqa: BLE001 - only store / storage errors are handled, the rest re-raised
            if _is_store_open_error(e):
                _error_line(f"cannot open the DuckDB store: {e}")
                ctx.exit(2)
            if not _is_storage_error(e):
                raise
            cause = _root_cause(e)
            _error_line(f"the study storage failed: {type(cause).__name__}: {str(getattr(cause, 'orig', None) or cause).splitlines()[0]}")
            ctx.exit(2)
