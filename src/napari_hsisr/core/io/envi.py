"""ENVI cubes (``.hdr`` + data file), read with Spectral Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import CubeFile, as_cube, read_error, to_nm, wl_array


def read_envi(path: Path) -> CubeFile:
    from spectral import envi

    try:
        img = envi.open(str(path))
        arr = np.asarray(img.load())
    except Exception as exc:
        raise read_error(path, exc) from exc
    arr = as_cube(np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr, path)
    md = dict(img.metadata)
    wl = wl_array(md.get("wavelength"), arr.shape[0])
    wl = to_nm(wl, md.get("wavelength units"))
    meta: dict[str, Any] = {"format": "envi", "envi_header": md}
    try:
        meta["nodata"] = float(md["data ignore value"])
    except (KeyError, TypeError, ValueError):
        pass  # no (or an unreadable) nodata value in the header
    return CubeFile(np.ascontiguousarray(arr), wl, meta)
