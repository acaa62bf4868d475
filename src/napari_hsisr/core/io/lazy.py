"""Cubes and images read on demand (out of core): only what is sliced is read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import CubeFile, as_cube, read_error, to_nm, wl_array
from .cube import read_cube
from .images import as_yxk, read_image
from .ome_zarr import open_zarr_cube
from .tiff import read_cube_metadata, tiff_array_lazy


def open_cube_lazy(path: str | os.PathLike) -> CubeFile:
    """A cube whose ``data`` (C, Y, X) is read on demand: a Zarr store (as written by a tiled
    fusion), a TIFF (tiles or strips decoded when sliced), ENVI (memory-mapped) or ``.npy``
    (memory-mapped). Only what is sliced is read, so a cube larger than memory can be fused in
    tiles (:mod:`.tiling`). Other formats are read whole by :func:`read_cube`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path and try again.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".zarr":
            return open_zarr_cube(path)
        if suffix == ".npy":
            return CubeFile(as_cube(np.load(path, mmap_mode="r", allow_pickle=False), path), None,
                            {"format": "npy", "source": str(path)})
        if suffix == ".hdr":
            from spectral import envi

            img = envi.open(str(path))
            data = np.moveaxis(img.open_memmap(writable=False), -1, 0)  # (Y, X, C) map -> (C, Y, X) view
            wl = to_nm(wl_array(img.metadata.get("wavelength"), data.shape[0]),
                        img.metadata.get("wavelength units"))
            return CubeFile(data, wl, {"format": "envi", "source": str(path)})
        if suffix in (".tif", ".tiff"):
            head = read_cube_metadata(path)
            z = tiff_array_lazy(path)
            if z.ndim != 3:
                raise InputError(f"{path}: holds a {z.ndim}-D image; a cube is (C, Y, X).")
            return CubeFile(z, head.wavelengths, {**head.metadata, "source": str(path), "lazy": True})
    except InputError:
        raise
    except Exception as exc:  # any reader failure becomes one line
        raise read_error(path, exc) from exc
    return read_cube(path)


def open_image_lazy(path: str | os.PathLike):
    """An HR image (Y, X, k) read on demand (TIFF or ``.npy``); other formats are read whole."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the HR image file itself (PNG, BMP, TIFF, JPEG or .npy).")
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path and try again.")
    try:
        if suffix == ".npy":  # (Y, X) or (Y, X, k), as read_image_file checks it (views: still lazy)
            return as_yxk(np.load(path, mmap_mode="r", allow_pickle=False), path)
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(str(path)) as tf:
                axes = tf.series[0].axes
            z = tiff_array_lazy(path)
            if z.ndim not in (2, 3):
                raise InputError(f"{path}: image has shape {z.shape}; expected (Y, X) or (Y, X, k). Save the image "
                                 "as a single 2-D or multi-channel picture.")
            if z.ndim == 3 and axes.startswith(("S", "C", "I")) and z.shape[0] <= 16 < z.shape[-1]:
                import dask.array as da

                return da.moveaxis(da.from_zarr(z), 0, -1)  # (k, Y, X) pages -> (Y, X, k), still lazy
            return z
    except InputError:
        raise
    except Exception as exc:
        raise read_error(path, exc) from exc
    return read_image(path)
