"""Probability of Backtest Overfitting by combinatorially symmetric cross-validation (CSCV).

Reference: Bailey, D. H., Borwein, J., López de Prado, M. & Zhu, Q. J. (2017), "The Probability of
Backtest Overfitting", Journal of Computational Finance 20(4).

The T×N performance matrix (rows = periods, columns = configurations) is split into S contiguous row
blocks. For every choice of S/2 blocks as in-sample (IS) -- C(S, S/2) combinations, 12,870 for S=16 --
the configuration with the best IS metric is selected and its relative rank ω among the N out-of-sample
(OOS) metrics is recorded; the logit is λ = ln(ω/(1−ω)) and PBO is the share of combinations with λ <= 0.

:func:`cpcv_pbo` computes the same statistic over the splits of a combinatorial purged CV
(``study.splits.CombinatorialPurgedCV``): each split selects on its (purged, embargoed) train sessions and ranks on
its test groups; with k = N/2 test groups and no purge or embargo it is CSCV with S = N blocks. It also stitches the
CPCV paths: for every path, the out-of-sample returns of the configuration each split selected, on the groups the
split supplies to that path -- the distribution of what "optimize, then trade" earns out of sample (López de Prado
2018, ch. 12).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike
# scipy.stats costs ~0.7 s of CPU to import: the functions that use it import it, so a command that only
# loads this module (``accumopt report``, ``--help``) does not pay it

from optimizer.errors import check_param
from optimizer.study.splits import CombinatorialPurgedCV

__all__ = ["PBOResult", "probability_of_backtest_overfitting", "CPCVResult", "cpcv_pbo"]

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


def _mask_metrics(m: np.ndarray, is_rows: np.ndarray, oos_rows: np.ndarray, metric) -> tuple[np.ndarray, np.ndarray]:
    """IS and OOS metric matrices (n_combinations × N) for row masks (n_combinations × T_obs, boolean)."""
    if callable(metric):
        def apply(rows):
            return np.asarray(metric(m[rows]), dtype=float).reshape(m.shape[1])
        return (np.stack([apply(r) for r in is_rows]), np.stack([apply(r) for r in oos_rows]))
    out = []
    for rows in (is_rows, oos_rows):
        w = rows.astype(float)
        out.append(_moment_metric(w @ m, w @ (m * m), w.sum(axis=1)[:, None], metric))
    return out[0], out[1]


def _selection(is_m: np.ndarray, oos_m: np.ndarray, n_blocks: int) -> PBOResult:
    """Select the IS-best configuration of every combination and rank it out of sample (the PBO statistics)."""
    from scipy import stats as st  # lazy: see the note at the imports
    n_comb, n_cfg = is_m.shape
    rows = np.arange(n_comb)
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
                     n_combinations=int(n_comb), n_blocks=int(n_blocks), n_configs=int(n_cfg))


def probability_of_backtest_overfitting(perf: ArrayLike, n_blocks: int = 16,
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
    return _selection(is_m, oos_m, s)


@dataclass(frozen=True)
class CPCVResult:
    """Outcome of :func:`cpcv_pbo`.

    * ``pbo``: the :class:`PBOResult` over the CPCV splits (``n_combinations`` = splits, ``n_blocks`` = groups).
    * ``path_returns``: (T_test × n_paths) per-period out-of-sample returns of the select-then-trade procedure on
      each path, rows = the grouped sessions in order (warm-up rows excluded); ``path_configs``: (n_paths ×
      n_groups) the configuration each path trades in each group.
    * ``path_metric``: the metric of each path (the one that ranked configurations); ``path_metric_median``, and
      ``prob_path_loss``: the share of paths whose metric is < 0.
    """

    pbo: PBOResult
    path_returns: np.ndarray
    path_configs: np.ndarray
    path_metric: np.ndarray
    path_metric_median: float
    prob_path_loss: float
    n_paths: int
    n_splits: int


def cpcv_pbo(perf: ArrayLike, cv: CombinatorialPurgedCV,
             metric: Callable[[np.ndarray], np.ndarray] | str = "sharpe") -> CPCVResult:
    """PBO and out-of-sample paths of selecting the best of N configurations under combinatorial purged CV.

    ``perf`` is T_obs × N_configs per-period performance over the sessions ``cv`` splits (row i = session i).
    Each split selects the configuration with the best ``metric`` on its train rows (purged and embargoed) and
    ranks it among all configurations on its test rows; PBO is the share of splits where it ranks at or below
    the median (λ <= 0). ``metric`` is ``"sharpe"``, ``"mean"`` or a callable as in
    :func:`probability_of_backtest_overfitting`.
    """
    m = np.asarray(perf, dtype=float)
    check_param(isinstance(cv, CombinatorialPurgedCV), "cv", "a CombinatorialPurgedCV", cv)
    check_param(m.ndim == 2 and m.shape[1] >= 2, "perf", "a 2-D array (T_obs × N_configs) with >= 2 columns",
                f"<array of shape {m.shape}>")
    check_param(bool(np.isfinite(m).all()), "perf", "all finite (no NaN/inf)", "<array with non-finite values>")
    check_param(callable(metric) or metric in _BUILTIN_METRICS, "metric",
                f"a callable or one of {_BUILTIN_METRICS}", metric)
    train, test = cv.train_test_masks(m.shape[0])  # raises when the groups are too short for purge + embargo
    check_param(bool(train.any(axis=1).all()), "cv", "splits that each keep >= 1 train session after purge and "
                "embargo", cv)
    is_m, oos_m = _mask_metrics(m, train, test, metric)
    res = _selection(is_m, oos_m, cv.n_groups)
    bounds = cv.group_bounds(m.shape[0])
    paths = cv.paths()
    configs = res.selected[paths]                                       # n_paths × n_groups
    rows = [np.arange(a, b) for a, b in bounds]
    pr = np.column_stack([np.concatenate([m[rows[g], configs[p, g]] for g in range(cv.n_groups)])
                          for p in range(paths.shape[0])])
    if callable(metric):
        pm = np.asarray(metric(pr), dtype=float).reshape(pr.shape[1])
    else:
        n = np.full((1, pr.shape[1]), float(pr.shape[0]))
        pm = _moment_metric(pr.sum(axis=0, keepdims=True), (pr * pr).sum(axis=0, keepdims=True), n, metric)[0]
    return CPCVResult(pbo=res, path_returns=pr, path_configs=configs, path_metric=pm,
                      path_metric_median=float(np.median(pm)), prob_path_loss=float(np.mean(pm < 0.0)),
                      n_paths=int(paths.shape[0]), n_splits=cv.n_splits)
