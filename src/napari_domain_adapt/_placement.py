"""Arrays into layers, in the main thread: the live preview and the result layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._form import layer_kind
from ._layers import LIVE_NAME

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

#: How probability layers look: dark where 0, added onto the image below.
PROBABILITY_LOOK = {"colormap": "magma", "contrast_limits": (0.0, 1.0), "blending": "additive"}


def place_layer(
    viewer: napari.Viewer, data: np.ndarray, name: str, kind: str, like: Layer, **look: Any
) -> Layer:
    """Put ``data`` in the layer ``name`` at ``like``'s scale and offset.

    An existing layer of that name and kind is updated (its display settings kept), so
    repeated runs replace their results instead of piling them up; ``kind`` is ``image``
    or ``labels``.
    """
    old = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401
    if old is not None and layer_kind(old) == kind and old.data.ndim == data.ndim:
        old.data = data
        old.scale = like.scale
        old.translate = like.translate
        return old
    if old is not None:
        viewer.layers.remove(old)
    add = viewer.add_image if kind == "image" else viewer.add_labels
    return add(data, name=name, scale=like.scale, translate=like.translate, **look)


def show_preview(viewer: napari.Viewer, target: Layer, preview: np.ndarray, index: int) -> Layer:
    """Show a probability map of slice ``index`` of ``target`` in the live layer.

    For a stack the layer holds that one slice, placed at its depth, so it shows only
    while the viewer is at that slice.
    """
    data, translate = preview, np.array(target.translate, dtype=float)
    if target.ndim >= 3:
        data = preview[np.newaxis]
        translate[0] += index * target.scale[0]
    if LIVE_NAME in viewer.layers:
        layer = viewer.layers[LIVE_NAME]
        if not np.array_equal(layer.translate, translate):  # each change redraws the layer
            layer.translate = translate
        layer.data = data
        return layer
    return viewer.add_image(
        data,
        name=LIVE_NAME,
        scale=target.scale,
        translate=translate,
        opacity=0.8,
        **PROBABILITY_LOOK,
    )
