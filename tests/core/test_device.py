"""Tests for the choice of compute device."""

from __future__ import annotations

import os

import pytest
import torch

from napari_domain_adapt.core import device as device_module
from napari_domain_adapt.core.device import describe_device, resolve_device
from napari_domain_adapt.core.errors import InputError


@pytest.fixture
def no_accelerator(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


def test_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_on_this_machine() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"  # no MPS off macOS
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected


@pytest.mark.usefixtures("no_accelerator")
def test_auto_without_accelerators() -> None:
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.usefixtures("no_accelerator")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_unavailable(name: str) -> None:
    with pytest.raises(InputError, match=f"device '{name}' was asked for, but CUDA is not"):
        resolve_device(name)


def test_cuda_index_out_of_range(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match="'cuda:1' was asked for, but only 1 CUDA device"):
        resolve_device("cuda:1")


@pytest.mark.usefixtures("no_accelerator")
def test_mps_unavailable() -> None:
    with pytest.raises(InputError, match="'mps' was asked for, but MPS is not available"):
        resolve_device("mps")


def test_mps_enables_cpu_fallback(monkeypatch) -> None:
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    with pytest.warns(UserWarning, match="PYTORCH_ENABLE_MPS_FALLBACK=1"):
        assert resolve_device("auto") == torch.device("mps")
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"


@pytest.mark.parametrize("name", ["gpu", "tpu:0", "", "cuda:x"])
def test_unknown_name(name: str) -> None:
    with pytest.raises(InputError, match=f"unknown device '{name}'; expected auto, cpu, cuda"):
        resolve_device(name)


def test_describe_cpu(monkeypatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert describe_device(torch.device("cpu")) == "cpu (2 threads)"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert describe_device(torch.device("cpu")) == "cpu (1 thread)"
