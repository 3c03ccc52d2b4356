"""Tests of optimizer.study.spec: the shipped studies/*.toml parse to the expected values, every kind of invalid spec
fails with a SpecError naming the key path and the rule (or the valid choices), spec_hash ignores exactly the keys
that do not change what a trial computes, and the derived purge / embargo follow from the space by hand."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from optimizer.errors import ParameterError, SpecError
from optimizer.study.run import run_study
from optimizer.study.spec import DEFAULT_SPACE, REGIMES, WEIGHT_PRESETS, ParamSpec, load_spec, parse_spec

STUDIES = Path(__file__).resolve().parents[1] / "studies"
SHIPPED = sorted(p.stem for p in STUDIES.glob("*.toml"))


def _err(text: str, path: str | None = "x.toml") -> SpecError:
    with pytest.raises(SpecError) as ei:
        parse_spec(text, path=path)
    return ei.value


# ------------------------------------------------------------------------------------------------ shipped specs
def test_the_shipped_specs_are_there():
    assert SHIPPED == ["demo", "exits_004", "exits_uncapped", "multiobjective", "phase_a_coarse", "phase_b_fine",
                       "regime_conditional", "regime_risk_off", "regime_risk_on"]


def test_the_exit_specs_search_what_their_names_say():
    """exits_uncapped: distribution exits only, no time stop, the purge stated; exits_004: every exit parameter
    within the bounds its header states, every hold capped."""
    u = load_spec(STUDIES / "exits_uncapped.toml")
    assert u.param("time_stop") is None and u.cv.purge == 60 and u.walkforward.purge == 60
    assert u.unbounded_exits() == ["first_dist", "2x_consec_dist", "score_decay"]
    e = load_spec(STUDIES / "exits_004.toml")
    assert e.unbounded_exits() == [] and e.purge() == 40
    bounds = {n: e.param(n).values_bound() for n in ("hold_days", "max_days", "time_stop", "stop_loss",
                                                      "take_profit", "atr_stop", "trail_stop")}
    assert bounds == {"hold_days": (5, 20), "max_days": (10, 40), "time_stop": (10, 40), "stop_loss": (0.03, 0.10),
                      "take_profit": (0.05, 0.25), "atr_stop": (1.5, 4.0), "trail_stop": (0.04, 0.15)}


@pytest.mark.parametrize("stem", SHIPPED)
def test_every_shipped_spec_parses_with_its_file_name_as_study_name(stem):
    s = load_spec(STUDIES / f"{stem}.toml")
    assert s.name == stem and s.run.study_name == stem
    assert s.path == str(STUDIES / f"{stem}.toml")
    assert re.fullmatch(r"[0-9a-f]{16}", s.spec_hash)
    assert s.data.reserve_fraction == 0.2 and s.data.universe == "tier1+3"
    # every shipped space keeps sells below buys and uses a registered objective with one direction per value
    assert len(s.objective.directions) == {"return_hit_frequency": 3}.get(s.objective.name, 1)


def test_shipped_spec_hashes_are_all_different():
    hashes = {load_spec(STUDIES / f"{stem}.toml").spec_hash for stem in SHIPPED}
    assert len(hashes) == len(SHIPPED)


def test_demo_spec_values_and_auto_purge_embargo():
    s = load_spec(STUDIES / "demo.toml")
    assert s.param_names == ["variant", "w_short", "w_lit", "w_price", "z_window", "buy_threshold", "sell_threshold",
                             "exit", "time_stop"]
    assert s.param("variant").choices == ("A", "B", "C", "D", "vw_flow", "blended")
    assert s.param("time_stop").kind == "fixed" and s.param("time_stop").value == 20
    assert (s.cv.mode, s.cv.n_splits, s.cv.purge, s.cv.embargo) == ("expanding", 3, None, None)
    # purge = longest hold: max(fixed_10d -> 10, hybrid_20d -> 20, time_stop 20) = 20; embargo = max z_window 30
    assert (s.max_hold(), s.purge()) == (20, 20)
    assert (s.max_z_window(), s.embargo()) == (30, 30)
    assert (s.objective.name, s.objective.directions, s.objective.aggregate, s.objective.min_trades) == (
        "composite_rank_excess", ("maximize",), "mean", 5)
    assert (s.sampler.name, s.sampler.seed, dict(s.sampler.options)) == ("tpe", 42, {"n_startup_trials": 15})
    assert (s.pruner.name, dict(s.pruner.options)) == ("median", {"n_startup_trials": 10, "n_warmup_steps": 0})
    assert s.run.n_trials == 120 and s.run.timeout is None
    wf = s.walkforward
    assert (wf.train, wf.test, wf.step, wf.unit, wf.n_trials, wf.anchored) == (6, 2, None, "months", 40, False)
    assert (s.data.commission_bps, s.data.slippage_bps, s.data.regime) == (1.0, 5.0, "ALL")
    assert s.seed_from is None


def test_phase_a_grid_has_72_combinations():
    from optimizer.study.space import grid_search_space

    s = load_spec(STUDIES / "phase_a_coarse.toml")
    assert s.sampler.name == "grid" and s.pruner.name == "none"
    g = grid_search_space(s)
    assert g == {"variant": ["A", "B", "C", "D"], "weights": ["short_heavy", "balanced", "lit_heavy"],
                 "z_window": [15, 20, 30], "exit": ["first_dist", "2x_consec_dist"]}
    assert math.prod(len(v) for v in g.values()) == 72 == s.run.n_trials
    assert s.param("buy_threshold").value == 70 and s.param("sell_threshold").value == 30
    assert (s.purge(), s.embargo()) == (40, 30)  # time_stop 40; explicit embargo 30


def test_phase_b_seeds_from_phase_a():
    s = load_spec(STUDIES / "phase_b_fine.toml")
    assert (s.seed_from.study, s.seed_from.top, s.seed_from.weight_radius) == ("phase_a_coarse", 5, 0.05)
    assert s.sampler.seed == 43
    assert s.max_z_window() == 90 and s.embargo() == 30  # explicit embargo wins over the auto value
    assert s.param("w_short").grid_values() == [0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75]


def test_multiobjective_has_three_directions_and_a_conditional_stop():
    s = load_spec(STUDIES / "multiobjective.toml")
    assert s.objective.directions == ("maximize", "maximize", "minimize")
    assert (s.sampler.name, dict(s.sampler.options), s.pruner.name) == ("nsga2", {"population_size": 30}, "none")
    sl = s.param("stop_loss")
    assert sl.when == (("use_stop_loss", (True,)),) and (sl.low, sl.high) == (0.03, 0.10)
    assert s.purge() == 40  # max(fixed_20d, hybrid_30d, time_stop 40)


@pytest.mark.parametrize("stem,regime", [("regime_risk_on", "RISK_ON"), ("regime_risk_off", "RISK_OFF")])
def test_regime_specs(stem, regime):
    s = load_spec(STUDIES / f"{stem}.toml")
    assert s.data.regime == regime and s.objective.min_trades == 2


# ------------------------------------------------------------------------------------------------ defaults
def test_empty_spec_uses_defaults_and_default_space():
    s = parse_spec("", path="some/dir/my_study.toml")
    assert s.name == "my_study" and s.run.study_name == "my_study" and s.description == ""
    assert s.param_names == list(DEFAULT_SPACE)
    assert (s.sampler.name, s.sampler.seed, s.pruner.name, s.run.n_trials) == ("tpe", 42, "median", 100)
    assert (s.objective.name, s.objective.directions, s.objective.k) == ("composite_rank", ("maximize",), 1.0)
    # default space: exits up to hybrid_30d, time_stop 60 -> purge 60; z_window up to 90 -> embargo 90
    assert (s.purge(), s.embargo()) == (60, 90)
    assert parse_spec("").name == "study"


def test_dates_are_normalized_iso_strings():
    s = parse_spec('[data]\nstart = 2023-01-03\nend = "2024-12-31"\n')
    assert (s.data.start, s.data.end) == ("2023-01-03", "2024-12-31")
    assert parse_spec('[data]\nstart = "2024-02-29"\nend = "2024-02-29"\n').data.start == "2024-02-29"


def test_max_hold_and_z_window_by_hand():
    base = '[pruner]\nname = "none"\n'
    s = parse_spec('[space]\nexit = { type = "categorical", choices = ["fixed_15d", "first_dist"] }\n'
                   'time_stop = { type = "int", low = 5, high = 12 }\n' + base)
    assert s.max_hold() == 15 and s.max_z_window() == 20  # no z_window: the engine default 20
    s = parse_spec('[space]\nexit = { type = "categorical", choices = ["fixed", "first_dist"] }\n'
                   'hold_days = { type = "int", low = 5, high = 25, step = 5 }\nz_window = 45\ntime_stop = 9\n' + base)
    assert s.max_hold() == 25 and s.max_z_window() == 45
    # an exit declared without a time limit: nothing bounds its trades, so the purge must be stated (README [cv])
    for text in ('[space]\nexit = "first_dist"\n', '[space]\nexit = { type = "categorical", choices = '
                 '["fixed_15d", "score_decay"] }\n',
                 '[space]\nexit = "2x_consec_dist"\nuse_stop_loss = true\ntime_stop = { type = "int", low = 5, '
                 'high = 9, when = { use_stop_loss = true } }\n'):
        with pytest.raises(SpecError, match=r"\[cv.purge\] is required when an exit has no time limit"):
            parse_spec(text)
    s = parse_spec('[space]\nexit = "first_dist"\n[cv]\npurge = 7\nembargo = 0\n')
    assert (s.purge(), s.embargo(), s.max_hold()) == (7, 0, 7)
    s = parse_spec('[space]\nexit = { type = "categorical", choices = ["fixed_15d", "first_dist"] }\n[cv]\npurge = 7\n')
    assert (s.purge(), s.max_hold()) == (7, 15)  # the walk-forward's purge: the longer of the two
    assert parse_spec('[space]\nexit = "first_dist"\ntime_stop = 12\n').purge() == 12
    # a space that declares no exit (the default first_dist) keeps the derived fallback
    assert parse_spec('[space]\nvariant = "B"\n').purge() == 20
    # a spec stored with a study made before the rule reads back with the purge it ran with
    assert parse_spec('[space]\nexit = "first_dist"\n', stored=True).purge() == 20


def test_param_grid_values_and_bounds():
    assert ParamSpec("w_short", "float", low=0.4, high=0.7, step=0.05).grid_values() == [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]
    assert ParamSpec("hold_days", "int", low=1, high=10, step=4).grid_values() == [1, 5, 9]
    assert ParamSpec("time_stop", "fixed", value=40).grid_values() == [40]
    assert ParamSpec("exit", "categorical", choices=("a", "b")).values_bound() is None
    assert ParamSpec("z_window", "categorical", choices=(30, 10, 60)).values_bound() == (10, 60)
    assert ParamSpec("buy_threshold", "int", low=60, high=80, step=5).values_bound() == (60.0, 80.0)
    with pytest.raises(SpecError, match=r"\[space.w_lit\] grid sampling needs a step"):
        ParamSpec("w_lit", "float", low=0.1, high=0.2).grid_values()


# ------------------------------------------------------------------------------------------------ invalid specs
SP = "[space]\n"
GRID4 = ("variant = { type = 'categorical', choices = ['A', 'B'] }\nz_window = { type = 'categorical', choices = [10, 20] }\n"
         "buy_threshold = 70\n[sampler]\nname = 'grid'\n")
MO = '[objective]\nname = "return_hit_frequency"\n'
INVALID = {
    # unknown keys, at every level
    "unknown_section": ("[foo]\nx = 1\n", "foo", ["unknown key", "valid keys: cv, data, objective, pruner, run, sampler, seed_from, space, study, walkforward"]),
    "unknown_study_key": ("[study]\ntitle = 'x'\n", "study.title", ["valid keys: description, name"]),
    "unknown_data_key": ("[data]\ncolour = 1\n", "data.colour", ["unknown key", "costs, database, end, min_periods, regime"]),
    "unknown_costs_key": ("[data.costs]\nfees = 1\n", "data.costs.fees", ["commission_bps, slippage_bps"]),
    "unknown_cv_key": ("[cv]\nfolds = 3\n", "cv.folds", ["unknown key", "n_splits", "max_train_size"]),
    "unknown_run_key": ("[run]\ntrials = 3\n", "run.trials", ["valid keys: n_trials, storage, study_name, timeout"]),
    "unknown_wf_key": ("[walkforward]\nwindow = 3\n", "walkforward.window", ["unknown key", "anchored", "top_k"]),
    "unknown_seed_from_key": ("[seed_from]\nstudy = 'a'\ncount = 3\n", "seed_from.count", ["valid keys: study, top, weight_radius"]),
    "unknown_objective_key": ("[objective]\nmetric = 'x'\n", "objective.metric", ["aggregate", "directions"]),
    "section_not_table": ("cv = 3\n", "cv", ["must be a table"]),
    # types
    "n_trials_string": ("[run]\nn_trials = '5'\n", "run.n_trials", ["must be an integer, got str '5'"]),
    "bool_for_int": ("[cv]\nn_splits = true\n", "cv.n_splits", ["must be an integer, got True"]),
    "float_for_int": ("[walkforward]\ntrain = 6.5\n", "walkforward.train", ["must be an integer, got float 6.5"]),
    "string_for_number": ("[data]\nreserve_fraction = 'a'\n", "data.reserve_fraction", ["must be an integer or a number, got str 'a'"]),
    "bool_for_seed": ("[sampler]\nseed = false\n", "sampler.seed", ["must be an integer, got False"]),
    "space_type_missing": (SP + "z_window = { choices = [10] }\n", "space.z_window.type", ["is required"]),
    # ranges of numeric parameters
    "low_gt_high": (SP + "w_short = { type = 'float', low = 0.7, high = 0.4 }\n", "space.w_short.low", ["must be <= high=0.4, got low=0.7"]),
    "step_zero": (SP + "buy_threshold = { type = 'int', low = 60, high = 80, step = 0 }\n", "space.buy_threshold.step", ["must be > 0, got step=0"]),
    "step_negative": (SP + "w_lit = { type = 'float', low = 0.2, high = 0.4, step = -0.05 }\n", "space.w_lit.step", ["must be > 0, got step=-0.05"]),
    "log_low_zero": (SP + "stop_loss = { type = 'float', low = 0.0, high = 0.1, log = true }\n", "space.stop_loss.log", ["log scale needs low > 0", "low=0.0"]),
    "log_with_step": (SP + "take_profit = { type = 'float', low = 0.1, high = 0.5, step = 0.1, log = true }\n", "space.take_profit.log", ["no step", "step=0.1"]),
    "nan_low": (SP + "w_short = { type = 'float', low = nan, high = 0.5 }\n", "space.w_short.low", ["must be a finite number, got low=nan"]),
    "int_with_float_bound": (SP + "buy_threshold = { type = 'int', low = 60.5, high = 80 }\n", "space.buy_threshold.low", ["must be an integer"]),
    "bad_param_type": (SP + "z_window = { type = 'normal', low = 1, high = 2 }\n", "space.z_window.type", ["must be one of categorical, int, float, fixed, got 'normal'"]),
    "unknown_param": (SP + "momentum = 3\n", "space.momentum", ["unknown parameter; valid: variant, w_short"]),
    "empty_choices": (SP + "variant = { type = 'categorical', choices = [] }\n", "space.variant.choices", ["must be a non-empty list"]),
    "repeated_choices": (SP + "z_window = { type = 'categorical', choices = [10, 10] }\n", "space.z_window.choices", ["must not repeat values"]),
    # equal as values: the same configuration drawn as two choices (repeat check, DSR)
    "choices_equal_as_values": (SP + "z_window = { type = 'categorical', choices = [10, 20, 20.0] }\n",
                                "space.z_window.choices", ["must not repeat a value: 20 and 20.0 are the same value"]),
    "float_choices_equal_as_values": (SP + "buy_threshold = { type = 'categorical', choices = [70.0, 75, 70] }\n",
                                      "space.buy_threshold.choices", ["70.0 and 70 are the same value"]),
    "fixed_without_value": (SP + "time_stop = { type = 'fixed' }\n", "space.time_stop.value", ["is required for type = fixed"]),
    "empty_space": ("space = {}\n", "space", ["must be a non-empty table"]),
    # value rules of engine parameters
    "sell_ge_buy": (SP + "buy_threshold = { type = 'int', low = 60, high = 80, step = 5 }\n"
                    "sell_threshold = { type = 'int', low = 20, high = 60, step = 5 }\n",
                    "space.sell_threshold", ["every sell threshold must be below every buy threshold", "max sell 60.0 >= min buy 60.0"]),
    "sell_ge_default_buy": (SP + "sell_threshold = { type = 'int', low = 20, high = 75 }\n", "space.sell_threshold", ["max sell 75.0 >= min buy 70.0 (default)"]),
    "buy_le_default_sell": (SP + "buy_threshold = 25\n", "space.buy_threshold", ["max sell 30.0 (default) >= min buy 25"]),
    "threshold_over_100": (SP + "buy_threshold = 101\n", "space.buy_threshold", ["values must be in [0, 100], got 101"]),
    "unknown_variant": (SP + "variant = { type = 'categorical', choices = ['A', 'Z'] }\n", "space.variant", ["values must be one of A, B, C, D, vw_flow, blended, got 'Z'"]),
    "z_window_too_small": (SP + "z_window = { type = 'categorical', choices = [1, 20] }\n", "space.z_window", ["an integer in [2, 252], got 1"]),
    "z_window_too_large": (SP + "z_window = { type = 'int', low = 20, high = 300 }\n", "space.z_window", ["an integer in [2, 252], got 300"]),
    "z_window_float": (SP + "z_window = 20.5\n", "space.z_window", ["an integer in [2, 252], got 20.5"]),
    "negative_weight": (SP + "w_lit = -0.1\n", "space.w_lit", ["values must be >= 0, got -0.1"]),
    "stop_loss_out_of_range": (SP + "stop_loss = 1.5\n", "space.stop_loss", ["values must be in (0, 1), got 1.5"]),
    "time_stop_zero": (SP + "time_stop = 0\n", "space.time_stop", ["values must be an integer >= 1, got 0"]),
    "unknown_exit": (SP + "exit = { type = 'categorical', choices = ['first_dist', 'hold_forever'] }\n", "space.exit",
                     ["got exit='hold_forever'", "fixed_10d", "fixed_<N>d / hybrid_<M>d"]),
    "fixed_exit_without_hold_days": (SP + "exit = { type = 'categorical', choices = ['fixed', 'first_dist'] }\n", "space.hold_days", ["is required when exit may be 'fixed'"]),
    "hybrid_exit_without_max_days": (SP + "exit = 'hybrid'\n", "space.max_days", ["is required when exit may be 'hybrid'"]),
    # a step that does not divide high - low: Optuna would search only up to the last grid point below high
    "int_step_not_dividing": (SP + "z_window = { type = 'int', low = 10, high = 30, step = 7 }\n", "space.z_window.step",
                              ["must divide high - low", "stop at 24", "high = 30 would never be searched", "got step=7"]),
    "float_step_not_dividing": (SP + "w_short = { type = 'float', low = 0.4, high = 0.7, step = 0.25 }\n", "space.w_short.step",
                                ["must divide high - low", "stop at 0.65", "high = 0.7 would never be searched"]),
    # hold_days / max_days are read only by the bare fixed / hybrid exits: anywhere else they are ignored
    "hold_days_with_a_named_fixed_exit": (SP + "exit = 'fixed_10d'\nhold_days = { type = 'int', low = 5, high = 20 }\n",
                                          "space.hold_days", ["has no effect", "exit here can only be 'fixed_10d'"]),
    "max_days_with_the_default_exit": (SP + "max_days = 25\n", "space.max_days",
                                       ["has no effect", "only exit = 'hybrid' takes max_days", "only be 'first_dist'"]),
    # ... and a fixed exit whose hold_days is switched off by its own condition fails every such trial
    "hold_days_off_when_exit_is_fixed": (SP + "exit = { type = 'categorical', choices = ['fixed', 'first_dist'] }\n"
                                         "hold_days = { type = 'int', low = 5, high = 20, when = { exit = 'first_dist' } }\n",
                                         "space.hold_days.when", ["must hold whenever exit = 'fixed'", "exit = 'first_dist'"]),
    "max_days_off_when_exit_is_hybrid": (SP + "variant = { type = 'categorical', choices = ['B', 'C'] }\nexit = 'hybrid'\n"
                                         "max_days = { type = 'int', low = 5, high = 20, when = { variant = 'B' } }\n",
                                         "space.max_days.when", ["must hold whenever exit = 'hybrid'", "variant = 'B'"]),
    # the pooled rules between entries hold on each regime's sessions too (the engine refuses them mid-run)
    "regime_buy_not_above_sell": (SP + "buy_threshold_risk_on = { type = 'int', low = 20, high = 80, step = 5 }\n",
                                  "space.buy_threshold_risk_on",
                                  ["every sell threshold must be below every buy threshold on RISK_ON sessions",
                                   "max sell 30.0 (default) >= min buy_threshold_risk_on 20"]),
    "regime_buy_below_declared_sell": (SP + "sell_threshold = { type = 'int', low = 20, high = 40, step = 5 }\n"
                                       "buy_threshold_risk_off = 40\n", "space.buy_threshold_risk_off",
                                       ["on RISK_OFF sessions", "max sell 40.0 >= min buy_threshold_risk_off 40"]),
    "regime_weights_all_zero": (SP + "w_short_transitional = 0\nw_lit_transitional = { type = 'float', low = 0.0, "
                                "high = 0.4, step = 0.1 }\nw_price_transitional = 0\n", "space.w_short_transitional",
                                ["the three weights on TRANSITIONAL sessions can all be 0 at once", "0, 0, 0"]),
    "regime_weights_zero_with_pooled_zero": (SP + "w_short = { type = 'float', low = 0.0, high = 0.5, step = 0.1 }\n"
                                             "w_lit_risk_on = 0\nw_price_risk_on = 0\n", "space.w_lit_risk_on",
                                             ["on RISK_ON sessions can all be 0"]),
    # a grid study runs each configuration once, then Optuna's GridSampler stops it: more trials are never reached
    "grid_n_trials_above_its_size": (SP + GRID4 + "[run]\nn_trials = 5\n", "run.n_trials",
                                     ["must be <= 4, the configurations of the grid", "got n_trials=5"]),
    "grid_wf_n_trials_above_its_size": (SP + GRID4 + "[walkforward]\nn_trials = 9\n", "walkforward.n_trials",
                                        ["must be <= 4", "got n_trials=9"]),
    # a pruner option that keeps the pruner from ever reaching a fold a trial reports: nothing is ever pruned
    "pruner_warmup_past_the_folds": ("[cv]\nn_splits = 3\n[pruner]\nname = 'median'\nn_warmup_steps = 3\n",
                                     "pruner.n_warmup_steps", ["leaves no fold to prune at", "fold 3 (0-based)",
                                                               "folds 0..2", "[cv] n_splits = 3", "got n_warmup_steps=3"]),
    "percentile_warmup_past_cpcv_groups": ("[cv]\nmode = 'cpcv'\nn_groups = 4\n[pruner]\nname = 'percentile'\n"
                                           "percentile = 25.0\nn_warmup_steps = 4\n", "pruner.n_warmup_steps",
                                           ["folds 0..3 ([cv] n_groups = 4)"]),
    "wilcoxon_startup_past_the_folds": ("[pruner]\nname = 'wilcoxon'\nn_startup_steps = 5\n", "pruner.n_startup_steps",
                                        ["leaves no fold to prune at", "folds 0..3"]),
    "wilcoxon_on_one_fold": ("[cv]\nn_splits = 1\n[walkforward]\nn_splits = 1\n[pruner]\nname = 'wilcoxon'\n",
                             "pruner.name", ["'wilcoxon' can stop a trial at is fold 1", "folds 0..0"]),
    "halving_min_resource_past_the_folds": ("[pruner]\nname = 'successive_halving'\nmin_resource = 2\n"
                                            "min_early_stopping_rate = 1\n", "pruner.min_resource",
                                            ["fold 8 (0-based)", "folds 0..3"]),
    # the regime filter opens positions on one regime's closes only: another regime's buy threshold is never read
    "other_regime_buy_threshold_under_a_filter": ("[data]\nregime = 'RISK_ON'\n" + SP + "buy_threshold_risk_on = 75\n"
                                                  "buy_threshold_risk_off = { type = 'int', low = 60, high = 90, step = 5 }\n",
                                                  "space.buy_threshold_risk_off",
                                                  ["has no effect with [data] regime = 'RISK_ON'", "RISK_OFF threshold"]),
    # a sizing / risk-rule parameter read only under a setting the space never takes changes no trade
    "risk_fraction_with_equal_sizing": (SP + "risk_fraction = { type = 'float', low = 0.01, high = 0.05 }\n",
                                        "space.risk_fraction", ["has no effect", "sizing = 'fixed_fractional' or 'kelly'",
                                                                "sizing here can only be 'equal'"]),
    "kelly_window_with_fixed_fractional": (SP + "sizing = { type = 'categorical', choices = ['atr', 'fixed_fractional'] }\n"
                                           "kelly_window = 20\n", "space.kelly_window",
                                           ["read only with sizing = 'kelly'", "'atr', 'fixed_fractional'"]),
    "dd_cooloff_without_breaker": (SP + "dd_cooloff = { type = 'int', low = 5, high = 20 }\n", "space.dd_cooloff",
                                   ["read only with dd_breaker set", "dd_breaker here can only be none"]),
    "corr_window_without_cap": (SP + "corr_window = 30\n", "space.corr_window", ["read only with corr_cap set"]),
    # min_periods is capped at each z-window (whose default it is): at or above the largest it changes nothing
    "min_periods_at_the_largest_window": ("[data]\nmin_periods = 30\n" + SP + "z_window = { type = 'categorical', "
                                          "choices = [10, 20, 30] }\ntime_stop = 9\n", "data.min_periods",
                                          ["has no effect", "the largest z_window the space allows is 30",
                                           "got min_periods=30"]),
    "min_periods_above_the_only_window": ("[data]\nmin_periods = 25\n" + SP + "z_window = 20\ntime_stop = 9\n",
                                          "data.min_periods", ["largest z_window the space allows is 20"]),
    # a condition that can never hold leaves its parameter unsearched
    "when_empty_list": (SP + "use_stop_loss = { type = 'categorical', choices = [true, false] }\n"
                        "stop_loss = { type = 'float', low = 0.01, high = 0.1, when = { use_stop_loss = [] } }\n",
                        "space.stop_loss.when.use_stop_loss", ["must name at least one value", "got []"]),
    "when_value_off_the_grid": (SP + "buy_threshold = { type = 'int', low = 60, high = 80, step = 5 }\n"
                                "stop_loss = { type = 'float', low = 0.01, high = 0.1, when = { buy_threshold = 62 } }\n",
                                "space.stop_loss.when.buy_threshold", ["must be a value buy_threshold can take", "got 62"]),
    "when_on_a_continuous_range": (SP + "w_short = { type = 'float', low = 0.4, high = 0.7 }\n"
                                   "stop_loss = { type = 'float', low = 0.01, high = 0.1, when = { w_short = 0.5 } }\n",
                                   "space.stop_loss.when.w_short", ["continuous range", "only by chance", "got 0.5"]),
    "weights_with_w_short": (SP + "weights = 'balanced'\nw_short = 0.5\n", "space.weights", ["use either the weights preset or w_short/w_lit/w_price, not both"]),
    "unknown_weights_preset": (SP + "weights = { type = 'categorical', choices = ['balanced', 'heavy'] }\n", "space.weights",
                               ["choices must be among short_heavy, balanced, lit_heavy, got ['heavy']"]),
    "when_later_param": (SP + "variant = 'A'\nstop_loss = { type = 'float', low = 0.01, high = 0.1, when = { use_stop_loss = true } }\n"
                         "use_stop_loss = { type = 'categorical', choices = [true, false] }\n",
                         "space.stop_loss.when.use_stop_loss", ["must name a parameter declared before 'stop_loss'; declared so far: variant"]),
    # [data]
    "invalid_date": ("[data]\nstart = '2023-02-30'\n", "data.start", ["must be a date (YYYY-MM-DD), got '2023-02-30'"]),
    "compact_date": ("[data]\nstart = '20230105'\nend = '2023-06-01'\n", "data.start", ["must be a date (YYYY-MM-DD), got '20230105'"]),
    "iso_week_date": ("[data]\nend = '2023-W01-1'\n", "data.end", ["must be a date (YYYY-MM-DD)"]),
    "datetime_not_date": ("[data]\nstart = 2023-01-03T10:00:00\n", "data.start", ["must be a date (YYYY-MM-DD), got datetime"]),
    "number_date": ("[data]\nend = 20230105\n", "data.end", ["must be a date (YYYY-MM-DD), got 20230105"]),
    "start_after_end": ("[data]\nstart = '2023-06-01'\nend = '2023-01-01'\n", "data.start", ["must be <= end=2023-01-01, got start=2023-06-01"]),
    "unknown_regime": ("[data]\nregime = 'SIDEWAYS'\n", "data.regime", ["must be one of " + ", ".join(REGIMES), "got 'SIDEWAYS'"]),
    "negative_cost": ("[data.costs]\nslippage_bps = -1\n", "data.costs.slippage_bps", ["must be >= 0, got slippage_bps=-1"]),
    "reserve_too_big": ("[data]\nreserve_fraction = 0.95\n", "data.reserve_fraction", ["must be in [0, 0.9), got reserve_fraction=0.95"]),
    "bad_universe": ("[data]\nuniverse = [1, 2]\n", "data.universe", ["must be tier1, tier3"]),
    "min_periods_one": ("[data]\nmin_periods = 1\n", "data.min_periods", ["must be >= 2, got min_periods=1"]),
    # [cv]
    "negative_purge": ("[cv]\npurge = -1\n", "cv.purge", ["must be >= 0, got purge=-1"]),
    "negative_embargo": ("[cv]\nembargo = -2\n", "cv.embargo", ["must be >= 0, got embargo=-2"]),
    "zero_splits": ("[cv]\nn_splits = 0\n", "cv.n_splits", ["must be >= 1, got n_splits=0"]),
    "test_size_one": ("[cv]\ntest_size = 1\n", "cv.test_size", ["must be >= 2, got test_size=1"]),
    "rolling_has_no_effect": ("[cv]\nmode = 'rolling'\n", "cv.mode", ["rolling has no effect on a study", "use expanding"]),
    "max_train_has_no_effect": ("[cv]\nmax_train_size = 100\n", "cv.max_train_size", ["has no effect on a study"]),
    "rolling_max_below_min": ("[cv]\nmin_train_size = 50\nmax_train_size = 40\n", "cv.max_train_size",
                              ["must be >= min_train_size=50, got max_train_size=40"]),
    "unknown_cv_mode": ("[cv]\nmode = 'shuffled'\n", "cv.mode", ["must be one of expanding, cpcv, got 'shuffled'"]),
    "cpcv_with_n_splits": ("[cv]\nmode = 'cpcv'\nn_splits = 4\n", "cv.n_splits",
                           ["applies to mode = expanding only, not mode = 'cpcv'"]),
    "cpcv_with_max_train": ("[cv]\nmode = 'cpcv'\nmax_train_size = 100\n", "cv.max_train_size", ["applies to mode = expanding"]),
    "groups_without_cpcv": ("[cv]\nn_groups = 6\n", "cv.n_groups", ["applies to mode = cpcv only, not mode = 'expanding'"]),
    "cpcv_two_groups": ("[cv]\nmode = 'cpcv'\nn_groups = 2\n", "cv.n_groups", ["must be >= 3, got n_groups=2"]),
    "cpcv_all_groups_tested": ("[cv]\nmode = 'cpcv'\nn_groups = 5\nn_test_groups = 5\n", "cv.n_test_groups",
                               ["must be < n_groups=5, got n_test_groups=5"]),
    "cpcv_zero_test_groups": ("[cv]\nmode = 'cpcv'\nn_test_groups = 0\n", "cv.n_test_groups", ["must be >= 1, got n_test_groups=0"]),
    "cpcv_too_many_splits": ("[cv]\nmode = 'cpcv'\nn_groups = 30\nn_test_groups = 10\n", "cv.n_test_groups",
                             ["C(n_groups, n_test_groups) <= 100,000 splits"]),
    "cpcv_walkforward_n_splits": ("[cv]\nmode = 'cpcv'\n[walkforward]\nn_splits = 3\n", "walkforward.n_splits",
                                  ["does not apply with cv.mode = 'cpcv'"]),
    # [sampler] / [pruner]
    "unknown_sampler": ("[sampler]\nname = 'bayes'\n", "sampler.name", ["must be one of grid, random, tpe, cmaes, qmc, nsga2, gp, got 'bayes'"]),
    "unknown_pruner": ("[pruner]\nname = 'early'\n", "pruner.name",
                       ["must be one of none, median, percentile, successive_halving, hyperband, wilcoxon, got 'early'"]),
    "unknown_sampler_option": ("[sampler]\nname = 'tpe'\nn_startup = 5\n", "sampler.n_startup",
                               ["is not an option of 'tpe'; valid: ", "n_startup_trials", "n_ei_candidates", "multivariate"]),
    "negative_n_startup_trials": ("[sampler]\nname = 'tpe'\nn_startup_trials = -1\n", "sampler.n_startup_trials",
                                  ["must be >= 0", "got n_startup_trials=-1"]),
    "unknown_grid_option": ("[sampler]\nname = 'grid'\nsearch_space = 1\n", "sampler.search_space", ["is not an option of 'grid'; valid: none"]),
    "unknown_pruner_option": ("[pruner]\nname = 'median'\nwarmup = 3\n", "pruner.warmup",
                              ["is not an option of 'median'; valid: n_startup_trials, n_warmup_steps, interval_steps, n_min_trials"]),
    "nop_pruner_option": ("[pruner]\nname = 'none'\nn_startup_trials = 3\n", "pruner.n_startup_trials", ["is not an option of 'none'; valid: none"]),
    "bad_pruner_option_value": ("[pruner]\nname = 'percentile'\npercentile = 200\n", "pruner", ["'percentile' rejected its options", "200"]),
    "missing_pruner_option": ("[pruner]\nname = 'percentile'\n", "pruner", ["'percentile' rejected its options {}", "percentile"]),
    "bad_sampler_option_value": ("[sampler]\nname = 'nsga2'\npopulation_size = 1\n", "sampler", ["'nsga2' rejected its options {'population_size': 1}"]),
    "grid_with_conditional": (SP + "use_stop_loss = { type = 'categorical', choices = [true, false] }\n"
                              "stop_loss = { type = 'float', low = 0.02, high = 0.1, step = 0.02, when = { use_stop_loss = true } }\n"
                              "[sampler]\nname = 'grid'\n", "space.stop_loss.when", ["grid sampling cannot use conditional parameters"]),
    "grid_float_without_step": (SP + "w_short = { type = 'float', low = 0.4, high = 0.7 }\n[sampler]\nname = 'grid'\n",
                                "space.w_short", ["grid sampling needs a step"]),
    # [objective]
    "unknown_objective": ("[objective]\nname = 'composite'\n", "objective.name",
                          ["must be one of composite_rank, composite_rank_excess, hit_rate, avg_return", "'module.path:ClassName'", "got 'composite'"]),
    "objective_module_missing": ("[objective]\nname = 'no_such_module_xyz:Obj'\n", "objective.name",
                                 ["cannot import 'no_such_module_xyz:Obj'", "ModuleNotFoundError"]),
    "objective_empty_module": ("[objective]\nname = ':Obj'\n", "objective.name", ["cannot import ':Obj'"]),
    "objective_missing_class": ("[objective]\nname = 'objectives.builtin:Nope'\n", "objective.name", ["cannot import 'objectives.builtin:Nope'", "Nope"]),
    "objective_not_objective": ("[objective]\nname = 'math:sqrt'\n", "objective.name", ["must be a subclass of objectives.Objective"]),
    "direction_count": (MO + "directions = ['maximize']\n[pruner]\nname = 'none'\n", "objective.directions",
                        ["objective 'return_hit_frequency' returns 3 value(s), got 1 direction(s)"]),
    "direction_count_single": ("[objective]\ndirections = ['maximize', 'minimize']\n", "objective.directions", ["returns 1 value(s), got 2 direction(s)"]),
    "bad_direction": ("[objective]\ndirection = 'up'\n", "objective.directions[0]", ["must be maximize or minimize, got 'up'"]),
    "both_directions": ("[objective]\ndirection = 'maximize'\ndirections = ['maximize']\n", "objective.directions", ["either direction or directions"]),
    "bad_aggregate": ("[objective]\naggregate = 'max'\n", "objective.aggregate", ["must be one of mean, median, mean_minus_std, got 'max'"]),
    "negative_k": ("[objective]\naggregate = 'mean_minus_std'\nk = -1\n", "objective.k", ["must be a finite number >= 0, got k=-1"]),
    "negative_min_trades": ("[objective]\nmin_trades = -1\n", "objective.min_trades", ["must be >= 0"]),
    "multiobjective_with_pruner": (MO + "[pruner]\nname = 'median'\n", "pruner.name", ["multi-objective studies cannot prune", 'use name = "none"']),
    "multiobjective_cmaes": (MO + "[sampler]\nname = 'cmaes'\n[pruner]\nname = 'none'\n", "sampler.name", ["'cmaes' does not support multi-objective"]),
    # [run] / [walkforward] / [seed_from]
    "zero_trials": ("[run]\nn_trials = 0\n", "run.n_trials", ["must be >= 1, got n_trials=0"]),
    "zero_timeout": ("[run]\ntimeout = 0\n", "run.timeout", ["must be > 0 seconds, got timeout=0"]),
    "wf_unit": ("[walkforward]\nunit = 'weeks'\n", "walkforward.unit", ["must be months or sessions, got 'weeks'"]),
    # a searched pooled buy_threshold beside a threshold of their own for every regime that can enter: no effect
    "pooled_buy_with_every_regime_threshold": (
        SP + "buy_threshold = { type = 'int', low = 60, high = 80, step = 5 }\nbuy_threshold_risk_on = 65\n"
             "buy_threshold_transitional = { type = 'int', low = 60, high = 70, step = 5 }\nbuy_threshold_risk_off = 75\n",
        "space.buy_threshold", ["has no effect on any trade", "every session is RISK_ON, TRANSITIONAL or RISK_OFF",
                                "buy_threshold_risk_on, buy_threshold_risk_off, buy_threshold_transitional"]),
    "pooled_buy_under_a_filter_with_its_threshold": (
        "[data]\nregime = 'RISK_ON'\n" + SP + "buy_threshold = { type = 'categorical', choices = [60, 70] }\n"
        "buy_threshold_risk_on = 65\n", "space.buy_threshold",
        ["has no effect on any trade", "[data] regime = 'RISK_ON' opens positions on RISK_ON closes only",
         "buy_threshold_risk_on decides those entries"]),
    "wf_select": ("[walkforward]\nselect = 'top'\n", "walkforward.select", ["must be best or robust, got 'top'"]),
    # top_k is read by select = robust only: with best (the default) it was accepted and ignored
    "wf_top_k_with_default_select": ("[walkforward]\ntop_k = 3\n", "walkforward.top_k",
                                     ['is read by select = "robust" only', 'with select = "best"', "would be ignored"]),
    "wf_top_k_with_select_best": ("[walkforward]\nselect = 'best'\ntop_k = 5\n", "walkforward.top_k",
                                  ['is read by select = "robust" only']),
    "wf_test_zero": ("[walkforward]\ntest = 0\n", "walkforward.test", ["must be >= 1, got test=0"]),
    "wf_negative_purge": ("[walkforward]\npurge = -1\n", "walkforward.purge", ["must be >= 0, got purge=-1"]),
    # overlapping test windows: every common session traded by two winners, its trades counted twice
    "wf_step_below_test": ("[walkforward]\ntest = 2\nstep = 1\n", "walkforward.step",
                           ["must be >= test (2)", "count those trades twice", "got step=1"]),
    "wf_step_below_default_test": ("[walkforward]\nstep = 1\n", "walkforward.step", ["must be >= test (2)"]),
    "seed_from_without_study": ("[seed_from]\ntop = 3\n", "seed_from.study", ["is required"]),
    "seed_from_radius": ("[seed_from]\nstudy = 'a'\nweight_radius = 0.9\n", "seed_from.weight_radius", ["must be in [0, 0.5], got weight_radius=0.9"]),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_spec_names_key_and_rule(case):
    text, key, parts = INVALID[case]
    e = _err(text)
    assert e.key == key, str(e)
    assert e.file == "x.toml"
    msg = str(e)
    assert msg.startswith(f"x.toml: [{key}] "), msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_invalid_toml_names_the_file():
    e = _err("[cv\nn_splits = 3\n", path="studies/broken.toml")
    assert e.file == "studies/broken.toml" and e.key == "toml"
    assert str(e).startswith("studies/broken.toml: [toml] is not valid TOML")
    assert "line 1" in str(e)


def test_error_without_path_has_no_file_prefix():
    e = _err("[run]\nn_trials = 0\n", path=None)
    assert e.file is None and str(e) == "[run.n_trials] must be >= 1, got n_trials=0"


def test_load_spec_missing_and_broken_files(tmp_path):
    with pytest.raises(SpecError) as ei:
        load_spec(tmp_path / "nope.toml")
    assert ei.value.key == "file" and str(ei.value) == f"{tmp_path / 'nope.toml'}: [file] does not exist"
    p = tmp_path / "bad.toml"
    p.write_text("[cv]\npurge = -3\n", encoding="utf-8")
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    assert str(ei.value) == f"{p}: [cv.purge] must be >= 0, got purge=-3"


def test_a_stored_spec_reads_back_under_the_step_and_exit_day_rules():
    """A study made before these rules keeps reading back its spec (``stored``): its trials ran with it."""
    text = ("[space]\nz_window = { type = 'int', low = 10, high = 30, step = 7 }\nexit = 'fixed_10d'\n"
            "hold_days = { type = 'int', low = 5, high = 20 }\nbuy_threshold_risk_on = 25\n")
    with pytest.raises(SpecError):
        parse_spec(text)
    s = parse_spec(text, stored=True)
    assert s.param("z_window").step == 7 and s.param("hold_days").low == 5
    assert s.param("buy_threshold_risk_on").value == 25


def test_a_stored_spec_with_equal_choices_or_a_negative_startup_reads_back():
    text = "[space]\nz_window = { type = 'categorical', choices = [20, 20.0] }\n[sampler]\nn_startup_trials = -2\n"
    with pytest.raises(SpecError):
        parse_spec(text)
    s = parse_spec(text, stored=True)  # its trials ran with it
    assert s.param("z_window").choices == (20, 20.0) and s.sampler.options == {"n_startup_trials": -2}
    assert parse_spec("[sampler]\nn_startup_trials = 0\n").sampler.options == {"n_startup_trials": 0}


def test_a_pooled_buy_threshold_is_searched_where_some_session_takes_it():
    buy = "buy_threshold = { type = 'int', low = 60, high = 80, step = 5 }\n"
    two = "buy_threshold_risk_on = 65\nbuy_threshold_transitional = 65\n"
    assert parse_spec(SP + buy + two).param("buy_threshold").high == 80  # RISK_OFF sessions take it
    # RISK_OFF's own threshold only with variant A: with B its sessions take the pooled one
    assert parse_spec(SP + "variant = { type = 'categorical', choices = ['A', 'B'] }\n" + buy + two +
                      "buy_threshold_risk_off = { type = 'fixed', value = 70, when = { variant = 'A' } }\n")
    assert parse_spec(SP + "buy_threshold = 75\n" + two + "buy_threshold_risk_off = 70\n")  # fixed: one configuration
    assert parse_spec("[data]\nregime = 'RISK_ON'\n" + SP + buy)  # the filtered regime takes the pooled threshold
    all3 = SP + buy + two + "buy_threshold_risk_off = 70\n"
    with pytest.raises(SpecError):
        parse_spec(all3)
    assert parse_spec(all3, stored=True).param("buy_threshold").low == 60  # a stored spec reads back


def test_walkforward_top_k_is_taken_with_robust_and_a_stored_spec_with_best_reads_back():
    assert parse_spec("[walkforward]\nselect = 'robust'\ntop_k = 3\n").walkforward.top_k == 3
    s = parse_spec("[walkforward]\nselect = 'best'\ntop_k = 3\n", stored=True)  # its windows ran with best
    assert (s.walkforward.select, s.walkforward.top_k) == ("best", 3)


def test_a_grid_study_asks_for_at_most_its_configurations(tmp_path):
    s = parse_spec(SP + GRID4)  # [run] n_trials not given: the grid's 4, not 100
    assert s.run.n_trials == 4 and parse_spec(SP + GRID4 + "[run]\nn_trials = 3\n").run.n_trials == 3
    assert parse_spec(SP + GRID4 + "[run]\nn_trials = 9\n", stored=True).run.n_trials == 9  # a stored spec reads back
    with pytest.raises(ParameterError, match=r"n_trials must be <= 4, the configurations of the grid.*got n_trials=5"):
        run_study(s, tmp_path / "nowhere.duckdb", n_trials=5)  # refused before any data is read


def test_valid_edge_cases_are_accepted():
    # multi-objective with an explicit "none" pruner, expanding folds after a minimum train span, a weights preset
    # as fixed value
    s = parse_spec(MO + "[pruner]\nname = 'none'\n[cv]\nmode = 'expanding'\nmin_train_size = 250\n"
                   "purge = 20\n[space]\nweights = 'lit_heavy'\nexit = 'first_dist'\n")
    assert s.cv.mode == "expanding" and s.cv.min_train_size == 250 and len(s.objective.directions) == 3
    assert s.param("weights").value == "lit_heavy" and "lit_heavy" in WEIGHT_PRESETS
    # a step that divides the range, hold_days / max_days on whenever their exit is drawn, a condition on a grid value
    s = parse_spec("[space]\nw_short = { type = 'float', low = 0.4, high = 0.7, step = 0.05 }\n"
                   "buy_threshold = { type = 'int', low = 60, high = 80, step = 5 }\n"
                   "exit = { type = 'categorical', choices = ['fixed', 'hybrid', 'fixed_10d'] }\n"
                   "hold_days = { type = 'int', low = 5, high = 20, step = 5, when = { exit = 'fixed' } }\n"
                   "max_days = { type = 'int', low = 10, high = 40, when = { exit = ['hybrid', 'fixed'] } }\n"
                   "stop_loss = { type = 'float', low = 0.01, high = 0.1, when = { buy_threshold = 65 } }\n")
    assert s.param("w_short").distribution().high == 0.7 and s.param("stop_loss").when == (("buy_threshold", (65,)),)
    # a regime's zero weights beside a positive pooled one, a regime buy threshold above every sell threshold
    s = parse_spec("[space]\nw_short_risk_on = 0\nw_lit_risk_on = 0\nsell_threshold = 35\n"
                   "buy_threshold_risk_on = { type = 'int', low = 40, high = 80, step = 5 }\ntime_stop = 9\n")
    assert s.param("buy_threshold_risk_on").low == 40
    # a gated parameter with its setting among the values the space can take
    s = parse_spec("[space]\nsizing = { type = 'categorical', choices = ['equal', 'kelly'] }\nkelly_fraction = 0.3\n"
                   "max_weight = 0.2\ndd_breaker = { type = 'float', low = 0.1, high = 0.3 }\ndd_cooloff = 5\ntime_stop = 9\n")
    assert s.param("kelly_fraction").value == 0.3 and s.param("dd_cooloff").value == 5
    # the filter's own regime threshold, and a learned-regime filter (another labeller), keep them
    for regime in ("RISK_ON", "BULL_LOW_VOL"):
        s = parse_spec(f"[data]\nregime = '{regime}'\n[space]\nbuy_threshold_risk_on = 75\ntime_stop = 9\n"
                       + ("buy_threshold_transitional = 72\n" if regime != "RISK_ON" else ""))
        assert s.param("buy_threshold_risk_on").value == 75
    # a pruner that can act on a walk-forward window's folds though not on the study's, or only at the last fold
    s = parse_spec("[cv]\nn_splits = 2\n[walkforward]\nn_splits = 5\n[pruner]\nname = 'median'\nn_warmup_steps = 3\n")
    assert s.pruner.options["n_warmup_steps"] == 3
    assert parse_spec("[pruner]\nname = 'hyperband'\nmin_resource = 3\n").pruner.options["min_resource"] == 3
    s = parse_spec("[pruner]\nname = 'percentile'\npercentile = 25.0\n")
    assert dict(s.pruner.options) == {"percentile": 25.0}
    s = parse_spec("[objective]\nname = 'objectives.builtin:HitRate'\ndirection = 'minimize'\n")
    assert s.objective.directions == ("minimize",)


# ------------------------------------------------------------------------------------------------ spec_hash
BASE = """
[study]
name = "h"
description = "first"

[data]
universe = "tier1"
regime = "ALL"

[space]
variant = { type = "categorical", choices = ["A", "B"] }
z_window = 20
exit = "first_dist"
time_stop = 20

[run]
n_trials = 10

[walkforward]
train = 6
"""


def _hash(text: str) -> str:
    return parse_spec(text, path="h.toml").spec_hash


@pytest.mark.parametrize("old,new", [
    ("n_trials = 10", "n_trials = 500\ntimeout = 60"),
    ("train = 6", "train = 12\ntest = 3\nn_trials = 9"),
    ('description = "first"', 'description = "a different story"'),
    ('description = "first"', ""),
    ('universe = "tier1"', '# a comment\nuniverse   =   "tier1"   # same value'),
])
def test_spec_hash_ignores_run_walkforward_description_and_formatting(old, new):
    assert old in BASE
    assert _hash(BASE.replace(old, new)) == _hash(BASE)


@pytest.mark.parametrize("old,new", [
    ('choices = ["A", "B"]', 'choices = ["A", "C"]'),
    ("z_window = 20", "z_window = 30"),
    ('universe = "tier1"', 'universe = "tier3"'),
    ('regime = "ALL"', 'regime = "RISK_ON"'),
    ("[run]", "[cv]\npurge = 3\n[run]"),
    ("[run]", "[sampler]\nseed = 7\n[run]"),
])
def test_spec_hash_changes_with_space_data_cv_sampler(old, new):
    assert old in BASE
    assert _hash(BASE.replace(old, new)) != _hash(BASE)


def test_differences_name_what_the_hash_covers_and_changed():
    """``StudySpec.differences``: what a refused resume names (the study's stored spec text against this spec),
    exactly the keys ``spec_hash`` covers; every pair of texts with other hashes names at least one key."""
    spec = lambda t: parse_spec(t, path="h.toml")  # noqa: E731
    base = spec(BASE)
    assert base.differences(BASE) is None  # same text
    unhashed = BASE.replace('description = "first"', 'description = "x"').replace("train = 6", "train = 9")
    assert base.differences(unhashed) is None
    assert base.differences(None) is None and base.differences("") is None and base.differences("[broken") is None
    z = spec(BASE.replace("z_window = 20", "z_window = 30"))
    assert z.differences(BASE) == "[space.z_window] 20 -> 30"
    assert base.differences(z.source) == "[space.z_window] 30 -> 20"
    added = spec(BASE.replace("[run]", "[cv]\npurge = 3\n[run]"))
    assert added.differences(BASE) == "[cv.purge] (not set) -> 3"
    many = spec(BASE.replace('choices = ["A", "B"]', 'choices = ["A", "C"]').replace("z_window = 20", "z_window = 30")
                .replace('universe = "tier1"', 'universe = "tier3"').replace('regime = "ALL"', 'regime = "RISK_ON"'))
    assert many.differences(BASE) == ('[data.regime] "ALL" -> "RISK_ON", [data.universe] "tier1" -> "tier3", '
                                      '[space.variant.choices] ["A", "B"] -> ["A", "C"] and 1 more')
    for old, new in [('choices = ["A", "B"]', 'choices = ["A", "C"]'), ('regime = "ALL"', 'regime = "RISK_ON"'),
                     ("[run]", "[sampler]\nseed = 7\n[run]")]:
        changed = spec(BASE.replace(old, new))
        assert changed.spec_hash != base.spec_hash and changed.differences(BASE)


def test_an_objective_reading_a_metric_the_folds_lack_is_refused(tmp_path, monkeypatch):
    """A custom objective whose metrics name a key a fold's metrics do not hold failed every trial with a KeyError
    traceback; the spec names it, with the metrics there are (a stored spec still reads back)."""
    (tmp_path / "typo_objectives.py").write_text(
        "from objectives import Objective\n\n\nclass Typo(Objective):\n    name = 'typo'\n    metrics = ('hit_rat',)\n\n\n"
        "class Fine(Objective):\n    name = 'fine'\n    metrics = ('excess_sharpe',)\n\n\n"
        "class Picky(Objective):\n    name = 'picky'\n    metrics = ('hit_rate',)\n\n"
        "    def fold_values(self, m):\n        return (m['avg_return'] / (m['hit_rate'] - 1.0),)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = "[objective]\nname = 'typo_objectives:Typo'\n"
    e = _err(text)
    assert e.key == "objective.name" and "reads the metric 'hit_rat', which a fold's metrics do not hold" in str(e)
    assert "hit_rate" in str(e)
    assert parse_spec(text, stored=True).objective.name == "typo_objectives:Typo"
    assert parse_spec("[objective]\nname = 'typo_objectives:Fine'\n").objective.name == "typo_objectives:Fine"
    # an objective whose arithmetic fails on the stand-in values (not a missing metric) is left to its trials
    assert parse_spec("[objective]\nname = 'typo_objectives:Picky'\n").objective.name == "typo_objectives:Picky"


def test_sampler_options_are_tried_past_the_startup_trials(capfd):
    """TPE's own model starts after n_startup_trials (10): an option only it uses (n_ei_candidates = 0,
    prior_weight < 0) passed the spec's 4 stand-in trials and the study stopped at trial 11 with a traceback. The
    stand-in run now reaches the model; its failure is one line, without Optuna's warning and traceback."""
    space = "[space]\nw_short = { type = 'float', low = 0.4, high = 0.7 }\nz_window = { type = 'int', low = 10, high = 40 }\n"
    for opt, msg in (("n_ei_candidates = 0", "IndexError"), ("prior_weight = -1.0", "non-negative value")):
        e = _err(space + f"[sampler]\nname = 'tpe'\n{opt}\n")
        assert e.key == "sampler" and "its options fail when used" in str(e) and msg in str(e), str(e)
    assert "Traceback" not in capfd.readouterr().err
    # the startup is only shortened for the stand-in: the spec keeps the user's value
    s = parse_spec(space + "[sampler]\nname = 'tpe'\nn_startup_trials = 20\nmultivariate = true\n")
    assert s.sampler.options == {"n_startup_trials": 20, "multivariate": True}


def test_a_sampler_whose_package_is_missing_is_refused_naming_it():
    """cmaes and gp import a package (cmaes, torch) when they first sample a numeric parameter: without it the
    spec is refused naming the package (it was accepted, and the run failed at the first model trial)."""
    import importlib.util
    space = "[space]\nw_short = { type = 'float', low = 0.4, high = 0.7 }\n"
    for sampler, package in (("cmaes", "cmaes"), ("gp", "torch")):
        text = space + f"[sampler]\nname = '{sampler}'\n"
        if importlib.util.find_spec(package) is not None:
            assert parse_spec(text).sampler.name == sampler
        else:
            e = _err(text)
            assert e.key == "sampler" and f"needs the Python package '{package}'" in str(e), str(e)
