"""Atomic file writes: a crash at any moment leaves the old file or the new one, never half of one.

Every writer here writes to a temporary name in the destination's folder, flush it to disk, then rename it
over the destination (``os.replace`` is atomic within one file system); on an error the temporary file
is removed and the destination is untouched.
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


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path`` for writers that take a name (h5py); rename on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
