"""Small leftovers of the audits of this stop (mend17): the walk-forward's one book shown, the notes a worker and
the Python API gave no word of, integral floats, replay's field name, the universe's spelling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests._cli_helpers import cli, ok
from tests.test_explore21_settings import _WF_SPEC


# ------------------------------------------------------------------ 1. the one book in the terminal and the report
@pytest.fixture(scope="module")
def wf_run(synth_db, tmp_path_factory):
    """The explore21 walk-forward (4 windows of 2 trials on the planted store) without its [run] timeout."""
    tmp = tmp_path_factory.mktemp("wf")
    spec = tmp / "wf.toml"
    spec.write_text(_WF_SPEC.replace("timeout = 30\n", "").replace("test = 60", "test = 20"), encoding="utf-8")
    res = ok(cli("walkforward", spec, "--db", synth_db, "--out", tmp / "out", "--storage", f"sqlite:///{tmp / 'st.db'}"))
    d = Path(res.stdout.split("files: ", 1)[1].split()[0])
    return res, d, json.loads((d / "result.json").read_text(encoding="utf-8"))


def test_the_one_book_is_shown_in_the_terminal_and_the_report(wf_run, tmp_path):
    """result.json's stats.book (what the one book changed: windows and symbols blocked, entries refused and
    added) was shown by neither the terminal output of `walkforward` nor `accumopt report` (fails before: no
    'one book' line in either)."""
    res, d, doc = wf_run
    b = doc["stats"]["book"]
    assert b["windows_blocked"] >= 1 and b["symbols_blocked"] >= 1  # the planted store: trades held over windows
    want = (f"{b['windows_blocked']} window(s), {b['symbols_blocked']} held symbol(s) blocked: "
            f"{b['refused']} entries refused, {b['added']} added")
    lines = res.stdout.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("one book "))
    j = next(j for j in range(i + 1, len(lines)) if not lines[j].startswith("    "))  # its wrapped lines, if any
    assert " ".join(" ".join(lines[i:j]).split()) == f"one book {want}"
    assert max(map(len, lines[i:j])) <= 80
    page = Path(ok(cli("report", d, "--out", tmp_path / "out")).stdout.strip().splitlines()[-1]).read_text("utf-8")
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert f"one book (docs/STATS.md) {want}" in text
