"""Tests for the patch sampler: shapes, weights, slice choice and aligned augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.patches import PatchSampler

N, H, W = 3, 40, 50


def _coordinates() -> np.ndarray:
    """A stack whose every pixel holds its own index, so a patch tells where it came from."""
    return np.arange(N * H * W, dtype=np.float32).reshape(N, H, W)


def _where(patch: np.ndarray) -> tuple[int, int, int, tuple[int, int]]:
    """Slice, row and column of the patch's pixel 0,0, and its steps along its two axes."""
    z, rest = divmod(int(patch[0, 0]), H * W)
    y, x = divmod(rest, W)
    return z, y, x, (int(patch[1, 0] - patch[0, 0]), int(patch[0, 1] - patch[0, 0]))


def _sampler(augment: bool, seed: int = 0, **kwargs) -> PatchSampler:
    data = _coordinates()
    return PatchSampler(
        data, 16, np.random.default_rng(seed), labels=data.copy(), augment=augment, **kwargs
    )


def test_shapes_and_default_weights() -> None:
    batch = _sampler(augment=True).sample(5)
    assert batch.images.shape == batch.labels.shape == batch.weights.shape == (5, 1, 16, 16)
    assert batch.images.dtype == batch.labels.dtype == batch.weights.dtype == np.float32
    assert (batch.weights == 1).all()


def test_no_labels_gives_none() -> None:
    sampler = PatchSampler(_coordinates(), 8, np.random.default_rng(0))
    assert sampler.sample(2).labels is None


def test_without_augmentation_patches_are_exact_windows() -> None:
    data = _coordinates()
    batch = _sampler(augment=False).sample(20)
    for image, label in zip(batch.images[:, 0], batch.labels[:, 0], strict=True):
        z, y, x, steps = _where(image)
        assert steps == (W, 1)  # no flip, no rotation
        np.testing.assert_array_equal(image, data[z, y : y + 16, x : x + 16])  # no jitter
        np.testing.assert_array_equal(label, image)


def test_augmentation_keeps_image_label_and_weights_aligned() -> None:
    data = _coordinates()
    sampler = PatchSampler(
        data,
        16,
        np.random.default_rng(1),
        labels=data.copy(),
        weights=data.copy(),
        augment=True,
    )
    batch = sampler.sample(64, jitter=False)  # flips and turns, no intensity change
    np.testing.assert_array_equal(batch.images, batch.labels)
    np.testing.assert_array_equal(batch.images, batch.weights)
    orientations = {_where(patch)[3] for patch in batch.images[:, 0]}
    assert len(orientations) == 8  # all flips and quarter turns occur


def test_jitter_changes_intensities_only() -> None:
    data = np.random.default_rng(0).uniform(0, 1, (N, H, W)).astype(np.float32)
    sampler = PatchSampler(data, 16, np.random.default_rng(2), labels=data.copy(), augment=True)
    batch = sampler.sample(16)
    assert not np.allclose(batch.images, batch.labels)
    for image, label in zip(batch.images[:, 0], batch.labels[:, 0], strict=True):
        # an affine change of the same (oriented) patch plus small noise
        slope, offset = np.polyfit(label.ravel(), image.ravel(), 1)
        residual = image - (slope * label + offset)
        assert 0.75 - 0.05 <= slope <= 1.25 + 0.05
        assert residual.std() <= 0.06


def test_weights_follow_the_mask() -> None:
    data = _coordinates()
    weights = np.zeros((N, H, W), np.float32)
    weights[:, :, : W // 2] = 1.0
    sampler = PatchSampler(data, 16, np.random.default_rng(3), weights=weights, augment=False)
    batch = sampler.sample(10)
    for image, weight in zip(batch.images[:, 0], batch.weights[:, 0], strict=True):
        z, y, x, _ = _where(image)
        np.testing.assert_array_equal(weight, weights[z, y : y + 16, x : x + 16])


def test_only_listed_slices_and_whole_range_used() -> None:
    batch = _sampler(augment=False, slices=np.array([2])).sample(30)
    places = [_where(patch) for patch in batch.images[:, 0]]
    assert {z for z, *_ in places} == {2}
    assert all(0 <= y <= H - 16 and 0 <= x <= W - 16 for _, y, x, _ in places)
    everywhere = [_where(p) for p in _sampler(augment=False).sample(60).images[:, 0]]
    assert {z for z, *_ in everywhere} == {0, 1, 2}


def test_seeded() -> None:
    a, b, c = (_sampler(True, seed).sample(4).images for seed in (5, 5, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_patch_larger_than_slice() -> None:
    with pytest.raises(InputError) as info:
        PatchSampler(np.zeros((2, 20, 40), np.float32), 32, np.random.default_rng(), name="target")
    message = str(info.value)
    assert "target slices are 20x40 pixels, smaller than the 32-pixel training patch" in message
    assert "at most 20" in message


def test_no_slices() -> None:
    with pytest.raises(InputError, match="labelled target has no slices"):
        PatchSampler(_coordinates(), 8, np.random.default_rng(), slices=[], name="labelled target")
