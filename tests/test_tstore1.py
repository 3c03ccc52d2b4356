"""finra_short_daily stored without its per-row facility / source_file strings (issue 15.4's writing thread):
rows in finra_short_rows with a source id, (facility, source_file) in finra_short_sources, finra_short_daily a
VIEW of the old table's columns; the v8 migration of an older store; the ingest's replace / skip / rollback
semantics over the two tables."""

from __future__ import annotations

import duckdb
import pytest

import optimizer.data.ingest as ingest
import optimizer.data.ingest._common as common
import optimizer.data.store as store
from optimizer.data.coverage import store_info
from optimizer.data.ingest import ingest_paths
from optimizer.data.store import MIGRATIONS, SCHEMA_VERSION, connect, insert_finra_short, table_exists
from optimizer.errors import ParameterError

from _ingest_helpers import finra_text, table, write

_COLUMNS = ("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'finra_short_daily' "
            "AND table_schema = 'main' ORDER BY ordinal_position")
# rows of three files, two facilities, NULL market / exempt volume, in an order that is not sorted
_OLD_ROWS = [
    ("2024-01-03", "MSFT", "CNMS", "Q", 5, 0, 9, "CNMSshvol20240103.txt"),
    ("2024-01-02", "AAPL", "CNMS", "B,Q,N", 10, None, 20, "CNMSshvol20240102.txt"),
    ("2024-01-02", "AAPL", "FNSQ", None, 3, 1, 7, "FNSQshvol20240102.txt"),
    ("2024-01-02", "ZZZ", "CNMS", "N", 1, 0, 2, "CNMSshvol20240102.txt"),
]


def _v7_store(path) -> None:
    """A store of schema v7 (the layout before this change: finra_short_daily a table), with _OLD_ROWS."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for v, step in enumerate(MIGRATIONS[:7], start=1):
        getattr(store, step)(con) if step.startswith("_") else con.execute(step)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [v])
    con.executemany("INSERT INTO finra_short_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _OLD_ROWS)
    con.close()


def _rows(con) -> list[tuple]:
    return [(str(r[0]), *r[1:]) for r in con.execute("SELECT * FROM finra_short_daily").fetchall()]


def test_the_view_has_the_old_tables_columns_names_types_and_order(tmp_path):
    _v7_store(tmp_path / "v7.duckdb")
    with duckdb.connect(str(tmp_path / "v7.duckdb")) as old:
        before = old.execute(_COLUMNS).fetchall()
    assert [c for c, _ in before][:3] == ["date", "symbol", "facility"] and len(before) == 8  # the oracle is the table
    for where in (":memory:", tmp_path / "v7.duckdb"):  # a new store and a migrated one
        con = connect(where)
        try:
            assert con.execute(_COLUMNS).fetchall() == before
            assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = "
                               "'finra_short_daily'").fetchall() == [("VIEW",)]
        finally:
            con.close()


def test_a_v7_store_is_migrated_with_every_row_in_its_order_and_ingests_as_before(tmp_path):
    db = tmp_path / "v7.duckdb"
    _v7_store(db)
    con = connect(db)
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] and SCHEMA_VERSION >= 8
        assert _rows(con) == [tuple(r) for r in _OLD_ROWS]  # values and order
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'finra_short_daily'").fetchall() == [(0,)]
        # one source per (facility, file name), numbered in that order
        assert table(con, "SELECT * FROM finra_short_sources ORDER BY 1") == [
            (1, "CNMS", "CNMSshvol20240102.txt", False), (2, "CNMS", "CNMSshvol20240103.txt", False),
            (3, "FNSQ", "FNSQshvol20240102.txt", False)]
        # the consolidated view reads it as before; a new CNMS file of 2024-01-02 replaces that day's CNMS rows only
        f = write(tmp_path / "CNMSshvol20240102.txt", finra_text(["20240102|AAPL|11|0|21|Q"]))
        rep = ingest_paths(con, "finra-short", [f])
        assert [x.status for x in rep.files] == ["replaced"]
        assert table(con, "SELECT message FROM ingest_log") == [("replaced 2 existing rows",)]
        assert table(con, "SELECT date::VARCHAR, symbol, facility, short_volume, source_file FROM finra_short_daily "
                          "ORDER BY ALL") == [
            ("2024-01-02", "AAPL", "CNMS", 11, "CNMSshvol20240102.txt"),
            ("2024-01-02", "AAPL", "FNSQ", 3, "FNSQshvol20240102.txt"),
            ("2024-01-03", "MSFT", "CNMS", 5, "CNMSshvol20240103.txt")]
        # a raw file named by its date is stored under its family's name pattern (added once)
        assert table(con, "SELECT * FROM finra_short_sources WHERE source_id > 3") == [(4, "CNMS", "CNMSshvol%Y%m%d.txt", True)]
        assert table(con, "SELECT symbol, short_volume, provenance FROM finra_short_consolidated ORDER BY ALL") == [
            ("AAPL", 11, "CNMS"), ("MSFT", 5, "CNMS")]
    finally:
        con.close()


def test_a_migration_stopped_midway_leaves_the_v7_store_as_it_was(tmp_path, monkeypatch):
    db = tmp_path / "v7.duckdb"
    _v7_store(db)
    real = store._finra_short_sources

    def killed(con):
        real(con)
        raise KeyboardInterrupt  # after the rows were copied, the table dropped and the view made

    monkeypatch.setattr(store, "_finra_short_sources", killed)
    with pytest.raises(KeyboardInterrupt):
        connect(db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(7,)]
        assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = "
                           "'finra_short_daily'").fetchall() == [("BASE TABLE",)]
        assert not table_exists(con, "finra_short_rows") and not table_exists(con, "finra_short_sources")
        assert _rows(con) == [tuple(r) for r in _OLD_ROWS]
    monkeypatch.setattr(store, "_finra_short_sources", real)
    con = connect(db)
    try:
        assert _rows(con) == [tuple(r) for r in _OLD_ROWS]
    finally:
        con.close()


def test_a_foreign_table_with_columns_of_its_own_is_refused_not_dropped(tmp_path):
    db = tmp_path / "v7.duckdb"
    _v7_store(db)
    with duckdb.connect(str(db)) as con:
        con.execute("ALTER TABLE finra_short_daily ADD COLUMN note VARCHAR")
    with pytest.raises(store.DataError, match="table finra_short_daily has column\\(s\\) note beyond accumopt's layout"):
        connect(db)
    with duckdb.connect(str(db), read_only=True) as con:  # rolled back: the table and its rows as they were
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(7,)]
        assert con.execute("SELECT count(*) FROM finra_short_daily").fetchall() == [(len(_OLD_ROWS),)]


@pytest.fixture(params=["overlap", "serial"])
def overlap(request, monkeypatch):
    """Pipelined or serial, in batches of 1, 2, 2, ... files."""
    monkeypatch.setattr(ingest, "FIRST_BATCH_FILES", 1)
    monkeypatch.setattr(ingest, "BATCH_FILES", 2)
    return request.param == "overlap"


def test_files_of_one_name_in_two_folders_replace_each_other_and_skip_as_before(tmp_path, overlap):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write(a / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|10|0|20|Q", "20200102|MSFT|5|0|9|Q"]))
    write(b / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|12|0|20|Q"]))
    write(a / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|2|Q"]))
    con = connect(":memory:")
    st = lambda paths: [f.status for f in ingest_paths(con, "finra-short", paths, overlap=overlap).files]  # noqa: E731
    assert st([a]) == ["ok", "ok"]
    assert st([b]) == ["replaced"]
    assert table(con, "SELECT symbol, short_volume, source_file FROM finra_short_daily ORDER BY ALL") == [
        ("AAPL", 1, "CNMSshvol20200103.txt"), ("AAPL", 12, "CNMSshvol20200102.txt")]
    # the name's stored rows (1) are not as many as its paths' latest ingests stored (2 + 1): a is read again
    assert st([a]) == ["replaced", "skipped_identical"]
    assert st([a]) == ["skipped_identical", "skipped_identical"]
    # every file named by its date under one source: its family's name pattern
    assert table(con, "SELECT * FROM finra_short_sources ORDER BY 1") == [(1, "CNMS", "CNMSshvol%Y%m%d.txt", True)]
    assert table(con, "SELECT count(*), count(DISTINCT source_id) FROM finra_short_rows") == [(3, 1)]


def test_a_tidy_file_of_several_facilities_and_api_rows_replaces_per_facility_and_per_symbol(tmp_path):
    con = connect(":memory:")
    raw = write(tmp_path / "FNSQshvol20200102.txt", finra_text(["20200102|AAPL|1|0|2|Q", "20200102|MSFT|1|0|2|Q"]))
    api = write(tmp_path / "finra_api_regsho_20200102.csv", "date,symbol,short_volume,total_volume,facility\n"
                "2020-01-02,AAPL,7,9,API\n2020-01-02,IBM,7,9,API\n")
    ingest_paths(con, "finra-short", [raw, api])
    tidy = write(tmp_path / "short_2020.csv", "date,symbol,short_volume,total_volume,facility\n"
                 "2020-01-02,AAPL,3,4,FNSQ\n2020-01-02,AAPL,5,6,CNMS\n2020-01-02,AAPL,8,9,API\n")
    rep = ingest_paths(con, "finra-short", [tidy])
    assert [f.status for f in rep.files] == ["replaced"]
    # FNSQ of the day: both rows replaced by the file's one; API: only AAPL's row (per symbol); CNMS: new
    assert table(con, "SELECT symbol, facility, short_volume, source_file FROM finra_short_daily ORDER BY ALL") == [
        ("AAPL", "API", 8, "short_2020.csv"), ("AAPL", "CNMS", 5, "short_2020.csv"),
        ("AAPL", "FNSQ", 3, "short_2020.csv"), ("IBM", "API", 7, "finra_api_regsho_20200102.csv")]
    assert table(con, "SELECT message FROM ingest_log ORDER BY id")[-1] == ("replaced 3 existing rows",)
    assert table(con, "SELECT facility, source_file FROM finra_short_sources WHERE source_file = 'short_2020.csv' "
                      "ORDER BY 1") == [("API", "short_2020.csv"), ("CNMS", "short_2020.csv"), ("FNSQ", "short_2020.csv")]
    assert [f.status for f in ingest_paths(con, "finra-short", [tidy]).files] == ["skipped_identical"]


def test_a_file_the_database_rejects_leaves_both_tables_as_they_were_and_its_name_is_registered_again(tmp_path,
                                                                                                     monkeypatch):
    con = connect(":memory:")
    first = write(tmp_path / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|10|0|20|Q"]))
    ingest_paths(con, "finra-short", [first])
    before = (table(con, "SELECT * FROM finra_short_rows"), table(con, "SELECT * FROM finra_short_sources"))
    real = common.write_rows

    def rejected(ctx, plan, **kw):
        out = real(ctx, plan, **kw)  # the sources row and the rows inserted, then the database refuses
        raise duckdb.ConstraintException("planted")

    monkeypatch.setattr(ingest, "write_rows", rejected)
    new = write(tmp_path / "CNMSshvol20200103_fix.txt", finra_text(["20200103|AAPL|1|0|2|Q"]))  # a new pattern
    rep = ingest_paths(con, "finra-short", [new])
    assert rep.files[0].status == "failed" and rep.files[0].message.endswith("database rejected the file (planted)")
    assert (table(con, "SELECT * FROM finra_short_rows"), table(con, "SELECT * FROM finra_short_sources")) == before
    monkeypatch.setattr(ingest, "write_rows", real)
    # one call: a first copy refused, the next file of that name stored (its source registered by its own write)
    other = tmp_path / "again"
    other.mkdir()
    write(other / "CNMSshvol20200103_fix.txt", finra_text(["20200103|AAPL|2|0|3|Q"]))
    calls = []

    def once(ctx, plan, **kw):
        calls.append(plan.new_sources)
        out = real(ctx, plan, **kw)
        if len(calls) == 1:
            raise duckdb.ConstraintException("planted")
        return out

    monkeypatch.setattr(ingest, "write_rows", once)
    rep = ingest_paths(con, "finra-short", [new, other / "CNMSshvol20200103_fix.txt"])
    assert [f.status for f in rep.files] == ["failed", "ok"]
    # the refused write's source was not taken as stored: the next file of the name registers it (with a new id)
    assert [s[:3] for s in calls[0]] == [s[:3] for s in calls[1]] == [("CNMS", "CNMSshvol%Y%m%d_fix.txt", True)]
    assert table(con, "SELECT date::VARCHAR, short_volume, source_file FROM finra_short_daily ORDER BY 1") == [
        ("2020-01-02", 10, "CNMSshvol20200102.txt"), ("2020-01-03", 2, "CNMSshvol20200103_fix.txt")]


def test_insert_finra_short_registers_sources_once_and_refuses_unknown_columns():
    con = connect(":memory:")
    assert insert_finra_short(con, "VALUES (DATE '2024-01-02', 'A', 'CNMS', 'B', 1, 0, 2, 'f.txt'), "
                                   "(DATE '2024-01-02', 'B', 'FNSQ', NULL, 1, NULL, 2, 'g.txt')") == 2
    assert insert_finra_short(con, "SELECT ?::DATE, 'C', 'CNMS', 3, 4, 'f.txt'", ["2024-01-03"],
                              columns=["date", "symbol", "facility", "short_volume", "total_volume", "source_file"]) == 1
    assert _rows(con) == [("2024-01-02", "A", "CNMS", "B", 1, 0, 2, "f.txt"),
                          ("2024-01-02", "B", "FNSQ", None, 1, None, 2, "g.txt"),
                          ("2024-01-03", "C", "CNMS", None, 3, None, 4, "f.txt")]
    assert table(con, "SELECT * FROM finra_short_sources ORDER BY 1") == [(1, "CNMS", "f.txt", False),
                                                                        (2, "FNSQ", "g.txt", False)]
    with pytest.raises(ParameterError, match="columns must be columns of finra_short_daily"):
        insert_finra_short(con, "SELECT 1", columns=["volume"])


def test_data_info_lists_the_view_not_its_storage_tables():
    con = connect(":memory:")
    insert_finra_short(con, "VALUES (DATE '2024-01-02', 'A', 'CNMS', 'B', 1, 0, 2, 'f.txt')")
    names = [t["table"] for t in store_info(con)["tables"]]
    assert "finra_short_daily" in names and not {"finra_short_rows", "finra_short_sources"} & set(names)
    assert next(t for t in store_info(con)["tables"] if t["table"] == "finra_short_daily")["rows"] == 1


def test_the_ingest_benchmark_profile_splits_the_writers_cpu_by_statement(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    monkeypatch.delitem(sys.modules, "ingest", raising=False)
    import ingest as bench  # bench/ingest.py

    bench.write_cnms_files(tmp_path / "f", 20, 3)
    con = connect(":memory:")
    init = ingest._Pipeline.__init__
    with bench._PipelineProfile() as prof:
        ingest_paths(con, "finra-short", [tmp_path / "f"], overlap=False)
    assert ingest._Pipeline.__init__ is init  # the wrapping undone
    counts = {k: n for k, (n, _) in prof.statements.items()}
    # per file (3): BEGIN, its rows, its log row, COMMIT (the family's name pattern registered by the first);
    # nothing deleted (each day is new)
    assert {k: counts.get(k) for k in ("BEGIN TRANSACTION", "INSERT INTO finra_short_rows", "INSERT INTO ingest_log",
                                       "COMMIT")} == dict.fromkeys(
        ("BEGIN TRANSACTION", "INSERT INTO finra_short_rows", "INSERT INTO ingest_log", "COMMIT"), 3)
    assert counts["INSERT INTO finra_short_sources"] == 1
    assert not any(k.startswith("DELETE") for k in counts)
    assert all(cpu >= 0 for _, cpu in prof.statements.values()) and "writer_statements" in prof.figures()


def test_raw_files_named_by_their_date_share_their_familys_pattern_and_read_back_by_name(tmp_path):
    """A raw file whose name holds its date once is stored under the name's pattern (no source row per day); any
    other name as it is. The view gives every row its file's name, and _History's per-name count (counted per
    source id and date, then named) equals the view's GROUP BY source_file."""
    names = {"CNMSshvol20200102.txt": "20200102", "CNMSshvol20200103.txt": "20200103",
             "CNMSshvol20200106 (1).txt": "20200106", "FNSQshvol20200102.txt.gz": "20200102",
             "FNSQ_2020-01-03.txt": "20200103", "FNSQ%20200106.txt": "20200106"}
    for k, (n, d) in enumerate(names.items()):  # each of its own content (one content is one file)
        write(tmp_path / n, finra_text([f"{d}|AAPL|{k}|0|20|Q", f"{d}|MSFT|1|0|3|Q"]), gz=n.endswith(".gz"))
    con = connect(":memory:")
    rep = ingest_paths(con, "finra-short", [tmp_path / n for n in names])
    assert [f.status for f in rep.files] == ["ok"] * len(names)
    assert table(con, "SELECT facility, source_file, dated FROM finra_short_sources ORDER BY source_id") == [
        ("CNMS", "CNMSshvol%Y%m%d.txt", True), ("FNSQ", "FNSQshvol%Y%m%d.txt.gz", True),
        ("FNSQ", "FNSQ_2020-01-03.txt", False),  # the date not as the file's date text (YYYYMMDD): as it is
        ("CNMS", "CNMSshvol%Y%m%d (1).txt", True), ("FNSQ", "FNSQ%20200106.txt", False)]  # a '%' in the name: as it is
    assert table(con, "SELECT source_file, count(*) FROM finra_short_daily GROUP BY 1 ORDER BY 1") == \
        sorted((n, 2) for n in names)
    assert sorted(table(con, ingest.finra_short.SOURCE_COUNTS)) == sorted((n, 2) for n in names)
    # a later copy of one day replaces it, and the names lost are counted by name: the same files again are skipped
    fix = tmp_path / "fix"
    fix.mkdir()
    write(fix / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|5|0|6|Q"]))
    assert [f.status for f in ingest_paths(con, "finra-short", [fix]).files] == ["replaced"]
    h = ingest._History(con, "finra-short")
    assert h._stored(con, "CNMSshvol20200103.txt") == 1 and h._stored(con, "CNMSshvol20200102.txt") == 2
    again = ingest_paths(con, "finra-short", [tmp_path / n for n in names if n != "CNMSshvol20200103.txt"])
    assert {f.status for f in again.files} == {"skipped_identical"}


def test_the_migration_sorts_a_big_table_back_into_its_order_under_the_work_memory_budget(tmp_path, monkeypatch):
    """The copy back into the table's order is a sort of every row: 13.9M rows took ~1 GB of RSS without a budget
    (598 MB with it); the copy runs under store.memory_budget (DuckDB spills beyond WORK_MEMORY)."""
    db = tmp_path / "v7.duckdb"
    _v7_store(db)
    seen = []
    real = store.memory_budget

    def budget(con, limit=store.WORK_MEMORY):
        with real(con, limit) as c:  # (an in-memory database, the reference layout of store._own_layout, keeps its own)
            if c.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()[0][0]:
                seen.append(c.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
            yield c

    monkeypatch.setattr(store, "memory_budget", __import__("contextlib").contextmanager(budget))
    connect(db).close()
    assert len(seen) == 1 and store._parse_bytes(seen[0]) <= store._parse_bytes(store.WORK_MEMORY)
