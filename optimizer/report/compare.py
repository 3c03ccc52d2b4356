"""plotly figure and self-contained HTML page for ``accumopt study compare`` (a ``CompareResult``).

Four panels: best-so-far against trials finished, best-so-far against the time the study's trials ran (a pause
between runs not counted), the per-fold intermediate values of pruned (red) and complete (blue) trials, and how
many trials were pruned at each fold. Trace names are ``"<study> best"``, ``"<study> best (time)"``,
``"<study> complete"``, ``"<study> pruned"`` and ``"<study> pruned at fold"``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from optimizer.paths import atomic_write
from optimizer.report.theme import themed

if TYPE_CHECKING:
    from optimizer.study.inspect import CompareResult

__all__ = ["compare_figure", "write_compare_html", "warmup_note", "STATE_COLORS"]

STATE_COLORS = {"COMPLETE": "rgba(31,119,180,0.55)", "PRUNED": "rgba(214,39,40,0.45)"}
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _study_color(i: int) -> str:
    pal = qualitative.Plotly
    return pal[i % len(pal)]


def _best_traces(fig: go.Figure, name: str, df: pd.DataFrame, color: str) -> None:
    fig.add_trace(go.Scatter(x=df["n_finished"], y=df["best_value"], mode="lines", line_shape="hv", name=f"{name} best",
                             line={"color": color}, legendgroup=name,
                             customdata=df["number"], hovertemplate="trial %{customdata}<br>best %{y:.4g}"), row=1, col=1)
    fig.add_trace(go.Scatter(x=df["elapsed_s"], y=df["best_value"], mode="lines", line_shape="hv",
                             name=f"{name} best (time)", line={"color": color}, legendgroup=name, showlegend=False,
                             customdata=df["number"], hovertemplate="trial %{customdata}<br>%{x:.1f} s<br>best %{y:.4g}"),
                  row=1, col=2)


def _intermediate_traces(fig: go.Figure, name: str, df: pd.DataFrame, dash: str) -> None:
    """One trace per (study, state): trials joined as line pieces separated by gaps (None)."""
    for state in ("COMPLETE", "PRUNED"):
        sub = df[df["state"] == state]
        xs: list = []
        ys: list = []
        for _, g in sub.groupby("trial", sort=True):
            g = g.sort_values("step")
            xs += [*g["step"].tolist(), None]
            ys += [*g["value"].tolist(), None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name} {state.lower()}",
                                 line={"color": STATE_COLORS[state], "dash": dash, "width": 1},
                                 marker={"size": 4}, legendgroup=name, connectgaps=False), row=2, col=1)


def compare_figure(result: "CompareResult") -> go.Figure:
    """2x2 subplot Figure comparing the studies of ``result`` (first objective for multi-objective studies)."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "best so far vs trials finished", "best so far vs time its trials ran", "intermediate value per fold (blue complete, red pruned)",
        "trials pruned at each fold"))
    for i, name in enumerate(result.names):
        color = _study_color(i)
        _best_traces(fig, name, result.best_so_far[result.best_so_far["study"] == name], color)
        _intermediate_traces(fig, name, result.intermediate[result.intermediate["study"] == name], _DASHES[i % len(_DASHES)])
        h = result.prune_fold_hist[result.prune_fold_hist["study"] == name]
        fig.add_trace(go.Bar(x=h["fold"], y=h["n_pruned"], name=f"{name} pruned at fold", marker={"color": color},
                             legendgroup=name), row=2, col=2)
    themed(fig).update_layout(barmode="group", height=800, title="study comparison")
    fig.update_xaxes(title_text="trials finished", row=1, col=1)
    fig.update_xaxes(title_text="seconds its trials ran (a pause between runs not counted)", row=1, col=2)
    fig.update_xaxes(title_text="fold", dtick=1, row=2, col=1)
    fig.update_xaxes(title_text="fold", dtick=1, row=2, col=2)
    fig.update_yaxes(title_text="best value", row=1, col=1)
    fig.update_yaxes(title_text="pruned trials", row=2, col=2)
    return fig


def _summary_html(summary: pd.DataFrame) -> str:
    return summary.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", classes="summary", border=0)


def warmup_note(summary: pd.DataFrame) -> str:
    """What the trial times include: numba's compilation is outside them for studies that warmed the kernels first
    (``kernel_warmup_s`` known), inside the first trial for the others."""
    w = summary.get("kernel_warmup_s", pd.Series(dtype=float))
    known = summary.loc[w.notna(), "study"].tolist() if len(w) else []
    unknown = summary.loc[w.isna(), "study"].tolist() if len(w) else list(summary.get("study", []))
    parts = []
    if known:
        secs = ", ".join(f"{s} {v:.1f} s" for s, v in zip(known, w[w.notna()]))
        parts.append("Trial times exclude numba compilation: the engine kernels were compiled (or loaded from "
                     f"numba's cache) before each study's first trial ({secs}; 0 s: already loaded in the process).")
    if unknown:
        parts.append(f"{', '.join(unknown)}: made before kernels were warmed first; the first trial's time may "
                     "include compilation.")
    return " ".join(parts)


def write_compare_html(result: "CompareResult", path: str | Path) -> Path:
    """Write one self-contained HTML file (plotly.js inlined, works offline): summary table + figure."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig_html = compare_figure(result).to_html(full_html=False, include_plotlyjs=True)
    title = "study comparison: " + ", ".join(result.names)
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table.summary{border-collapse:collapse;font-size:13px}"
        "table.summary td,table.summary th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>\n<h2>summary</h2>\n{_summary_html(result.summary)}\n"
        "<p>time_saved_s: sum over pruned trials of max(0, mean complete duration &minus; their duration). Repeats "
        "(trials that reused an earlier trial's result) count by state but not in the durations or time saved. "
        "elapsed_s: the time the study's trials were running (the union of their start..complete intervals): a "
        "pause between two runs of a resumed study is not counted, trials run side by side count once; "
        "total_trial_s: the sum of the trials' durations.</p>\n"
        f"<p class=\"warmup\">{html.escape(warmup_note(result.summary))}</p>\n"
        f"{fig_html}\n</body></html>\n"
    )
    atomic_write(p, lambda t: t.write_text(page, encoding="utf-8"))
    return p
