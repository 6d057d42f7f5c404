"""Property-based tests of the tiled predictor: any image, tile size and overlap.

The network is a tiny *untrained* U-Net (depth 2, width 4, ChannelNorm, ``torch.manual_seed
(0)``). Its normalisation uses neither the batch nor the tile, so tiling changes a pixel only
through what the tile cuts off: the zero padding at tile borders inside its ~41-pixel
receptive field, and the pooling grid where a tile starts off a multiple of 4.

Measured against the whole image in one pass, on 2,946 random cases (images 4-72 pixels a
side, tiles 8-64, any overlap below the tile, at most 300 tiles) and 1,500 cases of a
hypothesis search steered towards the worst: mean absolute difference per slice typically
0.012, at worst 0.054 (small tiles without overlap, e.g. a 9x9 image in 8-pixel tiles or
39x63 in 8-pixel tiles: nearly every pixel is near a seam); maximum per pixel 0.272, which
is this untrained net's whole output range (0.41-0.68): at a few pixels near a seam its
output swings from one end to the other. The bounds below hold these measurements with a
margin, so that they cannot silently grow; a single tile gives the whole-image result
(within 1e-5), and batch size and stacking change nothing (within 1e-5, float rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from napari_domain_adapt.core.config import ModelSpec
from napari_domain_adapt.core.inference import predict_tiled, tile_starts
from napari_domain_adapt.core.models import UNet

MEAN_BOUND = 0.08
MAX_BOUND = 0.30
MAX_TILES = 300


@pytest.fixture(scope="module")
def network() -> UNet:
    torch.manual_seed(0)
    return UNet(ModelSpec(depth=2, width=4)).eval()


def whole(network: UNet, image: np.ndarray) -> np.ndarray:
    """Probabilities of the whole image in one pass, no tiles."""
    with torch.inference_mode():
        logits = network(torch.from_numpy(image)[:, None])
    return torch.sigmoid(logits)[:, 0].numpy()


@st.composite
def cases(draw) -> tuple[np.ndarray, int, int, int]:
    """An image stack, a tile size, an overlap below it and a batch size."""
    count = draw(st.integers(1, 2))
    height, width = draw(st.integers(4, 64)), draw(st.integers(4, 64))
    tile = draw(st.integers(8, 64))
    overlap = draw(st.integers(0, tile - 1))
    rows = len(tile_starts(height, tile, overlap, 4))
    assume(count * rows * len(tile_starts(width, tile, overlap, 4)) <= MAX_TILES)
    seed = draw(st.integers(0, 2**16))
    image = np.random.default_rng(seed).standard_normal((count, height, width))
    return image.astype(np.float32), tile, overlap, draw(st.integers(1, 4))


@pytest.mark.slow  # many generated examples: `pytest -m slow`
@settings(deadline=None, max_examples=60)
@given(cases())
def test_tiled_is_the_whole_image_up_to_border_effects(network, case) -> None:
    image, tile, overlap, batch = case
    tiled = predict_tiled(network, image, tile, overlap, batch)
    assert tiled.shape == image.shape
    assert tiled.dtype == np.float32
    assert np.isfinite(tiled).all()
    assert tiled.min() >= 0.0
    assert tiled.max() <= 1.0
    difference = np.abs(tiled - whole(network, image))
    if tile >= max(image.shape[1:]):  # one tile: no border but the image's own
        assert difference.max() < 1e-5
    for slice_difference in difference:
        assert slice_difference.mean() <= MEAN_BOUND
    assert difference.max() <= MAX_BOUND


@pytest.mark.slow  # many generated examples: `pytest -m slow`
@settings(deadline=None, max_examples=30)
@given(cases())
def test_batch_size_and_stacking_change_nothing(network, case) -> None:
    image, tile, overlap, batch = case
    tiled = predict_tiled(network, image, tile, overlap, batch)
    one_by_one = np.stack([predict_tiled(network, s, tile, overlap, 1) for s in image])
    np.testing.assert_allclose(tiled, one_by_one, rtol=0, atol=1e-5)
