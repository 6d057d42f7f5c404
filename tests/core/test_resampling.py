"""Scale-aware resampling: the zoom between pixel sizes, and round trips that stay aligned."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.core.resampling import (
    resample_plane,
    resample_stack,
    resample_window,
    restore_plane,
    scale_factor,
    working_shape,
)

FACTORS = [2.5, 0.4, 1 / 2.3, 2.3]


# scale_factor


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (PixelSize((4, 4), "nm"), PixelSize((9.2, 9.2), "nm"), 2.3),
        (PixelSize((9.2, 9.2), "nm"), PixelSize((4, 4), "nm"), 4 / 9.2),
        (PixelSize((4, 4), "nm"), PixelSize((0.01, 0.01), "µm"), 2.5),  # units converted
        (PixelSize((50, 4, 4), "nm"), PixelSize((10, 10), "nm"), 2.5),  # z is not in-plane
        (PixelSize((4,), "nm"), PixelSize((8, 8), "nm"), 2.0),  # one size for both axes
        (PixelSize((4, 4), "nm"), PixelSize((8.4, 8.0), "nm"), 2.05),  # mean of y and x
    ],
)
def test_scale_factor_is_target_over_source_size(source, target, expected) -> None:
    assert scale_factor(source, target) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (None, PixelSize((4, 4), "nm")),
        (PixelSize((4, 4), "nm"), None),
        (PixelSize((4, 4)), PixelSize((8, 8), "nm")),  # no unit: not comparable
        (PixelSize((4, 4), "nm"), PixelSize((8, 8))),
        (PixelSize((4, 4), "nm"), PixelSize((4.1, 4.1), "nm")),  # within the tolerance
        (PixelSize((4, 4), "nm"), PixelSize((0.0039, 0.0039), "µm")),
    ],
)
def test_scale_factor_is_none_when_unknown_or_close_to_one(source, target) -> None:
    assert scale_factor(source, target) is None


def test_scale_factor_tolerance_is_a_parameter() -> None:
    source, target = PixelSize((4, 4), "nm"), PixelSize((4.4, 4.4), "nm")
    assert scale_factor(source, target) == pytest.approx(1.1)
    assert scale_factor(source, target, tolerance=0.2) is None


def test_scale_factor_refuses_anisotropic_zooms_naming_both_sizes() -> None:
    source, target = PixelSize((4, 4), "nm"), PixelSize((10, 8), "nm")  # 2.5 vs 2.0
    with pytest.raises(InputError) as caught:
        scale_factor(source, target)
    message = str(caught.value)
    assert "\n" not in message
    assert str(source) in message
    assert str(target) in message


# resample_plane, resample_stack, restore_plane


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("shape", [(64, 64), (51, 37), (33, 80)])
def test_round_trip_shapes(shape, factor) -> None:
    image = np.random.default_rng(0).random(shape)
    resampled = resample_plane(image, factor, order=1)
    assert resampled.shape == working_shape(shape, factor)
    assert np.abs(np.array(resampled.shape) - np.array(shape) * factor).max() <= 0.5
    assert resampled.dtype == np.float32
    restored = restore_plane(np.clip(resampled, 0, 1), shape)
    assert restored.shape == shape
    assert restored.dtype == np.float32


def test_colour_planes_keep_their_channels() -> None:
    image = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    resampled = resample_plane(image, 2.5, order=1)
    assert resampled.shape == (100, 75, 3)
    # Each channel on its own: no mixing between channels.
    alone = resample_plane(image[..., 1], 2.5, order=1)
    np.testing.assert_allclose(resampled[..., 1], alone, atol=1e-4)


def _edge_position(profile: np.ndarray) -> float:
    """Where a rising step profile crosses half its height, in pixel-centre coordinates."""
    half = (profile.min() + profile.max()) / 2
    i = int(np.flatnonzero(profile >= half)[0])
    return i - 1 + (half - profile[i - 1]) / (profile[i] - profile[i - 1])


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("size", [60, 61])
def test_a_sharp_edge_keeps_its_place(size, factor) -> None:
    # A step at x = 23.5 (pixel edge between 23 and 24), in physical units of the image.
    image = np.zeros((size, size), np.float32)
    image[:, 24:] = 1.0
    resampled = resample_plane(image, factor, order=1)
    width = resampled.shape[1]
    expected = (23.5 + 0.5) * width / size - 0.5  # the same physical place, working pixels
    assert _edge_position(resampled[width // 2]) == pytest.approx(expected, abs=0.5)
    restored = restore_plane(np.clip(resampled, 0, 1), image.shape)
    assert _edge_position(restored[size // 2]) == pytest.approx(23.5, abs=0.5)


@pytest.mark.parametrize("factor", FACTORS)
def test_a_thin_line_comes_back_at_its_place(factor) -> None:
    image = np.zeros((70, 70), np.float32)
    image[:, 31:34] = 1.0  # a line three pixels wide, centred on x = 32
    restored = restore_plane(resample_plane(image, factor, order=1), image.shape)
    profile = restored[35]
    centre = (profile * np.arange(70)).sum() / profile.sum()
    assert centre == pytest.approx(32.0, abs=0.25)


@pytest.mark.parametrize("factor", FACTORS)
def test_constant_probabilities_stay_constant(factor) -> None:
    probabilities = np.full((57, 43), 0.3, np.float32)
    resampled = resample_plane(probabilities, factor, order=1)
    np.testing.assert_allclose(resampled, 0.3, atol=1e-6)
    np.testing.assert_allclose(restore_plane(resampled, (57, 43)), 0.3, atol=1e-6)


@pytest.mark.parametrize("factor", FACTORS)
def test_restored_probabilities_stay_within_zero_and_one(factor) -> None:
    hard = (np.random.default_rng(1).random((90, 90)) > 0.5).astype(np.float32)
    restored = restore_plane(hard, working_shape(hard.shape, factor))
    assert restored.min() >= 0.0
    assert restored.max() <= 1.0
    assert 0.0 < restored.mean() < 1.0


@pytest.mark.parametrize("factor", FACTORS)
def test_the_border_is_not_darkened(factor) -> None:
    # Smoothing and interpolation near the border reflect the image, never pad it with 0.
    ramp = np.tile(np.linspace(0.6, 1.0, 64, dtype=np.float32), (64, 1))
    for plane in (resample_plane(ramp, factor, order=1), restore_plane(ramp, (80, 50))):
        np.testing.assert_allclose(plane[0], plane[len(plane) // 2], atol=1e-5)
        np.testing.assert_allclose(plane[-1], plane[len(plane) // 2], atol=1e-5)


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, bool])
def test_labels_keep_their_dtype_and_values(factor, dtype) -> None:
    labels = (np.random.default_rng(2).random((45, 52)) > 0.7).astype(dtype)
    if dtype is np.uint8:
        labels = labels * np.uint8(255)
    resampled = resample_plane(labels, factor, order=0)
    assert resampled.dtype == labels.dtype
    assert set(np.unique(resampled)) <= set(np.unique(labels))
    assert len(np.unique(resampled)) == 2


@pytest.mark.parametrize("factor", [None, 1.0, 1.004])
def test_no_zoom_returns_the_same_array(factor) -> None:
    image = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    assert resample_plane(image, factor, order=1) is image
    stack = np.stack([image, image])
    assert resample_stack(stack, factor, order=1) is stack
    assert restore_plane(image, (64, 64)) is image


@pytest.mark.parametrize("rgb", [False, True])
def test_a_stack_is_resampled_slice_by_slice(rgb) -> None:
    rng = np.random.default_rng(4)
    stack = rng.random((3, 30, 25, 3) if rgb else (3, 30, 25))
    resampled = resample_stack(stack, 2.5, order=1, rgb=rgb)
    assert resampled.shape[:3] == (3, 75, 63)
    assert resampled.shape[3:] == stack.shape[3:]
    for index in range(3):
        np.testing.assert_array_equal(resampled[index], resample_plane(stack[index], 2.5, order=1))


def test_a_stack_of_the_wrong_rank_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(Z, Y, X, C\)"):
        resample_stack(np.zeros((3, 20, 20)), 2.0, order=1, rgb=True)
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        resample_stack(np.zeros((20, 20)), 2.0, order=1)


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_factors_are_refused(factor) -> None:
    with pytest.raises(ValueError, match="zoom factor"):
        resample_plane(np.zeros((8, 8)), factor, order=1)


def test_shrinking_smooths_before_sampling() -> None:
    # A checkerboard at the pixel scale would alias into stripes or a flat field of 0 or 1;
    # smoothed first, it becomes its mean.
    board = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    shrunk = resample_plane(board, 0.4, order=1)
    np.testing.assert_allclose(shrunk, 0.5, atol=0.1)


# resample_window


@pytest.mark.parametrize("factor", [*FACTORS, 2.0, 0.5, 3.0, 1.07])
@pytest.mark.parametrize("shape", [(97, 64), (40, 131), (5, 7)])
def test_a_window_is_that_of_the_whole_plane_resampled(shape, factor) -> None:
    """Every window, at the edges too, is the whole plane's resampled window; and it reads
    only the part of the plane around the pixels it maps to."""
    rng = np.random.default_rng(1)
    plane = rng.uniform(-1, 2, shape).astype(np.float32)
    whole = resample_plane(plane, factor, order=1)
    height, width = whole.shape
    reads = []

    def read(rows: slice, columns: slice) -> np.ndarray:
        reads.append((rows, columns))
        return plane[rows, columns]

    corners = [(0, 0), (height - 1, width - 1), (0, width - 1), (height - 1, 0)]
    windows = [(y, x, 1, 1) for y, x in corners] + [(0, 0, height, width)]
    for _ in range(40):
        y, x = rng.integers(0, height), rng.integers(0, width)
        windows.append((y, x, rng.integers(1, height - y + 1), rng.integers(1, width - x + 1)))
    for y, x, rows, columns in windows:
        window = (slice(y, y + rows), slice(x, x + columns))
        patch = resample_window(read, shape, factor, *window)
        assert patch.dtype == np.float32
        np.testing.assert_allclose(patch, whole[window], rtol=0, atol=1e-5)
        # What was read: the window's span in the plane, and a margin for the smoothing.
        span, margin = np.array([rows, columns]) / factor, 3 + max(0, 2 / factor - 2)
        read_rows, read_columns = reads.pop()
        assert read_rows.stop - read_rows.start <= span[0] + 2 * margin
        assert read_columns.stop - read_columns.start <= span[1] + 2 * margin


def test_the_whole_window_reads_the_whole_plane_once() -> None:
    plane = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    reads = []

    def read(rows: slice, columns: slice) -> np.ndarray:
        reads.append((rows, columns))
        return plane[rows, columns]

    whole = resample_window(read, plane.shape, 2.5, slice(None), slice(None))
    np.testing.assert_allclose(whole, resample_plane(plane, 2.5, order=1), atol=1e-3)
    assert reads == [(slice(0, 40), slice(0, 50))]
    assert resample_window(read, plane.shape, 2.5, slice(5, 5), slice(0, 8)).shape == (0, 8)


def test_a_window_with_a_step_is_refused() -> None:
    plane = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match="step of 1"):
        resample_window(lambda r, c: plane[r, c], plane.shape, 2.0, slice(0, 8, 2), slice(0, 8))
