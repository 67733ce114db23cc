"""GLB and glTF 2.0: the whole scene flattened with its node transforms; buffers only from inside root."""

from __future__ import annotations

import base64
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
    try:
        buffers = _gltf_buffers(tree, data if binary else None, folder, root)
        return _flatten_scene(tree, buffers, max_faces)
    except MeshError:
        raise
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, OverflowError) as error:
        raise MeshError(f"cannot parse {fmt}: malformed document: {error_line(error)}") from None


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


_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_GLB_BIN = 0x004E4942
_MAX_DEPTH = 64  # node nesting deeper than this is refused (a hostile file may nest without end)
_MAX_VISITS = 100_000  # node instances in a scene (a hostile file may share children exponentially)
_MAX_INSTANCED_FACES = 50_000_000  # triangles of all instances together when --max-faces does not say


def _gltf_buffers(tree: dict, glb: bytes | None, folder: Path, root: Path) -> list[bytes]:
    """The bytes of every buffer: the GLB's BIN chunk, a ``data:`` URI, or a file inside ``root``."""
    binary = b""
    if glb is not None:
        offset = 20 + struct.unpack_from("<I", glb, 12)[0]
        if offset + 8 <= len(glb):
            length, kind = struct.unpack_from("<2I", glb, offset)
            if kind == _GLB_BIN:
                binary = glb[offset + 8 : offset + 8 + length]
    buffers = []
    for buffer in tree.get("buffers", []):
        uri = buffer.get("uri")
        if uri is None:
            buffers.append(binary)
        elif uri.startswith("data:"):
            buffers.append(base64.b64decode(uri.partition(",")[2], validate=False))
        else:
            buffers.append(read_bytes(safe_reference(uri, folder, root)))
    return buffers


def _accessor(tree: dict, buffers: list[bytes], index: int) -> np.ndarray:
    """Accessor ``index`` as (count, width) float64 (normalized integers scaled as the spec says)."""
    accessor = tree["accessors"][index]
    dtype = np.dtype(_COMPONENTS[accessor["componentType"]])
    count, width = int(accessor["count"]), _WIDTHS[accessor["type"]]
    if "bufferView" in accessor:
        view = tree["bufferViews"][accessor["bufferView"]]
        data = buffers[view["buffer"]]
        start = int(view.get("byteOffset", 0)) + int(accessor.get("byteOffset", 0))
        stride = int(view.get("byteStride", 0)) or dtype.itemsize * width
        end = int(view.get("byteOffset", 0)) + int(view["byteLength"])
        if count and (
            start < 0 or start + stride * (count - 1) + dtype.itemsize * width > min(end, len(data))
        ):
            raise MeshError("cannot parse glTF: an accessor runs past the end of its buffer")
        values = np.ndarray((count, width), dtype, data, start, (stride, dtype.itemsize)).astype(np.float64)
    else:
        values = np.zeros((count, width))
    if "sparse" in accessor:
        sparse = accessor["sparse"]
        indices = _view_array(
            tree, buffers, sparse["indices"], _COMPONENTS[sparse["indices"]["componentType"]]
        )
        patch = _view_array(tree, buffers, sparse["values"], dtype, width)
        values[indices[: sparse["count"]].astype(np.int64)] = patch[: sparse["count"]].reshape(-1, width)
    if accessor.get("normalized") and dtype.kind in "iu":
        values = np.maximum(values / np.iinfo(dtype).max, -1.0)
    return values


def _view_array(tree: dict, buffers: list[bytes], part: dict, dtype, width: int = 1) -> np.ndarray:
    """The tightly packed array a sparse accessor's ``indices`` or ``values`` part points at."""
    view = tree["bufferViews"][part["bufferView"]]
    start = int(view.get("byteOffset", 0)) + int(part.get("byteOffset", 0))
    length = int(view["byteLength"]) - int(part.get("byteOffset", 0))
    data = buffers[view["buffer"]][start : start + max(length, 0)]
    dtype = np.dtype(dtype)
    return np.frombuffer(data, dtype, len(data) // dtype.itemsize // width * width)


def _primitive_triangles(tree: dict, buffers: list[bytes], primitive: dict) -> tuple[np.ndarray, np.ndarray]:
    """One primitive's vertices (V, 3) and triangles (F, 3); points and lines give no triangles."""
    if "KHR_draco_mesh_compression" in (primitive.get("extensions") or {}):
        raise MeshError("cannot parse glTF: Draco-compressed meshes are not supported; decompress them first")
    vertices = _accessor(tree, buffers, primitive["attributes"]["POSITION"])
    if vertices.shape[1] != 3:
        raise MeshError(
            f"cannot parse glTF: a POSITION accessor holds {vertices.shape[1]} numbers a vertex, not 3"
        )
    mode = primitive.get("mode", 4)
    if "indices" in primitive:
        corners = _accessor(tree, buffers, primitive["indices"])[:, 0].astype(np.int64)
    else:
        corners = np.arange(len(vertices))
    if len(corners) and (corners.min() < 0 or corners.max() >= len(vertices)):
        raise MeshError("cannot parse glTF: a face index points past the vertices")
    if mode == 4:
        faces = corners[: len(corners) // 3 * 3].reshape(-1, 3)
    elif mode in (5, 6) and len(corners) >= 3:
        i = np.arange(len(corners) - 2)
        if mode == 5:  # strip: every second triangle reversed so that all face the same way
            faces = np.stack([corners[i], corners[i + 1 + i % 2], corners[i + 2 - i % 2]], axis=1)
        else:  # fan around the first corner
            faces = np.stack([corners[i + 1], corners[i + 2], np.full_like(i, corners[0])], axis=1)
    else:
        faces = np.zeros((0, 3), np.int64)
    return vertices, faces


def _node_matrix(node: dict) -> np.ndarray:
    """A node's local transform (4, 4): its column-major ``matrix``, or translation · rotation · scale."""
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T
    x, y, z, w = (float(v) for v in node.get("rotation", (0, 0, 0, 1)))
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * np.asarray(node.get("scale", (1, 1, 1)), dtype=np.float64)[None, :]
    matrix[:3, 3] = np.asarray(node.get("translation", (0, 0, 0)), dtype=np.float64)
    return matrix


def _flatten_scene(
    tree: dict, buffers: list[bytes], max_faces: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every triangle of the default scene's mesh instances, in world coordinates, as one mesh.

    The node tree is walked first (each mesh decoded once, the instances' triangles counted as they
    are met), so a tree that shares its children exponentially fails at ``_MAX_VISITS``, ``max_faces``
    or ``_MAX_INSTANCED_FACES`` before a single copy is made.
    """
    nodes, meshes = tree.get("nodes", []), tree.get("meshes", [])
    if tree.get("scenes"):
        roots = tree["scenes"][tree.get("scene", 0)].get("nodes", [])
    else:  # no scene: every node no other node names as a child
        children = {child for node in nodes for child in node.get("children", [])}
        roots = [n for n in range(len(nodes)) if n not in children]
    decoded: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    instances, faces_so_far = [], 0  # (mesh index, world matrix (4, 4))
    stack, visits = [(root, np.eye(4), 0) for root in roots], 0
    while stack:
        index, parent, depth = stack.pop()
        visits += 1
        if depth > _MAX_DEPTH or visits > _MAX_VISITS:
            raise MeshError("cannot parse glTF: the node tree is too deep or too large (a cycle?)")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(nodes):
            raise MeshError(f"cannot parse glTF: a node index is not a node: {str(index)[:40]}")
        node = nodes[index]
        moved = any(key in node for key in ("matrix", "rotation", "scale", "translation"))
        matrix = parent @ _node_matrix(node) if moved else parent
        stack.extend((child, matrix, depth + 1) for child in node.get("children", []))
        if "mesh" not in node:
            continue
        mesh_index = node["mesh"]
        if mesh_index not in decoded:
            primitives = meshes[mesh_index]["primitives"]
            decoded[mesh_index] = [_primitive_triangles(tree, buffers, primitive) for primitive in primitives]
        faces_so_far += sum(len(faces) for _, faces in decoded[mesh_index])
        check_face_limit(faces_so_far, max_faces)
        if faces_so_far > _MAX_INSTANCED_FACES:
            raise MeshError(f"too many faces: the scene instances over {_MAX_INSTANCED_FACES:,} triangles")
        instances.append((mesh_index, matrix))
    all_vertices, all_faces, offset = [], [], 0
    for mesh_index, matrix in instances:
        for vertices, faces in decoded[mesh_index]:
            if len(faces):
                all_vertices.append(apply_transform(vertices, matrix))
                all_faces.append(faces + offset)
                offset += len(vertices)
    if not all_faces:
        raise MeshError("no faces (the scene holds no triangle mesh)")
    return np.concatenate(all_vertices), np.concatenate(all_faces)
