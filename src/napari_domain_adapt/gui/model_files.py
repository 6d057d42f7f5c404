"""The widget's files: where a mask is suggested, what of a mask layer is written, a model read
on a device, and the questions before a bioimage.io export.

No notifications here: the widget says what went wrong (a ``ValueError``, or None where the
user cancelled) in one message.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_domain_adapt import core

from .layers import full_resolution

if TYPE_CHECKING:
    from napari.layers import Layer

    from napari_domain_adapt.core import SegmentationModel

    from .dialogs import Dialogs

MODEL_FILTER = "Model checkpoint (*.pt)"
LOAD_FILTER = "Model checkpoint or bioimage.io package (*.pt *.zip)"
PACKAGE_FILTER = "bioimage.io package (*.zip)"
TIFF_FILTER = "TIFF (*.tif *.tiff)"


def suggested_export(name: str, sources: Iterable[Any]) -> Path:
    """``NAME.tif``, in the folder of the file the first of the layers ``sources`` came from
    (skipping None and layers not read from a file); else just ``NAME.tif``."""
    file_name = Path(f"{name}.tif")
    for source in sources:
        path = getattr(getattr(source, "source", None), "path", None)
        if path:
            return Path(path).parent / file_name
    return file_name


def mask_source(layer: Layer) -> tuple[Any, Any, Any]:
    """What :func:`~.writer.write_mask` needs of the Labels ``layer``: its full-resolution
    data, scale and units, taken in the main thread (a worker then touches no layer)."""
    return full_resolution(layer), layer.scale, getattr(layer, "units", None)  # napari >= 0.6


def read_model(path: str | Path, device: str) -> SegmentationModel:
    """The checkpoint or bioimage.io package ``path`` as a model on ``device`` (``auto``,
    ``cpu``, ``cuda``, ...); raises ValueError (an InputError) for a bad file."""
    return core.load_model(path, device=core.resolve_device(device))


def ask_package(dialogs: Dialogs, path: str | Path | None) -> tuple[Path, dict[str, Any]] | None:
    """Ask the package's name, author and licence, then its path (where ``path`` is None)
    and whether to replace an existing file; None where the user cancels.

    Returns the path and :func:`~napari_domain_adapt.core.export_bioimageio`'s keyword
    arguments.
    """
    details = dialogs.package_details(core.DEFAULT_NAME, core.DEFAULT_AUTHOR, core.DEFAULT_LICENSE)
    if details is None:
        return None
    chosen = dialogs.path_to_write(path, "Export bioimage.io package", PACKAGE_FILTER)
    if chosen is None:
        return None
    return chosen[0], {
        "name": details["name"],
        "authors": [details["author"]],
        "license": details["license"],
        "overwrite": chosen[1],
    }
