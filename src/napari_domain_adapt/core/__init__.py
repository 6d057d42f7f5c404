"""The adaptation engine: no Qt, no napari; everything the widget does, a script can do.

Example (a minute on a laptop CPU), with ``Domain``, ``TrainConfig``, ``fit`` and
``make_sample_pair`` imported from this package::

    >>> pair = make_sample_pair()
    >>> finished = fit(
    ...     TrainConfig(mode="adversarial", steps=300, patch_size=64),
    ...     Domain(pair.source_image, pair.source_labels),
    ...     Domain(pair.target_image),
    ... )
    >>> probabilities = finished.model.predict(pair.target_image)
"""

from ._triton import isolate_triton_llvm

isolate_triton_llvm()  # before torch: Triton must not bind to napari's OpenGL LLVM

from .bioimageio import export_bioimageio, load_bioimageio, load_model
from .checkpoints import SegmentationModel, load_checkpoint, save_checkpoint
from .config import IMAGE_KINDS, MODES, ModelSpec, Preprocessing, TrainConfig
from .data import Domain, labelled_slices
from .device import resolve_device
from .errors import InputError
from .inference import predict_tiled
from .metrics import best_threshold, segmentation_scores
from .resume import StateFile
from .sample_data import SamplePair, make_sample_pair
from .scribbles import simulate_scribbles
from .training import TrainControl, TrainEvent, TrainFinished, fit, train

__all__ = [
    "IMAGE_KINDS",
    "MODES",
    "Domain",
    "InputError",
    "ModelSpec",
    "Preprocessing",
    "SamplePair",
    "SegmentationModel",
    "StateFile",
    "TrainConfig",
    "TrainControl",
    "TrainEvent",
    "TrainFinished",
    "best_threshold",
    "export_bioimageio",
    "fit",
    "labelled_slices",
    "load_bioimageio",
    "load_checkpoint",
    "load_model",
    "make_sample_pair",
    "predict_tiled",
    "resolve_device",
    "save_checkpoint",
    "segmentation_scores",
    "simulate_scribbles",
    "train",
]
