"""Integration tests of the walk-forward loop (optimizer/walkforward.py) on synthetic stores built here.

Each store goes through the real path (``synth_to_db``: raw files -> ingest -> daily_metrics). The walk-forwards
run once, judged and never read back (null, permuted, correlated) keep their window studies in memory (``MEMORY``:
each window's study in an in-process storage; the same trials and result as a journal file, measured: only the
trials' durations differ, at about half the CPU and without an fsync per trial); the others (the planted run,
whose window studies are read back, and those resumed or run again: resume, final reserve, step > test, fewer
trials) live in Optuna journal files under tmp (several times faster than SQLite on a loaded disk; the CLI test
uses SQLite).

Settings and why (measured outside pytest, studies/demo.toml, default synth = 33 symbols 2023-01-03..2024-12-31,
reserve 20 %, 7 windows of train 6 / test 2 months):

* planted market: ``effect=3.0``. At effect 2.0 the OOS excess t was 1.2-2.2 with 10-40 trials per window
  (seed 7), too close to the t > 2 gate for a robust test. At 3.0 with 20 trials per window, seeds 1-6 gave
  t = 3.2, 3.5, 5.6, 5.7, 5.6, 5.4, PSR >= 0.998, PBO 0.05-0.29: all supported (seed 5 is used: t 5.6).
* null market (``effect=0``: the planted market's flows, no drift), 20 trials: seeds 1-6 never supported,
  t between -2.2 and +0.1, PBO 0.50-0.65 (0.45 for seed 2 with 30 trials); seeds 5, 6: PBO 0.65, 0.57.
* real prices with the order of days permuted + null flows (seed 5), permutations 11-13: never supported,
  t -0.9 to -2.4, 159-209 OOS trades.
* mechanics tests (resume, final reserve, CLI, step > test) use 1-2 trials per window on a null store: what they
  assert (what is resumed, opened, written, refused) does not depend on the number of trials.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

import optimizer.validate.walkforward as wfmod
from optimizer.data.synth import SynthConfig, synth_to_db
from optimizer.errors import ParameterError
from optimizer.report.research import build_walkforward_report
from optimizer.study.spec import load_spec
from optimizer.study import load_study_data
from optimizer.study.reserve import openings
from optimizer.study.storage import make_storage
from optimizer.validate.stats import probabilistic_sharpe_ratio, sharpe_stats
from optimizer.validate.walkforward import WalkForwardResult, run_walkforward, select_params

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "studies" / "demo.toml"
REAL_PRICES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "prices_daily.csv.gz"

PLANTED_SEED = 5
PLANTED_EFFECT = 3.0
NULL_SEEDS = (5, 6)          # seed 5 = the planted market's flows without the drift
N_TRIALS = 20                # per window, planted / null / real runs
BACKTEST_KEYS = (            # `accumopt backtest --format json` metric keys (optimizer/cli_engine.py)
    "total_signals", "total_trades", "hit_rate", "avg_return", "median_return", "win_loss", "sharpe",
    "portfolio_sharpe", "max_drawdown", "avg_hold_days", "signals_per_month", "false_positive_rate", "rank_score",
    "avg_excess_return", "avg_benchmark_return", "closed_trades", "open_at_end",
)


# ---- fixtures ----------------------------------------------------------------------------------------------

def _synth(root: Path, **cfg) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    db = root / "m.duckdb"
    out = synth_to_db(SynthConfig(**cfg), root / "raw", db)
    assert all(v["rows_rejected"] == 0 for v in out["ingest"].values())
    return db


def _journal(path: Path) -> str:
    return f"journal:{path}"


MEMORY = "sqlite:///:memory:"  # an in-process storage per window study (run_walkforward's journal-less path)


@pytest.fixture(scope="module")
def spec():
    return load_spec(DEMO)


@pytest.fixture(scope="module")
def cheap_db(tmp_path_factory) -> Path:
    """Any store will do for the mechanics tests: one null store (also the last of ``null_dbs``), built alone so
    the fast tests do not wait for every null market."""
    return _synth(tmp_path_factory.mktemp("wf_null") / f"seed{NULL_SEEDS[-1]}", seed=NULL_SEEDS[-1], effect=0.0)


@pytest.fixture(scope="module")
def null_dbs(tmp_path_factory, cheap_db) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("wf_null")
    return {s: cheap_db if s == NULL_SEEDS[-1] else _synth(base / f"seed{s}", seed=s, effect=0.0) for s in NULL_SEEDS}


@pytest.fixture(scope="module")
def planted(tmp_path_factory, spec):
    """One walk-forward on the planted market, recording every panel a study (or the PBO re-run) was given."""
    base = tmp_path_factory.mktemp("wf_planted")
    db = _synth(base, seed=PLANTED_SEED, effect=PLANTED_EFFECT)
    seen: list[dict] = []
    real_prepare, real_run_study = wfmod.prepare_data, wfmod.run_study

    def prepare(spec_, panel, lo, hi, *a, **k):
        data = real_prepare(spec_, panel, lo, hi, *a, **k)
        seen.append({"kind": "prepare", "lo": lo, "hi": hi, "rows": len(data.panel.dates),
                     "last": pd.Timestamp(data.panel.dates[-1]), "folds_end": max(f.data_end for f in data.folds),
                     "data_hi": data.hi})
        return data

    def run_study(spec_, db_, storage_url=None, *, data=None, extra_attrs=None, **k):
        seen.append({"kind": "run_study", "rows": len(data.panel.dates), "last": pd.Timestamp(data.panel.dates[-1]),
                     "extra": dict(extra_attrs or {})})
        return real_run_study(spec_, db_, storage_url, data=data, extra_attrs=extra_attrs, **k)

    storage = _journal(base / "studies.log")  # read back: the window studies' records, no reserve marker study
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "prepare_data", prepare)
        mp.setattr(wfmod, "run_study", run_study)
        res = run_walkforward(spec, db, storage, n_trials=N_TRIALS, out_dir=base / "out")
    panel, reserve = load_study_data(spec, db)
    return {"result": res, "db": db, "storage": storage, "seen": seen, "dates": pd.DatetimeIndex(panel.dates),
            "reserve": reserve, "out": base / "out"}


# ---- 1. planted edge ---------------------------------------------------------------------------------------

def test_planted_edge_is_supported_out_of_sample(planted):
    res: WalkForwardResult = planted["result"]
    assert len(res.windows) >= 6
    assert res.oos["avg_excess_return"] > 0
    assert res.oos["excess_t"] > 2.0 and res.oos["closed_trades"] >= 30
    assert res.stats["psr"] >= 0.95 and res.stats["pbo"] < 0.5
    assert res.verdict.supported, res.verdict.line
    assert res.to_dict()["verdict"] == "supported"


def test_oos_is_the_stitch_of_the_windows(planted):
    """The stitched OOS excess is the trade-weighted mean of the windows' OOS excess; trade counts add up; the 1x
    cost-stress row re-evaluates the same trades, and each extra multiple of costs takes about 2 x the per-side
    cost off every trade (the benchmark is gross of costs, so costs are not cancelled by it)."""
    res = planted["result"]
    n = np.array([w.oos_metrics["closed_trades"] for w in res.windows])
    ex = np.array([w.oos_metrics["avg_excess_return"] for w in res.windows])
    assert res.oos["closed_trades"] == n.sum() == sum(w.excess.size for w in res.windows)
    assert res.oos["avg_excess_return"] == pytest.approx(float((n * ex).sum() / n.sum()), rel=1e-9, abs=1e-12)
    cs = {row["multiplier"]: row for row in res.stats["cost_stress"]}
    assert cs[1.0]["avg_excess_return"] == pytest.approx(res.oos["avg_excess_return"], rel=1e-9, abs=1e-12)
    assert cs[1.0]["trades"] == res.oos["closed_trades"]
    per_side = (1.0 + 5.0) / 1e4  # demo costs: 1 bp commission + 5 bp slippage per side
    for k in (2.0, 3.0):
        assert cs[k]["trades"] == cs[1.0]["trades"]  # costs do not change the signals, only the net returns
        drop = cs[1.0]["avg_excess_return"] - cs[k]["avg_excess_return"]
        assert drop == pytest.approx(2 * (k - 1) * per_side, rel=0.25)


# ---- 4. no test / reserve session reaches a study ------------------------------------------------------------

def test_no_test_window_data_reaches_any_study(planted):
    res, seen, dates, reserve = planted["result"], planted["seen"], planted["dates"], planted["reserve"]
    storage = make_storage(planted["storage"])
    for w in res.windows:
        st = optuna.load_study(study_name=w.study_name, storage=storage)
        test_start = pd.Timestamp(w.test_dates[0])
        assert pd.Timestamp(st.user_attrs["last_session_seen"]) < test_start
        assert pd.Timestamp(st.user_attrs["last_session_seen"]) == pd.Timestamp(w.train_dates[1])
        assert w.window.train_end <= w.window.test_start
    prepares = [s for s in seen if s["kind"] == "prepare"]
    studies = [s for s in seen if s["kind"] == "run_study"]
    assert len(studies) == len(res.windows) and len(prepares) >= len(res.windows)
    by_train_end = {w.window.train_end: w for w in res.windows}
    for s in prepares:  # window studies and the PBO re-runs
        w = by_train_end[s["hi"]]
        assert s["rows"] == s["hi"] == s["data_hi"] and s["folds_end"] <= s["hi"]
        assert s["last"] == dates[w.window.train_end - 1] < dates[w.window.test_start]
        assert s["last"] < dates[reserve]
    for s, w in zip(studies, res.windows):
        assert s["rows"] == w.window.train_end
        assert s["last"] < pd.Timestamp(w.test_dates[0]) and s["last"] < dates[reserve]
        assert s["extra"]["wf_test"] == list(w.test_dates)


# ---- 5. final reserve ----------------------------------------------------------------------------------------

def test_without_final_no_test_window_reaches_the_reserve(planted):
    res, dates, reserve = planted["result"], planted["dates"], planted["reserve"]
    assert not res.final
    assert all(not w.in_reserve and w.window.test_end <= reserve for w in res.windows)
    assert max(pd.Timestamp(w.test_dates[1]) for w in res.windows) < dates[reserve]
    assert res.equity["date"].max() < dates[reserve]
    assert len(res.trades) and res.trades["exit_idx"].max() < reserve  # every OOS trade closed before the reserve
    assert openings(planted["db"]) == []  # not opened: nothing in the store's reserve ledger
    names = [s.study_name for s in optuna.get_all_study_summaries(make_storage(planted["storage"]))]
    assert not any("reserve" in n for n in names)  # and no marker study in the Optuna storage


@pytest.mark.slow
def test_final_opens_the_reserve_once_and_warns_on_reopening(spec, cheap_db, tmp_path):
    storage = _journal(tmp_path / "final.log")
    panel, reserve = load_study_data(spec, cheap_db)
    dates = pd.DatetimeIndex(panel.dates)
    before = len(openings(cheap_db))
    with warnings.catch_warnings(record=True) as first:
        warnings.simplefilter("always")
        res = run_walkforward(spec, cheap_db, storage, final=True, n_trials=1, out_dir=None)
    assert not [w for w in first if "already opened" in str(w.message)]
    assert res.final and res.windows[-1].in_reserve
    assert res.windows[-1].window.test_end == len(dates)  # the last window runs to the last session
    assert any(w.window.test_start >= reserve for w in res.windows)
    opened = openings(cheap_db)  # the store's ledger, shared with backtest --final
    assert len(opened) == before + 1 and pd.Timestamp(opened[-1].reserve_start) == dates[reserve]
    assert (opened[-1].command, opened[-1].subject) == ("walkforward --final", spec.run.study_name)
    with pytest.warns(UserWarning, match="already opened"):
        again = run_walkforward(spec, cheap_db, storage, final=True, n_trials=1, out_dir=None)
    assert any("already opened" in m for m in again.warnings)
    assert len(openings(cheap_db)) == before + 2


# ---- 6. resume -------------------------------------------------------------------------------------------------

class _Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def resumed(spec, cheap_db, tmp_path_factory):
    """One walk-forward at ONE trial per window, interrupted during its second window and run again (resumed).
    Read by the resume test and, as a finished 1-trial run, by the statistics that cannot be estimated (the resumed
    result is the single run's: the resume test asserts its first window equals the uninterrupted one)."""
    storage = _journal(tmp_path_factory.mktemp("wf_resume") / "resume.log")
    real = wfmod._run_window
    done: list = []

    def once(*a, **k):
        if done:
            raise _Interrupted("killed during window 2")
        done.append(real(*a, **k))
        return done[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "_run_window", once)
        with pytest.raises(_Interrupted):
            run_walkforward(spec, cheap_db, storage, n_trials=1, out_dir=None)
    first = done[0]
    st = make_storage(storage)
    trials0 = optuna.load_study(study_name=first.study_name, storage=st).get_trials(deepcopy=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(st)]
    computed: list[int] = []
    figures = wfmod._window_figures
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "_window_figures", lambda ctx, w, *a: computed.append(w.index) or figures(ctx, w, *a))
        res = run_walkforward(spec, cheap_db, storage, n_trials=1, out_dir=None)
    again = optuna.load_study(study_name=first.study_name, storage=make_storage(storage)).get_trials(deepcopy=False)
    return {"first": first, "trials0": trials0, "names": names, "result": res, "again": again, "computed": computed}


def test_interrupted_run_resumes_without_reoptimizing_finished_windows(resumed):
    first, trials0, again, res = resumed["first"], resumed["trials0"], resumed["again"], resumed["result"]
    assert len(trials0) == first.n_trials_tried >= 1
    assert not any("-wf01-" in n for n in resumed["names"])  # the second window never started
    assert [(t.number, t.datetime_start) for t in again] == [(t.number, t.datetime_start) for t in trials0]
    w0 = res.windows[0]
    assert w0.study_name == first.study_name and w0.params == first.params
    assert w0.oos_metrics == first.oos_metrics and w0.is_metrics == first.is_metrics
    np.testing.assert_array_equal(w0.excess, first.excess)
    assert len(res.windows) > 1
    # the finished window's result is read back from its study, not computed again (the other windows are)
    assert resumed["computed"] == [w.window.index for w in res.windows[1:]]


# ---- 7. result shape and files ------------------------------------------------------------------------------

def test_result_dict_has_the_documented_keys_and_summary_csv(planted, spec):
    res, out = planted["result"], planted["out"]
    d = res.to_dict()
    json.dumps(d, allow_nan=False)  # NaN/inf cleaned to null
    for k in ("windows", "oos", "dsr", "psr", "pbo", "spa", "inference", "degradation", "verdict", "verdict_power"):
        assert k in d
    assert d["verdict"] in ("supported", "not supported")
    assert set(BACKTEST_KEYS) <= set(d["oos"]) and "avg_excess_return" in d["oos"]
    inf, pw = d["inference"], d["verdict_power"]
    assert (pw["n_trades"], pw["n_days"], pw["mde_per_trade"]) == (inf["n_trades"], inf["n_days"], inf["mde_per_trade"])
    assert inf["n_trades"] == d["oos"]["closed_trades"] and d["oos"]["excess_t"] == inf["t"]
    assert 0.0 <= d["spa"]["p"] <= 1.0 and len(d["spa"]["p_windows"]) == len(d["windows"])
    assert (d["stats"]["n_configs"] == len({k for w in res.windows for k in w.config_ids})  # once over all windows
            <= sum(w["n_configs"] for w in d["windows"]) <= d["stats"]["n_trials_tried"])
    eq = res.equity  # the account, its matched benchmark and the excess, day by day
    np.testing.assert_allclose(eq["oos_return"] - eq["bench_return"], eq["excess_return"], atol=1e-15)
    np.testing.assert_allclose(eq["oos_equity"].iloc[-1] - 1, d["stats"]["equity_bootstrap"]["total_return"]["point"])
    assert 0.0 <= d["psr"] <= 1.0 and 0.0 <= d["pbo"] <= 1.0 and 0.0 <= d["dsr"] <= 1.0
    space = set(spec.param_names)
    for w in d["windows"]:
        assert {"train", "test", "best_params", "in_sample", "out_of_sample"} <= set(w)
        assert w["train"][0] <= w["train"][1] < w["test"][0] <= w["test"][1]
        assert set(w["best_params"]) <= space and w["best_params"]
        assert "avg_excess_return" in w["out_of_sample"] and "avg_excess_return" in w["in_sample"]
    starts = [w["test"][0] for w in d["windows"]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    csv = pd.read_csv(out / "walk_forward_summary.csv")
    assert list(csv["window"]) == [w["index"] for w in d["windows"]]
    assert list(csv["test_start"]) == starts
    assert np.allclose(csv["oos_avg_excess_return"], [w["out_of_sample"]["avg_excess_return"] for w in d["windows"]])


@pytest.mark.slow
def test_cli_walkforward_json(cheap_db, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from optimizer.cli import main

    monkeypatch.chdir(tmp_path)  # nothing may land in the cwd: every file goes under --out
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["walkforward", str(DEMO), "--db", str(cheap_db), "--storage",
                                  f"sqlite:///{tmp_path / 'cli.db'}", "--n-trials", "2", "--format", "json",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for k in ("windows", "oos", "dsr", "psr", "pbo", "degradation", "verdict"):
        assert k in d
    assert d["verdict"] in ("supported", "not supported") and len(d["windows"]) >= 2
    assert all(2 <= w["n_trials_tried"] <= 3 for w in d["windows"])  # --n-trials 2, not the spec's 40 (3: a
    # window run to 2 may hold one more trial after a stalled claim was taken over)
    run_dir = out / "walkforward" / "demo"  # the run's own folder under the output root
    assert json.loads((run_dir / "result.json").read_text())["oos"] == d["oos"]
    assert (run_dir / "walk_forward_summary.csv").exists()
    assert not (tmp_path / "output").exists()


# ---- 2. null market ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("seed", NULL_SEEDS)
def test_null_market_is_not_supported_and_overfits(spec, null_dbs, tmp_path, seed):
    res = run_walkforward(spec, null_dbs[seed], MEMORY, n_trials=N_TRIALS, out_dir=None)
    assert not res.verdict.supported, res.verdict.line
    assert res.oos["closed_trades"] >= 30  # decided by the edge, not by a lack of trades
    assert res.oos["excess_t"] < 2.0
    assert res.stats["pbo"] >= 0.4  # in-sample winners are no better than the rest out of sample
    # overlapping trades: the daily series holds far fewer independent observations than trades
    inf = res.stats["inference"]
    assert inf["n_eff"] < 0.5 * inf["n_trades"] and abs(inf["t"]) < abs(inf["t_iid"])
    assert res.verdict.power.n_trades == inf["n_trades"] and res.verdict.power.mde_per_trade > 0
    assert "no edge >= " in res.verdict.line and "detected (MDE at 80% power)" in res.verdict.line


# ---- 3. real prices, days permuted, null flows ---------------------------------------------------------------

def _permuted_prices(src: Path, dst: Path, start: str, end: str, seed: int) -> Path:
    """Real bars of ``src`` in [start, end] (without ^VIX), with the ORDER OF DAYS permuted by one permutation
    shared by all symbols: each day keeps its cross-section (overnight gap, intraday return, high/low extension,
    volume) but follows a random day, so past prices predict nothing. Paths are rebuilt from the first close."""
    df = pd.read_csv(src, usecols=["date", "symbol", "open", "high", "low", "close", "volume"])
    df = df.loc[(df["symbol"] != "^VIX") & (df["date"] >= start) & (df["date"] <= end)]
    wide = {c: df.pivot(index="date", columns="symbol", values=c).sort_index() for c in ("open", "high", "low", "close", "volume")}
    o, h, lo_, c, v = (wide[k].to_numpy(float) for k in ("open", "high", "low", "close", "volume"))
    assert np.isfinite(c).all()
    gap = np.log(o[1:] / c[:-1])
    intra = np.log(c[1:] / o[1:])
    up = np.log(h / np.maximum(o, c))[1:]
    dn = np.log(np.minimum(o, c) / lo_)[1:]
    p = np.random.default_rng(seed).permutation(len(gap))
    gap, intra, up, dn, vol = gap[p], intra[p], up[p], dn[p], v[1:][p]
    logc = np.log(c[0]) + np.cumsum(gap + intra, axis=0)
    new_c = np.vstack([c[:1], np.exp(logc)])
    new_o = np.vstack([o[:1], np.exp(np.log(new_c[:-1]) + gap)])
    new_h = np.vstack([h[:1], np.maximum(new_o[1:], new_c[1:]) * np.exp(up)])
    new_l = np.vstack([lo_[:1], np.minimum(new_o[1:], new_c[1:]) * np.exp(-dn)])
    new_v = np.vstack([v[:1], vol])
    r = lambda a: np.round(a, 6)  # noqa: E731
    oo, cc = r(new_o), r(new_c)
    hh, ll = np.maximum(r(new_h), np.maximum(oo, cc)), np.minimum(r(new_l), np.minimum(oo, cc))
    cols = wide["close"].columns
    out = pd.concat([pd.DataFrame({"date": wide["close"].index, "symbol": s, "open": oo[:, j], "high": hh[:, j],
                                   "low": ll[:, j], "close": cc[:, j], "volume": new_v[:, j].astype(np.int64)})
                     for j, s in enumerate(cols)], ignore_index=True)
    out.sort_values(["date", "symbol"]).to_csv(dst, index=False)
    return dst


@pytest.mark.slow
def test_real_prices_permuted_with_null_flows_is_not_supported(spec, tmp_path):
    if not REAL_PRICES.is_file():
        pytest.skip(f"real prices absent: {REAL_PRICES}")
    start, end = "2023-01-03", "2024-12-31"
    csv = _permuted_prices(REAL_PRICES, tmp_path / "permuted.csv", start, end, seed=11)
    db = _synth(tmp_path / "m", seed=5, effect=0.0, prices_file=str(csv), start=start, end=end)
    res = run_walkforward(spec, db, MEMORY, n_trials=N_TRIALS, out_dir=None)
    assert not res.verdict.supported, res.verdict.line
    assert res.oos["closed_trades"] >= 30
    assert res.oos["excess_t"] < 2.0


# ---- 3b. correlated trades: i.i.d. significant, the daily HAC not -------------------------------------------

def test_correlated_trades_iid_inference_says_significant_the_verdicts_daily_hac_does_not(tmp_path):
    """Real prices 2023-2024 with synthetic flows carrying a weak planted effect (effect 0.5, seed 17) and the truth
    benchmark's spec (bench/truth.toml): the out-of-sample trades overlap (10-20 sessions) and share the market's
    moves. Counted as 213 independent draws their excess looks significant -- i.i.d. t 2.25 > 2 and per-trade PSR
    0.989 >= 0.95, the two gates of the verdict before issue 13 -- but the daily excess series holds about 47
    effective trades: the verdict's HAC t is 1.06 and its daily PSR 0.86 (measured 2026-12-04; since the stitched
    OOS is one book, no symbol held twice across windows, 2026-12-05: 192 trades, HAC t 1.0, PSR 0.84, eff. n 48,
    i.i.d. t still > 2). (Until the
    sampler seeded each trial from (seed, trial index), the null market of seed 17 drew a winner whose i.i.d. t
    was 2.16; with the new draws no null seed of 17-43 reaches i.i.d. t 2, so the weak effect stands in.)"""
    if not REAL_PRICES.is_file():
        pytest.skip(f"real prices absent: {REAL_PRICES}")
    db = _synth(tmp_path / "m", seed=17, effect=0.5, prices_file=str(REAL_PRICES), start="2023-01-03",
                end="2024-12-31", universe="tier1+3")
    spec = load_spec(ROOT / "bench" / "truth.toml")
    res = run_walkforward(spec, db, MEMORY, n_trials=20, out_dir=None)
    inf, excess = res.stats["inference"], np.concatenate([w.excess for w in res.windows])
    assert inf["n_trades"] == excess.size >= 30 and inf["mean_per_trade"] == pytest.approx(excess.mean())
    ss = sharpe_stats(excess)
    psr_iid = probabilistic_sharpe_ratio(ss["sr"], 0.0, ss["n"], ss["skew"], ss["kurtosis"])
    assert res.oos["excess_t_iid"] > 2.0 and psr_iid >= 0.95  # the i.i.d. gates would pass
    t = res.verdict.gate("excess_t")
    assert t.short == "HAC t" and t.value == res.oos["excess_t"] < 2.0 and not t.passed
    assert not res.verdict.gate("psr").passed and res.stats["psr"] < 0.95
    assert inf["n_eff"] < inf["n_trades"] / 3
    assert not res.verdict.supported and "HAC t=1.0" in res.verdict.line


# ---- select_params -------------------------------------------------------------------------------------------

def _study_with(values: list[tuple[dict, float]]) -> optuna.Study:
    dists = {"a": optuna.distributions.FloatDistribution(0.0, 1.0),
             "exit": optuna.distributions.CategoricalDistribution(["x", "y"])}
    st = optuna.create_study(direction="maximize")
    for params, v in values:
        st.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=v))
    return st


def test_select_params_best_and_robust_plateau():
    # a lucky spike at a=0.9 (exit x, lone) vs a plateau around a=0.2 (exit y)
    vals = [({"a": 0.9, "exit": "x"}, 10.0), ({"a": 0.85, "exit": "x"}, 0.0), ({"a": 0.95, "exit": "x"}, -1.0),
            ({"a": 0.2, "exit": "y"}, 8.0), ({"a": 0.22, "exit": "y"}, 7.5), ({"a": 0.18, "exit": "y"}, 7.8),
            ({"a": 0.25, "exit": "y"}, 7.0)]
    st = _study_with(vals)
    assert select_params(st, "best").params == {"a": 0.9, "exit": "x"}
    assert select_params(st, "robust", top_k=5).params == {"a": 0.2, "exit": "y"}


def test_select_params_robust_does_not_count_repeats_as_neighbours():
    """A lucky spike the sampler proposed three times (two trials reusing its result, ``repeat_of``) is one
    configuration: its neighbours are the other configurations near it, not its own copies (which made its
    neighbourhood median its own value, so the spike won the plateau rule)."""
    dists = {"a": optuna.distributions.FloatDistribution(0.0, 1.0),
             "exit": optuna.distributions.CategoricalDistribution(["x", "y"])}
    st = optuna.create_study(direction="maximize")
    vals = [({"a": 0.9, "exit": "x"}, 10.0, None), ({"a": 0.85, "exit": "x"}, 0.0, None),
            ({"a": 0.95, "exit": "x"}, -1.0, None), ({"a": 0.2, "exit": "y"}, 8.0, None),
            ({"a": 0.22, "exit": "y"}, 7.5, None), ({"a": 0.18, "exit": "y"}, 7.8, None),
            ({"a": 0.9, "exit": "x"}, 10.0, 0), ({"a": 0.9, "exit": "x"}, 10.0, 0)]
    for params, v, of in vals:
        st.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=v,
                                               user_attrs={} if of is None else {"repeat_of": of}))
    assert select_params(st, "best").number == 0
    assert select_params(st, "robust", top_k=5).params == {"a": 0.2, "exit": "y"}


def test_select_params_robust_separates_categories():
    # same numeric value, different category: the neighbours of the spike are its category mates, which score low
    vals = [({"a": 0.5, "exit": "x"}, 10.0), ({"a": 0.5, "exit": "x"}, -5.0), ({"a": 0.5, "exit": "x"}, -6.0),
            ({"a": 0.5, "exit": "y"}, 9.0), ({"a": 0.5, "exit": "y"}, 8.5), ({"a": 0.5, "exit": "y"}, 8.0)]
    st = _study_with(vals)
    assert select_params(st, "robust", top_k=3).params == {"a": 0.5, "exit": "y"}
    assert math.isfinite(st.best_value)


def test_tried_configs_counts_each_distinct_configuration_once():
    """What SPA tests and DSR deflates by: every distinct configuration evaluated (complete or pruned), a repeat of
    the same configuration once; failed trials have no evaluation to run (DSR still counts them)."""
    dists = {"a": optuna.distributions.FloatDistribution(0.0, 1.0)}
    st = optuna.create_study(direction="maximize")
    T = optuna.trial.TrialState
    for a, state in ((0.1, T.COMPLETE), (0.2, T.PRUNED), (0.1, T.COMPLETE), (0.3, T.FAIL), (0.2, T.COMPLETE),
                     (0.4, T.PRUNED)):
        st.add_trial(optuna.trial.create_trial(params={"a": a}, distributions=dists, state=state,
                                               value=1.0 if state == T.COMPLETE else None))
    configs, done = wfmod.tried_configs(st)
    assert [t.params for t in configs] == [{"a": 0.1}, {"a": 0.2}, {"a": 0.4}] and done == [True, True, False]
    # the DSR's count: every distinct configuration tried, the failed one included (records.distinct_configurations)
    assert [t.params for t in wfmod.distinct_configurations(st)] == [{"a": 0.1}, {"a": 0.2}, {"a": 0.3}, {"a": 0.4}]


def test_combine_pvalues_is_rugers_bound():
    """K/k x the k-th smallest p, k = ceil(K/2): valid whatever the dependence between the windows' p-values."""
    assert wfmod.combine_pvalues([0.01, 0.02, 0.5]) == pytest.approx(1.5 * 0.02)
    assert wfmod.combine_pvalues([0.04, 0.01, 0.03, 0.02]) == pytest.approx(2 * 0.02)
    assert wfmod.combine_pvalues([0.3, float("nan"), None, 0.9]) == pytest.approx(min(1.0, 2 * 0.3))
    assert wfmod.combine_pvalues([0.6, 0.7, 0.9]) == 1.0
    assert math.isnan(wfmod.combine_pvalues([float("nan")]))
    # identical p-values (perfectly dependent windows): the bound gives at most twice the common value
    assert wfmod.combine_pvalues([0.02] * 7) == pytest.approx(7 / 4 * 0.02)


# ---- 8. one pass per window; statistics that cannot be estimated say why ---------------------------------------

def test_each_window_prepares_its_data_once(planted):
    """The window's study, its winner's in-sample DSR and its PBO share one StudyData (no second prepare_data)."""
    res, seen = planted["result"], planted["seen"]
    prepares = [s["hi"] for s in seen if s["kind"] == "prepare"]
    assert sorted(prepares) == sorted(w.window.train_end for w in res.windows)


def test_statistics_that_cannot_be_estimated_are_explicit(resumed, tmp_path):
    """One trial per window (the resume test's finished run): no PBO (needs >= 2 configurations) and no DSR (needs
    >= 2 trial Sharpe ratios). Each is NaN with its reason in stats, the verdict fails the PBO gate as n/a, and the
    report says so."""
    res = resumed["result"]
    n = len(res.windows)
    assert n >= 2 and all(math.isnan(w.pbo) and math.isnan(w.dsr_in_sample) for w in res.windows)
    assert len(res.stats["pbo_skipped"]) == n and "1 completed configuration(s)" in res.stats["pbo_skipped"][0]
    assert len(res.stats["dsr_skipped"]) == n and "1 finite trial Sharpe ratio(s)" in res.stats["dsr_skipped"][0]
    assert math.isnan(res.stats["pbo"]) and res.stats["pbo_windows"] == []
    g = res.verdict.gate("pbo")
    assert not g.passed and g.text == "n/a" and "PBO n/a >= 0.50" in res.verdict.line
    page = build_walkforward_report(res, out_dir=tmp_path).read_text(encoding="utf-8")
    assert "PBO skipped for window 0: 1 completed configuration(s)" in page
    assert "DSR skipped for window 0:" in page


def test_overlapping_test_windows_are_refused_before_any_study(spec, tmp_path):
    """[walkforward] step < test made test windows overlap: with train 6 / test 2 / step 1 month every test month
    was traded by two windows' winners and stitched twice (on a null store, 430 OOS trades over 278 days, 21 of
    them identical rows; the n >= 30 gate and the per-trade figures counted them all). A spec file is refused by
    the loader (tests/test_spec.py); a spec built in code is refused by the run, before it reads the store. A spec
    stored with an earlier study still reads back."""
    from optimizer.errors import DataError, SpecError
    from optimizer.study.spec import parse_spec

    bad = dataclasses.replace(spec, walkforward=dataclasses.replace(spec.walkforward, test=2, step=1))
    with pytest.raises(SpecError, match=r"\[walkforward.step\] must be >= test \(2\).*got step=1"):
        run_walkforward(bad, tmp_path / "absent.duckdb", _journal(tmp_path / "s.log"), n_trials=1)
    assert not (tmp_path / "s.log").exists()
    ok = dataclasses.replace(spec, walkforward=dataclasses.replace(spec.walkforward, test=2, step=3))
    with pytest.raises(DataError, match="absent.duckdb does not exist"):  # step >= test: the absent store stops it
        run_walkforward(ok, tmp_path / "absent.duckdb", _journal(tmp_path / "s.log"), n_trials=1)
    assert parse_spec("[walkforward]\ntest = 2\nstep = 1\n", stored=True).walkforward.step == 1


def test_equity_benchmark_is_sized_like_the_account():
    """The OOS equity table's benchmark holds the account's positions at its own sizing. It averaged every open
    trade's benchmark at full weight, so a sized account (fixed_fractional 5 % of equity a trade, about half
    invested) was set against a fully invested benchmark: its 'excess over the benchmark' curve was mostly the
    benchmark's own path. Hand table: two trades (A: symbol 0, rows 1..4; B: symbol 1, row 2 only)."""
    from optimizer.engine.panel import Panel
    from optimizer.engine.simulate import Trades
    from optimizer.validate.stats import daily_excess

    close = np.array([[10.0, 20.0], [11.0, 20.5], [11.0, 21.0], [11.5, 21.5], [12.5, 22.0]])
    p = Panel(dates=pd.bdate_range("2024-01-01", periods=5).to_numpy(), symbols=("AAA", "BBB"),
              fields={"close": close, "open": close.copy()})
    excess = np.array([0.20 - 0.08, -0.05 - 0.01])  # benchmarks 0.08 (A, 4 rows: 0.02 a row), 0.01 (B, 1 row)

    def trades(weight=None, absolute=False, mult=None):
        i = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        return Trades(i([0, 1]), i([0, 1]), i([1, 2]), i([4, 2]), np.array([10.0, 20.0]), np.array([12.0, 19.0]),
                      i([0, 0]), np.zeros(2), cost=0.0, weight=weight, mult=mult, absolute=absolute)

    def equity(tr):
        return wfmod._equity(p, tr, daily_excess(tr, excess, close, 0, 5))

    a, b = 0.02, 0.01
    eq = equity(trades())  # equal weights: the mean over the open trades (DailyExcess.bench_mean)
    np.testing.assert_allclose(eq["bench_return"], [0, a, (a + b) / 2, a, a], atol=1e-15)
    eq = equity(trades(np.array([0.05, 0.05]), absolute=True))  # 5 % of equity each, the rest cash
    np.testing.assert_allclose(eq["bench_return"], [0, 0.05 * a, 0.05 * (a + b), 0.05 * a, 0.05 * a], atol=1e-15)
    np.testing.assert_allclose(eq["oos_return"], [0, 0.05 * 0.1, 0.05 * (0.0 - 0.05), 0.05 * (0.5 / 11),
                                                  0.05 * (0.5 / 11.5)], atol=1e-15)  # exit fill 12
    np.testing.assert_allclose(eq["excess_return"], eq["oos_return"] - eq["bench_return"], atol=1e-15)
    eq = equity(trades(np.array([0.8, 0.6]), absolute=True))  # exposure 1.4 on row 2: scaled down to 1
    assert eq["bench_return"][2] == pytest.approx((0.8 * a + 0.6 * b) / 1.4)
    eq = equity(trades(np.array([1.0, 3.0]), mult=np.array([0.5, 1.0])))  # relative weights, a regime multiplier
    np.testing.assert_allclose(eq["bench_return"], [0, 0.5 * a, (0.5 * a + 3 * b) / 4, 0.5 * a, 0.5 * a], atol=1e-15)


def test_pbo_matrix_holds_the_universe_at_the_accounts_exposure(monkeypatch):
    """The PBO matrix's column of a configuration: its daily portfolio return minus the equal-weight universe on
    invested days. A sized account (fixed_fractional: 5 % of equity a position) is mostly cash, yet the whole
    universe was subtracted, so the columns ranked configurations by how much of the market they were NOT holding
    (on the planted synthetic market, seed 1 effect 3, fixed_fractional 5 %: window PBO 0.02-0.48 against 0.03-0.23
    exposure-matched). The universe is now held at the account's exposure; without sizing nothing changes.
    Hand table: one symbol, two overlapping trades, a fake evaluator that returns them."""
    from types import SimpleNamespace

    from optimizer.engine.metrics import portfolio_returns
    from optimizer.engine.panel import Panel
    from optimizer.engine.simulate import Span, Trades

    close = np.array([[10.0, 10.0], [11.0, 10.0], [11.0, 10.5], [12.1, 10.5], [12.1, 11.0], [12.1, 11.0]])
    p = Panel(dates=pd.bdate_range("2024-01-01", periods=6).to_numpy(), symbols=("AAA", "BBB"),
              fields={"close": close, "open": close.copy()})
    ew = np.array([0.0, 0.05, 0.025, 0.05, np.mean([0.0, 0.5 / 10.5]), 0.0])  # mean close-to-close return

    def trades(weight=None, absolute=False):
        i = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        return Trades(i([0, 1]), i([0, 1]), i([1, 2]), i([3, 4]), np.array([10.0, 10.0]), np.array([12.1, 11.0]),
                      i([0, 0]), np.zeros(2), cost=0.0, weight=weight, absolute=absolute)

    def column(tr):
        ev = SimpleNamespace(run=lambda cfg, span, entry_ok=None: SimpleNamespace(trades=tr),
                             bench=SimpleNamespace(excess=lambda t, span: np.zeros(int(t.closed.sum()))))
        data = SimpleNamespace(panel=p, evaluator=ev, folds=[SimpleNamespace(test_start=0)], hi=6, spec=None,
                               entry_ok=None)
        monkeypatch.setattr(wfmod, "trial_config", lambda t, spec: SimpleNamespace(costs=None))
        return wfmod._config_matrices(data, [object()])[0][:, 0], portfolio_returns(tr, p, Span(0, 6, 6))

    invested = np.array([0, 1, 1, 1, 1, 0], dtype=bool)
    col, daily = column(trades())  # equal weights: all of the universe on invested days (unchanged)
    np.testing.assert_allclose(col, np.where(invested, daily - ew, 0.0), atol=1e-15)
    col, daily = column(trades(np.array([0.05, 0.05]), absolute=True))  # 5 % of equity a position
    expo = np.array([0.0, 0.05, 0.10, 0.10, 0.05, 0.0])
    np.testing.assert_allclose(col, np.where(invested, daily - expo * ew, 0.0), atol=1e-15)
    assert np.abs(daily).max() < 0.011  # the account holds a tenth of the market at most
    col, _ = column(trades(np.array([0.7, 0.6]), absolute=True))  # exposure 1.3 on rows 2-3: scaled down to 1
    np.testing.assert_allclose(col[2] + 1.0 * ew[2], portfolio_returns(trades(np.array([0.7, 0.6]), absolute=True),
                                                                        p, Span(0, 6, 6))[2], atol=1e-15)


def test_a_trade_left_open_at_its_windows_end_leaves_the_stitched_account_there():
    """A window's trade still open at its data end (test end + purge; exits without a time limit, e.g.
    studies/exits_uncapped.toml) is open_at_end with exit_idx = that row. The stitched account
    (``portfolio_returns`` over the whole out-of-sample series) marked every open_at_end trade to the series' LAST
    row, so it held such a trade for months no rule exited and no statistic counts: with purge 5 on the planted
    synthetic market (seed 1, effect 3) 41 of 241 trades, the OOS account's total return +16 % against +67 %, and
    the equity bootstrap, portfolio Sharpe and drawdown came from that curve. Hand table: A (symbol 0) open at its window's
    end on row 3, B (symbol 1) closed on row 6, the series runs to row 7."""
    from optimizer.engine.panel import Panel
    from optimizer.engine.simulate import Trades
    from optimizer.validate.stats import daily_excess

    close = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 20.0], [12.5, 20.0], [13.0, 21.0], [14.0, 22.0],
                      [15.0, 23.0], [16.0, 24.0]])
    p = Panel(dates=pd.bdate_range("2024-01-01", periods=8).to_numpy(), symbols=("AAA", "BBB"),
              fields={"close": close, "open": close.copy()})
    i = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    cost = 0.001
    tr = Trades(i([0, 1]), i([0, 3]), i([1, 4]), i([3, 6]), np.array([10.0, 20.5]), np.array([12.5, 22.5]),
                i([8, 0]), np.zeros(2), cost=cost)  # A: reason open_at_end, marked at close[3]; B: fixed
    assert tr.open_at_end.tolist() == [True, False]
    eq = wfmod._equity(p, tr, daily_excess(tr, np.array([0.01]), close, 0, 8))
    a = [0.0, 11.0 / (10.0 * (1 + cost)) - 1, 12.0 / 11.0 - 1, 12.5 / 12.0 - 1, 0.0, 0.0, 0.0, 0.0]
    b = [0.0, 0.0, 0.0, 0.0, 21.0 / (20.5 * (1 + cost)) - 1, 22.0 / 21.0 - 1, 22.5 * (1 - cost) / 22.0 - 1, 0.0]
    np.testing.assert_allclose(eq["oos_return"], np.array(a) + np.array(b), rtol=1e-13, atol=1e-15)
    # the last window's open trade (open at the series' own end) stays marked to its end
    tr2 = Trades(i([0]), i([4]), i([5]), i([7]), np.array([13.5]), np.array([16.0]), i([8]), np.zeros(1), cost=cost)
    eq2 = wfmod._equity(p, tr2, daily_excess(tr2, np.empty(0), close, 0, 8))
    np.testing.assert_allclose(eq2["oos_return"], [0, 0, 0, 0, 0, 14.0 / (13.5 * (1 + cost)) - 1, 15.0 / 14.0 - 1,
                                                   16.0 / 15.0 - 1], rtol=1e-13, atol=1e-15)


def test_stitched_windows_whose_winners_trade_at_different_costs_keep_each_trades_own_cost():
    """With commission_bps / slippage_bps searched in [space], two windows' winners may trade at different costs.
    ``concat_trades`` kept the first window's cost for every stitched trade (``Trades.cost`` was one number), which
    re-priced the later windows' net returns (the trade table's net_return, the OOS hit rate and average return)
    and the OOS account's daily returns. Hand table: window 1's trade A (symbol 0, rows 1-3, 10 bp per side),
    window 2's trade B (symbol 1, rows 4-6, 40 bp per side) and C (symbol 0, rows 5-7, open at its window's end)."""
    from optimizer.engine.metrics import portfolio_returns
    from optimizer.engine.panel import Panel
    from optimizer.engine.simulate import Span, Trades
    from optimizer.validate.stats import daily_excess

    close = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 20.0], [12.5, 20.0], [13.0, 21.0], [14.0, 22.0],
                      [15.0, 23.0], [16.0, 24.0], [16.5, 24.5]])
    p = Panel(dates=pd.bdate_range("2024-01-01", periods=9).to_numpy(), symbols=("AAA", "BBB"),
              fields={"close": close, "open": close.copy()})
    i = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    ca, cb = 0.001, 0.004
    w1 = Trades(i([0]), i([0]), i([1]), i([3]), np.array([10.0]), np.array([12.4]), i([0]), np.zeros(1), cost=ca)
    w2 = Trades(i([1, 0]), i([3, 4]), i([4, 5]), i([6, 7]), np.array([20.5, 13.5]), np.array([22.5, 16.0]),
                i([0, 8]), np.zeros(2), cost=cb)
    assert w2.open_at_end.tolist() == [False, True]
    tr = wfmod.concat_trades([w1, w2])
    np.testing.assert_array_equal(tr.net_ret, np.concatenate([w1.net_ret, w2.net_ret]))  # bit for bit
    np.testing.assert_array_equal(tr.cost_per_trade, [ca, cb, cb])
    assert wfmod.concat_trades([w1, w1]).cost == ca  # the same cost everywhere stays one number
    # the OOS account: each trade's entry and exit days at its own cost
    a = [0.0, 11.0 / (10.0 * (1 + ca)) - 1, 12.0 / 11.0 - 1, 12.4 * (1 - ca) / 12.0 - 1, 0, 0, 0, 0, 0]
    b = [0, 0, 0, 0, 21.0 / (20.5 * (1 + cb)) - 1, 22.0 / 21.0 - 1, 22.5 * (1 - cb) / 22.0 - 1, 0, 0]
    c = [0, 0, 0, 0, 0, 14.0 / (13.5 * (1 + cb)) - 1, 15.0 / 14.0 - 1, 16.0 / 15.0 - 1, 0]
    ab = np.array(a) + np.array(b)
    day = np.where(np.array(c) != 0, (ab + np.array(c)) / np.array([1, 1, 1, 1, 1, 2, 2, 1, 1]), ab)
    np.testing.assert_allclose(portfolio_returns(tr, p, Span(0, 8, 8)), day[:8], rtol=1e-13, atol=1e-15)
    # the stitched account leaves C at its window's end (row 7), its last day at its close exactly
    eq = wfmod._equity(p, tr, daily_excess(tr, np.array([0.01, 0.02]), close, 0, 9))
    np.testing.assert_allclose(eq["oos_return"], day, rtol=1e-13, atol=1e-15)
    # the daily excess series: each closed trade's P&L per day over its entry value, at its own cost
    d = daily_excess(tr, np.array([0.01, 0.02]), close, 0, 9)
    va, vb = 10.0 * (1 + ca), 20.5 * (1 + cb)
    pnl = [0, 11.0 / va - 1, 1.0 / va, (12.4 * (1 - ca) - 12.0) / va, 21.0 / vb - 1, 1.0 / vb,
           (22.5 * (1 - cb) - 22.0) / vb, 0, 0]
    np.testing.assert_allclose(d.raw_total, pnl, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(d.raw_total.sum(), w1.net_ret[0] + w2.net_ret[0], rtol=1e-13)
    with pytest.raises(Exception, match="cost"):
        Trades(i([0]), i([0]), i([1]), i([3]), np.array([10.0]), np.array([12.4]), i([0]), np.zeros(1),
               cost=np.array([ca, cb]))


def test_sessions_no_window_tested_are_no_days_of_the_stitched_series():
    """[walkforward] step > test (train 6 / test 1 / step 2 months) leaves sessions between one window's test end
    and the next one's test start that no window tested. The stitched daily series ran from the first test start
    to the last exit, so they entered as cash days (excess 0, return 0): 278 days on the planted demo market where
    253 were observed, diluting the mean daily excess the HAC t / PSR / bootstrap test, the MDE per year and the
    equity curve. A session in the gap on which a stitched trade is still held (closed, or open at its window's
    end) stays. Hand table: windows test rows [1, 3) and [6, 8); A (symbol 0) rows 1..3 closed, C (symbol 0) rows
    2..4 open at its window's end, B (symbol 1) rows 6..7 closed. Observed: rows 1-4, 6, 7; row 5 is not a day."""
    from types import SimpleNamespace

    from optimizer.engine.panel import Panel
    from optimizer.engine.simulate import Trades
    from optimizer.study.splits import Window
    from optimizer.validate.stats import dependent_inference

    close = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 20.0], [12.5, 20.0], [13.0, 20.5], [14.0, 21.0],
                      [15.0, 22.0], [16.0, 23.0], [17.0, 24.0], [18.0, 25.0]])
    p = Panel(dates=pd.bdate_range("2024-01-01", periods=10).to_numpy(), symbols=("AAA", "BBB"),
              fields={"close": close, "open": close.copy()})
    i = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    cost = 0.001
    tr = Trades(i([0, 0, 1]), i([0, 1, 5]), i([1, 2, 6]), i([3, 4, 7]), np.array([10.5, 11.5, 21.5]),
                np.array([12.4, 13.0, 23.5]), i([0, 8, 0]), np.zeros(3), cost=cost)  # C: open_at_end
    assert tr.closed.tolist() == [True, False, True]
    excess = np.array([0.10, 0.05])
    res = lambda *tests: [SimpleNamespace(window=Window(k, 0, 1, a, b)) for k, (a, b) in enumerate(tests)]  # noqa: E731
    daily = wfmod._daily(p, res((1, 3), (6, 8)), tr, excess)
    assert (daily.start, daily.stop) == (1, 8)
    inf = dependent_inference(daily, reps=200)
    assert inf.n_days == 6 and inf.n_invested_days == 5
    assert daily.total.mean() == pytest.approx(excess.sum() / 6, abs=1e-15)
    assert inf.mean_per_trade == pytest.approx(0.075, abs=1e-15)
    eq = wfmod._equity(p, tr, daily)
    assert list(eq["date"]) == list(pd.DatetimeIndex(p.dates)[[1, 2, 3, 4, 6, 7]])
    np.testing.assert_array_equal(daily.row_index, [1, 2, 3, 4, 6, 7])
    va, vb = 10.5 * (1 + cost), 21.5 * (1 + cost)
    a = [11.0 / va - 1, 12.0 / 11.0 - 1, 12.4 * (1 - cost) / 12.0 - 1, 0, 0, 0]
    c = [0, 12.0 / (11.5 * (1 + cost)) - 1, 12.5 / 12.0 - 1, 13.0 / 12.5 - 1, 0, 0]  # marked at its closes
    b = [0, 0, 0, 0, 22.0 / vb - 1, 23.5 * (1 - cost) / 22.0 - 1]  # after the gap: a fresh entry, nothing bridged
    n = np.array([1, 2, 2, 1, 1, 1])
    np.testing.assert_allclose(eq["oos_return"], (np.array(a) + np.array(c) + np.array(b)) / n, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(eq["n_open"], n)  # the positions held, C (open at its window's end) included
    np.testing.assert_allclose(eq["oos_equity"], np.cumprod(1 + eq["oos_return"]), rtol=1e-15)
    # test windows that tile (step = test): every row of the span, as before
    tiled = wfmod._daily(p, res((1, 4), (4, 6), (6, 8)), tr, excess)
    assert tiled.rows is None and tiled.n_days == 7
    np.testing.assert_array_equal(tiled.total[[0, 1, 2, 3, 5, 6]], daily.total)
    assert tiled.total[4] == 0.0


@pytest.fixture(scope="module")
def gap_run(spec, cheap_db, tmp_path_factory):
    """A real walk-forward with train 6 / test 1 / step 2 months (a month no window tests between test windows)."""
    s = dataclasses.replace(spec, walkforward=dataclasses.replace(spec.walkforward, train=6, test=1, step=2))
    storage = _journal(tmp_path_factory.mktemp("wf_gap") / "gap.log")
    res = run_walkforward(s, cheap_db, storage, n_trials=2, out_dir=None)
    return res, pd.DatetimeIndex(load_study_data(s, cheap_db)[0].dates), storage


def test_step_larger_than_test_stitches_only_the_sessions_observed(gap_run):
    """A real walk-forward with train 6 / test 1 / step 2 months on a synthetic store: the stitched daily series,
    its market-adjusted twin, the equity table and its bootstrap hold exactly the sessions some window tested or
    a stitched trade is held on (untested months with nothing held are left out, not counted as cash days)."""
    res, dates, _ = gap_run
    w = [r.window for r in res.windows]
    assert len(w) >= 3 and all(b.test_start - a.test_end > 15 for a, b in zip(w, w[1:]))  # month-long gaps
    eq_dates = pd.DatetimeIndex(res.equity["date"])
    last = int(dates.get_loc(eq_dates[-1]))
    seen = set()
    for r in res.windows:
        seen.update(range(r.window.test_start, r.window.test_end))
        for e, x in zip(r.trades.entry_idx, r.trades.exit_idx):
            seen.update(range(int(e), min(int(x), last) + 1))
    expect = dates[sorted(seen)]
    assert list(eq_dates) == list(expect)
    contiguous = last - w[0].test_start + 1
    assert len(expect) < contiguous  # some untested session had nothing held: the case this test is about
    inf = res.stats["inference"]
    assert inf["n_trades"] > 0
    assert inf["n_days"] == res.stats["inference_mkt"]["n_days"] == len(expect)
    assert res.stats["equity_bootstrap"]["n_days"] == len(expect)
    assert f"{len(expect)} days" in res.verdict.line


def test_step_larger_than_test_market_adjustment_and_account_figures_keep_to_the_sessions_tested(gap_run, spec,
                                                                                                   cheap_db):
    """The same real step > test walk-forward: the market-adjusted series' random entries (the basket expectation
    added back to each trade) follow the sessions some window tested, as each window's ``BenchmarkCache`` takes
    them, not the untested months between test windows (which it averaged over before); the account's Sharpe and
    drawdown are those of the equity table's observed days."""
    from optimizer.validate.stats import daily_excess, equity_point

    res, _, _ = gap_run
    s = dataclasses.replace(spec, walkforward=dataclasses.replace(spec.walkforward, train=6, test=1, step=2))
    panel, reserve = load_study_data(s, cheap_db)
    p = panel.slice(0, reserve)
    trades, excess, _ = wfmod._stitch(res.windows, reserve)
    daily = wfmod._daily(p, res.windows, trades, excess)
    tested = np.concatenate([np.arange(r.window.test_start, r.window.test_end) for r in res.windows])
    mkt = daily_excess(trades, daily.trade_excess, p["close"], daily.start, daily.stop, market_open=p["open"],
                       rows=daily.rows, signal_rows=tested)
    every = daily_excess(trades, daily.trade_excess, p["close"], daily.start, daily.stop, market_open=p["open"],
                         rows=daily.rows)
    got = res.stats["inference_mkt"]["mean_per_trade"]
    assert got == pytest.approx(mkt.mean_per_trade, rel=1e-12)
    assert got != pytest.approx(every.mean_per_trade, rel=1e-6)
    pt = equity_point(res.equity["oos_return"])
    assert (res.oos["portfolio_sharpe"], res.oos["max_drawdown"]) == (pt["sharpe"], pt["max_drawdown"])


def test_step_larger_than_test_counts_signals_per_month_over_the_months_tested(gap_run):
    """The stitched OOS signals per month (and the rank score, which divides by its square root) divided the
    windows' signals by the months from the first test start to the last test end, the untested months between
    test windows included: on the planted demo market with test 1 / step 2 months 9.9 signals a month where the
    tested months held 18.4 (the windows 8-25), the OOS rank score 1.36x too high. They count the months tested."""
    from optimizer.engine.metrics import rank_score

    res, _, _ = gap_run
    o = res.oos
    tested = sum(r.window.test_end - r.window.test_start for r in res.windows)
    assert tested < res.windows[-1].window.test_end - res.windows[0].window.test_start
    signals = sum(r.oos_metrics["total_signals"] for r in res.windows)
    assert signals > 0
    assert o["signals_per_month"] == pytest.approx(signals / (tested / 21.0), rel=1e-12)
    assert o["rank_score"] == pytest.approx(rank_score(o["hit_rate"], o["avg_return"], o["win_loss"],
                                                       o["signals_per_month"]), rel=1e-12)
    assert o["rank_score"] != 0.0


def test_fewer_trials_than_a_window_study_holds_is_refused_not_reported_as_the_larger_study(spec, cheap_db, gap_run,
                                                                                            monkeypatch):
    """`walkforward --n-trials 1` after a run of 2 per window: each window study is resumed UP TO n_trials, so
    the run would silently report the 2-trial windows (and count their trials) as if 1 had been asked. Refused
    before any window runs, naming n_trials, the window study and what it holds; the same n_trials (or more)
    resumes as before. The run of 2 per window is ``gap_run``'s (its storage, resumed here)."""
    s = dataclasses.replace(spec, walkforward=dataclasses.replace(spec.walkforward, train=6, test=1, step=2))
    first, _, storage = gap_run
    assert all(w.n_trials_tried == 2 for w in first.windows)

    def never(*a, **k):
        raise AssertionError("a window ran")

    monkeypatch.setattr(wfmod, "_run_window", never)
    with pytest.raises(ParameterError, match=r"n_trials must be >= the 2 finished trials window study "
                                             rf"'{first.windows[0].study_name}' already holds \(run to n_trials=2\), got "
                                             r"n_trials=1: a window study is resumed up to n_trials, never cut back"):
        run_walkforward(s, cheap_db, storage, n_trials=1, out_dir=None)
    monkeypatch.undo()
    again = run_walkforward(s, cheap_db, storage, n_trials=2, out_dir=None)
    assert [w.params for w in again.windows] == [w.params for w in first.windows]


def test_a_study_record_is_one_journal_append_of_optunas_own_entries(tmp_path, monkeypatch):
    """A window study's record (~30 user attributes, ``records.write_study``) on a journal storage is ONE append
    (one lock and one fsync of the file; before: one per attribute, ~0.3 s per window study on a loaded disk) of
    the very entries Optuna's ``set_user_attr`` writes one by one: the same lines but their writer's id, in the same
    order, read back to the same attributes."""
    from optimizer.study.storage import _WholeLinesJournalFile as JournalFileBackend  # the writers' journal file
    from optimizer.study.storage import user_attrs_in_one_transaction

    attrs = {"spec_hash": "abc", "n_trials_target": 20, "sharpe": 0.1 + 0.2, "nan": None, "list": [1, "x", 2.5],
             "nested": {"a": [1, 2], "b": {"c": True}}, "unicode": "é→"}
    appends = []
    real = JournalFileBackend.append_logs
    monkeypatch.setattr(JournalFileBackend, "append_logs", lambda self, logs: appends.append(len(logs)) or real(self, logs))
    one = optuna.create_study(study_name="s", storage=make_storage(_journal(tmp_path / "one.log")))
    assert user_attrs_in_one_transaction(one, attrs)
    assert appends[-1] == len(attrs) and len(appends) == 2  # the study's creation, then every attribute at once
    each = optuna.create_study(study_name="s", storage=make_storage(_journal(tmp_path / "each.log")))
    for k, v in attrs.items():
        each.set_user_attr(k, v)

    def entries(name: str) -> list[dict]:
        rows = [json.loads(line) for line in (tmp_path / name).read_text(encoding="utf-8").splitlines()]
        assert all(r.pop("worker_id") for r in rows)
        return rows

    assert entries("one.log") == entries("each.log")
    assert (optuna.load_study(study_name="s", storage=make_storage(_journal(tmp_path / "one.log"))).user_attrs
            == optuna.load_study(study_name="s", storage=make_storage(_journal(tmp_path / "each.log"))).user_attrs
            == attrs)
    n = len(appends)
    assert user_attrs_in_one_transaction(one, {}) and len(appends) == n  # nothing to write: no append (no empty line)
