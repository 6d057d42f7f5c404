"""The dock's three group boxes, laid out: Run, Result and Model.

Each box only makes and arranges its controls; :class:`~.widget.AdaptWidget` connects them,
holds the state and keeps the names its callers use (``widget.adapt_button``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, FloatSlider
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .form import LayerCombo, StartFromPicker
from .plot import LossPlot

if TYPE_CHECKING:
    import napari


#: The switch button's text while there is no other model to switch to.
SWITCH_TEXT = "Use the other model"


class RunBox(QGroupBox):
    """'Run': the inputs form, where Adapt starts from, Adapt / Continue / Stop, the guard's
    line and the switch to the other model it judged, the progress bar, the status line and
    the loss plot."""

    def __init__(self, form: QWidget) -> None:
        super().__init__("Run")
        self.adapt_button = QPushButton("Adapt")
        self.adapt_button.setToolTip("Train on the source, adapt to the target, then predict it")
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip(
            "Train on from the current model (the last run's or one loaded), with the labels "
            "as they are now: paint corrections on the target, then Continue"
        )
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(
            "End now and keep the model trained so far (or, by the guard, the one it started from)"
        )
        self.start_picker = StartFromPicker()
        self.keep_better = QCheckBox("Keep the better (by the guard)")
        self.keep_better.setToolTip(
            "At the end of a run the guard compares, without target labels, the model trained "
            "with the one it started from (or, for a new U-Net, the last source-only model). "
            "Checked: where the guard prefers that baseline, it stays the current model and "
            "predicts the target. Off by default: the guard is an estimate, often wrong in our "
            "benchmark (see the user guide); either way 'Use … instead' switches afterwards"
        )
        self.guard_label = QLabel("Guard: –")
        self.guard_label.setWordWrap(True)
        self.guard_label.setToolTip(
            "The guard's label-free verdict on the last run: whether the model trained is "
            "estimated to beat the one it is compared with (see the user guide, 'The guard')"
        )
        self.switch_button = QPushButton(SWITCH_TEXT)
        self.switch_button.setVisible(False)  # shown once a guarded run has two models
        self.switch_button.setToolTip(
            "After a run the guard judged: make the other of its two models (the one the run "
            "was compared with, or the one it trained) the current model, and predict the "
            "target with it"
        )
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.status = QLabel("Ready")
        self.status.setWordWrap(True)
        self.plot = LossPlot()

        layout = QVBoxLayout(self)
        layout.addWidget(form)
        start = QFormLayout()
        start.addRow("Start from", self.start_picker)
        start.addRow("", self.keep_better)
        layout.addLayout(start)
        buttons = QHBoxLayout()
        buttons.addWidget(self.adapt_button)
        buttons.addWidget(self.continue_button)
        buttons.addWidget(self.stop_button)
        layout.addLayout(buttons)
        layout.addWidget(self.guard_label)
        layout.addWidget(self.switch_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)


class ResultBox(QGroupBox):
    """'Result': the device a run trains on, the threshold, and Export mask with its
    values (0/1 or 0/255)."""

    def __init__(self) -> None:
        super().__init__("Result")
        self.device_label = QLabel("–")
        self.threshold = FloatSlider(value=0.5, min=0.01, max=0.99, step=0.01)
        self.export_format = ComboBox(choices=[("0/1", 1), ("0/255", 255)], value=255)
        self.export_button = QPushButton("Export mask…")

        form = QFormLayout(self)
        form.addRow("Device", self.device_label)
        form.addRow("Threshold", self.threshold.native)
        export_row = QHBoxLayout()
        export_row.addWidget(self.export_format.native)
        export_row.addWidget(self.export_button)
        form.addRow("Export as", export_row)


class ModelBox(QGroupBox):
    """'Model': what the current model is, Save / Load / Export bioimage.io, and Predict on
    an image layer of ``viewer``."""

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__("Model")
        self.model_label = QLabel("no model yet")
        self.model_label.setWordWrap(True)
        self.save_button = QPushButton("Save model…")
        self.load_button = QPushButton("Load model…")
        self.share_button = QPushButton("Export bioimage.io…")
        self.share_button.setToolTip(
            "Save the model as a bioimage.io package for deepImageJ, ilastik, BiaPy and the "
            "Model Zoo; its test data is cut from the image picked under 'Predict on'"
        )
        self.predict_picker = LayerCombo(viewer, "image")
        self.predict_button = QPushButton("Predict")

        form = QFormLayout(self)
        form.addRow(self.model_label)
        files = QHBoxLayout()
        files.addWidget(self.save_button)
        files.addWidget(self.load_button)
        form.addRow(files)
        form.addRow(self.share_button)
        predict_row = QHBoxLayout()
        predict_row.addWidget(self.predict_picker.native)
        predict_row.addWidget(self.predict_button)
        form.addRow("Predict on", predict_row)
