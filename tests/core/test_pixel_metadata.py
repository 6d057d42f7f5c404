"""Pixel sizes in TIFF (ImageJ, OME), HDF5 attributes and napari layer metadata."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from _pixel_files import EM, em_stack, ome_tiff
from napari_domain_adapt.core.pixel_metadata import (
    hdf5_pixel_size,
    layer_options,
    layer_pixel_size,
    tiff_options,
    tiff_pixel_size,
)
from napari_domain_adapt.core.pixel_size import PixelSize


def imagej_stack(path, unit="um", resolution=1 / 0.004):
    """A 16-bit ImageJ stack as Fiji saves it, in ``unit`` per pixel."""
    metadata = {"axes": "ZYX", "unit": unit, "spacing": 0.05}
    tifffile.imwrite(
        path, em_stack(), imagej=True, resolution=(resolution,) * 2, metadata=metadata
    )
    return path


def test_imagej_stack(tmp_path):
    assert tiff_pixel_size(imagej_stack(tmp_path / "a.tif")) == EM
    assert tiff_pixel_size(imagej_stack(tmp_path / "b.tif", unit="\\u00B5m")) == EM
    assert tiff_pixel_size(imagej_stack(tmp_path / "c.tif", unit="nm", resolution=0.25)) == (
        PixelSize((0.05, 4.0, 4.0), "nm")
    )


def test_uncalibrated_and_plain_tiffs_have_no_pixel_size(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    assert tiff_pixel_size(path) is None
    assert tiff_pixel_size(imagej_stack(tmp_path / "i.tif", unit="pixel", resolution=1)) is None
    # a unit this package does not know: sizes in it would mislead, so none
    assert tiff_pixel_size(imagej_stack(tmp_path / "odd.tif", unit="parsec")) is None
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    assert tiff_pixel_size(broken) is None


def test_ome_tiff(tmp_path):
    assert tiff_pixel_size(ome_tiff(tmp_path / "nm.ome.tif")) == EM.to("nm")
    path = tmp_path / "default.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeZ": 50, "PhysicalSizeZUnit": "nm"}
    metadata |= {"PhysicalSizeY": 0.004, "PhysicalSizeX": 0.004}  # no unit: OME says µm
    tifffile.imwrite(path, em_stack(), ome=True, metadata=metadata)
    assert tiff_pixel_size(path) == EM


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [(np.uint8, "imagej"), (np.uint16, "imagej"), (np.float32, "imagej"), (np.uint32, "ome")],
)
def test_written_tiffs_read_back(tmp_path, dtype, kind):
    path = tmp_path / "out.tif"
    data = np.zeros((3, 16, 20), dtype)
    tifffile.imwrite(path, data, **tiff_options(EM.to("nm"), data.dtype, data.ndim))
    with tifffile.TiffFile(path) as tif:
        assert (tif.is_imagej, tif.is_ome) == (kind == "imagej", kind == "ome")
        if kind == "imagej":  # what Fiji reads: its unit names and the slice spacing
            assert tif.imagej_metadata["unit"] == "nm"
            assert tif.imagej_metadata["spacing"] == pytest.approx(50)
    assert tiff_pixel_size(path) == EM.to("nm")
    micron = tmp_path / "micron.tif"
    tifffile.imwrite(micron, data, **tiff_options(EM, data.dtype, data.ndim))
    assert tiff_pixel_size(micron) == EM


def test_tiff_options_without_a_unit_keep_the_resolution_only():
    options = tiff_options(PixelSize((2.0, 4.0)), np.dtype(np.float64), 2)
    assert options == {"resolution": (0.25, 0.5)}
    assert tiff_options(None, np.dtype(np.uint8), 2) == {}
    planar = tiff_options(EM, np.dtype(np.uint8), 2)  # a slice of a stack: no spacing
    assert planar["metadata"] == {"axes": "YX", "unit": "micron"}


def test_hdf5_attributes():
    assert hdf5_pixel_size({"element_size_um": [0.05, 0.004, 0.004]}, 3) == EM
    assert hdf5_pixel_size({"resolution": [40, 4, 4]}, 3) == PixelSize((40.0, 4.0, 4.0))
    assert hdf5_pixel_size({"resolution": [40, 4]}, 3) is None  # not one per axis
    assert hdf5_pixel_size({"resolution": [float("nan"), 0, -1]}, 3) is None
    assert hdf5_pixel_size({}, 3) is None


def test_layers():
    assert layer_pixel_size((50, 4, 4), ["nanometer"] * 3) == EM.to("nm")
    assert layer_pixel_size((9, 50, 4, 4), ["second", *["nm"] * 3]) == EM.to("nm")
    assert layer_pixel_size((1, 1, 1), ["pixel"] * 3) == PixelSize((1, 1, 1))
    assert layer_pixel_size((50, 4, 4)) == PixelSize((50, 4, 4))
    assert layer_pixel_size((1, 4, 4), ["pixel", "nm", "nm"]) == PixelSize((1, 4, 4))
    assert layer_pixel_size(None) is None
    assert layer_options(EM, 3) == {"scale": EM.sizes, "units": ("micrometer",) * 3}
    in_nm = layer_options(EM.to("nm"), 3)  # one unit for every layer: napari mixes none
    assert in_nm == {"scale": EM.sizes, "units": ("micrometer",) * 3}
    assert layer_options(PixelSize((50, 4, 4)), 3) == {"scale": (50, 4, 4)}  # no unit
    assert layer_options(EM.fit(2), 3) == {"scale": (1.0, 0.004, 0.004)}
    assert layer_options(None, 3) == {}
