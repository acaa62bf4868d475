"""Zarr results: OME-Zarr (NGFF 0.5) multiscale images with our wavelengths and settings, written
under a temporary name and read level by level."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..outputs import claim, discard, is_fusion_settings, replace_store, storage_errors, temp_name
from .base import CubeFile, read_error


def write_zarr(cube, path: str | os.PathLike, wavelengths=None, settings: dict | None = None,
               chunk: int = 256, inputs=()) -> Path:
    """Write a cube (C, Y, X; numpy, dask or zarr) as an OME-Zarr multiscale image
    (:func:`create_ome_zarr`) with its wavelengths and settings, under a temporary name renamed
    into place (never a half-written store). The cube is read ``chunk`` rows at a time. An existing
    store is replaced only when it is a result of ours, never when it is one of ``inputs``
    (:func:`.outputs.claim`): a folder holding anything else is left alone."""
    path = Path(path)
    if path.suffix.lower() != ".zarr":
        raise InputError(f"{path}: a Zarr store's name ends in .zarr.")
    dest = claim(path, inputs, fused=is_fusion_settings(settings))
    if not dest.parent.is_dir():
        raise InputError(f"{path}: the folder {dest.parent} does not exist; create it first.")
    temp = temp_name(dest, "tmp.zarr")
    try:
        with storage_errors(path):
            shape = tuple(np.shape(cube))
            group, level0 = create_ome_zarr(temp, shape, chunk)
            for r in range(0, shape[1], chunk):
                level0[:, r:r + chunk] = np.asarray(cube[:, r:r + chunk], dtype=np.float32)
            finish_ome_zarr(group, {"wavelengths": None if wavelengths is None else
                                    [float(v) for v in np.ravel(wavelengths)], "settings": settings or {}})
            replace_store(temp, dest)
    except BaseException:
        discard(temp)
        raise
    return path


PYRAMID_MIN = 1024  # levels are added (2x2 means) until the largest side is below this


def create_ome_zarr(path: Path, shape: tuple[int, int, int], chunk: int):
    """A Zarr v3 group at ``path`` with level ``0`` (C, Y, X) float32, chunks of at most 32 bands
    and ``chunk`` pixels a side (a 198-band chunk would make every read and write 200 MB).
    :func:`finish_ome_zarr` adds the lower levels and the metadata."""
    import zarr

    if path.exists():
        import shutil

        shutil.rmtree(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    C = shape[0]
    level0 = group.create_array("0", shape=shape, dtype="float32", chunks=(min(C, 32), chunk, chunk),
                                fill_value=0.0, dimension_names=("c", "y", "x"))
    return group, level0


def build_pyramid(group, min_side: int | None = None) -> int:
    """Add levels ``1``, ``2``... to ``group``, each the 2x2 mean of the one above (an odd last row
    or column is dropped), until the largest side is below ``min_side``; chunk by chunk, so
    memory holds a few chunks. Returns the number of levels."""
    min_side = PYRAMID_MIN if min_side is None else min_side
    n = 1
    src = group["0"]
    while max(src.shape[1:]) >= min_side and min(src.shape[1:]) >= 2:
        C, Y, X = src.shape
        dst = group.create_array(str(n), shape=(C, Y // 2, X // 2), dtype="float32", chunks=src.chunks,
                                 fill_value=0.0, dimension_names=("c", "y", "x"))
        bc, ch, cw = dst.chunks
        for b in range(0, C, bc):
            for r in range(0, Y // 2, ch):
                for c in range(0, X // 2, cw):
                    r1, c1 = min(Y // 2, r + ch), min(X // 2, c + cw)
                    block = np.asarray(src[b:b + bc, 2 * r:2 * r1, 2 * c:2 * c1], dtype=np.float64)
                    dst[b:b + bc, r:r1, c:c1] = block.reshape(-1, r1 - r, 2, c1 - c, 2).mean(axis=(2, 4))
        src, n = dst, n + 1
    return n


def finish_ome_zarr(group, attrs: dict, min_side: int | None = None) -> None:
    """Build the lower levels, then write the NGFF 0.5 ``multiscales`` metadata (axes c, y, x; a
    scale per level) beside our own attributes (``wavelengths``, ``settings``)."""
    n = build_pyramid(group, min_side)
    datasets = [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0 ** i, 2.0 ** i]}]}
                for i in range(n)]
    ome = {"version": "0.5", "multiscales": [{
        "name": "fused", "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                                  {"name": "x", "type": "space"}],
        "datasets": datasets, "type": "mean", "metadata": {"method": "2x2 mean of the level above"}}]}
    group.attrs.update(json.loads(json.dumps({**attrs, "ome": ome}, default=str)))


def open_zarr_levels(path: str | os.PathLike) -> tuple[list, dict]:
    """The levels (full resolution first) and attributes of a Zarr result: an OME-Zarr multiscale
    image (NGFF 0.5, or 0.4 with ``multiscales`` at the top) or a plain array (older results)."""
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return [node], dict(node.attrs)
    attrs = dict(node.attrs)
    multiscales = (attrs.get("ome") or attrs).get("multiscales")
    if not multiscales:
        raise InputError(f"{path}: a Zarr group without OME 'multiscales' metadata; expected a result of "
                         "napari-hsisr or an OME-Zarr image.")
    levels = [node[d["path"]] for d in multiscales[0]["datasets"]]
    if levels[0].ndim != 3:
        raise InputError(f"{path}: its image is {levels[0].ndim}-D; a cube is (C, Y, X).")
    return levels, attrs


def open_zarr_cube(path: Path) -> CubeFile:
    """A Zarr result as a :class:`CubeFile` whose data is its full-resolution level, read on demand;
    ``metadata["levels"]`` lists every level's shape."""
    try:
        levels, attrs = open_zarr_levels(path)
    except InputError:
        raise
    except Exception as exc:  # any reader failure becomes one line
        raise read_error(path, exc) from exc
    wl = attrs.get("wavelengths")
    meta = {"format": "ome-zarr" if len(levels) > 1 or "ome" in attrs else "zarr", "source": str(path),
            "settings": attrs.get("settings"), "levels": [list(z.shape) for z in levels]}
    return CubeFile(levels[0], None if wl is None else np.asarray(wl, float), meta)
