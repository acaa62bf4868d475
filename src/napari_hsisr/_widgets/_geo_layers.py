"""Georeferenced layers (issue 25): files placed on the map, the Fusion dock pairing them by coordinates.

A georeferenced file's layer is placed in map units: world (row, column) of a pixel's centre is
(N0 - northing, easting - E0) in the file's CRS (the row axis points south, so north is up),
``scale`` its pixel size. (N0, E0), ``metadata["georef"]["world_origin"]``, is a round corner the
first file in that CRS sets for the session, shared by every later layer in it: napari draws in
float32, which at a UTM northing (millions of metres) rounds positions to 0.5 m, enough to
misplace 0.1 m pixels by several and to flatten a thin outline; world coordinates near the origin
keep centimetres. ``layer.world_to_data`` of :func:`map_to_world` of a map point then gives the
pixel it falls in, for every layer in that CRS: the Spectrum probe and the Quality maps, which work
in world coordinates, follow. ``metadata["georef"]`` keeps ``crs``, ``transform`` (origin_y,
origin_x, pixel_y, pixel_x), ``world_origin`` and the file's ``path``.

The dock fuses a plain pair by aligning the LR layer on the HR layer's pixels. When both chosen
layers are georeferenced it pairs their files by coordinates (:func:`..core.georef.pair_by_coordinates`:
the HR image put on the cube's grid refined by an integer ratio, the cube cropped to the common
footprint) and runs on stand-in layers that hold the paired arrays, placed on the output grid: the
result, placed by its HR layer as always, lands on the cube's footprint in map units, and its
metadata carries the output grid (``geo``, ``settings["output_geo"]``) so that Save and the
plugin's writer give a GeoTIFF. The common footprint is drawn as a rectangle in one Shapes layer,
:data:`FOOTPRINT`: the two extents' overlap when the pair is chosen, the cube pixels the run kept
after it; it is removed when the chosen pair is no longer a georeferenced one or does not overlap.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core.errors import InputError
from . import _layers

FOOTPRINT = "common footprint"
FOOTPRINT_COLOUR = "#ffd400"
_ORIGINS: list[tuple[str | None, tuple[float, float]]] = []  # (CRS, (N0, E0)) of this session, first come


# --------------------------------------------------------------------------- reading
def file_georef(path, metadata: dict) -> dict | None:
    """``metadata["georef"]`` for a file (its CRS, transform and path), None when it has no north-up
    map transform."""
    from ..core.georef import read_georef

    try:
        ref = read_georef(path, metadata)
    except (InputError, OSError, ValueError):
        return None
    if ref is None or ref.transform[2] >= 0 or ref.transform[3] <= 0:
        return None  # none, or not north-up (a south-up grid would need a negative napari scale)
    transform = [float(v) for v in ref.transform]
    return {"crs": ref.crs, "transform": transform, "world_origin": world_origin(ref.crs, transform),
            "path": str(path)}


def world_origin(crs: str | None, transform) -> list[float]:
    """(N0, E0) of a CRS for this session: the one already set for it (a file naming no CRS takes the
    first one's, as the pairing takes the other file's CRS), else this grid's corner rounded out to
    a round number of about a thousand pixels."""
    from ..core.georef import same_crs

    for known, origin in _ORIGINS:
        # a file naming no CRS takes the first origin; a named CRS only its own (not a no-CRS file's,
        # which would put degrees at a UTM origin)
        if crs is None or (known is not None and same_crs(known, crs)):
            return list(origin)
    oy, ox, _, px = transform
    step = 10.0 ** np.ceil(np.log10(abs(px) * 1000))
    origin = (float(np.ceil(oy / step) * step), float(np.floor(ox / step) * step))
    _ORIGINS.append((crs, origin))
    return list(origin)


def map_to_world(georef: dict, easting: float, northing: float) -> tuple[float, float]:
    """World (row, column) of a map point in a layer's CRS."""
    n0, e0 = georef["world_origin"]
    return n0 - northing, easting - e0


def placement(georef: dict) -> tuple[tuple[float, float], tuple[float, float]]:
    """(scale, translate) of the (Y, X) axes: pixel size, and the world position of pixel 0's centre."""
    oy, ox, py, px = georef["transform"]
    return (-py, px), map_to_world(georef, ox + px / 2, oy + py / 2)


def crs_label(crs: str | None) -> str:
    from ..core.georef import crs_name

    return "no CRS named" if crs is None else crs_name(crs)


def placed_note(georef: dict) -> str:
    """What the reader says about a layer it placed on the map."""
    _, _, py, px = georef["transform"]
    n0, e0 = georef["world_origin"]
    return (f"placed on the map ({crs_label(georef['crs'])}, pixel {px:g} x {-py:g} map units; world y, x = "
            f"{n0:.10g} - northing, easting - {e0:.10g})")


# --------------------------------------------------------------------------- layers
def layer_georef(layer) -> dict | None:
    """A layer's ``metadata["georef"]`` when it came from a georeferenced file that is still there."""
    geo = (getattr(layer, "metadata", None) or {}).get("georef")
    if not isinstance(geo, dict) or not geo.get("path") or not geo.get("transform"):
        return None
    from pathlib import Path

    return geo if Path(geo["path"]).exists() else None


def georeferenced_pair(hr, lr) -> tuple[dict, dict] | None:
    if hr is None or lr is None or hr.name == lr.name or not _layers.is_cube(lr):
        return None
    hg, lg = layer_georef(hr), layer_georef(lr)
    return (hg, lg) if hg is not None and lg is not None else None


def _plan(hr, lr):
    from ..core.georef import plan_pair

    hg, lg = georeferenced_pair(hr, lr)
    return plan_pair(hg["path"], lg["path"], lr.data.shape[-2:], _cube_metadata(lr))


def _cube_metadata(lr) -> dict:
    return {k: v for k, v in dict(lr.metadata or {}).items() if k in ("geo", "envi_header", "settings", "source")}


def pair_note(widget, hr, lr) -> str:
    """Before a run, for a georeferenced pair: the ratio set in the dock (from the pixel sizes; the
    scale box is locked to it), the extents' overlap drawn, and what the run will do; "" otherwise
    (the footprint removed, the scale box free again)."""
    spin = widget.scale_spin
    if georeferenced_pair(hr, lr) is None:
        spin.setEnabled(True)
        _drop_footprint(widget)
        return ""
    try:
        plan = _plan(hr, lr)
    except InputError as exc:
        _drop_footprint(widget)
        return f"Georeferenced pair, not pairable: {exc}"
    spin.blockSignals(True)
    spin.setValue(min(max(plan.ratio, 1), spin.maximum()))
    spin.blockSignals(False)
    spin.setEnabled(False)
    widget._sigma_follows_scale()
    lr_crs, hr_crs = plan.crs_names
    if plan.overlap is None:
        _drop_footprint(widget)
        return f"Georeferenced pair: the HR image and the cube do not overlap on the map ({lr_crs})."
    drawn_for = (hr.name, lr.name, plan.overlap)
    if getattr(widget, "_footprint_drawn_for", None) != drawn_for:  # drawn once per pair: a footprint the
        show_footprint(widget.viewer, plan.overlap, layer_georef(lr))  # user (or viewer.close) removes stays
        widget._footprint_drawn_for = drawn_for  # removed, and a run's exact one is not reset by a layer change
    note = f"Georeferenced pair: paired by map coordinates at Run, on the cube's grid in {lr_crs} at 1/{plan.ratio}."
    if not plan.same_crs:
        note += (f" {hr.name!r} is in {hr_crs}: shown in its own CRS, not overlaid; the fusion reprojects it onto "
                 "the cube's grid.")
    return note + "".join(f" Note: {n}." for n in plan.notes)


# --------------------------------------------------------------------------- run
def pair_for_run(widget, req):
    """The request to run: for a georeferenced pair, on stand-in layers holding the paired arrays
    (the HR image on the cube's refined grid, the cube cropped, its pixels without HR data NaN, which
    the fusion masks) placed on the output grid, ``scale`` the ratio; the footprint redrawn and the
    pairing said in the dock. A plain pair's request is returned as it is. No overlap is an
    InputError (the footprint removed)."""
    if georeferenced_pair(req.hr_layer, req.lr_layer) is None:
        return req
    from ..core.georef import pair_by_coordinates
    from ..core.io import CubeFile

    hr, lr = req.hr_layer, req.lr_layer
    cube = CubeFile(np.asarray(lr.data, np.float32), _layers.layer_wavelengths(lr), _cube_metadata(lr))
    try:
        pair = pair_by_coordinates(layer_georef(hr)["path"], cube, layer_georef(lr)["path"], scale=req.scale)
    except InputError:
        remove_footprint(widget.viewer)
        raise
    lr_ref = layer_georef(lr)
    out_ref = {"crs": pair.lr.metadata["geo"].get("crs") or lr_ref["crs"], "transform": _transform(pair.output_geo),
               "world_origin": lr_ref["world_origin"]}
    cube_ref = {**out_ref, "transform": _transform(pair.lr.metadata["geo"])}
    message = f"paired by map coordinates (ratio {pair.scale}, {crs_label(out_ref['crs'])})" \
        + "".join(f"; {n}" for n in pair.notes)
    show_footprint(widget.viewer, _bounds(cube_ref["transform"], np.shape(pair.lr.data)[-2:]), cube_ref)
    widget.data_view.set_note(message[0].upper() + message[1:] + ".")
    record = {"output_geo": pair.output_geo, "georef": out_ref, "message": message}
    return replace(req, hr_layer=_hr_stand_in(hr, pair.hr, out_ref, record),
                   lr_layer=_lr_stand_in(lr, pair, cube_ref), scale=pair.scale)


def _transform(geo: dict) -> list[float]:
    from ..core.io import geo_transform

    return [float(v) for v in geo_transform({"geo": geo})]


def _bounds(transform, shape) -> tuple[float, float, float, float]:
    oy, ox, py, px = transform
    return oy, ox, oy + py * shape[0], ox + px * shape[1]


def _hr_stand_in(hr, data: np.ndarray, georef: dict, record: dict):
    """An Image layer (not in the viewer) holding the paired HR image as the dock reads ``hr``."""
    from napari.layers import Image

    rgb = data.shape[2] in (3, 4) and hr.rgb
    arr = data if rgb else (data[..., 0] if data.shape[2] == 1 else np.moveaxis(data, -1, 0))
    scale, translate = placement(georef)
    lead = arr.ndim - (3 if rgb else 2)
    meta = {**dict(hr.metadata or {}), "georef": {**georef, "path": None}, "georef_pair": record}
    return Image(arr, rgb=rgb, name=hr.name, scale=(1.0,) * lead + scale, translate=(0.0,) * lead + translate,
                 metadata=meta, contrast_limits=(0, 1))


def _lr_stand_in(lr, pair, georef: dict):
    from napari.layers import Image

    data = np.asarray(pair.lr.data, np.float32)
    if pair.lr.mask is not None:  # cube pixels without HR data: NaN, which the fusion leaves out of the fit
        data = np.where(pair.lr.mask[None], data, np.float32(np.nan))
    scale, translate = placement(georef)
    meta = {**dict(lr.metadata or {}), "georef": {**georef, "path": None}}
    return Image(data, name=lr.name, scale=(1.0, *scale), translate=(0.0, *translate), metadata=meta,
                 contrast_limits=(0, 1))


def result_metadata(req, meta: dict) -> dict:
    """What a result's metadata gains from a georeferenced run: the output grid (``geo``, the
    GeoTIFF tags the writers use; ``georef``; ``settings["output_geo"]``, as ``hsisr fuse`` records
    it) and how the pair was made; {} for a plain run."""
    record = (req.hr_layer.metadata or {}).get("georef_pair")
    if not record:
        return {}
    settings = {**(meta.get("settings") or {}), "output_geo": record["output_geo"], "grid_match": record["message"]}
    return {"geo": record["output_geo"], "georef": dict(record["georef"]), "settings": settings}


def finished_note(viewer, layer) -> str:
    """For a georeferenced result: its pairing, said after the run ("" otherwise). The stand-in LR
    layer a blind run 'moved' is not in the viewer (the real one stays on the map): that record is
    dropped, and the footprint is brought above the result."""
    settings = (layer.metadata or {}).get("settings") or {}
    if not settings.get("output_geo"):
        return ""
    layer.metadata.pop("lr_layer_moved", None)
    if FOOTPRINT in viewer.layers:
        viewer.layers.move(viewer.layers.index(FOOTPRINT), len(viewer.layers))
    return f"; {settings.get('grid_match', 'paired by map coordinates')}"


# --------------------------------------------------------------------------- footprint
def show_footprint(viewer, bounds, georef: dict) -> None:
    """Draw (or move) the one :data:`FOOTPRINT` rectangle: ``bounds`` (north, west, south, east) in
    map units of the cube's CRS (``georef``, the cube layer's)."""
    north, west, south, east = bounds
    corner = np.array(map_to_world(georef, west, north))
    rect = np.array([[0, 0], [0, east - west], [north - south, east - west], [north - south, 0]], float)
    width = max(abs(east - west), abs(north - south)) / 150  # a thin line at any map scale
    if FOOTPRINT in viewer.layers:
        layer = viewer.layers[FOOTPRINT]
        if len(layer.data) != 1 or not np.allclose(layer.data[0], rect) or not np.allclose(layer.translate, corner):
            layer.data = [rect]  # replaced, not added: one footprint, the chosen pair's
            layer.translate, layer.edge_width = corner, width
        return
    viewer.add_shapes([rect], shape_type="rectangle", name=FOOTPRINT, edge_color=FOOTPRINT_COLOUR,
                      face_color="transparent", edge_width=width, translate=corner,
                      metadata={"hsisr_footprint": True})


def _drop_footprint(widget) -> None:
    widget._footprint_drawn_for = None
    remove_footprint(widget.viewer)


def remove_footprint(viewer) -> None:
    if FOOTPRINT in viewer.layers and viewer.layers[FOOTPRINT].metadata.get("hsisr_footprint"):
        viewer.layers.remove(FOOTPRINT)


# --------------------------------------------------------------------------- saving
def save_format(layer, format: str) -> tuple[str, dict | None]:
    """(format, GeoTIFF tags) to save a layer with: a georeferenced cube as a GeoTIFF unless OME-TIFF
    is asked (its georeferencing kept); others as asked."""
    meta = getattr(layer, "metadata", None) or {}
    geo = meta.get("geo") or (meta.get("settings") or {}).get("output_geo")
    if geo and format in ("imagej", "geotiff"):
        return "geotiff", geo
    return format, None
