"""Training one unit of the accuracy benchmark: its datasets, its run and its scores.

A unit trains as its kind says (:data:`profiles.KINDS`), from the model of an earlier unit
where it starts from one, continues from its training state after a kill, and is scored on
each of its test splits. Target test labels only score.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

import corrections
from napari_domain_adapt.core import (
    Domain,
    InputError,
    PixelSize,
    SegmentationModel,
    TrainConfig,
    segmentation_scores,
    with_values,
)
from napari_domain_adapt.core.checkpoints import load_checkpoint
from napari_domain_adapt.core.io import atomic_write, load_dataset
from napari_domain_adapt.core.metrics import best_threshold
from napari_domain_adapt.core.resume import StateFile
from napari_domain_adapt.core.training import TrainFinished, train
from profiles import KINDS, SCALED, VARIANTS, Profile, Unit, base_config
from scale_pairs import PIXEL_SIZES, binned, load_with_pixel_size
from scribbles import simulate_scribbles

#: Steps between saves of a unit's training state, and between snapshots of its kept model
#: (see :func:`_snapshot`; a multiple of the first, as snapshots are read from the state).
STATE_EVERY = 50
SNAPSHOT_EVERY = 4 * STATE_EVERY


def load_split(
    data: Path, name: str, split: str, labels: bool = True, pixel_sizes: bool = False
) -> Domain:
    """A split of a shared dataset, or of one made from it (:data:`profiles.SCALED`), with
    its pixel size where ``pixel_sizes`` (always for a made one: its scale is what it tests)."""
    if name in SCALED:
        base, binning = SCALED[name]
        domain = binned(load_with_pixel_size(data, base, split), binning)
        if not labels:
            domain = Domain(
                domain.images, None, domain.masks, domain.name, pixel_size=domain.pixel_size
            )
        return domain
    domain = load_dataset(data / name, split, labels=labels, name=f"{name} {split}")
    if pixel_sizes:
        domain.pixel_size = PIXEL_SIZES.get(name)
    return domain


def _kind(kind: str) -> tuple[str, str | None, dict]:
    """A unit kind's mode, target labels seen, and settings changed (``KIND/VARIANT``)."""
    base, _, variant = kind.partition("/")
    mode, seen = KINDS.get(base, (base, None))
    return mode, seen, VARIANTS[variant] if variant else {}


def run_unit(
    unit: Unit,
    profile: Profile,
    data: Path,
    state: StateFile | None = None,
    models: Path | None = None,
) -> dict:
    """Train one unit and score it; target train labels only on slice 0, as its kind says.

    With ``state`` the training continues from where a killed run of the unit stopped (the
    correction loop: from its last finished round). A unit that starts from the model of an
    earlier unit (:attr:`Unit.starts_from`) reads it from the folder ``models``.
    """
    sizes = profile.pixel_sizes
    mode, seen, changes = _kind(unit.kind)
    initial = _starting_model(unit, models)
    config = with_values(base_config(profile, unit.source, mode, unit.seed), changes)
    source = None
    if unit.kind.partition("/")[0] == "source-free":
        config = dataclasses.replace(config, steps=profile.source_free_steps)
    else:
        source = load_split(data, unit.source, "train", pixel_sizes=sizes)
    tests = {name: load_split(data, name, "test", pixel_sizes=sizes) for name in unit.evaluate_on}
    if seen == "corrections":
        config = dataclasses.replace(config, steps=profile.correction_steps)
        model, summary = _corrections(unit, profile, data, config, source, initial, tests, state)
    else:
        target = None if unit.target is None else _target(data, unit, seen, sizes)
        finished = _trained(config, source, target, state, initial)
        model = finished.model
        summary = {**_summary(finished), "scores": _scores(model, tests)}
    return {
        "model": model,
        "unit": dataclasses.asdict(unit),
        "key": unit.key,
        **summary,
        "config": config.to_dict(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _starting_model(unit: Unit, models: Path | None) -> SegmentationModel | None:
    """The model of the unit that ``unit`` starts from, read from ``models``; None if none."""
    start = unit.starts_from
    if start is None:
        return None
    path = None if models is None else models / f"{start.key}.pt"
    if path is None or not path.is_file():
        raise InputError(
            f"unit {unit.key} starts from the model of unit {start.key}, which is not there "
            f"({path or 'no models folder given'}); expected that unit to be run first"
        )
    return load_checkpoint(path)


def _target(data: Path, unit: Unit, seen: str | None, sizes: bool) -> Domain:
    """The target's train split with the labels the unit's kind sees: none, slice 0's, or
    simulated scribbles on slice 0."""
    target = load_split(data, unit.target, "train", labels=seen is not None, pixel_sizes=sizes)
    if seen is None:
        return target
    labels, kind = np.zeros_like(target.labels), "dense"
    labels[0] = target.labels[0]
    if seen == "scribbles":
        labels[0] = simulate_scribbles(labels[0], np.random.default_rng(unit.seed))
        kind = "sparse"
    return Domain(
        target.images,
        labels,
        target.masks,
        target.name,
        label_kind=kind,
        pixel_size=target.pixel_size,
    )


def _trained(
    config: TrainConfig,
    source: Domain | None,
    target: Domain | None,
    state: StateFile | None,
    initial: SegmentationModel | None = None,
    snapshots: bool = True,
) -> TrainFinished:
    """The end of one training run (continued from ``state`` where it has one)."""
    finished = None
    for event in train(config, source, target, initial=initial, state=state):
        if isinstance(event, TrainFinished):
            finished = event
        elif snapshots and state is not None and event.step % SNAPSHOT_EVERY == 0:
            _snapshot(state, event.step)
    return finished


def _summary(finished: TrainFinished) -> dict:
    """What a result keeps of a run: the last steps' mean losses, its time and length."""
    tail = finished.history[-50:]
    return {
        "last_50_steps": {
            name: statistics.fmean(values)
            for name in (tail[0] if tail else {})
            if name != "step" and (values := [h[name] for h in tail if h[name] is not None])
        },
        "seconds": round(finished.elapsed, 1),  # training time, before a kill and after
        "steps": finished.steps,
        "device": finished.device,
    }


def _corrections(
    unit: Unit,
    profile: Profile,
    data: Path,
    config: TrainConfig,
    source: Domain,
    initial: SegmentationModel,
    tests: dict[str, Domain],
    state: StateFile | None,
) -> tuple[SegmentationModel, dict]:
    """The correction loop (corrections.py) from the mean teacher's model, each round
    trained by ``config`` with the source; its rounds are kept beside ``state``."""
    # The labels of train slice 0 are the simulated user's; the training sees its strokes.
    target = load_split(data, unit.target, "train", pixel_sizes=profile.pixel_sizes)

    def train_round(model: SegmentationModel, annotated: Domain, path: Path) -> tuple:
        finished = _trained(config, source, annotated, StateFile(path, STATE_EVERY), model, False)
        return finished.model, _summary(finished)

    with contextlib.ExitStack() as stack:
        if state is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            folder = rounds_folder(state)
        model, rounds = corrections.correction_rounds(
            initial,
            target,
            profile.correction_rounds,
            folder,
            train_round,
            lambda model: _scores(model, tests),
            unit.seed,
        )
    last = rounds[-1]
    return model, {
        "last_50_steps": last.get("last_50_steps", {}),
        "seconds": round(sum(r["seconds"] for r in rounds), 1),
        "steps": sum(r.get("steps", 0) for r in rounds),
        "device": last.get("device"),
        "scores": last["scores"],
        "rounds": rounds,
    }


def rounds_folder(state: StateFile) -> Path:
    """Where a correction loop keeps its finished rounds: beside the unit's state."""
    return state.path.with_suffix(".rounds")


def _scores(model: SegmentationModel, tests: dict[str, Domain]) -> dict:
    """F1 and friends of ``model`` on each test split, also as if its scale were unknown
    where the model resamples it."""
    result = {}
    for name, test in tests.items():
        result[name] = _score(model, test, test.pixel_size)
        if model.zoom_for(test.pixel_size) is not None:
            result[f"{name} unscaled"] = _score(model, test, None)
    return result


def _score(model: SegmentationModel, test: Domain, pixel_size: PixelSize | None) -> dict:
    """F1 and friends of ``model`` on ``test`` (predicted at ``pixel_size``). The source's
    preprocessing (channel, CLAHE) is applied to every domain it scores."""
    probabilities = model.predict(test.images, test.masks, pixel_size=pixel_size)
    result = segmentation_scores(probabilities, test.labels, test.masks)
    result["oracle_threshold"], result["oracle_f1"] = best_threshold(
        probabilities, test.labels, test.masks
    )
    return result


def _snapshot(state: StateFile, step: int) -> None:
    """Keep the weights of the model the run would return now (the state holds them).

    For analysis after the fact (which step a label-free criterion would keep, and what the
    oracle would); kept beside the results, not in git.
    """
    saved = torch.load(state.path, map_location="cpu", weights_only=True)
    networks = saved["networks"]
    kept = networks.get("teacher", networks["segmentor"])
    folder = state.path.parent.parent / "snapshots" / state.path.stem
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / f"step{step:05d}.pt", overwrite=True) as temporary:
        torch.save({"step": step, "model": saved["config"]["model"], "weights": kept}, temporary)
