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
import torch.nn.functional as F

from .alignment import (
    appearance_augmentation,
    fourier_domain_adaptation,
    intensity_reference,
    match_to_reference,
)
from .checkpoints import SegmentationModel
from .config import LABEL_MODES, Preprocessing, TeacherSpec, TrainConfig
from .data import Domain
from .device import describe_device, require_memory, resolve_device
from .errors import InputError
from .inference import predict_tiled
from .lazy import PreprocessedVolume, ResampledVolume
from .models import (
    DomainClassifier,
    UNet,
    activation_count,
    estimate_batch_statistics,
    grad_reverse,
)
from .patches import PatchBatch, PatchSampler, jitter_intensity
from .pixel_size import PixelSize
from .preprocessing import field_of_view_masks, preprocess
from .pseudo_labels import balanced_pseudo_labels
from .resampling import resampled, restore_plane, scale_factor
from .resume import (
    StateFile,
    fingerprint,
    numpy_rng_state,
    read_state,
    set_numpy_rng_state,
    write_state,
)
from .selection import CRITERIA, better, label_free_criteria

#: Target batches that :func:`estimate_batch_statistics` sees at the end of an adaptive run.
TARGET_STATISTICS_BATCHES = 25
#: Fixed target patches on which the label-free criteria are checked, and their seed offset.
CHECK_PATCHES = 32
CHECK_SEED = 7919
#: Seed offset of the appearance augmentation's own generator.
APPEARANCE_SEED = 104729


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


def adaptation_ramp(step: int, config: TrainConfig) -> float:
    """Weight of the adaptation losses at ``step`` (1-based), from 0 to 1.

    0 during the source-only warm-up, then the DANN ramp 2 / (1 + exp(-gamma p)) - 1 over
    the remaining steps (Ganin et al., 2016).
    """
    warmup = int(config.warmup_fraction * config.steps)
    if not config.needs_target or step <= warmup:
        return 0.0
    progress = (step - warmup) / max(config.steps - warmup, 1)
    return 2.0 / (1.0 + math.exp(-config.domain.lambda_gamma * progress)) - 1.0


def grl_lambda(step: int, config: TrainConfig) -> float:
    """Gradient-reversal coefficient at ``step``: ``lambda_max`` times the ramp."""
    return config.domain.lambda_max * adaptation_ramp(step, config) if config.adversarial else 0.0


def supervised_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, dice_weight: float
) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice, counting only pixels with non-zero weight."""
    total = weights.sum().clamp_min(1.0)
    bce = F.binary_cross_entropy_with_logits(logits, labels, weight=weights, reduction="sum")
    probabilities = torch.sigmoid(logits) * weights
    overlap = (probabilities * labels).sum()
    dice = 1.0 - (2.0 * overlap + 1.0) / (probabilities.sum() + (labels * weights).sum() + 1.0)
    return bce / total + dice_weight * dice


def mean_entropy(probabilities: torch.Tensor) -> float:
    """Mean binary entropy of probabilities, in bits (0 = certain, 1 = undecided)."""
    p = probabilities.detach().clamp(1e-6, 1 - 1e-6)
    entropy = -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
    return float(entropy.mean())


@torch.no_grad()
def update_teacher(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """Move the teacher's weights towards the student's: t = decay * t + (1 - decay) * s."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.lerp_(s, 1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def confident_pseudo_labels(
    probabilities: torch.Tensor, confidence: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard labels from teacher probabilities, and a weight of 1 where it is confident."""
    labels = (probabilities >= 0.5).float()
    weights = (torch.maximum(probabilities, 1 - probabilities) >= confidence).float()
    return labels, weights


def teacher_pseudo_labels(
    probabilities: torch.Tensor, spec: TeacherSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's pseudo-labels and weights by ``spec``'s rule: the fixed confidence, or
    class-balanced thresholds where ``spec.balance`` is set."""
    if spec.balance is None:
        return confident_pseudo_labels(probabilities, spec.confidence)
    return balanced_pseudo_labels(probabilities, spec.balance, ceiling=spec.confidence)


@dataclass
class _Run:
    config: TrainConfig
    device: torch.device
    segmentor: UNet
    teacher: UNet | None
    classifier: DomainClassifier | None
    optimizer: torch.optim.Optimizer
    source: PatchSampler | None  # None: a source-free run (a mean teacher on the target)
    target: PatchSampler | None
    target_labelled: PatchSampler | None
    target_preview: np.ndarray | None
    target_masks: np.ndarray | None  # the target's field of view, where it has one
    rng: np.random.Generator
    inputs: str
    check_patches: np.ndarray | None = None  # fixed target patches for the criteria
    best: dict | None = None  # the best check so far: value, step, weights
    elapsed_before: float = 0.0  # seconds trained before a resume
    pixel_sizes: dict[str, Any] = field(default_factory=dict)  # the model's metadata of them
    target_grid: tuple[int, int] | None = None  # the target's (Y, X) where it was resampled
    runs_before: list[dict[str, Any]] = field(default_factory=list)  # the initial model's
    reference: np.ndarray | None = None  # the source's intensity quantiles (histogram matching)
    appearance: torch.Generator | None = None  # the appearance augmentation's draws


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
    run = _prepare(config, source, target, initial)
    history: list[dict[str, float | None]] = []
    if state is not None and state.path.exists():
        history = _restore(run, read_state(state.path, run.config, run.inputs))
    return _loop(run, control or TrainControl(), history, state)


def _warn_if_one_class(source: Domain) -> None:
    """Warn when every counted source label is background, or every one is structure: the
    model then learns nothing of the other class (the run may still be meant, so no error)."""
    weights = source.loss_weights()
    counted = source.labels if weights is None else source.labels[weights > 0]
    if counted.size and counted.min() == counted.max():
        kind = "structure" if counted.max() else "background"
        warnings.warn(
            f"every labelled pixel of the {source.name} is {kind} ({counted.size} pixels); "
            "the model learns nothing of the other class: expected labels with both",
            stacklevel=4,
        )


def step_memory(config: TrainConfig) -> int:
    """Bytes one training step needs, estimated: the segmentor's activations (float32) for
    each batch of patches it sees in a step (source, and target in the modes that learn
    from it); the backward pass frees them as it makes their gradients. Measured on a CPU
    for 16 patches of 128 pixels and the default U-Net: 412 MiB of peak growth, estimated
    457 MiB."""
    batches = 2 if config.needs_target else 1
    values = activation_count(config.model, config.patch_size) * config.batch_size * batches
    return 4 * values


def _require_step_memory(config: TrainConfig, device: torch.device) -> None:
    """Refuse a batch that cannot fit, with the number, before the system kills the run."""
    require_memory(
        step_memory(config),
        f"a training step of batch size {config.batch_size} with {config.patch_size}-pixel "
        "patches",
        device,
    )


def _prepare(
    config: TrainConfig,
    source: Domain | None,
    target: Domain | None,
    initial: SegmentationModel | None,
) -> _Run:
    if source is None:
        _check_source_free(config, target, initial)
    elif source.labels is None:
        raise InputError("the source needs labels; expected a label stack beside its images")
    else:
        _warn_if_one_class(source)
    if config.needs_target and target is None:
        raise InputError(f"mode {config.mode!r} needs a target image; none was given")
    if initial is not None:
        config = dataclasses.replace(
            config, model=initial.spec, preprocessing=initial.preprocessing
        )
    labelled = np.array([], dtype=int) if target is None else target.labelled_slices()
    if labelled.size and config.mode not in LABEL_MODES:
        raise InputError(
            f"labelled target slices were given, but mode {config.mode} does not use them; "
            "choose the semi-supervised or a mean-teacher mode, or drop the target labels"
        )
    if config.mode == "semi-supervised":
        if target is None or target.labels is None:
            raise InputError("semi-supervised mode needs target labels on at least one slice")
        if labelled.size == 0:
            raise InputError(
                "semi-supervised mode needs at least one labelled target slice; "
                "the target labels are empty"
            )

    device = resolve_device(config.device)
    _require_step_memory(config, device)
    if config.amp and device.type not in ("cpu", "cuda"):
        raise InputError(f"amp runs on the CPU or a CUDA GPU; the device is {device.type}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    segmentor = copy.deepcopy(initial.network) if initial is not None else UNet(config.model)
    teacher = None
    if config.mean_teacher or config.average_weights:
        teacher = copy.deepcopy(segmentor).requires_grad_(False)
    classifier = None
    if config.adversarial:
        classifier = DomainClassifier(
            config.domain.width,
            spectral_norm=config.domain.spectral_norm,
            local=config.domain.local,
        )
    groups = [{"params": segmentor.parameters(), "lr": config.learning_rate}]
    if classifier is not None:
        groups.append({"params": classifier.parameters(), "lr": config.domain.learning_rate})
    optimizer = torch.optim.Adam(groups)

    pre = config.preprocessing
    size, augment = config.patch_size, config.augment
    target_grid = None  # the target's (Y, X), where it is resampled to the working grid
    # The working pixel size: the source's, or in a source-free run the model's.
    working = initial.pixel_size if source is None else source.pixel_size
    pixel_sizes = _pixel_sizes(working, target)  # as given
    factor = _working_factor(config, working, target)
    target_name = "target"
    if factor is not None:
        # A target in memory is resampled here; one read on demand, patch by patch, below.
        plane = target.images.shape[-2:] if target.lazy else target.images.shape[1:3]
        target_grid = (int(plane[0]), int(plane[1]))
        whose = "the model's" if source is None else "the source's"
        target_name = (
            f"target (resampled by {factor:.3g} to {whose} pixel size from "
            f"{target_grid[0]}x{target_grid[1]} pixels)"
        )
        if not target.lazy:
            target = resampled(target, factor)
    target = None if target is None else _with_field_of_view(target, pre)
    source_sampler, reference = None, None if initial is None else initial.intensity_reference
    if source is not None:
        source = _with_field_of_view(source, pre)
        source_images = preprocess(source.images, pre, source.masks)
        reference = _reference(config, source_images, source.masks)  # alignment
        source_sampler = PatchSampler(
            source_images,
            size,
            rng,
            source.labels,
            source.loss_weights(),
            augment=augment,
            name="source",
        )
    target_sampler = labelled_sampler = target_images = None
    if target is not None:
        if target.lazy:
            target_images = PreprocessedVolume(target.images, pre)
            if factor is not None:
                target_images = ResampledVolume(target_images, factor)
        else:
            target_images = preprocess(target.images, pre, target.masks)
        target_images = _matched(target_images, reference, target)  # alignment
        if config.needs_target:
            target_sampler = PatchSampler(
                target_images, size, rng, weights=None, augment=augment, name=target_name
            )
        if labelled.size:
            labelled_sampler = PatchSampler(
                target_images,
                size,
                rng,
                target.labels,
                target.loss_weights(),
                slices=labelled,
                augment=augment,
                name=f"labelled {target_name}",
            )
    if config.selection.by != "last" and target_images is None:
        raise InputError(f"select_by {config.selection.by!r} needs a target image to check on")
    check_patches = None
    if config.selection.every is not None and target_images is not None:
        # A generator of their own: the training's draws stay as they were without checks.
        checks = PatchSampler(
            target_images,
            size,
            np.random.default_rng(config.seed + CHECK_SEED),
            augment=False,
            name=target_name,
        )
        check_patches = checks.sample(CHECK_PATCHES, jitter=False).images[:, 0]
    # Channels-last weights on the CPU: every activation follows them, and oneDNN's
    # convolutions run 15 to 28 % faster that way (docs/performance.md, Training).
    layout = torch.channels_last if device.type == "cpu" else torch.preserve_format
    for network in (segmentor, teacher, classifier):
        if network is not None:
            network.to(device, memory_format=layout).train()
    return _Run(
        config,
        device,
        segmentor,
        teacher,
        classifier,
        optimizer,
        source_sampler,
        target_sampler,
        labelled_sampler,
        target_images,
        None if target is None or target.lazy else target.masks,
        rng,
        fingerprint(
            *((None,) * 3 if source is None else (source.images, source.labels, source.masks)),
            *_fingerprinted(target_images),  # a lazy target's view: read errors are clear
            None if target is None or not labelled.size else target.labels,
            None if initial is None else initial.network.head.weight.detach().cpu().numpy(),
        ),
        check_patches,
        pixel_sizes=pixel_sizes,
        target_grid=target_grid,
        runs_before=[] if initial is None else list(initial.metadata.get("runs", [])),
        reference=reference,
        appearance=_appearance_generator(config),
    )


def _fingerprinted(images: Any) -> tuple[Any, ...]:
    """What a run's fingerprint sees of its target: a lazy one resampled patch by patch is
    seen as given, with its zoom (not resampled whole only to be hashed)."""
    if isinstance(images, ResampledVolume):
        return images.volume, np.array([images.factor])
    return (images,)


def _check_source_free(
    config: TrainConfig, target: Domain | None, initial: SegmentationModel | None
) -> None:
    """A run without a source adapts a model to the target alone: it needs the model, the
    target, and a mean teacher (the adversarial modes compare with source predictions)."""
    if initial is None:
        raise InputError(
            "a run without a source starts from a trained model; give the source, or a model "
            "to start from"
        )
    if config.mode != "mean-teacher":
        raise InputError(
            f"a run without a source adapts by a mean teacher; mode {config.mode} needs the "
            "labelled source"
        )
    if target is None:
        raise InputError("a run without a source learns from the target; none was given")


def _working_factor(
    config: TrainConfig, working: PixelSize | None, target: Domain | None
) -> float | None:
    """The zoom that brings the target to the source's pixel size, where the run resamples
    (both sizes known and different, :attr:`~.config.AlignmentSpec.pixel_size` on)."""
    if target is None or not config.alignment.pixel_size:
        return None
    return scale_factor(working, target.pixel_size)


def _reference(
    config: TrainConfig, source_images: np.ndarray, masks: np.ndarray | None
) -> np.ndarray | None:
    """The source's intensity quantiles where the run matches histograms, else None."""
    if not config.alignment.histogram_matching:
        return None
    return intensity_reference(source_images, masks)


def _matched(images: Any, reference: np.ndarray | None, target: Domain) -> Any:
    """The preprocessed target matched to ``reference`` image by image, as the model will
    match every image it predicts; unchanged without a reference."""
    if reference is None:
        return images
    if target.lazy:
        raise InputError(
            f"histogram matching needs the {target.name} in memory, and it is read on demand; "
            "load it into memory (a smaller volume or a crop) or turn histogram matching off"
        )
    return match_to_reference(images, reference, target.masks)


def _appearance_generator(config: TrainConfig) -> torch.Generator | None:
    """The appearance augmentation's own generator (on the CPU, so runs repeat on any
    device); None where the run has no appearance augmentation."""
    if config.alignment.appearance == 0:
        return None
    return torch.Generator().manual_seed(config.seed + APPEARANCE_SEED)


def _with_field_of_view(domain: Domain, spec: Preprocessing) -> Domain:
    """``domain``, or a shallow copy with the field of view the preprocessing estimates."""
    if domain.lazy:
        return domain  # PreprocessedVolume refuses the field of view with a clear message
    masks = field_of_view_masks(domain.images, spec, domain.masks)
    if masks is domain.masks:
        return domain
    domain = copy.copy(domain)
    domain.masks = masks
    return domain


def _networks(run: _Run) -> dict[str, torch.nn.Module]:
    named = {"segmentor": run.segmentor, "teacher": run.teacher, "classifier": run.classifier}
    return {name: network for name, network in named.items() if network is not None}


def _capture(run: _Run, history: list[dict[str, float | None]], start: float) -> dict:
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


def _restore(run: _Run, saved: dict) -> list[dict[str, float | None]]:
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


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(array).to(device)


def _supervised_batch(run: _Run) -> tuple[PatchBatch, int]:
    """Labelled patches and how many of them (the first ones) come from the source.

    In semi-supervised mode a share of the batch comes from the labelled target slices.
    """
    size = run.config.batch_size
    if run.source is None:  # source-free: labelled target patches only, where there are any
        if run.target_labelled is None:
            patch = (0, 1, run.config.patch_size, run.config.patch_size)
            return PatchBatch(*(np.zeros(patch, np.float32) for _ in range(3))), 0
        return run.target_labelled.sample(size), 0
    if run.target_labelled is None:
        return run.source.sample(size), size
    from_target = min(size, max(1, round(run.config.target_label_fraction * size)))
    parts = [run.source.sample(size - from_target), run.target_labelled.sample(from_target)]
    joined = PatchBatch(
        *(
            np.concatenate([getattr(p, name) for p in parts])
            for name in ("images", "labels", "weights")
        )
    )
    return joined, size - from_target


def _forward(run: _Run, network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Float32 logits of ``network``, computed in bfloat16 where the run asks for ``amp``."""
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.config.amp):
        return network(images).float()


def _step(run: _Run, step: int) -> dict[str, float | None]:
    """One optimiser step; returns the losses and diagnostics of the step."""
    config, device = run.config, run.device
    supervised, from_source = _supervised_batch(run)
    images = _tensor(supervised.images, device)
    count = len(images)
    teacher_probabilities = drawn = None
    if run.target is not None:
        # The mean teacher sees the plain patch; the student a strongly jittered view of it.
        target = run.target.sample(config.batch_size, jitter=not config.mean_teacher)
        target_images = drawn = target.images
        if config.mean_teacher:
            weak = _tensor(target.images, device)
            teacher_probabilities = torch.sigmoid(_forward(run, run.teacher, weak))
            target_images = jitter_intensity(target.images, run.target.rng, strength=2.0)
    # One forward pass per domain, so BatchNorm normalises each with its own statistics:
    # the source patches, then the labelled and the unlabelled target patches.
    domains = [_aligned_source(run, images[:from_source], drawn), images[from_source:]]
    if run.target is not None:
        domains[1] = torch.cat([domains[1], _tensor(target_images, device)])
    logits = torch.cat([_forward(run, run.segmentor, batch) for batch in domains if len(batch)])
    loss = supervised_loss(
        logits[:count],
        _tensor(supervised.labels, device),
        _tensor(supervised.weights, device),
        config.dice_weight,
    )
    # A source-free run starts from a trained model: its teacher knows the task at once.
    ramp = 1.0 if run.source is None else adaptation_ramp(step, config)
    result: dict[str, float | None] = {
        "supervised_loss": float(loss.detach()),
        "domain_loss": None,
        "domain_accuracy": None,
        "target_entropy": None,
        "grl_lambda": grl_lambda(step, config),
    }
    probabilities = torch.sigmoid(logits)
    if run.target is not None:
        result["target_entropy"] = mean_entropy(probabilities[count:])
    if teacher_probabilities is not None:
        pseudo, confident = teacher_pseudo_labels(teacher_probabilities, config.teacher)
        consistency = supervised_loss(logits[count:], pseudo, confident, config.dice_weight)
        loss = loss + config.teacher.consistency_weight * ramp * consistency
        result["consistency_loss"] = float(consistency.detach())
        result["confident_fraction"] = float(confident.mean())
    if run.classifier is not None:
        is_source = torch.zeros(len(logits), device=device)
        is_source[:from_source] = 1.0
        if config.domain.gradient == "target":
            probabilities = torch.cat(
                [probabilities[:from_source].detach(), probabilities[from_source:]]
            )
        reversed_maps = grad_reverse(probabilities, result["grl_lambda"])
        domain_logits = _forward(run, run.classifier, reversed_maps)
        is_source = is_source.view(-1, *[1] * (domain_logits.ndim - 1)).expand_as(domain_logits)
        domain_loss = F.binary_cross_entropy_with_logits(domain_logits, is_source)
        loss = loss + config.domain.beta * domain_loss
        correct = ((domain_logits.detach() > 0).float() == is_source).float().mean()
        result["domain_loss"] = float(domain_loss.detach())
        result["domain_accuracy"] = float(correct)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    if run.teacher is not None:
        update_teacher(run.teacher, run.segmentor, config.teacher.decay)
    return result


def _aligned_source(run: _Run, source: torch.Tensor, target: np.ndarray | None) -> torch.Tensor:
    """The source patches as the segmentor sees them: each with the low-frequency amplitude
    of the target patch drawn beside it (FDA, adaptive modes), then with random appearance
    changes; unchanged where neither is on."""
    alignment = run.config.alignment
    if not len(source):
        return source
    if alignment.fda_beta > 0 and target is not None:
        partners = _tensor(target[: len(source)], run.device)
        source = fourier_domain_adaptation(source, partners, alignment.fda_beta)
    if run.appearance is not None:
        source = appearance_augmentation(source, run.appearance, alignment.appearance)
    return source


def _kept(run: _Run) -> torch.nn.Module:
    """The network a run returns: the moving average where there is one."""
    return run.teacher if run.teacher is not None else run.segmentor


def _check(run: _Run, step: int) -> dict[str, float]:
    """The label-free criteria of the model the run would return now; keeps the best."""
    network = copy.deepcopy(_kept(run))
    patches = run.check_patches
    size = run.config.batch_size
    batches = (
        _tensor(patches[i : i + size, np.newaxis], run.device)
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


def _preview(run: _Run, control: TrainControl) -> tuple[np.ndarray, int]:
    index = int(np.clip(control.preview_index, 0, len(run.target_preview) - 1))
    preview = predict_tiled(_kept(run), run.target_preview[index])
    if run.target_masks is not None:
        preview[~run.target_masks[index]] = 0.0  # as the final prediction does
    if run.target_grid is not None:  # on the target's own grid, where it is shown
        preview = restore_plane(preview, run.target_grid)
    return preview, index


def _loop(
    run: _Run,
    control: TrainControl,
    history: list[dict[str, float | None]] | None = None,
    state: StateFile | None = None,
) -> Iterator[TrainEvent | TrainFinished]:
    config = run.config
    # Seconds of training before a resume count too: ``elapsed`` is the run's whole time.
    start = time.monotonic() - run.elapsed_before
    last_preview = -math.inf
    history = [] if history is None else history
    done = len(history)
    for step in range(done + 1, config.steps + 1):
        if control.stopped:
            break
        values = _step(run, step)
        checked = run.check_patches is not None and (
            step % config.selection.every == 0 or step == config.steps
        )
        values.update(_check(run, step) if checked else dict.fromkeys(CRITERIA))
        history.append({"step": step, **values})
        event = TrainEvent(step, config.steps, elapsed=time.monotonic() - start, **values)
        now = time.monotonic()
        due = config.preview_interval is not None and (
            now - last_preview >= config.preview_interval or step in (1, config.steps)
        )
        if run.target_preview is not None and due and not control.stopped:
            event.preview, event.preview_index = _preview(run, control)
            last_preview = now
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
            _tensor(run.target.sample(config.batch_size, jitter=False).images, run.device)
            for _ in range(TARGET_STATISTICS_BATCHES)
        )
        estimate_batch_statistics(network, batches)
    # The returned model is laid out as any other: checkpoints and exports see no difference.
    network.to(memory_format=torch.contiguous_format).eval().requires_grad_(True)
    elapsed = time.monotonic() - start
    model = SegmentationModel(
        network,
        config.preprocessing,
        config,
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


def _this_run(run: _Run, steps: int, stopped: bool) -> dict[str, Any]:
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


def _pixel_sizes(working: PixelSize | None, target: Domain | None) -> dict[str, Any]:
    """The model's metadata of the pixel sizes it was trained at (the source's) and
    adapted to (the target's), where known."""
    sizes = {"pixel_size": working}
    if target is not None:
        sizes["target_pixel_size"] = target.pixel_size
    return {key: size.to_dict() for key, size in sizes.items() if size is not None}


def warm_up() -> None:
    """Do the imports that a process's first optimiser step does (``torch._dynamo``, ~1 s).

    A GUI calls this when it opens, so the import does not hold the interpreter while the
    viewer should be drawing the first steps of a run.
    """
    parameter = torch.nn.Parameter(torch.zeros(1))
    parameter.grad = torch.zeros(1)
    torch.optim.Adam([parameter]).step()


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
