"""The composite accumulation score (pure; parameters in a frozen ``ScoreParams``).

raw = w_short·tanh(0.5·short_z) + w_lit·tanh(0.5·lit_z) + w_price·tanh(0.3·price_z)   (weights normalized to sum 1)
intensity = lo + (hi − lo)·sigmoid(otc_participation_z)                                 (default 0.7 + 0.6·sigmoid)
score = clip(raw·intensity, −1, 1); display = (score + 1)·50, NaN where short_z is NaN. See docs/ENGINE.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.errors import check_param
from optimizer.engine._kernels import PARALLEL_MIN_CELLS, combine_nb, combine_par_nb
from optimizer.engine.features import FeatureCache
from optimizer.params import check_fields

__all__ = ["ScoreParams", "display_score", "combine"]


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


def combine(ts: np.ndarray, tl: np.ndarray, tp: np.ndarray, sg: np.ndarray, params: ScoreParams) -> np.ndarray:
    """Fused numba pass over the cached tanh/sigmoid terms (NaN short term propagates to NaN display)."""
    ws, wl, wp = params.weights
    kernel = combine_par_nb if ts.size >= PARALLEL_MIN_CELLS else combine_nb
    return kernel(ts, tl, tp, sg, ws, wl, wp, float(params.intensity_lo), float(params.intensity_hi))


def display_score(cache: FeatureCache, params: ScoreParams) -> np.ndarray:
    """Display score 0..100 per (date, symbol); NaN where the short-volume z is missing."""
    ts, tl, tp, sg = cache.tanh_terms(params.variant, int(params.z_window))
    return combine(ts, tl, tp, sg, params)

