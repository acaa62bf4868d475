"""Pure helpers on napari layers (no Qt): cube detection, wavelengths, scale, naming, alignment."""

from __future__ import annotations

import functools
import os

import numpy as np


def _is_image(layer) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image)


def is_cube(layer) -> bool:
    """An image layer laid out ``(C, Y, X)`` (not RGB, at least 2 bands), in memory or multiscale
    (a large result opened from an OME-Zarr: read it through :func:`cube_data`)."""
    return (_is_image(layer) and layer.ndim == 3 and not layer.rgb
            and layer.data.shape[0] >= 2)  # MultiScaleData.shape is level 0's


def is_input_cube(layer) -> bool:
    """A cube a fusion can take as its LR input: in memory. A fusion reads its LR cube whole, and a
    multiscale layer is a large result kept on disk (not an LR cube)."""
    return is_cube(layer) and not layer.multiscale


def cube_data(layer):
    """The full-resolution ``(C, Y, X)`` array, unread: level 0 of a multiscale layer (a lazy dask
    array), else ``layer.data``. Never ``np.asarray(layer.data)`` on a multiscale layer: napari's
    MultiScaleData turns into its *coarsest* level, silently."""
    return layer.data[0] if layer.multiscale else layer.data


#: Most values a dock reads whole from a multiscale layer (512 MB as float32). The metrics and
#: renderings work on float64 copies of whole cubes (a few per cube), so this keeps their peak at a
#: few GB; multiscale results are the large ones (>= 1024 pixels a side), in-memory layers are
#: already loaded and are never refused.
WHOLE_READ_MAX = 2 ** 27


def whole_data(layer, purpose: str):
    """:func:`cube_data`, still unread (a worker thread reads it), refused (InputError) for a
    multiscale layer over :data:`WHOLE_READ_MAX`: ``purpose`` says what for."""
    data = cube_data(layer)
    if layer.multiscale and int(np.prod(data.shape)) > WHOLE_READ_MAX:
        from ..core.errors import InputError

        C, Y, X = data.shape
        raise InputError(f"{layer.name!r} is {C} x {Y} x {X} ({int(np.prod(data.shape)) * 4 / 2**30:.1f} GB as "
                         f"float32), too large to read whole for {purpose} (limit "
                         f"{WHOLE_READ_MAX * 4 / 2**30:.1f} GB); crop it first (e.g. "
                         f"hsisr.open_cube_lazy(path).data[:, y0:y1, x0:x1]) and add the crop as a layer.")
    return data


def read_whole(layer, purpose: str) -> np.ndarray:
    """:func:`whole_data` read into memory."""
    return np.asarray(whole_data(layer, purpose))


def fitting_level(layer, max_values: int | None = None) -> int:
    """The finest level of a multiscale layer with at most ``max_values`` values (default
    :data:`WHOLE_READ_MAX`), else the coarsest; 0 for an in-memory layer."""
    if not layer.multiscale:
        return 0
    limit = WHOLE_READ_MAX if max_values is None else max_values
    sizes = [int(np.prod(lv.shape)) for lv in layer.data]
    return next((i for i, n in enumerate(sizes) if n <= limit), len(sizes) - 1)


def is_result(layer) -> bool:
    """A cube this plugin made: its metadata records the fusion's settings."""
    settings = (getattr(layer, "metadata", None) or {}).get("settings")
    return is_cube(layer) and isinstance(settings, dict) and bool(settings.get("method"))


def is_hr_candidate(layer) -> bool:
    """An RGB/MSI layer ``(Y, X, k)`` (rgb), a ``(k, Y, X)`` stack, or a 2D grey image."""
    if not _is_image(layer) or layer.multiscale:
        return False
    return layer.rgb or layer.ndim in (2, 3)


def layer_wavelengths(layer) -> np.ndarray | None:
    """``metadata["wavelengths"]`` as float array when it has one value per band, else None; for a
    cube napari's own TIFF reader opened (``viewer.open`` picks it by default), the wavelengths the
    file carries."""
    wl = (layer.metadata or {}).get("wavelengths")
    if wl is None:
        wl = _file_wavelengths(layer)
    if wl is None:
        return None
    try:
        wl = np.asarray(wl, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    return wl if is_cube(layer) and wl.size == layer.data.shape[0] else None


def _file_wavelengths(layer) -> np.ndarray | None:
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    if not path or getattr(source, "reader_plugin", None) == "napari-hsisr" \
            or not str(path).lower().endswith((".tif", ".tiff")):
        return None
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    wl, scaled = _tiff_wavelengths(str(path), stamp)
    return None if scaled else wl  # scaled integers read raw are not the cube: no wavelengths, no pairing


@functools.lru_cache(maxsize=64)
def _tiff_wavelengths(path: str, stamp: int):  # ``stamp``: a rewritten file is read again
    from ..core.io import tiff_wavelengths

    return tiff_wavelengths(path)


def hr_spatial_shape(layer) -> tuple[int, int]:
    shape = layer.data.shape
    return tuple(shape[:2]) if layer.rgb else tuple(shape[-2:])


def hr_array(layer) -> np.ndarray:
    """The HR image as ``(Y, X, k)`` for the core; a view, never a modified copy."""
    data = np.asarray(layer.data)
    if layer.rgb or data.ndim == 2:
        return data
    return np.moveaxis(data, 0, -1)  # (k, Y, X) stack -> (Y, X, k)


def coarser_than(layer, hr_layer) -> bool:
    """``layer`` (a cube) has fewer pixels a side than ``hr_layer``: it can be the LR input; a
    full-resolution cube of the scene (a CAVE reference beside its own RGB image) cannot."""
    if hr_layer is None:
        return True
    (Y, X), (y, x) = hr_spatial_shape(hr_layer), layer.data.shape[-2:]
    return y < Y and x < X


def infer_scale(hr_shape, lr_shape) -> int | None:
    """Integer HR/LR ratio when both axes agree exactly; otherwise the rounded ratio or None."""
    (Y, X), (y, x) = tuple(hr_shape[-2:]), tuple(lr_shape[-2:])
    if not (y and x):
        return None
    if Y % y == 0 and X % x == 0 and Y // y == X // x:
        return int(Y // y)
    r = int(round(Y / y))
    return r if r >= 2 else None


def spatial_scale_translate(layer) -> tuple[np.ndarray, np.ndarray]:
    """World scale and translate of a layer's last two (Y, X) axes."""
    return np.asarray(layer.scale[-2:], float), np.asarray(layer.translate[-2:], float)


def lr_alignment(hr_layer, scale: int, lr_offset) -> tuple[np.ndarray, np.ndarray]:
    """Spatial (scale, translate) that puts an LR layer over ``hr_layer``; ``lr_offset`` is the HR
    coordinate of LR pixel 0's centre, one number or ``(y, x)`` (an estimated shift)."""
    hs, ht = spatial_scale_translate(hr_layer)
    return hs * scale, ht + np.broadcast_to(np.asarray(lr_offset, float), (2,)) * hs


def align_lr_layer(lr_layer, hr_layer, scale: int, lr_offset) -> None:
    """Set the LR layer's scale/translate (data untouched) so it overlays the HR layer."""
    s, t = lr_alignment(hr_layer, scale, lr_offset)
    new_scale = np.asarray(lr_layer.scale, float).copy()
    new_translate = np.asarray(lr_layer.translate, float).copy()
    new_scale[-2:], new_translate[-2:] = s, t
    if not np.allclose(new_scale, lr_layer.scale):
        lr_layer.scale = new_scale
    if not np.allclose(new_translate, lr_layer.translate):
        lr_layer.translate = new_translate


def unique_name(names, base: str) -> str:
    """``base`` if free, else ``base[1]``, ``base[2]``, ..."""
    names = set(names)
    if base not in names:
        return base
    i = 1
    while f"{base}[{i}]" in names:
        i += 1
    return f"{base}[{i}]"


def without_bad_bands(values: np.ndarray, layer) -> np.ndarray:
    """``values`` (one per band) with the layer's noisy bands (``metadata["bad_bands"]``, marked by
    the reader) as NaN: a plot skips them, so water bands spiking to 25,000 squash nothing."""
    bad = [i for i in (getattr(layer, "metadata", None) or {}).get("bad_bands") or () if 0 <= int(i) < len(values)]
    if not bad:
        return values
    out = np.array(values, dtype=float)
    out[bad] = np.nan
    return out
