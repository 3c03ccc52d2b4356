"""mend21: the last audits' leftovers (brief S-mend21)."""

from __future__ import annotations

import math

import numpy as np
import pytest

# ---- 1. a series without dispersion: its Sharpe ratio / t statistic is the documented value, not ~1e16 --------


def _flat_noisy() -> np.ndarray:
    """40 daily returns of a close growing 1 % a day: 0.01 up to rounding (ptp 4.4e-16), never exactly constant."""
    c = 100.0 * 1.01 ** np.arange(41)
    r = c[1:] / c[:-1] - 1.0
    assert np.ptp(r) > 0.0 and np.std(r, ddof=1) < 1e-13  # the trap: not exactly constant, no real dispersion
    return r


def test_equity_bootstrap_sharpe_of_a_constant_series_is_inf_or_nan() -> None:
    from optimizer.validate.stats import equity_bootstrap, equity_point

    up = np.full(252, 0.001)
    assert np.std(up, ddof=1) > 0.0  # what made the Sharpe 7.3e16 before
    s = equity_bootstrap(up, reps=100).sharpe
    assert (s.point, s.lo, s.hi) == (math.inf, math.inf, math.inf)
    down = equity_bootstrap(-up, reps=100).sharpe
    assert (down.point, down.lo, down.hi) == (-math.inf, -math.inf, -math.inf)
    zero = equity_bootstrap(np.zeros(252), reps=100).sharpe
    assert math.isnan(zero.point) and math.isnan(zero.lo) and math.isnan(zero.hi)
    assert equity_point(up)["sharpe"] == math.inf
    assert equity_point(_flat_noisy())["sharpe"] == math.inf
    # a series with dispersion keeps its ratio: mean / std(ddof=1) × sqrt(252), by hand
    r = np.array([0.01, -0.005, 0.002, 0.0, 0.003, -0.001, 0.004, 0.006, -0.002, 0.001])
    assert equity_point(r)["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252.0), rel=1e-12)


def test_trade_bootstrap_sharpe_of_equal_trades_is_inf() -> None:
    from optimizer.validate.stats import bootstrap_ci

    ci = bootstrap_ci(np.full(11, 0.01), "sharpe", n_boot=100, seed=0)["sharpe"]
    assert ci.point == math.inf
    r = np.array([0.02, -0.01, 0.03, 0.0, 0.01])
    assert bootstrap_ci(r, "sharpe", n_boot=100, seed=0)["sharpe"].point == pytest.approx(r.mean() / r.std(ddof=1))


def test_sharpe_stats_and_t_stats_of_a_series_constant_up_to_rounding() -> None:
    from optimizer.validate._inference import hac_mean
    from optimizer.validate._sharpe import excess_t_stat, sharpe_stats

    r = _flat_noisy()
    m = sharpe_stats(r)
    assert m["sr"] == math.inf and math.isnan(m["skew"]) and math.isnan(m["kurtosis"])
    assert sharpe_stats(-r)["sr"] == -math.inf
    mean, t, n = excess_t_stat(r)
    assert (t, n) == (math.inf, 40) and mean == pytest.approx(0.01)
    h = hac_mean(r)
    assert math.isnan(h.t) and math.isnan(h.t_iid) and math.isnan(h.se)
    # with dispersion the statistics are the ordinary ones
    x = np.array([0.02, -0.01, 0.03, 0.0, 0.01, 0.005])
    assert sharpe_stats(x)["sr"] == pytest.approx(x.mean() / x.std(ddof=1))
    assert excess_t_stat(x)[1] == pytest.approx(x.mean() / (x.std(ddof=1) / math.sqrt(6)))


def test_dependent_inference_t_iid_of_equal_trade_excesses_is_nan() -> None:
    from optimizer.validate._inference import DailyExcess, dependent_inference

    rng = np.random.default_rng(3)
    total = rng.normal(0.001, 0.01, 60)
    ex = np.full(11, 0.01)
    assert np.std(ex, ddof=1) > 0.0  # rounding: 1.8e-18, a t of 1.8e16 before
    d = DailyExcess(0, 60, total, total.copy(), np.ones(60), np.full(60, 0.2), ex, total.copy())
    assert math.isnan(dependent_inference(d, reps=100).t_iid)
    ex2 = np.array([0.01, 0.02, -0.01, 0.0, 0.03, 0.01, 0.02, 0.0, -0.02, 0.01, 0.02])
    d2 = DailyExcess(0, 60, total, total.copy(), np.ones(60), np.full(60, 0.2), ex2, total.copy())
    assert dependent_inference(d2, reps=100).t_iid == pytest.approx(ex2.mean() / (ex2.std(ddof=1) / math.sqrt(11)))


def test_spa_best_t_and_constant_column_up_to_rounding() -> None:
    from optimizer.validate._reality import spa_test

    noise = np.random.default_rng(0).normal(0.0, 0.01, 40)
    res = spa_test(np.column_stack([_flat_noisy(), noise]), reps=100, seed=0)
    assert res.best == 0 and math.isnan(res.best_t)  # 5.7e14 before
    assert res.n_constant == 1  # the flat column is left out of the test, as an exactly constant one is


def _one_symbol_panel(T: int = 30):
    from optimizer.engine.panel import Panel

    dates = np.datetime64("2024-01-01") + np.arange(T)
    close = (100.0 * 1.01 ** np.arange(T))[:, None]
    opens = np.vstack([[[99.0]], close[:-1]])  # each open is the previous close: every held day earns 1 %
    return Panel(dates=dates, symbols=("AAA",), fields={"close": close, "open": opens})


def _trades(entry, exit_, entry_price, exit_price):
    from optimizer.engine.simulate import Trades

    n = len(entry)
    return Trades(symbol=np.zeros(n, np.int64), signal_idx=np.asarray(entry) - 1, entry_idx=np.asarray(entry),
                  exit_idx=np.asarray(exit_), entry_price=np.asarray(entry_price, float),
                  exit_price=np.asarray(exit_price, float), exit_reason=np.zeros(n, np.int64), score=np.zeros(n))


def test_run_metrics_sharpes_of_equal_trades_and_a_flat_portfolio_are_zero() -> None:
    from optimizer.engine.metrics import portfolio_returns, run_metrics
    from optimizer.engine.simulate import Span

    p = _one_symbol_panel()
    n = 11  # eleven trades of exactly +18.3 %: their std (ddof=1, two plain passes) is rounding, not 0
    ent = np.arange(n) * 2 + 1
    m = run_metrics(_trades(ent, ent + 1, [100.0] * n, [118.3] * n), p, Span(0, 30, 30), n)
    assert m["avg_return"] == pytest.approx(0.183)
    assert m["sharpe"] == 0.0 and m["excess_sharpe"] == 0.0  # 6.3e15 before (ENGINE.md: no dispersion -> 0)
    # one position held from row 1 to 29 over [1, 29): every day +1 % up to rounding -> portfolio_sharpe 0
    t = _trades([1], [29], [p["open"][1, 0]], [p["close"][29, 0]])
    span = Span(1, 29, 29)
    daily = portfolio_returns(t, p, span)
    assert np.ptp(daily) > 0.0 and np.allclose(daily, 0.01, rtol=0, atol=1e-15)
    assert run_metrics(t, p, span, 1)["portfolio_sharpe"] == 0.0  # 1.6e15 before
    # with dispersion the ratios are the ordinary ones
    m2 = run_metrics(_trades([1, 5, 9], [2, 6, 10], [100.0] * 3, [101.0, 99.0, 103.0]), p, Span(0, 30, 30), 3)
    nets = np.array([0.01, -0.01, 0.03])
    assert m2["sharpe"] == pytest.approx(nets.mean() / nets.std(ddof=1), rel=1e-9)


# ---- 2. --universe naming a symbol the store lacks: the flag and the value as typed -----------------------------


def test_universe_flag_the_store_lacks_is_named_as_typed(synth_db, tmp_path) -> None:
    import json

    from click.testing import CliRunner

    from optimizer.cli import main

    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": {}}))
    for cmd in (("signals", "--no-save"), ("backtest", "--no-save")):
        args = [cmd[0], "--params", str(p), "--db", str(synth_db), "--universe", "BRK-B", cmd[1],
                "--out", str(tmp_path / "o")]
        res = CliRunner().invoke(main, args, env={"ACCUMOPT_DB": None, "ACCUMOPT_OUTPUT": None})
        assert res.exit_code == 2, (cmd, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1, (cmd, res.output)
        # before: "error: universe lists 1 symbol that daily_metrics of ... does not hold: BRK.B (...), got
        # universe=['BRK.B']"
        assert lines[0].startswith("error: --universe lists 1 symbol that daily_metrics of "), (cmd, lines[0])
        assert ": BRK.B (" in lines[0] and lines[0].endswith("got BRK-B"), (cmd, lines[0])


# ---- 3. a [data] start / end past the store's sessions is said once ---------------------------------------------

_SPAN_SPEC = """
[data]
universe = "tier1"
{span}
reserve_fraction = 0.1
[space]
variant = {{ type = "categorical", choices = ["A", "B"] }}
exit = "fixed_10d"
[cv]
n_splits = 2
[objective]
min_trades = 0
[sampler]
name = "random"
seed = 3
[pruner]
name = "none"
[run]
n_trials = 2
[walkforward]
train = 120
test = 60
unit = "sessions"
"""


def test_span_lines_say_a_data_span_past_the_stores_sessions(synth_db) -> None:
    from optimizer.study.data import load_study_data, span_lines
    from optimizer.study.spec import parse_spec

    def lines(span: str) -> list[str]:
        spec = parse_spec(_SPAN_SPEC.format(span=span), "s.toml")
        return span_lines(spec, load_study_data(spec, synth_db)[0])

    # the synthetic store's sessions: 2023-01-03 .. 2024-06-28 (a Friday)
    assert lines('start = 2022-06-01\nend = 2030-06-28') == [
        "[data] start = 2022-06-01 is before the store's first session 2023-01-03 (of daily_metrics for the "
        "universe): the study's data starts there",
        "[data] end = 2030-06-28 is after the store's last session 2024-06-28 (of daily_metrics for the universe): "
        "the study's data ends there"]
    assert lines('start = 2023-01-03\nend = 2024-06-28') == []  # the store's own ends
    assert lines('start = 2023-01-01\nend = 2024-06-30') == []  # a holiday / weekend beyond them: no session missing
    assert lines('end = 2024-07-01') == ["[data] end = 2024-07-01 is after the store's last session 2024-06-28 "
                                         "(of daily_metrics for the universe): the study's data ends there"]


def test_study_run_and_walkforward_say_a_start_before_the_stores_first_session(synth_db, tmp_path) -> None:
    from tests._cli_helpers import cli

    spec = tmp_path / "s.toml"
    spec.write_text(_SPAN_SPEC.format(span="start = 2022-06-01\nend = 2023-12-29"), encoding="utf-8")
    note = ("[data] start = 2022-06-01 is before the store's first session 2023-01-03 (of daily_metrics for the "
            "universe): the study's data starts there")
    res = cli("study", "run", spec, "--db", synth_db, "--storage", f"sqlite:///{tmp_path / 'st.db'}",
              "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert res.stderr.count(note) == 1, res.stderr
    res = cli("walkforward", spec, "--db", synth_db, "--out", tmp_path / "wf")
    assert res.exit_code == 0, res.output
    assert res.stderr.count(note) == 1, res.stderr


# ---- 4. memory_budget restores DuckDB's memory_limit exactly, not from its rounded text --------------------------


class _Recording:
    """A DuckDB connection that records the statements memory_budget runs (DuckDB shows the limit only truncated,
    so that the default came back exactly is observable only as the statement that restores it)."""

    def __init__(self, con) -> None:
        self.con, self.sql = con, []

    def execute(self, query, *args):
        self.sql.append(query)
        return self.con.execute(query, *args)


def test_memory_budget_restores_the_default_limit_exactly(tmp_path) -> None:
    import duckdb

    from optimizer.data.store import memory_budget

    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    try:
        shown = lambda: con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]  # noqa: E731
        before = shown()  # DuckDB's default, 80 % of the RAM: a non-round number of bytes shown rounded
        rec = _Recording(con)
        with memory_budget(rec, "16MB"):
            assert shown() == "15.2 MiB"
        assert shown() == before
        assert rec.sql[-1] == "RESET memory_limit", rec.sql  # the default: exact
        # a limit set otherwise, a non-round number of bytes, is shown the same after (before: '1.0 GiB', the text
        # '1.1 GiB' set back is 1.1 x 2^30 bytes, which DuckDB's truncation shows as 1.0), also after a second block
        con.execute("SET memory_limit = '1234567891B'")
        for _ in range(2):
            with memory_budget(con, "16MB"):
                assert shown() == "15.2 MiB"
            assert shown() == "1.1 GiB"
    finally:
        con.close()


# ---- 5. the one-book line says what each of its numbers counts ---------------------------------------------------


def test_book_text_says_what_each_number_counts() -> None:
    from optimizer.validate.walkforward import book_text

    b = {"windows_blocked": 6, "symbols_blocked": 13, "refused": 5, "added": 1, "capped": 0}
    # before: "6 window(s), 13 held symbol(s) blocked: 5 entries refused, 1 added" (13 symbols and 5 entries read
    # as one count of the same things)
    assert book_text({"book": b}) == (
        "6 window(s) re-run with the book's positions: 13 held symbol(s) blocked (counted per window), 5 of those "
        "windows' own entries refused, 1 entry made instead")
    assert book_text({"book": {**b, "capped": 2, "added": 3}}) == (
        "6 window(s) re-run with the book's positions: 13 held symbol(s) blocked (counted per window), 5 of those "
        "windows' own entries refused (2 by the position caps), 3 entries made instead")
    assert book_text({"book": {**b, "windows_blocked": 0}}) == (
        "no window blocked: no trade was held into a later window's test span")
