"""Feature cache: every z-score the score needs, computed once per process per (variant, window).

A trial only combines cached matrices, thresholds them and simulates; it never recomputes a rolling window.
All features are point-in-time (trailing windows including the current session).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optimizer.errors import check_param
from optimizer.engine.panel import Panel
from optimizer.data.rolling import rolling_zscore
from optimizer.params import PARAMS, VARIANTS, Z_WINDOWS

__all__ = ["FeatureCache", "VARIANTS", "Z_WINDOWS", "as_symbol_major"]


def as_symbol_major(a: np.ndarray) -> np.ndarray:
    """The (N x T) read-only, C-contiguous float64 transpose of a (T x N) matrix: a view when ``a`` is already
    stored that way (Fortran order, e.g. every cached term and ``ScoreTerms.display()``), else a copy."""
    out = np.asarray(a, dtype=np.float64).T
    if not out.flags.c_contiguous:
        out = np.ascontiguousarray(out)
    if out.flags.writeable:
        out = out.view()
        out.setflags(write=False)
    return out


def _symbol_major(a: np.ndarray) -> np.ndarray:
    """(T x N) values stored as a contiguous read-only (N x T) array, returned as its (T x N) transpose view."""
    return as_symbol_major(a).T


class FeatureCache:
    """Lazily computed, memoized feature matrices over one ``Panel``.

    The cache is keyed by (feature, window); matrices are read-only so no trial can corrupt another's input.
    """

    def __init__(self, panel: Panel, min_periods: int | None = None) -> None:
        self.panel = panel
        self.min_periods = min_periods
        self._cache: dict[tuple, np.ndarray] = {}
        self._base: dict[str, np.ndarray] = {}

    # -- raw inputs derived once -------------------------------------------------------------------
    def _raw(self, name: str) -> np.ndarray:
        if name in self._base:
            return self._base[name]
        p = self.panel
        nan = np.full(p.shape, np.nan)
        B = p.fields.get("short_buy_volume", nan)
        S = p.fields.get("short_sell_volume", nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            if name == "imbalance_log":
                tot = B + S
                imb = (B - S) / tot
                v = imb * np.log1p(tot)
                v[~(tot > 0)] = np.nan
            elif name == "vw_flow":
                lb = np.nan_to_num(p.fields.get("lit_buy_volume", nan), nan=0.0)
                ls = np.nan_to_num(p.fields.get("lit_sell_volume", nan), nan=0.0)
                v = B + lb - S - ls
            else:
                v = p.fields.get(name, nan)
        v = np.asarray(v, dtype=np.float64)
        self._base[name] = v
        return v

    def z(self, name: str, window: int) -> np.ndarray:
        """Rolling z of a raw panel field (or derived input ``imbalance_log`` / ``vw_flow``)."""
        check_param(isinstance(window, (int, np.integer)) and window >= 2, "z_window", ">= 2", window)
        key = ("z", name, int(window))
        out = self._cache.get(key)
        if out is None:
            mp = None if self.min_periods is None else min(self.min_periods, int(window))
            out = rolling_zscore(self._raw(name), int(window), mp)
            out.setflags(write=False)
            self._cache[key] = out
        return out

    # -- the score's components ----------------------------------------------------------------------
    def short_z(self, variant: str, window: int) -> np.ndarray:
        PARAMS["variant"].check(variant)
        key = ("short_z", variant, int(window))
        out = self._cache.get(key)
        if out is not None:
            return out
        if variant == "A":
            out = self.z("short_buy_volume", window)
        elif variant == "B":
            out = self.z("short_buy_sell_ratio", window)
        elif variant == "C":
            out = 0.5 * self.z("short_buy_volume", window) + 0.5 * self.z("short_buy_sell_ratio", window)
        elif variant == "D":
            out = self.z("imbalance_log", window)
        elif variant == "vw_flow":
            out = self.z("vw_flow", window)
        else:  # blended
            b = self.z("short_buy_sell_ratio", window)
            vw = self.z("vw_flow", window)
            out = np.where(np.isfinite(vw), 0.6 * b + 0.4 * vw, b)
        if out.flags.writeable:
            out.setflags(write=False)
        self._cache[key] = out
        return out

    def lit_z(self, window: int) -> np.ndarray:
        return self.z("lit_flow_imbalance", window)

    def price_z(self, window: int) -> np.ndarray:
        return self.z("return", window)

    def otc_z(self, window: int) -> np.ndarray:
        return self.z("otc_participation_rate", window)

    def tanh_terms(self, variant: str, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cached (tanh(0.5·short_z), tanh(0.5·lit_z)→0 for NaN, tanh(0.3·price_z)→0, sigmoid(otc_z)→0.5).

        Only the short term depends on the variant: the lit, price and OTC terms are shared per window. After a
        term is built, the z-score matrices it came from are dropped from the cache (``z``/``short_z`` recompute
        them on demand), so a warm cache holds 3 + (number of variants) matrices per window, not ~18.

        Each term is stored symbol-major (one contiguous row of sessions per symbol, the order in which the
        simulation reads them) and returned as its (T x N) transpose view: same values and shape as always, in
        Fortran order (``.T`` of a returned matrix is the contiguous (N x T) storage, no copy).
        """
        key = ("terms", variant, int(window))
        out = self._cache.get(key)
        if out is None:
            shared_key = ("shared_terms", int(window))
            shared = self._cache.get(shared_key)
            if shared is None:
                tl = np.nan_to_num(np.tanh(0.5 * self.lit_z(window)), nan=0.0)
                tp = np.nan_to_num(np.tanh(0.3 * self.price_z(window)), nan=0.0)
                oz = self.otc_z(window)
                sg = np.where(np.isfinite(oz), 1.0 / (1.0 + np.exp(-np.nan_to_num(oz))), 0.5)
                shared = (_symbol_major(tl), _symbol_major(tp), _symbol_major(sg))
                self._cache[shared_key] = shared  # type: ignore[assignment]
            ts = _symbol_major(np.tanh(0.5 * self.short_z(variant, window)))
            out = (ts, *shared)
            self._cache[key] = out  # type: ignore[assignment]
            self._drop_z(int(window))
        return out  # type: ignore[return-value]

    def _drop_z(self, window: int) -> None:
        for k in [k for k in self._cache if k[0] in ("z", "short_z") and k[-1] == window]:
            del self._cache[k]

    def warm(self, variants: Sequence[str] = VARIANTS, windows: Sequence[int] = Z_WINDOWS) -> None:
        """Precompute every (variant, window) combination, e.g. before forking workers."""
        for v in variants:
            for w in windows:
                self.tanh_terms(v, w)

    @property
    def nbytes(self) -> int:
        seen, n = set(), 0
        for v in self._cache.values():
            for a in v if isinstance(v, tuple) else (v,):
                if id(a) not in seen:
                    seen.add(id(a))
                    n += a.nbytes
        return n
