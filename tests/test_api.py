"""The Python API (``optimizer.api``, re-exported lazily by ``optimizer``): cheap to import, and every call gives the
numbers of the command it mirrors (``evaluate`` = ``backtest --no-save``, ``run_study`` from a dict = from the same
TOML file, ``sandbox_figure`` = the sandbox's trades)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w

import optimizer
from optimizer import api
from optimizer.backtest import BACKTEST_METRICS, backtest
from optimizer.errors import ParameterError, SpecError
from optimizer.study.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"variant": "B", "z_window": 15, "buy_threshold": 65, "sell_threshold": 35, "exit": "first_dist",
          "time_stop": 20}
SPEC = {
    "study": {"name": "api"},
    "data": {"universe": "tier1+3"},
    "space": {"variant": {"type": "categorical", "choices": ["B", "D"]},
              "buy_threshold": {"type": "int", "low": 60, "high": 75, "step": 5},
              "exit": {"type": "categorical", "choices": ["first_dist", "fixed_10d"]}, "time_stop": 20},
    "cv": {"n_splits": 2},
    "objective": {"name": "composite_rank_excess", "min_trades": 2},
    "sampler": {"name": "tpe", "seed": 3, "n_startup_trials": 3},
    "run": {"n_trials": 6},
}


def test_import_is_cheap_and_the_names_are_the_api():
    code = ("import sys, optimizer; print([m for m in ('optuna', 'numba', 'plotly', 'duckdb', 'pandas', "
            "'optimizer.api') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # nothing heavy until an API name is used
    assert set(optimizer.__all__) == {"__version__", *api.__all__}
    assert optimizer.evaluate is api.evaluate and "walk_forward" in dir(optimizer)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        optimizer.nope  # noqa: B018
    for name in api.__all__:  # every public name is documented with an example
        doc = getattr(api, name).__doc__ or ""
        assert doc.strip(), name
        if callable(getattr(api, name)) and name[0].islower():
            assert "ao." in doc or ">>>" in doc, f"{name}: no example in its docstring"


def test_evaluate_is_backtest_no_save(synth_db):
    panel = api.load_panel(synth_db, "tier1+3")
    ev = api.evaluate(PARAMS, panel)
    bt = backtest(PARAMS, synth_db, "tier1+3", save=False)
    assert isinstance(ev.metrics, pd.DataFrame) and len(ev.metrics) == 1
    assert list(ev.metrics.columns[:len(BACKTEST_METRICS)]) == list(BACKTEST_METRICS)
    for k in BACKTEST_METRICS:
        assert ev.metrics.loc[0, k] == bt.metrics[k], k
    pd.testing.assert_frame_equal(ev.trades, bt.result.trades.to_frame(bt.panel))
    assert {"symbol", "entry_date", "exit_date", "net_ret", "exit_reason"} <= set(ev.trades.columns)
    assert ev.params["buy_threshold"] == 65 and ev.config.score.z_window == 15
    # the store path works the same; a study-best document is accepted as is (its costs included)
    doc = {"study": "s", "number": 1, "value": 0.1, "params": PARAMS, "costs": {"commission_bps": 0.0, "slippage_bps": 0.0}}
    free = api.evaluate(doc, db=synth_db)
    assert free.config.costs.commission_bps == 0.0
    assert free.metrics.loc[0, "avg_return"] > ev.metrics.loc[0, "avg_return"]  # same trades without costs
    with pytest.raises(ParameterError, match="buy_threshold"):
        api.evaluate({"buy_threshold": 150}, panel)
    with api.open_store(synth_db) as con:
        assert con.execute("SELECT count(DISTINCT symbol) FROM daily_metrics").fetchone()[0] == len(panel.symbols)


def test_a_study_from_a_dict_is_the_study_from_its_toml(synth_db, tmp_path):
    f = tmp_path / "api.toml"
    f.write_text(tomli_w.dumps(SPEC), encoding="utf-8")
    from_dict, from_file = api.study_spec(SPEC), load_spec(f)
    assert from_dict.spec_hash == from_file.spec_hash and from_dict.space == from_file.space
    assert api.study_spec(f.read_text()).spec_hash == from_file.spec_hash and api.study_spec(str(f)) == from_file
    with pytest.raises(SpecError, match="space"):
        api.study_spec({**SPEC, "space": {"variant": {"type": "categorical", "choices": []}}})
    url = f"sqlite:///{tmp_path / 'a.db'}"
    run = api.run_study(SPEC, synth_db, url)
    assert run.counts["complete"] + run.counts["pruned"] == 6
    # resuming from the TOML file is the same study (same spec hash): nothing new to run
    again = api.run_study(f, synth_db, url)
    assert again.study_name == run.study_name and again.counts == run.counts
    best = api.best_params(url, run.study_name)
    assert best["value"] == pytest.approx(run.best_value) and best["params"]["time_stop"] == 20
    assert set(best) == {"study", "number", "value", "params", "metrics", "config"}  # as its docstring lists them
    assert '{"study", "number", "value", "params", "metrics", "config"}' in api.best_params.__doc__
    table = api.show_study(url, run.study_name, top=3)
    assert table["number"].iloc[0] == best["number"]
    fig = api.sandbox_figure(synth_db, "AAPL", best)
    names = {t.name for t in fig.data}
    assert "Price" in names and {"Entries (win)", "Entries (loss)"} <= names
    assert f"buy {best['params']['buy_threshold']:g}" in fig.layout.title.text
    assert json.loads(json.dumps(best))["params"] == best["params"]
    assert np.isfinite(best["value"])


def test_evaluate_of_a_study_best_document_applies_its_regime_filter_and_min_periods(synth_db):
    """``best_params`` says "pass it to evaluate": a trial's document carries its regime filter and min_periods,
    which ``backtest --params`` applies; evaluate on the same panel gives the same numbers. Before, evaluate used
    the parameters alone (no regime filter, default min_periods)."""
    import dataclasses

    panel = api.load_panel(synth_db, "tier1+3")
    rec = backtest(PARAMS, synth_db, "tier1+3", regime="RISK_ON", save=False).record
    assert rec.panel_start == str(panel.dates[0])[:10] and rec.data_end == str(panel.dates[-1])[:10]
    for r in (rec, dataclasses.replace(rec, min_periods=12)):
        doc = {"study": "s", "number": 0, "value": 0.1, "params": dict(r.params), "metrics": {}, "config": r.to_dict()}
        want = backtest(r.params, synth_db, record=r, save=False)
        ev = api.evaluate(doc, panel)
        for k in BACKTEST_METRICS:
            assert ev.metrics.loc[0, k] == want.metrics[k] or (ev.metrics.loc[0, k] != ev.metrics.loc[0, k]
                                                               and want.metrics[k] != want.metrics[k]), k
    assert api.evaluate(PARAMS, panel).metrics.loc[0, "total_trades"] != want.metrics["total_trades"]


def test_evaluate_of_a_study_best_document_on_a_store_is_the_trial(synth_db):
    """Without a panel, a trial's document is evaluated on the trial's universe, panel and signal span (as
    ``backtest --params`` runs it), not on the default tier1+3 over the whole store."""
    rec = backtest(PARAMS, synth_db, "tier1", start="2023-09-01", regime="RISK_ON", save=False).record
    doc = {"study": "s", "number": 0, "value": 0.1, "params": dict(rec.params), "metrics": {}, "config": rec.to_dict()}
    want = backtest(rec.params, synth_db, record=rec, save=False)
    ev = api.evaluate(doc, db=synth_db)
    assert ev.metrics.loc[0, "total_trades"] > 0
    for k in BACKTEST_METRICS:
        a, b = ev.metrics.loc[0, k], want.metrics[k]
        assert a == b or (a != a and b != b), k
    assert set(ev.trades["symbol"]) <= set(api.load_panel(synth_db, "tier1").symbols)
    other = api.evaluate(doc, db=synth_db, universe="tier1+3")  # an explicit universe overrides the trial's
    assert other.metrics.loc[0, "total_trades"] != want.metrics["total_trades"]


def test_evaluate_refuses_a_panel_with_loading_options_and_a_path_as_panel(synth_db):
    """A panel fixes the store, universe and sessions: ``evaluate(params, panel, universe=...)`` (or ``start`` /
    ``end`` / ``db``) used the whole panel and dropped the option without a word, so ``start="2024-01-01"`` still
    counted signals from the panel's first session. A store path passed where the panel goes
    (``evaluate(params, "store.duckdb")``) was a TypeError from deep in the engine. Both are one-line ParameterErrors
    now."""
    panel = api.load_panel(synth_db, "tier1+3")
    for kw in ({"universe": "tier1"}, {"start": "2024-01-01"}, {"end": "2024-03-01"}, {"db": synth_db}):
        with pytest.raises(ParameterError, match=f"panel or {next(iter(kw))}, not both") as e:
            api.evaluate(PARAMS, panel, **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(ParameterError, match="panel must be a Panel from ao.load_panel.*got panel of type str"):
        api.evaluate(PARAMS, str(synth_db))
    with pytest.raises(ParameterError, match="type PosixPath"):
        api.evaluate(PARAMS, synth_db)
    # each way alone still works, and loading the same panel gives the same numbers
    a = api.evaluate(PARAMS, api.load_panel(synth_db, "tier1", start="2024-01-02")).metrics
    b = api.evaluate(PARAMS, db=synth_db, universe="tier1", start="2024-01-02").metrics
    pd.testing.assert_frame_equal(a, b)


def _example(func) -> list[str]:
    """The lines of the ``::`` example block of ``func``'s docstring, dedented, comments stripped."""
    block = (func.__doc__ or "").split("::\n", 1)[1]
    return [ln.split("  #", 1)[0].strip() for ln in block.splitlines() if ln.strip()]


def test_the_run_study_docstring_example_runs(synth_db, tmp_path):
    """The example of ``run_study``'s docstring runs as written on the study it names: it sorted
    ``run.study.trials_dataframe()`` by a column ``value``, which a study of this tool does not have (the study
    stores its objective's name, so Optuna calls the column ``value_<objective>``): a KeyError."""
    lines = _example(api.run_study)
    assert lines[0].startswith('run = ao.run_study("studies/phase_a_coarse.toml"')
    run = api.run_study(ROOT / "studies" / "phase_a_coarse.toml", synth_db, f"sqlite:///{tmp_path / 's.db'}", n_trials=3)
    ns = {"ao": optimizer, "run": run}
    for line in lines[1:]:
        exec(line, ns)  # noqa: S102 - the docstring's own lines
    assert len(ns["df"]) == 3 and ns["df"]["state"].eq("COMPLETE").any()


def test_a_store_held_open_in_the_other_mode_is_a_one_line_error(synth_db, tmp_path):
    """A notebook that keeps ``con = ao.open_store(db, read_only=False)`` open and then calls ``ao.load_panel(db)``
    (or holds a read-only connection and asks for ``final=True``, which writes the reserve ledger) met DuckDB's
    ``ConnectionException: Can't open a connection to same database file with a different configuration``. It is
    a DataError naming the store and what to do; with the connection closed the same call works."""
    import shutil

    from optimizer.errors import DataError

    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)
    con = api.open_store(db, read_only=False)
    try:
        with pytest.raises(DataError, match=r"store.duckdb is already open in this process for writing.*con.close\(\)"):
            api.load_panel(db, "tier1")
    finally:
        con.close()
    with api.open_store(db) as ro:
        with pytest.raises(DataError, match="already open in this process read-only"):
            api.open_store(db, read_only=False)
        assert ro.execute("SELECT count(*) FROM reserve_ledger").fetchone()[0] == 0
    assert len(api.load_panel(db, "tier1").symbols) == 15


def test_a_dict_spec_takes_paths_and_numpy_numbers_and_names_a_none():
    """A dict spec is written as TOML first: a ``Path`` (``OUT / "store.duckdb"``), a numpy integer (from a
    DataFrame) or a None (Python's "not set") made the TOML writer raise ``TypeError: Object of type 'PosixPath' is
    not TOML serializable``. Paths and numpy numbers are written as their values (the same spec as the plain
    values); a None is a SpecError naming its key."""
    plain = api.study_spec({**SPEC, "data": {**SPEC["data"], "database": "/tmp/x.duckdb"},
                            "run": {"n_trials": 6, "timeout": 30.0}})
    mixed = api.study_spec({**SPEC, "data": {**SPEC["data"], "database": Path("/tmp/x.duckdb")},
                            "run": {"n_trials": np.int64(6), "timeout": np.float64(30.0)}})
    assert mixed.spec_hash == plain.spec_hash and mixed.data.database == "/tmp/x.duckdb" and mixed.run.n_trials == 6
    with pytest.raises(SpecError, match=r"\[run.timeout\] is None, which TOML cannot hold: leave the key out"):
        api.study_spec({**SPEC, "run": {"n_trials": 6, "timeout": None}})
    with pytest.raises(SpecError, match=r"\[space.variant.choices\] is None"):
        api.study_spec({**SPEC, "space": {"variant": {"type": "categorical", "choices": ["B", None]}}})


def test_compare_takes_one_name_and_best_params_an_integer_trial(synth_db, tmp_path):
    """``compare_studies(storage, "phase_b_fine")`` compared the studies 'p', 'h', 'a', ... (a string is a sequence
    of one-letter names): 'no study named 'p''. ``best_params(storage, name, number="3")`` said 'trial 3 does not
    exist' of a study that holds trial 3. One name is one study; a number that is not an integer is refused as
    such."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    run = api.run_study({**SPEC, "run": {"n_trials": 3}}, synth_db, url)
    one = api.compare_studies(url, run.study_name)
    pd.testing.assert_frame_equal(one.summary, api.compare_studies(url, [run.study_name]).summary)
    assert one.names == [run.study_name] and one.summary["complete"].iloc[0] + one.summary["pruned"].iloc[0] == 3
    with pytest.raises(ParameterError, match="number must be None or a trial number"):
        api.best_params(url, run.study_name, number="1")
    done = [t.number for t in run.study.trials if t.state.name == "COMPLETE"]
    assert api.best_params(url, run.study_name, number=done[0])["number"] == done[0]


def test_run_study_checks_its_name_and_can_start_a_new_name(synth_db, tmp_path):
    """``run_study(..., name=...)`` took a name the command line refuses (``study run --name 'a b/../c'`` is exit
    2) and created that study; a changed spec under an existing name was refused with "Use --name NEW or
    --new-name", flags a notebook cannot pass (``run_study`` had no ``new_name``). The name follows the spec's rule,
    the refusal names the API's own arguments, and ``new_name=True`` starts ``NAME-2`` as ``--new-name`` does."""
    url = f"sqlite:///{tmp_path / 'n.db'}"
    with pytest.raises(SpecError, match=r"\[name\] must be"):
        api.run_study(SPEC, synth_db, url, n_trials=1, name="a b/../c")
    first = api.run_study(SPEC, synth_db, url, n_trials=1)
    changed = {**SPEC, "cv": {"n_splits": 3}}
    with pytest.raises(SpecError, match=r"created from a different spec.*Pass name='NEW'.*new_name=True"):
        api.run_study(changed, synth_db, url, n_trials=1)
    again = api.run_study(changed, synth_db, url, n_trials=1, new_name=True)
    assert (first.study_name, again.study_name) == ("api", "api-2")
    assert api.list_studies(url)["name"].tolist() == ["api", "api-2"]


def test_final_must_be_a_bool_a_truthy_string_does_not_open_the_reserve(synth_db, tmp_path):
    """``load_panel(db, final="no")`` (or ``walk_forward`` / ``sandbox_figure``) read the string as true: it
    loaded the final reserve and wrote an opening into the store's reserve ledger, which cannot be undone. Only
    True opens it; anything else but a bool is a ParameterError and the ledger stays empty."""
    import shutil

    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)
    for call in (lambda: api.load_panel(db, "tier1", final="no"),
                 lambda: api.sandbox_figure(db, "AAPL", final="False"),
                 lambda: api.walk_forward(SPEC, db, f"sqlite:///{tmp_path / 'w.db'}", final=1, n_trials=1)):
        with pytest.raises(ParameterError, match="final must be True or False"):
            call()
    with api.open_store(db) as con:
        assert con.execute("SELECT count(*) FROM reserve_ledger").fetchone()[0] == 0
    assert not (tmp_path / "w.db").exists()
    assert api.load_panel(db, "tier1", final=False).dates[-1] < api.load_panel(db, "tier1", final=True).dates[-1]


def test_evaluate_of_a_trial_on_a_changed_store_can_be_allowed(synth_db, tmp_path):
    """``evaluate(best, db=...)`` on a store whose data changed since the trial is refused, as ``backtest --params``
    refuses it; the refusal said "pass --allow-data-change", which ``evaluate`` had no way to pass: a notebook
    could not run the configuration on the corrected store at all. ``allow_data_change=True`` runs it."""
    import shutil

    from optimizer.errors import DataError

    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)
    rec = backtest(PARAMS, db, "tier1", save=False).record
    doc = {"study": "s", "number": 0, "value": 0.1, "params": dict(rec.params), "metrics": {}, "config": rec.to_dict()}
    with api.open_store(db, read_only=False) as con:
        con.execute("UPDATE daily_metrics SET close = close * 1.01 WHERE symbol = 'SPY' AND date = DATE '2023-06-01'")
    with pytest.raises(DataError, match="data differs from the trial's.*allow_data_change=True"):
        api.evaluate(doc, db=db)
    ev = api.evaluate(doc, db=db, allow_data_change=True)
    want = backtest(rec.params, db, record=rec, save=False, allow_data_change=True)
    assert ev.metrics.loc[0, "total_trades"] == want.metrics["total_trades"] > 0


def test_an_interrupted_synth_store_leaves_no_half_built_store(tmp_path, monkeypatch):
    """``synth_store`` reuses an existing store as is. A build stopped half-way (a notebook cell interrupted during
    the ingest, or a failed ingest) left the half-built store at ``db``, so the next call returned it at once:
    FINRA data without prices or daily_metrics. The store appears only once it is complete; the next call builds
    it."""
    import optimizer.data.synth as synth

    real = synth.ingest_paths

    def stop_at_prices(con, kind, paths, **kw):
        if kind == "prices":
            raise KeyboardInterrupt  # the user stops the cell after the FINRA files went in
        return real(con, kind, paths, **kw)

    db = tmp_path / "nb" / "store.duckdb"
    small = {"start": "2024-01-02", "end": "2024-02-15", "universe": ["AAPL", "SPY"]}
    monkeypatch.setattr(synth, "ingest_paths", stop_at_prices)
    with pytest.raises(KeyboardInterrupt):
        api.synth_store(db, **small)
    assert not db.exists() and sorted(p.name for p in db.parent.iterdir()) == ["store_raw"]
    monkeypatch.setattr(synth, "ingest_paths", real)
    assert api.synth_store(db, **small) == db
    panel = api.load_panel(db, ["AAPL"])
    assert panel.symbols == ("AAPL",) and np.isfinite(panel["close"]).all()


def test_a_spec_path_without_the_toml_suffix_is_read_as_a_path(tmp_path):
    """``study_spec`` (and ``run_study`` / ``walk_forward``) took a string as a path only when it ended in .toml:
    ``ao.run_study("studies/demo")`` or a spec file named ``demo.spec`` was parsed as TOML text and failed with
    "[toml] is not valid TOML: Expected '=' after a key", which names neither the file nor the problem. A one-line
    string without a key is a path: an existing file is read, a missing one is named."""
    f = tmp_path / "api.spec"
    f.write_text(tomli_w.dumps(SPEC), encoding="utf-8")
    assert api.study_spec(str(f)).spec_hash == api.study_spec(SPEC).spec_hash
    with pytest.raises(SpecError, match=r"studies/nope: \[file\] does not exist"):
        api.study_spec("studies/nope")
    with pytest.raises(SpecError, match=r"is a directory"):
        api.study_spec(str(tmp_path))
    assert api.study_spec('[study]\nname = "t"\n[space]\nvariant = "B"\n').name == "t"  # TOML text stays text


def test_a_repeated_opening_of_the_reserve_warns_from_sandbox_load_panel_and_evaluate(synth_db, tmp_path):
    """"A second opening warns loudly" (README): ``backtest --final`` and ``walkforward --final`` did, but
    ``accumopt sandbox T --final``, ``ao.load_panel(final=True)`` and ``ao.sandbox_figure(final=True)`` recorded the
    opening in the ledger and said nothing on a reserve already opened; ``ao.evaluate`` could not open it at all
    (no ``final``) and dropped backtest's warnings. Each warns now (the CLI in red on stderr, the API as a
    UserWarning), and ``evaluate(..., final=True)`` runs over the reserve as ``backtest --final`` does."""
    import shutil

    from click.testing import CliRunner

    from optimizer.cli import main

    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)
    with warnings_recorded() as first:
        full = api.load_panel(db, "tier1", final=True)  # the first opening: no warning
    assert not first
    with pytest.warns(UserWarning, match="final reserve starting .* was already opened 1 time"):
        api.load_panel(db, "tier1", final=True)
    res = CliRunner().invoke(main, ["sandbox", "AAPL", "--final", "--db", str(db), "--out", str(tmp_path / "o"),
                                    "--no-png"])
    assert res.exit_code == 0, res.output
    assert "was already opened 2 time(s)" in res.stderr
    with pytest.warns(UserWarning, match="already opened 3 time"):
        api.sandbox_figure(db, "AAPL", final=True)
    with pytest.warns(UserWarning, match="already opened 4 time"):
        ev = api.evaluate(PARAMS, db=db, universe="tier1", final=True)
    assert ev.trades["exit_date"].max() > api.load_panel(db, "tier1").dates[-1]  # over the reserve
    assert ev.metrics.loc[0, "total_trades"] == api.evaluate(PARAMS, full).metrics.loc[0, "total_trades"]
    with pytest.raises(ParameterError, match="panel or final, not both"):
        api.evaluate(PARAMS, full, final=True)
    with api.open_store(db) as con:
        assert con.execute("SELECT count(*) FROM reserve_ledger").fetchone()[0] == 5


@contextmanager
def warnings_recorded():
    import warnings

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        yield w


def test_a_span_that_ends_before_it_starts_names_the_rule(synth_db):
    """``load_panel(db, start="2024-06-01", end="2024-01-01")`` (and ``backtest --start ... --end ...``) said
    "daily_metrics has no rows for universe=['SPY', 'QQQ', ...15 symbols] between 2024-06-01 and 2024-01-01", as if
    the store lacked data. The rule broken is the order of the two dates: a ParameterError naming it."""
    from click.testing import CliRunner

    from optimizer.cli import main

    with pytest.raises(ParameterError, match=r"^end must be on or after start=2024-03-01, got end='2024-01-02'$"):
        api.load_panel(synth_db, "tier1", start="2024-03-01", end="2024-01-02")
    res = CliRunner().invoke(main, ["backtest", "--db", str(synth_db), "--universe", "tier1", "--start", "2024-03-01",
                                    "--end", "2024-01-02", "--no-save"])
    assert res.exit_code == 2 and "error: --end must be on or after --start 2024-03-01" in res.stderr
    assert len(api.load_panel(synth_db, "tier1", start="2024-01-02", end="2024-01-02").dates) == 1  # one day is a span
    # a start after the end the run defaults to (no --end): the message names that end and where it came from
    res = CliRunner().invoke(main, ["backtest", "--db", str(synth_db), "--universe", "tier1", "--start", "2031-01-02",
                                    "--no-save"])
    assert res.exit_code == 2 and re.search(r"^error: --start must be on or before \d{4}-\d\d-\d\d, the last session "
                                            r"before the final reserve \(it starts \d{4}-\d\d-\d\d; --final runs "
                                            r"through it\), got 2031-01-02$", res.stderr.strip()), res.stderr
    res = CliRunner().invoke(main, ["backtest", "--db", str(synth_db), "--universe", "tier1", "--start", "2031-01-02",
                                    "--no-save", "--final"])
    assert res.exit_code == 2 and re.search(r"^error: --start must be on or before the store's last session "
                                            r"\d{4}-\d\d-\d\d, got 2031-01-02$", res.stderr.strip()), res.stderr


def test_a_loose_document_is_read_as_its_params_file_is(synth_db, tmp_path):
    """``{"params": ..., "universe", "span", "regime", "min_periods"}`` (what a hand-written ``--params`` file holds)
    runs in ``ao.evaluate`` as ``backtest --params`` runs the file: before, everything beside ``params`` (and
    ``costs``) was silently dropped, so the notebook evaluated tier1+3 over the whole store, unfiltered. On a panel
    the document's regime filter and min_periods apply, as a trial's do."""
    import json

    from _cli_helpers import cli, ok

    doc = {"params": PARAMS, "universe": "tier1", "span": ["2023-06-01", "2024-01-31"], "regime": "RISK_ON",
           "min_periods": 12}
    f = tmp_path / "loose.json"
    f.write_text(json.dumps(doc), encoding="utf-8")
    want = json.loads(ok(cli("backtest", "--params", f, "--db", synth_db, "--no-save", "--format", "json")).stdout)
    got = api.evaluate(doc, db=synth_db).metrics.iloc[0].to_dict()
    assert {k: got[k] for k in want if k in got} == pytest.approx({k: want[k] for k in got if k in want}, nan_ok=True)
    assert len(set(got) & set(want)) > 10
    plain = api.evaluate(PARAMS, db=synth_db).metrics.iloc[0].to_dict()
    assert plain["total_signals"] != got["total_signals"]  # the document's settings changed the run: the test can fail
    panel = api.load_panel(synth_db, "tier1", start="2023-06-01", end="2024-01-31")
    with pytest.warns(UserWarning, match=r"the document's universe='tier1', start='2023-06-01', end='2024-01-31' not "
                      r"applied"):  # explore20: said, not silent (the panel here is the one they name)
        on_panel = api.evaluate(doc, panel).metrics.iloc[0].to_dict()
    assert on_panel == pytest.approx(got, nan_ok=True)


def test_a_connection_handed_out_takes_the_relation_api_at_once(tmp_path):
    """``con.sql(...)`` right after ``ao.open_store`` (the notebook's first cell) or ``connect`` of an existing
    store: DuckDB 2 refuses the relation API on a connection whose last result was not read to its end, and the
    schema-version check left one (fetchone): 'connection has an unfinished result from execute()'."""
    from optimizer.data.store import connect

    db = tmp_path / "s.duckdb"
    connect(db).close()  # a new store: every migration runs
    for read_only in (False, True):  # an existing store: the version check is the connection's last query
        with api.open_store(db, read_only=read_only) as con:
            assert con.sql("SELECT 41 + 1 AS x").fetchall() == [(42,)]
            assert con.sql("SELECT count(*) FROM schema_version").fetchall()[0][0] >= 1
