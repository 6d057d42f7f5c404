"""The inputs of a run: layer pickers that fill themselves, and the training settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget
from superqt import QCollapsible

from .defaults import (
    CHECK_EVERY,
    DEFAULT_BATCH,
    DEFAULT_DEPTH,
    DEFAULT_PATCH,
    DEFAULT_STEPS,
    DEFAULT_WIDTH,
)
from .jobs import TrainInputs, is_lazy
from .layers import ROLES, LayerInfo, labelled_slice_count, labelled_text, pick_all

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

    from napari_domain_adapt.core import TrainConfig

#: How the mode picker names each mode: short enough to be read whole in the dock; the
#: picker's tooltip says more.
MODE_LABELS = {
    "source-only": "source-only (no adaptation)",
    "adversarial": "adversarial (paper)",
    "semi-supervised": "semi-supervised (paper)",
    "mean-teacher": "mean teacher (default)",
    "adversarial+mean-teacher": "adversarial + mean teacher",
}
DEVICES = ("auto", "cpu", "cuda", "mps")

_LABELS = {
    "source_image": "Source image",
    "source_labels": "Source labels",
    "target_image": "Target image",
    "target_labels": "Target labels",
}


class LayerCombo(ComboBox):
    """A picker of layers of one kind (``image`` or ``labels``) of a viewer."""

    null_string = "(none)"

    def __init__(self, viewer: napari.Viewer, kind: str, nullable: bool = False) -> None:
        self._viewer = viewer
        self._kind = kind
        super().__init__(choices=self._layer_choices, nullable=nullable)

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [
            (layer.name, layer) for layer in self._viewer.layers if layer_kind(layer) == self._kind
        ]


def layer_kind(layer: Layer) -> str:
    """``image``, ``labels`` or ``other``; ``isinstance`` sees through napari's layer proxies."""
    from napari.layers import Image, Labels

    if isinstance(layer, Image):
        return "image"
    return "labels" if isinstance(layer, Labels) else "other"


class InputsForm(QWidget):
    """Pickers for the four input layers and the settings of a run.

    Pickers fill themselves from layer names (:func:`~._layers.pick_all`) until the user
    chooses by hand.
    """

    changed = Signal()

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from napari_domain_adapt.core import MODES, TrainConfig

        defaults = TrainConfig()
        self._viewer = viewer
        self._setting = False
        self._watched: Layer | None = None
        # Painting emits before the data changes, and many times per stroke: count later, once.
        self._recount = QTimer(self)
        self._recount.setSingleShot(True)
        self._recount.setInterval(50)
        self._recount.timeout.connect(self.update_labelled)
        self.pickers = {
            role: LayerCombo(viewer, kind, nullable=role == "target_labels")
            for role, kind in ROLES.items()
        }
        self._auto = dict.fromkeys(ROLES, True)
        self._auto_images, self._setting_images = True, False
        self.labelled_label = QLabel(labelled_text(0))
        self.labelled_label.setWordWrap(True)

        self.label_kind = ComboBox(
            choices=[("whole slices (0/1)", "dense"), ("scribbles (1 bg, 2 fg)", "sparse")],
            value="dense",
            tooltip="Whole slices: every pixel of a labelled slice counts (0 background, "
            "1 structure). Scribbles: only painted pixels count (1 background, 2 structure).",
        )
        self.images = ComboBox(
            choices=[("electron microscopy, grey", "em"), ("fundus photographs", "fundus")],
            value="em",
            tooltip="How pixels become network input (follows the source image, colour or "
            "grey, until you choose). Fundus: the green channel, local contrast "
            "equalisation (CLAHE) and the field of view found where no mask is given. "
            "Electron microscopy: the grey value, robustly scaled per image.",
        )
        self.mode = ComboBox(
            choices=[(MODE_LABELS.get(mode, mode), mode) for mode in MODES],
            value=defaults.mode,
            tooltip="mean teacher (self-training) scored best on average over our four real "
            "dataset pairs, with and without target labels (it learns from any you give); "
            "adversarial is the paper's method (Javanmardi & Tasdizen, ISBI 2018), less "
            "steady between runs on one of our EM pairs; semi-supervised is the paper's with "
            "target labels; see docs/results.md for how each mode scored",
        )
        self.steps = SpinBox(value=DEFAULT_STEPS, min=1, max=1_000_000, step=50)
        self.beta = FloatSpinBox(value=defaults.beta, min=0.0, max=100.0, step=0.01)
        self.patch_size = SpinBox(value=DEFAULT_PATCH, min=8, max=2048, step=16)
        self.batch_size = SpinBox(value=DEFAULT_BATCH, min=1, max=1024)
        self.learning_rate = FloatSpinBox(
            value=defaults.learning_rate, min=1e-6, max=0.5, step=1e-4
        )
        self.depth = SpinBox(value=DEFAULT_DEPTH, min=1, max=6)
        self.width = SpinBox(value=DEFAULT_WIDTH, min=1, max=256)
        self.device = ComboBox(choices=DEVICES, value="auto")
        self.amp = CheckBox(
            value=defaults.amp,
            text="",
            tooltip="Forward passes in bfloat16: 1.6-2.4x faster training on CPUs with "
            "AVX512-BF16 or AMX and on recent GPUs, slower on older CPUs; about 1.5 F1 "
            "points lower on the sample data (docs/performance.md)",
        )
        self.seed = SpinBox(value=defaults.seed, min=0, max=2**31 - 1)
        self.augment = CheckBox(value=defaults.augment, text="")
        self._layout()

        for role, picker in self.pickers.items():
            picker.changed.connect(lambda _value, role=role: self._picked(role))
        self.mode.changed.connect(self.update_labelled)
        self.mode.changed.connect(self._enable_mode_settings)
        self._enable_mode_settings(self.mode.value)
        self.images.changed.connect(self._images_picked)
        self.label_kind.changed.connect(self.update_labelled)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _layout(self) -> None:
        form = QFormLayout()
        for role, picker in self.pickers.items():
            form.addRow(_LABELS[role], picker.native)
        form.addRow("Labels are", self.label_kind.native)
        form.addRow("", self.labelled_label)
        form.addRow("Images", self.images.native)
        form.addRow("Mode", self.mode.native)
        form.addRow("Iterations", self.steps.native)
        advanced = QFormLayout()
        for text, widget in (
            ("Beta (domain loss)", self.beta),
            ("Patch size", self.patch_size),
            ("Batch size", self.batch_size),
            ("Learning rate", self.learning_rate),
            ("Model depth", self.depth),
            ("Model width", self.width),
            ("Augmentation", self.augment),
            ("Device", self.device),
            ("bfloat16 (faster)", self.amp),
            ("Seed", self.seed),
        ):
            advanced.addRow(text, widget.native)
        inner = QWidget()
        inner.setLayout(advanced)
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced)

    # pickers -------------------------------------------------------------------------------

    def layer(self, role: str) -> Layer | None:
        """The layer picked for ``role`` (None if none)."""
        return self.pickers[role].value

    def set_layer(self, role: str, layer: Layer | None) -> None:
        """Pick ``layer`` for ``role`` by hand (auto-picking stops for that role)."""
        self.pickers[role].value = layer

    def refresh(self, event: Any = None) -> None:
        """Re-read the viewer's layers, auto-pick where the user has not chosen."""
        if event is not None and getattr(event, "type", None) == "inserted":
            event.value.events.name.connect(self.refresh)
        self._setting = True
        try:
            for picker in self.pickers.values():
                picker.reset_choices()
            infos = [LayerInfo(layer.name, layer_kind(layer)) for layer in self._viewer.layers]
            for role, name in pick_all(infos).items():
                if self._auto[role] and name is not None:
                    self.pickers[role].value = self._viewer.layers[name]
        finally:
            self._setting = False
        self._watch_target_labels()
        self._suggest_images()
        self.changed.emit()

    def _picked(self, role: str) -> None:
        if not self._setting:
            self._auto[role] = False
        if role == "target_labels":
            self._watch_target_labels()
        if role == "source_image":
            self._suggest_images()
        self.changed.emit()

    def _suggest_images(self) -> None:
        """Until the user chooses, colour source images mean fundus photographs, grey EM."""
        source = self.layer("source_image")
        if self._auto_images and source is not None:
            self._setting_images = True
            try:
                self.images.value = "fundus" if source.rgb else "em"
            finally:
                self._setting_images = False

    def _images_picked(self, _value: str) -> None:
        if not self._setting_images:
            self._auto_images = False

    def _watch_target_labels(self) -> None:
        layer = self.layer("target_labels")
        if layer is not self._watched:
            if self._watched is not None:
                for event in (self._watched.events.data, self._watched.events.paint):
                    event.disconnect(self._labels_edited)
            if layer is not None:
                for event in (layer.events.data, layer.events.paint):
                    event.connect(self._labels_edited)
            self._watched = layer
        self.update_labelled()

    def _labels_edited(self, _event: Any = None) -> None:
        self._recount.start()

    # mode ----------------------------------------------------------------------------------

    def labelled_count(self) -> int:
        """Target slices that carry any annotation."""
        layer = self.layer("target_labels")
        return 0 if layer is None else labelled_slice_count(np.asarray(layer.data))

    def update_labelled(self, _event: Any = None) -> None:
        """Say how many target slices are labelled, and whether the chosen mode uses them."""
        from napari_domain_adapt.core import LABEL_MODES

        count = self.labelled_count()
        pixels = None
        layer = self.layer("target_labels")
        if count and self.label_kind.value == "sparse" and layer is not None:
            pixels = int(np.count_nonzero(np.asarray(layer.data)))
        mode = self.mode.value
        then = f"used by {mode}" if mode in LABEL_MODES else f"not used by {mode}"
        self.labelled_label.setText(labelled_text(count, pixels, then))

    def _enable_mode_settings(self, mode: str) -> None:
        """Beta weighs the domain loss: only the adversarial modes have one."""
        from napari_domain_adapt.core import ADVERSARIAL_MODES

        self.beta.enabled = mode in ADVERSARIAL_MODES

    # outputs -------------------------------------------------------------------------------

    def config(self, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The run's configuration; ``overrides`` replace any field (raises ValueError)."""
        from napari_domain_adapt.core import IMAGE_KINDS, ModelSpec, TrainConfig

        values: dict[str, Any] = {
            "preprocessing": IMAGE_KINDS[self.images.value],
            "mode": self.mode.value,
            "steps": self.steps.value,
            "beta": self.beta.value,
            "patch_size": self.patch_size.value,
            "batch_size": self.batch_size.value,
            "learning_rate": self.learning_rate.value,
            "augment": self.augment.value,
            "device": self.device.value,
            "amp": self.amp.value,
            "seed": self.seed.value,
            "model": ModelSpec(depth=self.depth.value, width=self.width.value),
            "select_every": CHECK_EVERY,
        }
        values.update(overrides or {})
        return TrainConfig(**values)

    def inputs(self, mode: str) -> TrainInputs:
        """The picked layers' data as numpy arrays (raises ValueError if one is missing)."""
        from napari_domain_adapt.core import InputError

        missing = [
            _LABELS[role].lower()
            for role in ("source_image", "source_labels")
            if self.layer(role) is None
        ]
        target = self.layer("target_image")
        if target is None and mode != "source-only":
            missing.append("target image")
        if missing:
            raise InputError(f"choose a layer for: {', '.join(missing)}")
        source = self.layer("source_image")
        if target is source and mode != "source-only":
            raise InputError(
                f"the target image is the source image ({source.name!r}); expected another, "
                "unlabelled image to adapt to: choose it as the target image"
            )
        labels = self.layer("target_labels")
        return TrainInputs(
            source_image=np.asarray(self.layer("source_image").data),
            source_labels=np.asarray(self.layer("source_labels").data),
            target_image=None if target is None else _target_data(target),
            target_labels=None if labels is None else np.asarray(labels.data),
            target_rgb=bool(target is not None and target.rgb),
            target_label_kind=self.label_kind.value,
        )


def _target_data(layer: Layer) -> Any:
    """A grey layer read on demand stays lazy (training reads its patches); others: numpy."""
    if is_lazy(layer.data) and not layer.rgb and not layer.multiscale:
        return layer.data
    return np.asarray(layer.data)
