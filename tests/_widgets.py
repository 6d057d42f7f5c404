"""Helpers of the widget's tests."""

from __future__ import annotations

import time

from qtpy.QtWidgets import QApplication


def wait_until_ready(widget, seconds: float = 120.0) -> None:
    """Process Qt events until ``widget`` has loaded PyTorch: its run buttons wait for it."""
    deadline = time.monotonic() + seconds
    while not widget.ready:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the widget did not load PyTorch in {seconds:.0f} s")
        QApplication.processEvents()
        time.sleep(0.01)
