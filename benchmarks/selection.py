"""Which model to keep without target labels: label-free criteria against the oracle.

For every finished adaptive unit of the accuracy benchmark, each kept snapshot (every
``unit_training.SNAPSHOT_EVERY`` steps) and the final model are scored by label-free criteria
and, for comparison only, by the target test labels (the "oracle"):

- ``source_f1``: F1 on the *source* test split (source labels are known; a held-out check
  of what the model learned, blind to the target);
- ``consistency`` and ``entropy`` of :mod:`napari_domain_adapt.core.selection` (what
  training checks on target patches with ``selection.every``), on the whole target *train*
  images;
- ``prior_gap``: how far the share of target train pixels predicted as foreground (at 0.5,
  inside the field of view) lies from the share of foreground in the *source* train
  labels. A model whose target masks grow much thinner or thicker than the source's
  labels has drifted (adversarial VNC -> ISBI 2012 lost recall, not precision).

A snapshot is scored as the run would have returned it at that step: with the target's
BatchNorm statistics re-estimated (as training does at its end). One JSON per unit under
``--out/selection``; finished units are not redone.

    python benchmarks/selection.py run --profile full
    python benchmarks/selection.py report --profile full --update docs/results.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

# The accuracy benchmark beside this file: its datasets, results and command line.
sys.path.insert(0, str(Path(__file__).parent))
import accuracy
from napari_domain_adapt.core import TrainConfig, segmentation_scores
from napari_domain_adapt.core.checkpoints import SegmentationModel, load_checkpoint
from napari_domain_adapt.core.inference import predict_tiled
from napari_domain_adapt.core.io import atomic_write
from napari_domain_adapt.core.models import UNet, estimate_batch_statistics
from napari_domain_adapt.core.patches import PatchSampler
from napari_domain_adapt.core.preprocessing import field_of_view_masks, preprocess
from napari_domain_adapt.core.selection import CRITERIA as ONLINE_CRITERIA
from napari_domain_adapt.core.selection import label_free_criteria
from napari_domain_adapt.core.training import TARGET_STATISTICS_BATCHES
from tables import publish, read_results
from unit_training import load_split

#: Criteria and whether larger values are better: training's, the source test F1, and the
#: gap between the target's predicted and the source's labelled foreground share.
CRITERIA = {"source_f1": True, **ONLINE_CRITERIA, "prior_gap": False}


def _models(out: Path, key: str, config: TrainConfig) -> dict[int, SegmentationModel]:
    """The unit's snapshots by step, and its final model at its last step."""
    models = {}
    for path in sorted((out / "snapshots" / key).glob("step*.pt")):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        network = UNet(dataclasses.replace(config.model, **saved["model"]))
        network.load_state_dict(saved["weights"])
        models[saved["step"]] = SegmentationModel(network.eval(), config.preprocessing, config)
    models[config.steps] = load_checkpoint(out / "models" / f"{key}.pt")
    return models


def _with_target_statistics(model: SegmentationModel, images: np.ndarray, config) -> None:
    sampler = PatchSampler(images, config.patch_size, np.random.default_rng(config.seed))
    batches = (
        torch.from_numpy(sampler.sample(config.batch_size, jitter=False).images)
        for _ in range(TARGET_STATISTICS_BATCHES)
    )
    estimate_batch_statistics(model.network, batches)


def score_unit(out: Path, result: dict, data: Path) -> dict:
    """Every criterion and the oracle for each of the unit's models."""
    unit = result["unit"]
    config = TrainConfig.from_dict(result["config"])
    source_test = load_split(data, unit["source"], "test")
    source_train = load_split(data, unit["source"], "train")
    target_train = load_split(data, unit["target"], "train", labels=False)
    target_test = load_split(data, unit["target"], "test")
    pre = config.preprocessing
    masks = field_of_view_masks(target_train.images, pre, target_train.masks)
    prepared = preprocess(target_train.images, pre, masks)
    inside = np.ones(prepared.shape, bool) if masks is None else masks
    source_masks = field_of_view_masks(source_train.images, pre, source_train.masks)
    labelled = source_train.labels > 0
    source_share = float(
        labelled[source_masks].mean() if source_masks is not None else labelled.mean()
    )
    rows = []
    for step, model in sorted(_models(out, result["key"], config).items()):
        if step != config.steps and config.target_statistics:
            _with_target_statistics(model, prepared, config)
        test = model.predict(target_test.images, target_test.masks)
        source = model.predict(source_test.images, source_test.masks)
        labels = (target_test.labels, target_test.masks)
        rows.append(
            {
                "step": step,
                "oracle_f1": segmentation_scores(test, *labels)["f1"],
                "source_f1": segmentation_scores(source, source_test.labels, source_test.masks)[
                    "f1"
                ],
                **_target_criteria(model.network, prepared, inside, source_share),
            }
        )
    return {"key": result["key"], "unit": unit, "models": rows}


def _target_criteria(
    network: torch.nn.Module, images: np.ndarray, inside: np.ndarray, source_share: float
) -> dict[str, float]:
    """Training's criteria, as it checks them but on whole target train images, and the
    foreground shares behind ``prior_gap``."""
    predictions = []  # the plain prediction comes first, then the perturbed one

    def predict(batch: np.ndarray) -> np.ndarray:
        predictions.append(predict_tiled(network, batch))
        return predictions[-1]

    criteria = label_free_criteria(predict, images)
    target_share = float((predictions[0] >= 0.5)[inside].mean())
    return {
        **criteria,
        "target_share": target_share,
        "source_share": source_share,
        "prior_gap": abs(target_share - source_share),
    }


def run(args: argparse.Namespace) -> int:
    """Score every finished adaptive unit that has no selection file yet."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    folder = args.out / "selection"
    folder.mkdir(exist_ok=True)
    for result in read_results(args.out):
        done = folder / f"{result['key']}.json"
        if result["unit"]["kind"] == "supervised" or done.exists():
            continue
        if not (args.out / "models" / f"{result['key']}.pt").exists():
            print(f"{result['key']}: no saved model, skipped", flush=True)
            continue
        scored = score_unit(args.out, result, args.data)
        with atomic_write(done) as temporary:
            temporary.write_text(json.dumps(scored, indent=2) + "\n")
        print(f"{result['key']}: {len(scored['models'])} models scored", flush=True)
    return 0


def pick(models: list[dict], criterion: str) -> dict:
    """The model the criterion keeps (the later one on ties)."""
    sign = 1 if CRITERIA[criterion] else -1
    return max(reversed(models), key=lambda row: sign * row[criterion])


def report(args: argparse.Namespace) -> int:
    """Markdown: per mode, the oracle F1 of each criterion's pick, of the last model, of the
    best model by the test labels (mean over units)."""
    units = [json.loads(p.read_text()) for p in sorted((args.out / "selection").glob("*.json"))]
    columns = ["last", *CRITERIA, "oracle"]
    lines = [
        f"| mode | units | {' | '.join(columns)} |",
        "|---|---|" + "---|" * len(columns),
    ]
    modes = sorted({u["unit"]["kind"] for u in units})
    groups = [(mode, [u for u in units if u["unit"]["kind"] == mode]) for mode in modes]
    if len(groups) > 1:  # the goal is on average over every unit
        groups.append(("all", units))
    for mode, group in groups:
        chosen = [u["models"] for u in group]
        cells = {
            "last": [m[-1]["oracle_f1"] for m in chosen],
            # Units scored before a criterion existed lack it: its mean is over the others.
            **{c: [pick(m, c)["oracle_f1"] for m in chosen if c in m[0]] for c in CRITERIA},
            "oracle": [max(r["oracle_f1"] for r in m) for m in chosen],
        }
        values = " | ".join(_mean_cell(cells[c], len(chosen)) for c in columns)
        lines.append(f"| {mode} | {len(chosen)} | {values} |")
    return publish("\n".join(lines), args.update, f"selection:{args.profile}")


def _mean_cell(values: list[float], units: int) -> str:
    """Mean F1 in %, with the number of units where it covers fewer than the row's."""
    if not values:
        return "–"
    mean = f"{100 * statistics.fmean(values):.2f}"
    return mean if len(values) == units else f"{mean} (n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    """Command line of the selection study: the accuracy benchmark's options."""
    return accuracy.command_line(argv, __doc__.splitlines()[0], run, report)


if __name__ == "__main__":
    sys.exit(main())
