"""GeoTIFF georeferencing: the tags kept in ``metadata["geo"]`` (JSON-serialisable), GDAL's nodata
value and band scale, the pixel grid they describe (:func:`geo_transform`), a fusion result's
(:func:`output_geo`) and the tags written back (:func:`geo_tags`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .base import TIFF_SUFFIXES, to_jsonable

# GeoTIFF tag codes -> metadata["geo"] keys; GDAL's nodata tag
_GEO_TAGS = {33550: "pixel_scale", 33922: "tiepoint", 34264: "transform", 34735: "geokeys",
             34736: "geo_double", 34737: "geo_ascii"}


GDAL_NODATA_TAG = 42113


GDAL_METADATA_TAG = 42112


def tiff_geo(page) -> dict:
    """``{"geo": {...}, "nodata": float}`` from a page's GeoTIFF/GDAL tags (keys only if present)."""
    out: dict[str, Any] = {}
    geo = {}
    for code, key in _GEO_TAGS.items():
        tag = page.tags.get(code)
        if tag is not None:
            val = tag.value
            geo[key] = val.rstrip("\x00") if isinstance(val, str) else to_jsonable(np.ravel(val))
    if geo:
        out["geo"] = geo
    nodata = _parse_nodata(page.tags.get(GDAL_NODATA_TAG))
    if nodata is not None:
        out["nodata"] = nodata
    scale = _gdal_scale(page.tags.get(GDAL_METADATA_TAG))
    if scale is not None:
        out["gdal_scale"] = scale
    return out


def image_geo(path: str | os.PathLike) -> dict:
    """A TIFF's ``{"geo", "nodata"}`` (as :func:`read_image_file` keeps them) without reading its
    pixels; ``{}`` for other files and TIFFs without them."""
    if Path(path).suffix.lower() not in TIFF_SUFFIXES:
        return {}
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            return tiff_geo(tif.pages[0])
    except Exception:  # noqa: BLE001 - unreadable here: the pixel reader says why
        return {}


def _gdal_scale(tag) -> float | None:
    """GDAL's band scale (``<Item ... role="scale">``) when every band has the same one."""
    if tag is None:
        return None
    found = set(re.findall(r'<Item[^>]*role="scale"[^>]*>\s*([-+0-9.eE]+)\s*</Item>', str(tag.value)))
    try:
        return float(found.pop()) if len(found) == 1 else None
    except ValueError:
        return None


def _parse_nodata(tag) -> float | None:
    """GDAL_NODATA is ASCII ('255', '-9999', 'nan'); None when absent or unparsable."""
    if tag is None:
        return None
    text = tag.value.decode("ascii", "replace") if isinstance(tag.value, bytes) else str(tag.value)
    try:
        return float(text.strip().rstrip("\x00"))
    except ValueError:
        return None


def geo_transform(metadata: dict | None) -> tuple[float, float, float, float] | None:
    """``(origin_y, origin_x, pixel_y, pixel_x)`` in map units from ``metadata["geo"]``, or None.

    The origin is the map position of the outer (top-left) corner of pixel (0, 0); pixel (r, c)'s
    corner lies at ``(origin_y + r * pixel_y, origin_x + c * pixel_x)``. ``pixel_y`` is negative
    for the usual north-up image (map y grows up, rows grow down). PixelIsPoint files (tie point
    at the pixel centre) are shifted by half a pixel. None without a pixel scale + single tie
    point or a transformation matrix, and for rotated grids.
    """
    geo = (metadata or {}).get("geo") or {}
    scale, tie, mat = geo.get("pixel_scale"), geo.get("tiepoint"), geo.get("transform")
    if scale is not None and tie is not None and len(scale) >= 2 and len(tie) == 6:
        px, py = float(scale[0]), -float(scale[1])
        ox, oy = tie[3] - tie[0] * px, tie[4] - tie[1] * py
    elif mat is not None and len(mat) == 16 and mat[1] == 0 and mat[4] == 0:
        px, py, ox, oy = float(mat[0]), float(mat[5]), float(mat[3]), float(mat[7])
    else:
        return None
    if _raster_type(geo.get("geokeys")) == 2:  # PixelIsPoint: tie point is the pixel centre
        ox, oy = ox - px / 2, oy - py / 2
    return float(oy), float(ox), py, px


def output_geo(hr_meta: dict | None, lr_meta: dict | None, scale: int, grid: str = "hr",
               hr_zoom: tuple[float, float] | None = None) -> dict | None:
    """The georeferencing of a fusion result (``metadata["geo"]`` form, PixelIsArea), or None.

    ``grid="hr"``: the result lies on the HR image's pixels: its transform (divided by
    ``hr_zoom``, (zy, zx), when the image was resampled to an exact multiple; a crop of trailing
    rows keeps the corner), else the LR cube's with pixels ``scale`` times smaller.
    ``grid="lr"``: the LR cube's frame at HR resolution. The CRS (GeoKeys) comes with the
    transform, or from the other file when that one has none (the pair shares one scene)."""
    hr_t, lr_t = geo_transform(hr_meta), geo_transform(lr_meta)
    if grid == "hr" and hr_t is not None:
        (oy, ox, py, px), source = hr_t, hr_meta
        if hr_zoom is not None:
            py, px = py / hr_zoom[0], px / hr_zoom[1]
    elif lr_t is not None:
        (oy, ox, py, px), source = lr_t, lr_meta
        py, px = py / scale, px / scale
    else:
        return None
    crs = [m["geo"] for m in (source, hr_meta, lr_meta) if m and (m.get("geo") or {}).get("geokeys")]
    geo = {"pixel_scale": [abs(px), abs(py), 0.0], "tiepoint": [0.0, 0.0, 0.0, ox, oy, 0.0]}
    if crs:
        geo["geokeys"] = as_pixel_is_area(crs[0]["geokeys"])
        geo.update({k: crs[0][k] for k in ("geo_double", "geo_ascii") if k in crs[0]})
    return geo


def as_pixel_is_area(keys) -> list[int]:
    """A GeoKeyDirectory with GTRasterTypeGeoKey (1025) set to PixelIsArea: the tie point written
    is the outer corner of the first pixel (:func:`geo_transform` moved a PixelIsPoint one)."""
    keys = [int(k) for k in keys]
    for i in range(4, min(len(keys), 4 + 4 * keys[3]), 4):
        if keys[i] == 1025 and keys[i + 1] == 0:
            keys[i + 3] = 1
    return keys


def geo_tags(geo: dict | None) -> list[tuple]:
    """tifffile ``extratags`` for GeoTIFF tags from a ``metadata["geo"]`` dict. tifffile writes these
    standard tags itself, so a georeferenced result needs no GDAL/rasterio (a large binary stack for
    four tags); GDAL, QGIS and rasterio read them back."""
    if not geo:
        return []
    codes = {v: k for k, v in _GEO_TAGS.items()}
    tags = []
    for key, dtype in (("pixel_scale", "d"), ("tiepoint", "d"), ("transform", "d"), ("geokeys", "H"),
                       ("geo_double", "d")):
        if geo.get(key) is not None:
            values = [float(v) for v in geo[key]] if dtype == "d" else [int(v) for v in geo[key]]
            tags.append((codes[key], dtype, len(values), values, True))
    if geo.get("geo_ascii"):
        tags.append((codes["geo_ascii"], "s", 0, str(geo["geo_ascii"]), True))
    return tags


def _raster_type(keys) -> int | None:
    """GTRasterTypeGeoKey (1025) from a GeoKeyDirectory: 1 = PixelIsArea, 2 = PixelIsPoint."""
    if not keys or len(keys) < 4:
        return None
    for i in range(4, min(len(keys), 4 + 4 * int(keys[3])), 4):
        if keys[i] == 1025 and len(keys) > i + 3 and keys[i + 1] == 0:
            return int(keys[i + 3])
    return None
