"""Non-default settings across the chain (explore6): what a step decided reaches the next step, and what a command
records or prints about its settings is what it ran with."""

from __future__ import annotations

import json

import optuna

from _cli_helpers import cli, ok
from optimizer.study.records import read_study
from optimizer.study.run import run_study
from optimizer.study.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = """
[study]
name = "target"
[space]
variant = { type = "categorical", choices = ["B", "C"] }
z_window = { type = "categorical", choices = [20, 30] }
buy_threshold = { type = "int", low = 60, high = 75, step = 5 }
exit = "first_dist"
[cv]
n_splits = 2
purge = 20
[objective]
min_trades = 0
[sampler]
name = "random"
seed = 4
[pruner]
name = "none"
[run]
n_trials = 3
"""


def test_a_resume_asking_for_fewer_trials_keeps_the_target(synth_db, tmp_path):
    """`study run SPEC --n-trials 6`, then `study run SPEC` (the spec's 3): the second run runs no trial (the study
    holds 6) and must not record a target of 3 below the 6 trials the study holds (study list showed "target 3"
    beside 6 trials; the walk-forward's cut-back guard reads the same attribute)."""
    spec = parse_spec(TINY)
    url = f"sqlite:///{tmp_path / 's.db'}"
    res = run_study(spec, synth_db, url, n_trials=6)
    assert len(res.study.trials) == 6 and read_study(res.study).n_trials_target == 6
    res = run_study(spec, synth_db, url)  # the spec's n_trials = 3
    assert len(res.study.trials) == 6 and read_study(res.study).n_trials_target == 6
    res = run_study(spec, synth_db, url, n_trials=8)  # asking for more still raises it
    assert len(res.study.trials) == 8 and read_study(res.study).n_trials_target == 8
    rows = json.loads(ok(cli("study", "list", "--storage", url, "--format", "json")).stdout)
    assert [(r["name"], r["n_trials_target"]) for r in rows] == [("target", 8)]


WF = """
[study]
name = "nd_wf"
[data]
universe = "tier1"
start = "2023-02-01"
regime = "RISK_ON"
reserve_fraction = 0.25
min_periods = 8
[data.costs]
commission_bps = 3.0
slippage_bps = 11.0
[space]
variant = { type = "categorical", choices = ["B", "D"] }
z_window = 10
buy_threshold = { type = "int", low = 55, high = 70, step = 5 }
sell_threshold = 35
exit = "fixed"
hold_days = 7
[cv]
n_splits = 3
min_train_size = 20
purge = 9
[objective]
name = "excess_return"
aggregate = "mean_minus_std"
k = 0.5
min_trades = 0
[sampler]
name = "random"
seed = 13
[pruner]
name = "none"
[run]
n_trials = 5
study_name = "nd_wf_costly"
[walkforward]
train = 100
test = 30
step = 40
unit = "sessions"
purge = 8
anchored = true
select = "robust"
top_k = 3
n_trials = 5
n_splits = 2
embargo = 3
"""


def test_walkforward_states_the_settings_it_ran_with(synth_db, tmp_path):
    """A walk-forward of a spec whose every shaping key is not the default, with --n-trials 3 over its 5: result.json
    records what the run ran with (`settings`: the universe, span and reserve, regime filter, min_periods, the
    costs its winners traded at, the windows, the trials per window after the flag, the window study's sampler,
    pruner and inner CV, the objective, the selection rule), the command prints it and the report shows it. Before,
    result.json held only the spec's name and neither the terminal nor the report said under which universe,
    regime filter, costs or trials per window the verdict was reached."""
    import pandas as pd

    from optimizer.study.splits import reserve_cutoff
    from optimizer.study.data import load_universe_panel

    spec = tmp_path / "nd_wf.toml"
    spec.write_text(WF)
    out = tmp_path / "out"
    env = ["--db", synth_db, "--storage", f"sqlite:///{tmp_path / 's.db'}", "--out", out]
    res = ok(cli("walkforward", spec, "--n-trials", 3, *env))
    text = " ".join(res.stdout.split())  # the terminal wraps a long value onto the next line
    doc = json.loads((out / "walkforward" / "nd_wf_costly" / "result.json").read_text())
    st = doc["settings"]
    dates = load_universe_panel(synth_db, "tier1", "2023-02-01").dates
    assert doc["study"] == "nd_wf_costly" and doc["spec"] == "nd_wf"
    assert st["universe"] == "tier1" and st["regime"] == "RISK_ON" and st["min_periods"] == 8
    assert st["span"][0] == str(dates[0])[:10] == "2023-02-01"
    assert st["reserve_start"] == str(dates[reserve_cutoff(len(dates), 0.25)])[:10]
    assert st["span"][1] == str(dates[reserve_cutoff(len(dates), 0.25) - 1])[:10] and st["final"] is False
    assert st["costs"] == {"commission_bps": 3.0, "slippage_bps": 11.0}
    assert all((w["config"]["commission_bps"], w["config"]["slippage_bps"]) == (3.0, 11.0) for w in doc["windows"])
    assert st["windows"] == {"n": len(doc["windows"]), "train": 100, "test": 30, "step": 40, "unit": "sessions",
                             "purge": 8, "anchored": True}
    assert len(doc["windows"]) >= 2 and all(w["n_trials_tried"] == 3 for w in doc["windows"])
    assert st["window_study"] == {"n_trials": 3, "sampler": {"name": "random", "seed": 13}, "pruner": {"name": "none"},
                                  "cv": {"mode": "expanding", "n_splits": 2, "min_train_size": 20, "purge": 9,
                                         "embargo": 3}}
    assert st["objective"] == {"name": "excess_return", "directions": ["maximize"], "aggregate": "mean_minus_std",
                               "k": 0.5, "min_trades": 0, "options": {}}
    assert st["select"] == {"rule": "robust", "top_k": 3}
    for fragment in ("walk-forward nd_wf_costly: settings", "universe tier1", "regime filter RISK_ON",
                     "min_periods 8", "3 + 11 bp per side", "train 100 sessions, test 30, step 40, anchored, purge 8",
                     "3 trials; sampler random seed 13; pruner none; 2 purged folds, min train 20, purge 9, embargo 3",
                     "aggregate mean_minus_std k 0.5", "robust: among the top 3 trials",
                     f"final reserve from {st['reserve_start']} kept out"):
        assert fragment in text, fragment
    # a run folder reads no study storage: report refuses --storage with it (explore21)
    page = ok(cli("report", out / "walkforward" / "nd_wf_costly", *env[4:])).stdout.strip().splitlines()[-1]
    html = " ".join(pd.io.common.Path(page).read_text().split())
    assert "regime filter RISK_ON" in html and "3 + 11 bp per side" in html and "min_periods 8" in html


def test_walkforward_report_is_named_after_the_run_not_the_spec(synth_db, tmp_path):
    """Two walk-forwards of one spec under two [run].study_name values (say one per cost level) are two runs: two
    folders, two window-study sets. The report of a WalkForwardResult (`ao.build_report(wf)`) was named after the
    spec's [study].name, so the second run's page overwrote the first's, and its title named the spec only."""
    import optimizer as ao

    url = f"sqlite:///{tmp_path / 's.db'}"
    pages, runs = [], []
    for name in ("nd_wf_a", "nd_wf_b"):
        runs.append(ao.walk_forward(WF.replace('study_name = "nd_wf_costly"', f'study_name = "{name}"'), synth_db, url,
                                    n_trials=2))
        pages.append(ao.build_report(runs[-1], out_dir=tmp_path / "reports"))
    assert [p.name for p in pages] == ["nd_wf_a-walkforward.html", "nd_wf_b-walkforward.html"]
    assert all(p.exists() for p in pages)
    assert [(r.study, r.spec_name) for r in runs] == [("nd_wf_a", "nd_wf"), ("nd_wf_b", "nd_wf")]
    assert [r.windows[0].study_name.split("-wf")[0] for r in runs] == ["nd_wf_a", "nd_wf_b"]


def test_signal_sheets_of_other_min_periods_are_two_sheets(synth_db, tmp_path):
    """Two parameters files alike but for the z-scores' min_periods replay other positions (a score exists from the
    span's 8th session with min_periods 8, from its 12th with 12: entries in between are HOLD on the sheet's night),
    yet had one params_hash: the second `signals` replaced the first's rows of the signal_sheet table and its
    signals/<date>_<hash>/ files, and the sheet never said which min_periods it used. A sheet with neither
    min_periods nor a panel start before its span keeps its earlier hash (one night's rows stay keyed alike)."""
    import hashlib

    import pandas as pd

    from optimizer.data.calendar import nyse_sessions
    from optimizer.data.store import connect
    from optimizer.engine.evaluate import Config
    from optimizer.signals import latest_finra_date, params_hash, signal_sheet
    from optimizer.study.paramsfile import ParamsRecord

    con = connect(synth_db, read_only=True)
    day = latest_finra_date(con)
    con.close()
    start = str(nyse_sessions(pd.Timestamp(day) - pd.Timedelta(days=40), pd.Timestamp(day))[-15].date())
    p = {"variant": "B", "z_window": 20, "buy_threshold": 55, "sell_threshold": 30, "exit": "fixed", "hold_days": 7}
    a = signal_sheet(ParamsRecord(p, universe="tier1", start=start, min_periods=8), synth_db)
    b = signal_sheet(ParamsRecord(p, universe="tier1", start=start, min_periods=12), synth_db)
    assert (a.rows["decision"].to_numpy() != b.rows["decision"].to_numpy()).any()  # two different sheets
    assert a.params_hash != b.params_hash
    assert (a.meta()["min_periods"], b.meta()["min_periods"]) == (8, 12) and a.meta()["panel_start"] == start
    cfg = Config.from_params(p)
    old = hashlib.sha256(json.dumps({"params": cfg.to_params(), "universe": "tier1", "start": start, "regime": "ALL"},
                                    sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert params_hash(cfg, "tier1", start, "ALL") == params_hash(cfg, "tier1", start, "ALL", None, start) == old
    f = tmp_path / "p.json"
    f.write_text(json.dumps({**p, "universe": "tier1", "start": start, "min_periods": 8}))
    out = ok(cli("signals", "--params", f, "--db", synth_db, "--out", tmp_path / "out", "--no-save")).stdout
    assert f"z-scores from {start}, min_periods 8" in out and a.params_hash in out


def test_backtest_of_a_trial_says_its_universe_regime_costs_and_z_scores(synth_db, tmp_path):
    """`study best` -> `backtest --params` of a study with a non-default universe, regime filter, costs, span start
    and min_periods reproduces the trial and now says what it ran with; before, it printed the span and the number
    of symbols only, so a run at the default costs or without the regime filter looked the same."""
    spec = parse_spec(TINY.replace("[cv]", '[data]\nuniverse = "tier1"\nstart = "2023-02-01"\nregime = "RISK_ON"\n'
                                           "min_periods = 9\n[data.costs]\ncommission_bps = 2.5\nslippage_bps = 8.0\n[cv]"))
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_study(spec, synth_db, url, n_trials=3)
    best = tmp_path / "best.json"
    best.write_text(ok(cli("study", "best", "target", "--storage", url)).stdout)
    rec = json.loads(best.read_text())["config"]
    assert (rec["universe"], rec["regime"], rec["min_periods"], rec["span"]["panel_start"]) == \
           ("tier1", "RISK_ON", 9, "2023-02-01")
    out = ok(cli("backtest", "--params", best, "--db", synth_db, "--out", tmp_path / "out", "--no-save")).stdout
    assert "universe tier1, regime filter RISK_ON\n" in out
    assert "costs 2.5 + 8 bp per side; z-scores from 2023-02-01, min_periods 9\n" in out
    assert "REPRODUCED" in out
    out = ok(cli("backtest", "--params", best, "--regime", "ALL", "--commission-bps", 1, "--db", synth_db,
                 "--no-save")).stdout  # the flags win, and the lines say so
    assert "universe tier1, regime filter ALL\n" in out and "costs 1 + 8 bp per side" in out


def test_a_start_before_the_trials_panel_start_is_refused(synth_db, tmp_path):
    """`backtest --params best.json --start D` / `signals ... --start D` with D before the trial's panel start: the
    panel loads from the panel start (the z-scores warm up from it, as in the study), so the run began there, not
    at D, without a word (the flag took no effect). Now refused naming the flag and the panel start; a start on
    or after it still runs from it."""
    from _cli_helpers import one_line_error

    spec = parse_spec(TINY.replace("[cv]", '[data]\nuniverse = "tier1"\nstart = "2023-02-01"\n[cv]'))
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_study(spec, synth_db, url, n_trials=3)
    best = tmp_path / "best.json"
    best.write_text(ok(cli("study", "best", "target", "--storage", url)).stdout)
    env = ("--db", synth_db, "--out", tmp_path / "out")
    for cmd in (("backtest", "--params", best, "--no-save"), ("signals", "--params", best, "--no-save")):
        one_line_error(cli(*cmd, "--start", "2023-01-10", *env), "--start must be on or after 2023-02-01",
                       "got 2023-01-10")
    out = ok(cli("backtest", "--params", best, "--no-save", "--start", "2023-02-01", *env)).stdout
    assert "backtest 2023-02-01.." in out
    out = ok(cli("signals", "--params", best, "--no-save", "--start", "2023-02-06", *env)).stdout
    assert "positions replayed from 2023-02-06" in out


def test_study_report_states_the_studys_settings(synth_db, tmp_path):
    """The study report's header said "objective (aggregate mean_minus_std)": not the k the user wrote, nor the
    universe, regime filter, costs or min_periods the trials ran with (all stored with the study's spec)."""
    spec = parse_spec(TINY.replace("[cv]", '[data]\nuniverse = "tier1"\nregime = "RISK_ON"\nmin_periods = 9\n'
                                           "[data.costs]\ncommission_bps = 2.5\nslippage_bps = 8.0\n[cv]")
                      .replace("min_trades = 0", 'aggregate = "mean_minus_std"\nk = 0.5\nmin_trades = 0'))
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_study(spec, synth_db, url, n_trials=3)
    page = ok(cli("report", "target", "--storage", url, "--out", tmp_path / "out")).stdout.strip().splitlines()[-1]
    text = open(page, encoding="utf-8").read()
    assert "universe tier1, regime filter RISK_ON, costs 2.5 + 8 bp per side, min_periods 9" in text
    assert "composite_rank (aggregate mean_minus_std, k 0.5, min_trades 0); sampler random seed 4, pruner none" in text


def test_a_window_with_every_trial_pruned_says_why(synth_db, tmp_path):
    """A walk-forward window whose every trial was pruned (here: min_trades above any fold's trades) stopped the
    run with "has no completed trial to select from (all pruned or failed)": not which rule pruned them nor what
    to change. Now the one line gives the counts, the first trial's stored reason and the keys to change."""
    from _cli_helpers import one_line_error

    spec = tmp_path / "nd_wf.toml"
    spec.write_text(WF.replace("min_trades = 0", "min_trades = 1000"))
    res = cli("walkforward", spec, "--n-trials", 2, "--db", synth_db, "--storage", f"sqlite:///{tmp_path / 's.db'}",
              "--out", tmp_path / "out")
    one_line_error(res, "has no completed trial to select from (2 pruned, 0 failed of 2; trial 0: fold 0: ",
                   "closed trades < min_trades 1000)", "lower [objective] min_trades")
