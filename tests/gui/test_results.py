"""A run's layers in a real (headless, Xvfb) napari viewer: the slice the preview follows,
the result pair, its threshold, and the layer Export writes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.gui.layers import LIVE_NAME, PROBABILITY_NAME, SEGMENTATION_NAME
from napari_domain_adapt.gui.placement import show_preview
from napari_domain_adapt.gui.results import (
    export_layer,
    preview_shape,
    rethreshold,
    show_result,
    viewed_slice,
)

pytestmark = pytest.mark.gui

RAMP = np.linspace(0, 1, 3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)


@pytest.fixture
def target(make_napari_viewer):
    """A viewer with a placed 3-slice target stack."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        np.zeros((3, 4, 5), np.uint8), name="target image", scale=(2.0, 1.0, 1.0)
    )
    return viewer, layer


def test_the_viewed_slice_follows_the_viewer(target) -> None:
    viewer, layer = target
    assert viewed_slice(viewer, None) == 0
    viewer.dims.set_point(0, 4.0)  # the third slice, at 2 units a slice
    assert viewed_slice(viewer, layer) == 2
    viewer.dims.set_point(0, 0.0)
    assert viewed_slice(viewer, layer) == 0


def test_the_preview_shape_is_a_slice_or_none(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    grey = viewer.add_image(np.zeros((3, 4, 5), np.uint8))
    rgb = viewer.add_image(np.zeros((4, 5, 3), np.uint8), rgb=True)
    four = viewer.add_image(np.zeros((2, 3, 4, 5), np.uint8))
    assert preview_shape(grey) == (4, 5)
    assert preview_shape(rgb) == (4, 5)
    assert preview_shape(four) is None  # the run refuses it with a message
    assert preview_shape(None) is None


def test_the_targets_result_takes_over_the_live_layer(target) -> None:
    viewer, layer = target
    live = show_preview(viewer, layer, np.zeros((4, 5), np.float32), 0)
    probability, segmentation = show_result(viewer, RAMP, layer, True, 0.5)
    assert probability is live  # renamed, not added anew
    assert (probability.name, segmentation.name) == (PROBABILITY_NAME, SEGMENTATION_NAME)
    assert LIVE_NAME not in viewer.layers
    np.testing.assert_array_equal(probability.data, RAMP)
    np.testing.assert_array_equal(segmentation.data, RAMP >= 0.5)
    assert tuple(segmentation.scale) == (2.0, 1.0, 1.0)


def test_a_later_target_result_replaces_its_layers_and_drops_the_live_one(target) -> None:
    viewer, layer = target
    first = show_result(viewer, RAMP, layer, True, 0.5)
    show_preview(viewer, layer, np.zeros((4, 5), np.float32), 1)  # the next run's preview
    second = show_result(viewer, 1 - RAMP, layer, True, 0.5)
    assert second == first  # updated in place, not piled up
    assert LIVE_NAME not in viewer.layers
    np.testing.assert_array_equal(second[0].data, 1 - RAMP)


def test_another_layers_result_leaves_the_live_layer(target) -> None:
    viewer, layer = target
    other = viewer.add_image(np.zeros((3, 4, 5), np.uint8), name="other")
    show_preview(viewer, layer, np.zeros((4, 5), np.float32), 0)
    probability, segmentation = show_result(viewer, RAMP, other, False, 0.25)
    assert LIVE_NAME in viewer.layers
    assert (probability.name, segmentation.name) == ("other probability", "other segmentation")
    np.testing.assert_array_equal(segmentation.data, RAMP >= 0.25)


def test_rethreshold_updates_the_segmentation_while_both_layers_are_there(target) -> None:
    viewer, layer = target
    result = show_result(viewer, RAMP, layer, True, 0.5)
    rethreshold(viewer, result, 0.9)
    np.testing.assert_array_equal(result[1].data, RAMP >= 0.9)
    viewer.layers.remove(result[0])
    rethreshold(viewer, result, 0.1)  # its probability layer is gone: nothing changes
    np.testing.assert_array_equal(result[1].data, RAMP >= 0.9)


def test_export_takes_the_result_else_the_selected_labels(target) -> None:
    viewer, layer = target
    assert export_layer(viewer, None) is None  # the image is selected: not a mask
    result = show_result(viewer, RAMP, layer, True, 0.5)
    assert export_layer(viewer, result) is result[1]
    painted = viewer.add_labels(np.zeros((3, 4, 5), np.uint8), name="painted")
    viewer.layers.remove(result[1])
    viewer.layers.selection.active = painted
    assert export_layer(viewer, result) is painted
