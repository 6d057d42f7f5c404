"""Layer naming and picking, without a viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_domain_adapt.gui.layers import (
    LayerInfo,
    binarize,
    count_labels,
    export_values,
    full_resolution,
    labelled_text,
    pick,
    pick_all,
    result_names,
    slice_index,
)


def infos(*pairs: tuple[str, str]) -> list[LayerInfo]:
    return [LayerInfo(name, kind) for name, kind in pairs]


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (
            infos(("DRIVE src", "image"), ("src_mask", "labels"), ("STARE tgt", "image")),
            {
                "source_image": "DRIVE src",
                "source_labels": "src_mask",
                "target_image": "STARE tgt",
                "target_labels": None,
            },
        ),
        (
            infos(
                ("Target", "image"),
                ("target labels", "labels"),
                ("training EM", "image"),
                ("training membranes", "labels"),
            ),
            {
                "source_image": "training EM",
                "source_labels": "training membranes",
                "target_image": "Target",
                "target_labels": "target labels",
            },
        ),
        (
            infos(("image", "image"), ("labels", "labels")),  # nothing telling: pick nothing
            dict.fromkeys(["source_image", "source_labels", "target_image", "target_labels"]),
        ),
    ],
)
def test_pick_all_by_telling_names(layers, expected):
    assert pick_all(layers) == expected


def test_results_truth_and_other_kinds_are_never_picked():
    layers = infos(
        ("target probability", "image"),
        ("target probability (live)", "image"),
        ("target segmentation", "labels"),
        ("target ground truth", "labels"),
        ("target_gt", "labels"),
        ("target points", "points"),
    )
    assert pick(layers, "target_image") is None
    assert pick(layers, "target_labels") is None


def test_labelled_slices_are_counted():
    labels = np.zeros((4, 8, 8), np.uint8)
    assert count_labels(labels) == (0, 0)
    labels[2, 3, 3] = 1
    labels[3, :2, :2] = 2
    assert count_labels(labels) == (2, 5)
    assert count_labels(labels[2]) == (1, 1)
    assert count_labels(None) == (0, 0)
    read = []  # a stack read on demand is read one slice at a time

    class OnDemand:
        shape = labels.shape

        def __getitem__(self, index):
            read.append(index)
            return labels[index]

    assert count_labels(OnDemand()) == (2, 5)
    assert read == [0, 1, 2, 3]
    assert labelled_text(1, then="semi-supervised") == "1 labelled target slice → semi-supervised"
    assert labelled_text(3) == "3 labelled target slices"
    assert "unsupervised" in labelled_text(0)
    scribbles = labelled_text(3, pixels=1850, then="mean-teacher")
    assert scribbles == "1,850 labelled pixels on 3 slices → mean-teacher"


@pytest.mark.parametrize(
    ("point", "scale", "translate", "expected"),
    [
        ((3.0, 10.0, 10.0), (1, 1, 1), (0, 0, 0), 3),
        ((7.0, 10.0, 10.0), (2, 1, 1), (1, 0, 0), 3),
        ((99.0, 0.0, 0.0), (1, 1, 1), (0, 0, 0), 4),  # clipped to the stack
        ((0.0, 5.0, 10.0, 10.0), (1, 1, 1), (0, 0, 0), 4),  # extra leading viewer axis
        ((4.0, 4.0), (1, 1), (0, 0), 0),  # a 2D layer has one slice
    ],
)
def test_slice_index_follows_the_world_point(point, scale, translate, expected):
    assert slice_index(point, scale, translate, n_slices=5) == expected


def test_result_names():
    assert result_names("target image", True) == ("target probability", "target segmentation")
    assert result_names("raw", False) == ("raw probability", "raw segmentation")


def test_binarize_and_export_values():
    probabilities = np.array([0.1, 0.5, 0.9], np.float32)
    np.testing.assert_array_equal(binarize(probabilities, 0.5), [0, 1, 1])
    np.testing.assert_array_equal(export_values(np.array([0, 1, 3]), 255), [0, 255, 255])
    assert export_values(np.array([0, 2]), 1).dtype == np.uint8
    with pytest.raises(ValueError, match="foreground"):
        export_values(np.array([0, 1]), 2)


def test_a_multiscale_layer_is_read_at_its_first_level():
    """numpy's asarray of napari's multiscale data is its smallest level: the labels of a
    multiscale Labels layer would not match the image."""
    from napari.layers import Image, Labels

    ids = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6)
    layer = Labels([ids, ids[::2, ::2]], multiscale=True)
    assert np.asarray(layer.data).shape == (2, 3)  # napari's choice
    np.testing.assert_array_equal(full_resolution(layer), ids)
    assert full_resolution(Image(ids)) is ids
