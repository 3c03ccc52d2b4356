"""The demo hands over to everyday use: ``accumopt demo`` ends with the exact ``export ACCUMOPT_DB=... ACCUMOPT_STORAGE=...``
line, and the README's "Everyday use" block then works VERBATIM (run by bash, line by line, ``set -e``) in a
working directory that has the repository's ``studies/`` and ``.venv`` (linked), as right after ``make demo``.

Only the README lines that need files the demo does not make, or start a server, are left out, and the test names
them: the four ``accumopt ingest`` lines (your own FINRA / price / OTC / lit files), ``accumopt dashboard`` (a
server) and ``accumopt evening ... --ingest ~/tonight/`` (tonight's files). Every other line runs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# README lines that cannot run right after the demo, and why
NOT_RUN = {
    "accumopt ingest finra-short": "your own FINRA files",
    "accumopt ingest prices": "your own price file",
    "accumopt ingest otc-weekly": "your own OTC file",
    "accumopt ingest lit-trades": "your own trade files",
    "accumopt dashboard": "starts a server",
    "accumopt evening --params best.json --ingest": "tonight's files",
}


def everyday_block(readme: str) -> list[str]:
    """The command lines of the README's "Everyday use" bash block, comments stripped."""
    part = readme.split("## Everyday use", 1)[1]
    block = part.split("```bash", 1)[1].split("```", 1)[0]
    return [ln.split(" #", 1)[0].strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCUMOPT_", "SCANNER_")) and k != "TICKERS"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "80"
    return env


def test_demo_prints_the_export_line_and_the_readme_everyday_block_works(tmp_path):
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "studies").symlink_to(ROOT / "studies")
    if (Path(sys.prefix) / "bin" / "activate").is_file():
        (work / ".venv").symlink_to(Path(sys.prefix))
    demo = subprocess.run([sys.executable, "-m", "optimizer.cli", "demo"], cwd=work, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    lines = demo.stdout.splitlines()
    exports = [ln for ln in lines if ln.startswith("export ")]
    assert len(exports) == 1 and exports[0] in lines[-6:], lines[-12:]  # among the last lines, whole on one line
    env_vars = dict(kv.split("=", 1) for kv in shlex.split(exports[0])[1:])
    assert Path(env_vars["ACCUMOPT_DB"]) == (work / "output" / "demo" / "darkpool.duckdb").resolve()
    assert env_vars["ACCUMOPT_STORAGE"] == f"sqlite:///{(work / 'output' / 'demo' / 'studies.db').resolve()}"
    assert Path(env_vars["ACCUMOPT_DB"]).is_file()
    assert "accumopt dashboard" in lines[-3:]
    assert not [w for w in demo.stderr.splitlines() if "ExperimentalWarning" in w]  # no noise after the verdict

    cmds = everyday_block((ROOT / "README.md").read_text(encoding="utf-8"))
    skipped = [c for c in cmds if c.startswith(tuple(NOT_RUN))]
    assert len(skipped) == len(NOT_RUN)  # each exclusion matches exactly one README line
    run = [c for c in cmds if c not in skipped]
    assert len(run) >= 10 and run[0] == ". .venv/bin/activate"
    if not (work / ".venv").exists():
        run = run[1:]  # not in a virtualenv: accumopt is on PATH already (see _env)
    script = "set -e\n" + exports[0] + "\n" + "\n".join(f"echo '+ {c}' >&2\n{c}" for c in run) + "\n"
    res = subprocess.run(["bash", "-c", script], cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"README line failed:\n{res.stderr[-4000:]}\n{res.stdout[-2000:]}"
    best = json.loads((work / "best.json").read_text(encoding="utf-8"))
    assert best["study"] == "phase_b_fine" and best["params"]
    for p in ("output/walkforward/demo/result.json", "output/reports/demo-walkforward.html", "output/sandbox/NVDA.html",
              "output/plots/AAPL_layered.html", "output/charts/SPY_daily.html"):
        assert (work / p).is_file(), p
    assert list((work / "output" / "signals").glob("*/sheet.html"))
    assert "edge supported" in res.stdout  # the walk-forward line of the README resumes the demo's run
