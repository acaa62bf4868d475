"""Fusion wiring without Qt layout: request -> degradation, the thread worker, the controller.

``FusionRequest`` holds everything the widget's form says; ``build_degradation`` turns it into a
:class:`~napari_hsisr.core.degradation.Degradation` (raising ``InputError`` with a user-facing
message); ``fusion_steps`` is the generator run in a napari ``thread_worker`` (it yields
``Progress`` and *returns* either the ``FusionResult`` or a ``FusionFailure`` so that errors are
shown as one-line notifications, never as traceback dialogs); ``FusionController`` starts/stops
the worker, relays psygnal signals and adds the result layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psygnal import Signal

from ..core.errors import InputError
from ..core.methods.base import Progress
from . import _geo_layers, _layers


@dataclass
class FusionRequest:
    hr_layer: Any
    lr_layer: Any
    scale: int
    psf: Any = "gaussian"  # "gaussian", "box" or a kernel file path
    psf_sigma: float | None = None
    psf_size: int | None = None
    psf_sigma2: float | None = None
    psf_angle: float = 0.0
    srf: Any = "Nikon D700 (CAVE fusion papers)"  # preset name or file path
    wavelengths: Any = None  # None: from the LR layer's metadata
    method: str = "fast"
    options: dict = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    replace: bool = False
    hr_encoding: Any = "auto"  # "auto", "linear", "srgb", "gamma:<g>" or an estimated ToneCurve
    shift: Any = (0.0, 0.0)  # (dy, dx) HR pixels: an estimated degradation's, else none
    hr_gain: Any = "auto"  # "auto" (estimated from the pair) or an estimated degradation's per channel
    hr_offset: Any = "auto"
    lr_translate_before: Any = None  # the LR layer's translate before Run aligned it (None: unmoved)
    # hsisr fuse's real-file options for the LR layer, as text ('' = unset): value scale, band table, bands to drop
    lr_value_scale: str = ""
    band_table: str = ""
    drop_bands: str = ""


@dataclass(frozen=True)
class FusionFailure:
    message: str


def _lr_options_given(req: FusionRequest) -> bool:
    return bool(req.lr_value_scale or req.band_table or req.drop_bands) and req.lr_layer is not None \
        and _layers.is_cube(req.lr_layer)


def prepared_lr(req: FusionRequest, data=None):
    """The LR layer as a ``CubeFile`` with the request's value scale, band table and dropped bands
    applied (the CLI's logic, :func:`..core.io.apply_cube_options`); the layer is not changed.
    ``data=None``: a stand-in without pixels (wavelengths and band count only, cheap)."""
    from ..core.io import CubeFile, apply_cube_options, parse_band_numbers

    layer = req.lr_layer
    if data is None:
        data = np.empty((layer.data.shape[0], 0, 0), np.float32)
    scale = None
    if req.lr_value_scale:
        try:
            scale = float(req.lr_value_scale)
        except ValueError:
            raise InputError(f"Value scale expects a number such as 1e-4, got {req.lr_value_scale!r}.") from None
    meta = {k: v for k, v in dict(layer.metadata or {}).items() if k in ("bad_bands", "envi_header")}
    cf = CubeFile(data, _layers.layer_wavelengths(layer), meta)
    return apply_cube_options(cf, layer.name, value_scale=scale, wavelengths=req.band_table or None,
                              drop_bands=parse_band_numbers(req.drop_bands, "Drop bands"))


def request_wavelengths(req: FusionRequest) -> np.ndarray | None:
    if _lr_options_given(req):  # the band table's (or the layer's), less the bands dropped
        wl = prepared_lr(req).wavelengths
        if wl is not None or req.wavelengths is None:
            return wl
    if req.wavelengths is not None:
        wl = np.asarray(req.wavelengths, dtype=np.float64).ravel()
    else:
        wl = _layers.layer_wavelengths(req.lr_layer)
    if wl is not None and req.lr_layer is not None and _layers.is_cube(req.lr_layer):
        n = req.lr_layer.data.shape[0]
        if wl.size != n:
            raise InputError(f"{wl.size} wavelengths given but LR layer {req.lr_layer.name!r} has {n} bands; "
                             "fix the start/step or the layer's metadata['wavelengths'].")
    return wl


def build_degradation(req: FusionRequest, with_srf: bool = True):
    """The core ``Degradation`` the request describes (cheap; raises ``InputError``): the one
    builder the CLI and batch use too (:class:`~napari_hsisr.core.degradation.DegradationSpec`)."""
    from ..core.degradation import DegradationSpec

    wl = request_wavelengths(req) if with_srf else None
    n_bands = lr_shape(req)[0] if with_srf and wl is None and req.lr_layer is not None else None
    spec = DegradationSpec(scale=req.scale, psf=req.psf, psf_sigma=req.psf_sigma, psf_size=req.psf_size,
                           psf_sigma2=req.psf_sigma2 or None, psf_angle=req.psf_angle or 0.0, boundary="reflect",
                           srf=req.srf if with_srf else None, wavelengths=wl, n_bands=n_bands, shift=req.shift,
                           hr_encoding=req.hr_encoding, hr_gain=req.hr_gain, hr_offset=req.hr_offset)
    return spec.build()[0]


def lr_shape(req: FusionRequest) -> tuple:
    """The LR cube's shape once the request's band options are applied."""
    shape = tuple(req.lr_layer.data.shape)
    return (prepared_lr(req).data.shape[0],) + shape[1:] if _lr_options_given(req) else shape


def check_request(req: FusionRequest, deg=None):
    """Main-thread validation (fast): layers, shapes, degradation (``deg``: already built from
    ``req``). Returns the Degradation."""
    if req.hr_layer is None or req.lr_layer is None:
        raise InputError("Choose an HR image layer and an LR hyperspectral layer.")
    if req.hr_layer.name == req.lr_layer.name:  # napari hands out a new wrapper per lookup: compare names
        raise InputError("The HR and LR layers must be different layers.")
    if not _layers.is_input_cube(req.lr_layer):
        what = "a multiscale (on-disk) layer" if req.lr_layer.multiscale else f"shape {req.lr_layer.data.shape}"
        raise InputError(f"LR layer {req.lr_layer.name!r} has {what}; "
                         "it must be a (bands, y, x) cube with several bands, in memory.")
    deg = build_degradation(req) if deg is None else deg
    deg.check_shapes(_layers.hr_spatial_shape(req.hr_layer), lr_shape(req))
    return deg


def fusion_steps(hr, lr, deg, method, seed, device, options):
    """Generator for the worker: yields Progress, returns FusionResult or FusionFailure. The
    computation leaves one core to the viewer (:func:`..core.parallel.limited`)."""
    from ..core.api import fuse_iter
    from ..core.parallel import limited, spare_one

    with limited(spare_one()):  # tile="auto": a scene too large for memory is fused in tiles
        return (yield from _steps(fuse_iter(hr, lr, deg, method, seed, device, tile="auto", **dict(options))))


SETUP_MESSAGE = "preparing the inputs (decoding, masks, radiometry)..."


def _steps(gen):
    try:
        yield Progress(0, 0, message=SETUP_MESSAGE)  # said before the first step, which can take a while
        return (yield from gen)
    except (InputError, ValueError) as exc:
        return FusionFailure(str(exc))
    except MemoryError:
        return FusionFailure("Out of memory: crop the images, lower the method's rank, or use a smaller device load.")
    except Exception as exc:  # noqa: BLE001 - shown to the user as one line, never a traceback dialog
        return FusionFailure(f"Fusion failed ({type(exc).__name__}): {exc}")
    finally:
        gen.close()


def result_layer_kwargs(req: FusionRequest, result, deg) -> dict:
    hs, ht = _layers.spatial_scale_translate(req.hr_layer)
    wl = deg.wavelengths
    if wl is None:
        wl = result.settings.get("degradation", {}).get("wavelengths")
    meta = {"wavelengths": None if wl is None else [float(w) for w in wl], "wavelength_units": "nm",
            "settings": result.settings, "inputs": {"hr": req.hr_layer.name, "lr": req.lr_layer.name}}
    bad = (prepared_lr(req).metadata if _lr_options_given(req) else dict(req.lr_layer.metadata or {})).get("bad_bands")
    if bad:  # the noisy bands kept are noisy in the result too: plots skip them there as well
        meta["bad_bands"] = [int(i) for i in bad]
    meta.update(_geo_layers.result_metadata(req, meta))  # a georeferenced pair's output grid (GeoTIFF on save)
    return {"scale": (1.0, *hs), "translate": (0.0, *ht), "metadata": meta}


def result_name(req: FusionRequest) -> str:
    """``<LR layer>_<method>``: which method made a result is in its name."""
    return f"{req.lr_layer.name}_{req.method}"


def add_result_layer(viewer, req: FusionRequest, result, deg):
    """Add (or replace) ``<lr name>_<method>`` aligned on the HR layer's spatial axes."""
    base = result_name(req)
    kw = result_layer_kwargs(req, result, deg)
    if req.lr_translate_before is not None:  # Run aligned the LR layer: say where it was
        kw["metadata"]["lr_layer_moved"] = {"layer": req.lr_layer.name, "translate_before": req.lr_translate_before,
                                            "translate_after": [float(v) for v in req.lr_layer.translate]}
    if req.replace and base in viewer.layers:
        layer = viewer.layers[base]
        if _layers.is_input_cube(layer):  # a multiscale layer of that name cannot take an array
            layer.data = result.cube
            layer.scale, layer.translate = kw["scale"], kw["translate"]
            layer.metadata = kw["metadata"]
            layer.reset_contrast_limits()
            return layer
    name = _layers.unique_name([lay.name for lay in viewer.layers], base)
    return viewer.add_image(result.cube, name=name, colormap="gray", **kw)


def move_lr_to_estimate(req: FusionRequest, result, layer) -> bool:
    """After a run that estimated where the LR pixels sit (blind), move the LR layer there; the
    translate it had is kept in the result's metadata (``lr_layer_moved``) to undo by hand."""
    used = result.extras.get("degradation_object")
    if used is None or req.lr_layer is None or req.hr_layer is None:
        return False
    ty, tx = used.lr_translate
    before = [float(v) for v in req.lr_layer.translate]
    _layers.align_lr_layer(req.lr_layer, req.hr_layer, used.scale, (ty, tx))
    after = [float(v) for v in req.lr_layer.translate]
    if np.allclose(before, after):
        return False
    first = req.lr_translate_before if req.lr_translate_before is not None else before
    layer.metadata["lr_layer_moved"] = {"layer": req.lr_layer.name, "translate_before": first,
                                        "translate_after": after, "estimated": True}
    return True


def fit_summary(settings: dict) -> str:
    """One line: how well the result explains the two observations (relative residuals)."""
    from ..core.fit_report import describe

    text = describe(settings.get("fit") or {})
    return f"fit: {text}" if text else ""


def preview_name(req: FusionRequest) -> str:
    return f"{req.lr_layer.name}_preview"


def show_preview(viewer, req: FusionRequest, preview):
    """Show a ``(C, y, x)`` preview in the one reused layer ``<lr>_preview`` over the HR grid."""
    data = np.asarray(preview, dtype=np.float32)
    if data.ndim != 3 or data.shape[0] < 1:
        return None
    hs, ht = _layers.spatial_scale_translate(req.hr_layer)
    Y, X = _layers.hr_spatial_shape(req.hr_layer)
    f = np.array([Y / data.shape[1], X / data.shape[2]])  # HR pixels per preview pixel
    scale, translate = (1.0, *(hs * f)), (0.0, *(ht + hs * (f - 1) / 2))
    name = preview_name(req)
    if name in viewer.layers and _layers.is_input_cube(viewer.layers[name]) \
            and viewer.layers[name].metadata.get("hsisr_preview"):
        layer = viewer.layers[name]
        same = layer.data.shape == data.shape
        layer.data = data
        layer.scale, layer.translate = scale, translate
        if not same:
            layer.reset_contrast_limits()
        return layer
    wl = _layers.layer_wavelengths(req.lr_layer)
    meta = {"hsisr_preview": True}
    if wl is not None and wl.size == data.shape[0]:
        meta["wavelengths"] = [float(w) for w in wl]
    return viewer.add_image(data, name=name, colormap="gray", scale=scale, translate=translate,
                            metadata=meta, contrast_limits=(0.0, max(float(data.max()), 1e-6)))


def remove_preview(viewer, name: str | None) -> None:
    if name and name in viewer.layers and viewer.layers[name].metadata.get("hsisr_preview"):
        viewer.layers.remove(name)


def save_layer(layer, path, format: str = "imagej", dtype: str = "float32"):
    """Write a cube layer with ``core.io.write_tiff``: its wavelengths and settings included."""
    from ..core.io import write_tiff

    if not _layers.is_cube(layer):
        raise InputError(f"Layer {layer.name!r} is not a (bands, Y, X) cube; choose a result layer.")
    meta = layer.metadata or {}
    format, geo = _geo_layers.save_format(layer, format)  # a georeferenced cube: a GeoTIFF
    return write_tiff(path, _layers.read_whole(layer, "a TIFF"), wavelengths=_layers.layer_wavelengths(layer),
                      settings=meta.get("settings"), format=format, dtype=dtype,
                      units=meta.get("wavelength_units", "nm"), geo=geo)


def notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


class FusionController:
    """Runs one fusion at a time in a napari thread worker; Qt-layout free, testable.

    Signals: ``started()``, ``progress(Progress)``, ``finished(layer)``, ``failed(str)``,
    ``stopped()``, ``done()`` (always last, whatever the outcome).
    """

    started = Signal()
    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    stopped = Signal()
    done = Signal()

    def __init__(self, viewer):
        self.viewer = viewer
        self.worker = None
        self.activity = None
        self._stop_requested = False

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, req: FusionRequest, deg=None) -> bool:
        """Validate and start (``deg``: the degradation already built from ``req``); on bad input
        show one notification and return False."""
        if self.running:
            notify_error("A fusion is already running; stop it first.")
            return False
        try:
            deg = check_request(req, deg)
            hr = _layers.hr_array(req.hr_layer)
            lr = np.asarray(req.lr_layer.data)
            if _lr_options_given(req):
                lr = prepared_lr(req, lr).data
            from ..core.methods import get_method

            get_method(req.method)
        except (InputError, ValueError) as exc:
            self._fail(str(exc))
            return False
        from napari.qt.threading import thread_worker

        self._stop_requested = False
        worker = thread_worker(fusion_steps, start_thread=False)(
            hr, lr, deg, req.method, req.seed, req.device, dict(req.options))
        worker.yielded.connect(self.progress.emit)
        worker.yielded.connect(self._report_activity)
        worker.returned.connect(lambda out: self._on_returned(out, req, deg))
        worker.errored.connect(lambda exc: self._fail(f"Fusion failed ({type(exc).__name__}): {exc}"))
        worker.aborted.connect(self.stopped.emit)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._open_activity(req.method)
        self.started.emit()
        worker.start()
        return True

    def stop(self) -> None:
        if self.worker is not None:
            self._stop_requested = True
            self.worker.quit()

    def _on_returned(self, out, req, deg):
        if self._stop_requested or out is None:
            return  # stopped: add nothing
        if isinstance(out, FusionFailure):
            self._fail(out.message)
            return
        try:
            layer = add_result_layer(self.viewer, req, out, deg)
            move_lr_to_estimate(req, out, layer)
        except Exception as exc:  # noqa: BLE001
            self._fail(f"Could not add the result layer: {exc}")
            return
        self.finished.emit(layer)

    def _open_activity(self, method: str) -> None:
        """A bar in napari's activity dock, mirroring the worker's Progress reports."""
        from napari.utils import progress

        self.activity = progress(total=0, desc=f"napari-hsisr: {method}")

    def _report_activity(self, p) -> None:
        """Mirror a report in the activity bar. napari's bar processes Qt events while it updates
        (``setValue`` -> ``processEvents``), which delivers the next queued report inside this one:
        that one only sets the count (tqdm's ``n``, no event), never nests another update (nesting
        hit RecursionError on fast runs); the next report outside shows it."""
        bar = getattr(self, "activity", None)
        if getattr(self, "_reporting", False):
            if bar is not None:
                bar.n = max(int(bar.n), int(p.step))
            return
        self._reporting = True
        try:
            self._update_activity(p)
        finally:
            self._reporting = False

    def _update_activity(self, p) -> None:
        bar = getattr(self, "activity", None)
        if bar is None:
            return
        if bar.total != int(p.total):
            bar.total = int(p.total)
        bar.update(max(int(p.step) - bar.n, 0))
        if p.message:
            bar.set_description(f"napari-hsisr: {p.message}"[:60])

    def _close_activity(self) -> None:
        bar = getattr(self, "activity", None)
        self.activity = None
        if bar is not None:
            bar.close()

    def _on_finished(self):
        self._close_activity()
        self.worker = None
        self.done.emit()

    def _fail(self, message: str):
        notify_error(message)
        self.failed.emit(message)
