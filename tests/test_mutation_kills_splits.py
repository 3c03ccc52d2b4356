"""Splitter behaviour that mutation testing (bench/mutation) found unasserted: documented defaults, the exact
one-line errors (name, rule, value), and the boundaries of every check, on hand-computed cases.

Boundaries: a CPCV group of exactly 2 sessions is allowed (size < 2 is refused), purge + embargo = size - 2 is
allowed (>= size - 1 is refused); C(100000, 1) = 100,000 splits is the largest allowed; a walk-forward train window
of exactly 2 sessions is allowed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from optimizer.data.calendar import nyse_sessions
from optimizer.errors import ParameterError
from optimizer.study.splits import CombinatorialPurgedCV, FoldSpan, PurgedTimeSeriesSplit, WalkForward, Window


def _raises_exactly(message: str):
    return pytest.raises(ParameterError, match="^" + re.escape(message) + "$")


# ------------------------------------------------------------------------------------------------ CPCV
def test_cpcv_defaults_are_six_groups_two_tested():
    cv = CombinatorialPurgedCV()
    assert (cv.n_splits, cv.n_paths) == (15, 5)  # C(6, 2) = 15 splits, 15 * 2 / 6 = 5 paths
    assert cv.test_groups[0].tolist() == [0, 1] and cv.test_groups[-1].tolist() == [4, 5]


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_groups=2), "n_groups must be an integer >= 3, got n_groups=2"),
    (dict(n_groups=4, n_test_groups=4), "n_test_groups must be an integer in [1, n_groups=4), got n_test_groups=4"),
    (dict(purge=-1), "purge must be an integer >= 0, got purge=-1"),
    (dict(purge=True), "purge must be an integer >= 0, got purge=True"),
    (dict(purge=1.5), "purge must be an integer >= 0, got purge=1.5"),
    (dict(embargo=-2), "embargo must be an integer >= 0, got embargo=-2"),
    (dict(embargo=2.0), "embargo must be an integer >= 0, got embargo=2.0"),
    (dict(warmup=-3), "warmup must be an integer >= 0, got warmup=-3"),
    (dict(warmup=0.5), "warmup must be an integer >= 0, got warmup=0.5"),
    (dict(n_groups=100_001, n_test_groups=1),
     "n_test_groups must be such that C(n_groups, n_test_groups) <= 100,000 splits (got 100,001 with "
     "n_groups=100001), got n_test_groups=1"),
])
def test_cpcv_refuses_with_one_exact_line(kwargs, message):
    with _raises_exactly(message):
        CombinatorialPurgedCV(**kwargs)


def test_cpcv_largest_allowed_split_count():
    cv = CombinatorialPurgedCV(n_groups=100_000, n_test_groups=1)
    assert cv.n_splits == 100_000


def test_cpcv_group_size_and_gap_boundaries():
    # 6 sessions in 3 groups of 2: the smallest allowed group
    assert CombinatorialPurgedCV(n_groups=3, n_test_groups=1).group_bounds(6) == [(0, 2), (2, 4), (4, 6)]
    # 12 sessions in 3 groups of 4, purge + embargo = 2 = size - 2: allowed
    cv = CombinatorialPurgedCV(n_groups=3, n_test_groups=1, purge=1, embargo=1)
    assert cv.group_bounds(12) == [(0, 4), (4, 8), (8, 12)]
    assert cv.fold_spans(12) == [FoldSpan(0, 0, 4, 5), FoldSpan(1, 4, 8, 9), FoldSpan(2, 8, 12, 12)]
    with _raises_exactly("3 groups over 5 sessions (n=5, warmup=0) are 1 sessions each; purge + embargo = 0 must "
                         "be < group size - 1: lower n_groups, purge or embargo, or widen the date range"):
        CombinatorialPurgedCV(n_groups=3, n_test_groups=1).group_bounds(5)
    with pytest.raises(ParameterError, match="purge \\+ embargo = 3 must be < group size - 1"):
        CombinatorialPurgedCV(n_groups=3, n_test_groups=1, purge=2, embargo=1).group_bounds(12)


def test_cpcv_path_ids_index_arrays():
    cv = CombinatorialPurgedCV(n_groups=4, n_test_groups=2)
    ids = cv.path_ids()
    # path ids are integers usable as indices: the path labels of each split's test groups
    labels = np.array(["p0", "p1", "p2"])
    assert labels[ids].shape == (6, 2)
    assert ids.tolist() == [[0, 0], [1, 0], [2, 0], [1, 1], [2, 1], [2, 2]]


def test_cpcv_split_takes_anything_with_a_length():
    cv = CombinatorialPurgedCV(n_groups=3, n_test_groups=1, purge=1)
    by_int = list(cv.split(9))
    by_len = list(cv.split(list(range(9))))
    assert len(by_len) == 3
    for (tr_a, te_a), (tr_b, te_b) in zip(by_int, by_len):
        assert tr_a.tolist() == tr_b.tolist() and [t.tolist() for t in te_a] == [t.tolist() for t in te_b]
    # split 0 tests [0, 3): train drops the purge after it ([3, 4)); split 1 tests [3, 6): drops 2 and 6
    assert by_len[0][0].tolist() == [4, 5, 6, 7, 8]
    assert by_len[1][0].tolist() == [0, 1, 7, 8]


# ------------------------------------------------------------------------------------------------ purged folds
def test_purged_split_default_is_five_folds():
    assert len(list(PurgedTimeSeriesSplit().split(100))) == 5


def test_purged_split_boundaries_are_accepted():
    cv = PurgedTimeSeriesSplit(n_splits=2, test_size=2)
    assert cv.fold_spans(10) == [FoldSpan(0, 6, 8, 8), FoldSpan(1, 8, 10, 10)]
    rolling = PurgedTimeSeriesSplit(n_splits=2, test_size=2, mode="rolling", max_train_size=1)
    assert [tr.tolist() for tr, _ in rolling.split(10)] == [[5], [7]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(test_size=1), "test_size must be >= 2, got test_size=1"),
    (dict(mode="rolling", max_train_size=0), "max_train_size must be >= 1 for rolling folds, got max_train_size=0"),
])
def test_purged_split_refuses_with_one_exact_line(kwargs, message):
    with _raises_exactly(message):
        PurgedTimeSeriesSplit(**kwargs)


def test_purged_split_too_short_names_the_computed_test_size():
    with _raises_exactly("5 purged folds need 10 sessions, 7 are available (5 test blocks of at least 2 sessions, 4 "
                         "gaps of purge=0 + embargo=0, min_train_size=0 before them): they fit with n_splits <= 3 "
                         "alone, or with more sessions"):
        PurgedTimeSeriesSplit(n_splits=5).fold_spans(7)


# ------------------------------------------------------------------------------------------------ walk-forward
def test_walkforward_defaults_are_six_months_train_two_months_test():
    dates = nyse_sessions("2023-01-01", "2023-12-31")
    windows = WalkForward().split(dates)
    months = pd.DatetimeIndex(dates).to_period("M")
    first = windows[0]
    assert months[first.train_start].month == 1 and months[first.train_end - 1].month == 6
    assert months[first.test_start].month == 7 and months[first.test_end - 1].month == 8
    assert [months[w.test_start].month for w in windows] == [7, 9, 11]


def test_walkforward_one_unit_boundaries_are_accepted():
    dates = nyse_sessions("2023-01-01", "2023-04-30")
    windows = WalkForward(train=1, test=1, step=1).split(dates)
    assert len(windows) == 3  # Jan->Feb, Feb->Mar, Mar->Apr
    # sessions: a train window of exactly 2 sessions is the smallest allowed
    assert WalkForward(train=2, test=1, unit="sessions").split(list(range(4))) == [
        Window(0, 0, 2, 2, 3), Window(1, 1, 3, 3, 4)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(train=0), "train must be >= 1, got train=0"),
    (dict(test=0), "test must be >= 1, got test=0"),
    (dict(step=0), "step must be >= 1, got step=0"),
])
def test_walkforward_refuses_with_one_exact_line(kwargs, message):
    with _raises_exactly(message):
        WalkForward(**kwargs)


def test_walkforward_stops_at_the_first_window_whose_purged_train_is_too_short():
    # 20 sessions in January, 3 in February, 20 in March: with a 1-month train and a purge of 2 sessions the
    # February-trained window keeps 3 - 2 = 1 train session: the walk stops there (no later window either).
    jan = pd.bdate_range("2023-01-02", periods=20)
    feb = pd.bdate_range("2023-02-01", periods=3)
    mar = pd.bdate_range("2023-03-01", periods=20)
    dates = jan.append(feb).append(mar)
    assert WalkForward(train=1, test=1, step=1, purge=2).split(dates) == [Window(0, 0, 18, 20, 23)]
