"""Label-free criteria, and the training run that checks them and keeps the best model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_domain_adapt.core.config import TrainConfig
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.options import with_values
from napari_domain_adapt.core.selection import (
    binary_entropy,
    label_free_criteria,
    mask_dice,
    perturbed,
)
from napari_domain_adapt.core.training import TrainEvent, fit, train


def test_perturbed_is_mirrored_changed_and_repeatable() -> None:
    images = np.random.default_rng(0).random((2, 8, 8), dtype=np.float32)
    changed = perturbed(images)
    assert changed.shape == images.shape
    assert changed.dtype == np.float32
    np.testing.assert_array_equal(changed, perturbed(images))
    unmirrored = changed[..., ::-1]
    assert np.corrcoef(unmirrored.ravel(), images.ravel())[0, 1] > 0.9
    assert not np.allclose(unmirrored, images, atol=0.01)


def test_mask_dice_and_entropy_values() -> None:
    a = np.array([True, True, False, False])
    assert mask_dice(a, a) == 1.0
    assert mask_dice(a, ~a) == 0.0
    assert mask_dice(a, np.array([True, False, False, False])) == pytest.approx(2 / 3)
    assert mask_dice(~np.ones(3, bool), ~np.ones(3, bool)) == 1.0  # both empty
    assert binary_entropy(np.full(4, 0.5)) == pytest.approx(1.0)
    assert binary_entropy(np.array([0.0, 1.0])) < 1e-4


def test_criteria_reward_predictions_that_follow_the_image() -> None:
    images = np.zeros((1, 16, 16), np.float32)
    images[0, :, :4] = 1.0  # a bright stripe on the left

    def follows(x: np.ndarray) -> np.ndarray:
        return (x > 0.5).astype(np.float32)

    def fixed(x: np.ndarray) -> np.ndarray:  # always the left stripe, whatever the image
        out = np.zeros_like(x)
        out[..., :4] = 1.0
        return out

    assert label_free_criteria(follows, images)["consistency"] == 1.0
    assert label_free_criteria(fixed, images)["consistency"] == 0.0
    assert label_free_criteria(lambda x: np.full_like(x, 0.5), images)["entropy"] == 1.0


def _config(tiny_config, **selection) -> TrainConfig:
    """An adversarial run of 6 steps with ``selection``'s ``every`` and ``by``."""
    config = dataclasses.replace(
        tiny_config, mode="adversarial", steps=6, patch_size=64, preview_interval=None
    )
    return with_values(config, {f"selection.{name}": value for name, value in selection.items()})


def test_checks_are_recorded_and_leave_training_unchanged(tiny_config, source, target) -> None:
    plain = fit(_config(tiny_config), source, target)
    checked = fit(_config(tiny_config, every=2), source, target)
    steps = [h["step"] for h in checked.history if h["consistency"] is not None]
    assert steps == [2, 4, 6]
    for row in checked.history:
        if row["consistency"] is not None:
            assert 0 <= row["consistency"] <= 1
            assert 0 <= row["entropy"] <= 1
    assert all(h["consistency"] is None for h in plain.history)
    first, second = plain.model.network.state_dict(), checked.model.network.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert checked.model.metadata["selected_step"] == 6


def test_select_by_keeps_the_best_checked_model(tiny_config, source, target) -> None:
    events = []
    config = _config(tiny_config, every=2, by="entropy")
    for event in train(config, source, target):
        if isinstance(event, TrainEvent):
            events.append(event)
        else:
            finished = event
    values = {e.step: e.entropy for e in events if e.entropy is not None}
    best = min(sorted(values, reverse=True), key=lambda step: values[step])  # ties: later
    assert finished.model.metadata["selected_step"] == best
    assert finished.model.metadata["select_by"] == "entropy"


def test_select_by_needs_checks_and_a_target(tiny_config, source) -> None:
    with pytest.raises(ValueError, match="needs select_every"):
        _config(tiny_config, by="consistency")
    with pytest.raises(ValueError, match="select_every must be"):
        _config(tiny_config, every=0)
    config = with_values(
        tiny_config, {"mode": "source-only", "selection.every": 2, "selection.by": "consistency"}
    )
    with pytest.raises(InputError, match="needs a target image"):
        train(config, source)
