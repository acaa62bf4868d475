"""The "Quality" dock: metrics of a result, in a thread worker.

With a reference: PSNR / SAM / ERGAS / SSIM / RMSE (and a SAM map layer). Without one (real
data): the fit report of the core (``core.api.result_fit``, the computation behind
``settings["fit"]``), i.e. how well the result, degraded again with the degradation that made it
(blind's estimate, the fitted gains, offsets and encoding), explains the HR and LR inputs chosen
here, written as the Fusion dock's status line and the CLI write it.

A multiscale result or reference (a large OME-Zarr result) is read whole from its level 0, and
refused over ``_layers.WHOLE_READ_MAX`` with a message: SSIM (windows) and ERGAS/SAM (global
means) would need their own chunked versions, and a result under the limit fits in memory.
"""

from __future__ import annotations

import numpy as np
from psygnal import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
)

from . import _layers
from ._compact import compact_controls
from ._scrolling import ScrollingDock

METRICS = (("psnr", "PSNR (dB)"), ("psnr_bandwise", "PSNR band-wise (dB)"), ("sam", "SAM (deg)"),
           ("ergas", "ERGAS"), ("ssim", "SSIM"), ("rmse", "RMSE (0-255)"))
CONSISTENCY = (("lr_fit", "LR cube fit (relative residual)"), ("hr_fit", "HR image fit (relative residual)"))
NO_REFERENCE = "none (consistency with inputs)"


def result_scale(layer) -> int | None:
    try:
        return int(layer.metadata["settings"]["degradation"]["scale"])
    except (KeyError, TypeError, ValueError):
        return None


def _reference_and_bands(result, reference, scale):
    result, reference = np.asarray(result), np.asarray(reference)  # a multiscale level 0: read once, here
    return {**compute_reference_metrics(result, reference, scale), **per_band(result, reference)}


def per_band(result, reference) -> dict:
    """Per band: PSNR (dB, peak 1) and the relative RMSE (% of the band's RMS)."""
    est = np.asarray(result, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    mse = np.mean((est - ref) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore"):
        psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-30))
    rel = 100 * np.sqrt(mse) / np.maximum(np.sqrt(np.mean(ref ** 2, axis=(1, 2))), 1e-30)
    return {"band_psnr": psnr, "band_relative_rmse": rel}


def compute_reference_metrics(result, reference, scale: int | None) -> dict:
    from ..core.metrics import evaluate

    return evaluate(np.asarray(result), np.asarray(reference), scale=scale if scale and scale > 1 else None)


def compute_consistency(result, hr_image, lr_cube, settings: dict) -> dict:
    """The core's fit report of ``result`` against its inputs: ``{"lr_fit": relative, "hr_fit": ...}``."""
    from ..core.api import result_fit

    fit = result_fit(np.asarray(result, dtype=np.float32), hr_image, lr_cube, settings)
    return {f"{side}_fit": fit[side]["relative"] for side in ("lr", "hr") if side in fit}


def check_recorded(settings: dict) -> None:
    """Fail on the main thread (not in the worker) when the result records no degradation."""
    from ..core.errors import InputError

    record = (settings or {}).get("estimated_degradation") or (settings or {}).get("degradation") or {}
    if not record.get("scale") or record.get("psf_kernel") is None:
        raise InputError("The result has no recorded degradation (settings['degradation']); "
                         "choose a reference layer instead.")


def format_value(key: str, value) -> str:
    from ..core.fit_report import percent

    return percent(value) if key.endswith("_fit") else f"{value:.4g}"


class QualityWidget(ScrollingDock):
    """Evaluate a result against a reference, or against its own inputs (no reference)."""

    max_hint_height = 300

    evaluated = Signal(dict)  # emitted with the metrics (empty dict on failure)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.metrics: dict = {}
        self.worker = None
        root = self.body_layout
        form = self.form = QFormLayout()
        self.result_combo, self.reference_combo = QComboBox(), QComboBox()
        self.hr_combo, self.lr_combo = QComboBox(), QComboBox()
        self.hr_combo.setToolTip("HR image the result was fused from (no-reference consistency)")
        self.lr_combo.setToolTip("LR cube the result was fused from (no-reference consistency)")
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(1, 64)
        self.scale_spin.setValue(8)
        self.scale_spin.setToolTip("HR/LR ratio used by ERGAS")
        form.addRow("Result", self.result_combo)
        form.addRow("Reference", self.reference_combo)
        form.addRow("Scale (ERGAS)", self.scale_spin)
        form.addRow("HR input", self.hr_combo)
        form.addRow("LR input", self.lr_combo)
        root.addLayout(form)
        row = QHBoxLayout()
        self.evaluate_button, self.sam_button = QPushButton("Evaluate"), QPushButton("Add SAM map")
        row.addWidget(self.evaluate_button)
        row.addWidget(self.sam_button)
        root.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        root.addWidget(self.status)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["metric", "value"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        root.addWidget(self.table)
        from ._canvas import ThemedCanvas

        self.band_canvas = ThemedCanvas(napari_viewer, toolbar=False, height=230)
        self.band_ax = self.band_canvas.figure.add_subplot(111)
        self.band_canvas.setVisible(False)
        root.addWidget(self.band_canvas)
        root.addStretch(1)
        self.finish_layout()
        self.evaluate_button.setToolTip("Compute the metrics in the background (PSNR/SAM/ERGAS/SSIM/RMSE against "
                                        "the reference; without one, how well the result explains its inputs)")
        self.sam_button.setToolTip("Add a layer with the spectral angle (degrees) between result and reference "
                                   "at every pixel")
        self.result_combo.setToolTip("The cube to judge (the newest result by default)")
        self.reference_combo.setToolTip("Ground truth of the same shape, or none: then the no-reference "
                                        "consistency with the HR and LR inputs")
        compact_controls(self)
        self.evaluate_button.clicked.connect(self.evaluate)
        self.sam_button.clicked.connect(self.add_sam_map)
        self.result_combo.currentTextChanged.connect(self._on_result_changed)
        for combo in (self.reference_combo, self.hr_combo, self.lr_combo):
            combo.currentTextChanged.connect(self._update_mode)
        self.scale_spin.valueChanged.connect(self._update_mode)
        for ev in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            ev.connect(self.refresh_layers)
        self.refresh_layers()

    # ------------------------------------------------------------------ layers
    def refresh_layers(self, *_):
        """Follow the layer list: a result that just appeared becomes the one to judge, a reference
        that just appeared (a name with 'reference') the reference."""
        layers = list(self.viewer.layers)
        names = [lay.name for lay in layers if _layers.is_cube(lay)]
        lr_names = [lay.name for lay in layers if _layers.is_input_cube(lay)]
        hr_names = [lay.name for lay in layers if _layers.is_hr_candidate(lay)]

        def is_result(n):
            return _layers.is_result(self.viewer.layers[n])

        combos = ((self.result_combo, names, is_result),
                  (self.reference_combo, [NO_REFERENCE, *names], lambda n: "reference" in n),
                  (self.hr_combo, hr_names, lambda n: self.viewer.layers[n].rgb),
                  (self.lr_combo, lr_names, lambda n: not is_result(n) and "reference" not in n
                   and _layers.layer_wavelengths(self.viewer.layers[n]) is not None
                   and _layers.coarser_than(self.viewer.layers[n], self._current_hr())))
        known = getattr(self, "_known_names", set())
        for combo, items, prefer in combos:
            prev = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(items)
            new = [n for n in items if n not in known and n != NO_REFERENCE and prefer(n)]
            if new and (combo is not self.reference_combo or prev in ("", NO_REFERENCE)):
                pick = new[-1]
            elif prev in items:
                pick = prev
            else:
                pick = next((n for n in reversed(items) if n != NO_REFERENCE and prefer(n)), None)
            if pick:
                combo.setCurrentText(pick)
            combo.blockSignals(False)
        self._known_names = set(names) | set(hr_names)
        self._on_result_changed(self.result_combo.currentText())

    def _current_hr(self):
        name = self.hr_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_result_changed(self, name):
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            s = result_scale(layer)
            if s:
                self.scale_spin.setValue(s)
            inputs = (layer.metadata or {}).get("inputs") or {}
            for combo, key in ((self.hr_combo, "hr"), (self.lr_combo, "lr")):
                if inputs.get(key) and combo.findText(inputs[key]) >= 0:
                    combo.setCurrentText(inputs[key])
        self._update_mode()

    def no_reference(self) -> bool:
        return self.reference_combo.currentText() in ("", NO_REFERENCE)

    def selection(self) -> tuple:
        """What the figures depend on: the chosen layers (and the scale, for ERGAS)."""
        if self.no_reference():
            return (self.result_combo.currentText(), NO_REFERENCE, self.hr_combo.currentText(),
                    self.lr_combo.currentText())
        return (self.result_combo.currentText(), self.reference_combo.currentText(), self.scale_spin.value())

    def _update_mode(self, *_):
        nr = self.no_reference()
        for field, shown in ((self.hr_combo, nr), (self.lr_combo, nr), (self.scale_spin, not nr)):
            self._show_row(field, shown)
        self.sam_button.setEnabled(not nr)
        # the figures stay while they describe the chosen layers (another layer added or removed
        # changes nothing), and go when the choice changes
        current = self.metrics and self.selection() == getattr(self, "_evaluated", None)
        self._set_rows(CONSISTENCY if nr else METRICS, self.metrics if current else None)
        if not current:
            self.band_canvas.setVisible(False)

    def _show_row(self, field, shown: bool) -> None:
        """Only the rows the mode uses: the table and the plot stay above the fold."""
        field.setEnabled(shown)
        field.setVisible(shown)
        self.form.labelForField(field).setVisible(shown)

    def _set_rows(self, rows, values: dict | None = None):
        self.table.setRowCount(len(rows))
        for i, (key, label) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(label))
            v = (values or {}).get(key)
            self.table.setItem(i, 1, QTableWidgetItem("" if v is None else format_value(key, v)))
        self._fit_table()

    def _fit_table(self) -> None:
        """Every row visible: the table is as tall as its rows (it never hides 4 of 6)."""
        self.table.resizeColumnToContents(0)
        height = self.table.horizontalHeader().height() + sum(self.table.rowHeight(i)
                                                              for i in range(self.table.rowCount()))
        self.table.setFixedHeight(height + 2 * self.table.frameWidth() + 2)

    def showEvent(self, event):
        super().showEvent(event)
        self._fit_table()  # napari's style, applied once shown, makes the rows taller

    def _get(self, combo, what):
        from ..core.errors import InputError

        name = combo.currentText()
        if name not in self.viewer.layers:
            raise InputError(f"Choose {what}.")
        return self.viewer.layers[name]

    def _pair(self):
        from ..core.errors import InputError

        res = self._get(self.result_combo, "a result layer (a (bands, Y, X) cube)")
        if self.no_reference():
            raise InputError("Choose a reference layer (a (bands, Y, X) cube of the result's shape).")
        ref = self._get(self.reference_combo, "a reference layer (a (bands, Y, X) cube)")
        if res.name == ref.name:  # napari hands out a new wrapper per lookup: compare names
            raise InputError("Result and reference are the same layer; choose the ground truth as the reference.")
        return res, ref

    # ------------------------------------------------------------------ evaluate
    @property
    def running(self) -> bool:
        return self.worker is not None

    def evaluate(self, *_):
        """Start the metrics in a thread worker; returns it (None on bad input, with a notification).

        The table fills and ``evaluated(dict)`` is emitted when it is done.
        """
        from napari.qt.threading import create_worker

        from ..core.errors import InputError

        if self.running:
            return self.worker
        try:
            res = self._get(self.result_combo, "a result layer (a (bands, Y, X) cube)")
            if self.no_reference():
                hr = self._get(self.hr_combo, "the HR input layer the result was fused from")
                lr = self._get(self.lr_combo, "the LR input layer the result was fused from")
                settings = (res.metadata or {}).get("settings") or {}
                check_recorded(settings)
                rows = CONSISTENCY
                fn, args = compute_consistency, (_layers.whole_data(res, "the consistency"), _layers.hr_array(hr),
                                                 np.asarray(lr.data), settings)
            else:
                res, ref = self._pair()
                if res.data.shape != ref.data.shape:
                    raise InputError(f"Result {res.name!r} is {res.data.shape} but reference {ref.name!r} is "
                                     f"{ref.data.shape}; choose a reference of the same shape.")
                rows = METRICS
                fn, args = _reference_and_bands, (_layers.whole_data(res, "the metrics"),
                                                  _layers.whole_data(ref, "the metrics"), self.scale_spin.value())
                self._band_wavelengths = _layers.layer_wavelengths(ref)
                self._band_layer = ref
        except (InputError, ValueError) as exc:
            self._failed(exc)
            return None
        self.metrics = {}
        self._set_rows(rows)
        selection = self.selection()
        worker = create_worker(fn, *args, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda m: self._done(rows, m, selection))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self.worker = worker
        self.evaluate_button.setEnabled(False)
        self.status.setText("evaluating...")
        worker.start()
        return worker

    def _done(self, rows, metrics, selection=None):
        self.metrics = dict(metrics)
        self._evaluated = selection
        bands = {k: self.metrics.pop(k) for k in ("band_psnr", "band_relative_rmse") if k in self.metrics}
        self._set_rows(rows, self.metrics)
        self._plot_bands(bands)
        self.status.setText("done" if rows is METRICS else "no reference: the fit report (the result degraded again "
                            "by the degradation that made it, vs. its inputs)")
        self.evaluated.emit(self.metrics)

    def _plot_bands(self, bands: dict) -> None:
        """Per-band PSNR (and relative RMSE on a second axis) against wavelength."""
        self.band_canvas.setVisible(bool(bands))
        if not bands:
            return
        fig = self.band_canvas.figure
        fig.clear()
        ax = fig.add_subplot(111)
        self.band_ax = ax
        ref = getattr(self, "_band_layer", None)  # the reference's noisy bands (marked by the reader) are not drawn
        psnr = _layers.without_bad_bands(np.asarray(bands["band_psnr"]), ref)
        rmse = _layers.without_bad_bands(np.asarray(bands["band_relative_rmse"]), ref)
        wl = getattr(self, "_band_wavelengths", None)
        x = wl if wl is not None and len(wl) == len(psnr) else np.arange(len(psnr))
        colours = self.band_canvas.colours
        ax.plot(x, psnr, ".-", lw=1, ms=3, color="#ffd700", label="PSNR (dB)")
        ax.set_xlabel("wavelength (nm)" if x is wl else "band")
        ax.set_ylabel("PSNR (dB)")
        twin = ax.twinx()
        ax.right_ax = twin  # tests read both curves
        twin.plot(x, rmse, lw=1, color="#4ecdc4", label="relative RMSE (%)")
        twin.set_ylabel("rel. RMSE (%)")
        ax.set_title("per band", fontsize=8)
        lines = ax.get_lines() + twin.get_lines()
        fig.legend(lines, [ln.get_label() for ln in lines], fontsize=6, frameon=False, loc="outside lower center",
                   ncols=2)  # under the axes: never over the curves
        self.band_canvas.draw()
        for spine in twin.spines.values():
            spine.set_color(colours["text"])
        twin.tick_params(colors=colours["text"], labelsize=7)
        twin.yaxis.label.set_color(colours["text"])

    def _failed(self, exc):
        from napari.utils.notifications import show_error

        show_error(str(exc))
        self.status.setText(f"error: {exc}")
        self.metrics = {}
        self.evaluated.emit({})

    def _finished(self):
        self.worker = None
        self.evaluate_button.setEnabled(True)

    def add_sam_map(self):
        from napari.utils.notifications import show_error

        from ..core.errors import InputError
        from ..core.metrics import sam_map

        try:
            res, ref = self._pair()
            m = sam_map(_layers.read_whole(res, "a SAM map"), _layers.read_whole(ref, "a SAM map"))
        except (InputError, ValueError) as exc:
            show_error(str(exc))
            return None
        hs, ht = _layers.spatial_scale_translate(res)
        name = _layers.unique_name([lay.name for lay in self.viewer.layers], f"{res.name}_sam")
        return self.viewer.add_image(m, name=name, colormap="magma", scale=hs, translate=ht,
                                     metadata={"units": "degrees", "result": res.name, "reference": ref.name})
