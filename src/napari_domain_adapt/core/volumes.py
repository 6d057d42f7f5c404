"""Volumes read on demand: a zarr store (an OME-Zarr image at one of its levels), a TIFF
through a memory map or tifffile's zarr view, an HDF5 dataset, or any chunked array,
checked once.

Opening a volume is apart from predicting it (:mod:`.volume_prediction`), so that the data
checks can open volumes without the model and its prediction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .hdf5 import Hdf5Volume, is_hdf5
from .ome_zarr import first_level, image_root

#: Slices up to this many pixels get exact percentiles; larger ones a strided sample.
SAMPLE_PIXELS = 2**24
#: Pixels read at once when a volume is checked for contrast (whole chunks, at least one).
CHECK_PIXELS = 2**22


class _TiffVolume:
    """A lazily opened TIFF stack that dask can slice and pickle (for distributed workers).

    Uncompressed TIFFs are memory-mapped; others are read through tifffile's zarr view, which
    decodes only the strips or tiles a slice needs. The open file is not pickled: each
    process opens its own.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._data: Any = None
        data = self._open()
        self.shape, self.dtype, self.ndim = data.shape, np.dtype(data.dtype), data.ndim

    def _open(self) -> Any:
        if self._data is None:
            import tifffile

            try:
                self._data = tifffile.memmap(self.path, mode="r")
            except ValueError:  # compressed or scattered strips: not memory-mappable
                import zarr

                self._data = zarr.open(tifffile.imread(self.path, aszarr=True), mode="r")
        return self._data

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._open()[key])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}

    def __str__(self) -> str:
        return self.path


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a zarr store (v2 or v3): a folder with zarr metadata."""
    path = Path(path)
    markers = ("zarr.json", ".zarray", ".zgroup")
    return path.is_dir() and any((path / marker).is_file() for marker in markers)


def open_volume(source: object) -> Any:
    """``source`` as a lazy array of shape ([1, ...,] Z, Y, X) or (Y, X), validated.

    Accepted: a zarr store path (an array, or a group holding one array or an array ``0``),
    a TIFF path, an HDF5 dataset as ``file.h5:dataset``, a zarr array, a dask array or a
    numpy array (a memory map stays lazy).
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if is_hdf5(source):
            data = Hdf5Volume(source)
        elif is_zarr(path):
            data = _zarr_array(path)
        elif path.suffix.lower() in (".tif", ".tiff") and path.is_file():
            try:
                data = _TiffVolume(path)
            except Exception as error:  # tifffile raises many types for broken files
                raise InputError(f"cannot read {path}: {type(error).__name__}: {error}") from error
        else:
            raise InputError(f"{path} is neither a zarr store nor a TIFF file")
    else:
        data = source
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        raise InputError(f"expected a volume array or path; got {type(source).__name__}")
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "iuf":  # not issubdtype(integer): it counts timedelta64 in
        raise InputError(f"the volume has dtype {dtype}; expected integers or floats")
    shape = tuple(data.shape)
    leading = shape[:-3]  # OME-Zarr writes (T, C, Z, Y, X): single T and C are fine
    if len(shape) < 2 or any(n != 1 for n in leading) or min(shape[-2:]) < 2 or 0 in shape:
        raise InputError(
            f"the volume has shape {shape}; expected grey slices of at least 2x2 as "
            "(Z, Y, X) or (Y, X) (leading axes of length 1 are allowed)"
        )
    return data


def _zarr_array(path: Path) -> Any:
    import zarr

    try:
        node = zarr.open(str(image_root(path)), mode="r")
    except Exception as error:  # zarr raises many types for corrupt metadata
        raise InputError(
            f"cannot read {path}: not a readable zarr store ({type(error).__name__}: {error})"
        ) from error
    if hasattr(node, "shape"):
        return node
    arrays = dict(node.arrays())
    level = first_level(dict(node.attrs))  # OME-Zarr: the full-resolution level
    if level in arrays:
        return arrays[level]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if "0" in arrays:  # an OME-Zarr image without its metadata
        return arrays["0"]
    names = ", ".join(sorted(arrays)) or "none"
    raise InputError(f"{path} is a zarr group with arrays {names}; expected one array, or '0'")


def _check_blocks(shape: tuple[int, ...], data: Any, budget: int) -> Iterator[tuple[slice, ...]]:
    """Windows that tile ``shape`` in storage order: whole chunks of ``data`` (one slice or
    pixel row where it has none), joined along the last axes up to ``budget`` pixels."""
    chunks = getattr(data, "chunksize", None) or getattr(data, "chunks", None)  # dask; zarr
    if not (
        isinstance(chunks, tuple)
        and len(chunks) == len(shape)
        and all(isinstance(c, int) and c > 0 for c in chunks)
    ):
        chunks = (1,) * len(shape)
    block = [min(c, n) for c, n in zip(chunks, shape, strict=True)]
    for axis in reversed(range(len(shape))):
        room = budget // math.prod(block[:axis] + block[axis + 1 :])
        block[axis] = min(shape[axis], max(block[axis], room // block[axis] * block[axis]))
    starts = [range(0, n, b) for n, b in zip(shape, block, strict=True)]
    for corner in itertools.product(*starts):
        yield tuple(slice(s, min(s + b, n)) for s, b, n in zip(corner, block, shape, strict=True))


def constant_value(data: Any, budget: int = CHECK_PIXELS) -> Any:
    """The value of every pixel when the volume ``data`` is constant, else None.

    Read a block at a time (whole chunks, about ``budget`` pixels), never the whole volume at
    once, and only until a pixel differs from the first: a volume with contrast is usually
    settled by its first block; a constant one is read to the end. A zarr array with no chunk
    written holds only its fill value and is not read at all.
    """
    if getattr(data, "nchunks_initialized", None) == 0 and hasattr(data, "fill_value"):
        return np.asarray(data.fill_value, dtype=data.dtype)[()]
    shape = tuple(data.shape)
    first = None
    for window in _check_blocks(shape, data, budget):
        try:
            block = np.asarray(data[window])
        except Exception as error:  # a corrupt or truncated chunk: any reader's exception
            z = window[-3] if len(window) > 2 else slice(0, 1)
            where = (
                f"slice {z.start}" if z.stop - z.start == 1 else f"slices {z.start}-{z.stop - 1}"
            )
            raise InputError(
                f"cannot read {where} of the volume {describe_source(data)} "
                f"({type(error).__name__}: {error}); expected a readable zarr, TIFF or array"
            ) from error
        if first is None:
            first = block.flat[0]
        if block.min() != first or block.max() != first:  # NaN differs from everything
            return None
    return first


def describe_source(data: Any) -> str:
    """The file or store behind ``data`` for messages, else its type."""
    if isinstance(data, _TiffVolume | Hdf5Volume):
        return str(data)
    store = getattr(data, "store", None)
    root = getattr(store, "root", None) or getattr(store, "path", None)
    kind = "zarr array" if store is not None else type(data).__name__
    return f"{kind} {root}" if root else kind
