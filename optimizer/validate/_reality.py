"""Reality check across a whole search: Hansen's Superior Predictive Ability test over every configuration tried.

A search that tries hundreds of configurations finds one with a good backtest by luck alone. The SPA test (Hansen
2005; a studentized, less conservative refinement of White's 2000 Reality Check) asks whether the BEST of all the
configurations tried beats the benchmark, accounting for the search: the null is that no configuration has a
positive expected excess. It is computed by ``arch.bootstrap.SPA`` with a stationary bootstrap over days, so it
also respects the dependence between days and, through the joint resampling of whole rows, between
configurations.

Studentization: arch 8's ``SPA`` accepts ``studentize=True`` but its statistic is the largest RAW mean loss
differential (the flag only changes its description), so a high-variance configuration dominates the maximum.
Hansen's statistic is max_k sqrt(n) d_k / w_k, with the bootstrap statistics scaled by the same w_k; dividing
every column by w_k before handing it to arch gives exactly that. Any fixed positive w_k keeps the test's size (the
bootstrap reproduces the distribution of the same weighted maximum); the weights only move its power. w_k here is
the column's standard deviation: a long-run (HAC or bootstrap) estimate over 100-250 days is so noisy that the
maximum picks the columns whose scale happens to be underestimated (measured: 14 % rejections at 5 % on an i.i.d.
null of 10 configurations x 200 days, against 7 % with the standard deviation and 10 % unscaled); the dependence
between days is handled by the stationary bootstrap of the test itself. A column that never varies (a
configuration that never trades) cannot be studentized and cannot be the best one: it is left out of the test and
counted in ``n_constant``.

Input: a days x configurations matrix of per-day performance in excess of the benchmark (e.g. the daily portfolio
excess returns ``walkforward.pbo_matrix`` builds, one column per trial). The benchmark is then 0 on every day.
Identical columns (a configuration tried twice) are one configuration: they are dropped before testing, and the
count of distinct ones is reported beside the count tried.

References
----------
* White, H. (2000), "A Reality Check for Data Snooping", Econometrica 68(5).
* Hansen, P. R. (2005), "A Test for Superior Predictive Ability", Journal of Business & Economic Statistics 23(4).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from optimizer.data.rolling import no_dispersion
from optimizer.errors import check_param

__all__ = ["RealityCheck", "spa_test", "distinct_columns"]


@dataclass(frozen=True)
class RealityCheck:
    """Outcome of :func:`spa_test`.

    ``p_value``: Hansen's consistent SPA p-value (the one to report); ``p_lower`` / ``p_upper``: the lower bound
    and the upper bound (= White's Reality Check, studentized) of the same test. ``n_configs``: distinct
    configurations tested; ``n_configs_tried``: columns given. ``best``: column (of the input) of the highest mean
    daily excess, ``best_mean`` / ``best_t``: its mean and i.i.d. t (for context: the naive test SPA corrects).
    ``block_size``: mean block length (days) of the stationary bootstrap; ``reps``: resamples. ``studentized``:
    whether the columns were scaled by their long-run standard deviations; ``n_constant``: distinct columns left
    out because they never vary (std <= 1e-10 × |mean|: constant up to rounding; NaN p-values when nothing is left
    to test).
    """

    p_value: float
    p_lower: float
    p_upper: float
    n_configs: int
    n_configs_tried: int
    n_days: int
    best: int
    best_mean: float
    best_t: float
    block_size: float
    reps: int
    studentized: bool = True
    n_constant: int = 0

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def distinct_columns(perf: ArrayLike) -> np.ndarray:
    """Indices of the first occurrence of each distinct column of ``perf`` (in column order)."""
    m = np.asarray(perf, dtype=float)
    _, first = np.unique(m.T, axis=0, return_index=True)
    return np.sort(first)


def spa_test(perf: ArrayLike, reps: int = 1000, block_size: float | None = None, seed: int | None = 0,
             studentize: bool = True) -> RealityCheck:
    """Hansen's SPA test that the best column of ``perf`` (days x configurations, excess over the benchmark) has a
    positive expected value, over every configuration tried (``arch.bootstrap.SPA``, stationary bootstrap).

    ``block_size`` defaults to arch's choice (sqrt of the number of days). Seeded, so reproducible.
    """
    from arch.bootstrap import SPA

    m = np.asarray(perf, dtype=float)
    check_param(m.ndim == 2, "perf", "a 2-D array (days x configurations)", f"<array of shape {m.shape}>")
    check_param(m.shape[0] >= 10, "perf", "at least 10 rows (days)", f"<array of shape {m.shape}>")
    check_param(m.shape[1] >= 1, "perf", "at least 1 column (configuration)", f"<array of shape {m.shape}>")
    check_param(bool(np.isfinite(m).all()), "perf", "all finite (no NaN/inf)", "<array with non-finite values>")
    check_param(isinstance(reps, (int, np.integer)) and reps >= 100, "reps", "an integer >= 100", reps)
    check_param(block_size is None or block_size >= 1, "block_size", "None or >= 1", block_size)
    keep = distinct_columns(m)
    d = m[:, keep]
    T = d.shape[0]
    means = m.mean(axis=0)
    best = int(np.argmax(means))
    sd = m[:, best].std(ddof=1)
    best_t = float("nan") if no_dispersion(sd, means[best]) else float(means[best] / (sd / math.sqrt(T)))
    varies = ~no_dispersion(d.std(axis=0, ddof=1), d.mean(axis=0))  # constant up to rounding: never varies
    n_const = int(np.count_nonzero(~varies))
    d = d[:, varies]
    b = int(round(block_size)) if block_size is not None else int(math.sqrt(T))  # arch's default: sqrt(T)
    nan = float("nan")
    if d.shape[1] == 0:
        return RealityCheck(nan, nan, nan, int(keep.size), int(m.shape[1]), int(T), best, float(means[best]), best_t,
                            float(b), int(reps), bool(studentize), n_const)
    rng = np.random.default_rng(seed)
    if studentize:
        d = d / d.std(axis=0, ddof=1)
    # arch tests losses: benchmark loss 0, model loss = -excess (lower loss is better)
    spa = SPA(np.zeros(T), -d, block_size=b, reps=int(reps), bootstrap="stationary", studentize=studentize, seed=rng)
    spa.compute()
    pv = spa.pvalues
    return RealityCheck(p_value=float(pv["consistent"]), p_lower=float(pv["lower"]), p_upper=float(pv["upper"]),
                        n_configs=int(keep.size), n_configs_tried=int(m.shape[1]), n_days=int(T), best=best,
                        best_mean=float(means[best]), best_t=best_t, block_size=float(spa.block_size),
                        reps=int(reps), studentized=bool(studentize), n_constant=n_const)
