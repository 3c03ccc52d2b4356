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
from numpy.typing import ArrayLike
import pandas as pd

from optimizer.engine._failure import FAILURE_MODES, classify_failure_modes
from optimizer.engine._indicators import (
    TREND_DOWN, TREND_LABELS, TREND_SIDEWAYS, TREND_UP, atr, atr_pct, blended_beta, bollinger_position, ewma_beta,
    forward_returns, macd, market_relative_forward_returns, price_vs_sma_pct, rolling_beta, rsi, simple_returns, sma,
    sma_slope, trend_class,
)
from optimizer.engine._options import BOOST_CAP, OPTION_KEYS, options_context, squeeze_boost
from optimizer.engine._regime import (
    LEARNED_REGIME_LABELS, LEARNED_UNKNOWN, POSITION_MULTIPLIERS, REGIME_LABELS, REGIME_RISK_OFF, REGIME_RISK_ON,
    REGIME_TRANSITIONAL, effective_vix, learned_regime, learned_regime_detail, market_regime, position_multiplier,
    regime_features,
)
from optimizer.errors import check_param
from optimizer.engine.panel import Panel

__all__ = [
    "TREND_UP", "TREND_SIDEWAYS", "TREND_DOWN", "TREND_LABELS",
    "REGIME_RISK_ON", "REGIME_TRANSITIONAL", "REGIME_RISK_OFF", "REGIME_LABELS",
    "LEARNED_UNKNOWN", "LEARNED_REGIME_LABELS", "QUALITY_HIGH", "QUALITY_MEDIUM", "QUALITY_LOW", "QUALITY_LABELS",
    "FAILURE_MODES", "BOOST_CAP", "CONTEXT_KEYS", "MARKET_KEYS", "POSITION_MULTIPLIERS",
    "sma", "sma_slope", "price_vs_sma_pct", "trend_class", "rsi", "macd", "bollinger_position", "atr", "atr_pct",
    "ewma_beta", "rolling_beta", "blended_beta", "market_regime", "effective_vix", "regime_features",
    "learned_regime", "learned_regime_detail", "position_multiplier", "options_context", "squeeze_boost",
    "parent_etf_available", "parent_etf_aligned", "signal_quality", "compute_context", "market_regime_frame",
    "forward_returns", "market_relative_forward_returns", "classify_failure_modes", "decode",
]

QUALITY_HIGH, QUALITY_MEDIUM, QUALITY_LOW = np.int8(2), np.int8(1), np.int8(0)
QUALITY_LABELS: dict[int, str] = {2: "HIGH", 1: "MEDIUM", 0: "LOW"}

# (T,) market-wide keys; every other key is (T, N).
MARKET_KEYS: tuple[str, ...] = (
    "regime", "regime_vix", "vix_level", "spy_vs_sma_50", "learned_regime", "learned_regime_prob", "regime_multiplier",
)
CONTEXT_KEYS: tuple[str, ...] = (
    "sma_20", "sma_20_slope", "price_vs_sma_20_pct", "trend", "rsi_14", "macd_line", "macd_signal", "macd_hist",
    "boll_pos", "atr_14", "atr_pct", "beta", "beta_ewma_20", "beta_rolling_20", "beta_rolling_60", "beta_blended",
    *MARKET_KEYS, *OPTION_KEYS,
)


def decode(codes: ArrayLike, labels: dict[int, str]) -> np.ndarray:
    """int8 codes -> object array of label strings (e.g. ``decode(ctx['trend'], TREND_LABELS)``)."""
    a = np.asarray(codes)
    lut = np.array([labels.get(int(v), "UNKNOWN") for v in np.unique(a)], dtype=object)
    return lut[np.searchsorted(np.unique(a), a)] if a.size else np.empty(a.shape, dtype=object)


def parent_etf_available(symbols: Sequence[str], sectors: Sequence[str | None]) -> np.ndarray:
    """bool (N,): the symbol has a parent sector ETF and that ETF is one of ``symbols``."""
    have = set(symbols)
    return np.array([s is not None and s in have for s in sectors], dtype=bool)


def parent_etf_aligned(display: ArrayLike, symbols: Sequence[str], sectors: Sequence[str | None],
                       buy_threshold: float) -> np.ndarray:
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
    display: ArrayLike, buy_threshold: float, trend: ArrayLike, put_call: ArrayLike, aligned: ArrayLike, lit_z: ArrayLike, boost: ArrayLike = 1.0,
    reversal_score: float = 80.0, reversal_put_call: float = 0.7, aligned_score: float = 75.0,
    medium_score: float = 70.0, medium_lit_z: float = 1.0,
) -> np.ndarray:
    """int8 (T, N): HIGH (2) / MEDIUM (1) / LOW (0), the design's rule (docs/CONTEXT.md section 6).

    Only signals are graded: display NaN or < ``buy_threshold`` is LOW. Otherwise, with score = min(100,
    display * boost) (the options quality boost applied to the score; boost 1.0 = none), first match wins:
    HIGH   score >= 80 and trend DOWN and put/call < 0.7   (reversal setup with options confirmation)
    HIGH   score >= 75 and parent ETF aligned              (ETF + constituent alignment)
    MEDIUM score >= 70 and (lit_z > 1.0 or parent ETF aligned)
    LOW    otherwise.
    NaN put/call (no liquid options) or NaN lit_z never satisfy their condition.
    """
    d = np.asarray(display, dtype=np.float64)
    tr = np.broadcast_to(np.asarray(trend), d.shape)
    pc = np.broadcast_to(np.asarray(put_call, dtype=np.float64), d.shape)
    al = np.broadcast_to(np.asarray(aligned, dtype=bool), d.shape)
    lz = np.broadcast_to(np.asarray(lit_z, dtype=np.float64), d.shape)
    bo = np.broadcast_to(np.asarray(boost, dtype=np.float64), d.shape)
    with np.errstate(invalid="ignore"):
        signal = d >= buy_threshold
        score = np.minimum(100.0, d * np.where(np.isfinite(bo), bo, 1.0))
        high = signal & (((score >= reversal_score) & (tr == TREND_DOWN) & (pc < reversal_put_call))
                         | ((score >= aligned_score) & al))
        medium = signal & ~high & (score >= medium_score) & ((lz > medium_lit_z) | al)
    out = np.full(d.shape, QUALITY_LOW, dtype=np.int8)
    out[medium] = QUALITY_MEDIUM
    out[high] = QUALITY_HIGH
    return out


def compute_context(panel: Panel, learned_kwargs: dict | None = None) -> dict[str, np.ndarray]:
    """Every score-independent context feature of the panel (keys ``CONTEXT_KEYS``), point-in-time.

    Per symbol (T, N): sma_20, sma_20_slope (day over day), price_vs_sma_20_pct, trend (int8), rsi_14,
    macd_line/signal/hist, boll_pos, atr_14, atr_pct, beta (EWMA, halflife 60, vs SPY), beta_ewma_20,
    beta_rolling_20, beta_rolling_60, beta_blended (doc 004), options_* (``options_context``).
    Market (T,) (``MARKET_KEYS``): regime (int8), regime_vix (VIX or its proxy), vix_level (VIX, NaN when
    missing), spy_vs_sma_50, learned_regime (int8), learned_regime_prob, regime_multiplier (doc 004 sizing).
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
    r, rm = simple_returns(close), simple_returns(spy)
    b20, r20, r60 = ewma_beta(r, rm, halflife=20.0), rolling_beta(r, rm, 20), rolling_beta(r, rm, 60)
    vix_eff = effective_vix(m["vix"], spy)
    learned, prob = learned_regime_detail(
        regime_features(spy, m["spy_high"], m["spy_low"], m["spy_volume"], m["vix"]), **(learned_kwargs or {})
    )
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
        "beta": ewma_beta(r, rm),
        "beta_ewma_20": b20,
        "beta_rolling_20": r20,
        "beta_rolling_60": r60,
        "beta_blended": blended_beta(b20, r20, r60),
        "regime": market_regime(spy, m["vix"]),
        "regime_vix": vix_eff,
        "vix_level": np.asarray(m["vix"], dtype=np.float64).copy(),
        "spy_vs_sma_50": price_vs_sma_pct(spy, sma(spy, 50)),
        "learned_regime": learned,
        "learned_regime_prob": prob,
        "regime_multiplier": position_multiplier(learned, vix_eff),
    }
    out.update(options_context(f, (T, N)))
    return {k: out[k] for k in CONTEXT_KEYS}


def market_regime_frame(panel: Panel, context: dict[str, np.ndarray] | None = None,
                        symbol: str = "SPY") -> pd.DataFrame:
    """One row per session: the rows of the ``market_regimes`` table (doc 004) for the panel's market.

    Columns: symbol, date, regime (learned label), probability (its posterior; NaN when UNKNOWN),
    position_multiplier, features (dict of ``regime_features`` at the session, None for missing values),
    detected_at (the session's 16:00 close: the label uses data up to that close only), rule_regime, vix_level
    (``regime_vix``). ``context`` defaults to ``compute_context(panel)``."""
    ctx = context if context is not None else compute_context(panel)
    m = panel.market
    feats = regime_features(m["spy_close"], m["spy_high"], m["spy_low"], m["spy_volume"], m["vix"])
    rows = feats.to_dict(orient="records")
    features = [{k: (None if not np.isfinite(v) else float(v)) for k, v in r.items()} for r in rows]
    dates = pd.to_datetime(np.asarray(panel.dates, dtype="datetime64[D]"))
    return pd.DataFrame({
        "symbol": symbol,
        "date": dates,
        "regime": decode(ctx["learned_regime"], LEARNED_REGIME_LABELS),
        "probability": np.asarray(ctx["learned_regime_prob"], dtype=np.float64),
        "position_multiplier": np.asarray(ctx["regime_multiplier"], dtype=np.float64),
        "features": features,
        "detected_at": dates + pd.Timedelta(hours=16),
        "rule_regime": decode(ctx["regime"], REGIME_LABELS),
        "vix_level": np.asarray(ctx["regime_vix"], dtype=np.float64),
    })
