"""The ONE registry of engine parameters: name, type, domain, default, doc, and the engine object it sets.

Everything that names an engine parameter is built from, or tested against, this table:

* the engine's frozen objects (``ScoreParams``, ``Thresholds``, ``ExitParams``, ``Costs``, ``Caps``, ``Config``)
  check each field with the entry's ``check`` (their ``__post_init__`` keeps only the rules *between* fields,
  e.g. sell < buy), and their field defaults equal the entries' defaults (tested);
* ``Config.from_params`` / ``to_params`` map a flat ``{name: value}`` dict to and from those objects through each
  entry's ``group`` (which object) and ``field`` (which attribute): :func:`engine_fields`;
* the spec validator checks every value a ``[space]`` entry can take with the same ``check``; ``SPACE_PARAMS``
  and the default search space (``search``) come from here;
* the ``backtest`` command's flags are generated from ``PARAMS``; the README parameter table is
  :func:`markdown_table` (a test compares them).

Adding a parameter: one ``Param`` entry in ``PARAMS`` plus the engine code that reads it (the field on its frozen
object, with the same default). Exit names (``fixed_<N>d``, ``hybrid_<M>d``, ...) are parsed in exactly one place,
:func:`parse_exit`. Space-only parameters (the ``weights`` preset and the ``use_*`` switches) are spec
conveniences that :func:`engine_params` turns into engine parameters.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optimizer.errors import ParameterError

__all__ = [
    "Param", "Choice", "Number", "ExitName", "PARAMS", "SPACE_ONLY", "SPACE_PARAMS", "GROUPS",
    "VARIANTS", "Z_WINDOWS", "EXIT_RULES", "EXIT_NAMES", "SIZINGS", "WEIGHT_PRESETS", "SWITCHES", "REGIME_SUFFIXES",
    "GATES", "parse_exit", "check_fields", "engine_fields", "engine_params", "expand_weights", "default_space",
    "check_given_active", "markdown_table",
]

VARIANTS: tuple[str, ...] = ("A", "B", "C", "D", "vw_flow", "blended")
Z_WINDOWS: tuple[int, ...] = (10, 15, 20, 30, 40, 60, 90)
EXIT_RULES: tuple[str, ...] = ("fixed", "first_dist", "2x_consec_dist", "score_decay", "hybrid")
EXIT_NAMES: tuple[str, ...] = ("fixed_10d", "fixed_20d", "first_dist", "2x_consec_dist", "hybrid_30d", "score_decay")
SIZINGS: tuple[str, ...] = ("equal", "atr", "fixed_fractional", "kelly")
# (w_short, w_lit, w_price) before normalization; a space may declare ``weights`` instead of the three w_*.
WEIGHT_PRESETS: dict[str, tuple[float, float, float]] = {
    "short_heavy": (0.70, 0.20, 0.10),
    "balanced": (0.55, 0.30, 0.15),
    "lit_heavy": (0.40, 0.40, 0.20),
}
# space switch -> the engine parameter it gates (a false switch drops that parameter)
SWITCHES: dict[str, str] = {"use_stop_loss": "stop_loss", "use_take_profit": "take_profit"}
# engine object each group of parameters lives on (Config's attribute; "config" = Config itself)
GROUPS: tuple[str, ...] = ("score", "thresholds", "exit", "costs", "caps", "risk", "regime", "config")
# regime-conditional parameters: suffix -> the rule-based market regime (engine/_regime.market_regime) it applies to
REGIME_SUFFIXES: dict[str, str] = {"risk_on": "RISK_ON", "risk_off": "RISK_OFF", "transitional": "TRANSITIONAL"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _show(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


# ------------------------------------------------------------------------------------------------ domains


class _Domain:
    """The set of values a parameter may take. ``rule`` completes the sentence "<name> must be ..."."""

    rule: str = ""

    def ok(self, value: Any) -> bool:  # pragma: no cover - every domain overrides it
        raise NotImplementedError

    def check(self, name: str, value: Any) -> None:
        if not self.ok(value):
            raise ParameterError(f"{name} must be {self.rule}, got {name}={value!r}{self.hint(value)}")

    def spec_error(self, value: Any, err: ParameterError) -> str:
        """The message a spec gets for a value of a [space] entry outside the domain."""
        return f"values must be {self.rule}, got {value!r}{self.hint(value)}"

    def hint(self, value: Any) -> str:
        """Why a value that reads as an allowed one is not (the text 'true' where a boolean is required)."""
        return ""


@dataclass(frozen=True)
class Choice(_Domain):
    values: tuple[Any, ...]

    @property
    def rule(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(_show(v) for v in self.values)

    def ok(self, value: Any) -> bool:
        return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in self.values)

    def hint(self, value: Any) -> str:
        if isinstance(value, str) and any(isinstance(v, bool) and _show(v) == value.strip().lower() for v in self.values):
            return f" (text, not a boolean: write {value.strip().lower()} without quotes)"
        return ""


@dataclass(frozen=True)
class Number(_Domain):
    """A finite real (``integer``: a whole number) within optional bounds (``*_open``: bound excluded)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    @property
    def rule(self) -> str:  # type: ignore[override]
        head = "an integer " if self.integer else ""
        if self.lo is not None and self.hi is not None:
            return f"{head}in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{head}{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{head}{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return (head or "a finite number ").strip()

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        v = float(value)
        if not math.isfinite(v) or (self.integer and not v.is_integer()):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)


_EXIT_DAYS = re.compile(r"(fixed|hybrid)_(\d+)d")


@dataclass(frozen=True)
class ExitName(_Domain):
    """An exit: a named rule (``first_dist``, ...), ``fixed_<N>d`` / ``hybrid_<M>d``, or ``fixed`` / ``hybrid``
    with the hold taken from ``hold_days`` / ``max_days``."""

    @property
    def rule(self) -> str:  # type: ignore[override]
        return (f"one of {', '.join(EXIT_NAMES)} (or fixed_<N>d / hybrid_<M>d; "
                "fixed / hybrid take hold_days / max_days)")

    def ok(self, value: Any) -> bool:
        try:
            parse_exit(value)
        except ParameterError:
            return False
        return True

    def check(self, name: str, value: Any) -> None:
        parse_exit(value)

    def spec_error(self, value: Any, err: ParameterError) -> str:
        return str(err)


# ------------------------------------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class Param:
    """One parameter. ``group`` / ``field``: the engine object and attribute it sets (``group = "space"``: a spec
    convenience, not an engine parameter). ``optional``: None is a value (= off). ``flags``: extra CLI spellings.
    ``search``: its entry in the default search space of a spec without [space] (None = not searched)."""

    name: str
    type: type
    default: Any
    domain: _Domain
    doc: str
    group: str
    field: str = ""
    optional: bool = False
    flags: tuple[str, ...] = ()
    search: Any = None

    def __post_init__(self) -> None:
        if not self.field:
            object.__setattr__(self, "field", self.name)

    @property
    def rule(self) -> str:
        return self.domain.rule

    def check(self, value: Any) -> None:
        """Raise ``ParameterError('<name> must be <rule>, got <name>=<value>')`` unless ``value`` is allowed."""
        if value is None and self.optional:
            return
        self.domain.check(self.name, value)

    def coerce(self, value: Any) -> Any:
        """``value`` checked and converted to the parameter's type (None stays None for an optional one)."""
        self.check(value)
        return None if value is None else self.type(value)


def _p(*args: Any, **kw: Any) -> Param:
    return Param(*args, **kw)


_WEIGHT = Number(lo=0.0)
_DAYS = Number(lo=1, integer=True)

PARAMS: dict[str, Param] = {p.name: p for p in (
    _p("variant", str, "B", Choice(VARIANTS), "Short-flow feature of the score (docs/ENGINE.md): A z(short buy "
       "volume), B z(short buy/sell ratio), C mean of A and B, D z(log-scaled short imbalance), vw_flow z(short + "
       "lit net flow), blended 0.6 B + 0.4 vw_flow.", "score", search={"type": "categorical", "choices": ["A", "B", "C", "D"]}),
    _p("w_short", float, 0.55, _WEIGHT, "Weight of the short-volume term (the three weights are normalized to "
       "sum 1).", "score", search={"type": "float", "low": 0.40, "high": 0.70}),
    _p("w_lit", float, 0.30, _WEIGHT, "Weight of the lit buy/sell imbalance term.", "score",
       search={"type": "float", "low": 0.20, "high": 0.40}),
    _p("w_price", float, 0.15, _WEIGHT, "Weight of the price-return term.", "score",
       search={"type": "float", "low": 0.10, "high": 0.20}),
    _p("z_window", int, 20, Number(2, 252, integer=True), "Rolling z-score window in sessions.", "score",
       search={"type": "categorical", "choices": list(Z_WINDOWS)}),
    _p("intensity_lo", float, 0.7, Number(lo=0.0), "OTC-participation multiplier at sigmoid 0: "
       "lo + (hi - lo) * sigmoid(otc z); must be <= intensity_hi.", "score"),
    _p("intensity_hi", float, 1.3, Number(lo=0.0), "OTC-participation multiplier at sigmoid 1.", "score"),
    _p("buy_threshold", float, 70.0, Number(0, 100), "Accumulation signal when the display score (0..100) is "
       ">= this; must be above sell_threshold.", "thresholds", field="buy", flags=("--buy",),
       search={"type": "int", "low": 60, "high": 80, "step": 5}),
    _p("sell_threshold", float, 30.0, Number(0, 100), "Distribution signal when the display score is <= this.",
       "thresholds", field="sell", flags=("--sell",), search={"type": "int", "low": 20, "high": 40, "step": 5}),
    _p("exit", str, "first_dist", ExitName(), "Exit rule: fixed_<N>d holds N sessions; first_dist exits at the "
       "first distribution day; 2x_consec_dist at the second in a row; score_decay when the score falls back; "
       "hybrid_<M>d is first_dist capped at M sessions.", "exit", field="rule",
       search={"type": "categorical", "choices": list(EXIT_NAMES)}),
    _p("hold_days", int, None, _DAYS, "Sessions held by exit = fixed.", "exit", optional=True),
    _p("max_days", int, None, _DAYS, "Longest hold of exit = hybrid.", "exit", optional=True),
    _p("stop_loss", float, None, Number(0, 1, lo_open=True, hi_open=True), "Stop loss as a fraction of the "
       "entry price (0.05 = 5%), filled intraday at the stop.", "exit", optional=True),
    _p("take_profit", float, None, Number(lo=0.0, lo_open=True), "Take profit as a fraction of the entry price, "
       "filled intraday at the target.", "exit", optional=True),
    _p("time_stop", int, None, _DAYS, "Longest hold in sessions for any exit rule.", "exit", optional=True,
       search=60),
    _p("atr_stop", float, None, Number(lo=0.0, lo_open=True), "ATR-multiple stop: exit intraday at entry - k x "
       "ATR14 at the signal close (a gap through it fills at the open).", "exit", optional=True),
    _p("trail_stop", float, None, Number(0, 1, lo_open=True, hi_open=True), "Trailing stop as a fraction below the "
       "highest of the entry price and the highs since entry (the bars before the current one), filled intraday "
       "(a gap through it fills at the open).", "exit", optional=True),
    _p("commission_bps", float, 1.0, Number(lo=0.0), "Commission per side in basis points.", "costs"),
    _p("slippage_bps", float, 5.0, Number(lo=0.0), "Slippage per side in basis points.", "costs"),
    _p("max_positions", int, None, _DAYS, "Most open positions at once (none: no cap).", "caps", optional=True),
    _p("max_per_sector", int, None, _DAYS, "Most open positions per sector ETF (none: no cap).", "caps",
       optional=True),
    _p("sizing", str, "equal", Choice(SIZINGS), "Portfolio weights: equal per open position; atr = inverse "
       "ATR% at the signal (volatility targeting); fixed_fractional = risk_fraction of equity down to the initial "
       "stop; kelly = kelly_fraction x the Kelly fraction of the trades closed by the signal. Changes portfolio "
       "returns and metrics, not a trade's return.", "risk"),
    _p("risk_fraction", float, 0.02, Number(0, 1, lo_open=True), "fixed_fractional: equity risked per trade "
       "(weight = risk_fraction / initial stop distance; the whole position without a stop); kelly's size until "
       "10 trades have closed.", "risk"),
    _p("max_weight", float, 0.25, Number(0, 1, lo_open=True), "Largest position as a fraction of equity "
       "(fixed_fractional, kelly); total exposure is capped at 1.", "risk"),
    _p("kelly_fraction", float, 0.5, Number(0, 1, lo_open=True), "kelly: the fraction of the Kelly bet "
       "p - (1 - p) / b taken (0.5 = half Kelly).", "risk"),
    _p("kelly_window", int, 50, Number(10, 1000, integer=True), "kelly: the last N trades closed by the signal "
       "close estimate p and b.", "risk"),
    *(_p(f"{w}_{sfx}", float, None, _WEIGHT, f"Regime-conditional {w}: the score's {w} on sessions the market "
         f"regime rule labels {lab} (point-in-time; none = the pooled {w}). One pass: each row's display uses its "
         "session's weights.", "regime", optional=True)
      for sfx, lab in REGIME_SUFFIXES.items() for w in ("w_short", "w_lit", "w_price")),
    *(_p(f"buy_threshold_{sfx}", float, None, Number(0, 100), f"Regime-conditional buy threshold on {lab} "
         "sessions (none = the pooled buy_threshold); must be above sell_threshold.", "regime", optional=True)
      for sfx, lab in REGIME_SUFFIXES.items()),
    _p("options_boost", float, 0.0, Number(0, 1), "Options boost as a score multiplier: display x (1 + x (boost "
       "- 1)), boost = the design's additive options activity boost (1 to 1.5, liquid names only), capped at 100; "
       "0 = off, 1 = the design's boost. A store without options is unchanged.", "config"),
    _p("regime_sizing", bool, False, Choice((True, False)), "Scale each position's exposure by doc 004's regime "
       "multiplier at its signal (1 / 0.5 / 0.5 / 0.25 by learned regime, 0.1 when VIX > 40).", "risk"),
    _p("dd_breaker", float, None, Number(0, 1, lo_open=True, hi_open=True), "Drawdown circuit breaker: no new "
       "entry while portfolio equity is more than this fraction below its peak; trading resumes dd_cooloff "
       "sessions later from a fresh peak.", "risk", optional=True),
    _p("dd_cooloff", int, 10, _DAYS, "Sessions without new entries after the drawdown breaker trips.", "risk"),
    _p("corr_cap", float, None, Number(0, 1, lo_open=True, hi_open=True), "Correlation cap: refuse an entry whose "
       "return correlation over corr_window sessions with an open position exceeds this.", "risk", optional=True),
    _p("corr_window", int, 60, Number(5, 252, integer=True), "Sessions of close-to-close returns the correlation "
       "cap measures (at least half of them present in both symbols).", "risk"),
)}

SPACE_ONLY: dict[str, Param] = {p.name: p for p in (
    _p("weights", str, None, Choice(tuple(WEIGHT_PRESETS)), "A preset of (w_short, w_lit, w_price): "
       + ", ".join(f"{k} {'/'.join(_num(x) for x in v)}" for k, v in WEIGHT_PRESETS.items())
       + "; instead of the three w_* parameters.", "space"),
    _p("use_stop_loss", bool, None, Choice((True, False)), "Switch: false drops stop_loss (declare stop_loss "
       "with when = { use_stop_loss = true }).", "space"),
    _p("use_take_profit", bool, None, Choice((True, False)), "Switch: false drops take_profit.", "space"),
)}

# every name a [space] may declare, engine parameters first
SPACE_PARAMS: tuple[str, ...] = (*PARAMS, *SPACE_ONLY)

# parameter -> (the parameter that switches it on, the values that do; None: any value but none). The engine reads
# the parameter only under that setting (a spec's [space] and a backtest flag are refused otherwise).
GATES: dict[str, tuple[str, tuple | None]] = {
    "risk_fraction": ("sizing", ("fixed_fractional", "kelly")), "max_weight": ("sizing", ("fixed_fractional", "kelly")),
    "kelly_fraction": ("sizing", ("kelly",)), "kelly_window": ("sizing", ("kelly",)),
    "dd_cooloff": ("dd_breaker", None), "corr_window": ("corr_cap", None),
}

_BY_GROUP: dict[str, tuple[Param, ...]] = {
    g: tuple(p for p in PARAMS.values() if p.group == g and p.name != "exit") for g in GROUPS
}


# ------------------------------------------------------------------------------------------------ functions


def parse_exit(name: Any, hold_days: Any = None, max_days: Any = None) -> tuple[str, int | None, int | None]:
    """The exit ``name`` as (rule, hold_days, max_days). ``fixed_<N>d`` -> ("fixed", N, None), ``hybrid_<M>d``
    -> ("hybrid", None, M); the bare rules ``fixed`` / ``hybrid`` take ``hold_days`` / ``max_days``; a signal
    rule (first_dist, 2x_consec_dist, score_decay) holds no day count. The one parser of exit names."""
    if isinstance(name, str):
        m = _EXIT_DAYS.fullmatch(name)
        if m:
            n = PARAMS["hold_days" if m.group(1) == "fixed" else "max_days"].coerce(int(m.group(2)))
            return ("fixed", n, None) if m.group(1) == "fixed" else ("hybrid", None, n)
        if name in ("fixed", "hybrid"):
            return name, PARAMS["hold_days"].coerce(hold_days), PARAMS["max_days"].coerce(max_days)
        if name in EXIT_RULES:
            return name, None, None
    raise ParameterError(f"exit must be {ExitName().rule}, got exit={name!r}")


def check_fields(obj: Any, group: str) -> None:
    """Check every registry field of the engine object ``obj`` (its ``__post_init__`` calls this)."""
    for p in _BY_GROUP[group]:
        p.check(getattr(obj, p.field))


def engine_fields(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A flat dict of engine parameters as ``{group: {field: value}}`` for ``Config.from_params``: values checked
    and converted; ``exit`` parsed into rule / hold_days / max_days (without ``exit`` the base configuration's
    exit rule and its day counts stay, so ``hold_days`` / ``max_days`` alone change nothing). Unknown names are
    an error listing the valid ones."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(PARAMS)}")
    out: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    for name, value in params.items():
        p = PARAMS[name]
        if name in ("exit", "hold_days", "max_days"):
            p.check(value)  # set below, with the exit rule they belong to
        else:
            out[p.group][p.field] = p.coerce(value)
    if "exit" in params:
        rule, hold, mx = parse_exit(params["exit"], params.get("hold_days"), params.get("max_days"))
        out["exit"].update(rule=rule, hold_days=hold, max_days=mx)
    return out


def check_given_active(params: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Refuse a parameter the user set explicitly (``given``: e.g. a command's flags) that the configuration
    ``params`` (the flat parameters it runs with, ``given`` included) never reads: hold_days / max_days without the
    bare exit 'fixed' / 'hybrid' (fixed_<N>d and hybrid_<M>d name their own days, the other exits hold none), and a
    GATES parameter whose switch is off. Values ``params`` holds otherwise (a parameters file lists every one) are
    not checked: only what was asked for and would change nothing."""
    exit_name = params.get("exit", PARAMS["exit"].default)
    for days, rule in (("hold_days", "fixed"), ("max_days", "hybrid")):
        if given.get(days) is not None and exit_name != rule:
            raise ParameterError(f"--{days.replace('_', '-')} has no effect: {days} is read only with exit = "
                                 f"'{rule}' ({rule}_<N>d names its own days), and exit here is {exit_name!r}; pass "
                                 f"--exit {rule} or leave it out, got {days}={given[days]!r}")
    for name, (gate, on) in GATES.items():
        v = params.get(gate, PARAMS[gate].default)
        if given.get(name) is not None and (v is None or (on is not None and v not in on)):
            need = f"{gate} = {' or '.join(map(repr, on))}" if on else f"{gate} set"
            raise ParameterError(f"--{name.replace('_', '-')} has no effect: {name} is read only with {need}, and "
                                 f"{gate} here is {'none' if v is None else repr(v)}; pass --{gate.replace('_', '-')} "
                                 f"or leave it out, got {name}={given[name]!r}")


def expand_weights(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with a ``weights`` preset replaced by its w_short / w_lit / w_price."""
    out = dict(values)
    if "weights" in out:
        preset = out.pop("weights")
        SPACE_ONLY["weights"].check(preset)
        out.update(zip(("w_short", "w_lit", "w_price"), WEIGHT_PRESETS[preset]))
    return out


def engine_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """Space values -> engine parameters: weight presets expanded, switches dropped (a false switch also drops
    the parameter it gates). The result is accepted by ``Config.from_params``."""
    out = expand_weights({k: v for k, v in values.items() if k not in SWITCHES})
    for switch, gated in SWITCHES.items():
        if values.get(switch) is False:
            out.pop(gated, None)
    return out


def default_space() -> dict[str, Any]:
    """The search space of a spec without a [space] table: every parameter with a ``search`` entry."""
    return {p.name: p.search for p in PARAMS.values() if p.search is not None}


def markdown_table() -> str:
    """The README's parameter table (parameter, type, default, allowed values, meaning), one row per entry."""
    def default(p: Param) -> str:
        return "none" if p.default is None else f"`{_show(p.default)}`"

    rows = ["| parameter | type | default | allowed values | meaning |", "|---|---|---|---|---|"]
    for p in (*PARAMS.values(), *SPACE_ONLY.values()):
        rows.append(f"| `{p.name}` | {p.type.__name__} | {default(p)} | {p.rule} | {p.doc} |")
    return "\n".join(rows)
