"""Validation of a configuration out of sample: the walk-forward loop, its statistics and the verdict."""

__all__: list[str] = []
