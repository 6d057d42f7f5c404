"""benchmarks/accuracy_tables.py: the accuracy benchmark's tables of finished units."""

from __future__ import annotations

import json

import accuracy_tables
import profiles


def test_report_averages_each_mode_over_the_pairs(tmp_path) -> None:
    profile = profiles.Profile(
        steps=1,
        seeds=(0,),
        pairs=(("isbi2012", "vnc"), ("vnc", "isbi2012")),
        modes=("mean-teacher",),
    )
    runs = [
        ("supervised", "isbi2012", None, {"vnc": 0.6, "isbi2012": 0.9}),
        ("supervised", "vnc", None, {"isbi2012": 0.5, "vnc": 0.8}),
        ("mean-teacher", "isbi2012", "vnc", {"vnc": 0.7}),
    ]
    for index, (kind, source, target, scores) in enumerate(runs):
        result = {
            "unit": {"kind": kind, "source": source, "target": target},
            "scores": {name: {"f1": f1} for name, f1 in scores.items()},
            "seconds": 1.0,
            "device": "cpu",
        }
        (tmp_path / f"{index}.json").write_text(json.dumps(result))
    last = accuracy_tables.results_table(tmp_path, profile).splitlines()[4]
    # source-only: (0.6 + 0.5) / 2; mean teacher: one pair only; target-trained: (0.8 + 0.9) / 2
    assert last == "| mean of the 2 pairs | 55.00 | – | 85.00 | |"


def test_source_free_table_compares_with_the_mean_teacher_in_time_and_f1() -> None:
    def unit(kind, source, target, f1, seconds=1.0):
        return {
            "unit": {"kind": kind, "source": source, "target": target},
            "scores": {"vnc" if source == "isbi2012" else "isbi2012": {"f1": f1}},
            "seconds": seconds,
        }

    results = [
        unit("supervised", "isbi2012", None, 0.70),
        unit("mean-teacher", "isbi2012", "vnc", 0.80, seconds=100.0),
        unit("source-free", "isbi2012", "vnc", 0.78, seconds=40.0),
        unit("source-free", "isbi2012", "vnc", 0.80, seconds=50.0),
    ]
    pairs = (("isbi2012", "vnc"), ("vnc", "isbi2012"))
    lines = accuracy_tables.source_free_table(results, pairs).splitlines()
    assert lines[2] == (
        "| isbi2012 → vnc | 70.00 (n=1) | 80.00 (n=1) | 79.00 ± 1.41 (n=2) | -1.00 "
        "| 100 / 45 (45 %) |"
    )
    assert lines[3] == "| vnc → isbi2012 | – | – | – | – | – |"
    assert lines[4] == "| mean of the 2 pairs | – | – | – | – | – |"
