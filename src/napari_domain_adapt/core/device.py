"""Choice of the compute device: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import os
import warnings

import torch

from .errors import InputError


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    ``auto`` picks CUDA, then MPS, then the CPU. On MPS, operations that Apple's backend
    lacks fall back to the CPU (with PyTorch's own warning) instead of failing.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return _mps()
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(
            f"unknown device {name!r}; expected auto, cpu, cuda[:N] or mps"
        ) from error
    if device.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: nothing to compute on
        raise InputError(f"unknown device {name!r}; expected auto, cpu, cuda[:N] or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} was asked for, but CUDA is not available here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InputError(
            f"device {name!r} was asked for, but only {torch.cuda.device_count()} CUDA "
            "device(s) exist"
        )
    if device.type == "mps":
        if not _mps_available():
            raise InputError(f"device {name!r} was asked for, but MPS is not available here")
        return _mps()
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _mps() -> torch.device:
    if os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") != "1":
        os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"
        warnings.warn(
            "using Apple MPS; operations it lacks run on the CPU (PYTORCH_ENABLE_MPS_FALLBACK=1)",
            stacklevel=3,
        )
    return torch.device("mps")


def describe_device(device: torch.device) -> str:
    """A short human-readable name, e.g. ``cuda:0 (NVIDIA H100)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'' if threads == 1 else 's'})"
    return str(device)


def available_memory(device: torch.device | None = None) -> int | None:
    """Bytes of memory free now on ``device``: a CUDA GPU's, else the system's (POSIX);
    None where the system does not say."""
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def require_memory(needed: int, what: str, device: torch.device | None = None) -> None:
    """Raise InputError if ``what`` would need more memory than is free (on ``device``, else
    the system's): refused at once, with the number, rather than grown until the system
    kills the process."""
    free = available_memory(device)
    if free is not None and needed > free:
        raise InputError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory; {free / 2**30:.1f} GiB "
            "is free"
        )
