"""Index/ETF constituents and weighted pressure aggregation onto the proxy ETF.

Constituent file: CSV with header ``symbol,index,weight`` (one row per member; weights numeric >= 0, any scale:
they are renormalized). Symbols are read in their canonical spelling (``data.symbols.canonical_symbol``: ``BRK-B``,
``BRK/B`` and ``brk.b`` are the store's ``BRK.B``), so they match the store's rows. ``index`` is an index code (SPX,
NDX, RUT, DJI -> proxy ETF via :data:`PROXY_MAP`) or an ETF itself (sector ETFs map to themselves; any other code is taken as its own proxy).

``aggregate_pressure(frame, constituents, value_col)``: per ETF (and per date when ``frame`` has a ``date``
column) the weighted average of ``value_col`` over the members present with a finite value, weights
renormalized over those members: sum(w·v) / sum(w).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from optimizer.errors import InputFileError, ParameterError, check_param
from optimizer.data.symbols import canonical_symbol, symbol_problem
from optimizer.data.universe import SECTOR_ETFS
from optimizer.report.terminal import Column, print_frame

__all__ = ["PROXY_MAP", "HEADER", "proxy_etf", "load_constituents", "aggregate_pressure", "render_aggregate"]

PROXY_MAP: dict[str, str] = {"SPX": "SPY", "NDX": "QQQ", "RUT": "IWM", "DJI": "DIA", **{e: e for e in SECTOR_ETFS}}
HEADER = ("symbol", "index", "weight")


def proxy_etf(index: str) -> str:
    """The ETF that proxies ``index`` (PROXY_MAP, else the code itself)."""
    return PROXY_MAP.get(index, index)


def load_constituents(path: str | Path) -> pd.DataFrame:
    """Read and validate a constituent CSV -> DataFrame(symbol, index, weight, etf).

    Blank lines and lines starting with ``#`` are skipped. Errors are InputFileError ``file:line: reason``
    (missing/wrong header, wrong field count, empty symbol/index, non-numeric or negative weight, duplicate
    (symbol, index), no rows).
    """
    p = Path(path)
    f = str(p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(f, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f, None, f"not UTF-8 text ({exc.reason})") from None
    rows: list[tuple[str, str, float]] = []
    seen: dict[tuple[str, str], int] = {}
    header_done = False
    for lineno, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not x.strip() for x in fields) or fields[0].lstrip().startswith("#"):
            continue
        cells = [x.strip() for x in fields]
        if not header_done:
            if tuple(c.lower() for c in cells) != HEADER:
                raise InputFileError(f, lineno, f"header must be 'symbol,index,weight', got {','.join(cells)!r}")
            header_done = True
            continue
        if len(cells) != 3:
            raise InputFileError(f, lineno, f"expected 3 fields (symbol,index,weight), got {len(cells)}: {','.join(cells)!r}")
        sym, idx, w = cells[0], cells[1].upper(), cells[2]
        if not sym:
            raise InputFileError(f, lineno, "symbol is empty")
        why = symbol_problem(sym)
        if why is not None:
            raise InputFileError(f, lineno, f"symbol {sym!r} is not a valid symbol ({why})")
        sym = canonical_symbol(sym)  # BRK-B / BRK/B / BRK B -> BRK.B, the store's spelling
        if not idx:
            raise InputFileError(f, lineno, "index is empty")
        try:
            weight = float(w)
        except ValueError:
            raise InputFileError(f, lineno, f"weight must be a number, got weight={w!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise InputFileError(f, lineno, f"weight must be a finite number >= 0, got weight={w!r}")
        if (sym, idx) in seen:
            raise InputFileError(f, lineno, f"duplicate member {sym} of {idx} (first on line {seen[(sym, idx)]})")
        seen[(sym, idx)] = lineno
        rows.append((sym, idx, weight))
    if not header_done:
        raise InputFileError(f, 1, "empty file: header 'symbol,index,weight' missing")
    if not rows:
        raise InputFileError(f, None, "no constituent rows after the header")
    out = pd.DataFrame(rows, columns=list(HEADER))
    out["etf"] = out["index"].map(proxy_etf)
    return out


def aggregate_pressure(
    frame: pd.DataFrame, constituents: pd.DataFrame, value_col: str, symbol_col: str = "symbol"
) -> pd.DataFrame:
    """Weighted average of ``value_col`` per ETF (per date when ``frame`` has ``date``), weights renormalized
    over the members present with a finite value.

    Returns columns [date,] index, etf, <value_col>, members, members_present, weight_coverage (present weight /
    total weight of the index). An index with no member present gets NaN.
    """
    check_param(value_col in frame.columns, "value_col", f"a column of the frame ({', '.join(map(str, frame.columns))})", value_col)
    check_param(symbol_col in frame.columns, "symbol_col", "a column of the frame", symbol_col)
    for c in ("symbol", "index", "weight"):
        if c not in constituents.columns:
            raise ParameterError(f"constituents must have columns symbol,index,weight; missing {c!r}")
    cons = constituents.copy()
    if "etf" not in cons.columns:
        cons["etf"] = cons["index"].map(proxy_etf)
    by_date = "date" in frame.columns
    keys = ["date"] if by_date else []
    vals = frame[keys + [symbol_col, value_col]].rename(columns={symbol_col: "symbol", value_col: "_v"})
    vals = vals.assign(_v=pd.to_numeric(vals["_v"], errors="coerce").astype(float))
    totals = cons.groupby(["index", "etf"], sort=True).agg(members=("symbol", "size"), total_w=("weight", "sum")).reset_index()
    m = cons.merge(vals, on="symbol", how="inner")
    m = m[np.isfinite(m["_v"].to_numpy())]
    m = m.assign(_wv=m["weight"] * m["_v"])
    g = m.groupby(keys + ["index", "etf"], sort=True).agg(
        _wv=("_wv", "sum"), _w=("weight", "sum"), members_present=("symbol", "size")
    ).reset_index()
    if by_date:
        dates = pd.DataFrame({"date": pd.unique(vals["date"])})
        grid = dates.merge(totals, how="cross")
    else:
        grid = totals
    out = grid.merge(g, on=keys + ["index", "etf"], how="left")
    w = out["_w"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[value_col] = np.where(w > 0, out["_wv"].to_numpy(dtype=float) / w, np.nan)
        out["weight_coverage"] = np.where(out["total_w"] > 0, np.nan_to_num(w) / out["total_w"].to_numpy(dtype=float), np.nan)
    out["members_present"] = out["members_present"].fillna(0).astype(int)
    cols = keys + ["index", "etf", value_col, "members", "members_present", "weight_coverage"]
    return out.sort_values(keys + ["etf", "index"], kind="mergesort")[cols].reset_index(drop=True)


def render_aggregate(df: pd.DataFrame, value_col: str, console: Console, title: str | None = None) -> None:
    """Print an :func:`aggregate_pressure` result as a table fitting the console."""
    view = df.assign(members_present=[f"{int(p)}/{int(m)}" for p, m in zip(df["members_present"], df["members"])])
    cols = [Column("date", fmt=lambda v: str(pd.Timestamp(v).date())), Column("members_present", justify="right"),
            Column("weight_coverage", fmt=".0%"), Column(value_col, fmt=".3f")]
    names = (["date"] if "date" in df.columns else []) + ["index", "etf", value_col, "members_present", "weight_coverage"]
    print_frame(view[names], console, title=title or f"Constituent-weighted {value_col}", columns=cols, hint=None)
