"""Settings and flags of the commands around the evening (ingest, fetch, evening) as a new user writes them: each
takes effect or is refused with one line naming it (exit 2), and no exit code goes without a word.

Found by driving `ingest lit-trades`, `fetch finra-short` and `fetch finra-api` against a local HTTP server serving
copies of real FINRA files: a time zone or session window the ingest could not use was blamed on the file being
ingested (``unreadable lit-trades file (ZoneInfoNotFoundError ...)``), and a window that kept every trade
(RTH_END=25:00) or none (RTH_START after RTH_END) was taken without a word.
"""

from __future__ import annotations

import pytest

from optimizer.errors import ParameterError
from optimizer.settings import Settings
from tests._cli_helpers import cli, ok, one_line_error

TRADES = "timestamp,symbol,price,size\n2024-01-02T14:31:00Z,AAPL,185.1,100\n2024-01-02T15:31:00Z,AAPL,185.2,300\n"


# ------------------------------------------------------------------------------- MARKET_TZ / RTH_START / RTH_END
@pytest.mark.parametrize("env, fragment", [
    ({"MARKET_TZ": "Nowhere/Place"}, "MARKET_TZ must be an IANA time zone"),
    ({"MARKET_TZ": "../../etc/passwd"}, "MARKET_TZ must be an IANA time zone"),
    ({"RTH_START": "9am"}, "RTH_START must be a time HH:MM"),
    ({"RTH_START": "09:30:00"}, "RTH_START must be a time HH:MM"),
    ({"RTH_START": "09:61"}, "RTH_START must be a time HH:MM"),
    ({"RTH_END": "25:00"}, "RTH_END must be a time HH:MM"),
    ({"RTH_START": "16:00", "RTH_END": "09:30"}, "RTH_START must be before RTH_END"),
    ({"RTH_START": "10:00", "RTH_END": "10:00"}, "RTH_START must be before RTH_END"),
])
def test_session_settings_refused_by_name(env, fragment):
    with pytest.raises(ParameterError, match=fragment):
        Settings.from_env(env)


def test_session_settings_accepted_as_written():
    s = Settings.from_env({"MARKET_TZ": " UTC ", "RTH_START": "14:30", "RTH_END": "24:00"})
    assert (s.market_tz, s.rth_start, s.rth_end) == ("UTC", "14:30", "24:00")
    s = Settings.from_env({"RTH_END": "16:00"})  # the other end keeps its default 09:30
    assert (s.market_tz, s.rth_start, s.rth_end) == ("America/New_York", "09:30", "16:00")


@pytest.mark.parametrize("env, fragment", [
    ({"MARKET_TZ": "Nowhere/Place"}, "MARKET_TZ"),   # was: the file 'unreadable' (ZoneInfoNotFoundError)
    ({"RTH_START": "9am"}, "RTH_START"),             # was: the file 'unreadable' (ValueError: expected hh:mm:ss)
    ({"RTH_END": "25:00"}, "RTH_END"),               # was: taken, every trade of the day kept
    ({"RTH_START": "16:00", "RTH_END": "09:30"}, "RTH_START must be before RTH_END"),  # was: taken
])
def test_ingest_lit_trades_refuses_a_bad_session_setting_not_the_file(tmp_path, env, fragment):
    f = tmp_path / "lit_trades.csv"
    f.write_text(TRADES)
    db = tmp_path / "db.duckdb"
    line = one_line_error(cli("ingest", "lit-trades", f, "--db", db, env=env), fragment)
    assert "lit_trades.csv" not in line  # the setting is named, not the file
    assert not db.exists()  # refused before anything is written


def test_ingest_lit_trades_uses_the_session_window_given(tmp_path):
    """RTH_START=10:00 drops the 09:31 trade (the first of the day, unclassified): 300 shares remain, unclassified."""
    f = tmp_path / "lit_trades.csv"
    f.write_text(TRADES)
    import duckdb

    for env, expect in (({}, (300.0, 0.0, 100.0)), ({"RTH_START": "10:00"}, (0.0, 0.0, 300.0))):
        db = tmp_path / f"db{len(env)}.duckdb"
        ok(cli("ingest", "lit-trades", f, "--db", db, env=env))
        con = duckdb.connect(str(db), read_only=True)
        try:
            got = con.execute("SELECT lit_buy_volume, lit_sell_volume, lit_unclassified_volume FROM lit_flow_daily").fetchall()
        finally:
            con.close()
        assert got == [expect]


# ----------------------------------------------------------------------------- fetch: the exit code gets its line
_HEAD = "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\r\n"
# the fetcher reuses a cached non-empty file (published files do not change): no request is made, the URL is unused
_NO_NET = {"FINRA_CDN_URL": "http://127.0.0.1:9/cdn"}


def test_fetch_names_the_rejected_rows_behind_exit_1(tmp_path):
    """A fetched file with a row breaking a rule (short > total) exits 1: it said only 'ingested 1 rows'."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "CNMSshvol20240308.txt").write_bytes(
        (_HEAD + "20240308|AAPL|10|0|20|Q\r\n20240308|MSFT|30|0|20|Q\r\n2\r\n").encode())
    res = cli("fetch", "finra-short", "--start", "2024-03-08", "--end", "2024-03-08", "--cache", cache,
              "--db", tmp_path / "db.duckdb", env=_NO_NET)
    ok(res, 1)
    assert "ingested 1 rows from 1 file(s)" in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("warning: 1 row(s) of ") and "CNMSshvol20240308.txt:3: short_volume 30 > total_volume 20" \
        in lines[0], lines[0]


def test_fetch_names_the_failed_file_behind_exit_2(tmp_path):
    """A fetched file that fails its ingest (a missing column) exits 2: it said only 'ingested 0 rows'."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "CNMSshvol20240311.txt").write_bytes(b"Date|Symbol|ShortVolume\r\n20240311|AAPL|10\r\n1\r\n")
    res = cli("fetch", "finra-short", "--start", "2024-03-11", "--end", "2024-03-11", "--cache", cache,
              "--db", tmp_path / "db.duckdb", env=_NO_NET)
    one_line_error(res, "CNMSshvol20240311.txt:1: missing column 'TotalVolume'")


# ------------------------------------------------------------------------ dashboard: a port it cannot listen on
@pytest.fixture()
def storage(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="s", storage=url)
    return url


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_dashboard_port_out_of_range_refused_by_name(storage, port):
    """--port 0 started a server on a port it announced as ':0'; 65536 / -1 ended in OverflowError (exit 1)."""
    res = cli("dashboard", "--storage", storage, "--port", port)
    assert res.exit_code == 2 and "Traceback" not in res.output, (res.exit_code, res.output, res.exception)
    assert "Invalid value for '--port'" in res.stderr and "1<=x<=65535" in res.stderr, res.stderr


def test_dashboard_port_in_use_is_one_line_not_a_traceback(storage):
    """A port another process listens on ended in 'OSError: [Errno 98] Address already in use' (exit 1), after the
    command had announced the dashboard on it. Nothing is started: the check binds and lets go before the server."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = cli("dashboard", "--storage", storage, "--port", port)
    line = one_line_error(res, "--host/--port must be a free address", f"--port {port}", "in use")
    assert "optuna-dashboard on" not in res.stdout, line


# ------------------------------------------------------------------------- fetch finra-api --symbols as written
class _RegSho:
    """A FINRA Query API on 127.0.0.1 whose data spell a share class as FINRA's files do (BRK/B); it records the
    symbol filter of each request."""

    ROWS = [("2025-09-10", "AAPL", 13418179, 33083012), ("2025-09-10", "BRK/B", 947285, 1904698),
            ("2025-09-11", "AAPL", 8789279, 18771601), ("2025-09-11", "BRK/B", 583009, 1378829)]

    def __enter__(self):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        asked = self.asked = []

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token":
                    out = {"access_token": "tok"}
                else:
                    req = json.loads(body)
                    want = [v for f in req.get("domainFilters", []) for v in f["values"]]
                    asked.append(want)
                    out = [{"tradeReportDate": d, "securitiesInformationProcessorSymbolIdentifier": s,
                            "shortParQuantity": sv, "shortExemptParQuantity": 0, "totalParQuantity": tv,
                            "marketCode": "Q"} for d, s, sv, tv in _RegSho.ROWS if not want or s in want]
                raw = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        base = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.env = {"FINRA_API_KEY": "k", "FINRA_API_SECRET": "s", "FINRA_TOKEN_URL": f"{base}/token",
                    "FINRA_API_URL": base}
        return self

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()


def test_finra_api_symbols_are_read_canonically_and_a_share_class_is_found(tmp_path):
    """`--symbols brk.b,aapl,zzzz`: upper-cased only, 'BRK.B' was asked for and FINRA's 'BRK/B' rows never came back,
    without a word; now each spelling of a share class gives the same request (and cache file), the class is asked
    for in both spellings and stored as BRK.B, and a symbol with no row is named on stderr."""
    import duckdb

    with _RegSho() as api:
        paths = []
        for spelled in ("brk.b,aapl,zzzz", "BRK/B , AAPL,ZZZZ,", "AAPL,BRK-B,zzzz"):
            db = tmp_path / f"db{len(paths)}.duckdb"
            res = ok(cli("fetch", "finra-api", "--start", "2025-09-10", "--end", "2025-09-11", "--symbols", spelled,
                         "--cache", tmp_path / "cache", "--db", db, env=api.env))
            assert res.stdout.startswith("4 row(s) -> "), res.stdout
            assert [ln for ln in res.stderr.splitlines() if ln.startswith("missing")] == [
                "missing ZZZZ: no row returned for 2025-09-10..2025-09-11"], res.stderr
            paths.append(res.stdout.split("-> ", 1)[1].split("\n")[0])
            con = duckdb.connect(str(db), read_only=True)
            try:
                got = con.execute("SELECT symbol, sum(short_volume), sum(total_volume) FROM finra_short_daily "
                                  "GROUP BY 1 ORDER BY 1").fetchall()
            finally:
                con.close()
            assert got == [("AAPL", 13418179 + 8789279, 33083012 + 18771601), ("BRK.B", 947285 + 583009, 1904698 + 1378829)]
        assert sorted(api.asked[0]) == ["AAPL", "BRK.B", "BRK/B", "ZZZZ"]
        assert len({tuple(sorted(a)) for a in api.asked}) == 1
    assert len(set(paths)) == 1  # one cache file for the one set of securities


@pytest.mark.parametrize("symbols, fragment", [
    ("", "--symbols must name at least one symbol"),     # was: every symbol
    (",,", "--symbols must name at least one symbol"),   # was: a filter of three empty names
    ("AAPL,../x", "--symbols must be a valid symbol, got '../x'"),  # was: sent as written
])
def test_finra_api_symbols_refused_by_name(tmp_path, symbols, fragment):
    env = {"FINRA_API_KEY": "k", "FINRA_API_SECRET": "s", "FINRA_TOKEN_URL": "http://127.0.0.1:9/token",
           "FINRA_API_URL": "http://127.0.0.1:9"}  # refused before any request
    one_line_error(cli("fetch", "finra-api", "--start", "2025-09-10", "--end", "2025-09-11", "--symbols", symbols,
                       "--db", tmp_path / "db.duckdb", env=env), fragment)


# ------------------------------------------------------------------------------ evening --png without kaleido
def test_evening_png_without_kaleido_refused_before_anything_is_done(tmp_path):
    """`evening --png` without kaleido ran the ingest, rebuilt daily_metrics and scanned before it said 'PNG output
    needs kaleido' (the store changed, the evening's work thrown away); now it is refused first: no step runs."""
    from optimizer.report.files import png_available

    if png_available():
        pytest.skip("kaleido is installed: --png can be written")
    days = ("2024-03-06", "2024-03-07", "2024-03-08")
    fin = []
    for d in days:
        fin.append(tmp_path / f"CNMSshvol{d.replace('-', '')}.txt")
        fin[-1].write_bytes((_HEAD + f"{d.replace('-', '')}|AAPL|10|0|20|Q\r\n1\r\n").encode())
    px = tmp_path / "prices.csv"
    px.write_text("date,symbol,open,high,low,close,volume\n" + "".join(f"{d},AAPL,10,11,9,10,100\n" for d in days))
    db = tmp_path / "db.duckdb"
    ok(cli("ingest", "finra-short", *fin, "--db", db))
    ok(cli("ingest", "prices", px, "--db", db))
    params = tmp_path / "p.json"
    params.write_text('{"variant": "B"}')
    before = db.read_bytes()
    res = cli("evening", "--params", params, "--db", db, "--no-fetch", "--png", "--out", tmp_path / "out")
    one_line_error(res, "PNG output needs kaleido")
    assert "metrics:" not in res.stdout and "scan:" not in res.stdout, res.stdout  # no step ran
    assert db.read_bytes() == before and not (tmp_path / "out").exists()


# ------------------------------------------------------------- evening: prices for the FINRA history already stored
def test_evening_fetches_prices_for_the_stored_finra_history_when_no_price_is_stored(tmp_path):
    """A store with FINRA files (`fetch finra-short`) and no price yet: the evening with POLYGON_API_KEY asked
    Polygon only for the new sessions, so the FINRA history stayed without prices (the sheet then refused its span
    for want of price coverage). Now a store with no price gets prices from its first FINRA session."""
    import json
    import threading
    from datetime import datetime
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from zoneinfo import ZoneInfo

    import duckdb

    days = ["2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"]
    asked: list[str] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            if path.startswith("/cdn/CNMSshvol"):
                ymd = path[-12:-4]
                body = (_HEAD + f"{ymd}|AAPL|10|0|20|Q\r\n{ymd}|SPY|10|0|20|Q\r\n2\r\n").encode()
            elif path.startswith("/v2/aggs/ticker/"):
                parts = path.split("/")
                ticker, d0, d1 = parts[4], parts[8], parts[9]
                asked.append(f"{ticker} {d0}")
                bars = [{"t": int(datetime.fromisoformat(d).replace(tzinfo=ZoneInfo("America/New_York")).timestamp()
                                  * 1000), "o": 10, "h": 11, "l": 9, "c": 10, "v": 100}
                        for d in days if d0 <= d <= d1]
                body = json.dumps({"ticker": ticker, "status": "OK", "results": bars}).encode()
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    env = {"FINRA_CDN_URL": f"{base}/cdn", "POLYGON_BASE_URL": base, "POLYGON_API_KEY": "k"}
    try:
        db = tmp_path / "db.duckdb"
        ok(cli("fetch", "finra-short", "--start", days[0], "--end", days[2], "--cache", tmp_path / "cache",
               "--db", db, env=env))
        params = tmp_path / "p.json"
        params.write_text('{"variant": "B", "z_window": 2}')
        cli("evening", "--params", params, "--db", db, "--through", days[3], "--universe", "AAPL",
            "--out", tmp_path / "out", env=env)  # its sheet may refuse so short a span: the fetch is what is checked
    finally:
        srv.shutdown()
        srv.server_close()
    assert sorted(asked) == [f"AAPL {days[0]}", f"I%3AVIX {days[0]}", f"SPY {days[0]}"]  # was: each from days[3]
    con = duckdb.connect(str(db), read_only=True)
    try:
        got = con.execute("SELECT strftime(date, '%Y-%m-%d') FROM prices_daily WHERE symbol = 'AAPL' ORDER BY 1").fetchall()
    finally:
        con.close()
    assert [d for (d,) in got] == days


# ------------------------------------------------------------------------- a tier misspelt is not a ticker
@pytest.mark.parametrize("value", ["tier9", "TIER4", " tier12 "])
def test_a_misspelt_tier_is_refused_not_run_as_a_ticker(value):
    """'tier9' was read as the one-symbol list [TIER9]: `data synth --universe tier9` built a market of one
    synthetic name TIER9, `fetch prices --symbols tier9` asked Polygon for TIER9, without a word."""
    from optimizer.data.universe import resolve_universe

    with pytest.raises(ParameterError, match=r"universe must be one of tier1, .* \(not a tier\)"):
        resolve_universe(value)
    assert resolve_universe("TIER1") == resolve_universe("tier1")  # the tiers, any case, as before
    assert resolve_universe("TIER,aapl") == ["TIER", "AAPL"]        # a list names tickers, as before


def test_synth_universe_misspelt_tier_refused(tmp_path):
    one_line_error(cli("data", "synth", "--universe", "tier9", "--out", tmp_path, "--format", "json"),
                   "--universe must be one of", "got 'tier9' (not a tier)")
    assert not (tmp_path / "synth").exists()


def test_fetch_prices_names_symbols_in_its_error(tmp_path):
    """`fetch prices --symbols AAPL,../x` said 'universe symbol must be a valid symbol': no such option."""
    env = {"POLYGON_API_KEY": "k", "POLYGON_BASE_URL": "http://127.0.0.1:9"}  # refused before any request
    one_line_error(cli("fetch", "prices", "--symbols", "AAPL,../x", "--start", "2025-09-08", "--end", "2025-09-09",
                       "--db", tmp_path / "db.duckdb", env=env), "--symbols must be a valid symbol, got '../x'")


# ------------------------------------------------------------------ signals: one hash per configuration and universe
def test_sheet_hash_does_not_depend_on_how_the_universe_is_spelt():
    """`signals --universe aapl,msft`, `MSFT,AAPL`, `AAPL,,MSFT` run the same sheet (the panel orders its symbols),
    yet each got its own params_hash: its own folder and its own rows in signal_sheet for the same night. The hash of
    an already canonical spelling is unchanged (a store's earlier sheets keep their key)."""
    import hashlib
    import json

    from optimizer.engine.evaluate import Config
    from optimizer.signals import params_hash

    cfg = Config.from_params({"variant": "D", "buy_threshold": 80})

    def by_hand(universe: str) -> str:  # the documented payload, computed independently
        payload = json.dumps({"params": cfg.to_params(), "universe": universe, "start": "2023-02-16",
                              "regime": "ALL"}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    same = {params_hash(cfg, u, "2023-02-16", "ALL")
            for u in ("AAPL,MSFT", "aapl,msft", "MSFT,AAPL", "AAPL,,MSFT", " msft , AAPL", ["MSFT", "aapl"],
                      ("AAPL", "MSFT", "AAPL"))}
    assert same == {by_hand("AAPL,MSFT")}
    assert params_hash(cfg, "TIER1+3", "2023-02-16", "ALL") == params_hash(cfg, " tier1+3", "2023-02-16", "ALL") \
        == by_hand("tier1+3")
    assert len({by_hand("AAPL,MSFT"), params_hash(cfg, "AAPL", "2023-02-16", "ALL"),
                params_hash(cfg, "BRK/B,MSFT", "2023-02-16", "ALL")}) == 3
    assert params_hash(cfg, "brk-b,msft", "2023-02-16", "ALL") == by_hand("BRK.B,MSFT")


def test_a_new_session_window_re_reads_an_ingested_lit_trades_file(tmp_path):
    """The session window decides a lit-trades file's rows, so it is part of the file's identity: re-ingesting the
    same file under RTH_START=10:00 re-reads it (it was 'skipped_identical', keeping the 09:30 window's rows), the
    same window again is a no-op, and the default window again restores the first rows. The checksum logged for a
    non-default window carries it (``<sha256>+tz=...;rth=...;rules=2``); the default carries the reading rules'
    version only (``<sha256>+rules=2``)."""
    import duckdb

    f = tmp_path / "lit_trades.csv"
    f.write_text(TRADES)
    db = tmp_path / "db.duckdb"

    def rows():
        con = duckdb.connect(str(db), read_only=True)
        try:
            flow = con.execute("SELECT lit_buy_volume, lit_sell_volume, lit_unclassified_volume FROM lit_flow_daily").fetchall()
            log = con.execute("SELECT status, sha256 FROM ingest_log ORDER BY id").fetchall()
        finally:
            con.close()
        return flow, log

    late = {"RTH_START": "10:00"}
    for env, flow, status in (({}, (300.0, 0.0, 100.0), "ok"), (late, (0.0, 0.0, 300.0), "replaced"),
                              (late, (0.0, 0.0, 300.0), None), ({}, (300.0, 0.0, 100.0), "replaced")):
        res = cli("ingest", "lit-trades", f, "--db", db, env=env)
        ok(res)
        got, log = rows()
        assert got == [flow], (env, got)
        if status is None:
            assert "identical" in res.stdout + res.stderr and len(log) == 2, (res.stdout, log)
        else:
            assert log[-1][0] == status, log
    sha, _, rules = log[0][1].partition("+")
    assert len(sha) == 64 and rules == "rules=2" and log[2][1] == log[0][1]
    assert log[1][1] == f"{sha}+tz=America/New_York;rth=10:00-16:15;rules=2"
