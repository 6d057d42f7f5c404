"""What the accuracy benchmark measures: its dataset pairs, the kinds of units, the profiles
(how long and how big each run is) and the plan of the units a profile needs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import corrections
from napari_domain_adapt.core import TrainConfig
from napari_domain_adapt.core.config import IMAGE_KINDS, ModelSpec, Preprocessing

RETINA = ("drive", "stare")
EM = ("isbi2012", "vnc")
PAIRS = [("stare", "drive"), ("drive", "stare"), ("isbi2012", "vnc"), ("vnc", "isbi2012")]
RETINA_PAIRS = tuple(p for p in PAIRS if p[0] in RETINA)
#: What each kind of unit trains: its mode, and which target train labels it sees (none;
#: all of slice 0; or simulated scribbles drawn from slice 0, about 1% of its pixels,
#: strokes per class, by seed). "semi-supervised" and "scribbles" are the paper's
#: semi-supervised mode (adversarial); the mean teacher adds labelled target pixels to its
#: supervised loss the same way. A mode's own name is a kind without target labels.
KINDS = {
    "supervised": ("source-only", None),
    "semi-supervised": ("semi-supervised", "slice"),
    "scribbles": ("semi-supervised", "scribbles"),
    "mean-teacher+slice": ("mean-teacher", "slice"),
    "mean-teacher+scribbles": ("mean-teacher", "scribbles"),
    # The mean teacher on the target alone, from the source's supervised model.
    "source-free": ("mean-teacher", None),
    # The mean teacher with the source as usual, but from the source's supervised model
    # (in the widget: a source-only run, then Adapt with "Start from: the current model").
    "from-source-only": ("mean-teacher", None),
    # The mean teacher's model after rounds of simulated corrections on slice 0: scribbles
    # on its largest errors, more training (corrections.py).
    corrections.KIND: ("mean-teacher", "corrections"),
}
#: Kinds that start from the model of an earlier unit of the same seed (and pair): its kind.
STARTS_FROM = {
    "source-free": "supervised",
    "from-source-only": "supervised",
    corrections.KIND: corrections.STARTS_FROM,
}
#: Variants of a kind, tried by the screening profile: ``KIND/VARIANT`` trains ``KIND``
#: with these settings changed (paths of :func:`~napari_domain_adapt.core.with_values`).
VARIANTS = {
    "no-rescale": {"alignment.pixel_size": False},
    "balance": {"teacher.balance": 0.5},
    "histogram": {"alignment.histogram_matching": True},
    "fda": {"alignment.fda_beta": 0.01},
    "appearance": {"alignment.appearance": 0.5},
}
#: The candidate variants of the mean teacher the screening profiles try.
SCREENED = tuple(f"mean-teacher/{v}" for v in ("balance", "histogram", "fda", "appearance"))
#: Datasets made at run time from a shared one: name -> (dataset, binning in Y and X).
SCALED = {"vnc@9.2nm": ("vnc", 2)}
#: How much a few strokes buy, and in which mode: run on the EM pairs only.
LABEL_KINDS = ("scribbles", "mean-teacher+scribbles")

#: F-score (%) from Javanmardi & Tasdizen 2018: baseline, adapted, semi-supervised, upper bound.
#: The EM rows are the paper's ISBI 2013 <-> CREMI C pairs, which we cannot get here; our EM
#: pairs are ISBI 2012 <-> Drosophila VNC, a stand-in, not the same experiment.
PAPER = {
    ("stare", "drive"): (62.45, 67.09, None, 80.68, "STARE -> DRIVE"),
    ("drive", "stare"): (67.86, 76.75, None, 77.08, "DRIVE -> STARE"),
    ("isbi2012", "vnc"): (35.36, 42.60, 73.68, 80.63, "ISBI 2013 -> CREMI C"),
    ("vnc", "isbi2012"): (13.16, 39.11, 77.40, 83.91, "CREMI C -> ISBI 2013"),
}


@dataclass(frozen=True)
class Profile:
    """How long and how big each run is."""

    steps: int
    seeds: tuple[int, ...]
    pairs: tuple[tuple[str, str], ...]
    #: Kinds (see :data:`KINDS`) run on every pair, besides the supervised models.
    modes: tuple[str, ...] = ("adversarial", "semi-supervised")
    #: Kinds run on ``label_pairs`` only.
    label_kinds: tuple[str, ...] = ()
    label_pairs: tuple[tuple[str, str], ...] = ()
    patch_size: int = 128
    batch_size: int = 8
    width: int = 16
    #: Whether the EM datasets carry their pixel sizes (as calibrated files would), so
    #: that runs resample a target at another scale (see core.resampling).
    pixel_sizes: bool = False
    #: Steps of a source-free run: half the mean teacher's (the goal: its F1 in at most
    #: half its time; a step without source patches is cheaper too).
    source_free_steps: int = 500
    #: Rounds of the correction loop, and the steps of training after each round's scribbles.
    correction_rounds: int = 3
    correction_steps: int = 300


PROFILES = {
    "full": Profile(
        steps=1000,
        seeds=(0, 1, 2),
        pairs=tuple(PAIRS),
        modes=(
            "adversarial",
            "semi-supervised",
            "mean-teacher",
            "mean-teacher+slice",
            "source-free",
        ),
        label_kinds=(*LABEL_KINDS, corrections.KIND),
        label_pairs=tuple(p for p in PAIRS if p[0] in EM),
    ),
    "quick": Profile(steps=250, seeds=(0,), pairs=(("isbi2012", "vnc"),), patch_size=96),
    # Candidates first: one seed, half the steps, on the pair with a known scale shift.
    "screen": Profile(
        steps=500,
        seeds=(0,),
        pairs=(("isbi2012", "vnc@9.2nm"),),
        modes=(
            "mean-teacher",
            "mean-teacher/no-rescale",
            *SCREENED,
            "from-source-only",
            "source-free",
        ),
        label_kinds=(corrections.KIND,),
        label_pairs=(("isbi2012", "vnc@9.2nm"),),
        pixel_sizes=True,
        source_free_steps=250,
        correction_steps=150,
    ),
    # The scale-shift pair at the full profile's size: the goals are three seeds.
    "scale": Profile(
        steps=1000,
        seeds=(0, 1, 2),
        pairs=(("isbi2012", "vnc@9.2nm"),),
        modes=("mean-teacher",),
        pixel_sizes=True,
    ),
    # The same candidates on the retina pair where the mean teacher loses most.
    "screen-retina": Profile(
        steps=500,
        seeds=(0,),
        pairs=(("stare", "drive"),),
        modes=("mean-teacher", *SCREENED, "from-source-only"),
    ),
    # The kinds that start from a trained model, on the EM pairs: source-free from the
    # source-only model, corrections after the mean teacher. One seed, half the steps.
    "screen-from-model": Profile(
        steps=500,
        seeds=(0,),
        pairs=tuple(p for p in PAIRS if p[0] in EM),
        modes=("mean-teacher", "source-free"),
        label_kinds=(corrections.KIND,),
        label_pairs=tuple(p for p in PAIRS if p[0] in EM),
        source_free_steps=250,
        correction_steps=150,
    ),
    # Is the training budget the limit on the retina pairs? One seed of their models at
    # three times the full profile's steps, and at twice its width (1000 steps, width 16).
    "budget-steps": Profile(steps=3000, seeds=(0,), pairs=RETINA_PAIRS, modes=()),
    "budget-width": Profile(steps=1000, seeds=(0,), pairs=RETINA_PAIRS, modes=(), width=32),
    # Seconds, not minutes: for the tests of this script, not for numbers.
    "smoke": Profile(
        steps=3,
        seeds=(0,),
        pairs=(("isbi2012", "vnc"),),
        label_kinds=LABEL_KINDS,
        label_pairs=(("isbi2012", "vnc"),),
        patch_size=64,
        batch_size=2,
        width=4,
        source_free_steps=2,
        correction_rounds=2,
        correction_steps=2,
    ),
}


#: Profiles whose results are committed under ``benchmarks/results/PROFILE``, where the
#: tables of docs/results.md are generated from; any other profile's are scratch.
COMMITTED = (
    "full",
    "quick",
    "scale",
    "screen",
    "screen-retina",
    "budget-steps",
    "budget-width",
)


def default_out(profile: str) -> Path:
    """The results folder without ``--out``: the committed one, or one under the system's
    temporary folder for a scratch profile (nothing is written into the repository)."""
    if profile in COMMITTED:
        return Path("benchmarks/results") / profile
    return Path(tempfile.gettempdir()) / "napari-domain-adapt-benchmarks" / profile


def modality_preprocessing(dataset: str) -> Preprocessing:
    """Fundus: green channel, local contrast equalisation, field of view (STARE has no
    masks); EM: robust per-image scaling of the grey value."""
    return IMAGE_KINDS["fundus" if dataset in RETINA else "em"]


def base_config(profile: Profile, dataset: str, mode: str, seed: int) -> TrainConfig:
    """The configuration of one run: library defaults plus the profile's size."""
    return TrainConfig(
        mode=mode,
        steps=profile.steps,
        batch_size=profile.batch_size,
        patch_size=profile.patch_size,
        seed=seed,
        model=ModelSpec(width=profile.width),
        preprocessing=modality_preprocessing(dataset),
        preview_interval=None,
    )


@dataclass(frozen=True)
class Unit:
    """One training run and the test splits it is scored on."""

    kind: str  # a key of KINDS, or a mode (no target labels)
    source: str
    target: str | None
    seed: int
    evaluate_on: tuple[str, ...]

    @property
    def key(self) -> str:
        """File name of the unit's result."""
        pair = self.source if self.target is None else f"{self.source}-{self.target}"
        return f"{self.kind.replace('/', '_')}__{pair}__seed{self.seed}"

    @property
    def starts_from(self) -> Unit | None:
        """The unit of the same seed whose model this one starts from (see STARTS_FROM)."""
        kind = STARTS_FROM.get(self.kind.partition("/")[0])
        if kind is None:
            return None
        return Unit(
            kind, self.source, None if kind == "supervised" else self.target, self.seed, ()
        )


def plan(profile: Profile) -> list[Unit]:
    """Every unit the profile needs, each model once, cheapest kinds first."""
    needed: dict[str, set[str]] = {}
    for source, target in profile.pairs:
        needed.setdefault(source, set()).add(target)  # baseline on the target
        needed.setdefault(target, set()).add(target)  # upper bound on the target
    units = []
    for seed in profile.seeds:  # seed by seed, so a partial suite already fills every cell
        units += [
            Unit("supervised", dataset, None, seed, tuple(sorted(targets)))
            for dataset, targets in sorted(needed.items())
        ]
        units += [
            Unit(kind, source, target, seed, (target,))
            for kind in profile.modes
            for source, target in profile.pairs
        ]
        units += [
            Unit(kind, source, target, seed, (target,))
            for kind in profile.label_kinds
            for source, target in profile.label_pairs
        ]
    planned: set[str] = set()
    for unit in units:
        start = unit.starts_from
        if start is not None and start.key not in planned:
            raise ValueError(f"{unit.key} starts from {start.key}, not planned before it")
        planned.add(unit.key)
    return units
