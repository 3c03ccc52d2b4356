"""Lead, stop 39: an ingest's checkpoints after its pipeline, not on its writing thread (issue 15.4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb

from _ingest_helpers import dump_tables, finra_text, write
from optimizer.data.store import INGEST_CHECKPOINT, checkpoint_budget, connect
from test_mend21 import _Recording  # a connection that records the statements run on it

_SHOWN = "SELECT current_setting('checkpoint_threshold')"
_LOG = "SELECT id, file, sha256, kind, rows_accepted, rows_rejected, status, message FROM ingest_log ORDER BY id"


def _shown(con) -> str:
    return con.execute(_SHOWN).fetchall()[0][0]


def test_checkpoint_budget_raises_the_threshold_for_the_block_and_restores_it(tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    try:
        before = _shown(con)  # DuckDB's default, 16 MiB
        rec = _Recording(con)
        with checkpoint_budget(rec):
            assert _shown(con) == "122.0 MiB" and INGEST_CHECKPOINT == "128MB"
        assert _shown(con) == before
        assert rec.sql[-1] == "RESET checkpoint_threshold", rec.sql  # the default: exact
        # a threshold the connection's owner set is theirs: kept, lower or higher
        for mine, shown in (("1500B", "1.4 KiB"), ("1GB", "953.6 MiB")):
            con.execute(f"SET checkpoint_threshold = '{mine}'")
            with checkpoint_budget(con):
                assert _shown(con) == shown
            assert _shown(con) == shown
    finally:
        con.close()
    mem = duckdb.connect(":memory:")
    try:
        before = _shown(mem)
        with checkpoint_budget(mem):
            assert _shown(mem) == before
    finally:
        mem.close()


def _cnms_files(d: Path, days: int = 6, symbols: int = 300) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    sessions = ["20200102", "20200103", "20200106", "20200107", "20200108", "20200109", "20200110", "20200113"]
    for k, day in enumerate(sessions[:days]):
        rows = [f"{day}|S{i:04d}|{10 + i + k}|{i % 3}|{40 + 2 * i + k}|Q" for i in range(symbols)]
        out.append(write(d / f"CNMSshvol{day}.txt", finra_text(rows)))
    return out


def test_an_ingest_runs_its_pipeline_under_the_raised_threshold_and_restores_it(tmp_path, monkeypatch) -> None:
    """The writing thread's commits ran DuckDB's checkpoint at the default 16 MiB of WAL (fails before: the
    threshold seen inside the pipeline is the default); after the call the connection's threshold is as before."""
    import optimizer.data.ingest as ingest

    seen: list[str] = []
    run = ingest._Pipeline.run

    def spying(self, batches):
        seen.append(_shown(self.con))
        return run(self, batches)

    monkeypatch.setattr(ingest._Pipeline, "run", spying)
    con = connect(tmp_path / "s.duckdb")
    try:
        before = _shown(con)
        rep = ingest.ingest_paths(con, "finra-short", _cnms_files(tmp_path / "raw"))
        assert rep.exit_code == 0 and rep.rows_accepted == 6 * 300
        assert seen == ["122.0 MiB"], seen
        assert _shown(con) == before
    finally:
        con.close()


_KILLED = """
import os, sys
from pathlib import Path
from optimizer.data.store import connect
from optimizer.data.ingest import ingest_paths
con = connect(sys.argv[1])
rep = ingest_paths(con, "finra-short", sorted(Path(sys.argv[2]).glob("*.txt")))
assert rep.exit_code == 0, rep
print(Path(sys.argv[1] + ".wal").stat().st_size, flush=True)
os._exit(0)  # killed before any checkpoint or close: the committed files are only in the WAL
"""


def test_files_committed_to_the_wal_and_not_checkpointed_survive_a_kill(tmp_path) -> None:
    """Every file is still its own committed transaction: a process killed after the ingest, before DuckDB
    checkpointed (its WAL holding every file), leaves a store that opens with the same rows as a store ingested and
    closed normally."""
    raw = tmp_path / "raw"
    _cnms_files(raw, days=8)
    killed = tmp_path / "killed.duckdb"
    p = subprocess.run([sys.executable, "-c", _KILLED, str(killed), str(raw)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout.split()[-1]) > 0  # the rows were in the WAL, not checkpointed into the file
    from optimizer.data.ingest import ingest_paths

    ref = connect(tmp_path / "ref.duckdb")
    try:
        assert ingest_paths(ref, "finra-short", sorted(raw.glob("*.txt"))).exit_code == 0
        want = dump_tables(ref, exclude=("ingest_log", "schema_version"))
        want_log = ref.execute(_LOG).fetchall()
    finally:
        ref.close()
    got_con = connect(killed)
    try:
        assert dump_tables(got_con, exclude=("ingest_log", "schema_version")) == want
        assert got_con.execute(_LOG).fetchall() == want_log
    finally:
        got_con.close()
