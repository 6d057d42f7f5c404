"""A label-free guard: does the adapted model beat the source-only one on the target?

At the end of an adaptive run the user has two models, the source-only one (trained on
the labelled source alone) and the adapted one, and no target label to compare them by.
The guard compares them by what it can see: both models' probabilities on held-back,
labelled *source* slices, with those labels, and on the unlabelled *target* images. No
function here accepts a target label, so no verdict can depend on one.

Estimators, per model:

- **Average Thresholded Confidence** (ATC; Garg, Balakrishnan, Lipton, Neyshabur &
  Sedghi, "Leveraging unlabeled data to predict out-of-distribution performance",
  ICLR 2022), pixel-wise: on the source slices find the threshold ``t`` on the
  confidence ``max(p, 1 - p)`` such that the share of pixels with confidence above ``t``
  equals the model's pixel accuracy there; the target's estimated accuracy is the share
  of target pixels with confidence above ``t``. ATC assumes that the model's confidence
  ranks its pixels by correctness alike in both domains, and it fails where the model is
  confidently wrong on the target (Garg et al. show that no estimator works under every
  shift).
- **ATC F1** of the foreground, the score we report: pixel accuracy is dominated by the
  background, and F1 depends on the errors of each predicted class separately. So the
  same rule runs once per predicted class: among source pixels predicted foreground, the
  threshold at which the share above it equals the precision there; among pixels
  predicted background, the one for the negative predictive value (NPV). On the target
  the share of predicted-foreground pixels above their threshold estimates the
  precision, the share of predicted-background pixels above theirs the NPV; the expected
  ``TP = precision * n_fg``, ``FP = n_fg - TP``, ``FN = (1 - NPV) * n_bg`` give F1. On
  the source slices themselves this reproduces the true F1 exactly (ties aside). A class
  the model never predicts on the source falls back to the global threshold.
- **Source F1 retained**: F1 of the model on the held-back source slices (at 0.5). An
  adapted model that forgot the source has probably not learned the task better.
- **prior_gap** (as in ``benchmarks/selection.py``): how far the share of target pixels
  predicted foreground (at 0.5) lies from the foreground share of the source labels. A
  collapse (masks that vanish or flood) shows up here first, and ATC misses it: a model
  confidently wrong everywhere looks sure, hence right.

Between the models, :func:`target_agreement` on the target: the share of pixels whose masks
agree bounds the difference of their target pixel accuracies (``|acc_a - acc_b| <=
1 - agreement``), and the masks' Dice says whether they differ at all.

:func:`guard_verdict` combines them by a fixed, documented rule (see there), which keeps
the source-only model unless the adapted one earns its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .metrics import segmentation_scores

#: The two models a verdict chooses between.
SOURCE_ONLY, ADAPTED = "source-only", "adapted"


class Predictions(NamedTuple):
    """One model's foreground probabilities on the held-back source slices and the target."""

    source: np.ndarray
    target: np.ndarray


@dataclass(frozen=True)
class GuardVerdict:
    """Which model to keep, the estimates behind it and one line that says why."""

    prefer: str
    """``"adapted"`` or ``"source-only"``."""
    estimates: dict[str, dict[str, float]]
    """Per model (``"source-only"``, ``"adapted"``): the estimates of :func:`model_estimates`."""
    reason: str
    """One line for the CLI and the widget."""
    decided_by: str
    """The rule of :func:`guard_verdict` that decided (``source-f1``, ``atc``, ...)."""
    agreement: dict[str, float] = field(default_factory=dict)
    """The models' agreement on the target (:func:`target_agreement`), where it was given."""


def _flat(array: np.ndarray, mask: np.ndarray | None, name: str) -> np.ndarray:
    """``array`` as float64 pixels, inside ``mask`` where given; shapes checked."""
    values = np.asarray(array, dtype=np.float64)
    if mask is None:
        return values.ravel()
    mask = np.asarray(mask).astype(bool)
    if mask.shape != values.shape:
        raise ValueError(f"{name} has shape {values.shape} but its mask has {mask.shape}")
    return values[mask]


def _same_shape(first: np.ndarray, second: np.ndarray, what: str) -> None:
    if np.shape(first) != np.shape(second):
        raise ValueError(f"{what}: shapes {np.shape(first)} and {np.shape(second)} differ")


def confidence(probabilities: np.ndarray) -> np.ndarray:
    """A pixel's confidence in its own hard label: ``max(p, 1 - p)``, in [0.5, 1]."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.maximum(p, 1.0 - p)


def atc_threshold(confidences: np.ndarray, accuracy: float) -> float:
    """The threshold ``t`` above which (strictly) an ``accuracy`` share of ``confidences`` lie.

    With ``k = round(accuracy * n)``: the ``(n - k)``-th smallest confidence, so that
    exactly ``k`` pixels lie above it when there are no ties; 0 where ``k = n`` (every
    pixel above), the largest confidence where ``k = 0`` (none). Raises ValueError on no
    pixel.
    """
    values = np.sort(np.asarray(confidences, dtype=np.float64).ravel())
    n = values.size
    if n == 0:
        raise ValueError("no pixel to find the ATC threshold on")
    k = round(float(accuracy) * n)
    return 0.0 if k >= n else float(values[n - k - 1])


def _above(confidences: np.ndarray, threshold: float) -> float:
    """Share of ``confidences`` above ``threshold`` (1 for no pixel: nothing to be wrong)."""
    return float(np.mean(confidences > threshold)) if confidences.size else 1.0


def _f1(tp: float, fp: float, fn: float) -> float:
    """F1 from (expected) counts; 1 where nothing is predicted and nothing is missed."""
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 1.0


def atc_estimates(
    source_probabilities: np.ndarray,
    source_labels: np.ndarray,
    target_probabilities: np.ndarray,
    source_masks: np.ndarray | None = None,
    target_masks: np.ndarray | None = None,
) -> dict[str, float]:
    """ATC's estimates of the target's pixel accuracy and foreground F1 (see the module).

    Keys: ``atc_threshold``, ``target_accuracy`` (global ATC), ``target_precision``,
    ``target_npv``, ``target_recall`` and ``target_f1`` (per predicted class).
    """
    _same_shape(source_probabilities, source_labels, "source probabilities and labels")
    p = _flat(source_probabilities, source_masks, "source probabilities")
    truth = _flat(source_labels, source_masks, "source labels") > 0
    q = _flat(target_probabilities, target_masks, "target probabilities")
    if p.size == 0 or q.size == 0:
        raise ValueError("the guard needs source and target pixels (inside the masks)")
    predicted, target_predicted = p >= 0.5, q >= 0.5
    source_conf, target_conf = confidence(p), confidence(q)
    threshold = atc_threshold(source_conf, float(np.mean(predicted == truth)))

    def class_share(on_source: np.ndarray, on_target: np.ndarray, correct: np.ndarray) -> float:
        # The class's own threshold where the model predicts it on the source, else t.
        own = threshold
        if on_source.any():
            own = atc_threshold(source_conf[on_source], float(np.mean(correct[on_source])))
        return _above(target_conf[on_target], own)

    precision = class_share(predicted, target_predicted, truth)
    npv = class_share(~predicted, ~target_predicted, ~truth)
    n_fg = float(np.count_nonzero(target_predicted))
    tp, fp, fn = precision * n_fg, (1.0 - precision) * n_fg, (1.0 - npv) * (q.size - n_fg)
    return {
        "atc_threshold": threshold,
        "target_accuracy": _above(target_conf, threshold),
        "target_precision": precision,
        "target_npv": npv,
        "target_recall": tp / (tp + fn) if tp + fn > 0 else 1.0,
        "target_f1": _f1(tp, fp, fn),
    }


def model_estimates(
    source_probabilities: np.ndarray,
    source_labels: np.ndarray,
    target_probabilities: np.ndarray,
    source_masks: np.ndarray | None = None,
    target_masks: np.ndarray | None = None,
) -> dict[str, float]:
    """Every per-model estimate of the guard, from source labels and target predictions.

    ATC's (:func:`atc_estimates`), plus ``source_f1`` and ``source_accuracy`` on the
    held-back source slices, ``source_share`` (their labels' foreground share),
    ``target_share`` (target pixels predicted foreground at 0.5) and ``prior_gap``.
    """
    atc = atc_estimates(
        source_probabilities, source_labels, target_probabilities, source_masks, target_masks
    )
    scores = segmentation_scores(source_probabilities, np.asarray(source_labels) > 0, source_masks)
    source_share = float(np.mean(_flat(source_labels, source_masks, "source labels") > 0))
    target = _flat(target_probabilities, target_masks, "target probabilities")
    target_share = float(np.mean(target >= 0.5))
    return {
        "source_f1": scores["f1"],
        "source_accuracy": scores["accuracy"],
        "source_share": source_share,
        "target_share": target_share,
        "prior_gap": abs(target_share - source_share),
        **atc,
    }


def target_agreement(
    first: np.ndarray, second: np.ndarray, masks: np.ndarray | None = None
) -> dict[str, float]:
    """How alike two models' target masks (at 0.5) are: pixel ``agreement`` and ``mask_dice``.

    ``1 - agreement`` bounds the difference of the two models' pixel accuracies on the
    target, whatever its labels; ``mask_dice`` is 1 where both masks are empty.
    """
    _same_shape(first, second, "the two models' target probabilities")
    a = _flat(first, masks, "target probabilities") >= 0.5
    b = _flat(second, masks, "target probabilities") >= 0.5
    total = int(a.sum()) + int(b.sum())
    dice = 1.0 if total == 0 else 2.0 * float(np.count_nonzero(a & b)) / total
    return {"agreement": float(np.mean(a == b)) if a.size else 1.0, "mask_dice": dice}


def guard_verdict(
    source_only: dict[str, float],
    adapted: dict[str, float],
    agreement: dict[str, float] | None = None,
    *,
    min_gain: float = 0.01,
    source_margin: float = 0.05,
    prior_margin: float = 0.10,
    collapse_ratio: float = 0.25,
    same_dice: float = 0.99,
) -> GuardVerdict:
    """Which model to keep, from both models' :func:`model_estimates` (and their agreement).

    The rule, first match wins; the source-only model is the default, so that Adapt never
    silently makes things worse:

    0. ``invalid``: an estimate the rule uses is not finite -> source-only.
    1. ``source-f1``: the adapted model's source F1 fell more than ``source_margin``
       below the source-only one's -> source-only (it forgot what the labels taught).
    2. ``prior-gap``: the adapted model's ``prior_gap`` exceeds the source-only one's by
       more than ``prior_margin`` -> source-only (its target masks drifted: a collapse).
    3. ``collapse``: the adapted model predicts less than ``collapse_ratio`` times the
       source labels' foreground share on the target -> source-only (vanishing masks,
       which ATC rates well: every pixel is then confidently background).
    4. ``agreement``: where given, the target masks' Dice is at least ``same_dice`` ->
       source-only (the models differ too little for an estimate to tell them apart).
    5. ``atc``: adapted where its ATC target F1 beats the source-only one's by at least
       ``min_gain`` (1 F1 point), else source-only (a tie keeps the baseline).
    """
    ours, base = adapted, source_only
    estimates = {SOURCE_ONLY: dict(base), ADAPTED: dict(ours)}
    used = ("source_f1", "target_f1", "prior_gap", "target_share", "source_share")
    if not all(np.isfinite(model[key]) for model in (ours, base) for key in used):
        return GuardVerdict(
            prefer=SOURCE_ONLY,
            estimates=estimates,
            reason="source-only model preferred: an estimate is not a number",
            decided_by="invalid",
            agreement=dict(agreement or {}),
        )
    f1 = f"estimated target F1 {ours['target_f1']:.2f} vs {base['target_f1']:.2f} (ATC)"
    kept = f"source F1 retained {ours['source_f1']:.2f} vs {base['source_f1']:.2f}"
    if ours["source_f1"] < base["source_f1"] - source_margin:
        prefer, rule = SOURCE_ONLY, "source-f1"
        why = f"the adapted model lost more than {source_margin:.2f} source F1"
    elif ours["prior_gap"] > base["prior_gap"] + prior_margin:
        prefer, rule = SOURCE_ONLY, "prior-gap"
        why = (
            f"the adapted model's target foreground share {ours['target_share']:.2f} drifted "
            f"from the source labels' {ours['source_share']:.2f} "
            f"(source-only: {base['target_share']:.2f})"
        )
    elif ours["target_share"] < collapse_ratio * ours["source_share"]:
        prefer, rule = SOURCE_ONLY, "collapse"
        why = (
            f"the adapted model's target masks nearly vanished (foreground share "
            f"{ours['target_share']:.3f}, source labels {ours['source_share']:.2f})"
        )
    elif agreement is not None and agreement["mask_dice"] >= same_dice:
        prefer, rule = SOURCE_ONLY, "agreement"
        why = f"the models' target masks agree (Dice {agreement['mask_dice']:.3f})"
    else:
        rule = "atc"
        gain = ours["target_f1"] - base["target_f1"]
        prefer = ADAPTED if gain >= min_gain - 1e-9 else SOURCE_ONLY  # 0.70 - 0.69 counts
        why = ""
        if gain == 0:
            why = "a tie keeps the baseline"
        elif gain < 0:
            why = "the adapted model is not estimated better"
        elif prefer == SOURCE_ONLY:
            why = f"a gain under {min_gain:.2f} F1 keeps the baseline"
    parts = [why, f1, kept] if why else [f1, kept]
    reason = f"{prefer} model preferred: " + "; ".join(parts) + " (adapted vs source-only)"
    return GuardVerdict(
        prefer=prefer,
        estimates=estimates,
        reason=reason,
        decided_by=rule,
        agreement=dict(agreement or {}),
    )


def guard(
    source_labels: np.ndarray,
    source_only: Predictions,
    adapted: Predictions,
    source_masks: np.ndarray | None = None,
    target_masks: np.ndarray | None = None,
    **rule: float,
) -> GuardVerdict:
    """The verdict from both models' predictions and the source labels alone.

    ``rule`` passes the margins of :func:`guard_verdict`. The target enters only as the
    models' probabilities: there is no parameter for a target label.
    """
    source_only, adapted = Predictions(*source_only), Predictions(*adapted)
    _same_shape(source_only.target, adapted.target, "the two models' target probabilities")
    estimates = [
        model_estimates(model.source, source_labels, model.target, source_masks, target_masks)
        for model in (source_only, adapted)
    ]
    together = target_agreement(source_only.target, adapted.target, target_masks)
    return guard_verdict(*estimates, together, **rule)
