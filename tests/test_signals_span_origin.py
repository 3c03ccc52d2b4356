"""A signal sheet whose span is refused for its coverage says where the span's start came from (a trial's
panel_start, --start, the parameters file, the store's first session): `signals` and `evening` (docs/SIGNALS.md)."""

from __future__ import annotations

import json
import shutil

import pytest
from _cli_helpers import cli, one_line_error

from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import connect, stored_in
from optimizer.errors import DataError
from optimizer.signals import signal_sheet
from optimizer.study.paramsfile import load_params_record

PARAMS = {"variant": "C", "buy_threshold": 66}


@pytest.fixture(scope="module")
def holed(synth_db, tmp_path_factory):
    """The planted store (2023-01-03..2024-06-28) without any data for 2023-03..2023-06: a span from its
    first session stands on ~78% of the sessions (refused); one from 2023-07-03 covers all of them."""
    db = tmp_path_factory.mktemp("holed") / "x.duckdb"
    shutil.copy(synth_db, db)
    con = connect(db)
    try:
        for t in ("finra_short_daily", "prices_daily", "lit_flow_daily", "options_daily"):
            con.execute(f"DELETE FROM {stored_in(t)} WHERE date BETWEEN DATE '2023-03-01' AND DATE '2023-06-30'")
        build_daily_metrics(con)
    finally:
        con.close()
    return db


def _trial_file(tmp_path, panel_start: str):
    doc = {"study": "s1", "number": 7, "value": 0.1,
           "config": {"params": PARAMS, "universe": "tier1+3",
                      "span": {"start": "2023-07-03", "end": "2024-06-28", "panel_start": panel_start,
                               "data_end": "2024-06-28"}, "regime": "ALL"}}
    p = tmp_path / "best.json"
    p.write_text(json.dumps(doc))
    return p


def test_the_coverage_refusal_names_the_trials_panel_start(holed, tmp_path):
    p = _trial_file(tmp_path, "2023-01-03")
    with pytest.raises(DataError) as e:
        signal_sheet(load_params_record(p), holed)
    msg = str(e.value)
    assert (f"(its start 2023-01-03 is the panel_start of the trial (study 's1', trial 7) in {p}: the scores warm up "
            "from it as in the study) stands on too little") in msg, msg
    # --start does not move a trial's panel start: the origin stays the trial
    with pytest.raises(DataError, match="is the panel_start of the trial"):
        signal_sheet(load_params_record(p), holed, start="2023-08-01")
    frags = ("its start 2023-01-03 is the panel_start of the trial (study 's1', trial 7)", "stands on too little")
    one_line_error(cli("signals", "--params", p, "--db", holed, "--out", tmp_path / "o"), *frags)
    # the evening states its steps before (metrics, scan); its error is one line, the last
    res = cli("evening", "--no-fetch", "--params", p, "--db", holed, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(f in last for f in frags), res.stderr


def test_the_other_span_origins_are_named(holed, tmp_path):
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps(PARAMS))
    with pytest.raises(DataError, match=r"\(its start is the store's first session\) stands on too little"):
        signal_sheet(load_params_record(loose), holed)
    with pytest.raises(DataError, match=r"\(its start 2023-02-01 is --start\) stands on too little"):
        signal_sheet(load_params_record(loose), holed, start="2023-02-01")
    spanned = tmp_path / "spanned.json"
    spanned.write_text(json.dumps(PARAMS | {"start": "2023-02-01"}))
    with pytest.raises(DataError, match=rf"\(its start 2023-02-01 is the span start in {spanned}\) stands on too"):
        signal_sheet(load_params_record(spanned), holed)
    # a span after the hole is not refused
    assert signal_sheet(load_params_record(_trial_file(tmp_path, "2023-07-03")), holed).span_start.isoformat() >= "2023-07-03"
