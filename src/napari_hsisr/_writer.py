"""npe2 writer: save an image layer as a hyperspectral TIFF with wavelengths and settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.io import write_tiff


def write_cube_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Write ``data`` (C, Y, X) as float32 ImageJ TIFF, or OME-TIFF for ``*.ome.tif(f)``; a layer with
    georeferencing (``metadata["geo"]`` or ``settings["output_geo"]``) as a GeoTIFF unless OME."""
    from .core.errors import InputError

    layer_meta = (meta or {}).get("metadata") or {}
    fmt = "ome" if str(path).lower().endswith((".ome.tif", ".ome.tiff")) else "imagej"
    geo = layer_meta.get("geo") or (layer_meta.get("settings") or {}).get("output_geo")
    if geo and fmt == "imagej":  # a georeferenced layer (a file read, or a result of a georeferenced pair)
        fmt = "geotiff"
    try:
        write_tiff(path, np.asarray(data), wavelengths=layer_meta.get("wavelengths"),
                   settings=layer_meta.get("settings"), format=fmt, dtype="float32",
                   units=layer_meta.get("wavelength_units", "nm"), geo=geo if fmt == "geotiff" else None)
    except InputError as exc:
        # napari reports a failing writer only as "not a valid writer": say what is wrong first
        from napari.utils.notifications import show_error

        show_error(f"napari-hsisr could not save {meta.get('name', 'the layer') if meta else 'the layer'}: {exc}")
        raise
    return [str(path)]
