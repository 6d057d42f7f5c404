"""Preparing a training run: the inputs checked, the networks, optimiser and patch samplers
built, the target brought to the working pixel size and the source's intensities.

:func:`prepare` is where :func:`~.training.train` refuses bad input (one
:class:`~.errors.InputError` before any step), so it stays apart from the loop;
:class:`TrainingRun` is what the loop (:mod:`.training`) and the steps
(:mod:`.training_step`) then share.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .alignment import intensity_reference, match_to_reference
from .checkpoints import SegmentationModel
from .config import LABEL_MODES, Preprocessing, TrainConfig
from .data import Domain
from .device import require_memory, resolve_device
from .errors import InputError
from .lazy import PreprocessedVolume, ResampledVolume
from .models import DomainClassifier, UNet, activation_count
from .patches import PatchSampler
from .pixel_size import PixelSize
from .preprocessing import field_of_view_masks, preprocess
from .resampling import resampled, scale_factor
from .resume import fingerprint

#: Fixed target patches on which the label-free criteria are checked, and their seed offset.
CHECK_PATCHES = 32
CHECK_SEED = 7919
#: Seed offset of the appearance augmentation's own generator.
APPEARANCE_SEED = 104729


@dataclass
class TrainingRun:
    """A run in progress: its networks, optimiser, samplers and generators, and what the
    model it returns keeps of its inputs (pixel sizes, intensity reference, history)."""

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


def prepare(
    config: TrainConfig,
    source: Domain | None,
    target: Domain | None,
    initial: SegmentationModel | None,
) -> TrainingRun:
    """Check the inputs (one :class:`~.errors.InputError` for the first bad one) and build
    the run: ``initial``'s network copied, the target resampled to the working pixel size
    and matched to the source's intensities where the configuration asks."""
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
        # Labels are resampled here, and a target in memory; one read on demand is resampled
        # patch by patch, below.
        plane = target.images.shape[-2:] if target.lazy else target.images.shape[1:3]
        target_grid = (int(plane[0]), int(plane[1]))
        whose = "the model's" if source is None else "the source's"
        target_name = (
            f"target (resampled by {factor:.3g} to {whose} pixel size from "
            f"{target_grid[0]}x{target_grid[1]} pixels)"
        )
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
    return TrainingRun(
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


def _pixel_sizes(working: PixelSize | None, target: Domain | None) -> dict[str, Any]:
    """The model's metadata of the pixel sizes it was trained at (the source's) and
    adapted to (the target's), where known."""
    sizes = {"pixel_size": working}
    if target is not None:
        sizes["target_pixel_size"] = target.pixel_size
    return {key: size.to_dict() for key, size in sizes.items() if size is not None}
