"""Property-based tests (hypothesis) of the invariants the product promises, on random panels with random holes.

* Truncation identity: every feature, context label, score and entry signal at t is unchanged when the data after
  t is removed (panels with NaN holes, whole-row data gaps and missing VIX days anywhere in the series).
* The fast engine (numba kernels, both loop orders) equals the independent reference engine
  (tests/reference_engine.py) trade for trade and metric for metric.
* Splitters: no train index lies within the purge of a test block, consecutive test blocks are separated by the
  embargo, fold data never runs past the span, and walk-forward windows never reach the final reserve.
* Round trip: a stored trial (every engine parameter, costs, universe, span, regime filter and min_periods drawn)
  exported as ``study best --format json`` and run by ``backtest --params`` gives its stored metrics bit for bit
  (at the 10 decimals a trial stores).

Example counts come from the hypothesis profile: ``HYPOTHESIS_PROFILE=fast`` (make test-fast), ``ci`` (CI=true)
or ``default``; see tests/conftest.py.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from hypothesis import Phase, given, note, settings
from hypothesis import strategies as st

from optimizer.engine.context import compute_context
from optimizer.engine.features import VARIANTS, FeatureCache
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreParams, display_score
from optimizer.study.splits import PurgedTimeSeriesSplit, WalkForward, reserve_cutoff
from optimizer.backtest import BACKTEST_METRICS, backtest
from optimizer.engine.evaluate import Config
from optimizer.study.inspect import best_trial_json
from optimizer.study.paramsfile import load_params_record
from optimizer.study.records import read_trial
from optimizer.study.run import run_study
from optimizer.study.spec import parse_spec
from test_engine_oracle import Oracle, _flows, _ohlc, _to_panel, run_config

RULES = ("fixed", "first_dist", "2x_consec_dist", "score_decay", "hybrid")
SECTORS = ("XLK", "XLF", "XLE")


# ------------------------------------------------------------------------------------------------- strategies

@st.composite
def panels(draw, min_t: int = 30, max_t: int = 110, max_n: int = 5) -> Panel:
    """A random-walk panel with a random flow layer, random NaN holes in the flows, and optionally whole sessions
    of missing data (every field NaN for some symbols on a run of days: a hole in the store)."""
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    T = draw(st.integers(min_t, max_t), label="T")
    N = draw(st.integers(1, max_n), label="N")
    rng = np.random.default_rng(seed)
    o, h, lo, c = _ohlc(rng, T, N)
    volume = rng.lognormal(15, 0.5, (T, N))
    fields = {"open": o, "high": h, "low": lo, "close": c, "volume": volume, **_flows(rng, c, volume)}
    if draw(st.booleans(), label="data hole"):
        a = draw(st.integers(1, T - 2), label="hole start")
        b = draw(st.integers(a + 1, min(T - 1, a + 12)), label="hole end")
        cols = rng.random(N) < 0.7
        for k in ("short_buy_volume", "short_sell_volume", "short_buy_sell_ratio", "lit_buy_volume",
                  "lit_sell_volume", "lit_flow_imbalance", "otc_participation_rate"):
            fields[k][a:b, cols] = np.nan
    symbols = [f"S{j}" for j in range(N)]
    dates = pd.bdate_range("2022-01-03", periods=T)
    return _to_panel(dates, symbols, fields, {s: SECTORS[j % len(SECTORS)] for j, s in enumerate(symbols)})


@st.composite
def configs(draw, T: int) -> dict:
    rule = draw(st.sampled_from(RULES))
    ex: dict = {"rule": rule}
    if rule == "fixed":
        ex["hold_days"] = draw(st.integers(1, 15))
    if rule == "hybrid":
        ex["max_days"] = draw(st.integers(1, 30))
    ex["stop_loss"] = draw(st.none() | st.floats(0.01, 0.08))
    ex["take_profit"] = draw(st.none() | st.floats(0.02, 0.15))
    ex["time_stop"] = draw(st.none() | st.integers(1, 20))
    sig_start = draw(st.integers(0, T // 2))
    sig_end = draw(st.integers(sig_start + 1, T))
    data_end = draw(st.integers(sig_end, T))
    return {
        "score": {
            "variant": draw(st.sampled_from(VARIANTS)),
            "w_short": draw(st.floats(0.05, 1.0)), "w_lit": draw(st.floats(0.0, 1.0)),
            "w_price": draw(st.floats(0.0, 1.0)), "z_window": draw(st.sampled_from((5, 10, 20))),
            "intensity_lo": 0.7, "intensity_hi": 1.3,
        },
        "buy": draw(st.floats(52.0, 75.0)),
        "sell": draw(st.floats(20.0, 45.0)),
        "exit": ex,
        "costs": (draw(st.floats(0.0, 3.0)), draw(st.floats(0.0, 10.0))),
        "span": (sig_start, sig_end, data_end),
    }


# ------------------------------------------------------------------------------------------- truncation identity

@given(p=panels(), variant=st.sampled_from(VARIANTS), window=st.sampled_from((5, 10, 20)),
       cut=st.floats(0.2, 0.95))
def test_score_and_signals_unchanged_by_later_data(p, variant, window, cut):
    sp = ScoreParams(variant=variant, z_window=window)
    full = display_score(FeatureCache(p), sp)
    t = int(cut * (p.shape[0] - 1))
    part = display_score(FeatureCache(p.slice(0, t + 1)), sp)
    np.testing.assert_array_equal(part, full[: t + 1])
    # the entry signal of a session is its display crossing the buy threshold: identical by the line above, and
    # the features it is made of are identical too
    fc_full, fc_part = FeatureCache(p), FeatureCache(p.slice(0, t + 1))
    for a, b in zip(fc_full.tanh_terms(variant, window), fc_part.tanh_terms(variant, window)):
        np.testing.assert_array_equal(b, a[: t + 1])


def _context_panel(seed: int, T: int, vix_holes: list[tuple[int, int]]) -> Panel:
    rng = np.random.default_rng(seed)
    syms = ("AAPL", "NVDA", "XLK")
    N = len(syms)
    dates = pd.bdate_range("2023-01-02", periods=T).to_numpy().astype("datetime64[D]")
    c = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, (T, N)), axis=0))
    o = c * (1 + rng.normal(0, 0.005, (T, N)))
    fields = {
        "open": o, "close": c, "high": np.maximum(o, c) * 1.01, "low": np.minimum(o, c) * 0.99,
        "volume": rng.uniform(1e6, 2e6, (T, N)),
        "call_volume": rng.uniform(5e3, 1e4, (T, N)), "put_volume": rng.uniform(3e3, 6e3, (T, N)),
        "itm_call_volume": rng.uniform(1e3, 2e3, (T, N)), "otm_call_volume": rng.uniform(1e3, 3e3, (T, N)),
        "itm_put_volume": rng.uniform(1e3, 2e3, (T, N)), "otm_put_volume": rng.uniform(1e3, 2e3, (T, N)),
        "atm_iv": rng.uniform(0.2, 0.6, (T, N)),
    }
    spy = 400 * np.exp(np.cumsum(rng.normal(0.0004, 0.01, T)))
    vix = 18 + rng.normal(0, 3, T)
    for a, b in vix_holes:  # VIX missing in the middle of the series: a bfill would leak the next value
        vix[a:b] = np.nan
    market = {"spy_close": spy, "spy_open": spy, "spy_high": spy * 1.005, "spy_low": spy * 0.995,
              "spy_volume": rng.uniform(5e7, 1e8, T), "vix": vix}
    return Panel(dates=dates, symbols=syms, fields=fields, market=market, sectors=("XLK", "XLK", None))


@pytest.mark.slow
@given(seed=st.integers(0, 2**32 - 1),
       holes=st.lists(st.tuples(st.integers(70, 150), st.integers(1, 8)), min_size=1, max_size=3),
       cuts=st.lists(st.integers(60, 159), min_size=1, max_size=3))
def test_context_labels_unchanged_by_later_data(seed, holes, cuts):
    T = 160
    p = _context_panel(seed, T, [(a, min(T, a + n)) for a, n in holes])
    kw = {"min_train": 50, "refit_every": 21}
    full = compute_context(p, kw)
    for t in sorted(set(cuts)):
        part = compute_context(p.slice(0, t + 1), kw)
        for k, v in full.items():
            np.testing.assert_array_equal(part[k], v[: t + 1], err_msg=f"{k} changed at t={t}")


# ------------------------------------------------------------------------------------- fast engine == reference

@given(data=st.data(), p=panels(min_t=40, max_t=120, max_n=4))
def test_fast_engine_equals_reference_on_random_panels(data, p):
    oracle = Oracle(p)
    cfg = data.draw(configs(p.shape[0]), label="config")
    note(f"config {cfg}")
    run_config(oracle, cfg, f"hypothesis config {cfg}")


@given(data=st.data(), p=panels(min_t=40, max_t=100, max_n=5))
def test_capped_kernel_equals_date_major_reference(data, p):
    oracle = Oracle(p)
    cfg = data.draw(configs(p.shape[0]), label="config")
    caps = data.draw(st.tuples(st.none() | st.integers(1, 3), st.none() | st.integers(1, 2)), label="caps")
    if caps == (None, None):
        caps = (2, None)
    run_config(oracle, cfg, f"hypothesis capped config {cfg} caps {caps}", caps=caps)


# --------------------------------------------------------------------------------------------------- splitters

@given(n=st.integers(40, 600), n_splits=st.integers(1, 6), purge=st.integers(0, 30), embargo=st.integers(0, 30),
       min_train=st.integers(0, 60), rolling=st.booleans(), max_train=st.integers(5, 200))
def test_purged_folds_never_leak(n, n_splits, purge, embargo, min_train, rolling, max_train):
    cv = PurgedTimeSeriesSplit(n_splits=n_splits, purge=purge, embargo=embargo, min_train_size=min_train,
                               mode="rolling" if rolling else "expanding", max_train_size=max_train if rolling else None)
    try:
        spans = cv.fold_spans(n)
    except ValueError:  # ParameterError: not enough sessions for these folds (tested elsewhere)
        return
    assert len(spans) == n_splits
    for (tr, te), f in zip(cv.split(n), spans):
        assert te[0] == f.test_start and te[-1] == f.test_end - 1
        assert f.test_start >= min_train
        assert f.test_end <= f.data_end <= min(n, f.test_end + purge)
        if tr.size:
            assert f.test_start - tr.max() > purge  # no train index within the purge of the test block
            if rolling:
                assert tr.size <= max_train
    for a, b in zip(spans, spans[1:]):
        assert b.test_start - a.test_end == purge + embargo
        assert b.test_start - a.data_end >= embargo  # a block's trades end an embargo before the next block


@given(n=st.integers(30, 900), train=st.integers(1, 40), test=st.integers(1, 30), step=st.none() | st.integers(1, 30),
       purge=st.integers(0, 25), anchored=st.booleans(), fraction=st.sampled_from((0.0, 0.1, 0.2, 0.3)))
def test_walk_forward_windows_never_reach_the_reserve(n, train, test, step, purge, anchored, fraction):
    dates = pd.bdate_range("2021-01-04", periods=n)
    reserve = reserve_cutoff(n, fraction)
    try:
        wf = WalkForward(train=train, test=test, step=step, unit="sessions", purge=purge, anchored=anchored)
        windows = wf.split(dates[:reserve])
    except ValueError:  # ParameterError: too little data for one window, or train - purge < 2 sessions
        return
    prev_test_end = None
    for w in windows:
        assert 0 <= w.train_start < w.train_end <= w.test_start < w.test_end <= reserve
        assert w.test_start - w.train_end == purge  # the purge gap separates train from test
        assert w.test_end - w.test_start == test
        if anchored:
            assert w.train_start == 0
        if prev_test_end is not None and (step is None or step >= test):
            assert w.test_start >= prev_test_end  # test windows never overlap when step >= test
        prev_test_end = w.test_end


# ------------------------------------------------------------------------------- store -> export -> backtest

_NO_SHRINK = tuple(p for p in Phase if p is not Phase.shrink)  # a study per example: report the first failure


def _fixed_spec(draw) -> str:
    """A study spec whose [space] fixes every engine parameter to a drawn value (floats drawn freely: their repr
    must survive TOML, Optuna's storage and JSON bit for bit), with drawn costs, universe, span, regime filter,
    min_periods and folds: the one trial it runs is the drawn configuration."""
    f = lambda lo, hi: repr(draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False)))  # noqa: E731
    exit_name = draw(st.sampled_from(("first_dist", "2x_consec_dist", "score_decay", "fixed_10d", "fixed_3d",
                                      "hybrid_30d", "hybrid_7d")))
    z_window = draw(st.sampled_from((5, 10, 20, 30)))
    space = [f'variant = "{draw(st.sampled_from(VARIANTS))}"', f"w_short = {f(0.05, 1.0)}", f"w_lit = {f(0.0, 1.0)}",
             f"w_price = {f(0.0, 1.0)}", f"z_window = {z_window}",
             f"buy_threshold = {f(55.0, 72.0)}", f"sell_threshold = {f(25.0, 45.0)}", f'exit = "{exit_name}"']
    for key, value in (("stop_loss", lambda: f(0.01, 0.09)), ("take_profit", lambda: f(0.02, 0.2)),
                       ("time_stop", lambda: str(draw(st.integers(1, 30)))),
                       ("max_positions", lambda: str(draw(st.integers(1, 6)))),
                       ("max_per_sector", lambda: str(draw(st.integers(1, 3))))):
        if draw(st.booleans(), label=f"use {key}"):
            space.append(f"{key} = {value()}")
    data = [f'universe = "{draw(st.sampled_from(("tier1+3", "tier1", "tier3")))}"',
            f'regime = "{draw(st.sampled_from(("ALL", "RISK_ON", "TRANSITIONAL")))}"',
            f'start = "{draw(st.sampled_from(("2023-01-03", "2023-02-15", "2023-04-03")))}"',
            f"reserve_fraction = {draw(st.sampled_from((0.1, 0.2, 0.3)))}"]
    if draw(st.booleans(), label="min_periods"):
        data.append(f"min_periods = {draw(st.integers(2, min(10, z_window - 1)))}")  # below the window: else refused
    return "\n".join([
        '[study]\nname = "rt"', "[data]", *data, f"[data.costs]\ncommission_bps = {f(0.0, 5.0)}",
        f"slippage_bps = {f(0.0, 12.0)}", "[space]", *space,
        f"[cv]\nn_splits = {draw(st.integers(1, 3))}\nembargo = {draw(st.integers(0, 30))}\npurge = {draw(st.integers(1, 30))}",
        "[objective]\nmin_trades = 0", '[sampler]\nname = "random"\nseed = 1', '[pruner]\nname = "none"', "",
    ])


@settings(max_examples=max(2, settings.default.max_examples // 5), phases=_NO_SHRINK)  # a study per example: fast 2, default 5, ci 8
@given(data=st.data())
def test_stored_trial_round_trips_through_export_to_the_same_backtest_metrics(data, synth_db):
    text = _fixed_spec(data.draw)
    note(text)
    spec = parse_spec(text)
    with tempfile.TemporaryDirectory() as d:
        storage = f"sqlite:///{Path(d) / 'studies.db'}"
        res = run_study(spec, synth_db, storage, n_trials=1)  # store
        t = res.study.trials[0]
        assert t.state == optuna.trial.TrialState.COMPLETE, t.user_attrs
        f = Path(d) / "best.json"
        f.write_text(json.dumps(best_trial_json(storage, "rt")))  # export, as `study best --format json`
        rec = load_params_record(f)
        run = backtest(rec.params, synth_db, save=False, record=rec.record)  # backtest --params
    stored = read_trial(t).metrics
    assert set(BACKTEST_METRICS) <= set(stored)  # every metric a backtest reports was stored with the trial
    now = run.result.metrics
    # bit for bit: a trial stores its metrics at full precision (study/trial.py), so the backtest's floats are the
    # stored floats exactly (json.dumps writes the shortest repr that reads back to the same bits)
    same = {k: stored[k] for k in stored if k in now}
    assert len(same) >= len(BACKTEST_METRICS)
    redo = {k: (float(now[k]) if isinstance(now[k], (float, np.floating)) else now[k]) for k in same}
    assert {k: (same[k], redo[k]) for k in same if json.dumps(same[k]) != json.dumps(redo[k])} == {}
    assert json.dumps(redo, sort_keys=True) == json.dumps(same, sort_keys=True)  # NaN == NaN, 0.1 == 0.1
    assert run.result.config == Config.from_params(read_trial(t).config_record.params)
    assert run.record.data_fingerprint == read_trial(t).config_record.data_fingerprint
