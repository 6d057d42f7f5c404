"""Files with a pixel size, made as users have them: 4 nm pixels and 50 nm sections.

An ImageJ stack as Fiji saves it, an OME-TIFF, an OME-Zarr multiscale image (NGFF 0.4 or
0.5) and an HDF5 volume with ``element_size_um``. The round-trip tests read each, run a
command, and read the pixel size back from what it wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import zarr

from napari_domain_adapt.core.pixel_size import PixelSize

#: The pixel size every file here declares, in µm as ImageJ and HDF5 store it.
EM = PixelSize((0.05, 0.004, 0.004), "µm")


def em_stack(shape=(3, 64, 80), dtype=np.uint16) -> np.ndarray:
    """Textured slices (the models refuse blank images)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000 if dtype == np.uint16 else 255, shape).astype(dtype)


def imagej_stack(path: Path, data: np.ndarray | None = None, unit: str = "um") -> Path:
    """A 16-bit ImageJ stack at 0.004 µm per pixel, 0.05 µm slice spacing."""
    data = em_stack() if data is None else data
    resolution = (1 / 0.004, 1 / 0.004)
    metadata = {"axes": "ZYX"[-data.ndim :], "spacing": 0.05, "unit": unit}
    tifffile.imwrite(path, data, imagej=True, resolution=resolution, metadata=metadata)
    return path


def ome_tiff(path: Path, data: np.ndarray | None = None) -> Path:
    """An OME-TIFF with PhysicalSizeX/Y/Z in nm."""
    data = em_stack() if data is None else data
    metadata = {"axes": "ZYX"}
    for axis, size in zip("ZYX", EM.to("nm").sizes, strict=True):
        metadata |= {f"PhysicalSize{axis}": size, f"PhysicalSize{axis}Unit": "nm"}
    tifffile.imwrite(path, data, ome=True, metadata=metadata)
    return path


def ome_zarr(path: Path, data: np.ndarray | None = None, version: str = "0.4") -> Path:
    """A two-level OME-Zarr image in nm (level ``s1`` binned 2x in Y and X), laid out as
    OME-NGFF ``version`` says (0.5: zarr format 3, the metadata under ``ome``)."""
    data = em_stack() if data is None else data
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    datasets = []
    for index, level in enumerate(("s0", "s1")):
        binned = data[:, :: 2**index, :: 2**index]
        group.create_array(level, shape=binned.shape, dtype=binned.dtype)[:] = binned
        scale = [1.0, 4.0 * 2**index, 4.0 * 2**index]
        transformation = {"type": "scale", "scale": scale}
        datasets.append({"path": level, "coordinateTransformations": [transformation]})
    image = {
        "version": version,
        "axes": [{"name": axis, "type": "space", "unit": "nanometer"} for axis in "zyx"],
        "datasets": datasets,
        # image-wide: the sections are 50 nm apart
        "coordinateTransformations": [{"type": "scale", "scale": [50.0, 1.0, 1.0]}],
    }
    metadata = {"multiscales": [image]}
    group.attrs.update(metadata if version == "0.4" else {"ome": {"version": version, **metadata}})
    return path


def hdf5_volume(path: Path, data: np.ndarray | None = None) -> str:
    """An HDF5 file whose ``raw`` dataset has ``element_size_um``; returns ``file.h5:raw``."""
    import h5py

    data = em_stack() if data is None else data
    with h5py.File(path, "w") as file:
        file.create_dataset("raw", data=data).attrs["element_size_um"] = EM.sizes
    return f"{path}:raw"


def tiff_pixel_size_of(path: Path) -> PixelSize:
    """The pixel size read back with tifffile alone (ImageJ or OME metadata)."""
    with tifffile.TiffFile(path) as tif:
        if tif.is_imagej:
            metadata = tif.imagej_metadata
            x_resolution = tif.pages.first.tags["XResolution"].value
            y_resolution = tif.pages.first.tags["YResolution"].value
            sizes = [y_resolution[1] / y_resolution[0], x_resolution[1] / x_resolution[0]]
            if "spacing" in metadata:
                sizes.insert(0, metadata["spacing"])
            return PixelSize(tuple(sizes), metadata.get("unit"))
        raise AssertionError(f"{path} is not an ImageJ TIFF")


def zarr_pixel_size_of(path: Path) -> PixelSize:
    """The pixel size read back with zarr alone from an NGFF 0.4 image's level 0."""
    (image,) = zarr.open_group(str(path), mode="r").attrs["multiscales"]
    assert image["datasets"][0]["path"] == "0"
    (scale,) = image["datasets"][0]["coordinateTransformations"]
    units = {axis.get("unit") for axis in image["axes"]}
    assert len(units) == 1
    return PixelSize(tuple(scale["scale"]), units.pop())
