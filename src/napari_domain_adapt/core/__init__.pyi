"""The public API of the core, for type checkers and for lazy_loader (see __init__.py)."""

from .bioimageio import export_bioimageio, load_model
from .checkpoints import SegmentationModel, load_checkpoint, save_checkpoint
from .config import (
    ADVERSARIAL_MODES,
    DEFAULT_AUTHOR,
    DEFAULT_LICENSE,
    DEFAULT_NAME,
    IMAGE_KINDS,
    LABEL_MODES,
    MODES,
    SELECT_BY,
    TEACHER_MODES,
    ModelSpec,
    Preprocessing,
    TrainConfig,
)
from .data import Domain, as_image_stack, is_lazy, labelled_slices
from .device import describe_device, resolve_device
from .errors import InputError
from .hdf5 import is_hdf5, list_hdf5, split_hdf5_path
from .inference import predict_tiled
from .io import (
    IMAGE_SUFFIXES,
    atomic_folder,
    atomic_write,
    check_not_an_input,
    check_output,
    is_dataset,
    load_dataset,
    read_pixel_size,
    read_volume,
    read_volume_with_pixel_size,
    run_lock,
    write_tiff,
    write_tiffs,
)
from .labels import instances_to_membranes
from .metrics import best_threshold, check_threshold, segmentation_scores
from .options import ADAPTIVE, PRESETS, SETTINGS, Setting, get_value, preset, with_values
from .pipeline import (
    PredictionDone,
    PredictionEvent,
    PredictionStarted,
    SlicePredicted,
    TargetPrediction,
    open_source,
    open_target,
    predict,
    train_and_predict,
)
from .pixel_metadata import layer_options, layer_pixel_size
from .pixel_size import PixelSize, normalise_unit, parse_pixel_size
from .resume import StateFile
from .sample_data import SamplePair, make_sample_pair
from .training import TrainControl, TrainEvent, TrainFinished, fit, train, warm_up
from .volume_prediction import predict_volume, predicting_volume
from .volumes import is_zarr, open_volume

__all__ = [
    "ADAPTIVE",
    "ADVERSARIAL_MODES",
    "DEFAULT_AUTHOR",
    "DEFAULT_LICENSE",
    "DEFAULT_NAME",
    "IMAGE_KINDS",
    "IMAGE_SUFFIXES",
    "LABEL_MODES",
    "MODES",
    "PRESETS",
    "SELECT_BY",
    "SETTINGS",
    "TEACHER_MODES",
    "Domain",
    "InputError",
    "ModelSpec",
    "PixelSize",
    "PredictionDone",
    "PredictionEvent",
    "PredictionStarted",
    "Preprocessing",
    "SamplePair",
    "SegmentationModel",
    "Setting",
    "SlicePredicted",
    "StateFile",
    "TargetPrediction",
    "TrainConfig",
    "TrainControl",
    "TrainEvent",
    "TrainFinished",
    "as_image_stack",
    "atomic_folder",
    "atomic_write",
    "best_threshold",
    "check_not_an_input",
    "check_output",
    "check_threshold",
    "describe_device",
    "export_bioimageio",
    "fit",
    "get_value",
    "instances_to_membranes",
    "is_dataset",
    "is_hdf5",
    "is_lazy",
    "is_zarr",
    "labelled_slices",
    "layer_options",
    "layer_pixel_size",
    "list_hdf5",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "make_sample_pair",
    "normalise_unit",
    "open_source",
    "open_target",
    "open_volume",
    "parse_pixel_size",
    "predict",
    "predict_tiled",
    "predict_volume",
    "predicting_volume",
    "preset",
    "read_pixel_size",
    "read_volume",
    "read_volume_with_pixel_size",
    "resolve_device",
    "run_lock",
    "save_checkpoint",
    "segmentation_scores",
    "split_hdf5_path",
    "train",
    "train_and_predict",
    "warm_up",
    "with_values",
    "write_tiff",
    "write_tiffs",
]
