"""Tiled prediction: overlapping tiles, batched, blended with a smooth window."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .models import fold_batch_norm


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


#: Largest tile side of the automatic plan. On a CPU a 512-pixel tile is about as fast per
#: pixel as a 256-pixel one and wastes far less work on overlaps; 768- and 1024-pixel tiles
#: ran 25-35 % slower per pixel here (their activations outgrow the allocator's reused blocks).
AUTO_TILE = 512
#: On the CPU a batch holds at most this many pixels (two 256-pixel tiles, or one larger
#: tile): bigger batches are no faster there, and their activations outgrow the blocks the
#: allocator reuses (measured: batches of four 256-pixel tiles were 10 % slower than two).
CPU_BATCH_PIXELS = 2**17
AMP_DTYPES = {True: torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}


def plan_tiles(
    length: int, tile_size: int | None, overlap: int, multiple: int = 1
) -> tuple[int, list[int]]:
    """The tile side and start offsets along one axis of ``length`` pixels.

    An explicit ``tile_size`` keeps the fixed grid of :func:`tile_starts`. ``None`` plans
    automatically: the whole axis when it is at most :data:`AUTO_TILE` long, otherwise the
    fewest tiles of about that size that overlap by at least ``overlap``, shrunk to the size
    they need and spread evenly, with starts on the pooling grid.
    """
    if tile_size is not None:
        tile = min(tile_size, length)
        return tile, tile_starts(length, tile, overlap, multiple)
    limit = max(AUTO_TILE, 4 * overlap)
    if length <= limit:
        return length, [0]
    count = math.ceil((length - overlap) / (limit - overlap))
    tile = math.ceil((length + (count - 1) * overlap) / count)
    tile = min(length, -(-tile // multiple) * multiple)
    while True:
        spacing = (length - tile) / (count - 1)
        starts = [int(i * spacing) // multiple * multiple for i in range(count - 1)]
        starts.append(length - tile)
        if max(np.diff(starts)) <= tile - overlap or tile == length:
            return tile, starts
        tile = min(length, tile + multiple)  # starts rounded down opened a gap: widen


def _tile_positions(count: int, ys: list[int], xs: list[int]) -> list[tuple[int, int, int]]:
    return [(z, y, x) for z in range(count) for y in ys for x in xs]


def network_device(network: nn.Module) -> torch.device:
    """The device that holds the network's weights."""
    return next(network.parameters()).device


def inference_network(network: nn.Module, channels_last: bool = True) -> nn.Module:
    """``network`` ready for prediction: itself, or a faster copy in eval mode.

    The copy has each BatchNorm folded into the convolution before it (one operation less
    per layer, same result to float rounding) and, on the CPU or CUDA with
    ``channels_last``, channels-last weights: 1.5x faster convolutions for a BatchNorm
    U-Net, about 10 % for the ChannelNorm one, whose ``layer_norm`` over a permuted view
    already turns every activation after the first channels-last. It leaves the caller's
    network (and a training run that owns it) untouched.
    """
    device = network_device(network)
    weights = [p for p in network.parameters() if p.ndim == 4]
    relayout = (
        channels_last
        and device.type in ("cpu", "cuda")
        and bool(weights)
        and not all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    )
    foldable = any(isinstance(m, nn.BatchNorm2d) for m in network.modules())
    if not (relayout or foldable):
        return network
    runner = fold_batch_norm(copy.deepcopy(network).eval())
    return runner.to(memory_format=torch.channels_last) if relayout else runner


def _autocast(device: torch.device, amp: bool | str) -> contextlib.AbstractContextManager:
    if amp not in (False, *AMP_DTYPES):
        raise InputError(f"amp must be False, True, 'bf16' or 'fp16'; got {amp!r}")
    if not amp or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    if device.type == "cpu":  # float16 convolutions are slow on CPUs; bfloat16 is the choice
        return torch.autocast("cpu", dtype=torch.bfloat16)
    dtype = AMP_DTYPES[amp]
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast("cuda", dtype=dtype)


def forward_in_halves(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """``network(batch)``; when the device runs out of memory, the batch again in halves.

    Each retry is reported as a RuntimeWarning (the widget shows it); out of memory with a
    single tile is an InputError that says what to change.
    """
    try:
        return network(batch)
    except torch.cuda.OutOfMemoryError as error:
        if len(batch) == 1:
            raise InputError(
                "out of device memory for a single tile; choose a smaller tile size or "
                "predict on the CPU"
            ) from error
        if batch.is_cuda:
            torch.cuda.empty_cache()
        half = len(batch) // 2
        warnings.warn(
            f"out of device memory with {len(batch)} tiles at once; retrying {half} at a time",
            RuntimeWarning,
            stacklevel=2,
        )
        return torch.cat(
            [forward_in_halves(network, batch[:half]), forward_in_halves(network, batch[half:])]
        )


def predict_tiled(
    network: nn.Module,
    images: np.ndarray,
    tile_size: int | None = None,
    overlap: int = 32,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
    *,
    channels_last: bool = True,
    amp: bool | str = False,
) -> np.ndarray:
    """Foreground probabilities for preprocessed ``(H, W)`` or ``(N, H, W)`` float32 images.

    Tiles overlapping by ``overlap`` pixels go through ``network`` in batches of up to
    ``batch_size`` under ``torch.inference_mode``; overlapping outputs are blended with a
    smooth window. ``tile_size=None`` (the default) plans the tiles with :func:`plan_tiles`:
    an image up to :data:`AUTO_TILE` pixels on a side is predicted whole. ``progress(done,
    total)`` is called after each batch; an exception raised there aborts the prediction.

    ``channels_last`` predicts with a channels-last copy of the network (same result to
    float rounding, about 1e-6). ``amp`` (``True``/``"bf16"`` or ``"fp16"``) runs the network
    under autocast: on CUDA in that precision, on the CPU always in bfloat16 (about 2x faster
    on CPUs with AVX512-BF16 or AMX, slower on others); elsewhere it has no effect. It changes
    probabilities by up to about 1e-2.
    """
    if (tile_size is not None and tile_size < 1) or batch_size < 1 or overlap < 0:
        valid = False
    else:
        valid = tile_size is None or overlap < tile_size
    if not valid:
        raise InputError(
            f"tile_size ({tile_size}) and batch_size ({batch_size}) must be >= 1 and overlap "
            f"({overlap}) between 0 and tile_size - 1"
        )
    single = images.ndim == 2
    stack = images[np.newaxis] if single else images
    count, height, width = stack.shape
    multiple = getattr(network, "multiple", 1)
    tile_y, ys = plan_tiles(height, tile_size, overlap, multiple)
    tile_x, xs = plan_tiles(width, tile_size, overlap, multiple)
    window = np.outer(blend_window(tile_y, overlap), blend_window(tile_x, overlap))
    norm = np.zeros((height, width), np.float32)  # the same for every slice: summed once
    for y in ys:
        for x in xs:
            norm[y : y + tile_y, x : x + tile_x] += window
    total = np.zeros(stack.shape, np.float32)
    positions = _tile_positions(count, ys, xs)
    device = network_device(network)
    if device.type == "cpu":
        batch_size = max(1, min(batch_size, CPU_BATCH_PIXELS // (tile_y * tile_x)))
    autocast = _autocast(device, amp)
    batch = np.empty((batch_size, tile_y, tile_x), np.float32)
    was_training = network.training
    network.eval()
    try:
        runner = inference_network(network, channels_last)
        with torch.inference_mode(), autocast:
            for first in range(0, len(positions), batch_size):
                chunk = positions[first : first + batch_size]
                for index, (z, y, x) in enumerate(chunk):
                    batch[index] = stack[z, y : y + tile_y, x : x + tile_x]
                tensor = torch.from_numpy(batch[: len(chunk), np.newaxis]).to(device)
                probs = forward_in_halves(runner, tensor)[:, 0].float().sigmoid_().cpu().numpy()
                probs *= window
                for (z, y, x), prob in zip(chunk, probs, strict=True):
                    total[z, y : y + tile_y, x : x + tile_x] += prob
                if progress is not None:
                    progress(min(first + batch_size, len(positions)), len(positions))
    finally:
        network.train(was_training)
    total /= norm
    return total[0] if single else total
