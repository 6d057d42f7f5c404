"""Out-of-core prediction: (Z, Y, X) volumes larger than memory, chunk by chunk, into zarr.

The volume is read lazily (a zarr store, a TIFF through a memory map or tifffile's zarr view,
or any dask array) and predicted by :func:`dask.array.map_overlap`: blocks of ``chunk``
pixels in Y and X grow a margin of ``overlap`` pixels from their neighbours (none in Z: the
model is 2D, slices are independent), go through :func:`~.inference.predict_tiled`, and lose
the margin again. The result streams into a zarr array, block by block, so peak memory
depends on the block size, not on the volume. The same graph runs on the local threads or on
a ``dask.distributed`` cluster (whichever client is active).

Normalisation is the model's own, per slice: the percentiles of each whole slice (or of a
strided sample of it when the slice has more than ``sample_pixels`` pixels) are computed in
a first pass over each batch of slices, and every block of the slice is scaled with them,
never with its own.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sys
import threading
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Preprocessing
from .errors import InputError
from .inference import inference_network
from .io import (
    check_not_an_input,
    lock_held,
    read_pixel_size,
    remove_leftovers,
    temporary_name,
    write_failure,
)
from .metrics import check_threshold
from .ome_zarr import image_metadata, pyramid_shapes
from .pixel_size import PixelSize
from .preprocessing import intensity_range, normalise_slice, rescale
from .resampling import resample_stack, restore_plane, working_shape
from .volumes import SAMPLE_PIXELS, describe_source, is_zarr, open_volume

if TYPE_CHECKING:
    from .checkpoints import SegmentationModel


#: Default Y/X block side: slices up to this size are predicted whole, exactly as in memory;
#: a block of 2048 x 2048 plus margins needs about 0.4 GB with the default U-Net. A block is
#: one slice deep in Z.
DEFAULT_CHUNK = 2048

#: Slices per computation: keeps each task graph small for volumes of any depth.
Z_BATCH = 256

#: The hidden temporary store beside the output: ``.NAME.zarr.XXXXXXXXXXXX.part.zarr``.
PART_SUFFIX = ".part.zarr"


def _axis_chunks(length: int, chunk: int, overlap: int) -> tuple[int, ...]:
    """Blocks of ``chunk`` along an axis; a last block shorter than ``overlap`` joins the one
    before it, because each block lends its neighbours a margin of ``overlap`` pixels."""
    sizes = [chunk] * (length // chunk)
    rest = length - sum(sizes)
    if rest:
        if sizes and rest < overlap:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes)


def slice_statistics(
    volume: Any, model: SegmentationModel, sample_pixels: int = SAMPLE_PIXELS, **compute: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice ``(low, scale)`` of the model's percentile normalisation, in one pass.

    Exact for slices up to ``sample_pixels`` pixels; larger slices are sampled on a regular
    grid (every ``step``-th row and column). One slice at a time is held in memory.
    """
    import dask

    height, width = volume.shape[1:]
    step = max(1, int(np.ceil(np.sqrt(height * width / sample_pixels))))
    sample = volume[:, ::step, ::step] if step > 1 else volume
    sample = sample.rechunk({0: 1, 1: -1, 2: -1})
    spec = model.preprocessing

    def statistics(block: np.ndarray) -> np.ndarray:
        low, scale = intensity_range(block[0].astype(np.float32, copy=False), spec)
        return np.array([[low, scale]], np.float64)

    stats = sample.map_blocks(
        statistics, chunks=((1,) * sample.shape[0], (2,)), drop_axis=2, dtype=np.float64
    )
    (values,) = dask.compute(stats, **compute)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise InputError(
            f"slice {bad[0]} of the volume has NaN or infinite pixels ({bad.size} slices do); "
            "expected finite values"
        )
    return values[:, 0], values[:, 1]


def _predict_block(
    block: np.ndarray,
    network: Any,
    spec: Preprocessing,
    lows: np.ndarray | None,
    scales: np.ndarray | None,
    threshold: float | None,
    block_info: dict | None = None,
    **options: Any,
) -> np.ndarray:
    from .inference import predict_tiled

    first, last = block_info[0]["array-location"][0]  # no margin in Z: slice indices
    images = np.empty(block.shape, np.float32)
    for index, z in enumerate(range(first, last)):
        grey = block[index].astype(np.float32, copy=False)  # as preprocess() makes it
        if lows is None:  # a whole slice (CLAHE needs one): the in-memory preprocessing
            images[index] = normalise_slice(grey, spec)
        else:  # the slice's statistics, with the same types, so the same bits
            images[index] = rescale(grey, lows[z], float(scales[z]))
    probabilities = predict_tiled(network, images, **options, channels_last=False)
    if threshold is None:
        return probabilities
    return (probabilities >= threshold).astype(np.uint8) * np.uint8(255)


def _compute_options(num_workers: int | None) -> dict[str, Any]:
    """Use the active dask.distributed client or configured scheduler; else local threads."""
    import dask

    if dask.config.get("scheduler", None) is not None:
        return {}
    if "distributed" in sys.modules:
        from distributed import default_client

        with contextlib.suppress(ValueError):
            default_client()
            return {}
    return {"scheduler": "threads", "num_workers": num_workers}


def predict_volume(
    model: SegmentationModel, source: object, out: str | Path | Any | None = None, **options: Any
) -> Any:
    """Predict a (Z, Y, X) volume block by block; peak memory does not grow with its size.

    What :func:`predicting_volume` does with the same arguments, run to the end.
    """
    steps = predicting_volume(model, source, out, **options)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def predicting_volume(
    model: SegmentationModel,
    source: object,
    out: str | Path | Any | None = None,
    *,
    chunk: int | tuple[int, int] = DEFAULT_CHUNK,
    overlap: int | None = None,
    threshold: float | None = None,
    tile_size: int | None = None,
    tile_overlap: int = 32,
    batch_size: int = 4,
    amp: bool | str = False,
    sample_pixels: int = SAMPLE_PIXELS,
    num_workers: int | None = 1,
    overwrite: bool = False,
    pixel_size: PixelSize | None = None,
    z_batch: int = Z_BATCH,
) -> Generator[tuple[int, int], None, Any]:
    """Predict a (Z, Y, X) volume block by block, yielding ``(slices done, slices)`` after
    every ``z_batch`` slices (and ``(0, slices)`` once the output is ready to be written);
    returns the result.

    ``source``: a zarr store or TIFF path, or a zarr, dask or numpy array (see
    :func:`open_volume`). ``out``: a ``.zarr`` path, written as an OME-Zarr image (NGFF
    0.4: a group whose array ``0`` is the result, at ``pixel_size``, by default the
    source path's, and coarser levels ``1``, ``2``, ... where it is large: see
    :func:`~.ome_zarr.pyramid_shapes`) atomically: into a temporary store beside it, renamed
    when complete; an existing one is refused unless ``overwrite``. Or a zarr array of the
    volume's shape to fill, or ``None`` for the lazy dask array of the result. The result is
    float32 probabilities, or with ``threshold`` a uint8 mask of 0 and 255. Blocks are
    ``chunk`` pixels in Y and X (an int or ``(y, x)``), one slice in Z, and borrow
    ``overlap`` pixels of context from each neighbour (both are rounded up to multiples of
    the U-Net's ``2**depth``); the default overlap is the U-Net's receptive radius, so that
    block borders do not show; ``tile_size``, ``tile_overlap``, ``batch_size`` and ``amp`` go to
    :func:`~.inference.predict_tiled` within a block.

    Without an active ``dask.distributed`` client or configured scheduler, blocks run on
    ``num_workers`` local threads (one suits a CPU, where torch itself uses every core).
    Models with CLAHE preprocessing (a whole-slice operation) are predicted whole slice by
    whole slice.
    """
    import dask.array as da
    import zarr

    chunk_y, chunk_x = (chunk, chunk) if isinstance(chunk, int) else tuple(chunk)
    if overlap is None:
        overlap = getattr(model.network, "receptive_radius", 64)
    if min(chunk_y, chunk_x) < 1 or overlap < 0 or overlap > min(chunk_y, chunk_x):
        raise InputError(
            f"chunk ({chunk_y}, {chunk_x}) must be >= 1 and at least the overlap ({overlap}), "
            "which must be >= 0: a block lends its neighbours that many pixels"
        )
    if threshold is not None:
        check_threshold(threshold)
    if model.intensity_reference is not None:
        raise InputError(
            "this model matches every image's histogram to its source's, which out-of-core "
            "volume prediction does not do yet; predict the volume in memory (TIFF output)"
        )
    if model.preprocessing.field_of_view:
        raise InputError(
            "this model finds the field of view of fundus photographs, which out-of-core "
            "volume prediction does not do; expected an EM or other volume model (predict "
            "photographs in memory instead)"
        )
    # Blocks start on the U-Net's pooling grid, where its output does not depend on the
    # crop: with a margin wider than its receptive field, blocks then match whole slices.
    multiple = getattr(model.network, "multiple", 1)
    chunk_y, chunk_x, overlap = (-(-n // multiple) * multiple for n in (chunk_y, chunk_x, overlap))
    target = None if out is None or hasattr(out, "shape") else Path(out)
    if target is not None:
        if isinstance(source, str | Path):
            check_not_an_input(target, [source])
        _check_target(target, overwrite)
    data = open_volume(source)
    flat = len(data.shape) == 2  # a single image: the result is 2D too
    depth = 1 if flat else data.shape[-3]
    height, width = data.shape[-2:]
    if pixel_size is None and isinstance(source, str | Path):
        pixel_size = read_pixel_size(source)
    # At another scale than the model's: each slice is resampled to its working pixel size,
    # predicted there, and its probabilities brought back (whole slices, one at a time).
    zoom = model.zoom_for(pixel_size)
    grid = (height, width)
    if zoom is not None:
        height, width = working_shape(grid, zoom)
    shape = grid if flat else (depth, *grid)
    if target is None and out is not None and tuple(out.shape) != shape:
        raise InputError(f"out has shape {tuple(out.shape)}; expected the volume's {shape}")
    clahe = model.preprocessing.clahe
    if clahe:  # a whole-slice operation: whole slices per block, nothing to borrow
        chunk_y, chunk_x, overlap = height, width, 0
    plane = (_axis_chunks(height, chunk_y, overlap), _axis_chunks(width, chunk_x, overlap))
    compute = _compute_options(num_workers)
    # Slabs of Z_BATCH slices: each computation's task graph stays small however deep the
    # volume is (a graph for every block at once costs about 5 kB per block).
    slabs = [(z, min(z + z_batch, depth)) for z in range(0, depth, z_batch)]
    # A private eval copy (channels-last where that helps), converted once, shared by every
    # block: the caller's network is never switched to eval under a running computation.
    runner = inference_network(model.network)
    if runner is model.network:
        runner = copy.deepcopy(model.network).eval()
    network = _shared(runner)
    dtype = np.float32 if threshold is None else np.uint8

    def predicted(first: int, last: int) -> Any:
        if zoom is None:
            slab = _slab(data, first, last, plane)
        else:
            slab = _zoomed(_slab(data, first, last, ((grid[0],), (grid[1],))), zoom, plane)
        # The slices' statistics, computed now (a first pass over the slab's slices).
        lows, scales = (
            (None, None) if clahe else slice_statistics(slab, model, sample_pixels, **compute)
        )
        # At another scale, the probabilities are thresholded once back on the slices' grid.
        kind = np.float32 if zoom is not None else dtype
        result = slab.map_overlap(
            _predict_block,
            depth={0: 0, 1: overlap, 2: overlap},
            boundary="none",
            trim=True,
            dtype=kind,
            meta=np.empty((0, 0, 0), kind),
            network=network,
            spec=model.preprocessing,
            lows=lows,
            scales=scales,
            threshold=threshold if zoom is None else None,
            tile_size=tile_size,
            overlap=tile_overlap,
            batch_size=batch_size,
            amp=amp,
        )
        if zoom is not None:
            store_plane = (_axis_chunks(grid[0], chunk_y, 0), _axis_chunks(grid[1], chunk_x, 0))
            result = _restored(result, grid, threshold, store_plane)
        return result[0] if flat else result

    if out is None:
        return predicted(0, depth)

    def store_into(array: Any, coarser: Sequence[Any] = ()) -> Iterator[tuple[int, int]]:
        # Blocks align with the store's chunks (a merged last block spans two chunks that
        # no other block touches), so blocks write in parallel without a lock. Each slab's
        # coarser levels are made from the finer one just written.
        yield 0, depth  # the output is ready to be written
        for first, last in slabs:
            region = None if flat else (slice(first, last), slice(None), slice(None))
            da.store(predicted(first, last), array, regions=region, lock=False, **compute)
            finer = array
            for level in coarser:
                halved = _coarser(finer.array, level.array.chunks, first, last, threshold)
                da.store(halved, level, regions=region, lock=False, **compute)
                finer = level
            yield last, depth

    if target is None:  # a zarr array given by the caller
        yield from store_into(out)
        return out
    attributes = {
        "content": "probabilities" if threshold is None else "mask (0 or 255)",
        "threshold": threshold,
        "model": json.loads(json.dumps(model.metadata, default=str)),
        "chunk": [chunk_y, chunk_x],
        "overlap": overlap,
    }
    with _atomic_store(target, overwrite) as temporary:
        chunks = (chunk_y, chunk_x) if flat else (1, chunk_y, chunk_x)
        levels = _create_image(
            temporary, pyramid_shapes(shape), chunks, dtype, pixel_size, attributes["content"]
        )
        levels[0].attrs["napari-domain-adapt"] = attributes
        writes = [_ClosableWrites(level) for level in levels]
        try:
            yield from store_into(writes[0], writes[1:])
        finally:  # after an error or Ctrl-C, blocks still computing must not write
            for level in writes:
                level.close()
    return zarr.open_array(str(target / "0"), mode="r")


def _zoomed(slab: Any, zoom: float, plane: tuple[tuple[int, ...], ...]) -> Any:
    """A slab of whole slices, each resampled by ``zoom``, in blocks of ``plane``."""
    height, width = working_shape(slab.shape[1:], zoom)

    def resample(block: np.ndarray) -> np.ndarray:
        return resample_stack(block.astype(np.float32, copy=False), zoom, order=1)

    chunks = (slab.chunks[0], (height,), (width,))
    zoomed = slab.map_blocks(resample, chunks=chunks, dtype=np.float32)
    return zoomed.rechunk((slab.chunks[0], *plane))


def _restored(
    result: Any, grid: tuple[int, int], threshold: float | None, plane: tuple[tuple[int, ...], ...]
) -> Any:
    """Probabilities predicted on the working grid, back on the slices' own ``grid`` and
    thresholded there where asked (as in memory), in blocks of ``plane`` (the store's)."""
    whole = result.rechunk((result.chunks[0], (result.shape[1],), (result.shape[2],)))

    def restore(block: np.ndarray) -> np.ndarray:
        restored = np.stack([restore_plane(probabilities, grid) for probabilities in block])
        if threshold is None:
            return restored
        return (restored >= threshold).astype(np.uint8) * np.uint8(255)

    chunks = (whole.chunks[0], (grid[0],), (grid[1],))
    dtype = np.float32 if threshold is None else np.uint8
    restored = whole.map_blocks(restore, chunks=chunks, dtype=dtype)
    return restored.rechunk((whole.chunks[0], *plane))


def _slab(data: Any, first: int, last: int, plane: tuple[tuple[int, ...], ...]) -> Any:
    """Slices ``first:last`` of the volume as a (Z, Y, X) dask array in blocks of one slice
    by ``plane``; a 2D image is one slice, leading axes of length 1 are dropped."""
    import dask.array as da

    chunks = ((1,) * (last - first), *plane)
    if isinstance(data, da.Array):
        volume = data[np.newaxis] if data.ndim == 2 else data
        volume = volume[(0,) * (volume.ndim - 3)] if volume.ndim > 3 else volume
        return volume[first:last].rechunk(chunks)
    # One graph key holds the source; each block reads its part straight from it.
    return da.from_array(_Window(data, first, last), chunks=chunks, name=False)


class _Window:
    """Slices ``first:last`` of an array-like as (Z, Y, X), read on demand (picklable).

    A read that fails (a corrupt or truncated chunk of a store or file) raises InputError
    naming the source and the slices.
    """

    def __init__(self, data: Any, first: int, last: int) -> None:
        self.data, self.first = data, first
        self.name = describe_source(data)
        self.lead = max(0, len(data.shape) - 3)  # OME-Zarr's (1, 1, Z, Y, X)
        self.flat = len(data.shape) == 2
        self.shape = (last - first, *data.shape[-2:])
        self.dtype, self.ndim = np.dtype(data.dtype), 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        z, y, x = key
        start, stop, _ = z.indices(self.shape[0])
        where = (0,) * self.lead + (slice(self.first + start, self.first + stop), y, x)
        try:
            if self.flat:
                return np.asarray(self.data[y, x])[np.newaxis]
            return np.asarray(self.data[where])
        except Exception as error:  # stores and codecs raise many types for corrupt data
            raise InputError(
                f"cannot read slices {self.first + start}-{self.first + stop - 1} of "
                f"{self.name}: a corrupt or truncated chunk ({type(error).__name__}: {error})"
            ) from error


def _shared(value: object) -> Any:
    """One graph key for ``value``: sent once to each worker, not once per block."""
    import dask

    return dask.delayed(value, pure=True, traverse=False)


class _ClosableWrites:
    """A zarr array to write blocks into until :meth:`close`, which waits for the writes
    under way; later writes raise. A computation stopped by an error or Ctrl-C leaves
    threads still computing blocks: none of them writes after the temporary store is gone.
    """

    def __init__(self, array: Any) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self._open, self._writing = True, 0
        self._changed = threading.Condition()

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        with self._changed:
            if not self._open:
                raise InputError("the prediction was stopped; the block was not written")
            self._writing += 1
        try:
            self.array[key] = value
        finally:
            with self._changed:
                self._writing -= 1
                self._changed.notify_all()

    def __reduce__(self) -> Any:
        # dask.distributed workers (other processes) get the plain array.
        return _same, (self.array,)

    def close(self) -> None:
        """Refuse further writes, once those under way have ended."""
        with self._changed:
            self._open = False
            self._changed.wait_for(lambda: self._writing == 0)


def _same(value: Any) -> Any:
    return value


def _create_image(
    path: Path,
    shapes: list[tuple[int, ...]],
    chunks: tuple,
    dtype: Any,
    pixel_size: PixelSize | None,
    name: str,
) -> list[Any]:
    """A new OME-Zarr image at ``path`` (NGFF 0.4, zarr format 2) with one level of each of
    ``shapes``; returns the levels' arrays ``0``, ``1``, ..."""
    import zarr
    from numcodecs import Blosc

    # zarr 3 writes format 3 unless told; zarr 2 (Python 3.10) knows no other.
    version = {"zarr_format": 2} if int(zarr.__version__.split(".")[0]) >= 3 else {}
    # "w-" fills the (empty, locked) folder given; "w" would delete it and make another.
    group = zarr.open_group(str(path), mode="w-", **version)
    group.attrs.update(image_metadata(pixel_size, len(shapes[0]), name, len(shapes)))
    return [
        zarr.open_array(
            str(path / str(level)),
            mode="w-",
            shape=shape,
            chunks=tuple(min(c, n) for c, n in zip(chunks, shape, strict=True)),
            dtype=dtype,
            dimension_separator="/",  # as NGFF 0.4 requires
            compressor=Blosc("lz4", 5, Blosc.SHUFFLE),  # format 2's default: every reader has it
            **version,
        )
        for level, shape in enumerate(shapes)
    ]


def _coarser(
    finer: Any, chunks: tuple[int, ...], first: int, last: int, threshold: float | None
) -> Any:
    """Slices ``first:last`` (all of a 2D image) of the level after the zarr array ``finer``,
    in blocks of ``chunks``: the mean of each 2 x 2 block of probabilities, or the maximum of
    a mask's (with a ``threshold``: a membrane one pixel wide stays)."""
    import dask.array as da

    data = da.from_zarr(finer)
    region = data if data.ndim == 2 else data[first:last]
    axes = {region.ndim - 2: 2, region.ndim - 1: 2}
    reduce = np.mean if threshold is None else np.max
    halved = da.coarsen(reduce, region, axes, trim_excess=True)
    return halved.astype(finer.dtype).rechunk(chunks)


def _check_target(target: Path, overwrite: bool) -> None:
    if target.suffix.lower() != ".zarr":
        raise InputError(f"{target}: expected an output name ending in .zarr")
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; choose another name or allow overwriting")
    if target.exists() and not is_zarr(target):
        raise InputError(f"{target} exists and is not a zarr store; it will not be replaced")
    if not target.parent.is_dir():
        raise InputError(f"cannot write {target}: the folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {target}: the folder {target.parent} is not writable")


@contextlib.contextmanager
def _atomic_store(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary ``.zarr`` folder beside ``target``; renamed onto it on success.

    An existing ``target`` (with ``overwrite``) is moved aside first and deleted only after
    the rename, so a crash leaves the old store, or the new one, never a mixture.
    """
    remove_leftovers(target, PART_SUFFIX)  # of killed runs: no live writer holds them
    temporary = temporary_name(target, PART_SUFFIX)
    old = temporary.with_name(temporary.name.replace(PART_SUFFIX, ".old.zarr"))
    held = None
    try:
        temporary.mkdir()
        held = lock_held(temporary)  # ours while we live; zarr must not recreate the folder
        yield temporary
        if target.exists():
            if not overwrite:
                raise InputError(f"{target} appeared while predicting; nothing was replaced")
            os.replace(target, old)
        os.replace(temporary, target)
    except OSError as error:  # a full disk, no inodes left, a folder made read-only
        raise InputError(write_failure([target], [], error)) from error
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        if held is not None:
            os.close(held)
