"""Training: the WGAN-GP loop, run folders, checkpoints and resume, on one process or under torchrun.

:func:`train` is one function read top to bottom. A *step* is one generator update with its ``n_critic``
critic updates; ``--steps``, ``step`` in the logs and the checkpoint interval all count steps. Every random
draw of a step (latents, mixing weights) comes from a generator seeded by ``(seed, rank, step)`` and every
batch is a function of ``(seed, epoch, batch index)``, so a run resumed from a checkpoint continues exactly
as the uninterrupted run would have.

A run folder ``runs/NNNNN-<description>/`` holds ``config.json``, ``stats.jsonl``, ``loss.png``,
``samples/epoch-NNNN.png`` and ``checkpoints/{step-NNNNNNN,latest}.pt`` (and TensorBoard events when
tensorboard is installed). Only rank 0 writes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voxgan import __version__
from voxgan.atomic import atomic_open
from voxgan.errors import VoxganError
from voxgan.loss import CriticObjective, generator_loss
from voxgan.networks import Critic, Generator
from voxgan.shards import write_json_atomic

CHECKPOINT_FORMAT = "voxgan-checkpoint"
CHECKPOINT_VERSION = 1
RUN_PATTERN = re.compile(r"^(?P<index>\d{5})-")
SAMPLE_GRID = 16  # volumes in samples/epoch-NNNN.png, from latents fixed by the seed
# Options that may change when a run is resumed; every other option comes from the checkpoint.
RUNTIME_FIELDS = (
    "steps",
    "epochs",
    "device",
    "workers",
    "log_every",
    "checkpoint_every",
    "eval_every",
    "compile",
)


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.json`` and in every checkpoint.

    Defaults: the original design (batch 32, 50 epochs of 1,000 synthetic volumes, 100-d noise, 16³) and the
    WGAN-GP paper (λ = 10, 5 critic updates per generator update, Adam lr 1e-4, betas (0, 0.9)).
    ``penalty_every = k`` applies the gradient penalty on every k-th critic update only, weighted λ·k (lazy
    regularisation, as StyleGAN2 does for R1); ``penalty_fraction`` computes it on that share of the batch.
    """

    data: str = "synthetic:shapes"
    out: str = "runs"
    epochs: int = 50
    steps: int | None = None
    batch_size: int = 32
    resolution: int = 16
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    conditional: bool = False
    log_every: int = 10
    checkpoint_every: int = 100
    eval_every: int = 0
    compile: bool = False
    epoch_size: int = 1000  # volumes per epoch of a synthetic source
    latent_dim: int = 100
    generator_width: int = 32
    critic_width: int = 32
    generator_attention: tuple[int, ...] = (8,)
    critic_attention: tuple[int, ...] = (4,)
    key_divisor: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    n_critic: int = 5
    penalty_weight: float = 10.0
    penalty_every: int = 4
    penalty_fraction: float = 1.0
    channels_last: bool = True  # channels-last 3D memory format (faster convolutions on CPU and CUDA)
    ema_decay: float = 0.999
    max_nonfinite: int = 10  # optimiser updates in a row with a non-finite loss or gradient before stopping
    class_names: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
        return cls(**kept)


# --- networks -----------------------------------------------------------------------------------------


def build_networks(config: TrainConfig) -> tuple[Generator, Critic]:
    """The generator and critic a config describes (both on the CPU, freshly initialised)."""
    num_classes = len(config.class_names) if config.conditional else 0
    generator = Generator(
        config.resolution,
        config.latent_dim,
        config.generator_width,
        tuple(config.generator_attention),
        num_classes,
        config.key_divisor,
    )
    critic = Critic(
        config.resolution,
        config.critic_width,
        tuple(config.critic_attention),
        num_classes,
        config.key_divisor,
    )
    return generator, critic


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """ "auto" -> CUDA when present, else CPU; "cuda" without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise VoxganError("--device cuda: no CUDA device is visible; use --device cpu or auto")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise VoxganError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device("cpu")


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


# --- checkpoints ---------------------------------------------------------------------------------------


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


def all_finite(module: nn.Module) -> bool:
    """True when every parameter and buffer of ``module`` is finite (one host sync)."""
    tensors = [t for t in module.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def save_checkpoint(state: dict, run_dir: Path, step: int) -> Path:
    """Write ``checkpoints/step-NNNNNNN.pt`` atomically and point ``checkpoints/latest.pt`` at it."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    with atomic_open(path) as handle:
        torch.save(state, handle)
    latest_tmp = folder / f".latest.pt.{os.getpid()}.tmp"
    latest_tmp.unlink(missing_ok=True)
    try:
        os.link(path, latest_tmp)
    except OSError:  # a file system without hard links
        import shutil

        shutil.copyfile(path, latest_tmp)
    os.replace(latest_tmp, folder / "latest.pt")
    return path


def checkpoint_path(path: Path) -> Path:
    """A checkpoint file itself, or ``checkpoints/latest.pt`` of a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "latest.pt"
        if not path.is_file():
            raise VoxganError(
                f"{path.parent.parent} has no checkpoints/latest.pt; is it a voxgan run folder?"
            )
    elif not path.is_file():
        raise VoxganError(f"{path}: no such checkpoint file or run folder")
    return path


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)``: plain tensors and numbers only.

    A truncated or corrupt file, one carrying a pickled object (never executed), or a dict that is not a
    voxgan checkpoint raises VoxganError. ``path``: a checkpoint file or a run folder (its latest.pt).
    """
    path = checkpoint_path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise VoxganError(
            f"{path}: refused: not a readable plain-data voxgan checkpoint ({type(error).__name__}: "
            f"{first_line}); it is truncated, corrupt or carries pickled objects; use another checkpoint "
            f"from {path.parent}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise VoxganError(f"{path}: refused: not a voxgan checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    missing = [key for key in ("config", "step", "generator", "critic", "ema") if key not in state]
    if missing:
        raise VoxganError(f"{path}: refused: an incomplete voxgan checkpoint (no {', '.join(missing)})")
    if state.get("format_version", 0) > CHECKPOINT_VERSION:
        raise VoxganError(f"{path}: checkpoint format {state['format_version']} is newer than this voxgan's")
    return state


def load_generator(path: Path, *, device: str | torch.device = "cpu") -> tuple[Generator, dict]:
    """The EMA generator of a run folder (its latest checkpoint) or of a checkpoint file, in eval mode.

    Returns ``(G, config)``: ``G(z, labels)`` maps z (B, G.latent_dim) and labels (B,) int64 or None to
    (B, 1, R, R, R) occupancy in [0, 1]; ``G.num_classes`` is 0 when unconditional; ``config`` is the run's
    config dict (with ``class_names``).
    """
    state = load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    generator, _ = build_networks(config)
    generator.load_state_dict(state["ema"])
    generator.to(device).eval().requires_grad_(False)
    return generator, config.to_dict()


# --- logs and pictures ------------------------------------------------------------------------------------


def plot_losses(history: list[dict], path: Path) -> None:
    """Write the loss curves of ``history`` (stats.jsonl records) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

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
    return float("nan") if value is None else value


def read_stats(path: Path, up_to_step: int) -> list[dict]:
    """Records of ``stats.jsonl`` with ``step <= up_to_step`` (the ones a resumed run keeps)."""
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["step"] <= up_to_step]


def rewrite_stats(path: Path, records: list[dict]) -> None:
    """Replace ``stats.jsonl`` with ``records``, atomically (a resumed run drops what came after its step)."""
    with atomic_open(path, "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)


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


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of every random draw of one step on one rank."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)


def total_norm(parameters) -> torch.Tensor:
    """L2 norm of all gradients, a 0-d tensor (NaN/Inf when any gradient is non-finite); no host sync."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def optimiser_update(optimiser: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    """Backward, then an Adam step that is skipped on the device when the gradient is not finite.

    Returns the gradient norm (0-d tensor). The fused Adam kernel reads ``found_inf`` and leaves weights,
    moments and step count untouched when it is 1, so a NaN costs no host synchronisation.
    """
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    norm = total_norm([p for group in optimiser.param_groups for p in group["params"]])
    optimiser.found_inf = (~torch.isfinite(norm)).float()
    optimiser.step()
    return norm


def critic_update(
    objective: nn.Module,
    generator: nn.Module,
    optimiser: torch.optim.Optimizer,
    real: torch.Tensor,
    labels: torch.Tensor | None,
    noise: torch.Generator,
    penalty_weight: float,
    penalty_samples: int,
    autocast,
) -> torch.Tensor:
    """One critic update on a real batch (B, 1, R, R, R) and a fresh fake one.

    Returns a (4,) tensor, without a host sync: loss, Wasserstein estimate, penalty (0 when not applied)
    and gradient norm.
    """
    z = torch.randn(len(real), generator.latent_dim, device=real.device, generator=noise)
    alpha = torch.rand(len(real), device=real.device, generator=noise)
    with torch.no_grad(), autocast:
        fake = generator(z, labels).float()  # (B, 1, R, R, R)
    with autocast:
        loss, wasserstein, penalty = objective(real, fake, labels, alpha, penalty_weight, penalty_samples)
    norm = optimiser_update(optimiser, loss)
    return torch.stack([loss.detach(), wasserstein, penalty, norm])


def generator_update(
    generator: nn.Module,
    critic: nn.Module,
    optimiser: torch.optim.Optimizer,
    batch_size: int,
    latent_dim: int,
    labels: torch.Tensor | None,
    noise: torch.Generator,
    autocast,
) -> torch.Tensor:
    """One generator update against the frozen critic; returns [loss, grad norm] as a (2,) tensor."""
    device = next(critic.parameters()).device
    critic.requires_grad_(False)
    z = torch.randn(batch_size, latent_dim, device=device, generator=noise)
    with autocast:
        loss = generator_loss(critic(generator(z, labels), labels).float())
    norm = optimiser_update(optimiser, loss)
    critic.requires_grad_(True)
    return torch.stack([loss.detach(), norm])


# --- the training loop -------------------------------------------------------------------------------------


def train(config: TrainConfig, resume: Path | None = None) -> Path | None:
    """Train a self-attention WGAN-GP; return the run folder (None on ranks other than 0).

    ``resume``: a run folder or checkpoint file to continue from (the options in :data:`RUNTIME_FIELDS`
    come from ``config``, every other from the checkpoint). Under torchrun (``WORLD_SIZE`` > 1) it trains
    with DistributedDataParallel, and a restart by torchrun resumes from the newest run's latest checkpoint.
    """
    from voxgan.data import make_loader

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
        return _train(config, resume, device, rank, world_size, make_loader)
    finally:
        if started_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(
    config: TrainConfig, resume, device: torch.device, rank: int, world_size: int, make_loader
) -> Path:
    is_main, cuda = rank == 0, device.type == "cuda"
    keep_freed_memory_in_heap()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    # Resume: the checkpoint's options win, except the runtime ones.
    checkpoint = None
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        saved = TrainConfig.from_dict(checkpoint["config"])
        config = dataclasses.replace(saved, **{k: getattr(config, k) for k in RUNTIME_FIELDS})
    check_config(config)
    memory_format = torch.channels_last_3d if config.channels_last else torch.contiguous_format

    # Load data.
    loader = make_loader(
        config.data,
        batch_size=config.batch_size,
        split="train",
        shuffle=True,
        seed=config.seed,
        num_workers=config.workers,
        resolution=config.resolution,
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
    if loader.resolution != config.resolution:
        raise VoxganError(
            f"{config.data} holds {loader.resolution}³ volumes; pass --resolution {loader.resolution}"
        )
    class_names = tuple(loader.class_names)
    if checkpoint is None:
        config = dataclasses.replace(config, class_names=class_names)
    elif config.conditional and class_names != tuple(config.class_names):
        raise VoxganError(f"{config.data}: its classes differ from the ones the run was trained on")
    if config.conditional and not config.class_names:
        raise VoxganError(f"{config.data} has no class labels; drop --conditional or use labelled shards")
    total_steps = config.steps or max(1, config.epochs * loader.num_batches // config.n_critic)

    # Construct networks.
    torch.manual_seed(config.seed)
    generator, critic = build_networks(config)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    for module in (generator, critic, ema):
        module.to(device, memory_format=memory_format)
        for parameter in module.parameters():  # size-1 dims: ambiguous channels-last strides
            if parameter.dim() == 5 and 1 in parameter.shape[1:]:
                parameter.data = torch.empty(parameter.shape, device=device).copy_(parameter.data)
    fused = {"fused": True}
    optimiser_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=tuple(config.betas), **fused)
    optimiser_c = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=tuple(config.betas), **fused)
    step, epoch, batch_index = 0, 0, 0
    names = ("loss_critic", "wasserstein", "gradient_penalty", "grad_norm_critic", "loss_generator",
             "grad_norm_generator", "critic_updates", "penalty_updates", "generator_updates",
             "skipped_critic", "skipped_generator")  # fmt: skip
    sums = torch.zeros(len(names), dtype=torch.float64, device=device)  # summed since the last log line
    # Non-finite critic / generator updates in a row, counted on the device and checked when logging.
    streaks = torch.zeros(2, dtype=torch.int64, device=device)

    # Resume.
    if checkpoint is not None:
        generator.load_state_dict(checkpoint["generator"])
        critic.load_state_dict(checkpoint["critic"])
        ema.load_state_dict(checkpoint["ema"])
        optimiser_g.load_state_dict(checkpoint["optimizer_generator"])
        optimiser_c.load_state_dict(checkpoint["optimizer_critic"])
        step, epoch, batch_index = checkpoint["step"], checkpoint["epoch"], checkpoint["batch_index"]
        sums.copy_(checkpoint["stats_sums"])
        streaks.copy_(checkpoint["nonfinite_streaks"])
        restore_rng_state(checkpoint["rng"])

    # Distribute: DDP wraps the generator and the critic's whole objective (penalty included), so each
    # update is one forward and one backward for DDP; the inner autograd.grad is with respect to inputs only.
    objective = CriticObjective(critic)
    generator_train, objective_train = generator, objective
    if config.compile:
        generator_train = torch.compile(generator)
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if cuda else None
        generator_train = DDP(generator_train, device_ids=ids)
        objective_train = DDP(objective, device_ids=ids)

    # Run folder and logs (rank 0 only).
    run_dir = Path(resume) if resume is not None else None
    if run_dir is not None and run_dir.is_file():
        run_dir = run_dir.parent.parent
    writer, history = None, []
    if is_main:
        if run_dir is None:
            run_dir = new_run_dir(Path(config.out), run_description(config))
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "config.json", config.to_dict() | {"voxgan_version": __version__})
        history = read_stats(run_dir / "stats.jsonl", step)
        rewrite_stats(run_dir / "stats.jsonl", history)
        writer = tensorboard_writer(run_dir)
        print(f"voxgan train: {run_dir} ({'resuming at step ' + str(step) if step else 'new run'}, "
              f"{total_steps} steps, {device}, {world_size} process(es))", file=sys.stderr)  # fmt: skip
    sample_generator = torch.Generator().manual_seed(config.seed)
    sample_z = torch.randn(SAMPLE_GRID, config.latent_dim, generator=sample_generator).to(device)
    num_classes = len(config.class_names) if config.conditional else 0
    sample_labels = torch.arange(SAMPLE_GRID, device=device) % num_classes if num_classes else None

    def save_samples(epoch_number: int) -> None:
        with torch.no_grad():
            volumes = ema(sample_z, sample_labels).float().cpu().numpy()[:, 0]  # (16, R, R, R)
        titles = [config.class_names[i] for i in sample_labels.tolist()] if num_classes else None
        from voxgan.render import render_volumes

        render_volumes(volumes, run_dir / "samples" / f"epoch-{epoch_number:04d}.png", ncols=4, titles=titles)

    def checkpoint_now() -> None:
        for name, module in (("generator", generator), ("critic", critic), ("EMA generator", ema)):
            if not all_finite(module):
                raise VoxganError(
                    f"the {name} weights are not finite at step {step}; nothing saved; resume from "
                    f"{run_dir / 'checkpoints' / 'latest.pt'} with a lower --lr"
                )
        state = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "voxgan_version": __version__,
            "config": config.to_dict(),
            "step": step,
            "epoch": epoch,
            "batch_index": batch_index,
            "generator": generator.state_dict(),
            "critic": critic.state_dict(),
            "ema": ema.state_dict(),
            "optimizer_generator": optimiser_g.state_dict(),
            "optimizer_critic": optimiser_c.state_dict(),
            "stats_sums": sums.cpu(),
            "nonfinite_streaks": streaks.cpu(),
            "rng": rng_state(),
        }
        save_checkpoint(state, run_dir, step)
        if history:
            plot_losses(history, run_dir / "loss.png")

    # Train.
    from tqdm import tqdm

    batches = batch_stream(loader, epoch, batch_index)
    noise = torch.Generator(device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)
    penalty_samples = max(1, round(config.batch_size * config.penalty_fraction))
    samples_per_step = config.batch_size * config.n_critic * world_size
    progress = tqdm(
        total=total_steps, initial=step, disable=not is_main, file=sys.stderr, unit="step", dynamic_ncols=True
    )
    last_log_time, data_wait, logged_step = time.perf_counter(), 0.0, step
    with progress as bar:  # closed before an error message is printed
        while step < total_steps:
            noise.manual_seed(step_seed(config.seed, rank, step))
            finished_epoch = None
            labels = None
            for k in range(config.n_critic):
                # Critic update: real batch, fake batch, penalty on every penalty_every-th update.
                wait_start = time.perf_counter()
                epoch, batch_index, (voxels, data_labels) = next(batches)
                data_wait += time.perf_counter() - wait_start
                if batch_index == loader.num_batches:
                    finished_epoch = epoch
                real = voxels.to(device, non_blocking=True).to(torch.float32, memory_format=memory_format)
                labels = data_labels.to(device, non_blocking=True) if num_classes else None
                penalise = (step * config.n_critic + k) % config.penalty_every == 0
                weight = config.penalty_weight * config.penalty_every if penalise else 0.0
                values = critic_update(
                    objective_train,
                    generator,
                    optimiser_c,
                    real,
                    labels,
                    noise,
                    weight,
                    penalty_samples,
                    autocast,
                )  # [loss, wasserstein, penalty, grad norm]
                norm_c = values[3]
                ok = torch.isfinite(norm_c)
                streaks[0] = torch.where(ok, 0, streaks[0] + 1)
                sums[0:4] += torch.where(ok, values.double(), 0)
                sums[6] += ok.double()
                sums[7] += (ok & penalise).double()
                sums[9] += (~ok).double()

            # Generator update: fake batch with the last real batch's labels, scored by the frozen critic.
            values = generator_update(
                generator_train,
                critic,
                optimiser_g,
                config.batch_size,
                config.latent_dim,
                labels,
                noise,
                autocast,
            )  # [loss, grad norm]
            ok = torch.isfinite(values[1])
            streaks[1] = torch.where(ok, 0, streaks[1] + 1)
            sums[4:6] += torch.where(ok, values.double(), 0)
            sums[8] += ok.double()
            sums[10] += (~ok).double()
            update_ema(ema, generator, config.ema_decay, step)
            step += 1
            bar.update(1)

            # Log, picture, checkpoint.
            last = step == total_steps
            if step % config.log_every == 0 or last:
                values = dict(zip(names, sums.tolist(), strict=True))  # the one host sync per log interval
                elapsed, steps_done = time.perf_counter() - last_log_time, max(1, step - logged_step)
                record = log_record(values, step, epoch, steps_done, elapsed, data_wait, samples_per_step)
                sums.zero_()
                last_log_time, data_wait, logged_step = time.perf_counter(), 0.0, step
                if is_main:
                    history.append(record)
                    append_stats(run_dir / "stats.jsonl", record, writer)
                    bar.set_postfix(c=short(record["loss_critic"]), g=short(record["loss_generator"]),
                                    sps=short(record["samples_per_s"]))  # fmt: skip
                worst = int(streaks.max())
                if worst >= config.max_nonfinite:
                    raise VoxganError(
                        f"training diverged: {worst} optimiser updates in a row had a non-finite loss "
                        f"or gradient (step {step}); those updates were skipped and nothing non-finite was "
                        "saved; lower --lr or check the data, then resume from the latest checkpoint"
                    )
            if is_main and finished_epoch is not None:
                save_samples(finished_epoch + 1)
                if history:
                    plot_losses(history, run_dir / "loss.png")
            evaluate = bool(config.eval_every) and step % config.eval_every == 0
            if step % config.checkpoint_every == 0 or last or evaluate:
                if world_size > 1:
                    check_ranks_agree((generator, critic, ema), step)
                if is_main:
                    checkpoint_now()
            if is_main and evaluate:
                run_evaluation(run_dir, device)

    # Finish: a picture of the epoch in progress, when the run ended inside one.
    if is_main:
        if batch_index not in (0, loader.num_batches) or not any((run_dir / "samples").iterdir()):
            save_samples(epoch + 1)
        if writer is not None:
            writer.close()
    return run_dir if is_main else None


def check_config(config: TrainConfig) -> None:
    """VoxganError naming the first option out of range."""
    checks = [
        (config.resolution in (16, 32, 64), f"resolution must be 16, 32 or 64, got {config.resolution}"),
        (config.batch_size >= 1, f"batch size must be at least 1, got {config.batch_size}"),
        (config.epochs >= 1, f"epochs must be at least 1, got {config.epochs}"),
        (config.steps is None or config.steps >= 1, f"steps must be at least 1, got {config.steps}"),
        (config.n_critic >= 1 and config.penalty_every >= 1, "n_critic and penalty_every must be at least 1"),
        (config.log_every >= 1 and config.checkpoint_every >= 1, "log and checkpoint intervals must be >= 1"),
        (
            0 < config.penalty_fraction <= 1,
            f"penalty_fraction must be in (0, 1], got {config.penalty_fraction}",
        ),
        (config.lr > 0, f"learning rate must be positive, got {config.lr}"),
    ]
    for ok, message in checks:
        if not ok:
            raise VoxganError(message)


def check_ranks_agree(modules: tuple[nn.Module, ...], step: int) -> None:
    """Under DDP: VoxganError unless every rank holds bit-identical weights (compares per-tensor sums)."""
    import torch.distributed as dist

    fingerprint = torch.stack([p.detach().double().sum() for m in modules for p in m.parameters()])
    gathered = [torch.empty_like(fingerprint) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, fingerprint)
    if not all(torch.equal(g, gathered[0]) for g in gathered):
        raise VoxganError(f"the processes' weights differ at step {step}; gradients were not synchronised")


def batch_stream(loader, epoch: int, batch_index: int):
    """Endless ``(epoch, batches consumed in that epoch, batch)`` from ``(epoch, batch_index)`` on."""
    while True:
        loader.set_position(epoch, batch_index)
        for batch in loader:
            batch_index += 1
            yield epoch, batch_index, batch
        epoch, batch_index = epoch + 1, 0


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, decay: float, step: int) -> None:
    """ema ← lerp(ema, generator, 1 - β) with β = min(decay, (1 + step) / (10 + step)) (warm-up)."""
    beta = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(generator.parameters()), 1 - beta)


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


def append_stats(path: Path, record: dict, writer) -> None:
    """Append one JSON line to stats.jsonl (and scalars to TensorBoard when it is open)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    if writer is not None:
        for key, value in record.items():
            if key != "step" and value is not None:
                writer.add_scalar(f"train/{key}", value, record["step"])


def tensorboard_writer(run_dir: Path):
    """A TensorBoard SummaryWriter on the run folder, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir))


def run_evaluation(run_dir: Path, device: torch.device) -> None:
    """``--eval-every``: voxgan.metrics.evaluate_run on the checkpoint just saved (no context rows, which do
    not change during training); a failure is reported on one line and training goes on."""
    from tqdm import tqdm

    from voxgan.metrics import evaluate_run

    try:
        record = evaluate_run(run_dir, device=device.type, context=False)
    except VoxganError as error:
        tqdm.write(f"voxgan train: evaluation skipped: {error}", file=sys.stderr)
        return
    summary = ", ".join(
        f"{k} {record[k]:.4g}" for k in ("nna_iou", "cov_iou", "fid") if record.get(k) is not None
    )
    tqdm.write(f"voxgan train: step {record['step']}: {summary} (metrics.jsonl)", file=sys.stderr)
