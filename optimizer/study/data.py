"""What a study reads, built once per process: the panel (only sessions the study may see), its feature
cache, the purged folds (forward folds, or the groups of a combinatorial purged CV) and the regime entry mask; and
the one loader of a universe's panel from the store."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.data.calendar import as_date, session_days
from optimizer.data.store import connect, table_columns, table_exists
from optimizer.data.splitcheck import suspect_splits
from optimizer.data.symbols import is_context_symbol
from optimizer.data.universe import is_all, refuse_listed_without_rows, resolve_universe
from optimizer.engine.evaluate import Evaluator
from optimizer.engine.panel import Panel, load_panel
from optimizer.engine.regime_filter import regime_entry_mask
from optimizer.errors import DataError, ParameterError, check_param
from optimizer.paths import CACHE_ENV, resolve_db
from optimizer.study.spec import StudySpec
from optimizer.study.splits import CombinatorialPurgedCV, FoldSpan, FoldsDoNotFit, PurgedTimeSeriesSplit, reserve_cutoff

__all__ = ["StudyData", "load_universe_panel", "universe_symbols", "load_study_data", "prepare_data", "priced_before",
           "span_lines"]


@dataclass
class StudyData:
    """Everything a trial reads, built once per process. ``lo`` .. ``hi``: the span the study optimizes over.
    ``cv``: the splitter that laid the folds, over rows [lo, hi) (a ``CombinatorialPurgedCV`` in ``cpcv`` mode: its
    groups are the folds, and its splits and paths serve PBO)."""

    spec: StudySpec
    panel: Panel
    evaluator: Evaluator
    folds: list[FoldSpan]
    entry_ok: np.ndarray | None
    lo: int
    hi: int
    fingerprint: str
    cv_n_splits: int = 0
    cv_embargo: int = 0
    cv: PurgedTimeSeriesSplit | CombinatorialPurgedCV | None = None
    reserve_start: str | None = None  # first session of the spec's final reserve (None: no reserve)
    study_end: str | None = None  # last session of the spec's data, final reserve included (``--final`` stops there)

    @property
    def train_dates(self) -> tuple[str, str]:
        d = self.panel.dates
        return str(d[self.lo]), str(d[self.hi - 1])


def _priced(con: Any, start: str | None, end: str | None) -> tuple[list[str], int] | None:
    """(the daily_metrics symbols with a price, a close, in [start, end]; how many of its symbols with a row there
    have none), or None when the store has no close to tell them apart (a daily_metrics without the column and no
    prices_daily)."""
    cols = table_columns(con, "daily_metrics")
    where, params = ["1=1"], []
    for op, d in ((">=", start), ("<=", end)):
        if d is not None:
            where.append(f"m.date {op} CAST(? AS DATE)")
            params.append(str(d)[:10])
    if "close" in cols:
        close = "m.close"
        join = ""
    elif table_exists(con, "prices_daily"):
        close, join = "p.close", " LEFT JOIN prices_daily p ON p.date = m.date AND p.symbol = m.symbol"
    else:
        return None
    rows = con.execute(f"SELECT m.symbol, count({close}) > 0 FROM daily_metrics m{join} WHERE {' AND '.join(where)} "
                       "GROUP BY m.symbol ORDER BY 1", params).fetchall()
    priced = [s for s, p in rows if p]
    return priced, sum(1 for s, p in rows if not p and not is_context_symbol(s))


def _universe_symbols(con: Any, db: str | Path, universe: Any, start: str | None = None,
                      end: str | None = None) -> tuple[list[str], int]:
    """The symbols ``universe`` resolves to in the store's daily_metrics, and how many of its symbols ``all`` left
    out for want of a price in [start, end] (``all`` is every symbol the tool can trade: a FINRA symbol with no
    price has no return, no entry and no exit, and would only be an empty column of the panel; 0 for any other
    universe). THE one place a universe is resolved against a store."""
    if not table_exists(con, "daily_metrics"):
        raise DataError(f"{db} has no daily_metrics table; run `accumopt metrics build --db {db}` "
                        f"(or `accumopt data synth --db {db}`) first")
    avail = [r[0] for r in con.execute("SELECT DISTINCT symbol FROM daily_metrics ORDER BY 1").fetchall()]
    if not avail:
        raise DataError(f"daily_metrics in {db} is empty; run `accumopt metrics build --db {db}` first")
    unpriced = 0
    if is_all(universe):
        got = _priced(con, start, end)
        if got is not None:
            priced, unpriced = got
            if not priced:
                span = f" between {start or 'its first'} and {end or 'its last session'}"
                raise DataError(f"universe 'all' has no symbol with a price in daily_metrics of {db}{span}: it holds "
                                f"{len(avail)} symbol(s), none with a close (ingest prices: `accumopt ingest prices "
                                f"FILE --db {db}`, then `accumopt metrics build --db {db}`)")
            avail = priced
    syms = resolve_universe(list(universe) if isinstance(universe, tuple) else universe, avail,
                            f"daily_metrics of {db}")
    if not syms:
        raise DataError(f"universe {universe!r} has no symbol in daily_metrics of {db}; "
                        f"it holds {len(avail)}: {', '.join(avail[:12])}{' ...' if len(avail) > 12 else ''}")
    return syms, unpriced


def universe_symbols(db: str | Path, universe: Any, start: str | None = None, end: str | None = None) -> list[str]:
    """The symbols ``universe`` (a tier name, ``all``, a comma list or a list of symbols) resolves to in the
    daily_metrics of the store at ``db`` (opened read-only); ``all``: its symbols with a price in [start, end]
    (any session when not given); DataErrors as ``load_universe_panel``."""
    con = connect(db, read_only=True)
    try:
        return _universe_symbols(con, db, universe, start, end)[0]
    finally:
        con.close()


def load_universe_panel(db: str | Path, universe: Any, start: str | None = None, end: str | None = None) -> Panel:
    """The ``daily_metrics`` panel of ``universe`` (a tier name, ``all``, a comma list or a list of symbols) in
    [start, end] from the store at ``db`` (opened read-only). A store without daily_metrics, an empty one and a
    universe with no symbol in it are DataErrors saying what to run; so is a listed universe naming a symbol the
    store or the span lacks. ``all`` runs on the symbols with a price in the span; how many it left out is the
    panel's ``coverage.unpriced`` (recorded with a study's coverage, stated by ``unpriced_note``). The splits its
    symbols' data shows in the span that the store does not record are ``coverage.suspect_splits``
    (``data.splitcheck``; the commands warn of them with ``suspect_split_lines``).

    A process keeps the last panels it loaded (``_PanelCache``): the same store file in the same state (checked
    while the store is open, so no other process can change it meanwhile), universe and span give a copy of the
    panel loaded before (~3 ms of CPU instead of ~90 ms for the test stores' 33 symbols x 374 sessions); any write
    to the store (an ingest, a metrics build) changes its state and the panel is loaded afresh."""
    con = connect(db, read_only=True)
    try:
        key = _PANELS.key(db, universe, start, end)
        if key is not None and (hit := _PANELS.get(key)) is not None:
            return hit
        syms, unpriced = _universe_symbols(con, db, universe, start, end)
        panel = load_panel(con, syms, start, end)
        refuse_listed_without_rows(universe, syms, panel.symbols, f"daily_metrics of {db}", panel.dates[0],
                                   panel.dates[-1])
        suspect = tuple(suspect_splits(con, panel.symbols, panel.dates[0], panel.dates[-1]))
    finally:
        con.close()
    if (unpriced or suspect) and panel.coverage is not None:
        panel = replace(panel, coverage=replace(panel.coverage, unpriced=unpriced, suspect_splits=suspect))
    if key is not None:
        _PANELS.put(key, panel)
    return panel


def _own_copy(panel: Panel) -> Panel:
    """``panel`` with arrays of its own where they are writable (a caller may write into its matrices); read-only
    arrays (pandas' market columns) and the rest (tuples, frozen coverage) are shared."""
    def own(a: np.ndarray) -> np.ndarray:
        return a.copy() if a.flags.writeable else a

    return replace(panel, dates=own(panel.dates), fields={k: own(v) for k, v in panel.fields.items()},
                   market={k: own(v) for k, v in panel.market.items()})


def _store_state(db: str | Path) -> tuple | None:
    """What identifies the content of the store file ``db`` while it is open read-only (no process can write it
    then): its file's identity, size, times and first 12 KiB (DuckDB's headers: a checkpoint changes them), and its
    write-ahead log's (a commit appends to it). None for ``:memory:`` or a file that cannot be read."""
    p = str(db)
    if p == ":memory:":
        return None
    try:
        st = os.stat(p)
        with open(p, "rb") as f:
            head = hashlib.blake2b(f.read(3 * 4096), digest_size=16).digest()
        try:
            w = os.stat(p + ".wal")
            wal: tuple | None = (w.st_ino, w.st_size, w.st_mtime_ns, w.st_ctime_ns)
        except FileNotFoundError:
            wal = None
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, head, wal


class _PanelCache:
    """The panels ``load_universe_panel`` loaded last in this process, by store state, universe and span; at most
    ``BUDGET`` bytes of matrices (the least recently used dropped first), none larger than ``LARGEST`` (a
    full-universe panel is not kept). A caller gets a copy (``_own_copy``), never the kept panel. Off with env
    ``ACCUMOPT_CACHE=off`` and under mutation testing (env ``MUTANT_UNDER_TEST``: a panel kept from the
    unmutated code would hide a mutant of the loaders)."""

    BUDGET = 256 * 2**20
    LARGEST = 64 * 2**20

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple, tuple[Panel, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # threads of one process may load panels at once

    @staticmethod
    def _on() -> bool:
        return (os.environ.get(CACHE_ENV) or "").strip().lower() != "off" and "MUTANT_UNDER_TEST" not in os.environ

    def key(self, db: str | Path, universe: Any, start: object, end: object) -> tuple | None:
        if not self._on():
            return None
        state = _store_state(db)
        if state is None:
            return None
        uni = (type(universe).__name__, tuple(universe) if isinstance(universe, (list, tuple)) else universe)
        k = (state, uni, (type(start).__name__, start), (type(end).__name__, end))
        try:
            hash(k)
        except TypeError:  # a universe or a date of a type that cannot be a key: loaded every time
            return None
        return k

    def get(self, key: tuple) -> Panel | None:
        with self._lock:
            got = self._kept.get(key)
            if got is None:
                return None
            self._kept.move_to_end(key)
        return _own_copy(got[0])

    def put(self, key: tuple, panel: Panel) -> None:
        size = panel.dates.nbytes + sum(v.nbytes for v in panel.fields.values()) + sum(
            v.nbytes for v in panel.market.values())
        if size > self.LARGEST:
            return
        kept = _own_copy(panel)
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._kept[key] = (kept, size)
            self._bytes += size
            while self._bytes > self.BUDGET:
                _, (_, n) = self._kept.popitem(last=False)
                self._bytes -= n

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0


_PANELS = _PanelCache()


def load_study_data(spec: StudySpec, db: str | Path | None) -> tuple[Panel, int]:
    """The spec's universe and date range from the store, and the index where the final reserve starts.
    ``db`` None: env ACCUMOPT_DB, else the spec's [data].database, else the default (``optimizer.paths``)."""
    db = resolve_db(db, spec.data.database)
    try:
        panel = load_universe_panel(db, spec.data.universe, spec.data.start, spec.data.end)
    except DataError as e:  # a listed universe the store or the span lacks: named by the spec's file and key
        if not str(e).startswith("universe lists "):
            raise
        raise DataError(f"{f'{spec.path}: ' if spec.path else ''}[data.universe] {str(e)[len('universe '):]}") from None
    cut = reserve_cutoff(len(panel.dates), spec.data.reserve_fraction)
    if is_all(spec.data.universe):
        panel = priced_before(panel, cut, f"universe 'all' of {db}")
    return panel, cut


def span_lines(spec: StudySpec, panel: Panel) -> list[str]:
    """What a study (``study run``, the walk-forward) says once of its span when the spec's ``[data] start`` /
    ``end`` reach past the sessions the store holds for its universe (``panel``: ``load_study_data``'s): the study
    runs on the store's sessions, not on the span written. Only when NYSE sessions lie between the key's date and
    the store's first / last session (an end on the Saturday after the last session is no news). The panel's
    coverage does not say it: it describes the sessions loaded, not the span asked for."""
    if not len(panel.dates):
        return []
    first, last = (np.datetime64(panel.dates[0], "D").item(), np.datetime64(panel.dates[-1], "D").item())
    out = []
    start, end = as_date(spec.data.start, "data.start"), as_date(spec.data.end, "data.end")
    if start is not None and start < first and len(session_days(start, first)) > 1:
        out.append(f"[data] start = {start} is before the store's first session {first} (of daily_metrics for the "
                   "universe): the study's data starts there")
    if end is not None and end > last and len(session_days(last, end)) > 1:
        out.append(f"[data] end = {end} is after the store's last session {last} (of daily_metrics for the "
                   "universe): the study's data ends there")
    return out


def priced_before(panel: Panel, stop: int, what: str = "universe 'all'") -> Panel:
    """``panel`` without the symbols that have no close in its sessions [0, stop): universe ``all`` is decided on
    the sessions a study may see, so a symbol first priced inside the final reserve (a listing of its months) is
    not in the study's universe (its column would be empty there, and ``backtest --params``, which resolves
    ``all`` over the trial's span, would find the data changed) and is counted with the symbols ``all`` left out
    for want of a price (``coverage.unpriced``). Every later step of a trial keeps that universe: ``backtest
    --final`` of its parameters runs on the same symbols. DataError when none is left."""
    keep = np.isfinite(panel["close"][:stop]).any(axis=0)
    if keep.all():
        return panel
    if not keep.any():
        raise DataError(f"{what} has no symbol with a price before session {stop} (the final reserve or the "
                        "trial's data end); ingest prices for the span")
    out = panel.subset([s for s, k in zip(panel.symbols, keep) if k])
    if out.coverage is not None:
        gone = sum(1 for s, k in zip(panel.symbols, keep) if not k and not is_context_symbol(s))
        out = replace(out, coverage=replace(out.coverage, unpriced=out.coverage.unpriced + gone))
    return out


def _folds_do_not_fit(spec: StudySpec, e: FoldsDoNotFit, cv: PurgedTimeSeriesSplit, window: bool, warm: int,
                      own_embargo: bool) -> str:
    """The refusal of folds that do not fit, in the spec's keys: each value with the key it comes from (as the
    spec sets it, or not set and where its value comes from) and the keys whose change alone makes them fit
    (``FoldsDoNotFit.fits``). ``window``: a walk-forward window's inner folds ([walkforward] n_splits, no test
    size); ``own_embargo``: the embargo was given ([walkforward] embargo)."""
    def key(section: str, name: str) -> str:
        return f"[{section}] {name}"

    src = {  # parameter -> (section, key, why its value is what it is when the spec does not set it)
        "n_splits": ("walkforward" if window else "cv", "n_splits", "the default"),
        "test_size": ("cv", "test_size", None),
        "purge": ("cv", "purge", "the longest hold the space allows"),
        "embargo": ("walkforward" if own_embargo else "cv", "embargo",
                    "the default" if own_embargo else "the largest z_window the space allows"),
        "min_train_size": ("cv", "min_train_size", "the default"),
    }
    from_warmup = warm > spec.cv.min_train_size  # the z-scores' warm-up, not the key, sets min_train_size
    told = []
    for p in ("n_splits", "test_size", "purge", "embargo", "min_train_size"):
        v = getattr(cv, p)
        section, name, why = src[p]
        if p == "test_size" and v is None:
            continue  # derived: the blocks share what is left (the message says "at least 2 sessions")
        if p == "min_train_size" and from_warmup:
            told.append(f"min_train_size {v} (the z-scores' warm-up: the largest z_window minus the sessions before "
                        "the span)")
        elif spec.sets(section, name):
            told.append(f"{key(section, name)} = {v}")
        else:
            told.append(f"{key(section, name)} not set: {v}, {why}")
    fits = [f"{key(*src[p][:2])} <= {v}" for p, v in e.fits.items() if not (p == "min_train_size" and from_warmup)]
    what = "its inner folds" if window else "the study's folds"
    more = "a longer [walkforward] train" if window else "a wider [data] start .. end"
    k = cv.n_splits
    blocks = f"{k} test blocks of " + (f"{cv.test_size} sessions" if cv.test_size is not None else "at least 2 sessions")
    return (f"{what} do not fit: {k} purged folds need {e.need} sessions ({blocks}, purge + embargo between "
            f"them, min_train_size before them), {'its train span' if window else 'the span'} has {e.n}; "
            f"{'; '.join(told)}: they fit with "
            f"{', or '.join(fits) + ' alone, or with ' if fits else ''}{more}")


def prepare_data(spec: StudySpec, panel: Panel, lo: int, hi: int, n_splits: int | None = None,
                 embargo: int | None = None) -> StudyData:
    """Truncate the panel at ``hi`` (nothing later is ever visible) and lay the purged folds over [lo, hi).
    ``panel``: every session of the spec's data (its last ``reserve_fraction`` is the final reserve, whose first
    and last sessions the data records).

    ``n_splits`` / ``embargo`` override the spec's [cv] (walk-forward windows use [walkforward] n_splits/embargo).
    With ``[cv] mode = "cpcv"`` the folds are the ``n_groups`` groups of a ``CombinatorialPurgedCV`` (after the
    feature warm-up); ``n_splits``, when given, must then equal n_groups.
    """
    if hi - lo < 10:
        raise DataError(f"the study span has {hi - lo} sessions; at least 10 are needed")
    visible = panel.slice(0, hi)
    warm = max(0, spec.max_z_window() - lo)
    emb = spec.embargo() if embargo is None else embargo
    cv: PurgedTimeSeriesSplit | CombinatorialPurgedCV
    if spec.cv.mode == "cpcv":
        check_param(n_splits in (None, spec.cv.n_groups), "n_splits",
                    f"None or [cv] n_groups={spec.cv.n_groups} with [cv] mode = cpcv", n_splits)
        cv = CombinatorialPurgedCV(spec.cv.n_groups, spec.cv.n_test_groups, purge=spec.purge(), embargo=emb,
                                   warmup=warm)
        n_folds = cv.n_groups
    else:
        cv = PurgedTimeSeriesSplit(
            n_splits=n_splits or spec.cv.n_splits, test_size=None if n_splits else spec.cv.test_size,
            purge=spec.purge(), embargo=emb, mode=spec.cv.mode, max_train_size=spec.cv.max_train_size,
            min_train_size=max(spec.cv.min_train_size, warm),
        )
        n_folds = cv.n_splits
    try:
        spans = cv.fold_spans(hi - lo)
    except FoldsDoNotFit as e:
        raise ParameterError(_folds_do_not_fit(spec, e, cv, n_splits is not None, warm, embargo is not None)) from None
    folds = [FoldSpan(f.fold, f.test_start + lo, f.test_end + lo, f.data_end + lo) for f in spans]
    ev = Evaluator(visible, min_periods=spec.data.min_periods)
    mask = regime_entry_mask(visible, spec.data.regime)
    cut = reserve_cutoff(len(panel.dates), spec.data.reserve_fraction)
    reserve_start = str(panel.dates[cut])[:10] if cut < len(panel.dates) else None
    return StudyData(spec, visible, ev, folds, mask, lo, hi, visible.fingerprint(), n_folds, cv.embargo, cv,
                     reserve_start, str(panel.dates[-1])[:10])
