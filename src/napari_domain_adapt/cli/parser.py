"""The arguments of ``napari-domain-adapt COMMAND``: one subparser per command, each
option with its help and default."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_domain_adapt import __version__
from napari_domain_adapt.core import (
    ADAPTIVE,
    DEFAULT_AUTHOR,
    DEFAULT_LICENSE,
    DEFAULT_NAME,
    IMAGE_KINDS,
    PRESETS,
    SETTINGS,
    Setting,
)

EXIT_BAD_INPUT = 2
_MODEL_HELP = "checkpoint (.pt) or bioimage.io package (.zip)"
_OVERWRITE_HELP = "replace existing outputs (never a file that this command reads)"
_DEVICE_HELP = "auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:1 or mps"


class _HelpFormatter(argparse.HelpFormatter):
    """Help that ends with each option's default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if not action.option_strings or default in (None, False, argparse.SUPPRESS):
            return text
        if "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


_PIXEL_SIZE_HELP = (
    "pixel size of {what}, instead of what its file says: 4nm (y and x), 50,4,4nm (z, y, x) "
    "or 0.004um; {effect}"
)
_UNIT_HELP = (
    "unit of the pixel sizes given without one (nm, um, ...), and of sizes that a file "
    "declares without one (HDF5 'resolution')"
)


def _add_pixel_size_options(
    parser: argparse.ArgumentParser,
    names: dict[str, str],
    effect: str = "written into the outputs; a model trained at another pixel size predicts "
    "it resampled to its own, and returns the result on its grid",
) -> None:
    """``--NAME SIZE`` for each input of ``names`` (option -> what it sizes), and ``--unit``;
    ``effect`` ends the help: what the command does with the size."""
    for option, what in names.items():
        parser.add_argument(
            option, metavar="SIZE", help=_PIXEL_SIZE_HELP.format(what=what, effect=effect)
        )
    parser.add_argument("--unit", help=_UNIT_HELP)


def _add_training_options(parser: argparse.ArgumentParser, adapt: bool) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--source",
        required=not adapt,
        help="labelled source: dataset dir or image"
        + (
            " (adapt without it: a mean teacher adapts --start-from MODEL to the target)"
            if adapt
            else ""
        ),
    )
    data.add_argument("--source-labels", help="source labels (when --source is an image file)")
    data.add_argument(
        "--source-masks",
        help="which pixels of --source-labels count (0 = not labelled, 1 or 255 = labelled): "
        "the valid pixels that `membranes --valid-out` writes, or a field of view",
    )
    data.add_argument(
        "--target",
        required=adapt,
        help="unlabelled target: dataset dir (train split; test split scores), image, or a "
        "zarr volume or HDF5 dataset file.h5:raw (read patch by patch: it need not fit in "
        "memory)",
    )
    data.add_argument(
        "--target-labels",
        help="labels of some target slices (an image stack; slices with any label count), "
        "learned from by the mean-teacher and semi-supervised modes; a zarr target is "
        "still read patch by patch, its labels in memory",
    )
    data.add_argument(
        "--target-label-kind",
        choices=["dense", "sparse"],
        default="dense",
        help="dense: whole labelled slices (0/1 or 0/255; empty slices are unlabelled); "
        "sparse: scribbles (0 unlabelled, 1 background, 2 structure)",
    )
    data.add_argument(
        "--label-slices",
        help="with a dataset dir: comma-separated target train slices whose labels may be "
        "used, e.g. 0",
    )
    _add_pixel_size_options(
        data,
        {"--source-pixel-size": "--source", "--target-pixel-size": "--target"},
        effect="written into the outputs (the model keeps both)",
    )
    data.add_argument(
        "--start-from",
        type=Path,
        metavar="MODEL",
        help="a model of ours (checkpoint or bioimage.io package) to start from instead of a "
        "new U-Net: its weights, architecture and preprocessing",
    )
    if adapt:
        guard = parser.add_argument_group("guard")
        guard.add_argument(
            "--baseline",
            type=Path,
            help="a source-only model (e.g. from train) to compare the adapted one with, "
            "without target labels: the guard's verdict is printed and kept in --metrics "
            "(default: the --start-from model, where --source is given: before vs after)",
        )
        guard.add_argument(
            "--keep-better",
            action="store_true",
            help="write whichever of the baseline (--baseline, or the --start-from model) and "
            "the adapted model the guard prefers to --out",
        )
    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, type=Path, help="checkpoint file to write (.pt)")
    out.add_argument("--metrics", type=Path, help="also write the metrics JSON to this file")
    out.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    out.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its state file (OUT.state)",
    )
    out.add_argument(
        "--state-every",
        type=int,
        default=100,
        metavar="N",
        help="write the run's state to OUT.state every N steps; it is deleted once OUT is written",
    )
    run = parser.add_argument_group("training")
    if adapt:
        run.add_argument(
            "--mode",
            choices=ADAPTIVE,
            help="mean-teacher (default: the best mode on our benchmark, with or without "
            "target labels; it learns from any given), adversarial (the paper's method), "
            "semi-supervised (the paper's, with target labels) or adversarial+mean-teacher",
        )
    run.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="start from a named set of settings (laptop: the widget's, for a CPU and small "
        "images); the options below change it",
    )
    run.add_argument(
        "--images",
        choices=sorted(IMAGE_KINDS),
        default="em",
        help="preprocessing preset: em (grey, robust scaling) or fundus (green "
        "channel, CLAHE, field of view found where no mask is given)",
    )
    run.add_argument(
        "--channel",
        choices=["luminance", "green", "mean"],
        help="how RGB becomes grey (default: the preset's)",
    )
    run.add_argument("--clahe", action="store_true", help="local contrast equalisation")
    run.add_argument(
        "--field-of-view",
        action="store_true",
        help="find the field of view of fundus photographs that come without a mask",
    )
    add_settings(parser, ADAPTIVE if adapt else ("source-only",))


def add_settings(
    parser: argparse.ArgumentParser,
    modes: Sequence[str],
    settings: Sequence[Setting] = SETTINGS,
) -> None:
    """An option for each setting that acts in any of ``modes``, under its group's title.

    Options default to None (not given), so that :func:`given_settings` tells what the
    command line changed; the help says the default they stand for.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in settings:
        if not set(modes) & set(setting.modes):
            continue
        if setting.group not in groups:
            groups[setting.group] = _group(parser, setting.group)
        default = setting.default()
        shown = "" if default is None else f" (default: {_shown(default)})"
        options: dict[str, Any] = {"dest": _dest(setting), "help": setting.help + shown}
        if setting.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = setting.kind
            if setting.choices and not setting.open_choices:
                options["choices"] = setting.choices
            else:
                name = setting.option.removeprefix("--").replace("-", "_").upper()
                options["metavar"] = "N" if setting.kind is int else name
        groups[setting.group].add_argument(setting.option, **options)


def given_settings(
    args: argparse.Namespace, settings: Sequence[Setting] = SETTINGS
) -> dict[str, Any]:
    """The settings given on the command line, by their configuration path."""
    given = {}
    for setting in settings:
        value = getattr(args, _dest(setting), None)
        if value is not None:
            given[setting.path] = value
    return given


def _group(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """The parser's argument group ``title``, made if it is not there yet."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def _dest(setting: Setting) -> str:
    return "setting__" + setting.path.replace(".", "__")


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="napari-domain-adapt",
        description="Adapt a segmentation U-Net to a new, unlabelled target domain: by "
        "mean-teacher self-training (the default) or by the adversarial domain adaptation "
        "of Javanmardi & Tasdizen (ISBI 2018).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser = functools.partial(commands.add_parser, formatter_class=_HelpFormatter)

    demo = commands.add_parser(
        "demo",
        help="open napari with the sample pair and the widget docked",
        description="Open napari with a generated EM pair (a labelled source stack and a "
        "target of another contrast) and the Domain adaptation widget docked, its inputs "
        "chosen: click Adapt, watch the live preview, then Export mask.",
    )
    demo.add_argument(
        "--check",
        type=int,
        metavar="STEPS",
        help="check the installation: click Adapt at once with STEPS steps, wait for the "
        "result layers, close napari, and exit with status 0 if all went well",
    )
    demo.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="with --check: save a screenshot of the window before closing it",
    )

    sample = commands.add_parser("sample", help="write the generated EM sample pair as datasets")
    sample.add_argument("folder", type=Path, help="creates FOLDER/source and FOLDER/target")
    sample.add_argument("--seed", type=int, default=0, help="random seed of the generated pair")
    sample.add_argument("--size", type=int, default=256, help="side of each slice in pixels")
    sample.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)

    train = commands.add_parser("train", help="train on the source only (the baseline)")
    _add_training_options(train, adapt=False)
    adapt = commands.add_parser("adapt", help="adapt to the target (mean teacher, adversarial)")
    _add_training_options(adapt, adapt=True)

    predict = commands.add_parser("predict", help="predict probabilities or a mask")
    predict.add_argument("--model", required=True, type=Path, help=_MODEL_HELP)
    predict.add_argument(
        "--input",
        required=True,
        help="image file (a slice or a stack) or folder of slices of one size; an HDF5 "
        "dataset file.h5:raw; or a zarr store, OME-Zarr at its first level or the one named "
        "(raw.zarr/1), which needs a .zarr --out; with a .zarr --out the input is read block "
        "by block; for a dataset dir, give its DIR/test/images",
    )
    predict.add_argument(
        "--out",
        required=True,
        type=Path,
        help="TIFF to write; or NAME.zarr: an OME-Zarr image written block by block, for "
        "volumes larger than memory, with coarser levels for slices over 512 pixels",
    )
    predict.add_argument(
        "--threshold",
        type=float,
        help="write a 0/255 uint8 mask at this threshold instead of probabilities",
    )
    predict.add_argument(
        "--tile-size", type=int, help="tile side (default: automatic, tiles of up to 512)"
    )
    predict.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels")
    predict.add_argument(
        "--chunk",
        type=int,
        default=2048,
        help="zarr output: Y/X side of the blocks (a smaller slice is predicted whole)",
    )
    predict.add_argument(
        "--chunk-overlap",
        type=int,
        help="zarr output: context each block borrows from its neighbours (default: the "
        "U-Net's receptive radius, 96 pixels at depth 4)",
    )
    predict.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    predict.add_argument("--device", default="auto", help=_DEVICE_HELP)
    predict.add_argument(
        "--amp",
        action="store_true",
        help="bfloat16: 2.4x faster prediction on CPUs with AVX512-BF16 or AMX and on recent "
        "GPUs (slower where bfloat16 is emulated); probabilities change by up to about 0.01",
    )
    _add_pixel_size_options(predict, {"--pixel-size": "--input"})
    predict.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)

    export = commands.add_parser(
        "export", help="write a model as a bioimage.io package (zip) for other tools"
    )
    export.add_argument("--model", required=True, type=Path, help=_MODEL_HELP)
    export.add_argument(
        "--image",
        required=True,
        help="an image of the model's kind: a crop of it becomes the package's test data",
    )
    export.add_argument("--out", required=True, type=Path, help="package to write (.zip)")
    export.add_argument("--name", default=DEFAULT_NAME, help="the model's name")
    export.add_argument(
        "--author",
        action="append",
        help=f"an author (repeat for several; default: {DEFAULT_AUTHOR})",
    )
    export.add_argument(
        "--license", default=DEFAULT_LICENSE, help="SPDX licence id of the package"
    )
    export.add_argument("--description", help="one paragraph on what the model is for")
    export.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)

    membranes = commands.add_parser(
        "membranes", help="membrane ground truth (0/255 TIFF) from instance labels (ids)"
    )
    membranes.add_argument("--input", required=True, help="instance label image or stack")
    membranes.add_argument("--out", required=True, type=Path, help="membrane TIFF to write")
    membranes.add_argument("--width", type=int, default=1, help="membrane width in pixels")
    membranes.add_argument(
        "--zero",
        choices=["background", "ignore"],
        default="background",
        help="id 0 is an instance like any other, or unlabelled (see --valid-out)",
    )
    membranes.add_argument("--valid-out", type=Path, help="also write the valid-pixel mask")
    _add_pixel_size_options(membranes, {"--pixel-size": "--input"}, "written into the outputs")
    membranes.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)

    evaluate = commands.add_parser("evaluate", help="score a model on labelled data (JSON)")
    evaluate.add_argument("--model", required=True, type=Path, help=_MODEL_HELP)
    evaluate.add_argument(
        "--data", required=True, help="dataset dir (its test split) or image file/folder"
    )
    evaluate.add_argument("--labels", help="labels when --data is an image file or folder")
    evaluate.add_argument("--masks", help="field-of-view masks for --data images")
    _add_pixel_size_options(
        evaluate,
        {"--pixel-size": "--data"},
        "a model trained at another pixel size predicts it resampled to its own, and is "
        "scored on the labels' grid",
    )
    evaluate.add_argument(
        "--threshold", type=float, default=0.5, help="probability above which a pixel is structure"
    )
    evaluate.add_argument("--device", default="auto", help=_DEVICE_HELP)
    evaluate.add_argument("--metrics", type=Path, help="also write the JSON to this file")
    evaluate.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    return parser
