"""bench/ingest.py --profile (issue 15.4): besides the writing thread's COMMITs, how many of them ran DuckDB's
automatic checkpoint (the store's WAL reached ``checkpoint_threshold``) and their CPU. Measured (tspeed22, 252 CNMS
files of 10,000 rows, DuckDB 2.0.1, threads=1): 7 such COMMITs, ~0.08 s CPU each, 0.57 of the COMMITs' 1.04 CPU s;
the writer's other statements are at DuckDB's floor (a one-row INSERT into ingest_log costs ~0.8 ms whether its
values are literals, parameters or a PREPAREd statement, alone or in one ``execute`` with the others)."""

from __future__ import annotations

import sys
from pathlib import Path

import optimizer.data.ingest as ingest
from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect


def _bench(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    monkeypatch.delitem(sys.modules, "ingest", raising=False)
    import ingest as bench  # bench/ingest.py

    return bench


def test_the_ingest_bench_profile_counts_the_commits_that_ran_duckdbs_checkpoint(tmp_path, monkeypatch):
    bench = _bench(monkeypatch)
    bench.write_cnms_files(tmp_path / "f", 200, 8)
    got = {}
    # never / once the WAL of a few files adds up (DuckDB adds its estimate of the COMMIT's share, far above the ~10 KB
    # each writes) / at every COMMIT (each then skips the WAL and checkpoints)
    for threshold in ("1GiB", "300KiB", "1KiB"):
        db = tmp_path / f"s{threshold}.duckdb"
        con = connect(db)
        con.execute("CHECKPOINT")
        con.execute(f"SET checkpoint_threshold = '{threshold}'")
        with bench._PipelineProfile(db) as prof:
            ingest_paths(con, "finra-short", [tmp_path / "f"], overlap=False)
        fig = prof.figures()
        got[threshold] = fig["commit_checkpoints"]
        assert 0 <= fig["commit_checkpoint_cpu_s"] <= fig["commit_cpu_s"]
        con.close()
    assert got["1GiB"] == 0 and 0 < got["300KiB"] < 8 and got["1KiB"] == 8
    # no WAL to watch (an in-memory store, or none given): none counted
    with bench._PipelineProfile() as prof:
        ingest_paths(connect(":memory:"), "finra-short", [tmp_path / "f"], overlap=False)
    assert prof.figures()["commit_checkpoints"] == 0
