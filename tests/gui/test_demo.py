"""The demo and the docked plugin in a fresh process, as a user starts them.

Each runs in its own Python process because the order of loading matters: napari's OpenGL
context first (with Mesa's software OpenGL, as under Xvfb, that loads the system's LLVM),
then torch's first optimiser step, which imports Triton where torch is a CUDA build. That
order crashed every new Linux user (a segmentation fault); core/_triton.py prevents it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# The demo and the plugin in fresh processes, as users start them: `pytest -m slow` (CI).
pytestmark = [pytest.mark.gui, pytest.mark.slow]

#: What the crash needed: Triton installed (a CUDA build of torch) and software OpenGL.
CONDITION = textwrap.dedent(
    """
    import importlib.util, sys
    maps = open("/proc/self/maps").read()
    print("triton installed:", importlib.util.find_spec("triton") is not None)
    print("triton imported:", "triton" in sys.modules)
    print("software OpenGL (Mesa's LLVM):", "libLLVM" in maps)
    """
)

#: The Plugins menu's path: a viewer drawn on screen first, then the widget, then Adapt.
PLUGIN_AFTER_VIEWER = textwrap.dedent(
    """
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_domain_adapt.gui.sample_data import make_sample_data

    viewer = napari.Viewer()
    for data, meta, kind in make_sample_data(n_source=2, n_target=2, size=64):
        getattr(viewer, f"add_{kind}")(data, **meta)
    QApplication.processEvents()  # the canvas is drawn: the OpenGL context is current
    _, widget = viewer.window.add_plugin_dock_widget("napari-domain-adapt", "Domain adaptation")
    for path, value in (("model.depth", 2), ("model.width", 4), ("steps", 3)):
        widget.form.field(path).value = value
    widget.config_overrides = {"patch_size": 32, "batch_size": 2}
    worker = widget.start_training()
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    while not finished:
        QApplication.processEvents()
    print("trained:", widget.model is not None)
    print("result:", widget.segmentation_layer().name)
    viewer.close()
    """
)


def _run_fresh(arguments: list[str], folder: Path) -> str:
    """Run Python with ``arguments`` in a new process; its output, once it exited with 0."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a crash prints where it happened
    result = subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=folder,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"exit status {result.returncode}:\n{output[-4000:]}"
    return output


def _assert_the_crash_condition_was_met(output: str) -> None:
    """Where torch has Triton, the run imported it with the OpenGL context alive."""
    if "triton installed: True" in output:
        assert "triton imported: True" in output, output[-2000:]


def test_plugin_docked_into_an_existing_viewer_trains(tmp_path) -> None:
    output = _run_fresh(["-c", PLUGIN_AFTER_VIEWER + CONDITION], tmp_path)
    assert "trained: True" in output
    assert "result: target segmentation" in output
    _assert_the_crash_condition_was_met(output)


def test_demo_check_opens_trains_and_closes(tmp_path) -> None:
    screenshot = tmp_path / "demo.png"
    command = ["-m", "napari_domain_adapt.cli", "demo", "--check", "2"]
    output = _run_fresh([*command, "--screenshot", str(screenshot)], tmp_path)
    assert "check passed: mean-teacher, trained 2 steps" in output
    assert "'target segmentation'" in output
    assert screenshot.stat().st_size > 10_000
