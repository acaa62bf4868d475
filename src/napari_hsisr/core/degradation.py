"""The forward model shared by simulation, every fusion method and the metrics.

Observations of a scene ``z`` (cube ``(C, Y, X)``):

* LR-HS ``x = D z``: blur by the PSF, then keep one sample per ``s x s`` block;
* HR image ``y = R z``: per pixel, ``y_k = sum_c srf[c, k] z_c`` (``srf`` is ``(C, k)``).

Sampling convention. LR pixel ``(i, j)`` covers the HR block ``[i*s, (i+1)*s) x [j*s, (j+1)*s)``.
A ``K x K`` PSF (``K >= s``) is centred on that block: with ``p = (K - s) // 2``,

    x[c, i, j] = sum_{u, v} psf[u, v] * z[c, i*s - p + u, j*s - p + v]

so ``K == s`` integrates exactly the block (block-aligned decimation). When ``K - s`` is odd the
extra row/column of the kernel lies after the block. Samples outside the image are taken by the
``boundary`` rule: ``"reflect"`` (mirror about the edge pixel, numpy's ``reflect``), ``"symmetric"``
(mirror including the edge pixel), ``"wrap"`` (periodic) or ``"zero"``. With ``K == s`` no sample is
outside the image and the rule does not matter.

Real pairs add three things (see :mod:`.physics`): a ``shift`` of the LR sampling relative to the
HR grid (misregistration), the HR image's radiometry (per-channel ``hr_gain`` and ``hr_offset``)
and its display encoding (``hr_encoding``: tone curve). The operators themselves are the
immutable objects of :mod:`.physics`; this class parses a user's description into them and
records it.

Operators run in torch (CPU or CUDA, any leading batch axes) and accept numpy arrays too, in
which case they compute in float64 on the CPU and return numpy. Each has an exact adjoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .errors import InputError
from .physics import (  # noqa: F401 - re-exported: spatial_op and check_pair_shapes lived here
    BOUNDARIES,
    SpatialOperator,
    SpectralOperator,
    ToneCurve,
    block_offset,
    check_pair_shapes,
    shifted_kernel,
    spatial_op,
)
from .psf import box_psf, gaussian_psf, load_psf, normalize_psf, whole_number


def make_psf(spec, scale: int, sigma: float | None = None, size: int | None = None,
             sigma2: float | None = None, angle_deg: float = 0.0) -> tuple[np.ndarray, str]:
    """Turn a PSF spec into ``(kernel, description)``.

    ``spec`` is a ``(K, K)`` array, a path to a kernel file, ``"box"`` (average over ``size``,
    default ``s``) or ``"gaussian"`` (``sigma`` default ``s/4``, ``size`` default ``s``; ``sigma2``
    and ``angle_deg`` make it anisotropic and rotated).
    """
    if isinstance(spec, np.ndarray) or isinstance(spec, (list, tuple)):
        return normalize_psf(spec, source="PSF array"), "user kernel"
    name = str(spec).strip().lower()
    if name == "gaussian":
        sigma = scale / 4.0 if sigma is None else float(sigma)
        size = scale if size is None else whole_number(size, "psf_size")
        desc = f"gaussian(sigma={sigma:g}" + (f", sigma2={sigma2:g}, angle={angle_deg:g}" if sigma2 else "")
        return gaussian_psf(size, sigma, sigma2, angle_deg), desc + f", size={size})"
    if name in {"box", "average", "mean"}:
        size = scale if size is None else whole_number(size, "psf_size")
        return box_psf(size), f"box(size={size})"
    return load_psf(spec), f"file:{spec}"


MAX_SCALE = 1024


@dataclass(eq=False)
class Degradation:
    """How the two observations were made: spatial (PSF, decimation, shift), spectral (response,
    gain, offset) and the HR image's encoding.

    Parameters
    ----------
    scale : int
        Ratio between HR and LR pixel sizes, any integer >= 2.
    psf : array, path, ``"gaussian"`` or ``"box"``
        Blur kernel (see :func:`make_psf`); ``psf_sigma``, ``psf_size``, ``psf_sigma2`` and
        ``psf_angle`` parametrise the named kernels.
    srf : preset name, path, ``(C, k)`` array, or None
        Spectral response; resampled onto ``wavelengths`` and normalised per channel to sum 1.
        A ``(C, k)`` array may have negative lobes (a colour-corrected camera response, as
        ``blind`` estimates). None means no spectral operator (LR-only workflows).
    wavelengths : array of C band centres in nm, or None (31 bands assume 400..700 nm).
    n_bands : number of bands C when ``wavelengths`` is None and ``srf`` is a preset.
    boundary : rule for samples outside the image (see module docstring).
    shift : ``(dy, dx)`` in HR pixels: where the LR sampling sits relative to the HR grid, beyond
        the block-centred convention (misregistration; ``blind`` estimates it).
    hr_encoding : ``"auto"``, ``"linear"``, ``"srgb"``, ``"gamma:<g>"`` or a :class:`ToneCurve`:
        how the HR image encodes linear light. ``auto``: 8/16-bit integer images are display
        encoded (sRGB), float images linear.
    hr_gain, hr_offset : ``"auto"`` (estimated from the pair by every model-based method), a
        number, or one number per HR channel: ``y_lin = gain * R^T z + offset``.
    """

    scale: int
    psf: Any = "gaussian"
    srf: Any = None
    wavelengths: Any = None
    n_bands: int | None = None
    boundary: str = "reflect"
    psf_sigma: float | None = None
    psf_size: int | None = None
    psf_sigma2: float | None = None
    psf_angle: float = 0.0
    shift: Any = (0.0, 0.0)
    hr_encoding: Any = "auto"
    hr_gain: Any = "auto"
    hr_offset: Any = "auto"
    psf_name: str = field(init=False, default="")
    srf_name: str = field(init=False, default="")
    channels: tuple = field(init=False, default=())

    def __post_init__(self):
        try:
            ok = not isinstance(self.scale, bool) and float(self.scale).is_integer() and 2 <= float(self.scale)
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise InputError(f"scale must be an integer >= 2, got {self.scale!r}.")
        if float(self.scale) > MAX_SCALE:
            raise InputError(f"scale {self.scale!r} is beyond {MAX_SCALE}: no sensor pair is that far apart; check "
                             "the HR/LR sizes (the scale is their ratio).")
        self.scale = int(self.scale)
        for name in ("psf_sigma", "psf_sigma2", "psf_angle"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float, np.number)) and math.isfinite(value)):
                raise InputError(f"{name} must be a finite number, got {value!r}.")
        if self.boundary not in BOUNDARIES:
            raise InputError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}.")
        self.shift = _check_shift(self.shift, self.scale)
        kernel, self.psf_name = make_psf(self.psf, self.scale, self.psf_sigma, self.psf_size,
                                         self.psf_sigma2, self.psf_angle)
        if kernel.shape[0] < self.scale:
            raise InputError(f"PSF is {kernel.shape[0]}x{kernel.shape[0]} but must be at least "
                             f"scale x scale ({self.scale}x{self.scale}); use a larger kernel.")
        self.psf = kernel
        if self.wavelengths is not None:
            try:
                self.wavelengths = np.asarray(self.wavelengths, dtype=np.float64).ravel().copy()
            except (TypeError, ValueError):
                raise InputError(f"wavelengths must be numbers (band centres in nm), got {self.wavelengths!r:.80}."
                                 ) from None
            if self.n_bands is not None and self.n_bands != self.wavelengths.size:
                raise InputError(f"{self.wavelengths.size} wavelengths given for {self.n_bands} bands.")
            self.n_bands = self.wavelengths.size
        if self.srf is not None:
            from .srf import normalize_signed, resolve_srf

            if isinstance(self.srf, (np.ndarray, list, tuple)):
                try:
                    matrix = np.asarray(self.srf)
                except ValueError:  # ragged lists
                    matrix = np.asarray(self.srf, dtype=object)
                if matrix.ndim not in (1, 2) or matrix.size == 0 or matrix.dtype.kind not in "uif":
                    raise InputError(f"srf: a response matrix is (bands, k) real numbers, got shape {matrix.shape} of "
                                     f"{matrix.dtype}; or give a preset name (list_presets()) or a CSV/NPY file.")
            n = self.n_bands
            if n is None:
                n = np.shape(self.srf)[0] if isinstance(self.srf, (np.ndarray, list, tuple)) else 31
            if isinstance(self.srf, np.ndarray) and np.any(self.srf < 0):
                self.srf = normalize_signed(self.srf, n)
                self.srf_name, self.channels = "user matrix (signed)", tuple(
                    f"channel {i + 1}" for i in range(self.srf.shape[1]))
            else:
                self.srf, self.srf_name, self.channels = resolve_srf(self.srf, self.wavelengths, n)
            self.n_bands = self.srf.shape[0]
        if not isinstance(self.hr_encoding, ToneCurve) and str(self.hr_encoding).strip().lower() != "auto":
            self.hr_encoding = ToneCurve.parse(self.hr_encoding)
        self.hr_gain = _check_radiometry(self.hr_gain, "hr_gain", positive=True)
        self.hr_offset = _check_radiometry(self.hr_offset, "hr_offset", positive=False)

    # ------------------------------------------------------------------ description
    @cached_property
    def kernel(self) -> np.ndarray:
        """The kernel the operators use: the PSF moved by ``shift`` (centred convention kept)."""
        if self.shift == (0.0, 0.0):
            return self.psf
        # the kernel itself translated (exact for whole pixels, bilinear between): its centroid
        # moves by exactly the shift, and a recorded degradation rebuilds the very same kernel
        return shifted_kernel(self.psf, self.scale, self.shift)

    @property
    def kernel_size(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def pad(self) -> tuple[int, int]:
        """HR samples needed before the first and after the last block."""
        return self.spatial_operator.pad

    @property
    def lr_offset(self) -> float:
        """HR coordinate of LR pixel 0's kernel centre without the shift: napari ``translate`` of an
        aligned LR layer whose ``scale`` is ``s`` (LR pixel ``i`` sits at ``i*s + lr_offset``)."""
        K = self.psf.shape[0]
        return (K - 1) / 2.0 - block_offset(K, self.scale)

    @property
    def lr_translate(self) -> tuple[float, float]:
        """napari ``translate`` (y, x) of the LR layer: where its pixels' kernels are centred (their
        centroid), so a shift or an estimated off-centre kernel moves the layer where it belongs."""
        from .physics import kernel_centroid

        if self.shift == (0.0, 0.0) and np.allclose(self.psf, self.psf[::-1, ::-1]):
            return self.lr_offset, self.lr_offset
        return kernel_centroid(self.kernel, self.scale)

    @cached_property
    def spatial_operator(self) -> SpatialOperator:
        return SpatialOperator(self.kernel, self.scale, self.boundary)

    @cached_property
    def spectral_operator(self) -> SpectralOperator:
        self._need_srf()
        gain = None if isinstance(self.hr_gain, str) else self.hr_gain
        offset = None if isinstance(self.hr_offset, str) else self.hr_offset
        k = self.srf.shape[1]
        return SpectralOperator(self.srf, _per_channel(gain, k, "hr_gain"), _per_channel(offset, k, "hr_offset"))

    @property
    def encoding_given(self) -> bool:
        """Whether the HR image's encoding was given (not ``"auto"``, decided from its type)."""
        return not (isinstance(self.hr_encoding, str) and self.hr_encoding.strip().lower() == "auto")

    def tone(self, dtype=np.float32) -> tuple[ToneCurve, str]:
        """The HR image's tone curve for data of ``dtype``, and how it was decided."""
        from .physics import resolve_encoding

        return resolve_encoding(self.hr_encoding, dtype)

    def settings(self) -> dict:
        """JSON-friendly record of this degradation (kernel and SRF values included)."""
        enc = self.hr_encoding
        return {
            "scale": self.scale, "psf": self.psf_name, "psf_kernel": self.psf.tolist(),
            "boundary": self.boundary, "shift": list(self.shift), "srf": self.srf_name,
            "srf_matrix": None if self.srf is None else self.srf.tolist(),
            "channels": list(self.channels),
            "wavelengths": None if self.wavelengths is None else self.wavelengths.tolist(),
            "hr_encoding": enc.settings() if isinstance(enc, ToneCurve) else str(enc),
            "hr_gain": _jsonable(self.hr_gain), "hr_offset": _jsonable(self.hr_offset),
        }

    @classmethod
    def from_settings(cls, record: dict) -> Degradation:
        """Rebuild a degradation from :meth:`settings` (e.g. a result's recorded or estimated one)."""
        enc = record.get("hr_encoding", "auto")
        if isinstance(enc, dict):
            enc = ToneCurve("table", knots=tuple(enc["knots"]), table=tuple(map(tuple, enc["table"]))) \
                if enc.get("encoding") == "learned" else enc["encoding"]
        srf = record.get("srf_matrix")
        deg = cls(scale=record["scale"], psf=np.asarray(record["psf_kernel"], dtype=float),
                  srf=None if srf is None else np.asarray(srf, dtype=float),
                  wavelengths=record.get("wavelengths"), boundary=record.get("boundary", "reflect"),
                  shift=record.get("shift", (0.0, 0.0)), hr_encoding=enc,
                  hr_gain=record.get("hr_gain", "auto"), hr_offset=record.get("hr_offset", "auto"))
        deg.psf_name = record.get("psf", deg.psf_name)
        deg.srf_name = record.get("srf", deg.srf_name)
        if record.get("channels"):
            deg.channels = tuple(record["channels"])
        return deg

    def with_(self, **changes) -> Degradation:
        """A copy with some fields replaced (e.g. an estimated PSF, shift or gain)."""
        kw = dict(scale=self.scale, psf=self.psf, srf=self.srf, wavelengths=self.wavelengths,
                  n_bands=self.n_bands, boundary=self.boundary, shift=self.shift, hr_encoding=self.hr_encoding,
                  hr_gain=self.hr_gain, hr_offset=self.hr_offset)
        kw.update(changes)
        new = Degradation(**kw)
        if "psf" not in changes:
            new.psf_name = self.psf_name
        if "srf" not in changes:  # the very values, not a re-normalised copy
            new.srf = None if self.srf is None else self.srf.copy()
            new.srf_name, new.channels = self.srf_name, self.channels
        return new

    def check_shapes(self, hr_shape: tuple, lr_shape: tuple) -> None:
        """Raise an InputError unless HR ``(Y, X)`` is exactly ``scale`` times LR ``(y, x)``."""
        check_pair_shapes(hr_shape, lr_shape, self.scale)

    # ------------------------------------------------------------------ operators
    def spatial(self, z):
        """Blur + decimate: ``(..., C, Y, X) -> (..., C, Y/s, X/s)``."""
        return self.spatial_operator(z)

    def spatial_adjoint(self, x):
        """Adjoint of :meth:`spatial`: ``(..., C, y, x) -> (..., C, y*s, x*s)``."""
        return self.spatial_operator.adjoint(x)

    def spectral(self, z):
        """Apply the SRF: ``(..., C, Y, X) -> (..., k, Y, X)`` (channels first; linear light,
        no gain or offset: see :attr:`spectral_operator` for those)."""
        return self.spectral_operator.linear(z)

    def spectral_adjoint(self, y):
        """Adjoint of :meth:`spectral`: ``(..., k, Y, X) -> (..., C, Y, X)``."""
        return self.spectral_operator.adjoint(y)

    def _need_srf(self):
        if self.srf is None:
            raise InputError("This degradation has no spectral response: give srf=... "
                             "(a preset name such as 'Nikon D700', a file, or a (bands, k) matrix).")


ESTIMATE_SRF = ("estimate", "auto")  # a response the user asks to be estimated from the pair


@dataclass(frozen=True)
class DegradationSpec:
    """What a user says about the degradation, the one way every front end builds a
    :class:`Degradation` from it (the CLI's flags, a batch manifest's row, the dock's form).

    None means "not given": :meth:`build` fills the command line's defaults (Gaussian PSF of sigma
    ``scale/4`` and size ``scale``, angle 0, ``reflect`` boundary, ``default_srf``), or takes the
    degradation an LR file records when nothing spatial or spectral is given. ``srf`` may be
    ``"estimate"`` (from the pair); ``wavelengths`` a ``start:stop:step`` text in nm; ``shift`` a
    ``dy,dx`` text. ``flags=True`` names fields as command-line flags in messages (``--shift``)."""

    scale: int | None = None
    psf: Any = None
    psf_sigma: float | None = None
    psf_size: int | None = None
    psf_sigma2: float | None = None
    psf_angle: float | None = None
    boundary: str | None = None
    srf: Any = None
    wavelengths: Any = None
    n_bands: int | None = None
    shift: Any = None
    hr_encoding: Any = "auto"
    hr_gain: Any = "auto"
    hr_offset: Any = "auto"
    flags: bool = False

    # what, when any is given, replaces the degradation an LR file records
    DESCRIBING = ("psf", "psf_sigma", "psf_sigma2", "psf_angle", "psf_size", "boundary", "srf")

    def _name(self, field_name: str) -> str:
        return "--" + field_name.replace("_", "-") if self.flags else field_name

    def describes(self) -> bool:
        """Whether the spec says anything about the PSF, boundary or response."""
        return any(getattr(self, f) is not None for f in self.DESCRIBING)

    def build(self, recorded: dict | None = None, hr_dtype=None, default_srf=None) -> tuple[Degradation, str]:
        """The :class:`Degradation`, and a note on where it came from ('' when from the spec)."""
        if recorded and not self.describes():
            return self._recorded(recorded, hr_dtype)
        srf = self.srf if self.srf is not None else default_srf
        if isinstance(srf, str) and srf.strip().lower() in ESTIMATE_SRF:
            srf = None
        wavelengths = self.wavelengths
        if isinstance(wavelengths, str):
            wavelengths = parse_wavelength_range(wavelengths, self._name("wavelengths"))
        shift = self.shift if self.shift is not None else (0.0, 0.0)
        if isinstance(shift, str):
            shift = parse_shift(shift, self._name("shift"))
        deg = Degradation(scale=self.scale, psf="gaussian" if self.psf is None else self.psf, srf=srf,
                          wavelengths=wavelengths, n_bands=self.n_bands, boundary=self.boundary or "reflect",
                          psf_sigma=self.psf_sigma, psf_size=self.psf_size, psf_sigma2=self.psf_sigma2,
                          psf_angle=self.psf_angle or 0.0, shift=shift, hr_encoding=self.hr_encoding,
                          hr_gain=self.hr_gain, hr_offset=self.hr_offset)
        return deg, ""

    def _recorded(self, recorded: dict, hr_dtype) -> tuple[Degradation, str]:
        """The degradation an LR file records (``hsisr simulate``), except for the response and
        encoding of an 8/16-bit HR image: a camera's image, not the simulation's linear one."""
        deg = Degradation.from_settings(recorded)
        if self.scale is not None and int(self.scale) != deg.scale:
            raise InputError(f"{self._name('scale')} {self.scale} but the LR file records scale {deg.scale}; give "
                             f"both images' degradation, or drop {self._name('scale')}.")
        if hr_dtype is not None and np.issubdtype(np.dtype(hr_dtype), np.integer):
            deg = deg.with_(srf=None, hr_encoding=self.hr_encoding, hr_gain="auto", hr_offset="auto")
            return deg, (f"using the PSF the LR file records ({deg.psf_name}); the HR image is a {np.dtype(hr_dtype)} "
                         f"camera image, so its response and encoding are estimated from the pair ({self._name('srf')} "
                         "to give them)")
        return deg, f"using the degradation the LR file records ({deg.psf_name}, {deg.srf_name})"

    @classmethod
    def from_settings(cls, record: dict) -> DegradationSpec:
        """The spec that rebuilds a recorded degradation (:meth:`Degradation.settings`): kernel,
        response, wavelengths, boundary, shift, encoding, gains and offsets."""
        deg = Degradation.from_settings(record)
        return cls(scale=deg.scale, psf=deg.psf, srf=deg.srf, wavelengths=deg.wavelengths, boundary=deg.boundary,
                   shift=deg.shift, hr_encoding=deg.hr_encoding, hr_gain=deg.hr_gain, hr_offset=deg.hr_offset)


def parse_shift(text: str, name: str = "shift") -> tuple[float, float]:
    """``"dy,dx"`` in HR pixels as two floats."""
    try:
        shift = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        shift = ()
    if len(shift) != 2:
        raise InputError(f"{name} expects 'dy,dx' in HR pixels, got {text!r}.")
    return shift


def parse_wavelength_range(text: str, name: str = "wavelengths") -> np.ndarray:
    """``"start:stop:step"`` in nm as the band centres (stop included)."""
    try:
        start, stop, step = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise InputError(f"{name} expects start:stop:step in nm, e.g. 400:700:10, got {text!r}.") from None
    if not (np.isfinite([start, stop, step]).all() and step > 0 and stop >= start):
        raise InputError(f"{name} {text!r}: the step must be > 0 and stop >= start (e.g. 400:700:10).")
    if (stop - start) / step > 100000:
        raise InputError(f"{name} {text!r} makes more than 100000 bands; check the step.")
    return np.arange(start, stop + step / 2, step)


MAX_SHIFT_LR_PIXELS = 16  # a misregistration beyond this is not a sub-pixel offset: register or crop first


def _check_shift(shift, scale: int) -> tuple[float, float]:
    try:
        dy, dx = (float(v) for v in np.broadcast_to(np.asarray(shift, dtype=float), (2,)))
    except (TypeError, ValueError):
        raise InputError(f"shift must be (dy, dx) in HR pixels, got {shift!r}.") from None
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise InputError(f"shift must be finite, got {shift!r}.")
    if max(abs(dy), abs(dx)) > MAX_SHIFT_LR_PIXELS * scale:
        raise InputError(f"shift ({dy:g}, {dx:g}) HR pixels is more than {MAX_SHIFT_LR_PIXELS} LR pixels "
                         f"({MAX_SHIFT_LR_PIXELS * scale} HR pixels at scale {scale}); the shift is the small offset "
                         "left after registration: crop both images to the same area first.")
    return dy, dx


def _check_radiometry(value, name: str, positive: bool):
    if isinstance(value, str):
        if value.strip().lower() != "auto":
            raise InputError(f"{name} must be 'auto', a number or one number per HR channel, got {value!r}.")
        return "auto"
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=np.float64)).copy()
    except (TypeError, ValueError):
        raise InputError(f"{name} must be 'auto', a number or one number per HR channel, got {value!r}.") from None
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
        raise InputError(f"{name} must be {'positive ' if positive else ''}finite number(s), got {value!r}.")
    return arr


def _per_channel(value, k: int, name: str):
    if value is None:
        return None
    if value.size == 1:
        return np.full(k, float(value[0]))
    if value.size != k:
        raise InputError(f"{name} has {value.size} values but the HR image has {k} channels; give one per channel.")
    return value


def _jsonable(value):
    return value if isinstance(value, str) else np.asarray(value).tolist()


