"""tspeed21: the fast path of raw FINRA files (``_source.probe_delimited`` + ``_common.csv_relation``).

A raw FINRA file proven regular over its bytes is read by DuckDB's CSV reader (no line table, no split in SQL); any
other file, and a fast-path file with a format error, takes the line path. The oracle: the same files ingested with
the fast path switched off (``_source._FAST``) store the same rows, rejects and ingest_log and report the same.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import sys
from pathlib import Path

import pytest

import optimizer.data.ingest as ing
from optimizer.data.ingest import _source, finra_short
from optimizer.data.store import connect

from _ingest_helpers import HEADER, finra_text, write

pytestmark = pytest.mark.skipif(not _source._FAST, reason="no os.memfd_create: the fast path is off here")

OLD_HEADER = "Date|Symbol|ShortVolume|TotalVolume|Market"
ROWS = [
    "20240102|AAPL|100|0|300|B,Q,N",
    "20240102|MSFT|50|1|80|Q",
    "20240102|BAD$|5|0|9|Q",            # an invalid symbol: rejected (the Python definition)
    "20240102|FB|7|0|6|N",              # short > total: rejected
    "20240102|IBM|10||20|",             # empty short exempt volume and market: NULL
    "20240102|AAPL|1|0|2|Q",            # AAPL again: duplicate key, both rejected
    "20240102|BRK.A|3|0|4|Q",           # a symbol the SQL fast path leaves to Python
    "20240102|TSLA|2.5|0|4.4|Q",        # fractional volumes, rounded when stored
    "20240102|NVDA|+12|0|1e2|Q",        # what DuckDB's number cast reads
]


def _dump(con) -> dict:
    return {
        "rows": con.execute("SELECT * FROM finra_short_daily ORDER BY ALL").fetchall(),
        "log": con.execute("SELECT file, sha256, kind, rows_accepted, rows_rejected, status, message FROM ingest_log "
                           "ORDER BY id").fetchall(),
        "rejects": con.execute("SELECT file, line, reason, raw FROM ingest_rejects ORDER BY ALL").fetchall(),
    }


def _ingest(db: Path, paths, **kw) -> tuple[dict, dict]:
    con = connect(db)
    try:
        rep = ing.ingest_paths(con, "finra-short", paths, **kw)
        return rep.to_dict(), _dump(con)
    finally:
        con.close()


@pytest.fixture
def probes(monkeypatch):
    """The files the fast path took (probe proved regular) and declined, by name."""
    seen = {"fast": [], "line": []}
    probe = finra_short.probe

    def spy(raw, limits):
        got = probe(raw, limits)
        if _source._FAST:  # not the oracle's run
            seen["fast" if got is not None else "line"].append(Path(raw.file).name)
        return got
    monkeypatch.setitem(ing._KINDS, "finra-short", dataclasses.replace(ing._KINDS["finra-short"], probe=spy))
    return seen


def _both(tmp_path: Path, paths, monkeypatch, tag: str = "", **kw) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    """(fast path on, fast path off): each into a fresh store."""
    fast = _ingest(tmp_path / f"fast{tag}.duckdb", paths, **kw)
    with monkeypatch.context() as m:
        m.setattr(_source, "_FAST", False)
        line = _ingest(tmp_path / f"line{tag}.duckdb", paths, **kw)
    return fast, line


def test_a_regular_file_takes_the_fast_path_and_stores_what_the_line_path_stores(tmp_path, monkeypatch, probes):
    f = write(tmp_path / "CNMSshvol20240102.txt", finra_text(ROWS))
    (rep, got), (rep0, want) = _both(tmp_path, [f], monkeypatch)
    assert probes["fast"] == ["CNMSshvol20240102.txt"] and probes["line"] == []
    assert got == want and rep == rep0
    # planted: the rejects and their raw lines, by hand
    assert [(r[1], r[3]) for r in got["rejects"]] == [
        (2, ROWS[0]), (4, ROWS[2]), (5, ROWS[3]), (7, ROWS[5])]
    assert "short_volume 7 > total_volume 6" in dict((r[1], r[2]) for r in got["rejects"])[5]
    stored = {r[1]: r for r in got["rows"]}
    assert set(stored) == {"MSFT", "IBM", "BRK.A", "TSLA", "NVDA"}
    assert stored["IBM"][5] is None and stored["IBM"][3] is None
    assert (stored["TSLA"][4], stored["TSLA"][6], stored["NVDA"][4], stored["NVDA"][6]) == (3, 4, 12, 100)
    assert rep["exit_code"] == 1


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("old", [False, True])
def test_fast_path_forms(tmp_path, monkeypatch, probes, eol, gz, old):
    rows = ["20240102|AAPL|100|300|B,Q,N", "20240102|MSFT|50|80|Q"] if old else ROWS[:2]
    text = finra_text(rows, header=OLD_HEADER if old else HEADER, eol=eol)
    f = write(tmp_path / f"FNSQshvol20240102.txt{'.gz' if gz else ''}", text, gz=gz)
    (rep, got), (rep0, want) = _both(tmp_path, [f], monkeypatch)
    assert probes["fast"] == [f.name]
    assert got == want and rep == rep0 and len(got["rows"]) == 2


def _irregular() -> dict[str, bytes]:
    ok = finra_text(ROWS[:3]).encode()
    lines = ok.split(b"\r\n")
    return {
        "blank_line": ok.replace(lines[1] + b"\r\n", lines[1] + b"\r\n\r\n"),
        "space_only_line": ok.replace(lines[1] + b"\r\n", lines[1] + b"\r\n \r\n"),
        "crlf_lf_mix": ok.replace(lines[1] + b"\r\n", lines[1] + b"\n"),
        "cr_inside": ok.replace(b"MSFT", b"MS\rFT"),
        "quote": ok.replace(b"MSFT", b'"MSFT"'),
        "bad_trailer": ok.replace(b"\r\n3\r\n", b"\r\n4\r\n"),
        "no_trailer": ok.replace(b"\r\n3\r\n", b"\r\n"),
        "short_line": ok.replace(b"|50|1|80|Q", b"|50|1|80"),
        "long_line": ok.replace(b"|50|1|80|Q", b"|50|1|80|Q|"),
        "short_and_long": ok.replace(b"|50|1|80|Q", b"|50|1|80|Q|").replace(b"|5|0|9|Q", b"|5|0|9"),
        "non_utf8": ok.replace(b"MSFT", b"MS\xe9FT"),
        "utf8_bom": b"\xef\xbb\xbf" + ok,
        "spaces": ok.replace(b"|50|", b"| 50 |"),
        "underscore": ok.replace(b"|50|", b"|5_0|"),
        "header_case": ok.replace(b"Date|Symbol", b"date|symbol"),
        "nul": ok.replace(b"MSFT", b"MS\x00FT"),
        "two_gzip_members": gzip.compress(ok[:60]) + gzip.compress(ok[60:]),
        "gzip_padded": gzip.compress(ok) + b"\x00" * 8,
        "gzip_truncated": gzip.compress(ok)[:-6],
    }


@pytest.mark.parametrize("kind", list(_irregular()))
def test_an_irregular_file_takes_the_line_path_and_is_told_as_without_the_fast_path(tmp_path, monkeypatch, probes,
                                                                                       kind):
    f = tmp_path / "CNMSshvol20240102.txt"
    f.write_bytes(_irregular()[kind])
    (rep, got), (rep0, want) = _both(tmp_path, [f], monkeypatch)
    assert probes == {"fast": [], "line": [f.name]}
    assert got == want and rep == rep0


@pytest.mark.parametrize("row, why", [
    ("20240102|ZZZ|inf|0|80|Q", "non-numeric ShortVolume 'inf'"),
    ("20240102|ZZZ|5|-Infinity|80|Q", "non-numeric ShortExemptVolume '-Infinity'"),
    ("20240102|ZZZ|1e999|0|80|Q", "non-numeric ShortVolume '1e999'"),
    ("20240102|ZZZ||0|80|Q", "missing ShortVolume value"),
    ("20240103|ZZZ|5|0|80|Q", "date 20240103 does not match the file name date 20240102"),
    ("2024-01-02|ZZZ|5|0|80|Q", None),                                     # the file name's date, written otherwise
    ("20240102|ZZZ|abc|0|80|Q", "non-numeric ShortVolume 'abc'"),          # DuckDB's reader refuses the group
    ("20240102|ZZZ|1,000|0|2,000|Q", None),                                # the reader refuses; the line path reads it
])
def test_a_fast_path_file_with_a_format_error_is_told_by_the_line_path(tmp_path, monkeypatch, probes, row, why):
    good = write(tmp_path / "CNMSshvol20240102.txt", finra_text(ROWS[:2]))
    d = tmp_path / "b"
    d.mkdir()
    bad = write(d / "FNRAshvol20240102.txt", finra_text([ROWS[1], row]))
    (rep, got), (rep0, want) = _both(tmp_path, [good, bad], monkeypatch)
    assert sorted(probes["fast"]) == ["CNMSshvol20240102.txt", "FNRAshvol20240102.txt"]
    assert got == want and rep == rep0
    if why is None:
        assert rep["exit_code"] == 0 and len(got["rows"]) == 4
    else:
        assert rep["files"][1]["message"] == f"{bad}:3: {why}" and rep["exit_code"] == 2
        assert rep["files"][0]["status"] == "ok"


def test_a_batch_mixing_both_paths_and_strict(tmp_path, monkeypatch, probes):
    """Many files of both paths in one call (several batches), the rejects of each in place; then strict."""
    d = tmp_path / "in"
    d.mkdir()
    days = ["20240102", "20240103", "20240104", "20240105", "20240108", "20240109"]
    for i, day in enumerate(days):
        rows = [r.replace("20240102", day) for r in ROWS]
        text = finra_text(rows, eol="\n" if i % 2 else "\r\n")
        if i % 3 == 2:
            text = text.replace("|MSFT|", "| MSFT|")  # a space: line path
        for fam in ("CNMS", "FNSQ"):
            write(d / f"{fam}shvol{day}.txt", text, gz=fam == "FNSQ")
    (rep, got), (rep0, want) = _both(tmp_path, [d], monkeypatch)
    assert len(probes["fast"]) == 8 and len(probes["line"]) == 4
    assert got == want and rep == rep0 and len(got["rejects"]) == 12 * 4
    (rep, got), (rep0, want) = _both(tmp_path, [d], monkeypatch, "strict", strict=True)
    assert got == want and rep == rep0 and rep["exit_code"] == 2


def test_real_finra_files_take_the_fast_path_and_store_the_same(tmp_path, monkeypatch, probes):
    from _ingest_helpers import FINRA_RAW, need
    src = need(FINRA_RAW)
    (rep, got), (rep0, want) = _both(tmp_path, [src], monkeypatch)
    assert len(probes["fast"]) == 5 and probes["line"] == ["FNRAshvol20200102.txt.gz"]  # header only: line path
    assert got == want and rep == rep0 and len(got["rows"]) > 20_000


def test_the_in_memory_files_are_closed(tmp_path, monkeypatch):
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))
    files = [write(tmp_path / f"CNMSshvol2024010{d}.txt", finra_text(ROWS)) for d in (2, 3, 4)]
    files.append(write(tmp_path / "FNSQshvol20240102.txt", finra_text(ROWS[:2] + ["20240102|X|abc|0|1|Q"])))
    con = connect(tmp_path / "s.duckdb")
    try:
        before = fds()
        ing.ingest_paths(con, "finra-short", files)
        assert fds() == before
    finally:
        con.close()


def test_probe_declines_what_it_cannot_hold(tmp_path, monkeypatch):
    """Above the fast path's cap, or above the ingest's own size limit, or a file read in chunks: the line path."""
    text = finra_text(ROWS[:2]).encode()
    f = write(tmp_path / "CNMSshvol20240102.txt", text)
    raw = _source.read_raw(f, str(f))
    assert finra_short.probe(raw, _source.Limits()) is not None
    monkeypatch.setattr(_source, "FAST_MAX_BYTES", len(text) - 1)
    assert finra_short.probe(raw, _source.Limits()) is None
    monkeypatch.undo()
    assert finra_short.probe(raw, _source.Limits(max_bytes=len(text) - 1)) is None  # the line path refuses it
    big = _source.RawFile(raw.path, raw.file, raw.sha256, raw.size, None)  # not held in memory (a big file)
    assert finra_short.probe(big, _source.Limits()) is None
    d = finra_short.probe(raw, _source.Limits())
    assert (d.first, d.last, d.first_no, d.last_no, d.staged, d.rows) == (HEADER, "2", 1, 4, 4, 2)
    mem = _source.MemFiles()
    try:
        mem.add(d)
        e = finra_short.probe(raw, _source.Limits())
        mem.add(e)
        data = ("\r\n".join(ROWS[:2]) + "\r\n").encode()
        assert os.pread(d.fd, 1000, 0) == data * 2 and (d.first, e.first, e.offset, e.fd) == (1, 3, len(data), d.fd)
        assert e.line_texts([3, 2]) == [ROWS[1], ROWS[0]]
    finally:
        mem.close()


def test_duplicates_counted_on_the_symbol_alone_find_what_the_whole_key_finds(tmp_path, monkeypatch):
    """summarize counts a raw file's duplicate keys on the symbol (Spec.dup_col: the date and facility hold one
    value in a file without a format error); the oracle counts them on the whole key."""
    rows = ["20210104|FB|1|0|2|Q", "20210104|META|1|0|2|Q",   # FB is META before 2022-06-09: one key
            "20210104|BAD$|1|0|2|Q", "20210104|WORSE$|1|0|2|Q",  # two invalid symbols (NULL)
            "20210104|X|1|0|2|Q", "20210104|Y|1|0|2|Q"]
    files = [write(tmp_path / "CNMSshvol20210104.txt", finra_text(rows)),
             write(tmp_path / "FNSQshvol20210104.txt", finra_text(rows[4:])),
             write(tmp_path / "FNRAshvol.txt", finra_text(rows[:2]))]  # no date in the name: the whole key
    seen = []
    spec = finra_short.spec

    def spy(*a):
        sp = spec(*a)
        seen.append(sp.dup_col)
        if not use:
            sp.dup_col = None
        return sp
    monkeypatch.setitem(ing._KINDS, "finra-short", dataclasses.replace(ing._KINDS["finra-short"], spec=spy))
    use = True
    got = _ingest(tmp_path / "a.duckdb", files)
    assert sorted(seen, key=str) == [None, "symbol"]  # batches of 2 and 1 files: the undated one alone
    use = False
    want = _ingest(tmp_path / "b.duckdb", files)
    assert got == want
    rejects = [(Path(r[0]).name, r[1], r[2][:30]) for r in got[1]["rejects"]]
    assert ("CNMSshvol20210104.txt", 2, "duplicate key (date, symbol, f") in rejects
    assert ("CNMSshvol20210104.txt", 3, "duplicate key (date, symbol, f") in rejects
    assert ("FNRAshvol.txt", 3, "duplicate key (date, symbol, f") in rejects
    assert len(got[1]["rows"]) == 4


def test_the_rows_table_keeps_only_what_is_read_after_it(tmp_path, monkeypatch):
    """No field count / quote flag, and a symbol's text only where the SQL fast path left the symbol to Python
    (BAD$ and BRK.A here); the stored rows and rejects are the line path's (first test)."""
    seen = []
    summarize = ing.summarize

    def spy(ctx, sp, table, files):
        cols = [r[0] for r in ctx.con.execute(f"DESCRIBE {table}").fetchall()]
        texts = sorted(r[0] for r in ctx.con.execute(f"SELECT t_symbol FROM {table} WHERE t_symbol IS NOT NULL").fetchall())
        seen.append((cols, texts))
        return summarize(ctx, sp, table, files)
    monkeypatch.setattr(ing, "summarize", spy)
    f = write(tmp_path / "CNMSshvol20240102.txt", finra_text(ROWS))
    _, got = _ingest(tmp_path / "a.duckdb", [f])
    [(cols, texts)] = seen
    assert "_n" not in cols and "_q" not in cols and "t_symbol" in cols
    assert texts == ["BAD$", "BRK.A"]
    assert len(got["rows"]) == 5 and len(got["rejects"]) == 4


def test_a_file_names_date_is_parsed_once(tmp_path, monkeypatch):
    """name_date is asked to order the files and again by a FINRA file's prepare: pandas parses each name once."""
    import pandas as pd

    parsed = []
    to_datetime = pd.to_datetime

    def spy(arg, *a, **k):
        if isinstance(arg, str):
            parsed.append(arg)
        return to_datetime(arg, *a, **k)
    monkeypatch.setattr(pd, "to_datetime", spy)
    files = [write(tmp_path / f"CNMSshvol2011011{d}.txt", finra_text([f"2011011{d}|A|1|0|2|Q"])) for d in (0, 1)]
    rep, got = _ingest(tmp_path / "a.duckdb", files)
    assert rep["exit_code"] == 0 and len(got["rows"]) == 2
    assert parsed.count("20110110") <= 1 and parsed.count("20110111") <= 1
    assert ing.name_date(files[0]) == pd.Timestamp("2011-01-10")


def test_the_ingest_bench_profile_counts_the_files_each_path_read(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    import importlib

    bench = importlib.import_module("ingest")
    for name in ("ingest", "_common"):  # bench/'s top-level modules: gone from sys.modules after the test
        monkeypatch.setitem(sys.modules, name, sys.modules[name])
    kind = ing._KINDS["finra-short"]
    got = bench.bench_finra(300, 3, profile=True)
    assert (got["profile"]["fast_path_files"], got["profile"]["line_path_files"]) == (3, 0)
    assert got["rows_stored"] == 900 and ing._KINDS["finra-short"] is kind  # the kind put back
    monkeypatch.setattr(_source, "_FAST", False)
    got = bench.bench_finra(300, 2, profile=True)
    assert (got["profile"]["fast_path_files"], got["profile"]["line_path_files"]) == (0, 2)


@pytest.mark.parametrize("setting", ["cache_local_files", "preserve_insertion_order", "enable_external_access"])
def test_a_connection_that_caches_or_may_not_read_local_files_takes_the_line_path(tmp_path, monkeypatch, probes,
                                                                                   setting):
    """With DuckDB's cache of local files on, a file named /proc/self/fd/N could be served from a cache of another
    file of that name; without insertion order kept, the line numbers: no fast path. Without external access
    DuckDB's reader refuses: the line path, same result."""
    files = [write(tmp_path / f"CNMSshvol2024010{d}.txt", finra_text([r.replace("20240102", f"2024010{d}")
                                                                       for r in ROWS])) for d in (2, 3)]
    con = connect(tmp_path / "a.duckdb")
    try:
        con.execute(f"SET {setting} = {'true' if setting == 'cache_local_files' else 'false'}")
        rep = ing.ingest_paths(con, "finra-short", files).to_dict()
        got = _dump(con)
    finally:
        con.close()
    with monkeypatch.context() as m:
        m.setattr(_source, "_FAST", False)
        rep0, want = _ingest(tmp_path / "b.duckdb", files)
    assert probes["fast"] == ([f.name for f in files] if setting == "enable_external_access" else [])
    assert got == want and rep == rep0 and len(got["rows"]) == 10


def test_both_layouts_in_one_batch_and_a_failed_in_memory_write(tmp_path, monkeypatch, probes):
    """Files of the two headers in one batch (one in-memory file each, several input files in each), and a file
    whose data lines cannot be written to memory (the line path reads it): all as without the fast path."""
    files = []
    for fam in ("CNMS", "FNSQ", "FNRA", "FNYX"):
        old = fam in ("FNSQ", "FNYX")
        rows = ["|".join(r.split("|")[:3] + r.split("|")[4:]) for r in ROWS] if old else ROWS
        rows = [r.replace("|MSFT|50|", f"|MSFT|5{len(files)}|") for r in rows]  # no two files alike (identical skip)
        files.append(write(tmp_path / f"{fam}shvol20240102.txt", finra_text(rows, header=OLD_HEADER if old else HEADER)))
    add = _source.MemFiles.add
    calls = []

    def flaky(self, d, key=None):
        calls.append(d.rows)
        if len(calls) == 3:
            raise OSError(24, "Too many open files")
        return add(self, d, key)
    monkeypatch.setattr(_source.MemFiles, "add", flaky)
    (rep, got), (rep0, want) = _both(tmp_path, files, monkeypatch)
    assert len(probes["fast"]) == 4 and len(calls) == 4
    assert got == want and rep == rep0 and len(got["rows"]) == 20 and len(got["rejects"]) == 16
