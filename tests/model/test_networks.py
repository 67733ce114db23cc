"""Shapes of the networks at every resolution, the attention block and its second derivative."""

import functools

import pytest
import torch
from torch.nn import functional as F

from voxgan.model.loss import gradient_penalty
from voxgan.model.networks import (
    Critic,
    DownBlock,
    Generator,
    SelfAttention3d,
    UpBlock,
    VolumeConv3d,
    VolumeConvTranspose3d,
    phase_conv3d,
    phase_conv_transpose3d,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_generator_and_critic_shapes(resolution, num_classes):
    torch.manual_seed(0)
    generator = Generator(resolution, latent_dim=100, width=4, attention=(8,), num_classes=num_classes)
    critic = Critic(resolution, width=4, attention=(4,), num_classes=num_classes)
    labels = torch.tensor([0, 2]) if num_classes else None
    with torch.no_grad():
        volumes = generator(torch.randn(2, 100), labels)
        scores = critic(volumes, labels)
    assert volumes.shape == (2, 1, resolution, resolution, resolution)
    assert volumes.min() >= 0 and volumes.max() <= 1
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert (generator.latent_dim, generator.num_classes, generator.resolution) == (
        100,
        num_classes,
        resolution,
    )


R3_FEATURES = dict(full_resolution_features=True, attention_pool=1)  # voxgan 0.1's networks


@pytest.mark.parametrize("resolution, steps", [(16, 2), (32, 3), (64, 4)])
def test_one_block_type_per_resolution_step(resolution, steps):
    generator = Generator(resolution, width=4, attention=(8,), **R3_FEATURES)
    critic = Critic(resolution, width=4, attention=(4,), **R3_FEATURES)
    assert [type(b) for b in generator.blocks] == [UpBlock] * steps
    assert [type(b) for b in critic.blocks] == [DownBlock] * steps


def test_attention_sits_at_the_requested_resolutions():
    generator = Generator(32, width=4, attention=(8, 16), **R3_FEATURES)
    critic = Critic(32, width=4, attention=(4,), **R3_FEATURES)
    with_attention = [b.attention is not None for b in generator.blocks]  # outputs 8, 16, 32
    assert with_attention == [True, True, False]
    assert [b.attention is not None for b in critic.blocks] == [False, False, True]  # outputs 16, 8, 4
    assert not any(isinstance(m, SelfAttention3d) for m in Critic(16, width=4, attention=()).modules())


def test_conditional_generator_depends_on_the_class():
    torch.manual_seed(0)
    generator = Generator(16, width=4, num_classes=2)
    z = torch.randn(1, 100).repeat(2, 1)
    with torch.no_grad():
        volumes = generator(z, torch.tensor([0, 1]))
    assert not torch.allclose(volumes[0], volumes[1])


def test_attention_starts_as_identity_and_matches_the_reference():
    torch.manual_seed(0)
    block = SelfAttention3d(8, key_channels=2)
    x = torch.randn(2, 8, 3, 3, 3)
    assert torch.equal(block(x), x)  # gamma = 0
    with torch.no_grad():
        block.gamma.fill_(0.7)
    q = block.query(x).flatten(2)  # (B, Ck, N)
    k = block.key(x).flatten(2)
    v = block.value(x).flatten(2)  # (B, C, N)
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / 2**0.5, dim=-1)  # (B, N, N)
    expected = x + 0.7 * torch.einsum("bcj,bij->bci", v, weights).view_as(x)
    torch.testing.assert_close(block(x), expected)


def test_attention_has_correct_first_and_second_derivatives():
    torch.manual_seed(0)
    block = SelfAttention3d(4, key_channels=2).double()
    with torch.no_grad():
        block.gamma.fill_(0.5)
    x = torch.randn(1, 4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))
    assert torch.autograd.gradgradcheck(block, (x,))


def test_gradient_penalty_reaches_the_attention_weights():
    """The penalty's backward is a double backward through the critic, attention included."""
    torch.manual_seed(0)
    critic = Critic(16, width=4, attention=(8, 4))
    for module in critic.modules():
        if isinstance(module, SelfAttention3d):
            module.gamma.data.fill_(0.5)
    real, fake = torch.rand(2, 3, 1, 16, 16, 16).unbind(0)
    penalty = gradient_penalty(critic, real, fake, None, torch.rand(3))
    penalty.backward()
    for module in critic.modules():
        if isinstance(module, SelfAttention3d):
            assert module.query.weight.grad is not None and module.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("resolution", [16, 32])
def test_lean_networks_make_no_feature_map_at_full_resolution(resolution):
    generator = Generator(
        resolution, width=4, attention=(8,), attention_pool=2, full_resolution_features=False
    )
    critic = Critic(resolution, width=4, attention=(4,), attention_pool=2, full_resolution_features=False)
    sizes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.append(o.shape))
        for m in [*generator.blocks, *critic.blocks]
    ]
    volumes = generator(torch.randn(3, 100))
    scores = critic(volumes)
    for hook in hooks:
        hook.remove()
    assert volumes.shape == (3, 1, resolution, resolution, resolution) and scores.shape == (3,)
    assert volumes.min() >= 0 and volumes.max() <= 1
    assert all(size[2] < resolution for size in sizes)  # every feature map is below R³


def test_pooled_attention_attends_to_pooled_keys_and_equals_plain_attention_on_constant_maps():
    torch.manual_seed(0)
    plain, pooled = SelfAttention3d(8, 2), SelfAttention3d(8, 2, pool=2)
    pooled.load_state_dict(plain.state_dict())
    for module in (plain, pooled):
        module.gamma.data.fill_(1.0)
    varying = torch.randn(2, 8, 8, 8, 8)
    assert pooled(varying).shape == varying.shape
    assert not torch.allclose(pooled(varying), plain(varying))
    # On a map that is constant within each 2³ cell, pooling the keys and values changes nothing.
    cells = torch.randn(2, 8, 4, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)
    assert torch.allclose(pooled(cells), plain(cells), atol=1e-5)


def test_networks_built_without_arguments_are_the_default_recipes():
    from voxgan.model.config import TrainConfig, build_networks

    expected_generator, expected_critic = build_networks(TrainConfig())
    for built, expected in ((Generator(), expected_generator), (Critic(), expected_critic)):
        assert repr(built) == repr(expected)
        shapes = {k: v.shape for k, v in built.state_dict().items()}
        assert shapes == {k: v.shape for k, v in expected.state_dict().items()}


def test_the_resize_output_layer_makes_no_checkerboard_where_the_transposed_one_does():
    """A constant feature map gives a constant volume inside (the faces see the zero padding)."""
    torch.manual_seed(0)
    for layer, patterned in (("transposed", True), ("resize", False)):
        generator = Generator(16, width=4, output_layer=layer)
        channels = generator.blocks[-1].conv.out_channels
        with torch.no_grad():
            volume = generator.to_volume(torch.ones(1, channels, 8, 8, 8))[0, 0, 2:-2, 2:-2, 2:-2]
        assert volume.shape == (12, 12, 12)
        assert (volume.max() - volume.min() > 1e-3) == patterned, layer


@pytest.mark.parametrize("shape", [(2, 1, 8, 8, 8), (3, 2, 4, 6, 2)])
@pytest.mark.parametrize("out_channels", [1, 3])
def test_the_phase_forms_are_the_library_convolutions_with_their_derivatives(shape, out_channels):
    """On the CPU the layers to and from the volume run as phase forms: the same function, first and second
    derivatives (the gradient penalty's) included, on non-cubic maps and any channel counts."""
    torch.manual_seed(0)
    double = dict(dtype=torch.float64)
    x = torch.randn(shape, **double, requires_grad=True)
    pairs = [
        (phase_conv3d, F.conv3d, torch.randn(out_channels, shape[1], 4, 4, 4, **double)),
        (phase_conv_transpose3d, F.conv_transpose3d, torch.randn(shape[1], out_channels, 4, 4, 4, **double)),
    ]
    for phase_form, library, weight in pairs:
        weight.requires_grad_(True)
        bias = torch.randn(out_channels, **double, requires_grad=True)
        strided = functools.partial(library, stride=2, padding=1)
        assert torch.allclose(phase_form(x, weight, bias), strided(x, weight, bias), atol=1e-12)
        assert torch.allclose(phase_form(x, weight, None), strided(x, weight, None), atol=1e-12)
        ours, theirs = derivatives(phase_form, x, weight, bias), derivatives(strided, x, weight, bias)
        for mine, reference in zip(ours, theirs, strict=True):
            assert torch.allclose(mine, reference, atol=1e-10)


def derivatives(convolution, x, weight, bias) -> list[torch.Tensor]:
    """The gradients of a fixed random projection of ``convolution(x, weight, bias)`` with respect to x,
    weight and bias, and that of the squared norm of its x-gradient with respect to the weight (what a
    gradient penalty differentiates)."""
    out = convolution(x, weight, bias)
    projection = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((out * projection).sum(), (x, weight, bias), create_graph=True)
    return [*grads, *torch.autograd.grad(grads[0].square().sum(), weight)]


def test_the_layers_to_and_from_the_volume_keep_their_weights_and_outputs():
    """VolumeConv3d / VolumeConvTranspose3d load the state dicts of the library layers they replace (the
    checkpoints written before them) and compute what those did."""
    torch.manual_seed(0)
    pairs = [
        (VolumeConv3d(1, 4), torch.nn.Conv3d(1, 4, 4, stride=2, padding=1), (2, 1, 16, 16, 16)),
        (
            VolumeConvTranspose3d(4, 1),
            torch.nn.ConvTranspose3d(4, 1, 4, stride=2, padding=1),
            (2, 4, 8, 8, 8),
        ),
    ]
    for volume_layer, library_layer, shape in pairs:
        volume_layer.load_state_dict(library_layer.state_dict())
        x = torch.rand(shape).contiguous(memory_format=torch.channels_last_3d)
        assert torch.allclose(volume_layer(x), library_layer(x), atol=1e-5)
    generator, critic = Generator(16, width=4), Critic(16, width=4)
    assert isinstance(generator.to_volume, VolumeConvTranspose3d)
    assert isinstance(critic.blocks[0].conv, VolumeConv3d) and type(critic.blocks[1].conv) is torch.nn.Conv3d
