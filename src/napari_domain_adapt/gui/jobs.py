"""The generators that the widget runs in napari's ``thread_worker``: no Qt, no layers.

They take the layers' data and yield what the core's pipeline yields; the widget turns each
yielded object into layer updates in the main thread. Data read on demand (a layer of an
HDF5 or OME-Zarr file) is read here, in the worker's thread, never in the viewer's. The core
is a lazy module: its names (and torch) are imported on first use, in the worker's thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_domain_adapt import core

if TYPE_CHECKING:
    from napari_domain_adapt.core import SegmentationModel, TrainConfig, TrainControl


@dataclass
class InputRefused:
    """The core refused the job's input (an InputError); ``message`` says what and why."""

    message: str


def refusing(job: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Run the generator ``job(*args, **kwargs)``, ending with :class:`InputRefused` on bad input.

    Bad input is the user's to fix, not a crash: it ends the job as a yielded object, so
    napari does not also report it as a worker error with a traceback.
    """
    try:
        yield from job(*args, **kwargs)
    except core.InputError as error:
        yield InputRefused(str(error))


def reads_on_demand(data: Any, rgb: bool) -> bool:
    """Whether a run reads ``data`` a block at a time (training its patches, prediction its
    tiles): grey data that is read on demand; anything else is read whole into memory."""
    return core.is_lazy(data) and not rgb


def in_memory(data: Any, name: str) -> np.ndarray:
    """``data`` as a numpy array, read whole where it is read on demand; a read that fails
    (a corrupt chunk, a file gone) is bad input that names ``name``."""
    if isinstance(data, np.ndarray):
        return data
    try:
        return np.asarray(data)
    except Exception as error:  # any reader's exception: h5py, zarr, dask, tifffile
        raise core.InputError(
            f"cannot read the {name} ({type(error).__name__}: {error}); expected a readable image"
        ) from error


@dataclass
class ModelExported:
    """A bioimage.io package was written to ``path``."""

    path: Path


def export_job(
    model: SegmentationModel, image: np.ndarray, path: Path, details: dict[str, Any]
) -> Iterator[ModelExported]:
    """Write ``model`` as a bioimage.io package, its test data cut from ``image``;
    ``details`` are :func:`~.core.bioimageio.export_bioimageio`'s keyword arguments."""

    pixels = in_memory(image, "image")
    yield ModelExported(core.export_bioimageio(model, pixels, path, **details))


def predict_job(
    model: SegmentationModel, data: Any, rgb: bool, store: Path | None, **options: Any
) -> Iterator[Any]:
    """:func:`~napari_domain_adapt.core.predict` of a layer's ``data``: out of core into the
    zarr ``store`` where given (a grey volume read on demand), else read into memory first;
    ``options`` are the core's (``name``, ``amp``, ``pixel_size``)."""
    if store is not None:
        yield from core.predict(model, data, store=store, **options)
    else:
        image = in_memory(data, options.get("name", "image"))
        yield from core.predict(model, image, rgb=rgb, **options)


@dataclass
class TrainInputs:
    """The data of a run, taken from layers in the main thread and read in the worker's:
    numpy arrays, or arrays read on demand (dask, zarr, HDF5)."""

    source_image: Any
    source_labels: Any
    target_image: Any  # a grey one read on demand stays so: patches and tiles are read
    target_labels: Any = None
    target_rgb: bool = False
    target_label_kind: str = "dense"
    source_pixel_size: Any = None  # a core.PixelSize from the layer's scale and units
    target_pixel_size: Any = None


def train_job(
    config: TrainConfig,
    inputs: TrainInputs,
    control: TrainControl,
    store: Path | None = None,
    initial: SegmentationModel | None = None,
    baseline: SegmentationModel | None = None,
    keep_better: bool = False,
) -> Iterator[Any]:
    """The run of :func:`~napari_domain_adapt.core.train_and_predict` on the layers' arrays:
    its training events, the guard's verdict against ``baseline`` where given (keeping the
    better with ``keep_better``), then the prediction of the whole target (out of core into
    the zarr ``store`` for a lazy target); from the model ``initial`` where given."""
    source = core.Domain(
        in_memory(inputs.source_image, "source image"),
        in_memory(inputs.source_labels, "source labels"),
        name="source",
        pixel_size=inputs.source_pixel_size,
    )
    target = prediction = None
    if inputs.target_image is not None:
        image, rgb = inputs.target_image, inputs.target_rgb
        if not reads_on_demand(image, rgb):
            image = in_memory(image, "target image")
        labels = inputs.target_labels
        target = core.Domain(
            image,
            None if labels is None else in_memory(labels, "target labels"),
            name="target",
            label_kind=inputs.target_label_kind,
            pixel_size=inputs.target_pixel_size,
        )
        prediction = core.TargetPrediction(image, rgb, "target", store)
    return core.train_and_predict(
        config,
        source,
        target,
        control=control,
        initial=initial,
        prediction=prediction,
        baseline=baseline,
        keep_better=keep_better and baseline is not None,
    )
