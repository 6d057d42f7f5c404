"""Tests for the segmentation scores and the threshold search, on cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.metrics import best_threshold, segmentation_scores

PROBABILITIES = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1]])
LABELS = np.array([[1, 0, 0], [1, 1, 1]])
# At 0.5 the prediction is [[1, 0, 1], [0, 1, 0]]: TP = 2 ((0,0), (1,1)), FP = 1 ((0,2)),
# FN = 2 ((1,0), (1,2)), TN = 1 ((0,1)).


def test_scores_by_hand() -> None:
    scores = segmentation_scores(PROBABILITIES, LABELS)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert scores["dice"] == scores["f1"]
    assert scores["iou"] == pytest.approx(2 / 5)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["threshold"] == 0.5


def test_mask_excludes_pixels() -> None:
    mask = np.array([[1, 1, 0], [1, 1, 0]], bool)  # drop the FP (0,2) and the FN (1,2)
    scores = segmentation_scores(PROBABILITIES, LABELS, mask)
    # TP = 2, FP = 0, FN = 1, TN = 1
    assert scores["precision"] == pytest.approx(1.0)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(4 / 5)
    assert scores["iou"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(3 / 4)


def test_threshold_is_inclusive_and_moves_the_cut() -> None:
    scores = segmentation_scores(PROBABILITIES, LABELS, threshold=0.7)
    # predicted: 0.9 and 0.7 (>= counts): TP = 2, FP = 0, FN = 2
    assert scores["precision"] == pytest.approx(1.0)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["threshold"] == 0.7
    low = segmentation_scores(PROBABILITIES, LABELS, threshold=0.05)
    assert low["recall"] == 1.0
    assert low["precision"] == pytest.approx(4 / 6)


def test_labels_in_any_binary_form() -> None:
    a = segmentation_scores(PROBABILITIES, LABELS * 255)
    b = segmentation_scores(PROBABILITIES, LABELS.astype(bool))
    assert a == b == segmentation_scores(PROBABILITIES, LABELS)


def test_perfect_and_inverted_on_sample_labels(sample_pair) -> None:
    labels = sample_pair.target_labels
    perfect = segmentation_scores(labels.astype(np.float32), labels)
    assert perfect["f1"] == perfect["iou"] == perfect["accuracy"] == 1.0
    inverted = segmentation_scores(1.0 - labels, labels)
    assert inverted["f1"] == inverted["iou"] == inverted["accuracy"] == 0.0


def test_empty_prediction_and_truth() -> None:
    scores = segmentation_scores(np.zeros((3, 3)), np.zeros((3, 3)))
    assert scores["f1"] == 1.0  # nothing to find and nothing found
    assert scores["iou"] == 1.0
    assert scores["accuracy"] == 1.0
    assert scores["precision"] == scores["recall"] == 1.0
    missed = segmentation_scores(np.zeros((3, 3)), np.eye(3))
    assert missed["f1"] == missed["recall"] == missed["precision"] == 0.0


def test_shape_mismatch() -> None:
    with pytest.raises(
        ValueError, match=r"prediction has shape \(2, 3\) but labels have \(3, 2\)"
    ):
        segmentation_scores(PROBABILITIES, LABELS.T)
    with pytest.raises(ValueError, match="mask has shape"):
        segmentation_scores(PROBABILITIES, LABELS, np.ones((2, 2)))


def test_best_threshold_separable() -> None:
    positives = [0.62, 0.7, 0.9, 1.0]
    negatives = [0.0, 0.1, 0.3, 0.55, 0.6]
    probabilities = np.array(positives + negatives, np.float32)
    labels = np.array([1] * len(positives) + [0] * len(negatives))
    threshold, f1 = best_threshold(probabilities, labels)
    assert 0.6 < threshold <= 0.62
    assert f1 == 1.0
    assert segmentation_scores(probabilities, labels, threshold=threshold)["f1"] == 1.0


def test_best_threshold_overlapping_classes() -> None:
    # F1 by threshold t: t <= 0.2: 6/8; (0.2, 0.3]: 6/7; (0.3, 0.8]: 4/6; (0.8, 0.85]: 2/5;
    # (0.85, 0.9]: 2/4. The best is 6/7, at the first grid step above 0.2.
    probabilities = np.array([0.3, 0.8, 0.9, 0.2, 0.85], np.float32)
    labels = np.array([1, 1, 1, 0, 0])
    threshold, f1 = best_threshold(probabilities, labels)
    assert f1 == pytest.approx(6 / 7)
    assert threshold == pytest.approx(0.21)
    coarse, coarse_f1 = best_threshold(probabilities, labels, bins=4)  # grid 0, .25, .5, .75
    assert (coarse, coarse_f1) == (pytest.approx(0.25), pytest.approx(6 / 7))
    # masking out the negative at 0.85 makes a perfect cut possible
    mask = np.array([1, 1, 1, 1, 0], bool)
    threshold, f1 = best_threshold(probabilities, labels, mask)
    assert f1 == 1.0
    assert 0.2 < threshold <= 0.3


def test_best_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.3
    probabilities = np.clip(0.35 * labels + 0.6 * rng.random(2000), 0, 1).astype(np.float32)
    threshold, f1 = best_threshold(probabilities, labels, bins=50)
    cuts = np.arange(1, 50) / 50  # 0 is no threshold to give: every pixel is foreground
    grid = [segmentation_scores(probabilities, labels, threshold=t)["f1"] for t in cuts]
    assert f1 == pytest.approx(max(grid), abs=1e-12)
    assert threshold == pytest.approx(cuts[np.argmax(grid)])


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.2, float("nan"), float("inf")])
def test_a_threshold_that_is_not_a_probability_is_refused(threshold) -> None:
    probabilities, labels = np.full((4, 4), 0.5), np.eye(4, dtype=np.uint8)
    with pytest.raises(InputError, match=f"between 0 and 1, exclusive; got {threshold}"):
        segmentation_scores(probabilities, labels, threshold=threshold)
