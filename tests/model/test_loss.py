"""The WGAN-GP terms on critics whose answers are known in closed form; the loose-voxel mass."""

import pytest
import torch
from torch import nn

from voxgan.model.loss import CriticObjective, critic_loss, generator_loss, gradient_penalty, isolated_mass


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w for every sample, so the penalty is (|w| - 1)²."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, volumes, labels=None):
        return (volumes * self.weight).flatten(1).sum(1)


def test_wasserstein_losses_have_the_right_signs():
    real, fake = torch.tensor([3.0, 5.0]), torch.tensor([1.0, 1.0])
    assert critic_loss(real, fake) == -3.0
    assert generator_loss(fake) == -1.0


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_penalty_of_a_linear_critic_uses_the_norm_over_all_non_batch_dims(scale):
    weight = torch.ones(1, 4, 4, 4) * scale / 8  # |w| = scale (64 entries of scale/8)
    critic = LinearCritic(weight)
    real, fake = torch.rand(5, 1, 4, 4, 4), torch.rand(5, 1, 4, 4, 4)
    penalty = gradient_penalty(critic, real, fake, None, torch.rand(5))
    torch.testing.assert_close(penalty, torch.tensor((scale - 1.0) ** 2))


def test_penalty_backward_reaches_the_weights():
    critic = LinearCritic(torch.full((1, 2, 2, 2), 1.0))  # |w| = sqrt(8): d/dw (|w|-1)² = 2(|w|-1) w/|w|
    penalty = gradient_penalty(
        critic, torch.rand(3, 1, 2, 2, 2), torch.rand(3, 1, 2, 2, 2), None, torch.rand(3)
    )
    penalty.backward()
    norm = 8**0.5
    torch.testing.assert_close(critic.weight.grad, torch.full((1, 2, 2, 2), 2 * (norm - 1) / norm))


def test_penalty_is_float32_under_autocast():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4**3, 1))
    scores = lambda volumes, labels=None: critic(volumes).squeeze(1)  # noqa: E731
    real, fake, alpha = torch.rand(4, 1, 4, 4, 4), torch.rand(4, 1, 4, 4, 4), torch.rand(4)
    plain = gradient_penalty(scores, real, fake, None, alpha)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = gradient_penalty(scores, real.bfloat16(), fake.bfloat16(), None, alpha)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain, rtol=2e-2, atol=1e-4)  # inputs rounded to bf16 only


def test_objective_combines_terms_and_penalises_a_sub_batch():
    critic = LinearCritic(torch.full((1, 2, 2, 2), 0.5))
    objective = CriticObjective(critic)
    real, fake, alpha = torch.rand(6, 1, 2, 2, 2), torch.rand(6, 1, 2, 2, 2), torch.rand(6)
    total, wasserstein, penalty = objective(real, fake, None, alpha, 0.0, 6)
    expected = critic(real).mean() - critic(fake).mean()
    torch.testing.assert_close(wasserstein, expected.detach())
    torch.testing.assert_close(total, -expected)
    assert penalty == 0
    total, _, penalty = objective(real, fake, None, alpha, 40.0, 2)
    norm = (0.25 * 8) ** 0.5
    torch.testing.assert_close(penalty, torch.tensor((norm - 1) ** 2))
    torch.testing.assert_close(total, -expected + 40.0 * penalty)


def volumes_with(*voxel_sets, size=8):
    """(B, 1, size, size, size) float volumes, volume b occupied at voxel_sets[b]'s (x, y, z) voxels."""
    volumes = torch.zeros(len(voxel_sets), 1, size, size, size)
    for b, voxels in enumerate(voxel_sets):
        for x, y, z in voxels:
            volumes[b, 0, x, y, z] = 1.0
    return volumes


def test_isolated_mass_counts_loose_voxels_and_nothing_that_touches_a_face():
    block = [(x, y, z) for x in range(2, 5) for y in range(2, 5) for z in range(2, 5)]
    line = [(1, 1, z) for z in range(8)]  # one voxel thick, like a chair leg
    corner_touch = [(2, 2, 2), (3, 3, 3)]  # touching at a corner only: two pieces
    volumes = volumes_with(block, line, block + [(7, 7, 7)], [(0, 0, 0)], corner_touch, [])
    torch.testing.assert_close(isolated_mass(volumes), torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 0.0]))


def test_isolated_mass_pushes_a_loose_voxel_down_and_leaves_a_shape_alone():
    volumes = volumes_with([(3, 3, 3), (3, 3, 4), (6, 1, 1)]).mul(0.9).requires_grad_(True)
    isolated_mass(volumes).sum().backward()
    assert volumes.grad[0, 0, 6, 1, 1] > 0.9  # gradient descent lowers the loose voxel
    assert volumes.grad[0, 0, 3, 3, 3] < 0.1 and volumes.grad[0, 0, 3, 3, 4] < 0.1
