"""npe2 writer: save an image layer as a hyperspectral TIFF with wavelengths and settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.io import write_tiff


def write_cube_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Write ``data`` (C, Y, X) as float32 ImageJ TIFF, or OME-TIFF for ``*.ome.tif(f)``."""
    layer_meta = (meta or {}).get("metadata") or {}
    fmt = "ome" if str(path).lower().endswith((".ome.tif", ".ome.tiff")) else "imagej"
    write_tiff(path, np.asarray(data), wavelengths=layer_meta.get("wavelengths"),
               settings=layer_meta.get("settings"), format=fmt, dtype="float32",
               units=layer_meta.get("wavelength_units", "nm"))
    return [str(path)]
