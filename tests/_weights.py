"""Helpers of the training tests: a network's weights, compared exactly, and configs."""

from __future__ import annotations

import dataclasses

import torch

from napari_domain_adapt.core import TrainConfig


def adversarial_config(config: TrainConfig, **changes) -> TrainConfig:
    """``config`` in the adversarial mode, without previews."""
    return dataclasses.replace(config, mode="adversarial", preview_interval=1e6, **changes)


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s weights and buffers."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts hold the same names and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
