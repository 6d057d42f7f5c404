"""The widget's settings file: kept between sessions, never an error, never half-written."""

from __future__ import annotations

import json
import logging
import os

import pytest

from napari_domain_adapt.gui import remembered


@pytest.fixture
def settings_path(tmp_path, monkeypatch):
    path = tmp_path / "config" / "widget.json"
    monkeypatch.setenv(remembered.FILE_VARIABLE, str(path))
    return path


def test_the_tests_keep_no_settings_in_the_users_folder():
    """tests/conftest.py names a file per test process; a widget test never reads or
    changes the user's own settings."""
    from conftest import SETTINGS_VARIABLE

    assert SETTINGS_VARIABLE == remembered.FILE_VARIABLE
    assert "napari-domain-adapt-settings-" in os.environ[SETTINGS_VARIABLE]


def test_the_default_file_is_in_the_users_configuration_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(remembered.FILE_VARIABLE)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert remembered.settings_file() == tmp_path / "napari-domain-adapt" / "widget.json"
    assert remembered.settings_file().name == "widget.json"


def test_saved_values_load_again(settings_path):
    assert remembered.load() == {}  # no file yet
    values = {"mode": "adversarial", "steps": 1234, "domain.beta": 0.5, "amp": True}
    remembered.save(values)
    assert remembered.load() == values
    remembered.save({"steps": 5})  # replaced whole
    assert remembered.load() == {"steps": 5}
    assert [p.name for p in settings_path.parent.iterdir()] == ["widget.json"]  # no leftovers


def test_an_update_keeps_the_other_values(settings_path):
    remembered.update({"export.format": 1})  # no file yet
    remembered.update({"mode": "adversarial", "steps": 5})
    remembered.update({"steps": 7})
    assert remembered.load() == {"export.format": 1, "mode": "adversarial", "steps": 7}


def test_later_updates_apply_in_the_order_asked(settings_path):
    """The widget asks from the GUI thread and a thread writes: two quick runs must leave
    the later run's settings, and an export between them its format."""
    values = {"export.format": 255}
    for steps in range(1, 31):
        remembered.update_later({"steps": steps})
        if steps == 10:
            remembered.update_later(values)
    remembered.update_later({"mode": "adversarial"}).result(timeout=30)
    assert remembered.load() == {"steps": 30, "export.format": 255, "mode": "adversarial"}
    values["export.format"] = 1  # the caller's dict, changed after the call: not written
    remembered.update_later({}).result(timeout=30)
    assert remembered.load()["export.format"] == 255


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", json.dumps({"version": 0, "values": {"steps": 5}}), '{"version": 1}'],
)
def test_a_damaged_or_older_file_is_ignored(settings_path, text, caplog):
    settings_path.parent.mkdir(parents=True)
    settings_path.write_text(text)
    with caplog.at_level(logging.WARNING):
        assert remembered.load() == {}
    assert settings_path.read_text() == text  # left as it was


def test_a_failed_save_is_logged_and_leaves_nothing(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(remembered.FILE_VARIABLE, str(blocker / "widget.json"))
    with caplog.at_level(logging.WARNING):
        remembered.save({"steps": 5})  # no exception: a run must not fail for it
    assert "could not keep the widget settings" in caplog.text
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
