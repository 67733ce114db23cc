"""What each voxgan process pays before its first file, and what a job array of one process per task pays.

For each checkout given (``--source``, repeatable: an older one and this one side by side in one run),
builds a wheel into a fresh virtual environment (as ``bench_first_run.py`` does, no download), then times:

* start-up pieces, each the median of ``--repeat`` fresh processes with numba's cache warm: Python alone,
  ``import voxgan.cli``, ``import numba``, and ``compiled_kernels()`` (numba's import, its set-up and the
  loading of every cached loop);
* a job array on this machine, one part after another: ``voxgan voxelize --part K/N`` for K = 0 .. N-1
  (``--parts``), then the completion run, over the built-in meshes (16³) and over 30³ volumes saved as
  ``.npy`` files (32³); each line is the sum of the parts' wall and CPU seconds and the completion run's;
* the first job array after an install (numba's cache empty), its parts started at once: how many of them
  compiled the kernels, and their wall (the slowest part) and CPU seconds.

    python benchmarks/bench_process_cost.py --source /path/to/older/checkout --source .
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_first_run import install_fresh, timed

HERE = Path(__file__).resolve().parent
PER_PROCESS = ["--workers", "1", "--shard-size", "16", "--quiet"]  # units of 16 files: a few for every part
PIECES = {
    "python -c pass": "pass",
    "import voxgan.cli": "import voxgan.cli",
    "import numba": "import numba",
    "compiled_kernels()": "from voxgan.ingest.kernels import compiled_kernels; compiled_kernels()",
}


def write_volumes(folder: Path, count: int) -> Path:
    """``count`` random 30³ chairs-to-be (a clump on four one-voxel legs) as .npy files in ``folder``."""
    import numpy as np

    rng = np.random.default_rng(0)
    for index in range(count):
        volume = np.zeros((30, 30, 30), bool)
        volume[6:22, 6:22, 14:20] = rng.random((16, 16, 6)) < 0.6
        for x in (6, 21):
            for y in (6, 21):
                volume[x, y, 2:14] = True
        (folder / "chair").mkdir(parents=True, exist_ok=True)
        np.save(folder / "chair" / f"chair_{index:04d}.npy", volume)
    return folder


def median_start(python: str, code: str, env: dict, repeat: int) -> float:
    """The median wall seconds of ``repeat`` fresh ``python -c code`` processes."""
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([python, "-c", code], env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def job_array(voxgan: str, inputs: Path, out: Path, options: list, parts: int, root: Path, env: dict):
    """Parts one after another, then the completion run: (wall, CPU) of the parts, (wall, CPU) of it."""
    command = [voxgan, "voxelize", str(inputs), str(out), *options, *PER_PROCESS]
    part_wall = part_cpu = 0.0
    for part in range(parts):
        wall, cpu, _ = timed(command + ["--part", f"{part}/{parts}"], root, env)
        part_wall, part_cpu = part_wall + wall, part_cpu + cpu
    wall, cpu, _ = timed(command, root, env)
    return (part_wall, part_cpu), (wall, cpu)


def first_array(voxgan: str, inputs: Path, out: Path, parts: int, root: Path, env: dict):
    """The parts started at once with numba's cache empty: (how many compiled, wall, CPU seconds)."""
    command = [voxgan, "voxelize", str(inputs), str(out), "--resolution", "16", *PER_PROCESS]
    before = os.times()
    started = time.perf_counter()
    running = [
        subprocess.Popen(command + ["--part", f"{part}/{parts}"], cwd=root, env=env, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True)
        for part in range(parts)
    ]  # fmt: skip
    said = [process.communicate()[1] for process in running]
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return sum("compiling" in text for text in said), wall, cpu


def measure(source: Path, args, cpu_name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-process-cost-") as folder:
        root = Path(folder)
        venv = install_fresh(source, root)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "VOXGAN_NO_NUMBA")
        }
        env |= {"XDG_CACHE_HOME": str(root / "user-cache")}
        python, voxgan = str(venv / "bin" / "python"), str(venv / "bin" / "voxgan")
        version = subprocess.run(
            [voxgan, "--version"], capture_output=True, text=True, env=env
        ).stdout.strip()
        print(f"\n{version} from {source}, a fresh venv; {cpu_name}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")  # fmt: skip
        shapes = [
            voxgan,
            "shapes",
            "meshes",
            "--train-per-class",
            str(args.per_class),
            "--test-per-class",
            "2",
        ]
        subprocess.run(shapes, cwd=root, env=env, check=True, capture_output=True)
        write_volumes(root / "volumes", 10 * (args.per_class + 2))
        compiled, wall, cpu = first_array(voxgan, root / "meshes", root / "first", args.parts, root, env)
        print(f"first job array, {args.parts} parts at once over {10 * (args.per_class + 2)} meshes at 16³, "
              f"numba's cache empty: {compiled} of {args.parts} parts compiled; "
              f"{wall:.2f} s wall, {cpu:.2f} CPU s")  # fmt: skip
        print(f"{'start-up, median of ' + str(args.repeat):<34}{'wall s':>8}")
        for name, code in PIECES.items():
            print(f"{name:<34}{median_start(python, code, env, args.repeat):>8.2f}")
        print(f"{'job array, one part after another':<34}{'wall s':>8}{'CPU s':>8}")
        for kind, inputs, options in (
            ("meshes 16³", root / "meshes", ["--resolution", "16"]),
            ("volumes 30³ -> 32³", root / "volumes", ["--resolution", "32"]),
        ):
            (wall, cpu), (last_wall, last_cpu) = job_array(
                voxgan, inputs, root / f"out-{kind.split()[0]}", options, args.parts, root, env
            )
            print(f"{kind + f', {args.parts} parts':<34}{wall:>8.2f}{cpu:>8.2f}")
            print(f"{kind + ', completion run':<34}{last_wall:>8.2f}{last_cpu:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, action="append", help="checkout to build, repeatable [this one]"
    )
    parser.add_argument("--parts", type=int, default=4, help="parts of the job array [4]")
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per start-up piece [5]")
    parser.add_argument("--per-class", type=int, default=10, help="training meshes per class [10]")
    args = parser.parse_args()
    cpu_name = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    for source in args.source or [HERE.parent]:
        measure(source.resolve(), args, cpu_name)


if __name__ == "__main__":
    main()
