"""CLI command ``demo``: the end-to-end run on the embedded synthetic market.

A module of its own so that the research commands (``walkforward``, ``report``, ``sandbox``) do not import the
synthetic market's generator.
"""

from __future__ import annotations

import click

from optimizer.cli._common import console, progress_enabled, shared_options
from optimizer.demo import run_demo
from optimizer.paths import output_root

__all__ = ["COMMANDS"]


@click.command("demo")
@click.option("--effect", default=3.0, show_default=True, type=float, help="Planted effect of the synthetic market (0 = a null market: the verdict should be not supported).")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the synthetic market.")
@click.option("--fresh", is_flag=True, help="Delete earlier demo studies and data first.")
@shared_options("out")
def demo_cmd(effect, seed, fresh, out):
    """End to end on the embedded synthetic market: synth -> ingest -> metrics -> phase A -> phase B ->
    walk-forward -> report, with its own store and storage under <out>/demo/. Prints the verdict, the report
    path and the dashboard command."""
    run_demo(output_root(out), effect=effect, seed=seed, fresh=fresh, console=console, progress=progress_enabled())


COMMANDS = (demo_cmd,)
