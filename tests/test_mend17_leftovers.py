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
    """The explore21 walk-forward (5 windows of 20 sessions, 2 trials each, [run] timeout = 30, on the planted store)
    on an SQLite storage, and its spec."""
    tmp = tmp_path_factory.mktemp("wf")
    spec = tmp / "wf.toml"
    spec.write_text(_WF_SPEC.replace("test = 60", "test = 20"), encoding="utf-8")
    args = ("--db", synth_db, "--out", tmp / "out", "--storage", f"sqlite:///{tmp / 'st.db'}")
    res = ok(cli("walkforward", spec, *args))
    d = Path(res.stdout.split("files: ", 1)[1].split()[0])
    return res, d, json.loads((d / "result.json").read_text(encoding="utf-8")), (spec, *args)


def test_the_one_book_is_shown_in_the_terminal_and_the_report(wf_run, tmp_path):
    """result.json's stats.book (what the one book changed: windows and symbols blocked, entries refused and
    added) was shown by neither the terminal output of `walkforward` nor `accumopt report` (fails before: no
    'one book' line in either)."""
    res, d, doc, _ = wf_run
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


# ------------------------------------------------------------------ 2. the notes a worker and the API gave no word of
def test_a_walkforward_worker_says_the_timeout_its_windows_do_not_use(wf_run):
    """The coordinator says `[run] timeout = 30 is not used by walk-forward windows` (explore21); a worker of the same
    spec said nothing (fails before: stderr held the ready line only). Here the worker joins the finished run."""
    coordinator, *_, (spec, *args) = wf_run
    note = "[run] timeout = 30 is not used by walk-forward windows: each runs exactly its 2 trials"
    assert note in " ".join(coordinator.stderr.split())
    res = ok(cli("walkforward", "worker", spec, *args, "--wait", "0"))
    assert "ran 0 window(s)" in res.stdout and note in " ".join(res.stderr.split())


def test_the_api_says_a_seeded_spec_with_jobs_2_is_not_reproducible(synth_db, monkeypatch):
    """`study run --jobs 2` says that the seed does not make the trials reproducible; `ao.run_study(spec, jobs=2)`
    said nothing (fails before: no such warning). The run itself is replaced (its trials are not the point)."""
    import warnings

    import optimizer.api as ao
    from tests.test_explore21_settings import _SMALL

    seen = []
    monkeypatch.setattr(ao, "_run_study", lambda s, *a, **k: seen.append(k["jobs"]) or _Done())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ao.run_study(_SMALL, synth_db, "sqlite:///:memory:", jobs=2)
        ao.run_study(_SMALL, synth_db, "sqlite:///:memory:")  # jobs=1: reproducible
    notes = [str(w.message) for w in caught if "reproducible" in str(w.message)]
    assert seen == [2, 1] and notes == [
        "jobs=2: 2 trials run at once and finish in an order nobody controls, so [sampler] seed = 5 does not make "
        "the trials reproducible (jobs=1 does)"]


class _Done:
    """What ``api.run_study`` reads of a run."""
    warnings, first_failure, interrupted = (), None, False
