"""The words of an exported bioimage.io package: README, descriptions, citations, tags."""

from __future__ import annotations

from typing import Any

from .checkpoints import SegmentationModel
from .config import ModelSpec, TrainConfig
from .pixel_size import PixelSize

CITATIONS = (
    (
        "Javanmardi M. and Tasdizen T., Domain adaptation for biomedical image segmentation "
        "using adversarial training, IEEE ISBI 2018",
        "10.1109/ISBI.2018.8363602",
    ),
    (
        "Ronneberger O., Fischer P. and Brox T., U-Net: Convolutional networks for biomedical "
        "image segmentation, MICCAI 2015",
        "10.1007/978-3-319-24574-4_28",
    ),
)
TAGS = (
    "napari-domain-adapt",
    "domain-adaptation",
    "unet",
    "2d",
    "semantic-segmentation",
    "pytorch",
)
#: Conda environment of the state-dict weights: their architecture is imported from us.
ENVIRONMENT = """\
name: napari-domain-adapt
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python>=3.10
  - pytorch>=2.1
  - pip
  - pip:
      - napari-domain-adapt
"""
_CHANNELS = {
    "luminance": "the luminance (0.299 R + 0.587 G + 0.114 B)",
    "green": "the green channel",
    "mean": "the mean of R, G and B",
}


def input_description(channel: str) -> str:
    """The input tensor's one-line description (at most 128 characters)."""
    return f"2D grey image; for RGB use {_CHANNELS[channel]}"[:128]


def description(model: SegmentationModel) -> str:
    """The package's default description."""
    mode = "" if model.config is None else f", trained in mode {model.config.mode}"
    return (
        "2D U-Net that segments a foreground structure (membranes, vessels) as a "
        f"probability map; made with napari-domain-adapt{mode}."
    )


def architecture(spec: ModelSpec) -> str:
    """What the network is, in a sentence."""
    return (
        f"2D U-Net with {spec.depth} poolings, {spec.width} channels at the first level "
        f"doubling per level, {spec.norm} normalisation, one logit per pixel."
    )


def training_details(config: TrainConfig) -> dict[str, Any]:
    """The spec's ``config.bioimageio.training`` fields from our configuration."""
    return {
        "training_preprocessing": (
            f"{config.preprocessing.channel} grey, per-image percentiles "
            f"{config.preprocessing.percentiles[0]}/{config.preprocessing.percentiles[1]} "
            "scaled to 0/1 and clipped to [-1, 2]; random "
            f"{config.patch_size}x{config.patch_size} patches"
            + (", flips, rotations and intensity changes" if config.augment else "")
        ),
        "training_batch_size": float(config.batch_size),
        "initial_learning_rate": config.learning_rate,
        "learning_rate_schedule": "constant",
        "loss_function": "binary cross-entropy + soft Dice"
        + ("" if config.mode == "source-only" else f" + domain adaptation ({config.mode})"),
        "optimizer": "torch.optim.Adam",
        "optimizer_kwargs": {"lr": config.learning_rate},
    }


def pixel_size_sentence(pixel_size: PixelSize | None) -> str:
    """What the README says of the pixel size the model was trained at."""
    if pixel_size is None:
        return "The pixel size of the training images is not recorded."
    return (
        f"Trained on images of {pixel_size} pixels (y x; the input and output axes' scale and "
        "unit): give it images of about that pixel size."
    )


def readme(
    model: SegmentationModel,
    name: str,
    sizes: tuple[int, int],
    pixel_size: PixelSize | None = None,
) -> str:
    """The package's documentation (markdown, with the '## Validation' section it asks for)."""
    pre = model.preprocessing
    low, high = pre.percentiles
    config = model.config
    training = (
        "The training configuration is not recorded."
        if config is None
        else (
            f"Mode **{config.mode}**, {config.steps} steps of {config.batch_size} patches of "
            f"{config.patch_size} pixels, Adam at {config.learning_rate}. The whole "
            "configuration is in `config.napari_domain_adapt` of the package's rdf.yaml."
        )
    )
    return f"""# {name}

{description(model)}

## Input

One 2D grey image, axes batch, channel (1), y, x. Height and width are {sizes[0]} + n x
{sizes[1]} pixels (multiples of 2^{model.spec.depth}, so the U-Net needs no padding). For an
RGB image use {_CHANNELS[pre.channel]}, as in training. {pixel_size_sentence(pixel_size)}

The package declares no halo, so a tool that predicts the whole image at once gives
napari-domain-adapt's prediction. A tool that predicts tile by tile should use tiles as
large as memory allows, overlapping where it offers overlap: near a tile's edge the U-Net
sees less context.

## Preprocessing (described in the package)

1. `scale_range` per image over y and x: percentile {low:g} maps to 0 and percentile
   {high:g} to 1.
2. `clip` to [-1, 2].

This is napari-domain-adapt's own normalisation. Where napari-domain-adapt was given a
field-of-view mask, it took the percentiles inside it and set the outside to 0; the package
has no mask input. Tools that compute the percentiles per tile rather than per image
predict somewhat differently.

## Output

Foreground probability per pixel (the sigmoid of the network's logits is the package's
postprocessing); threshold at 0.5 for a mask.

## Network

{architecture(model.spec)} Weights come as TorchScript and as a PyTorch state dict whose
architecture is `napari_domain_adapt.core.models.build_unet` (pip install
napari-domain-adapt).

## Training

{training}

## Validation

The test input is a crop of an image the exporter chose; the test output is
napari-domain-adapt's prediction of it, and `bioimageio test` reproduces it. To validate the
model on your own data, label a few images it has not seen, predict them (with this package
in any bioimage.io tool, or `napari-domain-adapt evaluate --model PACKAGE.zip --data
FOLDER`) and compute the F1 score of the foreground at threshold 0.5. A model adapted to one
microscope or stain may fail on another: check before trusting it.

## Citation

- {CITATIONS[0][0]}. doi:{CITATIONS[0][1]}
- {CITATIONS[1][0]}. doi:{CITATIONS[1][1]}
"""
