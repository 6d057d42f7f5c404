"""The settings described once: paths into TrainConfig, presets, and changing values."""

from __future__ import annotations

import dataclasses

import pytest

from napari_domain_adapt.core import (
    ADAPTIVE,
    PRESETS,
    SETTINGS,
    TEACHER_MODES,
    InputError,
    ModelSpec,
    TrainConfig,
    get_value,
    preset,
    with_values,
)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.path)
def test_every_setting_is_a_field_of_the_configuration(setting) -> None:
    value = get_value(TrainConfig(), setting.path)
    assert setting.default() == value
    assert setting.kind in (bool, int, float, str)
    assert setting.help
    assert setting.label
    if setting.choices and not setting.open_choices:
        assert value in setting.choices or value is None


def test_options_are_unique() -> None:
    assert len({s.path for s in SETTINGS}) == len(SETTINGS)
    assert len({s.option for s in SETTINGS}) == len(SETTINGS)


def test_with_values_changes_plain_and_nested_fields_and_validates() -> None:
    config = with_values(TrainConfig(), {"steps": 7, "model.depth": 2, "model.width": 4})
    assert (config.steps, config.model) == (7, ModelSpec(depth=2, width=4))
    assert config.model.norm == ModelSpec().norm  # the rest of the group is kept
    with pytest.raises(InputError, match="depth must be between 1 and 6"):
        with_values(TrainConfig(), {"model.depth": 9})
    with pytest.raises(InputError, match="unknown configuration group"):
        with_values(TrainConfig(), {"student.decay": 0.5})
    teacher = with_values(TrainConfig(), {"teacher.decay": 0.5}).teacher
    assert (teacher.decay, teacher.confidence) == (0.5, 0.8)  # the groups too


def test_the_laptop_preset_is_the_widgets_starting_point() -> None:
    """The numbers the widget has always started from: 600 steps, patches of 64, batch 8,
    depth 3, width 16, checks every 50 steps; the rest the defaults."""
    config = preset("laptop")
    assert (config.steps, config.patch_size, config.batch_size) == (600, 64, 8)
    assert (config.model.depth, config.model.width, config.selection.every) == (3, 16, 50)
    assert config.mode == TrainConfig().mode
    assert preset("laptop", mode="adversarial").mode == "adversarial"
    assert preset() == TrainConfig()
    for name, values in PRESETS.items():
        for path, value in values.items():
            assert get_value(preset(name), path) == value
    with pytest.raises(InputError, match="unknown preset 'gpu'"):
        preset("gpu")


def test_a_setting_knows_its_preset_default() -> None:
    steps = next(s for s in SETTINGS if s.path == "steps")
    assert steps.default() == TrainConfig().steps
    assert steps.default("laptop") == 600
    depth = dataclasses.replace(steps, path="model.depth")
    assert depth.default("laptop") == 3


def test_the_alignment_and_balance_settings() -> None:
    settings = {s.path: s for s in SETTINGS}
    balance = settings["teacher.balance"]
    assert balance.kind is float  # its default, None, does not tell
    assert balance.option == "--teacher-balance"
    assert set(balance.modes) == set(TEACHER_MODES)
    assert set(settings["alignment.fda_beta"].modes) == set(ADAPTIVE)
    assert settings["alignment.histogram_matching"].widget
    assert not settings["alignment.fda_beta"].widget
    assert not settings["alignment.appearance"].widget
    config = with_values(TrainConfig(), {"teacher.balance": 0.6, "alignment.fda_beta": 0.02})
    assert (config.teacher.balance, config.alignment.fda_beta) == (0.6, 0.02)
