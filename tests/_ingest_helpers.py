"""Helpers for the ingest tests: real-data location, table dumps, small FINRA files written by hand."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from optimizer.data.store import STORAGE_TABLES, connect

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
FINRA_RAW = REAL / "finra_raw"

HEADER = "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market"
PRICES_HEAD = "date,symbol,open,high,low,close,volume\n"
OTC_HEAD = ("issueSymbolIdentifier,tierIdentifier,summaryStartDate,totalWeeklyShareQuantity,totalWeeklyTradeCount,"
            "summaryTypeCode,lastUpdateDate\n")


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def dump_tables(con: duckdb.DuckDBPyConnection, exclude: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every base table's full content (sorted rows), keyed by table name; a table stored as other tables (the
    view finra_short_daily, store.STORAGE_TABLES) by its own content (the source ids are the store's internals)."""
    names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1").fetchall()]
    if set(STORAGE_TABLES) <= set(names):
        names = sorted([n for n in names if n not in STORAGE_TABLES] + ["finra_short_daily"])
    out = {}
    for n in names:
        if n in exclude:
            continue
        rows = con.execute(f'SELECT * FROM "{n}"').fetchall()
        out[n] = sorted(rows, key=repr)
    return out


def finra_text(rows: list[str], *, header: str = HEADER, trailer: int | None = None, eol: str = "\r\n") -> str:
    n = len(rows) if trailer is None else trailer
    return eol.join([header, *rows, str(n)]) + eol


def write(path: Path, text: str | bytes, *, gz: bool = False) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def table(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def copied_store(seed: Path, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to this test's copy of a module's seed store (the seed stays as the other tests expect it);
    for a fixture: ``yield from copied_store(seed_store, tmp_path)``."""
    shutil.copy(seed, tmp_path / "store.duckdb")
    c = connect(tmp_path / "store.duckdb")
    try:
        yield c
    finally:
        c.close()


def build_seed_store(d: Path, *, finra: bool = True) -> Path:
    """``d/seed.duckdb`` holding rows in several tables (a FINRA day if ``finra``, a price bar, an OTC week), so a
    test's 'every table unchanged' is a real check; build it once per module and hand each test a copy
    (:func:`copied_store`)."""
    from optimizer.data.ingest import ingest_paths

    c = connect(d / "seed.duckdb")
    if finra:
        write(d / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|10|0|20|Q", "20200102|SPY|5|0|6|Q"]))
        assert ingest_paths(c, "finra-short", [d / "CNMSshvol20200102.txt"]).exit_code == 0
    write(d / "p.csv", PRICES_HEAD + "2024-01-02,AAPL,10,11,9,10.5,100\n")
    write(d / "w.csv", OTC_HEAD + "AAPL,T1,2024-03-04,1000,10,ATS_W_SMBL,2024-03-18\n")
    assert ingest_paths(c, "prices", [d / "p.csv"]).exit_code == 0
    assert ingest_paths(c, "otc-weekly", [d / "w.csv"]).exit_code == 0
    c.close()
    return d / "seed.duckdb"
