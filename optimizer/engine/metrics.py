"""Run metrics from trades: pure numpy. Every degenerate case has a documented value, never NaN or inf.

Definitions (docs/ENGINE.md): hit_rate, avg/median net return, win_loss (capped at WIN_LOSS_CAP when there are
wins and no losses), per-trade Sharpe, annualized Sharpe and max drawdown of the daily equal-weight portfolio,
signals_per_month, false_positive_rate, rank_score = (hit_rate·avg_return)·win_loss/sqrt(signals_per_month),
and avg_excess_return over the matched random-entry benchmark (exact expectation, no sampling).
"""

from __future__ import annotations

import math

import numpy as np

from optimizer.data.rolling import no_dispersion
from optimizer.engine._kernels import missing_holds_nb, portfolio_returns_nb, run_stats_nb
from optimizer.engine.panel import Panel
from optimizer.engine.simulate import Span, SymbolMajorPrices, Trades

__all__ = [
    "WIN_LOSS_CAP", "SESSIONS_PER_MONTH", "FP_SESSIONS", "METRIC_KEYS", "BenchmarkCache", "run_metrics",
    "false_positive_share", "rank_score", "portfolio_returns",
]

WIN_LOSS_CAP = 10.0
SESSIONS_PER_MONTH = 21.0
FP_SESSIONS = 3  # the design's false positive: "signals that reverse within 3 days"
METRIC_KEYS = (
    "total_signals", "total_trades", "closed_trades", "open_at_end", "hit_rate", "avg_return", "median_return",
    "win_loss", "sharpe", "portfolio_sharpe", "max_drawdown", "avg_hold_days", "signals_per_month",
    "false_positive_rate", "rank_score", "avg_excess_return", "avg_benchmark_return", "excess_sharpe",
)


def rank_score(hit: float, avg: float, wl: float, spm: float) -> float:
    """(hit_rate × avg_return) × win_loss / sqrt(signals_per_month); 0 when there are no signals."""
    if spm <= 0:
        return 0.0
    return hit * avg * wl / math.sqrt(spm)


def false_positive_share(close: np.ndarray, trades: Trades, closed: np.ndarray) -> float:
    """Share of closed trades that reverse within FP_SESSIONS days: some close of the first three sessions from the
    entry bar (close[e], close[e+1], close[e+2], never past the exit bar x) is below the entry price. (Plain numpy;
    ``run_metrics`` counts the same inside ``run_stats_nb``.)"""
    e = trades.entry_idx[closed]
    x = trades.exit_idx[closed]
    sym = trades.symbol[closed]
    ep = trades.entry_price[closed]
    rev = np.zeros(e.shape, dtype=bool)
    for j in range(FP_SESSIONS):
        rev |= close[np.minimum(e + j, x), sym] < ep
    return float(np.count_nonzero(rev)) / e.size if e.size else 0.0


class BenchmarkCache:
    """Mean open-to-open growth ratio mean_e[open[e+h]/open[e]] per symbol, cached per (span, h).

    Entry sessions e range over [sig_start+1, sig_end] with e+h < data_end and both opens finite.
    The cache lives as long as the panel: every trial of a study reuses the vectors of its folds. It also holds the
    panel's closes indexed [symbol, session] for the run statistics (``prices``: an ``Evaluator``'s
    ``SymbolMajorPrices``, whose contiguous copy makes them faster; without it a transpose view, no copy).
    """

    def __init__(self, panel: Panel, prices: SymbolMajorPrices | None = None) -> None:
        self.open = panel["open"]
        self._panel = panel
        self._prices = prices
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}
        self._have: dict[tuple[int, int, int], np.ndarray] = {}

    @property
    def close_by_symbol(self) -> np.ndarray:
        """The panel's closes indexed [symbol, session] (read on first use: the benchmark itself needs only opens)."""
        return self._prices["close"] if self._prices is not None else self._panel["close"].T

    def _row(self, span: Span, h: int) -> np.ndarray:
        O = self.open
        lo = span.sig_start + 1
        hi = min(span.sig_end, span.data_end - 1 - h)  # inclusive last entry
        if hi < lo:
            return np.full(O.shape[1], np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = O[lo + h:hi + h + 1] / O[lo:hi + 1]
        ok = np.isfinite(r)
        cnt = ok.sum(axis=0)
        tot = np.where(ok, r, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)

    def _matrix(self, span: Span, hmax: int) -> np.ndarray:
        """(h, symbol) matrix of mean growth ratios for h in [0, hmax], rows computed once per span."""
        key = (span.sig_start, span.sig_end, span.data_end)
        mat = self._cache.get(key)
        have = self._have.get(key)
        if mat is None or mat.shape[0] <= hmax:
            n = max(hmax + 1, 32 if mat is None else 2 * mat.shape[0])
            new = np.full((n, self.open.shape[1]), np.nan)
            hv = np.zeros(n, dtype=bool)
            if mat is not None:
                new[: mat.shape[0]] = mat
                hv[: have.shape[0]] = have
            mat, have = new, hv
            self._cache[key], self._have[key] = mat, have
        return mat

    def _fill(self, span: Span, holds: np.ndarray, hmax: int) -> np.ndarray:
        """The span's matrix with the rows of ``holds`` computed (and at least hmax + 1 rows)."""
        mat = self._matrix(span, hmax)
        have = self._have[(span.sig_start, span.sig_end, span.data_end)]
        for h in holds:
            if not have[h]:
                mat[h] = self._row(span, int(h))
                have[h] = True
        return mat

    def table(self, trades: Trades, span: Span) -> np.ndarray:
        """The span's (h, symbol) ratio matrix with a row for every closed trade's holding period."""
        have = self._have.get((span.sig_start, span.sig_end, span.data_end), _NO_ROWS)
        missing, hmax = missing_holds_nb(_ints(trades.entry_idx), _ints(trades.exit_idx), trades.open_at_end, have)
        return self._fill(span, missing, int(hmax))

    def ratio(self, span: Span, h: int) -> np.ndarray:
        """mean_e[open[e+h]/open[e]] per symbol (NaN where no entry session exists)."""
        return self.ratios(span, np.array([h]))[0]

    def ratios(self, span: Span, hold: np.ndarray) -> np.ndarray:
        hold = np.asarray(hold, dtype=np.int64)
        mat = self._fill(span, np.unique(hold), int(hold.max()) if hold.size else 0)
        return mat[hold]

    def excess(self, trades: Trades, span: Span) -> np.ndarray:
        """Per closed trade: net return minus its matched benchmark (order of ``trades.net_ret[trades.closed]``).
        The trades carry their own costs (``net_ret``); the benchmark is gross, so no cost is passed."""
        closed = trades.closed
        return trades.net_ret[closed] - self.expected_net(trades, span, closed)

    def expected_net(self, trades: Trades, span: Span, mask: np.ndarray) -> np.ndarray:
        """bench(s,h) per selected trade: mean ratio − 1, gross of costs (a passive holder pays no per-trade
        costs, so costs count against the strategy's excess); 0 where no entry session exists."""
        sym = trades.symbol[mask]
        hold = trades.hold_days[mask]
        if sym.size == 0:
            return np.zeros(0)
        mat = self._fill(span, np.unique(hold), int(hold.max()))
        ratio = mat[hold, sym]
        return np.where(np.isfinite(ratio), ratio - 1.0, 0.0)


_NO_ROWS = np.zeros(0, dtype=np.bool_)
_EQUAL = np.zeros(0, dtype=np.float64)  # empty weights = equal weights in the kernels


def _ints(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


def _cost(trades: Trades) -> np.ndarray:
    """The trades' per-side cost for the kernels: one number for all (as a 1-element array) or one per trade."""
    return np.atleast_1d(np.asarray(trades.cost, dtype=np.float64))


def _sizing(trades: Trades, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(weight, multiplier, absolute) for the kernels: ``weight`` when given (relative weights, no multiplier),
    else the sizing the simulation attached to ``trades`` (empty arrays = 1)."""
    if weight is not None:
        return np.asarray(weight, dtype=np.float64), _EQUAL, False
    w = _EQUAL if trades.weight is None else np.asarray(trades.weight, dtype=np.float64)
    m = _EQUAL if trades.mult is None else np.asarray(trades.mult, dtype=np.float64)
    return w, m, bool(trades.absolute)


def portfolio_returns(trades: Trades, panel: Panel, span: Span, weight: np.ndarray | None = None) -> np.ndarray:
    """Daily portfolio returns over [sig_start, data_end) with the trades' own sizing (docs/ENGINE.md "Position
    sizing"; equal weights when they carry none), or relative ``weight`` per trade when given."""
    w, m, absolute = _sizing(trades, weight)
    return portfolio_returns_nb(
        panel["close"].T, _ints(trades.symbol), _ints(trades.entry_idx), _ints(trades.exit_idx), trades.entry_price,
        trades.exit_price, trades.open_at_end, w, m, absolute, _cost(trades), span.sig_start, span.data_end,
    )


def run_metrics(
    trades: Trades,
    panel: Panel,
    span: Span,
    total_signals: int,
    bench: BenchmarkCache | None = None,
    weight: np.ndarray | None = None,
) -> dict[str, float]:
    """Every per-run metric a trial records (keys in METRIC_KEYS), as plain floats.

    One fused numba pass (``run_stats_nb``) over the trades and the daily portfolio (definitions: docs/ENGINE.md;
    tests/reference_engine.py checks them). No cost is passed: the trades carry their own (``net_ret``, and
    ``cost`` for the daily portfolio's fills), and the benchmark is gross by design.
    """
    bench = bench or BenchmarkCache(panel)
    mat = bench.table(trades, span)
    w, m, absolute = _sizing(trades, weight)
    (n_closed, avg, sd, nw, mw, ml, nl, med, n_fp, avg_b, ex_mean, ex_sd, hold, d_mean, d_sd, mdd, n_days) = run_stats_nb(
        _ints(trades.symbol), _ints(trades.entry_idx), _ints(trades.exit_idx), trades.entry_price, trades.exit_price,
        trades.open_at_end, trades.net_ret, w, m, absolute, _cost(trades), bench.close_by_symbol, mat, FP_SESSIONS,
        span.sig_start, span.data_end,
    )
    months = span.sessions / SESSIONS_PER_MONTH
    spm = total_signals / months if months > 0 else 0.0
    if n_closed:
        hr = nw / n_closed
        if nw == 0:
            wl = 0.0
        elif nl == 0 or ml == 0.0:
            wl = WIN_LOSS_CAP
        else:
            wl = min(mw / abs(ml), WIN_LOSS_CAP)
        # std <= 1e-10 × |mean| is a constant series up to rounding (its std is a few ulps, not 0): no Sharpe
        sharpe = avg / sd if (n_closed >= 2 and not no_dispersion(sd, avg)) else 0.0
        fp = n_fp / n_closed
        ex_sr = ex_mean / ex_sd if (n_closed >= 2 and not no_dispersion(ex_sd, ex_mean)) else 0.0
    else:
        hr = avg = wl = sharpe = 0.0
        fp = avg_b = ex_mean = hold = med = ex_sr = 0.0
    return {
        "total_signals": float(total_signals),
        "total_trades": float(len(trades)),
        "closed_trades": float(n_closed),
        "open_at_end": float(len(trades) - n_closed),
        "hit_rate": float(hr),
        "avg_return": float(avg),
        "median_return": float(med),
        "win_loss": float(wl),
        "sharpe": float(sharpe),
        "portfolio_sharpe": (float(d_mean / d_sd * math.sqrt(252.0))
                             if (n_days >= 2 and not no_dispersion(d_sd, d_mean)) else 0.0),
        "max_drawdown": float(max(0.0, mdd)),
        "avg_hold_days": float(hold),
        "signals_per_month": spm,
        "false_positive_rate": float(fp),
        "rank_score": float(rank_score(hr, avg, wl, spm)),
        "avg_excess_return": float(ex_mean),
        "avg_benchmark_return": float(avg_b),
        "excess_sharpe": float(ex_sr),
    }
