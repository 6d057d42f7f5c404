"""The accuracy benchmark's correction loop: scribbles on a model's worst errors, more training.

After an unsupervised run a user looks at one target slice, paints over the largest mistakes
(about 1% of its pixels, both classes) and continues training, for a few rounds. Here the
user is simulated from the labels of target *train* slice 0
(:func:`scribbles.correction_scribbles`); target test labels only score, through ``score``.
Every finished round is kept in a folder (model, scribbles, record), so a killed unit goes on
from its last finished round, and inside a round from its training state.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_domain_adapt.core import Domain, InputError, SegmentationModel, segmentation_scores
from napari_domain_adapt.core.checkpoints import load_checkpoint, save_checkpoint
from napari_domain_adapt.core.io import atomic_write
from scribbles import UNLABELLED, correction_scribbles
from tables import cell, mean_of_pairs, scores_of

#: The unit kind of the loop (see profiles.KINDS), and the kind of its starting model.
KIND = "mean-teacher+corrections"
STARTS_FROM = "mean-teacher"

#: Continue training ``model`` on a target with sparse labels on slice 0; keep the run's
#: state at the path given. Returns the new model and the round's record (seconds, steps).
TrainRound = Callable[[SegmentationModel, Domain, Path], tuple[SegmentationModel, dict]]


def correction_rounds(
    model: SegmentationModel,
    target: Domain,
    rounds: int,
    folder: Path,
    train_round: TrainRound,
    score: Callable[[SegmentationModel], dict],
    seed: int,
    fraction: float = 0.01,
) -> tuple[SegmentationModel, list[dict]]:
    """The final model and a record per round (round 0: ``model`` as given), each with
    ``score``'s scores.

    ``target``: the target's train split, labels dense; only slice 0's labels are seen, by
    the simulated user. Each round predicts slice 0, adds scribbles on its largest errors
    (``fraction`` of the slice's pixels, drawn by ``seed`` and the round) to the earlier
    rounds' and continues training from the model with them as sparse labels.
    """
    if target.labels is None:
        raise InputError(f"{target.name} has no labels; expected the labels of slice 0")
    folder.mkdir(parents=True, exist_ok=True)
    record = _finished(folder, 0)
    if record is None:
        record = _save(folder, 0, {"round": 0, "seconds": 0.0, "scores": score(model)})
    records, scribbles = [record], np.zeros(target.labels.shape[1:], np.uint8)
    for number in range(1, rounds + 1):
        record = _finished(folder, number)
        if record is not None:  # done before a kill: its model and scribbles are kept
            model = load_checkpoint(folder / f"round{number}.pt")
            scribbles = np.load(folder / f"round{number}.npy")
            records.append(record)
            continue
        rng = np.random.default_rng([seed, number])
        drawn, before = _scribbled(model, target, scribbles, rng, fraction)
        labels = np.zeros(target.labels.shape, np.uint8)
        labels[0] = drawn
        annotated = Domain(
            target.images,
            labels,
            target.masks,
            target.name,
            label_kind="sparse",
            pixel_size=target.pixel_size,
        )
        state = folder / f"round{number}.state"
        model, trained = train_round(model, annotated, state)
        save_checkpoint(model, folder / f"round{number}.pt", overwrite=True)
        path = folder / f"round{number}.npy"
        with atomic_write(path, overwrite=True) as temporary, open(temporary, "wb") as handle:
            np.save(handle, drawn)  # a file handle: np.save would add .npy to the path
        record = {
            "round": number,
            "slice_f1_before": before,  # target train slice 0, the one the user sees
            "added": int(np.count_nonzero(drawn != scribbles)),
            "scribbled": int(np.count_nonzero(drawn != UNLABELLED)),
            **trained,
            "scores": score(model),
        }
        records.append(_save(folder, number, record))  # the round's last file: it is done
        state.unlink(missing_ok=True)
        scribbles = drawn
    return model, records


def _scribbled(
    model: SegmentationModel,
    target: Domain,
    scribbles: np.ndarray,
    rng: np.random.Generator,
    fraction: float,
) -> tuple[np.ndarray, float]:
    """``scribbles`` plus strokes on the largest errors of ``model`` on slice 0 of
    ``target``, by its labels; and the model's F1 on that slice (what the user sees)."""
    truth, mask = target.labels[0], None if target.masks is None else target.masks[0]
    probabilities = model.predict(
        target.images[:1], None if mask is None else mask[np.newaxis], pixel_size=target.pixel_size
    )[0]
    drawn = correction_scribbles(truth, probabilities >= 0.5, rng, fraction, scribbles, mask)
    return drawn, segmentation_scores(probabilities, truth, mask)["f1"]


def _finished(folder: Path, number: int) -> dict | None:
    path = folder / f"round{number}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _save(folder: Path, number: int, record: dict) -> dict:
    with atomic_write(folder / f"round{number}.json", overwrite=True) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")
    return record


def correction_table(results: list[dict], pairs: tuple[tuple[str, str], ...], rounds: int) -> str:
    """F1 on the target test split after each round of corrections, beside the unsupervised
    start (round 0) and the target-trained upper bound; the share of the gap between them
    that the last round closes, and the seconds of training per round."""
    names = ["unsupervised", *(f"round {n}" for n in range(1, rounds + 1)), "target-trained"]
    lines = [
        f"| pair | {' | '.join(names)} | gap closed | seconds per round |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    rows = []
    for source, target in pairs:
        units = [
            r
            for r in results
            if r["unit"]["kind"] == KIND
            and (r["unit"]["source"], r["unit"]["target"]) == (source, target)
        ]
        cells = [
            [u["rounds"][n]["scores"][target]["f1"] for u in units if len(u["rounds"]) > n]
            for n in range(rounds + 1)
        ]
        cells.append(scores_of(results, "supervised", target, None, target))
        rows.append(cells)
        seconds = [r["seconds"] for u in units for r in u["rounds"][1:]]
        lines.append(
            f"| {source} → {target} | {' | '.join(cell(c) for c in cells)} "
            f"| {_percent(_closed(cells))} "
            f"| {f'{statistics.fmean(seconds):.1f}' if seconds else '–'} |"
        )
    if len(rows) > 1:
        means = [mean_of_pairs([row[i] for row in rows]) for i in range(len(names))]
        closed = [_closed(row) for row in rows]
        mean = None if None in closed else statistics.fmean(closed)
        lines.append(
            f"| mean of the {len(rows)} pairs | {' | '.join(means)} | {_percent(mean)} | |"
        )
    return "\n".join(lines)


def _closed(cells: list[list[float]]) -> float | None:
    """The share of the gap from the start (first cell) to the upper bound (last cell) that
    the last round (the cell before it) closes, from the means over seeds."""
    start, end, upper = cells[0], cells[-2], cells[-1]
    if not (start and end and upper) or statistics.fmean(upper) <= statistics.fmean(start):
        return None
    start, end, upper = (statistics.fmean(c) for c in (start, end, upper))
    return (end - start) / (upper - start)


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f} %"
