"""The dock's Run, Result and Model boxes: their controls, laid out in order."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QWidget

from napari_domain_adapt.gui.form import StartFromPicker
from napari_domain_adapt.gui.panels import ModelBox, ResultBox, RunBox

pytestmark = pytest.mark.gui


def laid_out(box: QWidget) -> list[str]:
    """The box's widgets in layout order (nested rows too), by attribute name; a row's
    label by its text."""
    names = {id(value): name for name, value in vars(box).items()}
    names |= {id(getattr(value, "native", None)): name for name, value in vars(box).items()}

    def walk(layout) -> list[str]:
        found = []
        for index in range(layout.count()):
            item = layout.itemAt(index)
            if item.widget() is not None:
                widget = item.widget()
                found.append(names.get(id(widget)) or widget.text())
            elif item.layout() is not None:
                found.extend(walk(item.layout()))
        return found

    return walk(box.layout())


def test_the_run_box_holds_the_form_first_then_the_run_controls(qtbot) -> None:
    form = QWidget()
    box = RunBox(form)
    qtbot.addWidget(box)
    box.form = form  # named for laid_out()
    assert box.title() == "Run"
    assert laid_out(box) == [
        "form",
        "Start from",
        "start_picker",
        "keep_better",
        "adapt_button",
        "continue_button",
        "stop_button",
        "guard_label",
        "switch_button",
        "progress",
        "status",
        "plot",
    ]
    assert isinstance(box.start_picker, StartFromPicker)
    assert not box.keep_better.isChecked()  # the guard advises; the user keeps
    assert box.switch_button.isHidden()  # until a guarded run has two models
    assert (box.guard_label.text(), box.status.text()) == ("Guard: –", "Ready")
    assert box.progress.format() == "%v / %m"


def test_the_result_box_starts_at_threshold_one_half_and_0_255(qtbot) -> None:
    box = ResultBox()
    qtbot.addWidget(box)
    assert box.title() == "Result"
    assert laid_out(box) == [
        "Device",
        "device_label",
        "Threshold",
        "threshold",
        "Export as",
        "export_format",
        "export_button",
    ]
    assert box.threshold.value == 0.5
    assert box.export_format.value == 255


def test_the_model_box_predicts_on_the_viewers_image_layers(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 4), np.uint8), name="target image")
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="target labels")
    box = ModelBox(viewer)
    qtbot.addWidget(box)
    assert box.title() == "Model"
    assert laid_out(box) == [
        "model_label",
        "save_button",
        "load_button",
        "share_button",
        "Predict on",
        "predict_picker",
        "predict_button",
    ]
    assert box.model_label.text() == "no model yet"
    assert [layer.name for layer in box.predict_picker.choices] == ["target image"]
