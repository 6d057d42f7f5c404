"""The widget's files: the suggested mask path, a mask layer written, a model read on a
device, and the questions before a bioimage.io export."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from napari.layers import Labels

from _pixel_files import tiff_pixel_size_of
from napari_domain_adapt.core import (
    DEFAULT_AUTHOR,
    DEFAULT_LICENSE,
    DEFAULT_NAME,
    ModelSpec,
    SegmentationModel,
    save_checkpoint,
)
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.gui.model_files import (
    PACKAGE_FILTER,
    ask_package,
    mask_source,
    read_model,
    suggested_export,
)
from napari_domain_adapt.gui.writer import write_mask


def from_file(path: str | None) -> SimpleNamespace:
    """A stand-in layer: napari's ``layer.source.path`` is None for a layer not read."""
    return SimpleNamespace(source=SimpleNamespace(path=path))


def test_the_mask_is_suggested_beside_the_first_layer_read_from_a_file(tmp_path) -> None:
    target = str(tmp_path / "volumes" / "target.tif")
    sources = (None, from_file(None), from_file(target), from_file("/elsewhere/x.tif"))
    assert suggested_export("target segmentation", sources) == (
        tmp_path / "volumes" / "target segmentation.tif"
    )


def test_without_a_file_the_mask_is_suggested_by_name_only() -> None:
    assert suggested_export("mask", (None, from_file(None))) == Path("mask.tif")
    assert suggested_export("mask", ()) == Path("mask.tif")


def test_a_mask_layer_is_written_as_0_and_the_foreground_at_its_pixel_size(tmp_path) -> None:
    data = np.zeros((2, 8, 8), np.int32)
    data[1, 2:5, 3:6] = 4
    layer = Labels(data, scale=(50, 4, 4), units="nm", name="mask")
    labels, scale, units = mask_source(layer)
    path = write_mask(tmp_path / "mask.tif", labels, scale, 255, units=units)
    written = tifffile.imread(path)
    np.testing.assert_array_equal(written, np.where(data > 0, 255, 0))
    assert tiff_pixel_size_of(path) == PixelSize((50, 4, 4), "nm")
    with pytest.raises(ValueError, match="exists"):
        write_mask(path, labels, scale, 1, units=units)
    np.testing.assert_array_equal(tifffile.imread(path), written)  # not replaced
    write_mask(path, labels, scale, 1, overwrite=True, units=units)
    np.testing.assert_array_equal(tifffile.imread(path), (data > 0).astype(np.uint8))


def test_a_model_is_read_on_the_device_asked(tmp_path) -> None:
    model = SegmentationModel.create(ModelSpec(depth=2, width=4))
    model.metadata["mode"] = "source-only"
    path = save_checkpoint(model, tmp_path / "model.pt")
    loaded = read_model(path, "cpu")
    assert loaded.device.type == "cpu"
    assert loaded.metadata["mode"] == "source-only"
    with pytest.raises(ValueError, match="device"):
        read_model(path, "no-such-device")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        read_model(tmp_path / "bad.pt", "cpu")


class Answers:
    """Dialogs that answer as told and record what was asked."""

    def __init__(self, details: dict[str, str] | None, chosen: tuple[Path, bool] | None) -> None:
        self.details, self.chosen, self.asked = details, chosen, []

    def package_details(self, name: str, author: str, license: str) -> dict[str, str] | None:
        self.asked.append(("details", name, author, license))
        return self.details

    def path_to_write(self, path, caption, file_filter, suggested=None):
        self.asked.append(("path", path, file_filter))
        return self.chosen


def test_the_package_questions_give_the_path_and_the_export_options(tmp_path) -> None:
    details = {"name": "Membranes", "author": "A. Person", "license": "MIT"}
    dialogs = Answers(details, (tmp_path / "model.zip", True))
    path, options = ask_package(dialogs, None)
    assert path == tmp_path / "model.zip"
    assert options == {
        "name": "Membranes",
        "authors": ["A. Person"],
        "license": "MIT",
        "overwrite": True,
    }
    assert dialogs.asked[0] == ("details", DEFAULT_NAME, DEFAULT_AUTHOR, DEFAULT_LICENSE)
    assert dialogs.asked[1] == ("path", None, PACKAGE_FILTER)


def test_cancelling_either_question_exports_nothing(tmp_path) -> None:
    cancelled_details = Answers(None, (tmp_path / "model.zip", False))
    assert ask_package(cancelled_details, None) is None
    assert [question[0] for question in cancelled_details.asked] == ["details"]
    details = {"name": "n", "author": "a", "license": "MIT"}
    assert ask_package(Answers(details, None), tmp_path / "model.zip") is None
