"""The generators that the widget runs in napari's ``thread_worker``: no Qt, no layers.

They take numpy arrays and yield what the core's pipeline yields; the widget turns each
yielded object into layer updates in the main thread. The core is a
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
        inputs.source_image,
        inputs.source_labels,
        name="source",
        pixel_size=inputs.source_pixel_size,
    )
    target = prediction = None
    if inputs.target_image is not None:
        target = core.Domain(
            inputs.target_image,
            inputs.target_labels,
            name="target",
            label_kind=inputs.target_label_kind,
            pixel_size=inputs.target_pixel_size,
        )
        image, rgb = inputs.target_image, inputs.target_rgb
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
