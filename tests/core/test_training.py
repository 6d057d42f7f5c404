"""Tests for the training generator: every mode, gradient reversal, stop, seeds, previews."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_domain_adapt.core import training, training_step
from napari_domain_adapt.core.config import LABEL_MODES, MODES, TrainConfig
from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.inference import predict_tiled
from napari_domain_adapt.core.lazy import ResampledVolume
from napari_domain_adapt.core.models import grad_reverse
from napari_domain_adapt.core.options import with_values
from napari_domain_adapt.core.patches import PatchSampler
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.core.preprocessing import preprocess
from napari_domain_adapt.core.resampling import resample_stack
from napari_domain_adapt.core.training import (
    TrainControl,
    TrainEvent,
    TrainFinished,
    fit,
    train,
)
from napari_domain_adapt.core.training_setup import (
    CHECK_PATCHES,
    CHECK_SEED,
    prepare,
    step_memory,
)
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


def _adversarial(config: TrainConfig, **changes) -> TrainConfig:
    return dataclasses.replace(config, mode="adversarial", preview_interval=1e6, **changes)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- losses and schedule -------------------------------------------------------------------


def test_grl_lambda_schedule(tiny_config) -> None:
    config = _adversarial(tiny_config, steps=100, warmup_fraction=0.2)
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


def test_mean_entropy() -> None:
    assert mean_entropy(torch.full((4,), 0.5)) == pytest.approx(1.0)
    assert mean_entropy(torch.tensor([0.0, 1.0])) < 1e-4
    assert mean_entropy(torch.tensor([0.1, 0.9])) == pytest.approx(0.469, abs=1e-3)


# --- learning ------------------------------------------------------------------------------


def test_training_lowers_the_supervised_loss(tiny_config, source) -> None:
    config = dataclasses.replace(tiny_config, steps=40, preview_interval=1e6)
    finished = fit(config, source)
    losses = [entry["supervised_loss"] for entry in finished.history]
    assert len(losses) == 40
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.9 * first, (first, last)


def test_events_per_mode(tiny_config, source, target, sample_pair) -> None:
    events: list[TrainEvent] = []
    finished = fit(
        dataclasses.replace(tiny_config, steps=3), source, target, on_event=events.append
    )
    assert [e.step for e in events] == [1, 2, 3]
    assert all(e.total_steps == 3 for e in events)
    assert all(e.domain_loss is None and e.domain_accuracy is None for e in events)
    assert all(e.grl_lambda == 0.0 for e in events)
    assert finished.steps == 3
    assert not finished.stopped
    assert finished.device.startswith("cpu")
    assert [h["step"] for h in finished.history] == [1, 2, 3]
    assert not finished.model.network.training

    config = _adversarial(tiny_config, steps=4, warmup_fraction=0.5)
    events = []
    finished = fit(config, source, target, on_event=events.append)
    for event in events:
        assert event.domain_loss > 0
        assert 0.0 <= event.domain_accuracy <= 1.0
        assert 0.0 <= event.target_entropy <= 1.0
    assert [e.grl_lambda > 0 for e in events] == [False, False, True, True]
    assert finished.model.config.mode == "adversarial"
    assert finished.model.predict(sample_pair.target_image[0]).shape == (96, 96)


def _gradient_spy(monkeypatch) -> dict[str, torch.Tensor | float]:
    """Replace the GRL in training by one that records the gradients on both of its sides."""
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
    config = with_values(_adversarial(tiny_config, steps=10, warmup_fraction=0.0), BETA)
    run = prepare(config, source, target, None)
    classifier_before = copy.deepcopy(run.classifier)
    classifier_state, segmentor_state = _state(run.classifier), _state(run.segmentor)

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
    assert not _same_state(classifier_state, _state(run.classifier))
    assert not _same_state(segmentor_state, _state(run.segmentor))


def _unet_gradients(config: TrainConfig, source: Domain, target: Domain, step: int):
    run = prepare(config, source, target, None)
    classifier_state = _state(run.classifier)
    train_step(run, step)
    gradients = {n: p.grad.clone() for n, p in run.segmentor.named_parameters()}
    return gradients, not _same_state(classifier_state, _state(run.classifier))


def test_domain_loss_reaches_the_unet_only_through_lambda(tiny_config, source, target) -> None:
    config = with_values(_adversarial(tiny_config, steps=10, warmup_fraction=0.5), BETA)
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


# --- semi-supervised -----------------------------------------------------------------------


def _origins(patches: np.ndarray, stack: np.ndarray) -> list[tuple[int, int, int]]:
    """Where (slice, row, column) in ``stack`` each un-augmented patch occurs."""
    size = patches.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(stack, (size, size), axis=(1, 2))
    found = []
    for patch in patches[:, 0]:
        hits = np.argwhere((windows == patch).all(axis=(-2, -1)))
        assert len(hits), "a patch that is no window of the stack"
        found += [tuple(hit) for hit in hits.tolist()]
    return found


def test_semi_supervised_uses_only_labelled_target_slices(
    tiny_config, source, sample_pair
) -> None:
    labels = np.zeros_like(sample_pair.target_labels)
    labels[2] = sample_pair.target_labels[2]
    target = Domain(sample_pair.target_image, labels, name="target")
    config = dataclasses.replace(tiny_config, mode="semi-supervised", augment=False, batch_size=4)
    run = prepare(config, source, target, None)
    np.testing.assert_array_equal(run.target_labelled.slices, [2])
    batch = run.target_labelled.sample(24)
    places = _origins(batch.images, run.target_preview)
    assert {z for z, _, _ in places} == {2}
    for label, (_, y, x) in zip(batch.labels[:, 0], places, strict=True):
        np.testing.assert_array_equal(label, labels[2, y : y + 32, x : x + 32])
    # a control: the unlabelled target sampler does draw from the other slices
    assert {z for z, _, _ in _origins(run.target.sample(24).images, run.target_preview)} > {2}

    supervised, from_source = training_step._supervised_batch(run)
    assert from_source == 2  # target_label_fraction 0.5 of a batch of 4
    places = _origins(supervised.images[from_source:], run.target_preview)
    assert {z for z, _, _ in places} == {2}
    events = list(train(dataclasses.replace(config, steps=2), source, target))
    assert isinstance(events[-1], TrainFinished)
    assert events[0].domain_loss is not None


def test_semi_supervised_needs_labelled_slices(tiny_config, source, sample_pair) -> None:
    config = dataclasses.replace(tiny_config, mode="semi-supervised")
    empty = Domain(sample_pair.target_image, np.zeros_like(sample_pair.target_labels))
    with pytest.raises(InputError, match=r"at least one labelled target slice; .* are empty"):
        train(config, source, empty)
    unlabelled = Domain(sample_pair.target_image)
    with pytest.raises(InputError, match="semi-supervised mode needs target labels"):
        train(config, source, unlabelled)
    with pytest.raises(InputError, match="needs a target image; none was given"):
        train(config, source, None)


# --- control, seeds, previews --------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_cooperative_stop(tiny_config, source, target, k: int) -> None:
    control = TrainControl()
    events = []
    for event in train(dataclasses.replace(tiny_config, steps=20), source, target, control):
        events.append(event)
        if isinstance(event, TrainEvent) and event.step == k:
            control.stop()
    assert [type(e) for e in events] == [TrainEvent] * k + [TrainFinished]
    finished = events[-1]
    assert finished.stopped
    assert control.stopped
    assert finished.steps == k
    assert len(finished.history) == k
    runs = finished.model.metadata.pop("runs")
    assert finished.model.metadata == {
        "steps": k,
        "mode": "source-only",
        "stopped": True,
        "selected_step": k,
        "select_by": "last",
    }
    assert [{k: v for k, v in r.items() if k != "finished"} for r in runs] == [
        {
            "mode": "source-only",
            "steps": k,
            "stopped": True,
            "source": True,
            "target_labelled_slices": 0,
        }
    ]


def test_stop_before_the_first_step(tiny_config, source) -> None:
    control = TrainControl()
    control.stop()
    events = list(train(tiny_config, source, control=control))
    assert len(events) == 1
    assert events[0].steps == 0
    assert events[0].stopped


def test_seeded_runs_repeat_exactly(tiny_config, source, target) -> None:
    config = _adversarial(tiny_config, steps=6, warmup_fraction=0.0)
    a, b = fit(config, source, target), fit(config, source, target)
    assert a.history == b.history
    assert _same_state(_state(a.model.network), _state(b.model.network))
    c = fit(dataclasses.replace(config, seed=1), source, target)
    assert c.history != a.history
    assert not _same_state(_state(a.model.network), _state(c.model.network))


def test_cpu_training_runs_channels_last_and_returns_a_plain_layout(
    tiny_config, source, target
) -> None:
    config = _adversarial(tiny_config, steps=2, warmup_fraction=0.0)
    run = prepare(config, source, target, None)
    for network in (run.segmentor, run.teacher, run.classifier):
        convolutions = [p for p in network.parameters() if p.ndim == 4]
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
    finished = list(training._loop(run, TrainControl()))[-1]
    weights = [p for p in finished.model.network.parameters() if p.ndim == 4]
    assert all(p.is_contiguous() for p in weights)


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


def test_previews_follow_the_preview_index(tiny_config, source, target) -> None:
    control = TrainControl(preview_index=1)
    run = prepare(dataclasses.replace(tiny_config, steps=5), source, target, None)
    events = training._loop(run, control)
    for expected_index, next_index in [(1, 3), (3, 99), (3, -5), (0, 0)]:
        event = next(events)
        assert event.preview_index == expected_index
        assert event.preview.shape == (96, 96)
        assert event.preview.dtype == np.float32
        # the generator is paused, so the kept (averaged) network made the preview
        expected = predict_tiled(run.teacher, run.target_preview[expected_index])
        np.testing.assert_array_equal(event.preview, expected)
        control.preview_index = next_index  # out-of-range values are clipped


def test_previews_are_rationed(tiny_config, source, target) -> None:
    config = dataclasses.replace(tiny_config, steps=4, preview_interval=1e6)
    events = [e for e in train(config, source, target) if isinstance(e, TrainEvent)]
    assert [e.preview is not None for e in events] == [True, False, False, True]
    no_target = [e for e in train(config, source) if isinstance(e, TrainEvent)]
    assert all(e.preview is None for e in no_target)


def test_initial_model_is_copied_not_changed(tiny_config, source, trained_model) -> None:
    initial = trained_model("batch")
    before = _state(initial.network)
    finished = fit(dataclasses.replace(tiny_config, steps=2), source, initial=initial)
    assert finished.model.spec == initial.spec  # not tiny_config's group norm
    assert finished.model.network is not initial.network
    assert _same_state(before, _state(initial.network))
    assert not _same_state(before, _state(finished.model.network))
    fresh = fit(dataclasses.replace(tiny_config, steps=2), source)
    assert finished.history[0]["supervised_loss"] < fresh.history[0]["supervised_loss"]


# --- bad inputs ----------------------------------------------------------------------------


def test_bad_inputs_raise_at_once(tiny_config, source, target, sample_pair) -> None:
    """Every check happens when train() is called, before any step."""
    adversarial = _adversarial(tiny_config)
    with pytest.raises(InputError, match="the source needs labels"):
        train(tiny_config, Domain(sample_pair.source_image))
    with pytest.raises(InputError, match="mode 'adversarial' needs a target image; none"):
        train(adversarial, source)
    small = Domain(sample_pair.target_image[:, :20, :40], name="target")
    with pytest.raises(InputError, match="target slices are 20x40 pixels, smaller than the 32"):
        train(adversarial, source, small)
    small_source = Domain(
        sample_pair.source_image[:, :24], sample_pair.source_labels[:, :24], name="source"
    )
    with pytest.raises(InputError, match="source slices are 24x96 pixels"):
        train(tiny_config, small_source)
    # a small target is fine where no patches are drawn from it (source-only previews)
    assert isinstance(fit(dataclasses.replace(tiny_config, steps=1), source, small), TrainFinished)


def test_a_batch_larger_than_memory_is_refused_with_the_number(
    tiny_config, source, monkeypatch
) -> None:
    """Refused before any step, rather than grown until the system kills the process."""
    huge = dataclasses.replace(tiny_config, batch_size=100_000)
    assert step_memory(huge) == 100_000 * step_memory(dataclasses.replace(huge, batch_size=1))
    free = "napari_domain_adapt.core.device.available_memory"
    monkeypatch.setattr(free, lambda _=None: step_memory(huge) - 1)
    needed = f"needs about {step_memory(huge) / 2**30:.1f} GiB"
    with pytest.raises(InputError, match=rf"batch size 100000 with 32-pixel patches {needed}"):
        train(huge, source)
    monkeypatch.setattr(free, lambda _=None: step_memory(tiny_config))
    assert isinstance(fit(dataclasses.replace(tiny_config, steps=1), source), TrainFinished)


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


def test_scribbles_train_only_on_annotated_pixels(tiny_config, source, sample_pair) -> None:
    scribbles = np.zeros_like(sample_pair.target_labels)
    scribbles[2, 10, 5:40] = 1 + sample_pair.target_labels[2, 10, 5:40]  # 1 bg, 2 membrane
    scribbles[2, 50:60, 30] = 1 + sample_pair.target_labels[2, 50:60, 30]
    target = Domain(sample_pair.target_image, scribbles, label_kind="sparse")
    config = dataclasses.replace(tiny_config, mode="semi-supervised")
    run = prepare(config, source, target, None)
    assert list(run.target_labelled.slices) == [2]
    batch = run.target_labelled.sample(16)
    # Only scribbled pixels weigh in the loss, and only they carry a label of 1.
    assert 0 < batch.weights.mean() < 0.05
    assert np.all(batch.labels[batch.weights == 0] == 0)
    finished = fit(config, source, target)
    assert finished.steps == config.steps


@pytest.mark.parametrize("mode", MODES)
def test_only_the_label_modes_learn_from_target_labels(
    tiny_config, source, sample_pair, mode
) -> None:
    labels = np.zeros_like(sample_pair.target_labels)
    labels[2] = sample_pair.target_labels[2]
    target = Domain(sample_pair.target_image, labels, name="target")
    config = dataclasses.replace(tiny_config, mode=mode, batch_size=4)
    if mode not in LABEL_MODES:  # refused, not silently ignored (the CLI's and widget's rule)
        with pytest.raises(InputError, match=f"mode {mode} does not use them"):
            prepare(config, source, target, None)
        return
    run = prepare(config, source, target, None)
    _, from_source = training_step._supervised_batch(run)
    assert list(run.target_labelled.slices) == [2]
    assert from_source == 2  # half of the supervised batch from the labelled slice


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
    before = _state(run.teacher)
    student_before = _state(run.segmentor)
    values = train_step(run, step=config.steps)  # full ramp: the consistency loss is on
    assert values["consistency_loss"] is not None
    assert 0.0 <= values["confident_fraction"] <= 1.0
    assert all(p.grad is None for p in run.teacher.parameters())
    assert not _same_state(student_before, _state(run.segmentor))
    # The teacher's weights moved only by the moving average: 0.99 * old + 0.01 * new
    # student; its buffers (BatchNorm's running statistics) are the student's.
    after, student = _state(run.teacher), _state(run.segmentor)
    weights = {name for name, _ in run.teacher.named_parameters()}
    for name, old in before.items():
        expected = 0.99 * old + 0.01 * student[name] if name in weights else student[name]
        torch.testing.assert_close(after[name], expected, atol=1e-6, rtol=1e-5)


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


def test_previews_are_background_outside_the_field_of_view(tiny_config, source, sample_pair):
    masks = np.ones(sample_pair.target_image.shape, bool)
    masks[:, :, :10] = False
    target = Domain(sample_pair.target_image, masks=masks, name="target")
    config = dataclasses.replace(tiny_config, steps=1, preview_interval=0.0)
    event = next(e for e in train(config, source, target) if isinstance(e, TrainEvent))
    assert (event.preview[:, :10] == 0).all()
    assert event.preview[:, 10:].any()


def test_the_model_keeps_the_pixel_sizes_it_was_trained_at(tiny_config, sample_pair) -> None:
    source_size, target_size = PixelSize((4.0, 4.0), "nm"), PixelSize((0.01, 0.01), "µm")
    source = Domain(sample_pair.source_image, sample_pair.source_labels, pixel_size=source_size)
    target = Domain(sample_pair.target_image, pixel_size=target_size)
    model = fit(tiny_config, source, target).model
    assert model.metadata["pixel_size"] == {"sizes": [4.0, 4.0], "unit": "nm"}
    assert PixelSize.from_dict(model.metadata["target_pixel_size"]) == target_size
    unknown = fit(tiny_config, Domain(sample_pair.source_image, sample_pair.source_labels))
    assert "pixel_size" not in unknown.model.metadata


@pytest.mark.parametrize(("value", "kind"), [(0, "background"), (1, "structure")])
def test_source_labels_of_one_class_give_a_warning(tiny_config, sample_pair, value, kind):
    labels = np.full_like(sample_pair.source_labels, value)
    source = Domain(sample_pair.source_image, labels, name="source")
    with pytest.warns(UserWarning, match=f"every labelled pixel of the source is {kind}"):
        finished = fit(dataclasses.replace(tiny_config, steps=1), source)
    assert isinstance(finished, TrainFinished)


def test_a_target_at_another_scale_is_trained_on_at_the_sources(tiny_config, source, sample_pair):
    """Source at 4 nm, target at 8 nm: the target's patches come from it zoomed by 2, the
    previews lie on its own grid, and the model keeps both pixel sizes."""
    source.pixel_size = PixelSize((4.0, 4.0), "nm")
    target = Domain(
        sample_pair.target_image, name="target", pixel_size=PixelSize((8.0, 8.0), "nm")
    )
    config = dataclasses.replace(tiny_config, mode="mean-teacher", preview_interval=0.0)
    run = prepare(config, source, target, None)
    height, width = sample_pair.target_image.shape[1:]
    assert run.target_preview.shape[1:] == (2 * height, 2 * width)
    assert run.target_grid == (height, width)
    events = list(train(config, source, target))
    previews = [e.preview for e in events if isinstance(e, TrainEvent) and e.preview is not None]
    assert previews
    assert all(preview.shape == (height, width) for preview in previews)
    model = events[-1].model
    assert model.pixel_size == PixelSize((4.0, 4.0), "nm")
    assert model.metadata["target_pixel_size"] == PixelSize((8.0, 8.0), "nm").to_dict()
    assert model.zoom_for(target.pixel_size) == pytest.approx(2.0)


def test_matching_pixel_sizes_can_be_turned_off(tiny_config, source, sample_pair):
    source.pixel_size = PixelSize((4.0, 4.0), "nm")
    target = Domain(
        sample_pair.target_image, name="target", pixel_size=PixelSize((8.0, 8.0), "nm")
    )
    config = with_values(tiny_config, {"mode": "mean-teacher", "alignment.pixel_size": False})
    run = prepare(config, source, target, None)
    assert run.target_preview.shape == sample_pair.target_image.shape
    assert run.target_grid is None


def test_a_lazy_target_at_another_scale_is_trained_on_at_the_sources(
    tiny_config, source, sample_pair
):
    """A zarr target at 8 nm and a 4 nm source: the target is read patch by patch on the
    working grid, its patches are those of the target resampled in memory (the same draws:
    the same seed), and the run trains, previews on the target's grid, and keeps both
    pixel sizes."""
    import zarr

    source.pixel_size = PixelSize((4.0, 4.0), "nm")
    size = PixelSize((8.0, 8.0), "nm")
    lazy = Domain(zarr.array(sample_pair.target_image, chunks=(1, 32, 32)), pixel_size=size)
    in_memory = Domain(sample_pair.target_image, name="target", pixel_size=size)
    config = dataclasses.replace(tiny_config, mode="mean-teacher", preview_interval=0.0)
    config = with_values(config, {"selection.every": 2})
    run = prepare(config, source, lazy, None)
    height, width = sample_pair.target_image.shape[1:]
    assert isinstance(run.target_preview, ResampledVolume)
    assert run.target_preview.shape == (4, 2 * height, 2 * width)
    assert run.target_grid == (height, width)
    # The same windows of the target preprocessed, then resampled in memory (the seed's).
    whole = resample_stack(
        preprocess(sample_pair.target_image, config.preprocessing), 2.0, order=1
    )
    checks = np.random.default_rng(config.seed + CHECK_SEED)
    replay = PatchSampler(whole, config.patch_size, checks, augment=False)
    expected = replay.sample(CHECK_PATCHES, jitter=False).images[:, 0]
    np.testing.assert_allclose(run.check_patches, expected, rtol=0, atol=1e-5)
    assert run.check_patches.shape == (CHECK_PATCHES, 32, 32)
    # A run on the target in memory draws the same windows; its intensity range comes from
    # the resampled slices, a lazy one's from the slices as given: nearly the same values.
    in_memory_run = prepare(config, source, in_memory, None)
    for run_a, run_b in [(run, in_memory_run)] * 3:
        patches = [r.target.sample(4, jitter=False).images for r in (run_a, run_b)]
        assert np.abs(patches[0] - patches[1]).mean() < 0.05
        assert np.corrcoef(patches[0].ravel(), patches[1].ravel())[0, 1] > 0.995
    again = prepare(config, source, lazy, None)
    np.testing.assert_array_equal(again.check_patches, run.check_patches)

    events = list(train(dataclasses.replace(config, steps=3), source, lazy))
    previews = [e.preview for e in events if isinstance(e, TrainEvent) and e.preview is not None]
    assert previews
    assert all(preview.shape == (height, width) for preview in previews)
    finished = events[-1]
    assert finished.steps == 3
    assert finished.model.pixel_size == PixelSize((4.0, 4.0), "nm")
    assert finished.model.metadata["target_pixel_size"] == size.to_dict()


@pytest.mark.parametrize("lazy", [False, True])
def test_a_target_smaller_than_a_patch_once_resampled_is_refused(
    tiny_config, source, sample_pair, lazy
):
    """A 96x96 target at 4 nm beside an 8 nm source is 48x48 pixels at the source's pixel
    size: too small for 64-pixel patches, and the message says why."""
    import zarr

    source.pixel_size = PixelSize((8.0, 8.0), "nm")
    images = sample_pair.target_image
    images = zarr.array(images, chunks=(1, 32, 32)) if lazy else images
    target = Domain(images, name="target", pixel_size=PixelSize((4.0, 4.0), "nm"))
    config = dataclasses.replace(tiny_config, mode="mean-teacher", patch_size=64)
    message = (
        "target (resampled by 0.5 to the source's pixel size from 96x96 pixels) slices are "
        "48x48 pixels, smaller than the 64-pixel training patch; choose a patch size of at "
        "most 48"
    )
    with pytest.raises(InputError) as error:
        prepare(config, source, target, None)
    assert str(error.value) == message
    prepare(dataclasses.replace(config, patch_size=48), source, target, None)


def test_source_free_adaptation_starts_teacher_and_student_from_the_model(
    tiny_config, trained_model, sample_pair
):
    """No source: the mean teacher adapts the model to the target alone; teacher and
    student start equal to it, and only target patches are seen."""
    start = trained_model("batch")
    start = dataclasses.replace(
        start, metadata={**start.metadata, "pixel_size": PixelSize((4.0, 4.0), "nm").to_dict()}
    )
    target = Domain(sample_pair.target_image, name="target")
    config = dataclasses.replace(tiny_config, mode="mean-teacher", steps=3)
    run = prepare(config, None, target, start)
    assert run.source is None
    for network in (run.segmentor, run.teacher):
        for name, value in start.network.state_dict().items():
            assert torch.equal(network.state_dict()[name].cpu(), value.cpu()), name
    supervised, from_source = training_step._supervised_batch(run)
    assert (len(supervised.images), from_source) == (0, 0)  # nothing labelled to learn from
    result = train_step(run, 1)
    assert result["supervised_loss"] == 0.0
    assert result["consistency_loss"] > 0  # pseudo-labels from the start: no warm-up
    finished = fit(config, None, target, initial=start)
    assert finished.model.pixel_size == PixelSize((4.0, 4.0), "nm")  # the model's, kept
    before, after = start.network.state_dict(), finished.model.network.state_dict()
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_source_free_adaptation_learns_from_labelled_target_slices(
    tiny_config, trained_model, sample_pair
):
    labels = np.zeros_like(sample_pair.target_labels)
    labels[1] = sample_pair.target_labels[1]
    target = Domain(sample_pair.target_image, labels, name="target")
    config = dataclasses.replace(tiny_config, mode="mean-teacher", batch_size=4)
    run = prepare(config, None, target, trained_model("batch"))
    supervised, from_source = training_step._supervised_batch(run)
    assert (len(supervised.images), from_source) == (4, 0)  # all from the labelled slice
    assert list(run.target_labelled.slices) == [1]


@pytest.mark.parametrize(
    ("mode", "with_model", "with_target", "message"),
    [
        ("mean-teacher", False, True, "starts from a trained model"),
        ("adversarial", True, True, "mode adversarial needs the labelled source"),
        ("source-only", True, True, "mode source-only needs the labelled source"),
        ("mean-teacher", True, False, "learns from the target; none was given"),
    ],
)
def test_a_run_without_a_source_is_refused_where_it_cannot_learn(
    tiny_config, trained_model, sample_pair, mode, with_model, with_target, message
):
    target = Domain(sample_pair.target_image, name="target") if with_target else None
    model = trained_model("batch") if with_model else None
    config = dataclasses.replace(tiny_config, mode=mode)
    with pytest.raises(InputError, match=message):
        prepare(config, None, target, model)


def test_a_model_keeps_the_runs_it_went_through(tiny_config, source, trained_model, sample_pair):
    """The model's history: the runs of the model it started from, then this one."""
    start = trained_model("batch")
    start = dataclasses.replace(
        start, metadata={**start.metadata, "runs": [{"mode": "source-only", "steps": 60}]}
    )
    labels = np.zeros_like(sample_pair.target_labels)
    labels[0] = sample_pair.target_labels[0]
    target = Domain(sample_pair.target_image, labels, name="target")
    config = dataclasses.replace(tiny_config, mode="mean-teacher", steps=2)
    runs = fit(config, None, target, initial=start).model.metadata["runs"]
    assert runs[0] == {"mode": "source-only", "steps": 60}
    assert {k: runs[1][k] for k in ("mode", "steps", "source", "target_labelled_slices")} == {
        "mode": "mean-teacher",
        "steps": 2,
        "source": False,
        "target_labelled_slices": 1,
    }
