"""Point-in-time CONTEXT of every signal: trend and indicators, market regime (rule and learned), options activity,
parent-ETF alignment, signal quality, and (as separately named OUTCOMES) forward returns and failure modes.

Pure numpy/pandas over the panel's arrays. Every feature at row t uses rows <= t only, so
``compute_context(panel.slice(0, t + 1))`` equals ``compute_context(panel)`` on rows <= t (tested). OUTCOME
functions (``forward_returns``, ``market_relative_forward_returns``, ``classify_failure_modes``) read the future by
design and must never feed a score or a filter. Precise definitions: docs/CONTEXT.md.

The implementation lives in ``_indicators``, ``_regime``, ``_options`` and ``_failure``; this module is the API.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optimizer.engine._failure import FAILURE_MODES, classify_failure_modes
from optimizer.engine._indicators import (
    TREND_DOWN, TREND_LABELS, TREND_SIDEWAYS, TREND_UP, atr, atr_pct, bollinger_position, ewma_beta,
    forward_returns, macd, market_relative_forward_returns, price_vs_sma_pct, rsi, simple_returns, sma, sma_slope,
    trend_class,
)
from optimizer.engine._options import BOOST_CAP, OPTION_KEYS, options_context
from optimizer.engine._regime import (
    LEARNED_REGIME_LABELS, LEARNED_UNKNOWN, REGIME_LABELS, REGIME_RISK_OFF, REGIME_RISK_ON, REGIME_TRANSITIONAL,
    effective_vix, learned_regime, market_regime, regime_features,
)
from optimizer.errors import check_param

__all__ = [
    "TREND_UP", "TREND_SIDEWAYS", "TREND_DOWN", "TREND_LABELS",
    "REGIME_RISK_ON", "REGIME_TRANSITIONAL", "REGIME_RISK_OFF", "REGIME_LABELS",
    "LEARNED_UNKNOWN", "LEARNED_REGIME_LABELS", "QUALITY_HIGH", "QUALITY_MEDIUM", "QUALITY_LOW", "QUALITY_LABELS",
    "FAILURE_MODES", "BOOST_CAP", "CONTEXT_KEYS",
    "sma", "sma_slope", "price_vs_sma_pct", "trend_class", "rsi", "macd", "bollinger_position", "atr", "atr_pct",
    "ewma_beta", "market_regime", "effective_vix", "regime_features", "learned_regime", "options_context",
    "parent_etf_available", "parent_etf_aligned", "signal_quality", "compute_context",
    "forward_returns", "market_relative_forward_returns", "classify_failure_modes", "decode",
]

QUALITY_HIGH, QUALITY_MEDIUM, QUALITY_LOW = np.int8(2), np.int8(1), np.int8(0)
QUALITY_LABELS: dict[int, str] = {2: "HIGH", 1: "MEDIUM", 0: "LOW"}

CONTEXT_KEYS: tuple[str, ...] = (
    "sma_20", "sma_20_slope", "price_vs_sma_20_pct", "trend", "rsi_14", "macd_line", "macd_signal", "macd_hist",
    "boll_pos", "atr_14", "atr_pct", "beta", "regime", "regime_vix", "learned_regime", *OPTION_KEYS,
)


def decode(codes, labels: dict[int, str]) -> np.ndarray:
    """int8 codes -> object array of label strings (e.g. ``decode(ctx['trend'], TREND_LABELS)``)."""
    a = np.asarray(codes)
    lut = np.array([labels.get(int(v), "UNKNOWN") for v in np.unique(a)], dtype=object)
    return lut[np.searchsorted(np.unique(a), a)] if a.size else np.empty(a.shape, dtype=object)


def parent_etf_available(symbols: Sequence[str], sectors: Sequence[str | None]) -> np.ndarray:
    """bool (N,): the symbol has a parent sector ETF and that ETF is one of ``symbols``."""
    have = set(symbols)
    return np.array([s is not None and s in have for s in sectors], dtype=bool)


def parent_etf_aligned(display, symbols: Sequence[str], sectors: Sequence[str | None], buy_threshold: float) -> np.ndarray:
    """bool (T, N): the symbol's sector ETF is also accumulating at t (its display >= buy_threshold).

    False where the ETF's display is NaN, for symbols without a parent ETF (ETFs themselves, unknown names) and
    when the ETF is not in the panel (``parent_etf_available`` tells these apart)."""
    d = np.asarray(display, dtype=np.float64)
    check_param(d.ndim == 2 and d.shape[1] == len(symbols) == len(sectors), "display",
                f"of shape (T, {len(symbols)}) matching symbols and sectors", d.shape)
    pos = {s: i for i, s in enumerate(symbols)}
    with np.errstate(invalid="ignore"):
        acc = d >= buy_threshold
    out = np.zeros(d.shape, dtype=bool)
    for i, sec in enumerate(sectors):
        j = pos.get(sec) if sec is not None else None
        if j is not None and j != i:
            out[:, i] = acc[:, j]
    return out


def signal_quality(
    display, buy_threshold: float, confidence, trend, regime, aligned, boost,
    high_margin: float = 10.0, high_confidence: float = 0.8, low_confidence: float = 0.6,
) -> np.ndarray:
    """int8 (T, N): HIGH (2) / MEDIUM (1) / LOW (0); ``regime`` may be (T,) and is broadcast over symbols.

    LOW  when no signal (display NaN or < buy_threshold), confidence NaN or < 0.6, trend DOWN, or regime RISK_OFF.
    HIGH when not LOW and display >= buy_threshold + 10 and confidence >= 0.8 and at least one support among
         trend UP, parent ETF aligned, options boost > 1.
    MEDIUM otherwise.
    """
    d = np.asarray(display, dtype=np.float64)
    conf = np.broadcast_to(np.asarray(confidence, dtype=np.float64), d.shape)
    tr = np.broadcast_to(np.asarray(trend), d.shape)
    rg = np.asarray(regime)
    rg = np.broadcast_to(rg[:, None] if rg.ndim == 1 and d.ndim == 2 else rg, d.shape)
    al = np.broadcast_to(np.asarray(aligned, dtype=bool), d.shape)
    bo = np.broadcast_to(np.asarray(boost, dtype=np.float64), d.shape)
    with np.errstate(invalid="ignore"):
        low = ~(d >= buy_threshold) | ~(conf >= low_confidence) | (tr == TREND_DOWN) | (rg == REGIME_RISK_OFF)
        support = (tr == TREND_UP) | al | (bo > 1.0)
        high = ~low & (d >= buy_threshold + high_margin) & (conf >= high_confidence) & support
    out = np.full(d.shape, QUALITY_MEDIUM, dtype=np.int8)
    out[low] = QUALITY_LOW
    out[high] = QUALITY_HIGH
    return out


def compute_context(panel, learned_kwargs: dict | None = None) -> dict[str, np.ndarray]:
    """Every score-independent context feature of the panel (keys ``CONTEXT_KEYS``), point-in-time.

    Per symbol (T, N): sma_20, sma_20_slope, price_vs_sma_20_pct, trend (int8), rsi_14, macd_line/signal/hist,
    boll_pos, atr_14, atr_pct, beta (EWMA, halflife 60, vs SPY), options_* (``options_context``).
    Market (T,): regime (int8), regime_vix (VIX or its proxy), learned_regime (int8).
    Missing price fields give NaN features (and SIDEWAYS trend). Cache the result once per process."""
    T, N = panel.shape
    nan = np.full((T, N), np.nan)
    f = panel.fields
    close = f.get("close", nan)
    high, low = f.get("high", nan), f.get("low", nan)
    s20 = sma(close, 20)
    slope = sma_slope(s20)
    line, sig, hist = macd(close)
    a14 = atr(high, low, close, 14)
    m = panel.market
    spy = m["spy_close"]
    out: dict[str, np.ndarray] = {
        "sma_20": s20,
        "sma_20_slope": slope,
        "price_vs_sma_20_pct": price_vs_sma_pct(close, s20),
        "trend": trend_class(close, s20, slope),
        "rsi_14": rsi(close, 14),
        "macd_line": line, "macd_signal": sig, "macd_hist": hist,
        "boll_pos": bollinger_position(close, 20),
        "atr_14": a14,
        "atr_pct": atr_pct(a14, close),
        "beta": ewma_beta(simple_returns(close), simple_returns(spy)),
        "regime": market_regime(spy, m["vix"]),
        "regime_vix": effective_vix(m["vix"], spy),
        "learned_regime": learned_regime(
            regime_features(spy, m["spy_high"], m["spy_low"], m["spy_volume"], m["vix"]), **(learned_kwargs or {})
        ),
    }
    out.update(options_context(f, (T, N)))
    return out
