"""voxgan.ingest.formats: every format and quirk loads right, broken files fail with a reason, and
nothing outside the input folder is read."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tests import meshfiles
from voxgan.ingest.formats import (
    MESH_EXTENSIONS,
    VOXEL_EXTENSIONS,
    MeshError,
    load_binvox,
    load_mesh,
)
from voxgan.ingest.frame import apply_transform

# --- helpers --------------------------------------------------------------------------------------


def triangle_set(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Triangles as rows of 9 coordinates, corners rotated to start at the smallest one (orientation
    kept), rows sorted: equal for the same triangles in any order and any vertex numbering."""
    corners = np.round(vertices[faces], 5)  # (F, 3, 3)
    keys = [tuple(map(tuple, tri)) for tri in corners]
    rows = []
    for tri in keys:
        start = min(range(3), key=lambda i: tri[i])
        rows.append(sum((tri[(start + k) % 3] for k in range(3)), ()))
    return np.array(sorted(rows))


class OpenWatch:
    """Linux inotify on a folder: records every open or read of anything in it (or of the folder)."""

    IN_ACCESS, IN_OPEN = 0x1, 0x20

    def __init__(self, folder: Path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0
        watch = self.libc.inotify_add_watch(self.fd, str(folder).encode(), self.IN_ACCESS | self.IN_OPEN)
        assert watch >= 0

    def events(self) -> bytes:
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def outside(tmp_path: Path):
    """(root, outside folder holding a valid secret buffer, watch on the outside folder)."""
    root = tmp_path / "input"
    secret_folder = tmp_path / "outside"
    root.mkdir()
    meshfiles.write_secret_buffer(secret_folder / "secret.bin")
    (secret_folder / "secret.png").write_text(meshfiles.SECRET_TEXT)
    (secret_folder / "secret.mtl").write_text(meshfiles.SECRET_TEXT)
    watch = OpenWatch(secret_folder)
    yield root, secret_folder, watch
    watch.close()


# --- every format and quirk -----------------------------------------------------------------------


def test_extension_sets():
    assert {".obj", ".off", ".stl", ".ply", ".glb", ".gltf"} == MESH_EXTENSIONS
    assert {".binvox", ".mat", ".npy", ".npz"} == VOXEL_EXTENSIONS


@pytest.mark.parametrize("writer", sorted(meshfiles.GOOD_FILES))
def test_good_fixture_loads_with_counts_and_bounds(tmp_path: Path, writer: str):
    path = getattr(meshfiles, writer)(tmp_path / meshfiles.GOOD_FILES[writer])
    vertices, faces = load_mesh(path, tmp_path)
    expected = meshfiles.EXPECTED[writer]
    assert vertices.dtype == np.float64 and vertices.shape == (expected.vertices, 3)
    assert faces.dtype == np.int64 and faces.shape == (expected.faces, 3)
    np.testing.assert_allclose([vertices.min(axis=0), vertices.max(axis=0)], expected.bounds, atol=1e-6)
    assert faces.min() == 0 and faces.max() == len(vertices) - 1
    assert (faces[:, 0] != faces[:, 1]).all() and (faces[:, 1] != faces[:, 2]).all()


def test_multipart_obj_keeps_every_part_with_its_faces(tmp_path: Path):
    path = meshfiles.write_obj_multipart(tmp_path / "two.obj")
    vertices, faces = load_mesh(path, tmp_path)
    centroids = vertices[faces].mean(axis=1)
    assert (centroids[:, 0] <= 1.0).sum() == 12  # first box, 6 quads
    assert (centroids[:, 0] >= 2.0).sum() == 12  # second box, negative indices
    # the negative indices point at the second box's own vertices, not the first box's
    assert (vertices[faces[centroids[:, 0] >= 2.0]][..., 0] >= 2.0).all()


def test_glb_node_transforms_are_applied_per_instance(tmp_path: Path):
    path = meshfiles.write_glb_scene(tmp_path / "scene.glb")
    vertices, faces = load_mesh(path, tmp_path)
    boxes = [vertices[faces[i : i + 12]].reshape(-1, 3) for i in range(0, 36, 12)]
    boxes_bounds = sorted((tuple(b.min(axis=0)), tuple(b.max(axis=0))) for b in boxes)
    assert boxes_bounds == sorted(
        [
            ((10.0, 0.0, 0.0), (11.0, 1.0, 1.0)),  # translation
            ((0.0, 10.0, 0.0), (2.0, 12.0, 2.0)),  # parent scale 2 of child translation
            ((-1.0, 0.0, -3.0), (0.0, 1.0, -2.0)),  # column-major matrix: quarter turn, then down
        ]
    )


def test_off_polygons_are_fan_triangulated_onto_the_same_surface(tmp_path: Path):
    quads = load_mesh(meshfiles.write_off_modelnet_header(tmp_path / "q.off"), tmp_path)
    triangles = meshfiles.box_vertices(), meshfiles.box_triangles()
    area = [trimesh.Trimesh(*mesh, process=False).area for mesh in (quads, triangles)]
    volume = [trimesh.Trimesh(*mesh, process=False).volume for mesh in (quads, triangles)]
    assert area == pytest.approx([6.0, 6.0]) and volume == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("binary", [True, False])
def test_ply_with_mixed_polygon_sizes_is_fan_triangulated(tmp_path: Path, binary: bool):
    path = meshfiles.write_ply_mixed_polygons(tmp_path / "mixed.ply", binary=binary)
    mesh = trimesh.Trimesh(*load_mesh(path, tmp_path), process=False)
    assert len(mesh.faces) == 12 and mesh.volume == pytest.approx(1.0) and mesh.area == pytest.approx(6.0)


@pytest.mark.parametrize("count_type, count_format", [("int", "i"), ("uchar", "B")])
@pytest.mark.parametrize("mixed", [False, True])
def test_big_endian_ply_with_doubles_and_extra_face_property(tmp_path: Path, count_type, count_format, mixed):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    header = (
        "ply\nformat binary_big_endian 1.0\n"
        f"element vertex {len(mesh.vertices)}\nproperty double x\nproperty double y\nproperty double z\n"
        f"element face {len(mesh.faces) + mixed}\nproperty list {count_type} uint vertex_indices\n"
        "property float quality\nend_header\n"
    )
    body = b"".join(struct.pack(">3d", *v) for v in mesh.vertices)
    body += b"".join(struct.pack(f">{count_format}3If", 3, *f, 0.5) for f in mesh.faces)
    if mixed:  # one quad at the end: the face walk, not the uniform table
        body += struct.pack(f">{count_format}4If", 4, 0, 1, 2, 3, 0.5)
    (tmp_path / "be.ply").write_bytes(header.encode() + body)
    vertices, faces = load_mesh(tmp_path / "be.ply", tmp_path)
    np.testing.assert_allclose(vertices[faces[: len(mesh.faces)]], mesh.vertices[mesh.faces])
    assert len(faces) == len(mesh.faces) + 2 * mixed
    (tmp_path / "cut.ply").write_bytes(header.encode() + body[:-3])
    with pytest.raises(MeshError, match="truncated"):
        load_mesh(tmp_path / "cut.ply", tmp_path)


def test_binary_stl_whose_header_starts_with_solid_is_read_as_binary(tmp_path: Path):
    path = meshfiles.write_stl_binary(tmp_path / "solid.stl", solid_prefix=True)
    assert path.read_bytes().startswith(b"solid")
    vertices, faces = load_mesh(path, tmp_path)
    assert faces.shape == (12, 3)


def test_nan_vertex_drops_only_the_faces_using_it(tmp_path: Path):
    vertices, faces = load_mesh(meshfiles.write_obj_some_nan(tmp_path / "n.obj"), tmp_path)
    assert np.isfinite(vertices).all() and faces.shape == (12, 3)


def test_obj_quirks_inline_comments_continuations_indented_lines_and_vertex_colours(tmp_path: Path):
    text = (
        "# header\n  v 0 0 0 # indented, commented\nv 1 0 0 1 0 0\nv 0 1 \\\n 0\n\tv 0 0 1\n"
        "f 1 2 3 # a triangle\nf 1 3 4\nf 1 \\\n 4 2\nl 1 2\nvt 0 0\nvn 0 0 1\n"
    )
    (tmp_path / "quirks.obj").write_text(text)
    vertices, faces = load_mesh(tmp_path / "quirks.obj", tmp_path)
    np.testing.assert_allclose(vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 1]]


def test_obj_vertex_line_missing_a_coordinate_names_the_vertex(tmp_path: Path):
    (tmp_path / "short.obj").write_text("v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(MeshError, match="cannot parse OBJ: vertex 2: expected 3 coordinates, found 2"):
        load_mesh(tmp_path / "short.obj", tmp_path)


@pytest.mark.parametrize("writer, line", [("write_off_modelnet_header", 11), ("write_ply_ascii", 21)])
def test_polygon_line_short_of_its_count_raises_with_its_line(tmp_path: Path, writer: str, line: int):
    path = getattr(meshfiles, writer)(tmp_path / meshfiles.GOOD_FILES[writer])
    lines = path.read_text().splitlines()
    lines[line - 1] = "4 4 5"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MeshError, match=f"line {line}: face lists fewer indices than its count"):
        load_mesh(path, tmp_path)


TEXT_WRITERS = [
    "write_obj_multipart",
    "write_off_modelnet_header",
    "write_off_mixed_polygons",
    "write_off_colors",
    "write_stl_ascii",
    "write_ply_ascii",
]


@pytest.mark.parametrize("writer", TEXT_WRITERS)
def test_text_formats_with_windows_line_endings(tmp_path: Path, writer: str):
    path = getattr(meshfiles, writer)(tmp_path / meshfiles.GOOD_FILES[writer])
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    vertices, faces = load_mesh(path, tmp_path)
    expected = meshfiles.EXPECTED[writer]
    assert (len(vertices), len(faces)) == (expected.vertices, expected.faces)
    np.testing.assert_allclose([vertices.min(axis=0), vertices.max(axis=0)], expected.bounds, atol=1e-6)


def test_uppercase_extension_loads(tmp_path: Path):
    path = meshfiles.write_off_modelnet_header(tmp_path / "BOX.OFF")
    assert load_mesh(path, tmp_path)[1].shape == (12, 3)


# --- the vectorised parsers agree with trimesh -----------------------------------------------------


@pytest.fixture(scope="module")
def realistic_files(tmp_path_factory) -> tuple[Path, trimesh.Trimesh]:
    folder = tmp_path_factory.mktemp("realistic")
    mesh = trimesh.creation.icosphere(subdivisions=3)
    mesh.vertices += np.random.default_rng(0).normal(0, 0.01, mesh.vertices.shape)
    mesh.export(folder / "sphere.obj")
    mesh.export(folder / "sphere.off")
    mesh.export(folder / "sphere.stl")
    mesh.export(folder / "sphere_ascii.stl", file_type="stl_ascii")
    mesh.export(folder / "sphere.ply")
    mesh.export(folder / "sphere_ascii.ply", encoding="ascii")
    mesh.export(folder / "sphere.glb")
    return folder, mesh


@pytest.mark.parametrize(
    "name", ["sphere.obj", "sphere.off", "sphere.stl", "sphere_ascii.stl", "sphere.ply", "sphere_ascii.ply",
             "sphere.glb"]
)  # fmt: skip
def test_loader_matches_trimesh_on_files_trimesh_wrote(realistic_files, name: str):
    folder, _ = realistic_files
    ours = load_mesh(folder / name, folder)
    theirs = trimesh.load_mesh(folder / name, process=False)
    assert len(ours[1]) == len(theirs.faces) == 1280
    np.testing.assert_allclose(triangle_set(*ours), triangle_set(theirs.vertices, theirs.faces), atol=2e-5)


def test_obj_with_quads_and_negative_indices_matches_trimesh(tmp_path: Path):
    path = meshfiles.write_obj_multipart(tmp_path / "two.obj")
    ours = load_mesh(path, tmp_path)
    theirs = trimesh.load_mesh(path, process=False, skip_materials=True)
    assert trimesh.Trimesh(*ours, process=False).volume == pytest.approx(theirs.volume) == pytest.approx(2.0)
    assert trimesh.Trimesh(*ours, process=False).area == pytest.approx(theirs.area)


# --- broken files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", sorted(meshfiles.BROKEN))
def test_broken_file_raises_mesh_error_with_reason(tmp_path: Path, writer: str):
    name, reason = meshfiles.BROKEN[writer]
    path = getattr(meshfiles, writer)(tmp_path / name)
    with pytest.raises(MeshError) as caught:
        load_mesh(path, tmp_path)
    message = str(caught.value)
    assert reason in message and "\n" not in message


@pytest.mark.parametrize("writer", sorted(meshfiles.GOOD_FILES))
def test_cut_or_corrupted_files_load_or_raise_mesh_error_never_anything_else(tmp_path: Path, writer: str):
    path = getattr(meshfiles, writer)(tmp_path / meshfiles.GOOD_FILES[writer])
    original = path.read_bytes()
    rng = np.random.default_rng(len(original))
    variants = [original[:cut] for cut in np.linspace(1, len(original) - 1, 20).astype(int)]
    for _ in range(30):
        corrupted = bytearray(original)
        for position in rng.integers(0, len(original), 3):
            corrupted[int(position)] = int(rng.integers(0, 256))
        variants.append(bytes(corrupted))
    for variant in variants:
        path.write_bytes(variant)
        try:
            vertices, faces = load_mesh(path, tmp_path)
        except MeshError as error:
            assert str(error) and "\n" not in str(error)
        else:  # whatever loads is a valid cleaned mesh
            assert np.isfinite(vertices).all() and len(faces) >= 1
            assert faces.min() >= 0 and faces.max() < len(vertices)


@pytest.mark.parametrize(
    "key, value",
    [
        ("accessors", "x"),
        ("accessors", [{"count": "many"}]),
        ("accessors", [{"count": -5}]),
        ("nodes", [1, "two"]),
        ("meshes", [{"primitives": [5]}]),
        ("meshes", [{"primitives": [{"indices": "0"}]}]),
        ("buffers", [{"uri": 5}]),
        ("buffers", "nothing"),
        ("bufferViews", [{"buffer": 7, "byteLength": 4}]),
        ("scenes", [{"nodes": [99]}]),
    ],
)
def test_malformed_gltf_documents_raise_mesh_error(tmp_path: Path, key: str, value):
    document, blob = meshfiles._gltf_document(None)
    document[key] = value
    (tmp_path / "bad.glb").write_bytes(meshfiles._glb(document, blob))
    with pytest.raises(MeshError, match="GLB|glTF|no faces|empty"):
        load_mesh(tmp_path / "bad.glb", tmp_path)


@pytest.mark.parametrize("extension", sorted(MESH_EXTENSIONS))
def test_garbage_and_empty_files_of_every_extension_raise_mesh_error(tmp_path: Path, extension: str):
    for seed in range(3):
        with pytest.raises(MeshError):
            load_mesh(meshfiles.write_garbage(tmp_path / f"g{seed}{extension}", seed=seed), tmp_path)
    with pytest.raises(MeshError, match="empty file"):
        load_mesh(meshfiles.write_empty(tmp_path / f"e{extension}"), tmp_path)


@pytest.mark.parametrize(
    "writer",
    ["write_off_huge_header", "write_stl_huge_header", "write_ply_huge_header", "write_glb_huge_accessor"],
)
def test_header_claiming_a_billion_faces_fails_without_allocating(tmp_path: Path, writer: str):
    name = meshfiles.BROKEN[writer][0] if writer in meshfiles.BROKEN else "huge.glb"
    path = getattr(meshfiles, writer)(tmp_path / name)
    tracemalloc.start()
    try:
        with pytest.raises(MeshError, match="1,000,000,000"):
            load_mesh(path, tmp_path)
        with pytest.raises(MeshError, match=r"1,000,000,000 (> --max-faces 500,000\)|items)"):
            load_mesh(path, tmp_path, max_faces=500_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize(
    "writer", ["write_obj_multipart", "write_off_modelnet_header", "write_stl_binary", "write_stl_ascii",
               "write_ply", "write_glb_scene", "write_gltf_external_buffer"]
)  # fmt: skip
def test_max_faces_refuses_larger_meshes_and_accepts_equal(tmp_path: Path, writer: str):
    path = getattr(meshfiles, writer)(tmp_path / meshfiles.GOOD_FILES[writer])
    faces = meshfiles.EXPECTED[writer].faces
    with pytest.raises(MeshError, match=rf"too many faces \(\d+ > --max-faces {faces - 1}\)"):
        load_mesh(path, tmp_path, max_faces=faces - 1)
    assert len(load_mesh(path, tmp_path, max_faces=faces)[1]) == faces


def test_fifo_named_like_a_mesh_is_refused_without_blocking(tmp_path: Path):
    os.mkfifo(tmp_path / "pipe.obj")

    def unblock():  # were the FIFO opened, this writer would let the read end instead of hanging
        time.sleep(2)
        with contextlib.suppress(OSError):  # ENXIO: no reader, as it should be
            os.close(os.open(tmp_path / "pipe.obj", os.O_WRONLY | os.O_NONBLOCK))

    writer = threading.Thread(target=unblock, daemon=True)
    writer.start()
    with pytest.raises(MeshError, match="not a regular file"):
        load_mesh(tmp_path / "pipe.obj", tmp_path)


def test_unknown_extension_and_missing_file(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("v 0 0 0\n")
    with pytest.raises(MeshError, match="not a mesh file extension"):
        load_mesh(tmp_path / "notes.txt", tmp_path)
    with pytest.raises(MeshError, match="cannot read file"):
        load_mesh(tmp_path / "missing.obj", tmp_path)


# --- nothing outside the input folder is read ------------------------------------------------------


def test_open_watch_sees_a_read_of_the_secret(outside):
    _, secret_folder, watch = outside
    (secret_folder / "secret.bin").read_bytes()
    assert watch.events()  # the watch works: the tests below would see a read


def test_gltf_buffer_outside_root_is_never_read(outside):
    root, secret_folder, watch = outside
    path = meshfiles.write_gltf_pointing_at(root / "model.gltf", "../outside/secret.bin")
    with pytest.raises(MeshError, match="outside the input folder"):
        load_mesh(path, root)
    assert watch.events() == b""
    # with a root holding the secret, the same file loads the secret's geometry: the guard stopped it
    vertices, _ = load_mesh(path, secret_folder.parent)
    assert vertices.max() == 12.0


@pytest.mark.parametrize("escape", ["../outside/secret.bin", "%2E%2E/outside/secret.bin", "ABSOLUTE"])
def test_glb_buffer_escaping_root_is_refused(outside, escape: str):
    root, secret_folder, watch = outside
    uri = str(secret_folder / "secret.bin") if escape == "ABSOLUTE" else escape
    path = meshfiles.write_glb_pointing_at(root / "model.glb", uri)
    with pytest.raises(MeshError, match="refusing"):
        load_mesh(path, root)
    assert watch.events() == b""


def test_gltf_buffer_at_http_is_never_fetched(tmp_path: Path):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        for uri in (
            f"http://127.0.0.1:{port}/secret.bin",
            f"https://127.0.0.1:{port}/s.bin",
            "file:///etc/passwd",
        ):
            path = meshfiles.write_gltf_pointing_at(tmp_path / "remote.gltf", uri)
            with pytest.raises(MeshError, match="refusing to fetch a URL"):
                load_mesh(path, tmp_path)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    finally:
        server.close()


def test_gltf_buffer_in_a_sibling_folder_inside_root_loads(tmp_path: Path):
    meshfiles.write_secret_buffer(tmp_path / "shared" / "box.bin")
    path = meshfiles.write_gltf_pointing_at(tmp_path / "models" / "a.gltf", "../shared/box.bin")
    assert load_mesh(path, tmp_path)[1].shape == (36, 3)


def test_obj_material_and_gltf_image_and_ply_texture_outside_are_never_read(outside):
    root, _, watch = outside
    obj = (root / "m.obj").write_text(
        "mtllib ../outside/secret.mtl\nusemtl x\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    )
    assert obj and load_mesh(root / "m.obj", root)[1].shape == (1, 3)
    document, blob = meshfiles._gltf_document(None)
    document["images"] = [{"uri": "../outside/secret.png"}]
    (root / "img.glb").write_bytes(meshfiles._glb(document, blob))
    assert load_mesh(root / "img.glb", root)[1].shape == (36, 3)
    ply = meshfiles.write_ply(root / "t.ply").read_bytes().replace(b"../../outside/", b"../outside/")
    (root / "t.ply").write_bytes(ply)
    assert load_mesh(root / "t.ply", root)[1].shape == (12, 3)
    assert watch.events() == b""


def test_symlink_to_a_mesh_outside_root_is_refused(outside):
    root, secret_folder, watch = outside
    target = meshfiles.write_off_modelnet_header(secret_folder / "box.off")
    watch.events()
    (root / "link.off").symlink_to(target)
    with pytest.raises(MeshError, match="outside the input folder"):
        load_mesh(root / "link.off", root)
    assert watch.events() == b""


# --- binvox ---------------------------------------------------------------------------------------


def test_binvox_axis_order_from_hand_written_bytes(tmp_path: Path):
    # 2x2x2 grid; stored order is y fastest, then z, then x: the second stored voxel is x=0, z=0, y=1
    head = b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n"
    (tmp_path / "one.binvox").write_bytes(head + bytes([0, 1, 1, 1, 0, 6]))
    occupancy, _ = load_binvox(tmp_path / "one.binvox", tmp_path)
    assert occupancy.shape == (2, 2, 2) and occupancy.dtype == bool
    assert np.argwhere(occupancy).tolist() == [[0, 1, 0]]
    # the third stored voxel is x=0, z=1, y=0
    (tmp_path / "two.binvox").write_bytes(head + bytes([0, 2, 1, 1, 0, 5]))
    assert np.argwhere(load_binvox(tmp_path / "two.binvox", tmp_path)[0]).tolist() == [[0, 0, 1]]


def test_binvox_asymmetric_grid_round_trips_and_matches_trimesh(tmp_path: Path):
    expected = meshfiles.asymmetric_occupancy(6)
    path = meshfiles.write_binvox(tmp_path / "l.binvox", expected, translate=(0.5, -1.0, 2.0), scale=3.0)
    occupancy, voxel_to_mesh = load_binvox(path, tmp_path)
    np.testing.assert_array_equal(occupancy, expected)
    assert occupancy.flags.c_contiguous
    # trimesh's binvox reader finds the same voxels (it maps them to space with scale / (D - 1); binvox's
    # own definition, followed here, is model = translate + scale * (ijk + 0.5) / D at a voxel centre)
    np.testing.assert_array_equal(trimesh.load(path).matrix, expected)
    centres = apply_transform(np.array([[0.5, 0.5, 0.5], [5.5, 0.5, 0.5]]), voxel_to_mesh)
    np.testing.assert_allclose(centres, [[0.75, -0.75, 2.25], [3.25, -0.75, 2.25]])
    np.testing.assert_allclose(apply_transform(np.zeros((1, 3)), voxel_to_mesh), [[0.5, -1.0, 2.0]])
    np.testing.assert_allclose(apply_transform(np.full((1, 3), 6.0), voxel_to_mesh), [[3.5, 2.0, 5.0]])


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"#binvox 1\ndim 2 2 2\ndata\n" + bytes([1, 7]), "runs cover 7 voxels"),
        (b"#binvox 1\ndim 2 2 3\ndata\n" + bytes([1, 12]), "not cubic"),
        (b"#binvox 1\ndim 100000 100000 100000\ndata\n" + bytes([1, 8]), "not cubic with a side"),
        (b"#binvox 1\ntranslate 0 0 0\ndata\n", "dim"),
        (b"not binvox", "no '#binvox' header"),
    ],
)
def test_broken_binvox_raises_mesh_error(tmp_path: Path, data: bytes, reason: str):
    (tmp_path / "b.binvox").write_bytes(data)
    with pytest.raises(MeshError, match=reason):
        load_binvox(tmp_path / "b.binvox", tmp_path)


# --- normalisation --------------------------------------------------------------------------------
