"""A run's layers, in the main thread: the slice the live preview follows, the result pair
(probability and segmentation) beside the input, its threshold, and the layer Export writes.

Builds on :mod:`.placement`; the widget keeps the pair and says what was done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .form import layer_kind
from .layers import LIVE_NAME, binarize, result_names, slice_index
from .placement import PROBABILITY_LOOK, place_layer, promote_preview

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Layer


def viewed_slice(viewer: napari.Viewer, layer: Layer | None) -> int:
    """The slice of ``layer`` the viewer shows (0 for a single image, or no layer)."""
    if layer is None:
        return 0
    stacked = layer.ndim >= 3
    count = layer.data.shape[0] if stacked else 1
    return slice_index(viewer.dims.point, layer.scale, layer.translate, count)


def preview_shape(layer: Layer | None) -> tuple[int, ...] | None:
    """The shape of a live preview of ``layer`` (height, width), or None where a run
    refuses the layer anyway (no layer, or not a slice or a stack)."""
    if layer is None or layer.ndim not in (2, 3):
        return None
    return layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]


def show_result(
    viewer: napari.Viewer,
    probabilities: np.ndarray,
    like: Layer,
    is_target: bool,
    threshold: float,
) -> tuple[Image, Labels]:
    """Put ``probabilities`` and their mask at ``threshold`` into the result layers of the
    image ``like`` (the target's, where ``is_target``); returns the two layers.

    The target's live layer becomes its probability layer where it can, and is removed.
    """
    probability_name, segmentation_name = result_names(like.name, is_target)
    probability = None
    if is_target:  # a first run's live layer becomes its probability layer
        probability = promote_preview(viewer, probabilities, probability_name, like)
    if probability is None:
        probability = place_layer(
            viewer, probabilities, probability_name, "image", like, **PROBABILITY_LOOK
        )
    mask = binarize(probabilities, threshold)
    segmentation = place_layer(viewer, mask, segmentation_name, "labels", like, opacity=0.5)
    if is_target and LIVE_NAME in viewer.layers:
        viewer.layers.remove(LIVE_NAME)
    return probability, segmentation


def rethreshold(viewer: napari.Viewer, result: tuple[Image, Labels], threshold: float) -> None:
    """Re-threshold the probability layer of ``result`` into its segmentation layer, where
    both are still in the viewer."""
    probability, segmentation = result
    if probability in viewer.layers and segmentation in viewer.layers:
        segmentation.data = binarize(probability.data, threshold)


def export_layer(viewer: napari.Viewer, result: tuple[Image, Labels] | None) -> Labels | None:
    """The layer Export writes: the segmentation of ``result`` where it is still in the
    viewer, else the selected Labels layer (None: neither)."""
    if result is not None and result[1] in viewer.layers:
        return result[1]
    active = viewer.layers.selection.active
    return active if active is not None and layer_kind(active) == "labels" else None
