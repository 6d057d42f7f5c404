"""The accuracy benchmark script: its plan, resumability and report, on generated datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch


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


class Trained:
    """A stand-in for core's train: what it was given; the model it started from, as trained."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, config, source, target, initial=None, state=None):
        self.calls.append((config, source, target, initial))
        history = [{"step": 1, "supervised_loss": 0.5, "domain_loss": None}]
        yield accuracy_finished(initial, config.steps, history)


def accuracy_finished(model, steps: int, history: list):
    from napari_domain_adapt.core.training import TrainFinished

    return TrainFinished(model, steps, False, 0.5, "cpu", history)


def test_source_free_adapts_the_supervised_model_without_the_source(
    accuracy, tiny_model, data, tmp_path, monkeypatch
) -> None:
    saved = tiny_model(tmp_path / "models" / "supervised__isbi2012__seed0.pt", 0.3)
    trained = Trained()
    monkeypatch.setattr(accuracy, "train", trained)
    profile = accuracy.PROFILES["smoke"]
    unit = accuracy.Unit("source-free", "isbi2012", "vnc", 0, ("vnc",))
    result = accuracy.run_unit(unit, profile, data, models=tmp_path / "models")
    ((config, source, target, initial),) = trained.calls
    assert source is None
    assert config.mode == "mean-teacher"
    assert config.steps == profile.source_free_steps < profile.steps
    assert target.labels is None  # no target labels either
    assert initial.network.head.bias.item() == pytest.approx(0.3)
    assert initial.network is not saved.network  # read from its file
    assert result["seconds"] == 0.5
    assert result["steps"] == profile.source_free_steps
    assert set(result["scores"]) == {"vnc"}


@pytest.mark.parametrize("kind", ["source-free", "mean-teacher+corrections"])
def test_a_unit_whose_starting_model_is_missing_says_which(accuracy, data, tmp_path, kind) -> None:
    unit = accuracy.Unit(kind, "isbi2012", "vnc", 1, ("vnc",))
    start = (
        "supervised__isbi2012__seed1"
        if kind == "source-free"
        else "mean-teacher__isbi2012-vnc__seed1"
    )
    with pytest.raises(accuracy.InputError, match=f"starts from the model of unit {start}"):
        accuracy.run_unit(unit, accuracy.PROFILES["smoke"], data, models=tmp_path)


def _with_test_labels_inverted(data: Path, folder: Path) -> Path:
    copy = folder / "data"
    shutil.copytree(data, copy)
    for path in (copy / "vnc" / "test" / "labels").iterdir():
        labels = tifffile.imread(path)
        tifffile.imwrite(path, np.where(labels > 0, 0, labels.max()).astype(labels.dtype))
    return copy


def test_corrections_draw_on_train_slice_0_errors_never_on_test_labels(
    accuracy, tiny_model, data, tmp_path, monkeypatch
) -> None:
    """The correction loop from the mean teacher's model: each round's strokes agree with
    target train slice 0's labels and lie on the model's errors there; inverting the test
    labels changes the scores, not one stroke."""
    truth = accuracy._load(data, "vnc", "train")
    # An untrained model whose prediction of slice 0 is half structure: errors of both kinds.
    median = np.median(tiny_model(tmp_path / "plain.pt").predict(truth.images[:1]))
    models = tmp_path / "models"
    start = tiny_model(
        models / "mean-teacher__isbi2012-vnc__seed0.pt", -np.log(median / (1 - median))
    )
    profile = accuracy.dataclasses.replace(accuracy.PROFILES["smoke"], correction_rounds=3)
    unit = accuracy.Unit("mean-teacher+corrections", "isbi2012", "vnc", 0, ("vnc",))
    runs = []
    for root in (data, _with_test_labels_inverted(data, tmp_path)):
        trained = Trained()
        monkeypatch.setattr(accuracy, "train", trained)
        runs.append((accuracy.run_unit(unit, profile, root, models=models), trained.calls))
    (result, calls), (inverted, inverted_calls) = runs

    wrong = (start.predict(truth.images[:1])[0] >= 0.5) != truth.labels[0]
    assert len(calls) == 3
    for config, source, target, _ in calls:
        assert config.mode == "mean-teacher"
        assert config.steps == profile.correction_steps
        assert source is not None  # continued with the source, as Continue in the widget
        assert target.label_kind == "sparse"
        assert target.labelled_slices().tolist() == [0]
        marked = target.annotated[0]
        assert wrong[marked].all()  # the trainer returns the model unchanged: same errors
        np.testing.assert_array_equal(target.labels[0][marked], truth.labels[0][marked])
        assert set(np.unique(target.labels[0][marked])) == {0, 1}  # both kinds of error
    assert [c[2].annotated[0].sum() for c in calls] == sorted(
        c[2].annotated[0].sum() for c in calls
    )
    for call, again in zip(calls, inverted_calls, strict=True):
        np.testing.assert_array_equal(call[2].annotated, again[2].annotated)
        np.testing.assert_array_equal(call[2].labels, again[2].labels)

    assert [r["round"] for r in result["rounds"]] == [0, 1, 2, 3]
    assert result["seconds"] == 1.5  # 3 rounds of 0.5 s
    assert result["steps"] == 3 * profile.correction_steps
    assert result["scores"] == result["rounds"][-1]["scores"]
    f1, flipped = result["scores"]["vnc"]["f1"], inverted["scores"]["vnc"]["f1"]
    assert f1 != flipped  # the test labels do score


def test_a_worker_waits_for_the_model_another_one_trains(
    accuracy, tiny_model, data, tmp_path, monkeypatch
) -> None:
    """A worker that finds the model its unit starts from in another's hands waits, and
    takes that unit over when the other worker dies (its lock is freed)."""
    profile = accuracy.dataclasses.replace(
        accuracy.PROFILES["smoke"], modes=("mean-teacher", "source-free"), label_kinds=()
    )
    monkeypatch.setitem(accuracy.PROFILES, "smoke", profile)
    order, model = [], tiny_model(tmp_path / "model.pt")

    def run_unit(unit, profile, data, state=None, models=None):
        order.append(unit.key)
        return {"model": model, "scores": {}, "seconds": 0}

    monkeypatch.setattr(accuracy, "run_unit", run_unit)
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
    assert len(order) == len(set(order)) == len(accuracy.plan(profile))


def test_source_free_table_compares_with_the_mean_teacher_in_time_and_f1(accuracy) -> None:
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
    lines = accuracy.source_free_table(results, pairs).splitlines()
    assert lines[2] == (
        "| isbi2012 → vnc | 70.00 (n=1) | 80.00 (n=1) | 79.00 ± 1.41 (n=2) | -1.00 "
        "| 100 / 45 (45 %) |"
    )
    assert lines[3] == "| vnc → isbi2012 | – | – | – | – | – |"
    assert lines[4] == "| mean of the 2 pairs | – | – | – | – | – |"


@pytest.mark.slow  # the kinds that start from a model, end to end; a loop killed in round 2
def test_units_from_a_model_run_resume_per_round_and_publish_their_tables(
    accuracy, data, tmp_path, capsys, monkeypatch
) -> None:
    profile = accuracy.dataclasses.replace(
        accuracy.PROFILES["smoke"],
        modes=("mean-teacher", "source-free"),
        label_kinds=("mean-teacher+corrections",),
    )
    monkeypatch.setitem(accuracy.PROFILES, "smoke", profile)
    train, rounds = accuracy.train, []

    def killed_in_round_2(config, source, target, initial=None, state=None):
        if target is not None and target.label_kind == "sparse":
            rounds.append(state.path.name)
            if rounds == ["round1.state", "round2.state"]:
                raise KeyboardInterrupt
        return train(config, source, target, initial=initial, state=state)

    monkeypatch.setattr(accuracy, "train", killed_in_round_2)
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
    assert set(results) == {u.key for u in accuracy.plan(profile)}
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
    profile = accuracy.dataclasses.replace(
        accuracy.PROFILES["smoke"], modes=("source-free",), label_kinds=()
    )
    monkeypatch.setitem(accuracy.PROFILES, "smoke", profile)
    monkeypatch.setattr(accuracy, "run_unit", None)  # nothing may train
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
    units = accuracy.plan(accuracy.PROFILES["screen-from-model"])
    keys = [u.key for u in accuracy.selected(units, "source-free__isbi2012*")]
    assert keys == ["supervised__isbi2012__seed0", "source-free__isbi2012-vnc__seed0"]
    assert accuracy.selected(units, None) == units
    assert accuracy.selected(units, "nothing*") == []
