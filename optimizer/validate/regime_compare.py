"""Pooled vs per-regime-filtered vs regime-conditional, out of sample (issue 16, "regime-conditional weights").

From one spec (e.g. ``studies/regime_conditional.toml``) three ways to use the market regime are walked forward on
the same windows, data, objective and trial budget:

* ``pooled``: the spec without its regime-conditional parameters (one set of weights and thresholds for every
  session; ``[data] regime = "ALL"``);
* ``filtered RISK_ON`` / ``TRANSITIONAL`` / ``RISK_OFF``: the pooled spec restricted to one regime
  (``[data] regime``: entries only on that regime's closes), one walk-forward per regime, and ``filtered (all)``:
  their out-of-sample trades together (each regime traded by its own winner);
* ``conditional``: the spec as written (weights / thresholds per regime in one study, one pass per trial).

Each row is the stitched out-of-sample result of a walk-forward (``validate.walkforward``): closed trades, hit rate,
mean net and excess return per trade, the HAC t of the excess, the account's Sharpe and whether the verdict
supports an edge. ``filtered (all)`` pools the three regimes' closed trades (trade-weighted means; no t / Sharpe:
their accounts are separate). A regime whose walk-forward cannot run (e.g. too few sessions of it to complete a
trial) is a row with its reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from optimizer.errors import AccumoptError, SpecError
from optimizer.params import PARAMS, REGIME_SUFFIXES
from optimizer.study.spec import StudySpec, parse_spec
from optimizer.validate.walkforward import run_walkforward

__all__ = ["REGIME_PARAMS", "COMPARISON_COLUMNS", "RegimeVariants", "regime_variants", "compare_regimes"]

REGIME_PARAMS: tuple[str, ...] = tuple(n for n, p in PARAMS.items() if p.group == "regime")
COMPARISON_COLUMNS: tuple[str, ...] = ("approach", "closed_trades", "hit_rate", "avg_return", "avg_excess_return",
                                       "excess_t", "portfolio_sharpe", "supported", "note")


@dataclass(frozen=True)
class RegimeVariants:
    pooled: StudySpec
    filtered: dict[str, StudySpec]
    conditional: StudySpec


def _variant(doc: dict[str, Any], name: str, regime: str, drop_regime_params: bool = True) -> StudySpec:
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items()}
    d["study"] = {**d.get("study", {}), "name": name}
    d["run"] = {**d.get("run", {}), "study_name": name}
    d["data"] = {**d.get("data", {}), "regime": regime}
    if drop_regime_params:
        d["space"] = {k: v for k, v in d.get("space", {}).items() if k not in REGIME_PARAMS}
    return parse_spec(tomli_w.dumps(d))


def regime_variants(spec: StudySpec) -> RegimeVariants:
    """The pooled, per-regime-filtered and conditional specs of ``spec`` (study names ``<name>-pooled``,
    ``<name>-RISK_ON`` ..., and ``spec`` itself); a spec without regime-conditional parameters is refused."""
    doc = tomllib.loads(spec.source)
    if not any(k in REGIME_PARAMS for k in doc.get("space", {})):
        raise SpecError("space", f"declares no regime-conditional parameter (one of {', '.join(REGIME_PARAMS)}): "
                                 "nothing to compare with the pooled study")
    if doc.get("data", {}).get("regime", "ALL") != "ALL":
        raise SpecError("data.regime", "must be ALL for a regime comparison (the filtered studies set it)")
    name = spec.run.study_name
    return RegimeVariants(
        pooled=_variant(doc, f"{name}-pooled", "ALL", True),
        filtered={lab: _variant(doc, f"{name}-{lab}", lab, True) for lab in REGIME_SUFFIXES.values()},
        conditional=spec,  # the spec itself: its walk-forward is the same run as `accumopt walkforward SPEC`
    )


def _row(approach: str, wf: Any) -> dict[str, Any]:
    o = wf.oos
    return {"approach": approach, "closed_trades": int(o.get("closed_trades", 0)), "hit_rate": o.get("hit_rate"),
            "avg_return": o.get("avg_return"), "avg_excess_return": o.get("avg_excess_return"),
            "excess_t": o.get("excess_t"), "portfolio_sharpe": o.get("portfolio_sharpe"),
            "supported": bool(wf.verdict.supported), "note": ""}


def _failed(approach: str, err: AccumoptError) -> dict[str, Any]:
    return {"approach": approach, "closed_trades": 0, "hit_rate": np.nan, "avg_return": np.nan,
            "avg_excess_return": np.nan, "excess_t": np.nan, "portfolio_sharpe": np.nan, "supported": False,
            "note": f"not run: {str(err)[:160]}"}


def compare_regimes(spec: StudySpec, db: str | Path, storage_url: str | None = None, n_trials: int | None = None,
                    progress: bool = False) -> pd.DataFrame:
    """Walk-forward the pooled, filtered and conditional variants of ``spec`` (module docstring); one row each
    (``COMPARISON_COLUMNS``), plus ``filtered (all)``."""
    v = regime_variants(spec)
    rows = [_row("pooled", run_walkforward(v.pooled, db, storage_url, progress=progress, n_trials=n_trials))]
    parts = []
    for lab, s in v.filtered.items():
        try:
            r = _row(f"filtered {lab}", run_walkforward(s, db, storage_url, progress=progress, n_trials=n_trials))
        except AccumoptError as e:  # e.g. a regime too rare for any trial to complete: a row with the reason
            r = _failed(f"filtered {lab}", e)
        rows.append(r)
        parts.append(r)
    n = np.array([p["closed_trades"] for p in parts], dtype=float)
    mean = lambda k: float(np.nansum([p[k] * w for p, w in zip(parts, n) if w > 0]) / n.sum()) if n.sum() else np.nan  # noqa: E731
    rows.append({"approach": "filtered (all)", "closed_trades": int(n.sum()), "hit_rate": mean("hit_rate"),
                 "avg_return": mean("avg_return"), "avg_excess_return": mean("avg_excess_return"),
                 "excess_t": np.nan, "portfolio_sharpe": np.nan, "supported": False,
                 "note": "the three regimes' closed OOS trades together (trade-weighted means)"})
    rows.append(_row("conditional", run_walkforward(v.conditional, db, storage_url, progress=progress,
                                                    n_trials=n_trials)))
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
