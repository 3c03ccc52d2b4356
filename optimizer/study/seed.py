"""Seeding: enqueue the top trials of an earlier study (phase A -> phase B)."""

from __future__ import annotations

from typing import Any

import optuna

from optimizer.errors import SpecError
from optimizer.params import expand_weights
from optimizer.study.records import complete_trials, mark_seeded, ranked_trials, seeded
from optimizer.study.spec import StudySpec

__all__ = ["seed_from_study"]


def seed_from_study(study: optuna.Study, spec: StudySpec, storage: Any) -> list[dict[str, Any]]:
    """Enqueue the top-k trials of ``spec.seed_from.study`` (phase A -> phase B). Returns the enqueued params."""
    if spec.seed_from is None or seeded(study):
        return []
    src = spec.seed_from
    try:
        a = optuna.load_study(study_name=src.study, storage=storage)
    except KeyError:
        raise SpecError("seed_from.study", f"no study named {src.study!r} in the storage; run it first") from None
    if not complete_trials(a):
        raise SpecError("seed_from.study", f"study {src.study!r} has no completed trials to seed from")
    top = ranked_trials(a)[: src.top]
    names = {p.name: p for p in spec.space}
    out = []
    for t in top:
        p = expand_weights(t.params)
        seed = {}
        for k, v in p.items():
            ps = names.get(k)
            if ps is None or ps.kind == "fixed":
                continue
            if ps.kind == "categorical" and v not in ps.choices:
                continue
            if ps.kind in ("int", "float"):
                v = min(max(v, ps.low), ps.high)
                if ps.step:
                    v = ps.low + round((v - ps.low) / ps.step) * ps.step
                    v = int(round(v)) if ps.kind == "int" else round(v, 10)
            seed[k] = v
        study.enqueue_trial(seed, skip_if_exists=True)
        out.append(seed)
    mark_seeded(study, src.study, len(out))
    return out
