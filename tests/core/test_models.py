"""Tests for the networks: gradient reversal, U-Net shapes for any input, domain classifier."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_domain_adapt.core.config import MIN_DOMAIN_PATCH, NORMS, ModelSpec
from napari_domain_adapt.core.models import (
    DomainClassifier,
    UNet,
    activation_count,
    estimate_batch_statistics,
    fold_batch_norm,
    grad_reverse,
)


@pytest.mark.parametrize("coefficient", [0.3, 1.0, 2.5])
def test_gradient_reversal_negates_and_scales(coefficient: float) -> None:
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    upstream = torch.tensor([1.0, 2.0, -4.0])
    y = grad_reverse(x, coefficient)
    torch.testing.assert_close(y, x)  # identity forward
    (y * upstream).sum().backward()
    expected = torch.tensor([-1.0, -2.0, 4.0]) * coefficient
    torch.testing.assert_close(x.grad, expected)


def test_gradient_reversal_exact_values_for_lambda_0_3() -> None:
    x = torch.tensor([[0.5, 0.25]], requires_grad=True)
    (grad_reverse(x, 0.3) * torch.tensor([[2.0, -10.0]])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[-0.6, 3.0]]))


def test_gradient_reversal_zero_blocks_and_default_is_one() -> None:
    x = torch.ones(4, requires_grad=True)
    grad_reverse(x, 0.0).sum().backward()
    assert torch.equal(x.grad, torch.zeros(4))
    x.grad = None
    (3 * grad_reverse(x)).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((4,), -3.0))


def test_gradient_reversal_inside_a_chain() -> None:
    """The reversal sits between two functions; both chain-rule factors still apply."""
    x = torch.tensor([2.0], requires_grad=True)
    y = grad_reverse(x**2, 0.5) * 3  # d/dx = -0.5 * 3 * 2x = -6 at x = 2
    y.backward()
    torch.testing.assert_close(x.grad, torch.tensor([-6.0]))


SHAPES = [(37, 53), (1, 1), (1, 2), (3, 5), (2, 2), (16, 16), (64, 24), (5, 70)]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_unet_keeps_any_shape(norm: str, depth: int) -> None:
    torch.manual_seed(0)
    net = UNet(ModelSpec(depth=depth, width=4, norm=norm))
    assert net.multiple == 2**depth
    for training in (True, False):
        net.train(training)
        for height, width in SHAPES:
            for batch in (1, 2):
                out = net(torch.randn(batch, 1, height, width))
                assert out.shape == (batch, 1, height, width), (norm, depth, height, width)
                assert torch.isfinite(out).all()


@pytest.mark.parametrize("norm", NORMS)
def test_unet_narrow_network_on_tiny_inputs(norm: str) -> None:
    """Width 1 puts one channel per GroupNorm group; a 1x1 bottom would break every norm."""
    net = UNet(ModelSpec(depth=2, width=1, norm=norm)).train()
    for shape in [(1, 1), (4, 4), (3, 4)]:
        assert net(torch.randn(1, 1, *shape)).shape == (1, 1, *shape)


def test_unet_output_depends_on_input_and_gets_gradients() -> None:
    torch.manual_seed(0)
    net = UNet(ModelSpec(depth=2, width=4)).eval()
    x = torch.randn(1, 1, 37, 53, requires_grad=True)
    out = net(x)
    assert not torch.allclose(out, net(torch.randn(1, 1, 37, 53)))
    out.sum().backward()
    assert x.grad is not None
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_unet_multichannel_input() -> None:
    net = UNet(ModelSpec(depth=2, width=4), in_channels=3)
    assert net(torch.randn(2, 3, 20, 30)).shape == (2, 1, 20, 30)


@pytest.mark.parametrize("size", [MIN_DOMAIN_PATCH, 32, 48, 128])
def test_domain_classifier_gives_one_logit_per_map(size: int) -> None:
    torch.manual_seed(0)
    classifier = DomainClassifier(width=4)
    maps = torch.rand(3, 1, size, size, requires_grad=True)
    logits = classifier(maps)
    assert logits.shape == (3,)
    logits.sum().backward()
    assert maps.grad.abs().sum() > 0


def test_domain_classifier_minimum_patch_matches_config() -> None:
    """The configuration refuses adversarial patches below the classifier's minimum."""
    classifier = DomainClassifier(width=4)
    assert classifier(torch.rand(1, 1, MIN_DOMAIN_PATCH, MIN_DOMAIN_PATCH)).shape == (1,)
    with pytest.raises(RuntimeError):
        classifier(torch.rand(1, 1, MIN_DOMAIN_PATCH // 2, MIN_DOMAIN_PATCH // 2))


def test_estimate_batch_statistics_averages_over_the_batches() -> None:
    network = UNet(ModelSpec(depth=1, width=4, norm="batch"))
    first = next(m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d))
    batches = [torch.randn(2, 1, 16, 16) * 3 + 5, torch.randn(2, 1, 16, 16) * 3 + 9]
    assert estimate_batch_statistics(network, batches)
    # The first BatchNorm follows a bias-free convolution of the input: its running mean is
    # the mean of the per-batch means, not the last batch's or a momentum-weighted one.
    with torch.no_grad():
        conv = network.down[0][0]
        means = [conv(b).mean(dim=(0, 2, 3)) for b in batches]
    torch.testing.assert_close(first.running_mean, (means[0] + means[1]) / 2)
    assert first.momentum == 0.1
    assert not network.training


def test_estimate_batch_statistics_leaves_other_norms_alone() -> None:
    network = UNet(ModelSpec(depth=1, width=4, norm="channel"))
    before = [p.clone() for p in network.state_dict().values()]
    assert not estimate_batch_statistics(network, [torch.randn(2, 1, 16, 16)])
    after = list(network.state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_fold_batch_norm_keeps_the_output() -> None:
    torch.manual_seed(0)
    network = UNet(ModelSpec(depth=2, width=4, norm="batch"))
    for name, buffer in network.named_buffers():  # statistics away from 0 and 1
        if name.endswith("running_mean"):
            buffer.normal_(0, 0.5)
        elif name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    network.eval()
    image = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = network(image)
        folded = fold_batch_norm(copy.deepcopy(network))
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(image), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("depth", "width", "side"), [(1, 2, 8), (2, 4, 32), (3, 3, 48)])
def test_activation_count_is_the_sum_of_the_layer_outputs(depth, width, side) -> None:
    spec = ModelSpec(depth=depth, width=width)
    network = UNet(spec)
    seen: list[int] = []
    for module in network.modules():
        if not list(module.children()):  # every layer: convolutions, norms, ReLUs
            module.register_forward_hook(lambda _, __, output: seen.append(output.numel()))
    concatenated = sum(2 * width * 2**level * (side // 2**level) ** 2 for level in range(depth))
    network(torch.zeros(1, 1, side, side))
    assert activation_count(spec, side) == sum(seen) + concatenated
