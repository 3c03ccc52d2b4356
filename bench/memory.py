"""Benchmark: the memory and time budgets of issue 12.7, each phase in its own process (its own peak RSS).

(a) ``sandbox``: one ticker's sandbox chart (load the symbol and span, compute, write the HTML) on a store built
    from every real file in ``../shared/data/real`` (skipped when absent). Budget <= 2 s and <= 400 MB peak RSS.
(b) ``prices_csv``: ingest one ~200 MB daily-prices CSV (generated: N symbols x NYSE sessions). Budget <= 1 GB
    peak RSS.
(c) ``metrics``: ``build_daily_metrics`` for 11,000 symbols x 1,260 sessions of prices + FINRA CNMS rows
    (generated straight into the raw tables). Budget <= 1.5 GB peak RSS and <= 30 s.
(d) ``panel``: ``load_panel`` of every symbol of that store (daily_metrics built in another process first), the
    load every study, backtest, walk-forward and sheet makes. Budget: peak RSS above the process's start <= 2 x
    the panel's matrices (the matrices, a chunk of rows and DuckDB's reading; 3,000 x 753, load 5: 1.85 x, 8 s;
    before the rows were streamed, a DataFrame of every row and its copy made it 4.4 x).

Peak RSS is the whole process's (Python, numpy, DuckDB), measured from the start of the phase; the 1-minute
load average is printed beside every figure (timings on a busy machine are inflated).

    .venv/bin/python bench/memory.py [--only sandbox,prices_csv,metrics] [--csv-mb 200] [--symbols 11000]
                                     [--sessions 1260] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, cpu_s, emit, machine, peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402


__all__ = ["PHASES", "phase_sandbox", "phase_prices_csv", "phase_metrics", "main"]

REAL = ROOT.parent / "shared" / "data" / "real"
BUDGETS = {"sandbox_s": 2.0, "sandbox_mb": 400.0, "prices_csv_mb": 1024.0, "metrics_mb": 1536.0, "metrics_s": 30.0,
           "panel_ratio": 2.0}


def _real_store(db: Path) -> dict:
    from optimizer.data.ingest import ingest_paths
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.data.store import connect

    con = connect(db)
    try:
        t0 = time.perf_counter()
        ingest_paths(con, "finra-short", [REAL / "finra_raw", REAL / "finra_short_daily_2020.csv.gz", REAL / "finra_short_daily_2025.csv.gz"])
        ingest_paths(con, "prices", [REAL / "prices_daily.csv.gz", REAL / "prices_daily_extra.csv.gz"])
        build_daily_metrics(con)
        return {"build_s": round(time.perf_counter() - t0, 2)}
    finally:
        con.close()


def phase_sandbox(ticker: str = "AAPL") -> dict:
    if not REAL.exists():
        return {"skipped": f"real data not available: {REAL}"}
    from optimizer.data.store import connect
    from optimizer.report.sandbox import load_sandbox_panel, sandbox_figure, write_sandbox

    with tempfile.TemporaryDirectory(prefix="accumopt-bench-mem-") as tmp:
        db = Path(tmp) / "real.duckdb"
        built = _real_store(db)
        import plotly  # noqa: F401 - imported before timing, as the CLI has it imported when the command runs

        base = rss_mb()
        reset_peak_rss()
        t0 = time.perf_counter()
        con = connect(db, read_only=True)
        try:
            panel = load_sandbox_panel(con, ticker)
        finally:
            con.close()
        fig = sandbox_figure(panel, ticker)
        write_sandbox(fig, Path(tmp) / f"{ticker}.html")
        secs = time.perf_counter() - t0
        peak = peak_rss_mb()
    return {"ticker": ticker, "store_build_s": built["build_s"], "seconds": round(secs, 3), "peak_rss_mb": peak,
            "rss_before_mb": base, "sessions": int(len(panel.dates)), "symbols_loaded": len(panel.symbols),
            "ok": secs <= BUDGETS["sandbox_s"] and peak <= BUDGETS["sandbox_mb"]}


def _write_prices_csv(path: Path, target_mb: float) -> tuple[int, int]:
    import numpy as np

    from optimizer.data.calendar import session_days

    days = [str(d) for d in session_days("2021-01-04", "2025-12-31")]
    line_bytes = 62
    n_sym = max(1, int(target_mb * 2**20 / line_bytes / len(days)))
    rng = np.random.default_rng(5)
    rows = 0
    with open(path, "w", encoding="ascii") as fh:
        fh.write("date,symbol,open,high,low,close,volume\n")
        for i in range(n_sym):
            sym = f"S{i:05d}"
            c = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
            o = c * (1 + rng.normal(0, 0.005, len(days)))
            h, lo = np.maximum(o, c) * 1.01, np.minimum(o, c) * 0.99
            v = rng.integers(10_000, 5_000_000, len(days))
            fh.write("".join(f"{d},{sym},{a:.4f},{b:.4f},{e:.4f},{f:.4f},{g}\n" for d, a, b, e, f, g in zip(days, o, h, lo, c, v)))
            rows += len(days)
    return rows, n_sym


def phase_prices_csv(target_mb: float = 200.0) -> dict:
    from optimizer.data.ingest import ingest_paths
    from optimizer.data.store import connect

    with tempfile.TemporaryDirectory(prefix="accumopt-bench-mem-") as tmp:
        csv = Path(tmp) / "prices.csv"
        rows, n_sym = _write_prices_csv(csv, target_mb)
        size_mb = csv.stat().st_size / 2**20
        con = connect(Path(tmp) / "p.duckdb")
        base = rss_mb()
        reset_peak_rss()
        t0, c0 = time.perf_counter(), cpu_s()
        rep = ingest_paths(con, "prices", [csv])
        secs, cpu = time.perf_counter() - t0, cpu_s() - c0
        peak = peak_rss_mb()
        stored = int(con.execute("SELECT count(*) FROM prices_daily").fetchone()[0])
        con.close()
    return {"csv_mb": round(size_mb, 1), "rows": rows, "symbols": n_sym, "rows_stored": stored, "exit_code": rep.exit_code,
            "seconds": round(secs, 2), "cpu_s": round(cpu, 2), "rows_per_s": round(rows / secs), "peak_rss_mb": peak, "rss_before_mb": base,
            "ok": peak <= BUDGETS["prices_csv_mb"] and stored == rows}


def _metrics_data(db: Path, n_symbols: int, n_sessions: int) -> None:
    """Raw prices + FINRA CNMS rows generated straight into the tables (run in a separate process, so its caches
    do not count in the build's peak)."""
    import pandas as pd

    from optimizer.data.calendar import session_days
    from optimizer.data.store import connect

    days = session_days("2020-01-02", "2030-12-31")[:n_sessions]
    from optimizer.data.store import insert_finra_short

    con = connect(db)
    con.register("_days", pd.DataFrame({"date": days.astype("datetime64[s]")}))
    con.execute(f"""
        INSERT INTO prices_daily
        SELECT d.date, 'S' || lpad(CAST(s.i AS VARCHAR), 5, '0'), 10 + (hash(s.i, d.date) % 1000) / 100.0,
               11 + (hash(s.i, d.date) % 1000) / 100.0, 9 + (hash(s.i, d.date) % 1000) / 100.0,
               10 + (hash(s.i, d.date) % 1000) / 100.0, 1000 + hash(d.date, s.i) % 1000000, 'bench'
        FROM range({n_symbols}) s(i) CROSS JOIN _days d""")
    insert_finra_short(con, f"""
        SELECT d.date, 'S' || lpad(CAST(s.i AS VARCHAR), 5, '0'), 'CNMS', 'B,Q,N',
               (hash(s.i, d.date) % 400000) + 1, 0, 500000 + hash(d.date, s.i) % 500000, 'bench'
        FROM range({n_symbols}) s(i) CROSS JOIN _days d""")
    con.close()


def phase_metrics(n_symbols: int = 11_000, n_sessions: int = 1_260) -> dict:
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.data.store import connect

    with tempfile.TemporaryDirectory(prefix="accumopt-bench-mem-") as tmp:
        db = Path(tmp) / "m.duckdb"
        subprocess.run([sys.executable, __file__, "--phase", "metrics_data", "--db", str(db), "--symbols", str(n_symbols),
                        "--sessions", str(n_sessions)], check=True)
        con = connect(db)
        base = rss_mb()
        reset_peak_rss()
        t0, c0 = time.perf_counter(), cpu_s()
        summary = build_daily_metrics(con)
        secs, cpu = time.perf_counter() - t0, cpu_s() - c0
        peak = peak_rss_mb()
        con.close()
    return {"symbols": n_symbols, "sessions": n_sessions, "rows": summary["rows"], "seconds": round(secs, 2), "cpu_s": round(cpu, 2),
            "peak_rss_mb": peak, "rss_before_mb": base,
            "ok": peak <= BUDGETS["metrics_mb"] and secs <= BUDGETS["metrics_s"]}


def phase_panel(n_symbols: int = 11_000, n_sessions: int = 1_260) -> dict:
    from optimizer.data.store import connect
    from optimizer.engine.panel import load_panel

    with tempfile.TemporaryDirectory(prefix="accumopt-bench-mem-") as tmp:
        db = Path(tmp) / "m.duckdb"
        subprocess.run([sys.executable, __file__, "--phase", "metrics_data", "--build", "--db", str(db), "--symbols",
                        str(n_symbols), "--sessions", str(n_sessions)], check=True)
        con = connect(db, read_only=True)
        base = rss_mb()
        reset_peak_rss()
        t0, c0 = time.perf_counter(), cpu_s()
        panel = load_panel(con, None, None, None)
        secs, cpu = time.perf_counter() - t0, cpu_s() - c0
        peak = peak_rss_mb()
        con.close()
    matrices = sum(v.nbytes for v in panel.fields.values()) / 2**20
    ratio = (peak - base) / matrices
    return {"symbols": n_symbols, "sessions": n_sessions, "shape": list(panel.shape), "matrices_mb": round(matrices, 1),
            "seconds": round(secs, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": peak, "rss_before_mb": base,
            "peak_over_matrices": round(ratio, 2), "ok": ratio <= BUDGETS["panel_ratio"]}


PHASES = {"sandbox": phase_sandbox, "prices_csv": phase_prices_csv, "metrics": phase_metrics, "panel": phase_panel}


def _run_phase(name: str, a) -> dict:
    args = {"sandbox": [], "prices_csv": ["--csv-mb", str(a.csv_mb)],
            "metrics": ["--symbols", str(a.symbols), "--sessions", str(a.sessions)],
            "panel": ["--symbols", str(a.symbols), "--sessions", str(a.sessions)]}[name]
    cmd = [sys.executable, __file__, "--phase", name, *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["(no output)"])[-1]}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["machine"] = machine()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(PHASES))
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--csv-mb", type=float, default=200.0)
    ap.add_argument("--symbols", type=int, default=11_000)
    ap.add_argument("--sessions", type=int, default=1_260)
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--db", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.phase == "metrics_data":
        _metrics_data(Path(a.db), a.symbols, a.sessions)
        if a.build:
            from optimizer.data.metrics import build_daily_metrics
            from optimizer.data.store import connect

            con = connect(Path(a.db))
            build_daily_metrics(con)
            con.close()
        return 0
    if a.phase:  # child process: one phase, one JSON line
        fn = PHASES[a.phase]
        res = fn() if a.phase == "sandbox" else fn(a.csv_mb) if a.phase == "prices_csv" else fn(a.symbols, a.sessions)
        print(json.dumps(res, default=str))
        return 0
    names = [n.strip() for n in a.only.split(",") if n.strip()] or list(PHASES)
    res = {n: _run_phase(n, a) for n in names}
    res["machine"] = machine()
    rows = []
    for n, r in res.items():
        if n == "machine":
            continue
        load = (r.get("machine") or {}).get("loadavg_1m")
        if "error" in r or "skipped" in r:
            rows.append((f"{n}: {'FAILED' if 'error' in r else 'skipped'}", r.get("error") or r.get("skipped")))
            continue
        if n == "sandbox":
            rows.append((f"sandbox {r['ticker']} on the real store: seconds / peak RSS MiB (load {load})",
                         f"{r['seconds']} / {r['peak_rss_mb']}", f"<= {BUDGETS['sandbox_s']} s, <= {BUDGETS['sandbox_mb']:.0f} MiB", r["ok"]))
        elif n == "prices_csv":
            rows.append((f"ingest a {r['csv_mb']} MiB prices CSV ({r['rows']:,} rows): peak RSS MiB / s (load {load})",
                         f"{r['peak_rss_mb']} / {r['seconds']}", f"<= {BUDGETS['prices_csv_mb']:.0f} MiB", r["ok"]))
        elif n == "metrics":
            rows.append((f"metrics build {r['symbols']:,} x {r['sessions']:,}: peak RSS MiB / s / CPU s (load {load})",
                         f"{r['peak_rss_mb']} / {r['seconds']} / {r['cpu_s']}", f"<= {BUDGETS['metrics_mb']:.0f} MiB, <= {BUDGETS['metrics_s']:.0f} s", r["ok"]))
        elif n == "panel":
            rows.append((f"load_panel {r['symbols']:,} x {r['sessions']:,} ({r['matrices_mb']} MiB of matrices): peak RSS "
                         f"MiB / x matrices / s (load {load})", f"{r['peak_rss_mb']} / {r['peak_over_matrices']} / {r['seconds']}",
                         f"<= {BUDGETS['panel_ratio']} x", r["ok"]))
    rows.append(("machine: CPUs / 1-min load average", f"{res['machine']['cpus']} / {res['machine']['loadavg_1m']}"))
    emit(res, a.json, "Memory and time budgets (issue 12.7), one process per phase", rows)
    return 0  # budgets are reported (OK / MISSED), like the other bench scripts


if __name__ == "__main__":
    raise SystemExit(main())
