"""Load Triton's LLVM apart from any other LLVM in the process, before torch can import it.

The CUDA builds of torch come with Triton, whose ``libtriton.so`` holds a copy of LLVM and
exports its symbols. Mesa's software OpenGL (llvmpipe: what napari draws with on remote
desktops, VMs and machines without a GPU driver) loads the system's ``libLLVM`` into the
global symbol scope when the viewer makes its OpenGL context. torch imports Triton lazily,
on the first optimiser step (through ``torch._dynamo``); if that happens after the viewer
exists, libtriton's calls into LLVM bind to Mesa's LLVM of another version, and the process
dies with a segmentation fault. Loading libtriton.so first with ``RTLD_DEEPBIND`` makes it
bind to its own copy whatever was loaded before it, and it is then reused by torch's import.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from pathlib import Path

_log = logging.getLogger(__name__)


def triton_library() -> Path | None:
    """The path of Triton's ``libtriton`` shared library, or None where Triton is absent.

    Found without importing Triton (its import is what loads the library).
    """
    try:
        spec = importlib.util.find_spec("triton")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder, "_C").glob("libtriton*.so"))
        if found:
            return found[0]
    return None


def isolate_triton_llvm() -> bool:
    """Load libtriton with ``RTLD_DEEPBIND`` unless Triton is loaded already; True if done.

    A no-op where Triton is not installed, off Linux (no ``RTLD_DEEPBIND``), or once Triton
    has been imported. Any failure to load is left for torch's own import to report.
    """
    deepbind = getattr(os, "RTLD_DEEPBIND", None)
    if deepbind is None or "triton" in sys.modules:
        return False
    library = triton_library()
    if library is None:
        return False
    try:
        ctypes.CDLL(str(library), mode=os.RTLD_NOW | os.RTLD_LOCAL | deepbind)
    except OSError as error:
        _log.debug("could not preload %s: %s", library, error)
        return False
    return True
