"""Random training patches with flips, rotations and intensity changes, sampled in-process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass
class PatchBatch:
    """A batch of patches, ``(B, 1, P, P)`` float32 each; ``labels`` only where known.

    ``weights`` is 1 where a pixel counts in the loss and 0 where it does not.
    """

    images: np.ndarray
    labels: np.ndarray | None
    weights: np.ndarray


class PatchSampler:
    """Draws square patches from a preprocessed ``(N, H, W)`` stack.

    ``weights`` (optional, ``(N, H, W)``) marks the pixels that count in the loss: a field of
    view, or the annotated pixels of sparse labels. Only slices listed in ``slices`` are used.
    """

    def __init__(
        self,
        images: np.ndarray,
        patch_size: int,
        rng: np.random.Generator,
        labels: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        slices: np.ndarray | None = None,
        augment: bool = True,
        name: str = "image",
    ) -> None:
        height, width = images.shape[1:]
        if height < patch_size or width < patch_size:
            raise InputError(
                f"{name} slices are {height}x{width} pixels, smaller than the {patch_size}-pixel "
                f"training patch; choose a patch size of at most {min(height, width)}"
            )
        self.images = images
        self.labels = labels
        self.weights = weights
        self.patch_size = patch_size
        self.rng = rng
        self.augment = augment
        self.slices = np.arange(len(images)) if slices is None else np.asarray(slices)
        if self.slices.size == 0:
            raise InputError(f"{name} has no slices to sample from")

    def sample(self, batch_size: int, jitter: bool = True) -> PatchBatch:
        """Draw ``batch_size`` random patches, augmented if enabled.

        ``jitter=False`` keeps the geometric augmentation but not the intensity changes
        (the weak view of a mean teacher).
        """
        size = self.patch_size
        height, width = self.images.shape[1:]
        images = np.empty((batch_size, 1, size, size), np.float32)
        labels = None if self.labels is None else np.empty_like(images)
        weights = np.ones_like(images)
        for i in range(batch_size):
            z = self.rng.choice(self.slices)
            y = self.rng.integers(0, height - size + 1)
            x = self.rng.integers(0, width - size + 1)
            window = (z, slice(y, y + size), slice(x, x + size))
            flip, turns = self.rng.integers(0, 2), self.rng.integers(0, 4)
            if not self.augment:
                flip, turns = 0, 0
            images[i, 0] = _orient(self.images[window], flip, turns)
            if labels is not None:
                labels[i, 0] = _orient(self.labels[window], flip, turns)
            if self.weights is not None:
                weights[i, 0] = _orient(self.weights[window], flip, turns)
        if self.augment and jitter:
            images = jitter_intensity(images, self.rng)
        return PatchBatch(images, labels, weights)


def jitter_intensity(
    images: np.ndarray, rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """Random contrast, brightness and Gaussian noise per patch; ``strength`` widens them."""
    count = len(images)
    shape = (count, 1, 1, 1)
    contrast = rng.uniform(1 - 0.25 * strength, 1 + 0.25 * strength, shape).astype(np.float32)
    brightness = rng.uniform(-0.15 * strength, 0.15 * strength, shape).astype(np.float32)
    noise = rng.uniform(0.0, 0.05 * strength, shape).astype(np.float32)
    jittered = images * np.maximum(contrast, 0.1) + brightness
    jittered += noise * rng.standard_normal(images.shape, dtype=np.float32)
    return jittered


def _orient(patch: np.ndarray, flip: int, turns: int) -> np.ndarray:
    if flip:
        patch = patch[:, ::-1]
    return np.rot90(patch, turns)
