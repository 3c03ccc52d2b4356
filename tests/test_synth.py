"""The embedded synthetic market: determinism, calendar, raw-file formats, invariants, the planted effect (and
its absence in the null market), the OTC publication lag, real-prices mode and scale."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import ParameterError
from optimizer.data.synth import SynthConfig, generate_market, synth_to_db, write_market

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_PRICES = REAL / "prices_daily.csv.gz"
H = 10  # holding period of the test rules (sessions)


@pytest.fixture(scope="module")
def market():
    return generate_market(SynthConfig())


@pytest.fixture(scope="module")
def null_market():
    return generate_market(SynthConfig(effect=0.0))


# ---- helpers (plain pandas, independent of the engine) ------------------------------------------------------

def _wide(df: pd.DataFrame, col: str) -> pd.DataFrame:
    return df.pivot(index="date", columns="symbol", values=col).sort_index()


def _share(m) -> pd.DataFrame:
    return _wide(m.finra_short, "short_volume") / _wide(m.finra_short, "total_volume")


def _fwd_open(m, cols) -> pd.DataFrame:
    """log(open[t+1+H] / open[t+1]): buy at the open after the close of t, hold H sessions."""
    o = _wide(m.prices, "open")[cols]
    return np.log(o.shift(-(H + 1)) / o.shift(-1))


def _rule_excess(m, x: pd.DataFrame, thr: float = 2.0) -> np.ndarray:
    """Excess returns of: z(x, 20 sessions, population std) >= thr at close t -> buy open t+1, hold H sessions.

    One position per symbol (signals while holding are ignored), so trades never overlap; the excess is the
    trade's return minus that day's cross-sectional mean forward return (removes the market factor)."""
    z = (x - x.rolling(20).mean()) / x.rolling(20).std(ddof=0)
    fwd = _fwd_open(m, x.columns)
    ex = fwd.sub(fwd.mean(axis=1), axis=0).to_numpy()
    sig = ((z >= thr) & fwd.notna()).to_numpy()
    out = []
    for j in range(sig.shape[1]):
        last = -10**9
        for i in np.flatnonzero(sig[:, j]):
            if i > last + H:
                out.append(ex[i, j])
                last = i
    return np.asarray(out)


def _tstat(v: np.ndarray) -> float:
    return float(v.mean() / v.std(ddof=1) * np.sqrt(len(v)))


# ---- validation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"seed": -1}, "seed must be"),
        ({"seed": 1.5}, "seed must be"),
        ({"start": "2024-13-45"}, "start must be"),
        ({"start": "2024-02-01", "end": "2024-01-01"}, "end must be on or after start"),
        ({"universe": ""}, "universe must be"),
        ({"universe": []}, "universe must be"),
        ({"universe": "tier9 please"}, "universe must be one of"),
        ({"n_symbols": 0}, "n_symbols must be"),
        ({"effect": -0.1}, "effect must be"),
        ({"effect": float("nan")}, "effect must be"),
        ({"family": "price"}, "family must be one of ratio, volume, lit"),
        ({"episode_rate": 50}, "episode_rate must be"),
        ({"accumulation_share": 1.5}, "accumulation_share must be"),
        ({"prices_file": "x.csv", "n_symbols": 10}, "n_symbols must be None when prices_file"),
    ],
)
def test_config_validation_names_the_field_and_value(kw, needle):
    with pytest.raises(ParameterError) as e:
        SynthConfig(**kw)
    assert needle in str(e.value)
    assert f"got {needle.split()[0]}=" in str(e.value)


# ---- determinism / calendar / format ------------------------------------------------------------------------

def test_same_config_gives_identical_frames_and_file_bytes(tmp_path):
    cfg = SynthConfig(seed=11, start="2024-01-02", end="2024-03-29", universe="tier1")
    a, b = generate_market(cfg), generate_market(cfg)
    for name in ("prices", "finra_short", "lit_flow", "otc_weekly", "options", "episodes"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    pa, pb = write_market(a, tmp_path / "a"), write_market(b, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 60
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    c = generate_market(SynthConfig(seed=12, start="2024-01-02", end="2024-03-29", universe="tier1"))
    assert not np.allclose(a.prices["close"].to_numpy(), c.prices["close"].to_numpy())
    assert not a.finra_short["short_volume"].equals(c.finra_short["short_volume"])


def test_calendar_has_no_weekend_or_holiday():
    m = generate_market(SynthConfig(start="2024-06-24", end="2024-07-12", universe="SPY,AAPL"))
    for frame in (m.prices, m.finra_short, m.lit_flow, m.options):
        d = pd.DatetimeIndex(frame["date"].unique())
        assert (d.day_of_week < 5).all()
        assert pd.Timestamp("2024-07-04") not in d
        assert pd.Timestamp("2024-07-03") in d and pd.Timestamp("2024-07-05") in d
    assert len(m.sessions) == 14  # 15 weekdays minus Independence Day


def test_cnms_files_round_trip_exactly(tmp_path):
    m = generate_market(SynthConfig(start="2024-03-01", end="2024-03-15", universe="tier1+3"))
    paths = write_market(m, tmp_path)
    files = sorted(paths["finra-short"].glob("*.txt"))
    assert [f.name for f in files] == [f"CNMSshvol{d:%Y%m%d}.txt" for d in m.sessions]
    raw = files[3].read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
    lines = raw.decode("ascii").split("\r\n")[:-1]
    assert lines[0] == "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market"
    body = lines[1:-1]
    assert int(lines[-1]) == len(body) == 33
    rows = [ln.split("|") for ln in body]
    day = m.sessions[3]
    want = m.finra_short.loc[m.finra_short["date"] == day]
    assert [r[0] for r in rows] == [f"{day:%Y%m%d}"] * len(rows)
    assert [r[1] for r in rows] == sorted(want["symbol"].tolist())
    assert [int(r[2]) for r in rows] == want["short_volume"].tolist()
    assert [int(r[3]) for r in rows] == want["short_exempt_volume"].tolist()
    assert [int(r[4]) for r in rows] == want["total_volume"].tolist()
    assert {r[5] for r in rows} == {"B,Q,N"}
    heads = {k: paths[k].read_text().splitlines()[0] for k in ("prices", "lit-flow", "otc-weekly", "options")}
    assert heads["prices"] == "date,symbol,open,high,low,close,volume"
    assert heads["lit-flow"] == "date,symbol,lit_buy_volume,lit_sell_volume,method"
    assert heads["otc-weekly"] == ("issueSymbolIdentifier,tierIdentifier,summaryStartDate,totalWeeklyShareQuantity,"
                                   "totalWeeklyTradeCount,summaryTypeCode,lastUpdateDate")
    assert heads["options"].startswith("date,symbol,call_volume,put_volume,call_premium,put_premium,")
    back = pd.read_csv(paths["prices"])
    assert np.array_equal(back["close"].to_numpy(), m.prices["close"].to_numpy())
    truth = json.loads(paths["truth"].read_text())
    assert truth["seed"] == 7 and truth["family"] == "ratio"
    ep = pd.read_csv(paths["episodes"])
    assert list(ep.columns) == ["symbol", "kind", "start_date", "end_date", "drift_start", "drift_end", "daily_drift"]


# ---- invariants / realism -----------------------------------------------------------------------------------

def test_row_invariants_and_levels(market):
    f, p = market.finra_short, market.prices
    assert (f["short_volume"] <= f["total_volume"]).all() and (f["short_volume"] > 0).all()
    assert (f["short_exempt_volume"] <= 0.02 * f["short_volume"] + 1).all()
    share = f["short_volume"] / f["total_volume"]
    assert 0.35 <= share.mean() <= 0.60
    per_sym = share.groupby(f["symbol"]).mean()
    assert per_sym.between(0.3, 0.65).all() and per_sym.std() > 0.02  # persistent symbol-specific levels
    assert (p["low"] <= np.minimum(p["open"], p["close"])).all()
    assert (p["high"] >= np.maximum(p["open"], p["close"])).all()
    stock = p.loc[p["symbol"] != "^VIX"]
    frac = f.merge(stock, on=["date", "symbol"]).eval("total_volume / volume")
    assert frac.between(0.15, 0.70).all() and 0.3 <= frac.mean() <= 0.5
    lit = market.lit_flow.merge(f, on=["date", "symbol"]).merge(stock, on=["date", "symbol"])
    assert (lit["lit_buy_volume"] + lit["lit_sell_volume"] + lit["total_volume"] <= lit["volume"]).all()
    assert set(market.lit_flow["method"]) == {"provided"}
    assert stock.groupby("symbol")["close"].first().between(20, 500).all()
    vix = p.loc[p["symbol"] == "^VIX"]
    assert (vix["volume"] == 0).all() and len(vix) == len(market.sessions)
    assert 12 <= vix["close"].median() <= 20 and vix["close"].max() > 25 and vix["close"].min() > 8


def test_sector_etf_co_moves_with_its_stocks_and_vix_with_stress(market):
    r = np.log(_wide(market.prices, "close")).diff()
    tech = ["MSFT", "AAPL", "NVDA", "AVGO", "AMD"]
    own = r[tech].corrwith(r["XLK"]).mean()
    other = r[tech].corrwith(r["XLU"]).mean()
    assert own > other + 0.1
    # stressed (high-VIX) sessions have much larger market moves
    vix = _wide(market.prices, "close")["^VIX"]
    hi, lo = r["SPY"][vix > 25].abs().mean(), r["SPY"][vix < 18].abs().mean()
    assert hi > 1.6 * lo


def test_options_only_for_liquid_names_with_iv_tied_to_vix(market):
    o = market.options
    syms = set(o["symbol"])
    assert {"SPY", "XLK", "AAPL", "NVDA"} <= syms and not ({"HIMS", "NNE", "BE"} & syms)
    spy = o.loc[o["symbol"] == "SPY"].set_index("date")["atm_iv"]
    vix = _wide(market.prices, "close")["^VIX"].reindex(spy.index)
    assert np.corrcoef(spy, vix)[0, 1] > 0.9
    assert (o["itm_call_volume"] + o["otm_call_volume"] == o["call_volume"]).all()


def test_otc_weekly_two_rows_per_week_published_two_weeks_late(market):
    o = market.otc_weekly
    start = pd.to_datetime(o["summaryStartDate"])
    pub = pd.to_datetime(o["lastUpdateDate"])
    assert (start.dt.day_of_week == 0).all()
    assert (pub >= start + pd.Timedelta(days=4 + 14)).all()
    assert (pub <= pd.Timestamp("2024-12-31")).all()
    assert set(o["tierIdentifier"]) == {"T1"}
    codes = o.groupby(["summaryStartDate", "issueSymbolIdentifier"])["summaryTypeCode"].agg(sorted)
    assert (codes.map(tuple) == ("ATS_W_SMBL", "OTC_W_SMBL")).all()
    # ATS + non-ATS volume is a plausible share (13-30 %) of the week's consolidated volume
    p = market.prices.assign(week=lambda d: (d["date"] - pd.to_timedelta(d["date"].dt.day_of_week, unit="D")))
    wv = p.groupby(["week", "symbol"])["volume"].sum()
    q = o.assign(week=start).groupby(["week", "issueSymbolIdentifier"])["totalWeeklyShareQuantity"].sum()
    ratio = (q / wv.rename_axis(q.index.names).reindex(q.index)).dropna()
    assert ratio.between(0.08, 0.45).all()


# ---- the planted effect -------------------------------------------------------------------------------------

def test_null_market_differs_only_by_the_documented_drift(market, null_market):
    for name in ("finra_short", "lit_flow", "otc_weekly", "episodes"):
        a, b = getattr(market, name), getattr(null_market, name)
        if name == "episodes":
            a, b = a.drop(columns="daily_drift"), b.drop(columns="daily_drift")
        pd.testing.assert_frame_equal(a, b)
    assert (null_market.episodes["daily_drift"] == 0).all()
    # Oracle from the truth table alone: log(close_1 / close_0) = cumsum(planted drift + offset)
    ep = market.episodes
    dates = market.sessions
    cols = sorted(ep["symbol"].unique())
    drift = pd.DataFrame(0.0, index=dates, columns=cols)
    for r in ep.itertuples():
        drift.loc[r.drift_start:r.drift_end, r.symbol] += r.daily_drift
    drift += market.truth["parameters"]["drift_offset_per_session"]
    c1, c0 = _wide(market.prices, "close")[cols], _wide(null_market.prices, "close")[cols]
    o1, o0 = _wide(market.prices, "open")[cols], _wide(null_market.prices, "open")[cols]
    assert min(c0.min().min(), c1.min().min()) > 2.0
    np.testing.assert_allclose(np.log(c1 / c0), drift.cumsum(), atol=1e-4)
    # the drift is intraday: the open of t carries the drift up to t-1 only (earned by buying at the open)
    np.testing.assert_allclose(np.log(o1 / o0), drift.cumsum().shift(1).fillna(0.0), atol=1e-4)


def test_forward_returns_after_episodes(market):
    fwd_all = _fwd_open(market, _wide(market.prices, "open").columns.drop("^VIX"))
    base = np.nanmean(fwd_all.to_numpy())
    out = {}
    for kind in ("accumulation", "distribution"):
        e = market.episodes.loc[market.episodes["kind"] == kind]
        vals = np.array([fwd_all.at[r.end_date, r.symbol] for r in e.itertuples()])
        out[kind] = np.nanmean(vals)
        assert np.isfinite(vals).sum() > 100
    assert out["accumulation"] > base + 0.015
    assert out["distribution"] < base - 0.015


def test_short_share_z_rule_beats_random_entry_only_with_an_effect(market):
    ex = _rule_excess(market, _share(market))
    assert len(ex) > 150
    assert ex.mean() > 0.008 and _tstat(ex) > 2.5
    for seed in (1, 2, 3):
        planted = generate_market(SynthConfig(seed=seed, effect=1.0))
        ex1 = _rule_excess(planted, _share(planted))
        assert ex1.mean() > 0.008 and _tstat(ex1) > 2.5, seed
        null = generate_market(SynthConfig(seed=seed, effect=0.0))
        ex0 = _rule_excess(null, _share(null))
        assert len(ex0) > 150
        assert abs(_tstat(ex0)) < 2.0, seed
        assert abs(ex0.mean()) < 0.006, seed


@pytest.mark.slow
@pytest.mark.parametrize("family", ["ratio", "volume", "lit"])
def test_family_decides_which_signal_carries_the_bump(family):
    m = generate_market(SynthConfig(seed=3, family=family, start="2024-01-02", end="2024-12-31"))
    f = m.finra_short.merge(m.lit_flow, on=["date", "symbol"])
    f["share"] = f["short_volume"] / f["total_volume"]
    f["imb"] = (f["lit_buy_volume"] - f["lit_sell_volume"]) / (f["lit_buy_volume"] + f["lit_sell_volume"])
    # the (date, symbol) rows inside an episode: the symbol's sessions from its start to its end date (every row of
    # f is a session). Plain array comparisons: Market.sessions rebuilt the calendar on each of ~1,400 reads and a
    # MultiIndex.isin per episode made this test ~1 s of CPU per family
    date, sym = f["date"].to_numpy(), f["symbol"].to_numpy()

    def inside(r) -> np.ndarray:
        return (sym == r.symbol) & (date >= np.datetime64(r.start_date)) & (date <= np.datetime64(r.end_date))

    on = np.zeros(len(f), dtype=bool)
    for r in m.episodes.loc[m.episodes["kind"] == "accumulation"].itertuples():
        on |= inside(r)
    quiet = np.ones(len(f), dtype=bool)
    for r in m.episodes.itertuples():
        quiet &= ~inside(r)
    d_share = f["share"][on].mean() - f["share"][quiet].mean()
    d_imb = f["imb"][on].mean() - f["imb"][quiet].mean()
    lv = np.log(f["short_volume"])
    sym_mean = lv[quiet].groupby(f["symbol"][quiet]).mean()
    d_logvol = (lv - f["symbol"].map(sym_mean))[on].mean()
    if family == "ratio":
        assert 0.065 < d_share < 0.095 and 0.01 < d_imb < 0.04 and abs(d_logvol) < 0.35
    elif family == "volume":
        assert abs(d_share) < 0.01 and d_logvol > 1.0 and 0.01 < d_imb < 0.04
    else:
        assert abs(d_share) < 0.01 and d_imb > 0.12 and abs(d_logvol) < 0.15


# ---- universe / prices-file mode / scale ------------------------------------------------------------------

def test_universe_and_n_symbols():
    m = generate_market(SynthConfig(start="2024-01-02", end="2024-02-29", universe=["SPY", "XLK", "MSFT"],
                                    n_symbols=7))
    syms = sorted(set(m.prices["symbol"]))
    assert syms == ["MSFT", "SPY", "SYN0001", "SYN0002", "SYN0003", "SYN0004", "XLK", "^VIX"]
    assert set(m.finra_short["symbol"]) == set(syms) - {"^VIX"}
    m2 = generate_market(SynthConfig(start="2024-01-02", end="2024-02-29", universe="tier1", n_symbols=3))
    assert set(m2.prices["symbol"]) - {"^VIX"} == {"SPY", "QQQ", "IWM"}


def test_tier2_is_the_designs_hundred_sector_constituents():
    from optimizer.data.universe import SECTOR_ETFS, SECTOR_MAP, TIER1, TIER2, TIER2_BY_SECTOR, TIER3, resolve_universe

    # the design: "top 10 holdings per sector ETF, ~100 unique stocks"; "Full expansion: ~130 tickers (all tiers)"
    assert len(TIER2) == len(set(TIER2)) == 100 and not set(TIER2) & set(TIER1 + TIER3)
    assert set(TIER2_BY_SECTOR) == set(SECTOR_ETFS) and all(len(v) >= 8 for v in TIER2_BY_SECTOR.values())
    assert all(SECTOR_MAP[s] == etf for etf, names in TIER2_BY_SECTOR.items() for s in names)
    assert len(resolve_universe("tier1+2+3")) == 133
    m = generate_market(SynthConfig(start="2024-01-02", end="2024-01-31", universe="tier1+2+3"))
    assert set(m.prices["symbol"]) - {"^VIX"} == set(TIER1 + TIER2 + TIER3)


@pytest.mark.realdata
def test_prices_file_mode_keeps_real_prices_bit_exactly():
    if not REAL_PRICES.exists():
        pytest.skip("real prices file absent")
    with gzip.open(REAL_PRICES, "rt") as fh:
        lines = fh.read().splitlines()
    want = {}
    for ln in lines[1:]:
        d, s, *v = ln.split(",")[:7]
        if "2023-01-01" <= d <= "2023-12-31":
            want[(d, s)] = tuple(float(x) for x in v)
    cfg = SynthConfig(prices_file=str(REAL_PRICES), start="2023-01-01", end="2023-12-31", universe="tier1+3")
    m = generate_market(cfg)
    p = m.prices
    kept = set(p["symbol"])
    assert "^VIX" in kept and "NKE" not in kept and "SOFI" not in kept and {"SPY", "PLTR", "HOOD"} <= kept
    got = {(f"{d:%Y-%m-%d}", s): (o, h, lo, c, float(v))
           for d, s, o, h, lo, c, v in p[["date", "symbol", "open", "high", "low", "close", "volume"]].itertuples(
               index=False)}
    assert got == {k: v for k, v in want.items() if k[1] in kept}
    assert set(m.finra_short["symbol"]) == kept - {"^VIX"}
    assert m.truth["oracle"] is True
    # oracle-placed episodes precede the real big moves (forward 10-session open-to-open return)
    fwd = _fwd_open(m, sorted(kept - {"^VIX"}))
    acc = m.episodes.loc[m.episodes["kind"] == "accumulation"]
    dist = m.episodes.loc[m.episodes["kind"] == "distribution"]
    f_acc = np.mean([fwd.at[r.start_date, r.symbol] for r in acc.itertuples()])
    f_dist = np.mean([fwd.at[r.start_date, r.symbol] for r in dist.itertuples()])
    assert f_acc > 0.05 and f_dist < -0.03
    null = generate_market(SynthConfig(prices_file=str(REAL_PRICES), start="2023-01-01", end="2023-12-31",
                                       universe="tier1+3", effect=0.0))
    pd.testing.assert_frame_equal(null.prices, m.prices)
    f_null = np.mean([fwd.at[r.start_date, r.symbol] for r in
                      null.episodes.loc[null.episodes["kind"] == "accumulation"].itertuples()])
    assert abs(f_null - np.nanmean(fwd.to_numpy())) < 0.02


def test_scale_500_symbols_one_year():
    m = generate_market(SynthConfig(n_symbols=500, start="2024-01-02", end="2024-12-31"))
    assert m.prices["symbol"].nunique() == 501
    assert m.finra_short["symbol"].nunique() == 500
    assert len(m.finra_short) == 500 * len(m.sessions)
    assert m.truth["episodes"]["accumulation"] > 500 * 4


# ---- end to end through the ingest ------------------------------------------------------------------------

def test_synth_to_db_goes_through_ingest_and_metrics(tmp_path):
    import duckdb

    cfg = SynthConfig(start="2024-01-02", end="2024-02-29", universe="tier1")
    out = synth_to_db(cfg, tmp_path / "raw", tmp_path / "s.duckdb")
    m = generate_market(cfg)
    assert out["symbols"] == 15 and out["sessions"] == len(m.sessions)
    assert out["rows"]["finra_short_daily"] == len(m.finra_short)
    assert out["rows"]["prices_daily"] == len(m.prices)
    assert out["rows"]["daily_metrics"] == len(m.finra_short)
    assert all(v["rows_rejected"] == 0 for v in out["ingest"].values())
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    try:
        db = con.execute(
            "SELECT date, symbol, short_volume, total_volume FROM daily_metrics ORDER BY date, symbol"
        ).df()
        lag = con.execute(
            "SELECT min(publication_date - week_start_date), max(publication_date - week_start_date) FROM finra_otc_weekly"
        ).fetchone()
    finally:
        con.close()
    want = m.finra_short.sort_values(["date", "symbol"]).reset_index(drop=True)
    assert np.array_equal(db["short_volume"].to_numpy(np.int64), want["short_volume"].to_numpy())
    assert tuple(int(x) for x in lag) == (18, 18)  # lastUpdateDate (Friday + 14 days) became publication_date


def test_prices_file_symbols_are_canonical(tmp_path):
    """`data synth --prices FILE` with Yahoo-style share classes (the real extra prices file has BRK-B): the file's
    symbols are canonicalized as the ingest does (BRK-B -> BRK.B), so a universe naming BRK.B (tier 2, or a list)
    keeps it; before, BRK.B was silently left out of the universe, and `all` wrote the raw spellings (and took an
    index such as ^GSPC for a stock: FINRA rows and planted episodes on it). A symbol
    the ingest would refuse is a file error naming it; two spellings of one symbol on one date a duplicate."""
    from optimizer.data.calendar import nyse_sessions
    from optimizer.errors import InputFileError

    rows = ["date,symbol,open,high,low,close,volume"]
    for i, day in enumerate(nyse_sessions("2024-01-02", "2024-02-29")):
        for sym, px in (("BRK-B", 350.0), ("AAPL", 180.0), ("brk/a", 5e5), ("^GSPC", 4700.0)):
            c = px * (1 + 0.001 * i)
            rows.append(f"{day:%Y-%m-%d},{sym},{c},{c * 1.01},{c * 0.99},{c},{0 if sym[0] == '^' else 1000 + i}")
    f = tmp_path / "p.csv"
    f.write_text("\n".join(rows) + "\n")
    for universe, want in (("tier1+2+3", {"AAPL", "BRK.B"}), ("BRK-B,AAPL", {"AAPL", "BRK.B"}),
                           ("all", {"AAPL", "BRK.A", "BRK.B"})):
        m = generate_market(SynthConfig(prices_file=str(f), start="2024-01-02", end="2024-02-29", universe=universe))
        assert set(m.prices["symbol"]) == want | {"^VIX"}, universe
        assert set(m.finra_short["symbol"]) == want, universe
        assert set(m.episodes["symbol"]) <= want, universe  # an index (^GSPC) is market context, never a name
    bad = tmp_path / "bad.csv"
    bad.write_text(rows[0] + "\n" + rows[1] + "\n2024-01-03,../x,1,1,1,1,1\n")
    with pytest.raises(InputFileError, match=r"bad\.csv: invalid symbol '\.\./x'"):
        generate_market(SynthConfig(prices_file=str(bad), start="2024-01-02", end="2024-02-29", universe="all"))
    # `data synth --prices p.csv.gz` names its folder after p, not "p.csv" (Path.stem)
    from click.testing import CliRunner

    from optimizer.cli import main
    gz = tmp_path / "p.csv.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    res = CliRunner().invoke(main, ["data", "synth", "--prices", str(gz), "--start", "2024-01-02", "--end", "2024-02-29",
                                    "--universe", "AAPL", "--out", str(tmp_path / "o"), "--format", "json"])
    assert res.exit_code == 0, res.output
    first = Path(json.loads(res.output)["out"])
    assert re.fullmatch(r".*_AAPL_prices-p-[0-9a-f]{8}", first.name), res.output
    # the folder names what the prices say: another p.csv.gz elsewhere (other rows) gets its own folder, the same
    # content the same folder (the file name alone gave both runs one folder, the second overwriting the first)
    other = tmp_path / "elsewhere" / "p.csv.gz"
    other.parent.mkdir()
    changed = rows[:-3] + [rows[-3].rsplit(",", 1)[0] + ",7"] + rows[-2:]  # AAPL's last volume
    assert changed[-3].split(",")[1] == "AAPL" and changed != rows
    other.write_bytes(gzip.compress(("\n".join(changed) + "\n").encode()))
    copy = tmp_path / "copy" / "p.csv.gz"
    copy.parent.mkdir()
    copy.write_bytes(gz.read_bytes())
    outs = []
    for src in (other, copy):
        r = CliRunner().invoke(main, ["data", "synth", "--prices", str(src), "--start", "2024-01-02", "--end",
                                      "2024-02-29", "--universe", "AAPL", "--out", str(tmp_path / "o"), "--format", "json"])
        assert r.exit_code == 0, r.output
        outs.append(Path(json.loads(r.output)["out"]))
    assert outs[0] != first and outs[1] == first
    dup = tmp_path / "dup.csv"
    dup.write_text(rows[0] + "\n" + rows[1] + "\n" + rows[1].replace("BRK-B", "BRK.B") + "\n")
    with pytest.raises(InputFileError, match=r"duplicate \(date, symbol\) = \(2024-01-02, BRK\.B\)"):
        generate_market(SynthConfig(prices_file=str(dup), start="2024-01-02", end="2024-02-29", universe="all"))


def test_an_interrupted_demo_data_step_leaves_no_store_and_the_next_run_builds_it(tmp_path, monkeypatch):
    """``accumopt demo`` (``make demo``) skips its data step when ``output/demo/darkpool.duckdb`` exists. A demo
    stopped during the ingest (Ctrl-C) left that file, empty or half-filled, so the next ``make demo`` went straight
    to phase A on it and failed ('no daily_metrics table'). ``synth_new_store`` builds under a temporary name and
    renames when complete: after an interruption nothing is left at the store's path."""
    import optimizer.data.synth as synth
    from optimizer.demo import run_demo
    from optimizer.errors import DataError

    def interrupted(con, kind, paths, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "ingest_paths", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path)
    demo = tmp_path / "demo"
    assert not (demo / "darkpool.duckdb").exists() and not list(demo.glob(".darkpool.duckdb*"))
    # the same all-or-nothing build, completing, on a small market; an existing store is not rebuilt over
    monkeypatch.undo()
    db = tmp_path / "s.duckdb"
    cfg = SynthConfig(start="2024-01-02", end="2024-01-31", universe=["AAPL", "SPY"])
    assert synth.synth_new_store(cfg, tmp_path / "raw", db)["symbols"] == 2
    assert db.is_file() and not list(tmp_path.glob(".s.duckdb*"))
    with pytest.raises(DataError, match="already exists"):
        synth.synth_new_store(cfg, tmp_path / "raw", db)
