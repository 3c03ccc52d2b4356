"""explore12: a new user's real-world broken input files, every ingest kind (the path expansion, the number rule,
the bounds of each kind's figures, a file changing while it is read)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _ingest_helpers import OTC_HEAD, PRICES_HEAD, finra_text, table, write

from optimizer.data.ingest import expand_paths, ingest_paths
from optimizer.data.store import connect

D = "20200102"


@contextlib.contextmanager
def _local_server(handler):
    """A threaded HTTP server on 127.0.0.1 (a free port) answering with ``handler``; yields its base URL (the
    fetch tests never touch the network)."""
    import threading
    from http.server import ThreadingHTTPServer

    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def _expand_in_child(args: list[str], timeout: float = 10.0) -> list[str]:
    """expand_paths(args) in a child process under a 512 MiB address-space cap (a loop must neither hang nor eat
    the machine's memory): the paths it returns, one a line."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
        from optimizer.data.ingest import expand_paths
        for p in expand_paths({args!r}):
            print(p)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout.splitlines()


@pytest.fixture()
def looped(tmp_path: Path) -> Path:
    """data/sub/a.csv, data/b.csv, with data/sub/loop -> data/sub and data/sub/up -> data (symlink loops)."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    write(data / "sub" / "a.csv", PRICES_HEAD)
    write(data / "b.csv", PRICES_HEAD)
    (data / "sub" / "loop").symlink_to(data / "sub", target_is_directory=True)
    (data / "sub" / "up").symlink_to(data, target_is_directory=True)
    return data


def test_a_recursive_glob_over_symlink_loops_ends_with_each_file_once(looped):
    # glob.glob(recursive=True) follows symlinked directories: with two loops it listed data/sub/up/sub/loop/...
    # paths without end (2.2 GB resident after 10 minutes, measured), so `accumopt ingest prices 'data/**/*.csv'`
    # never ended and exhausted memory
    got = _expand_in_child([str(looped / "**" / "*.csv")])
    assert sorted(got) == sorted([str(looped / "b.csv"), str(looped / "sub" / "a.csv")])


def test_a_directory_with_symlink_loops_lists_each_file_once(looped):
    got = _expand_in_child([str(looped)])
    assert sorted(got) == sorted([str(looped / "b.csv"), str(looped / "sub" / "a.csv")])


def test_a_directory_follows_a_symlinked_folder_and_names_a_broken_link(con, tmp_path):
    # rglob skipped a symlinked folder and a broken link without a word: `ingest prices data/` with
    # data/2024 -> /mnt/archive/2024 stored only the files beside the link, exit 0
    archive = tmp_path / "archive"
    archive.mkdir()
    write(archive / "p2.csv", PRICES_HEAD + "2024-01-03,AAPL,10,11,9,10,100\n")
    data = tmp_path / "data"
    data.mkdir()
    write(data / "p1.csv", PRICES_HEAD + "2024-01-02,AAPL,10,11,9,10,100\n")
    (data / "2024").symlink_to(archive, target_is_directory=True)
    assert expand_paths([data]) == [data / "2024" / "p2.csv", data / "p1.csv"]
    (data / "p3.csv").symlink_to(tmp_path / "gone.csv")  # the file it pointed to was moved
    rep = ingest_paths(con, "prices", [data])
    assert [(Path(f.file).name, f.status) for f in rep.files] == [("p1.csv", "ok"), ("p2.csv", "ok"), ("p3.csv", "failed")]
    assert rep.files[2].message == f"{data / 'p3.csv'}: unreadable file (No such file or directory)"
    assert rep.exit_code == 2
    assert table(con, "SELECT count(*) FROM prices_daily") == [(2,)]


@pytest.mark.parametrize("text", ["10,5", "0,99", "1,0,0,0", "12,34.5", ",100", "100,"])
def test_a_decimal_comma_is_refused_not_read_as_a_thousands_separator(con, tmp_path, text):
    # a comma was dropped wherever it stood: a close "10,5" (a spreadsheet in a decimal-comma locale, quoted in a
    # comma CSV) was stored as 105.0 and "0,99" as 99.0, exit 0
    p = write(tmp_path / "p.csv", PRICES_HEAD + f'2024-01-02,AAPL,9,200,0.5,"{text}",100\n')
    rep = ingest_paths(con, "prices", [p])
    assert [(f.status, f.message) for f in rep.files] == [
        ("failed", f"{p}:2: non-numeric close '{text}' (a comma is read only as a thousands separator, as in 1,234.5)")]
    assert table(con, "SELECT count(*) FROM prices_daily") == [(0,)]


@pytest.mark.parametrize("text, value", [("1,234.5", 1234.5), ("12,345,678", 12345678.0), ("+1,000", 1000.0),
                                         ("999", 999.0), ("1,000.", 1000.0)])
def test_thousands_separators_in_their_groups_are_read(con, tmp_path, text, value):
    p = write(tmp_path / "p.csv", PRICES_HEAD + f'2024-01-02,AAPL,1,1e9,1,1,"{text}"\n')
    assert ingest_paths(con, "prices", [p]).exit_code == 0
    assert table(con, "SELECT volume FROM prices_daily") == [(value,)]


def test_an_otc_trade_count_above_the_volume_bound_is_a_rejected_row_naming_its_line(con, tmp_path):
    # totalWeeklyTradeCount had no bound: 1e19 passed the checks and the BIGINT cast of the write failed the whole
    # file with DuckDB's 'database rejected the file (Conversion Error: Type DOUBLE with value 1e+19 ...)', no line
    p = write(tmp_path / "otc.csv", OTC_HEAD + "AAPL,T1,2024-01-01,1000,10,ATS_W_SMBL,\n"
                                               "MSFT,T1,2024-01-01,1000,1e19,OTC_W_SMBL,\n")
    rep = ingest_paths(con, "otc-weekly", [p])
    (f,) = rep.files
    assert (f.status, f.rows_accepted, f.rows_rejected) == ("rejected_rows", 1, 1)
    # one rejected row: no "(+0 more rejected rows)" (lead, stop 37)
    assert f.message == f"{p}:3: totalWeeklyTradeCount 1e+19 is above the maximum 1e+13"
    assert table(con, "SELECT symbol, ats_trade_count FROM finra_otc_weekly") == [("AAPL", 10)]


def test_a_file_that_changes_between_its_checksum_and_its_reading_fails(con, tmp_path, monkeypatch):
    # a file above INLINE_BYTES is hashed in one pass and read again in chunks: a download still being written (or
    # a file replaced in between) stored the rows of the new content under the checksum of the old one, exit 0, so
    # the old content ingested again later was skipped as identical while the store held the other rows
    import optimizer.data.ingest as ingest
    from optimizer.data.ingest import _source

    monkeypatch.setattr(_source, "INLINE_BYTES", 0)
    p = write(tmp_path / "p.csv", PRICES_HEAD + "2024-01-02,AAPL,10,11,9,10,100\n")
    real_read = ingest.read_raw

    def read_then_change(path, file):
        raw = real_read(path, file)
        write(Path(path), PRICES_HEAD + "2024-01-02,AAPL,20,21,19,20,100\n")  # the same size, other figures
        return raw

    monkeypatch.setattr(ingest, "read_raw", read_then_change)
    rep = ingest_paths(con, "prices", [p])
    assert [(f.status, f.message) for f in rep.files] == [
        ("failed", f"{p}: the file changed while it was read (its checksum differs between two reads): ingest it "
                   "again once it is complete")]
    assert table(con, "SELECT count(*) FROM prices_daily") == [(0,)]


def test_a_parquet_trades_file_is_read_from_the_bytes_its_checksum_covers(con, tmp_path, monkeypatch):
    # pd.read_parquet read the path again after read_raw had hashed it: a file replaced in between stored the new
    # trades under the old content's checksum (here: 300 buy shares stored for a file whose checksum is 100's)
    import pandas as pd

    import optimizer.data.ingest as ingest

    def trades(size: int) -> bytes:
        frame = pd.DataFrame({"timestamp": ["2024-01-03T15:00:00Z"], "symbol": ["AAPL"], "price": [10.0],
                              "size": [size], "side": ["B"]})
        out = tmp_path / f"t{size}.parquet"
        frame.to_parquet(out)
        return out.read_bytes()

    p = write(tmp_path / "AAPL_trades.parquet", trades(100))
    later = trades(300)
    real_read = ingest.read_raw

    def read_then_change(path, file):
        raw = real_read(path, file)
        write(Path(path), later)
        return raw

    monkeypatch.setattr(ingest, "read_raw", read_then_change)
    rep = ingest_paths(con, "lit-trades", [p])
    assert rep.exit_code == 0, rep.files[0].message
    assert table(con, "SELECT lit_buy_volume FROM lit_flow_daily") == [(100.0,)]


def test_files_of_one_date_are_ingested_in_the_order_given_so_the_later_one_wins(con, tmp_path):
    # files of one date were ordered by name, then by path: `ingest finra-short jan/ fixes/` with FINRA's
    # re-published day in fixes/ ingested the correction first and the original over it (short 100 stored, not
    # the corrected 150), and `ingest prices prices_all.csv AAPL_fix.csv` stored the combined file's AAPL bars over
    # the fix (same first date: 'AAPL_fix.csv' sorts first), both exit 0
    jan, fixes = tmp_path / "jan", tmp_path / "fixes"
    jan.mkdir()
    fixes.mkdir()
    write(jan / f"CNMSshvol{D}.txt", finra_text([f"{D}|AAPL|100|0|300|Q"]))
    write(fixes / f"CNMSshvol{D}.txt", finra_text([f"{D}|AAPL|150|0|300|Q"]))
    rep = ingest_paths(con, "finra-short", [jan, fixes])
    assert [(f.file, f.status) for f in rep.files] == [(str(jan / f"CNMSshvol{D}.txt"), "ok"),
                                                       (str(fixes / f"CNMSshvol{D}.txt"), "replaced")]
    assert table(con, "SELECT short_volume FROM finra_short_daily") == [(150,)]
    combined = write(tmp_path / "prices_all.csv", PRICES_HEAD + "2024-01-02,AAPL,10,11,9,10,100\n"
                                                                "2024-01-02,MSFT,20,21,19,20,100\n")
    fix = write(tmp_path / "AAPL_fix.csv", PRICES_HEAD + "2024-01-02,AAPL,10,12,9,11.5,100\n")
    assert ingest_paths(con, "prices", [combined, fix]).exit_code == 0
    assert table(con, "SELECT symbol, close FROM prices_daily ORDER BY symbol") == [("AAPL", 11.5), ("MSFT", 20.0)]


def _ny_day_of_trades(stamp) -> str:
    """40 trades of 100 shares every 10 minutes from 09:30 on 2024-01-03 (EST), the times written by ``stamp``."""
    import datetime as dt

    t0 = dt.datetime(2024, 1, 3, 9, 30)
    rows = [f"{stamp(t0 + dt.timedelta(minutes=10 * i))},{100 + i % 3},100,99.5,100.5" for i in range(40)]
    return "timestamp,price,size,bid,ask\n" + "\n".join(rows) + "\n"


def test_trades_with_naive_times_outside_the_session_window_are_warned_of(con, tmp_path):
    # a vendor's trades in New York time without an offset are read as UTC (documented): 30 of the day's 40 trades
    # (09:30-14:20 New York, read as 04:30-09:20) fell outside the window and were dropped with no word, exit 0:
    # a quarter of the day's flow stored as the whole day
    p = write(tmp_path / "AAPL_2024-01-03.csv", _ny_day_of_trades(lambda t: t.isoformat(sep=" ")))
    rep = ingest_paths(con, "lit-trades", [p])
    assert rep.exit_code == 0
    assert table(con, "SELECT lit_buy_volume + lit_sell_volume + lit_unclassified_volume FROM lit_flow_daily") == [(1000.0,)]
    assert rep.warnings == [
        "lit-trades: AAPL_2024-01-03.csv: 30 of 40 trades lie outside the session window 09:30-16:15 America/New_York "
        "and were not counted; 40 timestamps carry no UTC offset and are read as UTC: if they are America/New_York "
        "times, write them with their offset (2024-01-03T10:00:00-05:00) or as epoch numbers"]
    # the same trades with their offset: all counted, nothing to say; naive times inside the window: nothing either
    q = write(tmp_path / "AAPL_2024-01-04.csv", _ny_day_of_trades(lambda t: t.isoformat() + "-05:00").replace("2024-01-03", "2024-01-04"))
    rep = ingest_paths(con, "lit-trades", [q])
    assert (rep.exit_code, rep.warnings) == (0, [])
    utc = write(tmp_path / "AAPL_2024-01-05.csv",
                _ny_day_of_trades(lambda t: (t.replace(hour=t.hour + 5)).isoformat(sep=" ")).replace("2024-01-03", "2024-01-05"))
    rep = ingest_paths(con, "lit-trades", [utc])
    assert (rep.exit_code, rep.warnings) == (0, [])
    assert table(con, "SELECT date, lit_buy_volume + lit_sell_volume + lit_unclassified_volume FROM lit_flow_daily "
                      "WHERE date > DATE '2024-01-03' ORDER BY date") == [
        (__import__("datetime").date(2024, 1, 4), 4000.0), (__import__("datetime").date(2024, 1, 5), 4000.0)]


def test_a_split_ratio_no_real_split_has_is_a_rejected_row_not_a_crash_of_metrics_build(con, tmp_path):
    # a split ratio only had to be finite, > 0 and not 1: 1e300 (a unit error, a typo) was stored, exit 0, and
    # `accumopt metrics build` then died with a traceback (DuckDB: 'Type DOUBLE with value 8.849e+306 can't be
    # cast ... INT64' adjusting the FINRA volumes before the ex-date)
    from optimizer.data.metrics import build_daily_metrics

    write(tmp_path / f"CNMSshvol{D}.txt", finra_text([f"{D}|AAPL|100|0|300|Q", f"{D}|MSFT|10|0|30|Q"]))
    assert ingest_paths(con, "finra-short", [tmp_path / f"CNMSshvol{D}.txt"]).exit_code == 0
    p = write(tmp_path / "splits.csv", "symbol,date,ratio\nAAPL,2020-01-03,1e300\nMSFT,2020-01-03,1e-5\n"
                                       "NVDA,2020-01-03,10000\nAVGO,2020-01-03,0.0001\n")
    rep = ingest_paths(con, "splits", [p])
    (f,) = rep.files
    assert (f.status, f.rows_accepted, f.rows_rejected) == ("rejected_rows", 2, 2)
    assert table(con, "SELECT line, reason FROM ingest_rejects ORDER BY line") == [
        (2, "split ratio 1e+300 is outside [0.0001, 10000]: no real split is that large (1-for-10,000 .. 10,000-for-1)"),
        (3, "split ratio 1e-05 is outside [0.0001, 10000]: no real split is that large (1-for-10,000 .. 10,000-for-1)")]
    assert table(con, "SELECT symbol, ratio FROM splits ORDER BY symbol") == [("AVGO", 0.0001), ("NVDA", 10000.0)]
    build_daily_metrics(con)
    assert table(con, "SELECT symbol, short_volume FROM daily_metrics ORDER BY symbol") == [("AAPL", 100), ("MSFT", 10)]


@pytest.mark.parametrize("fmt, data", [
    ("a zip archive (an .xlsx workbook is one too)", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40)),
    ("a bzip2 stream", b"BZh91AY&SY" + bytes(40)),
    ("an xz stream", b"\xfd7zXZ\x00" + bytes(40)),
    ("a zstd stream", b"\x28\xb5\x2f\xfd" + bytes(40)),
    ("a 7-Zip archive", b"7z\xbc\xaf\x27\x1c" + bytes(40)),
    ("an Excel .xls workbook", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(40)),
    ("a Parquet file", b"PAR1" + bytes(40)),
])
def test_a_compressed_or_binary_file_under_a_text_name_is_named_for_what_it_is(con, tmp_path, fmt, data):
    # a zip, bzip2, xz, ... saved under a .txt / .csv name was refused as 'NUL byte: binary data or UTF-16 text
    # without a byte-order mark (save the file as UTF-8 text)': the user looked for an encoding problem
    p = write(tmp_path / f"CNMSshvol{D}.txt", data)
    rep = ingest_paths(con, "finra-short", [p])
    assert [(f.status, f.message) for f in rep.files] == [
        ("failed", f"{p}:1: {fmt}, not text: "
                   + ("save it as CSV (UTF-8 text)" if fmt.startswith(("an Excel", "a Parquet"))
                      else "only gzip is decompressed (decompress it, or save it as UTF-8 text)"))]


def test_a_file_cut_inside_a_utf8_character_is_named_truncated(con, tmp_path):
    # a download cut inside a multi-byte character was refused as 'invalid UTF-8 ... not UTF-8 or mixes encodings
    # such as UTF-8 and Latin-1': the file is UTF-8, it is cut short
    text = (PRICES_HEAD.strip() + ",source\n2024-01-02,AAPL,10,11,9,10,100,Zürich\n").encode()
    p = write(tmp_path / "p.csv", text[: text.index("ü".encode()) + 1])
    rep = ingest_paths(con, "prices", [p])
    assert [(f.status, f.message) for f in rep.files] == [
        ("failed", f"{p}:2: the file ends inside a UTF-8 character (byte 0xC3): truncated? (get the file again)")]


# ------------------------------------------------------------------------------------------------ fetchers (local)

_CNMS = b"Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\r\n20240104|AAPL|10|0|20|Q\r\n1\r\n"


@pytest.fixture()
def cdn():
    """A FINRA CDN stand-in on 127.0.0.1: 2024-01-02 answers 200 with an HTML error page, 2024-01-03 sends fewer
    bytes than its Content-Length and closes, 2024-01-04 a FINRA file; the request paths are logged."""
    from http.server import BaseHTTPRequestHandler

    log: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            log.append(self.path)
            if self.path.endswith("20240102.txt"):
                body, length = b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>\n", None
            elif self.path.endswith("20240103.txt"):
                body, length = _CNMS[:60], len(_CNMS)
            elif self.path.endswith("20240104.txt"):
                body, length = _CNMS, None
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(length or len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    with _local_server(Handler) as base:
        yield f"{base}/cdn", log


def test_a_download_cut_short_is_retried_then_one_fetch_error(cdn, tmp_path):
    # http.client.IncompleteRead (the body shorter than its Content-Length: a dropped connection) was not caught:
    # `accumopt fetch finra-short` ended in a traceback, no retry
    from optimizer.data.fetch import FetchError, fetch_finra_short
    from optimizer.settings import Settings

    url, log = cdn
    delays: list[float] = []
    with pytest.raises(FetchError) as e:
        fetch_finra_short("2024-01-03", "2024-01-03", tmp_path, Settings(finra_cdn_url=url), max_retries=2,
                          base_delay=0.5, sleep=delays.append)
    assert str(e.value) == (f"GET {url}/CNMSshvol20240103.txt failed after 3 attempts: IncompleteRead: the body "
                            f"ended after 60 bytes, {len(_CNMS) - 60} more expected")
    assert delays == [0.5, 1.0] and len(log) == 3
    assert list(tmp_path.iterdir()) == []


def test_an_html_page_answered_for_a_finra_file_is_not_cached(cdn, tmp_path):
    # a 200 answer holding an HTML page (a maintenance or login page) was saved as CNMSshvol20240102.txt; the
    # ingest failed it, and every later fetch reused it from the cache ('a cached non-empty file is not downloaded
    # again') without asking the server: the day could never be fetched until the user found and deleted the file
    from optimizer.data.fetch import FetchError, fetch_finra_short
    from optimizer.settings import Settings

    url, log = cdn
    with pytest.raises(FetchError) as e:
        fetch_finra_short("2024-01-02", "2024-01-02", tmp_path, Settings(finra_cdn_url=url), max_retries=0)
    assert str(e.value) == (f"GET {url}/CNMSshvol20240102.txt returned no FINRA file: its first line is "
                            "'<!DOCTYPE html><html><body>Service temporarily unavailable</'... (72 characters) "
                            "(an error page?); nothing cached")
    assert list(tmp_path.iterdir()) == []
    # such a page cached by an earlier version is downloaded again, a FINRA file is reused
    write(tmp_path / "CNMSshvol20240104.txt", b"<html>old error page</html>\n")
    got = fetch_finra_short("2024-01-04", "2024-01-04", tmp_path, Settings(finra_cdn_url=url), max_retries=0)
    assert (got.downloaded, (tmp_path / "CNMSshvol20240104.txt").read_bytes()) == ([tmp_path / "CNMSshvol20240104.txt"], _CNMS)
    again = fetch_finra_short("2024-01-04", "2024-01-04", tmp_path, Settings(finra_cdn_url=url), max_retries=0)
    assert again.cached == [tmp_path / "CNMSshvol20240104.txt"] and log.count("/cdn/CNMSshvol20240104.txt") == 1


@pytest.fixture()
def poly():
    """A Polygon stand-in on 127.0.0.1 whose aggregates answer always points to itself as the next page (a paging
    bug), one bar a page; the request count is logged."""
    import json
    from http.server import BaseHTTPRequestHandler

    log: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            log.append(self.path)
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            doc = {"ticker": "AAPL", "status": "OK", "next_url": f"{base}/poly/v2/aggs/page?cursor=same",
                   "results": [{"t": 1704204000000, "o": 10, "h": 11, "l": 9, "c": 10.5, "v": 100}]}
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _local_server(Handler) as base:
        yield f"{base}/poly", log


def test_a_polygon_next_url_that_repeats_is_one_fetch_error_not_an_endless_loop(poly, tmp_path):
    # fetch_polygon_prices followed next_url with no bound: a server answering the same next_url forever kept it
    # requesting (and the bars list growing) until killed
    url, log = poly
    code = textwrap.dedent(f"""
        from optimizer.data.fetch import FetchError, fetch_polygon_prices
        from optimizer.settings import Settings
        try:
            fetch_polygon_prices(["AAPL"], "2024-01-02", "2024-01-02", {str(tmp_path)!r},
                                 Settings(polygon_base_url={url!r}, polygon_api_key="k"), max_retries=0)
        except FetchError as exc:
            print(exc)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=10)
    assert p.stdout.strip() == ("Polygon's next_url for AAPL repeats a page already read (a paging loop): "
                                f"{url.rsplit('/', 1)[0]}/poly/v2/aggs/page")
    assert len(log) == 2 and list(tmp_path.iterdir()) == []


def test_a_download_larger_than_the_size_limit_is_refused_while_it_streams(tmp_path):
    # http_request read the whole answer into memory (resp.read()), whatever its size: a server streaming without
    # end (or a wrong URL serving a huge file) grew the process until it died. The answer is now read in chunks
    # up to MAX_DECOMPRESSED_MB (the limit every input has), then refused
    from http.server import BaseHTTPRequestHandler

    from optimizer.data.fetch import FetchError, fetch_finra_short
    from optimizer.settings import Settings

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body runs until the connection closes
            self.wfile.write(b"Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\r\n")
            try:
                for _ in range(3 * 16):  # 3 MiB of rows
                    self.wfile.write(b"20240104|AAPL|10|0|20|Q\r\n" * 2730)
            except OSError:  # the client stopped reading
                pass
            self.close_connection = True

    with _local_server(Handler) as base, pytest.raises(FetchError) as e:
        url = f"{base}/cdn"
        fetch_finra_short("2024-01-04", "2024-01-04", tmp_path, Settings(finra_cdn_url=url, max_decompressed_mb=1),
                          max_retries=0)
    assert str(e.value) == (f"GET {url}/CNMSshvol20240104.txt: the answer is larger than 1 MiB: refused (set "
                            "MAX_DECOMPRESSED_MB to allow more)")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_linked_twice_is_listed_once_under_its_first_path(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    write(real / "p.csv", PRICES_HEAD)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("b", "a", "c"):
        (data / name).symlink_to(real, target_is_directory=True)
    assert expand_paths([data]) == [data / "a" / "p.csv"]


@pytest.mark.parametrize("value, shown", [(None, "None"), ("n/a", "'n/a'"), ("", "''")])
def test_a_finra_api_record_without_a_number_is_one_fetch_error_not_a_zero(tmp_path, value, shown):
    # _tidy_api coerced a quantity that is not a number to NaN and summed the (date, symbol) rows: a record whose
    # shortParQuantity was null or 'n/a' was written to the cache file as short volume 0.0 and stored, exit 0 -- a
    # day with no short selling, the strongest reading the signal can take
    import json
    from http.server import BaseHTTPRequestHandler

    from optimizer.data.fetch import FetchError, fetch_finra_api
    from optimizer.settings import Settings

    rows = [{"tradeReportDate": "2024-01-02", "securitiesInformationProcessorSymbolIdentifier": "AAPL",
             "shortParQuantity": 5, "shortExemptParQuantity": 0, "totalParQuantity": 10, "marketCode": "Q"},
            {"tradeReportDate": "2024-01-02", "securitiesInformationProcessorSymbolIdentifier": "MSFT",
             "shortParQuantity": value, "shortExemptParQuantity": 0, "totalParQuantity": 10, "marketCode": "Q"}]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            body = json.dumps({"access_token": "t"} if self.path == "/token" else rows).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _local_server(Handler) as base, pytest.raises(FetchError) as e:
        settings = Settings(finra_api_url=f"{base}/api", finra_token_url=f"{base}/token", finra_api_key="k",
                            finra_api_secret="s")
        fetch_finra_api("2024-01-02", "2024-01-02", settings, out_dir=tmp_path, max_retries=0)
    assert str(e.value) == (f"FINRA regShoDaily record 2 (2024-01-02, MSFT) has shortParQuantity {shown}, not a "
                            "number: nothing written")
    assert list(tmp_path.iterdir()) == []


def test_a_parquet_trades_file_above_the_size_limit_is_refused_before_it_is_read(con, tmp_path):
    # Parquet trades were read whole by pandas with no size check (the MAX_DECOMPRESSED_MB cap of every text file
    # never applied to them): a file of any size was loaded into memory
    import numpy as np
    import pandas as pd

    from optimizer.settings import Settings

    # 30,000 trades of distinct prices and quotes (Parquet's dictionaries cannot shrink them): 1.19 MiB on disk,
    # 1.41 MiB of columns (its metadata), both above the 1 MiB limit (200,000 constant trades did the same at 7x the
    # CPU of the accepted ingest below)
    n = 30_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"timestamp": 1704294000000 + np.arange(n, dtype="int64"),
                          "price": 9.96 + 0.08 * rng.random(n), "size": np.arange(1, n + 1, dtype="int64"),
                          "bid": 9.90 + 0.05 * rng.random(n), "ask": 10.05 + 0.05 * rng.random(n)})
    p = tmp_path / "AAPL_trades.parquet"
    frame.to_parquet(p)
    assert p.stat().st_size > 1 << 20  # the oracle's premise: the file is above the limit
    rep = ingest_paths(con, "lit-trades", [p], settings=Settings(max_decompressed_mb=1))
    assert [(f.status, f.message) for f in rep.files] == [
        ("failed", f"{p}: content exceeds the size limit of 1 MiB (set MAX_DECOMPRESSED_MB or --max-decompressed-mb "
                   "to allow more)")]
    assert ingest_paths(con, "lit-trades", [p], settings=Settings(max_decompressed_mb=64)).exit_code == 0
