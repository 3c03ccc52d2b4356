"""The ingest pipeline (issue 15.4): batch k+1 is staged and validated while the files of batch k are written, one
transaction per file, by a second connection in a worker thread. Whatever the timing, the stored tables, the
``ingest_log`` (order, statuses, messages) and the report equal the serial run (``overlap=False``: the same code
with the overlap off) and a one-file-at-a-time ingest; a failure while staging the next batch leaves the files of
the batch being written exactly as a serial run leaves them."""

from __future__ import annotations

import shutil
import threading

import pytest
from _ingest_helpers import dump_tables, finra_text, write

import optimizer.data.ingest as ingest
from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect
from optimizer.errors import InputFileError

DAYS = ["20200102", "20200103", "20200106", "20200107", "20200108", "20200109", "20200110", "20200113", "20200114"]


def _row(day: str, sym: str, short: int, total: int) -> str:
    return f"{day}|{sym}|{short}|0|{total}|Q"


def _good(day: str, k: int = 0) -> str:
    return finra_text([_row(day, "AAPL", 10 + k, 20 + k), _row(day, "MSFT", 5, 9 + k)])


@pytest.fixture()
def small_batches(monkeypatch):
    """Batches of 2, 3, 3, ... files: a handful of files cross several batches (and both staging slots)."""
    monkeypatch.setattr(ingest, "FIRST_BATCH_FILES", 2)
    monkeypatch.setattr(ingest, "BATCH_FILES", 3)


def _mix(root):
    """Good, failing (format), rejecting (invariant, duplicate key), replacing and identical files, in two calls."""
    first, second = root / "first", root / "second"
    first.mkdir(parents=True)
    second.mkdir()
    for i, d in enumerate(DAYS[:6]):
        write(first / f"CNMSshvol{d}.txt", _good(d, i))
    write(first / f"CNMSshvol{DAYS[2]}.txt", finra_text([_row(DAYS[2], "AAPL", 10, 20), f"{DAYS[2]}|MSFT|x|0|9|Q"]))
    write(first / f"CNMSshvol{DAYS[4]}.txt", finra_text([_row(DAYS[4], "AAPL", 30, 20), _row(DAYS[4], "MSFT", 1, 2)]))
    write(first / f"FNSQshvol{DAYS[1]}.txt", finra_text([_row(DAYS[1], "AAPL", 1, 2), _row(DAYS[1], "AAPL", 1, 3)]))
    write(first / f"FNSQshvol{DAYS[3]}.txt", finra_text([_row(DAYS[3], "IBM", 1, 2)], trailer=5))
    # the second call: files already stored (identical: skipped), replaced ones, new ones, a bad one
    shutil.copy(first / f"CNMSshvol{DAYS[0]}.txt", second / f"CNMSshvol{DAYS[0]}.txt")
    write(second / f"CNMSshvol{DAYS[1]}.txt", _good(DAYS[1], 7))
    shutil.copy(first / f"CNMSshvol{DAYS[3]}.txt", second / f"CNMSshvol{DAYS[3]}.txt")
    for i, d in enumerate(DAYS[6:]):
        write(second / f"CNMSshvol{d}.txt", _good(d, 20 + i))
    write(second / f"FNSQshvol{DAYS[7]}.txt", finra_text([_row(DAYS[7], "A$PL", 1, 2), _row(DAYS[7], "IBM", 1, 2)]))
    write(second / f"FNSQshvol{DAYS[8]}.txt", finra_text([_row(DAYS[8], "IBM", 1, 2)]).replace("|", ","))
    return first, second


def _log(con):
    return con.execute("SELECT id, file, sha256, kind, rows_accepted, rows_rejected, status, message "
                       "FROM ingest_log ORDER BY id").fetchall()


def _state(con):
    """Every data table, the rejects and the log, byte for byte (ingested_at and applied_at are clocks)."""
    tables = dump_tables(con, exclude=("ingest_log", "schema_version"))
    return tables, _log(con)


def _run(root, strict=False, **kw):
    con = connect(":memory:")
    first, second = _mix(root)
    reports = [ingest_paths(con, "finra-short", [d], strict=strict, **kw).to_dict() for d in (first, second)]
    return con, reports, _state(con)


def _one_by_one(root, strict=False):
    """The reference: every file in its own call, in the order the batched call uses."""
    con = connect(":memory:")
    first, second = _mix(root)
    reports = []
    for d in (first, second):
        files = []
        for f in ingest._order(ingest.expand_paths([d])):
            files += ingest_paths(con, "finra-short", [f], strict=strict).to_dict()["files"]
        reports.append(files)
    return reports, _state(con)


@pytest.mark.parametrize("strict", [False, True])
def test_pipelined_equals_serial_and_one_file_at_a_time(tmp_path, small_batches, strict):
    con_p, rep_p, state_p = _run(tmp_path / "p", strict)
    con_s, rep_s, state_s = _run(tmp_path / "s", strict, overlap=False)
    ref_files, state_1 = _one_by_one(tmp_path / "o", strict)

    def norm(x, root):
        return repr(x).replace(str(root), "<root>")

    assert norm(rep_p, tmp_path / "p") == norm(rep_s, tmp_path / "s")
    assert norm(state_p, tmp_path / "p") == norm(state_s, tmp_path / "s")
    assert norm([r["files"] for r in rep_p], tmp_path / "p") == norm(ref_files, tmp_path / "o")
    assert norm(state_p, tmp_path / "p") == norm(state_1, tmp_path / "o")
    # the mix really holds every outcome, spread over several batches
    statuses = [f["status"] for r in rep_p for f in r["files"]]
    for s in ("ok", "failed", "replaced", "skipped_identical"):
        assert s in statuses
    assert ("rejected_rows" in statuses) is not strict
    assert len(statuses) == 16
    # nothing of the staging is left behind (no attached database, no table outside the store)
    dbs = {r[0] for r in con_p.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall()}
    assert dbs == {"memory"}


def test_identical_is_decided_in_file_order_across_batches(tmp_path, small_batches):
    """Same name, other content, then the first content again, in consecutive batches: each file's outcome is the
    one a one-by-one ingest gives (the last file is NOT skipped: a different version was stored since)."""
    dirs = [tmp_path / f"d{i}" for i in range(4)]
    for d in dirs:
        d.mkdir()
    name = f"CNMSshvol{DAYS[0]}.txt"
    v1, v2 = _good(DAYS[0], 1), _good(DAYS[0], 2)
    for d, text in zip(dirs, (v1, v1, v2, v1)):
        write(d / name, text)
    got = {}
    for overlap in (True, False):
        con = connect(":memory:")
        rep = ingest_paths(con, "finra-short", dirs, overlap=overlap)
        got[overlap] = ([f.status for f in rep.files], _state(con))
    assert got[True] == got[False]
    assert got[True][0] == ["ok", "skipped_identical", "replaced", "replaced"]


class _Boom(Exception):
    pass


def _staged_then_fail(monkeypatch, exc: BaseException, ctrl_c: bool = False):
    """The second _stage_batch call raises ``exc`` once the writer has started the first batch's second file, which
    it holds until the staging failure has happened (``ctrl_c``: until the pipeline asked it to stop)."""
    stage, write_one, init = ingest._stage_batch, ingest._write, ingest._Pipeline.__init__
    calls = {"stage": 0, "write": 0}
    failed, at_second = threading.Event(), threading.Event()
    pipes = []

    def pipeline(self, *a, **k):
        init(self, *a, **k)
        pipes.append(self)

    def stage_batch(*a, **k):
        calls["stage"] += 1
        if calls["stage"] == 2:
            assert at_second.wait(10)
            failed.set()
            raise exc
        return stage(*a, **k)

    def write(*a, **k):
        calls["write"] += 1
        if calls["write"] == 2:
            at_second.set()
            assert (pipes[0].stop if ctrl_c else failed).wait(10)
        return write_one(*a, **k)

    monkeypatch.setattr(ingest._Pipeline, "__init__", pipeline)
    monkeypatch.setattr(ingest, "_stage_batch", stage_batch)
    monkeypatch.setattr(ingest, "_write", write)
    return calls


def _three_good_then_more(root):
    root.mkdir()
    for i, d in enumerate(DAYS):
        write(root / f"CNMSshvol{d}.txt", _good(d, i))
    return root


def test_a_failure_while_staging_the_next_batch_lets_the_current_batch_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "FIRST_BATCH_FILES", 3)
    calls = _staged_then_fail(monkeypatch, _Boom("staging failed"))
    con = connect(":memory:")
    with pytest.raises(_Boom):
        ingest_paths(con, "finra-short", [_three_good_then_more(tmp_path / "f")])
    assert calls == {"stage": 2, "write": 3}
    # the whole first batch, each file in full, nothing of the second
    log = _log(con)
    assert [(r[1].rsplit("/", 1)[1], r[6]) for r in log] == [(f"CNMSshvol{d}.txt", "ok") for d in DAYS[:3]]
    stored = con.execute("SELECT strftime(date, '%Y%m%d'), count(*) FROM finra_short_daily GROUP BY 1 ORDER BY 1").fetchall()
    assert stored == [(d, 2) for d in DAYS[:3]]


@pytest.mark.parametrize("ctrl_c", [KeyboardInterrupt, lambda: RuntimeError("Query interrupted")],
                         ids=["keyboard-interrupt", "duckdb-query-interrupted"])
def test_ctrl_c_while_staging_stops_the_writer_after_a_whole_file(tmp_path, monkeypatch, ctrl_c):
    """Ctrl-C reaches the staging thread as a KeyboardInterrupt, or, when it comes while DuckDB runs a staging
    query, as DuckDB's ``RuntimeError('Query interrupted')`` (DuckDB takes the SIGINT itself): both stop the
    writer after its file (before, the second let the writer finish its whole batch)."""
    monkeypatch.setattr(ingest, "FIRST_BATCH_FILES", 3)
    exc = ctrl_c()
    calls = _staged_then_fail(monkeypatch, exc, ctrl_c=True)
    con = connect(":memory:")
    with pytest.raises(type(exc)):
        ingest_paths(con, "finra-short", [_three_good_then_more(tmp_path / "f")])
    # Ctrl-C came while the writer was at its second file: that file is finished, the third is not started
    assert calls == {"stage": 2, "write": 2}
    assert [r[6] for r in _log(con)] == ["ok", "ok"]
    assert con.execute("SELECT count(*), count(DISTINCT date) FROM finra_short_daily").fetchone() == (4, 2)


def test_a_writer_failure_stops_the_call_and_the_staged_next_batch_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "FIRST_BATCH_FILES", 3)
    root = _three_good_then_more(tmp_path / "f")
    write(root / f"CNMSshvol{DAYS[1]}.txt", finra_text([_row(DAYS[1], "AAPL", 1, 2)], trailer=9))
    con = connect(":memory:")
    with pytest.raises(InputFileError, match="trailer says 9 records, file has 1"):
        ingest_paths(con, "finra-short", [root], raise_on_error=True)
    assert [r[6] for r in _log(con)] == ["ok", "failed"]
    assert con.execute("SELECT count(*) FROM finra_short_daily").fetchone() == (2,)
    assert {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall()} == {"memory"}


def test_the_delete_is_skipped_only_when_nothing_can_be_stored_for_the_date(tmp_path):
    """Files in date order into an empty table skip the DELETE; an older date (or a re-ingest) still replaces."""
    root = tmp_path / "f"
    root.mkdir()
    for d in DAYS[:3]:
        write(root / f"CNMSshvol{d}.txt", _good(d))
    con = connect(":memory:")
    assert [f.status for f in ingest_paths(con, "finra-short", [root]).files] == ["ok"] * 3
    older = tmp_path / "o"
    older.mkdir()
    write(older / f"CNMSshvol{DAYS[1]}.txt", _good(DAYS[1], 5))
    write(older / f"CNMSshvol{DAYS[3]}.txt", _good(DAYS[3], 5))
    rep = ingest_paths(con, "finra-short", [older])
    assert [f.status for f in rep.files] == ["replaced", "ok"]
    assert con.execute(f"SELECT short_volume FROM finra_short_daily WHERE date = DATE '2020-01-03' AND symbol = 'AAPL'"
                       ).fetchall() == [(15,)]


def test_ctrl_c_while_waiting_for_the_writer_stops_it_after_the_file_it_is_writing(tmp_path, monkeypatch):
    """One batch: the calling thread waits for the writer when Ctrl-C comes (sent while the writer is at its
    second file); the second file is finished, the third is not started."""
    import _thread

    monkeypatch.setattr(ingest, "FIRST_BATCH_FILES", 3)
    monkeypatch.setattr(ingest, "TAIL_FILES", 3)  # the 3 files in one batch
    root = tmp_path / "f"
    root.mkdir()
    for i, d in enumerate(DAYS[:3]):
        write(root / f"CNMSshvol{d}.txt", _good(d, i))
    write_one, init = ingest._write, ingest._Pipeline.__init__
    pipes, calls = [], {"write": 0}

    def pipeline(self, *a, **k):
        init(self, *a, **k)
        pipes.append(self)

    def write_file(*a, **k):
        calls["write"] += 1
        if calls["write"] == 2:
            _thread.interrupt_main()
            # the calling thread sees the interrupt at its next poll (0.2 s); 60 s, not 10: on a loaded 2-core
            # host the 10 s wait once ran out (a wait that passes returns as soon as stop is set)
            assert pipes[0].stop.wait(60)
        return write_one(*a, **k)

    monkeypatch.setattr(ingest._Pipeline, "__init__", pipeline)
    monkeypatch.setattr(ingest, "_write", write_file)
    con = connect(":memory:")
    with pytest.raises(KeyboardInterrupt):
        ingest_paths(con, "finra-short", [root])
    assert calls["write"] == 2
    assert [r[6] for r in _log(con)] == ["ok", "ok"]
    assert con.execute("SELECT count(*), count(DISTINCT date) FROM finra_short_daily").fetchone() == (4, 2)


def test_batches_grow_then_end_on_ever_smaller_ones(tmp_path, monkeypatch):
    """The batch plan (``_batches``): the first FIRST_BATCH_FILES, each next twice as large up to the caps, none
    more than half of the files still to come unless under TAIL_FILES (the last batch's write is the one nothing
    overlaps), every file once, in order, with its position in the call."""
    monkeypatch.setattr(ingest, "FIRST_BATCH_BYTES", 1 << 30)
    monkeypatch.setattr(ingest, "BATCH_BYTES", 1 << 30)
    files = []
    for i in range(60):
        files.append(write(tmp_path / f"f{i:02d}.txt", "x" * 100))
    got = list(ingest._batches(files))
    assert [len(b) for b in got] == [16, 22, 11, 6, 3, 2]
    assert [e.path for b in got for e in b] == files
    assert [e.pos for b in got for e in b] == list(range(60))
    assert all([e.fid for e in b] == list(range(len(b))) for b in got)
    # a byte cap still cuts a batch (the first at FIRST_BATCH_BYTES)
    monkeypatch.setattr(ingest, "FIRST_BATCH_BYTES", 250)
    assert [len(b) for b in ingest._batches(files[:5])] == [2, 2, 1]
    assert [len(b) for b in ingest._batches(files[:1])] == [1]


def test_ingest_file_is_the_same_pipeline_for_one_file(tmp_path):
    root = tmp_path / "f"
    root.mkdir()
    good = write(root / f"CNMSshvol{DAYS[0]}.txt", _good(DAYS[0]))
    bad = write(root / f"CNMSshvol{DAYS[1]}.txt", finra_text([_row(DAYS[1], "AAPL", 1, 2)], trailer=4))
    a, b = connect(":memory:"), connect(":memory:")
    got = [ingest.ingest_file(a, "finra-short", p).to_dict() for p in (good, bad, good)]
    want = [f.to_dict() for p in (good, bad, good) for f in ingest_paths(b, "finra-short", [p]).files]
    assert got == want
    assert [g["status"] for g in got] == ["ok", "failed", "skipped_identical"]
    assert _state(a) == _state(b)
    assert {r[0] for r in a.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall()} == {"memory"}


def test_duckdb_threads_is_one_during_an_overlapped_call_and_restored_after(tmp_path, monkeypatch):
    root = _three_good_then_more(tmp_path / "f")
    con = connect(":memory:")
    con.execute("SET threads = 3")
    seen = []
    write_one = ingest._write

    def write(ctx, *a, **k):
        seen.append(ctx.con.execute("SELECT current_setting('threads')").fetchone()[0])
        return write_one(ctx, *a, **k)

    monkeypatch.setattr(ingest, "_write", write)
    ingest_paths(con, "finra-short", [root])
    assert set(seen) == {1} and len(seen) == len(DAYS)
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 3
    seen.clear()
    ingest_paths(con, "finra-short", [root], overlap=False)  # identical files: nothing written, nothing changed
    monkeypatch.setattr(ingest, "_stage_batch", lambda *a, **k: (_ for _ in ()).throw(_Boom()))
    with pytest.raises(_Boom):
        ingest_paths(con, "finra-short", [root])
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 3


def test_a_symbol_map_changed_between_calls_takes_effect_in_the_next_call(tmp_path):
    """The symbol-map CASE is cached per process by the map's CONTENT: a mapping added between two calls (and one
    store with another map in the same process) is applied by the next call, never an earlier call's CASE."""
    day1, day2 = "20200102", "20200103"
    con = connect(tmp_path / "a.duckdb")
    other = connect(tmp_path / "b.duckdb")
    try:
        f1 = write(tmp_path / f"CNMSshvol{day1}.txt", finra_text([_row(day1, "OLDCO", 1, 2)]))
        f2 = write(tmp_path / f"CNMSshvol{day2}.txt", finra_text([_row(day2, "OLDCO", 1, 2)]))
        assert ingest_paths(con, "finra-short", [f1]).exit_code == 0
        con.execute("INSERT INTO symbol_map VALUES ('OLDCO', 'NEWCO', DATE '2021-01-04')")
        assert ingest_paths(con, "finra-short", [f2]).exit_code == 0
        assert ingest_paths(other, "finra-short", [f2]).exit_code == 0  # the default map again
        got = con.execute("SELECT strftime(date, '%Y%m%d'), symbol FROM finra_short_daily ORDER BY date").fetchall()
        assert got == [(day1, "OLDCO"), (day2, "NEWCO")]  # the first call stored OLDCO (no mapping then)
        assert other.execute("SELECT symbol FROM finra_short_daily").fetchall() == [("OLDCO",)]
    finally:
        con.close()
        other.close()
