"""Signals: accumulation / distribution days from the display score (pure)."""

from __future__ import annotations

import numpy as np

__all__ = ["accumulation", "distribution", "count_signals"]


def accumulation(display: np.ndarray, buy: float) -> np.ndarray:
    """display >= buy (NaN -> False)."""
    with np.errstate(invalid="ignore"):
        return display >= buy


def distribution(display: np.ndarray, sell: float) -> np.ndarray:
    """display <= sell (NaN -> False)."""
    with np.errstate(invalid="ignore"):
        return display <= sell


def count_signals(display: np.ndarray, buy: float, span) -> int:
    """Accumulation days in the signal window [span.sig_start, span.sig_end)."""
    with np.errstate(invalid="ignore"):
        return int(np.count_nonzero(display[span.sig_start:span.sig_end] >= buy))
