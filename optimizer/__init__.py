"""accumopt: find and honestly validate institutional accumulation/distribution signal configurations.

Data flows one way: raw files -> ingest -> DuckDB store -> daily_metrics -> panel -> features -> score
-> signals/trades -> metrics -> objective -> study -> walk-forward -> statistics -> report. The CLI sits on top.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
