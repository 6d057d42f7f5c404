"""Shared fixtures: the generated sample pair and a tiny, fast configuration."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile

import pytest
import torch
from hypothesis import settings

from napari_domain_adapt.core import (
    DomainClassifierSpec,
    ModelSpec,
    TrainConfig,
    make_sample_pair,
)

# One thread: tiny test models gain nothing from more, and parallel pytest runs on a
# two-core machine stall each other when every process spins several OpenMP threads.
torch.set_num_threads(1)

# Property tests: in CI (CI=true) the same examples every run, so that a red run is always a
# regression, and no example database carried between runs; locally new random examples each
# run, and a failing one is replayed until fixed. HYPOTHESIS_PROFILE=ci|dev chooses either.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


#: Where a widget made by a test keeps its settings (see gui/remembered.py): a file of this
#: test process, never the user's, emptied before each test so that none sees another's.
SETTINGS_VARIABLE = "NAPARI_DOMAIN_ADAPT_SETTINGS"


def pytest_configure(config: pytest.Config) -> None:
    folder = tempfile.mkdtemp(prefix="napari-domain-adapt-settings-")
    config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    os.environ[SETTINGS_VARIABLE] = os.path.join(folder, "widget.json")


def pytest_runtest_setup(item: pytest.Item) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.environ[SETTINGS_VARIABLE])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a display, GUI tests would abort the whole run inside Qt: stop first, and
    say how to get one."""
    for item in items:  # a test with a viewer or Qt widgets is a GUI test, marked or not
        if {"make_napari_viewer", "qtbot"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform != "linux" or has_display:
        return
    if any(item.get_closest_marker("gui") for item in items):
        pytest.exit(
            "the GUI tests need a display, and there is none and no Xvfb to start one: "
            "run `bash scripts/install-display.sh` (Debian, Ubuntu; it installs Xvfb and "
            "the X libraries Qt needs), or skip them with -m 'not gui'",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture(scope="session")
def sample_pair():
    """A small generated source/target pair (4 + 4 slices of 96x96)."""
    return make_sample_pair(n_source=4, n_target=4, size=96, seed=0)


@pytest.fixture
def tiny_config() -> TrainConfig:
    """A configuration that trains in well under a second per few steps."""
    return TrainConfig(
        mode="source-only",
        steps=4,
        batch_size=2,
        patch_size=32,
        model=ModelSpec(depth=2, width=8),
        domain=DomainClassifierSpec(width=4),
        preview_interval=0.0,
        device="cpu",
    )


@pytest.fixture
def notes(monkeypatch):
    """Notifications the widget shows, by kind (the widget tests')."""
    from napari_domain_adapt.gui import widget as _widget  # napari: only for the tests that ask

    shown: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for kind in shown:
        monkeypatch.setattr(_widget, f"show_{kind}", shown[kind].append)
    return shown
