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
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

# Modules beside this file: what is measured (profiles.py), training one unit
# (unit_training.py) and the tables (accuracy_tables.py). unit_training's names are read
# when used, so that tests can shorten its STATE_EVERY or stand in for run_unit.
sys.path.insert(0, str(Path(__file__).parent))
import unit_training
from accuracy_tables import report
from napari_domain_adapt.core.checkpoints import save_checkpoint
from napari_domain_adapt.core.io import atomic_write
from napari_domain_adapt.core.resume import StateFile
from profiles import PROFILES, Profile, Unit, default_out, plan

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
