"""Quality figures for hyperspectral super-resolution results.

All functions take cubes laid out ``(C, Y, X)`` (bands first), with values nominally in [0, 1].
``estimate`` is the result being judged, ``reference`` the ground truth. Shapes must match exactly;
NaN and Inf are refused with an :class:`InputError`. Everything is computed in float64 and the
inputs are never modified.

Conventions (stated in each function too):

* ``psnr``: whole-cube PSNR, ``10 log10(peak^2 / MSE)`` with the MSE over all voxels.
* ``psnr_bandwise``: mean over bands of the per-band PSNR.
* ``sam``: mean spectral angle in degrees over pixels; pixels where either spectrum is all zero
  are left out.
* ``ergas``: ``100 / scale * sqrt(mean_b(MSE_b / mean(ref_b)^2))`` with ``scale`` the true
  HR/LR resolution ratio (e.g. 8).
* ``ssim``: per-band SSIM (Gaussian window, sigma 1.5, population covariance), mean over bands.
* ``rmse``: RMSE on the 0-255 scale (255 x the RMSE of [0, 1] data).

Only numpy, scipy and scikit-image are used here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "psnr",
    "psnr_bandwise",
    "sam",
    "sam_map",
    "ergas",
    "ssim",
    "rmse",
    "rmse_map",
    "evaluate",
    "consistency",
]

#: Side length of the Gaussian SSIM window scikit-image uses for sigma 1.5 (truncate 3.5).
_SSIM_WIN = 2 * int(3.5 * 1.5 + 0.5) + 1  # 11


# ----------------------------------------------------------------------------- validation
def _as_cube(a: Any, what: str) -> np.ndarray:
    """Return ``a`` as a float64 (C, Y, X) array (a copy when the dtype changes; never written to)."""
    try:
        arr = np.asarray(a)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise InputError(f"{what} could not be read as an array ({exc}); pass a numpy array.") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{what} has dtype {arr.dtype}; pass a real numeric array.")
    if np.iscomplexobj(arr):
        raise InputError(f"{what} is complex; pass a real-valued cube.")
    if arr.ndim != 3:
        raise InputError(
            f"{what} has shape {arr.shape}; expected a cube (C, Y, X) with bands first. "
            "For a single band, add a leading axis (cube[None])."
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise InputError(
            f"{what} contains {n_bad} NaN/Inf value(s); replace or mask them before computing metrics."
        )
    return arr


def _pair(estimate: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    est = _as_cube(estimate, "estimate")
    ref = _as_cube(reference, "reference")
    if est.shape != ref.shape:
        raise InputError(
            f"estimate has shape {est.shape} but reference has shape {ref.shape}; they must match "
            "exactly (C, Y, X). Crop or resample one to the other's grid first."
        )
    return est, ref


def _check_positive(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a positive number, got {value!r}.") from exc
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{what} must be a positive finite number, got {value!r}.")
    return v


def _psnr_from_mse(mse: float, peak: float) -> float:
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(peak * peak / mse))


# ----------------------------------------------------------------------------- PSNR
def _psnr(est: np.ndarray, ref: np.ndarray, peak: float) -> float:
    mse = float(np.mean((est - ref) ** 2))
    return _psnr_from_mse(mse, peak)


def psnr(estimate: Any, reference: Any, peak: float = 1.0) -> float:
    """Whole-cube peak signal-to-noise ratio in dB.

    ``10 * log10(peak**2 / MSE)`` where MSE is the mean squared error over *all* voxels of the
    (C, Y, X) cube (one number for the whole cube, not a mean of per-band PSNRs; see
    :func:`psnr_bandwise`). Returns ``inf`` when the cubes are identical.
    """
    est, ref = _pair(estimate, reference)
    return _psnr(est, ref, _check_positive(peak, "peak"))


def _psnr_bandwise(est: np.ndarray, ref: np.ndarray, peak: float) -> float:
    mse_b = np.mean((est - ref) ** 2, axis=(1, 2))
    vals = [_psnr_from_mse(float(m), peak) for m in mse_b]
    return float(np.mean(vals))


def psnr_bandwise(estimate: Any, reference: Any, peak: float = 1.0) -> float:
    """Mean over bands of the per-band PSNR in dB.

    For each band b: ``PSNR_b = 10 * log10(peak**2 / MSE_b)`` with ``MSE_b`` the mean squared
    error over that band's pixels; the result is ``mean_b(PSNR_b)``. A band with zero error has
    PSNR ``inf``, which makes the mean ``inf``.
    """
    est, ref = _pair(estimate, reference)
    return _psnr_bandwise(est, ref, _check_positive(peak, "peak"))


# ----------------------------------------------------------------------------- SAM
def _sam_map(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    n_e = np.sqrt(np.sum(est * est, axis=0))
    n_r = np.sqrt(np.sum(ref * ref, axis=0))
    valid = (n_e > 0) & (n_r > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = est / n_e
        v = ref / n_r
    # Kahan's formula: angle = 2 atan2(|u - v|, |u + v|) for unit vectors u, v. It is exact for
    # identical spectra (0) and accurate near 0 and 180 degrees, unlike arccos of the dot product.
    d = np.sqrt(np.sum((u - v) ** 2, axis=0))
    s = np.sqrt(np.sum((u + v) ** 2, axis=0))
    ang = np.degrees(2.0 * np.arctan2(d, s))
    return np.where(valid, ang, np.nan)


def sam_map(estimate: Any, reference: Any) -> np.ndarray:
    """Per-pixel spectral angle in degrees, shape (Y, X).

    The angle between the estimate's and the reference's spectrum at each pixel, in [0, 180]
    degrees. Pixels where either spectrum has zero norm (all bands 0) have no defined angle and
    are NaN in the map.
    """
    est, ref = _pair(estimate, reference)
    return _sam_map(est, ref)


def _sam(est: np.ndarray, ref: np.ndarray) -> float:
    m = _sam_map(est, ref)
    valid = ~np.isnan(m)
    if not np.any(valid):
        return math.nan
    return float(np.mean(m[valid]))


def sam(estimate: Any, reference: Any) -> float:
    """Mean spectral angle mapper (SAM) in degrees.

    The spectral angle ``arccos(<e, r> / (|e| |r|))`` between the estimate's and the reference's
    spectrum is computed at every pixel (see :func:`sam_map`) and averaged over pixels. Pixels
    where either spectrum has zero norm are excluded from the mean; if no pixel is left the
    result is NaN. Identical inputs give 0; orthogonal spectra give 90.
    """
    est, ref = _pair(estimate, reference)
    return _sam(est, ref)


# ----------------------------------------------------------------------------- ERGAS
def _ergas(est: np.ndarray, ref: np.ndarray, scale: float) -> float:
    mse_b = np.mean((est - ref) ** 2, axis=(1, 2))
    mu_b = np.mean(ref, axis=(1, 2))
    terms = np.empty_like(mse_b)
    for i, (m, mu) in enumerate(zip(mse_b, mu_b)):
        if mu == 0.0:
            terms[i] = 0.0 if m == 0.0 else math.inf
        else:
            terms[i] = m / (mu * mu)
    return float(100.0 / scale * np.sqrt(np.mean(terms)))


def ergas(estimate: Any, reference: Any, scale: float) -> float:
    """ERGAS (relative dimensionless global error in synthesis); lower is better, 0 is perfect.

    ``100 / scale * sqrt(mean_b(MSE_b / mean(ref_b)**2))`` where ``MSE_b`` is the band's mean
    squared error, ``mean(ref_b)`` the mean of the reference band, and ``scale`` the true
    HR/LR spatial resolution ratio (e.g. 8 when the low-resolution cube has 8x fewer pixels per
    side). A reference band with mean 0 contributes 0 if its error is 0, otherwise the result
    is ``inf``.
    """
    est, ref = _pair(estimate, reference)
    return _ergas(est, ref, _check_positive(scale, "scale (HR/LR ratio)"))


# ----------------------------------------------------------------------------- SSIM
def _ssim(est: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    from skimage.metrics import structural_similarity

    _, h, w = est.shape
    if h < _SSIM_WIN or w < _SSIM_WIN:
        raise InputError(
            f"SSIM needs images of at least {_SSIM_WIN}x{_SSIM_WIN} pixels (Gaussian window, "
            f"sigma 1.5), got {h}x{w}. Use a larger region, or skip SSIM (evaluate(..., full=False))."
        )
    vals = [
        structural_similarity(
            est[b],
            ref[b],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
        )
        for b in range(est.shape[0])
    ]
    return float(np.mean(vals))


def ssim(estimate: Any, reference: Any, data_range: float = 1.0) -> float:
    """Mean over bands of the per-band structural similarity index (SSIM).

    Each band is compared with
    ``skimage.metrics.structural_similarity(est_b, ref_b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)`` (the Wang et al. 2004 settings: an
    11x11 Gaussian window with sigma 1.5, population statistics) and the band values are
    averaged. Identical inputs give 1. Images must be at least 11x11 pixels.
    """
    est, ref = _pair(estimate, reference)
    return _ssim(est, ref, _check_positive(data_range, "data_range"))


# ----------------------------------------------------------------------------- RMSE
def rmse(estimate: Any, reference: Any) -> float:
    """Root mean squared error over all voxels on the 0-255 scale.

    ``255 * sqrt(mean((est - ref)**2))`` — i.e. the inputs are taken to be in [0, 1] and the
    error is reported in 8-bit grey levels, as in the CAVE fusion literature.
    """
    est, ref = _pair(estimate, reference)
    return float(255.0 * np.sqrt(np.mean((est - ref) ** 2)))


def rmse_map(estimate: Any, reference: Any) -> np.ndarray:
    """Per-pixel RMSE over bands, shape (Y, X), in the data's own units (not x255).

    ``sqrt(mean_b((est[b, y, x] - ref[b, y, x])**2))`` at each pixel.
    """
    est, ref = _pair(estimate, reference)
    return np.sqrt(np.mean((est - ref) ** 2, axis=0))


# ----------------------------------------------------------------------------- summaries
def evaluate(
    estimate: Any, reference: Any, scale: float | None = None, full: bool = True
) -> dict[str, float]:
    """All full-reference figures at once, as plain Python floats.

    Keys: ``psnr`` (whole cube, peak 1), ``psnr_bandwise`` (peak 1), ``sam`` (degrees),
    ``ergas`` (only when ``scale``, the HR/LR ratio, is given), ``ssim`` (data range 1; only when
    ``full`` is True, since it is the slow one) and ``rmse`` (0-255 scale). See the individual
    functions for the exact conventions.
    """
    est, ref = _pair(estimate, reference)
    out: dict[str, float] = {
        "psnr": _psnr(est, ref, 1.0),
        "psnr_bandwise": _psnr_bandwise(est, ref, 1.0),
        "sam": _sam(est, ref),
    }
    if scale is not None:
        out["ergas"] = _ergas(est, ref, _check_positive(scale, "scale (HR/LR ratio)"))
    if full:
        out["ssim"] = _ssim(est, ref, 1.0)
    out["rmse"] = float(255.0 * np.sqrt(np.mean((est - ref) ** 2)))
    return {k: float(v) for k, v in out.items()}


def consistency(cube: Any, hr_image: Any, lr_cube: Any, degradation: Any) -> dict[str, float]:
    """No-reference figures for real data: how well a result explains the inputs it came from.

    ``degradation`` must provide ``spatial(z)`` (cube (C, Y, X) -> (C, y, x)) and
    ``spectral(z)`` (cube (C, Y, X) -> (k, Y, X)). ``hr_image`` is the high-resolution image
    laid out (Y, X, k) and ``lr_cube`` the low-resolution cube (C, y, x).

    Returns ``lr_psnr`` / ``lr_sam``: :func:`psnr` (peak 1) and :func:`sam` between
    ``spatial(cube)`` and ``lr_cube``; ``hr_psnr`` / ``hr_sam``: the same between
    ``spectral(cube)`` and ``hr_image`` moved to (k, Y, X).
    """
    z = _as_cube(cube, "cube")
    lr = _as_cube(lr_cube, "lr_cube")
    hr = np.asarray(hr_image)
    if hr.ndim != 3:
        raise InputError(
            f"hr_image has shape {hr.shape}; expected (Y, X, k) with channels last "
            "(add a trailing axis for a single-channel image)."
        )
    hr = _as_cube(np.moveaxis(hr, -1, 0), "hr_image (as k, Y, X)")
    if not (hasattr(degradation, "spatial") and hasattr(degradation, "spectral")):
        raise InputError(
            "degradation must have methods spatial(cube) and spectral(cube); "
            f"got {type(degradation).__name__}."
        )
    lr_hat = _as_cube(degradation.spatial(z.copy()), "degradation.spatial(cube)")
    hr_hat = _as_cube(degradation.spectral(z.copy()), "degradation.spectral(cube)")
    if lr_hat.shape != lr.shape:
        raise InputError(
            f"degradation.spatial(cube) has shape {lr_hat.shape} but lr_cube has shape {lr.shape}; "
            "the degradation model does not match the inputs (check scale factor and band count)."
        )
    if hr_hat.shape != hr.shape:
        raise InputError(
            f"degradation.spectral(cube) has shape {hr_hat.shape} but hr_image as (k, Y, X) has "
            f"shape {hr.shape}; check the spectral response and the image size."
        )
    return {
        "lr_psnr": _psnr(lr_hat, lr, 1.0),
        "lr_sam": _sam(lr_hat, lr),
        "hr_psnr": _psnr(hr_hat, hr, 1.0),
        "hr_sam": _sam(hr_hat, hr),
    }
