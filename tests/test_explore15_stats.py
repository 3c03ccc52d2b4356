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
        "res": res, "url": url, "db": synth_db, "dir": d, "R": json.loads((d / "result.json").read_text()),
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


def test_cost_stress_and_account_figures_by_hand(run):
    """The cost stress re-prices the same trades at k x the spec's costs: net_k = (1 + gross)(1 - k c)/(1 + k c) - 1
    less the same benchmark; the account (oos_equity) is the equal-weight mean over the positions held each day
    (fills with costs on the entry and exit days, a trade left open at its window's end marked at its closes), its
    Sharpe (x sqrt 252), drawdown and total return the run's."""
    R, tr = run["R"], run["trades"]
    bench, _ = _bench_and_excess(run)
    costs = R["settings"]["costs"]
    c = (costs["commission_bps"] + costs["slippage_bps"]) / 1e4
    g = _closed(run).gross_ret.to_numpy()
    for row in R["stats"]["cost_stress"]:
        k = row["multiplier"]
        assert row["trades"] == g.size
        assert _close_enough(float(((1 + g) * (1 - k * c) / (1 + k * c) - 1 - bench).mean()), row["avg_excess_return"])
    eq = pd.read_parquet(run["dir"] / "oos_equity.parquet")
    rows = [_row(run, str(d.date())) for d in eq.date]
    at = {r: i for i, r in enumerate(rows)}
    acc, n_open = np.zeros(len(rows)), np.zeros(len(rows))
    for t in tr.itertuples():
        e, x = int(t.entry_idx), int(t.exit_idx)
        close = run["close"][t.symbol].to_numpy()
        for r in range(e, min(x, rows[-1]) + 1):
            prev = t.entry_price * (1 + c) if r == e else close[r - 1]
            cur = t.exit_price * (1 - c) if (r == x and not t.open_at_end) else close[r]
            acc[at[r]] += cur / prev - 1
            n_open[at[r]] += 1
    r = np.where(n_open > 0, acc / np.maximum(n_open, 1), 0.0)
    assert np.allclose(r, eq.oos_return, rtol=0, atol=1e-12) and (n_open == eq.n_open).all()
    assert np.allclose(eq.oos_return - eq.bench_return, eq.excess_return, rtol=0, atol=1e-15)
    curve = np.cumprod(1 + r)
    assert _close_enough(r.mean() / r.std(ddof=1) * math.sqrt(252), R["oos"]["portfolio_sharpe"])
    dd = float(np.max(1 - curve / np.maximum.accumulate(np.concatenate([[1.0], curve]))[1:]))
    assert _close_enough(dd, R["oos"]["max_drawdown"])
    assert _close_enough(curve[-1] - 1, R["stats"]["equity_bootstrap"]["total_return"]["point"])


def _sharpe_cols(x: np.ndarray) -> np.ndarray:
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, mean / np.where(sd > 0, sd, 1.0), np.where(mean == 0, 0.0, np.sign(mean) * np.inf))


def test_window_pbo_by_hand_cscv_spa_by_arch_and_dsr_by_formula(run):
    """Each window (PBO: the first two that have one): PBO by a plain CSCV loop over C(16, 8) block choices of its configuration matrix (Sharpe per
    column, the IS-best's OOS rank with ties averaged, omega <= 1/2 counted); SPA p by arch's SPA on the matrix of
    every distinct configuration tried, studentized; DSR = PSR(SR of the winner's in-sample excess, SR0 = sqrt(V)
    ((1 - g) z(1 - 1/N) + g z(1 - 1/(N e)))) with N the window's distinct configurations (Bailey & Lopez de Prado
    2014 by hand). The matrices are the package's (not exported); every statistic on them is computed here."""
    from itertools import combinations

    from arch.bootstrap import SPA

    from optimizer.engine.simulate import Span
    from optimizer.study import load_study_data
    from optimizer.study.data import prepare_data
    from optimizer.study.records import read_trial
    from optimizer.study.space import trial_config
    from optimizer.validate.walkforward import _config_matrices, tried_configs

    spec = load_spec(ROOT / "studies" / "demo.toml")
    res, url = run["res"], run["url"]
    panel, _ = load_study_data(spec, run["db"])
    checked = 0
    for w in res.windows:
        data = prepare_data(spec, panel, w.window.train_start, w.window.train_end, spec.walkforward.n_splits,
                            spec.walkforward.embargo)
        study = optuna.load_study(study_name=w.study_name, storage=url)
        configs, done = tried_configs(study)
        M_pbo, M_spa = _config_matrices(data, configs)
        M = M_pbo[:, np.flatnonzero(done)]
        if math.isfinite(w.pbo) and checked < 2:  # two windows: the plain loop costs ~0.7 s of CPU a window
            S, n_cfg = 16, M.shape[1]
            blocks = np.array_split(np.arange(M.shape[0]), S)
            below = 0
            combos = list(combinations(range(S), S // 2))
            for is_b in combos:
                is_rows = np.concatenate([blocks[b] for b in is_b])
                oos_rows = np.concatenate([blocks[b] for b in range(S) if b not in is_b])
                best = int(np.argmax(_sharpe_cols(M[is_rows])))
                v = _sharpe_cols(M[oos_rows])
                rank = np.count_nonzero(v < v[best]) + (np.count_nonzero(v == v[best]) + 1) / 2  # ties averaged
                omega = rank / (n_cfg + 1)
                below += omega <= 0.5
            assert _close_enough(below / len(combos), w.pbo, 1e-12), (w.window.index, below / len(combos), w.pbo)
            checked += 1
        _, first = np.unique(M_spa.T, axis=0, return_index=True)
        d = M_spa[:, np.sort(first)]
        d = d[:, np.ptp(d, axis=0) > 0]
        assert w.spa["n_configs"] == first.size
        if d.shape[1]:
            d = d / d.std(axis=0, ddof=1)
            T = d.shape[0]
            spa = SPA(np.zeros(T), -d, block_size=int(math.sqrt(T)), reps=1000, bootstrap="stationary",
                      studentize=True, seed=np.random.default_rng(0))
            spa.compute()
            assert _close_enough(float(spa.pvalues["consistent"]), w.spa_p)
        if math.isfinite(w.dsr_in_sample):
            sharpes = np.array([read_trial(t).metrics["excess_sharpe"] for t, ok in zip(configs, done) if ok])
            is_span = Span(data.folds[0].test_start, data.hi, data.hi)
            is_res = data.evaluator.run(trial_config(select_winner(study, w), spec), is_span, entry_ok=data.entry_ok)
            x = data.evaluator.bench.excess(is_res.trades, is_span)
            N, V = w.n_configs, float(np.var(sharpes, ddof=1))
            g = np.euler_gamma
            sr0 = math.sqrt(V) * ((1 - g) * st.norm.ppf(1 - 1 / N) + g * st.norm.ppf(1 - 1 / (N * math.e)))
            sr, sk, ku = x.mean() / x.std(ddof=1), st.skew(x), st.kurtosis(x) + 3
            dsr = st.norm.cdf((sr - sr0) * math.sqrt(x.size - 1) / math.sqrt(1 - sk * sr + (ku - 1) / 4 * sr * sr))
            assert _close_enough(dsr, w.dsr_in_sample), (w.window.index, dsr, w.dsr_in_sample)
    assert checked >= 2


def select_winner(study, w):
    """The window's chosen trial: the one whose params are the window's winner's (select = best)."""
    return next(t for t in study.trials if t.params == w.params)


def test_the_series_the_verdict_tests_is_exported(run):
    """oos_equity.parquet carries the daily series the verdict's HAC t, PSR and effective n are computed on
    (``excess_pnl``: the daily excess P&L of one unit per open closed trade), so the gate can be checked from the
    export alone: statsmodels HAC on it with the documented lag gives the stated t, its sum over the closed trades
    the mean excess per trade, and it is the hand-built series. (Before: the table held only the equal-weight
    account's excess, another series: on a 4 x 8-trial run of the demo spec on this store its HAC t is 1.98, the
    gate's 0.78.)"""
    import statsmodels.api as sm

    eq = pd.read_parquet(run["dir"] / "oos_equity.parquet")
    inf = run["R"]["inference"]
    assert "excess_pnl" in eq.columns
    x = eq["excess_pnl"].to_numpy()
    T = x.size
    assert T == inf["n_days"] and inf["hac_lags"] == int(math.floor(4 * (T / 100) ** (2 / 9)))
    fit = sm.OLS(x, np.ones(T)).fit(cov_type="HAC", cov_kwds={"maxlags": inf["hac_lags"], "use_correction": True})
    assert _close_enough(float(fit.params[0] / fit.bse[0]), inf["t"])
    assert _close_enough(x.sum() / inf["n_trades"], inf["mean_per_trade"])
    bench, _ = _bench_and_excess(run)
    assert np.allclose(x, _daily_total(run, bench), rtol=0, atol=1e-12)
