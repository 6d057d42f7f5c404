"""bioimage.io packages: offline validation by bioimageio's own tests, the same predictions in
bioimageio.core as here, exact import, foreign packages, and refusals."""

from __future__ import annotations

import hashlib
import socket
import sys
import zipfile
from pathlib import Path

import bioimageio.core as bioimageio_core
import numpy as np
import pytest
import torch
import yaml

from napari_domain_adapt.core import (
    Domain,
    ModelSpec,
    Preprocessing,
    SegmentationModel,
    TrainConfig,
    fit,
)
from napari_domain_adapt.core.bioimageio import (
    export_bioimageio,
    input_sizes,
    load_bioimageio,
    load_model,
)
from napari_domain_adapt.core.checkpoints import save_checkpoint
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.preprocessing import normalise_slice

CONTENTS = {
    "rdf.yaml",
    "README.md",
    "cover.png",
    "environment.yaml",
    "weights.pt",
    "weights_torchscript.pt",
    "test_input.npy",
    "test_output.npy",
    "sample_input.tif",
    "sample_output.tif",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach a host fails the test: validation must not download anything."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def model(trained_model) -> SegmentationModel:
    return trained_model("channel")


@pytest.fixture(scope="module")
def package(model, sample_pair, tmp_path_factory) -> Path:
    """The trained model exported with a crop of a target image (96 px) as test data."""
    path = tmp_path_factory.mktemp("export") / "model.zip"
    export_bioimageio(
        model, sample_pair.target_image[0], path, authors=["Ada Lovelace", "Alan Turing"]
    )
    return path


def _npy(package: Path, name: str) -> np.ndarray:
    with zipfile.ZipFile(package) as archive, archive.open(name) as file:
        return np.load(file)


def _rdf(package: Path) -> dict:
    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


def _rewrite(package: Path, folder: Path, change) -> Path:
    """Unpack ``package`` into ``folder`` with ``change(rdf)`` applied; return its rdf.yaml."""
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    change(rdf)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return folder / "rdf.yaml"


def test_package_contents_and_description(package, model) -> None:
    with zipfile.ZipFile(package) as archive:
        assert set(archive.namelist()) == CONTENTS
        readme = archive.read("README.md").decode()
    rdf = _rdf(package)
    assert rdf["format_version"].startswith("0.5.")
    assert rdf["license"] == "CC-BY-4.0"
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Alan Turing"]
    assert {c["doi"] for c in rdf["cite"]} == {
        "10.1109/ISBI.2018.8363602",
        "10.1007/978-3-319-24574-4_28",
    }
    (tensor,) = rdf["inputs"]
    low, step = input_sizes(model.spec)
    assert tensor["axes"][2]["size"] == {"min": low, "step": step}
    steps = [(p["id"], p.get("kwargs")) for p in tensor["preprocessing"]]
    assert [step for step, _ in steps] == ["ensure_dtype", "scale_range", "clip", "ensure_dtype"]
    scale = steps[1][1]
    assert (scale["axes"], scale["min_percentile"], scale["max_percentile"]) == (
        ["y", "x"],
        1.0,
        99.0,
    )
    assert float(scale["eps"]) == 1e-6  # PyYAML reads YAML 1.2's 1e-06 as a string
    assert steps[2][1] == {"min": -1.0, "max": 2.0}
    assert rdf["outputs"][0]["postprocessing"][0] == {"id": "sigmoid"}
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert architecture["import_from"] == "napari_domain_adapt.core.models"
    assert architecture["kwargs"] == {"depth": 2, "width": 4, "norm": "channel"}
    ours = rdf["config"]["napari_domain_adapt"]
    assert ours["config"]["mode"] == "source-only"
    assert "## Validation" in readme


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_bioimageio_validation_passes_offline(package) -> None:
    summary = bioimageio_core.test_model(package)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.errors]
    assert summary.status == "passed", failed
    names = " ".join(d.name for d in summary.details)
    for weights in ("pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({weights})" in names


@pytest.mark.parametrize("weights", ["torchscript", "pytorch_state_dict"])
def test_bioimageio_core_reproduces_our_prediction(package, model, sample_pair, weights) -> None:
    descr = bioimageio_core.load_model_description(package)
    pipeline = bioimageio_core.create_prediction_pipeline(descr, weight_format=weights)
    image = sample_pair.target_image[1].astype(np.float32)
    # The test crop (96x96) and a non-square shape the trace never saw (step multiples).
    for crop in (image, image[8:76, 4:92]):
        ours = model.predict(crop, tile_size=max(crop.shape), overlap=0)
        sample = bioimageio_core.predict(model=pipeline, inputs=crop[None, None])
        theirs = sample.members["probability"].data.values[0, 0]
        assert theirs.shape == crop.shape
        np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)
    test_input, test_output = _npy(package, "test_input.npy"), _npy(package, "test_output.npy")
    np.testing.assert_allclose(
        model.predict(test_input[0, 0], tile_size=96, overlap=0), test_output[0, 0], atol=1e-6
    )


def test_scale_range_and_clip_match_our_normalisation(package) -> None:
    """bioimage.io's scale_range + clip against normalise_slice, with outliers beyond the clip."""
    descr = bioimageio_core.load_model_description(package)
    pipeline = bioimageio_core.create_prediction_pipeline(descr, weight_format="torchscript")
    rng = np.random.default_rng(3)
    image = rng.gamma(2.0, 300.0, (64, 72)).astype(np.float32)
    image[:3, :3] = 1e5  # far above the 99th percentile: clipped at 2
    image[-3:, -3:] = -1e4  # far below the 1st: clipped at -1
    sample = bioimageio_core.Sample(
        members={
            "image": bioimageio_core.Tensor(image[None, None], dims=("batch", "channel", "y", "x"))
        },
        stat={},
        id="s",
    )
    pipeline.apply_preprocessing(sample)
    theirs = sample.members["image"].data.values[0, 0]
    ours = normalise_slice(image, Preprocessing())
    assert (ours.min(), ours.max()) == (-1.0, 2.0)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_import_reproduces_the_model_and_trains_from_it(package, model, sample_pair) -> None:
    loaded = load_model(package)
    assert loaded.spec == model.spec
    assert loaded.preprocessing == model.preprocessing
    assert loaded.config == model.config
    assert loaded.metadata["bioimageio"]["name"] == "napari-domain-adapt U-Net"
    assert loaded.metadata["runs"] == model.metadata["runs"]  # the model's history travels
    for name, value in model.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[name], value), name
    np.testing.assert_array_equal(
        loaded.predict(sample_pair.target_image), model.predict(sample_pair.target_image)
    )
    config = TrainConfig(
        mode="source-only",
        steps=2,
        batch_size=2,
        patch_size=32,
        model=loaded.spec,
        preview_interval=None,
        device="cpu",
    )
    result = fit(
        config, Domain(sample_pair.source_image, sample_pair.source_labels), initial=loaded
    )
    assert result.model.predict(sample_pair.target_image[0]).shape == (96, 96)


def test_import_of_a_foreign_package_with_our_unet(package, tmp_path) -> None:
    """No napari-domain-adapt section: preprocessing comes from the rdf's scale_range."""

    def foreign(rdf: dict) -> None:
        del rdf["config"]["napari_domain_adapt"]
        rdf["inputs"][0]["preprocessing"] = [
            {
                "id": "scale_range",
                "kwargs": {"axes": ["y", "x"], "min_percentile": 2.0, "max_percentile": 98.0},
            },
        ]

    loaded = load_bioimageio(_rewrite(package, tmp_path, foreign))
    assert loaded.preprocessing == Preprocessing(percentiles=(2.0, 98.0))
    assert loaded.config is None
    assert loaded.spec == ModelSpec(depth=2, width=4, norm="channel")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda rdf: rdf["weights"]["pytorch_state_dict"]["architecture"].update(
                callable="ResUNet", import_from="somebody.models"
            ),
            "somebody.models.ResUNet is not one napari-domain-adapt can rebuild",
        ),
        (
            lambda rdf: rdf["inputs"][0].update(
                preprocessing=[{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}]
            ),
            "preprocessing zero_mean_unit_variance is not ours",
        ),
        (
            lambda rdf: rdf["outputs"][0].update(postprocessing=[]),
            "expected sigmoid alone",
        ),
    ],
)
def test_import_refuses_what_it_cannot_reproduce(package, tmp_path, change, message) -> None:
    with pytest.raises(InputError, match=message):
        load_bioimageio(_rewrite(package, tmp_path, change))


@pytest.mark.parametrize("where", ["https://example.org/weights.pt", "absolute", "../w.pt"])
def test_import_uses_only_the_files_in_the_package(package, tmp_path, where) -> None:
    elsewhere = tmp_path / "elsewhere" / "weights.pt"
    elsewhere.parent.mkdir()
    with zipfile.ZipFile(package) as archive:
        elsewhere.write_bytes(archive.read("weights.pt"))
    source = str(elsewhere) if where == "absolute" else where

    def outside(rdf: dict) -> None:
        rdf["weights"]["pytorch_state_dict"]["source"] = source

    rdf = _rewrite(package, tmp_path / "package", outside)
    with pytest.raises(InputError, match="a package is used only with the files it contains"):
        load_bioimageio(rdf)


def test_import_refuses_weights_carrying_code(package, tmp_path) -> None:
    rdf = _rewrite(package, tmp_path, lambda rdf: None)
    marker = tmp_path / "ran"
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    state["extra"] = _Code(marker)
    torch.save(state, tmp_path / "weights.pt")
    content = yaml.safe_load(rdf.read_text())  # its checksum, so only the code is wrong
    digest = hashlib.sha256((tmp_path / "weights.pt").read_bytes()).hexdigest()
    content["weights"]["pytorch_state_dict"]["sha256"] = digest
    rdf.write_text(yaml.safe_dump(content))
    with pytest.raises(InputError, match="holds code, not only weights, and is refused") as info:
        load_bioimageio(rdf)
    assert "weights_only" not in str(info.value)  # torch's advice to load it unsafely
    assert not marker.exists()


class _Code:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("field", ["preprocessing", "metadata"])
def test_import_refuses_malformed_fields_of_ours(package, tmp_path, field) -> None:
    def malformed(rdf: dict) -> None:
        rdf["config"]["napari_domain_adapt"][field] = ["a", "list"]

    with pytest.raises(InputError, match=f"napari_domain_adapt.{field} is a list"):
        load_bioimageio(_rewrite(package, tmp_path, malformed))


def test_import_refuses_a_broken_file(tmp_path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"cannot read bioimage\.io package"):
        load_model(broken)
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing.zip")


def test_export_of_rgb_uses_the_models_grey_conversion(tmp_path) -> None:
    torch.manual_seed(0)
    model = SegmentationModel.create(ModelSpec(depth=2, width=4), Preprocessing(channel="green"))
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    path = export_bioimageio(model, rgb, tmp_path / "rgb.zip", test_size=40)
    test_input = _npy(path, "test_input.npy")
    assert test_input.shape == (1, 1, 40, 40)  # square, a multiple of 4, centred
    np.testing.assert_array_equal(test_input[0, 0], rgb[5:45, 15:55, 1])


def test_export_refuses_without_writing(model, sample_pair, tmp_path) -> None:
    image = sample_pair.target_image[0]
    clahe = SegmentationModel(model.network, Preprocessing(clahe=True))
    with pytest.raises(InputError, match="CLAHE"):
        export_bioimageio(clahe, image, tmp_path / "a.zip")
    fundus = SegmentationModel(model.network, Preprocessing(field_of_view=True))
    with pytest.raises(InputError, match="field of view"):
        export_bioimageio(fundus, image, tmp_path / "a.zip")
    matching = SegmentationModel(
        model.network, intensity_reference=np.linspace(0, 1, 16, dtype=np.float32)
    )
    with pytest.raises(InputError, match="histogram"):
        export_bioimageio(matching, image, tmp_path / "a.zip")
    with pytest.raises(InputError, match="at least 8x8"):
        export_bioimageio(model, image[:6, :40], tmp_path / "a.zip")
    with pytest.raises(InputError, match="SPDX"):
        export_bioimageio(model, image, tmp_path / "a.zip", license="my own")
    with pytest.raises(InputError, match="name"):
        export_bioimageio(model, image, tmp_path / "a.zip", name="a/b")
    assert not list(tmp_path.iterdir())
    existing = tmp_path / "a.zip"
    existing.write_bytes(b"old")
    with pytest.raises(InputError, match="exists"):
        export_bioimageio(model, image, existing)
    assert existing.read_bytes() == b"old"


def test_without_bioimageio_the_error_says_what_to_install(model, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)
    with pytest.raises(InputError, match=r"napari-domain-adapt\[bioimageio\]"):
        export_bioimageio(model, np.eye(64), tmp_path / "m.zip")
    with pytest.raises(InputError, match=r"napari-domain-adapt\[bioimageio\]"):
        load_bioimageio(tmp_path / "m.zip")


def test_load_model_reads_checkpoints_too(model, tmp_path) -> None:
    loaded = load_model(save_checkpoint(model, tmp_path / "m.pt"))
    assert loaded.spec == model.spec


# --- the pixel size the model was trained at, on the y and x axes -------------------------


@pytest.fixture(scope="module")
def sized_package(model, sample_pair, tmp_path_factory) -> Path:
    """The trained model, recorded as trained on 50 x 4 x 4 nm voxels, exported."""
    sized = SegmentationModel(
        model.network,
        model.preprocessing,
        model.config,
        {**model.metadata, "pixel_size": {"sizes": [50.0, 4.0, 4.0], "unit": "nm"}},
    )
    path = tmp_path_factory.mktemp("sized") / "model.zip"
    return export_bioimageio(sized, sample_pair.target_image[0], path)


def _space_axes(tensor: dict) -> list[tuple]:
    return [(a["id"], a.get("scale"), a.get("unit")) for a in tensor["axes"] if "id" in a]


def test_the_trained_pixel_size_is_the_scale_and_unit_of_y_and_x(sized_package, package) -> None:
    rdf = _rdf(sized_package)
    expected = [("y", 4.0, "nanometer"), ("x", 4.0, "nanometer")]
    assert [a for a in _space_axes(rdf["inputs"][0]) if a[0] in "yx"] == expected
    assert [a for a in _space_axes(rdf["outputs"][0]) if a[0] in "yx"] == expected
    with zipfile.ZipFile(sized_package) as archive:
        assert "Trained on images of 4 x 4 nm pixels" in archive.read("README.md").decode()
    # a model without a recorded pixel size keeps the spec's defaults (1, no unit: unknown)
    unsized = _rdf(package)
    assert all(a[1] in (None, 1.0) and a[2] is None for a in _space_axes(unsized["inputs"][0]))
    with zipfile.ZipFile(package) as archive:
        assert (
            "pixel size of the training images is not recorded"
            in archive.read("README.md").decode()
        )


@pytest.mark.slow  # a whole run end to end: `pytest -m slow`
def test_a_package_with_a_pixel_size_passes_bioimageio_validation(sized_package) -> None:
    """bioimageio.spec reads the axes (the output's size follows the input's through the
    scales), and bioimageio.core reproduces the test output."""
    from bioimageio.spec import load_model_description
    from bioimageio.spec.model import v0_5

    descr = load_model_description(sized_package, perform_io_checks=False)
    assert isinstance(descr, v0_5.ModelDescr)
    axes = {str(a.id): a for a in descr.inputs[0].axes if a.type == "space"}
    assert (axes["x"].scale, axes["x"].unit) == (4.0, "nanometer")
    summary = bioimageio_core.test_model(sized_package)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.errors]
    assert summary.status == "passed", failed


def test_import_keeps_the_pixel_size(sized_package, tmp_path) -> None:
    assert load_bioimageio(sized_package).metadata["pixel_size"] == {
        "sizes": [50.0, 4.0, 4.0],
        "unit": "nm",
    }

    def foreign(rdf: dict) -> None:  # another tool's package: only the axes say it
        del rdf["config"]["napari_domain_adapt"]

    loaded = load_bioimageio(_rewrite(sized_package, tmp_path, foreign))
    assert loaded.metadata["pixel_size"] == {"sizes": [4.0, 4.0], "unit": "nm"}


@pytest.mark.parametrize(
    ("recorded", "axes"),
    [
        ({"sizes": [0.004, 0.004], "unit": "µm"}, (0.004, "micrometer")),
        ({"sizes": [40.0, 4.0, 4.0], "unit": None}, (4.0, None)),  # HDF5 resolution, no unit
        ({"sizes": [0, 4.0]}, (None, None)),  # not a pixel size: nothing written
        ("4 nm", (None, None)),
    ],
)
def test_axis_sizes_of_recorded_pixel_sizes(recorded, axes) -> None:
    from bioimageio.spec.model import v0_5

    from napari_domain_adapt.core.bioimageio import _axis_sizes

    torch.manual_seed(0)
    model = SegmentationModel.create(ModelSpec(depth=2, width=4))
    model.metadata["pixel_size"] = recorded
    sizes = _axis_sizes(model, v0_5)
    if axes == (None, None):
        assert sizes == [{}, {}]
    else:
        assert sizes == [{"scale": axes[0], "unit": axes[1]}] * 2
        v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=16, **sizes[1])  # valid in the spec
