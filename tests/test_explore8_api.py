"""The Python API as a notebook user meets it (explore8): every key of a document or argument takes effect or is
refused with its name, wrong types are one AccumoptError line (never a TypeError from deep inside) and a refused
call leaves nothing on disk."""

from __future__ import annotations

import pytest

from optimizer import api
from optimizer.errors import ParameterError

PARAMS = {"variant": "D", "z_window": 15, "buy_threshold": 65, "exit": "first_dist", "time_stop": 20}


@pytest.fixture(scope="module")
def panel(synth_db):
    return api.load_panel(synth_db, "tier1")


@pytest.mark.parametrize("doc, key", [
    ({"params": PARAMS, "regim": "RISK_ON"}, "regim"),  # a typo'd regime filter ran without it
    ({"params": PARAMS, "cost": {"commission_bps": 0.0}}, "cost"),  # a typo'd costs ran with the default costs
    ({"params": PARAMS, "buy_threshold": 90}, "buy_threshold"),  # an engine parameter beside params was dropped
    ({"params": [["variant", "D"]]}, "params"),  # params not an object: the engine defaults ran instead
    ({"params": "D"}, "params"),
])
def test_a_document_key_beside_params_that_nothing_reads_is_refused_by_name(panel, doc, key):
    with pytest.raises(ParameterError, match=rf"\b{key}\b") as e:
        api.evaluate(doc, panel)
    assert "\n" not in str(e.value)


def test_the_documents_keys_beside_params_still_take_effect(panel):
    plain = api.evaluate(PARAMS, panel).metrics
    doc = api.evaluate({"params": PARAMS, "costs": {"commission_bps": 0.0, "slippage_bps": 0.0},
                        "regime": "RISK_ON"}, panel).metrics
    assert doc.loc[0, "total_trades"] < plain.loc[0, "total_trades"]  # the regime filter took effect
