"""The Fusion dock's views: small group boxes that own their controls and nothing else.

``DataView`` (layers, scale, wavelengths), ``DegradationView`` (PSF, SRF, encoding, previews),
``MethodView`` (method, its options in a collapsed section, device, seed), ``ResultView`` (save,
true colour, run again) and ``RunBar`` (Run/Stop, progress; pinned below the scroll area so it is
always on screen). The dock (:mod:`.fusion_widget`) wires them to the state and the controller.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._compact import breakable
from ._fusion_state import FAILED, READY, RUNNING, STOPPED, STOPPING, FusionState
from ._options_form import OptionsForm

FROM_FILE = "from file..."
ESTIMATED = "estimated (last blind run)"
FROM_PAIR = "estimate from the pair"  # the default: a camera's response is rarely a preset's
DEFAULT_SRF = FROM_PAIR
ENCODINGS = ("auto", "srgb", "linear", "gamma:2.2", "gamma:1.8")
FORMATS = (("ImageJ TIFF", "imagej"), ("OME-TIFF", "ome"))
DTYPES = (("float32", "float32"), ("uint16 (scaled onto 0..65535)", "uint16"))
TRUECOLOUR_SOURCES = ("CIE 1931", "selected SRF")
FALSE_COLOUR = "false colour (nm)"
DEFAULT_FALSE_COLOUR = "860, 650, 550"
CHANNEL_COLORS = {"R": "#ff5c5c", "G": "#5cd65c", "B": "#5c8cff", "X": "#ff9f1c", "Y": "#e0e0e0", "Z": "#60a5fa"}


def available_devices() -> list[tuple[str, str]]:
    """(label, value) pairs for what torch reports on this machine."""
    out = [("auto", "auto"), ("cpu", "cpu")]
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                out.append((f"cuda:{i} ({torch.cuda.get_device_name(i)})", f"cuda:{i}"))
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append(("mps", "mps"))
    except Exception:  # noqa: BLE001 - no torch: CPU only
        pass
    return out


def _collapsible(title: str, widget: QWidget, tooltip: str, expanded: bool = False):
    from superqt import QCollapsible

    box = QCollapsible(title)
    box.setDuration(0)
    for button in box.findChildren(QPushButton):  # the header's toggle
        button.setToolTip(tooltip)
    box.layout().setContentsMargins(0, 0, 0, 0)
    box.addWidget(widget)
    if expanded:
        box.expand(animate=False)
    return box


class DataView(QGroupBox):
    """HR and LR layers, the scale and the wavelengths."""

    def __init__(self, parent=None):
        super().__init__("Data", parent)
        f = QFormLayout(self)
        self.hr_combo, self.lr_combo = QComboBox(), QComboBox()
        self.hr_combo.setToolTip("High-resolution RGB/MSI image: an RGB layer (Y, X, k) or a (k, Y, X) stack")
        self.lr_combo.setToolTip("Low-resolution hyperspectral cube (bands, y, x)")
        f.addRow("HR image", self.hr_combo)
        f.addRow("LR cube", self.lr_combo)
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(2, 1024)
        self.scale_spin.setValue(8)
        self.scale_spin.setToolTip("HR/LR pixel ratio, inferred from the layers' shapes")
        f.addRow("Scale", self.scale_spin)
        self.pair_note = QLabel("")
        self.pair_note.setWordWrap(True)
        self.pair_note.setVisible(False)
        f.addRow(self.pair_note)
        self.wl_from_layer = QCheckBox("from LR layer metadata")
        self.wl_from_layer.setToolTip("Use the band centres stored with the LR layer (metadata['wavelengths'])")
        self.wl_start, self.wl_step = QDoubleSpinBox(), QDoubleSpinBox()
        self.wl_start.setRange(0, 100000)
        self.wl_start.setValue(400)
        self.wl_step.setRange(0.01, 10000)
        self.wl_step.setValue(10)
        self.wl_start.setSuffix(" nm")
        self.wl_step.setSuffix(" nm")
        self.wl_start.setToolTip("Centre of the first band")
        self.wl_step.setToolTip("Spacing of the band centres")
        self.wl_stop_label = QLabel()
        wl_row = QHBoxLayout()
        wl_row.addWidget(QLabel("start"))
        wl_row.addWidget(self.wl_start)
        wl_row.addWidget(QLabel("step"))
        wl_row.addWidget(self.wl_step)
        f.addRow("Wavelengths", self.wl_from_layer)
        f.addRow("", wl_row)
        f.addRow("", self.wl_stop_label)
        self.lr_input = LrInputView()
        f.addRow(_collapsible("LR values and bands", self.lr_input,
                              "hsisr fuse's --value-scale, --band-table and --drop-bands for the LR layer"))

    def set_note(self, text: str) -> None:
        self.pair_note.setText(text)
        self.pair_note.setVisible(bool(text))


class LrInputView(QWidget):
    """The command line's real-file controls for the LR layer, applied to a copy when Run starts
    (:func:`..core.io.apply_cube_options`): value scale, band table, bands to drop."""

    def __init__(self, parent=None):
        super().__init__(parent)
        f = QFormLayout(self)
        f.setContentsMargins(0, 0, 0, 0)
        self.value_scale = QLineEdit()
        self.value_scale.setPlaceholderText("as the layer is")
        self.value_scale.setToolTip("Multiply the LR values by this, e.g. 1e-4 for reflectance x 10000 (the reader "
                                    "already applies a file's documented scale, NEON's included)")
        self.band_table = QLineEdit()
        self.band_table.setPlaceholderText("the layer's wavelengths")
        self.band_table.setToolTip("A CSV band table giving the wavelengths and noisy-band flags (the reader takes "
                                   "the one beside the file by itself)")
        self.drop_bands = QLineEdit()
        self.drop_bands.setPlaceholderText("none; auto = the noisy bands")
        self.drop_bands.setToolTip("'auto' (the noisy bands the band table or the reader marked) or 1-based band "
                                   "numbers, e.g. 193-210,284-315")
        f.addRow("Value scale", self.value_scale)
        f.addRow("Band table", self.band_table)
        f.addRow("Drop bands", self.drop_bands)

    def values(self) -> dict:
        """The fields as :class:`~._fusion_worker.FusionRequest` takes them (text, '' = unset)."""
        return {"lr_value_scale": self.value_scale.text().strip(), "band_table": self.band_table.text().strip(),
                "drop_bands": self.drop_bands.text().strip()}


class DegradationView(QGroupBox):
    """PSF, SRF and the HR image's encoding, with previews (collapsed) of what the fusion will use."""

    def __init__(self, viewer, parent=None):
        super().__init__("Degradation", parent)
        g = QFormLayout(self)
        self.psf_combo = QComboBox()
        self.psf_combo.addItems(["gaussian", "box", FROM_FILE])
        self.psf_combo.setToolTip("Blur of the LR sensor: a Gaussian, a box (block average) or a kernel file")
        g.addRow("PSF", self.psf_combo)
        self.sigma_spin, self.sigma2_spin, self.angle_spin = QDoubleSpinBox(), QDoubleSpinBox(), QDoubleSpinBox()
        for w in (self.sigma_spin, self.sigma2_spin):
            w.setRange(0.0, 100.0)
            w.setDecimals(2)
            w.setSingleStep(0.25)
        self.sigma_spin.setValue(2.0)
        self.sigma_spin.setToolTip("Gaussian sigma (major axis) in HR pixels; scale/4 (as the CLI) until you edit it")
        self.sigma2_spin.setSpecialValueText("isotropic")
        self.sigma2_spin.setToolTip("Second sigma (minor axis) for an elongated Gaussian; 'isotropic' = sigma")
        self.angle_spin.setRange(-180, 180)
        self.angle_spin.setSuffix(" °")
        self.angle_spin.setToolTip("Rotation of the major axis, degrees counter-clockwise")
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 257)
        self.size_spin.setSpecialValueText("= scale")
        self.size_spin.setToolTip("Kernel size K >= scale (0: K = scale)")
        psf_row = QHBoxLayout()
        for label, w in (("sigma", self.sigma_spin), ("size", self.size_spin)):
            psf_row.addWidget(QLabel(label))
            psf_row.addWidget(w, 1)
        g.addRow("", psf_row)
        shape_row = QHBoxLayout()
        for label, w in (("sigma2", self.sigma2_spin), ("angle", self.angle_spin)):
            shape_row.addWidget(QLabel(label))
            shape_row.addWidget(w, 1)
        g.addRow("", shape_row)
        self.srf_combo = QComboBox()
        from ..core.srf import list_presets

        self.srf_combo.addItems([FROM_PAIR, *list_presets(), FROM_FILE])
        self.srf_combo.setCurrentText(DEFAULT_SRF)
        self.srf_combo.setToolTip("Spectral response of the HR camera (one column per HR channel); 'estimate from "
                                  "the pair' fits it, the encoding and the gains to the two images")
        g.addRow("SRF", self.srf_combo)
        self.encoding_combo = QComboBox()
        self.encoding_combo.addItems(list(ENCODINGS))
        self.encoding_combo.setToolTip("How the HR image encodes light. auto: 8/16-bit images are display-encoded "
                                       "(sRGB, as cameras write them), float images linear. blind estimates it.")
        g.addRow("HR encoding", self.encoding_combo)
        self.use_estimate_button = QPushButton("Use estimated PSF, SRF and encoding")
        self.use_estimate_button.setToolTip("Reuse the last blind run's estimates (the PSF holds the estimated shift) "
                                            "as a known degradation")
        self.use_estimate_button.setVisible(False)
        g.addRow(self.use_estimate_button)
        from ._canvas import ThemedCanvas

        self.preview_canvas = ThemedCanvas(viewer, toolbar=False, height=150)
        gs = self.preview_canvas.figure.add_gridspec(1, 3, width_ratios=(1, 2.2, 1.3))
        self.psf_ax = self.preview_canvas.figure.add_subplot(gs[0])
        self.srf_ax = self.preview_canvas.figure.add_subplot(gs[1])
        self.tone_ax = self.preview_canvas.figure.add_subplot(gs[2])
        self.previews = _collapsible("PSF, SRF and encoding previews", self.preview_canvas,
                                     "Show the PSF, the spectral response and the HR decoding as they are set")
        g.addRow(self.previews)

    def offer_estimates(self) -> None:
        for combo in (self.psf_combo, self.srf_combo, self.encoding_combo):
            if combo.findText(ESTIMATED) < 0:
                combo.addItem(ESTIMATED)
        self.use_estimate_button.setVisible(True)


class MethodView(QGroupBox):
    """The method, its options (collapsed: the defaults are chosen from the data), device, seed."""

    def __init__(self, parent=None):
        super().__init__("Method", parent)
        m = QFormLayout(self)
        self.method_combo = QComboBox()
        from qtpy.QtCore import Qt

        from ..core.methods import list_methods

        for info in list_methods():
            self.method_combo.addItem(info.name, info)
            self.method_combo.setItemData(self.method_combo.count() - 1, info.summary, Qt.ItemDataRole.ToolTipRole)
        if self.method_combo.findText("fast") >= 0:
            self.method_combo.setCurrentText("fast")
        self.method_combo.setToolTip("Fusion method; hover an entry for what it does")
        m.addRow("Method", self.method_combo)
        self.method_summary = QLabel()
        self.method_summary.setWordWrap(True)
        m.addRow(self.method_summary)
        self.options_form = OptionsForm()
        self.options = _collapsible("Options", self.options_form,
                                    "The method's options; the defaults are chosen from the data (hover each)")
        m.addRow(self.options)
        self.device_combo = QComboBox()
        for label, value in available_devices():
            self.device_combo.addItem(label, value)
        self.device_combo.setToolTip("Where torch computes: auto picks a GPU when torch sees one")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Random seed: the same seed and inputs give the same result")
        row = QHBoxLayout()
        row.addWidget(self.device_combo, 2)
        row.addWidget(QLabel("seed"))
        row.addWidget(self.seed_spin, 1)
        m.addRow("Device", row)
        self.replace_check = QCheckBox("replace the previous result of this method")
        self.replace_check.setToolTip("Reuse the result layer of the same LR cube and method instead of adding one")
        m.addRow(self.replace_check)
        self.live_check = QCheckBox("live preview")
        self.live_check.setToolTip("Show the method's intermediate estimates (every few seconds, when it reports "
                                   "them) in one layer '<LR>_preview', removed when the run ends or is stopped")
        m.addRow(self.live_check)


class ResultView(QGroupBox):
    """Save, render in true colour, run again with a result's recorded settings."""

    def __init__(self, parent=None):
        super().__init__("Result", parent)
        o = QFormLayout(self)
        self.result_combo = QComboBox()
        self.result_combo.setToolTip("Cube layer to save, render or re-run (the last result by default)")
        o.addRow("Layer", self.result_combo)
        self.format_combo, self.dtype_combo = QComboBox(), QComboBox()
        for combo, items in ((self.format_combo, FORMATS), (self.dtype_combo, DTYPES)):
            for label, value in items:
                combo.addItem(label, value)
        self.format_combo.setToolTip("ImageJ hyperstack or OME-TIFF; both keep wavelengths and settings")
        self.dtype_combo.setToolTip("float32, or uint16 (values mapped onto 0..65535 without clipping; the scale "
                                    "is stored and reading back undoes it)")
        self.save_button = QPushButton("Save result...")
        self.save_button.setToolTip("TIFF with wavelengths and the full settings (reads back with File > Open)")
        save_row = QHBoxLayout()
        save_row.addWidget(self.format_combo)
        save_row.addWidget(self.dtype_combo)
        o.addRow("Save as", save_row)
        o.addRow("", self.save_button)
        self.colour_combo = QComboBox()
        self.colour_combo.addItems(TRUECOLOUR_SOURCES + (FALSE_COLOUR,))
        self.colour_combo.setToolTip("True colour: CIE 1931 -> sRGB, or the SRF chosen above (3 channels); "
                                     "false colour: the bands nearest to three wavelengths as R, G, B")
        self.false_colour_edit = QLineEdit(DEFAULT_FALSE_COLOUR)
        self.false_colour_edit.setToolTip("R, G, B wavelengths in nm for the false-colour composite (any the cube "
                                          "covers, NIR included: 860, 650, 550 shows vegetation red)")
        self.false_colour_edit.setVisible(False)
        self.colour_combo.currentTextChanged.connect(
            lambda text: self.false_colour_edit.setVisible(text == FALSE_COLOUR))
        self.colour_button = QPushButton("Render")
        self.colour_button.setToolTip("Add '<layer>_truecolour' or '<layer>_falsecolour', an RGB layer aligned "
                                      "with the cube")
        colour_row = QHBoxLayout()
        colour_row.addWidget(self.colour_combo, 1)
        colour_row.addWidget(self.false_colour_edit, 1)
        colour_row.addWidget(self.colour_button)
        o.addRow("Colour", colour_row)
        self.rerun_button = QPushButton("Set the form to this result's settings")
        self.rerun_button.setToolTip("Method, options, seed and degradation as recorded in the chosen result; then "
                                     "Run to reproduce or vary it")
        o.addRow(self.rerun_button)


class RunBar(QWidget):
    """Run/Stop and the progress of the current run; follows the state."""

    def __init__(self, state: FusionState, parent=None):
        super().__init__(parent)
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 4, 0, 0)
        buttons = QHBoxLayout()
        self.run_button, self.stop_button = QPushButton("Run"), QPushButton("Stop")
        self.run_button.setToolTip("Fuse the chosen pair with the settings above (in the background)")
        self.stop_button.setToolTip("Stop the run at its next step; nothing is added")
        self.stop_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        root.addLayout(buttons)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_label = QLabel("ready")
        self.progress_label.setWordWrap(True)
        root.addWidget(self.progress_bar)
        root.addWidget(self.progress_label)
        self.state = state
        state.events.status.connect(self._on_status)
        state.events.step.connect(self._on_step)
        state.events.message.connect(lambda text: self.progress_label.setText(breakable(str(text))))

    def _on_status(self, status):
        running = status in (RUNNING, STOPPING)
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(status == RUNNING)
        if status == RUNNING and self.state.total == 0:
            self.progress_bar.setRange(0, 0)  # busy until the first report
        if status in (READY, FAILED, STOPPED):
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)

    def _on_step(self, step):
        if self.state.running and not self.state.total:  # the setup stage: no count yet, the bar stays busy
            self.progress_bar.setRange(0, 0)
            return
        total = max(int(self.state.total), 1)
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(int(step), total))


__all__ = ["DataView", "DegradationView", "MethodView", "ResultView", "RunBar", "available_devices"]
