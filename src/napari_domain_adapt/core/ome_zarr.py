"""OME-Zarr images: which array of a multiscale image to read, at what pixel size; and the
metadata of the images we write.

Read: OME-NGFF 0.4 (``multiscales`` in the group's attributes, zarr format 2) and 0.5
(under ``ome``, zarr format 3). ``raw.zarr`` is read at its first (full-resolution) level,
``raw.zarr/1`` at level ``1``; each level's pixel size is its ``scale`` transformation (times
the image-wide one) in its axes' units. A bioformats2raw container (``bioformats2raw.layout``
at its root, what bioformats2raw and many converters write) is read at its first series,
``raw.ome.zarr/0``. Written: OME-NGFF 0.4, the version most viewers read
(napari-ome-zarr, Fiji/BigDataViewer, neuroglancer), as its specification lays it out, with
coarser levels for large images (:func:`pyramid_shapes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .pixel_size import UNITS, PixelSize, pixel_size_or_none

NGFF_VERSION = "0.4"
#: The images we write get coarser levels until the coarsest is at most this many pixels on
#: a side: a viewer then reads only what it shows, however large the image.
PYRAMID_SIDE = 512


def multiscales(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``multiscales`` list of a group's attributes (NGFF 0.4 or 0.5), else empty."""
    found = attributes.get("multiscales") or (attributes.get("ome") or {}).get("multiscales")
    return found if isinstance(found, list) else []


def first_level(attributes: dict[str, Any]) -> str | None:
    """The path of the full-resolution array of an OME-Zarr image; None for other groups."""
    for image in multiscales(attributes):
        datasets = image.get("datasets") if isinstance(image, dict) else None
        if datasets and isinstance(datasets[0], dict) and "path" in datasets[0]:
            return str(datasets[0]["path"])
    return None


def level_pixel_size(attributes: dict[str, Any], level: str) -> PixelSize | None:
    """The pixel size of array ``level`` of the OME-Zarr image whose attributes these are."""
    for image in multiscales(attributes):
        for dataset in image.get("datasets") or []:
            if str(dataset.get("path")) == level:
                scale = _scale(dataset.get("coordinateTransformations"))
                overall = _scale(image.get("coordinateTransformations"))
                if scale is not None and overall is not None and len(overall) == len(scale):
                    scale = [a * b for a, b in zip(scale, overall, strict=True)]
                return _spatial(image.get("axes"), scale)
    return None


def image_root(path: str | Path) -> Path:
    """The image a path names: a bioformats2raw container's first series (``path/0``),
    else ``path`` itself."""
    path = Path(path)
    attributes = _attributes(path)
    layout = "bioformats2raw.layout"
    container = layout in attributes or layout in (attributes.get("ome") or {})
    return path / "0" if container and (path / "0").is_dir() else path


def axis_types(path: str | Path) -> list[str] | None:
    """The type of each axis of the OME-Zarr image at ``path`` (``space``, ``time``,
    ``channel``; None where an axis has none), or None where the image does not say."""
    for image in multiscales(_attributes(image_root(path))):
        axes = image.get("axes") if isinstance(image, dict) else None
        if isinstance(axes, list) and all(isinstance(axis, dict) for axis in axes):
            return [axis.get("type") for axis in axes]
    return None


def image_levels(path: str | Path) -> list[tuple[str, PixelSize | None]]:
    """The arrays of the OME-Zarr image at ``path``, full resolution first, each with its
    pixel size; empty where ``path`` is not an OME-Zarr image (a plain array, not zarr).
    The arrays lie in :func:`image_root` of ``path``."""
    attributes = _attributes(image_root(path))
    for image in multiscales(attributes):
        datasets = image.get("datasets") if isinstance(image, dict) else None
        paths = [str(d["path"]) for d in datasets or [] if isinstance(d, dict) and "path" in d]
        if paths:
            return [(level, level_pixel_size(attributes, level)) for level in paths]
    return []


def label_images(path: str | Path) -> list[str]:
    """The names of the label images stored with the OME-Zarr image at ``path`` (its
    ``labels`` group lists them), e.g. ``["cells"]`` for ``path/labels/cells``."""
    attributes = _attributes(image_root(path) / "labels")
    names = attributes.get("labels") or (attributes.get("ome") or {}).get("labels")
    return [str(name) for name in names] if isinstance(names, list) else []


def is_label_image(path: str | Path) -> bool:
    """Whether the OME-Zarr image at ``path`` is a label image (``image-label`` metadata)."""
    attributes = _attributes(image_root(path))
    return "image-label" in attributes or "image-label" in (attributes.get("ome") or {})


def _scale(transformations: Any) -> list[float] | None:
    for transformation in transformations or []:
        if isinstance(transformation, dict) and transformation.get("type") == "scale":
            try:
                return [float(value) for value in transformation["scale"]]
            except (KeyError, TypeError, ValueError):
                return None
    return None


def _spatial(axes: Any, scale: list[float] | None) -> PixelSize | None:
    """The pixel size of the space axes: those sharing the in-plane (y, x) unit."""
    if scale is None or not isinstance(axes, list) or len(axes) != len(scale):
        return None
    space = [
        (value, axis.get("unit"))
        for axis, value in zip(axes, scale, strict=True)
        if isinstance(axis, dict) and axis.get("type", "space") == "space"
    ][-3:]
    if len(space) < 2 or space[-1][1] != space[-2][1]:
        return None
    unit = space[-1][1]
    sizes = [value for value, _ in space[-2:]]
    if len(space) == 3 and space[0][1] == unit:  # a z of another unit (or none) is unknown
        sizes.insert(0, space[0][0])
    return pixel_size_or_none(sizes, unit)


def pyramid_shapes(shape: tuple[int, ...], side: int = PYRAMID_SIDE) -> list[tuple[int, ...]]:
    """The shapes of a multiscale image's levels: ``shape``, then each level halved in Y and
    X (rounded down; Z kept) while the one before is larger than ``side`` on a side."""
    shapes = [tuple(shape)]
    while max(shapes[-1][-2:]) > side:
        last = shapes[-1]
        shapes.append((*last[:-2], last[-2] // 2, last[-1] // 2))
    return shapes


def image_metadata(
    pixel_size: PixelSize | None, ndim: int, name: str, levels: int = 1
) -> dict[str, Any]:
    """The group attributes of an OME-Zarr image (NGFF 0.4) whose arrays are ``0`` to
    ``levels - 1``, each half as fine as the one before in Y and X.

    Axes without a known size (all without ``pixel_size``) get scale 1 and no unit.
    """
    names = "zyx"[-ndim:]
    size = pixel_size.fit(ndim) if pixel_size is not None else None
    known = len(size.sizes) if size is not None else 0
    scale = [1.0] * (ndim - known) + (list(size.sizes) if size is not None else [])
    axes = []
    for index, axis in enumerate(names):
        entry: dict[str, Any] = {"name": axis, "type": "space"}
        if size is not None and size.unit is not None and index >= ndim - known:
            entry["unit"] = UNITS[size.unit][0]
        axes.append(entry)
    datasets = []
    for level in range(levels):
        level_scale = [*scale[:-2], *(value * 2**level for value in scale[-2:])]
        transformations = [{"type": "scale", "scale": level_scale}]
        datasets.append({"path": str(level), "coordinateTransformations": transformations})
    image = {"version": NGFF_VERSION, "name": name, "axes": axes, "datasets": datasets}
    return {"multiscales": [image]}


def zarr_pixel_size(path: str | Path) -> PixelSize | None:
    """The pixel size of the array that a zarr path names (see :func:`image_level`)."""
    group, level = image_level(image_root(path))
    if group is None or level is None:
        return None
    return level_pixel_size(_attributes(group), level)


def image_level(path: Path) -> tuple[Path | None, str | None]:
    """The OME-Zarr image folder and the level a path reads: ``img.zarr`` -> its first
    level; ``img.zarr/1`` -> level ``1``. (None, None) where there is no image."""
    first = first_level(_attributes(path))
    if first is not None:
        return path, first
    parent = path.parent
    if parent != path and first_level(_attributes(parent)) is not None:
        return parent, path.name
    return None, None


def _attributes(folder: Path) -> dict[str, Any]:
    """A zarr group's attributes (format 2 or 3); empty for anything else."""
    import zarr

    try:
        return dict(zarr.open_group(str(folder), mode="r").attrs)
    except Exception:  # not a group, not zarr, or unreadable: no image there
        return {}
