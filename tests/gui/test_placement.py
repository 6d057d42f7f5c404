"""The live preview and the result layers in a real (headless, Xvfb) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.gui.layers import LIVE_NAME, PROBABILITY_NAME
from napari_domain_adapt.gui.placement import place_layer, promote_preview, show_preview

pytestmark = pytest.mark.gui


@pytest.fixture
def target(make_napari_viewer):
    """A viewer with a placed 3-slice target stack."""
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        np.zeros((3, 16, 12), np.uint8),
        name="target image",
        scale=(2.0, 0.5, 0.5),
        translate=(1.0, 10.0, 20.0),
    )
    return viewer, layer


def test_previews_are_written_into_one_live_layer(target):
    viewer, image = target
    live = show_preview(viewer, image, np.zeros((16, 12), np.float32), 0)
    redrawn = []
    live.events.set_data.connect(lambda event: redrawn.append(event))
    inserted = []
    viewer.layers.events.inserted.connect(lambda event: inserted.append(event.value))
    preview = np.random.default_rng(0).random((16, 12), dtype=np.float32)

    assert show_preview(viewer, image, preview, 2) is live
    assert not inserted  # no layer added for a preview once the live layer exists
    assert redrawn  # the canvas is told that the data changed
    np.testing.assert_array_equal(live.data[0], preview)
    assert not np.shares_memory(live.data, preview)  # the layer's own array, not the event's
    np.testing.assert_allclose(live.translate, (1.0 + 2 * 2.0, 10.0, 20.0))
    np.testing.assert_allclose(live.scale, image.scale)

    other = show_preview(viewer, image, np.ones((8, 6), np.float32), 0)  # another shape
    assert other is live
    assert live.data.shape == (1, 8, 6)


def test_the_live_layer_lies_where_the_target_does_in_its_units(target):
    """Without the target's units the live layer (units: pixel) made napari warn
    "Inconsistent units across layers" at every Adapt on a calibrated target, and draw
    every layer at its own numbers while it was there."""
    viewer, image = target
    if hasattr(image, "units"):  # napari 0.6 and later
        image.units = ("nm",) * 3
    live = show_preview(viewer, image, np.zeros((16, 12), np.float32), 1)
    np.testing.assert_allclose(live.scale, image.scale)
    if hasattr(image, "units"):
        assert live.units == image.units


def test_the_live_layer_becomes_the_probability_layer(target):
    viewer, image = target
    live = show_preview(viewer, image, np.zeros((16, 12), np.float32), 1)
    live.visible = False
    probabilities = np.full((3, 16, 12), 0.25, np.float32)

    layer = promote_preview(viewer, probabilities, PROBABILITY_NAME, image)

    assert layer is live
    assert LIVE_NAME not in viewer.layers
    assert viewer.layers[PROBABILITY_NAME] is live
    np.testing.assert_array_equal(layer.data, probabilities)
    np.testing.assert_allclose(layer.translate, image.translate)
    np.testing.assert_allclose(layer.scale, image.scale)
    assert layer.opacity == 1.0
    assert layer.visible
    assert layer.colormap.name == "magma"
    np.testing.assert_allclose(layer.contrast_limits, (0.0, 1.0))


def test_an_earlier_probability_layer_is_updated_not_replaced(target):
    viewer, image = target
    earlier = place_layer(
        viewer, np.zeros((3, 16, 12), np.float32), PROBABILITY_NAME, "image", image
    )
    show_preview(viewer, image, np.zeros((16, 12), np.float32), 0)
    probabilities = np.ones((3, 16, 12), np.float32)

    assert promote_preview(viewer, probabilities, PROBABILITY_NAME, image) is None
    assert LIVE_NAME in viewer.layers  # left to the caller, untouched
    assert place_layer(viewer, probabilities, PROBABILITY_NAME, "image", image) is earlier
    np.testing.assert_array_equal(earlier.data, probabilities)
