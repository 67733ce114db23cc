"""The cost of spreading ``voxgan voxelize`` over processes: ``--part K/N`` and ``--engine ray`` against a
plain run on the same inputs, and a paper estimate for 800k Objaverse-sized meshes on N machines.

Run: ``.venv/bin/python benchmarks/bench_cluster.py`` (about 3 minutes on 2 cores; needs the ray extra).

Part 1, overhead. ``voxgan shapes`` writes 10 classes x (``--train`` + ``--test``) meshes (OBJ, OFF, STL,
PLY); every row voxelizes them at 16³ with ``--shard-size`` files per unit into a fresh folder, timed
wall-clock from the first process's start to the last one's end:

- ``plain``: ``voxgan voxelize --workers 2`` (the reference);
- ``3 parts + completion``: ``--part k/3 --workers 1`` for k = 0, 1, 2 started at once, then the same
  command without ``--part`` (which checks every unit's shard and writes the manifest);
- ``ray (local instance)``: ``--engine ray --workers 2``, starting and stopping a local Ray instance
  included; ``ray.init + shutdown`` alone is timed apart.

Every folder is then checked to hold the same shards, records and plan as the plain one.

Part 2, rate. bench_pipeline's generator writes ``--big`` closed meshes of 1k-50k triangles
(log-uniform, OFF/OBJ/STL/PLY), and the same again as open meshes (2% of the faces removed, PLY); each set
is voxelized at ``--resolution`` with ``--workers 1`` in this process, twice (the second run timed).
The CPU seconds per mesh give a paper estimate of the wall time and cost of 800k such meshes on N machines of
``--cores`` cores, at ``--price`` dollars per machine-hour.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
OBJAVERSE = 800_000


def voxgan(*args) -> list[str]:
    return [sys.executable, "-m", "voxgan", *map(str, args)]


def timed(*commands: list[str]) -> float:
    """Run ``commands`` at once, wait for all; wall seconds. A failing command stops the benchmark."""
    started = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    for command, process in zip(commands, processes, strict=True):
        _, err = process.communicate()
        if process.returncode != 0:
            sys.exit(f"failed: {' '.join(command)}\n{err.decode()[-2000:]}")
    return time.perf_counter() - started


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file of a shard folder but the manifest, by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def ray_start_seconds(cpus: int) -> float:
    """Wall seconds of ``ray.init`` (local, no dashboard) and ``ray.shutdown`` in a fresh process."""
    code = (
        f"import logging, ray; ray.init(address='local', num_cpus={cpus}, include_dashboard=False, "
        "logging_level=logging.WARNING); ray.shutdown()"
    )
    return timed([sys.executable, "-c", code])


def overhead(tmp: Path, args) -> tuple[int, list[tuple[str, float]]]:
    """Part 1: (mesh count, [(row, wall seconds)])."""
    meshes = tmp / "shapes"
    timed(voxgan("shapes", meshes, "--train-per-class", args.train, "--test-per-class", args.test))
    count = 10 * (args.train + args.test)
    common = ["--shard-size", args.shard_size, "--quiet"]
    rows = [("plain --workers 2", timed(voxgan("voxelize", meshes, tmp / "plain", *common, "--workers", 2)))]
    parts = [
        voxgan("voxelize", meshes, tmp / "parts", *common, "--workers", 1, "--part", f"{k}/3")
        for k in range(3)
    ]
    started = time.perf_counter()
    rows.append(("  3 parts at once", timed(*parts)))
    rows.append(
        ("  completion run", timed(voxgan("voxelize", meshes, tmp / "parts", *common, "--workers", 2)))
    )
    rows.append(("3 parts + completion", time.perf_counter() - started))
    ray = voxgan("voxelize", meshes, tmp / "ray", *common, "--workers", 2, "--engine", "ray")
    rows.append(("ray --workers 2 (local instance)", timed(ray)))
    rows.append(("  of which ray.init + shutdown", ray_start_seconds(2)))
    reference = outputs(tmp / "plain")
    for name in ("parts", "ray"):
        assert outputs(tmp / name) == reference, f"{name} differs from the plain run"
    return count, rows


def write_open(paths: list[Path], root: Path, out: Path, holes: float = 0.02) -> None:
    """The meshes ``paths`` under ``root`` again under ``out`` as binary PLY, with ``holes`` of their faces
    removed: open meshes, which take the slower winding-number inside test (most scanned and game assets
    are open)."""
    import numpy as np
    import trimesh

    from voxgan.ingest.formats import load_mesh

    rng = np.random.default_rng(2)
    for path in paths:
        vertices, faces = load_mesh(path, root)
        target = (out / path.relative_to(root)).with_suffix(".ply")
        target.parent.mkdir(parents=True, exist_ok=True)
        trimesh.Trimesh(vertices, faces[rng.random(len(faces)) > holes], process=False).export(target)


def per_mesh_cpu(tmp: Path, args) -> tuple[dict[str, float], float, int]:
    """Part 2: ({"closed", "open"}: CPU seconds per mesh; mean triangles; bytes per sample on disk)."""
    sys.path.insert(0, str(HERE))
    from bench_pipeline import write_dataset

    paths, triangles = write_dataset(tmp / "closed", args.big, seed=1)
    write_open(paths, tmp / "closed", tmp / "open")
    from voxgan.ingest.pipeline import make_config, run_voxelize

    rates = {}
    for kind in ("closed", "open"):  # in this process, after a warm-up: no start-up or compilation counted
        warm = make_config(tmp / kind, tmp / f"{kind}-warm", resolution=args.resolution, workers=1)
        run_voxelize(warm, progress=False)
        cpu = time.process_time()
        config = make_config(tmp / kind, tmp / f"{kind}-shards", resolution=args.resolution, workers=1)
        run_voxelize(config, progress=False)
        rates[kind] = (time.process_time() - cpu) / len(paths)
    out = tmp / "open-shards"
    manifest = json.loads((out / "manifest.json").read_text())
    samples = sum(info["count"] for info in manifest["splits"].values())
    on_disk = sum((out / e["file"]).stat().st_size for i in manifest["splits"].values() for e in i["shards"])
    return rates, triangles / len(paths), on_disk // max(samples, 1)


def sha256_rate() -> float:
    """Bytes per second that hashlib's sha256 digests here."""
    import hashlib

    block = bytes(64 * 2**20)
    started = time.perf_counter()
    hashlib.sha256(block).hexdigest()
    return len(block) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=30, help="shapes training meshes per class [30]")
    parser.add_argument("--test", type=int, default=6, help="shapes test meshes per class [6]")
    parser.add_argument("--shard-size", type=int, default=24, help="files per unit [24]")
    parser.add_argument("--big", type=int, default=40, help="meshes of 1k-50k triangles for the rate [40]")
    parser.add_argument("--resolution", type=int, default=64, help="grid size for the rate [64]")
    parser.add_argument("--cores", type=int, default=32, help="cores per machine in the estimate [32]")
    parser.add_argument("--price", type=float, default=1.45, help="dollars per machine-hour [1.45]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="voxgan-bench-cluster-") as name:
        tmp = Path(name)
        count, rows = overhead(tmp, args)
        rates, triangles, sample_bytes = per_mesh_cpu(tmp, args)
    plain = rows[0][1]
    print(
        f"{count} shapes meshes at 16³, --shard-size {args.shard_size}; "
        "the same shards, records and plan in every row"
    )
    print(f"{'what':36} {'wall s':>7} {'x plain':>8}")
    for what, seconds in rows:
        print(f"{what:36} {seconds:7.2f} {seconds / plain:8.2f}")
    print(
        f"\n{args.big} meshes of {triangles:,.0f} triangles on average at {args.resolution}³, --workers 1, "
        f"CPU s per mesh: {rates['closed']:.3f} closed, {rates['open']:.3f} open (2% of faces removed); "
        f"{sample_bytes:,} bytes per sample on disk"
    )
    hours = {kind: OBJAVERSE * rate / 3600 for kind, rate in rates.items()}
    print(
        f"paper estimate, {OBJAVERSE:,} such meshes: {hours['closed']:,.0f} CPU hours if closed, "
        f"{hours['open']:,.0f} if open; machines of {args.cores} cores at ${args.price:.2f} an hour, "
        "units spread evenly, one core per mesh"
    )
    print(f"{'machines':>8} {'wall h closed':>13} {'wall h open':>11} {'$ closed':>9} {'$ open':>8}")
    for machines in (1, 8, 32, 128):
        wall = {kind: total / (machines * args.cores) for kind, total in hours.items()}
        cost = {kind: total / args.cores * args.price for kind, total in hours.items()}
        hours_row = f"{wall['closed']:13.2f} {wall['open']:11.2f}"
        print(f"{machines:8d} {hours_row} {cost['closed']:9.1f} {cost['open']:8.1f}")
    shard_gib = OBJAVERSE * sample_bytes / 2**30
    print(
        f"completion run after the parts: {rows[2][1]:.1f} s here, mostly start-up; for {OBJAVERSE:,} meshes "
        f"it hashes {shard_gib:.1f} GiB of shards ({shard_gib * 2**30 / sha256_rate() / 60:.1f} min at this "
        "machine's sha256 rate) and lists and stats every input file once (file-system dependent)"
    )


if __name__ == "__main__":
    main()
