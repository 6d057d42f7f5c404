"""benchmarks/device_check.py: every section runs and is reported (tiny sizes, on the CPU)."""

from __future__ import annotations

import json
import warnings

import pytest

from napari_domain_adapt.core import MODES


@pytest.mark.slow  # trains every mode twice and predicts a volume out of core: ~30 s
def test_every_section_is_run_and_written(device_check, tmp_path):
    assert device_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "device-check.md").read_text()
    results = json.loads((tmp_path / "device-check.json").read_text())
    runs = [(row["run"], row["precision"]) for row in results["training"]]
    for mode in MODES:
        assert (mode, "fp32") in runs
        assert (mode, "bf16") in runs
    assert ("source-free (from the source-only model)", "bf16") in runs
    assert ("Continue (one labelled target slice)", "fp32") in runs
    assert all(row["steps_s"] > 0 for row in results["training"])
    hows = [row["how"] for row in results["volume_rows"]]
    assert "out of core, into a zarr store" in hows
    assert all(row["mpx_s"] > 0 for row in results["volume_rows"])
    assert "not run: needs CUDA" in text  # the memory cap is a CUDA setting


def test_a_fallback_is_recorded_by_its_warnings(device_check):
    def halving() -> str:
        warnings.warn("out of memory with 8; going on with 4", RuntimeWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
        return "trained at batches of 4"

    row = device_check._fallback("training", halving)
    assert (row["halvings"], row["outcome"]) == (1, "trained at batches of 4")
    assert row["first"] == "out of memory with 8; going on with 4"
    failed = device_check._fallback("prediction", lambda: 1 / 0)
    assert failed["outcome"] == "ZeroDivisionError: division by zero"
    assert failed["halvings"] == 0
