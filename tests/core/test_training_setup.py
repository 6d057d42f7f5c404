"""Tests for preparing a training run: input checks, target labels, the initial model,
pixel sizes and source-free runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from _weights import same_state, state_of
from napari_domain_adapt.core import training_step
from napari_domain_adapt.core.config import LABEL_MODES, MODES
from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.lazy import ResampledVolume
from napari_domain_adapt.core.options import with_values
from napari_domain_adapt.core.patches import PatchSampler
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.core.preprocessing import preprocess
from napari_domain_adapt.core.resampling import resample_stack
from napari_domain_adapt.core.training import TrainEvent, TrainFinished, fit, train
from napari_domain_adapt.core.training_setup import (
    CHECK_PATCHES,
    CHECK_SEED,
    prepare,
    step_memory,
)
from napari_domain_adapt.core.training_step import train_step

# --- target labels -------------------------------------------------------------------------


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


# --- the source and the initial model ------------------------------------------------------


@pytest.mark.parametrize(("value", "kind"), [(0, "background"), (1, "structure")])
def test_source_labels_of_one_class_give_a_warning(tiny_config, sample_pair, value, kind):
    labels = np.full_like(sample_pair.source_labels, value)
    source = Domain(sample_pair.source_image, labels, name="source")
    with pytest.warns(UserWarning, match=f"every labelled pixel of the source is {kind}"):
        finished = fit(dataclasses.replace(tiny_config, steps=1), source)
    assert isinstance(finished, TrainFinished)


def test_initial_model_is_copied_not_changed(tiny_config, source, trained_model) -> None:
    initial = trained_model("batch")
    before = state_of(initial.network)
    finished = fit(dataclasses.replace(tiny_config, steps=2), source, initial=initial)
    assert finished.model.spec == initial.spec  # not tiny_config's group norm
    assert finished.model.network is not initial.network
    assert same_state(before, state_of(initial.network))
    assert not same_state(before, state_of(finished.model.network))
    fresh = fit(dataclasses.replace(tiny_config, steps=2), source)
    assert finished.history[0]["supervised_loss"] < fresh.history[0]["supervised_loss"]


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


# --- pixel sizes ---------------------------------------------------------------------------


def test_the_model_keeps_the_pixel_sizes_it_was_trained_at(tiny_config, sample_pair) -> None:
    source_size, target_size = PixelSize((4.0, 4.0), "nm"), PixelSize((0.01, 0.01), "µm")
    source = Domain(sample_pair.source_image, sample_pair.source_labels, pixel_size=source_size)
    target = Domain(sample_pair.target_image, pixel_size=target_size)
    model = fit(tiny_config, source, target).model
    assert model.metadata["pixel_size"] == {"sizes": [4.0, 4.0], "unit": "nm"}
    assert PixelSize.from_dict(model.metadata["target_pixel_size"]) == target_size
    unknown = fit(tiny_config, Domain(sample_pair.source_image, sample_pair.source_labels))
    assert "pixel_size" not in unknown.model.metadata


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


# --- source-free runs ----------------------------------------------------------------------


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
