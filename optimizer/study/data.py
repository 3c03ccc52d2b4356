"""What a study reads, built once per process: the panel (only sessions the study may see), its feature
cache, the purged folds and the regime entry mask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimizer.data.store import connect
from optimizer.engine.evaluate import Evaluator
from optimizer.engine.panel import Panel, load_panel
from optimizer.engine.regime_filter import regime_entry_mask
from optimizer.errors import DataError
from optimizer.study.spec import StudySpec
from optimizer.study.splits import FoldSpan, PurgedTimeSeriesSplit, reserve_cutoff
from optimizer.data.universe import resolve_universe


@dataclass
class StudyData:
    """Everything a trial reads, built once per process. ``lo`` .. ``hi``: the span the study optimizes over."""

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

    @property
    def train_dates(self) -> tuple[str, str]:
        d = self.panel.dates
        return str(d[self.lo]), str(d[self.hi - 1])


def load_study_data(spec: StudySpec, db: str | Path) -> tuple[Panel, int]:
    """The spec's universe and date range from the store, and the index where the final reserve starts."""
    db = spec.data.database if (db is None and spec.data.database) else db
    con = connect(db, read_only=True)
    try:
        try:
            avail = [r[0] for r in con.execute("SELECT DISTINCT symbol FROM daily_metrics").fetchall()]
        except Exception as e:  # duckdb CatalogException
            raise DataError(f"{db}: no daily_metrics table ({e.__class__.__name__}); run `accumopt data synth --db {db}` or `accumopt metrics build`") from None
        uni = resolve_universe(spec.data.universe, avail)
        if not uni:
            raise DataError(f"universe {spec.data.universe!r} has no symbols in {db} (it has {len(avail)} symbols)")
        panel = load_panel(con, uni, spec.data.start, spec.data.end)
    finally:
        con.close()
    return panel, reserve_cutoff(len(panel.dates), spec.data.reserve_fraction)


def prepare_data(spec: StudySpec, panel: Panel, lo: int, hi: int, n_splits: int | None = None,
                 embargo: int | None = None) -> StudyData:
    """Truncate the panel at ``hi`` (nothing later is ever visible) and lay the purged folds over [lo, hi).

    ``n_splits`` / ``embargo`` override the spec's [cv] (walk-forward windows use [walkforward] n_splits/embargo).
    """
    if hi - lo < 10:
        raise DataError(f"the study span has {hi - lo} sessions; at least 10 are needed")
    visible = panel.slice(0, hi)
    warm = max(0, spec.max_z_window() - lo)
    cv = PurgedTimeSeriesSplit(
        n_splits=n_splits or spec.cv.n_splits, test_size=None if n_splits else spec.cv.test_size, purge=spec.purge(),
        embargo=spec.embargo() if embargo is None else embargo,
        mode=spec.cv.mode, max_train_size=spec.cv.max_train_size,
        min_train_size=max(spec.cv.min_train_size, warm),
    )
    folds = [FoldSpan(f.fold, f.test_start + lo, f.test_end + lo, f.data_end + lo) for f in cv.fold_spans(hi - lo)]
    ev = Evaluator(visible, min_periods=spec.data.min_periods)
    mask = regime_entry_mask(visible, spec.data.regime)
    return StudyData(spec, visible, ev, folds, mask, lo, hi, visible.fingerprint(), cv.n_splits, cv.embargo)
