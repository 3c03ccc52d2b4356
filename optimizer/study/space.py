"""Search space: spec parameters -> ``trial.suggest_*`` -> a flat engine parameter dict -> ``Config``.

Weights: w_short, w_lit and w_price are suggested independently in their ranges and normalized to sum to 1 by the
score (ScoreParams.weights); the stored trial params are the raw suggestions, the normalized weights are recorded
in the trial's metrics attribute. ``weights`` = a preset name (short_heavy / balanced / lit_heavy) expands to the
three raw weights. ``use_stop_loss`` / ``use_take_profit`` switches gate conditional parameters through ``when``
(``optimizer.params.engine_params`` turns space values into engine parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from optimizer import engine  # engine.evaluate.Config / engine.simulate.Costs when a function runs
from optimizer.params import engine_params
from optimizer.study.records import read_trial
from optimizer.study.spec import ParamSpec, StudySpec

if TYPE_CHECKING:
    from optimizer.engine.evaluate import Config

__all__ = ["suggest", "effective_params", "params_to_config", "trial_config", "grid_search_space", "distributions"]


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


def effective_params(values: Mapping[str, Any], spec: StudySpec | None) -> dict[str, Any]:
    """Trial params plus every fixed value of ``spec`` that is active for them (Optuna does not store fixed
    values), in the space's declaration order. Without a spec: the params as they are."""
    if spec is None:
        return dict(values)
    full = dict(values)
    for p in spec.space:
        if p.kind == "fixed" and p.name not in full and (not p.when or _active(p, full)):
            full[p.name] = p.value
    order = {p.name: i for i, p in enumerate(spec.space)}
    return dict(sorted(full.items(), key=lambda kv: order.get(kv[0], len(order))))


def params_to_config(values: Mapping[str, Any], spec: StudySpec | None = None) -> Config:
    """Trial params (or ``study best`` params) -> engine Config, with the spec's costs as the base."""
    config, costs = engine.evaluate.Config, engine.simulate.Costs
    base = config(costs=costs(spec.data.commission_bps, spec.data.slippage_bps)) if spec else None
    return config.from_params(engine_params(effective_params(values, spec)), base=base)


def trial_config(trial: FrozenTrial, spec: StudySpec | None) -> Config:
    """The configuration a stored trial ran: its stored effective configuration (``records.ConfigRecord``), else
    (a trial stored before records) its params with ``spec``'s fixed values and costs."""
    rec = read_trial(trial).config_record
    return rec.config() if rec is not None else params_to_config(trial.params, spec)


def grid_search_space(spec: StudySpec) -> dict[str, list]:
    return {p.name: p.grid_values() for p in spec.space if p.kind != "fixed"}


def distributions(spec: StudySpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distribution of every searched entry (``ParamSpec.distribution``)."""
    return {p.name: p.distribution() for p in spec.space if p.kind != "fixed"}
