"""Reading and writing hyperspectral cubes (no Qt, no napari).

Conventions: cubes are ``(C, Y, X)`` numpy arrays (bands first); wavelengths are a
float array of length C in nm (or None). HR RGB/MSI images are ``(Y, X, k)``.

TIFF round-trip: our writer stores a JSON object ``{"wavelengths", "wavelength_units",
"settings", "value_scale"}``: in ImageJ files in the ImageJ metadata ``Info`` field, in
OME-TIFF files in the private ASCII tag 65000 (``HSISR_TAG``) of the first page. Channel
labels ("550 nm") are written too so other software shows the wavelengths.

GeoTIFF: readers keep the georeferencing tags in ``metadata["geo"]`` (JSON-serialisable) and
GDAL's nodata value in ``metadata["nodata"]``; :func:`geo_transform` turns them into an origin
and a pixel size. LZW/deflate/JPEG-compressed TIFFs need ``imagecodecs`` (a dependency).
"""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .outputs import (
    claim,
    discard,
    is_fusion_settings,
    remove_stale,
    replace_store,
    storage_errors,
    temp_name,
)

HSISR_TAG = 65000
TIFF_SUFFIXES = (".tif", ".tiff")
CUBE_SUFFIXES = (".tif", ".tiff", ".hdr", ".mat", ".npy")
_CAVE_RE = re.compile(r"^(?P<scene>.+)_ms_(?P<nn>\d+)\.png$", re.IGNORECASE)
_WL_NAMES = ("wavelengths", "wavelength", "wl", "wavelengths_nm", "wavelength_nm", "lambda")
_SHAPE_NAMES = (("nrow", "ncol"), ("nrows", "ncols"), ("rows", "cols"), ("h", "w"))
# GeoTIFF tag codes -> metadata["geo"] keys; GDAL's nodata tag
_GEO_TAGS = {33550: "pixel_scale", 33922: "tiepoint", 34264: "transform", 34735: "geokeys",
             34736: "geo_double", 34737: "geo_ascii"}
GDAL_NODATA_TAG = 42113
GDAL_METADATA_TAG = 42112
# band tables: header names (lower case, units stripped) of the wavelength/flag/name columns
_TABLE_WL = ("wavelength", "wavelengths", "wl", "nm", "nanometer", "nanometers", "lambda", "center",
             "centre", "micrometer", "micrometers", "um", "center_wavelength", "centre_wavelength")
_TABLE_BAD = ("noise", "bad", "bad_band", "bad_bands", "water", "mask")  # 1 = bad
_TABLE_GOOD = ("bbl", "good", "good_band", "good_bands")  # 1 = good
_TABLE_NAME = ("bandname", "band_name", "name", "names", "label")


@dataclass
class CubeFile:
    """A cube read from disk: ``data`` (C, Y, X), ``wavelengths`` in nm or None.

    ``mask`` (Y, X) bool, True = valid, is set when a nodata value is known (or float data hold
    NaN): a pixel is invalid when all its bands are nodata. The data values are left unchanged.
    """

    data: np.ndarray
    wavelengths: np.ndarray | None
    metadata: dict = field(default_factory=dict)
    mask: np.ndarray | None = None


@dataclass
class ImageFile:
    """An HR image read from disk: ``data`` (Y, X, k) in its native dtype, ``metadata`` a dict
    (``format``, ``source``; for TIFFs also ``geo`` and ``nodata`` when the file has them)."""

    data: np.ndarray
    metadata: dict = field(default_factory=dict)


@dataclass
class BandTable:
    """A band table: centre wavelengths in nm, bad-band flags (True = bad) and names, if given."""

    wavelengths_nm: np.ndarray
    bad: np.ndarray | None = None
    names: list[str] | None = None
    units_note: str | None = None  # set when the values were converted (e.g. micrometres -> nm)


# --------------------------------------------------------------------------- helpers
def to_jsonable(obj: Any) -> Any:
    """Convert numpy arrays/scalars, paths, tuples and sets to JSON-serialisable values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise InputError(
        f"Setting value {obj!r} of type {type(obj).__name__} cannot be saved as JSON; "
        "pass numbers, strings, lists or dicts in the settings."
    )


def _wl_array(wl: Any, n: int | None = None) -> np.ndarray | None:
    if wl is None:
        return None
    arr = np.asarray(wl, dtype=float).ravel()
    if arr.size == 0 or (n is not None and arr.size != n):
        return None
    return arr


def _to_nm(wl: np.ndarray | None, units: str | None = None) -> np.ndarray | None:
    """Convert µm wavelengths to nm when units say so or all values are < 100."""
    if wl is None:
        return None
    u = (units or "").strip().lower()
    if u in ("micrometers", "micrometer", "microns", "micron", "um", "µm", "μm"):
        return wl * 1000.0
    if u in ("", "unknown") and np.nanmax(wl) < 100:
        return wl * 1000.0
    return wl


def _as_cube(arr: np.ndarray, path: Path) -> np.ndarray:
    """2-D -> (1, Y, X); 3-D kept; other ndim, or values that are not real numbers -> InputError."""
    if arr.dtype.kind not in "biuf":  # text, complex, dates, structured: np.load reads them, a cube is numbers
        raise InputError(f"{path}: holds {arr.dtype} values; a cube holds real numbers (integers or floats). Save "
                         "the intensities themselves.")
    if arr.ndim == 2:
        return arr[np.newaxis]
    if arr.ndim != 3:
        raise InputError(
            f"{path}: found an array of shape {arr.shape} ({arr.ndim}-D); expected a cube "
            "(C, Y, X) or a 2-D image (Y, X). Save the cube as a 3-D array with bands first."
        )
    return arr


def _wrap(path: Path, exc: Exception) -> InputError:
    return InputError(
        f"{path}: could not read the file ({type(exc).__name__}: {exc}). "
        "The file may be truncated or not in the format its extension says; "
        "re-export it and try again."
    )


# --------------------------------------------------------------------------- dispatch
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
        return _read_cave(path, cave)
    name = path.name.lower()
    if path.suffix.lower() == ".zarr" and path.is_dir():  # a tiled fusion's result, read whole
        lazy = open_cube_lazy(path)
        return CubeFile(np.asarray(lazy.data[:]), lazy.wavelengths, lazy.metadata)
    if path.is_dir():
        raise InputError(
            f"{path}: is a folder without CAVE bands '<scene>_ms_NN.png'; expected a CAVE "
            "folder or a cube file (.tif, .tiff, .hdr, .mat, .npy). Pick a cube file."
        )
    readers = {".tif": _read_tiff, ".tiff": _read_tiff, ".hdr": _read_envi, ".npy": _read_npy}
    if path.suffix.lower() == ".mat":
        cf = _read_mat(path, variable)
    elif path.suffix.lower() in readers:
        cf = readers[path.suffix.lower()](path)
    else:
        raise InputError(
            f"{path}: unsupported file type '{path.suffix}' ({name}); expected .tif, .tiff, "
            ".hdr, .mat, .npy or a CAVE folder. Convert the cube to one of these."
        )
    cf.metadata.setdefault("source", str(path))
    if isinstance(wavelengths, str) and wavelengths == "auto":
        wavelengths = _table_beside(path, cf)
    return apply_cube_options(cf, path, value_scale=value_scale, nodata=nodata, wavelengths=wavelengths,
                              drop_bands=drop_bands)


def apply_cube_options(cf: CubeFile, path: str | os.PathLike, *, value_scale=None, nodata=None, wavelengths=None,
                       drop_bands=None) -> CubeFile:
    """:func:`read_cube`'s options applied to a cube already read (``cf`` is changed and returned;
    its data array is replaced, never written into): the napari dock applies them to a layer.
    ``path`` names the cube in messages (and NEON's documented scale)."""
    path = Path(path)
    table = None
    if wavelengths is not None:
        cf.wavelengths, table = _override_wavelengths(wavelengths, cf.data.shape[0], path, cf.metadata)
        _mark_bad_bands(cf, table)
    if drop_bands is not None:
        _drop_bands(cf, _bands_to_drop(drop_bands, cf, table, path))
    _apply_nodata(cf, cf.metadata.get("nodata") if nodata is None else nodata)
    if isinstance(value_scale, str) and value_scale == "auto":
        value_scale = documented_scale(cf, path)
    if value_scale is not None:
        _apply_scale(cf, value_scale, path)
    return cf


# --------------------------------------------------------------------------- cube options
def _override_wavelengths(wl, n: int, path: Path, meta: dict) -> tuple[np.ndarray, BandTable | None]:
    table = None
    if isinstance(wl, (str, os.PathLike)):
        table = read_band_table(wl)
        arr, source = table.wavelengths_nm, f"band table {Path(wl).name}"
        meta["band_table"] = str(wl)
        if table.units_note:
            meta["band_table_note"] = table.units_note
    else:
        arr, source = np.asarray(wl, dtype=float).ravel(), "the wavelengths given"
    if arr.size != n:
        raise InputError(f"{path}: {source} has {arr.size} wavelengths but the cube has {n} bands "
                         "(its first axis); pass one wavelength per band of the file.")
    return arr, table


def _table_beside(path: Path, cf: CubeFile) -> Path | None:
    """The band table next to a cube file without wavelengths of its own (NEON ships them apart)."""
    if cf.wavelengths is not None or cf.data.shape[0] <= 4 or not path.is_file():
        return None
    return find_band_table(path, cf.data.shape[0])


def _mark_bad_bands(cf: CubeFile, table: BandTable | None) -> None:
    if table is not None and table.bad is not None and table.bad.any():
        cf.metadata["bad_bands"] = [int(i) for i in np.flatnonzero(table.bad)]


# NEON documents its reflectance products (DP1/DP3 ..._reflectance) as int16 = reflectance x 10000
# (the HDF5 'Scale_Factor' attribute, lost when a crop is saved as a GeoTIFF); the name says it.
_NEON_REFLECTANCE = re.compile(r"^NEON_D\d\d_[A-Z]{4}_DP[13]_.*reflectance", re.IGNORECASE)


def documented_scale(cf: CubeFile, path: str | os.PathLike) -> float | None:
    """The factor that turns an integer cube's stored values into physical ones, where the file
    documents one: GDAL's band scale (one for all bands), ENVI's ``reflectance scale factor``, or
    NEON's reflectance product (x 10000). None for float data and undocumented files.
    ``metadata["value_scale_source"]`` says where it came from."""
    if not np.issubdtype(cf.data.dtype, np.integer) or cf.metadata.get("value_scale") is not None:
        return None
    found = [(cf.metadata.get("gdal_scale"), "the file's GDAL band scale")]
    envi = (cf.metadata.get("envi_header") or {}).get("reflectance scale factor")
    found.append((1.0 / float(envi) if _is_number(str(envi)) and float(envi) > 0 else None,
                  "the ENVI header's reflectance scale factor"))
    if _NEON_REFLECTANCE.match(Path(path).name):
        found.append((1e-4, "NEON reflectance product: int16 = reflectance x 10000"))
    for scale, source in found:
        if scale is not None and np.isfinite(scale) and scale != 0:
            cf.metadata["value_scale_source"] = source
            return float(scale)
    return None


def parse_band_numbers(text: str | None, what: str = "--drop-bands"):
    """'auto', or 1-based band numbers and ranges as band tables print them ('193-210,284-315'),
    as 0-based indices; None for an empty text."""
    if text is None or not str(text).strip():
        return None
    if str(text).strip().lower() == "auto":
        return "auto"
    out = []
    for part in str(text).split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise InputError(f"{what} expects 'auto' or band numbers such as 193-210,284-315 "
                             f"(1-based), got {text!r}.") from None
        if first < 1 or last < first:
            raise InputError(f"{what}: {part.strip()!r} is not a range of 1-based band numbers.")
        out.extend(range(first - 1, last))
    return out


def _bands_to_drop(drop, cf: CubeFile, table: BandTable | None, path: Path) -> np.ndarray:
    n = cf.data.shape[0]
    if isinstance(drop, str):
        if drop != "auto":
            raise InputError(f"{path}: drop_bands='{drop}' not understood; pass 'auto' or a list "
                             "of 0-based band indices.")
        return np.flatnonzero(_auto_bad(cf, table, path))
    idx = np.asarray(drop).ravel()
    if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= n):
        raise InputError(f"{path}: drop_bands {idx.tolist()} must be 0-based integer band indices "
                         f"in 0..{n - 1} (the cube has {n} bands). Fix the list.")
    return np.unique(idx.astype(int))


def _auto_bad(cf: CubeFile, table: BandTable | None, path: Path) -> np.ndarray:
    """Bad-band flags (True = bad) from the band table, the bands a reader marked, else the ENVI
    header's bbl."""
    if table is not None and table.bad is not None:
        return table.bad
    marked = cf.metadata.get("bad_bands")
    if marked:
        bad = np.zeros(cf.data.shape[0], bool)
        bad[[i for i in marked if 0 <= int(i) < bad.size]] = True
        return bad
    bbl = (cf.metadata.get("envi_header") or {}).get("bbl")
    if bbl is not None:
        good = np.asarray(bbl, dtype=float).ravel()
        if good.size == cf.data.shape[0]:
            return good == 0
    raise InputError(f"{path}: drop_bands='auto' needs bad-band flags, but there is no band table "
                     "with a noise/bad/bbl column and no ENVI 'bbl' for the "
                     f"{cf.data.shape[0]} bands. Pass wavelengths=<band table> or band indices.")


def _drop_bands(cf: CubeFile, idx: np.ndarray) -> None:
    n = cf.data.shape[0]
    keep = np.setdiff1d(np.arange(n), idx)
    if keep.size == 0:
        raise InputError(f"{cf.metadata.get('source')}: drop_bands would remove all {n} bands; "
                         "keep at least one band.")
    cf.data = np.ascontiguousarray(cf.data[keep])
    cf.wavelengths = None if cf.wavelengths is None else cf.wavelengths[keep]
    cf.metadata["dropped_bands"] = [int(i) for i in idx]
    bad = cf.metadata.pop("bad_bands", None)
    if bad:  # renumbered onto the bands kept
        left = np.flatnonzero(np.isin(keep, bad))
        if left.size:
            cf.metadata["bad_bands"] = [int(i) for i in left]


def _apply_nodata(cf: CubeFile, nodata: float | None) -> None:
    """Set cf.mask (True = valid) and the nodata counts; data values stay as they are."""
    data, is_float = cf.data, cf.data.dtype.kind == "f"
    if nodata is None and not (is_float and np.isnan(data).any()):
        return
    bad = np.zeros(data.shape, dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        bad |= data == nodata
    if is_float:
        bad |= np.isnan(data)
    if nodata is not None:
        cf.metadata["nodata"] = float(nodata)
    cf.mask = ~bad.all(axis=0)
    cf.metadata["nodata_per_band"] = bad.sum(axis=(1, 2)).tolist()
    cf.metadata["nodata_pixels"] = int((~cf.mask).sum())


def _apply_scale(cf: CubeFile, scale: float, path: Path) -> None:
    if not isinstance(scale, (int, float, np.number)) or not np.isfinite(scale) or scale == 0:
        raise InputError(f"{path}: value_scale={scale!r} must be a finite non-zero number "
                         "(e.g. 1e-4 for reflectance x 10000).")
    cf.data = cf.data.astype(np.float32) * np.float32(scale)
    old = cf.metadata.get("value_scale")
    if isinstance(old, list):
        cf.metadata["value_scale"] = [float(v) * float(scale) for v in old]
    else:
        cf.metadata["value_scale"] = float(scale) * (1.0 if old is None else float(old))


# --------------------------------------------------------------------------- TIFF
def _read_tiff(path: Path) -> CubeFile:
    import tifffile

    errors = _LogErrors()
    logger = logging.getLogger("tifffile")
    logger.addHandler(errors)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            arr = series.asarray()
            _check_complete(tif, path)
            info = _tiff_json(tif)
            is_ome = bool(tif.is_ome)
            labels = (tif.imagej_metadata or {}).get("Labels") if tif.is_imagej else None
            ome_wl = _ome_channel_wavelengths(tif.ome_metadata) if is_ome else None
            geo = _tiff_geo(tif.pages[0])
        if errors.messages:
            raise ValueError("; ".join(errors.messages[:3]))
    except Exception as exc:  # noqa: BLE001 - library errors vary
        raise _wrap(path, exc) from exc
    finally:
        logger.removeHandler(errors)
    arr = _tiff_to_cyx(arr, axes, path)
    meta: dict[str, Any] = {"format": "ome-tiff" if is_ome else "tiff", "axes": axes, **geo}
    wl = None
    if info:
        meta["settings"] = info.get("settings")
        meta["wavelength_units"] = info.get("wavelength_units", "nm")
        wl = _wl_array(info.get("wavelengths"), arr.shape[0])
        scale, offset = info.get("value_scale"), info.get("value_offset")
        if scale is not None:  # integers stored by write_tiff(dtype="uint16"): back to the values written
            arr = (arr.astype(np.float64) * float(scale) + float(offset or 0.0)).astype(np.float32)
            meta["value_scale"] = float(scale)
            if offset is not None:
                meta["value_offset"] = float(offset)
    if wl is None:
        wl = ome_wl if ome_wl is not None else _parse_labels(labels)
        wl = _wl_array(wl, arr.shape[0])
    return CubeFile(arr, wl, meta)


def tiff_wavelengths(path: str | os.PathLike) -> tuple[np.ndarray | None, bool]:
    """The wavelengths a TIFF carries (our JSON, OME channels or ImageJ labels), read from its
    tags alone (no pixels), and whether its values are stored scaled (``write_tiff(dtype="uint16")``:
    another reader's raw integers are not the values written)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            n = series.shape[series.axes.find("C")] if "C" in series.axes else series.shape[0]
            info = _tiff_json(tif)
            ome = _ome_channel_wavelengths(tif.ome_metadata) if tif.is_ome else None
            labels = (tif.imagej_metadata or {}).get("Labels") if tif.is_imagej else None
    except Exception:  # noqa: BLE001 - not a TIFF we can read: no wavelengths
        return None, False
    wl = _wl_array((info or {}).get("wavelengths"), n)
    if wl is None:
        wl = _wl_array(ome if ome is not None else _parse_labels(labels), n)
    return wl, (info or {}).get("value_scale") is not None


class _LogErrors(logging.Handler):
    """Collect tifffile's logged errors (it logs, rather than raises, on corrupt files)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _check_complete(tif, path: Path) -> None:
    """Raise if page data, a page's directory or a tag's value lies beyond the end of the file (a
    truncated file: cut in the trailing directories of an ImageJ file, its pixels still read)."""
    size = os.path.getsize(path)
    head = tif.tiff
    for page in tif.pages:
        for off, cnt in zip(page.dataoffsets, page.databytecounts):
            if off + cnt > size:
                raise ValueError(f"image data ends at byte {off + cnt} but the file has {size} bytes")
        tags = getattr(page, "tags", None)
        if tags is None:  # a TiffFrame: its directory was read, its data checked above
            continue
        end = page.offset + head.tagnosize + len(tags) * head.tagsize + head.offsetsize
        end = max([end] + [t.valueoffset + t.valuebytecount for t in tags.values()])
        if end > size:
            raise ValueError(f"a page's directory ends at byte {end} but the file has {size} bytes")


def _tiff_geo(page) -> dict:
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
            return _tiff_geo(tif.pages[0])
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
        geo["geokeys"] = _as_pixel_is_area(crs[0]["geokeys"])
        geo.update({k: crs[0][k] for k in ("geo_double", "geo_ascii") if k in crs[0]})
    return geo


def _as_pixel_is_area(keys) -> list[int]:
    """A GeoKeyDirectory with GTRasterTypeGeoKey (1025) set to PixelIsArea: the tie point written
    is the outer corner of the first pixel (:func:`geo_transform` moved a PixelIsPoint one)."""
    keys = [int(k) for k in keys]
    for i in range(4, min(len(keys), 4 + 4 * keys[3]), 4):
        if keys[i] == 1025 and keys[i + 1] == 0:
            keys[i + 3] = 1
    return keys


def _geo_tags(geo: dict | None) -> list[tuple]:
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


def _tiff_json(tif) -> dict | None:
    """Return the JSON object our writer stored (ImageJ Info or private tag), if any."""
    texts = []
    if tif.is_imagej and tif.imagej_metadata:
        texts.append(tif.imagej_metadata.get("Info"))
    tag = tif.pages[0].tags.get(HSISR_TAG)
    if tag is not None:
        texts.append(tag.value)
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if isinstance(text, str) and text.strip().startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if isinstance(obj, dict) and "wavelengths" in obj:
                return obj
    return None


def _tiff_to_cyx(arr: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Squeeze length-1 axes and put the channel/sample axis first."""
    if arr.ndim == 3 and axes.endswith("S"):
        return np.moveaxis(arr, -1, 0)
    keep = [i for i, (a, n) in enumerate(zip(axes, arr.shape)) if n > 1 or a in "YX"]
    if len(keep) != arr.ndim:
        arr = arr.reshape([arr.shape[i] for i in keep])
        axes = "".join(axes[i] for i in keep)
    if arr.ndim == 3 and axes.endswith("S"):
        return np.moveaxis(arr, -1, 0)
    return _as_cube(arr, path)


def _parse_labels(labels) -> np.ndarray | None:
    if not labels:
        return None
    vals = []
    for lab in labels:
        m = re.search(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", str(lab))
        if m is None:
            return None
        vals.append(float(m.group()))
    return np.asarray(vals)


def _ome_channel_wavelengths(xml: str | None) -> np.ndarray | None:
    """Wavelengths from OME Channel EmissionWavelength, else numbers in Channel Name."""
    if not xml:
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    chans = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Channel"]
    if not chans:
        return None
    em = [c.get("EmissionWavelength") for c in chans]
    if all(e is not None for e in em):
        return np.asarray([float(e) for e in em])
    return _parse_labels([c.get("Name") for c in chans] if all(c.get("Name") for c in chans) else None)


# --------------------------------------------------------------------------- CAVE
def find_cave_bands(path: str | os.PathLike) -> list[tuple[int, Path]] | None:
    """Return [(NN, png_path), ...] sorted by NN if ``path`` is (in) a CAVE folder, else None."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if path.is_file() and not _CAVE_RE.match(path.name):
        return None
    for cand in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())) if folder.is_dir() else ():
        bands = []
        for p in cand.iterdir():
            m = _CAVE_RE.match(p.name)
            if m and p.is_file():
                bands.append((int(m.group("nn")), p))
        if bands:
            return sorted(bands)
    return None


def _read_cave(path: Path, bands: list[tuple[int, Path]]) -> CubeFile:
    import imageio.v3 as iio

    planes, scales = [], set()
    for nn, p in bands:
        try:
            img = np.asarray(iio.imread(p))
        except Exception as exc:  # noqa: BLE001
            raise _wrap(p, exc) from exc
        if img.ndim == 3:
            img = img[..., 0]
        if img.ndim != 2:
            raise InputError(f"{p}: band image has shape {img.shape}; expected (Y, X) or "
                             "(Y, X, 3/4). Replace the band file.")
        scale = 65535.0 if img.dtype.itemsize >= 2 else 255.0
        scales.add(scale)
        planes.append(img.astype(np.float32) / np.float32(scale))
    shapes = {pl.shape for pl in planes}
    if len(shapes) != 1:
        raise InputError(f"{path}: CAVE bands have different shapes {sorted(shapes)}; expected "
                         "one (Y, X) shape for all bands. Check the folder contents.")
    nns = np.asarray([nn for nn, _ in bands], dtype=float)
    meta = {"format": "cave", "source": str(path), "bands": [str(p) for _, p in bands],
            "value_scale": 1.0 / max(scales) if len(scales) == 1 else [1.0 / s for s in sorted(scales)],
            "scaling": ", ".join(f"divided by {s:g}" for s in sorted(scales))}
    return CubeFile(np.stack(planes), 400.0 + 10.0 * (nns - 1), meta)


# --------------------------------------------------------------------------- ENVI / NPY
def _read_envi(path: Path) -> CubeFile:
    from spectral import envi

    try:
        img = envi.open(str(path))
        arr = np.asarray(img.load())
    except Exception as exc:  # noqa: BLE001
        raise _wrap(path, exc) from exc
    arr = _as_cube(np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr, path)
    md = dict(img.metadata)
    wl = _wl_array(md.get("wavelength"), arr.shape[0])
    wl = _to_nm(wl, md.get("wavelength units"))
    meta: dict[str, Any] = {"format": "envi", "envi_header": md}
    try:
        meta["nodata"] = float(md["data ignore value"])
    except (KeyError, TypeError, ValueError):
        pass  # no (or an unreadable) nodata value in the header
    return CubeFile(np.ascontiguousarray(arr), wl, meta)


def _read_npy(path: Path) -> CubeFile:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise _wrap(path, exc) from exc
    return CubeFile(_as_cube(arr, path), None, {"format": "npy"})


# --------------------------------------------------------------------------- MATLAB
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
    except Exception as exc:  # noqa: BLE001
        raise _wrap(path, exc) from exc


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
    except Exception as exc:  # noqa: BLE001
        raise _wrap(path, exc) from exc
    return out


def _read_mat(path: Path, variable: str | None) -> CubeFile:
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
            wl = _to_nm(_wl_array(v, cube.shape[0]))
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


# --------------------------------------------------------------------------- images
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an HR RGB/MSI image (PNG/BMP/TIFF/JPEG) as (Y, X, k) in its native dtype."""
    return read_image_file(path).data


def read_image_file(path: str | os.PathLike) -> ImageFile:
    """Read an HR image as :class:`ImageFile`: data (Y, X, k) native dtype plus metadata
    (``format``, ``source``; TIFF: ``geo`` and ``nodata`` when present, see :func:`geo_transform`)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the HR image file itself (PNG, BMP, TIFF, JPEG or .npy).")
    if not path.is_file():
        raise InputError(f"{path}: file not found. Check the path and try again.")
    meta: dict[str, Any] = {"format": path.suffix.lower().lstrip("."), "source": str(path)}
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            errors = _LogErrors()  # tifffile logs, rather than raises, on a truncated file
            logger = logging.getLogger("tifffile")
            logger.addHandler(errors)
            try:
                with tifffile.TiffFile(path) as tif:
                    img = tif.asarray()
                    _check_complete(tif, path)
                    meta.update(format="tiff", **_tiff_geo(tif.pages[0]))
            finally:
                logger.removeHandler(errors)
            if errors.messages:
                raise ValueError("; ".join(errors.messages[:3]))
        elif path.suffix.lower() == ".npy":  # as open_image_lazy reads it: (Y, X) or (Y, X, k)
            img = np.load(path, allow_pickle=False)
        else:
            import imageio.v3 as iio
            img = np.asarray(iio.imread(path))
    except Exception as exc:  # noqa: BLE001
        raise _wrap(path, exc) from exc
    return ImageFile(_as_yxk(img, path), meta)


def _as_yxk(img: np.ndarray, path: Path) -> np.ndarray:
    img = np.squeeze(img) if img.ndim > 3 else img
    if img.ndim == 2:
        return img[..., np.newaxis]
    if img.ndim != 3:
        raise InputError(f"{path}: image has shape {img.shape}; expected (Y, X) or (Y, X, k). "
                         "Save the image as a single 2-D or multi-channel picture.")
    if img.shape[0] <= 16 and img.shape[0] < min(img.shape[1:]) and img.shape[2] > 16:
        img = np.moveaxis(img, 0, -1)
    if img.shape[2] == 4 and path.suffix.lower() != ".tif" and path.suffix.lower() != ".tiff":
        img = img[..., :3]
    return img


# --------------------------------------------------------------------------- band tables
def find_band_table(path: str | os.PathLike, n_bands: int) -> Path | None:
    """The band table beside a cube file: the one ``.csv``/``.tsv``/``.txt`` file in the same
    folder that reads as a band table with exactly ``n_bands`` rows (None when there is none, or
    several). NEON, for one, ships the cube and its band table side by side."""
    folder = Path(path).parent
    found = []
    for cand in sorted(folder.iterdir()) if folder.is_dir() else ():
        if cand.suffix.lower() not in (".csv", ".tsv", ".txt") or not cand.is_file() or cand.stat().st_size > 2**20:
            continue
        try:
            table = read_band_table(cand)
        except InputError:
            continue
        if table.wavelengths_nm.size == int(n_bands):
            found.append(cand)
    return found[0] if len(found) == 1 else None


def read_band_table(path: str | os.PathLike) -> BandTable:
    """Read band centres (and bad-band flags, names) from a CSV/TSV/whitespace table or a file
    of one number per line.

    The wavelength column is the first header named wavelength(s)/wl/nm/nanometer(s)/lambda/
    center/centre/micrometer/um (case-insensitive; a unit suffix such as ``(nm)`` or ``_nm`` is
    ignored). Values all < 100 are taken as micrometres and converted to nm (``units_note`` says
    so): the values decide, not the header. A noise/bad/bad_band/water/mask column gives
    bad = value != 0; a bbl/good column gives bad = value == 0.
    """
    path = Path(path)
    lines = _table_lines(path)
    rows = _split_table(lines)
    if _is_number(rows[0][1][0]):
        if any(len(r) != 1 for _, r in rows):
            raise InputError(f"{path}: first line '{lines[0][1].strip()}' has no header; expected a "
                             "header line naming the columns (e.g. band,wavelength,bad) or one "
                             "wavelength per line. Add a header.")
        header, body, wl_col = ["wavelength"], rows, 0
    else:
        header = [_header_key(h) for h in rows[0][1]]
        body = rows[1:]
        wl_col = _find_col(header, _TABLE_WL)
        if wl_col is None:
            raise InputError(f"{path}: no wavelength column in the header {rows[0][1]}; expected one "
                             f"named {', '.join(_TABLE_WL[:10])}, ... or one number per line. "
                             "Rename the wavelength column.")
    if not body:
        raise InputError(f"{path}: header {rows[0][1]} but no rows; expected one row per band.")
    wl = _table_column(path, body, wl_col, header[wl_col], float)
    if not np.all(np.isfinite(wl)) or wl.min() <= 0:
        raise InputError(f"{path}: wavelength column '{header[wl_col]}' holds non-positive or "
                         "non-finite values; expected band centres in nm or micrometres.")
    note = None
    if wl.max() < 100:
        note = (f"column '{header[wl_col]}' values {wl.min():g}-{wl.max():g} are all < 100: read as "
                "micrometres and converted to nm")
        wl = wl * 1000.0
    return BandTable(wl, _table_flags(path, body, header), _table_names(path, body, header), note)


def _table_lines(path: Path) -> list[tuple[int, str]]:
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the band table file (.csv, .tsv or .txt) itself.")
    if not path.is_file():
        raise InputError(f"{path}: band table not found. Check the path and try again.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _wrap(path, exc) from exc
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(f"{path}: band table is empty; expected a header and one row per band.")
    return lines


def _split_table(lines: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    """Split on the first line's delimiter: comma, tab or semicolon, else whitespace."""
    import csv

    first = lines[0][1]
    delim = next((d for d in (",", "\t", ";") if d in first), None)
    if delim is None:
        return [(n, ln.split()) for n, ln in lines]
    return [(n, [c.strip() for c in row]) for n, row in
            zip((n for n, _ in lines), csv.reader([ln for _, ln in lines], delimiter=delim))]


def _header_key(h: str) -> str:
    """'Wavelength (nm)' / 'wavelength_nm' -> 'wavelength'; 'Bad Band' -> 'bad_band'."""
    key = re.sub(r"\s*[\(\[].*?[\)\]]\s*$", "", h.strip().strip("'\"")).lower()
    key = re.sub(r"[\s\-]+", "_", key.strip())
    short = re.sub(r"_(nm|um|µm|μm|microns?)$", "", key)
    return short or key


def _find_col(header: list[str], names: tuple[str, ...]) -> int | None:
    return next((i for i, h in enumerate(header) if h in names), None)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _table_column(path: Path, body, col: int, name: str, parse) -> np.ndarray:
    out = []
    for lineno, row in body:
        try:
            out.append(parse(row[col]))
        except (IndexError, ValueError):
            value = row[col] if col < len(row) else "<missing>"
            raise InputError(f"{path}: line {lineno}: column '{name}' value '{value}' is not a "
                             "number; expected one numeric value per row. Fix that row.") from None
    return np.asarray(out, dtype=float)


def _flag(text: str) -> float:
    low = text.strip().lower()
    if low in ("true", "yes"):
        return 1.0
    if low in ("false", "no"):
        return 0.0
    return float(low)


def _table_flags(path: Path, body, header: list[str]) -> np.ndarray | None:
    bad_col, good_col = _find_col(header, _TABLE_BAD), _find_col(header, _TABLE_GOOD)
    if bad_col is None and good_col is None:
        return None
    if good_col is None or (bad_col is not None and bad_col < good_col):
        return _table_column(path, body, bad_col, header[bad_col], _flag) != 0
    return _table_column(path, body, good_col, header[good_col], _flag) == 0


def _table_names(path: Path, body, header: list[str]) -> list[str] | None:
    col = _find_col(header, _TABLE_NAME)
    if col is None:
        return None
    return [row[col] if col < len(row) else "" for _, row in body]


# --------------------------------------------------------------------------- writing
def write_tiff(path: str | os.PathLike, cube: np.ndarray, wavelengths=None,
               settings: dict | None = None, format: str = "imagej",
               dtype: str = "float32", units: str = "nm", inputs=(), geo: dict | None = None) -> Path:
    """Atomically write a (C, Y, X) cube as ImageJ hyperstack, OME-TIFF or GeoTIFF.

    ``format="geotiff"``: one page of C bands (band-interleaved, as GDAL writes a multi-band
    raster) with the GeoTIFF tags of ``geo`` (a ``metadata["geo"]`` dict, e.g. :func:`output_geo`),
    wavelengths and settings in the private tag our readers take them from.

    ``dtype='uint16'`` never clips: the values are mapped linearly onto 0..65535 (cubes within
    0..1 as round(v * 65535), others from min(0, lowest) to max(1, highest)) and the mapping is
    recorded (``value_scale``, ``value_offset``), which :func:`read_cube` undoes. Wavelengths/
    settings round-trip via JSON (see module doc). An existing ``path`` is replaced only when it is
    a result of ours, and never when it is one of ``inputs`` (:func:`.outputs.claim`).
    """
    path = Path(path)
    if format not in ("imagej", "ome", "geotiff"):
        raise InputError(f"{path}: format '{format}' not supported; expected 'imagej', 'ome' or 'geotiff'.")
    if dtype not in ("float32", "uint16"):
        raise InputError(f"{path}: dtype '{dtype}' not supported; expected 'float32' or 'uint16'.")
    arr = _as_cube(np.asarray(cube), path)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: cube of shape {arr.shape} contains NaN or Inf; expected finite "
                         "values. Replace them (e.g. np.nan_to_num) before saving.")
    wl = None if wavelengths is None else np.asarray(wavelengths, dtype=float).ravel()
    if wl is not None and wl.size != arr.shape[0]:
        raise InputError(f"{path}: {wl.size} wavelengths for a cube of shape {arr.shape}; expected "
                         f"{arr.shape[0]} (one per band). Pass matching wavelengths or None.")
    dest = claim(path, inputs, fused=is_fusion_settings(settings))
    scale = offset = None
    if dtype == "uint16":
        out, scale, offset = _to_uint16(arr)
    else:
        out = arr.astype(np.float32)  # always a copy-or-new array; never modifies `cube`
    info, labels = _tiff_info(wl, settings, units, scale, arr.shape[0], offset)
    _atomic_imwrite(dest, out, format, labels, info, geo)
    return path


def _to_uint16(arr: np.ndarray) -> tuple[np.ndarray, float, float | None]:
    """``arr`` mapped linearly onto 0..65535 without clipping: ``value = stored * scale + offset``.
    0..1 keeps its usual 1/65535 step; wider ranges get a coarser step (offset only when negative)."""
    lo, hi = min(0.0, float(arr.min())), max(1.0, float(arr.max()))
    scale = (hi - lo) / 65535.0
    stored = np.rint((arr.astype(np.float64) - lo) / scale)
    return np.clip(stored, 0, 65535).astype(np.uint16), scale, (lo if lo < 0 else None)  # clip: rounding only


def _tiff_info(wl, settings, units: str, scale, C: int, offset=None) -> tuple[str, list[str]]:
    """The JSON our readers take wavelengths and settings from, and channel labels ("550 nm")."""
    record = {"wavelengths": None if wl is None else [float(v) for v in wl],
              "wavelength_units": units, "settings": to_jsonable(settings), "value_scale": scale}
    if offset is not None:
        record["value_offset"] = float(offset)
    info = json.dumps(record)
    labels = [f"{w:g} {units}" for w in wl] if wl is not None else [f"band {i + 1}" for i in range(C)]
    return info, labels


def write_tiff_tiles(path: str | os.PathLike, cube, tile: int, wavelengths=None, settings: dict | None = None,
                     units: str = "nm", geo: dict | None = None) -> Path:
    """Atomically write a (C, Y, X) float32 cube held on disk (zarr, memmap) as a tiled OME BigTIFF,
    reading one ``tile`` x ``tile`` block at a time (TIFF order: band after band), with the
    wavelengths and settings :func:`write_tiff` records. ``cube`` should be chunked by band."""
    import tifffile

    path = Path(path)
    C, Y, X = np.shape(cube)
    wl = None if wavelengths is None else np.asarray(wavelengths, float).ravel()
    info, labels = _tiff_info(wl, settings, units, None, C)
    dest = claim(path, fused=is_fusion_settings(settings))

    def tiles():
        for c in range(C):
            for r in range(0, Y, tile):
                for x in range(0, X, tile):
                    yield np.ascontiguousarray(cube[c, r:r + tile, x:x + tile], dtype=np.float32)

    with atomic_path(dest, suffix=".tmp.tif") as tmp:
        tifffile.imwrite(tmp, tiles(), shape=(C, Y, X), dtype="float32", tile=(tile, tile), bigtiff=True,
                         ome=True, photometric="minisblack", metadata={"axes": "CYX", "Channel": {"Name": labels}},
                         extratags=[(HSISR_TAG, "s", 0, info, True), *_geo_tags(geo)])
    return path


def check_output(path: str | os.PathLike, inputs=(), flag: str = "--out",
                 suffixes: tuple = TIFF_SUFFIXES, fused: bool = False) -> Path:
    """Check, before any computation, that ``path`` can be written and replaces nothing of the user's.

    Refuses: a folder (other than a ``.zarr`` store), a suffix other than ``suffixes``, a missing
    parent folder (it is not created silently), a folder where nothing can be created (read-only,
    /proc), and whatever :func:`.outputs.claim` refuses: one of ``inputs`` (the same file however
    it is spelled), an existing file or store that is not a result of ours (when ``fused``, not a
    fusion result)."""
    path = Path(path)
    if path.is_dir() and path.suffix.lower() != ".zarr":
        raise InputError(f"{flag} {path} is a folder; give a file name such as {path / 'result.tif'}.")
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{flag} {path}: results are written as TIFF; give a name ending in "
                         f"{' or '.join(suffixes)} (.ome.tif for OME-TIFF).")
    dest = claim(path, inputs, fused=fused, flag=flag)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: the folder {parent} does not exist; create it first (mkdir -p {parent}).")
    probe = temp_name(dest, "probe")  # named like a temporary: a killed run's is removed by the next
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot write in {parent} ({exc.strerror}); choose a writable folder.") from None
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a fresh temporary path beside ``path``; when the block succeeds it replaces ``path``,
    when it fails (or is interrupted: SIGINT, and SIGTERM/SIGHUP in the CLI) it is removed, so
    ``path`` is never left half-written. A full disk is one line (:func:`.outputs.storage_errors`).

    The temporary name carries the writer's process id: leftovers of a killed writer (SIGKILL,
    power loss) are removed when the next write to the same path starts. The file is created
    with ``os.open(..., 0o666)``, so it gets the permissions a plain ``open`` would (the umask
    applies), not ``mkstemp``'s 0600. The folder must exist: it is not created silently. This is
    the mechanism only: result files are first checked with :func:`.outputs.claim`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist; create it first.")
    remove_stale(path)
    tmp = None
    try:
        with storage_errors(path):
            while True:
                tmp = temp_name(path, suffix.lstrip("."))
                try:
                    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                    break
                except FileExistsError:
                    continue
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def write_image(path: str | os.PathLike, image: np.ndarray, settings: dict | None = None) -> Path:
    """Atomically write an HR image ``(Y, X, k)`` (or ``(Y, X)``) as a TIFF that image viewers and
    :func:`read_image` see as one multi-channel picture (RGB when k is 3), float32 or the input's
    integer type; ``settings`` go into the description as JSON."""
    import tifffile

    path = Path(path)
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise InputError(f"{path}: an image is (Y, X) or (Y, X, k), got shape {img.shape}.")
    if np.issubdtype(img.dtype, np.floating):
        img = img.astype(np.float32)
        if not np.all(np.isfinite(img)):
            raise InputError(f"{path}: the image contains NaN or Inf; replace them before saving.")
    photometric = "rgb" if img.ndim == 3 and img.shape[-1] == 3 else "minisblack"
    extra = {"planarconfig": "contig"} if img.ndim == 3 else {}
    description = json.dumps({"settings": to_jsonable(settings)}) if settings else None
    dest = claim(path)
    with atomic_path(dest, suffix=".tmp.tif") as tmp:
        tifffile.imwrite(tmp, img, photometric=photometric, description=description, metadata=None, **extra)
    return path


def _atomic_imwrite(path: Path, data: np.ndarray, format: str, labels: list[str], info: str, geo=None):
    import tifffile

    with atomic_path(path, suffix=".tmp.tif") as tmp:
        if format == "geotiff":
            tifffile.imwrite(tmp, data, photometric="minisblack", planarconfig="separate", metadata=None,
                             bigtiff=data.nbytes > 2**32 - 2**25, extratags=[(HSISR_TAG, "s", 0, info, True),
                                                                             *_geo_tags(geo)])
        elif format == "imagej":
            tifffile.imwrite(tmp, data, imagej=True, metadata={"axes": "CYX", "Labels": labels, "Info": info})
        else:
            tifffile.imwrite(tmp, data, ome=True, metadata={"axes": "CYX", "Channel": {"Name": labels}},
                             extratags=[(HSISR_TAG, "s", 0, info, True)])


# --------------------------------------------------------------------------- lazy (out-of-core)
def _zarr_from_tiff(path: Path, series: int = 0):
    """A TIFF's pixels as a zarr array that reads tiles/strips on demand (compressed or not)."""
    import tifffile
    import zarr

    store = tifffile.imread(str(path), aszarr=True, series=series)
    z = zarr.open(store, mode="r")
    return z if hasattr(z, "shape") else z[0]  # a pyramid: its full-resolution level


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
            import zarr

            levels, attrs = open_zarr_levels(path)
            wl = attrs.get("wavelengths")
            meta = {"format": "ome-zarr" if len(levels) > 1 or "ome" in attrs else "zarr", "source": str(path),
                    "settings": attrs.get("settings"), "levels": [list(z.shape) for z in levels]}
            return CubeFile(levels[0], None if wl is None else np.asarray(wl, float), meta)
        if suffix == ".npy":
            return CubeFile(_as_cube(np.load(path, mmap_mode="r", allow_pickle=False), path), None,
                            {"format": "npy", "source": str(path)})
        if suffix == ".hdr":
            from spectral import envi

            img = envi.open(str(path))
            data = np.moveaxis(img.open_memmap(writable=False), -1, 0)  # (Y, X, C) map -> (C, Y, X) view
            wl = _to_nm(_wl_array(img.metadata.get("wavelength"), data.shape[0]),
                        img.metadata.get("wavelength units"))
            return CubeFile(data, wl, {"format": "envi", "source": str(path)})
        if suffix in (".tif", ".tiff"):
            head = read_cube_metadata(path)
            z = _zarr_from_tiff(path)
            if z.ndim != 3:
                raise InputError(f"{path}: holds a {z.ndim}-D image; a cube is (C, Y, X).")
            return CubeFile(z, head.wavelengths, {**head.metadata, "source": str(path), "lazy": True})
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one line
        raise _wrap(path, exc) from exc
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
            return _as_yxk(np.load(path, mmap_mode="r", allow_pickle=False), path)
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(str(path)) as tf:
                axes = tf.series[0].axes
            z = _zarr_from_tiff(path)
            if z.ndim not in (2, 3):
                raise InputError(f"{path}: image has shape {z.shape}; expected (Y, X) or (Y, X, k). Save the image "
                                 "as a single 2-D or multi-channel picture.")
            if z.ndim == 3 and axes.startswith(("S", "C", "I")) and z.shape[0] <= 16 < z.shape[-1]:
                import dask.array as da

                return da.moveaxis(da.from_zarr(z), 0, -1)  # (k, Y, X) pages -> (Y, X, k), still lazy
            return z
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _wrap(path, exc) from exc
    return read_image(path)


def read_cube_metadata(path: Path) -> CubeFile:
    """Wavelengths and metadata of a (C, Y, X) TIFF cube without reading its pixels (the data are
    a 1x1 placeholder). A cube stored with a value scale is refused: read it with read_cube."""
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        C = series.shape[0] if len(series.shape) == 3 else 1
        info = _tiff_json(tif)
        labels = (tif.imagej_metadata or {}).get("Labels") if tif.is_imagej else None
        ome_wl = _ome_channel_wavelengths(tif.ome_metadata) if tif.is_ome else None
        axes = series.axes
    if len(axes) == 3 and axes[0] not in "CSIQZ":
        raise InputError(f"{path}: axes {axes!r} are not bands first; lazy reading needs a (C, Y, X) cube "
                         "(read it whole with read_cube, or re-save it bands first).")
    meta: dict[str, Any] = {"format": "tiff"}
    wl = None
    if info:
        if info.get("value_scale") is not None:
            raise InputError(f"{path}: stores scaled integers; lazy reading keeps raw values: use read_cube.")
        meta["settings"] = info.get("settings")
        wl = _wl_array(info.get("wavelengths"), C)
    if wl is None:
        wl = _wl_array(ome_wl if ome_wl is not None else _parse_labels(labels), C)
    return CubeFile(np.zeros((C, 1, 1), np.float32), wl, meta)


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


# --------------------------------------------------------------------------- OME-Zarr (NGFF 0.5)
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
