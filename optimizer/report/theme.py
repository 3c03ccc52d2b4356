"""The plotly template of every figure the tool draws, given to a figure without plotly's per-figure cost.

``fig.update_layout(template="plotly_white")`` validates the whole template (a Template object with a template
for every trace type) and deep-copies it again for every figure: ~11-12 ms of CPU per figure, more than most of
the figures cost to build (the test suite draws ~300). :func:`themed` gives the figure the same template the way
plotly gives a new figure its default one: the template is validated once per process, then set with the
layout's validation off for that one assignment (it is valid already), ~0.3 ms. The figure's JSON, hence its
HTML, is byte for byte the one ``update_layout(template=...)`` gives (tests/test_tspeed18.py).
"""

from __future__ import annotations

import functools

import plotly.graph_objects as go

__all__ = ["TEMPLATE", "themed"]

TEMPLATE = "plotly_white"


@functools.cache
def _validated(name: str) -> go.layout.Template:
    """The registered plotly template ``name`` as a figure's layout holds it after ``update_layout(template=name)``
    (validated, its properties in the validator's order); the cache is never handed out: assigning it copies it."""
    return go.Figure(layout={"template": name}).layout.template


def themed(fig: go.Figure, template: str = TEMPLATE) -> go.Figure:
    """``fig`` with the plotly template ``template`` (a registered name), as ``fig.update_layout(template=template)``
    gives it (module docstring). Returns ``fig``."""
    layout = fig.layout
    valid = _validated(template)
    before = getattr(layout, "_validate", True)
    layout._validate = False  # plotly's own way to set an already valid template (BaseFigure._initialize_layout_template)
    try:
        layout.template = valid
    finally:
        layout._validate = before
    return fig
