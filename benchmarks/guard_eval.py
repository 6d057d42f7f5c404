"""How good is the guard's choice? Its verdicts against the target test labels.

For every adaptive unit of the accuracy benchmark the guard
(:mod:`napari_domain_adapt.core.guard`) prefers the source-only or the adapted model
without target labels; the target test labels, which only this evaluation sees, say
which one was better. Two numbers answer the question:

- the **hit rate**: the share of units where the guard preferred the truly better model,
  over the units where the two differ by more than one F1 point (a smaller difference is
  noise, and either choice is fine);
- the **mean target F1** of keeping what the guard prefers, beside always keeping the
  source-only model, always the adapted one, and the oracle (the better of the two). A
  useful guard beats both "always" columns and comes close to the oracle.

A unit is a dict (:func:`unit_row` makes one from a verdict)::

    {"key": ..., "true_f1": {"source-only": 0.69, "adapted": 0.74},
     "prefer": "adapted", "estimates": {"source-only": {...}, "adapted": {...}}}

``run`` judges every finished adaptive unit of an accuracy-benchmark results folder whose
model and whose seed's source-only model were kept (``OUT/models``), as ``adapt --baseline
--keep-better`` would: on the source's labelled *test* split and the target's *train*
images. The true F1 of both are the units' recorded target test scores. One JSON per unit
under ``OUT/guard``; ``report`` gives the table::

    python benchmarks/guard_eval.py run --profile screen --out OUT
    python benchmarks/guard_eval.py report --profile screen --out OUT
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# The accuracy benchmark beside this file: its profiles, datasets, results and command line.
sys.path.insert(0, str(Path(__file__).parent))
import accuracy
from napari_domain_adapt.core import judge
from napari_domain_adapt.core.checkpoints import load_checkpoint
from napari_domain_adapt.core.guard import ADAPTED, SOURCE_ONLY, GuardVerdict
from napari_domain_adapt.core.io import atomic_write
from profiles import PROFILES
from tables import publish, read_results
from unit_training import load_split

MODELS = (SOURCE_ONLY, ADAPTED)
#: One F1 point: units whose models differ by no more than this are not counted as decisive.
MIN_DIFFERENCE = 0.01


def unit_row(key: str, source_only_f1: float, adapted_f1: float, verdict: GuardVerdict) -> dict:
    """One unit's record: both models' true target F1 and what the guard chose, and why."""
    return {
        "key": key,
        "true_f1": {SOURCE_ONLY: float(source_only_f1), ADAPTED: float(adapted_f1)},
        "prefer": verdict.prefer,
        "decided_by": verdict.decided_by,
        "reason": verdict.reason,
        "estimates": {name: dict(values) for name, values in verdict.estimates.items()},
    }


def _check(unit: dict) -> None:
    name = unit.get("key")
    if unit["prefer"] not in MODELS:
        raise ValueError(f"{name}: prefer must be one of {MODELS}; got {unit['prefer']!r}")
    if set(unit["true_f1"]) != set(MODELS):
        raise ValueError(f"{name}: true_f1 needs {MODELS}; got {sorted(unit['true_f1'])}")


def evaluate(units: list[dict], min_difference: float = MIN_DIFFERENCE) -> dict:
    """The guard's hit rate on decisive units and the mean F1 of each way of choosing.

    A unit is decisive where its models' true F1 differ by more than ``min_difference``
    (a difference of exactly one point, up to rounding, is not). ``hit_rate`` is None
    without a decisive unit. ``estimate_error`` is the mean absolute error of the guard's
    ATC F1 estimate against the true F1, over both models of the units that carry it.
    """
    if not units:
        raise ValueError("no unit to evaluate the guard on")
    for unit in units:
        _check(unit)
    hits = decisive = 0
    for unit in units:
        difference = unit["true_f1"][ADAPTED] - unit["true_f1"][SOURCE_ONLY]
        if abs(difference) > min_difference + 1e-9:
            decisive += 1
            better = ADAPTED if difference > 0 else SOURCE_ONLY
            hits += unit["prefer"] == better
    errors = [
        abs(unit["estimates"][name]["target_f1"] - unit["true_f1"][name])
        for unit in units
        for name in MODELS
        if "target_f1" in unit.get("estimates", {}).get(name, {})
    ]
    mean = statistics.fmean
    return {
        "units": len(units),
        "decisive": decisive,
        "hits": hits,
        "hit_rate": hits / decisive if decisive else None,
        "preferred_adapted": sum(unit["prefer"] == ADAPTED for unit in units),
        "mean_f1": {
            "guard": mean(unit["true_f1"][unit["prefer"]] for unit in units),
            SOURCE_ONLY: mean(unit["true_f1"][SOURCE_ONLY] for unit in units),
            ADAPTED: mean(unit["true_f1"][ADAPTED] for unit in units),
            "oracle": mean(max(unit["true_f1"].values()) for unit in units),
        },
        "estimate_error": mean(errors) if errors else None,
    }


def markdown(summary: dict, label: str = "all") -> str:
    """A table of :func:`evaluate`'s summary: hit rate, then mean target F1 in %."""
    f1 = summary["mean_f1"]
    rate = summary["hit_rate"]
    hit = "–" if rate is None else f"{100 * rate:.0f}% ({summary['hits']}/{summary['decisive']})"
    cells = [label, str(summary["units"]), hit]
    cells += [f"{100 * f1[name]:.2f}" for name in ("guard", SOURCE_ONLY, ADAPTED, "oracle")]
    return "\n".join(
        [
            "| units | n | hit rate | guard | always source-only | always adapted | oracle |",
            "|---|---|---|---|---|---|---|",
            "| " + " | ".join(cells) + " |",
        ]
    )


def judge_unit(result: dict, out: Path, data: Path, profile) -> dict | None:
    """The guard's record of one finished unit of the accuracy benchmark, or None where
    the unit is not an adaptation from a source or either model was not kept."""
    unit = result["unit"]
    target = unit["target"]
    if target is None or unit["kind"] in ("supervised", "source-free"):
        return None
    baseline_key = f"supervised__{unit['source']}__seed{unit['seed']}"
    paths = [out / "models" / f"{key}.pt" for key in (baseline_key, result["key"])]
    baseline_result = out / f"{baseline_key}.json"
    if not all(path.is_file() for path in [*paths, baseline_result]):
        return None
    baseline, adapted = (load_checkpoint(path) for path in paths)
    sizes = profile.pixel_sizes
    held = load_split(data, unit["source"], "test", pixel_sizes=sizes)
    images = load_split(data, target, "train", labels=False, pixel_sizes=sizes)
    verdict = judge(baseline, adapted, held, images)
    source_only_f1 = json.loads(baseline_result.read_text())["scores"][target]["f1"]
    return unit_row(result["key"], source_only_f1, result["scores"][target]["f1"], verdict)


def run(args: argparse.Namespace) -> int:
    """Judge every unit not judged yet."""
    profile = PROFILES[args.profile]
    folder = args.out / "guard"
    folder.mkdir(exist_ok=True)
    for result in read_results(args.out):
        path = folder / f"{result['key']}.json"
        if path.exists():
            continue
        row = judge_unit(result, args.out, args.data, profile)
        if row is None:
            continue
        with atomic_write(path) as temporary:
            temporary.write_text(json.dumps(row, indent=2) + "\n")
        true = {k: round(100 * v, 2) for k, v in row["true_f1"].items()}
        print(f"{row['key']}: prefers {row['prefer']}; true F1 {true}", flush=True)
    return 0


def report(args: argparse.Namespace) -> int:
    """The hit-rate table of the judged units, printed or written between markers."""
    units = [json.loads(p.read_text()) for p in sorted((args.out / "guard").glob("*.json"))]
    if not units:
        print(f"error: no judged unit under {args.out / 'guard'}", file=sys.stderr)
        return 2
    count = f"{len(units)} unit" + ("" if len(units) == 1 else "s")
    table = markdown(evaluate(units), f"{args.profile}: {count}")
    return publish(table, args.update, f"guard:{args.profile}")


def main(argv: list[str] | None = None) -> int:
    """Command line: the accuracy benchmark's options."""
    return accuracy.command_line(argv, __doc__.splitlines()[0], run, report)


if __name__ == "__main__":
    sys.exit(main())
