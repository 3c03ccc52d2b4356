"""The Python API for notebooks and scripts: the whole research path in a few documented calls.

Everything here is also reachable as ``optimizer.<name>`` (``import optimizer`` stays cheap: this module, and the
libraries it needs, load on first use). Each function calls the same library code as the command line, so a
notebook and ``accumopt`` give the same numbers::

    import optimizer as ao

    db = ao.synth_store("output/nb/store.duckdb")               # the embedded synthetic market (or your store)
    panel = ao.load_panel(db, "tier1+3")                         # (date x symbol) matrices from daily_metrics
    ev = ao.evaluate({"variant": "B", "buy_threshold": 65}, panel)
    ev.metrics                                                   # one row: hit_rate, avg_return, avg_excess_return, ...
    ev.trades.head()                                             # one row per trade: symbol, dates, prices, returns, exit
    run = ao.run_study("studies/demo.toml", db, "sqlite:///output/nb/studies.db", n_trials=40)
    ao.best_params("sqlite:///output/nb/studies.db", run.study_name)
    wf = ao.walk_forward("studies/demo.toml", db, "sqlite:///output/nb/studies.db")
    wf.verdict.line                                              # 'edge supported: ...' or 'not supported: ...'
    ao.build_report(wf, out_dir="output/nb/reports")             # self-contained HTML
    ao.sandbox_figure(db, "NVDA", params=ev.params)              # plotly Figure: price, trades, score, flows

A study spec is a TOML file path, TOML text, a ``dict`` of the same sections (``{"study": {...}, "space": {...}}``)
or a ``StudySpec``. Parameters are a flat dict of registry parameters (``optimizer.params``; presets such as
``weights = "balanced"`` and ``use_*`` switches accepted) or a ``study best --format json`` document.
Dates (``start``, ``end``, a spec's [data] dates) are text ``YYYY-MM-DD``, a ``datetime.date`` or a midnight
``pd.Timestamp`` without a time zone (a time of day is refused, never read as its day).
Errors are the package's ``AccumoptError`` subclasses with one line naming the parameter and the rule.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
import tomli_w

from optimizer.backtest import BACKTEST_METRICS, backtest
from optimizer.data.calendar import INSTANT_DAY_RULE, as_date, is_midnight
from optimizer.data.metrics import store_metrics_staleness
from optimizer.data.splitcheck import panel_split_lines
from optimizer.data.store import connect
from optimizer.data.synth import SynthConfig, synth_new_store
from optimizer.engine.evaluate import Config, Evaluator, Result
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import REGIME_NAMES, regime_entry_mask
from optimizer.errors import ParameterError, SpecError, check_param
from optimizer.params import engine_params
from optimizer.report.research import build_report as _build_report
from optimizer.report.research import build_walkforward_report
from optimizer.report.sandbox import sandbox_figure as _sandbox_figure
from optimizer.report.sandbox import sandbox_run
from optimizer.paths import existing_store, output_root, resolve_db, resolve_storage
from optimizer.study.data import load_universe_panel, universe_symbols
from optimizer.study.inspect import CompareResult, best_trial_json
from optimizer.study.inspect import compare_studies as _compare_studies
from optimizer.study.inspect import list_studies as _list_studies
from optimizer.study.inspect import show_study as _show_study
from optimizer.study.inspect import trial_detail
from optimizer.study.run import StudyRunResult
from optimizer.study.run import run_study as _run_study
from optimizer.study.run import unreproducible_note
from optimizer.study.paramsfile import ParamsRecord, params_record
from optimizer.study.reserve import guard_end, opening_warning, record_if_opened
from optimizer.study.spec import StudySpec, check_study_name, load_spec, parse_spec
from optimizer.validate.walkforward import WalkForwardResult, run_walkforward, save_walkforward

__all__ = [
    "Evaluation", "open_store", "synth_store", "load_panel", "evaluate", "study_spec", "run_study", "best_params",
    "list_studies", "show_study", "compare_studies", "walk_forward", "build_report", "sandbox_figure",
]


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial INFO lines and its experimental-feature warnings off for the duration of one call (a
    notebook cell shows the result, not 300 log lines); the caller's settings are restored afterwards."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _warn(message: str | None) -> None:
    """A warning the command line prints in red (a repeated opening of the final reserve) as a UserWarning, which a
    notebook shows under the cell."""
    if message:
        warnings.warn(message, UserWarning, stacklevel=3)


def _check_final(final: Any) -> None:
    """``final`` opens the final reserve (recorded for good in the store's ledger): only a real True does, a truthy
    string such as "False" or "no" is refused, never read as yes."""
    check_param(isinstance(final, bool), "final", "True or False (True opens the final reserve)", final)


def _check_progress(progress: Any) -> None:
    """``progress`` shows a progress bar on stderr: only a real True or False (a string "no" is truthy: it was read
    as yes and drew the bar)."""
    check_param(isinstance(progress, bool), "progress", "True or False (True shows a progress bar on stderr)",
                progress)


def _int(value: Any) -> Any:
    """A numpy integer (a trial number or count read from a DataFrame, ``df["number"].iloc[0]``) as the Python
    integer it is; any other value as given, for the callee's check to accept or refuse."""
    return int(value) if isinstance(value, np.integer) else value


def _storage(storage: Any) -> str | None:
    """``storage`` as the Optuna storage URL the command line's --storage takes (None: the default); a file path
    (a ``Path``, or text without a scheme) or another type is a ParameterError saying the URL to write, never an
    AttributeError of Optuna's or SQLAlchemy's URL parser."""
    if storage is None or (isinstance(storage, str) and ":" in storage):
        return storage
    if isinstance(storage, (str, Path)):
        raise ParameterError(f"storage must be an Optuna storage URL (sqlite:///PATH, journal:PATH, postgresql://...), "
                             f"not a file path; for the SQLite file write storage='sqlite:///{Path(storage)}', got "
                             f"storage={str(storage)!r}")
    raise ParameterError(f"storage must be an Optuna storage URL (sqlite:///PATH, journal:PATH, postgresql://...), "
                         f"got storage of type {type(storage).__name__}: {storage!r}")


def _db(db: Any, required: bool = False) -> str | Path | None:
    """``db`` as given when it is a store path (text or a ``Path``; None: the default store, unless ``required``);
    another type is a ParameterError naming db (``load_panel(5)`` was a TypeError of ``os.fspath``)."""
    if isinstance(db, (str, Path)) and str(db).strip() or (db is None and not required):
        return db
    raise ParameterError(f"db must be the path of a DuckDB store (text or a Path){'' if required else ' or None'}, "
                         f"got db={db!r}")


def open_store(db: str | Path | None = None, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to the store (default: ``$ACCUMOPT_DB``, else ``<output root>/darkpool.duckdb``),
    read-only (a missing store is a DataError saying how to make one) unless asked; a writable open creates or
    migrates the schema. DuckDB opens a file in one mode per process: close it (or use ``with``) when done::

        with ao.open_store(db) as con:
            con.sql("SELECT symbol, count(*) FROM daily_metrics GROUP BY 1").df()
    """
    check_param(isinstance(read_only, bool), "read_only", "True or False", read_only)
    return connect(resolve_db(_db(db)), read_only=read_only)


def synth_store(db: str | Path, raw_dir: str | Path | None = None, *, seed: int = 7, effect: float = 3.0,
                start: str = "2023-01-03", end: str = "2024-12-31", universe: str | Sequence[str] = "tier1+3",
                family: str = "ratio") -> Path:
    """Build the embedded synthetic market into the store ``db`` (raw files under ``raw_dir``, default beside it)
    through the real ingest and ``daily_metrics`` path; ``effect=0`` is a null market with no edge. An existing
    store is reused as is; a build that fails or is interrupted leaves no store at ``db`` (the next call builds it
    again). Returns ``db`` as a Path::

        db = ao.synth_store("output/nb/store.duckdb", effect=3.0)
    """
    p = Path(_db(db, required=True))
    if not p.exists():
        cfg = SynthConfig(seed=seed, start=start, end=end, universe=universe, effect=effect, family=family)
        synth_new_store(cfg, Path(raw_dir) if raw_dir is not None else p.parent / f"{p.stem}_raw", p)
    return p


def load_panel(db: str | Path | None = None, universe: Any = "tier1+3", start: str | None = None,
               end: str | None = None, *, final: bool = False) -> Panel:
    """The (date x symbol) panel of ``universe`` (a tier name, ``all``, a comma list or a list of symbols) in
    [start, end] from the store, the one the engine, studies and ``backtest`` read. ``panel.dates``,
    ``panel.symbols``, ``panel["close"]`` (a T x N array)::

        panel = ao.load_panel(db, "tier1", start="2024-01-01")

    The final reserve is guarded as ``backtest`` guards it: the default ``end`` is the last session before the
    universe's reserve (the last 20% of its sessions) and an ``end`` inside it is a ParameterError, unless
    ``final=True`` (recorded in the store's reserve ledger, like ``backtest --final``). A daily_metrics older than
    the store's raw data (files ingested since ``accumopt metrics build``) is a UserWarning, as every command says it.
    """
    _check_final(final)
    _check_days(start=start, end=end)
    path = existing_store(resolve_db(_db(db)))
    end, reserve_start = guard_end(path, universe_symbols(path, universe), end, final, "load_panel (end)")
    panel = load_universe_panel(path, universe, start, end)
    _warn(store_metrics_staleness(path))  # a re-published day, a revised close, a split ingested since: not in it
    for w in panel_split_lines(panel):  # a split the store does not record (docs/DATA.md "Splits")
        _warn(w)
    if final and len(panel.dates):
        earlier = record_if_opened(path, reserve_start, panel.dates[-1], "api.load_panel(final=True)")
        _warn(opening_warning(reserve_start, earlier or []))
    return panel


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One configuration on one panel: ``metrics`` (a one-row DataFrame, the ``backtest`` metrics first),
    ``trades`` (one row per trade), the flat ``params`` (every registry parameter), the engine ``config`` and
    ``result`` (display scores, the raw ``Trades``)."""

    params: dict[str, Any]
    config: Config
    metrics: pd.DataFrame
    trades: pd.DataFrame
    result: Result


def _document(params: Mapping[str, Any] | None) -> ParamsRecord:
    """The configuration ``params`` holds, read as ``--params FILE`` reads the file (``paramsfile.params_record``):
    a flat dict, ``{"params": {...}, "costs": ..., "universe": ..., "start": ..., "end": ..., "regime": ...,
    "min_periods": ...}`` or a ``study best`` document (or its record alone)."""
    if params is None:
        return ParamsRecord({})
    if not isinstance(params, Mapping):
        raise ParameterError(f"params must be a mapping of parameter names to values, got {type(params).__name__}")
    return params_record(params, "params")


def evaluate(params: Mapping[str, Any] | None = None, panel: Panel | None = None, *, db: str | Path | None = None,
             universe: Any = None, start: str | None = None, end: str | None = None, final: bool = False,
             allow_data_change: bool = False, regime: str | None = None) -> Evaluation:
    """Evaluate one configuration over every session of ``panel`` (or of ``universe``, default tier1+3, in
    [start, end] loaded from ``db``), exactly as ``accumopt backtest --no-save`` does. A ``study best`` document
    runs with its regime filter and min_periods, as ``backtest --params`` runs it: on ``panel``, over the panel's
    sessions; without a panel, on the trial's own universe, panel and signal span from ``db`` (``universe`` /
    ``start`` / ``end`` override them), so the metrics are the trial's; a store whose data differs from the trial's
    is refused unless ``allow_data_change=True`` (``backtest --allow-data-change``). Without a panel the span ends
    before the final reserve unless ``final=True`` (``backtest --final``, recorded in the reserve ledger). A panel
    fixes the store, universe and sessions: ``panel`` with ``db`` / ``universe`` / ``start`` / ``end`` / ``final``
    is a ParameterError, not a silent choice; a loose document (no trial record) stating its own ``universe`` /
    ``start`` / ``end`` runs on the panel with a UserWarning naming them. ``regime``: the regime filter on entries (``backtest --regime``,
    e.g. ``"RISK_ON"``; default: the document's, else ALL)::

        ev = ao.evaluate({"variant": "D", "z_window": 30, "buy_threshold": 80, "exit": "first_dist"}, panel)
        ev.metrics[["closed_trades", "hit_rate", "avg_excess_return"]]
        ev.trades.groupby("exit_reason")["net_ret"].mean()
    """
    check_param(isinstance(allow_data_change, bool), "allow_data_change", "True or False", allow_data_change)
    _check_final(final)
    _check_days(start=start, end=end)
    check_param(regime is None or regime in REGIME_NAMES, "regime", f"None or one of {', '.join(REGIME_NAMES)}",
                regime)
    if panel is not None:  # a panel fixes the store, universe and sessions: a loading option would be ignored
        if not isinstance(panel, Panel):
            raise ParameterError(f"panel must be a Panel from ao.load_panel(db, ...) (a store path goes in db=...), "
                                 f"got panel of type {type(panel).__name__}: {str(panel)[:80]!r}")
        given = {k: v for k, v in (("db", db), ("universe", universe), ("start", start), ("end", end),
                                   ("final", final or None)) if v is not None}
        if given:
            raise ParameterError(f"evaluate takes a panel or {'/'.join(given)}, not both: the panel already fixes the "
                                 "store, universe and sessions (ao.load_panel(db, universe, start, end) loads "
                                 f"another), got panel and {', '.join(f'{k}={v!r}' for k, v in given.items())}")
    doc = _document(params)  # read as backtest --params reads the file
    flat, record = doc.params, doc.record  # a trial's record: its regime filter and min_periods, as backtest runs it
    cfg = Config.from_params(engine_params(flat))
    if panel is None and record is not None:  # and its universe, spans and data check
        run = backtest(flat, resolve_db(_db(db)), universe, start, end, save=False, record=record, final=final,
                       allow_data_change=allow_data_change, regime=regime)
        res, panel = run.result, run.panel
        for w in run.warnings:
            _warn(w)
    else:
        stated = [(k, v) for k, v in (("universe", doc.universe), ("start", doc.start), ("end", doc.end))
                  if v is not None]
        if panel is not None and record is None and stated:  # the panel fixes them: said, never silently dropped
            _warn(f"evaluate: the document's {', '.join(f'{k}={v!r}' for k, v in stated)} not applied: the panel "
                  "fixes the universe and sessions (evaluate(document, db=...) runs on the document's; "
                  "ao.load_panel(db, universe, start, end) loads that panel)")
        if panel is None:  # a loose document's universe and span, as backtest --params runs them
            uni = universe if universe is not None else (doc.universe or "tier1+3")
            panel = load_panel(db, list(uni) if isinstance(uni, tuple) else uni,
                               start if start is not None else doc.start, end if end is not None else doc.end,
                               final=final)
        reg = regime if regime is not None else record.regime if record is not None else doc.regime  # and its
        # regime filter (the argument first, as --regime over the file's) and min_periods
        res = Evaluator(panel, min_periods=record.min_periods if record is not None else doc.min_periods).run(
            cfg, entry_ok=regime_entry_mask(panel, reg) if reg is not None else None)
    m = dict(res.metrics)
    order = [k for k in BACKTEST_METRICS if k in m] + [k for k in m if k not in BACKTEST_METRICS]
    metrics = pd.DataFrame([{k: m[k] for k in order}])
    trades = res.trades.to_frame(panel)
    return Evaluation(cfg.to_params(), cfg, metrics, trades, res)


def _toml_ready(value: Any, key: str) -> Any:
    """A dict spec's value as TOML can write it: a path as its text, a numpy scalar as the Python number; None
    (TOML has no null) is a SpecError naming the key, never a TypeError of the TOML writer."""
    if isinstance(value, Mapping):
        return {str(k): _toml_ready(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_toml_ready(v, key) for v in value]
    if value is None:
        raise SpecError(key, "is None, which TOML cannot hold: leave the key out (its default applies)")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, dt.datetime):  # pd.Timestamp too: a day at midnight is that day; a time of day is refused
        return _spec_day(value, key)
    if isinstance(value, np.generic):
        return value.item()
    if not isinstance(value, (str, int, float, dt.date, dt.time)):  # a set (no order), an object: no TOML value
        raise SpecError(key, f"is a {type(value).__name__}, which TOML cannot hold: write a list, a number, text or "
                             f"a table, got {value!r}")
    return value


def _spec_day(value: dt.datetime, key: str) -> dt.date:
    """A datetime given for a spec date (``pd.Timestamp("2024-01-02")``, ``datetime(2024, 1, 2)``) as the day it
    is, when it is a tz-naive midnight; a time of day, a time zone or NaT is a SpecError naming the key (a spec
    date is a session, YYYY-MM-DD: never a day guessed from an instant)."""
    if pd.isna(value):
        raise SpecError(key, "is NaT: write a date (YYYY-MM-DD) or leave the key out")
    ts = pd.Timestamp(value)
    if not is_midnight(ts):
        raise SpecError(key, f"must be {INSTANT_DAY_RULE}, got {value!r}, which has a time of day or a time zone")
    return ts.date()


def _check_days(**values: Any) -> None:
    """A ``start`` / ``end`` argument given as a datetime (``pd.Timestamp``, ``datetime``, ``np.datetime64``) must be
    a midnight without a time zone, the day it names, as in a spec (``calendar.as_date``, the one rule, checked
    here before any store is opened)."""
    for name, value in values.items():
        if isinstance(value, (dt.datetime, np.datetime64)):
            as_date(value, name)


def study_spec(spec: str | Path | Mapping[str, Any] | StudySpec) -> StudySpec:
    """A validated ``StudySpec`` from a TOML file path (a one-line string without ``=``, or an existing file), TOML
    text, a dict of sections or a StudySpec. A dict is written as TOML first (a ``Path`` as its text, a numpy
    number as the number, a ``datetime.date`` or midnight ``pd.Timestamp`` as that day, a time of day refused; a
    None is a SpecError naming its key: TOML has no null, leave the key out), so the study
    stores a spec text that ``accumopt`` reads back the same::

        spec = ao.study_spec({"study": {"name": "nb"}, "data": {"universe": "tier1"},
                              "space": {"variant": {"type": "categorical", "choices": ["B", "D"]}},
                              "sampler": {"name": "tpe", "seed": 1}, "run": {"n_trials": 20}})
    """
    if isinstance(spec, StudySpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(tomli_w.dumps(_toml_ready(spec, "")))
    if isinstance(spec, Path) or (isinstance(spec, str) and "\n" not in spec and (
            spec.strip().endswith(".toml") or "=" not in spec or Path(spec).exists())):  # one line and no key: a path
        return load_spec(spec)
    if isinstance(spec, str):
        return parse_spec(spec)
    raise ParameterError(f"spec must be a path, TOML text, a dict or a StudySpec, got {type(spec).__name__}")


# what a refused resume tells a caller of run_study (the command line's says --name / --new-name); new_name only
# applies to a changed spec, not to a study refused for other data or folds
_RUN_REMEDY = "Pass name='NEW' to start a new study (for a changed spec, new_name=True picks NAME-2, NAME-3, ...)"


def run_study(spec: str | Path | Mapping[str, Any] | StudySpec, db: str | Path | None = None,
              storage: str | None = None, n_trials: int | None = None, *, name: str | None = None,
              new_name: bool = False, timeout: float | None = None, progress: bool = False,
              jobs: int = 1) -> StudyRunResult:
    """Create or resume the spec's study and run it to ``n_trials`` finished trials (``accumopt study run``);
    ``db`` / ``storage`` (an Optuna storage URL) as on the command line: env ``ACCUMOPT_DB`` / ``ACCUMOPT_STORAGE``,
    then the spec's [data].database / [run].storage, else ``<output root>/darkpool.duckdb`` / ``studies.db``.
    ``name``: the study's name (default: the spec's); a study of that name made from another spec is refused, and
    ``new_name=True`` starts (or resumes) ``NAME-2``, ``NAME-3``, ... instead, as ``study run --new-name``;
    ``jobs``: worker processes on this machine (``study run --jobs``).
    ``.study_name``, ``.counts``, ``.best_value``, ``.best_params`` and ``.study`` (the ``optuna.Study``). What
    ``study run`` prints as warnings (a ``[seed_from]`` study ranked on other data, failed trials, a seeded spec
    run with ``jobs`` > 1, whose trials are not reproducible, a Ctrl-C that stopped the run after its running
    trial: call again to resume) comes as a UserWarning under the cell::

        run = ao.run_study("studies/phase_a_coarse.toml", db, "sqlite:///output/nb/studies.db")
        df = run.study.trials_dataframe()             # Optuna's table: value_<objective>, params_<name>, user_attrs_...
        df.sort_values("value_composite_rank").tail()  # the value column is named after the objective
    """
    if name is not None:
        check_study_name(name, "name")
    check_param(isinstance(new_name, bool), "new_name", "True or False", new_name)
    _check_progress(progress)
    jobs = _int(jobs)
    check_param(isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1, "jobs",
                "an integer >= 1 (worker processes on this machine, study run --jobs)", jobs)
    with _quiet_optuna():
        s = study_spec(spec)
        _warn(store_metrics_staleness(resolve_db(_db(db), s.data.database)))
        res = _run_study(s, resolve_db(_db(db), s.data.database), resolve_storage(_storage(storage), s.run.storage),
                         n_trials=_int(n_trials), timeout=timeout, name=name, new_name=new_name, progress=progress,
                         remedy=_RUN_REMEDY, jobs=jobs)
    for w in res.warnings:  # what ``study run`` prints on stderr (a [seed_from] study ranked on other data)
        _warn(w)
    if jobs > 1:  # as ``study run --jobs N`` says it
        _warn(unreproducible_note(s, f"jobs={jobs}: {jobs} trials run at once and finish in an order nobody controls",
                                  "jobs=1"))
    if res.first_failure:
        _warn(f"{res.counts['failed']} trial(s) failed; first failure, {res.first_failure}")
    if res.interrupted:  # Ctrl-C in the cell: the running trial finished, the study stopped
        _warn(f"study {res.study_name!r} stopped by Ctrl-C with {res.counts['complete'] + res.counts['pruned']} "
              "finished trials; run_study again resumes it")
    return res


def best_params(storage: str | None, study: str, number: int | None = None) -> dict[str, Any]:
    """The best trial of ``study`` (or trial ``number``) as the ``study best --format json`` document:
    ``{"study", "number", "value", "params", "metrics", "config"}`` (``values`` for several objectives; ``config``
    is the trial's complete configuration record: costs, universe, span, regime filter, data fingerprint; a trial
    stored before such records has ``costs`` instead); pass it to ``evaluate`` or ``sandbox_figure``::

        best = ao.best_params("sqlite:///output/nb/studies.db", "phase_b_fine")
        ao.evaluate(best, panel).metrics
    """
    number = _int(number)
    check_param(number is None or (isinstance(number, int) and not isinstance(number, bool)), "number",
                "None or a trial number (an integer)", number)
    return best_trial_json(_storage(storage), study, number)


def list_studies(storage: str | None = None, *, internal: bool = False) -> pd.DataFrame:
    """One row per study of the storage (``accumopt study list``): trial counts by state, best value, created (a
    ``pd.Timestamp`` in the machine's local time with its UTC offset);
    ``internal=True`` also lists the tool's marker studies (``study list --all``: a walk-forward's
    ``<study>-wf-claims``)::

        ao.list_studies("sqlite:///output/nb/studies.db")[["name", "complete", "pruned", "best_value"]]
    """
    check_param(isinstance(internal, bool), "internal", "True or False", internal)
    return _list_studies(_storage(storage), internal=internal)


def show_study(storage: str | None, study: str, top: int | None = None, *,
               trial: int | None = None) -> pd.DataFrame | dict[str, Any]:
    """The ``top`` best trials of ``study`` (``accumopt study show``, default 10): value, ``param_<name>`` per
    parameter, the key metrics and the wall time; the Pareto front for a multi-objective study. ``trial=N``: that
    one trial in any state (``study show NAME --trial N --format json``), a dict of its state, value, every
    parameter and metric, why it was pruned or lost, and its per-fold results (``folds``); ``top`` is then refused::

        ao.show_study("sqlite:///output/nb/studies.db", "phase_b_fine", top=5)
        ao.show_study("sqlite:///output/nb/studies.db", "phase_b_fine", trial=12)["folds"]
    """
    trial = _int(trial)
    if trial is not None:
        check_param(isinstance(trial, int) and not isinstance(trial, bool), "trial",
                    "None or a trial number (an integer)", trial)
        if top is not None:
            raise ParameterError(f"show_study takes top or trial, not both (trial=N shows that one trial), got "
                                 f"top={top!r} and trial={trial!r}")
        return trial_detail(_storage(storage), study, trial)
    return _show_study(_storage(storage), study, top=10 if top is None else _int(top))


def compare_studies(storage: str | None, studies: str | Sequence[str]) -> CompareResult:
    """Compare studies (``accumopt study compare``; ``studies``: a list of names, or one name): ``.summary`` (trial
    counts, best, mean seconds per complete / pruned trial, time saved by pruning, the kernel warm-up kept out of
    the trial times), ``.best_so_far``, ``.prune_fold_hist``, ``.intermediate``::

        ao.compare_studies("sqlite:///output/nb/studies.db", ["phase_a_coarse", "phase_b_fine"]).summary
    """
    names = [studies] if isinstance(studies, str) else (
        list(studies) if isinstance(studies, Iterable) and not isinstance(studies, (Mapping, bytes)) else None)
    check_param(bool(names) and all(isinstance(n, str) for n in names), "studies",
                "a study name or a list of study names (not empty)", studies)
    return _compare_studies(_storage(storage), names)


def walk_forward(spec: str | Path | Mapping[str, Any] | StudySpec, db: str | Path | None = None,
                 storage: str | None = None, *, final: bool = False, n_trials: int | None = None,
                 out_dir: str | Path | None = None, progress: bool = False, jobs: int = 1) -> WalkForwardResult:
    """Re-optimize on rolling train windows and judge each winner on the following unseen window
    (``accumopt walkforward``); ``out_dir``: also save the run there (``accumopt report DIR`` reads it); ``jobs``:
    local processes running windows at once (``--jobs``; the result is the same).
    ``.verdict`` (``.line``, ``.supported``, ``.gates``), ``.summary`` (one row per window), ``.trades`` (the
    stitched out-of-sample trades), ``.oos`` and ``.stats``::

        wf = ao.walk_forward("studies/demo.toml", db, "sqlite:///output/nb/studies.db")
        print(wf.verdict.line)
        wf.summary[["window", "oos_closed_trades", "oos_avg_excess_return"]]
    """
    _check_final(final)
    _check_progress(progress)
    jobs = _int(jobs)
    check_param(isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1, "jobs",
                "an integer >= 1 (local processes running windows at once, walkforward --jobs)", jobs)
    s = study_spec(spec)
    _warn(store_metrics_staleness(resolve_db(_db(db), s.data.database)))
    with _quiet_optuna():
        res = run_walkforward(s, resolve_db(_db(db), s.data.database), resolve_storage(_storage(storage), s.run.storage),
                              final=final,
                              progress=progress,
                              n_trials=_int(n_trials), out_dir=None, jobs=jobs)
    if out_dir is not None:
        save_walkforward(res, out_dir)
    return res


def build_report(target: WalkForwardResult | str | Path, storage: str | None = None,
                 out_dir: str | Path | None = None, name: str | None = None) -> Path:
    """Write the self-contained HTML report of a ``WalkForwardResult`` (as returned by ``walk_forward``), of a saved
    walk-forward folder, of a run name under ``<output root>/walkforward`` or of a study name in ``storage``
    (``accumopt report``); ``out_dir`` default: ``<output root>/reports`` (the root: env ``ACCUMOPT_OUTPUT``, else
    ``output``, as the command line); a walk-forward report also writes its out-of-sample equity page to
    ``equity_curves/`` beside ``out_dir``, as ``accumopt report`` does under the root; ``name``: the page's file
    name (default: the run's or the study's name, ``<spec>-final`` for a run that opened the reserve); returns its
    path::

        path = ao.build_report(wf, out_dir="output/nb/reports")   # open it in a browser, or IFrame(path) in Jupyter
    """
    check_param(name is None or (isinstance(name, str) and name.strip() != ""), "name",
                "None or the page's file name (text)", name)
    root = output_root()
    out_dir = root / "reports" if out_dir is None else out_dir
    if isinstance(target, WalkForwardResult):
        return build_walkforward_report(target, out_dir=out_dir, name=name)
    check_param(isinstance(target, (str, Path)), "target",
                "a WalkForwardResult, a walk-forward folder, a run name or a study name", target)
    return _build_report(str(target), _storage(storage), out_dir=out_dir, walkforward_root=root / "walkforward",
                         name=name)


def sandbox_figure(db: str | Path | None, ticker: str, params: Mapping[str, Any] | None = None, *,
                   start: str | None = None, end: str | None = None, universe: Any = None,
                   dot_mode: str = "current", final: bool = False) -> go.Figure:
    """The signal-sandbox Figure of ``ticker`` for a configuration (``params``: a flat dict or a ``study best``
    document; default: the engine defaults): price with its entries and exits (the trades ``backtest`` reports),
    its score and thresholds, the flow inputs and three score variants (a ``study best`` document: simulated as
    ``backtest --params`` reproduces the trial: its span, regime filter and min_periods); ``start`` / ``end`` limit
    what is drawn;
    the final reserve only with ``final=True`` (as ``backtest``)::

        fig = ao.sandbox_figure(db, "NVDA", best, start="2024-01-01")
        fig.show()                                 # or fig.write_html("nvda.html")
    """
    _check_final(final)
    _check_days(start=start, end=end)
    doc = _document(params)  # read as sandbox --params reads the file
    loose = doc.record is None
    _warn(store_metrics_staleness(resolve_db(_db(db))))
    run = sandbox_run(resolve_db(_db(db)), ticker, start, end if end is not None or not loose else doc.end,
                      params=doc.params or None, universe=universe or (doc.universe if loose else None), final=final,
                      record=doc.record,
                      regime=doc.regime, span_start=doc.start if loose else None,
                      min_periods=doc.min_periods if loose else None)
    for w in run.warnings:
        _warn(w)
    return _sandbox_figure(run.panel, ticker, start, end, dot_mode=dot_mode, config=run.config, trades=run.trades,
                           min_periods=run.min_periods, settings=run.settings)
