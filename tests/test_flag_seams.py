"""Flags of `backtest` / `sandbox` as a new user writes them: each takes effect or is refused with one line.

Found by driving the commands on real prices (`data synth --prices`): a boolean parameter flag that no spelling
could set, dates that ended in a traceback, and parameter flags that changed nothing without a word. The store is the
session's planted one (tests/conftest.py's ``synth_db``: 2023-01-03..2024-06-28, long enough for the learned regime's
120 sessions of training), read through ``--universe tier1``.
"""

from __future__ import annotations

import json

import pytest

from tests._cli_helpers import cli, ok, one_line_error


@pytest.fixture(scope="module")
def db(synth_db):
    """The session's planted store (read only: every command here has --no-save or is refused), of which the
    commands read the tier1 symbols (--universe tier1)."""
    return synth_db


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _bt(db, *flags) -> dict:
    res = ok(cli("backtest", "--db", db, "--universe", "tier1", "--no-save", "--format", "json", *flags))
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def base(db) -> dict:
    """The default backtest (no parameter flag), run once: the tests below compare flagged runs with it."""
    return _bt(db)


# ------------------------------------------------------------------------------------------ boolean parameters
def test_regime_sizing_flag_can_be_set_and_takes_effect(db, base):
    """--regime-sizing was offered as [True|False] by click, yet 'True' was refused by the registry ('must be one
    of true, false') and 'true' by click: the parameter could not be set from the command line at all."""
    on = _bt(db, "--regime-sizing", "true")
    off = _bt(db, "--regime-sizing", "false")
    assert on["params"]["regime_sizing"] is True and off["params"]["regime_sizing"] is False
    assert base["params"]["regime_sizing"] is False
    # off is the default configuration; on scales exposure (portfolio figures), never a trade's return
    assert off["portfolio_sharpe"] == base["portfolio_sharpe"] and off["max_drawdown"] == base["max_drawdown"]
    assert on["avg_return"] == base["avg_return"] and on["total_trades"] == base["total_trades"]
    assert (on["portfolio_sharpe"], on["max_drawdown"]) != (base["portfolio_sharpe"], base["max_drawdown"])
    bad = cli("backtest", "--db", db, "--no-save", "--regime-sizing", "maybe")  # click's own usage error, exit 2
    assert bad.exit_code == 2 and "Traceback" not in bad.output and "'--regime-sizing'" in bad.stderr


# ------------------------------------------------------------------------------------------ dates
@pytest.mark.parametrize("flag", ["--start", "--end"])
def test_backtest_bad_date_is_one_line(db, flag):
    name = flag.lstrip("-")
    one_line_error(cli("backtest", "--db", db, "--universe", "tier1", "--no-save", flag, "garbage"),
                   f"{name} must be a date (YYYY-MM-DD)", "'garbage'")


@pytest.mark.parametrize("flag", ["--start", "--end"])
def test_sandbox_bad_date_is_one_line(db, flag):
    name = flag.lstrip("-")
    one_line_error(cli("sandbox", "SPY", "--db", db, "--no-png", flag, "2024-13-45"),
                   f"{name} must be a date (YYYY-MM-DD)", "'2024-13-45'")


# ------------------------------------------------------------------------------------------ flags that do nothing
@pytest.mark.parametrize("flags, name, rule", [
    (("--hold-days", "7"), "hold_days", "exit = 'fixed'"),                         # default exit: first_dist
    (("--exit", "fixed_10d", "--hold-days", "7"), "hold_days", "exit = 'fixed'"),  # fixed_10d names its own days
    (("--max-days", "5"), "max_days", "exit = 'hybrid'"),
    (("--exit", "hybrid_30d", "--max-days", "5"), "max_days", "exit = 'hybrid'"),
    (("--risk-fraction", "0.5"), "risk_fraction", "sizing = 'fixed_fractional' or 'kelly'"),
    (("--max-weight", "0.1"), "max_weight", "sizing = 'fixed_fractional' or 'kelly'"),
    (("--sizing", "fixed_fractional", "--kelly-fraction", "0.1"), "kelly_fraction", "sizing = 'kelly'"),
    (("--kelly-window", "20"), "kelly_window", "sizing = 'kelly'"),
    (("--dd-cooloff", "50"), "dd_cooloff", "dd_breaker set"),
    (("--corr-window", "20"), "corr_window", "corr_cap set"),
])
def test_backtest_refuses_a_flag_its_configuration_never_reads(db, flags, name, rule):
    """Each of these flags was accepted and changed no figure (hold_days / max_days were even dropped from the
    printed parameters): the study spec refuses the same settings as 'has no effect', the flag now does too."""
    one_line_error(cli("backtest", "--db", db, "--universe", "tier1", "--no-save", *flags),
                   f"--{name.replace('_', '-')} has no effect", rule)


def test_backtest_gated_flags_take_effect_when_their_gate_is_on(db, base, tmp_path):
    fixed = _bt(db, "--exit", "fixed", "--hold-days", "3")
    assert (fixed["params"]["exit"], fixed["params"]["hold_days"]) == ("fixed", 3) and fixed["avg_hold_days"] <= 3
    hyb = _bt(db, "--exit", "hybrid", "--max-days", "2")
    assert (hyb["params"]["exit"], hyb["params"]["max_days"]) == ("hybrid", 2) and hyb["avg_hold_days"] <= 2
    ff = _bt(db, "--sizing", "fixed_fractional", "--stop-loss", "0.05")
    ff_rf = _bt(db, "--sizing", "fixed_fractional", "--stop-loss", "0.05", "--risk-fraction", "0.001")
    assert ff_rf["params"]["risk_fraction"] == 0.001 and ff_rf["portfolio_sharpe"] != ff["portfolio_sharpe"]
    brk = _bt(db, "--dd-breaker", "0.01")
    brk_long = _bt(db, "--dd-breaker", "0.01", "--dd-cooloff", "60")
    assert brk_long["params"]["dd_cooloff"] == 60 and brk_long["total_trades"] != brk["total_trades"]
    # the gate may come from a parameters file: its exit 'fixed' takes --hold-days, its kelly sizing --kelly-window
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"params": {**base["params"], "exit": "fixed", "hold_days": 10, "sizing": "kelly"}}))
    d = _bt(db, "--params", p, "--hold-days", "4", "--kelly-window", "20")
    assert (d["params"]["hold_days"], d["params"]["kelly_window"]) == (4, 20) and d["avg_hold_days"] <= 4
    # and a file's own inactive values (a study best file holds every parameter) are never refused
    p.write_text(json.dumps({"params": {**base["params"], "risk_fraction": 0.5, "dd_cooloff": 3}}))
    assert _bt(db, "--params", p)["total_trades"] == base["total_trades"]


# ------------------------------------------------------------------------------------------ walk-forward windows
def test_walkforward_train_shorter_than_purge_names_the_rule():
    """unit = "sessions", train = 6 with the default purge of 20 sessions: every train window is empty after the
    purge. The error said the walk-forward 'needs at least train=6 + test=2 sessions (+ purge 20 sessions); the data
    has 802 sessions', a requirement the data met; it now names the rule that fails."""
    import pandas as pd

    from optimizer.errors import ParameterError
    from optimizer.study.splits import WalkForward

    dates = pd.bdate_range("2022-01-03", periods=802)
    with pytest.raises(ParameterError) as e:
        WalkForward(train=6, test=2, unit="sessions", purge=20).split(dates)
    msg = str(e.value)
    assert "purge" in msg and "train" in msg and "needs at least" not in msg
    assert "train=6" in msg and "purge=20" in msg and "-14 sessions" in msg
    # months: one month (~21 sessions) minus a purge of 20 leaves 1 session to train on
    with pytest.raises(ParameterError) as e:
        WalkForward(train=1, test=1, unit="months", purge=20).split(dates)
    assert "after the purge" in str(e.value) and "needs at least" not in str(e.value)
    # too little data is still said as such
    with pytest.raises(ParameterError, match="needs at least train=6 \\+ test=2 months"):
        WalkForward(train=6, test=2, purge=20).split(dates[:100])
    assert len(WalkForward(train=30, test=10, unit="sessions", purge=20).split(dates)) > 0


def test_a_spec_whose_walkforward_train_the_purge_empties_is_refused_with_the_runs_message():
    """`study validate` accepted unit = "sessions", train = 6, purge = 20 (-14 sessions to train on); only the
    walk-forward run refused it. The rule follows from the spec alone, so the loader refuses it with the run's words;
    train 22 (2 sessions left) loads and splits, and a months walk-forward is left to the run (it needs the data)."""
    from optimizer.errors import ParameterError, SpecError
    from optimizer.study.spec import parse_spec
    from optimizer.study.splits import WalkForward

    base = '[space]\nvariant = "B"\n[walkforward]\nunit = "sessions"\npurge = 20\n'
    with pytest.raises(SpecError) as spec_err:
        parse_spec(base + "train = 6\n")
    with pytest.raises(ParameterError) as run_err:
        WalkForward(train=6, test=2, unit="sessions", purge=20)
    assert str(spec_err.value) == "[walkforward.train] " + str(run_err.value).removeprefix("train ")
    assert "leaves -14 sessions after the purge" in str(spec_err.value)
    wf = parse_spec(base + "train = 22\n").walkforward
    assert len(WalkForward(wf.train, wf.test, wf.step, wf.unit, purge=wf.purge).split(list(range(60)))) > 0
    assert parse_spec('[space]\nvariant = "B"\n[walkforward]\ntrain = 1\npurge = 20\n').walkforward.train == 1


# ------------------------------------------------------------------------------------------ booleans written as text
def test_boolean_written_as_text_says_so(db, tmp_path):
    """A parameters file or spec holding "true" (a string) for a boolean was told 'regime_sizing must be one of
    true, false, got regime_sizing='true'': the value looked allowed. The message now says it is text."""
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"regime_sizing": "true"}))
    one_line_error(cli("backtest", "--db", db, "--universe", "tier1", "--no-save", "--params", p),
                   "regime_sizing must be one of true, false, got regime_sizing='true'", "not a boolean",
                   "write true without quotes")
    p.write_text(json.dumps({"regime_sizing": "yes"}))  # not a spelling of a boolean: no hint
    line = one_line_error(cli("backtest", "--db", db, "--universe", "tier1", "--no-save", "--params", p),
                          "got regime_sizing='yes'")
    assert "without quotes" not in line
    p.write_text(json.dumps({"regime_sizing": True}))
    assert _bt(db, "--params", p)["params"]["regime_sizing"] is True
