"""The inputs of a run: layer pickers that fill themselves, and the training settings."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox, Widget
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget
from superqt import QCollapsible
from superqt.utils import create_worker

from napari_domain_adapt import core
from napari_domain_adapt.core import SETTINGS, Setting

from .jobs import TrainInputs
from .layers import (
    ROLES,
    LayerInfo,
    count_labels,
    full_resolution,
    labelled_text,
    pick_all,
)

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
#: The preset the widget starts from: sized for a CPU laptop and the sample data.
PRESET = "laptop"

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


class StartFromPicker(QComboBox):
    """Where Adapt starts: a new U-Net, the current model (offered once there is one), or a
    model file (a checkpoint, or a bioimage.io package of ours), which it also names."""

    NEW, CURRENT, FILE = "new", "current", "file"
    _FILE_TEXT = "a file…"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.addItem("a new U-Net", self.NEW)
        self.addItem("the current model", self.CURRENT)
        self.addItem(self._FILE_TEXT, self.FILE)
        self.setToolTip(
            "What Adapt trains from: a new U-Net; the current model (the last run's or one "
            "loaded), as Continue does; or a model file (.pt, or a bioimage.io .zip of ours). "
            "The guard compares the run's model with the one it started from"
        )

    @property
    def choice(self) -> str:
        """``new``, ``current`` or ``file``."""
        return self.currentData()

    def choose(self, choice: str) -> None:
        """Select ``choice`` (``new``, ``current`` or ``file``)."""
        self.setCurrentIndex(self.findData(choice))

    def offer_current(self, offered: bool) -> None:
        """Enable 'the current model' where there is one; without, fall back to a new U-Net."""
        self.model().item(self.findData(self.CURRENT)).setEnabled(offered)
        if not offered and self.choice == self.CURRENT:
            self.choose(self.NEW)

    def is_offered(self, choice: str) -> bool:
        """Whether ``choice`` can be picked now."""
        return self.model().item(self.findData(choice)).isEnabled()

    def name_file(self, name: str | None) -> None:
        """Show the model file chosen (or none) on the file choice."""
        text = self._FILE_TEXT if name is None else f"file: {name}"
        self.setItemText(self.findData(self.FILE), text)


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

    def __init__(
        self,
        viewer: napari.Viewer,
        parent: QWidget | None = None,
        settings: tuple[Setting, ...] = SETTINGS,
    ) -> None:
        super().__init__(parent)

        defaults = core.TrainConfig()
        self.settings = {s.path: s for s in settings if s.widget}
        #: The field of each setting the widget offers, by its configuration path.
        self.fields = {path: make_field(s, s.default(PRESET)) for path, s in self.settings.items()}
        self._viewer = viewer
        self._watched: Layer | None = None
        # Painting emits before the data changes, and many times per stroke: count later, once.
        self._recount = QTimer(self)
        self._recount.setSingleShot(True)
        self._recount.setInterval(50)
        self._recount.timeout.connect(self.update_labelled)
        #: The count of the last lazy label data (counted in a thread), and which request
        #: the label shows: an older count that arrives late is not shown.
        self._counted: tuple[Any, tuple[int, int]] | None = None
        self._count_request = 0
        self.pickers = {
            role: LayerCombo(viewer, kind, nullable=role == "target_labels")
            for role, kind in ROLES.items()
        }
        self._auto = dict.fromkeys(ROLES, True)
        self._auto_images = True
        self.labelled_label = QLabel(labelled_text(0))
        self.labelled_label.setWordWrap(True)
        #: The source's and the target's pixel sizes, and what Adapt does with them.
        self.scaling_label = QLabel()
        self.scaling_label.setWordWrap(True)

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
            choices=[(MODE_LABELS.get(mode, mode), mode) for mode in core.MODES],
            value=defaults.mode,
            tooltip="mean teacher (self-training) scored best on average over our four real "
            "dataset pairs, with and without target labels (it learns from any you give); "
            "adversarial is the paper's method (Javanmardi & Tasdizen, ISBI 2018), less "
            "steady between runs on one of our EM pairs; semi-supervised is the paper's with "
            "target labels; see docs/results.md for how each mode scored",
        )
        self._layout()

        for role, picker in self.pickers.items():
            picker.changed.connect(lambda _value, role=role: self._picked(role))
        self.mode.changed.connect(self.update_labelled)
        self.mode.changed.connect(self._enable_mode_settings)
        self._enable_mode_settings(self.mode.value)
        self.images.changed.connect(self._images_picked)
        self.label_kind.changed.connect(self.update_labelled)
        self.changed.connect(self.update_scaling)
        if "alignment.pixel_size" in self.fields:
            self.field("alignment.pixel_size").changed.connect(self.update_scaling)
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
        form.addRow("Pixel sizes", self.scaling_label)
        form.addRow("Images", self.images.native)
        form.addRow("Mode", self.mode.native)
        advanced = QFormLayout()
        for path, setting in self.settings.items():
            (form if setting.basic else advanced).addRow(setting.label, self.field(path).native)
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.setToolTip(
            "The mode and every setting back to the defaults (the widget keeps the settings "
            "of your last run between napari sessions)"
        )
        self.reset_button.clicked.connect(self.reset)
        advanced.addRow("", self.reset_button)
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
        with contextlib.ExitStack() as quiet:  # picks made here are not the user's
            for picker in self.pickers.values():
                quiet.enter_context(picker.changed.blocked())
            for picker in self.pickers.values():
                picker.reset_choices()
            infos = [LayerInfo(layer.name, layer_kind(layer)) for layer in self._viewer.layers]
            for role, name in pick_all(infos).items():
                if self._auto[role] and name is not None:
                    self.pickers[role].value = self._viewer.layers[name]
        self._watch_target_labels()
        self._suggest_images()
        self.changed.emit()

    def _picked(self, role: str) -> None:
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
            with self.images.changed.blocked():  # not the user's choice
                self.images.value = "fundus" if source.rgb else "em"

    def _images_picked(self, _value: str) -> None:
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
        self._counted = None
        self._recount.start()

    # mode ----------------------------------------------------------------------------------

    def update_labelled(self, _event: Any = None) -> None:
        """Say how many target slices are labelled, and whether the chosen mode uses them.

        Labels read on demand (an HDF5 or zarr volume) are counted in a thread, once per
        layer data, so that picking them never stalls the viewer on the disk."""
        layer = self.layer("target_labels")
        data = None if layer is None else full_resolution(layer)
        self._count_request += 1
        if data is None or not core.is_lazy(data):
            self._show_labelled(count_labels(data), self._count_request)
        elif self._counted is not None and self._counted[0] is data:
            self._show_labelled(self._counted[1], self._count_request)
        else:
            self.labelled_label.setText("counting the labelled target slices…")
            request = self._count_request
            create_worker(
                count_labels,
                data,
                _start_thread=True,
                _connect={
                    "returned": lambda counted: self._counted_lazily(data, counted, request),
                    "errored": lambda error: self._count_failed(error, request),
                },
            )

    def _count_failed(self, error: Exception, request: int) -> None:
        if request == self._count_request:  # a broken chunk, a file gone: say so, go on
            self.labelled_label.setText(f"cannot read the target labels: {error}")

    def _counted_lazily(self, data: Any, counted: tuple[int, int], request: int) -> None:
        self._counted = (data, counted)
        self._show_labelled(counted, request)

    def _show_labelled(self, counted: tuple[int, int], request: int) -> None:
        if request != self._count_request:
            return  # the layer or the mode changed since: a newer count says it
        count, pixels = counted
        sparse = count and self.label_kind.value == "sparse"
        mode = self.mode.value
        then = f"used by {mode}" if mode in core.LABEL_MODES else f"not used by {mode}"
        self.labelled_label.setText(labelled_text(count, pixels if sparse else None, then))

    def update_scaling(self, _value: Any = None) -> None:
        """Say the source's and the target's pixel sizes and whether Adapt resamples."""
        layers = (self.layer("source_image"), self.layer("target_image"))
        sizes = [None if layer is None else layer_pixel_size(layer) for layer in layers]
        matching = self.fields.get("alignment.pixel_size")
        resample = matching is None or bool(matching.value)
        self.scaling_label.setText(core.describe_scaling(*sizes, resample=resample))

    def field(self, path: str) -> Widget:
        """The field of the setting at ``path`` (``"steps"``, ``"model.depth"``)."""
        return self.fields[path]

    def values(self) -> dict[str, Any]:
        """The mode and every setting's value by path: what :meth:`restore` takes."""
        return {path: field.value for path, field in self._kept_fields().items()}

    def _kept_fields(self) -> dict[str, Widget]:
        """The fields a session keeps for the next one: the mode and the settings."""
        return {"mode": self.mode, **self.fields}

    def restore(self, values: dict[str, Any]) -> list[str]:
        """Set the mode and settings from ``values`` (from :meth:`values`, perhaps of another
        version), all or none: unknown paths are skipped, and where a field refuses a value
        or the whole would not make a valid run, nothing changes. Returns the paths changed."""
        fields = self._kept_fields()
        before = self.values()
        try:
            for path, value in values.items():
                if path in fields:
                    fields[path].value = value
            self.config()
        except (ValueError, TypeError):  # out of range, not a choice, or an invalid run
            for path, value in before.items():
                fields[path].value = value
            return []
        return [path for path, field in fields.items() if field.value != before[path]]

    def reset(self) -> None:
        """Every setting and the mode back to the widget's defaults."""
        self.mode.value = core.TrainConfig().mode
        for path, setting in self.settings.items():
            self.field(path).value = setting.default(PRESET)

    def _enable_mode_settings(self, mode: str) -> None:
        """Settings that do not act in ``mode`` (beta outside the adversarial modes) are
        greyed out."""
        for path, setting in self.settings.items():
            self.field(path).enabled = mode in setting.modes

    # outputs -------------------------------------------------------------------------------

    def config(self, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The run's configuration; ``overrides`` replace any field by its path
        (``"steps"``, ``"domain.width"``; raises ValueError)."""

        values = {path: field.value for path, field in self.fields.items()}
        values.update(preprocessing=core.IMAGE_KINDS[self.images.value], mode=self.mode.value)
        return core.with_values(core.preset(PRESET), {**values, **(overrides or {})})

    def inputs(self, mode: str) -> TrainInputs:
        """The picked layers' data, unread: the worker reads it (raises ValueError if a layer
        is missing). A multiscale layer gives its full resolution."""

        missing = [
            _LABELS[role].lower()
            for role in ("source_image", "source_labels")
            if self.layer(role) is None
        ]
        target = self.layer("target_image")
        if target is None and mode != "source-only":
            missing.append("target image")
        if missing:
            raise core.InputError(f"choose a layer for: {', '.join(missing)}")
        source = self.layer("source_image")
        if target is source and mode != "source-only":
            raise core.InputError(
                f"the target image is the source image ({source.name!r}); expected another, "
                "unlabelled image to adapt to: choose it as the target image"
            )
        labels = self.layer("target_labels")
        return TrainInputs(
            source_image=full_resolution(source),
            source_labels=full_resolution(self.layer("source_labels")),
            target_image=None if target is None else full_resolution(target),
            target_labels=None if labels is None else full_resolution(labels),
            target_rgb=bool(target is not None and target.rgb),
            target_label_kind=self.label_kind.value,
            source_pixel_size=layer_pixel_size(source),
            target_pixel_size=None if target is None else layer_pixel_size(target),
        )


def layer_pixel_size(layer: Layer) -> Any:
    """The pixel size a layer's scale and units give, or None where they give none (a
    scale of 1 in pixels: napari's default, what a file without a pixel size opens with)."""
    size = core.layer_pixel_size(layer.scale, getattr(layer, "units", None))
    if size is None or (size.unit is None and set(size.sizes) == {1.0}):
        return None
    return size


def make_field(setting: Setting, value: Any) -> Widget:
    """The magicgui field for ``setting``, holding ``value``, with its help as tooltip."""
    common = {"value": value, "tooltip": setting.help}
    bounds = {
        name: bound
        for name, bound in (("min", setting.minimum), ("max", setting.maximum))
        if bound is not None
    }
    if setting.step is not None:
        bounds["step"] = setting.step
    if setting.choices:
        return ComboBox(choices=setting.choices, **common)
    if setting.kind is bool:
        return CheckBox(text="", **common)
    if setting.kind is int:
        return SpinBox(**{k: int(v) for k, v in bounds.items()}, **common)
    if setting.kind is float:
        return FloatSpinBox(**bounds, **common)
    return LineEdit(**common)
