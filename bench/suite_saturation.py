"""Benchmark: does ``make test`` keep the cores busy? Runs the test suite under pytest-xdist and samples, every
0.1 s, the threads in state R (running or waiting for a core) in each xdist worker's process tree (the worker and
every process it started: the demo, study workers, notebook kernels; not a server that detached, such as
PostgreSQL's). A worker whose tree has nothing runnable is waiting (on a subprocess's pipe, a lock, a socket,
fsync): a core it leaves idle on an idle machine. A thread waiting for a core is runnable, so other processes' load
does not count as the suite's waiting; but on a loaded host the computing stretches and the waits do not, so the
share of samples spent waiting is lower than on an idle one. ``core_idle_s``, the core-seconds left idle (the sum
over samples of (cores - min(runnable, cores)) x the interval), is the figure to compare across hosts and loads:
on an idle machine the run takes about (CPU seconds of the run + core_idle_s) / cores.

Prints, with the load average: the share of samples with 0, 1, 2, 3, 4+ runnable threads in the workers' trees,
the mean, ``saturation`` (the mean of min(runnable, cores) / cores), ``core_idle_s``, the per-minute saturation and
the CPU seconds of the run (user + system, the processes it waited for). ``--json`` prints one JSON object.

    .venv/bin/python bench/suite_saturation.py [--workers 2] [--cores 2] [--json] [-- PYTEST ARGS...]

Whole suite by default (``-n WORKERS --dist loadfile --no-loadscope-reorder``, as ``make test``): minutes.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emit, machine  # noqa: E402

__all__ = ["runnable_by_worker", "summarise", "run"]


def _stat(pid: str) -> tuple[int, str] | None:
    """(parent pid, state letter) of process ``pid``, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[1]), rest[0]


def _runnable_threads(pid: int) -> int:
    n = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for t in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{t}/stat").read_text()
        except OSError:
            continue
        n += text[text.rindex(")") + 2] == "R"
    return n


def runnable_by_worker(root: int) -> dict[int, int]:
    """{xdist worker pid: runnable threads in its process tree} for the xdist workers under process ``root``."""
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for p in os.listdir("/proc"):
        if p.isdigit() and (st := _stat(p)) is not None:
            kids[st[0]].append(int(p))

    def tree(pid: int) -> list[int]:
        out, stack = [], [pid]
        while stack:
            p = stack.pop()
            out.append(p)
            stack.extend(kids.get(p, ()))
        return out

    workers = {}
    for p in tree(root):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if b"exec(eval(sys.stdin.readline()))" in cmd:  # how execnet starts an xdist worker
            workers[p] = sum(_runnable_threads(q) for q in tree(p))
    return workers


def summarise(samples: list[tuple[float, int]], cores: int) -> dict:
    """``samples``: (seconds since the start, runnable threads in all workers' trees), while workers existed."""
    if not samples:
        return {"samples": 0}
    n = len(samples)
    counts = collections.Counter(min(r, 4) for _, r in samples)
    by_minute: dict[int, list[int]] = collections.defaultdict(list)
    for t, r in samples:
        by_minute[int(t // 60)].append(r)
    return {
        "samples": n,
        "span_s": round(samples[-1][0] - samples[0][0], 1),
        "share": {("4+" if k == 4 else str(k)): round(v / n, 3) for k, v in sorted(counts.items())},
        "mean_runnable": round(sum(r for _, r in samples) / n, 2),
        "saturation": round(sum(min(r, cores) for _, r in samples) / n / cores, 3),
        "core_idle_s": round(sum((cores - min(r, cores)) * (t1 - t) for (t, r), (t1, _) in zip(samples, samples[1:])), 1),
        "by_minute": [round(sum(min(r, cores) for r in v) / len(v) / cores, 2) for _, v in sorted(by_minute.items())],
    }


def run(workers: int, cores: int, pytest_args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", str(workers), "--dist", "loadfile", "--no-loadscope-reorder",
           *pytest_args]
    load0 = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        w = runnable_by_worker(proc.pid)
        if w:
            samples.append((time.monotonic() - t0, sum(w.values())))
        time.sleep(0.1)
    out = summarise(samples, cores)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.update(workers=workers, cores=cores, wall_s=round(time.monotonic() - t0, 1), returncode=proc.returncode,
               cpu_s=round(ru.ru_utime + ru.ru_stime, 1),
               load_before=[round(x, 2) for x in load0], load_after=[round(x, 2) for x in os.getloadavg()],
               machine=machine())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("pytest_args", nargs="*")
    a = ap.parse_args(argv)
    res = run(a.workers, a.cores, a.pytest_args)
    rows = [("runnable threads (share of samples)", " ".join(f"{k}: {v:.0%}" for k, v in res.get("share", {}).items()), ""),
            ("mean runnable", res.get("mean_runnable"), ""),
            ("saturation", res.get("saturation"), f"share of {a.cores} cores kept busy"),
            ("core-seconds idle", res.get("core_idle_s"), "compare across loads"),
            ("CPU seconds (user + sys)", res["cpu_s"], ""),
            ("per minute", " ".join(f"{x:.2f}" for x in res.get("by_minute", [])), ""),
            ("wall (s)", res["wall_s"], f"load {res['load_before'][0]} -> {res['load_after'][0]}")]
    emit(res, a.json, f"make test saturation (-n {a.workers})", rows)
    return 0 if res["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
