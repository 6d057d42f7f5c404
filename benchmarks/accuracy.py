"""Accuracy benchmark on real dataset pairs: source-only, adapted, semi-supervised, upper bound.

Every training run is one *unit* whose result is a JSON file under ``--out``; a unit whose
file exists is never run again, so the suite can be stopped at any time and resumed (also in
a later session); a unit killed part-way continues from its training state (saved every 50
steps under ``--out/.running``). Workers started side by side, one per core, share the
units without running one twice. A model trained with labels on dataset X is both the
source-only baseline of every pair X -> Y and the target-trained upper bound of every pair
Y -> X: it is trained once and scored on every test split it is needed for.

    python benchmarks/accuracy.py run --data ../shared/data --out benchmarks/results/full
    python benchmarks/accuracy.py report --out benchmarks/results/full > table.md

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
import json
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# scribbles.py beside this file: the simulated annotations of the sparse-label units.
sys.path.insert(0, str(Path(__file__).parent))
from napari_domain_adapt.core import (
    Domain,
    PixelSize,
    SegmentationModel,
    TrainConfig,
    segmentation_scores,
    with_values,
)
from napari_domain_adapt.core.checkpoints import save_checkpoint
from napari_domain_adapt.core.config import IMAGE_KINDS, ModelSpec, Preprocessing
from napari_domain_adapt.core.io import atomic_write, load_dataset
from napari_domain_adapt.core.metrics import best_threshold
from napari_domain_adapt.core.resume import StateFile
from napari_domain_adapt.core.training import TrainFinished, train
from scale_pairs import PIXEL_SIZES, binned, load_with_pixel_size
from scribbles import simulate_scribbles

#: Steps between saves of a unit's training state, and between snapshots of its kept model
#: (see :func:`_snapshot`; a multiple of the first, as snapshots are read from the state).
STATE_EVERY = 50
SNAPSHOT_EVERY = 4 * STATE_EVERY

RETINA = ("drive", "stare")
EM = ("isbi2012", "vnc")
PAIRS = [("stare", "drive"), ("drive", "stare"), ("isbi2012", "vnc"), ("vnc", "isbi2012")]
#: What each kind of unit trains: its mode, and which target train labels it sees (none;
#: all of slice 0; or simulated scribbles drawn from slice 0, about 1% of its pixels,
#: strokes per class, by seed). "semi-supervised" and "scribbles" are the paper's
#: semi-supervised mode (adversarial); the mean teacher adds labelled target pixels to its
#: supervised loss the same way. A mode's own name is a kind without target labels.
KINDS = {
    "supervised": ("source-only", None),
    "semi-supervised": ("semi-supervised", "slice"),
    "scribbles": ("semi-supervised", "scribbles"),
    "mean-teacher+slice": ("mean-teacher", "slice"),
    "mean-teacher+scribbles": ("mean-teacher", "scribbles"),
}
#: Variants of a kind, tried by the screening profile: ``KIND/VARIANT`` trains ``KIND``
#: with these settings changed (paths of :func:`~napari_domain_adapt.core.with_values`).
VARIANTS = {
    "no-rescale": {"alignment.pixel_size": False},
    "balance": {"teacher.balance": 0.5},
    "histogram": {"alignment.histogram_matching": True},
    "fda": {"alignment.fda_beta": 0.01},
    "appearance": {"alignment.appearance": 0.5},
}
#: The candidate variants of the mean teacher the screening profiles try.
SCREENED = tuple(f"mean-teacher/{v}" for v in ("balance", "histogram", "fda", "appearance"))
#: Datasets made at run time from a shared one: name -> (dataset, binning in Y and X).
SCALED = {"vnc@9.2nm": ("vnc", 2)}
#: How much a few strokes buy, and in which mode: run on the EM pairs only.
LABEL_KINDS = ("scribbles", "mean-teacher+scribbles")

#: F-score (%) from Javanmardi & Tasdizen 2018: baseline, adapted, semi-supervised, upper bound.
#: The EM rows are the paper's ISBI 2013 <-> CREMI C pairs, which we cannot get here; our EM
#: pairs are ISBI 2012 <-> Drosophila VNC, a stand-in, not the same experiment.
PAPER = {
    ("stare", "drive"): (62.45, 67.09, None, 80.68, "STARE -> DRIVE"),
    ("drive", "stare"): (67.86, 76.75, None, 77.08, "DRIVE -> STARE"),
    ("isbi2012", "vnc"): (35.36, 42.60, 73.68, 80.63, "ISBI 2013 -> CREMI C"),
    ("vnc", "isbi2012"): (13.16, 39.11, 77.40, 83.91, "CREMI C -> ISBI 2013"),
}


@dataclass(frozen=True)
class Profile:
    """How long and how big each run is."""

    steps: int
    seeds: tuple[int, ...]
    pairs: tuple[tuple[str, str], ...]
    #: Kinds (see :data:`KINDS`) run on every pair, besides the supervised models.
    modes: tuple[str, ...] = ("adversarial", "semi-supervised")
    #: Kinds run on ``label_pairs`` only.
    label_kinds: tuple[str, ...] = ()
    label_pairs: tuple[tuple[str, str], ...] = ()
    patch_size: int = 128
    batch_size: int = 8
    width: int = 16
    #: Whether the EM datasets carry their pixel sizes (as calibrated files would), so
    #: that runs resample a target at another scale (see core.resampling).
    pixel_sizes: bool = False


PROFILES = {
    "full": Profile(
        steps=1000,
        seeds=(0, 1, 2),
        pairs=tuple(PAIRS),
        modes=("adversarial", "semi-supervised", "mean-teacher", "mean-teacher+slice"),
        label_kinds=LABEL_KINDS,
        label_pairs=tuple(p for p in PAIRS if p[0] in EM),
    ),
    "quick": Profile(steps=250, seeds=(0,), pairs=(("isbi2012", "vnc"),), patch_size=96),
    # Candidates first: one seed, half the steps, on the pair with a known scale shift.
    "screen": Profile(
        steps=500,
        seeds=(0,),
        pairs=(("isbi2012", "vnc@9.2nm"),),
        modes=("mean-teacher", "mean-teacher/no-rescale", *SCREENED),
        pixel_sizes=True,
    ),
    # The same candidates on the retina pair where the mean teacher loses most.
    "screen-retina": Profile(
        steps=500, seeds=(0,), pairs=(("stare", "drive"),), modes=("mean-teacher", *SCREENED)
    ),
    # Seconds, not minutes: for the tests of this script, not for numbers.
    "smoke": Profile(
        steps=3,
        seeds=(0,),
        pairs=(("isbi2012", "vnc"),),
        label_kinds=LABEL_KINDS,
        label_pairs=(("isbi2012", "vnc"),),
        patch_size=64,
        batch_size=2,
        width=4,
    ),
}


#: Profiles whose results are committed under ``benchmarks/results/PROFILE``, where the
#: tables of docs/results.md are generated from; any other profile's are scratch.
COMMITTED = ("full", "quick")


def default_out(profile: str) -> Path:
    """The results folder without ``--out``: the committed one, or one under the system's
    temporary folder for a scratch profile (nothing is written into the repository)."""
    if profile in COMMITTED:
        return Path("benchmarks/results") / profile
    return Path(tempfile.gettempdir()) / "napari-domain-adapt-benchmarks" / profile


def modality_preprocessing(dataset: str) -> Preprocessing:
    """Fundus: green channel, local contrast equalisation, field of view (STARE has no
    masks); EM: robust per-image scaling of the grey value."""
    return IMAGE_KINDS["fundus" if dataset in RETINA else "em"]


def base_config(profile: Profile, dataset: str, mode: str, seed: int) -> TrainConfig:
    """The configuration of one run: library defaults plus the profile's size."""
    return TrainConfig(
        mode=mode,
        steps=profile.steps,
        batch_size=profile.batch_size,
        patch_size=profile.patch_size,
        seed=seed,
        model=ModelSpec(width=profile.width),
        preprocessing=modality_preprocessing(dataset),
        preview_interval=None,
    )


@dataclass(frozen=True)
class Unit:
    """One training run and the test splits it is scored on."""

    kind: str  # a key of KINDS, or a mode (no target labels)
    source: str
    target: str | None
    seed: int
    evaluate_on: tuple[str, ...]

    @property
    def key(self) -> str:
        """File name of the unit's result."""
        pair = self.source if self.target is None else f"{self.source}-{self.target}"
        return f"{self.kind.replace('/', '_')}__{pair}__seed{self.seed}"


def plan(profile: Profile) -> list[Unit]:
    """Every unit the profile needs, each model once, cheapest kinds first."""
    needed: dict[str, set[str]] = {}
    for source, target in profile.pairs:
        needed.setdefault(source, set()).add(target)  # baseline on the target
        needed.setdefault(target, set()).add(target)  # upper bound on the target
    units = []
    for seed in profile.seeds:  # seed by seed, so a partial suite already fills every cell
        units += [
            Unit("supervised", dataset, None, seed, tuple(sorted(targets)))
            for dataset, targets in sorted(needed.items())
        ]
        units += [
            Unit(kind, source, target, seed, (target,))
            for kind in profile.modes
            for source, target in profile.pairs
        ]
        units += [
            Unit(kind, source, target, seed, (target,))
            for kind in profile.label_kinds
            for source, target in profile.label_pairs
        ]
    return units


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


def run_unit(unit: Unit, profile: Profile, data: Path, state: StateFile | None = None) -> dict:
    """Train one unit and score it; target train labels only on slice 0, as its kind says.

    With ``state`` the training continues from where a killed run of the unit stopped.
    """
    sizes = profile.pixel_sizes
    source = _load(data, unit.source, "train", pixel_sizes=sizes)
    target = None
    mode, seen, changes = _kind(unit.kind)
    if unit.target is not None:
        target = _load(data, unit.target, "train", labels=seen is not None, pixel_sizes=sizes)
        if seen is not None:
            labels, kind = np.zeros_like(target.labels), "dense"
            labels[0] = target.labels[0]
            if seen == "scribbles":
                labels[0] = simulate_scribbles(labels[0], np.random.default_rng(unit.seed))
                kind = "sparse"
            target = Domain(
                target.images,
                labels,
                target.masks,
                target.name,
                label_kind=kind,
                pixel_size=target.pixel_size,
            )
    config = with_values(base_config(profile, unit.source, mode, unit.seed), changes)
    finished = None
    for event in train(config, source, target, state=state):
        if isinstance(event, TrainFinished):
            finished = event
        elif state is not None and event.step % SNAPSHOT_EVERY == 0:
            _snapshot(state, event.step)
    seconds = finished.elapsed  # training time, before a kill and after the resume
    scores = {}
    model = finished.model
    for name in unit.evaluate_on:
        test = _load(data, name, "test", pixel_sizes=sizes)
        scores[name] = _score(model, test, test.pixel_size)
        if model.zoom_for(test.pixel_size) is not None:  # and as if its scale were unknown
            scores[f"{name} unscaled"] = _score(model, test, None)
    tail = finished.history[-50:]
    diagnostics = {
        name: statistics.fmean(values)
        for name in tail[0]
        if name != "step" and (values := [h[name] for h in tail if h[name] is not None])
    }
    return {
        "model": finished.model,
        "unit": dataclasses.asdict(unit),
        "last_50_steps": diagnostics,
        "key": unit.key,
        "scores": scores,
        "seconds": round(seconds, 1),
        "steps": finished.steps,
        "device": finished.device,
        "config": config.to_dict(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


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
    """Run every unit whose result file is missing."""
    profile = PROFILES[args.profile]
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    units = plan(profile)
    todo = [u for u in units if not (out / f"{u.key}.json").exists()]
    print(f"{len(units)} units, {len(units) - len(todo)} done, {len(todo)} to run", flush=True)
    running = out / ".running"  # training states and claims; not results
    running.mkdir(exist_ok=True)
    for index, unit in enumerate(todo, 1):
        with _claim(running / f"{unit.key}.lock") as claimed:
            if not claimed or (out / f"{unit.key}.json").exists():
                continue  # another worker has it, or finished it meanwhile
            state = StateFile(running / f"{unit.key}.state", every=STATE_EVERY)
            result = run_unit(unit, profile, args.data, state)
            (out / "models").mkdir(exist_ok=True)
            save_checkpoint(result.pop("model"), out / "models" / f"{unit.key}.pt", True)
            with atomic_write(out / f"{unit.key}.json") as temporary:
                temporary.write_text(json.dumps(result, indent=2) + "\n")
            state.path.unlink(missing_ok=True)
        f1 = {k: round(100 * v["f1"], 2) for k, v in result["scores"].items()}
        print(f"[{index}/{len(todo)}] {unit.key}: F1 {f1} in {result['seconds']} s", flush=True)
    return 0


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


def _results(out: Path) -> Iterator[dict]:
    for path in sorted(out.glob("*.json")):
        yield json.loads(path.read_text())


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.2f} (n=1)"
    return f"{100 * mean:.2f} ± {100 * statistics.stdev(values):.2f} (n={len(values)})"


def _mean_of_pairs(cells: list[list[float]]) -> str:
    """The mean over pairs of each pair's mean F1, where every pair has a value."""
    if not all(cells):
        return "–"
    return f"{100 * statistics.fmean(statistics.fmean(c) for c in cells):.2f}"


def _paper(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def report(args: argparse.Namespace) -> int:
    """Print the Markdown table of the finished units, or write it into ``--update``."""
    table = results_table(args.out, PROFILES[args.profile])
    return publish(table, args.update, f"benchmark:{args.profile}")


def publish(table: str, document: Path | None, marker: str) -> int:
    """Print ``table``, or write it between ``document``'s ``<!-- marker -->`` and
    ``<!-- /marker -->`` lines; the exit status."""
    if document is None:
        print(table)
        return 0
    text = document.read_text()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in text or end not in text:
        print(f"error: {document} has no {start} ... {end} markers", file=sys.stderr)
        return 2
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    with atomic_write(document, overwrite=True) as temporary:
        temporary.write_text(f"{before}{start}\n{table}\n{end}{after}")
    return 0


def results_table(out: Path, profile: Profile) -> str:
    """The Markdown table of the units finished under ``out``."""
    results = list(_results(out))

    def f1(kind: str, source: str, target: str | None, scored: str, key: str = "f1") -> list:
        return [
            r["scores"][scored][key]
            for r in results
            if r["unit"]["kind"] == kind
            and r["unit"]["source"] == source
            and r["unit"]["target"] == target
            and scored in r["scores"]
        ]

    extra = list(profile.label_kinds) if profile.label_pairs else []
    columns = ["source-only", *profile.modes, *extra, "target-trained"]
    lines = [
        f"| pair | {' | '.join(columns)} | paper: baseline / adapted / semi / upper (pair) |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    rows = []
    for source, target in profile.pairs:
        baseline, adapted, semi, upper, paper_pair = PAPER[(source, target)]
        cells = [
            f1("supervised", source, None, target),
            *(f1(mode, source, target, target) for mode in [*profile.modes, *extra]),
            f1("supervised", target, None, target),
        ]
        rows.append(cells)
        lines.append(
            f"| {source} → {target} | {' | '.join(_cell(c) for c in cells)} "
            f"| {_paper(baseline)} / {_paper(adapted)} / {_paper(semi)} / {_paper(upper)} "
            f"({paper_pair}) |"
        )
    if len(rows) > 1:
        # Which mode is best across the pairs (the default mode is chosen by this row).
        means = [_mean_of_pairs([row[i] for row in rows]) for i in range(len(columns))]
        lines.append(f"| mean of the {len(rows)} pairs | {' | '.join(means)} | |")
    seconds = sum(r["seconds"] for r in results)
    devices = sorted({r["device"] for r in results})
    lines += [
        "",
        f"{len(results)} runs, {seconds / 3600:.2f} h of training, on {', '.join(devices)}.",
    ]
    return "\n".join(lines)


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
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args.profile)
    return run_command(args) if args.command == "run" else report_command(args)


def main(argv: list[str] | None = None) -> int:
    """Command line of the benchmark."""
    return command_line(argv, __doc__.splitlines()[0], run, report)


if __name__ == "__main__":
    sys.exit(main())
