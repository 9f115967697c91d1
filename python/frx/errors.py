"""The one exception type for problems a user can fix (bad input, bad arguments)."""


class FrxError(ValueError):
    """A user-facing error. The CLI prints its message on one line and exits with status 2."""
