"""Training: the WGAN-GP loop, on one process or under torchrun.

:func:`train` sets up the processes; :func:`run_training` is the run, read top to bottom under
``# Resume.``, ``# Load data.``, ``# Construct networks.``, ``# Open the run folder.``, ``# Train.`` and
``# Finish.`` headings, each step a named function below it; :func:`training_loop` is the loop itself. A
*step* is one generator update with its ``n_critic`` critic updates (:func:`train_step`); ``--steps``,
``step`` in the logs and the checkpoint interval all count steps. Every random draw of a step (latents,
mixing weights) comes from a generator seeded by ``(seed, rank, step)`` and every batch is a function of
``(seed, epoch, batch index)``, so a run resumed from a checkpoint continues exactly as the uninterrupted
run would have.

What a run holds in memory and how it goes to and from a checkpoint is :mod:`voxgan.model.state`; what it
writes and when (log lines, pictures, checkpoints, ``best.pt``, a full disk) is
:mod:`voxgan.model.bookkeeping`; what a run folder holds and how checkpoints are read is
:mod:`voxgan.model.runs`; the maths of one update is :mod:`voxgan.model.updates`. Only rank 0 writes.

A run stops at its step target, at its time limit (minutes of training, evaluation not counted, summed
over resumes) or at SIGTERM / SIGINT: the step in progress finishes, a checkpoint and the sample grid are
written, and :class:`TrainingStopped` tells the caller which signal came (the command line exits 0 on
SIGTERM, as cluster schedulers expect of a preempted job, and 130 on SIGINT).

Periodic evaluation (``--eval-every``) is a function handed to :func:`train` (the command line passes
:func:`voxgan.results.evaluate.evaluate_during_training`), so this room never imports the results room.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voxgan.data import VoxelLoader, make_loader
from voxgan.errors import ConfigError, VoxganError
from voxgan.model.bookkeeping import (
    Bookkeeping,
    Evaluate,
    LogInterval,
    RunFolder,
    fixed_latents,
    open_run_folder,
    run_folder_to_continue,
    step_events,
    write_after_step,
)
from voxgan.model.config import (
    DEFAULT_EPOCHS,
    NETWORK_FIELDS,
    PLACE_FIELDS,
    TARGET_FIELDS,
    TrainConfig,
    check_config,
    is_device_name,
    option_name,
    with_data_defaults,
)
from voxgan.model.loss import CriticObjective
from voxgan.model.runs import TENSORBOARD_MISSING, best_so_far, list_runs, load_checkpoint
from voxgan.model.state import (
    Networks,
    Progress,
    StepPlan,
    build_training,
    count_critic_update,
    count_generator_update,
    restore,
)
from voxgan.model.updates import critic_update, generator_update, update_ema


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


# --- the run --------------------------------------------------------------------------------------------


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
    finished = False
    try:
        run_dir = run_training(config, resume, device, rank, world_size, evaluate, changes)
        finished = True
        return run_dir
    except TrainingStopped:
        finished = True  # every rank stops at the same step after a signal
        raise
    finally:
        if started_here:
            leave_process_group(finished)


def leave_process_group(finished: bool) -> None:
    """Tear down the process group this process started. After a run that finished, every rank first
    frees its DDP wrappers (they hold the group) and waits for the others, so that no rank closes its
    connections while another still uses them: a rank leaving early could abort in the group's threads."""
    import gc

    import torch.distributed as dist

    if finished:
        gc.collect()
        dist.barrier()
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
    """The training run of one process, step by step; see :func:`train`."""
    tune_backends(device.type == "cuda")

    # Resume: the run's own options, except the ones changed.
    checkpoint = load_checkpoint(resume) if resume is not None else None
    config, changed = resumed_config(config, checkpoint, changes) if checkpoint is not None else (config, [])
    check_config(config)
    if config.eval_every and evaluate is None:
        raise VoxganError(
            "eval_every needs an evaluate function: pass evaluate=voxgan.results.evaluate."
            "evaluate_during_training (as voxgan train --eval-every does)"
        )

    # Load data.
    loader, config = load_data(config, device, resuming=checkpoint is not None)
    total_steps = target_steps(config, loader.num_batches)  # None: until the time limit

    # Construct networks.
    plan = StepPlan.make(config, rank, world_size, device)
    networks, progress = build_training(config, device, plan.memory_format)
    if checkpoint is not None:
        restore(networks, progress, checkpoint)

    # Open the run folder (rank 0 writes).
    folder = open_run(plan, resume, progress, total_steps, changed)
    books = Bookkeeping.start(config, progress)
    if plan.rank == 0 and config.eval_every:
        books.best = best_so_far(folder.run_dir, progress.step)

    # Train.
    stop_reason, signal_received = training_loop(
        plan, networks, progress, loader, total_steps, books, folder, evaluate
    )

    # Finish.
    return finish(plan, folder, progress, stop_reason, signal_received)


def load_data(
    config: TrainConfig, device: torch.device, *, resuming: bool
) -> tuple[VoxelLoader, TrainConfig]:
    """The training batches, and ``config`` completed by the data for a new run (its classes, resolution,
    widths and whether to condition: :func:`with_data_defaults`), checked again (the attention sizes, now
    that the grid is known)."""
    loader = open_loader(config, device.type == "cuda")
    check_loader_classes(config, loader, resuming=resuming)
    if not resuming:  # a resumed run has every option of its own
        config = with_data_defaults(config, loader.resolution, tuple(loader.class_names))
    check_config(config)
    return loader, config


def open_run(
    plan: StepPlan, resume, progress: Progress, total_steps: int | None, changed: list[str]
) -> RunFolder:
    """Rank 0: the run folder, opened (new, or ``resume``'s), and the run's first lines on stderr; other
    ranks: ``resume``'s folder, unopened, with the picture latents alone."""
    config, run_dir = plan.config, run_folder_to_continue(resume)
    if plan.rank != 0:
        return RunFolder(run_dir, [], None, *fixed_latents(config, plan.device))
    folder = open_run_folder(config, run_dir, progress.step, plan.device)
    state = f"resuming at step {progress.step}" if progress.step else "new run"
    classes = f"conditional on {config.num_classes} classes, " if config.num_classes else ""
    print(f"voxgan train: {folder.run_dir} ({state}, {describe_target(config, total_steps)}, {classes}"
          f"{plan.device}, {plan.world_size} process(es))", file=sys.stderr)  # fmt: skip
    if changed:
        print(f"voxgan train: changed on resume: {', '.join(changed)}", file=sys.stderr)
    if folder.writer is None:
        print(f"voxgan train: {TENSORBOARD_MISSING}", file=sys.stderr)
    return folder


def training_loop(
    plan: StepPlan,
    networks: Networks,
    progress: Progress,
    loader: VoxelLoader,
    total_steps: int | None,
    books: Bookkeeping,
    folder: RunFolder,
    evaluate: Evaluate | None,
) -> tuple[str, int]:
    """Steps until the run stops, writing what is due after each; returns why it stopped ('steps',
    'time' or 'signal') and the signal received (0 for none)."""
    from tqdm import tqdm

    generator_train, objective_train = distribute(networks, plan.config, plan.device, plan.world_size)
    batches = batch_stream(loader, progress.epoch, progress.batch_index)
    noise = torch.Generator(device=plan.device)
    bar = tqdm(total=total_steps, initial=progress.step, disable=plan.rank != 0, file=sys.stderr, unit="step",
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
            events = step_events(plan.config, progress, total_steps, signals.received, books, plan.world_size)
            stop_reason = events.stop
            if write_after_step(plan, events, networks, progress, books, interval, folder, evaluate, bar):
                tick = time.perf_counter()  # evaluation is not training time
    return stop_reason, signals.received


def finish(
    plan: StepPlan, folder: RunFolder, progress: Progress, stop_reason: str, signal_received: int
) -> Path | None:
    """Close the log, say why the run stopped; the run folder (None on other ranks), or TrainingStopped
    after a signal."""
    is_main, config = plan.rank == 0, plan.config
    if is_main:
        if folder.writer is not None:
            folder.writer.close()
        if stop_reason == "time":
            print(f"voxgan train: time limit of {config.time_limit:g} min reached at step {progress.step}",
                  file=sys.stderr)  # fmt: skip
    if stop_reason == "signal":
        name = signal.Signals(signal_received).name
        if is_main:
            print(f"voxgan train: stopped by {name} after step {progress.step}, checkpoint saved; continue "
                  f"with: voxgan train --resume {folder.run_dir}", file=sys.stderr)  # fmt: skip
        raise TrainingStopped(signal_received, folder.run_dir if is_main else None)
    return folder.run_dir if is_main else None


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
            config.augment,
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
        config.augment,
        config.speck_penalty,
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


def check_loader_classes(config: TrainConfig, loader: VoxelLoader, *, resuming: bool) -> None:
    """VoxganError when the data's classes cannot serve the run: ``--conditional`` on data without
    labels, or a resumed conditional run on data whose classes differ."""
    class_names = tuple(loader.class_names)
    if resuming and config.conditional and class_names != tuple(config.class_names):
        raise VoxganError(f"{config.data}: its classes differ from the ones the run was trained on")
    if config.conditional and not class_names:
        raise VoxganError(f"{config.data} has no class labels; drop --conditional or use labelled shards")


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
