"""Cost of the split detection (``optimizer.data.splitcheck.suspect_splits``) on a market-sized daily_metrics:
11,000 symbols x 1,260 sessions (~13.9 M rows, ``data info`` and every panel load of that size), built in an
in-memory DuckDB: FINRA's share of the volume ~0.35 with a log sd of 0.17 (the real noise), a 4-for-1 split not
recorded planted in every 100th symbol (FINRA volumes raw before it), so the run also counts what it finds.

    .venv/bin/python bench/splitcheck.py [--symbols 11000] [--sessions 1260] [--repeat 2] [--json]

Prints the wall and CPU seconds of each run, the suspects found and the load average.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import emit, machine  # noqa: F401  (puts the repository on sys.path)

import duckdb

from optimizer.data.splitcheck import suspect_splits


def build(con: duckdb.DuckDBPyConnection, n_sym: int, n_ses: int) -> None:
    con.execute("SELECT setseed(0.42)")
    con.execute(f"""
        CREATE TABLE daily_metrics AS
        WITH s AS (SELECT range AS k, 'S' || lpad(CAST(range AS VARCHAR), 5, '0') AS symbol FROM range({n_sym})),
             d AS (SELECT range AS t, DATE '2020-01-02' + CAST(range * 7 / 5 AS INTEGER) AS date FROM range({n_ses})),
             x AS (SELECT s.symbol, s.k, d.t, d.date, 50.0 * exp(0.01 * d.t / 10) AS close,
                          1e6 * exp(0.3 * (random() - 0.5)) AS volume,
                          0.35 * exp(0.17 * sqrt(-2 * ln(random())) * cos(6.2831853 * random())) AS share
                   FROM s CROSS JOIN d)
        SELECT symbol, date, close AS open, close, CAST(volume AS BIGINT) AS volume,
               CAST(volume * share / CASE WHEN k % 100 = 0 AND t < {n_ses // 2} THEN 4 ELSE 1 END AS BIGINT)
                   AS total_volume
        FROM x""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=11_000)
    ap.add_argument("--sessions", type=int, default=1_260)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    con = duckdb.connect()
    t = time.perf_counter()
    build(con, a.symbols, a.sessions)
    rows = con.execute("SELECT count(*) FROM daily_metrics").fetchone()[0]
    build_s = time.perf_counter() - t
    runs = []
    found = []
    for _ in range(a.repeat):
        w, c = time.perf_counter(), time.process_time()
        found = suspect_splits(con)
        runs.append((round(time.perf_counter() - w, 2), round(time.process_time() - c, 2)))
    planted = len(range(0, a.symbols, 100))
    res = {"rows": rows, "build_s": round(build_s, 1), "runs_wall_cpu_s": runs, "suspects": len(found),
           "planted": planted, "found_planted": sum(1 for f in found if int(f.symbol[1:]) % 100 == 0),
           "loadavg": [round(x, 2) for x in os.getloadavg()]}
    emit(res, a.json, "splitcheck.suspect_splits", [(k, str(v), "") for k, v in res.items()])


if __name__ == "__main__":
    main()
