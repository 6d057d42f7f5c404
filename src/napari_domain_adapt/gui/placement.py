"""Arrays into layers, in the main thread: the live preview and the result layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .form import layer_kind
from .layers import LIVE_NAME

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
        if hasattr(like, "units"):
            old.units = like.units
        return old
    if old is not None:
        viewer.layers.remove(old)
    add = viewer.add_image if kind == "image" else viewer.add_labels
    return add(data, name=name, **placement(like), **look)


def placement(like: Layer) -> dict[str, Any]:
    """Where ``like`` lies: its scale, offset and (napari 0.6 and later) units."""
    where = {"scale": like.scale, "translate": like.translate}
    if hasattr(like, "units"):
        where["units"] = like.units
    return where


def promote_preview(
    viewer: napari.Viewer, data: np.ndarray, name: str, like: Layer
) -> Layer | None:
    """Turn the live layer into the probability layer ``name`` holding ``data``, if it can.

    Only when there is a live layer and no layer ``name`` yet: the layer then looks as
    :func:`place_layer` would have made it. Adding a layer builds its controls (~150 ms
    here) and removing one runs napari's full ``gc.collect()`` (~400 ms with torch
    loaded), both on the GUI thread; renaming the live layer does neither. Returns the
    layer, or None when it could not.
    """
    if LIVE_NAME not in viewer.layers or name in viewer.layers:
        return None
    layer = viewer.layers[LIVE_NAME]
    if layer_kind(layer) != "image":
        return None
    layer.data = data
    for key, value in placement(like).items():
        setattr(layer, key, value)
    layer.opacity = 1.0
    layer.visible = True
    layer.name = name
    return layer


def show_preview(viewer: napari.Viewer, target: Layer, preview: np.ndarray, index: int) -> Layer:
    """Show a probability map of slice ``index`` of ``target`` in the live layer.

    For a stack the layer holds that one slice, placed at its depth, so it shows only
    while the viewer is at that slice. An existing live layer of the same shape is written
    in place and redrawn without its thumbnail: setting ``layer.data`` re-lays out the
    viewer's dimensions and redraws the layer list, ~3x the GUI thread's time (measured).
    """
    data, translate = preview, np.array(target.translate, dtype=float)
    if target.ndim >= 3:
        data = preview[np.newaxis]
        translate[0] += index * target.scale[0]
    if LIVE_NAME in viewer.layers:
        layer = viewer.layers[LIVE_NAME]
        if not np.array_equal(layer.translate, translate):  # each change redraws the layer
            layer.translate = translate
        old = layer.data
        if isinstance(old, np.ndarray) and old.shape == data.shape and old.dtype == data.dtype:
            old[...] = data
            _redraw(layer)
        else:
            layer.data = data
        return layer
    where = {**placement(target), "translate": translate}  # units too: napari mixes none
    return viewer.add_image(
        data.copy(),  # written in place by the next previews
        name=LIVE_NAME,
        opacity=0.8,
        **where,
        **PROBABILITY_LOOK,
    )


def _redraw(layer: Layer) -> None:
    """Redraw ``layer`` after its data changed in place (same shape): no new thumbnail."""
    try:
        layer.refresh(thumbnail=False, extent=False, highlight=False)
    except TypeError:  # napari before 0.5.1: refresh() takes no options
        layer.refresh()
