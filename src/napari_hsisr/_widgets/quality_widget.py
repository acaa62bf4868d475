"""The "Quality" dock: PSNR / SAM / ERGAS / SSIM of a result against a reference, SAM map layer."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QComboBox, QFormLayout, QHBoxLayout, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout,
    QWidget,
)

from . import _layers

METRICS = (("psnr", "PSNR (dB)"), ("psnr_bandwise", "PSNR band-wise (dB)"), ("sam", "SAM (deg)"),
           ("ergas", "ERGAS"), ("ssim", "SSIM"), ("rmse", "RMSE (0-255)"))


def result_scale(layer) -> int | None:
    try:
        return int(layer.metadata["settings"]["degradation"]["scale"])
    except (KeyError, TypeError, ValueError):
        return None


class QualityWidget(QWidget):
    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.metrics: dict = {}
        root = QVBoxLayout(self)
        form = QFormLayout()
        self.result_combo, self.reference_combo = QComboBox(), QComboBox()
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(1, 64)
        self.scale_spin.setValue(8)
        self.scale_spin.setToolTip("HR/LR ratio used by ERGAS")
        form.addRow("Result", self.result_combo)
        form.addRow("Reference", self.reference_combo)
        form.addRow("Scale (ERGAS)", self.scale_spin)
        root.addLayout(form)
        row = QHBoxLayout()
        self.evaluate_button, self.sam_button = QPushButton("Evaluate"), QPushButton("Add SAM map")
        row.addWidget(self.evaluate_button)
        row.addWidget(self.sam_button)
        root.addLayout(row)
        self.table = QTableWidget(len(METRICS), 2)
        self.table.setHorizontalHeaderLabels(["metric", "value"])
        self.table.verticalHeader().setVisible(False)
        for i, (_, label) in enumerate(METRICS):
            self.table.setItem(i, 0, QTableWidgetItem(label))
        self.table.horizontalHeader().setStretchLastSection(True)
        root.addWidget(self.table)
        self.evaluate_button.clicked.connect(self.evaluate)
        self.sam_button.clicked.connect(self.add_sam_map)
        self.result_combo.currentTextChanged.connect(self._on_result_changed)
        for ev in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            ev.connect(self.refresh_layers)
        self.refresh_layers()

    def refresh_layers(self, *_):
        names = [lay.name for lay in self.viewer.layers if _layers.is_cube(lay)]
        for combo, prefer in ((self.result_combo, "_sr"), (self.reference_combo, "reference")):
            prev = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            pick = prev if prev in names else next((n for n in reversed(names) if prefer in n), None)
            if pick:
                combo.setCurrentText(pick)
            combo.blockSignals(False)
        self._on_result_changed(self.result_combo.currentText())

    def _on_result_changed(self, name):
        if name in self.viewer.layers:
            s = result_scale(self.viewer.layers[name])
            if s:
                self.scale_spin.setValue(s)

    def _pair(self):
        from ..core.errors import InputError

        r, f = self.result_combo.currentText(), self.reference_combo.currentText()
        if r not in self.viewer.layers or f not in self.viewer.layers:
            raise InputError("Choose a result layer and a reference layer (both (bands, Y, X) cubes).")
        if r == f:
            raise InputError("Result and reference are the same layer.")
        return self.viewer.layers[r], self.viewer.layers[f]

    def evaluate(self) -> dict:
        from napari.utils.notifications import show_error

        from ..core.errors import InputError
        from ..core.metrics import evaluate

        try:
            res, ref = self._pair()
            s = self.scale_spin.value()
            self.metrics = evaluate(np.asarray(res.data), np.asarray(ref.data), scale=s if s > 1 else None)
        except (InputError, ValueError) as exc:
            show_error(str(exc))
            return {}
        for i, (key, _) in enumerate(METRICS):
            v = self.metrics.get(key)
            self.table.setItem(i, 1, QTableWidgetItem("" if v is None else f"{v:.4g}"))
        return self.metrics

    def add_sam_map(self):
        from napari.utils.notifications import show_error

        from ..core.errors import InputError
        from ..core.metrics import sam_map

        try:
            res, ref = self._pair()
            m = sam_map(np.asarray(res.data), np.asarray(ref.data))
        except (InputError, ValueError) as exc:
            show_error(str(exc))
            return None
        hs, ht = _layers.spatial_scale_translate(res)
        name = _layers.unique_name([lay.name for lay in self.viewer.layers], f"{res.name}_sam")
        return self.viewer.add_image(m, name=name, colormap="magma", scale=hs, translate=ht,
                                     metadata={"units": "degrees", "result": res.name, "reference": ref.name})
