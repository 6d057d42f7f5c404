"""An EM pair with a known shift of scale, built at run time from the shared datasets.

ISBI 2012 (4 nm pixels) is the source; the Drosophila VNC (4.6 nm), binned by 2 to 9.2 nm,
is the target: the same kind of tissue seen 2.3 times coarser, as a user with a faster
or lower-resolution acquisition would bring it. Nothing is written to disk: the binned
target exists only in memory, so the data's terms (no redistribution) are kept.

    python benchmarks/scale_pairs.py --data ../shared/data   # describes the pair
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.io import load_dataset
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.core.resampling import resample_stack, scale_factor

#: The shared datasets beside the repository (``../shared/data`` from its root).
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: In-plane pixel sizes, from each dataset's README.md.
PIXEL_SIZES = {
    "isbi2012": PixelSize((4.0, 4.0), "nm"),
    "vnc": PixelSize((4.6, 4.6), "nm"),
}


@dataclass
class ScalePair:
    """A labelled source, and a target's training and test splits at another pixel size."""

    source: Domain
    target: Domain
    target_test: Domain

    @property
    def factor(self) -> float | None:
        """The zoom that brings the target to the source's pixel size."""
        return scale_factor(self.source.pixel_size, self.target.pixel_size)


def load_with_pixel_size(data: Path, name: str, split: str) -> Domain:
    """``data/name/split`` with its labels (and masks), its pixel size set."""
    domain = load_dataset(data / name, split, labels=True, name=f"{name} {split}")
    domain.pixel_size = PIXEL_SIZES[name]
    return domain


def _binned_masks(masks: np.ndarray, factor: float) -> np.ndarray:
    """Binary masks resampled linearly, then thresholded at a half: thin structures keep
    their share of pixels, which nearest-neighbour sampling would drop or thicken."""
    resampled = resample_stack(masks.astype(np.float32), factor, order=1)
    return (resampled >= 0.5).astype(np.uint8)


def binned(domain: Domain, binning: int) -> Domain:
    """``domain`` imaged ``binning`` times coarser: smoothed and resampled images (uint8
    where the originals are), labels and masks resampled then thresholded."""
    factor = 1.0 / binning
    rgb = domain.images.ndim == 4
    images = resample_stack(domain.images, factor, order=1, rgb=rgb)
    if np.issubdtype(domain.images.dtype, np.integer):
        limits = np.iinfo(domain.images.dtype)
        images = np.clip(np.rint(images), limits.min, limits.max).astype(domain.images.dtype)
    labels = None if domain.labels is None else _binned_masks(domain.labels, factor)
    masks = None if domain.masks is None else _binned_masks(domain.masks, factor)
    size = None
    if domain.pixel_size is not None:
        size = PixelSize(
            tuple(s * binning for s in domain.pixel_size.sizes), domain.pixel_size.unit
        )
    name = f"{domain.name}, binned {binning}x"
    return Domain(images, labels, masks, name=name, pixel_size=size)


def em_scale_pair(data: Path = DATA, binning: int = 2) -> ScalePair:
    """ISBI 2012 (train) as the source; the VNC's train and test splits binned by
    ``binning`` as the target."""
    return ScalePair(
        load_with_pixel_size(data, "isbi2012", "train"),
        binned(load_with_pixel_size(data, "vnc", "train"), binning),
        binned(load_with_pixel_size(data, "vnc", "test"), binning),
    )


def describe(pair: ScalePair) -> str:
    """The pair in a few lines: sizes, pixel sizes, foreground share, the zoom between them."""
    lines = []
    for domain in (pair.source, pair.target, pair.target_test):
        share = float(domain.labels.mean()) if domain.labels is not None else float("nan")
        lines.append(
            f"{domain.name}: {domain.images.shape}, {domain.pixel_size}, foreground {share:.1%}"
        )
    lines.append(f"zoom from the target to the source: {pair.factor:.4g}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--binning", type=int, default=2)
    args = parser.parse_args()
    print(describe(em_scale_pair(args.data, args.binning)))


if __name__ == "__main__":
    main()
