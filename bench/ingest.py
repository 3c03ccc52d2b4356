"""Benchmark: raw-file ingest (``optimizer.data.ingest.ingest_paths``) into a fresh DuckDB store.

(a) Full-universe FINRA CNMS daily short-sale files in FINRA's real format (``CNMSshvolYYYYMMDD.txt``: header
``Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market``, pipe-delimited, CRLF, record-count trailer),
``--symbols`` symbols (default 10,000) x ``--sessions`` NYSE sessions, generated with numpy into a temp dir,
then ingested as kind ``finra-short``: rows/s, seconds per file, peak RSS of the ingest, DB file size, and the
seconds of a second ingest of the same files (every file skipped as identical).
(b) The embedded synthetic market's files (default 33 symbols x 502 sessions: 502 CNMS files, prices, lit flow,
OTC weekly, options CSVs): write time, ingest seconds per kind, and the ``build_daily_metrics`` time.

The default run (60 sessions for (a)) finishes in well under 2 minutes; ``--full`` ingests a year (252 sessions).
Targets (issue 15.4): (a) >= 1,000,000 rows/s, (b) >= 20 files/s (the 502 CNMS files in <= 5 s). CPU seconds are
printed beside the wall time (the load of other processes inflates wall time, hardly CPU time). The NYSE calendar
is built once per process before timing (a one-off ~0.4 s, like an import).

``--profile`` adds where (a)'s time goes, per thread of the pipeline: the writing thread's CPU and busy wall time
(its critical path), how long it waited for staged batches, the CPU and wall time of its COMMITs (wall minus CPU
is mostly the fsync of the WAL) and of those in which DuckDB checkpointed the store (its WAL reached
``checkpoint_threshold``: the COMMIT wrote to the store's file or emptied the WAL), the writing thread's CPU per
statement (its connection wrapped: each statement's
first words, numbers elided, e.g. ``INSERT INTO finra_short_rows``, ``INSERT INTO ingest_log``, ``COMMIT``), the
staging thread's CPU and busy wall time (measured by wrapping the pipeline's stage and write steps: thread CPU
time, which other processes' load barely moves), and how many files the fast path read (``_source.probe_delimited``:
DuckDB's CSV reader) and how many the line path.

    .venv/bin/python bench/ingest.py [--sessions 60] [--symbols 10000] [--full] [--skip-synth] [--reference [per-file]]
        [--serial] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import threading
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_s, emit, machine, peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402

from optimizer.data.calendar import nyse_sessions  # noqa: E402
from optimizer.data.ingest import ingest_paths  # noqa: E402
from optimizer.data.store import connect  # noqa: E402

__all__ = ["write_cnms_files", "bench_finra", "bench_synth", "run"]

HEADER = "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market"
MARKETS = np.array(["B,Q,N", "Q,N", "B,Q", "N", "Q"])


def _symbols(n: int) -> list[str]:
    """n distinct upper-case tickers (1-5 letters; base-26 codes, shortest first)."""
    out: list[str] = []
    width = 1
    while len(out) < n:
        k = min(26**width, n - len(out))
        idx = np.arange(k)
        chars = np.empty((k, width), dtype="<U1")
        for j in range(width - 1, -1, -1):
            chars[:, j] = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))[idx % 26]
            idx //= 26
        out += ["".join(r) for r in chars]
        width += 1
    return out


def write_cnms_files(folder: Path, n_symbols: int, n_sessions: int, seed: int = 11) -> tuple[int, int]:
    """Write ``n_sessions`` CNMS files of ``n_symbols`` rows each; returns (rows, bytes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    syms = np.array(_symbols(n_symbols), dtype=object)
    dates = nyse_sessions("2024-01-01", "2026-12-31")[:n_sessions]
    level = np.exp(rng.normal(11.5, 1.9, n_symbols))           # shares/day per symbol, long tail
    share = np.clip(rng.normal(0.45, 0.08, n_symbols), 0.05, 0.9)
    mkt = MARKETS[rng.integers(0, len(MARKETS), n_symbols)]
    rows = nbytes = 0
    for d in dates:
        total = np.maximum(1, np.rint(level * np.exp(rng.normal(0, 0.45, n_symbols)))).astype(np.int64)
        short = np.minimum(total, np.rint(total * np.clip(share + rng.normal(0, 0.05, n_symbols), 0, 1))).astype(np.int64)
        exempt = short // 97
        ds = d.strftime("%Y%m%d")
        body = "\r\n".join(f"{ds}|{s}|{a}|{e}|{t}|{m}"
                           for s, a, e, t, m in zip(syms, short.tolist(), exempt.tolist(), total.tolist(), mkt))
        text = f"{HEADER}\r\n{body}\r\n{n_symbols}\r\n".encode("ascii")
        (folder / f"CNMSshvol{ds}.txt").write_bytes(text)
        rows += n_symbols
        nbytes += len(text)
    return rows, nbytes


def _db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())



class _PipelineProfile:
    """Wraps the ingest pipeline's stage and write steps (``_stage_batch``, ``_write_batch``) and the writer's
    transactions for one call: thread CPU and wall seconds of each (see the module doc, ``--profile``)."""

    def __init__(self, db: Path | None = None) -> None:
        import optimizer.data.ingest as ing

        # the store's file: a COMMIT that wrote to it, or after which its WAL is smaller, ran DuckDB's automatic
        # checkpoint (a COMMIT that checkpoints may skip the WAL: DuckDB's auto_checkpoint_skip_wal_threshold)
        self.db = db
        self.checkpoints, self.checkpoint_cpu = 0, 0.0
        self.ing = ing
        self.lock = threading.Lock()
        self.spans: dict[str, list[tuple[float, float, float]]] = {"stage": [], "write": []}  # (start, end, cpu)
        self.commit_cpu = self.commit_wall = 0.0
        self.statements: dict[str, list] = {}  # the writer's statements: label -> [count, thread CPU s]
        self.saved = {n: getattr(ing, n) for n in ("_stage_batch", "_write_batch", "transaction")}
        self.kind = ing._KINDS["finra-short"]
        self.probed = {"fast": 0, "line": 0}  # files the fast path took / left to the line path (_source.probe_delimited)
        self.saved_init = ing._Pipeline.__init__

    def _statement_timer(self, con):
        """The writing connection, each ``execute`` timed (thread CPU) under its statement's first words."""
        prof = self

        class Timed:
            def __getattr__(self, name):
                return getattr(con, name)

            def execute(self, sql, *args):
                label = re.sub(r"\d+", "N", " ".join(str(sql).split()[:3]))[:48]
                c0 = time.thread_time()
                try:
                    return con.execute(sql, *args)
                finally:
                    with prof.lock:
                        s = prof.statements.setdefault(label, [0, 0.0])
                        s[0] += 1
                        s[1] += time.thread_time() - c0
        return Timed()

    def _timed(self, name: str, fn):
        def run(*a, **k):
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                with self.lock:
                    self.spans[name].append((w0, time.perf_counter(), time.thread_time() - c0))
        return run

    def _transaction(self, con):
        """The pipeline's own ``transaction`` (store.transaction), its exit (the COMMIT) timed."""
        prof, cm = self, self.saved["transaction"](con)

        @contextlib.contextmanager
        def tx():
            c = cm.__enter__()
            try:
                yield c
            except BaseException:
                if not cm.__exit__(*sys.exc_info()):
                    raise
                return
            files = prof._files()
            w0, c0 = time.perf_counter(), time.thread_time()
            cm.__exit__(None, None, None)
            cpu = time.thread_time() - c0
            after = prof._files()
            with prof.lock:
                prof.commit_cpu += cpu
                prof.commit_wall += time.perf_counter() - w0
                if files is not None and (after[0] != files[0] or after[1] < files[1]):
                    prof.checkpoints += 1
                    prof.checkpoint_cpu += cpu
        return tx()

    def _files(self) -> tuple[tuple[int, int], int] | None:
        """(the store file's (size, mtime ns), its WAL's size) or None without a store file to watch."""
        if self.db is None:
            return None
        st = self.db.stat()
        wal = self.db.parent / (self.db.name + ".wal")
        return (st.st_size, st.st_mtime_ns), (wal.stat().st_size if wal.exists() else 0)

    def _probe(self, raw, limits):
        got = self.kind.probe(raw, limits)
        self.probed["fast" if got is not None else "line"] += 1
        return got

    def __enter__(self) -> "_PipelineProfile":
        import dataclasses

        if self.kind.probe is not None:
            self.ing._KINDS["finra-short"] = dataclasses.replace(self.kind, probe=self._probe)
        self.ing._stage_batch = self._timed("stage", self.saved["_stage_batch"])
        self.ing._write_batch = self._timed("write", self.saved["_write_batch"])
        self.ing.transaction = self._transaction
        prof, init = self, self.saved_init

        def pipeline_init(pipe, *a, **k):
            init(pipe, *a, **k)
            pipe.wctx.con = prof._statement_timer(pipe.wctx.con)
        self.ing._Pipeline.__init__ = pipeline_init
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.t1 = time.perf_counter()
        for n, f in self.saved.items():
            setattr(self.ing, n, f)
        self.ing._KINDS["finra-short"] = self.kind
        self.ing._Pipeline.__init__ = self.saved_init

    def figures(self) -> dict:
        w, st = sorted(self.spans["write"]), sorted(self.spans["stage"])
        waits = sum(b[0] - (w[i - 1][1] if i else self.t0) for i, b in enumerate(w))
        return {
            "writer_cpu_s": round(sum(x[2] for x in w), 3),
            "writer_busy_s": round(sum(x[1] - x[0] for x in w), 3),
            "writer_waited_s": round(waits, 3),
            "first_write_at_s": round(w[0][0] - self.t0, 3) if w else None,
            "commit_cpu_s": round(self.commit_cpu, 3),
            "commit_wall_s": round(self.commit_wall, 3),
            # the COMMITs in which DuckDB checkpointed the store (its WAL reached checkpoint_threshold): n, CPU s
            "commit_checkpoints": self.checkpoints,
            "commit_checkpoint_cpu_s": round(self.checkpoint_cpu, 3),
            "stager_cpu_s": round(sum(x[2] for x in st), 3),
            "stager_busy_s": round(sum(x[1] - x[0] for x in st), 3),
            "batches": len(w),
            "fast_path_files": self.probed["fast"],
            "line_path_files": self.probed["line"],
            # the writer's statements taking >= 10 ms in all, most first: label -> (count, CPU s)
            "writer_statements": {k: (n, round(c, 3)) for k, (n, c) in
                                  sorted(self.statements.items(), key=lambda x: -x[1][1]) if c >= 0.01},
        }


def bench_finra(n_symbols: int, n_sessions: int, overlap: bool = True, profile: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="accumopt-bench-ingest-") as tmp:
        folder, db = Path(tmp) / "finra", Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        rows, nbytes = write_cnms_files(folder, n_symbols, n_sessions)
        gen_s = time.perf_counter() - t0
        con = connect(db)
        nyse_sessions("1990-01-02", "2031-12-31")  # the per-process calendar, built once (not ingest work)
        base = rss_mb()
        reset_peak_rss()
        prof = _PipelineProfile(db) if profile else contextlib.nullcontext()
        t0, c0 = time.perf_counter(), cpu_s()
        with prof:
            rep = ingest_paths(con, "finra-short", [folder], overlap=overlap)
        secs, cpu = time.perf_counter() - t0, cpu_s() - c0
        # what is still only in the WAL is written to the database file by the next checkpoint (at the latest when
        # the store is closed): timed apart, so a run that defers checkpoints is not flattered
        t1, c1 = time.perf_counter(), cpu_s()
        con.execute("CHECKPOINT")
        ck_s, ck_cpu = time.perf_counter() - t1, cpu_s() - c1
        peak = peak_rss_mb()
        stored = int(con.execute("SELECT count(*) FROM finra_short_daily").fetchone()[0])
        # the same files again: every one is skipped as identical (nothing read but the files' checksums)
        t2 = time.perf_counter()
        again = ingest_paths(con, "finra-short", [folder], overlap=overlap)
        again_s = time.perf_counter() - t2
        con.close()
        size = _db_size(db)
    return {
        "symbols": n_symbols,
        "sessions": n_sessions,
        "overlap": overlap,
        "files": len(rep.files),
        "rows": rows,
        "rows_stored": stored,
        "exit_code": rep.exit_code,
        "raw_mb": round(nbytes / 2**20, 1),
        "generate_s": round(gen_s, 2),
        "ingest_s": round(secs, 2),
        "cpu_s": round(cpu, 2),
        "rows_per_s": round(rows / secs),
        "rows_per_cpu_s": round(rows / cpu),
        "checkpoint_s": round(ck_s, 2),
        "checkpoint_cpu_s": round(ck_cpu, 2),
        "rows_per_s_with_checkpoint": round(rows / (secs + ck_s)),
        "rows_per_cpu_s_with_checkpoint": round(rows / (cpu + ck_cpu)),
        "files_per_s": round(len(rep.files) / secs, 1),
        "s_per_file": round(secs / max(1, len(rep.files)), 3),
        "rerun_s": round(again_s, 3),
        "rerun_skipped": again.counts["skipped_identical"],
        "rss_before_mb": base,
        "peak_rss_mb": peak,
        "db_mb": round(size / 2**20, 1),
        "db_bytes_per_row": round(size / max(1, stored), 1),
        **({"profile": prof.figures()} if profile else {}),
    }


_RAW_COLS = ("{'Date': 'VARCHAR', 'Symbol': 'VARCHAR', 'ShortVolume': 'DOUBLE', 'ShortExemptVolume': 'DOUBLE', "
             "'TotalVolume': 'DOUBLE', 'Market': 'VARCHAR'}")
_TABLE = ("CREATE TABLE t (date DATE NOT NULL, symbol VARCHAR NOT NULL, facility VARCHAR NOT NULL, market VARCHAR, "
          "short_volume BIGINT NOT NULL, short_exempt_volume BIGINT, total_volume BIGINT NOT NULL, source_file VARCHAR NOT NULL)")


def _read_csv(files: list[Path]) -> str:
    """DuckDB's own reader on CNMS files (no validation at all; the trailer line is dropped by its NULL symbol).
    The columns are given and ``auto_detect=false``: the sniffer alone costs more than reading a 10,000-row file."""
    lst = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    return (f"SELECT CAST(strptime(Date, '%Y%m%d') AS DATE), Symbol, 'CNMS', Market, CAST(ShortVolume AS BIGINT), "
            f"CAST(ShortExemptVolume AS BIGINT), CAST(TotalVolume AS BIGINT), parse_filename(filename) "
            f"FROM read_csv({lst}, delim='|', header=true, columns={_RAW_COLS}, null_padding=true, filename=true, "
            f"auto_detect=false) "
            f"WHERE Symbol IS NOT NULL")


def _timed_db(fn, setup=None) -> dict:
    """Run setup(con) (untimed) then fn(con) on a fresh file-backed DuckDB, then CHECKPOINT; wall and CPU seconds
    of fn and the checkpoint together."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="accumopt-bench-ref-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "ref.duckdb"))
        con.execute(_TABLE)
        if setup is not None:
            setup(con)
        t0, c0 = time.perf_counter(), cpu_s()
        fn(con)
        con.execute("CHECKPOINT")
        secs, cpu = time.perf_counter() - t0, cpu_s() - c0
        rows = int(con.execute("SELECT count(*) FROM t").fetchone()[0])
        con.close()
    return {"rows": rows, "seconds": round(secs, 2), "cpu_s": round(cpu, 2), "rows_per_s": round(rows / secs),
            "rows_per_cpu_s": round(rows / cpu)}


def bench_reference(n_symbols: int, n_sessions: int, which: str = "all") -> dict:
    """DuckDB alone on the same CNMS files, no validation, each run ending with a CHECKPOINT: the floors the
    ingest is measured against.

    * ``read_csv_one_statement``: every file in one ``INSERT ... SELECT FROM read_csv([...])`` (one transaction);
    * ``read_csv_per_file``: one ``read_csv`` + INSERT + COMMIT per file (one transaction per file);
    * ``write_per_file``: the rows already parsed (a temp table), written one transaction per file (DELETE of the
      file's (date, facility) + INSERT + COMMIT): what one transaction per file costs by itself;
    * ``write_one_transaction``: the same statements for every file inside ONE transaction.

    ``which="per-file"`` runs ``read_csv_per_file`` only (the floor of a one-transaction-per-file ingest)."""
    with tempfile.TemporaryDirectory(prefix="accumopt-bench-ref-") as tmp:
        folder = Path(tmp) / "finra"
        write_cnms_files(folder, n_symbols, n_sessions)
        files = sorted(folder.glob("CNMSshvol*.txt"))

        def one_statement(con) -> None:
            con.execute(f"INSERT INTO t {_read_csv(files)}")

        def per_file(con) -> None:
            for f in files:
                con.execute("BEGIN TRANSACTION")
                con.execute(f"INSERT INTO t {_read_csv([f])}")
                con.execute("COMMIT")

        def parsed(con) -> None:  # the rows, parsed, in file order (not part of the write floors)
            con.execute(f"CREATE TEMP TABLE s AS SELECT *, dense_rank() OVER (ORDER BY source_file) AS k "
                        f"FROM ({_read_csv(files)}) x(date, symbol, facility, market, a, b, c, source_file) ORDER BY k")

        def writes(group: bool):
            def run(con) -> None:
                if group:
                    con.execute("BEGIN TRANSACTION")
                for k in range(1, len(files) + 1):
                    if not group:
                        con.execute("BEGIN TRANSACTION")
                    con.execute(f"DELETE FROM t WHERE facility = 'CNMS' AND date = (SELECT min(date) FROM s WHERE k = {k})")
                    con.execute(f"INSERT INTO t SELECT * EXCLUDE (k) FROM s WHERE k = {k}")
                    if not group:
                        con.execute("COMMIT")
                if group:
                    con.execute("COMMIT")
            return run

        out = {"read_csv_per_file": _timed_db(per_file)}
        if which == "all":
            out["read_csv_one_statement"] = _timed_db(one_statement)
            for name, group in (("write_per_file", False), ("write_one_transaction", True)):
                out[name] = _timed_db(writes(group), parsed)
    return out


def bench_synth() -> dict:
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.data.synth import SynthConfig, generate_market, write_market

    with tempfile.TemporaryDirectory(prefix="accumopt-bench-synth-") as tmp:
        t0 = time.perf_counter()
        market = generate_market(SynthConfig())
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        paths = write_market(market, Path(tmp) / "raw")
        write_s = time.perf_counter() - t0
        db = Path(tmp) / "synth.duckdb"
        con = connect(db)
        reset_peak_rss()
        kinds = {}
        nyse_sessions("1990-01-02", "2031-12-31")
        for kind in ("finra-short", "prices", "lit-flow", "otc-weekly", "options"):
            t0, c0 = time.perf_counter(), cpu_s()
            rep = ingest_paths(con, kind, [paths[kind]])
            kinds[kind] = {"files": len(rep.files), "rows": rep.rows_accepted, "seconds": round(time.perf_counter() - t0, 2),
                           "cpu_s": round(cpu_s() - c0, 2), "exit_code": rep.exit_code}
        t0 = time.perf_counter()
        build_daily_metrics(con)
        metrics_s = time.perf_counter() - t0
        peak = peak_rss_mb()
        con.close()
        size = _db_size(db)
    fin = kinds["finra-short"]
    return {
        "symbols": int(market.prices["symbol"].nunique() - 1),
        "sessions": int(len(market.sessions)),
        "generate_s": round(gen_s, 2),
        "write_files_s": round(write_s, 2),
        "ingest": kinds,
        "ingest_s": round(sum(k["seconds"] for k in kinds.values()), 2),
        "finra_s_per_file": round(fin["seconds"] / max(1, fin["files"]), 4),
        "finra_files_per_s": round(fin["files"] / max(fin["seconds"], 1e-9), 1),
        "daily_metrics_s": round(metrics_s, 2),
        "total_s": round(gen_s + write_s + sum(k["seconds"] for k in kinds.values()) + metrics_s, 2),
        "peak_rss_mb": peak,
        "db_mb": round(size / 2**20, 1),
    }


def run(n_symbols: int = 10_000, n_sessions: int = 60, synth: bool = True, reference: str | None = None,
        overlap: bool = True, profile: bool = False) -> dict:
    out = {"finra": bench_finra(n_symbols, n_sessions, overlap, profile)}
    if reference:
        out["reference"] = bench_reference(n_symbols, n_sessions, reference)
    if synth:
        out["synth"] = bench_synth()
    out["finra_rows_per_s"] = out["finra"]["rows_per_s"]
    out["finra_s_per_file"] = out["finra"]["s_per_file"]
    if synth:
        out["small_files_per_s"] = out["synth"]["finra_files_per_s"]
    out["peak_rss_mb"] = peak_rss_mb()
    out["machine"] = machine()
    return out


def _rows(res: dict) -> list[tuple]:
    f = res["finra"]
    p = f"CNMS {f['symbols']:,} sym x {f['sessions']} files{'' if f.get('overlap', True) else ' (serial)'}"
    rows: list[tuple] = [
        (f"[bold]{p}[/]: raw size, MiB (generated in {f['generate_s']} s)", f["raw_mb"]),
        (f"{p}: ingest seconds", f["ingest_s"], f"exit code {f['exit_code']}, {f['rows_stored']:,} rows stored"),
        (f"{p}: rows / s (rows / CPU s)", f"{f['rows_per_s']:,} ({f['rows_per_cpu_s']:,})", ">= 1,000,000 rows/s",
         f["rows_per_s"] >= 1_000_000),
        (f"{p}: + final CHECKPOINT: rows / s (rows / CPU s)",
         f"{f['rows_per_s_with_checkpoint']:,} ({f['rows_per_cpu_s_with_checkpoint']:,})",
         f"checkpoint {f['checkpoint_s']} s ({f['checkpoint_cpu_s']} CPU s)"),
        (f"{p}: seconds per file", f["s_per_file"], f"x 252 = {f['s_per_file'] * 252:.0f} s for a year"),
        (f"{p}: the same files again, seconds", f["rerun_s"], f"{f['rerun_skipped']} of {f['files']} skipped as identical",
         f["rerun_skipped"] == f["files"]),
        (f"{p}: peak RSS during ingest, MiB", f["peak_rss_mb"], f"RSS before: {f['rss_before_mb']} MiB"),
        (f"{p}: DB size, MiB / bytes per row", f"{f['db_mb']} / {f['db_bytes_per_row']}"),
    ]
    pr = f.get("profile")
    if pr:
        rows += [
            (f"{p}: writing thread: CPU s / busy s / waited for staging s",
             f"{pr['writer_cpu_s']} / {pr['writer_busy_s']} / {pr['writer_waited_s']}",
             f"first write at {pr['first_write_at_s']} s, {pr['batches']} batches"),
            (f"{p}: its COMMITs: CPU s / wall s", f"{pr['commit_cpu_s']} / {pr['commit_wall_s']}",
             "wall - CPU: mostly the WAL's fsync"),
            (f"{p}: COMMITs that ran DuckDB's checkpoint: n / CPU s",
             f"{pr['commit_checkpoints']} / {pr['commit_checkpoint_cpu_s']}", "checkpoint_threshold reached"),
            (f"{p}: staging thread: CPU s / busy s", f"{pr['stager_cpu_s']} / {pr['stager_busy_s']}",
             f"{pr['fast_path_files']} files read by DuckDB's CSV reader, {pr['line_path_files']} line by line"),
            *[(f"{p}: writer: {label} (x{n}), CPU s", cpu) for label, (n, cpu) in pr["writer_statements"].items()],
        ]
    for name, r in (res.get("reference") or {}).items():
        rows.append((f"{p}: DuckDB alone, {name.replace('_', ' ')}: rows / s (rows / CPU s)",
                     f"{r['rows_per_s']:,} ({r['rows_per_cpu_s']:,})", f"{r['rows']:,} rows, incl. CHECKPOINT"))
    s = res.get("synth")
    if s:
        q = f"synth {s['symbols']} sym x {s['sessions']} sessions"
        rows += [
            (f"[bold]{q}[/]: generate / write files, s", f"{s['generate_s']} / {s['write_files_s']}"),
            *[(f"{q}: ingest {k} ({v['files']} files, {v['rows']:,} rows), s", v["seconds"]) for k, v in s["ingest"].items()],
            (f"{q}: finra-short files / s ({s['ingest']['finra-short']['files']} files in {s['ingest']['finra-short']['seconds']} s)",
             s["finra_files_per_s"], ">= 20 files/s", s["finra_files_per_s"] >= 20),
            (f"{q}: build_daily_metrics, s", s["daily_metrics_s"]),
            (f"{q}: total (generate + write + ingest + metrics), s", s["total_s"]),
            (f"{q}: peak RSS, MiB / DB size, MiB", f"{s['peak_rss_mb']} / {s['db_mb']}"),
        ]
    rows.append(("machine: CPUs / 1-min load average", f"{res['machine']['cpus']} / {res['machine']['loadavg_1m']}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=60, help="CNMS files (sessions) for part (a)")
    ap.add_argument("--symbols", type=int, default=10_000, help="symbols per CNMS file for part (a)")
    ap.add_argument("--full", action="store_true", help="a full year: 252 sessions")
    ap.add_argument("--skip-synth", action="store_true", help="skip part (b)")
    ap.add_argument("--reference", nargs="?", const="all", choices=("all", "per-file"),
                    help="also DuckDB alone on the same files (read_csv; one transaction per file vs one in all); "
                         "'per-file': only read_csv one file per transaction")
    ap.add_argument("--serial", action="store_true", help="ingest with overlap=False (write each batch before staging the next)")
    ap.add_argument("--profile", action="store_true",
                    help="also the per-thread split of (a): writing / staging thread CPU and busy time, COMMIT wall")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.symbols, 252 if a.full else a.sessions, not a.skip_synth, a.reference, not a.serial, a.profile)
    emit(res, a.json, "Ingest benchmark (fresh DuckDB store)", _rows(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
