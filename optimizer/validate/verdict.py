"""The one-line verdict on whether a walk-forward study supports an edge.

An edge is supported only when every gate passes (each guards a different way a backtest lies):

* the out-of-sample excess return per trade is positive and significant (t > ``t_min`` = 2);
* there are at least ``min_trades`` OOS trades;
* the Deflated Sharpe Ratio is >= ``dsr_min`` = 0.95 (Bailey & López de Prado 2014: selection bias over the
  number of trials and non-normal returns);
* the Probability of Backtest Overfitting is < ``pbo_max`` = 0.5 (Bailey, Borwein, López de Prado & Zhu 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optimizer.errors import check_param

__all__ = ["Verdict", "verdict"]


@dataclass(frozen=True)
class Verdict:
    """``supported``: every gate passed. ``reasons``: one sentence per failed gate (empty when supported).
    ``line``: one line stating the deciding numbers, e.g.
    ``edge NOT supported: OOS excess +0.12%/trade (t=0.8, n=143), DSR 0.41 < 0.95, PBO 0.62 >= 0.50``."""

    supported: bool
    reasons: list[str]
    line: str


def _fmt(x: float, spec: str) -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def verdict(oos_excess_mean: float, oos_excess_t: float, dsr: float, pbo: float, n_oos_trades: int, *,
            min_trades: int = 30, dsr_min: float = 0.95, pbo_max: float = 0.5, t_min: float = 2.0,
            sharpe_label: tuple[str, str] = ("Deflated Sharpe Ratio", "DSR"), note: str = "") -> Verdict:
    """Decide "edge supported" vs "edge NOT supported" from the OOS excess return, its t statistic, the DSR,
    the PBO and the OOS trade count. ``sharpe_label`` (long, short) names the Sharpe-significance statistic passed as
    ``dsr`` (the walk-forward passes the OOS Probabilistic Sharpe Ratio of excess returns); ``note`` is appended to
    the line. ``oos_excess_mean`` is a fraction per trade (0.0012 = +0.12%). A NaN input
    (e.g. a DSR or PBO that could not be estimated) fails its gate and is shown as ``n/a``."""
    check_param(int(n_oos_trades) == n_oos_trades and n_oos_trades >= 0, "n_oos_trades", "an integer >= 0",
                n_oos_trades)
    check_param(0.0 < dsr_min <= 1.0, "dsr_min", "in (0, 1]", dsr_min)
    check_param(0.0 < pbo_max <= 1.0, "pbo_max", "in (0, 1]", pbo_max)
    n = int(n_oos_trades)
    mean_s = "n/a" if not math.isfinite(oos_excess_mean) else f"{oos_excess_mean * 100:+.2f}%"
    t_s, dsr_s, pbo_s = _fmt(oos_excess_t, ".1f"), _fmt(dsr, ".2f"), _fmt(pbo, ".2f")
    reasons = []
    if not (math.isfinite(oos_excess_mean) and oos_excess_mean > 0):
        reasons.append(f"OOS excess return {mean_s}/trade is not positive")
    if not oos_excess_t > t_min:
        reasons.append(f"OOS excess return is not significant: t={t_s} <= {t_min:g}")
    if n < min_trades:
        reasons.append(f"too few OOS trades: n={n} < {min_trades}")
    dsr_ok = dsr >= dsr_min
    if not dsr_ok:
        reasons.append(f"{sharpe_label[0]} {dsr_s} < {dsr_min:.2f}")
    pbo_ok = pbo < pbo_max
    if not pbo_ok:
        reasons.append(f"Probability of Backtest Overfitting {pbo_s} >= {pbo_max:.2f}")
    n_s = f"n={n}" if n >= min_trades else f"n={n} < {min_trades}"
    head = "edge supported" if not reasons else "edge NOT supported"
    line = (f"{head}: OOS excess {mean_s}/trade (t={t_s}, {n_s}), "
            f"{sharpe_label[1]} {dsr_s} {'>=' if dsr_ok else '<'} {dsr_min:.2f}, PBO {pbo_s} {'<' if pbo_ok else '>='} {pbo_max:.2f}"
            + (f"; {note}" if note else ""))
    return Verdict(supported=not reasons, reasons=reasons, line=line)
