"""Training: the WGAN-GP loop, on one process or under torchrun.

:func:`train` sets up the processes; :func:`run_training` is the loop, read top to bottom under
``# Resume.``, ``# Load data.``, ``# Construct networks.``, ... headings, its pieces named functions below
it. A *step* is one generator update with its ``n_critic`` critic updates (:func:`train_step`);
``--steps``, ``step`` in the logs and the checkpoint interval all count steps. Every random draw of a step
(latents, mixing weights) comes from a generator seeded by ``(seed, rank, step)`` and every batch is a
function of ``(seed, epoch, batch index)``, so a run resumed from a checkpoint continues exactly as the
uninterrupted run would have. What a run folder holds and how checkpoints are read is
:mod:`voxgan.model.runs`; only rank 0 writes.

What a run leaves on disk is bounded, whatever the hardware's speed (:class:`Bookkeeping`): a checkpoint
every ``checkpoint_every`` (steps, or training time by default), of which the last ``keep`` step snapshots
stay, plus ``best.pt`` by the evaluation's 1-NNA; a sample grid and the loss plot every ``samples_every``
(a minute of training by default) and at the end. A write that fails for want of space stops the run with
one line; the last whole ``latest.pt`` stays, and ``--resume`` continues exactly once space is freed.

A run stops at its step target, at its time limit (minutes of training, evaluation not counted, summed
over resumes) or at SIGTERM / SIGINT: the step in progress finishes, a checkpoint and the sample grid are
written, and :class:`TrainingStopped` tells the caller which signal came (the command line exits 0 on
SIGTERM, as cluster schedulers expect of a preempted job, and 130 on SIGINT).

Periodic evaluation (``--eval-every``) is a function handed to :func:`train` (the command line passes
:func:`voxgan.results.evaluate.evaluate_during_training`), so this room never imports the results room.

The module is longer than most (about 950 lines) on purpose: the loop and every piece of it, so that a
training run reads in this one file; the maths of one update is :mod:`voxgan.model.updates`.
"""

from __future__ import annotations

import copy
import dataclasses
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voxgan import __version__
from voxgan.atomic import write_json_atomic
from voxgan.data import VoxelLoader, make_loader
from voxgan.errors import ConfigError, VoxganError, is_disk_full
from voxgan.model.config import (
    DEFAULT_EPOCHS,
    NETWORK_FIELDS,
    PLACE_FIELDS,
    TARGET_FIELDS,
    Interval,
    TrainConfig,
    build_networks,
    check_config,
    is_device_name,
    option_name,
    parse_interval,
)
from voxgan.model.loss import CriticObjective
from voxgan.model.networks import Critic, Generator
from voxgan.model.runs import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    TENSORBOARD_MISSING,
    append_stats,
    best_so_far,
    checkpoint_bytes,
    list_runs,
    load_checkpoint,
    new_run_dir,
    plot_losses,
    read_stats,
    restore_rng_state,
    rewrite_stats,
    rng_state,
    run_description,
    save_best,
    save_checkpoint,
    tensorboard_writer,
)
from voxgan.model.updates import critic_update, generator_update, update_ema

SAMPLE_GRID = 16  # volumes in samples/step-NNNNNNN.png, from latents fixed by the seed
BEST_METRIC = "nna_iou"  # best.pt: the checkpoint of the lowest 1-NNA (IoU) the evaluation measured

# The sums of a log interval (Progress.sums and a checkpoint's stats_sums), by name, in this order:
CRITIC_VALUES = ("loss_critic", "wasserstein", "gradient_penalty", "grad_norm_critic")  # critic_update's
GENERATOR_VALUES = ("loss_generator", "grad_norm_generator")  # generator_update's
UPDATE_COUNTS = (
    "critic_updates",
    "penalty_updates",
    "generator_updates",
    "skipped_critic",
    "skipped_generator",
)
STAT_NAMES = CRITIC_VALUES + GENERATOR_VALUES + UPDATE_COUNTS
STAT = {name: index for index, name in enumerate(STAT_NAMES)}  # name -> its slot in the sums

Evaluate = Callable[[Path, torch.device], dict | None]  # returns the evaluation's record


class TrainingStopped(Exception):
    """Training stopped at a signal after saving its checkpoint; ``signal_number`` and ``run_dir`` say which
    signal and where (``run_dir`` is None on ranks other than 0)."""

    def __init__(self, signal_number: int, run_dir: Path | None):
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")
        self.signal_number, self.run_dir = signal_number, run_dir


class StopSignals:
    """SIGTERM and SIGINT, while inside ``with``, as a request to stop after the current step.

    ``received`` is the first signal's number (0 before). A second signal of the same kind acts as it
    would have without this (SIGINT: KeyboardInterrupt at once). Outside the main thread it does nothing.
    """

    def __init__(self):
        self.received = 0
        self.previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number: int, frame) -> None:
        self.received = self.received or number
        signal.signal(number, self.previous[number])

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


@dataclass
class Networks:
    """The generator, its EMA copy (used for samples and export), the critic, and their optimisers."""

    generator: Generator
    critic: Critic
    ema: Generator
    optimiser_g: torch.optim.Optimizer
    optimiser_c: torch.optim.Optimizer


@dataclass
class Progress:
    """Where a run stands, all of it saved in each checkpoint.

    sums : (len(STAT_NAMES),) float64 on the device, summed since the last log line; streaks : (2,) int64,
    the critic and generator updates in a row with a non-finite loss or gradient (checked when logging).
    """

    step: int
    epoch: int
    batch_index: int
    sums: torch.Tensor
    streaks: torch.Tensor
    train_seconds: float = 0.0  # wall-clock seconds of training so far, evaluation not counted


@dataclass(frozen=True)
class StepPlan:
    """What every step of a run shares: the options, where tensors live, how updates are weighted."""

    config: TrainConfig
    rank: int
    device: torch.device
    memory_format: torch.memory_format
    autocast: torch.autocast
    penalty_samples: int  # volumes of the batch the gradient penalty is computed on
    num_classes: int  # 0 when unconditional


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


# --- the loop -------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    resume: Path | None = None,
    *,
    evaluate: Evaluate | None = None,
    changes: Collection[str] | None = None,
) -> Path | None:
    """Train a self-attention WGAN-GP; return the run folder (None on ranks other than 0).

    ``resume``: a run folder or checkpoint file to continue from. The run keeps its own options except the
    fields of ``config`` named in ``changes`` (the command line passes the options typed; by default, the
    fields where ``config`` differs from ``TrainConfig()``). ``evaluate(run_dir, device)`` is called on
    rank 0 after each checkpoint that ``config.eval_every`` asks for (and is needed when it is set); the
    record it returns decides ``best.pt``. Under
    torchrun (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel, and a restart by torchrun resumes
    from the newest run's latest checkpoint.
    """
    # Set up processes and devices.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(config.device, local_rank)
    distributed = world_size > 1
    started_here = False
    if distributed:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            started_here = True
    if resume is None and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        runs = [r for r in list_runs(Path(config.out)) if (r / "checkpoints" / "latest.pt").is_file()]
        resume = runs[-1] if runs else None
    try:
        return run_training(config, resume, device, rank, world_size, evaluate, changes)
    finally:
        if started_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def run_training(
    config: TrainConfig,
    resume,
    device: torch.device,
    rank: int,
    world_size: int,
    evaluate: Evaluate | None,
    changes: Collection[str] | None = None,
) -> Path | None:
    """The training loop of one process; see :func:`train`."""
    is_main, cuda = rank == 0, device.type == "cuda"
    tune_backends(cuda)

    # Resume: the run's own options, except the ones changed.
    checkpoint = load_checkpoint(resume) if resume is not None else None
    changed = []
    if checkpoint is not None:
        config, changed = resumed_config(config, checkpoint, changes)
    check_config(config)
    if config.eval_every and evaluate is None:
        raise VoxganError(
            "eval_every needs an evaluate function: pass evaluate=voxgan.results.evaluate."
            "evaluate_during_training (as voxgan train --eval-every does)"
        )
    memory_format = torch.channels_last_3d if config.channels_last else torch.contiguous_format

    # Load data.
    loader = open_loader(config, cuda)
    config = with_loader_classes(config, loader, resuming=checkpoint is not None)
    config = dataclasses.replace(config, resolution=loader.resolution)  # the data's, when not given
    check_config(config)  # the attention sizes, now that the grid is known
    total_steps = target_steps(config, loader.num_batches)  # None: until the time limit

    # Construct networks.
    networks, progress = build_training(config, device, memory_format)
    if checkpoint is not None:
        restore(networks, progress, checkpoint)
    generator_train, objective_train = distribute(networks, config, device, world_size)

    # Run folder and logs (rank 0 only).
    run_dir = run_folder_to_continue(resume)
    writer, history = None, []
    if is_main:
        run_dir, history, writer = open_run_folder(config, run_dir, progress.step)
        state = f"resuming at step {progress.step}" if progress.step else "new run"
        print(f"voxgan train: {run_dir} ({state}, {describe_target(config, total_steps)}, {device}, "
              f"{world_size} process(es))", file=sys.stderr)  # fmt: skip
        if changed:
            print(f"voxgan train: changed on resume: {', '.join(changed)}", file=sys.stderr)
        if writer is None:
            print(f"voxgan train: {TENSORBOARD_MISSING}", file=sys.stderr)
    sample_z, sample_labels = fixed_latents(config, device)
    books = Bookkeeping.start(config, progress)
    if is_main and run_dir is not None and config.eval_every:
        books.best = best_so_far(run_dir, progress.step)

    # Train.
    from tqdm import tqdm

    batches = batch_stream(loader, progress.epoch, progress.batch_index)
    noise = torch.Generator(device=device)
    plan = StepPlan(
        config=config,
        rank=rank,
        device=device,
        memory_format=memory_format,
        autocast=torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda),
        penalty_samples=max(1, round(config.batch_size * config.penalty_fraction)),
        num_classes=len(config.class_names) if config.conditional else 0,
    )
    samples_per_step = config.batch_size * config.n_critic * world_size
    bar = tqdm(total=total_steps, initial=progress.step, disable=not is_main, file=sys.stderr, unit="step",
               dynamic_ncols=True)  # fmt: skip
    interval = LogInterval(time.perf_counter(), progress.step)
    stop_reason = "steps" if total_steps is not None and progress.step >= total_steps else None
    with bar, StopSignals() as signals:  # the bar is closed before an error message is printed
        tick = time.perf_counter()
        while stop_reason is None:
            interval.data_wait += train_step(
                plan, networks, generator_train, objective_train, progress, batches, loader.num_batches, noise
            )
            bar.update(1)
            progress.train_seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            events = step_events(config, progress, total_steps, signals.received, books, world_size)
            stop_reason, step, last = events.stop, progress.step, events.stop is not None

            # Log, picture, checkpoint, evaluate: rank 0 writes, a full disk stops the run in one line.
            evaluate_now = bool(config.eval_every) and step % config.eval_every == 0
            save_now = events.checkpoint or last or evaluate_now
            if save_now and world_size > 1:
                check_ranks_agree((networks.generator, networks.critic, networks.ema), step)
            with stop_when_disk_full(run_dir, config, networks, progress):
                if events.log or last:
                    record = interval.close(progress, samples_per_step)
                    books.last_log = (step, progress.train_seconds)
                    if is_main:
                        history.append(record)
                        append_stats(run_dir / "stats.jsonl", record, writer)
                        bar.set_postfix(c=short(record["loss_critic"]), g=short(record["loss_generator"]),
                                        sps=short(record["samples_per_s"]))  # fmt: skip
                    check_streaks(progress, config.max_nonfinite)
                if events.samples or last:
                    if is_main:
                        save_samples(networks.ema, sample_z, sample_labels, config, run_dir, step)
                        plot_losses(history, run_dir / "loss.png")
                    books.last_samples = (step, progress.train_seconds)
                if save_now:
                    state = save_training_checkpoint(run_dir, config, networks, progress) if is_main else None
                    books.last_checkpoint = (step, progress.train_seconds)
                if is_main and config.eval_every and (evaluate_now or (last and stop_reason != "signal")):
                    result = evaluate(run_dir, device)
                    keep_if_best(run_dir, state, result, books, history, writer)
                    tick = time.perf_counter()  # evaluation is not training time

    # Finish.
    if is_main:
        if writer is not None:
            writer.close()
        if stop_reason == "time":
            print(f"voxgan train: time limit of {config.time_limit:g} min reached at step {progress.step}",
                  file=sys.stderr)  # fmt: skip
    if stop_reason == "signal":
        name = signal.Signals(signals.received).name
        if is_main:
            print(f"voxgan train: stopped by {name} after step {progress.step}, checkpoint saved; continue "
                  f"with: voxgan train --resume {run_dir}", file=sys.stderr)  # fmt: skip
        raise TrainingStopped(signals.received, run_dir if is_main else None)
    return run_dir if is_main else None


def target_steps(config: TrainConfig, num_batches: int) -> int | None:
    """The step a run ends at: ``steps``, else ``epochs`` passes over the data (``num_batches`` critic
    batches each), else :data:`DEFAULT_EPOCHS` passes unless a time limit alone ends it (None)."""
    if config.steps is not None:
        return config.steps
    if config.epochs is None and config.time_limit is not None:
        return None
    return max(1, (config.epochs or DEFAULT_EPOCHS) * num_batches // config.n_critic)


def describe_target(config: TrainConfig, total_steps: int | None) -> str:
    """'1550 steps', 'until 20 min' or '1550 steps or 20 min', for the first line of a run."""
    parts = [f"{total_steps} steps"] if total_steps is not None else []
    if config.time_limit is not None:
        parts.append(f"{config.time_limit:g} min")
    return " or ".join(parts) if total_steps is not None else f"until {config.time_limit:g} min"


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


def train_step(
    plan: StepPlan,
    networks: Networks,
    generator_train: nn.Module,
    objective_train: nn.Module,
    progress: Progress,
    batches: Iterator,
    num_batches: int,
    noise: torch.Generator,
) -> float:
    """One step: ``n_critic`` critic updates on real batches, one generator update, the EMA; step += 1.

    Returns the seconds spent waiting for data.
    """
    config = plan.config
    noise.manual_seed(step_seed(config.seed, plan.rank, progress.step))
    labels, data_wait = None, 0.0
    for k in range(config.n_critic):
        # Critic update: real batch, fake batch, penalty on every penalty_every-th update.
        wait_start = time.perf_counter()
        progress.epoch, progress.batch_index, (voxels, data_labels) = next(batches)
        data_wait += time.perf_counter() - wait_start
        real = voxels.to(plan.device, non_blocking=True).to(torch.float32, memory_format=plan.memory_format)
        labels = data_labels.to(plan.device, non_blocking=True) if plan.num_classes else None
        penalise = (progress.step * config.n_critic + k) % config.penalty_every == 0
        weight = config.penalty_weight * config.penalty_every if penalise else 0.0
        values = critic_update(
            objective_train,
            networks.generator,
            networks.optimiser_c,
            real,
            labels,
            noise,
            weight,
            plan.penalty_samples,
            plan.autocast,
        )  # [loss, wasserstein, penalty, grad norm]
        count_critic_update(progress, values, penalise)

    # Generator update: fake batch with the last real batch's labels, scored by the frozen critic.
    values = generator_update(
        generator_train,
        networks.critic,
        networks.optimiser_g,
        config.batch_size,
        config.latent_dim,
        labels,
        noise,
        plan.autocast,
    )  # [loss, grad norm]
    count_generator_update(progress, values)
    update_ema(networks.ema, networks.generator, config.ema_decay, progress.step)
    progress.step += 1
    return data_wait


# --- setting up -----------------------------------------------------------------------------------------


def tune_backends(cuda: bool) -> None:
    """Keep freed tensor memory in the heap; on CUDA allow TF32 and let cuDNN pick its fastest kernels."""
    keep_freed_memory_in_heap()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def resumed_config(
    config: TrainConfig, checkpoint: dict, changes: Collection[str] | None = None
) -> tuple[TrainConfig, list[str]]:
    """The run's own options with the fields named in ``changes`` taken from ``config``; and the changes
    that differ, as 'option value (was value)'.

    ``changes`` None: the fields where ``config`` differs from ``TrainConfig()``. The target
    (:data:`TARGET_FIELDS`: steps, epochs, time limit) goes whole: giving one of them replaces all three,
    so ``--steps`` on resume extends the run. ConfigError for a change to the networks' shape
    (:data:`NETWORK_FIELDS`): the run's weights would not fit.
    """
    saved = TrainConfig.from_dict(checkpoint["config"])
    if changes is None:
        defaults = TrainConfig()
        changes = [
            f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(defaults, f.name)
        ]
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"class_names"}
    names = set(changes) & fields
    if names & set(TARGET_FIELDS):
        names |= set(TARGET_FIELDS)
    differ = [name for name in sorted(names) if getattr(config, name) != getattr(saved, name)]
    for name in differ:
        if name in NETWORK_FIELDS:
            raise ConfigError(
                option_name(name),
                f"the run's networks were built with {getattr(saved, name)!r}, not "
                f"{getattr(config, name)!r}; leave it out to continue the run, or start a new run",
            )
    described = [
        f"{option_name(name)} {getattr(config, name)} (was {getattr(saved, name)})"
        for name in differ
        if name not in PLACE_FIELDS or name == "device"
    ]
    return dataclasses.replace(saved, **{name: getattr(config, name) for name in names}), described


def open_loader(config: TrainConfig, cuda: bool) -> VoxelLoader:
    """The training split's batches, whole batches only; VoxganError when the data cannot serve the run."""
    loader = make_loader(
        config.data,
        batch_size=config.batch_size,
        split="train",
        shuffle=True,
        seed=config.seed,
        num_workers=config.workers,
        # a synthetic source makes volumes of the asked size; shards have theirs, compared below
        resolution=config.resolution if config.data.startswith("synthetic:") else None,
        epoch_size=config.epoch_size,
        drop_last=True,
        pin_memory=cuda,
        persistent_workers=config.workers > 0,
    )
    if loader.num_batches < 1:
        raise VoxganError(
            f"{config.data}: fewer than {config.batch_size} training volumes per process; "
            "lower --batch-size or add data"
        )
    if config.resolution is not None and loader.resolution != config.resolution:
        raise ConfigError(
            "--resolution",
            f"{config.data} holds {loader.resolution}³ volumes, not {config.resolution}³; leave --resolution "
            f"out (the data says its own) or pass --resolution {loader.resolution}",
        )
    return loader


def with_loader_classes(config: TrainConfig, loader: VoxelLoader, *, resuming: bool) -> TrainConfig:
    """A new run takes the data's class names; a resumed conditional run must find the same ones."""
    class_names = tuple(loader.class_names)
    if not resuming:
        config = dataclasses.replace(config, class_names=class_names)
    elif config.conditional and class_names != tuple(config.class_names):
        raise VoxganError(f"{config.data}: its classes differ from the ones the run was trained on")
    if config.conditional and not config.class_names:
        raise VoxganError(f"{config.data} has no class labels; drop --conditional or use labelled shards")
    return config


def build_training(config: TrainConfig, device: torch.device, memory_format) -> tuple[Networks, Progress]:
    """Fresh networks seeded by ``config.seed`` on ``device``, their Adam optimisers, and step 0."""
    torch.manual_seed(config.seed)
    generator, critic = build_networks(config)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    for network in (generator, critic, ema):
        network.to(device, memory_format=memory_format)
        # Size-1 dims make channels-last strides ambiguous: give each weight the strides its gradient gets
        # (DDP compares them), contiguous except for transposed convolutions.
        for module in network.modules():
            if isinstance(module, nn.ConvTranspose3d):
                continue
            for parameter in module.parameters(recurse=False):
                if parameter.dim() == 5 and 1 in parameter.shape[1:]:
                    parameter.data = torch.empty(parameter.shape, device=device).copy_(parameter.data)
    betas = tuple(config.betas)
    optimiser_g = torch.optim.Adam(generator.parameters(), lr=config.lr_generator, betas=betas, fused=True)
    optimiser_c = torch.optim.Adam(critic.parameters(), lr=config.lr_critic, betas=betas, fused=True)
    progress = Progress(
        step=0,
        epoch=0,
        batch_index=0,
        sums=torch.zeros(len(STAT_NAMES), dtype=torch.float64, device=device),
        streaks=torch.zeros(2, dtype=torch.int64, device=device),
    )
    return Networks(generator, critic, ema, optimiser_g, optimiser_c), progress


def restore(networks: Networks, progress: Progress, checkpoint: dict) -> None:
    """Load a checkpoint's weights, optimiser states, position, log sums and every RNG state, in place."""
    networks.generator.load_state_dict(checkpoint["generator"])
    networks.critic.load_state_dict(checkpoint["critic"])
    networks.ema.load_state_dict(checkpoint["ema"])
    networks.optimiser_g.load_state_dict(checkpoint["optimizer_generator"])
    networks.optimiser_c.load_state_dict(checkpoint["optimizer_critic"])
    progress.step, progress.epoch = checkpoint["step"], checkpoint["epoch"]
    progress.batch_index = checkpoint["batch_index"]
    progress.sums.copy_(checkpoint["stats_sums"])
    progress.streaks.copy_(checkpoint["nonfinite_streaks"])
    progress.train_seconds = float(checkpoint.get("train_seconds", 0.0))
    restore_rng_state(checkpoint["rng"])


def distribute(
    networks: Networks, config: TrainConfig, device: torch.device, world_size: int
) -> tuple[nn.Module, nn.Module]:
    """The generator and the critic's whole objective as the updates call them (compiled, DDP-wrapped).

    DDP wraps the generator and the critic's objective (penalty included), so each update is one forward
    and one backward for DDP; the inner autograd.grad is with respect to inputs only.
    """
    objective = CriticObjective(networks.critic)
    generator_train, objective_train = networks.generator, objective
    if config.compile:
        generator_train = torch.compile(networks.generator)
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        generator_train = DDP(generator_train, device_ids=ids)
        objective_train = DDP(objective, device_ids=ids)
    return generator_train, objective_train


def run_folder_to_continue(resume) -> Path | None:
    """The run folder of ``resume`` (a run folder or ``<run>/checkpoints/<file>.pt``), or None."""
    run_dir = Path(resume) if resume is not None else None
    if run_dir is not None and run_dir.is_file():
        run_dir = run_dir.parent.parent
    return run_dir


def open_run_folder(config: TrainConfig, run_dir: Path | None, step: int) -> tuple[Path, list[dict], object]:
    """Rank 0: create the run folder (or continue ``run_dir``), write config.json, keep stats up to ``step``.

    Returns the folder, the stats.jsonl records kept and a TensorBoard writer (None without tensorboard).
    """
    if run_dir is None:
        run_dir = new_run_dir(Path(config.out), run_description(config))
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config.to_dict() | {"voxgan_version": __version__})
    history = read_stats(run_dir / "stats.jsonl", step)
    rewrite_stats(run_dir / "stats.jsonl", history)
    return run_dir, history, tensorboard_writer(run_dir)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of a ``--device`` value, for every command: "auto" -> CUDA when present, else CPU;
    "cuda" -> this process's GPU (``local_rank`` under torchrun); "cuda:N" -> GPU N. ConfigError for another
    value, VoxganError for a GPU that is not there."""
    if not is_device_name(name):
        raise ConfigError("--device", f"device must be auto, cpu, cuda or cuda:N, got {name}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    index = int(name.partition(":")[2] or local_rank)
    if index >= torch.cuda.device_count():
        seen = torch.cuda.device_count()
        raise VoxganError(
            f"--device {name}: {seen} CUDA device(s) visible" + ("" if seen else "; use --device cpu or auto")
        )
    return torch.device("cuda", index)


def keep_freed_memory_in_heap() -> bool:
    """Make glibc's malloc reuse freed tensor memory instead of returning it to the kernel.

    By default every block above 32 MB (the critic's 16³ activations for real and fake together) is a
    fresh ``mmap`` and freed blocks at the top of the heap are trimmed, so each update page-faults and
    zeroes the same memory again: about 385,000 page faults, a fifth of the CPU time, per iteration at
    the default settings. With ``mmap`` off and trimming out of reach the process keeps its peak
    footprint (which it reaches at every update anyway) and the faults disappear. The maths are untouched.
    A no-op, returning False, where the C library is not glibc.
    """
    import ctypes
    import platform

    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


# --- a step's seed, data and sums -----------------------------------------------------------------------


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of every random draw of one step on one rank."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)


def batch_stream(loader, epoch: int, batch_index: int):
    """Endless ``(epoch, batches consumed in that epoch, batch)`` from ``(epoch, batch_index)`` on."""
    while True:
        loader.set_position(epoch, batch_index)
        for batch in loader:
            batch_index += 1
            yield epoch, batch_index, batch
        epoch, batch_index = epoch + 1, 0


def stat_slots(names: tuple[str, ...]) -> slice:
    """The slots of ``names`` in the sums, which lie side by side in :data:`STAT_NAMES`."""
    start = STAT[names[0]]
    assert STAT_NAMES[start : start + len(names)] == names, names
    return slice(start, start + len(names))


def count_critic_update(progress: Progress, values: torch.Tensor, penalise: bool) -> None:
    """Add a critic update's (4,) [loss, wasserstein, penalty, grad norm] to the sums unless non-finite."""
    ok = torch.isfinite(values[3])
    progress.streaks[0] = torch.where(ok, 0, progress.streaks[0] + 1)
    progress.sums[stat_slots(CRITIC_VALUES)] += torch.where(ok, values.double(), 0)
    progress.sums[STAT["critic_updates"]] += ok.double()
    progress.sums[STAT["penalty_updates"]] += (ok & penalise).double()
    progress.sums[STAT["skipped_critic"]] += (~ok).double()


def count_generator_update(progress: Progress, values: torch.Tensor) -> None:
    """Add a generator update's (2,) [loss, grad norm] to the sums unless non-finite."""
    ok = torch.isfinite(values[1])
    progress.streaks[1] = torch.where(ok, 0, progress.streaks[1] + 1)
    progress.sums[stat_slots(GENERATOR_VALUES)] += torch.where(ok, values.double(), 0)
    progress.sums[STAT["generator_updates"]] += ok.double()
    progress.sums[STAT["skipped_generator"]] += (~ok).double()


# --- logging, pictures, checkpoints ---------------------------------------------------------------------


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


def check_streaks(progress: Progress, max_nonfinite: int) -> None:
    """VoxganError when ``max_nonfinite`` updates in a row were skipped as non-finite: training diverged."""
    worst = int(progress.streaks.max())
    if worst >= max_nonfinite:
        raise VoxganError(
            f"training diverged: {worst} optimiser updates in a row had a non-finite loss "
            f"or gradient (step {progress.step}); those updates were skipped and nothing non-finite was "
            "saved; lower --lr or check the data, then resume from the latest checkpoint"
        )


def fixed_latents(config: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The latents (SAMPLE_GRID, Z) of every samples/ picture, drawn from the seed, and their labels."""
    sample_generator = torch.Generator().manual_seed(config.seed)
    sample_z = torch.randn(SAMPLE_GRID, config.latent_dim, generator=sample_generator).to(device)
    num_classes = len(config.class_names) if config.conditional else 0
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


def checkpoint_state(config: TrainConfig, networks: Networks, progress: Progress) -> dict:
    """Everything a resumed run needs, as plain tensors and numbers (see :mod:`voxgan.model.runs`)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "voxgan_version": __version__,
        "config": config.to_dict(),
        "step": progress.step,
        "epoch": progress.epoch,
        "batch_index": progress.batch_index,
        "generator": networks.generator.state_dict(),
        "critic": networks.critic.state_dict(),
        "ema": networks.ema.state_dict(),
        "optimizer_generator": networks.optimiser_g.state_dict(),
        "optimizer_critic": networks.optimiser_c.state_dict(),
        "stats_sums": progress.sums.cpu(),
        "nonfinite_streaks": progress.streaks.cpu(),
        "train_seconds": progress.train_seconds,
        "rng": rng_state(),
    }


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


def keep_if_best(
    run_dir: Path, state: dict, result: dict | None, books: Bookkeeping, history: list[dict], writer
) -> None:
    """``best.pt`` := the checkpoint just evaluated when its :data:`BEST_METRIC` is the lowest so far;
    the new best is logged to stats.jsonl as ``{"kind": "best", "step", "metric", "value"}``."""
    value = (result or {}).get(BEST_METRIC)
    if value is None or (books.best is not None and value >= books.best):
        return
    save_best(state, run_dir, BEST_METRIC, value)
    books.best = value
    record = {"kind": "best", "step": state["step"], "metric": BEST_METRIC, "value": value}
    history.append(record)
    append_stats(run_dir / "stats.jsonl", record, writer)


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
