"""Simulated scribbles: true to the ground truth, the asked share of pixels, stroke-like."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.errors import InputError
from scribbles import BACKGROUND, STRUCTURE, simulate_scribbles


@pytest.fixture
def membranes(sample_pair) -> np.ndarray:
    return sample_pair.target_labels[0]  # (96, 96) 0/1


def test_scribbles_agree_with_the_ground_truth_and_fill_the_budget(membranes) -> None:
    scribbles = simulate_scribbles(membranes, np.random.default_rng(0), fraction=0.04)
    assert set(np.unique(scribbles)) == {0, BACKGROUND, STRUCTURE}
    assert (membranes[scribbles == BACKGROUND] == 0).all()
    assert (membranes[scribbles == STRUCTURE] == 1).all()
    half = round(0.04 * membranes.size / 2)
    assert (scribbles == BACKGROUND).sum() == half
    assert (scribbles == STRUCTURE).sum() == half


def test_scribbles_are_strokes_not_scattered_pixels(membranes) -> None:
    scribbles = simulate_scribbles(membranes, np.random.default_rng(1), fraction=0.04)
    for code in (BACKGROUND, STRUCTURE):
        _, pieces = ndi.label(scribbles == code, structure=np.ones((3, 3)))
        assert (scribbles == code).sum() / pieces >= 8  # pixels per stroke, on average


def test_scribbles_are_deterministic_by_seed(membranes) -> None:
    first = simulate_scribbles(membranes, np.random.default_rng(3))
    np.testing.assert_array_equal(first, simulate_scribbles(membranes, np.random.default_rng(3)))
    assert not np.array_equal(first, simulate_scribbles(membranes, np.random.default_rng(4)))


def test_scribbles_make_a_sparse_domain(sample_pair, membranes) -> None:
    labels = np.zeros(sample_pair.target_image.shape, np.uint8)
    labels[0] = simulate_scribbles(membranes, np.random.default_rng(0))
    domain = Domain(sample_pair.target_image, labels, label_kind="sparse")
    assert domain.labelled_slices().tolist() == [0]
    assert domain.annotated.sum() == (labels > 0).sum()


@pytest.mark.parametrize(
    ("labels", "fraction"),
    [(np.zeros((2, 8, 8)), 0.01), (np.full((8, 8), 2), 0.01), (np.zeros((8, 8)), 0.0)],
)
def test_bad_input_is_refused(labels, fraction) -> None:
    with pytest.raises(InputError):
        simulate_scribbles(labels, np.random.default_rng(0), fraction)
