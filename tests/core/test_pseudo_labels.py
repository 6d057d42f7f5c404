"""Class-balanced pseudo-labels: every class keeps its share, the fixed rule's pixels stay."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_domain_adapt.core.pseudo_labels import (
    balanced_pseudo_labels,
    class_thresholds,
    estimate_foreground_share,
)
from napari_domain_adapt.core.training_step import confident_pseudo_labels


def minority_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher batch (8, 1, 32, 32): 10% foreground, whose confidence lies in 0.55-0.9,
    and 90% background, surer of itself (0.6-1.0); and the foreground mask."""
    rng = np.random.default_rng(seed)
    shape = (8, 1, 32, 32)
    foreground = np.zeros(shape[0] * 32 * 32, bool)
    foreground[: foreground.size // 10] = True
    rng.shuffle(foreground)
    confidence = np.where(
        foreground, rng.uniform(0.55, 0.9, foreground.size), rng.uniform(0.6, 1.0, foreground.size)
    )
    p = np.where(foreground, confidence, 1 - confidence).reshape(shape)
    return torch.from_numpy(p.astype(np.float32)), torch.from_numpy(foreground.reshape(shape))


def kept_shares(weights: torch.Tensor, foreground: torch.Tensor) -> tuple[float, float]:
    """Share of the foreground and of the background pixels that ``weights`` keeps."""
    kept = weights.bool()
    return float(kept[foreground].float().mean()), float(kept[~foreground].float().mean())


def test_the_fixed_rule_keeps_mostly_background_the_balanced_one_each_class_alike() -> None:
    p, foreground = minority_batch()
    _, fixed = confident_pseudo_labels(p, 0.8)
    fixed_fg, fixed_bg = kept_shares(fixed, foreground)
    assert fixed_fg < 0.35 < 0.45 < fixed_bg  # a third of the foreground, half the background
    assert float(foreground[fixed.bool()].float().mean()) < 0.07  # the kept set: < 7% fg

    labels, balanced = balanced_pseudo_labels(p, quantile=0.6, ceiling=0.8)
    fg, bg = kept_shares(balanced, foreground)
    assert fg == pytest.approx(0.4, abs=0.01)
    assert bg == pytest.approx(0.5, abs=0.01)  # the ceiling: what the fixed rule keeps
    # Under a high ceiling the quantile alone decides: each class keeps the same 40%.
    _, free = balanced_pseudo_labels(p, quantile=0.6, ceiling=0.99)
    fg, bg = kept_shares(free, foreground)
    assert fg == pytest.approx(0.4, abs=0.01)
    assert bg == pytest.approx(0.4, abs=0.01)
    assert float(foreground[free.bool()].float().mean()) == pytest.approx(0.1, abs=0.01)
    assert torch.equal(labels, (p >= 0.5).float())


def test_the_contract_matches_the_fixed_rule_and_keeps_every_pixel_it_keeps() -> None:
    p, _ = minority_batch(seed=3)
    fixed_labels, fixed = confident_pseudo_labels(p, 0.8)
    for quantile in (0.0, 0.3, 0.9, 1.0):
        labels, weights = balanced_pseudo_labels(p, quantile, ceiling=0.8)
        assert labels.shape == weights.shape == p.shape
        assert labels.dtype == weights.dtype == fixed.dtype
        assert torch.equal(labels, fixed_labels)
        assert set(weights.unique().tolist()) <= {0.0, 1.0}
        assert bool((weights >= fixed).all())  # a superset of the fixed rule's pixels
    # Quantile 0 keeps everything; at 1 (both classes reach the ceiling) the fixed rule.
    assert bool(balanced_pseudo_labels(p, 0.0, 0.8)[1].all())
    assert torch.equal(balanced_pseudo_labels(p, 1.0, 0.8)[1], fixed)


@pytest.mark.parametrize("ceiling", [0.6, 0.8, 0.95])
def test_thresholds_never_exceed_the_ceiling(ceiling: float) -> None:
    p, foreground = minority_batch(seed=1)
    for quantile in np.linspace(0, 1, 11):
        fg, bg = class_thresholds(p, float(quantile), ceiling)
        assert 0.5 <= fg <= ceiling
        assert 0.5 <= bg <= ceiling
    # Below the ceiling each threshold is its class's quantile of confidences.
    fg, bg = class_thresholds(p, 0.25, 1.0)
    assert fg == pytest.approx(float(np.quantile(p[foreground].numpy(), 0.25)), abs=1e-3)
    assert bg == pytest.approx(float(np.quantile(1 - p[~foreground].numpy(), 0.25)), abs=1e-3)


def test_balanced_labels_are_deterministic() -> None:
    p, _ = minority_batch(seed=2)
    first = balanced_pseudo_labels(p, 0.5, 0.8)
    second = balanced_pseudo_labels(p.clone(), 0.5, 0.8)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert class_thresholds(p, 0.5, 0.8) == class_thresholds(p.clone(), 0.5, 0.8)


@pytest.mark.parametrize("value", [0.1, 0.7])
def test_a_class_absent_from_the_batch_gets_the_ceiling_and_nothing_kept(value: float) -> None:
    p = torch.full((2, 1, 8, 8), value)  # all background (0.1) or all foreground (0.7)
    p[0, 0, 0, :4] = value / 2 if value < 0.5 else (1 + value) / 2  # a few surer pixels
    fg, bg = class_thresholds(p, 0.5, 0.8)
    assert not any(math.isnan(t) for t in (fg, bg))
    assert (fg if value < 0.5 else bg) == 0.8  # the absent class
    labels, weights = balanced_pseudo_labels(p, 0.5, 0.8)
    assert torch.isfinite(weights).all()
    assert bool((labels == (1.0 if value >= 0.5 else 0.0)).all())  # none of the absent class
    assert float(weights.mean()) == 1.0  # all of the present class reach its threshold


def test_bad_rule_values_are_refused() -> None:
    p = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="quantile"):
        class_thresholds(p, 1.5, 0.8)
    with pytest.raises(ValueError, match="ceiling"):
        balanced_pseudo_labels(p, 0.5, 0.4)


def calibrated_map() -> tuple[np.ndarray, np.ndarray]:
    """A calibrated probability map with a known foreground share: 20% of pixels at 0.9,
    of which exactly 90% are foreground, and 80% at 0.3, of which exactly 30% are."""
    p = np.concatenate([np.full(1000, 0.9), np.full(4000, 0.3)])
    labels = np.concatenate([np.arange(1000) < 900, np.arange(4000) < 1200])
    order = np.random.default_rng(0).permutation(p.size)
    return p[order].reshape(50, 100), labels[order].reshape(50, 100)


def test_the_foreground_share_estimate_is_the_mean_probability_not_the_share_above_half() -> None:
    p, labels = calibrated_map()
    share = float(labels.mean())
    assert share == pytest.approx(0.42)
    assert estimate_foreground_share(p) == pytest.approx(share)
    assert float((p >= 0.5).mean()) == pytest.approx(0.2)  # classify-and-count is far off
    assert estimate_foreground_share(torch.from_numpy(p).float()) == pytest.approx(share)
    # A field of view: only the pixels inside count.
    inside = p > 0.5
    assert estimate_foreground_share(p, inside) == pytest.approx(0.9)
    assert estimate_foreground_share(torch.from_numpy(p), torch.from_numpy(inside)) == (
        pytest.approx(0.9)
    )
    with pytest.raises(ValueError, match="no pixel"):
        estimate_foreground_share(p, np.zeros_like(inside))
