"""The accuracy benchmark script: its plan, resumability and report, on generated datasets."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch


def test_only_the_committed_results_are_written_into_the_repository(accuracy) -> None:
    repository = Path(__file__).parents[2]
    results = (repository / "docs" / "results.md").read_text()
    for profile in accuracy.PROFILES:
        out = accuracy.default_out(profile)
        if profile in accuracy.COMMITTED:  # docs/results.md's tables are generated from them
            assert (repository / out).is_dir()
            assert f"<!-- benchmark:{profile} -->" in results
        else:  # scratch: e.g. the smoke profile of these tests
            assert out.is_relative_to(tempfile.gettempdir())


def test_plan_trains_each_model_once(accuracy) -> None:
    units = accuracy.plan(accuracy.PROFILES["full"])
    keys = [u.key for u in units]
    assert len(keys) == len(set(keys))
    supervised = [u for u in units if u.kind == "supervised"]
    # One labelled model per dataset and seed: the baseline of X -> Y is the upper bound of Y -> X.
    assert len(supervised) == 4 * 3
    drive = next(u for u in supervised if u.source == "drive")
    assert drive.evaluate_on == ("drive", "stare")
    # one labelled slice in both modes on every pair; scribbles in both modes on EM only
    assert {"semi-supervised", "mean-teacher+slice"} <= set(accuracy.PROFILES["full"].modes)
    full = accuracy.PROFILES["full"]
    assert len(units) == 12 + 3 * 4 * len(full.modes) + 3 * 2 * len(full.label_kinds)
    for kind in ("scribbles", "mean-teacher+scribbles", "mean-teacher+corrections"):
        pairs = {(u.source, u.target) for u in units if u.kind == kind}
        assert pairs == {("isbi2012", "vnc"), ("vnc", "isbi2012")}
    source_free = [u for u in units if u.kind == "source-free"]
    assert {(u.source, u.target) for u in source_free} == set(accuracy.PAIRS)
    assert {u.seed for u in source_free} == {0, 1, 2}


@pytest.mark.parametrize(
    ("kind", "mode", "seen"),
    [
        ("adversarial", "adversarial", None),
        ("semi-supervised", "semi-supervised", "slice"),
        ("scribbles", "semi-supervised", "scribbles"),
        ("mean-teacher+slice", "mean-teacher", "slice"),
        ("mean-teacher+scribbles", "mean-teacher", "scribbles"),
    ],
)
def test_each_kind_trains_its_mode_on_its_target_labels(
    accuracy, data, monkeypatch, kind, mode, seen
) -> None:
    calls = []

    class Trained(Exception):
        """What the unit would train on: seen, so no need to train."""

    def train(config, source, target, initial=None, state=None):
        calls.append((config, target))
        raise Trained

    monkeypatch.setattr(accuracy, "train", train)
    unit = accuracy.Unit(kind, "isbi2012", "vnc", 3, ("vnc",))
    with pytest.raises(Trained):
        accuracy.run_unit(unit, accuracy.PROFILES["smoke"], data)
    ((config, target),) = calls
    assert config.mode == mode
    truth = accuracy._load(data, "vnc", "train").labels
    if seen is None:
        assert target.labels is None
        return
    assert target.labelled_slices().tolist() == [0]  # slice 0 only
    if seen == "slice":
        assert target.label_kind == "dense"
        np.testing.assert_array_equal(target.labels[0], truth[0])
    else:
        assert target.label_kind == "sparse"
        marked = target.annotated[0]
        assert 0 < marked.mean() < 0.05  # strokes, not the slice
        # every stroke pixel agrees with the slice's labels (0/1 here)
        np.testing.assert_array_equal(target.labels[0][marked], truth[0][marked])


@pytest.mark.slow  # a run killed and resumed, end to end
def test_run_is_resumable_and_reported(accuracy, data, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(accuracy, "STATE_EVERY", 1)
    monkeypatch.setattr(accuracy, "SNAPSHOT_EVERY", 2)
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


def test_report_averages_each_mode_over_the_pairs(accuracy, tmp_path) -> None:
    profile = accuracy.Profile(
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
    last = accuracy.results_table(tmp_path, profile).splitlines()[4]
    # source-only: (0.6 + 0.5) / 2; mean teacher: one pair only; target-trained: (0.8 + 0.9) / 2
    assert last == "| mean of the 2 pairs | 55.00 | – | 85.00 | |"


def test_a_variant_trains_its_kind_with_its_settings_on_the_scaled_pair(
    accuracy, data, monkeypatch
) -> None:
    """``KIND/VARIANT`` on the made pair: the kind's mode, the variant's settings, the
    source at 4 nm and the target binned by 2 from 4.6 to 9.2 nm; keys are file names."""
    calls = []

    class Trained(Exception):
        """What the unit would train on: seen, so no need to train."""

    def train(config, source, target, initial=None, state=None):
        calls.append((config, source, target))
        raise Trained

    monkeypatch.setattr(accuracy, "train", train)
    unit = accuracy.Unit("mean-teacher/no-rescale", "isbi2012", "vnc@9.2nm", 0, ("vnc@9.2nm",))
    assert "/" not in unit.key
    profile = accuracy.dataclasses.replace(accuracy.PROFILES["smoke"], pixel_sizes=True)
    with pytest.raises(Trained):
        accuracy.run_unit(unit, profile, data)
    ((config, source, target),) = calls
    assert config.mode == "mean-teacher"
    assert not config.alignment.pixel_size
    assert str(source.pixel_size) == "4 x 4 nm"
    assert str(target.pixel_size) == "9.2 x 9.2 nm"
    assert target.labels is None
    full = accuracy._load(data, "vnc", "train")
    assert target.images.shape[1:] == tuple(side // 2 for side in full.images.shape[1:])
    assert all("/" not in u.key for u in accuracy.plan(accuracy.PROFILES["screen"]))
