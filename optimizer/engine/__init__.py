"""The signal engine: panel -> features -> score -> signals/trades -> metrics. Pure functions over numpy arrays."""

__all__: list[str] = []
