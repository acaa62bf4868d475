"""Pairing two georeferenced rasters by map coordinates (no Qt, no napari).

A satellite or airborne pair comes as two files, each on its own grid, extent and often CRS; the HR
image usually covers far more ground than the cube. :func:`pair_by_coordinates` puts the HR image
on the cube's grid: the cube is the master, the output grid is its grid refined by an integer
ratio, the HR image is reprojected onto it (only the window over the common footprint is read),
and the cube is cropped to the pixels the HR image covers. A sub-pixel residual shift is left to
the fusion's blind registration.

Georeferencing is read from GeoTIFF tags (:func:`.io.image_geo`), ENVI ``map info`` /
``coordinate system string`` and our own Zarr results (``settings.output_geo``). A pair whose HR
pixels already fall on the refined cube grid (same CRS, integer offset) is cut by slicing, so it
needs nothing more than today; any other pair needs rasterio + pyproj (GDAL), the ``geo`` extra.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import (
    TIFF_SUFFIXES,
    CubeFile,
    ImageFile,
    geo_transform,
    image_geo,
    open_image_lazy,
)
from .io.geotiff import as_pixel_is_area

GEO_EXTRA = 'pip install "napari-hsisr[geo]"'
BLOCK = 1024  # output pixels a side reprojected at a time: a block's source window bounds memory
_ALIGN_TOL = 1e-3  # of a pixel: grids closer than this are the same grid


@dataclass
class Georef:
    """A raster's grid: ``transform`` (origin_y, origin_x, pixel_y, pixel_x) as
    :func:`.io.geo_transform` gives it, ``crs`` (``"EPSG:n"``, WKT, or None when the file has a
    transform only), ``shape`` (rows, columns) when known, ``nodata`` and ``geo`` (the tags,
    ``metadata["geo"]`` form, when the file is a GeoTIFF)."""

    transform: tuple[float, float, float, float]
    crs: str | None
    shape: tuple[int, int] | None = None
    nodata: float | None = None
    geo: dict | None = None


@dataclass
class GeoPair:
    """What :func:`pair_by_coordinates` gives: ``hr`` (Y, X, k) on the output grid in the HR
    file's dtype, ``lr`` the cube cropped to the common footprint (``mask`` False where the HR image
    has no data), ``scale`` the integer ratio, ``notes`` for the user and ``output_geo`` the
    output grid (``metadata["geo"]`` form, in the cube's CRS, for the shared GeoTIFF writer)."""

    hr: np.ndarray
    lr: CubeFile
    scale: int
    output_geo: dict
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading
def read_georef(path, metadata: dict | None = None) -> Georef | None:
    """The georeferencing of a file (or of what its reader put in ``metadata``), None without a
    transform. TIFF: GeoTIFF tags; ENVI: ``map info``; Zarr results: ``settings.output_geo``."""
    meta = dict(metadata or {})
    path = Path(path)
    if "geo" not in meta and path.suffix.lower() in TIFF_SUFFIXES:
        meta.update(image_geo(path))
    if "geo" not in meta and (meta.get("envi_header") or path.suffix.lower() == ".hdr"):
        return _envi_georef(meta.get("envi_header") or _envi_header(path))
    if "geo" not in meta:
        out = (meta.get("settings") or {}).get("output_geo") if isinstance(meta.get("settings"), dict) else None
        if out is None and path.suffix.lower() == ".zarr" and path.is_dir():
            out = _zarr_geo(path)
        if out:
            meta["geo"] = out
    t = geo_transform(meta)
    if t is None:
        return _rasterio_georef(path) if path.suffix.lower() == ".jp2" else None
    geo = meta["geo"]
    crs = geo.get("crs") or _crs_from_geokeys(geo.get("geokeys"), path)
    return Georef(t, crs, _raster_shape(path), meta.get("nodata"), geo)


def _rasterio_georef(path: Path) -> Georef | None:
    """A raster only GDAL reads (JPEG 2000, as Sentinel-2 tiles ship): None without rasterio."""
    try:
        import rasterio

        with rasterio.open(path) as src:
            t = src.transform
            if t.b or t.d:
                return None  # a rotated grid
            return Georef((t.f, t.c, t.e, t.a), src.crs.to_wkt() if src.crs else None, src.shape, src.nodata)
    except Exception:  # noqa: BLE001 - no rasterio, or not a raster
        return None


def _crs_from_geokeys(keys, path: Path) -> str | None:
    """``"EPSG:n"`` from a GeoKeyDirectory (ProjectedCSType 3072, else GeographicType 2048); a
    user-defined CRS (32767) is read as WKT by rasterio when it is installed."""
    if not keys or len(keys) < 4:
        return None
    found = {int(keys[i]): int(keys[i + 3]) for i in range(4, min(len(keys), 4 + 4 * int(keys[3])) - 3, 4)
             if int(keys[i + 1]) == 0}
    for code in (3072, 2048):
        if 0 < found.get(code, 0) < 32767:
            return f"EPSG:{found[code]}"
    try:
        import rasterio

        with rasterio.open(path) as src:
            return src.crs.to_wkt() if src.crs else None
    except Exception:  # noqa: BLE001 - no rasterio or not a GDAL raster: the CRS stays unknown
        return None


def _raster_shape(path: Path) -> tuple[int, int] | None:
    try:
        shape = np.shape(open_image_lazy(path)) if path.suffix.lower() in TIFF_SUFFIXES else None
    except InputError:
        return None
    return None if shape is None else (int(shape[0]), int(shape[1]))


def _zarr_geo(path: Path) -> dict | None:
    from .io import open_zarr_levels

    try:
        _, attrs = open_zarr_levels(path)
    except Exception:  # noqa: BLE001 - not one of our stores
        return None
    return ((attrs.get("settings") or {}).get("output_geo")) or None


def _envi_header(path: Path) -> dict:
    try:
        from spectral import envi

        return dict(envi.read_envi_header(str(path)))
    except Exception:  # noqa: BLE001 - unreadable here: the cube reader says why
        return {}


def _envi_georef(header: dict) -> Georef | None:
    """ENVI ``map info = {proj, ref x, ref y, easting, northing, px, py[, zone, North|South, datum],
    units=...[, rotation=...]}`` (reference pixel 1-based, its outer corner at (1, 1))."""
    info = header.get("map info")
    if not info:
        return None
    items = [str(v).strip() for v in (info if isinstance(info, list) else str(info).strip("{}").split(","))]
    if any(i.lower().startswith("rotation") and float(i.split("=")[1]) != 0 for i in items if "=" in i):
        return None  # a rotated grid: not a north-up transform
    try:
        rx, ry, e, n, px, py = (float(v) for v in items[1:7])
    except (ValueError, IndexError):
        return None
    ox, oy = e - (rx - 1) * px, n + (ry - 1) * py
    crs = header.get("coordinate system string")
    crs = (",".join(crs) if isinstance(crs, list) else str(crs)).strip("{} ") if crs else None
    if not crs and items[0].upper() == "UTM" and len(items) >= 10 and "WGS" in items[9].upper():
        crs = f"EPSG:{(32600 if items[8].lower().startswith('n') else 32700) + int(float(items[7]))}"
    if crs and crs.upper().startswith("EPSG"):
        crs = crs.upper()
    geo = {"pixel_scale": [px, py, 0.0], "tiepoint": [0.0, 0.0, 0.0, ox, oy, 0.0]}
    return Georef((oy, ox, -py, px), crs or None, None, _float(header.get("data ignore value")), geo)


def _float(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- CRS helpers
def _pyproj_crs(crs: str):
    try:
        from pyproj import CRS
    except ImportError:
        return None
    try:
        return CRS.from_user_input(crs)
    except Exception as exc:
        raise InputError(f"CRS {crs!r} is not one pyproj knows; give it as EPSG:<code> (e.g. --lr-crs EPSG:32618) "
                         "or as WKT.") from exc


def same_crs(a: str | None, b: str | None) -> bool:
    """Whether two CRSs are the same (None = unknown, taken as the other's)."""
    if a is None or b is None or a == b:
        return True
    ca, cb = _pyproj_crs(a), _pyproj_crs(b)
    if ca is None or cb is None:
        return False  # cannot tell without pyproj: treated as different (reprojection asks for the extra)
    return ca == cb or (ca.to_epsg() is not None and ca.to_epsg() == cb.to_epsg())


def geokeys_for(crs: str | None) -> dict:
    """GeoKey tags (``geokeys``, PixelIsArea) for an ``EPSG:n`` CRS, ``{}`` when it has no EPSG code."""
    code = None
    if crs and re.fullmatch(r"EPSG:\d+", crs.strip().upper()):
        code = int(crs.split(":")[1])
    elif crs:
        c = _pyproj_crs(crs)
        code = c.to_epsg() if c is not None else None
    if code is None:
        return {}
    c = _pyproj_crs(f"EPSG:{code}")
    geographic = c.is_geographic if c is not None else code in (4326, 4269, 4258)
    model, key = (2, 2048) if geographic else (1, 3072)
    return {"geokeys": [1, 1, 0, 3, 1024, 0, 1, model, 1025, 0, 1, 1, key, 0, 1, code]}


# --------------------------------------------------------------------------- pairing
def pair_by_coordinates(hr_path, lr: CubeFile, lr_path=None, scale: int | None = None, lr_crs: str | None = None,
                        hr_bands=None, hr_nodata: float | None = None) -> GeoPair | None:
    """The HR image on the cube's grid refined by an integer ratio, cropped to the common footprint;
    None when the two files are not both georeferenced (pair them as today: shared corner).

    ``scale``: the ratio (default round(cube pixel / HR pixel), sizes in the cube's CRS);
    ``lr_crs``: the cube's CRS when its file has none (``EPSG:32618``); ``hr_bands``: 0-based HR
    bands to keep (default all); ``hr_nodata``: the HR value meaning no data (default the file's).
    No overlap, or one that needs reprojection without rasterio, is one-line InputError."""
    notes: list[str] = []
    sources = _hr_sources(hr_path, hr_bands, notes)
    lr_ref = read_georef(lr_path or lr.metadata.get("source", ""), lr.metadata)
    if sources is None or lr_ref is None:
        return None
    hr_ref = min((ref for _, ref, _ in sources), key=lambda r: abs(r.transform[3]))  # the finest sets the ratio
    lr_c, hr_c = _resolve_crs(lr_ref, hr_ref, lr_crs, notes)
    ly, lx = np.shape(lr.data)[-2:]
    ratio = _ratio(lr_ref, hr_ref, lr_c, hr_c, scale)
    out_t = (lr_ref.transform[0], lr_ref.transform[1], lr_ref.transform[2] / ratio, lr_ref.transform[3] / ratio)
    parts = [_on_output_grid(path, ref, bands, out_t, (ly * ratio, lx * ratio), lr_c,
                             ref.crs or hr_c, hr_nodata if hr_nodata is not None else ref.nodata)
             for path, ref, bands in sources]
    if any(resampled for *_, resampled in parts):
        how = "resampled" if same_crs(lr_c, hr_c) else f"reprojected from {_crs_name(hr_c)}"
        notes.append(f"the HR image was {how} onto the cube's grid in {_crs_name(lr_c)} at 1/{ratio} of its pixel")
    hr = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts], axis=-1)
    valid = np.logical_and.reduce([p[1] for p in parts])
    crs_tags = _crs_tags(lr_ref, hr_ref, lr_crs, lr_c)
    return _crop_to_footprint(hr, valid, lr, lr_ref, ratio, crs_tags, lr_c, notes)


def paired_shape(hr_path, lr_path, lr_shape, scale: int | None = None, lr_crs: str | None = None):
    """The (rows, columns) :func:`pair_by_coordinates` makes at most (the cube's extent refined by
    the ratio), without reading pixels; None for a pair that is not georeferenced. For the memory
    check: a large HR tile over a small cube is fused at the cube's extent, not the tile's."""
    sources = _hr_sources(hr_path, None, [])
    lr_ref = read_georef(lr_path)
    if sources is None or lr_ref is None:
        return None
    hr_ref = min((ref for _, ref, _ in sources), key=lambda r: abs(r.transform[3]))
    lr_c, hr_c = _resolve_crs(lr_ref, hr_ref, lr_crs, [])
    ratio = _ratio(lr_ref, hr_ref, lr_c, hr_c, scale)
    return int(lr_shape[0]) * ratio, int(lr_shape[1]) * ratio


@dataclass
class PairPlan:
    """What :func:`pair_by_coordinates` will do with two files, told without reading pixels (for a
    viewer that shows it before a run): ``ratio``, the two CRSs (``hr_crs`` None when the HR file
    names none), ``same_crs``, ``overlap`` the cube pixels inside the HR image's extent as
    (north, west, south, east) in the cube's CRS, snapped to whole cube pixels (None when they do
    not overlap), ``notes`` as the pairing says them."""

    ratio: int
    lr_crs: str | None
    hr_crs: str | None
    same_crs: bool
    overlap: tuple[float, float, float, float] | None
    notes: list[str] = field(default_factory=list)

    @property
    def crs_names(self) -> tuple[str, str]:
        return crs_name(self.lr_crs), crs_name(self.hr_crs)


def plan_pair(hr_path, lr_path, lr_shape, lr_metadata: dict | None = None, scale: int | None = None,
              lr_crs: str | None = None) -> PairPlan | None:
    """:class:`PairPlan` of a pair, None when the two files are not both georeferenced. The overlap
    is the two extents' (the HR image's outline transformed into the cube's CRS); the run's
    footprint can be smaller where the HR image holds nodata. ``lr_shape``: the cube's (rows,
    columns); ``lr_metadata``: what its reader kept (``geo``, ``envi_header``)."""
    notes: list[str] = []
    sources = _hr_sources(hr_path, None, notes)
    lr_ref = read_georef(lr_path, lr_metadata)
    if sources is None or lr_ref is None:
        return None
    hr_ref = min((ref for _, ref, _ in sources), key=lambda r: abs(r.transform[3]))
    lr_ref = replace(lr_ref, shape=(int(lr_shape[0]), int(lr_shape[1])))
    lr_c, hr_c = _resolve_crs(lr_ref, hr_ref, lr_crs, notes)
    ratio = _ratio(lr_ref, hr_ref, lr_c, hr_c, scale)
    overlap = _extent_overlap(lr_ref, hr_ref, lr_c, hr_c)
    return PairPlan(ratio, lr_c, hr_c, same_crs(lr_c, hr_c), overlap, notes)


def _extent_overlap(lr_ref: Georef, hr_ref: Georef, lr_c, hr_c):
    """The cube pixels inside the HR image's extent (its densified outline in the cube's CRS), as
    (north, west, south, east) map coordinates of their outer edges; None when there are none."""
    rows, cols = hr_ref.shape
    t = np.linspace(0, 1, 33)
    r = np.concatenate([np.zeros_like(t), t, np.ones_like(t), t[::-1]]) * rows
    c = np.concatenate([t, np.ones_like(t), t[::-1], np.zeros_like(t)]) * cols
    oy, ox, py, px = hr_ref.transform
    xs, ys = ox + c * px, oy + r * py
    if not same_crs(lr_c, hr_c):
        xs, ys = _transform_points(hr_c, lr_c, xs, ys)
    loy, lox, lpy, lpx = lr_ref.transform
    ly, lx = lr_ref.shape
    # the outline's bounding box in cube pixels, shrunk to the whole pixels inside it
    cr = sorted(((np.min(ys) - loy) / lpy, (np.max(ys) - loy) / lpy))
    cc = sorted(((np.min(xs) - lox) / lpx, (np.max(xs) - lox) / lpx))
    r0, r1 = max(math.ceil(cr[0] - _ALIGN_TOL), 0), min(math.floor(cr[1] + _ALIGN_TOL), ly)
    c0, c1 = max(math.ceil(cc[0] - _ALIGN_TOL), 0), min(math.floor(cc[1] + _ALIGN_TOL), lx)
    if r1 <= r0 or c1 <= c0:
        return None
    return loy + r0 * lpy, lox + c0 * lpx, loy + r1 * lpy, lox + c1 * lpx


def _on_output_grid(path, ref: Georef, bands, out_t, out_shape, lr_c, hr_c, nodata):
    """(image (Y, X, k), valid, resampled?) of one HR file on the output grid: sliced when its pixels
    are the output pixels, else reprojected."""
    aligned = _offset_if_aligned(out_t, ref, lr_c, hr_c)
    if aligned is not None and Path(path).suffix.lower() in TIFF_SUFFIXES:  # others: GDAL reads them
        return (*_cut_aligned(path, ref, aligned, out_shape, bands, nodata), False)
    return (*_reproject_onto(path, ref, out_t, lr_c, hr_c, bands, nodata, out_shape), True)


RASTER_SUFFIXES = TIFF_SUFFIXES + (".jp2",)


def _hr_sources(hr_path, hr_bands, notes) -> list[tuple[Path, Georef, list | None]] | None:
    """The HR files to read, in name order, each with its bands (None = all), or None when the HR
    input is not georeferenced. A folder of per-band files (a Sentinel-2 tile's B02.jp2, B03.jp2,
    ...) gives one band per file: by default those at the finest pixel size; ``hr_bands`` (0-based,
    in name order) picks others, which are resampled onto the same grid."""
    path = Path(hr_path)
    if not path.is_dir():
        ref = read_georef(path)
        return None if ref is None or ref.shape is None else [(path, ref, hr_bands)]
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in RASTER_SUFFIXES)
    refs = [read_georef(f) for f in files]
    if not files or any(r is None or r.shape is None for r in refs):
        return None
    size = [abs(r.transform[3]) for r in refs]
    if hr_bands is None or hr_bands == "auto":
        keep = [i for i, s in enumerate(size) if s <= min(size) * (1 + _ALIGN_TOL)]
        left = [files[i].stem for i in range(len(files)) if i not in keep]
        if left:
            notes.append(f"HR bands at the finest pixel ({min(size):g}): {', '.join(files[i].stem for i in keep)}; "
                         f"left out: {', '.join(left)} (--hr-bands to pick, 1-based in name order)")
    else:
        keep = _select_bands(len(files), hr_bands)
    return [(files[i], refs[i], None) for i in sorted(keep)]


def _crs_tags(lr_ref: Georef, hr_ref: Georef, lr_crs, lr_c) -> dict:
    """The GeoKey tags of the output's CRS (the cube's): the cube file's own, else the HR file's when
    the cube's CRS was taken from it (all its keys kept), else built from the EPSG code."""
    for ref in ((lr_ref,) if not lr_crs else ()) + (hr_ref,):
        keys = (ref.geo or {}).get("geokeys")
        if keys and (ref is lr_ref or same_crs(ref.crs, lr_c)):
            tags = {k: ref.geo[k] for k in ("geo_double", "geo_ascii") if k in ref.geo}
            return {"geokeys": as_pixel_is_area(keys), **tags}  # the corner written is the outer one
    return geokeys_for(lr_c)


def _resolve_crs(lr_ref: Georef, hr_ref: Georef, lr_crs, notes) -> tuple[str | None, str | None]:
    lr_c = lr_ref.crs
    if lr_crs:
        if lr_c and not same_crs(lr_c, lr_crs):
            notes.append(f"--lr-crs {lr_crs} replaces the cube file's own CRS ({_crs_name(lr_c)})")
        lr_c = lr_crs.strip()
        _pyproj_crs(lr_c)  # a typo is one clear error
    hr_c = hr_ref.crs
    if lr_c is None and hr_c is not None:
        notes.append(f"the cube has a map transform but no CRS: taken as the HR image's ({_crs_name(hr_c)}); "
                     "--lr-crs to give it")
        lr_c = hr_c
        _check_in_geographic(lr_ref, lr_c, "the cube has a map transform but no CRS; --lr-crs EPSG:<code> to give it")
    elif hr_c is None and lr_c is not None:
        notes.append(f"the HR image has a map transform but no CRS: taken as the cube's ({_crs_name(lr_c)})")
        hr_c = lr_c
    elif hr_c is None and lr_c is None:
        notes.append("neither file names its CRS: both map transforms taken as in the same one (--lr-crs to give it)")
    return lr_c, hr_c


def _check_in_geographic(ref: Georef, crs, what: str) -> None:
    """A transform in metres read in degrees is a wrong guess of the CRS, not a pair far away."""
    c = _pyproj_crs(crs) if crs else None
    oy, ox = ref.transform[:2]
    if c is not None and c.is_geographic and (abs(ox) > 360 or abs(oy) > 90):
        raise InputError(f"{what}: its origin ({ox:g}, {oy:g}) cannot be in the HR image's {_crs_name(crs)} "
                         "(longitude/latitude).")


def crs_name(crs: str | None) -> str:
    """A CRS as people name it: ``EPSG:n``, else its pyproj name (``an unnamed CRS`` for None)."""
    return _crs_name(crs)


def _crs_name(crs: str | None) -> str:
    if crs is None:
        return "an unnamed CRS"
    if crs.upper().startswith("EPSG:"):
        return crs.upper()
    c = _pyproj_crs(crs)
    return (c.name if c is not None else crs[:40])


def _ratio(lr_ref: Georef, hr_ref: Georef, lr_c, hr_c, scale) -> int:
    """``scale``, else round(cube pixel / HR pixel) with the HR pixel measured in the cube's CRS."""
    lpy, lpx = abs(lr_ref.transform[2]), abs(lr_ref.transform[3])
    if scale is not None:
        ratio = int(scale)
    else:
        hpy, hpx = _hr_pixel_in(lr_c, hr_ref, hr_c)
        ratio = math.floor((lpy / hpy + lpx / hpx) / 2 + 0.5)
    if ratio > 1000:
        raise InputError(f"the cube's pixels ({lpx:g} map units) are {ratio} times the HR image's: the two CRSs or "
                         "pixel sizes do not match; check them (--lr-crs), or give --scale.")
    if ratio < 1:
        raise InputError(f"the HR image's pixels are larger than the cube's ({lpx:g} map units): fusion needs a finer "
                         "HR image; check the files, or give --scale.")
    return ratio


def _hr_pixel_in(lr_c, hr_ref: Georef, hr_c) -> tuple[float, float]:
    """The HR pixel's (height, width) in the cube's CRS units, measured at the HR image's centre."""
    oy, ox, py, px = hr_ref.transform
    if same_crs(lr_c, hr_c):
        return abs(py), abs(px)
    rows, cols = hr_ref.shape
    cy, cx = oy + py * rows / 2, ox + px * cols / 2
    xs, ys = _transform_points(hr_c, lr_c, [cx, cx + px, cx], [cy, cy, cy + py])
    return math.hypot(xs[2] - xs[0], ys[2] - ys[0]), math.hypot(xs[1] - xs[0], ys[1] - ys[0])


def _transform_points(src, dst, xs, ys):
    try:
        from pyproj import Transformer
    except ImportError:
        raise InputError(f"the HR image ({_crs_name(src)}) and the cube ({_crs_name(dst)}) are in different CRSs: "
                         f"reprojecting needs rasterio and pyproj: {GEO_EXTRA}") from None
    t = Transformer.from_crs(_pyproj_crs(src), _pyproj_crs(dst), always_xy=True)
    x, y = t.transform(np.asarray(xs, float), np.asarray(ys, float))
    return np.asarray(x), np.asarray(y)


def _offset_if_aligned(out_t, hr_ref: Georef, lr_c, hr_c) -> tuple[int, int] | None:
    """(row, column) of the output grid's first pixel in the HR image when the HR pixels are the
    output pixels (same CRS, same size, whole-pixel offset); None when they must be resampled."""
    if not same_crs(lr_c, hr_c):
        return None
    oy, ox, py, px = out_t
    hoy, hox, hpy, hpx = hr_ref.transform
    if abs(hpy - py) > _ALIGN_TOL * abs(py) or abs(hpx - px) > _ALIGN_TOL * abs(px):
        return None
    r, c = (oy - hoy) / py, (ox - hox) / px
    if abs(r - round(r)) > _ALIGN_TOL or abs(c - round(c)) > _ALIGN_TOL:
        return None
    return round(r), round(c)


def _valid(block: np.ndarray, nodata) -> np.ndarray:
    """True where a (Y, X, k) block has data: not every band at nodata (nor NaN)."""
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        return ~np.all(np.isnan(block), axis=-1) if block.dtype.kind == "f" else np.ones(block.shape[:2], bool)
    return ~np.all(block == nodata, axis=-1)


def _select_bands(hr_ref_bands: int, hr_bands) -> list[int]:
    if hr_bands is None or hr_bands == "auto":
        return list(range(hr_ref_bands))
    bad = [b + 1 for b in hr_bands if not 0 <= b < hr_ref_bands]
    if bad:
        raise InputError(f"--hr-bands {bad} not in the HR image, which has {hr_ref_bands} bands (1-based numbers).")
    return list(hr_bands)


def _cut_aligned(hr_path, hr_ref: Georef, offset, out_shape, hr_bands, nodata):
    """The output grid's pixels sliced out of the HR image (only that window is read); pixels off
    the image are invalid."""
    img = open_image_lazy(hr_path)
    k = np.shape(img)[2] if len(np.shape(img)) == 3 else 1
    bands = _select_bands(k, hr_bands)
    H, W = hr_ref.shape
    (r0, c0), (Y, X) = offset, out_shape
    out = np.zeros((Y, X, len(bands)), np.dtype(getattr(img, "dtype", np.float32)))
    valid = np.zeros((Y, X), bool)
    a, b = max(r0, 0), min(r0 + Y, H)
    c, d = max(c0, 0), min(c0 + X, W)
    if a < b and c < d:
        win = np.asarray(img[a:b, c:d])
        win = (win[..., None] if win.ndim == 2 else win)[..., bands]
        out[a - r0:b - r0, c - c0:d - c0] = win
        valid[a - r0:b - r0, c - c0:d - c0] = _valid(win, nodata)
    return out, valid


def _reproject_onto(hr_path, hr_ref: Georef, out_t, lr_c, hr_c, hr_bands, nodata, out_shape):
    """The HR image reprojected onto the output grid over the cube's extent, block by block: each
    block reads only the HR window it covers (bilinear, or average where the HR pixels are finer)."""
    try:
        import rasterio
        from rasterio.windows import Window
    except ImportError:
        raise InputError(f"pairing these georeferenced files needs a reprojection (the HR image is not on the "
                         f"cube's grid); that needs rasterio and pyproj: {GEO_EXTRA}") from None
    Y, X = out_shape
    with rasterio.open(hr_path) as src:
        bands = _select_bands(src.count, hr_bands)
        out = np.zeros((Y, X, len(bands)), np.dtype(src.dtypes[0]))
        valid = np.zeros((Y, X), bool)
        hpy, hpx = _hr_pixel_in(lr_c, hr_ref, hr_c)
        finer = min(hpy / abs(out_t[2]), hpx / abs(out_t[3])) < 0.75
        for r in range(0, Y, BLOCK):
            for c in range(0, X, BLOCK):
                h, w = min(BLOCK, Y - r), min(BLOCK, X - c)
                win = _source_window(src, out_t, (r, c, h, w), lr_c, hr_c)
                if win is None:
                    continue
                data = np.moveaxis(src.read([b + 1 for b in bands], window=Window(*win)), 0, -1)
                block, ok = _warp_block(data, _valid(data, nodata), src.window_transform(Window(*win)),
                                        _affine(out_t, r, c), (h, w), lr_c, hr_c, finer)
                out[r:r + h, c:c + w], valid[r:r + h, c:c + w] = block, ok
    return out, valid


def _affine(t, r=0, c=0):
    from rasterio.transform import Affine

    oy, ox, py, px = t
    return Affine(px, 0.0, ox + c * px, 0.0, py, oy + r * py)


def _source_window(src, out_t, block, lr_c, hr_c):
    """(col_off, row_off, width, height) of the HR pixels under an output block (its densified
    outline transformed into the HR CRS, 2 pixels of margin for the kernel), None when off the image."""
    r, c, h, w = block
    oy, ox, py, px = out_t
    t = np.linspace(0, 1, 17)
    rows = np.concatenate([np.zeros_like(t), t, np.ones_like(t), t[::-1]]) * h + r
    cols = np.concatenate([t, np.ones_like(t), t[::-1], np.zeros_like(t)]) * w + c
    xs, ys = ox + cols * px, oy + rows * py
    if not same_crs(lr_c, hr_c):
        xs, ys = _transform_points(lr_c, hr_c, xs, ys)
    inv = ~src.transform
    xs, ys = np.asarray(xs), np.asarray(ys)
    hc, hr_ = inv.a * xs + inv.b * ys + inv.c, inv.d * xs + inv.e * ys + inv.f
    c0, c1 = math.floor(np.min(hc)) - 2, math.ceil(np.max(hc)) + 2
    r0, r1 = math.floor(np.min(hr_)) - 2, math.ceil(np.max(hr_)) + 2
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, src.width), min(r1, src.height)
    if c1 <= c0 or r1 <= r0:
        return None
    return c0, r0, c1 - c0, r1 - r0


def _warp_block(data, ok, src_t, dst_t, shape, lr_c, hr_c, finer):
    """One output block from an HR window: the bands reprojected (float32, then back to the
    image's integer dtype) and the validity (a pixel is valid when more than half of what falls
    in it is HR data)."""
    from rasterio.warp import Resampling, reproject

    crs_s, crs_d = (hr_c or "EPSG:3857"), (lr_c or "EPSG:3857")  # both unknown: one CRS, the map is affine
    how = Resampling.average if finer else Resampling.bilinear
    k = data.shape[2]
    dst = np.zeros((k,) + shape, np.float32)
    reproject(np.moveaxis(data, -1, 0).astype(np.float32), dst, src_transform=src_t, src_crs=crs_s,
              dst_transform=dst_t, dst_crs=crs_d, resampling=how)
    frac = np.zeros(shape, np.float32)
    reproject(ok.astype(np.float32), frac, src_transform=src_t, src_crs=crs_s, dst_transform=dst_t, dst_crs=crs_d,
              resampling=how)
    out = np.moveaxis(dst, 0, -1)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(data.dtype), frac > 0.5


def _crop_to_footprint(hr, valid, lr: CubeFile, lr_ref: Georef, ratio, crs_tags: dict, lr_c, notes) -> GeoPair:
    """Crop the cube (and the HR image with it) to the bounding box of the cube pixels the HR image
    fully covers; the uncovered pixels left inside it are masked. No such pixel is an InputError."""
    from scipy.ndimage import binary_fill_holes

    ly, lx = np.shape(lr.data)[-2:]
    # nodata inside the footprint is taken as data (a uint8 mosaic's nodata 255 is also white; --hr-nodata masks
    # such pixels, as for any pair): the file's nodata only draws the footprint's outline
    valid = binary_fill_holes(valid)
    covered = valid.reshape(ly, ratio, lx, ratio).all(axis=(1, 3))
    if not covered.any():
        raise InputError("the HR image and the LR cube do not overlap on the map (no cube pixel is covered by HR "
                         "data): check that the two files show the same place.")
    rows, cols = np.flatnonzero(covered.any(1)), np.flatnonzero(covered.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    covered = covered[r0:r1, c0:c1]
    mask = covered if lr.mask is None else (np.asarray(lr.mask)[r0:r1, c0:c1] & covered)
    dropped = ly * lx - covered.size
    holes = int(covered.size - covered.sum())
    if dropped:
        notes.append(f"cube cropped to the HR image's footprint: {r1 - r0}x{c1 - c0} of {ly}x{lx} pixels kept "
                     f"({dropped} outside)")
    if holes:
        notes.append(f"{holes} cube pixels inside the footprint have no HR data: masked")
    oy, ox, py, px = lr_ref.transform
    oy, ox = oy + r0 * py, ox + c0 * px
    cube_geo = {"pixel_scale": [abs(px), abs(py), 0.0], "tiepoint": [0.0, 0.0, 0.0, ox, oy, 0.0], **crs_tags}
    if lr_c:
        cube_geo["crs"] = lr_c
    out_geo = {**cube_geo, "pixel_scale": [abs(px) / ratio, abs(py) / ratio, 0.0]}
    meta = {**lr.metadata, "geo": cube_geo}
    data = np.asarray(lr.data[..., r0:r1, c0:c1]) if (r0, r1, c0, c1) != (0, ly, 0, lx) else lr.data
    cropped = replace(lr, data=data, mask=None if (lr.mask is None and not holes) else mask, metadata=meta)
    hr = hr[r0 * ratio:r1 * ratio, c0 * ratio:c1 * ratio]
    return GeoPair(np.ascontiguousarray(hr), cropped, ratio, out_geo, notes)


def as_image_file(pair: GeoPair, hr_path) -> ImageFile:
    """The paired HR image as the readers give it (its ``geo`` is the output grid's)."""
    return ImageFile(pair.hr, {"format": "georef", "source": str(hr_path), "geo": pair.output_geo})
