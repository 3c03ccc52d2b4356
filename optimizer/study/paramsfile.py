"""The ONE reader of a parameters file (``--params FILE`` of ``backtest``, ``signals`` and ``evening``).

Accepted: a flat object of parameters; ``{"params": {...}}``; the ``study best --format json`` document (its
``config`` is the trial's complete effective configuration, ``records.ConfigRecord``: every engine parameter with
costs, the universe and the hash of its symbols, the span as dates, the reserve start, the regime filter,
min_periods and the data fingerprint; ``backtest --params`` reproduces the trial from it); that record on its own
(``study export``'s ``user_attrs_config``), read as the same record; ``costs`` become
commission_bps / slippage_bps unless the params hold them; a record under ``config``. When present it also reads
the richer record's ``universe`` (a name or a list), span start (``start``, ``span_start``, ``span: [start, end]``
or ``span: {"start": ...}``) and regime filter (``regime`` or ``regime_filter``). A loose file (no record) may
also state its span end (``end``, ``span_end``, ``span: [start, end]`` or ``span: {"end": ...}``) and the
z-scores' ``min_periods``: ``backtest`` and ``sandbox`` run to that end and every command uses that min_periods,
as they use a record's (the signal sheet is computed at its own date, so no span end applies to it, a record's
included). A record's ``span.study_end`` (its study's last session, final reserve included) is where
``backtest --final`` and ``sandbox --final`` stop, as ``walkforward --final``; a record without it (written before
2026-12-05) runs to the store's last session. Beside ``params`` (an object) a key outside ``RECORD_KEYS`` is refused
by name, as an unknown parameter is in a flat file: it would take no effect. A change to the format is an edit of ``load_params_record`` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimizer.data.calendar import as_date
from optimizer.engine.evaluate import Config
from optimizer.engine.regime_filter import REGIME_NAMES
from optimizer.errors import AccumoptError, ParameterError, check_param
from optimizer.params import engine_params
from optimizer.study.records import ConfigRecord

__all__ = ["ParamsRecord", "load_params_record", "params_record", "config_record", "RECORD_KEYS"]

# Keys of a parameters document that are not engine parameters.
RECORD_KEYS = frozenset({"params", "costs", "universe", "start", "span_start", "span_end", "span", "regime", "regime_filter",
                         "study", "number", "value", "values", "metrics", "config", "end", "key", "symbols",
                         "symbols_sha", "reserve_start", "min_periods", "data_fingerprint"})


@dataclass(frozen=True)
class ParamsRecord:
    """A configuration as a parameters file holds it: engine ``params`` (costs included) and, when the file says
    so, the ``universe``, span ``start`` and ``regime`` filter it was chosen on (None = not stated); a loose file's
    span ``end`` and ``min_periods`` (a record's are in ``record``)."""

    params: dict[str, Any]
    universe: str | tuple[str, ...] | None = None
    start: str | None = None
    regime: str | None = None
    source: str | None = None
    record: ConfigRecord | None = None  # the complete effective configuration (a ``study best`` document)
    trial: dict[str, Any] | None = None  # {"study", "number", "value", "metrics"} of the trial it came from
    end: str | None = None  # a loose file's span end (ISO date)
    min_periods: int | None = None  # a loose file's min_periods of the z-scores
    def config(self) -> Config:
        """The engine configuration (presets expanded, switches applied; ``Config.from_params`` checks every key)."""
        return Config.from_params(engine_params(self.params))


def _span_start(doc: Mapping[str, Any], path: str) -> str | None:
    for key in ("start", "span_start"):
        if doc.get(key) is not None:
            return str(doc[key])
    span = doc.get("span")
    if span is None:
        return None
    if isinstance(span, Mapping) and span.get("start") is not None:
        return str(span["start"])
    if isinstance(span, (list, tuple)) and span:
        return str(span[0])
    raise ParameterError(f"{path}: span must be [start, end] or {{\"start\": ...}}, got span={span!r}")


def _span_end(doc: Mapping[str, Any], path: str) -> str | None:
    for key in ("end", "span_end"):
        if doc.get(key) is not None:
            return str(doc[key])
    span = doc.get("span")
    if isinstance(span, Mapping) and span.get("end") is not None:
        return str(span["end"])
    if isinstance(span, (list, tuple)) and len(span) > 1 and span[1] is not None:
        return str(span[1])
    return None


def _record(c: Mapping[str, Any], path: str) -> ConfigRecord | None:
    """The ``ConfigRecord`` ``c`` holds (its params, and a span with a panel start), else None."""
    if not (isinstance(c.get("params"), Mapping) and isinstance(c.get("span"), Mapping) and c["span"].get("panel_start")):
        return None
    try:
        return ConfigRecord.from_dict(c)
    except AccumoptError as e:
        raise ParameterError(f"{path}: {e}") from None


def config_record(doc: Mapping[str, Any], path: str) -> ConfigRecord | None:
    """The trial's configuration record a parameters document holds: under ``config`` (a ``study best`` document)
    or as the document itself (``study export``'s ``user_attrs_config``); None for loose parameters. ``path``
    names the document in errors."""
    c = doc.get("config")
    return _record(c if isinstance(c, Mapping) else doc, path)


def load_params_record(path: str | Path) -> ParamsRecord:
    """Read a JSON parameters file (see the module docstring). Errors name the file and the rule."""
    p = str(path)
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ParameterError(f"{p}: cannot read a JSON params file: {e}") from None
    except RecursionError:  # [[[[...]]]]: deeper than Python's JSON parser can follow
        raise ParameterError(f"{p}: cannot read a JSON params file: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ParameterError(f"{p}: must hold a JSON object of parameters or {{\"params\": {{...}}}}")
    return params_record(doc, p)


def params_record(doc: Mapping[str, Any], p: str) -> ParamsRecord:
    """The configuration a parameters document (a JSON file's object, or the same dict in a notebook) holds; ``p``
    names it in errors. See the module docstring."""
    doc = dict(doc)
    record, trial = config_record(doc, p), None
    if isinstance(doc.get("config"), dict):  # a stored effective configuration: its record sits under "config"
        c = doc["config"]
        if "study" in doc:
            trial = {k: doc.get(k) for k in ("study", "number", "value", "values", "metrics") if k in doc}
        doc = {**{k: v for k, v in doc.items() if k != "config"}, **c}
    if doc.get("params") is not None and not isinstance(doc["params"], Mapping):
        raise ParameterError(f"{p}: params must be an object of parameter names to values, got "
                             f"params={doc['params']!r}")
    if isinstance(doc.get("params"), Mapping):
        params = dict(doc["params"])
        meta = doc
        unknown = sorted(str(k) for k in doc if k not in RECORD_KEYS)
        if unknown:  # beside "params" a key is the document's, never an engine parameter: one it does not know
            raise ParameterError(f"{p}: unknown key(s) {', '.join(unknown)} beside params (engine parameters go "
                                 f"inside params); valid: {', '.join(sorted(RECORD_KEYS))}")
    else:
        params = {k: v for k, v in doc.items() if k not in RECORD_KEYS}
        meta = doc
    costs = meta.get("costs")
    if costs is not None:
        if not isinstance(costs, dict):
            raise ParameterError(f"{p}: costs must be an object {{commission_bps, slippage_bps}}, got costs={costs!r}")
        for k, v in costs.items():
            params.setdefault(k, v)
    uni = meta.get("universe")
    if isinstance(uni, list):
        uni = tuple(str(s) for s in uni)
    regime = meta.get("regime", meta.get("regime_filter"))
    if regime is not None:
        check_param(regime in REGIME_NAMES, "regime", f"one of {', '.join(REGIME_NAMES)} (in {p})", regime)
    start, end, min_periods = _span_start(meta, p), None, None
    if record is None:  # a loose file: its span and min_periods are checked here and taken by every command
        as_date(start, f"start (in {p})")
        end = _span_end(meta, p)
        day = as_date(end, f"end (in {p})")
        if start is not None and day is not None:
            check_param(day >= as_date(start, "start"), f"end (in {p})", f"on or after start={start}", end)
        min_periods = meta.get("min_periods")
        if min_periods is not None:
            check_param(isinstance(min_periods, int) and not isinstance(min_periods, bool) and min_periods >= 2,
                        f"min_periods (in {p})", "an integer >= 2", min_periods)
    return ParamsRecord(params, uni, start, None if regime is None else str(regime), p, record, trial, end,
                        min_periods)
