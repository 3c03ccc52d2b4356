"""Splits the store does not record, found in the data (docs/DATA.md "Splits"): the ONE home of the detection.

Prices arrive split-adjusted (all history in today's shares, volume included: Yahoo ``auto_adjust``, Polygon
``adjusted=true``); FINRA volumes are raw shares of their day and are put on the adjusted basis only by the
``splits`` table (``optimizer.data.adjust``). With no split recorded, a symbol's FINRA volumes before a 4-for-1
split are a quarter of what they would be on the prices' basis, and every volume level or z-score across the
split compares two bases. What the data still shows, per symbol, over its rows of daily_metrics in date order:

* ``finra``: the FINRA total volume over the price volume (FINRA's share of the consolidated volume, ~0.35 for a
  large cap, day to day within x1.2 or so: a log sd of 0.17 between the two real FINRA days of 2025) steps by a
  split ratio at one session and stays there: the median of the 10 rows from that session on over the median of
  the 10 rows before it is within x1.2 of a split ratio, in 80 % of the (before, after) pairs of rows the after
  row is above the before row by at least half of that ratio (in log; below for a reverse split), the step is at
  least 3.5 robust sd of the log share about each side's median (a thin name's noisy share needs a larger step:
  at a log sd of 0.35 a 2-for-1 split is not told from noise, a 4-for-1 is), and the session's own change carries
  at least half of the step. With vendor-adjusted prices this is the only
  trace of the split (the prices and their volumes show none). When the store DOES record a split there, the
  prices are the side on another basis (or daily_metrics predates the split: ``metrics build``).
* ``prices``: the prices themselves are not adjusted: the close AND the open fall (or rise) by a split ratio
  against the previous close (an overnight move; within x1.2), while the price volume's median steps by the
  inverse (within x2, and by x1.5 at least). A crash (-20 %, even -50 % with a spike of volume that fades) is no split.

Ratios looked for: 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100 for one, and the reverse splits (1-for-k), the nearest
(in log) to what the data shows; 3-for-2 (1.5) is not looked for: FINRA's share of the volume moves by that much
on its own. Limits: a -50 % overnight crash whose volume then stays about twice as high reads as a 2-for-1 split of
unadjusted prices (the warning says there is nothing to do if the move is real); the FINRA volumes of a span with
no price rows (the real FINRA days of 2020 beside prices from 2022) cannot be checked at all. A gap in the data is
not bridged: a step across one is reported at the first row after it (the split lies in the gap or on that day).
Index symbols (``^VIX``) are not checked.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from optimizer.data.store import table_exists

__all__ = ["SPLIT_RATIOS", "SuspectSplit", "suspect_splits", "suspect_split_lines", "panel_split_lines"]

SPLIT_RATIOS: tuple[int, ...] = (2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100)
SIDE = 20  # rows on each side of a session whose medians are compared
MIN_SIDE = 3  # rows with a value each side needs
TOL = 1.2  # a step or a price ratio within x1.2 of a split ratio
VOL_TOL = 2.0  # the price volume's step (noisier: NVDA's volume fell by 40 % after its 2024 split, x6 not x10)
VOL_MIN = 1.5  # ... and at least x1.5 (or / 1.5) whatever the ratio
NOISE_UNITS = 3.5  # the step seen, in robust sd (MAD) of the log share about each side's median
APART = 0.8  # the share of (before, after) pairs that must show at least half the step
SHOWN = 10  # symbols named one line each; the rest on one line


@dataclass(frozen=True)
class SuspectSplit:
    """A session where ``symbol``'s data changes basis like a split of ``ratio`` (new shares per old: 4 for a
    4-for-1, 0.1 for a 1-for-10) that ``splits`` does not record (``recorded``: it does, and the prices are the
    side that is not adjusted). ``kind``: ``finra`` (FINRA volumes against the prices) or ``prices`` (the prices
    themselves). ``step``: the measured step (the FINRA share of the volume, or the price volume)."""

    symbol: str
    date: dt.date
    ratio: float
    kind: str
    step: float
    recorded: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"symbol": self.symbol, "date": str(self.date), "ratio": self.ratio, "kind": self.kind,
                "step": round(self.step, 4), "recorded": self.recorded}


def _nearest(x: float) -> float | None:
    """The split ratio (or reverse ratio) nearest ``x`` (in log), when within TOL of it, else None."""
    if not (x > 0 and math.isfinite(x)):
        return None
    k = min((r for k in SPLIT_RATIOS for r in (float(k), 1.0 / k)), key=lambda r: abs(math.log(x / r)))
    return k if abs(math.log(x / k)) < math.log(TOL) else None


def _apart(a: np.ndarray, b: np.ndarray, step: float) -> bool:
    """Whether the log values ``b`` (after) lie above ``a`` (before) by more than half of ``step`` (a log split
    ratio; below for a reverse split) in at least APART of all (before, after) pairs: a step the whole of both sides
    shows, not a difference of medians a noisy share (a thin name's) makes by chance; and the step seen at least
    NOISE_UNITS robust sd of the values about their side's median (a share that noisy hides a 2-for-1 split)."""
    d = (b[None, :] - a[:, None]) * math.copysign(1.0, step)
    noise = 1.4826 * float(np.median(np.abs(np.concatenate([a - np.median(a), b - np.median(b)]))))
    step_seen = abs(float(np.median(b) - np.median(a)))
    return float(np.mean(d > abs(step) / 2)) >= APART and step_seen >= NOISE_UNITS * noise


def _near(x: float | None, r: float, tol: float) -> bool:
    return x is not None and x > 0 and math.isfinite(x) and abs(math.log(x / r)) < math.log(tol)


def suspect_splits(con: duckdb.DuckDBPyConnection, symbols: Sequence[str] | None = None, start: object = None,
                   end: object = None, source: str = "daily_metrics") -> list[SuspectSplit]:
    """The sessions of ``symbols`` (None: every symbol) in [start, end] where ``source`` (daily_metrics, or any
    relation with its columns symbol, date, open, close, volume, total_volume) changes basis like a split the
    store's ``splits`` table does not record (module doc), by symbol and date. [] when the store has no such
    table. One SQL pass with window medians; only the few candidate rows reach Python."""
    if source == "daily_metrics" and not table_exists(con, source):
        return []
    cols = {r[0] for r in con.execute(f"SELECT * FROM {source} LIMIT 0").description}
    if not {"symbol", "date", "close", "volume"} <= cols:
        return []
    where, params = ["NOT starts_with(symbol, '^')"], []
    if symbols is not None:
        where.append("symbol IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(symbols))
    for op, d in ((">=", start), ("<=", end)):
        if d is not None:
            where.append(f"date {op} CAST(? AS DATE)")
            params.append(str(d)[:10])
    fv = "total_volume" if "total_volume" in cols else "NULL"
    op = "open" if "open" in cols else "NULL"
    jump = math.sqrt(min(SPLIT_RATIOS))  # a candidate session: its own change at least this (module doc)
    px = 1 / (min(SPLIT_RATIOS) / TOL)  # a close at or below this share of the previous (or above its inverse)
    # Windows only for what is cheap (row numbers, previous values, running means of log r); the rows around the few
    # candidate sessions (the mean of log r steps by half a split ratio or more, and so does the session itself;
    # or the close moves like a split) come back as lists from an equality join and are judged in numpy (a
    # windowed quantile over every row took ~8 s per million rows).
    half = math.log(jump)
    rows = con.execute(f"""
        WITH b AS (
            SELECT symbol, CAST(date AS DATE) AS date, CAST({op} AS DOUBLE) AS o, CAST(close AS DOUBLE) AS c,
                   CASE WHEN volume > 0 THEN CAST(volume AS DOUBLE) END AS pv,
                   CASE WHEN volume > 0 AND {fv} > 0 THEN CAST({fv} AS DOUBLE) / volume END AS r
            FROM {source} WHERE {' AND '.join(where)}),
        n AS (
            SELECT *, row_number() OVER w AS i, lag(date) OVER w AS pd, lag(c IGNORE NULLS) OVER w AS pc,
                   lag(r IGNORE NULLS) OVER w AS pr,
                   avg(ln(r)) OVER (w ROWS BETWEEN CURRENT ROW AND {SIDE - 1} FOLLOWING)
                   - avg(ln(r)) OVER (w ROWS BETWEEN {SIDE} PRECEDING AND 1 PRECEDING) AS g
            FROM b WINDOW w AS (PARTITION BY symbol ORDER BY date)),
        k AS (
            SELECT symbol, i, date, pd, o, c, pc, r, pr FROM n
            WHERE (abs(g) >= {half} AND pr > 0 AND r > 0 AND abs(ln(r / pr)) >= {half})
               OR (pc > 0 AND c > 0 AND NOT c / pc BETWEEN {px} AND {1 / px}))
        SELECT k.symbol, k.i, k.date, any_value(k.pd), any_value(k.o), any_value(k.c), any_value(k.pc), any_value(k.r),
               any_value(k.pr),
               list(n.r) FILTER (WHERE n.i < k.i AND n.r > 0), list(n.r) FILTER (WHERE n.i >= k.i AND n.r > 0),
               list(n.pv) FILTER (WHERE n.i < k.i AND n.pv > 0), list(n.pv) FILTER (WHERE n.i >= k.i AND n.pv > 0)
        FROM k JOIN n ON n.symbol = k.symbol AND n.i BETWEEN k.i - {SIDE} AND k.i + {SIDE - 1}
        GROUP BY k.symbol, k.i, k.date ORDER BY k.symbol, k.date""", params).fetchall()
    if not rows:
        return []
    recorded: dict[str, list[dt.date]] = {}
    if table_exists(con, "splits"):
        for sym, d in con.execute("SELECT symbol, ex_date FROM splits WHERE symbol IN (SELECT unnest(?::VARCHAR[]))",
                                  [sorted({r[0] for r in rows})]).fetchall():
            recorded.setdefault(sym, []).append(d)
    hits: list[tuple[int, float, SuspectSplit]] = []
    for sym, i, d, pd_, o, c, pc, r, pr, r0, r1, v0, v1 in rows:
        rec = any((pd_ is None or x > pd_) and x <= d for x in recorded.get(sym, ()))
        if r0 and r1 and min(len(r0), len(r1)) >= MIN_SIDE and r and pr:
            a, b = np.log(np.asarray(r0, dtype=float)), np.log(np.asarray(r1, dtype=float))
            step = float(np.median(b) - np.median(a))
            k = _nearest(math.exp(step))
            if k is not None and _apart(a, b, math.log(k)) and math.log(r / pr) / math.log(k) >= 0.5:
                hits.append((i, abs(math.log(r / pr)), SuspectSplit(sym, d, k, "finra", math.exp(step), rec)))
                continue
        if v0 and v1 and min(len(v0), len(v1)) >= MIN_SIDE and pc and c and o and not rec:
            k = _nearest(pc / c)  # a 4-for-1 split quarters the price
            vstep = float(np.median(v1) / np.median(v0))
            if k is not None and _near(pc / o, k, TOL) and _near(vstep, k, VOL_TOL) \
                    and abs(math.log(vstep)) >= math.log(VOL_MIN):
                hits.append((i, abs(math.log(pc / c)), SuspectSplit(sym, d, k, "prices", vstep)))
    out: list[SuspectSplit] = []  # one step is seen from the sessions next to it too: the largest jump of a run
    run: list[tuple[int, float, SuspectSplit]] = []
    for h in [*hits, None]:
        if run and (h is None or h[2].symbol != run[-1][2].symbol or h[0] - run[-1][0] >= SIDE):
            out.append(max(run, key=lambda x: x[1])[2])
            run = []
        if h is not None:
            run.append(h)
    return out


def _label(k: float) -> str:
    return f"{k:g}-for-1" if k >= 1 else f"1-for-{1 / k:g}"


def suspect_split_lines(found: Sequence[SuspectSplit]) -> list[str]:
    """One warning line per symbol (at most SHOWN of them, then one line naming the rest): the session(s), the
    likely ratio, what the data shows and how to fix it."""
    by: dict[str, list[SuspectSplit]] = {}
    for s in found:
        by.setdefault(s.symbol, []).append(s)
    lines = []
    for sym, ss in list(by.items())[:SHOWN]:
        fin = [s for s in ss if s.kind == "finra" and not s.recorded]
        rec = [s for s in ss if s.kind == "finra" and s.recorded]
        px = [s for s in ss if s.kind == "prices"]
        what = []
        if fin:
            what.append(", ".join(f"{s.date} (x{s.step:.3g}: a {_label(s.ratio)} split?)" for s in fin)
                        + " its FINRA volumes jump against its price volumes, and no split is recorded there: the "
                        "FINRA volumes on either side are on different share bases; ingest the split (`accumopt "
                        "ingest splits FILE`, CSV symbol,date,ratio), then `accumopt metrics build`")
        if rec:
            what.append(", ".join(f"{s.date} (x{s.step:.3g})" for s in rec) + " its FINRA volumes, adjusted for the "
                        "split recorded there, jump against its price volumes: the prices are not split-adjusted "
                        "(ingest its adjusted history again), or daily_metrics predates the split (`accumopt metrics "
                        "build`)")
        if px:
            what.append(", ".join(f"{s.date} (a {_label(s.ratio)} split?)" for s in px) + " its prices jump overnight "
                        "by a split ratio while its volume jumps the inverse, and no split is recorded: the prices "
                        "look unadjusted; ingest its split-adjusted history again and the split (`accumopt ingest "
                        "splits FILE`), then `accumopt metrics build`; nothing to do if the move is real")
        lines.append(f"splits: {sym}: " + "; ".join(what))
    if len(by) > SHOWN:
        more = list(by)[SHOWN:]
        lines.append(f"splits: {len(more)} more symbol(s) change basis like an unrecorded split: "
                     f"{', '.join(more[:20])}{' ...' if len(more) > 20 else ''} (`accumopt data info --format json`: "
                     "suspect_splits)")
    return lines


def panel_split_lines(panel: object) -> list[str]:
    """The warning lines of the unrecorded splits a loaded panel's symbols show in its span (``coverage
    .suspect_splits``, found by ``study.data.load_universe_panel``): what a command that builds a panel says, once
    per symbol; [] for a panel built in memory."""
    cov = getattr(panel, "coverage", None)
    return suspect_split_lines(getattr(cov, "suspect_splits", ()) or ())
