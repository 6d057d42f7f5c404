"""The live plot of a run: supervised loss, domain loss and domain-classifier accuracy."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QSize
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

#: Series shown, their legend text and pen colour.
SERIES = {
    "supervised_loss": ("supervised loss", "#4fc3f7"),
    "domain_loss": ("domain loss", "#ffb74d"),
    "domain_accuracy": ("domain accuracy", "#81c784"),
    "consistency_loss": ("consistency loss", "#ba68c8"),  # mean-teacher modes
    "entropy": ("target entropy", "#fff176"),  # label-free, checked now and then
}
#: Series measured every few steps only: drawn as steps, holding the last value, unsmoothed.
SPARSE = {"entropy"}


class LossPlot(QWidget):
    """Curves of the step losses, smoothed (exponential moving average), redrawn on demand.

    :meth:`add` only stores numbers, so it is cheap at every step; :meth:`redraw` draws them
    and is called a few times a second by the widget. A series enters the legend when its
    first value arrives, so a mode's legend lists only what that mode measures.

    The axes do not follow the data at every redraw: x spans the run's steps, y grows to a
    round bound only when a value leaves it. A range that moves re-lays out and repaints
    the whole plot, axes and tick labels: ~30 ms more stall of the viewer per redraw under
    Xvfb (measured); a fixed one repaints the curves only.
    """

    def __init__(self, smoothing: float = 0.1, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.smoothing = smoothing
        self._plot = pg.PlotWidget(background=None)
        self._plot.setMinimumSize(200, 150)
        self._plot.sizeHint = lambda: QSize(320, 170)  # pyqtgraph asks for 640x480
        self._plot.showGrid(x=True, y=True, alpha=0.25)
        self._plot.setLabel("bottom", "step")
        self._legend = self._plot.addLegend(offset=(-5, 5))
        self._legend.setBrush(pg.mkBrush(0, 0, 0, 140))
        self._plot.setMouseEnabled(x=False, y=False)
        self._plot.hideButtons()
        self._curves = {
            key: self._plot.plot([], [], pen=pg.mkPen(colour, width=2), connect="finite")
            for key, (_label, colour) in SERIES.items()
        }
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._plot)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(180)
        self.clear()

    def sizeHint(self) -> QSize:
        """Small by default, so the dock leaves room for the canvas."""
        return QSize(320, 180)

    def clear(self, steps: int | None = None) -> None:
        """Forget all points and empty the curves; ``steps``, the run's length, ends x."""
        self._steps: list[int] = []
        self._values: dict[str, list[float]] = {key: [] for key in SERIES}
        self._smoothed: dict[str, float] = {}
        self._low, self._high = math.inf, -math.inf  # of the values stored
        self._legend.clear()
        self._set_ranges((0.0, float(steps or 10)), (0.0, 1.0))
        self._dirty = True
        self.redraw()

    def add(self, step: int, values: dict[str, float | None]) -> None:
        """Store one step's values (missing or None ones as gaps)."""
        self._steps.append(step)
        for key in SERIES:
            value = values.get(key)
            if key in SPARSE:
                value = self._smoothed.get(key) if value is None else value
                self._values[key].append(math.nan if value is None else value)
                if value is not None:
                    self._smoothed[key] = value
                continue
            if value is None or not math.isfinite(value):
                self._values[key].append(math.nan)
                continue
            previous = self._smoothed.get(key, value)
            value = previous + self.smoothing * (value - previous)
            self._smoothed[key] = value
            self._values[key].append(value)
        stored = [v[-1] for v in self._values.values() if v and math.isfinite(v[-1])]
        if stored:
            self._low, self._high = min(self._low, *stored), max(self._high, *stored)
        self._dirty = True

    def legend(self) -> list[str]:
        """The names in the legend: the series that have had a value."""
        return [label.text for _sample, label in self._legend.items]

    def series(self, key: str) -> np.ndarray:
        """The stored (smoothed) values of one series."""
        return np.asarray(self._values[key], dtype=float)

    def ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The x and y ranges the plot shows."""
        (x0, x1), (y0, y1) = self._plot.getViewBox().viewRange()
        return (x0, x1), (y0, y1)

    def _set_ranges(self, x: tuple[float, float], y: tuple[float, float]) -> None:
        self._x, self._y = x, y
        self._plot.setRange(xRange=x, yRange=y, padding=0)

    def _follow_data(self) -> None:
        """Widen the ranges to a round bound where the data left them; never narrow them."""
        (x0, x1), (y0, y1) = self._x, self._y
        if self._steps and self._steps[-1] > x1:
            x1 = _round_up(self._steps[-1])
        if self._high > y1:
            y1 = _round_up(1.1 * self._high)
        if self._low < y0:
            y0 = -_round_up(-1.1 * self._low)
        if (x0, x1) != self._x or (y0, y1) != self._y:
            self._set_ranges((x0, x1), (y0, y1))

    def redraw(self) -> None:
        """Draw the stored points if any arrived since the last redraw."""
        if not self._dirty:
            return
        self._follow_data()
        steps = np.asarray(self._steps, dtype=float)
        for key, curve in self._curves.items():
            values = self.series(key)
            curve.setData(steps, values, connect="finite")
            if key in self._smoothed and self._legend.getLabel(curve) is None:
                self._legend.addItem(curve, SERIES[key][0])
        self._dirty = False


def _round_up(value: float) -> float:
    """The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 0.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)
