"""mend19: nothing a user already has is lost (run folders written all or nothing, PNGs written whole), and what
optuna-dashboard shows of a trial's folds is whole."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from _cli_helpers import cli

from optimizer import paths
from optimizer.errors import machine_error
from optimizer.validate.verdict import verdict
from optimizer.validate.walkforward import load_walkforward, save_walkforward


class _Run:
    """What ``save_walkforward`` reads of a WalkForwardResult: its tables and ``to_dict`` (a run tagged ``tag``)."""

    def __init__(self, tag: str, n_events: int = 2):
        self.tag = tag
        col = lambda n: pd.DataFrame({"tag": [tag] * n, "x": range(n)})  # noqa: E731
        self.summary, self.trades, self.equity, self.stability = col(3), col(4), col(5), col(1)
        self.events = col(n_events)
        # the columns `accumopt report` draws
        self.equity = self.equity.assign(date=pd.date_range("2024-01-02", periods=5), oos_equity=1.0)
        self.summary = self.summary.assign(window=range(3))
        self.stability = pd.DataFrame({"tag": [tag], "param": ["exit"], "value": ["x"], "windows": [3], "share": [1.0]})
        self.by_symbol, self.by_sector, self.by_regime, self.rules = col(1), col(1), col(1), col(1)

    def to_dict(self):  # with a verdict: `accumopt report` refuses a result.json without one
        return {"spec": self.tag, "final": False, **verdict(0.001, 2.5, 0.97, 0.2, 40).to_dict()}


class _FullDisk(pd.DataFrame):
    def to_parquet(self, path, *a, **k):  # the disk fills while this file is written: part of it, then ENOSPC
        Path(path).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _tags(d: Path) -> dict[str, set]:
    got = load_walkforward(d)
    return {"spec": got["result"]["spec"], **{t: set(got[t]["tag"]) for t in ("summary", "trades", "equity", "events")}}


def _whole(tag: str) -> dict:
    return {"spec": tag, **{t: {tag} for t in ("summary", "trades", "equity", "events")}}


# ------------------------------------------------------------------------------------------- 1. walk-forward save


def test_a_walkforward_save_on_a_full_disk_keeps_the_previous_run_and_names_the_file(tmp_path):
    # before: result.json was unlinked first and each file replaced in place; a full disk at oos_equity.parquet left
    # no result.json (run A gone: `accumopt report` said "no walk-forward run") beside B's summary and trades
    out = tmp_path / "out"
    d = out / "walkforward" / "demo"
    save_walkforward(_Run("A"), d)
    (d / "regime_comparison.csv").write_text("regime,x\nbull,1\n")  # bench/regime_compare.py's file
    b = _Run("B")
    b.equity = _FullDisk(b.equity)
    with pytest.raises(OSError) as info:
        save_walkforward(b, d)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(d / "oos_equity.parquet")
    assert str(machine_error(info.value)) == f"{d / 'oos_equity.parquet'}: no space left on the device"
    assert _tags(d) == _whole("A")
    assert (d / "regime_comparison.csv").read_text() == "regime,x\nbull,1\n"
    assert sorted(p.name for p in d.parent.iterdir()) == ["demo"]  # no temporary folder left
    r = cli("report", d, "--out", out)
    assert r.exit_code == 0, r.output
    assert (out / "reports" / "demo-walkforward.html").exists()


def test_a_walkforward_resave_keeps_the_files_other_commands_put_in_its_folder(tmp_path):
    d = tmp_path / "wf"
    save_walkforward(_Run("A"), d)
    (d / "regime_comparison.csv").write_text("regime,x\nbull,1\n")
    (d / "notes").mkdir()
    (d / "notes" / "mine.txt").write_text("keep")
    save_walkforward(_Run("B", n_events=0), d)
    got = load_walkforward(d)
    assert got["result"]["spec"] == "B" and got["events"].empty  # A's events are not carried as B's
    assert not (d / "oos_events.parquet").exists()
    assert got["regime_comparison"]["regime"].tolist() == ["bull"]
    assert (d / "notes" / "mine.txt").read_text() == "keep"


def _kill_at_second_rename(d: Path, run: _Run) -> None:
    """Save ``run`` into ``d`` in a forked child killed (os._exit, no cleanup runs) between the swap's two renames:
    the old folder renamed aside, the new one not yet renamed in."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            real = os.rename

            def rename(src, dst):
                if ".new-" in str(src):
                    os._exit(9)
                real(src, dst)

            paths.os.rename = rename
            save_walkforward(run, d)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_walkforward_save_killed_between_its_two_renames_is_recovered(tmp_path):
    root = tmp_path / "out" / "walkforward"
    d = root / "demo"
    save_walkforward(_Run("A"), d)
    _kill_at_second_rename(d, _Run("B"))
    assert not d.exists()  # the state a kill leaves: A aside, B whole beside it
    assert sorted(p.name.split("-")[0] for p in root.iterdir()) == [".demo.new", ".demo.old"]
    assert _tags(d) == _whole("B")  # the reader renames the whole new run in
    save_walkforward(_Run("C"), d)  # the next save removes what was left aside
    assert _tags(d) == _whole("C") and sorted(p.name for p in root.iterdir()) == ["demo"]
    # the report by the run's name finds it too (it looks for result.json before it loads)
    _kill_at_second_rename(d, _Run("D"))
    r = cli("report", "demo", "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert _tags(d) == _whole("D")


def test_leftovers_of_a_save_killed_while_writing_are_removed_by_the_next_save(tmp_path):
    d = tmp_path / "wf"
    save_walkforward(_Run("A"), d)
    (tmp_path / ".wf.part-0123456789ab").mkdir()  # a save killed while it wrote its files
    (tmp_path / ".wf.part-0123456789ab" / "result.json").write_text("{}")
    assert _tags(d) == _whole("A")
    save_walkforward(_Run("B"), d)
    assert _tags(d) == _whole("B") and sorted(p.name for p in tmp_path.iterdir()) == ["wf"]


# ------------------------------------------------------------------------------------ 2. the other run folders


class _FullDiskPage:
    def render(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _Page:
    def __init__(self, tag):
        self.tag = tag

    def render(self):
        return f"<html>{self.tag}</html>"


def test_a_signal_sheet_rewritten_on_a_full_disk_keeps_the_previous_sheet_whole(tmp_path, monkeypatch):
    # before: sheet.csv and sheet.json were replaced, then the disk filled at sheet.html: the folder held the new
    # rows in sheet.csv / sheet.json beside the previous sheet.html (two different sheets of one session)
    from optimizer.report import sheet as sh

    d = tmp_path / "signals" / "2024-03-01_abc"
    rows = lambda tag: pd.DataFrame({"symbol": [tag], "decision": ["ENTER"]})  # noqa: E731
    monkeypatch.setattr(sh, "_page", lambda rows, *a: _Page(rows["symbol"].iloc[0]))
    sh.write_sheet_files(rows("OLD"), {"date": "2024-03-01"}, [], d)
    (d / "notes.txt").write_text("mine")
    monkeypatch.setattr(sh, "_page", lambda *a: _FullDiskPage())
    with pytest.raises(OSError) as info:
        sh.write_sheet_files(rows("NEW"), {"date": "2024-03-01"}, [], d)
    assert info.value.errno == errno.ENOSPC
    assert pd.read_csv(d / "sheet.csv")["symbol"].tolist() == ["OLD"]
    assert '"OLD"' in (d / "sheet.json").read_text() and (d / "sheet.html").read_text() == "<html>OLD</html>"
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt", "sheet.csv", "sheet.html", "sheet.json"]
    assert sorted(p.name for p in d.parent.iterdir()) == [d.name]
    monkeypatch.setattr(sh, "_page", lambda rows, *a: _Page(rows["symbol"].iloc[0]))
    sh.write_sheet_files(rows("NEW"), {"date": "2024-03-01"}, [], d)
    assert (d / "sheet.html").read_text() == "<html>NEW</html>" and (d / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------------------ 3. PNGs


def _fig(title):
    import plotly.graph_objects as go

    return go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout={"title": title})


def test_pngs_are_written_whole_and_a_failed_export_keeps_the_previous_ones(tmp_path, monkeypatch):
    # before: kaleido (plotly.io.write_images) wrote each PNG in place: an export that failed at the second image
    # (a full disk, Ctrl-C) left the first one half-written and the second one cut
    from optimizer.report import files

    calls = []

    def fake_write_images(figs, paths, format=None, **k):  # kaleido's call: every image of the batch, then returns
        calls.append(([Path(p) for p in paths], format))
        for f, p in zip(figs, paths):
            Path(p).write_bytes(b"\x89PNG " + f.layout.title.text.encode())

    monkeypatch.setattr(files, "png_available", lambda: True)
    monkeypatch.setattr(files.pio, "write_images", fake_write_images)
    items = [(_fig("one"), tmp_path / "a.html"), (_fig("two"), tmp_path / "b.html")]
    written = files.write_figures(items, png=True)
    assert written[2:] == [tmp_path / "a.png", tmp_path / "b.png"]
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG one" and (tmp_path / "b.png").read_bytes() == b"\x89PNG two"
    (tmps, fmt), = calls
    assert fmt == "png" and all(t.parent == tmp_path and t.suffix == ".png" for t in tmps)
    assert not {t.name for t in tmps} & {"a.png", "b.png"}  # kaleido wrote beside them, not into them

    def failing(figs, paths, format=None, **k):  # the disk fills during the second image
        Path(paths[0]).write_bytes(b"\x89PNG new")
        Path(paths[1]).write_bytes(b"\x89P")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(paths[1]))

    monkeypatch.setattr(files.pio, "write_images", failing)
    with pytest.raises(files.DataError, match="PNG export failed"):
        files.write_figures([(_fig("three"), tmp_path / "a.html"), (_fig("four"), tmp_path / "b.html")], png=True)
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG one" and (tmp_path / "b.png").read_bytes() == b"\x89PNG two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "a.png", "b.html", "b.png"]


# ------------------------------------------------------------------------------- 4. what the dashboard shows


# one fold of a demo study's trial as stored (18 metrics, 606 characters of JSON; 4 folds: ~2,450)
_FOLD = {"total_signals": 267.0, "total_trades": 96.0, "closed_trades": 96.0, "open_at_end": 0.0, "hit_rate": 0.46875,
         "avg_return": 0.0314088517302807, "median_return": -0.0042510705169936935, "win_loss": 1.9027677325927204,
         "sharpe": 0.172303132138667, "portfolio_sharpe": 1.5617047113776754, "max_drawdown": 0.08869106518420744,
         "avg_hold_days": 16.354166666666668, "signals_per_month": 72.81818181818183,
         "false_positive_rate": 0.7395833333333334, "rank_score": 0.0032829117070372325,
         "avg_excess_return": 0.022678360061059943, "avg_benchmark_return": 0.008730491669220769,
         "excess_sharpe": 0.1337303518553671}


def test_each_fold_is_shown_whole_by_the_dashboard_and_the_exact_folds_stay_what_the_tool_reads():
    # before: the trial's only fold attribute, `folds`, held ~2,450 characters for 4 folds: optuna-dashboard shows an
    # attribute's first 1,024, i.e. the first fold and part of the second
    import json
    import math

    import optuna

    from optimizer.study import records

    folds = [{**_FOLD, "hit_rate": _FOLD["hit_rate"] + i / 7, "sharpe": -_FOLD["sharpe"] * (i + 1) / 3,
              "excess_sharpe": float("nan") if i == 3 else _FOLD["excess_sharpe"]} for i in range(4)]
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    records.TrialRecord.complete({"hit_rate": 0.5}, folds, 1.25).write(trial)
    study.tell(trial, 1.0)
    t = study.trials[0]
    assert len(json.dumps(t.user_attrs["folds"])) > 2 * 1024  # the exact attribute: cut by the dashboard
    for i, exact in enumerate(folds):
        shown = t.user_attrs[f"fold_{i}"]
        assert len(json.dumps(shown)) <= 1024  # whole on the dashboard
        assert list(shown) == list(exact)
        for k, v in exact.items():  # 6 significant digits of the exact value, by hand
            if math.isnan(v):
                assert math.isnan(shown[k])
            else:
                assert shown[k] == float(f"{v:.6g}") and abs(shown[k] - v) <= 5e-6 * abs(v), k
    assert "fold_4" not in t.user_attrs
    assert t.user_attrs["fold_0"]["avg_return"] == 0.0314089 and t.user_attrs["fold_1"]["hit_rate"] == 0.611607
    # the tool's readers read the exact values, as before; an older trial (no fold_<i>) reads the same
    rec = records.read_trial(t)
    assert json.dumps(list(rec.folds)) == json.dumps(folds)
    old = optuna.trial.create_trial(value=1.0, user_attrs={k: v for k, v in t.user_attrs.items()
                                                           if not k.startswith("fold_")})
    assert records.read_trial(old) == rec


# ---------------------------------------------------------------------------------- 5. few open files (loky)


def test_a_regime_fit_under_a_low_open_file_limit_prints_nothing_and_fits_the_same(monkeypatch, capfd):
    # before: the mixture's k-means init asked loky (joblib) for the physical cores; under `ulimit -n 16` its
    # `lscpu` could not start (no file descriptor for its pipes: EMFILE) and loky printed a warning and a traceback
    # to stderr, exit 0. Reproduced in process: the counts' caches emptied and loky's subprocess failing as there.
    import numpy as np
    import sklearn.utils._openmp_helpers as omp
    from joblib.externals.loky.backend import context

    from optimizer.engine import _regime

    x = np.random.default_rng(0).normal(size=(300, 4))
    cols = ["mom20", "rv20", "a", "b"]
    gm0, _, _, labels0 = _regime._fit(x, cols, 4, 0)  # the fit where lscpu runs (or its count is cached)

    class _NoFds:
        @staticmethod
        def run(*a, **k):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(context, "subprocess", _NoFds)
    monkeypatch.setattr(context, "physical_cores_cache", None)
    monkeypatch.setattr(omp, "_CPU_COUNTS", {})
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if hasattr(_regime, "_physical_cores_quietly"):  # this process may have asked already
        _regime._physical_cores_quietly.cache_clear()
    capfd.readouterr()
    gm, _, _, labels = _regime._fit(x, cols, 4, 0)
    out = capfd.readouterr()
    assert out.err == "" and out.out == ""
    assert context.physical_cores_cache == "not found"  # the path was taken: the fallback (logical cores) cached
    assert gm.means_.tobytes() == gm0.means_.tobytes() and labels.tolist() == labels0.tolist()  # the same fit


def test_a_run_folder_named_by_an_existing_file_is_refused_and_the_file_kept(tmp_path):
    f = tmp_path / "wf"
    f.write_text("the user's file")
    with pytest.raises(OSError) as info:
        save_walkforward(_Run("A"), f)
    assert str(machine_error(info.value)) == f"{f}: a part of the path is a file, not a folder"
    assert f.read_text() == "the user's file" and sorted(p.name for p in tmp_path.iterdir()) == ["wf"]
