"""The guard's evaluation: hit rate on decisive units, mean F1 of each way of choosing."""

from __future__ import annotations

import dataclasses
import json

import pytest

import profiles
from guard_eval import evaluate, markdown, unit_row
from napari_domain_adapt.core.guard import guard_verdict


def unit(key: str, source_only: float, adapted: float, prefer: str, **extra) -> dict:
    return {
        "key": key,
        "true_f1": {"source-only": source_only, "adapted": adapted},
        "prefer": prefer,
        **extra,
    }


UNITS = [
    unit("a", 0.60, 0.70, "adapted"),  # decisive, hit
    unit("b", 0.80, 0.50, "adapted"),  # decisive, miss: the gamble the guard must avoid
    unit("c", 0.70, 0.60, "source-only"),  # decisive, hit
    unit("d", 0.75, 0.755, "adapted"),  # half a point: not decisive
    unit("e", 0.80, 0.79, "adapted"),  # exactly one point: not decisive
]


def test_hit_rate_counts_only_units_that_differ_by_more_than_a_point() -> None:
    summary = evaluate(UNITS)
    assert (summary["units"], summary["decisive"], summary["hits"]) == (5, 3, 2)
    assert summary["hit_rate"] == pytest.approx(2 / 3)
    assert summary["preferred_adapted"] == 4
    # A looser bar makes the half-point and one-point units decisive too (one hit, one miss).
    loose = evaluate(UNITS, min_difference=0.001)
    assert (loose["decisive"], loose["hits"]) == (5, 3)


def test_mean_f1_of_each_way_of_choosing() -> None:
    f1 = evaluate(UNITS)["mean_f1"]
    assert f1["guard"] == pytest.approx((0.70 + 0.50 + 0.70 + 0.755 + 0.79) / 5)
    assert f1["source-only"] == pytest.approx((0.60 + 0.80 + 0.70 + 0.75 + 0.80) / 5)
    assert f1["adapted"] == pytest.approx((0.70 + 0.50 + 0.60 + 0.755 + 0.79) / 5)
    assert f1["oracle"] == pytest.approx((0.70 + 0.80 + 0.70 + 0.755 + 0.80) / 5)
    assert f1["oracle"] >= max(f1["guard"], f1["source-only"], f1["adapted"])


def test_no_decisive_unit_gives_no_hit_rate_and_bad_units_are_refused() -> None:
    summary = evaluate([unit("x", 0.7, 0.7, "source-only")])
    assert summary["hit_rate"] is None
    assert summary["estimate_error"] is None
    assert "| all | 1 | – | 70.00 |" in markdown(summary)
    with pytest.raises(ValueError, match="no unit"):
        evaluate([])
    with pytest.raises(ValueError, match="prefer"):
        evaluate([unit("x", 0.7, 0.8, "both")])
    with pytest.raises(ValueError, match="true_f1"):
        evaluate([{"key": "x", "true_f1": {"adapted": 0.8}, "prefer": "adapted"}])


def test_a_row_from_a_verdict_carries_its_estimates_and_their_error() -> None:
    base = {
        "source_f1": 0.9,
        "target_f1": 0.65,
        "prior_gap": 0.0,
        "target_share": 0.2,
        "source_share": 0.2,
    }
    verdict = guard_verdict(base, {**base, "target_f1": 0.80})
    row = unit_row("drive-stare", 0.70, 0.75, verdict)
    assert row["prefer"] == "adapted"
    assert row["decided_by"] == "atc"
    assert row["reason"] == verdict.reason
    summary = evaluate([row])
    assert (summary["decisive"], summary["hits"]) == (1, 1)
    assert summary["estimate_error"] == pytest.approx((0.05 + 0.05) / 2)  # |0.65-0.7|, |0.8-0.75|
    assert summary["mean_f1"]["guard"] == pytest.approx(0.75)


def test_markdown_table() -> None:
    table = markdown(evaluate(UNITS), label="EM")
    header, rule, row = table.splitlines()
    assert header.startswith("| units | n | hit rate | guard |")
    assert rule.count("---") == 7
    assert row == "| EM | 5 | 67% (2/3) | 68.90 | 73.00 | 66.90 | 75.10 |"


def test_run_judges_each_adaptive_unit_on_kept_models_without_target_labels(
    accuracy, data, tmp_path, monkeypatch, capsys
) -> None:
    import guard_eval

    profile = dataclasses.replace(
        profiles.PROFILES["smoke"], modes=("mean-teacher", "adversarial"), label_kinds=()
    )
    monkeypatch.setitem(profiles.PROFILES, "smoke", profile)
    out = tmp_path / "results"
    args = ["--profile", "smoke", "--data", str(data), "--out", str(out)]
    assert accuracy.main(["run", *args]) == 0
    seen = []
    real = guard_eval.judge

    def judge(baseline, adapted, held, target):
        seen.append((held.labels is not None, target.labels, held.name))
        return real(baseline, adapted, held, target)

    monkeypatch.setattr(guard_eval, "judge", judge)
    assert guard_eval.main(["run", *args]) == 0
    rows = {p.stem: json.loads(p.read_text()) for p in (out / "guard").glob("*.json")}
    assert sorted(rows) == [
        "adversarial__isbi2012-vnc__seed0",
        "mean-teacher__isbi2012-vnc__seed0",
    ]
    assert seen == [(True, None, "isbi2012 test")] * 2  # source test labels, no target label
    baseline = json.loads((out / "supervised__isbi2012__seed0.json").read_text())
    for key, row in rows.items():
        adapted = json.loads((out / f"{key}.json").read_text())
        assert row["true_f1"] == {
            "source-only": baseline["scores"]["vnc"]["f1"],
            "adapted": adapted["scores"]["vnc"]["f1"],
        }
        assert row["prefer"] in ("source-only", "adapted")
    assert guard_eval.main(["run", *args]) == 0  # judged units are not judged again
    assert len(seen) == 2
    capsys.readouterr()
    assert guard_eval.main(["report", *args]) == 0
    assert "| smoke: 2 units | 2 |" in capsys.readouterr().out
