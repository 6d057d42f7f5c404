"""bioimage.io model packages: export a :class:`SegmentationModel`, import one back.

A package (a zip; spec format 0.5) runs unchanged in the tools of the bioimage.io Model Zoo
(deepImageJ, ilastik, BiaPy, ``bioimageio.core``): it holds TorchScript weights, a PyTorch
state dict with its architecture (:func:`~napari_domain_adapt.core.models.build_unet`), test
tensors cut from the user's own image, a cover, a README and the training configuration.
Our preprocessing is described with the spec's own operations (``scale_range`` per image
over y and x, then ``clip``), the logits' sigmoid as postprocessing; CLAHE and histogram
matching have no such description, so models that use them are refused. The y and x axes
carry the pixel size the model was trained at (its source's), as the spec's ``scale`` and
``unit``, where known. ``bioimageio.core`` is an optional dependency (the ``bioimageio``
extra), imported only here and only when called.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import json
import pickle
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from . import _bioimageio_text as text
from .checkpoints import CHECKPOINT_FORMAT, SegmentationModel, load_checkpoint
from .config import (
    DEFAULT_AUTHOR,
    DEFAULT_LICENSE,
    DEFAULT_NAME,
    ModelSpec,
    Preprocessing,
    TrainConfig,
)
from .data import as_image_stack
from .errors import InputError
from .io import atomic_write
from .models import UNet
from .pixel_size import UNITS, PixelSize
from .preprocessing import CLIP_RANGE, preprocess, to_grey

#: ``from ARCHITECTURE[0] import ARCHITECTURE[1]`` rebuilds the network from ``kwargs``.
ARCHITECTURE = ("napari_domain_adapt.core.models", "build_unet")
#: Key of our own section in the package's ``config`` (the checkpoint's fields).
CONFIG_KEY = "napari_domain_adapt"
#: Epsilon of bioimage.io ``scale_range``: ``(x - low) / (high - low + eps)``.
SCALE_EPS = 1e-6
INPUT_ID, OUTPUT_ID = "image", "probability"
_INSTALL = (
    "install napari-domain-adapt[bioimageio] (pip install 'napari-domain-adapt[bioimageio]')"
)
_RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


def _require_bioimageio() -> None:
    try:
        import bioimageio.core
        import bioimageio.spec  # noqa: F401
    except ImportError as error:
        raise InputError(f"bioimage.io packages need bioimageio.core: {_INSTALL}") from error


@contextlib.contextmanager
def _unclosed_files_ignored() -> Iterator[None]:
    """bioimageio.spec's file readers never close their files: silence their warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()


def is_bioimageio(path: str | Path) -> bool:
    """Whether ``path`` looks like a bioimage.io package: a .zip, an rdf.yaml, or its folder."""
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for name in _RDF_NAMES)
    return path.suffix.lower() == ".zip" or path.name.endswith(_RDF_NAMES)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> SegmentationModel:
    """A checkpoint (.pt) or a bioimage.io package (.zip, folder or rdf.yaml), on ``device``."""
    if is_bioimageio(path):
        return load_bioimageio(path, device)
    return load_checkpoint(path, device)


def input_sizes(spec: ModelSpec) -> tuple[int, int]:
    """``(min, step)`` of the side lengths an exported package accepts.

    Multiples of ``2**depth``, so the U-Net pads nothing (the TorchScript trace has no
    padding in it), and at least two pooling cells (the U-Net widens a single cell).
    """
    step = 2**spec.depth
    return 2 * step, step


def export_bioimageio(
    model: SegmentationModel,
    image: object,
    path: str | Path,
    *,
    name: str = DEFAULT_NAME,
    authors: Sequence[str] = (DEFAULT_AUTHOR,),
    license: str = DEFAULT_LICENSE,
    description: str | None = None,
    tags: Sequence[str] = (),
    test_size: int = 256,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io model package (zip) to ``path``, atomically.

    ``image`` is raw data of the kind the model is for (2D grey or RGB, or a stack whose first
    slice is used): a centred square crop of at most ``test_size`` pixels becomes the
    package's test input, and this model's prediction of it the test output. RGB becomes
    grey as in training; the package takes one grey channel. Raises InputError for a model
    whose preprocessing bioimage.io cannot describe (CLAHE, histogram matching), an image
    smaller than the smallest input, bad metadata, or an existing ``path`` without
    ``overwrite``.
    """
    _require_bioimageio()
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; choose another name or allow overwriting")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")
    _check_exportable(model.preprocessing)
    if model.intensity_reference is not None:
        raise InputError(
            "this model matches every image's histogram to its source's, which a "
            "bioimage.io package cannot describe; train without histogram matching to share it"
        )
    crop = _test_crop(model, image, test_size)
    network = copy.deepcopy(model.network).cpu().eval()
    cpu_model = SegmentationModel(network, model.preprocessing, model.config, model.metadata)
    expected = cpu_model.predict(crop, tile_size=crop.shape[0], overlap=0)
    prepared = torch.from_numpy(preprocess(crop[np.newaxis], model.preprocessing))[:, None]
    with tempfile.TemporaryDirectory(prefix="bioimageio-export-") as folder:
        root = Path(folder)
        files = _write_files(root, cpu_model, crop, prepared, expected, name)
        descr = _describe(cpu_model, files, name, authors, license, description, tags)
        from bioimageio.spec import save_bioimageio_package

        with _unclosed_files_ignored():
            package = save_bioimageio_package(descr, output_path=root / "package.zip")
        with atomic_write(path, overwrite=overwrite) as temporary:
            shutil.copyfile(package, temporary)
    return path


def _check_exportable(preprocessing: Preprocessing) -> None:
    if preprocessing.clahe:
        raise InputError(
            "this model uses CLAHE, which a bioimage.io package cannot describe (other tools "
            "would feed it differently prepared images); train without CLAHE to share it"
        )
    if preprocessing.field_of_view:
        raise InputError(
            "this model finds the field of view of fundus photographs itself, which a "
            "bioimage.io package cannot describe; train without field_of_view to share it"
        )
    if preprocessing.percentiles[1] <= 1:
        raise InputError(
            f"upper percentile {preprocessing.percentiles[1]} is not above 1, which "
            "bioimage.io scale_range refuses; train with a higher upper percentile to share it"
        )


def _test_crop(model: SegmentationModel, image: object, test_size: int) -> np.ndarray:
    """A centred square grey crop (float32) of the first slice, of a size the package takes."""
    stack = as_image_stack(image, name="image")
    grey = to_grey(stack[:1], model.preprocessing.channel)[0]
    low, step = input_sizes(model.spec)
    side = min(min(grey.shape), test_size) // step * step
    if side < low:
        raise InputError(
            f"the image is {grey.shape[0]}x{grey.shape[1]} pixels; the test crop of a package "
            f"needs at least {low}x{low} (and test_size >= {low}; got {test_size})"
        )
    top, left = (grey.shape[0] - side) // 2, (grey.shape[1] - side) // 2
    crop = np.ascontiguousarray(grey[top : top + side, left : left + side], np.float32)
    as_image_stack(crop, name="the test crop of the image")  # refuses a constant crop
    return crop


def _write_files(
    root: Path,
    model: SegmentationModel,
    crop: np.ndarray,
    prepared: torch.Tensor,
    expected: np.ndarray,
    name: str,
) -> dict[str, Path]:
    files = {
        "state_dict": root / "weights.pt",
        "torchscript": root / "weights_torchscript.pt",
        "test_input": root / "test_input.npy",
        "test_output": root / "test_output.npy",
        "sample_input": root / "sample_input.tif",
        "sample_output": root / "sample_output.tif",
        "cover": root / "cover.png",
        "documentation": root / "README.md",
        "environment": root / "environment.yaml",
    }
    torch.save(model.network.state_dict(), files["state_dict"])
    torch.jit.save(_trace(model.network, prepared), files["torchscript"])
    np.save(files["test_input"], crop[np.newaxis, np.newaxis])
    np.save(files["test_output"], expected[np.newaxis, np.newaxis].astype(np.float32))
    tifffile.imwrite(files["sample_input"], crop)
    tifffile.imwrite(files["sample_output"], expected.astype(np.float32))
    _write_cover(files["cover"], prepared[0, 0].numpy(), expected)
    files["documentation"].write_text(
        text.readme(model, name, input_sizes(model.spec), trained_pixel_size(model))
    )
    files["environment"].write_text(text.ENVIRONMENT)
    return files


def _trace(network: UNet, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript by tracing, checked on the example and on another valid shape.

    The trace keeps the output crop dynamic but not the padding, which inputs of the sizes in
    :func:`input_sizes` never need.
    """
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing warns that Python values become constants (the padding branch) and that
        # torch.jit is deprecated; bioimage.io's torchscript format is exactly this.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(network, example, check_trace=False)
        low, step = input_sizes(network.spec)
        other = torch.rand(2, 1, low, low + step, generator=torch.Generator().manual_seed(0))
        for x in (example, other):
            if not torch.allclose(traced(x), network(x), rtol=1e-4, atol=1e-5):
                raise RuntimeError("the TorchScript trace does not reproduce the network")
    return traced


def _write_cover(path: Path, prepared: np.ndarray, probabilities: np.ndarray) -> None:
    """Input (as the network sees it) beside the prediction: a 2:1 PNG."""
    import imageio.v3 as iio

    left = np.clip(prepared, 0.0, 1.0)
    cover = np.concatenate([left, np.clip(probabilities, 0.0, 1.0)], axis=1)
    iio.imwrite(path, np.round(cover * 255).astype(np.uint8))


def _plain(value: object) -> Any:
    """``value`` as JSON/YAML-safe lists, dicts, strings and numbers."""
    return json.loads(json.dumps(value, default=str))


def trained_pixel_size(model: SegmentationModel) -> PixelSize | None:
    """The in-plane (y, x) pixel size the model was trained at (its source's), where its
    metadata records one."""
    recorded = (model.metadata or {}).get("pixel_size")
    try:
        return PixelSize.from_dict(recorded).fit(2) if isinstance(recorded, dict) else None
    except (InputError, KeyError, TypeError, ValueError):
        return None


def _axis_sizes(model: SegmentationModel, spec: Any) -> list[dict[str, Any]]:
    """``scale`` and ``unit`` of the y and x space axes: the trained pixel size (spec 0.5:
    ``scale`` is the physical size of a pixel, ``unit`` one of the spec's length units);
    the defaults (1, no unit: unknown) where it is not recorded."""
    import typing

    size = trained_pixel_size(model)
    if size is None:
        return [{}, {}]
    unit = UNITS[size.unit][0] if size.unit is not None else None
    unit = unit if unit in typing.get_args(spec.SpaceUnit) else None
    return [{"scale": value, "unit": unit} for value in size.sizes]


def _describe(
    model: SegmentationModel,
    files: dict[str, Path],
    name: str,
    authors: Sequence[str],
    license: str,
    description: str | None,
    tags: Sequence[str],
):
    from bioimageio.spec.model import v0_5 as spec
    from pydantic import ValidationError

    try:
        spec.LicenseId(license)
    except ValidationError as error:
        raise InputError(
            f"licence {license!r} is not an SPDX licence identifier (such as CC-BY-4.0, "
            "CC0-1.0, MIT or BSD-3-Clause)"
        ) from error
    try:
        people = [spec.Author(name=author) for author in authors]
    except ValidationError as error:
        raise InputError(f"author names must not contain '/'; got {list(authors)}") from error
    if not people:
        raise InputError("give at least one author")
    low, step = input_sizes(model.spec)
    lo, hi = model.preprocessing.percentiles
    yx = [spec.AxisId("y"), spec.AxisId("x")]
    sizes = _axis_sizes(model, spec)  # the output's pixels are the input's
    float32 = spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))

    def reference(axis: str) -> spec.SizeReference:
        return spec.SizeReference(tensor_id=spec.TensorId(INPUT_ID), axis_id=spec.AxisId(axis))

    try:
        input_tensor = spec.InputTensorDescr(
            id=spec.TensorId(INPUT_ID),
            description=text.input_description(model.preprocessing.channel),
            axes=[
                spec.BatchAxis(),
                spec.ChannelAxis(channel_names=[spec.Identifier("grey")]),
                *(
                    spec.SpaceInputAxis(
                        id=a, size=spec.ParameterizedSize(min=low, step=step), **size
                    )
                    for a, size in zip(yx, sizes, strict=True)
                ),
            ],
            test_tensor=spec.FileDescr(source=files["test_input"]),
            sample_tensor=spec.FileDescr(source=files["sample_input"]),
            data=spec.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[
                float32,
                spec.ScaleRangeDescr(
                    kwargs=spec.ScaleRangeKwargs(
                        axes=yx, min_percentile=lo, max_percentile=hi, eps=SCALE_EPS
                    )
                ),
                spec.ClipDescr(kwargs=spec.ClipKwargs(min=CLIP_RANGE[0], max=CLIP_RANGE[1])),
                float32,
            ],
        )
        output_tensor = spec.OutputTensorDescr(
            id=spec.TensorId(OUTPUT_ID),
            description="foreground probability (sigmoid of the network's logits)",
            axes=[
                spec.BatchAxis(),
                spec.ChannelAxis(channel_names=[spec.Identifier("foreground")]),
                # No halo: bioimageio.core pads a whole image by the halo before predicting
                # it, which would no longer be our prediction (see docs/sharing.md).
                *(
                    spec.SpaceOutputAxis(id=a, size=reference(str(a)), **size)
                    for a, size in zip(yx, sizes, strict=True)
                ),
            ],
            test_tensor=spec.FileDescr(source=files["test_output"]),
            sample_tensor=spec.FileDescr(source=files["sample_output"]),
            data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
            postprocessing=[spec.SigmoidDescr(), float32],
        )
        torch_version = spec.Version(torch.__version__.split("+")[0])
        weights = spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=files["state_dict"],
                architecture=spec.ArchitectureFromLibraryDescr(
                    import_from=ARCHITECTURE[0],
                    callable=spec.Identifier(ARCHITECTURE[1]),
                    kwargs=_plain(vars(model.spec)),
                ),
                pytorch_version=torch_version,
                dependencies=spec.FileDescr(source=files["environment"]),
            ),
            torchscript=spec.TorchscriptWeightsDescr(
                source=files["torchscript"],
                pytorch_version=torch_version,
                parent="pytorch_state_dict",
                comment="torch.jit.trace of the state dict's network",
            ),
        )
        return spec.ModelDescr(
            name=name,
            description=description or text.description(model),
            authors=people,
            cite=[spec.CiteEntry(text=entry, doi=spec.Doi(doi)) for entry, doi in text.CITATIONS],
            license=license,
            tags=list(dict.fromkeys([*text.TAGS, *tags])),
            documentation=spec.FileDescr(source=files["documentation"]),
            covers=[spec.FileDescr(source=files["cover"])],
            inputs=[input_tensor],
            outputs=[output_tensor],
            weights=weights,
            config=_config(model),
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg'][:200]}" for e in error.errors()
        )
        raise InputError(f"cannot describe the model for bioimage.io: {problems}") from error


def _config(model: SegmentationModel) -> dict[str, Any]:
    checkpoint = model.to_checkpoint()
    ours = {key: value for key, value in checkpoint.items() if key != "state_dict"}
    bioimageio: dict[str, Any] = {
        "architecture_type": "U-Net",
        "architecture_description": text.architecture(model.spec),
        "task": "semantic segmentation",
        "model_parameter_count": sum(p.numel() for p in model.network.parameters()),
    }
    if model.config is not None:
        bioimageio["training"] = text.training_details(model.config)
    return {"bioimageio": bioimageio, CONFIG_KEY: _plain(ours)}


def load_bioimageio(source: str | Path, device: torch.device | str = "cpu") -> SegmentationModel:
    """A model from a bioimage.io package (.zip, its folder, or its rdf.yaml).

    Packages exported here load exactly. Another package loads when its network is this
    package's U-Net (a ``pytorch_state_dict`` whose architecture is
    ``napari_domain_adapt.core.models.build_unet``) and its preprocessing is ours
    (``scale_range`` per image over y and x, optionally clipped to [-1, 2]) with a sigmoid
    on the output; anything else raises InputError saying what differs.
    """
    _require_bioimageio()
    from bioimageio.spec import InvalidDescr, load_model_description
    from bioimageio.spec.model import v0_5

    source = Path(source)
    if not source.exists():
        raise InputError(f"bioimage.io package {source} does not exist")
    _check_self_contained(source)
    try:
        with _unclosed_files_ignored():
            descr = load_model_description(
                source, format_version="latest", perform_io_checks=False
            )
    except Exception as error:  # the loader raises many types for broken or foreign files
        raise InputError(f"cannot read bioimage.io package {source}: {error}") from error
    if isinstance(descr, InvalidDescr) or not isinstance(descr, v0_5.ModelDescr):
        raise InputError(f"{source} is not a valid bioimage.io model description")
    ours = getattr(descr.config, CONFIG_KEY, None) or {}
    malformed = [key for key in ("preprocessing", "metadata") if key in ours]
    malformed = [key for key in malformed if not isinstance(ours[key] or {}, dict)]
    if not isinstance(ours, dict) or ours.get("format") not in (None, CHECKPOINT_FORMAT):
        raise InputError(f"{source}: config.{CONFIG_KEY} is not a napari-domain-adapt record")
    if malformed:
        raise InputError(
            f"{source}: config.{CONFIG_KEY}.{malformed[0]} is a "
            f"{type(ours[malformed[0]]).__name__}; expected a mapping"
        )
    spec = _architecture(descr, source)
    preprocessing = _preprocessing(descr, source, ours.get("preprocessing"))
    network = UNet(spec)
    try:
        with _unclosed_files_ignored():
            weights = io.BytesIO(descr.weights.pytorch_state_dict.get_reader().read())
        state = _load_weights(weights, source)
        network.load_state_dict(state)
        config = ours.get("config")
        config = None if config is None else TrainConfig.from_dict(config)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as error:
        raise InputError(f"{source}: the weights do not fit the architecture: {error}") from error
    metadata = dict(ours.get("metadata") or {})
    metadata["bioimageio"] = {"name": descr.name, "source": str(source)}
    if "pixel_size" not in metadata:  # another tool's package: its input axes say it
        size = _axes_pixel_size(descr.inputs[0].axes)
        if size is not None:
            metadata["pixel_size"] = size.to_dict()
    return SegmentationModel(network, preprocessing, config, metadata).to(device)


def _axes_pixel_size(axes: Sequence[Any]) -> PixelSize | None:
    """The pixel size of the y and x axes of a package's tensor; None where they keep the
    defaults (scale 1, no unit) or differ in unit."""
    space = {str(axis.id): axis for axis in axes if axis.type == "space"}
    if not {"y", "x"} <= set(space):
        return None
    sizes = [float(space[a].scale) for a in ("y", "x")]
    units = {space[a].unit for a in ("y", "x")}
    if len(units) != 1 or (units == {None} and sizes == [1.0, 1.0]):
        return None
    unit = units.pop()
    short = next((name for name, (long, _) in UNITS.items() if long == unit), None)
    if unit is not None and short is None:  # a length we do not convert (e.g. parsec)
        return None
    return PixelSize(tuple(sizes), short)


def _load_weights(weights: io.BytesIO, source: Path) -> Any:
    """The state dict, read without executing code; a file carrying code is refused (torch's
    advice to load it unsafely is not passed on)."""
    try:
        return torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(
            f"{source}: the weights file holds code, not only weights, and is refused"
        ) from error


def _check_self_contained(source: Path) -> None:
    """Refuse a package whose rdf.yaml names weights outside it (a URL, an absolute path,
    a path up out of it): a package is used only with the files it contains, so nothing
    is downloaded or read from elsewhere."""
    weights = _rdf_of(source).get("weights")
    for name, entry in weights.items() if isinstance(weights, dict) else ():
        where = entry.get("source") if isinstance(entry, dict) else None
        if not isinstance(where, str):
            continue
        if "://" in where or Path(where).is_absolute() or ".." in Path(where).parts:
            raise InputError(
                f"{source}: the {name} weights are named as {where}, outside the package; "
                "a package is used only with the files it contains"
            )


def _rdf_of(source: Path) -> dict:
    """The package's rdf.yaml as a dictionary ({} where it cannot be read: the loader says
    why then)."""
    import yaml

    try:
        if source.is_dir():
            text = next((source / n).read_text() for n in _RDF_NAMES if (source / n).is_file())
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                names = [n for n in archive.namelist() if n.endswith(_RDF_NAMES)]
                text = archive.read(min(names, key=len)).decode()
        else:
            text = source.read_text()
        rdf = yaml.safe_load(text)
    except Exception:  # unreadable here: load_model_description says why
        return {}
    return rdf if isinstance(rdf, dict) else {}


def _architecture(descr, source: Path) -> ModelSpec:
    weights = descr.weights.pytorch_state_dict
    if weights is None:
        raise InputError(
            f"{source} has no pytorch_state_dict weights (only "
            f"{', '.join(descr.weights.available_formats)}); napari-domain-adapt rebuilds the "
            "network from a state dict and its architecture"
        )
    architecture = weights.architecture
    where = getattr(architecture, "import_from", None)
    if (where, str(architecture.callable)) != ARCHITECTURE:
        found = f"{where}.{architecture.callable}" if where else str(architecture.callable)
        raise InputError(
            f"{source}: architecture {found} is not one napari-domain-adapt can rebuild; "
            f"expected {'.'.join(ARCHITECTURE)}"
        )
    try:
        return ModelSpec(**architecture.kwargs)
    except TypeError as error:
        raise InputError(
            f"{source}: architecture kwargs {architecture.kwargs}: {error}"
        ) from error


def _preprocessing(descr, source: Path, saved: dict[str, Any] | None) -> Preprocessing:
    """Our Preprocessing from the package's input description, or InputError."""
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise InputError(f"{source}: expected one input and one output tensor")
    tensor, output = descr.inputs[0], descr.outputs[0]
    channels = [a.size for a in tensor.axes if a.type == "channel"]
    if channels not in ([], [1]):
        raise InputError(f"{source}: the input has {channels[0]} channels; expected 1 (grey)")
    steps = [p for p in tensor.preprocessing if p.id != "ensure_dtype"]
    scale = steps[0] if steps and steps[0].id == "scale_range" else None
    per_image = scale is not None and set(map(str, scale.kwargs.axes or ())) == {"y", "x"}
    clip = [(p.kwargs.min, p.kwargs.max) for p in steps[1:] if p.id == "clip"]
    if not per_image or len(steps) != 1 + len(clip) or clip not in ([], [CLIP_RANGE]):
        found = ", ".join(p.id for p in steps) or "none"
        raise InputError(
            f"{source}: preprocessing {found} is not ours; napari-domain-adapt needs "
            "scale_range per image over axes y, x (optionally then clip to [-1, 2])"
        )
    post = [p.id for p in output.postprocessing if p.id != "ensure_dtype"]
    if post != ["sigmoid"]:
        raise InputError(
            f"{source}: postprocessing {', '.join(post) or 'none'}; expected sigmoid alone "
            "(the network must output logits)"
        )
    channel = (saved or {}).get("channel", Preprocessing().channel)
    percentiles = (scale.kwargs.min_percentile, scale.kwargs.max_percentile)
    return Preprocessing(channel=channel, percentiles=percentiles)
