"""Numba kernels for the path-dependent parts of the engine. Each ``*_nb`` takes numpy arrays and scalars only.

Every kernel is checked against the plain pandas/python reference in tests/reference_engine.py.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange

__all__ = [
    "simulate_nb", "simulate_symbols_nb", "simulate_symbols_par_nb", "portfolio_returns_nb", "missing_holds_nb",
    "run_stats_nb", "combine_nb", "combine_par_nb", "trade_stats_nb",
    "curve_stats_nb", "PARALLEL_MIN_CELLS", "RULE_CODES", "use_parallel",
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


@njit(cache=True, nogil=True)
def _simulate_block(
    a, b, O, H, L, C, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
    sig_start, sig_end, data_end, entry_ok, max_positions, max_per_sector, sector_id, n_sectors,
    o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, off, cap,
):
    """Date-major simulation of symbols [a, b) (all of them when capped: caps couple symbols). See docs/ENGINE.md.
    Every matrix is indexed [symbol, session], the symbol-major layout both kernels share.

    One pass per session over the block's symbols: (0) pending entries fill at the open, (1) exits due at the open,
    (2) intraday stop-loss then take-profit, (3) close-based exit signals, then the accumulation signal of the close
    is counted and (4) a flat symbol signalling at the close gets a pending entry at the next open (capped: becomes a
    candidate, ranked after the pass). The display score is read (or combined) only where a rule needs it: for every
    cell of the signal window (the signal count) and for open positions after it.

    Trades are written to the output arrays at [off, off + cap); the return value (trades, accumulation signals)
    counts every trade even past ``cap``, so a caller can retry with a larger buffer (results are identical).
    hold_days / max_days / time_stop: -1 when unused; stop_loss / take_profit: NaN when unused;
    max_positions / max_per_sector: -1 when uncapped; entry_ok (T,) bool: sessions whose close may open a position.
    """
    M = b - a
    in_pos = np.zeros(M, np.bool_)
    ent_idx = np.full(M, -1, np.int64)
    sig_idx = np.full(M, -1, np.int64)
    ent_px = np.zeros(M, np.float64)
    ent_score = np.zeros(M, np.float64)
    pend_entry = np.full(M, -1, np.int64)   # open index at which an entry fills
    pend_exit = np.full(M, -1, np.int64)    # open index at which a close-signal exit fills
    pend_rsn = np.full(M, -1, np.int64)
    sched = np.full(M, -1, np.int64)        # scheduled open exit (fixed / max_days / time stop)
    sched_rsn = np.full(M, -1, np.int64)
    n_dist = np.zeros(M, np.int64)          # consecutive distribution closes inside the position
    n_low = np.zeros(M, np.int64)           # consecutive closes < 50 inside the position
    capped = max_positions >= 0 or max_per_sector >= 0
    sec_count = np.zeros(max(n_sectors, 1), np.int64)
    cand = np.empty(M if capped else 0, np.int64)
    cand_score = np.empty(M if capped else 0, np.float64)
    close_rule = rule != RULE_FIXED  # the fixed exit never reads the score while in a position
    n = 0
    n_sig = 0
    n_open = 0

    for t in range(sig_start, data_end):
        count = t < sig_end and entry_ok[t]
        enter = count and t + 1 < data_end
        nc = 0
        for i in range(M):
            s = a + i
            # (0) a pending entry fills at this open
            if pend_entry[i] == t:
                pend_entry[i] = -1
                in_pos[i] = True
                ent_idx[i] = t
                ent_px[i] = O[s, t]
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
                    # (2) intraday stop-loss, then take-profit
                    hit, px, rsn = _intraday_exit(O[s, t], H[s, t], L[s, t], ent_px[i], t == e, stop_loss, take_profit)
                if rsn >= 0:
                    if n < cap:
                        k = off + n
                        o_sym[k] = s; o_sig[k] = sig_idx[i]; o_ent[k] = e; o_ext[k] = t
                        o_ep[k] = ent_px[i]; o_xp[k] = px; o_rsn[k] = rsn; o_score[k] = ent_score[i]
                    n += 1
                    in_pos[i] = False
                    pend_exit[i] = -1
                    sched[i] = -1
                    n_open -= 1
                    if sector_id[s] >= 0:
                        sec_count[sector_id[s]] -= 1
                elif close_rule and pend_exit[i] < 0:
                    # (3) close-based exit signals
                    d = _display_at(t, s, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused)
                    have = True
                    r, n_dist[i], n_low[i] = _close_signal(d, sell, rule, n_dist[i], n_low[i])
                    if r >= 0:
                        pend_exit[i] = t + 1
                        pend_rsn[i] = r
            if count:
                if not have:
                    d = _display_at(t, s, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused)
                    have = True
                if d >= buy:  # NaN -> False
                    n_sig += 1
                    # (4) a flat symbol's signal enters at the next open (when that open exists)
                    if enter and not in_pos[i] and pend_entry[i] < 0 and np.isfinite(O[s, t + 1]):
                        if capped:
                            cand[nc] = i
                            cand_score[nc] = d
                            nc += 1
                        else:
                            pend_entry[i] = t + 1
                            sig_idx[i] = t
                            ent_score[i] = d
                            n_open += 1
        if nc > 0:
            # caps: positions whose exit is due at the next open free their slot
            freeing = 0
            for i in range(M):
                s = a + i
                if in_pos[i] and ((pend_exit[i] >= 0 and pend_exit[i] <= t + 1) or (sched[i] >= 0 and sched[i] <= t + 1)) and np.isfinite(O[s, t + 1]):
                    freeing += 1
                    if sector_id[s] >= 0:
                        sec_count[sector_id[s]] -= 1
            order = np.argsort(-cand_score[:nc], kind="mergesort")
            slots = (max_positions - (n_open - freeing)) if max_positions >= 0 else nc
            taken = 0
            for j in range(nc):
                if taken >= slots:
                    break
                i = cand[order[j]]
                sid = sector_id[a + i]
                if max_per_sector >= 0 and sid >= 0 and sec_count[sid] >= max_per_sector:
                    continue
                pend_entry[i] = t + 1
                sig_idx[i] = t
                ent_score[i] = cand_score[order[j]]
                if sid >= 0:
                    sec_count[sid] += 1
                taken += 1
                n_open += 1
            # restore the freeing positions' sector counts (they are still open until the next open)
            for i in range(M):
                s = a + i
                if in_pos[i] and ((pend_exit[i] >= 0 and pend_exit[i] <= t + 1) or (sched[i] >= 0 and sched[i] <= t + 1)) and np.isfinite(O[s, t + 1]):
                    if sector_id[s] >= 0:
                        sec_count[sector_id[s]] += 1
    # positions still open at the end of the data
    last = data_end - 1
    for i in range(M):
        if in_pos[i]:
            s = a + i
            if n < cap:
                k = off + n
                o_sym[k] = s; o_sig[k] = sig_idx[i]; o_ent[k] = ent_idx[i]; o_ext[k] = last
                o_ep[k] = ent_px[i]; o_xp[k] = C[s, last]; o_rsn[k] = R_OPEN; o_score[k] = ent_score[i]
            n += 1
    return n, n_sig


@njit(cache=True, nogil=True)
def simulate_nb(
    O, H, L, C, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
    sig_start, sig_end, data_end, entry_ok, max_positions, max_per_sector, sector_id, n_sectors, cap,
):
    """Every symbol in one date-major pass (position caps allowed). Returns (ok, trades, accumulation signals,
    trade arrays...); ok is False when ``cap`` was too small (the arrays are then empty: retry with cap=trades).
    Matrices indexed [symbol, session]."""
    N = O.shape[0]
    o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score = _trade_buffers(cap)
    n, n_sig = _simulate_block(
        0, N, O, H, L, C, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
        buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
        sig_start, sig_end, data_end, entry_ok, max_positions, max_per_sector, sector_id, n_sectors,
        o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, 0, cap,
    )
    m = n if n <= cap else 0
    return n <= cap, n, n_sig, o_sym[:m], o_sig[:m], o_ent[:m], o_ext[:m], o_ep[:m], o_xp[:m], o_rsn[:m], o_score[:m]


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
    """Accumulation closes d[t] >= buy on entry_ok sessions t in [sig_start, sig_end) (NaN never counts)."""
    x = d[sig_start:sig_end]
    ok = entry_ok[sig_start:sig_end]
    c = 0
    for i in range(x.shape[0]):
        c += (x[i] >= buy) & ok[i]
    return c


@njit(cache=True, nogil=True)
def _walk_symbol(
    s, d, Os, Hs, Ls, Cs, buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
    sig_start, sig_end, data_end, entry_ok, o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, n, cap,
):
    """Every trade of symbol ``s`` (uncapped: symbols are independent), event by event: while flat, scan the closes
    for the next accumulation signal; in a position, apply the per-bar rules of ``_simulate_block`` in the same
    order until the exit. ``d``, Os, Hs, Ls, Cs: the symbol's display and prices indexed by session. Writes trades
    from output index ``n`` (only below ``cap``) and returns the new count."""
    last_sig = min(sig_end, data_end - 1)  # a signal at the close of t enters at the open of t + 1 < data_end
    close_rule = rule != RULE_FIXED
    # without close signals and intraday levels only the scheduled exit can fire: its bar is the first to visit
    schedule_only = not close_rule and stop_loss != stop_loss and take_profit != take_profit
    t = sig_start
    while True:
        # flat at the close of t: the next signal whose next open exists
        while t < last_sig:
            if d[t] >= buy and entry_ok[t] and np.isfinite(Os[t + 1]):
                break
            t += 1
        if t >= last_sig:
            return n
        sig = t
        e = t + 1
        ent_px = Os[e]
        score = d[t]
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
            # (2) intraday stop-loss, then take-profit
            hit, px, rsn = _intraday_exit(Os[k], Hs[k], Ls[k], ent_px, k == e, stop_loss, take_profit)
            if hit:
                x = k
                break
            # (3) close-based exit signals
            if close_rule and pend_exit < 0:
                r, n_dist, n_low = _close_signal(d[k], sell, rule, n_dist, n_low)
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
    k, bounds, cap, O, H, L, C, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop, sig_start, sig_end, data_end, entry_ok,
    o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score,
):
    """Symbols [bounds[k], bounds[k+1]) one after the other, trades written from k·cap (at most cap). Fused: each
    symbol's display row is combined into a buffer of the block (never a (T x N) matrix). Returns (trades, signals)."""
    T = O.shape[1]
    buf = np.empty(T if fused else 0, np.float64)
    off = k * cap
    n = off
    g = 0
    for s in range(bounds[k], bounds[k + 1]):
        if fused:
            _combine_row(s, sig_start, data_end, ts, tl, tp, sg, ws, wl, wp, lo, rng, buf)
            g += _count_signals_row(buf, buy, sig_start, sig_end, entry_ok)
            n = _walk_symbol(s, buf, O[s], H[s], L[s], C[s], buy, sell, rule, hold_days, max_days, stop_loss,
                             take_profit, time_stop, sig_start, sig_end, data_end, entry_ok,
                             o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, n, off + cap)
        else:
            g += _count_signals_row(disp[s], buy, sig_start, sig_end, entry_ok)
            n = _walk_symbol(s, disp[s], O[s], H[s], L[s], C[s], buy, sell, rule, hold_days, max_days, stop_loss,
                             take_profit, time_stop, sig_start, sig_end, data_end, entry_ok,
                             o_sym, o_sig, o_ent, o_ext, o_ep, o_xp, o_rsn, o_score, n, off + cap)
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
    O, H, L, C, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
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
            k, bounds, cap, O, H, L, C, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused, buy, sell, rule, hold_days,
            max_days, stop_loss, take_profit, time_stop, sig_start, sig_end, data_end, entry_ok, *out)
    return _collect_blocks(cap, counts, sigs, *out)


@njit(cache=True, nogil=True, parallel=True)
def simulate_symbols_par_nb(
    O, H, L, C, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused,
    buy, sell, rule, hold_days, max_days, stop_loss, take_profit, time_stop,
    sig_start, sig_end, data_end, entry_ok, bounds, cap,
):
    """``simulate_symbols_nb`` with the blocks on numba's threads (same trades, same order)."""
    nb = bounds.shape[0] - 1
    out = _trade_buffers(nb * cap)
    counts = np.zeros(nb, np.int64)
    sigs = np.zeros(nb, np.int64)
    for k in prange(nb):
        c, g = _symbols_block(
            k, bounds, cap, O, H, L, C, disp, ts, tl, tp, sg, ws, wl, wp, lo, rng, fused, buy, sell, rule, hold_days,
            max_days, stop_loss, take_profit, time_stop, sig_start, sig_end, data_end, entry_ok, *out)
        counts[k] = c
        sigs[k] = g
    return _collect_blocks(cap, counts, sigs, *out)


@njit(cache=True, nogil=True)
def portfolio_returns_nb(Cs, sym, ent, ext, ep, xp, is_open, weight, cost, start, stop):
    """Daily weighted-average return of the positions active each day in [start, stop). Cash days return 0.

    Segment returns (docs/ENGINE.md): entry day close/(entry·(1+c)) − 1; held days close/prev close − 1;
    exit day fill·(1−c)/prev close − 1 (fill·(1−c)/(entry·(1+c)) − 1 when exit and entry share the day).
    Open-at-end positions are marked to the close through stop − 1 without an exit cost.
    ``Cs``: closes indexed [symbol, session] (symbol-major storage keeps a trade's closes contiguous; a
    precomputed returns matrix was measured slower: one more matrix to pull through the cache). ``weight``: one
    per trade, or empty for equal weights.
    """
    L = stop - start
    num = np.zeros(L, np.float64)
    den = np.zeros(L, np.float64)
    equal = weight.shape[0] == 0
    for i in range(sym.shape[0]):
        e = ent[i]
        x = ext[i]
        w = 1.0 if equal else weight[i]
        c = Cs[sym[i]]
        last = stop - 1 if is_open[i] else x
        for d in range(max(e, start), min(last, stop - 1) + 1):
            if d == e and d == x and not is_open[i]:
                r = xp[i] * (1.0 - cost) / (ep[i] * (1.0 + cost)) - 1.0
            elif d == e:
                r = c[d] / (ep[i] * (1.0 + cost)) - 1.0
            elif d == x and not is_open[i]:
                r = xp[i] * (1.0 - cost) / c[d - 1] - 1.0
            else:
                r = c[d] / c[d - 1] - 1.0
            if r == r:
                num[d - start] += w * r
                den[d - start] += w
    out = np.zeros(L, np.float64)
    for j in range(L):
        if den[j] > 0:
            out[j] = num[j] / den[j]
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
def run_stats_nb(sym, ent, ext, ep, xp, is_open, net, weight, cost, Cs, bench, fp_sessions, start, stop):
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
    daily = portfolio_returns_nb(Cs, sym, ent, ext, ep, xp, is_open, weight, cost, start, stop)
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
