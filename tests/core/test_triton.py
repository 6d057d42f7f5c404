"""Triton's LLVM is loaded apart from any other LLVM (see core/_triton.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from napari_domain_adapt.core._triton import triton_library


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_without_triton_nothing_is_loaded(tmp_path) -> None:
    """A torch without Triton (the CPU wheels, macOS, Windows): a no-op."""
    (tmp_path / "triton").mkdir()  # a Triton without libtriton, found first
    (tmp_path / "triton" / "__init__.py").write_text("")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
        "from napari_domain_adapt.core._triton import isolate_triton_llvm, triton_library; "
        "print(triton_library(), isolate_triton_llvm())"
    )
    assert _run(code) == "None False"


@pytest.mark.skipif(triton_library() is None, reason="this torch comes without Triton")
def test_libtriton_is_loaded_before_torch_can_import_triton() -> None:
    """Importing the core loads libtriton with RTLD_DEEPBIND, without importing Triton
    (whose import is slow); Triton's later import reuses the loaded library."""
    code = (
        "import sys, napari_domain_adapt.core; "
        "maps = open('/proc/self/maps').read(); "
        "print('libtriton' in maps, 'triton' in sys.modules); "
        "import triton; print(triton.__version__ != '')"
    )
    assert _run(code).split() == ["True", "False", "True"]
