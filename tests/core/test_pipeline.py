"""The one pipeline that the CLI and the widget call: train, then predict; open inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tifffile
import zarr

from napari_domain_adapt.core import (
    Domain,
    InputError,
    PixelSize,
    PredictionDone,
    PredictionStarted,
    SlicePredicted,
    TargetPrediction,
    TrainEvent,
    TrainFinished,
    open_source,
    open_target,
    predict,
    train_and_predict,
)


def _kinds(events) -> list[type]:
    return [type(event) for event in events]


def test_train_and_predict_trains_then_predicts_the_target(tiny_config, source, sample_pair):
    target = Domain(sample_pair.target_image, name="target")
    prediction = TargetPrediction(sample_pair.target_image)
    events = list(train_and_predict(tiny_config, source, target, prediction=prediction))
    steps = tiny_config.steps
    assert _kinds(events)[: steps + 2] == [TrainEvent] * steps + [TrainFinished, PredictionStarted]
    assert [e.done for e in events if isinstance(e, SlicePredicted)] == [1, 2, 3, 4]
    assert isinstance(events[-1], PredictionDone)
    assert events[-1].probabilities.shape == sample_pair.target_image.shape


def test_without_a_prediction_the_run_ends_with_the_model(tiny_config, source, sample_pair):
    target = Domain(sample_pair.target_image, name="target")
    events = list(train_and_predict(tiny_config, source, target))
    assert isinstance(events[-1], TrainFinished)


def test_bad_input_is_refused_before_the_first_event(tiny_config, sample_pair):
    unlabelled = Domain(sample_pair.source_image, name="source")
    with pytest.raises(InputError, match="the source needs labels"):
        train_and_predict(tiny_config, unlabelled)


def test_labelled_target_slices_are_refused_by_modes_that_ignore_them(
    tiny_config, source, sample_pair
):
    labels = np.zeros_like(sample_pair.target_labels)
    labels[2] = sample_pair.target_labels[2]
    target = Domain(sample_pair.target_image, labels, name="target")
    for mode in ("source-only", "adversarial"):
        config = dataclasses.replace(tiny_config, mode=mode)
        with pytest.raises(InputError, match=f"mode {mode} does not use them"):
            train_and_predict(config, source, target)


def test_predict_keeps_single_images_single(trained_model, sample_pair):
    model = trained_model()
    image = sample_pair.target_image[0]
    done = list(predict(model, image, name="x"))[-1]
    assert done.probabilities.shape == image.shape
    assert done.target == "x"
    assert 0 <= done.probabilities.min() <= done.probabilities.max() <= 1
    colour = np.repeat(image[..., np.newaxis], 3, axis=-1)
    assert list(predict(model, colour, rgb=True))[-1].probabilities.shape == image.shape
    fast = list(predict(model, image, amp=True))[-1].probabilities
    assert not np.array_equal(fast, done.probabilities)  # bfloat16 on the CPU
    np.testing.assert_allclose(fast, done.probabilities, rtol=0, atol=5e-2)


def test_predict_thresholds_into_a_mask(trained_model, sample_pair):
    model = trained_model()
    probabilities = list(predict(model, sample_pair.target_image))[-1].probabilities
    mask = list(predict(model, sample_pair.target_image, threshold=0.5))[-1].probabilities
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (probabilities >= 0.5) * 255)
    with pytest.raises(InputError, match="threshold"):
        predict(model, sample_pair.target_image, threshold=1.5)


def test_predict_into_a_store_goes_slice_by_slice(trained_model, sample_pair, tmp_path):
    model = trained_model()
    volume = sample_pair.target_image
    store = tmp_path / "out.zarr"
    size = PixelSize((50.0, 4.0, 4.0), "nm")
    events = list(predict(model, zarr.array(volume), store=store, pixel_size=size))
    assert _kinds(events) == [PredictionStarted] + [SlicePredicted] * len(volume) + [
        PredictionDone
    ]
    assert [e.done for e in events[1:-1]] == list(range(1, len(volume) + 1))
    in_memory = list(predict(model, volume))[-1].probabilities
    np.testing.assert_allclose(np.asarray(events[-1].probabilities), in_memory, atol=1e-5)
    scale = zarr.open_group(str(store), mode="r").attrs["multiscales"][0]["datasets"][0]
    assert scale["coordinateTransformations"][0]["scale"] == [50.0, 4.0, 4.0]


def test_a_stopped_prediction_into_a_store_leaves_nothing(trained_model, sample_pair, tmp_path):
    store = tmp_path / "out.zarr"
    events = predict(trained_model(), zarr.array(sample_pair.target_image), store=store)
    next(events), next(events)  # started, one slice written
    events.close()  # what a worker's quit does to its generator
    assert not store.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_lazy_image_needs_a_store(trained_model, sample_pair):
    with pytest.raises(InputError, match="give a store"):
        predict(trained_model(), zarr.array(sample_pair.target_image))


def _dataset(root, images, labels) -> None:
    for split in ("train", "test"):
        for kind, stack in (("images", images), ("labels", labels * 255)):
            folder = root / split / kind
            folder.mkdir(parents=True)
            for index, plane in enumerate(stack):
                tifffile.imwrite(folder / f"s{index}.tif", plane)


def test_open_source_and_target_from_paths(sample_pair, tmp_path):
    _dataset(tmp_path / "src", sample_pair.source_image, sample_pair.source_labels)
    _dataset(tmp_path / "tgt", sample_pair.target_image, sample_pair.target_labels)
    size = PixelSize((4.0, 4.0), "nm")
    source = open_source(tmp_path / "src", pixel_size=size)
    assert source.labels is not None
    assert source.pixel_size == size
    target, test = open_target(tmp_path / "tgt", label_slices=[1])
    assert list(target.labelled_slices()) == [1]
    np.testing.assert_array_equal(target.labels[1], sample_pair.target_labels[1])
    assert test is not None
    assert test.labels is not None
    unlabelled, _ = open_target(tmp_path / "tgt")
    assert unlabelled.labels is None
    with pytest.raises(InputError, match="out of range"):
        open_target(tmp_path / "tgt", label_slices=[99])
    with pytest.raises(InputError, match="give its labels"):
        open_source(tmp_path / "src" / "train" / "images" / "s0.tif")
    with pytest.raises(InputError, match="does not exist"):
        open_source(tmp_path / "nowhere")


def test_open_target_reads_a_zarr_volume_lazily(sample_pair, tmp_path):
    path = tmp_path / "t.zarr"
    zarr.save_array(str(path), sample_pair.target_image)
    target, test = open_target(path)
    assert target.lazy
    assert test is None
    with pytest.raises(InputError, match="takes no labels"):
        open_target(path, labels=path)


def test_predict_resamples_in_memory_and_out_of_core(trained_model, sample_pair, tmp_path):
    """An image at another scale than the model's is resampled to its pixel size and the
    result brought back, in memory and out of core alike (the same probabilities)."""
    model = trained_model()
    model = dataclasses.replace(
        model, metadata={**model.metadata, "pixel_size": PixelSize((4.0, 4.0), "nm").to_dict()}
    )
    image, coarse = sample_pair.target_image[:2], PixelSize((8.0, 8.0), "nm")
    done = list(predict(model, image, pixel_size=coarse))[-1].probabilities
    np.testing.assert_array_equal(done, model.predict(image, pixel_size=coarse))
    events = predict(model, zarr.array(image), store=tmp_path / "o.zarr", pixel_size=coarse)
    stored = np.asarray(list(events)[-1].probabilities)
    assert stored.shape == image.shape
    np.testing.assert_allclose(stored, done, atol=1e-5)
    events = predict(
        model, zarr.array(image), store=tmp_path / "m.zarr", pixel_size=coarse, threshold=0.5
    )
    mask = np.asarray(list(events)[-1].probabilities)
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask, (done >= 0.5) * 255)  # thresholded on its grid
