"""The remaining-time estimate of a run: steady despite slow first steps."""

from __future__ import annotations

import itertools

import pytest

from napari_domain_adapt.gui.progress import RemainingTime


def test_no_estimate_before_the_run_has_a_pace() -> None:
    remaining = RemainingTime()
    assert remaining.seconds is None
    remaining.add(1, 30.0, 100)
    remaining.add(2, 31.0, 100)
    assert remaining.seconds is None


def test_a_slow_first_step_does_not_swing_the_estimate() -> None:
    """The first step took 60 s (imports, the first preview), the rest 1 s each: the
    estimate follows the steady pace, not elapsed / step (which says 59 minutes at step 2)."""
    remaining = RemainingTime(window=20)
    estimates = []
    for step in range(1, 201):
        remaining.add(step, 60.0 + (step - 1), 1000)
        if remaining.seconds is not None:
            estimates.append(remaining.seconds)
    assert estimates[0] == pytest.approx(1000 - 3)
    assert remaining.seconds == pytest.approx(1000 - 200)
    # it only goes down while the pace holds: no swings
    assert all(b <= a for a, b in itertools.pairwise(estimates))


def test_the_estimate_follows_a_change_of_pace_smoothly() -> None:
    """Adaptation steps after a source-only warm-up cost twice as much: the estimate moves
    to the new pace over several updates instead of jumping, then holds it."""
    remaining = RemainingTime(window=10, smoothing=0.2)
    elapsed, seen = 0.0, {}
    for step in range(1, 101):
        elapsed += 1.0 if step <= 50 else 2.0
        remaining.add(step, elapsed, 100)
        seen[step] = remaining.seconds
    assert seen[50] == pytest.approx(50.0)
    assert seen[50] < seen[51] < 2.0 * 49  # moving towards the new pace, not there at once
    assert seen[90] == pytest.approx(2.0 * 10, rel=0.02)
    assert seen[100] == 0.0  # the run is over
