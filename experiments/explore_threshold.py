"""Exploration: can a threshold chosen without target labels recover a model's ranking?

A source-only STARE model ranks DRIVE's pixels better than threshold 0.5 shows (its F1 at
the best threshold on DRIVE's test labels is about 2 points higher). This scores a saved
model on TARGET's test split at 0.5 and at two thresholds chosen without target labels:

- ``source``: the threshold with the best F1 on the *source* test split (the source's
  labels may be seen);
- ``otsu``: Otsu's threshold of the model's probabilities on the target test images,
  inside the field of view (no labels at all);

with the oracle (the best threshold on the target test labels) beside them, only to show
what was within reach; no threshold is chosen by it. Inference only.

    python experiments/explore_threshold.py \
        benchmarks/results/full/models/supervised__stare__seed0.pt stare drive
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from skimage.filters import threshold_otsu

# benchmarks/unit_training.py: the benchmark's datasets.
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import unit_training
from napari_domain_adapt.core import segmentation_scores
from napari_domain_adapt.core.checkpoints import load_checkpoint
from napari_domain_adapt.core.metrics import best_threshold


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line: F1 on the target at each threshold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_checkpoint(args.model)
    source = unit_training.load_split(args.data, args.source, "test")
    target = unit_training.load_split(args.data, args.target, "test")
    on_source = model.predict(source.images, source.masks)
    on_target = model.predict(target.images, target.masks)
    inside = on_target if target.masks is None else on_target[target.masks > 0]
    thresholds = {
        "0.5": 0.5,
        "source": best_threshold(on_source, source.labels, source.masks)[0],
        "otsu": float(threshold_otsu(inside)),
        "oracle": best_threshold(on_target, target.labels, target.masks)[0],
    }
    row = {}
    for name, threshold in thresholds.items():
        f1 = segmentation_scores(on_target, target.labels, target.masks, threshold)["f1"]
        row[name] = {"threshold": round(threshold, 3), "f1": round(100 * f1, 2)}
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
