"""Search space: spec parameters -> ``trial.suggest_*`` -> a flat engine parameter dict -> ``Config``.

Weights: w_short, w_lit and w_price are suggested independently in their ranges and normalized to sum to 1 by the
score (ScoreParams.weights); the stored trial params are the raw suggestions, the normalized weights are recorded
in the trial's metrics attribute. ``weights`` = a preset name (short_heavy / balanced / lit_heavy) expands to the
three raw weights. ``use_stop_loss`` / ``use_take_profit`` switches gate conditional parameters through ``when``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from optimizer.engine.evaluate import Config
from optimizer.study.spec import WEIGHT_PRESETS, ParamSpec, StudySpec

__all__ = ["suggest", "params_to_config", "grid_search_space", "distributions"]

_SWITCHES = ("use_stop_loss", "use_take_profit")


def _active(p: ParamSpec, values: Mapping[str, Any]) -> bool:
    return all(k in values and values[k] in allowed for k, allowed in p.when)


def suggest(trial: optuna.trial.BaseTrial, spec: StudySpec) -> dict[str, Any]:
    """Ask the trial for every active parameter in declaration order. Fixed values are not sent to Optuna."""
    values: dict[str, Any] = {}
    for p in spec.space:
        if p.when and not _active(p, values):
            continue
        if p.kind == "fixed":
            values[p.name] = p.value
        elif p.kind == "categorical":
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
    return values


def engine_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop switches, expand weight presets: the result is accepted by ``Config.from_params``."""
    out = {k: v for k, v in values.items() if k not in _SWITCHES and k != "weights"}
    if "weights" in values:
        ws, wl, wp = WEIGHT_PRESETS[str(values["weights"])]
        out.update(w_short=ws, w_lit=wl, w_price=wp)
    if values.get("use_stop_loss") is False:
        out.pop("stop_loss", None)
    if values.get("use_take_profit") is False:
        out.pop("take_profit", None)
    return out


def params_to_config(values: Mapping[str, Any], spec: StudySpec | None = None) -> Config:
    """Trial params (or ``study best`` params) -> engine Config, with the spec's costs as the base."""
    from optimizer.engine.simulate import Costs

    base = Config(costs=Costs(spec.data.commission_bps, spec.data.slippage_bps)) if spec else None
    full = dict(values)
    if spec is not None:
        for p in spec.space:  # fixed values are not stored by Optuna: put them back
            if p.kind == "fixed" and p.name not in full and (not p.when or _active(p, full)):
                full[p.name] = p.value
    return Config.from_params(engine_params(full), base=base)


def grid_search_space(spec: StudySpec) -> dict[str, list]:
    return {p.name: p.grid_values() for p in spec.space if p.kind != "fixed"}


def distributions(spec: StudySpec) -> dict[str, optuna.distributions.BaseDistribution]:
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for p in spec.space:
        if p.kind == "categorical":
            out[p.name] = optuna.distributions.CategoricalDistribution(list(p.choices))
        elif p.kind == "int":
            out[p.name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        elif p.kind == "float":
            out[p.name] = optuna.distributions.FloatDistribution(float(p.low), float(p.high), step=p.step, log=p.log)
    return out
