"""accumopt: find and honestly validate institutional accumulation/distribution signal configurations.

Data flows one way: raw files -> ingest -> DuckDB store -> daily_metrics -> panel -> features -> score
-> signals/trades -> metrics -> objective -> study -> walk-forward -> statistics -> report. The CLI sits on top.

The Python API (``optimizer.api``, documented there) is available as attributes of this package::

    import optimizer as ao

    db = ao.synth_store("output/nb/store.duckdb")
    ev = ao.evaluate({"variant": "B", "buy_threshold": 65}, ao.load_panel(db))
    ev.metrics, ev.trades
    wf = ao.walk_forward("studies/demo.toml", db, "sqlite:///output/nb/studies.db")
    ao.build_report(wf), ao.sandbox_figure(db, "NVDA", ev.params)

``import optimizer`` imports nothing heavy: the API module (and Optuna, numba, plotly, DuckDB with it) loads the
first time one of its names is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# the names of optimizer.api re-exported here (tests/test_api.py keeps the two lists equal)
_API = (
    "Evaluation", "open_store", "synth_store", "load_panel", "evaluate", "study_spec", "run_study", "best_params",
    "list_studies", "show_study", "compare_studies", "walk_forward", "build_report", "sandbox_figure",
)

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Load ``optimizer.api`` on first use of one of its names (PEP 562)."""
    if name in _API:
        value = getattr(importlib.import_module("optimizer.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'optimizer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
