"""Combinatorial purged CV (optimizer/study/splits.CombinatorialPurgedCV) and PBO / paths from it
(optimizer/validate/_pbo.cpcv_pbo). Oracles: skfolio's documented splits, the purge/embargo rule checked index by
index, the split and path counts of López de Prado (2018, ch. 12), and CSCV's PBO, which CPCV reproduces with
k = N/2 test groups and no purge."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest

from optimizer.errors import ParameterError
from optimizer.study import load_study_data, make_storage
from optimizer.study.data import prepare_data
from optimizer.study.run import run_study
from optimizer.study.spec import StudySpec, parse_spec
from optimizer.study.splits import CombinatorialPurgedCV, FoldSpan
from optimizer.validate._pbo import cpcv_pbo, probability_of_backtest_overfitting
from optimizer.validate.walkforward import pbo_matrix, run_walkforward


def _as_lists(cv, n):
    return [(tr.tolist(), [t.tolist() for t in te]) for tr, te in cv.split(n)]


def test_splits_match_skfolio_documented_examples():
    g0, g1, g2 = list(range(0, 4)), list(range(4, 8)), list(range(8, 12))
    assert _as_lists(CombinatorialPurgedCV(3, 2), 12) == [(g2, [g0, g1]), (g1, [g0, g2]), (g0, [g1, g2])]
    assert _as_lists(CombinatorialPurgedCV(3, 2, purge=1), 12) == [
        ([9, 10, 11], [g0, g1]), ([5, 6], [g0, g2]), ([0, 1, 2], [g1, g2])]
    assert _as_lists(CombinatorialPurgedCV(3, 2, embargo=1), 12) == [
        ([9, 10, 11], [g0, g1]), ([5, 6, 7], [g0, g2]), ([0, 1, 2, 3], [g1, g2])]


@pytest.mark.parametrize("n_groups,k,purge,embargo,warmup,n", [
    (6, 2, 5, 3, 0, 240), (8, 3, 10, 0, 20, 500), (5, 1, 4, 4, 7, 103), (10, 5, 2, 6, 0, 311)])
def test_no_train_index_within_purge_or_embargo_of_a_test_index(n_groups, k, purge, embargo, warmup, n):
    cv = CombinatorialPurgedCV(n_groups, k, purge=purge, embargo=embargo, warmup=warmup)
    splits = list(cv.split(n))
    assert len(splits) == cv.n_splits == cv.get_n_splits() == math.comb(n_groups, k)
    for train, tests in splits:
        test = np.concatenate(tests)
        assert np.intersect1d(train, test).size == 0
        assert train.min(initial=n) >= warmup and test.min() >= warmup
        for t in test:  # every test session: no train session within purge before or purge + embargo after
            before = train[(train < t) & (train >= t - purge)]
            after = train[(train > t) & (train <= t + purge + embargo)]
            assert before.size == 0 and after.size == 0, (t, before, after)
        # and nothing else is dropped: train = grouped sessions - test - the purge/embargo zones
        zone = set()
        for t in test:
            zone.update(range(max(warmup, t - purge), t))
            zone.update(range(t + 1, min(n, t + purge + embargo + 1)))
        expect = sorted(set(range(warmup, n)) - set(test.tolist()) - zone)
        assert train.tolist() == expect


@pytest.mark.parametrize("n_groups,k", [(6, 2), (8, 3), (10, 5), (5, 1), (7, 6)])
def test_number_of_paths_and_path_assignment(n_groups, k):
    cv = CombinatorialPurgedCV(n_groups, k)
    n_paths = math.comb(n_groups, k) * k // n_groups
    assert cv.n_paths == n_paths == math.comb(n_groups - 1, k - 1)
    paths, ids, tg = cv.paths(), cv.path_ids(), cv.test_groups
    assert paths.shape == (n_paths, n_groups) and ids.shape == (cv.n_splits, k)
    for p in range(n_paths):
        for g in range(n_groups):
            j = paths[p, g]
            assert g in tg[j]                                   # the split supplying g on path p tests g
            assert ids[j, list(tg[j]).index(g)] == p            # and path_ids agrees
    # every (split, test group) pair lies on exactly one path
    pairs = sorted((int(paths[p, g]), g) for p in range(n_paths) for g in range(n_groups))
    assert pairs == sorted((j, int(g)) for j in range(cv.n_splits) for g in tg[j])


def test_fold_spans_and_group_bounds():
    cv = CombinatorialPurgedCV(4, 2, purge=3, embargo=2, warmup=10)
    assert cv.group_bounds(53) == [(10, 20), (20, 30), (30, 40), (40, 53)]  # the last group takes the remainder
    assert cv.fold_spans(53) == [FoldSpan(0, 10, 20, 23), FoldSpan(1, 20, 30, 33), FoldSpan(2, 30, 40, 43),
                                 FoldSpan(3, 40, 53, 53)]
    assert "n_groups=4" in repr(cv)


def test_cpcv_validation():
    with pytest.raises(ParameterError, match="n_groups must be an integer >= 3"):
        CombinatorialPurgedCV(2, 1)
    with pytest.raises(ParameterError, match="n_test_groups must be an integer in"):
        CombinatorialPurgedCV(6, 6)
    with pytest.raises(ParameterError, match="purge must be"):
        CombinatorialPurgedCV(6, 2, purge=-1)
    with pytest.raises(ParameterError, match="n_test_groups must be such that"):
        CombinatorialPurgedCV(40, 20)
    with pytest.raises(ParameterError, match="purge \\+ embargo = 9 must be < group size - 1"):
        list(CombinatorialPurgedCV(6, 2, purge=5, embargo=4).split(60))


# ---- PBO and paths ---------------------------------------------------------------------------------------------

def test_cpcv_pbo_is_cscv_with_half_the_groups_tested_and_no_purge():
    perf = np.random.default_rng(3).normal(0.0, 0.01, (160, 25))
    for s in (4, 8):
        cscv = probability_of_backtest_overfitting(perf, n_blocks=s)
        cp = cpcv_pbo(perf, CombinatorialPurgedCV(s, s // 2))
        assert cp.pbo.pbo == cscv.pbo
        np.testing.assert_allclose(np.sort(cp.pbo.logits), np.sort(cscv.logits))
        assert cp.pbo.n_combinations == cscv.n_combinations and cp.n_splits == math.comb(s, s // 2)


def test_cpcv_pbo_planted_and_null():
    rng = np.random.default_rng(5)
    perf = rng.normal(0.0, 0.01, (300, 20))
    null = cpcv_pbo(perf, CombinatorialPurgedCV(6, 2, purge=3, embargo=2))
    assert 0.25 < null.pbo.pbo < 0.8
    perf[:, 4] += 0.004
    planted = cpcv_pbo(perf, CombinatorialPurgedCV(6, 2, purge=3, embargo=2))
    assert planted.pbo.pbo == 0.0 and (planted.pbo.selected == 4).all()
    assert planted.prob_path_loss == 0.0 and planted.path_metric_median > 0.2
    assert (planted.path_configs == 4).all()


def test_cpcv_paths_stitch_the_selected_configurations():
    rng = np.random.default_rng(8)
    perf = rng.normal(0.0, 0.01, (130, 6))
    cv = CombinatorialPurgedCV(5, 2, purge=2, warmup=5)
    res = cpcv_pbo(perf, cv, metric="mean")
    assert res.path_returns.shape == (125, cv.n_paths) and res.n_paths == 4
    bounds = cv.group_bounds(130)
    for p in range(cv.n_paths):
        for g, (a, b) in enumerate(bounds):
            j = cv.paths()[p, g]
            assert res.path_configs[p, g] == res.pbo.selected[j]
            np.testing.assert_array_equal(res.path_returns[a - 5:b - 5, p], perf[a:b, res.pbo.selected[j]])
    np.testing.assert_allclose(res.path_metric, res.path_returns.mean(axis=0))
    # the selection uses train rows only: configuration 2 is best everywhere except on group 0's sessions
    perf2 = perf.copy()
    perf2[:, 2] += 0.01
    perf2[5:30, 2] -= 1.0
    sel = cpcv_pbo(perf2, cv, metric="mean").pbo.selected
    trains_on_g0 = [j for j, tg in enumerate(cv.test_groups) if 0 not in tg]
    assert all(sel[j] != 2 for j in trains_on_g0)
    assert all(sel[j] == 2 for j in range(cv.n_splits) if j not in trains_on_g0)


def test_cpcv_pbo_validation():
    with pytest.raises(ParameterError, match="cv must be a CombinatorialPurgedCV"):
        cpcv_pbo(np.zeros((50, 3)), object())
    with pytest.raises(ParameterError, match="perf must be all finite"):
        cpcv_pbo(np.full((50, 3), np.nan), CombinatorialPurgedCV(5, 2))


# ---- [cv] mode = "cpcv" in a study and a walk-forward ---------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
CPCV_CV = '[cv]\nmode = "cpcv"\nn_groups = 5\nn_test_groups = 2\npurge = 5\nembargo = 3\n'


def _cpcv_spec(extra: str = "") -> StudySpec:
    text = (ROOT / "studies" / "demo.toml").read_text()
    start, end = text.index("[cv]"), text.index("[objective]")
    return parse_spec(text[:start] + CPCV_CV + extra + "\n" + text[end:], path="cpcv.toml")


def test_cpcv_spec_lays_its_groups_as_the_studys_folds(null_db, tmp_path):
    spec = _cpcv_spec()
    assert (spec.cv.mode, spec.cv.n_groups, spec.cv.n_test_groups, spec.purge(), spec.embargo()) == ("cpcv", 5, 2, 5, 3)
    panel, reserve = load_study_data(spec, null_db)
    lo, hi = 40, reserve
    data = prepare_data(spec, panel, lo, hi)
    cv = data.cv
    assert isinstance(cv, CombinatorialPurgedCV)
    assert (cv.n_groups, cv.n_test_groups, cv.purge, cv.embargo, cv.warmup) == (5, 2, 5, 3, 0)  # z-window 30 < lo
    assert data.cv_n_splits == 5 and data.cv_embargo == 3
    assert [(f.test_start, f.test_end, f.data_end) for f in data.folds] == [
        (a + lo, b + lo, min(b + 5, hi - lo) + lo) for a, b in cv.group_bounds(hi - lo)]
    assert data.folds[0].test_start == lo and data.folds[-1].test_end == hi  # the groups tile the span
    first = prepare_data(spec, panel, 0, hi)  # feature warm-up: the first 30 sessions belong to no group
    assert first.cv.warmup == 30 and first.folds[0].test_start == 30
    with pytest.raises(ParameterError, match="n_splits must be None or \\[cv\\] n_groups=5"):
        prepare_data(spec, panel, lo, hi, n_splits=3)
    assert prepare_data(spec, panel, lo, hi, n_splits=5).folds == data.folds  # what a replay passes back
    run = run_study(spec, None, f"journal:{tmp_path / 's.log'}", n_trials=4, data=data, name="cpcv-study")
    done = [t for t in run.study.trials if t.state.name == "COMPLETE"]
    assert done and all(sorted(t.intermediate_values) == [0, 1, 2, 3, 4] for t in done)  # one report per group


def test_walkforward_with_cpcv_computes_pbo_from_its_paths(null_db, tmp_path):
    """Each window's study scores the CPCV groups of its train span, and its PBO is that of the CPCV splits (paths
    = C(5, 2) x 2 / 5 = 4), the same number cpcv_pbo gives on the window's configuration matrix."""
    spec = _cpcv_spec()
    storage = f"journal:{tmp_path / 'wf.log'}"
    res = run_walkforward(spec, null_db, storage, n_trials=6, out_dir=None)
    assert res.stats["pbo_method"] == "cpcv"
    assert all((w.cpcv is not None) == math.isfinite(w.pbo) for w in res.windows)  # else skipped, with a reason
    with_pbo = [w for w in res.windows if w.cpcv]
    assert len(with_pbo) >= 2 and len(res.stats["cpcv"]["windows"]) == len(with_pbo)
    w = with_pbo[0]
    assert w.cpcv["n_splits"] == 10 and w.cpcv["n_paths"] == 4 and len(w.cpcv["path_sharpe"]) == 4
    panel, _ = load_study_data(spec, null_db)
    data = prepare_data(spec, panel, w.window.train_start, w.window.train_end, None, spec.walkforward.embargo)
    study = optuna.load_study(study_name=w.study_name, storage=make_storage(storage))
    cv = CombinatorialPurgedCV(5, 2, purge=5, embargo=spec.walkforward.embargo)
    assert w.pbo == cpcv_pbo(pbo_matrix(data, study), cv).pbo.pbo
    assert res.to_dict()["stats"]["pbo_method"] == "cpcv"
