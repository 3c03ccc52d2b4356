"""Daily accumulation/distribution analytics (the evening workflow), as library functions.

* :mod:`.scanner` — full-market FINRA short-sale scanner (every symbol, DuckDB SQL), ``scanner_daily_metrics``.
* :mod:`.tables` — per-ticker daily tables from ``daily_metrics`` (rich console + HTML with the disclaimer).
* :mod:`.plots` — pressure plots (layered 4-panel / short-only) and OHLCV price charts (plotly); written with
  ``save_figure`` (``optimizer.report.files``, re-exported here).
* :mod:`.constituents` — index/ETF constituent files and weighted pressure aggregation.

Each producer returns DataFrames / plotly Figures / written paths; each has a ``render_*`` companion that prints
a rich table to a given Console (the CLI commands are thin wrappers).
"""

from __future__ import annotations

from optimizer.analytics.constituents import PROXY_MAP, aggregate_pressure, load_constituents, render_aggregate
from optimizer.analytics.plots import (
    pressure_data,
    pressure_plot,
    price_chart,
    price_data,
    render_pressure,
    render_price,
    resample_ohlcv,
)
from optimizer.analytics.scanner import ScanResult, render_scan, scan, write_scan
from optimizer.analytics.tables import DISCLAIMER, daily_table, engine_scores, render_daily_table, write_daily_table_html
from optimizer.report.files import save_figure

__all__ = [
    "ScanResult",
    "scan",
    "write_scan",
    "render_scan",
    "DISCLAIMER",
    "daily_table",
    "engine_scores",
    "write_daily_table_html",
    "render_daily_table",
    "pressure_data",
    "pressure_plot",
    "price_data",
    "price_chart",
    "resample_ohlcv",
    "save_figure",
    "render_pressure",
    "render_price",
    "PROXY_MAP",
    "load_constituents",
    "aggregate_pressure",
    "render_aggregate",
]
