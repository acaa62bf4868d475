"""Reading a hyperspectral cube from any supported file: :func:`read_cube` picks the reader by
suffix (or a CAVE folder) and applies the options (:mod:`.bands`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .bands import apply_cube_options, table_beside
from .base import CubeFile, as_cube, read_error
from .cave import find_cave_bands, read_cave
from .envi import read_envi
from .mat import read_mat
from .ome_zarr import open_zarr_cube
from .tiff import read_tiff


def read_cube(path: str | os.PathLike, variable: str | None = None, *,
              value_scale: float | None = None, nodata: float | None = None,
              wavelengths: str | os.PathLike | Any = None,
              drop_bands: Any = None) -> CubeFile:
    """Read a hyperspectral cube from TIFF/OME-TIFF, a CAVE folder, ENVI .hdr, .mat or .npy.

    Returns a :class:`CubeFile` with data (C, Y, X) and wavelengths in nm (or None).

    Options, applied in this order (all None = the file as it is):

    - ``wavelengths``: an array in nm (one per band of the file), or a band-table file
      (:func:`read_band_table`), replacing the file's wavelengths.
    - ``drop_bands``: 0-based band indices to remove from data and wavelengths, or ``"auto"``
      for the band table's bad-band flags, else an ENVI header's ``bbl`` (0 = bad). The removed
      indices are listed in ``metadata["dropped_bands"]``.
    - ``nodata``: a value (in the file's units, before ``value_scale``) marking missing data; the
      file's own (GDAL_NODATA, ENVI ``data ignore value``) is used when None. NaN in float data
      counts as nodata too. Values are left unchanged; ``CubeFile.mask`` (Y, X) is False where
      every band is nodata, ``metadata["nodata_per_band"]`` counts nodata values per band and
      ``metadata["nodata_pixels"]`` the masked pixels.
    - ``value_scale``: multiply the data (float32 result), e.g. 1e-4 for reflectance x 10000;
      ``metadata["value_scale"]`` records the total scale from file values. Negative values are
      kept (common in reflectance data). ``"auto"``: the scale the file documents
      (:func:`documented_scale`), none when it documents none.

    ``wavelengths="auto"``: the band table beside the file (:func:`find_band_table`) when the file
    has no wavelengths of its own. A band table's bad-band flags are listed (0-based) in
    ``metadata["bad_bands"]`` (the bands kept, minus any dropped).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path and try again.")
    cave = find_cave_bands(path)
    if cave is not None:
        return read_cave(path, cave)
    name = path.name.lower()
    if path.suffix.lower() == ".zarr" and path.is_dir():  # a tiled fusion's result, read whole
        lazy = open_zarr_cube(path)
        return CubeFile(np.asarray(lazy.data[:]), lazy.wavelengths, lazy.metadata)
    if path.is_dir():
        raise InputError(
            f"{path}: is a folder without CAVE bands '<scene>_ms_NN.png'; expected a CAVE "
            "folder or a cube file (.tif, .tiff, .hdr, .mat, .npy). Pick a cube file."
        )
    readers = {".tif": read_tiff, ".tiff": read_tiff, ".hdr": read_envi, ".npy": _read_npy}
    if path.suffix.lower() == ".mat":
        cf = read_mat(path, variable)
    elif path.suffix.lower() in readers:
        cf = readers[path.suffix.lower()](path)
    else:
        raise InputError(
            f"{path}: unsupported file type '{path.suffix}' ({name}); expected .tif, .tiff, "
            ".hdr, .mat, .npy or a CAVE folder. Convert the cube to one of these."
        )
    cf.metadata.setdefault("source", str(path))
    if isinstance(wavelengths, str) and wavelengths == "auto":
        wavelengths = table_beside(path, cf)
    return apply_cube_options(cf, path, value_scale=value_scale, nodata=nodata, wavelengths=wavelengths,
                              drop_bands=drop_bands)


def _read_npy(path: Path) -> CubeFile:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise read_error(path, exc) from exc
    return CubeFile(as_cube(arr, path), None, {"format": "npy"})
