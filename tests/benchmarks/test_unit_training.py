"""benchmarks/unit_training.py: what one unit of the accuracy benchmark trains on, from
which model, and how it is scored, on generated datasets."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

import profiles
import unit_training
from napari_domain_adapt.core import InputError


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
    data, monkeypatch, kind, mode, seen
) -> None:
    calls = []

    class Trained(Exception):
        """What the unit would train on: seen, so no need to train."""

    def train(config, source, target, initial=None, state=None):
        calls.append((config, target))
        raise Trained

    monkeypatch.setattr(unit_training, "train", train)
    unit = profiles.Unit(kind, "isbi2012", "vnc", 3, ("vnc",))
    with pytest.raises(Trained):
        unit_training.run_unit(unit, profiles.PROFILES["smoke"], data)
    ((config, target),) = calls
    assert config.mode == mode
    truth = unit_training.load_split(data, "vnc", "train").labels
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


def test_a_variant_trains_its_kind_with_its_settings_on_the_scaled_pair(data, monkeypatch) -> None:
    """``KIND/VARIANT`` on the made pair: the kind's mode, the variant's settings, the
    source at 4 nm and the target binned by 2 from 4.6 to 9.2 nm; keys are file names."""
    calls = []

    class Trained(Exception):
        """What the unit would train on: seen, so no need to train."""

    def train(config, source, target, initial=None, state=None):
        calls.append((config, source, target))
        raise Trained

    monkeypatch.setattr(unit_training, "train", train)
    unit = profiles.Unit("mean-teacher/no-rescale", "isbi2012", "vnc@9.2nm", 0, ("vnc@9.2nm",))
    assert "/" not in unit.key
    profile = dataclasses.replace(profiles.PROFILES["smoke"], pixel_sizes=True)
    with pytest.raises(Trained):
        unit_training.run_unit(unit, profile, data)
    ((config, source, target),) = calls
    assert config.mode == "mean-teacher"
    assert not config.alignment.pixel_size
    assert str(source.pixel_size) == "4 x 4 nm"
    assert str(target.pixel_size) == "9.2 x 9.2 nm"
    assert target.labels is None
    full = unit_training.load_split(data, "vnc", "train")
    assert target.images.shape[1:] == tuple(side // 2 for side in full.images.shape[1:])
    assert all("/" not in u.key for u in profiles.plan(profiles.PROFILES["screen"]))


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
    tiny_model, data, tmp_path, monkeypatch
) -> None:
    saved = tiny_model(tmp_path / "models" / "supervised__isbi2012__seed0.pt", 0.3)
    trained = Trained()
    monkeypatch.setattr(unit_training, "train", trained)
    profile = profiles.PROFILES["smoke"]
    unit = profiles.Unit("source-free", "isbi2012", "vnc", 0, ("vnc",))
    result = unit_training.run_unit(unit, profile, data, models=tmp_path / "models")
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
def test_a_unit_whose_starting_model_is_missing_says_which(data, tmp_path, kind) -> None:
    unit = profiles.Unit(kind, "isbi2012", "vnc", 1, ("vnc",))
    start = (
        "supervised__isbi2012__seed1"
        if kind == "source-free"
        else "mean-teacher__isbi2012-vnc__seed1"
    )
    with pytest.raises(InputError, match=f"starts from the model of unit {start}"):
        unit_training.run_unit(unit, profiles.PROFILES["smoke"], data, models=tmp_path)


def _with_test_labels_inverted(data: Path, folder: Path) -> Path:
    copy = folder / "data"
    shutil.copytree(data, copy)
    for path in (copy / "vnc" / "test" / "labels").iterdir():
        labels = tifffile.imread(path)
        tifffile.imwrite(path, np.where(labels > 0, 0, labels.max()).astype(labels.dtype))
    return copy


def test_corrections_draw_on_train_slice_0_errors_never_on_test_labels(
    tiny_model, data, tmp_path, monkeypatch
) -> None:
    """The correction loop from the mean teacher's model: each round's strokes agree with
    target train slice 0's labels and lie on the model's errors there; inverting the test
    labels changes the scores, not one stroke."""
    truth = unit_training.load_split(data, "vnc", "train")
    # An untrained model whose prediction of slice 0 is half structure: errors of both kinds.
    median = np.median(tiny_model(tmp_path / "plain.pt").predict(truth.images[:1]))
    models = tmp_path / "models"
    start = tiny_model(
        models / "mean-teacher__isbi2012-vnc__seed0.pt", -np.log(median / (1 - median))
    )
    profile = dataclasses.replace(profiles.PROFILES["smoke"], correction_rounds=3)
    unit = profiles.Unit("mean-teacher+corrections", "isbi2012", "vnc", 0, ("vnc",))
    runs = []
    for root in (data, _with_test_labels_inverted(data, tmp_path)):
        trained = Trained()
        monkeypatch.setattr(unit_training, "train", trained)
        runs.append((unit_training.run_unit(unit, profile, root, models=models), trained.calls))
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
