"""Trade simulation: signal at the close of t, fill at the open of t+1, path-dependent exits in a numba kernel.

``simulate`` is pure: panel arrays + display score (or its uncombined ``ScoreTerms``) + frozen parameter objects
-> ``Trades`` (struct of arrays). The exact rules are in docs/ENGINE.md; the reference implementation in
tests/reference_engine.py checks them. Two kernels implement them: symbol-major (no caps: each symbol's sessions
walked from contiguous memory, symbol blocks on threads) and date-major (position caps couple the symbols at each
session); tests/test_engine_fused.py checks they give the same trades.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd

from optimizer.errors import check_param
from optimizer.engine._indicators import atr
from optimizer.engine._kernels import (
    PARALLEL_MIN_CELLS, RULE_CODES, SIZING_CODES, simulate_nb, simulate_symbols_nb,
    simulate_symbols_par_nb, trade_weights_nb, use_parallel,
)
from optimizer.engine._regime import effective_vix, learned_regime, position_multiplier, regime_features
from optimizer.engine.features import as_symbol_major
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreTerms
from optimizer.params import EXIT_RULES, check_fields

__all__ = [
    "ExitParams", "Costs", "Thresholds", "Span", "Caps", "RiskParams", "Trades", "simulate", "simulate_counted",
    "SymbolMajorPrices", "EXIT_REASONS", "INTRADAY_REASONS", "carried_slots",
]

EXIT_REASONS = ("fixed", "first_dist", "2x_consec_dist", "score_decay", "max_days", "time_stop", "stop_loss",
                "take_profit", "open_at_end", "atr_stop", "trail_stop")
# reasons filled during a bar (not at its open)
INTRADAY_REASONS = ("stop_loss", "take_profit", "atr_stop", "trail_stop")


@dataclass(frozen=True)
class ExitParams:
    """Exit strategy. ``rule`` in fixed | first_dist | 2x_consec_dist | score_decay | hybrid (an exit *name* such as
    ``fixed_10d`` is parsed by ``optimizer.params.parse_exit``; ``Config.from_params`` accepts names).

    fixed needs ``hold_days`` (N sessions), hybrid needs ``max_days``; ``stop_loss`` / ``take_profit`` are fractions
    (0.05 = 5%), ``time_stop`` a maximum number of sessions for any rule. ``atr_stop`` k: a stop at entry − k·ATR14
    at the signal close; ``trail_stop`` x: a stop at (1 − x) times the highest of the entry price and the highs of
    the bars since entry (before the current bar). docs/ENGINE.md "Risk rules".
    """

    rule: str = "first_dist"
    hold_days: int | None = None
    max_days: int | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    time_stop: int | None = None
    atr_stop: float | None = None
    trail_stop: float | None = None

    def __post_init__(self) -> None:
        check_param(self.rule in RULE_CODES, "exit rule", f"one of {', '.join(EXIT_RULES)}", self.rule)
        check_fields(self, "exit")  # hold_days, max_days, stop_loss, take_profit, time_stop (optimizer.params)
        if self.rule == "fixed":
            check_param(self.hold_days is not None, "hold_days", ">= 1 for the fixed exit", self.hold_days)
        if self.rule == "hybrid":
            check_param(self.max_days is not None, "max_days", ">= 1 for the hybrid exit", self.max_days)

    @property
    def max_hold(self) -> int | None:
        """Longest possible holding period in sessions, or None when unbounded (signal-based without a time stop)."""
        caps = [v for v in (self.hold_days if self.rule == "fixed" else None,
                            self.max_days if self.rule == "hybrid" else None, self.time_stop) if v is not None]
        return min(caps) if caps else None


@dataclass(frozen=True)
class Costs:
    """Per-side costs in basis points. Defaults: 1 bp commission + 5 bp slippage per side (12 bp round trip)."""

    commission_bps: float = 1.0
    slippage_bps: float = 5.0

    def __post_init__(self) -> None:
        check_fields(self, "costs")

    @property
    def per_side(self) -> float:
        return (self.commission_bps + self.slippage_bps) / 1e4

    def scaled(self, k: float) -> "Costs":
        return Costs(self.commission_bps * k, self.slippage_bps * k)


@dataclass(frozen=True)
class Thresholds:
    buy: float = 70.0
    sell: float = 30.0

    def __post_init__(self) -> None:
        check_fields(self, "thresholds")
        check_param(self.sell < self.buy, "sell_threshold", f"< buy_threshold={self.buy}", self.sell)


@dataclass(frozen=True)
class Span:
    """Signal window [sig_start, sig_end) and data limit data_end (exclusive) as panel row indices."""

    sig_start: int
    sig_end: int
    data_end: int

    def __post_init__(self) -> None:
        check_param(0 <= self.sig_start < self.sig_end, "sig_start", f"in [0, sig_end={self.sig_end})", self.sig_start)
        check_param(self.sig_end <= self.data_end, "data_end", f">= sig_end={self.sig_end}", self.data_end)

    @classmethod
    def full(cls, panel: Panel) -> "Span":
        T = len(panel.dates)
        return cls(0, T, T)

    @property
    def sessions(self) -> int:
        return self.sig_end - self.sig_start


@dataclass(frozen=True)
class Caps:
    max_positions: int | None = None
    max_per_sector: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, "caps")


@dataclass(frozen=True)
class RiskParams:
    """Portfolio-level risk rules (docs/ENGINE.md "Position sizing" and "Portfolio rules").

    ``sizing``: equal | atr (relative weights: the open positions share the portfolio) or fixed_fractional |
    kelly (absolute fractions of equity, the rest in cash, total exposure capped at 1). fixed_fractional risks
    ``risk_fraction`` of equity down to the tightest initial stop (weight risk_fraction / stop distance, the whole
    position without a stop), capped at ``max_weight``; kelly: ``kelly_fraction`` x the Kelly fraction of the last
    ``kelly_window`` trades closed by the signal close, capped at ``max_weight`` (fixed-fractional until 10 are
    known). ``regime_sizing``: each position's exposure times doc 004's regime multiplier at its signal close.
    ``dd_breaker`` x: no new entry while the portfolio equity is more than x below its peak; trading resumes
    ``dd_cooloff`` sessions later from a fresh peak. ``corr_cap`` rho: refuse an entry whose return correlation
    over the last ``corr_window`` sessions with an open position exceeds rho. Sizing changes portfolio returns
    and metrics, never a trade's own return; the breaker and the correlation cap change which trades happen.
    """

    sizing: str = "equal"
    risk_fraction: float = 0.02
    max_weight: float = 0.25
    kelly_fraction: float = 0.5
    kelly_window: int = 50
    regime_sizing: bool = False
    dd_breaker: float | None = None
    dd_cooloff: int = 10
    corr_cap: float | None = None
    corr_window: int = 60

    def __post_init__(self) -> None:
        check_fields(self, "risk")

    @property
    def portfolio_state(self) -> bool:
        """Whether a rule needs the portfolio's state session by session (the date-major kernel)."""
        return self.dd_breaker is not None or self.corr_cap is not None

    @property
    def weighted(self) -> bool:
        """Whether positions are not simply equal-weighted (per-trade weights are computed)."""
        return self.sizing != "equal" or self.regime_sizing


@dataclass(frozen=True, eq=False)
class Trades:
    """Struct of arrays, one element per trade, in kernel order: by symbol then entry (symbol-major kernel) or by
    exit processing (date-major kernel, position caps); use ``to_frame`` for a sorted view.

    ``cost``: the per-side cost fraction (commission + slippage), one number for every trade (a run), or one per
    trade (the walk-forward's stitched trades, whose windows' winners may trade at different costs; read it per
    trade with ``cost_per_trade``). ``weight`` / ``mult``: each trade's sizing weight and regime multiplier (None: 1,
    equal weights), ``absolute``: whether the weights are fractions of equity (fixed_fractional, kelly) rather than
    relative (equal, atr); the portfolio returns and metrics read them (docs/ENGINE.md "Position sizing")."""

    symbol: np.ndarray
    signal_idx: np.ndarray
    entry_idx: np.ndarray
    exit_idx: np.ndarray
    entry_price: np.ndarray
    exit_price: np.ndarray
    exit_reason: np.ndarray
    score: np.ndarray
    cost: float | np.ndarray = 0.0
    weight: np.ndarray | None = None
    mult: np.ndarray | None = None
    absolute: bool = False
    gross_ret: np.ndarray = field(init=False)
    net_ret: np.ndarray = field(init=False)
    open_at_end: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if np.ndim(self.cost):
            check_param(np.shape(self.cost) == self.symbol.shape, "cost",
                        f"one number, or one per trade ({self.symbol.shape[0]})",
                        f"<array of shape {np.shape(self.cost)}>")
        with np.errstate(invalid="ignore", divide="ignore"):
            object.__setattr__(self, "gross_ret", self.exit_price / self.entry_price - 1.0)
            object.__setattr__(self, "net_ret", self.exit_price * (1 - self.cost) / (self.entry_price * (1 + self.cost)) - 1.0)
        object.__setattr__(self, "open_at_end", self.exit_reason == EXIT_REASONS.index("open_at_end"))

    def __len__(self) -> int:
        return int(self.symbol.shape[0])

    @property
    def closed(self) -> np.ndarray:
        return ~self.open_at_end

    @property
    def cost_per_trade(self) -> np.ndarray:
        """The per-side cost fraction of each trade (``cost`` broadcast to one per trade)."""
        return np.broadcast_to(np.asarray(self.cost, dtype=np.float64), self.symbol.shape)

    @property
    def hold_days(self) -> np.ndarray:
        return self.exit_idx - self.entry_idx

    def to_frame(self, panel: Panel | None = None) -> pd.DataFrame:
        df = pd.DataFrame({
            "symbol_idx": self.symbol, "signal_idx": self.signal_idx, "entry_idx": self.entry_idx,
            "exit_idx": self.exit_idx, "entry_price": self.entry_price, "exit_price": self.exit_price,
            "gross_ret": self.gross_ret, "net_ret": self.net_ret, "hold_days": self.hold_days,
            "exit_reason": np.array(EXIT_REASONS, dtype=object)[self.exit_reason] if len(self) else np.array([], dtype=object),
            "open_at_end": self.open_at_end, "score": self.score,
        })
        if self.weight is not None:
            df["weight"] = self.weight
        if self.mult is not None:
            df["regime_mult"] = self.mult
        if panel is not None and len(df):
            sy = np.array(panel.symbols, dtype=object)
            df.insert(0, "symbol", sy[self.symbol])
            for c in ("signal", "entry", "exit"):
                df.insert(1, f"{c}_date", pd.to_datetime(panel.dates[df[f"{c}_idx"].to_numpy()]))
        return df.sort_values(["entry_idx", "symbol_idx"], kind="mergesort").reset_index(drop=True)


def _sector_ids(panel: Panel) -> tuple[np.ndarray, int]:
    names = sorted({s for s in panel.sectors if s})
    lut = {n: i for i, n in enumerate(names)}
    return np.array([lut.get(s, -1) if s else -1 for s in panel.sectors], dtype=np.int64), len(names)


# Stand-ins for the unused score source in the kernels' arguments. Terms are read-only (the cache's), a display is
# passed as a writable-typed array (never written): a fused call and a display call then have the same argument
# types and share one compiled specialization (the kernels are big: each one costs seconds of JIT on a cold cache).
_NO_TERMS = np.zeros((1, 1))
_NO_TERMS.setflags(write=False)
_NO_DISPLAY = np.zeros((1, 1))


def _display_source(display: np.ndarray) -> np.ndarray:
    """The display as the kernels read it: symbol-major (N x T), C-contiguous, writable-typed (a view when
    possible; the kernels never write it)."""
    out = np.asarray(display, dtype=np.float64).T
    if not out.flags.c_contiguous or not out.flags.writeable:
        out = np.array(out, order="C")
    return out


class SymbolMajorPrices:
    """The panel's open / high / low / close as read-only (N x T) C-contiguous copies (a symbol's sessions
    contiguous), the layout of the symbol-major kernel and of the portfolio returns. Each field is copied on first
    use; an ``Evaluator`` keeps one for its panel, so a trial never transposes.

    Also, computed on first use (point-in-time: row t from rows <= t): ``"atr14"`` (Wilder ATR-14 of the high /
    low / close, symbol-major), ``atr_median()`` (per session, the cross-sectional median of ATR14 / close) and
    ``regime_multiplier()`` (doc 004's position multiplier of the learned regime, docs/CONTEXT.md section 3; or
    the (T,) ``regime_multiplier`` given, e.g. the context's own ``regime_multiplier``)."""

    def __init__(self, panel: Panel, regime_multiplier: np.ndarray | None = None) -> None:
        self.panel = panel
        self._fields: dict[str, np.ndarray] = {}
        self._market: dict[str, np.ndarray] = {}
        self._consts: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # constant threshold rows, by value
        if regime_multiplier is not None:
            m = np.ascontiguousarray(regime_multiplier, dtype=np.float64)
            check_param(m.shape == (len(panel.dates),), "regime_multiplier", f"a ({len(panel.dates)},) array", m.shape)
            self._market["regime_multiplier"] = m

    def __getitem__(self, name: str) -> np.ndarray:
        out = self._fields.get(name)
        if out is None:
            if name == "atr14":
                p = self.panel
                src = atr(p["high"], p["low"], p["close"], 14)
            else:
                src = self.panel[name]
            out = self._fields[name] = as_symbol_major(src)
        return out

    def atr_median(self) -> np.ndarray:
        """(T,) median over the symbols of ATR14 / close (NaN where no symbol has one)."""
        out = self._market.get("atr_median")
        if out is None:
            with np.errstate(invalid="ignore", divide="ignore"):
                a = self["atr14"] / self["close"]
            a = np.where(np.isfinite(a) & (a > 0), a, np.nan)
            ok = np.isfinite(a).any(axis=0)
            out = np.full(a.shape[1], np.nan)
            if ok.any():
                out[ok] = np.nanmedian(a[:, ok], axis=0)
            out = self._market["atr_median"] = out
        return out

    def regime_multiplier(self) -> np.ndarray:
        """(T,) doc 004's position multiplier of each session's learned regime (1.0 before the model exists,
        0.1 when the VIX, or its proxy, is above 40): the context's ``regime_multiplier``."""
        out = self._market.get("regime_multiplier")
        if out is None:
            m = self.panel.market
            feats = regime_features(m["spy_close"], m["spy_high"], m["spy_low"], m["spy_volume"], m["vix"])
            out = position_multiplier(learned_regime(feats), effective_vix(m["vix"], m["spy_close"]))
            out = self._market["regime_multiplier"] = np.ascontiguousarray(out, dtype=np.float64)
        return out

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._fields.values())


def _blocks(N: int) -> np.ndarray:
    """Symbol block bounds of the parallel kernel: one contiguous block per numba thread (the configured maximum:
    ``numba.get_num_threads()`` costs ~0.1 ms per call)."""
    nb = max(1, min(numba.config.NUMBA_NUM_THREADS, N))
    return np.array([N * k // nb for k in range(nb + 1)], dtype=np.int64)


_NO_ATR = np.full((1, 1), np.nan)
_NO_ATR.setflags(write=False)
_ONES = np.ones(1)
_DEFAULT_RISK = RiskParams()


def simulate(
    panel: Panel,
    display: np.ndarray | ScoreTerms,
    thresholds: Thresholds,
    exit: ExitParams,
    costs: Costs,
    span: Span,
    caps: Caps | None = None,
    entry_ok: np.ndarray | None = None,
    risk: RiskParams | None = None,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
    carried: Trades | None = None,
) -> Trades:
    """Simulate one configuration. Pure; reads ``panel`` arrays, never mutates them.

    ``display`` is the (T x N) display score or its uncombined ``ScoreTerms``. ``entry_ok`` (T,) bool restricts the
    sessions whose close may open a position (regime filters); exits are never filtered. ``risk``: sizing and
    portfolio rules (default: equal weights, no portfolio rule). ``rows``: per-session (buy, sell) thresholds
    (T,) arrays replacing ``thresholds`` (regime-conditional thresholds). ``carried``: positions held by someone
    else that count against the caps (``simulate_counted``).
    """
    return simulate_counted(panel, display, thresholds, exit, costs, span, caps, entry_ok, risk=risk, rows=rows,
                            carried=carried)[0]


def _threshold_rows(thresholds: Thresholds, rows: tuple[np.ndarray, np.ndarray] | None, T: int,
                    px: "SymbolMajorPrices") -> tuple[np.ndarray, np.ndarray]:
    """The kernels' per-session (buy, sell) arrays: ``rows`` as given, or the constant thresholds (kept on the
    panel's ``SymbolMajorPrices``: a study's trials reuse a few threshold pairs)."""
    if rows is None:
        key = ("thresholds", float(thresholds.buy), float(thresholds.sell))
        out = px._consts.get(key)
        if out is None:
            # writable-typed like ``rows`` (one numba specialization); the kernels never write them
            out = px._consts[key] = (np.full(T, key[1]), np.full(T, key[2]))
        return out
    buy, sell = (np.ascontiguousarray(r, dtype=np.float64) for r in rows)
    check_param(buy.shape == (T,) and sell.shape == (T,), "rows", f"two ({T},) threshold arrays", (buy.shape, sell.shape))
    return buy, sell


_FREED_AFTER_BAR = np.array([r in INTRADAY_REASONS or r == "open_at_end" for r in EXIT_REASONS])
_NO_CARRIED = tuple(np.zeros(0, np.int64) for _ in range(3))


def carried_slots(carried: Trades | None, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The date-major kernel's view of positions a run does not own (``simulate_counted(carried=)``): per position,
    its symbol, its entry row and the first open at which its slot is free again (the engine's own rule, docs/
    ENGINE.md "Trades": the exit row for an exit due at an open, the row after it for an intraday exit, which still
    holds its slot at that open, and for an open-at-end trade, which the account lets go at that row's close).
    Only the positions that hold a slot at some open after ``start`` are kept (empty int64 arrays when none)."""
    if carried is None or len(carried) == 0:
        return _NO_CARRIED
    ext = np.asarray(carried.exit_idx, dtype=np.int64)
    until = ext + _FREED_AFTER_BAR[np.asarray(carried.exit_reason, dtype=np.int64)]
    keep = until > start + 1
    return (np.ascontiguousarray(np.asarray(carried.symbol, dtype=np.int64)[keep]),
            np.ascontiguousarray(np.asarray(carried.entry_idx, dtype=np.int64)[keep]),
            np.ascontiguousarray(until[keep]))


def simulate_counted(
    panel: Panel,
    score: np.ndarray | ScoreTerms,
    thresholds: Thresholds,
    exit: ExitParams,
    costs: Costs,
    span: Span,
    caps: Caps | None = None,
    entry_ok: np.ndarray | None = None,
    prices: SymbolMajorPrices | None = None,
    kernel: str | None = None,
    risk: RiskParams | None = None,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
    carried: Trades | None = None,
) -> tuple[Trades, int]:
    """``simulate`` plus the accumulation-signal count of the same pass (``signals.count_signals`` of the display).

    Both kernels read symbol-major (N x T) matrices: the cached terms and ``ScoreTerms.display()`` are stored that
    way (no copy), another display is transposed once. Without caps and portfolio rules the symbol-major kernel
    runs (symbols are independent: each symbol's sessions are scanned from contiguous memory, blocks of symbols on
    all numba threads for big panels); with ``ScoreTerms`` it combines each symbol's display row into a small
    buffer, so no score matrix is written. Position caps, the drawdown breaker and the correlation cap couple
    symbols session by session: the date-major kernel (which also sizes each position at its signal close).
    Otherwise sizing weights are computed from the trades afterwards (``trade_weights_nb``, the same rule).
    ``prices``: the panel's cached ``SymbolMajorPrices`` (else copied per call). ``kernel`` ("date" or "symbol")
    forces a kernel (tests: both give the same trades). One numba specialization per kernel serves every call.
    ``carried``: positions the run does not own but that count against its caps (the walk-forward's book: trades
    an earlier window opened, still held into this run's span): each holds a slot of ``max_positions`` and of its
    sector's ``max_per_sector`` from its entry open until it frees it as the engine's own positions do (at its exit
    open for an exit due at an open, after its exit bar for an intraday or open-at-end exit), and the correlation
    cap compares candidates with it (``carried_slots``). They are never traded or returned, and their symbols are
    not blocked (the caller blocks them). Without caps or ``corr_cap`` they change nothing.
    """
    T, N = panel.shape
    risk = risk or _DEFAULT_RISK
    check_param(tuple(score.shape) == (T, N), "display.shape", f"equal to the panel shape {(T, N)}", tuple(score.shape))
    check_param(span.data_end <= T, "span.data_end", f"<= number of sessions {T}", span.data_end)
    ok = np.ones(T, dtype=np.bool_) if entry_ok is None else np.asarray(entry_ok, dtype=np.bool_)
    check_param(ok.shape == (T,), "entry_ok.shape", f"equal to ({T},)", ok.shape)
    capped = caps is not None and (caps.max_positions is not None or caps.max_per_sector is not None)
    coupled = capped or risk.portfolio_state
    check_param(kernel in (None, "date", "symbol") and not (coupled and kernel == "symbol"), "kernel",
                "None, 'date' or 'symbol' ('date' with caps, dd_breaker or corr_cap)", kernel)
    date_major = coupled or kernel == "date"
    fused = isinstance(score, ScoreTerms)
    nan = float("nan")
    px = prices if prices is not None else SymbolMajorPrices(panel)
    buy, sell = _threshold_rows(thresholds, rows, T, px)
    sizing = SIZING_CODES[risk.sizing]
    need_atr = exit.atr_stop is not None or sizing == SIZING_CODES["atr"]
    A = px["atr14"] if need_atr else _NO_ATR
    rule_args = (
        buy, sell, RULE_CODES[exit.rule],
        int(exit.hold_days or -1) if exit.rule == "fixed" else -1,
        int(exit.max_days or -1) if exit.rule == "hybrid" else -1,
        nan if exit.stop_loss is None else float(exit.stop_loss),
        nan if exit.take_profit is None else float(exit.take_profit),
        -1 if exit.time_stop is None else int(exit.time_stop),
        nan if exit.atr_stop is None else float(exit.atr_stop),
        nan if exit.trail_stop is None else float(exit.trail_stop),
        int(span.sig_start), int(span.sig_end), int(span.data_end), ok,
    )
    # both kernels read every matrix symbol-major, indexed [symbol, session]
    sm = as_symbol_major
    if fused:
        src = (_NO_DISPLAY, sm(score.ts), sm(score.tl), sm(score.tp), sm(score.sg),
               float(score.ws), float(score.wl), float(score.wp), float(score.lo), float(score.hi - score.lo), True)
    else:
        src = (_display_source(score), _NO_TERMS, _NO_TERMS, _NO_TERMS, _NO_TERMS, 0.0, 0.0, 0.0, 0.0, 0.0, False)
    O, C = px["open"], px["close"]
    # high / low are read only by the intraday stops and the target
    H = px["high"] if (exit.take_profit is not None or exit.trail_stop is not None) else O
    L = px["low"] if (exit.stop_loss is not None or exit.atr_stop is not None or exit.trail_stop is not None) else O
    mult = px.regime_multiplier() if risk.regime_sizing else _ONES
    atr_med = px.atr_median() if sizing == SIZING_CODES["atr"] else _ONES
    sizing_args = (float(risk.risk_fraction), float(risk.max_weight), float(risk.kelly_fraction),
                   int(risk.kelly_window), mult, bool(risk.regime_sizing), atr_med)
    rows_n = span.data_end - span.sig_start
    w = m = None
    c_sym, c_entry, c_until = carried_slots(carried, span.sig_start)
    if date_major:
        if capped:
            sid, nsec = _sector_ids(panel)
            mp = -1 if caps.max_positions is None else int(caps.max_positions)
            ms = -1 if caps.max_per_sector is None else int(caps.max_per_sector)
        else:
            sid, nsec, mp, ms = np.full(N, -1, np.int64), 0, -1, -1
        port = (float(costs.per_side), sizing, *sizing_args,
                nan if risk.dd_breaker is None else float(risk.dd_breaker), int(risk.dd_cooloff),
                nan if risk.corr_cap is None else float(risk.corr_cap), int(risk.corr_window))
        cap = rows_n * N // 8 + 16
        while True:  # a retry with the exact count (a trade spans >= 1 session: rows x N always fits)
            out = simulate_nb(O, H, L, C, A, *src, *rule_args, mp, ms, sid, nsec, c_sym, c_entry, c_until, *port, cap)
            if out[0]:
                break
            cap = max(int(out[1]), 2 * cap)
        _, _, n_sig, sym, sig, ent, ext, ep, xp, rsn, sc, w, m = out
    else:
        par = use_parallel(T * N, PARALLEL_MIN_CELLS)
        bounds = _blocks(N) if par else np.array([0, N], dtype=np.int64)
        nk = simulate_symbols_par_nb if par else simulate_symbols_nb
        width = int((bounds[1:] - bounds[:-1]).max())
        cap = rows_n * width // 8 + 16  # a trade spans >= 1 session: rows * width always fits (the retry)
        out = nk(O, H, L, C, A, *src, *rule_args, bounds, cap)
        if not out[0]:
            out = nk(O, H, L, C, A, *src, *rule_args, bounds, int(out[1]))
        _, _, n_sig, sym, sig, ent, ext, ep, xp, rsn, sc = out
        if risk.weighted:
            sl, atr_k, trail = rule_args[5], rule_args[8], rule_args[9]
            w, m = trade_weights_nb(sym, sig, ext, ep, xp, rsn == EXIT_REASONS.index("open_at_end"),
                                    float(costs.per_side), sizing, C, A, atr_med, sl, atr_k, trail,
                                    *sizing_args[:4], mult, bool(risk.regime_sizing))
    if not risk.weighted:
        w = m = None
    elif not risk.regime_sizing:
        m = None
    return Trades(sym, sig, ent, ext, ep, xp, rsn, sc, cost=costs.per_side, weight=w, mult=m,
                  absolute=sizing >= SIZING_CODES["fixed_fractional"]), int(n_sig)
