"""Fetchers against a local http.server on 127.0.0.1 (no network): retries, 404 skips, cache, OAuth token flow,
paging, and that secrets never leak into messages or file names."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import replace
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from _ingest_helpers import table

from optimizer.settings import Settings
from optimizer.data.fetch import FetchError, fetch_finra_api, fetch_finra_short, fetch_polygon_prices
from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect

KEY, SECRET, POLY = "fk-SECRET-key-123", "fs/SECRET+secret=456", "pk-SECRET-poly-789"
CNMS_0102 = "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\r\n20240102|AAPL|10|0|20|Q\r\n1\r\n"
CNMS_0104 = "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\r\n20240104|AAPL|11|0|21|Q\r\n1\r\n"
API_ROWS = [
    {"tradeReportDate": "2024-01-02", "securitiesInformationProcessorSymbolIdentifier": "AAPL", "shortParQuantity": 5,
     "shortExemptParQuantity": 0, "totalParQuantity": 10, "marketCode": "Q"},
    {"tradeReportDate": "2024-01-02", "securitiesInformationProcessorSymbolIdentifier": "AAPL", "shortParQuantity": 7,
     "shortExemptParQuantity": 1, "totalParQuantity": 12, "marketCode": "B"},
    {"tradeReportDate": "2024-01-02", "securitiesInformationProcessorSymbolIdentifier": "MSFT", "shortParQuantity": 1,
     "shortExemptParQuantity": 0, "totalParQuantity": 3, "marketCode": "N"},
    {"tradeReportDate": "2024-01-03", "securitiesInformationProcessorSymbolIdentifier": "AAPL", "shortParQuantity": 2,
     "shortExemptParQuantity": 0, "totalParQuantity": 4, "marketCode": "Q"},
    {"tradeReportDate": "2024-01-03", "securitiesInformationProcessorSymbolIdentifier": "MSFT", "shortParQuantity": 3,
     "shortExemptParQuantity": 0, "totalParQuantity": 9, "marketCode": "N"},
]


def _ms(*a) -> int:
    return int(datetime(*a, tzinfo=timezone.utc).timestamp() * 1000)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):  # keep test output quiet
        pass

    def _send(self, code: int, body: bytes = b"", ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st = self.server.state
        u = urlparse(self.path)
        st["log"].append(("GET", u.path))
        if u.path == "/cdn/CNMSshvol20240102.txt":
            st["hits_0102"] += 1
            if st["hits_0102"] == 1:
                return self._send(500, b"boom")
            return self._send(200, CNMS_0102.encode())
        if u.path == "/cdn/CNMSshvol20240104.txt":
            return self._send(200, CNMS_0104.encode())
        if u.path.startswith("/poly/v2/aggs/ticker/"):
            q = parse_qs(u.query)
            if q.get("apiKey") != [POLY]:
                return self._send(401, b'{"status":"ERROR"}')
            ticker = unquote(u.path.split("/")[5])
            if ticker == "FAIL":
                return self._send(503, b"down")
            if ticker == "LIST":  # a JSON list where Polygon sends an object
                return self._send(200, b'[{"t": 1}]', "application/json")
            if ticker == "ODD":  # 'results' not a list of bars
                return self._send(200, b'{"status": "OK", "results": {"t": 1}}', "application/json")
            if not ticker[:1].isalnum():  # like Polygon: an unknown ticker ('^VIX') has no results
                return self._send(200, json.dumps({"ticker": ticker, "status": "OK", "resultsCount": 0}).encode())
            if ticker.startswith("I:"):  # Polygon's index aggregates: I:VIX, no volume field
                doc = {"ticker": ticker, "status": "OK", "results": [{"t": _ms(2024, 3, 8, 5), "o": 14.5, "h": 15.2,
                                                                      "l": 14.1, "c": 14.9}]}
                return self._send(200, json.dumps(doc).encode(), "application/json")
            doc = {"ticker": ticker, "status": "OK", "results": [
                {"t": _ms(2024, 3, 8, 5), "o": 10, "h": 11, "l": 9, "c": 10.5, "v": 100}]}
            return self._send(200, json.dumps(doc).encode(), "application/json")
        return self._send(404, b"not found")

    def do_POST(self):
        st = self.server.state
        u = urlparse(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        st["log"].append(("POST", u.path))
        if u.path == "/token":
            want = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
            if self.headers.get("Authorization") != want:
                return self._send(401, b"bad credentials")
            return self._send(200, json.dumps({"access_token": "tok-XYZ", "expires_in": 1800}).encode(), "application/json")
        if u.path == "/api/data/group/otcMarket/name/regShoDaily":
            if self.headers.get("Authorization") != "Bearer tok-XYZ":
                return self._send(401, b"no token")
            req = json.loads(body)
            st["pages"].append(req)
            off, lim = req["offset"], req["limit"]
            return self._send(200, json.dumps(API_ROWS[off:off + lim]).encode(), "application/json")
        return self._send(404)


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.state = {"log": [], "hits_0102": 0, "pages": []}
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield base, srv.state
    srv.shutdown()
    srv.server_close()


def _settings(base: str, **kw) -> Settings:
    return Settings(
        finra_cdn_url=f"{base}/cdn",
        finra_api_url=f"{base}/api",
        finra_token_url=f"{base}/token",
        polygon_base_url=f"{base}/poly",
        finra_api_key=KEY,
        finra_api_secret=SECRET,
        polygon_api_key=POLY,
        **kw,
    )


def test_finra_cdn_retry_404_skip_and_cache(server, tmp_path):
    base, st = server
    delays: list[float] = []
    files = fetch_finra_short("2024-01-01", "2024-01-04", tmp_path, _settings(base), max_retries=3, base_delay=0.5, sleep=delays.append)
    # sessions: 01-02 (500 then 200), 01-03 (404), 01-04 (200); 01-01 is a holiday, never requested
    assert [p.name for p in files] == ["CNMSshvol20240102.txt", "CNMSshvol20240104.txt"]
    assert files.missing == [("CNMSshvol20240103.txt", "HTTP 404: no file published for this session")]
    assert delays == [0.5]  # one retry, after base_delay
    assert st["hits_0102"] == 2
    assert (tmp_path / "CNMSshvol20240102.txt").read_bytes() == CNMS_0102.encode()
    assert not any(p.name.endswith(".part") or ".part" in p.name for p in tmp_path.iterdir())
    requests_before = len(st["log"])
    again = fetch_finra_short("2024-01-02", "2024-01-04", tmp_path, _settings(base), sleep=delays.append)
    assert [p.name for p in again] == ["CNMSshvol20240102.txt", "CNMSshvol20240104.txt"]
    assert again.cached == list(again) and again.downloaded == []
    assert [r[1] for r in st["log"][requests_before:]] == ["/cdn/CNMSshvol20240103.txt"]  # only the missing day
    con = connect(":memory:")
    rep = ingest_paths(con, "finra-short", list(files))
    assert rep.exit_code == 0
    assert table(con, "SELECT date, short_volume FROM finra_short_daily ORDER BY date") == [(date(2024, 1, 2), 10), (date(2024, 1, 4), 11)]


def test_retries_exhausted_raise_with_backoff(server, tmp_path):
    base, st = server
    delays: list[float] = []
    with pytest.raises(FetchError) as e:
        fetch_polygon_prices(["FAIL"], "2024-03-01", "2024-03-08", tmp_path, _settings(base), max_retries=3, base_delay=0.25, sleep=delays.append)
    assert delays == [0.25, 0.5, 1.0]
    msg = str(e.value)
    assert "failed after 4 attempts: HTTP 503" in msg
    assert POLY not in msg and "apiKey" not in msg
    assert POLY not in repr(e.value)
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_finra_api_token_flow_and_paging(server, tmp_path):
    base, st = server
    df = fetch_finra_api("2024-01-02", "2024-01-03", _settings(base), out_dir=tmp_path, page_size=2, sleep=lambda s: None)
    assert [p["offset"] for p in st["pages"]] == [0, 2, 4]  # 2 + 2 + 1 rows: the short page ends the paging
    assert all(p["limit"] == 2 for p in st["pages"])
    assert st["pages"][0]["dateRangeFilters"] == [{"fieldName": "tradeReportDate", "startDate": "2024-01-02", "endDate": "2024-01-03"}]
    got = [(r.date.date(), r.symbol, r.short_volume, r.short_exempt_volume, r.total_volume, r.market, r.facility) for r in df.itertuples()]
    assert got == [
        (date(2024, 1, 2), "AAPL", 12, 1, 22, "B,Q", "API"),  # two market rows summed
        (date(2024, 1, 2), "MSFT", 1, 0, 3, "N", "API"),
        (date(2024, 1, 3), "AAPL", 2, 0, 4, "Q", "API"),
        (date(2024, 1, 3), "MSFT", 3, 0, 9, "N", "API"),
    ]
    path = df.attrs["path"]
    assert KEY not in path and SECRET not in path
    con = connect(":memory:")
    rep = ingest_paths(con, "finra-short", [path])
    assert rep.exit_code == 0 and rep.files[0].rows_accepted == 4
    assert table(con, "SELECT short_volume, total_volume, provenance FROM finra_short_consolidated WHERE symbol='AAPL' ORDER BY date") == [
        (12, 22, "API"),
        (2, 4, "API"),
    ]
    dumped = repr(table(con, "SELECT * FROM ingest_log")) + repr(table(con, "SELECT * FROM finra_short_daily"))
    assert KEY not in dumped and SECRET not in dumped


def test_wrong_secret_message_is_redacted(server, tmp_path):
    base, _ = server
    bad = replace(_settings(base), finra_token_url=f"{base}/token?client_secret={SECRET}&k={KEY}", finra_api_key=KEY + "x")
    with pytest.raises(FetchError) as e:
        fetch_finra_api("2024-01-02", "2024-01-03", bad, out_dir=tmp_path, max_retries=0)
    msg = str(e.value)
    assert "HTTP 401" in msg
    for s in (KEY, SECRET, KEY + "x"):
        assert s not in msg


def test_polygon_saves_ingestible_json_without_key(server, tmp_path):
    base, st = server
    files = fetch_polygon_prices(["AAPL", "msft"], "2024-03-08", "2024-03-08", tmp_path, _settings(base), sleep=lambda s: None)
    assert [p.name for p in files] == ["AAPL_2024-03-08_2024-03-08.json", "MSFT_2024-03-08_2024-03-08.json"]
    for p in files:
        assert POLY not in p.name and POLY not in p.read_text()
    con = connect(":memory:")
    rep = ingest_paths(con, "prices", list(files))
    assert rep.exit_code == 0
    assert table(con, "SELECT date, symbol, close FROM prices_daily ORDER BY symbol") == [
        (date(2024, 3, 8), "AAPL", 10.5),
        (date(2024, 3, 8), "MSFT", 10.5),
    ]
    with pytest.raises(FetchError) as e:  # 401 is not retried, and the key is not in the message
        fetch_polygon_prices(
            ["AAPL"], "2024-03-08", "2024-03-08", tmp_path, replace(_settings(base), polygon_api_key=POLY + "-wrong"), sleep=lambda s: None
        )
    assert "HTTP 401" in str(e.value) and POLY not in str(e.value)


def test_finra_api_runs_for_other_symbols_keep_their_own_cache_file(server, tmp_path):
    """`fetch finra-api --symbols AAPL` then `--symbols MSFT` for the same dates: each run's CSV holds only the
    symbols it asked for, so the second must not overwrite the first in the cache (before: one name per date range).
    A run for every symbol keeps the plain name; the same symbols in another order or case give the same file."""
    base, _ = server
    s = _settings(base)

    def fetch(symbols):
        got = fetch_finra_api("2024-01-02", "2024-01-03", s, symbols, out_dir=tmp_path, sleep=lambda x: None)
        return got.attrs["path"]

    every, aapl, msft, again = fetch(None), fetch(["AAPL"]), fetch(["MSFT", "AAPL"]), fetch(["aapl", "MSFT"])
    assert every.endswith("finra_api_regsho_20240102_20240103.csv")
    assert len({every, aapl, msft}) == 3 and again == msft
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in (every, aapl, msft))
    con = connect(":memory:")
    rep = ingest_paths(con, "finra-short", [aapl])  # the name's two dates still bound the rows
    assert rep.exit_code == 0 and rep.files[0].rows_accepted == 4


def test_polygon_fetches_an_index_by_its_polygon_ticker(server, tmp_path):
    """The evening always asks Polygon for ^VIX (market context), and `fetch prices --symbols ^VIX` too, but Polygon
    names indices I:VIX and its index bars carry no volume: the request for '^VIX' found nothing, every night
    ('missing ^VIX: no bars returned'). An index is requested as I:<name>, saved under its canonical ^ name with
    volume 0 (as the real files hold it), and ingests."""
    base, st = server
    files = fetch_polygon_prices(["^vix"], "2024-03-08", "2024-03-08", tmp_path, _settings(base), sleep=lambda s: None)
    assert files.missing == [] and [p.name for p in files] == ["_VIX_2024-03-08_2024-03-08.json"]
    assert any(path.startswith("/poly/v2/aggs/ticker/I%3AVIX/") for _, path in st["log"])
    con = connect(":memory:")
    assert ingest_paths(con, "prices", list(files)).exit_code == 0
    assert table(con, "SELECT date, symbol, close, volume FROM prices_daily") == [(date(2024, 3, 8), "^VIX", 14.9, 0.0)]


@pytest.mark.parametrize("ticker, fragment", [("LIST", "returned list, expected a JSON object"),
                                               ("ODD", "'results' is dict, expected a list of bars")])
def test_polygon_answer_of_another_shape_is_one_fetch_error(server, tmp_path, ticker, fragment):
    """A JSON list (or 'results' that is no list) from Polygon was an AttributeError traceback (or bars made of a
    dict's keys); it is a FetchError naming the ticker and the shape, and nothing is written."""
    base, _ = server
    with pytest.raises(FetchError, match=fragment) as e:
        fetch_polygon_prices([ticker], "2024-03-08", "2024-03-08", tmp_path, _settings(base), sleep=lambda s: None)
    assert ticker in str(e.value) and not list(tmp_path.iterdir())
