"""Data layer: the DuckDB store, ingest of raw files, fetchers, the synthetic market and daily_metrics."""

__all__: list[str] = []
