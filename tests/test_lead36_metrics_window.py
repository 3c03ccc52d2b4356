"""A rebuild of daily_metrics that names no z-window keeps the window the stored table was built with: `evening`
(and `data synth --db`, a plain `metrics build`) no longer reset a user's `metrics build --z-window 30` to 20.
(Found by explore17; fails before: the rebuild stored z_window 20.)"""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.data.metrics import (
    DEFAULT_MIN_LIT_VOLUME, DEFAULT_Z_WINDOW, build_daily_metrics, stored_min_lit_volume, stored_z_window,
)
from optimizer.data.store import connect
from optimizer.data.synth import SynthConfig, synth_new_store


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zwin")
    synth_new_store(SynthConfig(seed=3, start="2024-01-02", end="2024-06-28", n_symbols=4), tmp / "raw", tmp / "s.duckdb")
    c = connect(tmp / "s.duckdb")
    yield c
    c.close()


def _windows(con):
    return con.execute("SELECT DISTINCT z_window, z_min_periods FROM daily_metrics ORDER BY 1").fetchall()


def test_a_rebuild_naming_no_window_keeps_the_stored_one(con):
    build_daily_metrics(con, z_window=30, z_min_periods=25)
    z30 = con.execute("SELECT short_buy_sell_ratio_z FROM daily_metrics ORDER BY symbol, date").fetchnumpy()
    assert stored_z_window(con) == (30, 25)
    out = build_daily_metrics(con)  # what evening and data synth --db call
    assert (out["z_window"], out["z_min_periods"]) == (30, 25)
    assert _windows(con) == [(30, 25)]
    again = con.execute("SELECT short_buy_sell_ratio_z FROM daily_metrics ORDER BY symbol, date").fetchnumpy()
    np.testing.assert_array_equal(z30["short_buy_sell_ratio_z"], again["short_buy_sell_ratio_z"])
    # a window named explicitly still wins, with its own min_periods
    out = build_daily_metrics(con, z_window=10)
    assert (out["z_window"], out["z_min_periods"]) == (10, 10) and _windows(con) == [(10, 10)]


def test_a_store_without_a_built_table_gets_the_default_window():
    c = connect(":memory:")
    try:
        assert stored_z_window(c) is None
        c.execute("INSERT INTO prices_daily (date, symbol, open, high, low, close, volume, source) "
                  "VALUES (DATE '2024-01-02', 'AAA', 1, 1, 1, 1, 100, 'x')")
        out = build_daily_metrics(c)
        assert out["z_window"] == DEFAULT_Z_WINDOW == 20 and out["z_min_periods"] == 20
    finally:
        c.close()


def _imbalances(con) -> int:
    return con.execute("SELECT count(lit_flow_imbalance) FROM daily_metrics").fetchone()[0]


def test_a_rebuild_naming_no_lit_floor_keeps_the_stored_one(con, monkeypatch):
    """The same for the lit-volume floor: after `metrics build --min-lit-volume N`, `evening` (MIN_LIT_VOLUME unset)
    rebuilt at 10,000 (fails before: the plain rebuild counted the default floor's imbalances)."""
    from optimizer.settings import Settings

    monkeypatch.delenv("MIN_LIT_VOLUME", raising=False)
    build_daily_metrics(con)
    at_default = _imbalances(con)
    out = build_daily_metrics(con, min_lit_volume=10**9)  # `metrics build --min-lit-volume 1000000000`
    assert out["min_lit_volume"] == 10**9 and _imbalances(con) == 0 < at_default
    assert stored_min_lit_volume(con) == 10**9
    out = build_daily_metrics(con, min_lit_volume=Settings.from_env().min_lit_volume)  # what evening passes
    assert out["min_lit_volume"] == 10**9 and _imbalances(con) == 0
    monkeypatch.setenv("MIN_LIT_VOLUME", "10000")  # the variable set by the user wins
    out = build_daily_metrics(con, min_lit_volume=Settings.from_env().min_lit_volume)
    assert out["min_lit_volume"] == 10_000 and _imbalances(con) == at_default
    assert stored_min_lit_volume(con) == DEFAULT_MIN_LIT_VOLUME
