"""HDF5 volumes (CREMI, many EM pipelines), named as ``file.hdf:path/to/dataset``.

h5py is an optional dependency (``pip install "napari-domain-adapt[hdf5]"``), imported on
first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .pixel_metadata import hdf5_pixel_size
from .pixel_size import PixelSize

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


@dataclass(frozen=True)
class Hdf5Dataset:
    """One array in an HDF5 file: its path inside the file, shape, dtype and voxel size."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    pixel_size: PixelSize | None


def _h5py():
    try:
        import h5py
    except ImportError as error:
        raise InputError(
            'reading HDF5 needs h5py: pip install "napari-domain-adapt[hdf5]"'
        ) from error
    return h5py


def is_hdf5(text: str | Path) -> bool:
    """Whether ``text`` names an HDF5 file, with or without ``:dataset``."""
    return split_hdf5_path(text)[0].suffix.lower() in HDF5_SUFFIXES


def split_hdf5_path(text: str | Path) -> tuple[Path, str | None]:
    """``file.hdf:volumes/raw`` -> (``file.hdf``, ``volumes/raw``); no dataset -> None."""
    text = str(text)
    lowered = text.lower()
    for suffix in HDF5_SUFFIXES:
        marker = lowered.rfind(suffix + ":")
        if marker >= 0:
            end = marker + len(suffix)
            return Path(text[:end]), text[end + 1 :].strip("/") or None
    return Path(text), None


def list_hdf5(path: str | Path) -> list[Hdf5Dataset]:
    """Every array of at least two dimensions in the file, in name order."""
    h5py = _h5py()
    path = Path(path)
    found: list[Hdf5Dataset] = []

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset) and item.ndim >= 2:
            size = hdf5_pixel_size(item.attrs, item.ndim)
            found.append(Hdf5Dataset(name, tuple(item.shape), item.dtype, size))

    with _open(path) as file:
        file.visititems(visit)
    return sorted(found, key=lambda dataset: dataset.name)


def _open(path: Path):
    h5py = _h5py()
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"cannot read {path}: not a readable HDF5 file ({error})") from error


def read_hdf5(text: str | Path) -> np.ndarray:
    """The array that ``file.hdf:dataset`` names, read into memory."""
    path, name = _named(text)
    with _open(path) as file:
        return _read(_lookup(file, path, name), path, name, ...)


class Hdf5Volume:
    """The dataset that ``file.hdf:dataset`` names, opened on demand, that dask can slice and
    pickle: out-of-core prediction reads only the slices it needs (HDF5 decodes whole
    chunks). The open file is not pickled: each process opens its own."""

    def __init__(self, text: str | Path) -> None:
        path, self.name = _named(text)
        self.path = str(path)
        self._file: Any = None
        self._dataset: Any = None
        dataset = self._open()
        self.shape = tuple(dataset.shape)
        self.dtype, self.ndim = np.dtype(dataset.dtype), dataset.ndim
        #: The dataset's chunk shape (None where it is stored contiguously).
        self.chunks = dataset.chunks

    def _open(self) -> Any:
        if self._dataset is None:
            self._file = _open(Path(self.path))
            self._dataset = _lookup(self._file, Path(self.path), self.name)
        return self._dataset

    def __getitem__(self, key: Any) -> np.ndarray:
        return _read(self._open(), Path(self.path), self.name, key)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_dataset": None}

    def __str__(self) -> str:
        return f"{self.path}:{self.name}"


def _named(text: str | Path) -> tuple[Path, str]:
    """The file and the dataset that ``file.hdf:dataset`` names (InputError without one)."""
    path, name = split_hdf5_path(text)
    if name is None:
        raise InputError(
            f"{path} is an HDF5 file; name the dataset as {path}:PATH (found: {_available(path)})"
        )
    return path, name


def _lookup(file: Any, path: Path, name: str) -> Any:
    """The dataset ``name`` of an open file (InputError where there is none)."""
    dataset = _dataset(file, path, name)
    if dataset is None or not hasattr(dataset, "shape"):
        raise InputError(f"{path} has no dataset {name!r}; found: {_available(path)}")
    return dataset


def _available(path: Path) -> str:
    """The file's datasets, for a message that says what is there."""
    return ", ".join(d.name for d in list_hdf5(path)) or "none"


def _read(dataset: Any, path: Path, name: str, key: Any) -> np.ndarray:
    """``dataset[key]`` in memory; a chunk that fails to decode is an InputError."""
    try:
        return np.asarray(dataset[key])
    except OSError as error:  # a compression filter failed: a damaged chunk
        raise InputError(
            f"cannot read {path}:{name}: a corrupt or truncated chunk ({error}); "
            "expected a readable HDF5 dataset"
        ) from error


def _dataset(file: Any, path: Path, name: str) -> Any:
    """The object ``name`` in an open file, None if absent; InputError for an external link
    whose file is missing or not HDF5 (h5py would say only that it is absent)."""
    link = file.get(name, getlink=True)
    if link is None:
        return None
    try:
        return file[name]
    except (KeyError, OSError) as error:
        where = f"{link.filename}:{link.path}" if hasattr(link, "filename") else name
        raise InputError(
            f"cannot read {path}:{name}: it links to {where}, which cannot be opened "
            f"({error}); expected the linked file beside {path}, as a readable HDF5 file"
        ) from error


def hdf5_pixel_size_of(text: str | Path) -> PixelSize | None:
    """The voxel size of the dataset that ``file.hdf:dataset`` names (its attributes)."""
    path, name = split_hdf5_path(text)
    found = [dataset for dataset in list_hdf5(path) if dataset.name == name]
    return found[0].pixel_size if found else None
