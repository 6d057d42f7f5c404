"""A trained segmentor with everything it needs to predict alone, and its checkpoint file.

A checkpoint holds the network weights, the architecture, the preprocessing and the training
configuration as plain tensors and Python literals; loading uses ``weights_only=True``, so
reading a file never executes code from it. A model trained with histogram matching also
holds its source's intensity quantiles (version 2, so that a release that cannot match
refuses it rather than predict unmatched); every other model is written as version 1.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .alignment import match_to_reference
from .config import ModelSpec, Preprocessing, TrainConfig
from .data import as_image_stack, as_mask_stack
from .errors import InputError
from .inference import network_device, predict_tiled
from .io import atomic_write
from .models import UNet
from .pixel_size import PixelSize
from .preprocessing import field_of_view_masks, preprocess
from .resampling import resample_stack, restore_plane, scale_factor

CHECKPOINT_FORMAT = "napari-domain-adapt/checkpoint"
CHECKPOINT_VERSION = 2
#: Versions read: 1 (no intensity reference) and 2 (with one).
CHECKPOINT_VERSIONS = (1, 2)


@dataclass
class SegmentationModel:
    """A U-Net segmentor plus its architecture, preprocessing and provenance."""

    network: UNet
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    config: TrainConfig | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    intensity_reference: np.ndarray | None = None
    """The source's intensity quantiles after preprocessing
    (:func:`~.alignment.intensity_reference`), where the model was trained with histogram
    matching: every image it predicts is matched to them after preprocessing. None: images
    are predicted as preprocessed."""

    def __post_init__(self) -> None:
        if self.intensity_reference is not None:
            reference = np.asarray(self.intensity_reference, dtype=np.float32)
            if (
                reference.ndim != 1
                or reference.size < 2
                or not np.isfinite(reference).all()
                or (np.diff(reference) < 0).any()
            ):
                raise InputError(
                    "the intensity reference must be at least 2 finite, non-decreasing "
                    f"quantiles; got an array of shape {reference.shape}"
                )
            self.intensity_reference = reference

    @classmethod
    def create(
        cls, spec: ModelSpec | None = None, preprocessing: Preprocessing | None = None
    ) -> SegmentationModel:
        """A new, untrained model."""
        return cls(UNet(spec), preprocessing or Preprocessing())

    @property
    def spec(self) -> ModelSpec:
        """The network's architecture."""
        return self.network.spec

    @property
    def device(self) -> torch.device:
        """The device that holds the weights."""
        return network_device(self.network)

    def to(self, device: torch.device | str) -> SegmentationModel:
        """Move the weights to ``device`` (in place) and return self."""
        self.network.to(device)
        return self

    def predict(
        self,
        images: object,
        masks: object | None = None,
        tile_size: int | None = None,
        overlap: int = 32,
        batch_size: int = 4,
        progress: Callable[[int, int], None] | None = None,
        allow_constant: bool = False,
        amp: bool | str = False,
        pixel_size: PixelSize | None = None,
    ) -> np.ndarray:
        """Foreground probabilities (float32, ``(N, H, W)`` or ``(H, W)``) for raw images.

        ``pixel_size``: the images', where known; images at another scale than the model's
        working pixel size are predicted resampled to it, the probabilities returned on
        the images' grid (see :meth:`zoom_for`).

        Each image is matched to :attr:`intensity_reference` after preprocessing, where
        the model has one. Tiling and ``amp`` as in :func:`~.inference.predict_tiled`
        (``tile_size=None``: automatic).

        ``masks`` (field of view, ``(N, H, W)`` bool) set the intensity statistics and
        make the probability outside 0; without them a preprocessing with
        ``field_of_view`` estimates them from the images.

        ``allow_constant`` predicts a blank image too (one slice of a stack that has
        contrast); otherwise a constant image is refused as most likely the wrong input.
        Raises InputError rather than return NaN when the weights are not finite.
        """
        stack = as_image_stack(images, name="image", allow_constant=allow_constant)
        mask_stack = None if masks is None else as_mask_stack(masks, stack.shape[:3])
        grid, factor = stack.shape[1:3], self.zoom_for(pixel_size)
        if factor is not None:  # to the model's working pixel size; back at the end
            stack = resample_stack(stack, factor, order=1, rgb=stack.ndim == 4)
            if mask_stack is not None:
                mask_stack = resample_stack(mask_stack, factor, order=0)
        mask_stack = field_of_view_masks(stack, self.preprocessing, mask_stack)
        prepared = preprocess(stack, self.preprocessing, mask_stack)
        if self.intensity_reference is not None:
            prepared = match_to_reference(prepared, self.intensity_reference, mask_stack)
        result = predict_tiled(
            self.network, prepared, tile_size, overlap, batch_size, progress, amp=amp
        )
        if mask_stack is not None:
            result[~mask_stack] = 0.0  # outside the field of view is background
        if not np.isfinite(result).all():
            raise InputError(
                "the model predicts NaN or infinite probabilities: its weights are not finite "
                "(training diverged; train again, e.g. with a lower learning rate)"
            )
        if factor is not None:
            result = np.stack([restore_plane(plane, grid) for plane in result])
        single = np.ndim(images) == 2 or (np.ndim(images) == 3 and stack.ndim == 4)
        return result[0] if single else result

    @property
    def pixel_size(self) -> PixelSize | None:
        """The working pixel size: the source's, which the model was trained at (if known)."""
        saved = self.metadata.get("pixel_size")
        return None if saved is None else PixelSize.from_dict(saved)

    def zoom_for(self, pixel_size: PixelSize | None) -> float | None:
        """The zoom that brings images of ``pixel_size`` to the working pixel size: None
        where either is unknown, they agree within 5%, or the model was trained with
        ``alignment.pixel_size`` off."""
        if self.config is not None and not self.config.alignment.pixel_size:
            return None
        return scale_factor(self.pixel_size, pixel_size)

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint dictionary: tensors and plain Python values only."""
        reference = self.intensity_reference
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "version": 1 if reference is None else CHECKPOINT_VERSION,
            "model": {k: v for k, v in vars(self.spec).items()},
            "preprocessing": {
                **vars(self.preprocessing),
                "percentiles": list(self.preprocessing.percentiles),
            },
            "config": None if self.config is None else self.config.to_dict(),
            "metadata": self.metadata,
            "state_dict": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
        }
        if reference is not None:
            checkpoint["intensity_reference"] = [float(value) for value in reference]
        return checkpoint

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> SegmentationModel:
        """Rebuild a model from :meth:`to_checkpoint`'s dictionary, or raise InputError."""
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
            if isinstance(checkpoint, dict):
                keys = [str(key) for key in list(checkpoint)[:4]]
                found = (
                    f"a dictionary of {', '.join(keys)}{', ...' if len(checkpoint) > 4 else ''}"
                )
            else:
                found = f"a {type(checkpoint).__name__}"
            raise InputError(
                f"the file is not a napari-domain-adapt checkpoint (it holds {found}); expected "
                "a model saved by napari-domain-adapt (train, adapt or Save model)"
            )
        if checkpoint.get("version") not in CHECKPOINT_VERSIONS:
            raise InputError(
                f"checkpoint version {checkpoint.get('version')} is not supported "
                f"(expected {' or '.join(map(str, CHECKPOINT_VERSIONS))})"
            )
        try:
            spec = ModelSpec(**checkpoint["model"])
            pre = dict(checkpoint["preprocessing"])
            pre["percentiles"] = tuple(pre["percentiles"])
            preprocessing = Preprocessing(**pre)
            config = checkpoint.get("config")
            config = None if config is None else TrainConfig.from_dict(config)
            network = UNet(spec)
            network.load_state_dict(checkpoint["state_dict"])
            metadata = dict(checkpoint.get("metadata") or {})
            reference = checkpoint.get("intensity_reference")
            if reference is not None:
                reference = np.array(reference, dtype=np.float32)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
            # load_state_dict lists every missing key on lines of their own: one line here.
            found = " ".join(str(error).split())
            found = found if len(found) <= 300 else found[:300] + " ..."
            if isinstance(error, KeyError):
                found = f"it has no {found} entry"
            raise InputError(
                f"the checkpoint does not fit the model it describes: {found}; expected a "
                "checkpoint saved by napari-domain-adapt"
            ) from error
        bad = [name for name, value in network.state_dict().items() if not _finite(value)]
        if bad:
            raise InputError(
                f"the checkpoint holds NaN or infinite weights ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}); expected finite weights (the run that "
                "saved it diverged)"
            )
        return cls(network, preprocessing, config, metadata, reference)


def _finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def save_checkpoint(model: SegmentationModel, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` atomically (a crash leaves the old file or none)."""
    buffer = io.BytesIO()
    torch.save(model.to_checkpoint(), buffer)
    with atomic_write(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(buffer.getvalue())
    return Path(path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> SegmentationModel:
    """Read a checkpoint without executing code from it (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; expected a model file (.pt)")
    checkpoint = load_plain(path, "checkpoint")
    return SegmentationModel.from_checkpoint(checkpoint).to(device)


def load_plain(path: str | Path, what: str, advice: str = "") -> Any:
    """``torch.load`` that executes no code (``weights_only=True``); on CPU.

    A truncated, corrupt or code-carrying file raises InputError naming ``what`` it was
    meant to be, followed by ``advice``.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise InputError(
            f"cannot read {what} {path}: it is truncated, corrupt or holds more than "
            f"weights and plain values ({type(error).__name__}){advice}"
        ) from error
