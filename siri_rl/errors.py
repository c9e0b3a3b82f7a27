"""The error type of data and model sources, in a module of its own so that :mod:`siri_rl.data` (datasets) and
:mod:`siri_rl.models` (model directories and hub ids) both raise it without importing each other."""


class DataError(ValueError):
    """A dataset or model that cannot be used as given (missing file, field, row, model directory or hub repo)."""
