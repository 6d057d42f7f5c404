"""What the widget says: status, model and guard lines from the run's events."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from napari_domain_adapt.core import GuardVerdict, Judged, TrainEvent, TrainFinished
from napari_domain_adapt.gui.messages import (
    device_text,
    format_time,
    guard_plan_text,
    guard_text,
    loaded_text,
    step_text,
    trained_note,
    trained_text,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (9.4, "0:09"), (59.6, "1:00"), (61, "1:01"), (3600, "60:00"), (-3, "0:00")],
)
def test_format_time(seconds: float, text: str) -> None:
    assert format_time(seconds) == text


def event(step: int = 3, total: int = 10, elapsed: float = 75.0) -> TrainEvent:
    return TrainEvent(step, total, 0.5, None, None, None, 0.0, elapsed)


def test_step_text_says_the_step_the_time_and_the_eta() -> None:
    assert step_text(event(), 130.0) == "Step 3 / 10 · 1:15 elapsed · ETA 2:10"
    assert step_text(event(), None) == "Step 3 / 10 · 1:15 elapsed · ETA …"


def finished(stopped: bool) -> TrainFinished:
    model = SimpleNamespace(config=SimpleNamespace(mode="mean-teacher"))
    return TrainFinished(model, steps=40, stopped=stopped, elapsed=65.0, device="cpu (2 threads)")


def test_the_model_line_and_the_note_after_training() -> None:
    done, stopped = finished(False), finished(True)
    assert trained_text(done) == "mean-teacher, trained 40 steps in 1:05 on cpu (2 threads)"
    assert trained_text(stopped) == "mean-teacher, stopped at 40 steps in 1:05 on cpu (2 threads)"
    assert trained_note(done) == "Training finished: 40 steps on cpu (2 threads)"
    assert trained_note(stopped) == "Training stopped at step 40 on cpu (2 threads)"


def test_the_model_line_after_loading() -> None:
    model = SimpleNamespace(metadata={"mode": "adversarial", "steps": 300})
    assert loaded_text("/data/models/run.pt", model) == "loaded run.pt: adversarial, 300 steps"
    bare = SimpleNamespace(metadata={})
    assert loaded_text("other.zip", bare) == "loaded other.zip: unknown mode, ? steps"


def test_device_text_names_the_device_or_repeats_a_bad_name() -> None:
    assert device_text("cpu").startswith("cpu (")
    assert device_text("no-such-device") == "no-such-device"


def test_the_guard_line_before_a_run() -> None:
    assert "not judged" in guard_plan_text(None, "source-only")
    assert guard_plan_text(None, "mean-teacher").startswith("Guard: nothing to compare")
    assert guard_plan_text("run.pt", "mean-teacher") == "Guard: will compare this run with run.pt"


def judged(prefer: str | None, kept: str) -> Judged:
    if prefer is None:
        return Judged(None, None, kept, "no labelled source to judge with")
    reason = f"{prefer} model preferred: source F1 0.8 vs 0.7 (adapted vs source-only)"
    verdict = GuardVerdict(prefer, {}, reason, "source-f1")
    return Judged(verdict, None, kept, reason)


def test_the_guard_verdict_in_one_line() -> None:
    why = "source F1 0.8 vs 0.7 (this run vs run.pt)"
    assert guard_text(judged("adapted", "adapted"), "run.pt") == (
        f"Guard: this run's model preferred over run.pt — {why}"
    )
    assert guard_text(judged("source-only", "baseline"), "run.pt") == (
        f"Guard: run.pt preferred and kept — {why}"
    )
    assert guard_text(judged("source-only", "adapted"), "run.pt") == (
        f"Guard: run.pt preferred, not kept ('Keep the better' is off) — {why}"
    )
    assert guard_text(judged(None, "adapted"), "run.pt") == (
        "Guard: no labelled source to judge with"
    )
