"""Class-balanced pseudo-labels: keep a share of each class, not the majority's confidence.

The mean teacher labels target pixels where it is sure: ``max(p, 1 - p) >= confidence``
(:func:`~napari_domain_adapt.core.training_step.confident_pseudo_labels`, 0.8 by default). On
a target the source-trained teacher is usually much surer of the majority class (the
background of membranes or vessels) than of the foreground, so a fixed threshold keeps
most background pixels and few foreground ones: the student is taught the source's prior
again, and thin structures shrink a little more at every step.

Class-balanced self-training (CBST; Zou, Yu, Kumar & Wang, "Unsupervised domain
adaptation for semantic segmentation via class-balanced self-training", ECCV 2018) sets
one threshold per class instead: the ``quantile`` of that class's confidences in the
current batch, so every class keeps about the same share (``1 - quantile``) of its
pixels, whatever its confidence level. Here a pixel's class is the teacher's hard label
(foreground where ``p >= 0.5``) and its confidence is ``p`` for foreground, ``1 - p``
for background. Each threshold is capped at ``ceiling`` (the fixed confidence), so a
pixel that the fixed rule keeps is always kept: the balanced rule only adds pixels of
the class the teacher is less sure of.

:func:`estimate_foreground_share` gives a label-free estimate of the target's foreground
share from the same probabilities (the mean probability; see its docstring).
"""

from __future__ import annotations

import numpy as np
import torch


def _check_rule(quantile: float, ceiling: float) -> None:
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1]; got {quantile}")
    if not 0.5 <= ceiling <= 1.0:
        raise ValueError(f"ceiling must be in [0.5, 1]; got {ceiling}")


def _quantile(values: torch.Tensor, quantile: float) -> float:
    """The ``quantile`` of a flat tensor, a value present in it (the "lower" one).

    ``torch.kthvalue`` rather than ``torch.quantile``, which refuses more than 2**24
    elements (a large teacher batch) and interpolates between pixels.
    """
    k = int(np.floor(quantile * (values.numel() - 1))) + 1
    return float(values.kthvalue(k).values)


def class_thresholds(
    probabilities: torch.Tensor, quantile: float, ceiling: float
) -> tuple[float, float]:
    """``(foreground, background)`` confidence thresholds of one teacher batch.

    Each is the ``quantile`` of its class's confidences (``p`` where ``p >= 0.5``,
    ``1 - p`` elsewhere), at most ``ceiling``; a class with no pixel in the batch gets
    ``ceiling`` (nothing of it to keep, and no NaN).
    """
    _check_rule(quantile, ceiling)
    p = probabilities.detach().float().reshape(-1)
    foreground = p >= 0.5
    thresholds = []
    for confidences in (p[foreground], 1.0 - p[~foreground]):
        if confidences.numel() == 0:
            thresholds.append(float(ceiling))
        else:
            thresholds.append(min(_quantile(confidences, quantile), float(ceiling)))
    return thresholds[0], thresholds[1]


def balanced_pseudo_labels(
    probabilities: torch.Tensor, quantile: float, ceiling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard labels from teacher probabilities, and a weight of 1 on the pixels kept.

    The same contract as :func:`~napari_domain_adapt.core.training_step.confident_pseudo_labels`
    (float tensors of the probabilities' shape: labels ``p >= 0.5``, weights 0 or 1), with
    a threshold per class from :func:`class_thresholds`. Every pixel the fixed rule at
    ``ceiling`` keeps is kept here too.
    """
    foreground_threshold, background_threshold = class_thresholds(probabilities, quantile, ceiling)
    p = probabilities.detach().float()
    foreground = p >= 0.5
    # The confidences and thresholds as class_thresholds computes them (float32), so that a
    # pixel equal to its class's quantile compares equal.
    confidence = torch.where(foreground, p, 1 - p)
    threshold = torch.where(
        foreground,
        torch.full_like(p, foreground_threshold),
        torch.full_like(p, background_threshold),
    )
    labels = foreground.float()
    weights = (confidence >= threshold).float()
    return labels, weights


def estimate_foreground_share(
    probabilities: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
) -> float:
    """The target's foreground share estimated without labels: the mean probability.

    For a calibrated model ``E[p] = P(foreground)``, so the mean of ``p`` estimates the
    share without bias ("probabilistic classify and count", Bella et al., ICDM 2010),
    while the share of ``p >= 0.5`` ("classify and count") counts an unsure pixel as
    all-or-nothing and is pulled towards the majority class exactly where the model is
    unsure, which is on a shifted target. Pixels outside ``mask`` (a field of view), where
    given, are not counted. Raises ValueError when no pixel is left.
    """
    if isinstance(probabilities, torch.Tensor):
        probabilities = probabilities.detach().double().cpu().numpy()
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    values = np.asarray(probabilities, dtype=np.float64)
    if mask is not None:
        values = values[np.asarray(mask).astype(bool)]
    if values.size == 0:
        raise ValueError("no pixel to estimate the foreground share from")
    return float(values.mean())
