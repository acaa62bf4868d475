"""MATLAB ``.mat`` cubes (v5 via scipy, v7.3 via h5py): (rows, cols, bands) cubes and bands x pixels
matrices with nRow/nCol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .base import CubeFile, read_error, to_nm, wl_array

_WL_NAMES = ("wavelengths", "wavelength", "wl", "wavelengths_nm", "wavelength_nm", "lambda")


_SHAPE_NAMES = (("nrow", "ncol"), ("nrows", "ncols"), ("rows", "cols"), ("h", "w"))


def _load_mat(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """All numeric arrays of a .mat file in MATLAB orientation, and 'v5' or 'v7.3'."""
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):
        return _load_mat_h5(path), "v7.3"
    try:
        raw = scipy.io.loadmat(str(path))
        return {k: v for k, v in raw.items() if not k.startswith("__")
                and isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}, "v5"
    except Exception as exc:
        raise read_error(path, exc) from exc


def _load_mat_h5(path: Path) -> dict[str, np.ndarray]:
    """Numeric datasets of a v7.3 (HDF5) .mat file, axes reversed to MATLAB order."""
    import h5py

    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf" \
                        and not name.split("/")[-1].startswith(("__", "#")):
                    out[name] = np.asarray(obj[()]).T  # column-major -> MATLAB order
            f.visititems(visit)
    except Exception as exc:
        raise read_error(path, exc) from exc
    return out


def read_mat(path: Path, variable: str | None) -> CubeFile:
    arrays, version = _load_mat(path)
    name = _pick_mat_variable(arrays, variable, path)
    arr = arrays[name]
    meta: dict[str, Any] = {"format": f"mat-{version}", "variable": name}
    if arr.ndim == 3:
        # MATLAB keeps cubes (rows, cols, bands): bands last unless another axis is clearly the
        # smallest (a (C, Y, X) array saved from Python); a tie goes to the last axis
        smallest = min(arr.shape)
        band_axis = 2 if arr.shape[2] == smallest or arr.shape[2] < 2 * smallest else int(np.argmin(arr.shape))
        cube = np.moveaxis(arr, band_axis, 0)
        meta["band_axis"] = band_axis
    else:
        cube = _unmixing_to_cube(arr, arrays, path, name)
        meta["layout"] = "bands x pixels (column-major)"
    for k, v in arrays.items():
        if k.split("/")[-1].lower() in ("maxvalue", "max_value") and v.size == 1:
            meta["max_value"] = float(np.ravel(v)[0])  # recorded, not applied
    wl = None
    for k, v in arrays.items():
        if k.split("/")[-1].lower() in _WL_NAMES:
            wl = to_nm(wl_array(v, cube.shape[0]))
            if wl is not None:
                break
    return CubeFile(np.ascontiguousarray(cube), wl, meta)


def _pick_mat_variable(arrays: dict[str, np.ndarray], variable: str | None, path: Path) -> str:
    if variable is not None:
        if variable not in arrays:
            raise InputError(f"{path}: no numeric variable '{variable}'; found "
                             f"{ {k: v.shape for k, v in arrays.items()} }. Pick one of these.")
        if arrays[variable].ndim not in (2, 3):
            raise InputError(f"{path}: variable '{variable}' has shape {arrays[variable].shape}; "
                             "expected a 3-D cube or a 2-D bands x pixels matrix.")
        return variable
    cands = {k: v for k, v in arrays.items() if v.ndim in (2, 3) and min(v.shape) > 1}
    if not cands:
        raise InputError(f"{path}: no 2-D/3-D numeric array found (variables: "
                         f"{ {k: v.shape for k, v in arrays.items()} }); expected a cube "
                         "(Y, X, C). Save the cube in the .mat file.")
    best = max(v.size for v in cands.values())
    top = [k for k, v in cands.items() if v.size == best]
    if len(top) > 1:
        raise InputError(f"{path}: several equally large arrays {[(k, cands[k].shape) for k in top]}; "
                         "expected one cube. Pass variable=<name> to choose one.")
    return top[0]


def _unmixing_to_cube(arr: np.ndarray, arrays: dict, path: Path, name: str) -> np.ndarray:
    """(bands, pixels) matrix + nRow/nCol -> (C, Y, X), pixels in column-major order."""
    lower = {k.split("/")[-1].lower(): v for k, v in arrays.items()}
    for rk, ck in _SHAPE_NAMES:
        if rk in lower and ck in lower:
            rows, cols = int(np.ravel(lower[rk])[0]), int(np.ravel(lower[ck])[0])
            for mat in (arr, arr.T):
                if mat.shape[1] == rows * cols:
                    # pixel index p = r + c * rows (MATLAB column-major)
                    return mat.reshape(mat.shape[0], cols, rows).transpose(0, 2, 1)
            raise InputError(f"{path}: variable '{name}' has shape {arr.shape} but nRow*nCol = "
                             f"{rows}*{cols} = {rows * cols}; expected a (bands, {rows * cols}) "
                             "matrix. Check the nRow/nCol variables.")
    raise InputError(f"{path}: variable '{name}' is a 2-D matrix of shape {arr.shape}; a cube "
                     "(Y, X, C) was expected. A bands x pixels matrix needs its image shape: "
                     "add variables nRow and nCol to the file, or save the cube as 3-D.")
