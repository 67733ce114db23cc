"""What a run's bookkeeping (checkpoints, sample grids, loss plot, log lines) costs in training speed and
disk, at today's default intervals against none and against voxgan 0.1's habits.

Three contenders train the default recipe on the same data, each in a fresh process for the same minutes
of training, in interleaved rounds (so a shared machine's load hits all alike):

- ``default``: the default intervals (a log line every 10 s, a picture and the loss plot every minute, a
  checkpoint every 10 minutes, the last 3 snapshots kept);
- ``none``: nothing written until the end (every interval 1000 h);
- ``0.1 habits``: a log line every 10 steps, a picture and the loss plot every epoch, a checkpoint every
  100 steps, every snapshot kept (what voxgan 0.1 did).

Columns: steps/s (median over rounds), the run folder's size and its number of pictures and snapshots.

    .venv/bin/python benchmarks/bench_bookkeeping.py [--data synthetic:shapes|SHARDS] [--minutes 2]
        [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONTENDERS = {
    "default": [],
    "none": ["--log-every", "1000h", "--samples-every", "1000h", "--checkpoint-every", "1000h"],
    "0.1 habits": [
        "--log-every",
        "10",
        "--samples-every",
        "EPOCH",
        "--checkpoint-every",
        "100",
        "--keep",
        "0",
    ],
}


def folder_size(folder: Path) -> int:
    """Bytes in ``folder``, hard links counted once."""
    seen, total = set(), 0
    for path in folder.rglob("*"):
        stat = path.stat()
        if path.is_file() and stat.st_ino not in seen:
            seen.add(stat.st_ino)
            total += stat.st_size
    return total


def run(name: str, data: str, minutes: float, threads: int, out: Path, steps_per_epoch: int) -> dict:
    args = [a if a != "EPOCH" else str(steps_per_epoch) for a in CONTENDERS[name]]
    command = [sys.executable, "-m", "voxgan", "train", "--data", data, "--time-limit", str(minutes)]
    command += ["--out", str(out), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    from voxgan.model.runs import load_checkpoint

    state = load_checkpoint(run_dir)
    return {
        "steps_per_s": state["step"] / state["train_seconds"],
        "bytes": folder_size(run_dir),
        "pictures": len(list((run_dir / "samples").iterdir())),
        "snapshots": len(list((run_dir / "checkpoints").glob("step-*.pt"))),
        "log_lines": len(stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic:shapes")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from voxgan.data import make_loader

    steps_per_epoch = max(1, make_loader(args.data, batch_size=32, drop_last=True).num_batches)
    results: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for name in CONTENDERS:
                out = Path(scratch) / f"{round_index}-{name.replace(' ', '_')}"
                results[name].append(run(name, args.data, args.minutes, args.threads, out, steps_per_epoch))
                print(f"round {round_index} {name}: {results[name][-1]}", flush=True)
    print(f"\n{args.minutes:g} min of training each, {args.rounds} rounds, {steps_per_epoch} steps an epoch")
    print(f"{'contender':12s} {'steps/s':>8s} {'vs none':>8s} {'MB':>7s} {'pictures':>9s} {'snapshots':>10s}")
    base = statistics.median(r["steps_per_s"] for r in results["none"])
    for name, rows in results.items():
        speed = statistics.median(r["steps_per_s"] for r in rows)
        size = statistics.median(r["bytes"] for r in rows) / 2**20
        print(f"{name:12s} {speed:8.2f} {speed / base:8.1%} {size:7.1f} {rows[-1]['pictures']:9d} "
              f"{rows[-1]['snapshots']:10d}")  # fmt: skip


if __name__ == "__main__":
    main()
