"""The label-free selection study: criteria per snapshot, the oracle beside them."""

from __future__ import annotations

import json

import pytest

import unit_training

# The selection benchmark end to end: `pytest -m slow` (CI runs it).
pytestmark = pytest.mark.slow


def test_selection_scores_every_snapshot_and_reports(
    accuracy, selection, data, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(unit_training, "STATE_EVERY", 1)
    monkeypatch.setattr(unit_training, "SNAPSHOT_EVERY", 2)
    out = tmp_path / "results"
    args = ["--profile", "smoke", "--data", str(data), "--out", str(out)]
    assert accuracy.main(["run", *args]) == 0
    assert selection.main(["run", *args]) == 0
    scored = sorted(p.name for p in (out / "selection").iterdir())
    assert scored == [  # the adaptive units only
        "adversarial__isbi2012-vnc__seed0.json",
        "mean-teacher+scribbles__isbi2012-vnc__seed0.json",
        "scribbles__isbi2012-vnc__seed0.json",
        "semi-supervised__isbi2012-vnc__seed0.json",
    ]
    unit = json.loads((out / "selection" / scored[0]).read_text())
    assert [m["step"] for m in unit["models"]] == [2, 3]  # a snapshot, then the final model
    for model in unit["models"]:
        for name in ("oracle_f1", "source_f1", "consistency"):
            assert 0 <= model[name] <= 1
        assert 0 <= model["entropy"] <= 1
        assert model["prior_gap"] == abs(model["target_share"] - model["source_share"])
        assert 0 < model["source_share"] < 1  # the source train labels' foreground share
    # The final model is scored as saved: the same F1 as the accuracy benchmark's.
    result = json.loads((out / scored[0]).read_text())
    assert unit["models"][-1]["oracle_f1"] == result["scores"]["vnc"]["f1"]

    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "selection").iterdir()}
    capsys.readouterr()
    assert selection.main(["run", *args]) == 0  # nothing redone
    assert {p.name: p.stat().st_mtime_ns for p in (out / "selection").iterdir()} == stamps
    assert selection.main(["report", *args]) == 0
    table = capsys.readouterr().out
    assert "| adversarial | 1 |" in table
    assert "| semi-supervised | 1 |" in table
    assert table.splitlines()[-1].startswith("| all | 4 |")  # every adaptive unit

    # --update writes the same table between the document's markers, and nothing else.
    document = tmp_path / "results.md"
    document.write_text("intro\n<!-- selection:smoke -->\nold\n<!-- /selection:smoke -->\nend\n")
    assert selection.main(["report", *args, "--update", str(document)]) == 0
    written = document.read_text()
    assert written == f"intro\n<!-- selection:smoke -->\n{table}<!-- /selection:smoke -->\nend\n"
    document.write_text("no markers\n")
    assert selection.main(["report", *args, "--update", str(document)]) == 2
    assert document.read_text() == "no markers\n"


def test_pick_follows_the_criterion_direction(selection) -> None:
    models = [
        {"step": 1, "source_f1": 0.5, "entropy": 0.2, "consistency": 0.9},
        {"step": 2, "source_f1": 0.7, "entropy": 0.4, "consistency": 0.9},
    ]
    assert selection.pick(models, "source_f1")["step"] == 2  # larger is better
    assert selection.pick(models, "entropy")["step"] == 1  # smaller is better
    assert selection.pick(models, "consistency")["step"] == 2  # ties: the later model
    gaps = [{**m, "prior_gap": gap} for m, gap in zip(models, [0.01, 0.2], strict=True)]
    assert selection.pick(gaps, "prior_gap")["step"] == 1  # smaller is better


def test_report_averages_a_criterion_over_the_units_that_have_it(selection, tmp_path, capsys):
    folder = tmp_path / "selection"
    folder.mkdir()
    older = [{"step": 2, "oracle_f1": 0.6, "source_f1": 0.5, "consistency": 0.9, "entropy": 0.3}]
    newer = [
        {**older[0], "oracle_f1": 0.8, "prior_gap": 0.01},
        {**older[0], "step": 4, "oracle_f1": 0.7, "prior_gap": 0.2},
    ]
    for name, models in (("a", older), ("b", newer)):
        unit = {"key": name, "unit": {"kind": "adversarial"}, "models": models}
        (folder / f"{name}.json").write_text(json.dumps(unit))
    assert selection.main(["report", "--out", str(tmp_path)]) == 0
    row = [cell.strip(" |") for cell in capsys.readouterr().out.splitlines()[-1].split(" | ")]
    # last, source_f1, consistency, entropy over both units; prior_gap over the newer one
    assert row[2:8] == ["65.00", "65.00", "65.00", "65.00", "80.00 (n=1)", "70.00"]
