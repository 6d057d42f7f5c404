"""The generators that the widget runs in napari's ``thread_worker``: no Qt, no layers.

They take numpy arrays, call the core, and yield what it yields plus prediction progress;
the widget turns each yielded object into layer updates in the main thread. The core is a
lazy module: its names (and torch) are imported on first use, in the worker's thread.
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
class PredictionStarted:
    """Whole-stack prediction begins: ``total`` slices to go."""

    total: int


@dataclass
class SlicePredicted:
    """One more slice of the stack is predicted (``done`` of ``total``)."""

    done: int
    total: int


@dataclass
class PredictionDone:
    """The probabilities of the whole stack, shaped like the image without colour."""

    probabilities: np.ndarray
    target: str


@dataclass
class InputRefused:
    """The core refused the job's input (an InputError); ``message`` says what and why."""

    message: str


def refusing(job: Any, *args: Any) -> Iterator[Any]:
    """Run the generator ``job(*args)``, ending with :class:`InputRefused` on bad input.

    Bad input is the user's to fix, not a crash: it ends the job as a yielded object, so
    napari does not also report it as a worker error with a traceback.
    """
    try:
        yield from job(*args)
    except core.InputError as error:
        yield InputRefused(str(error))


@dataclass
class ModelExported:
    """A bioimage.io package was written to ``path``."""

    path: Path


def export_job(
    model: SegmentationModel, image: np.ndarray, path: Path, details: dict[str, Any]
) -> Iterator[ModelExported]:
    """Write ``model`` as a bioimage.io package, its test data cut from ``image``;
    ``details`` are :func:`~.core.bioimageio.export_bioimageio`'s keyword arguments."""

    yield ModelExported(core.export_bioimageio(model, image, path, **details))


@dataclass
class TrainInputs:
    """The arrays of a run, taken from layers in the main thread."""

    source_image: np.ndarray
    source_labels: np.ndarray
    target_image: Any  # numpy, or a dask or zarr array read on demand (grey only)
    target_labels: np.ndarray | None = None
    target_rgb: bool = False
    target_label_kind: str = "dense"
    source_pixel_size: Any = None  # a core.PixelSize from the layer's scale and units
    target_pixel_size: Any = None


def as_slices(image: np.ndarray, rgb: bool) -> tuple[np.ndarray, bool]:
    """A stack of slices and whether ``image`` was a single slice."""
    single = image.ndim == (3 if rgb else 2)
    return (image[np.newaxis] if single else image), single


def predict_job(
    model: SegmentationModel, image: np.ndarray, rgb: bool, target: str, amp: bool = False
) -> Iterator[PredictionStarted | SlicePredicted | PredictionDone]:
    """Predict ``image`` slice by slice, yielding after each so a quit is honoured at once.

    The whole stack is validated first; a blank slice in a stack with contrast is predicted.
    ``amp``: in bfloat16 (see :func:`~.core.inference.predict_tiled`).
    """
    stack, single = as_slices(np.asarray(image), rgb)
    core.as_image_stack(stack, name=target, rgb=rgb)
    yield PredictionStarted(len(stack))
    result = np.zeros(stack.shape[:3], np.float32)
    for index in range(len(stack)):
        result[index] = model.predict(stack[index], allow_constant=True, amp=amp)
        yield SlicePredicted(index + 1, len(stack))
    yield PredictionDone(result[0] if single else result, target)


def predict_volume_job(
    model: SegmentationModel, volume: Any, target: str, store: Path, amp: bool = False
) -> Iterator[PredictionStarted | SlicePredicted | PredictionDone]:
    """Predict a lazy grey ``(Z, Y, X)`` or ``(Y, X)`` layer into a new zarr ``store``.

    Out of core, slice by slice (:func:`~napari_domain_adapt.core.predict_volume` on each): memory
    holds one slice's blocks, not the volume, and a quit is honoured after each slice. The
    result is a lazy dask array over the store.
    """
    import dask.array as da
    import zarr

    flat = volume.ndim == 2
    depth = 1 if flat else volume.shape[0]
    yield PredictionStarted(depth)
    chunks = tuple(min(side, 512) for side in volume.shape[-2:])
    written = zarr.open_array(
        str(store),
        mode="w-",
        shape=volume.shape,
        dtype="float32",
        chunks=chunks if flat else (1, *chunks),
    )
    for index in range(depth):
        plane = core.predict_volume(model, volume if flat else volume[index], amp=amp)
        if flat:
            da.store(plane, written)
        else:
            region = (slice(index, index + 1), slice(None), slice(None))
            da.store(plane[np.newaxis], written, regions=region)
        yield SlicePredicted(index + 1, depth)
    yield PredictionDone(da.from_zarr(written), target)


def train_job(
    config: TrainConfig, inputs: TrainInputs, control: TrainControl, store: Path | None = None
) -> Iterator[Any]:
    """Validate the inputs, train, then predict the whole target with the model trained.

    Yields the core's :class:`TrainEvent` objects, one :class:`TrainFinished`, then
    :func:`predict_job`'s objects when there is a target; a lazy target (read on demand)
    is trained on patch by patch and predicted out of core into the zarr ``store``.
    """
    source = core.Domain(
        inputs.source_image,
        inputs.source_labels,
        name="source",
        pixel_size=inputs.source_pixel_size,
    )
    target = None
    if inputs.target_image is not None:
        # Only the modes that use target labels get them (others need not validate them).
        uses_labels = config.mode == "semi-supervised" or config.mean_teacher
        labels = inputs.target_labels if uses_labels else None
        target = core.Domain(
            inputs.target_image,
            labels,
            name="target",
            label_kind=inputs.target_label_kind,
            pixel_size=inputs.target_pixel_size,
        )
    finished = None
    for event in core.train(config, source, target, control):
        yield event
        if isinstance(event, core.TrainFinished):
            finished = event
    if finished is None or inputs.target_image is None:
        return
    if core.is_lazy(inputs.target_image):
        yield from predict_volume_job(
            finished.model, inputs.target_image, "target", store, config.amp
        )
    else:
        image, rgb = inputs.target_image, inputs.target_rgb
        yield from predict_job(finished.model, image, rgb, "target", config.amp)
