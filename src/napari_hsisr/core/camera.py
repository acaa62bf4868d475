"""Render a hyperspectral cube through a camera pipeline: the HR image a real camera would write.

A :class:`CameraPipeline` describes one camera, from the scene to the file, and :func:`render`
applies it to a reflectance (or radiance) cube ``(C, Y, X)`` with band centres ``wavelengths``:

1. **response**: raw channel values ``cube^T R`` with the camera's measured sensitivities (a preset
   of :mod:`.srf`: the 28 camspec cameras, ``"sRGB (CIE 1931, D65)"``, ...; or a ``(C, 3)``
   matrix on the cube's bands). The channels keep their *relative* sensitivities (the whole
   matrix is scaled so that a flat spectrum of 1 gives G = 1): without white balance a camera's
   raw image has its colour cast. Negative values (a signed, colour-corrected response) clip at 0.
2. **registration offset** ``offset = (dy, dx)`` in HR pixels, sub-pixel allowed: the content
   moves by it (``out[y, x] = in[y - dy, x - dx]``, cubic spline, reflect boundary).
3. **exposure** (a multiplier of the light) and **vignetting** (``cos4``: natural cos^4 fall-off
   of a lens whose corners get ``1 - vignetting`` of the light; ``poly``: ``1 - v (r^2 + r^4) / 2``
   with ``r`` = 1 at the corners).
4. **Bayer mosaic** (``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``), one value per photosite.
5. **sensor noise** (Poisson-Gaussian, seeded): ``full_well`` electrons at saturation (shot noise)
   and ``read_noise`` electrons rms; then the sensor **saturates** at 1 (clipped highlights:
   push ``exposure`` above 1 to clip them).
6. **demosaic**, bilinear, by convolution (:func:`demosaic_bilinear`).
7. **white balance**: ``"none"``, ``"daylight"`` (fixed per-channel gains that make a flat, white
   spectrum neutral) or ``"grey_world"`` (gains that make the image's mean grey); clip to [0, 1].
8. **tone curve** (:func:`tone_curve`): ``linear``, ``srgb``, ``gamma:<g>``, the S-curves
   ``logistic[:k]`` (a contrast S-curve on sRGB values), ``hable`` (Uncharted-2 filmic) and
   ``aces`` (Narkowicz's ACES fit), a toe ``toe[:t]`` (crushed shadows) and ``log[:a]`` (a flat,
   log-like profile). Every curve is monotone and maps [0, 1] onto [0, 1].
9. **quantisation** to ``bit_depth`` 8 or 16 bits, then optionally **JPEG** (8 bits only;
   ``jpeg_quality`` 1..100, chroma ``jpeg_subsampling`` ``"420"`` by default) through imagecodecs.

The output is deterministic given ``seed`` (only the noise draws from it). The stages are public
functions, so a training augmentation can reuse them; :func:`random_pipeline` draws a realistic
random camera and :func:`suite_pipelines` lists the named pipelines of the camera stress suite
(``benchmarks/cameras.py``). numpy, scipy and imagecodecs only; no Qt or napari imports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = [
    "SRGB_RESPONSE",
    "TONE_CURVES",
    "WHITE_BALANCES",
    "CameraPipeline",
    "bayer_masks",
    "camera_response",
    "demosaic_bilinear",
    "get_pipeline",
    "jpeg_roundtrip",
    "mosaic",
    "random_pipeline",
    "render",
    "sensor_noise",
    "shift_image",
    "suite_pipelines",
    "tone_curve",
    "vignetting_map",
    "white_balance_gains",
]

SRGB_RESPONSE = "sRGB (CIE 1931, D65)"
WHITE_BALANCES = ("none", "grey_world", "daylight")
TONE_CURVES = ("linear", "srgb", "gamma:<g>", "logistic[:k]", "hable", "aces", "toe[:t]", "log[:a]")
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
_CHANNEL = {"R": 0, "G": 1, "B": 2}


# ---------------------------------------------------------------------- the pipeline
@dataclass(frozen=True)
class CameraPipeline:
    """One camera, from the scene's light to the file it writes (see the module docstring).

    ``response`` is a preset name or a ``(C, 3)`` matrix on the cube's bands (stored as a tuple of
    rows, so pipelines stay hashable). ``offset`` is ``(dy, dx)`` in HR pixels.
    """

    name: str = "sRGB camera"
    response: Any = SRGB_RESPONSE
    white_balance: str = "daylight"
    exposure: float = 1.0
    tone: str = "srgb"
    bit_depth: int = 8
    jpeg_quality: int | None = None
    jpeg_subsampling: str = "420"
    bayer: str | None = None
    full_well: float | None = None
    read_noise: float = 0.0
    vignetting: float = 0.0
    vignetting_model: str = "cos4"
    offset: tuple = (0.0, 0.0)

    def __post_init__(self):
        if not isinstance(self.response, str):
            m = np.asarray(self.response, dtype=np.float64)
            if m.ndim != 2 or m.shape[1] != 3 or not np.all(np.isfinite(m)):
                raise InputError(f"camera response must be a preset name or a finite (C, 3) matrix, got {m.shape}.")
            object.__setattr__(self, "response", tuple(map(tuple, m.tolist())))
        if self.white_balance not in WHITE_BALANCES:
            raise InputError(f"white_balance must be one of {WHITE_BALANCES}, got {self.white_balance!r}.")
        if not (math.isfinite(self.exposure) and self.exposure > 0):
            raise InputError(f"exposure must be a positive number, got {self.exposure!r}.")
        tone_curve(self.tone)  # validates
        if self.bit_depth not in (8, 16):
            raise InputError(f"bit_depth must be 8 or 16, got {self.bit_depth!r}.")
        if self.jpeg_quality is not None:
            if self.bit_depth != 8:
                raise InputError("JPEG needs bit_depth 8.")
            if not 1 <= int(self.jpeg_quality) <= 100:
                raise InputError(f"jpeg_quality must be 1..100 or None, got {self.jpeg_quality!r}.")
        if self.jpeg_subsampling not in ("444", "422", "420", "411", "440"):
            raise InputError(f"jpeg_subsampling must be '444', '422', '420', '411' or '440', "
                             f"got {self.jpeg_subsampling!r}.")
        if self.bayer is not None and self.bayer not in BAYER_PATTERNS:
            raise InputError(f"bayer must be None or one of {BAYER_PATTERNS}, got {self.bayer!r}.")
        if self.full_well is not None and not self.full_well > 0:
            raise InputError(f"full_well must be a positive number of electrons or None, got {self.full_well!r}.")
        if not self.read_noise >= 0:
            raise InputError(f"read_noise must be >= 0 electrons, got {self.read_noise!r}.")
        if not 0 <= self.vignetting < 1:
            raise InputError(f"vignetting (light lost at the corners) must be in [0, 1), got {self.vignetting!r}.")
        if self.vignetting_model not in ("cos4", "poly"):
            raise InputError(f"vignetting_model must be 'cos4' or 'poly', got {self.vignetting_model!r}.")
        dy, dx = (float(v) for v in self.offset)
        if not (math.isfinite(dy) and math.isfinite(dx)):
            raise InputError(f"offset must be two finite numbers (dy, dx), got {self.offset!r}.")
        object.__setattr__(self, "offset", (dy, dx))

    def with_(self, **changes) -> CameraPipeline:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    @property
    def response_name(self) -> str:
        return self.response if isinstance(self.response, str) else "user matrix"

    def settings(self) -> dict:
        """JSON-friendly record (a matrix response is written as its rows)."""
        out = asdict(self)
        out["response"] = self.response if isinstance(self.response, str) else [list(r) for r in self.response]
        out["offset"] = list(self.offset)
        return out

    def describe(self) -> str:
        """One line: what differs from the plain sRGB camera."""
        base = CameraPipeline()
        parts = []
        for key in ("response", "white_balance", "exposure", "tone", "bit_depth", "jpeg_quality", "bayer",
                    "full_well", "read_noise", "vignetting", "offset"):
            value = getattr(self, key)
            if value == getattr(base, key):
                continue
            if key == "response":
                parts.append(self.response_name)
            elif key == "white_balance":
                parts.append(f"WB {value}")
            elif key == "exposure":
                parts.append(f"exposure x{value:g}")
            elif key == "tone":
                parts.append(f"tone {value}")
            elif key == "bit_depth":
                parts.append(f"{value} bit")
            elif key == "jpeg_quality":
                parts.append(f"JPEG q{value} {self.jpeg_subsampling}")
            elif key == "bayer":
                parts.append(f"Bayer {value} bilinear")
            elif key == "full_well":
                parts.append(f"shot noise (full well {value:g} e-)")
            elif key == "read_noise":
                parts.append(f"read noise {value:g} e-")
            elif key == "vignetting":
                parts.append(f"vignetting {self.vignetting_model} {100 * value:g}% at corners")
            elif key == "offset":
                parts.append(f"offset ({value[0]:g}, {value[1]:g}) px")
        return ", ".join(parts) or "sRGB response, daylight WB, sRGB tone, 8 bit"


# ---------------------------------------------------------------------- stages
def camera_response(response: Any, wavelengths: Any, n_bands: int | None = None) -> np.ndarray:
    """The camera's raw sensitivities on the cube's bands: ``(C, 3)`` float64, scaled as a whole so
    that a flat spectrum of 1 gives G = 1 (the channels' relative sensitivities are kept).

    ``response``: a preset name (linearly interpolated at ``wavelengths``, 0 outside the table) or a
    ``(C, 3)`` matrix on the cube's bands (tuple of rows accepted)."""
    if isinstance(response, str):
        from .srf import get_preset

        srf = get_preset(response)
        if srf.n_channels != 3:
            raise InputError(f"camera response {response!r} has {srf.n_channels} channels; a camera needs 3.")
        if wavelengths is None:
            raise InputError("wavelengths (nm) are needed to resample a camera response preset.")
        wl = np.asarray(wavelengths, dtype=np.float64).ravel()
        m = np.stack([np.interp(wl, srf.wavelengths, srf.matrix[:, j], left=0.0, right=0.0) for j in range(3)], 1)
    else:
        m = np.asarray(response, dtype=np.float64)
        if m.ndim != 2 or m.shape[1] != 3:
            raise InputError(f"camera response matrix must be (C, 3), got {m.shape}.")
    if n_bands is not None and m.shape[0] != n_bands:
        raise InputError(f"camera response has {m.shape[0]} bands but the cube has {n_bands}.")
    flat = m.sum(axis=0)
    if not np.all(flat > 0):
        raise InputError("camera response: every channel must respond positively to a flat spectrum "
                         f"(sums {flat.tolist()}); check the wavelengths.")
    return m / flat[1]


def white_balance_gains(mode: str, response: np.ndarray | None = None, image: np.ndarray | None = None
                        ) -> np.ndarray:
    """Per-channel gains (3,), G = 1. ``daylight``: a flat spectrum through ``response`` comes out
    neutral; ``grey_world``: the mean of ``image`` (Y, X, 3) comes out grey; ``none``: ones."""
    if mode == "none":
        return np.ones(3)
    if mode == "daylight":
        ref = np.asarray(response, dtype=np.float64).sum(axis=0)
    elif mode == "grey_world":
        ref = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    else:
        raise InputError(f"white_balance must be one of {WHITE_BALANCES}, got {mode!r}.")
    ref = np.maximum(ref, 1e-6 * max(float(ref.max()), 1e-12))
    return ref[1] / ref


def _srgb(x):
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055)


def _hable(x):
    A, B, C, D, E, F = 0.15, 0.50, 0.10, 0.20, 0.02, 0.30
    return (x * (A * x + C * B) + D * E) / (x * (A * x + B) + D * F) - E / F


def _aces(x):
    return x * (2.51 * x + 0.03) / (x * (2.43 * x + 0.59) + 0.14)


def _param(spec: str, default: float, lo: float, hi: float) -> float:
    name, _, value = spec.partition(":")
    if not value:
        return default
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and lo <= v <= hi):
        raise InputError(f"tone curve {spec!r}: the parameter of {name!r} must be a number in [{lo:g}, {hi:g}].")
    return v


def tone_curve(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    """The tone curve ``spec`` as a function linear light [0, 1] -> display value [0, 1] (monotone,
    0 -> 0, 1 -> 1; inputs are clipped to [0, 1]). See :data:`TONE_CURVES`:

    ``linear``; ``srgb`` (IEC 61966-2-1); ``gamma:<g>`` (``x^(1/g)``, 1 <= g <= 4); ``logistic[:k]``
    (contrast S-curve on the sRGB value, steepness k in [1, 12], default 5); ``hable`` (Uncharted-2
    filmic, white at 4, display gamma 2.2); ``aces`` (Narkowicz's ACES fit, display gamma 2.2);
    ``toe[:t]`` (shadows crushed by ``x^2/(x+t)``, t in (0, 0.5], default 0.04, then sRGB);
    ``log[:a]`` (flat log profile ``log(1+a x)/log(1+a)``, a in [1, 1000], default 50).
    """
    text = str(spec).strip().lower()
    kind = text.partition(":")[0]
    if kind == "linear" and text == "linear":
        f = lambda x: x
    elif text == "srgb":
        f = _srgb
    elif kind == "gamma":
        g = _param(text if ":" in text else "gamma:nan", 2.2, 1.0, 4.0)
        f = lambda x: np.power(x, 1.0 / g)
    elif kind == "logistic":
        k = _param(text, 5.0, 1.0, 12.0)
        lo, hi = 1 / (1 + math.exp(k / 2)), 1 / (1 + math.exp(-k / 2))
        f = lambda x: (1 / (1 + np.exp(-k * (_srgb(x) - 0.5))) - lo) / (hi - lo)
    elif text == "hable":
        white = 4.0
        f = lambda x: np.power(np.maximum(_hable(white * x) / _hable(white), 0.0), 1 / 2.2)
    elif text == "aces":
        f = lambda x: np.power(_aces(x) / _aces(1.0), 1 / 2.2)
    elif kind == "toe":
        t = _param(text, 0.04, 1e-4, 0.5)
        f = lambda x: _srgb(x * x / (x + t) * (1 + t))
    elif kind == "log":
        a = _param(text, 50.0, 1.0, 1000.0)
        f = lambda x: np.log1p(a * x) / math.log1p(a)
    else:
        raise InputError(f"tone curve {spec!r} is not one of {', '.join(TONE_CURVES)}.")

    def curve(x):
        return np.clip(f(np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)), 0.0, 1.0)

    curve.__name__ = f"tone_{kind}"
    return curve


def vignetting_map(shape: tuple[int, int], vignetting: float, model: str = "cos4") -> np.ndarray:
    """Relative illumination (Y, X): 1 at the centre, ``1 - vignetting`` at the corners."""
    Y, X = shape
    if vignetting <= 0:
        return np.ones((Y, X))
    yy, xx = np.mgrid[0:Y, 0:X].astype(np.float64)
    cy, cx = (Y - 1) / 2.0, (X - 1) / 2.0
    r = np.hypot(yy - cy, xx - cx) / max(math.hypot(cy, cx), 1e-12)  # 1 at the corners
    if model == "cos4":
        cos_c = (1.0 - vignetting) ** 0.25  # cos^4 of the corner's field angle = 1 - vignetting
        tan_c = math.sqrt(1.0 / cos_c ** 2 - 1.0)
        return np.cos(np.arctan(r * tan_c)) ** 4
    if model == "poly":
        return 1.0 - vignetting * 0.5 * (r ** 2 + r ** 4)
    raise InputError(f"vignetting_model must be 'cos4' or 'poly', got {model!r}.")


def bayer_masks(shape: tuple[int, int], pattern: str = "RGGB") -> np.ndarray:
    """Boolean (Y, X, 3): which photosites carry R, G, B for a 2x2 ``pattern`` (row-major)."""
    Y, X = shape
    masks = np.zeros((Y, X, 3), dtype=bool)
    for i, letter in enumerate(pattern.upper()):
        masks[i // 2::2, i % 2::2, _CHANNEL[letter]] = True
    return masks


def mosaic(image: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """(Y, X, 3) -> (Y, X): each photosite keeps the channel of its colour filter."""
    return np.sum(image * bayer_masks(image.shape[:2], pattern), axis=2)


_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 4.0
_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float64) / 4.0


def demosaic_bilinear(raw: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Bilinear demosaic of a (Y, X) mosaic by convolution: (Y, X, 3). The ``mirror`` boundary keeps
    the filter pattern's parity, so a flat mosaic demosaics to a flat image, edges included."""
    masks = bayer_masks(raw.shape, pattern)
    out = np.empty(raw.shape + (3,), dtype=np.float64)
    for c, kernel in ((0, _K_RB), (1, _K_G), (2, _K_RB)):
        out[..., c] = ndimage.convolve(raw * masks[..., c], kernel, mode="mirror")
    return out


def sensor_noise(signal: np.ndarray, full_well: float | None, read_noise: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise: ``signal`` (1 = full well) -> Poisson(signal * full_well electrons)
    plus Gaussian read noise (``read_noise`` electrons rms), back to the same units."""
    if full_well is None:
        return signal.copy()
    electrons = rng.poisson(np.clip(signal, 0.0, None) * full_well).astype(np.float64)
    if read_noise > 0:
        electrons += rng.normal(0.0, read_noise, size=signal.shape)
    return electrons / full_well


def shift_image(image: np.ndarray, offset: tuple[float, float]) -> np.ndarray:
    """Move (Y, X, ...) content by ``offset = (dy, dx)`` pixels: ``out[y, x] = in[y - dy, x - dx]``
    (cubic spline, reflect boundary; whole-pixel shifts are exact)."""
    dy, dx = offset
    if dy == 0 and dx == 0:
        return image.copy()
    shift = (dy, dx) + (0,) * (image.ndim - 2)
    if float(dy).is_integer() and float(dx).is_integer():
        return ndimage.shift(image, shift, order=0, mode="reflect")
    return ndimage.shift(image, shift, order=3, mode="reflect")


def jpeg_roundtrip(image: np.ndarray, quality: int, subsampling: str = "420") -> np.ndarray:
    """Encode a uint8 (Y, X, 3) image as a baseline JPEG (libjpeg via imagecodecs, YCbCr with the
    given chroma subsampling) and decode it back."""
    import imagecodecs

    data = imagecodecs.jpeg8_encode(np.ascontiguousarray(image, dtype=np.uint8), level=int(quality),
                                    subsampling=subsampling)
    return np.asarray(imagecodecs.jpeg8_decode(data), dtype=np.uint8)


# ---------------------------------------------------------------------- the renderer
def render(cube: Any, wavelengths: Any, pipeline: CameraPipeline | str = "srgb", seed: int | None = 0,
           return_linear: bool = False):
    """The image ``pipeline`` writes for a scene ``cube`` (C, Y, X) with band centres ``wavelengths``
    (nm): uint8 or uint16 (Y, X, 3). ``pipeline`` may be a suite name (:func:`suite_pipelines`).
    Deterministic given ``seed``. ``return_linear=True`` also returns the white-balanced linear
    image before the tone curve (float64 (Y, X, 3), in [0, 1])."""
    if isinstance(pipeline, str):
        pipeline = get_pipeline(pipeline)
    z = np.asarray(cube, dtype=np.float64)
    if z.ndim != 3:
        raise InputError(f"cube must be (C, Y, X), got shape {z.shape}.")
    if not np.all(np.isfinite(z)):
        raise InputError("cube has non-finite values; a camera renderer needs a complete scene.")
    rng = np.random.default_rng(seed)
    R = camera_response(pipeline.response, wavelengths, z.shape[0])
    lin = np.clip(np.tensordot(z, R, axes=(0, 0)), 0.0, None)  # (Y, X, 3) raw light
    lin = np.clip(shift_image(lin, pipeline.offset), 0.0, None)
    lin *= pipeline.exposure
    lin *= vignetting_map(lin.shape[:2], pipeline.vignetting, pipeline.vignetting_model)[..., None]
    if pipeline.bayer:
        raw = sensor_noise(mosaic(lin, pipeline.bayer), pipeline.full_well, pipeline.read_noise, rng)
        lin = demosaic_bilinear(np.clip(raw, 0.0, 1.0), pipeline.bayer)
    else:
        lin = np.clip(sensor_noise(lin, pipeline.full_well, pipeline.read_noise, rng), 0.0, 1.0)
    gains = white_balance_gains(pipeline.white_balance, R, lin)
    lin = np.clip(lin * gains, 0.0, 1.0)
    display = tone_curve(pipeline.tone)(lin)
    peak = 2 ** pipeline.bit_depth - 1
    out = np.rint(display * peak).astype(np.uint8 if pipeline.bit_depth == 8 else np.uint16)
    if pipeline.jpeg_quality is not None:
        out = jpeg_roundtrip(out, pipeline.jpeg_quality, pipeline.jpeg_subsampling)
    return (out, lin) if return_linear else out


# ---------------------------------------------------------------------- the stress suite
BASE = CameraPipeline(name="srgb")


def suite_pipelines() -> dict[str, CameraPipeline]:
    """The named pipelines of the camera stress suite (``benchmarks/cameras.py``), in order.

    Each starts from the plain sRGB camera (``srgb``: the CIE 1931 / sRGB colour matching
    functions, daylight white balance, sRGB tone curve, 8 bits) and changes one or two things;
    the last three change everything at once (a phone, a DSLR JPEG, a machine-vision camera)."""
    b = BASE
    p = [
        b,
        # other cameras' measured responses (camspec), otherwise the sRGB camera
        b.with_(name="canon60d", response="Canon 60D"),
        b.with_(name="nikond3x", response="Nikon D3X"),
        b.with_(name="sonynex5n", response="SONY NEX-5N"),
        b.with_(name="olympus-epl2", response="Olympus E-PL2"),
        b.with_(name="nokia-n900", response="Nokia N900"),
        b.with_(name="grasshopper2", response="Point Grey Grasshopper2 14S5C"),
        b.with_(name="hasselblad-h2", response="Hasselblad H2"),
        # white balance
        b.with_(name="wb-greyworld", white_balance="grey_world"),
        b.with_(name="wb-none", white_balance="none"),
        b.with_(name="nikond3x-wb-none", response="Nikon D3X", white_balance="none"),
        b.with_(name="sonynex5n-greyworld", response="SONY NEX-5N", white_balance="grey_world"),
        # tone curves
        b.with_(name="gamma1.8", tone="gamma:1.8"),
        b.with_(name="gamma2.6", tone="gamma:2.6"),
        b.with_(name="scurve-logistic", tone="logistic:5"),
        b.with_(name="filmic-hable", tone="hable"),
        b.with_(name="filmic-aces", tone="aces"),
        b.with_(name="toe", tone="toe:0.04"),
        b.with_(name="linear16", tone="linear", bit_depth=16),
        # compression, sensor and optics
        b.with_(name="jpeg95", jpeg_quality=95),
        b.with_(name="jpeg60", jpeg_quality=60),
        b.with_(name="bayer", bayer="RGGB"),
        b.with_(name="shot-noise", full_well=2000.0, read_noise=4.0),
        b.with_(name="vignetting", vignetting=0.4, vignetting_model="cos4"),
        b.with_(name="clipped", exposure=2.5),
        b.with_(name="offset0.5", offset=(0.5, -0.5)),
        b.with_(name="offset2", offset=(2.0, -2.0)),
        # two things at once
        b.with_(name="canon60d-jpeg80", response="Canon 60D", jpeg_quality=80),
        b.with_(name="aces-greyworld", tone="aces", white_balance="grey_world"),
        # everything at once
        CameraPipeline(name="phone", response="Nokia N900", white_balance="grey_world", exposure=1.3,
                       tone="aces", bayer="RGGB", full_well=1000.0, read_noise=3.0, vignetting=0.5,
                       vignetting_model="poly", jpeg_quality=70, offset=(0.5, 0.5)),
        CameraPipeline(name="dslr-jpeg", response="Canon 60D", white_balance="daylight", exposure=1.6,
                       tone="logistic:6", bayer="RGGB", full_well=20000.0, read_noise=3.0, vignetting=0.25,
                       jpeg_quality=90),
        CameraPipeline(name="machine-vision", response="Point Grey Grasshopper2 14S5C", white_balance="none",
                       tone="gamma:1.8", bayer="RGGB", full_well=5000.0, read_noise=8.0, offset=(2.0, 1.0)),
    ]
    return {q.name: q for q in p}


def get_pipeline(name: str) -> CameraPipeline:
    """A suite pipeline by name (see :func:`suite_pipelines`)."""
    suite = suite_pipelines()
    if name not in suite:
        raise InputError(f"unknown camera pipeline {name!r}; the suite has: {', '.join(suite)}.")
    return suite[name]


def random_pipeline(rng: np.random.Generator, responses: list[str] | None = None) -> CameraPipeline:
    """A random, realistic camera (for training augmentation): a response drawn from ``responses``
    (default: the 28 camspec cameras and the sRGB response), a white balance, a tone curve, and
    with some probability JPEG, a Bayer mosaic, sensor noise, vignetting, an exposure push and a
    registration offset of up to 1 HR pixel."""
    if responses is None:
        from .srf import CIE_1931, NIKON_D700_CAVE, list_presets

        responses = [n for n in list_presets() if n not in (CIE_1931, NIKON_D700_CAVE)]
    tones = ["srgb", f"gamma:{rng.uniform(1.8, 2.6):.2f}", f"logistic:{rng.uniform(3, 7):.1f}", "hable", "aces",
             f"toe:{rng.uniform(0.01, 0.08):.3f}"]
    jpeg = int(rng.integers(60, 96)) if rng.random() < 0.5 else None
    return CameraPipeline(
        name="random",
        response=str(responses[int(rng.integers(len(responses)))]),
        white_balance=str(rng.choice(["daylight", "grey_world", "none"], p=[0.45, 0.45, 0.1])),
        exposure=float(np.exp(rng.uniform(np.log(0.7), np.log(2.0)))),
        tone=str(tones[int(rng.integers(len(tones)))]),
        jpeg_quality=jpeg,
        bayer="RGGB" if rng.random() < 0.5 else None,
        full_well=float(np.exp(rng.uniform(np.log(500), np.log(30000)))) if rng.random() < 0.5 else None,
        read_noise=float(rng.uniform(0, 8)),
        vignetting=float(rng.uniform(0, 0.5)) if rng.random() < 0.5 else 0.0,
        vignetting_model=str(rng.choice(["cos4", "poly"])),
        offset=tuple(float(v) for v in rng.uniform(-1, 1, 2)) if rng.random() < 0.3 else (0.0, 0.0),
    )
