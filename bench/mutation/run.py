"""Mutation testing with mutmut over the engine, the splitters, the statistics, the walk-forward and data/metrics.

Not collected by pytest, not run in CI: ``make mutation`` (every group) or, from the repository root,

    .venv/bin/python bench/mutation/run.py [GROUP ...] [--max-children 2] [--nice 15] [--list] [--report]

Each group (``GROUPS`` below) mutates one or a few modules and runs its mutants against the test files that test
them (mutmut then narrows each mutant to the tests that called the mutated function). A group runs in its own
scratch copy of the repository, ``output/mutation/<group>/`` (git-ignored), so the worktree is never mutated and
groups do not share mutmut's caches. At the end the script prints the mutation score per module and writes
``output/mutation/summary.json`` and ``output/mutation/<group>/survivors.txt`` (each surviving mutant's diff).

Numba: mutmut 3 does not mutate decorated functions, and a mutated ``@njit`` body would be compiled anyway. The
groups whose modules hold kernels (``jit=False``) therefore strip the ``@njit(...)`` decorators in the scratch
copy and run with ``NUMBA_DISABLE_JIT=1``: the kernels run as plain Python (slower, mutation-testable; the same
code numba compiles). Every other group keeps the JIT on and ``NUMBA_CACHE_DIR`` inside the scratch copy: the
kernels compile once in mutmut's stats process and every forked mutant inherits them.

Score = (killed + timeout) / (all mutants - skipped); a mutant no selected test reaches ("no tests") counts as a
survivor. See bench/mutation/README.md for the results and the survivors judged equivalent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "output" / "mutation"
MUTMUT_VERSION = "3.8.1"

__all__ = ["GROUPS", "Group", "main"]


@dataclass(frozen=True)
class Group:
    """Modules mutated together and the test files their mutants run against."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]
    jit: bool = True  # False: strip @njit in the scratch copy and run with NUMBA_DISABLE_JIT=1
    deselect: tuple[str, ...] = ()  # slow tests that add no kill (node ids), or tests that need the JIT
    only: tuple[str, ...] = ()  # the mutants run when no --only is given (mutmut's name globs); () = all


_ENGINE_TESTS = (
    "tests/test_engine_timing.py", "tests/test_engine_lookahead.py", "tests/test_engine_kernels.py",
    "tests/test_engine_oracle.py", "tests/test_engine_fused.py", "tests/test_mutation_kills_engine.py",
)
# thread launches and timing-free but slow (17 s) parallel == serial: not the engine's arithmetic
_ENGINE_DESELECT = ("tests/test_engine_kernels.py::test_parallel_kernels_match_serial_kernels",)

_KERNEL_TESTS = ("tests/test_engine_timing.py", "tests/test_risk_rules.py", "tests/test_mutation_kills_kernels.py")

# a timed test (elapsed < 5 s): fails under mutmut's load in the stats run, and times nothing a mutant changes
_STATS_DESELECT = ("tests/test_stats.py::test_pbo_s16_combinations_and_speed",)

# the walk-forward's multi-process test (a forked --jobs 2 run and the worker's refusals, 15-30 s) and the
# functions only it (and the claim-lost test) reaches: group walkforward_dist. run_walkforward(_worker)'s mutants
# run in group walkforward; those only a multi-process run kills: --only their names in walkforward_dist.
_WF_CLAIMED = "tests/test_mutation_kills_wf.py::test_claimed_windows_equal_the_single_process_run"
_WF_DIST = tuple(f"optimizer.validate.walkforward.x_{f}__mutmut_*" for f in (
    "_distributed", "_receive", "_window_runner", "_stop_when", "_child"))

# Order of the brief: modules nobody edits right now first, the kernels, the verdict and the walk-forward last.
GROUPS: dict[str, Group] = {
    "splits": Group(("optimizer/study/splits.py",),
                    ("tests/test_splits.py", "tests/test_cpcv.py", "tests/test_mutation_kills_splits.py")),
    "pbo": Group(("optimizer/validate/_pbo.py",),
                 ("tests/test_cpcv.py", "tests/test_stats.py", "tests/test_mutation_kills_stats.py"),
                 deselect=_STATS_DESELECT),
    "sharpe": Group(("optimizer/validate/_sharpe.py",),
                    ("tests/test_stats.py", "tests/test_inference.py", "tests/test_mutation_kills_stats.py"),
                    deselect=_STATS_DESELECT),
    "robust": Group(("optimizer/validate/_robust.py",),
                    ("tests/test_stats.py", "tests/test_mutation_kills_stats.py"), deselect=_STATS_DESELECT),
    "inference": Group(("optimizer/validate/_inference.py",),
                       ("tests/test_inference.py", "tests/test_mutation_kills_inference.py")),
    "reality": Group(("optimizer/validate/_reality.py",),
                     ("tests/test_reality.py", "tests/test_mutation_kills_reality.py")),
    "data_metrics": Group(("optimizer/data/metrics.py",),
                          ("tests/test_metrics_build.py", "tests/test_mutation_kills_data.py")),
    "rolling": Group(("optimizer/data/rolling.py",),
                     ("tests/test_metrics_build.py", "tests/test_mutation_kills_data.py")),
    "engine": Group(("optimizer/engine/features.py", "optimizer/engine/score.py", "optimizer/engine/metrics.py"),
                    _ENGINE_TESTS, deselect=_ENGINE_DESELECT),
    # JIT off: the oracle files (test_engine_oracle / _fused / _lookahead) take ~40 s per mutant in plain Python; the
    # dedicated small-input file plus the hand-written candle tables run a mutant in ~1-3 s
    "kernels": Group(("optimizer/engine/_kernels.py", "optimizer/engine/simulate.py"), _KERNEL_TESTS, jit=False),
    "verdict": Group(("optimizer/validate/verdict.py",),
                     ("tests/test_verdict.py", "tests/test_mutation_kills_verdict.py")),
    # test_walkforward.py's and test_seams.py's module fixtures run studies on synthetic stores (minutes per
    # mutant): their fast unit tests only, and the tiny-panel walk-forward of test_mutation_kills_wf.py (~2 s)
    "walkforward": Group(("optimizer/validate/walkforward.py",),
                         ("tests/test_walkforward.py::test_select_params_best_and_robust_plateau",
                          "tests/test_walkforward.py::test_select_params_robust_separates_categories",
                          "tests/test_walkforward.py::test_tried_configs_counts_each_distinct_configuration_once",
                          "tests/test_walkforward.py::test_combine_pvalues_is_rugers_bound",
                          "tests/test_mutation_kills_wf.py"), deselect=(_WF_CLAIMED,)),
    # the same module's multi-process functions against the forked --jobs 2 run (15-30 s per mutant): every other
    # function's mutant gives the same result in both runs that test compares, so it runs here only
    "walkforward_dist": Group(("optimizer/validate/walkforward.py",),
                              (_WF_CLAIMED, "tests/test_mutation_kills_wf.py::test_tiny_walkforward",
                               "tests/test_mutation_kills_wf.py::test_window_runner_stops_when_the_claim_is_lost"),
                              only=_WF_DIST),
    # the skipped_identical rule (branch reskip): _History, the pipeline's _settle, _stage's use of it, write_rows'
    # (status, deleted, lost). Every ingest test reaches them (~1-2 s per ingest): the skip rule's file, the
    # batching / pipeline files (deferred and settled skips), the rejects file (write_rows' rejected_rows status)
    "ingest_skip": Group(("optimizer/data/ingest/__init__.py", "optimizer/data/ingest/_common.py"),
                         ("tests/test_ingest_identical.py", "tests/test_ingest_batch.py",
                          "tests/test_ingest_pipeline.py", "tests/test_ingest_rejects.py",
                          "tests/test_mutation_kills_ingest.py"),
                         # monkeypatches the writer to wait on the pipeline's stop event: mutmut's trampoline
                         # stands between (the stats run fails); a Ctrl-C path, not the skip rule
                         deselect=("tests/test_ingest_pipeline.py::test_ctrl_c_while_waiting_for_the_writer_"
                                   "stops_it_after_the_file_it_is_writing",),
                         only=("optimizer.data.ingest*.x\u01c1_History\u01c1*",
                               "optimizer.data.ingest*.x\u01c1_Pipeline\u01c1_settle__mutmut_*",
                               "optimizer.data.ingest*.x__stage__mutmut_*",
                               "optimizer.data.ingest._common.x_write_rows__mutmut_*")),
}

# exit code -> status, as mutmut's own table (mutmut.stats.status_by_exit_code)
_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
           -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 37: "caught by type check", None: "not checked",
           -11: "segfault", -9: "segfault", 2: "interrupted"}
_KILLS = "tests/test_mutation_kills_"  # the tests written to kill survivors (left out by --baseline)
_COPY = ("optimizer", "objectives", "tests", "studies", "docs", "README.md", "pyproject.toml")
_FRAMES = "\u280b\u2819\u2839\u2838\u283c\u2834\u2826\u2827\u2807\u280f"  # mutmut's spinner
_SPINNER_RUN = re.compile(f"[{_FRAMES}][^{_FRAMES}\\n]*(?=[{_FRAMES}])")  # every frame but the last of a line
_NJIT_LINE = re.compile(r"^[ \t]*@njit\b.*\n", re.M)
_NJIT_CALL = re.compile(r"\bnjit\([^()]*\)\((\w+)\)")


def strip_njit(source: str) -> str:
    """The source with its ``@njit(...)`` decorators and ``njit(...)(f)`` wrappers removed (plain-Python kernels)."""
    return _NJIT_CALL.sub(r"\1", _NJIT_LINE.sub("", source))


def _selection(group: Group, baseline: bool = False) -> list[str]:
    # a test file, or one test of it (a node id: "tests/test_x.py::test_y")
    args = [t for t in group.tests if (ROOT / t.split("::")[0]).exists() and not (baseline and _KILLS in t)]
    for node in group.deselect:
        args += ["--deselect", node]
    return args


def _mutmut_config(group: Group, baseline: bool = False) -> str:
    q = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"  # noqa: E731
    return "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["optimizer", "objectives"]',
        f"only_mutate = {q(group.modules)}",
        'also_copy = ["studies", "docs", "README.md"]',
        # no xdist (mutmut runs pytest in its own process), no cache plugin writing into the copy
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q"]',
        f"pytest_add_cli_args_test_selection = {q(_selection(group, baseline))}",
        "use_git_change_detection = false",
        "timeout_multiplier = 10.0",
        "timeout_constant = 5.0",
        "",
    ])


def prepare(name: str, group: Group, baseline: bool = False) -> Path:
    """A fresh scratch copy of the repository for one group, its mutmut config appended to its pyproject."""
    work = OUT / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "output")
    for item in _COPY:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, work / item)
    with open(work / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write(_mutmut_config(group, baseline))
    if not group.jit:
        for module in group.modules:
            path = work / module
            path.write_text(strip_njit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return work


def _reusable(work: Path, group: Group, baseline: bool) -> bool:
    """Whether the scratch copy of an earlier run can take another part: same mutmut config (test selection) and
    the same source and test files as the worktree now."""
    pyproject = work / "pyproject.toml"
    if not (work / "mutants").exists() or not pyproject.exists():
        return False
    if not pyproject.read_text(encoding="utf-8").endswith(_mutmut_config(group, baseline)):
        return False
    for sub in ("optimizer", "tests", "objectives"):
        for src in (ROOT / sub).rglob("*.py"):
            copy = work / src.relative_to(ROOT)
            text = src.read_text(encoding="utf-8")
            if not group.jit and str(src.relative_to(ROOT)) in group.modules:
                text = strip_njit(text)
            if not copy.exists() or copy.read_text(encoding="utf-8") != text:
                return False
    return True


def merge_rerun(base: dict[str, dict], rerun: dict[str, dict]) -> dict[str, dict]:
    """The AFTER score of a group whose BASELINE survivors were re-run alone (``--rerun-survivors``): the
    baseline's kills carry over (adding test files cannot un-kill a mutant: mutmut runs every test that reaches it),
    the re-run decides the rest."""
    out: dict[str, dict] = {}
    for module, b in base.items():
        r = rerun.get(module, {})
        if "error" in b or "error" in r:
            out[module] = b if "error" in b else r
            continue
        skipped = b["mutants"] - (b["killed"] + b["timeout"] + b["survived"] + b["no_tests"] + b["other"]
                                  + b.get("not_checked", 0))
        m = {"mutants": b["mutants"], "killed": b["killed"] + r["killed"], "timeout": b["timeout"] + r["timeout"],
             "survived": r["survived"], "no_tests": r["no_tests"], "other": r["other"],
             "survivors": r["survivors"], "unchecked": r.get("unchecked", []),
             "rerun": len(b["survivors"]) + len(b.get("unchecked", []))}
        m["not_checked"] = m["mutants"] - skipped - sum(m[k] for k in ("killed", "timeout", "survived", "no_tests",
                                                                         "other"))
        m["unchecked"] = [k for k in m["unchecked"] if k in set(b["survivors"]) | set(b.get("unchecked", []))]
        tested = m["mutants"] - skipped - m["not_checked"]
        m["score"] = round(100.0 * (m["killed"] + m["timeout"]) / tested, 1) if tested else None
        out[module] = m
    return out


def _env(work: Path, group: Group) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CI", None)
    env["NUMBA_CACHE_DIR"] = str(work / ".numba_cache")
    env["HYPOTHESIS_PROFILE"] = "ci"  # derandomized: the same examples for every mutant
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if not group.jit:
        env["NUMBA_DISABLE_JIT"] = "1"
    return env


def run_group(name: str, group: Group, max_children: int, baseline: bool = False,
              only: tuple[str, ...] = ()) -> float:
    """Run mutmut in the group's scratch copy; its output goes to output/mutation/<name>/mutmut.log. ``only``:
    mutant name globs (mutmut's own filter); the scratch copy of an earlier run is then kept, so a group can be run
    in parts whose results add up (re-run without ``only`` for a fresh copy)."""
    work = OUT / name
    if not only or not _reusable(work, group, baseline):
        work = prepare(name, group, baseline)
    mutmut = Path(sys.executable).with_name("mutmut")
    started = time.monotonic()
    with open(work / "mutmut.log", "a" if only else "w", encoding="utf-8") as log:
        subprocess.run([str(mutmut), "run", "--max-children", str(max_children), *only], cwd=work,
                       env=_env(work, group), stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.monotonic() - started
    log_path = work / "mutmut.log"
    lines = _SPINNER_RUN.sub("", log_path.read_text(encoding="utf-8").replace("\r", "\n")).splitlines()
    progress = [i for i, line in enumerate(lines) if line[:1] in _FRAMES and line[:1]]
    drop = set(progress[:-1])  # keep the last progress line only
    log_path.write_text("\n".join(x for i, x in enumerate(lines) if i not in drop) + "\n", encoding="utf-8")
    return seconds


def collect(name: str, group: Group) -> dict[str, dict]:
    """Per module: status counts, score and surviving mutant names (from mutmut's .meta files)."""
    work = OUT / name
    result: dict[str, dict] = {}
    for module in group.modules:
        meta = work / "mutants" / (module + ".meta")
        if not meta.exists():
            result[module] = {"error": f"no results ({meta} missing): see {work / 'mutmut.log'}"}
            continue
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        status = {key: _STATUS.get(code, "suspicious") for key, code in codes.items()}
        counts = Counter(status.values())
        # mutants not run yet (a run in parts, ``--only``) are left out of the score and counted apart
        tested = len(status) - counts["skipped"] - counts["not checked"]
        killed = counts["killed"] + counts["timeout"]
        result[module] = {
            "mutants": len(status), "killed": counts["killed"], "timeout": counts["timeout"],
            "survived": counts["survived"], "no_tests": counts["no tests"],
            "other": tested - killed - counts["survived"] - counts["no tests"],
            "not_checked": counts["not checked"],
            "score": round(100.0 * killed / tested, 1) if tested else None,
            "survivors": sorted(k for k, s in status.items()
                                if s not in ("killed", "timeout", "skipped", "not checked")),
            "unchecked": sorted(k for k, s in status.items() if s == "not checked"),
        }
    return result


_SHOW = """
import sys
from pathlib import Path
from mutmut.__main__ import find_mutant, get_diff_for_mutant
out = []
for key in sys.argv[2:]:
    out.append(f"# {key}\\n{get_diff_for_mutant(key, path=find_mutant(key).path)}\\n")
Path(sys.argv[1]).write_text("\\n".join(out), encoding="utf-8")
"""


def write_survivors(name: str, summary: dict[str, dict]) -> None:
    """output/mutation/<name>/survivors.txt: every surviving mutant's diff (as ``mutmut show``, in one process)."""
    work = OUT / name
    keys = [key for r in summary.values() for key in r.get("survivors", [])]
    subprocess.run([sys.executable, "-c", _SHOW, str(work / "survivors.txt"), *keys], cwd=work, check=False)


def print_table(summary: dict[str, dict[str, dict]]) -> None:
    """One row per module and run (``before``: --baseline, without the kill tests; ``after``: with them)."""
    print(f"\n{'module':<30} {'run':<6} {'mutants':>7} {'killed':>6} {'t/o':>4} {'surv':>5} {'none':>5} {'score':>6}")
    totals: dict[str, list[int]] = {}
    for key, group in summary.items():
        run = "before" if key.endswith(":baseline") else "after"
        for module, r in group.items():
            short = module.removeprefix("optimizer/")
            if "error" in r:
                print(f"{short:<30} {run:<6} {r['error']}")
                continue
            part = f"  ({r['not_checked']} not checked yet)" if r.get("not_checked") else ""
            if r["score"] is None:
                print(f"{short:<30} {run:<6} {r['mutants']:>7} not run{part}")
                continue
            print(f"{short:<30} {run:<6} {r['mutants']:>7} {r['killed']:>6} {r['timeout']:>4} {r['survived']:>5} "
                  f"{r['no_tests']:>5} {r['score']:>5}%{part}")
            t = totals.setdefault(run, [0, 0])
            t[0] += r["mutants"] - r.get("not_checked", 0)
            t[1] += r["killed"] + r["timeout"]
    for run, (total, killed) in totals.items():
        print(f"{'all':<30} {run:<6} {total:>7} {killed:>6} {'':>4} {'':>5} {'':>5} {100.0 * killed / max(total, 1):>5.1f}%")
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("groups", nargs="*", help=f"groups to run (default: all): {', '.join(GROUPS)}")
    ap.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    ap.add_argument("--nice", type=int, default=15, help="niceness of the run (default 15: the machine is shared)")
    ap.add_argument("--list", action="store_true", help="list the groups, their modules and tests, and exit")
    ap.add_argument("--only", nargs="+", default=(), metavar="GLOB",
                    help="run only the mutants whose names match (mutmut's globs, e.g. "
                         "'optimizer.engine._kernels.x__kelly__mutmut_*'), keeping the results of earlier parts")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="AFTER score from the BASELINE: re-run only the baseline's survivors (and the mutants it did not "
                         "reach) with every test file (the baseline's kills carry over); needs '<group>:baseline'")
    ap.add_argument("--report", action="store_true", help="only print the scores of the last runs (no mutmut run)")
    ap.add_argument("--baseline", action="store_true",
                    help=f"without the {_KILLS}*.py files: the score before the tests written for mutation testing "
                         "(saved as '<group>:baseline' in summary.json)")
    args = ap.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        print(f"unknown group(s) {', '.join(unknown)}; groups are: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    names = args.groups or list(GROUPS)
    if args.list:
        for n in names:
            g = GROUPS[n]
            print(f"{n}: {' '.join(g.modules)}{'' if g.jit else '  [NUMBA_DISABLE_JIT=1]'}\n    {' '.join(g.tests)}")
        return 0
    if not args.report:
        try:
            from importlib.metadata import version
            have = version("mutmut")
        except Exception:  # noqa: BLE001 - PackageNotFoundError: say how to install it
            have = None
        if have != MUTMUT_VERSION:
            print(f"mutmut=={MUTMUT_VERSION} is needed (found {have}): "
                  f"{sys.executable} -m pip install mutmut=={MUTMUT_VERSION}", file=sys.stderr)
            return 2
        os.nice(args.nice)
    summary_path = OUT / "summary.json"
    saved = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary: dict[str, dict[str, dict]] = {}
    for n in names:
        if not args.report:
            t0 = time.strftime("%H:%M:%S")
            print(f"[{t0}] {n}: mutating {', '.join(GROUPS[n].modules)} (load {os.getloadavg()[0]:.2f})", flush=True)
            only = tuple(args.only) or GROUPS[n].only
            base = saved.get(f"{n}:baseline")
            if args.rerun_survivors:
                if base is None or args.baseline:
                    print(f"{n}: --rerun-survivors needs a baseline run first (and no --baseline)", file=sys.stderr)
                    return 2
                # the baseline's survivors and the mutants it did not reach (a baseline run in parts)
                only = tuple(k for r in base.values() for k in r.get("survivors", []) + r.get("unchecked", []))
                if not only:
                    summary[n] = base
                    continue
                if (OUT / n).exists():
                    shutil.rmtree(OUT / n)  # a fresh copy with every test file
            seconds = run_group(n, GROUPS[n], args.max_children, args.baseline, only)
            key = f"{n}:baseline" if args.baseline else n
            summary[key] = collect(n, GROUPS[n])
            if args.rerun_survivors:
                summary[key] = merge_rerun(base, summary[key])
            write_survivors(n, summary[key])
            for r in summary[key].values():
                r["seconds"] = round(seconds)
                r["load"] = round(os.getloadavg()[0], 2)
            # re-read: another run (another group) may have written since this one started
            saved = json.loads(summary_path.read_text()) if summary_path.exists() else {}
            saved[key] = summary[key]
            OUT.mkdir(parents=True, exist_ok=True)
            summary_path.write_text(json.dumps(saved, indent=1), encoding="utf-8")
        else:
            for key in (f"{n}:baseline", n):
                if key in saved:
                    summary[key] = saved[key]
    print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
