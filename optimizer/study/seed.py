"""Seeding: phase A -> phase B. The top-k trials of an earlier study are enqueued in the new one as the SAME
effective configurations, and ``[seed_from].weight_radius`` narrows the weight search around them.

* Exact: each seed is phase A's stored effective configuration (``records.ConfigRecord``: fixed values, presets
  and conditions applied), expressed in phase B's space: for every entry of B's space the value that gives the
  same engine parameter (a categorical choice, a value on an int / float grid, the exit name whose rule and day
  counts match, the weight preset with the same three weights, a ``use_*`` switch matching whether the gated
  parameter is set). The expressed seed is checked by rebuilding B's effective configuration from it: every engine
  parameter must equal A's. A seed B's space cannot express (a value outside a range or off its grid, a missing
  choice, a parameter B fixes to another value or does not declare while A set it, other costs) is refused with a
  ``SpecError`` naming the key and the value. B's costs ([data.costs]) must equal A's.
* Narrowed: each weight entry of B's space (``w_short``, ``w_lit``, ``w_price`` declared as an int / float range
  or a numeric categorical) searches only the intersection of its declared range with
  ``[min over the seeds - weight_radius, max over the seeds + weight_radius]`` (bounds moved inward onto the
  entry's step grid; a categorical keeps the choices inside that interval). The narrowed ranges are stored on the
  study (``records.seeded(study)["space"]``) when it is seeded, and every later run of the study (resumed, or a
  ``study worker``) searches the stored ranges, not ranges recomputed from a phase A that may have grown since.
* Told: phase A's configurations were ranked on ITS data settings. When the seed study's stored spec has other
  ``[data]`` settings than this spec (universe, start, end, regime, min_periods, reserve_fraction), seeding goes on
  (a coarse phase A on a smaller universe is a legitimate plan) and the run says which differ
  (:func:`data_differences`; ``StudyRunResult.warnings``, printed by ``study run``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import optuna

from optimizer.errors import DataError, SpecError
from optimizer.params import PARAMS, SWITCHES, WEIGHT_PRESETS, parse_exit
from optimizer.study.records import mark_seeded, ranked_trials, read_study, read_trial, seeded
from optimizer.study.registry import round_to_step
from optimizer.study.space import params_to_config
from optimizer.study.spec import ParamSpec, StudySpec

__all__ = ["seed_from_study", "pruned_seeds_note", "seed_configs", "express", "narrow_space", "searched_spec", "data_differences",
           "WEIGHT_NAMES"]

WEIGHT_NAMES = ("w_short", "w_lit", "w_price")
_COSTS = ("commission_bps", "slippage_bps")
# the [data] settings that decide which trades a configuration makes (costs are checked exactly by ``express``;
# ``database`` names a file, not what is in it)
_DATA_KEYS = ("universe", "start", "end", "regime", "min_periods", "reserve_fraction")


def data_differences(seed_spec: StudySpec | None, spec: StudySpec) -> list[str]:
    """``<key> <seed study's value> -> <this spec's value>`` for each ``[data]`` setting (``_DATA_KEYS``) the seed
    study's stored spec has otherwise than ``spec`` (empty when the seed study stored no spec)."""
    if seed_spec is None:
        return []
    out = []
    for k in _DATA_KEYS:
        a, b = getattr(seed_spec.data, k), getattr(spec.data, k)
        if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            out.append(f"{k} {a!r} -> {b!r}")
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal engine values: numbers by value (70 == 70.0, within 1e-9), everything else exactly."""
    num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
    if num(a) and num(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-9)
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _active(p: ParamSpec, values: Mapping[str, Any]) -> bool:
    return all(k in values and values[k] in allowed for k, allowed in p.when)


def seed_configs(source: optuna.Study, top: int) -> list[tuple[int, dict[str, Any]]]:
    """(trial number, effective engine parameters) of the ``top`` best trials of ``source``, best first: each
    trial's stored configuration record, else (a study made before records) its params with the fixed values of
    the spec stored on the study."""
    spec = read_study(source).spec()
    out = []
    for t in ranked_trials(source)[:top]:
        rec = read_trial(t).config_record
        params = dict(rec.params) if rec is not None else params_to_config(t.params, spec).to_params()
        out.append((t.number, params))
    return out


def _choice(p: ParamSpec, ok) -> Any:
    for c in p.choices if p.kind == "categorical" else (p.value,):
        if ok(c):
            return c
    raise KeyError


def _value_for(p: ParamSpec, target: Mapping[str, Any]) -> Any:
    """The value of entry ``p`` that gives the engine parameters ``target`` (KeyError: none does)."""
    name = p.name
    if name == "weights":
        w = tuple(target[k] for k in WEIGHT_NAMES)
        return _choice(p, lambda c: c in WEIGHT_PRESETS and all(_same(a, b) for a, b in zip(WEIGHT_PRESETS[c], w)))
    if name in SWITCHES:
        want = target.get(SWITCHES[name]) is not None
        return _choice(p, lambda c: c is want)
    if name == "exit":
        rule = (target["exit"], target.get("hold_days"), target.get("max_days"))

        def ok(c: Any) -> bool:
            try:
                return parse_exit(c, target.get("hold_days"), target.get("max_days")) == rule
            except Exception:  # noqa: BLE001 - a choice that cannot hold this rule's day counts does not match
                return False
        return _choice(p, ok)
    v = target.get(name)
    if p.kind in ("categorical", "fixed"):
        return _choice(p, lambda c: _same(c, v))
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        raise KeyError
    if not (p.low - 1e-9 <= v <= p.high + 1e-9):
        raise KeyError
    if p.step is not None:
        k = (v - p.low) / p.step
        if abs(k - round(k)) > 1e-6:
            raise KeyError
        v = round_to_step(v, p.low, p.step, p.high)
    return int(round(v)) if p.kind == "int" else float(v)


def _describe(p: ParamSpec) -> str:
    if p.kind == "categorical":
        return f"choices {list(p.choices)}"
    if p.kind == "fixed":
        return f"the fixed value {p.value!r}"
    return f"[{p.low}, {p.high}]" + (f" step {p.step}" if p.step is not None else "")


def express(target: Mapping[str, Any], spec: StudySpec, where: str = "seed") -> dict[str, Any]:
    """The values of ``spec``'s space (fixed entries included) whose effective configuration is exactly the
    engine parameters ``target``. A ``SpecError`` names the key and the value the space cannot express."""
    assign: dict[str, Any] = {}
    for p in spec.space:
        if p.when and not _active(p, assign):
            continue
        try:
            assign[p.name] = _value_for(p, target)
        except KeyError:
            shown = ({k: target.get(k) for k in WEIGHT_NAMES} if p.name == "weights" else
                     target.get(SWITCHES[p.name]) if p.name in SWITCHES else
                     {k: target.get(k) for k in ("exit", "hold_days", "max_days")} if p.name == "exit" else
                     target.get(p.name))
            raise SpecError("seed_from", f"{where} has {p.name}={shown!r}, which [space.{p.name}] ({_describe(p)}) "
                                         "cannot express") from None
    got = params_to_config(assign, spec).to_params()
    for k, v in got.items():
        if not _same(v, target.get(k)):
            key = f"data.costs.{k}" if k in _COSTS and spec.param(k) is None else f"space.{k}"
            raise SpecError("seed_from", f"{where} has {k}={target.get(k)!r}, but this spec's [{key.rpartition('.')[0]}] "
                                         f"gives {k}={v!r} (declare {k} to search it, or fix it to that value)")
    return assign


def narrow_space(spec: StudySpec, seeds: list[Mapping[str, Any]], radius: float) -> dict[str, list[Any]]:
    """The weight entries of ``spec``'s space narrowed around ``seeds`` (module docstring): {name: [low, high]}
    for a range, {name: [choices...]} for a categorical; entries that do not narrow are left out."""
    out: dict[str, list[Any]] = {}
    for p in spec.space:
        if p.name not in WEIGHT_NAMES or p.kind == "fixed" or p.when:
            continue
        vals = [float(s[p.name]) for s in seeds]
        lo, hi = min(vals) - radius, max(vals) + radius
        if p.kind == "categorical":
            keep = [c for c in p.choices if lo - 1e-9 <= float(c) <= hi + 1e-9]
            if len(keep) < len(p.choices):
                out[p.name] = keep
            continue
        nlo, nhi = max(float(p.low), lo), min(float(p.high), hi)
        if p.step is not None:
            nlo = round_to_step(p.low + math.ceil((nlo - p.low) / p.step - 1e-9) * p.step, p.low, p.step, p.high)
            nhi = round_to_step(p.low + math.floor((nhi - p.low) / p.step + 1e-9) * p.step, p.low, p.step, p.high)
        if p.kind == "int":
            nlo, nhi = int(math.ceil(nlo - 1e-9)), int(math.floor(nhi + 1e-9))
        if (nlo, nhi) != (p.low, p.high):
            out[p.name] = [nlo, nhi]
    return out


def searched_spec(spec: StudySpec, narrowed: Mapping[str, list[Any]] | None) -> StudySpec:
    """``spec`` with the stored narrowed weight entries (``narrow_space``) in its space."""
    if not narrowed:
        return spec
    space = []
    for p in spec.space:
        v = narrowed.get(p.name)
        if v is None:
            space.append(p)
        elif p.kind == "categorical":
            space.append(dataclasses.replace(p, choices=tuple(v)))
        else:
            space.append(dataclasses.replace(p, low=v[0], high=v[1]))
    return dataclasses.replace(spec, space=tuple(space))


def seed_from_study(study: optuna.Study, spec: StudySpec, storage: Any, notes: list[str] | None = None) -> StudySpec:
    """Seed ``study`` from ``spec.seed_from`` once (module docstring) and return the spec it searches: ``spec``
    with its weight entries narrowed around the seeds (as stored on the study when it was seeded). ``notes``: when
    this call seeds, a line is appended to it if the seed study ran on other ``[data]`` settings. A refusal names
    the spec's file, as the spec's own errors do (it names only the key when the spec has no file)."""
    try:
        return _seed_from_study(study, spec, storage, notes)
    except SpecError as e:
        if e.file is None and spec.path:
            raise SpecError(e.key, e.reason, spec.path) from None
        raise


def _seed_from_study(study: optuna.Study, spec: StudySpec, storage: Any, notes: list[str] | None) -> StudySpec:
    if spec.seed_from is None:
        return spec
    mark = seeded(study)
    if mark:
        return searched_spec(spec, mark.get("space"))
    src = spec.seed_from
    try:
        a = optuna.load_study(study_name=src.study, storage=storage)
    except KeyError:
        raise SpecError("seed_from.study", f"no study named {src.study!r} in the storage; run it first") from None
    try:
        seeds = seed_configs(a, src.top)
    except DataError as e:
        raise SpecError("seed_from.study", str(e)) from None
    if not seeds:
        raise SpecError("seed_from.study", f"study {src.study!r} has no completed trials to seed from")
    for n, params in seeds:  # every seed inside the declared space first (a clear error names the trial)
        express(params, spec, f"trial {n} of {src.study!r}")
    narrowed = narrow_space(spec, [p for _, p in seeds], src.weight_radius)
    searched = searched_spec(spec, narrowed)
    fixed = {p.name for p in searched.space if p.kind == "fixed"}
    for n, params in seeds:
        values = express(params, searched, f"trial {n} of {src.study!r}")
        study.enqueue_trial({k: v for k, v in values.items() if k not in fixed}, skip_if_exists=True)
    mark_seeded(study, src.study, len(seeds), [n for n, _ in seeds], narrowed)
    if len(seeds) < src.top and notes is not None:  # the top asked for is more than the study holds: say so
        notes.append(f"[seed_from] top = {src.top}: study {src.study!r} has {len(seeds)} completed trial(s), so "
                     f"{len(seeds)} seed(s) were taken")
    diff = data_differences(read_study(a).spec(), spec)
    if diff and notes is not None:
        notes.append(f"[seed_from] {src.study!r} ranked its trials on other [data] settings than this study "
                     f"({'; '.join(diff)}): its {len(seeds)} seeds were chosen on that data")
    return searched


def pruned_seeds_note(study: optuna.Study, show: int = 3) -> str | None:
    """A line for the user when seeds this study took from ``[seed_from]`` were pruned here, None otherwise. The seed
    study ranked them on its own folds; this study scores them on its folds, which differ when its space (the
    z-window warm-up, the longest hold) or ``[cv]`` differ, so a seed can stop early here (too few trades on a
    shorter fold) although it ranked well there: the user should know the run did not start from those seeds."""
    mark = seeded(study)
    if not mark:
        return None
    seeds = [t for t in study.get_trials(deepcopy=False)  # enqueued by the seeding, not a retry of a failed trial
             if "fixed_params" in t.system_attrs and "failed_trial" not in t.system_attrs]
    pruned = [t for t in seeds if t.state == optuna.trial.TrialState.PRUNED]
    if not pruned:
        return None
    why = []
    for t in pruned[:show]:
        rec = read_trial(t)
        at = "" if rec.pruned_at_fold is None else f" at fold {rec.pruned_at_fold}"
        why.append(f"trial {t.number}{at}: {rec.pruned_reason or 'pruned'}")
    more = f"; and {len(pruned) - show} more" if len(pruned) > show else ""
    return (f"[seed_from] {len(pruned)} of the {len(seeds)} seeds from {mark.get('from')!r} were pruned in this study "
            f"({'; '.join(why)}{more}): it scores them on its own folds, not on the folds that ranked them (compare "
            f"the two studies' [cv] and the warm-up its [space] needs)")
