"""tsuite3: product hot spots every test and user pays for, made cheaper without changing an answer.

Each shortcut is checked against the slow path it replaces (the oracle) and where it could go wrong (a stale answer,
a lookup that disturbs the caller's transaction or open result)."""

from __future__ import annotations

import pandas as pd

from optimizer.data.store import connect, table_exists


class _Spy:
    """A connection that keeps the SQL it is given (``table``: DuckDB's binder lookup, no SQL)."""

    def __init__(self, con):
        self.con, self.sql = con, []

    def execute(self, sql, parameters=None):
        self.sql.append(sql)
        return self.con.execute(sql, parameters)

    def table(self, name):
        return self.con.table(name)


def _catalog_answer(con, name: str) -> bool:
    """The reference: information_schema.tables, schema main, exact name."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND "
                            "table_schema = 'main'", [name]).fetchall()[0][0])


def test_table_exists_finds_the_stores_tables_and_views_without_a_statement():
    """Every table and view of a new store (finra_short_daily is a view) is found by the binder lookup: no SQL runs
    (before: two catalog queries for a view, one for a table); names not there still are not found."""
    con = connect(":memory:")
    try:
        names = [n for (n,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                           "'main'").fetchall()]
        assert "finra_short_daily" in names and "daily_metrics" not in names and len(names) >= 12
        spy = _Spy(con)
        assert all(table_exists(spy, n) for n in names)
        assert spy.sql == []
        for n in ("daily_metrics", "main", "finra_short", "duckdb_tables", "sqlite_master", "pragma_database_list",
                  "Prices_Daily", "prices daily", "o'hare"):
            assert table_exists(spy, n) is _catalog_answer(con, n) is False, n
    finally:
        con.close()


def test_table_exists_follows_the_catalog_as_it_changes_in_a_transaction():
    """No answer is kept: a table created (or a view dropped) in the caller's transaction is seen at once, a rolled
    back one is gone; a name not found does not abort the transaction (its later statements commit)."""
    con = connect(":memory:")
    try:
        con.execute("BEGIN TRANSACTION")
        assert not table_exists(con, "scratch")
        con.execute("CREATE TABLE scratch (x INTEGER)")
        assert table_exists(con, "scratch")
        con.execute("INSERT INTO scratch VALUES (1)")
        con.execute("ROLLBACK")
        assert not table_exists(con, "scratch")
        con.execute("BEGIN TRANSACTION")
        assert not table_exists(con, "nothing_here")
        con.execute("CREATE TABLE kept (x INTEGER)")
        con.execute("INSERT INTO kept VALUES (7)")
        con.execute("DROP VIEW finra_short_daily")
        assert not table_exists(con, "finra_short_daily")
        con.execute("COMMIT")
        assert con.execute("SELECT x FROM kept").fetchall() == [(7,)]
        assert table_exists(con, "kept") and not table_exists(con, "finra_short_daily")
    finally:
        con.close()


def test_table_exists_leaves_an_open_result_and_ignores_python_data_frames():
    """A result the caller has not read to its end is still whole after the lookup; a data frame named like a
    missing table in the caller's frame (DuckDB's replacement scan) is not taken for it."""
    con = connect(":memory:")
    try:
        cur = con.execute("SELECT * FROM range(3000)")
        assert table_exists(con, "prices_daily")
        assert len(cur.fetchall()) == 3000
        daily_metrics = pd.DataFrame({"symbol": ["AAA"], "close": [1.0]})  # noqa: F841 (the replacement scan's bait)
        assert not table_exists(con, "daily_metrics")
        con.register("daily_metrics_df", daily_metrics)  # a registered frame is a view of the connection's temp
        assert table_exists(con, "daily_metrics_df") is _catalog_answer(con, "daily_metrics_df")
    finally:
        con.close()


def test_table_exists_sees_a_table_another_connection_created(tmp_path):
    """Two connections to one file (one DuckDB instance): a table the other one commits is seen by the next call."""
    db = tmp_path / "s.duckdb"
    a = connect(db)
    try:
        b = a.cursor()
        assert not table_exists(a, "late")
        b.execute("CREATE TABLE late (x INTEGER)")
        assert table_exists(a, "late")
        b.close()
    finally:
        a.close()
