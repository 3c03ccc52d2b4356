"""Benchmark: wall time of the demo (``accumopt demo``: synth -> ingest -> metrics -> phase A -> phase B ->
walk-forward -> report) in a fresh output root, with the demo's own per-step timings.

    .venv/bin/python bench/demo.py [--json]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine  # noqa: E402

import optuna  # noqa: E402
from rich.console import Console  # noqa: E402

from optimizer.demo import run_demo  # noqa: E402

__all__ = ["run"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run() -> dict:
    load0 = machine()["loadavg_1m"]
    with tempfile.TemporaryDirectory(prefix="accumopt-bench-demo-") as tmp:
        t0 = time.perf_counter()
        res = run_demo(Path(tmp), console=Console(file=io.StringIO()))
        secs = time.perf_counter() - t0
    return {"seconds": round(secs, 1), "timings": res.get("timings", {}), "load_before": load0, "machine": machine()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run()
    rows = [("demo wall time, s", res["seconds"])]
    rows += [(f"demo step {k}, s", v) for k, v in res["timings"].items()]
    rows.append(("machine: CPUs / 1-min load average (before / after)",
                 f"{res['machine']['cpus']} / {res['load_before']} / {res['machine']['loadavg_1m']}"))
    emit(res, a.json, "Demo wall time (fresh output root)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
