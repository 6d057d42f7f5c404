"""Tests for the configuration: validation of every field and the dict round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from napari_domain_adapt.core.config import (
    CONFIG_VERSION,
    MODES,
    DomainClassifierSpec,
    ModelSpec,
    Preprocessing,
    SelectionSpec,
    TeacherSpec,
    TrainConfig,
)
from napari_domain_adapt.core.errors import InputError


def test_defaults_are_valid_and_mean_teacher() -> None:
    config = TrainConfig()
    assert config.mode == "mean-teacher"  # the best unsupervised mode of the benchmark
    assert config.mean_teacher
    assert not config.adversarial
    assert TrainConfig(mode="adversarial").adversarial
    assert config.version == CONFIG_VERSION
    assert not TrainConfig(mode="source-only").adversarial
    assert TrainConfig(mode="semi-supervised").adversarial
    assert {"source-only", "adversarial", "semi-supervised"} <= set(MODES)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"mode": "unsupervised"}, r"mode must be one of .*'unsupervised'"),
        ({"steps": 0}, "steps must be at least 1; got 0"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"patch_size": 100}, r"patch_size must be a multiple of 16 \(2\*\*depth\); got 100"),
        (
            {"mode": "adversarial", "patch_size": 8, "model": {"depth": 3}},
            "needs patch_size >= 16",
        ),
        ({"learning_rate": 0.0}, "learning_rate must be in"),
        ({"domain": {"learning_rate": 1.5}}, "domain learning_rate must be in"),
        ({"domain": {"beta": -0.1}}, "beta must be >= 0"),
        ({"domain": {"gradient": "source"}}, "domain gradient must be one of"),
        ({"teacher": {"confidence": 0.3}}, r"confidence must be in \[0.5, 1\)"),
        ({"teacher": {"decay": 1.0}}, "teacher decay must be in"),
        ({"teacher": {"balance": 0.0}}, r"balance must be None or a quantile in \(0, 1\]"),
        ({"teacher": {"balance": 1.5}}, "balance must be None or a quantile"),
        ({"teacher": {"balance": True}}, "balance must be None or a quantile"),
        ({"teacher": {"balance": "0.5"}}, "balance must be None or a quantile"),
        ({"selection": {"every": 0}}, "select_every must be None or an integer"),
        ({"selection": {"by": "entropy"}}, "needs select_every"),
        ({"preview_interval": -1.0}, "preview_interval must be >= 0"),
        ({"warmup_fraction": 1.0}, r"warmup_fraction must be in \[0, 1\)"),
        ({"target_label_fraction": 0.0}, "target_label_fraction must be in"),
        ({"domain": {"width": 0}}, "domain width must be >= 1"),
        ({"amp": "bf16"}, "amp must be True or False; got 'bf16'"),
        ({"version": CONFIG_VERSION + 1}, "not supported"),
    ],
)
def test_invalid_train_config(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({"version": CONFIG_VERSION, **changes})


def test_groups_must_be_their_specs() -> None:
    with pytest.raises(ValueError, match=r"teacher must be a TeacherSpec; got 0\.8"):
        TrainConfig(teacher=0.8)
    with pytest.raises(ValueError, match="teacher configuration must be a mapping"):
        TrainConfig.from_dict({"version": CONFIG_VERSION, "teacher": [0.8]})


def test_a_version_1_configuration_is_read_into_the_groups() -> None:
    """Checkpoints and results written before the fields were grouped still load."""
    flat = {
        "version": 1,
        "mode": "adversarial",
        "beta": 0.3,
        "domain_width": 8,
        "domain_gradient": "target",
        "confidence": 0.9,
        "teacher_decay": 0.95,
        "select_every": 10,
        "select_by": "entropy",
    }
    config = TrainConfig.from_dict(flat)
    assert config.domain == DomainClassifierSpec(beta=0.3, width=8, gradient="target")
    assert config.teacher == TeacherSpec(decay=0.95, confidence=0.9)
    assert config.selection == SelectionSpec(every=10, by="entropy")
    assert config.version == CONFIG_VERSION
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_patch_size_follows_depth() -> None:
    assert TrainConfig(patch_size=24, model=ModelSpec(depth=3)).patch_size == 24
    with pytest.raises(ValueError, match="multiple of 8"):
        TrainConfig(patch_size=20, model=ModelSpec(depth=3))
    # a source-only run has no domain classifier, so it may use patches below 16
    small = TrainConfig(mode="source-only", patch_size=8, model=ModelSpec(depth=3))
    assert small.patch_size == 8
    assert TrainConfig(mode="adversarial", patch_size=16, model=ModelSpec(depth=3)).adversarial


def test_replace_validates_again() -> None:
    config = TrainConfig()
    with pytest.raises(ValueError, match="steps"):
        dataclasses.replace(config, steps=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"depth": 0}, "depth must be between 1 and 6"),
        ({"depth": 7}, "depth must be between 1 and 6"),
        ({"width": 0}, "width must be between 1 and 256"),
        ({"norm": "layer"}, r"norm must be one of batch, channel, group, instance; got 'layer'"),
    ],
)
def test_invalid_model_spec(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelSpec(**changes)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"channel": "red"}, "channel must be one of luminance, green, mean"),
        ({"percentiles": (99.0, 1.0)}, "percentiles must satisfy"),
        ({"percentiles": (-1.0, 99.0)}, "percentiles must satisfy"),
        ({"percentiles": (1.0, 101.0)}, "percentiles must satisfy"),
        ({"clahe_clip": 0.0}, r"clahe_clip must be in \(0, 1\]"),
    ],
)
def test_invalid_preprocessing(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Preprocessing(**changes)


def test_percentiles_become_float_tuple() -> None:
    assert Preprocessing(percentiles=[2, 98]).percentiles == (2.0, 98.0)


def test_round_trip_through_json() -> None:
    config = TrainConfig(
        mode="semi-supervised",
        steps=17,
        patch_size=48,
        domain=DomainClassifierSpec(beta=0.25),
        teacher=TeacherSpec(confidence=0.9),
        selection=SelectionSpec(every=5, by="entropy"),
        seed=9,
        model=ModelSpec(depth=3, width=6, norm="instance"),
        preprocessing=Preprocessing(channel="green", percentiles=(0.5, 99.5), clahe=True),
    )
    data = config.to_dict()
    assert data["model"] == {"depth": 3, "width": 6, "norm": "instance"}
    assert data["preprocessing"]["channel"] == "green"
    restored = TrainConfig.from_dict(json.loads(json.dumps(data)))
    assert restored == config
    assert isinstance(restored.model, ModelSpec)
    assert isinstance(restored.preprocessing, Preprocessing)
    assert restored.preprocessing.percentiles == (0.5, 99.5)


def test_from_dict_fills_defaults() -> None:
    assert TrainConfig.from_dict({"steps": 3}) == TrainConfig(steps=3)


def test_from_dict_refuses_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown configuration fields: colour, speed"):
        TrainConfig.from_dict({"steps": 3, "speed": 1, "colour": "red"})
    with pytest.raises(ValueError, match="unknown model configuration fields: kernel"):
        TrainConfig.from_dict({"model": {"depth": 2, "kernel": 3}})
    with pytest.raises(ValueError, match="unknown preprocessing configuration fields: gamma"):
        TrainConfig.from_dict({"preprocessing": {"gamma": 2.0}})


def test_from_dict_validates() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        TrainConfig.from_dict({"mode": "magic"})
    with pytest.raises(ValueError, match="norm must be one of"):
        TrainConfig.from_dict({"model": {"norm": "none"}})


@pytest.mark.parametrize("field", ["steps", "batch_size", "patch_size", "seed"])
def test_integer_fields_refuse_fractions(field: str) -> None:
    with pytest.raises(InputError, match=f"{field} must be an integer; got 2.5"):
        TrainConfig(**{field: 2.5})


def test_teacher_balance_defaults_to_the_fixed_rule_and_old_dicts_load() -> None:
    assert TeacherSpec().balance is None
    assert TeacherSpec(balance=1).balance == 1.0
    assert isinstance(TeacherSpec(balance=1).balance, float)
    saved = TrainConfig(teacher=TeacherSpec(balance=0.7)).to_dict()
    assert TrainConfig.from_dict(saved).teacher.balance == 0.7
    del saved["teacher"]["balance"]  # a version-2 configuration from before the field
    assert TrainConfig.from_dict(saved).teacher == TeacherSpec()
