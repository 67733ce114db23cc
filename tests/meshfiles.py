"""Writers of small fixture mesh files of every format and quirk voxgan reads, and of broken ones.

Each ``write_*`` function writes one file at ``path`` (creating its folder) and returns ``path``.
The good files hold boxes with known counts and bounds, listed in ``EXPECTED`` by writer name as
``Expected(vertices, faces, bounds)`` where ``faces`` counts triangles after fan triangulation and
``vertices`` counts the vertices left after cleaning. ``BROKEN`` maps each broken writer to a piece of
the reason ``MeshError`` gives. ``write_good_set`` / ``write_broken_set`` fill a folder with all of them.
Written by hand (struct, json, text), not with trimesh, so the readers are tested against files they
did not write themselves.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Expected(NamedTuple):
    vertices: int
    faces: int
    bounds: tuple[tuple[float, float, float], tuple[float, float, float]]


UNIT_BOX_BOUNDS = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
SECRET_TEXT = "voxgan-secret-never-read"


def box_vertices(low=(0.0, 0.0, 0.0), high=(1.0, 1.0, 1.0)) -> np.ndarray:
    """The 8 corners of an axis-aligned box, (8, 3) float64, corner k has bit 0 = x, 1 = y, 2 = z."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    bits = (np.arange(8)[:, None] >> np.arange(3)) & 1
    return np.where(bits == 1, high, low)


# six outward quads over box_vertices' corner numbering
BOX_QUADS = np.array(
    [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]], dtype=np.int64
)


def box_triangles() -> np.ndarray:
    """(12, 3) int64 triangles of the box, each quad split along its first diagonal."""
    return np.concatenate([BOX_QUADS[:, [0, 1, 2]], BOX_QUADS[:, [0, 2, 3]]])


def _write(path: Path, data: bytes | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _number(x: float) -> str:
    return f"{x:.6f}"


# --- OBJ ------------------------------------------------------------------------------------------


def write_obj_multipart(path: Path) -> Path:
    """Two boxes as two objects with two materials: quads, ``v/vt/vn`` and ``v//vn`` corners, negative
    indices in the second part, comments, blank lines, a ``mtllib`` that points outside and at http."""
    a = box_vertices((0, 0, 0), (1, 1, 1))
    b = box_vertices((2, 0, 0), (3, 1, 1))
    lines = ["# two parts", "mtllib ../../outside/secret.mtl", "mtllib http://127.0.0.1:9/x.mtl", ""]
    lines += ["o first", "g first_group", "usemtl red"]
    lines += [f"v {' '.join(map(_number, v))}" for v in a]
    lines += ["vt 0 0", "vt 1 0", "vt 1 1", "vn 0 0 1"]
    lines += [f"f {q[0] + 1}/1/1 {q[1] + 1}/2/1 {q[2] + 1}/3/1 {q[3] + 1}/1/1" for q in BOX_QUADS]
    lines += ["", "o second", "usemtl blue", "s off"]
    lines += [f"v {' '.join(map(_number, v))}" for v in b]
    lines += [f"f {q[0] - 8}//1 {q[1] - 8}//1 {q[2] - 8}//1 {q[3] - 8}//1" for q in BOX_QUADS]
    return _write(path, "\n".join(lines) + "\n")


def write_obj_triangles(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """A plain OBJ of ``vertices (V, 3)`` and 0-based ``faces (F, k)``."""
    text = "".join(f"v {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in vertices)
    text += "".join("f " + " ".join(str(i + 1) for i in face) + "\n" for face in faces)
    return _write(path, text)


# --- OFF ------------------------------------------------------------------------------------------


def write_off(path: Path, vertices: np.ndarray, faces: np.ndarray, *, fused_header: bool = False) -> Path:
    """An OFF of ``vertices (V, 3)`` and ``faces (F, k)``; ``fused_header`` writes ModelNet's
    ``OFF8 6 0`` first line."""
    counts = f"{len(vertices)} {len(faces)} 0"
    head = f"OFF{counts}\n" if fused_header else f"OFF\n{counts}\n"
    body = "".join(f"{x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in vertices)
    body += "".join(f"{len(face)} " + " ".join(map(str, face)) + "\n" for face in faces)
    return _write(path, head + body)


def write_off_modelnet_header(path: Path) -> Path:
    """A box with ModelNet's fused first line ``OFF8 6 0`` and quad faces."""
    return write_off(path, box_vertices(), BOX_QUADS, fused_header=True)


def write_off_mixed_polygons(path: Path) -> Path:
    """A box whose faces mix triangles and quads, with a comment line."""
    faces = list(BOX_QUADS[:3]) + list(box_triangles()[3:6]) + list(box_triangles()[9:12])
    with_comment = write_off(path, box_vertices(), faces)
    text = with_comment.read_text().replace("OFF\n", "OFF\n# made for voxgan tests\n", 1)
    return _write(path, text)


def write_off_colors(path: Path) -> Path:
    """A ``COFF`` box: RGBA after each vertex, and a colour after each face."""
    lines = ["COFF", "8 12 0"]
    lines += [" ".join(map(_number, v)) + " 255 0 0 255" for v in box_vertices()]
    lines += ["3 " + " ".join(map(str, t)) + " 0 255 0" for t in box_triangles()]
    return _write(path, "\n".join(lines) + "\n")


# --- STL ------------------------------------------------------------------------------------------


def _box_corners() -> np.ndarray:
    return box_vertices()[box_triangles()]  # (12, 3, 3)


def write_stl_binary(path: Path, corners: np.ndarray | None = None, *, solid_prefix: bool = True) -> Path:
    """A binary STL of ``corners (F, 3, 3)`` (default the box); its 80-byte header starts with
    ``solid`` when ``solid_prefix`` (as some exporters write), which must not fool the reader."""
    corners = _box_corners() if corners is None else np.asarray(corners)
    header = (b"solid exported by a tool" if solid_prefix else b"binary").ljust(80, b" ")
    records = b"".join(
        struct.pack("<3f", 0, 0, 0) + struct.pack("<9f", *tri.reshape(-1)) + b"\0\0" for tri in corners
    )
    return _write(path, header + struct.pack("<I", len(corners)) + records)


def write_stl_ascii(path: Path, corners: np.ndarray | None = None) -> Path:
    """An ASCII STL of ``corners (F, 3, 3)`` (default the box) with two solids."""
    corners = _box_corners() if corners is None else np.asarray(corners)
    half = len(corners) // 2
    text = ""
    for name, part in (("first", corners[:half]), ("second", corners[half:])):
        text += f"solid {name}\n"
        for tri in part:
            text += "  facet normal 0 0 0\n    outer loop\n"
            text += "".join(f"      vertex {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in tri)
            text += "    endloop\n  endfacet\n"
        text += f"endsolid {name}\n"
    return _write(path, text)


# --- PLY ------------------------------------------------------------------------------------------


def write_ply(path: Path, vertices: np.ndarray | None = None, faces: np.ndarray | None = None,
              *, binary: bool = True) -> Path:  # fmt: skip
    """A PLY (binary little-endian or ASCII) of ``vertices (V, 3)`` and polygons ``faces`` (default the box
    with quads), with an extra vertex property and a texture comment naming a file outside."""
    vertices = box_vertices() if vertices is None else np.asarray(vertices)
    faces = BOX_QUADS if faces is None else [np.asarray(face) for face in faces]
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment TextureFile ../../outside/secret.png",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar quality",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    head = ("\n".join(header) + "\n").encode()
    if binary:
        body = b"".join(struct.pack("<3fB", *v, 7) for v in vertices)
        body += b"".join(struct.pack(f"<B{len(f)}i", len(f), *f) for f in faces)
    else:
        text = "".join(f"{x:.9g} {y:.9g} {z:.9g} 7\n" for x, y, z in vertices)
        text += "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces)
        body = text.encode()
    return _write(path, head + body)


def write_ply_ascii(path: Path) -> Path:
    """The box as an ASCII PLY."""
    return write_ply(path, binary=False)


def write_ply_mixed_polygons(path: Path, *, binary: bool = True) -> Path:
    """The box as a PLY whose faces mix quads and triangles (a face list of varying length)."""
    faces = list(BOX_QUADS[:3]) + list(box_triangles()[3:6]) + list(box_triangles()[9:12])
    return write_ply(path, box_vertices(), faces, binary=binary)


# --- glTF / GLB -----------------------------------------------------------------------------------

GLTF_BOUNDS = ((-1.0, 0.0, -3.0), (11.0, 12.0, 2.0))


def _gltf_document(buffer_uri: str | None) -> tuple[dict, bytes]:
    """A glTF scene instancing one unit box 3 times through nested node transforms.

    node 0: translation (10, 0, 0) -> [10, 11] x [0, 1] x [0, 1]
    node 1: scale 2, child node 2: translation (0, 5, 0) -> [0, 2] x [10, 12] x [0, 2]
    node 3: column-major matrix, quarter turn about z, then (0, 0, -3) -> [-1, 0] x [0, 1] x [-3, -2]
    """
    positions = box_vertices().astype("<f4").tobytes()
    indices = box_triangles().astype("<u2").tobytes()
    blob = positions + indices
    quarter_turn = [0, 1, 0, 0, -1, 0, 0, 0, 0, 0, 1, 0, 0, 0, -3, 1]  # column-major
    buffer = {"byteLength": len(blob)}
    if buffer_uri is not None:
        buffer["uri"] = buffer_uri
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0, 1, 3]}],
        "nodes": [
            {"mesh": 0, "translation": [10, 0, 0]},
            {"scale": [2, 2, 2], "children": [2]},
            {"mesh": 0, "translation": [0, 5, 0]},
            {"mesh": 0, "matrix": quarter_turn},
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 8,
                "type": "VEC3",
                "min": [0, 0, 0],
                "max": [1, 1, 1],
            },
            {"bufferView": 1, "componentType": 5123, "count": 36, "type": "SCALAR"},
        ],  # fmt: skip
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(positions)},
            {"buffer": 0, "byteOffset": len(positions), "byteLength": len(indices)},
        ],
        "buffers": [buffer],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}],
        "images": [{"uri": "../../outside/secret.png"}],
    }
    return document, blob


def _glb(document: dict, blob: bytes | None) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<2I", len(text), 0x4E4F534A) + text
    if blob is not None:
        blob += b"\0" * (-len(blob) % 4)
        chunks += struct.pack("<2I", len(blob), 0x004E4942) + blob
    return struct.pack("<3I", 0x46546C67, 2, 12 + len(chunks)) + chunks


def write_glb_scene(path: Path) -> Path:
    """A GLB with three instances of a box under nested node transforms (bounds ``GLTF_BOUNDS``)."""
    document, blob = _gltf_document(None)
    return _write(path, _glb(document, blob))


def write_glb_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """A GLB of one mesh node holding ``vertices (V, 3)`` (metres, +Y up as glTF defines) and
    ``faces (F, 3)``, float32 positions with their min/max and uint32 indices, as the spec asks."""
    positions = np.asarray(vertices, "<f4")
    blob = positions.tobytes() + np.asarray(faces, "<u4").tobytes()
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": len(positions),
                "type": "VEC3",
                "min": positions.min(axis=0).tolist(),
                "max": positions.max(axis=0).tolist(),
            },
            {"bufferView": 1, "componentType": 5125, "count": 3 * len(faces), "type": "SCALAR"},
        ],  # fmt: skip
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": positions.nbytes},
            {"buffer": 0, "byteOffset": positions.nbytes, "byteLength": len(blob) - positions.nbytes},
        ],
        "buffers": [{"byteLength": len(blob)}],
    }
    return _write(path, _glb(document, blob))


def write_gltf_external_buffer(path: Path) -> Path:
    """A ``.gltf`` whose buffer is ``buffers/box.bin`` beside it (and an image outside, never read)."""
    document, blob = _gltf_document("buffers/box.bin")
    _write(Path(path).parent / "buffers" / "box.bin", blob)
    return _write(path, json.dumps(document))


def write_gltf_pointing_at(path: Path, uri: str) -> Path:
    """A ``.gltf`` whose only buffer is ``uri`` (``../secret.bin``, ``/etc/passwd``, ``http://...``)."""
    document, _ = _gltf_document(uri)
    return _write(path, json.dumps(document))


def write_glb_pointing_at(path: Path, uri: str) -> Path:
    """A ``.glb`` with no BIN chunk whose buffer is ``uri``."""
    document, _ = _gltf_document(uri)
    return _write(path, _glb(document, None))


def write_secret_buffer(path: Path) -> Path:
    """A valid buffer for the glTF documents above, as a file that must never be read."""
    _, blob = _gltf_document(None)
    return _write(path, blob)


# --- binvox ---------------------------------------------------------------------------------------


def asymmetric_occupancy(side: int = 4) -> np.ndarray:
    """(side, side, side) bool indexed [x, y, z] with no symmetry: an L of voxels along x, y, z of
    lengths side, side - 1 and side - 2 from the origin."""
    occupancy = np.zeros((side, side, side), dtype=bool)
    occupancy[:, 0, 0] = True
    occupancy[0, : side - 1, 0] = True
    occupancy[0, 0, : side - 2] = True
    return occupancy


def write_binvox(path: Path, occupancy: np.ndarray | None = None, *, translate=(0.5, -1.0, 2.0),
                 scale: float = 2.0) -> Path:  # fmt: skip
    """A binvox file of ``occupancy (D, D, D) bool [x, y, z]`` (default ``asymmetric_occupancy()``),
    stored in binvox's order (y fastest, then z, then x) with run-length encoding."""
    occupancy = asymmetric_occupancy() if occupancy is None else np.asarray(occupancy, dtype=bool)
    side = occupancy.shape[0]
    stream = occupancy.transpose(0, 2, 1).reshape(-1).astype(np.uint8)  # [x, z, y]
    runs = bytearray()
    start = 0
    while start < len(stream):
        value, end = stream[start], start
        while end < len(stream) and stream[end] == value and end - start < 255:
            end += 1
        runs += bytes([value, end - start])
        start = end
    head = f"#binvox 1\ndim {side} {side} {side}\ntranslate {' '.join(map(str, translate))}\n"
    head += f"scale {scale}\ndata\n"
    return _write(path, head.encode() + bytes(runs))


# --- voxel arrays (.mat) ---------------------------------------------------------------------------


def thin_chair(side: int = 30) -> np.ndarray:
    """(side, side, side) bool [x, y, z], z up: a chair as 3D ShapeNets draws them at 30³, every part one
    voxel thick: four legs, a seat and a back."""
    chair = np.zeros((side,) * 3, bool)
    for x in (6, 21):
        for y in (6, 21):
            chair[x, y, 2:14] = True
    chair[6:22, 6:22, 14] = True
    chair[6:22, 21, 15:27] = True
    return chair


def write_mat_v5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A MATLAB v5 .mat file holding ``arrays`` by name (as the 3D ShapeNets files hold ``instance``)."""
    from scipy.io import savemat

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    savemat(path, arrays)
    return Path(path)


def write_mat_v73(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A MATLAB v7.3 .mat file (HDF5 behind a 512-byte text header) holding ``arrays`` by name, laid out
    as MATLAB writes them: column-major, so HDF5 sees each array with its axes reversed."""
    import h5py

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=np.asarray(array).T)
            f[name].attrs["MATLAB_class"] = np.bytes_("logical" if array.dtype == bool else "double")
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02" + b"IM")
    return Path(path)


# --- broken files ---------------------------------------------------------------------------------


def write_stl_truncated(path: Path) -> Path:
    """A binary STL cut in the middle of its fifth triangle."""
    data = write_stl_binary(path, solid_prefix=False).read_bytes()
    return _write(path, data[: 84 + 50 * 4 + 20])


def write_off_truncated(path: Path) -> Path:
    """An OFF whose header claims 8 vertices and 6 faces, cut after the fourth vertex."""
    text = write_off(path, box_vertices(), BOX_QUADS).read_text()
    return _write(path, "".join(text.splitlines(keepends=True)[:6]))


def write_garbage(path: Path, size: int = 4096, seed: int = 0) -> Path:
    """Random bytes under any mesh extension."""
    return _write(path, np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())


def write_empty(path: Path) -> Path:
    """A file of zero bytes."""
    return _write(path, b"")


def write_obj_nan_vertices(path: Path) -> Path:
    """An OBJ whose every vertex is NaN or infinite."""
    return _write(path, "v nan 0 0\nv 0 nan 0\nv inf 0 1\nf 1 2 3\n")


def write_obj_some_nan(path: Path) -> Path:
    """The unit box as OBJ plus one NaN vertex and a face using it (dropped when cleaning)."""
    path = write_obj_triangles(path, box_vertices(), box_triangles())
    return _write(path, path.read_text() + "v nan nan nan\nf 1 2 9\nf 1 2 40\n")


def write_obj_zero_faces(path: Path) -> Path:
    """An OBJ with vertices and no face."""
    return _write(path, "v 0 0 0\nv 1 0 0\nv 0 1 0\n")


def write_off_zero_faces(path: Path) -> Path:
    """An OFF with 3 vertices and 0 faces."""
    return _write(path, "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")


def write_obj_degenerate(path: Path) -> Path:
    """An OBJ whose only faces repeat an index or point past the vertices."""
    return _write(path, "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 1 2\nf 1 2 7\n")


def write_off_huge_header(path: Path) -> Path:
    """An OFF whose header claims 10⁹ faces (a few real lines follow)."""
    text = write_off(path, box_vertices(), BOX_QUADS).read_text()
    return _write(path, text.replace("8 6 0", "8 1000000000 0", 1))


def write_stl_huge_header(path: Path) -> Path:
    """A binary STL whose count claims 10⁹ triangles (12 follow)."""
    data = bytearray(write_stl_binary(path, solid_prefix=False).read_bytes())
    data[80:84] = struct.pack("<I", 10**9)
    return _write(path, bytes(data))


def write_ply_huge_header(path: Path) -> Path:
    """A binary PLY whose header claims 10⁹ faces."""
    data = write_ply(path).read_bytes()
    return _write(path, data.replace(b"element face 6", b"element face 1000000000", 1))


def write_glb_huge_accessor(path: Path) -> Path:
    """A GLB whose index accessor claims 10⁹ items and a bufferless accessor claims 10⁹ more."""
    document, blob = _gltf_document(None)
    document["accessors"][1]["count"] = 10**9
    document["accessors"].append({"componentType": 5126, "count": 10**9, "type": "VEC3"})
    return _write(path, _glb(document, blob))


def write_off_bad_coordinates(path: Path) -> Path:
    """An OFF whose third line (first vertex) has 2 coordinates."""
    return _write(path, "OFF\n3 1 0\n0 0\n1 0 0\n0 1 0\n3 0 1 2\n")


def write_off_zero_extent(path: Path) -> Path:
    """An OFF whose vertices are all the same point (loads; grid_transform refuses it)."""
    return _write(path, "OFF\n3 1 0\n1 1 1\n1 1 1\n1 1 1\n3 0 1 2\n")


EXPECTED: dict[str, Expected] = {
    "write_obj_multipart": Expected(16, 24, ((0.0, 0.0, 0.0), (3.0, 1.0, 1.0))),
    "write_off_modelnet_header": Expected(8, 12, UNIT_BOX_BOUNDS),
    "write_off_mixed_polygons": Expected(8, 12, UNIT_BOX_BOUNDS),
    "write_off_colors": Expected(8, 12, UNIT_BOX_BOUNDS),
    "write_stl_binary": Expected(36, 12, UNIT_BOX_BOUNDS),
    "write_stl_ascii": Expected(36, 12, UNIT_BOX_BOUNDS),
    "write_ply": Expected(8, 12, UNIT_BOX_BOUNDS),
    "write_ply_ascii": Expected(8, 12, UNIT_BOX_BOUNDS),
    "write_ply_mixed_polygons": Expected(8, 12, UNIT_BOX_BOUNDS),
    "write_glb_scene": Expected(24, 36, GLTF_BOUNDS),
    "write_gltf_external_buffer": Expected(24, 36, GLTF_BOUNDS),
    "write_obj_some_nan": Expected(8, 12, UNIT_BOX_BOUNDS),
}

GOOD_FILES = {
    "write_obj_multipart": "multipart.obj",
    "write_off_modelnet_header": "modelnet.off",
    "write_off_mixed_polygons": "mixed.off",
    "write_off_colors": "colors.off",
    "write_stl_binary": "binary.stl",
    "write_stl_ascii": "ascii.stl",
    "write_ply": "binary.ply",
    "write_ply_ascii": "ascii.ply",
    "write_ply_mixed_polygons": "mixed.ply",
    "write_glb_scene": "scene.glb",
    "write_gltf_external_buffer": "external/scene.gltf",
    "write_obj_some_nan": "some_nan.obj",
}

# writer name -> (file name, piece of the MeshError reason)
BROKEN = {
    "write_stl_truncated": ("truncated.stl", "truncated"),
    "write_off_truncated": ("truncated.off", "truncated"),
    "write_garbage": ("garbage.obj", "no vertices"),
    "write_empty": ("empty.stl", "empty file"),
    "write_obj_nan_vertices": ("nan.obj", "no finite vertices"),
    "write_obj_zero_faces": ("zero_faces.obj", "no faces"),
    "write_off_zero_faces": ("zero_faces.off", "no faces"),
    "write_obj_degenerate": ("degenerate.obj", "empty after cleaning"),
    "write_off_huge_header": ("huge.off", "1,000,000,000 faces"),
    "write_stl_huge_header": ("huge.stl", "1,000,000,000 triangles"),
    "write_ply_huge_header": ("huge.ply", "1,000,000,000 faces"),
    "write_off_bad_coordinates": ("bad_coordinates.off", "line 3: expected 3 coordinates"),
}

ESCAPING_URI = "../" * 32 + "voxgan-secret.bin"  # leaves any input folder, however deep
OUTSIDE_URIS = {
    "outside.gltf": ESCAPING_URI,
    "absolute.gltf": "/etc/passwd",
    "http.gltf": "http://127.0.0.1:9/secret.bin",
    "outside.glb": ESCAPING_URI,
}


def write_good_set(folder: Path) -> dict[Path, Expected]:
    """Every good fixture under ``folder``; returns path -> Expected."""
    written = {}
    for writer, name in GOOD_FILES.items():
        path = globals()[writer](Path(folder) / name)
        written[path] = EXPECTED[writer]
    return written


def write_broken_set(folder: Path) -> dict[Path, str]:
    """Every broken fixture under ``folder`` (glTF files pointing outside included); returns
    path -> piece of the expected reason."""
    written = {}
    for writer, (name, reason) in BROKEN.items():
        written[globals()[writer](Path(folder) / name)] = reason
    for name, uri in OUTSIDE_URIS.items():
        write = write_glb_pointing_at if name.endswith(".glb") else write_gltf_pointing_at
        reason = "URL" if uri.startswith("http") else "absolute" if uri.startswith("/") else "outside"
        written[write(Path(folder) / name, uri)] = reason
    return written
