"""The live loss plot."""

from __future__ import annotations

import math

import numpy as np

from napari_domain_adapt.gui.plot import LossPlot


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


def test_the_axes_move_only_when_the_data_leave_them(qtbot):
    # A range that follows every new point re-lays out the whole plot at each redraw.
    plot = LossPlot(smoothing=1.0)
    qtbot.addWidget(plot)
    plot.clear(steps=600)
    for step in range(1, 51):
        plot.add(step, {"supervised_loss": 0.5 + 0.004 * step, "domain_accuracy": 0.5})
        plot.redraw()
    np.testing.assert_allclose(plot.ranges(), [(0, 600), (0, 1)])

    plot.add(51, {"supervised_loss": 3.7})
    plot.redraw()
    np.testing.assert_allclose(plot.ranges(), [(0, 600), (0, 5)])  # 1.1 * 3.7, rounded up
    plot.add(52, {"supervised_loss": 0.1})
    plot.redraw()
    np.testing.assert_allclose(plot.ranges(), [(0, 600), (0, 5)])  # never narrowed

    plot.add(601, {"domain_loss": -0.3})  # past the run's end, below zero
    plot.redraw()
    np.testing.assert_allclose(plot.ranges(), [(0, 1000), (-0.5, 5)])

    plot.clear()
    np.testing.assert_allclose(plot.ranges(), [(0, 10), (0, 1)])
