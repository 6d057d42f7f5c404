"""Instance ids to membrane masks, checked against hand-computed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.labels import instances_to_membranes

TWO_CELLS = np.array([[1, 1, 1, 1, 2, 2, 2, 2]] * 3)


@pytest.mark.parametrize(
    ("width", "row"),
    [
        (1, [0, 0, 0, 1, 0, 0, 0, 0]),
        (2, [0, 0, 0, 1, 1, 0, 0, 0]),
        (3, [0, 0, 1, 1, 1, 0, 0, 0]),
        (4, [0, 0, 1, 1, 1, 1, 0, 0]),
    ],
)
def test_width_across_a_straight_boundary(width, row):
    membranes, valid = instances_to_membranes(TWO_CELLS, width=width)
    np.testing.assert_array_equal(membranes, np.array([row] * 3, np.uint8))
    assert valid.all()
    assert membranes.dtype == np.uint8


def test_one_instance_has_no_membrane():
    membranes, _ = instances_to_membranes(np.full((4, 5), 7), width=3)
    assert not membranes.any()


def test_zero_as_background_or_ignored():
    ids = np.array(
        [
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 1, 1],
        ]
    )
    as_background, valid = instances_to_membranes(ids, width=1)
    expected = np.array(
        [
            [0, 1, 0, 0],
            [1, 1, 0, 0],
            [0, 1, 0, 0],
        ],
        np.uint8,
    )
    np.testing.assert_array_equal(as_background, expected)
    assert valid.all()
    ignored, valid = instances_to_membranes(ids, width=1, zero="ignore")
    # Only the 2|1 boundary between two real ids counts; id 0 is outside the valid mask.
    np.testing.assert_array_equal(ignored, [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(valid, ids != 0)


def test_slices_are_converted_one_by_one():
    stack = np.stack([np.full((3, 4), 1), TWO_CELLS[:, :4] * 0 + np.array([1, 1, 2, 2])])
    membranes, _ = instances_to_membranes(stack, width=1)
    # Slice 0 is one instance: no boundary, although it differs from slice 1 in z.
    assert not membranes[0].any()
    np.testing.assert_array_equal(membranes[1], [[0, 1, 0, 0]] * 3)


@pytest.mark.parametrize(
    ("instances", "kwargs", "message"),
    [
        (np.zeros((3, 3), np.float32), {}, "expected integer ids"),
        (np.zeros((2, 2, 2, 2), int), {}, r"expected \(H, W\) or \(N, H, W\)"),
        (np.zeros((3, 3), int), {"zero": "nothing"}, "zero must be one of"),
        (np.zeros((3, 3), int), {"width": 0}, "width must be a positive integer"),
    ],
)
def test_bad_input(instances, kwargs, message):
    with pytest.raises(InputError, match=message):
        instances_to_membranes(instances, **kwargs)
