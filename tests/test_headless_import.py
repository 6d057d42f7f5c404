"""The core (and the widget's default settings) and the CLI run without napari or Qt.

A GUI import there fails this test: ``pip install napari-domain-adapt`` without the GUI
extra (a cluster node) must give a working library and command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Fresh processes with the GUI packages blocked: `pytest -m slow` (CI runs it).
pytestmark = pytest.mark.slow

# napari and its GUI stack: Qt bindings and their helpers, magicgui, vispy, npe2, app-model
BLOCKED = (
    "napari",
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "shiboken2",
    "shiboken6",
    "magicgui",
    "superqt",
    "vispy",
    "npe2",
    "app_model",
)

SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = {blocked!r}


    def blocked(name):
        return name.split(".")[0] in BLOCKED


    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if blocked(name):
                raise ImportError(f"{{name}} is blocked in this test")
            return None


    sys.meta_path.insert(0, Block())
    try:
        import napari  # the block works
    except ImportError:
        pass
    else:
        raise SystemExit("napari was not blocked")

    import numpy as np

    import napari_domain_adapt.core as core
    assert core.preset("laptop").steps == 600  # the widget's settings, for scripts

    pair = core.make_sample_pair(n_source=1, n_target=1, size=64)
    config = core.TrainConfig(
        mode="adversarial", steps=1, batch_size=1, patch_size=32,
        model=core.ModelSpec(depth=2, width=2), device="cpu",
        domain=core.DomainClassifierSpec(width=2),
    )
    finished = core.fit(
        config,
        core.Domain(pair.source_image, pair.source_labels),
        core.Domain(pair.target_image),
    )
    assert finished.model.predict(pair.target_image[0]).shape == (64, 64)
    loaded = [name for name in sys.modules if blocked(name)]
    assert not loaded, loaded
    print("headless ok")
    """
).format(blocked=BLOCKED)


def test_core_imports_and_trains_without_gui() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "headless ok"


def test_a_gui_import_would_be_caught() -> None:
    """The same harness fails when the imported code pulls in a blocked module."""
    script = SCRIPT.replace("import napari_domain_adapt.core as core", "import qtpy  # noqa")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "qtpy is blocked in this test" in result.stderr


CLI_SCRIPT = SCRIPT[: SCRIPT.index("import numpy as np")] + textwrap.dedent(
    """
    import contextlib, io, sys, tempfile
    from pathlib import Path

    import napari_domain_adapt.core
    assert "torch" not in sys.modules, "importing the core imported torch"
    from napari_domain_adapt.cli import main

    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
        main(["adapt", "--help"])
    assert "--target" in help_text.getvalue()
    assert "torch" not in sys.modules, "--help imported torch"

    folder = Path(tempfile.mkdtemp())
    assert main(["sample", str(folder / "data"), "--size", "64"]) == 0
    tiny = ["--steps", "2", "--batch-size", "1", "--patch-size", "32", "--depth", "2",
            "--width", "2", "--device", "cpu"]
    source, model = str(folder / "data" / "source"), str(folder / "model.pt")
    assert main(["train", "--source", source, "--out", model, *tiny]) == 0
    image = str(sorted((folder / "data" / "target" / "train" / "images").iterdir())[0])
    assert main(["predict", "--model", model, "--input", image,
                 "--out", str(folder / "p.tif")]) == 0
    assert main(["demo"]) == 2  # one clear line instead of an ImportError
    loaded = [name for name in sys.modules if blocked(name)]
    assert not loaded, loaded
    print("cli headless ok")
    """
)


def test_the_cli_trains_and_predicts_without_gui() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("cli headless ok")
    assert "error: the demo needs napari" in result.stderr
