"""The npe2 writer contribution: a Labels layer as a compressed TIFF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_domain_adapt import core


def label_dtype(data: np.ndarray) -> np.dtype:
    """The smallest unsigned type that holds every label of ``data``."""

    data = np.asarray(data)
    if data.size and data.min() < 0:
        raise core.InputError(
            f"the labels have negative values (the lowest is {data.min()}); expected labels "
            "of 0 and up to save as TIFF"
        )
    peak = int(data.max()) if data.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if peak <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def write_mask(
    path: str | Path,
    labels: Any,
    scale: Any,
    foreground: int,
    overwrite: bool = False,
    units: Any = None,
) -> Path:
    """Write labels as a binary uint8 mask of 0 and ``foreground`` (1 or 255), compressed.

    Any non-zero label counts as foreground; the pixel size comes from the layer's ``scale``
    and ``units``.
    """

    from .layers import export_values

    mask = export_values(labels, foreground)
    return core.write_tiff(path, mask, overwrite=overwrite, pixel_size=_pixel_size(scale, units))


def write_labels_tiff(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer's data to ``path`` as it is (label values kept), zlib-compressed.

    The pixel size comes from the layer's scale and units. napari asks before it overwrites
    a file.
    """

    array = np.asarray(data)
    array = array.astype(label_dtype(array), copy=False)
    size = _pixel_size(meta.get("scale"), meta.get("units"))
    written = core.write_tiff(path, array, overwrite=True, pixel_size=size)
    return [str(written)]


def _pixel_size(scale: Any, units: Any) -> Any:
    """The pixel size to write for a layer's ``scale`` and ``units``; core.InputError for a scale
    that is not a positive number on every axis (no TIFF resolution can say it)."""

    sizes = np.asarray(scale if scale is not None else [], dtype=float)
    if not (np.isfinite(sizes) & (sizes > 0)).all():
        raise core.InputError(
            f"the layer's scale {tuple(sizes.tolist())} is not a positive pixel size on every "
            "axis; expected positive, finite sizes to write as the TIFF's resolution"
        )
    return core.layer_pixel_size(scale, units)
