"""The composite accumulation score (pure; parameters in a frozen ``ScoreParams``).

raw = w_short·tanh(0.5·short_z) + w_lit·tanh(0.5·lit_z) + w_price·tanh(0.3·price_z)   (weights normalized to sum 1)
intensity = lo + (hi − lo)·sigmoid(otc_participation_z)                                 (default 0.7 + 0.6·sigmoid)
score = clip(raw·intensity, −1, 1); display = (score + 1)·50, NaN where short_z is NaN. See docs/ENGINE.md.

``score_terms`` returns the cached terms and weights of one configuration (``ScoreTerms``) without combining them:
the simulation kernels combine each (date, symbol) cell where they read it, with the same arithmetic as
``combine``, so an evaluation never writes the (T x N) display matrix. ``ScoreTerms.display()`` materialises it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.errors import check_param
from optimizer.engine._kernels import PARALLEL_MIN_CELLS, combine_nb, combine_par_nb, use_parallel
from optimizer.engine.features import FeatureCache, as_symbol_major
from optimizer.params import check_fields

__all__ = ["ScoreParams", "ScoreTerms", "display_score", "score_terms", "combine"]


@dataclass(frozen=True)
class ScoreParams:
    variant: str = "B"
    w_short: float = 0.55
    w_lit: float = 0.30
    w_price: float = 0.15
    z_window: int = 20
    intensity_lo: float = 0.7
    intensity_hi: float = 1.3

    def __post_init__(self) -> None:
        check_fields(self, "score")  # variant, weights, z_window, intensity_lo/hi (optimizer.params)
        total = self.w_short + self.w_lit + self.w_price
        check_param(total > 0, "w_short + w_lit + w_price", "> 0", total)
        check_param(self.intensity_lo <= self.intensity_hi, "intensity_lo", f"in [0, intensity_hi={self.intensity_hi}]", self.intensity_lo)

    @property
    def weights(self) -> tuple[float, float, float]:
        """Normalized (w_short, w_lit, w_price) summing to 1."""
        t = self.w_short + self.w_lit + self.w_price
        return self.w_short / t, self.w_lit / t, self.w_price / t


@dataclass(frozen=True, eq=False)
class ScoreTerms:
    """A display score not yet combined: the cached (T x N) terms of one (variant, window) and the weights.

    ts = tanh(0.5·short_z) (NaN where short_z is NaN), tl = tanh(0.5·lit_z) (0 for NaN), tp = tanh(0.3·price_z)
    (0 for NaN), sg = sigmoid(otc_z) (0.5 for NaN); display = (clip((ws·ts + wl·tl + wp·tp)·(lo + (hi − lo)·sg),
    −1, 1) + 1)·50. The arrays are the feature cache's own (read-only, never copied).
    """

    ts: np.ndarray
    tl: np.ndarray
    tp: np.ndarray
    sg: np.ndarray
    ws: float
    wl: float
    wp: float
    lo: float
    hi: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.ts.shape  # type: ignore[return-value]

    def display(self) -> np.ndarray:
        """The (T x N) display score 0..100: a new array, stored symbol-major (Fortran order) like the terms."""
        kernel = combine_par_nb if use_parallel(self.ts.size, PARALLEL_MIN_CELLS) else combine_nb
        s = as_symbol_major
        return kernel(s(self.ts), s(self.tl), s(self.tp), s(self.sg), self.ws, self.wl, self.wp, self.lo, self.hi).T


def score_terms(cache: FeatureCache, params: ScoreParams) -> ScoreTerms:
    """The terms and normalized weights of ``params`` over the cache's panel (nothing is computed per call once the
    cache holds the (variant, window))."""
    ts, tl, tp, sg = cache.tanh_terms(params.variant, int(params.z_window))
    ws, wl, wp = params.weights
    return ScoreTerms(ts, tl, tp, sg, ws, wl, wp, float(params.intensity_lo), float(params.intensity_hi))


def combine(ts: np.ndarray, tl: np.ndarray, tp: np.ndarray, sg: np.ndarray, params: ScoreParams) -> np.ndarray:
    """Fused numba pass over the cached tanh/sigmoid terms (NaN short term propagates to NaN display)."""
    ws, wl, wp = params.weights
    return ScoreTerms(ts, tl, tp, sg, ws, wl, wp, float(params.intensity_lo), float(params.intensity_hi)).display()


def display_score(cache: FeatureCache, params: ScoreParams) -> np.ndarray:
    """Display score 0..100 per (date, symbol); NaN where the short-volume z is missing."""
    return score_terms(cache, params).display()
