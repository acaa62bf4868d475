"""Input checks and conversions shared by the API, the CLI and the widgets."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def to_unit_float(a, name: str, allow_nan: bool = False) -> tuple[np.ndarray, dict]:
    """A float32 copy of ``a``; integers are divided by their dtype's maximum (recorded).

    Refuses booleans and complex data, and NaN/Inf unless ``allow_nan`` (then they mark pixels
    to leave out; all-NaN is still refused). The input is never modified.
    """
    arr = np.asarray(a)
    info: dict = {"dtype": str(arr.dtype)}
    if arr.dtype == bool or np.iscomplexobj(arr):
        raise InputError(f"{name}: unsupported data type {arr.dtype}; give real-valued intensities.")
    if np.issubdtype(arr.dtype, np.integer):
        peak = float(np.iinfo(arr.dtype).max)
        info["scaled_by"] = 1.0 / peak
        return (arr.astype(np.float32) / np.float32(peak)), info
    out = arr.astype(np.float32, copy=True)
    if allow_nan and np.isfinite(out).any():
        return out, info
    if not np.all(np.isfinite(out)):
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise InputError(f"{name}: {bad} NaN/Inf values; replace them (e.g. np.nan_to_num) or crop them out.")
    return out, info


def hr_to_channels_first(hr: np.ndarray, name: str = "HR image") -> np.ndarray:
    """``(Y, X, k)`` (napari RGB/MSI convention) or ``(Y, X)`` -> ``(k, Y, X)``."""
    if hr.ndim == 2:
        return hr[None]
    if hr.ndim != 3:
        raise InputError(f"{name}: expected (Y, X, k) like an RGB layer, got shape {hr.shape}.")
    return np.ascontiguousarray(np.moveaxis(hr, -1, 0))


def check_lr(lr: np.ndarray, name: str = "LR-HS cube") -> np.ndarray:
    if lr.ndim != 3:
        raise InputError(f"{name}: expected (C, y, x) with bands first, got shape {lr.shape}.")
    if lr.shape[0] < 2:
        raise InputError(f"{name}: has {lr.shape[0]} band; a hyperspectral cube needs several (C, y, x).")
    return lr


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` if available, else ``mps``, else ``cpu``; checks explicit choices."""
    import torch

    device = (device or "auto").lower()
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
