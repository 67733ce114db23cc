"""The one exception type a command turns into a one-line message and exit code 1."""


class VoxganError(Exception):
    """A failure the user can act on; str(error) is one line saying what happened and what to do."""
