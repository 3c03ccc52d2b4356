"""``examples/research.ipynb`` runs top to bottom (nbclient, a fresh python3 kernel of this interpreter), so the
notebook can never go stale: store -> panel -> evaluate -> study from a dict -> walk-forward -> report -> sandbox
on the embedded synthetic market. Everything it writes goes to a temporary folder (``ACCUMOPT_NOTEBOOK_OUT``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "research.ipynb"

pytestmark = pytest.mark.slow


def _outputs(nb) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                parts.append(o["text"])
            elif o.get("output_type") == "execute_result":
                parts.append(str(o["data"].get("text/plain", "")))
    return "\n".join(parts)


def test_research_notebook_runs(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # shipped without stale outputs
    out = tmp_path / "nb"
    monkeypatch.setenv("ACCUMOPT_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # a kernel of THIS interpreter, whatever kernels the machine has registered
    spec = tmp_path / "jupyter" / "kernels" / "accumopt-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "accumopt test", "language": "python"}), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="accumopt-test",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    text = _outputs(nb)
    assert "33 symbols" in text or "symbols" in text
    assert "edge supported" in text  # the planted market's edge survives the walk-forward
    assert (out / "reports" / "notebook-walkforward.html").is_file()
    assert (out / "sandbox_NVDA.html").stat().st_size > 100_000
    assert "Entries (win)" in text
