"""benchmarks/publish.py: one command regenerates every results table of the documents."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import profiles

SCRIPTS = Path(__file__).parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def publish(accuracy):
    spec = importlib.util.spec_from_file_location("publish", SCRIPTS / "publish.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_committed_documents_match_the_committed_results(publish):
    assert publish.check() == 0


def _result(kind: str, source: str, target: str | None, scored: str, f1: float) -> dict:
    unit = {"kind": kind, "source": source, "target": target}
    return {"unit": unit, "scores": {scored: {"f1": f1}}, "seconds": 1.0, "device": "cpu"}


def test_the_readme_table_is_the_mean_over_seeds_and_pairs(publish, tmp_path):
    profile = profiles.Profile(
        steps=1, seeds=(0, 1), pairs=(("stare", "drive"), ("vnc", "isbi2012"))
    )
    rows = [
        _result("supervised", "stare", None, "drive", 0.70),
        _result("supervised", "stare", None, "drive", 0.72),
        _result("supervised", "vnc", None, "isbi2012", 0.60),
        _result("supervised", "drive", None, "drive", 0.80),
        _result("mean-teacher", "stare", "drive", "drive", 0.75),
    ]
    for index, row in enumerate(rows):
        (tmp_path / f"{index}.json").write_text(json.dumps(row))
    lines = publish.readme_table(tmp_path, profile).splitlines()
    assert lines[0] == "| mode | STARE → DRIVE | VNC → ISBI 2012 | mean |"
    assert lines[2] == "| source-only (no adaptation) | 71.00 | 60.00 | 65.50 |"
    assert lines[4] == "| mean teacher (the default) | 75.00 | – | – |"
    assert lines[6] == "| trained on the target's own labels | 80.00 | – | – |"


def test_a_pair_beside_the_shared_ones_is_a_column_after_their_mean(publish, tmp_path):
    shared, scaled = tmp_path / "shared", tmp_path / "scaled"
    rows = {
        shared: [_result("supervised", "stare", None, "drive", 0.70)],
        scaled: [
            _result("supervised", "isbi2012", None, "vnc@9.2nm", 0.80),
            _result("mean-teacher", "isbi2012", "vnc@9.2nm", "vnc@9.2nm", 0.82),
            _result("mean-teacher", "isbi2012", "vnc@9.2nm", "vnc@9.2nm", 0.84),
        ],
    }
    for folder, results in rows.items():
        folder.mkdir()
        for index, row in enumerate(results):
            (folder / f"{index}.json").write_text(json.dumps(row))
    profile = profiles.Profile(steps=1, seeds=(0,), pairs=(("stare", "drive"),))
    beside = profiles.Profile(steps=1, seeds=(0, 1), pairs=(("isbi2012", "vnc@9.2nm"),))
    lines = publish.readme_table(shared, profile, beside=[(scaled, beside)]).splitlines()
    assert lines[0] == "| mode | STARE → DRIVE | mean | ISBI 2012 → VNC binned to 9.2 nm |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| source-only (no adaptation) | 70.00 | 70.00 | 80.00 |"
    assert lines[4] == "| mean teacher (the default) | – | – | 83.00 |"


def test_a_stale_table_is_found(publish, tmp_path):
    root = Path(__file__).parents[2]
    (tmp_path / "docs").mkdir()
    readme = (root / "README.md").read_text()
    (tmp_path / "README.md").write_text(readme.replace("| 77.09 |", "| 99.99 |", 1))
    (tmp_path / "docs" / "results.md").write_text((root / "docs" / "results.md").read_text())
    assert publish.check(tmp_path) == 1
