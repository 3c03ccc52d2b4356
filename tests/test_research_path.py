"""Issue 10: one research path that carries every decision, phase A -> phase B -> best -> backtest -> walk-forward.

1. Every trial stores its complete effective configuration (``records.ConfigRecord``): fixed values, presets and
   conditions applied, costs, universe, span, regime filter, min_periods, fingerprint; stepped floats are clean.
2. Phase B's first trials are phase A's top configurations key for key (fixed values included), ``weight_radius``
   narrows the weight search as documented, and a seed the space cannot express is refused with key and value.
3. ``study best --format json`` -> ``backtest --params`` reproduces the trial's stored metrics bit for bit for the best
   trial of every shipped spec; a store whose data changed is refused unless ``--allow-data-change``.
4. The final reserve: ``backtest`` refuses it without ``--final``, records every opening in the store's ledger
   that ``walkforward --final`` shares, and a second opening warns.
7. Honest bookkeeping: ``n_trials_target`` is what was asked, a repeated configuration reuses the stored result
   (``repeat_of``) and the distinct configurations are what DSR / PBO count; internal studies are hidden.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest

import optimizer.validate.walkforward as wfmod
from _cli_helpers import cli, ok, one_line_error
from optimizer.data.store import connect
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.errors import SpecError
from optimizer.study.data import load_study_data, prepare_data
from optimizer.study.records import (
    ConfigRecord, add_reserve_opening, distinct_configurations, ranked_trials, read_study, read_trial, reserve_log_name,
    seeded,
)
from optimizer.study.reserve import openings
from optimizer.study.run import run_study
from optimizer.study.seed import WEIGHT_NAMES
from optimizer.study.spec import load_spec, parse_spec
from optimizer.study.storage import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "studies").glob("*.toml"))








@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)  # nothing a test runs may write into the checkout


# ------------------------------------------------------------------------------------------------ 1. effective config

PHASE_A = """
[study]
name = "pa"
[data]
universe = "tier1+3"
[data.costs]
commission_bps = 2.5
slippage_bps = 4.0
[space]
variant = { type = "categorical", choices = ["B", "C"] }
weights = { type = "categorical", choices = ["short_heavy", "balanced", "lit_heavy"] }
z_window = { type = "categorical", choices = [20, 30] }
buy_threshold = 70
sell_threshold = 30
exit = { type = "categorical", choices = ["first_dist", "fixed_10d"] }
use_stop_loss = { type = "categorical", choices = [false, true] }
stop_loss = { type = "float", low = 0.03, high = 0.09, step = 0.02, when = { use_stop_loss = true } }
time_stop = 40
max_positions = 8
[cv]
n_splits = 3
embargo = 30
[objective]
min_trades = 0
[sampler]
name = "random"
seed = 1
[pruner]
name = "none"
[run]
n_trials = 12
"""


@pytest.fixture(scope="module")
def phase_a(synth_db, tmp_path_factory):
    d = tmp_path_factory.mktemp("phase_a")
    storage = f"sqlite:///{d / 'studies.db'}"
    spec = parse_spec(PHASE_A)
    res = run_study(spec, synth_db, storage, n_trials=12)
    return {"spec": spec, "storage": storage, "study": res.study, "db": synth_db}


def test_every_trial_stores_its_complete_effective_configuration(phase_a):
    spec, study = phase_a["spec"], phase_a["study"]
    panel, reserve = load_study_data(spec, phase_a["db"])
    data = prepare_data(spec, panel, 0, reserve)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 6
    for t in done:
        rec = read_trial(t).config_record
        assert rec is not None, t.number
        p = rec.params
        # every registry parameter, as the engine saw it: presets expanded, fixed values, costs and caps included
        assert set(p) == set(Config().to_params())
        preset = {"short_heavy": (0.7, 0.2, 0.1), "balanced": (0.55, 0.3, 0.15), "lit_heavy": (0.4, 0.4, 0.2)}
        assert (p["w_short"], p["w_lit"], p["w_price"]) == preset[t.params["weights"]]
        assert (p["buy_threshold"], p["sell_threshold"], p["time_stop"], p["max_positions"]) == (70, 30, 40, 8)
        assert (p["commission_bps"], p["slippage_bps"]) == (2.5, 4.0)
        exit_rule = {"first_dist": ("first_dist", None), "fixed_10d": ("fixed", 10)}[t.params["exit"]]
        assert (p["exit"], p["hold_days"]) == exit_rule
        # the condition: stop_loss only when use_stop_loss drew true, and then on its step grid, clean
        if t.params["use_stop_loss"]:
            assert p["stop_loss"] == t.params["stop_loss"] and p["stop_loss"] in (0.03, 0.05, 0.07, 0.09)
            assert repr(t.params["stop_loss"]) in ("0.03", "0.05", "0.07", "0.09")  # Optuna's stored param too
        else:
            assert p["stop_loss"] is None and "stop_loss" not in t.params
        assert Config.from_params(p) == Config.from_params(rec.to_dict()["params"])  # round trip
        # the data it ran on
        d = data.panel.dates
        assert (rec.universe, rec.symbols, rec.regime, rec.min_periods) == ("tier1+3", len(panel.symbols), "ALL", None)
        assert rec.panel_start == str(d[0])[:10] and rec.data_end == str(d[data.hi - 1])[:10]
        assert rec.signal_start == str(d[data.folds[0].test_start])[:10] and rec.signal_end == rec.data_end
        assert rec.reserve_start == str(panel.dates[reserve])[:10] and rec.data_fingerprint == data.fingerprint
        assert rec.symbols_match(panel.symbols) and not rec.symbols_match(panel.symbols[1:])
    # one attribute holds it, the study knows what it was asked for
    assert read_study(study).n_trials_target == 12 and read_study(study).reserve_start == str(panel.dates[reserve])[:10]


def test_stepped_floats_are_clean_in_optuna_and_in_the_record(synth_db, tmp_path):
    # 0.35 + 2 * 0.05 is 0.44999999999999996 in floating point: what Optuna used to store
    spec = parse_spec("""
[study]
name = "clean"
[space]
variant = "B"
w_short = { type = "float", low = 0.35, high = 0.75, step = 0.05 }
w_lit = { type = "float", low = 0.15, high = 0.45, step = 0.05 }
w_price = 0.15
[cv]
n_splits = 2
[objective]
min_trades = 0
[sampler]
name = "random"
seed = 3
[pruner]
name = "none"
""")
    res = run_study(spec, synth_db, f"sqlite:///{tmp_path / 's.db'}", n_trials=25)
    stored = optuna.load_study(study_name="clean", storage=make_storage(f"sqlite:///{tmp_path / 's.db'}", read_only=True))
    seen = set()
    for t in stored.trials:
        for k in ("w_short", "w_lit"):
            v = t.params[k]
            assert repr(v) == repr(round(v, 2)), (k, v)
            assert read_trial(t).config_record.params[k] == v
            seen.add(v)
    assert 0.45 in seen or 0.55 in seen or 0.65 in seen  # values that are not exact in binary were drawn
    assert res.counts["complete"] + res.counts["pruned"] == 25


# ------------------------------------------------------------------------------------------------ 2. seeding

PHASE_B = """
[study]
name = "pb"
[data]
universe = "tier1+3"
[data.costs]
commission_bps = 2.5
slippage_bps = 4.0
[space]
variant = { type = "categorical", choices = ["A", "B", "C", "D"] }
w_short = { type = "float", low = 0.30, high = 0.80, step = 0.05 }
w_lit = { type = "float", low = 0.10, high = 0.50, step = 0.05 }
w_price = { type = "float", low = 0.05, high = 0.30, step = 0.05 }
z_window = { type = "categorical", choices = [10, 20, 30, 60] }
buy_threshold = { type = "int", low = 60, high = 80, step = 5 }
sell_threshold = { type = "int", low = 20, high = 40, step = 5 }
exit = { type = "categorical", choices = ["first_dist", "fixed_10d", "2x_consec_dist"] }
use_stop_loss = { type = "categorical", choices = [false, true] }
stop_loss = { type = "float", low = 0.01, high = 0.09, step = 0.02, when = { use_stop_loss = true } }
time_stop = 40
max_positions = 8
[seed_from]
study = "pa"
top = 4
weight_radius = 0.05
[cv]
n_splits = 3
embargo = 30
[objective]
min_trades = 0
[sampler]
name = "tpe"
seed = 5
[pruner]
name = "none"
[run]
n_trials = 10
"""


def test_phase_b_first_trials_are_phase_a_top_configurations_key_for_key(phase_a):
    spec_b = parse_spec(PHASE_B)
    res = run_study(spec_b, phase_a["db"], phase_a["storage"], n_trials=10)
    a_top = ranked_trials(phase_a["study"])[:4]
    b = sorted(res.study.trials, key=lambda t: t.number)
    for ta, tb in zip(a_top, b[:4]):
        pa, pb = read_trial(ta).config_record.params, read_trial(tb).config_record.params
        assert pb == pa, (ta.number, tb.number)  # every key: fixed buy 70 / sell 30, presets, costs, caps, exit days
        assert tb.params["buy_threshold"] == 70 and tb.params["sell_threshold"] == 30  # A's fixed values, enqueued
    mark = seeded(res.study)
    assert mark["from"] == "pa" and mark["trials"] == [t.number for t in a_top]
    # weight_radius: each w_* range is the declared one cut to [min seed - 0.05, max seed + 0.05] (on its grid)
    seeds = [read_trial(t).config_record.params for t in a_top]
    declared = {p.name: (p.low, p.high) for p in spec_b.space if p.name in WEIGHT_NAMES}
    for name in WEIGHT_NAMES:
        lo = max(declared[name][0], round(min(s[name] for s in seeds) - 0.05, 10))
        hi = min(declared[name][1], round(max(s[name] for s in seeds) + 0.05, 10))
        got = mark["space"].get(name, list(declared[name]))
        assert got == pytest.approx([lo, hi]), name
        for t in b:  # TPE's own trials stay inside the narrowed range
            assert got[0] - 1e-12 <= t.params[name] <= got[1] + 1e-12, (name, t.number, t.params[name])
    assert mark["space"]  # the seeds narrow at least one weight (the declared ranges are wider)
    # resuming searches the stored ranges, and the seeds are not enqueued twice
    again = run_study(spec_b, phase_a["db"], phase_a["storage"], n_trials=12)
    assert seeded(again.study) == mark
    assert len(again.study.trials) == 12


def test_seeds_from_a_study_of_other_data_settings_are_used_and_the_run_says_so(phase_a):
    """Phase A ranked its trials on its own [data] settings. Phase B on another universe / min_periods / reserve is
    a legitimate plan (a coarse phase A on fewer names) but was silent: the seeds entered as if chosen on B's data.
    Now the run that seeds says which settings differ (``StudyRunResult.warnings``; ``study run`` prints them and
    puts them in its JSON); a phase B on phase A's settings says nothing."""
    other = PHASE_B.replace('name = "pb"', 'name = "pb5"').replace(
        'universe = "tier1+3"', 'universe = "tier1"\nmin_periods = 8\nreserve_fraction = 0.25')
    res = run_study(parse_spec(other), phase_a["db"], phase_a["storage"], n_trials=4)
    assert seeded(res.study)["from"] == "pa"  # seeded all the same
    assert len(res.warnings) == 1, res.warnings
    w = res.warnings[0]
    assert w.startswith("[seed_from] 'pa' ranked its trials on other [data] settings than this study (")
    assert "universe 'tier1+3' -> 'tier1'" in w and "min_periods None -> 8" in w and "reserve_fraction 0.2 -> 0.25" in w
    assert "regime" not in w and "start" not in w and "its 4 seeds" in w
    # said once, by the run that seeds: a resume has nothing new to say
    assert run_study(parse_spec(other), phase_a["db"], phase_a["storage"], n_trials=5).warnings == ()
    same = PHASE_B.replace('name = "pb"', 'name = "pb6"')
    assert run_study(parse_spec(same), phase_a["db"], phase_a["storage"], n_trials=4).warnings == ()


def test_a_seed_the_space_cannot_express_is_refused_with_key_and_value(phase_a):
    narrow = PHASE_B.replace('name = "pb"', 'name = "pb2"').replace(
        'buy_threshold = { type = "int", low = 60, high = 80, step = 5 }', 'buy_threshold = { type = "int", low = 75, high = 80, step = 5 }')
    with pytest.raises(SpecError) as e:
        run_study(parse_spec(narrow), phase_a["db"], phase_a["storage"], n_trials=2)
    assert e.value.key == "seed_from" and "buy_threshold=70" in str(e.value) and "[space.buy_threshold]" in str(e.value)
    # a parameter phase A set that phase B neither declares nor leaves at its value (max_positions 8 -> default)
    undeclared = PHASE_B.replace('name = "pb"', 'name = "pb3"').replace("max_positions = 8\n", "")
    with pytest.raises(SpecError, match="max_positions=8"):
        run_study(parse_spec(undeclared), phase_a["db"], phase_a["storage"], n_trials=2)
    # other costs: the seeds would not be the same configurations
    costs = PHASE_B.replace('name = "pb"', 'name = "pb4"').replace("commission_bps = 2.5", "commission_bps = 1.0")
    with pytest.raises(SpecError, match=r"commission_bps=2.5.*data.costs"):
        run_study(parse_spec(costs), phase_a["db"], phase_a["storage"], n_trials=2)
    names = [s.study_name for s in optuna.get_all_study_summaries(make_storage(phase_a["storage"], read_only=True))]
    for n in ("pb2", "pb3", "pb4"):  # refused before any trial ran
        if n in names:
            assert not optuna.load_study(study_name=n, storage=make_storage(phase_a["storage"], read_only=True)).trials


# ------------------------------------------------------------------------------------------------ 3. round trip


@pytest.fixture(scope="module")
def shipped(synth_db, tmp_path_factory):
    """Every shipped spec run for a few trials on the planted store (phase A first: phase B seeds from it). The
    planted market's short span has RISK_OFF closes on 5% of its sessions and RISK_ON on 34%: with 6 trials every
    trial of the regime specs is pruned by min_trades 2, so they run with min_trades = 0 (a copy of the spec:
    everything that decides the round trip, the regime filter first, stays as shipped)."""
    d = tmp_path_factory.mktemp("shipped")
    storage = f"sqlite:///{d / 'studies.db'}"
    order = sorted(SPECS, key=lambda p: (p.stem != "phase_a_coarse", p.stem))
    for p in order:
        if p.stem.startswith("regime_"):
            p = d / p.name
            p.write_text((ROOT / "studies" / p.name).read_text().replace("min_trades = 2", "min_trades = 0"))
        ok(cli("study", "run", p, "--db", synth_db, "--storage", storage, "--n-trials", "6", "--format", "json"))
    return {"storage": storage, "db": synth_db, "dir": d}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_study_best_then_backtest_params_reproduces_the_trial(shipped, path, tmp_path):
    spec = load_spec(path)
    best = ok(cli("study", "best", spec.run.study_name, "--storage", shipped["storage"]))
    doc = json.loads(best.stdout)
    f = tmp_path / "best.json"
    f.write_text(best.stdout)
    cfg = doc["config"]
    assert (cfg["universe"], cfg["regime"]) == (spec.data.universe, spec.data.regime)
    assert cfg["params"]["commission_bps"] == spec.data.commission_bps
    run = json.loads(ok(cli("backtest", "--params", f, "--db", shipped["db"], "--no-save", "--format", "json")).stdout)
    assert run["reproduces_trial"] is True, run["comparison"]
    stored = doc["metrics"]
    for k in ("total_signals", "total_trades", "closed_trades", "open_at_end"):  # the same trades
        assert run[k] == stored[k], k
    for k in ("hit_rate", "avg_return", "median_return", "win_loss", "rank_score", "avg_excess_return",
              "portfolio_sharpe", "max_drawdown", "signals_per_month"):
        assert run[k] == stored[k], k  # bit for bit
    assert run["config"]["data_fingerprint"] == cfg["data_fingerprint"] and run["config"]["span"] == cfg["span"]
    assert run["reserve_opened"] is False and run["end"] == cfg["span"]["data_end"] < cfg["reserve_start"]


def test_backtest_refuses_a_store_whose_data_changed(shipped, tmp_path):
    best = ok(cli("study", "best", "demo", "--storage", shipped["storage"]))
    f = tmp_path / "best.json"
    f.write_text(best.stdout)
    db = tmp_path / "changed.duckdb"
    shutil.copy(shipped["db"], db)
    con = connect(db)
    n = con.execute("UPDATE daily_metrics SET short_buy_volume = short_buy_volume * 1.01 WHERE symbol = 'SPY' AND date = "
                    "(SELECT date FROM daily_metrics WHERE symbol = 'SPY' ORDER BY date LIMIT 1 OFFSET 40)").fetchone()[0]
    con.close()
    assert n == 1  # one value of one session the trial saw
    one_line_error(cli("backtest", "--params", f, "--db", db, "--no-save"), "data differs from the trial's",
                   "fingerprint", "--allow-data-change")
    d = json.loads(ok(cli("backtest", "--params", f, "--db", db, "--no-save", "--allow-data-change",
                          "--format", "json")).stdout)
    assert d["config"]["data_fingerprint"] != json.loads(best.stdout)["config"]["data_fingerprint"]


# ------------------------------------------------------------------------------------------------ 4. the reserve


def test_backtest_guards_the_reserve_and_shares_the_ledger_with_walkforward(shipped, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(shipped["db"], db)
    best = ok(cli("study", "best", "demo", "--storage", shipped["storage"]))
    f = tmp_path / "best.json"
    f.write_text(best.stdout)
    reserve_start = json.loads(best.stdout)["config"]["reserve_start"]
    # into the reserve without --final: refused, nothing recorded
    one_line_error(cli("backtest", "--params", f, "--db", db, "--no-save", "--end", "2024-06-28"),
                   "final reserve", reserve_start, "--final")
    one_line_error(cli("backtest", "--db", db, "--no-save", "--end", "2024-06-28"), "final reserve", "--final")
    data_end = json.loads(best.stdout)["config"]["span"]["data_end"]  # a start after the trial's end: that end is named
    one_line_error(cli("backtest", "--params", f, "--db", db, "--no-save", "--start", "2024-06-28"),
                   f"--start must be on or before the trial's data end {data_end}, got 2024-06-28")
    assert openings(db) == []
    # --final: runs through the reserve, recorded once; a second opening warns loudly
    first = cli("backtest", "--params", f, "--db", db, "--no-save", "--final", "--format", "json")
    d = json.loads(ok(first).stdout)
    assert d["reserve_opened"] and d["end"] == "2024-06-28" and d["warnings"] == [] and "already opened" not in first.stderr
    second = ok(cli("backtest", "--params", f, "--db", db, "--no-save", "--final"))
    assert "already opened 1 time(s)" in second.stderr
    log = openings(db, reserve_start)
    assert [o.command for o in log] == ["backtest --final", "backtest --final"]
    # walk-forward --final writes to the same ledger, and warns because backtest opened it before
    spec = load_spec(ROOT / "studies" / "demo.toml")
    msgs = wfmod._reserve_record(db, spec, reserve_start, True, "2024-06-28")
    assert msgs and "already opened 2 time(s)" in msgs[0] and "backtest --final" in msgs[0]
    assert len(openings(db, reserve_start)) == 3


def test_replay_reruns_a_trial_on_its_own_span_never_the_reserve(shipped):
    res = ok(cli("study", "replay", "demo", str(ranked_trials(optuna.load_study(
        study_name="demo", storage=make_storage(shipped["storage"], read_only=True)))[0].number),
        "--storage", shipped["storage"], "--db", shipped["db"], "--format", "json"))
    assert json.loads(res.stdout)["reproduced"] is True
    assert openings(shipped["db"]) == []


# ------------------------------------------------------------------------------------------------ 7. bookkeeping

TINY = """
[study]
name = "tiny"
[space]
variant = { type = "categorical", choices = ["B", "C"] }
z_window = { type = "categorical", choices = [20, 30] }
exit = "first_dist"
[cv]
n_splits = 2
purge = 20
[objective]
min_trades = {min_trades}
[sampler]
name = "random"
seed = 4
[pruner]
name = "none"
"""


def test_a_repeated_configuration_reuses_the_stored_result(synth_db, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = Evaluator.run

    def counting(self, *a, **k):
        calls["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(Evaluator, "run", counting)
    spec = parse_spec(TINY.replace("{min_trades}", "0"))
    res = run_study(spec, synth_db, f"sqlite:///{tmp_path / 's.db'}", n_trials=12)  # 4 distinct configurations
    trials = res.study.trials
    repeats = [t for t in trials if read_trial(t).repeat_of is not None]
    distinct = distinct_configurations(res.study)
    assert len(distinct) == len({json.dumps(t.params, sort_keys=True) for t in trials}) <= 4
    assert len(repeats) == len(trials) - len(distinct) >= 8
    by_number = {t.number: t for t in trials}
    for t in repeats:
        src = by_number[read_trial(t).repeat_of]
        assert src.number < t.number and read_trial(src).repeat_of is None
        assert t.value == src.value and t.params == src.params
        assert read_trial(t).metrics["hit_rate"] == read_trial(src).metrics["hit_rate"]
        assert read_trial(t).config["key"] == read_trial(src).config["key"]
    folds_per_eval = 2 + 1  # each evaluated configuration: one run per fold + the overall run
    assert calls["n"] == len(distinct) * folds_per_eval  # a repeat evaluates nothing
    assert read_study(res.study).n_trials_target == 12


def test_a_repeat_of_a_pruned_configuration_is_pruned_with_the_same_reason(synth_db, tmp_path):
    spec = parse_spec(TINY.replace("{min_trades}", "100000").replace('name = "tiny"', 'name = "tinyp"'))
    res = run_study(spec, synth_db, f"sqlite:///{tmp_path / 's.db'}", n_trials=8)
    trials = res.study.trials
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    for t in trials:
        rep = read_trial(t).repeat_of
        if rep is not None:
            assert read_trial(t).pruned_reason == read_trial(trials[rep]).pruned_reason
            assert "min_trades 100000" in read_trial(t).pruned_reason
    assert any(read_trial(t).repeat_of is not None for t in trials)


def test_walkforward_counts_distinct_configurations(synth_db, tmp_path):
    spec = parse_spec(TINY.replace("{min_trades}", "0") + "\n[walkforward]\ntrain = 6\ntest = 3\nn_trials = 9\n")
    res = wfmod.run_walkforward(spec, synth_db, f"sqlite:///{tmp_path / 's.db'}")
    st = make_storage(f"sqlite:///{tmp_path / 's.db'}", read_only=True)
    for w in res.windows:
        study = optuna.load_study(study_name=w.study_name, storage=st)
        assert len(study.trials) == w.n_trials_tried == 9
        assert w.n_configs == len(distinct_configurations(study)) <= 4 < 9  # a repeat is not a new configuration
    # the run counts a configuration several windows tried once (the space holds 4)
    assert res.stats["n_configs"] == len({k for w in res.windows for k in w.config_ids}) <= 4


def test_n_trials_target_is_what_the_run_asked_for(synth_db, tmp_path):
    spec = parse_spec(TINY.replace("{min_trades}", "0").replace('name = "tiny"', 'name = "target"') + "\n[run]\nn_trials = 150\n")
    url = f"sqlite:///{tmp_path / 's.db'}"
    res = run_study(spec, synth_db, url, n_trials=3)
    assert read_study(res.study).n_trials_target == 3  # not the spec's 150
    res = run_study(spec, synth_db, url, n_trials=5)
    assert read_study(res.study).n_trials_target == 5 and len(res.study.trials) == 5
    rows = json.loads(ok(cli("study", "list", "--storage", url, "--format", "json")).stdout)
    assert [(r["name"], r["n_trials_target"]) for r in rows] == [("target", 5)]


def test_internal_marker_studies_are_hidden_from_study_list(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    st = make_storage(url, heartbeat=False)
    optuna.create_study(study_name="mine", storage=st).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    log = optuna.create_study(study_name=reserve_log_name("mine"), storage=st)  # a store made by an older accumopt
    add_reserve_opening(log, "2024-01-02")
    names = [r["name"] for r in json.loads(ok(cli("study", "list", "--storage", url, "--format", "json")).stdout)]
    assert names == ["mine"]
    names = [r["name"] for r in json.loads(ok(cli("study", "list", "--all", "--storage", url, "--format", "json")).stdout)]
    assert names == ["mine", "mine-reserve-log"]


def test_config_record_json_round_trip():
    rec = ConfigRecord(Config.from_params({"exit": "fixed_10d", "w_short": 0.35 + 2 * 0.05}).to_params(), ["SPY", "QQQ"],
                       2, "abc", "2023-01-03", "2023-05-01", "2024-01-31", "2024-01-31", "2024-02-01", "RISK_ON", 10, "fp")
    back = ConfigRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec and back.key == rec.key
    assert back.params["w_short"] == 0.35 + 2 * 0.05 != 0.45  # stored bit for bit: the float the engine used
    assert ConfigRecord(dict(rec.params, w_short=0.45)).key == rec.key  # equal to 12 digits: the same configuration
    assert dataclasses.replace(rec, regime="ALL").key == rec.key  # the key is the configuration's, not the data's
    assert ConfigRecord(dict(rec.params, buy_threshold=75.0)).key != rec.key
    assert pd.Timestamp(back.data_end) < pd.Timestamp(back.reserve_start)


def test_a_stored_window_result_reads_back_bit_for_bit_and_is_strict_json():
    """``records.write_window_result`` / ``read_window_result`` (a walk-forward window's figures on its study):
    numpy arrays and scalars come back with their dtype and bytes, floats that are not finite come back, a tuple as a
    list; what is stored is strict JSON (no NaN token: PostgreSQL, the dashboard and any JSON reader take it); a
    result stored under another key is not read; one that cannot be read back warns and reads as none (computed
    again)."""
    import numpy as np

    from optimizer.study.records import WF_RESULT, read_window_result, write_window_result

    study = optuna.create_study()
    fig = {"x": np.array([1.5, np.nan, -np.inf, 0.1 + 0.2]), "i": np.arange(3, dtype=np.int64),
           "m": np.ones((2, 2), dtype=np.float32), "s": np.float64(0.1), "n": np.int64(7), "nan": float("nan"),
           "inf": float("-inf"), "f": 0.1 + 0.2, "none": None, "t": ("x", 1, True), "d": {"k": [np.int32(2), 2.5]}}
    write_window_result(study, "k1", fig)
    json.dumps(study.user_attrs[WF_RESULT], allow_nan=False)
    assert read_window_result(study, "k2") is None
    back = read_window_result(study, "k1")
    for k in ("x", "i", "m"):
        assert back[k].dtype == fig[k].dtype and back[k].shape == fig[k].shape and back[k].tobytes() == fig[k].tobytes()
    for k in ("s", "n"):
        assert type(back[k]) is type(fig[k]) and back[k] == fig[k]
    assert type(back["d"]["k"][0]) is np.int32 and back["d"]["k"][1] == 2.5
    assert np.isnan(back["nan"]) and back["inf"] == float("-inf") and back["f"] == 0.1 + 0.2 and back["none"] is None
    assert back["t"] == ["x", 1, True]
    study.set_user_attr(WF_RESULT, {"key": "k1", "figures": {"x": {"__nd__": ["<f8", [2], "not base64!"]}}})
    with pytest.warns(UserWarning, match=r"walk-forward result stored on window study .* is unreadable"):
        assert read_window_result(study, "k1") is None
