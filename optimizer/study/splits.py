"""Time-series splitters: purged folds for the objective, walk-forward windows for out-of-sample evaluation.

Like scikit-learn's ``TimeSeriesSplit`` and skfolio's ``WalkForward``: parameters are stored in ``__init__``,
``split`` yields index arrays, and purge / embargo are explicit (in sessions).

Purged CV over a training span of n sessions: n_splits test blocks of ``test_size`` sessions at the end of the span,
consecutive blocks separated by ``purge + embargo`` sessions. A configuration is scored on each test block: signals
inside the block, trades allowed to run ``purge`` sessions past its end (never past the span), so no trade of one
block overlaps the next block and, with ``embargo >= z_window``, no feature window of a block reaches back into the
previous block's trades. Train indices (everything before the block minus the purge) are yielded too, for
estimators that learn (learned regimes); the rule itself has nothing to fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.errors import ParameterError, check_param

__all__ = ["PurgedTimeSeriesSplit", "FoldSpan", "WalkForward", "Window", "reserve_cutoff"]


@dataclass(frozen=True)
class FoldSpan:
    """Test block [test_start, test_end) and data limit (exclusive) for trades opened in it."""

    fold: int
    test_start: int
    test_end: int
    data_end: int


class PurgedTimeSeriesSplit:
    """Forward-only purged/embargoed folds. ``mode='expanding'`` trains on everything before a block,
    ``'rolling'`` on the last ``max_train_size`` sessions."""

    def __init__(
        self,
        n_splits: int = 5,
        test_size: int | None = None,
        purge: int = 0,
        embargo: int = 0,
        mode: str = "expanding",
        max_train_size: int | None = None,
        min_train_size: int = 0,
    ) -> None:
        check_param(isinstance(n_splits, (int, np.integer)) and n_splits >= 1, "n_splits", ">= 1", n_splits)
        check_param(test_size is None or test_size >= 2, "test_size", ">= 2", test_size)
        check_param(purge >= 0, "purge", ">= 0", purge)
        check_param(embargo >= 0, "embargo", ">= 0", embargo)
        if mode not in ("expanding", "rolling"):
            raise ParameterError(f"mode must be one of expanding, rolling, got mode={mode!r}")
        check_param(mode == "expanding" or (max_train_size or 0) >= 1, "max_train_size", ">= 1 for rolling folds", max_train_size)
        check_param(min_train_size >= 0, "min_train_size", ">= 0", min_train_size)
        self.n_splits = int(n_splits)
        self.test_size = test_size
        self.purge = int(purge)
        self.embargo = int(embargo)
        self.mode = mode
        self.max_train_size = max_train_size
        self.min_train_size = int(min_train_size)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def _test_size(self, n: int) -> int:
        gap = self.purge + self.embargo
        avail = n - self.min_train_size - (self.n_splits - 1) * gap
        ts = self.test_size if self.test_size is not None else avail // self.n_splits
        if ts < 2 or self.n_splits * ts + (self.n_splits - 1) * gap + self.min_train_size > n:
            raise ParameterError(
                f"{self.n_splits} folds of test_size={self.test_size or ts} with purge={self.purge}, "
                f"embargo={self.embargo} and min_train_size={self.min_train_size} need more than the "
                f"{n} sessions available: lower n_splits, test_size, purge or embargo, or widen the date range"
            )
        return int(ts)

    def fold_spans(self, n: int) -> list[FoldSpan]:
        ts = self._test_size(n)
        gap = self.purge + self.embargo
        first = n - (self.n_splits * ts + (self.n_splits - 1) * gap)
        out = []
        for k in range(self.n_splits):
            a = first + k * (ts + gap)
            b = a + ts
            out.append(FoldSpan(k, a, b, min(b + self.purge, n)))
        return out

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train_idx, test_idx). ``X`` is anything with a length, or an int."""
        n = int(X) if isinstance(X, (int, np.integer)) else len(X)
        for f in self.fold_spans(n):
            tr_end = max(0, f.test_start - self.purge)
            tr_start = 0 if self.mode == "expanding" else max(0, tr_end - int(self.max_train_size or 0))
            yield np.arange(tr_start, tr_end), np.arange(f.test_start, f.test_end)

    def __repr__(self) -> str:
        return (f"PurgedTimeSeriesSplit(n_splits={self.n_splits}, test_size={self.test_size}, purge={self.purge}, "
                f"embargo={self.embargo}, mode={self.mode!r})")


@dataclass(frozen=True)
class Window:
    """One walk-forward window as panel row indices: train [train_start, train_end), purge gap, test [test_start, test_end)."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


class WalkForward:
    """Rolling (or anchored) train/test windows with a purge gap, in sessions or calendar months.

    Defaults: train 6 months, test 2 months, step 2 months, so test windows tile the data without overlap.
    The purge gap (sessions) is cut from the end of each train window; with purge >= the longest holding period
    (and in-sample trades limited to the train window) no in-sample trade reaches the test window.
    """

    def __init__(
        self,
        train: int = 6,
        test: int = 2,
        step: int | None = None,
        unit: str = "months",
        purge: int = 0,
        anchored: bool = False,
    ) -> None:
        if unit not in ("months", "sessions"):
            raise ParameterError(f"unit must be one of months, sessions, got unit={unit!r}")
        check_param(train >= 1, "train", ">= 1", train)
        check_param(test >= 1, "test", ">= 1", test)
        step = test if step is None else step
        check_param(step >= 1, "step", ">= 1", step)
        check_param(purge >= 0, "purge", ">= 0", purge)
        self.train, self.test, self.step, self.unit, self.purge, self.anchored = int(train), int(test), int(step), unit, int(purge), bool(anchored)

    def split(self, dates: Sequence) -> list[Window]:
        d = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
        n = len(d)
        if self.unit == "sessions":
            bounds = lambda k: k  # noqa: E731
            starts = list(range(0, n))
            def edge(start: int, length: int) -> int:
                return min(start + length, n)
        else:
            months = d.to_period("M")
            uniq = months.unique()
            first_idx = {m: int(np.searchsorted(months.asi8, m.ordinal)) for m in uniq}
            month_starts = [first_idx[m] for m in uniq] + [n]
            def edge(start_month: int, length: int) -> int:
                j = start_month + length
                return month_starts[min(j, len(month_starts) - 1)]
            starts = list(range(len(uniq)))
            bounds = lambda k: month_starts[k]  # noqa: E731
        out: list[Window] = []
        k = 0
        i = 0
        while k < len(starts):
            tr0 = bounds(0) if self.anchored else bounds(k)
            te0 = edge(k, self.train)
            te1 = edge(k + self.train, self.test) if self.unit == "months" else te0 + self.test
            tr1 = te0 - self.purge  # the purge gap is cut from the end of the train window
            if self.unit == "sessions" and te1 > n:
                break
            if self.unit == "months" and k + self.train + self.test > len(starts):
                break
            if te1 <= te0 or tr1 - tr0 < 2:
                break
            out.append(Window(i, tr0, tr1, te0, te1))
            i += 1
            k += self.step
        if not out:
            raise ParameterError(
                f"walk-forward needs at least train={self.train} + test={self.test} {self.unit} (+ purge {self.purge} sessions); "
                f"the data has {n} sessions"
            )
        return out


def reserve_cutoff(n: int, fraction: float) -> int:
    """Index of the first session of the final reserve (the last ``fraction`` of sessions)."""
    check_param(0 <= fraction < 1, "reserve_fraction", "in [0, 1)", fraction)
    return n - int(round(n * fraction))
