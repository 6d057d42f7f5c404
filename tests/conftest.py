"""Shared fixtures: the generated sample pair and a tiny, fast configuration."""

from __future__ import annotations

import pytest
import torch

from napari_domain_adapt.core import ModelSpec, TrainConfig, make_sample_pair

# One thread: tiny test models gain nothing from more, and parallel pytest runs on a
# two-core machine stall each other when every process spins several OpenMP threads.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sample_pair():
    """A small generated source/target pair (4 + 4 slices of 96x96)."""
    return make_sample_pair(n_source=4, n_target=4, size=96, seed=0)


@pytest.fixture
def tiny_config() -> TrainConfig:
    """A configuration that trains in well under a second per few steps."""
    return TrainConfig(
        mode="source-only",
        steps=4,
        batch_size=2,
        patch_size=32,
        model=ModelSpec(depth=2, width=8),
        domain_width=4,
        preview_interval=0.0,
        device="cpu",
    )


@pytest.fixture
def notes(monkeypatch):
    """Notifications the widget shows, by kind (the widget tests')."""
    from napari_domain_adapt import _widget  # napari: only for the tests that ask

    shown: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for kind in shown:
        monkeypatch.setattr(_widget, f"show_{kind}", shown[kind].append)
    return shown
