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
    QVBoxLayout,
    QWidget,
)

from ..core import metrics
from . import _layers

PROBES = "probes"
#: Face colours given to pinned probes in turn (bright on napari's dark canvas; not the hover blue).
PROBE_COLORS = ("#ffd700", "#ff6b6b", "#4ecdc4", "#c084fc", "#7bd389", "#ff9f1c", "#f472b6", "#60a5fa")


# ---------------------------------------------------------------------- pure functions
def cube_wavelengths(layer) -> np.ndarray:
    """The layer's wavelengths (nm), or band indices when it has none."""
    wl = _layers.layer_wavelengths(layer)
    return wl if wl is not None else np.arange(layer.data.shape[0], dtype=np.float64)


def spectrum_at(layer, world_point, size: int = 1) -> np.ndarray | None:
    """``data[:, y, x]`` (or the mean over a ``size x size`` window) at a world point; None outside."""
    point = np.asarray(world_point, float)
    if point.size < layer.ndim:
        point = np.concatenate([np.zeros(layer.ndim - point.size), point])
    data_pt = np.asarray(layer.world_to_data(point[-layer.ndim:]), float)
    Y, X = layer.data.shape[-2:]
    y, x = (int(np.floor(c + 0.5)) for c in data_pt[-2:])  # pixel centres sit at integers
    if not (0 <= y < Y and 0 <= x < X):
        return None
    if size <= 1:
        return np.asarray(layer.data[:, y, x], dtype=np.float64)
    h = size // 2
    y0, y1, x0, x1 = max(y - h, 0), min(y - h + size, Y), max(x - h, 0), min(x - h + size, X)
    return np.asarray(layer.data[:, y0:y1, x0:x1], dtype=np.float64).mean(axis=(1, 2))


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
def _napari_dark():
    try:
        from napari.utils.theme import get_theme

        t = get_theme("dark")
        return t.canvas.as_hex(), t.foreground.as_hex(), t.text.as_hex()
    except Exception:  # noqa: BLE001
        return "#262930", "#414851", "#f0f1f2"


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


class SpectrumWidget(QWidget):
    """Matplotlib plot of spectra: hover (cursor) and pinned probes (a Points layer)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self._hover_point = None
        bg, fg, text = _napari_dark()
        self.figure = Figure(figsize=(4, 3), facecolor=bg, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.ax = self.figure.add_subplot(111, facecolor=bg)
        for spine in self.ax.spines.values():
            spine.set_color(fg)
        self.ax.tick_params(colors=text, labelsize=8)
        self.ax.xaxis.label.set_color(text)
        self.ax.yaxis.label.set_color(text)
        self._text = text

        root = QVBoxLayout(self)
        self.canvas.setMinimumHeight(240)
        root.addWidget(self.canvas, 1)
        row = QHBoxLayout()
        self.hover_check = QCheckBox("hover")
        self.hover_check.setChecked(True)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 31)
        self.size_spin.setSingleStep(2)
        self.size_spin.setToolTip("Average over a k x k window (pixels of each layer)")
        self.pin_button = QPushButton("Pin probes")
        self.pin_button.setToolTip("Add/select the 'probes' Points layer: click to pin a probe")
        self.export_button = QPushButton("Export CSV")
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
        self.errors_label = QLabel("")
        self.errors_label.setWordWrap(True)
        root.addWidget(self.errors_label)
        self.status = QLabel("")
        root.addWidget(self.status)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self.redraw)

        self.pin_button.clicked.connect(self.probes_layer)
        self.export_button.clicked.connect(self._export_dialog)
        self.size_spin.valueChanged.connect(self.schedule)
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
        self.schedule()

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

    def schedule(self, *_):
        self._timer.start()

    def closeEvent(self, event):  # noqa: N802
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
            for name, (sam, rmse) in probe_errors(self.cube_layers(), ref, pt, self.size_spin.value()).items():
                lines.append(f"probe {i + 1} {name}: SAM {sam:.2f} deg, RMSE {rmse:.4g}")
        return lines

    def cube_layers(self):
        return [lay for lay in self.viewer.layers if _layers.is_cube(lay) and lay.visible]

    # ------------------------------------------------------------------ plot
    def redraw(self):
        ax = self.ax
        ax.clear()
        layers = self.cube_layers()
        styles = ["-", "--", ":", "-."]
        style = {lay.name: styles[i % len(styles)] for i, lay in enumerate(layers)}
        has_wl = any(_layers.layer_wavelengths(lay) is not None for lay in layers)
        k = self.size_spin.value()
        n_lines = 0
        if self.hover_check.isChecked() and self._hover_point is not None:
            for name, (wl, values) in spectra_at(layers, self._hover_point, k).items():
                ax.plot(wl, values, style[name], color="#9ecfff", lw=1.2, label=f"cursor: {name}")
                n_lines += 1
        world, colors = self.probe_points()
        for i, (pt, color) in enumerate(zip(world, colors)):
            for name, (wl, values) in spectra_at(layers, pt, k).items():
                ax.plot(wl, values, style[name], color=color[:3], lw=1.5, label=f"probe {i + 1}: {name}")
                n_lines += 1
        ax.set_xlabel("wavelength (nm)" if has_wl else "band")
        ax.set_ylabel("value")
        if n_lines:
            leg = ax.legend(fontsize=7, frameon=False, loc="best")
            for t in leg.get_texts():
                t.set_color(self._text)
        self.errors_label.setText("\n".join(self.probe_error_lines()))
        self.status.setText(f"{len(world)} probe(s), {len(layers)} cube layer(s)")
        self.canvas.draw_idle()

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
