"""Tests of optimizer.study.space (suggest / params_to_config / grid / distributions), the objectives registry and
objective arithmetic (hand-computed), and optimizer.study.registry (samplers and pruners built from spec options)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from objectives import OBJECTIVES, Objective, aggregate, make_objective, resolve_objective
from objectives.builtin import CompositeRank, CompositeRankExcess, ReturnHitFrequency, SignalEfficiency
from optimizer.engine.evaluate import Config
from optimizer.engine.metrics import METRIC_KEYS, rank_score
from optimizer.engine.simulate import Caps, Costs, ExitParams, Thresholds
from optimizer.engine.score import ScoreParams
from optimizer.errors import SpecError
from optimizer.study.registry import PRUNERS, SAMPLERS, build_pruner, build_sampler
from optimizer.params import engine_params
from optimizer.study.space import distributions, grid_search_space, params_to_config, suggest
from optimizer.study.spec import load_spec, parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)
STUDIES = Path(__file__).resolve().parents[1] / "studies"

COND = """
[data.costs]
commission_bps = 2.0
slippage_bps = 3.0
[space]
variant = { type = "categorical", choices = ["A", "B"] }
z_window = 30
exit = { type = "categorical", choices = ["fixed", "first_dist"] }
hold_days = { type = "int", low = 5, high = 15, step = 5, when = { exit = "fixed" } }
use_stop_loss = { type = "categorical", choices = [false, true] }
stop_loss = { type = "float", low = 0.02, high = 0.10, when = { use_stop_loss = true } }
use_take_profit = { type = "categorical", choices = [false, true] }
take_profit = { type = "fixed", value = 0.25, when = { use_take_profit = true } }
time_stop = 40
"""


@pytest.fixture(scope="module")
def cond():
    return parse_spec(COND, path="cond.toml")


# ------------------------------------------------------------------------------------------------ suggest
def test_fixed_values_are_not_sent_to_optuna(cond):
    t = optuna.trial.FixedTrial({"variant": "B", "exit": "first_dist", "use_stop_loss": False, "use_take_profit": False})
    v = suggest(t, cond)
    assert v == {"variant": "B", "z_window": 30, "exit": "first_dist", "use_stop_loss": False, "use_take_profit": False,
                 "time_stop": 40}
    assert set(t.params) == {"variant", "exit", "use_stop_loss", "use_take_profit"}  # z_window, time_stop stayed local
    cfg = params_to_config(t.params, cond)  # what Optuna stores: the fixed values are put back
    assert cfg.score.z_window == 30 and cfg.exit.time_stop == 40
    assert cfg.exit == ExitParams("first_dist", time_stop=40)
    assert cfg.costs == Costs(2.0, 3.0)  # the spec's [data.costs] are the base


def test_conditional_parameters_only_when_their_switch_allows(cond):
    on = optuna.trial.FixedTrial({"variant": "A", "exit": "fixed", "hold_days": 10, "use_stop_loss": True,
                                  "stop_loss": 0.05, "use_take_profit": True})
    v = suggest(on, cond)
    assert (v["hold_days"], v["stop_loss"], v["take_profit"]) == (10, 0.05, 0.25)
    assert "take_profit" not in on.params  # fixed, conditional and active: still not sent
    cfg = params_to_config(on.params, cond)
    assert cfg.exit == ExitParams("fixed", hold_days=10, stop_loss=0.05, take_profit=0.25, time_stop=40)

    # the same values offered, switches off: stop_loss, hold_days and take_profit are never asked for
    off = optuna.trial.FixedTrial({"variant": "A", "exit": "first_dist", "hold_days": 10, "use_stop_loss": False,
                                   "stop_loss": 0.05, "use_take_profit": False})
    v = suggest(off, cond)
    assert not {"hold_days", "stop_loss", "take_profit"} & set(v) and not {"hold_days", "stop_loss"} & set(off.params)
    cfg = params_to_config(off.params, cond)
    assert (cfg.exit.stop_loss, cfg.exit.take_profit, cfg.exit.hold_days) == (None, None, None)


def test_random_study_respects_conditions_and_distributions(cond):
    dist = distributions(cond)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(lambda t: float(len(suggest(t, cond))), n_trials=30)
    seen = set()
    for tr in study.trials:
        p = tr.params
        assert ("stop_loss" in p) == p["use_stop_loss"]
        assert ("hold_days" in p) == (p["exit"] == "fixed")
        assert "take_profit" not in p and "time_stop" not in p
        for k, d in tr.distributions.items():
            assert d == dist[k]
        seen.add((p["use_stop_loss"], p["exit"]))
        params_to_config(p, cond)  # every stored trial replays into a valid Config
    assert len(seen) == 4  # both branches of both conditions were visited


def test_weights_preset_expands_to_three_raw_weights():
    s = load_spec(STUDIES / "phase_a_coarse.toml")
    t = optuna.trial.FixedTrial({"variant": "C", "weights": "lit_heavy", "z_window": 15, "exit": "2x_consec_dist"})
    v = suggest(t, s)
    assert v["weights"] == "lit_heavy" and (v["buy_threshold"], v["sell_threshold"], v["time_stop"]) == (70, 30, 40)
    cfg = params_to_config(t.params, s)
    assert cfg.score == ScoreParams("C", 0.40, 0.40, 0.20, 15)
    assert cfg.thresholds == Thresholds(70.0, 30.0)
    assert cfg.exit == ExitParams("2x_consec_dist", time_stop=40)
    assert cfg.costs == Costs(1.0, 5.0)
    sh = params_to_config(dict(t.params, weights="short_heavy"), s).score
    assert (sh.w_short, sh.w_lit, sh.w_price) == (0.70, 0.20, 0.10)


def test_engine_params_drops_switches_and_expands_presets():
    got = engine_params({"variant": "A", "weights": "balanced", "use_stop_loss": False, "stop_loss": 0.05,
                         "use_take_profit": True, "take_profit": 0.1})
    assert got == {"variant": "A", "take_profit": 0.1, "w_short": 0.55, "w_lit": 0.30, "w_price": 0.15}
    assert engine_params({"z_window": 20}) == {"z_window": 20}


@pytest.mark.parametrize("cfg", [
    Config(),
    Config(ScoreParams("vw_flow", 0.6, 0.25, 0.15, 45, 0.5, 1.5), Thresholds(75.0, 25.0),
           ExitParams("fixed", hold_days=15, stop_loss=0.04, take_profit=0.2, time_stop=30), Costs(0.5, 2.5), Caps(10, 3)),
    Config(exit=ExitParams("hybrid", max_days=30, time_stop=50)),
    Config(exit=ExitParams("score_decay")),
])
def test_config_round_trips_through_params(cfg, cond):
    d = cfg.to_params()
    assert Config.from_params(d) == cfg
    assert params_to_config(d) == cfg
    assert params_to_config(d, cond) == cfg  # the flat dict carries costs and every fixed value explicitly


def test_grid_search_space_and_a_grid_study_visit_every_combination():
    s = load_spec(STUDIES / "phase_a_coarse.toml")
    g = grid_search_space(s)
    assert list(g) == ["variant", "weights", "z_window", "exit"]  # fixed thresholds and time_stop are not gridded
    study = optuna.create_study(sampler=build_sampler("grid", 42, {}, g))
    study.optimize(lambda t: float(len(suggest(t, s))), n_trials=72)
    combos = {tuple(tr.params[k] for k in g) for tr in study.trials}
    assert len(combos) == 72 == math.prod(len(v) for v in g.values())
    s2 = parse_spec("[space]\nbuy_threshold = { type = 'int', low = 60, high = 70, step = 5 }\n"
                    "w_short = { type = 'float', low = 0.4, high = 0.5, step = 0.05 }\ntime_stop = 9\n")
    assert grid_search_space(s2) == {"buy_threshold": [60, 65, 70], "w_short": [0.4, 0.45, 0.5]}


def test_distributions():
    s = load_spec(STUDIES / "multiobjective.toml")
    d = distributions(s)
    assert "time_stop" not in d and len(d) == len(s.space) - 1
    assert d["variant"] == CategoricalDistribution(["A", "B", "C", "D"])
    assert d["buy_threshold"] == IntDistribution(60, 80, step=5)
    assert d["w_short"] == FloatDistribution(0.40, 0.70)
    assert d["stop_loss"] == FloatDistribution(0.03, 0.10)
    assert d["use_stop_loss"] == CategoricalDistribution([False, True])
    s = parse_spec("[space]\ntake_profit = { type = 'float', low = 0.05, high = 0.5, log = true }\n"
                   "hold_days = { type = 'int', low = 2, high = 64, log = true }\nexit = 'fixed'\n")
    d = distributions(s)
    assert d["take_profit"] == FloatDistribution(0.05, 0.5, log=True)
    assert d["hold_days"] == IntDistribution(2, 64, log=True)


# ------------------------------------------------------------------------------------------------ objectives
def _metrics(**kw) -> dict[str, float]:
    m = dict.fromkeys(METRIC_KEYS, 0.0)
    m.update(kw)
    return m


def test_objective_registry_lists_the_builtins():
    assert list(OBJECTIVES) == ["composite_rank", "composite_rank_excess", "hit_rate", "avg_return", "excess_return",
                                "sharpe", "win_loss", "signal_efficiency", "return_hit_frequency"]
    assert {n: c.metrics for n, c in OBJECTIVES.items() if n in ("hit_rate", "sharpe", "excess_return")} == {
        "hit_rate": ("hit_rate",), "sharpe": ("portfolio_sharpe",), "excess_return": ("avg_excess_return",)}
    for name, cls in OBJECTIVES.items():
        assert cls.name == name and issubclass(cls, Objective)
        assert len(cls.default_directions) == len(cls.metrics)
        for k in cls.metrics:  # every composed metric is recorded, or computed by the objective itself
            assert k in METRIC_KEYS or k in ("rank_score_excess", "signal_efficiency")
    assert isinstance(make_objective("hit_rate"), OBJECTIVES["hit_rate"])


def test_resolve_objective_from_a_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_objs_mod.py").write_text(
        "from objectives import Objective\n"
        "class Twice(Objective):\n"
        "    name = 'twice'\n"
        "    metrics = ('avg_return',)\n"
        "    def fold_values(self, m):\n"
        "        return (2 * m['avg_return'],)\n"
        "class NotAnObjective:\n"
        "    pass\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_objs_mod", raising=False)
    cls = resolve_objective("my_objs_mod:Twice")
    assert cls.__name__ == "Twice" and issubclass(cls, Objective)
    assert cls().values([_metrics(avg_return=0.01), _metrics(avg_return=0.03)]) == pytest.approx((0.04,))
    s = parse_spec("[objective]\nname = 'my_objs_mod:Twice'\n")
    assert s.objective.name == "my_objs_mod:Twice" and s.objective.directions == ("maximize",)
    with pytest.raises(SpecError) as ei:
        resolve_objective("my_objs_mod:NotAnObjective")
    assert ei.value.key == "objective.name" and "'my_objs_mod:NotAnObjective' must be a subclass of objectives.Objective" in str(ei.value)
    with pytest.raises(SpecError, match="cannot import 'my_objs_mod:Missing'"):
        resolve_objective("my_objs_mod:Missing")
    with pytest.raises(SpecError, match=r"\[objective.name\] must be one of composite_rank, composite_rank_excess"):
        resolve_objective("no_colon_here")


def test_aggregate_by_hand():
    v = [1.0, 2.0, 6.0]
    assert aggregate(v, "mean") == 3.0
    assert aggregate(v, "median") == 2.0
    assert aggregate([4.0, 1.0, 3.0, 2.0], "median") == 2.5
    # population std: sqrt(((1-3)^2 + (2-3)^2 + (6-3)^2) / 3) = sqrt(14/3)
    assert aggregate(v, "mean_minus_std") == pytest.approx(3.0 - math.sqrt(14 / 3))
    assert aggregate(v, "mean_minus_std", k=0.5) == pytest.approx(3.0 - 0.5 * math.sqrt(14 / 3))
    assert aggregate([5.0], "mean_minus_std", k=2.0) == 5.0
    # minimizing, the spread counts against the value from the other side: mean + k*std
    assert aggregate(v, "mean_minus_std", k=0.5, direction="minimize") == pytest.approx(3.0 + 0.5 * math.sqrt(14 / 3))
    assert aggregate(v, "mean", direction="minimize") == 3.0  # mean and median have no side
    with pytest.raises(ValueError, match="got direction='up'"):
        aggregate(v, "mean_minus_std", direction="up")
    folds = [{"a": 1.0, "b": 1.0}, {"a": 2.0, "b": 3.0}]

    class Two(Objective):
        metrics = ("a", "b")

    assert Two().values(folds, "mean_minus_std", 1.0, ("maximize", "minimize")) == pytest.approx((1.0, 3.0))
    with pytest.raises(ValueError, match="one direction per value"):
        Two().values(folds, "mean_minus_std", 1.0, ("maximize",))
    with pytest.raises(ValueError, match="at least one fold value"):
        aggregate([], "mean")
    with pytest.raises(ValueError, match="got aggregate='max'"):
        aggregate(v, "max")


def test_composite_rank_fold_value_is_the_rank_score_metric():
    m = _metrics(hit_rate=0.6, avg_return=0.02, win_loss=1.5, signals_per_month=4.0, rank_score=0.009)
    assert CompositeRank().fold_value(m) == 0.009
    assert rank_score(0.6, 0.02, 1.5, 4.0) == pytest.approx(0.009)  # 0.6*0.02*1.5/sqrt(4)
    folds = [dict(m, rank_score=0.009), dict(m, rank_score=0.003), dict(m, rank_score=-0.006)]
    assert CompositeRank().values(folds) == pytest.approx((0.002,))
    assert CompositeRank().values(folds, "median") == pytest.approx((0.003,))


def test_composite_rank_excess_by_hand():
    m = _metrics(hit_rate=0.6, avg_return=0.5, avg_excess_return=0.01, win_loss=1.5, signals_per_month=4.0, rank_score=9.9)
    o = CompositeRankExcess()
    assert o.fold_value(m) == pytest.approx(0.0045)  # 0.6*0.01*1.5/sqrt(4): avg_return and rank_score unused
    assert o.fold_values(m) == pytest.approx((0.0045,))
    assert o.fold_value(dict(m, signals_per_month=0.0)) == 0.0
    assert o.fold_value(dict(m, avg_excess_return=-0.02, signals_per_month=9.0)) == pytest.approx(-0.006)
    assert o.values([m, dict(m, avg_excess_return=0.03)]) == pytest.approx(((0.0045 + 0.0135) / 2,))


def test_signal_efficiency_by_hand():
    o = SignalEfficiency()
    assert o.fold_value(_metrics(hit_rate=0.5, closed_trades=8.0, total_signals=10.0)) == pytest.approx(0.4)
    assert o.fold_value(_metrics(hit_rate=0.5, closed_trades=8.0, total_signals=0.0)) == 0.0
    assert o.metric_names == ["signal_efficiency"] and o.n_values == 1


def test_multi_objective_values_tuple():
    o = ReturnHitFrequency()
    f1 = _metrics(avg_return=0.01, hit_rate=0.5, signals_per_month=2.0)
    f2 = _metrics(avg_return=0.03, hit_rate=0.7, signals_per_month=6.0)
    assert o.fold_values(f1) == (0.01, 0.5, 2.0)
    assert o.fold_value(f1) == 0.01  # the pruner sees the first value
    assert o.values([f1, f2]) == pytest.approx((0.02, 0.6, 4.0))
    # mean - 1*std per value: std of two points = half their distance
    assert o.values([f1, f2], "mean_minus_std") == pytest.approx((0.01, 0.5, 2.0))
    assert o.n_values == 3 and o.metric_names == ["avg_return", "hit_rate", "signals_per_month"]
    assert o.default_directions == ("maximize", "maximize", "minimize")


# ------------------------------------------------------------------------------------------------ registry
SAMPLER_CLASSES = {
    "grid": optuna.samplers.GridSampler, "random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler,
    "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler, "nsga2": optuna.samplers.NSGAIISampler,
    "gp": optuna.samplers.GPSampler,
}
PRUNER_CASES = {
    "none": ({}, optuna.pruners.NopPruner), "median": ({"n_startup_trials": 2}, optuna.pruners.MedianPruner),
    "percentile": ({"percentile": 25.0}, optuna.pruners.PercentilePruner),
    "successive_halving": ({"reduction_factor": 3}, optuna.pruners.SuccessiveHalvingPruner),
    "hyperband": ({"max_resource": 4}, optuna.pruners.HyperbandPruner),
    "wilcoxon": ({"p_threshold": 0.05}, optuna.pruners.WilcoxonPruner),
}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name", list(SAMPLER_CLASSES))
def test_build_sampler_for_every_name(name):
    assert list(SAMPLERS) == list(SAMPLER_CLASSES)
    sampler = build_sampler(name, 7, {}, {"variant": ["A", "B"]} if name == "grid" else None)
    assert type(sampler.base) is SAMPLER_CLASSES[name]  # wrapped: stepped floats keep the step's decimals


@pytest.mark.parametrize("name", ["random", "tpe"])
def test_seeded_samplers_are_reproducible(name):
    def run(seed):
        st = optuna.create_study(sampler=build_sampler(name, seed, {}))
        st.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 0, 100), n_trials=4)
        return [t.params for t in st.trials]

    assert run(5) == run(5) and run(5) != run(6)


def test_sampler_options_are_passed_to_optuna():
    # with n_startup_trials=50 all 12 TPE trials are startup draws of its seeded RandomSampler; with the default
    # (10) trials 11 and 12 come from the TPE model and differ
    def run(name, opts):
        st = optuna.create_study(sampler=build_sampler(name, 5, opts))
        st.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=12)
        return [t.params["x"] for t in st.trials]

    many, rnd, default = run("tpe", {"n_startup_trials": 50}), run("random", {}), run("tpe", {})
    assert many == rnd and default[:10] == rnd[:10] and default[10:] != rnd[10:]


def test_sampler_options_are_checked():
    assert SAMPLERS["tpe"].valid_options()[:2] == ["consider_prior", "prior_weight"]
    assert "seed" not in SAMPLERS["tpe"].valid_options() and SAMPLERS["grid"].valid_options() == []
    with pytest.raises(SpecError) as ei:
        build_sampler("grid", 1, {}, None)
    assert str(ei.value) == "[sampler] 'grid' needs a search space (parameter name -> list of values)"
    with pytest.raises(SpecError, match=r"\[sampler\] 'tpe' rejected its options \{'bogus': 1\}"):
        build_sampler("tpe", 1, {"bogus": 1})
    with pytest.raises(SpecError, match=r"'nsga2' rejected its options \{'population_size': 1\}: .*population_size"):
        build_sampler("nsga2", 1, {"population_size": 1})
    with pytest.raises(SpecError) as ei:
        build_sampler("anneal", 1, {})
    assert ei.value.key == "sampler.name" and "must be one of grid, random, tpe, cmaes, qmc, nsga2, gp, got 'anneal'" in str(ei.value)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name", list(PRUNER_CASES))
def test_build_pruner_for_every_name(name):
    assert list(PRUNERS) == list(PRUNER_CASES)
    opts, cls = PRUNER_CASES[name]
    assert type(build_pruner(name, opts)) is cls


def test_pruner_options_are_checked():
    assert PRUNERS["median"].valid_options() == ["n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"]
    assert PRUNERS["none"].valid_options() == []
    with pytest.raises(SpecError) as ei:
        PRUNERS["median"].validate_options({"warmup": 1}, "pruner")
    assert str(ei.value) == ("[pruner.warmup] is not an option of 'median'; valid: n_startup_trials, n_warmup_steps, "
                             "interval_steps, n_min_trials")
    with pytest.raises(SpecError) as ei:
        build_pruner("percentile", {"percentile": 200})
    assert ei.value.key == "pruner"
    assert "'percentile' rejected its options {'percentile': 200}" in str(ei.value) and "percentile=200" in str(ei.value)
    with pytest.raises(SpecError, match="missing 1 required positional argument: 'percentile'"):
        build_pruner("percentile", {})
    with pytest.raises(SpecError, match="reduction_factor >= 2"):
        build_pruner("successive_halving", {"reduction_factor": 1})
    with pytest.raises(SpecError, match=r"\[pruner.name\] must be one of none, median, percentile"):
        build_pruner("early", {})


def test_median_pruner_built_from_options_prunes_as_configured():
    # n_startup_trials=1, n_warmup_steps=0: trial 2 reporting below the median of trial 1 at step 0 is pruned
    st = optuna.create_study(direction="maximize", pruner=build_pruner("median", {"n_startup_trials": 1, "n_warmup_steps": 0}))

    def obj(t):
        x = t.suggest_float("x", 0, 1)
        t.report(x, 0)
        if t.should_prune():
            raise optuna.TrialPruned
        return x

    st.enqueue_trial({"x": 0.9})
    st.enqueue_trial({"x": 0.1})
    st.enqueue_trial({"x": 0.95})
    st.optimize(obj, n_trials=3)
    assert [t.state.name for t in st.trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert np.isclose(st.best_value, 0.95)
