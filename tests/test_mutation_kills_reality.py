"""Hansen's SPA wrapper (optimizer/validate/_reality.py): what mutation testing (bench/mutation) found unasserted --
boundaries of every input rule with their exact one-line errors, the naive t of the best column by hand, the
block size and resample settings as reported, the defaults, and the JSON form."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from optimizer.errors import ParameterError
from optimizer.validate._reality import RealityCheck, distinct_columns, spa_test


def _raises_exactly(message: str):
    return pytest.raises(ParameterError, match="^" + re.escape(message) + "$")


def _noise(t: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, (t, n))


@pytest.mark.parametrize("call, message", [
    (lambda: spa_test(np.zeros((9, 2))), "perf must be at least 10 rows (days), got perf='<array of shape (9, 2)>'"),
    (lambda: spa_test(np.zeros((10, 0))),
     "perf must be at least 1 column (configuration), got perf='<array of shape (10, 0)>'"),
    (lambda: spa_test(np.zeros((3, 3, 3))), "perf must be a 2-D array (days x configurations), got "
                                            "perf='<array of shape (3, 3, 3)>'"),
    (lambda: spa_test(np.full((10, 2), np.inf)), "perf must be all finite (no NaN/inf), got "
                                                 "perf='<array with non-finite values>'"),
    (lambda: spa_test(_noise(10, 2), reps=99), "reps must be an integer >= 100, got reps=99"),
    (lambda: spa_test(_noise(10, 2), reps=100.0), "reps must be an integer >= 100, got reps=100.0"),
    (lambda: spa_test(_noise(10, 2), block_size=0.5), "block_size must be None or >= 1, got block_size=0.5"),
])
def test_spa_refuses_with_one_exact_line(call, message):
    with _raises_exactly(message):
        call()


def test_spa_smallest_valid_inputs_and_reported_settings():
    m = _noise(10, 1, seed=1)
    r = spa_test(m, reps=100, block_size=1)  # 10 days, 1 configuration, 100 resamples, block 1: all allowed
    assert (r.n_days, r.n_configs, r.n_configs_tried, r.reps, r.block_size) == (10, 1, 1, 100, 1.0)
    assert 0.0 <= r.p_lower <= r.p_value <= r.p_upper <= 1.0
    # the block size: rounded when given, sqrt(days) (truncated) by default, as arch is asked for it
    assert spa_test(_noise(50, 3), reps=100, block_size=2.6).block_size == 3.0
    assert spa_test(_noise(50, 3), reps=100).block_size == 7.0
    # defaults: 1000 resamples, seed 0, studentized
    d = spa_test(_noise(30, 3, seed=2))
    assert d.reps == 1000 and d.studentized and d == spa_test(_noise(30, 3, seed=2), reps=1000, seed=0)
    assert d != spa_test(_noise(30, 3, seed=2), seed=1)


def test_spa_best_column_and_its_naive_t_by_hand():
    m = _noise(40, 4, seed=3)
    m[:, 2] += 0.004
    r = spa_test(m, reps=100)
    x = m[:, 2]
    assert r.best == 2 and r.best_mean == pytest.approx(x.mean())
    assert r.best_t == pytest.approx(x.mean() / (x.std(ddof=1) / math.sqrt(40)))
    # a best column that never varies has no t (NaN), and cannot be tested
    flat = np.column_stack([np.full(40, 0.01), _noise(40, 1, seed=4)[:, 0]])
    f = spa_test(flat, reps=100)
    assert f.best == 0 and math.isnan(f.best_t) and f.n_constant == 1 and f.n_configs == 2
    assert f.best_mean == pytest.approx(0.01)


def test_spa_to_dict_is_json_ready_and_defaults():
    none = spa_test(np.zeros((12, 2)), reps=100)  # nothing varies: NaN p-values
    d = none.to_dict()
    assert d["p_value"] is None and d["p_lower"] is None and d["p_upper"] is None and d["best_t"] is None
    assert d["n_constant"] == 1 and d["n_configs"] == 1 and d["n_configs_tried"] == 2 and d["studentized"] is True
    assert d["block_size"] == 3.0 and d["reps"] == 100 and d["n_days"] == 12
    rc = RealityCheck(0.1, 0.05, 0.2, 3, 4, 100, 0, 0.001, 2.0, 10.0, 500)
    assert rc.studentized is True and rc.n_constant == 0


def test_distinct_columns_keep_the_first_of_each_in_column_order():
    a = np.array([[1.0, 2.0, 1.0, 3.0, 2.0], [0.0, 1.0, 0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(distinct_columns(a), [0, 1, 3])
    np.testing.assert_array_equal(distinct_columns([[1, 1], [2, 2]]), [0])  # integers: read as floats


def test_spa_nothing_to_test_keeps_the_descriptive_figures():
    m = np.zeros((12, 2))
    m[:, 1] = -0.01
    r = spa_test(m, reps=100)
    assert math.isnan(r.p_value) and math.isnan(r.p_lower) and math.isnan(r.p_upper) and math.isnan(r.best_t)
    assert r.best == 0 and r.best_mean == 0.0 and r.n_constant == 2 and r.n_configs == 2


def test_spa_is_arch_spa_on_the_studentized_distinct_columns():
    from arch.bootstrap import SPA
    m = _noise(60, 5, seed=7)
    m[:, 3] += 0.002
    m = np.column_stack([m, m[:, 1]])  # a repeat: tested once
    r = spa_test(m, reps=150, block_size=4, seed=9)
    d = m[:, :5] / m[:, :5].std(axis=0, ddof=1)
    ref = SPA(np.zeros(60), -d, block_size=4, reps=150, bootstrap="stationary", studentize=True,
              seed=np.random.default_rng(9))
    ref.compute()
    pv = ref.pvalues
    assert (r.p_value, r.p_lower, r.p_upper) == (float(pv["consistent"]), float(pv["lower"]), float(pv["upper"]))


def test_spa_reads_decimal_returns_as_floats():
    from decimal import Decimal
    m = _noise(20, 3, seed=8)
    dec = [[Decimal(str(float(v))) for v in row] for row in m]
    assert spa_test(dec, reps=100) == spa_test(m, reps=100)
