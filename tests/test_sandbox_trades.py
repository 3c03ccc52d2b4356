"""The sandbox draws the trades ``backtest`` reports: price panel, entry / exit markers, outcome colours, hover.

The oracle is ``optimizer.backtest.backtest`` (the universe run the ``backtest`` command makes) on the planted store:
for the same parameters, the symbol's entries and exits in the sandbox figure (library and ``accumopt sandbox``
HTML) are exactly its trades there, each marker in the trace of its outcome, and a configuration with position caps
is simulated on its universe (alone, the symbol would trade differently).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.backtest import backtest
from optimizer.cli import main
from optimizer.engine.evaluate import Config
from optimizer.errors import ParameterError
from optimizer.report.sandbox import OUTCOME_COLORS, sandbox_figure, sandbox_run, sandbox_trades

PARAMS = {"variant": "B", "z_window": 15, "buy_threshold": 65, "sell_threshold": 35, "exit": "first_dist",
          "time_stop": 20, "stop_loss": 0.08}
SYMBOL = "AAPL"


def _backtest_trades(db: Path, params: dict, symbol: str = SYMBOL, universe: str = "tier1+3") -> pd.DataFrame:
    run = backtest(params, db, universe, save=False)
    df = run.result.trades.to_frame(run.panel)
    return df[df["symbol"] == symbol].reset_index(drop=True)


def _day(v) -> str:
    return pd.Timestamp(v).strftime("%Y-%m-%d")


def _markers(data: list[dict], kind: str) -> dict[str, list[tuple[str, float]]]:
    """{outcome: [(date, price), ...]} of the ``Entries (...)`` / ``Exits (...)`` traces."""
    out = {}
    for t in data:
        m = re.fullmatch(rf"{kind} \((win|loss|open)\)", t.get("name") or "")
        if m:
            out[m.group(1)] = [(x[:10], float(y)) for x, y in zip(t["x"], t["y"])]
    return out


def _trace_dicts(fig) -> list[dict]:
    return [t.to_plotly_json() for t in fig.data]


def _expected(bt: pd.DataFrame, kind: str) -> dict[str, list[tuple[str, float]]]:
    col, px = ("entry_date", "entry_price") if kind == "Entries" else ("exit_date", "exit_price")
    outcome = np.where(bt["open_at_end"], "open", np.where(bt["net_ret"] > 0, "win", "loss"))
    return {o: sorted((_day(d), float(p)) for d, p, oo in zip(bt[col], bt[px], outcome) if oo == o)
            for o in ("win", "loss", "open")}


def test_sandbox_markers_are_the_backtest_trades(synth_db):
    bt = _backtest_trades(synth_db, PARAMS)
    assert len(bt) >= 4 and (bt["net_ret"] > 0).any() and (bt["net_ret"] <= 0).any()  # wins and losses to colour
    run = sandbox_run(synth_db, SYMBOL, params=PARAMS)
    assert run.config.thresholds.buy == 65 and run.config.score.z_window == 15  # the configuration's, not 70/30
    got = run.trades
    assert [_day(d) for d in got["entry_date"]] == [_day(d) for d in bt["entry_date"]]
    assert [_day(d) for d in got["exit_date"]] == [_day(d) for d in bt["exit_date"]]
    np.testing.assert_array_equal(got["entry_price"].to_numpy(), bt["entry_price"].to_numpy())
    np.testing.assert_array_equal(got["net_ret"].to_numpy(), bt["net_ret"].to_numpy())
    assert list(got["exit_reason"]) == list(bt["exit_reason"])
    fig = sandbox_figure(run.panel, SYMBOL, config=run.config, trades=run.trades)
    data = _trace_dicts(fig)
    price = [t for t in data if t.get("name") == "Price"]
    assert len(price) == 1 and price[0]["type"] == "candlestick" and price[0]["yaxis"] == "y"
    for kind in ("Entries", "Exits"):
        want = _expected(bt, kind)
        have = _markers(data, kind)
        assert {o: sorted(v) for o, v in have.items()} == want, kind
    for t in data:  # every marker of an outcome trace has the outcome's colour, on the price axis
        m = re.fullmatch(r"(Entries|Exits) \((win|loss|open)\)", t.get("name") or "")
        if m:
            assert t["marker"]["color"] == OUTCOME_COLORS[m.group(2)] and t["yaxis"] == "y"
    # the hover says the return and the exit reason of the trade
    win = next(t for t in data if t.get("name") == "Exits (win)")
    r = bt[(bt["net_ret"] > 0) & ~bt["open_at_end"]].iloc[0]
    text = win["customdata"][[x[:10] for x in win["x"]].index(_day(r["exit_date"]))]
    assert f"net {100 * r['net_ret']:+.2f}%" in text and f"({r['exit_reason']})" in text
    # the configuration score row carries the configuration's thresholds
    shapes = [s for s in fig.layout.to_plotly_json()["shapes"] if s.get("yref") == "y2"]
    assert sorted(s["y0"] for s in shapes) == [35.0, 65.0]


def test_a_shown_range_keeps_the_simulation_and_shows_its_trades(synth_db):
    bt = _backtest_trades(synth_db, PARAMS)
    run = sandbox_run(synth_db, SYMBOL, start="2024-01-01", params=PARAMS)
    fig = sandbox_figure(run.panel, SYMBOL, start="2024-01-01", config=run.config, trades=run.trades)
    entries = sorted(d for v in _markers(_trace_dicts(fig), "Entries").values() for d, _ in v)
    assert entries == sorted(_day(d) for d in bt["entry_date"] if _day(d) >= "2024-01-01")
    assert len(entries) < len(bt)  # earlier trades are simulated (positions carry in) but not drawn


def test_position_caps_run_on_the_universe(synth_db):
    capped = {**PARAMS, "max_positions": 2}
    bt = _backtest_trades(synth_db, capped)
    alone = sandbox_trades(sandbox_run(synth_db, SYMBOL, params=PARAMS).panel, SYMBOL,
                           sandbox_run(synth_db, SYMBOL, params=PARAMS).config)
    run = sandbox_run(synth_db, SYMBOL, params=capped, universe="tier1+3")
    assert [_day(d) for d in run.trades["entry_date"]] == [_day(d) for d in bt["entry_date"]]
    assert len(run.trades) < len(alone)  # the cap binds: the symbol alone would trade more
    with pytest.raises(ParameterError, match="position caps"):
        sandbox_trades(run.panel, SYMBOL, run.config)


def _html_figure(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"responsive"', text, re.S)
    assert m, f"figure JSON not found in {path}"
    return json.loads(m.group(1))


def test_sandbox_command_with_a_params_file(synth_db, tmp_path):
    doc = {"study": "x", "number": 3, "value": 0.1, "params": PARAMS, "costs": {"commission_bps": 2.0, "slippage_bps": 4.0}}
    pf = tmp_path / "best.json"
    pf.write_text(json.dumps(doc), encoding="utf-8")
    root = tmp_path / "sb"
    res = CliRunner().invoke(main, ["sandbox", SYMBOL.lower(), "--params", str(pf), "--db", str(synth_db), "--out",
                                    str(root), "--no-png"], env={"ACCUMOPT_DB": None})
    assert res.exit_code == 0, res.output
    (out,) = (root / "sandbox").glob("*.html")  # under the output root, named from the symbol and the file
    digest = hashlib.sha256(pf.read_bytes()).hexdigest()[:8]  # the file's stem and content: a/best.json != b/best.json
    assert out.name == f"{SYMBOL}_p-best-{digest}.html" and str(out) in res.output
    data = _html_figure(out)
    bt = _backtest_trades(synth_db, {**PARAMS, "commission_bps": 2.0, "slippage_bps": 4.0})
    for kind in ("Entries", "Exits"):
        assert {o: sorted(v) for o, v in _markers(data, kind).items()} == _expected(bt, kind)
    # flags override the file, as for backtest; a bad value is refused by the engine's rule
    res = CliRunner().invoke(main, ["sandbox", SYMBOL, "--params", str(pf), "--buy", "30", "--db", str(synth_db),
                                    "--out", str(root), "--no-png"])
    assert res.exit_code == 2 and "sell_threshold" in res.stderr


def test_the_sandbox_guards_the_final_reserve_as_backtest_does(synth_db, tmp_path):
    """Without --final the sandbox ends before the reserve (its trades are backtest's); an end inside the reserve is
    refused naming the option; with final it simulates through the reserve, as ``backtest(final=True)``."""
    import shutil

    from optimizer.study.reserve import openings

    db = tmp_path / "store.duckdb"  # openings are written to the store's ledger: a copy, not the shared store
    shutil.copy(synth_db, db)
    full = backtest(PARAMS, db, "tier1+3", save=False, final=True)
    df = full.result.trades.to_frame(full.panel)
    want = sorted(_day(d) for d in df[df["symbol"] == SYMBOL]["entry_date"])
    with pytest.raises(ParameterError, match=r"sandbox \(--end\) must end before the final reserve"):
        sandbox_run(db, SYMBOL, end=str(full.panel.dates[-1])[:10], params=PARAMS)
    before = len(openings(db))
    run = sandbox_run(db, SYMBOL, params=PARAMS, final=True)
    assert sorted(_day(d) for d in run.trades["entry_date"]) == want
    assert len(openings(db)) == before + 1
    guarded = sandbox_run(db, SYMBOL, params=PARAMS)
    assert len(guarded.trades) < len(run.trades)


def test_sandbox_of_a_trials_configuration_draws_the_trades_backtest_reproduces(synth_db, tmp_path):
    """A ``study best`` document carries the trial's regime filter, min_periods, panel start and signal span: the
    sandbox draws the trades ``backtest --params`` reproduces from it. Before, it simulated the bare parameters
    from the store's first session with no regime filter: on a RISK_ON trial it drew entries the configuration
    never takes."""
    import dataclasses

    base = backtest(PARAMS, synth_db, "tier1+3", start="2023-02-01", regime="RISK_ON", save=False)
    rec = dataclasses.replace(base.record, signal_start="2023-04-03", min_periods=12)
    doc = {"study": "x", "number": 0, "value": 0.1, "params": dict(rec.params), "metrics": {}, "config": rec.to_dict()}
    pf = tmp_path / "best.json"
    pf.write_text(json.dumps(doc), encoding="utf-8")
    run = backtest(rec.params, synth_db, record=rec, save=False)
    df = run.result.trades.to_frame(run.panel)
    bt = df[df["symbol"] == SYMBOL].reset_index(drop=True)
    plain = _backtest_trades(synth_db, PARAMS)
    assert len(bt) >= 2 and sorted(map(_day, bt["entry_date"])) != sorted(map(_day, plain["entry_date"]))
    _assert_the_cli_sandbox_draws(synth_db, pf, bt, tmp_path / "sb")
    import optimizer as ao  # the notebook's call with the same document draws the same trades

    api = _trace_dicts(ao.sandbox_figure(synth_db, SYMBOL, doc))
    for kind in ("Entries", "Exits"):
        assert {o: sorted(v) for o, v in _markers(api, kind).items()} == _expected(bt, kind), kind


def _assert_the_cli_sandbox_draws(db, params_file, bt, root) -> None:
    """``accumopt sandbox SYMBOL --params params_file`` draws exactly the entries and exits of the trades ``bt``."""
    res = CliRunner().invoke(main, ["sandbox", SYMBOL, "--params", str(params_file), "--db", str(db), "--out", str(root),
                                    "--no-png"], env={"ACCUMOPT_DB": None})
    assert res.exit_code == 0, res.output
    (out,) = (root / "sandbox").glob("*.html")
    data = _html_figure(out)
    for kind in ("Entries", "Exits"):
        assert {o: sorted(v) for o, v in _markers(data, kind).items()} == _expected(bt, kind), kind


def test_sandbox_of_a_params_file_with_a_span_start_draws_backtests_trades(synth_db, tmp_path):
    """A loose parameters file that states its span start (``"start"``, as ``backtest --params`` and ``signals``
    read it) is simulated from there, as ``backtest --params`` runs it. Before, the sandbox dropped the file's
    start (it used the file's universe and regime, not its start) and drew trades from the store's first session:
    entries the backtest of the same file never took."""
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({**PARAMS, "start": "2023-09-01"}), encoding="utf-8")
    run = backtest(PARAMS, synth_db, "tier1+3", start="2023-09-01", save=False)
    df = run.result.trades.to_frame(run.panel)
    bt = df[df["symbol"] == SYMBOL].reset_index(drop=True)
    assert len(bt) >= 2 and len(bt) < len(_backtest_trades(synth_db, PARAMS))
    _assert_the_cli_sandbox_draws(synth_db, pf, bt, tmp_path / "sb")


def test_sandbox_score_is_the_display_the_trades_come_from(synth_db):
    """The "Configuration score" row is the display the engine trades on. It was ``display_score`` of the pooled
    score parameters: a configuration with regime-conditional weights or the options boost drew a score line other
    than the one its entries crossed (real prices, RISK_ON weights: AAPL 40.6 in the sandbox, 46.2 on the signal
    sheet and in the backtest on 2024-06-14), and a regime-conditional buy threshold was drawn as the pooled one."""
    from optimizer.report.sandbox import sandbox_data

    params = {**PARAMS, "w_short_risk_on": 0.8, "w_lit_risk_on": 0.1, "w_price_risk_on": 0.1,
              "buy_threshold_risk_off": 80, "options_boost": 1.0}
    bt = backtest(params, synth_db, "tier1+3", save=False)
    want = pd.Series(bt.result.display[:, bt.panel.symbols.index(SYMBOL)],
                     index=pd.to_datetime(np.asarray(bt.panel.dates, dtype="datetime64[D]")))
    run = sandbox_run(synth_db, SYMBOL, params=params)
    df = sandbox_data(run.panel, SYMBOL, config=run.config).set_index("date")
    assert len(df) == len(want) and np.allclose(df["score_config"], want.reindex(df.index), equal_nan=True)
    plain = sandbox_data(run.panel, SYMBOL, config=Config.from_params(
        {k: v for k, v in params.items() if "risk" not in k and k != "options_boost"})).set_index("date")
    assert not np.allclose(df["score_config"], plain["score_config"], equal_nan=True)  # the settings matter here
    sig = pd.to_datetime(run.trades["signal_date"])
    assert len(sig) >= 3
    assert np.allclose(df.loc[sig, "score_config"], run.trades["score"])  # each entry's signal is on the drawn line
    assert (df.loc[sig, "score_config"].to_numpy() >= df.loc[sig, "buy_threshold"].to_numpy()).all()
    assert set(df["buy_threshold"].unique()) == {65.0, 80.0}  # RISK_OFF sessions: 80
    fig = sandbox_figure(run.panel, SYMBOL, config=run.config, trades=run.trades)
    assert "Buy threshold (by regime)" in {t.name for t in fig.data}
