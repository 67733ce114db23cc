"""The networks: SAGAN-style self-attention, the generator and the critic, for 16³, 32³ and 64³.

Both networks are built from one block per resolution step, used as many times as the resolution needs
(4³ → 8³ → 16³ → ...), with :class:`SelfAttention3d` after the steps whose output resolution is listed in
``attention``. Shapes are written ``(B, C, D, H, W)``; volumes are indexed ``[x, y, z]`` like the shards.

``full_resolution_features=False`` (the default recipe) builds them as 3D-GAN did (Wu et al. 2016): the
generator's last step is a transposed convolution straight to the one-channel volume and the critic's first
step a strided convolution straight from it, so no R³ map of features is ever made. On a CPU that is most
of the cost of a step (see BENCHMARKS.md); ``True`` is the layout of voxgan 0.1 (a 3×3×3 convolution at R³
on both sides), kept so that its checkpoints load.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

BASE_RESOLUTION = 4  # both networks start (generator) or end (critic) at a 4³ feature map
RESOLUTIONS = (16, 32, 64)
OUTPUT_LAYERS = ("transposed", "resize")  # the generator's last doubling (see Generator)


def channels_at(resolution: int, out_resolution: int, width: int, max_multiplier: int = 8) -> int:
    """Feature channels at ``resolution`` of a network whose full resolution is ``out_resolution``.

    ``width`` channels at full resolution, doubling at every halving, capped at ``width * max_multiplier``.
    """
    return width * min(out_resolution // resolution, max_multiplier)


def resolution_steps(out_resolution: int) -> list[int]:
    """The resolutions after each up-sampling step: 16 -> [8, 16], 32 -> [8, 16, 32], 64 -> [8, ..., 64]."""
    if out_resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {out_resolution}")
    steps = int(math.log2(out_resolution // BASE_RESOLUTION))
    return [BASE_RESOLUTION * 2 ** (i + 1) for i in range(steps)]


class SelfAttention3d(nn.Module):
    """Self-attention over all voxels of a feature map, as in SAGAN (Zhang et al. 2019).

    1×1×1 query, key and value projections, a softmax over all D·H·W positions, the result scaled by a
    learnable ``gamma`` (initialised to 0, so the block starts as the identity) and added to the input.
    Written as explicit matmul + softmax, so that it has the second derivative the gradient penalty needs
    (fused attention kernels have none).

    Parameters
    ----------
    channels : feature channels C of the input.
    key_channels : channels of the query and key projections (SAGAN uses C/8); at least 1.
    pool : keys and values come from the map average-pooled by ``pool`` in each axis (BigGAN pools by 2):
        N queries attend to N / pool³ positions, pool³ times cheaper.
    """

    def __init__(self, channels: int, key_channels: int | None = None, pool: int = 1):
        super().__init__()
        key_channels = max(1, key_channels if key_channels is not None else channels // 8)
        self.query = nn.Conv3d(channels, key_channels, 1)
        self.key = nn.Conv3d(channels, key_channels, 1)
        self.value = nn.Conv3d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))
        self.scale = key_channels**-0.5
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x : (B, C, D, H, W) -> (B, C, D, H, W)."""
        b, c, d, h, w = x.shape
        pooled = F.avg_pool3d(x, self.pool) if self.pool > 1 else x  # (B, C, D/p, H/p, W/p)
        # Token-major (B, N, C) operands: views, not copies, of channels-last feature maps, and a result
        # that is channels-last again, so no layout conversion runs around the two matmuls.
        query = self.query(x).flatten(2).transpose(1, 2)  # (B, N, Ck)
        key = self.key(pooled).flatten(2)  # (B, Ck, M), M = N / p³
        value = self.value(pooled).flatten(2).transpose(1, 2)  # (B, M, C)
        scores = torch.bmm(query, key).mul_(self.scale)  # (B, N, M); in place: bmm keeps its inputs, not this
        weights = torch.softmax(scores, dim=-1)  # (B, N, M), rows sum to 1
        attended = torch.bmm(weights, value)  # (B, N, C)
        return torch.addcmul(x, self.gamma, attended.transpose(1, 2).view(b, c, d, h, w))


def attention_or_none(channels: int, resolution: int, wanted: tuple[int, ...], key_divisor: int, pool: int):
    """A :class:`SelfAttention3d` for a ``resolution``³ map when ``resolution`` is in ``wanted``, else None.

    Keys and values are pooled by ``pool`` on maps larger than 4³ only.
    """
    if resolution not in wanted:
        return None
    return SelfAttention3d(channels, channels // key_divisor, pool if resolution > BASE_RESOLUTION else 1)


class VolumeConvTranspose3d(nn.ConvTranspose3d):
    """``ConvTranspose3d(in_channels, out_channels, 4, stride=2, padding=1)`` that runs, on the CPU, as
    :func:`phase_conv_transpose3d`: the same function and parameters, several times faster there to one
    channel, where oneDNN's transposed kernel is slow (see BENCHMARKS.md). Other devices use the kernel."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x : (B, Cin, D, H, W) -> (B, Cout, 2D, 2H, 2W)."""
        if x.device.type != "cpu":
            return super().forward(x)
        return phase_conv_transpose3d(x, self.weight, self.bias)


class VolumeConv3d(nn.Conv3d):
    """``Conv3d(in_channels, out_channels, 4, stride=2, padding=1)`` that runs, on the CPU, as
    :func:`phase_conv3d`: the same function and parameters, faster there from one channel, most in the
    gradient penalty's double backward (see BENCHMARKS.md). Other devices use the kernel."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x : (B, Cin, D, H, W), D, H, W even -> (B, Cout, D/2, H/2, W/2)."""
        if x.device.type != "cpu":
            return super().forward(x)
        return phase_conv3d(x, self.weight, self.bias)


def phase_conv_transpose3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv_transpose3d(x, weight, bias, stride=2, padding=1)`` for a 4³ kernel, as one 2³ convolution.

    x : (B, Cin, D, H, W); weight : (Cin, Cout, 4, 4, 4); bias : (Cout,) or None -> (B, Cout, 2D, 2H, 2W).
    Along each axis, output 2j + r - 1 (phase r in {0, 1}) is input j - 1 times tap r + 2 plus input j
    times tap r: a 2³ convolution of the input padded by one makes all eight phases at once, as 8·Cout
    channels; interleaved they are the uncropped output, (2D + 2)³, from which the padding is cut.
    """
    c_in, c_out = weight.shape[:2]
    taps = weight.reshape(c_in, c_out, 2, 2, 2, 2, 2, 2).flip(2, 4, 6)  # tap 2h + r at kernel index 1 - h
    kernel = taps.permute(3, 5, 7, 1, 0, 2, 4, 6).reshape(8 * c_out, c_in, 2, 2, 2)  # (phase, Cout) rows
    phases = F.conv3d(x, kernel, None if bias is None else bias.repeat(8), padding=1)
    b, _, d, h, w = phases.shape  # (B, 8·Cout, D + 1, H + 1, W + 1)
    full = phases.view(b, 2, 2, 2, c_out, d, h, w).permute(0, 4, 5, 1, 6, 2, 7, 3)
    return full.reshape(b, c_out, 2 * d, 2 * h, 2 * w)[:, :, 1:-1, 1:-1, 1:-1]


def phase_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv3d(x, weight, bias, stride=2, padding=1)`` for a 4³ kernel, as one unstrided 2³ convolution.

    x : (B, Cin, D, H, W), D, H, W even; weight : (Cout, Cin, 4, 4, 4); bias : (Cout,) or None ->
    (B, Cout, D/2, H/2, W/2). The input padded by one is cut into its eight phases (voxels 2i + r along
    each axis), stacked as 8·Cin channels: tap 2h + r of the strided convolution is then tap h of phase r.
    """
    c_out, c_in = weight.shape[:2]
    padded = F.pad(x, (1, 1, 1, 1, 1, 1))
    b, _, d, h, w = padded.shape
    phases = padded.view(b, c_in, d // 2, 2, h // 2, 2, w // 2, 2).permute(0, 2, 4, 6, 3, 5, 7, 1)
    phases = phases.reshape(b, d // 2, h // 2, w // 2, 8 * c_in).permute(0, 4, 1, 2, 3)  # channels-last
    kernel = weight.reshape(c_out, c_in, 2, 2, 2, 2, 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
    return F.conv3d(phases, kernel.reshape(c_out, 8 * c_in, 2, 2, 2), bias)


class UpBlock(nn.Module):
    """One generator resolution step: (B, Cin, r, r, r) -> (B, Cout, 2r, 2r, 2r), then optional attention."""

    def __init__(self, in_channels: int, out_channels: int, attention: SelfAttention3d | None):
        super().__init__()
        self.conv = nn.ConvTranspose3d(in_channels, out_channels, 4, stride=2, padding=1, bias=False)
        self.norm = nn.GroupNorm(min(8, out_channels), out_channels)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)), inplace=True)  # the norm keeps its input, not this
        return self.attention(x) if self.attention is not None else x


class DownBlock(nn.Module):
    """One critic resolution step: (B, Cin, r, r, r) -> (B, Cout, r/2, r/2, r/2), optionally with attention.

    No batch normalisation: the gradient penalty is per sample, and a batch statistic would couple samples.
    """

    def __init__(self, in_channels: int, out_channels: int, attention: SelfAttention3d | None):
        super().__init__()
        if in_channels == 1:  # straight from the volume
            self.conv = VolumeConv3d(in_channels, out_channels)
        else:
            self.conv = nn.Conv3d(in_channels, out_channels, 4, stride=2, padding=1)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv(x), 0.2, inplace=True)  # the convolution keeps its input, not this
        return self.attention(x) if self.attention is not None else x


class Generator(nn.Module):
    """Noise (and a class) to an occupancy volume in [0, 1].

    ``G(z, labels)``: z (B, latent_dim) float, labels (B,) int64 or None -> (B, 1, R, R, R).
    A linear layer makes a 4³ feature map, then one :class:`UpBlock` per doubling, then a sigmoid: the last
    doubling is a transposed convolution to one channel, or (``full_resolution_features``) an UpBlock to
    R³ features and a 3×3×3 convolution to one channel. When ``num_classes > 0`` a learned class embedding
    is concatenated to z. With no arguments: the default recipe's generator (``TrainConfig()``).

    Parameters
    ----------
    resolution : R, one of 16, 32, 64.
    latent_dim : length of z (100 in the original design).
    width : channels at the full resolution (R³); doubling at every halving, capped at 8×.
    attention : resolutions of the feature maps followed by self-attention: 4 (the map the linear layer
        makes) or the output resolution of a step, e.g. (4,) or (8,).
    num_classes : 0 for an unconditional generator.
    key_divisor : query/key channels = C // key_divisor.
    attention_pool : keys and values of attention on maps above 4³ are pooled by this (1: not pooled).
    full_resolution_features : the layout of voxgan 0.1 (see the module docstring).
    output_layer : the last doubling of the lean layout: ``transposed`` (a 4³ transposed convolution, as
        3D-GAN) or ``resize`` (nearest up-sampling, then a 3³ convolution: no checkerboard pattern, Odena et
        al. 2016; about 3× that layer's cost).
    """

    def __init__(
        self,
        resolution: int = 16,
        latent_dim: int = 100,
        width: int = 16,
        attention: tuple[int, ...] = (4,),
        num_classes: int = 0,
        key_divisor: int = 8,
        attention_pool: int = 2,
        full_resolution_features: bool = False,
        output_layer: str = "transposed",
    ):
        super().__init__()
        self.resolution, self.latent_dim, self.num_classes = resolution, latent_dim, num_classes
        steps = resolution_steps(resolution)
        feature_steps = steps if full_resolution_features else steps[:-1]
        self.embedding = nn.Embedding(num_classes, latent_dim) if num_classes > 0 else None
        in_features = latent_dim * (2 if num_classes > 0 else 1)
        self.base_channels = channels_at(BASE_RESOLUTION, resolution, width)
        self.project = nn.Linear(in_features, self.base_channels * BASE_RESOLUTION**3)
        self.project_norm = nn.GroupNorm(min(8, self.base_channels), self.base_channels)
        self.base_attention = attention_or_none(
            self.base_channels, BASE_RESOLUTION, attention, key_divisor, attention_pool
        )
        blocks, channels = [], self.base_channels
        for step_resolution in feature_steps:
            out_channels = channels_at(step_resolution, resolution, width)
            module = attention_or_none(out_channels, step_resolution, attention, key_divisor, attention_pool)
            blocks.append(UpBlock(channels, out_channels, module))
            channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        if full_resolution_features:
            self.to_volume = nn.Conv3d(channels, 1, 3, padding=1)
        elif output_layer == "resize":
            self.to_volume = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv3d(channels, 1, 3, padding=1))
        else:
            self.to_volume = VolumeConvTranspose3d(channels, 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """z : (B, latent_dim), labels : (B,) int64 or None -> (B, 1, R, R, R) occupancy in [0, 1]."""
        assert z.ndim == 2 and z.shape[1] == self.latent_dim, (
            f"z must be (B, {self.latent_dim}), got {z.shape}"
        )
        if self.embedding is not None:
            assert labels is not None and labels.shape == z.shape[:1], (
                "a conditional generator needs labels (B,)"
            )
            z = torch.cat([z, self.embedding(labels)], dim=1)
        r = BASE_RESOLUTION
        x = self.project(z).view(len(z), self.base_channels, r, r, r)  # (B, C, 4, 4, 4)
        x = F.relu(self.project_norm(x), inplace=True)
        if self.base_attention is not None:
            x = self.base_attention(x)
        for block in self.blocks:
            x = block(x)
        volume = torch.sigmoid(self.to_volume(x))  # (B, 1, R, R, R)
        assert volume.shape[2:] == (self.resolution,) * 3
        return volume


class Critic(nn.Module):
    """An occupancy volume (and a class) to one unbounded score per sample (WGAN critic).

    ``D(volumes, labels)``: volumes (B, 1, R, R, R) float, labels (B,) int64 or None -> (B,).
    One :class:`DownBlock` per halving down to 4³ (after a 3×3×3 convolution to R³ features when
    ``full_resolution_features``), then a linear score. When ``num_classes > 0`` the score gets a
    projection term, ⟨embed(label), features⟩ (Miyato & Koyama 2018). With no arguments: the default
    recipe's critic (``TrainConfig()``).

    Parameters: those of :class:`Generator` but ``latent_dim``; ``attention`` lists the output
    resolutions of the down-sampling steps followed by self-attention, e.g. (8,) or (4,).
    """

    def __init__(
        self,
        resolution: int = 16,
        width: int = 16,
        attention: tuple[int, ...] = (4,),
        num_classes: int = 0,
        key_divisor: int = 8,
        attention_pool: int = 2,
        full_resolution_features: bool = False,
    ):
        super().__init__()
        self.resolution, self.num_classes = resolution, num_classes
        self.from_volume = nn.Conv3d(1, width, 3, padding=1) if full_resolution_features else None
        blocks, channels = [], width if full_resolution_features else 1
        for step_resolution in reversed(resolution_steps(resolution)):
            out_resolution = step_resolution // 2
            out_channels = channels_at(out_resolution, resolution, width)
            module = attention_or_none(out_channels, out_resolution, attention, key_divisor, attention_pool)
            blocks.append(DownBlock(channels, out_channels, module))
            channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        features = channels * BASE_RESOLUTION**3
        self.score = nn.Linear(features, 1)
        self.embedding = nn.Embedding(num_classes, features) if num_classes > 0 else None

    def forward(self, volumes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """volumes : (B, 1, R, R, R), labels : (B,) int64 or None -> (B,) scores."""
        assert volumes.shape[1:] == (1,) + (self.resolution,) * 3, (
            f"volumes must be (B, 1, R, R, R): {volumes.shape}"
        )
        x = volumes
        if self.from_volume is not None:
            x = F.leaky_relu(self.from_volume(x), 0.2, inplace=True)
        for block in self.blocks:
            x = block(x)
        assert x.shape[2:] == (BASE_RESOLUTION,) * 3
        features = x.flatten(1)  # (B, C·4³)
        score = self.score(features).squeeze(1)
        if self.embedding is not None:
            assert labels is not None and labels.shape == score.shape, (
                "a conditional critic needs labels (B,)"
            )
            score = score + (self.embedding(labels) * features).sum(dim=1)
        return score
