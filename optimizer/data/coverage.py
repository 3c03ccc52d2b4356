"""Coverage is data: which NYSE sessions each source holds, where its gaps are, and whether a span stands on
enough of them (docs/DATA.md "Coverage and gaps").

Sources: ``finra_short`` (FINRA Reg SHO daily short-sale volume), ``prices`` (daily bars), ``otc`` (FINRA OTC
weekly), ``lit`` (lit buy/sell flow), ``options`` (daily options activity). A source covers a session when it
holds a row for that session (for any symbol of the universe, when one is given). OTC data is weekly: a session
is covered when the week it belongs to (Monday..Friday) has a row.

* :func:`store_coverage` -- per raw table over its own first..last date (``accumopt data info``).
* :func:`symbol_gaps` -- per raw table, the symbols lacking sessions the source holds for other symbols (a
  symbol's own holes, which the source's coverage cannot show), with the worst of them (``accumopt data info``).
* :func:`span_coverage` -- per source over one span and universe, from ``daily_metrics`` (what a study,
  backtest, walk-forward, scan or table actually reads); :func:`engine.panel.load_panel` calls it, records the
  result on the Panel (``Panel.coverage``) and refuses a span whose required sources are below the minimum.
* :meth:`Coverage.require` -- the refusal: a :class:`~optimizer.errors.DataError` naming the source, its
  coverage and its largest missing range.

The documented minimum (``MIN_COVERAGE``): FINRA short data and prices on at least 90% of the NYSE sessions of
the span. OTC, lit and options data are context: their coverage is stated, never required.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
import pandas as pd

from optimizer.data.calendar import DateLike, as_date as _as_date, session_days
from optimizer.data.metrics import built_version, finra_partial_days, metrics_staleness, owns_daily_metrics
from optimizer.data.splitcheck import suspect_splits
from optimizer.data.store import STORAGE_TABLES, table_columns, table_exists
from optimizer.data.universe import unpriced_note
from optimizer.errors import DataError, check_param

__all__ = [
    "SOURCES",
    "REQUIRED_SOURCES",
    "MIN_COVERAGE",
    "Gap",
    "SourceCoverage",
    "Coverage",
    "gaps_of",
    "source_coverage",
    "store_coverage",
    "span_coverage",
    "store_info",
    "symbol_gaps",
    "symbol_gap_lines",
]

# source -> (raw table, date column)
SOURCES: dict[str, tuple[str, str]] = {
    "finra_short": ("finra_short_daily", "date"),
    "prices": ("prices_daily", "date"),
    "otc": ("finra_otc_weekly", "week_start_date"),
    "lit": ("lit_flow_daily", "date"),
    "options": ("options_daily", "date"),
}
REQUIRED_SOURCES: tuple[str, ...] = ("finra_short", "prices")
MIN_COVERAGE = 0.90


class CoverageError(DataError):
    """The refusal of :meth:`Coverage.require`: ``what`` (the span refused) + ``detail`` (the source short of data,
    its coverage, its largest missing range)."""

    def __init__(self, what: str, detail: str) -> None:
        self.what, self.detail = what, detail
        super().__init__(f"{what} {detail}")

    def with_origin(self, origin: str) -> "CoverageError":
        """The same refusal, saying where the span came from (``origin``: e.g. a trial's panel start)."""
        return CoverageError(f"{self.what} ({origin})", self.detail)
# daily_metrics column that says a row carries the source (options: options_premium_daily)
_DM_TESTS = {
    "finra_short": "short_volume IS NOT NULL",
    "prices": "close IS NOT NULL",
    "otc": "otc_week_start IS NOT NULL",
    "lit": "lit_buy_volume IS NOT NULL",
}


@dataclass(frozen=True)
class Gap:
    """Consecutive NYSE sessions a source lacks: ``first``..``last`` (``sessions`` of them)."""

    first: dt.date
    last: dt.date
    sessions: int

    def __str__(self) -> str:
        return f"{self.first}..{self.last} ({self.sessions} session{'s' if self.sessions != 1 else ''})"


@dataclass(frozen=True)
class SourceCoverage:
    """One source over a span: sessions with data out of the NYSE sessions of the span, and the gaps."""

    source: str
    start: dt.date | None
    end: dt.date | None
    sessions: int
    expected: int
    gaps: tuple[Gap, ...] = ()
    first: dt.date | None = None  # the source's first / last date with data inside the span
    last: dt.date | None = None
    rows: int = 0
    symbols: int = 0
    off_calendar: int = 0  # distinct dates that are not NYSE sessions (weekend / holiday rows of old stores)

    @property
    def ratio(self) -> float:
        return self.sessions / self.expected if self.expected else 0.0

    @property
    def missing(self) -> int:
        return self.expected - self.sessions

    @property
    def largest_gap(self) -> Gap | None:
        return max(self.gaps, key=lambda g: (g.sessions, -g.first.toordinal())) if self.gaps else None

    def describe(self) -> str:
        if not self.expected:
            return f"{self.source}: no sessions in the span"
        s = f"{self.source} {self.sessions:,}/{self.expected:,} sessions ({100 * self.ratio:.1f}%)"
        if self.gaps:
            s += f", {len(self.gaps)} gap{'s' if len(self.gaps) != 1 else ''}, largest {self.largest_gap}"
        return s

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["gaps"] = [{"first": str(g.first), "last": str(g.last), "sessions": g.sessions} for g in self.gaps]
        for k in ("start", "end", "first", "last"):
            d[k] = None if d[k] is None else str(d[k])
        d["ratio"] = round(self.ratio, 6)
        return d


@dataclass(frozen=True)
class Coverage:
    """The coverage a span stands on: the span, the universe size and one :class:`SourceCoverage` per source."""

    start: dt.date | None
    end: dt.date | None
    sessions: int
    symbols: int
    sources: tuple[SourceCoverage, ...] = field(default_factory=tuple)
    minimum: float = MIN_COVERAGE
    required: tuple[str, ...] = REQUIRED_SOURCES
    unpriced: int = 0  # symbols of the store that universe ``all`` left out: no price in the span (``unpriced_note``)
    suspect_splits: tuple = ()  # splitcheck.SuspectSplit: unrecorded splits of the loaded symbols in the span

    def source(self, name: str) -> SourceCoverage:
        for s in self.sources:
            if s.source == name:
                return s
        raise KeyError(f"no coverage for source {name!r}; sources: {', '.join(s.source for s in self.sources)}")

    def shortfalls(self) -> list[SourceCoverage]:
        """The required sources below the minimum."""
        return [s for s in self.sources if s.source in self.required and s.ratio < self.minimum]

    def describe(self) -> str:
        head = f"coverage {self.start}..{self.end} ({self.sessions:,} NYSE sessions, {self.symbols} symbols"
        head += f"; {unpriced_note(self.unpriced)}): " if self.unpriced else "): "
        return head + "; ".join(s.describe() for s in self.sources)

    def require(self, what: str = "this span") -> "Coverage":
        """Raise DataError naming the first required source below the minimum and its largest missing range."""
        short = self.shortfalls()
        if short:
            s = short[0]
            gap = s.largest_gap
            where = f"; missing {gap}" + (f" and {len(s.gaps) - 1} more gap{'s' if len(s.gaps) > 2 else ''}" if len(s.gaps) > 1 else "")
            if not s.sessions:
                where = f"; it has no data in {self.start}..{self.end}"
            raise CoverageError(
                what,
                f"stands on too little {s.source} data: {s.sessions:,} of {s.expected:,} NYSE sessions "
                f"({100 * s.ratio:.1f}%) in {self.start}..{self.end}, below the minimum {100 * self.minimum:.0f}%"
                f"{where if gap or not s.sessions else ''} (`accumopt data info` shows each source's coverage)"
            )
        return self

    def to_dict(self) -> dict[str, object]:
        return {
            "start": None if self.start is None else str(self.start),
            "end": None if self.end is None else str(self.end),
            "sessions": self.sessions,
            "symbols": self.symbols,
            "minimum": self.minimum,
            "required": list(self.required),
            "sources": {s.source: s.to_dict() for s in self.sources},
            "unpriced": self.unpriced,
            "suspect_splits": [x.to_dict() for x in self.suspect_splits],
        }


def gaps_of(expected: np.ndarray, present: np.ndarray) -> tuple[Gap, ...]:
    """Runs of ``expected`` sessions (sorted datetime64[D]) missing from ``present``."""
    if not len(expected):
        return ()
    miss = ~np.isin(expected, present)
    if not miss.any():
        return ()
    d = np.diff(np.concatenate(([0], miss.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return tuple(
        Gap(pd.Timestamp(expected[a]).date(), pd.Timestamp(expected[b - 1]).date(), int(b - a)) for a, b in zip(starts, stops)
    )


def _weekly_to_sessions(weeks: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Sessions whose Monday-week has a row (``weeks``: week start dates)."""
    if not len(expected) or not len(weeks):
        return np.array([], dtype="datetime64[D]")
    dow = (expected.astype("datetime64[D]").astype(np.int64) - 4) % 7  # 1970-01-05 was a Monday
    monday = expected - dow.astype("timedelta64[D]")
    return expected[np.isin(monday, weeks.astype("datetime64[D]"))]


def source_coverage(
    name: str, dates: Iterable, start: DateLike | None = None, end: DateLike | None = None, *, weekly: bool = False, rows: int = 0, symbols: int = 0
) -> SourceCoverage:
    """Coverage of one source from the dates it holds, over [start, end] (default: its own first..last date)."""
    if isinstance(dates, np.ndarray) and dates.dtype == np.dtype("datetime64[D]"):
        d = np.unique(dates)  # already days (span_coverage's): the conversion below gives the same, slower
    else:
        d = np.unique(np.asarray(pd.to_datetime(pd.Series(list(dates), dtype=object)), dtype="datetime64[D]"))
    lo = _as_date(start, "start") or (pd.Timestamp(d[0]).date() if len(d) else None)
    hi = _as_date(end, "end") or (pd.Timestamp(d[-1]).date() if len(d) else None)
    if lo is None or hi is None:
        return SourceCoverage(name, lo, hi, 0, 0, rows=rows, symbols=symbols)
    if weekly:  # a week covers its sessions; the span of a weekly source runs to its last week's Friday
        hi = hi if end is not None else hi + dt.timedelta(days=4)
    expected = session_days(lo, hi)
    inside = d[(d >= np.datetime64(lo, "D")) & (d <= np.datetime64(hi, "D"))]
    present = _weekly_to_sessions(d, expected) if weekly else inside[np.isin(inside, expected)]
    off = 0 if weekly else int(len(inside) - len(present))
    return SourceCoverage(
        name, lo, hi, int(len(present)), int(len(expected)), gaps_of(expected, present),
        first=pd.Timestamp(present[0]).date() if len(present) else None,
        last=pd.Timestamp(present[-1]).date() if len(present) else None,
        rows=rows, symbols=symbols, off_calendar=off,
    )


def store_coverage(con: duckdb.DuckDBPyConnection) -> list[SourceCoverage]:
    """Every source's coverage over its own first..last date, from the raw tables (``accumopt data info``)."""
    out = []
    for name, (table, dcol) in SOURCES.items():
        if not table_exists(con, table):
            out.append(SourceCoverage(name, None, None, 0, 0))
            continue
        n, nsym = con.execute(f'SELECT count(*), count(DISTINCT symbol) FROM "{table}"').fetchone()
        dates = [r[0] for r in con.execute(f'SELECT DISTINCT "{dcol}" FROM "{table}" ORDER BY 1').fetchall()]
        out.append(source_coverage(name, dates, weekly=name == "otc", rows=int(n), symbols=int(nsym)))
    return out


def span_coverage(
    con: duckdb.DuckDBPyConnection,
    universe: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    *,
    minimum: float = MIN_COVERAGE,
    required: Sequence[str] = REQUIRED_SOURCES,
) -> Coverage:
    """Coverage of ``universe`` over [start, end] from ``daily_metrics`` (and ``options_premium_daily``).

    The span is [start, end] clipped to the first..last date daily_metrics holds for the universe (a request
    running past the data is not a gap; a hole inside it is)."""
    check_param(isinstance(minimum, (int, float)) and 0 <= minimum <= 1, "min_coverage", "in [0, 1]", minimum)
    if not table_exists(con, "daily_metrics"):
        raise DataError("the store has no daily_metrics table; run `accumopt metrics build` (or `accumopt data synth --db`) first")
    cols = table_columns(con, "daily_metrics")
    where, params = ["1=1"], []
    if universe is not None:
        where.append("symbol IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(universe))
    lo, hi = _as_date(start, "start"), _as_date(end, "end")
    check_param(lo is None or hi is None or lo <= hi, "end", f"on or after start={lo}", str(hi))
    if lo is not None:
        where.append("date >= ?")
        params.append(lo)
    if hi is not None:
        where.append("date <= ?")
        params.append(hi)
    tests = {k: v for k, v in _DM_TESTS.items() if v.split()[0] in cols}
    flags = "".join(f", bool_or({t}) AS {k}" for k, t in tests.items())
    per_day = con.execute(
        f"SELECT date{flags} FROM daily_metrics WHERE {' AND '.join(where)} GROUP BY date ORDER BY date", params
    ).df()
    n_sym = int(con.execute(f"SELECT count(DISTINCT symbol) FROM daily_metrics WHERE {' AND '.join(where)}", params).fetchone()[0])
    if per_day.empty:
        return Coverage(lo, hi, 0, n_sym, tuple(SourceCoverage(s, lo, hi, 0, 0) for s in SOURCES), minimum, tuple(required))
    days = pd.to_datetime(per_day["date"]).to_numpy(dtype="datetime64[D]")
    a, b = pd.Timestamp(days[0]).date(), pd.Timestamp(days[-1]).date()
    sessions = int(len(session_days(a, b)))
    out = []
    for name in SOURCES:
        if name == "options":
            if table_exists(con, "options_premium_daily"):
                ow, op = ["date BETWEEN ? AND ?"], [a, b]
                if universe is not None:
                    ow.append("symbol IN (SELECT unnest(?::VARCHAR[]))")
                    op.append(list(universe))
                od = [r[0] for r in con.execute(f"SELECT DISTINCT date FROM options_premium_daily WHERE {' AND '.join(ow)}", op).fetchall()]
            else:
                od = []
            out.append(source_coverage(name, od, a, b))
        elif name in tests:
            out.append(source_coverage(name, days[per_day[name].fillna(False).to_numpy(dtype=bool)], a, b))
        else:
            out.append(source_coverage(name, [], a, b))
    return Coverage(a, b, sessions, n_sym, tuple(out), float(minimum), tuple(required))


WORST_SYMBOLS = 5  # symbols listed by ``symbol_gaps`` (``accumopt data info``), most sessions missing first


def symbol_gaps(con: duckdb.DuckDBPyConnection, source: str, top: int = WORST_SYMBOLS) -> dict[str, object]:
    """Per symbol of ``source``'s raw table, the sessions it lacks that the source holds for some other symbol,
    between the symbol's own first and last date (a symbol listed late or delisted early has no gap there; a
    session no symbol has is the source's own gap, :func:`store_coverage`). OTC data is weekly: weeks instead of
    sessions. Off-calendar dates are not counted.

    Returns ``unit`` ("sessions" | "weeks"), ``symbols`` (with data), ``with_gaps`` (how many lack some),
    ``missing`` (symbol-sessions lacking, summed) and ``worst``: the ``top`` symbols lacking the most (ties: by
    symbol), each with ``missing``, ``expected`` (the source's sessions from the symbol's first to its last date) and its
    ``largest`` run (``first``, ``last``, ``sessions``; the earliest of equal runs). One grouped DuckDB pass over
    the table (rows per symbol, first and last date; a distinct pass only where a symbol-session can have several
    rows, FINRA files of several facilities), then a gaps-and-islands window over the ``top`` symbols alone: 0.2-0.4 s
    on 11,000 CNMS symbols x 1,258 sessions (13.7M rows; 2 cores at load 3.7), about 3 s more with several
    facilities' rows."""
    check_param(source in SOURCES, "source", f"one of {', '.join(SOURCES)}", source)
    table, dcol = SOURCES[source]
    weekly = source == "otc"
    out: dict[str, object] = {"unit": "weeks" if weekly else "sessions", "symbols": 0, "with_gaps": 0, "missing": 0,
                              "worst": []}
    if not table_exists(con, table):
        return out
    held = np.array([r[0] for r in con.execute(f'SELECT DISTINCT "{dcol}" FROM "{table}" ORDER BY 1').fetchall()],
                    dtype="datetime64[D]")
    if not held.size:
        return out
    days = held if weekly else held[np.isin(held, session_days(held[0], held[-1]))]
    off = [pd.Timestamp(d).date() for d in np.setdiff1d(held, days)]
    on_calendar = f' AND "{dcol}" NOT IN (SELECT unnest(?::DATE[]))' if off else ""
    params = [off] if off else []
    where = f"WHERE TRUE{on_calendar}"
    rows = f'"{table}" {where}'
    if source == "finra_short" and con.execute(f'SELECT count(DISTINCT facility) FROM "{table}"').fetchone()[0] > 1:
        rows = f'(SELECT DISTINCT symbol, "{dcol}" FROM "{table}" {where})'
    per = con.execute(f'SELECT symbol, count(*) AS n, min("{dcol}") AS a, max("{dcol}") AS b FROM {rows} '
                      f'GROUP BY symbol', params).df()
    if per.empty:
        return out
    ia = np.searchsorted(days, per["a"].to_numpy(dtype="datetime64[D]"))
    ib = np.searchsorted(days, per["b"].to_numpy(dtype="datetime64[D]"))
    per["expected"] = ib - ia + 1
    per["missing"] = per["expected"] - per["n"]
    gapped = per[per["missing"] > 0].sort_values(["missing", "symbol"], ascending=[False, True], kind="stable")
    worst = gapped.head(int(top))
    out.update(symbols=len(per), with_gaps=len(gapped), missing=int(gapped["missing"].sum()))
    if worst.empty:
        return out
    big = con.execute(f"""
        WITH x AS (SELECT DISTINCT symbol, "{dcol}" AS d FROM "{table}"
                   WHERE symbol IN (SELECT unnest(?::VARCHAR[])){on_calendar}),
             g AS (SELECT symbol, d, lag(d) OVER (PARTITION BY symbol ORDER BY d) AS prev FROM x)
        SELECT symbol, prev, d FROM g WHERE prev IS NOT NULL""", [worst["symbol"].tolist(), *params]).df()
    i0 = np.searchsorted(days, big["prev"].to_numpy(dtype="datetime64[D]"))
    i1 = np.searchsorted(days, big["d"].to_numpy(dtype="datetime64[D]"))
    big = big.assign(run=i1 - i0 - 1, first=i0 + 1).query("run > 0")
    big = big.sort_values(["symbol", "run", "first"], ascending=[True, False, True], kind="stable")
    largest = big.drop_duplicates("symbol").set_index("symbol")
    out["worst"] = [
        {"symbol": r.symbol, "missing": int(r.missing), "expected": int(r.expected),
         "largest": {"first": str(pd.Timestamp(days[largest.at[r.symbol, "first"]]).date()),
                     "last": str(pd.Timestamp(days[largest.at[r.symbol, "first"] + largest.at[r.symbol, "run"] - 1]).date()),
                     "sessions": int(largest.at[r.symbol, "run"])}}
        for r in worst.itertuples()]
    return out


def symbol_gap_lines(g: dict[str, object]) -> list[str]:
    """``symbol_gaps``' result as lines of at most 64 characters (with 6-character symbols and counts below a
    million; ``accumopt data info`` indents them by 15): how many symbols lack sessions inside their own span, then
    each of the worst with its largest run; nothing without data."""
    unit = g["unit"]
    if not g["with_gaps"]:
        return [f"none of {g['symbols']:,} symbols lacks a {unit[:-1]} inside its own span"] if g["symbols"] else []
    out = [f"{g['with_gaps']:,} of {g['symbols']:,} symbols lack {g['missing']:,} {unit} in all; worst:"]
    wid = max([6, *(len(str(w["symbol"])) for w in g["worst"])])  # one column: a CMS.PRB pushed its row out of it
    for w in g["worst"]:
        big = w["largest"]
        out.append(f"  {w['symbol']:<{wid}} {w['missing']:,} of {w['expected']:,}, largest {big['first']}.."
                   f"{big['last']} ({big['sessions']:,})")
    return out


def store_info(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """What ``accumopt data info`` shows: the schema version, every table's rows / symbols / date range, and
    each source's coverage (:func:`store_coverage`) with its symbols' own gaps (``symbol_gaps``, :func:`symbol_gaps`);
    ``daily_metrics_stale``: why daily_metrics predates the raw data (``metrics.metrics_staleness``), else None;
    ``finra_partial_days``: the FINRA sessions summed from fewer facility files than their neighbours
    (``metrics.finra_partial_days``); ``suspect_splits``: the sessions where a symbol's data changes basis like a
    split the store does not record (``splitcheck.suspect_splits``)."""
    tables = []
    for (t,) in con.execute(  # a table that only stores another one's rows is shown as that one (finra_short_daily)
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_name NOT IN (SELECT unnest(?::VARCHAR[])) ORDER BY 1", [list(STORAGE_TABLES)]
    ).fetchall():
        n = con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
        cols = {c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main'", [t]
        ).fetchall()}
        first = last = None
        dcol = next((c for c in ("date", "week_start_date", "ex_date") if c in cols), None)
        if dcol and n:
            first, last = con.execute(f'SELECT min("{dcol}"), max("{dcol}") FROM "{t}"').fetchone()
        syms = con.execute(f'SELECT count(DISTINCT symbol) FROM "{t}"').fetchone()[0] if "symbol" in cols else None
        tables.append({"table": t, "rows": int(n), "symbols": syms,
                       "first": None if first is None else str(first), "last": None if last is None else str(last)})
    ver = con.execute("SELECT max(version) FROM schema_version").fetchone()[0] if table_exists(con, "schema_version") else None
    cov = [{**c.to_dict(), "symbol_gaps": symbol_gaps(con, c.source)} for c in store_coverage(con)]
    metrics_version = built_version(con)[0] if owns_daily_metrics(con) else None  # None: another tool's, or none
    return {"schema_version": ver, "metrics_version": metrics_version, "tables": tables, "coverage": cov,
            "minimum": MIN_COVERAGE, "required": list(REQUIRED_SOURCES),
            "daily_metrics_stale": metrics_staleness(con), "finra_partial_days": finra_partial_days(con),
            "suspect_splits": [x.to_dict() for x in suspect_splits(con)]}
