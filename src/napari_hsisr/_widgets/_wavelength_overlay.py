"""Show "band i: 550 nm" on the canvas, and the wavelength beside the band slider (its own numbers
are band indices), when the dims slider moves over a cube with wavelengths."""

from __future__ import annotations

import weakref

import numpy as np

from . import _layers

_INSTALLED: weakref.WeakSet = weakref.WeakSet()
# the band axis's own label while it shows a wavelength, per viewer: kept here, not on the viewer
# (napari deprecates private attributes set on a Viewer and removes them in 0.10)
_SAVED_AXIS_LABEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def band_label(layer, world_point) -> str | None:
    """``"<name> band i: w nm"`` for the band of ``layer`` under the dims point, or None. A long name
    is elided in the middle: the canvas of a laptop screen shows about 42 characters."""
    from ._compact import elide_middle

    wl = _layers.layer_wavelengths(layer)
    if wl is None:
        return None
    point = np.asarray(world_point, float)
    if point.size < layer.ndim:
        return None
    data_pt = np.asarray(layer.world_to_data(point[-layer.ndim:]), float)
    i = int(np.clip(np.round(data_pt[0]), 0, layer.data.shape[0] - 1))
    return f"{elide_middle(layer.name, 18)} band {i}: {wl[i]:g} nm"


def current_label(viewer) -> str | None:
    active = viewer.layers.selection.active
    candidates = ([active] if active is not None else []) + [
        lay for lay in reversed(list(viewer.layers)) if lay.visible and lay is not active]
    for layer in candidates:
        if viewer.dims.ndim >= 3 and _layers.layer_wavelengths(layer) is not None:
            return band_label(layer, viewer.dims.point)
    return None


def text_overlay(viewer):
    """The canvas text overlay (``viewer.canvas.overlays.text`` from napari 0.9, else the legacy one)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None:
        try:
            return overlays["text"] if not hasattr(overlays, "text") else overlays.text
        except (KeyError, TypeError):
            pass
    return viewer.text_overlay


def update(viewer, *_):
    label = current_label(viewer)
    overlay = text_overlay(viewer)
    _slider_label(viewer, label)
    if label is None:
        if overlay.text.startswith("band") or " band " in overlay.text:
            overlay.text = ""
            overlay.visible = False
        return
    overlay.text = label
    overlay.visible = True


def _slider_label(viewer, label: str | None) -> None:
    """The band slider's axis label becomes the wavelength ("550 nm"); restored otherwise."""
    dims = viewer.dims
    if dims.ndim < 3:
        return
    axis = dims.ndim - 3  # the band axis of (C, Y, X) cubes
    labels = list(dims.axis_labels)
    original = _SAVED_AXIS_LABEL.get(viewer)
    if label is not None:
        if original is None:
            _SAVED_AXIS_LABEL[viewer] = labels[axis] if not labels[axis].endswith(" nm") else str(axis)
        text = label.rsplit(": ", 1)[-1]
    elif original is not None:
        text = _SAVED_AXIS_LABEL.pop(viewer)
    else:
        return
    if labels[axis] != text:
        labels[axis] = text
        dims.axis_labels = labels


def install(viewer) -> None:
    """Connect once per viewer (every widget calls this)."""
    if viewer in _INSTALLED:
        return
    _INSTALLED.add(viewer)
    ref = weakref.ref(viewer)

    def _cb(*_):
        v = ref()
        if v is not None:
            update(v)

    viewer.dims.events.point.connect(_cb)
    viewer.layers.selection.events.active.connect(_cb)
    viewer.layers.events.inserted.connect(_cb)
    viewer.layers.events.removed.connect(_cb)
    _cb()
