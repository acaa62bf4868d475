"""Point spread functions (spatial blur kernels).

A PSF is a ``(K, K)`` float64 array, non-negative, summing to 1, with ``K >= scale``.
Sampling convention (see :class:`~napari_hsisr.core.degradation.Degradation`): the kernel is
centred on the ``s x s`` block of HR pixels that one LR pixel covers, so ``K == s`` integrates
exactly that block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError


def gaussian_psf(size: int, sigma: float, sigma2: float | None = None, angle_deg: float = 0.0) -> np.ndarray:
    """Sampled Gaussian on a ``size x size`` grid centred on the grid centre.

    ``sigma`` is the standard deviation (HR pixels) along the major axis, rotated by
    ``angle_deg`` (counter-clockwise from the x axis); ``sigma2`` along the minor axis
    (defaults to ``sigma``: isotropic). Normalised to sum 1.
    """
    size = whole_number(size, "PSF size")
    if size < 1:
        raise InputError(f"PSF size must be >= 1, got {size}.")
    for value in (sigma, sigma2, angle_deg):
        if value is not None and not np.isfinite(value):
            raise InputError(f"Gaussian PSF parameters must be finite, got sigma {sigma}, sigma2 {sigma2}, "
                             f"angle {angle_deg}.")
    if size > 4096:
        raise InputError(f"PSF size {size} is beyond 4096 HR pixels; use a smaller kernel.")
    if sigma < 0.1 or (sigma2 is not None and sigma2 < 0.1):
        raise InputError(f"Gaussian PSF sigmas must be at least 0.1 HR pixel (smaller is a point: use psf='box' or "
                         f"a kernel array), got {sigma}, {sigma2}.")
    sigma2 = sigma if sigma2 is None else sigma2
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = xx - c, -(yy - c)  # y axis up so that the angle is counter-clockwise on screen
    t = np.deg2rad(angle_deg)
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    k = np.exp(-0.5 * ((u / sigma) ** 2 + (v / sigma2) ** 2))
    return k / k.sum()


def whole_number(value, name: str) -> int:
    """``value`` as an int, or an ``InputError`` (text, NaN, 2.5)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a whole number of HR pixels, got {value!r}.") from None
    if not (np.isfinite(number) and number.is_integer()):
        raise InputError(f"{name} must be a whole number of HR pixels, got {value!r}.")
    return int(number)


def box_psf(size: int) -> np.ndarray:
    """Uniform average over a ``size x size`` window (``size == scale``: plain block average)."""
    size = whole_number(size, "PSF size")
    if not 1 <= size <= 4096:
        raise InputError(f"PSF size must be between 1 and 4096, got {size}.")
    return np.full((size, size), 1.0 / size**2)


def load_psf(path: str | Path) -> np.ndarray:
    """Read a square kernel from ``.npy``, ``.csv``/``.txt`` (comma or whitespace) or ``.tif``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"PSF file {path} is a folder; give the kernel file (.npy, .csv, .txt or .tif) itself.")
    if not path.is_file():
        raise InputError(f"PSF file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            k = np.load(path, allow_pickle=False)
        elif suffix in {".csv", ".txt"}:
            text = path.read_text()
            k = np.loadtxt(path, delimiter="," if "," in text else None, ndmin=2)
        elif suffix in {".tif", ".tiff"}:
            import tifffile

            k = tifffile.imread(path)
        else:
            raise InputError(f"PSF file {path.name}: unsupported type {suffix!r}; use .npy, .csv, .txt or .tif.")
    except InputError:
        raise
    except Exception as exc:  # unreadable / truncated
        raise InputError(f"Cannot read PSF file {path}: {exc}") from exc
    return normalize_psf(k, source=str(path))


def normalize_psf(kernel, source: str = "PSF") -> np.ndarray:
    """Validate a user kernel and normalise it to sum 1 (returns a new float64 array)."""
    raw = np.asarray(kernel) if not isinstance(kernel, np.ndarray) else kernel
    if raw.dtype == bool or np.iscomplexobj(raw) or not np.issubdtype(raw.dtype, np.number):
        raise InputError(f"{source}: kernel has data type {raw.dtype}; give real numbers (weights >= 0).")
    k = np.array(raw, dtype=np.float64, copy=True)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise InputError(f"{source}: expected a square 2-D kernel (K, K), got shape {k.shape}.")
    if not np.all(np.isfinite(k)):
        raise InputError(f"{source}: kernel contains NaN or Inf.")
    if np.any(k < 0):
        raise InputError(f"{source}: kernel has negative values; a PSF must be non-negative.")
    total = k.sum()
    if total <= 0:
        raise InputError(f"{source}: kernel sums to {total}; it must have positive mass.")
    return k / total
