"""The research reports: one self-contained HTML page per study and per walk-forward run.

``build_study_report(storage, study)`` -> ``output/reports/<study>.html``: header (study, spec hash, data
fingerprint, objective, trial counts), optimization history (Pareto front for multi-objective studies), parameter
importances, sensitivity heatmaps (w_short bin × z_window, buy × sell threshold: mean objective per cell, from the
trials table), slice and contour plots of the 2–3 most important parameters, the top-10 configurations and the
per-fold intermediate values of complete vs pruned trials.

``build_walkforward_report(wf)`` -> ``output/reports/<name>-walkforward.html`` (and the equity figure alone in
``output/equity_curves/<name>_oos.html``): the verdict line (green when supported, red when not) and its gates
(the run's ``Verdict``, rendered, never re-decided) beside the other deciding numbers (the daily series' sample:
trades, days, effective n; its bootstrap interval and minimum detectable effect; the market-adjusted figures; DSR,
PBO, SPA), the block bootstrap of the OOS account's equity (labelled by what it resamples) with its drawdown
distribution, the cost-stress table and the sentence its own booleans give, the stitched OOS equity with its
matched random-entry benchmark and the excess, in-sample vs out-of-sample bars per window, the windows and
per-window parameters tables, parameter stability, and — when trade events carry the columns — failure modes, the
parent-ETF alignment box plot and the rule-validation table (one definition of the closed trades, their return and
the conditions: ``stats.closed_trade_events`` / ``rule_conditions``); regimes when the result has them.

Every page embeds plotly.js exactly once (in ``<head>``) and each figure as a ``Plotly.newPlot`` call with its own
div id; ``body[data-plots-expected]`` holds the number of figures and a small script sets
``body[data-plots-rendered]`` to the number of rendered ``.js-plotly-plot`` elements after load (checked by a
headless-browser test). :func:`embedded_figures` reads the figures back out of a page. :func:`build_report` picks
the right one for a study name or a walk-forward run directory.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs

from optimizer.errors import DataError, check_param
from optimizer.data.calendar import stamp
from optimizer.data.rolling import min_periods_label
from optimizer.data.universe import universe_label
from optimizer.paths import atomic_write, recover_folder, safe_name, under
from optimizer.report import figures as F
from optimizer.report.files import save_figure
from optimizer.report.terminal import cell_text
from optimizer.report.theme import themed
from optimizer.study.inspect import open_named_study, open_storage, show_study, trials_table
from optimizer.study.records import read_study, seeded_label, trial_counts
from optimizer.study.storage import study_names
from optimizer.validate.stats import closed_trade_events, cost_stress_wording, flag_fragile, validate_rules
from optimizer.validate.verdict import Verdict
from optimizer.validate.walkforward import book_text, load_walkforward, settings_rows

__all__ = ["build_study_report", "build_walkforward_report", "build_report", "embedded_figures", "Page",
           "PLOTLY_MARKER", "MIN_IMPORTANCE_TRIALS"]

# The first bytes of plotly.js as plotly inlines it ("/**\n* plotly.js v3...."): counted by the tests.
PLOTLY_MARKER = "* plotly.js v"
# fANOVA on fewer completed trials is noise (one trial gives every parameter the same share): shown as a note.
MIN_IMPORTANCE_TRIALS = 5
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em 2.5em;color:#222;max-width:1500px}
h1{margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:2px solid #e0e0e0;padding-bottom:.2em}
table.tbl{border-collapse:collapse;font-size:13px;margin:.5em 0}
table.tbl td,table.tbl th{padding:3px 9px;border-bottom:1px solid #e3e3e3;text-align:right}
table.tbl th{background:#f5f5f5} table.tbl tr:hover td{background:#fafafa}
table.kv td:first-child{text-align:left;font-weight:600;color:#555}
.note{color:#6d4c00;background:#fff8e1;border-left:4px solid #ffb300;padding:.4em .8em;margin:.5em 0}
.verdict{font-size:1.7em;font-weight:700;color:#fff;padding:.6em .9em;border-radius:6px;margin:.6em 0}
.verdict.supported{background:#2e7d32} .verdict.rejected{background:#c62828}
.pass{color:#2e7d32;font-weight:600} .fail{color:#c62828;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
.fig{margin:.4em 0 1.2em 0} .scroll{overflow-x:auto;max-width:100%}
"""
_RENDER_PROBE = (
    "<script>window.addEventListener('load',function(){setTimeout(function(){document.body.dataset.plotsRendered="
    "String(document.querySelectorAll('.js-plotly-plot').length);},0);});</script>"
)


# ------------------------------------------------------------------------------------------------ page


@dataclass
class Page:
    """An HTML page under construction: blocks of HTML and figures (each rendered with ``div_id`` = its id)."""

    title: str
    blocks: list[str] = field(default_factory=list)
    figure_ids: list[str] = field(default_factory=list)

    def add(self, raw_html: str) -> None:
        self.blocks.append(raw_html)

    def h2(self, text: str) -> None:
        self.add(f"<h2>{html.escape(text)}</h2>")

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{html.escape(text)}</p>')

    def table(self, df: pd.DataFrame, classes: str = "tbl") -> None:
        self.add(_table_html(df, classes))

    def figure(self, fig: go.Figure, fid: str) -> None:
        check_param(fid not in self.figure_ids, "fid", "a figure id not used yet on this page", fid)
        self.figure_ids.append(fid)
        body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=fid,
                           config={"responsive": True, "displaylogo": False})
        self.add(f'<div class="fig">{body}</div>')

    def render(self) -> str:
        return (
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style>\n"
            "<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n"
            f"<body data-plots-expected=\"{len(self.figure_ids)}\">\n"
            + "\n".join(self.blocks)
            + f"\n{_RENDER_PROBE}\n</body></html>\n"
        )

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = self.render()
        atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))  # never a half-written page
        return path


def _fmt_cell(v: Any) -> str:
    if v is None or v is pd.NA or v is pd.NaT:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return "-" if not math.isfinite(float(v)) else (f"{float(v):.4g}" if abs(float(v)) < 1e6 else f"{float(v):.3e}")
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d") if v == v.normalize() else v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def _table_html(df: pd.DataFrame, classes: str = "tbl") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt_cell(v))}</td>" for v in r) + "</tr>"
                   for r in df.itertuples(index=False, name=None))
    return (f'<div class="scroll"><table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
            '</table></div>')


def _kv_html(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v if isinstance(v, _Raw) else html.escape(_fmt_cell(v))}</td></tr>"
                   for k, v in pairs)
    return f'<table class="tbl kv"><tbody>{rows}</tbody></table>'


class _Raw(str):
    """A table value that is already HTML."""


def embedded_figures(page_html: str) -> list[dict[str, Any]]:
    """The figures of a report page: ``[{"id", "data", "layout"}]`` in page order, decoded from each
    ``Plotly.newPlot("<id>", data, layout, ...)`` call (typed arrays stay as plotly's ``{"dtype", "bdata"}``)."""
    dec = json.JSONDecoder()
    out = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', page_html):
        try:
            data, end = dec.raw_decode(page_html, m.end())
            rest = re.match(r"\s*,\s*", page_html[end:])
            layout, _ = dec.raw_decode(page_html, end + (rest.end() if rest else 0))
        except json.JSONDecodeError:
            continue
        out.append({"id": m.group(1), "data": data, "layout": layout})
    return out


def _try_figure(page: Page, fid: str, make: Callable[[], go.Figure], what: str, title: str | None = None) -> bool:
    """Add ``make()`` to the page; a failure (e.g. too few trials for importances) becomes a note."""
    try:
        fig = make()
    except Exception as e:  # noqa: BLE001 - optuna raises several types when a plot is not computable
        page.note(f"{what} not shown: {e.__class__.__name__}: {e}")
        return False
    if title is not None:
        fig.update_layout(title=title)
    themed(fig)
    page.figure(fig, fid)
    return True


# ------------------------------------------------------------------------------------------------ study report


def _value_column(trials: pd.DataFrame) -> str | None:
    if "value" in trials.columns:
        return "value"
    vals = [c for c in trials.columns if c.startswith(("values_", "value_"))]  # value_<metric name> when named
    return vals[0] if vals else None


def _header(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> list[tuple[str, Any]]:
    a = read_study(study)
    c = trial_counts(trials)
    multi = len(study.directions) > 1
    best: Any = "-"
    try:
        best = f"{len(study.best_trials)} trials on the Pareto front" if multi else f"{study.best_value:.6g} (trial {study.best_trial.number})"
    except ValueError:
        best = "no completed trial"

    def dash(v: Any) -> Any:
        return "-" if v is None else v

    try:
        spec = a.spec()
    except DataError as e:  # shown on the page: the spec stored with the study no longer parses
        spec, why = None, str(e)
    else:
        why = "no spec stored with the study"
    if spec is not None:
        d, o = spec.data, spec.objective
        data = (f"universe {universe_label(d.universe)}, regime filter {d.regime}, costs {d.commission_bps:g} + "
                f"{d.slippage_bps:g} bp per side, min_periods {min_periods_label(d.min_periods)}")
        objective = (f"{o.name} (aggregate {o.aggregate}{f', k {o.k:g}' if o.aggregate == 'mean_minus_std' else ''}, "
                     f"min_trades {o.min_trades}); sampler {spec.sampler.name} seed {spec.sampler.seed}, pruner "
                     f"{spec.pruner.name}")
    else:
        data, objective = why, f"{dash(a.objective)} (aggregate {dash(a.aggregate)})"
    return [
        ("study", study.study_name), ("spec", a.spec_name or "-"), ("spec hash", a.spec_hash or "-"),
        ("data fingerprint", a.data_fingerprint or "-"), ("data", data),
        ("objective", objective),
        ("directions", ", ".join(d.name.lower() for d in study.directions)),
        ("train span", f"{dash(a.train_start)} .. {dash(a.train_end)}"),
        ("folds", len(a.folds)), ("symbols", dash(a.symbols)),
        *([("seeded from", seeds)] if (seeds := seeded_label(study)) else []),
        ("trials", f"{len(trials)} total: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed, "
                   f"{c['running']} running (target {dash(a.n_trials_target)})"),
        ("best", best), ("accumopt", f"{dash(a.accumopt_version)} (git {a.git_commit or '-'})"),
        ("generated", stamp()),
    ]


def _top_params(study: optuna.Study, target, k: int = 3) -> tuple[list[str], dict[str, float] | None]:
    """The k most important parameters (fANOVA, seeded) or, when importances fail, the most common ones."""
    # lazy: optuna's importance module imports scikit-learn (about a second); only study reports need it
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    try:
        imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), target=target)
    except (ValueError, RuntimeError):  # optuna's refusals: too few completed trials / a single distinct value
        return _common_params(study, k), None
    names = [p for p, _ in sorted(imp.items(), key=lambda kv: -kv[1])]
    return names[:k], imp


def _common_params(study: optuna.Study, k: int = 3) -> list[str]:
    """The k parameters most often present in completed trials, among those with more than one value."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    counts = pd.Series([p for t in done for p in t.params], dtype=object).value_counts()
    return [p for p in counts.index if _distinct(done, p) > 1][:k]


def _distinct(trials, p: str) -> int:
    return len({str(t.params.get(p)) for t in trials if p in t.params})


def _sensitivity(page: Page, done: pd.DataFrame, vcol: str | None, maximize: bool) -> None:
    page.h2("Parameter sensitivity")
    if vcol is None or done.empty:
        page.note("no completed trial: sensitivity heatmaps need completed trials")
        return
    wcol = next((c for c in ("params_w_short", "metric_w_short_norm", "params_weights") if c in done.columns
                 and done[c].notna().any()), None)
    specs = [
        ("fig-sens-weights", wcol, "params_z_window", "w_short bin", "z_window", "weights × window"),
        ("fig-sens-thresholds", "params_sell_threshold", "params_buy_threshold", "sell_threshold", "buy_threshold",
         "buy × sell thresholds"),
    ]
    for fid, ycol, xcol, ylab, xlab, what in specs:
        if ycol is None or ycol not in done.columns or xcol not in done.columns:
            page.note(f"{what}: the study has no {ylab if ycol is None or ycol not in done.columns else xlab} parameter")
            continue
        t = done.assign(_y=F.bin_numeric(done[ycol]), _x=F.bin_numeric(done[xcol]))
        title = f"Sensitivity: {ylab} × {xlab} (mean objective per cell)"
        _try_figure(page, fid, lambda t=t, ylab=ylab, xlab=xlab, title=title: F.sensitivity_heatmap(
            t, "_x", "_y", vcol, title=title, maximize=maximize, x_label=xlab, y_label=ylab), what)


def _intermediate_rows(trials: list[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    rows = [{"trial": t.number, "state": t.state.name, "step": int(s), "value": float(v)}
            for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            for s, v in sorted(t.intermediate_values.items())]
    return pd.DataFrame(rows, columns=["trial", "state", "step", "value"])


def build_study_report(storage: Any, study_name: str, out_dir: str | Path = "output/reports",
                       name: str | None = None) -> Path:
    """Write ``<out_dir>/<name>.html`` (``name`` default: the study's; one self-contained page, see the module
    docstring); returns its path.

    An unknown study is a DataError listing the storage's studies. Plots optuna cannot compute (importances with
    too few trials, contour with one parameter) become notes on the page, never errors.
    """
    # lazy: optuna's plots and importances import scikit-learn (about a second); only study reports need them
    from optuna import visualization as V
    from optuna.importance import FanovaImportanceEvaluator

    study, st = open_named_study(storage, study_name)
    trials = study.get_trials(deepcopy=False)
    multi = len(study.directions) > 1
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    metric_names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    target = (lambda t: t.values[0]) if multi else None
    target_name = metric_names[0] if multi else "objective"
    page = Page(f"study report: {study_name}")
    page.add(f"<h1>Study report: {html.escape(study_name)}</h1>")
    page.add(_kv_html(_header(study, trials)))

    n_done = sum(t.state == TrialState.COMPLETE for t in trials)
    if multi:
        page.h2("Pareto front")
        _try_figure(page, "fig-pareto", lambda: V.plot_pareto_front(study, target_names=metric_names), "Pareto front",
                    title="Pareto front")
    else:
        page.h2("Optimization history")
        if n_done:
            _try_figure(page, "fig-history", lambda: V.plot_optimization_history(study), "optimization history",
                        title="Optimization history")
        else:  # optuna would log "There are no complete trials." and draw empty axes
            page.note("no completed trial: no history to draw")

    page.h2("Parameter importances")
    if n_done < MIN_IMPORTANCE_TRIALS:
        top = _common_params(study)
        page.note(f"parameter importances not shown: {n_done} completed trial(s) < {MIN_IMPORTANCE_TRIALS} needed "
                  "for a meaningful fANOVA")
    else:
        top, _ = _top_params(study, target)
        _try_figure(page, "fig-importances", lambda: V.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0), target=target,
            target_name=target_name), "parameter importances", title="Parameter importances (fANOVA)")

    tt = trials_table(st, study_name)
    done = tt[tt["state"] == "COMPLETE"] if "state" in tt.columns else tt
    _sensitivity(page, done, _value_column(done) if not done.empty else None, maximize)

    page.h2("Slice and contour plots of the most important parameters")
    if not top:
        page.note(f"no parameter to plot ({n_done} completed trials)")
    else:
        page.add(f"<p>parameters: {html.escape(', '.join(top))}</p>")
        _try_figure(page, "fig-slice", lambda: V.plot_slice(study, params=top, target=target, target_name=target_name),
                    "slice plot", title=f"Slice plot: {', '.join(top)}")
        if len(top) >= 2:
            _try_figure(page, "fig-contour", lambda: V.plot_contour(study, params=top, target=target,
                                                                      target_name=target_name),
                        "contour plot", title=f"Contour plot: {', '.join(top)}")
        else:
            page.note("contour plot needs two parameters with more than one value")

    page.h2("Top 10 configurations")
    best = show_study(st, study_name, top=10)
    if best.empty:
        page.note("no completed trial")
    else:
        page.table(best)

    page.h2("Intermediate values (pruned vs complete)")
    inter = _intermediate_rows(trials)
    if inter.empty:
        page.note("no trial reported intermediate values (multi-objective studies do not report per fold)")
    else:
        _try_figure(page, "fig-intermediate", lambda: F.intermediate_figure(inter), "intermediate values")
    return page.write(under(out_dir, name if name is not None else study_name, suffix=".html"))


# ------------------------------------------------------------------------------------------------ walk-forward


def _parts(wf: Any) -> dict[str, Any]:
    """The walk-forward run as {result (dict), verdict, summary, trades, equity, stability} from either input shape."""
    if hasattr(wf, "to_dict") and hasattr(wf, "summary"):
        return {"result": wf.to_dict(), "verdict": wf.verdict, "summary": wf.summary, "trades": wf.trades,
                "equity": wf.equity, "stability": wf.stability}
    check_param(isinstance(wf, dict) and isinstance(wf.get("result"), dict), "wf",
                "a WalkForwardResult or the dict load_walkforward returns (with a 'result' dict)", type(wf).__name__)
    out = dict(wf)
    if not isinstance(out.get("verdict"), Verdict):
        if not isinstance(out["result"].get("verdict_gates"), list):
            raise DataError("the walk-forward result has no verdict gates (written by an older accumopt); "
                            "re-run `accumopt walkforward SPEC`")
        out["verdict"] = Verdict.from_dict(out["result"])
    for k in ("summary", "trades", "equity", "stability"):
        v = out.get(k)
        out[k] = v if isinstance(v, pd.DataFrame) else pd.DataFrame(v if v is not None else [])
    return out


def _f(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _s(v: Any, spec: str, suffix: str = "") -> str:
    f = _f(v)
    return "n/a" if not math.isfinite(f) else format(f, spec) + suffix


def _gate(ok: bool) -> _Raw:
    return _Raw('<span class="pass">pass</span>' if ok else '<span class="fail">fail</span>')


def _deciding(res: dict[str, Any], v: Verdict) -> pd.DataFrame:
    """The verdict's gates (value, rule, pass/fail, as decided) and the statistics that are context only: the
    sample of the daily OOS excess series, its bootstrap interval and power, the market-adjusted figures, the
    in-sample search statistics."""
    oos, stats = res.get("oos") or {}, res.get("stats") or {}
    rows = [(g.statistic, g.detail_text, g.rule, g.passed) for g in v.gates]
    inf, mkt, spa = stats.get("inference") or {}, stats.get("inference_mkt") or {}, stats.get("spa") or {}
    pct = lambda x: _s(x, "+.3%")  # noqa: E731
    context: list[tuple[str, str, str]] = []  # (gate name it would duplicate, label, text)
    if inf:
        context += [
            ("", "OOS sample: trades / days / effective n",
             f"{_s(inf.get('n_trades'), '.0f')} / {_s(inf.get('n_days'), '.0f')} / {_s(inf.get('n_eff'), '.1f')}"),
            ("", "excess / trade: 95% interval (stationary bootstrap over days)",
             f"{pct(inf.get('boot_lo'))} .. {pct(inf.get('boot_hi'))} (block {_s(inf.get('block_size'), '.1f')} days)"),
            ("", f"minimum detectable effect (alpha {_s(inf.get('alpha'), '.3f')}, power {_s(inf.get('power'), '.0%')})",
             f"{_s(inf.get('mde_per_trade'), '.2%')}/trade, {_s(inf.get('mde_per_year'), '.1%')}/yr"),
            ("", "i.i.d. t of the per-trade excess (for comparison)", _s(inf.get("t_iid"), ".2f")),
            ("", "daily excess series: HAC lags / skew / kurtosis",
             f"{_s(inf.get('hac_lags'), '.0f')} / {_s(inf.get('skew'), '.2f')} / {_s(inf.get('kurtosis'), '.2f')}"),
        ]
    if mkt:
        context.append(("", "market-adjusted: excess / trade, HAC t, MDE / trade (not gated)",
                        f"{pct(mkt.get('mean_per_trade'))}, {_s(mkt.get('t'), '.2f')}, {_s(mkt.get('mde_per_trade'), '.2%')}"))
    context += [
        ("dsr", "Deflated Sharpe Ratio", _s(res.get("dsr", stats.get("dsr")), ".3f")),
        ("psr", "Probabilistic Sharpe Ratio (daily OOS excess)", _s(res.get("psr", stats.get("psr")), ".3f")),
        ("pbo", "Probability of Backtest Overfitting", _s(res.get("pbo", stats.get("pbo")), ".3f")),
    ]
    method = {"cpcv": "the combinatorial purged CV splits of each window's study ([cv] mode = cpcv)",
              "cscv": "CSCV over <= 16 blocks of each window's train span"}.get(str(stats.get("pbo_method")))
    if method:
        context.append(("", "PBO computed from", method))
    if spa:
        context.append(("spa", "SPA p-value (Hansen, every configuration tried; windows combined)",
                        f"{_s(spa.get('p'), '.3f')} (median of windows {_s(spa.get('p_median'), '.3f')})"))
    cp = stats.get("cpcv") or {}
    if cp:
        context.append(("", "CPCV paths: median Sharpe / share of losing paths",
                        f"{_s(cp.get('path_sharpe_median'), '.3f')} / {_s(cp.get('prob_path_loss'), '.2f')}"))
    tried = _s(stats.get("n_trials_tried"), ".0f")
    if stats.get("n_configs") is not None:
        tried += f" ({_s(stats.get('n_configs'), '.0f')} distinct)"
    context += [
        ("", "degradation (OOS / IS rank_score)", _s(res.get("degradation", stats.get("degradation")), ".3f")),
        ("", "degradation (OOS / IS excess)", _s(stats.get("degradation_excess"), ".3f")),
        ("", "trials tried (all windows)", tried),
        ("", "windows", _s(oos.get("n_windows", len(res.get("windows") or [])), ".0f")),
        ("", "one book (docs/STATS.md)", book_text(stats)),
    ]
    rows += [(label, text, "", None) for name, label, text in context if not name or v.gate(name) is None]
    return pd.DataFrame([{"statistic": a, "value": b, "gate": c, "result": "" if ok is None else ("pass" if ok else "fail")}
                         for a, b, c, ok in rows])


def _gate_table_html(df: pd.DataFrame) -> str:
    body = "".join(
        "<tr>" + f"<td style='text-align:left'>{html.escape(r.statistic)}</td><td>{html.escape(r.value)}</td>"
        f"<td>{html.escape(r.gate)}</td><td>{_gate(r.result == 'pass') if r.result else ''}</td></tr>"
        for r in df.itertuples(index=False))
    return ("<table class=\"tbl\"><thead><tr><th>statistic</th><th>value</th><th>gate</th><th></th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


_EQUITY_STATS = (("total_return", "total return", ".1%"), ("cagr", "CAGR", ".1%"),
                 ("max_drawdown", "max drawdown", ".1%"), ("sharpe", "Sharpe (annualized)", ".2f"))


def _equity_bootstrap_html(stats: dict[str, Any]) -> str:
    """The block bootstrap of the OOS account: what it resamples, point (= the equity curve's) and interval of
    each figure, and the drawdown distribution."""
    b = stats.get("equity_bootstrap")
    if not isinstance(b, dict):
        return '<p class="note">no equity bootstrap (fewer than 10 OOS days, or a result written by an older accumopt)</p>'
    level = _s(b.get("level"), ".0%")
    rows = [{"statistic": label, "point (equity curve)": _s((b.get(k) or {}).get("point"), fmt),
             f"{level} lo": _s((b.get(k) or {}).get("lo"), fmt), f"{level} hi": _s((b.get(k) or {}).get("hi"), fmt)}
            for k, label, fmt in _EQUITY_STATS]
    dq = b.get("drawdown_quantiles") or {}
    dd = ", ".join(f"{k} {_s(v, '.1%')}" for k, v in dq.items())
    return (f"<p>resamples: {html.escape(str(b.get('resamples', '-')))}; {_s(b.get('reps'), '.0f')} resamples of "
            f"{_s(b.get('n_days'), '.0f')} days</p>" + _table_html(pd.DataFrame(rows))
            + f"<p>max drawdown over the resampled paths: {html.escape(dd)}; the actual one is at percentile "
            f"{_s(b.get('drawdown_percentile'), '.0f')}</p>")


def _cost_stress_html(stats: dict[str, Any]) -> str:
    """The cost-stress table and the sentence (and fragility flag) its own ``survives`` booleans give."""
    cs = pd.DataFrame(stats.get("cost_stress") or [])
    if cs.empty or not {"multiplier", "survives"} <= set(cs.columns):
        return '<p class="note">no cost-stress run</p>'
    fragile = flag_fragile(cs) if ((cs["multiplier"] == 1.0).any() and (cs["multiplier"] > 1.0).any()) else False
    shown = pd.DataFrame({c: [cell_text(c, v) for v in cs[c]] for c in cs.columns})  # as the terminal: +0.01%
    return (_table_html(shown) + f"<p>cost stress: {html.escape(cost_stress_wording(cs))}; cost-fragile: "
            f"<span class=\"{'fail' if fragile else 'pass'}\">{'YES' if fragile else 'no'}</span></p>")


def _verdict_block(v: Verdict) -> str:
    return f'<div class="verdict {"supported" if v.supported else "rejected"}" id="verdict">{html.escape(v.line)}</div>'


def _events_sections(page: Page, events: pd.DataFrame | None) -> None:
    if events is None or events.empty or "net_return" not in events.columns:
        return
    page.h2("Trade events: failure modes, ETF alignment, rule validation")
    closed, col = closed_trade_events(events)
    line = f"{len(closed)} closed out-of-sample trades (returns: {col.replace('_', ' ')})"
    if "parent_etf_available" in closed.columns:
        line += f"; parent ETF known for {int(closed['parent_etf_available'].fillna(False).astype(bool).sum())}"
    page.add(f"<p>{html.escape(line)}</p>")
    if "failure_mode" in events.columns:
        _try_figure(page, "fig-failure-modes", lambda: F.failure_mode_figure(events), "failure modes")
    if "parent_etf_aligned" in events.columns:
        _try_figure(page, "fig-etf-alignment", lambda: F.alignment_box_figure(events), "ETF alignment")
    rules = validate_rules(events)
    if len(rules):
        page.add("<h3>Rule validation (Mann–Whitney U, Benjamini–Hochberg q)</h3>")
        page.table(rules)


# The windows table: out-of-sample columns first (what the verdict stands on), then their in-sample counterparts;
# the training spans and the parameters in their own tables, so nothing hides behind a horizontal scroll.
_WINDOW_METRICS = ("closed_trades", "hit_rate", "avg_excess_return", "avg_return", "rank_score", "win_loss",
                   "portfolio_sharpe")
_WINDOW_LABELS = {"closed_trades": "trades", "hit_rate": "hit rate", "avg_excess_return": "excess/trade",
                  "avg_return": "return/trade", "rank_score": "rank score", "win_loss": "W/L",
                  "portfolio_sharpe": "portfolio Sharpe"}


def _window_tables(page: Page, summary: pd.DataFrame) -> None:
    page.h2("Windows")
    if summary.empty:
        page.note("no window")
        return
    cols = {"window": "window"}
    if {"test_start", "test_end"} <= set(summary.columns):
        summary = summary.assign(test=summary["test_start"].astype(str) + " .. " + summary["test_end"].astype(str))
        cols["test"] = "test window"
    for side, label in (("oos", "OOS"), ("is", "IS")):
        metrics = [m for m in _WINDOW_METRICS if f"{side}_{m}" in summary.columns]
        metrics += sorted(c[len(side) + 1:] for c in summary.columns
                          if c.startswith(f"{side}_") and c[len(side) + 1:] not in metrics)
        cols.update({f"{side}_{m}": f"{label} {_WINDOW_LABELS.get(m, m)}" for m in metrics})
    page.note("Out-of-sample (OOS) columns first: each window's winner on the unseen test window; in-sample (IS): the "
              "same winner on its training window. Returns are per trade, net of costs; excess is over the matched "
              "random-entry benchmark.")
    shown = summary[list(cols)]
    page.table(pd.DataFrame({cols[c]: [cell_text(c, v) for v in shown[c]] for c in cols}))
    span = [c for c in ("window", "train_start", "train_end", "test_start", "test_end", "in_reserve", "n_trials_tried",
                        "study") if c in summary.columns]
    page.h2("Training and test spans")
    page.table(summary[span])
    params = [c for c in summary.columns if c.startswith("param_")]
    page.h2("Best parameters per window")
    page.table(summary[["window", *params]].rename(columns={c: c[6:] for c in params}))


def build_walkforward_report(wf: Any, out_dir: str | Path = "output/reports", name: str | None = None,
                             events: pd.DataFrame | None = None, equity_dir: str | Path | None = None,
                             regime_comparison: pd.DataFrame | None = None) -> Path:
    """Write ``<out_dir>/<name>-walkforward.html`` and ``<equity_dir>/<name>_oos.html`` (default equity_dir: the
    ``equity_curves`` folder beside ``out_dir``); returns the report's path.

    ``wf``: a ``WalkForwardResult`` or the dict of ``load_walkforward``. ``name`` defaults to the result's spec name
    (``<spec>-final`` for a run that opened the final reserve, so its page never overwrites the other run's).
    ``events``: optional per-trade frame (``engine.outcomes.signal_events`` columns); when absent, the OOS trades
    frame is used if it carries failure_mode / parent_etf_aligned / signal_quality / net_return.
    ``regime_comparison``: the table of ``validate.regime_compare.compare_regimes`` (default: the run folder's
    ``regime_comparison.csv`` that ``load_walkforward`` read, if any) shown as its own section.
    """
    p = _parts(wf)
    res, summary, equity, stability = p["result"], p["summary"], p["equity"], p["stability"]
    if name is None:  # the run's name ([run].study_name), <name>-final for a run that opened the final reserve, as
        # its folder (walkforward_dir); a result saved before it was stored: the spec's name
        name = str(res.get("study") or res.get("spec") or "walkforward") + ("-final" if res.get("final") else "")
    name = safe_name(name)
    out = Path(out_dir)
    eq_dir = Path(equity_dir) if equity_dir is not None else out.parent / "equity_curves"
    stats = res.get("stats") or {}
    page = Page(f"walk-forward report: {name}")
    page.add(f"<h1>Walk-forward report: {html.escape(str(name))}</h1>")
    page.add(_verdict_block(p["verdict"]))
    page.add(_kv_html([("spec", res.get("spec", "-")), ("final reserve opened", bool(res.get("final"))),
                       ("generated", stamp())]))
    page.h2("Settings")
    rows = settings_rows(res.get("settings"))
    if rows:
        page.add(_kv_html(rows))
    else:
        page.note("not recorded: a run saved before result.json held its settings (run the walk-forward again)")
    for w in res.get("warnings") or []:
        page.note(str(w))
    page.h2("Deciding numbers")
    page.add(_gate_table_html(_deciding(res, p["verdict"])))
    page.add('<div class="grid"><div>')
    page.add("<h3>Out-of-sample account: block bootstrap</h3>")
    page.add(_equity_bootstrap_html(stats))
    page.add("</div><div>")
    page.add("<h3>Cost stress</h3>")
    page.add(_cost_stress_html(stats))
    page.add("</div></div>")
    for s in stats.get("pbo_skipped") or []:
        page.note(f"PBO skipped for {s}")
    for s in stats.get("dsr_skipped") or []:
        page.note(f"DSR skipped for {s}")
    for s in stats.get("spa_skipped") or []:
        page.note(f"SPA skipped for {s}")

    page.h2("Walk-forward equity")
    eq_fig = F.equity_figure(equity, summary if {"window", "test_start", "test_end"} <= set(summary.columns) else None)
    page.figure(eq_fig, "fig-equity")
    if not summary.empty:
        page.figure(F.is_oos_figure(summary), "fig-is-oos")
    page.h2("Parameter stability")
    if stability.empty:
        page.note("no parameter stability table")
    else:
        page.figure(F.stability_figure(stability), "fig-stability")
    _window_tables(page, summary)

    trades = p.get("trades")
    ev = events if events is not None else (trades if isinstance(trades, pd.DataFrame) and "net_return" in trades.columns
                                            and ({"failure_mode", "parent_etf_aligned"} & set(trades.columns)) else None)
    _events_sections(page, ev)
    regimes = p.get("regimes") if p.get("regimes") is not None else res.get("regimes")
    if regimes:
        page.h2("Regime comparison")
        _try_figure(page, "fig-regimes", lambda: F.regime_comparison_figure(pd.DataFrame(regimes)), "regime comparison")
    cmp = regime_comparison if regime_comparison is not None else p.get("regime_comparison")
    if isinstance(cmp, pd.DataFrame) and not cmp.empty:
        page.h2("Pooled vs regime-filtered vs regime-conditional (out of sample)")
        page.note("Each row is a walk-forward on the same windows, data and trial budget: the pooled study, the "
                  "study restricted to one market regime (entries on its closes only), and the study whose score "
                  "weights / buy threshold are searched per regime (bench/regime_compare.py).")
        page.add(_table_html(cmp))
    save_figure(eq_fig, eq_dir / f"{name}_oos.html")
    return page.write(out / f"{name}-walkforward.html")


def build_report(target: str, storage: Any = None, out_dir: str | Path = "output/reports",
                 walkforward_root: str | Path = "output/walkforward", name: str | None = None) -> Path:
    """The HTML report of ``target``: a walk-forward run directory (it holds ``result.json``), the name of a run
    under ``walkforward_root``, or a study in ``storage``. A name that is both a study and a run is the study.
    The page is written under ``out_dir`` with a safe file name (``optimizer.paths.safe_name``) made of ``name``
    (default: the run folder's or the study's name)."""
    wf_dir = _report_run_dir(target, storage, walkforward_root)
    if wf_dir is not None:
        wfd = load_walkforward(wf_dir)
        return build_walkforward_report(wfd, out_dir=out_dir, name=name if name is not None else wf_dir.name,
                                        events=wfd["events"] if len(wfd["events"]) else None)
    try:
        return build_study_report(storage, target, out_dir=out_dir, name=name)
    except DataError as e:  # neither: say where a run of that name was looked for, and which runs are there
        if not str(e).startswith(f"no study named {target!r}"):
            raise
        root = Path(walkforward_root)
        runs = sorted(d.name for d in root.iterdir() if (d / "result.json").exists()) if root.is_dir() else []
        raise DataError(f"{e}; nor a walk-forward run {root / safe_name(target)} (runs there: "
                        f"{', '.join(runs) or '(none)'})") from None


def _report_run_dir(target: str, storage: Any, walkforward_root: str | Path) -> Path | None:
    """The walk-forward run folder ``build_report(target)`` reports, or None when it reports the study ``target``
    (a run folder given as a path; else the run ``<walkforward_root>/<target>`` unless a study has that name)."""
    p = recover_folder(target)  # a walk-forward save killed between its two renames: its new run renamed in
    wf_dir = p if (p / "result.json").exists() else recover_folder(Path(walkforward_root) / safe_name(target))
    if (wf_dir / "result.json").exists() and (wf_dir == p or not _study_exists(target, storage)):
        return wf_dir
    return None


def report_shadowed_run(target: str, storage: Any = None,
                        walkforward_root: str | Path = "output/walkforward") -> Path | None:
    """The walk-forward run folder that ``target`` also names when ``build_report(target)`` reports the study of
    that name instead (a name that is both is the study): the caller says so and how to report the run. None when
    the name is not ambiguous."""
    if _report_run_dir(target, storage, walkforward_root) is not None:
        return None
    wf_dir = Path(walkforward_root) / safe_name(target)
    return wf_dir if (wf_dir / "result.json").exists() else None


def _study_exists(name: str, storage: Any) -> bool:
    """Whether ``storage`` holds study ``name`` (a storage file that does not exist holds none)."""
    try:
        st, _ = open_storage(storage)
    except DataError:
        return False
    return name in study_names(st)
