"""Embedded synthetic market: the default data of the demo and of every test.

It writes REAL-FORMAT raw files (FINRA ``CNMSshvolYYYYMMDD.txt`` daily files, a prices CSV, a lit-flow CSV, a
FINRA OTC weekly-summary CSV, an options CSV) that go through the same ingest path as real data, plus a ground
truth folder (``truth/episodes.csv``, ``truth/README.json``) that the optimizer never reads.

Model (T NYSE sessions from :func:`optimizer.data.calendar.nyse_sessions` x N symbols; all noise from
``numpy.random.Generator(PCG64)`` streams spawned from ``SeedSequence(seed)``, one stream per layer, so a
layer's draws never depend on the family, the effect size or another layer):

* Regime: 2-state Markov chain, calm / stressed (P(calm->stressed) = 0.015, P(stressed->calm) = 0.06 per
  session: ~20 % stressed, spells ~17 sessions). Stressed: market and sector factor vol x2.5, idiosyncratic
  vol x1.7, market drift -0.04 %/session (calm +0.05 %), volume x e^0.2.
* Prices: close-to-close log return = beta x market + loading x sector factor + idiosyncratic noise (+ planted
  drift). Sector factors belong to the 8 sector ETFs (``SECTOR_ETFS``); a sector ETF's own return is its beta x
  market + its sector factor (+ tiny noise), and its stocks (``SECTOR_MAP`` / ``TIER2_BY_SECTOR``; unknown and
  ``SYN*`` names round-robin over the sectors) load on the same factor, so ETF and stocks co-move. SPY is the
  market (beta 1); QQQ loads on XLK, USO on XLE; IWM, DIA, TLT, GLD have their own beta and noise.
  Open = previous close x exp(overnight gap), gap = 30 % of the day's noise return + small noise; the rest of
  the return (and ALL planted drift) is intraday, so a drift starting at session s is earned by buying at
  open[s]. High/low extend max/min(open, close) by |N| x 0.35 x daily vol. Start prices log-uniform 20-500.
  Consolidated volume: log = symbol level + 0.25 x |return| / vol + regime + AR(1) noise (phi 0.6, sd 0.16).
  ``^VIX`` (volume 0): log level mean-reverts (speed 0.2) to ~15.5 calm / ~31 stressed (slow noise around
  the target), daily noise 4.5 % and -3 x the market return; OHLC rounded to cents.
* FINRA (CNMS): total = 30-50 % of consolidated volume (symbol level + slow AR noise); short share = a
  persistent symbol level (0.38-0.55, ETFs 0.45-0.58) + AR(1) noise (phi 0.5, sd 0.022-0.035); short-exempt
  = 0-2 % of short. Market field ``B,Q,N``.
* Lit flow (method ``provided``): 88-98 % of the non-FINRA volume split into buys/sells with imbalance
  0.02 x (same-day return z, clipped at 4) + N(0, 0.05): correlated with the SAME day's return, never the future.
* OTC weekly (FINRA weekly summary, tier T1): per Monday-week, ATS = 5-12 % and non-ATS = 8-18 % of the week's
  consolidated volume with slow log-AR noise; ATS +15 % in weeks holding an episode day. Published
  (``lastUpdateDate``) on the week's Friday + 14 days; weeks published after ``end`` are not in the file.
* Options (tier-1 ETFs and the big tier-3 caps MSFT AAPL GOOGL AMZN NVDA AVGO META TSLA AMD JPM): contracts ~
  volume/100, put/call ~0.75 (ETFs 1.2) x1.3 stressed, ATM IV = annualised vol x (VIX/16)^0.9.

Planted effect. Hidden episodes (3-6 sessions, ``episode_rate`` per symbol per year, ``accumulation_share``
of them accumulation, the rest distribution; non-overlapping, first one after session 21) raise (accumulation)
or lower (distribution) the carrying family's signal on every episode day, by U(0.8, 1.2) x:

* ``ratio``: short share +/-0.08 (3-4 noise sd: short-buy share of total volume, variants B/C/D) and lit
  imbalance +/-0.025;
* ``volume``: consolidated (hence FINRA short and total) volume x e^(+/-1.3), short share unchanged (variant
  A: short-buy volume level) and lit imbalance +/-0.025;
* ``lit``: lit imbalance +/-0.15 only.

Prices then drift by +/-0.4 % x effect x U(0.5, 1.5) per session (log, intraday) from the session AFTER the
episode's first day (the first day's FINRA file is public after its close, so a rule that buys at the next open
after a high-score close earns it) until 5-20 sessions after the episode's last day. Drift windows of
consecutive episodes may overlap (they add up). A constant offset on every session of every symbol (minus the
EXPECTED planted drift per session, ~-0.05 % at the defaults, from the parameters only, never from the drawn
episodes) keeps the expected net planted drift at zero, so price levels stay realistic.

Null market (``effect=0``): the episodes and their flow bumps are generated exactly as with effect > 0 (same
random streams, same draws) and only the price drift is multiplied by the effect. So the FINRA, lit-flow and OTC
layers (and the volume column) of an effect-0 market are bit-identical to the effect-1 market's (options
premiums follow the prices), and its prices are the effect-1 prices without the drift: flows keep the same
(bumpy) distribution but predict nothing. This is preferred over removing the bumps,
because an optimizer can then not tell the null market from the planted one by looking at the flows alone.
``effect`` therefore scales the predictive content (the drift), not the bump size. The one non-planted
predictability left is realistic: volume (hence the short-VOLUME level, not the short share) reflects the
volatility regime, whose market drift differs slightly (calm +0.05 %, stressed -0.04 % per session).

Correlated null (``price_feedback`` = k, default 0 = off): the short share gains 0.03 x k and the lit imbalance
0.02 x k per unit of z, the trailing 5-session close-to-close log return up to and including the day, divided by
the trailing 20-session daily volatility x sqrt(5) and clipped at +/-3 (standardized by the trailing volatility, the
reaction does not reveal the volatility regime, whose drift differs). Such flows chase past prices: they are correlated with prices and,
through the market factor, with each other across symbols (signals cluster in time), but carry no information about
the future. With ``effect=0`` this is the null a dependence-blind test mistakes for an edge; no other layer and no
random draw changes, and k = 0 writes byte-identical files.

Universe: ``tier1`` / ``tier1+3`` / ``tier1+2+3`` / a symbol list (``all`` = tier1+2+3); ``n_symbols`` keeps the
first N of it, or adds ``SYN0001``.. names up to N. Symbols are sorted; ``^VIX`` is always added to the prices.

``prices_file`` mode: real bars of the file's symbols (canonical, as the ingest spells them: file symbols ∩
universe, or all with ``universe="all"``; an index such as ``^GSPC`` is never a name, ``^VIX`` is kept) over the
file's NYSE sessions in [start, end] are kept bit-exactly (their volume too) and only the flow layers are
synthesized around them (with ``family="volume"`` the FINRA/lit/OTC volumes carry the volume bump while the real
volume column stays untouched). The planted effect cannot move real prices, so with
effect > 0 the episodes are ORACLE-PLACED: they start at the sessions whose forward 10-session open-to-open
return (open t+1 -> open t+11) is among the symbol's largest (accumulation) / smallest (distribution);
with 0 < effect < 1 only that share of them is oracle-placed, the rest random; effect 0 places them all at
random (null flows). This looks into the future and exists for TESTING ONLY. The truth's ``daily_drift`` is
then the realized mean log return of the window. Without ``^VIX`` in the file the VIX-like level is 1.1 x the
20-session realized vol of the mean return, added as ``^VIX`` bars (open = previous level).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from optimizer.data.calendar import as_date, market_today, nyse_sessions
from optimizer.data.ingest import ingest_paths
from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import RAW_TABLES, connect, table_exists
from optimizer.errors import DataError, ParameterError, check_param
from optimizer.settings import Settings
from optimizer.paths import atomic_write
from optimizer.data.universe import VIX_SYMBOL, resolve_universe
from optimizer.data.symbols import is_context_symbol
from optimizer.data import _synth_flows as fl
from optimizer.data import _synth_prices as pr

__all__ = ["SynthConfig", "SynthMarket", "generate_market", "write_market", "synth_to_db", "synth_new_store",
           "FAMILIES"]

FAMILIES = fl.FAMILIES
_STREAMS = ("params", "regime", "prices", "episodes", "finra", "lit", "otc", "options")
_MARKET = "B,Q,N"
_CNMS_HEADER = "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market"
OTC_COLUMNS = ("issueSymbolIdentifier", "tierIdentifier", "summaryStartDate", "totalWeeklyShareQuantity",
               "totalWeeklyTradeCount", "summaryTypeCode", "lastUpdateDate")
OPTIONS_COLUMNS = ("date", "symbol", "call_volume", "put_volume", "call_premium", "put_premium", "itm_call_volume",
                   "otm_call_volume", "itm_put_volume", "otm_put_volume", "atm_iv")
OTC_LAG_DAYS = 14


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_num(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def _check_date(name: str, value: object) -> pd.Timestamp:
    return pd.Timestamp(as_date(value, name))  # the one rule for a date a user writes (calendar.as_date)


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthetic market; every field is validated at construction (ParameterError)."""

    seed: int = 7
    start: str = "2023-01-03"
    end: str = "2024-12-31"
    universe: str | Sequence[str] = "tier1+3"
    n_symbols: int | None = None
    effect: float = 1.0
    family: str = "ratio"
    prices_file: str | None = None
    episode_rate: float = 10.0
    accumulation_share: float = 0.6
    price_feedback: float = 0.0

    def __post_init__(self) -> None:
        check_param(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        object.__setattr__(self, "seed", int(self.seed))  # a numpy integer as the int it is (written to JSON)
        lo, hi = _check_date("start", self.start), _check_date("end", self.end)
        check_param(lo <= hi, "end", f"on or after start={self.start!r}", self.end)
        for name, day in (("start", lo), ("end", hi)):  # a date / Timestamp / datetime64 as the ISO text it is
            if not isinstance(getattr(self, name), str):  # (the config is written to JSON beside the raw files)
                object.__setattr__(self, name, day.date().isoformat())
        u = self.universe
        if isinstance(u, str):
            check_param(bool(u.strip()), "universe", "a tier name or a non-empty symbol list", u)
            if u.strip().lower() != "all":
                resolve_universe(u)  # raises ParameterError naming the universe
        else:
            ok = isinstance(u, Sequence) and len(u) > 0 and all(isinstance(s, str) and s.strip() for s in u)
            check_param(ok, "universe", "a tier name or a non-empty sequence of symbols", u)
            object.__setattr__(self, "universe", tuple(str(s).strip().upper() for s in u))
        check_param(self.n_symbols is None or (_is_int(self.n_symbols) and 1 <= self.n_symbols <= 100_000),
                    "n_symbols", "None or an integer in [1, 100000]", self.n_symbols)
        if self.n_symbols is not None:
            object.__setattr__(self, "n_symbols", int(self.n_symbols))
        check_param(_is_num(self.effect) and 0 <= self.effect <= 10, "effect", "a number in [0, 10]", self.effect)
        check_param(self.family in FAMILIES, "family", f"one of {', '.join(FAMILIES)}", self.family)
        check_param(self.prices_file is None or (isinstance(self.prices_file, (str, Path)) and str(self.prices_file)),
                    "prices_file", "None or a file path", self.prices_file)
        check_param(self.prices_file is None or self.n_symbols is None, "n_symbols",
                    "None when prices_file is set (real prices exist only for the file's symbols)", self.n_symbols)
        check_param(_is_num(self.episode_rate) and 0 <= self.episode_rate <= 40, "episode_rate",
                    "a number in [0, 40] (episodes per symbol per year)", self.episode_rate)
        check_param(_is_num(self.accumulation_share) and 0 <= self.accumulation_share <= 1, "accumulation_share",
                    "a number in [0, 1]", self.accumulation_share)
        check_param(_is_num(self.price_feedback) and -5 <= self.price_feedback <= 5, "price_feedback",
                    "a number in [-5, 5] (0 = flows do not react to past prices)", self.price_feedback)


@dataclass(frozen=True, eq=False)
class SynthMarket:
    """The generated market, in memory (long frames sorted by date then symbol)."""

    config: SynthConfig
    prices: pd.DataFrame        # date, symbol, open, high, low, close, volume (incl. ^VIX)
    finra_short: pd.DataFrame   # date, symbol, short_volume, short_exempt_volume, total_volume, market
    lit_flow: pd.DataFrame      # date, symbol, lit_buy_volume, lit_sell_volume, method
    otc_weekly: pd.DataFrame    # FINRA weekly-summary field names (OTC_COLUMNS)
    options: pd.DataFrame       # OPTIONS_COLUMNS
    episodes: pd.DataFrame      # symbol, kind, start_date, end_date, drift_start, drift_end, daily_drift
    truth: dict = field(default_factory=dict)

    @property
    def sessions(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.prices["date"].drop_duplicates().sort_values())


# ---- universe / calendar ------------------------------------------------------------------------------------

def _synthetic_universe(cfg: SynthConfig) -> list[str]:
    u = cfg.universe
    if isinstance(u, str) and u.strip().lower() == "all":
        u = "tier1+2+3"
    syms = [s for s in resolve_universe(u) if s != VIX_SYMBOL]
    if cfg.n_symbols is not None:
        if cfg.n_symbols <= len(syms):
            syms = syms[: cfg.n_symbols]
        else:
            extra = cfg.n_symbols - len(syms)
            width = max(4, len(str(extra)))
            syms += [f"SYN{i:0{width}d}" for i in range(1, extra + 1)]
    return sorted(dict.fromkeys(syms))


def _streams(seed: int) -> dict[str, np.random.Generator]:
    kids = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.Generator(np.random.PCG64(k)) for name, k in zip(_STREAMS, kids)}


# ---- frame builders -----------------------------------------------------------------------------------------

def _str_take(values: Sequence[str], idx: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values[idx]`` as a pandas string array (via Arrow take: fast for millions of rows)."""
    return pd.array(pa.array(list(values), type=pa.large_string()).take(pa.array(idx, type=pa.int64())), dtype="str")


def _long(dates: pd.DatetimeIndex, symbols: list[str], mask: np.ndarray, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """T x N matrices -> long frame (date-major, symbols in list order) of the cells where ``mask``."""
    t_idx, s_idx = np.nonzero(mask)
    out = {"date": pd.DatetimeIndex(dates)[t_idx], "symbol": _str_take(symbols, s_idx)}
    for k, v in cols.items():
        out[k] = v[t_idx, s_idx] if isinstance(v, np.ndarray) and v.ndim == 2 else v
    return pd.DataFrame(out)


def _int(a: np.ndarray) -> np.ndarray:
    return np.nan_to_num(a, nan=0.0).astype(np.int64)


def _episodes_frame(ep: fl.Episodes, dates: pd.DatetimeIndex, symbols: list[str]) -> pd.DataFrame:
    sym = np.asarray(symbols, dtype=object)
    return pd.DataFrame({
        "symbol": pd.array(sym[ep.sym], dtype="str"),
        "kind": pd.array(np.where(ep.sign > 0, "accumulation", "distribution"), dtype="str"),
        "start_date": dates[ep.start],
        "end_date": dates[ep.end],
        "drift_start": dates[ep.drift_start],
        "drift_end": dates[ep.drift_end],
        "daily_drift": np.round(ep.drift.astype(np.float64), 8),
    }).sort_values(["start_date", "symbol"], kind="stable").reset_index(drop=True)


def _otc_frame(otc: dict, symbols: list[str], end: pd.Timestamp) -> pd.DataFrame:
    """Two rows per published (week, symbol) with volume: ATS_W_SMBL then OTC_W_SMBL."""
    weeks = otc["weeks"]
    lag = pd.Timedelta(days=4 + OTC_LAG_DAYS)
    keep_w = np.asarray(weeks + lag <= end)
    t_idx, s_idx = np.nonzero((otc["week_volume"] > 0) & keep_w[:, None])
    t2, s2 = np.repeat(t_idx, 2), np.repeat(s_idx, 2)
    ats = np.tile(np.array([True, False]), len(t_idx))
    q = np.where(ats, _int(otc["ats"])[t2, s2], _int(otc["non"])[t2, s2])
    tc = np.where(ats, _int(otc["ats_tc"])[t2, s2], _int(otc["non_tc"])[t2, s2])
    wk = pd.Series(weeks[t2])
    return pd.DataFrame({
        "issueSymbolIdentifier": _str_take(symbols, s2),
        "tierIdentifier": "T1",
        "summaryStartDate": pd.array(_date_str(wk, "%Y-%m-%d"), dtype="str"),
        "totalWeeklyShareQuantity": q,
        "totalWeeklyTradeCount": tc,
        "summaryTypeCode": pd.array(np.where(ats, "ATS_W_SMBL", "OTC_W_SMBL"), dtype="str"),
        "lastUpdateDate": pd.array(_date_str(wk + lag, "%Y-%m-%d"), dtype="str"),
    })


# ---- generation ---------------------------------------------------------------------------------------------

def _synthetic_core(cfg: SynthConfig, rs: dict) -> tuple:
    dates = nyse_sessions(cfg.start, cfg.end)
    if len(dates) == 0:
        raise DataError(f"no NYSE session between start={cfg.start!r} and end={cfg.end!r}")
    symbols = _synthetic_universe(cfg)
    p = pr.symbol_params(symbols, rs["params"])
    t_n, n = len(dates), len(symbols)
    stressed = pr.simulate_regime(t_n, rs["regime"])
    ep = fl.random_episodes(n, t_n, cfg.episode_rate, cfg.accumulation_share, cfg.effect, rs["episodes"])
    bump, drift = fl.episode_matrices(ep, t_n, n)
    offset = fl.expected_drift_per_session(cfg.episode_rate, cfg.accumulation_share, cfg.effect)
    drift = drift - offset  # zero expected net planted drift: price levels stay realistic
    vmult = np.exp(fl.BUMPS[cfg.family]["logvol"] * bump)
    layer = pr.simulate_prices(p, stressed, drift, vmult, rs["prices"])
    mask = np.ones((t_n, n), dtype=bool)
    vix = layer.vix  # ^VIX sorts after every upper-case ticker: append it as the last column (date-major order)
    cat = lambda a, col: np.column_stack([a, col])  # noqa: E731
    prices = _long(dates, symbols + [VIX_SYMBOL], np.ones((t_n, n + 1), dtype=bool), {
        "open": cat(layer.open, vix[:, 0]), "high": cat(layer.high, vix[:, 1]), "low": cat(layer.low, vix[:, 2]),
        "close": cat(layer.close, vix[:, 3]), "volume": cat(_int(layer.volume), np.zeros(t_n, dtype=np.int64))})
    extra = {"drift_offset_per_session": -round(offset, 10)}
    return dates, symbols, p, layer, mask, ep, bump, prices.reset_index(drop=True), "synthetic", extra


def _file_core(cfg: SynthConfig, rs: dict) -> tuple:
    raw = pr.load_prices_file(cfg.prices_file)
    sessions = nyse_sessions(cfg.start, cfg.end)
    raw = raw.loc[raw["date"].isin(sessions)]
    avail = sorted(s for s in raw["symbol"].unique() if not is_context_symbol(s))  # ^GSPC, ^VIX: never a name
    u = cfg.universe
    if isinstance(u, str) and u.strip().lower() == "all":
        symbols = avail
    else:
        symbols = sorted(s for s in resolve_universe(
            u, available=avail, source=f"prices_file {cfg.prices_file} in [{cfg.start}, {cfg.end}]") if s != VIX_SYMBOL)
    if not symbols:
        raise ParameterError(
            f"universe must share a symbol with prices_file {cfg.prices_file} (file has {len(avail)} symbols "
            f"in [{cfg.start}, {cfg.end}]), got universe={cfg.universe!r}")
    keep = raw.loc[raw["symbol"].isin(symbols + [VIX_SYMBOL])]
    dates = pd.DatetimeIndex(sorted(keep.loc[keep["symbol"] != VIX_SYMBOL, "date"].unique()))
    keep = keep.loc[keep["date"].isin(dates)]
    p = pr.symbol_params(symbols, rs["params"])
    bars = {c: keep.loc[keep["symbol"] != VIX_SYMBOL].pivot(index="date", columns="symbol", values=c)
            .reindex(index=dates, columns=symbols).to_numpy(dtype=np.float64)
            for c in ("open", "high", "low", "close", "volume")}
    vix_close = None
    if (keep["symbol"] == VIX_SYMBOL).any():
        vix_close = (keep.loc[keep["symbol"] == VIX_SYMBOL].set_index("date")["close"].reindex(dates)
                     .to_numpy(dtype=np.float64))
    ret, stressed, vix_level = pr.realized_layer(bars, vix_close)
    with np.errstate(invalid="ignore"):
        vol = np.nanstd(np.where(np.isfinite(ret), ret, np.nan)[1:], axis=0) if len(dates) > 1 else np.full(
            len(symbols), 0.02)
    vol = np.where(np.isfinite(vol) & (vol > 0), vol, 0.02)
    p = pr.SymbolParams(p.symbols, p.sector, p.beta, p.load, p.idio, vol, p.price0, p.volume0, p.is_etf,
                        p.has_options)
    ep = fl.oracle_episodes(bars["open"], cfg.episode_rate, cfg.accumulation_share, cfg.effect, rs["episodes"])
    t_n, n = len(dates), len(symbols)
    bump, _ = fl.episode_matrices(ep, t_n, n)
    mask = np.isfinite(bars["close"]) & np.isfinite(bars["volume"])
    vmult = np.exp(fl.BUMPS[cfg.family]["logvol"] * bump)
    layer = pr.PriceLayer(bars["open"], bars["high"], bars["low"], bars["close"],
                          np.where(mask, bars["volume"] * vmult, np.nan), np.where(mask, ret, 0.0), stressed,
                          None, vix_level)
    if vix_close is None:  # no ^VIX in the file: add the realized-vol VIX-like level as flat-open bars
        lvl = np.round(vix_level, 2)
        prev = np.concatenate([lvl[:1], lvl[:-1]])
        keep = pd.concat([keep, pd.DataFrame({
            "date": dates, "symbol": VIX_SYMBOL, "open": prev, "high": np.maximum(prev, lvl),
            "low": np.minimum(prev, lvl), "close": lvl, "volume": 0})], ignore_index=True)
    prices = keep.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
    prices["symbol"] = prices["symbol"].astype("str")
    extra = {"oracle_share": min(cfg.effect, 1.0), "daily_drift": "realized mean log open-to-open return"}
    return dates, symbols, p, layer, mask, ep, bump, prices, "prices_file (oracle-planted episodes)", extra


def generate_market(cfg: SynthConfig) -> SynthMarket:
    """Build the whole market in memory (pure: same config -> identical frames)."""
    if not isinstance(cfg, SynthConfig):
        raise ParameterError(f"cfg must be a SynthConfig, got cfg={cfg!r}")
    rs = _streams(cfg.seed)
    core = _file_core(cfg, rs) if cfg.prices_file is not None else _synthetic_core(cfg, rs)
    dates, symbols, p, layer, mask, ep, bump, prices, mode, extra = core
    # correlated null: flows that chase past prices (None = off, so the default market is unchanged bit for bit)
    react = cfg.price_feedback * fl.price_feedback(layer.close, p.vol) if cfg.price_feedback else None
    fin = fl.finra_layer(layer.volume, bump, cfg.family, p.is_etf, rs["finra"], react)
    lit = fl.lit_layer(layer.volume, fin["total"], layer.noise_ret, p.vol, bump, cfg.family, rs["lit"], react)
    otc = fl.otc_layer(dates, np.where(mask, layer.volume, 0.0), bump, rs["otc"])
    opt = fl.options_layer(layer.volume, layer.close, layer.noise_ret, p.vol, layer.vix_close, layer.stressed,
                           p.is_etf, rs["options"])
    fmask = mask & (fin["total"] > 0)
    finra = _long(dates, symbols, fmask, {"short_volume": _int(fin["short"]),
                                          "short_exempt_volume": _int(fin["exempt"]),
                                          "total_volume": _int(fin["total"]), "market": _MARKET})
    litf = _long(dates, symbols, mask, {"lit_buy_volume": _int(lit["buy"]), "lit_sell_volume": _int(lit["sell"]),
                                        "method": "provided"})
    omask = mask & p.has_options[None, :]
    options = _long(dates, symbols, omask, {
        "call_volume": _int(opt["call"]), "put_volume": _int(opt["put"]), "call_premium": opt["call_prem"],
        "put_premium": opt["put_prem"], "itm_call_volume": _int(opt["itm_call"]),
        "otm_call_volume": _int(opt["otm_call"]), "itm_put_volume": _int(opt["itm_put"]),
        "otm_put_volume": _int(opt["otm_put"]), "atm_iv": opt["iv"]})
    episodes = _episodes_frame(ep, dates, symbols)
    truth = _truth(cfg, mode, dates, symbols, episodes, layer.stressed)
    truth["parameters"].update(extra)
    return SynthMarket(cfg, prices, finra, litf, _otc_frame(otc, symbols, pd.Timestamp(cfg.end)), options,
                       episodes, truth)


def _truth(cfg: SynthConfig, mode: str, dates, symbols, episodes: pd.DataFrame, stressed) -> dict:
    conf = asdict(cfg)
    conf["universe"] = cfg.universe if isinstance(cfg.universe, str) else list(cfg.universe)
    conf["prices_file"] = None if cfg.prices_file is None else str(cfg.prices_file)
    if not cfg.price_feedback:
        del conf["price_feedback"]  # the default market's truth file stays as it was
    carriers = {"ratio": "short-buy share of total volume (variants B, C, D) + a small lit-imbalance bump",
                "volume": "short-buy volume level (variant A) + a small lit-imbalance bump",
                "lit": "lit-flow imbalance only"}
    return {
        "seed": cfg.seed,
        "effect": cfg.effect,
        "family": cfg.family,
        "signal_carrier": carriers[cfg.family],
        "mode": mode,
        "oracle": cfg.prices_file is not None and cfg.effect > 0,
        "config": conf,
        "sessions": int(len(dates)),
        "first_session": str(dates[0].date()),
        "last_session": str(dates[-1].date()),
        "symbols": int(len(symbols)),
        "stressed_share": round(float(np.mean(stressed)), 4),
        "episodes": {k: int((episodes["kind"] == k).sum()) for k in ("accumulation", "distribution")},
        "parameters": {
            "bumps": fl.BUMPS[cfg.family],
            "drift_per_session_at_effect_1": fl.DRIFT_PER_SESSION,
            "drift_multiplier_range": [0.5, 1.5],
            "bump_multiplier_range": [0.8, 1.2],
            "episode_length": list(fl.EP_LEN),
            "drift_tail_after_end": list(fl.TAIL_LEN),
            "drift_starts": "the session after the episode's first day (intraday, from the open)",
            "otc_publication_lag_days_after_friday": OTC_LAG_DAYS,
            "null_market": "effect 0 keeps every flow bump but no price drift (flows predict nothing)",
            **({"price_feedback": {**fl.FEEDBACK, "strength": cfg.price_feedback}} if cfg.price_feedback else {}),
        },
    }


# ---- writing ------------------------------------------------------------------------------------------------

def _date_str(values: pd.Series, fmt: str) -> np.ndarray:
    """Format dates once per distinct value (strftime over millions of rows is slow)."""
    codes, uniq = pd.factorize(pd.to_datetime(values))
    return np.asarray(pd.DatetimeIndex(uniq).strftime(fmt), dtype=object)[codes]


def _arrow_text(df: pd.DataFrame, delimiter: str = ",", eol: str = "\n") -> bytes:
    """Rows of ``df`` as delimited text without header or quotes (Arrow writer: shortest round-trip floats)."""
    if not len(df):
        return b""
    sink = pa.BufferOutputStream()
    opts = pacsv.WriteOptions(include_header=False, delimiter=delimiter, eol=eol, quoting_style="none")
    pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), sink, write_options=opts)
    return sink.getvalue().to_pybytes()


def _write_finra(finra: pd.DataFrame, dates: pd.DatetimeIndex, folder: Path) -> None:
    """One CNMS file per session, each written whole; the folder's other ``CNMSshvol*.txt`` files removed after
    (a write that fails leaves the earlier files as they were)."""
    folder.mkdir(parents=True, exist_ok=True)
    stale = set(folder.glob("CNMSshvol*.txt"))
    body = finra[["date", "symbol", "short_volume", "short_exempt_volume", "total_volume", "market"]].copy()
    body["date"] = _date_str(body["date"], "%Y%m%d")
    lines = _arrow_text(body, "|", "\r\n").split(b"\r\n")
    counts = finra.groupby("date", sort=True).size().reindex(dates, fill_value=0).to_numpy()
    bounds = np.concatenate([[0], np.cumsum(counts)])
    head = _CNMS_HEADER.encode("ascii")
    for i, d in enumerate(dates):
        rows = lines[bounds[i]:bounds[i + 1]]
        text = b"\r\n".join([head, *rows, str(len(rows)).encode("ascii")]) + b"\r\n"
        path = folder / f"CNMSshvol{d.strftime('%Y%m%d')}.txt"
        atomic_write(path, lambda t, text=text: t.write_bytes(text))
        stale.discard(path)
    for old in stale:
        old.unlink()


def _csv(df: pd.DataFrame, path: Path, date_cols: Sequence[str] = ("date",)) -> Path:
    out = df.copy()
    for c in date_cols:
        if c in out.columns:
            out[c] = _date_str(out[c], "%Y-%m-%d")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (",".join(out.columns) + "\n").encode("ascii") + _arrow_text(out)
    atomic_write(path, lambda t: t.write_bytes(text))  # never a half-written file under its name (a full disk)
    return path


def write_market(market: SynthMarket, out_dir: str | Path) -> dict[str, Path]:
    """Write the raw files and the truth folder. Returns {ingest kind or name: path}.

    Keys: ``finra-short`` (folder of CNMS files), ``prices``, ``lit-flow``, ``otc-weekly``, ``options``,
    ``episodes``, ``truth``. Each file is written whole (a write that fails leaves the earlier file); stale
    ``CNMSshvol*.txt`` files in ``out_dir/finra`` are removed once the new ones are written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_finra(market.finra_short, market.sessions, out / "finra")
    paths = {
        "finra-short": out / "finra",
        "prices": _csv(market.prices, out / "prices_daily.csv"),
        "lit-flow": _csv(market.lit_flow, out / "lit_flow_daily.csv"),
        "otc-weekly": _csv(market.otc_weekly, out / "otc_weekly.csv", ()),
        "options": _csv(market.options, out / "options_daily.csv"),
        "episodes": _csv(market.episodes, out / "truth" / "episodes.csv",
                         ("start_date", "end_date", "drift_start", "drift_end")),
    }
    truth = out / "truth" / "README.json"
    text = json.dumps(market.truth, indent=2, sort_keys=True) + "\n"
    atomic_write(truth, lambda t: t.write_text(text, encoding="utf-8"))
    paths["truth"] = truth
    return paths


def synth_to_db(cfg: SynthConfig, out_dir: str | Path, db_path: str | Path, progress: bool = False) -> dict:
    """Generate, write the raw files, ingest them through the normal ingest path and build daily_metrics.

    Returns {"rows": {table: count}, "symbols": N (without ^VIX), "sessions": T, "seconds": wall time,
    "ingest": {kind: {files, rows_accepted, rows_rejected, exit_code}}, "metrics": build_daily_metrics' summary,
    "files": {kind: path}}. A failed ingest file raises DataError (rejected rows are only reported). An ``end``
    after today in New York is refused before anything is written (the ingest would refuse its later sessions).
    """
    t0 = time.perf_counter()
    today = market_today()  # the ingest refuses a later session: refused here, before a file or row is written
    check_param(pd.Timestamp(cfg.end).date() <= today, "end",
                f"on or before today in New York ({today}) to be ingested (a store holds no future session)", cfg.end)
    settings = Settings.from_env()  # one snapshot for the ingest and the build (a bad variable: refused before a file)
    market = generate_market(cfg)
    paths = write_market(market, out_dir)
    con = connect(db_path)
    ingest: dict[str, dict] = {}
    try:
        for kind in ("finra-short", "prices", "lit-flow", "otc-weekly", "options"):
            rep = ingest_paths(con, kind, [paths[kind]], progress=progress, settings=settings)
            ingest[kind] = {"files": len(rep.files), "rows_accepted": rep.rows_accepted,
                            "rows_rejected": rep.rows_rejected, "exit_code": rep.exit_code}
            if rep.exit_code == 2:
                first = rep.failed[0]
                raise DataError(f"ingest of the synthetic {kind} files failed: {first.message}")
        # the lit-volume floor the environment sets (MIN_LIT_VOLUME), as `metrics build` and `evening` read it: the
        # same raw files give the same daily_metrics whichever command built them
        metrics = build_daily_metrics(con, min_lit_volume=settings.min_lit_volume, progress=progress)
        tables = [*RAW_TABLES, "daily_metrics", "options_premium_daily"]
        rows = {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables
                if table_exists(con, t)}
    finally:
        con.close()
    syms = market.prices["symbol"]
    return {
        "rows": rows,
        "symbols": int(syms.loc[syms != VIX_SYMBOL].nunique()),
        "sessions": int(len(market.sessions)),
        "seconds": round(time.perf_counter() - t0, 3),
        "ingest": ingest,
        "metrics": metrics,
        "files": {k: str(v) for k, v in paths.items()},
    }


def synth_new_store(cfg: SynthConfig, out_dir: str | Path, db_path: str | Path, progress: bool = False) -> dict:
    """``synth_to_db`` into a NEW store at ``db_path``, all or nothing: the store is built under a temporary name
    beside it and renamed when complete, so a build that fails or is interrupted (Ctrl-C during the ingest) leaves
    no half-built store that a caller reusing an existing store (``make demo``, ``ao.synth_store``) would take as
    done. An existing ``db_path`` is refused."""
    p = Path(db_path)
    if p.exists():
        raise DataError(f"database {p} already exists; synth_new_store builds a new store only")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.building")
    leftovers = (tmp, Path(f"{tmp}.wal"))
    for f in leftovers:  # of an earlier build killed outright
        f.unlink(missing_ok=True)
    try:
        summary = synth_to_db(cfg, out_dir, tmp, progress=progress)
    except BaseException:
        for f in leftovers:
            f.unlink(missing_ok=True)
        raise
    os.replace(tmp, p)
    return summary
