"""Band tables (CSV/TSV/whitespace: wavelengths, bad-band flags, names) and :func:`read_cube`'s
options applied to a cube read: wavelengths, bands to drop, nodata, value scale."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import BandTable, CubeFile, read_error

# band tables: header names (lower case, units stripped) of the wavelength/flag/name columns
_TABLE_WL = ("wavelength", "wavelengths", "wl", "nm", "nanometer", "nanometers", "lambda", "center",
             "centre", "micrometer", "micrometers", "um", "center_wavelength", "centre_wavelength")


_TABLE_BAD = ("noise", "bad", "bad_band", "bad_bands", "water", "mask")  # 1 = bad


_TABLE_GOOD = ("bbl", "good", "good_band", "good_bands")  # 1 = good


_TABLE_NAME = ("bandname", "band_name", "name", "names", "label")


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


def table_beside(path: Path, cf: CubeFile) -> Path | None:
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
        raise read_error(path, exc) from exc
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
