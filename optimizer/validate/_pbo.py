"""Probability of Backtest Overfitting by combinatorially symmetric cross-validation (CSCV).

Reference: Bailey, D. H., Borwein, J., López de Prado, M. & Zhu, Q. J. (2017), "The Probability of
Backtest Overfitting", Journal of Computational Finance 20(4).

The T×N performance matrix (rows = periods, columns = configurations) is split into S contiguous row
blocks. For every choice of S/2 blocks as in-sample (IS) -- C(S, S/2) combinations, 12,870 for S=16 --
the configuration with the best IS metric is selected and its relative rank ω among the N out-of-sample
(OOS) metrics is recorded; the logit is λ = ln(ω/(1−ω)) and PBO is the share of combinations with λ <= 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats as st

from optimizer.errors import check_param

__all__ = ["PBOResult", "probability_of_backtest_overfitting"]

_BUILTIN_METRICS = ("sharpe", "mean")
_MAX_BLOCKS = 20  # C(20, 10) = 184,756 combinations


@dataclass(frozen=True)
class PBOResult:
    """Outcome of CSCV; arrays have one entry per IS/OOS combination.

    * ``pbo``: share of combinations whose IS-best configuration ranks at or below the OOS median (λ <= 0).
    * ``logits``: λ = ln(ω/(1−ω)); ``omega``: relative OOS rank ω = rank/(N+1), rank 1 = worst, ties averaged.
    * ``selected``: column index of the IS-best configuration (first one on IS ties).
    * ``is_metric`` / ``oos_metric``: the selected configuration's IS and OOS metric (performance degradation).
    * ``degradation_slope`` / ``degradation_intercept``: OLS fit of ``oos_metric`` on ``is_metric``
      (NaN when ``is_metric`` has no spread); a negative slope is the paper's sign of overfitting.
    * ``prob_oos_loss``: share of combinations where the selected configuration's OOS metric is < 0.
    """

    pbo: float
    logits: np.ndarray
    omega: np.ndarray
    selected: np.ndarray
    is_metric: np.ndarray
    oos_metric: np.ndarray
    degradation_slope: float
    degradation_intercept: float
    prob_oos_loss: float
    n_combinations: int
    n_blocks: int
    n_configs: int


def _validate(perf, n_blocks: int, metric) -> np.ndarray:
    m = np.asarray(perf, dtype=float)
    check_param(m.ndim == 2, "perf", "a 2-D array (T_obs × N_configs)", f"<array of shape {m.shape}>")
    check_param(isinstance(n_blocks, (int, np.integer)) and n_blocks >= 2 and n_blocks % 2 == 0,
                "n_blocks", "an even integer >= 2", n_blocks)
    check_param(n_blocks <= _MAX_BLOCKS, "n_blocks",
                f"<= {_MAX_BLOCKS} (C(S, S/2) combinations are held in memory)", n_blocks)
    check_param(m.shape[0] >= n_blocks, "perf", f"at least n_blocks={n_blocks} rows (T_obs)",
                f"<array of shape {m.shape}>")
    check_param(m.shape[1] >= 2, "perf", "at least 2 columns (N_configs)", f"<array of shape {m.shape}>")
    check_param(bool(np.isfinite(m).all()), "perf", "all finite (no NaN/inf)", "<array with non-finite values>")
    check_param(callable(metric) or metric in _BUILTIN_METRICS, "metric",
                f"a callable or one of {_BUILTIN_METRICS}", metric)
    return m


def _moment_metric(s1: np.ndarray, s2: np.ndarray, n: np.ndarray, metric: str) -> np.ndarray:
    """Mean or Sharpe (mean/std, ddof=1) from sums ``s1``, sums of squares ``s2`` and counts ``n``.

    Zero dispersion gives Sharpe ±inf by the sign of the mean and 0 for a zero mean (e.g. a
    configuration that never trades).
    """
    mean = s1 / n
    if metric == "mean":
        return mean
    var = mean * mean  # in-place steps below: these arrays are n_combinations × N
    var *= n
    np.subtract(s2, var, out=var)
    np.maximum(var, 0.0, out=var)
    var /= np.maximum(n - 1.0, 1.0)
    flat = var <= 1e-12 * (s2 / n)  # zero up to rounding of the sums (|Sharpe| > 1e6)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(mean, np.sqrt(var, out=var), out=mean)
    if flat.any():
        edge = s1[flat]
        out[flat] = np.where(edge == 0.0, 0.0, np.copysign(np.inf, edge))
    return out


def _split_metrics(m: np.ndarray, masks: np.ndarray, metric) -> tuple[np.ndarray, np.ndarray]:
    """IS and OOS metric matrices (n_combinations × N) for the 0/1 block masks (n_combinations × S)."""
    blocks = np.array_split(np.arange(m.shape[0]), masks.shape[1])
    if callable(metric):
        def apply(rows):
            return np.asarray(metric(m[rows]), dtype=float).reshape(m.shape[1])
        is_m = np.empty((masks.shape[0], m.shape[1]))
        oos_m = np.empty_like(is_m)
        for k, mask in enumerate(masks):
            is_m[k] = apply(np.concatenate([blocks[b] for b in np.flatnonzero(mask)]))
            oos_m[k] = apply(np.concatenate([blocks[b] for b in np.flatnonzero(~mask)]))
        return is_m, oos_m
    s1 = np.stack([m[b].sum(axis=0) for b in blocks])           # S × N
    s2 = np.stack([(m[b] ** 2).sum(axis=0) for b in blocks])    # S × N
    cnt = np.array([b.size for b in blocks], dtype=float)       # S
    w = masks.astype(float)
    is_s1, is_s2, is_n = w @ s1, w @ s2, (w @ cnt)[:, None]
    oos_s1, oos_s2, oos_n = s1.sum(0) - is_s1, s2.sum(0) - is_s2, cnt.sum() - is_n
    return (_moment_metric(is_s1, is_s2, is_n, metric), _moment_metric(oos_s1, oos_s2, oos_n, metric))


def probability_of_backtest_overfitting(perf, n_blocks: int = 16,
                                        metric: Callable[[np.ndarray], np.ndarray] | str = "sharpe") -> PBOResult:
    """PBO of selecting the best of N configurations (Bailey, Borwein, López de Prado & Zhu 2017, CSCV).

    ``perf`` is T_obs × N_configs per-period performance (e.g. daily returns of each configuration on the same
    dates). Rows are cut into ``n_blocks`` contiguous blocks with ``numpy.array_split`` (sizes differ by at most
    one row when T_obs is not a multiple of S; no row is dropped). ``metric`` ranks configurations on a set of
    rows: ``"sharpe"`` (mean/std, ddof=1, per period), ``"mean"``, or a callable mapping a rows × N array to N
    values (higher is better, finite; evaluated per combination, so slower). Built-in metrics are computed from
    per-block sums, so each combination costs two small matrix products.
    """
    m = _validate(perf, n_blocks, metric)
    s, n_cfg = int(n_blocks), m.shape[1]
    idx = np.array(list(combinations(range(s), s // 2)), dtype=np.intp)
    masks = np.zeros((idx.shape[0], s), dtype=bool)
    np.put_along_axis(masks, idx, True, axis=1)
    is_m, oos_m = _split_metrics(m, masks, metric)
    rows = np.arange(masks.shape[0])
    selected = np.argmax(is_m, axis=1)
    ranks = st.rankdata(oos_m, method="average", axis=1)[rows, selected]
    omega = ranks / (n_cfg + 1.0)
    logits = np.log(omega / (1.0 - omega))
    sel_is, sel_oos = is_m[rows, selected], oos_m[rows, selected]
    ok = np.isfinite(sel_is) & np.isfinite(sel_oos)
    if ok.sum() >= 2 and np.ptp(sel_is[ok]) > 0:
        fit = st.linregress(sel_is[ok], sel_oos[ok])
        slope, intercept = float(fit.slope), float(fit.intercept)
    else:
        slope = intercept = float("nan")
    return PBOResult(pbo=float(np.mean(logits <= 0.0)), logits=logits, omega=omega, selected=selected,
                     is_metric=sel_is, oos_metric=sel_oos, degradation_slope=slope,
                     degradation_intercept=intercept, prob_oos_loss=float(np.mean(sel_oos < 0.0)),
                     n_combinations=int(masks.shape[0]), n_blocks=s, n_configs=n_cfg)
