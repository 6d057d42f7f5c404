"""How long does the Qt event loop stall while the widget trains? A 10 ms QTimer probe.

Run under a display (e.g. ``xvfb-run -a``)::

    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/ui_stall.py --seconds 20

It opens napari with the sample data, docks the widget with its default settings, clicks
Adapt, and records the gap between ticks of a 10 ms timer for ``--seconds``; then stops the
run and waits for the result layers (``--runs 2``: then again, replacing them). With
``--corrections``, each later run is a correction round: simulated scribbles (drawn from the
sample's target ground truth, slice 0, about 1% of its pixels) are painted into a Labels
layer, chosen as the target's labels, and Continue is clicked instead of Adapt. A gap much
above 10 ms is time the viewer could not react to the user. :class:`StallProbe` is reusable
around any other piece of GUI work.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from qtpy.QtCore import QElapsedTimer, QTimer


class StallProbe:
    """Records the gaps between ticks of a short-interval QTimer on the GUI thread."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.interval_ms = interval_ms
        self.gaps_ms: list[float] = []
        self.times_s: list[float] = []
        self._clock = QElapsedTimer()
        self._since = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        """Begin recording (forgets earlier gaps)."""
        self.gaps_ms.clear()
        self.times_s.clear()
        self._clock.start()
        self._since.start()
        self._timer.start()

    def stop(self) -> None:
        """Stop recording."""
        self._timer.stop()

    def _tick(self) -> None:
        self.gaps_ms.append(self._clock.nsecsElapsed() / 1e6)
        self.times_s.append(self._since.nsecsElapsed() / 1e9)
        self._clock.restart()

    def summary(self, after_s: float = 0.0) -> dict[str, float]:
        """Largest, 99th-percentile and median gap (ms), and the number of ticks.

        ``after_s`` leaves out the ticks of the first seconds (e.g. a run's start-up).
        """
        times = np.asarray(self.times_s[1:])
        gaps = np.asarray(self.gaps_ms[1:])[times >= after_s] if times.size else np.zeros(0)
        gaps = gaps if gaps.size else np.zeros(1)
        return {
            "max_ms": float(gaps.max()),
            "p99_ms": float(np.percentile(gaps, 99)),
            "median_ms": float(np.median(gaps)),
            "ticks": float(len(gaps)),
        }


def run_loop(seconds: float, until=None) -> bool:
    """Run the real Qt event loop for ``seconds``, or until ``until()`` is true."""
    from qtpy.QtCore import QEventLoop

    loop = QEventLoop()
    QTimer.singleShot(round(seconds * 1000), loop.quit)
    poll = QTimer()
    if until is not None:
        poll.setInterval(20)
        poll.timeout.connect(lambda: until() and loop.quit())
        poll.start()
    loop.exec()
    poll.stop()
    return until() if until is not None else True


def probe_run(widget, seconds: float, button=None) -> dict:
    """Click ``button`` (Adapt by default), train for ``seconds``, click Stop and wait for
    the result layers."""
    button = button or widget.adapt_button
    probe = StallProbe()
    probe.start()
    clicked = time.perf_counter()
    first_preview: list[float] = []

    def on_item(item: object) -> None:  # runs in the GUI thread, as the user sees it
        if getattr(item, "preview", None) is not None and not first_preview:
            first_preview.append(time.perf_counter() - clicked)

    button.click()  # its own time is the first gap, which summary() leaves out
    click_ms = 1000 * (time.perf_counter() - clicked)
    widget.job.worker.yielded.connect(on_item)
    run_loop(seconds)
    during = probe.summary()
    steady = probe.summary(after_s=3.0)
    steps = widget.progress.value()
    widget.stop_button.click()
    finished = run_loop(120.0, until=lambda: not widget.busy)
    probe.stop()
    return {
        "click_ms": click_ms,
        "first_preview": first_preview[0] if first_preview else None,
        "during": during,
        "steady": steady,
        "overall": probe.summary(),
        "steps": steps,
        "finished": finished,
    }


def paint_corrections(viewer, widget, round_: int) -> None:
    """Paint simulated scribbles on slice 0 of the target into the "corrections" Labels
    layer (1 background, 2 foreground) and choose it as the target's labels."""
    from scribbles import simulate_scribbles

    truth = np.asarray(viewer.layers["target ground truth"].data)
    if "corrections" not in viewer.layers:
        viewer.add_labels(np.zeros(truth.shape, np.uint8), name="corrections")
    layer = viewer.layers["corrections"]
    strokes = simulate_scribbles(truth[0] > 0, np.random.default_rng(round_))
    painted = layer.data.copy()
    painted[0] = np.where(strokes > 0, strokes, painted[0])
    layer.data = painted
    widget.form.set_layer("target_labels", layer)
    widget.form.label_kind.value = "sparse"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="training time probed")
    parser.add_argument(
        "--runs", type=int, default=1, help="runs one after another (later ones replace results)"
    )
    parser.add_argument(
        "--corrections",
        action="store_true",
        help="runs after the first paint scribbles and click Continue (correction rounds)",
    )
    args = parser.parse_args()

    import napari

    from napari_domain_adapt.gui.demo import dock_at_defaults

    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-domain-adapt", "em_pair")
    widget = dock_at_defaults(viewer)
    run_loop(120.0, until=lambda: widget.ready)  # Adapt is off until PyTorch has loaded
    run_loop(1.0)  # let the window settle

    for run in range(1, args.runs + 1):
        button = widget.adapt_button
        if args.corrections and run > 1:
            paint_corrections(viewer, widget, run)
            button = widget.continue_button
        result = probe_run(widget, args.seconds, button)
        if args.runs > 1:
            print(f"-- run {run}: {button.text()}")
        print(
            f"device: {widget.device_label.text()}; steps in {args.seconds:.0f} s: "
            f"{result['steps']}"
        )
        print(f"the {button.text()} button's handler: {result['click_ms']:.0f} ms")
        shown = result["first_preview"]
        print(f"time from {button.text()} to the first live preview: {shown and f'{shown:.2f} s'}")
        print(
            "training: max stall {max_ms:.0f} ms, p99 {p99_ms:.0f} ms, median {median_ms:.1f} "
            "ms over {ticks:.0f} ticks".format(**result["during"])
        )
        print(
            "training after its first 3 s: max stall {max_ms:.0f} ms, p99 {p99_ms:.0f} ms".format(
                **result["steady"]
            )
        )
        print(
            "training + stop + whole-target prediction: max stall {max_ms:.0f} ms, "
            "p99 {p99_ms:.0f} ms".format(**result["overall"])
        )
        added = result["finished"] and "target segmentation" in viewer.layers
        print(f"result layers added: {added}")
        run_loop(1.0)
    viewer.close()


if __name__ == "__main__":
    main()
