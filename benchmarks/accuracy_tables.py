"""The accuracy benchmark's tables: every mode beside the paper, source-free adaptation
beside the mean teacher, and (from corrections.py) the correction loop's rounds.

``report`` prints them, or writes each between its markers in a document (publish.py
regenerates every committed one).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import corrections
from profiles import PAPER, PROFILES, Profile
from tables import cell, mean_of_pairs, publish_tables, read_results, scores_of


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
