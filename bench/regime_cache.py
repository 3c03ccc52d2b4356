"""Benchmark: what the learned regime's disk cache (``<out>/.cache/regime/``) saves a command's next process.

Builds the demo's synthetic store (``accumopt data synth``, 2023-2024, tier1+3) in a temporary output root, then
runs ``accumopt backtest`` (which saves its run: the events' context) and ``accumopt signals --no-save``
(default parameters, ``--format json``) as separate processes: with ``ACCUMOPT_CACHE=off``, then cache on and cold
(the run that writes it), then on and warm (what every later run on the same data costs). CPU seconds (user + sys)
of each process, from ``getrusage(RUSAGE_CHILDREN)``, best of ``--repeat``; checks the printed JSON is identical in
the three modes.
Prints a rich table, or with ``--json`` one JSON object: {"commands": {name: {"off", "cold", "warm", "saved",
"identical"}}, "cache_files", "cache_kb", "machine"}.

    .venv/bin/python bench/regime_cache.py [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine  # noqa: E402

__all__ = ["COMMANDS", "run"]

COMMANDS = {
    "backtest": ["backtest", "--format", "json"],  # saving its run computes the signal events' context
    "signals": ["signals", "--params", "{params}", "--no-save", "--format", "json"],
}


def _child(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """CPU seconds (user + sys) of one ``accumopt`` process, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run([sys.executable, "-m", "optimizer.cli", *args], env=env, capture_output=True, text=True,
                         check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"accumopt {' '.join(args)} failed: {res.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(cpu, 2), res.stdout


def run(repeat: int = 2) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCUMOPT_")}
    with tempfile.TemporaryDirectory(prefix="accumopt-bench-regime-") as d:
        out = Path(d) / "out"
        db = out / "darkpool.duckdb"
        _child(["data", "synth", "--effect", "3", "--out", str(out), "--db", str(db)], env)
        params = Path(d) / "params.json"
        params.write_text("{}")
        cache = out / ".cache"
        result: dict = {"commands": {}}
        for name, argv in COMMANDS.items():
            args = [a.replace("{params}", str(params)) for a in argv] + ["--db", str(db), "--out", str(out)]
            off, cold, warm, outs = [], [], [], set()
            for _ in range(repeat):
                cpu, o = _child(args, env | {"ACCUMOPT_CACHE": "off"})
                off.append(cpu)
                outs.add(o)
                shutil.rmtree(cache, ignore_errors=True)
                cpu, o = _child(args, env | {"ACCUMOPT_CACHE": "on"})
                cold.append(cpu)
                outs.add(o)
                cpu, o = _child(args, env | {"ACCUMOPT_CACHE": "on"})
                warm.append(cpu)
                outs.add(o)
            result["commands"][name] = {"off": min(off), "cold": min(cold), "warm": min(warm),
                                        "saved": round(min(off) - min(warm), 2), "identical": len(outs) == 1}
        files = [p for p in cache.rglob("*.npz")]
        result["cache_files"] = len(files)
        result["cache_kb"] = round(sum(p.stat().st_size for p in files) / 1024, 1)
    result["machine"] = machine()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="runs of each mode (best CPU kept)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    a = ap.parse_args()
    r = run(a.repeat)
    rows = []
    for name, c in r["commands"].items():
        rows.append((f"{name}: CPU s off / cold / warm", f"{c['off']} / {c['cold']} / {c['warm']}",
                     f"saved {c['saved']} s a run; identical output: {c['identical']}"))
    rows.append(("cache after both commands", f"{r['cache_files']} files, {r['cache_kb']} KB", ""))
    emit(r, a.json, "learned regime disk cache (a command's next process)", rows,
         notes=[f"load average {r['machine']['loadavg_1m']} on {r['machine']['cpus']} cpus"])


if __name__ == "__main__":
    main()
