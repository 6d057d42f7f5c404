"""The one typed, validated configuration of a training run.

Every object here is a frozen dataclass validated on construction; change a field with
:func:`dataclasses.replace`, which validates again. The whole configuration is saved inside
every checkpoint and results file (:meth:`TrainConfig.to_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .selection import CRITERIA

CONFIG_VERSION = 2

#: Training modes: the source-only baseline, the paper's unsupervised adversarial adaptation,
#: adversarial adaptation with labelled target slices in the supervised loss, mean-teacher
#: self-training, and both adaptations together.
MODES = (
    "source-only",
    "adversarial",
    "semi-supervised",
    "mean-teacher",
    "adversarial+mean-teacher",
)
#: Which model a run returns: the last, or the best by a label-free criterion.
SELECT_BY = ("last", *CRITERIA)
ADVERSARIAL_MODES = ("adversarial", "semi-supervised", "adversarial+mean-teacher")
TEACHER_MODES = ("mean-teacher", "adversarial+mean-teacher")
#: Modes that learn from target labels where any are given (the others ignore them).
LABEL_MODES = ("semi-supervised", *TEACHER_MODES)
CHANNELS = ("luminance", "green", "mean")
NORMS = ("batch", "channel", "group", "instance")
#: What an exported bioimage.io package says of itself unless told otherwise.
DEFAULT_AUTHOR = "napari-domain-adapt user"
DEFAULT_LICENSE = "CC-BY-4.0"
DEFAULT_NAME = "napari-domain-adapt U-Net"
#: Smallest patch the domain classifier's four stride-2 convolutions can reduce to one pixel.
MIN_DOMAIN_PATCH = 16


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_integers(config: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        _check(
            isinstance(value, int) and not isinstance(value, bool),
            f"{name} must be an integer; got {value!r}",
        )


@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels become network input; stored with the model so it predicts alone."""

    channel: str = "luminance"
    """How an RGB image becomes one channel: ``luminance``, ``green`` (fundus) or ``mean``."""
    percentiles: tuple[float, float] = (1.0, 99.0)
    """Per-image intensity percentiles mapped to 0 and 1 (robust to outliers)."""
    clahe: bool = False
    """Local contrast equalisation (CLAHE) after scaling; helps fundus photographs."""
    clahe_clip: float = 0.01
    """CLAHE clip limit (scikit-image ``equalize_adapthist``)."""
    field_of_view: bool = False
    """Where an image comes without a field-of-view mask, find the bright disc of a fundus
    photograph and predict background outside it. A model trained on masked images (DRIVE)
    never learned that the disc's rim is no vessel; on STARE, which has no masks, half of
    its false positives lay outside the disc."""

    def __post_init__(self) -> None:
        _check_choice("channel", self.channel, CHANNELS)
        lo, hi = self.percentiles
        _check(
            0 <= lo < hi <= 100, f"percentiles must satisfy 0 <= low < high <= 100; got {lo}, {hi}"
        )
        _check(0 < self.clahe_clip <= 1, f"clahe_clip must be in (0, 1]; got {self.clahe_clip}")
        object.__setattr__(self, "percentiles", (float(lo), float(hi)))


#: Preprocessing suited to each kind of image: the CLI's ``--images`` and the widget's
#: "Images" choice. ``em``: the grey value (luminance of RGB), robust per-image scaling.
#: ``fundus``: the green channel (the vessels' best contrast), CLAHE, and the field of view
#: found where no mask is given.
IMAGE_KINDS = {
    "em": Preprocessing(),
    "fundus": Preprocessing(channel="green", clahe=True, field_of_view=True),
}


@dataclass(frozen=True)
class ModelSpec:
    """The segmentor's architecture: a 2D U-Net from one channel to one probability map."""

    depth: int = 4
    """Number of poolings; inputs are padded to a multiple of 2**depth internally."""
    width: int = 16
    """Channels of the first level; doubled at each level."""
    norm: str = "batch"
    """Normalisation layer: ``batch`` (default), ``channel``, ``group`` or ``instance``.

    ``batch``: source and target patches pass the network in batches of their own, so each
    domain is normalised with its own statistics, and an adaptive run ends by estimating
    the running statistics on the target (``TrainConfig.target_statistics``). At prediction
    it is a fixed per-channel affine map, so tiles and whole images agree. On DRIVE ->
    STARE (600 steps, source-only) it scored F1 80.2 on DRIVE and 69.8 on STARE where
    ``channel`` (a LayerNorm over each pixel's channels) scored 75.5 and 61.7.
    ``group`` and ``instance`` predict differently on a patch, a tile and a whole image.
    """

    def __post_init__(self) -> None:
        _check_integers(self, ("depth", "width"))
        _check(1 <= self.depth <= 6, f"depth must be between 1 and 6; got {self.depth}")
        _check(1 <= self.width <= 256, f"width must be between 1 and 256; got {self.width}")
        _check_choice("norm", self.norm, NORMS)


@dataclass(frozen=True)
class DomainClassifierSpec:
    """The adversarial modes' domain classifier and its gradient reversal (the paper's)."""

    learning_rate: float = 1e-3
    """Adam learning rate of the domain classifier."""
    beta: float = 0.1
    """Weight of the domain loss against the supervised loss."""
    lambda_max: float = 1.0
    """Final gradient-reversal coefficient."""
    lambda_gamma: float = 10.0
    """Steepness of the DANN ramp lambda = lambda_max * (2 / (1 + exp(-gamma p)) - 1)."""
    width: int = 16
    """Channels of the domain classifier's first convolution."""
    gradient: str = "both"
    """Which probability maps pass the reversed gradient to the segmentor: ``both``
    domains (the paper, DANN) or only the ``target`` (source maps are detached, so the
    domain loss never pulls source predictions away from their labels)."""
    local: bool = False
    """The domain classifier decides per 16x16 cell of the map (PatchGAN-like) instead of
    once per patch (the paper), so its reversed gradient points at the regions that look
    foreign rather than at global statistics of the map."""
    spectral_norm: bool = False
    """Spectral normalisation of the domain classifier's layers (limits its strength)."""

    def __post_init__(self) -> None:
        _check_integers(self, ("width",))
        _check(
            0 < self.learning_rate < 1,
            f"domain learning_rate must be in (0, 1); got {self.learning_rate}",
        )
        for name in ("beta", "lambda_max", "lambda_gamma"):
            value = getattr(self, name)
            _check(value >= 0, f"{name} must be >= 0; got {value}")
        _check(self.width >= 1, f"domain width must be >= 1; got {self.width}")
        _check_choice("domain gradient", self.gradient, ("both", "target"))


@dataclass(frozen=True)
class TeacherSpec:
    """The mean-teacher modes' teacher and the pseudo-labels it gives the student."""

    decay: float = 0.99
    """Weight of the old average in the moving average of the weights (the teacher)."""
    consistency_weight: float = 1.0
    """Weight of the loss between student and teacher pseudo-labels."""
    confidence: float = 0.8
    """Pixels count only where the teacher is at least this sure."""
    balance: float | None = None
    """Class-balanced pseudo-labels (CBST; :mod:`~.pseudo_labels`). None: one fixed
    threshold, ``confidence``, for both classes. A quantile in (0, 1]: in each teacher
    batch, each class (the teacher's hard label) counts where its confidence reaches that
    quantile of its class's confidences, capped at ``confidence``, so the class the teacher
    is less sure of (mostly the foreground) keeps about ``1 - balance`` of its pixels
    instead of few."""

    def __post_init__(self) -> None:
        _check(0 <= self.decay < 1, f"teacher decay must be in [0, 1); got {self.decay}")
        if self.balance is not None:
            _check(
                isinstance(self.balance, int | float)
                and not isinstance(self.balance, bool)
                and 0 < self.balance <= 1,
                f"teacher balance must be None or a quantile in (0, 1]; got {self.balance!r}",
            )
            object.__setattr__(self, "balance", float(self.balance))
        _check(
            0.5 <= self.confidence < 1, f"confidence must be in [0.5, 1); got {self.confidence}"
        )
        _check(
            self.consistency_weight >= 0,
            f"consistency_weight must be >= 0; got {self.consistency_weight}",
        )


@dataclass(frozen=True)
class AlignmentSpec:
    """How the target is brought closer to the source before the networks see it."""

    pixel_size: bool = True
    """Where the source's and the target's pixel sizes are both known and differ by more
    than 5%, resample the target to the source's (the model's working pixel size) for
    training and prediction, and the probabilities back to the target's grid. Without
    pixel sizes nothing changes."""
    histogram_matching: bool = False
    """Match the target's intensity histogram to the source's (after preprocessing); the
    model keeps the source's histogram and matches every image it predicts to it."""
    fda_beta: float = 0.0
    """Fourier domain adaptation (Yang & Soatto, CVPR 2020): source patches take the
    low-frequency amplitude spectrum of target patches, in a centred square of half-side
    ``fda_beta`` times the patch side (0: off; the paper used 0.01 to 0.09)."""
    appearance: float = 0.0
    """Strength of extra appearance augmentation of source patches (gamma, contrast,
    brightness, blur, noise; 0: off, 1: the module's full ranges)."""

    def __post_init__(self) -> None:
        for name in ("pixel_size", "histogram_matching"):
            value = getattr(self, name)
            _check(isinstance(value, bool), f"{name} must be True or False; got {value!r}")
        _check(0 <= self.fda_beta <= 0.5, f"fda_beta must be in [0, 0.5]; got {self.fda_beta}")
        _check(0 <= self.appearance <= 1, f"appearance must be in [0, 1]; got {self.appearance}")


@dataclass(frozen=True)
class SelectionSpec:
    """Label-free checks during a run, and which model the run returns."""

    every: int | None = None
    """Steps between label-free checks of the model the run would return (None: none).
    Each check re-estimates BatchNorm statistics of a copy of it on fixed target patches
    and computes the criteria of :mod:`~napari_domain_adapt.core.selection`
    (``consistency``, ``entropy``), which the widget plots."""
    by: str = "last"
    """Which model to return: the ``last``, or the checked one with the best
    ``consistency`` or ``entropy`` (needs ``every`` and a target)."""

    def __post_init__(self) -> None:
        _check(
            self.every is None
            or (
                isinstance(self.every, int)
                and not isinstance(self.every, bool)
                and self.every >= 1
            ),
            f"select_every must be None or an integer >= 1; got {self.every!r}",
        )
        _check_choice("select_by", self.by, SELECT_BY)
        _check(
            self.by == "last" or self.every is not None,
            f"select_by {self.by!r} needs select_every (steps between checks)",
        )


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; saved inside each checkpoint."""

    mode: str = "mean-teacher"
    """``source-only``, ``adversarial`` (the paper's method), ``semi-supervised``,
    ``mean-teacher`` or ``adversarial+mean-teacher``. The default is the mode that scored
    best on average over the accuracy benchmark's four real pairs (three seeds), both
    without target labels (mean F1 78.12 against 77.35 for ``source-only`` and 76.78 for
    ``adversarial``) and with one labelled target slice (81.64 against 79.82 for
    ``semi-supervised``; docs/results.md)."""
    steps: int = 1000
    """Optimiser steps."""
    batch_size: int = 8
    """Source patches per step (and as many target patches in the adversarial modes)."""
    patch_size: int = 128
    """Side of the square training patches, in pixels."""
    learning_rate: float = 1e-3
    """Adam learning rate of the segmentor."""
    warmup_fraction: float = 0.2
    """Share of the steps trained on source only (lambda = 0) before adaptation starts."""
    average_weights: bool = True
    """Keep an exponential moving average of the segmentor's weights and return it as the
    model (Polyak averaging): it smooths out the swings of adversarial training. The
    mean-teacher modes always keep it: it is their teacher."""
    target_statistics: bool = True
    """With BatchNorm, re-estimate its running statistics on target patches at the end of
    an adaptive run (AdaBN, Li et al., 2016), so the model normalises target features with
    the target's own statistics rather than a mix of both domains'."""
    target_label_fraction: float = 0.5
    """Semi-supervised: share of the supervised batch taken from labelled target slices."""
    dice_weight: float = 1.0
    """Weight of the soft Dice term beside binary cross-entropy in the supervised loss."""
    augment: bool = True
    """Random flips, rotations and intensity changes of the training patches."""
    seed: int = 0
    """Seed of weights, patch sampling and augmentation; runs on CPU are repeatable."""
    device: str = "auto"
    """``auto`` (CUDA, then MPS, then CPU), or a torch device such as ``cpu`` or ``cuda:1``."""
    amp: bool = False
    """Run the networks' forward passes in bfloat16 (autocast; weights, optimiser and
    losses stay float32) on the CPU or a CUDA GPU. 1.8x faster training steps on a CPU
    with AVX512-BF16 or AMX, and on recent GPUs; slower on CPUs without them."""
    preview_interval: float | None = 3.0
    """Seconds of training between live previews of the target, longer where a preview
    takes long, so that previews take at most a fifth of a run (0: every step; None: no
    previews)."""
    model: ModelSpec = field(default_factory=ModelSpec)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    domain: DomainClassifierSpec = field(default_factory=DomainClassifierSpec)
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    selection: SelectionSpec = field(default_factory=SelectionSpec)
    alignment: AlignmentSpec = field(default_factory=AlignmentSpec)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _check_integers(self, ("steps", "batch_size", "patch_size", "seed"))
        _check_choice("mode", self.mode, MODES)
        _check(isinstance(self.amp, bool), f"amp must be True or False; got {self.amp!r}")
        _check(self.steps >= 1, f"steps must be at least 1; got {self.steps}")
        _check(self.batch_size >= 1, f"batch_size must be at least 1; got {self.batch_size}")
        _check(
            0 <= self.seed < 2**63,
            f"seed must be between 0 and 2**63 - 1 (torch's range); got {self.seed}",
        )
        _check(
            self.patch_size >= 2**self.model.depth and self.patch_size % 2**self.model.depth == 0,
            f"patch_size must be a multiple of {2**self.model.depth} (2**depth); "
            f"got {self.patch_size}",
        )
        _check(
            self.mode not in ADVERSARIAL_MODES or self.patch_size >= MIN_DOMAIN_PATCH,
            f"mode {self.mode!r} needs patch_size >= {MIN_DOMAIN_PATCH} (the domain "
            f"classifier's input); got {self.patch_size}",
        )
        _check(
            0 < self.learning_rate < 1,
            f"learning_rate must be in (0, 1); got {self.learning_rate}",
        )
        _check(
            self.preview_interval is None or self.preview_interval >= 0,
            f"preview_interval must be >= 0 or None; got {self.preview_interval}",
        )
        _check(self.dice_weight >= 0, f"dice_weight must be >= 0; got {self.dice_weight}")
        _check(
            0 <= self.warmup_fraction < 1,
            f"warmup_fraction must be in [0, 1); got {self.warmup_fraction}",
        )
        _check(
            0 < self.target_label_fraction < 1,
            f"target_label_fraction must be in (0, 1); got {self.target_label_fraction}",
        )
        for name, kind in GROUPS.items():
            _check(
                isinstance(getattr(self, name), kind),
                f"{name} must be a {kind.__name__}; got {getattr(self, name)!r}",
            )
        _check(
            self.version == CONFIG_VERSION,
            f"configuration version {self.version} is not supported (expected {CONFIG_VERSION})",
        )

    @property
    def adversarial(self) -> bool:
        """Whether this run trains a domain classifier."""
        return self.mode in ADVERSARIAL_MODES

    @property
    def mean_teacher(self) -> bool:
        """Whether this run trains with an exponential-moving-average teacher."""
        return self.mode in TEACHER_MODES

    @property
    def needs_target(self) -> bool:
        """Whether this mode learns from target images."""
        return self.mode != "source-only"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (JSON-serialisable) for checkpoints and results files."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild and validate a configuration saved by :meth:`to_dict` (of this version,
        or of version 1, whose fields were not grouped)."""
        data = _grouped(dict(data)) if data.get("version", 1) == 1 else dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _check(not unknown, f"unknown configuration fields: {', '.join(unknown)}")
        for name, kind in {"model": ModelSpec, "preprocessing": Preprocessing, **GROUPS}.items():
            if name in data:
                values = _known(kind, data[name], name)
                if "percentiles" in values:
                    values["percentiles"] = tuple(values["percentiles"])
                data[name] = kind(**values)
        return cls(**data)


#: The groups of :class:`TrainConfig` beside its model and preprocessing.
GROUPS: dict[str, type] = {
    "domain": DomainClassifierSpec,
    "teacher": TeacherSpec,
    "selection": SelectionSpec,
    "alignment": AlignmentSpec,
}

#: Where version 1's flat fields went: ``name: (group, field)``.
_VERSION_1_FIELDS = {
    "domain_learning_rate": ("domain", "learning_rate"),
    "beta": ("domain", "beta"),
    "lambda_max": ("domain", "lambda_max"),
    "lambda_gamma": ("domain", "lambda_gamma"),
    "domain_width": ("domain", "width"),
    "domain_gradient": ("domain", "gradient"),
    "domain_local": ("domain", "local"),
    "spectral_norm": ("domain", "spectral_norm"),
    "teacher_decay": ("teacher", "decay"),
    "consistency_weight": ("teacher", "consistency_weight"),
    "confidence": ("teacher", "confidence"),
    "select_every": ("selection", "every"),
    "select_by": ("selection", "by"),
}


def _grouped(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 configuration (flat) in this version's groups."""
    for old, (group, name) in _VERSION_1_FIELDS.items():
        if old in data:
            data.setdefault(group, {})[name] = data.pop(old)
    data["version"] = CONFIG_VERSION
    return data


def _known(cls: type, data: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``data`` after checking that ``cls`` has every field it names."""
    _check(isinstance(data, dict), f"{name} configuration must be a mapping; got {data!r}")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    _check(not unknown, f"unknown {name} configuration fields: {', '.join(unknown)}")
    return dict(data)
