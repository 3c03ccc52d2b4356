"""Terminal tables that fit the width they are printed at (80 columns in any pipe), and one-record views.

``print_frame`` prints a DataFrame as a borderless rich table whose every cell and header stays on one line:

* the columns shown are the ``key`` columns by default (all columns when ``key`` is None), ``select`` (the user's
  ``--columns``) exactly, or every column with ``wide`` (then the table is as wide as it needs to be);
* in the default view, the columns that do not fit the console width are left out, in reverse priority order, and
  a line after the table names them with the flags that show them; columns empty on every row are left out too;
* numbers are rounded for display (``cell_text``): returns and rates as percentages, ratios to 4 significant digits,
  counts with thousands separators, timestamps to the minute, missing values as ``-``;
* a free-text column (``Column(wrap=True)``, e.g. a message) may wrap at spaces inside its cell, never below the
  width of its header; any other cell is never wrapped nor cut (no "…").

``print_record`` prints one record (a trial, a run summary) vertically: ``key  value`` lines, nested mappings
indented; a value too long for the line that has no space in it (a path, a URL) goes alone on the next line,
unwrapped, so it can be copied. ``print_command`` prints a command the user should copy on its own line, never
wrapped. JSON and CSV output never pass through this module.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from optimizer.errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Column", "FrameView", "PERCENT", "SIGNED_PERCENT", "cell_text", "choose_columns", "print_frame",
    "print_record", "print_command", "GAP",
]

GAP = 2  # spaces between two columns

# Fractions shown as percentages: signed (returns) and unsigned (rates). A name counts with any of the prefixes
# is_ / oos_ / metric_ / best_ (walk-forward windows, exported trials) / values_ (a multi-objective study's
# objective values, values_<metric>).
SIGNED_PERCENT = frozenset({
    "avg_return", "median_return", "avg_excess_return", "avg_benchmark_return", "return", "net_return",
    "gross_return", "excess_return", "unrealised_return", "total_return", "mean_excess", "oos_excess",
    "degradation_return",
})
PERCENT = frozenset({"hit_rate", "false_positive_rate", "max_drawdown", "win_rate", "coverage", "ratio",
                     "otc_participation_rate", "short_share",
                     "mde_per_trade", "mde_per_year"})  # minimum detectable excess returns (no sign: a size)
_PREFIXES = ("is_", "oos_", "metric_", "best_", "values_")
_MISSING = "-"
_HIDDEN_NAMED = 8  # hidden columns named after a table (all of them: --format json / csv)


@dataclass(frozen=True)
class Column:
    """How one DataFrame column is shown: header ``label`` (default: the name), a format spec or function for its
    values, a rich style per value, whether it is free text that may wrap at spaces, and its justification
    (default: right for numbers, left for text)."""

    name: str
    label: str | None = None
    fmt: str | Callable[[Any], str] | None = None
    style: Callable[[Any], str | None] | None = None
    wrap: bool = False
    justify: str | None = None

    @property
    def header(self) -> str:
        return self.label if self.label is not None else self.name


@dataclass(frozen=True)
class FrameView:
    """What ``print_frame`` showed: the headers in order, and the columns it left out (name list)."""

    headers: tuple[str, ...]
    hidden: tuple[str, ...]
    width: int


def _base(name: str) -> str:
    for p in _PREFIXES:
        if name.startswith(p):
            return name[len(p):]
    return name


def _missing(v: Any) -> bool:
    import numpy as np  # here, not at the top: the CLI imports this module in every process (accumopt --version)
    import pandas as pd

    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)):
        return math.isnan(float(v))
    return False


def _number(v: float) -> str:
    """4 significant digits, no exponent for ordinary magnitudes, thousands separators from 10,000 on."""
    a = abs(v)
    if a == 0:
        return "0"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if a >= 1e4:
        return f"{v:,.0f}"
    if a < 1e-3:
        return f"{v:.2e}"
    if float(v).is_integer():
        return str(int(v))
    digits = max(0, 3 - int(math.floor(math.log10(a))))
    s = f"{v:.{digits}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def cell_text(name: str, v: Any, fmt: str | Callable[[Any], str] | None = None) -> str:
    """The display text of value ``v`` of column ``name`` (rounded; ``-`` when missing)."""
    import numpy as np
    import pandas as pd

    if _missing(v):
        return _MISSING
    if callable(fmt):
        return fmt(v)
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}" if fmt is None else format(int(v), fmt)
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if fmt is not None:
            return format(x, fmt)
        base = _base(name)
        if base in SIGNED_PERCENT:
            return f"{100 * x:+.2f}%"
        if base in PERCENT or base.endswith("_pct_frac"):
            return f"{100 * x:.1f}%"
        return _number(x)
    if isinstance(v, pd.Timestamp) or isinstance(v, dt.datetime):
        ts = pd.Timestamp(v)
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, (dict, list, tuple)):  # an empty one is nothing to show, as a missing value ("{}" read as
        # a value: a pruned trial's "metrics {}")
        return json.dumps(v, default=str, separators=(", ", ": ")) if len(v) else _MISSING
    return str(v) if fmt is None else format(v, fmt)


def _columns(df: pd.DataFrame, specs: Iterable[Column | str] | None) -> list[Column]:
    given = {(c if isinstance(c, Column) else Column(c)).name: (c if isinstance(c, Column) else Column(c))
             for c in (specs or ())}
    return [given.get(c, Column(str(c))) for c in df.columns]


def choose_columns(available: Sequence[Column], key: Sequence[str] | None = None,
                   select: Sequence[str] | str | None = None, wide: bool = False) -> list[Column]:
    """The candidate columns in priority order: ``select`` (names or labels; unknown ones are a ParameterError
    listing the available names), else the ``key`` columns present (all when None), followed with ``wide`` by every
    other column."""
    by_name = {c.name: c for c in available}
    by_label = {c.header: c for c in available}
    if isinstance(select, str):
        select = [s.strip() for s in select.split(",") if s.strip()]
    if select:
        out = []
        for s in select:
            c = by_name.get(s) or by_label.get(s) or by_name.get(f"param_{s}")
            if c is None:
                raise ParameterError(f"columns: unknown column {s!r}; available: {', '.join(by_name)}")
            out.append(c)
        return list(dict.fromkeys(out))
    if key is None:
        return list(available)
    first = [by_name[k] for k in key if k in by_name]
    return first + [c for c in available if c not in first] if wide else first


def _fit(widths: list[int], mins: list[int], room: int) -> list[bool]:
    """Greedy in priority order: keep a column when it still fits (the first column always stays)."""
    keep, used = [], 0
    for i, (w, m) in enumerate(zip(widths, mins)):
        need = min(w, m) + (GAP if any(keep) else 0)
        ok = i == 0 or used + need <= room
        keep.append(ok)
        used += need if ok else 0
    return keep


def print_frame(df: pd.DataFrame, console: Console, title: str | None = None,
                columns: Iterable[Column | str] | None = None, key: Sequence[str] | None = None,
                select: Sequence[str] | str | None = None, wide: bool = False, caption: str | None = None,
                hint: str | None = "--columns A,B,... or --wide") -> FrameView:
    """Print ``df`` as a table fitting ``console.width`` (see the module docstring); returns what was shown.

    ``columns``: Column specs for some columns (others get the defaults); ``key``: the columns of the default view
    in priority order; ``select``: exactly these columns (names or labels, comma string or list); ``wide``: every
    column at its full width. ``hint`` names the flags that show hidden columns (None: no hint line).
    """
    import pandas as pd

    cols = choose_columns(_columns(df, columns), key, select, wide)
    texts = {c.name: [cell_text(c.name, v, c.fmt) for v in df[c.name].tolist()] for c in cols}
    if not (select or wide):  # empty columns carry nothing in the default view
        cols = [c for c in cols if any(t not in (_MISSING, "") for t in texts[c.name])] or cols[:1]
    nat = [max([cell_len(c.header), *(cell_len(t) for t in texts[c.name])]) for c in cols]
    mins = [max(cell_len(c.header), min(n, 12)) if c.wrap else n for c, n in zip(cols, nat)]
    room = console.width
    if select or wide:
        keep = [True] * len(cols)
    else:
        keep = _fit(nat, mins, room)
    shown = [c for c, k in zip(cols, keep) if k]
    hidden = [c.name for c, k in zip(cols, keep) if not k]
    if not (select or wide) and key is not None:
        hidden += [c.name for c in _columns(df, columns) if c.name not in {x.name for x in cols}
                   and any(t not in (_MISSING, "") for t in (cell_text(c.name, v, c.fmt) for v in df[c.name].tolist()))]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=(0, GAP - 1, 0, 0), caption=None, collapse_padding=True)
    numeric = {c.name: pd.api.types.is_numeric_dtype(df[c.name]) and not pd.api.types.is_bool_dtype(df[c.name])
               for c in shown}
    for c in shown:
        n = cell_len(c.header)
        table.add_column(c.header, justify=c.justify or ("right" if numeric[c.name] else "left"),
                         no_wrap=not c.wrap, overflow="fold" if c.wrap else "ellipsis",
                         min_width=n if c.wrap else None, header_style="bold")
    for i in range(len(df)):
        row = []
        for c in shown:
            t = texts[c.name][i]
            s = c.style(df[c.name].iloc[i]) if c.style is not None and t != _MISSING else None
            row.append(Text(t, style=s or ""))
        table.add_row(*row)
    # the first column always stays: a cell of it wider than the terminal (a long study name) is printed whole on a
    # longer line, never cut with "…" (the name is what the user copies into the next command)
    too_long = not (select or wide) and bool(shown) and not shown[0].wrap and nat[0] > room
    if wide or select or too_long:  # as wide as the table needs: the terminal (or `less -S`) shows the long lines
        width = sum(nat) + GAP * max(0, len(shown) - 1)
        opts = console.options.update(width=max(width, 1), no_wrap=True)
        _print_title(title, console)
        for segs in console.render_lines(table, opts, pad=False):
            console.print(Text.assemble(*((sg.text, sg.style) for sg in segs if not sg.control)), soft_wrap=True,
                          crop=False, highlight=False)
    else:
        width = min(room, sum(n for n, k in zip(nat, keep) if k) + GAP * max(0, len(shown) - 1))
        _print_title(title, console)
        console.print(table)
    if caption:
        console.print(Text(caption), highlight=False)
    if hidden and hint:
        names = ", ".join(hidden[:_HIDDEN_NAMED]) + (f" and {len(hidden) - _HIDDEN_NAMED} more"
                                                     if len(hidden) > _HIDDEN_NAMED else "")
        console.print(Text(f"{len(hidden)} more column{'s' if len(hidden) != 1 else ''} ({hint}): {names}",
                           style="dim"), highlight=False)
    return FrameView(tuple(c.header for c in shown), tuple(hidden), width)


def _print_title(title: str | None, console: Console) -> None:
    """A table's title above it, wrapped at spaces at the console's width, never inside a word: rich wrapped a
    table's own title at the TABLE's width, cutting a study name in two (``e20_a_rather_long_study`` /
    ``_name_for_tables``) above a narrow table."""
    if not title:
        return
    for line in textwrap.wrap(title, max(20, console.width), break_long_words=False, break_on_hyphens=False) or [""]:
        console.print(Text(line, style="bold"), soft_wrap=True, highlight=False, crop=False)


def _flatten(d: Mapping[str, Any], depth: int = 0) -> list[tuple[int, str, Any, bool]]:
    """(depth, key, value, is_group) rows; a nested mapping is a group heading followed by its rows."""
    out: list[tuple[int, str, Any, bool]] = []
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.append((depth, str(k), None, True))
            out += _flatten(v, depth + 1)
        else:
            out.append((depth, str(k), v, False))
    return out


def print_record(record: Mapping[str, Any] | Iterable[tuple[str, Any]], console: Console,
                 title: str | None = None, formats: Mapping[str, str | Callable[[Any], str]] | None = None) -> None:
    """Print one record vertically (see the module docstring): ``key  value`` per line, nested mappings as indented
    groups; free text wraps at spaces under its value column, a long path or URL goes unwrapped on its own line."""
    rows = _flatten(record if isinstance(record, Mapping) else dict(record))
    formats = formats or {}
    kw = max([2 * d + cell_len(k) for d, k, _, g in rows if not g] or [0]) + GAP
    width = console.width
    if title:
        console.print(Text(title, style="bold"), soft_wrap=True, highlight=False)
    for depth, k, v, group in rows:
        label = "  " * depth + k
        if group:
            console.print(Text(label, style="bold"), soft_wrap=True, highlight=False)
            continue
        text = cell_text(k, v, formats.get(k))
        line = label.ljust(kw) + text
        if cell_len(line) <= width:
            console.print(Text(line), soft_wrap=True, highlight=False)
        elif " " not in text:  # a path, URL or token: alone on the next line, never wrapped
            console.print(Text(label), soft_wrap=True, highlight=False)
            console.print(Text("  " * (depth + 1) + text), soft_wrap=True, highlight=False, crop=False)
        else:  # free text: wrapped at spaces under the value column
            lines = textwrap.wrap(text, max(20, width - kw), break_long_words=False, break_on_hyphens=False)
            console.print(Text(label.ljust(kw) + lines[0]), soft_wrap=True, highlight=False)
            for ln in lines[1:]:
                console.print(Text(" " * kw + ln), soft_wrap=True, highlight=False)


def print_command(label: str, command: str, console: Console) -> None:
    """``label`` on one line, then ``command`` alone on the next line, never wrapped (copy-paste safe)."""
    console.print(Text(label), soft_wrap=True, highlight=False)
    console.print(Text(command), soft_wrap=True, highlight=False, crop=False)
