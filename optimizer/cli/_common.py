"""Shared pieces of the command line: options, output helpers and the error-handling group."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import duckdb
import numpy as np
import pandas as pd
from rich.console import Console
from rich.text import Text

from optimizer.errors import AccumoptError
from optimizer.report.terminal import Column, FrameView, print_command, print_frame, print_record
from optimizer.settings import DEFAULT_DB, DEFAULT_STORAGE

__all__ = [
    "console", "err_console", "db_option", "storage_option", "format_option", "progress_enabled", "echo_json", "print_table",
    "print_kv", "print_cmd", "table_options", "Column", "ErrorGroup",
]

console = Console()
err_console = Console(stderr=True)


# ------------------------------------------------------------------------------------------------ shared options
def db_option(f: Callable) -> Callable:
    return click.option("--db", "db", envvar="ACCUMOPT_DB", default=DEFAULT_DB, show_default=True,
                        type=click.Path(dir_okay=False), help="DuckDB store (env ACCUMOPT_DB).")(f)


def storage_option(f: Callable) -> Callable:
    return click.option("--storage", envvar="ACCUMOPT_STORAGE", default=None,
                        help=f"Optuna storage URL (env ACCUMOPT_STORAGE; default {DEFAULT_STORAGE}; journal:PATH for a journal file).")(f)


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


def table_options(f: Callable) -> Callable:
    """``--columns`` and ``--wide`` of a command that prints a table (``print_table``'s ``select`` and ``wide``)."""
    f = click.option("--wide", is_flag=True, help="Show every column at full width (lines may exceed the terminal).")(f)
    return click.option("--columns", "columns", default=None, metavar="A,B,...",
                        help="Show exactly these columns (names as in --format json/csv).")(f)


def print_table(rows: pd.DataFrame | Iterable[dict], title: str | None = None,
                columns: Iterable[Column | str] | None = None, key: Sequence[str] | None = None,
                select: Sequence[str] | str | None = None, wide: bool = False, caption: str | None = None,
                hint: str | None = "--columns A,B,... or --wide") -> FrameView:
    """Print a table that fits the terminal (80 columns in a pipe): the ``key`` columns by default (all when
    None) as far as they fit, ``select`` exactly, every column with ``wide``; numbers rounded; never a cut or
    wrapped cell (``optimizer.report.terminal.print_frame``). ``columns``: display specs (label, format, style)."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return print_frame(df, console, title=title, columns=columns, key=key, select=select, wide=wide,
                       caption=caption, hint=hint)


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
    """A DuckDB file that cannot be opened (not a DuckDB file, locked by another process): a user error."""
    return isinstance(e, duckdb.IOException)


class ErrorGroup(click.Group):
    """Turns AccumoptError (and an unopenable DuckDB file) into a one-line message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AccumoptError as e:
            _error_line(str(e))
            ctx.exit(2)
        except Exception as e:  # noqa: BLE001 - only store-open errors are handled, the rest re-raised
            if not _is_store_open_error(e):
                raise
            _error_line(f"cannot open the DuckDB store: {e}")
            ctx.exit(2)
