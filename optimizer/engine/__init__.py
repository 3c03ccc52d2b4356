"""The signal engine: panel -> features -> score -> signals/trades -> metrics. Pure functions over numpy arrays.

A module of the engine is also an attribute of the package, imported on first use (PEP 562): a module that needs an
engine name only when a function runs (the study records' ``Config``, the spec's ``METRIC_KEYS``) imports the
package and reads ``engine.evaluate.Config`` there, so reading a study storage does not load numba and the kernels.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

__all__: list[str] = []

_MODULES = frozenset(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem != "__init__")


def __getattr__(name: str) -> ModuleType:
    """``optimizer.engine.<module>`` imported on its first use as an attribute (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'optimizer.engine' has no attribute {name!r}")
