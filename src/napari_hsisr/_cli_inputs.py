"""How ``hsisr fuse`` reads its pair: the LR cube with the real-file options (value scale, band
table, dropped bands, nodata), the HR image made an exact multiple of it or, for two georeferenced
files, put on the cube's grid by map coordinates; lazily for tiled runs; and the provenance a
result records."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .core.errors import InputError
from .core.validation import check_layout


def lazy_pair(args):
    """For a tiled run on plain files: the cube and image opened lazily (only tiles are read), or
    None when an option needs the whole data (value scale, band table, dropped bands, nodata)."""
    from .core.grids import match_ratio
    from .core.io import ImageFile, image_geo, open_cube_lazy, open_image_lazy

    if any(v is not None for v in (args.band_table, args.drop_bands, args.lr_nodata, args.variable)) \
            or args.value_scale != "auto":
        return None
    if georeferenced_pair(args):  # paired by map coordinates on the whole read
        return None
    try:
        lr = open_cube_lazy(args.lr)
        hr = open_image_lazy(args.hr)
    except InputError:
        return None
    if _needs_whole_read(args.lr, lr):
        return None
    check_layout(np.shape(hr), np.shape(lr.data), "--hr", "--lr")  # swapped? bands-last?
    match = match_ratio(tuple(np.shape(hr))[:2], tuple(np.shape(lr.data))[-2:])
    if match.action != "exact" or (args.scale is not None and args.scale != match.scale):
        return None
    args.scale = match.scale
    return lr, hr, ImageFile(hr, {"format": "lazy", "source": str(args.hr), **image_geo(args.hr)}), match


def georeferenced_pair(args) -> bool:
    from .core.georef import read_georef

    return read_georef(args.hr) is not None and read_georef(args.lr) is not None


def _needs_whole_read(path, lazy) -> bool:
    """Whether the LR file has what only a whole read applies: a documented value scale, a band
    table beside it."""
    from .core.io import CubeFile, documented_scale, find_band_table

    probe = CubeFile(np.empty((0,), lazy.data.dtype), lazy.wavelengths, dict(lazy.metadata))
    if documented_scale(probe, path) is not None:
        return True
    return (lazy.wavelengths is None and Path(path).is_file()
            and find_band_table(path, np.shape(lazy.data)[0]) is not None)


def value_scale(text):
    """``--value-scale``: a number, or 'auto' (the file's documented scale, e.g. NEON's x 10000)."""
    if text is None or str(text).strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--value-scale expects a number (e.g. 1e-4) or 'auto', got {text!r}.") from None


def read_pair(args):
    """The LR cube (with the real-file options) and the HR image, made an exact multiple."""
    from .core.grids import apply_match, match_ratio
    from .core.io import parse_band_numbers, read_cube, read_image_file

    if getattr(args, "tile", None) is not None or str(args.out).lower().endswith(".zarr"):
        lazy = lazy_pair(args)
        if lazy is not None:
            return lazy

    lr = read_cube(args.lr, variable=args.variable, value_scale=value_scale(args.value_scale), nodata=args.lr_nodata,
                   wavelengths=args.band_table or "auto", drop_bands=parse_band_numbers(args.drop_bands))
    for key, what in (("value_scale_source", "values x {value_scale:g} ({value_scale_source})"),
                      ("band_table", "wavelengths from {band_table}")):
        if key in lr.metadata and not (key == "band_table" and args.band_table):
            print("note: --lr: " + what.format(**lr.metadata), file=sys.stderr)
    paired = _pair_by_coordinates(args, lr)  # two georeferenced files: the HR image put on the cube's grid
    if paired is not None:
        return paired
    hr_file = read_image_file(args.hr)
    hr = hr_file.data
    check_layout(hr.shape, lr.data.shape, "--hr", "--lr")  # swapped? bands-last?
    match = match_ratio(hr.shape[:2], lr.data.shape[-2:])
    if args.scale is not None and args.scale != match.scale:
        raise InputError(f"--scale {args.scale} but the HR image ({hr.shape[0]}x{hr.shape[1]}) is "
                         f"{hr.shape[0] / lr.data.shape[1]:.2f} times the LR cube ({lr.data.shape[1]}x"
                         f"{lr.data.shape[2]}); omit --scale or crop the images.")
    if match.action != "exact":
        print(f"note: {match.message}", file=sys.stderr)
        dtype = hr.dtype
        hr = apply_match(hr, match)
        if np.issubdtype(dtype, np.integer):  # keep the integer type: it says how the image is encoded
            hr = np.clip(np.rint(hr), 0, np.iinfo(dtype).max).astype(dtype)
    args.scale = match.scale
    return lr, hr, hr_file, match


def _pair_by_coordinates(args, lr):
    """``read_pair``'s answer for a georeferenced pair (:func:`.core.georef.pair_by_coordinates`), else None."""
    from .core.georef import as_image_file, pair_by_coordinates
    from .core.grids import GridMatch
    from .core.io import parse_band_numbers

    pair = pair_by_coordinates(args.hr, lr, args.lr, scale=args.scale, lr_crs=getattr(args, "lr_crs", None),
                               hr_bands=parse_band_numbers(getattr(args, "hr_bands", None), "--hr-bands"),
                               hr_nodata=getattr(args, "hr_nodata", None))
    if pair is None:
        return None
    for note in pair.notes:
        print(f"note: {note}", file=sys.stderr)
    shape = pair.hr.shape[:2]
    args.scale = pair.scale
    message = "paired by map coordinates" + "".join(f"; {n}" for n in pair.notes)
    match = GridMatch(shape, tuple(np.shape(pair.lr.data)[-2:]), pair.scale, "georef", shape, None, None, message)
    return pair.lr, pair.hr, as_image_file(pair, args.hr), match


def integrate_over_bands(args, lr) -> None:
    """``--srf`` (a response table) made a matrix on the cube's bands by integrating it over each
    band's Gaussian when the band table gives FWHMs (EnMAP/PRISMA style; :mod:`.core.band_responses`)."""
    from .core.band_responses import cube_band_srf, read_band_fwhm

    table = args.band_table or lr.metadata.get("band_table")
    if not table or getattr(args, "srf", None) is None or lr.wavelengths is None:
        return
    fwhm = read_band_fwhm(table)
    if fwhm is None:
        return
    fwhm = np.delete(fwhm, lr.metadata.get("dropped_bands") or [])
    if fwhm.size != np.size(lr.wavelengths):
        raise InputError(f"{table}: {fwhm.size} FWHM values for a cube of {np.size(lr.wavelengths)} bands; "
                         "give one per band.")
    made = cube_band_srf(args.srf, lr.wavelengths, fwhm)
    if made is not None:
        args.srf = made[0]
        print(f"note: --srf {made[1]} integrated over each band's Gaussian (FWHM {fwhm.min():g}-{fwhm.max():g} nm "
              f"from {Path(table).name})", file=sys.stderr)


def input_provenance(args, lr, hr_file, match) -> dict:
    """The input files and what their readers found, for the result's settings; ``output_geo``:
    the result grid's georeferencing (:func:`.core.io.output_geo`)."""
    from .core.io import output_geo

    out: dict = {"hr_file": str(args.hr), "lr_file": str(args.lr)}
    if match.action != "exact":
        out["grid_match"] = match.message
    for key in ("geo", "dropped_bands", "value_scale", "value_scale_source", "band_table", "bad_bands"):
        if key in lr.metadata:
            out.setdefault("lr_file_metadata", {})[key] = lr.metadata[key]
    if "geo" in hr_file.metadata:
        out["hr_geo"] = hr_file.metadata["geo"]
    geo = output_geo(hr_file.metadata, lr.metadata, args.scale, args.grid, match.zoom)
    if geo:  # the result's own grid, which a streamed GeoTIFF result is written with too
        out["output_geo"] = geo
    return out
