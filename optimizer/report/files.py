"""Figure files, the one home of writing figures (the reports and the analytics plots use it): self-contained HTML
always, PNG through kaleido (the ``png`` extra) when asked or available.

``png`` everywhere means: ``None`` (auto) = also write a PNG beside each HTML when kaleido is importable; an export
failure (e.g. kaleido without a Chrome/Chromium to drive) is reported as a warning naming the file, and the HTML
stays the product. ``True`` = PNG required: a missing kaleido or a failed export raises ``DataError``. ``False`` =
HTML only. Several figures are exported in one kaleido session (``plotly.io.write_images``): starting the browser
costs seconds, each further image milliseconds.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from optimizer.errors import DataError, ParameterError
from optimizer.paths import atomic_write, atomic_write_many

__all__ = ["png_available", "write_figures", "save_figure", "PNG_HINT"]

PNG_HINT = "install the png extra (pip install 'accumopt[png]': kaleido >= 1, which drives a local Chrome/Chromium)"


def png_available() -> bool:
    """True when kaleido is importable."""
    return importlib.util.find_spec("kaleido") is not None


def _html_path(path: str | Path) -> Path:
    p = Path(path)
    return p if p.suffix.lower() == ".html" else p.with_suffix(".html")


def write_figures(items: Sequence[tuple[go.Figure, str | Path]], png: bool | None = None,
                  shown_in: str | Path | None = None) -> list[Path]:
    """Write each (figure, path) as self-contained HTML (plotly.js embedded, ``.html`` suffix enforced) and, per
    ``png`` (module docstring), a ``.png`` beside it. Returns every path written, HTML first. ``shown_in``: the
    folder a message names the files in (the paths are in the temporary folder of ``paths.atomic_folder``, the
    user's files will be in ``shown_in``)."""
    if png not in (None, True, False):
        raise ParameterError(f"png must be None (auto), True or False, got png={png!r}")
    written: list[Path] = []
    htmls: list[Path] = []
    for fig, path in items:
        p = _html_path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        # a fixed div id (plotly draws a random one): the same figure writes the same bytes (evening idempotence)
        # written whole (a temporary file, then a rename): Ctrl-C never leaves a half-written page
        atomic_write(p, lambda t, fig=fig, p=p: fig.write_html(t, include_plotlyjs=True, full_html=True, div_id=p.stem))
        written.append(p)
        htmls.append(p)
    if png is False or not items:
        return written
    if not png_available():
        if png:
            raise DataError(f"PNG output needs kaleido: {PNG_HINT}")
        return written
    pngs = [h.with_suffix(".png") for h in htmls]
    try:
        # written whole (temporary files, renamed when kaleido has written every one): a failed or interrupted
        # export keeps the previous PNGs, never a half-written one
        atomic_write_many(pngs, lambda tmps: pio.write_images([f for f, _ in items], tmps, format="png"))
    except Exception as e:  # noqa: BLE001 - kaleido/browser failures have many types; reported, never swallowed
        shown = [Path(shown_in) / x.name if shown_in is not None else x for x in pngs]
        msg = f"PNG export failed for {', '.join(str(x) for x in shown)}: {type(e).__name__}: {e}"
        if png:
            raise DataError(f"{msg}; {PNG_HINT}") from None
        warnings.warn(msg + " (the HTML files were written)", RuntimeWarning, stacklevel=2)
        return written
    return written + pngs


def save_figure(fig: go.Figure, path: str | Path, png: bool | None = None) -> list[Path]:
    """Write ``path`` as self-contained HTML (plotly.js embedded) and, per ``png``, a ``.png`` beside it: None (auto)
    = when kaleido is importable (a failed export is a warning), True = required (DataError without kaleido or on
    failure), False = never. Returns the written paths."""
    return write_figures([(fig, path)], png)
