"""Tests for the generated sample data: contract, determinism, and a real domain shift."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skimage.morphology import skeletonize

from napari_domain_adapt.core.sample_data import (
    SamplePair,
    make_membrane_labels,
    make_sample_pair,
    render_source,
    render_target,
)


@pytest.fixture(scope="module")
def pair() -> SamplePair:
    return make_sample_pair()


def _f1_by_threshold(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """F1 of the classifier ``image < t`` (dark = membrane) for every t in 0..256."""
    values = image.ravel().astype(np.int64)
    positive = labels.ravel().astype(bool)
    tp = np.concatenate([[0], np.cumsum(np.bincount(values[positive], minlength=256))])
    fp = np.concatenate([[0], np.cumsum(np.bincount(values[~positive], minlength=256))])
    fn = positive.sum() - tp
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def _mean_thickness(labels: np.ndarray) -> float:
    """Membrane area divided by skeleton length: the mean membrane width in pixels."""
    length = sum(int(skeletonize(s.astype(bool)).sum()) for s in labels)
    return float(labels.sum()) / length


def test_shapes_and_dtypes(pair: SamplePair) -> None:
    assert pair.source_image.shape == pair.source_labels.shape == (8, 256, 256)
    assert pair.target_image.shape == pair.target_labels.shape == (8, 256, 256)
    for field in dataclasses.fields(SamplePair):
        assert getattr(pair, field.name).dtype == np.uint8
    small = make_sample_pair(n_source=3, n_target=2, size=64, seed=1)
    assert small.source_image.shape == (3, 64, 64)
    assert small.target_labels.shape == (2, 64, 64)


def test_frozen(pair: SamplePair) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.source_image = pair.target_image  # type: ignore[misc]


def test_labels_are_binary(pair: SamplePair) -> None:
    assert set(np.unique(pair.source_labels)) == {0, 1}
    assert set(np.unique(pair.target_labels)) == {0, 1}


def test_membrane_fraction_sensible(pair: SamplePair) -> None:
    for labels in (pair.source_labels, pair.target_labels):
        assert 0.1 <= labels.mean() <= 0.35
        # every slice has membranes and cells, not just the stack on average
        per_slice = labels.mean(axis=(1, 2))
        assert per_slice.min() > 0.05
        assert per_slice.max() < 0.45


def test_images_use_the_intensity_range(pair: SamplePair) -> None:
    for image in (pair.source_image, pair.target_image):
        assert image.std() > 10
        assert np.mean(image == 0) < 0.01
        assert np.mean(image == 255) < 0.01


def test_deterministic_by_seed() -> None:
    a = make_sample_pair(n_source=2, n_target=2, size=96, seed=3)
    b = make_sample_pair(n_source=2, n_target=2, size=96, seed=3)
    c = make_sample_pair(n_source=2, n_target=2, size=96, seed=4)
    for field in dataclasses.fields(SamplePair):
        x, y, z = (getattr(p, field.name) for p in (a, b, c))
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)
    # slices of a stack differ from each other
    assert not np.array_equal(a.source_labels[0], a.source_labels[1])


def test_public_helpers_are_deterministic_and_honour_thickness() -> None:
    def labels(thickness: float) -> np.ndarray:
        return make_membrane_labels((128, 128), 12, thickness, np.random.default_rng(5))

    thin, thick = labels(2.0), labels(5.0)
    np.testing.assert_array_equal(thin, labels(2.0))
    assert thin.dtype == np.uint8
    assert thick.mean() > 1.5 * thin.mean()
    for render in (render_source, render_target):
        first = render(thin, np.random.default_rng(1))
        assert first.shape == thin.shape
        assert first.dtype == np.uint8
        np.testing.assert_array_equal(first, render(thin, np.random.default_rng(1)))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="n_source"):
        make_sample_pair(n_source=0)
    with pytest.raises(ValueError, match="size"):
        make_sample_pair(size=8)


def test_target_membranes_thicker(pair: SamplePair) -> None:
    assert _mean_thickness(pair.target_labels) > 1.25 * _mean_thickness(pair.source_labels)


def test_membranes_are_dark_in_both_domains(pair: SamplePair) -> None:
    domains = [(pair.source_image, pair.source_labels), (pair.target_image, pair.target_labels)]
    for image, labels in domains:
        assert image[labels == 1].mean() + 20 < image[labels == 0].mean()


def test_shift_is_real_for_a_source_tuned_threshold(pair: SamplePair) -> None:
    source_f1 = _f1_by_threshold(pair.source_image, pair.source_labels)
    threshold = int(np.argmax(source_f1))
    target_f1 = _f1_by_threshold(pair.target_image, pair.target_labels)[threshold]
    assert source_f1[threshold] > 0.85
    assert source_f1[threshold] - target_f1 >= 0.1


def test_target_has_dark_distractors(pair: SamplePair) -> None:
    threshold = int(np.argmax(_f1_by_threshold(pair.source_image, pair.source_labels)))

    def false_dark_fraction(image: np.ndarray, labels: np.ndarray) -> float:
        dark = image < threshold
        return float((dark & (labels == 0)).sum() / max(dark.sum(), 1))

    source = false_dark_fraction(pair.source_image, pair.source_labels)
    target = false_dark_fraction(pair.target_image, pair.target_labels)
    assert source < 0.1
    assert target > 3 * source
    assert target > 0.3


def test_target_blobs_are_blob_shaped(pair: SamplePair) -> None:
    """Dark non-membrane regions in the (denoised) target are compact blobs inside cells."""
    from scipy import ndimage as ndi

    image = ndi.gaussian_filter(pair.target_image[0].astype(float), 1.5)
    labels = pair.target_labels[0]
    cells = ndi.distance_transform_edt(labels == 0) > 3
    background = np.median(image[cells])
    dark_in_cells = cells & (image < background - 25)
    n_blobs = ndi.label(dark_in_cells)[1]
    assert n_blobs >= 10
    source_image = ndi.gaussian_filter(pair.source_image[0].astype(float), 1.5)
    source_cells = ndi.distance_transform_edt(pair.source_labels[0] == 0) > 3
    source_background = np.median(source_image[source_cells])
    assert (source_cells & (source_image < source_background - 25)).sum() < 20
