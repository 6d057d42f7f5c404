"""The time a run has left, from its recent pace (no Qt: tested without a viewer)."""

from __future__ import annotations

from collections import deque


class RemainingTime:
    """Seconds left in a run, from the pace of its last ``window`` steps.

    ``elapsed / step`` swings with the slow first steps (imports, the first preview; seen:
    97 minutes, then 18): the pace here is taken between the oldest and newest of the
    recent steps instead, and smoothed, so that one slow step moves the estimate a little.
    """

    def __init__(self, window: int = 50, smoothing: float = 0.2) -> None:
        self._recent: deque[tuple[int, float]] = deque(maxlen=window)
        self._smoothing = smoothing
        self._per_step: float | None = None
        self._steps_left = 0

    def add(self, step: int, elapsed: float, total: int) -> None:
        """Record that ``step`` of ``total`` ended ``elapsed`` seconds into the run."""
        self._recent.append((step, elapsed))
        self._steps_left = max(0, total - step)
        (first_step, first_time), (last_step, last_time) = self._recent[0], self._recent[-1]
        if last_step - first_step < 2:
            return  # too few steps apart to tell a pace
        per_step = (last_time - first_time) / (last_step - first_step)
        if self._per_step is None:
            self._per_step = per_step
        else:
            self._per_step += self._smoothing * (per_step - self._per_step)

    @property
    def seconds(self) -> float | None:
        """The estimate, or None until the run has a pace."""
        return None if self._per_step is None else self._per_step * self._steps_left
