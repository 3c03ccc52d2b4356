"""Pooled vs per-regime-filtered vs regime-conditional (optimizer/validate/regime_compare.py): the variants are the
spec with exactly the regime keys changed, the walk-forward comparison runs and lands in the walk-forward report,
and the stitched OOS trades keep their sizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import SpecError
from optimizer.study.spec import load_spec, parse_spec
from optimizer.validate.regime_compare import COMPARISON_COLUMNS, REGIME_PARAMS, compare_regimes, regime_variants

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def test_variants_change_only_the_regime_keys():
    spec = load_spec(STUDIES / "regime_conditional.toml")
    v = regime_variants(spec)
    cond_space = {p.name for p in spec.space}
    assert v.conditional is spec
    assert {p.name for p in v.pooled.space} == cond_space - set(REGIME_PARAMS)
    assert v.pooled.data.regime == "ALL" and v.pooled.run.study_name == "regime_conditional-pooled"
    assert {k: s.data.regime for k, s in v.filtered.items()} == {"RISK_ON": "RISK_ON", "RISK_OFF": "RISK_OFF",
                                                                  "TRANSITIONAL": "TRANSITIONAL"}
    for s in (v.pooled, *v.filtered.values()):
        assert (s.cv, s.objective, s.sampler, s.walkforward) == (spec.cv, spec.objective, spec.sampler, spec.walkforward)
    with pytest.raises(SpecError, match="declares no regime-conditional parameter"):
        regime_variants(load_spec(STUDIES / "demo.toml"))


SPEC = """
[study]
name = "rc"
[data]
universe = "tier1+3"
reserve_fraction = 0.2
min_periods = 10
[space]
variant = "B"
z_window = 20
w_short = { type = "float", low = 0.4, high = 0.7, step = 0.1 }
w_short_transitional = { type = "float", low = 0.2, high = 0.8, step = 0.1 }
buy_threshold_risk_on = { type = "int", low = 60, high = 75, step = 5 }
exit = "fixed_5d"
[cv]
n_splits = 2
embargo = 5
[objective]
name = "composite_rank_excess"
min_trades = 0
[sampler]
name = "random"
seed = 1
[pruner]
name = "none"
[walkforward]
train = 6
test = 3
unit = "months"
n_splits = 2
"""


@pytest.mark.slow
def test_comparison_runs_and_lands_in_the_walkforward_report(synth_db, tmp_path):
    from optimizer.report.research import build_walkforward_report
    from optimizer.validate.walkforward import load_walkforward, run_walkforward, save_walkforward

    spec = parse_spec(SPEC)
    url = f"sqlite:///{tmp_path / 's.db'}"
    table = compare_regimes(spec, synth_db, url, n_trials=3)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert table["approach"].tolist() == ["pooled", "filtered RISK_ON", "filtered RISK_OFF", "filtered TRANSITIONAL",
                                          "filtered (all)", "conditional"]
    ran = table[table["note"] == ""]
    assert {"pooled", "conditional"} <= set(ran["approach"])
    assert (table.set_index("approach").loc[["pooled", "conditional", "filtered TRANSITIONAL"], "closed_trades"] > 0).all()
    parts = table[table["approach"].str.startswith("filtered ") & (table["approach"] != "filtered (all)")]
    assert table.set_index("approach").loc["filtered (all)", "closed_trades"] == parts["closed_trades"].sum()
    # the conditional row is the spec's own walk-forward (same study names, same storage: resumed, same result)
    wf = run_walkforward(spec, synth_db, url, n_trials=3)
    assert wf.oos["closed_trades"] == table.set_index("approach").loc["conditional", "closed_trades"]
    d = save_walkforward(wf, tmp_path / "wf")
    table.to_csv(d / "regime_comparison.csv", index=False)
    page = build_walkforward_report(load_walkforward(d), out_dir=tmp_path / "reports", name="rc")
    text = page.read_text(encoding="utf-8")
    assert "Pooled vs regime-filtered vs regime-conditional" in text and "filtered TRANSITIONAL" in text


def test_stitched_trades_keep_their_sizing():
    from optimizer.engine.simulate import Trades
    from optimizer.validate.walkforward import concat_trades

    def tr(n, w=None, m=None, absolute=False):
        e = np.arange(n, dtype=np.int64)
        return Trades(e * 0, e, e + 1, e + 2, np.full(n, 10.0), np.full(n, 11.0), e * 0, np.full(n, 70.0),
                      weight=w, mult=m, absolute=absolute)

    a = concat_trades([tr(2, np.array([0.1, 0.2]), np.array([1.0, 0.5]), True), tr(1, np.array([0.3]), np.array([0.25]), True)])
    np.testing.assert_array_equal(a.weight, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(a.mult, [1.0, 0.5, 0.25])
    assert a.absolute
    b = concat_trades([tr(2, np.array([0.1, 0.2]), absolute=True), tr(1)])  # mixed: equal weights
    assert b.weight is None and b.mult is None and not b.absolute
