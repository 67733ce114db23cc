"""The first `voxgan voxelize` after a fresh install (numba's cache empty) against the runs after it.

Builds a wheel of a checkout (this one by default, or --source another, such as an older voxgan), installs
it into a fresh virtual environment that reuses this environment's packages (no download), writes the
built-in shapes and voxelizes them --repeat + 1 times, timing each run (wall and CPU seconds of every
process, workers included) and keeping the compile line voxgan prints on stderr.

    python benchmarks/bench_first_run.py
    python benchmarks/bench_first_run.py --source /path/to/older/checkout --workers 1
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from run import cpu_model

HERE = Path(__file__).resolve().parent


def checkout_copy(source: Path, into: Path) -> Path:
    """The files a clone of ``source`` has (tracked and untracked, not ignored), copied into ``into``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=source, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (source / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, into / name)
    return into


def install_fresh(source: Path, root: Path) -> Path:
    """A fresh venv in ``root`` holding a wheel of ``source``, this environment's packages behind it."""
    copy = checkout_copy(source, root / "source")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
         str(root / "dist"), str(copy)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("voxgan-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "bench-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    return venv


def timed(command: list, cwd: Path, env: dict) -> tuple[float, float, str]:
    """Run ``command``; its wall seconds, CPU seconds (children, user + system) and stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=HERE.parent, help="checkout to build [this one]")
    parser.add_argument("--repeat", type=int, default=3, help="later runs after the first [3]")
    parser.add_argument("--workers", type=int, default=2, help="voxelize --workers [2]")
    args = parser.parse_args()
    cpu = cpu_model()
    with tempfile.TemporaryDirectory(prefix="bench-first-run-") as folder:
        root = Path(folder)
        venv = install_fresh(args.source.resolve(), root)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR")}
        env |= {"XDG_CACHE_HOME": str(root / "user-cache")}
        voxgan = str(venv / "bin" / "voxgan")
        version = subprocess.run([voxgan, "--version"], capture_output=True, text=True, env=env).stdout
        print(f"{version.strip()} from {args.source.resolve()}, a fresh venv; {cpu}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")  # fmt: skip
        subprocess.run([voxgan, "shapes", "meshes"], cwd=root, env=env, check=True, capture_output=True)
        print(f"voxgan voxelize meshes OUT --resolution 16 --workers {args.workers} (1200 built-in shapes)")
        print(f"{'run':<12}{'wall s':>8}{'CPU s':>8}  compile line on stderr")
        for run in range(args.repeat + 1):
            command = [voxgan, "voxelize", "meshes", f"out-{run}", "--resolution", "16",
                       "--workers", str(args.workers)]  # fmt: skip
            wall, cpu_s, stderr = timed(command, root, env)
            lines = stderr.replace("\r", "\n").splitlines()
            said = next((line.strip() for line in lines if "compil" in line), "").replace(str(root), "$TMP")
            print(f"{'first' if run == 0 else f'later {run}':<12}{wall:>8.2f}{cpu_s:>8.2f}  {said or '-'}")


if __name__ == "__main__":
    main()
