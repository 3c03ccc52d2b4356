"""Reality check across a search (optimizer/validate/_reality.py): Hansen's SPA via arch, on known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimizer.errors import ParameterError
from optimizer.validate._reality import distinct_columns, spa_test


def test_spa_finds_a_planted_edge_among_noise():
    rng = np.random.default_rng(0)
    m = rng.normal(0.0, 0.01, (250, 40))
    m[:, 7] += 0.004  # one configuration earns 0.4 % a day (daily Sharpe 0.4): a real edge
    r = spa_test(m, reps=500)
    assert r.p_value < 0.01 and r.best == 7
    assert r.n_configs == r.n_configs_tried == 40 and r.n_days == 250


def test_spa_corrects_the_data_snooping_a_naive_test_of_the_best_configuration_falls_for():
    """No configuration has an edge. The best of 25 noise configurations looks significant (t > 1.96) in about
    1 - 0.975^25 = 47 % of the datasets; the SPA p-value over all 25 is below 0.05 in about 5 % at most."""
    rng = np.random.default_rng(11)
    naive = spa = 0
    runs = 30
    for _ in range(runs):
        m = rng.normal(0.0, 0.01, (150, 25))
        r = spa_test(m, reps=200, seed=1)
        naive += r.best_t > 1.96
        spa += r.p_value < 0.05
    assert naive / runs > 0.3
    assert spa / runs <= 0.1


def test_spa_counts_a_configuration_tried_twice_once():
    rng = np.random.default_rng(3)
    m = rng.normal(0.0005, 0.01, (200, 12))
    dup = np.column_stack([m, m[:, [0, 0, 5]]])
    np.testing.assert_array_equal(distinct_columns(dup), np.arange(12))
    a, b = spa_test(m, reps=300, seed=4), spa_test(dup, reps=300, seed=4)
    assert b.n_configs == 12 and b.n_configs_tried == 15
    assert (a.p_value, a.p_lower, a.p_upper) == (b.p_value, b.p_lower, b.p_upper)
    assert a.p_lower <= a.p_value <= a.p_upper
    assert spa_test(m, reps=300, seed=4) == a  # seeded: reproducible
    assert set(a.to_dict()) >= {"p_value", "n_configs", "n_configs_tried", "best_t"}


def test_spa_validation():
    with pytest.raises(ParameterError, match="perf must be a 2-D array"):
        spa_test(np.zeros(50))
    with pytest.raises(ParameterError, match="perf must be all finite"):
        spa_test(np.full((50, 3), np.nan))
    with pytest.raises(ParameterError, match="reps must be"):
        spa_test(np.zeros((50, 3)), reps=5)


def test_spa_is_studentized_a_steady_edge_among_volatile_noise_is_found():
    """One configuration earns a steady 0.05 %/day (sd 0.1 %: t about 8 over 250 days); 20 others are pure noise
    with a 3 % daily sd, whose best mean is several times larger than the edge by luck. Hansen's studentized
    statistic finds the edge; the raw maximum (what arch's SPA computes whatever its studentize flag says) does not."""
    rng = np.random.default_rng(1)
    m = rng.normal(0.0, 0.03, (250, 21))
    m[:, 0] = rng.normal(0.0005, 0.001, 250)
    assert spa_test(m, reps=500).p_value < 0.01
    raw = spa_test(m, reps=500, studentize=False)
    assert raw.p_value > 0.1 and raw.best != 0 and not raw.studentized


def test_spa_leaves_out_configurations_that_never_vary():
    rng = np.random.default_rng(2)
    m = rng.normal(0.0, 0.01, (120, 6))
    z = np.column_stack([m, np.zeros(120), np.zeros(120)])  # two configurations that never trade
    a, b = spa_test(m, reps=300, seed=3), spa_test(z, reps=300, seed=3)
    assert (b.n_configs, b.n_configs_tried, b.n_constant) == (7, 8, 1)
    assert b.p_value == a.p_value and b.p_upper == a.p_upper
    none = spa_test(np.zeros((50, 3)), reps=200)
    assert math.isnan(none.p_value) and none.n_constant == 1 and none.n_configs == 1
