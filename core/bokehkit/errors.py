"""The one exception type a user sees: the CLI prints its message as a single line."""


class BokehkitError(Exception):
    """An error the user can act on: what went wrong, which file or parameter, what to do."""
