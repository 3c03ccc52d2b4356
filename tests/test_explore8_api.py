"""The Python API as a notebook user meets it (explore8): every key of a document or argument takes effect or is
refused with its name, wrong types are one AccumoptError line (never a TypeError from deep inside) and a refused
call leaves nothing on disk."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer import api
from optimizer.errors import DataError, ParameterError, SpecError

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


ONE_SPEC = {"study": {"name": "e8"}, "data": {"universe": "tier1"},
            "space": {"variant": {"type": "categorical", "choices": ["B", "D"]}, "time_stop": 20},
            "cv": {"n_splits": 2}, "objective": {"name": "composite_rank_excess", "min_trades": 1},
            "sampler": {"name": "tpe", "seed": 1}, "run": {"n_trials": 2}}


@pytest.fixture(scope="module")
def one_study(synth_db, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('e8study') / 'studies.db'}"
    api.run_study(ONE_SPEC, synth_db, url)
    return url


def test_a_storage_given_as_a_path_is_one_line_saying_the_url_to_write(one_study, tmp_path):
    file = Path(one_study.removeprefix("sqlite:///"))
    calls = {"best_params": lambda s: api.best_params(s, "e8"), "list_studies": api.list_studies,
             "show_study": lambda s: api.show_study(s, "e8"), "compare_studies": lambda s: api.compare_studies(s, "e8"),
             "build_report": lambda s: api.build_report("e8", s, out_dir=tmp_path / "rep")}
    for name, call in calls.items():
        for storage in (file, str(file)):  # was an AttributeError of Optuna's ('PosixPath' ... get_all_studies)
            with pytest.raises(ParameterError, match=rf"storage must be an Optuna storage URL .*'sqlite:///{file}'"):
                call(storage)
        with pytest.raises(ParameterError, match="storage must be an Optuna storage URL"):
            call(3)
    assert not (tmp_path / "rep").exists()
    assert api.best_params(one_study, "e8")["study"] == "e8"  # the URL itself still works
    with pytest.raises(ParameterError, match=r"storage must be an Optuna storage URL"):
        api.run_study({"study": {"name": "x"}}, tmp_path / "none.duckdb", tmp_path / "s.db")
    assert list(tmp_path.iterdir()) == []


def test_compare_and_report_of_a_wrong_type_name_the_parameter(one_study, tmp_path):
    for bad in (None, 3, ["e8", None]):  # None was a TypeError ('NoneType' object is not iterable)
        with pytest.raises(ParameterError, match=r"studies must be a study name or a list of study names"):
            api.compare_studies(one_study, bad)
    with pytest.raises(ParameterError, match=r"target must be a WalkForwardResult"):  # was "no study named 'None'"
        api.build_report(None, one_study, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_synth_store_takes_its_dates_as_dates_timestamps_and_datetime64(tmp_path):
    # a Timestamp was a TypeError of the JSON writer ('Object of type Timestamp is not JSON serializable') after the
    # raw folder was made; the same market as the ISO text
    from optimizer.data.synth import SynthConfig
    want = SynthConfig(start="2023-01-03", end="2023-03-31")
    for start, end in [(pd.Timestamp("2023-01-03"), pd.Timestamp("2023-03-31")),
                       (dt.date(2023, 1, 3), np.datetime64("2023-03-31"))]:
        cfg = SynthConfig(start=start, end=end)
        assert (cfg.start, cfg.end) == (want.start, want.end)
    db = api.synth_store(tmp_path / "s.duckdb", start=pd.Timestamp("2023-01-03"), end=pd.Timestamp("2023-03-31"),
                         universe=["AAPL", "SPY"])
    with api.open_store(db) as con:
        assert con.execute("SELECT min(date), max(date) FROM daily_metrics").fetchone() == (
            dt.date(2023, 1, 3), dt.date(2023, 3, 31))


@pytest.mark.parametrize("universe", [5, {"AAPL": 1}, ["AAPL", 5], [None]])
def test_a_universe_that_is_no_symbol_list_is_refused_by_name(synth_db, universe):
    # 5 was a TypeError ('int' object is not iterable); a dict ran on its keys; [..., 5] on a symbol '5'
    with pytest.raises(ParameterError, match=r"universe must be one of .* or a list of symbols \(text\)"):
        api.load_panel(synth_db, universe)


def test_a_universe_as_a_list_tuple_or_pandas_index_is_the_comma_list(synth_db):
    want = api.load_panel(synth_db, "AAPL,MSFT").symbols
    for u in (["AAPL", "MSFT"], ("MSFT", "AAPL"), pd.Index(["AAPL", "MSFT"]), np.array(["AAPL", "MSFT"])):
        assert api.load_panel(synth_db, u).symbols == want


@pytest.mark.parametrize("value, kind", [({"B", "D"}, "set"), (object(), "object")])
def test_a_dict_spec_value_toml_cannot_hold_is_a_spec_error_naming_its_key(value, kind):
    # a set was the TOML writer's TypeError ("Object of type 'set' is not TOML serializable"), naming no key
    with pytest.raises(SpecError, match=rf"space\.variant\.choices.*is a {kind}, which TOML cannot hold"):
        api.study_spec({"study": {"name": "x"}, "space": {"variant": {"type": "categorical", "choices": value}}})


def test_a_study_storage_or_a_folder_given_as_the_store_is_one_line_and_no_download(one_study, tmp_path, monkeypatch):
    # DuckDB opened the SQLite file through its sqlite_scanner extension, trying to download it from
    # extensions.duckdb.org (an IOException after a network attempt); a folder was DuckDB's IOException
    import duckdb

    file = Path(one_study.removeprefix("sqlite:///"))
    opened = []
    real = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: opened.append(a) or real(*a, **k))
    with pytest.raises(DataError, match=rf"database {file} is a SQLite file \(an Optuna study storage"):
        api.load_panel(file)
    with pytest.raises(DataError, match=rf"database {file} is a SQLite file"):
        api.evaluate(PARAMS, db=file)
    with pytest.raises(DataError, match=rf"database {tmp_path} is a folder, not a DuckDB store file"):
        api.open_store(tmp_path)
    assert opened == []  # refused before DuckDB touched the file


def test_run_study_shows_what_study_run_prints_as_warnings(one_study, synth_db):
    # the [seed_from] note (study run prints it on stderr) was only in run.warnings, which a notebook never shows
    seeded = {"study": {"name": "e8-seeded"}, "data": {"universe": "tier1+3"},
              "space": {"variant": {"type": "categorical", "choices": ["B", "D"]}, "time_stop": 20},
              "cv": {"n_splits": 2}, "objective": {"name": "composite_rank_excess", "min_trades": 1},
              "sampler": {"name": "tpe", "seed": 1}, "run": {"n_trials": 2}, "seed_from": {"study": "e8", "top": 1}}
    with pytest.warns(UserWarning, match=r"\[seed_from\] 'e8' ranked its trials on other \[data\] settings"):
        run = api.run_study(seeded, synth_db, one_study)
    assert run.warnings and not run.interrupted


def test_ctrl_c_in_a_run_study_cell_warns_that_it_stopped_and_resumes(synth_db, tmp_path, monkeypatch):
    # Ctrl-C finishes the running trial and returns: the cell showed a result as if the run were complete (the
    # SIGINT comes after trial 1's stop check, so trial 2 is the running trial it finishes)
    import os
    import signal

    url = f"sqlite:///{tmp_path / 'ki.db'}"
    spec = {"study": {"name": "ki"}, "data": {"universe": "tier1"},
            "space": {"buy_threshold": {"type": "int", "low": 60, "high": 80}, "time_stop": 20},
            "cv": {"n_splits": 2}, "objective": {"name": "composite_rank_excess", "min_trades": 1},
            "sampler": {"name": "tpe", "seed": 1}, "run": {"n_trials": 6}}
    real, handler = api._run_study, signal.getsignal(signal.SIGINT)

    def ctrl_c_after_the_second_trial(*a, **k):
        def cb(study, trial):
            if trial.number == 1:
                os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k, callbacks=[cb])

    monkeypatch.setattr(api, "_run_study", ctrl_c_after_the_second_trial)
    with pytest.warns(UserWarning, match=r"study 'ki' stopped by Ctrl-C with 3 finished trials; run_study again"):
        run = api.run_study(spec, synth_db, url)
    assert run.interrupted and signal.getsignal(signal.SIGINT) is handler
    monkeypatch.setattr(api, "_run_study", real)
    again = api.run_study(spec, synth_db, url)
    assert not again.interrupted and again.counts["complete"] + again.counts["pruned"] == 6


def test_evaluate_takes_the_regime_filter_backtest_regime_takes(synth_db, panel):
    # backtest --regime RISK_ON had no API spelling but a document's "regime" key: regime= was a TypeError
    from optimizer.backtest import backtest

    on = api.evaluate(PARAMS, panel, regime="RISK_ON").metrics
    bt = backtest(PARAMS, synth_db, "tier1", save=False, regime="RISK_ON")
    assert on.loc[0, "total_trades"] == bt.metrics["total_trades"] < api.evaluate(PARAMS, panel).metrics.loc[
        0, "total_trades"]
    for k in ("hit_rate", "avg_return", "avg_excess_return"):
        assert on.loc[0, k] == bt.metrics[k], k
    doc = api.evaluate({"params": PARAMS, "regime": "RISK_OFF"}, panel, regime="RISK_ON").metrics
    pd.testing.assert_frame_equal(doc, on)  # the argument over the document's, as --regime over the file's
    assert api.evaluate(PARAMS, db=synth_db, universe="tier1", regime="RISK_ON").metrics.loc[0, "total_trades"] == \
        bt.metrics["total_trades"]
    with pytest.raises(ParameterError, match=r"regime must be None or one of ALL, RISK_ON"):
        api.evaluate(PARAMS, panel, regime="risk_onn")


def test_study_list_show_and_compare_json_are_the_api_frames_bit_for_bit(one_study, tmp_path):
    # pandas' to_json kept 10 significant digits: value 0.0225908483292436 printed as 0.0225908483, so a script
    # reading --format json did not get the numbers ao.show_study / list_studies / compare_studies return
    import json
    import math

    from _cli_helpers import cli, ok

    def same(frame, records):
        assert len(frame) == len(records)
        floats = [c for c in frame.columns if frame[c].dtype.kind == "f"]
        assert floats
        for c in floats:
            for v, rec in zip(frame[c].tolist(), records):
                assert (rec[c] is None and not math.isfinite(v)) or rec[c] == v, (c, v, rec[c])

    same(api.show_study(one_study, "e8"), json.loads(ok(cli("study", "show", "e8", "--storage", one_study,
                                                             "--format", "json")).stdout))
    same(api.list_studies(one_study), json.loads(ok(cli("study", "list", "--storage", one_study,
                                                        "--format", "json")).stdout))
    same(api.compare_studies(one_study, "e8").summary,
         json.loads(ok(cli("study", "compare", "e8", "--storage", one_study, "--out", str(tmp_path),
                             "--format", "json")).stdout)["summary"])


def test_open_store_read_only_must_be_a_bool(synth_db):
    # read_only="no" was DuckDB's TypeError listing connect()'s signature (several lines)
    with pytest.raises(ParameterError, match=r"^read_only must be True or False, got read_only='no'$"):
        api.open_store(synth_db, read_only="no")


def test_numpy_integers_and_arrays_read_from_a_dataframe_are_taken(one_study, synth_db, tmp_path):
    # df["number"].iloc[0] is a numpy integer: number=, top=, n_trials= refused it ("must be an integer"), a
    # synthetic market's seed=np.int64(3) was the JSON writer's TypeError; compare_studies refused an array of names
    df = api.show_study(one_study, "e8")
    n = df["number"].iloc[0]
    assert isinstance(n, np.integer)
    assert api.best_params(one_study, "e8", n) == api.best_params(one_study, "e8", int(n))
    assert len(api.show_study(one_study, "e8", top=np.int64(1))) == 1
    run = api.run_study(ONE_SPEC, synth_db, one_study, n_trials=np.int64(3))  # one more than the fixture's 2
    assert run.counts["complete"] + run.counts["pruned"] == 3
    for names in (np.array(["e8"]), pd.Series(["e8"]), ("e8",)):
        assert list(api.compare_studies(one_study, names).summary["study"]) == ["e8"]
    from optimizer.data.synth import SynthConfig
    assert type(SynthConfig(seed=np.int64(3)).seed) is int
    db = api.synth_store(tmp_path / "s.duckdb", seed=np.int64(3), end="2023-02-28", universe=["AAPL", "SPY"])
    assert db.exists()


def test_list_studies_internal_is_study_list_all(one_study):
    # study list --all had no API spelling (internal= was a TypeError): a marker study stayed out of every listing
    import optuna

    from optimizer.study.records import WF_RUN

    optuna.create_study(study_name="e8-wf-claims", storage=one_study).set_user_attr(WF_RUN, {"study": "e8"})
    assert "e8-wf-claims" not in set(api.list_studies(one_study)["name"])
    assert "e8-wf-claims" in set(api.list_studies(one_study, internal=True)["name"])
    with pytest.raises(ParameterError, match=r"internal must be True or False"):
        api.list_studies(one_study, internal="yes")


def test_run_study_and_walk_forward_take_jobs_as_their_commands_do(synth_db, tmp_path):
    # --jobs had no API spelling (jobs= was a TypeError): a notebook ran every study in one process
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with pytest.warns(UserWarning, match=r"jobs=2: .* does not make the trials reproducible"):  # mend17: said
        run = api.run_study({**ONE_SPEC, "study": {"name": "jobs"}, "run": {"n_trials": 4}}, synth_db, url, jobs=2)
    assert run.counts["complete"] + run.counts["pruned"] == 4
    wf_spec = {**ONE_SPEC, "study": {"name": "wfj"}, "walkforward": {"train": 6, "test": 3, "unit": "months",
                                                                      "n_trials": 2}}
    one = api.walk_forward(wf_spec, synth_db, f"sqlite:///{tmp_path / 'wf1.db'}")
    two = api.walk_forward(wf_spec, synth_db, f"sqlite:///{tmp_path / 'wf2.db'}", jobs=np.int64(2))
    pd.testing.assert_frame_equal(one.summary, two.summary)  # the result is the single-process one
    assert one.verdict.line == two.verdict.line and len(one.summary) >= 2
    for bad in (0, 1.5, "2", True):
        with pytest.raises(ParameterError, match=r"^jobs must be an integer >= 1"):
            api.run_study(ONE_SPEC, synth_db, url, jobs=bad)
        with pytest.raises(ParameterError, match=r"^jobs must be an integer >= 1"):
            api.walk_forward(ONE_SPEC, synth_db, url, jobs=bad)
