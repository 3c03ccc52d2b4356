"""Optuna studies over the engine: spec -> search space -> trial objective -> storage -> run, plus the stored
records, seeding, replay and inspection. Import the pieces from here or from their modules.

Importing the package imports none of its modules: a name of ``__all__`` loads its module the first time it is
used (PEP 562), so ``make_storage`` (opening a study storage) comes without the engine, numba and the
objectives."""

from __future__ import annotations

from optimizer._lazy import lazy_exports

# name -> the module that defines it (its home; re-exported here, loaded on first use)
_EXPORTS = {
    **dict.fromkeys(("StudyData", "load_study_data", "load_universe_panel", "prepare_data"), "optimizer.study.data"),
    "trial_counts": "optimizer.study.records",
    **dict.fromkeys(("StudyRunResult", "git_commit", "open_study", "run_study"), "optimizer.study.run"),
    "seed_from_study": "optimizer.study.seed",
    "make_storage": "optimizer.study.storage",
    "TrialObjective": "optimizer.study.trial",
}

__all__ = [
    "StudyData", "TrialObjective", "load_study_data", "load_universe_panel", "prepare_data", "open_study",
    "run_study", "make_storage", "StudyRunResult", "git_commit", "trial_counts", "seed_from_study",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
