"""The benchmarks' results as their tables read them, Markdown cells, and writing tables
into a document."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

from napari_domain_adapt.core.io import atomic_write


def read_results(out: Path) -> Iterator[dict]:
    """The result of every finished unit under ``out`` (one JSON file each), by file name."""
    for path in sorted(out.glob("*.json")):
        yield json.loads(path.read_text())


def scores_of(
    results: list[dict], kind: str, source: str, target: str | None, scored: str, key: str = "f1"
) -> list[float]:
    """``key`` of every finished unit of ``kind`` on the pair (``target`` None: a model of
    the source alone), on the test split of ``scored``."""
    return [
        r["scores"][scored][key]
        for r in results
        if r["unit"]["kind"] == kind
        and r["unit"]["source"] == source
        and r["unit"]["target"] == target
        and scored in r["scores"]
    ]


def cell(values: list[float]) -> str:
    """Mean ± standard deviation of fractions, in percent, with the count; – for none."""
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.2f} (n=1)"
    return f"{100 * mean:.2f} ± {100 * statistics.stdev(values):.2f} (n={len(values)})"


def mean_of_pairs(cells: list[list[float]]) -> str:
    """The mean over pairs of each pair's mean F1, where every pair has a value."""
    if not all(cells):
        return "–"
    return f"{100 * statistics.fmean(statistics.fmean(c) for c in cells):.2f}"


def publish(table: str, document: Path | None, marker: str) -> int:
    """Print ``table``, or write it between ``document``'s ``<!-- marker -->`` and
    ``<!-- /marker -->`` lines; the exit status."""
    return publish_tables({marker: table}, document)


def publish_tables(tables: dict[str, str], document: Path | None) -> int:
    """Print the tables (marker: table), or write each between its markers in ``document``;
    nothing is written unless the document has every table's markers. The exit status."""
    if document is None:
        print("\n\n".join(tables.values()))
        return 0
    text = document.read_text()
    missing = [m for m in tables if f"<!-- {m} -->" not in text or f"<!-- /{m} -->" not in text]
    if missing:
        shown = ", ".join(f"<!-- {m} --> ... <!-- /{m} -->" for m in missing)
        print(f"error: {document} has no {shown} markers", file=sys.stderr)
        return 2
    for marker, table in tables.items():
        start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
        before, rest = text.split(start, 1)
        text = f"{before}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"
    with atomic_write(document, overwrite=True) as temporary:
        temporary.write_text(text)
    return 0
