"""The one exception type of the data package."""


class DataError(ValueError):
    """Missing, malformed or mis-specified data; the message names the file, key or value and what is allowed."""
