"""Built-in objectives: each is one metric (or a tuple of metrics) from ``optimizer.engine.metrics``."""

from __future__ import annotations

from collections.abc import Mapping

from objectives._base import Objective

__all__ = [
    "CompositeRank", "CompositeRankExcess", "HitRate", "AvgReturn", "Sharpe", "WinLoss", "SignalEfficiency", "ExcessReturn",
    "ReturnHitFrequency",
]


class CompositeRank(Objective):
    """The design's rank score: (hit_rate × avg_return) × win_loss / sqrt(signals_per_month)."""

    name = "composite_rank"
    metrics = ("rank_score",)


class CompositeRankExcess(Objective):
    """The rank score with the average return replaced by the average excess over the matched random-entry
    benchmark: (hit_rate × avg_excess_return) × win_loss / sqrt(signals_per_month). In a rising market the plain
    rank score rewards holding the market; this one rewards only timing."""

    name = "composite_rank_excess"
    metrics = ("rank_score_excess",)

    def fold_values(self, m: Mapping[str, float]) -> tuple[float, ...]:
        spm = m["signals_per_month"]
        return (m["hit_rate"] * m["avg_excess_return"] * m["win_loss"] / spm ** 0.5 if spm > 0 else 0.0,)


class HitRate(Objective):
    name = "hit_rate"
    metrics = ("hit_rate",)


class AvgReturn(Objective):
    name = "avg_return"
    metrics = ("avg_return",)


class ExcessReturn(Objective):
    """Average net return in excess of the matched random-entry benchmark (what holding would have earned)."""

    name = "excess_return"
    metrics = ("avg_excess_return",)


class Sharpe(Objective):
    """Annualized Sharpe of the daily equal-weight portfolio."""

    name = "sharpe"
    metrics = ("portfolio_sharpe",)


class WinLoss(Objective):
    name = "win_loss"
    metrics = ("win_loss",)


class SignalEfficiency(Objective):
    """Share of accumulation signals that became winning closed trades: hit_rate × closed_trades / total_signals."""

    name = "signal_efficiency"
    metrics = ("signal_efficiency",)

    def fold_values(self, m: Mapping[str, float]) -> tuple[float, ...]:
        sig = m["total_signals"]
        return (m["hit_rate"] * m["closed_trades"] / sig if sig > 0 else 0.0,)


class ReturnHitFrequency(Objective):
    """Multi-objective: maximize avg return and hit rate, minimize signals per month (a Pareto front)."""

    name = "return_hit_frequency"
    metrics = ("avg_return", "hit_rate", "signals_per_month")
    default_directions = ("maximize", "maximize", "minimize")
