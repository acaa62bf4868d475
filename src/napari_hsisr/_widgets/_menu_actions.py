"""File-menu and layer-context actions: open a cube (file or CAVE folder) with this plugin's reader
without napari asking which reader, and save a cube with its wavelengths and settings (napari's own
TIFF writer, which its save dialog lists first, drops them)."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog


def _notify(message: str, error: bool = False) -> None:
    from napari.utils.notifications import show_error, show_info

    (show_error if error else show_info)(message)


def open_cube(viewer, path: str | None = None) -> list:
    """Open a hyperspectral cube (TIFF, ENVI .hdr, .mat, .npy) or a CAVE folder of band images."""
    from ..core.errors import InputError

    if path is None:
        path = QFileDialog.getExistingDirectory(None, "Open a CAVE folder (cancel to pick a cube file)")
        if not path:
            path, _ = QFileDialog.getOpenFileName(None, "Open hyperspectral cube", "",
                                                  "Cubes (*.tif *.tiff *.hdr *.mat *.npy)")
    if not path:
        return []
    try:
        return viewer.open(path, plugin="napari-hsisr")
    except InputError as exc:
        _notify(str(exc), error=True)
    except Exception as exc:  # noqa: BLE001 - napari wraps reader errors; one line, not a traceback
        _notify(f"Could not open {Path(path).name}: {exc}", error=True)
    return []


def save_cube(viewer, path: str | None = None):
    """Save the active cube layer as a TIFF that keeps its wavelengths and settings."""
    from ..core.errors import InputError
    from . import _layers
    from ._fusion_worker import save_layer

    layer = viewer.layers.selection.active
    if layer is None or not _layers.is_cube(layer):
        _notify("Select a hyperspectral cube layer (bands, Y, X) to save.", error=True)
        return None
    if path is None:
        path, _ = QFileDialog.getSaveFileName(None, "Save hyperspectral cube", f"{layer.name}.tif",
                                              "TIFF (*.tif *.tiff);;OME-TIFF (*.ome.tif)")
    if not path:
        return None
    try:
        out = save_layer(layer, path, "ome" if str(path).lower().endswith((".ome.tif", ".ome.tiff")) else "imagej")
    except (InputError, OSError) as exc:
        _notify(f"Could not save {layer.name!r}: {exc}", error=True)
        return None
    _notify(f"Saved {layer.name!r} with its wavelengths and settings to {out}")
    return out
