"""Segmentation scores of a probability map against binary ground truth."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def _select(probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray | None):
    probabilities = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray(labels).astype(bool)
    if probabilities.shape != labels.shape:
        raise ValueError(
            f"prediction has shape {probabilities.shape} but labels have {labels.shape}"
        )
    if mask is None:
        return probabilities.ravel(), labels.ravel()
    mask = np.asarray(mask).astype(bool)
    if mask.shape != labels.shape:
        raise ValueError(f"mask has shape {mask.shape} but labels have {labels.shape}")
    return probabilities[mask], labels[mask]


def _scores(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    # With nothing predicted (or nothing to find), a perfect answer scores 1, a miss 0.
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else float(fp == 0)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    accuracy = (tp + tn) / (tp + fp + fn + tn) if tp + fp + fn + tn else 1.0
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou, "accuracy": accuracy}


def check_threshold(threshold: float, name: str = "threshold") -> None:
    """Raise InputError unless ``threshold`` is a probability strictly between 0 and 1: at 0
    or 1 (or NaN) every pixel falls on one side, and the scores say nothing."""
    if not 0 < threshold < 1:
        raise InputError(f"{name} must be between 0 and 1, exclusive; got {threshold}")


def segmentation_scores(
    probabilities: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Precision, recall, F1 (= Dice), IoU and accuracy of ``probabilities >= threshold``.

    Pixels outside ``mask`` (a field of view), where given, are not counted.
    """
    check_threshold(threshold)
    prob, truth = _select(probabilities, labels, mask)
    pred = prob >= threshold
    tp = float(np.count_nonzero(pred & truth))
    fp = float(np.count_nonzero(pred & ~truth))
    fn = float(np.count_nonzero(~pred & truth))
    tn = float(pred.size - tp - fp - fn)
    scores = _scores(tp, fp, fn, tn)
    scores["dice"] = scores["f1"]
    scores["threshold"] = float(threshold)
    return scores


def best_threshold(
    probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None, bins: int = 100
) -> tuple[float, float]:
    """The threshold (on a grid of ``bins`` steps) that maximises F1, and that F1.

    Use it on data whose labels may be seen (source or validation), never to pick a
    threshold on target test labels for a reported score.
    """
    prob, truth = _select(probabilities, labels, mask)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, bins - 1)
    positives = np.bincount(index[truth], minlength=bins)
    negatives = np.bincount(index[~truth], minlength=bins)
    # Predicting foreground for bins >= k: cumulative sums from the top.
    tp = np.cumsum(positives[::-1])[::-1].astype(np.float64)
    fp = np.cumsum(negatives[::-1])[::-1].astype(np.float64)
    fn = truth.sum() - tp
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    best = int(np.argmax(f1))
    return float(edges[best]), float(f1[best])
