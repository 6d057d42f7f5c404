"""benchmarks/accuracy.py: the accuracy benchmark's runner (resumable, shared by workers) and
its command line, on generated datasets."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import profiles
import unit_training


@pytest.mark.slow  # a run killed and resumed, end to end
def test_run_is_resumable_and_reported(accuracy, data, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(unit_training, "STATE_EVERY", 1)
    monkeypatch.setattr(unit_training, "SNAPSHOT_EVERY", 2)
    out = tmp_path / "results"
    args = ["--profile", "smoke", "--data", str(data), "--out", str(out)]
    assert accuracy.main(["run", *args]) == 0
    assert "6 units, 0 done, 6 to run" in capsys.readouterr().out
    results = sorted(p.name for p in out.glob("*.json"))
    assert results == [
        "adversarial__isbi2012-vnc__seed0.json",
        "mean-teacher+scribbles__isbi2012-vnc__seed0.json",
        "scribbles__isbi2012-vnc__seed0.json",
        "semi-supervised__isbi2012-vnc__seed0.json",
        "supervised__isbi2012__seed0.json",
        "supervised__vnc__seed0.json",
    ]
    assert not list((out / ".running").glob("*.state"))  # removed once each result is safe
    unit = json.loads((out / "supervised__isbi2012__seed0.json").read_text())
    assert set(unit["scores"]) == {"vnc"}
    assert 0 <= unit["scores"]["vnc"]["f1"] <= 1
    assert unit["steps"] == 3
    assert unit["seconds"] > 0
    assert sorted(p.name for p in (out / "models").iterdir()) == [f[:-5] + ".pt" for f in results]
    snapshot = torch.load(
        out / "snapshots" / "adversarial__isbi2012-vnc__seed0" / "step00002.pt", weights_only=True
    )
    assert snapshot["step"] == 2
    assert snapshot["model"]["width"] == 4
    assert "head.weight" in snapshot["weights"]

    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert accuracy.main(["run", *args]) == 0
    assert "6 units, 6 done, 0 to run" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == stamps

    assert accuracy.main(["report", *args]) == 0
    table = capsys.readouterr().out
    assert "| isbi2012 → vnc |" in table
    assert "(n=1)" in table
    assert "6 runs" in table
    assert "| scribbles | mean-teacher+scribbles |" in table.splitlines()[0]


def test_a_claimed_unit_is_left_to_its_worker(accuracy, tmp_path) -> None:
    lock = tmp_path / "unit.lock"
    with accuracy._claim(lock) as first:
        assert first
        with accuracy._claim(lock) as second:
            assert not second
    with accuracy._claim(lock) as again:
        assert again


def test_a_worker_waits_for_the_model_another_one_trains(
    accuracy, tiny_model, data, tmp_path, monkeypatch
) -> None:
    """A worker that finds the model its unit starts from in another's hands waits, and
    takes that unit over when the other worker dies (its lock is freed)."""
    profile = dataclasses.replace(
        profiles.PROFILES["smoke"], modes=("mean-teacher", "source-free"), label_kinds=()
    )
    monkeypatch.setitem(profiles.PROFILES, "smoke", profile)
    order, model = [], tiny_model(tmp_path / "model.pt")

    def run_unit(unit, profile, data, state=None, models=None):
        order.append(unit.key)
        return {"model": model, "scores": {}, "seconds": 0}

    monkeypatch.setattr(unit_training, "run_unit", run_unit)
    out = tmp_path / "out"
    (out / ".running").mkdir(parents=True)
    other = accuracy._claim(out / ".running" / "supervised__isbi2012__seed0.lock")
    assert other.__enter__()  # another worker trains the source's model
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        other.__exit__(None, None, None)  # ... and dies

    monkeypatch.setattr(accuracy.time, "sleep", sleep)
    args = ["run", "--profile", "smoke", "--data", str(data), "--out", str(out)]
    assert accuracy.main(args) == 0
    assert sleeps == [accuracy.WAIT_SECONDS]
    first, second = (
        order.index("supervised__vnc__seed0"),
        order.index("supervised__isbi2012__seed0"),
    )
    assert order.index("source-free__isbi2012-vnc__seed0") > second > first
    assert len(order) == len(set(order)) == len(profiles.plan(profile))


@pytest.mark.slow  # the kinds that start from a model, end to end; a loop killed in round 2
def test_units_from_a_model_run_resume_per_round_and_publish_their_tables(
    accuracy, data, tmp_path, capsys, monkeypatch
) -> None:
    profile = dataclasses.replace(
        profiles.PROFILES["smoke"],
        modes=("mean-teacher", "source-free"),
        label_kinds=("mean-teacher+corrections",),
    )
    monkeypatch.setitem(profiles.PROFILES, "smoke", profile)
    train, rounds = unit_training.train, []

    def killed_in_round_2(config, source, target, initial=None, state=None):
        if target is not None and target.label_kind == "sparse":
            rounds.append(state.path.name)
            if rounds == ["round1.state", "round2.state"]:
                raise KeyboardInterrupt
        return train(config, source, target, initial=initial, state=state)

    monkeypatch.setattr(unit_training, "train", killed_in_round_2)
    out = tmp_path / "results"
    args = ["--profile", "smoke", "--data", str(data), "--out", str(out)]
    with pytest.raises(KeyboardInterrupt):
        accuracy.main(["run", *args])
    key = "mean-teacher+corrections__isbi2012-vnc__seed0"
    kept = out / ".running" / f"{key}.rounds"
    assert (kept / "round1.json").is_file()
    assert accuracy.main(["run", *args]) == 0
    assert rounds == ["round1.state", "round2.state", "round2.state"]  # round 1 not again
    assert not kept.exists()  # removed once the result is safe

    results = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(results) == {u.key for u in profiles.plan(profile)}
    assert {p.stem for p in (out / "models").iterdir()} == set(results)
    corrected = results[key]
    assert [r["round"] for r in corrected["rounds"]] == [0, 1, 2]
    start = results["mean-teacher__isbi2012-vnc__seed0"]["scores"]["vnc"]
    assert corrected["rounds"][0]["scores"]["vnc"] == start  # round 0: the model it starts from
    assert corrected["steps"] == 2 * profile.correction_steps
    assert 0 < corrected["rounds"][2]["scribbled"] <= 2 * round(0.01 * 64 * 64)
    assert results["source-free__isbi2012-vnc__seed0"]["steps"] == profile.source_free_steps

    capsys.readouterr()
    assert accuracy.main(["report", *args]) == 0
    printed = capsys.readouterr().out
    assert "| source-only | mean-teacher | source-free | mean-teacher+corrections |" in printed
    assert "| pair | source-only | mean teacher | source-free |" in printed
    assert "| pair | unsupervised | round 1 | round 2 | target-trained |" in printed

    names = ("benchmark:smoke", "benchmark:smoke:source-free", "benchmark:smoke:corrections")
    document = tmp_path / "results.md"
    text = "intro\n" + "".join(f"<!-- {m} -->\nold\n<!-- /{m} -->\ntext\n" for m in names)
    document.write_text(text)
    assert accuracy.main(["report", *args, "--update", str(document)]) == 0
    written = document.read_text()
    assert "old" not in written
    for marker in names:
        table = written.split(f"<!-- {marker} -->\n")[1].split(f"\n<!-- /{marker} -->")[0]
        assert table.startswith("| pair |")
        assert table in printed
    without = text.replace("<!-- /benchmark:smoke:corrections -->", "")
    document.write_text(without)
    assert accuracy.main(["report", *args, "--update", str(document)]) == 2
    assert document.read_text() == without  # nothing written, not even the other tables


def test_a_run_whose_starting_models_were_not_kept_stops_before_training(
    accuracy, data, tmp_path, capsys, monkeypatch
) -> None:
    """Results are committed, models are not: a source-free unit after a fresh checkout
    would find its supervised model's result but not the model."""
    profile = dataclasses.replace(
        profiles.PROFILES["smoke"], modes=("source-free",), label_kinds=()
    )
    monkeypatch.setitem(profiles.PROFILES, "smoke", profile)
    monkeypatch.setattr(unit_training, "run_unit", None)  # nothing may train
    out = tmp_path / "out"
    out.mkdir()
    (out / "supervised__isbi2012__seed0.json").write_text("{}")
    (out / "supervised__vnc__seed0.json").write_text("{}")
    args = ["run", "--profile", "smoke", "--data", str(data), "--out", str(out)]
    assert accuracy.main(args) == 2
    error = capsys.readouterr().err
    assert "supervised__isbi2012__seed0" in error
    assert "delete those results to train them again" in error


def test_a_pattern_selects_units_with_the_units_they_start_from(accuracy):
    units = profiles.plan(profiles.PROFILES["screen-from-model"])
    keys = [u.key for u in accuracy.selected(units, "source-free__isbi2012*")]
    assert keys == ["supervised__isbi2012__seed0", "source-free__isbi2012-vnc__seed0"]
    assert accuracy.selected(units, None) == units
    assert accuracy.selected(units, "nothing*") == []
