"""Generated EM-like sample data with a real domain shift (no downloads).

Cell-membrane tessellations (wavy Voronoi cells) are rendered in two styles:

- source (style A): high contrast, mild blur and noise, faint texture, no organelles;
- target (style B): thicker membranes, larger cells, lower contrast, stronger blur, shot
  and Gaussian noise, uneven illumination, and dark organelle-like blobs inside the cells
  that are *not* membrane.

A model trained on the source fires on the target's blobs; those false positives look like
blobs, not like a membrane network, which an output-space domain classifier can notice.
Used by the demo, the napari sample-data contribution and the fast tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.draw import ellipse

from .device import require_memory
from .errors import InputError

#: Peak memory of :func:`make_sample_pair` per pixel of its slices (measured: 6 bytes).
BYTES_PER_PIXEL = 8

__all__ = [
    "SamplePair",
    "make_membrane_labels",
    "make_sample_pair",
    "render_source",
    "render_target",
]

# Typical cell diameter (pixels) and membrane thickness of each domain.
_SOURCE_CELL, _SOURCE_THICKNESS = 40.0, 3.0
_TARGET_CELL, _TARGET_THICKNESS = 48.0, 4.5


@dataclass(frozen=True)
class SamplePair:
    """A labelled source stack and a target stack of another style, all (N, H, W) uint8.

    Labels are 1 on membrane and 0 elsewhere. ``target_labels`` are ground truth for
    scoring only; an unsupervised adaptation run must not train on them.
    """

    source_image: np.ndarray
    source_labels: np.ndarray
    target_image: np.ndarray
    target_labels: np.ndarray


def _smooth_field(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field with zero mean and unit standard deviation.

    Large-sigma fields are filtered on a coarse grid and upsampled, which is much faster.
    """
    f = max(1, int(sigma // 2))
    small = (-(-shape[0] // f) + 1, -(-shape[1] // f) + 1)
    field = ndi.gaussian_filter(rng.standard_normal(small), sigma / f, mode="wrap")
    if f > 1:
        field = ndi.zoom(field, f, order=1)
    field = field[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-12)


def make_membrane_labels(
    shape: tuple[int, int], n_cells: int, thickness: float, rng: np.random.Generator
) -> np.ndarray:
    """Membrane mask (uint8, 1 = membrane) of a wavy Voronoi tessellation.

    Seeds lie on a jittered grid (extended one row/column beyond the image so border cells
    are closed); pixel coordinates are warped by smooth random displacements before the
    nearest-seed search so that boundaries look organic. The boundary between cells is then
    widened in image space to a band of about ``thickness`` pixels (varying slowly by
    about 15 %), so thickness is the same wherever the warp stretches.
    """
    h, w = shape
    ny = max(1, round(np.sqrt(n_cells * h / w)))
    nx = max(1, round(n_cells / ny))
    cy, cx = h / ny, w / nx
    gy, gx = np.meshgrid(np.arange(-1, ny + 1), np.arange(-1, nx + 1), indexing="ij")
    seeds = np.stack([(gy.ravel() + 0.5) * cy, (gx.ravel() + 0.5) * cx], axis=1)
    seeds += rng.uniform(-0.35, 0.35, seeds.shape) * (cy, cx)

    cell = float(np.sqrt(cy * cx))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for sigma, amp in ((cell / 3, cell * 0.12), (cell / 10, cell * 0.03)):
        yy += amp * _smooth_field(shape, sigma, rng)
        xx += amp * _smooth_field(shape, sigma, rng)
    _, ids = cKDTree(seeds).query(np.stack([yy.ravel(), xx.ravel()], axis=1))
    ids = ids.reshape(shape)
    # 1-pixel boundary where the cell id changes, then widened to the local thickness.
    edge = np.zeros(shape, dtype=bool)
    edge[:-1] |= ids[:-1] != ids[1:]
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    dist = ndi.distance_transform_edt(~edge)
    local = thickness * (1.0 + 0.15 * np.clip(_smooth_field(shape, cell / 4, rng), -2, 2))
    return (dist < local / 2).astype(np.uint8)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _texture(shape: tuple[int, int], rng: np.random.Generator, amp: float) -> np.ndarray:
    """Faint cytoplasm texture: low-frequency mottling plus finer grain."""
    return amp * (0.6 * _smooth_field(shape, 6.0, rng) + 0.4 * _smooth_field(shape, 1.5, rng))


def render_source(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Style A (source): bright cytoplasm, dark crisp membranes, mild blur and noise.

    No organelles, so a model trained here learns "dark = membrane".
    """
    shape = labels.shape
    cyto, membrane = 0.7 + rng.uniform(-0.03, 0.03), 0.2 + rng.uniform(-0.03, 0.03)
    img = cyto + _texture(shape, rng, 0.04)
    img[labels > 0] = membrane
    img = ndi.gaussian_filter(img, 1.0)
    img += rng.normal(0.0, 0.035, shape)
    return _to_uint8(img)


def _add_blobs(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
    """Paint dark elliptical organelles (mitochondria, vesicles) inside cells, in place."""
    inside = ndi.distance_transform_edt(labels == 0)
    candidates = np.flatnonzero(inside > 5)
    if candidates.size == 0:
        return
    n_cells = ndi.label(inside > 1)[1]
    n_blobs = min(rng.poisson(2.5 * max(n_cells, 1)), candidates.size)
    keep = inside >= 2  # blobs never touch the membrane
    for idx in rng.choice(candidates, size=n_blobs, replace=False):
        r, c = divmod(int(idx), img.shape[1])
        major = min(rng.uniform(3.0, 9.0), inside[r, c] - 2.0)
        minor = major / rng.uniform(1.0, 2.2)
        rr, cc = ellipse(r, c, major, minor, shape=img.shape, rotation=rng.uniform(0, np.pi))
        ok = keep[rr, cc]
        img[rr[ok], cc[ok]] = rng.uniform(0.28, 0.4)


def render_target(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Style B (target): low contrast, strong blur, shot + Gaussian noise, uneven light.

    Dark organelle blobs inside cells, as dark as membranes but unlabelled, make a
    source-trained model produce blob-shaped false positives.
    """
    shape = labels.shape
    cyto, membrane = 0.6 + rng.uniform(-0.03, 0.03), 0.35 + rng.uniform(-0.03, 0.03)
    img = cyto + _texture(shape, rng, 0.05)
    img[labels > 0] = membrane
    _add_blobs(img, labels, rng)
    img = ndi.gaussian_filter(img, 1.6)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ramp = (np.cos(angle) * yy / shape[0] + np.sin(angle) * xx / shape[1]) - 0.5
    img *= 1.0 + 0.35 * ramp + 0.05 * _smooth_field(shape, max(shape) / 6, rng)
    img = rng.poisson(np.clip(img, 0, None) * 160.0) / 160.0  # shot noise
    img += rng.normal(0.0, 0.035, shape)
    return _to_uint8(img)


def make_sample_pair(
    n_source: int = 8, n_target: int = 8, size: int = 256, seed: int = 0
) -> SamplePair:
    """Generated EM-like source/target stacks with a domain shift, deterministic by seed.

    The target has thicker membranes and larger cells besides its rendering style, so the
    shift is in geometry as well as appearance. The same arguments give bit-identical arrays.
    """
    if n_source < 1 or n_target < 1 or size < 32 or seed < 0:
        raise InputError(
            f"need n_source >= 1, n_target >= 1, size >= 32 and seed >= 0; got "
            f"n_source={n_source}, n_target={n_target}, size={size}, seed={seed}"
        )
    require_memory(BYTES_PER_PIXEL * (n_source + n_target) * size**2, f"a sample of size {size}")
    src_ss, tgt_ss = np.random.SeedSequence(seed).spawn(2)
    stacks = []
    for ss, n, cell, thick, render in (
        (src_ss, n_source, _SOURCE_CELL, _SOURCE_THICKNESS, render_source),
        (tgt_ss, n_target, _TARGET_CELL, _TARGET_THICKNESS, render_target),
    ):
        n_cells = max(1, round(size * size / cell**2))
        images, labels = [], []
        for child in ss.spawn(n):
            geo_rng, style_rng = (np.random.default_rng(s) for s in child.spawn(2))
            lab = make_membrane_labels((size, size), n_cells, thick, geo_rng)
            labels.append(lab)
            images.append(render(lab, style_rng))
        stacks += [np.stack(images), np.stack(labels)]
    return SamplePair(*stacks)
