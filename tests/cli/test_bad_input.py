"""Bad input through the command line, tried systematically: refused, clearly, changing nothing.

Every case of ``CLI_CASES`` runs ``napari-domain-adapt`` in-process: it must exit with status
2, print exactly one ``error:`` line that names what was found and what was expected, and
leave the output folder exactly as it was (names, sizes, modification times and bytes of
the files already there). ``test_bad_input_widget.py`` tries bad input through the widget.
Read-only folders are simulated where the tests run as root (see ``_bad_inputs.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from _bad_input_fixtures import world_fixture  # noqa: F401 (the world fixture)
from _bad_inputs import (
    TINY,
    World,
    _deeper,
    _nan_weights,
    _Payload,
    _set,
    creation_refused,
    read_only,
    snapshot,
)
from napari_domain_adapt.cli import EXIT_BAD_INPUT, main
from napari_domain_adapt.core.checkpoints import load_checkpoint

# --- the command line ----------------------------------------------------------------------


@dataclass
class CliCase:
    """A bad command line; ``found`` and ``expected`` are fragments of its error line."""

    id: str
    argv: Callable[[World, Path], list]
    found: str
    expected: str
    context: Callable[[Path, pytest.MonkeyPatch], contextlib.AbstractContextManager] | None = None
    known_bug: str | None = None


def _train(source, labels=None) -> Callable[[World, Path], list]:
    def argv(w: World, out: Path) -> list:
        extra = [] if labels is None else ["--source-labels", labels(w)]
        return ["train", "--source", source(w), *extra, "--out", out / "m.pt", *TINY]

    return argv


def _adapt(target, *extra: str) -> Callable[[World, Path], list]:
    def argv(w: World, out: Path) -> list:
        return ["adapt", "--source", w.source, "--target", target(w), *extra]

    return lambda w, out: [*argv(w, out), "--out", out / "m.pt", *TINY]


def _predict(
    model=None, image=None, *extra: str, output: str = "p.tif"
) -> Callable[[World, Path], list]:
    def argv(w: World, out: Path) -> list:
        chosen = w.model if model is None else model(w)
        source = w.target / "test" / "images" if image is None else image(w)
        return ["predict", "--model", chosen, "--input", source, "--out", out / output, *extra]

    return lambda w, out: [*argv(w, out), "--device", "cpu"]


def _image_with_labels(image, labels) -> Callable[[World, Path], list]:
    return _train(lambda w: w.tif(*image(w)), lambda w: w.tif(*labels(w)))


def _good_labels(w: World):
    return "labels.tif", w.labels


def _nan_image(w: World):
    data = w.image.astype(np.float32)
    data[0, 3, 4] = np.nan
    return "nan.tif", data


def _inf_image(w: World):
    data = w.image.astype(np.float32)
    data[1, 5, 5] = np.inf
    return "inf.tif", data


def _multiscale(w: World, folder: Path) -> Path:
    """An OME-Zarr-like store in ``folder``: a group of two levels, ``0`` and ``1``."""
    import zarr

    group = zarr.open_group(str(folder / "raw.zarr"), mode="w")
    group.create_array("0", data=w.image, chunks=(1, 64, 64))
    group.create_array("1", data=w.image[:, ::2, ::2], chunks=(1, 32, 32))
    return folder / "raw.zarr"


def _hdf5(w: World, folder: Path) -> Path:
    """``vol.h5`` in ``folder`` with ``volumes/raw`` and ``volumes/labels``."""
    import h5py

    with h5py.File(folder / "vol.h5", "w") as file:
        file["volumes/raw"] = w.image
        file["volumes/labels"] = w.binary
    return folder / "vol.h5"


def _one_slice_twice(w: World) -> Path:
    """A dataset whose slice ``a`` is both ``a.tif`` and ``a.tiff``."""
    root = w.dataset("twice", {"a": w.image[0], "b": w.image[1]}, {"a": w.labels[0]})
    tifffile.imwrite(root / "train" / "images" / "a.tiff", w.image[1])
    return root


def _symlink(folder: Path, name: str, target: str) -> Path:
    (folder / name).symlink_to(folder / target)
    return folder / name


CLI_CASES = [
    # arrays: dimensions, types, values
    CliCase(
        "4d-grey-image",
        _image_with_labels(
            lambda w: ("4d.tif", np.stack([w.image, w.image]).astype(np.float32)), _good_labels
        ),
        "shape (2, 2, 64, 64)",
        "expected (H, W), (N, H, W)",
    ),
    CliCase(
        "1-pixel-high-image",
        _image_with_labels(lambda w: ("thin.tif", w.image[0, :1]), _good_labels),
        "shape (1, 64)",
        "expected at least one 2x2 slice",
    ),
    CliCase(
        "complex-image",
        _image_with_labels(
            lambda w: ("complex.tif", w.image.astype(np.complex64) * 1j), _good_labels
        ),
        "dtype complex64",
        "expected an integer (uint8, uint16) or float image",
    ),
    CliCase(
        "nan-pixels",
        _image_with_labels(_nan_image, _good_labels),
        "1 NaN or infinite pixels",
        "expected finite values",
    ),
    CliCase(
        "inf-pixels",
        _image_with_labels(_inf_image, _good_labels),
        "1 NaN or infinite pixels",
        "expected finite values",
    ),
    CliCase(
        "constant-image",
        _image_with_labels(
            lambda w: ("flat.tif", np.full((2, 64, 64), 9, np.uint8)), _good_labels
        ),
        "constant (every pixel is 9)",
        "expected an image with contrast",
    ),
    CliCase(
        "constant-target",
        _adapt(lambda w: w.tif("flat-target.tif", np.zeros((2, 64, 64), np.uint16))),
        "target is constant (every pixel is 0)",
        "expected an image with contrast",
    ),
    CliCase(
        "constant-zarr-target",  # no chunk written: the store holds only its fill value
        _adapt(lambda w: w.zarr("zero-target.zarr", "zero")),
        "target is constant (every pixel is 0)",
        "expected an image with contrast",
    ),
    CliCase(
        "constant-zarr-target-written",  # every chunk written and read
        _adapt(lambda w: w.zarr("seven-target.zarr", "seven")),
        "target is constant (every pixel is 7)",
        "expected an image with contrast",
    ),
    CliCase(
        "label-shape-mismatch",
        _image_with_labels(
            lambda w: ("img.tif", w.image), lambda w: ("l60.tif", w.labels[:, :60])
        ),
        "have shape (2, 60, 64)",
        "expected the image's shape (2, 64, 64)",
    ),
    CliCase(
        "label-slice-count-mismatch",
        _image_with_labels(lambda w: ("img.tif", w.image), lambda w: ("l1.tif", w.labels[:1])),
        "have shape (1, 64, 64)",
        "expected the image's shape (2, 64, 64)",
    ),
    CliCase(
        "labels-not-binary",
        _image_with_labels(
            lambda w: ("img.tif", w.image), lambda w: ("l07.tif", w.labels // 255 * 7)
        ),
        "contain the values {0, 7}",
        "expected binary labels: 0/1, 0/255 or bool",
    ),
    CliCase(
        "labels-three-classes",
        _image_with_labels(
            lambda w: ("img.tif", w.image),
            lambda w: (
                "l012.tif",
                (np.arange(64 * 64 * 2) % 3).reshape(2, 64, 64).astype(np.uint8),
            ),
        ),
        "contain the values {0, 1, 2}",
        "expected binary labels",
    ),
    CliCase(
        "labels-probabilities",
        _image_with_labels(
            lambda w: ("img.tif", w.image),
            lambda w: (
                "lprob.tif",
                np.linspace(0, 1, 2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64),
            ),
        ),
        "contain the values {0.0, ",
        "expected binary labels",
    ),
    CliCase(
        "rgb-labels-for-grey-image",
        _image_with_labels(
            lambda w: ("img1.tif", w.image[0]),
            lambda w: ("lrgb.tif", np.repeat(w.labels[0][..., None], 3, axis=-1)),
        ),
        "have shape (64, 64, 3)",
        "they look like a colour image; expected one grey value per pixel",
    ),
    CliCase(
        "two-channel-image",
        _image_with_labels(
            lambda w: ("two.tif", np.stack([w.image[0], w.image[1]], axis=-1)),
            lambda w: ("l1.tif", w.labels[:1]),
        ),
        "shape (64, 64, 2)",
        "expected grey or colour with 3 or 4 channels",
    ),
    CliCase(
        "rgb-slice-in-grey-stack",
        _train(
            lambda w: w.dataset(
                "mixed-rgb",
                {"a": w.image[0], "b": np.repeat(w.image[1][..., None], 3, axis=-1)},
                {"a": w.labels[0], "b": w.labels[1]},
            )
        ),
        "b.tif has shape (64, 64, 3) (colour, in a grey stack)",
        "expected (64, 64) like",
    ),
    CliCase(
        "grey-slice-in-rgb-stack",
        _train(
            lambda w: w.dataset(
                "mixed-grey",
                {"a": np.repeat(w.image[0][..., None], 3, axis=-1), "b": w.image[1]},
                {"a": w.labels[0], "b": w.labels[1]},
            )
        ),
        "b.tif has shape (64, 64) (grey, in a colour stack)",
        "expected (64, 64, 3) like",
    ),
    CliCase(
        "slice-of-another-size",
        _train(
            lambda w: w.dataset(
                "sizes",
                {"a": w.image[0], "b": w.image[1, :50]},
                {"a": w.labels[0], "b": w.labels[1]},
            )
        ),
        "b.tif has shape (50, 64)",
        "expected (64, 64) like",
    ),
    CliCase(
        "masks-of-another-size",
        lambda w, out: [
            *_image_with_labels(lambda w: ("image.tif", w.image), _good_labels)(w, out),
            "--source-masks",
            w.tif("masks-small.tif", np.ones((2, 32, 32), np.uint8)),
        ],
        "source masks have shape (2, 32, 32)",
        "expected the image's shape (2, 64, 64)",
    ),
    CliCase(
        "rgb-instance-ids",
        lambda w, out: [
            "membranes",
            "--input",
            w.tif("ids-rgb.tif", np.stack([w.image[0]] * 3, axis=-1)),
            "--out",
            out / "m.tif",
        ],
        "shape (64, 64, 3), a colour (RGB) image",
        "expected one integer id per pixel",
    ),
    CliCase(
        "float-instance-ids",
        lambda w, out: [
            "membranes",
            "--input",
            w.tif("ids-float.tif", w.image.astype(np.float32)),
            "--out",
            out / "m.tif",
        ],
        "dtype float32",
        "expected integer ids",
    ),
    # targets
    CliCase(
        "empty-target-stack",
        _adapt(lambda w: w.tif("empty.tif", np.zeros((0, 64, 64), np.uint8))),
        "it holds no pixels, shape (0, 64, 64)",
        "not a readable image",
    ),
    CliCase(
        "empty-target-dataset",
        _adapt(lambda w: w.dataset("empty-ds", {})),
        "empty-ds",
        "holds no images",
    ),
    CliCase(
        "target-smaller-than-patch",
        _adapt(lambda w: w.tif("small.tif", w.image[:, :20, :20])),
        "target slices are 20x20 pixels, smaller than the 32-pixel training patch",
        "choose a patch size of at most 20",
    ),
    CliCase(
        "source-smaller-than-patch",
        _image_with_labels(
            lambda w: ("s24.tif", w.image[:, :24]), lambda w: ("l24.tif", w.labels[:, :24])
        ),
        "source slices are 24x64 pixels",
        "choose a patch size of at most 24",
    ),
    # unreadable files
    CliCase(
        "garbage-tiff",
        _predict(image=lambda w: w.raw("garbage.tif", b"II*\x00garbage" * 10)),
        "cannot read",
        "not a readable image",
    ),
    CliCase(
        "truncated-tiff",
        _predict(image=lambda w: w.truncated("cut.tif", w.tif("whole.tif", w.image))),
        "cut.tif",
        "not a readable image",
    ),
    CliCase(
        "garbage-png",
        _predict(image=lambda w: w.raw("garbage.png", b"\x89PNG\r\n\x1a\n" + b"x" * 50)),
        "garbage.png",
        "not a readable image",
    ),
    CliCase(
        "truncated-png",
        _predict(image=lambda w: w.truncated("cut.png", w.png("whole.png"))),
        "image file is truncated",
        "not a readable image",
    ),
    CliCase(
        "zarr-target-with-labels-of-another-shape",
        lambda w, out: [
            *_adapt(lambda w: w.zarr("labelled-target.zarr", "none"), "--mode", "semi-supervised")(
                w, out
            ),
            "--target-labels",
            w.tif("short-labels.tif", w.binary[:, :60]),
        ],
        "target labels have shape (2, 60, 64)",
        "expected the image's shape (2, 64, 64)",
    ),
    CliCase(
        "zarr-target-bad-metadata",
        _adapt(lambda w: w.zarr("target-meta.zarr", "metadata")),
        "not a readable zarr store",
        "target",
    ),
    CliCase(
        "zarr-target-truncated-chunk",
        _adapt(lambda w: w.zarr("target-chunk.zarr", "chunk")),
        "cannot read slice",
        "target-chunk.zarr",
    ),
    CliCase(
        "zarr-bad-metadata",
        _predict(image=lambda w: w.zarr("meta.zarr", "metadata"), output="p.zarr"),
        "meta.zarr",
        "zarr",
    ),
    CliCase(
        "zarr-truncated-chunk",
        _predict(image=lambda w: w.zarr("chunk.zarr", "chunk"), output="p.zarr"),
        "chunk.zarr",
        "zarr",
    ),
    *(
        CliCase(
            f"hdf5-{damage}-{command}",
            run(lambda w, d=damage, c=command: w.hdf5(f"{d}-{c}.h5", d)),
            found,
            expected,
        )
        for damage, found, expected in (
            ("missing-link", "links to nothere.h5:/raw, which cannot be opened", "readable HDF5"),
            ("foreign-link", "links to plain.png:/raw, which cannot be opened", "readable HDF5"),
            ("chunk", "raw: a corrupt or truncated chunk", "expected a readable HDF5 dataset"),
        )
        for command, run in (("predict", lambda image: _predict(image=image)), ("target", _adapt))
    ),
    CliCase(
        "missing-image",
        _predict(image=lambda w: w.files / "nothere.tif"),
        "nothere.tif does not exist",
        "expected an image file",
    ),
    CliCase(
        "missing-source",
        _train(lambda w: w.files / "nothere"),
        "nothere does not exist",
        "expected a dataset directory or images",
    ),
    # datasets
    CliCase(
        "missing-test-split",
        lambda w, out: [
            "evaluate",
            "--model",
            w.model,
            "--data",
            w.dataset("train-only", {"a": w.image[0]}, {"a": w.labels[0]}),
            "--metrics",
            out / "s.json",
            "--device",
            "cpu",
        ],
        "has no test/images folder",
        "expected a dataset directory with test/images/",
    ),
    CliCase(
        "missing-labels-folder",
        _train(lambda w: w.dataset("no-labels", {"a": w.image[0]})),
        "has no train/labels folder",
        "expected labels for train",
    ),
    CliCase(
        "two-files-for-one-slice",
        _train(_one_slice_twice),
        "holds a.tif and a.tiff, two files for one slice",
        "expected one image file per name",
    ),
    CliCase(
        "labels-with-other-stems",
        _train(lambda w: w.dataset("stems", {"a": w.image[0]}, {"z": w.labels[0]})),
        "lacks files for a.tif",
        "expected one per image, with the same stem",
    ),
    # checkpoints
    CliCase(
        "checkpoint-of-another-architecture",
        _predict(model=lambda w: w.checkpoint("deeper.pt", _deeper)),
        "Missing key(s)",
        "does not fit the model it describes",
    ),
    CliCase(
        "foreign-state-dict",
        _predict(model=lambda w: w.saved("linear.pt", torch.nn.Linear(2, 2).state_dict())),
        "a dictionary of weight, bias",
        "expected a model saved by napari-domain-adapt",
    ),
    CliCase(
        "truncated-checkpoint",
        _predict(model=lambda w: w.truncated("cut.pt", w.model, 0.5)),
        "cannot read checkpoint",
        "truncated, corrupt or holds more than weights",
    ),
    CliCase(
        "checkpoint-with-pickled-code",
        _predict(model=lambda w: w.payload("payload.pt")),
        "cannot read checkpoint",
        "holds more than weights and plain values",
    ),
    CliCase(
        "checkpoint-with-nan-weights",
        _predict(model=lambda w: w.checkpoint("nan.pt", _nan_weights)),
        "NaN or infinite weights",
        "expected finite weights",
    ),
    CliCase(
        "checkpoint-with-bad-metadata",
        _predict(model=lambda w: w.checkpoint("meta.pt", lambda c: _set(c, "metadata", "text"))),
        "does not fit the model it describes",
        "expected a checkpoint saved by napari-domain-adapt",
    ),
    CliCase(
        "checkpoint-of-another-version",
        _predict(model=lambda w: w.checkpoint("v9.pt", lambda c: _set(c, "version", 9))),
        "checkpoint version 9",
        "expected 1",
    ),
    CliCase(
        "image-as-checkpoint",
        _predict(model=lambda w: w.tif("whole.tif", w.image)),
        "cannot read checkpoint",
        "truncated, corrupt",
    ),
    CliCase(
        "missing-checkpoint",
        _predict(model=lambda w: w.files / "nothere.pt"),
        "nothere.pt does not exist",
        "expected a model file",
    ),
    # outputs
    CliCase(
        "existing-output",
        lambda w, out: ["train", "--source", w.source, "--out", out / "keep.pt", *TINY],
        "keep.pt exists",
        "choose another name or pass --overwrite",
    ),
    CliCase(
        "output-folder-missing",
        lambda w, out: ["train", "--source", w.source, "--out", out / "no" / "m.pt", *TINY],
        "the folder",
        "does not exist",
    ),
    CliCase(
        "output-is-a-folder",
        lambda w, out: ["train", "--source", w.source, "--out", out / "sub", "--overwrite", *TINY],
        "sub is a folder",
        "expected a file name to write",
    ),
    CliCase(
        "output-named-twice",
        lambda w, out: [
            "train",
            "--source",
            w.source,
            "--out",
            out / "a.json",
            "--metrics",
            out / "a.json",
            *TINY,
        ],
        "a.json is named for two outputs",
        "expected one file per output",
    ),
    CliCase(
        "output-replaces-the-input",
        lambda w, out: [
            "predict",
            "--model",
            w.model,
            "--input",
            out / "keep.tif",
            "--out",
            out / "keep.tif",
            "--overwrite",
            "--device",
            "cpu",
        ],
        "keep.tif is an input of this command",
        "choose another output name",
    ),
    CliCase(
        "overwrite-the-store-of-the-input-array",
        lambda w, out: [
            "predict",
            "--model",
            w.model,
            "--input",
            _multiscale(w, out) / "0",
            "--out",
            out / "raw.zarr",
            "--overwrite",
            "--device",
            "cpu",
        ],
        "raw.zarr holds",
        "an input of this command; choose another output name",
    ),
    CliCase(
        "overwrite-into-the-store-of-the-input",
        lambda w, out: [
            "predict",
            "--model",
            w.model,
            "--input",
            _multiscale(w, out) / "1",
            "--out",
            out / "raw.zarr" / "p.zarr",
            "--device",
            "cpu",
        ],
        "p.zarr is inside the store of",
        "an input of this command",
    ),
    CliCase(
        "overwrite-the-hdf5-file-of-the-input",
        lambda w, out: [
            "membranes",
            "--input",
            f"{_hdf5(w, out)}:volumes/labels",
            "--out",
            out / "vol.h5",
            "--overwrite",
        ],
        "vol.h5 holds",
        "an input of this command; choose another output name",
    ),
    CliCase(
        "overwrite-the-hdf5-file-of-the-labels-with-metrics",
        lambda w, out: [
            "evaluate",
            "--model",
            w.model,
            "--data",
            f"{_hdf5(w, out)}:volumes/raw",
            "--labels",
            f"{out / 'vol.h5'}:volumes/labels",
            "--metrics",
            out / "vol.h5",
            "--overwrite",
            "--device",
            "cpu",
        ],
        "vol.h5 holds",
        "an input of this command",
    ),
    CliCase(
        "overwrite-the-input-through-a-symlink",
        lambda w, out: [
            "predict",
            "--model",
            w.model,
            "--input",
            _symlink(out, "link.tif", "keep.tif"),
            "--out",
            out / "keep.tif",
            "--overwrite",
            "--device",
            "cpu",
        ],
        "keep.tif is an input",
        "an input of this command",
    ),
    CliCase(
        "output-into-the-input-stack",
        lambda w, out: [
            "predict",
            "--model",
            w.model,
            "--input",
            out / "stack",
            "--out",
            out / "stack" / "p.tif",
            "--device",
            "cpu",
        ],
        "would be written into the input folder",
        "choose another folder",
    ),
    CliCase(
        "read-only-output-folder",
        lambda w, out: ["train", "--source", w.source, "--out", out / "m.pt", *TINY],
        "cannot write",
        "is not writable",
        read_only,
    ),
    CliCase(
        "output-creation-refused",
        _predict(),
        "cannot write",
        "Permission denied",
        creation_refused,
    ),
    # sample
    CliCase(
        "sample-into-a-file",
        lambda w, out: ["sample", out / "keep.tif"],
        "keep.tif is a file",
        "expected a folder",
    ),
    CliCase(
        "sample-into-a-read-only-folder",
        lambda w, out: ["sample", out / "new"],
        "cannot write",
        "is not writable",
        read_only,
    ),
    *(
        CliCase(
            f"sample-size-{size}",
            lambda w, out, size=size: ["sample", out / "new", "--size", size],
            f"size={size}",
            "size >= 32",
        )
        for size in ("0", "1", "-5")
    ),
    CliCase(
        "sample-negative-seed",
        lambda w, out: ["sample", out / "new", "--seed", "-1"],
        "seed=-1",
        "seed >= 0",
    ),
    CliCase(
        "sample-larger-than-memory",
        lambda w, out: ["sample", out / "new", "--size", "1000000"],
        "a sample of size 1000000 needs about",
        "GiB is free",
    ),
    CliCase(
        "training-batch-larger-than-memory",
        lambda w, out: [
            *_train(lambda w: w.source)(w, out),
            *("--batch-size", "100000", "--width", "64"),  # about 590 GiB
        ],
        "a training step of batch size 100000 with 32-pixel patches needs about",
        "GiB is free",
    ),
    # settings
    CliCase(
        "zero-steps",
        lambda w, out: [
            "train",
            "--source",
            w.source,
            "--out",
            out / "m.pt",
            *TINY,
            "--steps",
            "0",
        ],
        "got 0",
        "steps must be at least 1",
    ),
    CliCase(
        "patch-not-a-multiple",
        lambda w, out: [
            "train",
            "--source",
            w.source,
            "--out",
            out / "m.pt",
            *TINY,
            "--patch-size",
            "30",
        ],
        "got 30",
        "patch_size must be a multiple of 4",
    ),
    CliCase(
        "overlap-not-below-tile",
        _predict(None, None, "--tile-size", "32", "--overlap", "32"),
        "overlap (32)",
        "between 0 and tile_size - 1",
    ),
    CliCase(
        "threshold-out-of-range",
        _predict(None, None, "--threshold", "1.5"),
        "got 1.5",
        "--threshold must be between 0 and 1",
    ),
    *(
        CliCase(
            f"evaluate-threshold-{value}",
            lambda w, out, value=value: [
                *("evaluate", "--model", w.model, "--data", w.target, "--device", "cpu"),
                *("--threshold", value, "--metrics", out / "s.json"),
            ],
            f"got {value}",
            "--threshold must be between 0 and 1, exclusive",
        )
        for value in ("1.5", "nan", "0.0")
    ),
    CliCase(
        "unknown-device",
        lambda w, out: [
            "train",
            "--source",
            w.source,
            "--out",
            out / "m.pt",
            *TINY,
            "--device",
            "gpu",
        ],
        "unknown device 'gpu'",
        "expected auto, cpu, cuda[:N] or mps",
    ),
    CliCase(
        "meta-device",
        lambda w, out: [
            "train",
            "--source",
            w.source,
            "--out",
            out / "m.pt",
            *TINY,
            "--device",
            "meta",
        ],
        "unknown device 'meta'",
        "expected auto, cpu, cuda[:N] or mps",
    ),
    *(
        CliCase(
            f"seed-{seed}",
            lambda w, out, seed=seed: [
                "train",
                "--source",
                w.source,
                "--out",
                out / "m.pt",
                *TINY,
                "--seed",
                seed,
            ],
            f"got {seed}",
            "seed must be between 0 and 2**63 - 1",
        )
        for seed in ("-1", str(2**70))
    ),
    CliCase(
        "label-slices-out-of-range",
        _adapt(lambda w: w.target, "--label-slices", "99"),
        "label slices 99 are out of range",
        "has slices 0-",
    ),
    CliCase(
        "label-slices-not-integers",
        _adapt(lambda w: w.target, "--label-slices", "first"),
        "got 'first'",
        "must be integers like 0,3",
    ),
    CliCase(
        "label-slices-of-a-file-target",
        _adapt(lambda w: w.tif("target.tif", w.other), "--label-slices", "0"),
        "--label-slices 0 picks slices of a dataset directory target's train/labels, but --target",
        "target.tif is not one; expected a dataset directory target, or --target-labels",
    ),
    CliCase(
        "label-slices-without-a-target",
        lambda w, out: [*_train(lambda w: w.source)(w, out), "--label-slices", "0"],
        "--label-slices 0 picks slices",
        "but no --target was given; expected a dataset directory target",
    ),
    CliCase(
        "labels-unused-by-the-mode",
        _adapt(lambda w: w.target, "--label-slices", "0", "--mode", "adversarial"),
        "labelled target slices were given",
        "choose the semi-supervised or a mean-teacher mode",
    ),
]


@pytest.fixture
def out(tmp_path, world) -> Path:
    """An output folder holding files from an earlier day that must survive untouched."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.pt").write_bytes(b"a model from last week")
    (folder / "sub").mkdir()
    (folder / "stack").mkdir()
    shutil.copy(world.tif("whole.tif", world.image), folder / "keep.tif")
    for index in range(2):
        tifffile.imwrite(folder / "stack" / f"s{index}.tif", world.image[index])
    for path in folder.rglob("*"):
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return folder


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case,
            id=case.id,
            marks=[
                pytest.mark.xfail(
                    raises=(ValueError, RuntimeError), strict=True, reason=case.known_bug
                )
            ]
            if case.known_bug
            else [],
        )
        for case in CLI_CASES
    ],
)
def test_cli_refuses_bad_input(world, out, case, capsys, monkeypatch) -> None:
    argv = [str(part) for part in case.argv(world, out)]
    before = snapshot(out)
    capsys.readouterr()
    guard = case.context(out, monkeypatch) if case.context else contextlib.nullcontext()
    with guard:
        code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith("error: ")
    assert err.rstrip("\n").splitlines()[-1] == errors[0]  # the last word, no traceback after
    assert case.found in errors[0], errors[0]
    assert case.expected in errors[0], errors[0]
    assert snapshot(out) == before
    assert not world.marker.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--source", "s", "--out", "m.pt", "--steps", "many"], "invalid int value"),
        (["adapt", "--source", "s", "--target", "t", "--out", "m.pt", "--mode", "x"], "choice"),
    ],
)
def test_cli_unparseable_options(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert message in errors[0]


def test_the_pickled_payload_is_live(world, tmp_path) -> None:
    """The payload of the pickled-code cases does run when loaded unsafely: the test bites."""
    marker = tmp_path / "ran"
    path = tmp_path / "payload.pt"
    checkpoint = torch.load(world.model, weights_only=True)
    checkpoint["metadata"] = _Payload(marker)
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="holds more than weights"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what a careless loader would do
    assert marker.exists()
