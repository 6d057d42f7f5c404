"""Tests for input validation at the engine's boundary: accepted forms and useful errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.core.data import (
    Domain,
    as_image_stack,
    as_label_stack,
    as_mask_stack,
    labelled_slices,
)
from napari_domain_adapt.core.errors import InputError


def _ramp(*shape: int, dtype=np.float32) -> np.ndarray:
    return (np.arange(np.prod(shape)) % 200).reshape(shape).astype(dtype)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((20, 30), (1, 20, 30)),
        ((4, 20, 30), (4, 20, 30)),
        ((20, 30, 3), (1, 20, 30, 3)),
        ((4, 20, 30, 3), (4, 20, 30, 3)),
        ((20, 30, 4), (1, 20, 30, 4)),
    ],
)
def test_image_shapes_accepted(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    stack = as_image_stack(_ramp(*shape))
    assert stack.shape == expected


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_image_dtypes_accepted(dtype) -> None:
    image = _ramp(3, 10, 12, dtype=dtype)
    stack = as_image_stack(image)
    assert stack.dtype == dtype
    np.testing.assert_array_equal(stack, image)


def test_image_rgb_flag_overrides_guess() -> None:
    # three grey slices of width 3 would be guessed as one colour image
    grey = _ramp(5, 8, 3)
    assert as_image_stack(grey, rgb=False).shape == (5, 8, 3)
    assert as_image_stack(grey).shape == (1, 5, 8, 3)
    with pytest.raises(InputError, match="expected colour"):
        as_image_stack(_ramp(5, 8, 6), rgb=True)


@pytest.mark.parametrize("shape", [(30,), (2, 2, 3, 4, 5), (1, 2, 20, 30, 3)])
def test_wrong_ndim(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError) as info:
        as_image_stack(_ramp(*shape), name="source")
    message = str(info.value)
    assert message.startswith("source has shape")
    assert str(shape) in message
    assert "expected (H, W), (N, H, W), (H, W, 3) or (N, H, W, 3)" in message


@pytest.mark.parametrize(
    ("array", "found"),
    [
        (np.eye(5, dtype=bool), "dtype bool"),
        (np.eye(5) + 1j * np.eye(5), "dtype complex128"),
        (np.eye(5).astype(object), "dtype object"),
        # numpy counts timedelta64 among the integers; hypothesis found NaT stacks accepted
        (np.full((5, 5), np.timedelta64("NaT")), "dtype timedelta64"),
        (np.arange(25).reshape(5, 5).astype("m8[s]"), r"dtype timedelta64\[s\]"),
        (np.arange(25).reshape(5, 5).astype("M8[D]"), r"dtype datetime64\[D\]"),
    ],
)
def test_bad_dtype(array: np.ndarray, found: str) -> None:
    with pytest.raises(InputError, match=f"image has {found}; expected an integer"):
        as_image_stack(array)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels(bad: float) -> None:
    image = _ramp(2, 10, 10)
    image[1, 3, 4] = bad
    image[0, 0, 0] = bad
    with pytest.raises(InputError, match="image has 2 NaN or infinite pixels; expected finite"):
        as_image_stack(image)


def test_constant_image() -> None:
    with pytest.raises(InputError, match="constant \\(every pixel is 7\\); expected an image"):
        as_image_stack(np.full((2, 10, 10), 7, np.uint8))


def test_empty_or_degenerate_image() -> None:
    with pytest.raises(InputError, match="at least one 2x2 slice"):
        as_image_stack(np.zeros((0, 10, 10), np.uint8))
    with pytest.raises(InputError, match="at least one 2x2 slice"):
        as_image_stack(_ramp(1, 30))


@pytest.mark.parametrize(
    "labels",
    [
        np.array([[0, 1], [1, 0]], np.uint8),
        np.array([[0, 255], [255, 0]], np.uint8),
        np.array([[False, True], [True, False]]),
        np.array([[0.0, 1.0], [1.0, 0.0]], np.float32),
        np.array([[0, 255], [255, 0]], np.int64),
    ],
)
def test_binary_labels_accepted(labels: np.ndarray) -> None:
    stack = as_label_stack(labels, (1, 2, 2))
    assert stack.dtype == np.uint8
    np.testing.assert_array_equal(stack, [[[0, 1], [1, 0]]])


def test_all_foreground_labels_become_ones() -> None:
    np.testing.assert_array_equal(as_label_stack(np.full((2, 2), 255), (1, 2, 2)), 1)
    np.testing.assert_array_equal(as_label_stack(np.zeros((2, 2)), (1, 2, 2)), 0)


def test_label_values_listed_in_error() -> None:
    labels = np.zeros((2, 6, 6), np.uint8)
    labels[0, 1, 1] = 2
    labels[1, 2, 3] = 7
    with pytest.raises(InputError) as info:
        as_label_stack(labels, (2, 6, 6), name="source labels")
    message = str(info.value)
    assert "source labels contain the values {0, 2, 7}" in message
    assert "expected binary labels: 0/1, 0/255 or bool" in message


def test_many_label_values_are_abbreviated() -> None:
    labels = np.arange(100).reshape(10, 10)
    with pytest.raises(InputError, match=r"\{0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\}"):
        as_label_stack(labels, (1, 10, 10))


@pytest.mark.parametrize("dtype", ["m8[s]", "M8[D]"])
def test_time_labels_are_refused(dtype: str) -> None:
    labels = np.eye(5).astype(dtype)
    for check in (as_label_stack, as_mask_stack):
        with pytest.raises(InputError, match=r"have dtype (timedelta|datetime)64"):
            check(labels, (1, 5, 5), name="labels")


def test_label_shape_mismatch() -> None:
    with pytest.raises(InputError) as info:
        as_label_stack(np.zeros((2, 10, 12)), (2, 10, 10))
    message = str(info.value)
    assert "shape (2, 10, 12)" in message
    assert "expected the image's shape (2, 10, 10)" in message


def test_three_label_slices_read_as_colour_are_named_so(tmp_path) -> None:
    """tifffile writes 3 or 4 grey slices as one RGB image unless told otherwise: labels
    of 3 slices then read as (H, W, 3), and the message says why and what to do."""
    import tifffile

    from napari_domain_adapt.core.io import read_volume

    path = tmp_path / "labels.tif"
    # what tifffile 2026.3 writes by default (deprecated; later versions may not)
    tifffile.imwrite(
        path, np.zeros((3, 10, 12), np.uint8), photometric="rgb", planarconfig="separate"
    )
    with pytest.raises(InputError) as info:
        as_label_stack(read_volume(path), (3, 10, 12))
    message = str(info.value)
    assert "have shape (10, 12, 3)" in message
    assert "if they are 3 slices, their TIFF stores them as one" in message
    assert "photometric='minisblack'" in message
    with pytest.raises(InputError, match="colour image; expected one grey value"):
        as_label_stack(np.zeros((10, 12, 3)), (1, 10, 12))  # one slice: plain colour


def test_mask_is_bool() -> None:
    mask = as_mask_stack(np.array([[0, 255], [0, 0]], np.uint8), (1, 2, 2))
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, [[[False, True], [False, False]]])
    with pytest.raises(InputError, match="mask contain the values \\{0, 3\\}"):
        as_mask_stack(np.array([[0, 3], [0, 0]]), (1, 2, 2))


def test_labelled_slices() -> None:
    labels = np.zeros((4, 5, 5), np.uint8)
    labels[2, 1, 1] = 1
    labels[3] = 1
    np.testing.assert_array_equal(labelled_slices(labels), [2, 3])
    assert labelled_slices(np.zeros((3, 5, 5))).size == 0
    np.testing.assert_array_equal(labelled_slices(np.eye(3)), [0])


def test_domain_validates_and_converts(sample_pair) -> None:
    masks = np.ones_like(sample_pair.source_labels) * 255
    domain = Domain(sample_pair.source_image, sample_pair.source_labels * 255, masks, name="src")
    assert len(domain) == 4
    assert domain.labels.dtype == np.uint8
    np.testing.assert_array_equal(domain.labels, sample_pair.source_labels)
    assert domain.masks.dtype == bool
    assert domain.masks.all()


def test_domain_single_rgb_slice() -> None:
    rgb = _ramp(20, 30, 3, dtype=np.uint8)
    domain = Domain(rgb, np.zeros((20, 30), np.uint8))
    assert domain.images.shape == (1, 20, 30, 3)
    assert domain.labels.shape == (1, 20, 30)


def test_domain_errors_name_the_domain(sample_pair) -> None:
    with pytest.raises(InputError, match=r"^target labels have shape"):
        Domain(sample_pair.target_image, sample_pair.target_labels[:2], name="target")
    with pytest.raises(InputError, match=r"^target masks contain the values"):
        Domain(sample_pair.target_image, masks=sample_pair.target_labels * 3, name="target")


def test_sparse_labels_become_labels_and_annotation() -> None:
    image = np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5)
    scribbles = np.zeros((2, 5, 5), np.uint8)
    scribbles[1, 0, :3] = [1, 2, 2]
    domain = Domain(image, scribbles, label_kind="sparse")
    np.testing.assert_array_equal(domain.labels[1, 0], [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(domain.annotated[1, 0], [True, True, True, False, False])
    assert not domain.annotated[0].any()
    assert list(domain.labelled_slices()) == [1]
    assert domain.annotated.sum() == 3
    np.testing.assert_array_equal(domain.loss_weights(), domain.annotated.astype(np.float32))


def test_dense_labels_weigh_every_pixel() -> None:
    image = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[2, 1, 1] = 255
    domain = Domain(image, labels)
    assert list(domain.labelled_slices()) == [2]
    assert domain.loss_weights() is None


@pytest.mark.parametrize(
    ("values", "kind", "message"),
    [
        ((0, 255), "sparse", r"values \{0, 255\}; sparse annotations"),
        ((0, 1, 2), "dense", r"values \{0, 1, 2\}; expected binary labels"),
    ],
)
def test_label_values_must_fit_the_kind(values, kind, message) -> None:
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    labels = np.zeros((4, 4), np.uint8)
    labels.flat[: len(values)] = values
    with pytest.raises(InputError, match=message):
        Domain(image, labels, label_kind=kind)


def test_unknown_label_kind() -> None:
    with pytest.raises(InputError, match="label kind must be one of dense, sparse"):
        Domain(np.arange(16).reshape(4, 4), label_kind="scribble")
