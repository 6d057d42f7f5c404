"""The widget's settings come from the one description that the CLI's options come from."""

from __future__ import annotations

import argparse

import pytest

from napari_domain_adapt.cli.parser import add_settings, given_settings
from napari_domain_adapt.core import SETTINGS, TEACHER_MODES, Setting, TrainConfig
from napari_domain_adapt.gui.form import InputsForm

pytestmark = pytest.mark.gui

#: A setting the description does not have yet (TrainConfig has the field).
NEW = Setting(
    "teacher.decay",
    "mean teacher",
    "Teacher decay",
    "mean teacher: weight of the old average in the teacher's moving average",
    minimum=0.0,
    maximum=0.999,
    step=0.001,
    flag="--teacher-decay",
    modes=TEACHER_MODES,
)


def test_a_setting_added_once_appears_in_the_cli_and_the_widget(make_napari_viewer):
    settings = (*SETTINGS, NEW)

    parser = argparse.ArgumentParser()
    add_settings(parser, ("mean-teacher",), settings)
    assert "--teacher-decay" in parser.format_help()
    args = parser.parse_args(["--teacher-decay", "0.95", "--steps", "3"])
    assert given_settings(args, settings) == {"teacher.decay": 0.95, "steps": 3}

    form = InputsForm(make_napari_viewer(), settings=settings)
    field = form.field("teacher.decay")
    assert field.value == TrainConfig().teacher.decay
    assert field.tooltip == NEW.help
    advanced = form.advanced.content().findChildren(type(field.native))
    assert field.native in advanced  # under Advanced, not the main form
    field.value = 0.95
    assert form.config().teacher.decay == 0.95
    form.mode.value = "adversarial"
    assert not field.enabled  # no teacher in this mode


def test_the_form_starts_from_the_laptop_preset(make_napari_viewer):
    form = InputsForm(make_napari_viewer())
    config = form.config()
    assert (config.steps, config.patch_size, config.model.depth, config.selection.every) == (
        600,
        64,
        3,
        50,
    )
    assert form.config({"steps": 5}).steps == 5  # overrides win
