"""Exploration behind the default normalisation: one source-only model, scored several ways.

Trains a source-only U-Net on SOURCE's train split and scores it on TARGET's test split at
threshold 0.5, as trained ("plain"), with the field of view estimated on the target
("fov"; fundus only, EM scores as "plain"), and with that plus BatchNorm statistics
re-estimated on target train patches ("fov+adabn"); beside each, the F1 at the best
threshold on the test labels (an oracle, shown only to separate ranking from calibration).
One seed: exploration, not a result.

    python experiments/explore_normalisation.py drive stare --norm batch --steps 600
    python experiments/explore_normalisation.py vnc isbi2012 \
        --model benchmarks/results/full/models/supervised__vnc__seed0.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

# benchmarks/profiles.py and unit_training.py: the benchmark's datasets and configuration.
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import profiles
import unit_training
from napari_domain_adapt.core import segmentation_scores
from napari_domain_adapt.core.checkpoints import SegmentationModel, load_checkpoint
from napari_domain_adapt.core.metrics import best_threshold
from napari_domain_adapt.core.models import estimate_batch_statistics
from napari_domain_adapt.core.patches import PatchSampler
from napari_domain_adapt.core.preprocessing import field_of_view_masks, preprocess
from napari_domain_adapt.core.training import fit


def main(argv: list[str] | None = None) -> int:
    """Train once, print the scores as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--profile", default="full", choices=sorted(profiles.PROFILES))
    parser.add_argument(
        "--model", type=Path, help="score this checkpoint (e.g. a benchmark unit's) instead"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    profile = dataclasses.replace(profiles.PROFILES[args.profile], steps=args.steps)
    config = profiles.base_config(profile, args.source, "source-only", 0)
    plain = dataclasses.replace(config.preprocessing, field_of_view=False)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, norm=args.norm), preprocessing=plain
    )
    source = unit_training.load_split(args.data, args.source, "train")
    target = unit_training.load_split(args.data, args.target, "train", labels=False)
    test = unit_training.load_split(args.data, args.target, "test")
    if args.model is None:
        network = fit(config, source).model.network
    else:
        network = load_checkpoint(args.model).network
    result: dict[str, object] = {"source": args.source, "target": args.target, **vars(args)}
    result.pop("data")
    result["model"] = None if args.model is None else str(args.model)

    def score(name: str, model: SegmentationModel) -> None:
        probabilities = model.predict(test.images, test.masks)
        f1 = segmentation_scores(probabilities, test.labels, test.masks)["f1"]
        oracle = best_threshold(probabilities, test.labels, test.masks)[1]
        result[name] = {"f1": round(100 * f1, 2), "oracle_f1": round(100 * oracle, 2)}

    score("plain", SegmentationModel(network, plain))
    fov = profiles.modality_preprocessing(args.source)  # fundus: with the field of view
    score("fov", SegmentationModel(network, fov))
    masks = field_of_view_masks(target.images, fov, target.masks)
    sampler = PatchSampler(
        preprocess(target.images, fov, masks), config.patch_size, np.random.default_rng(0)
    )
    batches = (
        torch.from_numpy(sampler.sample(config.batch_size, jitter=False).images) for _ in range(25)
    )
    if estimate_batch_statistics(network, batches):
        score("fov+adabn", SegmentationModel(network, fov))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
