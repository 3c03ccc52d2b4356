"""Symbol spellings at the edges: `symbols show` keeps its canonical column when an input is invalid, and the FINRA
Query API is asked for a preferred in the CQS spelling FINRA's Reg SHO files use (ABR.PRD -> ABRpD)."""

from __future__ import annotations

import json

import pytest
from _cli_helpers import cli

from optimizer.data import fetch
from optimizer.data.symbols import canonical_symbol
from optimizer.settings import Settings


def test_symbols_show_keeps_the_canonical_column_when_every_input_is_invalid():
    res = cli("symbols", "show", "../x")
    assert res.exit_code == 2 and "Traceback" not in res.output
    header, row = (ln.split() for ln in res.stdout.splitlines()[1:4:2])
    assert header == ["input", "canonical", "context_only"] and row == ["../x", "(invalid)", "no"], res.stdout
    assert "empty part" in res.stderr
    out = json.loads(cli("symbols", "show", "../x", "--format", "json").stdout)
    assert out == [{"input": "../x", "canonical": "", "context_only": False,
                    "problem": out[0]["problem"]}] and "empty part" in out[0]["problem"]  # JSON: no display text


@pytest.mark.parametrize("canonical,cqs", [
    ("ABR.PRD", "ABRpD"), ("BC.PRC", "BCpC"), ("ALL.PRA.CL", "ALLpA/CL"), ("RIV.RTWI", "RIVrw"), ("X.PR", "Xp"),
])
def test_the_cqs_spelling_reads_back_as_the_symbol(canonical, cqs):
    assert fetch._cqs_spelling(canonical) == cqs and canonical_symbol(cqs) == canonical
    assert cqs in fetch._api_spellings([canonical])


@pytest.mark.parametrize("symbol", ["AAPL", "BRK.B", "AACT.WS", "BCPC", "^VIX"])
def test_no_cqs_spelling_for_other_symbols(symbol):
    assert fetch._cqs_spelling(symbol) is None


def test_finra_api_finds_a_preferred_it_spells_in_cqs(monkeypatch, tmp_path):
    """A stand-in for the Query API that filters on the symbol values it is given, as FINRA does: rows of ABRpD and
    BRK/B come back for ABR.PRD and BRK.B, so neither is named as missing (ABR.PRD was: 'ABRpD' was not asked for)."""
    stored = [{"tradeReportDate": "2024-01-02", "securitiesInformationProcessorSymbolIdentifier": s, "shortParQuantity": 1,
             "shortExemptParQuantity": 0, "totalParQuantity": 2, "marketCode": "N"} for s in ("ABRpD", "BRK/B", "AAPL")]
    asked = []

    def fake_request(url, *, method="GET", data=None, **kw):
        body = json.loads(data)
        values = set(body["domainFilters"][0]["values"])
        asked.append(values)
        rows = [r for r in stored if r["securitiesInformationProcessorSymbolIdentifier"] in values]
        return json.dumps(rows[body["offset"]:body["offset"] + body["limit"]]).encode()

    monkeypatch.setattr(fetch, "http_request", fake_request)
    monkeypatch.setattr(fetch, "_finra_token", lambda settings, **kw: "tok")
    df = fetch.fetch_finra_api("2024-01-02", "2024-01-02", Settings(), ["ABR.PRD", "BRK.B"], out_dir=None)
    assert df.attrs["missing"] == []
    assert sorted(df["symbol"]) == ["ABRpD", "BRK/B"] and "ABRpD" in asked[0]
