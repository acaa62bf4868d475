"""One matplotlib canvas for every plot of the plugin, themed like the viewer.

The pattern of napari-matplotlib's ``BaseNapariMPLWidget``: the figure takes the viewer's theme
(background, foreground, text colours), a navigation toolbar is offered, and a change of theme
restyles every axes and redraws, so labels are never black on black.
"""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget


def theme_colours(viewer=None) -> dict:
    """``{"bg", "fg", "text", "accent"}`` hex colours of the viewer's theme (dark when unknown)."""
    try:
        from napari.utils.theme import get_theme

        name = getattr(viewer, "theme", None) or "dark"
        if name == "system":
            name = "dark"
        t = get_theme(name)
        return {"bg": t.canvas.as_hex(), "fg": t.foreground.as_hex(), "text": t.text.as_hex(),
                "accent": t.current.as_hex()}
    except Exception:  # noqa: BLE001 - no napari theme: napari's dark defaults
        return {"bg": "#262930", "fg": "#414851", "text": "#f0f1f2", "accent": "#007acc"}


def _legends(ax) -> list:
    """The axes' legends and its figure's (legends placed outside the axes are the figure's)."""
    from matplotlib.legend import Legend

    return [child for child in ax.get_children() if isinstance(child, Legend)] + list(ax.figure.legends)


class ThemedCanvas(QWidget):
    """A figure, its Qt canvas and (optionally) a navigation toolbar, following ``viewer``'s theme.

    Plot, then call :meth:`draw` (it restyles the axes first): titles, labels, ticks, spines and
    legends take the theme's colours."""

    def __init__(self, viewer=None, toolbar: bool = True, height: int | None = None, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import (
            FigureCanvasQTAgg,
            NavigationToolbar2QT,
        )
        from matplotlib.figure import Figure

        self.viewer = viewer
        self.figure = Figure(figsize=(4, 2.5), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        if height:
            self.canvas.setFixedHeight(height)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.toolbar = NavigationToolbar2QT(self.canvas, self) if toolbar else None
        if self.toolbar is not None:
            self.toolbar.setIconSize(self.toolbar.iconSize() * 0.7)
            layout.addWidget(self.toolbar)
        layout.addWidget(self.canvas, 1)
        self.colours = theme_colours(viewer)
        if viewer is not None and hasattr(viewer, "events") and hasattr(viewer.events, "theme"):
            viewer.events.theme.connect(self._on_theme)

    def _on_theme(self, event=None):
        self.colours = theme_colours(self.viewer)
        self.draw()

    def style(self) -> None:
        """Give the figure and every axes the theme's colours."""
        c = self.colours
        self.figure.set_facecolor(c["bg"])
        for ax in self.figure.axes:
            ax.set_facecolor(c["bg"])
            for spine in ax.spines.values():
                spine.set_color(c["text"])
            ax.tick_params(colors=c["text"], labelsize=7)
            for label in (ax.xaxis.label, ax.yaxis.label, ax.title):
                label.set_color(c["text"])
            for legend in _legends(ax):  # a second legend is an extra artist: style them all
                legend.get_frame().set_facecolor(c["bg"])
                legend.get_frame().set_edgecolor(c["fg"])
                for text in legend.get_texts():
                    text.set_color(c["text"])
                if legend.get_title() is not None:
                    legend.get_title().set_color(c["text"])

    def draw(self) -> None:
        self.style()
        self.canvas.draw_idle()
