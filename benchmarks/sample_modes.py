"""The user guide's mode table: the sample pair in the widget's default settings.

Trains each MODE on the napari sample (8 source and 8 target slices of 256 x 256) with the
settings the widget starts with (the ``laptop`` preset: 600 steps, patches of 64, batch 8,
U-Net depth 3 and width 16, checks every 50 steps; seed 0, CPU) and one labelled target
slice (slice 3), and scores the target's 7 other slices at threshold 0.5. One JSON line
per mode.

    OMP_NUM_THREADS=1 python benchmarks/sample_modes.py mean-teacher semi-supervised
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from napari_domain_adapt.core import (
    IMAGE_KINDS,
    MODES,
    Domain,
    fit,
    make_sample_pair,
    preset,
    segmentation_scores,
)

LABELLED = 3


def main(argv: list[str] | None = None) -> int:
    """Train and score each mode given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="+", choices=MODES)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pair = make_sample_pair(n_source=8, n_target=8, size=256, seed=0)
    labels = np.zeros_like(pair.target_labels)
    labels[LABELLED] = pair.target_labels[LABELLED]
    source = Domain(pair.source_image, pair.source_labels, name="source")
    target = Domain(pair.target_image, labels, name="target")
    others = [i for i in range(len(labels)) if i != LABELLED]
    for mode in args.modes:
        config = preset("laptop", mode=mode, preprocessing=IMAGE_KINDS["em"], seed=0, device="cpu")
        start = time.perf_counter()
        finished = fit(config, source, target)
        minutes = (time.perf_counter() - start) / 60
        probabilities = finished.model.predict(pair.target_image[others])
        scores = segmentation_scores(probabilities, pair.target_labels[others] > 0)
        row = {"mode": mode, "minutes": round(minutes, 1)}
        row.update({k: round(scores[k], 3) for k in ("f1", "precision", "recall")})
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
