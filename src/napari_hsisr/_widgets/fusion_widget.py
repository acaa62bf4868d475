"""The "Fusion" dock widget: Qt layout only; the wiring lives in ``_fusion_worker``."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
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

from ..core.errors import InputError
from . import _layers
from ._fusion_worker import (
    FusionController,
    FusionRequest,
    build_degradation,
    notify_error,
    preview_name,
    remove_preview,
    save_layer,
    show_preview,
)

FROM_FILE = "from file..."
ENCODINGS = ("auto", "srgb", "linear", "gamma:2.2", "gamma:1.8")
ESTIMATED = "estimated (last blind run)"
DEFAULT_SRF = "Nikon D700 (CAVE fusion papers)"
FORMATS = (("ImageJ TIFF", "imagej"), ("OME-TIFF", "ome"))
DTYPES = (("float32", "float32"), ("uint16 (0..1 -> 0..65535)", "uint16"))
TRUECOLOUR_SOURCES = ("CIE 1931", "selected SRF")
CHANNEL_COLORS = {"R": "#ff5c5c", "G": "#5cd65c", "B": "#5c8cff", "X": "#ff9f1c", "Y": "#e0e0e0", "Z": "#60a5fa"}


def truecolour_layer(viewer, layer, srf="CIE 1931"):
    """Add (or update) ``<name>_truecolour``: an RGB layer on the cube's Y, X grid."""
    from ._truecolour import true_colour

    rgb = true_colour(np.asarray(layer.data), _layers.layer_wavelengths(layer), srf)
    hs, ht = _layers.spatial_scale_translate(layer)
    name = f"{layer.name}_truecolour"
    meta = {"source": layer.name, "srf": str(srf)}
    if name in viewer.layers and getattr(viewer.layers[name], "rgb", False):
        out = viewer.layers[name]
        out.data, out.scale, out.translate, out.metadata = rgb, hs, ht, meta
        return out
    return viewer.add_image(rgb, name=name, rgb=True, scale=hs, translate=ht, metadata=meta,
                            contrast_limits=(0.0, 1.0))


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


class OptionsForm(QWidget):
    """Form generated from a method's ``Option`` tuple."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._fields: dict = {}

    def set_options(self, options) -> None:
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self._fields = {}
        for opt in options:
            d = opt.default
            if opt.choices:
                w = QComboBox()
                for c in opt.choices:
                    w.addItem(str(c), c)
                w.setCurrentIndex(list(opt.choices).index(d) if d in opt.choices else 0)
            elif isinstance(d, bool):
                w = QCheckBox()
                w.setChecked(d)
            elif isinstance(d, int):
                w = QSpinBox()
                w.setRange(int(opt.minimum if opt.minimum is not None else -10**9),
                           int(opt.maximum if opt.maximum is not None else 10**9))
                w.setValue(d)
            else:  # floats (often 1e-3 .. 1e-8) and strings: free text, checked at run time
                w = QLineEdit(f"{d:g}" if isinstance(d, float) else str(d))
            w.setToolTip(opt.help)
            w.setObjectName(f"opt_{opt.name}")
            label = QLabel(opt.name)
            label.setToolTip(opt.help)
            self._layout.addRow(label, w)
            self._fields[opt.name] = (opt, w)

    def values(self) -> dict:
        out = {}
        for name, (opt, w) in self._fields.items():
            if isinstance(w, QComboBox):
                out[name] = w.currentData()
            elif isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, QSpinBox):
                out[name] = w.value()
            else:  # free text (floats such as 1e-3, strings): the option parses and checks it
                out[name] = opt.parse(w.text())
        return out

    def widget(self, name):
        return self._fields[name][1]


class FusionWidget(QWidget):
    """Fuse an HR RGB/MSI layer with an LR hyperspectral layer into an HR cube."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = FusionController(napari_viewer)
        self._srf_file: str | None = None
        self._psf_file: str | None = None
        self._estimated: dict | None = None  # {"psf": (K, K), "srf": (C, k)} from the last blind run
        self._build()
        self._connect()
        self.refresh_layers()
        self._on_method_changed()
        self.update_previews()
        from ._wavelength_overlay import install

        install(napari_viewer)

    # ------------------------------------------------------------------ layout
    def _build(self):
        root = QVBoxLayout(self)

        data = QGroupBox("Data")
        f = QFormLayout(data)
        self.hr_combo, self.lr_combo = QComboBox(), QComboBox()
        self.hr_combo.setToolTip("High-resolution RGB/MSI image: an RGB layer (Y, X, k) or a (k, Y, X) stack")
        self.lr_combo.setToolTip("Low-resolution hyperspectral cube (bands, y, x)")
        f.addRow("HR image", self.hr_combo)
        f.addRow("LR cube", self.lr_combo)
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(2, 64)
        self.scale_spin.setValue(8)
        self.scale_spin.setToolTip("HR/LR pixel ratio, inferred from the shapes")
        f.addRow("Scale", self.scale_spin)
        self.wl_from_layer = QCheckBox("from LR layer metadata")
        self.wl_start, self.wl_step = QDoubleSpinBox(), QDoubleSpinBox()
        self.wl_start.setRange(0, 100000)
        self.wl_start.setValue(400)
        self.wl_step.setRange(0.01, 10000)
        self.wl_step.setValue(10)
        self.wl_start.setSuffix(" nm")
        self.wl_step.setSuffix(" nm")
        self.wl_stop_label = QLabel()
        wl_row = QHBoxLayout()
        wl_row.addWidget(QLabel("start"))
        wl_row.addWidget(self.wl_start)
        wl_row.addWidget(QLabel("step"))
        wl_row.addWidget(self.wl_step)
        f.addRow("Wavelengths", self.wl_from_layer)
        f.addRow("", wl_row)
        f.addRow("", self.wl_stop_label)
        root.addWidget(data)

        deg = QGroupBox("Degradation")
        g = QFormLayout(deg)
        self.psf_combo = QComboBox()
        self.psf_combo.addItems(["gaussian", "box", FROM_FILE])
        g.addRow("PSF", self.psf_combo)
        self.sigma_spin, self.sigma2_spin, self.angle_spin = QDoubleSpinBox(), QDoubleSpinBox(), QDoubleSpinBox()
        for w in (self.sigma_spin, self.sigma2_spin):
            w.setRange(0.0, 100.0)
            w.setDecimals(2)
            w.setSingleStep(0.25)
        self.sigma_spin.setValue(2.0)
        self.sigma2_spin.setSpecialValueText("isotropic")
        self.angle_spin.setRange(-180, 180)
        self.angle_spin.setSuffix(" °")
        self.size_spin = QSpinBox()
        self.size_spin.setRange(0, 257)
        self.size_spin.setSpecialValueText("= scale")
        self.size_spin.setToolTip("Kernel size K >= scale (0: K = scale)")
        g.addRow("sigma", self.sigma_spin)
        g.addRow("size", self.size_spin)
        g.addRow("sigma2", self.sigma2_spin)
        g.addRow("angle", self.angle_spin)
        self.srf_combo = QComboBox()
        from ..core.srf import list_presets

        self.srf_combo.addItems([*list_presets(), FROM_FILE])
        if DEFAULT_SRF in list_presets():
            self.srf_combo.setCurrentText(DEFAULT_SRF)
        self.srf_combo.setToolTip("Spectral response of the HR camera (one column per HR channel)")
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
        self.use_estimate_button.clicked.connect(self.use_estimated_degradation)
        g.addRow(self.use_estimate_button)
        from superqt import QCollapsible

        self.previews = QCollapsible("PSF, SRF and encoding previews")
        self.previews.setDuration(0)
        self.previews.layout().setContentsMargins(0, 0, 0, 0)
        self._build_previews()
        self.previews.addWidget(self.preview_canvas)
        g.addRow(self.previews)
        root.addWidget(deg)

        meth = QGroupBox("Method")
        m = QFormLayout(meth)
        self.method_combo = QComboBox()
        from ..core.methods import list_methods

        for info in list_methods():
            self.method_combo.addItem(info.name, info)
            self.method_combo.setItemData(self.method_combo.count() - 1, info.summary, Qt.ItemDataRole.ToolTipRole)
        if self.method_combo.findText("fast") >= 0:
            self.method_combo.setCurrentText("fast")
        m.addRow("Method", self.method_combo)
        self.method_summary = QLabel()
        self.method_summary.setWordWrap(True)
        m.addRow(self.method_summary)
        self.options_form = OptionsForm()
        m.addRow(self.options_form)
        self.device_combo = QComboBox()
        for label, value in available_devices():
            self.device_combo.addItem(label, value)
        m.addRow("Device", self.device_combo)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        m.addRow("Seed", self.seed_spin)
        self.replace_check = QCheckBox("replace existing result layer")
        m.addRow(self.replace_check)
        self.live_check = QCheckBox("live preview every")
        self.live_check.setToolTip("Show the method's intermediate estimates (when it reports them) in one "
                                   "layer '<LR>_preview', removed when the run ends or is stopped")
        self.live_every = QSpinBox()
        self.live_every.setRange(1, 100000)
        self.live_every.setValue(10)
        self.live_every.setSuffix(" steps")
        live_row = QHBoxLayout()
        live_row.addWidget(self.live_check)
        live_row.addWidget(self.live_every, 1)
        m.addRow(live_row)
        root.addWidget(meth)

        buttons = QHBoxLayout()
        self.run_button, self.stop_button = QPushButton("Run"), QPushButton("Stop")
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

        out = QGroupBox("Result")
        o = QFormLayout(out)
        self.result_combo = QComboBox()
        self.result_combo.setToolTip("Cube layer to save or render (the last result by default)")
        o.addRow("Layer", self.result_combo)
        self.format_combo, self.dtype_combo = QComboBox(), QComboBox()
        for combo, items in ((self.format_combo, FORMATS), (self.dtype_combo, DTYPES)):
            for label, value in items:
                combo.addItem(label, value)
        self.save_button = QPushButton("Save result...")
        self.save_button.setToolTip("TIFF with wavelengths and the full settings (reads back with File > Open)")
        save_row = QHBoxLayout()
        save_row.addWidget(self.format_combo)
        save_row.addWidget(self.dtype_combo)
        o.addRow("Save as", save_row)
        o.addRow("", self.save_button)
        self.colour_combo = QComboBox()
        self.colour_combo.addItems(TRUECOLOUR_SOURCES)
        self.colour_combo.setToolTip("CIE 1931 -> sRGB, or the SRF chosen above (3 channels)")
        self.colour_button = QPushButton("True colour")
        self.colour_button.setToolTip("Add '<layer>_truecolour', an RGB rendering aligned with the cube")
        colour_row = QHBoxLayout()
        colour_row.addWidget(self.colour_combo, 1)
        colour_row.addWidget(self.colour_button)
        o.addRow("Render", colour_row)
        root.addWidget(out)
        root.addStretch(1)

    def _build_previews(self):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        from .spectrum_widget import _napari_dark

        bg, fg, text = _napari_dark()
        self.preview_figure = Figure(figsize=(4, 1.7), facecolor=bg, layout="constrained")
        self.preview_canvas = FigureCanvasQTAgg(self.preview_figure)
        self.preview_canvas.setFixedHeight(160)
        gs = self.preview_figure.add_gridspec(1, 3, width_ratios=(1, 2.2, 1.3))
        self.psf_ax = self.preview_figure.add_subplot(gs[0], facecolor=bg)
        self.srf_ax = self.preview_figure.add_subplot(gs[1], facecolor=bg)
        self.tone_ax = self.preview_figure.add_subplot(gs[2], facecolor=bg)
        for ax in (self.psf_ax, self.srf_ax, self.tone_ax):
            for spine in ax.spines.values():
                spine.set_color(fg)
            ax.tick_params(colors=text, labelsize=7)
        self._preview_text = text
        self.preview_kernel: np.ndarray | None = None
        self.preview_srf: np.ndarray | None = None
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(40)
        self._preview_timer.timeout.connect(self.update_previews)

    def _connect(self):
        ev = self.viewer.layers.events
        ev.inserted.connect(self.refresh_layers)
        ev.removed.connect(self.refresh_layers)
        ev.reordered.connect(self.refresh_layers)
        self.hr_combo.currentIndexChanged.connect(self._on_pair_changed)
        self.lr_combo.currentIndexChanged.connect(self._on_pair_changed)
        self.scale_spin.valueChanged.connect(self._align)
        self.size_spin.valueChanged.connect(self._align)
        for w in (self.scale_spin, self.size_spin, self.sigma_spin, self.sigma2_spin, self.angle_spin,
                  self.wl_start, self.wl_step):
            w.valueChanged.connect(self.schedule_previews)
        for w in (self.psf_combo, self.srf_combo, self.lr_combo):
            w.currentTextChanged.connect(self.schedule_previews)
        self.wl_from_layer.toggled.connect(self.schedule_previews)
        self.save_button.clicked.connect(self._save_dialog)
        self.colour_button.clicked.connect(self.add_truecolour)
        self.psf_combo.currentTextChanged.connect(self._on_psf_changed)
        self.srf_combo.currentTextChanged.connect(self._on_srf_changed)
        self.encoding_combo.currentTextChanged.connect(self.schedule_previews)
        self.wl_from_layer.toggled.connect(self._update_wavelength_ui)
        self.wl_start.valueChanged.connect(self._update_wavelength_ui)
        self.wl_step.valueChanged.connect(self._update_wavelength_ui)
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        c = self.controller
        c.started.connect(self._on_started)
        c.progress.connect(self._on_progress)
        c.finished.connect(self._on_finished)
        c.failed.connect(lambda msg: self.progress_label.setText(f"error: {msg}"))
        c.stopped.connect(lambda: self.progress_label.setText("stopped: nothing added"))
        c.done.connect(self._on_done)

    # ------------------------------------------------------------------ layers
    def refresh_layers(self, event=None):
        hr_prev, lr_prev = self.hr_combo.currentText(), self.lr_combo.currentText()
        layers = list(self.viewer.layers)
        hr_names = [lay.name for lay in layers if _layers.is_hr_candidate(lay)]
        lr_names = [lay.name for lay in layers if _layers.is_cube(lay)]
        for combo, names, prev, prefer in (
            (self.hr_combo, hr_names, hr_prev, lambda n: self.viewer.layers[n].rgb),
            (self.lr_combo, lr_names, lr_prev, lambda n: _layers.layer_wavelengths(self.viewer.layers[n]) is not None
             and not n.endswith("_sr") and "reference" not in n),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if prev in names:
                combo.setCurrentText(prev)
            else:
                preferred = [n for n in names if prefer(n)]
                if preferred:
                    combo.setCurrentText(preferred[0])
            combo.blockSignals(False)
        prev = self.result_combo.currentText()
        before = {self.result_combo.itemText(i) for i in range(self.result_combo.count())}
        self.result_combo.clear()
        self.result_combo.addItems(lr_names)
        new_results = [n for n in lr_names if "_sr" in n and n not in before]
        results = [n for n in lr_names if "_sr" in n]
        if new_results:  # a result just appeared: it is the one to save / render
            self.result_combo.setCurrentText(new_results[-1])
        elif prev in lr_names:
            self.result_combo.setCurrentText(prev)
        elif results:
            self.result_combo.setCurrentText(results[-1])
        self._on_pair_changed()

    def _layer(self, combo):
        name = combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def hr_layer(self):
        return self._layer(self.hr_combo)

    @property
    def lr_layer(self):
        return self._layer(self.lr_combo)

    def _on_pair_changed(self, *_):
        hr, lr = self.hr_layer, self.lr_layer
        if hr is not None and lr is not None and hr is not lr:
            s = _layers.infer_scale(_layers.hr_spatial_shape(hr), lr.data.shape)
            if s is not None:
                self.scale_spin.blockSignals(True)
                self.scale_spin.setValue(s)
                self.scale_spin.blockSignals(False)
        has_wl = lr is not None and _layers.layer_wavelengths(lr) is not None
        self.wl_from_layer.setEnabled(has_wl)
        self.wl_from_layer.setChecked(has_wl)
        self._update_wavelength_ui()
        self._align()
        self.schedule_previews()

    def _align(self, *_):
        """Overlay the LR layer on the HR layer (scale/translate only) when the shapes agree."""
        hr, lr = self.hr_layer, self.lr_layer
        if hr is None or lr is None or hr is lr or not _layers.is_cube(lr):
            return
        s = self.scale_spin.value()
        Y, X = _layers.hr_spatial_shape(hr)
        if (Y, X) != (lr.data.shape[-2] * s, lr.data.shape[-1] * s):
            return
        try:
            deg = build_degradation(self.request(), with_srf=False)
        except Exception:  # noqa: BLE001 - incomplete form: align later
            return
        _layers.align_lr_layer(lr, hr, s, deg.lr_translate)

    def _update_wavelength_ui(self, *_):
        manual = not self.wl_from_layer.isChecked()
        self.wl_start.setEnabled(manual)
        self.wl_step.setEnabled(manual)
        lr = self.lr_layer
        n = lr.data.shape[0] if lr is not None and _layers.is_cube(lr) else 0
        wl = self.wavelengths()
        if wl is None:
            wl = _layers.layer_wavelengths(lr) if lr is not None else None
        if n and wl is not None and len(wl):
            self.wl_stop_label.setText(f"{n} bands: {wl[0]:g} .. {wl[-1]:g} nm")
        else:
            self.wl_stop_label.setText("")

    def wavelengths(self):
        """None when taken from the LR layer, else start + step * arange(bands)."""
        if self.wl_from_layer.isChecked():
            return None
        lr = self.lr_layer
        n = lr.data.shape[0] if lr is not None and _layers.is_cube(lr) else 0
        return self.wl_start.value() + self.wl_step.value() * np.arange(n)

    # ------------------------------------------------------------------ degradation previews
    def schedule_previews(self, *_):
        self._preview_timer.start()

    def update_previews(self):
        """Redraw the PSF kernel and the SRF curves on the current wavelengths (never raises)."""
        text = self._preview_text
        ax = self.psf_ax
        ax.clear()
        ax.set_xticks([])
        ax.set_yticks([])
        try:
            deg = build_degradation(self.request_for_preview(), with_srf=False)
            self.preview_kernel = np.asarray(deg.psf)
            ax.imshow(self.preview_kernel, cmap="magma", interpolation="nearest")
            ax.set_title(f"PSF {deg.kernel_size}x{deg.kernel_size}", fontsize=7, color=text)
        except Exception as exc:  # noqa: BLE001 - incomplete form: say why
            self.preview_kernel = None
            ax.set_title("PSF: n/a", fontsize=7, color=text)
            ax.text(0.5, 0.5, _short(exc), ha="center", va="center", wrap=True, fontsize=6, color=text,
                    transform=ax.transAxes)
        ax = self.srf_ax
        ax.clear()
        try:
            wl, m, channels = self.srf_on_wavelengths()
            self.preview_srf = m
            for j, name in enumerate(channels):
                ax.plot(wl, m[:, j], ".-", ms=2, lw=1, color=CHANNEL_COLORS.get(name), label=name)
            ax.set_title(f"SRF on {len(wl)} bands", fontsize=7, color=text)
            leg = ax.legend(fontsize=6, frameon=False, loc="upper right")
            for t in leg.get_texts():
                t.set_color(text)
        except Exception as exc:  # noqa: BLE001
            self.preview_srf = None
            ax.set_title("SRF: n/a", fontsize=7, color=text)
            ax.text(0.5, 0.5, _short(exc), ha="center", va="center", wrap=True, fontsize=6, color=text,
                    transform=ax.transAxes)
        try:
            self._draw_tone(text)
        except Exception as exc:  # noqa: BLE001 - a preview never raises
            self.tone_ax.clear()
            self.tone_ax.set_title(f"decode: n/a ({_short(exc, 30)})", fontsize=7, color=text)
        self.preview_canvas.draw_idle()

    def _draw_tone(self, text):
        """The HR image's decoding (display value -> linear light) per channel, with the estimated
        gains and offsets when the encoding comes from a blind run."""
        from ..core.physics import ToneCurve

        ax = self.tone_ax
        ax.clear()
        spec = self._encoding_spec()
        v = np.linspace(0, 1, 65)
        curve = spec if isinstance(spec, ToneCurve) else ToneCurve.parse("srgb" if spec == "auto" else spec)
        est = self._estimated if self.encoding_combo.currentText() == ESTIMATED and self._estimated else None
        gains = est.get("gain") if est else None
        k = len(curve.table) if curve.kind == "table" else (np.size(gains) if gains not in (None, "auto") else 3)
        gain = np.broadcast_to(np.asarray(est["gain"] if est and est.get("gain") not in (None, "auto") else 1.0,
                                          float), (k,))
        offset = np.broadcast_to(np.asarray(est["offset"] if est and est.get("offset") not in (None, "auto")
                                            else 0.0, float), (k,))
        lin = curve.decode(np.broadcast_to(v, (k, v.size)))
        names = ("R", "G", "B") if k == 3 else tuple(f"{j + 1}" for j in range(k))
        for j, name in enumerate(names):
            ax.plot(v, (lin[j] - offset[j]) / gain[j], lw=1, color=CHANNEL_COLORS.get(name))
        label = curve.name + (" (auto for 8/16-bit)" if spec == "auto" else "")
        ax.set_title(f"decode: {label}", fontsize=7, color=text)
        ax.set_xlabel("display", fontsize=6, color=text)

    def request_for_preview(self) -> FusionRequest:
        try:
            return self.request()
        except InputError:  # unparsable method option: irrelevant to the degradation
            req = FusionRequest(hr_layer=self.hr_layer, lr_layer=self.lr_layer, scale=self.scale_spin.value())
            req.psf = self._psf_spec()
            req.psf_sigma, req.psf_size = self.sigma_spin.value() or None, self.size_spin.value() or None
            req.psf_sigma2, req.psf_angle = self.sigma2_spin.value() or None, self.angle_spin.value()
            req.srf = self._srf_spec()
            req.wavelengths = self.wavelengths()
            return req

    def srf_on_wavelengths(self):
        """``(wavelengths, (C, k) normalised matrix, channel names)`` of the chosen SRF."""
        from ..core.srf import DEFAULT_31_BAND_WAVELENGTHS, resolve_srf
        from ._fusion_worker import request_wavelengths

        req = self.request_for_preview()
        if req.srf is None:
            raise InputError("no SRF file chosen")
        wl = request_wavelengths(req) if req.lr_layer is not None else None
        if wl is None:
            n = req.lr_layer.data.shape[0] if req.lr_layer is not None and _layers.is_cube(req.lr_layer) else 31
            if n != 31:
                raise InputError(f"{n} bands without wavelengths")
            wl = DEFAULT_31_BAND_WAVELENGTHS
        m, _, channels = resolve_srf(req.srf, wl, wl.size)
        return wl, m, channels

    # ------------------------------------------------------------------ result: save / true colour
    @property
    def result_layer(self):
        return self._layer(self.result_combo)

    def save_result(self, path, format: str | None = None, dtype: str | None = None):
        """Write the chosen result layer to ``path`` (format/dtype default to the combos)."""
        layer = self.result_layer
        if layer is None:
            raise InputError("No result layer to save: run a fusion or choose a cube layer.")
        return save_layer(layer, path, format or self.format_combo.currentData(),
                          dtype or self.dtype_combo.currentData())

    def _save_dialog(self):
        from napari.utils.notifications import show_info

        layer = self.result_layer
        if layer is None:
            notify_error("No result layer to save: run a fusion or choose a cube layer.")
            return
        ome = self.format_combo.currentData() == "ome"
        suggested = f"{layer.name}{'.ome.tif' if ome else '.tif'}"
        path, _ = QFileDialog.getSaveFileName(self, "Save result", suggested, "TIFF (*.tif *.tiff)")
        if not path:
            return
        try:
            out = self.save_result(path)
        except (InputError, OSError) as exc:
            notify_error(f"Could not save {path}: {exc}")
            return
        show_info(f"Saved {layer.name!r} to {out}")

    def truecolour_srf(self):
        if self.colour_combo.currentText() == "CIE 1931":
            return "CIE 1931"
        srf = self.srf_combo.currentText()
        return self._srf_file if srf == FROM_FILE else srf

    def add_truecolour(self, *_, layer=None):
        """Add ``<layer>_truecolour`` for the chosen layer; returns it (None with a notification)."""
        layer = layer if layer is not None else self.result_layer
        if layer is None:
            notify_error("Choose a cube layer to render in true colour.")
            return None
        try:
            return truecolour_layer(self.viewer, layer, self.truecolour_srf())
        except (InputError, ValueError, OSError) as exc:
            notify_error(str(exc))
            return None

    # ------------------------------------------------------------------ degradation / method
    def _psf_spec(self):
        text = self.psf_combo.currentText()
        if text == ESTIMATED and self._estimated is not None:
            return self._estimated["psf"]
        return self._psf_file if text == FROM_FILE else text

    def _encoding_spec(self):
        text = self.encoding_combo.currentText()
        if text == ESTIMATED and self._estimated is not None and self._estimated.get("tone") is not None:
            return self._estimated["tone"]
        return "auto" if text == ESTIMATED else text

    def _srf_spec(self):
        text = self.srf_combo.currentText()
        if text == ESTIMATED and self._estimated is not None:
            return self._estimated["srf"]
        return self._srf_file if text == FROM_FILE else text

    def remember_estimates(self, layer) -> bool:
        """Offer a blind result's estimated PSF and SRF as the ESTIMATED picker entries."""
        est = (layer.metadata.get("settings") or {}).get("estimated_degradation")
        if not est or est.get("psf_kernel") is None or est.get("srf_matrix") is None:
            return False
        from ..core.degradation import Degradation

        try:
            tone = Degradation.from_settings(est).tone()[0]
        except Exception:  # noqa: BLE001 - an older record without an encoding
            tone = None
        self._estimated = {"psf": np.asarray(est["psf_kernel"], dtype=float),
                           "srf": np.asarray(est["srf_matrix"], dtype=float), "tone": tone,
                           "gain": est.get("hr_gain"), "offset": est.get("hr_offset")}
        for combo in (self.psf_combo, self.srf_combo, self.encoding_combo):
            if combo.findText(ESTIMATED) < 0:
                combo.addItem(ESTIMATED)
        self.use_estimate_button.setVisible(True)
        return True

    def use_estimated_degradation(self):
        """Select the estimates in the PSF and SRF pickers (shown in the previews) and switch to
        ``fast``, so that the next run uses them as a known degradation."""
        if self._estimated is None:
            return
        self.psf_combo.setCurrentText(ESTIMATED)
        self.srf_combo.setCurrentText(ESTIMATED)
        self.encoding_combo.setCurrentText(ESTIMATED)
        self.method_combo.setCurrentText("fast")
        self.previews.expand()

    def _on_psf_changed(self, text):
        if text == FROM_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "PSF kernel file", "", "Kernels (*.npy *.csv *.txt *.tif *.tiff)")
            if not path:
                self.psf_combo.setCurrentIndex(0)
                return
            self._psf_file = path
            self.psf_combo.setToolTip(path)
        self._update_psf_enabled()
        self._align()

    def _update_psf_enabled(self):
        info = self.method_combo.currentData()
        needs = info is None or info.needs_psf
        text = self.psf_combo.currentText()
        self.psf_combo.setEnabled(needs)
        for w in (self.sigma_spin, self.sigma2_spin, self.angle_spin):
            w.setEnabled(needs and text == "gaussian")
        self.size_spin.setEnabled(needs and text not in (FROM_FILE, ESTIMATED))

    def _on_srf_changed(self, text):
        if text == FROM_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Spectral response file", "", "SRF tables (*.csv *.txt *.npy)")
            if not path:
                self.srf_combo.setCurrentText(DEFAULT_SRF)
                return
            self._srf_file = path
            self.srf_combo.setToolTip(path)

    def _on_method_changed(self, *_):
        info = self.method_combo.currentData()
        if info is None:
            return
        self.method_summary.setText(info.summary)
        self.options_form.set_options(info.options)
        self.srf_combo.setEnabled(info.needs_srf)
        self._update_psf_enabled()

    # ------------------------------------------------------------------ run
    def request(self) -> FusionRequest:
        """The form as a :class:`FusionRequest` (raises InputError on unparsable options)."""
        psf, srf = self._psf_spec(), self._srf_spec()
        return FusionRequest(
            hr_layer=self.hr_layer, lr_layer=self.lr_layer, scale=self.scale_spin.value(), psf=psf,
            psf_sigma=self.sigma_spin.value() or None, psf_size=self.size_spin.value() or None,
            psf_sigma2=self.sigma2_spin.value() or None, psf_angle=self.angle_spin.value(),
            srf=srf,
            wavelengths=self.wavelengths(), method=self.method_combo.currentText(),
            options=self.options_form.values(), seed=self.seed_spin.value(),
            device=self.device_combo.currentData() or "auto", replace=self.replace_check.isChecked(),
            hr_encoding=self._encoding_spec(),
        )

    def run(self) -> bool:
        try:
            req = self.request()
        except InputError as exc:
            notify_error(str(exc))
            self.progress_label.setText(f"error: {exc}")
            return False
        self._align()
        self._run_request = req
        self._last_preview_step = None
        return self.controller.start(req)

    def stop(self):
        self.progress_label.setText("stopping...")
        self.controller.stop()
        self._remove_preview()

    def _remove_preview(self):
        req = getattr(self, "_run_request", None)
        if req is not None and req.lr_layer is not None:
            remove_preview(self.viewer, preview_name(req))

    def _maybe_show_preview(self, p):
        req = getattr(self, "_run_request", None)
        if (p.preview is None or req is None or not self.live_check.isChecked()
                or self.controller._stop_requested or not self.controller.running):
            return
        last = self._last_preview_step
        if last is not None and p.step - last < self.live_every.value() and p.step < p.total:
            return
        self._last_preview_step = p.step
        try:
            show_preview(self.viewer, req, p.preview)
        except Exception as exc:  # noqa: BLE001 - a preview must never break the run
            self.progress_label.setText(f"preview failed: {exc}")

    def _on_finished(self, layer):
        from ._fusion_worker import fit_summary

        settings = layer.metadata.get("settings") or {}
        fit = fit_summary(settings)
        moved = layer.metadata.get("lr_layer_moved")
        self.progress_label.setText(f"done: added {layer.name!r}" + (f"; {fit}" if fit else "")
                                    + (f"; moved {moved['layer']!r} to the estimated alignment" if moved else ""))
        warnings = settings.get("warnings") or []
        if warnings:
            from napari.utils.notifications import show_warning

            for text in warnings:
                show_warning(text)
            self.progress_label.setText(f"done: added {layer.name!r} (warning: {warnings[0]})")
        if self.remember_estimates(layer):
            self.progress_label.setText(self.progress_label.text() + "; estimates available")
            self.schedule_previews()
        if layer.name in [self.result_combo.itemText(i) for i in range(self.result_combo.count())]:
            self.result_combo.setCurrentText(layer.name)

    def _on_started(self):
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the first report
        self.progress_label.setText("starting...")

    def _on_progress(self, p):
        total = max(int(p.total), 1)
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(int(p.step), total))
        text = f"step {p.step}/{p.total}"
        if p.loss is not None:
            text += f"  loss {p.loss:.4g}"
        if p.message:
            text += f"  {p.message}"
        self.progress_label.setText(text)
        self._maybe_show_preview(p)

    def _on_done(self):
        self._remove_preview()
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)


def _short(exc, n: int = 60) -> str:
    msg = str(exc)
    return msg if len(msg) <= n else msg[: n - 3] + "..."
