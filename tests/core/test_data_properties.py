"""Property-based tests of input validation: every valid input is accepted and shaped right,
anything else raises InputError and never another exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_domain_adapt.core.data import (
    Domain,
    as_image_stack,
    as_label_stack,
    as_mask_stack,
    as_sparse_label_stack,
)
from napari_domain_adapt.core.errors import InputError

PIXEL_TYPES = [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32]
PIXEL_TYPES += [np.float64]
LABEL_TYPES = [np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64]

FAST = settings(deadline=None, max_examples=150)


def _finite(dtype) -> st.SearchStrategy:
    return hnp.from_dtype(np.dtype(dtype), allow_nan=False, allow_infinity=False)


@st.composite
def valid_images(draw) -> tuple[np.ndarray, tuple[int, ...]]:
    """An image of an accepted form, and the stack shape it must become."""
    kind = draw(st.sampled_from(["slice", "stack", "colour", "colour stack"]))
    n, h = draw(st.integers(1, 4)), draw(st.integers(2, 12))
    channels = draw(st.sampled_from([3, 4]))
    if kind == "slice":
        shape, stack = (h, w := draw(st.integers(2, 12))), (1, h, w)
    elif kind == "stack":  # a last axis of 1-4 would read as channels
        shape = stack = (n, h, draw(st.integers(5, 12)))
    elif kind == "colour":
        shape = (h, w := draw(st.integers(2, 12)), channels)
        stack = (1, *shape)
    else:
        shape = stack = (n, h, draw(st.integers(2, 12)), channels)
    dtype = draw(st.sampled_from(PIXEL_TYPES))
    image = draw(hnp.arrays(dtype, shape, elements=_finite(dtype)))
    image.flat[0], image.flat[-1] = 0, 1  # contrast: not a constant image
    return image, stack


def assert_a_valid_stack(stack: np.ndarray, given_array: object) -> None:
    """What every accepted image must be, whatever form it came in."""
    assert isinstance(stack, np.ndarray)
    assert stack.ndim in (3, 4)
    if stack.ndim == 4:
        assert stack.shape[-1] in (3, 4)
    assert stack.shape[0] >= 1
    assert min(stack.shape[1:3]) >= 2
    assert stack.dtype != bool
    assert np.issubdtype(stack.dtype, np.integer) or np.issubdtype(stack.dtype, np.floating)
    assert np.isfinite(stack).all()
    assert stack.min() < stack.max()
    np.testing.assert_array_equal(stack.ravel(), np.asarray(given_array).ravel())


def attempt(check, *args, **kwargs) -> tuple[object, InputError | None]:
    """``check``'s result, or the InputError it raised; any other exception fails the test."""
    try:
        return check(*args, **kwargs), None
    except InputError as error:
        return None, error


anything = st.one_of(
    hnp.arrays(
        st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(), hnp.unicode_string_dtypes()),
        hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5),
    ),
    st.none(),
    st.text(max_size=5),
    st.integers(),
    st.floats(),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.lists(st.lists(st.integers(0, 300), max_size=4), max_size=4),  # ragged or not
    st.lists(st.one_of(st.integers(), st.text(max_size=2), st.none()), max_size=4),
)


@FAST
@given(valid_images())
def test_valid_images_are_accepted_and_shaped(case) -> None:
    image, expected = case
    stack = as_image_stack(image)
    assert stack.shape == expected
    assert stack.dtype == image.dtype
    assert_a_valid_stack(stack, image)


@pytest.mark.slow  # many generated examples: `pytest -m slow`
@FAST
@given(anything)
def test_anything_is_a_valid_stack_or_an_input_error(value) -> None:
    stack, error = attempt(as_image_stack, value, name="image")
    if error is None:
        assert_a_valid_stack(stack, value)
    else:
        assert str(error).startswith("image ")


@FAST
@given(valid_images(), st.sampled_from(["nan", "inf", "constant", "bool", "complex", "axis"]))
def test_breaking_one_rule_of_a_valid_image_is_an_input_error(case, fault) -> None:
    image, _ = case
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: still bad
        image = _break(image, fault)
    _, error = attempt(as_image_stack, image)
    assert error is not None, f"{fault}: accepted {image.shape} {image.dtype}"


def _break(image: np.ndarray, fault: str) -> np.ndarray:
    if fault in ("nan", "inf"):
        image = image.astype(np.float32)
        image.flat[len(image.flat) // 2] = np.nan if fault == "nan" else -np.inf
    elif fault == "constant":
        image = np.full_like(image, image.flat[0])
    elif fault == "bool":
        image = image != 0
    elif fault == "complex":
        image = image.astype(np.complex64)
    else:
        image = image[np.newaxis, np.newaxis]
    return image


@st.composite
def valid_labels(draw) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    """Binary labels of an accepted form, the image shape, and the foreground they mean."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(2, 10)), draw(st.integers(2, 10))
    foreground = draw(hnp.arrays(bool, (n, h, w)))
    style = draw(st.sampled_from(["0/1", "0/255", "bool"]))
    if style == "bool":
        labels = foreground.copy()
    else:
        dtype = draw(st.sampled_from(LABEL_TYPES))
        labels = foreground.astype(dtype) * (255 if style == "0/255" else 1)
    if n == 1 and draw(st.booleans()):
        labels = labels[0]  # one slice, as (H, W)
    return labels, (n, h, w), foreground


@FAST
@given(valid_labels())
def test_valid_labels_are_accepted_as_zeros_and_ones(case) -> None:
    labels, shape, foreground = case
    result = as_label_stack(labels, shape)
    assert result.dtype == np.uint8
    assert result.shape == shape
    np.testing.assert_array_equal(result, foreground)
    np.testing.assert_array_equal(as_mask_stack(labels, shape), foreground)


@FAST
@given(anything, st.tuples(st.integers(1, 3), st.integers(2, 5), st.integers(2, 5)))
def test_any_labels_are_binary_or_an_input_error(value, shape) -> None:
    for check in (as_label_stack, as_mask_stack):
        result, error = attempt(check, value, shape, name="labels")
        if error is None:
            assert result.shape == shape
            assert set(np.unique(result)) <= {0, 1}
        else:
            assert str(error).startswith("labels ")


@FAST
@given(anything, st.tuples(st.integers(1, 3), st.integers(2, 5), st.integers(2, 5)))
def test_any_scribbles_are_valid_or_an_input_error(value, shape) -> None:
    result, error = attempt(as_sparse_label_stack, value, shape, name="labels")
    if error is not None:
        return
    labels, annotated = result
    assert labels.shape == annotated.shape == shape
    assert annotated.dtype == bool
    assert set(np.unique(labels)) <= {0, 1}
    assert not (labels.astype(bool) & ~annotated).any()  # structure only where annotated


@FAST
@given(valid_images(), st.data())
def test_a_domain_of_valid_parts_has_labels_of_the_image_shape(case, data) -> None:
    image, expected = case
    labels = data.draw(hnp.arrays(np.uint8, expected[:3], elements=st.sampled_from([0, 255])))
    domain = Domain(image, labels, name="source")
    assert domain.images.shape == expected
    assert domain.labels.shape == expected[:3]
    np.testing.assert_array_equal(domain.labels, labels == 255)
