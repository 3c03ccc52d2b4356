"""tspeed18: the per-call costs of the store and the report, made cheaper without changing what they make.

A new store is created from the migrations' own statements in one transaction (optimizer.data.store._new_store);
these tests compare it, catalog row by catalog row, with a store the migrations make one transaction at a time.
"""

from __future__ import annotations

import os

import duckdb
import pytest

import optimizer.data.store as store
from optimizer.data.store import SCHEMA_VERSION, connect, table_exists

# DuckDB's catalog functions, each read with every column but the object ids (an id is a counter of the database
# instance: two instances number the same objects differently), ordered by the id (creation order). Internal
# objects (DuckDB's own) are left out.
_CATALOG = {
    "tables": ("duckdb_tables()", "table_oid"),
    "columns": ("duckdb_columns()", "table_oid, column_index"),
    "constraints": ("duckdb_constraints()", "table_oid, constraint_index"),
    "indexes": ("duckdb_indexes()", "index_oid"),
    "views": ("duckdb_views()", "view_oid"),
    "sequences": ("duckdb_sequences()", "sequence_oid"),
}


def _catalog(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    out = {}
    for kind, (fn, order) in _CATALOG.items():
        cols = [d[0] for d in con.execute(f"SELECT * FROM {fn} LIMIT 0").description]
        keep = [c for c in cols if not c.endswith("_oid") and c not in ("database_name", "comment", "tags")]
        internal = "AND NOT internal" if "internal" in cols else ""
        out[kind] = con.execute(f"SELECT {', '.join(keep)} FROM {fn} WHERE database_name = current_database() "
                                f"{internal} ORDER BY {order}").fetchall()
    # the creation order across kinds (a table made before or after a sequence)
    out["order"] = con.execute(
        "SELECT kind, name FROM (SELECT 'table' AS kind, table_name AS name, table_oid AS oid FROM duckdb_tables() "
        "WHERE database_name = current_database() UNION ALL SELECT 'sequence', sequence_name, sequence_oid "
        "FROM duckdb_sequences() WHERE database_name = current_database() UNION ALL SELECT 'index', index_name, "
        "index_oid FROM duckdb_indexes() WHERE database_name = current_database()) ORDER BY oid").fetchall()
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                               "ORDER BY table_oid").fetchall():
        what = "version" if name == "schema_version" else "*"  # applied_at: when it ran
        out[f"rows {name}"] = con.execute(f'SELECT {what} FROM "{name}" ORDER BY ALL').fetchall()
    return out


def _stepwise(path=":memory:") -> duckdb.DuckDBPyConnection:
    """A store the migrations make one by one, each in its own transaction (the path of an older store)."""
    con = duckdb.connect(str(path))
    assert store._run_migrations(con) == SCHEMA_VERSION
    return con


def _diff(a: dict, b: dict) -> list[str]:
    return [k for k in a.keys() | b.keys() if a.get(k) != b.get(k)]


def test_new_store_equals_the_stepwise_migrated_store_in_every_catalog_row(tmp_path, monkeypatch):
    """In memory and in a file: the same tables, columns (types, defaults, NOT NULL), constraints in the same order
    (names, text, columns), indexes, sequences (and their last values), the same creation order and rows."""
    ref = _stepwise()
    expected = _catalog(ref)
    ref.close()
    # a file reopened: DuckDB numbers the objects of a file it loads in its own order
    _stepwise(tmp_path / "stepwise.duckdb").close()
    with duckdb.connect(str(tmp_path / "stepwise.duckdb")) as ref:
        expected_reopened = _catalog(ref)
    assert len(expected["tables"]) == 14 and expected["views"] and expected["indexes"] and expected["sequences"]  # the oracle sees them
    assert expected["rows symbol_map"] == [("FB", "META", __import__("datetime").date(2022, 6, 9))]
    assert expected["rows schema_version"] == [(v,) for v in range(1, SCHEMA_VERSION + 1)]

    def refused(con):
        raise AssertionError("a new store ran the migrations one by one")

    monkeypatch.setattr(store, "_run_migrations", refused)  # the new path must not fall back to them
    for where in (":memory:", tmp_path / "new.duckdb"):
        con = connect(where)
        try:
            assert _diff(_catalog(con), expected) == [], where
        finally:
            con.close()
    con = connect(tmp_path / "new.duckdb")  # reopened: as written (nothing migrated again), as a stepwise file
    try:
        assert _diff(_catalog(con), expected_reopened) == []
    finally:
        con.close()


def test_the_comparison_sees_an_extra_index_a_lost_not_null_and_a_used_sequence():
    """The oracle above can fail: each planted difference is reported under its own key."""
    expected = _catalog(_stepwise())
    con = _stepwise()
    con.execute("CREATE INDEX extra ON prices_daily (symbol)")
    assert set(_diff(_catalog(con), expected)) == {"indexes", "order", "tables"}  # tables: index_count
    con = _stepwise()
    con.execute("ALTER TABLE reserve_ledger ALTER COLUMN subject SET NOT NULL")
    assert set(_diff(_catalog(con), expected)) == {"columns", "constraints", "tables"}
    con = _stepwise()
    con.execute("SELECT nextval('ingest_log_seq')")
    assert _diff(_catalog(con), expected) == ["sequences"]  # last_value


def test_a_row_breaking_two_constraints_is_refused_naming_the_same_column():
    """The constraints are checked in the same order: a price row without a date and without an open names the
    same column in both stores (a store rebuilt from DuckDB's printed DDL named another one)."""
    def refusal(con):
        with pytest.raises(duckdb.ConstraintException) as e:
            con.execute("INSERT INTO prices_daily VALUES (NULL, 'X', NULL, 1, 1, 1, 1, 's')")
        return str(e.value)

    a, b = refusal(_stepwise()), refusal(connect(":memory:"))
    assert a == b and "prices_daily." in a


@pytest.mark.parametrize("plant", ["view", "sequence", "table"])
def test_a_database_holding_anything_is_migrated_step_by_step(tmp_path, plant):
    """Only an empty database is a new store: one holding a view, a sequence or another tool's table gets the
    migrations one by one (their IF NOT EXISTS and checks see what is there), then holds the same as a new one."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute({"view": "CREATE VIEW mine AS SELECT 1 AS x", "sequence": "CREATE SEQUENCE mine",
                 "table": "CREATE TABLE mine (x INTEGER)"}[plant])
    con.close()
    assert store._is_empty(duckdb.connect(":memory:")) and not store._is_empty(duckdb.connect(str(path)))
    con = connect(path)
    try:
        got = _catalog(con)
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        con.close()
    expected = _catalog(_stepwise())
    kind = {"view": "views", "sequence": "sequences", "table": "tables"}[plant]
    assert [r for r in got[kind] if "mine" not in r] == expected[kind]


def test_a_migration_statement_with_parameters_is_not_replayed(monkeypatch):
    """A Python migration that runs a statement with parameters cannot be replayed as text: no script, and a new
    store then gets the migrations one by one (the same store)."""
    def with_parameters(con):
        con.execute("CREATE TABLE tagged (x INTEGER)")
        con.execute("INSERT INTO tagged VALUES (?)", [7])

    monkeypatch.setattr(store, "_with_parameters", with_parameters, raising=False)
    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS, "_with_parameters"])
    monkeypatch.setattr(store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    store._new_store_script.cache_clear()
    try:
        assert store._new_store_script() is None
        con = connect(":memory:")
        assert con.execute("SELECT * FROM tagged").fetchall() == [(7,)]
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(SCHEMA_VERSION + 1,)]
    finally:
        store._new_store_script.cache_clear()


class _Spy:
    """A connection that keeps the SQL it is given."""

    def __init__(self, con):
        self.con, self.sql = con, []

    def execute(self, sql, parameters=None):
        self.sql.append(sql)
        return self.con.execute(sql, parameters)

    def table(self, name):  # a lookup by DuckDB's binder (store.table_exists), no SQL
        return self.con.table(name)


def test_table_exists_answers_as_information_schema_without_reading_it(tmp_path):
    """Tables and views (the user's, temporary ones, of an attached database), in schema main only, DuckDB's own
    views not, names compared exactly: the same answer as information_schema.tables for each, from the catalog
    functions directly (the information_schema view is ~2.5x the cost)."""
    con = connect(":memory:")
    store.create_consolidated_view(con)
    con.execute("CREATE TEMP TABLE scratch (x INTEGER)")
    con.execute("CREATE TEMP VIEW scratch_view AS SELECT 1 AS x")
    con.execute("CREATE SCHEMA other")
    con.execute("CREATE TABLE other.elsewhere (x INTEGER)")
    con.execute(f"ATTACH '{tmp_path / 'side.duckdb'}' AS side")
    con.execute("CREATE TABLE side.main.attached_table (x INTEGER)")
    con.execute("CREATE VIEW side.main.attached_view AS SELECT 1 AS x")
    names = ["prices_daily", "finra_short_consolidated", "scratch", "scratch_view", "elsewhere", "attached_table",
             "attached_view", "duckdb_columns", "tables", "PRICES_DAILY", "nothing", "o'hare"]
    expected = {n: bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND "
                                    "table_schema = 'main'", [n]).fetchall()[0][0]) for n in names}
    assert [n for n, v in expected.items() if v] == ["prices_daily", "finra_short_consolidated", "scratch",
                                                       "scratch_view", "attached_table", "attached_view"]
    spy = _Spy(con)
    assert {n: table_exists(spy, n) for n in names} == expected
    assert spy.sql and not [s for s in spy.sql if "information_schema" in s]


def _figures():
    """Figures as the tool starts them: a plain one, subplots, one made without plotly's default template."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    plain = go.Figure(go.Scatter(x=[1, 2, 3], y=[1.0, None, 2.5], name="s"))
    sub = make_subplots(rows=2, cols=1, subplot_titles=("a", "b"))
    sub.add_trace(go.Bar(x=["x", "y"], y=[1, 2]), row=2, col=1)
    bare = go.Figure(layout={"template": None})
    return [plain, sub, bare]


def test_themed_gives_the_figure_update_layouts_template_byte_for_byte():
    """themed(fig) then the rest of the layout == update_layout(template=..., rest): the same JSON and HTML, byte
    for byte (the template's properties in the same order), for every start; and the figure owns its copy."""
    from optimizer.report.theme import TEMPLATE, themed

    for made, ref in zip(_figures(), _figures()):
        themed(made).update_layout(title="t", height=300)
        ref.update_layout(title="t", template=TEMPLATE, height=300)
        assert made.to_json() == ref.to_json()
        html = {"include_plotlyjs": False, "full_html": False, "div_id": "d"}
        assert made.to_html(**html) == ref.to_html(**html)
        assert made.layout.template.layout.paper_bgcolor == "white"  # plotly_white, readable back
    one, two = themed(_figures()[0]), themed(_figures()[0])
    one.layout.template.layout.paper_bgcolor = "black"  # a change to one figure's template stays in it
    assert two.layout.template.layout.paper_bgcolor == "white" and themed(_figures()[0]).layout.template.layout.paper_bgcolor == "white"


def test_report_figures_do_not_validate_the_template_again(monkeypatch):
    """The figures of the report, the sheet and the scanner set their template without plotly's template validator
    (which builds and deep-copies the whole template, ~11 ms a figure), and hold the same template as
    update_layout(template=...) gives."""
    import numpy as np
    import pandas as pd
    from _plotly_utils.basevalidators import BaseTemplateValidator

    from optimizer.report import figures as F
    from optimizer.report.sheet import sheet_figure
    from optimizer.report.theme import TEMPLATE, themed

    themed(_figures()[0])  # the template validated once per process, before counting
    validated = []
    real = BaseTemplateValidator.validate_coerce

    def counted(self, v, *a, **k):
        validated.append(v)
        return real(self, v, *a, **k)

    monkeypatch.setattr(BaseTemplateValidator, "validate_coerce", counted)
    rows = pd.DataFrame({"regime": ["BULL", "BEAR"], "hit_rate": [0.5, 0.4], "avg_return": [0.01, -0.02],
                         "avg_excess_return": [0.0, -0.01], "closed_trades": [3, 2]})
    figs = [F.regime_comparison_figure(rows),
            F.stability_figure(pd.DataFrame({"param": [], "value": [], "windows": [], "share": []})),
            sheet_figure(np.array(["2024-01-02", "2024-01-03"], dtype="datetime64[D]"), np.array([10.0, 11.0]),
                         np.array([40.0, 70.0]), 60.0, 30.0, "X", "ENTER")]
    assert validated == []
    for fig in figs:
        before = fig.to_json()
        fig.update_layout(template=TEMPLATE)  # set again, the validating way: nothing changes
        assert fig.to_json() == before
    assert validated == [TEMPLATE] * len(figs)  # the count sees the validating way


def _saturation_bench():
    from _cli_helpers import bench_module

    return bench_module("suite_saturation")


def test_saturation_summary_by_hand():
    """Samples (t, runnable) every 0.5 s on 2 cores: 2, 1, 0, 3, 2 -> a core idle for 0.5 s, both for 0.5 s: 1.5
    core-seconds; the first minute's saturation mean(min(r, 2)) / 2 = (2 + 1 + 0 + 2 + 2) / 5 / 2 = 0.7, then one
    sample of 1 in the second minute (0.5)."""
    bench = _saturation_bench()
    got = bench.summarise([(0.0, 2), (0.5, 1), (1.0, 0), (1.5, 3), (2.0, 2), (60.0, 1)], cores=2)
    assert got["core_idle_s"] == 1.5 + 0  # the last interval (2.0 -> 60.0) has 2 runnable: no idle core
    assert got["saturation"] == round((2 + 1 + 0 + 2 + 2 + 1) / 6 / 2, 3)
    assert got["share"] == {"0": round(1 / 6, 3), "1": round(2 / 6, 3), "2": round(2 / 6, 3), "3": round(1 / 6, 3)}
    assert got["by_minute"] == [0.7, 0.5] and got["mean_runnable"] == round(9 / 6, 2)
    assert bench.summarise([], cores=2) == {"samples": 0}


def test_saturation_finds_an_xdist_worker_and_its_waiting():
    """A child started as execnet starts an xdist worker, blocked reading its stdin: found, nothing runnable."""
    import subprocess
    import sys

    bench = _saturation_bench()
    child = subprocess.Popen([sys.executable, "-u", "-c", "import sys;exec(eval(sys.stdin.readline()))"],
                             stdin=subprocess.PIPE)
    try:
        for _ in range(200):  # until it blocks on its stdin (no sleep: a bounded poll of /proc)
            found = bench.runnable_by_worker(os.getpid())
            if found.get(child.pid) == 0:
                break
        assert found.get(child.pid) == 0  # (under xdist this test's own process is a worker too)
    finally:
        child.kill()
        child.wait()
