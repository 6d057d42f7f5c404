"""Small Qt pieces of the dock: drop-down boxes that do not widen it, a scroll area that
scrolls up and down only, and a progress bar set without a repaint."""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QComboBox, QFrame, QProgressBar, QScrollArea, QVBoxLayout, QWidget

#: Drop-down boxes size to this many characters, not to their longest choice.
COMBO_POLICY = QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
COMBO_CHARACTERS = 12


def show_choice_in_tooltip(combo: QComboBox) -> None:
    """The combo's tooltip starts with its whole current choice, which may be cut short."""
    explanation = combo.toolTip()

    def update(text: str) -> None:
        combo.setToolTip(f"{text}\n\n{explanation}" if explanation else text)

    update(combo.currentText())
    combo.currentTextChanged.connect(update)


def fit_combos(content: QWidget) -> None:
    """Size every drop-down box in ``content`` to :data:`COMBO_CHARACTERS`, its whole
    choice in its tooltip.

    Long choices (layer names, "source-only (no adaptation)") must not widen the dock
    beyond the window: a combo shows what fits and its list shows everything.
    """
    for combo in content.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(COMBO_POLICY)
        combo.setMinimumContentsLength(COMBO_CHARACTERS)
        show_choice_in_tooltip(combo)


class VerticalScrollArea(QScrollArea):
    """Scrolls up and down only, and is never narrower than its content, so that the dock
    takes the width the form needs instead of cutting off its right edge."""

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def setWidget(self, widget: QWidget) -> None:
        super().setWidget(widget)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's minimum width may have changed
        return super().eventFilter(watched, event)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        content = self.widget()
        if content is not None:
            edges = self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
            hint.setWidth(content.minimumSizeHint().width() + edges)
        return hint


def scrolling_column(*boxes: QWidget) -> VerticalScrollArea:
    """``boxes`` one below the other, their drop-down boxes fitted (:func:`fit_combos`), in
    a :class:`VerticalScrollArea` (for small screens, and the Advanced section unfolded)."""
    content = QWidget()
    layout = QVBoxLayout(content)
    for box in boxes:
        layout.addWidget(box)
    layout.addStretch(1)
    fit_combos(content)
    scroll = VerticalScrollArea()
    scroll.setWidget(content)
    return scroll


def set_progress(bar: QProgressBar, value: int) -> None:
    """``bar.setValue`` without its synchronous repaint; the change is drawn with the next
    paint of the window (a repaint of a bar showing its value cost ~27 ms under Xvfb)."""
    bar.setUpdatesEnabled(False)
    try:
        bar.setValue(value)
    finally:
        bar.setUpdatesEnabled(True)
    bar.update()
