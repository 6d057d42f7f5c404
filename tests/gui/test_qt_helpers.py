"""The dock's small Qt pieces: combos that do not widen it, its scroll area, a quiet bar."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QComboBox, QGroupBox, QLabel, QProgressBar, QVBoxLayout, QWidget

from napari_domain_adapt.gui.qt_helpers import (
    COMBO_CHARACTERS,
    COMBO_POLICY,
    VerticalScrollArea,
    fit_combos,
    scrolling_column,
    set_progress,
    show_choice_in_tooltip,
)

pytestmark = pytest.mark.gui


def combo(*choices: str, tooltip: str = "") -> QComboBox:
    box = QComboBox()
    box.addItems(choices)
    box.setToolTip(tooltip)
    return box


def test_the_tooltip_starts_with_the_whole_current_choice(qtbot) -> None:
    box = combo("a rather long layer name", "short", tooltip="What this picks")
    qtbot.addWidget(box)
    show_choice_in_tooltip(box)
    assert box.toolTip() == "a rather long layer name\n\nWhat this picks"
    box.setCurrentIndex(1)
    assert box.toolTip() == "short\n\nWhat this picks"


def test_without_an_explanation_the_tooltip_is_the_choice(qtbot) -> None:
    box = combo("one", "two")
    qtbot.addWidget(box)
    show_choice_in_tooltip(box)
    assert box.toolTip() == "one"
    box.setCurrentIndex(1)
    assert box.toolTip() == "two"


def test_every_combo_inside_is_fitted_to_a_few_characters(qtbot) -> None:
    content = QWidget()
    qtbot.addWidget(content)
    inner = QGroupBox(content)
    layout = QVBoxLayout(inner)
    boxes = [combo("x" * 80, tooltip="first"), combo("y" * 80)]
    for box in boxes:
        layout.addWidget(box)
    wide = combo("x" * 80).minimumSizeHint().width()  # unfitted (Qt caches the hint)
    fit_combos(content)
    for box in boxes:
        assert box.sizeAdjustPolicy() == COMBO_POLICY
        assert box.minimumContentsLength() == COMBO_CHARACTERS
    assert boxes[0].minimumSizeHint().width() < wide  # 80 characters no longer set its width
    assert boxes[0].toolTip() == f"{'x' * 80}\n\nfirst"


def test_the_scroll_area_is_never_narrower_than_its_content(qtbot) -> None:
    scroll = VerticalScrollArea()
    qtbot.addWidget(scroll)
    content = QWidget()
    label = QLabel("content", content)
    QVBoxLayout(content).addWidget(label)
    label.setMinimumWidth(300)
    scroll.setWidget(content)
    assert scroll.minimumSizeHint().width() >= 300
    label.setMinimumWidth(600)  # the content asks for more room: the hint follows
    qtbot.waitUntil(lambda: scroll.minimumSizeHint().width() >= 600, timeout=2000)
    assert scroll.horizontalScrollBarPolicy().name == "ScrollBarAlwaysOff"


def test_the_column_holds_the_boxes_in_order_with_fitted_combos(qtbot) -> None:
    first, second = QGroupBox("first"), QGroupBox("second")
    QVBoxLayout(second).addWidget(combo("z" * 60))
    scroll = scrolling_column(first, second)
    qtbot.addWidget(scroll)
    assert isinstance(scroll, VerticalScrollArea)
    layout = scroll.widget().layout()
    assert [layout.itemAt(i).widget() for i in range(2)] == [first, second]
    assert layout.itemAt(2).spacerItem() is not None  # the boxes stay at the top
    assert second.findChild(QComboBox).minimumContentsLength() == COMBO_CHARACTERS


def test_set_progress_sets_the_value_and_leaves_updates_on(qtbot) -> None:
    bar = QProgressBar()
    qtbot.addWidget(bar)
    bar.setRange(0, 10)
    set_progress(bar, 7)
    assert bar.value() == 7
    assert bar.updatesEnabled()
