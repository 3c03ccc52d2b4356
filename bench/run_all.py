"""Run every benchmark (engine, study_throughput, ingest, scan, memory, walkforward, demo, regime_cache) and print
one combined table with each script's load average (``make bench``).

Each script runs in its own process (so each peak RSS is its own) with ``--json`` and small sizes that keep the
whole suite at a few minutes on 2 cores; ``--full`` uses each script's own defaults instead (much longer:
1,000 trials per storage, the 500 x 1,260 reference, a year of CNMS files). ``--only engine,scan`` selects
scripts. ``--json`` prints {script: its JSON object, ...} (a failed script: {"error": ..., "returncode": ...}).

    .venv/bin/python bench/run_all.py [--full] [--only NAMES] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit  # noqa: E402

__all__ = ["SCRIPTS", "run_script", "headline", "main"]

HERE = Path(__file__).resolve().parent

# script -> (quick arguments, full arguments)
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    "engine": (["--quick", "--configs", "100", "--ref-configs", "2"], []),
    "study_throughput": (["--trials", "150", "--checkpoint", "100", "--no-context"], ["--prototype"]),
    "ingest": (["--full", "--reference", "per-file"], ["--full", "--reference"]),  # a year: issue 15.4's figure
    "scan": (["--symbols", "10000", "--sessions", "100"], []),
    "study_list": (["--studies", "4", "--trials", "250"], []),
    "memory": (["--csv-mb", "50", "--symbols", "3000"], []),
    "walkforward": (["--trials", "20"], ["--trials", "40"]),
    "demo": ([], []),
    "regime_cache": (["--repeat", "1"], []),
}


def run_script(name: str, full: bool) -> tuple[dict, float]:
    quick_args, full_args = SCRIPTS[name]
    cmd = [sys.executable, str(HERE / f"{name}.py"), *(full_args if full else quick_args), "--json"]
    os.sync()  # the files an earlier script wrote reach the disk now, not while this one is timed (its commits' fsyncs)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["(no output)"])[-1], "returncode": p.returncode}, secs
    try:
        return json.loads(p.stdout.strip().splitlines()[-1]), secs
    except (json.JSONDecodeError, IndexError):
        return {"error": f"no JSON on stdout: {p.stdout[-200:]!r}", "returncode": p.returncode}, secs


def headline(name: str, r: dict) -> list[tuple]:
    """The figures of one script's JSON worth a row in the combined table: (figure, value, target, ok)."""
    if "error" in r:
        return [(f"{name}: FAILED (exit {r.get('returncode')})", r["error"])]
    if name == "engine":
        s, b, t = r["small"], r["big"], r["targets"]
        rows = [
            ("engine 60x252: cached ms/config, median (mean)", f"{s['cached_p50_ms']} ({s['cached_ms_per_config']})",
             f"<= {t['small_ms_per_config']}", r["small_ok"]),
            ("engine 500x1260: cached ms/config, median (mean)", f"{b['cached_p50_ms']} ({b['cached_ms_per_config']})",
             f"<= {t['big_ms_per_config']}", r["big_ok"]),
            ("engine 60x252 / 500x1260: best of 3 per config, median ms",
             f"{s['cached_best_of_3_p50_ms']} / {b['cached_best_of_3_p50_ms']}"),
            ("engine 60x252: speed-up vs reference, x", s["speedup_cached_vs_reference"],
             f">= {t['speedup_vs_reference']:.0f}", r["speedup_ok"]),
            ("engine 60x252: metrics agree with reference", s["reference_agrees"]),
            ("engine 500x1260: feature warm s / cache MiB / bytes per cell",
             f"{b['feature_warm_s']} / {b['feature_cache_mb']} / {b['feature_bytes_per_cell']}",
             f"<= {t['feature_bytes_per_cell']:.0f} B/cell", r["feature_bytes_ok"]),
            ("engine 500x1260: study-shaped trial (4 folds + overall), ms", b["trial_5_spans_p50_ms"]),
            ("engine 500x1260: uncached ms/config", b["uncached_ms_per_config"]),
            ("engine: peak RSS, MiB", r["peak_rss_mb"]),
        ]
        return rows
    if name == "study_throughput":
        runs = r["runs"]
        rows = [(f"study {k}: trials/s ({v['objective']} objective, {v['trials']} trials)", v["trials_per_s"],
                 f"{v.get('write_commits_per_trial', '-')} writing commits/trial" if "write_commits_per_trial" in v else None)
                for k, v in runs.items()]
        rows.append(("study: ratio_vs_inmemory (SQLite / in-memory trials/s)", r["ratio_vs_inmemory"],
                     f">= {r['target_ratio_vs_inmemory']:.3f}", r["ok_vs_inmemory"]))
        rows.append(("study: ratio_vs_stock_sqlite", r["ratio_vs_stock_sqlite"], f">= {r['target_ratio']}", r["ok"]))
        rows.append(("study: peak RSS, MiB", r["peak_rss_mb"]))
        return rows
    if name == "ingest":
        f = r["finra"]
        rows = [
            (f"ingest CNMS {f['symbols']:,} x {f['sessions']} files, final CHECKPOINT included: rows/s (rows/CPU s)",
             f"{f['rows_per_s_with_checkpoint']:,} ({f.get('rows_per_cpu_s_with_checkpoint', 0):,})", ">= 1,000,000",
             f["rows_per_s_with_checkpoint"] >= 1_000_000),
            ("ingest CNMS: s per file / peak RSS MiB / DB MiB", f"{f['s_per_file']} / {f['peak_rss_mb']} / {f['db_mb']}"),
        ]
        floor = (r.get("reference") or {}).get("read_csv_per_file")
        if floor:
            rows.append(("ingest CNMS: DuckDB read_csv alone, 1 transaction/file: rows/s (rows/CPU s)",
                         f"{floor['rows_per_s']:,} ({floor['rows_per_cpu_s']:,})", "the floor, no rule checked"))
        if "synth" in r:
            s = r["synth"]
            rows.append((f"ingest synth {s['symbols']} x {s['sessions']}: ingest s / total s",
                         f"{s['ingest_s']} / {s['total_s']}"))
            rows.append(("ingest synth: CNMS files/s", s.get("finra_files_per_s"), ">= 20", (s.get("finra_files_per_s") or 0) >= 20))
        return rows
    if name == "memory":
        out = []
        for k, v in r.items():
            if k in ("machine", "wall_s") or not isinstance(v, dict):
                continue
            if "error" in v or "skipped" in v:
                out.append((f"memory {k}", v.get("error") or v.get("skipped")))
            else:
                out.append((f"memory {k}: seconds / peak RSS MiB", f"{v.get('seconds')} / {v.get('peak_rss_mb')}", None, v.get("ok")))
        return out
    if name == "regime_cache":
        return [(f"{k}: CPU s of a run, cache off / cold / warm", f"{v['off']} / {v['cold']} / {v['warm']}",
                 "identical output" if v["identical"] else "DIFFERS", v["identical"]) for k, v in r["commands"].items()]
    if name == "walkforward":
        return [(f"walk-forward {v['windows']} windows x {r['trials_per_window']} trials, --jobs {v['jobs']}: wall s "
                 "(speed-up)", f"{v['seconds']} ({v['speedup']}x)", "same result" if v["identical_to_jobs_1"]
                 else "DIFFERS", v["identical_to_jobs_1"]) for v in r["runs"].values()]
    if name == "demo":
        return [("demo wall time, s (data / phase A / phase B / walk-forward ...)", r["seconds"],
                 " / ".join(f"{k} {v}" for k, v in r["timings"].items()))]
    if name == "scan":
        return [(f"scan {r['symbols']:,} x {r['sessions']}: seconds / rows/s", f"{r['scan_seconds']} / {r['rows_per_second']:,}")]
    if name == "study_list":
        return [(f"study list, {r['trials']:,} trials: ORM path / SQL, s", f"{r['orm_seconds']} / {r['sql_seconds']} "
                 f"({r['speedup']}x)", "same table", r["identical"])]
    return [(name, json.dumps(r)[:80])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="each script's full default sizes (long)")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(SCRIPTS))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.only.split(",") if n.strip()] or list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        ap.error(f"unknown script(s) {', '.join(unknown)}; valid: {', '.join(SCRIPTS)}")
    results: dict[str, dict] = {}
    rows: list[tuple] = []
    for n in names:
        if not a.json:
            print(f"running bench/{n}.py ...", file=sys.stderr, flush=True)
        res, secs = run_script(n, a.full)
        res.setdefault("wall_s", round(secs, 1))
        if "machine" in res and not a.json:
            print(f"  done in {secs:.0f} s (load average {res['machine']['loadavg_1m']})", file=sys.stderr, flush=True)
        results[n] = res
        rows += headline(n, res)
        load = (res.get("machine") or {}).get("loadavg_1m")
        rows.append((f"{n}: wall seconds / 1-min load average at its end", f"{round(secs, 1)} / {load}"))
    emit(results, a.json, "accumopt benchmarks (" + ("full" if a.full else "quick") + " sizes)", rows)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
