"""Input checks and conversions shared by the API, the CLI and the widgets."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def as_array(a, name: str) -> np.ndarray:
    """``a`` as a numpy array of real numbers (integers or floats, not bool, complex, text, dates
    or objects), not empty; anything numpy cannot turn into such an array is refused in one line."""
    try:
        arr = np.asarray(a)
    except Exception as exc:  # noqa: BLE001 - ragged lists, objects whose __array__ fails
        raise InputError(f"{name}: cannot be read as an array ({type(exc).__name__}: {exc}); give a numpy "
                         "array of numbers.") from None
    if arr.dtype == bool or np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name}: unsupported data type {arr.dtype}; give real-valued intensities.")
    if arr.size == 0:
        raise InputError(f"{name}: is empty (shape {arr.shape}).")
    return arr


def to_unit_float(a, name: str, allow_nan: bool = False) -> tuple[np.ndarray, dict]:
    """A float32 copy of ``a``; integers are divided by their dtype's maximum (recorded).

    Refuses booleans and complex data, and NaN/Inf unless ``allow_nan`` (then they mark pixels
    to leave out; all-NaN is still refused). The input is never modified.
    """
    arr = as_array(a, name)
    info: dict = {"dtype": str(arr.dtype)}
    if np.issubdtype(arr.dtype, np.integer):
        peak = float(np.iinfo(arr.dtype).max)
        info["scaled_by"] = 1.0 / peak
        top = float(arr.max())
        if arr.dtype.itemsize >= 2 and 0 < top <= peak / 8:  # 10-, 12-, 14-bit data stored in uint16
            bits = int(top).bit_length()
            info["note"] = (f"{name}: {arr.dtype} values reach {top:g} ({bits}-bit data?); divided by the type's "
                            f"maximum {peak:g} they reach {top / peak:.3g}, and the result is on that scale. For "
                            f"data in 0..1, scale by 1/{2 ** bits - 1} (hsisr fuse --value-scale "
                            f"{1 / (2 ** bits - 1):.6g} for the LR cube).")
        return (arr.astype(np.float32) / np.float32(peak)), info
    big = np.nanmax(np.abs(np.where(np.isfinite(arr), arr, 0)))
    if big > np.finfo(np.float32).max / 16:
        raise InputError(f"{name}: values as large as {big:.3g}, beyond what float32 holds; rescale the data "
                         "(e.g. to reflectance in [0, 1]).")
    out = arr.astype(np.float32, copy=True)
    if allow_nan and np.isfinite(out).any():
        return out, info
    if not np.all(np.isfinite(out)):
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        what = "NaN/Inf values" if bad < out.size else "values, all NaN/Inf"
        raise InputError(f"{name}: {bad} {what}; replace them (e.g. np.nan_to_num) or crop them out.")
    return out, info


def check_values(a: np.ndarray, name: str) -> dict:
    """Refuse data that cannot be light (all zero, or mostly negative); small negative values
    (noise around zero in reflectance products) are allowed and counted."""
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        raise InputError(f"{name}: every value is NaN/Inf; nothing to fuse.")
    top, low = float(finite.max()), float(finite.min())
    if top <= 0:
        raise InputError(f"{name}: every value is {'zero' if top == low == 0 else '<= 0'} (range {low:g}..{top:g}); "
                         "give intensities or reflectance, not an empty or inverted image.")
    if low < -0.1 * top:
        raise InputError(f"{name}: values as low as {low:.3g} against a maximum of {top:.3g}; intensities cannot be "
                         "that negative. Check the offset/scaling of the data (e.g. a signed integer read as "
                         "unsigned, or a difference image).")
    negative = int(np.count_nonzero(finite < 0))
    return {"negative_values": negative} if negative else {}


def hr_to_channels_first(hr: np.ndarray, name: str = "HR image") -> np.ndarray:
    """``(Y, X, k)`` (napari RGB/MSI convention) or ``(Y, X)`` -> ``(k, Y, X)``."""
    if hr.ndim == 2:
        return hr[None]
    if hr.ndim != 3:
        raise InputError(f"{name}: expected (Y, X, k) like an RGB layer, got shape {hr.shape}.")
    if hr.shape[0] <= 16 < min(hr.shape[1:]) and hr.shape[-1] > 16:
        raise InputError(f"{name}: shape {hr.shape} looks channels-first (k, Y, X); give it as (Y, X, k), e.g. "
                         "np.moveaxis(image, 0, -1).")
    return np.ascontiguousarray(np.moveaxis(hr, -1, 0))


def check_lr(lr: np.ndarray, name: str = "LR-HS cube") -> np.ndarray:
    if lr.ndim != 3:
        raise InputError(f"{name}: expected (C, y, x) with bands first, got shape {lr.shape}.")
    if lr.shape[-1] > 3 * max(lr.shape[0], 1) and lr.shape[0] == lr.shape[1] and lr.shape[0] != lr.shape[2]:
        raise InputError(f"{name}: shape {lr.shape} looks bands-last (y, x, C); give it as (C, y, x), e.g. "
                         "np.moveaxis(cube, -1, 0).")
    if lr.shape[0] < 2:
        raise InputError(f"{name}: has {lr.shape[0]} band; a hyperspectral cube needs several (C, y, x).")
    return lr


def resolve_device(device: str = "auto", uses_torch: bool = True) -> str:
    """``auto`` -> ``cuda`` if available, else ``mps``, else ``cpu``; checks explicit choices. For a
    method that does not use torch, ``auto`` and ``cpu`` are ``cpu`` without importing torch (5 s
    of a cluster caller's start); an explicit GPU is still checked."""
    device = str(device or "auto").strip().lower()
    if not (device in ("auto", "cpu", "mps") or device == "cuda" or
            (device.startswith("cuda:") and device[5:].isdigit())):
        raise InputError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N, mps.")
    if not uses_torch and device in ("auto", "cpu"):
        return "cpu"
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but torch sees no CUDA device; use device='cpu' or 'auto'.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("MPS was requested but is not available; use device='cpu' or 'auto'.")
    return device


def check_seed(seed) -> int:
    """A seed as a non-negative int that numpy and torch both take (below 2**63)."""
    try:
        value = int(seed)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        raise InputError(f"seed must be a whole number, got {seed!r}.") from None
    if isinstance(seed, float) and not float(seed).is_integer():
        raise InputError(f"seed must be a whole number, got {seed!r}.")
    if not 0 <= value < 2**63:
        raise InputError(f"seed must be between 0 and 2**63 - 1, got {value}.")
    return value


def check_result(cube: np.ndarray, method: str) -> None:
    """A method's cube must be finite: otherwise fail saying which method and the likely cause."""
    bad = np.size(cube) - np.count_nonzero(np.isfinite(cube))
    if bad:
        raise InputError(f"method {method!r} produced {bad} NaN/Inf values: the pair is degenerate for it (e.g. a "
                         "constant or empty image, an LR cube of one pixel, or a PSF that is not finite); check "
                         "the inputs and the degradation, or try 'fast'.")


def check_snr(value, name: str) -> float | None:
    """A signal-to-noise ratio in dB: None (no noise) or a finite number in [-20, 200] dB."""
    if value is None:
        return None
    try:
        snr = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number of dB (or None for no noise), got {value!r}.") from None
    if not np.isfinite(snr):
        raise InputError(f"{name} must be a finite number of dB, got {value!r}; give None (CLI: leave the flag "
                         "out) for noise-free data.")
    if not -20 <= snr <= 200:
        raise InputError(f"{name} {snr:g} dB is outside -20..200 dB (noise 10x stronger than the signal to none "
                         "worth simulating); typical sensors are 25..60 dB.")
    return snr


def check_finite_cube(a, name: str, float64: bool = True) -> np.ndarray:
    """A real-valued ``(C, Y, X)`` array without NaN/Inf (a float64 copy, or the array itself when
    ``float64`` is False), e.g. a reference cube to simulate from or to train on: every value is
    used, none can be left out."""
    arr = as_array(a, name)
    if arr.ndim != 3:
        raise InputError(f"{name} must be (C, Y, X) with bands first, got shape {arr.shape}.")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"{name}: {bad} NaN/Inf value(s) of {arr.size}; replace them (e.g. np.nan_to_num) or "
                         "crop them out: a simulation uses every value.")
    big = float(np.max(np.abs(arr)))
    if big > np.finfo(np.float32).max / 16:
        raise InputError(f"{name}: values as large as {big:.3g}, beyond what float32 holds; rescale the data "
                         "(e.g. to reflectance in [0, 1]).")
    return arr.astype(np.float64) if float64 else arr


def _ratio_fits(hr_yx, lr_yx) -> bool:
    """Whether an HR grid ``hr_yx`` is about the same integer multiple (>= 2) of ``lr_yx`` in both axes."""
    if len(hr_yx) != 2 or len(lr_yx) != 2 or min(*hr_yx, *lr_yx) < 1:
        return False
    ry, rx = hr_yx[0] / lr_yx[0], hr_yx[1] / lr_yx[1]
    return min(ry, rx) >= 1.9 and abs(ry - rx) <= 0.02 * max(ry, rx)


def layout_hint(hr_shape, lr_shape, hr_name: str = "hr_image", lr_name: str = "lr_cube") -> str:
    """The likely mistake when an HR image ``(Y, X, k)`` and an LR cube ``(C, y, x)`` (shapes as
    given) do not fit each other but would once read another way: the two swapped, or the cube
    given bands-last ``(y, x, C)``. Empty when the shapes fit as they are or no other reading fits.
    ``hr_name``/``lr_name`` name the two inputs as the caller knows them (``--hr``, ``hr_image``)."""
    hr_shape, lr_shape = tuple(int(v) for v in hr_shape), tuple(int(v) for v in lr_shape)
    if len(hr_shape) not in (2, 3) or len(lr_shape) != 3 or _ratio_fits(hr_shape[:2], lr_shape[-2:]):
        return ""
    if _ratio_fits(hr_shape[:2], lr_shape[:2]) and lr_shape[2] > 3:
        return (f"{lr_name}: shape {lr_shape} looks bands-last (y, x, C): {lr_shape[2]} bands of "
                f"{lr_shape[0]}x{lr_shape[1]} pixels, which fits the HR image {hr_shape[0]}x{hr_shape[1]}; give the "
                "cube bands first (C, y, x), e.g. np.moveaxis(cube, -1, 0).")
    # the LR given is the picture (Y, X, k) or (k, Y, X), the HR given the cube (C, y, x)
    lr_as_image = lr_shape[1:] if lr_shape[0] <= 16 < min(lr_shape[1:]) else lr_shape[:2]
    if len(hr_shape) == 3 and _ratio_fits(lr_as_image, hr_shape[1:]):
        return (f"{hr_name} {hr_shape} looks like a hyperspectral cube and {lr_name} {lr_shape} like an RGB/MSI "
                f"image: the two look swapped; swap them ({hr_name} is the high-resolution picture, {lr_name} the "
                "low-resolution cube).")
    return ""


def check_layout(hr_shape, lr_shape, hr_name: str = "hr_image", lr_name: str = "lr_cube") -> None:
    """Refuse, with the hint, a pair whose shapes point to a likely mistake (:func:`layout_hint`)."""
    hint = layout_hint(hr_shape, lr_shape, hr_name, lr_name)
    if hint:
        raise InputError(hint)
