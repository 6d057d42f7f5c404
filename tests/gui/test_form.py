"""The widget's settings come from the one description that the CLI's options come from."""

from __future__ import annotations

import argparse

import dask.array as da
import numpy as np
import pytest

from napari_domain_adapt.cli.parser import add_settings, given_settings
from napari_domain_adapt.core import SETTINGS, TEACHER_MODES, Setting, TrainConfig
from napari_domain_adapt.gui.form import InputsForm

pytestmark = pytest.mark.gui

#: A setting the description does not have yet (TrainConfig has the field).
NEW = Setting(
    "teacher.decay",
    "mean teacher",
    "Teacher decay",
    "mean teacher: weight of the old average in the teacher's moving average",
    minimum=0.0,
    maximum=0.999,
    step=0.001,
    flag="--teacher-decay",
    modes=TEACHER_MODES,
)


def test_a_setting_added_once_appears_in_the_cli_and_the_widget(make_napari_viewer):
    settings = (*SETTINGS, NEW)

    parser = argparse.ArgumentParser()
    add_settings(parser, ("mean-teacher",), settings)
    assert "--teacher-decay" in parser.format_help()
    args = parser.parse_args(["--teacher-decay", "0.95", "--steps", "3"])
    assert given_settings(args, settings) == {"teacher.decay": 0.95, "steps": 3}

    form = InputsForm(make_napari_viewer(), settings=settings)
    field = form.field("teacher.decay")
    assert field.value == TrainConfig().teacher.decay
    assert field.tooltip == NEW.help
    advanced = form.advanced.content().findChildren(type(field.native))
    assert field.native in advanced  # under Advanced, not the main form
    field.value = 0.95
    assert form.config().teacher.decay == 0.95
    form.mode.value = "adversarial"
    assert not field.enabled  # no teacher in this mode


def test_the_form_starts_from_the_laptop_preset(make_napari_viewer):
    form = InputsForm(make_napari_viewer())
    config = form.config()
    assert (config.steps, config.patch_size, config.model.depth, config.selection.every) == (
        600,
        64,
        3,
        50,
    )
    assert form.config({"steps": 5}).steps == 5  # overrides win


def test_the_form_shows_both_pixel_sizes_and_the_factor(make_napari_viewer):
    viewer = make_napari_viewer()
    image = np.zeros((2, 32, 32), np.uint8)
    image[:, 8:24] = 200
    viewer.add_image(image, name="source image", scale=(1, 4, 4), units="nm")
    viewer.add_labels((image > 0).astype(np.uint8), name="source labels")
    target = viewer.add_image(image, name="target image")
    form = InputsForm(viewer)
    assert form.scaling_label.text() == (
        "only the source's pixel size known: the target is used at its own scale"
    )
    target.scale, target.units = (1, 0.0092, 0.0092), ("um", "um", "um")
    form.refresh()
    assert form.scaling_label.text() == (  # both in the source's unit, to compare at a glance
        "source 1 x 4 x 4 nm, target 1000 x 9.2 x 9.2 nm: the target is resampled by 2.3 to "
        "the source's pixel size"
    )
    form.field("alignment.pixel_size").value = False
    assert form.scaling_label.text().endswith("matching pixel sizes is off, no resampling")


def test_values_restore_into_another_form_and_reset_goes_back(make_napari_viewer):
    viewer = make_napari_viewer()
    form = InputsForm(viewer)
    form.mode.value = "adversarial"
    form.field("steps").value = 1234
    form.field("model.depth").value = 2
    values = form.values()
    assert (values["mode"], values["steps"]) == ("adversarial", 1234)

    other = InputsForm(viewer)
    assert sorted(other.restore({**values, "no.such.setting": 1})) == [
        "mode",
        "model.depth",
        "steps",
    ]
    assert other.values() == values
    assert other.config().domain.beta == form.config().domain.beta
    other.reset()
    assert other.values() == InputsForm(viewer).values()
    assert other.config() == InputsForm(viewer).config()


@pytest.mark.parametrize(
    "kept",
    [
        {"steps": -5},  # the field refuses it
        {"mode": "no-such-mode"},  # not a choice
        {"steps": "many"},  # not a number
        {"patch_size": 40, "model.depth": 4},  # each valid, the run not: 40 is not 16 k
    ],
)
def test_a_bad_kept_value_changes_nothing(make_napari_viewer, kept):
    form = InputsForm(make_napari_viewer())
    before = form.values()
    assert form.restore({"model.width": 32, **kept}) == []
    assert form.values() == before


def test_labels_read_on_demand_are_counted_in_a_thread_once(make_napari_viewer, qtbot):
    """Target labels from an HDF5 or zarr volume are counted off the GUI thread, once: a
    change of mode shows the count again without reading the volume again."""
    viewer = make_napari_viewer()
    image = np.zeros((3, 32, 32), np.uint8)
    image[:, 8:24] = 200
    viewer.add_image(image, name="source image")
    viewer.add_labels((image > 0).astype(np.uint8), name="source labels")
    viewer.add_image(image, name="target image")
    labels = np.zeros((3, 32, 32), np.uint8)
    labels[1, 4:6, 4:6] = 1
    reads = []
    lazy = da.from_array(labels, chunks=(1, 32, 32)).map_blocks(
        lambda block: reads.append(1) or block, dtype=labels.dtype
    )
    form = InputsForm(viewer)
    form.set_layer("target_labels", viewer.add_labels(lazy, name="target labels"))
    assert form.labelled_label.text() == "counting the labelled target slices…"
    qtbot.waitUntil(lambda: form.labelled_label.text().startswith("1 labelled target slice"))
    counted = len(reads)
    form.mode.value = "adversarial"
    assert form.labelled_label.text() == "1 labelled target slice → not used by adversarial"
    assert len(reads) == counted  # not read again

    def unreadable(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:  # not the slice napari shows first
            raise OSError("chunk 2 is corrupt")
        return block

    broken = da.from_array(labels, chunks=(1, 32, 32)).map_blocks(unreadable, dtype=labels.dtype)
    form.set_layer("target_labels", viewer.add_labels(broken, name="broken labels"))
    qtbot.waitUntil(lambda: "cannot read the target labels" in form.labelled_label.text())
    assert "chunk 2 is corrupt" in form.labelled_label.text()


def test_a_runs_inputs_leave_layers_read_on_demand_unread(make_napari_viewer):
    """Adapt reads nothing in the viewer's thread: layers of an HDF5 or OME-Zarr file reach
    the worker unread (it reads them), a multiscale layer as its full resolution, never
    the pyramid's smallest level (numpy's view of napari's multiscale data)."""
    viewer = make_napari_viewer()
    image = np.zeros((2, 32, 32), np.uint8)
    image[:, 8:24] = 200
    reads = []

    def counted(block):
        reads.append(block.shape)
        return block

    def lazy(array):
        return da.from_array(array, chunks=(1, 16, 16)).map_blocks(counted, dtype=array.dtype)

    source = lazy(image)
    viewer.add_image(source, name="source image")
    labels = lazy((image > 0).astype(np.uint8))
    viewer.add_labels(labels, name="source labels")
    full = lazy(image)
    viewer.add_image([full, full[:, ::2, ::2]], multiscale=True, name="target image")
    target_labels = lazy(np.zeros_like(image))
    viewer.add_labels(target_labels, name="target labels")
    form = InputsForm(viewer)
    form.set_layer("target_labels", viewer.layers["target labels"])
    reads.clear()  # napari read the slices it shows

    inputs = form.inputs("mean-teacher")

    assert inputs.source_image is source
    assert inputs.source_labels is labels
    assert inputs.target_image is full
    assert inputs.target_labels is target_labels
    assert reads == []
