"""One optimiser update of each network, with no host synchronisation: the critic's (WGAN-GP loss with
its penalty), the generator's against the frozen critic, and the EMA of the generator's weights.

A non-finite gradient skips the Adam step on the device (:func:`optimiser_update`); the caller learns of
it from the returned gradient norm. The training loop (:mod:`voxgan.model.train`) calls these once per
update; ``benchmarks/bench_train.py`` times them alone.
"""

from __future__ import annotations

import torch
from torch import nn

from voxgan.model.augment import diff_augment
from voxgan.model.loss import generator_loss, isolated_mass


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
    augment: tuple[str, ...] = (),
) -> torch.Tensor:
    """One critic update on a real batch (B, 1, R, R, R) and a fresh fake one, both seen through the
    ``augment`` policy (:mod:`voxgan.model.augment`).

    Returns a (4,) tensor, without a host sync: loss, Wasserstein estimate, penalty (0 when not applied)
    and gradient norm.
    """
    z = torch.randn(len(real), generator.latent_dim, device=real.device, generator=noise)
    alpha = torch.rand(len(real), device=real.device, generator=noise)
    with torch.no_grad(), autocast:
        fake = generator(z, labels).float()  # (B, 1, R, R, R)
    if augment:
        real, fake = diff_augment(real, augment, noise), diff_augment(fake, augment, noise)
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
    augment: tuple[str, ...] = (),
    speck_weight: float = 0.0,
) -> torch.Tensor:
    """One generator update against the frozen critic, which sees its volumes through ``augment``, plus
    ``speck_weight`` times the mean :func:`~voxgan.model.loss.isolated_mass` of its volumes; returns
    [loss, grad norm] as a (2,) tensor."""
    device = next(critic.parameters()).device
    critic.requires_grad_(False)
    z = torch.randn(batch_size, latent_dim, device=device, generator=noise)
    with autocast:
        fake = generator(z, labels)
        specks = isolated_mass(fake.float()).mean() if speck_weight > 0 else 0.0
        if augment:
            fake = diff_augment(fake, augment, noise)
        loss = generator_loss(critic(fake, labels).float()) + speck_weight * specks
    norm = optimiser_update(optimiser, loss)
    critic.requires_grad_(True)
    return torch.stack([loss.detach(), norm])


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


def total_norm(parameters) -> torch.Tensor:
    """L2 norm of all gradients, a 0-d tensor (NaN/Inf when any gradient is non-finite); no host sync."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, decay: float, step: int) -> None:
    """ema ← lerp(ema, generator, 1 - β) with β = min(decay, (1 + step) / (10 + step)) (warm-up)."""
    beta = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(generator.parameters()), 1 - beta)
