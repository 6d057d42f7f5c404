"""Checks on volumes read on demand: contrast, a block at a time."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.volumes import _TiffVolume, constant_value, open_volume


class CountingArray:
    """A chunked array that records the windows read from it."""

    def __init__(self, data: np.ndarray, chunks: tuple[int, ...] | None = (1, 32, 32)) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        if chunks is not None:
            self.chunks = chunks
        self.reads: list[tuple[slice, ...]] = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]

    def pixels_read(self) -> list[int]:
        return [int(np.prod([s.stop - s.start for s in key])) for key in self.reads]


def test_a_constant_volume_is_read_whole_a_block_at_a_time() -> None:
    volume = CountingArray(np.full((8, 64, 64), 7, np.uint16))
    assert constant_value(volume, budget=2 * 64 * 64) == 7
    # whole chunks joined along x, then y, then z: two slices per read, every pixel once
    assert volume.pixels_read() == [2 * 64 * 64] * 4
    assert [key[0] for key in volume.reads] == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]


def test_contrast_ends_the_check_at_the_first_block_with_it() -> None:
    data = np.zeros((8, 64, 64), np.uint8)  # a black border on the first slices
    data[3, 40, 50] = 1
    volume = CountingArray(data)
    assert constant_value(volume, budget=64 * 64) is None
    assert [key[0] for key in volume.reads] == [slice(0, 1), slice(1, 2), slice(2, 3), slice(3, 4)]


def test_a_pixel_in_the_last_block_counts() -> None:
    data = np.zeros((8, 64, 64), np.float32)
    data[-1, -1, -1] = 0.5
    assert constant_value(CountingArray(data, chunks=None), budget=64 * 64) is None
    data[-1, -1, -1] = np.nan  # not constant either; NaN is refused when read
    assert constant_value(data, budget=64 * 64) is None


def test_chunks_larger_than_the_budget_are_read_whole() -> None:
    volume = CountingArray(np.zeros((4, 64, 64), np.uint8), chunks=(2, 64, 64))
    assert constant_value(volume, budget=100) == 0
    assert volume.pixels_read() == [2 * 64 * 64] * 2


def test_without_chunks_slices_are_split_into_rows() -> None:
    volume = CountingArray(np.ones((2, 64, 64), np.uint8), chunks=None)
    assert constant_value(volume, budget=16 * 64) == 1
    assert volume.pixels_read() == [16 * 64] * 8


@pytest.mark.parametrize("shape", [(64, 64), (1, 1, 3, 64, 64)])
def test_flat_and_leading_axes(shape) -> None:
    assert constant_value(np.full(shape, 3, np.int16)) == 3
    data = np.full(shape, 3, np.int16)
    data[..., -1, -1] = 4
    assert constant_value(data) is None


def test_a_zarr_store_without_chunks_is_not_read(tmp_path, monkeypatch) -> None:
    array = zarr.create_array(
        str(tmp_path / "z.zarr"), shape=(4, 64, 64), chunks=(1, 32, 32), dtype="u2"
    )
    array[:] = 0  # equal to the fill value: zarr writes no chunk
    opened = open_volume(tmp_path / "z.zarr")
    assert opened.nchunks_initialized == 0
    monkeypatch.setattr(type(opened), "__getitem__", lambda *a: pytest.fail("read a chunk"))
    assert constant_value(opened) == 0


def test_zarr_dask_and_tiff_volumes(tmp_path) -> None:
    array = zarr.create_array(
        str(tmp_path / "z.zarr"), shape=(4, 64, 64), chunks=(1, 32, 32), dtype="u1"
    )
    array[:] = 5
    assert array.nchunks_initialized == 16  # every chunk written, so every chunk is read
    assert constant_value(open_volume(tmp_path / "z.zarr")) == 5
    array[2, 10, 10] = 6
    assert constant_value(open_volume(tmp_path / "z.zarr")) is None
    assert constant_value(da.full((4, 64, 64), 2.5, chunks=(1, 32, 32))) == 2.5
    tifffile.imwrite(tmp_path / "flat.tif", np.full((3, 64, 64), 9, np.uint8), compression="zlib")
    assert constant_value(_TiffVolume(tmp_path / "flat.tif")) == 9


def test_an_unreadable_chunk_is_one_input_error(tmp_path) -> None:
    array = zarr.create_array(
        str(tmp_path / "z.zarr"), shape=(2, 64, 64), chunks=(1, 64, 64), dtype="u1"
    )
    array[:] = 1
    chunk = next(
        p
        for p in sorted((tmp_path / "z.zarr").rglob("*"))
        if p.name != "zarr.json" and p.is_file()
    )
    chunk.write_bytes(chunk.read_bytes()[:5])
    with pytest.raises(InputError, match=r"cannot read slices? 0.* of the volume .*z\.zarr"):
        constant_value(open_volume(tmp_path / "z.zarr"))
