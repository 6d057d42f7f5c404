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

    def clear(self) -> None:
        """Forget all points and empty the curves."""
        self._steps: list[int] = []
        self._values: dict[str, list[float]] = {key: [] for key in SERIES}
        self._smoothed: dict[str, float] = {}
        self._legend.clear()
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
            smoothed = previous + self.smoothing * (value - previous)
            self._smoothed[key] = smoothed
            self._values[key].append(smoothed)
        self._dirty = True

    def legend(self) -> list[str]:
        """The names in the legend: the series that have had a value."""
        return [label.text for _sample, label in self._legend.items]

    def series(self, key: str) -> np.ndarray:
        """The stored (smoothed) values of one series."""
        return np.asarray(self._values[key], dtype=float)

    def redraw(self) -> None:
        """Draw the stored points if any arrived since the last redraw."""
        if not self._dirty:
            return
        steps = np.asarray(self._steps, dtype=float)
        for key, curve in self._curves.items():
            values = self.series(key)
            curve.setData(steps, values, connect="finite")
            if key in self._smoothed and self._legend.getLabel(curve) is None:
                self._legend.addItem(curve, SERIES[key][0])
        self._dirty = False
