"""Time-series splitters: purged folds for the objective, walk-forward windows for out-of-sample evaluation.

Like scikit-learn's ``TimeSeriesSplit`` and skfolio's ``WalkForward``: parameters are stored in ``__init__``,
``split`` yields index arrays, and purge / embargo are explicit (in sessions).

Purged CV over a training span of n sessions: n_splits test blocks of ``test_size`` sessions at the end of the span,
consecutive blocks separated by ``purge + embargo`` sessions. A configuration is scored on each test block: signals
inside the block, trades allowed to run ``purge`` sessions past its end (never past the span), so no trade of one
block overlaps the next block and, with ``embargo >= z_window``, no feature window of a block reaches back into the
previous block's trades. Train indices (everything before the block minus the purge) are yielded too, for
estimators that learn (learned regimes); the rule itself has nothing to fit.

Combinatorial purged CV (:class:`CombinatorialPurgedCV`, López de Prado 2018, ch. 12, as skfolio defines it): the
span is cut into N contiguous groups; each of the C(N, k) splits tests k groups and trains on the others, minus
``purge`` sessions before each test block and ``purge + embargo`` after it; the test groups recombine into
C(N, k)·k/N full backtest paths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import math
from itertools import combinations

import numpy as np
import pandas as pd

from optimizer.errors import ParameterError, check_param

__all__ = ["PurgedTimeSeriesSplit", "FoldSpan", "FoldsDoNotFit", "WalkForward", "Window", "reserve_cutoff",
           "CombinatorialPurgedCV"]


@dataclass(frozen=True)
class FoldSpan:
    """Test block [test_start, test_end) and data limit (exclusive) for trades opened in it."""

    fold: int
    test_start: int
    test_end: int
    data_end: int


class FoldsDoNotFit(ParameterError):
    """Purged folds that need more sessions than the span has. ``need`` / ``n``: sessions needed and available;
    ``fits``: for each parameter that alone can make them fit (the others as they are), the largest value that
    does (``n_splits``, ``test_size`` when it was given, ``purge``, ``embargo``, ``min_train_size``). The message
    names the parameters; a caller that knows where each comes from (``study.data.prepare_data``: the spec's keys)
    words its own from these fields."""

    def __init__(self, message: str, need: int, n: int, fits: dict[str, int]) -> None:
        super().__init__(message)
        self.need, self.n, self.fits = need, n, fits


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

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        return self.n_splits

    def fits(self, n: int) -> dict[str, int]:
        """For each parameter that alone makes the folds fit ``n`` sessions (the others as they are), the largest
        value that does: ``n_splits``, ``test_size`` (only when given: a derived size is already the largest),
        ``purge``, ``embargo``, ``min_train_size``; a parameter whose change cannot make them fit is left out."""
        k, p, e, m = self.n_splits, self.purge, self.embargo, self.min_train_size
        ts = self.test_size if self.test_size is not None else 2  # a derived block has at least 2 sessions
        gap = p + e
        out: dict[str, int] = {}
        if (kk := (n - m + gap) // (ts + gap)) >= 1 and kk < k:
            out["n_splits"] = int(kk)
        if self.test_size is not None and (t := (n - m - (k - 1) * gap) // k) >= 2 and t < ts:
            out["test_size"] = int(t)
        if k > 1:
            g = (n - m - k * ts) // (k - 1)  # the largest purge + embargo between blocks
            if 0 <= g - e < p:
                out["purge"] = int(g - e)
            if 0 <= g - p < e:
                out["embargo"] = int(g - p)
        if 0 <= (mm := n - k * ts - (k - 1) * gap) < m:
            out["min_train_size"] = int(mm)
        return out

    def needed(self) -> int:
        """The fewest sessions the folds need (test blocks of ``test_size``, else of 2 sessions)."""
        ts = self.test_size if self.test_size is not None else 2
        return self.n_splits * ts + (self.n_splits - 1) * (self.purge + self.embargo) + self.min_train_size

    def _test_size(self, n: int) -> int:
        gap = self.purge + self.embargo
        avail = n - self.min_train_size - (self.n_splits - 1) * gap
        ts = self.test_size if self.test_size is not None else avail // self.n_splits
        if ts < 2 or self.n_splits * ts + (self.n_splits - 1) * gap + self.min_train_size > n:
            k, fits = self.n_splits, self.fits(n)
            blocks = f"test_size={self.test_size}" if self.test_size is not None else "at least 2 sessions"
            how = ", or ".join(f"{p} <= {v}" for p, v in fits.items())
            gaps = f", {k - 1} gap{'s' if k > 2 else ''} of purge={self.purge} + embargo={self.embargo}" if k > 1 else ""
            raise FoldsDoNotFit(
                f"{k} purged folds need {self.needed()} sessions, {n} are available ({k} test blocks of {blocks}"
                f"{gaps}, min_train_size={self.min_train_size} before them): they fit with "
                f"{how + ' alone, or with ' if how else ''}more sessions", self.needed(), n, fits)
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

    def split(self, X: object, y: object = None, groups: object = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train_idx, test_idx). ``X`` is anything with a length, or an int."""
        n = int(X) if isinstance(X, (int, np.integer)) else len(X)
        for f in self.fold_spans(n):
            tr_end = max(0, f.test_start - self.purge)
            tr_start = 0 if self.mode == "expanding" else max(0, tr_end - int(self.max_train_size or 0))
            yield np.arange(tr_start, tr_end), np.arange(f.test_start, f.test_end)

    def __repr__(self) -> str:
        return (f"PurgedTimeSeriesSplit(n_splits={self.n_splits}, test_size={self.test_size}, purge={self.purge}, "
                f"embargo={self.embargo}, mode={self.mode!r})")


def short_train_rule(train: int, unit: str, purge: int, left: int) -> str:
    """Why a walk-forward whose first train window keeps ``left`` (< 2) sessions after the purge is refused; the
    text completes "train ..." (WalkForward) and "[walkforward.train] ..." (the spec loader)."""
    return (f"must leave at least 2 sessions after the purge (the purge gap is cut from the end of each train "
            f"window): train={train} {unit} minus purge={purge} sessions leaves {left} sessions after the purge; "
            f"lengthen train or shorten purge")


def train_after_purge(train: int, unit: str, purge: int) -> int | None:
    """Sessions a train window keeps after the purge when that follows from the settings alone (unit = "sessions":
    train - purge); None for months, whose length in sessions depends on the calendar."""
    return int(train) - int(purge) if unit == "sessions" else None


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
        left = train_after_purge(self.train, unit, self.purge)
        if left is not None and left < 2:  # known without the data (the spec loader refuses it too)
            raise ParameterError("train " + short_train_rule(self.train, unit, self.purge, left))

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
        short_train = None  # sessions the first window keeps to train on after the purge, when too few
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
                if not out and te1 > te0:
                    short_train = tr1 - tr0
                break
            out.append(Window(i, tr0, tr1, te0, te1))
            i += 1
            k += self.step
        if not out and short_train is not None:
            raise ParameterError("train " + short_train_rule(self.train, self.unit, self.purge, short_train))
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


_MAX_CPCV_SPLITS = 100_000


class CombinatorialPurgedCV:
    """Combinatorial purged cross-validation (López de Prado 2018, *Advances in Financial Machine Learning*, ch. 12),
    with skfolio's definitions (``skfolio.model_selection.CombinatorialPurgedCV``).

    The sessions [``warmup``, n) are cut into ``n_groups`` contiguous groups of n' // n_groups sessions (the last
    group takes the remainder). Split j (of C(n_groups, n_test_groups), in ``itertools.combinations`` order) tests
    the groups ``test_groups[j]`` and trains on the others, minus, around every contiguous block of test groups,
    ``purge`` sessions before it (trades opened there would run into the test block) and ``purge + embargo``
    sessions after it (the test block's trades run ``purge`` sessions past its end; features look back
    ``embargo``). The first ``warmup`` sessions (feature history) belong to no group and are never trained on.

    Paths: every group is tested in C(n_groups - 1, n_test_groups - 1) splits; path p takes, for each group, its
    p-th such split (in split order), so there are ``n_paths = C(n_groups, n_test_groups) · n_test_groups /
    n_groups`` full-length out-of-sample paths. ``path_ids()[j, i]`` is the path of split j's i-th test group;
    ``paths()[p, g]`` is the split that supplies group g on path p.

    ``split(X)`` yields ``(train_idx, [test_idx of each test group])`` like skfolio; ``fold_spans(n)`` gives one
    :class:`FoldSpan` per group (data limit ``min(end + purge, n)``), what an objective evaluates: a rule with
    nothing to fit scores a group the same in every split, so each group is evaluated once and the splits differ
    only in which groups select a configuration (PBO / path statistics, ``validate._pbo.cpcv_pbo``).
    """

    def __init__(self, n_groups: int = 6, n_test_groups: int = 2, purge: int = 0, embargo: int = 0,
                 warmup: int = 0) -> None:
        isint = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)  # noqa: E731
        check_param(isint(n_groups) and n_groups >= 3, "n_groups", "an integer >= 3", n_groups)
        check_param(isint(n_test_groups) and 1 <= n_test_groups < n_groups, "n_test_groups",
                    f"an integer in [1, n_groups={n_groups})", n_test_groups)
        check_param(isint(purge) and purge >= 0, "purge", "an integer >= 0", purge)
        check_param(isint(embargo) and embargo >= 0, "embargo", "an integer >= 0", embargo)
        check_param(isint(warmup) and warmup >= 0, "warmup", "an integer >= 0", warmup)
        n_splits = math.comb(int(n_groups), int(n_test_groups))
        check_param(n_splits <= _MAX_CPCV_SPLITS, "n_test_groups",
                    f"such that C(n_groups, n_test_groups) <= {_MAX_CPCV_SPLITS:,} splits (got {n_splits:,} with "
                    f"n_groups={n_groups})", n_test_groups)
        self.n_groups, self.n_test_groups = int(n_groups), int(n_test_groups)
        self.purge, self.embargo, self.warmup = int(purge), int(embargo), int(warmup)

    # -- combinatorics (independent of the data) --
    @property
    def n_splits(self) -> int:
        return math.comb(self.n_groups, self.n_test_groups)

    @property
    def n_paths(self) -> int:
        return self.n_splits * self.n_test_groups // self.n_groups

    def get_n_splits(self, X: object = None, y: object = None, groups: object = None) -> int:
        return self.n_splits

    @property
    def test_groups(self) -> np.ndarray:
        """(n_splits, n_test_groups): the groups each split tests."""
        return np.array(list(combinations(range(self.n_groups), self.n_test_groups)), dtype=np.int64)

    def paths(self) -> np.ndarray:
        """(n_paths, n_groups): the split that supplies each group on each path."""
        tg = self.test_groups
        out = np.empty((self.n_paths, self.n_groups), dtype=np.int64)
        for g in range(self.n_groups):
            out[:, g] = np.flatnonzero((tg == g).any(axis=1))
        return out

    def path_ids(self) -> np.ndarray:
        """(n_splits, n_test_groups): the path each test group of each split belongs to."""
        out = np.empty((self.n_splits, self.n_test_groups), dtype=np.int64)
        for p, row in enumerate(self.paths()):
            for g, j in enumerate(row):
                out[j, list(self.test_groups[j]).index(g)] = p
        return out

    # -- sessions --
    def group_bounds(self, n: int) -> list[tuple[int, int]]:
        """[start, end) of each group over n sessions."""
        span = int(n) - self.warmup
        size = span // self.n_groups
        gap = self.purge + self.embargo
        if size < 2 or gap >= size - 1:
            raise ParameterError(
                f"{self.n_groups} groups over {span} sessions (n={n}, warmup={self.warmup}) are {size} sessions "
                f"each; purge + embargo = {gap} must be < group size - 1: lower n_groups, purge or embargo, or "
                f"widen the date range")
        starts = [self.warmup + g * size for g in range(self.n_groups)]
        ends = starts[1:] + [int(n)]
        return list(zip(starts, ends))

    def fold_spans(self, n: int) -> list[FoldSpan]:
        """One FoldSpan per group: signals in the group, trades allowed ``purge`` sessions past its end."""
        return [FoldSpan(g, a, b, min(b + self.purge, int(n))) for g, (a, b) in enumerate(self.group_bounds(n))]

    def train_test_masks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) boolean masks of shape (n_splits, n) (test = the union of the split's test groups)."""
        bounds = self.group_bounds(n)
        group_of = np.full(int(n), -1, dtype=np.int64)
        for g, (a, b) in enumerate(bounds):
            group_of[a:b] = g
        tg = self.test_groups
        test = np.zeros((self.n_splits, int(n)), dtype=bool)
        for j in range(self.n_splits):
            test[j] = np.isin(group_of, tg[j])
        train = (group_of >= 0)[None, :] & ~test
        for j in range(self.n_splits):
            d = np.diff(test[j].astype(np.int8))
            for s in np.flatnonzero(d == 1) + 1:  # a test block starts at s: purge [s - purge, s)
                train[j, max(0, s - self.purge):s] = False
            for e in np.flatnonzero(d == -1) + 1:  # a test block ends before e: drop [e, e + purge + embargo)
                train[j, e:e + self.purge + self.embargo] = False
        return train, test

    def split(self, X: object, y: object = None,
              groups: object = None) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """Yield ``(train_idx, [test_idx of each test group])``. ``X`` is anything with a length, or an int."""
        n = int(X) if isinstance(X, (int, np.integer)) else len(X)
        bounds = self.group_bounds(n)
        train, _ = self.train_test_masks(n)
        for j, tg in enumerate(self.test_groups):
            yield np.flatnonzero(train[j]), [np.arange(*bounds[g]) for g in tg]

    def __repr__(self) -> str:
        return (f"CombinatorialPurgedCV(n_groups={self.n_groups}, n_test_groups={self.n_test_groups}, "
                f"purge={self.purge}, embargo={self.embargo}, warmup={self.warmup})")
