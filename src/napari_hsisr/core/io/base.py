"""What the readers return (:class:`CubeFile`, :class:`ImageFile`, :class:`BandTable`) and the
helpers every format shares: wavelength arrays, the (C, Y, X) check, one-line read errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

TIFF_SUFFIXES = (".tif", ".tiff")


CUBE_SUFFIXES = (".tif", ".tiff", ".hdr", ".mat", ".npy")


@dataclass
class CubeFile:
    """A cube read from disk: ``data`` (C, Y, X), ``wavelengths`` in nm or None.

    ``mask`` (Y, X) bool, True = valid, is set when a nodata value is known (or float data hold
    NaN): a pixel is invalid when all its bands are nodata. The data values are left unchanged.
    """

    data: np.ndarray
    wavelengths: np.ndarray | None
    metadata: dict = field(default_factory=dict)
    mask: np.ndarray | None = None


@dataclass
class ImageFile:
    """An HR image read from disk: ``data`` (Y, X, k) in its native dtype, ``metadata`` a dict
    (``format``, ``source``; for TIFFs also ``geo`` and ``nodata`` when the file has them)."""

    data: np.ndarray
    metadata: dict = field(default_factory=dict)


@dataclass
class BandTable:
    """A band table: centre wavelengths in nm, bad-band flags (True = bad) and names, if given."""

    wavelengths_nm: np.ndarray
    bad: np.ndarray | None = None
    names: list[str] | None = None
    units_note: str | None = None  # set when the values were converted (e.g. micrometres -> nm)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy arrays/scalars, paths, tuples and sets to JSON-serialisable values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise InputError(
        f"Setting value {obj!r} of type {type(obj).__name__} cannot be saved as JSON; "
        "pass numbers, strings, lists or dicts in the settings."
    )


def wl_array(wl: Any, n: int | None = None) -> np.ndarray | None:
    if wl is None:
        return None
    arr = np.asarray(wl, dtype=float).ravel()
    if arr.size == 0 or (n is not None and arr.size != n):
        return None
    return arr


def to_nm(wl: np.ndarray | None, units: str | None = None) -> np.ndarray | None:
    """Convert µm wavelengths to nm when units say so or all values are < 100."""
    if wl is None:
        return None
    u = (units or "").strip().lower()
    if u in ("micrometers", "micrometer", "microns", "micron", "um", "µm", "μm"):
        return wl * 1000.0
    if u in ("", "unknown") and np.nanmax(wl) < 100:
        return wl * 1000.0
    return wl


def as_cube(arr: np.ndarray, path: Path) -> np.ndarray:
    """2-D -> (1, Y, X); 3-D kept; other ndim, or values that are not real numbers -> InputError."""
    if arr.dtype.kind not in "biuf":  # text, complex, dates, structured: np.load reads them, a cube is numbers
        raise InputError(f"{path}: holds {arr.dtype} values; a cube holds real numbers (integers or floats). Save "
                         "the intensities themselves.")
    if arr.ndim == 2:
        return arr[np.newaxis]
    if arr.ndim != 3:
        raise InputError(
            f"{path}: found an array of shape {arr.shape} ({arr.ndim}-D); expected a cube "
            "(C, Y, X) or a 2-D image (Y, X). Save the cube as a 3-D array with bands first."
        )
    return arr


def read_error(path: Path, exc: Exception) -> InputError:
    return InputError(
        f"{path}: could not read the file ({type(exc).__name__}: {exc}). "
        "The file may be truncated or not in the format its extension says; "
        "re-export it and try again."
    )
