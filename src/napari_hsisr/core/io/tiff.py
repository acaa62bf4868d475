"""TIFF cubes: ImageJ hyperstacks, OME-TIFF, GeoTIFF and tiled OME BigTIFF, read and written.

Our writer stores a JSON record ``{"wavelengths", "wavelength_units", "settings", "value_scale"}``:
in ImageJ files in the ImageJ metadata ``Info`` field, in OME-TIFF and GeoTIFF files in the private
ASCII tag 65000 (``HSISR_TAG``) of the first page. Channel labels ("550 nm") are written too so other
software shows the wavelengths. LZW/deflate/JPEG-compressed TIFFs need ``imagecodecs`` (a dependency)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..outputs import HSISR_TAG, claim, is_fusion_settings, tiff_record
from .atomic import atomic_path
from .base import CubeFile, as_cube, read_error, to_jsonable, wl_array
from .geotiff import geo_tags, tiff_geo


def read_tiff(path: Path) -> CubeFile:
    import tifffile

    errors = LogErrors()
    logger = logging.getLogger("tifffile")
    logger.addHandler(errors)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            arr = series.asarray()
            check_complete(tif, path)
            info = tiff_record(tif)
            is_ome = bool(tif.is_ome)
            labels = (tif.imagej_metadata or {}).get("Labels") if tif.is_imagej else None
            ome_wl = ome_channel_wavelengths(tif.ome_metadata) if is_ome else None
            geo = tiff_geo(tif.pages[0])
        if errors.messages:
            raise ValueError("; ".join(errors.messages[:3]))
    except Exception as exc:  # library errors vary: each becomes one line
        raise read_error(path, exc) from exc
    finally:
        logger.removeHandler(errors)
    arr = _tiff_to_cyx(arr, axes, path)
    meta: dict[str, Any] = {"format": "ome-tiff" if is_ome else "tiff", "axes": axes, **geo}
    wl = None
    if info:
        meta["settings"] = info.get("settings")
        meta["wavelength_units"] = info.get("wavelength_units", "nm")
        wl = wl_array(info.get("wavelengths"), arr.shape[0])
        scale, offset = info.get("value_scale"), info.get("value_offset")
        if scale is not None:  # integers stored by write_tiff(dtype="uint16"): back to the values written
            arr = (arr.astype(np.float64) * float(scale) + float(offset or 0.0)).astype(np.float32)
            meta["value_scale"] = float(scale)
            if offset is not None:
                meta["value_offset"] = float(offset)
    if wl is None:
        wl = ome_wl if ome_wl is not None else parse_labels(labels)
        wl = wl_array(wl, arr.shape[0])
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
            info = tiff_record(tif)
            ome = ome_channel_wavelengths(tif.ome_metadata) if tif.is_ome else None
            labels = (tif.imagej_metadata or {}).get("Labels") if tif.is_imagej else None
    except Exception:  # noqa: BLE001 - not a TIFF we can read: no wavelengths
        return None, False
    wl = wl_array((info or {}).get("wavelengths"), n)
    if wl is None:
        wl = wl_array(ome if ome is not None else parse_labels(labels), n)
    return wl, (info or {}).get("value_scale") is not None


def read_cube_metadata(path: Path) -> CubeFile:
    """Wavelengths and metadata of a (C, Y, X) TIFF cube without reading its pixels (the data are
    a 1x1 placeholder). A cube stored with a value scale is refused: read it with read_cube."""
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        series = tif.series[0]
        C = series.shape[0] if len(series.shape) == 3 else 1
        info = tiff_record(tif)
        labels = (tif.imagej_metadata or {}).get("Labels") if tif.is_imagej else None
        ome_wl = ome_channel_wavelengths(tif.ome_metadata) if tif.is_ome else None
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
        wl = wl_array(info.get("wavelengths"), C)
    if wl is None:
        wl = wl_array(ome_wl if ome_wl is not None else parse_labels(labels), C)
    return CubeFile(np.zeros((C, 1, 1), np.float32), wl, meta)


class LogErrors(logging.Handler):
    """Collect tifffile's logged errors (it logs, rather than raises, on corrupt files)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def check_complete(tif, path: Path) -> None:
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
    return as_cube(arr, path)


def parse_labels(labels) -> np.ndarray | None:
    if not labels:
        return None
    vals = []
    for lab in labels:
        m = re.search(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", str(lab))
        if m is None:
            return None
        vals.append(float(m.group()))
    return np.asarray(vals)


def ome_channel_wavelengths(xml: str | None) -> np.ndarray | None:
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
    return parse_labels([c.get("Name") for c in chans] if all(c.get("Name") for c in chans) else None)


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
    arr = as_cube(np.asarray(cube), path)
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
                         extratags=[(HSISR_TAG, "s", 0, info, True), *geo_tags(geo)])
    return path


def _atomic_imwrite(path: Path, data: np.ndarray, format: str, labels: list[str], info: str, geo=None):
    import tifffile

    with atomic_path(path, suffix=".tmp.tif") as tmp:
        if format == "geotiff":
            tifffile.imwrite(tmp, data, photometric="minisblack", planarconfig="separate", metadata=None,
                             bigtiff=data.nbytes > 2**32 - 2**25, extratags=[(HSISR_TAG, "s", 0, info, True),
                                                                             *geo_tags(geo)])
        elif format == "imagej":
            tifffile.imwrite(tmp, data, imagej=True, metadata={"axes": "CYX", "Labels": labels, "Info": info})
        else:
            tifffile.imwrite(tmp, data, ome=True, metadata={"axes": "CYX", "Channel": {"Name": labels}},
                             extratags=[(HSISR_TAG, "s", 0, info, True)])


def tiff_array_lazy(path: Path, series: int = 0):
    """A TIFF's pixels read on demand: memory-mapped (read-only) when they are stored uncompressed
    and contiguous, else a zarr array that decodes the tiles/strips a slice touches. The map matters
    for tiles: a float image written as one strip is decoded whole by every zarr slice (a 2048^2 RGB:
    64 ms a window, 3 s over a tiled fusion's 49 windows; mapped: 0.1 ms)."""
    import tifffile
    import zarr

    try:
        return tifffile.memmap(str(path), series=series, level=0, mode="r")
    except ValueError:  # compressed, or not contiguous in the file
        pass

    store = tifffile.imread(str(path), aszarr=True, series=series)
    z = zarr.open(store, mode="r")
    return z if hasattr(z, "shape") else z[0]  # a pyramid: its full-resolution level
