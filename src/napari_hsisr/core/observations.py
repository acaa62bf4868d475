"""From the pair a user has to the pair the forward model describes.

A camera image is display-encoded, has its own gains and offsets and clips highlights; a cube
from another instrument has nodata pixels. :func:`prepare` decodes the HR image to linear light
(:class:`~.physics.ToneCurve`), marks the pixels that must not count (saturated HR pixels, NaN,
nodata LR pixels), and, for methods that use the spectral response, estimates the per-channel
gain and offset (:func:`~.estimation.fit_gain_offset`) and removes them, so that the methods see
``y = R^T z`` exactly as in a simulation. Everything it decided is recorded.
"""

from __future__ import annotations

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


def prepare(hr: np.ndarray, hr_dtype, lr: np.ndarray, deg, fit_radiometry: bool,
            lr_valid_given: np.ndarray | None = None, hr_clip: float | None = None) -> Prepared:
    """``hr`` (k, Y, X) and ``lr`` (C, y, x) float arrays (integers already scaled to [0, 1]);
    ``lr_valid_given`` (y, x): pixels the caller knows to be valid (e.g. from a nodata value in the
    file's units, or a reader's mask), combined with NaN and all-zero spectra; ``hr_clip``: a float
    HR image's clipping level when the caller knows it (see :func:`saturation_mask`)."""
    notes: dict = {}
    hr_valid = saturation_mask(hr, hr_dtype, hr_clip)
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
