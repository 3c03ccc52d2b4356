"""The spec's stand-in studies (``optimizer.study.spec._dry_runs``): the sampler and pruner a spec names are built
and used once on a stand-in study, so bad option values fail when the spec is read. A process that reads the same
spec again runs them once; a failure is never remembered; what cannot be remembered exactly runs every time."""

from __future__ import annotations

import optuna
import pytest

from optimizer.errors import SpecError
from optimizer.study import spec as specmod
from optimizer.study.registry import dry_run

SPACE = ("[space]\nw_short = { type = 'float', low = 0.4, high = 0.7, step = 0.1 }\n"
         "z_window = { type = 'int', low = 10, high = 40, step = 5 }\nvariant = { type = 'categorical', "
         "choices = ['B', 'C'] }\n")


@pytest.fixture
def runs(monkeypatch) -> list[tuple]:
    """Every stand-in run: (part, sampler class, pruner class, distributions, directions, steps)."""
    seen: list[tuple] = []

    def spy(part, sampler, pruner, dists, dirs, steps, **kw):
        seen.append((part, type(sampler.base).__name__, type(pruner).__name__, dict(dists), list(dirs), steps))
        return dry_run(part, sampler, pruner, dists, dirs, steps, **kw)

    monkeypatch.setattr(specmod, "dry_run", spy)
    return seen


def test_the_same_spec_read_again_runs_its_stand_ins_once(runs):
    text = SPACE + "[sampler]\nname = 'tpe'\nseed = 3\nn_startup_trials = 5\n[pruner]\nname = 'median'\n"
    first = specmod.parse_spec(text)
    assert [r[0] for r in runs] == ["sampler", "pruner"]
    # the stand-ins ran on the spec's own distributions (read back from the remembered key: the same values)
    assert runs[0][3] == {p.name: p.distribution() for p in first.space if p.kind != "fixed"}
    assert runs[0][1:3] == ("TPESampler", "NopPruner") and runs[1][1:3] == ("RandomSampler", "MedianPruner")
    assert specmod.parse_spec(text) == first and len(runs) == 2  # read again: not run again
    assert specmod.parse_spec(text, stored=True) == first and len(runs) == 2
    # any other sampler or pruner setting, space or fold count is another combination: run
    for other in (text.replace("seed = 3", "seed = 4"), text.replace("n_startup_trials = 5", "n_startup_trials = 6"),
                  text.replace("'median'", "'percentile'\npercentile = 40.0"), text.replace("'C'", "'D'"),
                  text + "[cv]\nn_splits = 3\n"):
        n = len(runs)
        specmod.parse_spec(other)
        assert len(runs) == n + 2, other


def test_a_spec_whose_options_fail_when_used_is_refused_every_time(runs):
    text = SPACE + "[sampler]\nname = 'tpe'\nn_ei_candidates = 0\n"
    msgs = []
    for _ in range(2):
        with pytest.raises(SpecError, match="its options fail when used") as e:
            specmod.parse_spec(text)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] and [r[0] for r in runs] == ["sampler", "sampler"]  # not remembered: run again


def test_options_a_json_text_cannot_hold_exactly_run_every_time(runs):
    text = SPACE + "[sampler]\nname = 'tpe'\nprior_weight = nan\n"  # NaN: no exact JSON
    outcomes = []
    for _ in range(2):
        try:
            specmod.parse_spec(text)
            outcomes.append("accepted")
        except SpecError as e:
            outcomes.append(str(e))
    assert outcomes[0] == outcomes[1] and [r[0] for r in runs].count("sampler") == 2


def test_optuna_reads_the_remembered_distributions_back_exactly():
    """The key holds each distribution as Optuna's own JSON; read back, each equals the spec's (mixed-type
    choices, stepped floats, log ranges)."""
    for d in (optuna.distributions.CategoricalDistribution([1, "a", None, 2.5, True]),
              optuna.distributions.FloatDistribution(0.1, 0.7, step=0.1),
              optuna.distributions.FloatDistribution(1e-4, 0.3, log=True),
              optuna.distributions.IntDistribution(10, 40, step=5)):
        back = optuna.distributions.json_to_distribution(optuna.distributions.distribution_to_json(d))
        assert back == d and repr(back) == repr(d)
