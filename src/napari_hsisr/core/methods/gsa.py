"""Gram-Schmidt Adaptive (GSA) component substitution for HS + MS/RGB fusion.

Aiazzi, Baronti, Selva, "Improving component substitution pansharpening through multivariate
regression of MS+Pan data", IEEE TGRS 45(10), 2007; extended to several HR channels as in
Yokoya, Grohnfeldt, Chanussot, "Hyperspectral and multispectral data fusion: a comparative
review", IEEE GRSM 2017: each HS band is assigned to the HR channel it correlates with best, and
each group is sharpened with that channel as its panchromatic image.

GSA needs no degradation model: the HR channels are brought to the LR grid by block averaging,
and the LR-HS cube is upsampled by bicubic interpolation.
"""

from __future__ import annotations

import numpy as np

from ..physics import block_mean
from .base import FusionInputs, MethodInfo, Progress, register
from .bicubic import upsample


def _gsa_group(hs_up: np.ndarray, hs_lr: np.ndarray, pan: np.ndarray, pan_lr: np.ndarray,
               use: np.ndarray) -> np.ndarray:
    """Sharpen bands ``hs_up`` (G, Y, X) with one HR channel ``pan`` (Y, X); the weights are fitted
    on the LR pixels ``use`` (flat indices) that the HR image sees validly."""
    up0 = hs_up - hs_up.mean(axis=(1, 2), keepdims=True)
    lr0 = hs_lr - hs_lr.mean(axis=(1, 2), keepdims=True)
    pan_lr0 = pan_lr - pan_lr.mean()
    # Adaptive weights: regress the degraded pan on the LR bands (plus a constant).
    design = np.concatenate([lr0.reshape(len(lr0), -1), np.ones((1, lr0[0].size))]).T[use]
    alpha, *_ = np.linalg.lstsq(design, pan_lr0.ravel()[use], rcond=None)
    intensity = np.tensordot(alpha[:-1], up0, axes=1) + alpha[-1]
    i0 = intensity - intensity.mean()
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant intensity: caught as NaN by the API
        gains = (up0.reshape(len(up0), -1) @ i0.ravel()) / (i0.size * i0.var())
    # Detail: zero-mean pan minus the synthetic intensity. As in the reference implementation the
    # pan is not equalised to I's variance (measured on CAVE: equalising costs 1 dB at x8, 3 at x32).
    detail = ((pan - pan.mean()) - i0).astype(hs_up.dtype)
    return hs_up + gains.astype(hs_up.dtype)[:, None, None] * detail[None]


def sharpen(hr: np.ndarray, lr: np.ndarray, s: int, offset=(0.0, 0.0), dtype=np.float64,
            lr_use: np.ndarray | None = None) -> np.ndarray:
    """GSA's cube (C, Y, X) of ``dtype`` (float32 halves the memory of a many-band cube) for ``hr``
    (k, Y, X) and ``lr`` (C, y, x).

    ``offset`` (dy, dx): where the LR pixels sit relative to the block centres, in HR pixels (a
    misregistration the caller knows): the upsampled cube is moved there, and the HR image is
    averaged over the blocks the LR pixels actually see. ``lr_use`` (y, x): the LR pixels to fit
    the weights on (those the HR image sees validly; None: all). Outside them the HR image holds
    filled values that would bias the weights (a clipped 48-pixel block cost 4-6 dB elsewhere)."""
    from scipy import ndimage

    dy, dx = (float(v) for v in offset)
    if dy or dx:  # moved on the LR grid, before upsampling: s^2 times less to interpolate
        hs_up = upsample(ndimage.shift(lr, (0, dy / s, dx / s), order=3, mode="nearest"), s).astype(dtype)
        hr_lr = block_mean(ndimage.shift(hr, (0, -dy, -dx), order=1, mode="nearest"), s)
    else:
        hs_up = upsample(lr, s).astype(dtype)
        hr_lr = block_mean(hr, s)
    use = np.flatnonzero(np.ones(lr.shape[1:], bool) if lr_use is None or lr_use.sum() < 4 else lr_use)
    groups = _assign_bands(lr.reshape(len(lr), -1)[:, use], hr_lr.reshape(len(hr_lr), -1)[:, use])
    out = np.empty_like(hs_up)
    for k, bands in enumerate(groups):
        if len(bands):
            out[bands] = _gsa_group(hs_up[bands], lr[bands], hr[k], hr_lr[k], use)
    return out


def seen_lr_pixels(inputs: FusionInputs) -> np.ndarray | None:
    """(y, x) LR pixels valid and fully seen by valid HR pixels (None: all)."""
    if inputs.hr_valid is None and inputs.lr_valid is None:
        return None
    from ..estimation import footprint_valid

    s = inputs.degradation.scale
    box = np.full((s, s), 1.0 / s ** 2)  # GSA's own degradation: block means
    use = footprint_valid(box, s, inputs.hr.shape[-2:], inputs.hr_valid)
    return use if inputs.lr_valid is None else use & inputs.lr_valid


def run(inputs: FusionInputs):
    yield Progress(0, 2, message="upsampling and grouping bands")
    out = sharpen(inputs.hr.astype(np.float64), inputs.lr.astype(np.float64), inputs.degradation.scale,
                  lr_use=seen_lr_pixels(inputs))
    yield Progress(2, 2, message="done")
    return out.astype(np.float32)


def _assign_bands(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Index arrays: the HS bands (rows of ``a``, (C, n)) whose best-correlated HR channel (rows
    of ``b``, (k, n)) is k, for each k."""
    a = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-12)
    b = (b - b.mean(1, keepdims=True)) / (b.std(1, keepdims=True) + 1e-12)
    best = np.argmax(a @ b.T, axis=1)
    return [np.flatnonzero(best == k) for k in range(len(b))]


register(MethodInfo("gsa", run, "Gram-Schmidt adaptive component substitution (no degradation model needed).",
                    needs_srf=False, needs_psf=False, bytes_per_band=40, bytes_per_coefficient=0, safe_fallbacks=()))
