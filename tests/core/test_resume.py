"""Tests for resuming a training run from its state file."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_domain_adapt.core.config import AlignmentSpec, ModelSpec, SelectionSpec
from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.resume import (
    StateFile,
    fingerprint,
    numpy_rng_state,
    set_numpy_rng_state,
)
from napari_domain_adapt.core.training import TrainControl, TrainFinished, fit, train


def _run_until(
    config, source, target, state: StateFile, stop_after: int, steps: list | None = None
) -> TrainFinished:
    """Train until ``stop_after`` steps, then stop; the step events go to ``steps``."""
    control = TrainControl()
    for event in train(config, source, target, control, state=state):
        if isinstance(event, TrainFinished):
            return event
        if steps is not None:
            steps.append(event)
        if event.step == stop_after:
            control.stop()
    raise AssertionError("no TrainFinished")


def _weights(finished: TrainFinished) -> dict[str, torch.Tensor]:
    return finished.model.network.state_dict()


@pytest.mark.parametrize(
    ("mode", "norm"),
    [("adversarial", "batch"), ("adversarial+mean-teacher", "channel"), ("source-only", "batch")],
)
def test_a_stopped_run_continues_to_the_same_weights(
    tiny_config, source, target, tmp_path, mode: str, norm: str
) -> None:
    config = dataclasses.replace(
        tiny_config, mode=mode, steps=9, patch_size=64, model=ModelSpec(2, 8, norm)
    )
    whole = fit(config, source, target)
    state = StateFile(tmp_path / "run.state", every=4)
    steps: list = []
    stopped = _run_until(config, source, target, state, stop_after=6, steps=steps)
    assert stopped.stopped
    assert stopped.steps == 6
    assert state.path.exists()  # written at the stop, between the every-4 saves
    resumed = fit(config, source, target, state=state)
    # The time before the stop counts (not what the stopped run did after it: under load its
    # end took longer than the resumed run's last steps).
    assert resumed.elapsed >= steps[-1].elapsed
    assert resumed.steps == 9
    assert not resumed.stopped
    assert [h["step"] for h in resumed.history] == list(range(1, 10))
    assert [h["supervised_loss"] for h in resumed.history] == [
        h["supervised_loss"] for h in whole.history
    ]
    for name, value in _weights(whole).items():
        torch.testing.assert_close(_weights(resumed)[name], value, rtol=0, atol=0)


def test_a_finished_run_state_gives_the_model_without_training(
    tiny_config, source, target, tmp_path
) -> None:
    state = StateFile(tmp_path / "run.state", every=100)
    first = fit(tiny_config, source, target, state=state)
    assert state.path.exists()  # written at the last step even between saves
    again = fit(tiny_config, source, target, state=state)
    assert again.steps == first.steps
    assert len(again.history) == len(first.history)
    for name, value in _weights(first).items():
        assert torch.equal(_weights(again)[name], value)


def test_a_state_of_other_settings_or_inputs_is_refused(
    tiny_config, source, target, tmp_path
) -> None:
    state = StateFile(tmp_path / "run.state")
    fit(tiny_config, source, target, state=state)
    before = state.path.read_bytes()
    with pytest.raises(InputError, match=r"other settings .*learning_rate differ"):
        train(dataclasses.replace(tiny_config, learning_rate=0.01), source, target, state=state)
    other = Domain(source.images[::-1].copy(), source.labels[::-1].copy(), name="other")
    with pytest.raises(InputError, match="other images or labels"):
        train(tiny_config, other, target, state=state)
    # Where the run is computed and how often it previews may change.
    train(dataclasses.replace(tiny_config, preview_interval=None), source, target, state=state)
    assert state.path.read_bytes() == before


def test_a_state_from_before_a_field_existed_continues_at_its_default(
    tiny_config, source, target, tmp_path
) -> None:
    state = StateFile(tmp_path / "run.state")
    fit(tiny_config, source, target, state=state)
    payload = torch.load(state.path, weights_only=False)
    del payload["config"]["amp"]  # states written before the bfloat16 option
    torch.save(payload, state.path)
    with pytest.raises(InputError, match=r"other settings \(amp differ\)"):
        train(dataclasses.replace(tiny_config, amp=True), source, target, state=state)
    finished = _run_until(tiny_config, source, target, state, stop_after=-1)
    assert finished.steps == tiny_config.steps


def test_a_corrupt_or_foreign_state_is_refused(tiny_config, source, target, tmp_path) -> None:
    state = StateFile(tmp_path / "run.state")
    state.path.write_bytes(b"not a state")
    with pytest.raises(InputError, match=r"cannot read the training state .*delete it"):
        train(tiny_config, source, target, state=state)
    torch.save({"format": "something else"}, state.path)
    with pytest.raises(InputError, match="not a napari-domain-adapt training state"):
        train(tiny_config, source, target, state=state)


@pytest.mark.parametrize("every", [0, -3, 1.5, True])
def test_state_interval_must_be_a_positive_integer(tmp_path, every) -> None:
    with pytest.raises(InputError, match="every >= 1 steps"):
        StateFile(tmp_path / "s", every=every)


def test_numpy_rng_state_round_trips() -> None:
    rng = np.random.default_rng(7)
    rng.random(5)
    saved = numpy_rng_state(rng)
    expected = rng.random(3)
    other = np.random.default_rng(0)
    set_numpy_rng_state(other, saved)
    np.testing.assert_array_equal(other.random(3), expected)


def test_fingerprint_tells_arrays_apart() -> None:
    a = np.zeros((2, 3), np.uint8)
    assert fingerprint(a, None) == fingerprint(a.copy(), None)
    assert fingerprint(a, None) != fingerprint(a, a)
    assert fingerprint(a) != fingerprint(a.astype(np.uint16))
    assert fingerprint(a) != fingerprint(a.reshape(3, 2))
    b = a.copy()
    b[1, 2] = 1
    assert fingerprint(a) != fingerprint(b)


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_a_resumed_run_keeps_the_model_its_criterion_chose(
    tiny_config, source, target, tmp_path
) -> None:
    config = dataclasses.replace(
        tiny_config,
        mode="adversarial",
        steps=8,
        patch_size=64,
        selection=SelectionSpec(every=2, by="consistency"),
        preview_interval=None,
    )
    whole = fit(config, source, target)
    state = StateFile(tmp_path / "run.state", every=3)
    _run_until(config, source, target, state, stop_after=5)
    resumed = fit(config, source, target, state=state)
    assert resumed.model.metadata["selected_step"] == whole.model.metadata["selected_step"]
    for name, value in _weights(whole).items():
        assert torch.equal(_weights(resumed)[name], value)


def test_a_run_with_appearance_changes_continues_to_the_same_weights(
    tiny_config, source, target, tmp_path
) -> None:
    """The appearance augmentation's generator is part of the run's state."""
    config = dataclasses.replace(
        tiny_config,
        mode="adversarial",
        steps=7,
        patch_size=32,
        preview_interval=None,
        alignment=AlignmentSpec(fda_beta=0.05, appearance=0.8),
    )
    whole = fit(config, source, target)
    state = StateFile(tmp_path / "run.state", every=2)
    _run_until(config, source, target, state, stop_after=3)
    assert "appearance_rng" in torch.load(state.path, weights_only=True)
    resumed = fit(config, source, target, state=state)
    assert resumed.steps == 7
    assert [h["supervised_loss"] for h in resumed.history] == [
        h["supervised_loss"] for h in whole.history
    ]
    for name, value in _weights(whole).items():
        assert torch.equal(_weights(resumed)[name], value)
