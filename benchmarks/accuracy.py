"""Accuracy benchmark on real dataset pairs: source-only, adapted, semi-supervised, upper bound.

Every training run is one *unit* whose result is a JSON file under ``--out``; a unit whose
file exists is never run again, so the suite can be stopped at any time and resumed (also in
a later session); a unit killed part-way continues from its training state (saved every 50
steps under ``--out/.running``). Workers started side by side, one per core, share the
units without running one twice. A model trained with labels on dataset X is both the
source-only baseline of every pair X -> Y and the target-trained upper bound of every pair
Y -> X: it is trained once and scored on every test split it is needed for. Some kinds
start from the model of an earlier unit (:data:`profiles.STARTS_FROM`): a source-free mean
teacher from the source's supervised model, and the correction loop (corrections.py) from
the mean teacher.

    python benchmarks/accuracy.py run --data ../shared/data --out benchmarks/results/full
    python benchmarks/accuracy.py report --out benchmarks/results/full > table.md
    python benchmarks/accuracy.py report --update docs/results.md   # between the markers

``report`` gives the main table (marker ``benchmark:PROFILE``) and, where the profile has
those kinds, the source-free one (``benchmark:PROFILE:source-free``) and the correction
loop's (``benchmark:PROFILE:corrections``).

Scores are F1 of the foreground at threshold 0.5 on the target's test split, inside the
field-of-view mask where the dataset has one (DRIVE); STARE has none, so all its pixels
count. Target test labels only score: no model, iteration or threshold is chosen with them
(``oracle_f1``, the F1 at the best threshold on those labels, is kept only for honesty).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import fnmatch
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

# Modules beside this file: what is measured (profiles.py), the simulated annotations of
# the sparse-label units (scribbles.py), the correction loop (corrections.py), table cells
# (tables.py).
sys.path.insert(0, str(Path(__file__).parent))
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
from napari_domain_adapt.core.checkpoints import load_checkpoint, save_checkpoint
from napari_domain_adapt.core.io import atomic_write, load_dataset
from napari_domain_adapt.core.metrics import best_threshold
from napari_domain_adapt.core.resume import StateFile
from napari_domain_adapt.core.training import TrainFinished, train
from profiles import (
    KINDS,
    PAPER,
    PROFILES,
    SCALED,
    VARIANTS,
    Profile,
    Unit,
    base_config,
    default_out,
    plan,
)
from profiles import modality_preprocessing as modality_preprocessing  # experiments/ read it
from scale_pairs import PIXEL_SIZES, binned, load_with_pixel_size
from scribbles import simulate_scribbles
from tables import cell, mean_of_pairs, publish_tables, read_results, scores_of

#: Steps between saves of a unit's training state, and between snapshots of its kept model
#: (see :func:`_snapshot`; a multiple of the first, as snapshots are read from the state).
STATE_EVERY = 50
SNAPSHOT_EVERY = 4 * STATE_EVERY
#: Seconds a worker waits before looking again for a model another worker is training.
WAIT_SECONDS = 30


def _load(
    data: Path, name: str, split: str, labels: bool = True, pixel_sizes: bool = False
) -> Domain:
    """A split of a shared dataset, or of one made from it (:data:`SCALED`), with its pixel
    size where ``pixel_sizes`` (always for a made one: its scale is what it tests)."""
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
        source = _load(data, unit.source, "train", pixel_sizes=sizes)
    tests = {name: _load(data, name, "test", pixel_sizes=sizes) for name in unit.evaluate_on}
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
    target = _load(data, unit.target, "train", labels=seen is not None, pixel_sizes=sizes)
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
    target = _load(data, unit.target, "train", pixel_sizes=profile.pixel_sizes)

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


def run(args: argparse.Namespace) -> int:
    """Run every unit whose result file is missing.

    A unit that starts from another's model waits while another worker trains that one
    (and takes it over if that worker dies); in plan order one worker never waits.
    """
    profile = PROFILES[args.profile]
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    units = selected(plan(profile), getattr(args, "units", None))
    todo = [u for u in units if not _done(out, u)]
    print(f"{len(units)} units, {len(units) - len(todo)} done, {len(todo)} to run", flush=True)
    lost = sorted(
        {
            u.starts_from.key
            for u in todo
            if u.starts_from is not None
            and _done(out, u.starts_from)
            and not (out / "models" / f"{u.starts_from.key}.pt").exists()
        }
    )
    if lost:  # before hours of other units: a model kept only where the run took place
        print(
            f"error: units start from the models of {', '.join(lost)}, whose results are in "
            f"{out} but whose models are not in {out / 'models'}; expected them there "
            "(delete those results to train them again)",
            file=sys.stderr,
        )
        return 2
    (out / ".running").mkdir(exist_ok=True)  # training states and claims; not results
    count, waiting = 0, True
    while waiting:
        waiting = False
        for unit in [u for u in units if not _done(out, u)]:
            start = unit.starts_from
            if start is not None and not _done(out, start):
                waiting = True
                continue
            result = _run_claimed(unit, profile, args.data, out)
            if result is None:
                continue  # another worker has it, or finished it meanwhile
            count += 1
            f1 = {k: round(100 * v["f1"], 2) for k, v in result["scores"].items()}
            print(
                f"[{count}/{len(todo)}] {unit.key}: F1 {f1} in {result['seconds']} s", flush=True
            )
        if waiting:
            time.sleep(WAIT_SECONDS)
    return 0


def selected(units: list[Unit], pattern: str | None) -> list[Unit]:
    """The units whose key matches the shell-style ``pattern`` (all without one), with the
    units whose models they start from, in plan order."""
    if pattern is None:
        return units
    chosen = {u.key for u in units if fnmatch.fnmatchcase(u.key, pattern)}
    for unit in reversed(units):  # a unit's starting unit comes before it in the plan
        if unit.key in chosen and unit.starts_from is not None:
            chosen.add(unit.starts_from.key)
    return [u for u in units if u.key in chosen]


def _done(out: Path, unit: Unit) -> bool:
    return (out / f"{unit.key}.json").exists()


def _run_claimed(unit: Unit, profile: Profile, data: Path, out: Path) -> dict | None:
    """Run ``unit`` and keep its result and model, unless another worker holds it or has
    finished it; the result, or None."""
    running = out / ".running"
    with _claim(running / f"{unit.key}.lock") as claimed:
        if not claimed or _done(out, unit):
            return None
        state = StateFile(running / f"{unit.key}.state", every=STATE_EVERY)
        result = run_unit(unit, profile, data, state, out / "models")
        (out / "models").mkdir(exist_ok=True)
        save_checkpoint(result.pop("model"), out / "models" / f"{unit.key}.pt", True)
        with atomic_write(out / f"{unit.key}.json") as temporary:
            temporary.write_text(json.dumps(result, indent=2) + "\n")
        state.path.unlink(missing_ok=True)
        shutil.rmtree(rounds_folder(state), ignore_errors=True)
    return result


@contextlib.contextmanager
def _claim(path: Path) -> Iterator[bool]:
    """Whether this process holds ``path``'s lock; the system frees it when the process dies.

    Workers started side by side (one per core) each take the next unit nobody holds.
    """
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _paper(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def report(args: argparse.Namespace) -> int:
    """Print the Markdown tables of the finished units, or write each between its markers
    in ``--update``: the main table, and those of source-free runs and of the correction
    loop where the profile has them."""
    profile, marker = PROFILES[args.profile], f"benchmark:{args.profile}"
    results = list(read_results(args.out))
    tables = {marker: results_table(args.out, profile)}
    if "source-free" in profile.modes:
        tables[f"{marker}:source-free"] = source_free_table(results, profile.pairs)
    if corrections.KIND in profile.label_kinds:
        tables[f"{marker}:corrections"] = corrections.correction_table(
            results, profile.label_pairs, profile.correction_rounds
        )
    return publish_tables(tables, args.update)


def results_table(out: Path, profile: Profile) -> str:
    """The Markdown table of the units finished under ``out``."""
    results = list(read_results(out))
    extra = list(profile.label_kinds) if profile.label_pairs else []
    columns = ["source-only", *profile.modes, *extra, "target-trained"]
    lines = [
        f"| pair | {' | '.join(columns)} | paper: baseline / adapted / semi / upper (pair) |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    rows = []
    for source, target in profile.pairs:
        # A pair made here (a scale shift) has no published counterpart.
        baseline, adapted, semi, upper, paper_pair = PAPER.get(
            (source, target), (None, None, None, None, "no published pair")
        )
        cells = [
            scores_of(results, "supervised", source, None, target),
            *(
                scores_of(results, mode, source, target, target)
                for mode in [*profile.modes, *extra]
            ),
            scores_of(results, "supervised", target, None, target),
        ]
        rows.append(cells)
        lines.append(
            f"| {source} → {target} | {' | '.join(cell(c) for c in cells)} "
            f"| {_paper(baseline)} / {_paper(adapted)} / {_paper(semi)} / {_paper(upper)} "
            f"({paper_pair}) |"
        )
    if len(rows) > 1:
        # Which mode is best across the pairs (the default mode is chosen by this row).
        means = [mean_of_pairs([row[i] for row in rows]) for i in range(len(columns))]
        lines.append(f"| mean of the {len(rows)} pairs | {' | '.join(means)} | |")
    seconds = sum(r["seconds"] for r in results)
    devices = sorted({r["device"] for r in results})
    done = (
        f"{len(results)} runs, {seconds / 3600:.2f} h of training, on {', '.join(devices)}."
        if results
        else "No run has finished yet."
    )
    return "\n".join([*lines, "", done])


def source_free_table(results: list[dict], pairs: tuple[tuple[str, str], ...]) -> str:
    """Source-free adaptation from the source-only model beside the mean teacher with the
    source and the source-only model itself: F1 on the target test split, the difference in
    points, and the seconds of training of both adaptations (the source-free run's share of
    the mean teacher's; the source-only model it starts from is trained anyway)."""
    lines = [
        "| pair | source-only | mean teacher | source-free | source-free − mean teacher "
        "| seconds: mean teacher / source-free |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for source, target in pairs:
        f1 = [
            scores_of(results, kind, source, None if kind == "supervised" else target, target)
            for kind in ("supervised", "mean-teacher", "source-free")
        ]
        seconds = [
            [r["seconds"] for r in results if _is(r, kind, source, target)]
            for kind in ("mean-teacher", "source-free")
        ]
        rows.append(f1 + seconds)
        lines.append(
            f"| {source} → {target} | {' | '.join(cell(c) for c in f1)} "
            f"| {_difference(f1[2], f1[1])} | {_times(*seconds)} |"
        )
    if len(rows) > 1:
        means = [_pair_means([row[i] for row in rows]) for i in range(5)]
        lines.append(
            f"| mean of the {len(rows)} pairs "
            f"| {' | '.join(mean_of_pairs([row[i] for row in rows]) for i in range(3))} "
            f"| {_difference(means[2], means[1])} | {_times(means[3], means[4])} |"
        )
    return "\n".join(lines)


def _is(result: dict, kind: str, source: str, target: str | None) -> bool:
    unit = result["unit"]
    return (unit["kind"], unit["source"], unit["target"]) == (kind, source, target)


def _pair_means(cells: list[list[float]]) -> list[float]:
    """Each pair's mean, where every pair has values; else none."""
    return [statistics.fmean(c) for c in cells] if all(cells) else []


def _difference(values: list[float], reference: list[float]) -> str:
    """The difference of the means in points of F1 (%)."""
    if not values or not reference:
        return "–"
    return f"{100 * (statistics.fmean(values) - statistics.fmean(reference)):+.2f}"


def _times(reference: list[float], values: list[float]) -> str:
    """Mean seconds of both, and the second's share of the first."""
    if not reference or not values:
        return "–"
    first, second = statistics.fmean(reference), statistics.fmean(values)
    return f"{first:.0f} / {second:.0f} ({100 * second / first:.0f} %)"


def command_line(
    argv: list[str] | None,
    description: str,
    run_command: Callable[[argparse.Namespace], int],
    report_command: Callable[[argparse.Namespace], int],
) -> int:
    """The command line of this benchmark and of the studies of its results (selection.py):
    ``run`` or ``report`` on one profile's results folder; the exit status."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--out",
        type=Path,
        help="results folder (benchmarks/results/PROFILE for the committed profiles, full and "
        "quick; else under the system's temporary folder)",
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--update", type=Path, help="report: write the table between this file's markers"
    )
    parser.add_argument(
        "--units",
        metavar="PATTERN",
        help="run: only the units whose key matches this shell pattern (e.g. "
        "'*balance__stare*'), and those whose models they start from",
    )
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args.profile)
    return run_command(args) if args.command == "run" else report_command(args)


def main(argv: list[str] | None = None) -> int:
    """Command line of the benchmark."""
    return command_line(argv, __doc__.splitlines()[0], run, report)


if __name__ == "__main__":
    sys.exit(main())
