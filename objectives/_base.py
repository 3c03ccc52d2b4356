"""The objective protocol: a thin composition of the engine's pure metric functions over CV folds.

An objective turns one fold's metrics dict (``optimizer.engine.metrics.METRIC_KEYS``) into the value reported to
the pruner for that fold, and the list of fold metrics into the trial's value(s). It never simulates anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["Objective", "aggregate"]


def aggregate(values: Sequence[float], how: str = "mean", k: float = 1.0) -> float:
    """mean | median | mean_minus_std (mean − k·std, population std) of the fold values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("aggregate needs at least one fold value")
    if how == "mean":
        return float(v.mean())
    if how == "median":
        return float(np.median(v))
    if how == "mean_minus_std":
        return float(v.mean() - k * v.std())
    raise ValueError(f"aggregate must be one of mean, median, mean_minus_std, got aggregate={how!r}")


class Objective:
    """Base class. Subclasses set ``metrics`` (the metric key(s) composed) and, for several values, ``n_values``."""

    name: str = "objective"
    metrics: tuple[str, ...] = ("rank_score",)
    default_directions: tuple[str, ...] = ("maximize",)
    description: str = ""

    @property
    def n_values(self) -> int:  # type: ignore[override]
        return len(self.metrics)

    def fold_value(self, m: Mapping[str, float]) -> float:
        """Value reported to the pruner after a fold (the first objective value for multi-objective)."""
        return float(self.fold_values(m)[0])

    def fold_values(self, m: Mapping[str, float]) -> tuple[float, ...]:
        return tuple(float(m[k]) for k in self.metrics)

    def values(self, folds: Sequence[Mapping[str, float]], how: str = "mean", k: float = 1.0) -> tuple[float, ...]:
        per = np.array([self.fold_values(m) for m in folds], dtype=np.float64)
        return tuple(aggregate(per[:, j], how, k) for j in range(per.shape[1]))

    @property
    def metric_names(self) -> list[str]:
        return [self.name] if len(self.metrics) == 1 else list(self.metrics)
