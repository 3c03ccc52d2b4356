"""explore15: every figure of a walk-forward verdict recomputed from the files the run exports (oos_trades.parquet,
oos_events.parquet, result.json) and the store's raw prices, with independent code (pandas, statsmodels, scipy by
hand), on ONE small walk-forward of the planted synthetic store shared by the module (4 windows x 4 trials).

What the audit found right is pinned here (the figures agree to ~1e-12); the one defect it found (the run's
"distinct configurations" was the SUM of each window's distinct count, so a configuration tried in every window
counted once per window) is `test_distinct_configurations_are_counted_once_over_all_windows`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats as st

from optimizer.study.spec import load_spec
from optimizer.validate.walkforward import run_walkforward, save_walkforward

ROOT = Path(__file__).resolve().parents[1]
N_TRIALS = 4  # below the demo spec's n_startup_trials (15): every window's trials are the sampler's seeded draws


@pytest.fixture(scope="module")
def run(synth_db, tmp_path_factory):
    """One walk-forward of studies/demo.toml on the planted store, saved as `accumopt walkforward` saves it; the
    store's opens / closes read straight from prices_daily (not through the package's panel)."""
    tmp = tmp_path_factory.mktemp("e15wf")
    spec = load_spec(ROOT / "studies" / "demo.toml")
    url = f"sqlite:///{tmp / 's.db'}"
    res = run_walkforward(spec, synth_db, url, n_trials=N_TRIALS)
    d = save_walkforward(res, tmp / "wf")
    con = duckdb.connect(str(synth_db), read_only=True)
    try:
        px = con.sql("select date, symbol, open, close from prices_daily").df()
    finally:
        con.close()
    dates = np.array(sorted(px.date.unique()), dtype="datetime64[D]")
    return {
        "res": res, "url": url, "dir": d, "R": json.loads((d / "result.json").read_text()),
        "trades": pd.read_parquet(d / "oos_trades.parquet"), "events": pd.read_parquet(d / "oos_events.parquet"),
        "dates": dates, "row": {x: i for i, x in enumerate(dates)},
        "open": px.pivot(index="date", columns="symbol", values="open").reindex(dates),
        "close": px.pivot(index="date", columns="symbol", values="close").reindex(dates),
    }


def _row(run, day: str) -> int:
    return run["row"][np.datetime64(day, "D")]


def _close_enough(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(b))


def _closed(run) -> pd.DataFrame:
    tr = run["trades"]
    return tr[~tr.open_at_end].reset_index(drop=True)


def _bench_and_excess(run) -> tuple[np.ndarray, np.ndarray]:
    """Per closed trade, the matched random-entry benchmark by hand: the mean of open[e + h] / open[e] - 1 of the
    same symbol over the entries e after the window's test sessions (test_start + 1 .. test_end, one past its last
    test session), with the hold h = exit row - entry row ending before the window's data end (its test end +
    purge, at most the final reserve's first session); the excess = net return - benchmark."""
    R, tr = run["R"], _closed(run)
    purge = int(R["settings"]["windows"]["purge"])
    limit = _row(run, R["settings"]["reserve_start"]) if R["settings"].get("reserve_start") else len(run["dates"])
    bench = []
    for t in tr.itertuples():
        w = R["windows"][int(t.window)]
        s0, s1 = _row(run, w["test"][0]), _row(run, w["test"][1]) + 1
        data_end = min(s1 + purge, limit)
        h = int(t.exit_idx - t.entry_idx)
        o = run["open"][t.symbol].to_numpy()
        es = np.arange(s0 + 1, min(s1, data_end - 1 - h) + 1)
        r = o[es + h] / o[es]
        r = r[np.isfinite(r)]
        bench.append(r.mean() - 1.0 if r.size else 0.0)
    b = np.array(bench)
    return b, tr.net_ret.to_numpy() - b


def _daily_total(run, bench: np.ndarray) -> np.ndarray:
    """The verdict's daily series by hand: each closed trade marked to market at constant notional (entry fill
    with the spec's costs, the closes in between, the exit fill with costs) less its benchmark spread evenly over
    its rows, summed over the trades open each day, from the first test session to max(last test session, last
    exit). The costs are the spec's (1 + 5 bp per side), not the run's."""
    R, tr = run["R"], _closed(run)
    costs = R["settings"]["costs"]
    cost = (costs["commission_bps"] + costs["slippage_bps"]) / 1e4
    first = _row(run, R["windows"][0]["test"][0])
    stop = max(_row(run, R["windows"][-1]["test"][1]) + 1, int(tr.exit_idx.max()) + 1)
    total = np.zeros(stop - first)
    for t, b in zip(tr.itertuples(), bench):
        e, x = int(t.entry_idx), int(t.exit_idx)
        v0 = t.entry_price * (1 + cost)
        vals = list(run["close"][t.symbol].to_numpy()[e:x]) + [t.exit_price * (1 - cost)]
        prev = v0
        for k, v in enumerate(vals):
            total[e + k - first] += (v - prev) / v0 - b / (x - e + 1)
            prev = v
    return total


def test_exported_trade_rows_are_the_stores_sessions(run):
    """The exported row indices are rows of the store's session calendar (what every hand figure below indexes)."""
    tr = run["trades"]
    assert len(tr) >= 30
    for col in ("entry", "exit", "signal"):
        assert [_row(run, str(d.date())) for d in tr[f"{col}_date"]] == tr[f"{col}_idx"].tolist()


def test_trade_figures_and_rank_score_from_the_exported_trades(run):
    """hit rate, average net return, win/loss, signals per month and the design's rank score
    (hit_rate x avg_return) x win_loss / sqrt(signals_per_month), from oos_trades.parquet: result.json's oos."""
    tr, oos, W = _closed(run), run["R"]["oos"], run["R"]["windows"]
    win, loss = tr.net_ret[tr.net_ret > 0], tr.net_ret[tr.net_ret < 0]
    hit, avg = len(win) / len(tr), tr.net_ret.mean()
    wl = min(win.mean() / abs(loss.mean()), 10.0)
    sessions = sum(_row(run, w["test"][1]) + 1 - _row(run, w["test"][0]) for w in W)
    spm = sum(w["out_of_sample"]["total_signals"] for w in W) / (sessions / 21.0)
    mine = {"closed_trades": len(tr), "hit_rate": hit, "avg_return": avg, "win_loss": wl, "signals_per_month": spm,
            "rank_score": hit * avg * wl / math.sqrt(spm)}
    for k, v in mine.items():
        assert _close_enough(v, oos[k]), (k, v, oos[k])


def test_excess_per_trade_over_the_hand_benchmark(run):
    """Each closed trade's excess over the hand-built random-entry benchmark (same symbol, same hold, the window's
    entry days, gross) is the exported one (oos_events.excess_return), and their mean is oos.avg_excess_return
    and the verdict's mean per trade."""
    _, ex = _bench_and_excess(run)
    ev = run["events"]
    ev = ev[~ev.open_at_end].sort_values(["window", "entry_date", "symbol"])
    tr = _closed(run).assign(ex=ex).sort_values(["window", "entry_date", "symbol"])
    assert np.allclose(tr.ex.to_numpy(), ev.excess_return.to_numpy(), rtol=0, atol=1e-12)
    R = run["R"]
    assert _close_enough(ex.mean(), R["oos"]["avg_excess_return"])
    assert _close_enough(ex.mean(), R["inference"]["mean_per_trade"])
    assert R["verdict_gates"][0]["name"] == "excess_mean" and R["verdict_gates"][0]["value"] == R["inference"]["mean_per_trade"]


def test_hac_t_effective_n_psr_and_mde_by_hand(run):
    """statsmodels OLS on a constant, cov_type HAC with the documented lag floor(4 (T/100)^(2/9)) (Bartlett, small-
    sample correction), on the hand-built daily series: the verdict's HAC t, its effective n (n x (se_iid /
    se_per_trade)^2), the PSR over the HAC effective number of days (Bailey & Lopez de Prado by hand) and the MDE
    (z_{1-alpha} + z_0.8) x se at the gate's alpha P(Z > 2)."""
    import statsmodels.api as sm

    bench, ex = _bench_and_excess(run)
    total = _daily_total(run, bench)
    inf, n, T = run["R"]["inference"], ex.size, total.size
    lags = int(math.floor(4 * (T / 100) ** (2 / 9)))
    fit = sm.OLS(total, np.ones(T)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": True})
    se_trade = float(fit.bse[0]) * T / n
    se_iid = ex.std(ddof=1) / math.sqrt(n)
    assert (inf["n_days"], inf["n_trades"], inf["hac_lags"]) == (T, n, lags)
    assert _close_enough(total.sum() / n, inf["mean_per_trade"])
    assert _close_enough(float(fit.params[0] / fit.bse[0]), inf["t"])
    assert _close_enough(ex.mean() / se_iid, inf["t_iid"])
    assert _close_enough(min(n, n * (se_iid / se_trade) ** 2), inf["n_eff"])
    n_days_eff = min(T, T * (total.std(ddof=1) / math.sqrt(T) / float(fit.bse[0])) ** 2)
    k = int(max(2, min(T, math.floor(n_days_eff))))
    sr, sk, ku = total.mean() / total.std(ddof=1), st.skew(total), st.kurtosis(total) + 3
    psr = st.norm.cdf(sr * math.sqrt(k - 1) / math.sqrt(1 - sk * sr + (ku - 1) / 4 * sr * sr))
    assert inf["psr_n"] == k and _close_enough(psr, inf["psr"]) and _close_enough(psr, run["R"]["psr"])
    alpha = st.norm.sf(2.0)
    assert _close_enough(inf["alpha"], alpha)
    assert _close_enough((st.norm.isf(alpha) + st.norm.ppf(0.8)) * se_trade, inf["mde_per_trade"])


def test_pbo_dsr_spa_aggregates_and_gates_are_the_stored_figures(run):
    """The run's PBO is the mean of its windows', the DSR their median, the SPA p Rueger's K/k x p_(k) (k =
    ceil(K/2)) of the windows' p-values; each gate's value is the figure result.json states beside it."""
    R = run["R"]
    assert _close_enough(float(np.mean(R["stats"]["pbo_windows"])), R["pbo"])
    assert _close_enough(float(np.median([x for x in R["stats"]["dsr_windows"] if x is not None])), R["dsr"])
    p = np.sort([x for x in R["spa"]["p_windows"] if x is not None])
    k = math.ceil(p.size / 2)
    assert _close_enough(min(1.0, p.size / k * p[k - 1]), R["spa"]["p"])
    gates = {g["name"]: g["value"] for g in R["verdict_gates"]}
    assert gates == {"excess_mean": R["inference"]["mean_per_trade"], "excess_t": R["inference"]["t"],
                     "n_trades": float(R["inference"]["n_trades"]), "psr": R["psr"], "pbo": R["pbo"]}


def test_distinct_configurations_are_counted_once_over_all_windows(run):
    """With fewer trials than the sampler's startup trials, every window's study draws the same seeded
    configurations: N_TRIALS distinct ones over the whole run, not N_TRIALS per window. The run's count (stats,
    spa, the verdict's note) is the distinct count over every window's trials, as read back from the storage
    (before: the sum of the windows' counts, "16 trials tried (16 distinct configurations)" with 4 distinct)."""
    R, url = run["R"], run["url"]
    keys: set[str] = set()
    for w in R["windows"]:
        study = optuna.load_study(study_name=w["study"], storage=url)
        done = [t for t in study.trials if t.state.is_finished()]
        assert len(done) == N_TRIALS
        keys |= {json.dumps(t.params, sort_keys=True) for t in done}
    assert len(R["windows"]) >= 3 and len(keys) < sum(w["n_configs"] for w in R["windows"])  # the planted overlap
    assert R["stats"]["n_configs"] == R["spa"]["n_configs"] == len(keys)
    assert R["stats"]["n_trials_tried"] == N_TRIALS * len(R["windows"])
    assert f"({len(keys)} distinct configurations)" in R["verdict_note"]
