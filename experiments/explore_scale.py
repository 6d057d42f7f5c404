"""Exploration: does resampling the target to the source's scale help a trained model?

Fundus cameras differ in field of view: STARE's disc is about 630 pixels across, DRIVE's
538 (the diameter of a disc of the mask's area; STARE's mask is estimated from the images),
so STARE's vessels are about 1.17 times wider in pixels. This scores a saved model on
TARGET's test split with each test image resampled by ZOOM before prediction and its
probabilities resampled back, at threshold 0.5, with the oracle F1 (best threshold on the
test labels, shown only to separate ranking from calibration) beside it. The zoom that
matches the discs (``--source``: the source's diameter over the target's) is label free;
no model or threshold is chosen here. Inference only.

    python experiments/explore_scale.py \
        benchmarks/results/full/models/supervised__stare__seed1.pt drive 1.0 1.3 --source stare
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from skimage.transform import rescale, resize

# benchmarks/profiles.py and unit_training.py: the benchmark's datasets.
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import profiles
import unit_training
from napari_domain_adapt.core import segmentation_scores
from napari_domain_adapt.core.checkpoints import load_checkpoint
from napari_domain_adapt.core.metrics import best_threshold
from napari_domain_adapt.core.preprocessing import field_of_view_masks


def disc_diameter(name: str, data: Path) -> float:
    """Mean diameter (pixels) of a disc with the area of each train image's field of view."""
    train = unit_training.load_split(data, name, "train", labels=False)
    spec = profiles.modality_preprocessing(name)
    masks = field_of_view_masks(train.images, spec, train.masks)
    return float(np.mean([2 * np.sqrt(m.sum() / np.pi) for m in masks]))


def zoomed_probabilities(model, images: np.ndarray, masks, zoom: float) -> np.ndarray:
    """Each image resampled by ``zoom``, predicted, and its probabilities resampled back."""
    out = []
    for index, image in enumerate(images):
        mask = None if masks is None else masks[index]
        if zoom != 1:
            axis = -1 if image.ndim == 3 else None
            image = rescale(image.astype(np.float32), zoom, channel_axis=axis, order=1)
            image = np.clip(np.round(image), 0, 255).astype(np.uint8)
            if mask is not None:
                mask = rescale(mask.astype(np.float32), zoom, order=0) > 0.5
        probabilities = model.predict(image[None], None if mask is None else mask[None])[0]
        out.append(resize(probabilities, images.shape[1:3], order=1))
    return np.stack(out)


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per zoom."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("target")
    parser.add_argument("zooms", type=float, nargs="*")
    parser.add_argument("--source", help="also the zoom that matches this dataset's discs")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_checkpoint(args.model)
    test = unit_training.load_split(args.data, args.target, "test")
    zooms = list(args.zooms)
    if args.source:
        source, target = (disc_diameter(n, args.data) for n in (args.source, args.target))
        print(json.dumps({"disc_diameter": {args.source: source, args.target: target}}))
        zooms.append(round(source / target, 3))
    for zoom in zooms:
        probabilities = zoomed_probabilities(model, test.images, test.masks, zoom)
        scores = segmentation_scores(probabilities, test.labels, test.masks)
        threshold, oracle = best_threshold(probabilities, test.labels, test.masks)
        row = {"zoom": zoom}
        row.update({k: round(100 * scores[k], 2) for k in ("f1", "precision", "recall")})
        row.update(oracle_f1=round(100 * oracle, 2), oracle_threshold=round(threshold, 2))
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
