"""Fixtures of the core tests: the sample pair as domains, small models trained once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from napari_domain_adapt.core import Domain, ModelSpec, SegmentationModel, TrainConfig, fit


@pytest.fixture(scope="session")
def trained_model(sample_pair) -> Callable[[str], SegmentationModel]:
    """``trained_model(norm)``: a depth-2 U-Net trained 60 steps on the source (cached)."""
    cache: dict[str, SegmentationModel] = {}

    def get(norm: str = "group") -> SegmentationModel:
        if norm not in cache:
            config = TrainConfig(
                mode="source-only",
                steps=60,
                batch_size=2,
                patch_size=32,
                model=ModelSpec(depth=2, width=4, norm=norm),
                preview_interval=1e6,
                device="cpu",
                seed=1,
                average_weights=False,  # 60 steps are too few for a useful average
            )
            source = Domain(sample_pair.source_image, sample_pair.source_labels)
            cache[norm] = fit(config, source).model
        return cache[norm]

    return get


@pytest.fixture
def source(sample_pair) -> Domain:
    """The sample pair's labelled source."""
    return Domain(sample_pair.source_image, sample_pair.source_labels, name="source")


@pytest.fixture
def target(sample_pair) -> Domain:
    """The sample pair's target, unlabelled."""
    return Domain(sample_pair.target_image, name="target")
