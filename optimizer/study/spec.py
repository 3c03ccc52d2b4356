"""Study specs: declarative TOML -> frozen, validated dataclasses. A bad spec fails here, before any trial runs.

Every error names the key path and the rule: ``studies/x.toml: [space.z_window.choices] must be a non-empty list``.
Sections: [study], [data], [data.costs], [space], [cv], [objective], [sampler], [pruner], [run], [walkforward],
[seed_from]. The full reference is the README's "Study specs" section; the parameters a [space] may declare and
the rule each value must meet come from the registry, ``optimizer.params``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import hashlib
import inspect
import json
import math
import re
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from objectives import make_objective, resolve_objective
from optimizer import engine  # engine.metrics.METRIC_KEYS when an objective is checked (not at import: no kernels)
from optimizer.data.universe import is_listed, resolve_universe
from optimizer.errors import ParameterError, SpecError
from optimizer.params import (
    GATES, PARAMS, REGIME_SUFFIXES, SPACE_ONLY, SPACE_PARAMS, WEIGHT_PRESETS, default_space, parse_exit,
)
from optimizer.study.registry import (
    PRUNERS, SAMPLERS, annotation_text, build_pruner, build_sampler, dry_run, takes_integer_only, whole_option,
)
from optimizer.study.splits import CombinatorialPurgedCV, short_train_rule, train_after_purge

__all__ = [
    "StudySpec", "DataSpec", "ParamSpec", "CVSpec", "ObjectiveSpec", "SamplerSpec", "PrunerSpec", "RunSpec",
    "WalkForwardSpec", "SeedFromSpec", "load_spec", "parse_spec", "check_study_name", "CV_MODES", "REGIMES",
    "WEIGHT_PRESETS", "DEFAULT_SPACE", "STUDY_NAME_RULE", "aggregate_folds_rule",
]

# rolling is not a mode: the rule fits nothing on the sessions before a fold, so it would score the same folds
CV_MODES = ("expanding", "cpcv")
# A study name is also a folder name (walk-forward runs, reports, exports): nothing that could leave a folder.
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}")
STUDY_NAME_RULE = "1-100 letters, digits, '.', '_', '+', '=' or '-', starting with a letter or digit"

REGIMES = ("ALL", "RISK_ON", "RISK_OFF", "TRANSITIONAL", "BULL_LOW_VOL", "BULL_HIGH_VOL", "BEAR_LOW_VOL", "BEAR_HIGH_VOL")
AGGREGATES = ("mean", "median", "mean_minus_std")
MAX_STEPS = 1_000_000  # (high - low) / step of a numeric range with a step: its values must fit in memory as a grid
MAX_GRID = 1_000_000  # configurations of a grid study (Optuna's GridSampler holds them all: ~130 MB at this size)

# The design's parameter space (used when a spec has no [space] table): the registry's ``search`` entries.
DEFAULT_SPACE: dict[str, Any] = default_space()


def _err(key: str, reason: str) -> SpecError:
    return SpecError(key, reason)


_MISSING = object()


# What a spec's hash leaves out: what does not change what a trial computes. [run] and [walkforward] (counts, the
# storage, the study's name in storage; the walk-forward's own settings are checked by its run key), [study] name
# and description, and [data].database: where the store lives (the data a study sees is checked by its fingerprint).
_UNHASHED = (("run",), ("walkforward",), ("study", "name"), ("study", "description"), ("data", "database"))
# What the legacy hash left out ([study].name and [data].database were in it): the hash stored on the studies and
# walk-forward runs made before 2026-12-04 (same version 0.1.0); ``StudySpec.matches_stored`` still accepts it.
_LEGACY_UNHASHED = (("run",), ("walkforward",), ("study", "description"))


def _hashed_doc(source: str, legacy: bool = False) -> dict[str, Any]:
    """The part of a spec's text that ``StudySpec.spec_hash`` covers: all of it but the keys in ``_UNHASHED``; a
    [study] or [data] table left empty is dropped (the same as not writing it). ``legacy``: what the legacy hash
    covered (all but ``_LEGACY_UNHASHED``, empty tables kept)."""
    doc = tomllib.loads(source) if source else {}
    for path in _LEGACY_UNHASHED if legacy else _UNHASHED:
        table = doc.get(path[0]) if len(path) == 2 else doc
        if isinstance(table, dict):
            table.pop(path[-1], None)
    if not legacy:
        for k in ("study", "data"):
            if doc.get(k) == {}:
                del doc[k]
    return doc


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _drawn_order(doc: Mapping[str, Any]) -> list[str]:
    """The [space] entries a trial asks the sampler for (every table but ``type = "fixed"``), in the order the spec
    declares them: the order of a trial's ``suggest_*`` calls (``space.suggest``), so of which random draw each
    parameter gets. The same entries in another order draw other trials from the same seed (a seeded random or TPE
    sampler hands its draws out in call order), so the order is part of what ``spec_hash`` covers; the digest
    above sorts the keys and cannot see it."""
    space = doc.get("space")
    if not isinstance(space, dict):
        return []
    return [k for k, v in space.items() if isinstance(v, dict) and v.get("type") != "fixed"]


def _spec_digest(doc: dict[str, Any]) -> str:
    """``StudySpec.spec_hash`` of a hashed document (``_hashed_doc``): its values and the order of its drawn
    [space] entries."""
    return _digest([doc, _drawn_order(doc)])


def _text_hashes(text: str) -> tuple[str, ...] | None:
    """(hash, then the hashes of earlier rules) of a spec text, None when it is not TOML: the hash of its text as
    written (an integer written 20.0 not read as 20: ``_whole_doc``), which studies stored until the integer rule
    reached the hash (mend18, 2026-12-05); the unordered hash, which studies stored before 2026-12-05 (the values
    without the drawn [space] entries' order: ``_drawn_order``); the legacy hash."""
    try:
        doc = _hashed_doc(text)
        return (_spec_digest(_whole_doc(doc)), _spec_digest(doc), _digest(doc),
                _digest(_hashed_doc(text, legacy=True)))
    except tomllib.TOMLDecodeError:
        return None


def _flat(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A TOML document's values by dotted key (tables flattened, arrays kept as values)."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def check_study_name(name: Any, key: str = "study.name") -> str:
    """``name`` when it is a valid study name (``STUDY_NAME_RULE``), else a SpecError naming ``key``."""
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        raise _err(key, f"must be {STUDY_NAME_RULE}, got {str(name)[:120]!r}")
    return name


def _check_keys(d: Mapping, allowed: tuple[str, ...] | set[str], path: str) -> None:
    for k in d:
        if k not in allowed:
            raise _err(f"{path}.{k}" if path else k, f"unknown key; valid keys: {', '.join(sorted(allowed))}")


def _typed(d: Mapping, key: str, types, path: str, default=None, required: bool = False):
    if key not in d:
        if required:
            raise _err(f"{path}.{key}", "is required")
        return default
    v = d[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _err(f"{path}.{key}", f"must be {_tname(types)}, got {v!r}")
    if types is int or types == (int,):  # an integer key: 4.0 is 4, 4.5 is refused (``whole``)
        v = whole(v)
    if not isinstance(v, types):
        raise _err(f"{path}.{key}", f"must be {_tname(types)}, got {type(v).__name__} {v!r}")
    return v


def whole(v: Any) -> Any:
    """The spec's one rule for a key or parameter that takes an integer: a float with no fraction is that integer
    (``n_trials = 4.0`` is 4, ``[space] time_stop = 20.0`` is 20), everywhere ints are read; any other value is
    returned as it is, for the key's own check to refuse (20.5: "must be an integer"). The spec hash is of the text,
    so a spec that loaded before keeps its hash."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _objective_options(cls: type, oname: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """[objective] options under the integer rule (``whole``): an option the objective's constructor annotates as
    an integer (``window: int``) takes 5.0 as 5 and refuses 5.5 naming its key, as every integer key does (the
    constructor would take either float as it is)."""
    params = inspect.signature(cls).parameters
    out = dict(options)
    for k, v in options.items():
        if k not in params or not isinstance(v, float):
            continue  # an unknown option is refused by make_objective, naming the valid ones
        if takes_integer_only(annotation_text(params[k])):
            if not v.is_integer():
                raise _err(f"objective.options.{k}", f"must be an integer (an option of objective {oname!r}), got "
                                                     f"{k}={v!r}")
            out[k] = whole(v)
    return out


def _whole_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A spec document (``_hashed_doc``) with every integer setting written as a float with no fraction (20.0) as
    that integer, as the parser reads it (``whole``), so that ``time_stop = 20.0`` and ``time_stop = 20`` hash
    alike: [space] entries of integer parameters (a value, choices, low / high / step, and ``when`` values naming
    one), the sampler's and pruner's options that take an integer (the registry's rule), [objective] options an
    objective annotates as integers, and every number of [data], [data.costs], [cv], [objective], [sampler] seed
    and [seed_from] (their other numbers are read as floats, so 1 and 1.0 compute alike there too). A document
    that breaks a rule (it never parsed) is returned as it is."""
    out = copy.deepcopy(doc)

    def whole_param(name: str, v: Any) -> Any:
        entry = PARAMS.get(name) or SPACE_ONLY.get(name)
        if entry is None or entry.type is not int:
            return v
        return [whole(x) for x in v] if isinstance(v, list) else whole(v)

    space = out.get("space")
    if isinstance(space, dict):
        for name, raw in space.items():
            if not isinstance(raw, dict):
                space[name] = whole_param(name, raw)
                continue
            for k in ("value", "choices", "low", "high", "step"):
                if k in raw and (k != "step" or raw.get("type") == "int"):
                    raw[k] = whole_param(name, raw[k])
            if isinstance(raw.get("when"), dict):
                raw["when"] = {wk: whole_param(wk, wv) for wk, wv in raw["when"].items()}
    for sec, keys in (("data", None), ("cv", None), ("objective", None), ("seed_from", None), ("sampler", ("seed",))):
        table = out.get(sec)
        if isinstance(table, dict):
            for k, v in table.items():
                if keys is None or k in keys:
                    table[k] = whole(v)
            if sec == "data" and isinstance(table.get("costs"), dict):
                table["costs"] = {k: whole(v) for k, v in table["costs"].items()}
    for sec, registry in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        table = out.get(sec)
        entry = registry.get(table.get("name", "tpe" if sec == "sampler" else "median")) \
            if isinstance(table, dict) and isinstance(table.get("name", ""), str) else None
        if entry is not None:
            params = inspect.signature(entry.factory).parameters
            for k, v in table.items():
                if k not in ("name", "seed") and k in params:
                    table[k] = whole_option(annotation_text(params[k]), v)
    obj = out.get("objective")
    if isinstance(obj, dict) and isinstance(obj.get("options"), dict):
        try:
            cls = resolve_objective(obj.get("name", "composite_rank"))
            obj["options"] = _objective_options(cls, str(obj.get("name")), obj["options"])
        except SpecError:
            pass
    return out


def _whole_values(name: str, p: ParamSpec) -> ParamSpec:
    """``p`` with its fixed value or choices as integers (``whole``) when ``name`` is an integer parameter."""
    entry = PARAMS.get(name) or SPACE_ONLY.get(name)
    if entry is None or entry.type is not int:
        return p
    return replace(p, value=whole(p.value), choices=tuple(whole(c) for c in p.choices))


def _tname(types) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    return " or ".join({int: "an integer", float: "a number", str: "a string", bool: "a boolean", list: "a list", dict: "a table"}.get(t, t.__name__) for t in ts)


@dataclass(frozen=True)
class ParamSpec:
    """One search-space entry: categorical / int / float (step or log) / fixed, optionally conditional."""

    name: str
    kind: str  # categorical | int | float | fixed
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    value: Any = None
    when: tuple[tuple[str, tuple], ...] = ()

    def grid_values(self) -> list:
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "fixed":
            return [self.value]
        if self.step is None:
            raise _err(f"space.{self.name}", "grid sampling needs a step (or choices) for every numeric parameter")
        vals, x, i = [], self.low, 0
        while x <= self.high + 1e-9:
            vals.append(int(round(x)) if self.kind == "int" else round(x, 10))
            i += 1
            x = self.low + i * self.step
        return vals

    def distribution(self) -> optuna.distributions.BaseDistribution | None:
        """The Optuna distribution this entry is searched with (None for a fixed value)."""
        if self.kind == "categorical":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), step=int(self.step or 1),
                                                       log=self.log)
        if self.kind == "float":
            return optuna.distributions.FloatDistribution(float(self.low), float(self.high), step=self.step,
                                                         log=self.log)
        return None

    def values_bound(self) -> tuple[float, float] | None:
        """(min, max) of the numeric values this parameter can take (None for non-numeric categoricals)."""
        if self.kind in ("int", "float"):
            return float(self.low), float(self.high)
        vals = list(self.choices) if self.kind == "categorical" else [self.value]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return (min(nums), max(nums)) if nums and len(nums) == len(vals) else None


def _show(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) else str(v)


def _can_take(p: ParamSpec) -> list[Any] | None:
    """The values entry ``p`` can take (None for a numeric range)."""
    if p.kind == "categorical":
        return list(p.choices)
    if p.kind == "fixed":
        return [p.value]
    return None


def _parse_param(name: str, raw: Any, path: str, earlier_specs: list[ParamSpec]) -> ParamSpec:
    key = f"{path}.{name}"
    earlier = [p.name for p in earlier_specs]
    if name not in SPACE_PARAMS:
        raise _err(key, f"unknown parameter; valid: {', '.join(SPACE_PARAMS)}")
    if not isinstance(raw, dict):
        if isinstance(raw, (int, float, str, bool)):
            return _whole_values(name, ParamSpec(name, "fixed", value=raw))
        raise _err(key, f"must be a value or a table with type = categorical|int|float, got {raw!r}")
    _check_keys(raw, ("type", "choices", "low", "high", "step", "log", "value", "when"), key)
    kind = _typed(raw, "type", str, key, required=True)
    when_raw = _typed(raw, "when", dict, key, default={})
    when = []
    for wk, wv in when_raw.items():
        if wk not in earlier:
            raise _err(f"{key}.when.{wk}", f"must name a parameter declared before {name!r}; declared so far: {', '.join(earlier) or 'none'}")
        if isinstance(wv, list) and not wv:
            raise _err(f"{key}.when.{wk}", f"must name at least one value of {wk} (an empty list never holds, so "
                                           f"{name} would never be searched), got []")
        when.append((wk, tuple(wv) if isinstance(wv, list) else (wv,)))
    when_t = tuple(when)
    for wk, allowed in when_t:
        ref = next(p for p in earlier_specs if p.name == wk)
        can = _can_take(ref)
        for a in allowed:
            if can is not None and not any(a == c and isinstance(a, bool) == isinstance(c, bool) for c in can):
                raise _err(f"{key}.when.{wk}", f"must be among the values {wk} can take "
                                               f"({', '.join(_show(c) for c in can)}), got {a!r}")
            if can is None and not (isinstance(a, (int, float)) and not isinstance(a, bool)
                                    and ref.low <= a <= ref.high):
                raise _err(f"{key}.when.{wk}", f"must be a number in [{ref.low}, {ref.high}] ({wk}'s range), got {a!r}")
            if can is None and ref.kind == "float" and ref.step is None and ref.low != ref.high:
                raise _err(f"{key}.when.{wk}", f"cannot hold: {wk} is a continuous range [{ref.low}, {ref.high}] "
                                               f"(no step), which draws {a!r} only by chance; give {wk} a step or "
                                               f"choices, got {a!r}")
            if can is None and a not in (ref.grid_values() if ref.step is not None
                                         else range(int(ref.low), int(ref.high) + 1) if ref.kind == "int" else [a]):
                raise _err(f"{key}.when.{wk}", f"must be a value {wk} can take (low + k * step from {ref.low} "
                                               f"to {ref.high}, step {ref.step or 1}), got {a!r}")
    if kind == "categorical":
        ch = _typed(raw, "choices", list, key, required=True)
        if not ch:
            raise _err(f"{key}.choices", "must be a non-empty list")
        if len(set(map(repr, ch))) != len(ch):
            raise _err(f"{key}.choices", f"must not repeat values, got {ch!r}")
        whole_ch = list(_whole_values(name, ParamSpec(name, "categorical", choices=tuple(ch))).choices)
        if len(set(map(repr, whole_ch))) == len(ch):  # [20, 20.0] stays as written: ``_check_choices`` refuses
            ch = whole_ch  # it (a stored spec reads back as its trials ran)
        return ParamSpec(name, "categorical", choices=tuple(ch), when=when_t)
    if kind in ("int", "float"):
        num = int if kind == "int" else (int, float)
        lo = _typed(raw, "low", num, key, required=True)
        hi = _typed(raw, "high", num, key, required=True)
        step = _typed(raw, "step", num, key)
        log = _typed(raw, "log", bool, key, default=False)
        for bk, bv in (("low", lo), ("high", hi), ("step", step)):
            if bv is not None and not math.isfinite(bv):
                raise _err(f"{key}.{bk}", f"must be a finite number, got {bk}={bv}")
        if lo > hi:
            raise _err(f"{key}.low", f"must be <= high={hi}, got low={lo}")
        if step is not None and step <= 0:
            raise _err(f"{key}.step", f"must be > 0, got step={step}")
        if step is not None and (hi - lo) / step > MAX_STEPS:  # a grid of them would not fit in memory
            raise _err(f"{key}.step", f"must leave at most {MAX_STEPS:,} steps from low to high (step >= "
                                      f"{(hi - lo) / MAX_STEPS:.3g}), got step={step}")
        if log and (lo <= 0 or step is not None):
            raise _err(f"{key}.log", f"log scale needs low > 0 and no step, got low={lo}, step={step}")
        return ParamSpec(name, kind, low=lo, high=hi, step=step, log=log, when=when_t)
    if kind == "fixed":
        if "value" not in raw:
            raise _err(f"{key}.value", "is required for type = fixed")
        return _whole_values(name, ParamSpec(name, "fixed", value=raw["value"], when=when_t))
    raise _err(f"{key}.type", f"must be one of categorical, int, float, fixed, got {kind!r}")


@dataclass(frozen=True)
class DataSpec:
    database: str | None = None
    universe: Any = "tier1+3"
    start: str | None = None
    end: str | None = None
    regime: str = "ALL"
    commission_bps: float = 1.0
    slippage_bps: float = 5.0
    reserve_fraction: float = 0.2
    min_periods: int | None = None


@dataclass(frozen=True)
class CVSpec:
    """[cv]: the folds a study's objective scores. ``expanding`` / ``rolling``: ``n_splits`` purged forward folds;
    ``cpcv``: combinatorial purged CV (``study.splits.CombinatorialPurgedCV``): the span cut into ``n_groups``
    groups, each scored as one fold, C(n_groups, n_test_groups) train/test splits of them for PBO and its paths."""

    mode: str = "expanding"
    n_splits: int = 4
    test_size: int | None = None
    purge: int | None = None  # None = auto: longest holding period the space allows
    embargo: int | None = None  # None = auto: largest z-window the space allows
    min_train_size: int = 0
    max_train_size: int | None = None
    n_groups: int = 6          # cpcv only
    n_test_groups: int = 2     # cpcv only


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str = "composite_rank"
    directions: tuple[str, ...] = ("maximize",)
    aggregate: str = "mean"
    k: float = 1.0
    min_trades: int = 5
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "tpe"
    seed: int | None = 42
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    name: str = "median"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    n_trials: int = 100
    timeout: float | None = None
    storage: str | None = None
    study_name: str | None = None


@dataclass(frozen=True)
class WalkForwardSpec:
    train: int = 6
    test: int = 2
    step: int | None = None
    unit: str = "months"
    purge: int | None = None
    anchored: bool = False
    select: str = "best"  # best | robust
    top_k: int = 5
    n_trials: int | None = None
    n_splits: int = 2          # inner purged CV of each window's study
    embargo: int = 0           # inner CV embargo (features are trailing and nothing is fitted)


@dataclass(frozen=True)
class SeedFromSpec:
    study: str
    top: int = 5
    weight_radius: float = 0.05


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str
    data: DataSpec
    space: tuple[ParamSpec, ...]
    cv: CVSpec
    objective: ObjectiveSpec
    sampler: SamplerSpec
    pruner: PrunerSpec
    run: RunSpec
    walkforward: WalkForwardSpec
    seed_from: SeedFromSpec | None
    source: str = ""
    path: str | None = None

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.space]

    def sets(self, section: str, key: str) -> bool:
        """Whether the spec's text writes ``[section] key`` (False: the key is left to its default)."""
        table = (tomllib.loads(self.source) if self.source else {}).get(section)
        return isinstance(table, dict) and key in table

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.space if p.name == name), None)

    @property
    def spec_hash(self) -> str:
        """Hash of everything that changes what a trial computes: the spec's text but [run], [walkforward],
        [study] name and description and [data].database (``_UNHASHED``), an integer written 20.0 read as 20
        (``_whole_doc``)."""
        return _spec_digest(_whole_doc(_hashed_doc(self.source)))

    def matches_stored(self, stored_hash: str | None, stored_text: str | None = None) -> bool:
        """Whether a study (or walk-forward run) stored with ``stored_hash`` (its ``spec_hash``) and ``stored_text``
        (its ``spec_text``, when stored) was made from a spec that computes what this one does: the one place
        that decides whether a stored study may be resumed with this spec. True when ``stored_hash`` is this
        spec's hash, or is a hash of an earlier rule (the hash of the text as written, which told ``time_stop = 20.0``
        from ``20``; the unordered hash of before 2026-12-05, blind to the order
        of the drawn [space] entries; the legacy hash, ``_LEGACY_UNHASHED``, which also covered [study].name and
        [data].database) of the stored text whose hash now is this spec's; or, for a record that stores no
        readable text, one of those earlier hashes of this spec's own text. False for a missing hash. (With a
        text stored its own hash decides: an earlier hash of this spec's text would also match a stored text
        that declares the [space] entries in another order, whose trials draw other values.)"""
        if stored_hash is None:
            return False
        if stored_hash == self.spec_hash:
            return True
        hashes = _text_hashes(stored_text) if stored_text else None
        if hashes is not None:
            return stored_hash in hashes[1:] and hashes[0] == self.spec_hash
        return stored_hash in (_text_hashes(self.source) or ())[1:]

    def differences(self, stored_text: str | None, limit: int = 3) -> str | None:
        """What the spec text a study was made from (``stored_text``, its ``spec_text``) sets differently from this
        spec among what ``spec_hash`` covers, as ``[key] old -> new`` items (at most ``limit``, then how many
        more); None when the stored text is missing or unreadable, or nothing the hash covers differs."""
        if not stored_text:
            return None
        try:
            old = _flat(_whole_doc(_hashed_doc(stored_text)))
        except tomllib.TOMLDecodeError:
            return None
        new = _flat(_whole_doc(_hashed_doc(self.source)))
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k, _MISSING) != new.get(k, _MISSING))
        show = lambda v: "(not set)" if v is _MISSING else _short(json.dumps(v, default=str))  # noqa: E731
        items = [f"[{k}] {show(old.get(k, _MISSING))} -> {show(new.get(k, _MISSING))}" for k in keys[:limit]]
        was, now = _drawn_order(_hashed_doc(stored_text)), _drawn_order(_hashed_doc(self.source))
        if not keys and was != now:  # the same values, drawn in another order
            keys = ["space order"]
            items = [f"[space] order {_short(', '.join(was), 60)} -> {_short(', '.join(now), 60)} (the order a "
                     "trial draws them in)"]
        if not keys:
            return None
        more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
        return ", ".join(items) + more

    def unbounded_exits(self) -> list[str]:
        """Exit names the space declares whose hold nothing bounds: the distribution and score-decay exits
        (first_dist, 2x_consec_dist, score_decay) while time_stop is not always set. Their trades can outlive any
        derived purge, so such a spec must state ``[cv] purge`` (README "Study specs", ``[cv]``). A space that
        declares no exit (the registry default first_dist) keeps the derived purge: the longest bounded hold, or
        20 sessions."""
        ts = self.param("time_stop")
        if ts is not None and not ts.when and ts.values_bound() is not None:
            return []
        exit_p = self.param("exit")
        if exit_p is None:
            names = []
        elif exit_p.kind in ("categorical", "fixed"):
            names = [str(v) for v in exit_p.grid_values()]
        else:
            names = []
        return [n for n in names if parse_exit(n)[0] in ("first_dist", "2x_consec_dist", "score_decay")]

    def max_hold(self) -> int:
        """Longest holding period (sessions) the space allows: from fixed/hybrid exits, max_days and time_stop;
        with unbounded exits (``unbounded_exits``) the explicit ``[cv] purge`` is the longest hold a fold counts."""
        best = self.cv.purge if self.cv.purge is not None and self.unbounded_exits() else 0
        exit_p = self.param("exit")
        names = [str(v) for v in (exit_p.grid_values() if exit_p and exit_p.kind in ("categorical", "fixed") else [])]
        for n in names:
            _, hold_days, max_days = parse_exit(n)
            best = max(best, hold_days or 0, max_days or 0)
        for pname in ("hold_days", "max_days", "time_stop"):
            p = self.param(pname)
            if p is not None and p.values_bound():
                best = max(best, int(p.values_bound()[1]))
        return best or 20

    def max_z_window(self) -> int:
        p = self.param("z_window")
        b = p.values_bound() if p else None
        return int(b[1]) if b else 20

    def purge(self) -> int:
        return self.cv.purge if self.cv.purge is not None else self.max_hold()

    def embargo(self) -> int:
        return self.cv.embargo if self.cv.embargo is not None else self.max_z_window()


def _date(d: Mapping, key: str) -> str | None:
    """[data].<key> as a normalized ISO date string: a TOML date or a 'YYYY-MM-DD' string (nothing else)."""
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, _dt.date) and not isinstance(v, _dt.datetime):
        return v.isoformat()
    if isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        try:
            return _dt.date.fromisoformat(v).isoformat()
        except ValueError:
            pass
    raise _err(f"data.{key}", f"must be a date (YYYY-MM-DD), got {v!r}")


def _section(doc: Mapping, name: str) -> dict:
    v = doc.get(name, {})
    if not isinstance(v, dict):
        raise _err(name, f"must be a table, got {type(v).__name__}")
    return v


def walkforward_step_rule(test: int, step: int) -> str:
    """Why ``[walkforward] step`` below ``test`` is refused (by the spec loader and by a walk-forward run)."""
    return (f"must be >= test ({test}): test windows that overlap would trade their common sessions twice (two "
            f"windows' winners) and the verdict would count those trades twice, got step={step}")


def aggregate_folds_rule(aggregate: str, n_folds: int) -> str | None:
    """Why ``[objective] aggregate`` would change nothing on ``n_folds`` fold values (None when it acts): the median
    of two values is their mean (of one, the value), and the std of one value is 0, so mean_minus_std is its mean.
    The spec loader refuses it for the [cv] folds and a walk-forward for its windows' inner folds."""
    if aggregate == "median" and n_folds <= 2:
        return (f"median of {n_folds} fold value{'s' if n_folds == 2 else ''} is "
                f"{'their mean' if n_folds == 2 else 'that value'}, the same as aggregate = \"mean\"")
    if aggregate == "mean_minus_std" and n_folds == 1:
        return "mean_minus_std of 1 fold value is that value (the std of one value is 0): k would weigh nothing"
    return None


def parse_spec(text: str, path: str | None = None, stored: bool = False) -> StudySpec:
    """Parse and validate a spec's TOML text. Raises SpecError naming the key path. ``stored``: the text stored
    with an existing study (a study made before ``[cv] purge`` was required for exits without a time limit keeps
    reading back with the purge it ran with: the longest bounded hold, or 20; one that declared a cost both in
    [data.costs] and [space] keeps reading back, its trials having run with the [space] values, one that gave
    [objective] k with another aggregate than mean_minus_std, which ignores it, and one that gave [walkforward]
    top_k with select = "best", which ignores it)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("toml", f"is not valid TOML: {e}", file=path) from None
    except RecursionError:
        raise SpecError("toml", "nests arrays or tables too deeply to be a study spec", file=path) from None
    try:
        spec = _parse(doc, text, path)
        costs = doc.get("data", {}).get("costs", {})
        both = [k for k in ("commission_bps", "slippage_bps") if k in costs and spec.param(k) is not None]
        if both and not stored:  # the [space] entry would win and the [data.costs] value be silently ignored
            raise _err(f"data.costs.{both[0]}", f"is also declared in [space.{both[0]}], whose values the trials "
                                                "run with; give it in one place only")
        if "k" in doc.get("objective", {}) and spec.objective.aggregate != "mean_minus_std" and not stored:
            raise _err("objective.k", f"weighs the std of aggregate = \"mean_minus_std\" only; with aggregate = "
                                      f"\"{spec.objective.aggregate}\" it would be ignored: remove it or set that aggregate")
        wf = spec.walkforward
        if "top_k" in doc.get("walkforward", {}) and wf.select != "robust" and not stored:
            raise _err("walkforward.top_k", f"is read by select = \"robust\" only (the top_k trials whose neighbours "
                                            f"it compares); with select = \"{wf.select}\" each window takes its best "
                                            f"trial and top_k would be ignored: remove it or set select = \"robust\"")
        folds_rule = aggregate_folds_rule(spec.objective.aggregate, spec.cv.n_splits) \
            if spec.cv.mode != "cpcv" and "aggregate" in doc.get("objective", {}) else None
        if folds_rule and not stored:
            raise _err("objective.aggregate", f"would change nothing with [cv] n_splits = {spec.cv.n_splits}: the "
                                              f"{folds_rule}; set n_splits >= {3 if spec.objective.aggregate == 'median' else 2} "
                                              f"or aggregate = \"mean\"")
        if "weight_radius" in (doc.get("seed_from") or {}) and not stored and not any(
                p.name in ("w_short", "w_lit", "w_price") and p.kind != "fixed" and not p.when for p in spec.space):
            raise _err("seed_from.weight_radius", "has no effect: it narrows the searched w_short / w_lit / w_price "
                                                  "(a range or choices, unconditional), and this [space] searches none "
                                                  "(fixed, a weights preset, conditional or left out); remove it, got "
                                                  f"weight_radius={spec.seed_from.weight_radius:g}")
        if wf.step is not None and wf.step < wf.test and not stored:
            raise _err("walkforward.step", walkforward_step_rule(wf.test, wf.step))
        wf_purge = wf.purge if wf.purge is not None else spec.max_hold()  # as the walk-forward run takes it
        left = train_after_purge(wf.train, wf.unit, wf_purge)
        if left is not None and left < 2 and not stored:
            raise _err("walkforward.train", short_train_rule(wf.train, wf.unit, wf_purge, left))
        if not stored:
            _check_choices(spec.space)
            start = spec.sampler.options.get("n_startup_trials")
            if isinstance(start, int) and not isinstance(start, bool) and start < 0:
                raise _err("sampler.n_startup_trials", f"must be >= 0 (the trials drawn at random before the "
                                                       f"{spec.sampler.name!r} model; Optuna would run a negative "
                                                       f"count as 0), got n_startup_trials={start}")
            _check_steps(spec.space)
            _check_exit_days(spec.space)
            _check_regime_entries(list(spec.space))
            _check_regime_filter(spec)
            _check_pooled_buy(spec)
            _check_gated(spec)
            _check_grid_trials(spec, doc)
            _check_pruner_reach(spec)
            _check_objective_metrics(spec)
            if spec.data.min_periods is not None and spec.data.min_periods >= spec.max_z_window():
                raise _err("data.min_periods", f"has no effect: a z-score over w sessions needs at most w values (the "
                                               f"default), and the largest z_window the space allows is "
                                               f"{spec.max_z_window()}; give a value below it, got "
                                               f"min_periods={spec.data.min_periods}")
        unbounded = spec.unbounded_exits()
        if unbounded and spec.cv.purge is None and not stored:
            raise _err("cv.purge", f"is required when an exit has no time limit (exit {', '.join(unbounded)} "
                                   "without time_stop): the derived purge cannot bound its trades; set it to the "
                                   "longest hold a fold should count (trades still open that many sessions after a "
                                   "fold are open at end), or declare time_stop")
        return spec
    except SpecError as e:
        if path and not e.file:
            raise SpecError(e.key, e.reason, file=path) from None
        raise


def _past_startup(sname: str, options: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """(options, trials) of a stand-in run that reaches the sampler's own model: n_startup_trials (TPE, GP,
    CMA-ES) cut to at most 3, and NSGA-II run one generation past its first population."""
    params = inspect.signature(SAMPLERS[sname].factory).parameters
    opts, n = dict(options), 6
    if "n_startup_trials" in params:
        start = opts.get("n_startup_trials", params["n_startup_trials"].default)
        if isinstance(start, int) and not isinstance(start, bool):
            opts["n_startup_trials"] = min(start, 3)
    if "population_size" in params:
        pop = opts.get("population_size", params["population_size"].default)
        if isinstance(pop, int) and not isinstance(pop, bool):
            n = max(n, min(pop, 200) + 2)
    return opts, n


def _dry_runs(sname: str, seed: int, sopts: Mapping[str, Any], grid: dict[str, list] | None, pname: str,
              popts: Mapping[str, Any], dists: Mapping[str, optuna.distributions.BaseDistribution],
              dirs: list[str], steps: int) -> None:
    """Build the sampler and the pruner and use each once on a stand-in study (``registry.dry_run``), so bad option
    values fail now, not when the study runs. A process that parses the same spec again (a command's spec and the
    copy stored on its study, a walk-forward's windows, a notebook) ran the same two stand-in studies each time,
    ~15-30 ms of the ~20-35 ms a parse takes: the stand-ins are seeded, so a combination that passed passes again,
    and it runs once per process (``_dry_runs_of``: the last 256 that passed, keyed by their JSON text and the
    stand-in runner; a failure is never remembered and runs again). Arguments a JSON text cannot hold exactly (a
    TOML date, NaN) run every time."""
    try:
        key = json.dumps([sname, seed, sopts, grid, pname, popts,
                          [[n, optuna.distributions.distribution_to_json(d)] for n, d in dists.items()], dirs, steps],
                         allow_nan=False)
    except (TypeError, ValueError):
        _dry_runs_now(dry_run, sname, seed, sopts, grid, pname, popts, dists, dirs, steps)
        return
    _dry_runs_of(key, dry_run)


@functools.lru_cache(maxsize=256)
def _dry_runs_of(key: str, run: Callable[..., None]) -> None:
    """``_dry_runs_now`` of the arguments ``key`` (``_dry_runs``' JSON text) holds; remembered when it passes
    (``lru_cache`` keeps no call that raised)."""
    sname, seed, sopts, grid, pname, popts, dists, dirs, steps = json.loads(key)
    _dry_runs_now(run, sname, seed, sopts, grid, pname, popts,
                  {n: optuna.distributions.json_to_distribution(d) for n, d in dists}, dirs, steps)


def _dry_runs_now(run: Callable[..., None], sname: str, seed: int, sopts: Mapping[str, Any],
                  grid: dict[str, list] | None, pname: str, popts: Mapping[str, Any],
                  dists: Mapping[str, optuna.distributions.BaseDistribution], dirs: list[str], steps: int) -> None:
    with warnings.catch_warnings():  # the stand-ins' warnings are not the user's
        warnings.simplefilter("ignore")
        # past the sampler's startup phase: the options of its own model (TPE's n_ei_candidates, prior_weight, a
        # package it imports) are used from then on only, so the stand-in study shortens the startup to 3 trials
        dry_opts, dry_n = _past_startup(sname, sopts)
        run("sampler", build_sampler(sname, seed, dry_opts, grid), build_pruner("none", {}), dists, dirs, steps,
            n_trials=dry_n)
        run("pruner", build_sampler("random", 0, {}), build_pruner(pname, popts), dists, dirs, steps)


def _check_choices(space: tuple[ParamSpec, ...]) -> None:
    """Two choices equal as values (20 and 20.0; true and 1) run the same configuration, yet each is another
    choice the sampler draws and another configuration for the repeat check and DSR."""
    for p in space:
        for i, a in enumerate(p.choices):
            b = next((b for b in p.choices[:i] if a == b), _NONE)
            if b is not _NONE:
                raise _err(f"space.{p.name}.choices", f"must not repeat a value: {_show(b)} and {_show(a)} are the same "
                                                      f"value (one configuration counted as two), got "
                                                      f"[{', '.join(map(_show, p.choices))}]")


_NONE = object()


def _check_steps(space: tuple[ParamSpec, ...]) -> None:
    """A numeric range's step must divide high - low: Optuna would otherwise search low + k * step only up to the
    last grid point below high (with a warning), so the declared high would never be drawn."""
    for p in space:
        if p.kind in ("int", "float") and p.step is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                top = p.distribution().high
            if top != p.high:
                raise _err(f"space.{p.name}.step", f"must divide high - low ({p.high} - {p.low}): the values low + k * "
                                                   f"step stop at {top}, so high = {p.high} would never be searched; "
                                                   f"set high = {top} or another step, got step={p.step}")


def _holds(p: ParamSpec, given: Mapping[str, tuple], space: tuple[ParamSpec, ...]) -> bool:
    """True when every ``when`` condition of ``p`` is met in every trial in which each parameter of ``given`` takes
    one of its values there (``space.suggest`` asks for ``p`` only when all its conditions hold)."""
    for k, allowed in p.when:
        ref = next(q for q in space if q.name == k)
        can = given.get(k) or _can_take(ref)
        if can is None or not all(c in allowed for c in can):
            return False
        if k not in given and ref.when and not _holds(ref, given, space):
            return False
    return True


def _grid_size(grid: Mapping[str, list]) -> int:
    return math.prod(len(v) for v in grid.values())


def _check_grid_trials(spec: StudySpec, doc: Mapping) -> None:
    """A grid study runs each configuration of its grid once: Optuna's GridSampler stops the study when every one
    is done, so [run] / [walkforward] n_trials above the grid's size would never be reached (and a re-run adds one
    re-evaluated configuration, with a warning, each time)."""
    if spec.sampler.name != "grid":
        return
    size = _grid_size({p.name: p.grid_values() for p in spec.space if p.kind != "fixed"})
    for sec in ("run", "walkforward"):
        n = doc.get(sec, {}).get("n_trials")
        if n is not None and n > size:
            raise _err(f"{sec}.n_trials", f"must be <= {size}, the configurations of the grid (a grid study runs each "
                                          f"once and stops), got n_trials={n}")


def _check_objective_metrics(spec: StudySpec) -> None:
    """A metric the objective reads that a fold's metrics (``METRIC_KEYS``) lack would fail every trial with a
    KeyError (a custom objective's ``metrics`` with a typo): refused naming it."""
    obj = make_objective(spec.objective.name, spec.objective.options)
    metric_keys = engine.metrics.METRIC_KEYS
    try:
        obj.fold_values({m: 1.0 for m in metric_keys})
    except KeyError as e:
        raise _err("objective.name", f"objective {spec.objective.name!r} reads the metric {e.args[0]!r}, which a "
                                     f"fold's metrics do not hold; they are: {', '.join(metric_keys)}") from None
    except Exception:  # noqa: BLE001 - stand-in values (all 1.0) may be outside what its arithmetic expects; a
        pass  # real fold's failure is stored on the trial (trial.TrialFailed)


def _check_pruner_reach(spec: StudySpec) -> None:
    """A pruner option that keeps the pruner from ever acting on the folds a trial reports (steps 0 .. folds-1:
    the [cv] folds of a study, the [walkforward] n_splits folds of a walk-forward window; cpcv: n_groups) is
    refused: the trials would all run to the end as with name = "none"."""
    name, o = spec.pruner.name, spec.pruner.options
    cpcv = spec.cv.mode == "cpcv"
    folds = max(spec.cv.n_groups if cpcv else spec.cv.n_splits, spec.cv.n_groups if cpcv else spec.walkforward.n_splits)
    where = (f"[cv] n_groups = {spec.cv.n_groups}" if cpcv else
             f"[cv] n_splits = {spec.cv.n_splits}, [walkforward] n_splits = {spec.walkforward.n_splits}")
    first, key = None, None
    if name in ("median", "percentile"):
        first, key = o.get("n_warmup_steps", 0), "n_warmup_steps"
    elif name in ("successive_halving", "hyperband") and isinstance(o.get("min_resource"), int):
        rate = o.get("min_early_stopping_rate", 0) if name == "successive_halving" else 0
        first, key = o["min_resource"] * o.get("reduction_factor", 4 if name == "successive_halving" else 3) ** rate, "min_resource"
    elif name == "wilcoxon":  # it compares the folds a trial shares with the best one: at least 2 of them
        first, key = max(2, o.get("n_startup_steps", 2)) - 1, "n_startup_steps" if "n_startup_steps" in o else "name"
    if first is not None and first > folds - 1:
        raise _err(f"pruner.{key}", f"leaves no fold to prune at: the earliest fold {name!r} can stop a trial at is "
                                    f"fold {first} (0-based), and a trial reports folds 0..{folds - 1} ({where}); "
                                    f"no trial would ever be pruned, got {key}={o.get(key, name)!r}")


def _check_gated(spec: StudySpec) -> None:
    """A sizing or risk-rule parameter read only under a setting the space can never take (risk_fraction without
    sizing fixed_fractional / kelly, the kelly_* without kelly, dd_cooloff without dd_breaker, corr_window without
    corr_cap) changes no trade, yet each of its values is another configuration for the repeat check and DSR."""
    for name, (gate, on) in GATES.items():
        if spec.param(name) is None:
            continue
        g = spec.param(gate)
        can = [PARAMS[gate].default] if g is None else _can_take(g)
        if can is not None and not any(v is not None and (on is None or v in on) for v in can):
            need = f"{gate} = {' or '.join(map(repr, on))}" if on else f"{gate} set"
            raise _err(f"space.{name}", f"has no effect: {name} is read only with {need}, and {gate} here can only be "
                                        f"{', '.join(_show(v) if v is not None else 'none' for v in can)}; declare "
                                        f"{gate} or remove {name}")


def _check_regime_filter(spec: StudySpec) -> None:
    """With [data] regime = RISK_ON / RISK_OFF / TRANSITIONAL (the rule-based label the regime-conditional
    parameters use) positions open only on that regime's closes, and a buy threshold decides only entries: another
    regime's buy_threshold_<regime> never takes effect."""
    for r, label in REGIME_SUFFIXES.items():
        if spec.data.regime in REGIME_SUFFIXES.values() and label != spec.data.regime and spec.param(f"buy_threshold_{r}"):
            raise _err(f"space.buy_threshold_{r}", f"has no effect with [data] regime = {spec.data.regime!r}: positions "
                                                   f"open only on {spec.data.regime} closes and a buy threshold decides "
                                                   f"only entries, so the {label} threshold is never used; remove it")


def _check_pooled_buy(spec: StudySpec) -> None:
    """The pooled buy_threshold decides the entries of sessions whose regime has no buy threshold of its own. Every
    session is labelled RISK_ON, TRANSITIONAL or RISK_OFF (no data: TRANSITIONAL), so when each regime that can open
    a position (all three; under a RISK_ON / RISK_OFF / TRANSITIONAL filter that one) declares its own threshold,
    always set (no ``when``), a searched buy_threshold changes no trade and no metric, yet each of its values is
    another configuration for the repeat check and DSR."""
    b = spec.param("buy_threshold")
    if b is None or b.kind == "fixed" or (b.kind == "categorical" and len(b.choices) < 2) or \
            (b.kind in ("int", "float") and b.low == b.high):
        return
    regimes = ({s: r for s, r in REGIME_SUFFIXES.items() if r == spec.data.regime}
               if spec.data.regime in REGIME_SUFFIXES.values() else dict(REGIME_SUFFIXES))
    own = [spec.param(f"buy_threshold_{s}") for s in regimes]
    if all(p is not None and not p.when for p in own):
        where = (f"[data] regime = {spec.data.regime!r} opens positions on {spec.data.regime} closes only"
                 if len(regimes) == 1 else "every session is RISK_ON, TRANSITIONAL or RISK_OFF")
        raise _err("space.buy_threshold", f"has no effect on any trade: {where}, and "
                                          f"{', '.join(f'buy_threshold_{s}' for s in regimes)} decide"
                                          f"{'s' if len(regimes) == 1 else ''} those entries, so each searched value "
                                          f"would be another configuration running the same trades; fix it (e.g. "
                                          f"buy_threshold = 70) or leave a regime to the pooled threshold")


def _check_regime_entries(space: list[ParamSpec]) -> None:
    """The rules between entries that ``_validate_space`` checks for the pooled score, on each regime's sessions:
    a regime's three weights (its own where declared, else the pooled ones) may not all be 0 at once, and every
    regime buy threshold must be above every sell threshold (the engine refuses either when the trial runs)."""
    names = [p.name for p in space]
    for r, label in REGIME_SUFFIXES.items():
        own = [f"{w}_{r}" for w in ("w_short", "w_lit", "w_price")]
        if any(n in names for n in own):
            low = [_lowest(space, f"{w}_{r}" if f"{w}_{r}" in names else w) for w in ("w_short", "w_lit", "w_price")]
            if all(v is not None and v <= 0 for v in low):
                key = next(n for n in own if n in names)
                raise _err(f"space.{key}", f"the three weights on {label} sessions can all be 0 at once (lowest "
                                           f"w_short, w_lit, w_price there: {', '.join(f'{v:g}' for v in low)}); the "
                                           "score divides by their sum, which must be > 0: give at least one a low above 0")
        b = next((p for p in space if p.name == f"buy_threshold_{r}"), None)
        if b is None:
            continue
        s = next((p for p in space if p.name == "sell_threshold"), None)
        dsell = PARAMS["sell_threshold"].default
        bb = b.values_bound()
        sb = s.values_bound() if s is not None else (dsell, dsell)
        if bb and sb and sb[1] >= bb[0]:
            raise _err(f"space.buy_threshold_{r}", f"every sell threshold must be below every buy threshold on {label} "
                                                   f"sessions; max sell {sb[1]}{'' if s else ' (default)'} >= min "
                                                   f"buy_threshold_{r} {bb[0]}")


def _check_exit_days(space: tuple[ParamSpec, ...]) -> None:
    """hold_days / max_days take effect only with the bare exit 'fixed' / 'hybrid' (fixed_<N>d and hybrid_<M>d
    name their own days; the other exits hold none): declared where exit can never be that rule they are ignored,
    and when their ``when`` can fail while exit is that rule, the trial has no day count and fails."""
    exit_p = next((p for p in space if p.name == "exit"), None)
    exits = exit_p.grid_values() if exit_p is not None else [PARAMS["exit"].default]
    for rule, days in (("fixed", "hold_days"), ("hybrid", "max_days")):
        dp = next((p for p in space if p.name == days), None)
        if dp is None:
            continue  # exit = rule without it is refused by _validate_space
        if rule not in exits:
            raise _err(f"space.{days}", f"has no effect: only exit = '{rule}' takes {days} ({rule}_<N>d names its own "
                                        f"days), and exit here can only be {', '.join(map(repr, exits))}; remove "
                                        f"{days} or add '{rule}' to exit")
        given = {"exit": (rule,), **({k: v for k, v in exit_p.when} if exit_p is not None else {})}
        if not _holds(dp, given, space):
            cond = ", ".join(f"{k} = {list(v) if len(v) > 1 else _show(v[0])}" for k, v in dp.when)
            raise _err(f"space.{days}.when", f"must hold whenever exit = '{rule}' (that exit takes its days from "
                                             f"{days}; a trial without them fails), got when = {{ {cond} }}")


def _parse(doc: dict, text: str, path: str | None) -> StudySpec:
    _check_keys(doc, ("study", "data", "space", "cv", "objective", "sampler", "pruner", "run", "walkforward", "seed_from"), "")
    st = _section(doc, "study")
    _check_keys(st, ("name", "description"), "study")
    default_name = Path(path).stem if path else "study"
    name = check_study_name(_typed(st, "name", str, "study", default=default_name),
                            "study.name" if "name" in st else "study.name (the file's name, the default)")
    desc = _typed(st, "description", str, "study", default="")

    d = _section(doc, "data")
    _check_keys(d, ("database", "universe", "start", "end", "regime", "costs", "reserve_fraction", "min_periods"), "data")
    costs = d.get("costs", {})
    if not isinstance(costs, dict):
        raise _err("data.costs", "must be a table")
    _check_keys(costs, ("commission_bps", "slippage_bps"), "data.costs")
    com = _typed(costs, "commission_bps", (int, float), "data.costs", default=1.0)
    slp = _typed(costs, "slippage_bps", (int, float), "data.costs", default=5.0)
    for k, v in (("commission_bps", com), ("slippage_bps", slp)):
        try:
            PARAMS[k].check(v)
        except ParameterError:
            rule = PARAMS[k].rule if math.isfinite(v) else f"a finite number {PARAMS[k].rule}"
            raise _err(f"data.costs.{k}", f"must be {rule}, got {k}={v}") from None
    uni = d.get("universe", "tier1+3")
    if not isinstance(uni, (str, list)) or (isinstance(uni, list) and not all(isinstance(s, str) for s in uni)):
        raise _err("data.universe", f"must be tier1, tier3, tier1+3, tier1+2+3, all or a list of symbols, got {uni!r}")
    if is_listed(uni):  # a listed universe's symbols (each once, tradable) are checked now, before any trial runs
        try:
            resolve_universe(uni)
        except ParameterError as e:
            raise _err("data.universe", str(e).removeprefix("universe ")) from None
    regime = _typed(d, "regime", str, "data", default="ALL")
    if regime not in REGIMES:
        raise _err("data.regime", f"must be one of {', '.join(REGIMES)}, got {regime!r}")
    start = _date(d, "start")
    end = _date(d, "end")
    if start and end and start > end:
        raise _err("data.start", f"must be <= end={end}, got start={start}")
    rf = _typed(d, "reserve_fraction", (int, float), "data", default=0.2)
    if not 0 <= rf < 0.9:
        raise _err("data.reserve_fraction", f"must be in [0, 0.9), got reserve_fraction={rf}")
    mp = _typed(d, "min_periods", int, "data")
    if mp is not None and mp < 2:
        raise _err("data.min_periods", f"must be >= 2, got min_periods={mp}")
    data = DataSpec(_typed(d, "database", str, "data"), uni, start, end, regime, float(com), float(slp), float(rf), mp)

    raw_space = doc.get("space", DEFAULT_SPACE)
    if not isinstance(raw_space, dict) or not raw_space:
        raise _err("space", "must be a non-empty table of parameters")
    space: list[ParamSpec] = []
    for pname, praw in raw_space.items():
        space.append(_parse_param(pname, praw, "space", space))
    _validate_space(space)

    c = _section(doc, "cv")
    _check_keys(c, ("mode", "n_splits", "test_size", "purge", "embargo", "min_train_size", "max_train_size",
                    "n_groups", "n_test_groups"), "cv")
    mode = _typed(c, "mode", str, "cv", default="expanding")
    if mode == "rolling":
        raise _err("cv.mode", "rolling has no effect on a study: the rule fits nothing on the sessions before a fold, "
                              "so rolling and expanding folds score the same test blocks (min_train_size sets where "
                              "the first one starts); use expanding, got 'rolling'")
    if mode not in CV_MODES:
        raise _err("cv.mode", f"must be one of {', '.join(CV_MODES)}, got {mode!r}")
    only = {"cpcv": ("n_groups", "n_test_groups"), "forward": ("n_splits", "test_size", "min_train_size", "max_train_size")}
    for k in only["forward" if mode == "cpcv" else "cpcv"]:
        if k in c:
            other = "expanding" if mode == "cpcv" else "cpcv"
            raise _err(f"cv.{k}", f"applies to mode = {other} only, not mode = {mode!r}")
    cv_kw = {}
    for k, lo in (("n_splits", 1), ("test_size", 2), ("purge", 0), ("embargo", 0), ("min_train_size", 0), ("max_train_size", 1),
                  ("n_groups", 3), ("n_test_groups", 1)):
        v = _typed(c, k, int, "cv")
        if v is not None and v < lo:
            raise _err(f"cv.{k}", f"must be >= {lo}, got {k}={v}")
        if v is not None:
            cv_kw[k] = v
    if cv_kw.get("max_train_size") is not None and cv_kw["max_train_size"] < cv_kw.get("min_train_size", 0):
        raise _err("cv.max_train_size", f"must be >= min_train_size={cv_kw['min_train_size']}, "
                                        f"got max_train_size={cv_kw['max_train_size']}")
    if "max_train_size" in cv_kw:
        raise _err("cv.max_train_size", "has no effect on a study: only a rolling train window would use it, and the "
                                        "rule fits nothing on the sessions before a fold; leave it out, got "
                                        f"max_train_size={cv_kw['max_train_size']}")
    if mode == "cpcv":
        ng, nt = cv_kw.get("n_groups", CVSpec.n_groups), cv_kw.get("n_test_groups", CVSpec.n_test_groups)
        if nt >= ng:
            raise _err("cv.n_test_groups", f"must be < n_groups={ng}, got n_test_groups={nt}")
        try:  # the splitter's own rules (e.g. the number of splits it will enumerate)
            CombinatorialPurgedCV(ng, nt)
        except ParameterError as e:
            raise _err("cv.n_test_groups", str(e)) from None
    cv = CVSpec(mode=mode, **cv_kw)

    o = _section(doc, "objective")
    _check_keys(o, ("name", "direction", "directions", "aggregate", "k", "min_trades", "options"), "objective")
    oname = _typed(o, "name", str, "objective", default="composite_rank")
    obj_cls = resolve_objective(oname, key="objective.name")
    if "direction" in o and "directions" in o:
        raise _err("objective.directions", "give either direction or directions, not both")
    if "directions" in o:
        dirs = _typed(o, "directions", list, "objective")
    else:
        dirs = [_typed(o, "direction", str, "objective", default=None)] if "direction" in o else list(obj_cls.default_directions)
    for i, dv in enumerate(dirs):
        if dv not in ("maximize", "minimize"):
            raise _err(f"objective.directions[{i}]", f"must be maximize or minimize, got {dv!r}")
    if len(dirs) != len(obj_cls.metrics):
        raise _err("objective.directions", f"objective {oname!r} returns {len(obj_cls.metrics)} value(s), got {len(dirs)} direction(s)")
    agg = _typed(o, "aggregate", str, "objective", default="mean")
    if agg not in AGGREGATES:
        raise _err("objective.aggregate", f"must be one of {', '.join(AGGREGATES)}, got {agg!r}")
    k = _typed(o, "k", (int, float), "objective", default=1.0)
    if not (math.isfinite(k) and k >= 0):
        raise _err("objective.k", f"must be a finite number >= 0, got k={k}")
    mt = _typed(o, "min_trades", int, "objective", default=5)
    if mt < 0:
        raise _err("objective.min_trades", f"must be >= 0, got min_trades={mt}")
    opts = _objective_options(obj_cls, oname, _typed(o, "options", dict, "objective", default={}))
    make_objective(oname, opts)  # every option a parameter of the objective's constructor, its value accepted
    objective = ObjectiveSpec(oname, tuple(dirs), agg, float(k), mt, opts)

    s = _section(doc, "sampler")
    sname = _typed(s, "name", str, "sampler", default="tpe")
    if sname not in SAMPLERS:
        raise _err("sampler.name", f"must be one of {', '.join(SAMPLERS)}, got {sname!r}")
    seed = _typed(s, "seed", int, "sampler", default=42)
    if not 0 <= seed <= 2**32 - 1:  # numpy's RandomState range; the sampler's own error named no key
        raise _err("sampler.seed", f"must be an integer in [0, 2**32 - 1] (4294967295), got seed={seed}")
    sopts = {kk: vv for kk, vv in s.items() if kk not in ("name", "seed")}
    sopts = SAMPLERS[sname].validate_options(sopts, "sampler")
    if sname == "grid":
        for p in space:
            if p.when:
                raise _err(f"space.{p.name}.when", "grid sampling cannot use conditional parameters")
            p.grid_values()
        size = _grid_size({p.name: p.grid_values() for p in space if p.kind != "fixed"})
        if size > MAX_GRID:  # Optuna's GridSampler lists every configuration in memory when it is built
            counts = ", ".join(f"{p.name} {len(p.grid_values())}" for p in space if p.kind != "fixed")
            raise _err("sampler.name", f"a grid must hold at most {MAX_GRID:,} configurations, got {size:,} ({counts}): "
                                       "use larger steps or fewer choices, or another sampler (tpe)")
    if len(dirs) > 1 and sname not in ("nsga2", "random", "tpe", "qmc", "grid", "gp"):
        raise _err("sampler.name", f"{sname!r} does not support multi-objective studies; use nsga2, tpe, random, qmc or grid")
    sampler = SamplerSpec(sname, seed, sopts)

    pr = _section(doc, "pruner")
    pname = _typed(pr, "name", str, "pruner", default="median" if len(dirs) == 1 else "none")
    if pname not in PRUNERS:
        raise _err("pruner.name", f"must be one of {', '.join(PRUNERS)}, got {pname!r}")
    popts = {kk: vv for kk, vv in pr.items() if kk != "name"}
    popts = PRUNERS[pname].validate_options(popts, "pruner")
    if len(dirs) > 1 and pname != "none":
        raise _err("pruner.name", "multi-objective studies cannot prune (Optuna limitation); use name = \"none\"")
    pruner = PrunerSpec(pname, popts)
    with warnings.catch_warnings():  # build and use once so bad option values fail now, not when the study runs
        warnings.simplefilter("ignore")
        grid = {p.name: p.grid_values() for p in space if p.kind != "fixed"} if sname == "grid" else None
        dists = {p.name: p.distribution() for p in space if p.kind != "fixed"}
        # the stand-in reports one value per fold, at most 16 (n_splits = 10**9 ran the stand-in forever before the
        # data check refused it); an option that fails when used fails at the first reports
        steps = min(max(1, cv_kw.get("n_splits", CVSpec.n_splits)), 16)
        _dry_runs(sname, seed, sopts, grid, pname, popts, dists, list(dirs), steps)

    r = _section(doc, "run")
    _check_keys(r, ("n_trials", "timeout", "storage", "study_name"), "run")
    # a grid runs each of its configurations once (GridSampler stops the study when they are all done), so by
    # default a grid study asks for at most its size
    nt = _typed(r, "n_trials", int, "run", default=100 if grid is None else min(100, _grid_size(grid)))
    if nt < 1:
        raise _err("run.n_trials", f"must be >= 1, got n_trials={nt}")
    to = _typed(r, "timeout", (int, float), "run")
    if to is not None and not (math.isfinite(to) and to > 0):
        raise _err("run.timeout", f"must be > 0 seconds{'' if math.isfinite(to) else ' (a finite number)'}, got timeout={to}")
    run_name = check_study_name(_typed(r, "study_name", str, "run", default=name), "run.study_name")
    run = RunSpec(nt, None if to is None else float(to), _typed(r, "storage", str, "run"), run_name)

    w = _section(doc, "walkforward")
    _check_keys(w, ("train", "test", "step", "unit", "purge", "anchored", "select", "top_k", "n_trials", "n_splits", "embargo"), "walkforward")
    wf_kw: dict[str, Any] = {}
    for kk, lo in (("train", 1), ("test", 1), ("step", 1), ("purge", 0), ("top_k", 1), ("n_trials", 1), ("n_splits", 1), ("embargo", 0)):
        v = _typed(w, kk, int, "walkforward")
        if v is not None and v < lo:
            raise _err(f"walkforward.{kk}", f"must be >= {lo}, got {kk}={v}")
        if v is not None:
            wf_kw[kk] = v
    unit = _typed(w, "unit", str, "walkforward", default="months")
    if unit not in ("months", "sessions"):
        raise _err("walkforward.unit", f"must be months or sessions, got {unit!r}")
    sel = _typed(w, "select", str, "walkforward", default="best")
    if sel not in ("best", "robust"):
        raise _err("walkforward.select", f"must be best or robust, got {sel!r}")
    if cv.mode == "cpcv" and "n_splits" in w:
        raise _err("walkforward.n_splits", "does not apply with cv.mode = 'cpcv' (each window's study scores the [cv] "
                                           "n_groups groups of its train span)")
    wf = WalkForwardSpec(unit=unit, select=sel, anchored=_typed(w, "anchored", bool, "walkforward", default=False), **wf_kw)

    sf = doc.get("seed_from")
    seed_from = None
    if sf is not None:
        if not isinstance(sf, dict):
            raise _err("seed_from", "must be a table")
        _check_keys(sf, ("study", "top", "weight_radius"), "seed_from")
        top = _typed(sf, "top", int, "seed_from", default=5)
        rad = _typed(sf, "weight_radius", (int, float), "seed_from", default=0.05)
        if top < 1:
            raise _err("seed_from.top", f"must be >= 1, got top={top}")
        if not 0 <= rad <= 0.5:
            raise _err("seed_from.weight_radius", f"must be in [0, 0.5], got weight_radius={rad}")
        seed_from = SeedFromSpec(check_study_name(_typed(sf, "study", str, "seed_from", required=True), "seed_from.study"),
                                 top, float(rad))

    return StudySpec(name, desc, data, tuple(space), cv, objective, sampler, pruner, run, wf, seed_from, text, path)


def _lowest(space: list[ParamSpec], name: str) -> float | None:
    """The lowest value entry ``name`` can take (the registry default when undeclared; None when conditional)."""
    p = next((q for q in space if q.name == name), None)
    if p is None:
        return float(PARAMS[name].default)
    if p.when:
        return None
    b = p.values_bound()
    return None if b is None else b[0]


def _validate_space(space: list[ParamSpec]) -> None:
    """Every value each entry can take must be a valid value of its registry parameter (the rule the engine's
    objects enforce), plus the rules between entries: weights preset vs w_*, an exit that needs hold_days /
    max_days, and every sell threshold below every buy threshold."""
    names = [p.name for p in space]
    if "weights" in names and any(n in names for n in ("w_short", "w_lit", "w_price")):
        raise _err("space.weights", "use either the weights preset or w_short/w_lit/w_price, not both")
    wp = next((p for p in space if p.name == "weights"), None)
    if wp is not None:
        vals = wp.grid_values() if wp.kind in ("categorical", "fixed") else []
        bad = [v for v in vals if v not in WEIGHT_PRESETS]
        if bad or not vals:
            raise _err("space.weights", f"choices must be among {', '.join(WEIGHT_PRESETS)}, got {bad or vals!r}")
    for p in space:
        entry = PARAMS.get(p.name) or SPACE_ONLY[p.name]
        if entry.type is int and p.kind == "float":
            raise _err(f"space.{p.name}.type", f"must be int or categorical: {p.name} is an integer parameter, got 'float'")
        vals = list(p.choices) if p.kind == "categorical" else [p.value] if p.kind == "fixed" else [p.low, p.high]
        for v in vals:
            try:
                entry.check(v)
            except ParameterError as e:
                raise _err(f"space.{p.name}", entry.domain.spec_error(v, e)) from None
        if p.name == "exit":
            if "fixed" in vals and "hold_days" not in names:
                raise _err("space.hold_days", "is required when exit may be 'fixed'")
            if "hybrid" in vals and "max_days" not in names:
                raise _err("space.max_days", "is required when exit may be 'hybrid'")
    if "weights" not in names:
        low = [_lowest(space, w) for w in ("w_short", "w_lit", "w_price")]
        if all(v is not None and v <= 0 for v in low):
            raise _err("space.w_short", "the three weights can all be 0 at once (lowest w_short, w_lit, w_price: "
                                        f"{', '.join(f'{v:g}' for v in low)}); the score divides by their sum, which "
                                        "must be > 0: give at least one weight a low above 0")
    lo_ = next((p for p in space if p.name == "intensity_lo"), None)
    hi_ = next((p for p in space if p.name == "intensity_hi"), None)
    if lo_ is not None or hi_ is not None:
        blo = lo_.values_bound() if lo_ is not None else (PARAMS["intensity_lo"].default,) * 2
        bhi = hi_.values_bound() if hi_ is not None else (PARAMS["intensity_hi"].default,) * 2
        if blo and bhi and blo[1] > bhi[0]:
            raise _err("space.intensity_lo", f"every intensity_lo must be <= every intensity_hi; max intensity_lo "
                                             f"{blo[1]:g} > min intensity_hi {bhi[0]:g}")
    b = next((p for p in space if p.name == "buy_threshold"), None)
    s = next((p for p in space if p.name == "sell_threshold"), None)
    if b is not None or s is not None:  # an undeclared threshold keeps the engine default (buy 70, sell 30)
        dbuy, dsell = PARAMS["buy_threshold"].default, PARAMS["sell_threshold"].default
        bb = b.values_bound() if b is not None else (dbuy, dbuy)
        sb = s.values_bound() if s is not None else (dsell, dsell)
        if bb and sb and sb[1] >= bb[0]:
            raise _err("space.sell_threshold" if s is not None else "space.buy_threshold",
                       f"every sell threshold must be below every buy threshold; max sell {sb[1]}{'' if s else ' (default)'} "
                       f">= min buy {bb[0]}{'' if b else ' (default)'}")


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate the spec file at ``path`` (UTF-8 TOML; a missing, unreadable or non-UTF-8 file is a
    SpecError naming the file)."""
    p = Path(path)
    if not p.exists():
        raise SpecError("file", "does not exist", file=str(p))
    if p.is_dir():
        raise SpecError("file", "is a directory, not a TOML spec", file=str(p))
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpecError("file", f"cannot be read: {e.strerror or e}", file=str(p)) from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise SpecError("file", "is UTF-16 text; a spec must be UTF-8 (TOML's encoding): re-save it as UTF-8",
                        file=str(p))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError("file", f"is not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r}); a spec must "
                                "be UTF-8 TOML", file=str(p)) from None
    return parse_spec(text.removeprefix("\ufeff"), str(p))
