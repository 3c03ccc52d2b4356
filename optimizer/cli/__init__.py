"""The ``accumopt`` command line: a thin layer that parses arguments, calls the library and formats output.

Every command has --help; every domain error (AccumoptError) becomes one line on stderr and exit code 2.
Shared options: --db (env ACCUMOPT_DB, default output/darkpool.duckdb), --storage (env ACCUMOPT_STORAGE,
default sqlite:///output/studies.db), --format table|json.

One module per command group (``data``, ``backtest``, ``study``, ``research``, ``analytics``, ``signals``,
``symbols``), each importing the
library it calls at its top. A module is loaded when one of its commands is looked up (``_LazyCommands``), so
``accumopt ingest`` does not import Optuna, numba or plotly; ``accumopt --help`` lists every command and so loads
them all.
"""

from __future__ import annotations

import gc
import importlib
import sys
import warnings
from collections.abc import Iterator, MutableMapping

from optimizer.cli._interrupt import EXIT_INTERRUPTED, print_interrupted

try:  # Ctrl-C while the command line's libraries load: the one line and exit code of a Ctrl-C in a command
    import click

    from optimizer import __version__
    from optimizer.cli._common import ErrorGroup
except KeyboardInterrupt:
    print_interrupted()
    sys.exit(EXIT_INTERRUPTED)

__all__ = ["main", "entry", "COMMAND_MODULES", "GC_THRESHOLD"]

# command name -> the module of optimizer.cli that defines it (in its COMMANDS)
COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(("ingest", "fetch", "data", "metrics"), "data"),
    "backtest": "backtest",
    **dict.fromkeys(("study", "dashboard"), "study"),
    **dict.fromkeys(("walkforward", "report", "sandbox"), "research"),
    "demo": "demo",
    **dict.fromkeys(("scan", "table", "plot", "chart"), "analytics"),
    **dict.fromkeys(("signals", "evening"), "signals"),
    "symbols": "symbols",
}


class _LazyCommands(MutableMapping):
    """The group's commands by name; a command's module is imported the first time one of its names is read."""

    def __init__(self, modules: dict[str, str]) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module = importlib.import_module(f"optimizer.cli.{self._modules[name]}")  # KeyError: no such command
            self._loaded.update({c.name: c for c in module.COMMANDS})
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command
        self._modules.setdefault(name, "")

    def __delitem__(self, name: str) -> None:
        del self._modules[name]
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


@click.group(cls=ErrorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="accumopt")
def main() -> None:
    """accumopt: optimize and honestly validate institutional accumulation/distribution signals.

    \b
    Typical flow:
      accumopt data synth --out output/synth --db output/darkpool.duckdb   # or: accumopt ingest ...
      accumopt study run studies/demo.toml
      accumopt walkforward studies/demo.toml
      accumopt report demo
    """
    # The command (resolved before this runs) loaded Optuna if it uses it: quiet its per-trial INFO logging, the CLI
    # prints its own progress and results. Commands that never touch Optuna do not import it for this.
    optuna = sys.modules.get("optuna")
    if optuna is not None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # the heartbeat and storage features the tool relies on are marked experimental by Optuna: not news to a user
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


main.commands = _LazyCommands(COMMAND_MODULES)


# the cyclic collector's first-generation threshold of an ``accumopt`` process (Python's default is 700): a study's
# trials allocate many short-lived containers, and at 700 the collector ran often enough to take 0.40 of 2.2 CPU s of
# a 20-trial `study run` (0.17 at 10,000; peak memory unchanged at 336 MB, the trials identical; tspeed19)
GC_THRESHOLD = (10_000, 10, 10)


def entry() -> None:
    """The ``accumopt`` script and ``python -m optimizer.cli``: the process's collector thresholds, then ``main``
    (set here, not at import: a program that imports the CLI, or runs it in-process, keeps its own)."""
    gc.set_threshold(*GC_THRESHOLD)
    main()
