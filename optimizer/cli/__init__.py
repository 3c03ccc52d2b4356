"""The ``accumopt`` command line: a thin layer that parses arguments, calls the library and formats output.

Every command has --help; every domain error (AccumoptError) becomes one line on stderr and exit code 2.
Shared options: --db (env ACCUMOPT_DB, default output/darkpool.duckdb), --storage (env ACCUMOPT_STORAGE,
default sqlite:///output/studies.db), --format table|json.
"""

from __future__ import annotations

import click

from optimizer import __version__
from optimizer.cli import analytics, backtest, data, research, signals, study, symbols
from optimizer.cli._common import _Group

__all__ = ["main"]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the CLI prints its own progress and results



for _module in (data, backtest, study, research, analytics, signals, symbols):
    for _cmd in _module.COMMANDS:
        main.add_command(_cmd)
