"""Time a training step's passes with the layers to and from the volume as the library runs them and as
phase forms.

The generator's last layer (a 4³ transposed convolution to one channel) and the critic's first (a 4³
strided convolution from one channel) run on the CPU as :func:`voxgan.model.networks.phase_conv_transpose3d`
and :func:`~voxgan.model.networks.phase_conv3d`. Here the default networks of each resolution (batch 32,
channels-last, attention gammas 0.5) run each pass of a step twice, once with those two layers swapped
back to ``nn.ConvTranspose3d`` / ``nn.Conv3d`` (same weights), in interleaved rounds: the critic's loss on a
real and a fake batch (the fake made without gradients), the gradient penalty's double backward, and the
generator's update through the frozen critic. Medians in milliseconds.

    .venv/bin/python benchmarks/bench_phase.py [--threads 2] [--repeats 20] [--resolutions 16 32 64]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from voxgan.model.config import TrainConfig, build_networks, with_data_defaults
from voxgan.model.loss import critic_loss, generator_loss, gradient_penalty
from voxgan.model.networks import SelfAttention3d, VolumeConv3d, VolumeConvTranspose3d

BATCH = 32


def networks(resolution: int) -> dict[str, tuple[nn.Module, nn.Module]]:
    """The default generator and critic at ``resolution``: {'library': ..., 'phase': ...}, equal weights."""
    torch.manual_seed(0)
    generator, critic = build_networks(with_data_defaults(TrainConfig(), resolution, ()))
    for module in [*generator.modules(), *critic.modules()]:
        if isinstance(module, SelfAttention3d):
            module.gamma.data.fill_(0.5)
    library = copy.deepcopy(generator), copy.deepcopy(critic)
    library[0].to_volume = as_library(generator.to_volume)
    library[1].blocks[0].conv = as_library(critic.blocks[0].conv)
    pairs = {"library": library, "phase": (generator, critic)}
    for pair in pairs.values():
        for network in pair:
            network.to(memory_format=torch.channels_last_3d)
    return pairs


def as_library(layer: nn.Module) -> nn.Module:
    """The ``nn.ConvTranspose3d`` / ``nn.Conv3d`` a phase-form layer stands for, with its weights."""
    kind = nn.ConvTranspose3d if isinstance(layer, VolumeConvTranspose3d) else nn.Conv3d
    assert isinstance(layer, (VolumeConv3d, VolumeConvTranspose3d))
    plain = kind(layer.in_channels, layer.out_channels, 4, stride=2, padding=1)
    plain.load_state_dict(layer.state_dict())
    return plain


def passes(generator: nn.Module, critic: nn.Module, real: torch.Tensor) -> dict:
    """The three passes of a step, each a function of no argument."""
    z = torch.randn(BATCH, generator.latent_dim)
    alpha = torch.rand(BATCH)

    def critic_update() -> None:
        with torch.no_grad():
            fake = generator(z)
        real_scores, fake_scores = critic(torch.cat([real, fake])).chunk(2)
        critic_loss(real_scores, fake_scores).backward()

    def penalty() -> None:
        with torch.no_grad():
            fake = generator(z)
        gradient_penalty(critic, real, fake, None, alpha).backward()

    def generator_update() -> None:
        critic.requires_grad_(False)
        generator_loss(critic(generator(z))).backward()
        critic.requires_grad_(True)

    return {"critic loss": critic_update, "gradient penalty": penalty, "generator update": generator_update}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 32, 64])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {BATCH}, channels-last, {args.threads} threads, torch {torch.__version__}; median ms")
    print(f"{'resolution':10s} {'pass':18s} {'library':>9s} {'phase':>9s} {'speed-up':>9s}")
    for resolution in args.resolutions:
        real = (torch.rand(BATCH, 1, *(resolution,) * 3) > 0.7).float()
        real = real.contiguous(memory_format=torch.channels_last_3d)
        forms = {form: passes(*pair, real) for form, pair in networks(resolution).items()}
        times = {(form, name): [] for form, named in forms.items() for name in named}
        for round_index in range(args.repeats + 1):  # round 0 warms up
            for (form, name), spent in times.items():
                start = time.perf_counter()
                forms[form][name]()
                if round_index:
                    spent.append(time.perf_counter() - start)
        for name in forms["phase"]:
            library = statistics.median(times["library", name]) * 1000
            phase = statistics.median(times["phase", name]) * 1000
            print(f"{resolution:>8d}³  {name:18s} {library:9.2f} {phase:9.2f} {library / phase:8.2f}x")


if __name__ == "__main__":
    main()
