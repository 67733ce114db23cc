"""Atomic file writes: a crash at any moment leaves the old file or the new one, never half of one.

Every writer here writes to a temporary name in the destination's folder, flush it to disk, then rename it
over the destination (``os.replace`` is atomic within one file system); on an error the temporary file
is removed and the destination is untouched. A file written here gets the permissions any new file gets
(``0o666`` less the process's umask, so colleagues on a shared file system can read it), not the
owner-only ones of a temporary file.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def process_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


NEW_FILE_MODE = 0o666 & ~process_umask()  # what open() would give a new file


def temporary_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new temporary file beside ``path`` (fd, name), with the mode a new file gets, not ``0o600``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.fchmod(fd, NEW_FILE_MODE)
    return fd, tmp


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path`` for writers that take a name (h5py); rename on success."""
    path = Path(path)
    fd, tmp = temporary_beside(path, suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing (``"wb"`` or ``"w"``); rename it on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_open(path) as handle:
        handle.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write ``obj`` as JSON indented by 2, ending in a newline, through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_once(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; True when this call created it.

    The bytes go to a temporary file that is then hard-linked to ``path``: ``os.link`` fails when
    ``path`` exists, atomically (on NFS too), so of several processes racing to create one file exactly
    one wins, and every reader sees a whole file.
    """
    path = Path(path)
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` (ending in a newline) to ``path`` in one write, flushed to disk.

    Concurrent appenders never interleave within a line, and a write that fails part-way (a full disk)
    is cut back off, so the file always ends with a whole line; the OSError is raised again.
    """
    data = line.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def append_json_line(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line (numpy numbers written as floats) with :func:`append_line`."""
    append_line(path, json.dumps(record, default=float) + "\n")
