"""Benchmark: one full-universe FINRA short-sale scan (optimizer.analytics.scanner.scan).

Builds a temporary DuckDB store with a synthetic CNMS ``finra_short_daily`` table (default 10,000 symbols x
100 NYSE sessions, generated with numpy and inserted in one bulk INSERT from a DataFrame), then times one scan
of the last session. Prints a rich table, or with ``--json`` one JSON object:
{"symbols", "sessions", "rows", "scan_seconds", "rows_per_second", "build_seconds"}.

    .venv/bin/python bench/scan.py [--symbols 10000] [--sessions 100] [--lookback 90] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402

from optimizer.analytics.scanner import scan  # noqa: E402
from optimizer.data.calendar import nyse_sessions  # noqa: E402
from optimizer.data.store import connect, insert_finra_short  # noqa: E402

__all__ = ["synthetic_finra", "run"]


def synthetic_finra(n_symbols: int, n_sessions: int, seed: int = 7) -> pd.DataFrame:
    """finra_short_daily rows (facility CNMS): lognormal total volume per symbol, short share ~ Beta-like noise."""
    rng = np.random.default_rng(seed)
    dates = nyse_sessions("2023-01-01", "2026-12-31")[:n_sessions]
    symbols = np.array([f"S{i:05d}" for i in range(n_symbols)])
    base_vol = np.exp(rng.normal(12.0, 1.8, n_symbols))  # median ~160k shares/day, long tail
    base_share = np.clip(rng.normal(0.45, 0.08, n_symbols), 0.05, 0.9)
    total = np.maximum(1, np.rint(base_vol[None, :] * np.exp(rng.normal(0, 0.4, (n_sessions, n_symbols))))).astype(np.int64)
    share = np.clip(base_share[None, :] + rng.normal(0, 0.06, (n_sessions, n_symbols)), 0.0, 0.98)
    short = np.minimum(np.rint(total * share).astype(np.int64), total)
    return pd.DataFrame({
        "date": np.repeat(dates.to_numpy(dtype="datetime64[D]"), n_symbols),
        "symbol": np.tile(symbols, n_sessions),
        "facility": "CNMS",
        "market": "B,Q,N",
        "short_volume": short.ravel(),
        "short_exempt_volume": (short.ravel() // 100),
        "total_volume": total.ravel(),
        "source_file": "synthetic",
    })


def run(n_symbols: int, n_sessions: int, lookback: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(Path(tmp) / "bench.duckdb")
        t0 = time.perf_counter()
        frame = synthetic_finra(n_symbols, n_sessions)
        con.register("_bench_frame", frame)
        insert_finra_short(con, "SELECT * FROM _bench_frame")
        con.unregister("_bench_frame")
        build = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = scan(con, lookback=lookback)
        secs = time.perf_counter() - t1
        con.close()
    rows = n_symbols * min(n_sessions, lookback)
    return {
        "symbols": n_symbols,
        "sessions": n_sessions,
        "rows": int(len(frame)),
        "scanned_symbols": int(len(result.metrics)),
        "scan_seconds": round(secs, 4),
        "rows_per_second": round(rows / secs, 1),
        "build_seconds": round(build, 3),
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--lookback", type=int, default=90)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.symbols, a.sessions, a.lookback)
    if a.json:
        print(json.dumps(res))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="FINRA short-sale scanner benchmark (rows_per_second counts rows in the lookback window)")
    for k in res:
        t.add_column(k, justify="right")
    t.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in res.values()])
    Console().print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
