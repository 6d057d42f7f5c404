"""A light version of ``benchmarks/long_session.py``: three Adapt runs in one viewer leave
no extra threads, no workers or models of earlier runs, no extra layers and no runaway
memory; a cancelled prediction frees its worker."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

# Many runs in a row in one viewer: `pytest -m slow` (CI runs it).
pytestmark = [pytest.mark.gui, pytest.mark.slow]

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_runs_in_a_row_leak_nothing(make_napari_viewer, qtbot, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import long_session
    from napari_domain_adapt.core import PredictionStarted
    from napari_domain_adapt.gui import widget as _widget
    from napari_domain_adapt.gui.sample_data import make_sample_data

    monkeypatch.setattr(_widget, "show_info", lambda message: None)
    viewer = make_napari_viewer()
    for data, meta, kind in make_sample_data(n_source=2, n_target=3, size=64):
        getattr(viewer, f"add_{kind}")(data, **meta)
    widget = long_session.dock(viewer, steps=3)
    records = long_session.session(viewer, widget, runs=3)
    print(long_session.table(records))
    assert long_session.problems(records) == []
    assert "target segmentation" in records[-1].layers

    # A prediction stopped part-way leaves no worker (and no arrays of its job) behind.
    worker = widget.start_training()
    aborted = []
    worker.aborted.connect(lambda: aborted.append(True))
    worker.yielded.connect(lambda item: isinstance(item, PredictionStarted) and widget.stop())
    reference = weakref.ref(worker)
    del worker
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    qtbot.wait(50)
    gc.collect()
    assert aborted
    assert reference() is None
