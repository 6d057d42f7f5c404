"""Which of the widget's main-thread handlers cost the viewer time while it trains?

Run under a display (e.g. ``xvfb-run -a``)::

    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/ui_handlers.py --seconds 25

Opens napari with the sample data and the docked widget (default settings), clicks Adapt,
and times every call of the widget's event handlers, the plot's and the Qt calls they make
(``QProgressBar.setValue``, ``QLabel.setText``) for ``--seconds``; then stops the run and
waits for the result layers. Prints count, largest, 99th percentile and median per handler
(ms), beside the stall probe of ``ui_stall.py``. Where ``ui_stall.py`` says how long the
loop stalled, this says in which handler.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

# ui_stall.py beside this file: the stall probe.
sys.path.insert(0, str(Path(__file__).parent))
from ui_stall import StallProbe, run_loop

TIMES: dict[str, list[float]] = collections.defaultdict(list)


def timed(owner: type, name: str, label: str | None = None) -> None:
    """Replace ``owner.name`` by a wrapper that records each call's duration."""
    original = getattr(owner, name)
    label = label or name

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            TIMES[label].append(1000 * (time.perf_counter() - start))

    setattr(owner, name, wrapper)


def main() -> None:
    """Train in the widget for a while, stop, print the handler table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=25.0)
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication, QLabel, QProgressBar

    from napari_domain_adapt.gui import plot as _plot
    from napari_domain_adapt.gui import widget as _widget
    from napari_domain_adapt.gui.demo import dock_at_defaults
    from napari_domain_adapt.gui.sample_data import make_sample_data

    for name in ("_on_yielded", "_on_step", "_show_progress", "_show_preview", "_show_result"):
        timed(_widget.AdaptWidget, name)
    timed(_plot.LossPlot, "redraw", "LossPlot.redraw")
    timed(QProgressBar, "setValue", "QProgressBar.setValue")
    timed(QLabel, "setText", "QLabel.setText")

    viewer = napari.Viewer()
    for data, meta, kind in make_sample_data():
        getattr(viewer, f"add_{kind}")(data, **meta)
    widget = dock_at_defaults(viewer)
    run_loop(120.0, until=lambda: widget.ready)  # Adapt is off until PyTorch has loaded
    app = QApplication.instance()
    probe = StallProbe()
    probe.start()
    widget.adapt_button.click()
    for seconds in (args.seconds, 60.0):  # train, then Stop and wait for the result layers
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and widget.busy:
            app.processEvents()
            time.sleep(0.002)
        widget.stop_button.click()
    probe.stop()
    stall = probe.summary(after_s=3.0)
    print(
        f"Stall probe: largest {stall['max_ms']:.0f} ms, p99 {stall['p99_ms']:.0f} ms, "
        f"median {stall['median_ms']:.1f} ms\n"
    )
    print("| handler | calls | largest ms | p99 ms | median ms |\n|---|---|---|---|---|")
    for name, values in sorted(TIMES.items()):
        v = np.asarray(values)
        print(
            f"| {name} | {v.size} | {v.max():.1f} | {np.percentile(v, 99):.1f} | "
            f"{np.median(v):.2f} |"
        )
    viewer.close()


if __name__ == "__main__":
    main()
