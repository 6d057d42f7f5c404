"""Bad input through the docked widget: one error notification, and nothing else changes.

Every case of ``WIDGET_CASES`` sets up layers, a model file or an output path, then acts as
a user would (Adapt, Predict, Load model, Export mask, Save model). It must show one error
notification that names what was found and what was expected, raise nothing, and leave the
layers, the current model and the files on disk as they were. Read-only folders are
simulated where the tests run as root (see ``_bad_inputs.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch

from _bad_input_fixtures import world_fixture  # noqa: F401 (the world fixture)
from _bad_inputs import (
    World,
    _deeper,
    _nan_weights,
    _set,
    read_only,
    snapshot,
)
from _widgets import wait_until_ready
from napari_domain_adapt.core.checkpoints import load_checkpoint
from napari_domain_adapt.gui import dialogs as _dialogs
from napari_domain_adapt.gui.form import layer_kind
from napari_domain_adapt.gui.jobs import TrainInputs

# Every bad input through the real widget: `pytest -m slow` (CI runs it).
pytestmark = pytest.mark.slow

# --- the widget ----------------------------------------------------------------------------

WAIT_MS = 30_000
TINY_RUN = {"patch_size": 32, "batch_size": 2, "domain.width": 4, "preview_interval": 0.0}


@pytest.fixture(scope="module")
def viewer(world):
    import napari

    viewer = napari.Viewer(show=False)
    yield viewer
    viewer.close()


@pytest.fixture(scope="module")
def widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-domain-adapt", "Domain adaptation")
    wait_until_ready(widget)
    return widget


@pytest.fixture
def no_dialogs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test opened a dialog")

    for name in ("save_path", "open_path", "confirm_overwrite"):
        monkeypatch.setattr(_dialogs.Dialogs, name, refuse)


@dataclass
class Scene:
    """What a widget case works with; :meth:`snap` records the state an action must keep."""

    viewer: object
    widget: object
    world: World
    folder: Path
    monkeypatch: pytest.MonkeyPatch
    qtbot: object
    before: tuple | None = None

    def snap(self) -> None:
        self.before = (layer_state(self.viewer), self.widget.model, snapshot(self.folder))

    def layers(self, **layers: tuple[str, np.ndarray]) -> None:
        """Make the viewer's layers ``role=(kind, data)``, named like the sample data.

        Layers of the right name and kind are kept and given the data: adding or removing
        a layer costs the docked widget a few tenths of a second.
        """
        wanted = {role.replace("_", " "): value for role, value in layers.items()}
        for layer in list(self.viewer.layers):
            kind, data = wanted.get(layer.name, (None, None))
            if layer_kind(layer) != kind:
                self.viewer.layers.remove(layer)
            elif layer.data is not data:
                layer.data = data
        for name, (kind, data) in wanted.items():
            if name not in self.viewer.layers:
                getattr(self.viewer, f"add_{kind}")(data, name=name)

    def standard(self, **changes: tuple[str, np.ndarray] | None) -> None:
        w = self.world
        layers = {
            "source_image": ("image", w.image),
            "source_labels": ("labels", w.binary),
            "target_image": ("image", w.other),
        }
        layers.update(changes)
        self.layers(**{k: v for k, v in layers.items() if v is not None})

    def adapt(self, **overrides) -> None:
        self.widget.config_overrides = {**TINY_RUN, **overrides}
        self.snap()
        self.widget.adapt_button.click()
        self.qtbot.waitUntil(lambda: not self.widget.busy, timeout=WAIT_MS)

    def adapt_with(self, **inputs) -> None:
        """Train from arrays napari layers cannot hold (the form's output, replaced)."""
        self.standard()
        w = self.world
        arrays = {
            "source_image": w.image,
            "source_labels": w.labels,
            "target_image": w.image[::-1].copy(),
            **inputs,
        }
        self.monkeypatch.setattr(
            self.widget.form, "inputs", lambda mode: TrainInputs(**arrays, target_labels=None)
        )
        self.adapt()

    def predict(self, data: np.ndarray, diverged: bool = False) -> None:
        self.standard()
        self.widget.model = load_checkpoint(self.world.model)
        if diverged:  # as a run whose loss blew up leaves it
            with torch.no_grad():
                next(self.widget.model.network.parameters()).fill_(float("nan"))
        layer = self.viewer.add_image(data, name="other image")
        self.widget.predict_picker.reset_choices()
        self.widget.predict_picker.value = layer
        self.snap()
        self.widget.start_prediction()
        self.qtbot.waitUntil(lambda: not self.widget.busy, timeout=WAIT_MS)

    def load(self, path: Path) -> None:
        self.standard()
        self.snap()
        self.widget.load_model(path)

    def export(self, path: Path) -> None:
        self.standard(result=("labels", self.world.binary))
        self.viewer.layers.selection.active = self.viewer.layers["result"]
        self.monkeypatch.setattr(self.widget.dialogs, "confirm_overwrite", lambda p: True)
        self.snap()
        self.widget.export_segmentation(path)
        self.qtbot.waitUntil(lambda: not self.widget.exporting, timeout=WAIT_MS)

    def save(self, path: Path) -> None:
        self.standard()
        self.widget.model = load_checkpoint(self.world.model)
        self.monkeypatch.setattr(self.widget.dialogs, "confirm_overwrite", lambda p: True)
        self.snap()
        self.widget.save_model(path)


def _stack4(w: World) -> np.ndarray:
    return np.stack([w.image, w.image]).astype(np.float32)


def _with(array: np.ndarray, index: tuple, value: float) -> np.ndarray:
    array = array.astype(np.float32)
    array[index] = value
    return array


WIDGET_CASES: dict[str, tuple[Callable[[Scene], None], str, str]] = {
    # training inputs as layers
    "4d-grey-source": (
        lambda s: (s.standard(source_image=("image", _stack4(s.world))), s.adapt()),
        "source has shape (2, 2, 64, 64)",
        "expected (H, W), (N, H, W)",
    ),
    "bool-source": (
        lambda s: (s.standard(source_image=("image", s.world.image > 100)), s.adapt()),
        "dtype bool",
        "expected an integer (uint8, uint16) or float image",
    ),
    "nan-target": (
        lambda s: (
            s.standard(target_image=("image", _with(s.world.image, (1, 2, 3), np.nan))),
            s.adapt(),
        ),
        "target has 1 NaN or infinite pixels",
        "expected finite values",
    ),
    "nan-in-a-lazy-target": (
        lambda s: (
            s.standard(
                target_image=("image", da.from_array(_with(s.world.image, (1, 2, 3), np.nan)))
            ),
            s.adapt(),
        ),
        "slice 1 of the volume has NaN or infinite pixels",
        "expected finite values",
    ),
    "labels-of-another-shape-for-a-lazy-target": (
        lambda s: (
            s.standard(
                target_image=("image", da.from_array(s.world.image)),
                target_labels=("labels", s.world.binary[:, :60]),
            ),
            s.adapt(mode="semi-supervised"),
        ),
        "target labels have shape (2, 60, 64)",
        "expected the image's shape (2, 64, 64)",
    ),
    "inf-source": (
        lambda s: (
            s.standard(source_image=("image", _with(s.world.image, (0, 2, 3), np.inf))),
            s.adapt(),
        ),
        "source has 1 NaN or infinite pixels",
        "expected finite values",
    ),
    "constant-source": (
        lambda s: (
            s.standard(source_image=("image", np.full((2, 64, 64), 3, np.uint8))),
            s.adapt(),
        ),
        "source is constant (every pixel is 3)",
        "expected an image with contrast",
    ),
    "constant-target": (
        lambda s: (
            s.standard(target_image=("image", np.zeros((2, 64, 64), np.float32))),
            s.adapt(),
        ),
        "target is constant",
        "expected an image with contrast",
    ),
    "label-shape-mismatch": (
        lambda s: (s.standard(source_labels=("labels", s.world.labels[:, :60] // 255)), s.adapt()),
        "have shape (2, 60, 64)",
        "expected the image's shape (2, 64, 64)",
    ),
    "label-slice-count-mismatch": (
        lambda s: (s.standard(source_labels=("labels", s.world.labels[:1] // 255)), s.adapt()),
        "have shape (1, 64, 64)",
        "expected the image's shape (2, 64, 64)",
    ),
    "labels-not-binary": (
        lambda s: (s.standard(source_labels=("labels", s.world.labels // 255 * 7)), s.adapt()),
        "contain the values {0, 7}",
        "expected binary labels",
    ),
    "labels-negative": (
        lambda s: (
            s.standard(source_labels=("labels", (s.world.labels // 255).astype(np.int8) - 1)),
            s.adapt(),
        ),
        "contain the values {-1, 0}",
        "expected binary labels",
    ),
    "colour-labels": (
        lambda s: (
            s.standard(
                source_image=("image", s.world.image[0]),
                source_labels=("labels", np.repeat(s.world.labels[0, ..., None] // 255, 3, -1)),
            ),
            s.adapt(),
        ),
        "have shape (64, 64, 3)",
        "they look like a colour image",
    ),
    "two-channel-target": (
        lambda s: (
            s.standard(target_image=("image", np.stack([s.world.image[0], s.world.image[1]], -1))),
            s.adapt(),
        ),
        "target has shape (64, 64, 2)",
        "expected grey or colour with 3 or 4 channels",
    ),
    "4d-grey-target": (
        lambda s: (s.standard(target_image=("image", _stack4(s.world))), s.adapt()),
        "target has shape (2, 2, 64, 64)",
        "expected (H, W), (N, H, W)",
    ),
    "target-smaller-than-patch": (
        lambda s: (s.standard(target_image=("image", s.world.image[:, :20, :20])), s.adapt()),
        "target slices are 20x20 pixels",
        "choose a patch size of at most 20",
    ),
    "source-smaller-than-patch": (
        lambda s: (
            s.standard(
                source_image=("image", s.world.image[:, :16]),
                source_labels=("labels", s.world.labels[:, :16] // 255),
            ),
            s.adapt(),
        ),
        "source slices are 16x64 pixels",
        "choose a patch size of at most 16",
    ),
    "no-layers": (
        lambda s: (s.layers(), s.adapt()),
        "choose a layer for: source image, source labels, target image",
        "Cannot start",
    ),
    "target-is-the-source": (
        lambda s: (s.standard(target_image=None), s.adapt()),
        "the target image is the source image ('source image')",
        "expected another, unlabelled image",
    ),
    "semi-supervised-without-labelled-slices": (
        lambda s: (
            s.standard(target_labels=("labels", np.zeros((2, 64, 64), np.uint8))),
            s.adapt(mode="semi-supervised"),
        ),
        "the target labels are empty",
        "needs at least one labelled target slice",
    ),
    # settings
    "zero-steps": (
        lambda s: (s.standard(), s.adapt(steps=0)),
        "got 0",
        "steps must be at least 1",
    ),
    "patch-not-a-multiple": (
        lambda s: (s.standard(), s.adapt(patch_size=30)),
        "got 30",
        "patch_size must be a multiple of 4",
    ),
    "unknown-device": (
        lambda s: (s.standard(), s.adapt(device="gpu")),
        "unknown device 'gpu'",
        "expected auto, cpu, cuda[:N] or mps",
    ),
    # arrays napari layers cannot hold, through the job the widget runs
    "probabilities-as-labels": (
        lambda s: s.adapt_with(source_labels=np.linspace(0, 1, 2 * 64 * 64).reshape(2, 64, 64)),
        "contain the values {0.0, ",
        "expected binary labels",
    ),
    "complex-source": (
        lambda s: s.adapt_with(source_image=s.world.image * 1j),
        "dtype complex128",
        "expected an integer (uint8, uint16) or float image",
    ),
    "empty-target": (
        lambda s: s.adapt_with(target_image=np.zeros((0, 64, 64), np.float32)),
        "target has shape (0, 64, 64)",
        "expected at least one 2x2 slice",
    ),
    "text-labels": (
        lambda s: s.adapt_with(source_labels=np.full((2, 64, 64), "x")),
        "dtype <U1",
        "expected integer or bool labels",
    ),
    # prediction
    "predict-nan-image": (
        lambda s: s.predict(_with(s.world.image, (0, 1, 1), np.nan)),
        "other image has 1 NaN or infinite pixels",
        "expected finite values",
    ),
    "predict-4d-grey-image": (
        lambda s: s.predict(_stack4(s.world)),
        "other image has shape (2, 2, 64, 64)",
        "expected grey as (H, W), (N, H, W)",
    ),
    "predict-with-a-diverged-model": (
        lambda s: s.predict(s.world.image, diverged=True),
        "the model predicts NaN or infinite probabilities",
        "train again",
    ),
    # checkpoints
    "checkpoint-of-another-architecture": (
        lambda s: s.load(s.world.checkpoint("deeper.pt", _deeper)),
        "Missing key(s)",
        "does not fit the model it describes",
    ),
    "foreign-state-dict": (
        lambda s: s.load(s.world.saved("linear.pt", torch.nn.Linear(2, 2).state_dict())),
        "a dictionary of weight, bias",
        "expected a model saved by napari-domain-adapt",
    ),
    "truncated-checkpoint": (
        lambda s: s.load(s.world.truncated("cut.pt", s.world.model, 0.5)),
        "cannot read checkpoint",
        "truncated, corrupt",
    ),
    "checkpoint-with-pickled-code": (
        lambda s: s.load(s.world.payload("payload.pt")),
        "cannot read checkpoint",
        "holds more than weights and plain values",
    ),
    "checkpoint-with-nan-weights": (
        lambda s: s.load(s.world.checkpoint("nan.pt", _nan_weights)),
        "NaN or infinite weights",
        "expected finite weights",
    ),
    "checkpoint-with-bad-metadata": (
        lambda s: s.load(s.world.checkpoint("meta.pt", lambda c: _set(c, "metadata", "text"))),
        "does not fit the model it describes",
        "expected a checkpoint saved by napari-domain-adapt",
    ),
    "text-as-checkpoint": (
        lambda s: s.load(s.world.raw("notes.pt", b"not a model")),
        "cannot read checkpoint",
        "truncated, corrupt",
    ),
    "missing-checkpoint": (
        lambda s: s.load(s.folder / "nothere.pt"),
        "nothere.pt does not exist",
        "expected a model file",
    ),
    # outputs
    "export-to-missing-folder": (
        lambda s: s.export(s.folder / "no" / "mask.tif"),
        "the folder",
        "does not exist",
    ),
    "export-onto-a-folder": (
        lambda s: s.export(s.folder / "sub"),
        "sub is a folder",
        "expected a file name to write",
    ),
    "export-to-read-only-folder": (
        lambda s: _inside(read_only(s.folder, s.monkeypatch), s.export, s.folder / "mask.tif"),
        "cannot write",
        "Permission denied",
    ),
    "save-model-to-read-only-folder": (
        lambda s: _inside(read_only(s.folder, s.monkeypatch), s.save, s.folder / "m.pt"),
        "cannot write",
        "Permission denied",
    ),
}


def _inside(context: contextlib.AbstractContextManager, action: Callable, *args) -> None:
    with context:
        action(*args)


def layer_state(viewer) -> list[tuple]:
    """Name, kind, shape, content hash, scale and offset of every layer, in order."""
    state = []
    for layer in viewer.layers:
        data = np.asarray(layer.data)
        digest = hashlib.sha256(np.ascontiguousarray(data).view(np.uint8)).hexdigest()
        state.append(
            (
                layer.name,
                type(layer).__name__,
                data.shape,
                digest,
                tuple(layer.scale),
                tuple(layer.translate),
            )
        )
    return state


@pytest.mark.gui
@pytest.mark.parametrize("name", list(WIDGET_CASES))
def test_widget_refuses_bad_input(
    name, viewer, widget, world, tmp_path, monkeypatch, qtbot, notes, no_dialogs
) -> None:
    action, found, expected = WIDGET_CASES[name]
    (tmp_path / "sub").mkdir()
    (tmp_path / "keep.pt").write_bytes(b"a model from last week")
    widget.form.field("model.depth").value = 2
    widget.form.field("model.width").value = 4
    widget.form.field("steps").value = 3
    widget.form.field("device").value = "cpu"
    widget.model = None
    widget._result = None
    scene = Scene(viewer, widget, world, tmp_path, monkeypatch, qtbot)

    action(scene)

    assert scene.before is not None
    assert not widget.busy
    assert len(notes["error"]) == 1, notes
    message = notes["error"][0]
    assert found in message, message
    assert expected in message, message
    layers, model, files = scene.before
    assert layer_state(viewer) == layers
    assert widget.model is model
    assert snapshot(tmp_path) == files
    assert not world.marker.exists()
    assert widget.adapt_button.isEnabled()
