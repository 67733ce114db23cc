"""GLB and glTF 2.0: the whole scene flattened with its node transforms; buffers only from inside root."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np

from voxgan.ingest.formats.safety import Origin, check_face_limit, read_bytes, safe_reference
from voxgan.ingest.frame import apply_transform
from voxgan.ingest.mesh import Mesh, MeshError, error_line

_GLB_MAGIC = 0x46546C67
_GLB_JSON = 0x4E4F534A


def read_glb(data: bytes, origin: Origin) -> Mesh:
    """The registry's reader of ``.glb``: the scene's mesh, not yet cleaned."""
    return Mesh(*parse_gltf(data, origin.folder, origin.root, binary=True, max_faces=origin.max_faces))


def read_gltf(data: bytes, origin: Origin) -> Mesh:
    """The registry's reader of ``.gltf``: the scene's mesh, not yet cleaned."""
    return Mesh(*parse_gltf(data, origin.folder, origin.root, binary=False, max_faces=origin.max_faces))


def parse_gltf(
    data: bytes, folder: Path, root: Path, *, binary: bool, max_faces: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Parse a GLB or glTF file and flatten its scene, node transforms applied.

    Buffers may be embedded (GLB chunk, ``data:`` URI) or a file inside ``root``; anything else
    (a URL, an absolute path, a path leaving ``root``) raises MeshError before any buffer is read.
    Images and materials are never read. Points and lines in the scene are ignored.

    Parameters
    ----------
    folder : the folder holding the glTF file (relative buffer URIs start here).
    root : the input folder; nothing outside it is read.

    Returns
    -------
    vertices : (V, 3) float64
    faces : (F, 3) int64, not yet cleaned
    """
    fmt = "GLB" if binary else "glTF"
    tree = _glb_json(data) if binary else _gltf_json(data)
    try:
        available = len(data) + _check_gltf_buffers(tree, folder, root)
        _check_gltf_counts(tree, available, max_faces)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as error:
        raise MeshError(f"cannot parse {fmt}: malformed document: {error_line(error)}") from None
    import trimesh

    resolver = _RootResolver(folder, root)
    try:
        scene = trimesh.load_scene(
            io.BytesIO(data), file_type=fmt.lower(), resolver=resolver, skip_materials=True, process=False
        )
    except MeshError:
        raise
    except Exception as error:
        raise MeshError(f"cannot parse {fmt}: {error_line(error)}") from None
    return _flatten_scene(scene)


def _glb_json(data: bytes) -> dict:
    if len(data) < 20:
        raise MeshError(f"cannot parse GLB: {len(data)} bytes is shorter than a GLB header")
    magic, version, _, chunk_length, chunk_type = struct.unpack_from("<5I", data)
    if magic != _GLB_MAGIC or chunk_type != _GLB_JSON:
        raise MeshError("cannot parse GLB: no glTF magic or JSON chunk at the start")
    if version != 2:
        raise MeshError(f"cannot parse GLB: glTF version {version} is not supported (only 2)")
    if 20 + chunk_length > len(data):
        raise MeshError("cannot parse GLB: JSON chunk runs past the end of the file (truncated?)")
    return _gltf_json(data[20 : 20 + chunk_length], "GLB")


def _gltf_json(text: bytes, fmt: str = "glTF") -> dict:
    try:
        tree = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise MeshError(f"cannot parse {fmt}: invalid JSON: {error_line(error)}") from None
    if not isinstance(tree, dict):
        raise MeshError(f"cannot parse {fmt}: the JSON is not an object")
    return tree


def _check_gltf_buffers(tree: dict, folder: Path, root: Path) -> int:
    """Check every buffer URI is embedded or inside ``root``; return the bytes of the external ones."""
    external = 0
    for buffer in tree.get("buffers", []) or []:
        uri = buffer.get("uri") if isinstance(buffer, dict) else None
        if not isinstance(uri, str) or uri.startswith("data:"):
            external += len(uri) if isinstance(uri, str) else 0
            continue
        path = safe_reference(uri, folder, root)
        try:
            external += path.stat().st_size
        except OSError:
            raise MeshError(f"glTF buffer not found: {uri}") from None
    return external


def _check_gltf_counts(tree: dict, available: int, max_faces: int | None) -> None:
    """Refuse accessor counts larger than the bytes that exist, and scenes over ``max_faces``."""
    accessors = tree.get("accessors", []) or []
    for accessor in accessors:
        count = accessor.get("count", 0) if isinstance(accessor, dict) else 0
        if not isinstance(count, int) or count < 0:
            raise MeshError(f"cannot parse glTF: an accessor count is not a count: {str(count)[:40]}")
        if count > available:
            raise MeshError(
                f"cannot parse glTF: an accessor claims {count:,} items, more than the file holds"
            )
    faces = 0
    referenced = {node.get("mesh") for node in tree.get("nodes", []) or [] if isinstance(node, dict)}
    for index, mesh in enumerate(tree.get("meshes", []) or []):
        if index not in referenced or not isinstance(mesh, dict):
            continue
        for primitive in mesh.get("primitives", []) or []:
            faces += _primitive_faces(primitive, accessors)
    check_face_limit(faces, max_faces)


def _primitive_faces(primitive: dict, accessors: list) -> int:
    def count(index) -> int:
        if isinstance(index, int) and 0 <= index < len(accessors) and isinstance(accessors[index], dict):
            return int(accessors[index].get("count", 0))
        return 0

    mode = primitive.get("mode", 4)
    corners = (
        count(primitive["indices"])
        if "indices" in primitive
        else count((primitive.get("attributes") or {}).get("POSITION"))
    )
    if mode == 4:
        return corners // 3
    if mode in (5, 6):
        return max(corners - 2, 0)
    return 0


class _RootResolver:
    """Hands trimesh the files a glTF names, only from inside the input folder (see safe_reference)."""

    def __init__(self, folder: Path, root: Path):
        self.folder, self.root = Path(folder), Path(root)

    def get(self, name: str) -> bytes:
        return read_bytes(safe_reference(name, self.folder, self.root))

    __getitem__ = get

    def keys(self):
        return []

    def __contains__(self, name: str) -> bool:
        return False

    def write(self, name: str, data) -> None:
        raise MeshError("mesh loading never writes files")

    def namespaced(self, namespace: str) -> _RootResolver:
        return _RootResolver(self.folder / namespace, self.root)


def _flatten_scene(scene) -> tuple[np.ndarray, np.ndarray]:
    """Every triangle mesh instance of a trimesh Scene, in world coordinates, as one mesh."""
    import trimesh

    all_vertices, all_faces, offset = [], [], 0
    for node in scene.graph.nodes_geometry:
        matrix, name = scene.graph[node]
        geometry = scene.geometry.get(name)
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue
        all_vertices.append(apply_transform(np.asarray(geometry.vertices, dtype=np.float64), matrix))
        all_faces.append(np.asarray(geometry.faces, dtype=np.int64) + offset)
        offset += len(geometry.vertices)
    if not all_faces:
        raise MeshError("no faces (the scene holds no triangle mesh)")
    return np.concatenate(all_vertices), np.concatenate(all_faces)
