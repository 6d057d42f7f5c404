"""Pixel sizes in TIFF, HDF5 and napari layer metadata: read them, and write them back.

TIFF: the OME-XML ``PhysicalSize*`` of an OME-TIFF, or an ImageJ file's resolution tags
with the ``unit`` and ``spacing`` of its description. Written as ImageJ files (what Fiji
shows calibrated) where ImageJ takes the type, else as OME-TIFF. HDF5: the
``element_size_um`` (µm) or ``resolution`` (no unit: CREMI's nm, others') attributes.
Layers: napari's ``scale`` and, from napari 0.6, ``units``. OME-Zarr: :mod:`.ome_zarr`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .pixel_size import UNITS, PixelSize, normalise_unit, pixel_size_or_none

#: ImageJ writes its description in ASCII; these are the names it reads as the unit.
_IMAGEJ_UNITS = {"µm": "micron", "Å": "angstrom"}
_IMAGEJ_TYPES = (np.uint8, np.uint16, np.float32)
#: The OME schema's default unit of ``PhysicalSize*``.
_OME_DEFAULT_UNIT = "µm"
#: HDF5 attributes of the voxel size in (z, y, x) order, with the unit each implies.
HDF5_ATTRIBUTES = {"element_size_um": "µm", "resolution": None}


def tiff_pixel_size(path: str | Path) -> PixelSize | None:
    """The pixel size an OME-TIFF or ImageJ TIFF declares; None for other TIFFs."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                return ome_pixel_size(tif.ome_metadata)
            if tif.is_imagej:
                return imagej_pixel_size(tif.pages.first.tags, tif.imagej_metadata or {})
    except Exception:  # a file that tifffile cannot parse has no pixel size to give
        return None
    return None


def imagej_pixel_size(tags: Any, metadata: Mapping[str, Any]) -> PixelSize | None:
    """From an ImageJ file's X/YResolution tags (pixels per unit), ``unit`` and ``spacing``.

    An uncalibrated file (resolution 1, no unit) has no pixel size.
    """
    unit = _known_unit(metadata.get("unit"))
    sizes = [_per_unit(tags, "YResolution"), _per_unit(tags, "XResolution")]
    if None in sizes or unit is False or (unit is None and sizes == [1.0, 1.0]):
        return None
    spacing = metadata.get("spacing")
    if spacing is not None and metadata.get("slices", 1) > 1:
        sizes.insert(0, spacing)
    return pixel_size_or_none(sizes, unit)


def _per_unit(tags: Any, name: str) -> float | None:
    """The size of one pixel from a resolution tag (a fraction: pixels per unit)."""
    tag = tags.get(name)
    if tag is None:
        return None
    numerator, denominator = tag.value
    return denominator / numerator if numerator else None


def _known_unit(text: Any) -> str | bool | None:
    """The short unit name, None for none, False for a unit word we do not know."""
    try:
        return normalise_unit(text)
    except ValueError:
        return False


def ome_pixel_size(xml: str) -> PixelSize | None:
    """From the first image's ``PhysicalSizeX/Y/Z`` (and units; µm when none is given)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rpartition("}")[2] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = {axis: pixels.get(f"PhysicalSize{axis}") for axis in "ZYX"}
    units = {axis: pixels.get(f"PhysicalSize{axis}Unit", _OME_DEFAULT_UNIT) for axis in "ZYX"}
    if sizes["X"] is None or sizes["Y"] is None or units["X"] != units["Y"]:
        return None
    plane = pixel_size_or_none((sizes["Y"], sizes["X"]), units["X"])
    if plane is None or sizes["Z"] is None or int(pixels.get("SizeZ", 1)) < 2:
        return plane
    depth = pixel_size_or_none((sizes["Z"],), units["Z"])
    if depth is None or (depth.unit is None) != (plane.unit is None):
        return plane
    if plane.unit is not None:
        depth = depth.to(plane.unit)
    return PixelSize((*depth.sizes, *plane.sizes), plane.unit)


def tiff_options(pixel_size: PixelSize | None, dtype: np.dtype, ndim: int) -> dict[str, Any]:
    """tifffile ``imwrite`` options that store ``pixel_size`` for an array.

    ImageJ's types (uint8, uint16, float32; 2D or a Z stack) become an ImageJ file, so Fiji
    shows the calibration; other types with a unit an OME-TIFF; without a unit, only the
    resolution tags.
    """
    if pixel_size is None:
        return {}
    size = pixel_size.fit(ndim)
    y, x = size.sizes[-2:]
    options: dict[str, Any] = {"resolution": (1.0 / x, 1.0 / y)}
    axes = "ZYX"[-ndim:]
    depth = size.sizes[0] if len(size.sizes) == 3 and ndim == 3 else None
    if np.dtype(dtype) in _IMAGEJ_TYPES and ndim in (2, 3):
        # Without axes ImageJ takes a stack's first axis for channels.
        metadata: dict[str, Any] = {"axes": axes}
        if depth is not None:
            metadata["spacing"] = depth
        if size.unit is not None:
            metadata["unit"] = _IMAGEJ_UNITS.get(size.unit, size.unit)
        options.update(imagej=True, metadata=metadata)
    elif size.unit is not None and ndim in (2, 3):
        physical = {"Y": y, "X": x} if depth is None else {"Z": depth, "Y": y, "X": x}
        metadata = {"axes": axes}
        for axis, value in physical.items():
            metadata[f"PhysicalSize{axis}"] = value
            metadata[f"PhysicalSize{axis}Unit"] = size.unit
        options.update(ome=True, metadata=metadata)
    return options


def hdf5_pixel_size(attributes: Mapping[str, Any], ndim: int) -> PixelSize | None:
    """The voxel size of an HDF5 dataset with ``ndim`` axes, from its attributes."""
    for key, unit in HDF5_ATTRIBUTES.items():
        value = attributes.get(key)
        if value is not None and len(np.atleast_1d(value)) == ndim:
            found = pixel_size_or_none(np.atleast_1d(value).tolist(), unit)
            if found is not None:
                return found
    return None


def layer_pixel_size(scale: Sequence[float] | None, units: Any = None) -> PixelSize | None:
    """The pixel size of a napari layer's spatial axes (the last three at most).

    ``units`` are the layer's (napari 0.6+: pint units, ``pixel`` by default); axes of
    different units, or of units that are not lengths, give sizes without a unit.
    """
    if scale is None or len(scale) < 2:
        return None
    sizes = [float(value) for value in scale][-3:]
    names = {str(unit) for unit in list(units or [])[-len(sizes) :]}
    unit = names.pop() if len(names) == 1 else None
    return pixel_size_or_none(sizes, unit) or pixel_size_or_none(sizes)


#: The unit of the layers our readers make, whatever their files' units: napari draws
#: layers of different units (nm beside µm) unscaled, each at its own numbers, with the
#: warning "Inconsistent units across layers".
LAYER_UNIT = "µm"


def layer_options(pixel_size: PixelSize | None, ndim: int) -> dict[str, Any]:
    """napari layer keywords (``scale``, and ``units`` where known) for ``pixel_size``, in
    :data:`LAYER_UNIT` where it has a unit."""
    if pixel_size is None:
        return {}
    size = pixel_size.fit(ndim)
    if size.unit is not None:
        size = size.to(LAYER_UNIT)
    scale = (1.0,) * (ndim - len(size.sizes)) + size.sizes
    options: dict[str, Any] = {"scale": scale}
    if size.unit is not None and len(size.sizes) == ndim:
        options["units"] = (UNITS[size.unit][0],) * ndim
    return options
