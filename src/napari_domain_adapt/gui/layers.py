"""Layer naming and picking as pure functions: no Qt, no napari, no torch.

The widget asks these which layer fills which input, how many target slices are labelled,
which slice the user looks at, and what its result layers are called; tests call them
without a viewer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_domain_adapt import core

if TYPE_CHECKING:
    from napari.layers import Layer

LIVE_NAME = "target probability (live)"
PROBABILITY_NAME = "target probability"
SEGMENTATION_NAME = "target segmentation"

#: The four inputs of a run and the kind of layer each takes.
ROLES = {
    "source_image": "image",
    "source_labels": "labels",
    "target_image": "image",
    "target_labels": "labels",
}


_DOMAIN_WORDS = {
    "source": ("source", "src", "train"),
    "target": ("target", "tgt", "new", "unlabelled", "unlabeled"),
}
_LABEL_WORDS = ("label", "mask", "annotation", "membrane", "seg", "gt", "truth")
# Ground truth of the target is for checking a result only; never train on it by default.
_HELD_OUT_WORDS = ("truth", "gt", "ground", "reference")
# Layers this plugin makes; never inputs.
_RESULT_WORDS = ("probability", "segmentation", "prediction", "(live)")


@dataclass(frozen=True)
class LayerInfo:
    """What picking needs to know of a layer: its name and kind (``image`` or ``labels``)."""

    name: str
    kind: str


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def _has(name: str, words: Sequence[str]) -> bool:
    tokens = _words(name)
    return any(t.startswith(w) for t in tokens for w in words)


def is_result_layer(name: str) -> bool:
    """Whether ``name`` looks like a layer this plugin produced (never an input)."""
    lowered = name.lower()
    return any(word in lowered for word in _RESULT_WORDS)


def score(info: LayerInfo, role: str) -> int:
    """How well a layer fits ``role``: 0 = not at all, higher = better."""
    if info.kind != ROLES[role] or is_result_layer(info.name):
        return 0
    domain, other = ("source", "target") if role.startswith("source") else ("target", "source")
    name = info.name
    if domain == "target" and role == "target_labels" and _has(name, _HELD_OUT_WORDS):
        return 0
    points = 1
    if _has(name, _DOMAIN_WORDS[domain]):
        points += 4
    elif _has(name, _DOMAIN_WORDS[other]):
        return 0
    if ROLES[role] == "labels" and _has(name, _LABEL_WORDS):
        points += 1
    if ROLES[role] == "image" and not _has(name, _LABEL_WORDS):
        points += 1
    return points


def pick(layers: Sequence[LayerInfo], role: str) -> str | None:
    """The name of the layer that best fits ``role``, or None.

    A layer counts only if its name names the role's domain (``source``/``target``). Among
    equals the first (lowest in the layer list) wins.
    """
    best, best_score = None, 0
    for info in layers:
        points = score(info, role)
        if points > best_score and points >= 5:
            best, best_score = info.name, points
    return best


def pick_all(layers: Sequence[LayerInfo]) -> dict[str, str | None]:
    """Best layer for each role; no layer fills two roles."""
    chosen: dict[str, str | None] = {}
    taken: set[str] = set()
    for role in ROLES:
        name = pick([i for i in layers if i.name not in taken], role)
        chosen[role] = name
        if name is not None:
            taken.add(name)
    return chosen


def full_resolution(layer: Layer) -> Any:
    """A napari layer's data at full resolution: of a multiscale layer (an OME-Zarr image,
    say), the first level; numpy's ``asarray`` of napari's multiscale data gives the last,
    the smallest."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def count_labels(labels: Any) -> tuple[int, int]:
    """The labelled slices of a label stack (any annotation) and its annotated pixels; a
    2D array is one slice. Read one slice at a time, so that a stack read on demand (dask,
    zarr, HDF5) never lies in memory whole."""
    if labels is None:
        return 0, 0
    if len(labels.shape) <= 2:
        pixels = int(np.count_nonzero(np.asarray(labels)))
        return int(pixels > 0), pixels
    per_slice = [int(np.count_nonzero(np.asarray(labels[i]))) for i in range(labels.shape[0])]
    return sum(n > 0 for n in per_slice), sum(per_slice)


def labelled_text(count: int, pixels: int | None = None, then: str | None = None) -> str:
    """What the widget says about the target labels (``pixels``: of scribbles, if any) and,
    after an arrow, what follows from them (whether the chosen mode uses them)."""
    if count == 0:
        return "no labelled target slices → unsupervised"
    plural = "slice" if count == 1 else "slices"
    then = "" if then is None else f" → {then}"
    if pixels is not None:
        return f"{pixels:,} labelled pixels on {count} {plural}{then}"
    return f"{count} labelled target {plural}{then}"


def slice_index(
    point: Sequence[float],
    scale: Sequence[float],
    translate: Sequence[float],
    n_slices: int,
) -> int:
    """Index of the slice of a stack layer at world ``point`` (trailing axes align).

    ``scale`` and ``translate`` are the layer's (one per layer axis, slice axis first).
    """
    if n_slices <= 1 or len(scale) < 3 or len(point) < len(scale):
        return 0
    world = point[-len(scale)]
    index = round((world - translate[0]) / scale[0])
    return int(np.clip(index, 0, n_slices - 1))


def result_names(image_name: str, is_target: bool) -> tuple[str, str]:
    """Names of the probability and segmentation layers predicted for an image layer."""
    if is_target:
        return PROBABILITY_NAME, SEGMENTATION_NAME
    return f"{image_name} probability", f"{image_name} segmentation"


def binarize(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The uint8 0/1 mask of ``probabilities >= threshold``; lazy for a dask array."""
    if not isinstance(probabilities, np.ndarray) and hasattr(probabilities, "map_blocks"):
        return (probabilities >= threshold).astype(np.uint8)
    return (np.asarray(probabilities) >= threshold).astype(np.uint8)


def export_values(mask: Any, foreground: int) -> Any:
    """A label layer's data as uint8 0/``foreground`` (1 or 255), any label counting as 1;
    lazy (a dask array) for data read on demand, so that it is read as it is written."""
    if foreground not in (1, 255):
        raise ValueError(f"foreground must be 1 or 255; got {foreground}")
    if core.is_lazy(mask):
        import dask.array as da

        if not isinstance(mask, da.Array):  # zarr, HDF5: in their own chunks, as the reader
            mask = da.from_array(mask, chunks=mask.chunks or "auto")
    else:
        mask = np.asarray(mask)
    return (mask != 0).astype(np.uint8) * np.uint8(foreground)
