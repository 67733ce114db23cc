"""Train the pretrained generators voxgan ships and write them into the package (``voxgan/pretrained/``).

Each model is the default recipe trained on the built-in shapes (``voxgan shapes`` + ``voxgan voxelize``,
seed 0: 1,000 train and 200 test volumes) with ``voxgan train --time-limit MINUTES --eval-every 500
--seed 0``, one thread, exactly as a user would run it. ``--eval-every`` keeps ``checkpoints/best.pt``, the
checkpoint with the lowest 1-NNA (IoU) on the test split; that one is evaluated once more with the context
rows and cut down to a generator file (config, step, EMA weights and how it was made, no critic and no
optimiser) at ``voxgan/pretrained/<name>.pt``, with its table at ``<name>.md``.

    .venv/bin/python benchmarks/train_pretrained.py shapes-16 --minutes 110
    .venv/bin/python benchmarks/train_pretrained.py shapes-16-cond --minutes 110
    .venv/bin/python benchmarks/train_pretrained.py shapes-32-cond --minutes 120
    .venv/bin/python benchmarks/train_pretrained.py shapes-16 --package runs/pretrained/00000-shards-16

``--package RUN`` skips training and writes the generator file of a run trained by the same command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch
from run import cpu_model

from voxgan.model.pretrained import write_generator_file
from voxgan.model.runs import checkpoint_path, load_generator
from voxgan.results.evaluate import evaluate_run

ROOT = Path(__file__).resolve().parent.parent
MODELS = {  # name -> (resolution, extra options of voxgan train)
    "shapes-16": (16, ["--unconditional"]),
    "shapes-16-cond": (16, ["--conditional"]),
    "shapes-32-cond": (32, ["--conditional", "--generator-width", "8", "--critic-width", "8"]),
}


def voxgan(*args: str, cwd: Path) -> None:
    """Run a voxgan command in ``cwd`` with one thread, its output passed through."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "voxgan", *args], cwd=cwd, env=env, check=True)


def shards_for(resolution: int, work: Path) -> Path:
    """The built-in shapes voxelized at ``resolution`` under ``work`` (made once)."""
    meshes, shards = work / "meshes", work / f"shards-{resolution}"
    if not meshes.is_dir():
        voxgan("shapes", str(meshes), cwd=work)
    if not (shards / "manifest.json").is_file():
        voxgan("voxelize", str(meshes), str(shards), "--resolution", str(resolution), cwd=work)
    return shards


def machine() -> str:
    """The processor and the torch version, for the record."""
    return f"{cpu_model()}, torch {torch.__version__}"


def package(name: str, run: Path, shards: Path, command: str) -> Path:
    """Evaluate the run's best checkpoint (its latest without one) and write ``voxgan/pretrained/<name>``."""
    best = run / "checkpoints" / "best.pt"
    checkpoint = best if best.is_file() else checkpoint_path(run)
    seconds = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["train_seconds"]
    record = evaluate_run(checkpoint, shards, split="test", folder=run / f"pretrained-{name}")
    kept = ("nna_iou", "cov_iou", "mmd_iou", "nna_cd", "fid", "class_accuracy", "confident", "one_piece")
    about = {
        "name": name,
        "data": "the built-in shapes (voxgan shapes, seed 0; voxgan voxelize): 1,000 train, 200 test volumes",
        "command": command,
        "training_minutes": round(seconds / 60, 1),
        "step": load_generator(checkpoint).step,
        "machine": machine(),
        "evaluation": {key: record[key] for key in kept if record.get(key) is not None},
        "data_row": {k: v for k, v in record["reference"].items() if not isinstance(v, dict)},
        "train_split_row": {key: record["context"]["train"].get(key) for key in ("nna_iou", "cov_iou")},
    }
    out = ROOT / "voxgan" / "pretrained" / f"{name}.pt"
    write_generator_file(checkpoint, out, about)
    table = record["table"].replace(str(shards), "shards")
    out.with_suffix(".md").write_text(f"# {name}\n\n`{command}`\n\n{table}\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", choices=sorted(MODELS))
    parser.add_argument("--minutes", type=float, default=110.0, help="training time")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "data" / "pretrained", help="meshes, shards, runs"
    )
    parser.add_argument("--package", type=Path, help="a run trained by this command: only write its file")
    args = parser.parse_args()
    resolution, extra = MODELS[args.name]
    args.work.mkdir(parents=True, exist_ok=True)
    shards = shards_for(resolution, args.work)
    train = ["train", "--data", str(shards), "--time-limit", f"{args.minutes:g}", "--eval-every", "500"]
    train += ["--seed", "0", *extra, "--out", str(args.work / "runs" / args.name)]
    command = f"OMP_NUM_THREADS=1 voxgan {' '.join(train[:-2])} --out runs/{args.name}".replace(
        str(shards), "shards"
    )
    run = args.package
    if run is None:
        voxgan(*train, cwd=args.work)
        run = sorted((args.work / "runs" / args.name).iterdir())[-1]
    out = package(args.name, run, shards, command)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) from {run}")


if __name__ == "__main__":
    main()
