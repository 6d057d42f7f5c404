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
NAMES = {"stare": "STARE", "drive": "DRIVE", "isbi2012": "ISBI 2012", "vnc": "VNC"}


def readme_table(out: Path, profile: Profile) -> str:
    """The README's summary: mean F1 over seeds per mode and pair, and over the pairs."""
    results = list(read_results(out))

    def mean_f1(kind: str, source: str, target: str) -> float | None:
        trained_on, unit_target, kind = {
            "supervised": (source, None, "supervised"),
            "target-trained": (target, None, "supervised"),
        }.get(kind, (source, target, kind))
        values = scores_of(results, kind, trained_on, unit_target, target)
        return 100 * statistics.fmean(values) if values else None

    pairs = [f"{NAMES.get(s, s)} → {NAMES.get(t, t)}" for s, t in profile.pairs]
    lines = [f"| mode | {' | '.join(pairs)} | mean |", "|---|" + "---|" * (len(pairs) + 1)]
    for kind, label in README_ROWS:
        values = [mean_f1(kind, source, target) for source, target in profile.pairs]
        known = [v for v in values if v is not None]
        mean = statistics.fmean(known) if len(known) == len(values) else None
        cells = ["–" if v is None else f"{v:.2f}" for v in [*values, mean]]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


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
    table = readme_table(results / "full", PROFILES["full"])
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
