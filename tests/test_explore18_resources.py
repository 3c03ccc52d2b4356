"""When the machine, not the input, fails: a full disk (RLIMIT_FSIZE in a subprocess stands in for it: a write past
the limit fails with EFBIG, as one on a full disk fails with ENOSPC), open-file limits, unwritable places, odd paths.

Each command must say what failed in one line naming the file and the cause, exit 2, print no traceback, and leave
every earlier output and the store as they were (nothing half-written under its final name). No root, no mounts:
every limit is set in the child process (``preexec_fn``), SIGXFSZ ignored so the write returns the error.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _cli_helpers import cli, ok
from _cli_helpers import one_line_error as cli_one_line_error

pytestmark = pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs POSIX resource limits")

SYNTH_ARGS = ["data", "synth", "--universe", "tier1", "--start", "2024-01-02", "--end", "2024-01-31"]


def _limits(fsize: int | None = None, nofile: int | None = None):
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write returns EFBIG instead of killing the process
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return pre


def run_cli(args: list[str], cwd: Path, fsize: int | None = None, nofile: int | None = None,
            code: str | None = None) -> subprocess.CompletedProcess:
    """``accumopt ARGS`` (or ``python -c CODE``) in a child process under the limits given."""
    env = {**os.environ, "CI": "true", "ACCUMOPT_CACHE": "off"}
    for k in ("ACCUMOPT_DB", "ACCUMOPT_STORAGE", "ACCUMOPT_OUTPUT"):
        env.pop(k, None)
    cmd = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "optimizer.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limits(fsize, nofile))


def in_process(args: list[str]):
    """``accumopt ARGS`` run in this process (click's runner), with run_cli's environment: for the runs under no
    limit, where the child process is not the point (it only paid the imports again)."""
    return cli(*args, env={"CI": "true", "ACCUMOPT_CACHE": "off"})


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# ----------------------------------------------------------------------------------------------- a full disk


def test_synth_on_a_full_disk_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """``data synth`` whose prices file (19 kB) cannot be written past an 8 kB file size limit (the FINRA files,
    0.7 kB each, fit): one line, exit 2, the cause in words (fails before: the OSError's traceback, exit 1)."""
    p = run_cli([*SYNTH_ARGS, "--out", str(tmp_path / "o")], tmp_path, fsize=8192)
    line = one_line_error(p)
    assert "file too large" in line


def test_atomic_write_names_the_file_it_could_not_write(tmp_path: Path) -> None:
    """A write that fails with ENOSPC (an OSError naming no file, as ``f.write`` raises it) is reported naming the
    file being written, not the temporary one, and leaves neither (fails before: the error named no file)."""
    import errno

    from optimizer.errors import machine_error
    from optimizer.paths import atomic_write

    def full(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "report.html"
    with pytest.raises(OSError) as info:
        atomic_write(target, full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
    assert str(machine_error(info.value)) == f"{target}: no space left on the device"


def test_duckdb_write_failure_is_named_in_words() -> None:
    """DuckDB's report of a full disk, found where it is the context of a later error (the ROLLBACK after a failed
    COMMIT), names the store's file and says the transaction was not committed."""
    import duckdb

    from optimizer.errors import machine_error

    commit = duckdb.TransactionException('TransactionContext Error: Failed to commit: Could not write file '
                                         '"/data/my store.duckdb.wal": No space left on device')
    try:
        try:
            raise commit
        except duckdb.TransactionException:
            raise duckdb.TransactionException("TransactionContext Error: cannot rollback - no transaction is active")
    except duckdb.TransactionException as e:
        got = machine_error(e)
    assert str(got) == ('the DuckDB store\'s file /data/my store.duckdb.wal could not be written: no space left on '
                        'the device; the transaction was not committed')
    assert machine_error(duckdb.CatalogException("Catalog Error: Table with name x does not exist!")) is None
    assert machine_error(ValueError("x")) is None


def test_synth_on_a_full_disk_leaves_no_torn_file(tmp_path: Path) -> None:
    """A complete ``data synth``, then the same run again on a full disk: the error names prices_daily.csv and every
    file of the first run is byte for byte as it was; on a fresh folder no prices file is left under its name
    (fails before: the rerun truncated prices_daily.csv to the 8 kB limit, a first run left an 8 kB torn one, and
    the error named no file)."""
    out = tmp_path / "o"
    ok(in_process([*SYNTH_ARGS, "--out", str(out)]))  # the complete run needs no limit: in this process
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert any(p.name == "prices_daily.csv" for p in before) and len(before) > 20
    line = one_line_error(run_cli([*SYNTH_ARGS, "--out", str(out)], tmp_path, fsize=8192))
    assert "prices_daily.csv: file too large" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    fresh = tmp_path / "fresh"
    one_line_error(run_cli([*SYNTH_ARGS, "--out", str(fresh)], tmp_path, fsize=8192))
    written = {p.name for p in fresh.rglob("*") if p.is_file()}
    assert "prices_daily.csv" not in written and not any(n.endswith(".tmp") for n in written)


APPEND_ROW = """
import sys
import pandas as pd
from pathlib import Path
from optimizer.report.backtest import _append_csv_row
path = Path(sys.argv[1])
try:
    _append_csv_row(path, pd.DataFrame([{"run_id": "b" * 12, "note": "x" * 400}]))
except OSError as e:
    print(e.errno)
"""


def test_runs_index_append_on_a_full_disk_keeps_whole_rows(tmp_path: Path) -> None:
    """``backtest_runs.csv`` (every backtest's row, appended) on a disk with 100 bytes left: the append fails with
    EFBIG and the file is byte for byte as it was, so the next run appends a whole row after whole rows (fails
    before: the first 100 bytes of the row were left at the end, a torn line the next append continued)."""
    index = tmp_path / "backtest_runs.csv"
    index.write_text("run_id,note\n" + "".join(f"{'a' * 12},row {i}\n" for i in range(3)))
    before = index.read_bytes()
    p = run_cli([], tmp_path, fsize=len(before) + 100, code=APPEND_ROW.replace("sys.argv[1]", repr(str(index))))
    assert p.returncode == 0 and p.stdout.strip() == "27", p.stderr[-2000:]
    assert index.read_bytes() == before


def _prices_csv(path: Path, n_symbols: int = 60) -> Path:
    """A valid daily prices file of 2023's NYSE sessions for SYN0001.. (about 0.8 MB)."""
    from optimizer.data.calendar import nyse_sessions

    days = [d.strftime("%Y-%m-%d") for d in nyse_sessions("2023-01-03", "2023-12-29")]
    rows = [f"{d},SYN{i:04d},10.0,11.0,9.0,10.5,{1000 + i}\n" for i in range(1, n_symbols + 1) for d in days]
    path.write_text("date,symbol,open,high,low,close,volume\n" + "".join(rows))
    return path


def test_ingest_on_a_full_disk_names_the_disk_not_the_file(tmp_path: Path) -> None:
    """An ingest whose rows cannot be written to the store (its WAL stops at a 300 kB file size limit): one line
    naming the input file and the store's file with the cause, not a verdict on the file; the store opens with no
    row of it and no 'failed' log row blaming the file (fails before: 'database rejected the file (...)' and the
    file logged as failed)."""
    import duckdb

    src = _prices_csv(tmp_path / "prices.csv")
    db = tmp_path / "s.duckdb"
    line = one_line_error(run_cli(["ingest", "prices", "--db", str(db), str(src)], tmp_path, fsize=300_000))
    assert f"{src}: not stored: the DuckDB store's file {db}" in line  # its WAL (measured), or the file itself
    assert "could not be written: file too large" in line
    assert "rejected" not in line
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM prices_daily").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM ingest_log").fetchone()[0] == 0


def test_storage_that_cannot_be_written_is_not_called_corrupt(tmp_path: Path) -> None:
    """``study list`` on a sound WAL-mode storage in a process under a 3 kB file size limit (SQLite cannot write its
    32 kB shared-memory file and says "disk I/O error"): the line says the storage could not be written and names
    the limit, never that a sound file is corrupt (fails before: 'is corrupt or truncated (disk I/O error)')."""
    import sqlite3

    import optuna

    db = tmp_path / "studies.db"
    optuna.create_study(study_name="s1", storage=f"sqlite:///{db}").optimize(lambda t: t.suggest_float("x", 0, 1), 2)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    for f in (tmp_path / "studies.db-shm", tmp_path / "studies.db-wal"):
        f.unlink(missing_ok=True)
    line = one_line_error(run_cli(["study", "list", "--storage", f"sqlite:///{db}"], tmp_path, fsize=3000))
    assert "could not be written: a file size limit of 3,000 bytes is set (ulimit -f)" in line
    assert "corrupt" not in line
    with sqlite3.connect(db) as con:  # the storage was sound all along
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 2


EVENING_REWRITE = """
import datetime as dt, json, sys
from pathlib import Path
import pandas as pd
import optimizer.evening as ev
from optimizer.data.fetch import FetchedFiles
from optimizer.data.store import connect
from optimizer.settings import Settings

tmp = Path(sys.argv[1])
db, cache = tmp / "s.duckdb", tmp / "cache"
cached = cache / "AAPL_2024-01-02_2024-12-31.json"
last = dt.date(2024, 1, 2)
with connect(db) as con:  # the store's last price of AAPL: 10.0 on 2024-01-02
    con.execute("INSERT INTO prices_daily (date, symbol, open, high, low, close, volume, source) "
                "VALUES ('2024-01-02', 'AAPL', 10, 10, 10, 10.0, 1, 'test')")
ms = [int(pd.Timestamp(d, tz="America/New_York").timestamp() * 1000)
      for d in pd.bdate_range("2024-01-02", periods=200)]
cached.parent.mkdir(parents=True)
cached.write_text(json.dumps({"ticker": "AAPL", "results": [{"t": t, "o": 10.0, "h": 10.0, "l": 10.0, "c": 10.0,
                                                           "v": 1} for t in ms]}))
print(cached.stat().st_size, flush=True)
ev.fetch_polygon_prices = lambda syms, *a, **k: FetchedFiles([cached])  # the vendor's bars, already in the cache
import resource
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    ev._fetch_prices(db, ["AAPL"], last, last, dt.date(2024, 12, 31), cache, Settings(), ev.EveningResult())
except OSError as e:
    print("errno", e.errno)
"""


def test_evening_rewrite_of_a_cached_price_file_on_a_full_disk_keeps_it_whole(tmp_path: Path) -> None:
    """The evening rewrites a cached Polygon file with the bars after the store's last one; on a full disk (a 4 kB
    limit, the new text is ~15 kB) the write fails and the cached file is byte for byte as it was, with no
    temporary file beside it (fails before: write_text left the file cut at 4 kB, invalid JSON that every later
    fetch of the night takes from the cache and whose ingest fails)."""
    p = run_cli([], tmp_path, code=EVENING_REWRITE.replace("sys.argv[1]", repr(str(tmp_path)))
                .replace("sys.argv[2]", "4096"))
    assert p.returncode == 0, p.stderr[-2000:]
    size, err = p.stdout.split("\n")[:2]
    assert err == "errno 27"
    cache = tmp_path / "cache"
    assert [f.name for f in cache.iterdir()] == ["AAPL_2024-01-02_2024-12-31.json"]
    doc = __import__("json").loads((cache / "AAPL_2024-01-02_2024-12-31.json").read_text())
    assert len(doc["results"]) == 200 and (cache / "AAPL_2024-01-02_2024-12-31.json").stat().st_size == int(size)


FETCH_WRITE = """
import sys
from pathlib import Path
from optimizer.data.fetch import _write_atomic
try:
    _write_atomic(Path(sys.argv[1]) / "c" / "CNMSshvol20240102.txt", b"x" * 20000)
except OSError as e:
    print("errno", e.errno)
"""


def test_fetch_cache_write_on_a_full_disk_leaves_no_part_file(tmp_path: Path) -> None:
    """A downloaded file that cannot be written whole (a 4 kB limit) leaves nothing in the cache (fails before: its
    '<name>.part<pid>' file, 4 kB of it, stayed there)."""
    p = run_cli([], tmp_path, fsize=4096, code=FETCH_WRITE.replace("sys.argv[1]", repr(str(tmp_path))))
    assert p.stdout.strip() == "errno 27", p.stderr[-2000:]
    assert list((tmp_path / "c").iterdir()) == []


def test_ingest_out_of_memory_is_not_blamed_on_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB out of memory while staging a file (measured: a 2M-row FINRA file, 72 MB, under a 1.5 GB address
    space limit; here the staging raises DuckDB's own exception) stops the ingest as the machine's failure, naming
    the file, with nothing logged against it (fails before: the file was logged 'failed' as an 'unreadable
    finra-short file (OutOfMemoryException: ...)', and the next files went on into the same wall)."""
    import duckdb

    import optimizer.data.ingest as ing
    from optimizer.data.store import connect
    from optimizer.errors import MachineError

    def oom(*a, **k):
        raise duckdb.OutOfMemoryException("Out of Memory Error: Failed to allocate block of 262144 bytes")

    monkeypatch.setattr(ing, "stage_rows", oom)
    src = _prices_csv(tmp_path / "prices.csv", n_symbols=2)
    with connect(tmp_path / "s.duckdb") as con:
        with pytest.raises(MachineError) as info:
            ing.ingest_paths(con, "prices", [src])
        assert str(info.value).startswith(f"{src}: not stored: DuckDB ran out of memory (Out of Memory Error")
        assert con.execute("SELECT count(*) FROM ingest_log").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM prices_daily").fetchone()[0] == 0


# ------------------------------------------------------------------------------------------ unwritable places


def test_backtest_refuses_a_read_only_out_before_writing_the_store(tmp_path: Path, synth_db: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``backtest --out`` a folder on a read-only file system (measured in /tmp on a read-only bind mount: the run was
    computed, its rows written to the store, then 'OSError [Errno 30] ... .signal_events.parquet.<hex>.tmp') is
    refused before the run, naming the folder, and the store gets no bt_ row of a run whose files were never
    written. No mount here: the folder answers as a read-only mount does (``os.access`` W_OK false, ``statvfs``
    ST_RDONLY) (fails before: no error, the run written to the store)."""
    import errno
    import shutil
    from types import SimpleNamespace

    import duckdb

    from optimizer.backtest import backtest
    from optimizer.errors import machine_error

    db = tmp_path / "s.duckdb"
    shutil.copy(synth_db, db)
    out = tmp_path / "ro"
    out.mkdir()
    real_access, real_statvfs = os.access, os.statvfs
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == out and mode & os.W_OK
                        else real_access(p, mode, **k))
    monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(f_flag=os.ST_RDONLY) if Path(p) == out
                        else real_statvfs(p))
    with pytest.raises(OSError) as info:
        backtest({}, db, universe="tier1", out_root=out)
    assert info.value.errno == errno.EROFS
    assert str(machine_error(info.value)) == f"{out}: read-only file system"
    assert list(out.iterdir()) == []
    with duckdb.connect(str(db), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert "bt_backtest_runs" not in tables or \
            con.execute("SELECT count(*) FROM bt_backtest_runs").fetchone()[0] == 0


JOURNAL_FULL = """
import resource, sys
import optuna
from optimizer.study.storage import make_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
path = sys.argv[1]
study = optuna.create_study(study_name="j", storage=make_storage("journal:" + path))
study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
import os
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 300, hard))  # the disk fills mid-trial
try:
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=20)
except Exception as e:  # Optuna's own trial loop then fails to mark the trial FAIL: 'Should not reach'
    from optimizer.errors import machine_error
    print("error", machine_error(e))
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again: the next run and every reader go on
again = optuna.load_study(study_name="j", storage=make_storage("journal:" + path))
again.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
print("complete", sum(t.state.name == "COMPLETE" for t in again.trials))
"""


def test_journal_storage_append_on_a_full_disk_keeps_whole_lines(tmp_path: Path) -> None:
    """A ``journal:`` storage whose append fails mid-line (a file size limit 300 bytes above its size): the error
    names the journal, the file keeps whole lines, and the next run and every reader go on with every finished
    trial (fails before: the torn line, completed by the next append, made every later read fail with
    JSONDecodeError: the study and all its trials unreadable)."""
    path = tmp_path / "j.log"
    p = run_cli([], tmp_path, code=JOURNAL_FULL.replace("sys.argv[1]", repr(str(path))))
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.split("\n")
    assert lines[0].startswith(f"error {path}: file too large")
    assert int(lines[1].split()[1]) >= 3  # the 2 trials before, those that fitted, and the one after
    assert path.read_bytes().endswith(b"\n")


# ------------------------------------------------------------------------------------------------- odd paths


def test_names_that_are_not_utf8_are_refused_in_one_line(tmp_path: Path) -> None:
    """A file or store name of bytes that are no UTF-8 (a Latin-1 name copied from an old disk: b'pr\\xffices.csv')
    is one line naming it, exit 2, before anything is read (fails before: ingest of its folder died in a traceback
    logging the file, DuckDB 'cannot encode str as UTF-8, surrogate ...'; a --db with such a name: 'RuntimeError:
    std::bad_cast'; a --storage or --out with one: urllib's or pyarrow's UnicodeEncodeError)."""
    from optimizer.data.ingest import expand_paths
    from optimizer.data.store import connect
    from optimizer.errors import DataError, ParameterError

    folder = tmp_path / "in"
    folder.mkdir()
    bad = os.fsdecode(os.fsencode(str(folder)) + b"/pr\xffices.csv")
    _prices_csv(Path(bad), n_symbols=1)
    with pytest.raises(ParameterError, match=r"paths must be valid UTF-8 names .*pr\ufffdices\.csv'; rename it"):
        expand_paths([folder])
    store = os.fsdecode(os.fsencode(str(tmp_path)) + b"/s\xfd.duckdb")
    with pytest.raises(DataError, match=r"its path is not valid UTF-8 \(DuckDB opens UTF-8 paths only\); rename it"):
        connect(store)
    assert not os.path.exists(store)
    p = in_process(["ingest", "prices", "--db", str(tmp_path / "s.duckdb"), str(folder)])
    assert "paths must be valid UTF-8 names" in cli_one_line_error(p)
    import sqlite3

    with sqlite3.connect(tmp_path / "studies.db") as con:
        con.execute("CREATE TABLE studies (study_id INTEGER)")
    os.rename(tmp_path / "studies.db", store)  # an existing storage file with such a name
    p = in_process(["study", "list", "--storage", f"sqlite:///{store}"])  # was urllib's UnicodeEncodeError
    assert cli_one_line_error(p).startswith("error: --storage must be valid UTF-8 text")
    assert not (tmp_path / "s.duckdb").exists()  # refused before the store is created (nothing logged either)


def test_a_journal_damaged_earlier_is_one_line(tmp_path: Path) -> None:
    """A journal an earlier version left damaged (a torn append completed by the next one: the file of 64e864c's
    measurement) is one line naming the cause, exit 2, for every command reading it (fails before: Optuna's
    JSONDecodeError traceback, exit 1)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "j.log"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    optuna.create_study(study_name="j", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), 2)
    lines = path.read_text().splitlines()
    damaged = [*lines[:-2], lines[-2][:30] + lines[-2], lines[-1]]  # a torn append, completed by the next one
    path.write_text("\n".join(damaged) + "\n")
    line = cli_one_line_error(in_process(["study", "list", "--storage", f"journal:{path}"]))
    assert line.startswith("error: the study storage failed: JSONDecodeError: ")
    assert line.endswith("(its journal file holds a line that is not whole JSON: an append cut short, e.g. by a full "
                         "disk)")


def test_an_ingest_refused_for_its_paths_creates_no_store(tmp_path):
    """`ingest` created an empty store (and its folder) before refusing a path that does not exist: a refused
    command left a side effect, and a mistyped --db became a new empty store (lead, stop 36; fails before: the store
    existed after the refusal)."""
    from _cli_helpers import cli, one_line_error

    db = tmp_path / "new" / "s.duckdb"
    one_line_error(cli("ingest", "finra-short", tmp_path / "no_such_dir", "--db", db, "--out", tmp_path / "out"),
                   "paths must exist", "no_such_dir")
    assert not db.exists() and not db.parent.exists()
