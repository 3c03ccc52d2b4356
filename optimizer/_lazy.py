"""Lazy re-exports for a package ``__init__`` (PEP 562): a name of the package's ``__all__`` loads the module that
defines it the first time it is used, so importing the package (or one of its modules) imports none of the others.

    _EXPORTS = {"run_study": "optimizer.study.run", ...}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str], namespace: MutableMapping[str, Any],
                 names: list[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's module-level ``__getattr__`` and ``__dir__``: ``exports`` maps a name to its home module; a
    loaded name is kept in ``namespace`` (the package's ``globals()``), so the module is looked up once."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
