"""The npe2 sample-data contribution: the generated pair, loadable without a window."""

from __future__ import annotations

import npe2
import numpy as np
import pytest
from napari.components import ViewerModel

from napari_domain_adapt.core import make_sample_pair
from napari_domain_adapt.gui.layers import LayerInfo, pick_all
from napari_domain_adapt.gui.sample_data import make_sample_data


@pytest.fixture(autouse=True)
def plugins():
    """npe2 knows the installed plugins (a viewer would discover them itself)."""
    npe2.PluginManager.instance().discover()


def test_manifest_contributes_widget_sample_and_writer():
    manifest = npe2.PluginManager.instance().get_manifest("napari-domain-adapt")
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == ["Domain adaptation"]
    assert [s.key for s in contributions.sample_data] == ["em_pair"]
    assert contributions.writers[0].layer_types == ["labels"]


def test_sample_layers_match_the_core_pair():
    layers = make_sample_data(n_source=2, n_target=3, size=48, seed=1)
    pair = make_sample_pair(n_source=2, n_target=3, size=48, seed=1)
    by_name = {meta["name"]: (data, meta, kind) for data, meta, kind in layers}
    assert list(by_name) == [
        "source image",
        "source labels",
        "target image",
        "target ground truth",
    ]
    np.testing.assert_array_equal(by_name["source image"][0], pair.source_image)
    np.testing.assert_array_equal(by_name["target ground truth"][0], pair.target_labels)
    assert by_name["target ground truth"][1]["visible"] is False
    assert [kind for _, _, kind in layers] == ["image", "labels", "image", "labels"]


def test_sample_names_pick_the_inputs_and_never_the_truth():
    infos = [LayerInfo(meta["name"], kind) for _, meta, kind in make_sample_data(size=32)]
    assert pick_all(infos) == {
        "source_image": "source image",
        "source_labels": "source labels",
        "target_image": "target image",
        "target_labels": None,
    }


def test_open_sample_through_napari():
    viewer = ViewerModel()
    layers = viewer.open_sample("napari-domain-adapt", "em_pair")
    assert [layer.name for layer in layers] == [
        "source image",
        "source labels",
        "target image",
        "target ground truth",
    ]
    source, target = viewer.layers["source image"], viewer.layers["target image"]
    assert source.data.shape == target.data.shape == (8, 256, 256)
    # The source sits left of the target, so both are in view side by side.
    assert source.translate[-1] < -256
    assert target.translate[-1] == 0
