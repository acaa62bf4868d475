"""Dock widgets through a real viewer (Xvfb): fusion run/stop/errors, spectrum probe, CSV, quality."""

import csv
import time

import numpy as np
import pytest

pytest.importorskip("qtpy")


@pytest.fixture
def sample_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-hsisr", "sample_pair")
    return viewer


@pytest.fixture
def errors(monkeypatch):
    """Messages passed to napari.utils.notifications.show_error."""
    from napari.utils import notifications

    seen = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: seen.append(str(msg)))
    return seen


def _wait_idle(qtbot, widget, timeout=30000):
    qtbot.waitUntil(lambda: not widget.controller.running, timeout=timeout)


def test_fusion_run_on_sample_adds_aligned_result(sample_viewer, qtbot, errors):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = sample_viewer
    hr, lr = viewer.layers["sample_rgb"], viewer.layers["sample_lr_hs"]
    hr_before, lr_before = hr.data.copy(), lr.data.copy()
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    assert (widget.hr_combo.currentText(), widget.lr_combo.currentText()) == ("sample_rgb", "sample_lr_hs")
    assert widget.scale_spin.value() == 8 and widget.wl_from_layer.isChecked()
    assert widget.method_combo.currentText() == "fast"
    assert widget.options_form.values()["rank"] == 0  # automatic

    seen_progress = []
    widget.controller.progress.connect(seen_progress.append)
    assert widget.run()
    qtbot.waitUntil(lambda: "sample_lr_hs_fast" in viewer.layers, timeout=30000)
    _wait_idle(qtbot, widget)

    out = viewer.layers["sample_lr_hs_fast"]  # the method is in the name
    assert out.data.shape == (31, 256, 256) and out.data.dtype == np.float32
    np.testing.assert_allclose(out.scale[-2:], hr.scale[-2:])
    np.testing.assert_allclose(out.translate[-2:], hr.translate[-2:])
    np.testing.assert_allclose(out.metadata["wavelengths"], lr.metadata["wavelengths"])
    assert len(out.metadata["wavelengths"]) == 31
    settings = out.metadata["settings"]
    assert settings["method"] == "fast" and settings["degradation"]["scale"] == 8
    assert settings["options"]["rank"] == 0 and settings["resolved_options"]["rank"] == 20
    # LR pixel (0, 0) centre over HR 3.5; inputs untouched
    np.testing.assert_allclose(lr.data_to_world((0, 0, 0))[-2:], [3.5, 3.5])
    np.testing.assert_array_equal(hr.data, hr_before)
    np.testing.assert_array_equal(lr.data, lr_before)
    assert seen_progress and seen_progress[-1].step == seen_progress[-1].total
    assert widget.run_button.isEnabled() and not widget.stop_button.isEnabled()
    assert errors == []

    # a second run does not overwrite: <name>_fast[1]; with "replace" it reuses the layer
    widget.options_form.widget("rank").setValue(6)
    assert widget.run()
    qtbot.waitUntil(lambda: "sample_lr_hs_fast[1]" in viewer.layers, timeout=30000)
    _wait_idle(qtbot, widget)
    widget.replace_check.setChecked(True)
    n = len(viewer.layers)
    assert widget.run()
    _wait_idle(qtbot, widget)
    assert len(viewer.layers) == n and viewer.layers["sample_lr_hs_fast"].metadata["settings"]["options"]["rank"] == 6


def test_run_aligns_lr_layer_without_touching_data_and_says_where_it_was(make_napari_viewer, qtbot, errors):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = make_napari_viewer()
    rgb = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    lr = np.random.default_rng(1).random((5, 16, 16)).astype(np.float32) + 0.1
    viewer.add_image(rgb, name="hr", rgb=True, scale=(2, 2), translate=(10, 20))
    lr_layer = viewer.add_image(lr.copy(), name="lr", metadata={"wavelengths": [450, 500, 550, 600, 650]})
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.scale_spin.value() == 4
    np.testing.assert_allclose(lr_layer.translate, [0, 0, 0])  # opening the dock moves nothing
    widget.method_combo.setCurrentText("bicubic")
    assert widget.run()
    qtbot.waitUntil(lambda: "lr_bicubic" in viewer.layers, timeout=30000)
    _wait_idle(qtbot, widget)
    # K = s = 4: LR pixel 0 centre at HR 1.5 -> world 10 + 2 * 1.5
    np.testing.assert_allclose(lr_layer.scale[-2:], [8, 8])
    np.testing.assert_allclose(lr_layer.data_to_world((0, 0, 0))[-2:], [13, 23])
    np.testing.assert_array_equal(lr_layer.data, lr)
    moved = viewer.layers["lr_bicubic"].metadata["lr_layer_moved"]
    assert moved["translate_before"] == [0.0, 0.0, 0.0] and "aligned" in widget.progress_label.text()


def test_inexact_ratio_is_said_before_running(make_napari_viewer, qtbot):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((256, 256, 3), np.float32), name="hr", rgb=True)
    viewer.add_image(np.ones((5, 30, 30), np.float32), name="lr")
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.scale_spin.value() == 9
    note = widget.data_view.pair_note
    assert not note.isHidden() and "ratio 8.53" in note.text() and "Crop both to 252x252" in note.text()


def _register_slow_method():
    from napari_hsisr.core.methods import base
    from napari_hsisr.core.methods.base import MethodInfo, Progress

    def slow(inputs):
        C, (Y, X) = inputs.lr.shape[0], inputs.hr.shape[-2:]
        for i in range(400):
            time.sleep(0.05)
            preview = np.full((C, Y // 16, X // 16), i / 400, np.float32)
            yield Progress(i, 400, loss=1.0 / (i + 1), message="slow", preview=preview)
        return np.zeros((C, Y, X), np.float32)

    base.list_methods()  # load the built-ins first
    base.register(MethodInfo("slow_test", slow, "test only: slow", needs_srf=False, needs_psf=False))
    return base


def test_stop_mid_run_adds_no_layer(sample_viewer, qtbot, errors):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    base = _register_slow_method()
    try:
        widget = FusionWidget(sample_viewer)
        qtbot.addWidget(widget)
        widget.method_combo.setCurrentText("slow_test")
        widget.live_check.setChecked(True)
        steps, stopped = [], []
        widget.controller.progress.connect(steps.append)
        widget.controller.stopped.connect(lambda: stopped.append(True))
        n = len(sample_viewer.layers)
        assert widget.run()
        assert widget.stop_button.isEnabled() and not widget.run_button.isEnabled()
        qtbot.waitUntil(lambda: len(steps) >= 3, timeout=10000)
        assert "loss" in widget.progress_label.text()
        activity = widget.controller.activity  # mirrored in napari's activity dock
        assert activity is not None and activity.total == steps[-1].total and activity.n >= 1
        preview = sample_viewer.layers["sample_lr_hs_preview"]  # live preview (C, 16, 16) over the HR grid
        assert preview.data.shape == (31, 16, 16)
        np.testing.assert_allclose(preview.scale[-2:], [16, 16])
        widget.stop_button.click()
        assert "sample_lr_hs_preview" not in sample_viewer.layers  # removed on Stop
        _wait_idle(qtbot, widget, timeout=10000)
        qtbot.wait(100)  # let any late signal through
        assert stopped and len(steps) < 400
        assert len(sample_viewer.layers) == n and "sample_lr_hs_slow_test" not in sample_viewer.layers
        assert widget.progress_bar.value() == 0 and widget.progress_bar.maximum() == 1  # not stuck at 7 %
        assert "sample_lr_hs_preview" not in sample_viewer.layers
        assert "stopped" in widget.progress_label.text() and widget.run_button.isEnabled()
        assert widget.controller.activity is None  # activity bar closed
        assert errors == []
    finally:
        base._REGISTRY.pop("slow_test", None)


def test_bad_lr_size_notifies_and_adds_nothing(sample_viewer, qtbot, errors):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = sample_viewer
    bad = np.random.default_rng(0).random((31, 30, 30)).astype(np.float32)
    viewer.add_image(bad.copy(), name="bad_lr", metadata={"wavelengths": list(range(400, 701, 10))})
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    widget.lr_combo.setCurrentText("bad_lr")
    widget.scale_spin.setValue(8)
    n = len(viewer.layers)
    assert widget.run() is False
    assert len(errors) == 1 and "LR cube is 30x30" in errors[0] and "32x32" in errors[0]
    assert len(viewer.layers) == n and not widget.controller.running
    np.testing.assert_array_equal(viewer.layers["bad_lr"].data, bad)
    np.testing.assert_allclose(viewer.layers["bad_lr"].scale, [1, 1, 1])  # not aligned: sizes disagree


def test_error_inside_worker_is_a_notification(sample_viewer, qtbot, errors):
    """A grey HR image with an RGB response fails in the core (first next()), in the worker."""
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = sample_viewer
    viewer.add_image(viewer.layers["sample_rgb"].data.mean(-1), name="grey")
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    widget.hr_combo.setCurrentText("grey")
    failed = []
    widget.controller.failed.connect(failed.append)
    n = len(viewer.layers)
    assert widget.run()
    _wait_idle(qtbot, widget)
    assert failed and errors == failed and "channel" in errors[0]
    assert len(viewer.layers) == n


def test_bad_option_value_notifies(sample_viewer, qtbot, errors):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    widget = FusionWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.options_form.widget("mu").setText("-1")
    assert widget.run() is False
    assert errors and "mu" in errors[0]
    widget.options_form.widget("mu").setText("abc")
    assert widget.run() is False and "is a number, got 'abc'" in errors[-1]


def test_probe_returns_exact_pixels_across_scales(sample_viewer):
    from napari_hsisr._widgets.spectrum_widget import spectra_at

    viewer = sample_viewer
    ref, lr = viewer.layers["sample_reference"], viewer.layers["sample_lr_hs"]
    rng = np.random.default_rng(0)
    other = viewer.add_image(rng.random((7, 52, 50)).astype(np.float32), name="coarse", scale=(1, 5, 5),
                             translate=(0, 2, 2))
    for world in [(0, 100.2, 57.9), (3, 0.0, 0.0), (0, 3.49, 3.51), (0, 195.0, 247.6), (0, 255.4, 12.0)]:
        got = spectra_at(viewer.layers, world)
        assert set(got) == {"sample_reference", "sample_lr_hs", "coarse"}
        y, x = world[1:]
        np.testing.assert_array_equal(got["sample_reference"][1], ref.data[:, round(y), round(x)])
        ly, lx = int(np.floor((y - 3.5) / 8 + 0.5)), int(np.floor((x - 3.5) / 8 + 0.5))
        np.testing.assert_array_equal(got["sample_lr_hs"][1], lr.data[:, ly, lx])
        cy, cx = int(np.floor((y - 2) / 5 + 0.5)), int(np.floor((x - 2) / 5 + 0.5))
        np.testing.assert_array_equal(got["coarse"][1], other.data[:, cy, cx])
        np.testing.assert_allclose(got["sample_lr_hs"][0], lr.metadata["wavelengths"])
        np.testing.assert_allclose(got["coarse"][0], np.arange(7))  # no wavelengths: band index
    assert spectra_at(viewer.layers, (0, -30.0, 10.0)) == {}  # outside every layer
    # RGB layers are not cubes; k x k average
    avg = spectra_at([ref], (0, 100, 100), size=3)["sample_reference"][1]
    np.testing.assert_allclose(avg, ref.data[:, 99:102, 99:102].mean(axis=(1, 2)), rtol=1e-6)


def test_spectrum_widget_probes_and_csv_export(sample_viewer, qtbot, tmp_path):
    import matplotlib.colors as mcolors
    import matplotlib.legend as mlegend

    from napari_hsisr._widgets.spectrum_widget import SpectrumWidget

    viewer = sample_viewer
    widget = SpectrumWidget(viewer)
    qtbot.addWidget(widget)
    probes = widget.probes_layer()
    assert probes.name == "probes" and probes.mode == "add"
    probes.add([[0, 10, 20], [0, 200, 100]])
    qtbot.waitUntil(lambda: "2 probe(s)" in widget.status.text(), timeout=3000)
    # two compact legends: one entry per layer (colours), one per probe (line style and marker), under
    # the axes (never over the curves)
    legends = [c for c in widget.figure.legends if isinstance(c, mlegend.Legend)]
    texts = [[t.get_text() for t in leg.get_texts()] for leg in legends]
    assert ["sample_lr_hs"] in texts and ["probe 1", "probe 2"] in texts  # hidden reference not plotted
    widget.canvas.draw()
    axes_box = widget.ax.get_tightbbox()  # the x label included
    assert all(leg.get_window_extent().y1 <= axes_box.y0 + 1 for leg in legends)
    lines = {ln.get_label(): ln for ln in widget.ax.get_lines()}
    l1, l2 = lines["probe 1: sample_lr_hs"], lines["probe 2: sample_lr_hs"]
    assert mcolors.to_rgb(l1.get_color()) == mcolors.to_rgb(l2.get_color())  # one colour per layer
    assert (l1.get_linestyle(), l1.get_marker()) != (l2.get_linestyle(), l2.get_marker())  # one style per probe
    # on the canvas each probe has its own colour and the plot's marker as its symbol
    face = np.asarray(probes.face_color)
    assert not np.allclose(face[0], face[1])
    assert [str(v) for v in np.asarray(probes.symbol)[:2]] == ["disc", "square"]
    probes.add([[0, 100, 100]])  # the next colour again
    assert not np.allclose(np.asarray(probes.face_color)[2], face[1])
    probes.data = probes.data[:2]
    probes.data = probes.data[1:]  # move/delete updates the plot
    qtbot.waitUntil(lambda: "1 probe(s)" in widget.status.text(), timeout=3000)
    probes.data = np.array([[0, 10, 20], [0, 200, 100]])

    path = widget.export_csv(tmp_path / "spectra.csv")
    rows = list(csv.reader(path.open()))
    header, body = rows[0], rows[1:]
    assert header[0] == "wavelength_nm" and len(header) == 1 + 2 * 1  # 2 probes x 1 visible cube
    assert [float(r[0]) for r in body] == list(range(400, 701, 10))
    ref, lr = viewer.layers["sample_reference"], viewer.layers["sample_lr_hs"]
    assert not ref.visible  # hidden layers are not exported
    ref.visible = True
    path = widget.export_csv(tmp_path / "spectra.csv")
    rows = list(csv.reader(path.open()))
    header, body = rows[0], np.array([[float(v) for v in r] for r in rows[1:]])
    assert len(header) == 1 + 2 * 2 and not list(tmp_path.glob(".*tmp"))
    col = header.index("probe2(200_100):sample_reference")
    np.testing.assert_allclose(body[:, col], ref.data[:, 200, 100], rtol=1e-6)
    col = header.index("probe1(10_20):sample_lr_hs")
    np.testing.assert_allclose(body[:, col], lr.data[:, 1, 2], rtol=1e-6)  # (10-3.5)/8 -> 1, (20-3.5)/8 -> 2


def test_hover_plots_cursor_spectrum(sample_viewer, qtbot):
    from napari_hsisr._widgets.spectrum_widget import SpectrumWidget

    widget = SpectrumWidget(sample_viewer)
    qtbot.addWidget(widget)

    class Event:
        position = (0, 50.0, 60.0)

    widget._on_mouse_move(sample_viewer, Event())
    qtbot.waitUntil(lambda: bool(widget.figure.legends), timeout=3000)
    line = widget.ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), sample_viewer.layers["sample_lr_hs"].data[:, 6, 7])
    assert widget.ax.get_xlabel() == "wavelength (nm)"



def test_quality_widget_and_sam_map(sample_viewer, qtbot, errors, evaluate_quality):
    from napari_hsisr._widgets._fusion_worker import FusionRequest, build_degradation
    from napari_hsisr._widgets.quality_widget import (
        CONSISTENCY,
        NO_REFERENCE,
        QualityWidget,
    )

    viewer = sample_viewer
    ref = viewer.layers["sample_reference"]
    noisy = np.clip(ref.data + np.random.default_rng(0).normal(0, 0.01, ref.data.shape), 0, 1).astype(np.float32)
    deg = build_degradation(FusionRequest(viewer.layers["sample_rgb"], viewer.layers["sample_lr_hs"], 8,
                                          psf_sigma=2.0))
    viewer.add_image(noisy, name="sample_lr_hs_fast", metadata={
        "settings": {"method": "fast", "degradation": deg.settings()},
        "inputs": {"hr": "sample_rgb", "lr": "sample_lr_hs"}})
    widget = QualityWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.result_combo.currentText() == "sample_lr_hs_fast"
    assert widget.reference_combo.currentText() == "sample_reference"
    assert (widget.hr_combo.currentText(), widget.lr_combo.currentText()) == ("sample_rgb", "sample_lr_hs")
    m = evaluate_quality(widget)
    assert 35 < m["psnr"] < 45 and m["sam"] > 0 and "ergas" in m and 0 < m["ssim"] <= 1
    assert widget.table.item(0, 1).text() and widget.evaluate_button.isEnabled()
    layer = widget.add_sam_map()
    assert layer.name == "sample_lr_hs_fast_sam" and layer.data.shape == (256, 256)
    # no reference: consistency of the result, degraded again with its recorded Degradation, with its inputs
    widget.reference_combo.setCurrentText(NO_REFERENCE)
    c = evaluate_quality(widget)
    assert set(c) == {k for k, _ in CONSISTENCY} and c["lr_fit"] < 0.05 and c["hr_fit"] < 0.05
    assert widget.table.rowCount() == len(CONSISTENCY) and widget.table.item(0, 1).text().endswith(" %")
    assert errors == []
    widget.reference_combo.setCurrentText("sample_lr_hs")  # wrong size: a notification
    assert evaluate_quality(widget) == {} and errors
    widget.reference_combo.setCurrentText("sample_lr_hs_fast")  # the result itself: refused, no PSNR inf
    assert evaluate_quality(widget) == {} and "same layer" in errors[-1]


def test_quality_opened_first_follows_data_and_new_results(make_napari_viewer, qtbot, errors, evaluate_quality):
    """Opened on an empty viewer, the Quality dock picks the reference when it arrives and the
    result of a fusion when it is added (not the LR input), and the first Evaluate works."""
    from napari_hsisr._widgets.fusion_widget import FusionWidget
    from napari_hsisr._widgets.quality_widget import QualityWidget

    viewer = make_napari_viewer()
    quality = QualityWidget(viewer)
    qtbot.addWidget(quality)
    viewer.open_sample("napari-hsisr", "sample_pair")
    assert quality.reference_combo.currentText() == "sample_reference"
    fusion = FusionWidget(viewer)
    qtbot.addWidget(fusion)
    assert fusion.run()
    qtbot.waitUntil(lambda: "sample_lr_hs_fast" in viewer.layers, timeout=30000)
    assert quality.result_combo.currentText() == "sample_lr_hs_fast"
    m = evaluate_quality(quality)
    assert m["psnr"] > 35 and errors == []


def test_wavelength_overlay_follows_dims(sample_viewer, qtbot):
    from napari_hsisr._widgets import _wavelength_overlay
    from napari_hsisr._widgets.spectrum_widget import SpectrumWidget

    viewer = sample_viewer
    widget = SpectrumWidget(viewer)  # installs the overlay
    qtbot.addWidget(widget)
    viewer.layers.selection.active = viewer.layers["sample_lr_hs"]
    viewer.dims.set_current_step(0, 15)
    overlay = _wavelength_overlay.text_overlay(viewer)
    assert overlay.visible and overlay.text == "sample_lr_hs band 15: 550 nm"
    assert viewer.dims.axis_labels[0] == "550 nm"  # beside the band slider, whose numbers are indices
    viewer.dims.set_current_step(0, 16)
    assert viewer.dims.axis_labels[0] == "560 nm"


def test_msfn_prior_check_warns_in_the_viewer(sample_viewer, qtbot, errors, monkeypatch):
    """On the synthetic sample the learned prior loses to fast on the pair degraded once more: the
    dock shows the warning that the result is fast's, and the layer's settings keep it."""
    from napari_hsisr._widgets.fusion_widget import FusionWidget
    from napari_hsisr.core.methods.msfn import shipped_weights

    if shipped_weights() is None:
        pytest.skip("no shipped weights")
    from napari.utils import notifications

    warned = []
    monkeypatch.setattr(notifications, "show_warning", lambda msg: warned.append(str(msg)))
    widget = FusionWidget(sample_viewer)
    qtbot.addWidget(widget)
    widget.method_combo.setCurrentText("msfn")
    widget.sigma_spin.setValue(3.0)  # the sample was made with sigma 2: the weights serve any PSF
    assert widget.run()
    qtbot.waitUntil(lambda: "sample_lr_hs_msfn" in sample_viewer.layers, timeout=60000)
    _wait_idle(qtbot, widget)
    assert errors == []
    settings = sample_viewer.layers["sample_lr_hs_msfn"].metadata["settings"]
    assert "sigma=3" in settings["degradation"]["psf"]
    if settings["resolved_options"]["prior_check"]["use_prior"]:
        assert warned == [] and "warnings" not in settings
    else:
        assert len(warned) == 1 and "result is fast's" in warned[0] and settings["warnings"] == warned
        assert "warning" in widget.progress_label.text()


def test_blind_on_a_misregistered_camera_pair_moves_the_lr_layer(make_napari_viewer, qtbot, errors):
    """A camera-like 8-bit sRGB image over an LR cube sampled 1.5 px off: blind estimates the
    shift, the LR layer moves there, the fit is shown, and the estimate (encoding included) is
    offered for reuse."""
    from napari_hsisr import Degradation, simulate
    from napari_hsisr._widgets.fusion_widget import ESTIMATED, FusionWidget
    from napari_hsisr.core.physics import ToneCurve
    from napari_hsisr.core.sample import sample_scene

    cube, wl = sample_scene(96)
    true = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="Canon 5D Mark II", wavelengths=wl,
                       shift=(1.5, -1.0))
    rgb, lr = simulate(cube, true, seed=0)
    rgb8 = np.round(ToneCurve("srgb").encode(np.clip(rgb, 0, 1)) * 255).astype(np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(rgb8, name="camera", rgb=True)
    viewer.add_image(lr, name="cube", metadata={"wavelengths": wl.tolist()})
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    widget.hr_combo.setCurrentText("camera")
    widget.lr_combo.setCurrentText("cube")
    widget.method_combo.setCurrentText("blind")
    widget.options_form.widget("solver").setCurrentText("fast")
    assert widget.run()
    qtbot.waitUntil(lambda: "cube_blind" in viewer.layers, timeout=60000)
    _wait_idle(qtbot, widget, 60000)
    assert not errors
    out = viewer.layers["cube_blind"]
    moved = np.array(viewer.layers["cube"].translate[-2:], float)
    np.testing.assert_allclose(moved, (1.5 + 1.5, 1.5 - 1.0), atol=0.25)  # block centre + the shift
    assert out.metadata["lr_layer_moved"]["translate_before"][-2:] == [0.0, 0.0]
    assert "fit: LR" in widget.progress_label.text() and "moved 'cube'" in widget.progress_label.text()
    assert widget.encoding_combo.findText(ESTIMATED) >= 0
    widget.use_estimated_degradation()
    assert widget.request().hr_encoding.name == "srgb"


def test_every_control_says_what_it_does(sample_viewer):
    """Buttons, combos, spin boxes and check boxes of the three docks all carry a tooltip."""
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit

    from napari_hsisr._widgets.fusion_widget import FusionWidget
    from napari_hsisr._widgets.quality_widget import QualityWidget
    from napari_hsisr._widgets.spectrum_widget import SpectrumWidget

    docks = [FusionWidget(sample_viewer), SpectrumWidget(sample_viewer), QualityWidget(sample_viewer)]
    missing = []
    for dock in docks:
        for kind in (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit):
            for w in dock.findChildren(kind):
                if isinstance(w.parent(), (QComboBox, QAbstractSpinBox)) or w.objectName().startswith("qt_"):
                    continue  # a combo's or spin box's own inner parts
                if not (w.toolTip() or "").strip():
                    label = getattr(w, "text", lambda: "")() if not isinstance(w, QComboBox) else w.currentText()
                    missing.append(f"{type(dock).__name__}: {type(w).__name__} {label!r}")
    assert not missing, missing


LONG_NAME = "NEON_D01_HARV_DP3_726000_4699000_reflectance_crop"


def _dock_of(widget):
    from qtpy.QtWidgets import QDockWidget

    while not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    return widget


def _open_three_docks(viewer, qtbot):
    from napari_hsisr._widgets.fusion_widget import FusionWidget
    from napari_hsisr._widgets.quality_widget import QualityWidget
    from napari_hsisr._widgets.spectrum_widget import SpectrumWidget

    docks = {"Fusion": FusionWidget(viewer), "Spectrum probe": SpectrumWidget(viewer), "Quality": QualityWidget(viewer)}
    for name, dock in docks.items():
        viewer.window.add_dock_widget(dock, name=name, area="right")
    qtbot.waitUntil(lambda: all(dock.in_plugin_tabs for dock in docks.values()), timeout=3000)  # once shown
    return docks


def _raise(dock, qtbot):
    _dock_of(dock).raise_()
    qtbot.wait(100)


def test_three_docks_fit_a_laptop_screen(make_napari_viewer, qtbot):
    """All three docks open in a 1280x800 window: they stack as tabs in the order opened, the
    window stays 1280x800 (a dock scrolls) and Run is on screen, whatever method (blind has the
    most options)."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-hsisr", "sample_pair")
    docks = _open_three_docks(viewer, qtbot)
    window = viewer.window._qt_window
    fusion = docks["Fusion"]
    tabs = window.tabifiedDockWidgets(_dock_of(fusion))
    assert {_dock_of(docks[n]) for n in ("Spectrum probe", "Quality")} == set(tabs)
    _raise(fusion, qtbot)
    for method in ("unsupervised", "blind"):
        fusion.method_combo.setCurrentText(method)
        fusion.options.expand(animate=False)
        window.resize(1280, 800)
        qtbot.wait(200)
        assert (window.width(), window.height()) == (1280, 800)
        run = fusion.run_button.mapTo(window, fusion.run_button.rect().bottomLeft())
        assert fusion.run_button.isVisible() and 0 < run.y() < 800


def test_real_file_names_keep_the_window_on_a_laptop_screen(make_napari_viewer, qtbot, evaluate_quality):
    """A fused pair named like NEON's files, the three docks open at 1280x800: the window stays
    within the screen, Run and Quality's metrics and per-band plot are visible without scrolling,
    the spectrum plot is large, long names are elided with the full name in the tooltip."""
    from qtpy.QtWidgets import QComboBox

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-hsisr", "sample_pair")
    viewer.layers["sample_lr_hs"].name = LONG_NAME
    viewer.layers["sample_rgb"].name = "2019_D01_HARV_DP3_726000_4699000_image_crop"
    window = viewer.window._qt_window
    window.resize(1280, 800)
    docks = _open_three_docks(viewer, qtbot)
    fusion, spectrum, quality = docks["Fusion"], docks["Spectrum probe"], docks["Quality"]
    assert fusion.run()
    qtbot.waitUntil(lambda: f"{LONG_NAME}_fast" in viewer.layers, timeout=30000)
    _wait_idle(qtbot, fusion)
    window.resize(1280, 800)
    qtbot.wait(200)
    assert window.frameGeometry().width() <= 1280 and window.minimumSizeHint().width() <= 1280

    _raise(fusion, qtbot)
    assert not fusion.run_button.visibleRegion().isEmpty()
    assert fusion.lr_combo.currentText() == LONG_NAME and LONG_NAME in fusion.lr_combo.toolTip()

    _raise(quality, qtbot)
    assert evaluate_quality(quality)["psnr"] > 30
    qtbot.wait(100)
    for output in (quality.table, quality.band_canvas):
        shown = output.visibleRegion().boundingRect()
        assert (shown.width(), shown.height()) == (output.width(), output.height())  # whole, unscrolled
    assert quality.scroll.verticalScrollBar().value() == 0

    _raise(spectrum, qtbot)
    assert spectrum.canvas.height() >= 260 and spectrum.canvas.width() >= 400
    combos = [c for d in docks.values() for c in d.findChildren(QComboBox)]
    assert all(c.minimumSizeHint().width() < 250 for c in combos)
    assert window.frameGeometry().width() <= 1280


def test_render_stays_under_probes_and_regions(sample_viewer, qtbot):
    """An opaque true-colour render is inserted below the Points and Shapes layers, not over them."""
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = sample_viewer
    viewer.add_points([[15, 100, 100]], name="probes")
    viewer.add_shapes([np.array([[10, 10], [10, 50], [50, 50]])], shape_type="polygon", name="region")
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    widget.result_combo.setCurrentText("sample_reference")
    out = widget.add_truecolour()
    names = [lay.name for lay in viewer.layers]
    assert names.index(out.name) < names.index("probes") < names.index("region")


def test_plots_follow_the_viewer_theme(sample_viewer, qtbot):
    """Labels, ticks and both legends take the theme's text colour on its background, and change
    with the theme (never black on black)."""
    import matplotlib.colors as mcolors

    from napari_hsisr._widgets._canvas import _legends, theme_colours
    from napari_hsisr._widgets.spectrum_widget import SpectrumWidget

    viewer = sample_viewer
    sp = SpectrumWidget(viewer)
    qtbot.addWidget(sp)
    probes = sp.probes_layer()
    probes.add([[15, 100, 100]])
    sp.redraw()

    def check(theme):
        c = theme_colours(viewer)
        assert mcolors.to_hex(sp.ax.xaxis.label.get_color()) == mcolors.to_hex(c["text"])
        assert mcolors.to_hex(sp.ax.get_facecolor()) == mcolors.to_hex(c["bg"])
        legends = _legends(sp.ax)
        assert len(legends) == 2  # layers (colours) and probes (styles)
        for legend in legends:
            assert mcolors.to_hex(legend.get_frame().get_facecolor()) == mcolors.to_hex(c["bg"])
            assert all(mcolors.to_hex(t.get_color()) == mcolors.to_hex(c["text"]) for t in legend.get_texts())
        return c["text"]

    dark = check("dark")
    viewer.theme = "light"
    qtbot.wait(50)
    assert check("light") != dark
    assert sp.ax.get_xlabel() == "wavelength (nm)"


def test_recorded_response_is_adopted_only_for_a_simulated_hr_layer(sample_viewer, qtbot):
    """The sample's LR layer records its preset: picked over the float sample RGB, not over an
    8-bit camera image of the same scene, whose response is the camera's own."""
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = sample_viewer
    camera = (np.clip(viewer.layers["sample_rgb"].data, 0, 1) * 255).astype(np.uint8)
    viewer.add_image(camera, name="camera_rgb", rgb=True)
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    widget.hr_combo.setCurrentText("sample_rgb")
    assert widget.srf_combo.currentText() == "Nikon D700 (CAVE fusion papers)"
    widget.srf_combo.setCurrentText("estimate from the pair")
    widget.hr_combo.setCurrentText("camera_rgb")
    assert widget.srf_combo.currentText() == "estimate from the pair"
    assert widget.request().srf is None
