"""Robustness checks: the block bootstrap of a portfolio's daily equity (:func:`equity_bootstrap`), cost stress
and its wording, per-condition rule validation of trade returns, and bootstrap intervals of a trade list.

Overlapping trades do not compound one after another: the product of 143 per-trade returns is not the return of a
portfolio that held them side by side. Figures about the PORTFOLIO (total return, CAGR, drawdown, Sharpe) come
from :func:`equity_bootstrap`, which resamples blocks of days of the portfolio's daily returns (its point
estimates are those of the equity curve itself), and its drawdown distribution is the one to show (it replaces a
shuffle of the trade order, which assumed the same one-at-a-time compounding); :func:`bootstrap_ci` describes a
stream of trades taken one at a time (e.g. one position at a time).

References
----------
* Efron, B. (1987), "Better Bootstrap Confidence Intervals", JASA 82(397) -- BCa intervals
  (via ``scipy.stats.bootstrap``).
* Mann, H. B. & Whitney, D. R. (1947), "On a Test of Whether one of Two Random Variables is Stochastically
  Larger than the Other", Annals of Mathematical Statistics 18(1).
* Benjamini, Y. & Hochberg, Y. (1995), "Controlling the False Discovery Rate", JRSS B 57(1)
  (via ``scipy.stats.false_discovery_control``).
* Politis, D. N. & Romano, J. P. (1994), "The Stationary Bootstrap", JASA 89(428) (via ``arch.bootstrap``).

Conventions: trade returns are fractional (0.01 = +1%) and compound: the equity after k trades is
``prod(1 + r_i)`` starting from 1. Maximum drawdown is a positive fraction of the running peak (0.2 = −20%).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
import pandas as pd
# scipy.stats costs ~0.7 s of CPU to import: the functions that use it import it, so a command that only
# loads this module (``accumopt report``, ``--help``) does not pay it

from optimizer.data.rolling import no_dispersion
from optimizer.errors import check_param
from optimizer.validate._inference import bootstrap_rows, politis_white_block

__all__ = [
    "CI",
    "BOOTSTRAP_STATS",
    "total_return",
    "max_drawdown",
    "bootstrap_ci",
    "cost_stress",
    "flag_fragile",
    "cost_stress_wording",
    "rule_validation",
    "closed_trade_events",
    "rule_conditions",
    "validate_rules",
    "EquityBootstrap",
    "equity_bootstrap",
    "equity_point",
]

BOOTSTRAP_STATS = ("total_return", "max_drawdown", "sharpe")


class CI(NamedTuple):
    """A point estimate and its two-sided confidence interval."""

    point: float
    lo: float
    hi: float


def _trade_returns(values, name: str = "trade_returns", min_n: int = 1) -> np.ndarray:
    r = np.asarray(values, dtype=float)
    check_param(r.ndim == 1, name, "a 1-D array", f"<array of shape {r.shape}>")
    check_param(r.size >= min_n, name, f"at least {min_n} values", f"<array of length {r.size}>")
    bad = np.flatnonzero(~np.isfinite(r) | (r < -1.0))
    check_param(bad.size == 0, name, "finite and >= -1 (a trade cannot lose more than 100%)",
                f"<array with {float(r[bad[0]]) if bad.size else None!r} at index {bad[0] if bad.size else -1}>")
    return r


def total_return(r: ArrayLike, axis: int = -1) -> np.ndarray | float:
    """Compounded return ``prod(1 + r) − 1`` along ``axis`` (order-invariant)."""
    return np.prod(1.0 + np.asarray(r, dtype=float), axis=axis) - 1.0


def max_drawdown(r: ArrayLike, axis: int = -1) -> np.ndarray | float:
    """Maximum drawdown of the compounded equity path along ``axis``, as a positive fraction of the running
    peak; the starting equity 1 counts as a peak (so a first losing trade is a drawdown)."""
    x = np.moveaxis(np.asarray(r, dtype=float), axis, -1)
    equity = np.cumprod(1.0 + x, axis=-1)
    peak = np.maximum(np.maximum.accumulate(equity, axis=-1), 1.0)
    return np.max(1.0 - equity / peak, axis=-1, initial=0.0)


def _flat_ratio(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """mean / sd, with the value of a series without dispersion (sd <= 1e-10 × |mean|, :func:`no_dispersion`:
    a constant float series' std is a few ulps, not 0) where it has none: ±inf by the sign of the mean, NaN for
    a zero mean."""
    m, s = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(no_dispersion(s, m), np.divide(m, 0.0), np.divide(m, s))


def _sharpe(r, axis: int = -1):
    """Per-trade Sharpe ratio mean / std (ddof=1) along ``axis``; ±inf / NaN without dispersion (:func:`_flat_ratio`)."""
    x = np.asarray(r, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _flat_ratio(np.mean(x, axis=axis), np.std(x, axis=axis, ddof=1))


_STAT_FUNCS = {"total_return": total_return, "max_drawdown": max_drawdown, "sharpe": _sharpe}


def _stat_names(stat) -> list[str]:
    names = list(BOOTSTRAP_STATS) if stat == "all" else ([stat] if isinstance(stat, str) else list(stat))
    for name in names:
        check_param(name in _STAT_FUNCS, "stat", f"'all' or one of {BOOTSTRAP_STATS}", name)
    return names


def _scipy_ci(r: np.ndarray, func, method: str, n_boot: int, level: float, seed) -> tuple[float, float]:
    """``scipy.stats.bootstrap`` interval; a non-finite BCa interval is redone as percentile on the same resamples."""
    from scipy import stats as st  # lazy: see the note at the imports
    kw = dict(confidence_level=level, vectorized=True, rng=np.random.default_rng(seed))
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", st.DegenerateDataWarning)
        res = st.bootstrap((r,), func, method=method, n_resamples=n_boot, **kw)
        lo, hi = res.confidence_interval
        if method != "percentile" and not (np.isfinite(lo) and np.isfinite(hi)):
            res = st.bootstrap((r,), func, method="percentile", n_resamples=0, bootstrap_result=res, **kw)
            lo, hi = res.confidence_interval
    return float(lo), float(hi)


def bootstrap_ci(trade_returns: ArrayLike, stat: str | Iterable[str] = "all", n_boot: int = 2000, alpha: float = 0.05,
                 seed: int | None = None) -> dict[str, CI]:
    """Bootstrap confidence intervals of trade-list statistics, resampling trades iid with replacement.

    ``stat`` is ``"total_return"``, ``"max_drawdown"``, ``"sharpe"`` (per-trade mean/std, ddof=1), a list of
    them, or ``"all"``. Returns ``{name: CI(point, lo, hi)}`` at confidence ``1 − alpha``; all use
    ``scipy.stats.bootstrap`` seeded with ``numpy.random.default_rng(seed)``:

    * total_return and sharpe: BCa (Efron 1987); when BCa is degenerate (non-finite bounds, e.g. few distinct
      trades) the same resamples are reused with the percentile method.
    * max_drawdown: percentile method. Drawdown is a path statistic: each resample is a random *sequence* of n
      trades drawn from the observed ones, so the interval describes the drawdown of a trade stream like this
      one, not the uncertainty of the realised order (the point estimate, which may lie outside the interval).
      BCa's jackknife is not meaningful for a path statistic, hence percentile.
    """
    r = _trade_returns(trade_returns, min_n=2)
    names = _stat_names(stat)
    check_param(isinstance(n_boot, (int, np.integer)) and n_boot >= 100, "n_boot", "an integer >= 100", n_boot)
    check_param(0.0 < alpha < 1.0, "alpha", "in (0, 1)", alpha)
    out = {}
    for name in names:
        func = _STAT_FUNCS[name]
        method = "percentile" if name == "max_drawdown" else "BCa"
        lo, hi = _scipy_ci(r, func, method, int(n_boot), 1.0 - alpha, seed)
        out[name] = CI(float(func(r)), lo, hi)
    return out


def cost_stress(evaluate: Callable[[float], Mapping], multipliers: Iterable[float] = (1, 2, 3),
                key: str = "avg_excess_return") -> pd.DataFrame:
    """Re-evaluate a strategy with transaction costs scaled by each multiplier.

    ``evaluate(multiplier)`` returns a dict of metrics; the result has one row per multiplier (in the given
    order) with a ``multiplier`` column, every metric returned, and ``survives = metric[key] > 0`` (NaN does
    not survive).
    """
    mults = [float(m) for m in multipliers]
    check_param(len(mults) >= 1, "multipliers", "non-empty", multipliers)
    for m in mults:
        check_param(np.isfinite(m) and m > 0, "multipliers", "all finite and > 0", tuple(mults))
    rows = []
    for m in mults:
        res = dict(evaluate(m))
        check_param(key in res, "key", f"a key of the dict evaluate({m:g}) returned {sorted(res)}", key)
        value = float(res[key])
        rows.append({"multiplier": m, **res, "survives": bool(np.isfinite(value) and value > 0.0)})
    return pd.DataFrame(rows)


def flag_fragile(df: pd.DataFrame) -> bool:
    """True when the strategy survives at 1× costs but at no higher multiplier (a :func:`cost_stress` table).
    A strategy that does not survive even at 1× is not "fragile" but dead: False."""
    check_param({"multiplier", "survives"} <= set(df.columns), "df", "a cost_stress table with "
                "'multiplier' and 'survives' columns", list(df.columns))
    mult = df["multiplier"].to_numpy(dtype=float)
    surv = df["survives"].to_numpy(dtype=bool)
    check_param(bool((mult == 1.0).any()) and bool((mult > 1.0).any()), "df",
                "a table with a 1x row and at least one row above 1x", mult.tolist())
    return bool(surv[mult == 1.0].all() and not surv[mult > 1.0].any())


def cost_stress_wording(df: pd.DataFrame) -> str:
    """One sentence stating what a :func:`cost_stress` table shows, from its own ``survives`` booleans (so the
    words can never contradict the table): e.g. ``"survives 1×, 2× and 3× costs"``, ``"survives 1× costs but
    not 2× or 3×"`` (the fragile case, :func:`flag_fragile`), ``"survives 1× and 2× costs but not 3×"``,
    ``"does not survive 1× costs"``. Multipliers are listed in increasing order."""
    check_param({"multiplier", "survives"} <= set(df.columns), "df", "a cost_stress table with "
                "'multiplier' and 'survives' columns", list(df.columns))
    check_param(len(df) >= 1, "df", "a cost_stress table with at least one row", len(df))
    t = df.sort_values("multiplier", kind="mergesort")
    mult = [f"{m:g}×" for m in t["multiplier"].to_numpy(dtype=float)]
    surv = t["survives"].to_numpy(dtype=bool)

    def join(items: list[str], word: str) -> str:
        return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"

    yes = [m for m, ok in zip(mult, surv) if ok]
    no = [m for m, ok in zip(mult, surv) if not ok]
    if not yes:
        return f"does not survive {join(no, 'or')} costs"
    if not no:
        return f"survives {join(yes, 'and')} costs"
    return f"survives {join(yes, 'and')} costs but not {join(no, 'or')}"


def _side_stats(x: np.ndarray) -> tuple[int, float, float]:
    if x.size == 0:
        return 0, float("nan"), float("nan")
    return int(x.size), float(np.median(x)), float(np.mean(x > 0.0))


def rule_validation(returns: ArrayLike, conditions: Mapping[str, ArrayLike], min_side: int = 5) -> pd.DataFrame:
    """Does each boolean condition split the trade returns into different distributions?

    For each condition: two-sided Mann–Whitney U test (``scipy.stats.mannwhitneyu``) of the returns with the
    condition true vs false, and Benjamini–Hochberg q-values (``scipy.stats.false_discovery_control``) across
    the conditions tested. Columns: ``condition, n_with, n_without, n_na`` (returns the condition does not apply
    to), ``median_with, median_without, win_rate_with, win_rate_without`` (share of returns > 0), ``u_stat`` (U of
    the "with" sample), ``auc`` (U / (n_with·n_without): probability that a "with" return beats a "without" one,
    ties half), ``direction`` ("+" when auc > 0.5, "-" when < 0.5, "0" at 0.5, "" when untested), ``p_value``,
    ``q_value``.

    A condition is a boolean array of the returns' shape, or a pandas nullable boolean array whose missing values
    mark returns it does not apply to (e.g. "aligned with the parent ETF" for a symbol without one): those are on
    neither side. A condition with fewer than ``min_side`` (default 5) returns on either side is not tested: NaN
    ``u_stat``/``auc``/``p_value``/``q_value``, and it is left out of the BH family so it does not dilute the
    correction of the others.
    """
    from scipy import stats as st  # lazy: see the note at the imports
    r = np.asarray(returns, dtype=float)
    check_param(r.ndim == 1 and bool(np.isfinite(r).all()), "returns", "a 1-D array of finite values",
                f"<array of shape {r.shape}>")
    check_param(isinstance(min_side, (int, np.integer)) and min_side >= 1, "min_side", "an integer >= 1", min_side)
    rows = []
    for name, cond in conditions.items():
        if isinstance(getattr(cond, "dtype", None), pd.BooleanDtype):
            na = np.asarray(pd.isna(cond), dtype=bool)
            c = np.asarray(pd.array(cond, dtype="boolean").fillna(False), dtype=bool)
        else:
            c = np.asarray(cond)
            na = np.zeros(c.shape, dtype=bool)
        check_param(c.dtype == bool and c.shape == r.shape, f"conditions[{name!r}]",
                    f"a boolean array of the returns' shape {r.shape}", f"<{c.dtype} array of shape {c.shape}>")
        w, wo = r[c & ~na], r[~c & ~na]
        n1, med1, win1 = _side_stats(w)
        n0, med0, win0 = _side_stats(wo)
        u = auc = p = float("nan")
        direction = ""
        if min(n1, n0) >= min_side:
            res = st.mannwhitneyu(w, wo, alternative="two-sided")
            u, p = float(res.statistic), float(res.pvalue)
            auc = u / (n1 * n0)
            direction = "+" if auc > 0.5 else "-" if auc < 0.5 else "0"
        rows.append({"condition": name, "n_with": n1, "n_without": n0, "n_na": int(na.sum()), "median_with": med1,
                     "median_without": med0, "win_rate_with": win1, "win_rate_without": win0,
                     "u_stat": u, "auc": auc, "direction": direction, "p_value": p})
    df = pd.DataFrame(rows, columns=["condition", "n_with", "n_without", "n_na", "median_with", "median_without",
                                     "win_rate_with", "win_rate_without", "u_stat", "auc", "direction",
                                     "p_value"])
    q = np.full(len(df), np.nan)
    tested = df["p_value"].notna().to_numpy()
    if tested.any():
        q[tested] = st.false_discovery_control(df["p_value"].to_numpy()[tested], method="bh")
    df["q_value"] = q
    return df


def closed_trade_events(events: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The closed trades of a ``signal_events`` frame and the return every rule and figure uses for them: the
    excess return over the matched random-entry benchmark when the frame has it (the walk-forward's events: the
    verdict's measure), else the net return. Closed = not open at the end of the data, with a finite return: the
    trades the verdict counts."""
    col = "excess_return" if "excess_return" in events.columns else "net_return"
    ok = pd.to_numeric(events[col], errors="coerce").notna()
    if "open_at_end" in events.columns:
        ok &= ~events["open_at_end"].fillna(False).astype(bool)
    return events[ok], col


def rule_conditions(closed: pd.DataFrame) -> dict[str, pd.arrays.BooleanArray]:
    """The context conditions whose effect on returns is validated (one definition for the walk-forward's
    ``rules`` table, the report's rule validation and its parent-ETF box plot), for the columns ``closed`` has:
    parent ETF aligned (missing where the symbol's parent ETF is not available: it applies to neither side),
    signal quality HIGH / LOW, trend UP / DOWN (the design's "DOWN | Accumulation = potential reversal"),
    regime RISK_ON, options boost."""
    out: dict[str, pd.arrays.BooleanArray] = {}

    def arr(values: pd.Series, applies: pd.Series | None = None) -> pd.arrays.BooleanArray:
        a = pd.array(values.to_numpy(dtype=bool), dtype="boolean")
        if applies is not None:
            a[~applies.to_numpy(dtype=bool)] = pd.NA
        return a

    if "parent_etf_aligned" in closed.columns:
        avail = (closed["parent_etf_available"].fillna(False).astype(bool) if "parent_etf_available" in closed.columns
                 else closed["parent_etf_aligned"].notna())
        out["parent ETF aligned"] = arr(closed["parent_etf_aligned"].fillna(False).astype(bool), avail)
    if "signal_quality" in closed.columns:
        for q in ("HIGH", "LOW"):
            out[f"signal quality {q}"] = arr(closed["signal_quality"].astype(str) == q)
    if "trend_state" in closed.columns:
        for t in ("UP", "DOWN"):
            out[f"trend {t}"] = arr(closed["trend_state"].astype(str) == t)
    if "regime" in closed.columns:
        out["regime RISK_ON"] = arr(closed["regime"].astype(str) == "RISK_ON")
    if "options_boost" in closed.columns:
        out["options boost"] = arr(pd.to_numeric(closed["options_boost"], errors="coerce").fillna(1.0) > 1.0)
    return out


def validate_rules(events: pd.DataFrame) -> pd.DataFrame:
    """:func:`rule_validation` of :func:`rule_conditions` on the closed trades of ``events`` (their excess return
    when the frame has it); an empty frame when there is no closed trade or no condition column."""
    closed, col = closed_trade_events(events)
    conds = rule_conditions(closed)
    if closed.empty or not conds:
        return pd.DataFrame()
    return rule_validation(pd.to_numeric(closed[col]).to_numpy(dtype=float), conds)


@dataclass(frozen=True)
class EquityBootstrap:
    """Outcome of :func:`equity_bootstrap`: point estimates of the equity curve and their intervals.

    ``resamples`` says what was resampled (shown beside the figures); ``total_return`` / ``cagr`` /
    ``max_drawdown`` / ``sharpe`` (annualized) are ``CI(point, lo, hi)`` at ``level``, the points those of the
    actual curve (``total_return.point`` = last equity − 1). ``max_drawdowns``: the resampled paths' maximum
    drawdowns (the drawdown distribution); ``drawdown_percentile``: where the actual drawdown lies in it (0-100).
    """

    resamples: str
    n_days: int
    block_size: float
    reps: int
    level: float
    total_return: CI
    cagr: CI
    max_drawdown: CI
    sharpe: CI
    max_drawdowns: np.ndarray
    drawdown_percentile: float


def _equity_stats(r: np.ndarray, periods_per_year: float) -> np.ndarray:
    """(total return, CAGR, max drawdown, annualized Sharpe) of daily returns ``r`` (last axis = days, at least
    one); the Sharpe is NaN for one day (no standard deviation) and, without dispersion (std <= 1e-10 × |mean|,
    :func:`_flat_ratio`), ±inf by the sign of the mean, NaN for a zero mean."""
    tot = total_return(r)
    years = r.shape[-1] / periods_per_year
    cagr = np.power(np.maximum(1.0 + tot, 0.0), 1.0 / years) - 1.0
    if r.shape[-1] < 2:
        sr = np.full(r.shape[:-1], np.nan)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            sr = _flat_ratio(np.mean(r, axis=-1), np.std(r, axis=-1, ddof=1)) * np.sqrt(periods_per_year)
    return np.stack([tot, cagr, max_drawdown(r), sr], axis=-1)


def equity_point(daily_returns: ArrayLike, periods_per_year: float = 252.0) -> dict[str, float]:
    """The figures of a portfolio's equity curve from its DAILY returns: ``total_return`` (last equity − 1),
    ``cagr``, ``max_drawdown`` (of the compounded curve, a positive fraction of the running peak) and the annualized
    ``sharpe`` (mean / std ddof=1 × sqrt(periods_per_year); NaN for one day; without dispersion, std <= 1e-10 ×
    |mean| as a constant series has, ±inf by the sign of the mean, NaN for a zero mean). The
    point estimates of :func:`equity_bootstrap` (one definition); at least one day."""
    r = np.asarray(daily_returns, dtype=float)
    check_param(r.ndim == 1 and r.size >= 1, "daily_returns", "a 1-D array of at least 1 value",
                f"<array of shape {r.shape}>")
    v = _equity_stats(r, periods_per_year)
    return {"total_return": float(v[0]), "cagr": float(v[1]), "max_drawdown": float(v[2]), "sharpe": float(v[3])}


def equity_bootstrap(daily_returns: ArrayLike, reps: int = 2000, alpha: float = 0.05, block_size: float | None = None,
                     seed: int | None = 0, periods_per_year: float = 252.0) -> EquityBootstrap:
    """Stationary block bootstrap of a portfolio's DAILY returns (days resampled in blocks of mean length
    ``block_size``, Politis-White by default, so volatility clusters and overlapping positions stay together).

    Percentile intervals at ``1 − alpha`` of total return, CAGR, maximum drawdown and annualized Sharpe; the
    resampled drawdowns are returned whole (the drawdown distribution). Seeded, so reproducible. The Sharpe of
    a series (or resample) without dispersion, std <= 1e-10 × |mean| (a constant series), is ±inf by the sign
    of its mean, NaN for a zero mean, as in :func:`equity_point`.
    """
    from scipy import stats as st  # lazy: see the note at the imports
    from arch.bootstrap import StationaryBootstrap  # lazy: arch is heavy and only the bootstraps need it

    r = np.asarray(daily_returns, dtype=float)
    check_param(r.ndim == 1 and r.size >= 10, "daily_returns", "a 1-D array of at least 10 values",
                f"<array of shape {r.shape}>")
    bad = np.flatnonzero(~np.isfinite(r) | (r < -1.0))
    check_param(bad.size == 0, "daily_returns", "finite and >= -1 (a portfolio cannot lose more than 100% a day)",
                f"<array with {float(r[bad[0]]) if bad.size else None!r} at index {bad[0] if bad.size else -1}>")
    check_param(isinstance(reps, (int, np.integer)) and reps >= 100, "reps", "an integer >= 100", reps)
    check_param(0.0 < alpha < 1.0, "alpha", "in (0, 1)", alpha)
    check_param(block_size is None or block_size >= 1, "block_size", "None or >= 1", block_size)
    b = politis_white_block(r) if block_size is None else float(block_size)
    bs = StationaryBootstrap(b, r, seed=np.random.default_rng(seed))
    boot = bootstrap_rows(bs, int(reps), lambda x: _equity_stats(x, periods_per_year), 4)  # reps × 4
    point = _equity_stats(r, periods_per_year)
    qs = [alpha / 2.0, 1.0 - alpha / 2.0]
    # interpolating between two equal infinities is NaN (inf - inf) ...; an all-NaN column (the Sharpe of an
    # all-zero series) is NaN without a warning
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boot, qs, axis=0)
        below, above = np.nanquantile(boot, qs, axis=0, method="lower"), np.nanquantile(boot, qs, axis=0, method="higher")
    same_inf = np.isinf(below) & (below == above)  # ... though the quantile is that infinity (no dispersion)
    lo, hi = np.where(same_inf, below, np.stack([lo, hi]))
    cis = [CI(float(point[i]), float(lo[i]), float(hi[i])) for i in range(4)]
    mdds = boot[:, 2].copy()
    return EquityBootstrap(
        resamples=f"days of the portfolio's daily returns, in blocks (stationary bootstrap, mean block {b:.1f} days)",
        n_days=int(r.size), block_size=b, reps=int(reps), level=1.0 - alpha, total_return=cis[0], cagr=cis[1],
        max_drawdown=cis[2], sharpe=cis[3], max_drawdowns=mdds,
        drawdown_percentile=float(st.percentileofscore(mdds, point[2], kind="mean")))
