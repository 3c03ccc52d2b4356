"""What the user sees (explore10): progress only for a person watching a terminal, terminal lines that fit 80
columns, figures with named axes, and commands that say which of two same-named things they reported."""

from __future__ import annotations

import fcntl
import json
import re
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from _cli_helpers import drain_pty

ACCUMOPT = [sys.executable, "-m", "optimizer.cli"]


def _run_with_tty_stderr(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run ``accumopt ARGS`` with stderr on a pseudo-terminal of 80 columns and stdout on a file, as a user's
    shell piping stdout somewhere; (exit code, stdout, stderr as the terminal received it)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    out = cwd / "stdout.txt"
    with open(out, "wb") as fo:
        p = subprocess.Popen(ACCUMOPT + args, stdout=fo, stderr=slave, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        os.close(slave)
        got = drain_pty(master)
        rc = p.wait(timeout=300)
    os.close(master)
    return rc, out.read_text(encoding="utf-8"), got.decode("utf-8", "replace")


@pytest.fixture
def store_copy(synth_db, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)
    return db


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "COLUMNS", "ACCUMOPT_DB", "ACCUMOPT_STORAGE")}
    return env | extra


def test_metrics_build_shows_progress_only_to_a_person_at_a_terminal(store_copy, tmp_path):
    """metrics build printed its stage lines on a terminal's stderr with --format json (every other command
    checked the format) and, like every command, under CI=true; only the plain run in a terminal shows them."""
    base = ["metrics", "build", "--db", str(store_copy), "--out", str(tmp_path / "out")]
    rc, out, err = _run_with_tty_stderr(base, _env(), tmp_path)
    assert rc == 0 and "[metrics" in err  # the progress a person watching sees (the oracle that it can show)
    rc, out, err = _run_with_tty_stderr(base + ["--format", "json"], _env(), tmp_path)
    assert rc == 0 and json.loads(out)["rows"] > 0
    assert "[metrics" not in err, err
    rc, out, err = _run_with_tty_stderr(base, _env(CI="true"), tmp_path)
    assert rc == 0 and "daily_metrics" in out
    assert "[metrics" not in err, err


@pytest.mark.parametrize("ci, shown", [(None, True), ("true", False), ("1", False), ("TRUE", False),
                                       ("false", True), ("0", True), ("", True)])
def test_progress_is_for_a_terminal_without_ci_and_for_the_table_format(monkeypatch, ci, shown):
    from optimizer.cli import _common

    class _Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(_common.sys, "stderr", _Tty())
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert _common.progress_enabled("table") is shown
    assert _common.progress_enabled("json") is False


def test_backtest_header_lines_fit_80_columns(synth_db, tmp_path):
    """`backtest` printed 'span ends 2024-...: the last session before the final reserve (it starts ...; --final
    runs through it)' as one 111-character line in an 80-column pipe; every line of the table output fits 80 (the
    sentence is wrapped, not cut: its words are all there)."""
    from _cli_helpers import cli, ok

    res = ok(cli("backtest", "--db", synth_db, "--universe", "tier1", "--no-save", "--out", tmp_path / "out",
                 env={"COLUMNS": "80"}))
    lines = res.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80, [ln for ln in lines if len(ln) > 80]
    text = " ".join(res.stdout.split())
    assert "span ends " in text and "the last session before the final reserve (it starts " in text
    assert "--final runs through it)" in text


def test_report_of_a_name_that_is_a_study_and_a_walkforward_run_says_which_it_reported(synth_db, tmp_path):
    """`accumopt --help`'s flow (study run studies/demo.toml; walkforward studies/demo.toml; report demo) reported
    the STUDY demo without a word: the walk-forward run demo has the same name, and a name that is both is the
    study. The report is still the study's; stderr now says so and gives the command for the run's."""
    from _cli_helpers import cli, ok
    from optimizer.study.run import run_study
    from optimizer.study.spec import parse_spec

    spec = parse_spec(TINY)
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_study(spec, synth_db, url)
    out = tmp_path / "out"
    run = out / "walkforward" / "tiny"
    run.mkdir(parents=True)
    (run / "result.json").write_text("{}", encoding="utf-8")  # a run folder of that name (not read: the study wins)
    res = ok(cli("report", "tiny", "--storage", url, "--out", out, env={"COLUMNS": "80"}))
    page = Path(res.stdout.strip())
    assert page.parent == out / "reports" and "study report: tiny" in page.read_text(encoding="utf-8")
    assert "tiny is also a walk-forward run; this is the study's report" in " ".join(res.stderr.split())
    assert f"accumopt report {run}\n" in res.stderr  # whole on its own line, to copy
    (run / "result.json").unlink()  # not ambiguous: nothing said
    res = ok(cli("report", "tiny", "--storage", url, "--out", out))
    assert res.stderr == ""


from test_mend8_seams import TINY as _SEAM  # noqa: E402  (one tiny spec for the seam tests)

TINY = _SEAM.replace('name = "seam"', 'name = "tiny"')


@pytest.mark.parametrize("timeframe, x_title", [("daily", "date"), ("weekly", "date (weekly bar's last session)")])
def test_chart_names_every_axis_with_its_unit(synth_db, timeframe, x_title):
    """`accumopt chart SPY` drew price and volume on axes with no title at all (the sandbox and pressure plots
    name every axis's unit)."""
    import duckdb

    from optimizer.analytics.plots import price_chart

    con = duckdb.connect(str(synth_db), read_only=True)
    try:
        fig = price_chart(con, "SPY", timeframe)
    finally:
        con.close()
    lay = fig.layout
    assert lay.yaxis.title.text == "price (USD)" and lay.yaxis2.title.text == "volume (shares)"
    assert lay.xaxis2.title.text == x_title  # the shared date axis, drawn under the volume panel
    assert len(fig.data[0].open) > 0 and len(fig.data[1].y) == len(fig.data[0].open)


def test_study_validate_has_json_for_scripts(tmp_path):
    """`study validate` printed each spec's study, parameters, sampler, pruner, objective, purge, embargo and hash
    but had no --format json (every other command that prints a summary has): a script checking a spec's hash had
    to parse the sentence. The JSON is one document with those fields; a bad spec is still exit 2, one line,
    nothing on stdout."""
    from _cli_helpers import cli, ok, one_line_error
    from optimizer.study.spec import load_spec

    root = Path(__file__).resolve().parents[1] / "studies"
    files = [root / "demo.toml", root / "phase_a_coarse.toml"]
    res = ok(cli("study", "validate", *files, "--format", "json"))
    doc = json.loads(res.stdout)
    assert [d["file"] for d in doc] == [str(f) for f in files]
    for d, f in zip(doc, files):
        s = load_spec(f)
        assert d == {"file": str(f), "study": s.run.study_name, "parameters": len(s.space), "sampler": s.sampler.name,
                     "pruner": s.pruner.name, "objective": s.objective.name, "purge": s.purge(),
                     "embargo": s.embargo(), "hash": s.spec_hash}
    table = ok(cli("study", "validate", *files)).stdout  # the table says the same
    assert f"hash {doc[0]['hash']}" in table and f"study '{doc[1]['study']}'" in table
    bad = tmp_path / "bad.toml"
    bad.write_text((root / "demo.toml").read_text(encoding="utf-8").replace("mode = \"expanding\"", "mode = \"sideways\""))
    res = cli("study", "validate", files[0], bad, "--format", "json")
    one_line_error(res, "bad.toml", "sideways")
    assert res.stdout == ""


def test_walkforward_minimum_detectable_effect_is_a_percentage_like_its_verdict_line():
    """The walk-forward's statistics block printed 'mde_per_trade 0.04709' and 'mde_per_year 0.7727' (fractions)
    right above the verdict line's 'no edge >= 4.71%/trade (+77%/yr)': every other return in the terminal is a
    percentage. The block is printed by print_record through cell_text, by name."""
    import io

    from rich.console import Console

    from optimizer.report.terminal import cell_text, print_record

    assert cell_text("mde_per_trade", 0.04709) == "4.7%" and cell_text("mde_per_year", 0.7727) == "77.3%"
    buf = io.StringIO()
    print_record({"n_days": 278, "mde_per_trade": 0.04709, "mde_per_year": 0.7727, "psr": 0.5026},
                 Console(file=buf, width=80), title="statistics (on excess returns)")
    lines = buf.getvalue().splitlines()
    assert "mde_per_trade  4.7%" in lines and "mde_per_year   77.3%" in lines and "psr            0.5026" in lines


def test_signal_sheet_terminal_shows_rates_as_percentages_like_its_html(synth_db, tmp_path):
    """The ENTER table printed data coverage and the quality bucket's out-of-sample hit rate as fractions ('cov
    1.00', 'oos hit 0.56') where the sheet's HTML shows '100%' / '56%' and every other table shows a hit rate as a
    percentage."""
    from _cli_helpers import cli, ok

    p = tmp_path / "p.json"
    p.write_text(json.dumps({"variant": "B", "z_window": 10, "buy_threshold": 55, "exit": "first_dist",
                             "time_stop": 20}))
    args = ("signals", "--params", p, "--db", synth_db, "--universe", "tier1", "--no-save", "--out", tmp_path / "o")
    doc = json.loads(ok(cli(*args, "--format", "json")).stdout)
    enter = [r for r in doc["rows"] if r["decision"] == "ENTER"]
    assert enter, "the planted store has an entry on its last session at buy 55"  # precondition of the oracle
    out = ok(cli(*args, env={"COLUMNS": "80"})).stdout.splitlines()
    head = next(i for i, ln in enumerate(out) if ln.startswith("ENTER at the next open"))
    cols = out[head + 1].split()
    assert "cov" in cols
    for r in enter:
        line = next(ln for ln in out[head + 3:] if ln.split()[:1] == [r["symbol"]])
        want = f"{100 * r['data_coverage']:.0f}%"
        assert want in line.split(), (want, line)


def test_a_multiobjective_studys_objective_columns_show_returns_and_rates_as_percentages():
    """`study show` of a multi-objective study (return_hit_frequency) printed values_avg_return 0.07367 and
    values_hit_rate 0.6997 beside tables where the same metrics read +7.37% and 70.0%: the objective columns are
    named values_<metric> and that prefix was not read as the metric's."""
    from optimizer.report.terminal import cell_text

    assert cell_text("values_avg_return", 0.07367) == "+7.37%"
    assert cell_text("values_hit_rate", 0.6997) == "70.0%"
    assert cell_text("values_signals_per_month", 53.91) == "53.91"  # a count per month stays a number


def test_demo_prints_its_steps_as_sentences_not_python_reprs(monkeypatch, tmp_path):
    """`make demo`, the first thing a new user runs, printed Python reprs: "rows: {'finra_short_daily': 16566,
    ...}", "phase A: {'complete': 72, 'pruned': 0, ...} best 0.0225908483292436" and "params {'variant': 'B',
    ...}". The steps are stubbed here (the demo itself runs in test_demo_readme); what it prints of them is read."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from optimizer import demo

    class _Stop(Exception):
        pass

    monkeypatch.setattr(demo, "synth_new_store", lambda *a, **k: {
        "symbols": 33, "sessions": 502, "rows": {"finra_short_daily": 16566, "prices_daily": 17068}})
    runs = iter([
        SimpleNamespace(counts={"complete": 72, "pruned": 0, "failed": 0, "running": 0, "waiting": 0},
                        best_value=0.0225908483292436, best_params={"variant": "A", "z_window": 20}),
        SimpleNamespace(counts={"complete": 40, "pruned": 20, "failed": 0, "running": 0, "waiting": 0},
                        best_value=0.47647080482404575,
                        best_params={"variant": "B", "w_short": 0.45, "z_window": 90, "exit": "2x_consec_dist"}),
    ])
    monkeypatch.setattr(demo, "run_study", lambda *a, **k: next(runs))

    def _stop(*a, **k):
        raise _Stop

    monkeypatch.setattr(demo, "run_walkforward", _stop)
    buf = io.StringIO()
    with pytest.raises(_Stop):
        demo.run_demo(tmp_path, console=Console(file=buf, width=80))
    text = " ".join(buf.getvalue().split())
    assert "{" not in text and "': " not in text, text
    assert "33 symbols x 502 sessions; rows: finra_short_daily 16,566, prices_daily 17,068" in text
    assert "phase A: complete 72, pruned 0, failed 0; best 0.02259: variant A, z_window 20" in text
    assert ("phase B: complete 40, pruned 20, failed 0; best 0.4765: variant B, w_short 0.45, z_window 90, "
            "exit 2x_consec_dist") in text


def test_study_run_says_what_it_does_before_the_first_trial_at_a_terminal(synth_db, tmp_path):
    """`study run` at a terminal showed nothing at all while numba compiled the engine kernels before the first
    trial: 28.5 s of silence on a first run after an install (measured with an empty NUMBA_CACHE_DIR), then the
    trials' bar. A spinner now says what runs (it loads the compiled kernels in about a second afterwards); a pipe
    and CI still get nothing."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY, encoding="utf-8")
    args = ["study", "run", str(spec), "--db", str(synth_db), "--storage", f"sqlite:///{tmp_path / 's.db'}",
            "--out", str(tmp_path / "out")]
    rc, out, err = _run_with_tty_stderr(args, _env(), tmp_path)
    assert rc == 0 and "study tiny" in out
    assert "preparing the engine kernels (numba compiles them on a first run" in err, err[:500]
    rc, out, err = _run_with_tty_stderr(args + ["--name", "tiny2"], _env(CI="true"), tmp_path)
    assert rc == 0 and "preparing the engine kernels" not in err


def test_an_empty_mapping_or_list_in_a_record_is_shown_as_missing():
    """`study show NAME --trial N` of a pruned trial printed 'metrics {}' and `data synth` 'warnings []': Python /
    JSON literals where every other absent value reads '-'."""
    import io

    from rich.console import Console

    from optimizer.report.terminal import cell_text, print_record

    assert cell_text("metrics", {}) == "-" and cell_text("warnings", []) == "-" and cell_text("x", ()) == "-"
    assert cell_text("warnings", ["stale"]) == '["stale"]'  # a non-empty one is still shown whole
    buf = io.StringIO()
    print_record({"state": "PRUNED", "metrics": {}, "warnings": []}, Console(file=buf, width=80))
    assert buf.getvalue().splitlines() == ["state     PRUNED", "metrics   -", "warnings  -"]


def test_walkforward_report_cost_stress_table_shows_returns_as_percentages():
    """The walk-forward report's cost-stress table printed avg_excess_return 0.0001192 (a fraction) beside a page of
    percentages and the terminal's '+0.01%'; its cells are now the terminal's (cell_text)."""
    from optimizer.report.research import _cost_stress_html

    page = _cost_stress_html({"cost_stress": [
        {"multiplier": 1.0, "avg_excess_return": 0.0012, "trades": 143, "survives": True},
        {"multiplier": 2.0, "avg_excess_return": -0.0003, "trades": 143, "survives": False}]})
    cells = re.findall(r"<td>(.*?)</td>", page)
    assert cells == ["1", "+0.12%", "143", "yes", "2", "-0.03%", "143", "no"], cells
    assert "survives 1× costs but not 2×" in page  # the sentence still reads the booleans
