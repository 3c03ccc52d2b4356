"""Price layer of the synthetic market (private to :mod:`optimizer.data.synth`).

Everything here is a pure function of (symbols, sessions, random streams): per-symbol parameters, the
calm/stressed volatility regime, the VIX-like index, factor-model returns, OHLC bars and consolidated volume,
plus the loader of a real prices file for ``prices_file`` mode. Arrays are (T sessions x N symbols).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputFileError
from optimizer.data.symbols import canonical_or_none, symbol_problem
from optimizer.data.universe import SECTOR_ETFS, SECTOR_MAP, TIER1, TIER3

__all__ = [
    "SymbolParams",
    "PriceLayer",
    "symbol_params",
    "simulate_regime",
    "simulate_prices",
    "load_prices_file",
    "realized_layer",
    "ar1",
    "OPTION_SYMBOLS",
    "STRESS_VOL_MULT",
]

# ---- model constants (documented in synth.py's docstring) -------------------------------------------------
P_CALM_TO_STRESS = 0.015          # daily Markov transition probabilities of the volatility regime
P_STRESS_TO_CALM = 0.06           # -> ~20 % of sessions stressed, mean stressed spell ~17 sessions
MARKET_VOL = 0.008                # calm daily market factor vol
STRESS_VOL_MULT = 2.5             # market and sector factor vol multiplier in the stressed regime
STRESS_IDIO_MULT = 1.7            # idiosyncratic vol multiplier in the stressed regime
MARKET_DRIFT = (0.0005, -0.0004)  # daily market drift (calm, stressed)
SECTOR_VOL = 0.006                # calm daily sector factor vol (XLE: 0.010)
GAP_SHARE = 0.3                   # share of the day's noise return realised overnight (open gap)
VIX_TARGET = (15.5, 31.0)         # mean-reversion targets of the VIX-like level (calm, stressed)
VIX_SPEED = 0.2
VOLUME_ABS_RET = 0.25             # log volume += 0.25 * |return| / symbol vol
VOLUME_STRESS = 0.2              # log volume += 0.2 in the stressed regime

_BIG_CAPS = ("MSFT", "AAPL", "GOOGL", "AMZN", "NVDA", "AVGO", "META", "TSLA", "AMD", "JPM")
OPTION_SYMBOLS = frozenset(TIER1) | frozenset(_BIG_CAPS)
_SPECULATIVE = frozenset({"BE", "CRWV", "HIMS", "HOOD", "IREN", "NNE", "PLTR", "SOFI"})
_SECTOR_BETA = {"XLF": 1.05, "XLK": 1.15, "XLE": 0.8, "XLV": 0.75, "XLY": 1.1, "XLI": 1.0, "XLP": 0.6, "XLU": 0.5}
# Non-sector ETFs: (beta, sector ETF or None, sector loading, idiosyncratic vol)
_ETF_SPECS = {
    "SPY": (1.0, None, 0.0, 0.0006),
    "QQQ": (1.1, "XLK", 0.6, 0.002),
    "IWM": (1.15, None, 0.0, 0.007),
    "DIA": (0.92, None, 0.0, 0.002),
    "TLT": (-0.15, None, 0.0, 0.009),
    "GLD": (0.05, None, 0.0, 0.008),
    "USO": (0.6, "XLE", 0.8, 0.015),
}


@dataclass(frozen=True, eq=False)
class SymbolParams:
    """Per-symbol model parameters, arrays of length N in symbol order."""

    symbols: list[str]
    sector: np.ndarray      # index into SECTOR_ETFS, -1 = none
    beta: np.ndarray
    load: np.ndarray        # sector factor loading
    idio: np.ndarray        # calm idiosyncratic daily vol
    vol: np.ndarray         # calm total daily vol (analytic)
    price0: np.ndarray
    volume0: np.ndarray     # typical consolidated daily share volume
    is_etf: np.ndarray
    has_options: np.ndarray


@dataclass(frozen=True, eq=False)
class PriceLayer:
    """Bars and the quantities the flow layers are built from (T x N unless stated)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    noise_ret: np.ndarray   # close-to-close log return without any planted drift (flows use this)
    stressed: np.ndarray    # (T,) bool regime
    vix: np.ndarray         # (T, 4) open, high, low, close of the VIX-like index, or None in prices-file mode
    vix_close: np.ndarray   # (T,) level used for implied vols


def ar1(innov: np.ndarray, phi: float | np.ndarray) -> np.ndarray:
    """AR(1) along axis 0: y[t] = phi*y[t-1] + innov[t], y[-1] = innov[0]/sqrt(1-phi^2)-scaled start (stationary).

    ``phi`` may be a scalar or a per-column array: a loop over rows, vector ops over columns. For a scalar this is
    bit for bit what ``scipy.signal.lfilter([1], [1, -phi], ...)`` computes (its one delay holds phi*y[t-1], exactly,
    and y[t] = that + 1.0*innov[t]), without importing scipy.signal (~1 s of every synthetic build: the demo, the
    notebook, the test stores)."""
    x = np.asarray(innov, dtype=np.float64)
    p = float(phi) if np.isscalar(phi) or np.ndim(phi) == 0 else np.asarray(phi, dtype=np.float64)
    out = np.empty_like(x)
    out[0] = x[0] / np.sqrt(1.0 - p * p)
    for t in range(1, x.shape[0]):
        out[t] = p * out[t - 1] + x[t]
    return out


def _assign_sectors(symbols: list[str]) -> np.ndarray:
    """Sector index per symbol: sector ETFs themselves, SECTOR_MAP stocks, other ETFs by spec, else round-robin."""
    idx = {e: i for i, e in enumerate(SECTOR_ETFS)}
    out = np.full(len(symbols), -1, dtype=np.int64)
    rr = 0
    for j, s in enumerate(symbols):
        if s in idx:
            out[j] = idx[s]
        elif s in SECTOR_MAP:
            out[j] = idx[SECTOR_MAP[s]]
        elif s in _ETF_SPECS:
            sec = _ETF_SPECS[s][1]
            out[j] = -1 if sec is None else idx[sec]
        else:
            out[j] = rr % len(SECTOR_ETFS)
            rr += 1
    return out


def symbol_params(symbols: list[str], rng: np.random.Generator) -> SymbolParams:
    """Draw every symbol's parameters in one vectorized pass (the draws do not depend on the symbol names)."""
    n = len(symbols)
    sector = _assign_sectors(symbols)
    u = rng.random((n, 6))
    sec_beta = np.array([_SECTOR_BETA[e] for e in SECTOR_ETFS])
    base_beta = np.where(sector >= 0, sec_beta[np.maximum(sector, 0)], 1.0)
    beta = base_beta * (0.8 + 0.6 * u[:, 0])
    load = 0.7 + 0.6 * u[:, 1]
    spec = np.array([s in _SPECULATIVE for s in symbols])
    idio = np.where(spec, 0.030 + 0.015 * u[:, 2], 0.010 + 0.018 * u[:, 2])
    price0 = np.exp(np.log(20.0) + (np.log(500.0) - np.log(20.0)) * u[:, 3])
    known = np.array([s in SECTOR_MAP or s in TIER3 or s in TIER1 for s in symbols])
    volume0 = np.exp(np.where(known, np.log(3e6) + np.log(20.0) * u[:, 4], np.log(3e5) + np.log(60.0) * u[:, 4]))
    is_etf = np.array([s in TIER1 for s in symbols])
    for j, s in enumerate(symbols):
        if s in SECTOR_ETFS:
            beta[j], load[j], idio[j] = _SECTOR_BETA[s], 1.0, 0.001
        elif s in _ETF_SPECS:
            b, _, ld, iv = _ETF_SPECS[s]
            beta[j], load[j], idio[j] = b, ld, iv
    sec_vol = np.array([0.010 if e == "XLE" else SECTOR_VOL for e in SECTOR_ETFS])
    sv = np.where(sector >= 0, sec_vol[np.maximum(sector, 0)] * load, 0.0)
    vol = np.sqrt((beta * MARKET_VOL) ** 2 + sv**2 + idio**2)
    has_options = np.array([s in OPTION_SYMBOLS for s in symbols])
    return SymbolParams(list(symbols), sector, beta, np.where(sector >= 0, load, 0.0), idio, vol, price0, volume0,
                        is_etf, has_options)


def simulate_regime(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two-state Markov chain (False = calm, True = stressed), starting calm."""
    u = rng.random(n)
    out = np.zeros(n, dtype=bool)
    s = False
    for t in range(1, n):
        s = (u[t] < P_CALM_TO_STRESS) if not s else (u[t] >= P_STRESS_TO_CALM)
        out[t] = s
    return out


def _vix_path(stressed: np.ndarray, market: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """VIX-like OHLC (T, 4): log level mean-reverts to the regime's target, moves against the market."""
    n = len(stressed)
    e = rng.standard_normal((n, 5))
    target = np.log(np.where(stressed, VIX_TARGET[1], VIX_TARGET[0])) + ar1(0.03 * e[:, 4], 0.95)
    lv = np.empty(n)
    lv[0] = target[0]
    shock = 0.045 * e[:, 1] - 3.0 * market
    for t in range(1, n):
        lv[t] = lv[t - 1] + VIX_SPEED * (target[t] - lv[t - 1]) + shock[t]
    close = np.exp(lv)
    prev = np.concatenate([[close[0]], close[:-1]])
    opn = prev * np.exp(0.02 * e[:, 2])
    hi = np.maximum(opn, close) * np.exp(np.abs(0.025 * e[:, 3]))
    lo = np.minimum(opn, close) * np.exp(-np.abs(0.025 * e[:, 0]))
    return np.round(np.column_stack([opn, hi, lo, close]), 2)


def simulate_prices(
    p: SymbolParams, stressed: np.ndarray, drift: np.ndarray, volume_mult: np.ndarray, rng: np.random.Generator
) -> PriceLayer:
    """Factor-model prices. ``drift`` (T x N) is added to the intraday log return (realizable from the open);
    ``volume_mult`` (T x N) multiplies consolidated volume (the "volume" family's episode bump)."""
    t_n, n = drift.shape
    mult = np.where(stressed, STRESS_VOL_MULT, 1.0)
    imult = np.where(stressed, STRESS_IDIO_MULT, 1.0)
    z_m = rng.standard_normal(t_n)
    z_s = rng.standard_normal((t_n, len(SECTOR_ETFS)))
    z_i = rng.standard_normal((t_n, n))
    z_g = rng.standard_normal((t_n, n))
    z_hl = np.abs(rng.standard_normal((t_n, n, 2)))
    z_v = rng.standard_normal((t_n, n))
    market = np.where(stressed, MARKET_DRIFT[1], MARKET_DRIFT[0]) + MARKET_VOL * mult * z_m
    sec_vol = np.array([0.010 if e == "XLE" else SECTOR_VOL for e in SECTOR_ETFS])
    sectors = np.column_stack([sec_vol * z_s * mult[:, None], np.zeros(t_n)])  # column -1 = no sector
    noise = market[:, None] * p.beta + sectors[:, p.sector] * p.load + z_i * (p.idio * imult[:, None])
    gap = GAP_SHARE * noise + 0.15 * p.vol * mult[:, None] * z_g
    logc = np.log(p.price0) + np.cumsum(noise + drift, axis=0)
    close = np.exp(logc)
    prev = np.vstack([p.price0[None, :], close[:-1]])
    opn = prev * np.exp(gap)
    rng_hl = 0.35 * p.vol * mult[:, None]
    high = np.maximum(opn, close) * np.exp(rng_hl * z_hl[:, :, 0])
    low = np.minimum(opn, close) * np.exp(-rng_hl * z_hl[:, :, 1])
    lvol = (np.log(p.volume0) + VOLUME_ABS_RET * (np.abs(noise) / p.vol - 0.8) + VOLUME_STRESS * stressed[:, None]
            + ar1(0.13 * z_v, 0.6))
    volume = np.round(np.exp(lvol) * volume_mult)
    vix = _vix_path(stressed, market, rng)
    r4 = lambda a: np.round(a, 4)  # noqa: E731  (rounding is monotone, so low <= open, close <= high survive)
    return PriceLayer(r4(opn), r4(high), r4(low), r4(close), volume, noise, stressed, vix, vix[:, 3])


# ---- prices_file mode ---------------------------------------------------------------------------------------

_PRICE_COLS = ("date", "symbol", "open", "high", "low", "close", "volume")


def load_prices_file(path: str | Path) -> pd.DataFrame:
    """Read a prices CSV (plain or gzip; extra columns dropped) with round-trip float parsing, so the values
    are bit-exact copies of the file's; symbols in the ingest's canonical form (``optimizer.data.symbols``:
    ``BRK-B`` -> ``BRK.B``). Raises InputFileError for a missing file or column, an invalid symbol (naming it)
    and a duplicate (date, symbol)."""
    f = Path(path)
    if not f.is_file():
        raise InputFileError(str(f), None, "prices file not found")
    try:
        df = pd.read_csv(f)  # pandas >= 3 parses floats exactly (round trip)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a file error
        raise InputFileError(str(f), None, f"unreadable prices CSV ({exc})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    for c in _PRICE_COLS:
        if c not in df.columns:
            raise InputFileError(str(f), 1, f"missing column {c!r} (header has: {','.join(df.columns)})")
    df = df[list(_PRICE_COLS)].copy()
    df["date"] = pd.to_datetime(df["date"].astype(str), format="mixed").astype("datetime64[s]")
    raw_sym = df["symbol"].astype(str)
    canon = {s: canonical_or_none(s) for s in raw_sym.unique()}  # the ingest's canonical symbols (BRK-B -> BRK.B)
    bad = [s for s, c in canon.items() if c is None]
    if bad:
        i = int(np.flatnonzero(raw_sym.isin(bad).to_numpy())[0])
        raise InputFileError(str(f), None, str(symbol_problem(raw_sym.iat[i])))
    df["symbol"] = raw_sym.map(canon)
    if df.duplicated(["date", "symbol"]).any():
        d = df.loc[df.duplicated(["date", "symbol"], keep=False)].iloc[0]
        raise InputFileError(str(f), None, f"duplicate (date, symbol) = ({d['date'].date()}, {d['symbol']})")
    return df


def realized_layer(
    bars: dict[str, np.ndarray], vix_close: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From real bars: (close-to-close log returns, stressed flag per session, VIX-like close per session).

    Without a ^VIX column the level is 1.1 x the 20-session realized vol of the cross-sectional mean return
    (annualised, in percent). Stressed = level > 25.
    """
    c = bars["close"]
    prev = np.vstack([c[:1], c[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log(c / prev)
    r[0] = 0.0
    if vix_close is None or not np.isfinite(vix_close).any():
        mkt = np.nanmean(np.where(np.isfinite(r), r, np.nan), axis=1)
        rv = pd.Series(mkt).rolling(20, min_periods=2).std(ddof=0).bfill().fillna(0.01).to_numpy()
        vix_close = np.clip(110.0 * np.sqrt(252.0) * rv, 9.0, 90.0)
    else:
        vix_close = pd.Series(vix_close).ffill().bfill().to_numpy()
    return r, vix_close > 25.0, vix_close
