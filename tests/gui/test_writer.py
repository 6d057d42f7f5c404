"""The npe2 writer: a Labels layer as a compressed TIFF with its pixel size."""

from __future__ import annotations

import napari
import npe2
import numpy as np
import pytest
import tifffile
from napari.layers import Labels

from _pixel_files import tiff_pixel_size_of
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.gui.writer import label_dtype, write_labels_tiff, write_mask


@pytest.fixture(autouse=True)
def plugins():
    """npe2 knows the installed plugins (a viewer would discover them itself)."""
    npe2.PluginManager.instance().discover()


def test_writes_labels_unchanged_with_pixel_size(tmp_path):
    data = np.zeros((3, 20, 30), np.int32)
    data[1, 5:9, 4:12] = 7
    path = tmp_path / "labels.tif"
    written = write_labels_tiff(str(path), data, {"scale": (2.0, 0.5, 0.25), "name": "x"})
    assert written == [str(path)]
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), data)
        assert tif.asarray().dtype == np.uint8
        page = tif.pages[0]
        assert page.compression != tifffile.COMPRESSION.NONE
        x_resolution = page.tags["XResolution"].value
        assert x_resolution[0] / x_resolution[1] == pytest.approx(4.0)  # 1 / 0.25 px per unit


def test_napari_saves_a_labels_layer_through_the_plugin(tmp_path):
    layer = Labels(np.eye(16, dtype=np.uint8), scale=(0.5, 0.5), name="mask")
    path = tmp_path / "mask.tif"
    written = napari.save_layers(str(path), [layer], plugin="napari-domain-adapt")
    assert written == [str(path)]
    np.testing.assert_array_equal(tifffile.imread(path), layer.data)


@pytest.mark.parametrize(
    ("peak", "dtype"), [(1, np.uint8), (255, np.uint8), (256, np.uint16), (70000, np.uint32)]
)
def test_label_dtype_is_the_smallest_that_fits(peak, dtype):
    assert label_dtype(np.array([0, peak])) == dtype


def test_negative_labels_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"negative values \(the lowest is -3\)"):
        write_labels_tiff(str(tmp_path / "l.tif"), np.array([[-3, 2]]), {"scale": (1, 1)})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("scale", [(0.0, 1.0, 1.0), (1.0, -2.0, 1.0), (1.0, 1.0, float("nan"))])
def test_a_scale_that_is_not_a_pixel_size_is_refused(tmp_path, scale):
    labels = np.ones((2, 4, 4), np.uint8)
    with pytest.raises(InputError, match="is not a positive pixel size on every axis"):
        write_labels_tiff(str(tmp_path / "l.tif"), labels, {"scale": scale})
    with pytest.raises(InputError, match="is not a positive pixel size on every axis"):
        write_mask(tmp_path / "m.tif", labels, scale, 255)
    assert not list(tmp_path.iterdir())


def test_the_layer_units_are_written(tmp_path):
    """The export writes scale and unit: Fiji shows the stack calibrated in nm."""
    layer = Labels(np.eye(16, dtype=np.uint8)[None].repeat(2, 0), scale=(50, 4, 4), units="nm")
    written = napari.save_layers(str(tmp_path / "nm.tif"), [layer], plugin="napari-domain-adapt")
    assert tiff_pixel_size_of(written[0]) == PixelSize((50, 4, 4), "nm")
    mask = write_mask(tmp_path / "mask.tif", layer.data, layer.scale, 255, units=layer.units)
    assert tiff_pixel_size_of(mask) == PixelSize((50, 4, 4), "nm")


@pytest.mark.parametrize("foreground", [1, 255])
def test_write_mask_is_binary_and_never_overwrites_unasked(tmp_path, foreground):
    labels = np.zeros((2, 8, 8), np.uint8)
    labels[0, 2:4, 2:4] = 1
    labels[1, 5, 5] = 3
    path = write_mask(tmp_path / "mask.tif", labels, (1, 1, 1), foreground)
    np.testing.assert_array_equal(tifffile.imread(path), (labels > 0) * foreground)
    with pytest.raises(ValueError, match="exists"):
        write_mask(path, labels, (1, 1, 1), foreground)
    write_mask(path, np.zeros_like(labels), (1, 1, 1), foreground, overwrite=True)
    assert not tifffile.imread(path).any()
