"""Making an HR image's grid an exact integer multiple of an LR cube's grid (no Qt, no napari).

Fusion needs ``HR (Y, X) == scale * LR (y, x)``. Real pairs are rarely exact: :func:`match_ratio`
decides how to get there (nothing, crop a few trailing rows/columns, or resample the HR image)
and says so in one sentence; :func:`apply_match` does it. Both grids are assumed to share the
top-left corner (as same-tie-point GeoTIFFs do), so cropping removes trailing rows/columns only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class GridMatch:
    """How to turn an HR image of ``hr_shape`` into ``hr_target == scale * lr_shape``.

    ``action``: "exact" (nothing to do), "crop" (``crop`` = (top, left, bottom, right) pixels
    removed) or "resample" (``zoom`` = (y, x) factors applied). ``message`` says what was done.
    """

    hr_shape: tuple[int, int]
    lr_shape: tuple[int, int]
    scale: int
    action: str
    hr_target: tuple[int, int]
    crop: tuple[int, int, int, int] | None
    zoom: tuple[float, float] | None
    message: str


def match_ratio(hr_shape_yx, lr_shape_yx, tolerance: float = 0.02) -> GridMatch:
    """Decide how to make an HR image of shape (Y, X) an exact ``scale`` multiple of LR (y, x).

    ``scale`` is the integer nearest the mean of Y/y and X/x. Refused (InputError) when it is < 2,
    or when Y/y and X/x differ by more than ``tolerance`` (relative) and a crop cannot fix it:
    the two images may not show the same area. Exact multiple -> "exact"; up to scale-1 extra
    trailing rows/columns -> "crop" (grids share the top-left corner); otherwise -> "resample".
    """
    (hy, hx), (ly, lx) = _shape2(hr_shape_yx, "HR image"), _shape2(lr_shape_yx, "LR cube")
    ry, rx = hy / ly, hx / lx
    ratio = (ry + rx) / 2
    scale = int(np.floor(ratio + 0.5))
    head = f"HR image {hy}x{hx} over LR {ly}x{lx}: ratio {ratio:.2f}"
    target = (scale * ly, scale * lx)
    fits_crop = scale >= 2 and target[0] <= hy < scale * (ly + 1) and target[1] <= hx < scale * (lx + 1)
    if abs(ry - rx) > tolerance * max(ry, rx) and not fits_crop:
        raise InputError(f"{head}: the row ratio {ry:.3f} and the column ratio {rx:.3f} differ by "
                         f"more than {tolerance:.0%}, so the two images may not show the same area. "
                         "Crop both to the same area (or pass a larger tolerance).")
    if scale < 2:
        raise InputError(f"{head} rounds to scale {scale}; fusion needs an HR image about twice the "
                         "LR cube's size or more on both axes (integer scale >= 2). Check that the "
                         "right files were given.")
    common = dict(hr_shape=(hy, hx), lr_shape=(ly, lx), scale=scale, hr_target=target)
    if (hy, hx) == target:
        return GridMatch(action="exact", crop=None, zoom=None, **common,
                         message=f"HR image {hy}x{hx} over LR {ly}x{lx}: ratio {scale} exactly, "
                                 "nothing changed")
    if fits_crop:
        crop = (0, 0, hy - target[0], hx - target[1])
        return GridMatch(action="crop", crop=crop, zoom=None, **common,
                         message=f"{head} -> cropped {_n(crop[2], 'trailing row')} and "
                                 f"{_n(crop[3], 'trailing column')} of the HR image to "
                                 f"{target[0]}x{target[1]} (scale {scale})")
    zoom = (target[0] / hy, target[1] / hx)
    by = f"{zoom[0]:.3f}" if round(zoom[0], 3) == round(zoom[1], 3) else f"{zoom[0]:.3f} x {zoom[1]:.3f}"
    return GridMatch(action="resample", crop=None, zoom=zoom, **common,
                     message=f"{head} -> resampled the HR image by {by} to {target[0]}x{target[1]} "
                             f"(scale {scale})")


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _shape2(shape, what: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in shape)
    except (TypeError, ValueError):
        y = x = 0
    if y < 1 or x < 1 or len(tuple(shape)) != 2:
        raise InputError(f"{what} shape {shape!r} must be two positive integers (rows, columns); "
                         "pass array.shape[:2] (or shape[1:] for a (C, Y, X) cube).")
    return y, x


def apply_match(hr_image: np.ndarray, match: GridMatch) -> np.ndarray:
    """Apply ``match`` to an HR image (Y, X) or (Y, X, k); returns a new array, input unchanged.

    "exact" and "crop" keep the native dtype. "resample" uses ``skimage.transform.resize`` (linear,
    ``preserve_range=True``, anti-aliasing only when shrinking) and returns float32 for float and
    integer input alike (values are not rescaled, e.g. uint8 stays 0..255).
    """
    img = np.asarray(hr_image)
    if img.ndim not in (2, 3) or img.shape[:2] != match.hr_shape:
        raise InputError(f"HR image of shape {img.shape} does not match the grid match computed for "
                         f"{match.hr_shape[0]}x{match.hr_shape[1]}; call match_ratio with this "
                         "image's shape[:2].")
    if match.action == "exact":
        return img.copy()
    if match.action == "crop":
        top, left, bottom, right = match.crop
        return img[top:img.shape[0] - bottom, left:img.shape[1] - right].copy()
    from skimage.transform import resize

    shrink = min(match.zoom) < 1
    out = resize(img.astype(np.float32), match.hr_target + img.shape[2:], order=1,
                 anti_aliasing=shrink, preserve_range=True)
    return out.astype(np.float32, copy=False)
