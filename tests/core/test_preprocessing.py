"""Tests for preprocessing: channel reduction, percentile scaling, field-of-view stats, CLAHE."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.core.config import Preprocessing
from napari_domain_adapt.core.preprocessing import (
    estimate_field_of_view,
    field_of_view_masks,
    normalise_slice,
    preprocess,
    to_grey,
)


@pytest.fixture
def rgb() -> np.ndarray:
    """One 2x2 colour slice with distinct red, green and blue values, plus an alpha channel."""
    rgba = np.zeros((1, 2, 2, 4), np.uint8)
    rgba[..., 0] = [[10, 20], [30, 40]]
    rgba[..., 1] = [[100, 110], [120, 130]]
    rgba[..., 2] = [[200, 210], [220, 250]]
    rgba[..., 3] = 255
    return rgba


def test_green_channel(rgb: np.ndarray) -> None:
    grey = to_grey(rgb, "green")
    assert grey.dtype == np.float32
    np.testing.assert_array_equal(grey, [[[100, 110], [120, 130]]])


def test_mean_channel_ignores_alpha(rgb: np.ndarray) -> None:
    expected = [[[310 / 3, 340 / 3], [370 / 3, 420 / 3]]]
    np.testing.assert_allclose(to_grey(rgb, "mean"), expected, rtol=1e-6)


def test_luminance(rgb: np.ndarray) -> None:
    r, g, b = (rgb[..., i].astype(float) for i in range(3))
    np.testing.assert_allclose(
        to_grey(rgb, "luminance"), 0.299 * r + 0.587 * g + 0.114 * b, rtol=1e-6
    )


def test_grey_passes_through() -> None:
    grey = np.arange(12, dtype=np.uint16).reshape(1, 3, 4) * 1000
    out = to_grey(grey, "green")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, grey)


def test_percentiles_map_to_zero_and_one() -> None:
    image = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    out = normalise_slice(image, Preprocessing(percentiles=(0.0, 100.0)))
    assert out.dtype == np.float32
    assert out.min() == 0.0
    assert out.max() == 1.0
    np.testing.assert_allclose(out.ravel(), np.linspace(0, 1, 10_000), atol=1e-6)
    out = normalise_slice(image, Preprocessing(percentiles=(10.0, 90.0)))
    low, high = np.percentile(image, (10, 90))
    np.testing.assert_allclose(out, (image - low) / (high - low), atol=1e-6)


def test_outliers_are_clipped() -> None:
    image = np.tile(np.arange(100, dtype=np.float32), (10, 1))
    image[0, 0], image[0, 1] = -1e6, 1e6
    out = normalise_slice(image, Preprocessing())
    assert out[0, 0] == -1.0
    assert out[0, 1] == 2.0
    # the bulk of the image uses the range, robust to the two outliers
    assert 0.0 <= np.median(out) <= 1.0
    assert np.percentile(out, 90) - np.percentile(out, 10) > 0.7


def test_mask_sets_the_statistics_and_blanks_outside() -> None:
    image = np.zeros((40, 40), np.float32)  # dark surround, as in a fundus photograph
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    image[mask] = np.linspace(100, 200, mask.sum())
    spec = Preprocessing(percentiles=(0.0, 100.0))
    with_mask = normalise_slice(image, spec, mask)
    assert with_mask[mask].min() == pytest.approx(0.0, abs=1e-6)
    assert with_mask[mask].max() == pytest.approx(1.0, abs=1e-6)
    assert (with_mask[~mask] == 0).all()
    without = normalise_slice(image, spec)
    assert without[mask].min() == pytest.approx(0.5, abs=1e-6)  # the surround set low = 0


def test_empty_mask_falls_back_to_whole_image() -> None:
    image = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    spec = Preprocessing(percentiles=(0.0, 100.0))
    empty = np.zeros((10, 10), bool)
    np.testing.assert_array_equal(normalise_slice(image, spec, empty), 0.0)
    np.testing.assert_allclose(normalise_slice(image, spec), image, atol=1e-6)


def test_clahe_raises_local_contrast() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((128, 128), np.float32)
    image[:, :64] = 0.5 + 0.01 * rng.standard_normal((128, 64))  # faint texture
    image[:, 64:] = rng.uniform(0, 1, (128, 64))  # strong texture
    plain = normalise_slice(image, Preprocessing(clahe=False))
    equalised = normalise_slice(image, Preprocessing(clahe=True))
    assert equalised.dtype == np.float32
    assert equalised.min() >= 0.0
    assert equalised.max() <= 1.0
    assert equalised[:, :64].std() > 2 * plain[:, :64].std()
    stronger = normalise_slice(image, Preprocessing(clahe=True, clahe_clip=0.1))
    assert stronger[:, :64].std() > equalised[:, :64].std()


def test_clahe_keeps_outside_mask_blank() -> None:
    image = np.random.default_rng(1).uniform(0, 1, (64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[8:56, 8:56] = True
    out = normalise_slice(image, Preprocessing(clahe=True), mask)
    assert (out[~mask] == 0).all()
    assert out[mask].std() > 0.1


def test_preprocess_stack_is_per_slice(sample_pair) -> None:
    stack = sample_pair.source_image[:2].astype(np.float32)
    stack[1] = stack[0] * 10 + 5  # same picture, other intensity scale
    out = preprocess(stack, Preprocessing())
    assert out.shape == (2, 96, 96)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)


def test_preprocess_rgb_with_masks() -> None:
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 4:12, 4:12] = True
    spec = Preprocessing(channel="green")
    out = preprocess(stack, spec, masks)
    assert out.shape == (2, 16, 16)
    expected = normalise_slice(stack[1, ..., 1].astype(np.float32), spec, masks[1])
    np.testing.assert_array_equal(out[1], expected)
    assert (out[~masks] == 0).all()


def _fundus(size: int = 64) -> np.ndarray:
    """A bright disc on a dark surround, RGB, with a dark vessel inside the disc."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    image = np.zeros((size, size, 3), np.uint8)
    image[disc] = (180, 90, 40)
    image[size // 2, 10 : size - 10] = (60, 20, 10)  # a vessel crossing the disc
    return image, disc


def test_estimate_field_of_view_finds_the_disc() -> None:
    image, disc = _fundus()
    masks = estimate_field_of_view(np.stack([image, image]))
    assert masks.shape == (2, 64, 64)
    assert masks.dtype == bool
    np.testing.assert_array_equal(masks[0], disc)  # the dark vessel is a filled hole


def test_estimate_field_of_view_takes_blank_or_surroundless_slices_whole() -> None:
    blank = np.zeros((1, 32, 32), np.float32)
    assert estimate_field_of_view(blank).all()
    speckle = np.zeros((1, 32, 32), np.float32)
    speckle[0, 3, 3] = 1.0  # a bright region far smaller than a fundus disc
    assert estimate_field_of_view(speckle).all()


def test_field_of_view_masks_prefers_given_masks() -> None:
    image, disc = _fundus()
    stack = image[None]
    given = np.ones((1, 64, 64), bool)
    on = Preprocessing(channel="green", field_of_view=True)
    assert field_of_view_masks(stack, on, given) is given
    assert field_of_view_masks(stack, Preprocessing(channel="green"), None) is None
    np.testing.assert_array_equal(field_of_view_masks(stack, on, None)[0], disc)
