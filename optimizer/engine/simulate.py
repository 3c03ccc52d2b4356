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
from optimizer.engine._kernels import (
    PARALLEL_MIN_CELLS, RULE_CODES, simulate_nb, simulate_symbols_nb, simulate_symbols_par_nb, use_parallel,
)
from optimizer.engine.features import as_symbol_major
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreTerms
from optimizer.params import EXIT_RULES, check_fields

__all__ = [
    "ExitParams", "Costs", "Thresholds", "Span", "Caps", "Trades", "simulate", "simulate_counted", "SymbolMajorPrices",
    "EXIT_REASONS",
]

EXIT_REASONS = ("fixed", "first_dist", "2x_consec_dist", "score_decay", "max_days", "time_stop", "stop_loss", "take_profit", "open_at_end")


@dataclass(frozen=True)
class ExitParams:
    """Exit strategy. ``rule`` in fixed | first_dist | 2x_consec_dist | score_decay | hybrid (an exit *name* such as
    ``fixed_10d`` is parsed by ``optimizer.params.parse_exit``; ``Config.from_params`` accepts names).

    fixed needs ``hold_days`` (N sessions), hybrid needs ``max_days``; ``stop_loss`` / ``take_profit`` are fractions
    (0.05 = 5%), ``time_stop`` a maximum number of sessions for any rule.
    """

    rule: str = "first_dist"
    hold_days: int | None = None
    max_days: int | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    time_stop: int | None = None

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


@dataclass(frozen=True, eq=False)
class Trades:
    """Struct of arrays, one element per trade, in kernel order: by symbol then entry (symbol-major kernel) or by
    exit processing (date-major kernel, position caps); use ``to_frame`` for a sorted view."""

    symbol: np.ndarray
    signal_idx: np.ndarray
    entry_idx: np.ndarray
    exit_idx: np.ndarray
    entry_price: np.ndarray
    exit_price: np.ndarray
    exit_reason: np.ndarray
    score: np.ndarray
    cost: float = 0.0
    gross_ret: np.ndarray = field(init=False)
    net_ret: np.ndarray = field(init=False)
    open_at_end: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
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
    use; an ``Evaluator`` keeps one for its panel, so a trial never transposes."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self._fields: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        out = self._fields.get(name)
        if out is None:
            out = self._fields[name] = as_symbol_major(self.panel[name])
        return out

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._fields.values())


def _blocks(N: int) -> np.ndarray:
    """Symbol block bounds of the parallel kernel: one contiguous block per numba thread (the configured maximum:
    ``numba.get_num_threads()`` costs ~0.1 ms per call)."""
    nb = max(1, min(numba.config.NUMBA_NUM_THREADS, N))
    return np.array([N * k // nb for k in range(nb + 1)], dtype=np.int64)


def simulate(
    panel: Panel,
    display: np.ndarray | ScoreTerms,
    thresholds: Thresholds,
    exit: ExitParams,
    costs: Costs,
    span: Span,
    caps: Caps | None = None,
    entry_ok: np.ndarray | None = None,
) -> Trades:
    """Simulate one configuration. Pure; reads ``panel`` arrays, never mutates them.

    ``display`` is the (T x N) display score or its uncombined ``ScoreTerms``. ``entry_ok`` (T,) bool restricts the
    sessions whose close may open a position (regime filters); exits are never filtered.
    """
    return simulate_counted(panel, display, thresholds, exit, costs, span, caps, entry_ok)[0]


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
) -> tuple[Trades, int]:
    """``simulate`` plus the accumulation-signal count of the same pass (``signals.count_signals`` of the display).

    Both kernels read symbol-major (N x T) matrices: the cached terms and ``ScoreTerms.display()`` are stored that
    way (no copy), another display is transposed once. Without caps the symbol-major kernel runs (symbols are
    independent: each symbol's sessions are scanned from contiguous memory, blocks of symbols on all numba threads
    for big panels); with ``ScoreTerms`` it combines each symbol's display row into a small buffer, so no score
    matrix is written. Position caps couple symbols session by session: the date-major kernel. ``prices``: the
    panel's cached ``SymbolMajorPrices`` (else copied per call). ``kernel`` ("date" or "symbol") forces a kernel
    (tests: both give the same trades). One numba specialization per kernel serves every call.
    """
    T, N = panel.shape
    check_param(tuple(score.shape) == (T, N), "display.shape", f"equal to the panel shape {(T, N)}", tuple(score.shape))
    check_param(span.data_end <= T, "span.data_end", f"<= number of sessions {T}", span.data_end)
    ok = np.ones(T, dtype=np.bool_) if entry_ok is None else np.asarray(entry_ok, dtype=np.bool_)
    check_param(ok.shape == (T,), "entry_ok.shape", f"equal to ({T},)", ok.shape)
    capped = caps is not None and (caps.max_positions is not None or caps.max_per_sector is not None)
    check_param(kernel in (None, "date", "symbol") and not (capped and kernel == "symbol"), "kernel",
                "None, 'date' or 'symbol' ('date' when capped)", kernel)
    date_major = capped or kernel == "date"
    fused = isinstance(score, ScoreTerms)
    nan = float("nan")
    rule_args = (
        float(thresholds.buy), float(thresholds.sell), RULE_CODES[exit.rule],
        int(exit.hold_days or -1) if exit.rule == "fixed" else -1,
        int(exit.max_days or -1) if exit.rule == "hybrid" else -1,
        nan if exit.stop_loss is None else float(exit.stop_loss),
        nan if exit.take_profit is None else float(exit.take_profit),
        -1 if exit.time_stop is None else int(exit.time_stop),
        int(span.sig_start), int(span.sig_end), int(span.data_end), ok,
    )
    # both kernels read every matrix symbol-major, indexed [symbol, session]
    sm = as_symbol_major
    if fused:
        src = (_NO_DISPLAY, sm(score.ts), sm(score.tl), sm(score.tp), sm(score.sg),
               float(score.ws), float(score.wl), float(score.wp), float(score.lo), float(score.hi - score.lo), True)
    else:
        src = (_display_source(score), _NO_TERMS, _NO_TERMS, _NO_TERMS, _NO_TERMS, 0.0, 0.0, 0.0, 0.0, 0.0, False)
    px = prices if prices is not None else SymbolMajorPrices(panel)
    O, C = px["open"], px["close"]
    # high / low are read only by the intraday stop and target
    H = px["high"] if exit.take_profit is not None else O
    L = px["low"] if exit.stop_loss is not None else O
    rows = span.data_end - span.sig_start
    if date_major:
        if capped:
            sid, nsec = _sector_ids(panel)
            mp = -1 if caps.max_positions is None else int(caps.max_positions)
            ms = -1 if caps.max_per_sector is None else int(caps.max_per_sector)
        else:
            sid, nsec, mp, ms = np.full(N, -1, np.int64), 0, -1, -1
        cap = rows * N // 8 + 16
        out = simulate_nb(O, H, L, C, *src, *rule_args, mp, ms, sid, nsec, cap)
        if not out[0]:
            out = simulate_nb(O, H, L, C, *src, *rule_args, mp, ms, sid, nsec, int(out[1]))
    else:
        par = use_parallel(T * N, PARALLEL_MIN_CELLS)
        bounds = _blocks(N) if par else np.array([0, N], dtype=np.int64)
        nk = simulate_symbols_par_nb if par else simulate_symbols_nb
        width = int((bounds[1:] - bounds[:-1]).max())
        cap = rows * width // 8 + 16  # a trade spans >= 1 session: rows * width always fits (the retry)
        out = nk(O, H, L, C, *src, *rule_args, bounds, cap)
        if not out[0]:
            out = nk(O, H, L, C, *src, *rule_args, bounds, int(out[1]))
    _, _, n_sig, sym, sig, ent, ext, ep, xp, rsn, sc = out
    return Trades(sym, sig, ent, ext, ep, xp, rsn, sc, cost=costs.per_side), int(n_sig)
