"""Numba kernels for the path-dependent parts of the engine. Each ``*_nb`` takes numpy arrays and scalars only.

Every kernel is checked against the plain pandas/python reference in tests/reference_engine.py.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange

__all__ = [
    "simulate_nb", "simulate_symbols_nb", "simulate_symbols_par_nb", "portfolio_returns_nb", "missing_holds_nb",
    "run_stats_nb", "combine_nb", "combine_par_nb", "trade_stats_nb", "trade_weights_nb",
    "curve_stats_nb", "PARALLEL_MIN_CELLS", "RULE_CODES", "SIZING_CODES", "KELLY_MIN_TRADES", "CORR_MIN_OBS",
    "use_parallel",
]

# Panels with at least this many (date x symbol) cells use the parallel kernels; below it thread start-up costs
# more than it saves.
PARALLEL_MIN_CELLS = 200_000

_THREADS_OWNER: list[int] = []  # pid of the process that first launched the parallel kernels' threads


def use_parallel(cells: int, min_cells: int) -> bool:
    """Whether a kernel over ``cells`` (date x symbol) cells runs its parallel version: the panel is big enough
    (``min_cells``, the caller's PARALLEL_MIN_CELLS) and this process is not a fork of one that already launched
    numba's threads. With GNU OpenMP (numba's default threading layer on Linux) such a child is terminated at its
    first parallel launch ("fork() called from a process already using GNU OpenMP"), so a forked worker (``study
    --jobs``, a walk-forward's window workers) runs the serial kernels: same results, one core per worker."""
    if cells < min_cells:
        return False
    pid = os.getpid()
    if not _THREADS_OWNER:
        _THREADS_OWNER.append(pid)
    return _THREADS_OWNER[0] == pid

# exit rules
RULE_FIXED, RULE_FIRST_DIST, RULE_2X_DIST, RULE_SCORE_DECAY, RULE_HYBRID = 0, 1, 2, 3, 4
RULE_CODES = {"fixed": 0, "first_dist": 1, "2x_consec_dist": 2, "score_decay": 3, "hybrid": 4}
# exit reasons (index into simulate.EXIT_REASONS; the last two were added after open_at_end)
R_FIXED, R_FIRST_DIST, R_2X_DIST, R_SCORE_DECAY, R_MAX_DAYS, R_TIME_STOP, R_STOP, R_TP, R_OPEN = 0, 1, 2, 3, 4, 5, 6, 7, 8
R_ATR, R_TRAIL = 9, 10
# position sizing (docs/ENGINE.md "Position sizing"): equal / atr are relative weights (the open positions share the
# portfolio), fixed_fractional / kelly absolute fractions of equity (the rest is cash, total exposure capped at 1)
SIZE_EQUAL, SIZE_ATR, SIZE_FF, SIZE_KELLY = 0, 1, 2, 3
SIZING_CODES = {"equal": 0, "atr": 1, "fixed_fractional": 2, "kelly": 3}
KELLY_MIN_TRADES = 10  # closed trades a Kelly estimate needs; before that a trade is sized fixed-fractionally
CORR_MIN_OBS = 3       # a correlation needs max(CORR_MIN_OBS, corr_window // 2) return pairs


@njit(cache=True, nogil=True)
def _scheduled_exit(t, rule, hold_days, max_days, time_stop):
    """(open index, reason) of the scheduled exit of a position entered at open t: fixed N, hybrid max_days,
    and the time stop, whichever comes first; (-1, -1) when none."""
    sc = -1
    sr = -1
    if rule == RULE_FIXED:
        sc = t + hold_days
        sr = R_FIXED
    elif rule == RULE_HYBRID:
        sc = t + max_days
        sr = R_MAX_DAYS
    if time_stop >= 0 and (sc < 0 or t + time_stop < sc):
        sc = t + time_stop
        sr = R_TIME_STOP
    return sc, sr


@njit(cache=True, nogil=True)
def _stop_level(ent_px, stop_loss, atr_lvl, trail_stop, peak):
    """(level, reason) of the highest active protective stop of a position: the fixed stop entry·(1 − stop_loss),
    the ATR stop ``atr_lvl`` (entry − k·ATR14 at the signal) and the trailing stop peak·(1 − trail_stop); a falling
    price meets the highest one first (ties: stop_loss, atr_stop, trail_stop). (0, -1) when none is active."""
    lvl = 0.0
    r = -1
    if stop_loss == stop_loss:
        lvl = ent_px * (1.0 - stop_loss)
        r = R_STOP
    if atr_lvl == atr_lvl and (r < 0 or atr_lvl > lvl):
        lvl = atr_lvl
        r = R_ATR
    if trail_stop == trail_stop:
        x = peak * (1.0 - trail_stop)
        if r < 0 or x > lvl:
            lvl = x
            r = R_TRAIL
    return lvl, r


@njit(cache=True, nogil=True)
def _intraday_exit(o, h, lo, ent_px, first_bar, stop_loss, take_profit, atr_lvl, trail_stop, peak):
    """(hit, fill price, reason) for bar (o, h, lo) of a position entered at ent_px: the highest stop first (fixed,
    ATR or trailing, ``_stop_level``), then the take-profit; a gap through the level fills at the open, except on
    the entry bar (entered at that open)."""
    lvl, r = _stop_level(ent_px, stop_loss, atr_lvl, trail_stop, peak)
    if r >= 0 and lo <= lvl:
        return True, (lvl if first_bar else min(o, lvl)), r
    if take_profit == take_profit:
        lvl = ent_px * (1.0 + take_profit)
        if h >= lvl:
            return True, (lvl if first_bar else max(o, lvl)), R_TP
    return False, 0.0, -1


@njit(cache=True, nogil=True)
def _atr_level(ent_px, atr_stop, As, sig):
    """The ATR stop of a position: entry − atr_stop·ATR14 at the signal close (NaN when unused or no ATR yet).
    ``As``: the symbol's ATR14 row, read only when the stop is used (else a stand-in of length 1)."""
    if atr_stop != atr_stop:
        return np.nan
    return ent_px - atr_stop * As[sig]


@njit(cache=True, nogil=True)
def _close_signal(d, sell, rule, n_dist, n_low):
    """Update the distribution / below-50 run counters with close display d; return (reason or -1, n_dist, n_low)."""
    is_dist = d <= sell  # NaN -> False
    n_dist = n_dist + 1 if is_dist else 0
    n_low = n_low + 1 if d < 50.0 else 0
    r = -1
    if (rule == RULE_FIRST_DIST or rule == RULE_HYBRID) and is_dist:
        r = R_FIRST_DIST
    elif rule == RULE_2X_DIST and n_dist >= 2:
        r = R_2X_DIST
    elif rule == RULE_SCORE_DECAY and n_low >= 3:
        r = R_SCORE_DECAY
    return r, n_dist, n_low


@njit(cache=True, nogil=True)
def _display_at(t, s, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused):
    """Display score of session t, symbol s (arrays indexed [symbol, session]): read from a materialised matrix, or
    (``fused``) combined from the cached terms with exactly the arithmetic of ``_combine`` (bit-identical values),
    so a run never materialises the score matrix."""
    if not fused:
        return disp[s, t]
    x = ts[s, t]
    if x != x:  # NaN short term -> NaN display (the other terms need not be read)
        return x
    v = (ws * x + wl * tl[s, t] + wp * tp[s, t]) * (lo + rng * sg[s, t])
    if v > 1.0:
        v = 1.0
    elif v < -1.0:
        v = -1.0
    return (v + 1.0) * 50.0


@njit(cache=True, nogil=True)
def _trade_buffers(n):
    """Empty trade arrays (symbol, signal, entry, exit, entry price, exit price, reason, score) of length n."""
    return (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
            np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, np.int64), np.empty(n, np.float64))


# ------------------------------------------------------------------------------------------------ sizing


@njit(cache=True, nogil=True)
def _static_weight(sizing, s, t, C, A, atr_med, stop_loss, atr_stop, trail_stop, risk_fraction, max_weight):
    """The weight of a position signalled at the close of t that needs no trade history (docs/ENGINE.md):
    equal 1; atr 1 / (ATR14 / close) at t (the cross-sectional median ATR% of t when the symbol has none, 1 when
    no symbol has one); fixed_fractional (and Kelly's fallback) min(max_weight, risk_fraction / d), d the tightest
    initial stop distance as a fraction of the price (stop_loss, trail_stop, atr_stop·ATR14 / close at t), 1 without
    a stop."""
    if sizing == SIZE_EQUAL:
        return 1.0
    if sizing == SIZE_ATR:
        a = A[s, t] / C[s, t]
        if a == a and a > 0.0 and a < np.inf:
            return 1.0 / a
        m = atr_med[t]
        if m == m and m > 0.0 and m < np.inf:
            return 1.0 / m
        return 1.0
    d = 1.0
    if stop_loss == stop_loss and stop_loss < d:
        d = stop_loss
    if trail_stop == trail_stop and trail_stop < d:
        d = trail_stop
    if atr_stop == atr_stop:
        x = atr_stop * A[s, t] / C[s, t]
        if x == x and x > 0.0 and x < d:
            d = x
    w = risk_fraction / d
    return max_weight if w > max_weight else w


@njit(cache=True, nogil=True)
def _kelly(hist, n_hist, window, kelly_fraction, max_weight, fallback):
    """Fractional Kelly weight from the last min(n_hist, window) closed trades' net returns (ring buffer ``hist`` of
    size ``window``, ``n_hist`` written in total): f* = p − (1 − p) / b, p = share of wins (net > 0), b = mean win /
    |mean loss| (no loss: f* = p; no win: 0); weight = clip(kelly_fraction · f*, 0, max_weight). ``fallback``
    with fewer than KELLY_MIN_TRADES closed trades."""
    k = min(n_hist, window)
    if k < KELLY_MIN_TRADES:
        return fallback
    nw = 0
    sw = 0.0
    nl = 0
    sl = 0.0
    for j in range(k):
        r = hist[(n_hist - 1 - j) % window]
        if r > 0.0:
            nw += 1
            sw += r
        else:
            nl += 1
            sl += r
    p = nw / k
    if nw == 0:
        f = 0.0
    elif nl == 0 or sl == 0.0:
        f = p
    else:
        f = p - (1.0 - p) / ((sw / nw) / (-sl / nl))
    w = kelly_fraction * f
    if w < 0.0:
        return 0.0
    return max_weight if w > max_weight else w


@njit(cache=True, nogil=True)
def _entry_weight(sizing, s, t, C, A, atr_med, stop_loss, atr_stop, trail_stop, risk_fraction, max_weight,
                  kelly_fraction, hist, n_hist, kelly_window, mult, use_mult):
    """(weight, regime multiplier) of a position signalled at the close of t (the multiplier: doc 004's regime
    position multiplier at t when ``use_mult``, else 1)."""
    w = _static_weight(SIZE_FF if sizing == SIZE_KELLY else sizing, s, t, C, A, atr_med, stop_loss, atr_stop,
                       trail_stop, risk_fraction, max_weight)
    if sizing == SIZE_KELLY:
        w = _kelly(hist, n_hist, kelly_window, kelly_fraction, max_weight, w)
    return w, (mult[t] if use_mult else 1.0)


@njit(cache=True, nogil=True)
def trade_weights_nb(sym, sig, ext, ep, xp, is_open, cost, sizing, C, A, atr_med, stop_loss, atr_stop, trail_stop,
                     risk_fraction, max_weight, kelly_fraction, kelly_window, mult, use_mult):
    """(weight, multiplier) per trade, computed after the simulation from each trade's signal close and the
    trades closed by then: Kelly's history is the closed trades with exit index <= the signal index, in (exit
    index, symbol) order, the order the date-major kernel closes them in (so its in-kernel weights are equal)."""
    n = sym.shape[0]
    w = np.empty(n, np.float64)
    m = np.empty(n, np.float64)
    N = C.shape[0]
    win = max(kelly_window, 1)
    hist = np.zeros(win, np.float64)
    n_hist = 0
    if sizing != SIZE_KELLY:
        for i in range(n):
            w[i], m[i] = _entry_weight(sizing, sym[i], sig[i], C, A, atr_med, stop_loss, atr_stop, trail_stop,
                                       risk_fraction, max_weight, kelly_fraction, hist, 0, win, mult, use_mult)
        return w, m
    nc = 0
    for i in range(n):
        if not is_open[i]:
            nc += 1
    key = np.empty(nc, np.int64)
    idx = np.empty(nc, np.int64)
    j = 0
    for i in range(n):
        if not is_open[i]:
            key[j] = ext[i] * N + sym[i]
            idx[j] = i
            j += 1
    closed = idx[np.argsort(key, kind="mergesort")]
    by_signal = np.argsort(sig, kind="mergesort")
    q = 0
    for i in by_signal:
        while q < nc and ext[closed[q]] <= sig[i]:
            c = closed[q]
            hist[n_hist % win] = xp[c] * (1.0 - cost) / (ep[c] * (1.0 + cost)) - 1.0
            n_hist += 1
            q += 1
        w[i], m[i] = _entry_weight(sizing, sym[i], sig[i], C, A, atr_med, stop_loss, atr_stop, trail_stop,
                                   risk_fraction, max_weight, kelly_fraction, hist, n_hist, win, mult, use_mult)
    return w, m


@njit(cache=True, nogil=True)
def _corr(C, a, b, t, window, min_obs):
    """Pearson correlation of the close-to-close returns of symbols a and b over the ``window`` returns ending at
    the close of t (pairs where both are finite); NaN with fewer than ``min_obs`` pairs or a (numerically)
    constant series. Two passes (means, then centred sums)."""
    k0 = max(1, t - window + 1)
    n = 0
    sx = 0.0
    sy = 0.0
    for k in range(k0, t + 1):
        x = C[a, k] / C[a, k - 1] - 1.0
        y = C[b, k] / C[b, k - 1] - 1.0
        if np.isfinite(x) and np.isfinite(y):
            n += 1
            sx += x
            sy += y
    if n < min_obs:
        return np.nan
    mx = sx / n
    my = sy / n
    sxx = 0.0
    syy = 0.0
    sxy = 0.0
    for k in range(k0, t + 1):
        x = C[a, k] / C[a, k - 1] - 1.0
        y = C[b, k] / C[b, k - 1] - 1.0
        if np.isfinite(x) and np.isfinite(y):
            sxx += (x - mx) * (x - mx)
            syy += (y - my) * (y - my)
            sxy += (x - mx) * (y - my)
    if np.sqrt(sxx / n) <= 1e-12 or np.sqrt(syy / n) <= 1e-12:
        return np.nan
    return sxy / np.sqrt(sxx * syy)


@njit(cache=True, nogil=True)
def _exit_segment(t, e, xp, ep, prev_close, cost):
    """Portfolio return of a position on its exit day t (``portfolio_returns_nb``'s segment; ``prev_close``: the
    last known close since the entry)."""
    if t == e:
        return xp * (1.0 - cost) / (ep * (1.0 + cost)) - 1.0
    return xp * (1.0 - cost) / prev_close - 1.0


@njit(cache=True, nogil=True)
def _held_segment(t, e, close, ep, prev_close, cost):
    """Portfolio return of a position held through the close of t (NaN without a close: the caller holds it at
    its mark, return 0)."""
    if t == e:
        return close / (ep * (1.0 + cost)) - 1.0
    return close / prev_close - 1.0


# ------------------------------------------------------------------------------------------------ date-major kernel


@njit(cache=True, nogil=True)
def _simulate_block(
    a, b, O, H, L, C, A, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop, trail_stop,
    sig_start, sig_end, data_end, entry_ok, max_positions, max_per_sector, sector_id, n_sectors,
    c_sym, c_entry, c_until,
    cost, sizing, risk_fraction, max_weight, kelly_fraction, kelly_window, mult, use_mult, atr_med,
    dd_breaker, dd_cooloff, corr_cap, corr_window,
    o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, o_w, o_m, off, cap,
):
    """Date-major simulation of symbols [a, b) (all of them when capped: caps couple symbols). See docs/ENGINE.md.
    Every matrix is indexed [symbol, session], the symbol-major layout both kernels share.

    One pass per session over the block's symbols: (0) pending entries fill at the open, (1) exits due at the open,
    (2) intraday stops (fixed / ATR / trailing, the highest first) then take-profit, (3) close-based exit signals,
    then the accumulation signal of the close is counted and (4) a flat symbol signalling at the close gets a
    pending entry at the next open. Entries are decided after the pass over the symbols ("deferred") when
    position caps, the correlation cap, the drawdown breaker or Kelly sizing are on: the candidates are ranked by
    display (ties: lower symbol index) and each must pass the caps and the correlation cap, and none enters while
    the breaker is tripped. The display score is read (or combined) only where a rule needs it: for every cell of
    the signal window (the signal count) and for open positions after it.

    Portfolio state (docs/ENGINE.md): each position's sizing weight and regime multiplier are fixed at its signal
    close (``_entry_weight``; Kelly from the trades closed by then); with the breaker on, the daily portfolio return
    (``portfolio_returns_nb``'s formula) compounds into the equity the breaker watches.

    Trades are written to the output arrays at [off, off + cap); the return value (trades, accumulation signals)
    counts every trade even past ``cap``, so a caller can retry with a larger buffer (results are identical).
    hold_days / max_days / time_stop: -1 when unused; stop_loss / take_profit / atr_stop / trail_stop / dd_breaker /
    corr_cap: NaN when unused; max_positions / max_per_sector: -1 when uncapped; entry_ok (T,) bool: sessions whose
    close may open a position; buy / sell (T,): the thresholds of each session's close.

    Carried positions (``c_sym``, ``c_entry``, ``c_until``: empty when none): positions the run does not own (the
    walk-forward's book holds them from an earlier window). Carried position j holds a slot of its symbol's sector
    and of ``max_positions`` for the entries decided at the close of t when c_entry[j] <= t + 1 < c_until[j] (its
    entry open, and the first open it no longer holds: its exit row for an exit due at an open, the row after it
    for an intraday or open-at-end exit: the engine's own rule), and the correlation cap compares the candidates
    with it; it is never traded, and its symbol is not blocked here (the caller's display does that).
    """
    M = b - a
    in_pos = np.zeros(M, np.bool_)
    ent_idx = np.full(M, -1, np.int64)
    sig_idx = np.full(M, -1, np.int64)
    ent_px = np.zeros(M, np.float64)
    mark = np.zeros(M, np.float64)          # breaker: each position's last known close since its entry
    ent_score = np.zeros(M, np.float64)
    pend_entry = np.full(M, -1, np.int64)   # open index at which an entry fills
    pend_exit = np.full(M, -1, np.int64)    # open index at which a close-signal exit fills
    pend_rsn = np.full(M, -1, np.int64)
    sched = np.full(M, -1, np.int64)        # scheduled open exit (fixed / max_days / time stop)
    sched_rsn = np.full(M, -1, np.int64)
    n_dist = np.zeros(M, np.int64)          # consecutive distribution closes inside the position
    n_low = np.zeros(M, np.int64)           # consecutive closes < 50 inside the position
    peak = np.zeros(M, np.float64)          # trailing stop: highest of the entry price and the highs since entry
    atr_lvl = np.full(M, np.nan)            # ATR stop level
    pos_w = np.ones(M, np.float64)          # sizing weight and regime multiplier, fixed at the signal close
    pos_m = np.ones(M, np.float64)
    free_next = np.zeros(M, np.bool_)
    n_car = c_sym.shape[0]
    car_on = np.zeros(n_car, np.bool_)      # carried positions holding a slot at the next open
    capped = max_positions >= 0 or max_per_sector >= 0
    breaker = dd_breaker == dd_breaker
    corr_on = corr_cap == corr_cap
    deferred = capped or breaker or corr_on or sizing == SIZE_KELLY
    trailing = trail_stop == trail_stop
    absolute = sizing >= SIZE_FF
    win = max(kelly_window, 1)
    hist = np.zeros(win, np.float64)        # Kelly: net returns of the last closed trades (ring buffer)
    n_hist = 0
    min_obs = max(CORR_MIN_OBS, corr_window // 2)
    equity = 1.0
    eq_peak = 1.0
    blocked_until = -1
    sec_count = np.zeros(max(n_sectors, 1), np.int64)
    cand = np.empty(M if deferred else 0, np.int64)
    cand_score = np.empty(M if deferred else 0, np.float64)
    close_rule = rule != RULE_FIXED  # the fixed exit never reads the score while in a position
    n = 0
    n_sig = 0
    n_open = 0

    for t in range(sig_start, data_end):
        count = t < sig_end and entry_ok[t]
        enter = count and t + 1 < data_end
        nc = 0
        num = 0.0
        den = 0.0
        for i in range(M):
            s = a + i
            # (0) a pending entry fills at this open
            if pend_entry[i] == t:
                pend_entry[i] = -1
                in_pos[i] = True
                ent_idx[i] = t
                ent_px[i] = O[s, t]
                mark[i] = O[s, t] * (1.0 + cost)  # read only after the entry day (the segments use ep there)
                peak[i] = O[s, t]
                atr_lvl[i] = _atr_level(O[s, t], atr_stop, A[s if atr_stop == atr_stop else 0], sig_idx[i])
                n_dist[i] = 0
                n_low[i] = 0
                sched[i], sched_rsn[i] = _scheduled_exit(t, rule, hold_days, max_days, time_stop)
            have = False
            d = 0.0
            if in_pos[i]:
                e = ent_idx[i]
                # (1) exits due at the open
                due = -1
                if pend_exit[i] >= 0 and pend_exit[i] <= t:
                    due = pend_rsn[i]
                elif sched[i] >= 0 and sched[i] <= t:
                    due = sched_rsn[i]
                px = 0.0
                rsn = -1
                if due >= 0 and t > e and np.isfinite(O[s, t]):
                    px = O[s, t]
                    rsn = due
                else:
                    # (2) intraday stops (the highest first), then take-profit
                    hit, px, rsn = _intraday_exit(O[s, t], H[s, t], L[s, t], ent_px[i], t == e, stop_loss,
                                                  take_profit, atr_lvl[i], trail_stop, peak[i])
                if rsn >= 0:
                    if n < cap:
                        k = off + n
                        o_sym[k] = s; o_sig[k] = sig_idx[i]; o_ent[k] = e; o_ext[k] = t
                        o_ep[k] = ent_px[i]; o_xp[k] = px; o_rsn[k] = rsn; o_score[k] = ent_score[i]
                        o_w[k] = pos_w[i]; o_m[k] = pos_m[i]
                    n += 1
                    if sizing == SIZE_KELLY:
                        hist[n_hist % win] = px * (1.0 - cost) / (ent_px[i] * (1.0 + cost)) - 1.0
                        n_hist += 1
                    if breaker:
                        r = _exit_segment(t, e, px, ent_px[i], mark[i], cost)
                        aw = pos_w[i] * pos_m[i]
                        num += aw * r
                        den += aw if absolute else pos_w[i]
                    in_pos[i] = False
                    pend_exit[i] = -1
                    sched[i] = -1
                    n_open -= 1
                    if sector_id[s] >= 0:
                        sec_count[sector_id[s]] -= 1
                else:
                    if trailing and H[s, t] > peak[i]:  # NaN high -> no update
                        peak[i] = H[s, t]
                    if breaker:
                        r = _held_segment(t, e, C[s, t], ent_px[i], mark[i], cost)
                        if r == r:
                            mark[i] = C[s, t]
                        else:
                            r = 0.0  # no bar: held at its last mark, the move booked at its next close
                        aw = pos_w[i] * pos_m[i]
                        num += aw * r
                        den += aw if absolute else pos_w[i]
                    if close_rule and pend_exit[i] < 0:
                        # (3) close-based exit signals
                        d = _display_at(t, s, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused)
                        have = True
                        r, n_dist[i], n_low[i] = _close_signal(d, sell[t], rule, n_dist[i], n_low[i])
                        if r >= 0:
                            pend_exit[i] = t + 1
                            pend_rsn[i] = r
            if count:
                if not have:
                    d = _display_at(t, s, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused)
                    have = True
                if d >= buy[t]:  # NaN -> False
                    n_sig += 1
                    # (4) a flat symbol's signal enters at the next open (when that open exists)
                    if enter and not in_pos[i] and pend_entry[i] < 0 and np.isfinite(O[s, t + 1]):
                        if deferred:
                            cand[nc] = i
                            cand_score[nc] = d
                            nc += 1
                        else:
                            pend_entry[i] = t + 1
                            sig_idx[i] = t
                            ent_score[i] = d
                            pos_w[i], pos_m[i] = _entry_weight(
                                sizing, s, t, C, A, atr_med, stop_loss, atr_stop, trail_stop, risk_fraction,
                                max_weight, kelly_fraction, hist, n_hist, win, mult, use_mult)
                            n_open += 1
        blocked = False
        if breaker:
            if den > 0.0:
                equity *= 1.0 + (num / den if not absolute else num / max(1.0, den))
            if blocked_until >= 0 and t >= blocked_until:  # the cool-off is over: a fresh high-water mark
                eq_peak = equity
                blocked_until = -1
            if equity > eq_peak:
                eq_peak = equity
            if blocked_until < 0 and equity < eq_peak * (1.0 - dd_breaker):
                blocked_until = t + dd_cooloff
            blocked = blocked_until >= 0
        if nc > 0 and not blocked:
            # caps: positions whose exit is due at the next open free their slot
            freeing = 0
            for i in range(M):
                s = a + i
                free_next[i] = in_pos[i] and ((pend_exit[i] >= 0 and pend_exit[i] <= t + 1) or (sched[i] >= 0 and sched[i] <= t + 1)) and np.isfinite(O[s, t + 1])
                if free_next[i]:
                    freeing += 1
                    if sector_id[s] >= 0:
                        sec_count[sector_id[s]] -= 1
            # carried positions held through the next open take their slots
            carried = 0
            for j in range(n_car):
                car_on[j] = c_entry[j] <= t + 1 and t + 1 < c_until[j]
                if car_on[j]:
                    carried += 1
                    if sector_id[c_sym[j]] >= 0:
                        sec_count[sector_id[c_sym[j]]] += 1
            order = np.argsort(-cand_score[:nc], kind="mergesort")
            slots = (max_positions - (n_open - freeing) - carried) if max_positions >= 0 else nc
            taken = 0
            for j in range(nc):
                if taken >= slots:
                    break
                i = cand[order[j]]
                sid = sector_id[a + i]
                if max_per_sector >= 0 and sid >= 0 and sec_count[sid] >= max_per_sector:
                    continue
                if corr_on:
                    # refused when too correlated with a position held through the next open (or entering at it)
                    bad = False
                    for q in range(M):
                        if (in_pos[q] and not free_next[q]) or pend_entry[q] == t + 1:
                            if _corr(C, a + i, a + q, t, corr_window, min_obs) > corr_cap:  # NaN -> False
                                bad = True
                                break
                    for u in range(n_car):
                        if bad:
                            break
                        if car_on[u] and _corr(C, a + i, c_sym[u], t, corr_window, min_obs) > corr_cap:
                            bad = True
                    if bad:
                        continue
                pend_entry[i] = t + 1
                sig_idx[i] = t
                ent_score[i] = cand_score[order[j]]
                pos_w[i], pos_m[i] = _entry_weight(
                    sizing, a + i, t, C, A, atr_med, stop_loss, atr_stop, trail_stop, risk_fraction, max_weight,
                    kelly_fraction, hist, n_hist, win, mult, use_mult)
                if sid >= 0:
                    sec_count[sid] += 1
                taken += 1
                n_open += 1
            # restore the freeing positions' sector counts (they are still open until the next open)
            for i in range(M):
                if free_next[i]:
                    s = a + i
                    if sector_id[s] >= 0:
                        sec_count[sector_id[s]] += 1
            for j in range(n_car):
                if car_on[j] and sector_id[c_sym[j]] >= 0:
                    sec_count[sector_id[c_sym[j]]] -= 1
    # positions still open at the end of the data
    last = data_end - 1
    for i in range(M):
        if in_pos[i]:
            s = a + i
            if n < cap:
                k = off + n
                o_sym[k] = s; o_sig[k] = sig_idx[i]; o_ent[k] = ent_idx[i]; o_ext[k] = last
                o_ep[k] = ent_px[i]; o_xp[k] = C[s, last]; o_rsn[k] = R_OPEN; o_score[k] = ent_score[i]
                o_w[k] = pos_w[i]; o_m[k] = pos_m[i]
            n += 1
    return n, n_sig


@njit(cache=True, nogil=True)
def simulate_nb(
    O, H, L, C, A, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop, trail_stop,
    sig_start, sig_end, data_end, entry_ok, max_positions, max_per_sector, sector_id, n_sectors,
    c_sym, c_entry, c_until,
    cost, sizing, risk_fraction, max_weight, kelly_fraction, kelly_window, mult, use_mult, atr_med,
    dd_breaker, dd_cooloff, corr_cap, corr_window, cap,
):
    """Every symbol in one date-major pass (position caps and portfolio rules allowed; carried positions, held by
    someone else, take their slots: ``c_sym``, ``c_entry``, ``c_until``, empty when none). Returns (ok, trades,
    accumulation signals, trade arrays..., weights, multipliers); ok is False when ``cap`` was too small (the
    arrays are then empty: retry with cap=trades). Matrices indexed [symbol, session]."""
    N = O.shape[0]
    o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score = _trade_buffers(cap)
    o_w = np.empty(cap, np.float64)
    o_m = np.empty(cap, np.float64)
    n, n_sig = _simulate_block(
        0, N, O, H, L, C, A, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
        buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop, trail_stop,
        sig_start, sig_end, data_end, entry_ok, max_positions, max_per_sector, sector_id, n_sectors,
        c_sym, c_entry, c_until,
        cost, sizing, risk_fraction, max_weight, kelly_fraction, kelly_window, mult, use_mult, atr_med,
        dd_breaker, dd_cooloff, corr_cap, corr_window,
        o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, o_w, o_m, 0, cap,
    )
    m = n if n <= cap else 0
    return (n <= cap, n, n_sig, o_sym[:m], o_sig[:m], o_ent[:m], o_ext[:m], o_ep[:m], o_xp[:m], o_rsn[:m],
            o_score[:m], o_w[:m], o_m[:m])


# ------------------------------------------------------------------------------------------------ symbol-major kernel


@njit(cache=True, nogil=True)
def _combine_row(s, start, stop, ts, tl, tp, sg, ws, wl, wp, lo, rng, out):
    """out[t] = display of (t, s) for t in [start, stop) from symbol-major (N x T) terms; the arithmetic of
    ``_combine`` (bit-identical), in a loop the compiler vectorizes (indices from 0 over slices: a loop from a
    run-time start keeps numba's negative-index wraparound and is ~4x slower)."""
    a = ts[s, start:stop]
    b = tl[s, start:stop]
    c = tp[s, start:stop]
    g = sg[s, start:stop]
    o = out[start:stop]
    for i in range(o.shape[0]):
        v = (ws * a[i] + wl * b[i] + wp * c[i]) * (lo + rng * g[i])
        if v > 1.0:
            v = 1.0
        elif v < -1.0:
            v = -1.0
        o[i] = (v + 1.0) * 50.0


@njit(cache=True, nogil=True)
def _count_signals_row(d, buy, sig_start, sig_end, entry_ok):
    """Accumulation closes d[t] >= buy[t] on entry_ok sessions t in [sig_start, sig_end) (NaN never counts)."""
    x = d[sig_start:sig_end]
    bt = buy[sig_start:sig_end]
    ok = entry_ok[sig_start:sig_end]
    c = 0
    for i in range(x.shape[0]):
        c += (x[i] >= bt[i]) & ok[i]
    return c


@njit(cache=True, nogil=True)
def _walk_symbol(
    s, d, Os, Hs, Ls, Cs, As, buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop,
    trail_stop, sig_start, sig_end, data_end, entry_ok, o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, n, cap,
):
    """Every trade of symbol ``s`` (uncapped: symbols are independent), event by event: while flat, scan the closes
    for the next accumulation signal; in a position, apply the per-bar rules of ``_simulate_block`` in the same
    order until the exit. ``d``, Os, Hs, Ls, Cs, As: the symbol's display, prices and ATR14 indexed by session.
    Writes trades from output index ``n`` (only below ``cap``) and returns the new count."""
    last_sig = min(sig_end, data_end - 1)  # a signal at the close of t enters at the open of t + 1 < data_end
    close_rule = rule != RULE_FIXED
    trailing = trail_stop == trail_stop
    # without close signals and intraday levels only the scheduled exit can fire: its bar is the first to visit
    schedule_only = (not close_rule and stop_loss != stop_loss and take_profit != take_profit
                     and atr_stop != atr_stop and not trailing)
    t = sig_start
    while True:
        # flat at the close of t: the next signal whose next open exists
        while t < last_sig:
            if d[t] >= buy[t] and entry_ok[t] and np.isfinite(Os[t + 1]):
                break
            t += 1
        if t >= last_sig:
            return n
        sig = t
        e = t + 1
        ent_px = Os[e]
        score = d[t]
        peak = ent_px
        atr_lvl = _atr_level(ent_px, atr_stop, As, sig)
        sched, sched_rsn = _scheduled_exit(e, rule, hold_days, max_days, time_stop)
        pend_exit = -1
        pend_rsn = -1
        n_dist = 0
        n_low = 0
        x = -1
        px = 0.0
        rsn = -1
        first = e
        if schedule_only:
            first = sched if sched >= 0 else data_end
        for k in range(first, data_end):
            # (1) exits due at the open
            due = -1
            if pend_exit >= 0 and pend_exit <= k:
                due = pend_rsn
            elif sched >= 0 and sched <= k:
                due = sched_rsn
            if due >= 0 and k > e and np.isfinite(Os[k]):
                x = k
                px = Os[k]
                rsn = due
                break
            # (2) intraday stops (the highest first), then take-profit
            hit, px, rsn = _intraday_exit(Os[k], Hs[k], Ls[k], ent_px, k == e, stop_loss, take_profit, atr_lvl,
                                          trail_stop, peak)
            if hit:
                x = k
                break
            if trailing and Hs[k] > peak:  # NaN high -> no update
                peak = Hs[k]
            # (3) close-based exit signals
            if close_rule and pend_exit < 0:
                r, n_dist, n_low = _close_signal(d[k], sell[k], rule, n_dist, n_low)
                if r >= 0:
                    pend_exit = k + 1
                    pend_rsn = r
        if x < 0:  # still open at the end of the data: marked at the last close
            x = data_end - 1
            px = Cs[x]
            rsn = R_OPEN
        if n < cap:
            o_sym[n] = s; o_sig[n] = sig; o_ent[n] = e; o_ext[n] = x
            o_ep[n] = ent_px; o_xp[n] = px; o_rsn[n] = rsn; o_score[n] = score
        n += 1
        if rsn == R_OPEN:
            return n
        t = x  # flat at the close of the exit bar: its signal can enter at the next open


@njit(cache=True, nogil=True)
def _symbols_block(
    k, bounds, cap, O, H, L, C, A, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop, trail_stop,
    sig_start, sig_end, data_end, entry_ok, o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score,
):
    """Symbols [bounds[k], bounds[k+1]) one after the other, trades written from k·cap (at most cap). Fused: each
    symbol's display row is combined into a buffer of the block (never a (T x N) matrix). Returns (trades, signals).
    ``A`` (ATR14) is read only with an ATR stop (a (1 x 1) stand-in otherwise)."""
    T = O.shape[1]
    buf = np.empty(T if fused else 0, np.float64)
    off = k * cap
    n = off
    g = 0
    use_atr = atr_stop == atr_stop
    for s in range(bounds[k], bounds[k + 1]):
        As = A[s] if use_atr else A[0]
        if fused:
            _combine_row(s, sig_start, data_end, ts, tl, tp, sg, ws, wl, wp, lo, rng, buf)
            g += _count_signals_row(buf, buy, sig_start, sig_end, entry_ok)
            n = _walk_symbol(s, buf, O[s], H[s], L[s], C[s], As, buy, sell, rule, hold_days, max_days, stop_loss,
                             take_profit, time_stop, atr_stop, trail_stop, sig_start, sig_end, data_end, entry_ok,
                             o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, n, off + cap)
        else:
            g += _count_signals_row(disp[s], buy, sig_start, sig_end, entry_ok)
            n = _walk_symbol(s, disp[s], O[s], H[s], L[s], C[s], As, buy, sell, rule, hold_days, max_days,
                             stop_loss, take_profit, time_stop, atr_stop, trail_stop, sig_start, sig_end, data_end,
                             entry_ok, o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, n, off + cap)
    return n - off, g


@njit(cache=True, nogil=True)
def _collect_blocks(cap, counts, sigs, o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score):
    """(ok, trades — or when not ok the largest block's count, to retry with as cap —, accumulation signals, trade
    arrays in block order) from the per-block slices of the buffers."""
    nb = counts.shape[0]
    n_sig = 0
    need = 0
    total = 0
    for k in range(nb):
        n_sig += sigs[k]
        need = max(need, counts[k])
        total += counts[k]
    if need > cap:
        return (False, need, n_sig, *_trade_buffers(0))
    if nb == 1:
        return (True, total, n_sig, o_sym[:total], o_sig[:total], o_ent[:total], o_ext[:total], o_ep[:total],
                o_xp[:total], o_rsn[:total], o_score[:total])
    r_sym, r_sig, r_ent, r_ext, r_ep, r_xp, r_rsn, r_score = _trade_buffers(total)
    j = 0
    for k in range(nb):
        a = k * cap
        for i in range(counts[k]):
            r_sym[j] = o_sym[a + i]; r_sig[j] = o_sig[a + i]; r_ent[j] = o_ent[a + i]; r_ext[j] = o_ext[a + i]
            r_ep[j] = o_ep[a + i]; r_xp[j] = o_xp[a + i]; r_rsn[j] = o_rsn[a + i]; r_score[j] = o_score[a + i]
            j += 1
    return True, total, n_sig, r_sym, r_sig, r_ent, r_ext, r_ep, r_xp, r_rsn, r_score


# The serial and the parallel driver are two functions (not one Python function jitted twice): numba's on-disk
# cache keys an entry by function and signature only, so twins would load each other's machine code.
@njit(cache=True, nogil=True)
def simulate_symbols_nb(
    O, H, L, C, A, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop, trail_stop,
    sig_start, sig_end, data_end, entry_ok, bounds, cap,
):
    """Uncapped simulation, symbol-major: every array is (N x T) C-contiguous (a symbol's sessions contiguous);
    blocks of symbols [bounds[k], bounds[k+1]) one after the other, each writing up to ``cap`` trades into its own
    slice. Returns ``_collect_blocks``'s (ok, trades, accumulation signals, trade arrays in symbol order...)."""
    nb = bounds.shape[0] - 1
    out = _trade_buffers(nb * cap)
    counts = np.zeros(nb, np.int64)
    sigs = np.zeros(nb, np.int64)
    for k in range(nb):
        counts[k], sigs[k] = _symbols_block(
            k, bounds, cap, O, H, L, C, A, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused, buy, sell, rule,
            hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop, trail_stop, sig_start, sig_end,
            data_end, entry_ok, *out)
    return _collect_blocks(cap, counts, sigs, *out)


@njit(cache=True, nogil=True, parallel=True)
def simulate_symbols_par_nb(
    O, H, L, C, A, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop, trail_stop,
    sig_start, sig_end, data_end, entry_ok, bounds, cap,
):
    """``simulate_symbols_nb`` with the blocks on numba's threads (same trades, same order)."""
    nb = bounds.shape[0] - 1
    out = _trade_buffers(nb * cap)
    counts = np.zeros(nb, np.int64)
    sigs = np.zeros(nb, np.int64)
    for k in prange(nb):
        c, g = _symbols_block(  # k as int64: prange's index is uint64, a second compiled signature of the block
            np.int64(k), bounds, cap, O, H, L, C, A, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused, buy, sell, rule,
            hold_days, max_days, stop_loss, take_profit, time_stop, atr_stop, trail_stop, sig_start, sig_end,
            data_end, entry_ok, *out)
        counts[k] = c
        sigs[k] = g
    return _collect_blocks(cap, counts, sigs, *out)


# ------------------------------------------------------------------------------------------------ portfolio


@njit(cache=True, nogil=True)
def portfolio_returns_nb(Cs, sym, ent, ext, ep, xp, is_open, weight, mult, absolute, cost, start, stop):
    """Daily portfolio return of the positions active each day in [start, stop). Cash days return 0.

    Segment returns (docs/ENGINE.md): entry day close/(entry·(1+c)) − 1; held days close/prev close − 1;
    exit day fill·(1−c)/prev close − 1 (fill·(1−c)/(entry·(1+c)) − 1 when exit and entry share the day).
    A session without a close (no bar) holds the position at its last mark (return 0) and "prev close" is the
    last known close since the entry, so a position's segments compound to its trade return across a gap.
    Open-at-end positions are marked to the close through stop − 1 without an exit cost.
    Day return = Σ w·m·r / Σ w over the day's positions (relative sizing: the open positions share
    the portfolio; m scales each one's exposure, the rest is cash), or Σ w·m·r / max(1, Σ w·m) (``absolute``
    sizing: w is a fraction of equity, the rest cash, exposure above 1 scaled down to 1).
    ``Cs``: closes indexed [symbol, session] (symbol-major storage keeps a trade's closes contiguous; a
    precomputed returns matrix was measured slower: one more matrix to pull through the cache). ``weight`` /
    ``mult``: one per trade, or empty for 1. ``cost``: the per-side cost fraction, one per trade or one for all.
    """
    L = stop - start
    num = np.zeros(L, np.float64)
    den = np.zeros(L, np.float64)
    equal = weight.shape[0] == 0
    nomult = mult.shape[0] == 0
    one_cost = cost.shape[0] == 1
    for i in range(sym.shape[0]):
        ci = cost[0] if one_cost else cost[i]
        e = ent[i]
        x = ext[i]
        w = 1.0 if equal else weight[i]
        aw = w if nomult else w * mult[i]
        dw = aw if absolute else w
        c = Cs[sym[i]]
        last = stop - 1 if is_open[i] else x
        lo = max(e, start)
        mark = ep[i] * (1.0 + ci)  # the position's last mark: its entry cost, then its last known close
        for k in range(lo - 1, e - 1, -1):  # a span that starts after the entry: the last close since it
            if c[k] == c[k]:
                mark = c[k]
                break
        for d in range(lo, min(last, stop - 1) + 1):
            if d == x and not is_open[i]:
                r = xp[i] * (1.0 - ci) / mark - 1.0
            elif c[d] == c[d]:
                r = c[d] / mark - 1.0
                mark = c[d]
            else:
                r = 0.0  # no bar: held at its last mark; the move is booked at the next close it has
            num[d - start] += aw * r
            den[d - start] += dw
    out = np.zeros(L, np.float64)
    for j in range(L):
        if den[j] > 0:
            out[j] = num[j] / (max(1.0, den[j]) if absolute else den[j])
    return out


@njit(cache=True, nogil=True)
def _median(r):
    """Median of a non-empty array (the mean of the two middle values for an even size), by quickselect on a copy."""
    n = r.shape[0]
    for q in range(n):
        if r[q] != r[q]:
            return r[q]  # NaN, as numpy's median
    a = r.copy()
    k = n // 2
    lo = 0
    hi = n - 1
    while lo < hi:
        # median-of-three pivot, Hoare partition
        m = (lo + hi) // 2
        x, y, z = a[lo], a[m], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        p = y
        i = lo
        j = hi
        while i <= j:
            while a[i] < p:
                i += 1
            while a[j] > p:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    upper = a[k]
    if n % 2 == 1:
        return upper
    lower = a[0]
    for q in range(1, k):
        if a[q] > lower:
            lower = a[q]
    return (lower + upper) / 2


@njit(cache=True, nogil=True)
def missing_holds_nb(ent, ext, is_open, have):
    """Sorted distinct holding periods of the closed trades whose benchmark row is not computed yet (have[h] False
    or h beyond ``have``), and the longest holding period (-1 without closed trades)."""
    hmax = -1
    for i in range(ent.shape[0]):
        if not is_open[i]:
            hmax = max(hmax, ext[i] - ent[i])
    seen = np.zeros(hmax + 1, np.bool_)
    k = 0
    for i in range(ent.shape[0]):
        if not is_open[i]:
            h = ext[i] - ent[i]
            if not seen[h] and (h >= have.shape[0] or not have[h]):
                seen[h] = True
                k += 1
    out = np.empty(k, np.int64)
    j = 0
    for h in range(hmax + 1):
        if seen[h]:
            out[j] = h
            j += 1
    return out, hmax


@njit(cache=True, nogil=True)
def run_stats_nb(sym, ent, ext, ep, xp, is_open, net, weight, mult, absolute, cost, Cs, bench, fp_sessions, start,
                 stop):
    """Every per-run statistic in one call: the closed trades' net returns (trade order), their matched benchmark
    (bench[h, s] − 1 for hold h, 0 where not finite) and excess, the false-positive count (a close of the first
    ``fp_sessions`` sessions from the entry bar, never past the exit bar, below the entry price), and the daily
    portfolio's mean, std and max drawdown over [start, stop).

    Returns (n_closed, mean, std, wins, mean win, mean loss, losses, median, false positives, mean benchmark,
    excess mean, excess std, mean hold, daily mean, daily std, max drawdown, days)."""
    n = sym.shape[0]
    nc = 0
    for i in range(n):
        if not is_open[i]:
            nc += 1
    r = np.empty(nc, np.float64)
    ex = np.empty(nc, np.float64)
    j = 0
    fp = 0
    hold = 0
    sb = 0.0
    for i in range(n):
        if is_open[i]:
            continue
        s = sym[i]
        e = ent[i]
        x = ext[i]
        r[j] = net[i]
        for k in range(fp_sessions):
            if Cs[s, min(e + k, x)] < ep[i]:
                fp += 1
                break
        ratio = bench[x - e, s]
        b = ratio - 1.0 if np.isfinite(ratio) else 0.0
        ex[j] = net[i] - b
        sb += b
        hold += x - e
        j += 1
    mean, sd, nw, mw, ml, _, nl = trade_stats_nb(r)
    ex_mean, ex_sd, _, _, _, _, _ = trade_stats_nb(ex)
    med = _median(r) if nc > 0 else 0.0
    daily = portfolio_returns_nb(Cs, sym, ent, ext, ep, xp, is_open, weight, mult, absolute, cost, start, stop)
    d_mean, d_sd, mdd = curve_stats_nb(daily)
    avg_b = sb / nc if nc > 0 else 0.0
    avg_h = hold / nc if nc > 0 else 0.0
    return (nc, mean, sd, nw, mw, ml, nl, med, fp, avg_b, ex_mean, ex_sd, avg_h, d_mean, d_sd, mdd,
            daily.shape[0])


def _combine(ts, tl, tp, sg, ws, wl, wp, lo, hi):
    """display = (clip((ws·ts + wl·tl + wp·tp)·(lo + (hi−lo)·sg), −1, 1) + 1)·50 in one pass (NaN ts -> NaN)."""
    T, N = ts.shape
    out = np.empty((T, N), np.float64)
    span = hi - lo
    for t in prange(T):
        for s in range(N):
            v = (ws * ts[t, s] + wl * tl[t, s] + wp * tp[t, s]) * (lo + span * sg[t, s])
            if v > 1.0:
                v = 1.0
            elif v < -1.0:
                v = -1.0
            out[t, s] = (v + 1.0) * 50.0
    return out


combine_nb = njit(cache=True, nogil=True)(_combine)  # serial: prange runs as range
combine_par_nb = njit(nogil=True, parallel=True)(_combine)  # big panels: dates across threads


@njit(cache=True, nogil=True)
def trade_stats_nb(r):
    """(mean, std ddof=1, hit count, mean of r > 0, mean of r <= 0, n wins, n losses) in two passes."""
    n = r.shape[0]
    s = 0.0
    sw = 0.0
    sl = 0.0
    nw = 0
    for i in range(n):
        v = r[i]
        s += v
        if v > 0:
            sw += v
            nw += 1
        else:
            sl += v
    mean = s / n if n > 0 else 0.0
    ss = 0.0
    for i in range(n):
        d = r[i] - mean
        ss += d * d
    sd = np.sqrt(ss / (n - 1)) if n > 1 else 0.0
    nl = n - nw
    return mean, sd, nw, (sw / nw if nw > 0 else 0.0), (sl / nl if nl > 0 else 0.0), nw, nl


@njit(cache=True, nogil=True)
def curve_stats_nb(daily):
    """(mean, std ddof=1, max drawdown of the compounded curve as a positive fraction)."""
    n = daily.shape[0]
    s = 0.0
    for i in range(n):
        s += daily[i]
    mean = s / n if n > 0 else 0.0
    ss = 0.0
    eq = 1.0
    peak = 1.0
    mdd = 0.0
    for i in range(n):
        d = daily[i] - mean
        ss += d * d
        eq *= 1.0 + daily[i]
        if eq > peak:
            peak = eq
        dd = 1.0 - eq / peak
        if dd > mdd:
            mdd = dd
    sd = np.sqrt(ss / (n - 1)) if n > 1 else 0.0
    return mean, sd, mdd
