"""``napari-domain-adapt demo``: napari with the sample pair and the widget docked.

``--check STEPS`` makes it a check of the installation: the window opens as for a user, the
widget trains for a few steps and predicts, and napari closes; the exit status says whether
all of it worked.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

    from .widget import AdaptWidget

PLUGIN = "napari-domain-adapt"


@dataclass
class CheckOutcome:
    """What a ``--check`` run saw: whether it ended with a model and result layers."""

    ok: bool = False
    message: str = "napari closed before the run finished"


def open_demo() -> tuple[napari.Viewer, AdaptWidget]:
    """A napari window with the sample pair and the docked widget, both images in view."""
    import napari
    from qtpy.QtCore import QTimer

    viewer = napari.Viewer(title="napari-domain-adapt demo")
    viewer.open_sample(PLUGIN, "em_pair")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Domain adaptation")
    # Once the dock has taken its width from the canvas, frame both images in what is left.
    QTimer.singleShot(0, viewer.reset_view)
    return viewer, widget


def dock_at_defaults(viewer: napari.Viewer) -> AdaptWidget:
    """The widget, docked as napari docks it for a user, :func:`at_defaults`."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Domain adaptation")
    return at_defaults(widget)


def at_defaults(widget: AdaptWidget) -> AdaptWidget:
    """``widget`` at its default settings, keeping none: the installation check, the
    benchmarks and the screenshots neither depend on nor change a user's kept settings."""
    widget.remember_settings = False
    widget.form.reset()
    return widget


def check_installation(
    viewer: napari.Viewer, widget: AdaptWidget, steps: int, screenshot: Path | None = None
) -> CheckOutcome:
    """Schedule Adapt with ``steps`` steps, then closing the window; returns the outcome,
    which is filled in when the run ends."""
    from qtpy.QtCore import QTimer

    outcome = CheckOutcome()
    at_defaults(widget)

    def finished() -> None:
        names = [layer.name for layer in viewer.layers]
        outcome.ok = widget.model is not None and widget.segmentation_layer() is not None
        outcome.message = f"{widget.model_label.text()}; {widget.status.text()}; layers {names}"
        if screenshot is not None:
            viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
        QTimer.singleShot(0, viewer.close)

    def start() -> None:
        widget.config_overrides["steps"] = steps
        worker = widget.start_training()
        if worker is None:
            outcome.message = f"Adapt did not start: {widget.status.text()}"
            viewer.close()
            return
        worker.finished.connect(finished)

    QTimer.singleShot(0, start)
    return outcome


def run_demo(check_steps: int | None = None, screenshot: Path | None = None) -> int:
    """Open the demo and run napari's event loop; with ``check_steps``, the check's status."""
    import napari

    viewer, widget = open_demo()
    outcome = None
    if check_steps is not None:
        outcome = check_installation(viewer, widget, check_steps, screenshot)
    napari.run()
    if outcome is None:
        return 0
    print(f"check {'passed' if outcome.ok else 'FAILED'}: {outcome.message}", file=sys.stderr)
    return 0 if outcome.ok else 1
