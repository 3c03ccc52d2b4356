"""``python -m optimizer.cli``: the same entry point as the ``accumopt`` script."""

from optimizer.cli import entry

entry()
