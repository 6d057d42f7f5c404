"""Label-free criteria for which model of a run to keep: they need no target labels.

- ``consistency``: Dice between the masks predicted for target images and for a changed
  copy of them (a gamma change, a little noise, mirrored; the prediction mirrored back).
  A model that has learned the target's structures keeps them under such changes.
- ``entropy``: the mean binary entropy of the target predictions, in bits (0 = certain).

Training computes them every ``TrainConfig.selection.every`` steps on fixed target patches,
for the model it would return at that step, and shows them on the live plot;
``TrainConfig.selection.by`` keeps the model with the best value instead of the last one.
``benchmarks/selection.py`` measures how close each criterion's pick comes to the best
model by the target test labels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Criteria and whether a larger value is better.
CRITERIA = {"consistency": True, "entropy": False}


def perturbed(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Preprocessed ``(..., H, W)`` images with a gamma change and noise, mirrored in x.

    A gamma change (not a linear one, which per-image scaling would undo), so the check
    applies to raw images too where the caller preprocesses after perturbing.
    """
    rng = np.random.default_rng(seed)
    changed = np.clip(images, 0.0, 1.0) ** 0.8 + rng.normal(0.0, 0.02, images.shape)
    return np.ascontiguousarray(changed[..., ::-1], dtype=np.float32)


def label_free_criteria(
    predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray
) -> dict[str, float]:
    """Both criteria for ``predict`` (preprocessed images -> probabilities) on ``images``."""
    plain = predict(images)
    changed = predict(perturbed(images))[..., ::-1]
    return {
        "consistency": mask_dice(plain >= 0.5, changed >= 0.5),
        "entropy": binary_entropy(plain),
    }


def mask_dice(first: np.ndarray, second: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1 when both are empty)."""
    total = int(first.sum()) + int(second.sum())
    return 1.0 if total == 0 else float(2 * np.logical_and(first, second).sum() / total)


def binary_entropy(probabilities: np.ndarray) -> float:
    """Mean binary entropy of probabilities, in bits."""
    p = np.clip(probabilities.astype(np.float64), 1e-6, 1 - 1e-6)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))


def better(criterion: str, value: float, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet); ties go to the later model."""
    if best is None:
        return True
    return value >= best if CRITERIA[criterion] else value <= best
