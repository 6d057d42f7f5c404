"""Fixtures of the benchmark scripts' tests: the scripts as modules, generated datasets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from napari_domain_adapt.cli import main as cli
from napari_domain_adapt.core import SegmentationModel
from napari_domain_adapt.core.checkpoints import save_checkpoint
from napari_domain_adapt.core.config import ModelSpec

SCRIPTS = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(SCRIPTS))  # the scripts import each other; helpers like scribbles.py


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def accuracy():
    return _script("accuracy")


@pytest.fixture(scope="session")
def selection(accuracy):
    return _script("selection")


@pytest.fixture(scope="session")
def device_check():
    return _script("device_check")


@pytest.fixture
def tiny_model():
    """Save a small untrained model as a unit's, as the units of the smoke profile are; the
    function that does it (path, the bias of its head) and returns the model."""
    import profiles  # beside the scripts, on the path once this module has run

    def save(path: Path, bias: float = 0.0) -> SegmentationModel:
        torch.manual_seed(0)
        model = SegmentationModel.create(
            ModelSpec(width=4), profiles.modality_preprocessing("isbi2012")
        )
        with torch.no_grad():
            model.network.head.bias.fill_(bias)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, path)
        return model

    return save


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """The generated sample pair under the EM pair's names (the data contract's layout)."""
    root = tmp_path_factory.mktemp("data")
    assert cli(["sample", str(root / "pair"), "--size", "64"]) == 0
    (root / "pair" / "source").rename(root / "isbi2012")
    (root / "pair" / "target").rename(root / "vnc")
    return root
