"""Regime filters for studies: which sessions' closes may open a position (point-in-time labels only)."""

from __future__ import annotations

import numpy as np

from optimizer.errors import ParameterError
from optimizer.engine._regime import LEARNED_REGIME_LABELS, REGIME_LABELS, learned_regime, market_regime, regime_features
from optimizer.engine.panel import Panel

__all__ = ["regime_codes", "regime_entry_mask", "REGIME_NAMES"]

REGIME_NAMES = ("ALL", *REGIME_LABELS.values(), *[v for k, v in LEARNED_REGIME_LABELS.items() if k >= 0])


def regime_codes(panel: Panel, learned: bool = False) -> np.ndarray:
    m = panel.market
    if not learned:
        return market_regime(m["spy_close"], m["vix"])
    feats = regime_features(m["spy_close"], m["spy_high"], m["spy_low"], m["spy_volume"], m["vix"])
    return learned_regime(feats)


def regime_entry_mask(panel: Panel, regime: str) -> np.ndarray | None:
    """bool (T,) True on sessions labelled ``regime`` (None for ALL = no filter)."""
    if regime == "ALL":
        return None
    rule = {v: k for k, v in REGIME_LABELS.items()}
    lrn = {v: k for k, v in LEARNED_REGIME_LABELS.items() if k >= 0}
    if regime in rule:
        return regime_codes(panel) == rule[regime]
    if regime in lrn:
        return regime_codes(panel, learned=True) == lrn[regime]
    raise ParameterError(f"regime must be one of {', '.join(REGIME_NAMES)}, got regime={regime!r}")
