"""A deterministically slow objective for the process-level tests (``tests/test_study_workers.py``).

``SlowRankExcess`` is ``composite_rank_excess`` (same values) that sleeps ``ACCUMOPT_TEST_FOLD_SLEEP`` seconds
(default 0) before reporting each fold. A test that must SIGKILL a study in the middle of a trial sets it for the
process it kills, so every trial lasts long enough to be caught running, whatever the machine's load; the resumed
process runs without it, at full speed. A spec names it as ``objective.name = "_slow_objective:SlowRankExcess"``
with the tests folder on PYTHONPATH.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from typing import Any

from objectives.builtin import CompositeRank, CompositeRankExcess

__all__ = ["SlowRankExcess", "SlowRank", "SLEEP_ENV", "SLOW_NAME", "slowed", "unslowed"]

SLEEP_ENV = "ACCUMOPT_TEST_FOLD_SLEEP"
SLOW_NAME = "_slow_objective:SlowRankExcess"


def slowed(spec_text: str) -> str:
    """``spec_text`` (TOML) with its objective ``composite_rank_excess`` replaced by ``SlowRankExcess``."""
    old = 'name = "composite_rank_excess"'
    assert spec_text.count(old) == 1, f"the spec must name {old!r} once"
    return spec_text.replace(old, f'name = "{SLOW_NAME}"')


def unslowed(result: Mapping[str, Any], plain: Mapping[str, Any]) -> dict[str, Any]:
    """A walk-forward result (``to_dict()`` / result.json) of a :func:`slowed` spec, with the two settings the
    slowing itself changes (``settings.objective.name`` and ``settings.spec_hash``: the spec text differs) set to
    ``plain``'s, the same run of the plain spec, after checking they are exactly the slowed and the plain ones.
    Every other figure is compared as it is."""
    out = copy.deepcopy(dict(result))
    s, p = out["settings"], plain["settings"]
    assert (s["objective"]["name"], p["objective"]["name"]) == (SLOW_NAME, "composite_rank_excess")
    assert s["spec_hash"] != p["spec_hash"]
    s["objective"]["name"], s["spec_hash"] = p["objective"]["name"], p["spec_hash"]
    return out


class SlowRankExcess(CompositeRankExcess):
    name = "slow_rank_excess"

    def fold_value(self, m: Mapping[str, float]) -> float:
        time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
        return super().fold_value(m)


class SlowRank(CompositeRank):
    """``composite_rank`` (same values), sleeping ``ACCUMOPT_TEST_FOLD_SLEEP`` seconds before each fold: the
    multi-worker tests (tests/test_postgres.py) give each trial a floor so that two workers started a few seconds
    apart on a loaded machine still run trials at the same time."""

    name = "slow_rank"

    def fold_value(self, m: Mapping[str, float]) -> float:
        time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
        return super().fold_value(m)
