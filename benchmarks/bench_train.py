"""Time one full training iteration (n_critic critic updates + 1 generator update) at batch 32, 16³.

Each row is a model/penalty configuration run through the trainer's own update functions
(voxgan.model.updates.critic_update / generator_update); the first row is the straightforward design
(attention at 8³ in both networks, q/k at C channels, penalty on every critic update), the rows after it
build up to voxgan 0.1's default (5 critic updates a step), and the last is today's default (lean networks,
one critic update a step: compare samples/s, not seconds per iteration, across the two), then the default
with the speck penalty.
Rows run in interleaved rounds, so that the load of a shared machine hits all of them alike.
Columns: wall-clock seconds per iteration (median and best), process CPU seconds of the best-CPU iteration
(all threads; on a machine shared with other jobs it moves far less than wall time), samples/s from the best
wall time, the speed-up in CPU time over the first row, and the median minor page faults per iteration.
All rows share one process, whose heap the first rows leave large and fragmented; a training process runs
one model, as ``--only-default`` does (add ``--default-malloc`` for the process before that function).
The attention gammas are set to 0.5 so that attention costs what it costs in a trained network.

    .venv/bin/python benchmarks/bench_train.py [--repeats 5] [--threads 2] [--device cpu|cuda]
        [--only-default] [--default-malloc]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import resource
import statistics
import time

import torch

from voxgan.model.config import TrainConfig, build_networks
from voxgan.model.loss import CriticObjective
from voxgan.model.networks import SelfAttention3d
from voxgan.model.train import keep_freed_memory_in_heap
from voxgan.model.updates import critic_update, generator_update

# voxgan 0.1's default, which the first rows build up to; the last row is today's default recipe.
V01_DEFAULT = TrainConfig.from_dict(
    dict(generator_width=32, critic_width=32, n_critic=5, penalty_every=4, lr=1e-4)
)
TODAY = {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)}
CONFIGS = {
    "straightforward (w32, attn 8³/8³, qk=C, GP every update)": dict(
        critic_attention=(8,), key_divisor=1, penalty_every=1, channels_last=False
    ),
    "+ q/k at C/8": dict(critic_attention=(8,), penalty_every=1),
    "+ critic attention at 4³": dict(penalty_every=1),
    "+ penalty on half the batch": dict(penalty_every=1, penalty_fraction=0.5),
    "+ lazy penalty every 4th (λ·4) = voxgan 0.1 default": dict(),
    "0.1 default without channels_last_3d": dict(channels_last=False),
    "0.1 default, critic width 16": dict(critic_width=16),
    "0.1 default, no attention at all": dict(generator_attention=(), critic_attention=()),
    "lean networks w16, pooled attention, 1 critic update = default": TODAY,
    "default + --speck-penalty 0.05 (loose voxels in G's loss)": {**TODAY, "speck_penalty": 0.05},
}


def make_iteration(config: TrainConfig, device: torch.device):
    """A function running one iteration (n_critic critic updates and one generator update) of ``config``."""
    torch.manual_seed(0)
    generator, critic = build_networks(config)
    for module in [*generator.modules(), *critic.modules()]:
        if isinstance(module, SelfAttention3d):
            module.gamma.data.fill_(0.5)
    memory_format = torch.channels_last_3d if config.channels_last else torch.contiguous_format
    generator.to(device, memory_format=memory_format)
    critic.to(device, memory_format=memory_format)
    objective = CriticObjective(critic)
    optimiser_g = torch.optim.Adam(generator.parameters(), config.lr_generator, config.betas, fused=True)
    optimiser_c = torch.optim.Adam(critic.parameters(), config.lr_critic, config.betas, fused=True)
    noise = torch.Generator(device=device).manual_seed(0)
    real = (torch.rand(config.batch_size, 1, 16, 16, 16, device=device) > 0.7).float()
    real = real.contiguous(memory_format=memory_format)
    samples = max(1, round(config.batch_size * config.penalty_fraction))
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    steps = iter(range(1_000_000))

    def iteration() -> None:
        step = next(steps)
        for k in range(config.n_critic):
            penalise = (step * config.n_critic + k) % config.penalty_every == 0
            weight = config.penalty_weight * config.penalty_every if penalise else 0.0
            critic_update(objective, generator, optimiser_c, real, None, noise, weight, samples, autocast)
        generator_update(
            generator,
            critic,
            optimiser_g,
            config.batch_size,
            100,
            None,
            noise,
            autocast,
            (),
            config.speck_penalty,
        )
        if cuda:
            torch.cuda.synchronize()

    return iteration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations per row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--default-malloc", action="store_true", help="leave glibc's malloc as it is (what train changes)"
    )
    parser.add_argument(
        "--only-default", action="store_true", help="time the default row alone, in a process like train's"
    )
    args = parser.parse_args()
    if not args.default_malloc:
        keep_freed_memory_in_heap()  # as voxgan.model.train does
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"one iteration = 5 critic + 1 generator updates, batch 32, 16³, {args.threads} threads, {device}")
    columns = f"{'median s':>9s} {'best s':>8s} {'cpu s':>7s} {'samples/s':>10s}  vs first  page faults"
    print(f"{'configuration':58s} {columns}")
    rows = {k: v for k, v in CONFIGS.items() if not args.only_default or "= default" in k}
    configs = {name: dataclasses.replace(V01_DEFAULT, **changes) for name, changes in rows.items()}
    iterations = {name: make_iteration(config, device) for name, config in configs.items()}
    times = {name: [] for name in configs}
    page_faults = {name: [] for name in configs}
    for round_index in range(args.repeats + 1):  # rounds through all rows, so load spikes hit every row
        for name, iteration in iterations.items():
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start, cpu_start = time.perf_counter(), time.process_time()
            iteration()
            if round_index:  # round 0 warms up
                times[name].append((time.perf_counter() - start, time.process_time() - cpu_start))
                page_faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
    baseline = min(cpu for _, cpu in times[next(iter(times))])
    for name, config in configs.items():
        walls, cpus = [w for w, _ in times[name]], [c for _, c in times[name]]
        best, cpu = min(walls), min(cpus)
        samples = config.batch_size * config.n_critic / best
        print(
            f"{name:58s} {statistics.median(walls):9.3f} {best:8.3f} {cpu:7.3f} {samples:10.0f}"
            f"  {baseline / cpu:5.1f}x  {statistics.median(page_faults[name]):11.0f}"
        )


if __name__ == "__main__":
    main()
