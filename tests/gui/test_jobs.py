"""The worker generators, run synchronously: no Qt, no viewer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_domain_adapt.core import (
    InputError,
    PredictionDone,
    PredictionStarted,
    SlicePredicted,
    TrainControl,
    TrainEvent,
    TrainFinished,
)
from napari_domain_adapt.gui.jobs import TrainInputs, train_job


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


def test_train_job_predicts_in_the_runs_precision(tiny_config, inputs, monkeypatch):
    from napari_domain_adapt.core import pipeline

    asked = []
    real = pipeline.predict
    monkeypatch.setattr(
        pipeline, "predict", lambda *args, **kw: asked.append(kw["amp"]) or real(*args, **kw)
    )
    for amp in (False, True):
        list(train_job(dataclasses.replace(tiny_config, amp=amp), inputs, TrainControl()))
    assert asked == [False, True]


def test_the_target_labels_rule_is_the_cores(tiny_config, inputs):
    """Labelled target slices given to a mode that does not learn from them are refused,
    as in the CLI: the job no longer drops them by a rule of its own."""
    labels = np.zeros_like(inputs.target_labels)
    labels[1, 10:20, 10:20] = 1
    labelled = dataclasses.replace(inputs, target_labels=labels)
    config = dataclasses.replace(tiny_config, mode="adversarial")
    with pytest.raises(InputError, match="mode adversarial does not use them"):
        next(train_job(config, labelled, TrainControl()))


def test_train_job_is_judged_against_a_baseline_and_keeps_the_better(
    tiny_config, inputs, monkeypatch
):
    """With a baseline the job yields the guard's Judged between training and prediction;
    keep_better without a baseline is simply off."""
    from napari_domain_adapt.core import Domain, GuardVerdict, Judged, fit, pipeline

    baseline = fit(tiny_config, Domain(inputs.source_image, inputs.source_labels)).model
    verdict = GuardVerdict("source-only", {}, "source-only model preferred: told", "atc")
    monkeypatch.setattr(pipeline, "judge", lambda *args: verdict)
    items = list(train_job(tiny_config, inputs, TrainControl(), None, None, baseline, True))
    kinds = [type(item) for item in items]
    at = kinds.index(Judged)
    assert kinds[at - 1 : at + 2] == [TrainFinished, Judged, PredictionStarted]
    assert items[at].model is baseline
    plain = list(train_job(tiny_config, inputs, TrainControl(), keep_better=True))
    assert Judged not in [type(item) for item in plain]
