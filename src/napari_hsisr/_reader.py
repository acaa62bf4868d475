"""npe2 reader: hyperspectral cubes (TIFF/OME-TIFF, ENVI, .mat, .npy, CAVE folders, Zarr results)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.io import CUBE_SUFFIXES, TIFF_SUFFIXES, find_cave_bands, read_cube

if TYPE_CHECKING:  # pragma: no cover
    from napari.types import LayerDataTuple  # noqa: F401


def _supported(path: Any) -> bool:
    p = Path(path)
    if p.suffix.lower() == ".zarr" and p.is_dir():
        return any((p / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))  # Zarr v3 or v2
    if p.is_dir():
        return find_cave_bands(p) is not None
    if not p.is_file():
        return False
    return p.suffix.lower() in CUBE_SUFFIXES or find_cave_bands(p) is not None


def napari_get_reader(path):
    """Return :func:`read_layers` if every path is a supported cube, else None (never raises)."""
    try:
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        if paths and all(_supported(p) for p in paths):
            return read_layers
    except Exception:  # noqa: BLE001 - a reader hook must never raise
        pass
    return None


def read_layers(path) -> list[tuple]:
    """Read one or several cubes into napari layer tuples: data (C, Y, X) float32."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [_layer(Path(p)) for p in paths]


def _zarr_layer(path: Path) -> tuple:
    """A tiled result stays on disk: a dask-backed layer reads the chunks napari shows, from the
    OME-Zarr level that fits the zoom (a multiscale layer when the store has several levels)."""
    import dask.array as da

    from .core.io import open_cube_lazy, open_zarr_levels

    cf = open_cube_lazy(path)
    levels = [da.from_zarr(z) for z in open_zarr_levels(path)[0]]
    meta = {"wavelengths": None if cf.wavelengths is None else [float(w) for w in cf.wavelengths],
            "wavelength_units": "nm", "settings": cf.metadata.get("settings"), "source": str(path)}
    kwargs = {"name": path.stem, "metadata": meta, **_placed(path, meta, 1)}
    if len(levels) > 1:
        return levels, {**kwargs, "multiscale": True}, "image"
    return levels[0], kwargs, "image"


def _layer(path: Path) -> tuple:
    if path.suffix.lower() == ".zarr":
        return _zarr_layer(path)
    # the file's documented scale (NEON: x 10000) and the band table beside it, as hsisr fuse reads them
    cf = read_cube(path, wavelengths="auto", value_scale="auto")
    other = {k: v for k, v in cf.metadata.items() if k not in ("wavelengths", "wavelength_units")}
    meta = {"wavelengths": None if cf.wavelengths is None else [float(w) for w in cf.wavelengths],
            "wavelength_units": "nm", **other}
    name = path.name[:-len(".ome.tif")] if path.name.lower().endswith(".ome.tif") else path.stem
    kwargs: dict[str, Any] = {"name": name, "metadata": meta}
    data = cf.data
    rgb_tiff = (path.suffix.lower() in TIFF_SUFFIXES and str(cf.metadata.get("axes", "")).endswith("S")
                and data.shape[0] in (3, 4) and cf.wavelengths is None)
    kwargs.update(_placed(path, meta, 0 if rgb_tiff else 1))
    _say_what_was_read(path, meta)
    if rgb_tiff:
        kwargs["rgb"] = True
        return np.moveaxis(data, 0, -1), kwargs, "image"
    return data.astype(np.float32, copy=False), kwargs, "image"


def _placed(path: Path, meta: dict, lead: int) -> dict:
    """A georeferenced file's layer placed on the map (``scale``, ``translate`` of its Y, X axes in
    map units, north up; ``lead`` leading axes such as bands left at 1 and 0), its
    ``metadata["georef"]`` set (:mod:`._widgets._geo_layers`); {} for other files."""
    from ._widgets._geo_layers import file_georef, placement

    georef = file_georef(path, meta)
    if georef is None:
        return {}
    meta["georef"] = georef
    scale, translate = placement(georef)
    return {"scale": (1.0,) * lead + scale, "translate": (0.0,) * lead + translate}


def _say_what_was_read(path: Path, meta: dict) -> None:
    """One notice for what the reader did to the file's values and what it found (kept in metadata)."""
    parts = []
    if meta.get("value_scale_source"):
        parts.append(f"values x {meta['value_scale']:g} ({meta['value_scale_source']})")
    if meta.get("band_table"):
        parts.append(f"wavelengths from {Path(meta['band_table']).name}")
    if meta.get("georef"):
        from ._widgets._geo_layers import placed_note

        parts.append(placed_note(meta["georef"]))
    if meta.get("bad_bands"):
        parts.append(f"{len(meta['bad_bands'])} noisy bands marked (metadata['bad_bands']; plots skip them, the "
                     "Fusion dock's 'drop noisy bands' removes them)")
    if not parts:
        return
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # headless use of the reader
        return
    show_info(f"{path.name}: " + "; ".join(parts))
