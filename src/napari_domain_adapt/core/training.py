"""The training generator: one loop for every mode, yielding events as it goes.

``train(config, source, target)`` validates its inputs at once (raising
:class:`~napari_domain_adapt.core.errors.InputError`) and returns a generator of
:class:`TrainEvent` (one per step) that ends with one :class:`TrainFinished` holding the
model. The modes differ only in which losses are on:

- ``source-only``: supervised loss on source patches (the baseline);
- ``adversarial``: plus ``beta *`` the domain classifier's loss on the segmentor's output
  probability maps of source and target patches, joined through gradient reversal
  (Javanmardi & Tasdizen, ISBI 2018);
- ``semi-supervised``: adversarial, with patches of the labelled target slices in the
  supervised loss;
- ``mean-teacher``: self-training on the target; an exponential moving average of the
  segmentor (the teacher) labels a weakly augmented target patch, and the segmentor learns
  those labels, where the teacher is confident, on a strongly augmented view of it;
- ``adversarial+mean-teacher``: both.

Labelled target slices, where given, join the supervised loss in ``semi-supervised`` and
the mean-teacher modes.

Input-level alignment (``config.alignment``): with ``histogram_matching`` each target
image is matched to the source's intensity quantiles after preprocessing, and the model
keeps them to match every image it predicts; with ``fda_beta`` (adaptive modes) each
source patch takes the low-frequency amplitude of the target patch drawn beside it; with
``appearance`` source patches get random gamma, contrast, brightness, blur and noise from
a generator of the run's own (seeded, saved with the run's state).

Stopping is cooperative: :meth:`TrainControl.stop` ends the loop after the current step and
the generator still ends with :class:`TrainFinished` and the model so far.

This module holds the events, the stop token, the loop and the run's state for resuming;
the run is prepared (and bad input refused) in :mod:`.training_setup`, and each step's
losses are computed in :mod:`.training_step`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .checkpoints import SegmentationModel
from .config import TrainConfig
from .data import Domain
from .device import describe_device
from .errors import InputError
from .inference import predict_tiled
from .models import estimate_batch_statistics
from .resampling import restore_plane
from .resume import (
    StateFile,
    numpy_rng_state,
    read_state,
    set_numpy_rng_state,
    write_state,
)
from .selection import CRITERIA, better, label_free_criteria
from .training_setup import TrainingRun, prepare
from .training_step import as_tensor, train_step

#: Target batches that :func:`estimate_batch_statistics` sees at the end of an adaptive run.
TARGET_STATISTICS_BATCHES = 25
#: The largest share of a run's time that its live previews may take. A preview predicts a
#: whole target slice: seconds for a large one on a CPU, which every few seconds of
#: training (``preview_interval``) would otherwise take most of the run.
PREVIEW_SHARE = 0.2


class TrainControl:
    """Cooperative stop and the target slice to preview; safe to set from another thread."""

    def __init__(self, preview_index: int = 0) -> None:
        self._stop = threading.Event()
        self.preview_index = preview_index

    def stop(self) -> None:
        """Ask the loop to end after the current step."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()


@dataclass
class TrainEvent:
    """What one training step did; ``preview`` is a target probability map, now and then."""

    step: int
    total_steps: int
    supervised_loss: float
    domain_loss: float | None
    domain_accuracy: float | None
    target_entropy: float | None
    grl_lambda: float
    elapsed: float
    consistency_loss: float | None = None
    confident_fraction: float | None = None
    consistency: float | None = None  # label-free criteria, at the steps they are checked
    entropy: float | None = None
    preview: np.ndarray | None = None
    preview_index: int | None = None


@dataclass
class TrainFinished:
    """The end of a run: the model so far, and whether it was stopped early."""

    model: SegmentationModel
    steps: int
    stopped: bool
    elapsed: float
    device: str
    history: list[dict[str, float | None]] = field(default_factory=list)


def train(
    config: TrainConfig,
    source: Domain | None,
    target: Domain | None = None,
    control: TrainControl | None = None,
    initial: SegmentationModel | None = None,
    state: StateFile | None = None,
) -> Iterator[TrainEvent | TrainFinished]:
    """Validate the inputs now, then return the generator that trains.

    ``source`` needs labels. ``target`` is needed by every mode but ``source-only`` (which
    uses it for previews); its labels are used only in the ``semi-supervised`` and
    mean-teacher modes, and only on slices that carry any annotation: the other modes refuse
    a target with labelled slices (the one home of this rule). ``initial`` starts
    from a trained segmentor (copied, never changed) and its preprocessing.

    Source-free (``source`` None): the mean teacher adapts ``initial`` to the target alone,
    teacher and student starting from it, at its pixel size, learning from confident
    pseudo-labels at once (no warm-up: the model already knows the task) and from labelled
    target slices where given.

    With ``state``, the run's state is written to ``state.path`` every ``state.every``
    steps, at a stop and at the last step; a run that finds the file continues from it
    (the caller deletes it once the model is safe).
    """
    run = prepare(config, source, target, initial)
    history: list[dict[str, float | None]] = []
    if state is not None and state.path.exists():
        history = _restore(run, read_state(state.path, run.config, run.inputs))
    return _loop(run, control or TrainControl(), history, state)


def _networks(run: TrainingRun) -> dict[str, torch.nn.Module]:
    named = {"segmentor": run.segmentor, "teacher": run.teacher, "classifier": run.classifier}
    return {name: network for name, network in named.items() if network is not None}


def _capture(run: TrainingRun, history: list[dict[str, float | None]], start: float) -> dict:
    """Everything a continued run needs to go on exactly as this one would have."""
    return {
        "step": len(history),
        "elapsed": time.monotonic() - start,
        "history": history,
        "networks": {name: net.state_dict() for name, net in _networks(run).items()},
        "optimizer": run.optimizer.state_dict(),
        "numpy_rng": numpy_rng_state(run.rng),
        "torch_rng": torch.get_rng_state(),
        "best": run.best,
        **({} if run.appearance is None else {"appearance_rng": run.appearance.get_state()}),
    }


def _restore(run: TrainingRun, saved: dict) -> list[dict[str, float | None]]:
    """Load a captured state into a freshly prepared run; returns its history."""
    for name, network in _networks(run).items():
        network.load_state_dict(saved["networks"][name])
    run.optimizer.load_state_dict(saved["optimizer"])
    set_numpy_rng_state(run.rng, saved["numpy_rng"])
    torch.set_rng_state(saved["torch_rng"])
    if run.appearance is not None:
        run.appearance.set_state(saved["appearance_rng"])
    run.elapsed_before = float(saved.get("elapsed", 0.0))  # absent from early states
    run.best = saved.get("best")
    return list(saved["history"])


def _kept(run: TrainingRun) -> torch.nn.Module:
    """The network a run returns: the moving average where there is one."""
    return run.teacher if run.teacher is not None else run.segmentor


def _check(run: TrainingRun, step: int) -> dict[str, float]:
    """The label-free criteria of the model the run would return now; keeps the best."""
    network = copy.deepcopy(_kept(run))
    patches = run.check_patches
    size = run.config.batch_size
    batches = (
        as_tensor(patches[i : i + size, np.newaxis], run.device)
        for i in range(0, len(patches), size)
    )
    if run.config.target_statistics:
        estimate_batch_statistics(network, batches)
    values = label_free_criteria(lambda images: predict_tiled(network, images), patches)
    chosen = run.config.selection.by
    if chosen != "last" and better(chosen, values[chosen], run.best and run.best["value"]):
        weights = {k: v.detach().cpu().clone() for k, v in _kept(run).state_dict().items()}
        run.best = {"value": values[chosen], "step": step, "weights": weights}
    return values


def _preview_pause(interval: float, seconds: float) -> float:
    """Seconds of training before the next preview: ``interval``, or longer where one
    preview takes long (a large slice on a CPU), so that previews take at most
    :data:`PREVIEW_SHARE` of the run's time. An interval of 0 asks for every step."""
    if interval == 0:
        return 0.0
    return max(interval, seconds * (1 - PREVIEW_SHARE) / PREVIEW_SHARE)


def _preview(run: TrainingRun, control: TrainControl) -> tuple[np.ndarray, int]:
    index = int(np.clip(control.preview_index, 0, len(run.target_preview) - 1))
    preview = predict_tiled(_kept(run), run.target_preview[index])
    if run.target_masks is not None:
        preview[~run.target_masks[index]] = 0.0  # as the final prediction does
    if run.target_grid is not None:  # on the target's own grid, where it is shown
        preview = restore_plane(preview, run.target_grid)
    return preview, index


def _loop(
    run: TrainingRun,
    control: TrainControl,
    history: list[dict[str, float | None]] | None = None,
    state: StateFile | None = None,
) -> Iterator[TrainEvent | TrainFinished]:
    config = run.config
    # Seconds of training before a resume count too: ``elapsed`` is the run's whole time.
    start = time.monotonic() - run.elapsed_before
    next_preview = -math.inf  # when the next preview is due (monotonic seconds)
    history = [] if history is None else history
    done = len(history)
    for step in range(done + 1, config.steps + 1):
        if control.stopped:
            break
        values = _step_in_memory(run, step)
        checked = run.check_patches is not None and (
            step % config.selection.every == 0 or step == config.steps
        )
        values.update(_check(run, step) if checked else dict.fromkeys(CRITERIA))
        history.append({"step": step, **values})
        event = TrainEvent(step, config.steps, elapsed=time.monotonic() - start, **values)
        now = time.monotonic()
        due = config.preview_interval is not None and (
            now >= next_preview or step in (1, config.steps)
        )
        if run.target_preview is not None and due and not control.stopped:
            event.preview, event.preview_index = _preview(run, control)
            ended = time.monotonic()
            next_preview = ended + _preview_pause(config.preview_interval, ended - now)
        done = step
        if state is not None and (step % state.every == 0 or step == config.steps):
            write_state(state.path, _capture(run, history, start), config, run.inputs)
        yield event
    if state is not None and control.stopped and done % state.every:
        write_state(state.path, _capture(run, history, start), config, run.inputs)
    # The average of the segmentor over time (the teacher) is the steadier model to keep,
    # at the step a label-free criterion chose where one is asked for.
    network = _kept(run)
    selected = done
    if run.best is not None and done:
        network.load_state_dict(run.best["weights"])
        selected = run.best["step"]
    if run.target is not None and config.target_statistics:
        batches = (
            as_tensor(run.target.sample(run.config.batch_size, jitter=False).images, run.device)
            for _ in range(TARGET_STATISTICS_BATCHES)
        )
        estimate_batch_statistics(network, batches)
    # The returned model is laid out as any other: checkpoints and exports see no difference.
    network.to(memory_format=torch.contiguous_format).eval().requires_grad_(True)
    elapsed = time.monotonic() - start
    model = SegmentationModel(
        network,
        config.preprocessing,
        run.config,  # the batch size it trained with, where the device's memory halved it
        {
            "steps": done,
            "mode": config.mode,
            "stopped": control.stopped,
            "selected_step": selected,
            "select_by": config.selection.by,
            **run.pixel_sizes,
            "runs": [*run.runs_before, _this_run(run, done, control.stopped)],
        },
        run.reference,
    )
    yield TrainFinished(
        model, done, control.stopped, elapsed, describe_device(run.device), history
    )


def _step_in_memory(run: TrainingRun, step: int) -> dict[str, float | None]:
    """:func:`train_step`; where the device runs out of memory, the step again with half the
    batch, which the rest of the run (and the model's configuration) keeps, with a warning;
    out of memory with one patch is an InputError that says what to change."""
    while True:
        size = run.config.batch_size
        try:
            return train_step(run, step)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                spec = run.config.model
                raise InputError(
                    f"out of memory on {describe_device(run.device)} training on one "
                    f"{run.config.patch_size}x{run.config.patch_size} patch at a time (U-Net "
                    f"depth {spec.depth}, width {spec.width}); expected it to fit: choose a "
                    "smaller patch size or U-Net, or train on the CPU"
                ) from None
        # Here, outside the handler, the error no longer holds the failed step's tensors.
        run.optimizer.zero_grad(set_to_none=True)
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
        run.config = dataclasses.replace(run.config, batch_size=size // 2)
        warnings.warn(
            f"out of memory on {describe_device(run.device)} at step {step} with batches of "
            f"{size} patches; going on with {size // 2} (a run with smaller batches learns "
            "differently)",
            RuntimeWarning,
            stacklevel=2,
        )


def _this_run(run: TrainingRun, steps: int, stopped: bool) -> dict[str, Any]:
    """What a model keeps of each run it went through (its ``runs`` history): the mode,
    the steps, whether it saw a source, how many labelled target slices, when."""
    labelled = run.target_labelled
    return {
        "mode": run.config.mode,
        "steps": steps,
        "stopped": stopped,
        "source": run.source is not None,
        "target_labelled_slices": 0 if labelled is None else len(labelled.slices),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def fit(
    config: TrainConfig,
    source: Domain | None,
    target: Domain | None = None,
    control: TrainControl | None = None,
    initial: SegmentationModel | None = None,
    on_event: Callable[[TrainEvent], None] | None = None,
    state: StateFile | None = None,
) -> TrainFinished:
    """Run :func:`train` to the end (or to a stop) and return its :class:`TrainFinished`."""
    for event in train(config, source, target, control, initial, state):
        if isinstance(event, TrainFinished):
            return event
        if on_event is not None:
            on_event(event)
    raise AssertionError("the training generator ended without TrainFinished")
