"""Where the meshes' time goes in one process: all of it, the open meshes' winding sums, the surface test.

Runs ``voxgan.ingest.sample.occupancy_of`` over every mesh of ``bench_real.py``'s set in this process (after
one warm-up mesh, so numba's start-up is not counted) and reports the seconds of all meshes, of the clustered
winding sums (every call of the function ``open_winding_function`` returns) and of the surface test
(``overlap_masks``, meshes and caps), with the number of centres summed. With ``--baseline DIR`` it runs
itself again with another checkout first on the path, in a child process, and prints both side by side.

    .venv/bin/python benchmarks/bench_stages.py --resolution 128
    git worktree add /tmp/before COMMIT && .venv/bin/python benchmarks/bench_stages.py --baseline /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(meshes: Path, resolution: int) -> dict:
    """Seconds of all meshes, of the winding sums and of the surface test, and the centres summed."""
    from voxgan.ingest import voxelize
    from voxgan.ingest.sample import Settings, occupancy_of

    spent = {"winding": 0.0, "surface": 0.0, "centres": 0}
    open_winding, overlap = voxelize.open_winding_function, voxelize.overlap_masks

    def timed_winding(triangles, cell):
        winding = open_winding(triangles, cell)

        def timed(points, *spacing):
            start = time.perf_counter()
            values = winding(points, *spacing)
            spent["winding"] += time.perf_counter() - start
            spent["centres"] += len(points)
            return values

        return timed

    def timed_overlap(triangles, resolution):
        start = time.perf_counter()
        masks = overlap(triangles, resolution)
        spent["surface"] += time.perf_counter() - start
        return masks

    voxelize.open_winding_function, voxelize.overlap_masks = timed_winding, timed_overlap
    settings = Settings(
        root=str(meshes),
        resolution=resolution,
        mode="solid",
        padding=0.5,
        up_axis="z",
        max_faces=10**7,
        grid_coords=False,
    )
    names = sorted(os.listdir(meshes))
    occupancy_of(settings, names[0])  # numba's start-up and first calls
    spent.update(winding=0.0, surface=0.0, centres=0)
    start = time.perf_counter()
    for name in names:
        occupancy_of(settings, name)
    return {"meshes": len(names), "all": time.perf_counter() - start, **spent}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real", help="bench_real.py's folder")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--baseline", type=Path, help="another checkout, measured in a child process first")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    meshes = args.data / "set"
    if not meshes.is_dir():
        print(f"no meshes in {meshes}: run benchmarks/bench_real.py once to fetch them", file=sys.stderr)
        return 1
    rows = []
    if args.baseline:
        command = [sys.executable, __file__, "--data", str(args.data), "--resolution", str(args.resolution)]
        env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
        done = subprocess.run([*command, "--json"], env=env, check=True, capture_output=True, text=True)
        rows.append((f"before ({args.baseline})", json.loads(done.stdout.splitlines()[-1])))
    now = measure(meshes, args.resolution)
    if args.json:
        print(json.dumps(now))
        return 0
    rows.append(("now", now))
    header = f"{args.resolution}³, one process, {now['meshes']} meshes"
    print(f"| {header} | all meshes | winding sums | centres summed | surface test |")
    print("|---|---:|---:|---:|---:|")
    for label, row in rows:
        seconds = f"{row['all']:.2f} s | {row['winding']:.2f} s | {row['centres']:,} | {row['surface']:.2f} s"
        print(f"| {label} | {seconds} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
