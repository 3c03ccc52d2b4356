"""Files of one call are staged and validated together (one SQL statement per layout, ``_run_batch``) and written
one transaction per file: a bad file in the middle of a batch must get exactly the result it gets alone, and
change nothing that ingesting the good files alone would not (issue 15.4)."""

from __future__ import annotations

import pytest
from _ingest_helpers import dump_tables, finra_text, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect

GOOD = {
    "20200102": ["20200102|AAPL|10|0|20|Q", "20200102|MSFT|5|1|9|B,Q,N"],
    "20200106": ["20200106|AAPL|11|0|21|Q"],
}
BAD_DAY = "20200103"
BAD = {  # name -> (rows of the bad file, trailer override)
    "non-numeric": (["20200103|AAPL|10|0|20|Q", "20200103|MSFT|x|0|9|Q"], None),
    "field count": (["20200103|AAPL|10|0|20", "20200103|MSFT|5|0|9|Q"], None),
    "name date": (["20200103|AAPL|10|0|20|Q", "20200106|MSFT|5|0|9|Q"], None),
    "trailer": (["20200103|AAPL|10|0|20|Q"], 7),
    "duplicate key": (["20200103|AAPL|10|0|20|Q", "20200103|AAPL|5|0|9|Q", "20200103|MSFT|1|0|2|Q"], None),
    "invariant": (["20200103|AAPL|30|0|20|Q", "20200103|MSFT|1|0|2|Q"], None),
    "bad symbol": (["20200103|A$PL|10|0|20|Q", "20200103|MSFT|1|0|2|Q"], None),
}


def _files(folder, bad_rows, trailer):
    folder.mkdir()
    good = [write(folder / f"CNMSshvol{d}.txt", finra_text(rows)) for d, rows in GOOD.items()]
    bad = write(folder / f"CNMSshvol{BAD_DAY}.txt", finra_text(bad_rows, trailer=trailer))
    return good, bad


def _result(rep, folder):
    return [(f.file.replace(str(folder), "<d>"), f.status, f.rows_accepted, f.rows_rejected,
             None if f.message is None else f.message.replace(str(folder), "<d>")) for f in rep.files]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_in_a_batch_gets_its_single_file_result(tmp_path, case, strict):
    rows, trailer = BAD[case]
    # alone
    alone = connect(":memory:")
    _, bad1 = _files(tmp_path / "a", rows, trailer)
    single = _result(ingest_paths(alone, "finra-short", [bad1], strict=strict), tmp_path / "a")
    alone_rows = dump_tables(alone, exclude=("ingest_log", "ingest_rejects"))
    # in the middle of a batch (files are ordered by date: good, bad, good)
    both = connect(":memory:")
    good, bad2 = _files(tmp_path / "b", rows, trailer)
    rep = ingest_paths(both, "finra-short", [tmp_path / "b"], strict=strict)
    got = _result(rep, tmp_path / "b")
    assert [g[0] for g in got] == ["<d>/CNMSshvol20200102.txt", "<d>/CNMSshvol20200103.txt", "<d>/CNMSshvol20200106.txt"]
    assert got[1] == single[0]
    assert [g[1] for g in (got[0], got[2])] == ["ok", "ok"]
    # the data tables hold the good files' rows plus exactly what the bad file writes alone
    ref = connect(":memory:")
    ingest_paths(ref, "finra-short", good)
    expect = ref.execute("SELECT * EXCLUDE (source_file) FROM finra_short_daily").fetchall()
    expect += [r[:-1] for r in alone_rows["finra_short_daily"]]
    assert sorted(both.execute("SELECT * EXCLUDE (source_file) FROM finra_short_daily").fetchall()) == sorted(expect)
    # ingest_log: one row per file, in file order, with the same status / message as the report
    log = both.execute("SELECT file, status, message FROM ingest_log ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in log] == [(f.file, f.status) for f in rep.files]
    if single[0][1] == "failed":
        assert log[1][2] == rep.files[1].message
        assert both.execute(f"SELECT count(*) FROM finra_short_daily WHERE date = DATE '2020-01-03'").fetchone() == (0,)
    # rejects: the bad file's, with its own lines and reasons
    rej = [r[2:4] for r in both.execute("SELECT * FROM ingest_rejects ORDER BY line").fetchall()]
    assert rej == [r[2:4] for r in alone.execute("SELECT * FROM ingest_rejects ORDER BY line").fetchall()]
    if case in ("duplicate key", "invariant", "bad symbol") and not strict:
        assert single[0][1] == "rejected_rows" and rej
    else:
        assert single[0][1] == "failed" and not rej


def test_the_progress_bars_draw_on_stderr_never_on_stdout(tmp_path, capsys):
    # The bars are on when stderr is a terminal; they drew on rich's default console, stdout, so
    # `accumopt ingest ... > report.txt` (or `study run` / `walkforward`) left the bar's last frame in the report
    from optimizer.study.run import _Progress

    f = write(tmp_path / "CNMSshvol20200102.txt", finra_text(GOOD["20200102"]))
    con = connect(tmp_path / "db.duckdb")
    try:
        rep = ingest_paths(con, "finra-short", [f], progress=True)
    finally:
        con.close()
    bar = _Progress(total=3, already=1, enabled=True)
    bar.close()
    out, err = capsys.readouterr()
    assert rep.files[0].rows_accepted == 2
    assert "ingest finra-short" in err and "trials" in err and out == ""


def test_an_empty_directory_is_refused_like_a_glob_without_match(tmp_path):
    """`accumopt ingest prices DIR/` on a folder without a file (or only hidden ones) was '0 file(s)', exit 0: a
    wrong folder passed for a successful ingest. It is one line naming the folder, exit 2."""
    from _cli_helpers import cli, one_line_error

    empty = tmp_path / "tonight"
    (empty / "sub").mkdir(parents=True)
    (empty / ".hidden.csv").write_text("date,symbol\n")
    db = tmp_path / "s.duckdb"
    one_line_error(cli("ingest", "prices", str(empty), "--db", str(db)),
                   f"paths must hold at least one file, got the empty directory '{empty}'")
    from optimizer.evening import classify_files
    from optimizer.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^ingest folder .*tonight holds no file$"):  # evening --ingest DIR
        classify_files(empty)
