"""What the widget says, in words: its status, model and guard lines as pure functions of
the run's events (no Qt: tested without a viewer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_domain_adapt import core


def format_time(seconds: float) -> str:
    """``seconds`` as ``M:SS`` (whole seconds, never negative)."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def step_text(event: Any, remaining: float | None) -> str:
    """The status line of a training step (a :class:`~napari_domain_adapt.core.TrainEvent`)
    with ``remaining`` seconds left (None: not known yet)."""
    eta = "…" if remaining is None else format_time(remaining)
    return (
        f"Step {event.step} / {event.total_steps} · "
        f"{format_time(event.elapsed)} elapsed · ETA {eta}"
    )


def trained_text(finished: Any) -> str:
    """The model line after training (a :class:`~napari_domain_adapt.core.TrainFinished`):
    its mode, steps, time and device."""
    how = "stopped at" if finished.stopped else "trained"
    return (
        f"{finished.model.config.mode}, {how} {finished.steps} steps "
        f"in {format_time(finished.elapsed)} on {finished.device}"
    )


def trained_note(finished: Any) -> str:
    """The notification that training ended, or was stopped, and on which device."""
    if finished.stopped:
        text = f"Training stopped at step {finished.steps}"
    else:
        text = f"Training finished: {finished.steps} steps"
    return f"{text} on {finished.device}"


def loaded_text(path: str | Path, model: Any) -> str:
    """The model line after loading ``model`` from the file ``path``."""
    steps = model.metadata.get("steps", "?")
    mode = model.metadata.get("mode", "unknown mode")
    return f"loaded {Path(path).name}: {mode}, {steps} steps"


def device_text(name: str) -> str:
    """Where a run on device ``name`` trains, e.g. ``cpu (2 threads)``; the run itself
    reports a device it cannot use. Imports torch: call it once torch is loaded."""
    try:
        return core.describe_device(core.resolve_device(name))
    except ValueError:
        return name


def guard_plan_text(baseline: str | None, mode: str) -> str:
    """The guard's line as a run in ``mode`` starts: what it will compare the run with
    (``baseline``, in words; None: nothing)."""
    if baseline is None and mode == "source-only":
        return (
            "Guard: a source-only run is not judged; it is what the guard compares later "
            "runs from a new U-Net with"
        )
    if baseline is None:
        return (
            "Guard: nothing to compare this run with: train a source-only run first, or "
            "start from a model"
        )
    return f"Guard: will compare this run with {baseline}"


def guard_text(judged: Any, baseline: str) -> str:
    """The guard's verdict (a :class:`~napari_domain_adapt.core.Judged`) in one line, with
    ``baseline`` named: which model it prefers, whether it was kept, and why."""
    verdict = judged.verdict
    if verdict is None:
        return f"Guard: {judged.reason}"
    why = judged.reason
    preferred = f"{verdict.prefer} model preferred: "
    if why.startswith(preferred):
        why = why[len(preferred) :]
    why = why.replace("(adapted vs source-only)", f"(this run vs {baseline})")
    if judged.kept == "baseline":
        return f"Guard: {baseline} preferred and kept — {why}"
    if verdict.prefer == "adapted":
        return f"Guard: this run's model preferred over {baseline} — {why}"
    return f"Guard: {baseline} preferred, not kept ('Keep the better' is off) — {why}"
