"""Every results table of docs/results.md and README.md, regenerated from the committed
results (``benchmarks/results/PROFILE``) by one command:

    python benchmarks/publish.py            # rewrite the tables between their markers
    python benchmarks/publish.py --check    # exit 1 where a document's tables are stale

Each table lies between ``<!-- NAME -->`` and ``<!-- /NAME -->`` lines; the text around
them is written by hand and says what the numbers mean.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# The benchmark scripts beside this file.
sys.path.insert(0, str(Path(__file__).parent))
import accuracy_tables
import guard_eval
import selection
from profiles import COMMITTED, PROFILES, Profile
from tables import publish, read_results, scores_of

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results"

#: The README's rows: (unit kind, what the row is called); the table's pairs are the full
#: profile's. "target-trained" is the target's own supervised model (the upper bound).
README_ROWS = (
    ("supervised", "source-only (no adaptation)"),
    ("adversarial", "adversarial (the paper's method)"),
    ("mean-teacher", "mean teacher (the default)"),
    ("mean-teacher+slice", "mean teacher + one labelled target slice"),
    ("target-trained", "trained on the target's own labels"),
)
NAMES = {
    "stare": "STARE",
    "drive": "DRIVE",
    "isbi2012": "ISBI 2012",
    "vnc": "VNC",
    "vnc@9.2nm": "VNC binned to 9.2 nm",
}


def readme_table(out: Path, profile: Profile, beside: Sequence[tuple[Path, Profile]] = ()) -> str:
    """The README's summary: mean F1 over seeds per mode and pair, and over the pairs; the
    pairs of the profiles ``beside`` (results folder, profile) in columns after that mean,
    not in it (the scale-shift pair: it is not one of the four shared pairs)."""
    sections = [(out, profile), *beside]
    pairs = [f"{NAMES.get(s, s)} → {NAMES.get(t, t)}" for _, p in sections for s, t in p.pairs]
    pairs.insert(len(profile.pairs), "mean")
    lines = [f"| mode | {' | '.join(pairs)} |", "|---|" + "---|" * len(pairs)]
    results = [(list(read_results(o)), p.pairs) for o, p in sections]  # each folder once
    for kind, label in README_ROWS:
        values = [_mean_f1(found, kind, pairs) for found, pairs in results]
        shared = values[0]
        mean = statistics.fmean(shared) if None not in shared else None
        cells = [*shared, mean, *(v for column in values[1:] for v in column)]
        lines.append(
            f"| {label} | {' | '.join('–' if v is None else f'{v:.2f}' for v in cells)} |"
        )
    return "\n".join(lines)


def _mean_f1(
    results: list[dict], kind: str, pairs: Sequence[tuple[str, str]]
) -> list[float | None]:
    """Per pair, the mean F1 (%) over seeds of a README row's kind; None where none ran."""
    means = []
    for source, target in pairs:
        trained_on, unit_target, unit_kind = {
            "supervised": (source, None, "supervised"),
            "target-trained": (target, None, "supervised"),
        }.get(kind, (source, target, kind))
        values = scores_of(results, unit_kind, trained_on, unit_target, target)
        means.append(100 * statistics.fmean(values) if values else None)
    return means


def publish_all(root: Path = ROOT, results: Path = RESULTS) -> int:
    """Write every table into the documents under ``root``; the exit status."""
    results_md, readme = root / "docs" / "results.md", root / "README.md"
    status = 0
    for name in COMMITTED:
        args = argparse.Namespace(out=results / name, profile=name, update=results_md)
        status |= accuracy_tables.report(args)
    args = argparse.Namespace(out=results / "full", profile="full", update=results_md)
    status |= selection.report(args)
    for name in COMMITTED:  # the guard's verdicts, where they were evaluated
        if (results / name / "guard").is_dir():
            args = argparse.Namespace(out=results / name, profile=name, update=results_md)
            status |= guard_eval.report(args)
    scale = (results / "scale", PROFILES["scale"])
    table = readme_table(results / "full", PROFILES["full"], beside=[scale])
    status |= publish(table, readme, "benchmark:readme")
    return status


def check(root: Path = ROOT, results: Path = RESULTS) -> int:
    """1 where publishing would change a document (its tables are stale), else 0."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        (copy / "docs").mkdir()
        for document in ("README.md", "docs/results.md"):
            shutil.copyfile(root / document, copy / document)
        if publish_all(copy, results):
            return 2
        stale = [
            document
            for document in ("README.md", "docs/results.md")
            if (copy / document).read_text() != (root / document).read_text()
        ]
    for document in stale:
        print(f"{document}: its tables differ from the results; run benchmarks/publish.py")
    return 1 if stale else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only say whether the tables are up to date"
    )
    args = parser.parse_args(argv)
    return check() if args.check else publish_all()


if __name__ == "__main__":
    sys.exit(main())
