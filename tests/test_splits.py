"""Tests of optimizer.study.splits: purged folds and walk-forward windows against hand-computed spans.

Purged folds over n sessions: ts = (n - min_train - (k-1)·gap) // k with gap = purge + embargo, blocks flush with
the end of the span; e.g. n=100, k=3, purge=5, embargo=3, min_train=10: ts = (100-10-16)//3 = 24, first block at
100 - (72+16) = 12 -> [12,36) [44,68) [76,100), data ends 41, 73, 100, train ends 7, 39, 71.
Walk-forward in months on the NYSE calendar 2023-01-03..2024-12-31: 250 + 252 = 502 sessions, H1 2023 has
20+19+23+19+22+21 = 124 sessions, so the first 6-month train window ends (before the purge) at session 124.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from optimizer.data.calendar import nyse_sessions
from optimizer.errors import ParameterError
from optimizer.study.splits import FoldSpan, PurgedTimeSeriesSplit, WalkForward, Window, reserve_cutoff


# ------------------------------------------------------------------------------------------------ purged folds
def test_fold_spans_hand_case():
    cv = PurgedTimeSeriesSplit(n_splits=3, purge=5, embargo=3, min_train_size=10)
    assert cv.fold_spans(100) == [FoldSpan(0, 12, 36, 41), FoldSpan(1, 44, 68, 73), FoldSpan(2, 76, 100, 100)]
    assert cv.get_n_splits() == 3


def test_split_expanding_hand_case():
    cv = PurgedTimeSeriesSplit(n_splits=3, purge=5, embargo=3, min_train_size=10)
    folds = list(cv.split(100))
    assert len(folds) == 3
    for (tr, te), (tr_end, a, b) in zip(folds, [(7, 12, 36), (39, 44, 68), (71, 76, 100)]):
        np.testing.assert_array_equal(tr, np.arange(0, tr_end))
        np.testing.assert_array_equal(te, np.arange(a, b))
    # X may be anything with a length
    same = list(cv.split(np.zeros((100, 2))))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(folds, same))


def test_split_rolling_caps_the_train_window():
    cv = PurgedTimeSeriesSplit(n_splits=3, purge=5, embargo=3, min_train_size=10, mode="rolling", max_train_size=20)
    trains = [tr for tr, _ in cv.split(100)]
    np.testing.assert_array_equal(trains[0], np.arange(0, 7))  # shorter than the cap: all of it
    np.testing.assert_array_equal(trains[1], np.arange(19, 39))
    np.testing.assert_array_equal(trains[2], np.arange(51, 71))
    assert [len(t) for t in trains] == [7, 20, 20]


def test_explicit_test_size():
    cv = PurgedTimeSeriesSplit(n_splits=2, test_size=10, purge=2, embargo=1)
    # gap 3, blocks take 2*10 + 3 = 23 sessions at the end of 50: first block at 27
    assert cv.fold_spans(50) == [FoldSpan(0, 27, 37, 39), FoldSpan(1, 40, 50, 50)]


def test_smallest_feasible_and_infeasible():
    assert PurgedTimeSeriesSplit(n_splits=2).fold_spans(4) == [FoldSpan(0, 0, 2, 2), FoldSpan(1, 2, 4, 4)]
    with pytest.raises(ParameterError, match="2 purged folds need 4 sessions, 3 are available"):
        PurgedTimeSeriesSplit(n_splits=2).fold_spans(3)


@pytest.mark.parametrize("n,kw,parts", [
    (30, dict(n_splits=3, purge=5, embargo=5, min_train_size=10),
     ["3 purged folds need 36 sessions, 30 are available", "purge=5", "embargo=5", "min_train_size=10",
      "n_splits <= 2, or purge <= 2, or embargo <= 2, or min_train_size <= 4 alone"]),
    (50, dict(n_splits=3, test_size=20), ["3 test blocks of test_size=20", "50 are available", "test_size <= 16"]),
    (25, dict(n_splits=2, test_size=10, purge=3, embargo=3), ["2 test blocks of test_size=10", "purge=3",
                                                              "25 are available"]),
])
def test_impossible_configuration_is_a_clear_error(n, kw, parts):
    with pytest.raises(ParameterError) as ei:
        PurgedTimeSeriesSplit(**kw).fold_spans(n)
    for p in parts:
        assert p in str(ei.value)
    with pytest.raises(ParameterError):
        list(PurgedTimeSeriesSplit(**kw).split(n))


@pytest.mark.parametrize("kw,msg", [
    (dict(n_splits=0), "n_splits must be >= 1, got n_splits=0"),
    (dict(test_size=1), "test_size must be >= 2, got test_size=1"),
    (dict(purge=-1), "purge must be >= 0, got purge=-1"),
    (dict(embargo=-2), "embargo must be >= 0, got embargo=-2"),
    (dict(mode="shuffled"), "mode must be one of expanding, rolling, got mode='shuffled'"),
    (dict(mode="rolling"), "max_train_size must be >= 1 for rolling folds, got max_train_size=None"),
    (dict(min_train_size=-1), "min_train_size must be >= 0, got min_train_size=-1"),
])
def test_constructor_rejects_bad_parameters(kw, msg):
    with pytest.raises(ParameterError) as ei:
        PurgedTimeSeriesSplit(**kw)
    assert str(ei.value) == msg


def test_fold_invariants_over_a_grid_of_configurations():
    checked = 0
    for n, k, purge, embargo, mt, ts in itertools.product((40, 77, 120), (1, 2, 4), (0, 3, 10), (0, 4), (0, 9), (None, 5)):
        cv = PurgedTimeSeriesSplit(n_splits=k, test_size=ts, purge=purge, embargo=embargo, min_train_size=mt)
        feasible = k * (ts or 2) + (k - 1) * (purge + embargo) + mt <= n  # blocks of >= 2 sessions fit after min_train
        if not feasible:
            with pytest.raises(ParameterError):
                cv.fold_spans(n)
            continue
        spans = cv.fold_spans(n)
        checked += 1
        sizes = {f.test_end - f.test_start for f in spans}
        assert len(sizes) == 1 and min(sizes) >= 2 and (ts is None or sizes == {ts})
        assert spans[-1].test_end == n and spans[0].test_start >= mt
        assert [f.fold for f in spans] == list(range(k))
        for f in spans:
            assert f.data_end == min(f.test_end + purge, n)
        for a, b in zip(spans, spans[1:]):
            assert b.test_start - a.test_end == purge + embargo
            assert a.data_end <= b.test_start - embargo  # no trade of a block reaches the next block's embargo zone
        for (tr, te), f in zip(cv.split(n), spans):
            assert te[0] == f.test_start and te[-1] == f.test_end - 1
            assert len(tr) == max(0, f.test_start - purge) and (len(tr) == 0 or tr[-1] == f.test_start - purge - 1)
    assert checked > 50


# ------------------------------------------------------------------------------------------------ walk-forward, sessions
def test_walkforward_sessions_rolling_hand_case():
    ws = WalkForward(train=10, test=5, unit="sessions", purge=2).split(np.arange(30))
    assert ws == [Window(0, 0, 8, 10, 15), Window(1, 5, 13, 15, 20), Window(2, 10, 18, 20, 25), Window(3, 15, 23, 25, 30)]
    for w in ws:
        assert w.train_end + 2 == w.test_start


def test_walkforward_sessions_anchored_with_step():
    ws = WalkForward(train=10, test=5, step=7, unit="sessions", purge=2, anchored=True).split(np.arange(30))
    assert ws == [Window(0, 0, 8, 10, 15), Window(1, 0, 15, 17, 22), Window(2, 0, 22, 24, 29)]


def test_walkforward_accepts_dates_and_strings():
    d = pd.bdate_range("2024-01-01", periods=12)
    a = WalkForward(train=6, test=3, unit="sessions").split(d)
    b = WalkForward(train=6, test=3, unit="sessions").split([str(x.date()) for x in d])
    assert a == b == [Window(0, 0, 6, 6, 9), Window(1, 3, 9, 9, 12)]


@pytest.mark.parametrize("kw,n,parts", [
    (dict(train=25, test=10, unit="sessions"), 30, ["train=25 + test=10 sessions", "the data has 30 sessions"]),
    (dict(train=5, test=5, unit="sessions", purge=4), 30, ["purge=4 sessions leaves 1 sessions"]),  # too short
    (dict(train=20, test=6, unit="months"), None, ["train=20 + test=6 months", "502 sessions"]),
])
def test_walkforward_too_short_is_an_error(kw, n, parts):
    dates = np.arange(n) if n is not None else nyse_sessions("2023-01-03", "2024-12-31")
    with pytest.raises(ParameterError) as ei:
        WalkForward(**kw).split(dates)
    for p in parts:
        assert p in str(ei.value)


@pytest.mark.parametrize("kw,msg", [
    (dict(unit="weeks"), "unit must be one of months, sessions, got unit='weeks'"),
    (dict(train=0), "train must be >= 1, got train=0"),
    (dict(test=0), "test must be >= 1, got test=0"),
    (dict(step=0), "step must be >= 1, got step=0"),
    (dict(purge=-1), "purge must be >= 0, got purge=-1"),
])
def test_walkforward_constructor_errors(kw, msg):
    with pytest.raises(ParameterError) as ei:
        WalkForward(**kw)
    assert str(ei.value) == msg


# ------------------------------------------------------------------------------------------------ walk-forward, months
@pytest.fixture(scope="module")
def nyse():
    d = nyse_sessions("2023-01-03", "2024-12-31")
    assert len(d) == 502
    return d


def _month_starts(d: pd.DatetimeIndex) -> list[int]:
    return [i for i in range(len(d)) if i == 0 or (d[i].year, d[i].month) != (d[i - 1].year, d[i - 1].month)] + [len(d)]


def test_walkforward_months_tile_the_test_spans(nyse):
    ms = _month_starts(nyse)
    assert len(ms) == 25 and ms[6] == 124 and ms[12] == 250
    ws = WalkForward(train=6, test=2, unit="months", purge=10).split(nyse)
    assert len(ws) == 9  # first test month 6, 8, ..., 22: k = 0, 2, ..., 16
    for i, w in enumerate(ws):
        assert w.index == i
        assert (w.train_start, w.test_start, w.test_end) == (ms[2 * i], ms[2 * i + 6], ms[2 * i + 8])
        assert w.train_end + 10 == w.test_start  # the purge gap is cut from the train end
    for a, b in zip(ws, ws[1:]):
        assert a.test_end == b.test_start  # test windows tile without overlap or holes
    assert ws[-1].test_end == 502
    w0 = ws[0]
    assert (w0.train_start, w0.train_end, w0.test_start) == (0, 114, 124)
    assert str(nyse[w0.test_start].date()) == "2023-07-03" and str(nyse[w0.test_end - 1].date()) == "2023-08-31"
    assert str(nyse[ws[-1].test_start].date()) == "2024-11-01"


def test_walkforward_months_anchored_and_step(nyse):
    ms = _month_starts(nyse)
    ws = WalkForward(train=6, test=2, unit="months", anchored=True).split(nyse)
    assert len(ws) == 9 and {w.train_start for w in ws} == {0}
    assert [w.train_end for w in ws] == [w.test_start for w in ws]  # no purge
    ws = WalkForward(train=6, test=2, step=3, unit="months").split(nyse)
    assert [w.test_start for w in ws] == [ms[k + 6] for k in (0, 3, 6, 9, 12, 15)]
    assert [w.test_end for w in ws] == [ms[k + 8] for k in (0, 3, 6, 9, 12, 15)]


def test_walkforward_months_exactly_fits(nyse):
    ws = WalkForward(train=18, test=6, unit="months").split(nyse)
    assert ws == [Window(0, 0, _month_starts(nyse)[18], _month_starts(nyse)[18], 502)]


# ------------------------------------------------------------------------------------------------ reserve
@pytest.mark.parametrize("n,f,cut", [(100, 0.2, 80), (502, 0.2, 402), (10, 0.0, 10), (7, 0.5, 3)])
def test_reserve_cutoff(n, f, cut):
    # 502*0.2 = 100.4 -> 100 reserved; 7*0.5 = 3.5 -> rounds to 4 reserved
    assert reserve_cutoff(n, f) == cut


def test_reserve_cutoff_rejects_fraction_one():
    with pytest.raises(ParameterError, match=r"reserve_fraction must be in \[0, 1\), got reserve_fraction=1"):
        reserve_cutoff(10, 1)
