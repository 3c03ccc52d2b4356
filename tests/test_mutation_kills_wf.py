"""The walk-forward's pieces on a tiny market (bench/mutation, group ``walkforward``): one run over an in-memory
panel of 6 symbols x 150 sessions (reserve 20 % -> 120 visible), windows of 60 train / 20 test sessions, 4 random
trials per window, in-memory storage -- about 2 s, so mutation testing can run it for every mutant.

What is asserted by hand: window placement (train / purge gap / test, the last test window ending exactly at the
reserve), the studies' data (panel cut at the train end, n_splits and embargo of [walkforward]), the OOS span
(test window + purge, never past the reserve), the DSR's trial count (pruned and failed trials included), the
PBO / SPA columns, the stitching (trades, excess, window labels, equity days), the statistics the verdict reads
and the files written.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

import optimizer.validate.walkforward as wfmod
from optimizer.engine.evaluate import Evaluator
from optimizer.engine.metrics import BenchmarkCache
from optimizer.engine.simulate import Span, Trades
from optimizer.errors import DataError, ParameterError
from optimizer.study.records import read_trial
from optimizer.study.space import trial_config
from optimizer.study.spec import parse_spec
from optimizer.validate.stats import daily_excess, deflated_sharpe_from_study
from _cli_helpers import timeless_json
from test_engine_lookahead import _panel

SPEC = """
[study]
name = "wfkill"
description = "tiny walk-forward for mutation testing"
[data]
universe = "tier1+3"
regime = "ALL"
reserve_fraction = 0.2
[data.costs]
commission_bps = 1.0
slippage_bps = 5.0
[space]
variant = { type = "categorical", choices = ["A", "B"] }
z_window = 10
buy_threshold = { type = "int", low = 55, high = 75, step = 5 }
sell_threshold = 40
exit = "fixed_10d"
time_stop = 10
[cv]
mode = "expanding"
n_splits = 2
[objective]
name = "composite_rank_excess"
aggregate = "mean"
min_trades = 1
[sampler]
name = "random"
seed = 3
[run]
n_trials = 3
[walkforward]
train = 60
test = 20
unit = "sessions"
n_trials = 4
select = "robust"
top_k = 4
"""
T, N, RESERVE, PURGE = 150, 6, 120, 10  # reserve_cutoff(150, 0.2) = 120; purge = the longest hold (time_stop 10)
# (index, train_start, train_end, test_start, test_end): train 60 sessions, the last PURGE of them dropped
WINDOWS = [(0, 0, 50, 60, 80), (1, 20, 70, 80, 100), (2, 40, 90, 100, 120)]


def _untried(study: optuna.Study) -> list[dict]:
    seen = {(t.params["variant"], t.params["buy_threshold"]) for t in study.trials}
    return [{"variant": v, "buy_threshold": b} for v in ("A", "B") for b in range(55, 80, 5) if (v, b) not in seen]


def _add_failed_and_pruned(st: optuna.Study) -> optuna.Study:
    """One FAILED and one PRUNED trial added to a window's study, with configurations it did not try."""
    dists = st.trials[0].distributions
    extra = _untried(st)[:2]
    st.add_trial(optuna.trial.create_trial(params=extra[0], distributions=dists, state=optuna.trial.TrialState.FAIL))
    st.add_trial(optuna.trial.create_trial(params=extra[1], distributions=dists, state=optuna.trial.TrialState.PRUNED))
    return st


class _Bar:
    """A stand-in for rich's ``Progress``: records what the walk-forward asks of its progress bar."""

    def __init__(self, made: list):
        self.calls: list[tuple] = []
        made.append(self)

    def start(self):
        self.calls.append(("start",))

    def add_task(self, label, total=None):
        self.calls.append(("add_task", label, total))
        return "task"

    def advance(self, task):
        self.calls.append(("advance", task))

    def update(self, task, completed=None):
        self.calls.append(("update", task, completed))

    def stop(self):
        self.calls.append(("stop",))


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    """One walk-forward on the tiny panel; every window's study gets one FAILED and one PRUNED trial added (after
    its 4 random trials) with configurations it did not try: the DSR counts both, SPA the pruned one, PBO neither."""
    spec = parse_spec(SPEC)
    p = _panel(seed=3, T=T, N=N)
    seen: dict = {"prepare": [], "studies": [], "dsr": [], "select": [], "run_study": [], "bars": []}
    real_prepare, real_run_study, real_dsr = wfmod.prepare_data, wfmod.run_study, wfmod.deflated_sharpe_from_study
    real_select = wfmod.select_params

    def prepare(spec_, panel, lo, hi, *a, **k):
        seen["prepare"].append((lo, hi, a, k, len(panel.dates)))
        return real_prepare(spec_, panel, lo, hi, *a, **k)

    def run_study(*a, **k):
        r = real_run_study(*a, **k)
        st = _add_failed_and_pruned(r.study)
        seen["studies"].append((k.get("name"), st, k.get("extra_attrs"), len(k["data"].panel.dates)))
        seen["run_study"].append((a[1:], k["n_trials"], k["seed"], k["callbacks"]))
        return r

    def select(study, how="best", top_k=5):
        seen["select"].append((how, top_k))
        return real_select(study, how, top_k)

    def dsr(is_ex, fin, tried):
        seen["dsr"].append((np.array(is_ex), np.array(fin), tried))
        return real_dsr(is_ex, fin, tried)

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(wfmod, "load_study_data", lambda s, db: (p, RESERVE))
        mp.setattr(wfmod, "prepare_data", prepare)
        mp.setattr(wfmod, "run_study", run_study)
        mp.setattr(wfmod, "deflated_sharpe_from_study", dsr)
        mp.setattr(wfmod, "select_params", select)
        mp.setattr(wfmod, "Progress", lambda **kw: _Bar(seen["bars"]))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        out = tmp_path_factory.mktemp("wfkill")
        res = wfmod.run_walkforward(spec, out / "none.duckdb", "sqlite:///:memory:", out_dir=out / "summary")
    return {"spec": spec, "panel": p, "res": res, "seen": seen, "out": out}


# ------------------------------------------------------------------------------------------------ windows


def _check_windows_are_placed_by_hand_and_end_at_the_reserve(wf):
    res, p = wf["res"], wf["panel"]
    assert [tuple(vars(w.window).values()) for w in res.windows] == WINDOWS
    d = [str(x) for x in p.dates]
    for w, (i, a, b, c, e) in zip(res.windows, WINDOWS):
        assert w.train_dates == (d[a], d[b - 1]) and w.test_dates == (d[c], d[e - 1])
        assert w.study_name == f"wfkill-wf{i:02d}-{d[a]}_{d[b - 1]}"
        assert w.in_reserve is False  # the last test window ends exactly at the reserve: not in it
    assert res.final is False and res.oos["n_windows"] == 3
    assert wf["seen"]["bars"] == []  # no progress bar unless asked for


def _check_each_study_sees_its_train_span_only(wf):
    seen = wf["seen"]
    # prepare_data(spec, panel, train_start, train_end, [walkforward] n_splits = 2, embargo = 0), once per window
    assert [(lo, hi, a) for lo, hi, a, k, _ in seen["prepare"]] == [(a, b, (2, 0)) for _, a, b, _, _ in WINDOWS]
    names = [w.study_name for w in wf["res"].windows]
    assert [s[0] for s in seen["studies"]] == names
    for (name, st, attrs, rows), (_, a, b, c, e), w in zip(seen["studies"], WINDOWS, wf["res"].windows):
        assert rows == b  # the study's panel ends at its train end
        assert attrs == {"wf_window": w.window.index, "wf_train": list(w.train_dates), "wf_test": list(w.test_dates),
                         "last_session_seen": w.train_dates[1]}
    # run_study(spec, db=None, the run's storage, n_trials, seed=False: never seeded from [seed_from], no callback)
    assert seen["run_study"] == [((None, "sqlite:///:memory:"), 4, False, None)] * 3


def _check_oos_evaluation_is_the_test_window_plus_purge_capped_at_the_reserve(wf):
    res, p, spec = wf["res"], wf["panel"], wf["spec"]
    bench = BenchmarkCache(p.slice(0, RESERVE))
    held = np.full(N, -1)  # one book (docs/STATS.md): the last row the previous windows' trades hold each symbol on
    for w, (_, a, b, c, e) in zip(res.windows, WINDOWS):
        end = min(e + PURGE, RESERVE)  # 90, 110, 120
        cfg = trial_config(_study(wf, w).best_trial, spec)
        assert w.config == cfg and w.cfg(spec) == cfg
        ev = Evaluator(p.slice(0, end), min_periods=spec.data.min_periods)
        ref = ev.run(cfg, Span(c, e, end))  # the window's own run, started flat
        assert len(w.trades) > 0
        if (held > c).any():  # the book: symbol s trades as the engine does with signals from held[s] on
            assert w.book is not None and w.book["symbols_blocked"] == int((held > c).sum())
            per = [ev.run(cfg, Span(max(c, int(held[s])), e, end)).trades if max(c, held[s]) < e else None
                   for s in range(N)]
            want = [(s, int(i), int(x)) for s, t in enumerate(per) if t is not None
                    for i, x, y in zip(t.entry_idx, t.exit_idx, t.symbol) if y == s]
            assert sorted(zip(w.trades.symbol.tolist(), w.trades.entry_idx.tolist(), w.trades.exit_idx.tolist())) == want
            ref = ev.run(cfg, Span(c, e, end), display=wfmod._blocked_display(ev.display(cfg), c, held))
        else:
            assert w.book is None
        np.testing.assert_array_equal(w.trades.entry_idx, ref.trades.entry_idx)
        np.testing.assert_array_equal(w.trades.exit_idx, ref.trades.exit_idx)
        assert w.oos_metrics == ref.metrics
        np.maximum.at(held, w.trades.symbol, w.trades.exit_idx)
        assert (w.trades.signal_idx >= c).all() and (w.trades.signal_idx < e).all()
        assert (w.trades.exit_idx < end).all()
        np.testing.assert_array_equal(w.excess, bench.excess(ref.trades, Span(c, e, end)))
        assert w.params == _study(wf, w).best_trial.params
        assert w.is_metrics == read_trial(_study(wf, w).best_trial).metrics
    # the last window's trades run into the reserve: some are still open at its end (exit = last visible row)
    last = res.windows[-1].trades
    assert (~last.closed).any() and (last.exit_idx[~last.closed] == RESERVE - 1).all()


def _study(wf, w) -> optuna.Study:
    return next(s for n, s, _, _ in wf["seen"]["studies"] if n == w.study_name)


def _check_in_reserve_flag_and_final_limit(wf):
    """A window whose test span ends past the reserve start is flagged (here: the reserve moved to 100)."""
    res, spec = wf["res"], wf["spec"]
    ctx, windows, reserve = _ctx(wf, final=False)
    assert (ctx.limit, ctx.reserve, ctx.purge, reserve, ctx.n_trials) == (RESERVE, RESERVE, PURGE, RESERVE, 4)
    assert [tuple(vars(w).values()) for w in windows] == WINDOWS
    w2 = res.windows[2]
    moved = replace(ctx, reserve=100)
    data = wfmod._window_data(moved, w2.window)
    r = wfmod._window_result(moved, w2.window, _study(wf, w2), data)
    assert r.in_reserve is True and wfmod._window_result(replace(ctx, reserve=120), w2.window, _study(wf, w2),
                                                         data).in_reserve is False
    fctx, fwindows, _ = _ctx(wf, final=True)
    assert fctx.limit == T and fctx.reserve == RESERVE
    assert [w.test_end for w in fwindows] == [80, 100, 120, 140]
    assert _ctx(wf, False, 7)[0].n_trials == 7  # --trials over [walkforward] n_trials (4) over [run] n_trials (3)
    nowf = replace(spec, walkforward=replace(spec.walkforward, n_trials=None))
    assert _ctx(wf, False, spec=nowf)[0].n_trials == 3


def _ctx(wf, final: bool, n_trials: int | None = None, spec=None):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "load_study_data", lambda s, db: (wf["panel"], RESERVE))
        return wfmod._setup(spec or wf["spec"], "x", "sqlite:///:memory:", final, n_trials)


# ------------------------------------------------------------------------------------------------ DSR, PBO, SPA


def _check_dsr_counts_every_distinct_configuration_tried(wf):
    """Issue 18: the DSR of each window deflates by its distinct configurations tried -- 4 random trials (some may
    repeat) + the failed + the pruned one -- not by the completed ones only."""
    res = wf["res"]
    assert len(wf["seen"]["dsr"]) == 3
    for w, (is_ex, fin, tried) in zip(res.windows, wf["seen"]["dsr"]):
        st = _study(wf, w)
        S = optuna.trial.TrialState
        key = lambda t: (t.params["variant"], t.params["buy_threshold"])  # noqa: E731 - one config per params here
        complete = {key(t) for t in st.trials if t.state == S.COMPLETE}
        assert w.n_trials_tried == 6 and w.n_configs == len({key(t) for t in st.trials}) >= len(complete) + 2
        assert tried == w.n_configs
        assert len(w.trial_sharpes) == len(complete) == fin.size  # one Sharpe per distinct completed configuration
        assert w.dsr_in_sample == deflated_sharpe_from_study(is_ex, fin, max(tried, fin.size)).dsr
        assert w.dsr_skipped is None
        # its in-sample excess: the winner over [first fold start, train end)
        data = wfmod._window_data(_ctx(wf, False)[0], w.window)
        cfg = w.config
        span = Span(data.folds[0].test_start, w.window.train_end, w.window.train_end)
        ref = data.evaluator.run(cfg, span, entry_ok=data.entry_ok)
        np.testing.assert_array_equal(is_ex, data.evaluator.bench.excess(ref.trades, span))


def _check_window_result_passes_its_settings_and_figures_on(wf):
    """The winner is chosen with [walkforward] select / top_k; the OOS evaluation uses [data] min_periods and
    the regime filter; the window's DSR / PBO / SPA results (and their reasons) reach the WindowResult as given."""
    # [walkforward] select = "robust", top_k = 4 (top_k is read by robust only; on these studies robust keeps each
    # window's best trial, which the OOS checks above take)
    assert wf["seen"]["select"] == [("robust", 4)] * 3
    ctx = _ctx(wf, False)[0]
    w = wf["res"].windows[1]
    st, p = _study(wf, w), wf["panel"]
    data = wfmod._window_data(ctx, w.window)
    c, e = w.window.test_start, w.window.test_end
    spec = wf["spec"]
    spec2 = replace(spec, data=replace(spec.data, min_periods=3))
    r = wfmod._window_result(replace(ctx, spec=spec2), w.window, st, data)
    ref = Evaluator(p.slice(0, e + PURGE), min_periods=3).run(w.config, Span(c, e, e + PURGE))
    assert r.oos_metrics == ref.metrics and r.oos_metrics != w.oos_metrics
    spec3 = replace(spec, data=replace(spec.data, regime="RISK_ON"))  # no market data here: never risk-on
    r = wfmod._window_result(replace(ctx, spec=spec3), w.window, st, data)
    assert len(r.trades) == 0 and r.oos_metrics["total_trades"] == 0 and len(w.trades) > 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "_window_dsr", lambda *a: (0.25, "dsr why"))
        mp.setattr(wfmod, "_window_pbo", lambda *a: (0.5, "pbo why", {"n_paths": 3}))
        mp.setattr(wfmod, "_window_spa", lambda *a: ({"p_value": 0.125}, "spa why"))
        r = wfmod._window_result(ctx, w.window, st, data)
    assert (r.dsr_in_sample, r.dsr_skipped, r.pbo, r.pbo_skipped, r.cpcv) == (0.25, "dsr why", 0.5, "pbo why", {"n_paths": 3})
    assert (r.spa, r.spa_skipped, r.spa_p) == ({"p_value": 0.125}, "spa why", 0.125)
    assert math.isnan(wfmod.WindowResult(*[None] * 11, False, spa={"p_value": None}).spa_p)  # no p-value: NaN
    assert math.isnan(wfmod.WindowResult(*[None] * 11, False).spa_p)
    # cpcv mode: the window's study takes the [cv] groups, not [walkforward] n_splits
    cp = replace(spec, cv=replace(spec.cv, mode="cpcv", n_groups=4, n_test_groups=2))
    got = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "prepare_data", lambda *a, **k: _prep(got, *a, **k))
        wfmod._window_data(replace(ctx, spec=cp), w.window)
    assert got == [(None, 0)]


def _prep(got, spec, panel, lo, hi, *a, **k):
    got.append(a)
    from optimizer.study.data import prepare_data
    return prepare_data(spec, panel, lo, hi, *a, **k)


def _check_a_completed_trial_without_metrics_has_no_sharpe(wf):
    """A COMPLETE trial without accumopt's metrics record (added through Optuna's API) is a configuration tried
    whose excess Sharpe is unknown: NaN among the trial Sharpes (left out of the DSR's dispersion), not an error."""
    ctx = _ctx(wf, False)[0]
    w = wf["res"].windows[0]
    st = _study(wf, w)
    st2 = optuna.create_study(direction=st.direction)
    st2.add_trials(st.trials)
    worst = min(t.value for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE)
    st2.add_trial(optuna.trial.create_trial(params=_untried(st)[0], distributions=st.trials[0].distributions,
                                            value=worst - 1.0))
    r = wfmod._window_result(ctx, w.window, st2, wfmod._window_data(ctx, w.window))
    assert r.trial_sharpes[:-1] == w.trial_sharpes and math.isnan(r.trial_sharpes[-1])
    assert r.params == w.params and r.n_configs == w.n_configs + 1 and np.isfinite(r.dsr_in_sample)


def _check_pbo_and_spa_columns(wf):
    """PBO runs over the completed configurations, SPA over every evaluated one (the pruned one too)."""
    res = wf["res"]
    for w in res.windows:
        st = _study(wf, w)
        configs, done = wfmod.tried_configs(st)
        S = optuna.trial.TrialState
        evaluated = {(t.params["variant"], t.params["buy_threshold"]) for t in st.trials if t.state in (S.COMPLETE, S.PRUNED)}
        assert sum(done) == len(w.trial_sharpes) and len(configs) == len(evaluated) == w.n_configs - 1
        assert w.spa["n_configs"] == len(configs) and w.spa_skipped is None and 0 <= w.spa_p <= 1
        assert w.pbo_skipped is None and 0 <= w.pbo <= 1 and w.cpcv is None
        data = wfmod._window_data(_ctx(wf, False)[0], w.window)
        M_pbo, M_spa = wfmod._config_matrices(data, configs)
        assert M_pbo.shape == M_spa.shape == (data.hi - data.folds[0].test_start, len(configs))
        pbo, why, cp = wfmod._window_pbo(data, M_pbo[:, np.flatnonzero(done)])
        assert (pbo, why, cp) == (w.pbo, None, None)
        np.testing.assert_array_equal(wfmod.pbo_matrix(data, st), M_pbo[:, np.flatnonzero(done)])
        np.testing.assert_array_equal(wfmod.pbo_matrix(data, st, max_configs=1), M_pbo[:, np.flatnonzero(done)[:1]])


def test_config_matrices_by_hand():
    """Each configuration: the PBO column is the daily portfolio return minus the equal-weight universe on invested
    days (entry to exit, 0 on cash days), the SPA column the daily excess of its trades; entries go through the
    study's regime mask (none allowed: two zero columns)."""
    from optimizer.engine.metrics import portfolio_returns
    spec = parse_spec(SPEC)
    p = _panel(seed=3, T=100, N=N)
    data = wfmod.prepare_data(spec, p, 0, 100, 2, 0)
    st = optuna.create_study()
    dists = {"variant": optuna.distributions.CategoricalDistribution(["A", "B"]),
             "buy_threshold": optuna.distributions.IntDistribution(55, 75, step=5)}
    for b in (55, 75):  # 44 trades (invested nearly every day), 9 trades (16 cash days)
        st.add_trial(optuna.trial.create_trial(params={"variant": "B", "buy_threshold": b}, distributions=dists, value=1.0))
    M_pbo, M_spa = wfmod._config_matrices(data, st.trials)
    lo = data.folds[0].test_start
    span = Span(lo, 100, 100)
    C = p["close"]
    ew = np.array([np.nanmean(C[t] / C[t - 1] - 1.0) for t in range(lo, 100)])
    cash = []
    for j, t in enumerate(st.trials):
        cfg = trial_config(t, spec)
        res = data.evaluator.run(cfg, span, entry_ok=data.entry_ok)
        assert len(res.trades) >= 3
        daily = portfolio_returns(res.trades, p, span)
        inv = np.zeros(100 - lo, bool)
        for e, x in zip(res.trades.entry_idx, res.trades.exit_idx):
            inv[e - lo: x - lo + 1] = True
        cash.append(int((~inv).sum()))
        np.testing.assert_allclose(M_pbo[:, j], np.where(inv, daily - ew, 0.0), rtol=0, atol=1e-15)
        ex = data.evaluator.bench.excess(res.trades, span)
        np.testing.assert_array_equal(M_spa[:, j], daily_excess(res.trades, ex, C, lo, 100).total)
    assert cash[1] >= 10 and lo > 0
    e0, e1 = wfmod._config_matrices(data, [])
    assert e0.shape == e1.shape == (100 - lo, 0)
    off = replace(spec, data=replace(spec.data, regime="RISK_ON"))  # no market data here: never risk-on
    d_off = wfmod.prepare_data(off, p, 0, 100, 2, 0)
    assert d_off.entry_ok is not None and not d_off.entry_ok.any()
    z0, z1 = wfmod._config_matrices(d_off, st.trials)
    assert z0.shape == z1.shape == M_pbo.shape and not z0.any() and not z1.any() and M_pbo.any()


def test_window_statistics_say_why_they_cannot_be_estimated():
    nan = math.isnan
    pb, why, cp = wfmod._window_pbo(None, np.zeros((16, 1)))
    assert nan(pb) and cp is None and why == "1 completed configuration(s) over 16 session(s); PBO needs >= 2 and >= 16"
    pb, why, _ = wfmod._window_pbo(None, np.zeros((15, 2)))
    assert nan(pb) and why == "2 completed configuration(s) over 15 session(s); PBO needs >= 2 and >= 16"
    s, why = wfmod._window_spa(np.zeros((9, 1)))
    assert s is None and why == "1 configuration(s) over 9 session(s); SPA needs >= 1 and >= 10"
    s, why = wfmod._window_spa(np.zeros((10, 0)))
    assert s is None and why == "0 configuration(s) over 10 session(s); SPA needs >= 1 and >= 10"
    s, why = wfmod._window_spa(np.zeros((10, 2)))  # never traded (two identical columns: one configuration)
    assert why == "none of the 1 configuration(s) traded in the train span" and s["n_configs"] == 1
    s, why = wfmod._window_spa(np.zeros((10, 1)))  # one configuration over 10 sessions is enough
    assert why == "none of the 1 configuration(s) traded in the train span" and s["n_configs"] == 1
    from optimizer.validate.stats import spa_test
    M = np.random.default_rng(1).normal(0.001, 0.01, size=(40, 3))
    s, why = wfmod._window_spa(M)
    assert why is None and s == spa_test(M, reps=1000, seed=0).to_dict() and s == wfmod._window_spa(M)[0]
    from types import SimpleNamespace
    pb, why, _ = wfmod._window_pbo(SimpleNamespace(cv=None), M[:16, :2])  # two configurations over 16 sessions
    assert why is None and 0.0 <= pb <= 1.0


def test_window_pbo_blocks_and_cscv():
    """CSCV over min(16, even number of sessions) blocks below 32 sessions, 16 from 32 on."""
    rng = np.random.default_rng(0)
    from optimizer.validate.stats import probability_of_backtest_overfitting as pbo
    spec = parse_spec(SPEC)
    data = wfmod.prepare_data(spec, _panel(seed=3, T=60, N=N), 0, 60, 2, 0)
    for n, blocks in ((17, 16), (20, 16), (31, 16), (32, 16), (40, 16)):
        M = rng.normal(size=(n, 3))
        assert wfmod._window_pbo(data, M)[0] == pbo(M, n_blocks=blocks).pbo
    M = rng.normal(size=(18, 3))
    assert wfmod._window_pbo(data, M)[0] == pbo(M, n_blocks=16).pbo
    M = rng.normal(size=(16, 3))
    assert wfmod._window_pbo(data, M)[0] == pbo(M, n_blocks=16).pbo


def _check_window_dsr_needs_three_trades_and_two_sharpes(wf):
    data = wfmod._window_data(_ctx(wf, False)[0], wf["res"].windows[0].window)
    cfg = wf["res"].windows[0].config
    d, why = wfmod._window_dsr(data, cfg, np.array([0.1, np.nan]), 5)
    assert math.isnan(d) and why.endswith("1 finite trial Sharpe ratio(s); DSR needs >= 3 and >= 2")
    n = int(why.split()[0])
    assert n >= 3 and why == f"{n} in-sample trade(s) and 1 finite trial Sharpe ratio(s); DSR needs >= 3 and >= 2"
    d2, why2 = wfmod._window_dsr(data, cfg, np.array([0.1, 0.3, np.nan]), 1)  # tried < finite: the finite count
    d3, _ = wfmod._window_dsr(data, cfg, np.array([0.1, 0.3]), 2)
    assert why2 is None and d2 == d3
    d4, _ = wfmod._window_dsr(data, cfg, np.array([0.1, 0.3]), 50)
    assert d4 < d3  # more configurations tried: deflated more


# ------------------------------------------------------------------------------------------------ stitching


def _check_stitched_trades_excess_and_windows(wf):
    res, p = wf["res"], wf["panel"]
    ws = res.windows
    n = sum(len(w.trades) for w in ws)
    assert len(res.trades) == n
    np.testing.assert_array_equal(res.trades["window"].to_numpy(),
                                  np.concatenate([np.full(len(w.trades), w.window.index) for w in ws]))
    exc = np.concatenate([w.excess for w in ws])
    assert res.oos["avg_excess_return"] == pytest.approx(exc.mean(), rel=1e-12)
    assert res.oos["total_signals"] == sum(w.oos_metrics["total_signals"] for w in ws)
    inf = res.stats["inference"]
    assert inf["n_trades"] == exc.size and inf["mean_per_trade"] == pytest.approx(exc.mean(), rel=1e-12)
    trades, excess, span = wfmod._stitch(ws, RESERVE)
    assert (span.sig_start, span.sig_end, span.data_end) == (60, 120, RESERVE)
    np.testing.assert_array_equal(excess, exc)
    # the daily series runs from the first test session to the last test session / last exit (+1)
    daily = wfmod._daily(p.slice(0, RESERVE), ws, trades, excess)
    assert (daily.start, daily.stop) == (60, 120)
    eq = res.equity
    assert len(eq) == 60 and eq["date"].iloc[0] == pd.Timestamp(p.dates[60])
    np.testing.assert_allclose(eq["excess_return"], eq["oos_return"] - eq["bench_return"])
    np.testing.assert_allclose(eq["oos_equity"], np.cumprod(1 + eq["oos_return"]))
    np.testing.assert_allclose(eq["bench_equity"], np.cumprod(1 + eq["bench_return"]))
    np.testing.assert_allclose(eq["excess_equity"], np.cumprod(1 + eq["excess_return"]))


def _check_daily_runs_to_the_last_exit_when_it_is_later(wf):
    p = wf["panel"].slice(0, T)
    ws = wf["res"].windows[:1]  # test window [60, 80); its trades exit up to row 89
    tr = ws[0].trades
    stop = int(tr.exit_idx[tr.closed].max()) + 1
    assert stop > 80
    assert (wfmod._daily(p, ws, tr, ws[0].excess).start, wfmod._daily(p, ws, tr, ws[0].excess).stop) == (60, stop)
    none = Trades(*(np.empty(0, np.int64),) * 4, np.empty(0), np.empty(0), np.empty(0, np.int64), np.empty(0), cost=0.0)
    d = wfmod._daily(p, ws, none, np.empty(0))
    assert (d.start, d.stop) == (60, 80)


def test_concat_trades_keeps_sizing_only_when_every_part_sizes_alike():
    def part(k, weight=None, mult=None, absolute=False, cost=0.001):
        i = np.arange(k, dtype=np.int64)
        f = np.ones(k)
        return Trades(i, i, i + 1, i + 2, f, f * 1.1, i, f, cost=cost, weight=weight, mult=mult, absolute=absolute)
    a, b = part(2, np.array([0.5, 0.5]), np.array([1.0, 2.0])), part(1, np.array([1.0]), np.array([3.0]), cost=0.5)
    t = wfmod.concat_trades([a, b])
    assert len(t) == 3  # parts at different costs: each trade keeps its own
    np.testing.assert_array_equal(t.cost_per_trade, [0.001, 0.001, 0.5])
    np.testing.assert_array_equal(t.net_ret, np.concatenate([a.net_ret, b.net_ret]))
    assert wfmod.concat_trades([a, a]).cost == 0.001  # one cost for all: still one number
    np.testing.assert_array_equal(t.entry_idx, [1, 2, 1])
    np.testing.assert_array_equal(t.exit_price, [1.1, 1.1, 1.1])
    np.testing.assert_array_equal(t.weight, [0.5, 0.5, 1.0])
    np.testing.assert_array_equal(t.mult, [1.0, 2.0, 3.0])
    assert t.absolute is False
    t = wfmod.concat_trades([part(1, np.ones(1), absolute=True), part(1, np.ones(1), absolute=True)])
    assert t.absolute is True and t.mult is None and t.weight is not None
    t = wfmod.concat_trades([part(1, np.ones(1), absolute=True), part(1, np.ones(1), absolute=False)])
    assert t.weight is None and t.mult is None and t.absolute is False
    t = wfmod.concat_trades([part(1, np.ones(1)), part(1)])
    assert t.weight is None and t.mult is None
    t = wfmod.concat_trades([part(1, np.ones(1), np.ones(1)), part(1, np.ones(1))])
    assert t.weight is not None and t.mult is None
    e = wfmod.concat_trades([])
    assert len(e) == 0 and e.cost == 0.0 and e.entry_idx.dtype == np.int64 and e.entry_price.dtype == np.float64


# ------------------------------------------------------------------------------------------------ statistics


def _check_statistics_the_verdict_reads(wf):
    res = wf["res"]
    ws, s = res.windows, res.stats
    assert s["n_trials_tried"] == 18 and all(len(w.config_ids) == w.n_configs for w in ws)
    assert s["n_configs"] == len({k for w in ws for k in w.config_ids}) <= sum(w.n_configs for w in ws)  # once over all
    is_r = [w.is_metrics["rank_score"] for w in ws]
    oos_r = [w.oos_metrics["rank_score"] for w in ws]
    assert s["degradation"] == pytest.approx(np.mean(oos_r) / np.mean(is_r), rel=1e-12)
    is_x = [w.is_metrics["avg_excess_return"] for w in ws]
    oos_x = [w.oos_metrics["avg_excess_return"] for w in ws]
    assert s["degradation_excess"] == pytest.approx(np.mean(oos_x) / np.mean(is_x), rel=1e-12)
    assert s["dsr"] == float(np.median([w.dsr_in_sample for w in ws]))
    assert s["dsr_windows"] == [w.dsr_in_sample for w in ws]
    assert s["pbo_windows"] == [w.pbo for w in ws] and s["pbo"] == pytest.approx(np.mean([w.pbo for w in ws]))
    assert s["pbo_method"] == "cscv" and "cpcv" not in s
    assert not any(k in s for k in ("dsr_skipped", "pbo_skipped", "spa_skipped"))
    p = [w.spa_p for w in ws]
    assert s["spa"] == {"p": wfmod.combine_pvalues(p), "p_median": float(np.median(p)), "p_windows": p,
                        "n_configs": s["n_configs"], "n_trials_tried": 18, "gate": None}
    assert s["psr"] == s["inference"]["psr"]
    assert res.oos["excess_t"] == s["inference"]["t"] and res.oos["excess_t_iid"] == s["inference"]["t_iid"]
    eqb = s["equity_bootstrap"]
    assert eqb["n_days"] == 60 and eqb["reps"] == 2000
    assert res.oos["portfolio_sharpe"] == eqb["sharpe"]["point"] and res.oos["max_drawdown"] == eqb["max_drawdown"]["point"]
    q = eqb["drawdown_quantiles"]
    assert q["50%"] <= q["90%"] <= q["95%"]
    assert s["inference_mkt"]["n_trades"] == s["inference"]["n_trades"]
    assert s["inference_mkt"]["mean_per_trade"] != s["inference"]["mean_per_trade"]
    # cost stress: 1x re-runs each winner over its own test span + purge: the stitched excess exactly
    cs = s["cost_stress"]
    assert [r["multiplier"] for r in cs] == [1.0, 2.0, 3.0]
    assert cs[0]["avg_excess_return"] == pytest.approx(res.oos["avg_excess_return"], rel=1e-12)
    assert cs[0]["trades"] == sum(len(w.excess) for w in ws)
    assert cs[0]["avg_excess_return"] > cs[1]["avg_excess_return"] > cs[2]["avg_excess_return"]
    assert s["cost_fragile"] == wfmod.flag_fragile(pd.DataFrame(cs))
    assert s["cost_stress_wording"] == wfmod.cost_stress_wording(pd.DataFrame(cs))


def _check_verdict_inputs(wf):
    res = wf["res"]
    s, v = res.stats, res.verdict
    inf = s["inference"]
    assert v.gate("excess_t").value == inf["t"]
    assert v.gate("psr").value == s["psr"]
    assert v.gate("pbo").value == s["pbo"]
    assert v.power.n_trades == inf["n_trades"] and v.power.n_days == inf["n_days"] == 60
    assert v.power.mde_per_trade == inf["mde_per_trade"]
    dsr_s = f"{s['dsr']:.2f}"
    spa_s = f"{s['spa']['p']:.2f}"
    assert v.note == (f"in-sample winners' median DSR {dsr_s}, SPA p {spa_s} over 18 trials tried "
                      f"({s['n_configs']} distinct configurations)")
    assert v == wfmod._decide(s)


def test_decide_without_estimates_says_n_a():
    inf = {"mean_per_trade": float("nan"), "mde_per_trade": None, "mde_per_year": None, "alpha": 0.05, "power": 0.8,
           "n_trades": 0, "n_days": 0, "n_eff": None, "t": None}
    stats = {"inference": inf, "dsr": float("nan"), "spa": {"p": float("nan")}, "psr": float("nan"),
             "pbo": float("nan"), "n_trials_tried": 3, "n_configs": 2}
    v = wfmod._decide(stats)
    assert v.note == "in-sample winners' median DSR n/a, SPA p n/a over 3 trials tried (2 distinct configurations)"
    assert not v.supported and v.power.n_trades == 0 and math.isnan(v.power.n_eff)


# ------------------------------------------------------------------------------------------------ tables, files


def _check_tables(wf):
    res = wf["res"]
    sm = res.summary
    assert list(sm["window"]) == [0, 1, 2] and list(sm["n_trials_tried"]) == [6, 6, 6]
    assert list(sm["in_reserve"]) == [False] * 3
    assert list(sm["train_start"]) == [w.train_dates[0] for w in res.windows]
    assert list(sm["test_end"]) == [w.test_dates[1] for w in res.windows]
    tdf, p = res.trades, wf["panel"]
    assert list(tdf["symbol"]) == [p.symbols[i] for i in tdf["symbol_idx"]]  # named by the panel
    for c in ("signal", "entry", "exit"):
        assert (tdf[f"{c}_date"] == pd.to_datetime(p.dates[tdf[f"{c}_idx"].to_numpy()])).all()
    for (_, row), w in zip(sm.iterrows(), res.windows):
        assert (row["train_start"], row["train_end"], row["test_start"], row["test_end"]) == w.train_dates + w.test_dates
        assert row["study"] == w.study_name
    assert list(sm["param_variant"]) == [w.params["variant"] for w in res.windows]
    for k in wfmod._SUMMARY_METRICS:
        assert list(sm[f"oos_{k}"]) == [w.oos_metrics.get(k) for w in res.windows]
        assert list(sm[f"is_{k}"]) == [w.is_metrics.get(k) for w in res.windows]
    stab = res.stability
    assert list(dict.fromkeys(stab["param"])) == ["variant", "buy_threshold"]  # _STABILITY_PARAMS order
    for k in ("variant", "buy_threshold"):
        counts = pd.Series([str(w.params[k]) for w in res.windows]).value_counts()
        part = stab[stab["param"] == k]
        assert dict(zip(part["value"], part["windows"])) == counts.to_dict()
        assert list(part["windows"]) == sorted(part["windows"], reverse=True)
    assert stab["share"].tolist() == [n / 3 for n in stab["windows"]]
    ev = res.events
    assert list(ev.columns[:1]) == ["window"] and set(ev["window"]) == {0, 1, 2}
    assert ev.index.equals(pd.RangeIndex(len(ev)))  # one table, not the windows' frames stacked with their indexes
    closed = ev[~ev["open_at_end"].astype(bool)]
    exc = np.concatenate([w.excess for w in res.windows])
    assert np.sort(closed["excess_return"].to_numpy()) == pytest.approx(np.sort(exc))
    assert res.by_symbol["closed_trades"].sum() == len(closed) == exc.size
    assert list(res.by_symbol["closed_trades"]) == sorted(res.by_symbol["closed_trades"], reverse=True)
    g = closed.groupby("symbol")["net_return"]
    row = res.by_symbol.iloc[0]
    assert row["hit_rate"] == pytest.approx(float((g.get_group(row["symbol"]) > 0).mean()))
    assert row["avg_return"] == pytest.approx(g.get_group(row["symbol"]).mean())
    assert set(res.by_sector["sector"]) <= set(ev["sector_etf"].fillna("(ETF)"))
    assert res.by_regime["closed_trades"].sum() == exc.size
    assert len(res.rules) > 0


def test_group_table_of_no_closed_trade_has_its_columns():
    df = pd.DataFrame({"symbol": ["A"], "open_at_end": [True], "net_return": [0.1], "excess_return": [0.0]})
    g = wfmod._group_table(df, "symbol")
    assert g.empty and list(g.columns) == ["symbol", "closed_trades", "hit_rate", "avg_return", "avg_excess_return"]
    df = pd.DataFrame({"symbol": ["A", "B", "B", None], "open_at_end": [False] * 4,
                       "net_return": [0.1, -0.2, 0.4, 0.0], "excess_return": [0.0, 0.1, 0.3, 1.0]})
    g = wfmod._group_table(df, "symbol")
    assert g["symbol"].tolist()[0] == "B" and g["closed_trades"].tolist() == [2, 1, 1]
    b = g.iloc[0]
    assert (b["hit_rate"], b["avg_return"], b["avg_excess_return"]) == pytest.approx((0.5, 0.1, 0.2))
    assert g["symbol"].isna().sum() == 1  # dropna=False: a trade without a symbol is its own group
    assert g.loc[g["symbol"].isna(), "hit_rate"].tolist() == [0.0]  # a return of exactly 0 is not a hit
    assert list(g.columns) == ["symbol", "closed_trades", "hit_rate", "avg_return", "avg_excess_return"]
    assert g.index.equals(pd.RangeIndex(3))
    # ties in the trade count keep the groups' order (by key): a stable sort, also past numpy's small-array cutoff
    names = [f"S{i:02d}" for i in range(40)]
    many = pd.DataFrame({"symbol": names[::-1] + ["S07"], "open_at_end": False, "net_return": 0.01,
                         "excess_return": 0.0})
    g = wfmod._group_table(many, "symbol")
    assert g["symbol"].tolist() == ["S07"] + [n for n in names if n != "S07"]


def _check_saved_files_are_the_tables_exactly(res, d: Path) -> None:
    """Each file holds its table's columns and no index column; result.json is the run's ``to_dict`` indented by
    2; a value JSON cannot hold is written as its text; saving again into the same folder, or into a folder whose
    parents do not exist yet, works."""
    import pyarrow.parquet as pq
    for name, df in (("oos_trades", res.trades), ("oos_equity", res.equity), ("oos_events", res.events)):
        assert pq.read_schema(d / f"{name}.parquet").names == [str(c) for c in df.columns], name
    for name, df in (("walk_forward_summary", res.summary), ("parameter_stability", res.stability),
                     ("by_symbol", res.by_symbol), ("by_sector", res.by_sector), ("by_regime", res.by_regime),
                     ("rules", res.rules)):
        assert (d / f"{name}.csv").read_text().splitlines()[0] == ",".join(map(str, df.columns)), name
    assert (d / "result.json").read_text() == json.dumps(res.to_dict(), indent=2)
    assert wfmod.save_walkforward(res, d) == d  # again into the same folder
    # tables whose index is not a RangeIndex (rows picked out of order): still written without it
    pick = lambda df: df.iloc[np.r_[1, 0, 2:len(df)]]  # noqa: E731
    odd = replace(res, windows=[replace(res.windows[0], is_metrics={"first": pd.Timestamp("2024-01-02")})],
                  trades=pick(res.trades), equity=pick(res.equity), events=pick(res.events))
    nested = d / "deeper" / "still"
    assert wfmod.save_walkforward(odd, nested) == nested
    assert json.loads((nested / "result.json").read_text())["windows"][0]["in_sample"] == {"first": "2024-01-02 00:00:00"}
    for name, df in (("oos_trades", res.trades), ("oos_equity", res.equity), ("oos_events", res.events)):
        assert pq.read_schema(nested / f"{name}.parquet").names == [str(c) for c in df.columns], name
    wfmod._write_summary(res, d / "only" / "summary")
    assert (d / "only" / "summary" / "walk_forward_summary.csv").read_text() == (d / "walk_forward_summary.csv").read_text()


def _check_save_and_load_round_trip(wf):
    tmp_path = wf["out"]
    res = wf["res"]
    assert (wf["out"] / "summary" / "walk_forward_summary.csv").exists()
    d = wfmod.save_walkforward(res, tmp_path / "run")
    assert d == tmp_path / "run"
    _check_saved_files_are_the_tables_exactly(res, d)
    for f in ("result.json", "walk_forward_summary.csv", "oos_trades.parquet", "oos_equity.parquet",
              "parameter_stability.csv", "oos_events.parquet", "by_symbol.csv", "by_sector.csv", "by_regime.csv",
              "rules.csv"):
        assert (d / f).exists(), f
    got = wfmod.load_walkforward(d)
    assert got["result"]["spec"] == "wfkill" and got["result"]["final"] is False
    assert got["verdict"] == res.verdict
    assert len(got["trades"]) == len(res.trades) and len(got["equity"]) == 60 and len(got["events"]) == len(res.events)
    assert got["summary"]["window"].tolist() == [0, 1, 2] and len(got["stability"]) == len(res.stability)
    assert got["regime_comparison"].empty and len(got["by_symbol"]) == len(res.by_symbol)
    for name in ("by_symbol", "by_sector", "by_regime", "rules"):
        pd.testing.assert_frame_equal(got[name], pd.read_csv(d / f"{name}.csv"))
        assert len(got[name]) == len(getattr(res, name)) > 0, name
    w0 = got["result"]["windows"][0]
    assert w0["train"] == list(res.windows[0].train_dates) and w0["n_configs"] == res.windows[0].n_configs
    assert w0["config"] == res.windows[0].config.to_params() and w0["best_params"] == res.windows[0].params
    assert got["result"]["dsr"] == res.stats["dsr"] and got["result"]["pbo"] == res.stats["pbo"]
    with pytest.raises(DataError, match="no walk-forward run in"):
        wfmod.load_walkforward(tmp_path / "nothing")
    (d / "result.json").write_text(json.dumps({"spec": "x"}))
    (d / "oos_events.parquet").unlink()
    (d / "rules.csv").write_text("")
    res.stability.iloc[:0, :0].to_csv(d / "parameter_stability.csv", index=False)  # a run with no stable param
    got = wfmod.load_walkforward(d)
    assert got["verdict"] is None and got["events"].empty and got["rules"].empty
    assert got["stability"].empty and (d / "parameter_stability.csv").stat().st_size == 1
    (d / "parameter_stability.csv").write_text("p\n")  # 2 bytes: a header, read (no rows, its column)
    assert list(wfmod.load_walkforward(d)["stability"].columns) == ["p"]


def _check_to_dict_cleans_non_finite_values(wf):
    res = wf["res"]
    w = replace(res.windows[0], config=None, is_metrics={"x": float("nan"), "y": np.float64(2.0), "z": np.int64(3),
                                                          "l": [float("inf"), 1.0], "t": (float("-inf"),)})
    d = replace(res, windows=[w]).to_dict()
    assert d["windows"][0]["config"] is None
    assert d["windows"][0]["in_sample"] == {"x": None, "y": 2.0, "z": 3, "l": [None, 1.0], "t": [None]}
    assert type(d["windows"][0]["in_sample"]["z"]) is int
    full = res.to_dict()
    w0 = res.windows[0]
    assert full["windows"][0] == {
        "index": 0, "study": w0.study_name, "train": list(w0.train_dates), "test": list(w0.test_dates),
        "in_reserve": False, "best_params": w0.params, "config": w0.config.to_params(),
        "in_sample": json.loads(json.dumps(full["windows"][0]["in_sample"])), "out_of_sample": full["windows"][0]["out_of_sample"],
        "n_trials_tried": 6, "n_configs": w0.n_configs, "book": None}  # the first window: nothing held before it
    assert full["windows"][1]["book"] == res.windows[1].book and res.windows[1].book["refused"] > 0
    assert full["windows"][0]["out_of_sample"]["closed_trades"] == w0.oos_metrics["closed_trades"]
    assert full["windows"][0]["in_sample"]["rank_score"] == w0.is_metrics["rank_score"]
    assert [x["index"] for x in full["windows"]] == [0, 1, 2]
    assert full["spec"] == "wfkill" and full["final"] is False and full["warnings"] == []
    s = res.stats
    for k in ("dsr", "psr", "pbo", "degradation"):
        assert full[k] == s[k], k
    assert full["spa"]["p"] == s["spa"]["p"] and full["spa"]["n_trials_tried"] == 18
    assert full["inference"]["t"] == s["inference"]["t"] and full["stats"]["n_configs"] == s["n_configs"]
    assert full["oos"]["n_windows"] == 3
    assert full["regimes"] == res.by_regime.to_dict(orient="records")
    assert full["by_sector"] == res.by_sector.to_dict(orient="records")
    assert full["verdict_gates"] == res.verdict.to_dict()["verdict_gates"]
    # WindowResult.cfg: the stored configuration itself; rebuilt from the params for a result without it
    from optimizer.study.space import params_to_config
    spec = wf["spec"]
    assert w0.cfg(spec) is w0.config
    assert replace(w0, config=None).cfg(spec) == params_to_config(w0.params, spec) == w0.config


def _check_walkforward_dir_and_arguments(wf):
    tmp_path = wf["out"]
    assert wfmod.walkforward_dir(tmp_path, "s") == tmp_path / "walkforward" / "s"
    assert wfmod.walkforward_dir(tmp_path, "s", final=True) == tmp_path / "walkforward" / "s-final"
    with pytest.raises(ParameterError, match=r"^jobs must be >= 1, got jobs=0$"):
        wfmod.run_walkforward(wf["spec"], "x", jobs=0)
    with pytest.raises(ParameterError, match=r"^jobs must be >= 1, got jobs=0$"):
        wfmod.run_walkforward_worker(wf["spec"], "x", jobs=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "load_study_data", lambda s, db: (wf["panel"], RESERVE))
        with pytest.raises(ParameterError, match=r"jobs must be 1 with storage sqlite:///:memory:.*got jobs=2$"):
            wfmod.run_walkforward(wf["spec"], "x", "sqlite:///:memory:", jobs=2)
    with pytest.raises(ParameterError, match="walkforward worker needs a storage with heartbeats"):
        wfmod.run_walkforward_worker(wf["spec"], "x", "journal:/nonexistent/j.log")
    assert wfmod._claimable("sqlite:///a.db") and wfmod._claimable("postgresql://h/db")
    assert not any(wfmod._claimable(u) for u in ("journal:x.log", "sqlite:///:memory:", "sqlite://"))


def test_reserve_record_only_when_final(monkeypatch):
    calls = []
    monkeypatch.setattr(wfmod, "record_opening", lambda *a: calls.append(a) or ["earlier"])
    monkeypatch.setattr(wfmod, "opening_warning", lambda start, earlier: f"opened {start} {earlier}")
    spec = parse_spec(SPEC)
    assert wfmod._reserve_record("db", spec, "2024-06-01", False, "2024-07-01") == [] and calls == []
    assert wfmod._reserve_record("db", spec, None, True, "2024-07-01") == [] and calls == []
    assert wfmod._reserve_record("db", spec, "2024-06-01", True, "2024-07-01") == ["opened 2024-06-01 ['earlier']"]
    assert calls == [("db", "2024-06-01", "walkforward --final", "wfkill", "2024-07-01")]
    monkeypatch.setattr(wfmod, "opening_warning", lambda start, earlier: None)
    assert wfmod._reserve_record("db", spec, "2024-06-01", True, "2024-07-01") == []


def test_window_dsr_reads_the_train_span_with_its_mask_and_needs_three_trades():
    """A stub window: the winner's in-sample run is asked for [first fold start, hi) with the study's entry mask
    (its costs are the configuration's, which the run carries; the benchmark takes none); 3 excess returns are
    enough, 2 are not; a ParameterError of the DSR is the reason given."""
    from types import SimpleNamespace as NS
    calls = []

    def data_with(ex):
        bench = NS(excess=lambda trades, span: calls.append(("excess", trades, span)) or np.array(ex))
        ev = NS(run=lambda cfg, span, entry_ok=None: calls.append(("run", span, entry_ok)) or NS(trades="T"),
                bench=bench)
        return NS(folds=[NS(test_start=7)], hi=40, entry_ok="MASK", evaluator=ev)

    cfg = NS(costs="COSTS")
    d, why = wfmod._window_dsr(data_with([0.01, 0.03, -0.01]), cfg, np.array([0.1, 0.2, np.nan]), 4)
    assert why is None and d == deflated_sharpe_from_study(np.array([0.01, 0.03, -0.01]), np.array([0.1, 0.2]), 4).dsr
    assert calls == [("run", Span(7, 40, 40), "MASK"), ("excess", "T", Span(7, 40, 40))]
    d, why = wfmod._window_dsr(data_with([0.01, 0.03]), cfg, np.array([0.1, 0.2]), 4)
    assert math.isnan(d) and why == "2 in-sample trade(s) and 2 finite trial Sharpe ratio(s); DSR needs >= 3 and >= 2"
    d, why = wfmod._window_dsr(data_with([0.01, 0.02, np.inf]), cfg, np.array([0.1, 0.2]), 4)  # refused input
    with pytest.raises(ParameterError) as e:
        deflated_sharpe_from_study(np.array([0.01, 0.02, np.inf]), np.array([0.1, 0.2]), 4)
    assert math.isnan(d) and why == str(e.value)
    d, why = wfmod._window_dsr(data_with([0.02, 0.02, 0.02]), cfg, np.array([0.1, 0.2]), 4)  # constant excess
    assert math.isnan(d) and why == ("the in-sample winner's 3 trade excess returns are all +0.02 (zero dispersion): "
                                     "no Sharpe ratio to deflate")


def test_tiny_walkforward(wf):
    """Every check of the run in ONE test: mutmut attributes the functions a module fixture runs to the first test
    that requested it, so checks split over several tests would not all run against a mutant of the walk-forward."""
    _check_windows_are_placed_by_hand_and_end_at_the_reserve(wf)
    _check_each_study_sees_its_train_span_only(wf)
    _check_oos_evaluation_is_the_test_window_plus_purge_capped_at_the_reserve(wf)
    _check_in_reserve_flag_and_final_limit(wf)
    _check_dsr_counts_every_distinct_configuration_tried(wf)
    _check_window_result_passes_its_settings_and_figures_on(wf)
    _check_pbo_and_spa_columns(wf)
    _check_a_completed_trial_without_metrics_has_no_sharpe(wf)
    _check_window_dsr_needs_three_trades_and_two_sharpes(wf)
    _check_stitched_trades_excess_and_windows(wf)
    _check_daily_runs_to_the_last_exit_when_it_is_later(wf)
    _check_statistics_the_verdict_reads(wf)
    _check_verdict_inputs(wf)
    _check_tables(wf)
    _check_save_and_load_round_trip(wf)
    _check_to_dict_cleans_non_finite_values(wf)
    _check_walkforward_dir_and_arguments(wf)


# ------------------------------------------------------------------------------------------------ more seams


def _robust_reference(trials: list, top_k: int):
    """select_params(how="robust") from its docstring, written apart: numeric params scaled to [0, 1] by their
    range (a flat one by 1), a categorical / conditional param that differs counts 1; each of the top_k trials is
    scored by the median value of its m = max(3, n // 10) nearest trials (itself included, ties by rank); the best
    median wins, the earlier trial on ties."""
    ranked = sorted([t for t in trials if t.value is not None], key=lambda t: (-t.value, t.number))
    n = len(ranked)
    if n < 3:
        return ranked[0]
    keys = sorted({k for t in ranked for k in t.params})
    isnum = lambda v: type(v) in (int, float)  # noqa: E731 - bool is not a number here
    num = [k for k in keys if all(isnum(t.params.get(k)) for t in ranked)]
    lo = {k: min(t.params[k] for t in ranked) for k in num}
    rng = {k: (max(t.params[k] for t in ranked) - lo[k]) or 1.0 for k in num}
    m = max(3, n // 10)
    best, best_score = None, None
    for i in range(min(top_k, n)):
        a = ranked[i]
        dist = []
        for j, b in enumerate(ranked):
            d = sum(abs(a.params[k] - b.params[k]) / rng[k] for k in num)
            d += sum(str(a.params.get(k)) != str(b.params.get(k)) for k in keys if k not in num)
            dist.append((d, j))
        near = [ranked[j].value for _, j in sorted(dist)[:m]]
        score = float(np.median(near))
        if best_score is None or score > best_score:
            best, best_score = a, score
    return best


def test_select_params_robust_equals_a_reference_on_random_studies():
    D = optuna.distributions
    dists = {"x": D.FloatDistribution(0.0, 1000.0), "k": D.IntDistribution(1, 9), "c": D.CategoricalDistribution(["p", "q"]),
             "b": D.CategoricalDistribution([True, False])}
    differs = 0
    for seed in range(24):
        rng = np.random.default_rng(seed)
        n = int(rng.choice([3, 4, 12, 31, 40, 44]))
        st = optuna.create_study(direction="maximize")
        for _ in range(n):
            params = {"x": float(rng.choice([0.0, 10.0, 500.0, 990.0]) + rng.integers(0, 3)), "k": int(rng.integers(1, 10)),
                      "c": str(rng.choice(["p", "q"])), "b": bool(rng.random() < 0.5)}
            if rng.random() < 0.3:
                del params["c"]  # conditional: absent is its own value
            st.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                   value=float(rng.integers(0, 6))))
        for k in (1, 2, 5, 8):
            got = wfmod.select_params(st, "robust", top_k=k)
            assert got.number == _robust_reference(st.trials, k).number, (seed, n, k)
            differs += got.number != wfmod.select_params(st, "best").number
        assert wfmod.select_params(st).number == wfmod.select_params(st, "best").number == st.best_trial.number
    assert differs >= 10  # the robust rule is exercised, not only the best trial
    st = optuna.create_study()
    st.add_trial(optuna.trial.create_trial(params={}, distributions={}, state=optuna.trial.TrialState.PRUNED))
    with pytest.raises(DataError, match=r"^study '.*' has no completed trial to select from \(1 pruned, 0 failed of 1\)$"):
        wfmod.select_params(st)


def test_select_params_of_a_multi_objective_window_study_is_the_pareto_trial_best_on_the_first_objective():
    """A multi-objective spec (studies/multiobjective.toml) walked forward: each window's winner is chosen as
    ``study best`` chooses (the Pareto front ranked by the first objective); robust ranks neighbourhoods by the first
    objective. Before: ``study.direction`` raised RuntimeError, a traceback out of ``accumopt walkforward``."""
    D = optuna.distributions
    st = optuna.create_study(directions=["maximize", "minimize"])
    # every trial on the Pareto front (more of the first objective costs more of the second); 0 (x 10) is best on the
    # first objective but its neighbour 1 (x 9) is poor; 2..5 (x 1..4) are a plateau
    for x, v in ((10.0, (0.95, 5.0)), (9.0, (0.0, 0.5)), (1.0, (0.5, 4.0)), (2.0, (0.45, 3.0)), (3.0, (0.4, 2.0)),
                 (4.0, (0.35, 1.5))):
        st.add_trial(optuna.trial.create_trial(params={"x": x}, distributions={"x": D.FloatDistribution(0, 10)},
                                               values=list(v)))
    assert len(st.best_trials) == 6
    assert wfmod.select_params(st, "best").number == 0
    # robust, top 3 by the first objective, m = 3 nearest in x: trial 0 -> 0, 1, 5: median 0.35; trial 2 -> 2, 3, 4:
    # 0.45; trial 3 -> 3, 2, 4: 0.45 (the earlier kept)
    assert wfmod.select_params(st, "robust", top_k=3).number == 2
    st_min = optuna.create_study(directions=["minimize", "maximize"])
    for x, v in ((1.0, (0.5, 3.0)), (2.0, (0.1, 1.0))):
        st_min.add_trial(optuna.trial.create_trial(params={"x": x}, distributions={"x": D.FloatDistribution(0, 10)},
                                                   values=list(v)))
    assert wfmod.select_params(st_min, "best").number == 1  # the first objective minimized


def test_decide_is_the_verdict_of_its_inputs(monkeypatch):
    from optimizer.validate.verdict import Power, verdict
    inf = {"mean_per_trade": 0.004, "mde_per_trade": 0.003, "mde_per_year": 0.2, "alpha": 0.0228, "power": 0.8,
           "n_trades": 40, "n_days": 90, "n_eff": 30.5, "t": 2.5}
    stats = {"inference": inf, "dsr": 0.9, "spa": {"p": 0.04}, "psr": 0.97, "pbo": 0.3, "n_trials_tried": 12,
             "n_configs": 10}
    power = Power(0.003, 0.2, 0.0228, 0.8, 40, 90, 30.5)
    note = "in-sample winners' median DSR 0.90, SPA p 0.04 over 12 trials tried (10 distinct configurations)"
    want = verdict(0.004, 2.5, 0.97, 0.3, 40, sharpe="psr", t_kind="hac", power=power, note=note, spa_p=0.04,
                   spa_max=None)
    assert wfmod._decide(stats) == want
    inf2 = dict(inf, mean_per_trade=float("nan"))  # no OOS trade: no mean, shown n/a, not a measured +0.00%
    got = wfmod._decide(dict(stats, inference=inf2))
    assert got.to_dict() == verdict(float("nan"), 2.5, 0.97, 0.3, 40, sharpe="psr", t_kind="hac", power=power,
                                    note=note, spa_p=0.04, spa_max=None).to_dict()
    assert "n/a/trade" in got.line and "+0.00%" not in got.line and not got.gate("excess_mean").passed
    assert got.to_dict()["verdict_gates"][0]["value"] is None
    monkeypatch.setattr(wfmod, "SPA_GATE", 0.05)  # SPA gates: it leaves the note
    v = wfmod._decide(stats)
    assert v == verdict(0.004, 2.5, 0.97, 0.3, 40, sharpe="psr", t_kind="hac", power=power, spa_p=0.04, spa_max=0.05,
                        note="in-sample winners' median DSR 0.90 over 12 trials tried (10 distinct configurations)")


def test_setup_reads_the_spec_and_the_store_it_is_given():
    spec = parse_spec(SPEC.replace('unit = "sessions"', 'unit = "sessions"\npurge = 7\nstep = 30\nanchored = true')
                      .replace("[run]\n", '[run]\nstorage = "sqlite:///:memory:"\n'))
    p = _panel(seed=3, T=T, N=N)
    got = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "load_study_data", lambda s, db: got.append((s, db)) or (p, RESERVE))
        ctx, windows, reserve = wfmod._setup(spec, "the.duckdb", None, False, None)
    assert got == [(spec, "the.duckdb")] and ctx.storage_url == "sqlite:///:memory:" and ctx.purge == 7
    # anchored: every train window starts at 0; step 30; purge 7 before each test window
    assert [tuple(vars(w).values()) for w in windows] == [(0, 0, 53, 60, 80), (1, 0, 83, 90, 110)]


def test_oos_metrics_and_concat_of_parts(wf):
    from optimizer.engine.metrics import run_metrics
    res = wf["res"]
    p = wf["panel"].slice(0, RESERVE)
    trades, excess, span = wfmod._stitch(res.windows, RESERVE)
    oos = wfmod._oos_metrics(res.windows, p, trades, excess, span)
    want = run_metrics(trades, p, span, sum(w.oos_metrics["total_signals"] for w in res.windows))
    want["avg_excess_return"] = float(excess.mean())  # the windows' own matched excess, not the stitched span's
    assert {k: oos[k] for k in want} == want and oos["n_windows"] == 3
    empty = wfmod.concat_trades([])
    w0 = replace(res.windows[0], trades=empty, excess=np.empty(0), oos_metrics=dict(res.windows[0].oos_metrics, total_signals=0))
    assert wfmod._oos_metrics([w0], p, empty, np.empty(0), Span(60, 80, 90))["avg_excess_return"] == 0.0
    for name in ("symbol", "signal_idx", "entry_idx", "exit_idx", "exit_reason"):
        assert getattr(empty, name).shape == (0,) and getattr(empty, name).dtype == np.int64, name
    for name in ("entry_price", "exit_price", "score"):
        assert getattr(empty, name).shape == (0,) and getattr(empty, name).dtype == np.float64, name
    assert empty.cost == 0.0
    np.testing.assert_array_equal(trades.score, np.concatenate([w.trades.score for w in res.windows]))


def test_final_run_opens_the_reserve_and_says_what_it_does_not_use(tmp_path):
    """walkforward --final on the tiny panel with 2 trials per window (--trials over [walkforward] n_trials), a
    [seed_from] study (never used by windows) and a progress bar: the store it is given is read, the reserve's
    first and the last visible session are recorded in the ledger, the windows past the reserve start are flagged
    and the warnings are raised and kept."""
    spec = parse_spec(SPEC + '[seed_from]\nstudy = "earlier"\n')
    p = _panel(seed=3, T=T, N=N)
    got, opened, bars, consoles = [], [], [], []
    db = tmp_path / "the.duckdb"
    with pytest.MonkeyPatch.context() as mp, pytest.warns(UserWarning) as caught:
        mp.setattr(wfmod, "load_study_data", lambda s, d: got.append((s, d)) or (p, RESERVE))
        mp.setattr(wfmod, "record_opening", lambda *a: opened.append(a) or ["an earlier opening"])
        mp.setattr(wfmod, "opening_warning", lambda start, earlier: f"reserve from {start} opened again: {earlier}")
        mp.setattr(wfmod, "Progress", lambda **kw: consoles.append(kw.get("console")) or _Bar(bars))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        res = wfmod.run_walkforward(spec, db, "sqlite:///:memory:", final=True, progress=True, n_trials=2)
    # one bar over the 4 windows, advanced once per window, stopped at the end
    assert len(bars) == 1 and bars[0].calls == [("start",), ("add_task", "walk-forward windows", 4),
                                                *[("advance", "task")] * 4, ("stop",)]
    assert len(consoles) == 1 and consoles[0].stderr  # drawn on stderr: stdout is the command's report
    assert got == [(spec, db)]
    d = [str(x)[:10] for x in p.dates]
    assert opened == [(db, d[RESERVE], "walkforward --final", "wfkill", d[T - 1])]
    assert [(w.window.test_end, w.in_reserve, w.n_trials_tried) for w in res.windows] == [
        (80, False, 2), (100, False, 2), (120, False, 2), (140, True, 2)]
    seed_msg = ("[seed_from] 'earlier' is not used by walk-forward windows: that study saw sessions after each "
                "window's train end, so its trials would leak the future into the window")
    assert res.final is True and len(res.warnings) == 2 and res.warnings[1] == seed_msg
    assert res.warnings[0] == f"reserve from {d[RESERVE]} opened again: ['an earlier opening']"
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)][-2:] == res.warnings
    last = max(140, int(res.trades["exit_idx"].max()) + 1)  # test sessions 60 .. 140, and on while a trade the
    assert res.stats["n_trials_tried"] == 8 and len(res.equity) == last - 60  # last window opened is held (to 149)


# ------------------------------------------------------------------------------------------------ claimed windows


def _dump(res) -> str:
    return timeless_json(res.to_dict())


def test_claimed_windows_equal_the_single_process_run(wf, tmp_path):
    """The multi-process path in a few seconds, on the tiny panel and a SQLite file: ``--jobs 2`` (this process and
    a forked one claiming windows, the forked one sending its results through a pipe) gives the in-memory
    single-process run of ``wf`` exactly; this process computes only the windows it ran itself (the others arrive
    through the pipe). Then a ``walkforward worker`` joining the finished run runs no window; a worker with another
    spec or other data is refused; a second coordinator computes every window from its stored study (the windows
    "another machine" ran): the same result again. (tests/test_walkforward_distributed.py: the same on the synthetic
    store, PostgreSQL workers and a SIGKILLed worker.)"""
    from optimizer.errors import AccumoptError, SpecError
    from optimizer.study.records import claims_name, read_claim
    from optimizer.study.storage import make_storage
    import os
    import time

    spec, p = wf["spec"], wf["panel"]
    url = f"sqlite:///{tmp_path / 'wf.db'}"
    parent = os.getpid()
    computed, setups = [], []
    real_result, real_work, real_setup = wfmod._window_result, wfmod.work_windows, wfmod._setup
    real_run_study = wfmod.run_study

    def work(claims, windows, run_one, on_pass=None):
        if os.getpid() == parent:  # let the forked process finish a window first: both processes run windows
            t_end = time.monotonic() + 60
            while wfmod.DONE not in claims.states(windows).values() and time.monotonic() < t_end:
                time.sleep(0.02)
        return real_work(claims, windows, run_one, on_pass)

    def result(ctx, w, study, data):
        if os.getpid() == parent:
            computed.append(w.index)
        return real_result(ctx, w, study, data)

    db = tmp_path / "none.duckdb"
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(wfmod, "load_study_data", lambda s, d: (p, RESERVE))
        mp.setattr(wfmod, "run_study", lambda *a, **k: _then_add(real_run_study(*a, **k)))
        mp.setattr(wfmod, "work_windows", work)
        mp.setattr(wfmod, "_window_result", result)
        mp.setattr(wfmod, "_setup", lambda *a: setups.append(a[2:]) or real_setup(*a))
        real_child, started = wfmod._child, tmp_path / "children.txt"

        def child(*a):  # runs in the forked process: leaves a line per forked process
            with open(started, "a") as f:
                f.write(f"{os.getpid()}\n")
            return real_child(*a)

        mp.setattr(wfmod, "_child", child)
        import threading
        thread_errors = []  # the results receiver ends at the pipe's EOF without an error
        mp.setattr(threading, "excepthook", lambda a: thread_errors.append(a.exc_value))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bars = []
            mp.setattr(wfmod, "Progress", lambda **kw: _Bar(bars))
            two = wfmod.run_walkforward(spec, db, url, jobs=2, progress=True)
        # the claimed windows' bar: set to the windows done after each pass of the claims, 3 of 3 at the end
        calls = bars[0].calls
        assert len(bars) == 1 and calls[:2] == [("start",), ("add_task", "walk-forward windows", 3)]
        assert calls[-2:] == [("update", "task", 3), ("stop",)]
        done = [c[2] for c in calls[2:-1]]
        assert all(c[:2] == ("update", "task") for c in calls[2:-1]) and done == sorted(done) and done[0] >= 1
        assert not [w for w in caught if "worker process" in str(w.message)]  # the forked process ended well
        assert thread_errors == []
        assert len(started.read_text().split()) == 1  # --jobs 2: this process and ONE forked one
        assert _dump(two) == _dump(wf["res"]) and two.verdict.line == wf["res"].verdict.line
        st = make_storage(url, heartbeat=False)
        claims = optuna.load_study(study_name=claims_name("wfkill"), storage=st).get_trials(deepcopy=False)
        done = [read_claim(t) for t in claims if t.state == optuna.trial.TrialState.COMPLETE]
        names = [w.study_name for w in two.windows]
        assert sorted(c["window"] for c in done) == sorted(names)
        mine = sorted(names.index(c["window"]) for c in done if c["worker"].endswith(f":{parent}"))
        assert len(mine) < 3 and computed == mine  # the forked process's windows came through the pipe
        for n in names:  # every window's study: the 4 trials of [walkforward] n_trials + the failed + the pruned one
            assert len(optuna.load_study(study_name=n, storage=st).trials) == 6
        # a worker joining the finished run: the run's settings (final, trials per window), no window left to run
        assert wfmod.run_walkforward_worker(spec, db, url, wait=0.0) == []
        assert setups[-1] == (url, False, 4)
        other = parse_spec(SPEC.replace("sell_threshold = 40", "sell_threshold = 35"))
        with pytest.raises(SpecError, match=rf"started from a different spec \(hash {spec.spec_hash}, this spec "
                                            rf"{other.spec_hash}\); pass the same spec file"):
            wfmod.run_walkforward_worker(other, db, url, wait=0.0)
        mp.setattr(wfmod, "load_study_data", lambda s, d: (_panel(seed=3, T=130, N=N), 100))
        with pytest.raises(DataError, match=r"gives other walk-forward windows than the coordinator's \(2 vs 3; first "
                                            r"\['wfkill-wf00-.*'\] vs \['wfkill-wf00-.*'\]\): every worker needs"):
            wfmod.run_walkforward_worker(spec, db, url, wait=0.0)
        with pytest.raises(AccumoptError, match="no walk-forward of 'wfkill' to join"):
            wfmod.run_walkforward_worker(spec, db, f"sqlite:///{tmp_path / 'empty.db'}", wait=0.0)
        mp.setattr(wfmod, "load_study_data", lambda s, d: (p, RESERVE))
        computed.clear()
        # every window done: each computed from its stored study; a forked process that fails is reported
        mp.setattr(wfmod, "_child", lambda *a: os._exit(3))
        with pytest.warns(UserWarning, match=r"^1 walk-forward worker process\(es\) ended with exit codes \[3\]; their "
                                             r"windows were taken over$"):
            again = wfmod.run_walkforward(spec, db, url, jobs=2)
        assert computed == [0, 1, 2] and _dump(again) == _dump(wf["res"])
        # the coordinator fails: its forked process is interrupted (after its running trial), not left to finish
        mp.undo()
        mp.setattr(wfmod, "load_study_data", lambda s, d: (p, RESERVE))

        def boom(claims, windows, run_one, on_pass=None):
            if os.getpid() == parent:
                raise RuntimeError("the coordinator failed")
            return real_work(claims, windows, run_one, on_pass)

        mp.setattr(wfmod, "work_windows", boom)
        url2 = f"sqlite:///{tmp_path / 'failed.db'}"
        # SIGINT ignored, as in a process started with nohup or in the background of a script (and mutmut's
        # workers): the forked process must still stop when the coordinator fails (_child restores Python's handler)
        import signal
        sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            with pytest.raises(RuntimeError, match="the coordinator failed"):
                wfmod.run_walkforward(spec, db, url2, jobs=2)
        finally:
            signal.signal(signal.SIGINT, sigint)
        st2 = make_storage(url2, heartbeat=False)
        states = [t.state for t in optuna.load_study(study_name=claims_name("wfkill"), storage=st2).trials]
        assert states.count(optuna.trial.TrialState.COMPLETE) < 3 and optuna.trial.TrialState.RUNNING not in states
        # a forked process's body, run here (mutmut sees no call made in a forked process): it claims and runs
        # every window of a fresh run, sends each result through its pipe, then closes it
        mp.setattr(wfmod, "work_windows", real_work)
        mp.setattr(wfmod, "run_study", lambda *a, **k: _then_add(real_run_study(*a, **k)))
        url3 = f"sqlite:///{tmp_path / 'child.db'}"
        ctx3, windows3, _ = wfmod._setup(spec, db, url3, False, None)
        run3 = {"spec_hash": spec.spec_hash, "n_trials": 4, "final": False, "windows": names}

        class Pipe:
            def __init__(self):
                self.sent, self.closed = [], False

            def send(self, obj):
                assert not self.closed
                self.sent.append(obj)

            def close(self):
                self.closed = True

        # _child is a forked process's body: it installs its own SIGINT handler (run.worker_stop). Run here, that
        # handler must not outlive the test: a later test in this process that interrupts itself (test_ingest_pipeline's
        # Ctrl-C test, _thread.interrupt_main) would set a stale flag instead of raising KeyboardInterrupt
        handler = signal.getsignal(signal.SIGINT)
        try:
            pipe = Pipe()
            wfmod._child(ctx3, {wfmod._window_name(ctx3, w): w for w in windows3}, run3, pipe)
            assert pipe.closed and [n for n, _ in pipe.sent] == names
            # each window's own result (its run started flat); the coordinator makes them one book (``_book``)
            sent = wfmod._book([r for _, r in pipe.sent], functools.partial(wfmod._book_window, ctx3), N)
            for r, w in zip(sent, wf["res"].windows):
                assert (r.params, r.oos_metrics, r.n_trials_tried, r.n_configs) == (w.params, w.oos_metrics, 6, w.n_configs)
            wfmod._child(ctx3, {wfmod._window_name(ctx3, w): w for w in windows3}, run3, None)  # every window done
            # a worker's forked process (no pipe) runs a window's study and computes no result to send
            url4 = f"sqlite:///{tmp_path / 'worker.db'}"
            ctx4, windows4, _ = wfmod._setup(spec, db, url4, False, None)
            n0 = wfmod._window_name(ctx4, windows4[0])
            mp.setattr(wfmod, "_window_result", lambda *a: pytest.fail("a worker's forked process computes no result"))
            wfmod._child(ctx4, {n0: windows4[0]}, dict(run3, windows=[n0]), None)
            assert len(optuna.load_study(study_name=n0, storage=make_storage(url4, heartbeat=False)).trials) == 6
        finally:
            signal.signal(signal.SIGINT, handler)


def _then_add(r):
    _add_failed_and_pruned(r.study)
    return r


# ------------------------------------------------------------------------------------------------ statistics' branches


def test_statistics_of_windows_with_skipped_estimates_and_cpcv_paths(wf):
    """``_statistics`` on the tiny run's windows edited by hand: a window whose DSR, one whose PBO and SPA could not
    be estimated (NaN, with the reasons listed per window), cpcv paths on two windows; then every DSR missing,
    no path, and a zero in-sample mean (no degradation ratio). Figures by hand from the windows."""
    res, spec = wf["res"], wf["spec"]
    ctx = _ctx(wf, False)[0]
    p = ctx.panel.slice(0, ctx.limit)
    ws = res.windows
    trades, excess, span = wfmod._stitch(ws, ctx.limit)
    daily = wfmod._daily(p, ws, trades, excess)
    eq = wfmod._equity(p, trades, daily)
    ev = Evaluator(p, min_periods=spec.data.min_periods)
    from optimizer.validate.stats import dependent_inference
    from optimizer.validate.verdict import T_MIN, verdict_alpha
    js = lambda d: json.dumps(d, sort_keys=True, default=str)  # noqa: E731 - NaN compares equal as text
    s0 = wfmod._statistics(ctx, ws, trades, daily, eq, p, ev, None)
    alpha = verdict_alpha(T_MIN)  # the verdict's t >= 2: one-sided 2.275 %, at 80 % power
    assert s0["inference"]["alpha"] == alpha and daily.n_trades > 0
    assert js(s0["inference"]) == js(dependent_inference(daily, alpha=alpha, power=0.8, seed=0).to_dict())
    mkt = daily_excess(trades, daily.trade_excess, p["close"], daily.start, daily.stop, market_open=p["open"])
    assert js(s0["inference_mkt"]) == js(dependent_inference(mkt, alpha=alpha, power=0.8, seed=0).to_dict())
    none = wfmod.concat_trades([])
    d0 = wfmod._daily(p, ws, none, np.empty(0))
    s1 = wfmod._statistics(ctx, ws, none, d0, wfmod._equity(p, none, d0), p, ev, None)
    assert d0.n_trades == 0 and js(s1["inference_mkt"]) == js(s1["inference"])
    # cost stress: each window's winner at 1x, 2x, 3x ITS costs (20 bp a side: the OOS excess of the one book
    # survives 1x only; 35 bp before the book, whose windows' own runs held more trades),
    # its entries through the regime mask (none allowed: no trade, an excess of 0)
    from optimizer.engine.simulate import Costs
    dear = [replace(w, config=replace(w.config, costs=Costs(0.0, 20.0))) for w in ws]
    s2 = wfmod._statistics(ctx, dear, trades, daily, eq, p, ev, None)
    assert [r["survives"] for r in s2["cost_stress"]] == [True, False, False] and s2["cost_fragile"] is True
    assert s2["cost_stress_wording"] == wfmod.cost_stress_wording(pd.DataFrame(s2["cost_stress"]))
    bare = [replace(w, config=None) for w in ws]  # the winners' configurations rebuilt from params and spec
    assert wfmod._statistics(ctx, bare, trades, daily, eq, p, ev, None)["cost_stress"] == s0["cost_stress"]
    s3 = wfmod._statistics(ctx, ws, trades, daily, eq, p, ev, np.zeros(len(p.dates), dtype=bool))
    assert s3["cost_stress"] == [{"multiplier": k, "avg_excess_return": 0.0, "trades": 0, "survives": False}
                                 for k in (1.0, 2.0, 3.0)] and s3["cost_fragile"] is False
    paths = [{"path_sharpe": [0.5, -0.25, 1.0]}, {"path_sharpe": [-1.0, 2.0, 0.0]}]  # a Sharpe of 0 is no loss
    edited = [replace(ws[0], dsr_in_sample=float("nan"), dsr_skipped="no dsr", cpcv=paths[0]),
              replace(ws[1], pbo=float("nan"), pbo_skipped="no pbo", spa=None, spa_skipped="no spa"),
              replace(ws[2], cpcv=paths[1])]
    cp = replace(ctx, spec=replace(spec, cv=replace(spec.cv, mode="cpcv")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no mean / median of an empty slice
        s = wfmod._statistics(cp, edited, trades, daily, eq, p, ev, None)
    assert s["dsr"] == float(np.median([ws[1].dsr_in_sample, ws[2].dsr_in_sample]))
    assert s["dsr_windows"] == [None, ws[1].dsr_in_sample, ws[2].dsr_in_sample]
    assert s["dsr_skipped"] == ["window 0: no dsr"]
    assert s["pbo_skipped"] == ["window 1: no pbo"] and s["spa_skipped"] == ["window 1: no spa"]
    assert s["pbo_windows"] == [ws[0].pbo, ws[2].pbo] and s["pbo"] == (ws[0].pbo + ws[2].pbo) / 2
    assert s["pbo_method"] == "cpcv"
    assert s["cpcv"] == {"windows": paths, "path_sharpe_median": 0.25, "prob_path_loss": 2 / 6}
    assert s["spa"]["p_windows"] == [ws[0].spa_p, None, ws[2].spa_p]
    assert s["spa"]["p_median"] == (ws[0].spa_p + ws[2].spa_p) / 2
    assert s["spa"]["p"] == wfmod.combine_pvalues([ws[0].spa_p, ws[2].spa_p])
    flat = [replace(w, dsr_in_sample=float("nan"), spa=None, pbo=float("nan"), cpcv=None,
                    is_metrics=dict(w.is_metrics, rank_score=0.0, avg_excess_return=0.0)) for w in ws]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        s = wfmod._statistics(cp, flat, trades, daily, eq, p, ev, None)
    assert math.isnan(s["dsr"]) and s["dsr_windows"] == [None] * 3 and "dsr_skipped" not in s
    assert math.isnan(s["pbo"]) and s["pbo_windows"] == []
    assert s["cpcv"]["windows"] == [] and math.isnan(s["cpcv"]["path_sharpe_median"])
    assert math.isnan(s["cpcv"]["prob_path_loss"])
    assert math.isnan(s["spa"]["p"]) and math.isnan(s["spa"]["p_median"]) and s["spa"]["p_windows"] == [None] * 3
    assert math.isnan(s["degradation"]) and math.isnan(s["degradation_excess"])


def test_window_runner_stops_when_the_claim_is_lost(wf):
    """``_window_runner``'s ``run_one``: with its claim lost (another worker failed it as stale) the window's study
    stops after its running trial, nothing is delivered and it answers False (the window goes back to the pool);
    otherwise it runs the window's trials and delivers the window's result."""
    ctx = _ctx(wf, False)[0]
    w = wf["res"].windows[1]
    delivered, studies = [], []
    real_run_study = wfmod.run_study
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(wfmod, "run_study", lambda *a, **k: studies.append(real_run_study(*a, **k)) or studies[-1])
        run_one = wfmod._window_runner(ctx, {w.study_name: w.window}, lambda n, r: delivered.append((n, r)))
        assert run_one(w.study_name, lambda: True) is False
        assert delivered == [] and len(studies[0].study.trials) == 1
        assert run_one(w.study_name, lambda: False) is True
    assert len(studies[-1].study.trials) == 4 and [n for n, _ in delivered] == [w.study_name]
    r = delivered[0][1]  # the window's own result; in the run, the book's (what the first window's trades held)
    held = np.full(N, -1)
    np.maximum.at(held, wf["res"].windows[0].trades.symbol, wf["res"].windows[0].trades.exit_idx)
    assert r.book is None and w.book is not None
    assert r.params == w.params and wfmod._book_window(ctx, r, held).oos_metrics == w.oos_metrics
    assert r.study_name == w.study_name
    assert wfmod._window_runner(ctx, {w.study_name: w.window})(w.study_name, lambda: False) is True  # no deliver


def test_equity_bootstrap_of_the_oos_account():
    """The block bootstrap of the account's daily returns from 10 days on with a position open on some day (None
    below, or when the account never held a position), seeded (the same figures every run), with its drawdown
    quantiles; the figures those of ``stats.equity_bootstrap(reps=2000, seed=0)``."""
    from optimizer.validate.stats import equity_bootstrap
    r = np.array([0.01, -0.02, 0.015, 0.004, 0.03, -0.01, 0.005, 0.02, -0.005, 0.012, 0.007, -0.03])

    def eq(n, opened=True):
        return pd.DataFrame({"oos_return": r[:n], "n_open": np.full(n, 1 if opened else 0)})

    assert wfmod._equity_bootstrap(eq(9)) is None and wfmod._equity_bootstrap(eq(12, opened=False)) is None
    one = eq(12).assign(n_open=[0] * 11 + [1])
    assert wfmod._equity_bootstrap(one) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # arch's block-length estimate on 10 days (x / 0 inside)
        got = wfmod._equity_bootstrap(eq(10))
        b = equity_bootstrap(r[:10], reps=2000, seed=0)
        assert got == wfmod._equity_bootstrap(eq(10))  # seeded
    assert (got["reps"], got["n_days"], got["block_size"], got["level"]) == (2000, 10, b.block_size, b.level)
    assert got["resamples"] == b.resamples and got["drawdown_percentile"] == b.drawdown_percentile
    for k in ("total_return", "cagr", "max_drawdown", "sharpe"):
        ci = getattr(b, k)
        assert got[k] == {"point": ci.point, "lo": ci.lo, "hi": ci.hi}, k
    q = np.quantile(b.max_drawdowns, [0.5, 0.9, 0.95])
    assert got["drawdown_quantiles"] == {"50%": q[0], "90%": q[1], "95%": q[2]}


def test_window_pbo_over_the_studys_cpcv_splits_and_refusals():
    """With ``[cv] mode = "cpcv"`` the window's PBO runs over the study's own combinatorial purged splits (its
    groups, test groups, purge and embargo; the matrix already starts after the warm-up), with the paths' figures;
    a refused input gives (NaN, the refusal's line, None) in both modes."""
    from types import SimpleNamespace as NS
    from optimizer.study.splits import CombinatorialPurgedCV as CPCV
    from optimizer.validate.stats import cpcv_pbo, probability_of_backtest_overfitting
    M = np.random.default_rng(5).normal(size=(48, 3))
    pb, why, paths = wfmod._window_pbo(NS(cv=CPCV(4, 2, purge=2, embargo=1, warmup=9)), M)
    r = cpcv_pbo(M, CPCV(4, 2, 2, 1))
    assert why is None and pb == r.pbo.pbo
    assert paths == {"n_splits": 6, "n_paths": 3, "path_sharpe_median": r.path_metric_median,
                     "prob_path_loss": r.prob_path_loss, "path_sharpe": list(r.path_metric)}
    assert r.n_splits == 6 and r.n_paths == 3 and all(type(x) is float for x in paths["path_sharpe"])
    assert paths["path_sharpe"] != list(cpcv_pbo(M, CPCV(4, 2, 2, 1, warmup=9)).path_metric)  # no second warm-up
    assert wfmod._window_pbo(NS(cv=CPCV(4, 1, 2, 1)), M)[0] == cpcv_pbo(M, CPCV(4, 1, 2, 1)).pbo.pbo
    # a matrix whose in-sample winners move with the embargo and with the purge: both reach the splits
    M7 = np.random.default_rng(7).normal(size=(48, 3))
    got = wfmod._window_pbo(NS(cv=CPCV(4, 2, purge=2, embargo=1)), M7)[0]
    assert got == cpcv_pbo(M7, CPCV(4, 2, 2, 1)).pbo.pbo == 5 / 6
    assert cpcv_pbo(M7, CPCV(4, 2, 2, 0)).pbo.pbo != got != cpcv_pbo(M7, CPCV(4, 2, 0, 1)).pbo.pbo
    bad = M.copy()
    bad[3, 1] = np.nan
    for data in (NS(cv=CPCV(4, 2, 2, 1)), NS(cv=None)):
        pb, why, paths = wfmod._window_pbo(data, bad)
        with pytest.raises(ParameterError) as e:
            if data.cv is None:
                probability_of_backtest_overfitting(bad, n_blocks=16)
            else:
                cpcv_pbo(bad, data.cv)
        assert math.isnan(pb) and paths is None and why == str(e.value)


def test_segments_of_a_run_without_trades_are_empty_tables(wf):
    """No window traded (or no window at all): the events, per-symbol, per-sector, per-regime and rule tables are
    empty DataFrames (what save_walkforward writes and the report reads), not None and not an error."""
    res, spec = wf["res"], wf["spec"]
    p = wf["panel"].slice(0, RESERVE)
    ev = Evaluator(p, min_periods=spec.data.min_periods)
    none = [replace(w, trades=wfmod.concat_trades([]), excess=np.empty(0)) for w in res.windows]
    for results in (none, []):
        out = wfmod._segments(spec, p, results, Span(60, 120, RESERVE), ev)
        # no column either: save_walkforward writes each as an empty file
        assert len(out) == 5 and all(isinstance(t, pd.DataFrame) and t.shape == (0, 0) for t in out)
    # windows without their stored configuration: rebuilt from the params and the spec, the same events
    bare = [replace(w, config=None) for w in res.windows]
    pd.testing.assert_frame_equal(wfmod._segments(spec, p, bare, Span(60, 120, RESERVE), ev)[0], res.events)


# ------------------------------------------------------------------------------------------------ settings passed on


def test_window_result_of_trials_without_records_rebuilds_the_winner_from_the_spec(wf):
    """A window study whose trials carry no accumopt record (added through Optuna's API, or stored before records):
    the winner's configuration is rebuilt from its params with the spec's fixed values and costs -- the same
    configuration the recorded study ran, so the same OOS evaluation."""
    ctx, spec = _ctx(wf, False)[0], wf["spec"]
    w = wf["res"].windows[0]
    st = _study(wf, w)
    bare = optuna.create_study(direction=st.direction)
    for t in st.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            bare.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = wfmod._window_result(ctx, w.window, bare, wfmod._window_data(ctx, w.window))
    assert read_trial(bare.best_trial).config_record is None
    assert r.config == w.config and r.params == w.params and r.oos_metrics == w.oos_metrics
    assert r.is_metrics == {} and math.isnan(r.dsr_in_sample)  # no record: no metrics, no trial Sharpe


def test_walkforward_without_a_reserve_reads_the_specs_store(tmp_path, monkeypatch):
    """``reserve_fraction = 0`` (the reserve starts past the last session) and no store flag: the store is the
    spec's ``[data] database``, no window is in the reserve and nothing is recorded in the ledger; --final has no
    reserve to open and is refused with its name (it would only have written a ``-final`` copy of the run)."""
    spec = parse_spec(SPEC.replace("reserve_fraction = 0.2", 'reserve_fraction = 0.0\ndatabase = "spec.duckdb"'))
    p = _panel(seed=3, T=100, N=N)
    got, opened = [], []
    monkeypatch.delenv("ACCUMOPT_DB", raising=False)
    monkeypatch.setattr(wfmod, "load_study_data", lambda s, d: got.append(d) or (p, 100))
    monkeypatch.setattr(wfmod, "record_opening", lambda *a: opened.append(a) or [])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        with pytest.raises(ParameterError, match=r"^--final has no reserve to open: \[data\]\.reserve_fraction = 0"):
            wfmod.run_walkforward(spec, None, "sqlite:///:memory:", final=True, n_trials=2)
        assert got == []  # refused before the data is read
        res = wfmod.run_walkforward(spec, None, "sqlite:///:memory:", n_trials=2)
    assert got == [Path("spec.duckdb")] and opened == [] and res.warnings == []
    assert [(w.window.test_end, w.in_reserve) for w in res.windows] == [(80, False), (100, False)]


def test_select_params_robust_default_top_k_and_no_finite_neighbourhood():
    """``robust`` looks at the top 5 trials by default: a plateau ranked 6th is not reached (top_k=6 reaches it);
    when no candidate's neighbourhood has a finite median (-inf values), the best-ranked trial is kept."""
    D = optuna.distributions
    dist = {"x": D.FloatDistribution(0.0, 100.0)}
    st = optuna.create_study(direction="maximize")
    add = lambda x, v: st.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist, value=v))  # noqa: E731
    for i, x in enumerate((0.0, 20.0, 40.0, 60.0, 80.0)):  # five isolated spikes, each beside two zeros
        add(x, 10.0 - i)
        add(x + 1.0, 0.0)
        add(x + 2.0, 0.0)
    for x, v in ((100.0, 5.0), (99.5, 4.9), (99.0, 4.8)):  # the 6th-ranked trial, on a plateau
        add(x, v)
    assert wfmod.select_params(st, "robust").params == {"x": 0.0}  # every top-5 median is 0: the best kept
    assert wfmod.select_params(st, "robust", top_k=5).params == {"x": 0.0}
    assert wfmod.select_params(st, "robust", top_k=6).params == {"x": 100.0}
    st = optuna.create_study(direction="maximize")
    for x, v in ((0.0, 1.0), (50.0, -np.inf), (60.0, -np.inf), (70.0, -np.inf)):
        add(x, v)
    assert wfmod.select_params(st, "robust").number == 0


def test_assemble_passes_the_specs_settings_to_the_statistics_and_segments(wf):
    """``_assemble`` evaluates with the spec's ``min_periods`` and regime filter (the cost stress re-runs the
    winners through them), rebuilds a window's configuration from the spec when it has none (the same events), and
    its OOS figures are run_metrics' plus the stitched ones (the equity curve's Sharpe and drawdown replacing)."""
    res, spec, p = wf["res"], wf["spec"], wf["panel"].slice(0, RESERVE)
    ctx, ws = _ctx(wf, False)[0], wf["res"].windows
    trades, excess, span = wfmod._stitch(ws, RESERVE)
    want = set(wfmod.run_metrics(trades, p, span, 0))
    assert set(res.oos) == want | {"avg_excess_return", "n_windows", "excess_t", "excess_t_iid"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bare = wfmod._assemble(ctx, [replace(w, config=None) for w in ws], False, [])
        pd.testing.assert_frame_equal(bare.events, res.events)
        dark = replace(ctx, spec=replace(spec, data=replace(spec.data, regime="RISK_ON")))  # never risk-on here
        cs = wfmod._assemble(dark, ws, False, []).stats["cost_stress"]
        assert [r["trades"] for r in cs] == [0, 0, 0] and res.stats["cost_stress"][0]["trades"] > 0
        short = replace(ctx, spec=replace(spec, data=replace(spec.data, min_periods=3)))
        r3 = wfmod._assemble(short, ws, False, [])
        ev3 = Evaluator(p, min_periods=3)
        # (the book re-run with min_periods 3: its windows, not ``ws``)
        pd.testing.assert_frame_equal(r3.events, wfmod._segments(short.spec, p, r3.windows, span, ev3)[0])
    assert not r3.events.equals(res.events)  # min_periods 3 changes the features the events show ...
    assert r3.stats["cost_stress"][0]["trades"] != res.stats["cost_stress"][0]["trades"]  # ... and the re-runs


def test_a_worker_joins_a_final_run_with_its_settings(tmp_path, monkeypatch):
    """A ``--final`` coordinator on an RDB storage (one process: its windows through the claims, no fork) registers
    the run's settings; a ``walkforward worker`` joining it takes them (final: the windows of the reserve too; the
    trials per window of ``--trials``), one process by default, and finds every window done. Without flags both
    read the store and the storage the spec names; a worker's store flag wins over the spec's."""
    url = f"sqlite:///{tmp_path / 'final.db'}"
    text = (SPEC.replace("reserve_fraction = 0.2", 'reserve_fraction = 0.2\ndatabase = "spec.duckdb"')
            .replace("[run]\n", f'[run]\nstorage = "{url}"\n'))
    spec, changed = parse_spec(text), parse_spec(text.replace("sell_threshold = 40", "sell_threshold = 35"))
    p = _panel(seed=3, T=100, N=N)
    loads, setups, jobs = [], [], []
    real_setup, real_distributed = wfmod._setup, wfmod._distributed
    for env in ("ACCUMOPT_DB", "ACCUMOPT_STORAGE"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(wfmod, "load_study_data", lambda s, d: loads.append(d) or (p, 80))
    monkeypatch.setattr(wfmod, "record_opening", lambda *a: [])
    monkeypatch.setattr(wfmod, "_setup", lambda *a: setups.append(a[2:]) or real_setup(*a))
    monkeypatch.setattr(wfmod, "_distributed", lambda *a, **k: jobs.append(a[3]) or real_distributed(*a, **k))
    other = tmp_path / "other.duckdb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = wfmod.run_walkforward(spec, None, final=True, n_trials=2)
        assert [w.window.test_end for w in res.windows] == [80, 100]  # without --final: [80]
        assert wfmod.run_walkforward_worker(spec, None, wait=0.0) == []
        assert wfmod.run_walkforward_worker(spec, other, wait=0.0) == []
        with pytest.raises(wfmod.SpecError) as e:
            wfmod.run_walkforward_worker(changed, other, wait=0.0)
        assert str(e.value) == (f"[walkforward] the walk-forward running in {url} was started from a different spec "
                                f"(hash {spec.spec_hash}, this spec {changed.spec_hash}); pass the same spec file")
        assert loads == [Path("spec.duckdb"), Path("spec.duckdb"), other]
        monkeypatch.setattr(wfmod, "load_study_data", lambda s, d: (_panel(seed=3, T=120, N=N), 96))
        with pytest.raises(DataError) as e:  # more sessions: 3 windows
            wfmod.run_walkforward_worker(spec, other, wait=0.0)
    first = res.windows[0].study_name
    assert str(e.value) == (f"the store {other} gives other walk-forward windows than the coordinator's (3 vs 2; first "
                            f"['{first}'] vs ['{first}']): every worker needs the same data")
    assert setups == [(None, True, 2)] + [(url, True, 2)] * 3 and jobs == [1, 1, 1]  # the refusals run no window


# ------------------------------------------------------------------------------------- the account's helpers


def _tr(entry, exit_, ep, xp, reasons=None, cost=0.0, weight=None, mult=None, absolute=False, symbol=None):
    """Trades from lists (reasons: names of EXIT_REASONS, 'fixed' by default)."""
    from optimizer.engine.simulate import EXIT_REASONS
    e, x = np.asarray(entry, np.int64), np.asarray(exit_, np.int64)
    sym = np.arange(e.size, dtype=np.int64) if symbol is None else np.asarray(symbol, np.int64)
    r = np.array([EXIT_REASONS.index(s) for s in (reasons or ["fixed"] * e.size)], dtype=np.int64)
    f = lambda v: None if v is None else np.asarray(v, dtype=float)  # noqa: E731
    return Trades(sym, e - 1, e, x, np.asarray(ep, float), np.asarray(xp, float), r, np.arange(e.size, dtype=float),
                  cost=cost, weight=f(weight), mult=f(mult), absolute=absolute)


@pytest.mark.filterwarnings("error")  # cash days and weight-0 days divide 0 / 0 silently
def test_exposure_by_hand():
    """``_exposure`` over rows [10, 17) (n = 7), by hand: a trade entered before the span counts from its first row,
    one exiting after it up to its last row, trades wholly before or after it not at all (nor out of bounds); equal
    weights: 1 whenever a position is open; relative sizing sum w*m / sum w, absolute sizing min(1, sum w*m); a day
    whose positions all weigh 0 is invested at exposure 0; row 12 is a cash day."""
    #        A: rows 0-1   B: 3-5   C: before   D: after   E: row 3   F: row 6
    entry, exit_ = [8, 13, 3, 18, 13, 16], [11, 15, 7, 19, 13, 16]
    ones = np.ones(6)
    inv = np.array([1, 1, 0, 1, 1, 1, 1], dtype=bool)

    expo, invested = wfmod._exposure(_tr(entry, exit_, ones, ones), 10, 7)
    np.testing.assert_array_equal(invested, inv)
    np.testing.assert_array_equal(expo, inv.astype(float))
    assert expo.dtype == np.float64 and invested.dtype == bool and expo.shape == invested.shape == (7,)

    w, m = [1.0, 2.0, 7.0, 9.0, 4.0, 0.0], [0.5, 1.0, 3.0, 3.0, 0.25, 1.0]
    expo, invested = wfmod._exposure(_tr(entry, exit_, ones, ones, weight=w, mult=m), 10, 7)
    np.testing.assert_array_equal(invested, inv)
    # row 3: B and E: (2*1 + 4*0.25) / (2 + 4) = 0.5; row 6: F alone, weight 0 -> 0
    np.testing.assert_allclose(expo, [0.5, 0.5, 0.0, 0.5, 1.0, 1.0, 0.0], rtol=0, atol=1e-15)
    # relative weights: only their ratios count (sums below 1 are not rescaled); rows 0-5 (row 6 holds only the
    # weight-0 trade, which relative sizing never gives: equal 1, atr close / ATR14)
    tenth = [v / 10 for v in w]
    expo, _ = wfmod._exposure(_tr(entry, exit_, ones, ones, weight=tenth, mult=m), 10, 7)
    np.testing.assert_allclose(expo[:6], [0.5, 0.5, 0.0, 0.5, 1.0, 1.0], rtol=0, atol=1e-15)
    expo, _ = wfmod._exposure(_tr(entry, exit_, ones, ones, weight=w), 10, 7)  # no multiplier: weighted share 1
    np.testing.assert_allclose(expo, [1, 1, 0, 1, 1, 1, 0], rtol=0, atol=1e-15)
    expo, invested = wfmod._exposure(_tr(entry, exit_, ones, ones, mult=m), 10, 7)  # equal weights: the mean m
    np.testing.assert_array_equal(invested, inv)
    np.testing.assert_allclose(expo, [0.5, 0.5, 0.0, 0.625, 1.0, 1.0, 1.0], rtol=0, atol=1e-15)

    wa, ma = [0.6, 0.6, 0.9, 0.9, 0.8, 0.0], [1.0, 1.0, 2.0, 2.0, 0.5, 1.0]
    expo, invested = wfmod._exposure(_tr(entry, exit_, ones, ones, weight=wa, mult=ma, absolute=True), 10, 7)
    np.testing.assert_array_equal(invested, inv)
    # row 3: 0.6 + 0.8*0.5 = 1.0 -> 1.0 / max(1.0, 1); rows 0-1: 0.6 / max(0.6, 1); row 6: 0 / max(0, 1)
    np.testing.assert_allclose(expo, [0.6, 0.6, 0.0, 1.0, 0.6, 0.6, 0.0], rtol=0, atol=1e-15)
    wb = [0.6, 0.6, 0.9, 0.9, 1.6, 0.0]  # row 3: 0.6 + 1.6*0.5 = 1.4 -> capped at 1
    expo, _ = wfmod._exposure(_tr(entry, exit_, ones, ones, weight=wb, mult=ma, absolute=True), 10, 7)
    np.testing.assert_allclose(expo, [0.6, 0.6, 0.0, 1.0, 0.6, 0.6, 0.0], rtol=0, atol=1e-15)
    wc = [0.6, 0.3, 0.9, 0.9, 0.5, 0.0]  # row 3: 0.3 + 0.25 = 0.55 (the sum of w*m, not of w = 0.8)
    expo, _ = wfmod._exposure(_tr(entry, exit_, ones, ones, weight=wc, mult=ma, absolute=True), 10, 7)
    np.testing.assert_allclose(expo, [0.6, 0.6, 0.0, 0.55, 0.3, 0.3, 0.0], rtol=0, atol=1e-15)
    # the running sums end at exactly 0 weight but -4.4e-16 of w*m on the cash row 3: no division warning
    wr, mr = [0.17, 1.61, 1.41], [0.16, 0.68, 0.87]
    expo, invested = wfmod._exposure(_tr([10, 10, 11], [11, 12, 12], ones[:3], ones[:3], weight=wr, mult=mr), 10, 4)
    np.testing.assert_array_equal(invested, [True, True, True, False])
    a0, a1, a2 = 0.17 * 0.16, 1.61 * 0.68, 1.41 * 0.87
    np.testing.assert_allclose(expo, [(a0 + a1) / 1.78, (a0 + a1 + a2) / 3.19, (a1 + a2) / 3.02, 0.0], rtol=1e-12)
    e0, i0 = wfmod._exposure(_tr([], [], [], []), 10, 3)  # no trade: cash throughout
    np.testing.assert_array_equal(e0, np.zeros(3))
    np.testing.assert_array_equal(i0, np.zeros(3, bool))


@pytest.mark.filterwarnings("error")  # cash days and weight-0 days divide 0 / 0 silently
def test_sized_bench_by_hand():
    """``_sized_bench`` over rows [10, 16): each closed trade's benchmark expectation (net return minus excess)
    spread evenly over its held rows, weighted as the account weighs it; the open trade (weight 5, mult 2) is not
    in it. T0 rows 10-12: net 0.10, excess 0.04 -> 0.02 a row; T1 rows 11-14: net -0.10, excess -0.02 -> -0.02 a
    row. Without sizing: the equal-weight mean ``daily.bench_mean``."""
    C = np.full((20, 3), 100.0)
    entry, exit_, ep, xp = [10, 11, 13], [12, 14, 15], [100.0, 50.0, 10.0], [110.0, 45.0, 12.0]
    reasons = ["fixed", "max_days", "open_at_end"]
    ex = np.array([0.04, -0.02])

    def bench(**k):
        tr = _tr(entry, exit_, ep, xp, reasons, **k)
        return wfmod._sized_bench(tr, daily_excess(tr, ex, C, 10, 16)), daily_excess(tr, ex, C, 10, 16)

    b, d = bench()
    np.testing.assert_allclose(b, [0.02, 0.0, 0.0, -0.02, -0.02, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(b, d.bench_mean)
    b, _ = bench(weight=[1.0, 3.0, 5.0], mult=[1.0, 0.5, 2.0])  # relative: sum w*m*b / sum w
    # row 11-12: (1*0.02 - 1.5*0.02) / (1 + 3) = -0.0025; rows 13-14: -1.5*0.02 / 3 = -0.01; row 15: cash
    np.testing.assert_allclose(b, [0.02, -0.0025, -0.0025, -0.01, -0.01, 0.0], rtol=0, atol=1e-15)
    b, _ = bench(weight=[0.1, 0.3, 0.5], mult=[1.0, 0.5, 2.0])  # relative weights: only their ratios count
    np.testing.assert_allclose(b, [0.02, -0.0025, -0.0025, -0.01, -0.01, 0.0], rtol=0, atol=1e-15)
    b, _ = bench(weight=[1.0, 3.0, 5.0])  # weights only: rows 11-12 (0.02 - 3*0.02) / 4
    np.testing.assert_allclose(b, [0.02, -0.01, -0.01, -0.02, -0.02, 0.0], rtol=0, atol=1e-15)
    b, _ = bench(mult=[1.0, 0.5, 2.0])  # multipliers only: rows 11-12 (0.02 - 0.5*0.02) / 2
    np.testing.assert_allclose(b, [0.02, 0.005, 0.005, -0.01, -0.01, 0.0], rtol=0, atol=1e-15)
    b, _ = bench(weight=[0.4, 0.8, 5.0], mult=[1.0, 1.5, 2.0], absolute=True)  # sum w*m*b / max(1, sum w*m)
    # row 10: 0.4*0.02 / 1 = 0.008; rows 11-12: (0.008 - 1.2*0.02) / 1.6 = -0.01; rows 13-14: -0.024 / 1.2
    np.testing.assert_allclose(b, [0.008, -0.01, -0.01, -0.02, -0.02, 0.0], rtol=0, atol=1e-15)
    b, _ = bench(weight=[0.5, 0.25, 5.0], mult=[1.0, 1.0, 2.0], absolute=True)  # below 1: not rescaled
    np.testing.assert_allclose(b, [0.01, 0.005, 0.005, -0.005, -0.005, 0.0], rtol=0, atol=1e-15)
    b, _ = bench(absolute=True, weight=[1.0, 1.0, 1.0])  # absolute at weight 1: the mean again
    np.testing.assert_allclose(b, [0.02, 0.0, 0.0, -0.02, -0.02, 0.0], rtol=0, atol=1e-15)


def test_account_trades_closes_a_window_left_open_trade_at_its_data_end():
    """A trade its window left open (``open_at_end``) before the stitched series' last row (stop - 1) leaves the
    account there: closed ('max_days') at the fill close / (1 - cost), whose net return is the close's own; one
    open at the last row stays open; closed trades and every other field are kept; the input is not changed."""
    from optimizer.engine.simulate import EXIT_REASONS
    cost, stop = 0.01, 30
    xp = [99.0, 80.0, 120.0, 60.0]
    reasons = ["open_at_end", "open_at_end", "time_stop", "open_at_end"]
    tr = _tr([20, 25, 3, 26], [28, 29, 8, 27], [90.0, 70.0, 100.0, 50.0], xp, reasons, cost=cost,
             weight=[0.5, 0.25, 0.3, 0.2], mult=[1.0, 0.5, 2.0, 1.5], absolute=True, symbol=[4, 2, 1, 0])
    got = wfmod._account_trades(tr, stop)
    i = EXIT_REASONS.index
    np.testing.assert_array_equal(got.exit_reason, [i("max_days"), i("open_at_end"), i("time_stop"), i("max_days")])
    np.testing.assert_array_equal(got.open_at_end, [False, True, False, False])
    np.testing.assert_allclose(got.exit_price, [99.0 / 0.99, 80.0, 120.0, 60.0 / 0.99], rtol=1e-15)
    np.testing.assert_allclose(got.net_ret[[0, 3]], [99.0 / (90.0 * 1.01) - 1, 60.0 / (50.0 * 1.01) - 1], rtol=1e-12)
    for f in ("symbol", "signal_idx", "entry_idx", "exit_idx", "entry_price", "score", "weight", "mult"):
        np.testing.assert_array_equal(getattr(got, f), getattr(tr, f))
    assert (got.cost, got.absolute) == (cost, True)
    np.testing.assert_array_equal(tr.exit_price, xp)  # the stitched record is untouched
    np.testing.assert_array_equal(tr.exit_reason, [i(r) for r in reasons])
    # stop 29: the trade open at row 28 = stop - 1 stays open, the one at row 27 = stop - 2 leaves the account
    assert wfmod._account_trades(tr, 29).exit_reason.tolist() == [i("open_at_end"), i("open_at_end"), i("time_stop"),
                                                                   i("max_days")]
    assert wfmod._account_trades(tr, 28) is tr  # every open trade is held to the last row (27) or past it
    rel = _tr([20], [28], [90.0], [99.0], ["open_at_end"], cost=cost)
    g = wfmod._account_trades(rel, stop)
    assert (g.weight, g.mult, g.absolute, g.cost) == (None, None, False, cost)
    assert g.exit_reason.tolist() == [i("max_days")] and g.exit_price[0] == pytest.approx(100.0, rel=1e-15)


# ------------------------------------------------------- [walkforward] step > test: the sessions no window tested


def test_observed_rows_are_the_tested_sessions_and_the_held_ones():
    """``_observed`` over rows [3, 16), by hand. Windows test [2, 5) (clipped at start), [8, 10), [14, 20) (clipped
    at stop) and [0, 2) (wholly before start: nothing). Trades: A rows 1-5 (entered before start: rows 3-5),
    B rows 11-12, C rows 13-25 (open past stop: to stop - 1 = 15), D rows 17-18 and E rows 0-1 (wholly after /
    before the rows: nothing, and no index out of bounds). Rows 6, 7 and 10 are neither tested nor held."""
    from types import SimpleNamespace

    from optimizer.study.splits import Window
    res = lambda *tests: [SimpleNamespace(window=Window(k, 0, 1, a, b)) for k, (a, b) in enumerate(tests)]  # noqa: E731
    ones = np.ones(5)
    tr = _tr([1, 11, 13, 17, 0], [5, 12, 25, 18, 1], ones, ones, ["fixed", "fixed", "open_at_end", "fixed", "fixed"])
    got = wfmod._observed(res((2, 5), (8, 10), (14, 20), (0, 2)), tr, 3, 16)
    np.testing.assert_array_equal(got, [3, 4, 5, 8, 9, 11, 12, 13, 14, 15])
    assert got.dtype == np.int64
    # the windows alone (no trade): the tested rows; a window of one row at the last row
    none = _tr([], [], [], [])
    np.testing.assert_array_equal(wfmod._observed(res((2, 5), (8, 10), (15, 16)), none, 3, 16), [3, 4, 8, 9, 15])
    # the trades alone fill the gap between two windows: every row observed -> None (the plain series)
    assert wfmod._observed(res((3, 6), (9, 16)), _tr([5], [9], [1.0], [1.0]), 3, 16) is None
    assert wfmod._observed(res((3, 16)), none, 3, 16) is None
    # adjacent windows (one's test end is the next one's test start), then nothing: rows 3-8 only
    np.testing.assert_array_equal(wfmod._observed(res((3, 6), (6, 9)), none, 3, 16), np.arange(3, 9))
    # a trade held on the last row only (entry = exit = stop - 1) and one entering at stop: the first is a day
    np.testing.assert_array_equal(wfmod._observed(res((3, 5)), _tr([15, 16], [15, 16], [1.0, 1.0], [1.0, 1.0]), 3, 16),
                                  [3, 4, 15])


def test_oos_metrics_count_signals_per_month_over_the_sessions_tested(wf):
    """Windows 0 and 2 of the tiny run test [60, 80) and [100, 120): 40 of the 60 sessions from the first test start
    to the last test end. The OOS signals per month are the windows' signals over 40 / 21 months, and the rank
    score is recomputed with them; every other figure is the stitched run's."""
    from optimizer.engine.metrics import rank_score, run_metrics
    res = wf["res"]
    p = wf["panel"].slice(0, RESERVE)
    gap = [res.windows[0], res.windows[2]]
    trades, excess, span = wfmod._stitch(gap, RESERVE)
    assert span.sessions == 60
    signals = sum(w.oos_metrics["total_signals"] for w in gap)
    assert signals > 0
    oos = wfmod._oos_metrics(gap, p, trades, excess, span)
    want = run_metrics(trades, p, span, signals)
    assert want["signals_per_month"] == pytest.approx(signals / (60 / 21.0), rel=1e-12)
    spm = signals / (40 / 21.0)
    assert oos["signals_per_month"] == pytest.approx(spm, rel=1e-12)
    assert want["hit_rate"] * want["avg_return"] * want["win_loss"] != 0.0
    assert oos["rank_score"] == pytest.approx(rank_score(want["hit_rate"], want["avg_return"], want["win_loss"], spm),
                                              rel=1e-12)
    assert oos["rank_score"] != pytest.approx(want["rank_score"], rel=1e-6)
    same = [k for k in want if k not in ("signals_per_month", "rank_score", "avg_excess_return")]
    assert {k: oos[k] for k in same} == {k: want[k] for k in same}
    assert oos["avg_excess_return"] == pytest.approx(excess.mean(), rel=1e-12) and oos["n_windows"] == 2


def test_daily_leaves_out_the_sessions_no_window_tested():
    """``_daily`` over windows testing rows [1, 3) and [6, 8), trades A rows 1-3 and B rows 6-7 (closed): rows 4
    and 5 are neither tested nor held, no days of the series (rows 1, 2, 3, 6, 7; A's last row 3 stays), whose
    totals are the full series' on those rows. With C rows 4-9 (open at its window's end: the series still stops
    at the last test end / closed exit, 8, and C is held on rows 4-7) every row of [1, 8) is a day: ``rows`` None."""
    from types import SimpleNamespace

    from optimizer.engine.panel import Panel
    from optimizer.study.splits import Window
    close = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 20.0], [12.5, 20.0], [13.0, 20.5], [14.0, 21.0],
                      [15.0, 22.0], [16.0, 23.0], [17.0, 24.0], [18.0, 25.0]])
    p = Panel(dates=pd.bdate_range("2024-01-01", periods=10).to_numpy(), symbols=("AAA", "BBB"),
              fields={"close": close, "open": close.copy()})
    res = [SimpleNamespace(window=Window(k, 0, 1, a, b)) for k, (a, b) in enumerate([(1, 3), (6, 8)])]
    ab = _tr([1, 6], [3, 7], [10.5, 21.5], [12.4, 23.5], symbol=[0, 1])
    excess = np.array([0.10, 0.05])
    d = wfmod._daily(p, res, ab, excess)
    assert (d.start, d.stop, d.n_days) == (1, 8, 5)
    np.testing.assert_array_equal(d.rows, [1, 2, 3, 6, 7])
    full = daily_excess(ab, excess, close, 1, 8)
    np.testing.assert_array_equal(d.total, full.total[[0, 1, 2, 5, 6]])
    assert d.total.sum() == pytest.approx(excess.sum(), abs=1e-15)
    abc = _tr([1, 6, 4], [3, 7, 9], [10.5, 21.5, 13.0], [12.4, 23.5, 18.0], ["fixed", "fixed", "open_at_end"],
              symbol=[0, 1, 0])
    d = wfmod._daily(p, res, abc, excess)
    assert (d.start, d.stop, d.rows) == (1, 8, None) and d.n_days == 7


def test_equity_over_the_days_observed_by_hand():
    """``_equity`` over ``_daily``'s series of windows testing rows [1, 3) and [6, 8) (rows 4, 5 left out): A
    (symbol 0, rows 1-3, entry 10.5, exit 12.4) and B (symbol 1, rows 6-7, entry 21.5, exit 23.5), no cost. The
    account's return on each kept day (nothing bridged over rows 4-5: B's first day is a fresh entry), its dates,
    the benchmark (each trade's net return minus its excess spread over its rows; sized absolutely at weights 0.5
    and 0.25: w x the per-row benchmark), the open counts and the curves."""
    from types import SimpleNamespace

    from optimizer.engine.panel import Panel
    from optimizer.study.splits import Window
    close = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 20.0], [12.5, 20.0], [13.0, 20.5], [14.0, 21.0],
                      [15.0, 22.0], [16.0, 23.0], [17.0, 24.0], [18.0, 25.0]])
    p = Panel(dates=pd.bdate_range("2024-01-01", periods=10).to_numpy(), symbols=("AAA", "BBB"),
              fields={"close": close, "open": close.copy()})
    res = [SimpleNamespace(window=Window(k, 0, 1, a, b)) for k, (a, b) in enumerate([(1, 3), (6, 8)])]
    excess = np.array([0.10, 0.05])
    r = np.array([11.0 / 10.5 - 1, 12.0 / 11.0 - 1, 12.4 / 12.0 - 1, 22.0 / 21.5 - 1, 23.5 / 22.0 - 1])
    ba, bb = (12.4 / 10.5 - 1 - 0.10) / 3, (23.5 / 21.5 - 1 - 0.05) / 2
    for sizing, b in (({}, [ba, ba, ba, bb, bb]),
                      ({"weight": [0.5, 0.25], "absolute": True}, [0.5 * ba] * 3 + [0.25 * bb] * 2)):
        tr = _tr([1, 6], [3, 7], [10.5, 21.5], [12.4, 23.5], symbol=[0, 1], **sizing)
        d = wfmod._daily(p, res, tr, excess)
        np.testing.assert_array_equal(d.rows, [1, 2, 3, 6, 7])
        eq = wfmod._equity(p, tr, d)
        assert list(eq["date"]) == list(pd.DatetimeIndex(p.dates)[[1, 2, 3, 6, 7]])
        if not sizing:
            np.testing.assert_allclose(eq["oos_return"], r, rtol=1e-13, atol=1e-15)
        else:  # absolute sizing: w x the trade's return (w < 1: the rest in cash)
            np.testing.assert_allclose(eq["oos_return"], r * [0.5, 0.5, 0.5, 0.25, 0.25], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(eq["bench_return"], b, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(eq["excess_return"], eq["oos_return"] - eq["bench_return"], rtol=0, atol=1e-15)
        np.testing.assert_array_equal(eq["n_open"], [1, 1, 1, 1, 1])
        for k in ("oos", "bench", "excess"):
            np.testing.assert_allclose(eq[f"{k}_equity"], np.cumprod(1 + eq[f"{k}_return"]), rtol=1e-15)


def test_concat_trades_of_one_part_and_of_parts_with_per_trade_costs():
    """One part: its own trades and cost. A part that already holds one cost per trade (stitched trades stitched
    again) is no single cost: every trade keeps its own, whether the others' costs equal its first or not."""
    i = np.arange(3, dtype=np.int64)
    f = np.ones(3)
    a = Trades(i, i, i + 1, i + 2, f, f * 1.1, i, f, cost=0.001)
    b = Trades(i[:1], i[:1], i[:1] + 1, i[:1] + 2, f[:1], f[:1] * 1.2, i[:1], f[:1], cost=0.5)
    one = wfmod.concat_trades([a])
    assert one.cost == 0.001 and np.ndim(one.cost) == 0 and len(one) == 3
    np.testing.assert_array_equal(one.net_ret, a.net_ret)
    ab = wfmod.concat_trades([a, b])
    np.testing.assert_array_equal(ab.cost_per_trade, [0.001, 0.001, 0.001, 0.5])
    for parts, want in (([ab, a], [0.001] * 3 + [0.5] + [0.001] * 3), ([ab], [0.001] * 3 + [0.5]),
                        ([ab, ab], ([0.001] * 3 + [0.5]) * 2), ([a, ab], [0.001] * 6 + [0.5])):
        t = wfmod.concat_trades(parts)
        assert np.ndim(t.cost) == 1
        np.testing.assert_array_equal(t.cost_per_trade, want)
        np.testing.assert_array_equal(t.net_ret, np.concatenate([p.net_ret for p in parts]))


def test_run_key_is_the_hash_of_what_decides_the_windows_studies(wf):
    """``_run_key``: 16 hex characters of a hash over the trials per window, the inner CV of [walkforward] and the
    data the run may see: a change on the first or the last visible session moves it, one in the reserve does not
    (unless the run is final: ``limit`` is then every session)."""
    ctx = _ctx(wf, False)[0]
    assert ctx.limit == RESERVE < T
    k = wfmod._run_key(ctx)
    assert len(k) == 16 and int(k, 16) >= 0 and wfmod._run_key(ctx) == k
    wfs = ctx.spec.walkforward
    assert wfmod._run_key(replace(ctx, n_trials=ctx.n_trials + 1)) != k
    assert wfmod._run_key(replace(ctx, spec=replace(ctx.spec, walkforward=replace(wfs, n_splits=wfs.n_splits + 1)))) != k
    assert wfmod._run_key(replace(ctx, spec=replace(ctx.spec, walkforward=replace(wfs, embargo=wfs.embargo + 1)))) != k

    def moved(row, limit=RESERVE):
        c = ctx.panel.fields["close"].copy()
        c[row, 0] += 1.0
        return wfmod._run_key(replace(ctx, panel=replace(ctx.panel, fields={**ctx.panel.fields, "close": c}),
                                      limit=limit))
    assert moved(0) != k and moved(RESERVE - 1) != k
    assert moved(RESERVE) == k and moved(T - 1) == k
    final = wfmod._run_key(replace(ctx, limit=T))
    assert final != k and moved(T - 1, T) != final


def test_statistics_market_adjusted_series_keeps_the_days_observed(wf):
    """Windows 0 and 2 of the tiny run (test [60, 80) and [100, 120); window 0's trades exit by row 89): rows 90-99
    are neither tested nor held, no days of the stitched series. The market-adjusted series beside the verdict's
    keeps the same days (``rows=daily.rows``), not the contiguous span's."""
    from optimizer.validate.stats import dependent_inference
    from optimizer.validate.verdict import T_MIN, verdict_alpha
    res, spec = wf["res"], wf["spec"]
    ctx = _ctx(wf, False)[0]
    p = ctx.panel.slice(0, ctx.limit)
    gap = [res.windows[0], res.windows[2]]
    trades, excess, _ = wfmod._stitch(gap, ctx.limit)
    daily = wfmod._daily(p, gap, trades, excess)
    assert daily.rows is not None and daily.n_trades > 0 and daily.n_days < daily.stop - daily.start
    s = wfmod._statistics(ctx, gap, trades, daily, wfmod._equity(p, trades, daily), p,
                          Evaluator(p, min_periods=spec.data.min_periods), None)
    assert s["inference_mkt"]["n_days"] == s["inference"]["n_days"] == daily.n_days
    tested = np.r_[60:80, 100:120]
    np.testing.assert_array_equal(wfmod._signal_rows(gap, daily), tested)
    mkt = daily_excess(trades, daily.trade_excess, p["close"], daily.start, daily.stop, market_open=p["open"],
                       rows=daily.rows, signal_rows=tested)
    js = lambda d: json.dumps(d, sort_keys=True, default=str)  # noqa: E731 - NaN compares equal as text
    assert js(s["inference_mkt"]) == js(dependent_inference(mkt, alpha=verdict_alpha(T_MIN), power=0.8, seed=0).to_dict())
    # the random entries of the market adjustment follow the tested sessions only, not rows 80-99 (none tested)
    every = daily_excess(trades, daily.trade_excess, p["close"], daily.start, daily.stop, market_open=p["open"],
                         rows=daily.rows)
    assert s["inference_mkt"]["mean_per_trade"] != pytest.approx(every.mean_per_trade, rel=1e-9, abs=0)
    assert s["inference_mkt"]["mean_per_trade"] == pytest.approx(mkt.mean_per_trade, rel=1e-15, abs=0)


def test_tested_and_signal_rows_by_hand():
    """``_tested``: the rows of [start, stop) some window tested; ``_signal_rows``: those rows when the test windows
    leave untested sessions between them (step > test), else None (they tile: the series' every row, as before)."""
    from types import SimpleNamespace

    from optimizer.study.splits import Window
    res = lambda *tests: [SimpleNamespace(window=Window(k, 0, 1, a, b)) for k, (a, b) in enumerate(tests)]  # noqa: E731
    np.testing.assert_array_equal(np.flatnonzero(wfmod._tested(res((2, 5), (8, 10), (14, 20)), 3, 16)) + 3,
                                  [3, 4, 8, 9, 14, 15])
    assert wfmod._tested(res((0, 2), (16, 18)), 3, 16).tolist() == [False] * 13
    d = SimpleNamespace(start=3, stop=16)
    np.testing.assert_array_equal(wfmod._signal_rows(res((3, 5), (8, 10)), d), [3, 4, 8, 9])
    assert wfmod._signal_rows(res((3, 5), (5, 10)), d) is None  # tiled, the last window's purge after it
    assert wfmod._signal_rows(res((3, 16)), d) is None


def test_window_pbo_of_configurations_that_all_traded_alike_says_so():
    pb, why, cp = wfmod._window_pbo(None, np.zeros((16, 3)))
    assert math.isnan(pb) and cp is None
    assert why == ("the 3 completed configurations have the same daily excess over the train span (none traded, or "
                   "all traded alike); PBO needs >= 2 that differ")


def test_window_study_runs_exactly_the_trials_asked_whatever_the_specs_timeout(wf, monkeypatch):
    """A window's study gets the spec without its [run] timeout (a time bound would make the windows' trials, and
    so the result, depend on the machine's speed) and the walk-forward's remedy for a study made from another
    spec; everything else of the spec is kept."""
    ctx = _ctx(wf, False)[0]
    ctx = replace(ctx, spec=replace(ctx.spec, run=replace(ctx.spec.run, timeout=5.0)))
    seen = {}
    monkeypatch.setattr(wfmod, "run_study", lambda spec, *a, **k: seen.update(spec=spec, args=a, **k) or "study")
    from optimizer.study.splits import Window
    w = Window(*WINDOWS[0])
    data = wfmod._window_data(ctx, w)
    assert wfmod._window_study(ctx, w, data) == "study"
    assert seen["spec"].run.timeout is None
    assert replace(seen["spec"], run=replace(seen["spec"].run, timeout=5.0)) == ctx.spec
    assert seen["remedy"] == wfmod._WINDOW_REMEDY and seen["n_trials"] == ctx.n_trials


def test_setup_refuses_a_step_below_test_built_in_code_before_reading_the_store():
    """A spec built in code (``replace``; the loader refuses it in a file) with [walkforward] step 19 < test 20:
    the one-line SpecError naming the file and the key, before the store is read; step = test is a run."""
    from optimizer.errors import SpecError
    spec = parse_spec(SPEC, path="wf.toml")
    over = replace(spec, walkforward=replace(spec.walkforward, step=19))
    read = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wfmod, "load_study_data", lambda s, db: read.append(db) or (_panel(seed=3, T=T, N=N), RESERVE))
        with pytest.raises(SpecError) as e:
            wfmod._setup(over, "the.duckdb", None, False, None)
        assert read == []
        assert str(e.value) == ("wf.toml: [walkforward.step] must be >= test (20): test windows that overlap would "
                                "trade their common sessions twice (two windows' winners) and the verdict would count "
                                "those trades twice, got step=19")
        ctx, windows, _ = wfmod._setup(replace(spec, walkforward=replace(spec.walkforward, step=20)), "x", None,
                                       False, None)
    assert read == ["x"] and [w.test_start for w in windows] == [60, 80, 100]


def test_account_figures_are_the_equity_curves_whatever_the_bootstrap(wf, monkeypatch):
    """The stitched account's Sharpe and drawdown came from the equity bootstrap's points (the observed days'
    equity table) when it ran, and otherwise (under 10 days, or never invested) stayed ``run_metrics``' over every
    session from the first test start to the data end, untested sessions and the tail as cash days. They come from
    the equity table in every case (``_account_figures``: ``stats.equity_point``), the bootstrap giving only the
    intervals. Hand table of 4 days (no bootstrap); then windows 0 and 2 of the tiny run (rows 90-99 and the tail
    after the last exit are no days of the table) with the bootstrap skipped, and the full run (windows tile,
    bootstrap run): the figures are its points, as before."""
    from optimizer.engine.metrics import run_metrics
    from optimizer.validate.stats import equity_point

    r = np.array([0.02, -0.03, 0.0, 0.01])
    eq = pd.DataFrame({"oos_return": r, "n_open": [1, 1, 0, 1]})
    assert wfmod._equity_bootstrap(eq) is None
    sr, mdd = wfmod._account_figures(eq)
    assert sr == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252.0), rel=1e-12)
    assert mdd == pytest.approx(0.03, rel=1e-12)  # 1.02 -> 0.9894: 1 - 0.97
    assert wfmod._account_figures(eq.iloc[:1]) == (0.0, 0.0)  # one day: no Sharpe (0, as run_metrics gives it)
    assert wfmod._account_figures(pd.DataFrame({"oos_return": [0.01] * 3, "n_open": 1})) == (0.0, 0.0)  # no dispersion
    assert wfmod._account_figures(pd.DataFrame({"oos_return": np.zeros(12), "n_open": 0})) == (0.0, 0.0)
    res = wf["res"]
    eqb = res.stats["equity_bootstrap"]
    assert res.oos["portfolio_sharpe"] == eqb["sharpe"]["point"] and res.oos["max_drawdown"] == eqb["max_drawdown"]["point"]
    ctx = _ctx(wf, False)[0]
    p = ctx.panel.slice(0, ctx.limit)
    gap = [res.windows[0], res.windows[2]]
    trades, excess, span = wfmod._stitch(gap, ctx.limit)
    daily = wfmod._daily(p, gap, trades, excess)
    assert daily.rows is not None
    pt = equity_point(wfmod._equity(p, trades, daily)["oos_return"])
    monkeypatch.setattr(wfmod, "_equity_bootstrap", lambda eq: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = wfmod._assemble(ctx, gap, False, [])
    assert got.stats["equity_bootstrap"] is None
    assert (got.oos["portfolio_sharpe"], got.oos["max_drawdown"]) == (pt["sharpe"], pt["max_drawdown"])
    rm = run_metrics(trades, p, span, 0)
    assert rm["portfolio_sharpe"] != pytest.approx(pt["sharpe"], rel=1e-6)  # the span's cash days dilute it
