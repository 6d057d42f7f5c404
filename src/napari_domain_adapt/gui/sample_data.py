"""The npe2 sample-data contribution: the generated EM source/target pair as layers."""

from __future__ import annotations

from typing import Any

from napari_domain_adapt import core

#: Gap (pixels) between the source, shown on the left, and the target.
_GAP = 16


def make_sample_data(
    n_source: int = 8, n_target: int = 8, size: int = 256, seed: int = 0
) -> list[tuple[Any, dict[str, Any], str]]:
    """Source image and labels, target image, and the target's true labels (hidden).

    The source stack sits left of the target so both are in view; the target's true labels
    are for checking a result only and start hidden. Layer names let the widget pick its
    inputs by itself.
    """

    pair = core.make_sample_pair(n_source=n_source, n_target=n_target, size=size, seed=seed)
    left = {"translate": (0, 0, -(size + _GAP))}
    return [
        (pair.source_image, {"name": "source image", **left}, "image"),
        (pair.source_labels, {"name": "source labels", "opacity": 0.4, **left}, "labels"),
        (pair.target_image, {"name": "target image"}, "image"),
        (pair.target_labels, {"name": "target ground truth", "visible": False}, "labels"),
    ]
