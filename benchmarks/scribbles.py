"""Simulated scribbles: a few short strokes per class, drawn from dense ground truth.

For the accuracy benchmark's sparse-label units: what a user paints in a minute on one
slice (background strokes inside cells, structure strokes along membranes), made
deterministic by the generator's seed.
"""

from __future__ import annotations

import numpy as np

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
