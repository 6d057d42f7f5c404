"""The label-free guard: ATC's estimates, the verdict's rule, and no target label anywhere."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from napari_domain_adapt.core import guard as guard_module
from napari_domain_adapt.core.guard import (
    ADAPTED,
    SOURCE_ONLY,
    GuardVerdict,
    Predictions,
    atc_estimates,
    atc_threshold,
    guard,
    guard_verdict,
    model_estimates,
    target_agreement,
)
from napari_domain_adapt.core.metrics import segmentation_scores

SHAPE = (4, 48, 48)


def labels(seed: int, share: float = 0.2) -> np.ndarray:
    """Boolean labels with about ``share`` foreground."""
    return np.random.default_rng(seed).random(SHAPE) < share


def calibrated(truth: np.ndarray, low: float, high: float, seed: int) -> np.ndarray:
    """A calibrated model's probabilities: confidence uniform in [low, high], and right
    on each pixel with a probability equal to its confidence."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(low, high, truth.shape)
    predicted = np.where(rng.random(truth.shape) < confidence, truth, ~truth)
    return np.where(predicted, confidence, 1 - confidence)


SOURCE, TARGET = labels(1), labels(2)  # TARGET scores the verdicts here; the guard never sees it
SURE_SOURCE = calibrated(SOURCE, 0.85, 1.0, seed=3)
SURE_TARGET = calibrated(TARGET, 0.85, 1.0, seed=4)  # confident and right on the target
UNSURE_TARGET = calibrated(TARGET, 0.5, 0.75, seed=5)  # confident on the source only


def true_f1(target_probabilities: np.ndarray) -> float:
    """The target F1 by the target labels: what the guard has to guess."""
    return segmentation_scores(target_probabilities, TARGET)["f1"]


def test_atc_threshold_leaves_the_accuracy_share_above_it() -> None:
    confidences = np.array([0.9, 0.6, 0.8, 0.7])
    assert atc_threshold(confidences, 0.5) == 0.7  # 0.8 and 0.9 above
    assert atc_threshold(confidences, 0.75) == 0.6
    assert atc_threshold(confidences, 1.0) == 0.0  # every pixel above
    assert atc_threshold(confidences, 0.0) == 0.9  # none
    rng = np.random.default_rng(0)
    many = rng.uniform(0.5, 1.0, 10_001)
    for accuracy in (0.1, 0.42, 0.93):
        assert np.mean(many > atc_threshold(many, accuracy)) == pytest.approx(accuracy, abs=1e-4)
    with pytest.raises(ValueError, match="no pixel"):
        atc_threshold(np.array([]), 0.5)


def test_on_the_source_itself_atc_reproduces_accuracy_and_f1() -> None:
    estimates = model_estimates(SURE_SOURCE, SOURCE, SURE_SOURCE)
    scores = segmentation_scores(SURE_SOURCE, SOURCE)
    assert estimates["target_accuracy"] == pytest.approx(scores["accuracy"], abs=1e-9)
    assert estimates["target_f1"] == pytest.approx(scores["f1"], abs=1e-9)
    assert estimates["target_precision"] == pytest.approx(scores["precision"], abs=1e-9)
    assert estimates["target_recall"] == pytest.approx(scores["recall"], abs=1e-9)
    assert estimates["source_f1"] == scores["f1"]
    # The same confidence on a new target of the same kind: close to the truth there.
    on_target = model_estimates(SURE_SOURCE, SOURCE, SURE_TARGET)
    assert on_target["target_f1"] == pytest.approx(true_f1(SURE_TARGET), abs=0.02)
    truth = segmentation_scores(SURE_TARGET, TARGET)["accuracy"]
    assert on_target["target_accuracy"] == pytest.approx(truth, abs=0.01)


def test_prior_gap_is_the_distance_of_the_shares() -> None:
    estimates = model_estimates(SURE_SOURCE, SOURCE, UNSURE_TARGET)
    assert estimates["source_share"] == pytest.approx(SOURCE.mean())
    assert estimates["target_share"] == pytest.approx(np.mean(UNSURE_TARGET >= 0.5))
    assert estimates["prior_gap"] == pytest.approx(
        abs(estimates["target_share"] - estimates["source_share"])
    )
    assert estimates["target_share"] > 0.35  # the unsure model floods the target


def test_the_model_confident_and_right_on_the_target_is_preferred() -> None:
    source_only = Predictions(SURE_SOURCE, UNSURE_TARGET)
    adapted = Predictions(calibrated(SOURCE, 0.85, 1.0, seed=6), SURE_TARGET)
    assert true_f1(SURE_TARGET) > true_f1(UNSURE_TARGET) + 0.3  # the known answer
    verdict = guard(SOURCE, source_only, adapted)
    assert verdict.prefer == ADAPTED
    assert verdict.decided_by == "atc"
    estimated = {name: e["target_f1"] for name, e in verdict.estimates.items()}
    assert estimated[ADAPTED] > estimated[SOURCE_ONLY] + 0.3
    assert verdict.reason.startswith(
        f"adapted model preferred: estimated target F1 {estimated[ADAPTED]:.2f} vs "
        f"{estimated[SOURCE_ONLY]:.2f} (ATC); source F1 retained "
    )
    assert "\n" not in verdict.reason
    # The other way round: the adapted model is the one that is unsure on the target.
    # Its masks also flood the target, which the prior gap notices first; without that
    # check ATC alone refuses it.
    swapped = guard(SOURCE, adapted, source_only)
    assert (swapped.prefer, swapped.decided_by) == (SOURCE_ONLY, "prior-gap")
    swapped = guard(SOURCE, adapted, source_only, prior_margin=1.0)
    assert (swapped.prefer, swapped.decided_by) == (SOURCE_ONLY, "atc")
    assert "not estimated better" in swapped.reason


def test_an_adapted_model_that_forgot_the_source_is_refused() -> None:
    source_only = Predictions(SURE_SOURCE, UNSURE_TARGET)
    forgetful = Predictions(calibrated(SOURCE, 0.5, 0.75, seed=7), SURE_TARGET)
    verdict = guard(SOURCE, source_only, forgetful)
    assert verdict.prefer == SOURCE_ONLY
    assert verdict.decided_by == "source-f1"
    assert verdict.reason.startswith("source-only model preferred: the adapted model lost")


def test_confident_flooding_or_vanishing_masks_are_refused_though_atc_rates_them() -> None:
    source_only = Predictions(SURE_SOURCE, calibrated(TARGET, 0.6, 0.9, seed=8))
    flooded = Predictions(SURE_SOURCE, np.full(SHAPE, 0.97))
    verdict = guard(SOURCE, source_only, flooded)
    assert verdict.estimates[ADAPTED]["target_precision"] > 0.9  # ATC is fooled ...
    assert verdict.prefer == SOURCE_ONLY  # ... the prior gap is not
    assert verdict.decided_by == "prior-gap"
    assert "drifted" in verdict.reason

    vanished = Predictions(SURE_SOURCE, np.full(SHAPE, 0.02))
    verdict = guard(SOURCE, Predictions(SURE_SOURCE, UNSURE_TARGET), vanished)
    assert verdict.estimates[ADAPTED]["target_f1"] > 0.9  # nothing predicted, nothing missed
    assert verdict.estimates[ADAPTED]["prior_gap"] < verdict.estimates[SOURCE_ONLY]["prior_gap"]
    assert verdict.prefer == SOURCE_ONLY
    assert verdict.decided_by == "collapse"


def test_identical_models_are_a_tie_that_keeps_the_baseline() -> None:
    same = Predictions(SURE_SOURCE, SURE_TARGET)
    verdict = guard(SOURCE, same, Predictions(SURE_SOURCE.copy(), SURE_TARGET.copy()))
    assert verdict.prefer == SOURCE_ONLY
    assert verdict.decided_by == "agreement"
    assert verdict.agreement == {"agreement": 1.0, "mask_dice": 1.0}
    assert verdict.estimates[ADAPTED] == verdict.estimates[SOURCE_ONLY]
    # Without the agreement the rule's last step sees a tie, and keeps the baseline too.
    estimates = model_estimates(SURE_SOURCE, SOURCE, SURE_TARGET)
    tie = guard_verdict(estimates, dict(estimates))
    assert (tie.prefer, tie.decided_by) == (SOURCE_ONLY, "atc")
    assert "a tie keeps the baseline" in tie.reason


def test_the_verdict_is_deterministic() -> None:
    source_only = Predictions(SURE_SOURCE, UNSURE_TARGET)
    adapted = Predictions(calibrated(SOURCE, 0.85, 1.0, seed=6), SURE_TARGET)
    first = guard(SOURCE, source_only, adapted)
    second = guard(SOURCE.copy(), Predictions(*map(np.copy, source_only)), adapted)
    assert first == second
    assert dataclasses.asdict(first) == dataclasses.asdict(second)


BASE = {
    "source_f1": 0.92,
    "target_f1": 0.69,
    "prior_gap": 0.05,
    "target_share": 0.25,
    "source_share": 0.2,
}


@pytest.mark.parametrize(
    ("changes", "agreement", "prefer", "rule"),
    [
        ({"target_f1": 0.74, "source_f1": 0.90}, None, ADAPTED, "atc"),
        ({"target_f1": 0.70}, None, ADAPTED, "atc"),  # exactly one point
        ({"target_f1": 0.695}, None, SOURCE_ONLY, "atc"),  # under one point
        ({"target_f1": 0.80, "source_f1": 0.86}, None, SOURCE_ONLY, "source-f1"),
        ({"target_f1": 0.80, "source_f1": 0.88}, None, ADAPTED, "atc"),  # within the margin
        ({"target_f1": 0.80, "prior_gap": 0.16}, None, SOURCE_ONLY, "prior-gap"),
        ({"target_f1": 0.80, "prior_gap": 0.15}, None, ADAPTED, "atc"),
        ({"target_f1": 0.80, "target_share": 0.04}, None, SOURCE_ONLY, "collapse"),
        ({"target_f1": 0.80}, {"agreement": 0.999, "mask_dice": 0.995}, SOURCE_ONLY, "agreement"),
        ({"target_f1": 0.80}, {"agreement": 0.99, "mask_dice": 0.95}, ADAPTED, "atc"),
        ({"target_f1": float("nan")}, None, SOURCE_ONLY, "invalid"),
    ],
)
def test_the_rule(changes: dict, agreement: dict | None, prefer: str, rule: str) -> None:
    verdict = guard_verdict(dict(BASE), {**BASE, **changes}, agreement)
    assert (verdict.prefer, verdict.decided_by) == (prefer, rule)
    assert verdict.reason.startswith(f"{prefer} model preferred: ")


def test_the_reason_reads_as_the_issue_asks() -> None:
    verdict = guard_verdict(dict(BASE), {**BASE, "target_f1": 0.74, "source_f1": 0.90})
    assert verdict.reason == (
        "adapted model preferred: estimated target F1 0.74 vs 0.69 (ATC); "
        "source F1 retained 0.90 vs 0.92 (adapted vs source-only)"
    )


def test_the_guard_cannot_be_given_a_target_label() -> None:
    """By construction: no public function of the guard has a parameter for one."""
    public = [
        getattr(guard_module, name)
        for name in dir(guard_module)
        if inspect.isfunction(getattr(guard_module, name))
        and getattr(guard_module, name).__module__ == guard_module.__name__
        and not name.startswith("_")
    ]
    assert len(public) >= 7
    for function in public:
        for name in inspect.signature(function).parameters:
            assert "label" not in name or name == "source_labels", (function, name)
    assert list(inspect.signature(guard).parameters) == [
        "source_labels",
        "source_only",
        "adapted",
        "source_masks",
        "target_masks",
        "rule",
    ]
    assert Predictions._fields == ("source", "target")  # probabilities only
    with pytest.raises(TypeError, match="target_labels"):
        guard(  # the keyword catch-all goes to the rule, which refuses it
            SOURCE,
            Predictions(SURE_SOURCE, UNSURE_TARGET),
            Predictions(SURE_SOURCE, SURE_TARGET),
            target_labels=TARGET,
        )


def test_pixels_outside_the_field_of_view_do_not_count() -> None:
    inside = np.zeros(SHAPE, bool)
    inside[:, 8:40, 8:40] = True
    garbage = SURE_TARGET.copy()
    garbage[~inside] = 0.99  # what a model may say outside the field of view
    masked = model_estimates(SURE_SOURCE, SOURCE, garbage, inside, inside)
    flat = model_estimates(SURE_SOURCE[inside], SOURCE[inside], SURE_TARGET[inside])
    assert masked == pytest.approx(flat)
    assert target_agreement(garbage, SURE_TARGET, inside)["agreement"] == 1.0
    assert target_agreement(garbage, SURE_TARGET)["agreement"] < 1.0


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="source probabilities and labels"):
        atc_estimates(SURE_SOURCE[:2], SOURCE, SURE_TARGET)
    with pytest.raises(ValueError, match="mask"):
        model_estimates(SURE_SOURCE, SOURCE, SURE_TARGET, target_masks=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="target probabilities"):
        guard(
            SOURCE,
            Predictions(SURE_SOURCE, SURE_TARGET),
            Predictions(SURE_SOURCE, SURE_TARGET[:1]),
        )


def test_a_verdict_is_a_plain_frozen_record() -> None:
    verdict = guard_verdict(dict(BASE), dict(BASE))
    assert isinstance(verdict, GuardVerdict)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.prefer = ADAPTED  # type: ignore[misc]
