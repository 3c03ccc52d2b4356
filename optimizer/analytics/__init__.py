"""Daily accumulation/distribution analytics (the evening workflow), as library functions.

* :mod:`.scanner` — full-market FINRA short-sale scanner (every symbol, DuckDB SQL), ``scanner_daily_metrics``.
* :mod:`.tables` — per-ticker daily tables from ``daily_metrics`` (rich console + HTML with the disclaimer).
* :mod:`.plots` — pressure plots (layered 4-panel / short-only) and OHLCV price charts (plotly); written with
  ``save_figure`` (``optimizer.report.files``, re-exported here).
* :mod:`.constituents` — index/ETF constituent files and weighted pressure aggregation.

Each producer returns DataFrames / plotly Figures / written paths; each has a ``render_*`` companion that prints
a rich table to a given Console (the CLI commands are thin wrappers).

A name of ``__all__`` loads its module on first use (``optimizer._lazy``): importing one module of the package (the
scanner, as the evening does) does not import the others (plotly, the engine's kernels).
"""

from __future__ import annotations

from optimizer._lazy import lazy_exports

# name -> the module that defines it (its home; the names are re-exported here, loaded on first use: PEP 562)
_EXPORTS = {
    **dict.fromkeys(("PROXY_MAP", "aggregate_pressure", "load_constituents", "render_aggregate"),
                    "optimizer.analytics.constituents"),
    **dict.fromkeys(("pressure_data", "pressure_plot", "price_chart", "price_data", "render_pressure", "render_price",
                     "resample_ohlcv"), "optimizer.analytics.plots"),
    **dict.fromkeys(("ScanResult", "render_scan", "scan", "write_scan"), "optimizer.analytics.scanner"),
    **dict.fromkeys(("DISCLAIMER", "daily_table", "engine_scores", "render_daily_table", "write_daily_table_html"),
                    "optimizer.analytics.tables"),
    "save_figure": "optimizer.report.files",
}

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
