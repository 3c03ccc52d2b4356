"""The fast engine against the plain reference (tests/reference_engine.py) on hundreds of random configurations.

(a) a synthetic random panel generated here (random-walk OHLC, random flows, NaNs in lit/otc/short);
(b) real adjusted prices from ../shared/data/real/prices_daily.csv.gz with a random synthetic flow layer;
(c) the project's embedded synthetic market (optimizer.data.synth), when that module exists;
plus position caps against the date-major reference. Trades must match exactly (same bars and reasons; prices
and returns to 1e-12 relative), display scores and metrics to 1e-9.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer.engine.features import FeatureCache
from optimizer.engine.metrics import run_metrics
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreParams, display_score
from optimizer.engine.signals import count_signals
from optimizer.engine.simulate import EXIT_REASONS, Caps, Costs, ExitParams, Span, Thresholds, simulate
from reference_engine import (
    RefExit, ref_components, ref_count_signals, ref_display, ref_metrics, ref_trades, ref_trades_capped,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
VARIANTS = ("A", "B", "C", "D", "vw_flow", "blended")
RULES = ("fixed", "first_dist", "2x_consec_dist", "score_decay", "hybrid")
Z_WINDOWS = (5, 10, 20, 40)
SECTORS = ("XLK", "XLF", "XLE", "XLV")


# ------------------------------------------------------------------------------------------------------ panels

def _ohlc(rng: np.random.Generator, T: int, N: int, start: np.ndarray | None = None):
    """Random-walk closes; opens gap from the previous close (sometimes a lot); valid high/low."""
    ret = rng.normal(0.0003, 0.02, (T, N))
    close = (start if start is not None else rng.uniform(20, 200, N)) * np.exp(np.cumsum(ret, axis=0))
    prev = np.vstack([close[:1] * np.exp(rng.normal(0, 0.01, (1, N))), close[:-1]])
    gap = rng.normal(0, 0.008, (T, N)) + np.where(rng.random((T, N)) < 0.03, rng.normal(0, 0.06, (T, N)), 0.0)
    open_ = prev * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.012, (T, N))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.012, (T, N))))
    return open_, high, low, close


def _flows(rng: np.random.Generator, close: np.ndarray, volume: np.ndarray) -> dict[str, np.ndarray]:
    """A random flow layer: short / lit volumes with some persistence, NaN holes in short, lit and otc."""
    T, N = close.shape
    tilt = np.cumsum(rng.normal(0, 0.15, (T, N)), axis=0) * 0.1
    share = 1.0 / (1.0 + np.exp(-(tilt + rng.normal(0, 0.4, (T, N)))))
    short_total = volume * rng.uniform(0.3, 0.6, (T, N))
    sb = short_total * share
    ss = short_total - sb
    lit_total = volume * rng.uniform(0.1, 0.3, (T, N))
    lshare = np.clip(share + rng.normal(0, 0.1, (T, N)), 0.05, 0.95)
    lb, ls = lit_total * lshare, lit_total * (1 - lshare)
    lit_nan = rng.random((T, N)) < 0.06
    lb[lit_nan] = np.nan
    ls[lit_nan] = np.nan
    short_nan = rng.random((T, N)) < 0.01
    sb[short_nan] = np.nan
    ss[short_nan] = np.nan
    otc = rng.uniform(0.1, 0.5, (T, N))
    otc[rng.random((T, N)) < 0.2] = np.nan
    return {
        "short_buy_volume": sb, "short_sell_volume": ss, "short_buy_sell_ratio": sb / ss,
        "lit_buy_volume": lb, "lit_sell_volume": ls, "lit_flow_imbalance": (lb - ls) / (lb + ls),
        "otc_participation_rate": otc,
    }


def _to_panel(dates, symbols, fields: dict[str, np.ndarray], sectors: dict[str, str] | None) -> Panel:
    T, N = len(dates), len(symbols)
    df = pd.DataFrame({"date": np.repeat(np.asarray(dates), N), "symbol": np.tile(np.array(symbols, dtype=object), T)})
    for k, v in fields.items():
        df[k] = v.reshape(-1)
    return Panel.from_frame(df, sectors=sectors)


def synthetic_panel(seed: int, T: int, N: int) -> Panel:
    rng = np.random.default_rng(seed)
    o, h, lo, c = _ohlc(rng, T, N)
    volume = rng.lognormal(15, 0.5, (T, N))
    fields = {"open": o, "high": h, "low": lo, "close": c, "volume": volume, **_flows(rng, c, volume)}
    symbols = [f"S{j:02d}" for j in range(N)]
    dates = pd.bdate_range("2021-01-04", periods=T)
    return _to_panel(dates, symbols, fields, {s: SECTORS[j % len(SECTORS)] for j, s in enumerate(symbols)})


def real_price_panel(seed: int) -> Panel:
    path = REAL / "prices_daily.csv.gz"
    if not path.exists():
        pytest.skip(f"real data absent: {path}")
    px = pd.read_csv(path, usecols=["date", "symbol", "open", "high", "low", "close", "volume"])
    px = px[px["symbol"] != "^VIX"]
    wide = {f: px.pivot(index="date", columns="symbol", values=f).sort_index() for f in
            ("open", "high", "low", "close", "volume")}
    dates = pd.to_datetime(wide["close"].index)
    symbols = list(wide["close"].columns)
    fields = {f: w[symbols].to_numpy(dtype=float) for f, w in wide.items()}
    rng = np.random.default_rng(seed)
    fields.update(_flows(rng, fields["close"], fields["volume"]))
    return _to_panel(dates, symbols, fields, None)


# ----------------------------------------------------------------------------------------------------- configs

def random_config(rng: np.random.Generator, T: int) -> dict:
    rule = RULES[rng.integers(len(RULES))]
    ex = {"rule": rule}
    if rule == "fixed":
        ex["hold_days"] = int(rng.integers(1, 16))
    if rule == "hybrid":
        ex["max_days"] = int(rng.integers(1, 31))
    if rng.random() < 0.4:
        ex["stop_loss"] = float(rng.uniform(0.01, 0.08))
    if rng.random() < 0.4:
        ex["take_profit"] = float(rng.uniform(0.02, 0.15))
    if rng.random() < 0.25:
        ex["time_stop"] = int(rng.integers(1, 21))
    if rng.random() < 0.3:
        ex["atr_stop"] = float(rng.uniform(0.5, 3.0))
    if rng.random() < 0.3:
        ex["trail_stop"] = float(rng.uniform(0.02, 0.10))
    sig_start = int(rng.integers(0, T // 2))
    sig_end = int(rng.integers(sig_start + 1, T + 1))
    data_end = sig_end if rng.random() < 0.3 else int(rng.integers(sig_end, T + 1))
    lo, hi = (0.7, 1.3) if rng.random() < 0.7 else (float(rng.uniform(0.4, 1.0)), float(rng.uniform(1.0, 1.6)))
    return {
        "score": {
            "variant": VARIANTS[rng.integers(len(VARIANTS))],
            "w_short": float(rng.uniform(0.05, 1.0)), "w_lit": float(rng.uniform(0.0, 1.0)),
            "w_price": float(rng.uniform(0.0, 1.0)), "z_window": int(Z_WINDOWS[rng.integers(len(Z_WINDOWS))]),
            "intensity_lo": lo, "intensity_hi": hi,
        },
        # a buy threshold below 50 now and then: the signal close itself can then count toward score_decay
        "buy": float(rng.uniform(55, 80) if rng.random() < 0.9 else rng.uniform(40, 50)),
        "sell": float(rng.uniform(20, 38)),
        "exit": ex,
        "costs": (float(rng.uniform(0, 3)), float(rng.uniform(0, 10))),
        "span": (sig_start, sig_end, data_end),
    }


# ------------------------------------------------------------------------------------------------- comparison

class Oracle:
    """Reference z-score components cached per z_window, fast FeatureCache built once per panel."""

    def __init__(self, panel: Panel, min_periods: int | None = None):
        self.panel = panel
        self.min_periods = min_periods
        self.cache = FeatureCache(panel, min_periods=min_periods)
        self._comps: dict[int, list] = {}

    def ref_display(self, sp: dict) -> np.ndarray:
        w = sp["z_window"]
        if w not in self._comps:
            self._comps[w] = ref_components(self.panel, w, self.min_periods)
        return ref_display(self.panel, **sp, min_periods=self.min_periods, components=self._comps[w])

    def fast_display(self, sp: dict) -> np.ndarray:
        return display_score(self.cache, ScoreParams(**sp))


def compare_display(ref: np.ndarray, fast: np.ndarray, where: str) -> None:
    assert fast.shape == ref.shape, where
    nan_r, nan_f = np.isnan(ref), np.isnan(fast)
    if not np.array_equal(nan_r, nan_f):
        t, s = np.argwhere(nan_r != nan_f)[0]
        raise AssertionError(f"{where}: display NaN pattern differs first at row {t} symbol {s}: "
                             f"reference {ref[t, s]} vs fast {fast[t, s]}")
    diff = np.abs(np.where(nan_r, 0.0, ref - fast))
    if diff.max(initial=0.0) > 1e-9:
        t, s = np.unravel_index(np.argmax(diff), diff.shape)
        raise AssertionError(f"{where}: display differs at row {t} symbol {s}: "
                             f"reference {ref[t, s]} vs fast {fast[t, s]}")


def fast_frame(tr) -> pd.DataFrame:
    df = pd.DataFrame({
        "symbol": np.asarray(tr.symbol, dtype=np.int64), "signal_idx": np.asarray(tr.signal_idx, dtype=np.int64),
        "entry_idx": np.asarray(tr.entry_idx, dtype=np.int64), "exit_idx": np.asarray(tr.exit_idx, dtype=np.int64),
        "entry_price": tr.entry_price, "exit_price": tr.exit_price, "gross_ret": tr.gross_ret, "net_ret": tr.net_ret,
        "exit_reason": [EXIT_REASONS[int(r)] for r in tr.exit_reason], "open_at_end": np.asarray(tr.open_at_end, bool),
        "score": tr.score,
    })
    return df.sort_values(["symbol", "entry_idx"], kind="stable").reset_index(drop=True)


def compare_trades(ref: pd.DataFrame, fast: pd.DataFrame, where: str, symbols) -> None:
    key = ["symbol", "signal_idx", "entry_idx", "exit_idx", "exit_reason", "open_at_end"]
    r = ref[key].astype({"symbol": int, "signal_idx": int, "entry_idx": int, "exit_idx": int}).itertuples(index=False)
    f = fast[key].itertuples(index=False)
    rl, fl = [tuple(x) for x in r], [tuple(x) for x in f]
    if rl != fl:
        only_r = sorted(set(rl) - set(fl))[:3]
        only_f = sorted(set(fl) - set(rl))[:3]
        name = lambda rows: [(symbols[x[0]], *x[1:]) for x in rows]  # noqa: E731
        raise AssertionError(f"{where}: trades differ ({len(rl)} reference vs {len(fl)} fast); reference only "
                             f"(symbol, signal, entry, exit, reason, open_at_end): {name(only_r)}; "
                             f"fast only: {name(only_f)}")
    for col in ("entry_price", "exit_price", "gross_ret", "net_ret", "score"):
        a, b = ref[col].to_numpy(float), fast[col].to_numpy(float)
        bad = ~np.isclose(a, b, rtol=1e-12, atol=1e-12)
        if bad.any():
            i = int(np.argmax(bad))
            raise AssertionError(f"{where}: {col} differs on trade {rl[i]}: reference {a[i]!r} vs fast {b[i]!r}")


def compare_metrics(ref: dict, fast: dict, where: str) -> None:
    for k, v in ref.items():
        assert k in fast, f"{where}: fast metrics lack {k!r}"
        if not math.isclose(float(fast[k]), float(v), rel_tol=1e-9, abs_tol=1e-9):
            raise AssertionError(f"{where}: metric {k}: reference {v!r} vs fast {fast[k]!r}")


def run_config(oracle: Oracle, cfg: dict, where: str,
               caps: tuple[int | None, int | None] | None = None) -> pd.DataFrame:
    """Compare display, trades, signal count and metrics of one configuration; returns the reference trades."""
    panel = oracle.panel
    disp_r = oracle.ref_display(cfg["score"])
    disp_f = oracle.fast_display(cfg["score"])
    compare_display(disp_r, disp_f, where)
    sig_start, sig_end, data_end = cfg["span"]
    args = (panel, disp_r, cfg["buy"], cfg["sell"], RefExit(**cfg["exit"]), cfg["costs"], sig_start, sig_end, data_end)
    if caps is None:
        ref_tr = ref_trades(*args)
        fast_caps = None
    else:
        ref_tr = ref_trades_capped(*args, max_positions=caps[0], max_per_sector=caps[1])
        fast_caps = Caps(max_positions=caps[0], max_per_sector=caps[1])
    span = Span(sig_start, sig_end, data_end)
    costs = Costs(commission_bps=cfg["costs"][0], slippage_bps=cfg["costs"][1])
    fast_tr = simulate(panel, disp_r, Thresholds(buy=cfg["buy"], sell=cfg["sell"]), ExitParams(**cfg["exit"]),
                       costs, span, caps=fast_caps)
    compare_trades(ref_tr, fast_frame(fast_tr), where, panel.symbols)
    n_sig = ref_count_signals(disp_r, cfg["buy"], sig_start, sig_end)
    assert count_signals(disp_r, cfg["buy"], span) == n_sig, f"{where}: count_signals"
    compare_metrics(ref_metrics(ref_tr, panel, cfg["span"], cfg["costs"], n_sig),
                    run_metrics(fast_tr, panel, span, n_sig), where)
    return ref_tr


# -------------------------------------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def synth_oracle() -> Oracle:
    return Oracle(synthetic_panel(seed=11, T=300, N=20))


def test_reference_panel_has_the_planted_holes(synth_oracle):
    p = synth_oracle.panel
    assert p.shape == (300, 20)
    assert np.isnan(p["lit_buy_volume"]).mean() > 0.03 and np.isnan(p["otc_participation_rate"]).mean() > 0.1
    assert (p["low"] <= np.minimum(p["open"], p["close"])).all()
    assert (p["high"] >= np.maximum(p["open"], p["close"])).all()


def test_reference_uncapped_and_date_major_loops_agree(synth_oracle):
    rng = np.random.default_rng(5)
    for i in range(15):
        cfg = random_config(rng, 300)
        disp = synth_oracle.ref_display(cfg["score"])
        a = ref_trades(synth_oracle.panel, disp, cfg["buy"], cfg["sell"], RefExit(**cfg["exit"]), cfg["costs"],
                       *cfg["span"])
        b = ref_trades_capped(synth_oracle.panel, disp, cfg["buy"], cfg["sell"], RefExit(**cfg["exit"]), cfg["costs"],
                              *cfg["span"])
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("block", [0, *(pytest.param(b, marks=pytest.mark.slow) for b in range(1, 6))])
def test_fast_engine_matches_reference_synthetic(synth_oracle, block):
    rng = np.random.default_rng(1000 + block)
    trades = [run_config(synth_oracle, cfg, f"synthetic block {block} config {i}: {cfg}")
              for i, cfg in enumerate(random_config(rng, 300) for _ in range(50))]
    all_tr = pd.concat(trades)
    assert len(all_tr) > 500  # the configs really trade, and every exit path is exercised
    assert set(all_tr["exit_reason"]) == set(EXIT_REASONS), set(EXIT_REASONS) - set(all_tr["exit_reason"])


def test_fast_engine_matches_reference_min_periods():
    oracle = Oracle(synthetic_panel(seed=3, T=200, N=8), min_periods=3)
    rng = np.random.default_rng(77)
    n = sum(len(run_config(oracle, random_config(rng, 200), f"min_periods=3 config {i}")) for i in range(15))
    assert n > 50


def test_fast_engine_matches_reference_with_caps():
    oracle = Oracle(synthetic_panel(seed=21, T=250, N=16))
    rng = np.random.default_rng(99)
    capped = 0
    for i in range(24):
        cfg = random_config(rng, 250)
        cfg["buy"] = float(rng.uniform(55, 65))  # many simultaneous signals so the caps bind
        caps = [(3, None), (None, 1), (4, 2), (1, 1)][i % 4]
        n_capped = len(run_config(oracle, cfg, f"caps {caps} config {i}: {cfg}", caps=caps))
        n_free = len(ref_trades(oracle.panel, oracle.ref_display(cfg["score"]), cfg["buy"], cfg["sell"],
                                RefExit(**cfg["exit"]), cfg["costs"], *cfg["span"]))
        capped += n_capped < n_free
    assert capped >= 12  # the caps really bind in most configs


@pytest.mark.slow
@pytest.mark.realdata
def test_fast_engine_matches_reference_real_prices():
    panel = real_price_panel(seed=8)
    assert panel.shape[0] == 1003 and panel.shape[1] >= 28
    oracle = Oracle(panel)
    rng = np.random.default_rng(2024)
    n = sum(len(run_config(oracle, random_config(rng, panel.shape[0]), f"real prices config {i}")) for i in range(40))
    assert n > 1000


def embedded_synth_panel() -> Panel:
    """The project's synthetic market (in memory) turned into panel fields with the docs/DATA.md formulas
    (short_buy = FINRA short volume, short_sell = total - short, lit imbalance, OTC weekly rate as of its
    publication date). Built here, not by the metrics builder, so only the engine is under test."""
    synth = pytest.importorskip("optimizer.data.synth")
    m = synth.generate_market(synth.SynthConfig(seed=3, start="2024-01-02", end="2024-12-31", n_symbols=10))
    px = m.prices[m.prices["symbol"] != "^VIX"].copy()
    px["date"] = pd.to_datetime(px["date"])
    fs = m.finra_short.assign(date=lambda d: pd.to_datetime(d["date"]))
    lf = m.lit_flow.assign(date=lambda d: pd.to_datetime(d["date"]))
    df = px.merge(fs[["date", "symbol", "short_volume", "total_volume"]], on=["date", "symbol"], how="left")
    df = df.merge(lf[["date", "symbol", "lit_buy_volume", "lit_sell_volume"]], on=["date", "symbol"], how="left")
    df["short_buy_volume"] = df["short_volume"].astype(float)
    df["short_sell_volume"] = (df["total_volume"] - df["short_volume"]).astype(float)
    df["short_buy_sell_ratio"] = df["short_buy_volume"] / df["short_sell_volume"]
    lb, ls = df["lit_buy_volume"].astype(float), df["lit_sell_volume"].astype(float)
    df["lit_flow_imbalance"] = ((lb - ls) / (lb + ls)).where(lb + ls >= 10_000)
    ow = m.otc_weekly.rename(columns={"issueSymbolIdentifier": "symbol"})
    ow = ow.groupby(["symbol", "summaryStartDate", "lastUpdateDate"], as_index=False)["totalWeeklyShareQuantity"].sum()
    ow["week"] = pd.to_datetime(ow["summaryStartDate"]).astype("datetime64[ns]")
    px["week"] = (px["date"] - pd.to_timedelta(px["date"].dt.day_of_week, unit="D")).astype("datetime64[ns]")
    wk_vol = px.groupby(["symbol", "week"], as_index=False)["volume"].sum()
    ow = ow.merge(wk_vol, on=["symbol", "week"], how="inner")
    ow["otc_participation_rate"] = ow["totalWeeklyShareQuantity"] / ow["volume"]
    ow["pub"] = pd.to_datetime(ow["lastUpdateDate"]).astype("datetime64[ns]")
    df["date"] = df["date"].astype("datetime64[ns]")
    df = pd.merge_asof(df.sort_values("date"), ow[["symbol", "pub", "otc_participation_rate"]].sort_values("pub"),
                       left_on="date", right_on="pub", by="symbol", direction="backward")
    cols = ["date", "symbol", "open", "high", "low", "close", "volume", "short_buy_volume", "short_sell_volume",
            "short_buy_sell_ratio", "lit_buy_volume", "lit_sell_volume", "lit_flow_imbalance", "otc_participation_rate"]
    return Panel.from_frame(df[cols])


def test_fast_engine_matches_reference_embedded_synth_market():
    panel = embedded_synth_panel()
    assert panel.shape[1] >= 8 and np.isfinite(panel["otc_participation_rate"]).mean() > 0.5
    oracle = Oracle(panel)
    rng = np.random.default_rng(31)
    n = sum(len(run_config(oracle, random_config(rng, panel.shape[0]), f"embedded synth config {i}"))
            for i in range(25))
    assert n > 100
