"""Objective registry. Add your own with ``objective.name = "mypkg.mymod:MyObjective"`` in a spec
(a subclass of ``objectives.Objective``)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from optimizer.errors import SpecError

from objectives._base import Objective, aggregate
from objectives.builtin import (
    AvgReturn, CompositeRank, CompositeRankExcess, ExcessReturn, HitRate, ReturnHitFrequency, Sharpe, SignalEfficiency, WinLoss,
)

__all__ = ["OBJECTIVES", "Objective", "aggregate", "resolve_objective", "make_objective", "objective_options"]

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


def objective_options(cls: type[Objective]) -> list[str]:
    """The options an objective class takes: the keyword parameters of its constructor."""
    sig = inspect.signature(cls)
    return [p for p, v in sig.parameters.items()
            if v.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def make_objective(name: str, options: Mapping[str, Any] | None = None, key: str = "objective") -> Objective:
    """The objective ``name`` built with ``options`` ([objective].options of a spec): every option must be a
    parameter of the class's constructor (unknown ones list the valid ones), and a value the constructor refuses
    is a SpecError naming the option."""
    cls = resolve_objective(name, key=f"{key}.name")
    opts = dict(options or {})
    valid = objective_options(cls)
    for k in opts:
        if k not in valid:
            raise SpecError(f"{key}.options.{k}", f"is not an option of objective {name!r}; valid: {', '.join(valid) or 'none'}")
    try:
        return cls(**opts)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{key}.options", f"objective {name!r} rejected its options {opts}: {e}") from None
