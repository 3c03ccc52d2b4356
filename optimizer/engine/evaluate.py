"""One configuration = score + thresholds + exit + costs (+ caps); the Evaluator runs it on a span.

``Config.from_params`` is the single mapping between flat parameter dicts (Optuna trials, ``study best`` JSON,
``backtest --params FILE``) and the engine's frozen objects, so a stored trial always replays the same way. The
parameter names, types and which object each one sets come from the registry, ``optimizer.params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from optimizer.engine._options import boosted_display, options_context
from optimizer.engine.features import FeatureCache
from optimizer.engine.metrics import BenchmarkCache, run_metrics
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import regime_codes
from optimizer.engine.score import ScoreParams, ScoreTerms, display_score, score_terms
from optimizer.engine.simulate import (
    Caps, Costs, ExitParams, RiskParams, Span, SymbolMajorPrices, Thresholds, Trades, simulate_counted,
)
from optimizer.errors import check_param
from optimizer.params import PARAMS, check_fields, engine_fields

__all__ = ["Config", "RegimeParams", "Evaluator", "Result", "PARAM_KEYS"]

PARAM_KEYS: tuple[str, ...] = tuple(PARAMS)  # every engine parameter name, in registry order


_REGIME_CODES: dict[str, int] = {"risk_on": 1, "risk_off": -1, "transitional": 0}  # engine/_regime codes


@dataclass(frozen=True)
class RegimeParams:
    """Regime-conditional score weights and buy thresholds (registry group "regime"; docs/ENGINE.md
    "Regime-conditional weights"): on a session the rule-based market regime (``regime_filter.regime_codes``,
    point-in-time) labels RISK_ON / RISK_OFF / TRANSITIONAL, the display of every symbol uses that regime's
    weights and the entry signal its buy threshold; None = the pooled value."""

    w_short_risk_on: float | None = None
    w_lit_risk_on: float | None = None
    w_price_risk_on: float | None = None
    w_short_risk_off: float | None = None
    w_lit_risk_off: float | None = None
    w_price_risk_off: float | None = None
    w_short_transitional: float | None = None
    w_lit_transitional: float | None = None
    w_price_transitional: float | None = None
    buy_threshold_risk_on: float | None = None
    buy_threshold_risk_off: float | None = None
    buy_threshold_transitional: float | None = None

    def __post_init__(self) -> None:
        check_fields(self, "regime")
        # read on every run, so computed once: ``weighted`` (some regime has weights of its own), ``thresholded``
        # (some regime has its own buy threshold); plain attributes, not fields (the registry sees the 12 values)
        object.__setattr__(self, "weighted", any(getattr(self, f"{w}_{r}") is not None for r in _REGIME_CODES
                                                 for w in ("w_short", "w_lit", "w_price")))
        object.__setattr__(self, "thresholded", any(getattr(self, f"buy_threshold_{r}") is not None
                                                    for r in _REGIME_CODES))


    def score_params(self, regime: str, pooled: ScoreParams) -> ScoreParams:
        """The score parameters of sessions labelled ``regime`` (risk_on / risk_off / transitional)."""
        kw = {w: getattr(self, f"{w}_{regime}") for w in ("w_short", "w_lit", "w_price")}
        kw = {k: v for k, v in kw.items() if v is not None}
        return replace(pooled, **kw) if kw else pooled

    def threshold_rows(self, thresholds: Thresholds, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-session (buy, sell) thresholds for the kernels' ``rows`` (None when no regime has its own buy)."""
        if not self.thresholded:
            return None
        buy = np.full(codes.shape[0], float(thresholds.buy))
        for r, code in _REGIME_CODES.items():
            b = getattr(self, f"buy_threshold_{r}")
            if b is not None:
                check_param(b > thresholds.sell, f"buy_threshold_{r}", f"> sell_threshold={thresholds.sell}", b)
                buy[codes == code] = float(b)
        return buy, np.full(codes.shape[0], float(thresholds.sell))

    def display(self, features: FeatureCache, pooled: ScoreParams, codes: np.ndarray) -> np.ndarray:
        """The (T x N) display with each session's regime weights (one matrix: row t from its regime's weights)."""
        out = np.array(display_score(features, pooled), order="F")
        for r, code in _REGIME_CODES.items():
            sp = self.score_params(r, pooled)
            rows = codes == code
            if sp is not pooled and rows.any():
                out[rows] = display_score(features, sp)[rows]
        return out


@dataclass(frozen=True)
class Config:
    score: ScoreParams = field(default_factory=ScoreParams)
    thresholds: Thresholds = field(default_factory=Thresholds)
    exit: ExitParams = field(default_factory=ExitParams)
    costs: Costs = field(default_factory=Costs)
    caps: Caps = field(default_factory=Caps)
    risk: RiskParams = field(default_factory=RiskParams)
    regime: RegimeParams = field(default_factory=RegimeParams)
    options_boost: float = 0.0  # weight of the options boost as a score multiplier (0 = off; _options.boosted_display)

    def __post_init__(self) -> None:
        check_fields(self, "config")

    @property
    def sizing(self) -> str:
        """The sizing rule (``risk.sizing``)."""
        return self.risk.sizing

    def _parts(self) -> dict[str, object]:
        """The engine object of each registry group."""
        return {"score": self.score, "thresholds": self.thresholds, "exit": self.exit, "costs": self.costs,
                "caps": self.caps, "risk": self.risk, "regime": self.regime, "config": self}

    @classmethod
    def from_params(cls, params: Mapping[str, object], base: "Config | None" = None) -> "Config":
        """Build from a flat dict: every key a registry parameter, each set on top of ``base`` (default: the
        defaults). ``exit`` may be a name (fixed_10d, hybrid_30d, first_dist, ...) or a rule with hold_days /
        max_days. Unknown keys are an error that lists the valid ones."""
        b = base or cls()
        g = engine_fields(params)
        return cls(replace(b.score, **g["score"]), replace(b.thresholds, **g["thresholds"]),
                   replace(b.exit, **g["exit"]), replace(b.costs, **g["costs"]), replace(b.caps, **g["caps"]),
                   replace(b.risk, **g["risk"]), replace(b.regime, **g["regime"]), **g["config"])

    def to_params(self) -> dict[str, object]:
        """Flat dict accepted by ``from_params`` (round-trips exactly): every registry parameter."""
        parts = self._parts()
        return {p.name: getattr(parts[p.group], p.field) for p in PARAMS.values()}


class Result:
    """One run: its configuration, span, trades and metrics, and the display score it traded on.

    ``display`` is the (T x N) display matrix. A run that combined the score inside the simulation (``Evaluator.run``
    without a ``display``) keeps the uncombined ``ScoreTerms`` and materialises the matrix on first access, so
    callers that never look at it (studies, walk-forward folds) never pay for it. Attributes are read-only.
    """

    __slots__ = ("config", "span", "trades", "metrics", "_display")

    def __init__(self, config: Config, span: Span, trades: Trades, metrics: dict[str, float],
                 display: np.ndarray | ScoreTerms) -> None:
        for k, v in (("config", config), ("span", span), ("trades", trades), ("metrics", metrics), ("_display", display)):
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Result is read-only: cannot set {name!r}")

    def __reduce__(self):  # pickling / copying carries the display matrix, not the four cached terms
        return (Result, (self.config, self.span, self.trades, self.metrics, self.display))

    def __repr__(self) -> str:
        return f"Result(config={self.config!r}, span={self.span!r}, trades={len(self.trades)}, metrics={self.metrics!r})"

    @property
    def display(self) -> np.ndarray:
        d = self._display
        if isinstance(d, ScoreTerms):
            d = d.display()
            object.__setattr__(self, "_display", d)
        return d


class Evaluator:
    """Holds the per-process caches (features, benchmark) for one panel and evaluates configurations.

    Nothing in it is mutated per trial except the memo caches, which only ever grow with pure results.
    """

    def __init__(self, panel: Panel, min_periods: int | None = None) -> None:
        self.panel = panel
        self.features = FeatureCache(panel, min_periods=min_periods)
        self.prices = SymbolMajorPrices(panel)
        self.bench = BenchmarkCache(panel, self.prices)
        self._atr_pct: np.ndarray | None = None
        self._boost: tuple[np.ndarray, np.ndarray] | None = None
        self._codes: np.ndarray | None = None

    def regime_codes(self) -> np.ndarray:
        """(T,) int8 rule-based market regime per session (1 RISK_ON, 0 TRANSITIONAL, -1 RISK_OFF), point-in-time."""
        if self._codes is None:
            self._codes = regime_codes(self.panel)
        return self._codes

    def options_boost_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(options_boost_base, options_otm_put_z_max5) of the panel, computed once (docs/CONTEXT.md section 4;
        1.0 and NaN where a name is not liquid or the store has no options)."""
        if self._boost is None:
            ctx = options_context(self.panel.fields, self.panel.shape)
            self._boost = (ctx["options_boost_base"], ctx["options_otm_put_z_max5"])
        return self._boost

    def atr_pct(self) -> np.ndarray:
        """ATR-14 / close per (date, symbol), computed once (point-in-time: Wilder smoothing of past bars)."""
        if self._atr_pct is None:
            with np.errstate(invalid="ignore", divide="ignore"):
                self._atr_pct = (self.prices["atr14"] / self.prices["close"]).T
        return self._atr_pct

    def weights(self, config: Config, trades: Trades) -> np.ndarray | None:
        """Per-trade sizing weights of a run of ``config`` (None = equal weights): the ones the simulation
        attached to ``trades`` (docs/ENGINE.md "Position sizing")."""
        if not config.risk.weighted or len(trades) == 0:
            return None
        return trades.weight

    def display(self, config: Config) -> np.ndarray:
        """The (T x N) display score of ``config``, the options boost applied when ``options_boost`` > 0."""
        if config.regime.weighted:
            d = config.regime.display(self.features, config.score, self.regime_codes())
        else:
            d = display_score(self.features, config.score)
        if config.options_boost > 0:
            d = boosted_display(d, *self.options_boost_inputs(), config.options_boost)
        return d

    def run(
        self, config: Config, span: Span | None = None, display: np.ndarray | None = None,
        entry_ok: np.ndarray | None = None, carried: Trades | None = None,
    ) -> Result:
        """Simulate ``config`` on ``span`` and measure it. Without ``display`` the score is combined inside the
        simulation from the cached terms (never materialised); a given ``display`` (T x N) is used as is.
        ``carried``: positions held by someone else that count against the caps (``simulate_counted``; the
        walk-forward's book)."""
        span = span or Span.full(self.panel)
        if display is not None:
            score = display
        elif config.options_boost > 0 or config.regime.weighted:  # materialised (not fused)
            score = self.display(config)
        else:
            score = score_terms(self.features, config.score)
        trades, n_sig = simulate_counted(self.panel, score, config.thresholds, config.exit, config.costs, span,
                                         config.caps, entry_ok, prices=self.prices, risk=config.risk,
                                         rows=config.regime.threshold_rows(config.thresholds, self.regime_codes())
                                         if config.regime.thresholded else None, carried=carried)
        m = run_metrics(trades, self.panel, span, n_sig, bench=self.bench)
        return Result(config, span, trades, m, score)

    def metrics(self, config: Config, span: Span | None = None) -> dict[str, float]:
        return self.run(config, span).metrics
