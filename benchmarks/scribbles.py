"""Simulated scribbles: a few short strokes per class, drawn from dense ground truth.

For the accuracy benchmark's sparse-label units: what a user paints in a minute on one
slice (background strokes inside cells, structure strokes along membranes), made
deterministic by the generator's seed; and, for its correction loop, what a user paints on
a model's worst mistakes (:func:`correction_scribbles`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_domain_adapt.core import InputError

#: Sparse label values (see :class:`napari_domain_adapt.core.Domain` with ``label_kind="sparse"``).
UNLABELLED, BACKGROUND, STRUCTURE = 0, 1, 2
_STEPS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


def simulate_scribbles(
    labels: np.ndarray,
    rng: np.random.Generator,
    fraction: float = 0.01,
    stroke_length: int = 40,
) -> np.ndarray:
    """Sparse uint8 labels for a dense ``(H, W)`` 0/1 slice: strokes covering ~``fraction``.

    Each class gets half the pixel budget, in strokes of up to ``stroke_length`` pixels: a
    walk that starts at a random pixel of the class and keeps to the class, going on in
    about the same direction where it can (so structure strokes follow membranes).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.isin(labels, (0, 1)).all():
        raise InputError(f"expected a dense (H, W) 0/1 label slice; got shape {labels.shape}")
    if not 0 < fraction <= 1:
        raise InputError(f"fraction must be in (0, 1]; got {fraction}")
    scribbles = np.zeros(labels.shape, np.uint8)
    budget = max(1, round(fraction * labels.size / 2))
    for value, code in ((0, BACKGROUND), (1, STRUCTURE)):
        region = labels == value
        starts = np.argwhere(region)
        if len(starts) == 0:
            continue
        drawn = 0
        for _ in range(100 * budget):  # enough tries for any region; ends on the budget
            if drawn >= budget:
                break
            drawn += _stroke(scribbles, region, starts, code, rng, stroke_length, budget - drawn)
    return scribbles


def correction_scribbles(
    labels: np.ndarray,
    prediction: np.ndarray,
    rng: np.random.Generator,
    fraction: float = 0.01,
    previous: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    stroke_length: int = 40,
) -> np.ndarray:
    """``previous`` sparse labels (none: empty) plus strokes on the largest errors of
    ``prediction`` (bool ``(H, W)``) against the dense 0/1 ``labels`` of the slice.

    About ``fraction`` of the slice's pixels are added: half as structure strokes on missed
    structure, half as background strokes on false structure (the rest of one half to the
    other where one kind of error is too small), one stroke per connected error region,
    largest first, again round the regions while pixels are left. Pixels labelled before
    and pixels outside ``mask`` (the field of view) are never drawn.
    """
    labels, prediction = np.asarray(labels), np.asarray(prediction, bool)
    if labels.ndim != 2 or not np.isin(labels, (0, 1)).all():
        raise InputError(f"expected a dense (H, W) 0/1 label slice; got shape {labels.shape}")
    if prediction.shape != labels.shape:
        raise InputError(
            f"the prediction has shape {prediction.shape}; expected the labels' {labels.shape}"
        )
    if not 0 < fraction <= 1:
        raise InputError(f"fraction must be in (0, 1]; got {fraction}")
    if previous is not None and np.shape(previous) != labels.shape:
        raise InputError(
            f"the previous scribbles have shape {np.shape(previous)}; expected {labels.shape}"
        )
    scribbles = np.zeros(labels.shape, np.uint8)
    if previous is not None:
        scribbles[:] = previous
    free = scribbles == UNLABELLED
    if mask is not None:
        free &= np.asarray(mask, bool)
    errors = {
        STRUCTURE: free & (labels == 1) & ~prediction,  # missed structure
        BACKGROUND: free & (labels == 0) & prediction,  # false structure
    }
    total = max(1, round(fraction * labels.size))
    # Half each, the share one kind of error cannot use going to the other.
    missed = min(
        int(errors[STRUCTURE].sum()), max(total // 2, total - int(errors[BACKGROUND].sum()))
    )
    for code, budget in ((STRUCTURE, missed), (BACKGROUND, total - missed)):
        _strokes_on_regions(scribbles, errors[code], code, rng, stroke_length, budget)
    return scribbles


def _strokes_on_regions(
    scribbles: np.ndarray,
    region: np.ndarray,
    code: int,
    rng: np.random.Generator,
    length: int,
    budget: int,
) -> None:
    """Strokes of ``code`` on ``region``'s connected parts, one per part, largest first,
    and round again, until ``budget`` pixels are drawn or every pixel of the region is."""
    parts, count = ndi.label(region, structure=np.ones((3, 3)))
    boxes = ndi.find_objects(parts)
    order = np.argsort(-np.bincount(parts.ravel(), minlength=count + 1)[1:], kind="stable")
    while budget > 0:
        before = budget
        for index in order:
            box = boxes[index]  # views: the stroke draws into ``scribbles``
            inside, canvas = parts[box] == index + 1, scribbles[box]
            starts = np.argwhere(inside & (canvas == UNLABELLED))
            if len(starts):
                budget -= _stroke(canvas, inside, starts, code, rng, length, budget)
            if budget <= 0:
                return
        if budget == before:  # every pixel of the region is drawn
            return


def _stroke(
    scribbles: np.ndarray,
    region: np.ndarray,
    starts: np.ndarray,
    code: int,
    rng: np.random.Generator,
    length: int,
    budget: int,
) -> int:
    """Draw one stroke inside ``region``; returns how many new pixels it labelled."""
    height, width = region.shape
    position = starts[rng.integers(len(starts))]
    heading = _STEPS[rng.integers(len(_STEPS))]
    drawn = 0
    for _ in range(length):
        if scribbles[tuple(position)] == UNLABELLED:
            scribbles[tuple(position)] = code
            drawn += 1
            if drawn >= budget:
                break
        moves = position + _STEPS
        inside = (
            (moves[:, 0] >= 0)
            & (moves[:, 0] < height)
            & (moves[:, 1] >= 0)
            & (moves[:, 1] < width)
        )
        moves, steps = moves[inside], _STEPS[inside]
        moves, steps = (
            moves[region[moves[:, 0], moves[:, 1]]],
            steps[region[moves[:, 0], moves[:, 1]]],
        )
        if len(moves) == 0:
            break
        # Prefer going on straight; a little noise lets the stroke bend with the region.
        score = steps @ heading + rng.uniform(0, 0.5, len(steps))
        best = int(np.argmax(score))
        position, heading = moves[best], steps[best]
    return drawn
