"""Turn validated image stacks into float32 network input, the same way in training and use."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .config import Preprocessing

_LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Scaled intensities are clipped to this range (bioimage.io export describes it as ``clip``).
CLIP_RANGE = (-1.0, 2.0)


def to_grey(stack: np.ndarray, channel: str) -> np.ndarray:
    """Reduce an ``(N, H, W, C)`` colour stack to ``(N, H, W)`` float32; grey passes through."""
    if stack.ndim == 3:
        return stack.astype(np.float32, copy=False)
    rgb = stack[..., :3].astype(np.float32)
    if channel == "green":
        return np.ascontiguousarray(rgb[..., 1])
    if channel == "mean":
        return rgb.mean(axis=-1)
    return rgb @ _LUMINANCE


def intensity_range(values: np.ndarray, spec: Preprocessing) -> tuple[np.floating, float]:
    """The offset and scale that map the ``spec.percentiles`` of ``values`` to 0 and 1.

    Out-of-core prediction computes them once per slice and applies :func:`rescale` to each
    chunk, so that a chunk is normalised exactly as its whole slice would be.
    """
    low, high = np.percentile(values, spec.percentiles)
    return low, max(float(high - low), 1e-6 * max(abs(float(high)), 1.0))


def rescale(image: np.ndarray, low: np.floating, scale: float) -> np.ndarray:
    """``(image - low) / scale`` clipped to :data:`CLIP_RANGE`, as float32."""
    return np.clip((image - low) / scale, *CLIP_RANGE).astype(np.float32)


def normalise_slice(
    image: np.ndarray, spec: Preprocessing, mask: np.ndarray | None = None
) -> np.ndarray:
    """Scale one grey slice so its robust low/high percentiles map to 0 and 1.

    Statistics come from inside the field-of-view ``mask`` where one is given, so the dark
    surround of a fundus photograph does not set the contrast.
    """
    values = image[mask] if mask is not None and mask.any() else image
    scaled = rescale(image, *intensity_range(values, spec))
    if spec.clahe:
        from skimage.exposure import equalize_adapthist

        scaled = equalize_adapthist(np.clip(scaled, 0, 1), clip_limit=spec.clahe_clip)
        scaled = scaled.astype(np.float32)
    if mask is not None:
        scaled = np.where(mask, scaled, 0.0).astype(np.float32)
    return scaled


def preprocess(
    stack: np.ndarray, spec: Preprocessing, masks: np.ndarray | None = None
) -> np.ndarray:
    """Normalise a validated ``(N, H, W[, C])`` stack into float32 ``(N, H, W)``."""
    grey = to_grey(stack, spec.channel)
    out = np.empty(grey.shape, dtype=np.float32)
    for index, image in enumerate(grey):
        out[index] = normalise_slice(image, spec, None if masks is None else masks[index])
    return out


def estimate_field_of_view(stack: np.ndarray) -> np.ndarray:
    """Bool ``(N, H, W)`` masks of the bright disc of fundus photographs, from the images alone.

    Per slice: pixels brighter than half the Otsu threshold of the red channel (or the grey
    image), holes filled, the largest connected region kept. A slice where that finds
    almost nothing (no dark surround, a blank image) is taken whole.
    """
    from skimage.filters import threshold_otsu

    channel = stack[..., 0] if stack.ndim == 4 else stack
    masks = np.ones(channel.shape, dtype=bool)
    for index, image in enumerate(channel.astype(np.float32, copy=False)):
        if image.min() == image.max():
            continue
        bright = ndi.binary_fill_holes(image > 0.5 * threshold_otsu(image))
        regions, count = ndi.label(bright)
        if count:
            sizes = np.bincount(regions.ravel())[1:]
            disc = regions == 1 + int(np.argmax(sizes))
            if disc.mean() >= 0.1:
                masks[index] = disc
    return masks


def field_of_view_masks(
    stack: np.ndarray, spec: Preprocessing, masks: np.ndarray | None
) -> np.ndarray | None:
    """The masks to use: those given, else an estimate where ``spec.field_of_view`` asks."""
    if masks is not None or not spec.field_of_view:
        return masks
    return estimate_field_of_view(stack)
