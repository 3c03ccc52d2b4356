"""HTML reports and figures: study research report, walk-forward report, study comparison, signal sandbox."""

__all__: list[str] = []
