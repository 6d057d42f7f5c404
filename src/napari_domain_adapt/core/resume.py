"""A training run's state on disk, so that a killed run continues where it was.

:func:`~napari_domain_adapt.core.training.train` writes the state every few steps when given
a :class:`StateFile`, and continues from it when the file exists. On CPU the continued run
ends with exactly the weights of an uninterrupted one: the state holds the networks, the
optimiser, the step, the history and both random generators. The file is read with
``weights_only=True`` like a checkpoint; it is refused when it belongs to another
configuration or other input images.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoints import load_plain
from .config import TrainConfig
from .errors import InputError
from .io import atomic_write

STATE_FORMAT = "napari-domain-adapt training state"
STATE_VERSION = 1
#: Configuration fields that may change between a run and its continuation.
OPERATIONAL_FIELDS = ("device", "preview_interval")


@dataclass(frozen=True)
class StateFile:
    """Where a run keeps its state, and every how many steps it writes it."""

    path: Path
    every: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise InputError(f"the state must be saved every >= 1 steps; got {self.every!r}")


def fingerprint(*arrays: np.ndarray | None) -> str:
    """A short hash of the arrays' shapes, types and values (None counts as absent).

    Volumes read on demand (:class:`~.lazy.PreprocessedVolume`) count by their first and
    last slice only.
    """
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        digest.update(f"{array.shape}{array.dtype}".encode())
        if not isinstance(array, np.ndarray):  # a (Z, Y, X) volume read on demand
            array = np.stack([np.asarray(array[z]) for z in (0, len(array) - 1)])
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _comparable(config: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    if isinstance(config, dict):
        # A state from an older version: fields added since then take their defaults;
        # fields since removed stay, and the comparison names them.
        with contextlib.suppress(InputError, TypeError):
            config = TrainConfig.from_dict(config)
    data = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    for name in OPERATIONAL_FIELDS:
        data.pop(name, None)
    return data


def write_state(path: Path, state: dict[str, Any], config: TrainConfig, inputs: str) -> None:
    """Write ``state`` (tensors and plain values) atomically, replacing an older state."""
    payload = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "config": config.to_dict(),
        "inputs": inputs,
        **state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_write(path, overwrite=True) as temporary:
        temporary.write_bytes(buffer.getvalue())


def read_state(path: Path, config: TrainConfig, inputs: str) -> dict[str, Any]:
    """Read a state written by :func:`write_state` for this configuration and these inputs."""
    payload = load_plain(path, "the training state", "; delete it to start over")
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise InputError(
            f"{path} is not a napari-domain-adapt training state; expected a file written by "
            "a run with a state file"
        )
    if payload.get("version") != STATE_VERSION:
        raise InputError(
            f"training state version {payload.get('version')} is not supported "
            f"(expected {STATE_VERSION}); delete {path} to start over"
        )
    saved, wanted = _comparable(payload["config"]), _comparable(config)
    changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if changed:
        raise InputError(
            f"the training state {path} belongs to a run with other settings "
            f"({', '.join(changed)} differ); expected the same settings to continue it, "
            "or delete it to start over"
        )
    if payload.get("inputs") != inputs:
        raise InputError(
            f"the training state {path} belongs to a run on other images or labels; "
            "expected the same inputs to continue it, or delete it to start over"
        )
    return payload


def numpy_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's state as plain values (its 128-bit integers as strings)."""
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: str(v) for k, v in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def set_numpy_rng_state(rng: np.random.Generator, saved: dict[str, Any]) -> None:
    """Restore what :func:`numpy_rng_state` returned."""
    state = dict(saved)
    state["state"] = {k: int(v) for k, v in saved["state"].items()}
    rng.bit_generator.state = state
