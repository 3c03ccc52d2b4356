"""Benchmark: walk-forward wall time with 1 vs 2 local worker processes (``run_walkforward(..., jobs=N)``).

Data: the embedded synthetic market as the demo builds it (``synth_to_db``, default 33 symbols, 2023-01-03 ..
2024-12-31, built once into a temporary store), the demo study (studies/demo.toml: 7 windows of train 6 / test 2
months) with ``--trials`` trials per window. Each run gets a fresh SQLite storage (the default storage kind), so
every window's study runs from scratch, after one untimed warm-up run (2 trials per window) that loads the
kernels and libraries the first run would otherwise pay for alone; the 2-worker run must give the identical result (checked: the result
dict without the trials' wall times, and the verdict line). The speed-up is bounded by the 2 cores and by the
coordinator's own per-window statistics (DSR, PBO, SPA), which it computes for the windows it ran as it goes and
for the other windows at the end.

    .venv/bin/python bench/walkforward.py [--trials 20] [--jobs 1,2] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emit, machine  # noqa: E402

import optuna  # noqa: E402

from optimizer.data.synth import SynthConfig, synth_to_db  # noqa: E402
from optimizer.study.spec import load_spec  # noqa: E402
from optimizer.validate.walkforward import run_walkforward  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from _cli_helpers import timeless_json  # noqa: E402  (the tests' "same result" check, one home)

__all__ = ["run"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run(trials: int = 20, jobs: tuple[int, ...] = (1, 2)) -> dict:
    spec = load_spec(ROOT / "studies" / "demo.toml")
    out: dict = {"trials_per_window": trials, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="accumopt-bench-wf-") as tmp:
        t0 = time.perf_counter()
        db = Path(tmp) / "m.duckdb"
        synth_to_db(SynthConfig(seed=7, effect=3.0), Path(tmp) / "raw", db)
        out["data_s"] = round(time.perf_counter() - t0, 1)
        # untimed warm-up: the process's first walk-forward loads every kernel from numba's cache and imports the
        # statistics' libraries (~15-25 s on a slow machine), which the first timed run would otherwise pay alone
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_walkforward(spec, db, f"sqlite:///{Path(tmp) / 'warmup.db'}", n_trials=2, jobs=1)
        out["warmup_s"] = round(time.perf_counter() - t0, 1)
        dumps = {}
        for n in jobs:
            load0 = machine()["loadavg_1m"]
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = run_walkforward(spec, db, f"sqlite:///{Path(tmp) / f'jobs{n}.db'}", n_trials=trials, jobs=n)
            secs = time.perf_counter() - t0
            dumps[n] = timeless_json(res.to_dict())
            out["runs"][f"jobs_{n}"] = {"jobs": n, "seconds": round(secs, 2), "windows": len(res.windows),
                                       "verdict": res.verdict.line, "load_before": load0}
        base = out["runs"][f"jobs_{jobs[0]}"]["seconds"]
        for n in jobs:
            r = out["runs"][f"jobs_{n}"]
            r["speedup"] = round(base / r["seconds"], 2)
            r["identical_to_jobs_1"] = dumps[n] == dumps[jobs[0]]
    out["machine"] = machine()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.trials, tuple(int(x) for x in a.jobs.split(",")))
    rows = [("demo walk-forward: trials per window / synthetic store build s / warm-up s",
             f"{res['trials_per_window']} / {res['data_s']} / {res['warmup_s']}")]
    for k, r in res["runs"].items():
        rows.append((f"walk-forward {r['windows']} windows, --jobs {r['jobs']}: wall s (speed-up)",
                     f"{r['seconds']} ({r['speedup']}x)", "identical result" if r["identical_to_jobs_1"] else "DIFFERS",
                     r["identical_to_jobs_1"]))
    rows.append(("machine: CPUs / 1-min load average", f"{res['machine']['cpus']} / {res['machine']['loadavg_1m']}"))
    emit(res, a.json, "Walk-forward wall time, local workers", rows)
    return 0 if all(r["identical_to_jobs_1"] for r in res["runs"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
