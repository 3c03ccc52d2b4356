"""Phase A -> Phase B: when seeds a study took from ``[seed_from]`` are pruned in it, the run says so (found by
explore19: Phase B's wider z-window space made its folds shorter, 3 of 5 Phase A seeds were pruned for too few
trades, and the run said nothing, so the user believed Phase B had started from Phase A's best)."""

from __future__ import annotations

import optuna
import pytest

from optimizer.study.records import TrialRecord, mark_seeded
from optimizer.study.run import run_study
from optimizer.study.seed import pruned_seeds_note
from optimizer.study.spec import parse_spec

from test_study import spec_text


def test_the_note_names_the_pruned_seeds_and_why():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    mark_seeded(study, "phase-a", 3, [4, 7, 9])
    for x in (0.1, 0.2, 0.9):
        study.enqueue_trial({"x": x})

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if x < 0.5:
            TrialRecord.pruned(1, f"too few trades ({int(x * 10)} < 5)", [], 0.01).write(trial)
            raise optuna.TrialPruned()
        return x

    assert pruned_seeds_note(study) is None  # nothing run yet
    study.optimize(objective, n_trials=5)  # 3 seeds, then 2 drawn trials (which do not count as seeds)
    note = pruned_seeds_note(study)
    assert note.startswith("[seed_from] 2 of the 3 seeds from 'phase-a' were pruned in this study (")
    assert "trial 0 at fold 1: too few trades (1 < 5); trial 1 at fold 1: too few trades (2 < 5)" in note
    unseeded = optuna.create_study()
    unseeded.enqueue_trial({"x": 0.1})
    unseeded.optimize(objective, n_trials=1)
    assert pruned_seeds_note(unseeded) is None  # an enqueued trial of a study that was not seeded


def test_a_seeded_run_whose_seeds_are_pruned_says_so(synth_db, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_study(parse_spec(spec_text("phase-a", sampler="random", sampler_opts="", n_trials=3)), synth_db, url)
    b = spec_text("phase-b", sampler="random", sampler_opts="", n_trials=2, min_trades=10**6)
    res = run_study(parse_spec(b + '[seed_from]\nstudy = "phase-a"\ntop = 2\n'), synth_db, url)
    assert res.counts["pruned"] == 2
    (note,) = [w for w in res.warnings if w.startswith("[seed_from] 2 of the 2 seeds from 'phase-a' were pruned")]
    assert "too few trades" in note or "trades" in note, note
