"""Tests of optimizer.report: the study research report, the walk-forward report and the signal-sandbox chart.

* ``tiny``: a maximize study in a temporary SQLite storage whose objective mirrors the real one (params variant /
  w_short / z_window / buy_threshold / sell_threshold / exit, two reported folds, ``metrics`` and ``folds`` user
  attributes) with a planted effect: value = (buy_threshold − 60)/20 + tiny terms, and every trial with
  buy_threshold 60 pruned after fold 0. The heatmap cells, the importance ranking, the top-10 order and the pruned
  trace are checked against values recomputed here from the trials.
* the walk-forward report is built from a hand-made dict shaped like ``load_walkforward``'s and from a
  ``WalkForwardResult``; the events frame has hand-counted failure modes.
* the sandbox uses a hand-made panel whose ratios, flows and variant-B score follow by hand (ENGINE.md formula).
* a headless-Chromium test (slow) opens a report and checks every figure rendered without a JS error.
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from optimizer.engine.panel import Panel
from optimizer.errors import DataError, ParameterError
from optimizer.report.figures import regime_comparison_figure
from optimizer.report.research import (
    PLOTLY_MARKER, build_study_report, build_walkforward_report, embedded_figures,
)
from optimizer.report.sandbox import sandbox_data, sandbox_figure, write_sandbox
from optimizer.study import make_storage
from optimizer.validate.stats import equity_bootstrap, verdict
from optimizer.validate.walkforward import WalkForwardResult

optuna.logging.set_verbosity(optuna.logging.WARNING)
VARIANTS = ["B", "vw_flow", "blended"]
EXITS = ["fixed_10d", "first_dist"]


# ------------------------------------------------------------------------------------------------ helpers


def _arr(v) -> list:
    """A plotly JSON array: plain list, or a typed array {"dtype", "bdata"} decoded with numpy."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def _fig(figs: list[dict], fid: str) -> dict:
    match = [f for f in figs if f["id"] == fid]
    assert match, f"figure {fid} missing; have {[f['id'] for f in figs]}"
    return match[0]


def _title(f: dict) -> str:
    t = f["layout"].get("title")
    return (t.get("text") if isinstance(t, dict) else t) or ""


def _trace(f: dict, name: str) -> dict:
    match = [t for t in f["data"] if t.get("name") == name]
    assert match, f"trace {name!r} missing in {f['id']}; have {[t.get('name') for t in f['data']]}"
    return match[0]


def _section_table(page: str, heading: str) -> list[list[str]]:
    """Cells of the first table after ``<h2>heading</h2>``."""
    start = page.index(f"<h2>{html.escape(heading)}</h2>")
    body = page[start:page.index("</table>", start)]
    return [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", body)[1:]]


# ------------------------------------------------------------------------------------------------ study fixtures


def _objective(trial: optuna.trial.Trial) -> float:
    variant = trial.suggest_categorical("variant", VARIANTS)
    w_short = trial.suggest_float("w_short", 0.2, 0.8)
    z_window = trial.suggest_categorical("z_window", [10, 20, 40])
    buy = trial.suggest_int("buy_threshold", 60, 80, step=5)
    sell = trial.suggest_int("sell_threshold", 20, 40, step=10)
    trial.suggest_categorical("exit", EXITS)
    v = (buy - 60) / 20 + 0.001 * w_short + 0.0001 * z_window / 10 + 0.0002 * VARIANTS.index(variant) + 0.00001 * sell
    folds = []
    for fold in range(2):
        fv = v + 0.01 * fold
        m = {"rank_score": fv, "hit_rate": 0.5, "avg_return": fv / 100, "closed_trades": 12.0, "signals_per_month": 2.0}
        folds.append(m)
        trial.report(fv, fold)
        if buy == 60 and fold == 0:
            trial.set_user_attr("folds", folds)
            trial.set_user_attr("metrics", {"pruned_at_fold": 0, "pruned_reason": "planted", "duration_s": 0.001})
            raise optuna.TrialPruned("planted")
    trial.set_user_attr("folds", folds)
    trial.set_user_attr("metrics", {"rank_score": v + 0.005, "hit_rate": 0.5, "closed_trades": 24.0,
                                    "w_short_norm": w_short, "duration_s": 0.001, "pruned_at_fold": None})
    return v + 0.005


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('studies') / 'studies.db'}"
    st = make_storage(url, heartbeat=False)  # WAL journal: one cheap commit per storage call
    tiny = optuna.create_study(study_name="tiny", storage=st, direction="maximize",
                               sampler=optuna.samplers.RandomSampler(seed=3), pruner=optuna.pruners.NopPruner())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        tiny.set_metric_names(["rank_score"])  # trials_table then names the column value_rank_score
    for k, v in {"spec_hash": "abc123def", "data_fingerprint": "fp0011", "objective": "rank_score",
                 "aggregate": "mean", "spec_name": "tiny-spec", "n_trials_target": 40}.items():
        tiny.set_user_attr(k, v)
    tiny.optimize(_objective, n_trials=40)
    one = optuna.create_study(study_name="one", storage=st, direction="maximize",
                              sampler=optuna.samplers.RandomSampler(seed=0))
    one.enqueue_trial({"variant": "B", "w_short": 0.5, "z_window": 20, "buy_threshold": 70, "sell_threshold": 30,
                       "exit": "fixed_10d"})
    one.optimize(_objective, n_trials=1)
    multi = optuna.create_study(study_name="multi", storage=st, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        multi.set_metric_names(["rank_score", "max_drawdown"])
    multi.optimize(lambda t: (t.suggest_int("buy_threshold", 60, 80, step=5) / 100,
                              t.suggest_float("w_short", 0.2, 0.8)), n_trials=12)
    return url


@pytest.fixture(scope="module")
def tiny_report(storage, tmp_path_factory) -> tuple[Path, str, list[dict]]:
    out = tmp_path_factory.mktemp("reports")
    path = build_study_report(storage, "tiny", out_dir=out)
    page = path.read_text(encoding="utf-8")
    return path, page, embedded_figures(page)


# ------------------------------------------------------------------------------------------------ study report


def test_study_report_file_header_and_single_plotlyjs(tiny_report):
    path, page, figs = tiny_report
    assert path.name == "tiny.html" and path.exists()
    assert page.count(PLOTLY_MARKER) == 1  # plotly.js embedded exactly once
    for text in ("abc123def", "fp0011", "rank_score (aggregate mean)", "tiny-spec"):
        assert text in page
    ids = [f["id"] for f in figs]
    assert ids == ["fig-history", "fig-importances", "fig-sens-weights", "fig-sens-thresholds", "fig-slice",
                   "fig-contour", "fig-intermediate"]
    assert f'data-plots-expected="{len(figs)}"' in page


def test_study_report_counts_and_history(storage, tiny_report):
    _, page, figs = tiny_report
    study = optuna.load_study(study_name="tiny", storage=storage)
    trials = study.get_trials(deepcopy=False)
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    n_done = sum(t.state == TrialState.COMPLETE for t in trials)
    assert n_pruned > 0 and n_done > 5
    assert f"40 total: {n_done} complete, {n_pruned} pruned, 0 failed" in page
    hist = _fig(figs, "fig-history")
    assert _title(hist) == "Optimization history"
    best = [t for t in hist["data"] if t.get("name") == "Best Value"][0]
    assert max(_arr(best["y"])) == pytest.approx(study.best_value)


def test_study_report_sensitivity_cells_match_trials(storage, tiny_report):
    _, _, figs = tiny_report
    study = optuna.load_study(study_name="tiny", storage=storage)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    df = pd.DataFrame([{**t.params, "value": t.value} for t in done])
    want = df.groupby(["sell_threshold", "buy_threshold"])["value"].mean()
    th = _fig(figs, "fig-sens-thresholds")
    assert "sell_threshold × buy_threshold" in _title(th)
    hm = th["data"][0]
    xs, ys, z = [int(v) for v in hm["x"]], [int(v) for v in hm["y"]], hm["z"]
    assert xs == sorted(df["buy_threshold"].unique()) and 60 not in xs  # every buy=60 trial was pruned
    assert ys == sorted(df["sell_threshold"].unique())
    for i, s in enumerate(ys):
        for j, b in enumerate(xs):
            if (s, b) in want.index:
                assert z[i][j] == pytest.approx(want[(s, b)])
            else:
                assert z[i][j] is None
    w = _fig(figs, "fig-sens-weights")["data"][0]
    assert w["x"] == ["10", "20", "40"]
    assert len(w["y"]) == 5 and sum(sum(r) for r in w["customdata"]) == len(done)  # 5 w_short bins, every trial once
    lows = [float(lbl.split("–")[0]) for lbl in w["y"]]
    assert lows == sorted(lows)


def test_study_report_importances_slice_top10_intermediate(storage, tiny_report):
    _, page, figs = tiny_report
    imp = _fig(figs, "fig-importances")
    bar = imp["data"][0]
    names, vals = list(bar["y"]), _arr(bar["x"])
    assert names[int(np.argmax(vals))] == "buy_threshold"  # the planted effect dominates
    assert "buy_threshold" in _title(_fig(figs, "fig-slice"))
    assert "buy_threshold" in _title(_fig(figs, "fig-contour"))
    study = optuna.load_study(study_name="tiny", storage=storage)
    ranked = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.number))
    rows = _section_table(page, "Top 10 configurations")
    assert [int(r[0]) for r in rows] == [t.number for t in ranked[:10]]
    inter = _fig(figs, "fig-intermediate")
    pruned = _trace(inter, "pruned")
    n_pruned = sum(t.state == TrialState.PRUNED for t in study.trials)
    assert pruned["x"].count(None) == n_pruned and set(x for x in pruned["x"] if x is not None) == {0}
    assert set(x for x in _trace(inter, "complete")["x"] if x is not None) == {0, 1}


def test_study_report_multi_objective_and_too_few_trials(storage, tmp_path):
    page = build_study_report(storage, "multi", out_dir=tmp_path).read_text(encoding="utf-8")
    ids = [f["id"] for f in embedded_figures(page)]
    assert "fig-pareto" in ids and "fig-history" not in ids
    assert "no trial reported intermediate values" in page
    page1 = build_study_report(storage, "one", out_dir=tmp_path).read_text(encoding="utf-8")
    ids1 = [f["id"] for f in embedded_figures(page1)]
    assert "fig-importances" not in ids1
    assert "parameter importances not shown" in page1
    assert page1.count(PLOTLY_MARKER) == 1


def test_study_report_unknown_study(storage, tmp_path):
    with pytest.raises(DataError, match=r"no study named 'nope'.*studies: multi, one, tiny"):
        build_study_report(storage, "nope", out_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ walk-forward


VERDICT_LINE = "edge NOT supported: OOS excess +0.12%/trade (t=0.8, n=143), DSR 0.41 < 0.95, PBO 0.62 >= 0.50"


def _wf_dict(supported: bool = False) -> dict:
    windows = [
        {"index": i, "study": f"s-wf{i:02d}", "train": [tr0, tr1], "test": [te0, te1], "in_reserve": False,
         "best_params": {"variant": v, "z_window": z}, "in_sample": {"rank_score": isr},
         "out_of_sample": {"rank_score": oosr}, "n_trials_tried": 50}
        for i, (tr0, tr1, te0, te1, v, z, isr, oosr) in enumerate([
            ("2022-01-03", "2022-06-30", "2022-07-01", "2022-07-29", "B", 20, 0.9, 0.3),
            ("2022-02-01", "2022-07-29", "2022-08-01", "2022-08-31", "vw_flow", 20, 0.8, -0.1),
            ("2022-03-01", "2022-08-31", "2022-09-01", "2022-09-30", "B", 40, 0.7, 0.2),
        ])
    ]
    result = {
        "spec": "demo", "final": False, "windows": windows,
        "oos": {"avg_excess_return": 0.0012, "excess_t": 0.8, "closed_trades": 143, "n_windows": 3},
        "dsr": 0.41, "psr": 0.77, "pbo": 0.62, "degradation": 0.25,
        "stats": {"n_trials_tried": 150, "degradation": 0.25, "degradation_excess": 0.5, "dsr": 0.41, "psr": 0.77,
                  "pbo": 0.62, "bootstrap": {"total_return": {"point": 0.1, "lo": -0.05, "hi": 0.22},
                                             "sharpe": {"point": 0.07, "lo": -0.1, "hi": 0.2}},
                  "cost_stress": [{"multiplier": 1.0, "avg_excess_return": 0.0012, "trades": 143, "survives": True},
                                  {"multiplier": 2.0, "avg_excess_return": -0.0003, "trades": 143, "survives": False},
                                  {"multiplier": 3.0, "avg_excess_return": -0.0018, "trades": 143, "survives": False}],
                  "cost_fragile": True},
        **(verdict(0.0035, 3.1, 0.97, 0.21, 143) if supported else verdict(0.0012, 0.8, 0.41, 0.62, 143)).to_dict(),
        "warnings": ["WARNING: planted warning"],
    }
    summary = pd.DataFrame([
        {"window": w["index"], "train_start": w["train"][0], "train_end": w["train"][1], "test_start": w["test"][0],
         "test_end": w["test"][1], "in_reserve": False, "study": w["study"], "n_trials_tried": 50,
         "param_variant": w["best_params"]["variant"], "param_z_window": w["best_params"]["z_window"],
         "is_rank_score": w["in_sample"]["rank_score"], "oos_rank_score": w["out_of_sample"]["rank_score"],
         "is_avg_excess_return": 0.004 - 0.001 * w["index"], "oos_avg_excess_return": 0.001 * (1 - w["index"])}
        for w in windows])
    dates = pd.bdate_range("2022-07-01", "2022-09-30")
    rets = np.where(np.arange(len(dates)) % 3 == 0, 0.002, -0.0005)
    equity = pd.DataFrame({"date": dates, "oos_return": rets, "oos_equity": np.cumprod(1 + rets)})
    stability = pd.DataFrame([{"param": "variant", "value": "B", "windows": 2, "share": 2 / 3},
                              {"param": "variant", "value": "vw_flow", "windows": 1, "share": 1 / 3},
                              {"param": "z_window", "value": "20", "windows": 2, "share": 2 / 3},
                              {"param": "z_window", "value": "40", "windows": 1, "share": 1 / 3}])
    trades = pd.DataFrame({"symbol": ["AAA", "BBB"], "net_ret": [0.01, -0.02], "window": [0, 1]})
    return {"result": result, "summary": summary, "trades": trades, "equity": equity, "stability": stability}


def _events() -> pd.DataFrame:
    # 12 closed trades: 5 NONE (winners), 3 GAP_DOWN, 2 SLOW_BLEED, 2 FALSE_SIGNAL; plus one open-at-end trade
    modes = ["NONE"] * 5 + ["GAP_DOWN"] * 3 + ["SLOW_BLEED"] * 2 + ["FALSE_SIGNAL"] * 2 + [None]
    net = [0.03, 0.02, 0.04, 0.01, 0.05, -0.04, -0.05, -0.03, -0.01, -0.02, -0.01, -0.015, 0.2]
    aligned = [True, True, True, True, False, False, False, True, False, False, True, False, True]
    return pd.DataFrame({
        "net_return": net, "failure_mode": modes, "parent_etf_aligned": aligned, "parent_etf_available": [True] * 13,
        "signal_quality": ["HIGH"] * 4 + ["MEDIUM", "LOW", "LOW", "MEDIUM", "LOW", "LOW", "HIGH", "LOW", "HIGH"],
        "open_at_end": [False] * 12 + [True],
    })


def test_failure_mode_figure_counts_null_winners_as_none():
    # bt_signal_events stores NULL for a profitable trade (the design); the figure still shows the winners as NONE
    from optimizer.report.figures import failure_mode_figure

    ev = _events()
    ev["failure_mode"] = ev["failure_mode"].where(ev["failure_mode"] != "NONE", None)
    fm = failure_mode_figure(ev).data[0]
    counts = dict(zip(fm.x, fm.y))
    assert counts["NONE"] == 5 and counts["GAP_DOWN"] == 3 and sum(counts.values()) == 12  # open-at-end excluded


def test_walkforward_report_verdict_numbers_and_equity(tmp_path):
    wf = _wf_dict()
    regimes = [{"regime": "RISK_ON", "hit_rate": 0.6, "avg_return": 0.01, "avg_excess_return": 0.004, "closed_trades": 80},
               {"regime": "RISK_OFF", "hit_rate": 0.4, "avg_return": -0.01, "avg_excess_return": -0.002, "closed_trades": 63}]
    wf["result"]["regimes"] = regimes
    path = build_walkforward_report(wf, out_dir=tmp_path / "reports", events=_events())
    assert path == tmp_path / "reports" / "demo-walkforward.html"
    page = path.read_text(encoding="utf-8")
    assert page.count(PLOTLY_MARKER) == 1
    assert f'<div class="verdict rejected" id="verdict">{html.escape(VERDICT_LINE)}</div>' in page
    assert page.index('id="verdict"') < page.index("<h2>")  # the verdict is at the top
    assert "WARNING: planted warning" in page
    gates = {r[0]: r for r in _section_table(page, "Deciding numbers")}
    assert gates["OOS excess return / trade"][1] == "+0.120%" and "pass" in gates["OOS excess return / trade"][3]
    assert gates["t statistic of the excess"][1] == "0.80" and "fail" in gates["t statistic of the excess"][3]
    assert gates["Deflated Sharpe Ratio"][1] == "0.410" and "fail" in gates["Deflated Sharpe Ratio"][3]
    assert gates["Probability of Backtest Overfitting"][1] == "0.620" and "fail" in gates["Probability of Backtest Overfitting"][3]
    assert gates["OOS closed trades (n)"][1] == "143" and "pass" in gates["OOS closed trades (n)"][3]
    assert "cost-fragile: <span class=\"fail\">YES</span>" in page
    figs = embedded_figures(page)
    assert [f["id"] for f in figs] == ["fig-equity", "fig-is-oos", "fig-stability", "fig-failure-modes",
                                      "fig-etf-alignment", "fig-regimes"]
    eq = _trace(_fig(figs, "fig-equity"), "OOS equity")
    assert _arr(eq["y"]) == pytest.approx(wf["equity"]["oos_equity"].tolist())
    assert eq["x"][0] == "2022-07-01" and eq["x"][-1] == "2022-09-30"
    isoos = _fig(figs, "fig-is-oos")
    assert _arr(_trace(isoos, "IS rank_score")["y"]) == [0.9, 0.8, 0.7]
    assert _arr(_trace(isoos, "OOS rank_score")["y"]) == [0.3, -0.1, 0.2]
    fm = _fig(figs, "fig-failure-modes")["data"][0]
    counts = dict(zip(fm["x"], _arr(fm["y"])))
    assert counts == {"NONE": 5, "SECTOR_DRAG": 0, "GAP_DOWN": 3, "IMMEDIATE_REVERSAL": 0, "SLOW_BLEED": 2,
                      "FALSE_SIGNAL": 2, "UNKNOWN": 0}  # the open-at-end trade is not counted
    box = _fig(figs, "fig-etf-alignment")["data"]
    assert [b["name"] for b in box] == ["aligned with parent ETF (n=6)", "not aligned (n=6)"]
    rv = _section_table(page, "Trade events: failure modes, ETF alignment, rule validation")
    assert [r[0] for r in rv] == ["parent ETF aligned", "signal quality HIGH", "signal quality LOW"]
    assert rv[0][1:3] == ["6", "6"]
    reg = _fig(figs, "fig-regimes")
    assert _arr(_trace(reg, "hit_rate")["y"]) == [0.6, 0.4]
    eq_page = (tmp_path / "equity_curves" / "demo_oos.html").read_text(encoding="utf-8")
    assert eq_page.count(PLOTLY_MARKER) == 1
    eq_figs = embedded_figures(eq_page)
    assert len(eq_figs) == 1 and [t["name"] for t in eq_figs[0]["data"]] == ["OOS equity"]


def test_walkforward_report_supported_without_events(tmp_path):
    path = build_walkforward_report(_wf_dict(supported=True), out_dir=tmp_path, name="ok-run")
    page = path.read_text(encoding="utf-8")
    assert path.name == "ok-run-walkforward.html"
    assert '<div class="verdict supported" id="verdict">edge supported:' in page
    assert ".verdict.supported{background:#2e7d32}" in page.replace(" ", "")
    ids = [f["id"] for f in embedded_figures(page)]
    assert "fig-failure-modes" not in ids and "fig-regimes" not in ids  # trades lack the event columns
    params = _section_table(page, "Best parameters per window")
    assert params == [["0", "B", "20"], ["1", "vw_flow", "20"], ["2", "B", "40"]]
    # the windows table: out-of-sample columns first, then the in-sample ones; returns as percentages
    start = page.index("<h2>Windows</h2>")
    heads = re.findall(r"<th>(.*?)</th>", page[start:page.index("</thead>", start)])
    first_is = next(i for i, h in enumerate(heads) if h.startswith("IS "))
    assert heads[:2] == ["window", "test window"] and heads[2].startswith("OOS ")
    assert all(h.startswith("OOS ") for h in heads[2:first_is]) and all(h.startswith("IS ") for h in heads[first_is:])
    row0 = _section_table(page, "Windows")[0]
    assert any(re.fullmatch(r"[+-]\d+\.\d\d%", c) for c in row0)


def test_walkforward_report_gates_the_sharpe_statistic_the_verdict_used(tmp_path):
    wf = _wf_dict()
    wf["result"].update(verdict(0.0012, 0.8, 0.77, 0.62, 143, sharpe="psr",
                                note="in-sample winners' median DSR 0.41 over 150 trials tried").to_dict())
    page = build_walkforward_report(wf, out_dir=tmp_path).read_text(encoding="utf-8")
    gates = {r[0]: r for r in _section_table(page, "Deciding numbers")}
    psr = gates["Probabilistic Sharpe Ratio (daily OOS excess)"]
    assert psr[1:3] == ["0.770", "&gt;= 0.95"] and "fail" in psr[3]
    assert gates["Deflated Sharpe Ratio"][2:] == ["", ""]  # reported, not a gate of this verdict
    dsr_page = build_walkforward_report(_wf_dict(), out_dir=tmp_path).read_text(encoding="utf-8")
    dsr_gates = {r[0]: r for r in _section_table(dsr_page, "Deciding numbers")}
    assert dsr_gates["Probabilistic Sharpe Ratio (daily OOS excess)"][2:] == ["", ""]


def test_api_build_report_reads_and_writes_under_the_output_root(storage, tmp_path, monkeypatch):
    # ao.build_report(NAME) is `accumopt report NAME`: the run under <root>/walkforward, the page in <root>/reports,
    # the root from ACCUMOPT_OUTPUT. It looked in ./output/walkforward (so a saved run NAME became "no study named
    # NAME") and wrote the study page to ./output/reports, outside the root the user set.
    import json

    from optimizer import api

    root, cwd = tmp_path / "root", tmp_path / "cwd"
    run, wf = root / "walkforward" / "demo", _wf_dict()
    run.mkdir(parents=True)
    cwd.mkdir()
    (run / "result.json").write_text(json.dumps(wf["result"]))
    wf["summary"].to_csv(run / "walk_forward_summary.csv", index=False)
    wf["stability"].to_csv(run / "parameter_stability.csv", index=False)
    wf["trades"].to_parquet(run / "oos_trades.parquet")
    wf["equity"].to_parquet(run / "oos_equity.parquet")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("ACCUMOPT_OUTPUT", str(root))
    assert api.build_report("demo", storage) == root / "reports" / "demo-walkforward.html"
    assert api.build_report("one", storage) == root / "reports" / "one.html"
    assert (root / "reports" / "one.html").exists() and (root / "equity_curves" / "demo_oos.html").exists()
    assert list(cwd.iterdir()) == []
    # name= names the page of a saved run or a study too (it only did for a WalkForwardResult: silently ignored)
    assert api.build_report("demo", storage, out_dir=tmp_path / "n", name="mine") == tmp_path / "n" / "mine-walkforward.html"
    assert api.build_report("one", storage, out_dir=tmp_path / "n", name="theirs") == tmp_path / "n" / "theirs.html"
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["mine-walkforward.html", "theirs.html"]


def test_walkforward_report_from_result_object(tmp_path):

    d = _wf_dict()
    v = verdict(-0.001, -1.0, float("nan"), float("nan"), 12)
    r = WalkForwardResult("objdemo", [], d["result"]["oos"], d["result"]["stats"], v, d["summary"], d["trades"],
                          d["equity"], d["stability"], False)
    page = build_walkforward_report(r, out_dir=tmp_path).read_text(encoding="utf-8")
    assert html.escape(v.line) in page and "DSR n/a" in v.line
    assert 'class="verdict rejected"' in page
    with pytest.raises(ParameterError, match="wf must be a WalkForwardResult"):
        build_walkforward_report({"summary": []}, out_dir=tmp_path)


def _wf_dict_now() -> dict:
    """``_wf_dict`` with the statistics this version stores: the daily inference, the equity bootstrap of the
    equity table's own returns (with benchmark and excess columns), SPA, and a cost-stress table where every
    multiple survives (the old report said "survives 1x costs but not 2x or 3x" beside such a table)."""
    wf = _wf_dict()
    eq = wf["equity"]
    bench = np.full(len(eq), 0.0002)
    eq["bench_return"], eq["bench_equity"] = bench, np.cumprod(1 + bench)
    eq["excess_return"] = eq["oos_return"] - bench
    eq["excess_equity"] = np.cumprod(1 + eq["excess_return"])
    b = equity_bootstrap(eq["oos_return"].to_numpy(), reps=200, seed=0)
    st = wf["result"]["stats"]
    del st["bootstrap"]
    st["equity_bootstrap"] = {
        "resamples": b.resamples, "n_days": b.n_days, "block_size": b.block_size, "reps": b.reps, "level": b.level,
        "drawdown_percentile": b.drawdown_percentile, "drawdown_quantiles": {"50%": 0.02, "90%": 0.05, "95%": 0.06},
        **{k: getattr(b, k)._asdict() for k in ("total_return", "cagr", "max_drawdown", "sharpe")}}
    st["cost_stress"] = [{"multiplier": m, "avg_excess_return": 0.003 - 0.0005 * m, "trades": 143, "survives": True}
                         for m in (1.0, 2.0, 3.0)]
    st["cost_fragile"] = False
    st["inference"] = {"n_trades": 143, "n_days": 290, "n_eff": 83.4, "boot_lo": 0.001, "boot_hi": 0.02,
                       "block_size": 2.1, "mde_per_trade": 0.046, "mde_per_year": 0.38, "alpha": 0.0228, "power": 0.8,
                       "t_iid": 4.4, "hac_lags": 5, "skew": 0.2, "kurtosis": 4.4, "t": 3.35}
    st["inference_mkt"] = {"mean_per_trade": 0.05, "t": 4.1, "mde_per_trade": 0.034}
    st["spa"] = {"p": 0.026, "p_median": 0.015}
    st["n_configs"] = 140
    st["pbo_method"] = "cpcv"
    return wf


def test_walkforward_report_numbers_agree_with_each_other(tmp_path):
    """The bootstrap table's points are the equity curve's own (total return = last equity - 1) and say what was
    resampled; the cost-stress sentence follows the table's booleans; the equity chart carries the benchmark and
    the excess; the deciding numbers show the sample (trades, days, effective n), the MDE, the market-adjusted
    figures and the SPA p."""
    wf = _wf_dict_now()
    page = build_walkforward_report(wf, out_dir=tmp_path).read_text(encoding="utf-8")
    eq = wf["equity"]
    start = page.index("<h3>Out-of-sample account: block bootstrap</h3>")
    assert "resamples: days of the portfolio&#x27;s daily returns, in blocks" in page[start:start + 400]
    rows = {r[0]: r for r in (re.findall(r"<td[^>]*>(.*?)</td>", x) for x in
                              re.findall(r"<tr>(.*?)</tr>", page[start:page.index("</table>", start)])[1:])}
    assert rows["total return"][1] == f"{eq['oos_equity'].iloc[-1] - 1:.1%}"
    assert "cost stress: survives 1×, 2× and 3× costs; cost-fragile: <span class=\"pass\">no</span>" in page
    assert "but not 2×" not in page
    figs = embedded_figures(page)
    f = _fig(figs, "fig-equity")
    assert _arr(_trace(f, "matched random-entry benchmark")["y"]) == pytest.approx(eq["bench_equity"].tolist())
    assert _arr(_trace(f, "excess over the benchmark")["y"]) == pytest.approx(eq["excess_equity"].tolist())
    gates = {r[0]: r for r in _section_table(page, "Deciding numbers")}
    assert gates["OOS sample: trades / days / effective n"][1] == "143 / 290 / 83.4"
    assert gates["minimum detectable effect (alpha 0.023, power 80%)"][1] == "4.60%/trade, 38.0%/yr"
    assert gates["market-adjusted: excess / trade, HAC t, MDE / trade (not gated)"][1] == "+5.000%, 4.10, 3.40%"
    assert gates["SPA p-value (Hansen, every configuration tried; windows combined)"][1].startswith("0.026")
    assert gates["Probability of Backtest Overfitting"][1] == "0.620"  # the gate
    assert gates["PBO computed from"][1].startswith("the combinatorial purged CV splits")
    assert gates["trials tried (all windows)"][1] == "150 (140 distinct)"


def test_one_trade_count_in_the_rule_table_and_the_box_plot(tmp_path):
    """Trades whose parent ETF is not available are neither aligned nor not aligned: the box plot and the rule
    table count the same trades (the old table counted them as "not aligned": 6 vs 137 beside a 6 vs 69 box)."""
    ev = _events()
    ev["parent_etf_available"] = [True] * 8 + [False] * 5  # 4 closed trades without a parent ETF
    ev["excess_return"] = ev["net_return"] - 0.001
    page = build_walkforward_report(_wf_dict_now(), out_dir=tmp_path, events=ev).read_text(encoding="utf-8")
    box = _fig(embedded_figures(page), "fig-etf-alignment")
    aligned = ev.iloc[:12][ev["parent_etf_available"].iloc[:12] & ev["parent_etf_aligned"].iloc[:12]]
    n_al, n_not = len(aligned), 8 - len(aligned)
    assert [b["name"] for b in box["data"]] == [f"aligned with parent ETF (n={n_al})", f"not aligned (n={n_not})"]
    assert _arr(box["data"][0]["y"]) == pytest.approx(aligned["excess_return"].tolist())  # the verdict's measure
    rv = _section_table(page, "Trade events: failure modes, ETF alignment, rule validation")
    assert rv[0][:4] == ["parent ETF aligned", str(n_al), str(n_not), "4"]  # n_with, n_without, n_na
    assert all(int(r[1]) + int(r[2]) + int(r[3]) == 12 for r in rv)  # every row counts the 12 closed trades
    assert "12 closed out-of-sample trades (returns: excess return); parent ETF known for 8" in page


def test_regime_comparison_figure_requires_columns():
    fig = regime_comparison_figure(pd.DataFrame({"regime": ["A"], "hit_rate": [0.5], "avg_return": [0.01],
                                                 "avg_excess_return": [-0.01], "closed_trades": [3]}))
    assert [t.name for t in fig.data] == ["hit_rate", "avg_return", "avg_excess_return", "closed_trades"]
    assert list(fig.data[2].marker.color) == ["#c62828"]  # negative excess drawn red
    with pytest.raises(ParameterError, match="missing \\['closed_trades'\\]"):
        regime_comparison_figure(pd.DataFrame({"regime": ["A"], "hit_rate": [0.5], "avg_return": [0.01],
                                               "avg_excess_return": [0.0]}))


# ------------------------------------------------------------------------------------------------ sandbox


T_SB = 45


def _sandbox_panel() -> Panel:
    dates = pd.bdate_range("2023-01-02", periods=T_SB)
    rows = []
    for sym, k in (("AAA", 1.0), ("BBB", 2.0)):
        for t, d in enumerate(dates):
            B = 1000.0 + 37.0 * ((t * 7) % 11) * k
            S = 900.0 + 23.0 * ((t * 5) % 13)
            rows.append({"date": d, "symbol": sym, "open": 10.0, "high": 10.0, "low": 10.0, "close": 10.0,
                         "volume": 1e5, "short_buy_volume": B, "short_sell_volume": S, "short_buy_sell_ratio": B / S,
                         "lit_buy_volume": np.nan if t == 30 else 400.0 + t, "lit_sell_volume": 350.0,
                         "lit_flow_imbalance": np.nan, "otc_participation_rate": np.nan,
                         "confidence": 0.2 + 0.01 * t})
    return Panel.from_frame(pd.DataFrame(rows))


def test_sandbox_figure_rows_lines_and_scores():
    panel = _sandbox_panel()
    fig = sandbox_figure(panel, "AAA", z_window=20, buy=70, sell=30)
    lay = fig.layout.to_plotly_json()
    assert "yaxis10" in lay and "yaxis11" not in lay  # ten stacked rows: price, configuration score, eight inputs
    ratio_lines = sorted(s["y0"] for s in lay["shapes"] if s.get("yref") == "y6")
    assert ratio_lines == [0.75, 1.25]
    # every row's y axis names its unit; the bottom x axis says what a step is
    units = [lay[f"yaxis{i if i > 1 else ''}"]["title"]["text"] for i in range(1, 11)]
    assert units[0] == "price (USD)" and units[1] == units[6] == "score (0–100)" and units[4] == "shares"
    assert all(units) and lay["xaxis10"]["title"]["text"] == "date (NYSE sessions)"
    names = [t.name for t in fig.data]
    for n in ("Score B (current)", "Score vw_flow", "Score blended", "Combined buy/sell ratio", "VW directional flow",
              "FINRA buy volume", "Short buy/sell ratio", "Imbalance·log1p(B+S)"):
        assert n in names
    axes = {t.name: t.yaxis for t in fig.data}
    assert [axes["Score B (current)"], axes["Score vw_flow"], axes["Score blended"]] == ["y7", "y8", "y9"]
    assert axes["Imbalance·log1p(B+S)"] == "y10" and axes["Price"] == "y" and axes["Configuration score"] == "y2"
    conf = [t for t in fig.data if t.name == "Confidence ×100 (B)"][0]
    assert conf.opacity <= 0.3 and conf.y[10] == pytest.approx(100 * (0.2 + 0.1))


def test_sandbox_values_match_hand_formulas():
    panel = _sandbox_panel()
    df = sandbox_data(panel, "aaa", z_window=20)
    t = np.arange(T_SB)
    B = 1000.0 + 37.0 * ((t * 7) % 11)
    S = 900.0 + 23.0 * ((t * 5) % 13)
    lb = np.where(t == 30, 0.0, 400.0 + t)  # missing lit volume counts as 0
    assert df["combined_ratio"].to_numpy() == pytest.approx((B + lb) / (S + 350.0))
    assert df["vw_flow"].to_numpy() == pytest.approx(B + lb - S - 350.0)
    assert df["imbalance_log"].to_numpy() == pytest.approx((B - S) / (B + S) * np.log1p(B + S))
    # variant B with lit/price/otc terms absent: display = (clip(0.55·tanh(0.5 z)) + 1)·50, z over 20 sessions
    r = pd.Series(B / S)
    z = (r - r.rolling(20).mean()) / r.rolling(20).std(ddof=0)
    want = (np.clip(0.55 * np.tanh(0.5 * z.to_numpy()), -1, 1) + 1) * 50
    got = df["score_B"].to_numpy()
    assert np.isnan(got[:19]).all() and np.isfinite(got[19:]).all()
    assert got[19:] == pytest.approx(want[19:])
    cut = sandbox_data(panel, "AAA", start="2023-02-06", end="2023-02-17", z_window=20)
    assert cut["date"].dt.strftime("%Y-%m-%d").tolist()[0] == "2023-02-06" and len(cut) == 10
    i0 = int(np.searchsorted(pd.bdate_range("2023-01-02", periods=T_SB), pd.Timestamp("2023-02-06")))
    assert cut["score_B"].to_numpy() == pytest.approx(got[i0:i0 + 10])  # scored on the whole panel, then cut


def _dots(fig, name):
    return [t for t in fig.data if t.name == name]


def test_sandbox_dot_mode_overlays_the_chosen_source_on_every_score_row():
    panel = _sandbox_panel()
    df = sandbox_data(panel, "AAA", z_window=20)
    x = [d.strftime("%Y-%m-%d") for d in df["date"]]
    buy, sell = 55.0, 45.0  # so that every variant has both kinds of days in this panel
    want = {v: ([xi for xi, s in zip(x, df[f"score_{v}"]) if s >= buy], [xi for xi, s in zip(x, df[f"score_{v}"]) if s <= sell])
            for v in ("B", "vw_flow", "blended")}
    assert all(a and d for a, d in want.values())
    for mode, src in (("current", "B"), ("option_a", "vw_flow"), ("option_b", "blended")):
        fig = sandbox_figure(panel, "AAA", z_window=20, buy=buy, sell=sell, dot_mode=mode)
        acc, dist = _dots(fig, f"{mode} accumulation ({src})"), _dots(fig, f"{mode} distribution ({src})")
        assert [t.yaxis for t in acc] == ["y7", "y8", "y9"] == [t.yaxis for t in dist]  # on every score row
        for t in acc:
            assert list(t.x) == want[src][0] and set(t.y) == {104.0}
        for t in dist:
            assert list(t.x) == want[src][1] and set(t.y) == {-6.0}
        others = [t.name for t in fig.data if t.name and (" accumulation (" in t.name or " distribution (" in t.name)]
        assert all(n.startswith(mode) for n in others)
    fig = sandbox_figure(panel, "AAA", z_window=20, buy=buy, sell=sell, dot_mode="all")
    for mode, src, hours in (("current", "B", -0.18 * 24), ("option_a", "vw_flow", 0.0), ("option_b", "blended", 0.18 * 24)):
        t = _dots(fig, f"{mode} accumulation ({src})")[0]
        shifted = [(pd.Timestamp(v) + pd.Timedelta(hours=hours)) for v in want[src][0]]
        assert [pd.Timestamp(v) for v in t.x] == shifted  # the three sources side by side
    with pytest.raises(ParameterError, match="dot_mode must be one of current, option_a, option_b, all"):
        sandbox_figure(panel, "AAA", dot_mode="mean")


def test_sandbox_errors_and_write(tmp_path):
    panel = _sandbox_panel()
    with pytest.raises(DataError, match=r"symbol 'ZZZ' is not in the panel \(2 symbols: AAA, BBB\)"):
        sandbox_figure(panel, "ZZZ")
    with pytest.raises(DataError, match=r"no rows for AAA between 2030-01-01 and 2030-02-01; the panel covers 2023-01-02"):
        sandbox_figure(panel, "AAA", start="2030-01-01", end="2030-02-01")
    written = write_sandbox(sandbox_figure(panel, "BBB"), tmp_path / "sb" / "bbb.html")
    assert written[0] == tmp_path / "sb" / "bbb.html"
    page = written[0].read_text(encoding="utf-8")
    assert page.count(PLOTLY_MARKER) == 1 and "Score blended" in page


# ------------------------------------------------------------------------------------------------ headless browser


def _chromium() -> str:
    found = shutil.which("chromium") or (Path("/usr/bin/chromium").exists() and "/usr/bin/chromium")
    if found:
        return str(found)
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (not root / no apt-get)")
    deadline = time.monotonic() + 240
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-qq", "chromium"],
                ["bash", "-c", "apt-get update -qq && apt-get install -y -qq chromium"]):
        left = deadline - time.monotonic()
        if left <= 5:
            break
        try:
            subprocess.run(cmd, capture_output=True, timeout=left, env=env, check=False)
        except (subprocess.TimeoutExpired, OSError):
            break
        if Path("/usr/bin/chromium").exists():
            return "/usr/bin/chromium"
    pytest.skip("chromium could not be installed (no network or no package)")


@pytest.mark.slow
def test_walkforward_report_renders_in_headless_chromium(tmp_path):
    chromium = _chromium()
    wf = _wf_dict()
    wf["result"]["regimes"] = [{"regime": "RISK_ON", "hit_rate": 0.6, "avg_return": 0.01, "avg_excess_return": 0.004,
                                "closed_trades": 80}]
    path = build_walkforward_report(wf, out_dir=tmp_path / "reports", events=_events())
    n = len(embedded_figures(path.read_text(encoding="utf-8")))
    assert n == 6
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", "--dump-dom", path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines()
              if "Uncaught" in ln or ("ERROR:CONSOLE" in ln and path.name in ln)]
    assert not errors, errors
    m = re.search(r'data-plots-rendered="(\d+)"', proc.stdout)
    assert m, "the render probe did not run (no data-plots-rendered on <body>)"
    assert int(m.group(1)) == n


def test_study_report_of_a_study_with_no_completed_trial_draws_no_history(tmp_path, caplog):
    """Every trial pruned: the report drew empty optimization-history axes and optuna logged "There are no complete
    trials." on stderr; the section says there is no history instead."""
    import logging

    url = f"sqlite:///{tmp_path / 's.db'}"
    s = optuna.create_study(study_name="allpruned", storage=url)
    dist = {"x": optuna.distributions.IntDistribution(0, 3)}
    for i in range(2):
        s.add_trial(optuna.trial.create_trial(params={"x": i}, distributions=dist, state=TrialState.PRUNED))
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING, logger="optuna"):
            page = build_study_report(url, "allpruned", out_dir=tmp_path).read_text(encoding="utf-8")
    finally:
        optuna.logging.disable_propagation()
    assert "fig-history" not in [f["id"] for f in embedded_figures(page)]
    assert "no completed trial: no history to draw" in page
    assert not [r for r in caplog.records if "no complete trials" in r.getMessage()]


def test_a_final_runs_report_does_not_overwrite_the_runs_report(tmp_path):
    """``ao.build_report(wf)`` names the page after the run's spec. A walk-forward with ``final=True`` (the reserve
    opened) was written to the same ``<spec>-walkforward.html`` and ``equity_curves/<spec>_oos.html`` as the run
    that stayed out of the reserve, overwriting it; its folder is ``<spec>-final`` (``walkforward_dir``) and
    ``accumopt report DIR`` names it so. The default name of a final run is ``<spec>-final``."""
    plain = build_walkforward_report(_wf_dict(), out_dir=tmp_path / "reports")
    fin = _wf_dict()
    fin["result"] = {**fin["result"], "final": True}
    final = build_walkforward_report(fin, out_dir=tmp_path / "reports")
    assert (plain.name, final.name) == ("demo-walkforward.html", "demo-final-walkforward.html")
    assert "final reserve opened</td><td>yes" in final.read_text(encoding="utf-8")
    assert "final reserve opened</td><td>no" in plain.read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "equity_curves").iterdir()) == ["demo-final_oos.html", "demo_oos.html"]
