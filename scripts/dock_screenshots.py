"""Screenshots of the three docks at 1280x800 for docs/images (run under Xvfb).

    xvfb-run -a -s "-screen 0 1280x800x24" python scripts/dock_screenshots.py cave
    xvfb-run -a -s "-screen 0 1280x800x24" python scripts/dock_screenshots.py neon
    xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/dock_screenshots.py cave 1920x1080

``cave``: CAVE balloons (its camera image over an x8 cube of its bands, the reference hidden), a
``fast`` fusion, three probes and a region, Quality against the reference: one image per tab.
``neon``: the NEON pair opened with the plugin's reader (real file names), a ``fast`` fusion: the
Fusion tab. Data from ../shared/data (see its README).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
WIDGETS = ("Fusion", "Spectrum probe", "Quality")


def settle(app, seconds=0.5):
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def open_docks(viewer, app):
    docks = {name: viewer.window.add_plugin_dock_widget("napari-hsisr", name)[1] for name in WIDGETS}
    settle(app)
    return docks


def fuse(fusion, app, timeout=300):
    fusion.run()
    end = time.time() + timeout
    while fusion.controller.running and time.time() < end:
        settle(app, 0.1)
    settle(app)


def close_notifications(viewer):
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def show_tab(viewer, widget, app, path):
    close_notifications(viewer)
    dock = widget.parentWidget()
    while type(dock).__name__ != "QtViewerDockWidget":
        dock = dock.parentWidget()
    dock.raise_()
    settle(app)
    window = viewer.window._qt_window
    print(path.name, "window", window.frameGeometry().width(), "x", window.frameGeometry().height(),
          "dock", widget.width(), "x", widget.height())
    viewer.screenshot(str(path), canvas_only=False)


def cave(viewer, app):
    from napari_hsisr.core.io import read_cube, read_image

    scene = DATA / "cave" / "complete_ms_data" / "balloons_ms"
    cube = read_cube(scene)
    ref, wl = cube.data, cube.wavelengths
    rgb = read_image(scene / "balloons_ms" / "balloons_RGB.bmp")
    lr = ref.reshape(ref.shape[0], ref.shape[1] // 8, 8, ref.shape[2] // 8, 8).mean(axis=(2, 4))
    viewer.add_image(rgb, name="balloons_RGB", rgb=True)
    viewer.add_image(ref, name="balloons_reference", metadata={"wavelengths": wl}, visible=False)
    viewer.add_image(lr, name="balloons_lr", metadata={"wavelengths": wl}, scale=(1, 8, 8), translate=(0, 3.5, 3.5))
    docks = open_docks(viewer, app)
    fuse(docks["Fusion"], app)
    spectrum, quality = docks["Spectrum probe"], docks["Quality"]
    probes = spectrum.probes_layer()
    probes.add([[15, 260, 250], [15, 120, 330], [15, 400, 150]])
    viewer.add_shapes([np.array([[300, 170], [300, 290], [380, 290], [380, 170]])], shape_type="rectangle",
                      name="region", edge_color="yellow", face_color="transparent", edge_width=3)
    probes.mode = "pan_zoom"
    quality.evaluate()
    while quality.running:
        settle(app, 0.1)
    spectrum.redraw()
    viewer.dims.set_point(0, 15)
    viewer.layers.selection.active = viewer.layers["balloons_lr_fast"]
    if SIZE != "1280x800":
        show_tab(viewer, quality, app, OUT / f"window_{SIZE}.png")
        return
    for name, file in (("Fusion", "fusion"), ("Spectrum probe", "spectrum"), ("Quality", "quality")):
        show_tab(viewer, docks[name], app, OUT / f"window_1280x800_{file}.png")


def neon(viewer, app):
    pair = DATA / "real_pairs" / "neon_harv"
    for path in sorted(pair.glob("*.tif")):
        viewer.open(str(path), plugin="napari-hsisr" if "reflectance" in path.name else "napari")
    docks = open_docks(viewer, app)
    fuse(docks["Fusion"], app)
    viewer.dims.set_point(0, 50)
    viewer.layers[-1].reset_contrast_limits(mode="slice")  # raw int16 units: the default range is wide
    show_tab(viewer, docks["Fusion"], app, OUT / "window_1280x800_neon_names.png")


if __name__ == "__main__":
    import napari
    from qtpy.QtWidgets import QApplication

    SIZE = sys.argv[2] if len(sys.argv) > 2 else "1280x800"
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*(int(v) for v in SIZE.split("x")))
    app = QApplication.instance()
    {"cave": cave, "neon": neon}[sys.argv[1]](viewer, app)
