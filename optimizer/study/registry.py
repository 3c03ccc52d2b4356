"""Explicit registries of pluggable parts: samplers and pruners (objectives live in ``objectives``, engine parameters
and exit names in ``optimizer.params``).

Each entry is a tiny adapter over the Optuna class: it validates spec options against the class signature
(unknown options list the valid ones) and builds the instance. Unknown names list the valid names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from optimizer.errors import SpecError

__all__ = ["SAMPLERS", "PRUNERS", "build_sampler", "build_pruner"]


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Callable[..., Any]
    seeded: bool = False
    reserved: tuple[str, ...] = ()

    def valid_options(self) -> list[str]:
        sig = inspect.signature(self.factory)
        return [p for p in sig.parameters if p not in ("self", "seed", *self.reserved)
                and sig.parameters[p].kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]

    def validate_options(self, options: Mapping[str, Any], section: str) -> None:
        valid = self.valid_options()
        for k in options:
            if k not in valid:
                raise SpecError(f"{section}.{k}", f"is not an option of {self.name!r}; valid: {', '.join(valid) or 'none'}")


def _grid(search_space=None, seed=None):
    return optuna.samplers.GridSampler(search_space, seed=seed)


SAMPLERS: dict[str, _Entry] = {
    "grid": _Entry("grid", _grid, True, reserved=("search_space",)),
    "random": _Entry("random", optuna.samplers.RandomSampler, True),
    "tpe": _Entry("tpe", optuna.samplers.TPESampler, True),
    "cmaes": _Entry("cmaes", optuna.samplers.CmaEsSampler, True),
    "qmc": _Entry("qmc", optuna.samplers.QMCSampler, True),
    "nsga2": _Entry("nsga2", optuna.samplers.NSGAIISampler, True),
    "gp": _Entry("gp", optuna.samplers.GPSampler, True),
}

PRUNERS: dict[str, _Entry] = {
    "none": _Entry("none", optuna.pruners.NopPruner),
    "median": _Entry("median", optuna.pruners.MedianPruner),
    "percentile": _Entry("percentile", optuna.pruners.PercentilePruner),
    "successive_halving": _Entry("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
    "hyperband": _Entry("hyperband", optuna.pruners.HyperbandPruner),
    "wilcoxon": _Entry("wilcoxon", optuna.pruners.WilcoxonPruner),
}


def _lookup(reg: dict[str, _Entry], name: str, what: str) -> _Entry:
    try:
        return reg[name]
    except KeyError:
        raise SpecError(f"{what}.name", f"must be one of {', '.join(reg)}, got {name!r}") from None


def build_sampler(name: str, seed: int | None, options: Mapping[str, Any],
                  search_space: dict | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``name`` with the spec's ``options`` (and ``seed`` when it takes one); ``grid`` needs
    ``search_space``. Options the class rejects are a SpecError naming the sampler."""
    e = _lookup(SAMPLERS, name, "sampler")
    kw = dict(options)
    if name == "grid":
        if search_space is None:
            raise SpecError("sampler", "'grid' needs a search space (parameter name -> list of values)")
        kw["search_space"] = search_space
    if e.seeded:
        kw["seed"] = seed
    try:
        return e.factory(**kw)
    except (TypeError, ValueError) as ex:
        raise SpecError("sampler", f"{name!r} rejected its options {dict(options)}: {ex}") from None


def build_pruner(name: str, options: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """The Optuna pruner ``name`` with the spec's ``options``; options it rejects are a SpecError."""
    e = _lookup(PRUNERS, name, "pruner")
    try:
        return e.factory(**dict(options))
    except (TypeError, ValueError) as ex:
        raise SpecError("pruner", f"{name!r} rejected its options {dict(options)}: {ex}") from None
