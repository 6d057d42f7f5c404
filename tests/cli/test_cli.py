"""The command line on the generated sample datasets: outputs, JSON, and bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
import zarr

from _pixel_files import EM, em_stack, hdf5_volume, imagej_stack, ome_tiff, tiff_pixel_size_of
from napari_domain_adapt.cli import EXIT_BAD_INPUT, main
from napari_domain_adapt.core import pipeline
from napari_domain_adapt.core.checkpoints import load_checkpoint
from napari_domain_adapt.core.errors import InputError
from napari_domain_adapt.core.io import read_volume, run_lock
from napari_domain_adapt.core.pixel_size import PixelSize

TINY = ["--steps", "3", "--batch-size", "2", "--patch-size", "32", "--depth", "2", "--width", "4"]
TINY += ["--device", "cpu"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    assert main(["sample", str(root), "--size", "64"]) == 0
    return root


@pytest.fixture(scope="module")
def checkpoint(datasets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "model.pt"
    assert main(["train", "--source", str(datasets / "source"), "--out", str(out), *TINY]) == 0
    return out


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_sample_writes_dataset_directories(datasets):
    for name in ("source", "target"):
        for split in ("train", "test"):
            images = sorted((datasets / name / split / "images").iterdir())
            labels = sorted((datasets / name / split / "labels").iterdir())
            assert images
            assert [p.name for p in images] == [p.name for p in labels]
    label = tifffile.imread(next((datasets / "target" / "test" / "labels").iterdir()))
    assert set(np.unique(label)) == {0, 255}


def test_sample_refuses_a_non_empty_folder(datasets, capsys):
    before = sorted(p.name for p in datasets.iterdir())
    assert main(["sample", str(datasets), "--size", "64"]) == EXIT_BAD_INPUT
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in datasets.iterdir()) == before


def test_train_scores_the_target_test_split(datasets, tmp_path, capsys):
    out, metrics = tmp_path / "m.pt", tmp_path / "m.json"
    args = ["train", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    assert main([*args, "--out", str(out), "--metrics", str(metrics), *TINY]) == 0
    printed = _json(capsys)
    assert printed["mode"] == "source-only"
    assert printed["steps"] == 3
    assert 0.0 <= printed["target_test"]["f1"] <= 1.0
    assert json.loads(metrics.read_text()) == printed
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], ("luminance", False, False)),
        (["--images", "fundus"], ("green", True, True)),
        (["--images", "fundus", "--channel", "mean"], ("mean", True, True)),
        (["--clahe", "--field-of-view"], ("luminance", True, True)),
    ],
)
def test_preprocessing_preset_and_flags(datasets, tmp_path, capsys, flags, expected):
    out = tmp_path / "m.pt"
    args = ["train", "--source", str(datasets / "source"), "--out", str(out), *TINY, *flags]
    assert main(args) == 0
    pre = _json(capsys)["config"]["preprocessing"]
    assert (pre["channel"], pre["clahe"], pre["field_of_view"]) == expected
    assert load_checkpoint(out).preprocessing.field_of_view == expected[2]


def test_adapt_checks_and_keeps_the_model_a_criterion_chose(datasets, tmp_path, capsys):
    args = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    args += ["--out", str(tmp_path / "m.pt"), *TINY, "--steps", "4", "--patch-size", "64"]
    assert main([*args, "--select-every", "2", "--select-by", "consistency"]) == 0
    printed = _json(capsys)
    assert [check["step"] for check in printed["checks"]] == [2, 4]
    best = max(reversed(printed["checks"]), key=lambda check: check["consistency"])
    assert printed["selected_step"] == best["step"]
    assert load_checkpoint(tmp_path / "m.pt").metadata["selected_step"] == best["step"]


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_adapt_keeps_the_default_mode_with_target_labels(datasets, tmp_path, capsys, kind):
    images = datasets / "target" / "train" / "images"
    truth = read_volume(str(datasets / "target" / "train" / "labels"))
    labels = np.zeros_like(truth)
    if kind == "dense":
        labels[0] = truth[0] > 0
    else:
        labels[0, 5, 2:12], labels[0, 20:25, 30] = 1, 2  # a background and a membrane stroke
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    args = ["adapt", "--source", str(datasets / "source"), "--target", str(images)]
    args += ["--target-labels", str(tmp_path / "labels.tif"), "--target-label-kind", kind]
    assert main([*args, "--out", str(tmp_path / "m.pt"), *TINY]) == 0
    assert _json(capsys)["mode"] == "mean-teacher"  # it learns from them
    assert main([*args, "--mode", "adversarial", "--out", str(tmp_path / "a.pt"), *TINY]) == 2
    assert "mode adversarial does not use them" in capsys.readouterr().err


def test_adapt_with_label_slices_runs_the_chosen_mode(datasets, tmp_path, capsys):
    args = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    args += ["--label-slices", "0", *TINY]
    assert main([*args, "--out", str(tmp_path / "m.pt")]) == 0
    assert _json(capsys)["mode"] == "mean-teacher"
    assert main([*args, "--mode", "semi-supervised", "--out", str(tmp_path / "s.pt")]) == 0
    assert _json(capsys)["mode"] == "semi-supervised"


def test_existing_output_is_kept_without_overwrite(datasets, tmp_path, capsys):
    out = tmp_path / "m.pt"
    out.write_bytes(b"precious")
    args = ["train", "--source", str(datasets / "source"), "--out", str(out), *TINY]
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert "--overwrite" in err
    assert err.count("\n") == 1
    assert out.read_bytes() == b"precious"
    assert main([*args, "--overwrite"]) == 0
    assert out.read_bytes() != b"precious"


def test_a_second_run_on_one_out_is_refused_at_the_start(datasets, tmp_path, capsys):
    out = tmp_path / "m.pt"
    argv = ["train", "--source", str(datasets / "source"), "--out", str(out), *TINY]
    with run_lock(out):  # a first run, still training
        assert main(argv) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert err.startswith(f"error: another run is writing {out}")
        assert err.count("\n") == 1
        assert os.listdir(tmp_path) == [".m.pt.lock"]  # the first run's: no state, no model
    assert main(argv) == 0  # once it has ended
    assert os.listdir(tmp_path) == ["m.pt"]


def test_an_error_during_training_is_on_a_line_of_its_own(datasets, tmp_path, capsys, monkeypatch):
    from napari_domain_adapt.cli import commands as _cli_commands

    def failing(*args, **kwargs):
        raise InputError("a chunk of the target is corrupt")
        yield

    monkeypatch.setattr(_cli_commands, "train_and_predict", failing)
    argv = ["train", "--source", str(datasets / "source"), "--out", str(tmp_path / "m.pt")]
    assert main([*argv, *TINY]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "step" in err  # the progress bar was shown ...
    lines = err.split("\n")  # a terminal's lines: "\r" returns to the start of one
    assert lines[-2:] == ["error: a chunk of the target is corrupt", ""]  # ... and ended


def test_an_error_during_a_zarr_prediction_is_on_a_line_of_its_own(checkpoint, tmp_path, capsys):
    import zarr

    volume = tmp_path / "v.zarr"
    array = zarr.create_array(store=str(volume), shape=(3, 64, 64), chunks=(1, 64, 64), dtype="u1")
    array[:] = np.arange(3 * 64 * 64).reshape(3, 64, 64) % 251
    last = sorted(p for p in volume.rglob("*") if p.is_file() and p.name != "zarr.json")[-1]
    last.write_bytes(last.read_bytes()[:5])
    argv = ["predict", "--model", str(checkpoint), "--input", str(volume), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "p.zarr")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "2/3 [" in err  # the progress bar was shown, two slices written ...
    lines = err.split("\n")  # a terminal's lines: "\r" returns to the start of one
    assert lines[-2].startswith("error: cannot read slices 2-2 of")  # ... and ended
    assert lines[-1] == ""


def test_labels_of_one_class_are_one_warning_line(datasets, tmp_path, capsys):
    image = datasets / "source" / "train" / "images" / "slice_000.tif"
    labels = tmp_path / "empty.tif"
    tifffile.imwrite(labels, np.zeros_like(tifffile.imread(image)))
    argv = ["train", "--source", str(image), "--source-labels", str(labels)]
    assert main([*argv, "--out", str(tmp_path / "m.pt"), *TINY]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "warning" in line.lower()]
    assert warned == [
        "warning: every labelled pixel of the source is background (4096 pixels); the model "
        "learns nothing of the other class: expected labels with both"
    ]


def test_predict_writes_probabilities_and_masks(datasets, checkpoint, tmp_path):
    images = datasets / "target" / "test" / "images"
    probabilities, mask = tmp_path / "p.tif", tmp_path / "m.tif"
    base = ["predict", "--model", str(checkpoint), "--input", str(images), "--device", "cpu"]
    assert main([*base, "--out", str(probabilities)]) == 0
    assert main([*base, "--out", str(mask), "--threshold", "0.5"]) == 0
    prob, binary = tifffile.imread(probabilities), tifffile.imread(mask)
    assert prob.dtype == np.float32
    assert prob.shape == (4, 64, 64)
    assert prob.min() >= 0.0
    assert prob.max() <= 1.0
    np.testing.assert_array_equal(binary, (prob >= 0.5) * 255)
    fast = tmp_path / "fast.tif"
    assert main([*base, "--out", str(fast), "--amp"]) == 0  # bfloat16 on the CPU
    np.testing.assert_allclose(tifffile.imread(fast), prob, rtol=0, atol=5e-2)
    assert not np.array_equal(tifffile.imread(fast), prob)


def test_evaluate_prints_metrics(datasets, checkpoint, capsys):
    target = str(datasets / "target")
    assert main(["evaluate", "--model", str(checkpoint), "--data", target, "--device", "cpu"]) == 0
    scores = _json(capsys)
    assert {"precision", "recall", "f1", "iou", "oracle_f1"} <= set(scores)
    assert scores["oracle_f1"] >= scores["f1"] - 1e-9


def _bad_label_dataset(root: Path, datasets: Path) -> Path:
    bad = root / "bad"
    for kind in ("images", "labels"):
        (bad / "train" / kind).mkdir(parents=True)
    image = tifffile.imread(next((datasets / "source" / "train" / "images").iterdir()))
    tifffile.imwrite(bad / "train" / "images" / "a.tif", image)
    labels = np.zeros_like(image)
    labels[:4] = 7
    tifffile.imwrite(bad / "train" / "labels" / "a.tif", labels)
    return bad


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, t: ["train", "--source", str(t / "missing")], "does not exist"),
        (lambda d, t: ["train", "--source", str(_bad_label_dataset(t, d))], "values {0, 7}"),
        (
            lambda d, t: [
                "adapt",
                "--source",
                str(d / "source"),
                "--target",
                str(d / "target"),
                "--label-slices",
                "99",
            ],
            "out of range",
        ),
        (
            lambda d, t: [
                "adapt",
                "--source",
                str(d / "source"),
                "--target",
                str(d / "target"),
                "--label-slices",
                "0",
                "--mode",
                "adversarial",
            ],
            "does not use them",
        ),
        (
            lambda d, t: ["train", "--source", str(d / "source"), "--patch-size", "128"],
            "smaller than the 128-pixel",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(datasets, tmp_path, capsys, make_args, message):
    out = tmp_path / "out" / "m.pt"
    out.parent.mkdir()
    command, *args = make_args(datasets, tmp_path)
    # The case's own options come after TINY, so they win (argparse keeps the last).
    assert main([command, *TINY, *args, "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert message in err
    assert err.count("\n") == 1
    assert list(out.parent.iterdir()) == []


def test_membranes_from_instance_ids(tmp_path):
    ids = np.ones((2, 6, 6), np.uint16)
    ids[:, :, 3:] = 5
    ids[1, :2] = 0
    source, out, valid = tmp_path / "ids.tif", tmp_path / "m.tif", tmp_path / "v.tif"
    tifffile.imwrite(source, ids)
    args = ["membranes", "--input", str(source), "--out", str(out), "--width", "2"]
    assert main([*args, "--zero", "ignore", "--valid-out", str(valid)]) == 0
    membranes = tifffile.imread(out)
    np.testing.assert_array_equal(membranes[0], [[0, 0, 255, 255, 0, 0]] * 6)
    np.testing.assert_array_equal(tifffile.imread(valid), (ids != 0) * 255)
    assert main(args) == EXIT_BAD_INPUT  # exists, no --overwrite


@pytest.mark.slow  # a bioimage.io package end to end: `pytest -m slow`
def test_export_writes_a_package_that_predict_and_evaluate_accept(
    datasets, checkpoint, tmp_path, capsys
):
    image = datasets / "target" / "test" / "images" / "slice_000.tif"
    package = tmp_path / "model.zip"
    args = ["export", "--model", str(checkpoint), "--image", str(image), "--out", str(package)]
    assert main([*args, "--name", "EM membranes", "--author", "A. Person"]) == 0
    assert zipfile.is_zipfile(package)
    before = package.read_bytes()
    assert main(args) == EXIT_BAD_INPUT  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err
    assert package.read_bytes() == before
    assert main([*args, "--overwrite", "--license", "not-a-licence"]) == EXIT_BAD_INPUT
    assert "SPDX" in capsys.readouterr().err
    assert package.read_bytes() == before

    images = datasets / "target" / "test" / "images"
    outputs = {}
    for name, model in (("pt", checkpoint), ("zip", package)):
        outputs[name] = tmp_path / f"{name}.tif"
        predict = ["predict", "--model", str(model), "--input", str(images), "--device", "cpu"]
        assert main([*predict, "--out", str(outputs[name])]) == 0
    np.testing.assert_array_equal(tifffile.imread(outputs["zip"]), tifffile.imread(outputs["pt"]))
    capsys.readouterr()
    target = str(datasets / "target")
    assert main(["evaluate", "--model", str(package), "--data", target, "--device", "cpu"]) == 0
    assert "f1" in _json(capsys)


def test_train_on_hdf5_datasets(datasets, tmp_path, capsys):

    images = np.stack(
        [tifffile.imread(p) for p in sorted((datasets / "source/train/images").iterdir())]
    )
    labels = np.stack(
        [tifffile.imread(p) for p in sorted((datasets / "source/train/labels").iterdir())]
    )
    volume = tmp_path / "source.hdf"
    valid = np.ones(labels.shape, np.uint8)
    with h5py.File(volume, "w") as file:
        file["volumes/raw"] = images
        file["volumes/labels/membranes"] = labels
        file["volumes/masks/all"] = valid
        valid[:, : valid.shape[1] // 2] = 0  # the upper half unlabelled
        file["volumes/masks/half"] = valid
    args = ["train", "--source", f"{volume}:volumes/raw", *TINY]
    args += ["--source-labels", f"{volume}:volumes/labels/membranes"]
    assert main([*args, "--out", str(tmp_path / "m.pt")]) == 0
    assert _json(capsys)["steps"] == 3
    # --source-masks: the pixels whose labels count (membranes --valid-out writes them)
    for name in ("all", "half"):
        masks = ["--source-masks", f"{volume}:volumes/masks/{name}"]
        assert main([*args, *masks, "--out", str(tmp_path / f"{name}.pt")]) == 0
    assert _same_weights(tmp_path / "m.pt", tmp_path / "all.pt")
    assert not _same_weights(tmp_path / "m.pt", tmp_path / "half.pt")


def _same_weights(a: Path, b: Path) -> bool:
    first = load_checkpoint(a).network.state_dict()
    second = load_checkpoint(b).network.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.slow  # a run killed and resumed, end to end
def test_a_killed_adapt_run_resumes_to_the_uninterrupted_model(datasets, tmp_path, capsys):
    """SIGKILL mid-run, then --resume: the same model as a run never interrupted."""
    args = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    args += [*TINY, "--steps", "60", "--patch-size", "64", "--state-every", "5"]
    whole = tmp_path / "whole.pt"
    assert main([*args, "--out", str(whole)]) == 0
    assert not Path(f"{whole}.state").exists()  # deleted once the model is written

    out = tmp_path / "resumed.pt"
    state = Path(f"{out}.state")
    child = subprocess.Popen(
        [sys.executable, "-m", "napari_domain_adapt.cli", *args, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not state.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        child.kill()
    finally:
        child.wait()
    assert state.exists()
    assert not out.exists()
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == EXIT_BAD_INPUT  # no silent restart
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert _json(capsys)["steps"] == 60
    assert _same_weights(out, whole)
    assert not state.exists()


def test_amp_reaches_the_saved_configuration(datasets, tmp_path, capsys):
    out = tmp_path / "m.pt"
    args = ["train", "--source", str(datasets / "source"), "--out", str(out), *TINY]
    assert main([*args, "--amp", "--device", "cpu"]) == 0
    assert _json(capsys)["config"]["amp"] is True
    assert load_checkpoint(out).config.amp is True


def test_version(capsys):
    from napari_domain_adapt import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"napari-domain-adapt {__version__}"


def test_every_option_says_what_it_does_and_its_default():
    from napari_domain_adapt.cli import build_parser

    parser = build_parser()
    assert "mean-teacher self-training (the default)" in " ".join(parser.format_help().split())
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        assert command.description or name != "demo"
        for action in command._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        text = command.format_help()
        for action in command._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                assert f"(default: {action.default})" in " ".join(text.split()), (
                    f"{name} {action.option_strings[0]}"
                )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--screenshot", "x.png"], "--screenshot is taken by --check"),
        (["demo", "--check", "0"], "--check 0: expected a number of steps of at least 1"),
    ],
)
def test_demo_refuses_bad_check_options(args, message, capsys, tmp_path):
    assert main(args) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


# --- pixel sizes: read from the input, written into the output -------------------------------


def _inputs(tmp_path: Path, data: np.ndarray) -> dict[str, str]:
    """The same stack at 4 nm x 50 nm in each format users have, by format name."""
    return {
        "ImageJ TIFF": str(imagej_stack(tmp_path / "imagej.tif", data)),
        "OME-TIFF": str(ome_tiff(tmp_path / "ome.tif", data)),
        "HDF5": hdf5_volume(tmp_path / "volume.h5", data),
    }


def test_predict_and_membranes_keep_the_pixel_size(checkpoint, tmp_path):
    """The round trip of issue 20: format in -> command -> the same size and unit back."""
    images = em_stack((3, 64, 64), np.uint8)
    ids = (np.arange(64 * 64).reshape(1, 64, 64) // 500).repeat(3, axis=0).astype(np.uint16)
    for name, source in _inputs(tmp_path, images).items():
        out = tmp_path / f"{name}.tif"
        assert (
            main(["predict", "--model", str(checkpoint), "--input", source, "--out", str(out)])
            == 0
        )
        assert tiff_pixel_size_of(out).to("nm") == EM.to("nm"), name
    (tmp_path / "ids").mkdir()
    for name, source in _inputs(tmp_path / "ids", ids).items():
        out = tmp_path / f"membranes {name}.tif"
        assert main(["membranes", "--input", source, "--out", str(out)]) == 0
        assert tiff_pixel_size_of(out).to("nm") == EM.to("nm"), name


def test_pixel_size_options_override_the_file(checkpoint, tmp_path, capsys):
    source = imagej_stack(tmp_path / "imagej.tif", em_stack((2, 64, 64), np.uint8))
    base = ["predict", "--model", str(checkpoint), "--input", str(source)]
    cases = [
        (["--pixel-size", "10nm"], PixelSize((10, 10), "nm")),
        (["--pixel-size", "40,8,8", "--unit", "nm"], PixelSize((40, 8, 8), "nm")),
        (["--unit", "nm"], EM.to("nm")),  # the file's size, converted
    ]
    for index, (options, expected) in enumerate(cases):
        out = tmp_path / f"p{index}.tif"
        assert main([*base, "--out", str(out), *options]) == 0
        assert tiff_pixel_size_of(out) == expected
    capsys.readouterr()
    for options, message in [
        (["--pixel-size", "10"], "--pixel-size 10: pixel size '10' has no unit"),
        (["--pixel-size", "0nm"], "positive"),
        (["--pixel-size", "1,2,3,4nm"], "1 to 3 sizes"),
        (["--unit", "parsec"], "unknown length unit 'parsec'"),
    ]:
        assert main([*base, "--out", str(tmp_path / "bad.tif"), *options]) == EXIT_BAD_INPUT
        error = capsys.readouterr().err
        assert message in error
        assert error.startswith("error:")
        assert error.count("\n") == 1
        assert not (tmp_path / "bad.tif").exists()


def test_a_unit_for_sizes_without_one(checkpoint, tmp_path):
    volume = tmp_path / "cremi.hdf"
    with h5py.File(volume, "w") as file:
        file["raw"] = em_stack((2, 64, 64), np.uint8)
        file["raw"].attrs["resolution"] = (40.0, 4.0, 4.0)  # CREMI's nm, not written down
    base = ["predict", "--model", str(checkpoint), "--input", f"{volume}:raw"]
    assert main([*base, "--out", str(tmp_path / "unitless.tif")]) == 0
    assert tiff_pixel_size_of(tmp_path / "unitless.tif") == PixelSize((40, 4, 4))
    assert main([*base, "--out", str(tmp_path / "nm.tif"), "--unit", "nm"]) == 0
    assert tiff_pixel_size_of(tmp_path / "nm.tif") == PixelSize((40, 4, 4), "nm")


def test_the_model_keeps_the_pixel_sizes_of_source_and_target(datasets, tmp_path, capsys):
    out = tmp_path / "m.pt"
    args = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    sizes = ["--source-pixel-size", "4nm", "--target-pixel-size", "0.01um"]
    assert main([*args, "--out", str(out), *sizes, *TINY]) == 0
    metadata = load_checkpoint(out).metadata
    assert PixelSize.from_dict(metadata["pixel_size"]) == PixelSize((4, 4), "nm")
    assert PixelSize.from_dict(metadata["target_pixel_size"]) == PixelSize((0.01, 0.01), "µm")


def test_predict_takes_a_planar_rgb_tiff_as_one_colour_image(checkpoint, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (3, 64, 48), dtype=np.uint8)
    image = tmp_path / "planar.tif"
    tifffile.imwrite(image, rgb, photometric="rgb", planarconfig="separate")
    out = tmp_path / "p.tif"
    argv = ["predict", "--model", str(checkpoint), "--input", str(image), "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 0
    assert tifffile.imread(out).shape == (64, 48)  # one slice, not three


def test_predict_refuses_a_dataset_directory_and_says_what_to_give(
    datasets, checkpoint, tmp_path, capsys
):
    argv = ["predict", "--model", str(checkpoint), "--input", str(datasets / "target")]
    assert main([*argv, "--out", str(tmp_path / "p.tif")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "is a dataset directory" in err
    assert str(datasets / "target" / "test" / "images") in err
    assert not (tmp_path / "p.tif").exists()


def test_adapt_at_another_scale_says_so_and_the_model_resamples(datasets, tmp_path, capsys):
    """A source at 4 nm, a target at 8 nm (given): adapt prints both and the factor, the
    model keeps 4 nm, and predicting the target returns it on its own grid."""
    target = tmp_path / "target.tif"
    tifffile.imwrite(target, em_stack((2, 64, 64), np.uint8))
    model = tmp_path / "m.pt"
    argv = ["adapt", "--source", str(datasets / "source"), "--target", str(target)]
    argv += ["--source-pixel-size", "4nm", "--target-pixel-size", "8nm", "--out", str(model)]
    assert main([*argv, *TINY]) == 0
    err = capsys.readouterr().err
    assert "pixel sizes: source 4 x 4 nm, target 8 x 8 nm: the target is resampled by 2" in err
    saved = load_checkpoint(model)
    assert saved.pixel_size == PixelSize((4.0, 4.0), "nm")
    # Predicted at the model's 4 nm and returned on the 8 nm grid: in memory (TIFF) and out
    # of core (zarr) alike, and not what the image at its own scale gives.
    images = tifffile.imread(target)
    expected = saved.predict(images, pixel_size=PixelSize((8, 8), "nm"))
    at_own_scale = saved.predict(images)
    predict = ["predict", "--model", str(model), "--input", str(target), "--pixel-size", "8nm"]
    assert main([*predict, "--out", str(tmp_path / "p.tif")]) == 0
    assert main([*predict, "--out", str(tmp_path / "p.zarr")]) == 0
    in_memory = tifffile.imread(tmp_path / "p.tif")
    out_of_core = zarr.open_array(str(tmp_path / "p.zarr" / "0"))[:]
    assert in_memory.shape == out_of_core.shape == (2, 64, 64)
    np.testing.assert_allclose(in_memory, expected, atol=1e-5)
    np.testing.assert_allclose(out_of_core, expected, atol=1e-5)
    assert np.abs(in_memory - at_own_scale).max() > 0.01


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        (["--source-pixel-size", "4nm"], "give --target-pixel-size with a unit, e.g. 4nm)\n"),
        (["--target-pixel-size", "8nm"], "give --source-pixel-size with a unit, e.g. 4nm)\n"),
        (["--target-pixel-size", "8nm", "--no-match-pixel-size"], "own scale\n"),
    ],
)
def test_a_missing_pixel_size_is_named_with_the_option_that_gives_it(
    datasets, tmp_path, capsys, given, hint
):
    """One side without a pixel size: adapt trains at the target's own scale and says
    which option would give the missing size (not where matching is off)."""
    argv = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    assert main([*argv, *given, "--out", str(tmp_path / "m.pt"), *TINY]) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("pixel sizes"))
    assert "pixel size known: the target is used at its own scale" in line
    assert (line + "\n").endswith(hint)


@pytest.mark.parametrize("given", [["--source-masks"], ["--source-labels", "--source-masks"]])
def test_source_options_without_a_source_are_refused(
    datasets, checkpoint, tmp_path, capsys, given
):
    """A source-free run has no source: its labels or masks are a mistake, not ignored."""
    labels = datasets / "source" / "train" / "labels"
    argv = ["adapt", "--start-from", str(checkpoint), "--target", str(datasets / "target")]
    argv += [x for option in given for x in (option, str(labels))]
    assert main([*argv, "--out", str(tmp_path / "m.pt"), *TINY]) == EXIT_BAD_INPUT
    named = " and ".join(given)
    assert f"error: {named} given without --source" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_from_a_model_without_a_pixel_size_no_option_is_offered_for_it(
    datasets, checkpoint, tmp_path, capsys
):
    argv = ["adapt", "--start-from", str(checkpoint), "--target", str(datasets / "target")]
    argv += ["--target-pixel-size", "8nm", "--out", str(tmp_path / "m.pt")]
    assert main([*argv, *TINY]) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("pixel sizes"))
    assert line.endswith("only the target's pixel size known: the target is used at its own scale")


def test_scores_are_taken_at_the_targets_pixel_size(datasets, tmp_path, capsys):
    """adapt's target test scores and evaluate predict the target resampled to the model's
    pixel size, as predict does (the labels stay on the target's grid)."""
    from napari_domain_adapt.core import load_dataset, segmentation_scores

    model = tmp_path / "m.pt"
    argv = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    argv += ["--source-pixel-size", "4nm", "--target-pixel-size", "8nm", "--out", str(model)]
    assert main([*argv, *TINY]) == 0
    printed = _json(capsys)["target_test"]
    saved = load_checkpoint(model)
    test = load_dataset(datasets / "target", "test")
    resampled = saved.predict(test.images, pixel_size=PixelSize((8, 8), "nm"))
    f1 = segmentation_scores(resampled, test.labels)["f1"]
    own_scale = segmentation_scores(saved.predict(test.images), test.labels)["f1"]
    assert printed["f1"] == pytest.approx(f1)
    assert f1 != pytest.approx(own_scale)
    evaluate = ["evaluate", "--model", str(model), "--data", str(datasets / "target")]
    assert main([*evaluate, "--pixel-size", "8nm"]) == 0
    assert _json(capsys)["f1"] == pytest.approx(f1)
    assert main(evaluate) == 0  # the files say no pixel size: the images as they are
    assert _json(capsys)["f1"] == pytest.approx(own_scale)


def test_adapt_with_a_baseline_prints_the_guards_verdict_and_keeps_the_better(
    datasets, checkpoint, tmp_path, capsys
):
    """--baseline: the verdict is printed and kept in the results; --keep-better writes the
    model it prefers (the guard reads the source's test labels, never the target's)."""
    out = tmp_path / "adapted.pt"
    argv = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    argv += ["--baseline", str(checkpoint), "--keep-better", "--out", str(out), *TINY]
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    guard = result["guard"]
    assert guard["prefer"] in ("adapted", "source-only")
    assert f"guard: {guard['reason']}" in captured.err
    assert set(guard["estimates"]) == {"source-only", "adapted"}
    kept = load_checkpoint(out)
    baseline = load_checkpoint(checkpoint)
    same = all(
        torch.equal(a, b)
        for a, b in zip(
            kept.network.state_dict().values(), baseline.network.state_dict().values(), strict=True
        )
    )
    assert same == (guard["kept"] == "baseline") == (guard["prefer"] == "source-only")
    no_baseline = ["adapt", "--source", str(datasets / "source"), "--target", "x", "--keep-better"]
    assert main([*no_baseline, "--out", str(tmp_path / "b.pt")]) == EXIT_BAD_INPUT
    assert "give --baseline too" in capsys.readouterr().err


def test_start_from_is_the_default_baseline_before_vs_after(
    datasets, checkpoint, tmp_path, capsys, monkeypatch
):
    """adapt --start-from M with a source and no --baseline: the guard compares M (before)
    with the model trained from it (after); --keep-better writes M where it prefers it."""
    from napari_domain_adapt.core import GuardVerdict
    from napari_domain_adapt.core import pipeline as _pipeline

    verdict = GuardVerdict("source-only", {}, "source-only model preferred: as told", "atc")
    monkeypatch.setattr(_pipeline, "judge", lambda *args: verdict)
    out = tmp_path / "kept.pt"
    argv = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    argv += ["--start-from", str(checkpoint), "--keep-better", "--out", str(out), *TINY]
    assert main(argv) == 0
    captured = capsys.readouterr()
    guard = json.loads(captured.out)["guard"]
    assert guard["baseline"] == str(checkpoint)
    assert (guard["prefer"], guard["kept"]) == ("source-only", "baseline")
    assert "guard: source-only model preferred: as told" in captured.err
    assert _same_weights(out, checkpoint)

    monkeypatch.setattr(
        _pipeline, "judge", lambda *args: dataclasses.replace(verdict, prefer="adapted")
    )
    out = tmp_path / "adapted.pt"
    argv[argv.index("--out") + 1] = str(out)
    assert main(argv) == 0
    guard = json.loads(capsys.readouterr().out)["guard"]
    assert guard["kept"] == "adapted"
    assert not _same_weights(out, checkpoint)


def test_a_target_read_on_demand_is_judged_on_slices_read_from_it(
    datasets, checkpoint, tmp_path, capsys
):
    """A zarr target: the guard reads its slices and judges; the model it keeps is written."""
    import zarr

    volume = tmp_path / "target.zarr"
    zarr.save_array(str(volume), em_stack((2, 64, 64), np.uint8))
    out = tmp_path / "adapted.pt"
    argv = ["adapt", "--source", str(datasets / "source"), "--target", str(volume)]
    argv += ["--baseline", str(checkpoint), "--keep-better", "--out", str(out), *TINY]
    assert main(argv) == 0
    captured = capsys.readouterr()
    guard = json.loads(captured.out)["guard"]
    assert guard["prefer"] in ("source-only", "adapted")
    assert guard["kept"] == ("baseline" if guard["prefer"] == "source-only" else "adapted")
    assert not guard["reason"].startswith("not judged")
    assert f"guard: {guard['reason']}" in captured.err
    assert out.is_file()


@pytest.mark.parametrize("store", ["zarr", "hdf5"])
def test_scribbles_on_a_target_read_on_demand_train_it(
    datasets, tmp_path, capsys, monkeypatch, store
):
    """A zarr or HDF5 target with scribbles (held in memory): semi-supervised trains on
    them, and the model records one labelled target slice; the volume is never read whole."""
    data = em_stack((3, 64, 64), np.uint8)
    if store == "zarr":
        volume = str(tmp_path / "target.zarr")
        zarr.save_array(volume, data)
    else:
        volume = hdf5_volume(tmp_path / "target.h5", data)
    scribbles = np.zeros((3, 64, 64), np.uint8)
    scribbles[1, 4:8] = 1
    scribbles[1, 30:34] = 2
    labels = tmp_path / "scribbles.tif"
    tifffile.imwrite(labels, scribbles, photometric="minisblack")  # 3 slices, not RGB
    read_whole = []
    real_read_volume = pipeline.read_volume

    def spied_read_volume(path, *args, **kwargs):
        read_whole.append(str(path))
        return real_read_volume(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "read_volume", spied_read_volume)
    out = tmp_path / "m.pt"
    argv = ["adapt", "--source", str(datasets / "source"), "--target", volume]
    argv += ["--mode", "semi-supervised", "--target-labels", str(labels)]
    argv += ["--target-label-kind", "sparse", "--out", str(out), *TINY]
    assert main(argv) == 0, capsys.readouterr().err
    (run,) = load_checkpoint(out).metadata["runs"]
    assert run["target_labelled_slices"] == 1
    assert read_whole == [str(labels)]  # the labels only: the target is read on demand


def test_a_run_can_start_from_a_model(datasets, checkpoint, tmp_path):
    """--start-from: the run starts from the model's weights (its architecture and
    preprocessing too) and the result says where it started."""
    out = tmp_path / "continued.pt"
    argv = ["adapt", "--source", str(datasets / "source"), "--target", str(datasets / "target")]
    argv += ["--start-from", str(checkpoint), "--out", str(out), *TINY, "--steps", "1"]
    assert main([*argv, "--depth", "3"]) == 0  # the model's depth (2) wins over the option
    started, continued = load_checkpoint(checkpoint), load_checkpoint(out)
    assert continued.spec == started.spec
    assert continued.metadata["started_from"] == str(checkpoint)
    before = dict(started.network.named_parameters())
    after = dict(continued.network.named_parameters())
    moved = [name for name in before if not torch.equal(before[name], after[name])]
    assert moved  # trained on,
    largest = max(float((after[n] - before[n]).abs().max()) for n in moved)
    assert largest < 0.01  # from the model's weights, not new ones (one step, then averaged)


def test_adapt_without_a_source_adapts_a_model_to_the_target(
    datasets, checkpoint, tmp_path, capsys
):
    """Source-free: adapt --start-from M --target T (no --source) runs a mean teacher on the
    target alone from M, and refuses what cannot work without the source."""
    out = tmp_path / "free.pt"
    argv = ["adapt", "--target", str(datasets / "target"), "--start-from", str(checkpoint)]
    assert main([*argv, "--out", str(out), *TINY]) == 0
    adapted = load_checkpoint(out)
    assert adapted.config.mode == "mean-teacher"
    assert adapted.metadata["started_from"] == str(checkpoint)
    refused = [
        (["adapt", "--target", str(datasets / "target")], "no --source"),
        ([*argv, "--mode", "adversarial"], "mode adversarial needs the labelled source"),
        ([*argv, "--baseline", str(checkpoint)], "give --source too"),
    ]
    for index, (command, message) in enumerate(refused):
        path = tmp_path / f"r{index}.pt"
        capsys.readouterr()
        assert main([*command, "--out", str(path), *TINY]) == EXIT_BAD_INPUT
        assert message in capsys.readouterr().err
        assert not path.exists()
