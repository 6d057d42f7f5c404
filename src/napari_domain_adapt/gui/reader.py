"""The npe2 reader: HDF5 volumes open as layers, lazily, at their voxel size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_domain_adapt import core

_LABEL_WORDS = ("label", "ids", "mask", "membrane", "segmentation", "gt")


def get_reader(path: str | list[str]) -> Callable[[str], list[tuple]] | None:
    """The reader for an HDF5 file (``.h5``, ``.hdf5``, ``.hdf``), or None for other paths."""

    if isinstance(path, list) or not core.is_hdf5(path):
        return None
    return read_hdf5_layers


def read_hdf5_layers(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    """Every 2D/3D array of the file as a layer (``file.hdf:dataset`` opens one).

    Integer arrays whose name says labels, ids or mask open as Labels, others as Image;
    the voxel size (``resolution`` or ``element_size_um`` attribute) becomes the scale, and
    its unit (µm for ``element_size_um``) the units.
    Arrays are read lazily (dask), so large volumes open at once.
    """
    import dask.array as da
    import h5py
    from napari.layers import Image

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
        words = dataset.name.lower()
        is_labels = np.issubdtype(dataset.dtype, np.integer) and any(
            word in words for word in _LABEL_WORDS
        )
        meta: dict[str, Any] = {"name": dataset.name}
        meta.update(core.layer_options(dataset.pixel_size, len(dataset.shape)))
        if not hasattr(Image, "units"):  # napari before 0.6
            meta.pop("units", None)
        layers.append((data, meta, "labels" if is_labels else "image"))
    return layers
