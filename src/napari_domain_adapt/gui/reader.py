"""The npe2 readers: HDF5 volumes open as layers, lazily, at their voxel size; ImageJ and
OME-TIFF files at the pixel size they declare (napari's own TIFF reader gives no scale);
OME-Zarr images (NGFF 0.4 and 0.5) as lazy multiscale layers at their pixel size (napari's
own zarr reader opens them at scale 1).

napari asks which reader to use when several accept a file (its builtins read TIFF too):
File › Open with Plugin, the reader dialog's "Remember this choice", or the preference
``settings.plugins.extension2reader``; from code, ``viewer.open(path,
plugin="napari-domain-adapt")`` (plain ``viewer.open`` uses napari's builtins).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_domain_adapt import core

_log = logging.getLogger(__name__)

_LABEL_WORDS = ("label", "ids", "mask", "membrane", "segmentation", "gt")


def get_reader(path: str | list[str]) -> Callable[[str], list[tuple]] | None:
    """The reader for an HDF5 file (``.h5``, ``.hdf5``, ``.hdf``), or None for other paths."""

    if isinstance(path, list) or not core.is_hdf5(path):
        return None
    return read_hdf5_layers


def get_tiff_reader(path: str | list[str]) -> Callable[[str], list[tuple]] | None:
    """The reader for a TIFF file (``.tif``, ``.tiff``, OME-TIFF), or None for other paths."""
    if isinstance(path, list) or Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None
    return read_tiff_layer if Path(path).is_file() else None


def get_ome_zarr_reader(path: str | list[str]) -> Callable[[str], list[tuple]] | None:
    """The reader for an OME-Zarr image folder of one grey slice or volume, or None for
    other paths: a plain zarr array or another folder (napari's builtins read those), and
    images of several channels or time points (napari-ome-zarr reads those)."""
    if isinstance(path, list) or not core.is_zarr(path):
        return None
    dropped = _dropped_axes(Path(path), core.image_levels(path))
    return None if dropped is None else read_ome_zarr_layer


def read_ome_zarr_layer(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    """An OME-Zarr image as an Image layer, and the label images stored with it (its
    ``labels/`` group) as Labels layers; a label image opened alone is a Labels layer.
    A listed label image that is missing or not one grey volume is skipped, with a log
    warning: the image still opens."""
    image = _ome_zarr_layer(Path(path), "labels" if core.is_label_image(path) else "image")
    if image is None:
        raise core.InputError(f"{path} is not an OME-Zarr image of one grey slice or volume")
    layers = [image]
    for name in core.label_images(path):
        labels = _ome_zarr_layer(core.image_root(path) / "labels" / name, "labels")
        if labels is None:
            _log.warning("%s: skipping label image %r: not one grey volume there", path, name)
            continue
        layers.append(labels)
    return layers


def _dropped_axes(path: Path, levels: list[tuple[str, Any]]) -> list[int] | None:
    """The axes of the OME-Zarr image at ``path`` (of ``levels``, from
    :func:`core.image_levels`) that its layer drops: those that are not space (time,
    channel), each of length 1; without axis types, those before (Z, Y, X). None where there
    is no image or one of those axes is longer (several channels or times)."""
    import zarr

    if not levels:
        return None
    try:
        shape = zarr.open_array(str(core.image_root(path) / levels[0][0]), mode="r").shape
    except Exception:  # missing or unreadable: not an image this reader opens
        return None
    types = core.axis_types(path)
    if types is None or len(types) != len(shape):
        dropped = list(range(max(0, len(shape) - 3)))
    else:
        dropped = [axis for axis, kind in enumerate(types) if kind != "space"]
    return dropped if all(shape[axis] == 1 for axis in dropped) else None


def _ome_zarr_layer(path: Path, kind: str) -> tuple[Any, dict[str, Any], str] | None:
    """One OME-Zarr image as a layer, every level read on demand (multiscale where it has
    several), at the full resolution's pixel size, without its time and channel axes of
    length 1 (the widget takes (Z, Y, X) or (Y, X)); None where it is not one grey slice or
    volume."""
    import dask.array as da
    import zarr

    levels = core.image_levels(path)
    dropped = _dropped_axes(path, levels)
    if dropped is None:
        return None
    group = zarr.open_group(str(core.image_root(path)), mode="r")
    arrays = [da.from_zarr(group[name]) for name, _ in levels]
    index = tuple(0 if axis in dropped else slice(None) for axis in range(arrays[0].ndim))
    arrays = [array[index] for array in arrays]
    name = path.name.removesuffix(".zarr").removesuffix(".ome")
    meta: dict[str, Any] = {"name": name, "multiscale": len(arrays) > 1}
    meta.update(core.layer_options(levels[0][1], arrays[0].ndim))
    return arrays if len(arrays) > 1 else arrays[0], _units_known(meta), kind


def _is_labels(name: str, dtype: Any) -> bool:
    words = name.lower()
    return np.issubdtype(dtype, np.integer) and any(word in words for word in _LABEL_WORDS)


def _units_known(meta: dict[str, Any]) -> dict[str, Any]:
    from napari.layers import Image

    if not hasattr(Image, "units"):  # napari before 0.6
        meta.pop("units", None)
    return meta


def read_tiff_layer(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    """The TIFF's first series as one layer at its pixel size: ImageJ resolution, unit and
    slice spacing, or OME ``PhysicalSize*`` (scale and units; none where it declares none).

    Colour samples (RGB, also stored planar) are the last axis of an Image layer; an integer
    file whose name says labels, ids or mask opens as Labels.
    """
    data, pixel_size = core.read_volume_with_pixel_size(path)
    rgb = data.ndim >= 3 and data.shape[-1] in (3, 4)
    labels = not rgb and _is_labels(Path(path).stem, data.dtype)
    spatial = data.ndim - 1 if rgb else data.ndim
    meta: dict[str, Any] = {"name": Path(path).stem}
    meta.update(core.layer_options(pixel_size, spatial))
    if rgb:
        meta["rgb"] = True
    return [(data, _units_known(meta), "labels" if labels else "image")]


def read_hdf5_layers(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    """Every 2D/3D array of the file as a layer (``file.hdf:dataset`` opens one).

    Integer arrays whose name says labels, ids or mask open as Labels, others as Image;
    the voxel size (``resolution`` or ``element_size_um`` attribute) becomes the scale, and
    its unit (µm for ``element_size_um``) the units.
    Arrays are read lazily (dask), so large volumes open at once.
    """
    import dask.array as da
    import h5py

    file_path, chosen = core.split_hdf5_path(path)
    found = core.list_hdf5(file_path)
    datasets = [d for d in found if d.name == chosen or chosen is None]
    if chosen is not None and not datasets:
        names = ", ".join(d.name for d in found) or "none"
        raise core.InputError(
            f"{file_path} has no dataset {chosen!r} of two or more dimensions; found: {names}"
        )
    handle = h5py.File(file_path, "r")  # stays open while the layers read from it
    layers = []
    for dataset in datasets:
        if len(dataset.shape) > 3:
            continue
        source = handle[dataset.name]
        data = da.from_array(source, chunks=source.chunks or "auto")
        is_labels = _is_labels(dataset.name, dataset.dtype)
        meta: dict[str, Any] = {"name": dataset.name}
        meta.update(core.layer_options(dataset.pixel_size, len(dataset.shape)))
        layers.append((data, _units_known(meta), "labels" if is_labels else "image"))
    return layers
