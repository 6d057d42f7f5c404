"""HDF5 volumes named as file.hdf:dataset, as CREMI and many EM pipelines store them."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from _bad_inputs import damage_hdf5_chunks
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.hdf5 import list_hdf5, read_hdf5, split_hdf5_path
from napari_domain_adapt.core.io import read_volume
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.core.volumes import describe_source, open_volume


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
    with pytest.raises(InputError, match=message):
        open_volume(f"{cremi_like[0]}{suffix}")


def test_a_dataset_opens_on_demand_for_out_of_core_work(cremi_like):
    """open_volume reads only what is sliced, and a copy pickled for another process (dask
    distributed) opens the file again by itself."""
    path, raw, _ = cremi_like
    volume = open_volume(f"{path}:volumes/raw")
    assert (volume.shape, volume.dtype, volume.ndim) == (raw.shape, raw.dtype, 3)
    np.testing.assert_array_equal(volume[1, 2:5], raw[1, 2:5])
    copy = pickle.loads(pickle.dumps(volume))
    np.testing.assert_array_equal(copy[:], raw)
    assert describe_source(volume) == f"{path}:volumes/raw"


def test_not_an_hdf5_file(tmp_path):
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        read_volume(f"{fake}:raw")
    with pytest.raises(InputError, match="does not exist"):
        read_volume(f"{tmp_path / 'none.h5'}:raw")


def test_an_external_link_to_a_missing_or_foreign_file_is_refused(tmp_path):
    path = tmp_path / "links.h5"
    (tmp_path / "notes.txt").write_text("not HDF5")
    with h5py.File(path, "w") as file:
        file["raw"] = np.zeros((2, 4, 4), np.uint8)
        file["missing"] = h5py.ExternalLink("nothere.h5", "/raw")
        file["foreign"] = h5py.ExternalLink("notes.txt", "/raw")
    with pytest.raises(InputError, match=r"links to nothere.h5:/raw, which cannot be opened"):
        read_volume(f"{path}:missing")
    with pytest.raises(InputError, match=r"links to notes.txt:/raw, which cannot be opened"):
        read_volume(f"{path}:foreign")


def test_a_corrupt_compressed_chunk_is_refused(tmp_path):
    path = tmp_path / "damaged.h5"
    data = np.random.default_rng(0).integers(0, 255, (2, 16, 16), dtype=np.uint8)
    with h5py.File(path, "w") as file:
        file.create_dataset("raw", data=data, chunks=(1, 16, 16), compression="gzip")
    damage_hdf5_chunks(path, "raw")
    with pytest.raises(InputError, match="raw: a corrupt or truncated chunk"):
        read_volume(f"{path}:raw")
    volume = open_volume(f"{path}:raw")  # on demand: the damage shows when it is read
    assert volume.chunks == (1, 16, 16)
    with pytest.raises(InputError, match="raw: a corrupt or truncated chunk"):
        volume[:]
