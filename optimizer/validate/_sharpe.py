"""Sharpe-ratio statistics: PSR, expected maximum Sharpe, Deflated Sharpe Ratio and an excess-return t statistic.

References
----------
* Bailey, D. H. & López de Prado, M. (2012), "The Sharpe Ratio Efficient Frontier",
  Journal of Risk 15(2) -- the Probabilistic Sharpe Ratio (PSR).
* Bailey, D. H. & López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting for Selection
  Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5) -- the
  expected maximum Sharpe ratio of N trials and the DSR.

Conventions: every Sharpe ratio fed to the PSR is *per observation* (not annualized); kurtosis is
*non-excess* (a normal distribution has kurtosis 3). ``deflated_sharpe_ratio`` also accepts
annualized inputs together with ``periods_per_year`` and converts them the way the paper does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
# scipy.stats costs ~0.7 s of CPU to import: the functions that use it import it, so a command that only
# loads this module (``accumopt report``, ``--help``) does not pay it

from optimizer.data.rolling import no_dispersion
from optimizer.errors import check_param

__all__ = [
    "probabilistic_sharpe_ratio",
    "expected_max_sharpe",
    "deflated_sharpe_ratio",
    "sharpe_stats",
    "DSRResult",
    "deflated_sharpe_from_study",
    "excess_t_stat",
]


def _finite_1d(values, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float array; raise ParameterError when it has NaN/inf or is not 1-D."""
    arr = np.asarray(values, dtype=float)
    check_param(arr.ndim == 1, name, "a 1-D array", f"<array of shape {arr.shape}>")
    bad = np.flatnonzero(~np.isfinite(arr))
    check_param(bad.size == 0, name, "all finite (no NaN/inf)",
                f"<array with non-finite value at index {bad[0] if bad.size else -1}>")
    return arr


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, n_obs: int, skew: float,
                               kurtosis: float) -> float:
    """Probability that the true Sharpe ratio exceeds ``sr_benchmark`` (Bailey & López de Prado 2012).

    ``PSR = Φ( (sr − sr*)·sqrt(n−1) / sqrt(1 − skew·sr + (kurtosis−1)/4·sr²) )``

    ``sr`` and ``sr_benchmark`` are per-observation (non-annualized) Sharpe ratios, ``kurtosis`` is
    non-excess (normal = 3). NaN in ``sr``/``skew``/``kurtosis`` propagates to a NaN result.
    """
    from scipy import stats as st  # lazy: see the note at the imports
    check_param(int(n_obs) == n_obs and n_obs >= 2, "n_obs", "an integer >= 2", n_obs)
    den = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    # For any real distribution kurtosis >= 1 + skew**2, which makes den a square >= 0.
    check_param(not den <= 0.0, "kurtosis",
                f"such that 1 - skew*sr + (kurtosis-1)/4*sr^2 > 0 (got {den!r} with sr={sr!r}, skew={skew!r})",
                kurtosis)
    z = (sr - sr_benchmark) * math.sqrt(n_obs - 1.0) / math.sqrt(den)
    return float(st.norm.cdf(z))


def expected_max_sharpe(n_trials: int, var_sr: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios whose true value is 0 (Bailey & López de Prado 2014, eq. 4).

    ``E[max SR] ≈ sqrt(V)·((1−γ)·Φ⁻¹(1−1/N) + γ·Φ⁻¹(1−1/(N·e)))`` with γ the Euler–Mascheroni constant and
    ``V = var_sr`` the variance of the trials' Sharpe ratios (same units as the result). With a single
    trial there is no selection, so the result is 0.
    """
    from scipy import stats as st  # lazy: see the note at the imports
    check_param(int(n_trials) == n_trials and n_trials >= 1, "n_trials", "an integer >= 1", n_trials)
    check_param(np.isfinite(var_sr) and var_sr >= 0, "var_sr", "finite and >= 0", var_sr)
    if n_trials == 1:
        return 0.0
    g = np.euler_gamma
    q = (1.0 - g) * st.norm.ppf(1.0 - 1.0 / n_trials) + g * st.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(var_sr) * q)


def deflated_sharpe_ratio(sr: float, n_trials: int, var_sr: float, n_obs: int, skew: float,
                          kurtosis: float, periods_per_year: float | None = None) -> float:
    """Deflated Sharpe Ratio (Bailey & López de Prado 2014): the PSR against the expected maximum SR of N trials.

    ``DSR = PSR(sr, sr0, n_obs, skew, kurtosis)`` with ``sr0 = expected_max_sharpe(n_trials, var_sr)``.

    Units: with ``periods_per_year=None`` ``sr`` and ``var_sr`` are per observation. With
    ``periods_per_year=P`` both are annualized and are converted as in the paper's numerical example:
    ``sr / sqrt(P)`` and ``expected_max_sharpe(n_trials, var_sr) / sqrt(P)``. That example (N=100,
    V=1/2, T=1250, skew −3, kurtosis 10, annualized SR 2.5, P=250) gives DSR ≈ 0.9004; N=46 gives ≈ 0.9505.
    ``n_obs`` is the number of returns the Sharpe ratio was measured on; ``kurtosis`` is non-excess.
    """
    sr0 = expected_max_sharpe(n_trials, var_sr)
    if periods_per_year is not None:
        check_param(np.isfinite(periods_per_year) and periods_per_year > 0, "periods_per_year",
                    "finite and > 0", periods_per_year)
        scale = math.sqrt(periods_per_year)
        sr, sr0 = sr / scale, sr0 / scale
    return probabilistic_sharpe_ratio(sr, sr0, n_obs, skew, kurtosis)


def sharpe_stats(returns: ArrayLike) -> dict:
    """Per-observation Sharpe ratio and the moments the PSR/DSR need.

    Returns ``dict(sr, n, skew, kurtosis)``: ``sr = mean / std`` (std with ddof=1, no risk-free rate:
    pass excess returns if one applies), ``skew`` and ``kurtosis`` are the sample (biased, moment)
    estimators of ``scipy.stats.skew``/``kurtosis`` with ``kurtosis`` NON-excess (normal = 3).
    With n < 2 every value but ``n`` is NaN; with zero dispersion (std <= 1e-10 × |mean|: a constant series, whose
    computed std is rounding, not 0) ``sr`` is ±inf (0 mean: NaN) and ``skew``/``kurtosis`` are NaN.
    """
    from scipy import stats as st  # lazy: see the note at the imports
    r = _finite_1d(returns, "returns")
    n = int(r.size)
    nan = float("nan")
    if n < 2:
        return {"sr": nan, "n": n, "skew": nan, "kurtosis": nan}
    mean, sd = float(r.mean()), float(r.std(ddof=1))
    if no_dispersion(sd, mean):
        sr = nan if mean == 0.0 else math.copysign(math.inf, mean)
        return {"sr": sr, "n": n, "skew": nan, "kurtosis": nan}
    return {"sr": mean / sd, "n": n, "skew": float(st.skew(r)),
            "kurtosis": float(st.kurtosis(r, fisher=True) + 3.0)}


@dataclass(frozen=True)
class DSRResult:
    """Outcome of :func:`deflated_sharpe_from_study`. ``sr``, ``sr0`` and ``var_sr`` are in the units of the
    inputs (per observation unless ``periods_per_year`` was given, then annualized)."""

    dsr: float
    sr: float
    sr0: float
    var_sr: float
    n_trials: int
    n_obs: int
    skew: float
    kurtosis: float


def deflated_sharpe_from_study(best_returns: ArrayLike, trial_sharpes: ArrayLike, n_trials_tried: int,
                               periods_per_year: float | None = None) -> DSRResult:
    """DSR of the selected configuration of a study (Bailey & López de Prado 2014).

    * ``best_returns``: the per-observation returns (or excess returns) of the selected configuration.
    * ``trial_sharpes``: Sharpe ratios of the trials that produced one (the selected one included);
      non-finite entries are ignored. ``V[SR]`` is their sample variance (ddof=1).
    * ``n_trials_tried``: every trial attempted, *including pruned and failed ones* -- it is N, the number of
      independent tries the selection was made from, and must be >= the number of finite trial Sharpe ratios.
    * ``periods_per_year``: ``None`` when ``trial_sharpes`` are per observation (same frequency as
      ``best_returns``); otherwise ``trial_sharpes`` are annualized and the reported ``sr`` is annualized with it.

    ``dsr`` is NaN (not an error) when it cannot be estimated: fewer than 2 returns, zero dispersion, or
    fewer than 2 finite trial Sharpe ratios while ``n_trials_tried`` > 1 (no estimate of V[SR]).
    """
    ts = np.asarray(trial_sharpes, dtype=float).ravel()
    ts = ts[np.isfinite(ts)]
    check_param(int(n_trials_tried) == n_trials_tried and n_trials_tried >= max(1, ts.size), "n_trials_tried",
                f"an integer >= max(1, number of finite trial Sharpe ratios = {ts.size})", n_trials_tried)
    n_trials_tried = int(n_trials_tried)
    m = sharpe_stats(best_returns)
    scale = 1.0 if periods_per_year is None else math.sqrt(periods_per_year)
    sr = m["sr"] * scale
    var_sr = float(np.var(ts, ddof=1)) if ts.size >= 2 else (0.0 if n_trials_tried == 1 else float("nan"))
    nan = float("nan")
    usable = m["n"] >= 2 and np.isfinite(m["sr"]) and np.isfinite(m["kurtosis"]) and np.isfinite(var_sr)
    sr0 = expected_max_sharpe(n_trials_tried, var_sr) if np.isfinite(var_sr) else nan
    dsr = (deflated_sharpe_ratio(sr, n_trials_tried, var_sr, m["n"], m["skew"], m["kurtosis"], periods_per_year)
           if usable else nan)
    return DSRResult(dsr=dsr, sr=sr, sr0=sr0, var_sr=var_sr, n_trials=n_trials_tried, n_obs=m["n"],
                     skew=m["skew"], kurtosis=m["kurtosis"])


def excess_t_stat(excess_returns: ArrayLike) -> tuple[float, float, int]:
    """One-sample t statistic of the mean excess return against 0: ``(mean, t, n)``.

    ``t = mean / (std_ddof1 / sqrt(n))`` (``scipy.stats.ttest_1samp``). Degenerate cases:
    n = 0 -> ``(nan, nan, 0)``; n = 1 -> ``(x, nan, 1)``; zero dispersion (std <= 1e-10 × |mean|, a constant
    series up to rounding) -> ``t = ±inf`` by the sign of the mean, ``nan`` when the mean is 0.
    """
    from scipy import stats as st  # lazy: see the note at the imports
    r = _finite_1d(excess_returns, "excess_returns")
    n = int(r.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = float(r.mean())
    if n == 1:
        return mean, float("nan"), 1
    if no_dispersion(float(r.std(ddof=1)), mean):
        return mean, (float("nan") if mean == 0.0 else math.copysign(math.inf, mean)), n
    return mean, float(st.ttest_1samp(r, 0.0).statistic), n
