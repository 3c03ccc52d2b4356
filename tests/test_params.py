"""The parameter registry (optimizer/params.py) is the one definition every consumer is built from or tested against.

* the engine objects' defaults are the registry's, every engine field is a registry entry, and Config.from_params /
  to_params round-trip through it;
* a value outside an entry's domain is refused with the same rule by the engine (ParameterError) and by a spec
  (SpecError on the [space] key), for every entry;
* exit names are parsed in one place; the default search space, SPACE_PARAMS, the backtest flags and the README
  parameter table come from the registry.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.engine._kernels import RULE_CODES
from optimizer.engine.evaluate import PARAM_KEYS, Config, RegimeParams
from optimizer.engine.score import ScoreParams
from optimizer.engine.simulate import Caps, Costs, ExitParams, RiskParams, Thresholds
from optimizer.errors import ParameterError, SpecError
from optimizer.params import (
    EXIT_RULES, PARAMS, SPACE_ONLY, SPACE_PARAMS, Choice, ExitName, Number, default_space, engine_params,
    markdown_table, parse_exit,
)
from optimizer.study.spec import DEFAULT_SPACE, parse_spec

ROOT = Path(__file__).resolve().parents[1]
_OBJECTS = {"score": ScoreParams, "thresholds": Thresholds, "exit": ExitParams, "costs": Costs, "caps": Caps,
            "risk": RiskParams, "regime": RegimeParams, "config": Config}


def _bad_value(p):
    """A value just outside the entry's domain."""
    d = p.domain
    if isinstance(d, Choice):
        return "zzz" if all(isinstance(v, str) for v in d.values) else "yes"
    if isinstance(d, ExitName):
        return "hold_forever"
    assert isinstance(d, Number)
    if d.lo is not None:
        return d.lo if d.lo_open else d.lo - 1
    return d.hi if d.hi_open else d.hi + 1


# ------------------------------------------------------------------------------------------------ engine


def test_registry_defaults_are_the_engine_defaults():
    assert Config().to_params() == {name: p.default for name, p in PARAMS.items()}
    assert PARAM_KEYS == tuple(PARAMS)


def test_every_engine_field_is_a_registry_entry():
    """A field added to an engine object without a registry entry (or the reverse) fails here."""
    fields = {(g, f.name) for g, cls in _OBJECTS.items() for f in dataclasses.fields(cls)
              if not (g == "config" and f.name in ("score", "thresholds", "exit", "costs", "caps", "risk", "regime"))}
    registered = {(p.group, p.field) for p in PARAMS.values()}
    assert fields == registered


def test_from_params_round_trips_every_parameter():
    full = {"variant": "D", "w_short": 0.5, "w_lit": 0.2, "w_price": 0.3, "z_window": 40, "intensity_lo": 0.5,
            "intensity_hi": 1.5, "buy_threshold": 75.0, "sell_threshold": 20.0, "exit": "fixed", "hold_days": 7,
            "max_days": None, "stop_loss": 0.04, "take_profit": 0.2, "time_stop": 30, "commission_bps": 2.0,
            "slippage_bps": 3.0, "max_positions": 4, "max_per_sector": 2, "sizing": "kelly", "atr_stop": 2.5,
            "trail_stop": 0.08, "risk_fraction": 0.01, "max_weight": 0.2, "kelly_fraction": 0.25, "kelly_window": 40,
            "regime_sizing": True, "dd_breaker": 0.15, "dd_cooloff": 5, "corr_cap": 0.7, "corr_window": 30,
            "options_boost": 0.5, "w_short_risk_on": 0.6, "w_lit_risk_on": 0.2, "w_price_risk_on": 0.2,
            "w_short_risk_off": 0.3, "w_lit_risk_off": 0.5, "w_price_risk_off": 0.2, "w_short_transitional": 0.5,
            "w_lit_transitional": None, "w_price_transitional": 0.1, "buy_threshold_risk_on": 65.0,
            "buy_threshold_risk_off": 80.0, "buy_threshold_transitional": 72.5}
    assert set(full) == set(PARAMS)
    cfg = Config.from_params(full)
    assert cfg.to_params() == full
    assert (cfg.score.intensity_lo, cfg.thresholds.buy, cfg.exit.hold_days, cfg.caps.max_per_sector) == (0.5, 75.0, 7, 2)
    assert Config.from_params(cfg.to_params()) == cfg
    with pytest.raises(ParameterError, match="unknown parameter"):
        Config.from_params({"momentum": 1})


@pytest.mark.parametrize("name", list(PARAMS))
def test_a_value_outside_the_domain_is_refused_by_the_engine_and_by_a_spec(name):
    p = PARAMS[name]
    bad = _bad_value(p)
    with pytest.raises(ParameterError, match=name) as ei:
        Config.from_params({name: bad})
    assert (p.rule in str(ei.value)) or isinstance(p.domain, ExitName)
    with pytest.raises(SpecError) as se:
        parse_spec(f"[space]\n{name} = {json.dumps(bad)}\n[pruner]\nname = 'none'\n")
    assert se.value.key == f"space.{name}"
    assert f"values must be {p.rule}, got {bad!r}" in str(se.value) or isinstance(p.domain, ExitName)


def test_integer_parameters_are_not_truncated():
    with pytest.raises(ParameterError, match="z_window must be an integer in"):
        Config.from_params({"z_window": 20.5})
    assert Config.from_params({"z_window": 20.0}).score.z_window == 20
    with pytest.raises(SpecError, match=r"\[space.z_window.type\] must be int or categorical"):
        parse_spec("[space]\nz_window = { type = 'float', low = 10, high = 30 }\n")


def test_the_engine_objects_check_their_fields_through_the_registry():
    for obj, kw, rule in ((ScoreParams, {"z_window": 1}, "an integer in [2, 252]"), (Thresholds, {"buy": 101.0}, "in [0, 100]"),
                          (Costs, {"slippage_bps": -1.0}, ">= 0"), (Caps, {"max_positions": 0}, "an integer >= 1"),
                          (ExitParams, {"stop_loss": 1.0}, "in (0, 1)")):
        with pytest.raises(ParameterError, match=re.escape(rule)):
            obj(**kw)
    with pytest.raises(ParameterError, match="sell_threshold must be < buy_threshold=60.0"):
        Thresholds(60.0, 65.0)  # a rule between fields stays with the object


# ------------------------------------------------------------------------------------------------ exits


@pytest.mark.parametrize(("name", "hold", "mx", "expected"), [
    ("fixed_10d", None, None, ("fixed", 10, None)),
    ("hybrid_30d", None, None, ("hybrid", None, 30)),
    ("fixed", 5, None, ("fixed", 5, None)),
    ("hybrid", None, 12, ("hybrid", None, 12)),
    ("first_dist", 9, 9, ("first_dist", None, None)),
    ("score_decay", None, None, ("score_decay", None, None)),
])
def test_parse_exit(name, hold, mx, expected):
    assert parse_exit(name, hold, mx) == expected


@pytest.mark.parametrize("bad", ["fixed_0d", "fixed10d", "hold_forever", 10, None])
def test_parse_exit_refuses(bad):
    with pytest.raises(ParameterError, match="(exit|hold_days) must be"):
        parse_exit(bad)


def test_exit_rules_are_the_kernels_rules():
    assert set(EXIT_RULES) == set(RULE_CODES)


def test_max_hold_uses_the_one_exit_parser():
    s = parse_spec("[space]\nexit = { type = 'categorical', choices = ['fixed_15d', 'hybrid_25d', 'first_dist'] }\n"
                   "[pruner]\nname = 'none'\n[cv]\npurge = 7\n")
    assert s.max_hold() == 25


# ------------------------------------------------------------------------------------------------ consumers


def test_default_space_and_space_params_come_from_the_registry():
    assert DEFAULT_SPACE == default_space()
    assert list(DEFAULT_SPACE) == ["variant", "w_short", "w_lit", "w_price", "z_window", "buy_threshold",
                                   "sell_threshold", "exit", "time_stop"]
    assert SPACE_PARAMS == (*PARAMS, *SPACE_ONLY)
    assert parse_spec("").param_names == list(DEFAULT_SPACE)


def test_engine_params_expands_presets_and_drops_switches():
    got = engine_params({"weights": "lit_heavy", "use_stop_loss": False, "stop_loss": 0.05, "use_take_profit": True,
                         "take_profit": 0.1})
    assert got == {"w_short": 0.40, "w_lit": 0.40, "w_price": 0.20, "take_profit": 0.1}
    with pytest.raises(ParameterError, match="weights must be one of short_heavy, balanced, lit_heavy"):
        engine_params({"weights": "heavy"})


def test_space_switches_are_checked():
    with pytest.raises(SpecError, match=r"\[space.use_stop_loss\] values must be one of true, false, got 'yes'"):
        parse_spec("[space]\nuse_stop_loss = 'yes'\n")


def test_backtest_has_a_flag_for_every_registry_parameter():
    help_text = CliRunner().invoke(main, ["backtest", "--help"], terminal_width=200).stdout
    for name, p in PARAMS.items():
        assert f"--{name.replace('_', '-')}" in help_text, name
        for flag in p.flags:
            assert flag in help_text
    for v in PARAMS["variant"].domain.values:
        assert v in help_text


def test_a_new_registry_flag_reaches_the_configuration(synth_db):
    res = CliRunner().invoke(main, ["backtest", "--db", str(synth_db), "--universe", "tier1", "--no-save", "--format",
                                    "json", "--intensity-lo", "0.2", "--intensity-hi", "1.8", "--exit", "hybrid",
                                    "--max-days", "12"])
    assert res.exit_code == 0, res.output
    p = json.loads(res.stdout)["params"]
    assert (p["intensity_lo"], p["intensity_hi"], p["exit"], p["max_days"]) == (0.2, 1.8, "hybrid", 12)
    assert p["hold_days"] is None and math.isclose(p["w_short"], 0.55)


def test_readme_parameter_table_is_the_registry():
    assert markdown_table() in (ROOT / "README.md").read_text(encoding="utf-8")
