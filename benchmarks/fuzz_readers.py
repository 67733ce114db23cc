"""A fuzzing campaign over every input format: mutated files through the pipeline's own entry.

For each format (OBJ, OFF, STL, PLY, GLB, glTF, binvox, .npy, .npz, .mat) it mutates real seed files
(``tests/meshfiles.py`` writes them, plus a few made here: an embedded-buffer glTF, sparse accessors,
triangle strips, stacks of volumes, MATLAB v5 and v7.3) with bit flips, interesting bytes, truncation,
deleted and repeated chunks, splices between seeds of the format, header numbers replaced by huge counts,
negative numbers, NaN and infinity, binary words replaced by 2³¹ and friends, and structure-aware
mutations: glTF trees with cycles, deep nesting, wrong strides, byte lengths, offsets and types; ``.npy``
headers whose shape or dtype lie; ``.npz`` archives rebuilt around a lying member. Each input is written
into an input folder and read by one worker process exactly as a pipeline worker reads a file
(:func:`voxgan.ingest.formats.volume_sources`, then :func:`voxgan.ingest.sample.occupancy_of` of each
source, the function :func:`voxgan.ingest.sample.voxelize_source` wraps).

Every input must end as a sample or a one-line ``VoxganError``. The campaign counts:

- crashes: any other exception (an ``IndexError`` is a reader bug even though ``voxelize_source``
  would turn it into a reason), a reason that is not one line, or the worker dying (a signal);
- hangs: an input that takes more than ``--time-limit`` seconds of the worker's CPU time (SIGPROF ends
  the worker: under ``nice -n 19`` on a shared machine wall time measures the neighbours), or that
  waits 30 times as long in wall time without an answer;
- memory overruns: a ``MemoryError`` under the worker's address-space cap (``RLIMIT_AS`` at its size
  after start-up plus ``--memory-cap-mib``), or the worker killed for memory;
- escapes: a file opened while reading beside the input folder, at ``/`` or in ``/etc``, where hostile
  references land (an audit hook watches Python's ``open``; a glTF buffer pointing at a secret file
  beside the input folder is among the seeds; HDF5's own reads are not seen by the hook, which is why
  the readers refuse HDF5 data stored in other files).

Every finding is written to ``--findings`` with its traceback. The formats take turns in rounds, so a
campaign stopped early (``--minutes``) has tried every format about equally. Results: one JSON file.

    nice -n 19 .venv/bin/python benchmarks/fuzz_readers.py --inputs 100000 --out fuzz.json
    .venv/bin/python benchmarks/fuzz_readers.py --inputs 200 --formats obj,glb   # a quick look
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.meshfiles: the seed writers

FORMATS = ("obj", "off", "stl", "ply", "glb", "gltf", "binvox", "npy", "npz", "mat")
SECRET = "voxgan-secret.bin"
INTERESTING_NUMBERS = [
    b"0",
    b"-1",
    b"1",
    b"2",
    b"3",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"-2147483648",
    b"9223372036854775807",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"1e308",
    b"-1e308",
    b"1e309",
    b"nan",
    b"NaN",
    b"inf",
    b"-inf",
    b"1e-320",
    b"0x10",
    b"1.5",
    b"-0",
    b"+",
    b"-",
    b".",
    b"e",
    b"",
]
INTERESTING_WORDS = [
    0,
    1,
    2,
    3,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0x40000000,
    0x3F800000,
    0x7FC00000,
    0x7F800000,
    0xFF800000,
]
INTERESTING_JSON = [
    0,
    -1,
    1,
    3,
    4,
    5,
    6,
    255,
    2**31,
    2**32,
    2**53,
    2**63,
    10**30,
    -(2**31),
    1.5,
    -0.0,
    1e308,
    None,
    True,
    "",
    "x",
    "data:",
    "../" * 8 + SECRET,
    "/etc/passwd",
    [],
    {},
    [0],
    [[0]],
    {"x": 0},
    "VEC3",
    "SCALAR",
    "MAT4",
    5120,
    5121,
    5122,
    5123,
    5125,
    5126,
    34962,
]
NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf", re.IGNORECASE)


# --- seeds -----------------------------------------------------------------------------------------


def write_seeds(root: Path) -> dict[str, list[str]]:
    """Write the seed files into ``root`` (buffers they reference included) and a secret file beside it;
    returns {format: [file names relative to root]}."""
    from tests import meshfiles as m

    root.mkdir(parents=True, exist_ok=True)
    m.write_secret_buffer(root.parent / SECRET)
    seeds: dict[str, list[str]] = {name: [] for name in FORMATS}

    def add(fmt: str, name: str, writer, *args, **kwargs):
        writer(root / "seeds" / name, *args, **kwargs)
        seeds[fmt].append(f"seeds/{name}")

    rng = np.random.default_rng(0)
    blob = m.box_vertices() + rng.normal(0, 0.01, (8, 3))
    add("obj", "multipart.obj", m.write_obj_multipart)
    add("obj", "tri.obj", m.write_obj_triangles, blob, m.box_triangles())
    add("obj", "some_nan.obj", m.write_obj_some_nan)
    add("off", "modelnet.off", m.write_off_modelnet_header)
    add("off", "mixed.off", m.write_off_mixed_polygons)
    add("off", "colors.off", m.write_off_colors)
    add("stl", "binary.stl", m.write_stl_binary)
    add("stl", "plain.stl", m.write_stl_binary, solid_prefix=False)
    add("stl", "ascii.stl", m.write_stl_ascii)
    add("ply", "binary.ply", m.write_ply)
    add("ply", "ascii.ply", m.write_ply_ascii)
    add("ply", "mixed.ply", m.write_ply_mixed_polygons)
    add("ply", "mixed_ascii.ply", m.write_ply_mixed_polygons, binary=False)
    add("ply", "big_endian.ply", _write_ply_big_endian)
    add("glb", "scene.glb", m.write_glb_scene)
    add("glb", "mesh.glb", m.write_glb_mesh, blob, m.box_triangles())
    add("glb", "outside.glb", m.write_glb_pointing_at, m.ESCAPING_URI)
    add("gltf", "external/scene.gltf", m.write_gltf_external_buffer)
    add("gltf", "embedded.gltf", _write_gltf_embedded)
    add("gltf", "sparse.gltf", _write_gltf_sparse_strip)
    add("gltf", "outside.gltf", m.write_gltf_pointing_at, "../../" + SECRET)
    add("binvox", "l.binvox", m.write_binvox)
    add("binvox", "ball.binvox", m.write_binvox, _ball(8))
    occupancy = m.asymmetric_occupancy(4)
    add("npy", "one.npy", _save_npy, occupancy)
    add("npy", "stack.npy", _save_npy, np.stack([occupancy, _ball(4)]).astype(np.float32))
    add("npy", "stack5.npy", _save_npy, np.stack([_ball(4)] * 2)[:, None].astype(np.uint8))
    add("npz", "stored.npz", _save_npz, False, instance=occupancy.astype(np.uint8))
    add("npz", "compressed.npz", _save_npz, True, voxels=np.stack([occupancy, _ball(4)]))
    add("mat", "v5.mat", m.write_mat_v5, {"instance": occupancy.astype(np.uint8)})
    add("mat", "v5_stack.mat", m.write_mat_v5, {"voxels": np.stack([_ball(4)] * 2).astype(np.float64)})
    add("mat", "v73.mat", m.write_mat_v73, {"instance": occupancy})
    add("mat", "v73_stack.mat", m.write_mat_v73, {"voxels": np.stack([_ball(4)] * 2).astype(np.float64)})
    return seeds


def _ball(side: int) -> np.ndarray:
    """(side, side, side) bool: a ball filling the cube."""
    centre = (np.arange(side) + 0.5 - side / 2) / (side / 2)
    x, y, z = np.meshgrid(centre, centre, centre, indexing="ij")
    return x * x + y * y + z * z <= 1.0


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


def _save_npz(path: Path, compressed: bool, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


def _write_ply_big_endian(path: Path) -> None:
    from tests.meshfiles import BOX_QUADS, box_vertices

    head = b"ply\nformat binary_big_endian 1.0\nelement vertex 8\nproperty double x\nproperty double y\n"
    head += b"property double z\nelement face 6\nproperty list uchar uint vertex_indices\nend_header\n"
    body = b"".join(struct.pack(">3d", *v) for v in box_vertices())
    body += b"".join(struct.pack(">B4I", 4, *q) for q in BOX_QUADS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + body)


def _write_gltf_embedded(path: Path) -> None:
    """The tests' glTF scene with its buffer as a base64 ``data:`` URI."""
    import base64

    from tests.meshfiles import _gltf_document

    document, blob = _gltf_document(None)
    document["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def _write_gltf_sparse_strip(path: Path) -> None:
    """A glTF with a sparse POSITION accessor (zeros patched by sparse values) drawn as a triangle strip."""
    import base64

    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]], "<f4")
    indices = np.arange(6, dtype="<u2")
    sparse_indices = np.array([1, 3, 5], "<u1")
    blob = positions.tobytes() + indices.tobytes() + sparse_indices.tobytes() + b"\0"
    sparse_values = positions[[1, 3, 5]].tobytes()
    offset = len(blob)
    blob += sparse_values
    document = {
        "asset": {"version": "2.0"},
        "nodes": [{"mesh": 0, "rotation": [0, 0, 0.7071, 0.7071]}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 5}]}],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 6,
                "type": "VEC3",
                "sparse": {
                    "count": 3,
                    "indices": {"bufferView": 2, "componentType": 5121},
                    "values": {"bufferView": 3},
                },
            },
            {"bufferView": 1, "componentType": 5123, "count": 6, "type": "SCALAR"},
        ],  # fmt: skip
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 72, "byteStride": 12},
            {"buffer": 0, "byteOffset": 72, "byteLength": 12},
            {"buffer": 0, "byteOffset": 84, "byteLength": 3},
            {"buffer": 0, "byteOffset": offset, "byteLength": len(sparse_values)},
        ],
        "buffers": [{"byteLength": len(blob), "uri": "data:;base64," + base64.b64encode(blob).decode()}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


# --- mutations -------------------------------------------------------------------------------------


def mutate(fmt: str, data: bytes, others: list[bytes], rng: random.Random) -> bytes:
    """One mutated input: 1 to 4 mutations of ``data`` stacked; ``others`` are the format's other seeds."""
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        structured = STRUCTURED.get(fmt)
        if structured is not None and rng.random() < 0.5:
            data = structured(data, rng)
        else:
            data = rng.choice(BYTE_MUTATIONS)(data, others, rng)
    return data


def _flip_bits(data: bytes, others, rng) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_byte(data: bytes, others, rng) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    out[rng.randrange(len(out))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x0A, 0x20, 0x2D, 0x30, 0x39))
    return bytes(out)


def _truncate(data: bytes, others, rng) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _delete_chunk(data: bytes, others, rng) -> bytes:
    if len(data) < 2:
        return data
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randint(1, min(64, len(data) - start)) :]


def _repeat_chunk(data: bytes, others, rng) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randint(1, 256)]
    at = rng.randrange(len(data) + 1)
    return data[:at] + chunk * rng.choice((1, 2, 16)) + data[at:]


def _splice(data: bytes, others, rng) -> bytes:
    other = rng.choice(others)
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


def _replace_number(data: bytes, others, rng) -> bytes:
    """A number in the file's text (a header count, a coordinate, an index) replaced by a hostile one."""
    window = data[:4096] if rng.random() < 0.7 else data
    matches = list(NUMBER.finditer(window))
    if not matches:
        return _flip_bits(data, others, rng)
    match = rng.choice(matches)
    return data[: match.start()] + rng.choice(INTERESTING_NUMBERS) + data[match.end() :]


def _replace_word(data: bytes, others, rng) -> bytes:
    """A 1-, 2- or 4-byte binary word replaced by a hostile value (a count, an index, a float's bits)."""
    if len(data) < 4:
        return _flip_bits(data, others, rng)
    size = rng.choice((1, 2, 4, 4, 4))
    at = rng.randrange(len(data) - size + 1)
    if size == 4 and rng.random() < 0.7:
        at -= at % 4
    value = rng.choice(INTERESTING_WORDS) & ((1 << 8 * size) - 1)
    order = rng.choice(("little", "big"))
    return data[:at] + value.to_bytes(size, order) + data[at + size :]


BYTE_MUTATIONS = [_flip_bits, _set_byte, _truncate, _delete_chunk, _repeat_chunk, _splice, _replace_number,
                  _replace_number, _replace_word, _replace_word]  # fmt: skip


def _mutate_json_tree(tree, rng: random.Random):
    """One structural change somewhere in a glTF document (in place where possible); returns the tree."""
    if isinstance(tree, dict) and rng.random() < 0.35:
        return _gltf_special(tree, rng)
    places = []

    def walk(node, depth):
        if isinstance(node, dict):
            for key, value in node.items():
                places.append((node, key))
                walk(value, depth + 1)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                places.append((node, i))
                walk(value, depth + 1)

    walk(tree, 0)
    if not places:
        return rng.choice(INTERESTING_JSON)
    parent, key = rng.choice(places)
    choice = rng.random()
    if choice < 0.6:
        parent[key] = rng.choice(INTERESTING_JSON)
    elif choice < 0.75 and isinstance(parent[key], int | float) and not isinstance(parent[key], bool):
        parent[key] = parent[key] + rng.choice((-1, 1, 4, -4, 2**31))
    elif choice < 0.9:
        del parent[key]
    else:
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"x": parent[key]}
    return tree


def _gltf_special(tree: dict, rng: random.Random) -> dict:
    """The damage a glTF walker must survive: node cycles, deep chains, shared children, lying views."""
    nodes = tree.setdefault("nodes", [])
    if not isinstance(nodes, list):
        return tree
    kind = rng.randrange(6)
    if kind == 0 and nodes and isinstance(nodes[0], dict):  # a cycle
        nodes[0].setdefault("children", []).append(0) if isinstance(
            nodes[0].get("children", []), list
        ) else None
    elif kind == 1:  # a chain far deeper than any model needs
        start = len(nodes)
        depth = rng.choice((70, 1000, 5000))
        nodes.extend({"children": [start + i + 1]} for i in range(depth))
        nodes.append({"mesh": 0})
        tree["scenes"] = [{"nodes": [start]}]
        tree["scene"] = 0
    elif kind == 2:  # every node names the next two as children: 2^n instances
        start = len(nodes)
        nodes.extend({"children": [start + i + 1, start + i + 1], "mesh": 0} for i in range(40))
        nodes.append({"mesh": 0})
        tree["scenes"] = [{"nodes": [start]}]
        tree["scene"] = 0
    elif kind == 3 and isinstance(tree.get("bufferViews"), list) and tree["bufferViews"]:
        view = rng.choice(tree["bufferViews"])
        if isinstance(view, dict):
            key = rng.choice(("byteStride", "byteOffset", "byteLength", "buffer"))
            view[key] = rng.choice((0, 1, 3, 4, 252, 256, -4, 2**31, 2**62, 10**20))
    elif kind == 4 and isinstance(tree.get("accessors"), list) and tree["accessors"]:
        accessor = rng.choice(tree["accessors"])
        if isinstance(accessor, dict):
            key = rng.choice(("count", "byteOffset", "componentType", "type", "normalized", "sparse"))
            accessor[key] = rng.choice(INTERESTING_JSON + [{"count": 2**31, "indices": {}, "values": {}}])
    elif isinstance(tree.get("meshes"), list) and tree["meshes"]:
        mesh = rng.choice(tree["meshes"])
        primitives = mesh.get("primitives") if isinstance(mesh, dict) else None
        if isinstance(primitives, list) and primitives and isinstance(primitives[0], dict):
            primitives[0]["mode"] = rng.choice((0, 1, 3, 5, 6, 7, -1, 2**40))
    return tree


def _mutate_gltf(data: bytes, rng: random.Random) -> bytes:
    try:
        tree = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return _flip_bits(data, None, rng)
    return json.dumps(_mutate_json_tree(tree, rng)).encode()


def _mutate_glb(data: bytes, rng: random.Random) -> bytes:
    """A GLB whose JSON chunk is mutated as a tree; the BIN chunk and the header re-framed around it."""
    try:
        (length,) = struct.unpack_from("<I", data, 12)
        tree = json.loads(data[20 : 20 + length])
    except (struct.error, ValueError, UnicodeDecodeError):
        return _flip_bits(data, None, rng)
    rest = data[20 + length :]
    text = json.dumps(_mutate_json_tree(tree, rng)).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<2I", len(text), 0x4E4F534A) + text + rest
    return struct.pack("<3I", 0x46546C67, 2, 12 + len(chunks)) + chunks


def _npy_header_lie(data: bytes, rng: random.Random) -> bytes:
    """A .npy whose header dictionary claims another shape, dtype or order than its data."""
    end = data.find(b"}")
    if not data.startswith(b"\x93NUMPY") or end < 0:
        return _flip_bits(data, None, rng)
    shapes = ["(4, 4, 4)", "(2147483648, 4, 4, 4)", "(4, 4, 4, 4, 4)", "(0, 4, 4, 4)", "(1024, 1024, 1024)",
              "(-1, 4, 4)", "(4, 4)", "()", "(2, 1, 4, 4, 4)", "(2, 2, 4, 4, 4)", "(9223372036854775807,)",
              "(65536, 65536, 65536)", "(1025, 1025, 1025)", "'x'"]  # fmt: skip
    dtypes = [
        "'|b1'",
        "'<f8'",
        "'>f4'",
        "'|O'",
        "'<U4'",
        "'|V8'",
        "'<c16'",
        "'<M8[s]'",
        "'x'",
        "[('a', '<f4')]",
    ]
    header = (
        f"{{'descr': {rng.choice(dtypes)}, 'fortran_order': {rng.choice(('False', 'True', '1'))}, "
        f"'shape': {rng.choice(shapes)}, }}"
    )
    # keep the data where it was: pad the new header to the old one's length where it fits
    old_length = data.find(b"\n", 10) + 1 if data.find(b"\n", 10) > 0 else 128
    text = header.encode().ljust(old_length - 10 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data[old_length:]


def _mutate_npz(data: bytes, rng: random.Random) -> bytes:
    """A .npz rebuilt with one member mutated (stored or compressed), or a lying member added."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
    except Exception:  # a damaged archive: fall back to byte mutations
        return _flip_bits(data, None, rng)
    if not members:
        return data
    name = rng.choice(sorted(members))
    member = members[name]
    members[name] = (
        _npy_header_lie(member, rng)
        if rng.random() < 0.5
        else rng.choice(BYTE_MUTATIONS)(member, [member], rng)
    )
    if rng.random() < 0.2:
        members[rng.choice(("instance.npy", "x.npy", "../../escape.npy", "/abs.npy"))] = members[name]
    out = io.BytesIO()
    method = rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(out, "w", method) as archive:
        for member_name, content in members.items():
            archive.writestr(member_name, content)
    return out.getvalue()


STRUCTURED = {"gltf": _mutate_gltf, "glb": _mutate_glb, "npy": _npy_header_lie, "npz": _mutate_npz}


# --- the worker ------------------------------------------------------------------------------------


def _worker(connection, root: str, memory_cap_mib: int, resolution: int, cpu_limit: float) -> None:
    """Read each input file named on ``connection`` as a pipeline worker does; answer (kind, detail)."""
    from voxgan.errors import VoxganError
    from voxgan.ingest import formats
    from voxgan.ingest.sample import Settings, occupancy_of

    settings = Settings(root=root, resolution=resolution, mode="solid", padding=0.5, up_axis="z",
                        max_faces=2_000_000, grid_coords=False)  # fmt: skip
    _warm_up(settings, occupancy_of)
    warnings.simplefilter("ignore")  # numpy's warnings on hostile numbers: the answer is what counts
    real_root = os.path.realpath(root)
    outside: list[str] = []
    # where a hostile reference lands: beside the input folder (the secret), at /, in /etc
    watched = (os.path.dirname(real_root) + os.sep, "/etc/")

    def audit(event, args):
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            path = os.path.realpath(os.fsdecode(args[0]))
            if not path.startswith(real_root + os.sep) and (
                path.startswith(watched) or os.path.dirname(path) == "/" or SECRET in path
            ):
                outside.append(path)

    sys.addaudithook(audit)
    size = _address_space()
    resource.setrlimit(resource.RLIMIT_AS, (size + memory_cap_mib * 2**20, resource.RLIM_INFINITY))
    connection.send(("ready", size))
    while True:
        name = connection.recv()
        if name is None:
            return
        outside.clear()
        signal.setitimer(signal.ITIMER_PROF, cpu_limit)  # SIGPROF ends the worker past the limit
        try:
            answer = ("sample", "")
            for source in formats.volume_sources(Path(root), [name])[:3]:
                occupancy_of(settings, source)
        except VoxganError as error:
            line = str(error)
            answer = (
                ("error", line) if line.strip() and "\n" not in line else ("crash", f"not one line: {line!r}")
            )
        except MemoryError:
            answer = ("memory", traceback.format_exc())
        except BaseException:  # every other kind is a reader bug: the finding's traceback
            answer = ("crash", traceback.format_exc())
        signal.setitimer(signal.ITIMER_PROF, 0)
        if outside:
            answer = ("escape", f"opened {outside[:3]}")
        connection.send(answer)


def _warm_up(settings, occupancy_of) -> None:
    """Compile the numba loops and import every lazy dependency once, before the memory cap."""
    from tests import meshfiles as m

    folder = Path(settings.root) / "warm"
    m.write_off_modelnet_header(folder / "a.off")
    m.write_mat_v5(folder / "a.mat", {"instance": m.asymmetric_occupancy()})
    m.write_mat_v73(folder / "b.mat", {"instance": m.asymmetric_occupancy()})
    _save_npz(folder / "a.npz", True, instance=m.asymmetric_occupancy())
    for name in ("a.off", "a.mat", "b.mat", "a.npz"):
        occupancy_of(settings, f"warm/{name}")
    shutil.rmtree(folder)


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


class Worker:
    """One reading process; restarted after it dies or hangs."""

    def __init__(self, root: Path, memory_cap_mib: int, resolution: int, time_limit: float):
        self.args = (str(root), memory_cap_mib, resolution, time_limit)
        self.start()

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, *self.args), daemon=True)
        self.process.start()
        child.close()
        kind, self.size = self.connection.recv()
        assert kind == "ready"

    def read(self, name: str) -> tuple[str, str]:
        """(kind, detail) of one input: sample, error, crash, memory, escape or hang.

        A hang is an input that takes more than the time limit of the worker's CPU time (SIGPROF ends
        it: on a shared machine the wall clock says more about the neighbours than about the reader),
        or that waits without using the CPU for 30 times the limit of wall time.
        """
        cpu_limit = self.args[-1]
        try:
            self.connection.send(name)
            if self.connection.poll(max(30 * cpu_limit, 60.0)):
                return self.connection.recv()
            self.stop()
            self.start()
            return "hang", f"no answer after {max(30 * cpu_limit, 60.0)} s of wall time"
        except (EOFError, OSError):  # the worker died
            self.process.join()
        code = self.process.exitcode
        self.start()
        if code == -signal.SIGPROF:
            return "hang", f"over {cpu_limit} s of CPU time"
        return ("memory" if code == -signal.SIGKILL else "crash"), f"worker died with exit code {code}"

    def stop(self) -> None:
        self.process.kill()
        self.process.join()


# --- the campaign ----------------------------------------------------------------------------------


def campaign(
    inputs: int,
    formats_: list[str],
    *,
    seed: int,
    time_limit: float,
    memory_cap_mib: int,
    findings: Path | None,
    minutes: float | None,
    resolution: int = 8,
    log=None,
) -> dict:
    """Run the campaign; returns {format: {kind: count}} plus the settings under ``"_settings"``."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="voxgan-fuzz-") as tmp:
        root = Path(tmp) / "input"
        seed_names = write_seeds(root)
        seeds = {fmt: [(root / name).read_bytes() for name in seed_names[fmt]] for fmt in formats_}
        kinds = ("inputs", "sample", "error", "crash", "hang", "memory", "escape", "seconds")
        counts = {fmt: dict.fromkeys(kinds, 0) for fmt in formats_}
        worker = Worker(root, memory_cap_mib, resolution, time_limit)
        rng = random.Random(seed)
        done = False
        try:
            while not done:
                done = True
                for fmt in formats_:
                    for _ in range(min(100, inputs - counts[fmt]["inputs"])):
                        done = False
                        index = rng.randrange(len(seeds[fmt]))
                        data = mutate(fmt, seeds[fmt][index], seeds[fmt], rng)
                        folder = Path(seed_names[fmt][index]).parent  # beside the buffers it names
                        name = f"{folder}/in-{counts[fmt]['inputs']}.{fmt}"
                        (root / name).write_bytes(data)
                        began = time.monotonic()
                        kind, detail = worker.read(name)
                        counts[fmt]["seconds"] += time.monotonic() - began
                        counts[fmt]["inputs"] += 1
                        counts[fmt][kind] += 1
                        if kind in ("crash", "hang", "memory", "escape") and findings is not None:
                            _keep_finding(findings, fmt, counts[fmt]["inputs"], kind, data, detail)
                            if log:
                                print(f"{fmt} {kind}: {detail.strip().splitlines()[-1][:200]}", file=log,
                                      flush=True)  # fmt: skip
                        (root / name).unlink()
                if log:
                    done_so_far = {fmt: counts[fmt]["inputs"] for fmt in formats_}
                    print(f"{time.monotonic() - start:7.0f} s {done_so_far}", file=log, flush=True)
                if minutes is not None and time.monotonic() - start > minutes * 60:
                    break
        finally:
            worker.stop()
    seconds = time.monotonic() - start
    counts["_settings"] = {"seed": seed, "time_limit_s": time_limit, "memory_cap_mib": memory_cap_mib,
                           "resolution": resolution, "seconds": round(seconds, 1),
                           "worker_start_mib": round(worker.size / 2**20)}  # fmt: skip
    return counts


def _keep_finding(findings: Path, fmt: str, number: int, kind: str, data: bytes, detail: str) -> None:
    findings.mkdir(parents=True, exist_ok=True)
    stem = findings / f"{fmt}-{kind}-{number:07d}"
    stem.with_suffix(f".{fmt}").write_bytes(data)
    stem.with_suffix(".txt").write_text(detail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="mutated inputs per format")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=10.0, help="CPU seconds per input before a hang")
    parser.add_argument("--memory-cap-mib", type=int, default=1024,
                        help="address space a worker may add to its start-up size")  # fmt: skip
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long (whole rounds)")
    parser.add_argument("--findings", type=Path, default=Path("fuzz-findings"))
    parser.add_argument("--out", type=Path, default=None, help="write the counts here as JSON")
    args = parser.parse_args()
    formats_ = [f.strip().lstrip(".") for f in args.formats.split(",") if f.strip()]
    counts = campaign(args.inputs, formats_, seed=args.seed, time_limit=args.time_limit,
                      memory_cap_mib=args.memory_cap_mib, findings=args.findings, minutes=args.minutes,
                      log=sys.stderr)  # fmt: skip
    settings = counts.pop("_settings")
    print(f"{'format':8} {'inputs':>8} {'samples':>8} {'errors':>8} {'crashes':>8} {'hangs':>6} "
          f"{'memory':>7} {'escapes':>8}")  # fmt: skip
    for fmt, c in counts.items():
        print(f"{fmt:8} {c['inputs']:8,} {c['sample']:8,} {c['error']:8,} {c['crash']:8} {c['hang']:6} "
              f"{c['memory']:7} {c['escape']:8}")  # fmt: skip
    print(json.dumps(settings))
    if args.out:
        args.out.write_text(json.dumps({**counts, "_settings": settings}, indent=1))


if __name__ == "__main__":
    main()
