"""Run folders and what they hold: checkpoints, logs, and the generator a run made.

A run folder ``runs/NNNNN-<description>/`` holds ``config.json``, ``stats.jsonl``, ``loss.png``,
``samples/step-NNNNNNN.png`` and ``checkpoints/``: the last few step snapshots ``step-NNNNNNN.pt``,
``latest.pt`` (a hard link to the newest) and, with evaluation, ``best.pt`` (and TensorBoard events when
tensorboard is installed). A checkpoint is one dict of plain tensors and numbers, loadable with
``torch.load(weights_only=True)``: ``format``, ``format_version``, ``voxgan_version``, ``config``, ``step``,
``epoch``, ``batch_index``, the ``generator``, ``critic`` and ``ema`` weights, both optimisers' states,
``stats_sums``, ``nonfinite_streaks`` and every global ``rng`` state, so a resumed run continues exactly.
:func:`load_generator` gives the EMA generator of a run or checkpoint with its config and step;
:func:`run_generator` turns latents into volumes with it.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from voxgan.atomic import append_json_line, atomic_open, write_bytes_atomic
from voxgan.errors import VoxganError
from voxgan.model.config import TrainConfig, build_generator, build_networks, check_config
from voxgan.model.networks import Generator

CHECKPOINT_FORMAT = "voxgan-checkpoint"
CHECKPOINT_VERSION = 1
RUN_PATTERN = re.compile(r"^(?P<index>\d{5})-")
SNAPSHOT_PATTERN = re.compile(r"^step-(?P<step>\d{7,})\.pt$")
GENERATE_BATCH = 64  # volumes per forward pass of run_generator
GENERATOR_KEYS = ("format", "format_version", "voxgan_version", "config", "step", "ema")  # a generator file
TRAINING_KEYS = ("config", "step", "generator", "critic", "ema")  # what resuming needs besides


# --- run folders ----------------------------------------------------------------------------------------


def run_description(config: TrainConfig) -> str:
    """Short folder suffix, e.g. ``shapes-16-cond`` or ``modelnet40-32``."""
    source = config.data.split(":", 1)[1] if config.data.startswith("synthetic:") else Path(config.data).name
    source = re.sub(r"[^A-Za-z0-9_.]+", "_", source).strip("_") or "data"
    return f"{source}-{config.resolution}" + ("-cond" if config.conditional else "")


def list_runs(out_dir: Path) -> list[Path]:
    """Run folders ``NNNNN-*`` under ``out_dir``, oldest first."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    runs = [p for p in out_dir.iterdir() if p.is_dir() and RUN_PATTERN.match(p.name)]
    return sorted(runs, key=lambda p: (int(RUN_PATTERN.match(p.name)["index"]), p.name))


def find_latest_run(out_dir: Path) -> Path:
    """The newest run folder (highest NNNNN) under ``out_dir``; VoxganError when there is none."""
    runs = list_runs(out_dir)
    if not runs:
        raise VoxganError(
            f"no run folder (NNNNN-*) under {out_dir}; train one with: voxgan train --out {out_dir}"
        )
    return runs[-1]


def new_run_dir(out_dir: Path, description: str) -> Path:
    """Create ``out_dir/NNNNN-description`` with the next free index."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = list_runs(out_dir)
    index = int(RUN_PATTERN.match(runs[-1].name)["index"]) + 1 if runs else 0
    while True:
        run_dir = out_dir / f"{index:05d}-{description}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            index += 1


def run_folder_of(path: Path) -> Path:
    """The run folder of a run folder or of a checkpoint file (``<run>/checkpoints/step-N.pt``)."""
    path = Path(path)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


# --- checkpoints ----------------------------------------------------------------------------------------


def rng_state() -> dict:
    """Every global RNG state as plain tensors and numbers (loadable with weights_only=True)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_bytes(state: dict) -> bytes:
    """``state`` serialised as ``torch.save`` writes it: a copy taken now, whatever the networks do next."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """The step snapshots ``checkpoints/step-NNNNNNN.pt`` of a run folder as (step, path), oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m["step"]), p) for p in folder.iterdir() if (m := SNAPSHOT_PATTERN.match(p.name))]
    return sorted(found)


def save_checkpoint(data: bytes, run_dir: Path, step: int, keep: int = 0) -> Path:
    """Write ``checkpoints/step-NNNNNNN.pt`` atomically, point ``latest.pt`` at it, then prune.

    ``data`` is a serialised checkpoint (:func:`checkpoint_bytes`). Once the new snapshot and ``latest.pt``
    are whole on disk, snapshots of earlier steps beyond the newest ``keep`` are removed (``keep`` 0: none
    are); snapshots of later steps (a run resumed from an earlier one) are left to be overwritten.
    """
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    write_bytes_atomic(path, data)
    latest_tmp = folder / f".latest.pt.{os.getpid()}.tmp"
    latest_tmp.unlink(missing_ok=True)
    try:
        os.link(path, latest_tmp)
    except OSError:  # a file system without hard links
        import shutil

        shutil.copyfile(path, latest_tmp)
    os.replace(latest_tmp, folder / "latest.pt")
    if keep:
        earlier = [p for s, p in snapshots(run_dir) if s <= step]
        for old in earlier[:-keep]:
            old.unlink(missing_ok=True)
    return path


def save_best(state: dict, run_dir: Path, metric: str, value: float) -> Path:
    """Write ``checkpoints/best.pt``: ``state`` with ``best = {metric, value, step}`` recorded inside it."""
    path = Path(run_dir) / "checkpoints" / "best.pt"
    best = {"metric": metric, "value": float(value), "step": int(state["step"])}
    write_bytes_atomic(path, checkpoint_bytes({**state, "best": best}))
    return path


def best_so_far(run_dir: Path, step: int) -> float | None:
    """The metric value recorded in ``checkpoints/best.pt`` when it is of a step up to ``step``, else None."""
    path = Path(run_dir) / "checkpoints" / "best.pt"
    if not path.is_file():
        return None
    best = load_checkpoint(path).get("best") or {}
    return float(best["value"]) if best.get("step", step + 1) <= step and "value" in best else None


def checkpoint_path(path: Path) -> Path:
    """A checkpoint file itself, or the newest of a run folder (``latest.pt``, else its newest snapshot)."""
    path = Path(path)
    if path.is_dir():
        latest = path / "checkpoints" / "latest.pt"
        if latest.is_file():
            return latest
        kept = snapshots(path)
        if not kept:
            raise VoxganError(f"{path} has no checkpoints/latest.pt or step-*.pt; is it a voxgan run folder?")
        return kept[-1][1]
    if not path.is_file():
        raise VoxganError(f"{path}: no such checkpoint file or run folder")
    return path


def load_checkpoint(path: Path, *, generator_only: bool = False) -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)``: plain tensors and numbers only.

    A truncated or corrupt file, one carrying a pickled object (never executed), a dict that is not a
    voxgan checkpoint, or one whose config is out of range or does not describe the networks whose
    weights it holds (:func:`checkpoint_config`) raises VoxganError. ``generator_only``: what generating
    needs is enough (the config, step and EMA weights of a generator file, such as the pretrained ones),
    and the file is mapped, not read: its other tensors (critic, optimisers) stay on disk.
    ``path``: a checkpoint file or a run folder (its latest.pt).
    """
    path = checkpoint_path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=generator_only)
    except Exception as error:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise VoxganError(
            f"{path}: refused: not a readable plain-data voxgan checkpoint ({type(error).__name__}: "
            f"{first_line}); it is truncated, corrupt or carries pickled objects; use another checkpoint "
            f"from {path.parent}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise VoxganError(f"{path}: refused: not a voxgan checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    needed = ("config", "step", "ema") if generator_only else TRAINING_KEYS
    missing = [key for key in needed if key not in state]
    if missing:
        raise VoxganError(f"{path}: refused: an incomplete voxgan checkpoint (no {', '.join(missing)})")
    version = state.get("format_version", 0)
    if not isinstance(version, int) or not isinstance(state["step"], int) or state["step"] < 0:
        raise VoxganError(f"{path}: refused: a damaged voxgan checkpoint (its step or format version)")
    if version > CHECKPOINT_VERSION:
        raise VoxganError(f"{path}: checkpoint format {state['format_version']} is newer than this voxgan's")
    checkpoint_config(state, path, ("ema",) if generator_only else ("ema", "critic"))
    return state


@dataclass(frozen=True)
class LoadedGenerator:
    """A run's EMA generator in eval mode, the config it was trained with and the step it reached.

    ``generator(z, labels)`` maps z (B, generator.latent_dim) and labels (B,) int64 or None to
    (B, 1, R, R, R) occupancy in [0, 1]; ``generator.num_classes`` is 0 when unconditional.
    """

    generator: Generator
    config: TrainConfig
    step: int


def load_generator(path: Path, *, device: str | torch.device = "cpu") -> LoadedGenerator:
    """The EMA generator of a run folder (its latest checkpoint) or of a checkpoint file, with its config
    and step. The checkpoint is mapped: of its tensors only the EMA weights are read."""
    state = load_checkpoint(path, generator_only=True)
    config = TrainConfig.from_dict(state["config"])  # checked by load_checkpoint
    generator = build_generator(config)
    generator.load_state_dict(state["ema"])
    generator.to(device).eval().requires_grad_(False)
    return LoadedGenerator(generator, config, state["step"])


def checkpoint_config(state: dict, path: Path, keys=("ema", "critic")) -> TrainConfig:
    """The checked config of a loaded checkpoint; VoxganError when it is not a valid config or when the
    networks it describes are not the ones whose weights the checkpoint holds under ``keys`` (EMA
    generator, critic; compared on torch's ``meta`` device, so a config claiming vast networks allocates
    nothing)."""
    try:
        config = TrainConfig.from_dict(state["config"])
        check_config(config)
        with torch.device("meta"):
            described = build_networks(config)
        for network, key in zip(described, ("ema", "critic"), strict=True):
            if key not in keys:
                continue
            shapes = {name: tuple(value.shape) for name, value in network.state_dict().items()}
            held = state[key]
            if (
                not isinstance(held, dict)
                or {name: tuple(value.shape) for name, value in held.items()} != shapes
            ):
                raise VoxganError(f"its {key} weights are not those of the networks its config describes")
    except (
        VoxganError,
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        OverflowError,
        RuntimeError,
    ) as error:
        text = " ".join(str(error).split())[:200] or type(error).__name__
        raise VoxganError(
            f"{path}: refused: not a voxgan generator checkpoint ({text}); "
            f"use another checkpoint from {path.parent}"
        ) from None
    return config


# --- logs -----------------------------------------------------------------------------------------------


def read_stats(path: Path, up_to_step: int) -> list[dict]:
    """Records of ``stats.jsonl`` with ``step <= up_to_step`` (the ones a resumed run keeps).

    A line that is not a JSON record with a step (a write cut short by a crash) is dropped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= up_to_step:
            records.append(record)
    return records


def rewrite_stats(path: Path, records: list[dict]) -> None:
    """Replace ``stats.jsonl`` with ``records``, atomically (a resumed run drops what came after its step)."""
    with atomic_open(path, "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)


def append_stats(path: Path, record: dict, writer) -> None:
    """Append one JSON line to stats.jsonl (and scalars to TensorBoard when it is open)."""
    append_json_line(path, record)
    if writer is not None:
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                writer.add_scalar(f"train/{key}", value, record["step"])


def plot_losses(history: list[dict], path: Path) -> None:
    """Write the loss curves of ``history`` (stats.jsonl records) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    history = [h for h in history if "loss_critic" in h]  # the loss records, not the best-checkpoint ones
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = [h["step"] for h in history]
    for key in ("loss_critic", "loss_generator", "wasserstein"):
        axes[0].plot(steps, [nan_if_none(h[key]) for h in history], label=key)
    penalty = [nan_if_none(h["gradient_penalty"]) for h in history]
    axes[1].plot(steps, penalty, label="gradient_penalty", color="C3")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_open(path) as handle:
            fig.savefig(handle, format="png", dpi=80)
    finally:
        plt.close(fig)


def nan_if_none(value: float | None) -> float:
    """A logged number for a plot: NaN where the log holds None."""
    return float("nan") if value is None else value


TENSORBOARD_MISSING = "no TensorBoard events without tensorboard (pip install 'voxgan[tensorboard]')"


def tensorboard_writer(run_dir: Path):
    """A TensorBoard SummaryWriter on the run folder, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir))


# --- the generator at work ------------------------------------------------------------------------------


def latent_batch(count: int, latent_dim: int, seed: int) -> np.ndarray:
    """(count, latent_dim) float32 standard-normal latents drawn from ``seed`` alone."""
    return np.random.default_rng(seed).standard_normal((count, latent_dim)).astype(np.float32)


def run_generator(
    generator, latents: np.ndarray, labels: np.ndarray | None, device: str = "cpu"
) -> np.ndarray:
    """Volumes of ``generator`` for latents (N, Z) and labels (N,) or None  ->  (N, R, R, R) float32."""
    outputs = []
    with torch.no_grad():
        for start in range(0, len(latents), GENERATE_BATCH):
            z = torch.from_numpy(latents[start : start + GENERATE_BATCH]).to(device)
            y = (
                None
                if labels is None
                else torch.from_numpy(labels[start : start + GENERATE_BATCH]).to(device)
            )
            volumes = generator(z, y)
            assert volumes.shape[1] == 1 and volumes.shape[2] == generator.resolution, volumes.shape
            outputs.append(volumes[:, 0].float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0,) + (generator.resolution,) * 3, np.float32)
