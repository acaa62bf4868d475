"""Pure helpers on napari layers (no Qt): cube detection, wavelengths, scale, naming, alignment."""

from __future__ import annotations

import numpy as np


def _is_image(layer) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image)


def is_cube(layer) -> bool:
    """An image layer laid out ``(C, Y, X)`` (not RGB, not multiscale, at least 2 bands)."""
    return (_is_image(layer) and layer.ndim == 3 and not layer.rgb
            and not layer.multiscale and layer.data.shape[0] >= 2)


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
    """``metadata["wavelengths"]`` as float array when it has one value per band, else None."""
    wl = (layer.metadata or {}).get("wavelengths")
    if wl is None:
        return None
    try:
        wl = np.asarray(wl, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    return wl if is_cube(layer) and wl.size == layer.data.shape[0] else None


def hr_spatial_shape(layer) -> tuple[int, int]:
    shape = layer.data.shape
    return tuple(shape[:2]) if layer.rgb else tuple(shape[-2:])


def hr_array(layer) -> np.ndarray:
    """The HR image as ``(Y, X, k)`` for the core; a view, never a modified copy."""
    data = np.asarray(layer.data)
    if layer.rgb or data.ndim == 2:
        return data
    return np.moveaxis(data, 0, -1)  # (k, Y, X) stack -> (Y, X, k)


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
