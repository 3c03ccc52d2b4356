"""The ONE wording of the data settings a run ran with (universe, span and final reserve, regime filter, the
z-scores' min_periods, costs), for every command and page that states them: ``walkforward`` (its ``settings``
rows and report), ``study run`` (terminal and ``--format json``) and the ``sandbox`` page. The labels of a universe
and of min_periods have their own homes (``data.universe.universe_label``, ``data.rolling.min_periods_label``).

A settings dict holds ``universe`` (a name or a list), ``regime``, ``min_periods`` (None: the z-window) and
``costs`` (``{"commission_bps", "slippage_bps"}``, or a list of them: one per walk-forward window); optionally
``symbols`` (how many), ``unpriced`` (how many universe ``all`` left out, when it left out any: ``universe.unpriced_note``), ``span`` ([first, last] session), ``reserve_start`` / ``final`` (the final reserve and
whether the run opened it) and ``panel_start`` (where the z-scores warm up from, when it is not the span's start).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optimizer.data.rolling import min_periods_label
from optimizer.data.universe import universe_label, unpriced_note

__all__ = ["costs_label", "data_settings_rows", "study_settings"]


def costs_label(costs: Mapping[str, float] | list[Mapping[str, float]]) -> str:
    """``3 + 11 bp per side (commission + slippage)``; a list (one pair per window): ``per window: 3 + 11, ...``."""
    if isinstance(costs, Mapping):
        return f"{costs['commission_bps']:g} + {costs['slippage_bps']:g} bp per side (commission + slippage)"
    return "per window: " + ", ".join(f"{x['commission_bps']:g} + {x['slippage_bps']:g}" for x in costs) + " bp per side"


def data_settings_rows(st: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The data settings ``st`` (see the module docstring) as (label, text) rows: data, entries, z-scores, costs."""
    data = f"universe {universe_label(st['universe'])}"
    if st.get("symbols") is not None:
        data += f", {st['symbols']} symbols"
    if st.get("unpriced"):
        data += f" ({unpriced_note(st['unpriced'])})"
    if st.get("span"):
        data += f", {st['span'][0]}..{st['span'][1]}"
    if "reserve_start" in st:
        data += ("; no final reserve" if st["reserve_start"] is None else
                 f"; final reserve from {st['reserve_start']} {'opened' if st.get('final') else 'kept out'}")
    z = f"min_periods {min_periods_label(st.get('min_periods'))}"
    if st.get("panel_start"):
        z = f"from {st['panel_start']}, {z}"
    return [("data", data), ("entries", f"regime filter {st['regime']}"), ("z-scores", z),
            ("costs", costs_label(st["costs"]))]


def study_settings(record: Any) -> dict[str, Any] | None:
    """The data settings of a study, from what it stores (a ``records.StudyRecord``: universe, symbols, the span it
    optimizes over, the final reserve it keeps out, the regime filter; its stored spec: min_periods and costs);
    None for a study not made by accumopt (no stored spec). A stored spec that no longer parses: a DataError."""
    spec = record.spec()
    if spec is None:
        return None
    d = spec.data
    uni = record.universe if record.universe is not None else d.universe
    return {
        "universe": list(uni) if isinstance(uni, (list, tuple)) else uni, "symbols": record.symbols,
        **({"unpriced": n} if (n := (record.coverage or {}).get("unpriced")) else {}),
        "span": [str(record.train_start)[:10], str(record.train_end)[:10]] if record.train_start else None,
        "reserve_start": record.reserve_start, "final": False, "regime": record.regime or d.regime,
        "min_periods": d.min_periods, "costs": {"commission_bps": d.commission_bps, "slippage_bps": d.slippage_bps},
    }
