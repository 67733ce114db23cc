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

Before them, what each piece of bookkeeping costs on its own at the default recipe, in this process
(median of 5): writing a checkpoint (serialised in memory, then written), a sample grid with the loss plot,
a log line; and from those, the share of training time each schedule spends on them at this machine's
speed (measured by one untimed-bookkeeping step loop).

    .venv/bin/python benchmarks/bench_bookkeeping.py [--data synthetic:shapes|SHARDS] [--minutes 2]
        [--rounds 2] [--threads 2] [--costs-only]
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


def action_costs(data: str, threads: int) -> dict:
    """Seconds per checkpoint, picture (+ loss plot), log line, and per training step, at the default."""
    import time

    import torch

    from voxgan.model.bookkeeping import fixed_latents, save_samples
    from voxgan.model.config import TrainConfig, build_networks
    from voxgan.model.runs import append_stats, checkpoint_bytes, plot_losses, save_checkpoint
    from voxgan.model.train import train

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = train(TrainConfig(data=data, out=scratch, steps=3, samples_every="1000h"))
        state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
        config = TrainConfig.from_dict(state["config"])
        generator, _ = build_networks(config)
        generator.load_state_dict(state["ema"])
        z, labels = fixed_latents(config, torch.device("cpu"))
        history = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()] * 40

        def timed(action) -> float:
            times = []
            for _ in range(5):
                start = time.perf_counter()
                action()
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        record = history[-1]
        costs = {
            "checkpoint": timed(lambda: save_checkpoint(checkpoint_bytes(state), run_dir, 10**6, keep=3)),
            "picture": timed(
                lambda: (
                    save_samples(generator, z, labels, config, run_dir, 10**6),
                    plot_losses(history, run_dir / "loss.png"),
                )
            ),  # fmt: skip
            "log line": timed(lambda: append_stats(run_dir / "stats.jsonl", record, None)),
        }
        start = time.perf_counter()
        train(TrainConfig(data=data, out=scratch, steps=8, log_every="1000h", samples_every="1000h",
                                  checkpoint_every="1000h"))  # fmt: skip
        costs["step"] = (time.perf_counter() - start) / 8  # an upper bound: start-up included
        return costs


def share_of_training(costs: dict, steps_per_epoch: int) -> dict:
    """The share of an hour of training each schedule spends on bookkeeping, from the measured costs."""
    steps_an_hour = 3600 / costs["step"]
    default = 6 * costs["checkpoint"] + 60 * costs["picture"] + 360 * costs["log line"]
    old = (steps_an_hour / 100 * costs["checkpoint"] + steps_an_hour / steps_per_epoch * costs["picture"]
           + steps_an_hour / 10 * costs["log line"])  # fmt: skip
    return {"default": default / 3600, "0.1 habits": old / (3600 + old)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic:shapes")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--costs-only", action="store_true")
    args = parser.parse_args()
    from voxgan.data import make_loader

    steps_per_epoch = max(1, make_loader(args.data, batch_size=32, drop_last=True).num_batches)
    costs = action_costs(args.data, args.threads)
    print("seconds each: " + ", ".join(f"{k} {v:.3f}" for k, v in costs.items()), flush=True)
    shares = share_of_training(costs, steps_per_epoch)
    print("share of an hour of training spent on bookkeeping: "
          + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()), flush=True)  # fmt: skip
    if args.costs_only:
        return
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
