"""Training inputs read on demand: a target volume that need not fit in memory.

A :class:`~.data.Domain` may hold a lazy grey volume (a zarr array or store, a dask array, a
memory-mapped or large TIFF) instead of a numpy stack. Training then reads only the patches
it samples, normalised as :func:`~.preprocessing.preprocess` would: each slice's intensity
range comes from that slice (a strided sample of it when it is large), computed the first
time a patch of the slice is drawn, so memory holds one slice at a time however deep the
volume is. A target at another pixel size than the source's is seen through
:class:`ResampledVolume`, on the working grid, each patch resampled from the window of the
volume it maps to.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import Preprocessing
from .errors import InputError
from .preprocessing import intensity_range, rescale
from .resampling import resample_window, working_shape
from .volumes import SAMPLE_PIXELS, describe_source


class PreprocessedVolume:
    """A lazy volume seen as preprocessed ``(Z, Y, X)`` float32 slices, read on demand.

    ``volume[z]`` is a whole slice, ``volume[z, ys, xs]`` a patch. Only percentile scaling
    is possible lazily: CLAHE and the field-of-view estimate need whole images in memory.
    """

    def __init__(self, data: Any, spec: Preprocessing, sample_pixels: int = SAMPLE_PIXELS) -> None:
        if spec.clahe or spec.field_of_view:
            raise InputError(
                "a volume read on demand can only be scaled by percentiles; CLAHE and the "
                "field of view need whole images in memory (load the images, or train "
                "without them)"
            )
        self.data, self.spec, self.sample_pixels = data, spec, sample_pixels
        shape = tuple(data.shape)
        self._lead = (0,) * max(0, len(shape) - 3)
        self._flat = len(shape) == 2
        self.shape = (1, *shape) if self._flat else shape[-3:]
        self.dtype = np.dtype(np.float32)  # what reading gives
        self._ranges: dict[int, tuple[Any, float]] = {}

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, z: int, rows: slice, columns: slice) -> np.ndarray:
        key = (rows, columns) if self._flat else (*self._lead, z, rows, columns)
        try:
            return np.asarray(self.data[key]).astype(np.float32, copy=False)
        except Exception as error:  # a corrupt or truncated chunk: any reader's exception
            raise InputError(
                f"cannot read slice {z} of the volume {describe_source(self.data)} "
                f"({type(error).__name__}: {error}); expected a readable zarr, TIFF or array"
            ) from error

    def intensity_range(self, z: int) -> tuple[Any, float]:
        """Slice ``z``'s ``(low, scale)``, computed on first use and kept."""
        if z not in self._ranges:
            height, width = self.shape[1:]
            step = max(1, int(np.ceil(np.sqrt(height * width / self.sample_pixels))))
            sample = self._read(z, slice(None, None, step), slice(None, None, step))
            if not np.isfinite(sample).all():
                raise InputError(
                    f"slice {z} of the volume has NaN or infinite pixels; expected finite values"
                )
            self._ranges[z] = intensity_range(sample, self.spec)
        return self._ranges[z]

    def __getitem__(self, key: int | tuple[int, slice, slice]) -> np.ndarray:
        z, rows, columns = (key, slice(None), slice(None)) if np.isscalar(key) else key
        z = int(z)
        return rescale(self._read(z, rows, columns), *self.intensity_range(z))


class ResampledVolume:
    """A preprocessed volume zoomed by ``factor`` in Y and X, read on demand: the working
    grid of a target at another pixel size than the source's.

    ``view[z, rows, columns]`` reads only the window of slice ``z`` that the patch maps to
    and resamples it (linear, as :func:`~.resampling.resample_plane` does), so a patch is
    the one the whole slice resampled in memory would give. Each slice's intensity range
    stays that of the volume as given (:class:`PreprocessedVolume`).
    """

    def __init__(self, volume: PreprocessedVolume, factor: float) -> None:
        self.volume, self.factor = volume, factor
        depth, height, width = volume.shape
        self.shape = (depth, *working_shape((height, width), factor))
        self.dtype = volume.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: int | tuple[int, slice, slice]) -> np.ndarray:
        z, rows, columns = (key, slice(None), slice(None)) if np.isscalar(key) else key
        z = int(z)

        def read(rows: slice, columns: slice) -> np.ndarray:
            return self.volume[z, rows, columns]

        return resample_window(read, self.volume.shape[1:], self.factor, rows, columns)
