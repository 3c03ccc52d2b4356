"""The objective protocol: a thin composition of the engine's pure metric functions over CV folds.

An objective turns one fold's metrics dict (``optimizer.engine.metrics.METRIC_KEYS``) into the value reported to
the pruner for that fold, and the list of fold metrics into the trial's value(s). It never simulates anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["Objective", "aggregate"]


def aggregate(values: Sequence[float], how: str = "mean", k: float = 1.0, direction: str = "maximize") -> float:
    """mean | median | mean_minus_std of the fold values. mean_minus_std is the mean moved k population stds
    towards the worse side of ``direction``: mean − k·std when maximizing, mean + k·std when minimizing, so the
    spread of the folds always counts against a configuration (mean − k·std of a minimized value would reward it)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("aggregate needs at least one fold value")
    if how == "mean":
        return float(v.mean())
    if how == "median":
        return float(np.median(v))
    if how == "mean_minus_std":
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got direction={direction!r}")
        return float(v.mean() - k * v.std()) if direction == "maximize" else float(v.mean() + k * v.std())
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

    def values(self, folds: Sequence[Mapping[str, float]], how: str = "mean", k: float = 1.0,
               directions: Sequence[str] | None = None) -> tuple[float, ...]:
        """The trial's value(s): each objective's fold values aggregated (``aggregate``; ``directions``: the
        study's, one per value, default maximize)."""
        per = np.array([self.fold_values(m) for m in folds], dtype=np.float64)
        dirs = list(directions) if directions is not None else ["maximize"] * per.shape[1]
        if len(dirs) != per.shape[1]:
            raise ValueError(f"directions must hold one direction per value ({per.shape[1]}), got {len(dirs)}")
        return tuple(aggregate(per[:, j], how, k, dirs[j]) for j in range(per.shape[1]))

    @property
    def metric_names(self) -> list[str]:
        return [self.name] if len(self.metrics) == 1 else list(self.metrics)
