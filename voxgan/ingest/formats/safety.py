"""The rules every reader follows: never trust a file.

A path outside the input folder ``root`` is never read (symlinks are resolved first), nor is anything but
a regular file (a FIFO would block); a reference inside a file (a glTF buffer) may only name a file inside
``root``, never an absolute path or a URL. Counts claimed by a header are checked against ``max_faces``
(and by each reader against the file's size) before anything is allocated, so a header that claims 10⁹
faces fails at once.
"""

from __future__ import annotations

import os
import re
import stat
import urllib.parse
from pathlib import Path
from typing import NamedTuple

from voxgan.ingest.mesh import MeshError

URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class Origin(NamedTuple):
    """Where a file's bytes came from, for the readers that need it: the file's real folder (relative
    references start there), the input folder ``root`` (nothing outside it is read) and the face limit."""

    folder: Path
    root: Path
    max_faces: int | None = None


def inside_root(path: Path, root: Path) -> Path:
    """The real path of ``path``, or MeshError when it resolves outside ``root``."""
    real = Path(os.path.realpath(path))
    real_root = Path(os.path.realpath(root))
    if not real.is_relative_to(real_root):
        raise MeshError(f"path resolves outside the input folder: {path}")
    return real


def read_bytes(path: Path) -> bytes:
    """The whole file; MeshError for a missing file or anything but a regular file (a FIFO would block)."""
    check_regular(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise MeshError(f"cannot read file: {error.strerror or error}") from None


def check_regular(path: Path) -> None:
    """MeshError for a missing file or anything but a regular file (a FIFO would block a reader)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise MeshError(f"cannot read file: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise MeshError("not a regular file")


def check_face_limit(count: int, max_faces: int | None) -> None:
    if max_faces is not None and count > max_faces:
        raise MeshError(f"too many faces ({count:,} > --max-faces {max_faces:,})")


def check_claimed_counts(
    fmt: str, vertex_count: int, face_count: int, least_bytes: int, available: int
) -> None:
    """MeshError when a header's counts need more bytes than follow it (``least_bytes`` > ``available``),
    or when it claims no vertex or no face: checked before anything is allocated."""
    if least_bytes > available:
        raise MeshError(
            f"cannot parse {fmt}: header claims {vertex_count:,} vertices and {face_count:,} faces "
            f"but only {available:,} bytes follow (truncated?)"
        )
    if vertex_count == 0:
        raise MeshError("no vertices")
    if face_count == 0:
        raise MeshError("no faces")


def safe_reference(uri: str, folder: Path, root: Path) -> Path:
    """The file a relative reference inside a mesh file names, or MeshError if it is not inside ``root``.

    URLs (any ``scheme:``), absolute paths and paths that resolve (symlinks included) outside ``root``
    are refused; percent-escapes are decoded as URIs require.
    """
    if URI_SCHEME.match(uri):
        raise MeshError(f"refusing to fetch a URL referenced by the file: {uri[:80]}")
    name = urllib.parse.unquote(uri).strip()
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")):
        raise MeshError(f"refusing an absolute path referenced by the file: {uri[:80]}")
    path = Path(os.path.realpath(Path(folder) / name))
    if not path.is_relative_to(Path(os.path.realpath(root))):
        raise MeshError(f"refusing a path outside the input folder referenced by the file: {uri[:80]}")
    return path
