"""The main job on the embedded synthetic market (``make demo`` / ``accumopt demo``).

synth -> ingest -> daily_metrics -> phase A (grid) -> phase B (TPE seeded from A) -> walk-forward -> report.
Uses its own database and storage under ``out_root/demo`` so it never touches a user's data.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path

from rich.console import Console

from optimizer.data.synth import SynthConfig, synth_new_store
from optimizer.report.research import build_walkforward_report
from optimizer.report.terminal import cell_text
from optimizer.study.run import run_study
from optimizer.study.spec import StudySpec, load_spec
from optimizer.validate.walkforward import (load_walkforward, run_notes, run_walkforward, save_walkforward,
                                           walkforward_dir)

__all__ = ["run_demo", "demo_env", "export_line", "STUDIES"]

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def _spec(name: str) -> StudySpec:
    return load_spec(STUDIES / f"{name}.toml")


def run_demo(out_root: Path, effect: float = 3.0, seed: int = 7, fresh: bool = False, console: Console | None = None,
             progress: bool = False) -> dict:
    """Run the main job under ``out_root/demo`` and return its verdict, report path, timings, storage and db."""
    console = console or Console()
    root = Path(out_root) / "demo"
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    db = root / "darkpool.duckdb"
    storage = f"sqlite:///{root / 'studies.db'}"
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str, t: float) -> None:
        timings[name] = round(time.perf_counter() - t, 1)
        console.print(f"[green]✓[/] {name} ({timings[name]} s)")

    t = time.perf_counter()
    if not db.exists():
        console.rule("1. synthetic market -> ingest -> daily_metrics")
        summary = synth_new_store(SynthConfig(seed=seed, effect=effect), root / "raw", db, progress=progress)
        rows = ", ".join(f"{k} {cell_text(k, v)}" for k, v in (summary.get("rows") or {}).items())
        console.print(f"{summary.get('symbols')} symbols x {summary.get('sessions')} sessions; rows: {rows}",
                      markup=False, highlight=False)
    step("data", t)

    console.rule("2. phase A: coarse grid")
    t = time.perf_counter()
    a = run_study(_spec("phase_a_coarse"), db, storage, progress=progress)
    console.print(f"phase A: {_outcome(a)}", markup=False, highlight=False)
    step("phase A", t)

    console.rule("3. phase B: TPE seeded with phase A's top 5")
    t = time.perf_counter()
    b = run_study(_spec("phase_b_fine"), db, storage, n_trials=60, progress=progress)
    console.print(f"phase B: {_outcome(b)}", markup=False, highlight=False)
    step("phase B", t)

    console.rule("4. walk-forward out-of-sample")
    t = time.perf_counter()
    spec = _spec("demo")
    with warnings.catch_warnings(record=True) as caught:  # the run's own notes as lines, like `walkforward`'s
        warnings.simplefilter("always", UserWarning)
        wf = run_walkforward(spec, db, storage, progress=progress, out_dir=None)
    for m in run_notes(caught, wf):
        console.print(m, style="yellow", markup=False, highlight=False)
    wf_dir = save_walkforward(wf, walkforward_dir(root, spec.run.study_name))
    step("walk-forward", t)

    console.rule("5. report")
    t = time.perf_counter()
    wfd = load_walkforward(wf_dir)
    report = build_walkforward_report(wfd, out_dir=root / "reports", name="demo",
                                      events=wfd["events"] if len(wfd["events"]) else None)
    step("report", t)

    color = "green" if wf.verdict.supported else "red"
    console.rule("verdict")
    console.print(wf.verdict.line, style=f"bold {color}", markup=False, highlight=False)
    env = demo_env(root)
    console.print(f"total {time.perf_counter() - t0:.0f} s. The report:", highlight=False)
    _line(console, str(report))
    console.print("The README's everyday commands work on the demo's data once the store and the study storage are "
                  "set:", highlight=False)
    activate = _activate_line()
    if activate:
        _line(console, activate)
    _line(console, export_line(env))
    console.print("then, e.g., the best trials and optuna-dashboard on the demo's studies:", highlight=False)
    _line(console, "accumopt study show phase_b_fine --top 10")
    _line(console, "accumopt dashboard")
    return {"verdict": wf.verdict.line, "supported": wf.verdict.supported, "report": str(report), "timings": timings,
            "storage": storage, "db": str(db), "env": env}


def demo_env(root: Path) -> dict[str, str]:
    """The environment that points the everyday commands at the demo's data under ``root`` (absolute paths, so
    they work from any directory): ``ACCUMOPT_DB`` and ``ACCUMOPT_STORAGE``."""
    root = Path(root).resolve()
    return {"ACCUMOPT_DB": str(root / "darkpool.duckdb"), "ACCUMOPT_STORAGE": f"sqlite:///{root / 'studies.db'}"}


def export_line(env: dict[str, str]) -> str:
    """``export K=V ...`` for a POSIX shell (values quoted when they need it)."""
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def _activate_line() -> str | None:
    """``. <venv>/bin/activate`` when this process runs from a virtualenv whose commands are not on PATH (``make
    demo`` runs ``.venv/bin/accumopt``), so the printed ``accumopt ...`` commands work in the user's shell."""
    bindir = Path(sys.prefix) / "bin"
    if sys.prefix == sys.base_prefix or not (bindir / "activate").is_file():
        return None
    on_path = [Path(p).resolve() for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    return None if bindir.resolve() in on_path else f". {shlex.quote(str(bindir / 'activate'))}"


def _outcome(run) -> str:
    """A study run's trial counts and best trial as a sentence rounded as the terminal tables round them
    (``complete 72, pruned 0, failed 0; best 0.02259: variant B, z_window 90, ...``), not Python reprs."""
    counts = ", ".join(f"{k} {v}" for k, v in run.counts.items() if k in ("complete", "pruned", "failed") or v)
    best = "-" if run.best_value is None else cell_text("value", run.best_value)
    params = ", ".join(f"{k} {cell_text(k, v)}" for k, v in (run.best_params or {}).items())
    return f"{counts}; best {best}" + (f": {params}" if params else "")


def _line(console: Console, text: str) -> None:
    """One line, never wrapped (a command or a path must survive copy and paste)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)
