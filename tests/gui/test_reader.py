"""The npe2 HDF5 reader: datasets open as lazy layers at their voxel size."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.gui.reader import get_reader


def test_reader_opens_images_and_labels_at_their_scale(tmp_path):
    path = tmp_path / "volume.h5"
    raw = np.arange(2 * 8 * 9, dtype=np.float32).reshape(2, 8, 9)
    ids = (raw // 10).astype(np.uint32)
    with h5py.File(path, "w") as file:
        file.create_dataset("raw", data=raw).attrs["element_size_um"] = (0.05, 0.004, 0.004)
        file.create_dataset("neuron_ids", data=ids)
    assert get_reader(str(tmp_path / "stack.tif")) is None
    layers = get_reader(str(path))(str(path))
    by_name = {meta["name"]: (data, meta, kind) for data, meta, kind in layers}
    data, meta, kind = by_name["raw"]
    assert kind == "image"
    assert meta["scale"] == (0.05, 0.004, 0.004)
    np.testing.assert_array_equal(np.asarray(data), raw)
    data, meta, kind = by_name["neuron_ids"]
    assert kind == "labels"
    assert "scale" not in meta
    np.testing.assert_array_equal(np.asarray(data), ids)
    only_raw = get_reader(f"{path}:raw")(f"{path}:raw")
    assert [meta["name"] for _, meta, _ in only_raw] == ["raw"]


def test_a_missing_dataset_is_refused_naming_those_there(tmp_path):
    path = tmp_path / "volume.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("volumes/raw", data=np.ones((2, 4, 4), np.uint8))
        file.create_dataset("offset", data=np.zeros(3))  # 1D: no layer
    for name in ("missing", "offset"):
        with pytest.raises(InputError, match=rf"no dataset '{name}' .*; found: volumes/raw$"):
            get_reader(f"{path}:{name}")(f"{path}:{name}")


@pytest.mark.parametrize("size", [(float("nan"), 4.0, 4.0), (40.0, 0.0, 4.0), (40.0, 4.0, -1.0)])
def test_a_voxel_size_that_is_not_one_gives_no_scale(tmp_path, size):
    path = tmp_path / "volume.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("raw", data=np.ones((2, 4, 4), np.uint8)).attrs["resolution"] = size
    ((_, meta, _),) = get_reader(str(path))(str(path))
    assert "scale" not in meta


def test_reader_is_found_through_npe2(make_napari_viewer, tmp_path):
    path = tmp_path / "volume.hdf5"
    with h5py.File(path, "w") as file:
        file.create_dataset("raw", data=np.ones((3, 5, 6), np.uint8))
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-domain-adapt")
    assert [layer.name for layer in viewer.layers] == ["raw"]
