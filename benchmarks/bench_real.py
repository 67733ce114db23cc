"""Real meshes end to end: voxgan voxelize against trimesh, one process each, on free meshes from Debian.

Fetches the meshes that Debian packages ship (``cura``: printer beds and parts, ``libcgal-demo``: CGAL's
test meshes, ``assimp-testmodels``: assimp's format samples) with ``apt-get download`` and ``dpkg-deb -x``
into ``data/real/`` (ignored by git), keeps the mesh files both voxgan and trimesh read (OBJ, OFF, STL,
PLY, GLB; 2 KB to 2 MB; no point clouds, no deliberately broken files) in ``data/real/set/``, then times
in one run, each as one fresh process over the whole set, the commands in turn for ``--rounds`` rounds
(medians reported: single runs on a shared machine vary by a third):

* ``voxgan voxelize SET OUT --resolution R --workers 1`` (process start, imports, parse, voxelize, write);
* trimesh: ``trimesh.load`` + ``voxelized(pitch).fill()`` of each mesh scaled as voxgan scales it;
* trimesh: ``trimesh.load`` alone;

the peak memory (RSS) of voxgan's processes, and the mean occupancy IoU of voxgan's samples against the
exact reference (tests/reference_voxelize.py) on the meshes of at most ``--iou-faces`` faces. With
``--compiled-reference`` the reference's winding-number sum (every triangle at every voxel centre) runs
in voxgan's compiled loop with no group of triangles counted as far, which is the same exact sum
(tests/ingest/test_kernels.py holds them equal), many times faster at 64³ and 128³.

    .venv/bin/python benchmarks/bench_real.py                 # 32³
    .venv/bin/python benchmarks/bench_real.py --resolution 128 --iou-faces 1500 --no-fill --compiled-reference
    git worktree add /tmp/before COMMIT && .venv/bin/python benchmarks/bench_real.py --baseline /tmp/before

``--baseline DIR`` also times ``python -m voxgan voxelize`` run from another checkout, in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PACKAGES = ("cura", "libcgal-demo", "assimp-testmodels")
EXTENSIONS = (".obj", ".off", ".stl", ".ply", ".glb")
SKIP_PARTS = ("invalid", "points_3", "draco")


def fetch(folder: Path) -> Path:
    """Download and unpack the packages into ``folder`` (once); return ``folder / "set"``, the meshes."""
    debs, unpacked, chosen = folder / "debs", folder / "root", folder / "set"
    if chosen.is_dir():
        return chosen
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob("*.deb")):
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    for archive in unpacked.rglob("data.tar.gz"):  # CGAL ships its meshes as a tarball
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("data/meshes/")]
            tar.extractall(archive.parent / "cgal", members=members, filter="data")
    candidates = sorted(
        p
        for p in unpacked.rglob("*")
        if p.is_file()
        and p.suffix.lower() in EXTENSIONS
        and 2_000 <= p.stat().st_size <= 2_000_000
        and not any(part in p.parts for part in SKIP_PARTS)
    )
    staging = folder / "set.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for path in candidates:
        if trimesh_faces(path) > 0:
            name = "__".join(path.relative_to(unpacked).parts[-2:])
            shutil.copyfile(path, staging / name)
    staging.rename(chosen)
    return chosen


def trimesh_faces(path: Path) -> int:
    """Faces trimesh reads from a file as one mesh (0 when it reads none)."""
    import trimesh

    try:
        mesh = trimesh.load(path, force="mesh", process=False)
        return len(mesh.faces) if np.isfinite(mesh.vertices).all() and mesh.extents.max() > 0 else 0
    except Exception:
        return 0


TRIMESH_SCRIPT = """
import sys, numpy as np, trimesh
from pathlib import Path
fill, r = sys.argv[1] == "fill", int(sys.argv[2])
for path in sorted(Path(sys.argv[3]).iterdir()):
    mesh = trimesh.load(path, force="mesh")
    if fill:
        pitch = mesh.extents.max() / (r - 1)
        mesh.voxelized(pitch=pitch).fill()
"""


def timed(command: list[str], cwd: Path | None = None) -> float:
    """Wall seconds of one process (``python -m voxgan`` run in a checkout's folder runs that checkout)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - start


def warm_up(meshes: Path, folder: Path, cwd: Path | None = None) -> None:
    """One small voxgan run first, so that numba's compiled kernels are in its on-disk cache (compiling
    them takes about a minute once per install; every later process loads them)."""
    few = folder / "meshes"
    shutil.rmtree(folder, ignore_errors=True)
    few.mkdir(parents=True)
    for path in sorted(meshes.iterdir())[:3]:
        shutil.copyfile(path, few / path.name)
    command = [sys.executable, "-m", "voxgan", "voxelize", str(few), str(folder / "out"), "--workers", "1"]
    subprocess.run([*command, "--layout", "flat", "--quiet"], check=True, stdout=subprocess.DEVNULL, cwd=cwd)


def compiled_reference_winding(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The reference's exact winding sum, (P, 3), (V, 3), (F, 3) -> (P,), by voxgan's compiled loop with no
    group of triangles far enough to count by its dipole: every triangle's solid angle at every point."""
    from voxgan.ingest.winding import clustered_winding_numbers

    triangles = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    triangles = np.ascontiguousarray(triangles[np.isfinite(triangles).all(axis=(1, 2))])
    return clustered_winding_numbers(np.asarray(points, dtype=np.float64), triangles, beta=np.inf)


def mean_iou(shards_dir: Path, meshes: Path, max_faces: int) -> tuple[float, float, str, int]:
    """Mean and worst IoU of voxgan's samples against the exact reference, and the worst mesh's name,
    over meshes of at most ``max_faces`` faces (read with voxgan's reader, mapped by the stored affine)."""
    from reference_voxelize import iou, reference_voxelize

    from voxgan import shards
    from voxgan.ingest.formats import load_mesh
    from voxgan.ingest.frame import apply_transform

    manifest = shards.read_manifest(shards_dir)
    scores = []
    for info in manifest["splits"].values():
        for entry in info["shards"]:
            shard = shards.read_shard(shards_dir / entry["file"])
            for source, grid, matrix in zip(shard.sources, shard.occupancy, shard.mesh_to_grid, strict=True):
                vertices, faces = load_mesh(meshes / source, meshes)
                if len(faces) <= max_faces:
                    mapped = apply_transform(vertices, matrix)
                    score = iou(grid, reference_voxelize(mapped, faces, manifest["resolution"]))
                    scores.append((score, source))
    if not scores:
        return float("nan"), float("nan"), "", 0
    worst = min(scores)
    return float(np.mean([score for score, _ in scores])), worst[0], worst[1], len(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--iou-faces", type=int, default=5000, help="IoU on meshes up to this many faces")
    parser.add_argument("--no-fill", action="store_true", help="skip trimesh's fill (slow at 64³+)")
    parser.add_argument("--compiled-reference", action="store_true", help="the exact sum, compiled")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each command, interleaved; medians")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another voxgan checkout (git worktree add DIR COMMIT) timed the same way, side by side",
    )
    args = parser.parse_args()
    args.data = args.data.resolve()  # the baseline runs in its own folder
    meshes = fetch(args.data)
    files = sorted(meshes.iterdir())
    faces = sorted(trimesh_faces(p) for p in files)
    r = args.resolution
    median = faces[len(faces) // 2]
    print(f"{len(files)} real meshes from {', '.join(PACKAGES)}; faces median {median:,}, max {faces[-1]:,}")
    out = args.data / f"shards-{r}"
    voxgan = [sys.executable, "-m", "voxgan", "voxelize", str(meshes), str(out), "--resolution", str(r)]
    voxgan += ["--workers", "1", "--layout", "flat", "--overwrite", "--quiet"]
    trimesh_run = [sys.executable, "-c", TRIMESH_SCRIPT]
    commands = {
        "voxgan voxelize": voxgan,
        "trimesh load + voxelized().fill()": [*trimesh_run, "fill", str(r), str(meshes)],
        "trimesh load alone": [*trimesh_run, "load", str(r), str(meshes)],
    }
    if args.no_fill:
        del commands["trimesh load + voxelized().fill()"]
    folders = {name: ROOT for name in commands}
    if args.baseline:
        name = f"voxgan voxelize, {args.baseline.name} (baseline)"
        baseline_out = str(args.data / f"shards-{r}-baseline")
        commands[name], folders[name] = [*voxgan[:5], baseline_out, *voxgan[6:]], args.baseline.resolve()
        warm_up(meshes, args.data / "warm-up-baseline", folders[name])
    warm_up(meshes, args.data / "warm-up", ROOT)
    seconds = {name: [] for name in commands}
    peak = 0.0
    for _ in range(args.rounds):  # the commands in turn, round after round: the machine's moods fall on all
        for name, command in commands.items():
            seconds[name].append(timed(command, folders[name]))
            if name == "voxgan voxelize" and not peak:  # the children waited for so far: voxgan's only
                peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ours = statistics.median(seconds["voxgan voxelize"])
    print(f"\n| {r}³, one process each, median of {args.rounds} | seconds | all runs | voxgan is N× faster |")
    print("|---|---:|---|---:|")
    for name, values in seconds.items():
        value = statistics.median(values)
        runs = " ".join(f"{v:.1f}" for v in values)
        ratio = "" if name == "voxgan voxelize" else f"{value / ours:.2f}×"
        print(f"| {name} | {value:.1f} | {runs} | {ratio} |")
    manifest = json.loads((out / "manifest.json").read_text())
    samples = sum(split["count"] for split in manifest["splits"].values())
    print(
        f"\nvoxgan: {samples} samples, {len(manifest['errors'])} errors, peak RSS of a process {peak:.0f} MiB"
    )
    if args.iou_faces > 0:
        if args.compiled_reference:
            import reference_voxelize

            reference_voxelize.reference_winding = compiled_reference_winding
        mean, worst, name, count = mean_iou(out, meshes, args.iou_faces)
        print(f"IoU against the exact reference ({count} meshes of <= {args.iou_faces:,} faces): ", end="")
        print(f"mean {mean:.4f}, worst {worst:.4f} ({name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
