"""The README's Python examples run as written, on files like those they name (with a few
training steps instead of hundreds: the examples' ``steps=N`` are replaced)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_domain_adapt.cli import main
from napari_domain_adapt.core import PixelSize, load_checkpoint, read_pixel_size

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_the_readme_has_the_examples():
    assert len(BLOCKS) == 2


@pytest.mark.slow  # 25-40 s each: a default-sized U-Net, trained and predicting
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(tmp_path), "--size", "128"]) == 0
    target = tifffile.imread(sorted((tmp_path / "target" / "train" / "images").iterdir())[0])
    metadata = {"axes": "ZYX", "PhysicalSizeZ": 50, "PhysicalSizeZUnit": "nm"}
    for axis in "XY":
        metadata |= {f"PhysicalSize{axis}": 8, f"PhysicalSize{axis}Unit": "nm"}
    tifffile.imwrite("target.ome.tif", np.stack([target] * 2), ome=True, metadata=metadata)
    assert read_pixel_size("target.ome.tif") == PixelSize((50, 8, 8), "nm")
    code = re.sub(r"steps=\d+", "steps=2", BLOCKS[index])
    names: dict = {}
    exec(compile(code, f"README.md python block {index}", "exec"), names)
    assert np.isfinite(names["probabilities"]).all()
    if "save_checkpoint" in code:
        assert names["probabilities"].shape == (2, *target.shape)  # the image's own grid
        assert load_checkpoint("adapted.pt").pixel_size == PixelSize((4, 4), "nm")
