"""Benchmark: ``accumopt study run SPEC --jobs J`` against ``--jobs 1``, wall and CPU (the command and its worker
processes: the children's rusage of each run).

Two cases, each run alternately --jobs 1 / --jobs J (``--rounds`` times), every run in a fresh copy of its storage:

* ``cheap``: the demo's phase B as the README runs it: the demo store and storage (synthetic market, phase A, phase
  B's first 60 trials, as ``accumopt demo`` leaves them, made once under ``--work``), then
  ``study run studies/phase_b_fine.toml`` runs the 90 trials left to its 150 (trials of ~50 ms);
* ``expensive``: a study of ``tests/_slow_objective`` (each fold sleeps ``--sleep`` s, ``--trials`` trials, 3
  folds) on the same store: an objective whose time is not the tool's.

    .venv/bin/python bench/study_jobs.py [--jobs 2] [--rounds 2] [--work /tmp/accumopt-bench-jobs] [--json]
                                         [--src DIR]

``--src DIR``: run the commands of another checkout of the repository (e.g. ``git archive COMMIT | tar -x -C DIR``,
the code before a change), with this venv; the demo store and storage are made by this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _common import machine  # noqa: E402

SLOW_SPEC = """
[study]
name = "slow"
[data]
universe = "tier1+3"
[space]
variant = {{ type = "categorical", choices = ["A", "B", "C", "D"] }}
z_window = {{ type = "categorical", choices = [10, 15, 20, 30] }}
buy_threshold = {{ type = "int", low = 60, high = 80, step = 5 }}
sell_threshold = {{ type = "int", low = 20, high = 40, step = 5 }}
exit = "fixed_10d"
[cv]
n_splits = 3
[objective]
name = "_slow_objective:SlowRankExcess"
[sampler]
name = "tpe"
seed = 3
[pruner]
name = "none"
[run]
n_trials = {n}
"""


def prepare(work: Path) -> tuple[Path, Path]:
    """The demo's store and its storage after phase A and phase B's first 60 trials (made once)."""
    tpl = work / "template"
    db, st = tpl / "darkpool.duckdb", tpl / "studies.db"
    if not st.exists():
        tpl.mkdir(parents=True, exist_ok=True)
        code = ("import sys; from pathlib import Path; from optimizer.data.synth import SynthConfig, synth_new_store;"
                "from optimizer.study.run import run_study; from optimizer.demo import _spec;"
                f"r = Path({str(tpl)!r}); db = r / 'darkpool.duckdb'; s = f'sqlite:///{{r / \"build.db\"}}';"
                "synth_new_store(SynthConfig(seed=7, effect=3.0), r / 'raw', db);"
                "run_study(_spec('phase_a_coarse'), db, s); run_study(_spec('phase_b_fine'), db, s, n_trials=60)")
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)
        (tpl / "build.db").rename(st)
    return db, st


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_once(args: list[str], env: dict[str, str], src: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "optimizer.cli", *args, "--format", "json"], cwd=src, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    res = json.loads(out.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "finished": res["complete"] + res["pruned"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--trials", type=int, default=16, help="trials of the expensive case")
    ap.add_argument("--sleep", type=float, default=0.1, help="seconds each fold of the expensive case sleeps")
    ap.add_argument("--cases", default="cheap,expensive")
    ap.add_argument("--work", type=Path, default=Path("/tmp/accumopt-bench-jobs"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--src", type=Path, default=ROOT, help="the checkout whose commands run (default this one)")
    a = ap.parse_args()
    src = a.src.resolve()
    db, template = prepare(a.work)
    env = {k: v for k, v in os.environ.items() if k not in ("ACCUMOPT_STORAGE", "ACCUMOPT_DB")}
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(src / "tests"), env.get("PYTHONPATH", "")])
    slow = a.work / "slow.toml"
    slow.write_text(SLOW_SPEC.format(n=a.trials), encoding="utf-8")
    rows = []
    for r in range(a.rounds):
        for case in a.cases.split(","):
            for jobs in ((1, a.jobs) if r % 2 == 0 else (a.jobs, 1)):  # alternated: neither always runs first
                st = a.work / f"run-{case}-{jobs}.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{st}{suffix}").unlink(missing_ok=True)
                if case == "cheap":
                    shutil.copy(template, st)
                    args = ["study", "run", str(src / "studies" / "phase_b_fine.toml")]
                    e = env
                else:
                    args = ["study", "run", str(slow)]
                    e = {**env, "ACCUMOPT_TEST_FOLD_SLEEP": str(a.sleep)}
                m = run_once([*args, "--db", str(db), "--storage", f"sqlite:///{st}", "--jobs", str(jobs)], e, src)
                rows.append({"case": case, "jobs": jobs, "round": r, **m, "load": os.getloadavg()[0]})
                if not a.json:
                    print(f"{case:9s} --jobs {jobs}: wall {m['wall_s']:6.2f} s  cpu {m['cpu_s']:6.2f} s  "
                          f"finished {m['finished']}  (load {os.getloadavg()[0]:.2f})", flush=True)
    if a.json:
        print(json.dumps({"machine": machine(), "uptime": uptime(), "runs": rows}, indent=1))
    else:
        print(uptime())


if __name__ == "__main__":
    main()
