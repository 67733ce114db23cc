"""Sample quality at equal wall-clock time: voxgan's default recipe against the same recipe without
self-attention and against the original design, on the same shards, one after the other.

Each contender trains for ``--minutes`` of training time (``voxgan train --time-limit``); at four evenly
spaced times its run is evaluated with voxgan's own metrics (``voxgan evaluate``: 1-NNA, COV and MMD under
IoU and Chamfer distances, voxel FID) on the test split. Evaluation does not count against the budget:
the run is stopped at each mark with a checkpoint, evaluated, and resumed exactly. The train split is
evaluated once as the ceiling (what a perfect generator would score).

Writes to ``--out``: ``quality.md`` (the table), ``quality.json`` (every record), ``quality.png`` (1-NNA
against minutes, one line per contender) and ``samples-<contender>.png`` (16 samples of each, at the end).

    .venv/bin/python benchmarks/bench_quality.py --minutes 20 --data shards [--resolution 16] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from voxgan.model.config import ORIGINAL_DESIGN, TrainConfig
from voxgan.model.runs import latent_batch, load_generator, run_generator
from voxgan.model.train import resolve_device, train
from voxgan.render import render_volumes
from voxgan.results.evaluate import evaluate_run
from voxgan.results.export import generator_labels

MARKS = 4
CONTENDERS = {
    "default": {},
    "default-no-attention": dict(generator_attention=(), critic_attention=()),
    "original-design": ORIGINAL_DESIGN,
}


def machine() -> str:
    """The processor, its core count and the torch version, for the record."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def train_and_evaluate(name: str, overrides: dict, args, out: Path) -> list[dict]:
    """Train one contender to each of the marks, evaluating at each; returns one record per mark."""
    config = dataclasses.replace(
        TrainConfig(
            data=str(args.data),
            out=str(out / "runs"),
            resolution=args.resolution,
            seed=args.seed,
            device=args.device,
            checkpoint_every=10**9,
            log_every=50,
        ),
        **overrides,
    )
    records, run_dir = [], None
    for mark in range(1, MARKS + 1):
        limit = args.minutes * mark / MARKS
        run_dir = train(dataclasses.replace(config, time_limit=limit), resume=run_dir)
        record = evaluate_run(
            run_dir,
            args.data,
            split="test",
            device=resolve_device(args.device).type,
            context=False,
        )
        record = {k: v for k, v in record.items() if k not in ("table", "context")}
        records.append({"contender": name, "minutes": limit, **record})
        print(
            f"bench_quality: {name} at {limit:g} min (step {record['step']}): 1-NNA {record['nna_iou']:.1%}, "
            f"COV {record['cov_iou']:.1%}, FID {record.get('fid') or float('nan'):.2f}",
            file=sys.stderr,
        )
    generator = load_generator(run_dir).generator
    labels = generator_labels(generator.num_classes, 16, None)  # the classes in turn when conditional
    volumes = run_generator(generator, latent_batch(16, generator.latent_dim, args.seed), labels) > 0.5
    render_volumes(volumes, out / f"samples-{name}.png", ncols=8)
    return records


def ceiling(args) -> dict:
    """The train split scored against the test split: what a perfect generator would reach."""
    from voxgan.results.evaluate import reference_volumes
    from voxgan.results.metrics import compare_sets

    test, _, _ = reference_volumes(args.data, "test", None, args.resolution, args.seed)
    train_split, _, _ = reference_volumes(args.data, "train", len(test), args.resolution, args.seed + 1)
    return compare_sets(train_split, test)


def markdown(records: list[dict], top: dict, header: str) -> str:
    """The table: one row per contender and mark, then the ceiling."""
    lines = [
        header,
        "",
        "| contender | minutes | step | 1-NNA (IoU) | COV (IoU) | MMD (IoU) | 1-NNA (CD) | voxel FID |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        fid = f"{r['fid']:.2f}" if r.get("fid") is not None else "-"
        lines.append(
            f"| {r['contender']} | {r['minutes']:g} | {r['step']} | {r['nna_iou']:.1%} | "
            f"{r['cov_iou']:.1%} | {r['mmd_iou']:.3f} | {r['nna_cd']:.1%} | {fid} |"
        )
    lines.append(
        f"| train split vs test split (ceiling) | - | - | {top['nna_iou']:.1%} | {top['cov_iou']:.1%} | "
        f"{top['mmd_iou']:.3f} | {top['nna_cd']:.1%} | - |"
    )
    return "\n".join(lines)


def plot(records: list[dict], path: Path, title: str) -> None:
    """1-NNA (IoU) against training minutes, one line per contender; 50% is the best possible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name in dict.fromkeys(r["contender"] for r in records):
        rows = [r for r in records if r["contender"] == name]
        ax.plot([r["minutes"] for r in rows], [100 * r["nna_iou"] for r in rows], marker="o", label=name)
    ax.axhline(50, color="grey", linestyle=":", label="ideal (50%)")
    ax.set(xlabel="training minutes", ylabel="1-NNA, IoU distance (%)", title=title, ylim=(45, 101))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="training minutes per contender")
    parser.add_argument("--data", type=Path, required=True, help="shard folder with train and test splits")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("bench-quality"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", nargs="*", choices=list(CONTENDERS), help="run these contenders only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    records = []
    for name, overrides in CONTENDERS.items():
        if not args.only or name in args.only:
            records += train_and_evaluate(name, overrides, args, args.out)
            (args.out / "quality.json").write_text(json.dumps(records, indent=1, default=float))
    top = ceiling(args)
    header = (
        f"{args.data} at {args.resolution}³, {args.minutes:g} training minutes per contender, "
        f"{machine()}, {(time.time() - started) / 60:.0f} min in all"
    )
    table = markdown(records, top, header)
    (args.out / "quality.md").write_text(table + "\n")
    (args.out / "quality.json").write_text(
        json.dumps({"records": records, "ceiling": top}, indent=1, default=float)
    )
    plot(records, args.out / "quality.png", f"{args.data.name}, {args.resolution}³")
    print(table)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
