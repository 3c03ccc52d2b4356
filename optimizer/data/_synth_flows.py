"""Flow layers and planted episodes of the synthetic market (private to :mod:`optimizer.data.synth`).

Pure functions over (T sessions x N symbols) arrays: the hidden accumulation/distribution episodes (random, or
oracle-placed before real moves in prices-file mode), their price drift, and the FINRA short-sale, lit-flow,
OTC-weekly and options layers. Every layer draws its noise from its own random stream with a fixed layout, so
the family, the effect size and the episode placement never change the other layers' noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.data._synth_prices import ar1

__all__ = [
    "Episodes",
    "FAMILIES",
    "BUMPS",
    "DRIFT_PER_SESSION",
    "WARMUP",
    "random_episodes",
    "expected_drift_per_session",
    "oracle_episodes",
    "episode_matrices",
    "finra_layer",
    "lit_layer",
    "otc_layer",
    "options_layer",
    "FEEDBACK",
    "price_feedback",
]

FAMILIES = ("ratio", "volume", "lit")
DRIFT_PER_SESSION = 0.004   # planted log drift per session at effect = 1 (x U(0.5, 1.5) per episode)
WARMUP = 21                 # no episode starts before this session (a 20-session z-window exists)
EP_LEN = (3, 6)             # episode length in sessions (inclusive range)
TAIL_LEN = (5, 20)          # drift continues this many sessions after the episode's last day
FORWARD = 10                # prices-file mode: the oracle's forward window (open t+1 -> open t+11)
# Correlated null (``price_feedback``): per unit of feedback, the short share moves by FEEDBACK["share"] and the lit
# imbalance by FEEDBACK["lit"] per standard deviation of the trailing FEEDBACK["window"]-session close-to-close log
# return (z, by the trailing FEEDBACK["vol_window"]-session volatility, clipped at +/-3): flows chase PAST prices,
# correlated with them across symbols, never with the future.
FEEDBACK = {"window": 5, "vol_window": 20, "share": 0.03, "lit": 0.02, "clip": 3.0}
# Episode bumps per family (x U(0.8, 1.2) per episode; sign + for accumulation, - for distribution):
#   share: absolute short-share shift; logvol: log multiplier of consolidated (and so FINRA) volume;
#   lit: absolute lit-imbalance shift.
BUMPS = {
    "ratio": {"share": 0.08, "logvol": 0.0, "lit": 0.025},
    "volume": {"share": 0.0, "logvol": 1.3, "lit": 0.025},
    "lit": {"share": 0.0, "logvol": 0.0, "lit": 0.15},
}


@dataclass(frozen=True, eq=False)
class Episodes:
    """Episode table as arrays (session indices are inclusive)."""

    sym: np.ndarray
    sign: np.ndarray        # +1 accumulation, -1 distribution
    start: np.ndarray
    end: np.ndarray
    drift_start: np.ndarray
    drift_end: np.ndarray
    drift: np.ndarray       # planted daily log drift (0 with effect 0; realized mean in prices-file mode)
    bump: np.ndarray        # bump size multiplier

    def __len__(self) -> int:
        return int(len(self.sym))


def _empty() -> Episodes:
    z = np.zeros(0, dtype=np.int64)
    return Episodes(z, z, z, z, z, z, np.zeros(0), np.zeros(0))


def random_episodes(n: int, t_n: int, rate: float, acc_share: float, effect: float,
                    rng: np.random.Generator) -> Episodes:
    """Non-overlapping episodes at random sessions, ``rate`` per symbol per year on average (vectorized).

    Starts follow a renewal process: gap = previous length + 2 + floor(Exponential), tuned so the mean spacing is
    252/rate sessions. The draws' shapes depend only on (n, t_n, rate), never on ``effect``: the null market
    (effect 0) has exactly the same episodes and flow bumps, only without price drift.
    """
    if rate <= 0 or n == 0 or t_n < WARMUP + EP_LEN[1] + 2:
        return _empty()
    exp_n = rate * t_n / 252.0
    k = int(np.ceil(exp_n + 5.0 * np.sqrt(exp_n) + 5.0))
    lens = rng.integers(EP_LEN[0], EP_LEN[1] + 1, (n, k))
    tails = rng.integers(TAIL_LEN[0], TAIL_LEN[1] + 1, (n, k))
    extra_mean = max(252.0 / rate - (sum(EP_LEN) / 2.0) - 2.0, 1.0)
    extra = np.floor(rng.exponential(extra_mean, (n, k))).astype(np.int64)
    acc = rng.random((n, k)) < acc_share
    mag = 0.5 + rng.random((n, k))
    bump = 0.8 + 0.4 * rng.random((n, k))
    prev = np.concatenate([np.zeros((n, 1), dtype=np.int64), lens[:, :-1] + 2], axis=1)
    start = WARMUP + np.cumsum(extra + prev, axis=1)
    end = start + lens - 1
    keep = end <= t_n - 2
    sym = np.broadcast_to(np.arange(n)[:, None], (n, k))[keep]
    sign = np.where(acc, 1, -1)[keep]
    s, e = start[keep], end[keep]
    dend = np.minimum(e + tails[keep], t_n - 1)
    drift = sign * DRIFT_PER_SESSION * effect * mag[keep]
    order = np.lexsort((s, sym))
    return Episodes(sym[order], sign[order], s[order], e[order], (s + 1)[order], dend[order], drift[order],
                    bump[keep][order])


def expected_drift_per_session(rate: float, acc_share: float, effect: float) -> float:
    """Expected planted log drift per session of a symbol (episodes/session x net sign x drift x window length)."""
    window = (sum(EP_LEN) / 2.0 - 1.0) + sum(TAIL_LEN) / 2.0
    return float(rate / 252.0 * (2.0 * acc_share - 1.0) * DRIFT_PER_SESSION * effect * window)


def _greedy(order: np.ndarray, want: int, blocked: np.ndarray, span: int) -> list[int]:
    """Pick up to ``want`` anchors from ``order`` whose [a, a+span] window is free; block [a-2, a+span+2]."""
    got: list[int] = []
    n = len(blocked)
    for a in order:
        if len(got) >= want:
            break
        if a + span >= n or blocked[a:a + span + 1].any():
            continue
        got.append(int(a))
        blocked[max(a - 2, 0):a + span + 3] = True
    return got


def oracle_episodes(opn: np.ndarray, rate: float, acc_share: float, effect: float,
                    rng: np.random.Generator) -> Episodes:
    """Prices-file mode: episodes start at the sessions whose forward 10-session open-to-open return
    (open t+1 -> open t+11) is among the symbol's largest (accumulation) / smallest (distribution).

    With 0 < effect < 1 only that share of the episodes is oracle-placed, the rest are random; effect 0 places
    all of them at random (null flows). ORACLE: it looks into the future of real prices, for testing only.
    """
    t_n, n = opn.shape
    if rate <= 0 or t_n < WARMUP + FORWARD + 3:
        return _empty()
    with np.errstate(invalid="ignore", divide="ignore"):
        fwd = np.full((t_n, n), np.nan)
        fwd[:-(FORWARD + 1)] = np.log(opn[FORWARD + 1:] / opn[1:-FORWARD])
    total = rate * t_n / 252.0
    n_acc = int(round(total * acc_share))
    n_dist = int(round(total * (1.0 - acc_share)))
    q = min(max(effect, 0.0), 1.0)
    keys = rng.random((t_n, n))
    lens = rng.integers(EP_LEN[0], EP_LEN[1] + 1, (n, n_acc + n_dist + 1))
    bumps = 0.8 + 0.4 * rng.random((n, n_acc + n_dist + 1))
    rows: list[tuple[int, int, int, int]] = []
    for j in range(n):
        blocked = np.zeros(t_n, dtype=bool)
        blocked[:WARMUP] = True
        blocked[~np.isfinite(fwd[:, j])] = True
        f = np.where(np.isfinite(fwd[:, j]), fwd[:, j], 0.0)
        picks: list[tuple[int, int]] = []
        for sign, want in ((1, n_acc), (-1, n_dist)):
            n_or = int(round(q * want))
            if n_or:
                order = np.argsort(-sign * f, kind="stable")
                picks += [(a, sign) for a in _greedy(order, n_or, blocked, FORWARD)]
        for sign, want in ((1, n_acc), (-1, n_dist)):
            have = sum(1 for _, s in picks if s == sign)
            order = np.argsort(keys[:, j], kind="stable")
            picks += [(a, sign) for a in _greedy(order, want - have, blocked, FORWARD)]
        for i, (a, sign) in enumerate(sorted(picks)):
            rows.append((j, sign, a, i))
    if not rows:
        return _empty()
    arr = np.array(rows, dtype=np.int64)
    sym, sign, start, slot = arr.T
    end = start + lens[sym, slot] - 1
    dstart, dend = start + 1, start + FORWARD
    realized = fwd[start, sym] / FORWARD
    return Episodes(sym, sign, start, end, dstart, dend, np.where(np.isfinite(realized), realized, 0.0),
                    bumps[sym, slot])


def episode_matrices(ep: Episodes, t_n: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(bump, drift) T x N: bump = sign x size on episode days (0 elsewhere); drift = summed planted daily drift."""
    bump = np.zeros((t_n + 1, n))
    drift = np.zeros((t_n + 1, n))
    np.add.at(bump, (ep.start, ep.sym), ep.sign * ep.bump)
    np.add.at(bump, (ep.end + 1, ep.sym), -ep.sign * ep.bump)
    np.add.at(drift, (ep.drift_start, ep.sym), ep.drift)
    np.add.at(drift, (ep.drift_end + 1, ep.sym), -ep.drift)
    return np.cumsum(bump, axis=0)[:t_n], np.cumsum(drift, axis=0)[:t_n]


def _zret(noise_ret: np.ndarray, vol: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        z = noise_ret / vol
    return np.clip(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), -4.0, 4.0)


def price_feedback(close: np.ndarray, vol: np.ndarray) -> np.ndarray:
    """Standardized trailing return z (T x N) that price-chasing flows react to: the log close-to-close return over
    the last ``FEEDBACK["window"]`` sessions up to and including t (known at the close of t, when the day's FINRA
    file and lit flow are published) divided by ``sigma x sqrt(window)``, clipped at +/-``FEEDBACK["clip"]``, where
    sigma is the daily log-return volatility of the last ``FEEDBACK["vol_window"]`` sessions up to t (``vol``, the
    symbol's overall volatility, until 10 returns exist). Standardizing by the trailing volatility keeps the
    reaction the same in calm and stressed regimes, so the flows do not reveal the regime (whose drift differs).
    0 where undefined (the first sessions, gaps). A function of past and same-day prices only."""
    w = FEEDBACK["window"]
    t_n = close.shape[0]
    z = np.zeros(close.shape)
    if t_n > w:
        with np.errstate(invalid="ignore", divide="ignore"):
            lr = np.log(close[1:] / close[:-1])
        sig = (pd.DataFrame(lr).rolling(FEEDBACK["vol_window"], min_periods=10).std().to_numpy())
        base = np.broadcast_to(np.asarray(vol, dtype=float), sig.shape)
        sig = np.where(np.isfinite(sig) & (sig > 0), sig, base)
        with np.errstate(invalid="ignore", divide="ignore"):
            z[w:] = np.log(close[w:] / close[:-w]) / (sig[w - 1:] * np.sqrt(w))
    return np.clip(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), -FEEDBACK["clip"], FEEDBACK["clip"])


def finra_layer(volume: np.ndarray, bump: np.ndarray, family: str, is_etf: np.ndarray,
                rng: np.random.Generator, react: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """FINRA consolidated daily short-sale volume: total = 30-50 % of consolidated volume (slow AR noise);
    short share = persistent symbol level (0.38-0.55; ETFs 0.45-0.58) + AR(1) noise (phi 0.5, sd 0.022-0.035)
    + the family's episode bump (+ ``FEEDBACK["share"] x react`` when ``react`` is given: the correlated null);
    exempt = 0-2 % of short."""
    t_n, n = volume.shape
    u = rng.random((n, 3))
    z = rng.standard_normal((t_n, n, 3))
    frac = np.clip(0.30 + 0.20 * u[:, 0] + ar1(0.012 * z[:, :, 0], 0.8), 0.2, 0.65)
    level = np.where(is_etf, 0.45 + 0.13 * u[:, 1], 0.38 + 0.17 * u[:, 1])
    sd = 0.022 + 0.013 * u[:, 2]
    share = level + ar1(z[:, :, 1] * (sd * np.sqrt(1 - 0.25)), 0.5) + BUMPS[family]["share"] * bump
    if react is not None:
        share = share + FEEDBACK["share"] * react
    share = np.clip(share, 0.05, 0.95)
    v = np.nan_to_num(volume, nan=0.0)
    total = np.round(v * frac)
    short = np.round(total * share)
    exempt = np.round(short * 0.02 * rng.random((t_n, n)))
    return {"total": total, "short": short, "exempt": exempt}


def lit_layer(volume: np.ndarray, finra_total: np.ndarray, noise_ret: np.ndarray, vol: np.ndarray,
              bump: np.ndarray, family: str, rng: np.random.Generator,
              react: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Lit buy/sell: 88-98 % of the non-FINRA volume is classified; imbalance = 0.02 x clipped same-day return z
    + N(0, 0.05) + the family's lit bump (+ ``FEEDBACK["lit"] x react`` when ``react`` is given) (never a function
    of future returns)."""
    t_n, n = volume.shape
    z = rng.standard_normal((t_n, n))
    u = rng.random((t_n, n))
    v = np.nan_to_num(volume, nan=0.0)
    lit = np.round(np.maximum(v - finra_total, 0.0) * (0.88 + 0.10 * u))
    imb = 0.02 * _zret(noise_ret, vol) + 0.05 * z + BUMPS[family]["lit"] * bump
    if react is not None:
        imb = imb + FEEDBACK["lit"] * react
    imb = np.clip(imb, -0.95, 0.95)
    buy = np.round(lit * (1.0 + imb) / 2.0)
    return {"buy": buy, "sell": lit - buy}


def otc_layer(dates: pd.DatetimeIndex, volume: np.ndarray, bump: np.ndarray,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weekly ATS / non-ATS volume per (Monday-week, symbol): symbol fractions (ATS 5-12 %, non-ATS 8-18 %) of
    the week's consolidated volume with slow log-AR noise; ATS +15 % in weeks holding an episode day."""
    dd = pd.DatetimeIndex(dates)
    monday = (dd - pd.to_timedelta(dd.day_of_week, unit="D")).normalize()
    weeks, first = np.unique(monday.to_numpy(), return_index=True)
    v = np.nan_to_num(volume, nan=0.0)
    n = v.shape[1]
    if len(dd) == 0:
        weeks = np.array([], dtype="datetime64[ns]")
        wvol = np.zeros((0, n))
        wep = np.zeros((0, n), dtype=bool)
    else:
        wvol = np.add.reduceat(v, first, axis=0)
        wep = np.add.reduceat((bump != 0).astype(np.int64), first, axis=0) > 0
    w_n = len(weeks)
    u = rng.random((n, 4))
    z = rng.standard_normal((max(w_n, 1), n, 2))[:w_n]
    ats = np.round(wvol * (0.05 + 0.07 * u[:, 0]) * np.exp(ar1(0.05 * z[:, :, 0], 0.85)) * np.where(wep, 1.15, 1.0))
    non = np.round(wvol * (0.08 + 0.10 * u[:, 1]) * np.exp(ar1(0.05 * z[:, :, 1], 0.85)))
    ats_tc = np.maximum(np.round(ats / (150.0 + 150.0 * u[:, 2])), np.where(ats > 0, 1.0, 0.0))
    non_tc = np.maximum(np.round(non / (80.0 + 120.0 * u[:, 3])), np.where(non > 0, 1.0, 0.0))
    return {"weeks": pd.DatetimeIndex(weeks), "week_volume": wvol, "ats": ats, "ats_tc": ats_tc,
            "non": non, "non_tc": non_tc}


def options_layer(volume: np.ndarray, close: np.ndarray, noise_ret: np.ndarray, vol: np.ndarray,
                  vix_close: np.ndarray, stressed: np.ndarray, is_etf: np.ndarray,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Daily options aggregates: contracts ~ consolidated volume / 100 x U(0.5, 1.5) (x1.3 stressed); put/call
    ratio ~0.75 (ETFs 1.2) x 1.3 stressed, lower after up days; ATM IV = annualised symbol vol x (VIX/16)^0.9."""
    t_n, n = volume.shape
    u = rng.random((n, 4))
    z = rng.standard_normal((t_n, n, 4))
    v = np.nan_to_num(volume, nan=0.0)
    st = stressed[:, None]
    contracts = v / 100.0 * (0.5 + u[:, 0]) * np.exp(0.2 * z[:, :, 0]) * np.where(st, 1.3, 1.0)
    pc = (np.where(is_etf, 1.2, 0.75) * np.where(st, 1.3, 1.0)
          * np.exp(0.15 * z[:, :, 1] - 0.05 * _zret(noise_ret, vol)))
    call = np.round(contracts / (1.0 + pc))
    put = np.round(contracts * pc / (1.0 + pc))
    iv = np.round(vol * np.sqrt(252.0) * (vix_close[:, None] / 16.0) ** 0.9 * np.exp(0.05 * z[:, :, 2]), 4)
    px = np.nan_to_num(close, nan=0.0)
    unit = 100.0 * px * 0.4 * iv * np.sqrt(21.0 / 252.0) * np.exp(0.1 * z[:, :, 3])
    itm = 0.25 + 0.15 * u[:, 1]
    itm_put = 0.25 + 0.15 * u[:, 2]
    itm_c = np.round(call * itm)
    itm_p = np.round(put * itm_put)
    return {"call": call, "put": put, "call_prem": np.round(call * unit, 2), "put_prem": np.round(put * unit, 2),
            "itm_call": itm_c, "otm_call": call - itm_c, "itm_put": itm_p, "otm_put": put - itm_p, "iv": iv}
