"""Objective registry. Add your own with ``objective.name = "mypkg.mymod:MyObjective"`` in a spec
(a subclass of ``objectives.Objective``)."""

from __future__ import annotations

import importlib

from optimizer.errors import SpecError

from objectives._base import Objective, aggregate
from objectives.builtin import (
    AvgReturn, CompositeRank, CompositeRankExcess, ExcessReturn, HitRate, ReturnHitFrequency, Sharpe, SignalEfficiency, WinLoss,
)

__all__ = ["OBJECTIVES", "Objective", "aggregate", "resolve_objective", "make_objective"]

OBJECTIVES: dict[str, type[Objective]] = {
    c.name: c
    for c in (CompositeRank, CompositeRankExcess, HitRate, AvgReturn, ExcessReturn, Sharpe, WinLoss, SignalEfficiency, ReturnHitFrequency)
}


def resolve_objective(name: str, key: str = "objective.name") -> type[Objective]:
    """A registry name or ``module.path:ClassName``; unknown names list the valid ones."""
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except Exception as e:  # noqa: BLE001 - any failure to import (empty/relative name, error in the module) is a spec error
            raise SpecError(key, f"cannot import {name!r}: {type(e).__name__}: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, Objective)):
            raise SpecError(key, f"{name!r} must be a subclass of objectives.Objective")
        return cls
    raise SpecError(key, f"must be one of {', '.join(OBJECTIVES)} or 'module.path:ClassName', got {name!r}")


def make_objective(name: str) -> Objective:
    return resolve_objective(name)()
