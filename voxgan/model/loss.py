"""The WGAN-GP objective (Gulrajani et al. 2017): Wasserstein critic and generator losses, gradient penalty.

:class:`CriticObjective` puts the whole critic loss, penalty included, in one module's forward, so that a
DistributedDataParallel wrapper around it sees one forward and one backward per critic update while the
penalty's inner ``torch.autograd.grad`` (with respect to the inputs only) stays inside.
"""

from __future__ import annotations

import torch
from torch import nn


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """E[D(fake)] - E[D(real)]: real_scores (B,), fake_scores (B,) -> scalar (minimised by the critic)."""
    return fake_scores.mean() - real_scores.mean()


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-E[D(fake)]: fake_scores (B,) -> scalar (minimised by the generator)."""
    return -fake_scores.mean()


def isolated_mass(volumes: torch.Tensor) -> torch.Tensor:
    """How much of each volume stands alone: Σ v · (1 - the largest of its six face neighbours).

    volumes : (B, 1, R, R, R) in [0, 1] -> (B,). A voxel with no occupied face neighbour (a loose speck)
    counts fully, one inside a shape or along a thin part not at all; outside the grid counts as empty.
    """
    padded = torch.nn.functional.pad(volumes, (1, 1, 1, 1, 1, 1))
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    neighbours = []
    for axis in (2, 3, 4):
        for shift in (slice(None, -2), slice(2, None)):
            index = list(inner)
            index[axis] = shift
            neighbours.append(padded[tuple(index)])
    largest = torch.stack(neighbours).amax(dim=0)  # (B, 1, R, R, R)
    return (volumes * (1 - largest)).flatten(1).sum(dim=1)


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """E[(‖∇D(x̂)‖₂ - 1)²] at x̂ = α·real + (1-α)·fake, in float32 whatever the autocast state.

    Parameters
    ----------
    critic : maps (B, 1, R, R, R), labels -> (B,).
    real, fake : (B, 1, R, R, R) float.
    labels : (B,) int64 or None.
    alpha : (B,) float in [0, 1], one mixing weight per sample.

    Returns a scalar with a graph (create_graph=True), so that its backward reaches the critic's weights.
    The norm runs over all non-batch dimensions.
    """
    assert real.shape == fake.shape and alpha.shape == real.shape[:1], (real.shape, fake.shape, alpha.shape)
    device_type = real.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        alpha = alpha.float().view(-1, *([1] * (real.ndim - 1)))
        mixed = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
        scores = critic(mixed, labels).float()
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norms = grad.flatten(1).norm(2, dim=1)  # (B,)
        return ((norms - 1) ** 2).mean()


class CriticObjective(nn.Module):
    """One critic update's loss: Wasserstein term plus (when ``penalty_weight > 0``) the gradient penalty.

    forward(real, fake, labels, alpha, penalty_weight, penalty_samples) -> (total, wasserstein, penalty),
    all scalars. ``wasserstein`` is E[D(real)] - E[D(fake)] (the critic's estimate of the distance);
    the penalty is computed on the first ``penalty_samples`` samples of the batch.
    """

    def __init__(self, critic: nn.Module):
        super().__init__()
        self.critic = critic

    def forward(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        labels: torch.Tensor | None,
        alpha: torch.Tensor,
        penalty_weight: float,
        penalty_samples: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        both = torch.cat([real, fake])  # (2B, 1, R, R, R): one pass; the critic has no batch statistics
        both_labels = torch.cat([labels, labels]) if labels is not None else None
        real_scores, fake_scores = self.critic(both, both_labels).float().chunk(2)
        loss = critic_loss(real_scores, fake_scores)
        if penalty_weight > 0:
            n = penalty_samples
            sub_labels = labels[:n] if labels is not None else None
            penalty = gradient_penalty(self.critic, real[:n], fake[:n], sub_labels, alpha[:n])
        else:
            penalty = torch.zeros((), device=real.device)
        return loss + penalty_weight * penalty, -loss.detach(), penalty.detach()
