"""The label-free selection study: criteria per snapshot, the oracle beside them."""

from __future__ import annotations

import json


def test_selection_scores_every_snapshot_and_reports(
    accuracy, selection, data, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(accuracy, "STATE_EVERY", 1)
    monkeypatch.setattr(accuracy, "SNAPSHOT_EVERY", 2)
    out = tmp_path / "results"
    args = ["--profile", "smoke", "--data", str(data), "--out", str(out)]
    assert accuracy.main(["run", *args]) == 0
    assert selection.main(["run", *args]) == 0
    scored = sorted(p.name for p in (out / "selection").iterdir())
    assert scored == [  # the adaptive units only
        "adversarial__isbi2012-vnc__seed0.json",
        "scribbles__isbi2012-vnc__seed0.json",
        "semi-supervised__isbi2012-vnc__seed0.json",
    ]
    unit = json.loads((out / "selection" / scored[0]).read_text())
    assert [m["step"] for m in unit["models"]] == [2, 3]  # a snapshot, then the final model
    for model in unit["models"]:
        for name in ("oracle_f1", "source_f1", "consistency"):
            assert 0 <= model[name] <= 1
        assert 0 <= model["entropy"] <= 1
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


def test_pick_follows_the_criterion_direction(selection) -> None:
    models = [
        {"step": 1, "source_f1": 0.5, "entropy": 0.2, "consistency": 0.9},
        {"step": 2, "source_f1": 0.7, "entropy": 0.4, "consistency": 0.9},
    ]
    assert selection.pick(models, "source_f1")["step"] == 2  # larger is better
    assert selection.pick(models, "entropy")["step"] == 1  # smaller is better
    assert selection.pick(models, "consistency")["step"] == 2  # ties: the later model
