"""Horizontal lines across a subplot (thresholds, reference levels), drawn by plotly's own ``add_hline`` without its
cost on a figure that already holds many shapes and annotations.

Each ``Figure.add_hline`` re-assigns the figure's whole tuple of shapes and of annotations several times, and plotly
validates (deep-copies) every element at each assignment: on the ten-row sandbox (ten subplot titles, twelve
lines and their labels) the lines took ~0.2 s of its ~0.4 s of CPU. :func:`add_hlines` runs plotly's ``add_hline`` for each line on a
figure that holds, meanwhile, only the shapes and annotations plotly's check of an empty subplot could see (those
on data coordinates; a subplot title sits on the paper, a spanning line on its axis' domain), then puts the new
shapes and annotations after the figure's own in one assignment each: the same figure as the calls one by one
(tests/test_report.py compares them), the lines in the order given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

__all__ = ["add_hlines"]


def _on_data(objs: tuple) -> tuple:
    """The shapes or annotations of ``objs`` placed on data coordinates (plotly's emptiness check matches these)."""
    return tuple(o for o in objs if not any(r is not None and ("domain" in r or "paper" in r) for r in (o.xref, o.yref)))


def add_hlines(fig: go.Figure, lines: Sequence[Mapping[str, Any]]) -> go.Figure:
    """``fig.add_hline(**kw)`` for each ``kw`` of ``lines``, in order (module docstring). Like each call, a line on a
    subplot without a trace is left out (plotly's ``exclude_empty_subplots``): call it after the traces."""
    shapes, notes = fig.layout.shapes, fig.layout.annotations
    keep_s, keep_a = _on_data(shapes), _on_data(notes)
    new_s: list = []
    new_a: list = []
    try:
        for kw in lines:
            fig.layout.shapes, fig.layout.annotations = keep_s, keep_a
            fig.add_hline(**kw)
            new_s += fig.layout.shapes[len(keep_s):]
            new_a += fig.layout.annotations[len(keep_a):]
    finally:
        fig.layout.shapes, fig.layout.annotations = shapes + tuple(new_s), notes + tuple(new_a)
    return fig
