"""Market regime: the SPY/VIX rule (RISK_ON / TRANSITIONAL / RISK_OFF) and the learned Gaussian-mixture regime.

All outputs are (T,) arrays on the panel calendar. The rule regime at t uses SPY closes and VIX up to t. The learned
regime at t comes from a model fitted only on rows strictly before t (expanding window, refit every ``refit_every``
sessions), so truncating the data after t never changes a label at or before t. Definitions: docs/CONTEXT.md.

The learned regime's fits (and the labels of a whole market) are pure functions of their inputs: a process keeps its
recent ones in memory, and a CLI command keeps them on disk for the next process, in ``<out>/.cache/regime/``
(``optimizer.engine._diskcache``; env ``ACCUMOPT_CACHE=off`` turns it off; a library call outside
``optimizer.paths.caching_under`` neither reads nor writes it): one ``.npz`` of plain arrays per content digest (of
the training rows or the whole feature frame, the settings, this module's source and the numpy / scipy /
scikit-learn versions), never a pickle; a missing, partial, corrupt, foreign or wrong-shape file is recomputed and
overwritten; at most ``DISK_CACHE_MAX_FILES`` files, the least recently used removed. A truncated market has other
content, so its labels are computed (from its own fits, which a longer market's run may have stored: the fit of a
refit point reads only rows before it) and never served from a longer history.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import warnings
from importlib.metadata import version as _dist_version
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
import pandas as pd
from threadpoolctl import threadpool_limits

from optimizer.errors import check_param
from optimizer.engine import _diskcache

__all__ = [
    "REGIME_RISK_ON", "REGIME_TRANSITIONAL", "REGIME_RISK_OFF", "REGIME_LABELS",
    "LEARNED_UNKNOWN", "LEARNED_BULL_LOW_VOL", "LEARNED_BULL_HIGH_VOL", "LEARNED_BEAR_LOW_VOL",
    "LEARNED_BEAR_HIGH_VOL", "LEARNED_REGIME_LABELS", "VIX_PROXY_SCALE", "REGIME_FEATURES", "VOLUME_RATIO_WINDOW",
    "POSITION_MULTIPLIERS", "EXTREME_VIX", "EXTREME_VIX_MULTIPLIER",
    "realized_vol", "vix_proxy", "effective_vix", "market_regime", "regime_features", "learned_regime",
    "learned_regime_detail", "position_multiplier", "DISK_CACHE_KIND", "DISK_CACHE_MAX_FILES",
]

REGIME_RISK_ON, REGIME_TRANSITIONAL, REGIME_RISK_OFF = np.int8(1), np.int8(0), np.int8(-1)
REGIME_LABELS: dict[int, str] = {1: "RISK_ON", 0: "TRANSITIONAL", -1: "RISK_OFF"}

LEARNED_UNKNOWN = np.int8(-1)
LEARNED_BULL_LOW_VOL, LEARNED_BULL_HIGH_VOL = np.int8(0), np.int8(1)
LEARNED_BEAR_LOW_VOL, LEARNED_BEAR_HIGH_VOL = np.int8(2), np.int8(3)
LEARNED_REGIME_LABELS: dict[int, str] = {
    -1: "UNKNOWN", 0: "BULL_LOW_VOL", 1: "BULL_HIGH_VOL", 2: "BEAR_LOW_VOL", 3: "BEAR_HIGH_VOL",
}

# Annualized 20-session realized vol of SPY (in %) times this scale stands in for VIX when VIX is missing.
# Calibrated on real SPY and ^VIX closes 2022-2025 (median VIX / RV20 = 1.23-1.27): calm RV20 ~ 10.8 -> 13.5.
VIX_PROXY_SCALE = 1.25
VIX_FFILL_LIMIT = 5

VOLUME_RATIO_WINDOW = 20  # doc 004: current volume / 20-day average volume

REGIME_FEATURES: tuple[str, ...] = ("rv20", "mom20", "trend", "volume_ratio", "range20", "iv", "iv_rv_spread")

# Doc 004's position sizing multiplier per learned regime; UNKNOWN (no model yet) scales nothing.
POSITION_MULTIPLIERS: dict[int, float] = {-1: 1.0, 0: 1.0, 1: 0.5, 2: 0.5, 3: 0.25}
EXTREME_VIX, EXTREME_VIX_MULTIPLIER = 40.0, 0.1  # doc 004: "override with 0.1 multiplier if VIX > 40"
_CORE = ("rv20", "mom20", "trend")


def realized_vol(close: ArrayLike, window: int = 20) -> np.ndarray:
    """Annualized realized vol in %: std (ddof=1) of the last ``window`` log returns x sqrt(252) x 100."""
    c = pd.Series(np.asarray(close, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        lr = np.log(c).diff()
    return (lr.rolling(window, min_periods=window).std() * np.sqrt(252.0) * 100.0).to_numpy()


def vix_proxy(spy_close: ArrayLike, window: int = 20, scale: float = VIX_PROXY_SCALE) -> np.ndarray:
    """VIX stand-in: ``realized_vol(spy_close, window) * scale``."""
    return realized_vol(spy_close, window) * scale


def effective_vix(vix: ArrayLike, spy_close: ArrayLike) -> np.ndarray:
    """VIX where it is finite at t, else the realized-vol proxy at t (decided per date, so point-in-time)."""
    v = np.asarray(vix, dtype=np.float64)
    return np.where(np.isfinite(v), v, vix_proxy(spy_close))


def market_regime(
    spy_close: ArrayLike, vix: ArrayLike, sma_window: int = 50, on_vix: float = 20.0, off_vix: float = 25.0
) -> np.ndarray:
    """int8 (T,): RISK_ON (1) when SPY close > SMA50 and VIX < 20; RISK_OFF (-1) when close < SMA50 and VIX > 25;
    TRANSITIONAL (0) otherwise, including rows lacking SMA50 or any VIX value. VIX falls back to the proxy per date."""
    check_param(on_vix <= off_vix, "on_vix", f"<= off_vix={off_vix}", on_vix)
    c = np.asarray(spy_close, dtype=np.float64)
    s = pd.Series(c).rolling(sma_window, min_periods=sma_window).mean().to_numpy()
    v = effective_vix(vix, c)
    out = np.zeros(c.shape, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        out[(c > s) & (v < on_vix)] = REGIME_RISK_ON
        out[(c < s) & (v > off_vix)] = REGIME_RISK_OFF
    return out


def regime_features(spy_close: ArrayLike, spy_high: ArrayLike | None = None, spy_low: ArrayLike | None = None,
                    spy_volume: ArrayLike | None = None, vix: ArrayLike | None = None) -> pd.DataFrame:
    """Daily market features (T rows, columns ``REGIME_FEATURES``), each at t from rows <= t:
    rv20 realized vol (%), mom20 = close/close[t-20] - 1, trend = SMA20/SMA50 - 1, volume_ratio = volume / 20-session
    mean volume (today included), range20 = 20-session mean of (high - low)/close, iv = VIX forward-filled up to 5
    sessions (never back-filled: a later VIX must not reach an earlier row), iv_rv_spread = iv - rv20 (both in
    annualized vol points). Missing inputs give all-NaN columns."""
    c = pd.Series(np.asarray(spy_close, dtype=np.float64))
    T = len(c)

    def col(x) -> pd.Series:
        return pd.Series(np.full(T, np.nan) if x is None else np.asarray(x, dtype=np.float64))

    h, lo, vol, iv = col(spy_high), col(spy_low), col(spy_volume), col(vix)
    with np.errstate(invalid="ignore", divide="ignore"):
        rv = realized_vol(c.to_numpy())
        ivf = iv.ffill(limit=VIX_FFILL_LIMIT).to_numpy()
        f = pd.DataFrame({
            "rv20": rv,
            "mom20": (c / c.shift(20) - 1.0).to_numpy(),
            "trend": (c.rolling(20, min_periods=20).mean() / c.rolling(50, min_periods=50).mean() - 1.0).to_numpy(),
            "volume_ratio": (vol / vol.rolling(VOLUME_RATIO_WINDOW, min_periods=VOLUME_RATIO_WINDOW).mean()).to_numpy(),
            "range20": ((h - lo) / c).rolling(20, min_periods=20).mean().to_numpy(),
            "iv": ivf,
            "iv_rv_spread": ivf - rv,
        })
    return f.replace([np.inf, -np.inf], np.nan)


def _select_columns(train: pd.DataFrame) -> list[str]:
    """Core columns plus every optional column finite on all rows where the core is finite."""
    core_ok = train[list(_CORE)].notna().all(axis=1)
    cols = list(_CORE)
    for c in REGIME_FEATURES:
        if c not in _CORE and core_ok.any() and train.loc[core_ok, c].notna().all():
            cols.append(c)
    return cols


def _fit_and_label(
    train: np.ndarray, cols: list[str], n_components: int, random_state: int
) -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    """Fit on standardized training rows; return (model, mean, std, component -> label). A fit is a pure function
    of its inputs: the process remembers its last ``_FIT_MEMO_SIZE`` fits by content, so a market truncated at a
    later date (a sheet per session, a walk-forward window) reuses the fits of its earlier refit points."""
    h = hashlib.blake2b(digest_size=20)
    h.update(repr((list(cols), train.shape, str(train.dtype), int(n_components), int(random_state))).encode())
    h.update(np.ascontiguousarray(train).tobytes())
    key = h.digest()
    hit = _FIT_MEMO.get(key)
    if hit is None:
        hit = _fit_from_disk(key, len(cols), n_components, random_state)
    if hit is None:
        hit = _fit(train, cols, n_components, random_state)
        _diskcache.save(DISK_CACHE_KIND, "fit", key, _versions, _fit_arrays(hit),
                        DISK_CACHE_MAX_FILES)
    if key not in _FIT_MEMO:
        while len(_FIT_MEMO) >= _FIT_MEMO_SIZE:
            _FIT_MEMO.pop(next(iter(_FIT_MEMO)))
        _FIT_MEMO[key] = hit
    return hit


# content digest of (train rows, columns, settings) -> _fit's result, for the last few hundred fits of the process
_FIT_MEMO: dict[bytes, tuple[object, np.ndarray, np.ndarray, np.ndarray]] = {}
_FIT_MEMO_SIZE = 256


def _model(n_components: int, random_state: int) -> object:
    """The (unfitted) mixture every fit uses; a fit read back from the disk cache is this model with its arrays."""
    from sklearn.mixture import GaussianMixture  # ~0.3 s of CPU: loaded by the first fit or fit read back, never
    # by a process that finds the whole market's labels in the cache

    return GaussianMixture(n_components=n_components, covariance_type="full", random_state=random_state,
                           reg_covar=1e-4, max_iter=200)


@functools.cache
def _physical_cores_quietly() -> None:
    """Ask joblib (loky) for the physical cores once, quietly, before the first fit: the mixture's k-means init
    asks it (scikit-learn's ``_openmp_effective_n_threads``), and loky runs ``lscpu`` to count them, which under a
    low open-file limit (``ulimit -n 16``) cannot start: loky then prints a warning and a traceback to stderr, and
    the command still exits 0. Asked here with both silenced, its fallback (the logical cores) is cached for the
    process, and the fit runs on one thread in any case (``threadpool_limits(limits=1)``). Other text written to
    stderr meanwhile (another thread's) is passed on."""
    import contextlib
    import io
    import sys

    import joblib

    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(buf):
        warnings.simplefilter("ignore")
        joblib.cpu_count(only_physical_cores=True)
    text = buf.getvalue()
    if text and "_count_physical_cores" not in text:
        sys.stderr.write(text)


def _fit(
    train: np.ndarray, cols: list[str], n_components: int, random_state: int
) -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    gm = _model(n_components, random_state)
    _physical_cores_quietly()
    # Tiny (<= 6 x 6) matrices: multi-threaded BLAS only adds overhead (40x slower fits on 2 cores).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        gm.fit((train - mu) / sd)
    means = gm.means_ * sd + mu
    mom = means[:, cols.index("mom20")]
    vol = means[:, cols.index("rv20")]
    high = vol > np.median(train[:, cols.index("rv20")])
    labels = np.where(mom > 0, np.where(high, LEARNED_BULL_HIGH_VOL, LEARNED_BULL_LOW_VOL),
                      np.where(high, LEARNED_BEAR_HIGH_VOL, LEARNED_BEAR_LOW_VOL)).astype(np.int8)
    return gm, mu, sd, labels


# ------------------------------------------------------------------------------------------------ on-disk cache

DISK_CACHE_KIND = "regime"  # <out>/.cache/regime/
DISK_CACHE_MAX_FILES = 512  # LRU by count: a fit is ~2 KB, a market's labels ~9 bytes a session (a few MB in all)
# a fitted GaussianMixture is these arrays and numbers (what predict_proba reads, and what a fit sets)
_GM_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")
_GM_NUMBERS = {"converged_": np.bool_, "n_iter_": np.int64, "lower_bound_": np.float64, "n_features_in_": np.int64}


@functools.cache
def _versions() -> bytes:
    """What a stored result also depends on: this module's source (the fit's settings, the labelling rule, the
    schedule) and the libraries and machine that computed it (an upgrade must not serve the previous version's
    fits)."""
    libs = [(lib, _dist_version(lib)) for lib in ("scikit-learn", "scipy", "threadpoolctl")]
    src = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return repr((src, np.__version__, libs, platform.python_version(), platform.machine())).encode()


def _fit_arrays(fit: tuple[object, np.ndarray, np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    gm, mu, sd, labels = fit
    out = {n: np.asarray(getattr(gm, n)) for n in _GM_ARRAYS}
    out.update({n: np.asarray(getattr(gm, n), dtype=t) for n, t in _GM_NUMBERS.items()})
    return {**out, "mu": mu, "sd": sd, "labels": labels}


def _fit_from_disk(key: bytes, n_features: int, n_components: int,
                   random_state: int) -> tuple[object, np.ndarray, np.ndarray, np.ndarray] | None:
    """The fit stored for ``key``: the model rebuilt from its arrays (no refit), or None."""
    k, f = n_components, n_features
    expect = {"weights_": ((k,), np.float64), "means_": ((k, f), np.float64),
              **{n: ((k, f, f), np.float64) for n in ("covariances_", "precisions_cholesky_", "precisions_")},
              **{n: ((), t) for n, t in _GM_NUMBERS.items()},
              "mu": ((f,), np.float64), "sd": ((f,), np.float64), "labels": ((k,), np.int8)}
    a = _diskcache.load(DISK_CACHE_KIND, "fit", key, _versions, expect)
    if a is None or int(a["n_features_in_"]) != f:
        return None
    gm = _model(n_components, random_state)
    for n in _GM_ARRAYS:
        setattr(gm, n, a[n])
    gm.converged_, gm.n_iter_ = bool(a["converged_"]), int(a["n_iter_"])
    gm.lower_bound_, gm.n_features_in_ = float(a["lower_bound_"]), int(a["n_features_in_"])
    return gm, a["mu"], a["sd"], a["labels"]


def _labels_from_disk(key: bytes, T: int) -> tuple[np.ndarray, np.ndarray] | None:
    a = _diskcache.load(DISK_CACHE_KIND, "labels", key, _versions,
                        {"labels": ((T,), np.int8), "prob": ((T,), np.float64)})
    return None if a is None else (a["labels"], a["prob"])


def learned_regime_detail(
    features: pd.DataFrame,
    refit_every: int = 21,
    min_train: int = 120,
    n_components: int = 4,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int8 (T,), probability (T,)): ``learned_regime``'s labels and, per labelled row, the model's
    posterior probability of that label (the sum of ``predict_proba`` over the components mapped to it); NaN on
    UNKNOWN rows. Same point-in-time schedule as ``learned_regime``."""
    check_param(isinstance(refit_every, (int, np.integer)) and refit_every >= 1, "refit_every", ">= 1", refit_every)
    check_param(isinstance(min_train, (int, np.integer)) and min_train >= 2 * n_components, "min_train",
                f">= 2 * n_components = {2 * n_components}", min_train)
    # The fits are deterministic in (features, settings): a process that asks again for the same market (a sheet per
    # session of one store, the context of several sheets, a study's regime sizing) gets the labels it already has.
    key = (_digest(features), int(refit_every), int(min_train), int(n_components), int(random_state))
    hit = _DETAIL_MEMO.get(key)
    if hit is None:
        dkey = repr(key[1:]).encode() + key[0]
        hit = _labels_from_disk(dkey, len(features))
        if hit is None:
            hit = _learned_regime_detail(features, int(refit_every), int(min_train), int(n_components),
                                         int(random_state))
            _diskcache.save(DISK_CACHE_KIND, "labels", dkey, _versions,
                            {"labels": hit[0], "prob": hit[1]}, DISK_CACHE_MAX_FILES)
        while len(_DETAIL_MEMO) >= _DETAIL_MEMO_SIZE:
            _DETAIL_MEMO.pop(next(iter(_DETAIL_MEMO)))
        _DETAIL_MEMO[key] = hit
    return hit[0].copy(), hit[1].copy()


# (features digest, settings) -> (labels, probability) of the last few markets this process labelled
_DETAIL_MEMO: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_DETAIL_MEMO_SIZE = 8


def _digest(features: pd.DataFrame) -> bytes:
    """Content hash of a regime feature frame: column names, dtypes and values (the fits read nothing else)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(repr([(str(c), str(t)) for c, t in features.dtypes.items()]).encode())
    h.update(np.ascontiguousarray(features.to_numpy(dtype=np.float64)).tobytes())
    return h.digest()


def _learned_regime_detail(features: pd.DataFrame, refit_every: int, min_train: int, n_components: int,
                           random_state: int) -> tuple[np.ndarray, np.ndarray]:
    T = len(features)
    out = np.full(T, LEARNED_UNKNOWN, dtype=np.int8)
    prob = np.full(T, np.nan)
    usable = features[list(_CORE)].notna().all(axis=1).to_numpy()
    before = np.concatenate([[0], np.cumsum(usable)])  # before[r] = usable rows < r
    starts = np.nonzero(before[:T] >= min_train)[0]
    if not len(starts):
        return out, prob
    for r in range(int(starts[0]), T, refit_every):
        hist = features.iloc[:r]
        cols = _select_columns(hist)
        train = hist[cols].dropna().to_numpy()
        if len(train) < min_train:
            continue
        fit = _fit_and_label(train, cols, n_components, random_state)
        block = features.iloc[r: r + refit_every][cols].to_numpy()
        ok = np.isfinite(block).all(axis=1)
        if ok.any():
            lab, p = _block_labels(fit, (block[ok] - fit[1]) / fit[2])
            idx = np.arange(r, min(r + refit_every, T))[ok]
            out[idx] = lab
            prob[idx] = p
    return out, prob


def _block_labels(fit: tuple[object, np.ndarray, np.ndarray, np.ndarray],
                  rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, its probability) of each standardized row of a block under ``fit`` (model, mean, std, component ->
    label). Row by row: a batched predict_proba rounds differently with the batch size, and the block's size depends
    on where the data ends (the truncation identity must hold to the last bit). The process remembers the last
    blocks it labelled with each fit object it holds (a market truncated at a later date, a sheet per session,
    labels its earlier blocks with the same fits and rows): the answer of the same model to the same rows."""
    key = rows.tobytes() + repr(rows.shape).encode()
    got = _BLOCK_MEMO.get(key)
    if got is not None and got[0] is fit:
        return got[1].copy(), got[2].copy()
    gm, _, _, comp_label = fit
    with threadpool_limits(limits=1):
        post = np.vstack([gm.predict_proba(row[None, :]) for row in rows])
    lab = comp_label[np.argmax(post, axis=1)]
    p = np.where(comp_label[None, :] == lab[:, None], post, 0.0).sum(axis=1)
    _BLOCK_MEMO.pop(key, None)
    while len(_BLOCK_MEMO) >= _BLOCK_MEMO_SIZE:
        _BLOCK_MEMO.pop(next(iter(_BLOCK_MEMO)))
    _BLOCK_MEMO[key] = (fit, lab.copy(), p.copy())
    return lab, p


# a block's standardized rows -> (the fit object that labelled them, labels, probabilities): used only with that very
# object (a fit computed again or read back from the disk cache labels its blocks afresh)
_BLOCK_MEMO: dict[bytes, tuple[tuple, np.ndarray, np.ndarray]] = {}
_BLOCK_MEMO_SIZE = 4096


def learned_regime(
    features: pd.DataFrame,
    refit_every: int = 21,
    min_train: int = 120,
    n_components: int = 4,
    random_state: int = 0,
) -> np.ndarray:
    """int8 (T,) learned regime (``LEARNED_REGIME_LABELS``), point-in-time.

    Refit points: r0 = the first row with >= ``min_train`` usable rows strictly before it (usable = all core
    features finite), then r0 + k * refit_every. Rows [r_k, r_k+1) are labelled by a GaussianMixture fitted on the
    usable rows < r_k, standardized with those rows' mean/std. Component -> label by its mean: BULL when mean mom20
    > 0 else BEAR; HIGH_VOL when mean rv20 > the training median rv20. UNKNOWN before r0 and on rows lacking a
    feature the model uses.
    """
    return learned_regime_detail(features, refit_every, min_train, n_components, random_state)[0]


def position_multiplier(learned: ArrayLike, vix_level: ArrayLike | None = None) -> np.ndarray:
    """float (T,): doc 004's position-size multiplier of each row's learned regime (``POSITION_MULTIPLIERS``:
    BULL_LOW_VOL 1.0, BULL_HIGH_VOL 0.5, BEAR_LOW_VOL 0.5, BEAR_HIGH_VOL 0.25, UNKNOWN 1.0), overridden by 0.1 when
    ``vix_level`` > 40 (the VIX the rule regime used: VIX, or its proxy on dates without VIX)."""
    lab = np.asarray(learned)
    lut = np.vectorize(lambda v: POSITION_MULTIPLIERS.get(int(v), 1.0), otypes=[np.float64])
    out = lut(lab) if lab.size else np.zeros(lab.shape)
    if vix_level is not None:
        v = np.asarray(vix_level, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            out = np.where(v > EXTREME_VIX, EXTREME_VIX_MULTIPLIER, out)
    return out
