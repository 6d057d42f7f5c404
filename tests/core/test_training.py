"""Tests for the training generator: events, stop, seeds, previews, the model it returns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from _weights import adversarial_config, same_state, state_of
from napari_domain_adapt.core import training, training_step
from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.inference import predict_tiled
from napari_domain_adapt.core.training import (
    TrainControl,
    TrainEvent,
    TrainFinished,
    fit,
    train,
)
from napari_domain_adapt.core.training_setup import prepare

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

    config = adversarial_config(tiny_config, steps=4, warmup_fraction=0.5)
    events = []
    finished = fit(config, source, target, on_event=events.append)
    for event in events:
        assert event.domain_loss > 0
        assert 0.0 <= event.domain_accuracy <= 1.0
        assert 0.0 <= event.target_entropy <= 1.0
    assert [e.grl_lambda > 0 for e in events] == [False, False, True, True]
    assert finished.model.config.mode == "adversarial"
    assert finished.model.predict(sample_pair.target_image[0]).shape == (96, 96)


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
    config = adversarial_config(tiny_config, steps=6, warmup_fraction=0.0)
    a, b = fit(config, source, target), fit(config, source, target)
    assert a.history == b.history
    assert same_state(state_of(a.model.network), state_of(b.model.network))
    c = fit(dataclasses.replace(config, seed=1), source, target)
    assert c.history != a.history
    assert not same_state(state_of(a.model.network), state_of(c.model.network))


def test_cpu_training_runs_channels_last_and_returns_a_plain_layout(
    tiny_config, source, target
) -> None:
    config = adversarial_config(tiny_config, steps=2, warmup_fraction=0.0)
    run = prepare(config, source, target, None)
    for network in (run.segmentor, run.teacher, run.classifier):
        convolutions = [p for p in network.parameters() if p.ndim == 4]
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
    finished = list(training._loop(run, TrainControl()))[-1]
    weights = [p for p in finished.model.network.parameters() if p.ndim == 4]
    assert all(p.is_contiguous() for p in weights)


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


class _Clock:
    """A monotonic clock that moves only when told: steps and previews take set times."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("preview_seconds", "expected"),
    [
        (0.2, 18),  # a small slice: after 3 s of training (the interval), and the last
        (4.0, 5),  # a large slice: four times its own time in between (1, 33, 65, 97, 100)
    ],
)
def test_previews_take_at_most_their_share_of_the_run(
    tiny_config, source, target, monkeypatch, preview_seconds, expected
) -> None:
    """A preview that takes long (a large slice on a CPU) is followed by enough training
    that previews take at most PREVIEW_SHARE of the run: every step previewed a 4 s
    preview before, when its 3 s interval was counted from the preview's start."""
    clock = _Clock()
    monkeypatch.setattr(training, "time", clock)
    step, preview = training._step_in_memory, training._preview

    def timed_step(run, number):
        clock.now += 0.5
        return step(run, number)

    def timed_preview(run, control):
        clock.now += preview_seconds
        return preview(run, control)

    monkeypatch.setattr(training, "_step_in_memory", timed_step)
    monkeypatch.setattr(training, "_preview", timed_preview)
    config = dataclasses.replace(tiny_config, steps=100, preview_interval=3.0)
    events = [e for e in train(config, source, target) if isinstance(e, TrainEvent)]
    previewed = [e.step for e in events if e.preview is not None]
    assert len(previewed) == expected
    assert previewed[0] == 1
    assert previewed[-1] == 100
    share = len(previewed) * preview_seconds / (len(previewed) * preview_seconds + 100 * 0.5)
    assert share <= training.PREVIEW_SHARE + 0.1  # the first and last preview are extra


def test_previews_are_background_outside_the_field_of_view(tiny_config, source, sample_pair):
    masks = np.ones(sample_pair.target_image.shape, bool)
    masks[:, :, :10] = False
    target = Domain(sample_pair.target_image, masks=masks, name="target")
    config = dataclasses.replace(tiny_config, steps=1, preview_interval=0.0)
    event = next(e for e in train(config, source, target) if isinstance(e, TrainEvent))
    assert (event.preview[:, :10] == 0).all()
    assert event.preview[:, 10:].any()


# --- out of device memory -------------------------------------------------------------------


def _memory_for(patches: int, monkeypatch) -> list[int]:
    """Let every forward pass of more than ``patches`` patches run out of (simulated) device
    memory, as a GPU does; returns the sizes of the passes that ran."""
    forward, ran = training_step._forward, []

    def small_memory(run, network, images):
        if len(images) > patches:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        ran.append(len(images))
        return forward(run, network, images)

    monkeypatch.setattr(training_step, "_forward", small_memory)
    return ran


@pytest.mark.parametrize(
    ("mode", "halved"),
    # The domain classifier sees both domains' maps at once: 2 of each at a batch of 2.
    [("mean-teacher", [8, 4]), ("adversarial", [8, 4, 2])],
)
def test_out_of_memory_halves_the_batch_and_goes_on(
    tiny_config, source, target, mode, halved, monkeypatch
):
    config = dataclasses.replace(tiny_config, mode=mode, batch_size=8, steps=3)
    ran = _memory_for(2, monkeypatch)
    with pytest.warns(RuntimeWarning) as warned:
        finished = fit(config, source, target)
    messages = [str(w.message) for w in warned]
    assert [
        f"with batches of {n} patches; going on with {n // 2}" in m
        for n, m in zip(halved, messages, strict=True)
    ] == [True] * len(halved), messages
    assert finished.steps == 3
    assert len(finished.history) == 3
    assert max(ran) <= 2
    assert finished.model.config.batch_size == halved[-1] // 2  # what it trained with
    assert config.batch_size == 8  # the caller's configuration is left alone


def test_out_of_memory_with_one_patch_says_what_to_change(tiny_config, source, monkeypatch):
    _memory_for(0, monkeypatch)
    config = dataclasses.replace(tiny_config, batch_size=2)
    with pytest.warns(RuntimeWarning), pytest.raises(InputError) as raised:
        fit(config, source)
    message = str(raised.value)
    assert "out of memory on cpu" in message
    assert "one 32x32 patch at a time (U-Net depth 2, width 8)" in message
    assert "smaller patch size or U-Net, or train on the CPU" in message


# --- bad inputs ----------------------------------------------------------------------------


def test_bad_inputs_raise_at_once(tiny_config, source, target, sample_pair) -> None:
    """Every check happens when train() is called, before any step."""
    adversarial = adversarial_config(tiny_config)
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
