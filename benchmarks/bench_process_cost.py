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
from dataclasses import dataclass
from pathlib import Path

from bench_first_run import install_fresh, timed
from run import cpu_model

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


@dataclass
class Install:
    """One checkout in its fresh venv, with its inputs in ``root``."""

    source: Path
    root: Path
    python: str
    voxgan: str
    env: dict


def install(source: Path, root: Path, per_class: int) -> Install:
    """``source`` built into a fresh venv in ``root``, with the built-in meshes and the volumes beside it."""
    venv = install_fresh(source, root)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "VOXGAN_NO_NUMBA")
    }
    env |= {"XDG_CACHE_HOME": str(root / "user-cache")}
    voxgan = str(venv / "bin" / "voxgan")
    shapes = [voxgan, "shapes", "meshes", "--train-per-class", str(per_class), "--test-per-class", "2"]
    subprocess.run(shapes, cwd=root, env=env, check=True, capture_output=True)
    write_volumes(root / "volumes", 10 * (per_class + 2))
    return Install(source, root, str(venv / "bin" / "python"), voxgan, env)


def start_up(one: Install, code: str) -> float:
    """The wall seconds of one fresh ``python -c code`` process."""
    started = time.perf_counter()
    subprocess.run([one.python, "-c", code], env=one.env, check=True, capture_output=True)
    return time.perf_counter() - started


def job_array(one: Install, kind: str, options: list, parts: int) -> list[tuple[float, float]]:
    """Parts one after another, then the completion run: [(wall, CPU) of the parts, (wall, CPU) of it]."""
    command = [one.voxgan, "voxelize", kind, f"out-{kind}", *options, *PER_PROCESS]
    part_wall = part_cpu = 0.0
    for part in range(parts):
        wall, cpu, _ = timed(command + ["--part", f"{part}/{parts}"], one.root, one.env)
        part_wall, part_cpu = part_wall + wall, part_cpu + cpu
    wall, cpu, _ = timed(command, one.root, one.env)
    return [(part_wall, part_cpu), (wall, cpu)]


def first_array(one: Install, parts: int) -> tuple[int, int, float, float]:
    """The parts over the meshes started at once with numba's cache empty: (how many compiled, how many
    waited for another, wall, CPU seconds)."""
    command = [one.voxgan, "voxelize", "meshes", "first", "--resolution", "16", *PER_PROCESS]
    before = os.times()
    started = time.perf_counter()
    running = [
        subprocess.Popen(command + ["--part", f"{part}/{parts}"], cwd=one.root, env=one.env,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        for part in range(parts)
    ]  # fmt: skip
    said = [process.communicate()[1] for process in running]
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    compiled = sum("voxgan: compiling" in text for text in said)
    return compiled, sum("waiting" in text for text in said), wall, cpu


def measure(installs: list[Install], args) -> None:
    """Every measurement for each install in turn, so that the machine's load falls on all alike."""
    heads = "".join(f"{f'[{n}] wall s':>14}{f'[{n}] CPU s':>12}" for n in range(len(installs)))
    print(f"\nfirst job array: {args.parts} parts at once over the meshes at 16³, numba's cache empty")
    for n, one in enumerate(installs):
        compiled, waited, wall, cpu = first_array(one, args.parts)
        print(f"[{n}] {compiled} of {args.parts} parts compiled, {waited} waited; "
              f"{wall:.2f} s wall, {cpu:.2f} CPU s")  # fmt: skip
    print(
        f"\n{'start-up, median of ' + str(args.repeat):<36}"
        + "".join(f"{f'[{n}] wall s':>14}" for n in range(len(installs)))
    )
    for name, code in PIECES.items():
        walls = [[] for _ in installs]
        for _ in range(args.repeat):
            for n, one in enumerate(installs):
                walls[n].append(start_up(one, code))
        print(f"{name:<36}" + "".join(f"{statistics.median(w):>14.2f}" for w in walls))
    print(f"\n{'job array, one part after another':<36}{heads}")
    for kind, options in (("meshes", ["--resolution", "16"]), ("volumes", ["--resolution", "32"])):
        rows = [job_array(one, kind, options, args.parts) for one in installs]
        for line, name in enumerate((f"{kind}, {args.parts} parts", f"{kind}, completion run")):
            print(f"{name:<36}" + "".join(f"{row[line][0]:>14.2f}{row[line][1]:>12.2f}" for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, action="append", help="checkout to build, repeatable [this one]"
    )
    parser.add_argument("--parts", type=int, default=4, help="parts of the job array [4]")
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per start-up piece [5]")
    parser.add_argument("--per-class", type=int, default=10, help="training meshes per class [10]")
    args = parser.parse_args()
    cpu_name = cpu_model()
    sources = [source.resolve() for source in args.source or [HERE.parent]]
    with tempfile.TemporaryDirectory(prefix="bench-process-cost-") as folder:
        installs = [
            install(source, Path(folder) / str(n), args.per_class) for n, source in enumerate(sources)
        ]
        print(f"{cpu_name}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"{10 * (args.per_class + 2)} built-in meshes (16³) "
              f"and as many 30³ volumes as .npy (32³)")  # fmt: skip
        for n, one in enumerate(installs):
            version = subprocess.run([one.voxgan, "--version"], capture_output=True, text=True, env=one.env)
            print(f"[{n}] {version.stdout.strip()} from {one.source}, a fresh venv")
        measure(installs, args)


if __name__ == "__main__":
    main()
