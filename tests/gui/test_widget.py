"""The dock widget in a real (headless, Xvfb) napari viewer: run it under ``xvfb-run -a``."""

from __future__ import annotations

import subprocess
import sys
import threading

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QScrollArea, QStyle, QStyleOptionComboBox

from _pixel_files import ome_zarr, tiff_pixel_size_of
from _widgets import wait_until_ready
from napari_domain_adapt.core import ModelSpec, Preprocessing, TrainConfig
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.gui import dialogs as _dialogs
from napari_domain_adapt.gui import jobs
from napari_domain_adapt.gui.form import layer_pixel_size
from napari_domain_adapt.gui.layers import LIVE_NAME, PROBABILITY_NAME, SEGMENTATION_NAME
from napari_domain_adapt.gui.reader import read_ome_zarr_layer
from napari_domain_adapt.gui.sample_data import make_sample_data

pytestmark = pytest.mark.gui

PLUGIN, WIDGET = "napari-domain-adapt", "Domain adaptation"
WAIT_MS = 30_000
#: Settings that train a tiny model in a fraction of a second.
TINY = {"patch_size": 32, "batch_size": 2, "domain.width": 4, "preview_interval": 0.0}


@pytest.fixture(autouse=True)
def no_dialogs(monkeypatch):
    """A test that reaches a real (modal) dialog fails instead of hanging."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test opened a dialog; patch widget.dialogs instead")

    for name in ("save_path", "open_path", "confirm_overwrite", "package_details"):
        monkeypatch.setattr(_dialogs.Dialogs, name, refuse)


def dock(viewer, ready: bool = True):
    """The widget, found and docked through npe2 like a user would; by default once
    PyTorch has loaded, as its run buttons wait for that."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    if ready:
        wait_until_ready(widget)
    return widget


def small_sample(viewer, n_target: int = 3) -> None:
    """The sample pair's layers, small, with the names the sample data uses."""
    for data, meta, kind in make_sample_data(n_source=2, n_target=n_target, size=64):
        getattr(viewer, f"add_{kind}")(data, **meta)


def tiny(widget, steps: int) -> None:
    """A tiny model set through the form's advanced fields, and the rest as overrides."""
    widget.form.field("model.depth").value = 2
    widget.form.field("model.width").value = 4
    widget.form.field("steps").value = steps
    widget.form.field("device").value = "cpu"
    widget.config_overrides = dict(TINY)


def finish(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


@pytest.fixture
def ready(make_napari_viewer, notes):
    """A viewer with the small sample and the docked widget, set to train tiny models."""
    viewer = make_napari_viewer()
    small_sample(viewer)
    widget = dock(viewer)
    tiny(widget, steps=6)
    return viewer, widget


def test_widget_module_does_not_import_torch():
    code = "import sys, napari_domain_adapt.gui.widget; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_dock_collects_garbage_before_the_first_run(make_napari_viewer, monkeypatch, qtbot):
    """Python's next full collection (~0.35 s) falls when the dock opens, not in Adapt."""
    from types import SimpleNamespace

    from napari_domain_adapt.gui import widget as _widget

    viewer = make_napari_viewer()
    collected = []
    monkeypatch.setattr(_widget, "gc", SimpleNamespace(collect=lambda: collected.append(1)))
    widget = dock(viewer)
    qtbot.waitUntil(lambda: widget.ready, timeout=WAIT_MS)
    assert collected


def test_torch_is_prepared_in_a_thread_not_while_the_dock_opens(
    make_napari_viewer, monkeypatch, qtbot
):
    """Importing torch took seconds on the main thread (CUDA builds): the dock opened late
    and napari froze. The warm-up runs in a worker; the Device row follows it."""
    import threading

    from napari_domain_adapt import core

    threads, release = [], threading.Event()
    real = core.warm_up

    def slow_warm_up() -> None:
        threads.append(threading.current_thread())
        release.wait(10)
        real()

    monkeypatch.setattr(core, "warm_up", slow_warm_up)
    widget = dock(make_napari_viewer(), ready=False)
    assert not widget.ready  # the dock is open while the warm-up still runs
    assert "loading" in widget.device_label.text()
    # A click now would wait for the import on the GUI thread: Adapt is off, and says why.
    assert not widget.adapt_button.isEnabled()
    assert "loading" in widget.adapt_button.toolTip()
    # 'Start from: a file…' reads a model with torch: off too.
    assert not widget.start_picker.isEnabled()
    assert "loading" in widget.start_picker.toolTip()
    release.set()
    qtbot.waitUntil(lambda: widget.ready, timeout=WAIT_MS)
    assert threads
    assert threads[0] is not threading.main_thread()
    assert widget.device_label.text().startswith("cpu (")
    assert widget.adapt_button.isEnabled()
    assert widget.start_picker.isEnabled()
    assert "loading" not in widget.adapt_button.toolTip()


def test_sample_data_fills_the_pickers(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "em_pair")
    widget = dock(viewer)
    picked = {role: widget.form.layer(role) for role in widget.form.pickers}
    assert {role: layer and layer.name for role, layer in picked.items()} == {
        "source_image": "source image",
        "source_labels": "source labels",
        "target_image": "target image",
        "target_labels": None,  # the target's ground truth is for checking only
    }
    assert widget.form.mode.value == TrainConfig().mode
    assert "unsupervised" in widget.form.labelled_label.text()
    assert widget.predict_picker.value is picked["target_image"]
    # 'Predict on' follows the target picker until it is chosen by hand.
    widget.form.set_layer("target_image", picked["source_image"])
    assert widget.predict_picker.value is picked["source_image"]
    widget.form.set_layer("target_image", picked["target_image"])
    assert widget.predict_picker.value is picked["target_image"]
    widget.predict_picker.value = picked["source_image"]  # by hand
    widget.form.set_layer("target_image", picked["source_image"])
    widget.form.set_layer("target_image", picked["target_image"])
    assert widget.predict_picker.value is picked["source_image"]
    assert not widget.form.advanced.isExpanded()
    config = widget.form.config()
    assert (config.steps, config.patch_size, config.batch_size) == (600, 64, 8)
    assert (config.model.depth, config.model.width) == (3, 16)
    assert config.preprocessing == Preprocessing()  # the sample pair is EM
    assert not config.amp
    # the default mean teacher has no domain loss
    assert not widget.form.field("domain.beta").enabled
    widget.form.mode.value = "adversarial"
    assert widget.form.field("domain.beta").enabled
    widget.form.mode.value = TrainConfig().mode
    widget.form.field("amp").value = True
    assert widget.form.config().amp
    widget.form.images.value = "fundus"
    fundus = widget.form.config().preprocessing
    assert (fundus.channel, fundus.clahe, fundus.field_of_view) == ("green", True, True)


def test_labelled_target_slices_are_counted_for_the_chosen_mode(ready, qtbot):
    viewer, widget = ready
    shape = viewer.layers["target image"].data.shape
    labels = viewer.add_labels(np.zeros(shape, np.uint8), name="target labels")
    assert widget.form.layer("target_labels") is labels
    assert "no labelled" in widget.form.labelled_label.text()
    labels.paint((1, 10, 10), 1)
    # The default mode learns from them: no switch to the paper's semi-supervised mode.
    text = "1 labelled target slice → used by mean-teacher"
    qtbot.waitUntil(lambda: widget.form.labelled_label.text() == text)
    assert widget.form.config().mode == TrainConfig().mode == "mean-teacher"
    widget.form.mode.value = "adversarial"
    assert widget.form.labelled_label.text() == "1 labelled target slice → not used by adversarial"
    widget.form.mode.value = "semi-supervised"
    assert widget.form.labelled_label.text() == "1 labelled target slice → used by semi-supervised"
    labels.data = np.zeros(shape, np.uint8)
    qtbot.waitUntil(lambda: "no labelled" in widget.form.labelled_label.text())
    assert widget.form.mode.value == "semi-supervised"  # the user's choice stays


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_scribbles_count_pixels_and_train(ready, qtbot, notes):
    viewer, widget = ready
    shape = viewer.layers["target image"].data.shape
    scribbles = np.zeros(shape, np.uint8)
    scribbles[0, 5, 2:12] = 1  # a background stroke
    scribbles[2, 20:25, 30] = 2  # a membrane stroke
    viewer.add_labels(scribbles, name="target labels")
    widget.form.label_kind.value = "sparse"
    text = "15 labelled pixels on 2 slices → used by mean-teacher"
    qtbot.waitUntil(lambda: widget.form.labelled_label.text() == text)
    assert widget.form.config().mode == "mean-teacher"
    widget.adapt_button.click()
    finish(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert SEGMENTATION_NAME in viewer.layers
    # The same layer read as whole labelled slices does not fit: one clear notification.
    widget.form.label_kind.value = "dense"
    widget.adapt_button.click()
    finish(qtbot, widget)
    assert any("values {0, 1, 2}" in note for note in notes["error"]), notes["error"]


def test_user_choice_beats_auto_pick(ready):
    viewer, widget = ready
    widget.form.set_layer("target_image", viewer.layers["source image"])
    viewer.add_image(np.ones((4, 4)), name="another target")
    assert widget.form.layer("target_image").name == "source image"


def test_auto_picks_follow_the_layers_until_the_user_chooses(ready):
    viewer, widget = ready
    target = viewer.layers["target image"]
    viewer.layers.remove(target)  # the pickers re-pick: not the user's choice
    assert widget.form.layer("target_image") is not target
    viewer.add_image(np.asarray(target.data), name="target image")
    assert widget.form.layer("target_image") is viewer.layers["target image"]


def test_run_previews_then_results(ready, qtbot, tmp_path, monkeypatch, notes):
    viewer, widget = ready
    target = viewer.layers["target image"]
    target.scale = (2.0, 0.5, 0.5)
    target.translate = (0.0, 10.0, 20.0)
    target.units = "nm"
    previews = []
    show_preview = widget._show_preview
    monkeypatch.setattr(
        widget, "_show_preview", lambda *a: (previews.append(a[1]), show_preview(*a))
    )
    inserted = []
    viewer.layers.events.inserted.connect(lambda e: inserted.append((e.value.name, e.value)))

    widget.adapt_button.click()
    assert widget.busy
    assert not widget.adapt_button.isEnabled()
    finish(qtbot, widget)

    assert not notes["error"], notes["error"]
    assert previews
    # One live layer for all previews; at the end it becomes the probability layer (adding
    # and removing layers stalls the viewer), and only the segmentation is added.
    assert [name for name, _ in inserted] == [LIVE_NAME, SEGMENTATION_NAME]
    assert LIVE_NAME not in viewer.layers
    probability, segmentation = viewer.layers[PROBABILITY_NAME], viewer.layers[SEGMENTATION_NAME]
    assert probability is inserted[0][1]
    assert probability.opacity == 1.0
    assert probability.data.shape == segmentation.data.shape == target.data.shape
    for layer in (probability, segmentation):
        np.testing.assert_allclose(layer.scale, target.scale)
        np.testing.assert_allclose(layer.translate, target.translate)
        assert layer.units == target.units
    assert widget.model is not None
    assert widget.device_label.text().startswith("cpu")
    assert widget.progress.value() == widget.progress.maximum()

    widget.threshold.value = 0.9
    np.testing.assert_array_equal(segmentation.data, probability.data >= 0.9)

    path = tmp_path / "mask.tif"
    widget.export_format.value = 1
    assert widget.export_segmentation(path) is not None  # written in a thread
    assert not widget.export_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.exporting)
    assert widget.export_button.isEnabled()
    assert widget.status.text() == f"Saved {segmentation.name} to mask.tif"
    np.testing.assert_array_equal(tifffile.imread(path), segmentation.data)
    assert tiff_pixel_size_of(path) == PixelSize((2.0, 0.5, 0.5), "nm")  # scale and unit

    # An existing file is replaced only when the user agrees.
    asked = []
    monkeypatch.setattr(widget.dialogs, "confirm_overwrite", lambda p: asked.append(p) or False)
    widget.export_format.value = 255
    assert widget.export_segmentation(path) is None
    assert asked == [path]
    np.testing.assert_array_equal(tifffile.imread(path), segmentation.data)
    monkeypatch.setattr(widget.dialogs, "confirm_overwrite", lambda p: True)
    monkeypatch.setattr(widget.dialogs, "save_path", lambda *a: path)
    widget.export_button.click()
    qtbot.waitUntil(lambda: not widget.exporting)
    np.testing.assert_array_equal(tifffile.imread(path), segmentation.data * 255)

    # A second run replaces the result layers instead of piling them up.
    names = [layer.name for layer in viewer.layers]
    widget.adapt_button.click()
    finish(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == names
    assert viewer.layers[SEGMENTATION_NAME] is segmentation
    assert viewer.layers[PROBABILITY_NAME] is probability

    # Renamed results are the user's: the next run leaves them alone (this is how the user
    # guide says to compare two runs), and the threshold slider acts on the new result.
    probability.name, segmentation.name = "run 2 probability", "run 2 segmentation"
    kept = segmentation.data.copy()
    widget.adapt_button.click()
    finish(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert viewer.layers["run 2 segmentation"] is segmentation
    assert viewer.layers["run 2 probability"] is probability
    new_probability = viewer.layers[PROBABILITY_NAME]
    new_segmentation = viewer.layers[SEGMENTATION_NAME]
    assert new_segmentation is not segmentation
    widget.threshold.value = 0.2
    np.testing.assert_array_equal(new_segmentation.data, new_probability.data >= 0.2)
    np.testing.assert_array_equal(segmentation.data, kept)


def test_stop_keeps_model_and_follows_the_slider(ready, qtbot, notes):
    viewer, widget = ready
    tiny(widget, steps=100_000)
    worker = widget.start_training()
    qtbot.waitUntil(lambda: widget.progress.value() >= 2, timeout=WAIT_MS)
    viewer.dims.current_step = (2, *viewer.dims.current_step[1:])
    assert widget.job.control.preview_index == 2
    assert widget.device_label.text().startswith("cpu (")  # where it trains, while it trains
    assert "ETA" in widget.status.text()
    widget.stop_button.click()
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        pass
    assert widget.model is not None
    target_slice = viewer.layers["target image"].data[0]
    assert widget.model.predict(target_slice).shape == target_slice.shape
    assert widget.model.metadata["stopped"]
    assert "stopped at" in widget.model_label.text()
    assert SEGMENTATION_NAME in viewer.layers
    assert PROBABILITY_NAME in viewer.layers
    assert widget.adapt_button.isEnabled()
    assert not widget.stop_button.isEnabled()
    assert not notes["error"]


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_save_load_and_predict_another_layer(ready, qtbot, tmp_path, monkeypatch, notes):
    viewer, widget = ready
    widget.start_training()
    finish(qtbot, widget)
    path = widget.save_model(tmp_path / "model.pt")
    assert path.is_file()
    monkeypatch.setattr(widget.dialogs, "confirm_overwrite", lambda p: False)
    assert widget.save_model(path) is None

    widget.model = None
    assert widget.load_model(path) is not None
    source = viewer.layers["source image"]
    widget.predict_picker.value = source
    widget.predict_button.click()
    finish(qtbot, widget)
    result = viewer.layers["source image segmentation"]
    assert result.data.shape == source.data.shape
    np.testing.assert_allclose(result.translate, source.translate)
    assert not notes["error"]

    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert widget.load_model(tmp_path / "broken.pt") is None
    assert "Cannot load" in notes["error"][-1]


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_bioimageio_export_and_load(ready, qtbot, tmp_path, monkeypatch, notes):
    viewer, widget = ready
    widget.adapt_button.click()
    finish(qtbot, widget)
    details = {"name": "sample membranes", "author": "Test Author", "license": "MIT"}
    monkeypatch.setattr(widget.dialogs, "package_details", lambda *a: details)
    package = tmp_path / "model.zip"
    widget.export_model(package)
    finish(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert package.is_file()
    trained = widget.model
    loaded = widget.load_model(package)
    image = viewer.layers["target image"].data[0]
    np.testing.assert_allclose(loaded.predict(image), trained.predict(image), atol=1e-5)


def test_bad_inputs_notify_instead_of_raising(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    widget.adapt_button.click()  # no layers at all
    assert "choose a layer" in notes["error"][-1]

    small_sample(viewer)
    tiny(widget, steps=3)
    widget.config_overrides["patch_size"] = 30  # not a multiple of 2**depth
    widget.adapt_button.click()
    assert "patch_size" in notes["error"][-1]
    assert not widget.busy

    widget.config_overrides["patch_size"] = 32
    viewer.layers["source labels"].data = viewer.layers["source labels"].data * 3  # {0, 3}
    widget.adapt_button.click()
    finish(qtbot, widget)
    assert "expected binary labels" in notes["error"][-1]
    assert widget.model is None
    assert widget.adapt_button.isEnabled()

    viewer.layers.selection.active = viewer.layers["target image"]
    widget.export_segmentation()
    assert "Nothing to export" in notes["warning"][-1]
    widget.start_prediction()
    assert "Train or load a model" in notes["warning"][-1]


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_closing_the_viewer_stops_training(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    small_sample(viewer)
    widget = dock(viewer)
    tiny(widget, steps=100_000)
    worker = widget.start_training()
    control = widget.job.control
    qtbot.waitUntil(lambda: widget.progress.value() >= 1, timeout=WAIT_MS)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        viewer.close()
    assert control.stopped
    # and its thread is given back: nothing runs on after the viewer is gone
    pool = QThreadPool.globalInstance()
    qtbot.waitUntil(lambda: pool.activeThreadCount() == 0, timeout=WAIT_MS)


def test_default_model_is_the_form_model(ready):
    _, widget = ready
    config = widget.form.config(widget.config_overrides)
    assert config.model == ModelSpec(depth=2, width=4)
    assert config.preview_interval == 0.0


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_a_dask_layer_is_predicted_out_of_core(ready, qtbot):
    """A lazy layer's result stays lazy (a zarr store on disk) and equals the in-memory one."""
    viewer, widget = ready
    widget.adapt_button.click()
    finish(qtbot, widget)
    target = viewer.layers["target image"].data
    expected = widget.model.predict(target)
    lazy = viewer.add_image(da.from_array(target, chunks=(1, 48, 48)), name="lazy target")
    widget.predict_picker.value = lazy
    widget.start_prediction()
    finish(qtbot, widget)
    probability, segmentation = widget._result
    assert isinstance(probability.data, da.Array)
    assert isinstance(segmentation.data, da.Array)
    assert probability.data.shape == target.shape
    np.testing.assert_allclose(probability.data.compute(), expected, atol=1e-4)
    widget.threshold.value = 0.7
    assert isinstance(segmentation.data, da.Array)
    np.testing.assert_array_equal(segmentation.data.compute(), expected >= 0.7)
    assert list(widget._scratch.path.glob("prediction-*.zarr"))


def test_a_mask_read_on_demand_is_exported_in_a_thread_slice_by_slice(ready, qtbot, tmp_path):
    """Export mask of a layer read on demand reads it in the export's thread, one slice at a
    time (never whole in the viewer's thread), while the viewer goes on."""
    viewer, widget = ready
    mask = np.zeros((3, 40, 30), np.uint8)
    mask[1, 5:20, 4:9] = 1
    reads = []

    def read(block):
        reads.append((threading.get_ident(), block.shape[0]))
        return block

    lazy = da.from_array(mask, chunks=(1, 40, 30)).map_blocks(read, dtype=mask.dtype)
    viewer.layers.selection.active = viewer.add_labels(lazy, name="lazy mask", scale=(2, 1, 1))
    widget.export_format.value = 255
    with dask.config.set(scheduler="synchronous"):  # blocks are read in the thread asking
        reads.clear()
        widget.export_segmentation(tmp_path / "lazy mask.tif")
        qtbot.waitUntil(lambda: not widget.exporting)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "lazy mask.tif"), mask * 255)
    exported = [r for r in reads if r[0] != threading.main_thread().ident]
    assert all(depth == 1 for _, depth in exported)
    assert len(exported) == len(mask)  # each slice read once, in the export's thread


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
@pytest.mark.parametrize("opened", ["dask", "ome-zarr"])
def test_a_lazy_target_trains_lazily_and_is_predicted_out_of_core(ready, qtbot, opened, tmp_path):
    """A dask layer, or an OME-Zarr image opened by our reader as a multiscale layer: the
    run reads the full resolution on demand and its result has the target's grid."""
    viewer, widget = ready
    layer = viewer.layers["target image"]
    target = np.asarray(layer.data)
    if opened == "dask":
        layer.data = da.from_array(target, chunks=(1, 48, 48))
    else:
        viewer.layers.remove(layer)
        path = ome_zarr(tmp_path / "target.ome.zarr", target)
        ((data, meta, _),) = read_ome_zarr_layer(str(path))
        layer = viewer.add_image(data, **meta)
        assert layer.multiscale
        widget.form.set_layer("target_image", layer)
    widget.adapt_button.click()
    finish(qtbot, widget)
    assert widget.model is not None
    probability, segmentation = widget._result
    assert isinstance(probability.data, da.Array)
    assert isinstance(segmentation.data, da.Array)
    assert probability.data.shape == target.shape
    np.testing.assert_array_equal(probability.scale, layer.scale)
    expected = widget.model.predict(target, pixel_size=layer_pixel_size(layer))
    np.testing.assert_allclose(probability.data.compute(), expected, atol=1e-4)


def test_images_follow_the_source_until_chosen(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 255, (2, 32, 32, 3), np.uint8), name="fundus image", rgb=True)
    viewer.add_labels(np.zeros((2, 32, 32), np.uint8), name="fundus labels")
    assert widget.form.layer("source_image").name == "fundus image"
    assert widget.form.images.value == "fundus"
    grey = viewer.add_image(rng.random((2, 32, 32)), name="grey image")
    widget.form.set_layer("source_image", grey)
    assert widget.form.images.value == "em"
    widget.form.images.value = "fundus"  # the user's choice sticks
    widget.form.set_layer("source_image", viewer.layers["fundus image"])
    widget.form.set_layer("source_image", grey)
    assert widget.form.images.value == "fundus"


def test_mode_picker_names_the_papers_method(ready):
    _, widget = ready
    combo = widget.form.mode.native
    labels = {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}
    assert labels["adversarial"] == "adversarial (paper)"
    assert labels["mean-teacher"] == "mean teacher (default)"
    assert set(labels) == {
        "source-only",
        "adversarial",
        "semi-supervised",
        "mean-teacher",
        "adversarial+mean-teacher",
    }


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_the_form_is_never_cut_off_at_the_right(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    small_sample(viewer)
    widget = dock(viewer)
    scroll = widget.findChild(QScrollArea)
    content = scroll.widget()

    def fits() -> bool:
        return scroll.viewport().width() >= content.minimumSizeHint().width()

    qtbot.waitUntil(fits, timeout=5000)
    widget.form.advanced.expand(animate=False)
    qtbot.waitUntil(fits, timeout=5000)
    # The longest mode name does not set the dock's width; its list shows it whole.
    combo = widget.form.mode.native
    names = [combo.itemText(i) for i in range(combo.count())]
    longest = max(names, key=combo.fontMetrics().horizontalAdvance)
    assert combo.minimumSizeHint().width() < combo.fontMetrics().horizontalAdvance(longest)
    # ...and at the dock's width every mode's name is read whole in the closed box.
    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    field = combo.style().subControlRect(
        QStyle.ComplexControl.CC_ComboBox,
        option,
        QStyle.SubControl.SC_ComboBoxEditField,
        combo,
    )
    for name in names:
        assert combo.fontMetrics().horizontalAdvance(name) <= field.width(), name
    widget.form.mode.value = "adversarial+mean-teacher"
    assert combo.toolTip().startswith("adversarial + mean teacher\n\nmean teacher (self-")


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_export_suggests_the_layer_name_beside_the_target_file(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, notes
):
    viewer = make_napari_viewer()
    folder = tmp_path / "volumes"
    folder.mkdir()
    target = folder / "target.tif"
    tifffile.imwrite(target, np.random.default_rng(0).integers(0, 255, (2, 48, 48), np.uint8))
    small_sample(viewer)
    viewer.layers.remove("target image")
    viewer.open(str(target), name="target image")
    widget = dock(viewer)
    tiny(widget, steps=2)
    widget.start_training()
    finish(qtbot, widget)
    suggested = []

    def save_path(caption, file_filter, suggestion=None):
        suggested.append(suggestion)

    monkeypatch.setattr(widget.dialogs, "save_path", save_path)
    widget.export_button.click()
    assert suggested == [folder / f"{SEGMENTATION_NAME}.tif"]
    assert not notes["error"], notes["error"]


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_a_model_trained_in_the_widget_keeps_the_layers_pixel_sizes(ready, qtbot, notes):
    """The model records the pixel size it was trained at (the source layer's scale and
    units) and the target's, as a CLI-trained model does; napari's default scale of 1 pixel
    is no pixel size."""
    viewer, widget = ready
    tiny(widget, steps=2)
    widget.start_training()
    finish(qtbot, widget)
    assert "pixel_size" not in widget.model.metadata
    source, target = viewer.layers["source image"], viewer.layers["target image"]
    source.scale, target.scale = (50, 4, 4), (40, 10, 10)
    source.units = target.units = ("nm", "nm", "nm")
    widget.start_training()
    finish(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert widget.model.metadata["pixel_size"] == {"sizes": [50.0, 4.0, 4.0], "unit": "nm"}
    assert widget.model.metadata["target_pixel_size"] == {
        "sizes": [40.0, 10.0, 10.0],
        "unit": "nm",
    }


def test_a_batch_halved_for_memory_is_kept_in_the_form(ready, qtbot, monkeypatch, notes):
    """Out of device memory, the run halves its batch; the form then shows the batch it
    trained with, so the next run starts there instead of running out again."""
    import torch

    from napari_domain_adapt.core import training_step

    _, widget = ready
    forward = training_step._forward

    def small_memory(run, network, images):
        if len(images) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(run, network, images)

    monkeypatch.setattr(training_step, "_forward", small_memory)
    del widget.config_overrides["batch_size"]
    widget.form.field("batch_size").value = 8
    widget.start_training()
    finish(qtbot, widget)
    assert not notes["error"], notes["error"]
    device = widget.device_label.text()
    assert [n for n in notes["warning"] if "out of memory" in n] == [
        f"out of memory on {device} at step 1 with batches of {n} patches; going on with "
        f"{n // 2} (a run with smaller batches learns differently)"
        for n in (8, 4)
    ]
    assert widget.form.field("batch_size").value == 2
    assert "Batch size set to 2: 8 did not fit" in notes["info"]
    notes["warning"].clear()
    widget.start_training()  # fits at once now
    finish(qtbot, widget)
    assert notes["warning"] == []


def test_the_settings_of_the_last_run_open_with_the_next_widget(ready, qtbot, notes, tmp_path):
    """A run keeps the form's settings, an export its format; the next session's widget
    opens with them and says so; Reset goes back to the defaults; the installation check
    uses the defaults and keeps nothing."""
    from napari_domain_adapt.gui import remembered
    from napari_domain_adapt.gui.demo import at_defaults
    from napari_domain_adapt.gui.form import InputsForm

    viewer, widget = ready
    defaults = InputsForm(viewer).values()  # the form alone restores nothing
    assert widget.status.text() == "Ready"
    widget.form.mode.value = "adversarial"
    widget.start_training()
    finish(qtbot, widget)
    kept = widget.form.values()
    assert (kept["mode"], kept["steps"]) == ("adversarial", 6)
    assert kept != defaults
    assert widget.export_format.value == 255  # the default
    widget.export_format.value = 1
    assert widget.export_segmentation(tmp_path / "mask.tif") is not None
    # written in threads, one update at a time: neither replaces the other
    qtbot.waitUntil(lambda: remembered.load() == {**kept, "export.format": 1})

    viewer.window.remove_dock_widget("all")
    again = dock(viewer)
    assert again.form.values() == kept
    assert again.export_format.value == 1
    assert "settings of your last run" in again.status.text()
    again.form.reset_button.click()
    assert again.form.values() == defaults

    tiny(again, steps=3)
    at_defaults(again)
    assert again.form.values() == defaults
    again.config_overrides["steps"] = 2
    again.start_training()
    finish(qtbot, again)
    viewer.window.remove_dock_widget("all")
    assert dock(viewer).form.values() == kept  # the check changed nothing


@pytest.mark.parametrize("opened", ["numpy", pytest.param("ome-zarr", marks=pytest.mark.slow)])
def test_continue_trains_on_from_the_current_model_with_the_labels_as_they_are(
    ready, qtbot, monkeypatch, notes, opened, tmp_path
):
    """Adapt, paint a correction, Continue: the run starts from the model the widget holds
    and learns from the target labels painted since; the model keeps both runs. A target
    read on demand (an OME-Zarr volume) stays so, its painted labels held in memory."""
    viewer, widget = ready
    if opened == "ome-zarr":
        layer = viewer.layers["target image"]
        path = ome_zarr(tmp_path / "target.ome.zarr", np.asarray(layer.data))
        ((data, meta, _),) = read_ome_zarr_layer(str(path))
        viewer.layers.remove(layer)
        widget.form.set_layer("target_image", viewer.add_image(data, **meta))
    assert not widget.continue_button.isEnabled()  # no model yet
    widget.adapt_button.click()
    finish(qtbot, widget)
    first = widget.model
    assert widget.continue_button.isEnabled()
    truth = viewer.layers["target ground truth"].data
    corrections = np.zeros(truth.shape, np.uint8)
    corrections[1] = truth[1]
    viewer.add_labels(corrections, name="target labels")
    widget.form.set_layer("target_labels", viewer.layers["target labels"])
    started = _spy_runs(monkeypatch)
    widget.continue_button.click()
    finish(qtbot, widget)
    assert not notes["error"], notes["error"]
    ((args, kwargs),) = started
    assert kwargs["initial"] is first  # from the current weights, not a new U-Net
    target = args[2]
    assert list(target.labelled_slices()) == [1]  # the corrections are the target labels
    assert target.lazy == (opened == "ome-zarr")
    assert widget.model is not first
    runs = widget.model.metadata["runs"]
    assert [run["target_labelled_slices"] for run in runs] == [0, 1]


def _judge_as(prefer: str, monkeypatch) -> None:
    """The guard's verdict, in every run from now, is to prefer ``prefer``."""
    from napari_domain_adapt.core import pipeline

    monkeypatch.setattr(pipeline, "judge", lambda *args: _verdict(prefer))


def _spy_runs(monkeypatch) -> list:
    """The arguments of each run the widget starts (the pipeline still runs)."""
    started = []
    real = jobs.core.train_and_predict
    monkeypatch.setattr(
        jobs.core,
        "train_and_predict",
        lambda *args, **kwargs: started.append((args, kwargs)) or real(*args, **kwargs),
    )
    return started


def _verdict(prefer: str):
    from napari_domain_adapt.core import GuardVerdict

    return GuardVerdict(prefer, {}, f"{prefer} model preferred: as the test says", "atc")


def _tiny_checkpoint(viewer, path, mode: str = "source-only"):
    """A tiny model trained on the sample's source layers, saved to ``path``."""
    from napari_domain_adapt.core import Domain, fit, save_checkpoint

    config = TrainConfig(
        mode=mode,
        steps=2,
        batch_size=2,
        patch_size=32,
        model=ModelSpec(depth=2, width=4),
        device="cpu",
        preview_interval=None,
    )
    source = Domain(viewer.layers["source image"].data, viewer.layers["source labels"].data)
    return save_checkpoint(fit(config, source).model, path)


def test_start_from_offers_the_current_model_once_there_is_one(ready, qtbot, notes):
    _viewer, widget = ready
    picker = widget.start_picker
    assert picker.choice == "new"
    assert not picker.is_offered("current")
    assert picker.is_offered("new")
    assert picker.is_offered("file")
    started = widget.adapt()
    assert not picker.isEnabled()  # not while a run goes on
    finish(qtbot, widget)
    assert started is not None
    assert not notes["error"], notes["error"]
    # A first run from a new U-Net has nothing to compare with, and says so.
    assert widget.guard_label.text().startswith("Guard: nothing to compare")
    assert picker.isEnabled()
    assert picker.is_offered("current")
    picker.choose("current")
    assert picker.choice == "current"


def test_start_from_a_file_trains_from_it_and_a_bad_file_is_said_once(
    ready, qtbot, tmp_path, monkeypatch, notes
):
    viewer, widget = ready
    path = _tiny_checkpoint(viewer, tmp_path / "model.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    file_index = widget.start_picker.findData("file")

    # Chosen in the picker: the dialog asks; a bad file is one message and changes nothing.
    monkeypatch.setattr(widget.dialogs, "open_path", lambda *a: broken)
    widget._start_picked(file_index)
    assert len(notes["error"]) == 1
    assert notes["error"][0].startswith("Cannot start from broken.pt: ")
    assert widget.status.text() == notes["error"][0]
    assert widget.start_picker.choice == "new"
    monkeypatch.setattr(widget.dialogs, "open_path", lambda *a: None)  # cancelled
    widget._start_picked(file_index)
    assert widget.start_picker.choice == "new"
    assert len(notes["error"]) == 1

    monkeypatch.setattr(widget.dialogs, "open_path", lambda *a: path)
    widget._start_picked(file_index)
    assert widget.start_picker.choice == "file"
    assert widget.start_picker.currentText() == "file: model.pt"
    loaded = widget._start_file[0]
    started = _spy_runs(monkeypatch)
    _judge_as("adapted", monkeypatch)  # the model trained is kept
    widget.adapt_button.click()
    finish(qtbot, widget)
    assert len(notes["error"]) == 1, notes["error"]
    ((_args, kwargs),) = started
    assert kwargs["initial"] is loaded  # trained from the file's weights
    assert kwargs["baseline"] is loaded  # and judged against them
    assert widget.model.spec == loaded.spec
    assert widget.model.metadata["runs"][0]["mode"] == "source-only"
    assert len(widget.model.metadata["runs"]) == 2
    text = widget.guard_label.text()
    assert text == "Guard: this run's model preferred over model.pt — as the test says"
    assert text in notes["info"]


def test_a_new_u_net_is_judged_against_the_last_source_only_model(
    ready, qtbot, monkeypatch, notes
):
    viewer, widget = ready
    widget.form.mode.value = "source-only"
    widget.adapt()
    finish(qtbot, widget)
    source_only = widget.model
    assert widget.guard_label.text().startswith("Guard: a source-only run is not judged")
    widget.form.mode.value = "mean-teacher"
    started = _spy_runs(monkeypatch)
    _judge_as("adapted", monkeypatch)
    widget.adapt()
    finish(qtbot, widget)
    assert not notes["error"], notes["error"]
    ((_args, kwargs),) = started
    assert kwargs["initial"] is None
    assert kwargs["baseline"] is source_only
    assert widget.model is not source_only
    assert widget.guard_label.text() == (
        "Guard: this run's model preferred over the source-only model trained before — "
        "as the test says"
    )
    assert viewer.status == widget.guard_label.text()


def test_continue_keeps_the_model_before_where_the_guard_prefers_it(
    ready, qtbot, monkeypatch, notes
):
    """Continue is judged before vs after; with 'Keep the better' the model before stays
    the current model and predicts the target; without it (the default), the new one does."""
    viewer, widget = ready
    widget.adapt()
    finish(qtbot, widget)
    before = widget.model
    _judge_as("source-only", monkeypatch)
    assert not widget.keep_better.isChecked()  # the default: the guard advises
    widget.keep_better.setChecked(True)
    widget.continue_button.click()
    finish(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert widget.model is before
    assert widget.guard_label.text().startswith(
        "Guard: the model before this run preferred and kept — as the test says"
    )
    assert "kept by the guard" in widget.model_label.text()
    target = viewer.layers["target image"].data
    np.testing.assert_allclose(
        viewer.layers[PROBABILITY_NAME].data, before.predict(target), rtol=0, atol=1e-5
    )

    widget.keep_better.setChecked(False)
    widget.continue_button.click()
    finish(qtbot, widget)
    assert widget.model is not before
    assert "not kept" in widget.guard_label.text()
    np.testing.assert_allclose(
        viewer.layers[PROBABILITY_NAME].data, widget.model.predict(target), rtol=0, atol=1e-5
    )


def test_the_other_model_of_a_guarded_run_is_one_click_away(
    ready, qtbot, monkeypatch, notes, tmp_path
):
    """The guard is an estimate: after a guarded run, 'Use … instead' makes the model it
    did not keep current and predicts the target with it; a second click switches back."""
    viewer, widget = ready
    assert widget.switch_button.isHidden()  # nothing judged yet
    widget.adapt()
    finish(qtbot, widget)
    before = widget.model
    _judge_as("source-only", monkeypatch)
    widget.continue_button.click()  # 'Keep the better' off: this run's model is kept
    finish(qtbot, widget)
    after = widget.model
    assert after is not before
    assert widget.switch_button.isEnabled()
    assert not widget.switch_button.isHidden()
    assert widget.switch_button.text() == "Use the model before this run instead"
    target = viewer.layers["target image"].data

    def switch_and_check(expected) -> None:
        widget.switch_button.click()
        finish(qtbot, widget)
        assert not notes["error"], notes["error"]
        assert widget.model is expected
        np.testing.assert_allclose(
            viewer.layers[PROBABILITY_NAME].data, expected.predict(target), rtol=0, atol=1e-5
        )

    switch_and_check(before)
    assert widget.model_label.text() == "switched to the model before this run"
    assert widget.switch_button.text() == "Use this run's model instead"
    switch_and_check(after)
    assert widget.switch_button.text() == "Use the model before this run instead"
    # The form's target changed since the run: the switch still predicts the run's target,
    # into that run's result layers (not new ones beside them).
    viewer.add_image(np.zeros_like(target), name="another target image")
    widget.form.set_layer("target_image", viewer.layers["another target image"])
    layers_before = len(viewer.layers)
    switch_and_check(before)
    assert len(viewer.layers) == layers_before
    viewer.layers.remove("target image")  # nothing to predict: the model still switches
    widget.switch_button.click()
    assert widget.model is after
    assert "no longer open" in widget.status.text()
    assert widget.switch_button.isEnabled()
    # A model loaded (or a new run) has no other: the switch is off again.
    widget.load_model(widget.save_model(tmp_path / "model.pt"))
    assert not widget.switch_button.isEnabled()
    assert widget.switch_button.isHidden()


def test_a_stopped_continue_is_judged_before_vs_after(ready, qtbot, monkeypatch, notes):
    _viewer, widget = ready
    widget.adapt()
    finish(qtbot, widget)
    before = widget.model
    from napari_domain_adapt.core import pipeline

    judged = []
    monkeypatch.setattr(
        pipeline,
        "judge",
        lambda baseline, adapted, *rest: (
            judged.append((baseline, adapted)) or _verdict("source-only")
        ),
    )
    tiny(widget, steps=100_000)
    widget.keep_better.setChecked(True)
    worker = widget.start_training(widget.model)
    qtbot.waitUntil(lambda: widget.progress.value() >= 2, timeout=WAIT_MS)
    widget.stop_button.click()
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        pass
    assert not notes["error"], notes["error"]
    ((baseline, adapted),) = judged
    assert baseline is before
    assert adapted.metadata["stopped"]
    assert widget.model is before
    assert "preferred and kept" in widget.guard_label.text()
