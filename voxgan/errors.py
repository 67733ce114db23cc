"""The exception types a command turns into a one-line message: exit 1 for a failure, 2 for a bad option."""


class VoxganError(Exception):
    """A failure the user can act on; str(error) is one line saying what happened and what to do."""


class ConfigError(VoxganError):
    """A bad option value; ``option`` names the command-line option (the CLI turns it into exit 2)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option
