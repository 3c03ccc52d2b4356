"""The verdict on whether a walk-forward study supports an edge: a frozen object made of gates.

A ``Gate`` is data: which statistic, its value, the comparison and threshold it must meet, whether it passed, and
how to show it (labels and number formats). A ``Verdict`` holds its gates, the decision (supported only when every
gate passes), the failure reasons and a one-line summary rendered from the gates. The walk-forward produces it
once; the report, the CLI and the JSON render it; nothing parses its text. ``Verdict.to_dict`` / ``from_dict``
carry it through ``result.json`` unchanged.

``verdict(...)`` builds the standard gates, each guarding a different way a backtest lies:

* the out-of-sample excess return per trade is positive, and significant (t > ``t_min`` = 2): the i.i.d. t of
  the trade list, or (``t_kind="hac"``, what the walk-forward gates on) the Newey-West t of the daily excess
  series of the stitched trades (``stats.dependent_inference``), which counts what overlaps in time once;
* there are at least ``min_trades`` OOS trades;
* a Sharpe-significance statistic is >= ``dsr_min`` = 0.95: the Deflated Sharpe Ratio (Bailey & López de Prado
  2014) by default, or the OOS Probabilistic Sharpe Ratio of the daily excess series (``sharpe="psr"``, what the
  walk-forward gates on);
* the Probability of Backtest Overfitting is < ``pbo_max`` = 0.5 (Bailey, Borwein, López de Prado & Zhu 2017);
* optionally (``spa_max``), Hansen's SPA p-value over every configuration the search tried is < ``spa_max``.

``power`` (a :class:`Power`) says what the data could have detected: the minimum detectable effect (MDE) per trade
and per year at the verdict's alpha (:func:`verdict_alpha`: the one-sided level of ``t > t_min``) and 80 % power.
The line ends with it: ``no edge >= 4.6%/trade detected`` when the excess is not positive and significant, else
``MDE 4.6%/trade`` (supported, or a significant excess another gate turns down: the line names that gate).

More gates are added by building ``Gate.check(...)`` objects and ``Verdict.decide(gates)``; a gate the line does not
know is shown as ``<short> <value> <op> <threshold>``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

# scipy.stats costs ~0.7 s of CPU to import: the functions that use it import it, so a command that only
# loads this module (``accumopt report``, ``--help``) does not pay it

from optimizer.errors import check_param

__all__ = ["Gate", "Verdict", "Power", "verdict", "verdict_alpha", "SHARPE_GATES", "T_GATES", "POWER", "T_MIN"]

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_NEGATION = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}
# the Sharpe-significance gate by statistic: (name in tables, name in reasons, short name in the line)
SHARPE_GATES: dict[str, tuple[str, str, str]] = {
    "dsr": ("Deflated Sharpe Ratio", "Deflated Sharpe Ratio", "DSR"),
    "psr": ("Probabilistic Sharpe Ratio (daily OOS excess)", "OOS Probabilistic Sharpe Ratio of the daily excess",
            "PSR"),
}
# the significance gate by kind: (name in tables, short name in the line)
T_GATES: dict[str, tuple[str, str]] = {
    "iid": ("t statistic of the excess", "t"),
    "hac": ("HAC t of the daily OOS excess (Newey-West)", "HAC t"),
}
POWER = 0.8  # the power at which the verdict states its minimum detectable effect
T_MIN = 2.0  # the significance gate: t > T_MIN
_EFFECT = ("excess_mean", "excess_t", "n_trades")  # the gates the line groups as "OOS excess m/trade (t=..., n=...)"
_DETECTION = ("excess_mean", "excess_t")  # the test that detects an edge: a positive excess with t > t_min


def _text(x: float | None, fmt: str) -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, fmt)


_MORE_DECIMALS = 8  # at most this many decimals beyond a gate's format to show a figure on its side of the threshold


def _decisive(x: float | None, fmt: str, op: str, threshold: float) -> str:
    """``x`` formatted with ``fmt`` (a fixed-point or percent format, e.g. ``.2f``, ``+.2%``), with as many more
    decimals as it takes for the figure shown, read back, to satisfy ``op threshold`` as ``x`` does, and not to
    equal the threshold unless ``x`` does: a PSR of 0.9496 that fails ``>= 0.95`` is shown 0.9496, not 0.95 (which
    would read as passing), a t of 1.96 that fails ``> 2`` 1.96, not 2.0. Other formats, and a value whose figure
    at ``fmt`` already reads on its side, are shown as ``fmt`` gives them."""
    text = _text(x, fmt)
    if text == "n/a" or not _OPS[op](x, threshold) or fmt[-1:] not in ("f", "%") or "." not in fmt:
        return text
    head, _, digits = fmt[:-1].rpartition(".")
    if not digits.isdigit():
        return text
    for extra in range(_MORE_DECIMALS + 1):
        text = format(x, f"{head}.{int(digits) + extra}{fmt[-1]}")
        shown = float(text.rstrip("%")) / (100.0 if fmt.endswith("%") else 1.0)
        if _OPS[op](shown, threshold) and (shown != threshold or x == threshold):
            return text
    return text


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
        ``"<statistic> <value> <negated comparison> <threshold>"``; a given ``reason`` shows the value where it says
        ``{value}`` (as ``text`` shows it)."""
        check_param(comparison in _OPS, "comparison", f"one of {', '.join(_OPS)}", comparison)
        passed = value is not None and bool(_OPS[comparison](value, threshold))
        g = cls(name, statistic, value, comparison, threshold, passed, short or name, "", fmt, detail_fmt, threshold_fmt)
        if passed:
            return g
        text = (reason.replace("{value}", g.text) if reason is not None
                else f"{statistic} {g.text} {_NEGATION[comparison]} {g.threshold_text}")
        return cls(name, statistic, value, comparison, threshold, passed, g.short, text, fmt, detail_fmt, threshold_fmt)

    @property
    def text(self) -> str:
        """The value as the line shows it (``n/a`` when not finite), with the decimals it needs to read on its side of
        the threshold (``_decisive``)."""
        return _decisive(self.value, self.fmt, self.relation, self.threshold)

    @property
    def detail_text(self) -> str:
        """The value as tables show it (``detail_fmt``), on its side of the threshold as ``text``."""
        return _decisive(self.value, self.detail_fmt, self.relation, self.threshold)

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


def verdict_alpha(t_min: float = T_MIN) -> float:
    """The one-sided significance level of the gate ``t > t_min`` (normal reference): 0.0228 at t_min = 2."""
    from scipy import stats as st  # lazy: see the note at the imports
    return float(st.norm.sf(t_min))


@dataclass(frozen=True)
class Power:
    """What the data could have detected, stated with every verdict.

    ``mde_per_trade``: the true excess per trade the verdict's significance test detects with probability
    ``power`` at level ``alpha`` given the data actually used (its days, trades, their dependence and volatility);
    ``mde_per_year``: the same effect as the equal-weight account's annual excess return. ``n_trades``, ``n_days``
    and ``n_eff`` (effective number of independent trades) describe that data."""

    mde_per_trade: float
    mde_per_year: float
    alpha: float
    power: float
    n_trades: int
    n_days: int
    n_eff: float

    @property
    def text(self) -> str:
        """``4.60%/trade (+38%/yr)``; ``n/a`` when it could not be estimated."""
        if not math.isfinite(self.mde_per_trade):
            return "n/a"
        yr = f" ({self.mde_per_year:+.0%}/yr)" if math.isfinite(self.mde_per_year) else ""
        return f"{self.mde_per_trade:.2%}/trade{yr}"

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Power":
        return cls(**{f.name: (math.nan if d.get(f.name) is None and f.type == "float" else d.get(f.name))
                      for f in fields(cls)})


def _line(gates: Sequence[Gate], supported: bool, note: str, power: Power | None = None) -> str:
    g = {x.name: x for x in gates}
    parts = []
    if all(k in g for k in _EFFECT):
        mean, t, n = (g[k] for k in _EFFECT)
        n_s = f"n={n.text}" if n.passed else f"n={n.text} {n.relation} {n.threshold_text}"
        if power is not None:
            n_s += f", {power.n_days} days, eff. n {_text(power.n_eff, '.0f')}"
        parts.append(f"OOS excess {mean.text}/trade ({t.short}={t.text}, {n_s})")
    parts += [f"{x.short} {x.text} {x.relation} {x.threshold_text}" for x in gates
              if not (x.name in _EFFECT and all(k in g for k in _EFFECT))]
    head = "edge supported" if supported else "edge NOT supported"
    tail = ""
    if power is not None:
        at = f"at {power.power:.0%} power"
        # "no edge >= MDE detected" only when the test detected none: a positive, significant excess that another
        # gate (trade count, PSR, PBO, SPA) turns down was detected, and the line says which gate failed
        detected = all(g[k].passed for k in _DETECTION if k in g) and any(k in g for k in _DETECTION)
        tail = (f"; MDE {power.text} {at}" if supported or detected or not math.isfinite(power.mde_per_trade) else
                f"; no edge >= {power.text} detected (MDE {at})")
    return f"{head}: {', '.join(parts)}{tail}" + (f"; {note}" if note else "")


@dataclass(frozen=True)
class Verdict:
    """``supported``: every gate passed. ``gates``: each condition with its value, threshold and outcome.
    ``reasons``: one sentence per failed gate (empty when supported). ``line``: one line stating the deciding
    numbers, e.g. ``edge NOT supported: OOS excess +0.12%/trade (t=0.8, n=143), DSR 0.41 < 0.95, PBO 0.62 >= 0.50``.
    ``note``: appended to the line (context, not a gate). ``power``: the minimum detectable effect of the data
    (:class:`Power`), stated on the line (``no edge >= X detected`` when the excess is not positive and
    significant)."""

    gates: tuple[Gate, ...]
    note: str = ""
    power: Power | None = None

    @classmethod
    def decide(cls, gates: Sequence[Gate], note: str = "", power: Power | None = None) -> "Verdict":
        check_param(len(gates) > 0, "gates", "at least one gate", list(gates))
        names = [g.name for g in gates]
        check_param(len(set(names)) == len(names), "gates", "gates with distinct names", names)
        return cls(tuple(gates), note, power)

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
        return _line(self.gates, self.supported, self.note, self.power)

    def gate(self, name: str) -> Gate | None:
        return next((g for g in self.gates if g.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``verdict`` (decision), ``verdict_line``, ``verdict_reasons``, ``verdict_gates``,
        ``verdict_note``, ``verdict_power`` (:class:`Power` as a dict, or None; NaN values become None)."""
        gates = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(g).items()}
                 for g in self.gates]
        return {"verdict": self.decision, "verdict_line": self.line, "verdict_reasons": self.reasons,
                "verdict_gates": gates, "verdict_note": self.note,
                "verdict_power": None if self.power is None else self.power.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Verdict":
        """The verdict stored by ``to_dict`` (e.g. in a walk-forward ``result.json``), exactly as decided."""
        check_param(isinstance(d.get("verdict_gates"), list), "verdict_gates",
                    "a list of gates (a result written by this version of accumopt)", d.get("verdict_gates"))
        pw = d.get("verdict_power")
        return cls(tuple(Gate(**g) for g in d["verdict_gates"]), str(d.get("verdict_note") or ""),
                   Power.from_dict(pw) if isinstance(pw, Mapping) else None)


def verdict(oos_excess_mean: float, oos_excess_t: float, dsr: float, pbo: float, n_oos_trades: int, *,
            min_trades: int = 30, dsr_min: float = 0.95, pbo_max: float = 0.5, t_min: float = T_MIN,
            sharpe: str = "dsr", note: str = "", t_kind: str = "iid", power: Power | None = None,
            spa_p: float | None = None, spa_max: float | None = None) -> Verdict:
    """Decide "edge supported" vs "edge NOT supported" from the OOS excess return per trade (a fraction: 0.0012 =
    +0.12%), its t statistic (``t_kind``: ``"iid"`` per trade or ``"hac"`` on the daily series), a
    Sharpe-significance statistic ``dsr`` (the Deflated Sharpe Ratio, or with ``sharpe="psr"`` the OOS Probabilistic
    Sharpe Ratio; it must be >= ``dsr_min``), the PBO and the OOS trade count; with ``spa_max`` also Hansen's SPA
    p-value ``spa_p`` (< ``spa_max``). ``power`` is stated on the line. A NaN input (a statistic that could not be
    estimated) fails its gate and is shown as ``n/a``."""
    check_param(int(n_oos_trades) == n_oos_trades and n_oos_trades >= 0, "n_oos_trades", "an integer >= 0",
                n_oos_trades)
    check_param(0.0 < dsr_min <= 1.0, "dsr_min", "in (0, 1]", dsr_min)
    check_param(0.0 < pbo_max <= 1.0, "pbo_max", "in (0, 1]", pbo_max)
    check_param(sharpe in SHARPE_GATES, "sharpe", f"one of {', '.join(SHARPE_GATES)}", sharpe)
    check_param(t_kind in T_GATES, "t_kind", f"one of {', '.join(T_GATES)}", t_kind)
    check_param(spa_max is None or 0.0 < spa_max < 1.0, "spa_max", "None or in (0, 1)", spa_max)
    n = int(n_oos_trades)
    label, long_name, short = SHARPE_GATES[sharpe]
    gates = [
        Gate.check("excess_mean", "OOS excess return / trade", oos_excess_mean, ">", 0.0, short="OOS excess",
                   reason="OOS excess return {value}/trade is not positive", fmt="+.2%", detail_fmt="+.3%",
                   threshold_fmt="g"),
        Gate.check("excess_t", T_GATES[t_kind][0], oos_excess_t, ">", t_min, short=T_GATES[t_kind][1],
                   reason=f"OOS excess return is not significant: {T_GATES[t_kind][1]}={{value}} <= {t_min:g}",
                   fmt=".1f",
                   detail_fmt=".2f", threshold_fmt="g"),
        Gate.check("n_trades", "OOS closed trades (n)", float(n), ">=", min_trades, short="n",
                   reason=f"too few OOS trades: n={n} < {min_trades}", fmt=".0f", detail_fmt=".0f", threshold_fmt="g"),
        Gate.check(sharpe, label, dsr, ">=", dsr_min, short=short,
                   reason=f"{long_name} {{value}} < {dsr_min:.2f}"),
        Gate.check("pbo", "Probability of Backtest Overfitting", pbo, "<", pbo_max, short="PBO"),
    ]
    if spa_max is not None:
        gates.append(Gate.check("spa", "SPA p-value (Hansen, every configuration tried)", spa_p, "<", spa_max,
                                short="SPA p", detail_fmt=".3f"))
    return Verdict.decide(gates, note, power)
