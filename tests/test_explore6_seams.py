"""Non-default settings across the chain (explore6): what a step decided reaches the next step, and what a command
records or prints about its settings is what it ran with."""

from __future__ import annotations

import json

import optuna

from _cli_helpers import cli, ok
from optimizer.study.records import read_study
from optimizer.study.run import run_study
from optimizer.study.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = """
[study]
name = "target"
[space]
variant = { type = "categorical", choices = ["B", "C"] }
z_window = { type = "categorical", choices = [20, 30] }
buy_threshold = { type = "int", low = 60, high = 75, step = 5 }
exit = "first_dist"
[cv]
n_splits = 2
purge = 20
[objective]
min_trades = 0
[sampler]
name = "random"
seed = 4
[pruner]
name = "none"
[run]
n_trials = 3
"""


def test_a_resume_asking_for_fewer_trials_keeps_the_target(synth_db, tmp_path):
    """`study run SPEC --n-trials 6`, then `study run SPEC` (the spec's 3): the second run runs no trial (the study
    holds 6) and must not record a target of 3 below the 6 trials the study holds (study list showed "target 3"
    beside 6 trials; the walk-forward's cut-back guard reads the same attribute)."""
    spec = parse_spec(TINY)
    url = f"sqlite:///{tmp_path / 's.db'}"
    res = run_study(spec, synth_db, url, n_trials=6)
    assert len(res.study.trials) == 6 and read_study(res.study).n_trials_target == 6
    res = run_study(spec, synth_db, url)  # the spec's n_trials = 3
    assert len(res.study.trials) == 6 and read_study(res.study).n_trials_target == 6
    res = run_study(spec, synth_db, url, n_trials=8)  # asking for more still raises it
    assert len(res.study.trials) == 8 and read_study(res.study).n_trials_target == 8
    rows = json.loads(ok(cli("study", "list", "--storage", url, "--format", "json")).stdout)
    assert [(r["name"], r["n_trials_target"]) for r in rows] == [("target", 8)]
