"""Tiled prediction: overlapping tiles, batched, blended with a smooth window."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .errors import InputError


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap``.

    Starts are multiples of ``multiple`` (the U-Net's pooling grid) except the last one,
    which is aligned with the end of the axis.
    """
    if length <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    if multiple > 1 and stride >= multiple:
        stride -= stride % multiple
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """1D weights that fall smoothly to a small positive floor over ``overlap`` pixels per side."""
    weights = np.ones(tile, np.float32)
    ramp = min(overlap, tile // 2)
    if ramp > 0:
        position = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
        edge = np.maximum(0.5 - 0.5 * np.cos(np.pi * position), 1e-3)
        weights[:ramp] = edge
        weights[-ramp:] = np.minimum(weights[-ramp:], edge[::-1])
    return weights


def _tiles(
    shape: tuple[int, int, int], tile: tuple[int, int], overlap: int, multiple: int
) -> Iterator[tuple[int, int, int]]:
    count, height, width = shape
    ys = tile_starts(height, tile[0], overlap, multiple)
    xs = tile_starts(width, tile[1], overlap, multiple)
    for z in range(count):
        for y in ys:
            for x in xs:
                yield z, y, x


def network_device(network: nn.Module) -> torch.device:
    """The device that holds the network's weights."""
    return next(network.parameters()).device


def predict_tiled(
    network: nn.Module,
    images: np.ndarray,
    tile_size: int = 256,
    overlap: int = 32,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Foreground probabilities for preprocessed ``(H, W)`` or ``(N, H, W)`` float32 images.

    Tiles of ``tile_size`` overlapping by ``overlap`` pixels go through ``network`` in batches
    of ``batch_size`` under ``torch.inference_mode``; overlapping outputs are blended with a
    smooth window. An image no larger than one tile is predicted whole. ``progress(done,
    total)`` is called after each batch; an exception raised there aborts the prediction.
    """
    if tile_size < 1 or batch_size < 1 or not 0 <= overlap < tile_size:
        raise InputError(
            f"tile_size ({tile_size}) and batch_size ({batch_size}) must be >= 1 and overlap "
            f"({overlap}) between 0 and tile_size - 1"
        )
    single = images.ndim == 2
    stack = images[np.newaxis] if single else images
    height, width = stack.shape[1:]
    tile = (min(tile_size, height), min(tile_size, width))
    multiple = getattr(network, "multiple", 1)
    window = np.outer(blend_window(tile[0], overlap), blend_window(tile[1], overlap))
    total = np.zeros(stack.shape, np.float32)
    norm = np.zeros(stack.shape, np.float32)
    positions = list(_tiles(stack.shape, tile, overlap, multiple))
    device = network_device(network)
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            for first in range(0, len(positions), batch_size):
                chunk = positions[first : first + batch_size]
                batch = np.stack([stack[z, y : y + tile[0], x : x + tile[1]] for z, y, x in chunk])
                tensor = torch.from_numpy(np.ascontiguousarray(batch, np.float32))
                probs = torch.sigmoid(network(tensor[:, None].to(device)))[:, 0].float()
                probs = probs.cpu().numpy()
                for (z, y, x), prob in zip(chunk, probs, strict=True):
                    total[z, y : y + tile[0], x : x + tile[1]] += prob * window
                    norm[z, y : y + tile[0], x : x + tile[1]] += window
                if progress is not None:
                    progress(min(first + batch_size, len(positions)), len(positions))
    finally:
        network.train(was_training)
    result = total / norm
    return result[0] if single else result
