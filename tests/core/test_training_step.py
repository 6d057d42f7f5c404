"""Tests for one training step: the losses, the schedule, gradient reversal, the teacher."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _weights import adversarial_config, same_state, state_of
from napari_domain_adapt.core import training_step
from napari_domain_adapt.core.config import LABEL_MODES, TrainConfig
from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.models import grad_reverse
from napari_domain_adapt.core.options import with_values
from napari_domain_adapt.core.training_setup import prepare
from napari_domain_adapt.core.training_step import (
    confident_pseudo_labels,
    grl_lambda,
    mean_entropy,
    supervised_loss,
    train_step,
    update_teacher,
)

#: A domain loss half as heavy as the supervised one.
BETA = {"domain.beta": 0.5}


# --- losses and schedule -------------------------------------------------------------------


def test_grl_lambda_schedule(tiny_config) -> None:
    config = adversarial_config(tiny_config, steps=100, warmup_fraction=0.2)
    config = with_values(config, {"domain.lambda_max": 0.8})
    assert [grl_lambda(step, config) for step in (1, 10, 20)] == [0.0, 0.0, 0.0]
    ramp = [grl_lambda(step, config) for step in range(21, 101)]
    assert all(0 < a < b for a, b in itertools.pairwise(ramp))
    assert ramp[-1] == pytest.approx(0.8 * (2 / (1 + math.exp(-10)) - 1))
    assert grl_lambda(60, config) == pytest.approx(0.8 * (2 / (1 + math.exp(-5)) - 1))
    assert grl_lambda(100, dataclasses.replace(config, mode="source-only")) == 0.0


def test_supervised_loss_ignores_zero_weight_pixels() -> None:
    labels = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    weights = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    logits = torch.tensor([[[[5.0, -5.0], [-9.0, 9.0]]]])  # wrong only where weight is 0
    loss = supervised_loss(logits, labels, weights, dice_weight=1.0)
    flipped = logits.clone()
    flipped[..., 1, :] *= -1
    assert float(loss) == pytest.approx(float(supervised_loss(flipped, labels, weights, 1.0)))
    assert float(loss) < 0.05
    wrong = supervised_loss(-logits, labels, weights, dice_weight=1.0)
    assert float(wrong) > 2.0
    bce_only = supervised_loss(logits, labels, torch.ones_like(weights), dice_weight=0.0)
    expected = F.binary_cross_entropy_with_logits(logits, labels)
    assert float(bce_only) == pytest.approx(float(expected))


def test_unlabelled_pixels_send_no_gradient() -> None:
    """The masked loss of scribbles: pixels outside the annotation get exactly zero gradient."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=generator, requires_grad=True)
    labels = (torch.rand(2, 1, 8, 8, generator=generator) > 0.5).float()
    weights = torch.zeros(2, 1, 8, 8)
    weights[0, 0, 2, 3:6] = 1.0  # a short stroke
    weights[1, 0, 5:7, 1] = 1.0
    supervised_loss(logits, labels, weights, dice_weight=1.0).backward()
    assert torch.all(logits.grad[weights == 0] == 0)
    assert torch.all(logits.grad[weights == 1] != 0)


def test_mean_entropy() -> None:
    assert mean_entropy(torch.full((4,), 0.5)) == pytest.approx(1.0)
    assert mean_entropy(torch.tensor([0.0, 1.0])) < 1e-4
    assert mean_entropy(torch.tensor([0.1, 0.9])) == pytest.approx(0.469, abs=1e-3)


# --- the adversarial step ------------------------------------------------------------------


def _gradient_spy(monkeypatch) -> dict[str, torch.Tensor | float]:
    """Replace the GRL in the training step by one that records the gradients on both of its
    sides."""
    seen: dict[str, torch.Tensor | float] = {}

    def spy(x: torch.Tensor, coefficient: float) -> torch.Tensor:
        seen["lambda"] = coefficient
        seen["probabilities"] = x.detach().clone()
        x.register_hook(lambda grad: seen.__setitem__("into_unet", grad.clone()))
        out = grad_reverse(x, coefficient)
        out.register_hook(lambda grad: seen.__setitem__("from_domain", grad.clone()))
        return out

    monkeypatch.setattr(training_step, "grad_reverse", spy)
    return seen


def test_adversarial_step_reverses_the_domain_gradient(
    tiny_config, source, target, monkeypatch
) -> None:
    seen = _gradient_spy(monkeypatch)
    config = with_values(adversarial_config(tiny_config, steps=10, warmup_fraction=0.0), BETA)
    run = prepare(config, source, target, None)
    classifier_before = copy.deepcopy(run.classifier)
    classifier_state, segmentor_state = state_of(run.classifier), state_of(run.segmentor)

    result = train_step(run, 5)

    lam = grl_lambda(5, config)
    assert seen["lambda"] == result["grl_lambda"] == lam > 0
    from_domain, into_unet = seen["from_domain"], seen["into_unet"]
    assert from_domain.abs().sum() > 0
    # the U-Net's output receives the domain gradient times -lambda: opposite sign
    torch.testing.assert_close(into_unet, -lam * from_domain)
    assert float((into_unet * from_domain).sum()) < 0
    # and that gradient is beta times the domain loss's gradient w.r.t. the probabilities
    probabilities = seen["probabilities"].requires_grad_(True)
    is_source = torch.tensor([1.0] * config.batch_size + [0.0] * config.batch_size)
    domain_loss = F.binary_cross_entropy_with_logits(classifier_before(probabilities), is_source)
    assert float(domain_loss) == pytest.approx(result["domain_loss"], rel=1e-5)
    (expected,) = torch.autograd.grad(domain_loss, probabilities)
    torch.testing.assert_close(from_domain, config.domain.beta * expected)
    # both networks were updated
    assert not same_state(classifier_state, state_of(run.classifier))
    assert not same_state(segmentor_state, state_of(run.segmentor))


def _unet_gradients(config: TrainConfig, source: Domain, target: Domain, step: int):
    run = prepare(config, source, target, None)
    classifier_state = state_of(run.classifier)
    train_step(run, step)
    gradients = {n: p.grad.clone() for n, p in run.segmentor.named_parameters()}
    return gradients, not same_state(classifier_state, state_of(run.classifier))


def test_domain_loss_reaches_the_unet_only_through_lambda(tiny_config, source, target) -> None:
    config = with_values(adversarial_config(tiny_config, steps=10, warmup_fraction=0.5), BETA)
    without, classifier_moved = _unet_gradients(
        with_values(config, {"domain.beta": 0.0}), source, target, 8
    )
    assert not classifier_moved  # beta = 0: the domain loss has no weight at all
    adapting, classifier_moved = _unet_gradients(config, source, target, 8)
    assert classifier_moved
    assert any(not torch.allclose(adapting[n], without[n]) for n in without)
    # in warm-up lambda is 0: the classifier learns, the U-Net sees the supervised loss only
    warmup, classifier_moved = _unet_gradients(config, source, target, 2)
    assert classifier_moved
    for name, gradient in without.items():
        torch.testing.assert_close(warmup[name], gradient, rtol=1e-6, atol=1e-8)


# --- the mean teacher ----------------------------------------------------------------------


def test_teacher_is_a_moving_average_of_the_student() -> None:
    teacher, student = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        teacher.weight.fill_(1.0)
        student.weight.fill_(3.0)
    update_teacher(teacher, student, decay=0.75)
    torch.testing.assert_close(teacher.weight, torch.full((1, 2), 1.5))  # 0.75*1 + 0.25*3
    update_teacher(teacher, student, decay=0.0)
    torch.testing.assert_close(teacher.weight, student.weight)


def test_pseudo_labels_count_only_where_the_teacher_is_confident() -> None:
    probabilities = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.95])
    labels, weights = confident_pseudo_labels(probabilities, confidence=0.8)
    torch.testing.assert_close(labels, torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0]))


def test_mean_teacher_step_sends_no_gradient_to_the_teacher(tiny_config, source, target) -> None:
    config = dataclasses.replace(tiny_config, mode="mean-teacher", warmup_fraction=0.0)
    run = prepare(config, source, target, None)
    assert all(not p.requires_grad for p in run.teacher.parameters())
    before = state_of(run.teacher)
    student_before = state_of(run.segmentor)
    values = train_step(run, step=config.steps)  # full ramp: the consistency loss is on
    assert values["consistency_loss"] is not None
    assert 0.0 <= values["confident_fraction"] <= 1.0
    assert all(p.grad is None for p in run.teacher.parameters())
    assert not same_state(student_before, state_of(run.segmentor))
    # The teacher's weights moved only by the moving average: 0.99 * old + 0.01 * new
    # student; its buffers (BatchNorm's running statistics) are the student's.
    after, student = state_of(run.teacher), state_of(run.segmentor)
    weights = {name for name, _ in run.teacher.named_parameters()}
    for name, old in before.items():
        expected = 0.99 * old + 0.01 * student[name] if name in weights else student[name]
        torch.testing.assert_close(after[name], expected, atol=1e-6, rtol=1e-5)


# --- forward passes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "sizes"),
    [("source-only", [4]), ("adversarial", [4, 4]), ("semi-supervised", [2, 2 + 4])],
)
def test_each_domain_gets_a_forward_pass_of_its_own(
    tiny_config, source, sample_pair, mode, sizes
) -> None:
    """BatchNorm statistics per domain: source patches apart from target ones, labelled or not."""
    labels = np.zeros_like(sample_pair.target_labels)
    labels[0] = sample_pair.target_labels[0]
    given = labels if mode in LABEL_MODES else None  # the other modes refuse them
    target = Domain(sample_pair.target_image, given, name="target")
    config = dataclasses.replace(
        tiny_config, mode=mode, batch_size=4, patch_size=64, preview_interval=None
    )
    run = prepare(config, source, target, None)
    seen: list[int] = []
    run.segmentor.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    train_step(run, step=1)
    assert seen == sizes


@pytest.mark.parametrize("amp", [False, True])
def test_amp_runs_every_forward_pass_in_bfloat16(tiny_config, source, target, amp) -> None:
    config = dataclasses.replace(
        tiny_config, mode="adversarial+mean-teacher", warmup_fraction=0.0, amp=amp
    )
    run = prepare(config, source, target, None)
    seen: dict[str, set[torch.dtype]] = {}
    for name, layer in [
        ("segmentor", run.segmentor.head),
        ("teacher", run.teacher.head),
        ("classifier", run.classifier.classify),
    ]:
        layer.register_forward_hook(
            lambda m, i, out, name=name: seen.setdefault(name, set()).add(out.dtype)
        )
    values = train_step(run, 2)
    expected = torch.bfloat16 if amp else torch.float32
    assert seen == {name: {expected} for name in ("segmentor", "teacher", "classifier")}
    # weights, their gradients and the losses stay float32
    for network in (run.segmentor, run.classifier):
        assert all(p.dtype == torch.float32 for p in network.parameters())
        assert all(
            p.grad.dtype == torch.float32 for p in network.parameters() if p.grad is not None
        )
    losses = ("supervised_loss", "domain_loss", "consistency_loss")
    assert all(math.isfinite(values[name]) for name in losses)
