"""The verdict on whether a walk-forward study supports an edge: a frozen object made of gates.

A ``Gate`` is data: which statistic, its value, the comparison and threshold it must meet, whether it passed, and
how to show it (labels and number formats). A ``Verdict`` holds its gates, the decision (supported only when every
gate passes), the failure reasons and a one-line summary rendered from the gates. The walk-forward produces it
once; the report, the CLI and the JSON render it; nothing parses its text. ``Verdict.to_dict`` / ``from_dict``
carry it through ``result.json`` unchanged.

``verdict(...)`` builds the standard gates, each guarding a different way a backtest lies:

* the out-of-sample excess return per trade is positive, and significant (t > ``t_min`` = 2);
* there are at least ``min_trades`` OOS trades;
* a Sharpe-significance statistic is >= ``dsr_min`` = 0.95: the Deflated Sharpe Ratio (Bailey & López de Prado
  2014) by default, or the OOS Probabilistic Sharpe Ratio of excess returns (``sharpe="psr"``, what the
  walk-forward gates on);
* the Probability of Backtest Overfitting is < ``pbo_max`` = 0.5 (Bailey, Borwein, López de Prado & Zhu 2017).

More gates (e.g. HAC or block-bootstrap significance, SPA) are added by building ``Gate.check(...)`` objects and
``Verdict.decide(gates)``; a gate the line does not know is shown as ``<short> <value> <op> <threshold>``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from optimizer.errors import check_param

__all__ = ["Gate", "Verdict", "verdict", "SHARPE_GATES"]

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_NEGATION = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}
# the Sharpe-significance gate by statistic: (name in tables, name in reasons, short name in the line)
SHARPE_GATES: dict[str, tuple[str, str, str]] = {
    "dsr": ("Deflated Sharpe Ratio", "Deflated Sharpe Ratio", "DSR"),
    "psr": ("Probabilistic Sharpe Ratio (OOS excess)", "OOS Probabilistic Sharpe Ratio of excess returns", "PSR"),
}
_EFFECT = ("excess_mean", "excess_t", "n_trades")  # the gates the line groups as "OOS excess m/trade (t=..., n=...)"


def _text(x: float | None, fmt: str) -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, fmt)


@dataclass(frozen=True)
class Gate:
    """One condition of the verdict: ``value <comparison> threshold`` (a NaN / missing value fails).

    ``name``: stable key (``excess_mean``, ``excess_t``, ``n_trades``, ``dsr``, ``psr``, ``pbo``, ...);
    ``statistic``: what is measured, in words (tables); ``short``: its name in the verdict line; ``reason``: the
    sentence stating the failure (empty when passed); ``fmt`` / ``detail_fmt`` / ``threshold_fmt``: format specs
    of the value in the line, of the value in tables, and of the threshold."""

    name: str
    statistic: str
    value: float | None
    comparison: str
    threshold: float
    passed: bool
    short: str = ""
    reason: str = ""
    fmt: str = ".2f"
    detail_fmt: str = ".3f"
    threshold_fmt: str = ".2f"

    def __post_init__(self) -> None:
        check_param(self.comparison in _OPS, "comparison", f"one of {', '.join(_OPS)}", self.comparison)

    @classmethod
    def check(cls, name: str, statistic: str, value: float | None, comparison: str, threshold: float, *,
              short: str = "", reason: str | None = None, fmt: str = ".2f", detail_fmt: str = ".3f",
              threshold_fmt: str = ".2f") -> "Gate":
        """The gate with ``passed`` decided here, once. ``reason`` (used when it fails) defaults to
        ``"<statistic> <value> <negated comparison> <threshold>"``."""
        check_param(comparison in _OPS, "comparison", f"one of {', '.join(_OPS)}", comparison)
        passed = value is not None and bool(_OPS[comparison](value, threshold))
        g = cls(name, statistic, value, comparison, threshold, passed, short or name, "", fmt, detail_fmt, threshold_fmt)
        if passed:
            return g
        text = reason if reason is not None else f"{statistic} {g.text} {_NEGATION[comparison]} {g.threshold_text}"
        return cls(name, statistic, value, comparison, threshold, passed, g.short, text, fmt, detail_fmt, threshold_fmt)

    @property
    def text(self) -> str:
        """The value as the line shows it (``n/a`` when not finite)."""
        return _text(self.value, self.fmt)

    @property
    def detail_text(self) -> str:
        return _text(self.value, self.detail_fmt)

    @property
    def threshold_text(self) -> str:
        return format(self.threshold, self.threshold_fmt)

    @property
    def rule(self) -> str:
        """The condition, e.g. ``>= 0.95``."""
        return f"{self.comparison} {self.threshold_text}"

    @property
    def relation(self) -> str:
        """How the value relates to the threshold: the comparison when passed, its negation when failed."""
        return self.comparison if self.passed else _NEGATION[self.comparison]


def _line(gates: Sequence[Gate], supported: bool, note: str) -> str:
    g = {x.name: x for x in gates}
    parts = []
    if all(k in g for k in _EFFECT):
        mean, t, n = (g[k] for k in _EFFECT)
        n_s = f"n={n.text}" if n.passed else f"n={n.text} {n.relation} {n.threshold_text}"
        parts.append(f"OOS excess {mean.text}/trade (t={t.text}, {n_s})")
    parts += [f"{x.short} {x.text} {x.relation} {x.threshold_text}" for x in gates
              if not (x.name in _EFFECT and all(k in g for k in _EFFECT))]
    head = "edge supported" if supported else "edge NOT supported"
    return f"{head}: {', '.join(parts)}" + (f"; {note}" if note else "")


@dataclass(frozen=True)
class Verdict:
    """``supported``: every gate passed. ``gates``: each condition with its value, threshold and outcome.
    ``reasons``: one sentence per failed gate (empty when supported). ``line``: one line stating the deciding
    numbers, e.g. ``edge NOT supported: OOS excess +0.12%/trade (t=0.8, n=143), DSR 0.41 < 0.95, PBO 0.62 >= 0.50``.
    ``note``: appended to the line (context, not a gate)."""

    gates: tuple[Gate, ...]
    note: str = ""

    @classmethod
    def decide(cls, gates: Sequence[Gate], note: str = "") -> "Verdict":
        check_param(len(gates) > 0, "gates", "at least one gate", list(gates))
        names = [g.name for g in gates]
        check_param(len(set(names)) == len(names), "gates", "gates with distinct names", names)
        return cls(tuple(gates), note)

    @property
    def supported(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def decision(self) -> str:
        return "supported" if self.supported else "not supported"

    @property
    def reasons(self) -> list[str]:
        return [g.reason for g in self.gates if not g.passed]

    @property
    def line(self) -> str:
        return _line(self.gates, self.supported, self.note)

    def gate(self, name: str) -> Gate | None:
        return next((g for g in self.gates if g.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``verdict`` (decision), ``verdict_line``, ``verdict_reasons``, ``verdict_gates``,
        ``verdict_note`` (NaN values become None)."""
        gates = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(g).items()}
                 for g in self.gates]
        return {"verdict": self.decision, "verdict_line": self.line, "verdict_reasons": self.reasons,
                "verdict_gates": gates, "verdict_note": self.note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Verdict":
        """The verdict stored by ``to_dict`` (e.g. in a walk-forward ``result.json``), exactly as decided."""
        check_param(isinstance(d.get("verdict_gates"), list), "verdict_gates",
                    "a list of gates (a result written by this version of accumopt)", d.get("verdict_gates"))
        return cls(tuple(Gate(**g) for g in d["verdict_gates"]), str(d.get("verdict_note") or ""))


def verdict(oos_excess_mean: float, oos_excess_t: float, dsr: float, pbo: float, n_oos_trades: int, *,
            min_trades: int = 30, dsr_min: float = 0.95, pbo_max: float = 0.5, t_min: float = 2.0,
            sharpe: str = "dsr", note: str = "") -> Verdict:
    """Decide "edge supported" vs "edge NOT supported" from the OOS excess return per trade (a fraction: 0.0012 =
    +0.12%), its t statistic, a Sharpe-significance statistic ``dsr`` (the Deflated Sharpe Ratio, or with
    ``sharpe="psr"`` the OOS Probabilistic Sharpe Ratio; it must be >= ``dsr_min``), the PBO and the OOS trade
    count. A NaN input (a statistic that could not be estimated) fails its gate and is shown as ``n/a``."""
    check_param(int(n_oos_trades) == n_oos_trades and n_oos_trades >= 0, "n_oos_trades", "an integer >= 0",
                n_oos_trades)
    check_param(0.0 < dsr_min <= 1.0, "dsr_min", "in (0, 1]", dsr_min)
    check_param(0.0 < pbo_max <= 1.0, "pbo_max", "in (0, 1]", pbo_max)
    check_param(sharpe in SHARPE_GATES, "sharpe", f"one of {', '.join(SHARPE_GATES)}", sharpe)
    n = int(n_oos_trades)
    mean_s, t_s = _text(oos_excess_mean, "+.2%"), _text(oos_excess_t, ".1f")
    label, long_name, short = SHARPE_GATES[sharpe]
    gates = [
        Gate.check("excess_mean", "OOS excess return / trade", oos_excess_mean, ">", 0.0, short="OOS excess",
                   reason=f"OOS excess return {mean_s}/trade is not positive", fmt="+.2%", detail_fmt="+.3%",
                   threshold_fmt="g"),
        Gate.check("excess_t", "t statistic of the excess", oos_excess_t, ">", t_min, short="t",
                   reason=f"OOS excess return is not significant: t={t_s} <= {t_min:g}", fmt=".1f", detail_fmt=".2f",
                   threshold_fmt="g"),
        Gate.check("n_trades", "OOS closed trades (n)", float(n), ">=", min_trades, short="n",
                   reason=f"too few OOS trades: n={n} < {min_trades}", fmt=".0f", detail_fmt=".0f", threshold_fmt="g"),
        Gate.check(sharpe, label, dsr, ">=", dsr_min, short=short,
                   reason=f"{long_name} {_text(dsr, '.2f')} < {dsr_min:.2f}"),
        Gate.check("pbo", "Probability of Backtest Overfitting", pbo, "<", pbo_max, short="PBO"),
    ]
    return Verdict.decide(gates, note)
