"""Shared helpers of the bench/ scripts: timing, peak memory, synthetic panels and table / JSON output.

* ``peak_rss_mb()``: the process's peak resident set (``resource.getrusage``, MiB); ``reset_peak_rss()`` resets
  that peak (Linux ``/proc/self/clear_refs``) so a phase's own peak can be measured; ``rss_mb()`` is the current RSS.
* ``synth_panel(n_symbols, n_sessions)``: a ``Panel`` built from the embedded synthetic market
  (``optimizer.data.synth.generate_market``) through a daily_metrics-like long frame (``metrics_frame``).
* ``emit(result, as_json, title, rows)``: print one JSON object (``--json``) or a rich table of
  (figure, value, target / note) rows.

Importing this module puts the repository root on ``sys.path`` (bench scripts run as plain files).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = [
    "ROOT", "peak_rss_mb", "reset_peak_rss", "rss_mb", "cpu_s", "timed", "Stopwatch", "session_dates", "metrics_frame",
    "synth_panel", "emit", "fmt", "verdict", "machine",
]


# ---- memory ----------------------------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """Peak resident set of this process so far (since the last ``reset_peak_rss``), MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kb / 1024.0, 1)


def cpu_s() -> float:
    """CPU seconds of this process so far (every thread): a figure the load of other processes barely moves."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    """Current resident set, MiB (/proc/self/statm; falls back to the peak where /proc is absent)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()
    return round(pages * resource.getpagesize() / 2**20, 1)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0). False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine() -> dict:
    """CPU count and 1-minute load average: timings on a machine busy with other work are inflated."""
    import os

    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "loadavg_1m": load}


# ---- timing ----------------------------------------------------------------------------------------------------

def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0


# ---- synthetic panels ------------------------------------------------------------------------------------------

def session_dates(n_sessions: int, start: str = "2020-01-02") -> tuple[str, str]:
    """(start, end) ISO dates spanning exactly ``n_sessions`` NYSE sessions from ``start``."""
    from optimizer.data.calendar import nyse_sessions

    years = n_sessions // 240 + 2
    days = nyse_sessions(start, f"{int(start[:4]) + years}-12-31")
    if len(days) < n_sessions:
        raise ValueError(f"calendar too short for {n_sessions} sessions")
    return str(days[0].date()), str(days[n_sessions - 1].date())


def metrics_frame(market) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A daily_metrics-like long frame and the market frame (spy_*, vix) from a ``SynthMarket``.

    Same definitions as optimizer/data/metrics.py (short_buy = short volume, short_sell = total - short, ratio,
    lit imbalance, OTC weekly volume / the week's share volume as of its publication date), without the
    MIN_LIT_VOLUME filter and with confidence 1; good enough to exercise the engine, not a replacement for it.
    """
    from optimizer.data.universe import MARKET_SYMBOL, VIX_SYMBOL

    px = market.prices
    vix = px[px["symbol"] == VIX_SYMBOL]
    px = px[px["symbol"] != VIX_SYMBOL]
    fin = market.finra_short[["date", "symbol", "short_volume", "total_volume"]]
    lit = market.lit_flow[["date", "symbol", "lit_buy_volume", "lit_sell_volume"]]
    df = px.merge(fin, on=["date", "symbol"], how="left").merge(lit, on=["date", "symbol"], how="left")
    sv = df["short_volume"].astype("float64")
    sell = df["total_volume"].astype("float64") - sv
    lb, ls = df["lit_buy_volume"].astype("float64"), df["lit_sell_volume"].astype("float64")
    df["short_buy_volume"] = sv
    df["short_sell_volume"] = sell
    df["short_buy_sell_ratio"] = (sv / sell).where(sell > 0)
    df["lit_flow_imbalance"] = ((lb - ls) / (lb + ls)).where((lb + ls) > 0)
    df["confidence"] = 1.0
    # OTC participation: weekly ATS + non-ATS volume over the week's consolidated volume, as of publication
    o = market.otc_weekly
    wk = pd.DataFrame({
        "symbol": o["issueSymbolIdentifier"].astype(str),
        "week": pd.to_datetime(o["summaryStartDate"]).astype("datetime64[ns]"),
        "pub": pd.to_datetime(o["lastUpdateDate"]).astype("datetime64[ns]"),
        "qty": o["totalWeeklyShareQuantity"].astype("float64"),
    }).groupby(["symbol", "week", "pub"], as_index=False)["qty"].sum()
    df["date"] = df["date"].astype("datetime64[ns]")
    monday = df["date"] - pd.to_timedelta(df["date"].dt.weekday, unit="D")
    tot = df.assign(week=monday).groupby(["symbol", "week"], as_index=False)["volume"].sum()
    wk = wk.merge(tot, on=["symbol", "week"], how="left")
    wk["otc_participation_rate"] = (wk["qty"] / wk["volume"]).where(wk["volume"] > 0)
    wk = wk.sort_values("pub")[["symbol", "pub", "otc_participation_rate"]]
    df = pd.merge_asof(df.sort_values("date"), wk, left_on="date", right_on="pub", by="symbol", direction="backward")
    df = df.drop(columns=["pub", "short_volume", "total_volume"])
    spy = px[px["symbol"] == MARKET_SYMBOL].set_index("date")
    mk = pd.DataFrame({f"spy_{c}": spy[c].astype("float64") for c in ("open", "high", "low", "close", "volume")})
    mk = mk.join(vix.set_index("date")["close"].rename("vix"), how="outer")
    return df.sort_values(["date", "symbol"]).reset_index(drop=True), mk


def synth_panel(n_symbols: int, n_sessions: int, seed: int = 7, effect: float = 1.0, start: str = "2020-01-02"):
    """A ``Panel`` of ``n_symbols`` x ``n_sessions`` from the synthetic market (symbols beyond the tiers are SYN*)."""
    from optimizer.data.synth import SynthConfig, generate_market
    from optimizer.engine.panel import Panel

    s, e = session_dates(n_sessions, start)
    m = generate_market(SynthConfig(seed=seed, start=s, end=e, n_symbols=n_symbols, effect=effect))
    frame, mk = metrics_frame(m)
    return Panel.from_frame(frame, market=mk)


# ---- output ------------------------------------------------------------------------------------------------------

def fmt(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not np.isfinite(f):
            return str(f)
        a = abs(f)
        if a >= 1000:
            return f"{f:,.0f}"
        if a >= 10:
            return f"{f:.1f}"
        if a >= 0.1:
            return f"{f:.3f}"
        return f"{f:.4g}"
    return str(v)


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("[green]OK[/]" if ok else "[red]MISSED[/]")


def emit(result: dict, as_json: bool, title: str, rows: Iterable[Sequence[object]], notes: Sequence[str] = ()) -> None:
    """``--json``: one JSON object on stdout. Else a table of (figure, value[, target[, ok]]) rows and notes."""
    if as_json:
        print(json.dumps(result, default=_jsonable, sort_keys=False))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target")
    t.add_column("")
    for r in rows:
        r = list(r) + [None] * (4 - len(r))
        t.add_row(str(r[0]), fmt(r[1]), "" if r[2] is None else str(r[2]), verdict(r[3]))
    con = Console(width=None if sys.stdout.isatty() else 150)
    con.print(t)
    for n in notes:
        con.print(f"[dim]note:[/] {n}")


def _jsonable(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
