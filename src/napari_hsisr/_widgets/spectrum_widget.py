"""The "Spectrum probe" dock: spectra under the cursor and at pinned points, CSV export."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
)

from ..core import metrics
from . import _layers
from ._compact import breakable, compact_controls, elide_middle
from ._layers import without_bad_bands
from ._scrolling import ScrollingDock

PROBES = "probes"
#: Face colours given to pinned probes in turn (bright on napari's dark canvas).
PROBE_COLORS = ("#ffd700", "#ff6b6b", "#4ecdc4", "#c084fc", "#7bd389", "#ff9f1c", "#f472b6", "#60a5fa")
#: One colour per cube layer in the plot (the cursor and every probe share the layer's colour).
LAYER_COLORS = ("#9ecfff", "#ffd700", "#ff6b6b", "#7bd389", "#c084fc", "#ff9f1c", "#f472b6", "#4ecdc4")
#: One line style / marker per probe (the cursor is a plain line).
PROBE_STYLES = (("--", "o"), (":", "s"), ("-.", "^"), ((0, (5, 1)), "D"), ((0, (1, 1)), "v"), ((0, (3, 1, 1, 1)), "P"))
#: The napari Points symbol of each probe: the plot's marker, so a curve and its probe match.
PROBE_SYMBOLS = ("disc", "square", "triangle_up", "diamond", "triangle_down", "cross")


# ---------------------------------------------------------------------- pure functions
def cube_wavelengths(layer) -> np.ndarray:
    """The layer's wavelengths (nm), or band indices when it has none."""
    wl = _layers.layer_wavelengths(layer)
    return wl if wl is not None else np.arange(layer.data.shape[0], dtype=np.float64)


def spectrum_at(layer, world_point, size: int = 1) -> np.ndarray | None:
    """``data[:, y, x]`` (or the mean over a ``size x size`` window) at a world point; None outside.

    A multiscale layer is read on level 0 (napari's world_to_data is level 0's), only the window:
    the chunks under it."""
    point = np.asarray(world_point, float)
    if point.size < layer.ndim:
        point = np.concatenate([np.zeros(layer.ndim - point.size), point])
    data_pt = np.asarray(layer.world_to_data(point[-layer.ndim:]), float)
    data = _layers.cube_data(layer)
    Y, X = data.shape[-2:]
    y, x = (int(np.floor(c + 0.5)) for c in data_pt[-2:])  # pixel centres sit at integers
    if not (0 <= y < Y and 0 <= x < X):
        return None
    if size <= 1:
        return np.asarray(data[:, y, x], dtype=np.float64)
    h = size // 2
    y0, y1, x0, x1 = max(y - h, 0), min(y - h + size, Y), max(x - h, 0), min(x - h + size, X)
    return np.asarray(data[:, y0:y1, x0:x1], dtype=np.float64).mean(axis=(1, 2))


def spectra_at(layers, world_point, size: int = 1) -> dict:
    """``{layer name: (wavelengths, values)}`` for every (C, Y, X) cube layer covering the point."""
    out = {}
    for layer in layers:
        if not _layers.is_cube(layer):
            continue
        values = spectrum_at(layer, world_point, size)
        if values is not None:
            out[layer.name] = (cube_wavelengths(layer), values)
    return out


def probe_table(layers, points, size: int = 1) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Wavelength column (union over layers), column names and values (NaN where absent).

    ``points`` are world coordinates (N, ndim); one column per probe and cube layer.
    """
    series = []
    for i, pt in enumerate(np.atleast_2d(np.asarray(points, float)) if len(points) else []):
        coords = "_".join(f"{c:g}" for c in pt[-2:])
        for name, (wl, values) in spectra_at(layers, pt, size).items():
            series.append((f"probe{i + 1}({coords}):{name}", wl, values))
    wl_all = np.unique(np.concatenate([s[1] for s in series])) if series else np.zeros(0)
    table = np.full((wl_all.size, len(series)), np.nan)
    for j, (_, wl, values) in enumerate(series):
        table[np.searchsorted(wl_all, wl), j] = values
    return wl_all, [s[0] for s in series], table


def write_csv(path, wavelengths, names, table) -> Path:
    """Atomic CSV write: ``wavelength_nm`` then one column per series."""
    from ..core.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["wavelength_nm", *names])
        for k, wl in enumerate(wavelengths):
            w.writerow([f"{wl:g}", *("" if np.isnan(v) else f"{v:.7g}" for v in table[k])])
    return path


# ---------------------------------------------------------------------- widget
def region_spectra(layers, shapes_layer) -> list[tuple[int, str, np.ndarray, np.ndarray, np.ndarray]]:
    """``(shape index, layer name, wavelengths, mean, std)`` of every cube layer inside every shape
    of a Shapes layer (pixels whose centre lies in the shape, on each cube's own grid). Only the
    shape's bounding box is read (a multiscale layer's level 0 stays on disk outside it)."""
    out = []
    for i in range(len(shapes_layer.data)):
        for layer in layers:
            if not _layers.is_cube(layer):
                continue
            data = _layers.cube_data(layer)
            box = _shape_mask(shapes_layer, i, layer, data.shape[-2:])
            if box is None:
                continue
            (y0, x0), mask = box
            block = data[:, y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
            values = np.asarray(block)[:, mask].astype(np.float64)
            out.append((i, layer.name, cube_wavelengths(layer), values.mean(1), values.std(1)))
    return out


def _shape_mask(shapes_layer, index: int, layer, shape_yx) -> tuple[tuple[int, int], np.ndarray] | None:
    """``((y0, x0), mask)``: the boolean mask of shape ``index`` on ``layer``'s pixel grid, cut to
    the shape's bounding box within the image (a full-frame mask of a large layer would be GBs);
    None when no pixel centre lies inside."""
    from skimage.draw import polygon2mask

    verts_world = [shapes_layer.data_to_world(v) for v in np.asarray(shapes_layer.data[index])]
    pts = []
    for v in verts_world:
        full = np.concatenate([np.zeros(max(layer.ndim - len(v), 0)), np.asarray(v, float)])[-layer.ndim:]
        pts.append(np.asarray(layer.world_to_data(full), float)[-2:])
    if len(pts) < 3:
        return None
    pts = np.asarray(pts)
    lo = np.maximum(np.ceil(pts.min(axis=0)), 0).astype(int)  # pixel centres sit at integers
    hi = np.minimum(np.floor(pts.max(axis=0)) + 1, shape_yx).astype(int)
    if np.any(hi <= lo):
        return None
    mask = polygon2mask(tuple(hi - lo), pts - lo)
    return ((int(lo[0]), int(lo[1])), mask) if mask.any() else None


def probe_errors(layers, reference, world_point, size: int = 1) -> dict:
    """``{layer name: (SAM in degrees, RMSE in data units)}`` of each cube layer's spectrum at the
    point against ``reference``'s; layers whose band count differs from the reference's are skipped."""
    ref = spectrum_at(reference, world_point, size)
    if ref is None:
        return {}
    out = {}
    for layer in layers:
        if layer is reference or not _layers.is_cube(layer):
            continue
        values = spectrum_at(layer, world_point, size)
        if values is None or values.shape != ref.shape:
            continue
        a, b = (np.asarray(v, float)[:, None, None] for v in (values, ref))  # one-pixel cubes
        out[layer.name] = (metrics.sam(a, b), float(metrics.rmse_map(a, b)[0, 0]))
    return out


class SpectrumWidget(ScrollingDock):
    """Matplotlib plot of spectra: hover (cursor) and pinned probes (a Points layer)."""

    max_hint_height = 360

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from ._canvas import ThemedCanvas

        self.viewer = napari_viewer
        self._hover_point = None
        self.plot = ThemedCanvas(napari_viewer, toolbar=True)
        self.figure, self.canvas = self.plot.figure, self.plot.canvas
        self.ax = self.figure.add_subplot(111)

        root = self.body_layout
        self.canvas.setMinimumHeight(260)  # readable: the axes keep ~170 px under the legends
        root.addWidget(self.plot, 1)
        row = QHBoxLayout()
        self.hover_check = QCheckBox("hover")
        self.hover_check.setChecked(True)
        self.hover_check.setToolTip("Plot the spectra under the mouse cursor")
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 31)
        self.size_spin.setSingleStep(2)
        self.size_spin.setToolTip("Average over a k x k window (pixels of each layer)")
        self.pin_button = QPushButton("Pin probes")
        self.pin_button.setToolTip("Add/select the 'probes' Points layer: click to pin a probe")
        self.export_button = QPushButton("Export CSV")
        self.export_button.setToolTip("Write the pinned probes' spectra (one column per probe and layer) to a CSV "
                                      "file")
        row.addWidget(self.hover_check)
        row.addWidget(QLabel("k"))
        row.addWidget(self.size_spin)
        row.addWidget(self.pin_button)
        row.addWidget(self.export_button)
        root.addLayout(row)
        ref_row = QHBoxLayout()
        ref_row.addWidget(QLabel("reference"))
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip("Cube to compare each probe's spectra with (SAM, RMSE)")
        ref_row.addWidget(self.reference_combo, 1)
        root.addLayout(ref_row)
        from qtpy.QtWidgets import QScrollArea

        self.errors_label = QLabel("")
        self.errors_label.setWordWrap(True)
        errors = QScrollArea()  # a fixed strip: many probes never grow the dock
        errors.setWidget(self.errors_label)
        errors.setWidgetResizable(True)
        errors.setMaximumHeight(70)
        errors.setFrameShape(errors.Shape.NoFrame)
        root.addWidget(errors)
        self.region_check = QCheckBox("regions (mean ± std inside the shapes of a Shapes layer)")
        self.region_check.setChecked(True)
        self.region_check.setToolTip("Draw polygons or rectangles in a Shapes layer: each gets its mean spectrum "
                                     "and a ± 1 std band, per cube layer")
        root.addWidget(self.region_check)
        self.status = QLabel("")
        root.addWidget(self.status)
        self.finish_layout()
        compact_controls(self)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self.redraw)

        self.pin_button.clicked.connect(self.probes_layer)
        self.export_button.clicked.connect(self._export_dialog)
        self.size_spin.valueChanged.connect(self.schedule)
        self.region_check.toggled.connect(self.schedule)
        self.reference_combo.currentTextChanged.connect(self.schedule)
        self.hover_check.toggled.connect(self.schedule)
        napari_viewer.mouse_move_callbacks.append(self._on_mouse_move)
        napari_viewer.layers.events.inserted.connect(self._on_layers_changed)
        napari_viewer.layers.events.removed.connect(self._on_layers_changed)
        self._watched = set()
        self._next_colour = 0
        self._on_layers_changed()
        from ._wavelength_overlay import install

        install(napari_viewer)
        self.redraw()

    # ------------------------------------------------------------------ events
    def _on_mouse_move(self, viewer, event):
        if self.hover_check.isChecked():
            self._hover_point = tuple(event.position)
            self.schedule()

    def _on_layers_changed(self, event=None):
        self._refresh_reference_choices()
        layer = self._probe_layer()
        if layer is not None and id(layer) not in self._watched:
            self._watched.add(id(layer))
            layer.events.data.connect(self._colour_new_probes)
            layer.events.data.connect(self.schedule)
            layer.events.face_color.connect(self.schedule)
        for shapes in self.shapes_layers():
            if id(shapes) not in self._watched:
                self._watched.add(id(shapes))
                shapes.events.data.connect(self.schedule)
        self.schedule()

    def shapes_layers(self):
        from napari.layers import Shapes

        return [lay for lay in self.viewer.layers if isinstance(lay, Shapes) and lay.visible]

    def _colour_new_probes(self, event):
        """Give each newly added probe the next colour of ``PROBE_COLORS`` (its curves use it)."""
        if str(getattr(event, "action", "")) != "added":
            return
        layer = event.source
        n = len(layer.data)
        idx = sorted({int(i) % n for i in (getattr(event, "data_indices", ()) or ()) if n})
        if not idx:
            return
        from napari.utils.colormaps.standardize_color import transform_color

        colors = np.array(layer.face_color, dtype=np.float32, copy=True)
        if colors.shape != (n, 4):
            return
        for i in idx:
            colors[i] = transform_color(PROBE_COLORS[self._next_colour % len(PROBE_COLORS)])[0]
            self._next_colour += 1
        layer.face_color = colors
        layer.symbol = [PROBE_SYMBOLS[i % len(PROBE_SYMBOLS)] for i in range(n)]

    def schedule(self, *_):
        self._timer.start()

    def closeEvent(self, event):
        if self._on_mouse_move in self.viewer.mouse_move_callbacks:
            self.viewer.mouse_move_callbacks.remove(self._on_mouse_move)
        super().closeEvent(event)

    # ------------------------------------------------------------------ probes
    def _probe_layer(self):
        from napari.layers import Points

        if PROBES in self.viewer.layers and isinstance(self.viewer.layers[PROBES], Points):
            return self.viewer.layers[PROBES]
        return None

    def probes_layer(self):
        """The "probes" Points layer (created in add mode when missing)."""
        layer = self._probe_layer()
        if layer is None:
            ndim = max(2, self.viewer.dims.ndim)
            layer = self.viewer.add_points(np.zeros((0, ndim)), name=PROBES, size=6, face_color=PROBE_COLORS[0],
                                           border_color="white", ndim=ndim)
            layer.feature_defaults = {}
            self._on_layers_changed()
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        return layer

    def probe_points(self):
        """World coordinates (N, ndim) and RGBA colours (N, 4) of the pinned probes."""
        layer = self._probe_layer()
        if layer is None or len(layer.data) == 0:
            return np.zeros((0, 2)), np.zeros((0, 4))
        world = np.array([layer.data_to_world(p) for p in layer.data])
        return world, np.asarray(layer.face_color)

    def _refresh_reference_choices(self):
        current = self.reference_combo.currentText()
        names = [lay.name for lay in self.viewer.layers if _layers.is_cube(lay)]
        self.reference_combo.blockSignals(True)
        self.reference_combo.clear()
        self.reference_combo.addItems(["none", *names])
        if current in names:
            self.reference_combo.setCurrentText(current)
        elif any("reference" in n for n in names):
            self.reference_combo.setCurrentText(next(n for n in names if "reference" in n))
        self.reference_combo.blockSignals(False)

    def reference_layer(self):
        name = self.reference_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def probe_error_lines(self) -> list[str]:
        """One line per probe and layer: SAM and RMSE against the chosen reference."""
        ref = self.reference_layer()
        if ref is None:
            return []
        world, _ = self.probe_points()
        lines = []
        for i, pt in enumerate(world):
            others = [lay for lay in self.cube_layers() if lay.name != ref.name]  # names: wrappers differ
            for name, (sam, rmse) in probe_errors(others, ref, pt, self.size_spin.value()).items():
                lines.append(f"probe {i + 1} {name}: SAM {sam:.2f} deg, RMSE {rmse:.4g}")
        return lines

    def cube_layers(self):
        return [lay for lay in self.viewer.layers if _layers.is_cube(lay) and lay.visible]

    # ------------------------------------------------------------------ plot
    def redraw(self):
        """Colour = cube layer, line style and marker = probe (the cursor a plain line), regions as
        a mean line and a ± std band; two small legends (layers, probes) instead of one per curve."""
        from matplotlib.lines import Line2D

        self.figure.clear()
        ax = self.ax = self.figure.add_subplot(111)
        layers = self.cube_layers()
        colour = {lay.name: LAYER_COLORS[i % len(LAYER_COLORS)] for i, lay in enumerate(layers)}
        by_name = {lay.name: lay for lay in layers}
        shown = lambda v, name: without_bad_bands(v, by_name[name])  # noqa: E731 - noisy bands not drawn
        has_wl = any(_layers.layer_wavelengths(lay) is not None for lay in layers)
        k = self.size_spin.value()
        shown_layers, probe_handles = set(), []
        if self.hover_check.isChecked() and self._hover_point is not None:
            for name, (wl, values) in spectra_at(layers, self._hover_point, k).items():
                ax.plot(wl, shown(values, name), "-", color=colour[name], lw=1.3, label=f"cursor: {name}")
                shown_layers.add(name)
            if shown_layers:
                probe_handles.append(Line2D([], [], color="#cccccc", lw=1.3, label="cursor"))
        world, _ = self.probe_points()
        for i, pt in enumerate(world):
            ls, marker = PROBE_STYLES[i % len(PROBE_STYLES)]
            found = spectra_at(layers, pt, k)
            for name, (wl, values) in found.items():
                ax.plot(wl, shown(values, name), linestyle=ls, marker=marker, markevery=max(1, len(wl) // 8), ms=3,
                        color=colour[name], lw=1.2, label=f"probe {i + 1}: {name}")
                shown_layers.add(name)
            if found:
                probe_handles.append(Line2D([], [], color="#cccccc", linestyle=ls, marker=marker, ms=3, lw=1.2,
                                            label=f"probe {i + 1}"))
        if self.region_check.isChecked():
            for shapes in self.shapes_layers():
                for i, name, wl, mean, std in region_spectra(layers, shapes):
                    mean, std = shown(mean, name), shown(std, name)
                    ax.plot(wl, mean, "-", color=colour[name], lw=2.0, alpha=0.9, label=f"region {i + 1}: {name}")
                    ax.fill_between(wl, mean - std, mean + std, color=colour[name], alpha=0.18, lw=0)
                    shown_layers.add(name)
        ax.set_xlabel("wavelength (nm)" if has_wl else "band")
        ax.set_ylabel("value")
        if shown_layers:
            self._legends_under_axes(colour, shown_layers, probe_handles)
        self.errors_label.setText(breakable("\n".join(self.probe_error_lines())))
        self.status.setText(f"{len(world)} probe(s), {len(layers)} cube layer(s)")
        self.plot.draw()

    def _legends_under_axes(self, colour: dict, shown_layers: set, probe_handles: list) -> None:
        """Layers (colours) under the axes on the left, probes (styles) on the right: outside the axes,
        never over the curves; long layer names elided (the full names are in the layer list)."""
        from matplotlib.lines import Line2D

        layer_handles = [Line2D([], [], color=colour[n], lw=2, label=elide_middle(n, 30))
                         for n in colour if n in shown_layers]
        style = {"fontsize": 6, "frameon": True, "framealpha": 0.6, "title_fontsize": 6}
        first = self.figure.legend(handles=layer_handles, loc="outside lower left", title="layer", **style)
        if probe_handles:
            self.figure.legend(handles=probe_handles, loc="outside lower right", ncols=2, **style)
        self._legend_texts = [t.get_text() for t in first.get_texts()]

    # ------------------------------------------------------------------ export
    def export_csv(self, path) -> Path:
        world, _ = self.probe_points()
        wl, names, table = probe_table(self.cube_layers(), world, self.size_spin.value())
        return write_csv(path, wl, names, table)

    def _export_dialog(self):
        from napari.utils.notifications import show_error, show_info

        world, _ = self.probe_points()
        if len(world) == 0:
            show_error("No probes to export: click 'Pin probes' and add points on the image first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export spectra", "spectra.csv", "CSV (*.csv)")
        if not path:
            return
        try:
            self.export_csv(path)
        except OSError as exc:
            show_error(f"Could not write {path}: {exc}")
            return
        show_info(f"Spectra written to {path}")
