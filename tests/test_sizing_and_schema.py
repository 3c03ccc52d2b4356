"""Volatility-targeted sizing and schema migration of an older (darkpool-pipeline) database."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from optimizer.data.store import SCHEMA_VERSION, connect
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.metrics import portfolio_returns
from optimizer.engine.panel import Panel


def _two_symbol_panel() -> Panel:
    """Symbol L moves 1%/day with a tight range, H moves 1%/day with a range 4x wider; both signal on day 20."""
    T = 40
    dates = pd.bdate_range("2024-01-02", periods=T)
    rows = []
    for sym, rng in (("L", 0.005), ("H", 0.02)):
        close = 100 * 1.01 ** np.arange(T) * (1 + (0.0 if sym == "L" else 0.03 * (-1.0) ** np.arange(T)))
        for t in range(T):
            c = close[t]
            rows.append({"date": dates[t], "symbol": sym, "open": c / 1.005, "high": c * (1 + rng), "low": c / 1.005 * (1 - rng),
                         "close": c, "short_buy_volume": 1.0, "short_sell_volume": 1.0, "short_buy_sell_ratio": 1.0})
    return Panel.from_frame(pd.DataFrame(rows))


def test_atr_sizing_weights_inverse_to_atr_pct():
    p = _two_symbol_panel()
    disp = np.full(p.shape, 50.0)
    disp[20, :] = 90.0
    ev = Evaluator(p)
    cfg = Config.from_params({"exit": "fixed_5d", "sizing": "atr"})
    res = ev.run(cfg, display=disp)
    assert len(res.trades) == 2
    w = ev.weights(cfg, res.trades)
    a = ev.atr_pct()[20]
    got = dict(zip(np.array(p.symbols)[res.trades.symbol], w))
    exp = dict(zip(p.symbols, 1.0 / a))
    assert got["L"] == exp["L"] and got["H"] == exp["H"]
    assert got["L"] > 2.5 * got["H"]  # the calm name gets the larger weight
    # the weighted portfolio differs from the equal-weight one exactly by those weights
    eq = portfolio_returns(res.trades, p, res.span, np.ones(len(w)))  # equal weights given explicitly
    vt = portfolio_returns(res.trades, p, res.span)  # the trades' own sizing
    np.testing.assert_array_equal(vt, portfolio_returns(res.trades, p, res.span, w))
    assert not np.allclose(eq, vt)
    # on a day both are held, the weighted return is the weight-average of the two symbols' close-to-close returns
    d = 23 - res.span.sig_start
    C = p["close"]
    r = C[23] / C[22] - 1.0
    wl, wh = got["L"], got["H"]
    il, ih = p.symbols.index("L"), p.symbols.index("H")
    assert vt[d] == pytest.approx((wl * r[il] + wh * r[ih]) / (wl + wh), abs=1e-12)
    assert eq[d] == pytest.approx((r[il] + r[ih]) / 2, abs=1e-12)
    assert Evaluator(p).run(Config.from_params({"exit": "fixed_5d"}), display=disp).metrics["portfolio_sharpe"] != res.metrics["portfolio_sharpe"]


def test_unknown_sizing_is_rejected_with_the_valid_choices():
    import pytest

    from optimizer.errors import ParameterError

    with pytest.raises(ParameterError, match="sizing must be one of equal, atr, fixed_fractional, kelly, "
                                             "got sizing='martingale'"):
        Config.from_params({"sizing": "martingale"})


def test_opening_a_darkpool_pipeline_database_migrates_it_without_touching_its_tables(tmp_path):
    db = tmp_path / "darkpool.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE daily_metrics (date DATE, symbol VARCHAR, short_buy_sell_ratio DOUBLE)")
    con.execute("INSERT INTO daily_metrics VALUES ('2024-01-02', 'AAPL', 1.3)")
    con.close()
    con = connect(db)
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"finra_short_daily", "prices_daily", "ingest_log", "symbol_map"} <= tables
        assert con.execute("SELECT * FROM daily_metrics").fetchall() == [(pd.Timestamp("2024-01-02").date(), "AAPL", 1.3)]
    finally:
        con.close()
    # reopening is a no-op (already at the current version)
    con = connect(db)
    assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    con.close()
