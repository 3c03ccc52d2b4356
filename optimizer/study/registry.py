"""Explicit registries of pluggable parts: samplers and pruners (objectives live in ``objectives``, engine parameters
and exit names in ``optimizer.params``).

Each entry is a tiny adapter over the Optuna class: it validates spec options against the class signature
(unknown options list the valid ones) and builds the instance. Unknown names list the valid names.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from optimizer.errors import SpecError

__all__ = [
    "SAMPLERS", "PRUNERS", "build_sampler", "build_pruner", "dry_run", "step_decimals", "round_to_step", "StepRounding",
    "trial_seed", "annotation_text", "takes_integer_only", "whole_option",
]


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

    def validate_options(self, options: Mapping[str, Any], section: str) -> dict[str, Any]:
        """Every option a keyword of the Optuna class, and its value of the type the class declares (checked
        from the annotation: ``n_startup_trials = "ten"`` is refused here, not by a failing trial); the options,
        an integral float given to an option that takes an integer and no float as that integer
        (``n_startup_trials = 10.0`` is 10, the spec's rule for every integer key: ``spec.whole``)."""
        valid = self.valid_options()
        sig = inspect.signature(self.factory)
        out = dict(options)
        for k, v in options.items():
            if k not in valid:
                raise SpecError(f"{section}.{k}", f"is not an option of {self.name!r}; valid: {', '.join(valid) or 'none'}")
            ann = annotation_text(sig.parameters[k])
            out[k] = v = whole_option(ann, v)
            rule = _type_rule(ann, v)
            if rule is not None:
                raise SpecError(f"{section}.{k}", f"must be {rule} (an option of {self.name!r}), got {v!r}")
        return out


def annotation_text(param: inspect.Parameter) -> str:
    """A constructor parameter's annotation as text (``from __future__ import annotations`` leaves it a string)."""
    ann = param.annotation
    return ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))


def takes_integer_only(ann: str) -> bool:
    """Whether an option annotated ``ann`` takes an integer and no other number (``int``, ``int | None``)."""
    return _type_rule(ann, 1) is None and _type_rule(ann, 1.5) is not None


def whole_option(ann: str, value: Any) -> Any:
    """The spec's integer rule (``spec.whole``) for an option annotated ``ann``: a float with no fraction given to
    an option that takes an integer and no other number is that integer; any other value as it is."""
    if isinstance(value, float) and value.is_integer() and takes_integer_only(ann):
        return int(value)
    return value


_SIMPLE = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "None": (type(None),)}
_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "None": "none"}


def _split_union(ann: str) -> list[str]:
    """Top-level members of a ``a | b[c | d] | None`` annotation string."""
    out, depth, cur = [], 0, ""
    for ch in ann:
        depth += ch in "[(" and 1 or ch in "])" and -1 or 0
        if ch == "|" and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*out, cur.strip()] if cur.strip() else out


def _type_rule(ann: str, value: Any) -> str | None:
    """None when ``value`` (from TOML) fits the annotation ``ann``, else the rule it breaks. Annotations naming
    Python objects (callables, samplers, trials) cannot be written in a spec."""
    ann = ann.replace("typing.", "").replace("<class '", "").replace("'>", "").strip()
    if ann in ("", "inspect._empty", "_empty", "Any"):
        return None
    members = _split_union(ann[9:-1] if ann.startswith("Optional[") and ann.endswith("]") else ann)
    words = []
    for m in members:
        head = m.split("[", 1)[0].strip()
        if head in _SIMPLE:
            words.append(_WORDS[head])
            if isinstance(value, bool) and head != "bool":
                continue
            if isinstance(value, _SIMPLE[head]):
                return None
        elif head in ("list", "Sequence", "tuple"):
            words.append("a list")
            if isinstance(value, list):
                return None
        elif head in ("dict", "Mapping"):
            words.append("a table")
            if isinstance(value, dict):
                return None
        elif head == "Literal":
            words.append("one of " + m[8:-1])
            if repr(value) in [x.strip() for x in m[8:-1].split(",")]:
                return None
    if not [w for w in words if w != "none"]:
        return f"a Python object ({ann}), which a spec cannot hold"
    return " or ".join(dict.fromkeys(words))


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


def step_decimals(*numbers: float) -> int:
    """Decimal places of the numbers as written (0.05 -> 2, 1e-05 -> 5, 60 -> 0), at most 15."""
    out = 0
    for x in numbers:
        if x is None or not math.isfinite(float(x)):
            continue
        exp = Decimal(repr(float(x))).normalize().as_tuple().exponent
        out = max(out, -int(exp) if isinstance(exp, int) else 0)
    return min(out, 15)


def round_to_step(value: float, low: float, step: float, high: float | None = None) -> float:
    """``value`` on the grid ``low + k * step``, written with the grid's decimals: 0.35 + 2 * 0.05 is 0.45, not
    0.44999999999999996 (the value Optuna's step arithmetic gives)."""
    k = round((float(value) - low) / step)
    v = round(low + k * step, step_decimals(low, step, *(() if high is None else (high,))))
    return v


def trial_seed(seed: int, index: int) -> int:
    """The seed of a sampler's random draws for a study's ``index``-th trial (``StepRounding``): a function of
    (seed, index) only, so the draws of trial ``index`` do not depend on what this process drew before it."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(index)]).generate_state(1)[0])


def _reseed(obj: Any, seed: int, seen: set[int]) -> None:
    """Seed every random state of an Optuna sampler (its own, its sub-samplers' and strategies', e.g. TPE's
    random sampler for the startup trials, NSGA-II's child generation) with ``seed``, as the sampler's constructor
    does with its ``seed`` argument. Optuna's samplers keep ``LazyRandomState`` objects (``.rng``, a numpy
    ``RandomState``) with no public way to seed them again but ``reseed_rng()``, which draws a fresh seed."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for v in vars(obj).values():
        if isinstance(v, np.random.RandomState):
            v.seed(seed)
        elif isinstance(getattr(type(v), "rng", None), property):  # optuna.samplers._lazy_random_state.LazyRandomState
            v.rng.seed(seed)
        elif type(v).__module__.startswith("optuna.") and hasattr(v, "__dict__"):
            _reseed(v, seed, seen)


# Study-level counters a sampler keeps in the study's system attributes: QMCSampler's index into its sequence
# ("qmc:<hash>" -> the last sample id). A single-writer study runs on an in-process copy of the stored study
# (run._optimize_mirrored), whose study attributes start empty, so each trial carries the counters as they stood
# when it finished, and the next trial restores them from the latest trial before it.
_CARRIED = ("qmc:",)
_COUNTERS = "accumopt:sampler_counters"


class StepRounding(optuna.samplers.BaseSampler):
    """A sampler whose float values of a stepped distribution are written with the step's decimals (0.45, never
    0.44999999999999996), so the trial, Optuna's stored params and the effective configuration hold the same
    clean number. Everything else is the wrapped sampler's (``base``).

    ``seed`` (not None): before each trial every random state of ``base`` is seeded with ``trial_seed(seed, k)``,
    ``k`` the trial's number less the earlier trials ``uncounted`` says were lost (a trial a killed process left
    RUNNING, failed on resume: its retry or the next trial takes its place). So the k-th trial's draw depends
    only on (seed, k, the trials before it): a study killed at any point and resumed draws the trials an
    uninterrupted run draws. (GridSampler shuffles its grid once with ``seed``; QMCSampler's scrambling seed stays
    ``seed``: only their random choices are reseeded. CmaEsSampler keeps its state in the trials' attributes.)
    """

    def __init__(self, base: optuna.samplers.BaseSampler, seed: int | None = None,
                 uncounted: Callable[[FrozenTrial], bool] | None = None) -> None:
        self.base = base
        self.seed = seed
        self.uncounted = uncounted
        self.carry = isinstance(base, optuna.samplers.QMCSampler)

    def __getattr__(self, name: str) -> Any:  # the wrapped sampler's own attributes (e.g. GridSampler.is_exhausted)
        if name in ("base", "seed", "uncounted", "carry"):
            raise AttributeError(name)
        return getattr(self.base, name)

    @staticmethod
    def _clean(dist: BaseDistribution, value: Any) -> Any:
        if isinstance(dist, FloatDistribution) and dist.step is not None and isinstance(value, float):
            v = round_to_step(value, dist.low, dist.step, dist.high)
            return v if dist.low <= v <= dist.high else value
        return value

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: Any, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        out = self.base.sample_relative(study, trial, search_space)
        return {k: self._clean(search_space[k], v) if k in search_space else v for k, v in out.items()}

    def sample_independent(self, study: optuna.Study, trial: Any, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._clean(param_distribution,
                           self.base.sample_independent(study, trial, param_name, param_distribution))

    def trial_index(self, study: optuna.Study, trial: FrozenTrial) -> int:
        """``trial``'s number less the earlier trials ``uncounted`` (read from the storage: a pruner may hand the
        sampler a filtered view of the study, e.g. Hyperband's bracket)."""
        if self.uncounted is None:
            return trial.number
        failed = study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.FAIL,))
        return trial.number - sum(1 for t in failed if t.number < trial.number and self.uncounted(t))

    def before_trial(self, study: optuna.Study, trial: Any) -> None:
        if self.carry:
            self._restore_counters(study, trial)
        if self.seed is not None:
            _reseed(self.base, trial_seed(self.seed, self.trial_index(study, trial)), set())
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        self.base.after_trial(study, trial, state, values)
        if self.carry:  # the trial is still RUNNING here: its attributes can be written
            attrs = study._storage.get_study_system_attrs(study._study_id)
            counters = {k: v for k, v in attrs.items() if k.startswith(_CARRIED)}
            if counters:
                study._storage.set_trial_system_attr(trial._trial_id, _COUNTERS, counters)

    def _restore_counters(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """The counters as the latest earlier trial carrying them left them, where the study holds less."""
        earlier = [t for t in study._storage.get_all_trials(study._study_id, deepcopy=False)
                   if t.number < trial.number and _COUNTERS in t.system_attrs]
        if not earlier:
            return
        attrs = study._storage.get_study_system_attrs(study._study_id)
        for k, v in max(earlier, key=lambda t: t.number).system_attrs[_COUNTERS].items():
            if not isinstance(attrs.get(k), int) or attrs[k] < v:
                study._storage.set_study_system_attr(study._study_id, k, v)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


def _lookup(reg: dict[str, _Entry], name: str, what: str) -> _Entry:
    try:
        return reg[name]
    except KeyError:
        raise SpecError(f"{what}.name", f"must be one of {', '.join(reg)}, got {name!r}") from None


def build_sampler(name: str, seed: int | None, options: Mapping[str, Any],
                  search_space: dict | None = None,
                  uncounted: Callable[[FrozenTrial], bool] | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``name`` with the spec's ``options`` (and ``seed`` when it takes one); ``grid`` needs
    ``search_space``. Options the class rejects are a SpecError naming the sampler. A seeded sampler seeds its
    random draws before each trial from (``seed``, the trial's index; ``uncounted``: the trials the index leaves
    out), see ``StepRounding``."""
    e = _lookup(SAMPLERS, name, "sampler")
    kw = dict(options)
    if name == "grid":
        if search_space is None:
            raise SpecError("sampler", "'grid' needs a search space (parameter name -> list of values)")
        kw["search_space"] = search_space
    if e.seeded:
        kw["seed"] = seed
    try:
        return StepRounding(e.factory(**kw), seed if e.seeded else None, uncounted)
    except (TypeError, ValueError) as ex:
        raise SpecError("sampler", f"{name!r} rejected its options {dict(options)}: {ex}") from None


def _suggest(trial: optuna.trial.Trial, name: str, d: BaseDistribution) -> Any:
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(name, list(d.choices))
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    raise SpecError("space", f"unsupported distribution {d!r}")


def dry_run(part: str, sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner,
            distributions: Mapping[str, BaseDistribution], directions: list[str], steps: int,
            n_trials: int = 4) -> None:
    """Run ``n_trials`` trials of a stand-in objective (a value per step, pruned when the pruner says) through
    ``sampler`` and ``pruner`` on an in-memory study. An option value the ``part`` under test ("sampler" or
    "pruner") accepts when built but fails on when used (``HyperbandPruner(min_resource=0)``: a division by
    zero at the first report) is a SpecError now, not a failing run."""
    def objective(trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        x = float(len([_suggest(trial, name, d) for name, d in distributions.items()]))
        for step in range(steps if len(directions) == 1 else 0):
            trial.report(x * step + trial.number, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(trial.number) if len(directions) == 1 else tuple(float(trial.number) for _ in directions)

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the stand-in trials are not the user's: neither their INFO
    # lines nor Optuna's warning with the traceback of one that fails (the SpecError below says it in one line)
    try:
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler, pruner=pruner,
                                    directions=directions)
        study.optimize(objective, n_trials=n_trials, catch=())
    except SpecError:
        raise
    except ImportError as e:  # an optional package the Optuna class imports when it first samples (cmaes, torch)
        name = getattr(e, "name", None) or str(e)
        raise SpecError(part, f"needs the Python package {name!r}, which is not installed (pip install {name}): "
                              f"{type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of the sampler or pruner on this stand-in is the spec's
        raise SpecError(part, f"its options fail when used: {type(e).__name__}: {e}") from None
    finally:
        optuna.logging.set_verbosity(verbosity)


def build_pruner(name: str, options: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """The Optuna pruner ``name`` with the spec's ``options``; options it rejects are a SpecError."""
    e = _lookup(PRUNERS, name, "pruner")
    try:
        return e.factory(**dict(options))
    except (TypeError, ValueError) as ex:
        raise SpecError("pruner", f"{name!r} rejected its options {dict(options)}: {ex}") from None
