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
import fcntl
import fnmatch
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

# Modules beside this file: what is measured (profiles.py), training one unit
# (unit_training.py), the correction loop (corrections.py) and table cells (tables.py).
# unit_training's names are read when used, so that tests can shorten its STATE_EVERY or
# stand in for run_unit. The scripts of experiments/ (explore_*.py) read base_config,
# modality_preprocessing and _load (the benchmark's datasets and configuration) through
# this module.
sys.path.insert(0, str(Path(__file__).parent))
import corrections
import unit_training
from napari_domain_adapt.core.checkpoints import save_checkpoint
from napari_domain_adapt.core.io import atomic_write
from napari_domain_adapt.core.resume import StateFile
from profiles import PAPER, PROFILES, Profile, Unit, default_out, plan
from profiles import base_config as base_config
from profiles import modality_preprocessing as modality_preprocessing
from tables import cell, mean_of_pairs, publish_tables, read_results, scores_of
from unit_training import load_split as _load  # noqa: F401

#: Seconds a worker waits before looking again for a model another worker is training.
WAIT_SECONDS = 30


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
        state = StateFile(running / f"{unit.key}.state", every=unit_training.STATE_EVERY)
        result = unit_training.run_unit(unit, profile, data, state, out / "models")
        (out / "models").mkdir(exist_ok=True)
        save_checkpoint(result.pop("model"), out / "models" / f"{unit.key}.pt", True)
        with atomic_write(out / f"{unit.key}.json") as temporary:
            temporary.write_text(json.dumps(result, indent=2) + "\n")
        state.path.unlink(missing_ok=True)
        shutil.rmtree(unit_training.rounds_folder(state), ignore_errors=True)
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
