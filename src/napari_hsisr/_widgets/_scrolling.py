"""Docks that fit a laptop screen: content in a vertical scroll area, a modest size hint.

napari stacks docks in the right area and sizes them from their hints; a dock whose content is
taller than its share must scroll instead of forcing the window beyond the screen (1280x800 with
all three docks open).
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QStyle, QVBoxLayout, QWidget


def vertical_scroll(content: QWidget) -> QScrollArea:
    """A frameless scroll area around ``content`` that scrolls vertically only: its width is
    kept at least the content's minimum width, so nothing is clipped or scrolled sideways."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    bar = scroll.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
    scroll.setMinimumWidth(content.minimumSizeHint().width() + bar + 2)
    return scroll


class ScrollingDock(QWidget):
    """Base for a dock: fill ``self.body_layout``; the dock asks for at most ``max_hint_height``."""

    max_hint_height = 400
    min_height = 160

    def __init__(self, parent=None):
        super().__init__(parent)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(4, 4, 4, 4)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self._outer = outer

    def finish_layout(self) -> None:
        """Call once the body is filled: wraps it in the scroll area."""
        self.scroll = vertical_scroll(self.body)
        self._outer.addWidget(self.scroll)

    def sizeHint(self):
        hint = self.body.sizeHint()
        return QSize(hint.width() + 16, min(hint.height(), self.max_hint_height))

    def minimumSizeHint(self):
        return QSize(self.body.minimumSizeHint().width() + 16, self.min_height)
