"""One optimiser step of any mode, and the losses, schedule and teacher update it uses.

:func:`train_step` is the only place where the modes differ: which batches it draws, which
losses are on (supervised, domain through gradient reversal, the teacher's consistency) and
how much each weighs at a step. Kept apart from the loop (:mod:`.training`) so the
mathematics can be read, and tested, step by step.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .alignment import appearance_augmentation, fourier_domain_adaptation
from .config import TeacherSpec, TrainConfig
from .models import grad_reverse
from .patches import PatchBatch, jitter_intensity
from .pseudo_labels import balanced_pseudo_labels
from .training_setup import TrainingRun


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


def as_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A NumPy batch as a tensor on the run's device (sharing memory on the CPU)."""
    return torch.from_numpy(array).to(device)


def _supervised_batch(run: TrainingRun) -> tuple[PatchBatch, int]:
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


def _forward(run: TrainingRun, network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Float32 logits of ``network``, computed in bfloat16 where the run asks for ``amp``."""
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.config.amp):
        return network(images).float()


def train_step(run: TrainingRun, step: int) -> dict[str, float | None]:
    """One optimiser step; returns the losses and diagnostics of the step."""
    config, device = run.config, run.device
    supervised, from_source = _supervised_batch(run)
    images = as_tensor(supervised.images, device)
    count = len(images)
    teacher_probabilities = drawn = None
    if run.target is not None:
        # The mean teacher sees the plain patch; the student a strongly jittered view of it.
        target = run.target.sample(config.batch_size, jitter=not config.mean_teacher)
        target_images = drawn = target.images
        if config.mean_teacher:
            weak = as_tensor(target.images, device)
            teacher_probabilities = torch.sigmoid(_forward(run, run.teacher, weak))
            target_images = jitter_intensity(target.images, run.target.rng, strength=2.0)
    # One forward pass per domain, so BatchNorm normalises each with its own statistics:
    # the source patches, then the labelled and the unlabelled target patches.
    domains = [_aligned_source(run, images[:from_source], drawn), images[from_source:]]
    if run.target is not None:
        domains[1] = torch.cat([domains[1], as_tensor(target_images, device)])
    logits = torch.cat([_forward(run, run.segmentor, batch) for batch in domains if len(batch)])
    loss = supervised_loss(
        logits[:count],
        as_tensor(supervised.labels, device),
        as_tensor(supervised.weights, device),
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


def _aligned_source(
    run: TrainingRun, source: torch.Tensor, target: np.ndarray | None
) -> torch.Tensor:
    """The source patches as the segmentor sees them: each with the low-frequency amplitude
    of the target patch drawn beside it (FDA, adaptive modes), then with random appearance
    changes; unchanged where neither is on."""
    alignment = run.config.alignment
    if not len(source):
        return source
    if alignment.fda_beta > 0 and target is not None:
        partners = as_tensor(target[: len(source)], run.device)
        source = fourier_domain_adaptation(source, partners, alignment.fda_beta)
    if run.appearance is not None:
        source = appearance_augmentation(source, run.appearance, alignment.appearance)
    return source
