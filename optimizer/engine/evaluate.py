"""One configuration = score + thresholds + exit + costs (+ caps); the Evaluator runs it on a span.

``Config.from_params`` is the single mapping between flat parameter dicts (Optuna trials, ``study best`` JSON,
``backtest --params FILE``) and the engine's frozen objects, so a stored trial always replays the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from optimizer.errors import ParameterError
from optimizer.engine.features import FeatureCache
from optimizer.engine.metrics import BenchmarkCache, run_metrics
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreParams, display_score
from optimizer.engine.signals import count_signals
from optimizer.engine.simulate import Caps, Costs, ExitParams, Span, Thresholds, Trades, simulate

__all__ = ["Config", "Evaluator", "Result", "PARAM_KEYS"]

PARAM_KEYS = (
    "variant", "w_short", "w_lit", "w_price", "z_window", "buy_threshold", "sell_threshold", "exit",
    "hold_days", "max_days", "stop_loss", "take_profit", "time_stop", "commission_bps", "slippage_bps",
    "max_positions", "max_per_sector", "intensity_lo", "intensity_hi", "sizing",
)
SIZINGS = ("equal", "atr")


@dataclass(frozen=True)
class Config:
    score: ScoreParams = field(default_factory=ScoreParams)
    thresholds: Thresholds = field(default_factory=Thresholds)
    exit: ExitParams = field(default_factory=ExitParams)
    costs: Costs = field(default_factory=Costs)
    caps: Caps = field(default_factory=Caps)
    sizing: str = "equal"  # portfolio weights: equal per open position, or "atr" = inverse ATR% at the signal

    def __post_init__(self) -> None:
        if self.sizing not in SIZINGS:
            raise ParameterError(f"sizing must be one of {', '.join(SIZINGS)}, got sizing={self.sizing!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, object], base: "Config | None" = None) -> "Config":
        """Build from a flat dict. ``exit`` may be a name (fixed_10d, hybrid_30d, first_dist, ...) or a rule with
        hold_days / max_days. Unknown keys are an error that lists the valid ones."""
        unknown = sorted(set(params) - set(PARAM_KEYS))
        if unknown:
            raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(PARAM_KEYS)}")
        b = base or cls()
        p = dict(params)
        score = ScoreParams(
            variant=str(p.get("variant", b.score.variant)),
            w_short=float(p.get("w_short", b.score.w_short)),
            w_lit=float(p.get("w_lit", b.score.w_lit)),
            w_price=float(p.get("w_price", b.score.w_price)),
            z_window=int(p.get("z_window", b.score.z_window)),
            intensity_lo=float(p.get("intensity_lo", b.score.intensity_lo)),
            intensity_hi=float(p.get("intensity_hi", b.score.intensity_hi)),
        )
        th = Thresholds(float(p.get("buy_threshold", b.thresholds.buy)), float(p.get("sell_threshold", b.thresholds.sell)))
        extra = {
            k: (None if p.get(k, getattr(b.exit, k)) is None else (float if k in ("stop_loss", "take_profit") else int)(p.get(k, getattr(b.exit, k))))
            for k in ("stop_loss", "take_profit", "time_stop")
        }
        ex = p.get("exit")
        if ex is None:
            exit_ = ExitParams(b.exit.rule, b.exit.hold_days, b.exit.max_days, **extra)
        elif ex in ("fixed", "hybrid"):
            exit_ = ExitParams(str(ex), hold_days=p.get("hold_days"), max_days=p.get("max_days"), **extra)  # type: ignore[arg-type]
        else:
            exit_ = ExitParams.from_name(str(ex), **extra)
        costs = Costs(float(p.get("commission_bps", b.costs.commission_bps)), float(p.get("slippage_bps", b.costs.slippage_bps)))
        mp = p.get("max_positions", b.caps.max_positions)
        ms = p.get("max_per_sector", b.caps.max_per_sector)
        caps = Caps(None if mp is None else int(mp), None if ms is None else int(ms))  # type: ignore[arg-type]
        return cls(score, th, exit_, costs, caps, str(p.get("sizing", b.sizing)))

    def to_params(self) -> dict[str, object]:
        """Flat dict accepted by ``from_params`` (round-trips exactly)."""
        d: dict[str, object] = dict(asdict(self.score))
        d["buy_threshold"] = self.thresholds.buy
        d["sell_threshold"] = self.thresholds.sell
        d["exit"] = self.exit.rule
        for k in ("hold_days", "max_days", "stop_loss", "take_profit", "time_stop"):
            d[k] = getattr(self.exit, k)
        d["commission_bps"] = self.costs.commission_bps
        d["slippage_bps"] = self.costs.slippage_bps
        d["max_positions"] = self.caps.max_positions
        d["max_per_sector"] = self.caps.max_per_sector
        d["sizing"] = self.sizing
        return d


@dataclass(frozen=True, eq=False)
class Result:
    config: Config
    span: Span
    trades: Trades
    metrics: dict[str, float]
    display: np.ndarray


class Evaluator:
    """Holds the per-process caches (features, benchmark) for one panel and evaluates configurations.

    Nothing in it is mutated per trial except the memo caches, which only ever grow with pure results.
    """

    def __init__(self, panel: Panel, min_periods: int | None = None) -> None:
        self.panel = panel
        self.features = FeatureCache(panel, min_periods=min_periods)
        self.bench = BenchmarkCache(panel)
        self._atr_pct: np.ndarray | None = None

    def atr_pct(self) -> np.ndarray:
        """ATR-14 / close per (date, symbol), computed once (point-in-time: Wilder smoothing of past bars)."""
        if self._atr_pct is None:
            from optimizer.engine._indicators import atr

            p = self.panel
            with np.errstate(invalid="ignore", divide="ignore"):
                self._atr_pct = atr(p["high"], p["low"], p["close"], 14) / p["close"]
        return self._atr_pct

    def weights(self, config: Config, trades: Trades) -> np.ndarray | None:
        """Per-trade portfolio weights: None (equal) or inverse ATR% at the signal close (volatility targeting;
        trades without an ATR yet get the median weight)."""
        if config.sizing == "equal" or len(trades) == 0:
            return None
        a = self.atr_pct()[trades.signal_idx, trades.symbol]
        with np.errstate(invalid="ignore", divide="ignore"):
            w = 1.0 / a
        ok = np.isfinite(w) & (w > 0)
        med = float(np.median(w[ok])) if ok.any() else 1.0
        return np.where(ok, w, med)

    def display(self, config: Config) -> np.ndarray:
        return display_score(self.features, config.score)

    def run(
        self, config: Config, span: Span | None = None, display: np.ndarray | None = None,
        entry_ok: np.ndarray | None = None,
    ) -> Result:
        span = span or Span.full(self.panel)
        disp = self.display(config) if display is None else display
        trades = simulate(self.panel, disp, config.thresholds, config.exit, config.costs, span, config.caps, entry_ok)
        n_sig = count_signals(disp, config.thresholds.buy, span, entry_ok)
        m = run_metrics(trades, self.panel, span, config.costs, n_sig, bench=self.bench, weight=self.weights(config, trades))
        return Result(config, span, trades, m, disp)

    def metrics(self, config: Config, span: Span | None = None) -> dict[str, float]:
        return self.run(config, span).metrics
