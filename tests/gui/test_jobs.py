"""The worker generators, run synchronously: no Qt, no viewer."""

from __future__ import annotations

import dataclasses
import threading

import dask
import dask.array as da
import numpy as np
import pytest

from napari_domain_adapt.core import (
    InputError,
    ModelSpec,
    PredictionDone,
    PredictionStarted,
    SegmentationModel,
    SlicePredicted,
    TrainControl,
    TrainEvent,
    TrainFinished,
)
from napari_domain_adapt.gui.jobs import (
    InputRefused,
    TrainInputs,
    in_memory,
    predict_job,
    reads_on_demand,
    refusing,
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


def _lazy(array, fail_at=None):
    """``array`` as a dask array read a slice at a time, recording the thread of each read;
    the read of slice ``fail_at`` raises, like a corrupt chunk."""
    threads = []

    def read(block, block_info=None):
        if block_info[0]["chunk-location"][0] == fail_at:
            raise OSError(f"chunk {fail_at} is corrupt")
        threads.append(threading.get_ident())
        return block

    chunks = (1, *array.shape[1:])
    return da.from_array(array, chunks=chunks).map_blocks(read, dtype=array.dtype), threads


def test_the_job_reads_layers_read_on_demand_in_its_own_thread(tiny_config, inputs, tmp_path):
    """The source and the labels of a layer read on demand are read by the job, in the
    worker's thread; a grey target stays lazy (read by patches and tiles)."""
    source, source_reads = _lazy(inputs.source_image)
    labels, label_reads = _lazy(inputs.source_labels)
    target, _ = _lazy(inputs.target_image)
    lazy = dataclasses.replace(
        inputs, source_image=source, source_labels=labels, target_image=target, target_labels=None
    )
    assert reads_on_demand(target, rgb=False)
    assert not reads_on_demand(target, rgb=True)
    assert not reads_on_demand(inputs.target_image, rgb=False)

    def in_a_thread():
        items.extend(train_job(tiny_config, lazy, TrainControl(), tmp_path / "p.zarr"))

    items = []
    worker = threading.Thread(target=in_a_thread)
    with dask.config.set(scheduler="synchronous"):  # each read in the thread that asks
        worker.start()
        worker.join()
    assert isinstance(items[-1], PredictionDone)
    assert set(source_reads) == set(label_reads) == {worker.ident}
    assert len(source_reads) == len(inputs.source_image)  # read whole, once


def test_a_layer_that_cannot_be_read_refuses_the_run_with_one_message(tiny_config, inputs):
    source, _ = _lazy(inputs.source_image, fail_at=2)
    broken = dataclasses.replace(inputs, source_image=source)
    items = list(refusing(train_job, tiny_config, broken, TrainControl()))
    assert len(items) == 1
    assert isinstance(items[0], InputRefused)
    assert items[0].message.startswith("cannot read the source image (OSError: chunk 2 is")
    with pytest.raises(InputError, match="cannot read the labels"):
        in_memory(source, "labels")


def test_predict_job_reads_in_memory_or_predicts_out_of_core(tmp_path):
    model = SegmentationModel.create(ModelSpec(depth=2, width=4))
    image = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    lazy, reads = _lazy(image)
    in_core = list(predict_job(model, lazy, False, None, name="image"))
    assert isinstance(in_core[-1].probabilities, np.ndarray)
    assert len(reads) == len(image)  # read whole, once
    out = list(predict_job(model, lazy, False, tmp_path / "p.zarr", name="image"))
    assert not isinstance(out[-1].probabilities, np.ndarray)  # on disk, read on demand
    np.testing.assert_allclose(
        np.asarray(out[-1].probabilities), in_core[-1].probabilities, atol=1e-5
    )
