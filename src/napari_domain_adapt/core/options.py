"""The settings a user can change, described once: the CLI's options and the widget's fields
are made from this table, with :class:`~.config.TrainConfig` for types and defaults.

A setting added here appears in ``train``/``adapt --help`` and in the widget's Advanced
section; its value travels back into a :class:`~.config.TrainConfig` by its field path
(``"steps"``, ``"model.depth"``). Presets are named sets of values on top of the defaults:
the widget starts from ``laptop``, sized for a CPU and the 256x256 sample data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import ADVERSARIAL_MODES, GROUPS, MODES, SELECT_BY, TEACHER_MODES, TrainConfig
from .errors import InputError


@dataclass(frozen=True)
class Setting:
    """One setting of a run, as the CLI and the widget offer it."""

    path: str
    """Where it lives in :class:`TrainConfig`: a field, or ``group.field``."""
    group: str
    """The section it is listed under (``--help`` groups, the widget's order)."""
    label: str
    """Its short name in the widget."""
    help: str
    """What it does, for ``--help`` and the widget's tooltip."""
    flag: str = ""
    """The CLI option; by default ``--`` and the field's name with dashes."""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    """The widget's step between values (spin boxes)."""
    choices: tuple[Any, ...] = ()
    """The values the widget offers; the CLI takes only these unless ``open_choices``."""
    open_choices: bool = False
    """Whether other values are valid too (a device such as ``cuda:1``)."""
    modes: tuple[str, ...] = MODES
    """The modes it acts in: the CLI offers it only to commands that train one of them,
    the widget greys it out for the others."""
    widget: bool = True
    """Whether the widget offers it (in its Advanced section unless ``basic``)."""
    basic: bool = False
    """Whether the widget shows it in the main form, not under Advanced."""
    value_type: type | None = None
    """The type of its values where the default (None) does not tell; else from it."""

    @property
    def option(self) -> str:
        """The CLI option, e.g. ``--patch-size``."""
        return self.flag or "--" + self.path.rsplit(".", 1)[-1].replace("_", "-")

    @property
    def kind(self) -> type:
        """``bool``, ``int``, ``float`` or ``str``: ``value_type``, or the default's type."""
        if self.value_type is not None:
            return self.value_type
        value = get_value(TrainConfig(), self.path)
        return type(value) if value is not None else int

    def default(self, preset: str | None = None) -> Any:
        """The value a run starts with, in ``preset`` (or the plain defaults)."""
        values = PRESETS[preset] if preset else {}
        if self.path in values:
            return values[self.path]
        return get_value(TrainConfig(), self.path)


ADAPTIVE = tuple(mode for mode in MODES if mode != "source-only")

#: Every setting the CLI and the widget offer, in the order they are listed.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "steps",
        "training",
        "Iterations",
        "training steps",
        minimum=1,
        maximum=1_000_000,
        step=50,
        basic=True,
    ),
    Setting(
        "batch_size",
        "training",
        "Batch size",
        "patches per step (from each domain in the adaptive modes)",
        minimum=1,
        maximum=1024,
    ),
    Setting(
        "patch_size",
        "training",
        "Patch size",
        "side of the square patches, a multiple of 2**depth",
        minimum=8,
        maximum=2048,
        step=16,
    ),
    Setting(
        "learning_rate",
        "training",
        "Learning rate",
        "Adam learning rate of the segmentor",
        flag="--lr",
        minimum=1e-6,
        maximum=0.5,
        step=1e-4,
    ),
    Setting("model.depth", "model", "Model depth", "U-Net poolings", minimum=1, maximum=6),
    Setting("model.width", "model", "Model width", "U-Net base width", minimum=1, maximum=256),
    Setting(
        "augment",
        "training",
        "Augmentation",
        "random flips, rotations and intensity changes of the patches",
    ),
    Setting(
        "alignment.pixel_size",
        "alignment",
        "Match pixel sizes",
        "where the source's and the target's pixel sizes are known and differ, resample the "
        "target to the source's for training and prediction (probabilities come back on the "
        "target's grid)",
        flag="--match-pixel-size",
        modes=ADAPTIVE,
    ),
    Setting(
        "warmup_fraction",
        "adaptation",
        "Warm-up",
        "share of steps trained on source only before adapting",
        flag="--warmup",
        minimum=0.0,
        maximum=0.95,
        step=0.05,
        modes=ADAPTIVE,
        widget=False,
    ),
    Setting(
        "domain.beta",
        "adversarial",
        "Beta (domain loss)",
        "adversarial modes: weight of the domain classifier's loss",
        minimum=0.0,
        maximum=100.0,
        step=0.01,
        modes=ADVERSARIAL_MODES,
    ),
    Setting(
        "domain.lambda_max",
        "adversarial",
        "Lambda max",
        "adversarial modes: final strength of the gradient reversal (it ramps up from 0)",
        minimum=0.0,
        maximum=100.0,
        step=0.1,
        modes=ADVERSARIAL_MODES,
        widget=False,
    ),
    Setting(
        "teacher.confidence",
        "mean teacher",
        "Confidence",
        "mean teacher: pixels count only where the teacher is at least this sure",
        minimum=0.5,
        maximum=0.99,
        step=0.01,
        modes=TEACHER_MODES,
        widget=False,
    ),
    Setting(
        "teacher.balance",
        "mean teacher",
        "Class balance",
        "mean teacher: class-balanced pseudo-labels, a quantile in (0, 1]: each class counts "
        "where the teacher's confidence reaches that quantile of its class's in the batch "
        "(at most --confidence), so the class it is less sure of keeps about 1 minus it of "
        "its pixels (not given: the fixed --confidence for both classes)",
        flag="--teacher-balance",
        minimum=0.01,
        maximum=1.0,
        step=0.05,
        modes=TEACHER_MODES,
        widget=False,
        value_type=float,
    ),
    Setting(
        "alignment.histogram_matching",
        "alignment",
        "Match histograms",
        "match each target image's intensity histogram to the source's after preprocessing; "
        "the model keeps the source's and matches every image it predicts",
    ),
    Setting(
        "alignment.fda_beta",
        "alignment",
        "FDA beta",
        "adaptive modes: Fourier domain adaptation; source patches take the target patches' "
        "low-frequency amplitude in a square of half-side FDA_BETA x the patch side "
        "(0: off; Yang & Soatto used 0.01 to 0.09)",
        minimum=0.0,
        maximum=0.5,
        step=0.01,
        modes=ADAPTIVE,
        widget=False,
    ),
    Setting(
        "alignment.appearance",
        "alignment",
        "Appearance",
        "strength of extra gamma, contrast, brightness, blur and noise changes of the source "
        "patches (0: off, 1: the widest)",
        minimum=0.0,
        maximum=1.0,
        step=0.1,
        widget=False,
    ),
    Setting(
        "selection.every",
        "selection",
        "Check every",
        "check label-free criteria (target consistency, entropy) every N steps",
        flag="--select-every",
        minimum=1,
        widget=False,
    ),
    Setting(
        "selection.by",
        "selection",
        "Keep",
        "keep the last model or the checked one with the best criterion",
        flag="--select-by",
        choices=SELECT_BY,
        widget=False,
    ),
    Setting(
        "seed",
        "run",
        "Seed",
        "random seed of the weights and the patches (the same seed, the same model)",
        minimum=0,
        maximum=2**31 - 1,
    ),
    Setting(
        "device",
        "run",
        "Device",
        "auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:1 or mps",
        choices=("auto", "cpu", "cuda", "mps"),
        open_choices=True,
    ),
    Setting(
        "amp",
        "run",
        "bfloat16 (faster)",
        "bfloat16 forward passes: 1.6-2.4x faster training on CPUs with AVX512-BF16 or AMX "
        "and on recent GPUs (slower where bfloat16 is emulated), about 1.5 F1 points lower "
        "on the sample data",
    ),
)

#: Named starting points. ``laptop``: the widget's, for a CPU and the 256x256 sample data
#: (``benchmarks/sample_modes.py`` measures the modes with exactly these), with the
#: label-free checks that its live plot shows.
PRESETS: dict[str, dict[str, Any]] = {
    "laptop": {
        "steps": 600,
        "patch_size": 64,
        "batch_size": 8,
        "model.depth": 3,
        "model.width": 16,
        "selection.every": 50,
    },
}


def get_value(config: TrainConfig, path: str) -> Any:
    """The value at ``path`` (``"steps"``, ``"model.depth"``) of ``config``."""
    value: Any = config
    for name in path.split("."):
        value = getattr(value, name)
    return value


def with_values(config: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """``config`` with the values at the given paths replaced, validated again."""
    plain: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        group, _, name = path.rpartition(".")
        if group:
            nested.setdefault(group, {})[name] = value
        else:
            plain[path] = value
    for group, changes in nested.items():
        if group not in ("model", "preprocessing", *GROUPS):
            raise InputError(f"unknown configuration group {group!r}")
        plain[group] = dataclasses.replace(plain.get(group, getattr(config, group)), **changes)
    return dataclasses.replace(config, **plain)


def preset(name: str | None = None, **changes: Any) -> TrainConfig:
    """A configuration from the preset ``name`` (None: the plain defaults) and ``changes``
    (field names of :class:`TrainConfig`)."""
    if name is not None and name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    config = with_values(TrainConfig(), PRESETS[name] if name else {})
    return dataclasses.replace(config, **changes) if changes else config
