"""OME-Zarr: levels and pixel sizes of multiscale images (NGFF 0.4 and 0.5), our metadata."""

from __future__ import annotations

import numpy as np
import zarr

from _pixel_files import ome_zarr
from napari_domain_adapt.core.ome_zarr import (
    first_level,
    image_level,
    image_levels,
    image_metadata,
    level_pixel_size,
    pyramid_shapes,
    zarr_pixel_size,
)
from napari_domain_adapt.core.pixel_size import PixelSize

EM = PixelSize((50.0, 4.0, 4.0), "nm")


def test_levels_and_their_pixel_sizes(tmp_path):
    for version in ("0.4", "0.5"):
        path = ome_zarr(tmp_path / f"raw{version}.zarr", version=version)
        attributes = dict(zarr.open_group(str(path), mode="r").attrs)
        assert first_level(attributes) == "s0"
        assert level_pixel_size(attributes, "s1") == PixelSize((50.0, 8.0, 8.0), "nm")
        assert zarr_pixel_size(path) == EM.to("nm")
        assert zarr_pixel_size(path / "s1") == PixelSize((50.0, 8.0, 8.0), "nm")
        assert image_level(path / "s1") == (path, "s1")
        assert image_levels(path) == [("s0", EM), ("s1", PixelSize((50.0, 8.0, 8.0), "nm"))]


def test_plain_zarr_has_no_pixel_size(tmp_path):
    zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(4, 4), dtype="u1")
    assert zarr_pixel_size(tmp_path / "plain.zarr") is None
    assert image_level(tmp_path / "plain.zarr") == (None, None)
    assert zarr_pixel_size(tmp_path / "missing.zarr") is None
    assert image_levels(tmp_path / "plain.zarr") == image_levels(tmp_path / "missing") == []


def test_axes_of_other_units():
    image = {
        "axes": [
            {"name": "t", "type": "time", "unit": "second"},
            {"name": "z", "type": "space"},  # no unit: its size is not known
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ],
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [{"type": "scale", "scale": [2, 1, 0.5, 0.5]}],
            }
        ],
    }
    assert level_pixel_size({"multiscales": [image]}, "0") == PixelSize((0.5, 0.5), "µm")
    assert level_pixel_size({"multiscales": [image]}, "9") is None


def test_image_metadata_is_ngff_0_4():
    (image,) = image_metadata(EM, 3, "probabilities")["multiscales"]
    assert image["version"] == "0.4"
    assert [axis["name"] for axis in image["axes"]] == ["z", "y", "x"]
    assert {axis["unit"] for axis in image["axes"]} == {"nanometer"}
    assert image["datasets"] == [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [50.0, 4.0, 4.0]}]}
    ]
    assert level_pixel_size({"multiscales": [image]}, "0") == EM
    (plane,) = image_metadata(EM.fit(2), 3, "p")["multiscales"]
    assert [axis.get("unit") for axis in plane["axes"]] == [None, "nanometer", "nanometer"]
    assert plane["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 4.0, 4.0]
    (unknown,) = image_metadata(None, 2, "p")["multiscales"]
    assert unknown["axes"] == [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    assert np.array_equal(unknown["datasets"][0]["coordinateTransformations"][0]["scale"], [1, 1])


def test_pyramid_levels_halve_the_plane_until_it_is_small():
    assert pyramid_shapes((3, 512, 200)) == [(3, 512, 200)]  # small: one level
    assert pyramid_shapes((3, 1100, 600)) == [(3, 1100, 600), (3, 550, 300), (3, 275, 150)]
    assert pyramid_shapes((4097, 10)) == [(4097, 10), (2048, 5), (1024, 2), (512, 1)]
    assert pyramid_shapes((2, 64, 64), side=16) == [(2, 64, 64), (2, 32, 32), (2, 16, 16)]


def test_coarser_levels_double_the_in_plane_pixel_size():
    (image,) = image_metadata(EM, 3, "probabilities", levels=3)["multiscales"]
    attributes = {"multiscales": [image]}
    assert [dataset["path"] for dataset in image["datasets"]] == ["0", "1", "2"]
    assert [level_pixel_size(attributes, str(level)) for level in range(3)] == [
        EM,
        PixelSize((50.0, 8.0, 8.0), "nm"),
        PixelSize((50.0, 16.0, 16.0), "nm"),
    ]
