"""Seeding: enqueue the top trials of an earlier study (phase A -> phase B)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from optimizer.errors import SpecError
from optimizer.study.spec import StudySpec, WEIGHT_PRESETS


def seed_from_study(study: optuna.Study, spec: StudySpec, storage) -> list[dict[str, Any]]:
    """Enqueue the top-k trials of ``spec.seed_from.study`` (phase A -> phase B). Returns the enqueued params."""
    if spec.seed_from is None or study.user_attrs.get("seeded"):
        return []
    src = spec.seed_from
    try:
        a = optuna.load_study(study_name=src.study, storage=storage)
    except KeyError:
        raise SpecError("seed_from.study", f"no study named {src.study!r} in the storage; run it first") from None
    done = [t for t in a.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not done:
        raise SpecError("seed_from.study", f"study {src.study!r} has no completed trials to seed from")
    sign = -1 if a.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    top = sorted(done, key=lambda t: sign * t.value)[: src.top]
    names = {p.name: p for p in spec.space}
    out = []
    for t in top:
        p = dict(t.params)
        if "weights" in p:
            ws, wl, wp = WEIGHT_PRESETS[p.pop("weights")]
            p.update(w_short=ws, w_lit=wl, w_price=wp)
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
    study.set_user_attr("seeded", {"from": src.study, "n": len(out)})
    return out
