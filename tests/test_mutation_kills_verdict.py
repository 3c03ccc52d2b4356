"""The verdict object (optimizer/validate/verdict.py): what mutation testing (bench/mutation) found unasserted --
the gates' table labels and formats, exact lines and reasons written out by hand, threshold boundaries, the
defaults, exact one-line errors and the JSON keys."""

from __future__ import annotations

import math
import re

import pytest

from optimizer.errors import ParameterError
from optimizer.validate.verdict import Gate, Power, Verdict, verdict

nan = float("nan")


def _raises_exactly(message: str):
    return pytest.raises(ParameterError, match="^" + re.escape(message) + "$")


_POWER = Power(0.046, 0.38, 0.0228, 0.8, 29, 250, 11.6)


def test_gates_carry_their_table_labels_and_formats():
    v = verdict(0.0012, 2.5, 0.97, 0.3, 29, sharpe="psr", t_kind="hac", spa_p=0.04, spa_max=0.1, power=_POWER)
    rows = [(g["name"], g["statistic"], g["short"], g["comparison"], g["threshold"], g["fmt"], g["detail_fmt"],
             g["threshold_fmt"]) for g in v.to_dict()["verdict_gates"]]
    assert rows == [
        ("excess_mean", "OOS excess return / trade", "OOS excess", ">", 0.0, "+.2%", "+.3%", "g"),
        ("excess_t", "HAC t of the daily OOS excess (Newey-West)", "HAC t", ">", 2.0, ".1f", ".2f", "g"),
        ("n_trades", "OOS closed trades (n)", "n", ">=", 30, ".0f", ".0f", "g"),
        ("psr", "Probabilistic Sharpe Ratio (daily OOS excess)", "PSR", ">=", 0.95, ".2f", ".3f", ".2f"),
        ("pbo", "Probability of Backtest Overfitting", "PBO", "<", 0.5, ".2f", ".3f", ".2f"),
        ("spa", "SPA p-value (Hansen, every configuration tried)", "SPA p", "<", 0.1, ".2f", ".3f", ".2f"),
    ]
    assert [g.detail_text for g in v.gates] == ["+0.120%", "2.50", "29", "0.970", "0.300", "0.040"]
    assert v.line == ("edge NOT supported: OOS excess +0.12%/trade (HAC t=2.5, n=29 < 30, 250 days, eff. n 12), "
                      "PSR 0.97 >= 0.95, PBO 0.30 < 0.50, SPA p 0.04 < 0.10; MDE 4.60%/trade (+38%/yr) "
                      "at 80% power")  # t passed: an excess was detected (the trade count turns it down)
    assert v.reasons == ["too few OOS trades: n=29 < 30"] and v.decision == "not supported"


def test_every_failed_gate_states_its_reason_and_nan_shows_as_na():
    v = verdict(nan, 1.5, 0.5, 0.5, 100, note="ctx")
    assert v.line == "edge NOT supported: OOS excess n/a/trade (t=1.5, n=100), DSR 0.50 < 0.95, PBO 0.50 >= 0.50; ctx"
    assert v.reasons == ["OOS excess return n/a/trade is not positive",
                         "OOS excess return is not significant: t=1.5 <= 2", "Deflated Sharpe Ratio 0.50 < 0.95",
                         "Probability of Backtest Overfitting 0.50 >= 0.50"]
    assert [g.detail_text for g in v.gates][:2] == ["n/a", "1.50"]
    psr = verdict(0.01, 2.5, nan, 0.1, 40, sharpe="psr")
    assert psr.reasons == ["OOS Probabilistic Sharpe Ratio of the daily excess n/a < 0.95"]
    spa = verdict(0.01, 2.5, 0.99, 0.1, 40, spa_p=0.2, spa_max=0.1)
    assert spa.reasons == ["SPA p-value (Hansen, every configuration tried) 0.20 >= 0.10"]
    assert spa.gate("spa").short == "SPA p" and spa.gate("spa").name == "spa"


def test_thresholds_at_their_boundaries_and_defaults():
    ok = verdict(0.01, 2.1, 0.95, 0.49, 30)  # n = min_trades (default 30) and DSR = 0.95 pass
    assert ok.supported and ok.line == ("edge supported: OOS excess +1.00%/trade (t=2.1, n=30), DSR 0.95 >= 0.95, "
                                        "PBO 0.49 < 0.50")
    assert not verdict(0.01, 2.1, 0.96, 0.4, 29).supported  # 29 < 30
    assert not verdict(0.01, 2.0, 0.96, 0.4, 30).supported  # t must exceed 2
    assert not verdict(0.0, 2.1, 0.96, 0.4, 30).supported  # the excess must be positive
    assert verdict(0.01, 2.1, 0.96, 0.4, 0, min_trades=0).supported  # no trades asked for, none had
    supported = verdict(0.01, 2.5, 0.99, 0.1, 40, power=_POWER)
    assert supported.line.endswith("; MDE 4.60%/trade (+38%/yr) at 80% power")
    assert verdict(0.01, 2.5, 0.99, 0.1, 40, spa_p=0.0999, spa_max=0.999).supported  # spa_max just below 1


@pytest.mark.parametrize("kwargs, message", [
    ({"n_oos_trades": -1}, "n_oos_trades must be an integer >= 0, got n_oos_trades=-1"),
    ({"n_oos_trades": 2.5}, "n_oos_trades must be an integer >= 0, got n_oos_trades=2.5"),
    ({"dsr_min": 0.0}, "dsr_min must be in (0, 1], got dsr_min=0.0"),
    ({"dsr_min": 1.5}, "dsr_min must be in (0, 1], got dsr_min=1.5"),
    ({"pbo_max": 0.0}, "pbo_max must be in (0, 1], got pbo_max=0.0"),
    ({"pbo_max": 1.01}, "pbo_max must be in (0, 1], got pbo_max=1.01"),
    ({"sharpe": "x"}, "sharpe must be one of dsr, psr, got sharpe='x'"),
    ({"t_kind": "x"}, "t_kind must be one of iid, hac, got t_kind='x'"),
    ({"spa_max": 1.0}, "spa_max must be None or in (0, 1), got spa_max=1.0"),
    ({"spa_max": 0.0}, "spa_max must be None or in (0, 1), got spa_max=0.0"),
])
def test_verdict_refuses_with_one_exact_line(kwargs, message):
    kw = {"oos_excess_mean": 0.01, "oos_excess_t": 2.5, "dsr": 0.97, "pbo": 0.3, "n_oos_trades": 40, **kwargs}
    with _raises_exactly(message):
        verdict(**kw)


def test_limits_that_are_allowed():
    assert verdict(0.01, 2.5, 0.97, 0.3, 0).gate("n_trades").value == 0.0
    lim = verdict(0.01, 2.5, 1.0, 0.99, 40, dsr_min=1.0, pbo_max=1.0)  # dsr_min = 1 and pbo_max = 1 are allowed
    assert lim.gate("dsr").passed and lim.gate("pbo").passed


def test_gate_and_verdict_objects_refuse_with_one_exact_line():
    with _raises_exactly("comparison must be one of >, >=, <, <=, got comparison='=='"):
        Gate("a", "b", 1.0, "==", 1.0, True)
    with _raises_exactly("comparison must be one of >, >=, <, <=, got comparison='='"):
        Gate.check("a", "b", 1.0, "=", 1.0)
    with _raises_exactly("gates must be at least one gate, got gates=[]"):
        Verdict.decide([])
    with _raises_exactly("gates must be gates with distinct names, got gates=['a', 'a']"):
        Verdict.decide([Gate.check("a", "b", 1.0, ">", 0.0), Gate.check("a", "c", 1.0, ">", 0.0)])
    with _raises_exactly("verdict_gates must be a list of gates (a result written by this version of accumopt), "
                         "got verdict_gates=None"):
        Verdict.from_dict({})


def test_gate_check_defaults_and_one_gate_verdicts():
    g = Gate.check("x", "the x", 0.1234, ">=", 0.5)
    assert (g.short, g.fmt, g.detail_fmt, g.threshold_fmt) == ("x", ".2f", ".3f", ".2f")
    assert (g.text, g.detail_text, g.threshold_text, g.rule, g.relation) == ("0.12", "0.123", "0.50", ">= 0.50", "<")
    assert g.reason == "the x 0.12 < 0.50"
    ok = Gate.check("x", "the x", 0.9, ">=", 0.5, reason="never shown")
    assert ok.passed and ok.reason == "" and ok.relation == ">="
    one = Verdict.decide([ok])  # one gate is enough; the line shows it as "<short> <value> <op> <threshold>"
    assert one.note == "" and one.power is None and one.line == "edge supported: x 0.90 >= 0.50"
    d = one.to_dict()
    assert list(d) == ["verdict", "verdict_line", "verdict_reasons", "verdict_gates", "verdict_note", "verdict_power"]
    assert d["verdict_reasons"] == [] and d["verdict_power"] is None


def test_power_json_and_the_verdict_round_trip():
    p = Power(nan, nan, 0.0228, 0.8, 0, 0, nan)
    assert p.to_dict() == {"mde_per_trade": None, "mde_per_year": None, "alpha": 0.0228, "power": 0.8,
                           "n_trades": 0, "n_days": 0, "n_eff": None}
    assert _POWER.to_dict()["mde_per_trade"] == 0.046
    v = verdict(0.0012, nan, 0.97, 0.3, 29, t_kind="hac", power=p, note="n")
    back = Verdict.from_dict(v.to_dict())
    assert back.line == v.line and back.reasons == v.reasons and back.note == "n"
    assert math.isnan(back.power.mde_per_trade) and back.power.n_days == 0
    assert v.line.endswith("; MDE n/a at 80% power; n")


def test_a_negative_excess_is_named_in_its_reason_and_a_bad_json_is_shown():
    v = verdict(-0.001, 2.5, 0.97, 0.3, 40)
    assert v.reasons == ["OOS excess return -0.10%/trade is not positive"]
    with _raises_exactly("verdict_gates must be a list of gates (a result written by this version of accumopt), "
                         "got verdict_gates='x'"):
        Verdict.from_dict({"verdict_gates": "x"})
