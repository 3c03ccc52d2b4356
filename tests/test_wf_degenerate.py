"""Walk-forward statistics on degenerate windows: what cannot be estimated is NaN with its reason, never a number
made of ties."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from optimizer.study.splits import CombinatorialPurgedCV
from optimizer.validate import walkforward as wfmod
from optimizer.validate.stats import probability_of_backtest_overfitting


def test_window_pbo_of_configurations_that_never_traded_is_skipped():
    """A window whose completed configurations never traded in the train span (all-zero daily excess columns: a
    high buy threshold, a regime filter that never opens) has no PBO: CSCV on all-tied columns ranks every winner
    at the median (lambda = 0) and scores 1.0, which the walk-forward averaged into its PBO gate."""
    M = np.zeros((40, 3))
    assert probability_of_backtest_overfitting(M, n_blocks=16).pbo == 1.0  # the tie artefact the window must skip
    pb, why, cp = wfmod._window_pbo(SimpleNamespace(cv=None), M)
    assert math.isnan(pb) and cp is None
    assert why == ("the 3 completed configurations have the same daily excess over the train span "
                   "(none traded, or all traded alike); PBO needs >= 2 that differ")
    cv = CombinatorialPurgedCV(4, 2, 0, 0)
    pb, why, cp = wfmod._window_pbo(SimpleNamespace(cv=cv), M)
    assert math.isnan(pb) and cp is None and why.startswith("the 3 completed configurations have the same")
    same = np.repeat(np.random.default_rng(0).normal(0.0, 0.01, size=(40, 1)), 2, axis=1)  # traded alike
    assert math.isnan(wfmod._window_pbo(SimpleNamespace(cv=None), same)[0])


def test_window_pbo_with_one_differing_configuration_is_estimated():
    """Two never-trading configurations and one that traded differ: PBO is estimated over all three columns."""
    M = np.zeros((40, 3))
    M[:, 2] = np.random.default_rng(1).normal(0.001, 0.01, size=40)
    pb, why, _ = wfmod._window_pbo(SimpleNamespace(cv=None), M)
    assert why is None and pb == probability_of_backtest_overfitting(M, n_blocks=16).pbo


def test_too_short_data_error_never_shows_a_negative_test_size():
    """A short date range with the demo's purge 20 and embargo 30: the derived test size is negative (10 sessions
    minus two gaps of 50). The error said 'test_size=-40'; it states the blocks' floor of 2 sessions instead (it
    said "test_size=2 (the smallest)", a setting nobody made, until mend8), and a given size is still named."""
    import pytest
    from optimizer.errors import ParameterError
    from optimizer.study.splits import PurgedTimeSeriesSplit
    with pytest.raises(ParameterError) as ei:
        PurgedTimeSeriesSplit(n_splits=3, purge=20, embargo=30, min_train_size=30).fold_spans(10)
    assert str(ei.value) == ("3 purged folds need 136 sessions, 10 are available (3 test blocks of at least 2 sessions, "
                             "2 gaps of purge=20 + embargo=30, min_train_size=30 before them): they fit with more "
                             "sessions")
    with pytest.raises(ParameterError, match=r"5 purged folds need 10 sessions, 7 are available \(5 test blocks of at "
                                             "least 2 sessions"):
        PurgedTimeSeriesSplit(n_splits=5).fold_spans(7)
    with pytest.raises(ParameterError, match="2 test blocks of test_size=10, 1 gap of purge=3"):
        PurgedTimeSeriesSplit(n_splits=2, test_size=10, purge=3, embargo=3).fold_spans(25)
