"""Fixtures of the benchmark scripts' tests: the scripts as modules, generated datasets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from napari_domain_adapt.cli import main as cli

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
def data(tmp_path_factory) -> Path:
    """The generated sample pair under the EM pair's names (the data contract's layout)."""
    root = tmp_path_factory.mktemp("data")
    assert cli(["sample", str(root / "pair"), "--size", "64"]) == 0
    (root / "pair" / "source").rename(root / "isbi2012")
    (root / "pair" / "target").rename(root / "vnc")
    return root
