"""voxgan.model.updates: a non-finite gradient skips the Adam step on the device; the EMA warms up."""

import pytest
import torch
from torch import nn

from voxgan.model.updates import optimiser_update, update_ema

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_non_finite_loss_leaves_weights_and_moments_untouched():
    layer = nn.Linear(3, 1)
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.1, fused=True)
    x = torch.ones(2, 3)
    norm = optimiser_update(optimiser, layer(x).sum())
    assert torch.isfinite(norm) and norm > 0
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    moments = {k: v.clone() for k, v in optimiser.state[layer.weight].items()}
    norm = optimiser_update(optimiser, layer(x).sum() * float("nan"))
    assert not torch.isfinite(norm)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    assert all(torch.equal(moments[k], v) for k, v in optimiser.state[layer.weight].items())


def test_the_ema_follows_quickly_at_first_then_slowly():
    ema, model = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        ema.weight.zero_()
        model.weight.fill_(1.0)
    update_ema(ema, model, decay=0.999, step=0)  # beta = min(0.999, 1/10): a tenth of the way is left
    assert torch.allclose(ema.weight, torch.full((2, 2), 0.9))
    update_ema(ema, model, decay=0.999, step=10**6)  # beta = 0.999
    assert torch.allclose(ema.weight, torch.full((2, 2), 0.9 + 0.1 * 0.001))
