"""Optuna studies over the engine: spec -> search space -> trial objective -> storage -> run, plus the stored
records, seeding, replay and inspection. Import the pieces from here or from their modules."""

from optimizer.study.data import StudyData, load_study_data, load_universe_panel, prepare_data
from optimizer.study.records import trial_counts
from optimizer.study.run import StudyRunResult, git_commit, open_study, run_study
from optimizer.study.seed import seed_from_study
from optimizer.study.storage import make_storage
from optimizer.study.trial import TrialObjective

__all__ = [
    "StudyData", "TrialObjective", "load_study_data", "load_universe_panel", "prepare_data", "open_study",
    "run_study", "make_storage", "StudyRunResult", "git_commit", "trial_counts", "seed_from_study",
]
