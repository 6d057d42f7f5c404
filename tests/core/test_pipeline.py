"""The one pipeline that the CLI and the widget call: train, then predict; open inputs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr

from napari_domain_adapt.core import (
    Domain,
    GuardVerdict,
    InputError,
    Judged,
    PixelSize,
    PredictionDone,
    PredictionStarted,
    SlicePredicted,
    TargetPrediction,
    TrainControl,
    TrainEvent,
    TrainFinished,
    judge,
    open_source,
    open_target,
    predict,
    train_and_predict,
)
from napari_domain_adapt.core import pipeline as _pipeline


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


def _probabilities(events) -> np.ndarray:
    return next(e for e in events if isinstance(e, PredictionDone)).probabilities


def test_with_a_baseline_the_run_is_judged_then_the_kept_model_predicts(
    tiny_config, source, sample_pair, trained_model
):
    """A real verdict between the baseline and the model trained, after TrainFinished and
    before the prediction, which the model kept makes."""
    baseline = trained_model()
    target = Domain(sample_pair.target_image, name="target")
    prediction = TargetPrediction(sample_pair.target_image)
    events = list(
        train_and_predict(
            tiny_config, source, target, prediction=prediction, baseline=baseline, keep_better=True
        )
    )
    kinds = _kinds(events)
    finished_at = kinds.index(TrainFinished)
    assert kinds[finished_at + 1 : finished_at + 3] == [Judged, PredictionStarted]
    assert kinds.count(Judged) == 1
    judged = events[finished_at + 1]
    trained = events[finished_at].model
    assert isinstance(judged.verdict, GuardVerdict)
    assert judged.verdict.prefer in ("source-only", "adapted")
    assert set(judged.verdict.estimates) == {"source-only", "adapted"}
    assert judged.reason == judged.verdict.reason
    expected = baseline if judged.verdict.prefer == "source-only" else trained
    assert judged.model is expected
    assert judged.kept == ("baseline" if expected is baseline else "adapted")
    _assert_predicted_by(expected, events, sample_pair.target_image)


def _assert_predicted_by(model, events, image) -> None:
    """The run's prediction is ``model``'s (up to float noise: slice by slice vs a stack)."""
    np.testing.assert_allclose(_probabilities(events), model.predict(image), rtol=0, atol=1e-5)


def _verdict(prefer: str) -> GuardVerdict:
    return GuardVerdict(prefer, {}, f"{prefer} model preferred: as the test says", "atc")


@pytest.mark.parametrize(
    ("prefer", "keep_better", "kept"),
    [
        ("source-only", True, "baseline"),
        ("source-only", False, "adapted"),
        ("adapted", True, "adapted"),
    ],
)
def test_keep_better_keeps_and_predicts_with_the_model_the_guard_prefers(
    tiny_config, source, sample_pair, trained_model, monkeypatch, prefer, keep_better, kept
):
    monkeypatch.setattr(_pipeline, "judge", lambda *args: _verdict(prefer))
    baseline = trained_model()
    target = Domain(sample_pair.target_image, name="target")
    run = train_and_predict(
        tiny_config,
        source,
        target,
        prediction=TargetPrediction(sample_pair.target_image),
        baseline=baseline,
        keep_better=keep_better,
    )
    events = list(run)
    finished = next(e for e in events if isinstance(e, TrainFinished))
    (judged,) = [e for e in events if isinstance(e, Judged)]
    assert judged.verdict.prefer == prefer
    assert judged.kept == kept
    assert judged.model is (baseline if kept == "baseline" else finished.model)
    _assert_predicted_by(judged.model, events, sample_pair.target_image)
    if kept == "adapted":  # the baseline predicts otherwise: the test can tell them apart
        other = baseline.predict(sample_pair.target_image)
        assert np.abs(_probabilities(events) - other).max() > 1e-2


def test_the_guard_never_sees_a_target_label(
    tiny_config, source, sample_pair, trained_model, monkeypatch
):
    """A mean teacher learns from a labelled target slice; the guard gets the target's
    images without their labels (and a real verdict from them)."""
    labels = np.zeros_like(sample_pair.target_labels)
    labels[1] = sample_pair.target_labels[1]
    target = Domain(sample_pair.target_image, labels, name="target")
    seen = []
    real = _pipeline.judge

    def spy(baseline, adapted, held, judged_target):
        seen.append(judged_target)
        return real(baseline, adapted, held, judged_target)

    monkeypatch.setattr(_pipeline, "judge", spy)
    config = dataclasses.replace(tiny_config, mode="mean-teacher")
    events = list(train_and_predict(config, source, target, baseline=trained_model()))
    (judged,) = [e for e in events if isinstance(e, Judged)]
    assert judged.verdict is not None
    (given,) = seen
    assert given.labels is None
    assert given.annotated is None
    np.testing.assert_array_equal(given.images, target.images)
    np.testing.assert_array_equal(target.labels[1], sample_pair.target_labels[1])  # untouched


def test_a_stopped_run_is_judged_too(tiny_config, source, sample_pair, trained_model):
    control = TrainControl()
    target = Domain(sample_pair.target_image, name="target")
    config = dataclasses.replace(tiny_config, steps=50)
    kinds = []
    for event in train_and_predict(
        config, source, target, control=control, baseline=trained_model()
    ):
        kinds.append(type(event))
        if isinstance(event, TrainEvent) and event.step == 2:
            control.stop()
        if isinstance(event, TrainFinished):
            assert event.stopped
    assert kinds[-2:] == [TrainFinished, Judged]
    assert len(kinds) < 10


def test_where_the_guard_cannot_judge_it_says_why(
    tiny_config, source, sample_pair, trained_model, tmp_path
):
    """Source-free (no labelled source): the model trained is kept and predicted, and one
    line says why there is no verdict. A target read on demand is judged on slices read
    from it, as the same target in memory is."""
    model = trained_model()
    free = dataclasses.replace(tiny_config, mode="mean-teacher")
    target = Domain(sample_pair.target_image, name="target")
    run = train_and_predict(
        free,
        None,
        target,
        initial=model,
        baseline=model,
        keep_better=True,
        prediction=TargetPrediction(sample_pair.target_image),
    )
    events = list(run)
    (judged,) = [e for e in events if isinstance(e, Judged)]
    finished = next(e for e in events if isinstance(e, TrainFinished))
    assert judged.verdict is None
    assert judged.kept == "adapted"
    assert judged.model is finished.model
    assert judged.reason.startswith("not judged: ")
    assert "labelled source" in judged.reason
    assert isinstance(events[-1], PredictionDone)

    path = tmp_path / "t.zarr"
    zarr.save_array(str(path), sample_pair.target_image)
    lazy = Domain(path, name="target")
    events = list(train_and_predict(tiny_config, source, lazy, baseline=model))
    (judged,) = [e for e in events if isinstance(e, Judged)]
    adapted = next(e for e in events if isinstance(e, TrainFinished)).model
    in_memory = Domain(sample_pair.target_image, name="target")
    assert judged.verdict == judge(model, adapted, source, in_memory)


def test_slices_of_a_volume_read_on_demand_are_read_as_in_memory(sample_pair, tmp_path):
    path = tmp_path / "t.zarr"
    zarr.save_array(str(path), sample_pair.target_image[np.newaxis, np.newaxis])  # OME's 5D
    lazy = Domain(path, name="target")
    in_memory = Domain(sample_pair.target_image, name="target")
    assert lazy.lazy
    np.testing.assert_array_equal(lazy.read_slices([0, 3]), in_memory.read_slices([0, 3]))
    assert lazy.read_slices([2]).shape == (1, *sample_pair.target_image.shape[1:])


def test_keep_better_without_a_baseline_is_refused(tiny_config, source, sample_pair):
    target = Domain(sample_pair.target_image, name="target")
    with pytest.raises(InputError, match="give a baseline"):
        train_and_predict(tiny_config, source, target, keep_better=True)


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
    with pytest.raises(InputError, match="brings its masks in train/masks/"):
        open_source(tmp_path / "src", masks=tmp_path / "src" / "train" / "labels")
    with pytest.raises(InputError, match="does not exist"):
        open_source(tmp_path / "nowhere")


def test_open_target_reads_a_zarr_volume_lazily(sample_pair, tmp_path):
    path = tmp_path / "t.zarr"
    zarr.save_array(str(path), sample_pair.target_image)
    target, test = open_target(path)
    assert target.lazy
    assert test is None
    labels = tmp_path / "l.tif"
    scribbles = np.zeros(sample_pair.target_image.shape, np.uint8)
    scribbles[1, 5:9] = 2
    tifffile.imwrite(labels, scribbles, photometric="minisblack")
    target, _ = open_target(path, labels=labels, label_kind="sparse")
    assert target.lazy  # the volume read on demand, its labels in memory
    assert target.labelled_slices().tolist() == [1]
    assert int(target.annotated.sum()) == 4 * sample_pair.target_image.shape[2]


def test_open_target_reads_an_hdf5_dataset_lazily_with_or_without_labels(sample_pair, tmp_path):
    import h5py

    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as file:
        file["raw"] = sample_pair.target_image
        file["labels"] = sample_pair.target_labels
    size = PixelSize((8.0, 8.0), "nm")
    target, test = open_target(f"{path}:raw", pixel_size=size)
    assert target.lazy
    assert (target.pixel_size, test) == (size, None)
    np.testing.assert_array_equal(target.images[1, :5, :5], sample_pair.target_image[1, :5, :5])
    labelled, _ = open_target(f"{path}:raw", labels=f"{path}:labels")
    assert labelled.lazy  # the volume read on demand, its labels in memory
    assert list(labelled.labelled_slices()) == list(range(len(sample_pair.target_image)))


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


@pytest.mark.slow  # a fresh interpreter, to see first imports
def test_after_warm_up_a_run_imports_nothing_of_ours():
    """A GUI warms up in a thread when it opens; imports left for the run's first second
    hold the interpreter while the viewer draws (a ~0.3 s stall, measured)."""
    code = """
import sys
from napari_domain_adapt import core
from napari_domain_adapt.core.sample_data import make_sample_pair
core.warm_up()
before = set(sys.modules)
pair = make_sample_pair(n_source=2, n_target=2, size=64)
source = core.Domain(pair.source_image, pair.source_labels)
target = core.Domain(pair.target_image)
config = core.TrainConfig(steps=2, patch_size=32, batch_size=2)
baseline = core.fit(core.TrainConfig(mode="source-only", steps=1, patch_size=32), source).model
prediction = core.TargetPrediction(pair.target_image, False, "target", None)
events = core.train_and_predict(
    config, source, target, baseline=baseline, keep_better=True, prediction=prediction
)
assert any(isinstance(event, core.Judged) for event in events)
print(sorted(m for m in set(sys.modules) - before if m.startswith("napari_domain_adapt")))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
