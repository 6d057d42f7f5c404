"""The one pipeline of a run, which the CLI and the widget both call.

:func:`train_and_predict` trains (yielding the training's events), judges the model
trained against a baseline where one is given (the guard), and then, where asked, predicts
the target with the model kept. :func:`predict` predicts any image slice by
slice, in memory or out of core into an OME-Zarr store, yielding its progress so that a
caller can show it and stop between slices. :func:`judge` is the guard's verdict between a
source-only and an adapted model. :func:`open_source` and :func:`open_target` make the
domains from the paths a user gives (a dataset directory, an image stack, a zarr
or HDF5 volume). Each caller only turns its input (arguments, layers) into these calls,
and their events into its output (a progress bar and files, layers).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data import Domain, as_image_stack, is_lazy
from .errors import InputError
from .guard import SOURCE_ONLY, GuardVerdict, Predictions, guard
from .hdf5 import is_hdf5, split_hdf5_path
from .io import is_dataset, load_dataset, read_volume
from .metrics import check_threshold
from .pixel_size import PixelSize
from .training import TrainFinished, train
from .volume_prediction import predicting_volume
from .volumes import is_zarr

if TYPE_CHECKING:
    from .checkpoints import SegmentationModel
    from .config import TrainConfig
    from .resume import StateFile
    from .training import TrainControl, TrainEvent


@dataclass
class PredictionStarted:
    """Prediction begins: ``total`` slices to go."""

    total: int


@dataclass
class SlicePredicted:
    """``done`` of ``total`` slices are predicted."""

    done: int
    total: int


@dataclass
class PredictionDone:
    """The result, shaped like the image without colour: float32 probabilities, or with a
    threshold a 0/255 uint8 mask; a dask array over the store when written to one."""

    probabilities: Any
    target: str


PredictionEvent = PredictionStarted | SlicePredicted | PredictionDone


@dataclass
class Judged:
    """The guard's verdict between a run's baseline and the model it trained, after
    :class:`~.training.TrainFinished` (a stopped run's too), and the model kept.

    ``verdict`` is None where the guard could not judge (a run without a labelled source,
    slices of the target that cannot be read); ``reason`` then says why, in one line.
    """

    verdict: GuardVerdict | None
    model: SegmentationModel
    """The model kept: the baseline where the run keeps the better and the guard prefers
    it, else the model trained. The target is predicted with this one."""
    kept: str
    """``"baseline"`` or ``"adapted"`` (the model trained)."""
    reason: str
    """One line for the user: the verdict's reason, or why there is none."""


#: :attr:`Judged.kept`'s values.
KEPT_BASELINE, KEPT_ADAPTED = "baseline", "adapted"


@dataclass(frozen=True)
class TargetPrediction:
    """What :func:`train_and_predict` predicts with the model it trained: the target as
    the user has it."""

    image: Any
    """numpy ``(H, W[, C])`` or ``(N, H, W[, C])``, or a lazy grey volume."""
    rgb: bool | None = None
    """Whether the last axis is colour (None: a last axis of 3 or 4 is)."""
    name: str = "target"
    store: Path | None = None
    """The new ``.zarr`` store a lazy image is predicted into (out of core)."""


def train_and_predict(
    config: TrainConfig,
    source: Domain | None,
    target: Domain | None = None,
    *,
    control: TrainControl | None = None,
    state: StateFile | None = None,
    initial: SegmentationModel | None = None,
    prediction: TargetPrediction | None = None,
    baseline: SegmentationModel | None = None,
    held_source: Domain | None = None,
    keep_better: bool = False,
) -> Iterator[TrainEvent | TrainFinished | Judged | PredictionEvent]:
    """Train on ``source`` and ``target`` (see :func:`~.training.train`), judge the model
    trained against ``baseline`` where given, then predict ``prediction`` with the model
    kept.

    Yields the training's events, one :class:`~.training.TrainFinished`, one
    :class:`Judged` where a ``baseline`` is given, then :func:`predict`'s events. The
    inputs are validated before the first event: the generator is returned only once they
    are known to be good.

    The guard (:func:`judge`) compares ``baseline`` (a source-only model, or the model a
    run started from) with the model trained on the labelled ``held_source`` slices (best
    held back from training; the training ``source`` where None) and on the target's
    images, never its labels. ``keep_better``: keep (and predict with) the baseline where
    the guard prefers it.
    """
    if keep_better and baseline is None:
        raise InputError("keep_better keeps the better of two models: give a baseline too")
    events = train(config, source, target, control, initial, state)
    pixel_size = None if target is None else target.pixel_size
    if baseline is not None:
        held = source if held_source is None else held_source
        events = _then_judge(events, baseline, held, target, keep_better)
    return _then_predict(events, prediction, config.amp, pixel_size)


def _then_judge(
    events: Iterator[Any],
    baseline: SegmentationModel,
    held: Domain | None,
    target: Domain | None,
    keep_better: bool,
) -> Iterator[Any]:
    """The training's events, then the guard's :class:`Judged` after its TrainFinished."""
    for event in events:
        yield event
        if isinstance(event, TrainFinished):
            yield _judged(baseline, event.model, held, target, keep_better)


def _judged(
    baseline: SegmentationModel,
    adapted: SegmentationModel,
    held: Domain | None,
    target: Domain | None,
    keep_better: bool,
) -> Judged:
    why_not = _why_not_judged(held, target)
    if why_not is None:
        if baseline.device != adapted.device:  # compare (and keep) on the run's device
            baseline = dataclasses.replace(
                baseline, network=copy.deepcopy(baseline.network).to(adapted.device)
            )
        try:
            verdict = judge(baseline, adapted, held, _unlabelled(target))
        except ValueError as error:  # e.g. no pixel inside the masks: the model stays
            why_not = str(error)
    if why_not is not None:
        return Judged(None, adapted, KEPT_ADAPTED, f"not judged: {why_not}")
    if keep_better and verdict.prefer == SOURCE_ONLY:
        return Judged(verdict, baseline, KEPT_BASELINE, verdict.reason)
    return Judged(verdict, adapted, KEPT_ADAPTED, verdict.reason)


def _why_not_judged(held: Domain | None, target: Domain | None) -> str | None:
    """Why the guard cannot compare two models on these inputs (None: it can)."""
    if held is None or held.labels is None:
        return "the guard compares the models on labelled source slices, and the run has none"
    if target is None:
        return "the guard compares the models on the target, and the run has none"
    return None


def _unlabelled(target: Domain) -> Domain:
    """``target`` without its labels (a shallow copy): the guard never sees one."""
    bare = copy.copy(target)
    bare.labels = bare.annotated = None
    return bare


def _then_predict(
    events: Iterator[Any],
    prediction: TargetPrediction | None,
    amp: bool,
    pixel_size: PixelSize | None,
) -> Iterator[Any]:
    kept = None
    for event in events:
        yield event
        if isinstance(event, TrainFinished | Judged):
            kept = event.model
    if kept is None or prediction is None:
        return
    yield from predict(
        kept,
        prediction.image,
        rgb=prediction.rgb,
        name=prediction.name,
        store=prediction.store,
        amp=amp,
        pixel_size=pixel_size,
    )


def predict(
    model: SegmentationModel,
    image: Any,
    *,
    rgb: bool | None = None,
    name: str = "image",
    store: str | Path | None = None,
    threshold: float | None = None,
    amp: bool = False,
    tile_size: int | None = None,
    tile_overlap: int = 32,
    batch_size: int = 4,
    pixel_size: PixelSize | None = None,
    overwrite: bool = False,
    **blocks: Any,
) -> Iterator[PredictionEvent]:
    """Predict ``image`` slice by slice, yielding progress after each slice.

    ``pixel_size``: the image's, where known: an image at another scale than the model's
    working pixel size is predicted resampled to it (see
    :meth:`~.checkpoints.SegmentationModel.zoom_for`), and the result lies on the
    image's grid.

    In memory (``store`` None): the whole stack is validated first, then every slice is
    predicted (a blank slice of a stack with contrast too), in tiles (see
    :func:`~.inference.predict_tiled`). Into ``store`` (a new ``.zarr`` path): out of
    core, block by block, as an OME-Zarr image at ``pixel_size``, written atomically;
    ``image`` may then be a path, or a lazy or numpy grey volume, and ``blocks`` are
    :func:`~.volume_prediction.predicting_volume`'s ``chunk``, ``overlap`` and
    ``num_workers``.
    """
    if threshold is not None:
        check_threshold(threshold, "threshold")
    tiling = {"tile_size": tile_size, "batch_size": batch_size, "amp": amp}
    if store is not None:
        return _steps(
            predicting_volume(
                model,
                image,
                Path(store),
                threshold=threshold,
                tile_overlap=tile_overlap,
                pixel_size=pixel_size,
                overwrite=overwrite,
                z_batch=1,  # a caller can stop after any slice
                **tiling,
                **blocks,
            ),
            name,
        )
    if is_lazy(image):
        raise InputError(
            f"{name} is read on demand; it is predicted out of core into a zarr store: "
            "give a store to write it to"
        )
    tiling.update(overlap=tile_overlap, pixel_size=pixel_size)
    return _predict_in_memory(model, image, rgb, name, threshold, **tiling)


def _predict_in_memory(
    model: SegmentationModel,
    image: Any,
    rgb: bool | None,
    name: str,
    threshold: float | None,
    **tiling: Any,
) -> Iterator[PredictionEvent]:
    stack = as_image_stack(image, name=name, rgb=rgb)
    single = np.ndim(image) == stack.ndim - 1
    yield PredictionStarted(len(stack))
    result = np.zeros(stack.shape[:3], np.float32 if threshold is None else np.uint8)
    for index in range(len(stack)):
        probabilities = model.predict(stack[index], allow_constant=True, **tiling)
        result[index] = probabilities if threshold is None else _mask(probabilities, threshold)
        yield SlicePredicted(index + 1, len(stack))
    yield PredictionDone(result[0] if single else result, name)


def _mask(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    return (probabilities >= threshold).astype(np.uint8) * np.uint8(255)


def _steps(steps: Generator[tuple[int, int], None, Any], name: str) -> Iterator[PredictionEvent]:
    """:func:`predicting_volume`'s progress and result as prediction events."""
    import dask.array as da

    while True:
        try:
            done, total = next(steps)
        except StopIteration as finished:
            yield PredictionDone(da.from_zarr(finished.value), name)
            return
        yield PredictionStarted(total) if done == 0 else SlicePredicted(done, total)


def open_source(
    path: str | Path,
    labels: str | Path | None = None,
    pixel_size: PixelSize | None = None,
    masks: str | Path | None = None,
) -> Domain:
    """The labelled source: a dataset directory's train split, or images and ``labels``
    (and ``masks``, the pixels whose labels count: a field of view, or the valid pixels of
    membranes made from instance labels)."""
    if not split_hdf5_path(path)[0].exists():
        raise InputError(f"source {path} does not exist; expected a dataset directory or images")
    if is_dataset(path):
        if masks is not None:
            raise InputError(
                f"source {path} is a dataset directory, which brings its masks in "
                "train/masks/; expected masks only beside an image source and its labels"
            )
        source = load_dataset(path, "train", labels=True, name="source")
        source.pixel_size = pixel_size
        return source
    if not labels:
        raise InputError(f"source {path} is an image, not a dataset directory; give its labels")
    return Domain(
        read_volume(path),
        read_volume(labels),
        None if masks is None else read_volume(masks),
        name="source",
        pixel_size=pixel_size,
    )


def open_target(
    path: str | Path,
    labels: str | Path | None = None,
    *,
    label_kind: str = "dense",
    label_slices: list[int] | None = None,
    pixel_size: PixelSize | None = None,
) -> tuple[Domain, Domain | None]:
    """The target to adapt to, and a labelled test split to score on (a dataset's, if any).

    A zarr volume or an HDF5 dataset is read patch by patch, on demand (its ``labels``, if
    any, in memory); a TIFF is read into memory. A dataset directory gives its train
    images, with the labels of ``label_slices`` only (none without them).
    """
    if not is_dataset(path):
        images = path if is_zarr(path) or is_hdf5(path) else read_volume(path)
        given = read_volume(labels) if labels else None
        target = Domain(images, given, name="target", label_kind=label_kind, pixel_size=pixel_size)
        return target, None
    root = Path(path)
    target = load_dataset(root, "train", labels=False, name="target")
    target.pixel_size = pixel_size
    if label_slices:
        if not all(0 <= i < len(target) for i in label_slices):
            raise InputError(
                f"label slices {','.join(map(str, label_slices))} are out of range; the "
                f"target train split has slices 0-{len(target) - 1}"
            )
        full = load_dataset(root, "train", labels=True).labels
        chosen = np.zeros_like(full)
        chosen[label_slices] = full[label_slices]
        target = Domain(target.images, chosen, target.masks, name="target", pixel_size=pixel_size)
    test = None
    if (root / "test" / "labels").is_dir():
        test = load_dataset(root, "test", labels=True, name="target test")
        test.pixel_size = pixel_size  # the dataset's: its splits share one scale
    return target, test


#: Target slices the guard predicts at most (evenly spaced): enough for its estimates,
#: without predicting a whole volume twice.
GUARD_SLICES = 8


def judge(
    baseline: SegmentationModel, adapted: SegmentationModel, source: Domain, target: Domain
) -> GuardVerdict:
    """The guard's verdict between a source-only ``baseline`` and an ``adapted`` model.

    Both predict the labelled ``source`` slices (best held back from training) and up to
    :data:`GUARD_SLICES` slices of the ``target`` (read from it where it is read on
    demand); the verdict (see :mod:`~.guard`) reads the source labels and the target
    images only, never a target label.
    """
    if source.labels is None:
        raise InputError("the guard needs labelled source slices; the source has no labels")
    chosen = np.unique(np.linspace(0, len(target) - 1, min(len(target), GUARD_SLICES)).round())
    images = target.read_slices(chosen)  # read from a volume read on demand
    masks = None if target.masks is None else target.masks[chosen.astype(int)]

    def predictions(model: SegmentationModel) -> Predictions:
        return Predictions(
            model.predict(source.images, source.masks, pixel_size=source.pixel_size),
            model.predict(images, masks, pixel_size=target.pixel_size),
        )

    return guard(source.labels, predictions(baseline), predictions(adapted), source.masks, masks)


def warm_up() -> None:
    """Do ahead of a run what its start would otherwise do while a viewer draws.

    Calling it imports torch and every module of a run (this one imports them), and takes
    one optimiser step, which imports ``torch._dynamo`` (~1 s). A GUI calls it in a thread
    when it opens: imports hold the interpreter, and in a run's first second they stalled
    the viewer for ~0.3 s (measured with only the optimiser step warmed up).
    """
    parameter = torch.nn.Parameter(torch.zeros(1))
    parameter.grad = torch.zeros(1)
    torch.optim.Adam([parameter]).step()
