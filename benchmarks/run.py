"""Run every benchmark behind BENCHMARKS.md, one after the other, on this machine.

python benchmarks/run.py            # all of them (about 20 minutes on 2 cores)
python benchmarks/run.py data train # only those
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = {
    "load": ["--repeat", "7"],
    "voxelize": ["--quick"],
    "pipeline": [],
    "cluster": [],
    "data": [],
    "train": ["--threads", "2"],
    "bookkeeping": [],
    "metrics": [],
    "first_run": [],
    "process_cost": [],
    "resample": [],
}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(names: list[str]) -> int:
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names or BENCHMARKS:
        print(f"\n=== benchmarks/bench_{name}.py {' '.join(BENCHMARKS[name])}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / f"bench_{name}.py"), *BENCHMARKS[name]])
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
