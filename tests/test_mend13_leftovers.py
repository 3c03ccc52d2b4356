"""mend13: what the explore12 / mend12 audits left (a share-class trades file name, a browser's duplicate download,
chained extreme splits, evening's universe "all")."""

from __future__ import annotations

from pathlib import Path

import pytest
from _ingest_helpers import table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


_TRADES = ("timestamp,price,size\n2024-01-03T10:00:00-05:00,10,100\n2024-01-03T10:01:00-05:00,10.5,50\n")


@pytest.mark.parametrize("name", ["BRK.B_2024-01-03.csv", "BRK-B_2024-01-03.csv", "brk.b_x.csv"])
def test_a_trades_file_named_for_a_share_class_is_read_as_that_ticker(con, tmp_path, name):
    # 'BRK.B_x.csv' was refused: the stem was cut at the first '.', leaving 'BRK' with no '_' ('missing column
    # 'symbol' and the file name is not TICKER_*.csv'), though BRK.B is a ticker; BRK-B / brk.b are BRK.B everywhere
    rep = ingest_paths(con, "lit-trades", [write(tmp_path / name, _TRADES)])
    (f,) = rep.files
    assert (f.status, f.message) == ("ok", None)
    assert table(con, "SELECT symbol, lit_buy_volume + lit_sell_volume + lit_unclassified_volume FROM lit_flow_daily") == [
        ("BRK.B", 150.0)]


@pytest.mark.parametrize("name, stem", [("2024.01.03_x.csv", "2024.01.03"), ("2024-01-03_AAPL.csv", "2024-01-03"),
                                        ("20240103_trades.csv", "20240103")])
def test_a_trades_file_whose_name_starts_with_a_date_is_refused_saying_so(con, tmp_path, name, stem):
    # a date-like stem is not a ticker (explore12 reverted a fix that read '2024.01.03_x.csv' as the symbol 2024.01.03)
    rep = ingest_paths(con, "lit-trades", [write(tmp_path / name, _TRADES)])
    (f,) = rep.files
    assert f.status == "failed"
    assert f.message == (f"{tmp_path / name}:1: missing column 'symbol', and the file name's part before the first "
                         f"'_' ('{stem}') is a date, not a ticker: add a 'symbol' column or name the file "
                         "TICKER_*.csv (AAPL_2024-01-03.csv)")
    assert table(con, "SELECT count(*) FROM lit_flow_daily") == [(0,)]


def test_a_trades_file_without_a_ticker_in_its_name_is_refused_with_the_naming_rule(con, tmp_path):
    for name, why in [("trades.csv", "has no '_'"), ("_x.csv", "has no '_'"),
                      ("A#B_x.csv", "('A#B') is not a ticker (invalid symbol 'A#B': character '#'")]:
        rep = ingest_paths(con, "lit-trades", [write(tmp_path / name, _TRADES)])
        (f,) = rep.files
        assert f.status == "failed", name
        assert f.message.startswith(f"{tmp_path / name}:1: missing column 'symbol', and the file name"), f.message
        assert why in f.message and "TICKER_*.csv" in f.message, f.message


_D = "20240103"


def _finra(short: int) -> str:
    from _ingest_helpers import finra_text

    return finra_text([f"{_D}|AAPL|{short}|0|300|Q"])


def test_a_browsers_second_download_comes_right_after_its_first_in_a_folder(tmp_path):
    # 'CNMSshvol20240103 (1).txt' (a browser's newer download) sorted before 'CNMSshvol20240103.txt' (' ' < '.'), so
    # in a folder the older file was ingested last and its rows stood; '(10)' sorted before '(2)'
    from optimizer.data.ingest import expand_paths

    names = ["CNMSshvol20240103 (10).txt", "CNMSshvol20240103 (2).txt", "CNMSshvol20240103.txt",
             "CNMSshvol20240103 (1).txt", "CNMSshvol20240102.txt", "CNMSshvol20240103(3).txt.gz", "CNMSshvol20240103.txt.gz"]
    for n in names:
        write(tmp_path / n, "x")
    want = ["CNMSshvol20240102.txt", "CNMSshvol20240103.txt", "CNMSshvol20240103 (1).txt", "CNMSshvol20240103 (2).txt",
            "CNMSshvol20240103 (10).txt", "CNMSshvol20240103.txt.gz", "CNMSshvol20240103(3).txt.gz"]
    assert [p.name for p in expand_paths(tmp_path)] == want
    assert [p.name for p in expand_paths(str(tmp_path / "CNMS*"))] == want
    # paths given one by one keep the order given (explore12's rule)
    given = [tmp_path / "CNMSshvol20240103 (1).txt", tmp_path / "CNMSshvol20240103.txt"]
    assert expand_paths(given) == given


def test_a_newer_download_of_a_finra_day_in_a_folder_is_stored_over_the_older_with_one_warning(con, tmp_path):
    write(tmp_path / f"CNMSshvol{_D}.txt", _finra(100))
    write(tmp_path / f"CNMSshvol{_D} (1).txt", _finra(150))
    rep = ingest_paths(con, "finra-short", [tmp_path])
    assert [(Path(f.file).name, f.status) for f in rep.files] == [
        (f"CNMSshvol{_D}.txt", "ok"), (f"CNMSshvol{_D} (1).txt", "replaced")]
    assert table(con, "SELECT short_volume FROM finra_short_daily") == [(150.0,)]
    assert rep.warnings == [
        f"finra-short: CNMSshvol{_D} (1).txt: read after CNMSshvol{_D}.txt, another download of the same file with "
        "other content: its rows stand where they overlap"]
    assert rep.exit_code == 0
    # the same content downloaded twice: nothing to say
    c2 = connect(":memory:")
    try:
        write(tmp_path / f"CNMSshvol{_D} (1).txt", _finra(100))
        rep = ingest_paths(c2, "finra-short", [tmp_path])
        assert rep.warnings == []
    finally:
        c2.close()


def _chained_splits_store(con, tmp_path, ratios: str, extreme: bool = False) -> None:
    from _ingest_helpers import finra_text

    rows = [f"{d}|NVDA|50000000000|0|100000000000|Q" for d in ("20240102", "20240103")]
    for d, r in zip(("20240102", "20240103"), rows):
        write(tmp_path / f"CNMSshvol{d}.txt", finra_text([r, f"{d}|AAPL|100|0|300|Q"]))
    assert ingest_paths(con, "finra-short", sorted(tmp_path.glob("CNMS*"))).exit_code == 0
    write(tmp_path / "splits.csv", "symbol,date,ratio\n" + ratios)
    if not extreme:
        assert ingest_paths(con, "splits", [tmp_path / "splits.csv"]).exit_code == 0
        return
    # the splits ingest refuses such a file now (tests/test_lead37_splits.py): a store written before it did
    for line in ratios.splitlines():
        sym, day, ratio = line.split(",")
        con.execute("INSERT INTO splits (symbol, ex_date, split_from, split_to, ratio, source_file) "
                    "VALUES (?, ?, 1, ?, ?, 'splits.csv')", [sym, day, float(ratio), float(ratio)])


def test_two_chained_extreme_splits_are_refused_by_metrics_build_naming_the_symbol_and_file(con, tmp_path):
    # each ratio is within [1e-4, 1e4] (explore12), but two 10,000-for-1 splits of one symbol multiply a raw volume
    # by 1e8: 1e11 shares x 1e8 overflowed the INT64 of the adjusted volume and `metrics build` died with DuckDB's
    # 'Conversion Error: ... can't be cast ... INT64' traceback
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.errors import DataError

    _chained_splits_store(con, tmp_path, "NVDA,2024-01-04,10000\nNVDA,2024-01-05,10000\nAAPL,2024-01-04,4\n", extreme=True)
    with pytest.raises(DataError) as e:
        build_daily_metrics(con)
    assert str(e.value) == (
        "splits of NVDA multiply to 1e+08 (2 splits, 2024-01-04 .. 2024-01-05, from splits.csv): above 100,000, the "
        "largest factor a raw volume (at most 1e+13 shares) can be adjusted by; fix the ratios and ingest the file again")


def test_chained_splits_within_the_factor_limit_adjust_as_before(con, tmp_path):
    # 100 x 1,000 = 1e5, the limit itself: adjusted exactly (hand: 1e11 x 1e5 = 1e16 shares before both ex-dates)
    from optimizer.data.metrics import build_daily_metrics

    _chained_splits_store(con, tmp_path, "NVDA,2024-01-04,100\nNVDA,2024-01-05,1000\n")
    build_daily_metrics(con)
    assert table(con, "SELECT date, total_volume FROM daily_metrics WHERE symbol = 'NVDA' ORDER BY date") == [
        (__import__("datetime").date(2024, 1, 2), 10**16), (__import__("datetime").date(2024, 1, 3), 10**16)]


def test_the_split_factor_limit_keeps_every_adjusted_volume_inside_int64():
    from optimizer.data import adjust
    from optimizer.data.ingest._common import MAX_VOLUME

    assert adjust._MAX_RAW_VOLUME == MAX_VOLUME
    assert 2 * MAX_VOLUME * adjust.MAX_FACTOR < 2**63  # OTC: ATS + non-ATS, each at most MAX_VOLUME


def test_the_scanner_refuses_chained_extreme_splits_in_one_line(con, tmp_path):
    from optimizer.analytics.scanner import scan
    from optimizer.errors import DataError

    _chained_splits_store(con, tmp_path, "NVDA,2024-01-04,10000\nNVDA,2024-01-05,10000\n", extreme=True)
    with pytest.raises(DataError, match=r"^splits of NVDA multiply to 1e\+08 \(2 splits"):
        scan(con, "2024-01-03")


@pytest.fixture()
def polygon():
    """A local stand-in (127.0.0.1) for the FINRA CDN (no file tonight: 404) and Polygon (one flat bar a day for any
    ticker); ``hits``: the tickers Polygon was asked for, one per request."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import unquote, urlparse

    import pandas as pd

    hits: list[str] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            u = urlparse(self.path)
            body, code = b"", 404
            if u.path.startswith("/poly/v2/aggs/ticker/"):
                parts = u.path.split("/")
                hits.append(unquote(parts[5]))
                bars = [{"t": int(pd.Timestamp(d, tz="America/New_York").timestamp() * 1000), "o": 10.0, "h": 10.0,
                         "l": 10.0, "c": 10.0, "v": 1000} for d in pd.bdate_range(parts[9], parts[10])]
                body, code = json.dumps({"status": "OK", "results": bars}).encode(), 200
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield base, hits
    srv.shutdown()
    srv.server_close()


def test_evening_fetches_for_universe_all_the_symbols_the_sheet_trades_not_every_stored_one(tmp_path, polygon):
    # `all` is the daily_metrics symbols with a price in the span (mend12, study.data._universe_symbols), but the
    # evening's fetch resolved it on its own: every symbol of prices_daily, priced in the span or not (on a store
    # of a whole market's history, every delisted name, one Polygon request each, night after night)
    from _ingest_helpers import PRICES_HEAD, finra_text

    from optimizer import evening as ev
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.settings import Settings

    base, hits = polygon
    days = ["2024-06-03", "2024-06-04", "2024-06-05", "2024-06-06", "2024-06-07"]
    db = tmp_path / "s.duckdb"
    c = connect(db)
    try:
        for d in days:
            k = d.replace("-", "")
            write(tmp_path / f"CNMSshvol{k}.txt", finra_text([f"{k}|{s}|100|0|300|Q" for s in ("AAA", "OLD", "NOPX")]))
        assert ingest_paths(c, "finra-short", sorted(tmp_path.glob("CNMS*"))).exit_code == 0
        px = [f"{d},{s},10,10,10,10,1000" for d in days for s in ("AAA", "SPY")] + ["2024-06-03,OLD,10,10,10,10,1000"]
        write(tmp_path / "p.csv", PRICES_HEAD + "\n".join(px) + "\n")
        assert ingest_paths(c, "prices", [tmp_path / "p.csv"]).exit_code == 0
        build_daily_metrics(c)
    finally:
        c.close()
    st = Settings(polygon_api_key="k", polygon_base_url=f"{base}/poly", finra_cdn_url=f"{base}/cdn")
    ev._fetch(db, tmp_path / "cache", __import__("datetime").date(2024, 6, 10), "all", st, ev.EveningResult(),
              start="2024-06-05")
    # AAA (and SPY, ^VIX, always): OLD has no price since 2024-06-03, NOPX none at all; the sheet trades neither
    assert sorted(hits) == ["AAA", "I:VIX", "SPY"]
    hits.clear()
    ev._fetch(db, tmp_path / "cache2", __import__("datetime").date(2024, 6, 10), "all", st, ev.EveningResult())
    assert sorted(hits) == ["AAA", "I:VIX", "OLD", "SPY"]  # no span start: every symbol with a price
