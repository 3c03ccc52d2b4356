"""The verdict is a frozen object of gates (optimizer/validate/verdict.py): decided once, rendered (line, report
table, JSON) from its data, carried through result.json unchanged, and open to new gates without new code paths."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from optimizer.errors import DataError, ParameterError
from optimizer.report.research import build_walkforward_report
from optimizer.validate.verdict import POWER, Gate, Power, Verdict, verdict, verdict_alpha


def _gate_rows(page: str) -> dict[str, list[str]]:
    """{statistic: [value, rule, outcome]} of the report's "Deciding numbers" table."""
    start = page.index("<h2>Deciding numbers</h2>")
    body = page[start:page.index("</table>", start)]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", body)[1:]]
    return {r[0]: [r[1], r[2], "pass" if 'class="pass"' in r[3] else "fail" if 'class="fail"' in r[3] else ""]
            for r in rows}


def test_gates_hold_value_threshold_comparison_and_outcome():
    v = verdict(0.0012, 0.8, 0.41, 0.62, 143)
    assert [g.name for g in v.gates] == ["excess_mean", "excess_t", "n_trades", "dsr", "pbo"]
    assert [g.passed for g in v.gates] == [True, False, True, False, False]
    g = v.gate("pbo")
    assert (g.statistic, g.value, g.comparison, g.threshold, g.rule, g.relation) == (
        "Probability of Backtest Overfitting", 0.62, "<", 0.5, "< 0.50", ">=")
    assert v.reasons == [x.reason for x in v.gates if not x.passed] and len(v.reasons) == 3
    assert v.decision == "not supported" and not v.supported


def test_the_psr_gate_names_itself():
    v = verdict(0.004, 3.0, 0.97, 0.2, 100, sharpe="psr", note="context")
    assert v.gate("dsr") is None and v.gate("psr").statistic == "Probabilistic Sharpe Ratio (daily OOS excess)"
    assert v.line == "edge supported: OOS excess +0.40%/trade (t=3.0, n=100), PSR 0.97 >= 0.95, PBO 0.20 < 0.50; context"
    with pytest.raises(ParameterError, match="sharpe must be one of dsr, psr"):
        verdict(0.004, 3.0, 0.97, 0.2, 100, sharpe="sr")


def test_json_round_trip_keeps_the_decision_exactly():
    v = verdict(0.0012, float("nan"), 0.97, float("nan"), 20, note="n")
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))  # NaN stored as null
    back = Verdict.from_dict(d)
    assert (back.line, back.reasons, back.supported) == (v.line, v.reasons, v.supported)
    assert [g.passed for g in back.gates] == [g.passed for g in v.gates]
    assert back.gate("excess_t").value is None and back.gate("excess_t").text == "n/a"
    assert d["verdict"] == "not supported" and d["verdict_line"] == v.line
    with pytest.raises(ParameterError, match="verdict_gates"):
        Verdict.from_dict({"verdict": "supported", "verdict_line": "edge supported: ..."})


def test_a_new_gate_is_data():
    """Another statistic joins the verdict as one more Gate: decision, reasons and line follow without new code."""
    base = verdict(0.004, 3.0, 0.97, 0.2, 100, sharpe="psr")
    spa = Gate.check("spa", "SPA p-value (best vs benchmark)", 0.2, "<", 0.05, short="SPA p", detail_fmt=".3f")
    v = Verdict.decide([*base.gates, spa], note="with SPA")
    assert base.supported and not v.supported
    assert v.reasons == ["SPA p-value (best vs benchmark) 0.20 >= 0.05"]
    assert v.line.endswith("PBO 0.20 < 0.50, SPA p 0.20 >= 0.05; with SPA")
    with pytest.raises(ParameterError, match="distinct names"):
        Verdict.decide([spa, spa])
    with pytest.raises(ParameterError, match="comparison must be one of"):
        Gate.check("x", "x", 1.0, "=>", 0.0)


def test_report_renders_any_gate_and_never_recomputes(tmp_path):
    """The report shows each gate's stored value, rule and outcome; a stored outcome is shown as stored."""
    spa = Gate.check("spa", "SPA p-value (best vs benchmark)", 0.012, "<", 0.05, short="SPA p", detail_fmt=".3f")
    v = Verdict.decide([*verdict(0.004, 3.0, 0.97, 0.2, 100, sharpe="psr").gates, spa])
    result = {"spec": "t", "final": False, "windows": [], "oos": {"n_windows": 0}, "stats": {"dsr": 0.5},
              "dsr": 0.5, "psr": 0.97, "pbo": 0.2, **v.to_dict()}
    result["verdict_gates"][-1]["passed"] = False  # as if decided otherwise: the report must not re-decide
    eq = pd.DataFrame({"date": pd.bdate_range("2024-01-01", periods=3), "oos_return": [0.0] * 3, "oos_equity": [1.0] * 3})
    page = build_walkforward_report({"result": result, "equity": eq}, out_dir=tmp_path).read_text(encoding="utf-8")
    rows = _gate_rows(page)
    assert rows["SPA p-value (best vs benchmark)"] == ["0.012", "&lt; 0.05", "fail"]
    assert rows["Probabilistic Sharpe Ratio (daily OOS excess)"] == ["0.970", "&gt;= 0.95", "pass"]
    assert rows["Deflated Sharpe Ratio"] == ["0.500", "", ""]  # context, not a gate of this verdict
    assert 'class="verdict rejected"' in page and "SPA p 0.01 &gt;= 0.05" in page


def test_the_hac_gate_and_the_power_of_the_data_are_on_the_line_and_in_json():
    """The walk-forward's verdict: HAC t, the sample it rests on (trades, days, effective n) and what the data could
    have detected; "not supported" reads "no edge >= MDE detected"."""
    pw = Power(0.046, 0.38, verdict_alpha(2.0), POWER, 143, 290, 83.4)
    v = verdict(0.0555, 3.35, 0.99, 0.22, 143, sharpe="psr", t_kind="hac", power=pw, note="context")
    assert v.gate("excess_t").statistic == "HAC t of the daily OOS excess (Newey-West)"
    assert v.line == ("edge supported: OOS excess +5.55%/trade (HAC t=3.4, n=143, 290 days, eff. n 83), PSR 0.99 >= "
                      "0.95, PBO 0.22 < 0.50; MDE 4.60%/trade (+38%/yr) at 80% power; context")
    no = verdict(0.0183, 1.4, 0.9, 0.55, 143, sharpe="psr", t_kind="hac", power=pw)
    assert no.line.endswith("; no edge >= 4.60%/trade (+38%/yr) detected (MDE at 80% power)")
    assert "HAC t=1.4 <= 2" in no.reasons[0]
    # a positive, significant excess turned down by PBO alone (or PSR, or the trade count) was detected: the line
    # names the failed gate and states the MDE, not "no edge >= MDE detected"
    over = verdict(0.0555, 3.35, 0.99, 0.62, 143, sharpe="psr", t_kind="hac", power=pw)
    assert over.line == ("edge NOT supported: OOS excess +5.55%/trade (HAC t=3.4, n=143, 290 days, eff. n 83), PSR "
                         "0.99 >= 0.95, PBO 0.62 >= 0.50; MDE 4.60%/trade (+38%/yr) at 80% power")
    assert over.reasons == [over.gate("pbo").reason] and not over.supported
    neg = verdict(-0.0555, 3.35, 0.99, 0.22, 143, sharpe="psr", t_kind="hac", power=pw)  # a significant loss
    assert neg.line.endswith("; no edge >= 4.60%/trade (+38%/yr) detected (MDE at 80% power)")
    d = json.loads(json.dumps(no.to_dict(), allow_nan=False))
    assert d["verdict_power"] == {"mde_per_trade": 0.046, "mde_per_year": 0.38, "alpha": pytest.approx(0.02275, abs=1e-5),
                                  "power": 0.8, "n_trades": 143, "n_days": 290, "n_eff": 83.4}
    back = Verdict.from_dict(d)
    assert back == no and back.line == no.line
    nan = Verdict.from_dict(verdict(0.01, 1.0, 0.5, 0.2, 40, power=Power(float("nan"), float("nan"), 0.02, 0.8, 40, 60,
                                                                        float("nan"))).to_dict())
    assert nan.power.text == "n/a" and nan.line.endswith("; MDE n/a at 80% power") and "eff. n n/a" in nan.line
    assert verdict_alpha(2.0) == pytest.approx(0.0227501, abs=1e-6)
    with pytest.raises(ParameterError, match="t_kind must be one of iid, hac"):
        verdict(0.01, 3.0, 0.99, 0.2, 40, t_kind="clustered")


def test_the_spa_gate_is_optional():
    assert verdict(0.004, 3.0, 0.97, 0.2, 100).gate("spa") is None
    v = verdict(0.004, 3.0, 0.97, 0.2, 100, spa_p=0.2, spa_max=0.05)
    assert not v.supported and v.reasons == ["SPA p-value (Hansen, every configuration tried) 0.20 >= 0.05"]
    assert verdict(0.004, 3.0, 0.97, 0.2, 100, spa_p=0.01, spa_max=0.05).supported
    assert not verdict(0.004, 3.0, 0.97, 0.2, 100, spa_p=float("nan"), spa_max=0.05).supported


def test_a_result_without_gates_is_refused_by_the_report_with_a_reason(tmp_path):
    old = {"spec": "t", "windows": [], "oos": {}, "stats": {}, "verdict": "supported", "verdict_line": "edge supported: x"}
    with pytest.raises(DataError, match="no verdict gates .* re-run `accumopt walkforward SPEC`"):
        build_walkforward_report({"result": old}, out_dir=tmp_path)
