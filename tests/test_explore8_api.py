"""The Python API as a notebook user meets it (explore8): every key of a document or argument takes effect or is
refused with its name, wrong types are one AccumoptError line (never a TypeError from deep inside) and a refused
call leaves nothing on disk."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
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


@pytest.mark.parametrize("value", [20240102, 2024.0, np.int64(20240102)])
def test_a_number_as_a_date_is_refused_not_read_as_nanoseconds_after_1970(synth_db, value):
    # pd.Timestamp(20240102) is 1970-01-01 00:00:00.020240102: start= was silently the store's first day and
    # end= an empty span
    for call, name in [(lambda: api.load_panel(synth_db, "tier1", start=value), "start"),
                       (lambda: api.load_panel(synth_db, "tier1", end=value), "end"),
                       (lambda: api.evaluate(PARAMS, db=synth_db, universe="tier1", start=value), "start"),
                       (lambda: api.sandbox_figure(synth_db, "AAPL", start=value), "start")]:
        with pytest.raises(ParameterError, match=rf"{name} must be a date \(YYYY-MM-DD\)"):
            call()


def test_dates_as_python_pandas_and_numpy_values_are_the_same_day(synth_db):
    want = api.load_panel(synth_db, "tier1", start="2024-01-02").dates
    for v in (dt.date(2024, 1, 2), dt.datetime(2024, 1, 2), pd.Timestamp("2024-01-02"), np.datetime64("2024-01-02")):
        np.testing.assert_array_equal(api.load_panel(synth_db, "tier1", start=v).dates, want)
