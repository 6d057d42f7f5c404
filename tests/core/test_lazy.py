"""Lazy training inputs: a zarr or dask target read patch by patch, normalised as in memory."""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_domain_adapt.core.config import Preprocessing
from napari_domain_adapt.core.data import Domain
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.lazy import PreprocessedVolume, ResampledVolume
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.core.preprocessing import preprocess
from napari_domain_adapt.core.resampling import resample_stack, working_shape
from napari_domain_adapt.core.training import fit
from napari_domain_adapt.core.training_setup import prepare


class CountingArray:
    """A chunked array that records which (z, rows, columns) windows were read."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.chunks = data, data.shape, data.dtype, (1, 32, 32)
        self.reads: list[tuple] = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


@pytest.fixture
def volume(sample_pair) -> np.ndarray:
    return sample_pair.target_image  # (4, 96, 96) uint8


def test_patches_are_normalised_as_in_memory(volume) -> None:
    spec = Preprocessing()
    lazy = PreprocessedVolume(da.from_array(volume, chunks=(1, 32, 32)), spec)
    whole = preprocess(volume, spec)
    assert lazy.shape == volume.shape
    assert len(lazy) == 4
    np.testing.assert_array_equal(lazy[2], whole[2])
    np.testing.assert_array_equal(lazy[1, 10:40, 50:80], whole[1, 10:40, 50:80])


def test_large_slices_get_their_range_from_a_strided_sample(volume) -> None:
    spec = Preprocessing()
    exact = PreprocessedVolume(volume, spec).intensity_range(0)
    sampled = PreprocessedVolume(volume, spec, sample_pixels=96 * 96 // 4).intensity_range(0)
    assert sampled != exact  # every other row and column only
    np.testing.assert_allclose(sampled, exact, rtol=0.1)


def test_training_reads_only_the_slices_and_patches_it_samples(
    tiny_config, sample_pair, volume
) -> None:
    deep = np.concatenate([volume] * 5)  # 20 slices
    counting = CountingArray(deep)
    source = Domain(sample_pair.source_image, sample_pair.source_labels, name="source")
    target = Domain(counting, name="target")
    assert target.lazy
    assert len(target) == 20
    config = dataclasses.replace(
        tiny_config, mode="adversarial", steps=2, patch_size=64, preview_interval=None
    )
    finished = fit(config, source, target)
    assert finished.steps == 2
    check = counting.reads.pop(0)  # the contrast check: the whole (small) volume at once
    assert check == (slice(0, 20), slice(0, 96), slice(0, 96))
    patches = [key for key in counting.reads if key[-1].stop is not None]
    ranges = [key for key in counting.reads if key[-1] == slice(None, None, 1)]
    others = [key for key in counting.reads if key not in patches + ranges]
    assert len(patches) == 2 * 2 + 25 * 2  # target batches of 2 patches, then 25 for AdaBN
    assert all(key[-1].stop - key[-1].start == 64 for key in patches)
    # A whole slice is read once, for its intensity range, only where a patch was drawn
    # or for the run's fingerprint (the first and the last slice).
    fingerprinted = [key[0] for key in others]
    assert fingerprinted == [0, 19]
    read = [key[0] for key in ranges]
    assert len(read) == len(set(read)) < 20
    assert set(read) == {key[0] for key in patches} | set(fingerprinted)


def test_a_zarr_store_path_is_a_lazy_target(tmp_path, tiny_config, sample_pair, volume) -> None:
    path = tmp_path / "target.zarr"
    zarr.open_array(str(path), mode="w", shape=volume.shape, chunks=(1, 32, 32), dtype="u1")[:] = (
        volume
    )
    target = Domain(path, name="target")
    assert target.lazy
    source = Domain(sample_pair.source_image, sample_pair.source_labels, name="source")
    config = dataclasses.replace(tiny_config, mode="adversarial", steps=2, patch_size=64)
    finished = fit(config, source, target)
    assert finished.steps == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda v: Domain(da.from_array(v), masks=np.ones(v.shape, bool)), "no field-of-view"),
        (lambda v: Domain(da.from_array(v), labels=np.zeros((4, 96, 95), np.uint8)), "95"),
        (lambda v: Domain(da.from_array(v), labels=np.full(v.shape, 3, np.uint8)), "binary"),
        (lambda v: Domain(da.from_array(v.astype(bool))), "dtype bool"),
        (lambda v: Domain(da.from_array(v[..., None].repeat(3, -1))), "expected grey slices"),
        (lambda v: Domain("missing.zarr"), "neither a zarr store nor a TIFF"),
    ],
)
def test_bad_lazy_inputs_are_refused(volume, make, message) -> None:
    with pytest.raises(InputError, match=message):
        make(volume)


@pytest.mark.parametrize("value", [0, 7])
def test_a_constant_lazy_target_is_refused_as_in_memory(tmp_path, value) -> None:
    path = tmp_path / "flat.zarr"
    array = zarr.create_array(str(path), shape=(3, 64, 64), chunks=(1, 32, 32), dtype="u2")
    array[:] = value
    with pytest.raises(InputError) as lazy:
        Domain(path, name="target")
    with pytest.raises(InputError) as in_memory:
        Domain(array[:], name="target")
    assert str(lazy.value) == str(in_memory.value)
    assert str(lazy.value) == (
        f"target is constant (every pixel is {value}); expected an image with contrast"
    )
    with pytest.raises(InputError, match="constant"):
        Domain(da.full((3, 64, 64), 0.25, chunks=(1, 32, 32)), name="target")
    array[1, 5, 5] = value + 1
    assert Domain(path, name="target").lazy


@pytest.mark.parametrize("changes", [{"clahe": True}, {"field_of_view": True}])
def test_whole_image_preprocessing_is_refused(volume, changes) -> None:
    with pytest.raises(InputError, match="whole images in memory"):
        PreprocessedVolume(da.from_array(volume), Preprocessing(**changes))


def test_nan_slices_are_refused_when_read(volume) -> None:
    bad = volume.astype(np.float32)
    bad[1, 5, 5] = np.nan
    lazy = PreprocessedVolume(da.from_array(bad), Preprocessing())
    lazy[0, :8, :8]
    with pytest.raises(InputError, match=r"slice 1 .*NaN"):
        lazy[1, :8, :8]


# --- a target at another pixel size: the working grid, read patch by patch -------------------


@pytest.mark.parametrize("factor", [2.5, 2.0, 0.5])
def test_a_resampled_view_is_the_working_grid_read_window_by_window(volume, factor) -> None:
    """Shaped like the working grid; each patch is the whole preprocessed slice resampled
    and cut there, but only the window of the volume it maps to is read."""
    counting = CountingArray(volume)
    lazy = PreprocessedVolume(counting, Preprocessing())
    view = ResampledVolume(lazy, factor)
    height, width = working_shape(volume.shape[1:], factor)
    assert view.shape == (4, height, width) == (4, round(96 * factor), round(96 * factor))
    assert len(view) == 4
    assert view.dtype == np.float32
    whole = resample_stack(preprocess(volume, Preprocessing()), factor, order=1)
    np.testing.assert_allclose(view[1], whole[1], rtol=0, atol=1e-5)
    size = 32
    for y, x in [(0, 0), (height - size, width - size), (height // 3, 7)]:
        counting.reads.clear()
        patch = view[2, y : y + size, x : x + size]
        assert patch.shape == (size, size)
        np.testing.assert_allclose(patch, whole[2, y : y + size, x : x + size], atol=1e-5)
        (_, rows, columns), *_ = counting.reads
        assert rows.stop - rows.start <= size / factor + 2 * (3 + max(0, 2 / factor - 2))
        assert columns.stop - columns.start <= size / factor + 2 * (3 + max(0, 2 / factor - 2))


def test_a_resampled_view_reads_intensity_ranges_only_of_the_slices_it_reads(volume) -> None:
    counting = CountingArray(volume)
    lazy = PreprocessedVolume(counting, Preprocessing())
    view = ResampledVolume(lazy, 2.5)
    assert counting.reads == []  # nothing is read to make the view
    view[3, :16, :16]
    view[3, 100:116, 30:46]
    assert set(lazy._ranges) == {3}
    ranges = [key for key in counting.reads if key[-1] == slice(None, None, 1)]
    assert ranges == [(3, slice(None, None, 1), slice(None, None, 1))]  # once, at its scale


def test_a_run_hashes_a_resampled_lazy_target_as_given_with_its_zoom(
    tiny_config, sample_pair, volume
) -> None:
    """The run's fingerprint (which a continued run must match) reads the first and last
    slice as given, not resampled whole, and tells one zoom from another."""
    source = Domain(sample_pair.source_image, sample_pair.source_labels, name="source")
    source.pixel_size = PixelSize((4.0, 4.0), "nm")
    config = dataclasses.replace(tiny_config, mode="mean-teacher")
    counting = CountingArray(volume)
    target = Domain(counting, name="target", pixel_size=PixelSize((8.0, 8.0), "nm"))
    counting.reads.clear()  # the contrast check
    run = prepare(config, source, target, None)
    assert run.target_preview.shape == (4, 192, 192)
    whole = [key[0] for key in counting.reads if key[1:] == (slice(None), slice(None))]
    assert whole == [0, 3]  # the fingerprint's slices, as given
    assert not [key for key in counting.reads if key[1:] == (slice(0, 96), slice(0, 96))]
    assert prepare(config, source, target, None).inputs == run.inputs
    target.pixel_size = PixelSize((10.0, 10.0), "nm")
    assert prepare(config, source, target, None).inputs != run.inputs


# --- labels on a target read on demand: a user's corrections on a large volume ---------------


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("target_size", [4.0, 8.0])  # the source's pixel size, and twice it
def test_labels_on_a_lazy_target_are_those_of_the_target_in_memory(
    tiny_config, sample_pair, volume, kind, target_size
) -> None:
    """A volume read on demand takes labels held in memory: its labelled patches are those
    of the same target in memory, label for label (resampled alike to the working grid)."""
    labels = np.zeros(volume.shape, np.uint8)
    if kind == "sparse":  # scribbles: 1 background, 2 structure
        labels[2, 10:20, :] = 1
        labels[2, 40:50, 20:80] = 2
    else:
        labels[2] = volume[2] > np.median(volume[2])
    source = Domain(sample_pair.source_image, sample_pair.source_labels, name="source")
    source.pixel_size = PixelSize((4.0, 4.0), "nm")
    config = dataclasses.replace(tiny_config, mode="semi-supervised", patch_size=32)
    runs = []
    for images in (volume, da.from_array(volume, chunks=(1, 32, 32))):
        size = PixelSize((target_size, target_size), "nm")
        target = Domain(images, labels, name="target", label_kind=kind, pixel_size=size)
        assert target.labelled_slices().tolist() == [2]
        runs.append(prepare(config, source, target, None))
    in_memory, lazy = (run.target_labelled.sample(8) for run in runs)
    assert runs[1].target_preview.shape == runs[0].target_preview.shape
    np.testing.assert_array_equal(lazy.labels, in_memory.labels)
    np.testing.assert_array_equal(lazy.weights, in_memory.weights)
    assert 0 < lazy.labels.mean() < 1
    if target_size == 4.0:  # at another scale, resampled before or after normalising
        np.testing.assert_allclose(lazy.images, in_memory.images, atol=1e-5)
