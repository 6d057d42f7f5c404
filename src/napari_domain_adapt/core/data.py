"""Validation of image, label and mask stacks at the engine's boundary.

Arrays enter as numpy, dask or zarr; shape and dtype are checked once here, with errors that
say what was found and what was expected. Inside the engine a stack is ``(N, H, W)`` (grey)
or ``(N, H, W, C)`` (colour) for images and ``(N, H, W)`` for labels and masks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .pixel_size import PixelSize
from .volumes import constant_value, open_volume

_COLOUR_CHANNELS = (3, 4)


def _describe(array: np.ndarray) -> str:
    return f"shape {tuple(array.shape)} and dtype {array.dtype}"


def _as_array(array: object, name: str) -> np.ndarray:
    """``np.asarray(array)``, with ragged nests of lists and the like as InputError."""
    try:
        return np.asarray(array)
    except (ValueError, TypeError) as error:
        raise InputError(
            f"{name} is not an array of pixels ({type(array).__name__}: {error}); expected a "
            "numpy array, or a stack of slices of one size"
        ) from error


def _shown(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A stack's ``(N, H, W)`` as the user would give it: ``(H, W)`` for a single slice."""
    return tuple(shape[1:]) if shape[0] == 1 else tuple(shape)


def _shape_error(name: str, data: np.ndarray, shape: tuple[int, int, int]) -> InputError:
    """Labels or masks that do not match the image, with a hint when they are colour."""
    colour = data.shape[-1:] in ((3,), (4,)) and tuple(data.shape[-3:-1]) == tuple(shape[1:])
    hint = ""
    if colour and data.ndim == 3 and data.shape[-1] == shape[0]:  # the slices as channels
        hint = (
            f" (they look like a colour image; if they are {shape[0]} slices, their TIFF stores "
            "them as one: tifffile writes 3 or 4 grey slices as RGB unless given "
            "photometric='minisblack')"
        )
    elif colour:
        hint = " (they look like a colour image; expected one grey value per pixel)"
    return InputError(
        f"{name} have shape {tuple(data.shape)}; expected the image's shape "
        f"{_shown(shape)} (one label per pixel){hint}"
    )


def _is_numeric(dtype: np.dtype) -> bool:
    """Integer or float pixels. Not ``np.issubdtype(dtype, np.integer)``: numpy counts
    ``timedelta64`` among the integers, and a stack of durations is not an image."""
    return dtype.kind in "iuf"


def _check_label_dtype(name: str, data: np.ndarray) -> None:
    if not (data.dtype == bool or _is_numeric(data.dtype)):
        raise InputError(f"{name} have dtype {data.dtype}; expected integer or bool labels")


def as_image_stack(
    array: object, name: str = "image", rgb: bool | None = None, allow_constant: bool = False
) -> np.ndarray:
    """Return ``array`` as an ``(N, H, W)`` or ``(N, H, W, C)`` numpy stack, or raise InputError.

    Accepted: (H, W), (N, H, W), (H, W, 3|4), (N, H, W, 3|4); uint8, uint16, other integers,
    float; finite values. ``rgb=None`` takes a last axis of 3 or 4 as colour. A constant
    image is refused (it is most likely the wrong file) unless ``allow_constant``: one blank
    slice of a stack that has contrast is still predicted.
    """
    data = _as_array(array, name)
    if not _is_numeric(data.dtype):
        raise InputError(
            f"{name} has dtype {data.dtype}; expected an integer (uint8, uint16) or float image"
        )
    expected = "(H, W), (N, H, W), (H, W, 3) or (N, H, W, 3)"
    if rgb is None:
        if data.ndim == 3 and data.shape[-1] in (1, 2):
            raise InputError(
                f"{name} has {_describe(data)}; a last axis of {data.shape[-1]} looks like "
                f"channels: expected grey or colour with 3 or 4 channels, {expected}"
            )
        rgb = data.ndim == 4 or (data.ndim == 3 and data.shape[-1] in _COLOUR_CHANNELS)
        colour = ""
    else:
        colour = "colour as " if rgb else "grey as "
    if rgb:
        if data.ndim not in (3, 4) or data.shape[-1] not in _COLOUR_CHANNELS:
            raise InputError(f"{name} has {_describe(data)}; expected {colour}{expected}")
        stack = data[np.newaxis] if data.ndim == 3 else data
    else:
        if data.ndim not in (2, 3):
            raise InputError(f"{name} has {_describe(data)}; expected {colour}{expected}")
        stack = data[np.newaxis] if data.ndim == 2 else data
    if stack.shape[0] == 0 or stack.shape[1] < 2 or stack.shape[2] < 2:
        raise InputError(f"{name} has {_describe(data)}; expected at least one 2x2 slice")
    if np.issubdtype(stack.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(stack)))
        if bad:
            raise InputError(
                f"{name} has {bad} NaN or infinite pixels; expected finite values "
                "(replace them, e.g. with numpy.nan_to_num)"
            )
    if not allow_constant and stack.min() == stack.max():
        raise InputError(
            f"{name} is constant (every pixel is {stack.flat[0]}); expected an image with contrast"
        )
    return stack


def as_label_stack(
    array: object,
    shape: tuple[int, int, int],
    name: str = "labels",
    meaning: str = "0 = background, 1 or 255 = membrane/vessel",
) -> np.ndarray:
    """Return binary labels as a uint8 ``(N, H, W)`` stack of 0 and 1, or raise InputError.

    Accepted values: {0, 1}, {0, 255} or bool. ``shape`` is the image stack's ``(N, H, W)``;
    ``meaning`` says in the error what the values stand for.
    """
    data = _as_array(array, name)
    _check_label_dtype(name, data)
    stack = data[np.newaxis] if data.ndim == 2 else data
    if stack.shape != tuple(shape):
        raise _shape_error(name, data, shape)
    if stack.dtype == bool:
        return stack.astype(np.uint8)
    values = np.unique(stack)
    if np.isin(values, (0, 1)).all():
        return stack.astype(np.uint8)
    if np.isin(values, (0, 255)).all():
        return (stack == 255).astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:8]) + (", ..." if values.size > 8 else "")
    raise InputError(
        f"{name} contain the values {{{shown}}}; expected binary labels: 0/1, 0/255 or bool "
        f"({meaning})"
    )


#: How labels are given: ``dense`` (every pixel of a labelled slice: 0/1, 0/255 or bool;
#: a slice without any foreground counts as unlabelled) or ``sparse`` (scribbles:
#: 0 = unlabelled, 1 = background, 2 = structure, as painted in a napari Labels layer).
LABEL_KINDS = ("dense", "sparse")


def as_sparse_label_stack(
    array: object, shape: tuple[int, int, int], name: str = "labels"
) -> tuple[np.ndarray, np.ndarray]:
    """Scribbles (0 unlabelled, 1 background, 2 structure) as binary labels and a mask of
    the annotated pixels, or raise InputError."""
    data = _as_array(array, name)
    _check_label_dtype(name, data)
    stack = data[np.newaxis] if data.ndim == 2 else data
    if stack.shape != tuple(shape):
        raise _shape_error(name, data, shape)
    values = np.unique(stack)
    if not np.isin(values, (0, 1, 2)).all() or stack.dtype == bool:
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if values.size > 8 else "")
        raise InputError(
            f"{name} contain the values {{{shown}}}; sparse annotations (scribbles) take "
            "0 = unlabelled, 1 = background, 2 = membrane/vessel (for whole labelled slices "
            "of 0/1 or 0/255 choose dense labels)"
        )
    return (stack == 2).astype(np.uint8), stack > 0


def as_mask_stack(array: object, shape: tuple[int, int, int], name: str = "mask") -> np.ndarray:
    """Return a field-of-view mask as a bool ``(N, H, W)`` stack (True = inside)."""
    meaning = "0 = outside, 1 or 255 = inside the field of view"
    return as_label_stack(array, shape, name=name, meaning=meaning).astype(bool)


def labelled_slices(labels: np.ndarray) -> np.ndarray:
    """Indices of the slices that carry any annotation (any non-zero pixel)."""
    stack = labels[np.newaxis] if labels.ndim == 2 else labels
    return np.flatnonzero(stack.reshape(len(stack), -1).any(axis=1))


def is_lazy(images: object) -> bool:
    """Whether ``images`` is to be read on demand: a zarr or TIFF path, or a chunked array."""
    if isinstance(images, str | Path):
        return True
    chunked = hasattr(images, "chunks") or hasattr(images, "_open")
    return not isinstance(images, np.ndarray) and hasattr(images, "shape") and chunked


@dataclass
class Domain:
    """A stack of images with optional labels and field-of-view masks.

    Validated on construction: ``images`` becomes ``(N, H, W[, C])``, ``labels`` uint8
    ``(N, H, W)`` in {0, 1}, ``masks`` bool ``(N, H, W)``. With ``label_kind="sparse"``
    the labels are scribbles (0 unlabelled, 1 background, 2 structure) and ``annotated``
    marks the pixels that carry a label; only those count in the loss. A volume read on
    demand (:func:`is_lazy`) stays so; its labels, if any, are held in memory.
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    name: str = "image"
    label_kind: str = "dense"
    #: The images' pixel size, where known: kept in the model trained on them.
    pixel_size: PixelSize | None = None
    annotated: np.ndarray | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.label_kind not in LABEL_KINDS:
            raise InputError(
                f"label kind must be one of {', '.join(LABEL_KINDS)}; got {self.label_kind!r}"
            )
        if is_lazy(self.images):
            self._open_lazily()
            shape = (len(self), *(int(n) for n in self.images.shape[-2:]))
        else:
            self.images = as_image_stack(self.images, name=self.name)
            shape = self.images.shape[:3]
        if self.labels is not None and self.label_kind == "sparse":
            self.labels, self.annotated = as_sparse_label_stack(
                self.labels, shape, name=f"{self.name} labels"
            )
        elif self.labels is not None:
            self.labels = as_label_stack(self.labels, shape, name=f"{self.name} labels")
        if self.masks is not None:
            self.masks = as_mask_stack(self.masks, shape, name=f"{self.name} masks")

    def labelled_slices(self) -> np.ndarray:
        """Indices of the slices with any label (dense: any foreground; sparse: any scribble)."""
        if self.labels is None:
            return np.array([], dtype=int)
        return labelled_slices(self.annotated if self.annotated is not None else self.labels)

    def read_slices(self, indices: Iterable[int]) -> np.ndarray:
        """Slices ``indices`` of the images, in memory: read from the volume where it is
        read on demand (a few slices of a volume too large to hold, for the guard)."""
        indices = [int(i) for i in indices]
        if not self.lazy:
            return self.images[indices]
        shape = tuple(self.images.shape)
        lead = (0,) * max(0, len(shape) - 3)  # OME-Zarr's (1, 1, Z, Y, X)
        try:
            planes = [
                np.asarray(self.images[...] if len(shape) == 2 else self.images[(*lead, i)])
                for i in indices
            ]
        except Exception as error:  # a corrupt or truncated chunk: any reader's exception
            raise InputError(
                f"cannot read slices {indices} of {self.name} ({type(error).__name__}: "
                f"{error}); expected a readable volume"
            ) from error
        return as_image_stack(np.stack(planes), name=self.name)

    @property
    def lazy(self) -> bool:
        """Whether the images are read on demand (see :mod:`.lazy`), not held in memory."""
        return not isinstance(self.images, np.ndarray)

    def _open_lazily(self) -> None:
        """Open the volume read on demand; its labels (in memory, validated like those of
        an image stack) may mark some slices, as a user's corrections do."""
        if self.masks is not None:
            raise InputError(
                f"{self.name} is a volume read on demand, which takes no field-of-view masks; "
                "expected a grey volume without masks (load masked images into memory)"
            )
        try:
            self.images = open_volume(self.images)
        except InputError as error:
            raise InputError(f"{self.name}: {error}") from error
        value = constant_value(self.images)  # a block at a time, as in memory (as_image_stack)
        if value is not None:
            raise InputError(
                f"{self.name} is constant (every pixel is {value}); expected an image with "
                "contrast"
            )

    def loss_weights(self) -> np.ndarray | None:
        """1 where a pixel's label counts in the loss (inside the field of view, annotated),
        else 0; None when every pixel counts."""
        weights = None
        if self.masks is not None:
            weights = self.masks.astype(np.float32)
        if self.annotated is not None:
            annotated = self.annotated.astype(np.float32)
            weights = annotated if weights is None else weights * annotated
        return weights

    def __len__(self) -> int:
        if self.lazy:  # (Y, X), (Z, Y, X) or (1, ..., Z, Y, X)
            return 1 if len(self.images.shape) == 2 else int(self.images.shape[-3])
        return len(self.images)
