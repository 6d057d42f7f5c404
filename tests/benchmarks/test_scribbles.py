"""Simulated scribbles: true to the ground truth, the asked share of pixels, stroke-like;
corrections on a prediction's largest errors only."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.errors import InputError
from scribbles import BACKGROUND, STRUCTURE, correction_scribbles, simulate_scribbles


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


@pytest.fixture
def mistaken(membranes) -> np.ndarray:
    """A prediction of the membranes with a block of missed membrane and one of false
    membrane."""
    prediction = membranes.astype(bool)
    prediction[10:40, 10:40] = False
    prediction[60:90, 60:90] = True
    return prediction


def test_corrections_lie_on_errors_agree_with_the_labels_and_fill_the_budget(
    membranes, mistaken
) -> None:
    scribbles = correction_scribbles(membranes, mistaken, np.random.default_rng(0), 0.02)
    drawn = scribbles > 0
    assert (mistaken != membranes)[drawn].all()  # on errors only
    assert (membranes[scribbles == STRUCTURE] == 1).all()  # missed membrane
    assert (membranes[scribbles == BACKGROUND] == 0).all()  # false membrane
    total = round(0.02 * membranes.size)
    assert (scribbles == STRUCTURE).sum() == total // 2
    assert drawn.sum() == total


def test_corrections_go_to_the_largest_error_first(membranes) -> None:
    labels = np.zeros((64, 64), np.uint8)
    labels[:, 50] = 1
    prediction = labels.astype(bool)
    prediction[5:25, 5:25] = True  # one large region of false structure
    prediction[40:60:4, 5:25:4] = True  # and 25 single pixels
    scribbles = correction_scribbles(labels, prediction, np.random.default_rng(2), 30 / 64**2)
    # No structure missed: the whole budget goes to the background strokes, in the block.
    assert (scribbles == BACKGROUND).sum() == 30
    assert scribbles[5:25, 5:25].astype(bool).sum() == 30


def test_corrections_keep_earlier_ones_and_the_field_of_view(membranes, mistaken) -> None:
    first = correction_scribbles(membranes, mistaken, np.random.default_rng(0), 0.02)
    mask = np.ones(membranes.shape, bool)
    mask[:, 80:] = False  # half the block of false membrane
    second = correction_scribbles(
        membranes, mistaken, np.random.default_rng(1), 0.02, previous=first, mask=mask
    )
    np.testing.assert_array_equal(second[first > 0], first[first > 0])
    added = (second > 0) & (first == 0)
    assert added.sum() == round(0.02 * membranes.size)
    assert not added[~mask].any()


def test_corrections_stop_when_every_error_is_drawn(membranes) -> None:
    prediction = membranes.astype(bool)
    prediction[0, :5] = ~prediction[0, :5]  # five wrong pixels, a budget of 92
    scribbles = correction_scribbles(membranes, prediction, np.random.default_rng(0), 0.01)
    np.testing.assert_array_equal(scribbles > 0, prediction != membranes)


@pytest.mark.parametrize(
    ("prediction", "previous"),
    [(np.zeros((8, 9), bool), None), (np.zeros((8, 8), bool), np.zeros((9, 8), np.uint8))],
)
def test_bad_corrections_input_is_refused(prediction, previous) -> None:
    with pytest.raises(InputError):
        correction_scribbles(np.zeros((8, 8)), prediction, np.random.default_rng(0), 0.1, previous)
