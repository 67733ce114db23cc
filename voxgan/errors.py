"""The exception types a command turns into a one-line message (exit 1 for a failure, 2 for a bad
option), and a full disk turned into one."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class VoxganError(Exception):
    """A failure the user can act on; str(error) is one line saying what happened and what to do."""


class ConfigError(VoxganError):
    """A bad option value; ``option`` names the command-line option (the CLI turns it into exit 2)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


# a full disk (ENOSPC), a full quota (EDQUOT), a file over RLIMIT_FSIZE (EFBIG); h5py reports them in its
# message text only ("errno = 28"), so the text is read too
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FULL_TEXT = (
    "no space left",
    "disk quota exceeded",
    "file too large",
    "errno = 28",
    "errno = 27",
    "errno = 122",
)


def is_disk_full(error: BaseException) -> bool:
    """True for an OSError that says the file system (or the quota, or a file size limit) is full."""
    if not isinstance(error, OSError):
        return False
    return error.errno in _FULL or any(text in str(error).lower() for text in _FULL_TEXT)


@contextmanager
def out_of_space(folder, then: str) -> Iterator[None]:
    """Turn a full disk met while writing into ``folder`` into one VoxganError naming the folder and
    saying what to do (``then``); any other error passes unchanged."""
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise VoxganError(f"{folder}: no space left on the device; free some and {then}") from None
