"""Signals: accumulation / distribution days from the display score (pure)."""

from __future__ import annotations

import numpy as np

from optimizer.engine.simulate import Span

__all__ = ["accumulation", "distribution", "count_signals"]


def accumulation(display: np.ndarray, buy: float) -> np.ndarray:
    """display >= buy (NaN -> False)."""
    with np.errstate(invalid="ignore"):
        return display >= buy


def distribution(display: np.ndarray, sell: float) -> np.ndarray:
    """display <= sell (NaN -> False)."""
    with np.errstate(invalid="ignore"):
        return display <= sell


def count_signals(display: np.ndarray, buy: float, span: Span, entry_ok: np.ndarray | None = None) -> int:
    """Accumulation days in the signal window [span.sig_start, span.sig_end) (on ``entry_ok`` sessions only)."""
    with np.errstate(invalid="ignore"):
        acc = display[span.sig_start:span.sig_end] >= buy
    if entry_ok is not None:
        acc = acc & np.asarray(entry_ok, dtype=bool)[span.sig_start:span.sig_end, None]
    return int(np.count_nonzero(acc))
