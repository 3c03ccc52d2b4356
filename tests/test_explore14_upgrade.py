"""Upgrades: artefacts written by an older accumopt (stores, study records, params files) read by this one.

Each old artefact is built here from today's code plus a documented transformation to the old layout (the layout
of the commit named), in tmp_path.
"""

from __future__ import annotations

import duckdb

from optimizer.data.store import MIGRATIONS, SCHEMA_VERSION, connect, table_exists


def _store_of_main_at_ded9468(path) -> None:
    """A store created by main between ded9468 and the merge bedfacf (2026-12-02 18:42-19:30 UTC): its migrations
    were v1 (raw tables), v2 (market_regimes), v3 = signal_sheet (today's v5, identical DDL): schema version 3, with
    signal_sheet and without splits (today's v3)."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for v, step in enumerate((MIGRATIONS[0], MIGRATIONS[1], MIGRATIONS[4]), start=1):
        con.execute(step)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [v])
    con.execute("INSERT INTO finra_short_daily VALUES ('2024-01-02', 'AAA', 'CNMS', 'B', 10, 0, 20, 'f.txt')")
    con.close()


def test_a_store_whose_v3_was_the_signal_sheet_gets_the_splits_table(tmp_path):
    db = tmp_path / "old.duckdb"
    _store_of_main_at_ded9468(db)
    con = connect(db)
    try:
        assert table_exists(con, "splits")
        assert table_exists(con, "signal_sheet")
        assert con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] == SCHEMA_VERSION
        # what metrics build asks of it (failed before: 'Table with name splits does not exist')
        assert con.execute("SELECT count(*) FROM (SELECT 1 FROM splits LIMIT 1)").fetchall() == [(0,)]
        assert con.execute("SELECT symbol, short_volume FROM finra_short_daily").fetchall() == [("AAA", 10)]
    finally:
        con.close()


def test_a_store_already_migrated_without_splits_is_repaired_on_its_next_opening(tmp_path):
    """The same store after an accumopt of before the repair opened it: at the then-latest version (6), no splits."""
    db = tmp_path / "old.duckdb"
    _store_of_main_at_ded9468(db)
    con = duckdb.connect(str(db))
    for v, step in enumerate(MIGRATIONS[3:6], start=4):  # what the old code ran: v4..v6 (v5's DDL already applied)
        if step.startswith("_"):
            import optimizer.data.store as store

            getattr(store, step)(con)
        else:
            con.execute(step)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [v])
    assert not table_exists(con, "splits")
    con.close()
    con = connect(db)
    try:
        assert table_exists(con, "splits")
        assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()] == \
            list(range(1, SCHEMA_VERSION + 1))
    finally:
        con.close()
