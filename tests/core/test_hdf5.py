"""HDF5 volumes named as file.hdf:dataset, as CREMI and many EM pipelines store them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.hdf5 import list_hdf5, read_hdf5, split_hdf5_path
from napari_domain_adapt.core.io import read_volume
from napari_domain_adapt.core.pixel_size import PixelSize


@pytest.fixture
def cremi_like(tmp_path):
    path = tmp_path / "sample_A.hdf"
    raw = np.random.default_rng(0).integers(0, 255, (3, 20, 24), dtype=np.uint8)
    ids = np.arange(3 * 20 * 24, dtype=np.uint64).reshape(3, 20, 24) // 100
    with h5py.File(path, "w") as file:
        file.create_dataset("volumes/raw", data=raw).attrs["resolution"] = (40.0, 4.0, 4.0)
        file.create_dataset("volumes/labels/neuron_ids", data=ids)
        file.create_dataset("meta/offset", data=np.zeros(3))
    return path, raw, ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a/b.hdf:volumes/raw", ("a/b.hdf", "volumes/raw")),
        ("b.H5:/raw/", ("b.H5", "raw")),
        ("b.hdf5", ("b.hdf5", None)),
        ("C:/data/x.h5:raw", ("C:/data/x.h5", "raw")),
        ("stack.tif", ("stack.tif", None)),
    ],
)
def test_split_hdf5_path(text, expected):
    path, name = split_hdf5_path(text)
    assert (str(path), name) == (str(type(path)(expected[0])), expected[1])


def test_datasets_are_listed_with_their_voxel_size(cremi_like):
    path, raw, _ = cremi_like
    datasets = {d.name: d for d in list_hdf5(path)}
    assert sorted(datasets) == ["volumes/labels/neuron_ids", "volumes/raw"]  # 1D skipped
    assert datasets["volumes/raw"].pixel_size == PixelSize((40.0, 4.0, 4.0))
    assert datasets["volumes/labels/neuron_ids"].pixel_size is None
    assert datasets["volumes/raw"].shape == raw.shape


def test_read_volume_by_dataset_path(cremi_like):
    path, raw, ids = cremi_like
    np.testing.assert_array_equal(read_volume(f"{path}:volumes/raw"), raw)
    np.testing.assert_array_equal(read_hdf5(f"{path}:/volumes/labels/neuron_ids"), ids)


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("", r"name the dataset as .*:PATH \(found: volumes/labels/neuron_ids, volumes/raw\)"),
        (":volumes/missing", r"no dataset 'volumes/missing'; found: volumes/labels"),
    ],
)
def test_missing_dataset_lists_what_is_there(cremi_like, suffix, message):
    with pytest.raises(InputError, match=message):
        read_volume(f"{cremi_like[0]}{suffix}")


def test_not_an_hdf5_file(tmp_path):
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        read_volume(f"{fake}:raw")
    with pytest.raises(InputError, match="does not exist"):
        read_volume(f"{tmp_path / 'none.h5'}:raw")
