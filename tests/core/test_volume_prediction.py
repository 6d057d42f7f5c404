"""Tests for opening volumes and their out-of-core prediction: zarr and TIFF volumes, block by
block, into OME-Zarr."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from _pixel_files import EM, em_stack, ome_zarr, zarr_pixel_size_of
from napari_domain_adapt.core import ModelSpec, Preprocessing, SegmentationModel
from napari_domain_adapt.core import volume_prediction as volumes
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.ome_zarr import image_levels
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.core.volume_prediction import predict_volume, slice_statistics
from napari_domain_adapt.core.volumes import _TiffVolume, is_zarr, open_volume

# The bound between block-by-block and in-memory prediction. The tiny U-Net (depth 2) has a
# receptive radius of 22 pixels; with margins at least that wide and blocks on its pooling
# grid, a block predicts its pixels as the whole slice does: measured max abs difference
# 1.2e-7 (float rounding). Slices here are smaller than 512 pixels, so in memory they are
# predicted whole. Larger slices and the default depth-4 U-Net: benchmarks/out_of_core.py.
BOUND = 1e-5


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    """A tiny U-Net with non-trivial random weights (biases and norms shifted)."""
    torch.manual_seed(0)
    # ChannelNorm: untrained BatchNorm statistics would saturate the output, hiding borders.
    model = SegmentationModel.create(ModelSpec(depth=2, width=4, norm="channel"))
    for parameter in model.network.parameters():
        if parameter.ndim == 1:
            parameter.data.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """Three uint8 slices of 150 x 230 with structure and a different contrast each."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:150, :230]
    base = 100 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0)
    slices = [base * gain + rng.normal(0, 12, base.shape) for gain in (0.5, 1.0, 1.4)]
    return np.clip(slices, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def expected(model, volume) -> np.ndarray:
    return model.predict(volume)


def _zarr(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> Path:
    array = zarr.open_array(str(path), mode="w", shape=data.shape, chunks=chunks, dtype=data.dtype)
    array[:] = data
    return path


def test_zarr_round_trip_equals_in_memory_prediction(model, volume, expected, tmp_path) -> None:
    source = _zarr(tmp_path / "volume.zarr", volume, (1, 64, 64))
    out = predict_volume(model, source, tmp_path / "prob.zarr", chunk=64, overlap=32)
    assert is_zarr(tmp_path / "prob.zarr")
    assert out.shape == volume.shape
    assert out.dtype == np.float32
    assert out.chunks == (1, 64, 64)
    np.testing.assert_allclose(out[:], expected, rtol=0, atol=BOUND)
    assert out.attrs["napari-domain-adapt"]["content"] == "probabilities"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prob.zarr", "volume.zarr"]

    mask = predict_volume(model, source, tmp_path / "mask.zarr", chunk=64, threshold=0.5)
    assert mask.dtype == np.uint8
    decided = np.abs(expected - 0.5) > BOUND
    np.testing.assert_array_equal(mask[:][decided], (expected[decided] >= 0.5) * 255)


def test_slabs_of_slices_join_up(model, volume, expected, tmp_path, monkeypatch) -> None:
    """Deep volumes go in slabs of Z_BATCH slices (small task graphs); here 2 + 1."""
    monkeypatch.setattr(volumes, "Z_BATCH", 2)
    out = predict_volume(model, volume, tmp_path / "prob.zarr", chunk=64)
    np.testing.assert_allclose(out[:], expected, rtol=0, atol=BOUND)
    target = zarr.open_array(str(tmp_path / "given.zarr"), mode="w", shape=volume.shape)
    predict_volume(model, volume.astype(np.float32), target, chunk=64)
    np.testing.assert_allclose(target[:], expected, rtol=0, atol=BOUND)


def test_blocks_use_slice_statistics_not_their_own(model, volume, expected) -> None:
    """A dark block of a bright slice must be scaled with the slice's percentiles."""
    uneven = volume.copy()
    uneven[:, :, :100] //= 4
    lazy = predict_volume(model, uneven, chunk=48)  # overlap: the receptive radius, 22 -> 24
    np.testing.assert_allclose(lazy.compute(), model.predict(uneven), rtol=0, atol=BOUND)


def test_overlap_below_the_receptive_radius_shows_block_borders(model, volume, expected) -> None:
    """The reason for the default overlap: with 8 pixels of context, borders differ."""
    assert model.network.receptive_radius == 22
    short = predict_volume(model, volume, chunk=48, overlap=8).compute()
    difference = np.abs(short - expected)
    assert difference.max() > 10 * BOUND
    assert difference.max() < 0.2


def test_tiff_memory_mapped_and_compressed(model, volume, expected, tmp_path) -> None:
    plain, packed = tmp_path / "plain.tif", tmp_path / "packed.tif"
    tifffile.imwrite(plain, volume, photometric="minisblack")
    tifffile.imwrite(packed, volume, photometric="minisblack", compression="zlib")
    lazy = open_volume(plain)
    assert isinstance(lazy, _TiffVolume)
    assert isinstance(lazy._open(), np.memmap)
    for path in (plain, packed):
        result = predict_volume(model, path, chunk=64, overlap=32).compute()
        np.testing.assert_allclose(result, expected, rtol=0, atol=BOUND)


def test_single_image_gives_an_image(model, volume, expected, tmp_path) -> None:
    out = predict_volume(model, volume[1], tmp_path / "one.zarr", chunk=64)
    assert out.shape == volume.shape[1:]
    np.testing.assert_allclose(out[:], expected[1], rtol=0, atol=BOUND)


def test_ome_zarr_leading_axes_of_one(model, volume, expected, tmp_path) -> None:
    source = _zarr(tmp_path / "ome.zarr", volume[np.newaxis, np.newaxis], (1, 1, 1, 64, 64))
    result = predict_volume(model, source, chunk=64).compute()
    np.testing.assert_allclose(result, expected, rtol=0, atol=BOUND)


def test_clahe_models_predict_whole_slices(volume) -> None:
    torch.manual_seed(0)
    model = SegmentationModel.create(ModelSpec(depth=2, width=4), Preprocessing(clahe=True))
    result = predict_volume(model, volume, chunk=32).compute()
    np.testing.assert_allclose(result, model.predict(volume), rtol=0, atol=BOUND)


@pytest.mark.slow  # starts a dask.distributed cluster: `pytest -m slow`
def test_local_cluster_of_two_workers(model, volume, expected, tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    source = _zarr(tmp_path / "volume.zarr", volume, (1, 50, 50))
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = predict_volume(model, source, tmp_path / "prob.zarr", chunk=64, overlap=32)
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_allclose(out[:], expected, rtol=0, atol=BOUND)


def test_slice_statistics_sample_large_slices(model, volume) -> None:
    import dask.array as da

    stack = da.from_array(volume, chunks=(1, 64, 64))
    lows, scales = slice_statistics(stack, model, scheduler="sync")
    for z, image in enumerate(volume.astype(np.float32)):
        low, high = np.percentile(image, (1, 99))
        assert lows[z] == low
        assert scales[z] == pytest.approx(high - low)
    # every 4th row and column: close, within a tenth of the intensity range
    low, scale = slice_statistics(stack, model, sample_pixels=2500, scheduler="sync")
    assert (np.abs(low - lows) < 0.1 * scales).all()
    assert (np.abs(scale - scales) < 0.1 * scales).all()
    assert not np.array_equal(low, lows)  # it did sample


def test_refuses_existing_output(model, volume, tmp_path) -> None:
    target = tmp_path / "prob.zarr"
    predict_volume(model, volume, target, chunk=64)
    stamp = (target / ".zattrs").stat().st_mtime_ns
    with pytest.raises(InputError, match="exists"):
        predict_volume(model, volume, target, chunk=64)
    assert (target / ".zattrs").stat().st_mtime_ns == stamp
    replaced = predict_volume(model, volume, target, chunk=64, threshold=0.5, overwrite=True)
    assert replaced.dtype == np.uint8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prob.zarr"]
    folder = tmp_path / "folder.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a zarr store"):
        predict_volume(model, volume, folder, chunk=64, overwrite=True)
    with pytest.raises(InputError, match=r"\.zarr"):
        predict_volume(model, volume, tmp_path / "prob.tif", chunk=64)


def test_failure_leaves_nothing_behind(model, volume, tmp_path) -> None:
    bad = volume.astype(np.float32)
    bad[2, 5, 5] = np.nan
    with pytest.raises(InputError, match=r"slice 2 .* NaN"):
        predict_volume(model, bad, tmp_path / "prob.zarr", chunk=64)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk": 16, "overlap": 32}, "at least the overlap"),
        ({"chunk": 0}, "must be >= 1"),
        ({"chunk": (64, 8), "overlap": 16}, "at least the overlap"),
        ({"overlap": -4}, "must be >= 0"),
        ({"threshold": 1.5}, "threshold must be between 0 and 1"),
    ],
)
def test_invalid_arguments(model, volume, kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        predict_volume(model, volume, **kwargs)


def test_invalid_sources(model, tmp_path) -> None:
    cases = [
        (np.zeros((2, 8, 8), bool), "dtype bool"),
        (np.zeros((2, 8, 8, 3), np.uint8), "expected grey slices"),
        (np.zeros((2, 2, 8, 8), np.uint8), "expected grey slices"),
        (np.zeros((2, 1, 8), np.uint8), "expected grey slices"),
        (tmp_path / "missing.zarr", "neither a zarr store nor a TIFF"),
        ("not an array", "neither a zarr store"),
        (42, "expected a volume array or path"),
    ]
    for source, message in cases:
        with pytest.raises(InputError, match=message):
            predict_volume(model, source)
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("a", shape=(2, 8, 8), dtype="u1")
    group.create_array("b", shape=(2, 8, 8), dtype="u1")
    with pytest.raises(InputError, match="arrays a, b"):
        predict_volume(model, tmp_path / "group.zarr")


def test_ome_zarr_levels_are_read_by_their_metadata(tmp_path) -> None:
    image = ome_zarr(tmp_path / "raw.zarr")
    assert open_volume(image).shape == (3, 64, 80)  # level 0: the first in multiscales
    assert open_volume(image / "s1").shape == (3, 32, 40)


def test_predictions_are_ome_zarr_at_the_source_pixel_size(model, tmp_path) -> None:
    image = ome_zarr(tmp_path / "raw.zarr", em_stack((2, 64, 80), np.uint8))
    for source, size in [(image, EM.to("nm")), (image / "s1", PixelSize((50, 8, 8), "nm"))]:
        out = tmp_path / f"p{len(list(tmp_path.iterdir()))}.zarr"
        written = predict_volume(model, source, out, chunk=64)
        assert written.shape == open_volume(source).shape
        assert zarr_pixel_size_of(out) == size
    given = predict_volume(model, image, tmp_path / "given.zarr", chunk=64, pixel_size=EM)
    assert zarr_pixel_size_of(tmp_path / "given.zarr") == EM
    assert given.attrs["napari-domain-adapt"]["content"] == "probabilities"


def test_predictions_without_a_pixel_size_have_scale_one_and_no_unit(model, tmp_path) -> None:
    predict_volume(model, em_stack((64, 80), np.uint8), tmp_path / "flat.zarr", chunk=64)
    (image,) = zarr.open_group(str(tmp_path / "flat.zarr"), mode="r").attrs["multiscales"]
    assert image["axes"] == [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    assert image["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0]


def test_a_histogram_matched_model_is_refused_out_of_core(trained_model, tmp_path) -> None:
    """Out of core there is no matching yet: refused, rather than predicted unmatched."""
    model = dataclasses.replace(
        trained_model(), intensity_reference=np.linspace(0.0, 1.0, 16, dtype=np.float32)
    )
    volume = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    with pytest.raises(InputError, match="out-of-core volume prediction does not do yet"):
        predict_volume(model, volume, tmp_path / "p.zarr")
    assert not (tmp_path / "p.zarr").exists()


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_a_large_prediction_is_a_pyramid_that_readers_open_at_every_level(
    model, tmp_path, threshold
) -> None:
    """Beyond 512 pixels on a side the output gets coarser levels, each made of 2 x 2 blocks
    of the one before (probabilities averaged, a mask's maximum kept), at twice its pixel
    size; level 0 is the prediction itself."""
    data = em_stack((2, 1100, 600), np.uint8)
    out = tmp_path / "p.zarr"
    written = predict_volume(model, data, out, chunk=256, pixel_size=EM, threshold=threshold)
    levels = image_levels(out)
    assert [path for path, _ in levels] == ["0", "1", "2"]
    z, y, x = EM.sizes
    assert [size for _, size in levels] == [
        PixelSize((z, y * 2**level, x * 2**level), EM.unit) for level in range(3)
    ]
    arrays = [open_volume(out / path) for path, _ in levels]
    assert [a.shape for a in arrays] == [(2, 1100, 600), (2, 550, 300), (2, 275, 150)]
    np.testing.assert_array_equal(np.asarray(arrays[0]), written[:])
    for finer, coarser in itertools.pairwise(arrays):
        finer = np.asarray(finer)
        blocks = finer.reshape(2, finer.shape[1] // 2, 2, finer.shape[2] // 2, 2)
        if threshold is None:
            np.testing.assert_allclose(coarser, blocks.mean(axis=(2, 4)), atol=1e-6)
        else:
            np.testing.assert_array_equal(coarser, blocks.max(axis=(2, 4)))
    assert np.asarray(arrays[2]).dtype == written.dtype
