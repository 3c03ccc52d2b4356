"""``accumopt data info`` shows each symbol's own gaps, not only the source's.

Found by an audit: a source covers a session when ANY symbol has a row for it, so a symbol missing 30 sessions
inside its own first..last date was invisible (the source line read 100%). ``coverage.symbol_gaps`` counts, per
source, the symbols lacking sessions the source holds for others and lists the worst; ``data info`` prints it
under each source and ``--format json`` holds it as ``coverage[i].symbol_gaps``.

Oracles: a hand-planted store (the January 2024 NYSE calendar written out), and a naive per-symbol reference
(``coverage.gaps_of`` over each symbol's own span of the source's sessions) on random holes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.data.calendar import session_days
from optimizer.data.coverage import gaps_of, symbol_gaps
from optimizer.data.store import connect, insert_finra_short

# The NYSE sessions of January 2024: the 2nd to the 31st without weekends and Martin Luther King Day (the 15th).
JAN = [f"2024-01-{d:02d}" for d in (2, 3, 4, 5, 8, 9, 10, 11, 12, 16, 17, 18, 19, 22, 23, 24, 25, 26, 29, 30, 31)]
PLANTED = {
    "AAA": JAN,                                                       # every session
    "BBB": [d for d in JAN if not "2024-01-08" <= d <= "2024-01-19"],  # 9 sessions missing, one run
    "CCC": [d for d in JAN if d not in ("2024-01-05", "2024-01-24", "2024-01-25")],  # runs of 1 and 2
    "DDD": [d for d in JAN if d >= "2024-01-16"],                     # listed on the 16th: no gap
    "EEE": [d for d in JAN if d not in ("2024-01-10", "2024-01-22")],  # two runs of 1: the earlier is the largest
}


def _prices_store(path, planted=PLANTED):
    con = connect(str(path))
    rows = [(d, s, 1.0, 1.0, 1.0, 1.0, 1.0, "t") for s, ds in planted.items() for d in ds]
    con.executemany("INSERT INTO prices_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return con


def test_the_calendar_written_out_is_nyses():
    assert [str(d) for d in session_days("2024-01-01", "2024-01-31")] == JAN


def test_data_info_shows_the_symbols_own_gaps_the_source_coverage_cannot(tmp_path):
    db = tmp_path / "p.duckdb"
    _prices_store(db).close()
    r = CliRunner().invoke(main, ["data", "info", "--db", str(db), "--format", "json"])
    assert r.exit_code == 0, r.output
    cov = {c["source"]: c for c in json.loads(r.output)["coverage"]}
    assert (cov["prices"]["sessions"], cov["prices"]["expected"], cov["prices"]["gaps"]) == (21, 21, [])  # AAA
    g = cov["prices"]["symbol_gaps"]
    assert (g["unit"], g["symbols"], g["with_gaps"], g["missing"]) == ("sessions", 5, 3, 9 + 3 + 2)
    assert g["worst"] == [
        {"symbol": "BBB", "missing": 9, "expected": 21,
         "largest": {"first": "2024-01-08", "last": "2024-01-19", "sessions": 9}},
        {"symbol": "CCC", "missing": 3, "expected": 21,
         "largest": {"first": "2024-01-24", "last": "2024-01-25", "sessions": 2}},
        {"symbol": "EEE", "missing": 2, "expected": 21,
         "largest": {"first": "2024-01-10", "last": "2024-01-10", "sessions": 1}},
    ]
    assert cov["finra_short"]["symbol_gaps"] == {"unit": "sessions", "symbols": 0, "with_gaps": 0, "missing": 0,
                                                 "worst": []}
    out = CliRunner().invoke(main, ["data", "info", "--db", str(db)]).output
    assert "               3 of 5 symbols lack 14 sessions in all; worst:\n" in out
    assert "                 BBB    9 of 21, largest 2024-01-08..2024-01-19 (9)\n" in out
    assert "                 EEE    2 of 21, largest 2024-01-10..2024-01-10 (1)\n" in out
    assert max(len(line) for line in out.split("coverage of the NYSE")[1].splitlines()) <= 80  # not the store path


def test_no_gap_says_so_and_top_limits_the_list(tmp_path):
    con = _prices_store(tmp_path / "p.duckdb")
    try:
        assert [w["symbol"] for w in symbol_gaps(con, "prices", top=2)["worst"]] == ["BBB", "CCC"]
        con.execute("DELETE FROM prices_daily WHERE symbol IN ('BBB', 'CCC', 'EEE')")
        assert symbol_gaps(con, "prices") == {"unit": "sessions", "symbols": 2, "with_gaps": 0, "missing": 0,
                                              "worst": []}
    finally:
        con.close()
    out = CliRunner().invoke(main, ["data", "info", "--db", str(tmp_path / "p.duckdb")]).output
    assert "none of 2 symbols lacks a session inside its own span" in out


def _reference(days: np.ndarray, by_symbol: dict[str, np.ndarray]) -> dict[str, tuple[int, int, tuple]]:
    """Per symbol: missing, expected and the largest run (first, last, length; earliest of equal runs)."""
    out = {}
    for s, have in by_symbol.items():
        span = days[(days >= have.min()) & (days <= have.max())]
        gaps = gaps_of(span, have)
        big = max(gaps, key=lambda g: (g.sessions, -g.first.toordinal())) if gaps else None
        out[s] = (sum(g.sessions for g in gaps), span.size,
                  None if big is None else (str(big.first), str(big.last), big.sessions))
    return out


def test_random_holes_several_facilities_and_an_off_calendar_row_match_a_naive_reference(tmp_path):
    rng = np.random.default_rng(3)
    days = session_days("2023-01-03", "2023-06-30")
    con = connect(str(tmp_path / "f.duckdb"))
    try:
        rows, have = [], {}
        for k in range(40):
            s = f"S{k:02d}"
            keep = rng.random(days.size) > (0.0 if k < 10 else 0.05 * (k % 4))
            keep[: rng.integers(0, 30)] = False  # listed late: no gap
            have[s] = days[keep]
            for d in days[keep]:
                for fac in ("CNMS", "FNSQ")[: 1 + int(rng.random() < 0.5)]:  # one or two facility rows a session
                    rows.append((str(d), s, fac, 1, 2, "f"))
        rows.append(("2023-03-04", "S15", "CNMS", 1, 2, "f"))  # a Saturday: not a session, not counted
        frame = pd.DataFrame(rows, columns=["date", "symbol", "facility", "short_volume", "total_volume", "source_file"])
        con.register("frame", frame)
        insert_finra_short(con, "SELECT CAST(date AS DATE), symbol, facility, short_volume, total_volume, source_file "
                           "FROM frame", columns=["date", "symbol", "facility", "short_volume", "total_volume", "source_file"])
        ref = _reference(days, have)
        got = symbol_gaps(con, "finra_short", top=100)
    finally:
        con.close()
    gapped = {s: v for s, v in ref.items() if v[0]}
    assert 10 < len(gapped) < 40
    assert (got["symbols"], got["with_gaps"], got["missing"]) == (40, len(gapped), sum(v[0] for v in ref.values()))
    order = sorted(gapped, key=lambda s: (-gapped[s][0], s))
    assert [w["symbol"] for w in got["worst"]] == order
    for w in got["worst"]:
        m, e, big = gapped[w["symbol"]]
        assert (w["missing"], w["expected"], tuple(w["largest"].values())) == (m, e, big), w["symbol"]


def test_otc_counts_weeks(tmp_path):
    con = connect(str(tmp_path / "o.duckdb"))
    try:
        weeks = [str(d.date()) for d in pd.date_range("2024-01-01", periods=8, freq="W-MON")]
        rows = [(w, s, w, "f") for s in ("AAA", "BBB") for w in weeks if not (s == "BBB" and w in weeks[2:4])]
        con.executemany("INSERT INTO finra_otc_weekly (week_start_date, symbol, publication_date, source_file) "
                        "VALUES (?, ?, ?, ?)", rows)
        g = symbol_gaps(con, "otc")
    finally:
        con.close()
    assert (g["unit"], g["symbols"], g["with_gaps"], g["missing"]) == ("weeks", 2, 1, 2)
    assert g["worst"] == [{"symbol": "BBB", "missing": 2, "expected": 8,
                           "largest": {"first": weeks[2], "last": weeks[3], "sessions": 2}}]


def test_an_unknown_source_is_refused_by_name(tmp_path):
    from optimizer.errors import ParameterError
    con = connect(str(tmp_path / "x.duckdb"))
    try:
        with pytest.raises(ParameterError, match="source"):
            symbol_gaps(con, "nope")
    finally:
        con.close()


@pytest.mark.realdata
def test_the_real_2020_finra_files_match_the_reference(tmp_path):
    """The six real FINRA days of 2020 (every facility file; ../shared/data/real): thin symbols trade on some days
    only, so some lack sessions the file family holds for others; per symbol as the naive reference counts them."""
    from _ingest_helpers import REAL, need

    from optimizer.data.ingest import ingest_paths
    src = need(REAL / "finra_short_daily_2020.csv.gz")
    con = connect(str(tmp_path / "r.duckdb"))
    try:
        assert ingest_paths(con, "finra-short", [src]).exit_code == 0
        got = symbol_gaps(con, "finra_short", top=3)
    finally:
        con.close()
    df = pd.read_csv(src, usecols=["date", "symbol"], dtype=str, keep_default_na=False)
    days = np.unique(df["date"].to_numpy(dtype="datetime64[D]"))
    assert days.size == 6
    have = {s: np.unique(g.to_numpy(dtype="datetime64[D]")) for s, g in df.groupby("symbol")["date"]}
    ref = _reference(days, have)
    gapped = sorted((s for s, v in ref.items() if v[0]), key=lambda s: (-ref[s][0], s))
    assert (got["symbols"], got["with_gaps"], got["missing"]) == (len(ref), len(gapped), sum(v[0] for v in ref.values()))
    assert 0 < got["with_gaps"] < got["symbols"]
    assert [(w["symbol"], w["missing"], w["expected"], tuple(w["largest"].values())) for w in got["worst"]] == [
        (s, *ref[s]) for s in gapped[:3]]
