"""What a training run writes, and when: log lines, pictures, checkpoints, ``best.pt``.

Only rank 0 writes. What a run leaves on disk is bounded, whatever the hardware's speed
(:class:`Bookkeeping`): a checkpoint every ``checkpoint_every`` (steps, or training time by default), of
which the last ``keep`` step snapshots stay, plus ``best.pt`` by the evaluation's 1-NNA
(:func:`keep_if_best`); a log line every ``log_every`` (:class:`LogInterval`); a sample grid and the loss
plot every ``samples_every`` (a minute of training by default) and at the end. Every process agrees on what
is due after a step (:func:`step_events`); :func:`write_after_step` writes it. A write that fails for want
of space stops the run with one line (:class:`stop_when_disk_full`); the last whole ``latest.pt`` stays,
and ``--resume`` continues exactly once space is freed.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voxgan import __version__
from voxgan.atomic import write_json_atomic
from voxgan.errors import VoxganError, is_disk_full
from voxgan.model.config import Interval, TrainConfig, parse_interval
from voxgan.model.networks import Generator
from voxgan.model.runs import (
    append_stats,
    checkpoint_bytes,
    new_run_dir,
    plot_losses,
    read_stats,
    rewrite_stats,
    run_description,
    save_best,
    save_checkpoint,
    tensorboard_writer,
)
from voxgan.model.state import STAT_NAMES, Networks, Progress, StepPlan, check_streaks, checkpoint_state

SAMPLE_GRID = 16  # volumes in samples/step-NNNNNNN.png, from latents fixed by the seed
BEST_METRIC = "nna_iou"  # best.pt: the checkpoint of the lowest 1-NNA (IoU) the evaluation measured

Evaluate = Callable[[Path, torch.device], dict | None]  # returns the evaluation's record


@dataclass
class Bookkeeping:
    """When rank 0 writes checkpoints and pictures: the intervals, and the (step, training seconds) of the
    last of each; ``best`` is the lowest evaluation metric so far (None before the first)."""

    log: Interval
    checkpoints: Interval
    samples: Interval
    last_log: tuple[int, float]
    last_checkpoint: tuple[int, float]
    last_samples: tuple[int, float]
    best: float | None = None

    @classmethod
    def start(cls, config: TrainConfig, progress: Progress) -> Bookkeeping:
        """The intervals of ``config``, counted from where ``progress`` stands (a new or resumed run)."""
        now = (progress.step, progress.train_seconds)
        intervals = [
            parse_interval(v) for v in (config.log_every, config.checkpoint_every, config.samples_every)
        ]
        return cls(*intervals, now, now, now)

    def due(self, progress: Progress) -> tuple[bool, bool, bool]:
        """Whether a log line, a checkpoint and a picture are due after this step."""
        now = (progress.step, progress.train_seconds)
        return (
            self.log.due(*now, *self.last_log),
            self.checkpoints.due(*now, *self.last_checkpoint),
            self.samples.due(*now, *self.last_samples),
        )


@dataclass
class LogInterval:
    """The stretch since the last stats.jsonl line: when and at which step it began, the seconds of it
    spent waiting for data."""

    started: float  # time.perf_counter()
    step: int
    data_wait: float = 0.0

    def close(self, progress: Progress, samples_per_step: int) -> dict:
        """The stats.jsonl record of this interval (:func:`close_log_interval`); the next one starts now."""
        elapsed, steps_done = time.perf_counter() - self.started, max(1, progress.step - self.step)
        record = close_log_interval(progress, steps_done, elapsed, self.data_wait, samples_per_step)
        self.started, self.step, self.data_wait = time.perf_counter(), progress.step, 0.0
        return record


@dataclass(frozen=True)
class StepEvents:
    """What happens after a step, agreed by every process: the stop reason and what is written."""

    stop: str | None  # 'steps', 'time', 'signal' or None
    log: bool
    checkpoint: bool
    samples: bool


@dataclass
class RunFolder:
    """The run folder and what rank 0 keeps of it: the stats.jsonl records so far, the TensorBoard writer
    (None without tensorboard or on other ranks), and the latents (SAMPLE_GRID, Z) and labels of every
    samples/ picture."""

    run_dir: Path | None
    history: list[dict]
    writer: object
    sample_z: torch.Tensor
    sample_labels: torch.Tensor | None

    def log(self, record: dict) -> None:
        """Keep ``record`` and append it to stats.jsonl (and TensorBoard)."""
        self.history.append(record)
        append_stats(self.run_dir / "stats.jsonl", record, self.writer)

    def save_samples(self, ema: Generator, config: TrainConfig, step: int) -> None:
        """``samples/step-NNNNNNN.png`` of the EMA generator at ``step`` (:func:`save_samples`)."""
        save_samples(ema, self.sample_z, self.sample_labels, config, self.run_dir, step)


def step_events(
    config: TrainConfig,
    progress: Progress,
    total_steps: int | None,
    signal_received: int,
    books: Bookkeeping,
    world_size: int,
) -> StepEvents:
    """Whether the run stops after this step ('steps', 'time' or 'signal') and what it writes now.

    Under DDP every process decides the same: the time limit, the time-based intervals and the signals of
    any process count for all (one all-reduce of five flags per step).
    """
    time_up = config.time_limit is not None and progress.train_seconds >= 60 * config.time_limit
    flags = torch.tensor([bool(signal_received), time_up, *books.due(progress)], dtype=torch.int32)
    if world_size > 1:
        import torch.distributed as dist

        flags = flags.to(progress.sums.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        flags = flags.cpu()
    stop = None
    if flags[0]:
        stop = "signal"
    elif total_steps is not None and progress.step >= total_steps:
        stop = "steps"
    elif flags[1]:
        stop = "time"
    return StepEvents(stop, bool(flags[2]), bool(flags[3]), bool(flags[4]))


def write_after_step(
    plan: StepPlan,
    events: StepEvents,
    networks: Networks,
    progress: Progress,
    books: Bookkeeping,
    interval: LogInterval,
    folder: RunFolder,
    evaluate: Evaluate | None,
    bar,
) -> bool:
    """Log, picture, checkpoint and evaluate as ``events`` and ``eval_every`` ask (every step on every
    rank; rank 0 writes); a full disk stops the run in one line. Returns whether it evaluated (time that
    is not training time)."""
    config, step, last, is_main = plan.config, progress.step, events.stop is not None, plan.rank == 0
    evaluate_now = bool(config.eval_every) and step % config.eval_every == 0
    save_now = events.checkpoint or last or evaluate_now
    if save_now and plan.world_size > 1:
        check_ranks_agree((networks.generator, networks.critic, networks.ema), step)
    with stop_when_disk_full(folder.run_dir, config, networks, progress):
        if events.log or last:
            record = interval.close(progress, plan.samples_per_step)
            books.last_log = (step, progress.train_seconds)
            if is_main:
                folder.log(record)
                bar.set_postfix(c=short(record["loss_critic"]), g=short(record["loss_generator"]),
                                sps=short(record["samples_per_s"]))  # fmt: skip
            check_streaks(progress, config.max_nonfinite)
        if events.samples or last:
            if is_main:
                folder.save_samples(networks.ema, config, step)
                plot_losses(folder.history, folder.run_dir / "loss.png")
            books.last_samples = (step, progress.train_seconds)
        if save_now:
            state = save_training_checkpoint(folder.run_dir, config, networks, progress) if is_main else None
            books.last_checkpoint = (step, progress.train_seconds)
        if is_main and config.eval_every and (evaluate_now or (last and events.stop != "signal")):
            keep_if_best(folder, state, evaluate(folder.run_dir, plan.device), books)
            return True
    return False


# --- the run folder and its log -------------------------------------------------------------------------


def run_folder_to_continue(resume) -> Path | None:
    """The run folder of ``resume`` (a run folder or ``<run>/checkpoints/<file>.pt``), or None."""
    run_dir = Path(resume) if resume is not None else None
    if run_dir is not None and run_dir.is_file():
        run_dir = run_dir.parent.parent
    return run_dir


def open_run_folder(config: TrainConfig, run_dir: Path | None, step: int, device: torch.device) -> RunFolder:
    """Rank 0: create the run folder (or continue ``run_dir``), write config.json, keep stats up to ``step``,
    open a TensorBoard writer (None without tensorboard)."""
    if run_dir is None:
        run_dir = new_run_dir(Path(config.out), run_description(config))
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config.to_dict() | {"voxgan_version": __version__})
    history = read_stats(run_dir / "stats.jsonl", step)
    rewrite_stats(run_dir / "stats.jsonl", history)
    return RunFolder(run_dir, history, tensorboard_writer(run_dir), *fixed_latents(config, device))


def close_log_interval(
    progress: Progress, steps_done: int, elapsed: float, data_wait: float, samples_per_step: int
) -> dict:
    """The stats.jsonl record of the interval that ends now; its sums start again from zero."""
    values = dict(zip(STAT_NAMES, progress.sums.tolist(), strict=True))  # the one host sync per log interval
    record = log_record(
        values, progress.step, progress.epoch, steps_done, elapsed, data_wait, samples_per_step
    )
    progress.sums.zero_()
    return record


def log_record(values: dict, step, epoch, steps_done, elapsed, data_wait, samples_per_step) -> dict:
    """One stats.jsonl record from the sums of a log interval."""

    def mean(key: str, count: str) -> float:
        return values[key] / values[count] if values[count] else float("nan")

    record = {
        "step": step,
        "epoch": epoch,
        "loss_critic": mean("loss_critic", "critic_updates"),
        "loss_generator": mean("loss_generator", "generator_updates"),
        "gradient_penalty": mean("gradient_penalty", "penalty_updates"),
        "wasserstein": mean("wasserstein", "critic_updates"),
        "grad_norm_critic": mean("grad_norm_critic", "critic_updates"),
        "grad_norm_generator": mean("grad_norm_generator", "generator_updates"),
        "samples_per_s": steps_done * samples_per_step / max(elapsed, 1e-9),
        "data_wait": data_wait / steps_done,
        "skipped_critic": int(values["skipped_critic"]),
        "skipped_generator": int(values["skipped_generator"]),
    }
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in record.items()}


def short(value: float | None) -> str:
    """A number for the progress bar, "nan" for a missing one."""
    return "nan" if value is None else f"{value:.3g}"


# --- pictures -------------------------------------------------------------------------------------------


def fixed_latents(config: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The latents (SAMPLE_GRID, Z) of every samples/ picture, drawn from the seed, and their labels."""
    sample_generator = torch.Generator().manual_seed(config.seed)
    sample_z = torch.randn(SAMPLE_GRID, config.latent_dim, generator=sample_generator).to(device)
    num_classes = config.num_classes
    sample_labels = torch.arange(SAMPLE_GRID, device=device) % num_classes if num_classes else None
    return sample_z, sample_labels


def save_samples(
    ema: Generator,
    z: torch.Tensor,
    labels: torch.Tensor | None,
    config: TrainConfig,
    run_dir: Path,
    step: int,
) -> None:
    """``samples/step-NNNNNNN.png``: the EMA generator's volumes of the fixed latents, 4 to a row."""
    from voxgan.render import render_volumes

    with torch.no_grad():
        volumes = ema(z, labels).float().cpu().numpy()[:, 0]  # (16, R, R, R)
    titles = [config.class_names[i] for i in labels.tolist()] if labels is not None else None
    render_volumes(volumes, run_dir / "samples" / f"step-{step:07d}.png", ncols=4, titles=titles)


# --- checkpoints ----------------------------------------------------------------------------------------


def save_training_checkpoint(
    run_dir: Path, config: TrainConfig, networks: Networks, progress: Progress
) -> dict:
    """Write the step's checkpoint (never non-finite weights), keeping the last ``config.keep`` snapshots;
    return its state (for ``best.pt``)."""
    modules = (
        ("generator", networks.generator),
        ("critic", networks.critic),
        ("EMA generator", networks.ema),
    )
    for name, module in modules:
        if not all_finite(module):
            raise VoxganError(
                f"the {name} weights are not finite at step {progress.step}; nothing saved; resume from "
                f"{run_dir / 'checkpoints' / 'latest.pt'} with a lower --lr"
            )
    state = checkpoint_state(config, networks, progress)
    save_checkpoint(checkpoint_bytes(state), run_dir, progress.step, config.keep)
    return state


def keep_if_best(folder: RunFolder, state: dict, result: dict | None, books: Bookkeeping) -> None:
    """``best.pt`` := the checkpoint just evaluated when its :data:`BEST_METRIC` is the lowest so far;
    the new best is logged to stats.jsonl as ``{"kind": "best", "step", "metric", "value"}``."""
    value = (result or {}).get(BEST_METRIC)
    if value is None or (books.best is not None and value >= books.best):
        return
    save_best(state, folder.run_dir, BEST_METRIC, value)
    books.best = value
    folder.log({"kind": "best", "step": state["step"], "metric": BEST_METRIC, "value": value})


class stop_when_disk_full:
    """``with``: a full disk, quota or file-size cap, or an I/O error, met by rank 0's writes becomes one
    line naming the run folder, the space a checkpoint needs and how to continue; anything else passes."""

    def __init__(self, run_dir: Path | None, config: TrainConfig, networks: Networks, progress: Progress):
        self.run_dir, self.config, self.networks, self.progress = run_dir, config, networks, progress

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        lost = is_disk_full(error) or (isinstance(error, OSError) and error.errno == errno.EIO)
        if not lost or self.run_dir is None:
            return False
        needed = len(checkpoint_bytes(checkpoint_state(self.config, self.networks, self.progress)))
        latest = self.run_dir / "checkpoints" / "latest.pt"
        kept = f"{latest} is whole" if latest.is_file() else "no checkpoint was written yet"
        where = Path(error.filename).name if error.filename else "a file"
        raise VoxganError(
            f"{self.run_dir}: cannot write {where} at step {self.progress.step} "
            f"({os.strerror(error.errno)}); free at least {needed / 2**20 + 1:.0f} MB there (one checkpoint) "
            f"and continue with: voxgan train --resume {self.run_dir} ({kept})"
        ) from None


def all_finite(module: nn.Module) -> bool:
    """True when every parameter and buffer of ``module`` is finite (one host sync)."""
    tensors = [t for t in module.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def check_ranks_agree(modules: tuple[nn.Module, ...], step: int) -> None:
    """Under DDP: VoxganError unless every rank holds bit-identical weights (compares per-tensor sums)."""
    import torch.distributed as dist

    fingerprint = torch.stack([p.detach().double().sum() for m in modules for p in m.parameters()])
    gathered = [torch.empty_like(fingerprint) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, fingerprint)
    if not all(torch.equal(g, gathered[0]) for g in gathered):
        raise VoxganError(f"the processes' weights differ at step {step}; gradients were not synchronised")
