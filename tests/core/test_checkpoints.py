"""Tests for checkpoints: exact round trip, and refusal of unsafe, broken or mismatched files."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_domain_adapt.core.checkpoints import (
    SegmentationModel,
    load_checkpoint,
    save_checkpoint,
)
from napari_domain_adapt.core.config import ModelSpec, Preprocessing
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.options import with_values
from napari_domain_adapt.core.pixel_size import PixelSize
from napari_domain_adapt.core.resampling import resample_stack, restore_plane


class _Payload:
    """Pickles to a call of ``os.system``: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_round_trip_reproduces_predictions_exactly(trained_model, sample_pair, tmp_path) -> None:
    model = trained_model("group")
    path = save_checkpoint(model, tmp_path / "model.pt")
    assert path == tmp_path / "model.pt"
    loaded = load_checkpoint(path)
    assert loaded.spec == model.spec == ModelSpec(depth=2, width=4, norm="group")
    assert loaded.preprocessing == model.preprocessing
    assert loaded.config == model.config
    assert loaded.metadata == model.metadata
    assert loaded.metadata["steps"] == loaded.metadata["selected_step"] == 60
    assert loaded.device == torch.device("cpu")
    before = model.predict(sample_pair.target_image)
    after = loaded.predict(sample_pair.target_image)
    assert before.shape == (4, 96, 96)
    assert before.max() - before.min() > 0.5
    np.testing.assert_array_equal(after, before)


def test_round_trip_keeps_preprocessing_and_batchnorm_statistics(trained_model, tmp_path) -> None:
    model = trained_model("batch")
    model = SegmentationModel(
        model.network, Preprocessing(channel="green", percentiles=(2, 98), clahe=True)
    )
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m.pt"))
    assert loaded.preprocessing == model.preprocessing
    assert loaded.config is None
    for name, value in model.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[name], value), name
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert loaded.predict(rgb).shape == (40, 50)
    np.testing.assert_array_equal(loaded.predict(rgb), model.predict(rgb))


def test_predict_shapes_and_masks() -> None:
    torch.manual_seed(0)
    model = SegmentationModel.create(ModelSpec(depth=2, width=4))
    image = np.random.default_rng(0).integers(0, 256, (3, 30, 40), dtype=np.uint8)
    assert model.predict(image).shape == (3, 30, 40)
    assert model.predict(image[0]).shape == (30, 40)
    mask = np.zeros((30, 40), np.uint8)
    mask[5:25, 5:35] = 255
    masked = model.predict(image[0], masks=mask)
    assert not np.allclose(masked, model.predict(image[0]))
    with pytest.raises(InputError, match="constant"):
        model.predict(np.zeros((10, 10)))


def test_save_refuses_existing_file(trained_model, tmp_path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(InputError, match="exists"):
        save_checkpoint(trained_model("group"), path)
    assert path.read_bytes() == b"old"
    save_checkpoint(trained_model("group"), path, overwrite=True)
    assert load_checkpoint(path).spec.depth == 2


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickled_code_is_refused_and_never_run(tmp_path, writer: str) -> None:
    marker = tmp_path / "pwned"
    # the payload is live: an ordinary unpickler runs it
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists()

    path = tmp_path / "evil.pt"
    checkpoint = {"format": "napari-domain-adapt/checkpoint", "version": 1, "x": _Payload(marker)}
    if writer == "torch":
        torch.save(checkpoint, path)
    else:
        path.write_bytes(pickle.dumps(checkpoint))
    with pytest.raises(InputError, match="holds more than weights and plain values"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint(trained_model, tmp_path) -> None:
    data = save_checkpoint(trained_model("group"), tmp_path / "model.pt").read_bytes()
    for name, content in [("half.pt", data[: len(data) // 2]), ("empty.pt", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError, match=f"cannot read checkpoint .*{name}: it is truncated"):
            load_checkpoint(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(InputError, match="cannot read checkpoint"):
        load_checkpoint(garbage)


def test_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def _resaved(original: SegmentationModel, path: Path, **changes) -> Path:
    checkpoint = original.to_checkpoint()
    checkpoint.update(changes)
    torch.save(checkpoint, path)
    return path


def test_other_architecture_is_refused(trained_model, tmp_path) -> None:
    model = trained_model("group")
    spec = {"depth": 3, "width": 4, "norm": "group"}
    with pytest.raises(InputError, match="does not fit the model it describes"):
        load_checkpoint(_resaved(model, tmp_path / "deeper.pt", model=spec))
    wider = {"depth": 2, "width": 8, "norm": "group"}
    with pytest.raises(InputError, match="size mismatch"):
        load_checkpoint(_resaved(model, tmp_path / "wider.pt", model=wider))
    state = dict(model.to_checkpoint()["state_dict"])
    state.pop(next(iter(state)))
    with pytest.raises(InputError, match="Missing key"):
        load_checkpoint(_resaved(model, tmp_path / "missing.pt", state_dict=state))


def test_not_a_checkpoint_or_other_version(trained_model, tmp_path) -> None:
    model = trained_model("group")
    plain = tmp_path / "weights.pt"
    torch.save(model.network.state_dict(), plain)  # weights alone, no description
    with pytest.raises(InputError, match="not a napari-domain-adapt checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(InputError, match="checkpoint version 3 is not supported"):
        load_checkpoint(_resaved(model, tmp_path / "v3.pt", version=3))
    with pytest.raises(InputError, match="does not fit"):
        load_checkpoint(_resaved(model, tmp_path / "bad.pt", model={"depth": 9}))
    config = {**model.config.to_dict(), "steps": 0}
    with pytest.raises(InputError, match="steps must be at least 1"):
        load_checkpoint(_resaved(model, tmp_path / "config.pt", config=config))


def test_predict_is_background_outside_the_field_of_view(trained_model) -> None:
    model = trained_model("batch")
    model = SegmentationModel(
        model.network, dataclasses.replace(model.preprocessing, field_of_view=True)
    )
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 24**2
    image = np.where(disc, 150, 5).astype(np.uint8)
    image[20:44:4, 20:44] = 60  # some texture inside the disc
    estimated = model.predict(image)
    assert (estimated[~disc] == 0).all()
    given = np.ones((64, 64), bool)
    given[:, :8] = False
    with_mask = model.predict(image, given)  # a given mask wins over the estimate
    assert (with_mask[:, :8] == 0).all()
    assert with_mask[~disc & given].any()


def test_the_pixel_size_survives_a_checkpoint(trained_model, tmp_path) -> None:
    size = PixelSize((50, 4, 4), "nm").to_dict()
    model = trained_model("group")
    model = dataclasses.replace(model, metadata={**model.metadata, "pixel_size": size})
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "model.pt"))
    assert PixelSize.from_dict(loaded.metadata["pixel_size"]) == PixelSize((50, 4, 4), "nm")


def _at(model, size: PixelSize | None):
    """A copy of ``model`` whose working pixel size is ``size``."""
    metadata = {**model.metadata, "pixel_size": None if size is None else size.to_dict()}
    return dataclasses.replace(model, metadata=metadata)


def test_an_image_at_another_scale_is_predicted_at_the_models(trained_model, sample_pair):
    """A model trained at 4 nm predicts an 8 nm image zoomed by 2, and the probabilities
    come back on the image's grid."""
    model = _at(trained_model(), PixelSize((4.0, 4.0), "nm"))
    image = sample_pair.target_image[:2]
    coarse = PixelSize((0.008, 0.008), "µm")
    assert model.zoom_for(coarse) == pytest.approx(2.0)
    result = model.predict(image, pixel_size=coarse)
    assert result.shape == image.shape
    zoomed = resample_stack(image, 2.0, order=1)
    expected = np.stack([restore_plane(p, image.shape[1:]) for p in model.predict(zoomed)])
    np.testing.assert_allclose(result, expected, atol=1e-6)
    assert not np.allclose(result, model.predict(image), atol=1e-2)  # the zoom matters


@pytest.mark.parametrize(
    ("working", "given"),
    [
        (None, PixelSize((8.0, 8.0), "nm")),  # a model that knows no pixel size
        (PixelSize((4.0, 4.0), "nm"), None),  # an image of unknown pixel size
        (PixelSize((4.0, 4.0), "nm"), PixelSize((4.1, 4.1), "nm")),  # within 5 %
    ],
)
def test_without_two_pixel_sizes_nothing_changes(trained_model, sample_pair, working, given):
    model = _at(trained_model(), working)
    image = sample_pair.target_image[:2]
    assert model.zoom_for(given) is None
    np.testing.assert_array_equal(model.predict(image, pixel_size=given), model.predict(image))


def test_a_model_trained_without_matching_pixel_sizes_never_resamples(trained_model):
    model = _at(trained_model(), PixelSize((4.0, 4.0), "nm"))
    config = with_values(model.config, {"alignment.pixel_size": False})
    model = dataclasses.replace(model, config=config)
    assert model.zoom_for(PixelSize((8.0, 8.0), "nm")) is None


def test_a_model_without_a_reference_is_written_and_read_as_before(
    trained_model, sample_pair, tmp_path
) -> None:
    model = trained_model("group")
    assert model.intensity_reference is None
    checkpoint = model.to_checkpoint()
    assert checkpoint["version"] == 1  # what releases before histogram matching read
    assert "intensity_reference" not in checkpoint
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "old.pt"))
    assert loaded.intensity_reference is None
    image = sample_pair.target_image
    np.testing.assert_array_equal(loaded.predict(image), model.predict(image))


def test_the_intensity_reference_survives_a_checkpoint_and_changes_predictions(
    trained_model, sample_pair, tmp_path
) -> None:
    model = trained_model("group")
    reference = np.linspace(-0.2, 1.3, 256, dtype=np.float32) ** 3
    matching = dataclasses.replace(model, intensity_reference=reference)
    checkpoint = matching.to_checkpoint()
    assert checkpoint["version"] == 2  # older releases refuse it rather than predict unmatched
    loaded = load_checkpoint(save_checkpoint(matching, tmp_path / "matching.pt"))
    np.testing.assert_array_equal(loaded.intensity_reference, reference)
    image = sample_pair.target_image[0]
    np.testing.assert_array_equal(loaded.predict(image), matching.predict(image))
    assert not np.allclose(loaded.predict(image), model.predict(image), atol=1e-3)


@pytest.mark.parametrize(
    "reference", [[0.5], [[0.0, 1.0]], [1.0, 0.0, 2.0], [0.0, float("nan")], "abc"]
)
def test_a_bad_intensity_reference_is_refused(trained_model, tmp_path, reference) -> None:
    model = trained_model("group")
    path = _resaved(model, tmp_path / "bad.pt", version=2, intensity_reference=reference)
    with pytest.raises(InputError, match=r"intensity reference|does not fit"):
        load_checkpoint(path)
