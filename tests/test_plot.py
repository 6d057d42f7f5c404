"""The live loss plot."""

from __future__ import annotations

import math

import numpy as np

from napari_domain_adapt._plot import LossPlot


def test_plot_smooths_and_leaves_gaps(qtbot):
    plot = LossPlot(smoothing=0.5)
    qtbot.addWidget(plot)
    plot.add(1, {"supervised_loss": 1.0, "domain_loss": None, "domain_accuracy": 0.5})
    plot.add(2, {"supervised_loss": 0.0, "domain_loss": 0.7, "domain_accuracy": math.nan})
    plot.redraw()
    np.testing.assert_allclose(plot.series("supervised_loss"), [1.0, 0.5])
    assert np.isnan(plot.series("domain_loss")[0])
    assert plot.series("domain_loss")[1] == 0.7
    assert plot.legend() == ["supervised loss", "domain loss", "domain accuracy"]
    plot.clear()
    assert plot.series("supervised_loss").size == 0
    assert plot.legend() == []


def test_a_sparse_series_holds_its_last_value_unsmoothed(qtbot):
    plot = LossPlot(smoothing=0.5)
    qtbot.addWidget(plot)
    for step, value in [(1, None), (2, 0.8), (3, None), (4, 0.6), (5, None)]:
        plot.add(step, {"supervised_loss": 1.0, "entropy": value})
    plot.redraw()
    np.testing.assert_array_equal(plot.series("entropy")[1:], [0.8, 0.8, 0.6, 0.6])
    assert np.isnan(plot.series("entropy")[0])
    assert "target entropy" in plot.legend()
