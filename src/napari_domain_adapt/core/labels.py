"""Membrane ground truth from instance labels (neuron ids), as EM datasets often ship them.

The membrane is what separates different instances: pixels on the boundary between two
different ids, widened to a chosen width. Slices are converted one by one, never across z,
which suits anisotropic serial-section stacks.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import InputError

BACKGROUND_RULES = ("background", "ignore")


def _boundaries(ids: np.ndarray, ignore_zero: bool, both_sides: bool) -> np.ndarray:
    """Pixels next to a pixel of another id (right or below; with ``both_sides`` also
    left or above): a boundary one (or two) pixels wide."""
    boundary = np.zeros(ids.shape, bool)
    for axis in (0, 1):
        here = [slice(None), slice(None)]
        there = [slice(None), slice(None)]
        here[axis], there[axis] = slice(None, -1), slice(1, None)
        a, b = ids[tuple(here)], ids[tuple(there)]
        differs = a != b
        if ignore_zero:
            differs &= (a != 0) & (b != 0)
        boundary[tuple(here)] |= differs
        if both_sides:
            boundary[tuple(there)] |= differs
    return boundary


def _membrane(ids: np.ndarray, width: int, ignore_zero: bool) -> np.ndarray:
    # Even widths lie symmetrically on both sides of the crack between two ids; odd widths
    # centre on the pixel before it (a width of 1 marks one side only).
    even = width % 2 == 0
    boundary = _boundaries(ids, ignore_zero, both_sides=even)
    reach = (width - 2) / 2 if even else (width - 1) / 2
    if reach == 0 or not boundary.any():
        return boundary
    return ndimage.distance_transform_edt(~boundary) <= reach


def instances_to_membranes(
    instances: np.ndarray, width: int = 1, zero: str = "background"
) -> tuple[np.ndarray, np.ndarray]:
    """Membrane mask (uint8, 1 = membrane) and valid mask (bool) from instance ids.

    ``instances`` is an integer ``(H, W)`` slice or ``(N, H, W)`` stack. ``width`` is the
    membrane's width in pixels across a straight boundary. ``zero`` says what id 0 means:
    ``background``, an instance like any other, or ``ignore``, unlabelled pixels (outside
    ``valid``, and their borders are no membrane).
    """
    data = np.asarray(instances)
    if data.dtype.kind not in "iu":  # timedelta64 is a numpy integer, not an id
        raise InputError(f"instance labels have dtype {data.dtype}; expected integer ids")
    if data.ndim not in (2, 3):
        raise InputError(f"instance labels have shape {data.shape}; expected (H, W) or (N, H, W)")
    if data.ndim == 3 and data.shape[-1] in (3, 4) and min(data.shape[:2]) > 4:
        # Slices 3 or 4 pixels wide are no stack anyone has: this is a colour image.
        raise InputError(
            f"instance labels have shape {data.shape}, a colour (RGB) image; expected one "
            "integer id per pixel, (H, W) or (N, H, W)"
        )
    if zero not in BACKGROUND_RULES:
        raise InputError(f"zero must be one of {', '.join(BACKGROUND_RULES)}; got {zero!r}")
    if not isinstance(width, int) or width < 1:
        raise InputError(f"width must be a positive integer; got {width!r}")
    stack = data[np.newaxis] if data.ndim == 2 else data
    ignore_zero = zero == "ignore"
    membranes = np.zeros(stack.shape, np.uint8)
    for index, ids in enumerate(stack):
        membranes[index] = _membrane(ids, width, ignore_zero)
    valid = stack != 0 if ignore_zero else np.ones(stack.shape, bool)
    membranes[~valid] = 0
    if data.ndim == 2:
        return membranes[0], valid[0]
    return membranes, valid
