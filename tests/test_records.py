"""optimizer/study/records.py, the one owner of what a study and its trials store: the record round-trips through
Optuna's user attributes exactly as plain optuna sees them, a study made by another tool reads as empty fields,
trial records keep the documented layout, and the trial helpers (counts, ranking, direction sign) agree by hand."""

from __future__ import annotations

from datetime import datetime

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from optimizer.errors import DataError, ParameterError
from optimizer.study.records import (
    STUDY_KEYS, StudyRecord, TrialRecord, add_reserve_opening, complete_trials, direction_sign, mark_seeded,
    ranked_trials, read_study, read_trial, reserve_log_name, reserve_openings, seeded, trial_counts, window_attrs,
    write_study,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = "[study]\nname = 'rec'\n[space]\nvariant = 'B'\nz_window = { type = 'categorical', choices = [10, 20] }\n"


def _study(direction: str = "maximize") -> optuna.Study:
    return optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction=direction)


def test_study_record_round_trips_through_user_attributes():
    rec = StudyRecord(spec_hash="abc", spec_text=SPEC, spec_name="rec", data_fingerprint="fp", git_commit=None,
                      folds=((0, "2024-01-02", "2024-02-01"), (1, "2024-02-02", "2024-03-01")), span_lo=3, span_hi=90,
                      n_trials_target=7, **window_attrs(2, ("2023-01-03", "2023-06-30"), ("2023-07-03", "2023-08-31"),
                                                        "2023-06-30"))
    st = _study()
    write_study(st, rec)
    attrs = optuna.load_study(study_name=st.study_name, storage=st._storage).user_attrs  # as plain optuna sees it
    assert attrs["folds"] == [[0, "2024-01-02", "2024-02-01"], [1, "2024-02-02", "2024-03-01"]]
    assert attrs["wf_test"] == ["2023-07-03", "2023-08-31"] and attrs["last_session_seen"] == "2023-06-30"
    assert "git_commit" in attrs and attrs["git_commit"] is None  # written even when unknown
    assert set(attrs) == set(STUDY_KEYS)
    assert read_study(st) == rec
    assert rec.spec().name == "rec" and rec.spec().param("z_window").choices == (10, 20)


def test_window_fields_are_stored_only_for_window_studies():
    attrs = StudyRecord(spec_hash="x").to_attrs()
    assert not {"wf_window", "wf_train", "wf_test", "last_session_seen"} & set(attrs)


def test_a_foreign_study_reads_as_empty_fields_and_a_broken_spec_is_a_data_error():
    st = _study()
    st.set_user_attr("something_else", 1)
    rec = read_study(st)
    assert rec == StudyRecord() and rec.spec() is None and rec.folds == ()
    with pytest.raises(DataError, match="no longer parses"):
        StudyRecord(spec_text="[space]\nz_window = 1\n", spec_name="old").spec()


def test_trial_records_keep_the_documented_layout():
    st = _study()
    done = TrialRecord.complete({"hit_rate": 0.6}, [{"hit_rate": 0.5}, {"hit_rate": 0.7}], 1.23456789)
    pruned = TrialRecord.pruned(1, "fold 1: pruner median", [{"hit_rate": 0.1}, {"hit_rate": 0.2}], 0.5)
    for rec in (done, pruned):
        t = st.ask()
        rec.write(t)
        st.tell(t, 1.0)
    t0, t1 = st.get_trials()
    assert t0.user_attrs == {"folds": [{"hit_rate": 0.5}, {"hit_rate": 0.7}],
                             "fold_0": {"hit_rate": 0.5}, "fold_1": {"hit_rate": 0.7},  # the dashboard's, one a fold
                             "metrics": {"hit_rate": 0.6, "duration_s": 1.234568, "pruned_at_fold": None}}
    assert t1.user_attrs["metrics"] == {"pruned_at_fold": 1, "pruned_reason": "fold 1: pruner median", "duration_s": 0.5}
    r1 = read_trial(t1)
    assert (r1.pruned_at_fold, r1.pruned_reason, r1.duration_s, len(r1.folds), r1.config) == (1, "fold 1: pruner median", 0.5, 2, None)
    assert read_trial(t0).pruned_at_fold is None and read_trial(t0).metrics["hit_rate"] == 0.6


def test_a_trial_record_holds_an_effective_configuration_when_given():
    st = _study()
    t = st.ask()
    TrialRecord.complete({}, [], 0.1, config={"variant": "B", "z_window": 20}).write(t)
    st.tell(t, 0.0)
    assert read_trial(st.trials[0]).config == {"variant": "B", "z_window": 20}


def test_foreign_trial_attributes_read_as_empty():
    t = create_trial(value=1.0, params={"b": 60}, distributions={"b": IntDistribution(60, 80)},
                     user_attrs={"metrics": "not a dict", "folds": {"x": 1}})
    r = read_trial(t)
    assert (r.metrics, list(r.folds), r.duration_s, r.pruned_at_fold) == ({}, [], None, None)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_counts_ranking_and_sign_by_hand(direction):
    st = _study(direction)
    dist = {"b": IntDistribution(60, 80)}
    for b, v, state in ((60, 0.3, TrialState.COMPLETE), (65, None, TrialState.PRUNED), (70, 0.9, TrialState.COMPLETE),
                        (75, None, TrialState.FAIL), (80, 0.3, TrialState.COMPLETE)):
        st.add_trial(create_trial(state=state, value=v, params={"b": b}, distributions=dist))
    assert trial_counts(st) == {"complete": 3, "pruned": 1, "failed": 1, "running": 0, "waiting": 0}
    assert [t.number for t in complete_trials(st)] == [0, 2, 4]
    best_first = [t.number for t in ranked_trials(st)]
    assert best_first == ([2, 0, 4] if direction == "maximize" else [0, 4, 2])  # ties: lower number first
    assert direction_sign(st.direction) == (-1.0 if direction == "maximize" else 1.0)
    with pytest.raises(ParameterError):
        direction_sign(optuna.study.StudyDirection.NOT_SET)


def test_ranking_several_objectives_is_the_pareto_front_by_the_first():
    st = optuna.create_study(directions=["maximize", "minimize"])
    for v in ((1.0, 5.0), (2.0, 6.0), (0.5, 9.0), (3.0, 7.0)):
        st.add_trial(create_trial(values=list(v)))
    assert [t.values for t in ranked_trials(st)] == [[3.0, 7.0], [2.0, 6.0], [1.0, 5.0]]


def test_seeding_marker_and_reserve_openings():
    st = _study()
    assert seeded(st) is None
    mark_seeded(st, "phase_a", 5)
    assert seeded(st) == {"from": "phase_a", "n": 5, "trials": [], "space": {}}
    assert reserve_log_name("demo") == "demo-reserve-log"
    assert reserve_openings(st) == []
    assert add_reserve_opening(st, "2024-06-03") == []
    before = add_reserve_opening(st, "2024-06-03")
    assert [o["reserve_start"] for o in before] == ["2024-06-03"]
    assert len(reserve_openings(st)) == 2
    datetime.fromisoformat(reserve_openings(st)[1]["at"])  # an ISO timestamp
