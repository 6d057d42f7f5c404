"""The npe2 readers: HDF5 datasets open as lazy layers at their voxel size, ImageJ and
OME-TIFF files at their pixel size, OME-Zarr images as lazy multiscale layers at theirs."""

from __future__ import annotations

import logging

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
import zarr

from _pixel_files import em_stack, imagej_stack, ome_tiff, ome_zarr
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.gui.reader import get_ome_zarr_reader, get_reader, get_tiff_reader


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


# --- TIFF: the pixel size that ImageJ and OME-TIFF files declare -----------------------


def _open(viewer, path, **kwargs):
    (layer,) = viewer.open(str(path), plugin="napari-domain-adapt", **kwargs)
    return layer


@pytest.mark.parametrize(
    ("make", "scale", "unit"),
    [
        (imagej_stack, (0.05, 0.004, 0.004), "micrometer"),
        (ome_tiff, (0.05, 0.004, 0.004), "micrometer"),  # in nm in the file
    ],
)
def test_a_calibrated_tiff_opens_at_its_pixel_size(
    make_napari_viewer, tmp_path, make, scale, unit
):
    path = make(tmp_path / "em.tif")
    viewer = make_napari_viewer()
    layer = _open(viewer, path)
    assert layer.name == "em"
    np.testing.assert_array_equal(layer.data, em_stack())
    np.testing.assert_allclose(layer.scale, scale)
    assert [str(u) for u in layer.units] == [unit] * 3
    # napari's own reader gives the same pixels without their size
    (plain,) = viewer.open(str(path), plugin="napari")
    np.testing.assert_array_equal(plain.scale, (1, 1, 1))


def test_the_layer_scale_is_what_the_core_reads(make_napari_viewer, tmp_path):
    """The reader and the CLI read one pixel size: the layer's is the file's."""
    from napari_domain_adapt.core import layer_pixel_size, read_pixel_size

    path = imagej_stack(tmp_path / "em.tif", unit="nm")
    layer = _open(make_napari_viewer(), path)
    assert read_pixel_size(path) == PixelSize((0.05, 0.004, 0.004), "nm")
    assert layer_pixel_size(layer.scale, layer.units) == read_pixel_size(path).to("µm")


def test_an_uncalibrated_tiff_has_no_scale(make_napari_viewer, tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, em_stack(), photometric="minisblack")
    layer = _open(make_napari_viewer(), path)
    np.testing.assert_array_equal(layer.scale, (1, 1, 1))
    assert [str(u) for u in layer.units] == ["pixel"] * 3


def test_colour_and_labels(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    rgb = np.random.default_rng(0).integers(0, 255, (3, 32, 40), np.uint8)  # planar RGB
    path = tmp_path / "colour.tif"
    tifffile.imwrite(
        path,
        rgb,
        photometric="rgb",
        planarconfig="separate",
        resolution=(250, 250),
        resolutionunit="CENTIMETER",
    )
    layer = _open(viewer, path)
    assert layer.rgb
    assert layer.data.shape == (32, 40, 3)
    labels = tmp_path / "cell_labels.tif"
    imagej_stack(labels, (em_stack() % 5).astype(np.uint16))
    layer = _open(viewer, labels)
    assert layer._type_string == "labels"
    np.testing.assert_allclose(layer.scale, (0.05, 0.004, 0.004))


def test_get_tiff_reader_takes_only_tiff_files(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.ones((4, 4), np.uint8))
    assert get_tiff_reader(str(tmp_path / "a.tif")) is not None
    assert get_tiff_reader(str(tmp_path / "A.TIFF")) is None  # missing
    assert get_tiff_reader([str(tmp_path / "a.tif")]) is None
    assert get_tiff_reader(str(tmp_path / "a.png")) is None
    assert get_reader(str(tmp_path / "a.tif")) is None  # the HDF5 reader


def test_napari_asks_which_reader_unless_one_is_preferred(
    make_napari_viewer, tmp_path, monkeypatch
):
    """napari's builtins read TIFF too. Opening from the GUI (``plugin=None``) with two
    readers and no preference, napari asks (``MultipleReaderError``, which its Qt viewer
    answers with the reader dialog); the preference picks ours. ``viewer.open(path)`` in a
    script reads with napari's builtins, as before."""
    from napari.errors import MultipleReaderError
    from napari.settings import get_settings

    path = imagej_stack(tmp_path / "em.tif")
    viewer = make_napari_viewer()
    with pytest.raises(MultipleReaderError, match="napari-domain-adapt"):
        viewer.open(str(path), plugin=None)
    (scripted,) = viewer.open(str(path))
    np.testing.assert_array_equal(scripted.scale, (1, 1, 1))
    settings = get_settings()
    # Not into the user's settings file (a class attribute: restored cleanly, unlike the
    # instance's private pydantic fields, whose restoring broke every later viewer).
    monkeypatch.setattr(type(settings), "_maybe_save", lambda self: None)
    monkeypatch.setattr(settings.plugins, "extension2reader", {"*.tif": "napari-domain-adapt"})
    (layer,) = viewer.open(str(path), plugin=None)
    np.testing.assert_allclose(layer.scale, (0.05, 0.004, 0.004))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_an_ome_zarr_image_opens_lazily_at_its_pixel_size(tmp_path, version):
    """Every level, read on demand, at the full resolution's pixel size; napari's builtins
    open the same folder at scale 1."""
    data = em_stack()
    path = ome_zarr(tmp_path / "raw.ome.zarr", data, version=version)
    ((levels, meta, kind),) = get_ome_zarr_reader(str(path))(str(path))
    assert (kind, meta["name"], meta["multiscale"]) == ("image", "raw", True)
    assert all(isinstance(level, da.Array) for level in levels)
    np.testing.assert_array_equal(levels[0].compute(), data)
    assert levels[1].shape == (3, 32, 40)
    assert meta["scale"] == (0.05, 0.004, 0.004)  # nanometres in the file
    if "units" in meta:  # napari 0.6 and later
        assert meta["units"] == ("micrometer",) * 3


def _image_with_axes(path, shape, axes: str) -> str:
    """A one-level NGFF 0.4 image of ``shape`` whose axes are ``axes`` (t, c, z, y, x)."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=shape, dtype="u2")[:] = 7
    kinds = {"t": "time", "c": "channel"}
    listed = [
        {
            "name": a,
            "type": kinds.get(a, "space"),
            **({} if a in kinds else {"unit": "micrometer"}),
        }
        for a in axes
    ]
    scale = [{"z": 0.05}.get(a, 0.01 if a in "yx" else 1.0) for a in axes]
    dataset = {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
    group.attrs["multiscales"] = [{"version": "0.4", "axes": listed, "datasets": [dataset]}]
    return str(path)


@pytest.mark.parametrize(
    ("shape", "axes", "expected"),
    [
        ((1, 1, 2, 8, 8), "tczyx", (2, 8, 8)),
        ((1, 1, 8, 8), "tcyx", (8, 8)),  # a 2D image: every axis but y and x dropped
        ((1, 8, 8), "cyx", (8, 8)),
    ],
)
def test_an_ome_zarr_image_drops_single_time_and_channel_axes(tmp_path, shape, axes, expected):
    path = _image_with_axes(tmp_path / "image.zarr", shape, axes)
    ((data, meta, _),) = get_ome_zarr_reader(path)(path)
    assert isinstance(data, da.Array)
    assert data.shape == expected
    assert meta["multiscale"] is False
    assert meta["scale"] == (0.05, 0.01, 0.01)[-len(expected) :]


@pytest.mark.parametrize(("shape", "axes"), [((3, 8, 8), "cyx"), ((2, 2, 8, 8), "czyx")])
def test_an_ome_zarr_image_of_several_channels_or_times_is_left_to_other_readers(
    tmp_path, shape, axes
):
    """Colour or several channels (or time points) is not one grey volume: the reader
    declines (napari-ome-zarr reads it), rather than taking channels for slices."""
    assert get_ome_zarr_reader(_image_with_axes(tmp_path / "image.zarr", shape, axes)) is None
    time = _image_with_axes(tmp_path / "time.zarr", (2, 4, 8, 8), "tzyx")
    assert get_ome_zarr_reader(time) is None


def test_a_bioformats2raw_container_opens_at_its_first_series(tmp_path):
    """bioformats2raw writes the image under ``0/`` of a container: the reader and the
    command line's volumes read it there."""
    from napari_domain_adapt.core import open_volume
    from napari_domain_adapt.core.io import read_pixel_size

    root = zarr.open_group(str(tmp_path / "scan.ome.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    data = em_stack()
    ome_zarr(tmp_path / "scan.ome.zarr" / "0", data)
    path = str(tmp_path / "scan.ome.zarr")
    ((levels, meta, kind),) = get_ome_zarr_reader(path)(path)
    assert (meta["name"], kind, meta["scale"]) == ("scan", "image", (0.05, 0.004, 0.004))
    np.testing.assert_array_equal(levels[0].compute(), data)
    np.testing.assert_array_equal(open_volume(path)[:], data)
    assert read_pixel_size(path) == PixelSize((50.0, 4.0, 4.0), "nm")


def test_get_ome_zarr_reader_takes_only_ome_zarr_images(tmp_path):
    zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(4, 4), dtype="u1")
    (tmp_path / "folder.zarr").mkdir()
    for path in ("plain.zarr", "folder.zarr", "missing.zarr"):
        assert get_ome_zarr_reader(str(tmp_path / path)) is None  # napari's builtins read them
    path = str(ome_zarr(tmp_path / "raw.zarr"))
    assert get_ome_zarr_reader([path]) is None
    assert get_ome_zarr_reader(path) is not None


def test_the_label_images_of_an_ome_zarr_image_open_as_labels(tmp_path):
    """Label images stored with the image (its ``labels/`` group, NGFF 0.4) open with it as
    Labels layers; one opened alone is a Labels layer too."""
    data = em_stack()
    path = ome_zarr(tmp_path / "raw.zarr", data)
    membranes = (data > data.mean()).astype(np.uint8)
    labels = zarr.open_group(str(path / "labels"), mode="w", zarr_format=2)
    labels.attrs["labels"] = ["membranes"]
    ome_zarr(path / "labels" / "membranes", membranes)
    zarr.open_group(str(path / "labels" / "membranes"), mode="a").attrs["image-label"] = {}
    image, label_layer = get_ome_zarr_reader(str(path))(str(path))
    assert (image[1]["name"], image[2]) == ("raw", "image")
    levels, meta, kind = label_layer
    assert (meta["name"], kind) == ("membranes", "labels")
    np.testing.assert_array_equal(levels[0].compute(), membranes)
    assert meta["scale"] == image[1]["scale"]
    alone = str(path / "labels" / "membranes")
    assert [kind for _, _, kind in get_ome_zarr_reader(alone)(alone)] == ["labels"]


def test_a_missing_label_image_is_skipped_and_the_image_opens(tmp_path, caplog):
    path = ome_zarr(tmp_path / "raw.zarr")
    labels = zarr.open_group(str(path / "labels"), mode="w", zarr_format=2)
    labels.attrs["labels"] = ["gone"]
    with caplog.at_level(logging.WARNING):
        layers = get_ome_zarr_reader(str(path))(str(path))
    assert [kind for _, _, kind in layers] == ["image"]
    assert "skipping label image 'gone'" in caplog.text


def test_files_of_different_units_open_in_one_unit(make_napari_viewer, tmp_path):
    """An HDF5 file in µm and an OME-Zarr image in nm, side by side: both layers are in
    µm, so napari draws them at their sizes (it draws layers of different units each at
    its own numbers: 4 nm beside 0.004 µm was 1000 times larger)."""
    from _pixel_files import hdf5_volume

    viewer = make_napari_viewer()
    hdf5_volume(tmp_path / "source.h5")
    (hdf5,) = viewer.open(str(tmp_path / "source.h5"), plugin="napari-domain-adapt")
    zarr_path = ome_zarr(tmp_path / "target.ome.zarr")
    (ome,) = viewer.open(str(zarr_path), plugin="napari-domain-adapt")
    np.testing.assert_allclose(hdf5.scale, ome.scale)  # both 50 x 4 x 4 nm
    np.testing.assert_allclose(hdf5.extent.world, ome.extent.world)
    if hasattr(ome, "units"):  # napari 0.6 and later
        assert [str(u) for u in hdf5.units] == [str(u) for u in ome.units] == ["micrometer"] * 3
