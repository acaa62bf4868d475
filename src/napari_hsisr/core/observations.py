"""From the pair a user has to the pair the forward model describes.

A camera image is display-encoded, has its own gains and offsets and clips highlights; a cube
from another instrument has nodata pixels. :func:`prepare` decodes the HR image to linear light
(:class:`~.physics.ToneCurve`), marks the pixels that must not count (saturated HR pixels, NaN,
nodata LR pixels), and, for methods that use the spectral response, estimates the per-channel
gain and offset (:func:`~.estimation.fit_gain_offset`) and removes them, so that the methods see
``y = R^T z`` exactly as in a simulation. Everything it decided is recorded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import InputError


@dataclass
class Prepared:
    hr: np.ndarray  # (k, Y, X) float32: linear light, gain and offset removed when known/estimated
    lr: np.ndarray  # (C, y, x) float32; nodata pixels filled from their nearest valid neighbour
    hr_display: np.ndarray  # (k, Y, X) float32: the HR image as given, scaled to [0, 1] for integers
    hr_valid: np.ndarray | None  # (Y, X) bool, None = all valid
    lr_valid: np.ndarray | None  # (y, x) bool, None = all valid
    degradation: object  # the Degradation with encoding (and gain/offset when fitted) resolved
    notes: dict = field(default_factory=dict)


def float_clip_level(top: float, at_top: int, pixels: int) -> float:
    """A float image's clipping level: its maximum ``top`` when a plateau of pixels shares it
    (``at_top`` values of ``pixels``: >= 0.1 %, at least 4), else none (inf)."""
    return top if at_top >= max(4, 1e-3 * pixels) else np.inf


def saturation_mask(hr: np.ndarray, dtype, clip: float | None = None) -> np.ndarray:
    """(Y, X) True where an HR pixel is usable: finite and no channel at the clipping level.

    Integers clip at their dtype's maximum (1.0 after scaling). For float images a maximum that a
    plateau of pixels shares is taken as clipping too (:func:`float_clip_level`); ``clip`` gives
    that level instead (a tile of a larger scene: the scene's).
    """
    finite = np.all(np.isfinite(hr), axis=0)
    vals = np.where(np.isfinite(hr), hr, -np.inf)
    if np.issubdtype(np.dtype(dtype), np.integer):
        clip = 1.0 - 0.5 / float(np.iinfo(dtype).max)
    elif clip is None:
        top = float(vals.max())
        clip = float_clip_level(top, int(np.count_nonzero(vals >= top)), hr[0].size)
    return finite & ~np.any(vals >= clip, axis=0)


def nodata_mask(lr: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """(y, x) True where an LR pixel is usable: no NaN/Inf band, not all bands zero, not all
    bands equal to ``nodata`` (compared in the array's own units)."""
    finite = np.all(np.isfinite(lr), axis=0)
    safe = np.where(np.isfinite(lr), lr, 0.0)
    ok = finite & np.any(safe != 0, axis=0)
    if nodata is not None and np.isfinite(nodata):
        ok &= ~np.all(safe == nodata, axis=0)
    return ok


SMALL_HOLE_PIXELS = 16  # HR holes up to this area (4 x 4) are interpolated from their neighbours


def inpaint_small_holes(hr: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``hr`` (k, Y, X) with holes of at most :data:`SMALL_HOLE_PIXELS` pixels interpolated, and
    the mask of what is still a hole. An isolated dead or NaN pixel is thus not a hole: left in
    the mask it would remove every LR pixel whose footprint covers it from the fit (5 % isolated
    NaN pixels: nearly all). ``hr`` holds 0 where it was not finite.

    Each pixel takes the median of the valid pixels in its 5 x 5 window, per channel: a median
    keeps an edge where a mean would blur across it (synthetic scene, 5 % NaN pixels: 43.3 dB
    against 34.4 with a Gaussian mean; 43.7 without the holes). A clipped pixel keeps its value
    when that is higher: it is at least its clipping level, which its neighbours may not reach."""
    holes = ~valid
    if not holes.any():
        return hr, valid
    labels, n = ndimage.label(holes)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = (sizes <= SMALL_HOLE_PIXELS)[labels] & holes
    if not small.any():
        return hr, valid
    Y, X = valid.shape
    ys, xs = np.nonzero(small)
    dy, dx = (d.ravel() for d in np.mgrid[-2:3, -2:3])
    ny, nx = np.clip(ys[:, None] + dy, 0, Y - 1), np.clip(xs[:, None] + dx, 0, X - 1)  # (n, 25)
    seen = valid[ny, nx]
    fixed = seen.any(1)  # a pixel with no valid neighbour in its window stays a hole
    out = hr.copy()
    for c in range(len(hr)):
        near = np.where(seen, hr[c][ny, nx], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: left as holes
            med = np.nanmedian(near, axis=1)
        out[c, ys[fixed], xs[fixed]] = np.maximum(med, hr[c, ys, xs])[fixed]
    still = valid.copy()
    still[ys[fixed], xs[fixed]] = True
    return out, still


def fill_invalid(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Copy of ``a`` (n, H, W) where invalid pixels take their nearest valid neighbour's values
    (for the methods that cannot leave pixels out)."""
    if valid.all():
        return a
    _, (iy, ix) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return a[:, iy, ix]


LEVEL_MISMATCH = 30.0


def radiometry_warnings(gain) -> list[str]:
    """When the HR image and the LR cube disagree in level by more than ``LEVEL_MISMATCH`` times,
    say so: the fit compensates, but a unit mistake (percent against fractions: 100x, a x10000
    reflectance scale) is likely. Not at 10x: an auto-exposed camera over a dark reflectance
    cube is that far apart for real (NEON: 11-15x in the visible)."""
    g = np.asarray(gain, dtype=float)
    worst = float(np.max(np.maximum(g, 1 / np.maximum(g, 1e-30))))
    if worst <= LEVEL_MISMATCH:
        return []
    return [f"the HR image and the LR cube differ in level by a factor of {worst:.3g} (fitted gains "
            f"{', '.join(f'{v:.3g}' for v in g)}): the fusion compensates, but check their units (e.g. a "
            "reflectance scale factor such as x10000, or percent against fractions)."]


MIN_SHIFT = 0.25  # HR pixels: an estimated misregistration below this is not applied (estimation noise)


def estimate_response(hr_display, hr_dtype, lr, deg, hr_valid, lr_valid):
    """``deg`` completed with the response, tone curve, gain and offset estimated from the pair
    (its PSF held as given; its shift too unless it is zero, when a misregistration of at least
    :data:`MIN_SHIFT` is estimated and applied), and a note saying so: for a camera image whose
    response nobody gave, a quick blind estimate beats assuming any one camera (CAVE flowers' own
    image with the Nikon D700 assumed: 34.0 dB; with its response: 44.4)."""
    from .estimation import estimate_degradation

    tone = deg.tone(hr_dtype)[0] if deg.encoding_given or not np.issubdtype(np.dtype(hr_dtype), np.integer) else None
    try:
        est = estimate_degradation(hr_display.astype(np.float64), lr.astype(np.float64), deg.scale,
                                   deg.wavelengths, tone=tone, known_kernel=deg.psf,
                                   known_shift=None if deg.shift == (0.0, 0.0) else deg.shift,
                                   hr_valid=hr_valid, lr_valid=lr_valid, iterations=1)
    except InputError as exc:
        raise InputError(f"No spectral response was given and none could be estimated from the pair ({exc}) "
                         "Choose the camera's response (srf=..., CLI --srf, `hsisr srfs` lists presets).") from None
    moved = deg.shift == (0.0, 0.0) and np.hypot(*est.shift) >= MIN_SHIFT
    new = deg.with_(srf=est.response, hr_encoding=est.tone, hr_gain=est.gain, hr_offset=est.offset,
                    **({"shift": tuple(est.shift)} if moved else {}))
    new.srf_name = "estimated from the pair"
    new.channels = deg.channels or tuple(f"channel {i + 1}" for i in range(est.response.shape[1]))
    shift = f", shift ({est.shift[0]:+.2f}, {est.shift[1]:+.2f}) HR px" if moved else ""
    note = (f"no spectral response was given: response, encoding ({est.tone.name}), gains{shift} estimated from "
            f"the pair (fit residual per channel {', '.join(f'{v:.3f}' for v in est.residual)}); choose the "
            "camera's response (srf=..., CLI --srf, the dock's SRF) if it is known")
    return new, note


def prepare(hr: np.ndarray, hr_dtype, lr: np.ndarray, deg, fit_radiometry: bool,
            lr_valid_given: np.ndarray | None = None, hr_clip: float | None = None) -> Prepared:
    """``hr`` (k, Y, X) and ``lr`` (C, y, x) float arrays (integers already scaled to [0, 1]);
    ``lr_valid_given`` (y, x): pixels the caller knows to be valid (e.g. from a nodata value in the
    file's units, or a reader's mask), combined with NaN and all-zero spectra; ``hr_clip``: a float
    HR image's clipping level when the caller knows it (see :func:`saturation_mask`)."""
    notes: dict = {}
    hr_valid = saturation_mask(hr, hr_dtype, hr_clip)
    hr, inpainted = inpaint_small_holes(np.where(np.isfinite(hr), hr, 0.0), hr_valid)
    if inpainted.sum() > hr_valid.sum():
        notes["hr_small_holes_interpolated"] = int(inpainted.sum() - hr_valid.sum())
        hr_valid = inpainted
    lr_valid = nodata_mask(lr)
    if lr_valid_given is not None:
        lr_valid &= lr_valid_given
    for name, valid, what in (("HR image", hr_valid, "saturated or NaN"), ("LR-HS cube", lr_valid, "nodata")):
        if not valid.any():
            raise InputError(f"{name}: every pixel is {what}; nothing is left to fuse. Check the data "
                             "(and the nodata value).")
        if not valid.all():
            notes[f"{'hr' if name == 'HR image' else 'lr'}_masked_pixels"] = int(valid.size - valid.sum())
    # masked pixels take their nearest valid neighbour's values, so that nothing downstream (priors,
    # estimation, the network's input) depends on what a saturated or NaN pixel held
    hr_display = fill_invalid(np.where(np.isfinite(hr), hr, 0.0), hr_valid).astype(np.float32)
    lr_filled = fill_invalid(np.where(np.isfinite(lr), lr, 0.0), lr_valid).astype(np.float32)
    if fit_radiometry and deg.srf is None:
        deg, notes["spectral_response"] = estimate_response(hr_display, hr_dtype, lr_filled, deg, hr_valid,
                                                            lr_valid)
        notes.setdefault("warnings", []).append(notes["spectral_response"] + ".")
    tone, why = deg.tone(hr_dtype)
    notes["hr_encoding"] = why
    lin = tone.decode(hr_display)
    deg = deg.with_(hr_encoding=tone)
    wants_fit = fit_radiometry and deg.srf is not None and (isinstance(deg.hr_gain, str)
                                                            or isinstance(deg.hr_offset, str))
    if wants_fit:
        from .estimation import footprint_valid

        usable = footprint_valid(deg.kernel, deg.scale, lin.shape[-2:], hr_valid) & lr_valid
        if usable.sum() < 4:
            notes["radiometry"] = "gain 1, offset 0: too few LR pixels lie fully inside the HR image to fit them"
            deg = deg.with_(hr_gain=1.0 if isinstance(deg.hr_gain, str) else deg.hr_gain,
                            hr_offset=0.0 if isinstance(deg.hr_offset, str) else deg.hr_offset)
            wants_fit = False
    if wants_fit:
        from .estimation import fit_gain_offset

        gain, offset, resid = fit_gain_offset(lin, lr_filled, deg.kernel, deg.scale, deg.srf,
                                              hr_valid, lr_valid)
        if not isinstance(deg.hr_gain, str):
            gain = np.broadcast_to(deg.hr_gain, gain.shape).astype(float)
        if not isinstance(deg.hr_offset, str):
            offset = np.broadcast_to(deg.hr_offset, offset.shape).astype(float)
        deg = deg.with_(hr_gain=gain, hr_offset=offset)
        notes["radiometry"] = {"gain": gain.tolist(), "offset": offset.tolist(), "fit_residual": resid.tolist()}
        notes.setdefault("warnings", []).extend(radiometry_warnings(gain))
    if not isinstance(deg.hr_gain, str) and deg.srf is not None:
        op = deg.spectral_operator
        lin = (lin - op.offset[:, None, None]) / op.gain[:, None, None]
    return Prepared(lin.astype(np.float32), lr_filled, hr_display, None if hr_valid.all() else hr_valid,
                    None if lr_valid.all() else lr_valid, deg, notes)
