"""The "Fusion" dock: the views of ``_fusion_views`` in a scroll area, the run bar pinned below,
wired to an evented :class:`~._fusion_state.FusionState` and the Qt-free controller of
``_fusion_worker``.

The dock fits a laptop screen: everything but the run bar scrolls, the method's options and the
previews start collapsed (their defaults are chosen from the data). Nothing moves in the viewer
until Run: then the LR layer is aligned over the HR layer (and, after a blind run, moved to the
estimated registration), with its previous position kept in the result's metadata.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QVBoxLayout, QWidget

from ..core.errors import InputError
from . import _geo_layers, _layers
from ._compact import compact_controls
from ._fusion_state import DONE, FAILED, READY, RUNNING, STOPPED, STOPPING, FusionState
from ._fusion_views import (  # noqa: F401 - re-exported names used by tests and other docks
    CHANNEL_COLORS,
    DEFAULT_SRF,
    ENCODINGS,
    ESTIMATED,
    FALSE_COLOUR,
    FROM_FILE,
    FROM_PAIR,
    DataView,
    DegradationView,
    MethodView,
    ResultView,
    RunBar,
    available_devices,
)
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
from ._scrolling import JoinsPluginTabs, vertical_scroll
from ._truecolour import parse_wavelength_triplet


def truecolour_layer(viewer, layer, srf="CIE 1931"):
    """Add (or update) ``<name>_truecolour``: an RGB layer on the cube's Y, X grid (a multiscale
    cube's finest level that fits in memory, see :func:`_colour_level`)."""
    from ._truecolour import true_colour

    cube, level = _colour_level(layer)
    rgb = true_colour(cube, _layers.layer_wavelengths(layer), srf)
    meta = {"source": layer.name, "srf": str(srf), "level": level}
    return _colour_layer(viewer, layer, rgb, f"{layer.name}_truecolour", meta)


def falsecolour_layer(viewer, layer, rgb_nm):
    """Add (or update) ``<name>_falsecolour``: the bands nearest to three wavelengths as R, G, B."""
    from ._truecolour import false_colour

    cube, level = _colour_level(layer)
    rgb, used = false_colour(cube, _layers.layer_wavelengths(layer), rgb_nm)
    meta = {"source": layer.name, "wavelengths_rgb": used, "level": level}
    return _colour_layer(viewer, layer, rgb, f"{layer.name}_falsecolour", meta)


def _colour_level(layer) -> tuple[np.ndarray, int]:
    """The cube to render and its pyramid level: level 0 of an in-memory layer; for a multiscale
    one the finest level under ``_layers.WHOLE_READ_MAX`` (an overview of a result too large to
    render whole; its 2x2-mean levels are what napari shows when zoomed out anyway)."""
    level = _layers.fitting_level(layer)
    return np.asarray(layer.data[level] if layer.multiscale else layer.data), level


def _colour_layer(viewer, layer, rgb, name, meta):
    hs, ht = _layers.spatial_scale_translate(layer)
    f = np.asarray(_layers.cube_data(layer).shape[-2:], float) / rgb.shape[:2]  # level-0 pixels per pixel
    hs, ht = hs * f, ht + hs * (f - 1) / 2  # a 2x2-mean pixel's centre is its block's (as previews)
    if name in viewer.layers and getattr(viewer.layers[name], "rgb", False):
        out = viewer.layers[name]
        out.data, out.scale, out.translate, out.metadata = rgb, hs, ht, meta
        return out
    out = viewer.add_image(rgb, name=name, rgb=True, scale=hs, translate=ht, metadata=meta,
                           contrast_limits=(0.0, 1.0))
    _below_annotations(viewer, out)
    return out


def _best_pick(names, prev, preferences, known) -> str | None:
    """The layer a combo shows: the first that meets the strongest preference any layer meets;
    the previous choice stays unless a layer that just appeared meets a stronger one."""
    rank = {n: next((i for i, prefer in enumerate(preferences) if prefer(n)), len(preferences)) for n in names}
    best = min(rank.values(), default=len(preferences))
    if prev in names and (rank[prev] <= best or not any(rank[n] == best for n in names if n not in known)):
        return prev
    return next((n for n in names if rank[n] == best), None)


def _below_annotations(viewer, layer) -> None:
    """Move ``layer`` under the lowest Points or Shapes layer: an opaque render added on top would
    hide the probes and regions drawn on the cube."""
    from napari.layers import Points, Shapes

    marks = [i for i, lay in enumerate(viewer.layers) if isinstance(lay, (Points, Shapes))]
    index = viewer.layers.index(layer)
    if marks and marks[0] < index:
        viewer.layers.move(index, marks[0])


class FusionWidget(JoinsPluginTabs, QWidget):
    """Fuse an HR RGB/MSI layer with an LR hyperspectral layer into an HR cube."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = FusionState()
        self.controller = FusionController(napari_viewer)
        self._srf_file: str | None = None
        self._psf_file: str | None = None
        self._run_request = None
        self._preview_note = ""  # why a run shows no live preview, when it shows none
        self._previews_shown = 0
        self._sigma_edited = False  # until the user sets sigma, it follows the scale (s/4, as the CLI)
        self._build()
        self._connect()
        self.refresh_layers()
        self._on_method_changed()
        self.update_previews()
        from ._wavelength_overlay import install

        install(napari_viewer)

    # ------------------------------------------------------------------ layout
    def _build(self):
        self.data_view = DataView()
        self.degradation_view = DegradationView(self.viewer)
        self.method_view = MethodView()
        self.result_view = ResultView()
        self.run_bar = RunBar(self.state)
        inner = QWidget()
        column = QVBoxLayout(inner)
        column.setContentsMargins(0, 0, 4, 0)
        for view in (self.data_view, self.degradation_view, self.method_view, self.result_view):
            column.addWidget(view)
        column.addStretch(1)
        compact_controls(inner)  # before the scroll area takes the content's minimum width
        compact_controls(self.run_bar)
        scroll = vertical_scroll(inner)
        self.scroll = scroll
        root = QVBoxLayout(self)
        root.setContentsMargins(4, 4, 4, 4)
        root.addWidget(scroll, 1)
        root.addWidget(self.run_bar)
        # the views' controls, by the names the rest of the plugin (and its tests) use
        for view in (self.data_view, self.degradation_view, self.method_view, self.result_view, self.run_bar):
            for name, value in vars(view).items():
                if not name.startswith("_") and name != "state" and not hasattr(self, name):
                    setattr(self, name, value)
        self.preview_kernel: np.ndarray | None = None
        self.preview_srf: np.ndarray | None = None
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(40)
        self._preview_timer.timeout.connect(self.update_previews)

    def sizeHint(self):
        hint = super().sizeHint()
        hint.setHeight(min(hint.height(), 520))
        hint.setWidth(max(hint.width(), 500))  # room for the spin boxes' texts; the minimum is less
        return hint

    def _connect(self):
        ev = self.viewer.layers.events
        ev.inserted.connect(self.refresh_layers)
        ev.removed.connect(self.refresh_layers)
        ev.reordered.connect(self.refresh_layers)
        self.hr_combo.currentIndexChanged.connect(self._on_pair_changed)
        self.lr_combo.currentIndexChanged.connect(self._on_pair_changed)
        for w in (self.scale_spin, self.size_spin, self.sigma_spin, self.sigma2_spin, self.angle_spin,
                  self.wl_start, self.wl_step):
            w.valueChanged.connect(self.schedule_previews)
        for w in (self.psf_combo, self.srf_combo, self.lr_combo, self.encoding_combo):
            w.currentTextChanged.connect(self.schedule_previews)
        self.wl_from_layer.toggled.connect(self.schedule_previews)
        self.save_button.clicked.connect(self._save_dialog)
        self.colour_button.clicked.connect(self.add_truecolour)
        self.rerun_button.clicked.connect(self.load_result_settings)
        self.use_estimate_button.clicked.connect(self.use_estimated_degradation)
        self.psf_combo.currentTextChanged.connect(self._on_psf_changed)
        self.srf_combo.currentTextChanged.connect(self._on_srf_changed)
        self.wl_from_layer.toggled.connect(self._update_wavelength_ui)
        self.wl_start.valueChanged.connect(self._update_wavelength_ui)
        self.wl_step.valueChanged.connect(self._update_wavelength_ui)
        self.scale_spin.valueChanged.connect(self._update_pair_note)
        self.scale_spin.valueChanged.connect(self._sigma_follows_scale)
        self.sigma_spin.valueChanged.connect(self._on_sigma_edited)
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        c = self.controller
        c.started.connect(lambda: self.state.update(status=RUNNING, step=0, total=0, message="starting..."))
        c.progress.connect(self._on_progress)
        c.finished.connect(self._on_finished)
        c.failed.connect(lambda msg: self.state.update(status=FAILED, message=f"error: {msg}"))
        c.stopped.connect(lambda: self.state.update(status=STOPPED, message="stopped: nothing added"))
        c.done.connect(self._on_done)
        self.state.events.estimates.connect(lambda est: est and self.degradation_view.offer_estimates())

    # ------------------------------------------------------------------ layers
    def refresh_layers(self, event=None):
        hr_prev, lr_prev = self.hr_combo.currentText(), self.lr_combo.currentText()
        layers = list(self.viewer.layers)
        known, self._known_names = getattr(self, "_known_names", set()), {lay.name for lay in layers}
        hr_names = [lay.name for lay in layers if _layers.is_hr_candidate(lay)]
        lr_names = [lay.name for lay in layers if _layers.is_input_cube(lay)]
        cube_names = [lay.name for lay in layers if _layers.is_cube(lay)]  # results: multiscale ones too
        for combo, names, prev, preferences in (
            (self.hr_combo, hr_names, hr_prev, (lambda n: self.viewer.layers[n].rgb,)),
            (self.lr_combo, lr_names, lr_prev, (lambda n: self._looks_like_lr(n) and self._smaller_than_hr(n),
                                                self._looks_like_lr)),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            pick = _best_pick(names, prev, preferences, known)
            if pick:
                combo.setCurrentText(pick)
            combo.blockSignals(False)
        prev = self.result_combo.currentText()
        before = {self.result_combo.itemText(i) for i in range(self.result_combo.count())}
        self.result_combo.clear()
        self.result_combo.addItems(cube_names)
        results = [n for n in cube_names if _layers.is_result(self.viewer.layers[n])]
        new_results = [n for n in results if n not in before]
        if new_results:  # a result just appeared: it is the one to save / render
            self.result_combo.setCurrentText(new_results[-1])
        elif prev in cube_names:
            self.result_combo.setCurrentText(prev)
        elif results:
            self.result_combo.setCurrentText(results[-1])
        self._on_pair_changed()

    def _looks_like_lr(self, name) -> bool:
        layer = self.viewer.layers[name]
        return (_layers.layer_wavelengths(layer) is not None and not _layers.is_result(layer)
                and "reference" not in name)

    def _smaller_than_hr(self, name) -> bool:
        return _layers.coarser_than(self.viewer.layers[name], self.hr_layer)

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
        if hr is not None and lr is not None and hr.name != lr.name:
            s = _layers.infer_scale(_layers.hr_spatial_shape(hr), lr.data.shape)
            if s is not None:
                self.scale_spin.blockSignals(True)
                self.scale_spin.setValue(min(max(s, 2), self.scale_spin.maximum()))
                self.scale_spin.blockSignals(False)
                self._sigma_follows_scale()
        has_wl = lr is not None and _layers.layer_wavelengths(lr) is not None
        self.wl_from_layer.setEnabled(has_wl)
        self.wl_from_layer.setChecked(has_wl)
        self._update_wavelength_ui()
        self._adopt_recorded_srf(hr, lr)
        self._update_pair_note()
        self.schedule_previews()

    def _adopt_recorded_srf(self, hr, lr):
        """As ``hsisr fuse``: an LR layer simulated through a preset response (its metadata records
        it) over a floating-point HR layer, a simulation too, selects that preset in the picker,
        visibly, instead of estimating it. An 8/16-bit HR image is a camera's: left to the estimate."""
        if self.srf_combo.currentText() != FROM_PAIR or hr is None or lr is None or hr.name == lr.name:
            return
        record = (lr.metadata or {}).get("degradation")
        name = record.get("srf") if isinstance(record, dict) else None
        if not name or self.srf_combo.findText(str(name)) < 0 or not np.issubdtype(np.asarray(hr.data[:1]).dtype,
                                                                                   np.floating):
            return
        self.srf_combo.setCurrentText(str(name))

    def _sigma_follows_scale(self, *_):
        """The Gaussian's default sigma is scale/4 (the core's and the CLI's) until the user edits it."""
        if self._sigma_edited:
            return
        self._following = True
        try:
            self.sigma_spin.setValue(self.scale_spin.value() / 4.0)
        finally:
            self._following = False

    def _on_sigma_edited(self, *_):
        if not getattr(self, "_following", False):
            self._sigma_edited = True

    def _update_pair_note(self, *_):
        """Say, before any run, when the two layers are not an exact multiple of each other."""
        hr, lr = self.hr_layer, self.lr_layer
        note = ""
        if hr is not None and lr is not None and hr.name != lr.name and _layers.is_cube(lr):
            (Y, X), (y, x) = _layers.hr_spatial_shape(hr), lr.data.shape[-2:]
            s = self.scale_spin.value()
            if (Y, X) != (y * s, x * s):
                note = (f"HR {Y}x{X} over LR {y}x{x}: ratio {Y / y:.2f} x {X / x:.2f}, not exactly {s}. Crop both to "
                        f"{min(Y // s, y) * s}x{min(X // s, x) * s} and {min(Y // s, y)}x{min(X // s, x)} (or use "
                        "'hsisr fuse', which crops or resamples and says so).")
        note = _geo_layers.pair_note(self, hr, lr) or note  # georeferenced layers: paired by map coordinates
        self.data_view.set_note(note)

    def _align(self, req, deg) -> list | None:
        """At Run: overlay the LR layer on the HR layer (scale/translate only, data untouched) where
        ``deg`` (the run's degradation; None: not buildable) puts it. Returns the translate it had,
        when it moved."""
        hr, lr = req.hr_layer, req.lr_layer
        s = req.scale
        Y, X = _layers.hr_spatial_shape(hr)
        if deg is None or (Y, X) != (lr.data.shape[-2] * s, lr.data.shape[-1] * s):
            return None
        before = [float(v) for v in lr.translate]
        _layers.align_lr_layer(lr, hr, s, deg.lr_translate)
        return before if not np.allclose(before, lr.translate) else None

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
        """Redraw the PSF kernel, the SRF curves and the decoding curve (never raises)."""
        canvas = self.preview_canvas
        text = canvas.colours["text"]
        ax = self.psf_ax
        ax.clear()
        ax.set_xticks([])
        ax.set_yticks([])
        try:
            deg = build_degradation(self.request_for_preview(), with_srf=False)
            self.preview_kernel = np.asarray(deg.psf)
            ax.imshow(self.preview_kernel, cmap="magma", interpolation="nearest")
            ax.set_title(f"PSF {deg.kernel_size}x{deg.kernel_size}", fontsize=7)
        except Exception as exc:  # noqa: BLE001 - incomplete form: say why
            self.preview_kernel = None
            ax.set_title("PSF: n/a", fontsize=7)
            ax.text(0.5, 0.5, _short(exc), ha="center", va="center", wrap=True, fontsize=6, color=text,
                    transform=ax.transAxes)
        ax = self.srf_ax
        ax.clear()
        try:
            wl, m, channels = self.srf_on_wavelengths()
            self.preview_srf = m
            for j, name in enumerate(channels):
                ax.plot(wl, m[:, j], ".-", ms=2, lw=1, color=CHANNEL_COLORS.get(name), label=name)
            ax.set_title(f"SRF on {len(wl)} bands", fontsize=7)
            ax.set_xlabel("nm", fontsize=6)
            ax.legend(fontsize=6, frameon=False, loc="upper right")
        except Exception as exc:  # noqa: BLE001
            self.preview_srf = None
            ax.set_title("SRF: n/a", fontsize=7)
            ax.text(0.5, 0.5, _short(exc), ha="center", va="center", wrap=True, fontsize=6, color=text,
                    transform=ax.transAxes)
        try:
            self._draw_tone()
        except Exception as exc:  # noqa: BLE001 - a preview never raises
            self.tone_ax.clear()
            self.tone_ax.set_title(f"decode: n/a ({_short(exc, 30)})", fontsize=7)
        canvas.draw()

    def _draw_tone(self):
        """The HR image's decoding (display value -> linear light) per channel, with the estimated
        gains and offsets when the encoding comes from a blind run."""
        from ..core.physics import ToneCurve

        ax = self.tone_ax
        ax.clear()
        spec = self._encoding_spec()
        v = np.linspace(0, 1, 65)
        curve = spec if isinstance(spec, ToneCurve) else ToneCurve.parse("srgb" if spec == "auto" else spec)
        est = self.state.estimates if self.encoding_combo.currentText() == ESTIMATED else None
        gains = est.get("gain") if est else None
        k = len(curve.table) if curve.kind == "table" else (np.size(gains) if gains not in (None, "auto") else 3)
        gain = np.broadcast_to(np.asarray(gains if gains not in (None, "auto") else 1.0, float), (k,))
        offsets = est.get("offset") if est else None
        offset = np.broadcast_to(np.asarray(offsets if offsets not in (None, "auto") else 0.0, float), (k,))
        lin = curve.decode(np.broadcast_to(v, (k, v.size)))
        names = ("R", "G", "B") if k == 3 else tuple(f"{j + 1}" for j in range(k))
        for j, name in enumerate(names):
            ax.plot(v, (lin[j] - offset[j]) / gain[j], lw=1, color=CHANNEL_COLORS.get(name))
        label = curve.name + (" (auto for 8/16-bit)" if spec == "auto" else "")
        ax.set_title(f"decode: {label}", fontsize=7)
        ax.set_xlabel("display", fontsize=6)

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
        from ..core.srf import (
            DEFAULT_31_BAND_WAVELENGTHS,
            normalize_signed,
            resolve_srf,
        )
        from ._fusion_worker import request_wavelengths

        req = self.request_for_preview()
        if req.srf is None:
            raise InputError("estimated from the pair when the fusion runs" if self.srf_combo.currentText() == FROM_PAIR
                             else "no SRF file chosen")
        wl = request_wavelengths(req) if req.lr_layer is not None else None
        if wl is None:
            n = req.lr_layer.data.shape[0] if req.lr_layer is not None and _layers.is_cube(req.lr_layer) else 31
            if n != 31:
                raise InputError(f"{n} bands without wavelengths")
            wl = DEFAULT_31_BAND_WAVELENGTHS
        if isinstance(req.srf, np.ndarray) and np.any(req.srf < 0):  # an estimate with its negative lobes
            return wl, normalize_signed(req.srf, wl.size), ("R", "G", "B")[: req.srf.shape[1]]
        m, _, channels = resolve_srf(req.srf, wl, wl.size)
        return wl, m, channels

    # ------------------------------------------------------------------ result: save / true colour / rerun
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
        if srf == FROM_PAIR:  # nothing to render with until a fusion has estimated it
            return "CIE 1931"
        return self._srf_file if srf == FROM_FILE else srf

    def add_truecolour(self, *_, layer=None):
        """Add ``<layer>_truecolour`` for the chosen layer; returns it (None with a notification)."""
        layer = layer if layer is not None else self.result_layer
        if layer is None:
            notify_error("Choose a cube layer to render in true colour.")
            return None
        try:
            if self.colour_combo.currentText() == FALSE_COLOUR:
                return falsecolour_layer(self.viewer, layer, parse_wavelength_triplet(self.false_colour_edit.text()))
            return truecolour_layer(self.viewer, layer, self.truecolour_srf())
        except (InputError, ValueError, OSError) as exc:
            notify_error(str(exc))
            return None

    def load_result_settings(self, *_, layer=None) -> bool:
        """Set the form to what made the chosen result: method, options, seed, device, degradation
        (the recorded kernel and response as 'estimated' entries when they are not presets)."""
        layer = layer if layer is not None else self.result_layer
        settings = (layer.metadata.get("settings") or {}) if layer is not None else {}
        if not settings.get("method"):
            notify_error("The chosen layer records no fusion settings; choose a result layer.")
            return False
        self.method_combo.setCurrentText(settings["method"])
        self.options_form.set_values(settings.get("options") or {})
        self.seed_spin.setValue(int(settings.get("seed", 0)))
        device = settings.get("device", "auto")
        index = self.device_combo.findData(device)
        self.device_combo.setCurrentIndex(max(index, 0))
        inputs = layer.metadata.get("inputs") or {}
        for combo, name in ((self.hr_combo, inputs.get("hr")), (self.lr_combo, inputs.get("lr"))):
            if name and combo.findText(name) >= 0:
                combo.setCurrentText(name)
        record = settings.get("estimated_degradation") or settings.get("degradation")
        if record:
            self.remember_estimates(record=record)
            self.use_estimated_degradation(switch_method=False)
            self.scale_spin.setValue(int(record.get("scale", self.scale_spin.value())))
        self.state.message = f"form set to the settings of {layer.name!r}: Run to reproduce them"
        return True

    # ------------------------------------------------------------------ degradation / method
    def _psf_spec(self):
        text = self.psf_combo.currentText()
        if text == ESTIMATED and self.state.estimates is not None:
            return self.state.estimates["psf"]
        return self._psf_file if text == FROM_FILE else text

    def _encoding_spec(self):
        text = self.encoding_combo.currentText()
        if text == ESTIMATED and self.state.estimates is not None and self.state.estimates.get("tone") is not None:
            return self.state.estimates["tone"]
        return "auto" if text == ESTIMATED else text

    def _srf_spec(self):
        text = self.srf_combo.currentText()
        if text == ESTIMATED and self.state.estimates is not None:
            return self.state.estimates["srf"]
        if text == FROM_PAIR:
            return None  # the core estimates it from the pair (observations.estimate_response)
        return self._srf_file if text == FROM_FILE else text

    def remember_estimates(self, layer=None, record: dict | None = None) -> bool:
        """Offer a blind result's estimated PSF, SRF and encoding as the ESTIMATED picker entries."""
        if record is None:
            record = ((layer.metadata.get("settings") or {}).get("estimated_degradation") if layer is not None
                      else None)
        if not record or record.get("psf_kernel") is None or record.get("srf_matrix") is None:
            return False
        from ..core.degradation import Degradation

        try:
            tone = Degradation.from_settings(record).tone()[0]
        except Exception:  # noqa: BLE001 - an older record without an encoding
            tone = None
        self.state.estimates = {"psf": np.asarray(record["psf_kernel"], dtype=float),
                                "srf": np.asarray(record["srf_matrix"], dtype=float), "tone": tone,
                                "gain": record.get("hr_gain"), "offset": record.get("hr_offset"),
                                "shift": record.get("shift")}
        return True

    def use_estimated_degradation(self, *_, switch_method: bool = True):
        """Select the estimates in the PSF, SRF and encoding pickers (shown in the previews) and,
        by default, switch to ``fast``, so that the next run uses them as a known degradation."""
        if self.state.estimates is None:
            return
        self.degradation_view.offer_estimates()
        self.psf_combo.setCurrentText(ESTIMATED)
        self.srf_combo.setCurrentText(ESTIMATED)
        self.encoding_combo.setCurrentText(ESTIMATED)
        if switch_method:
            self.method_combo.setCurrentText("fast")
        self.previews.expand(animate=False)

    def _on_psf_changed(self, text):
        if text == FROM_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "PSF kernel file", "",
                                                  "Kernels (*.npy *.csv *.txt *.tif *.tiff)")
            if not path:
                self.psf_combo.setCurrentIndex(0)
                return
            self._psf_file = path
            self.psf_combo.setToolTip(path)
        self._update_psf_enabled()

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
        self.method_view.options.setText(f"Options ({len(info.options)})" if info.options else "Options (none)")
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
            hr_encoding=self._encoding_spec(), **self._estimated_geometry(), **self.data_view.lr_input.values(),
        )

    def _estimated_geometry(self) -> dict:
        """With the estimated PSF its shift, with the estimated response its gains and offsets: the
        whole estimated degradation, not only its kernel, matrix and curve."""
        est, out = self.state.estimates, {}
        if est is None:
            return out
        if self.psf_combo.currentText() == ESTIMATED and est.get("shift") is not None:
            out["shift"] = tuple(est["shift"])
        if self.srf_combo.currentText() == ESTIMATED:
            out.update({k: v for k, v in (("hr_gain", est.get("gain")), ("hr_offset", est.get("offset")))
                        if v is not None})
        return out

    def run(self) -> bool:
        try:
            req = self.request()
            req = _geo_layers.pair_for_run(self, req)  # georeferenced layers: the paired arrays, on the map
        except InputError as exc:
            notify_error(str(exc))
            self.state.update(status=FAILED, message=f"error: {exc}")
            return False
        deg = None
        if req.hr_layer is not None and req.lr_layer is not None and req.hr_layer.name != req.lr_layer.name \
                and _layers.is_cube(req.lr_layer):
            try:  # built once for the run: aligning the layer and the run use the same
                deg = build_degradation(req)
            except InputError:
                deg = None  # the controller reports the problem
            req.lr_translate_before = self._align(req, deg)
        self._run_request = req
        self._preview_note, self._previews_shown = self._no_preview_reason(req), 0
        return self.controller.start(req, deg)

    def _no_preview_reason(self, req) -> str:
        """Why 'live preview' will show nothing in this run, said in the status rather than left to guess."""
        from ..core.memory import fits

        if not self.live_check.isChecked() or req.hr_layer is None or req.lr_layer is None \
                or not _layers.is_cube(req.lr_layer):
            return ""
        if not fits(req.method, _layers.hr_spatial_shape(req.hr_layer), req.lr_layer.data.shape[0]):
            return "no live preview: the scene is too large for memory and is fused tile by tile"
        return ""

    @property
    def running(self) -> bool:
        return self.controller.running

    def stop(self):
        self.state.update(status=STOPPING, message="stopping...")
        self.controller.stop()
        self._remove_preview()

    def _remove_preview(self):
        req = self._run_request
        if req is not None and req.lr_layer is not None:
            remove_preview(self.viewer, preview_name(req))

    def _on_progress(self, p):
        text = f"step {p.step}/{p.total}" if p.total else ""  # no total yet: the setup stage, by name
        if p.loss is not None:
            text += f"  loss {p.loss:.4g}"
        if p.message:
            text += f"  {p.message}"
        if self._preview_note:
            text += f"  ({self._preview_note})"
        self.state.update(total=int(p.total), step=int(p.step), message=text.strip())
        self._maybe_show_preview(p)

    def _maybe_show_preview(self, p):
        req = self._run_request
        if (p.preview is None or req is None or not self.live_check.isChecked()
                or self.controller._stop_requested or not self.controller.running):
            return
        try:
            show_preview(self.viewer, req, p.preview)
            self._previews_shown += 1
        except Exception as exc:  # noqa: BLE001 - a preview must never break the run
            self._preview_note = f"live preview failed: {exc}"  # kept in the status, not overwritten

    def _on_finished(self, layer):
        from ._fusion_worker import fit_summary

        settings = layer.metadata.get("settings") or {}
        fit = fit_summary(settings)
        geo_note = _geo_layers.finished_note(self.viewer, layer)  # georeferenced: how the pair was made
        moved = layer.metadata.get("lr_layer_moved")
        message = f"done: added {layer.name!r}" + (f"; {fit}" if fit else "") + geo_note
        if moved:
            message += (f"; moved {moved['layer']!r} to the estimated alignment" if moved.get("estimated")
                        else f"; aligned {moved['layer']!r} over the HR layer")
        warnings = settings.get("warnings") or []
        if warnings:
            from napari.utils.notifications import show_warning

            for text in warnings:
                show_warning(text)
            message += f" (warning: {warnings[0]})"
        message += self._preview_outcome()
        if self.remember_estimates(layer):
            message += "; estimates available"
            self.schedule_previews()
        self.state.update(status=DONE, last_result=layer.name, message=message)
        if layer.name in [self.result_combo.itemText(i) for i in range(self.result_combo.count())]:
            self.result_combo.setCurrentText(layer.name)

    def _preview_outcome(self) -> str:
        if self._preview_note:
            return f"; {self._preview_note}"
        if self.live_check.isChecked() and not self._previews_shown:
            return "; no live preview: the method gave no intermediate estimate (one solve, no refit rounds)"
        return ""

    def _on_done(self):
        self._remove_preview()
        if self.state.status in (RUNNING, STOPPING):  # ended without a result or an error
            self.state.update(status=STOPPED if self.state.status == STOPPING else READY)
        elif self.state.status in (FAILED, STOPPED):
            self.state.events.status.emit(self.state.status)  # the run bar resets its progress


def _short(exc, n: int = 60) -> str:
    msg = str(exc)
    return msg if len(msg) <= n else msg[: n - 3] + "..."
