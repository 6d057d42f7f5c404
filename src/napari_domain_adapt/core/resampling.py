"""Scale-aware adaptation: bring a target to the source's pixel size and back.

The model works at the source's pixel size (the *working pixel size*). A target imaged at
another scale is resampled to it for training and prediction, and its probabilities are
returned on the target's own grid. Every resampling here maps the image's extent onto the
new grid (pixel edges to pixel edges, as :func:`skimage.transform.resize` does), so a
resample and its :func:`restore_plane` land on the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from copy import copy as shallow_copy

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

from .data import Domain
from .errors import InputError
from .pixel_size import PixelSize

#: Y and X zooms that differ by more than this (relative) are refused: the working grid
#: would be stretched, and a model trained on round cells would see ellipses.
ANISOTROPY_LIMIT = 0.10


def _in_plane(size: PixelSize) -> tuple[float, float]:
    """The (y, x) size of a pixel; one size stands for both."""
    sizes = size.sizes[-2:]
    return (sizes[0], sizes[0]) if len(sizes) == 1 else (sizes[0], sizes[1])


def scale_factor(
    source: PixelSize | None, target: PixelSize | None, tolerance: float = 0.05
) -> float | None:
    """The zoom that brings the target's pixels to the source's size: target / source.

    2.3 for a 9.2 nm target and a 4 nm source (the target grows). None where either size or
    its unit is unknown (never guessed), or where the zoom is within ``tolerance`` of 1.
    Raises InputError where the Y and X zooms differ by more than :data:`ANISOTROPY_LIMIT`.
    """
    if source is None or target is None or source.unit is None or target.unit is None:
        return None
    source_yx, target_yx = _in_plane(source), _in_plane(target.to(source.unit))
    zoom_y, zoom_x = (t / s for t, s in zip(target_yx, source_yx, strict=True))
    if abs(zoom_y / zoom_x - 1.0) > ANISOTROPY_LIMIT:
        raise InputError(
            f"the target's pixels ({target}) and the source's ({source}) differ in shape: "
            f"zooms {zoom_y:.3g} (y) and {zoom_x:.3g} (x); expected the same within "
            f"{ANISOTROPY_LIMIT:.0%}"
        )
    factor = (zoom_y + zoom_x) / 2.0
    return None if abs(factor - 1.0) < tolerance else factor


def _check_factor(factor: float) -> None:
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"zoom factor {factor} is not valid; expected a positive number")


def working_length(length: int, factor: float) -> int:
    """How many pixels ``length`` pixels become when zoomed by ``factor`` (at least 1)."""
    _check_factor(factor)
    return max(1, math.floor(length * factor + 0.5))


def working_shape(shape: tuple[int, ...], factor: float | None) -> tuple[int, int]:
    """The (Y, X) of a plane of (Y, X[, C]) ``shape`` once zoomed by ``factor``."""
    if factor is None:
        return int(shape[0]), int(shape[1])
    return working_length(shape[0], factor), working_length(shape[1], factor)


def _resize(image: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """``image`` on a (Y, X) grid of ``shape``, channels kept; smoothed first when shrinking
    (order > 0), so that fine texture does not alias into false structure."""
    return resize(
        image,
        shape + image.shape[2:],
        order=order,
        mode="reflect",
        preserve_range=True,
        anti_aliasing=order > 0 and (shape[0] < image.shape[0] or shape[1] < image.shape[1]),
    )


def resample_plane(image: np.ndarray, factor: float | None, *, order: int) -> np.ndarray:
    """A (Y, X) or (Y, X, C) plane zoomed by ``factor`` in Y and X.

    ``order`` 0 (nearest) is for labels: their dtype and values are kept. Higher orders give
    float32. Where the zoom leaves the shape as it is (``factor`` None or about 1), the
    plane itself is returned, not a copy.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a (Y, X) or (Y, X, C) plane; got shape {image.shape}")
    shape = working_shape(image.shape, factor)
    if shape == image.shape[:2]:
        return image
    resized = _resize(image, shape, order)
    return resized.astype(image.dtype if order == 0 else np.float32, copy=False)


def resample_stack(
    stack: np.ndarray, factor: float | None, *, order: int, rgb: bool = False
) -> np.ndarray:
    """A (Z, Y, X) stack, or (Z, Y, X, C) with ``rgb``, zoomed slice by slice in Y and X."""
    if stack.ndim != 3 + rgb:
        expected = "(Z, Y, X, C)" if rgb else "(Z, Y, X)"
        raise ValueError(f"expected a {expected} stack; got shape {stack.shape}")
    if working_shape(stack.shape[1:], factor) == stack.shape[1:3]:
        return stack
    return np.stack([resample_plane(plane, factor, order=order) for plane in stack])


def restore_plane(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Probabilities on the working grid, back on the target's (Y, X) ``shape``.

    Linear, smoothed when shrinking, float32: both average neighbours, so the values stay
    within those given (within [0, 1]).
    """
    if probabilities.ndim != 2:
        raise ValueError(f"expected (Y, X) probabilities; got shape {probabilities.shape}")
    shape = (int(shape[0]), int(shape[1]))
    if probabilities.shape == shape:
        return probabilities
    restored = _resize(probabilities, shape, order=1)
    return restored.astype(np.float32, copy=False)


def resample_window(
    read: Callable[[slice, slice], np.ndarray],
    shape: tuple[int, int],
    factor: float,
    rows: slice,
    columns: slice,
) -> np.ndarray:
    """``resample_plane(plane, factor, order=1)[rows, columns]`` of a (Y, X) plane of
    ``shape``, computed from the part of the plane it depends on: ``read(rows, columns)``
    returns that part (a lazy volume reads only it).

    The same grid, smoothing and edges as :func:`resample_plane`, so a patch cut from a
    lazy target matches the one cut from the whole plane resampled in memory. Float32.
    """
    shape = (int(shape[0]), int(shape[1]))
    grid = working_shape(shape, factor)
    wanted = [window.indices(length) for window, length in zip((rows, columns), grid, strict=True)]
    if any(step != 1 for _, _, step in wanted):
        raise ValueError(f"expected rows and columns with a step of 1; got {rows}, {columns}")
    out = tuple(max(0, stop - start) for start, stop, _ in wanted)
    if 0 in out:
        return np.zeros(out, np.float32)
    scales = [length / working for length, working in zip(shape, grid, strict=True)]
    # As skimage's resize (linear, anti-aliased when shrinking, mirrored edges): a Gaussian
    # of sigma (scale - 1) / 2, then pixel centres mapped (o + 0.5) * scale - 0.5.
    shrinking = grid[0] < shape[0] or grid[1] < shape[1]
    sigmas = [max(0.0, (scale - 1) / 2) if shrinking else 0.0 for scale in scales]
    reads, offsets = [], []
    for (start, stop, _), scale, sigma, length in zip(wanted, scales, sigmas, shape, strict=True):
        first, last = (start + 0.5) * scale - 0.5, (stop - 0.5) * scale - 0.5
        margin = int(4.0 * sigma + 0.5) + 1  # the Gaussian's radius (truncate 4), and one
        low = max(0, math.floor(first) - margin)
        high = min(length, math.floor(last) + 2 + margin)
        reads.append(slice(low, high))
        offsets.append(first - low)
    part = np.asarray(read(*reads), dtype=np.float32)
    if any(sigmas):
        part = ndi.gaussian_filter(part, sigmas, mode="mirror")
    return ndi.affine_transform(
        part,
        scales,
        offsets,
        output_shape=out,
        output=np.float32,
        order=1,
        mode="mirror",
        prefilter=False,
    )


def resampled(domain: Domain, factor: float) -> Domain:
    """A copy of ``domain`` zoomed by ``factor``: images (linear), labels, annotated pixels
    and masks (nearest); its pixel size becomes the working one. Images read on demand are
    left as they are: :class:`~.lazy.ResampledVolume` zooms them window by window."""
    zoomed = shallow_copy(domain)  # not validated again (nor a lazy volume read again)
    if not domain.lazy:
        rgb = domain.images.ndim == 4
        zoomed.images = resample_stack(domain.images, factor, order=1, rgb=rgb)
    for name in ("labels", "masks", "annotated"):
        value = getattr(domain, name)
        if value is not None:
            setattr(zoomed, name, resample_stack(value, factor, order=0))
    if domain.pixel_size is not None:
        sizes = tuple(domain.pixel_size.sizes)
        plane = tuple(size / factor for size in sizes[-2:])
        zoomed.pixel_size = PixelSize((*sizes[:-2], *plane), domain.pixel_size.unit)
    return zoomed


def describe_scaling(
    source: PixelSize | None, target: PixelSize | None, resample: bool = True
) -> str:
    """One line on the pixel sizes of a run and what it does with them (CLI and widget);
    ``resample``: whether the run matches pixel sizes (``alignment.pixel_size``)."""
    own = "the target is used at its own scale"
    if source is None or target is None:
        sizes = (("source", source), ("target", target))
        known = [f"the {name}'s" for name, size in sizes if size is not None]
        return f"{'only ' + known[0] if known else 'no'} pixel size known: {own}"
    if source.unit is None or target.unit is None:
        return f"source {source}, target {target}: without units they cannot be compared; {own}"
    try:
        factor = scale_factor(source, target)
    except InputError as error:
        return f"source {source}, target {target}: {error}"
    target = target.to(source.unit)  # both in one unit: 4 nm against 9.2 nm, not 0.0092 µm
    if factor is None:
        return f"source {source}, target {target}: the same scale, no resampling"
    if not resample:
        return f"source {source}, target {target}: matching pixel sizes is off, no resampling"
    return (
        f"source {source}, target {target}: the target is resampled by {factor:.3g} to the "
        "source's pixel size"
    )
