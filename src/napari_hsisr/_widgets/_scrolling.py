"""Docks that fit a laptop screen: content in a vertical scroll area, a modest size hint, and
the plugin's docks stacked as tabs.

napari stacks docks one above the other in the right area; at 1280x800 three docks then share
about 730 px, and each one's outputs (the form's Method, Quality's table, the spectrum plot) end
up below the fold. So each of this plugin's docks, once docked, joins the others as a tab: every
one gets the full height. A dock whose content is still taller scrolls instead of forcing the
window beyond the screen.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QDockWidget,
    QFrame,
    QMainWindow,
    QScrollArea,
    QStyle,
    QVBoxLayout,
    QWidget,
)


def vertical_scroll(content: QWidget) -> QScrollArea:
    """A frameless scroll area around ``content`` that scrolls vertically only: its width is
    kept at least the content's minimum width, so nothing is clipped or scrolled sideways."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    keeper = _MinimumWidthKeeper(scroll)
    content.installEventFilter(keeper)
    keeper.update_width()
    return scroll


class _MinimumWidthKeeper(QObject):
    """Keeps a scroll area at least as wide as its content's minimum, also when the content changes
    after construction (a method's options, an extra button): a narrower one would clip it."""

    def __init__(self, scroll: QScrollArea):
        super().__init__(scroll)
        self.scroll = scroll

    def update_width(self) -> None:
        bar = self.scroll.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        self.scroll.setMinimumWidth(self.scroll.widget().minimumSizeHint().width() + bar + 2)

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.LayoutRequest:
            self.update_width()
        return False


def _dock_of(widget: QWidget) -> QDockWidget | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def _in_plugin_tabs(dock: QDockWidget) -> bool:
    return any(getattr(w, "in_plugin_tabs", False) for w in dock.findChildren(QWidget))


def join_plugin_tabs(widget: QWidget) -> bool:
    """Stack ``widget``'s dock as the last tab of this plugin's docks in the same area, raised (the
    tabs keep the order the docks were opened in). False while it is not docked in a main window."""
    dock = _dock_of(widget)
    window = dock.parentWidget() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return False
    area = window.dockWidgetArea(dock)
    siblings = [d for d in window.findChildren(QDockWidget) if d is not dock and not d.isFloating()
                and not d.isHidden() and window.dockWidgetArea(d) == area and _in_plugin_tabs(d)]
    if siblings and dock not in window.tabifiedDockWidgets(siblings[0]):
        window.tabifyDockWidget(siblings[0], dock)
    widget.in_plugin_tabs = True
    dock.raise_()
    return True


class JoinsPluginTabs:
    """Mixin for a dock widget: once docked (or shown), its dock joins the plugin's tabs, after napari
    has finished placing it; until it is in a main window it tries again a little later."""

    in_plugin_tabs = False
    _join_pending = False

    def event(self, event):
        if (event.type() in (QEvent.Type.ParentChange, QEvent.Type.Show) and not self.in_plugin_tabs
                and not self._join_pending):
            self._join_pending = True
            QTimer.singleShot(0, lambda: self._join_tabs(attempts=20))
        return super().event(event)

    def _join_tabs(self, attempts: int):
        try:
            if not join_plugin_tabs(self) and attempts > 1:
                QTimer.singleShot(100, lambda: self._join_tabs(attempts - 1))
                return
        except RuntimeError:  # closed meanwhile
            return
        self._join_pending = False


class ScrollingDock(JoinsPluginTabs, QWidget):
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
