"""``napari-domain-adapt predict`` with zarr stores: out of core, zarr in, zarr out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from _pixel_files import EM, em_stack, hdf5_volume, imagej_stack, ome_zarr, zarr_pixel_size_of
from napari_domain_adapt.cli import EXIT_BAD_INPUT, main
from napari_domain_adapt.core import ModelSpec, SegmentationModel, load_checkpoint, save_checkpoint
from napari_domain_adapt.core.pixel_size import PixelSize


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = SegmentationModel.create(ModelSpec(depth=2, width=4))
    for parameter in model.network.parameters():
        if parameter.ndim == 1:
            parameter.data.normal_(0, 0.5)
    return save_checkpoint(model, tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, (2, 90, 120), dtype=np.uint8)


def _store(path: Path, data: np.ndarray) -> Path:
    array = zarr.open_array(str(path), mode="w", shape=data.shape, chunks=(1, 32, 32), dtype="u1")
    array[:] = data
    return path


def test_predict_zarr_to_zarr(checkpoint, volume, tmp_path, capsys) -> None:
    source = _store(tmp_path / "vol.zarr", volume)
    out = tmp_path / "prob.zarr"
    base = ["predict", "--model", str(checkpoint), "--input", str(source), "--device", "cpu"]
    assert main([*base, "--out", str(out), "--chunk", "48"]) == 0
    assert "wrote" in capsys.readouterr().err
    expected = load_checkpoint(checkpoint).predict(volume)
    np.testing.assert_allclose(zarr.open_array(str(out / "0"))[:], expected, rtol=0, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prob.zarr", "vol.zarr"]

    # an existing store is refused, then replaced with --overwrite
    assert main([*base, "--out", str(out), "--threshold", "0.5"]) == EXIT_BAD_INPUT
    assert "exists" in capsys.readouterr().err
    assert zarr.open_array(str(out / "0")).dtype == np.float32
    assert main([*base, "--out", str(out), "--threshold", "0.5", "--overwrite"]) == 0
    assert zarr.open_array(str(out / "0")).dtype == np.uint8


def test_tiff_to_zarr_and_refusals(checkpoint, volume, tmp_path, capsys) -> None:
    tiff = tmp_path / "vol.tif"
    tifffile.imwrite(tiff, volume, photometric="minisblack")
    base = ["predict", "--model", str(checkpoint), "--device", "cpu"]
    assert main([*base, "--input", str(tiff), "--out", str(tmp_path / "p.zarr")]) == 0
    source = _store(tmp_path / "vol.zarr", volume)
    cases = [
        (["--input", str(source), "--out", str(tmp_path / "p.tif")], "give --out NAME.zarr"),
        (["--input", str(source), "--out", str(source)], "input of this command"),
        (["--input", str(source), "--out", str(tmp_path / "q.zarr"), "--chunk", "8"], "overlap"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == EXIT_BAD_INPUT
        assert message in capsys.readouterr().err
    assert not (tmp_path / "p.tif").exists()
    assert not (tmp_path / "q.zarr").exists()


def test_adapt_to_a_zarr_target_reads_it_lazily(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "demo"), "--size", "64"]) == 0
    target = tifffile.imread(
        sorted((tmp_path / "demo" / "target" / "train" / "images").iterdir())[0]
    )
    store = zarr.open_array(
        str(tmp_path / "target.zarr"),
        mode="w",
        shape=(3, *target.shape),
        chunks=(1, 32, 32),
        dtype=target.dtype,
    )
    store[:] = np.stack([target] * 3)
    out = tmp_path / "m.pt"
    args = ["adapt", "--source", str(tmp_path / "demo" / "source"), "--target"]
    args += [str(tmp_path / "target.zarr"), "--out", str(out), "--steps", "2", "--batch-size"]
    args += ["2", "--patch-size", "64", "--depth", "2", "--width", "4", "--device", "cpu"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert out.exists()


def test_ome_zarr_in_ome_zarr_out_at_the_same_pixel_size(checkpoint, tmp_path) -> None:
    """The round trip of issue 20 out of core: OME-Zarr (a level), TIFF or HDF5 in, OME-Zarr
    out."""
    image = ome_zarr(tmp_path / "raw.zarr", em_stack((2, 64, 64), np.uint8))
    stack = imagej_stack(tmp_path / "raw.tif", em_stack((2, 64, 64), np.uint8))
    base = ["predict", "--model", str(checkpoint), "--device", "cpu", "--chunk", "48"]
    volume = hdf5_volume(tmp_path / "raw.h5", em_stack((2, 64, 64), np.uint8))
    cases = [
        (image, EM.to("nm")),  # level 0
        (image / "s1", PixelSize((50, 8, 8), "nm")),
        (stack, EM),
        (volume, EM),  # HDF5, read on demand too
    ]
    for index, (source, expected) in enumerate(cases):
        out = tmp_path / f"p{index}.zarr"
        assert main([*base, "--input", str(source), "--out", str(out)]) == 0
        assert zarr_pixel_size_of(out) == expected
    assert zarr.open_array(str(tmp_path / "p1.zarr" / "0")).shape == (2, 32, 32)
    from_tiff, from_hdf5 = (zarr.open_array(str(tmp_path / f"p{i}.zarr" / "0"))[:] for i in (2, 3))
    np.testing.assert_array_equal(from_hdf5, from_tiff)  # the same pixels, the same result


def test_adapt_to_an_ome_zarr_target_at_another_pixel_size(tmp_path, capsys):
    """The EM case: an OME-Zarr target at 8 nm (its level ``s1``), read on demand, and a
    source at 4 nm; the run says so, trains on the target resampled patch by patch, and
    the model keeps both pixel sizes."""
    assert main(["sample", str(tmp_path / "demo"), "--size", "64"]) == 0
    target = tifffile.imread(
        sorted((tmp_path / "demo" / "target" / "train" / "images").iterdir())[0]
    )
    image = ome_zarr(tmp_path / "target.zarr", np.stack([target] * 3))
    out = tmp_path / "m.pt"
    args = ["adapt", "--source", str(tmp_path / "demo" / "source"), "--target"]
    args += [str(image / "s1"), "--source-pixel-size", "4nm", "--out", str(out), "--steps"]
    args += ["2", "--batch-size", "2", "--patch-size", "64", "--depth", "2", "--width", "4"]
    assert main([*args, "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "pixel sizes: source 4 x 4 nm, target 50 x 8 x 8 nm: the target is resampled by 2 " in (
        captured.err
    )
    assert json.loads(captured.out)["steps"] == 2
    model = load_checkpoint(out)
    assert model.pixel_size == PixelSize((4, 4), "nm")
    assert model.zoom_for(PixelSize((50, 8, 8), "nm")) == pytest.approx(2.0)
