"""What each CLI subcommand does; :mod:`napari_domain_adapt.cli` parses the arguments."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_domain_adapt.cli.parser import given_settings
from napari_domain_adapt.core import (
    DEFAULT_AUTHOR,
    IMAGE_KINDS,
    IMAGE_SUFFIXES,
    Domain,
    InputError,
    Judged,
    PixelSize,
    PredictionStarted,
    Preprocessing,
    SegmentationModel,
    SlicePredicted,
    StateFile,
    TrainConfig,
    TrainEvent,
    atomic_folder,
    atomic_write,
    best_threshold,
    check_not_an_input,
    check_output,
    check_threshold,
    describe_scaling,
    export_bioimageio,
    is_dataset,
    is_zarr,
    load_dataset,
    load_model,
    make_sample_pair,
    normalise_unit,
    open_source,
    open_target,
    parse_pixel_size,
    predict,
    preset,
    read_pixel_size,
    read_volume,
    run_lock,
    save_checkpoint,
    segmentation_scores,
    train_and_predict,
    with_values,
    write_tiff,
    write_tiffs,
)


def print_json(data: dict[str, Any]) -> None:
    """Print ``data`` as indented JSON on stdout."""
    print(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _refuse_existing(
    paths: list[Path | None], overwrite: bool, inputs: list[str | Path | None] = ()
) -> None:
    """Fail before any work if an output exists (unless ``overwrite``), has no folder or a
    read-only one, is named twice, or would replace or join one of the ``inputs``."""
    chosen = [Path(path) for path in paths if path is not None]
    read = [Path(path) for path in inputs if path is not None]
    stacks = {folder.resolve() for path in read for folder in _stack_folders(path)}
    seen: set[Path] = set()
    for path in chosen:
        where = path.resolve()
        if where in seen:
            raise InputError(f"{path} is named for two outputs; expected one file per output")
        seen.add(where)
        check_not_an_input(path, inputs)
        if path.suffix.lower() in IMAGE_SUFFIXES and where.parent in stacks:
            raise InputError(
                f"{path} would be written into the input folder {path.parent}, where the next "
                "run would read it as one more slice; choose another folder"
            )
        check_output(path, overwrite, how="pass --overwrite")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise InputError(f"cannot write {path}: the folder {path.parent} is not writable")


def _stack_folders(path: Path) -> list[Path]:
    """The folders whose images an input path is read from (none for a file)."""
    if not path.is_dir():
        return []
    if is_dataset(path):
        kinds = ("images", "labels", "masks")
        return [path / split / kind for split in ("train", "test") for kind in kinds]
    return [path]


def _pixel_size(
    args: argparse.Namespace, path: str | Path | None, option: str = "--pixel-size"
) -> PixelSize | None:
    """The pixel size of input ``path``: ``option``'s value, else what its file declares
    (given ``--unit`` where it declares none, converted to ``--unit`` where it does)."""
    given = getattr(args, option.lstrip("-").replace("-", "_"))
    if given is not None:
        try:
            return parse_pixel_size(given, args.unit)
        except InputError as error:
            raise InputError(f"{option} {given}: {error}") from error
    unit = normalise_unit(args.unit)
    found = None if path is None else read_pixel_size(path)
    if found is None or unit is None:
        return found
    return found.to(unit) if found.unit else PixelSize(found.sizes, unit)


def _write_json(path: Path, data: dict[str, Any], overwrite: bool) -> None:
    with atomic_write(path, overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")


def _load_source(args: argparse.Namespace) -> Domain | None:
    if args.source is None:
        given = [name for name in ("source_labels", "source_masks") if getattr(args, name)]
        if given:
            options = " and ".join("--" + name.replace("_", "-") for name in given)
            raise InputError(f"{options} given without --source; expected them with --source")
        return None  # source-free: the model to start from is the run's knowledge
    size = _pixel_size(args, _images_of(args.source), "--source-pixel-size")
    return open_source(args.source, args.source_labels, size, args.source_masks)


def _images_of(path: str) -> Path | str:
    """Where the images of an input are: a dataset's train/images folder, else the path."""
    return Path(path) / "train" / "images" if is_dataset(path) else path


def _parse_slices(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise InputError(f"--label-slices must be integers like 0,3; got {text!r}") from error


def _load_target(args: argparse.Namespace) -> tuple[Domain | None, Domain | None]:
    """The target to adapt to, and a labelled target test split to score on (if any)."""
    _check_label_slices(args)
    if args.target is None:
        return None, None
    return open_target(
        args.target,
        args.target_labels,
        label_kind=args.target_label_kind,
        label_slices=_parse_slices(args.label_slices) if args.label_slices else None,
        pixel_size=_pixel_size(args, _images_of(args.target), "--target-pixel-size"),
    )


def _check_label_slices(args: argparse.Namespace) -> None:
    """``--label-slices`` picks slices of a dataset directory's labels; refuse it anywhere
    else rather than ignore it."""
    if not args.label_slices or (args.target is not None and is_dataset(args.target)):
        return
    given = "no --target was given" if args.target is None else f"--target {args.target} is not"
    raise InputError(
        f"--label-slices {args.label_slices} picks slices of a dataset directory target's "
        f"train/labels, but {given}{'' if args.target is None else ' one'}; expected a dataset "
        "directory target, or --target-labels with only the chosen slices labelled"
    )


def _config(args: argparse.Namespace, mode: str) -> TrainConfig:
    """The run's configuration: the preset (or the defaults), changed by the options given."""
    values = {"mode": mode, "preprocessing": _preprocessing(args), "preview_interval": None}
    return with_values(preset(args.preset), {**given_settings(args), **values})


def _preprocessing(args: argparse.Namespace) -> Preprocessing:
    """The ``--images`` preset, changed by ``--channel``, ``--clahe`` and ``--field-of-view``."""
    changes: dict[str, Any] = {"channel": args.channel} if args.channel else {}
    changes.update({name: True for name in ("clahe", "field_of_view") if getattr(args, name)})
    return dataclasses.replace(IMAGE_KINDS[args.images], **changes)


def _scores(model, domain: Domain, threshold: float = 0.5) -> dict[str, Any]:
    probabilities = model.predict(domain.images, domain.masks, pixel_size=domain.pixel_size)
    scores = segmentation_scores(probabilities, domain.labels, domain.masks, threshold)
    cut, best = best_threshold(probabilities, domain.labels, domain.masks)
    # The best threshold is picked on these very labels: an upper bound, never a result.
    scores["oracle_threshold"], scores["oracle_f1"] = cut, best
    return scores


def _progress(total: int, unit: str = "step"):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, mininterval=1.0, dynamic_ncols=True)


def _run_training(args: argparse.Namespace, mode: str | None) -> int:
    inputs = [args.source, args.source_labels, args.source_masks, args.target]
    inputs += [args.target_labels, getattr(args, "baseline", None), args.start_from]
    if getattr(args, "keep_better", False) and _baseline_path(args) is None:
        raise InputError(
            "--keep-better keeps the better of two models: give --baseline too (or "
            "--start-from with --source, whose model is then the baseline)"
        )
    if args.source is None and args.start_from is None:
        raise InputError(
            "no --source: give the labelled source, or --start-from MODEL to adapt a trained "
            "model to the target alone (source-free, by a mean teacher)"
        )
    if args.source is None and getattr(args, "baseline", None) is not None:
        raise InputError("--baseline is compared on labelled source slices: give --source too")
    _refuse_existing([args.out, args.metrics], args.overwrite, inputs)
    with run_lock(args.out):  # a second run on this --out is refused now, not after training
        return _train_and_write(args, mode)


def _baseline_path(args: argparse.Namespace) -> Path | None:
    """The model ``adapt``'s guard compares the adapted one with: ``--baseline``, else the
    ``--start-from`` model where a source is given (before vs after); None for ``train``."""
    if not hasattr(args, "baseline"):
        return None  # train: no guard
    if args.baseline is not None:
        return args.baseline
    return args.start_from if args.source is not None else None


def _train_and_write(args: argparse.Namespace, mode: str | None) -> int:
    source = _load_source(args)
    target, test = _load_target(args)
    initial = None if args.start_from is None else load_model(args.start_from, "cpu")
    config = _config(args, mode or args.mode or TrainConfig().mode)
    working = initial.pixel_size if source is None else source.pixel_size
    _say_pixel_sizes(config, working, target, from_model=source is None)
    state = StateFile(args.out.with_name(args.out.name + ".state"), args.state_every)
    if state.path.exists() and not args.resume:
        raise InputError(
            f"{state.path} holds the state of an interrupted run; pass --resume to continue "
            "it, or delete it to start over"
        )
    baseline = _baseline(args, initial, config)
    run = train_and_predict(
        config,
        source,
        target,
        state=state,
        initial=initial,
        baseline=baseline,
        held_source=None if baseline is None else _held_source(args, source),
        keep_better=bool(baseline is not None and args.keep_better),
    )
    finished, judged = _follow(run, config.steps)
    if initial is not None:
        finished.model.metadata["started_from"] = str(args.start_from)
    kept = finished.model if judged is None else judged.model
    save_checkpoint(kept, args.out, overwrite=args.overwrite)
    state.path.unlink(missing_ok=True)  # the model is safe: nothing left to resume
    result: dict[str, Any] = {
        "mode": config.mode,
        "steps": finished.steps,
        "selected_step": finished.model.metadata["selected_step"],
        "checks": [
            {k: row[k] for k in ("step", "consistency", "entropy")}
            for row in finished.history
            if row.get("consistency") is not None
        ],
        "seconds": round(finished.elapsed, 1),
        "device": finished.device,
        "checkpoint": str(args.out),
        "config": config.to_dict(),
    }
    if judged is not None:
        print(f"guard: {judged.reason}", file=sys.stderr)
        result["guard"] = _guard_entry(judged, _baseline_path(args))
    if test is not None:
        result["target_test"] = _scores(kept, test)
    print_json(result)
    if args.metrics is not None:
        _write_json(args.metrics, result, args.overwrite)
    return 0


def _baseline(
    args: argparse.Namespace, initial: SegmentationModel | None, config: TrainConfig
) -> SegmentationModel | None:
    """The guard's baseline model (see :func:`_baseline_path`), loaded before training so
    that a bad file is refused at once; the ``--start-from`` model itself where it is one."""
    path = _baseline_path(args)
    if path is None:
        return None
    if args.baseline is None:
        return initial  # train copies it and leaves it unchanged
    return load_model(path, _device(config.device))


def _held_source(args: argparse.Namespace, source: Domain | None) -> Domain | None:
    """The labelled source slices the guard scores both models on: the dataset's test split
    where it has one (held back from training); else the training slices, which flatter
    both models alike."""
    if source is None or not is_dataset(args.source):
        return source
    if not (Path(args.source) / "test" / "labels").is_dir():
        return source
    held = load_dataset(args.source, "test", labels=True, name="source test")
    held.pixel_size = source.pixel_size
    return held


def _guard_entry(judged: Judged, baseline: Path | None) -> dict[str, Any]:
    """The guard's entry of the results: the baseline, the verdict and the model kept."""
    verdict = judged.verdict
    return {
        "baseline": None if baseline is None else str(baseline),
        "prefer": None if verdict is None else verdict.prefer,
        "kept": judged.kept,
        "reason": judged.reason,
        "decided_by": None if verdict is None else verdict.decided_by,
        "estimates": {} if verdict is None else verdict.estimates,
    }


def _say_pixel_sizes(
    config: TrainConfig,
    working: PixelSize | None,
    target: Domain | None,
    from_model: bool = False,
) -> None:
    """Print the working and the target's pixel sizes and what the run does with them, and
    which option gives a size where one is missing or has no unit (``from_model``: the
    working size is the starting model's, which no option changes)."""
    sizes = (working, None if target is None else target.pixel_size)
    if target is None or all(size is None for size in sizes):
        return
    scaling = describe_scaling(*sizes, resample=config.alignment.pixel_size)
    options = ("--source-pixel-size", "--target-pixel-size")
    missing = [
        option
        for option, size in zip(options, sizes, strict=True)
        if (size is None or size.unit is None) and not (from_model and option == options[0])
    ]
    hint = ""
    if missing and config.alignment.pixel_size:
        hint = f" (to match them, give {' and '.join(missing)} with a unit, e.g. 4nm)"
    print(f"pixel sizes: {scaling}{hint}", file=sys.stderr)


def _follow(events: Iterator[Any], steps: int) -> tuple[Any, Judged | None]:
    """Show training's progress on a bar; returns its TrainFinished and the guard's Judged
    (None without a baseline). The bar is closed (its line ended) before any error, so the
    error gets a line of its own."""
    finished = judged = None
    with _progress(steps) as bar:
        for event in events:
            if isinstance(event, TrainEvent):
                if bar.n == 0:
                    bar.update(event.step - 1)  # steps done before a resume
                bar.update(1)
                losses = {"sup": f"{event.supervised_loss:.3f}"}
                if event.domain_loss is not None:
                    losses["dom"] = f"{event.domain_loss:.3f}"
                    losses["acc"] = f"{event.domain_accuracy:.2f}"
                bar.set_postfix(losses, refresh=False)
            elif isinstance(event, Judged):
                judged = event
            else:
                finished = event
    return finished, judged


def run_train(args: argparse.Namespace) -> int:
    """``train``: the source-only baseline."""
    return _run_training(args, "source-only")


def run_adapt(args: argparse.Namespace) -> int:
    """``adapt``: adversarial, or semi-supervised with labelled target slices."""
    return _run_training(args, None)


def run_predict(args: argparse.Namespace) -> int:
    """``predict``: probabilities (float32) or a 0/255 mask, as TIFF or into a zarr store."""
    if args.threshold is not None:
        check_threshold(args.threshold, "--threshold")
    into_store = args.out.suffix.lower() == ".zarr" or is_zarr(args.input)
    if into_store:
        _check_store_output(args)
    else:
        _refuse_existing([args.out], args.overwrite, [args.model, args.input])
        _refuse_dataset(args.input)
    size = _pixel_size(args, args.input)
    model = load_model(args.model, _device(args.device))
    options = {"tile_size": args.tile_size, "tile_overlap": args.overlap, "amp": args.amp}
    options.update(batch_size=args.batch_size, threshold=args.threshold, name=str(args.input))
    options["pixel_size"] = size  # at another scale than the model's: resampled and back
    if into_store:
        store = {"store": args.out, "overwrite": args.overwrite}
        store.update(chunk=args.chunk, overlap=args.chunk_overlap)
        result = _predicted(predict(model, args.input, **store, **options))
    else:
        result = _predicted(predict(model, read_volume(args.input), **options))
        write_tiff(args.out, result, overwrite=args.overwrite, pixel_size=size)
    print(f"wrote {args.out} ({result.shape}, device {model.device})", file=sys.stderr)
    return 0


def _check_store_output(args: argparse.Namespace) -> None:
    if args.out.suffix.lower() != ".zarr":
        raise InputError(
            f"--input {args.input} is a zarr store: it is predicted out of core into a zarr "
            f"store; give --out NAME.zarr (got {args.out})"
        )
    check_not_an_input(args.out, [args.input, args.model])


def _refuse_dataset(path: Path) -> None:
    if is_dataset(path):
        raise InputError(
            f"--input {path} is a dataset directory, whose splits may hold images of "
            f"several sizes; expected images: give --input {Path(path) / 'test' / 'images'} "
            f"(one stack), or score the dataset with evaluate --data {path}"
        )


def _predicted(events: Iterator[Any]) -> Any:
    """Show prediction's progress (slices) on a bar; returns the result."""
    done, bar = None, None
    try:
        for event in events:
            if isinstance(event, PredictionStarted):
                bar = _progress(event.total, "slice")
            elif isinstance(event, SlicePredicted):
                bar.update(event.done - bar.n)
            else:
                done = event
    finally:
        if bar is not None:
            bar.close()
    return done.probabilities


def run_export(args: argparse.Namespace) -> int:
    """``export``: a bioimage.io model package (zip) with test data cut from ``--image``."""
    _refuse_existing([args.out], args.overwrite, [args.model, args.image])
    model = load_model(args.model, "cpu")
    export_bioimageio(
        model,
        read_volume(args.image),
        args.out,
        name=args.name,
        authors=args.author or [DEFAULT_AUTHOR],
        license=args.license,
        description=args.description,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.out} (bioimage.io model package)", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: precision, recall, F1, IoU at a threshold, as JSON."""
    _refuse_existing(
        [args.metrics], args.overwrite, [args.model, args.data, args.labels, args.masks]
    )
    check_threshold(args.threshold, "--threshold")
    model = load_model(args.model, _device(args.device))
    if is_dataset(args.data):
        domain = load_dataset(args.data, "test", labels=True)
        images = Path(args.data) / "test" / "images"
    else:
        if not args.labels:
            raise InputError("--data is an image, not a dataset directory; give --labels")
        masks = read_volume(args.masks) if args.masks else None
        domain = Domain(read_volume(args.data), read_volume(args.labels), masks)
        images = args.data
    domain.pixel_size = _pixel_size(args, images)
    result = {"model": str(args.model), "data": str(args.data)}
    result.update(_scores(model, domain, args.threshold))
    print_json(result)
    if args.metrics is not None:
        _write_json(args.metrics, result, args.overwrite)
    return 0


def run_sample(args: argparse.Namespace) -> int:
    """``sample``: write the generated pair as two dataset directories.

    ``source`` has labelled train and test splits; ``target`` has train images for
    adaptation (their labels too, for semi-supervised trials) and a separate labelled test
    split for scoring. Both are written into a hidden folder beside FOLDER and moved into
    it at the end: a full disk or a Ctrl-C leaves no partial dataset.
    """
    root: Path = args.folder
    _check_sample_folder(root, args.overwrite)
    train_pair = make_sample_pair(size=args.size, seed=args.seed)
    test_pair = make_sample_pair(n_source=4, n_target=4, size=args.size, seed=args.seed + 1000)
    splits = {
        ("source", "train"): (train_pair.source_image, train_pair.source_labels),
        ("source", "test"): (test_pair.source_image, test_pair.source_labels),
        ("target", "train"): (train_pair.target_image, train_pair.target_labels),
        ("target", "test"): (test_pair.target_image, test_pair.target_labels),
    }
    with atomic_folder(root) as building:
        for (name, split), (images, labels) in splits.items():
            for kind, stack in (("images", images), ("labels", labels * 255)):
                folder = building / name / split / kind
                folder.mkdir(parents=True)
                for index, image in enumerate(stack):
                    write_tiff(folder / f"slice_{index:03d}.tif", image)
    print(f"wrote {root / 'source'} and {root / 'target'}", file=sys.stderr)
    return 0


def _check_sample_folder(root: Path, overwrite: bool) -> None:
    """Refuse a FOLDER that is a file, is not empty (unless ``overwrite``), or cannot be
    made in its parent."""
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file; expected a folder to write the datasets into")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise InputError(f"{root} exists and is not empty; choose another folder or --overwrite")
    if not root.parent.is_dir():
        raise InputError(f"cannot write {root}: the folder {root.parent} does not exist")
    for folder in (root.parent, root) if root.is_dir() else (root.parent,):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"cannot write {root}: the folder {folder} is not writable")


def run_membranes(args: argparse.Namespace) -> int:
    """``membranes``: instance ids to a 0/255 membrane mask, slice by slice."""
    from napari_domain_adapt.core import instances_to_membranes

    _refuse_existing([args.out, args.valid_out], args.overwrite, [args.input])
    size = _pixel_size(args, args.input)
    membranes, valid = instances_to_membranes(read_volume(args.input), args.width, args.zero)
    images = {args.out: membranes * np.uint8(255)}
    if args.valid_out is not None:
        images[args.valid_out] = valid.astype(np.uint8) * 255
    write_tiffs(images, overwrite=args.overwrite, pixel_size=size)  # both or neither
    print(f"wrote {args.out}: {membranes.mean():.1%} membrane", file=sys.stderr)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """``demo``: napari with the generated sample pair loaded and the widget docked."""
    if args.screenshot is not None and args.check is None:
        raise InputError("--screenshot is taken by --check; give --check STEPS as well")
    if args.check is not None and args.check < 1:
        raise InputError(f"--check {args.check}: expected a number of steps of at least 1")
    try:
        import napari  # noqa: F401
    except ImportError as error:
        raise InputError(
            "the demo needs napari and a Qt binding, which are not installed: "
            "pip install 'napari-domain-adapt[pyqt6]'"
        ) from error
    from napari_domain_adapt.gui.demo import run_demo as open_and_run

    return open_and_run(args.check, args.screenshot)


def _device(name: str):
    from napari_domain_adapt.core import resolve_device

    return resolve_device(name)
