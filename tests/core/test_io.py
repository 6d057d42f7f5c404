"""Tests for file input and output: atomic writes, TIFF export, image and dataset reading."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from _pixel_files import EM, em_stack, hdf5_volume, imagej_stack, ome_tiff, ome_zarr
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.io import (
    atomic_write,
    atomic_writes,
    check_not_an_input,
    is_dataset,
    list_images,
    load_dataset,
    read_image,
    read_pixel_size,
    read_stack,
    read_volume,
    read_volume_with_pixel_size,
    write_tiff,
)


class _Boom(Exception):
    pass


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- outputs never replace inputs ----------------------------------------------------------


def test_an_output_never_replaces_the_container_of_an_input(tmp_path) -> None:
    import zarr

    store = tmp_path / "raw.zarr"
    zarr.open_group(str(store), mode="w").create_array("0", shape=(2, 8, 8), dtype="u1")
    (tmp_path / "vol.h5").write_bytes(b"an HDF5 file")
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    refused = [
        (store, store / "0"),  # the store of the array read
        (store / "p.zarr", store / "0"),  # a store inside it
        (tmp_path / "vol.h5", f"{tmp_path / 'vol.h5'}:volumes/raw"),  # the file of a dataset
        (tmp_path / "link", tmp_path / "data" / "a.tif"),  # a folder, through a symlink
    ]
    for output, source in refused:
        with pytest.raises(InputError, match="an input of this command"):
            check_not_an_input(output, [None, source])
    check_not_an_input(tmp_path / "p.zarr", [store / "0", tmp_path / "data"])  # beside: fine


# --- atomic_write --------------------------------------------------------------------------


def test_atomic_write_success(tmp_path) -> None:
    path = tmp_path / "out.bin"
    with atomic_write(path) as temporary:
        assert temporary.parent == tmp_path
        assert temporary != path
        assert not path.exists()  # nothing visible until the write is complete
        temporary.write_bytes(b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]
    # permissions of any new file (the umask's), not a private temporary file's 0o600
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _write(path: Path, content: bytes, error: BaseException | None = None, **kwargs) -> None:
    """Write ``content`` through atomic_write, then raise ``error`` (if any) mid-write."""
    with atomic_write(path, **kwargs) as temporary:
        temporary.write_bytes(content)
        if error is not None:
            raise error


def test_atomic_write_exception_leaves_no_file(tmp_path) -> None:
    with pytest.raises(_Boom):
        _write(tmp_path / "out.bin", b"partial", _Boom())
    assert os.listdir(tmp_path) == []


def test_atomic_write_exception_keeps_the_old_file(tmp_path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(_Boom):
        _write(path, b"partial", _Boom(), overwrite=True)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_os_error_becomes_input_error(tmp_path) -> None:
    disk_full = OSError(28, "No space left on device")
    with pytest.raises(InputError, match=r"cannot write .*out\.bin: No space left"):
        _write(tmp_path / "out.bin", b"partial", disk_full)
    assert os.listdir(tmp_path) == []


def test_atomic_write_refuses_existing_without_overwrite(tmp_path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(InputError, match="exists; choose another name or allow overwriting"):
        _write(path, b"new")
    assert path.read_bytes() == b"old"
    _write(path, b"new", overwrite=True)
    assert path.read_bytes() == b"new"


@pytest.mark.parametrize("hard_links", [True, False])
def test_atomic_write_never_replaces_a_file_that_appeared_meanwhile(
    tmp_path, monkeypatch, hard_links
) -> None:
    if not hard_links:  # FAT, some network shares: the check-then-rename fallback

        def link(source, target):
            raise PermissionError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", link)
    path = tmp_path / "out.bin"
    with pytest.raises(InputError, match=r"out\.bin appeared while it was being written"):
        _write_while_another_writes(path)
    assert path.read_bytes() == b"another run's"
    assert os.listdir(tmp_path) == ["out.bin"]
    _write(tmp_path / "new.bin", b"new")  # and a new name is written as ever
    assert (tmp_path / "new.bin").read_bytes() == b"new"
    _write_while_another_writes(path, overwrite=True)  # asked to: replaced
    assert path.read_bytes() == b"ours"


def _write_while_another_writes(path: Path, **kwargs) -> None:
    with atomic_write(path, **kwargs) as temporary:
        temporary.write_bytes(b"ours")
        path.write_bytes(b"another run's")


def test_atomic_writes_all_or_none(tmp_path) -> None:
    (tmp_path / "b.bin").write_bytes(b"old b")
    paths = [tmp_path / "a.bin", tmp_path / "b.bin"]
    with pytest.raises(_Boom):
        _write_first_of(paths, _Boom())
    assert sorted(os.listdir(tmp_path)) == ["b.bin"]
    assert (tmp_path / "b.bin").read_bytes() == b"old b"


def _write_first_of(paths: list[Path], error: BaseException) -> None:
    with atomic_writes(paths, overwrite=True) as temporaries:
        temporaries[0].write_bytes(b"new")
        raise error  # before the others are written


def test_atomic_write_missing_folder(tmp_path) -> None:
    with pytest.raises(InputError, match=r"the folder .*missing does not exist"):
        _write(tmp_path / "missing" / "out.bin", b"new")


# --- write_tiff ----------------------------------------------------------------------------


def test_write_tiff_round_trip_with_pixel_size(tmp_path) -> None:
    data = np.random.default_rng(0).integers(0, 255, (3, 20, 30), dtype=np.uint8)
    path = write_tiff(tmp_path / "mask.tif", data, pixel_size=(0.5, 0.25, 0.125))
    np.testing.assert_array_equal(tifffile.imread(path), data)
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        x_res, y_res = tags["XResolution"].value, tags["YResolution"].value
        assert x_res[0] / x_res[1] == pytest.approx(8.0)  # pixels per unit = 1 / 0.125
        assert y_res[0] / y_res[1] == pytest.approx(4.0)
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.5)
        assert tif.imagej_metadata["slices"] == 3  # a z-stack, not three channels
        assert tif.series[0].axes == "ZYX"
    assert list_images(tmp_path) == [path]  # and no temporary file left


def test_write_tiff_other_types_and_2d(tmp_path) -> None:
    probabilities = np.random.default_rng(1).random((20, 30))  # float64: no ImageJ
    path = write_tiff(tmp_path / "p.tif", probabilities, pixel_size=(2.0, 4.0))
    np.testing.assert_array_equal(read_image(path), probabilities)
    with tifffile.TiffFile(path) as tif:
        x_res = tif.pages[0].tags["XResolution"].value
        assert x_res[0] / x_res[1] == pytest.approx(0.25)
    plain = write_tiff(tmp_path / "plain.tif", probabilities.astype(np.float32))
    np.testing.assert_array_equal(read_image(plain), probabilities.astype(np.float32))
    with pytest.raises(InputError, match="exists"):
        write_tiff(plain, probabilities)
    write_tiff(plain, probabilities, overwrite=True)
    assert read_image(plain).dtype == np.float64


# --- reading -------------------------------------------------------------------------------


def _png(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, data)
    return path


def test_read_image_png_and_tiff(tmp_path) -> None:
    data = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(_png(tmp_path / "a.png", data)), data)
    tifffile.imwrite(tmp_path / "b.TIF", data.astype(np.uint16) * 200)
    np.testing.assert_array_equal(read_image(tmp_path / "b.TIF"), data.astype(np.uint16) * 200)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_read_image_broken_files(tmp_path, suffix: str) -> None:
    data = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    good = tmp_path / f"good{suffix}"
    if suffix == ".png":
        _png(good, data)
    else:
        tifffile.imwrite(good, data, compression="zlib")
    content = good.read_bytes()
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(content[: len(content) // 2])
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"this is not an image " * 20)
    for path in (truncated, garbage):
        with pytest.raises(InputError, match=f"cannot read .*{path.name}: not a readable image"):
            read_image(path)
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / f"missing{suffix}")


@pytest.mark.parametrize("path", [None, 123, 1.5, ["a.tif"]])
def test_read_volume_of_what_is_not_a_path(path) -> None:
    with pytest.raises(InputError, match="expected a path to read a volume from"):
        read_volume(path)


def test_read_stack_and_volume(tmp_path) -> None:
    rng = np.random.default_rng(0)
    slices = [rng.integers(0, 256, (10, 12), dtype=np.uint8) for _ in range(3)]
    for name, data in zip(["b.png", "a.png", "c.png"], slices, strict=True):
        _png(tmp_path / "stack" / name, data)
    (tmp_path / "stack" / "notes.txt").write_text("not an image")
    files = list_images(tmp_path / "stack")
    assert [f.name for f in files] == ["a.png", "b.png", "c.png"]
    volume = read_volume(tmp_path / "stack")
    np.testing.assert_array_equal(volume, np.stack([slices[1], slices[0], slices[2]]))
    np.testing.assert_array_equal(read_volume(files[0]), slices[1])
    _png(tmp_path / "odd" / "a.png", slices[0])
    _png(tmp_path / "odd" / "b.png", slices[0][:, :5])
    with pytest.raises(InputError, match=r"b.png has shape \(10, 5\); expected \(10, 12\)"):
        read_volume(tmp_path / "odd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        read_volume(tmp_path / "empty")
    with pytest.raises(InputError, match="no images to read"):
        read_stack([])


# --- datasets ------------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A dataset directory of the data contract: RGB images, 0/255 labels, masks."""
    root = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    for split, stems in (("train", ["s1", "s2", "s3"]), ("test", ["t1"])):
        for stem in stems:
            _png(
                root / split / "images" / f"{stem}.png",
                rng.integers(0, 256, (24, 32, 3), np.uint8),
            )
            labels = (rng.random((24, 32)) < 0.3).astype(np.uint8) * 255
            _png(root / split / "labels" / f"{stem}.png", labels)
    for stem in ["s1", "s2", "s3"]:
        mask = np.zeros((24, 32), np.uint8)
        mask[2:22, 2:30] = 255
        _png(root / "train" / "masks" / f"{stem}.png", mask)
    (root / "README.md").write_text("generated for a test")
    return root


def test_load_dataset(dataset: Path) -> None:
    assert is_dataset(dataset)
    assert not is_dataset(dataset / "train")
    train = load_dataset(dataset, "train")
    assert train.name == "tiny train"
    assert train.images.shape == (3, 24, 32, 3)
    expected = read_image(dataset / "train" / "labels" / "s2.png") == 255
    np.testing.assert_array_equal(train.labels[1], expected)
    assert set(np.unique(train.labels)) == {0, 1}
    assert train.masks.dtype == bool
    assert train.masks[:, 2:22, 2:30].all()
    assert not train.masks[:, 0].any()
    test = load_dataset(dataset, "test", name="held out")
    assert test.name == "held out"
    assert len(test) == 1
    assert test.masks is None


def test_hidden_files_are_not_slices(dataset: Path) -> None:
    """macOS's ``._NAME.png`` AppleDouble files (not images) and other hidden files."""
    for kind in ("images", "labels", "masks"):
        (dataset / "train" / kind / "._s1.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    _png(dataset / "train" / "images" / ".preview.png", np.zeros((4, 4), np.uint8))
    assert len(load_dataset(dataset, "train")) == 3


def test_two_files_of_one_slice_are_refused(dataset: Path) -> None:
    _png(dataset / "train" / "images" / "s2.tif", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(InputError, match=r"holds s2\.png and s2\.tif, two files for one slice"):
        load_dataset(dataset, "train")
    with pytest.raises(InputError, match="two files for one slice"):
        read_volume(dataset / "train" / "images")


def test_load_dataset_without_labels(dataset: Path) -> None:
    for stem in ["s1", "s2", "s3"]:
        (dataset / "train" / "labels" / f"{stem}.png").unlink()
    (dataset / "train" / "labels").rmdir()
    assert load_dataset(dataset, "train", labels=False).labels is None
    with pytest.raises(InputError, match="has no train/labels folder; expected labels"):
        load_dataset(dataset, "train")


def test_load_dataset_missing_split(dataset: Path) -> None:
    with pytest.raises(InputError, match="tiny has no val/images folder; expected a dataset"):
        load_dataset(dataset, "val")


def test_load_dataset_missing_label_file(dataset: Path) -> None:
    (dataset / "train" / "labels" / "s2.png").unlink()
    with pytest.raises(
        InputError, match=r"labels lacks files for s2\.png; expected one per image"
    ):
        load_dataset(dataset, "train")
    # without labels asked for, the images still load
    assert len(load_dataset(dataset, "train", labels=False)) == 3


def test_load_dataset_missing_mask_file(dataset: Path) -> None:
    (dataset / "train" / "masks" / "s3.png").unlink()
    with pytest.raises(InputError, match=r"masks lacks files for s3\.png"):
        load_dataset(dataset, "train")


def test_load_dataset_bad_labels(dataset: Path) -> None:
    _png(dataset / "test" / "labels" / "t1.png", np.full((24, 32), 7, np.uint8))
    with pytest.raises(InputError, match=r"tiny test labels contain the values \{7\}"):
        load_dataset(dataset, "test")


# --- pixel sizes ---------------------------------------------------------------------------


def test_read_volume_with_pixel_size_of_each_format(tmp_path) -> None:
    stack = em_stack()
    for path, expected in [
        (imagej_stack(tmp_path / "imagej.tif"), EM),
        (ome_tiff(tmp_path / "ome.tif"), EM.to("nm")),
        (hdf5_volume(tmp_path / "volume.h5"), EM),
    ]:
        data, size = read_volume_with_pixel_size(path)
        np.testing.assert_array_equal(data, stack)
        assert size == expected
    assert read_pixel_size(ome_zarr(tmp_path / "raw.zarr")) == EM.to("nm")


def test_images_without_a_pixel_size_give_none(tmp_path) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", em_stack())
    iio.imwrite(tmp_path / "slice.png", em_stack((16, 16), np.uint8))
    for name in ("plain.tif", "slice.png"):
        data, size = read_volume_with_pixel_size(tmp_path / name)
        assert size is None
        np.testing.assert_array_equal(data, read_volume(tmp_path / name))


def test_a_folder_of_slices_has_the_in_plane_size(tmp_path) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    for index, image in enumerate(em_stack()):
        imagej_stack(folder / f"s{index}.tif", image)
    data, size = read_volume_with_pixel_size(folder)
    assert data.shape == (3, 64, 80)
    assert size == EM.fit(2)  # a file knows no slice spacing


def test_a_2d_image_gets_the_in_plane_size(tmp_path) -> None:
    _, size = read_volume_with_pixel_size(imagej_stack(tmp_path / "one.tif", em_stack()[0]))
    assert size == EM.fit(2)


def test_write_tiff_with_a_pixel_size_reads_back(tmp_path) -> None:
    for dtype in (np.uint8, np.float32, np.uint32):
        path = write_tiff(
            tmp_path / f"{np.dtype(dtype).name}.tif", em_stack(dtype=dtype), pixel_size=EM
        )
        assert read_pixel_size(path) == EM


def test_a_planar_rgb_tiff_is_colour_not_three_slices(tmp_path) -> None:
    """A (3, H, W) RGB TIFF stored plane by plane (photometric RGB, planar configuration
    separate) is one colour image; a grey (3, H, W) stack stays three slices."""
    rgb = np.random.default_rng(0).integers(0, 255, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "stack.tif", rgb, photometric="minisblack")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif"), np.moveaxis(rgb, 0, -1))
    np.testing.assert_array_equal(read_image(tmp_path / "stack.tif"), rgb)


class _OnDemand:
    """A stack read on demand that records what is read: slices, or the whole."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.chunks = (1, *data.shape[1:])
        self.reads: list[object] = []

    def __getitem__(self, key: object) -> np.ndarray:
        self.reads.append(key)
        return self.data[key]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        self.reads.append("whole")
        return self.data


def test_a_stack_read_on_demand_is_written_one_slice_at_a_time(tmp_path) -> None:
    data = em_stack((4, 40, 30), np.uint8)
    stack = _OnDemand(data)
    path = write_tiff(tmp_path / "lazy.tif", stack, pixel_size=EM)
    assert stack.reads == [0, 1, 2, 3]  # never read whole
    np.testing.assert_array_equal(tifffile.imread(path), data)
    assert read_pixel_size(path) == EM
