"""Mutation-testing kill tests for engine/features.py, engine/score.py and engine/metrics.py (issue 18 point 3,
bench/mutation group ``engine``): every feature, term and metric on small inputs against hand-computed values or
the plain reference (tests/reference_engine.py), with the degenerate cases each one documents."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from optimizer.engine.features import FeatureCache, as_symbol_major
from optimizer.engine.metrics import (
    FP_SESSIONS, METRIC_KEYS, WIN_LOSS_CAP, BenchmarkCache, false_positive_share, portfolio_returns, rank_score,
    run_metrics,
)
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreParams, ScoreTerms, combine, display_score, score_terms
from optimizer.engine.simulate import EXIT_REASONS, Costs, Span, SymbolMajorPrices, Trades
from optimizer.errors import ParameterError
from reference_engine import ref_benchmark, ref_components, ref_display, ref_zscore

T, N = 48, 3


def _flow_panel(seed: int = 5) -> Panel:
    """Prices and flows with holes: NaN short volumes, a zero short total, NaN lit volumes, NaN OTC rows."""
    rng = np.random.default_rng(seed)
    close = 40 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), 0))
    op = close * np.exp(rng.normal(0, 0.004, (T, N)))
    sb = rng.lognormal(12, 0.4, (T, N))
    ss = rng.lognormal(12, 0.4, (T, N))
    sb[5, 0] = ss[5, 0] = np.nan
    sb[9, 1] = ss[9, 1] = 0.0  # zero total: no imbalance
    lb = rng.lognormal(10, 0.5, (T, N))
    ls = rng.lognormal(10, 0.5, (T, N))
    lb[rng.random((T, N)) < 0.1] = np.nan
    ls[12, 2] = np.nan
    otc = rng.uniform(0.1, 0.4, (T, N))
    otc[:8] = np.nan
    dates = pd.bdate_range("2024-01-02", periods=T)
    syms = [f"S{i}" for i in range(N)]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = sb / ss
    df = pd.DataFrame({
        "date": np.repeat(dates, N), "symbol": np.tile(syms, T), "open": op.ravel(),
        "high": (np.maximum(op, close) * 1.01).ravel(), "low": (np.minimum(op, close) * 0.99).ravel(),
        "close": close.ravel(), "short_buy_volume": sb.ravel(), "short_sell_volume": ss.ravel(),
        "short_buy_sell_ratio": ratio.ravel(), "lit_buy_volume": lb.ravel(), "lit_sell_volume": ls.ravel(),
        "lit_flow_imbalance": ((lb - ls) / (lb + ls)).ravel(), "otc_participation_rate": otc.ravel(),
    })
    return Panel.from_frame(df)


PANEL = _flow_panel()


def _same(a: np.ndarray, b: np.ndarray, rtol: float = 1e-10) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.where(np.isnan(a), 0, a), np.where(np.isnan(b), 0, b), rtol=rtol, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- features

def test_as_symbol_major_is_a_read_only_contiguous_float_transpose():
    a = np.arange(6, dtype=np.int64).reshape(3, 2)
    out = as_symbol_major(a)
    assert out.dtype == np.float64 and out.shape == (2, 3) and out.flags.c_contiguous and not out.flags.writeable
    np.testing.assert_array_equal(out, a.T)
    f = np.asfortranarray(np.arange(6.0).reshape(3, 2))
    v = as_symbol_major(f)
    assert np.shares_memory(v, f) and not v.flags.writeable and f.flags.writeable  # a view; the input untouched
    c = np.arange(6.0).reshape(3, 2)
    assert not np.shares_memory(as_symbol_major(c), c)  # C order: a copy


@pytest.mark.parametrize("window", [3, 7])
def test_every_variant_and_term_equals_the_reference_components(window):
    cache = FeatureCache(PANEL)
    comps = ref_components(PANEL, window)
    col = lambda key: np.column_stack([c[key].to_numpy() for c in comps])  # noqa: E731
    _same(cache.short_z("A", window), col("A"))
    _same(cache.short_z("B", window), col("B"))
    _same(cache.short_z("C", window), 0.5 * col("A") + 0.5 * col("B"))
    _same(cache.short_z("D", window), col("D"))
    _same(cache.short_z("vw_flow", window), col("vw_flow"))
    b, v = col("B"), col("vw_flow")
    _same(cache.short_z("blended", window), np.where(np.isfinite(v), 0.6 * b + 0.4 * v, b))
    assert np.isfinite(b).any() and not np.isfinite(v).all()
    _same(cache.lit_z(window), col("lit"))
    _same(cache.price_z(window), col("price"))
    _same(cache.otc_z(window), col("otc"))
    for variant in ("A", "B", "C", "D", "vw_flow", "blended"):
        ts, tl, tp, sg = cache.tanh_terms(variant, window)
        _same(ts, np.tanh(0.5 * cache.short_z(variant, window)))
        _same(tl, np.nan_to_num(np.tanh(0.5 * col("lit")), nan=0.0))
        _same(tp, np.nan_to_num(np.tanh(0.3 * col("price")), nan=0.0))
        oz = col("otc")
        _same(sg, np.where(np.isfinite(oz), 1 / (1 + np.exp(-np.nan_to_num(oz))), 0.5))
        assert (sg[:8] == 0.5).all()
        for x in (ts, tl, tp, sg):
            assert x.shape == (T, N) and x.flags.f_contiguous and not x.flags.writeable
        disp = display_score(cache, ScoreParams(variant, 0.5, 0.3, 0.2, window, 0.6, 1.4))
        _same(disp, ref_display(PANEL, variant, 0.5, 0.3, 0.2, window, 0.6, 1.4), rtol=1e-9)


def test_raw_inputs_by_hand():
    cache = FeatureCache(PANEL)
    B, S = PANEL["short_buy_volume"], PANEL["short_sell_volume"]
    imb = cache._raw("imbalance_log")
    with np.errstate(invalid="ignore"):
        want = (B - S) / (B + S) * np.log1p(B + S)
    assert np.isnan(imb[9, 1]) and np.isnan(imb[5, 0])  # zero total, missing
    ok = np.isfinite(want)
    np.testing.assert_allclose(imb[ok], want[ok], rtol=1e-14)
    lb = np.nan_to_num(PANEL["lit_buy_volume"])
    ls = np.nan_to_num(PANEL["lit_sell_volume"])
    np.testing.assert_allclose(cache._raw("vw_flow"), B + lb - S - ls, rtol=1e-14)
    assert cache._raw("vw_flow") is cache._raw("vw_flow")  # derived once
    assert np.isnan(cache._raw("no_such_field")).all()
    # a panel without short volumes: every short input is missing, the display NaN
    bare = Panel.from_frame(pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=5), "symbol": "X",
                                          "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}))
    c2 = FeatureCache(bare)
    for name in ("imbalance_log", "vw_flow", "short_buy_volume"):
        assert np.isnan(c2._raw(name)).all(), name
    # a negative short total (bad data) is no imbalance either
    neg = PANEL.fields["short_buy_volume"].copy()
    assert np.isnan(imb[~(B + S > 0)]).all()
    assert neg is not None


def test_z_window_checks_min_periods_and_caching():
    cache = FeatureCache(PANEL, min_periods=2)
    for bad in (1, 0, 2.5, "3"):
        with pytest.raises(ParameterError, match="z_window"):
            cache.z("short_buy_volume", bad)
    z = cache.z("short_buy_volume", 5)
    assert cache.z("short_buy_volume", 5) is z and not z.flags.writeable
    want = np.column_stack([ref_zscore(PANEL["short_buy_volume"][:, j], 5, 2).to_numpy() for j in range(N)])
    _same(z, want)
    assert np.isfinite(z[1]).all()  # min_periods 2: the second row has a z already
    # min_periods above the window is capped at the window
    big = FeatureCache(PANEL, min_periods=50)
    want = np.column_stack([ref_zscore(PANEL["short_buy_volume"][:, j], 4).to_numpy() for j in range(N)])
    _same(big.z("short_buy_volume", 4), want)
    assert np.isnan(big.z("short_buy_volume", 4)[2]).all() and np.isfinite(big.z("short_buy_volume", 4)[3]).all()
    assert cache.z("short_buy_volume", np.int64(5)) is z  # numpy integers are windows too
    with pytest.raises(ParameterError, match="variant"):
        cache.short_z("E", 5)


def test_terms_are_cached_and_drop_only_their_windows_z_scores():
    cache = FeatureCache(PANEL)
    cache.z("short_buy_volume", 3)
    cache.z("short_buy_volume", 4)
    sz = cache.short_z("B", 4)
    assert cache.short_z("B", 4) is sz  # cached
    terms = cache.tanh_terms("B", 4)
    assert cache.tanh_terms("B", 4) is terms
    other = cache.tanh_terms("A", 4)
    assert all(a is b for a, b in zip(terms[1:], other[1:]))  # lit / price / otc terms shared per window
    assert other[0] is not terms[0]
    keys = set(cache._cache)
    assert ("z", "short_buy_volume", 3) in keys  # another window's z stays
    assert not any(k[0] in ("z", "short_z") and k[-1] == 4 for k in keys)
    assert ("shared_terms", 4) in keys and ("terms", "B", 4) in keys
    n = cache.nbytes
    assert n == (5 + 1) * T * N * 8  # 3 shared + 2 short terms + the window-3 z (shared arrays counted once)
    cache.warm(variants=("A", "D"), windows=(3, 5))
    assert {("terms", v, w) for v in ("A", "D") for w in (3, 5)} <= set(cache._cache)
    assert not any(k[0] in ("z", "short_z") for k in cache._cache)
    full = FeatureCache(PANEL)
    full.warm()
    from optimizer.engine.features import VARIANTS, Z_WINDOWS
    assert sum(1 for k in full._cache if k[0] == "terms") == len(VARIANTS) * len(Z_WINDOWS)


# ------------------------------------------------------------------------------------------------------- score

def test_score_params_weights_and_checks():
    p = ScoreParams("B", 2.0, 1.0, 1.0)
    assert p.weights == (0.5, 0.25, 0.25)
    with pytest.raises(ParameterError) as err:
        ScoreParams("B", 0.0, 0.0, 0.0)
    assert str(err.value) == "w_short + w_lit + w_price must be > 0, got w_short + w_lit + w_price=0.0"
    with pytest.raises(ParameterError) as err:
        ScoreParams(intensity_lo=1.2, intensity_hi=1.1)
    assert str(err.value) == "intensity_lo must be in [0, intensity_hi=1.1], got intensity_lo=1.2"
    ScoreParams(intensity_lo=1.0, intensity_hi=1.0)  # equal bounds are allowed
    assert ScoreParams().weights == pytest.approx((0.55, 0.30, 0.15))


def test_combine_and_score_terms_equal_the_formula():
    cache = FeatureCache(PANEL)
    p = ScoreParams("D", 0.2, 0.5, 0.3, 5, 0.5, 1.7)
    ts, tl, tp, sg = cache.tanh_terms("D", 5)
    ws, wl, wp = p.weights
    with np.errstate(invalid="ignore"):
        want = (np.clip((ws * ts + wl * tl + wp * tp) * (0.5 + 1.2 * sg), -1, 1) + 1) * 50
    out = combine(ts, tl, tp, sg, p)
    _same(out, want, rtol=1e-14)
    assert out.shape == (T, N) and out.flags.f_contiguous
    st = score_terms(cache, p)
    assert st.shape == (T, N) and (st.ws, st.wl, st.wp, st.lo, st.hi) == (ws, wl, wp, 0.5, 1.7)
    assert st.ts is ts and st.sg is sg
    _same(st.display(), want, rtol=1e-14)
    _same(display_score(cache, p), want, rtol=1e-14)
    # the clip binds on both sides somewhere on this panel with these weights x 3
    big = ScoreTerms(ts, tl, tp, sg, 3 * ws, 3 * wl, 3 * wp, 1.0, 1.0).display()
    assert np.nanmax(big) == 100.0 and np.nanmin(big) == 0.0


# ----------------------------------------------------------------------------------------------------- metrics

def _trades(rows, cost=0.0, weight=None, mult=None, absolute=False) -> Trades:
    """rows: (symbol, signal, entry, exit, entry price, exit price, reason)."""
    a = list(zip(*rows)) if rows else [[]] * 7
    i64 = lambda x: np.array(x, dtype=np.int64)  # noqa: E731
    return Trades(i64(a[0]), i64(a[1]), i64(a[2]), i64(a[3]), np.array(a[4], float), np.array(a[5], float),
                  i64([EXIT_REASONS.index(r) for r in a[6]]), np.full(len(rows), 70.0), cost=cost,
                  weight=weight, mult=mult, absolute=absolute)


def _price_panel(opens: dict[str, list[float]], closes: dict[str, list[float]] | None = None) -> Panel:
    frames = []
    for s, o in opens.items():
        o = np.array(o, float)
        c = np.array(closes[s], float) if closes else o
        frames.append(pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=len(o)), "symbol": s, "open": o,
                                    "high": np.maximum(o, c) + 1, "low": np.minimum(o, c) - 1, "close": c}))
    return Panel.from_frame(pd.concat(frames))


def test_rank_score_by_hand():
    assert rank_score(0.5, 0.1, 2.0, 4.0) == pytest.approx(0.05)
    assert rank_score(0.5, 0.1, 2.0, 0.0) == 0.0
    assert rank_score(0.5, 0.1, 2.0, -1.0) == 0.0


def test_false_positive_share_by_hand():
    # closes: symbol 0 dips below 10 on the third session after entry (index e + 2); symbol 1 never does
    panel = _price_panel({"A": [10, 10, 11, 12, 9.5, 12, 12, 12], "B": [20, 20, 21, 22, 23, 24, 25, 26]})
    close = panel["close"]
    tr = _trades([(0, 1, 2, 6, 10.0, 12.0, "fixed"), (1, 1, 2, 6, 20.0, 26.0, "fixed"),
                  (0, 0, 1, 3, 10.5, 12.0, "fixed"), (1, 5, 6, 7, 26.0, 26.0, "open_at_end")])
    closed = tr.closed
    # trade 0: closes 11, 12, 9.5 -> reverses; trade 1 never; trade 2: closes 10 (< 10.5) -> reverses
    assert false_positive_share(close, tr, closed) == pytest.approx(2 / 3)
    assert run_metrics(tr, panel, Span(0, 8, 8), 4)["false_positive_rate"] == pytest.approx(2 / 3)
    # never past the exit bar: a one-session trade reads only its entry (and exit) close
    tr = _trades([(0, 2, 3, 4, 11.0, 12.0, "fixed")])   # closes 12 (e), 9.5 (x = e + 1): 9.5 < 11
    assert false_positive_share(close, tr, tr.closed) == 1.0
    tr = _trades([(0, 2, 3, 3, 11.5, 12.0, "stop_loss")])  # the exit bar is the entry bar: close 12 only
    assert false_positive_share(close, tr, tr.closed) == 0.0
    assert false_positive_share(close, _trades([]), np.zeros(0, bool)) == 0.0
    assert FP_SESSIONS == 3


def test_benchmark_rows_equal_the_reference_and_grow_on_demand():
    opens = {"A": [10, 11, 12, 11, 13, 14, 12, 15, 16, 15], "B": [5, 5, np.nan, 6, 6, 7, 7, 8, 8, 9]}
    panel = _price_panel(opens)
    bench = BenchmarkCache(panel)
    span = Span(1, 6, 9)
    for h in range(0, 8):
        r = bench.ratio(span, h)
        for j, s in enumerate(("A", "B")):
            want = ref_benchmark(np.array(opens[s], float), h, 0.0, 1, 6, 9)
            if np.isnan(r[j]):
                assert want == 0.0 and h >= 6, (h, s)  # no entry session: the reference's 0
            else:
                assert r[j] - 1 == pytest.approx(want, abs=1e-12), (h, s)
    # by hand: h = 2, entries e in [2, 6] with e + 2 <= 8: A 12/12... (11/10 is before sig_start + 1)
    a = np.array(opens["A"], float)
    assert bench.ratio(span, 2)[0] == pytest.approx(np.mean(a[4:9] / a[2:7]))
    b = np.array(opens["B"], float)
    assert bench.ratio(span, 2)[1] == pytest.approx(np.mean((b[5:9] / b[3:7])))  # e = 2 has no open
    # the matrix starts at 32 rows and doubles past them
    mat = bench._matrix(span, 40)
    assert mat.shape[0] == 64 and np.isnan(mat[40:]).all()
    np.testing.assert_array_equal(bench.ratios(span, np.array([2, 2, 0])), bench._cache[(1, 6, 9)][[2, 2, 0]])
    assert (bench.ratio(span, 0) == 1.0).all()
    assert np.isnan(bench.ratio(Span(8, 9, 9), 1)).all()  # no entry session at all
    assert bench.ratios(span, np.array([], dtype=np.int64)).shape == (0, 2)


def test_excess_and_expected_net_by_hand():
    opens = {"A": [10, 11, 12, 11, 13, 14, 12, 15, 16, 15], "B": [5, 5, 6, 6, 6, 7, 7, 8, 8, 9]}
    panel = _price_panel(opens)
    bench = BenchmarkCache(panel)
    span = Span(1, 6, 10)
    tr = _trades([(0, 1, 2, 4, 12.0, 13.0, "fixed"), (1, 2, 3, 6, 6.0, 7.0, "fixed"),
                  (0, 5, 6, 9, 12.0, 15.0, "open_at_end")], cost=0.001)
    exp = bench.expected_net(tr, span, tr.closed)
    a, b = np.array(opens["A"], float), np.array(opens["B"], float)
    want = [np.mean(a[4:9] / a[2:7]) - 1, np.mean(b[5:10] / b[2:7]) - 1]
    np.testing.assert_allclose(exp, want, rtol=1e-12)
    np.testing.assert_allclose(bench.excess(tr, span), tr.net_ret[:2] - want, rtol=1e-12)
    assert bench.expected_net(tr, span, np.zeros(3, bool)).shape == (0,)
    # a hold with no entry session: benchmark 0
    far = _trades([(0, 0, 1, 9, 11.0, 15.0, "fixed")])  # hold 8: an entry e >= 2 would need open[e + 8 > 9]
    assert bench.expected_net(far, Span(1, 6, 10), far.closed).tolist() == [0.0]
    m = run_metrics(tr, panel, span, 3, bench=bench)
    assert m["avg_benchmark_return"] == pytest.approx(np.mean(want))
    assert m["avg_excess_return"] == pytest.approx(np.mean(tr.net_ret[:2] - want))
    ex = tr.net_ret[:2] - want
    assert m["excess_sharpe"] == pytest.approx(np.mean(ex) / np.std(ex, ddof=1))
    assert bench.close_by_symbol.shape == (2, 10)
    px = SymbolMajorPrices(panel)
    assert BenchmarkCache(panel, px).close_by_symbol is px["close"]
    np.testing.assert_array_equal(BenchmarkCache(panel).close_by_symbol, panel["close"].T)


def test_metrics_and_the_benchmark_take_no_cost_they_would_not_read():
    """``run_metrics``, ``BenchmarkCache.excess`` and ``expected_net`` took a ``costs`` argument none of them read
    (the trades carry their own costs in ``net_ret`` and ``cost``; the benchmark is gross by design): a setting that
    changes nothing (DEVELOPERS.md: every setting takes effect or is refused). They take none."""
    import inspect

    for fn in (run_metrics, BenchmarkCache.excess, BenchmarkCache.expected_net):
        assert "costs" not in inspect.signature(fn).parameters, fn.__qualname__
    assert list(inspect.signature(run_metrics).parameters)[:4] == ["trades", "panel", "span", "total_signals"]
    assert list(inspect.signature(BenchmarkCache.excess).parameters) == ["self", "trades", "span"]
    assert list(inspect.signature(BenchmarkCache.expected_net).parameters) == ["self", "trades", "span", "mask"]


def test_run_metrics_by_hand_and_degenerate_cases():
    panel = _price_panel({"A": [10, 10, 10, 12, 12, 11, 11, 11, 11, 11], "B": [5] * 10})
    span = Span(0, 10, 10)
    # no trades: every metric 0
    m = run_metrics(_trades([]), panel, span, 0)
    assert tuple(m) == METRIC_KEYS and all(v == 0.0 for v in m.values())
    # one win (+20%) and one loss (-10%), one open
    tr = _trades([(0, 1, 2, 4, 10.0, 12.0, "fixed"), (1, 1, 2, 5, 5.0, 4.5, "stop_loss"),
                  (0, 6, 7, 9, 11.0, 11.0, "open_at_end")])
    m = run_metrics(tr, panel, span, 21)
    assert m["total_signals"] == 21 and m["total_trades"] == 3 and m["closed_trades"] == 2 and m["open_at_end"] == 1
    assert m["hit_rate"] == 0.5 and m["avg_return"] == pytest.approx(0.05) and m["median_return"] == pytest.approx(0.05)
    assert m["win_loss"] == pytest.approx(2.0)
    assert m["sharpe"] == pytest.approx(0.05 / np.std([0.2, -0.1], ddof=1))
    assert m["avg_hold_days"] == pytest.approx(2.5)
    assert m["signals_per_month"] == pytest.approx(21 / (10 / 21))
    assert m["rank_score"] == pytest.approx(0.5 * 0.05 * 2.0 / math.sqrt(21 / (10 / 21)))
    d = portfolio_returns(tr, panel, span)
    assert m["portfolio_sharpe"] == pytest.approx(d.mean() / d.std(ddof=1) * math.sqrt(252))
    # only wins: win_loss capped; a zero loss (0 return) counts as a loss with mean 0: capped too
    up = _trades([(0, 1, 2, 4, 10.0, 12.0, "fixed")])
    m = run_metrics(up, panel, span, 1)
    assert m["win_loss"] == WIN_LOSS_CAP and m["sharpe"] == 0.0 and m["excess_sharpe"] == 0.0
    flat0 = _trades([(0, 1, 2, 4, 10.0, 12.0, "fixed"), (1, 1, 2, 4, 5.0, 5.0, "fixed")])
    assert run_metrics(flat0, panel, span, 2)["win_loss"] == WIN_LOSS_CAP
    huge = _trades([(0, 1, 2, 4, 10.0, 12.0, "fixed"), (1, 1, 2, 4, 5.0, 4.99, "fixed")])
    assert run_metrics(huge, panel, span, 2)["win_loss"] == WIN_LOSS_CAP  # 0.2 / 0.002 = 100 -> capped
    down = _trades([(1, 1, 2, 4, 5.0, 4.5, "fixed")])
    m = run_metrics(down, panel, span, 1)
    assert m["win_loss"] == 0.0 and m["hit_rate"] == 0.0 and m["max_drawdown"] == pytest.approx(0.1)
    # a span of one session: a single daily return -> no portfolio Sharpe; zero signals -> rank 0
    m = run_metrics(_trades([]), panel, Span(0, 1, 1), 0)
    assert m["signals_per_month"] == 0.0 and m["portfolio_sharpe"] == 0.0
    # the same trade twice: sd 0 -> Sharpe 0
    two = _trades([(0, 1, 2, 4, 10.0, 12.0, "fixed"), (0, 4, 5, 7, 10.0, 12.0, "fixed")])
    assert run_metrics(two, panel, span, 2)["sharpe"] == 0.0


def test_relative_weights_override_the_trades_sizing():
    panel = _price_panel({"A": [10, 10, 11, 12, 12, 12], "B": [5, 5, 5, 4, 4, 4]})
    span = Span(0, 6, 6)
    tr = _trades([(0, 1, 2, 4, 10.0, 12.0, "fixed"), (1, 1, 2, 4, 5.0, 4.0, "fixed")], weight=np.array([0.2, 0.2]),
                 mult=np.array([0.5, 0.5]), absolute=True)
    own = portfolio_returns(tr, panel, span)
    # absolute sizing: exposure 0.1 + 0.1, the rest cash: day 3 = 0.1 x (12/11 - 1) + 0.1 x (4/5 - 1)
    assert own[3] == pytest.approx(0.1 * (12 / 11 - 1) + 0.1 * (4 / 5 - 1))
    rel = portfolio_returns(tr, panel, span, weight=np.array([3.0, 1.0]))
    # relative weights given: no multiplier, day = (3 r_A + r_B) / 4
    assert rel[3] == pytest.approx((3 * (12 / 11 - 1) + (4 / 5 - 1)) / 4)
    assert rel[2] == pytest.approx((3 * (11 / 10 - 1) + 0.0) / 4)
    m_own = run_metrics(tr, panel, span, 2)
    m_rel = run_metrics(tr, panel, span, 2, weight=np.array([3.0, 1.0]))
    assert m_own["avg_return"] == m_rel["avg_return"]  # sizing never changes a trade's return
    d = rel
    assert m_rel["portfolio_sharpe"] == pytest.approx(d.mean() / d.std(ddof=1) * math.sqrt(252))
    assert m_own["portfolio_sharpe"] == pytest.approx(own.mean() / own.std(ddof=1) * math.sqrt(252))
    assert m_own["portfolio_sharpe"] != pytest.approx(m_rel["portfolio_sharpe"])


def test_feature_errors_warnings_and_computed_variants_are_cached_read_only():
    import warnings

    cache = FeatureCache(PANEL)
    with pytest.raises(ParameterError) as err:
        cache.z("short_buy_volume", 1)
    assert str(err.value) == "z_window must be >= 2, got z_window=1"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the zero short total (0 / 0) and the missing rows warn nothing
        cache._raw("imbalance_log")
        cache._raw("vw_flow")
    for variant in ("C", "blended"):  # computed (not a cached z itself): stored read-only, returned again
        sz = cache.short_z(variant, 4)
        assert not sz.flags.writeable
        assert cache.short_z(variant, 4) is sz
        assert cache._cache[("short_z", variant, 4)] is sz


def test_benchmark_rows_beyond_the_first_matrix_and_equal_closes():
    panel = _price_panel({"A": [10.0 + 0.1 * k for k in range(50)]})
    span = Span(0, 10, 50)
    fresh = BenchmarkCache(panel)
    r = fresh.ratios(span, np.array([40, 3]))  # a hold past the first 32 rows on a fresh cache
    a = 10.0 + 0.1 * np.arange(50)
    assert r[0, 0] == pytest.approx(np.mean(a[41:50] / a[1:10]))
    assert r[1, 0] == pytest.approx(np.mean(a[4:14] / a[1:11]))  # entries 1..10
    # a close equal to the entry price is no reversal (strictly below)
    flat = _price_panel({"A": [10, 10, 10, 10, 10, 10]})
    tr = _trades([(0, 0, 1, 4, 10.0, 10.0, "fixed")])
    assert false_positive_share(flat["close"], tr, tr.closed) == 0.0
    assert run_metrics(tr, flat, Span(0, 6, 6), 1)["false_positive_rate"] == 0.0


def test_imbalance_of_a_total_of_one_share():
    """A short total in (0, 1] still has an imbalance ((B - S) / (B + S) x log1p(B + S)); only a total <= 0 has none."""
    df = pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=3), "symbol": "X", "open": 1.0, "high": 1.0,
                       "low": 1.0, "close": 1.0, "short_buy_volume": [1.0, 0.5, 0.0],
                       "short_sell_volume": [0.0, 0.0, 0.0]})
    imb = FeatureCache(Panel.from_frame(df))._raw("imbalance_log")[:, 0]
    np.testing.assert_allclose(imb[:2], [math.log(2.0), math.log(1.5)], rtol=1e-14)
    assert math.isnan(imb[2])


def test_relative_weights_are_relative_even_when_they_sum_below_one():
    panel = _price_panel({"A": [10, 10, 11, 12, 12, 12], "B": [5, 5, 5, 4, 4, 4]})
    tr = _trades([(0, 1, 2, 4, 10.0, 12.0, "fixed"), (1, 1, 2, 4, 5.0, 4.0, "fixed")])
    rel = portfolio_returns(tr, panel, Span(0, 6, 6), weight=np.array([0.3, 0.1]))
    assert rel[3] == pytest.approx((0.3 * (12 / 11 - 1) + 0.1 * (4 / 5 - 1)) / 0.4)  # not / max(1, 0.4)


def test_run_metrics_absolute_sizing_drawdown_and_a_two_day_sharpe():
    """Absolute sizing reaches the run statistics (the portfolio's drawdown is not scale-free as its Sharpe is:
    exposure 0.1 + 0.1, the rest cash), and two daily returns are enough for a portfolio Sharpe."""
    panel = _price_panel({"A": [10, 10, 11, 12, 12, 12], "B": [5, 5, 5, 4, 4, 4]})
    span = Span(0, 6, 6)
    tr = _trades([(0, 1, 2, 4, 10.0, 12.0, "fixed"), (1, 1, 2, 4, 5.0, 4.0, "fixed")], weight=np.array([0.2, 0.2]),
                 mult=np.array([0.5, 0.5]), absolute=True)
    d = portfolio_returns(tr, panel, span)
    assert d[3] == pytest.approx(0.1 * (12 / 11 - 1) + 0.1 * (4 / 5 - 1))
    eq = np.cumprod(1 + d)
    mdd = float(np.max(1 - eq / np.maximum.accumulate(eq)))
    assert mdd > 0.0
    assert run_metrics(tr, panel, span, 2)["max_drawdown"] == pytest.approx(mdd, rel=1e-12)
    # two sessions [2, 4): the entry day (close 11 over the entry 10) and the exit day (open 12 over the close 11)
    one = _trades([(0, 1, 2, 3, 10.0, 12.0, "fixed")])
    two = portfolio_returns(one, panel, Span(2, 4, 4))
    assert two.tolist() == pytest.approx([0.1, 12 / 11 - 1], rel=1e-12)
    m = run_metrics(one, panel, Span(2, 4, 4), 1)
    assert m["portfolio_sharpe"] == pytest.approx(two.mean() / two.std(ddof=1) * math.sqrt(252)) != 0.0


def test_benchmark_matrix_grows_when_asked_for_exactly_its_row_count():
    """The matrix starts at 32 rows (holds 0-31): a hold of 32 makes it grow (64 rows), as a fresh cache does."""
    panel = _price_panel({"A": list(np.linspace(10, 20, 40)), "B": list(np.linspace(5, 3, 40))})
    span = Span(0, 5, 40)
    bench = BenchmarkCache(panel)
    bench.ratio(span, 1)
    assert bench._cache[(0, 5, 40)].shape[0] == 32
    got = bench.ratio(span, 32)
    assert bench._cache[(0, 5, 40)].shape[0] == 64
    np.testing.assert_array_equal(got, BenchmarkCache(panel).ratio(span, 32))
    assert np.isfinite(got).all()
