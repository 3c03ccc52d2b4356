"""Small leftovers of the audits of this stop (mend17): the walk-forward's one book shown, the notes a worker and
the Python API gave no word of, integral floats, replay's field name, the universe's spelling."""

from __future__ import annotations

import html
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
    want = (f"{b['windows_blocked']} window(s) re-run with the book's positions: {b['symbols_blocked']} held "
            f"symbol(s) blocked (counted per window), {b['refused']} of those windows' own entries refused, "
            f"{b['added']} {'entry' if b['added'] == 1 else 'entries'} made instead")  # wording: mend21
    lines = res.stdout.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("one book "))
    j = next(j for j in range(i + 1, len(lines)) if not lines[j].startswith("    "))  # its wrapped lines, if any
    assert " ".join(" ".join(lines[i:j]).split()) == f"one book {want}"
    assert max(map(len, lines[i:j])) <= 80
    page = Path(ok(cli("report", d, "--out", tmp_path / "out")).stdout.strip().splitlines()[-1]).read_text("utf-8")
    text = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))  # the page writes ' as &#x27;
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


# ------------------------------------------------------------------ 3. one rule for an integer written 20.0
_INT_SPEC = """
[data]
universe = "tier1"
[space]
exit = "first_dist"
time_stop = {time_stop}
[cv]
n_splits = {n_splits}
[sampler]
name = "tpe"
seed = {seed}
n_startup_trials = {start}
[run]
n_trials = {n_trials}
[walkforward]
train = {train}
"""
_INTS = {"time_stop": "20", "n_splits": "3", "seed": "5", "start": "2", "n_trials": "4", "train": "6"}


def _int_spec(**kw: str):
    from optimizer.study.spec import parse_spec

    return parse_spec(_INT_SPEC.format(**(_INTS | kw)), "s.toml")


def _read(s) -> dict:
    """The integers the spec read, as the run takes them."""
    return {"time_stop": s.param("time_stop").value, "n_splits": s.cv.n_splits, "seed": s.sampler.seed,
            "start": s.sampler.options["n_startup_trials"], "n_trials": s.run.n_trials, "train": s.walkforward.train}


@pytest.mark.parametrize("key,path", [("time_stop", "space.time_stop"), ("n_splits", "cv.n_splits"),
                                      ("seed", "sampler.seed"), ("start", "sampler.n_startup_trials"),
                                      ("n_trials", "run.n_trials"), ("train", "walkforward.train")])
def test_an_integer_written_as_a_whole_float_is_that_integer_everywhere_and_a_fraction_is_refused(key, path):
    """`[space] time_stop = 20.0` was accepted while `[run] n_trials = 4.0` (and [cv], [sampler], [walkforward]
    integers) were refused: one rule now, a float with no fraction is the integer (fails before for n_trials,
    n_splits, seed, n_startup_trials, train: 'must be an integer, got float'); 20.5 is refused naming its key."""
    from optimizer.errors import SpecError

    want = _read(_int_spec())
    got = _read(_int_spec(**{key: _INTS[key] + ".0"}))
    assert got == want and all(type(v) is int for v in got.values())
    with pytest.raises(SpecError) as e:
        _int_spec(**{key: _INTS[key] + ".5"})
    assert f"[{path}]" in str(e.value) and "integer" in str(e.value) and f"{_INTS[key]}.5" in str(e.value)


def test_integer_choices_and_ranges_take_the_same_rule_and_a_spec_that_loaded_keeps_its_hash():
    """`choices = [15, 20.0]` was accepted and drew 20.0 (a float) for an integer parameter, `low = 10.0` of an int
    range was refused (fails before: choices (15, 20.0); 'must be an integer, got float 10.0'). The spec hash is
    of the text: the spec that loaded before has the hash it had (measured on the code before this change)."""
    from optimizer.errors import SpecError

    s = _int_spec(time_stop="{ type = 'categorical', choices = [15, 20.0] }")
    assert s.param("time_stop").choices == (15, 20) and all(type(c) is int for c in s.param("time_stop").choices)
    # the hash it had (of the text as written) still matches it; its own hash reads 20.0 as 20 (mend18)
    assert s.matches_stored("719e6319130fb126") and s.spec_hash == _int_spec(time_stop="{ type = 'categorical', "
                                                                             "choices = [15, 20] }").spec_hash
    r = _int_spec(time_stop="{ type = 'int', low = 10.0, high = 20 }").param("time_stop")
    assert (r.low, r.high) == (10, 20) and type(r.low) is int
    with pytest.raises(SpecError, match=r"\[space.time_stop.choices\] must not repeat a value: 20 and 20.0 are"):
        _int_spec(time_stop="{ type = 'categorical', choices = [20, 20.0] }")
    with pytest.raises(SpecError, match=r"\[space.time_stop.low\] must be an integer, got float 10.5"):
        _int_spec(time_stop="{ type = 'int', low = 10.5, high = 20 }")


# ------------------------------------------------------------------ 4. one name for the comparison rows' field
def test_replay_and_backtest_name_the_compared_field_metric(synth_db, tmp_path):
    """`study replay --format json` named the compared field `key`, `backtest --params --format json` `metric`;
    `metric` is the one name (fails before: replay's rows held `key`)."""
    from tests.test_explore21_settings import _SMALL

    spec = tmp_path / "small.toml"
    spec.write_text(_SMALL, encoding="utf-8")
    common = ("--db", synth_db, "--storage", f"sqlite:///{tmp_path / 'st.db'}")
    ok(cli("study", "run", spec, *common, "--format", "json"))
    rep = json.loads(ok(cli("study", "replay", "small", "0", *common, "--format", "json")).stdout)
    best = tmp_path / "best.json"
    best.write_text(ok(cli("study", "best", "small", "--storage", common[3], "--format", "json")).stdout, "utf-8")
    bt = json.loads(ok(cli("backtest", "--params", best, "--db", synth_db, "--out", tmp_path / "out", "--no-save",
                           "--format", "json")).stdout)
    for rows in (rep["comparison"], bt["comparison"]):
        assert rows and all("metric" in r and "key" not in r for r in rows)
    assert [r["metric"] for r in rep["comparison"]][:1] == ["value"] and rep["reproduced"] is True
    assert {r["metric"] for r in rep["comparison"]} >= {"closed_trades", "fold0.closed_trades"}
    # mend20: the recomputed value has one name too (backtest's rows said `backtest`, replay's `replayed`)
    from optimizer.study.records import COMPARISON_COLUMNS

    assert COMPARISON_COLUMNS == ("metric", "stored", "recomputed", "equal")
    for rows in (rep["comparison"], bt["comparison"]):
        assert rows and all(tuple(r) == COMPARISON_COLUMNS for r in rows)
        assert all(r["equal"] and r["recomputed"] == r["stored"] for r in rows)  # both reproduce the trial exactly
    table = ok(cli("study", "replay", "small", "0", *common)).stdout
    assert "recomputed" in table and "replayed" not in table


# ------------------------------------------------------------------ 5. the universe as resolved, never as typed
def test_signals_and_sandbox_record_the_universe_in_one_spelling(synth_db, tmp_path):
    """`signals --universe ' TIER1 '` and `sandbox --universe ' TIER1 '` echoed the string as typed (the sheet's
    `universe`, the chart's settings and file name), as backtest did before mend16 (fails before: ' TIER1 ' in the
    sheet's JSON; the chart named ..._u- TIER1 .html)."""
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"variant": "B", "z_window": 10, "buy_threshold": 55, "exit": "first_dist",
                             "time_stop": 20, "max_positions": 3}), encoding="utf-8")
    sheet = {}
    for uni in (" TIER1 ", "tier1"):
        doc = json.loads(ok(cli("signals", "--params", p, "--db", synth_db, "--universe", uni, "--no-save",
                                "--out", tmp_path / "o", "--format", "json")).stdout)
        sheet[uni] = (doc["sheet"]["universe"], doc["sheet"]["params_hash"])
    assert sheet[" TIER1 "] == sheet["tier1"] and sheet["tier1"][0] == "tier1"
    pages = []
    for uni in (" TIER1 ", "tier1"):
        res = ok(cli("sandbox", "SPY", "--params", p, "--universe", uni, "--db", synth_db, "--out", tmp_path / "out",
                     "--no-png"))
        path = Path(res.stdout.strip().splitlines()[-1])
        pages.append((path.name, path.read_text(encoding="utf-8")))
    assert pages[0][0] == pages[1][0] and pages[0][0].endswith("-u-tier1.html")  # one run, one file
    assert "TIER1" not in pages[0][1] and "universe tier1, " in pages[0][1]  # the chart's settings line
