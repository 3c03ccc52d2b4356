"""Numba kernels for the path-dependent parts of the engine. Each ``*_nb`` takes numpy arrays and scalars only.

Every kernel is checked against the plain pandas/python reference in tests/reference_engine.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["simulate_nb", "portfolio_returns_nb", "combine_nb", "combine_par_nb", "simulate_symbols_nb", "trade_stats_nb", "curve_stats_nb",
           "PARALLEL_MIN_CELLS", "RULE_CODES"]

# Panels with at least this many (date x symbol) cells use the parallel kernels; below it thread start-up costs
# more than it saves.
PARALLEL_MIN_CELLS = 200_000

# exit rules
RULE_FIXED, RULE_FIRST_DIST, RULE_2X_DIST, RULE_SCORE_DECAY, RULE_HYBRID = 0, 1, 2, 3, 4
RULE_CODES = {"fixed": 0, "first_dist": 1, "2x_consec_dist": 2, "score_decay": 3, "hybrid": 4}
# exit reasons (index into simulate.EXIT_REASONS)
R_FIXED, R_FIRST_DIST, R_2X_DIST, R_SCORE_DECAY, R_MAX_DAYS, R_TIME_STOP, R_STOP, R_TP, R_OPEN = 0, 1, 2, 3, 4, 5, 6, 7, 8


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
def _intraday_exit(o, h, lo, ent_px, first_bar, stop_loss, take_profit):
    """(hit, fill price, reason) for bar (o, h, lo) of a position entered at ent_px: the stop first, then the
    take-profit; a gap through the level fills at the open, except on the entry bar (entered at that open)."""
    if stop_loss == stop_loss:
        lvl = ent_px * (1.0 - stop_loss)
        if lo <= lvl:
            return True, (lvl if first_bar else min(o, lvl)), R_STOP
    if take_profit == take_profit:
        lvl = ent_px * (1.0 + take_profit)
        if h >= lvl:
            return True, (lvl if first_bar else max(o, lvl)), R_TP
    return False, 0.0, -1


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
def simulate_nb(
    O, H, L, C, disp, buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
    cost, sig_start, sig_end, data_end, max_positions, max_per_sector, sector_id, n_sectors, capacity, entry_ok,
):
    """Date-major simulation over symbols. See docs/ENGINE.md for every rule.

    hold_days / max_days / time_stop: -1 when unused; stop_loss / take_profit: NaN when unused;
    max_positions / max_per_sector: -1 when uncapped; entry_ok (T,) bool: sessions whose close may open a position
    (a regime filter). Returns trade arrays truncated to the trade count.
    """
    T, N = O.shape
    o_sym = np.empty(capacity, np.int64)
    o_sig = np.empty(capacity, np.int64)
    o_ent = np.empty(capacity, np.int64)
    o_ext = np.empty(capacity, np.int64)
    o_ep = np.empty(capacity, np.float64)
    o_xp = np.empty(capacity, np.float64)
    o_rsn = np.empty(capacity, np.int64)
    o_score = np.empty(capacity, np.float64)
    n = 0

    in_pos = np.zeros(N, np.bool_)
    ent_idx = np.full(N, -1, np.int64)
    sig_idx = np.full(N, -1, np.int64)
    ent_px = np.zeros(N, np.float64)
    ent_score = np.zeros(N, np.float64)
    pend_entry = np.full(N, -1, np.int64)   # open index at which an entry fills
    pend_exit = np.full(N, -1, np.int64)    # open index at which a close-signal exit fills
    pend_rsn = np.full(N, -1, np.int64)
    sched = np.full(N, -1, np.int64)        # scheduled open exit (fixed / max_days / time stop)
    sched_rsn = np.full(N, -1, np.int64)
    n_dist = np.zeros(N, np.int64)          # consecutive distribution closes inside the position
    n_low = np.zeros(N, np.int64)           # consecutive closes < 50 inside the position
    sec_count = np.zeros(max(n_sectors, 1), np.int64)
    n_open = 0
    cand = np.empty(N, np.int64)
    cand_score = np.empty(N, np.float64)

    for t in range(sig_start, data_end):
        # (0) pending entries fill at this open
        for s in range(N):
            if pend_entry[s] == t:
                pend_entry[s] = -1
                in_pos[s] = True
                ent_idx[s] = t
                ent_px[s] = O[t, s]
                n_dist[s] = 0
                n_low[s] = 0
                sched[s], sched_rsn[s] = _scheduled_exit(t, rule, hold_days, max_days, time_stop)
        for s in range(N):
            if not in_pos[s]:
                continue
            e = ent_idx[s]
            # (1) exits due at the open
            due = -1
            if pend_exit[s] >= 0 and pend_exit[s] <= t:
                due = pend_rsn[s]
            elif sched[s] >= 0 and sched[s] <= t:
                due = sched_rsn[s]
            if due >= 0 and t > e:
                px = O[t, s]
                if np.isfinite(px):
                    o_sym[n] = s; o_sig[n] = sig_idx[s]; o_ent[n] = e; o_ext[n] = t
                    o_ep[n] = ent_px[s]; o_xp[n] = px; o_rsn[n] = due; o_score[n] = ent_score[s]
                    n += 1
                    in_pos[s] = False
                    pend_exit[s] = -1
                    sched[s] = -1
                    n_open -= 1
                    if sector_id[s] >= 0:
                        sec_count[sector_id[s]] -= 1
                    continue
            # (2) intraday stop-loss, then take-profit
            hit, px, rsn = _intraday_exit(O[t, s], H[t, s], L[t, s], ent_px[s], t == e, stop_loss, take_profit)
            if hit:
                o_sym[n] = s; o_sig[n] = sig_idx[s]; o_ent[n] = e; o_ext[n] = t
                o_ep[n] = ent_px[s]; o_xp[n] = px; o_rsn[n] = rsn; o_score[n] = ent_score[s]
                n += 1
                in_pos[s] = False
                pend_exit[s] = -1
                sched[s] = -1
                n_open -= 1
                if sector_id[s] >= 0:
                    sec_count[sector_id[s]] -= 1
                continue
            # (3) close-based exit signals
            if pend_exit[s] < 0:
                r, n_dist[s], n_low[s] = _close_signal(disp[t, s], sell, rule, n_dist[s], n_low[s])
                if r >= 0:
                    pend_exit[s] = t + 1
                    pend_rsn[s] = r
        # (4) new entries from signals at this close (flat symbols, signal window only)
        if t < sig_end and t + 1 < data_end and entry_ok[t]:
            nc = 0
            for s in range(N):
                if in_pos[s] or pend_entry[s] >= 0:
                    continue
                d = disp[t, s]
                if d >= buy and np.isfinite(O[t + 1, s]):
                    cand[nc] = s
                    cand_score[nc] = d
                    nc += 1
            if nc > 0:
                capped = max_positions >= 0 or max_per_sector >= 0
                if capped:
                    # positions whose exit is due at the next open free their slot
                    freeing = 0
                    for s in range(N):
                        if in_pos[s] and ((pend_exit[s] >= 0 and pend_exit[s] <= t + 1) or (sched[s] >= 0 and sched[s] <= t + 1)) and np.isfinite(O[t + 1, s]):
                            freeing += 1
                            if sector_id[s] >= 0:
                                sec_count[sector_id[s]] -= 1
                    order = np.argsort(-cand_score[:nc], kind="mergesort")
                    slots = (max_positions - (n_open - freeing)) if max_positions >= 0 else nc
                    taken = 0
                    for j in range(nc):
                        if taken >= slots:
                            break
                        s = cand[order[j]]
                        sid = sector_id[s]
                        if max_per_sector >= 0 and sid >= 0 and sec_count[sid] >= max_per_sector:
                            continue
                        pend_entry[s] = t + 1
                        sig_idx[s] = t
                        ent_score[s] = cand_score[order[j]]
                        if sid >= 0:
                            sec_count[sid] += 1
                        taken += 1
                        n_open += 1
                    # restore the freeing positions' sector counts (they are still open until the next open)
                    for s in range(N):
                        if in_pos[s] and ((pend_exit[s] >= 0 and pend_exit[s] <= t + 1) or (sched[s] >= 0 and sched[s] <= t + 1)) and np.isfinite(O[t + 1, s]):
                            if sector_id[s] >= 0:
                                sec_count[sector_id[s]] += 1
                else:
                    for j in range(nc):
                        s = cand[j]
                        pend_entry[s] = t + 1
                        sig_idx[s] = t
                        ent_score[s] = cand_score[j]
                        n_open += 1
    # positions still open at the end of the data
    last = data_end - 1
    for s in range(N):
        if in_pos[s]:
            o_sym[n] = s; o_sig[n] = sig_idx[s]; o_ent[n] = ent_idx[s]; o_ext[n] = last
            o_ep[n] = ent_px[s]; o_xp[n] = C[last, s]; o_rsn[n] = R_OPEN; o_score[n] = ent_score[s]
            n += 1
    return o_sym[:n], o_sig[:n], o_ent[:n], o_ext[:n], o_ep[:n], o_xp[:n], o_rsn[:n], o_score[:n]


@njit(cache=True, nogil=True)
def portfolio_returns_nb(C, sym, ent, ext, ep, xp, is_open, weight, cost, start, stop):
    """Daily weighted-average return of the positions active each day in [start, stop). Cash days return 0.

    Segment returns (docs/ENGINE.md): entry day close/(entry·(1+c)) − 1; held days close/prev close − 1;
    exit day fill·(1−c)/prev close − 1 (fill·(1−c)/(entry·(1+c)) − 1 when exit and entry share the day).
    Open-at-end positions are marked to the close through stop − 1 without an exit cost.
    """
    L = stop - start
    num = np.zeros(L, np.float64)
    den = np.zeros(L, np.float64)
    for i in range(sym.shape[0]):
        s = sym[i]
        e = ent[i]
        x = ext[i]
        w = weight[i]
        last = stop - 1 if is_open[i] else x
        for d in range(max(e, start), min(last, stop - 1) + 1):
            if d == e and d == x and not is_open[i]:
                r = xp[i] * (1.0 - cost) / (ep[i] * (1.0 + cost)) - 1.0
            elif d == e:
                r = C[d, s] / (ep[i] * (1.0 + cost)) - 1.0
            elif d == x and not is_open[i]:
                r = xp[i] * (1.0 - cost) / C[d - 1, s] - 1.0
            else:
                r = C[d, s] / C[d - 1, s] - 1.0
            if r == r:
                num[d - start] += w * r
                den[d - start] += w
    out = np.zeros(L, np.float64)
    for j in range(L):
        if den[j] > 0:
            out[j] = num[j] / den[j]
    return out


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
def _simulate_symbol_nb(
    s, O, H, L, C, disp, buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
    sig_start, sig_end, data_end, entry_ok, off, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score,
):
    """One symbol of ``simulate_nb`` without position caps (symbols are then independent). Same rules, same
    order inside a bar; writes trades from index ``off`` and returns how many it wrote. The per-bar rules are
    written out here rather than calling ``_scheduled_exit`` / ``_intraday_exit`` / ``_close_signal``: inside the
    parallel region those calls cost ~70% more time (measured, 500 x 1,260); tests/test_engine_kernels.py checks
    the two kernels trade for trade."""
    n = off
    in_pos = False
    e = -1
    sig = -1
    ent_px = 0.0
    ent_score = 0.0
    pend_entry = -1
    pend_exit = -1
    pend_rsn = -1
    sched = -1
    sched_rsn = -1
    n_dist = 0
    n_low = 0
    for t in range(sig_start, data_end):
        if pend_entry == t:
            pend_entry = -1
            in_pos = True
            e = t
            ent_px = O[t, s]
            n_dist = 0
            n_low = 0
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
            sched = sc
            sched_rsn = sr
        exited = False
        if in_pos:
            due = -1
            if pend_exit >= 0 and pend_exit <= t:
                due = pend_rsn
            elif sched >= 0 and sched <= t:
                due = sched_rsn
            if due >= 0 and t > e and np.isfinite(O[t, s]):
                o_sig[n] = sig; o_ent[n] = e; o_ext[n] = t
                o_ep[n] = ent_px; o_xp[n] = O[t, s]; o_rsn[n] = due; o_score[n] = ent_score
                n += 1
                in_pos = False
                pend_exit = -1
                sched = -1
                exited = True
            if not exited:
                hit = False
                px = 0.0
                rsn = -1
                if stop_loss == stop_loss:
                    lvl = ent_px * (1.0 - stop_loss)
                    if L[t, s] <= lvl:
                        hit = True
                        rsn = R_STOP
                        px = lvl if t == e else min(O[t, s], lvl)
                if not hit and take_profit == take_profit:
                    lvl = ent_px * (1.0 + take_profit)
                    if H[t, s] >= lvl:
                        hit = True
                        rsn = R_TP
                        px = lvl if t == e else max(O[t, s], lvl)
                if hit:
                    o_sig[n] = sig; o_ent[n] = e; o_ext[n] = t
                    o_ep[n] = ent_px; o_xp[n] = px; o_rsn[n] = rsn; o_score[n] = ent_score
                    n += 1
                    in_pos = False
                    pend_exit = -1
                    sched = -1
                    exited = True
            if not exited and pend_exit < 0:
                d = disp[t, s]
                is_dist = d <= sell
                if is_dist:
                    n_dist += 1
                else:
                    n_dist = 0
                if d < 50.0:
                    n_low += 1
                else:
                    n_low = 0
                r = -1
                if (rule == RULE_FIRST_DIST or rule == RULE_HYBRID) and is_dist:
                    r = R_FIRST_DIST
                elif rule == RULE_2X_DIST and n_dist >= 2:
                    r = R_2X_DIST
                elif rule == RULE_SCORE_DECAY and n_low >= 3:
                    r = R_SCORE_DECAY
                if r >= 0:
                    pend_exit = t + 1
                    pend_rsn = r
        if t < sig_end and t + 1 < data_end and entry_ok[t] and not in_pos and pend_entry < 0:
            d = disp[t, s]
            if d >= buy and np.isfinite(O[t + 1, s]):
                pend_entry = t + 1
                sig = t
                ent_score = d
    if in_pos:
        last = data_end - 1
        o_sig[n] = sig; o_ent[n] = e; o_ext[n] = last
        o_ep[n] = ent_px; o_xp[n] = C[last, s]; o_rsn[n] = R_OPEN; o_score[n] = ent_score
        n += 1
    return n - off


@njit(cache=True, nogil=True, parallel=True)
def simulate_symbols_nb(
    O, H, L, C, disp, buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
    sig_start, sig_end, data_end, entry_ok, offsets,
):
    """Uncapped simulation, symbols in parallel. ``offsets`` (N+1,): symbol s may write trades into
    [offsets[s], offsets[s+1]) (its accumulation-signal count bounds its trade count). Returns arrays in symbol
    order, compacted."""
    N = O.shape[1]
    cap = offsets[N]
    o_sig = np.empty(cap, np.int64)
    o_ent = np.empty(cap, np.int64)
    o_ext = np.empty(cap, np.int64)
    o_ep = np.empty(cap, np.float64)
    o_xp = np.empty(cap, np.float64)
    o_rsn = np.empty(cap, np.int64)
    o_score = np.empty(cap, np.float64)
    counts = np.zeros(N, np.int64)
    for s in prange(N):
        counts[s] = _simulate_symbol_nb(
            s, O, H, L, C, disp, buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
            sig_start, sig_end, data_end, entry_ok, offsets[s], o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score,
        )
    total = 0
    for s in range(N):
        total += counts[s]
    sym = np.empty(total, np.int64)
    r_sig = np.empty(total, np.int64)
    r_ent = np.empty(total, np.int64)
    r_ext = np.empty(total, np.int64)
    r_ep = np.empty(total, np.float64)
    r_xp = np.empty(total, np.float64)
    r_rsn = np.empty(total, np.int64)
    r_score = np.empty(total, np.float64)
    k = 0
    for s in range(N):
        a = offsets[s]
        for i in range(counts[s]):
            sym[k] = s
            r_sig[k] = o_sig[a + i]; r_ent[k] = o_ent[a + i]; r_ext[k] = o_ext[a + i]
            r_ep[k] = o_ep[a + i]; r_xp[k] = o_xp[a + i]; r_rsn[k] = o_rsn[a + i]; r_score[k] = o_score[a + i]
            k += 1
    return sym, r_sig, r_ent, r_ext, r_ep, r_xp, r_rsn, r_score


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
