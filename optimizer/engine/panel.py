"""The (date x symbol) panel: daily_metrics pivoted into float64 matrices, loaded once per process.

Every engine function takes a ``Panel`` (or its arrays) and never touches the database. ``load_panel`` is the
only I/O here; ``Panel.from_frame`` builds one from a long DataFrame (tests, notebooks, the reference engine).

Gaps are visible, never bridged: ``load_panel``'s date axis is every NYSE session from the first to the last
date of the span, so a session the store lacks is a row of NaN (docs/DATA.md "Coverage and gaps"); rolling
windows, returns and z-scores are NaN until the window refills. ``load_panel`` states the coverage the span
stands on (``Panel.coverage``, :class:`optimizer.data.coverage.Coverage`) and refuses a span whose FINRA short
data or prices cover less than the documented minimum of its sessions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from optimizer.errors import DataError
from optimizer.data.calendar import DateLike, session_days
from optimizer.data.coverage import MIN_COVERAGE, REQUIRED_SOURCES, Coverage, span_coverage
from optimizer.data.store import table_columns
from optimizer.data.universe import MARKET_SYMBOL, SECTOR_MAP, VIX_SYMBOL

__all__ = ["Panel", "PANEL_FIELDS", "OPTION_FIELDS", "load_panel", "warmup_start"]

_CHUNK_VECTORS = 128  # load_panel fetches 128 x 2,048 = 262,144 rows at a time

PANEL_FIELDS: tuple[str, ...] = (
    "open", "high", "low", "close", "volume", "return",
    "short_buy_volume", "short_sell_volume", "short_buy_sell_ratio",
    "lit_buy_volume", "lit_sell_volume", "lit_flow_imbalance",
    "otc_participation_rate", "confidence",
)
# what the engine reads of every panel (entries and exits at the open, returns on the close, stops on the range)
PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close")
OPTION_FIELDS: tuple[str, ...] = (
    "call_volume", "put_volume", "itm_call_volume", "otm_call_volume", "itm_put_volume", "otm_put_volume", "atm_iv",
    "total_premium",
)


@dataclass(frozen=True, eq=False)
class Panel:
    """Aligned matrices. ``fields[name]`` has shape (T, N); ``market[name]`` has shape (T,).

    ``market`` holds ``spy_close``, ``spy_open``, ``spy_volume``, ``spy_high``, ``spy_low`` and ``vix`` (NaN when absent),
    on the same calendar, whether or not SPY is in the universe. ``coverage``: what ``load_panel`` loaded the
    panel from (per source sessions and gaps; ``coverage.to_dict()`` for storage); None for panels built in
    memory. ``slice`` and ``subset`` keep it: it describes the load.
    """

    dates: np.ndarray
    symbols: tuple[str, ...]
    fields: Mapping[str, np.ndarray]
    market: Mapping[str, np.ndarray] = field(default_factory=dict)
    sectors: tuple[str | None, ...] = ()
    coverage: Coverage | None = None

    def __post_init__(self) -> None:
        T, N = len(self.dates), len(self.symbols)
        for k, v in self.fields.items():
            if v.shape != (T, N):
                raise DataError(f"panel field {k!r} must have shape {(T, N)}, got {v.shape}")
        if not self.sectors:
            object.__setattr__(self, "sectors", tuple(SECTOR_MAP.get(s) for s in self.symbols))
        for name in ("spy_close", "spy_open", "spy_high", "spy_low", "spy_volume", "vix"):
            if name not in self.market:
                m = dict(self.market)
                src = name.replace("spy_", "")
                if name != "vix" and MARKET_SYMBOL in self.symbols and src in self.fields:
                    m[name] = self.fields[src][:, self.symbols.index(MARKET_SYMBOL)].copy()
                else:
                    m[name] = np.full(T, np.nan)
                object.__setattr__(self, "market", m)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.dates), len(self.symbols)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"panel has no field {name!r}; fields: {', '.join(sorted(self.fields))}") from None

    def has(self, name: str) -> bool:
        return name in self.fields and bool(np.isfinite(self.fields[name]).any())

    def index_of(self, date: DateLike) -> int:
        """Index of the first session >= date (len(dates) when past the end)."""
        return int(np.searchsorted(self.dates, np.datetime64(pd.Timestamp(date).date(), "D")))

    def symbol_index(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise DataError(f"symbol {symbol!r} is not in the panel ({len(self.symbols)} symbols)") from None

    def slice(self, start: int, stop: int) -> "Panel":
        """Rows [start, stop) — a truncated panel, e.g. for lookahead tests."""
        return Panel(
            dates=self.dates[start:stop],
            symbols=self.symbols,
            fields={k: v[start:stop] for k, v in self.fields.items()},
            market={k: v[start:stop] for k, v in self.market.items()},
            sectors=self.sectors,
            coverage=self.coverage,
        )

    def subset(self, symbols: Sequence[str]) -> "Panel":
        idx = [self.symbol_index(s) for s in symbols]
        return Panel(
            dates=self.dates,
            symbols=tuple(self.symbols[i] for i in idx),
            # C order, as a loaded panel's: ``v[:, idx]`` alone is Fortran-ordered, and numpy's reductions over it
            # add in another order (a study on a subset panel stored excess returns that differed from the same
            # panel loaded in the last bits)
            fields={k: np.ascontiguousarray(v[:, idx]) for k, v in self.fields.items()},
            market=dict(self.market),
            sectors=tuple(self.sectors[i] for i in idx),
            coverage=self.coverage,
        )

    def fingerprint(self) -> str:
        """sha256 over the calendar, symbols and every field: identifies the exact data slice a study saw."""
        h = hashlib.sha256()
        h.update(np.asarray(self.dates, dtype="datetime64[D]").tobytes())
        h.update("\x1f".join(self.symbols).encode())
        for k in sorted(self.fields):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.fields[k]).tobytes())
        for k in sorted(self.market):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.market[k]).tobytes())
        return h.hexdigest()[:16]

    def to_frame(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Long DataFrame (date, symbol, fields...) — the inverse of ``from_frame``."""
        names = list(names or self.fields)
        T, N = self.shape
        out = pd.DataFrame({
            "date": np.repeat(self.dates.astype("datetime64[ns]"), N),
            "symbol": np.tile(np.array(self.symbols, dtype=object), T),
        })
        for k in names:
            out[k] = self.fields[k].reshape(-1)
        return out

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        market: pd.DataFrame | None = None,
        sectors: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
        dates: Sequence | None = None,
        coverage: Coverage | None = None,
    ) -> "Panel":
        """Pivot a long frame with ``date``, ``symbol`` and field columns into a Panel.

        ``market`` (optional) is a frame indexed or keyed by date with columns among spy_close, spy_open, ..., vix.
        Missing ``return`` is computed from ``close`` per symbol (consecutive rows of the axis). ``dates``: the
        date axis (default: the frame's distinct dates); it must hold every date of the frame, and dates
        without rows become rows of NaN.
        """
        if df.empty:
            raise DataError("no rows to build a panel from (empty universe or date range)")
        d = df.copy()
        d["date"] = pd.to_datetime(d["date"]).dt.normalize()
        d["symbol"] = d["symbol"].astype(str)
        have = np.array(sorted(d["date"].unique()), dtype="datetime64[D]")
        if dates is None:
            dates = have
        else:
            dates = np.unique(np.asarray(dates, dtype="datetime64[D]"))
            if not np.isin(have, dates).all():
                raise DataError("the date axis given to Panel.from_frame must hold every date of the frame")
        symbols = tuple(sorted(d["symbol"].unique()))
        wanted = list(fields) if fields is not None else [c for c in (*PANEL_FIELDS, *OPTION_FIELDS) if c in d.columns]
        return cls._from_chunks([d], dates, symbols, wanted, market=market, sectors=sectors, coverage=coverage)

    @classmethod
    def _from_chunks(
        cls,
        chunks: Iterable[pd.DataFrame],
        dates: np.ndarray,
        symbols: tuple[str, ...],
        wanted: Sequence[str],
        market: pd.DataFrame | None = None,
        sectors: Mapping[str, str] | None = None,
        coverage: Coverage | None = None,
    ) -> "Panel":
        """The matrices filled from long frames of rows (``date``, ``symbol``, fields) chunk by chunk, on the axis
        ``dates`` x ``symbols`` (every row's date and symbol must be on it): memory is the matrices and one chunk,
        never a long frame of every row (``load_panel`` streams its query through here)."""
        T, N = len(dates), len(symbols)
        sym_index = pd.Index(symbols)
        out: dict[str, np.ndarray] = {}
        seen = np.zeros((T, N), dtype=bool)
        for d in chunks:
            if not len(d):
                continue
            day = d["date"]
            if isinstance(day.dtype, np.dtype) and day.dtype.kind == "M":  # DuckDB's DATE: the day, without pandas
                day = day.to_numpy().astype("datetime64[D]")
            else:
                day = pd.to_datetime(day).dt.normalize().to_numpy(dtype="datetime64[D]")
            ti = np.searchsorted(dates, day)
            si = sym_index.get_indexer(d["symbol"].astype(str))
            cell = ti.astype(np.int64) * max(N, 1) + si
            if len(np.unique(cell)) < len(cell) or seen[ti, si].any():
                raise DataError("duplicate (date, symbol) rows in panel input")
            seen[ti, si] = True
            for c in wanted:
                if c not in d.columns:
                    continue
                m = out.get(c)
                if m is None:
                    m = out[c] = np.full((T, N), np.nan)
                col = d[c]
                if isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiu":  # plain numbers: to_numeric's no-op
                    m[ti, si] = col.to_numpy(dtype=np.float64)
                else:
                    m[ti, si] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        del seen
        if "return" not in out and "close" in out:
            c = out["close"]
            r = np.full_like(c, np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                r[1:] = c[1:] / c[:-1] - 1.0
            out["return"] = r
        mk: dict[str, np.ndarray] = {}
        if market is not None and len(market):
            m = market.copy()
            if "date" in m.columns:
                m = m.set_index("date")
            m.index = pd.to_datetime(m.index).normalize()
            m = m.reindex(pd.DatetimeIndex(dates.astype("datetime64[ns]")))
            for c in m.columns:
                mk[str(c)] = m[c].to_numpy(dtype=np.float64, na_value=np.nan)
        sec = tuple((sectors or SECTOR_MAP).get(s) for s in symbols)
        return cls(dates=dates, symbols=symbols, fields=out, market=mk, sectors=sec, coverage=coverage)


def load_panel(
    con: duckdb.DuckDBPyConnection,
    universe: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    *,
    min_coverage: float | None = MIN_COVERAGE,
    required: Sequence[str] = REQUIRED_SOURCES,
) -> Panel:
    """Load daily_metrics (and options_premium_daily when present) for ``universe`` in [start, end].

    Reads only what the universe and span need. Works on a darkpool-pipeline database as-is: price columns it
    lacks are joined from prices_daily. The date axis is every NYSE session of the span (a missing session is
    a row of NaN, never bridged). The coverage of the span is on ``Panel.coverage``; when ``min_coverage`` is
    not None a span whose ``required`` sources cover less than that share of its sessions is refused with a
    DataError naming the source and its largest missing range.
    """
    cols = table_columns(con, "daily_metrics")
    if not cols:
        raise DataError("the store has no daily_metrics table; run `accumopt metrics build` (or `accumopt data synth --db`) first")
    if universe is not None and not universe:
        raise DataError("universe is empty")
    cov = span_coverage(con, universe, start, end, minimum=MIN_COVERAGE if min_coverage is None else min_coverage,
                        required=required)
    if min_coverage is not None and cov.sessions:
        n = len(universe) if universe is not None else cov.symbols
        cov.require(f"the span {cov.start}..{cov.end} of {n} symbol{'s' if n != 1 else ''}")
    where, params = ["1=1"], []
    if universe is not None:
        where.append("m.symbol IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(universe))
    if start is not None:
        where.append("m.date >= ?")
        params.append(pd.Timestamp(start).date())
    if end is not None:
        where.append("m.date <= ?")
        params.append(pd.Timestamp(end).date())
    sel = ["m.date", "m.symbol"]
    joins = ""
    price_cols = table_columns(con, "prices_daily")
    for c in PANEL_FIELDS:
        if c in cols:
            sel.append(f'm."{c}"')
        elif c in ("open", "high", "low", "close", "volume") and c in price_cols:
            sel.append(f'p."{c}"')
            joins = " LEFT JOIN prices_daily p ON p.date = m.date AND p.symbol = m.symbol"
    lacking = [c for c in PRICE_FIELDS if c not in cols and c not in price_cols]
    if lacking:  # a daily_metrics of another tool (a darkpool-pipeline database) without prices to join
        raise DataError(f"daily_metrics has no column {', '.join(lacking)} and the store has no prices_daily to join "
                        f"{'them' if len(lacking) > 1 else 'it'} from (a daily_metrics another tool built?): entries fill "
                        "at the open and stops read the high and low; ingest prices (`accumopt ingest prices FILE`) "
                        "or keep accumopt's data in a store of its own")
    opt_cols = table_columns(con, "options_premium_daily")
    if opt_cols:
        for c in OPTION_FIELDS:
            if c in opt_cols:
                sel.append(f'o."{c}"')
        joins += " LEFT JOIN options_premium_daily o ON o.date = m.date AND o.symbol = m.symbol"
    where_sql = " AND ".join(where)
    days = [r[0] for r in con.execute(f"SELECT DISTINCT m.date FROM daily_metrics m WHERE {where_sql}", params).fetchall()]
    if not days:
        raise DataError(
            f"daily_metrics has no rows for universe={list(universe) if universe else 'all'} between {start} and {end}"
        )
    symbols = tuple(sorted(str(r[0]) for r in con.execute(
        f"SELECT DISTINCT m.symbol FROM daily_metrics m WHERE {where_sql}", params).fetchall()))
    have = np.array(sorted(days), dtype="datetime64[D]")
    market = None
    if price_cols:
        lo, hi = have.min(), have.max()
        mq = "SELECT date, symbol, open, high, low, close, volume FROM prices_daily WHERE symbol IN (?, ?) AND date BETWEEN ? AND ?"
        mp: list = [MARKET_SYMBOL, VIX_SYMBOL, pd.Timestamp(lo).date(), pd.Timestamp(hi).date()]
        mdf = con.execute(mq, mp).df()
        if not mdf.empty:
            mdf["date"] = pd.to_datetime(mdf["date"])
            spy = mdf[mdf.symbol == MARKET_SYMBOL].set_index("date")
            vix = mdf[mdf.symbol == VIX_SYMBOL].set_index("date")
            market = pd.DataFrame({
                "spy_open": spy["open"], "spy_high": spy["high"], "spy_low": spy["low"],
                "spy_close": spy["close"], "spy_volume": spy["volume"],
            })
            market = market.join(pd.DataFrame({"vix": vix["close"]}), how="outer")
    axis = np.union1d(session_days(have.min(), have.max()), have)
    # the rows stream into the matrices a chunk at a time: never a long frame of every row (nor its sort)
    wanted = [c.split(".", 1)[1].strip('"') for c in sel[2:]]
    result = con.execute(f"SELECT {', '.join(sel)} FROM daily_metrics m{joins} WHERE {where_sql}", params)
    return Panel._from_chunks(_chunks(result), axis, symbols, wanted, market=market, coverage=cov)


def _chunks(result: duckdb.DuckDBPyConnection):
    """A query's rows as DataFrames of at most ``_CHUNK_VECTORS`` x 2,048 rows, until none is left."""
    while True:
        chunk = result.fetch_df_chunk(_CHUNK_VECTORS)
        if not len(chunk):
            return
        yield chunk


def warmup_start(start: DateLike, sessions: int) -> dt.date:
    """The NYSE session ``sessions`` sessions before ``start`` (``start`` itself when it has no earlier session in
    reach): a panel loaded from there has every trailing window of up to ``sessions`` rows full at ``start``, so its
    values from ``start`` on equal those of a full-history load."""
    s0 = pd.Timestamp(start).date()
    warm = session_days(s0 - dt.timedelta(days=2 * int(sessions) + 30), s0)
    return pd.Timestamp(warm[-min(len(warm), int(sessions) + 1)]).date() if len(warm) else s0
