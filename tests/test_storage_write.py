"""``_BudgetRDBStorage.write_finished_trial``: the single-worker SQLite path's one-transaction write of a finished
trial stores exactly what Optuna's own template path (``create_new_trial(template_trial=...)``) stores, in Optuna's
tables, so ``optuna.load_study`` (and optuna-dashboard) read the same trial back."""

from __future__ import annotations

import math
from datetime import datetime

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from optimizer.study.storage import make_storage


def _frozen(number: int, state: TrialState, values, inter) -> FrozenTrial:
    return FrozenTrial(
        number=number, state=state, value=None, values=values,
        datetime_start=datetime(2026, 1, 2, 3, 4, 5, 678901), datetime_complete=datetime(2026, 1, 2, 3, 4, 6),
        params={"x": 0.25, "n": 7, "c": "b"},
        distributions={"x": FloatDistribution(0, 1), "n": IntDistribution(1, 9), "c": CategoricalDistribution(["a", "b"])},
        user_attrs={"metrics": {"hit_rate": 0.5, "list": [1, 2]}, "folds": [{"a": None}]},
        system_attrs={"fixed_params": {"c": "b"}}, intermediate_values=inter, trial_id=-1)


def _view(t: FrozenTrial) -> tuple:
    inter = {k: ("nan" if math.isnan(v) else v) for k, v in t.intermediate_values.items()}
    return (t.number, t.state, t.params, t.distributions, t.values, inter, t.user_attrs, t.system_attrs,
            t.datetime_start, t.datetime_complete)


@pytest.mark.parametrize("state,values", [(TrialState.COMPLETE, [1.5]), (TrialState.COMPLETE, [float("inf")]),
                                          (TrialState.PRUNED, None), (TrialState.FAIL, None)])
def test_write_finished_trial_equals_optunas_template_path(tmp_path, state, values):
    inter = {0: 0.1, 1: float("nan"), 2: float("-inf")}
    read = []
    for kind in ("fast", "template"):
        st = make_storage(f"sqlite:///{tmp_path / (kind + '.db')}")
        study = optuna.create_study(study_name="s", storage=st)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # a trial stored before
        fr = _frozen(5, state, values, inter)
        if kind == "fast":
            st.write_finished_trial(study._study_id, fr)
        else:
            st.create_new_trial(study._study_id, template_trial=fr)
        read.append(optuna.load_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / (kind + '.db')}",
                                                                            read_only=True)).get_trials()[-1])
    assert _view(read[0]) == _view(read[1])
    assert read[0].number == 1  # the count of the study's trials stored before it


def test_write_finished_trial_refuses_a_running_trial(tmp_path):
    st = make_storage(f"sqlite:///{tmp_path / 'r.db'}")
    study = optuna.create_study(study_name="s", storage=st)
    with pytest.raises(ValueError, match="finished trial"):
        st.write_finished_trial(study._study_id, _frozen(0, TrialState.RUNNING, None, {}))
