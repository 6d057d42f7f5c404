"""The worker generators, run synchronously: no Qt, no viewer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_domain_adapt.core import InputError, TrainControl, TrainEvent, TrainFinished
from napari_domain_adapt.gui.jobs import (
    PredictionDone,
    PredictionStarted,
    SlicePredicted,
    TrainInputs,
    as_slices,
    predict_job,
    train_job,
)


@pytest.fixture
def inputs(sample_pair) -> TrainInputs:
    return TrainInputs(
        sample_pair.source_image,
        sample_pair.source_labels,
        sample_pair.target_image,
        target_labels=np.zeros_like(sample_pair.target_labels),
    )


def test_train_job_trains_then_predicts_the_target(tiny_config, inputs):
    config = dataclasses.replace(tiny_config, mode="adversarial")
    items = list(train_job(config, inputs, TrainControl()))
    kinds = [type(item) for item in items]
    assert kinds[: config.steps] == [TrainEvent] * config.steps
    assert kinds[config.steps : config.steps + 2] == [TrainFinished, PredictionStarted]
    assert kinds[-1] is PredictionDone
    assert [i.done for i in items if isinstance(i, SlicePredicted)] == [1, 2, 3, 4]
    assert items[-1].probabilities.shape == inputs.target_image.shape


def test_stop_still_predicts_with_the_model_so_far(tiny_config, inputs):
    control = TrainControl()
    config = dataclasses.replace(tiny_config, steps=1000)
    job = train_job(config, inputs, control)
    next(job)
    control.stop()
    rest = list(job)
    finished = next(item for item in rest if isinstance(item, TrainFinished))
    assert finished.stopped
    assert finished.steps < 1000
    assert isinstance(rest[-1], PredictionDone)


def test_bad_input_raises_input_error_in_the_job(tiny_config, inputs):
    bad = dataclasses.replace(inputs, source_labels=inputs.source_labels * 3)
    with pytest.raises(InputError, match="binary"):
        next(train_job(tiny_config, bad, TrainControl()))


def test_predict_job_keeps_single_images_single(tiny_config, inputs):
    finished = next(
        item
        for item in train_job(tiny_config, inputs, TrainControl())
        if isinstance(item, TrainFinished)
    )
    image = inputs.target_image[0]
    done = list(predict_job(finished.model, image, rgb=False, target="x"))[-1]
    assert done.probabilities.shape == image.shape
    assert done.target == "x"
    assert done.probabilities.min() >= 0
    assert done.probabilities.max() <= 1
    fast = list(predict_job(finished.model, image, rgb=False, target="x", amp=True))[-1]
    assert not np.array_equal(fast.probabilities, done.probabilities)  # bfloat16 on the CPU
    np.testing.assert_allclose(fast.probabilities, done.probabilities, rtol=0, atol=5e-2)


def test_train_job_predicts_in_the_runs_precision(tiny_config, inputs, monkeypatch):
    import napari_domain_adapt.gui.jobs as jobs

    asked = []
    real = jobs.predict_job
    monkeypatch.setattr(jobs, "predict_job", lambda *args: asked.append(args[-1]) or real(*args))
    for amp in (False, True):
        list(train_job(dataclasses.replace(tiny_config, amp=amp), inputs, TrainControl()))
    assert asked == [False, True]


def test_as_slices():
    assert as_slices(np.zeros((4, 5)), rgb=False)[0].shape == (1, 4, 5)
    assert as_slices(np.zeros((4, 5, 3)), rgb=True)[0].shape == (1, 4, 5, 3)
    stack, single = as_slices(np.zeros((2, 4, 5)), rgb=False)
    assert stack.shape == (2, 4, 5)
    assert not single
