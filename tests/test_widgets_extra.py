"""Fusion dock extras: degradation previews, export, true colour, live preview; pure helpers."""

import time

import numpy as np
import pytest

pytest.importorskip("qtpy")


# ---------------------------------------------------------------------- pure functions (no viewer)
def test_true_colour_shape_range_and_white():
    from napari_hsisr._widgets._truecolour import true_colour
    from napari_hsisr.core.errors import InputError

    wl = np.arange(400, 701, 10)
    cube = np.random.default_rng(0).random((31, 12, 17)).astype(np.float32)
    for srf in ("CIE 1931", "Nikon D700 (CAVE fusion papers)", "Canon 5DMarkII"):
        rgb = true_colour(cube, wl, srf)
        assert rgb.shape == (12, 17, 3) and rgb.dtype == np.float32
        assert rgb.min() >= 0 and rgb.max() <= 1
    flat = np.ones((31, 2, 2), np.float32)  # white reflectance renders white (any 3-channel response)
    np.testing.assert_allclose(true_colour(flat, wl), 1, atol=1e-5)
    np.testing.assert_allclose(true_colour(flat, None, "Nikon D700"), 1, atol=1e-5)  # 31 bands: 400..700
    np.testing.assert_allclose(true_colour(0.5 * flat, wl, gamma=False), 0.5, atol=1e-5)
    red = np.zeros((31, 1, 1), np.float32)
    red[-8:] = 1  # 630..700 nm
    r, g, b = true_colour(red, wl)[0, 0]
    assert r > 0.5 and r > 2 * g and r > 2 * b
    with pytest.raises(InputError, match="wavelengths"):
        true_colour(np.ones((5, 2, 2)), None)


def test_quality_refuses_a_result_without_recorded_degradation():
    from napari_hsisr._widgets.quality_widget import check_recorded
    from napari_hsisr.core.api import result_fit
    from napari_hsisr.core.errors import InputError

    for settings in ({}, {"degradation": {"scale": 4}}):
        with pytest.raises(InputError, match="reference"):
            check_recorded(settings)
        with pytest.raises(InputError, match="reference"):
            result_fit(np.zeros((3, 8, 8)), np.zeros((8, 8, 3)), np.zeros((3, 2, 2)), settings)


# ---------------------------------------------------------------------- widgets
@pytest.fixture
def sample_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-hsisr", "sample_pair")
    return viewer


def test_previews_export_and_true_colour(sample_viewer, qtbot, tmp_path):
    from napari_hsisr._widgets.fusion_widget import FusionWidget
    from napari_hsisr.core.degradation import Degradation
    from napari_hsisr.core.io import read_cube
    from napari_hsisr.core.srf import resolve_srf

    viewer = sample_viewer
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    wl = np.asarray(viewer.layers["sample_lr_hs"].metadata["wavelengths"])

    # PSF preview follows sigma / size / sigma2 / angle
    np.testing.assert_allclose(widget.preview_kernel, Degradation(scale=8, psf_sigma=2.0).psf)
    widget.sigma_spin.setValue(3.0)
    widget.size_spin.setValue(12)
    qtbot.waitUntil(lambda: widget.preview_kernel.shape == (12, 12), timeout=3000)
    np.testing.assert_allclose(widget.preview_kernel, Degradation(scale=8, psf_sigma=3.0, psf_size=12).psf)
    widget.sigma2_spin.setValue(1.0)
    widget.angle_spin.setValue(30)
    qtbot.waitUntil(lambda: not np.allclose(widget.preview_kernel, widget.preview_kernel.T), timeout=3000)
    expected = Degradation(scale=8, psf_sigma=3.0, psf_size=12, psf_sigma2=1.0, psf_angle=30).psf
    np.testing.assert_allclose(widget.preview_kernel, expected)
    image = widget.psf_ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), expected)
    widget.size_spin.setValue(4)  # smaller than the scale: no kernel, a message instead
    qtbot.waitUntil(lambda: widget.preview_kernel is None, timeout=3000)
    widget.size_spin.setValue(0)

    # SRF preview: the sample's LR layer records the preset it was simulated through, over a float
    # (simulated) HR layer: the picker shows that preset, resampled onto the LR cube's wavelengths;
    # none while the response is to be estimated from the pair (the default otherwise)
    assert widget.srf_combo.currentText() == "Nikon D700 (CAVE fusion papers)"
    qtbot.waitUntil(lambda: widget.preview_srf is not None, timeout=3000)
    widget.srf_combo.setCurrentText("estimate from the pair")
    qtbot.waitUntil(lambda: widget.preview_srf is None, timeout=3000)
    widget.srf_combo.setCurrentText("Nikon D700 (CAVE fusion papers)")
    qtbot.waitUntil(lambda: widget.preview_srf is not None, timeout=3000)
    np.testing.assert_allclose(widget.preview_srf, resolve_srf("Nikon D700 (CAVE fusion papers)", wl, 31)[0])
    widget.srf_combo.setCurrentText("CIE 1931")
    qtbot.waitUntil(lambda: np.allclose(widget.preview_srf, resolve_srf("CIE 1931", wl, 31)[0]), timeout=3000)
    assert [ln.get_label() for ln in widget.srf_ax.get_lines()] == ["X", "Y", "Z"]
    np.testing.assert_allclose(widget.srf_ax.get_lines()[0].get_xdata(), wl)

    # export: a result-like layer (wavelengths + settings), ImageJ float32 and OME uint16
    data = np.clip(viewer.layers["sample_reference"].data[:, :64, :48], 0, 1).astype(np.float32)
    settings = {"method": "fast", "options": {"rank": 10}, "degradation": {"scale": 8}}
    viewer.add_image(data, name="cube_sr", metadata={"wavelengths": wl.tolist(), "settings": settings})
    assert widget.result_combo.currentText() == "cube_sr"
    back = read_cube(widget.save_result(tmp_path / "sr.tif"))  # combos' defaults: ImageJ, float32
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.wavelengths, wl)
    assert back.metadata["settings"]["options"]["rank"] == 10
    widget.format_combo.setCurrentIndex(widget.format_combo.findData("ome"))
    widget.dtype_combo.setCurrentIndex(widget.dtype_combo.findData("uint16"))
    back = read_cube(widget.save_result(tmp_path / "sr.ome.tif"))
    np.testing.assert_allclose(back.data, data, atol=0.5 / 65535 + 1e-7)
    np.testing.assert_allclose(back.wavelengths, wl)
    assert back.metadata["settings"]["method"] == "fast"
    assert not list(tmp_path.glob("*.tmp*"))

    # true colour of the (scaled, translated) LR cube: RGB layer on the same Y, X grid
    lr = viewer.layers["sample_lr_hs"]
    widget.result_combo.setCurrentText("sample_lr_hs")
    tc = widget.add_truecolour()
    assert tc.name == "sample_lr_hs_truecolour" and tc.rgb and tc.data.shape == (32, 32, 3)
    assert 0 <= tc.data.min() and tc.data.max() <= 1
    np.testing.assert_allclose(tc.scale, lr.scale[-2:])
    np.testing.assert_allclose(tc.translate, lr.translate[-2:])
    widget.colour_combo.setCurrentText("selected SRF")  # CIE 1931 chosen above; then a camera
    widget.srf_combo.setCurrentText("Nikon D700 (CAVE fusion papers)")
    n = len(viewer.layers)
    again = widget.add_truecolour()
    assert again is tc and len(viewer.layers) == n and tc.metadata["srf"].startswith("Nikon")
    # false colour from three chosen wavelengths; the bands nearest to them, each stretched
    widget.colour_combo.setCurrentText("false colour (nm)")
    widget.false_colour_edit.setText("700, 551, 400")
    fc = widget.add_truecolour()
    assert fc.name == "sample_lr_hs_falsecolour" and fc.rgb and fc.data.shape == (32, 32, 3)
    assert fc.metadata["wavelengths_rgb"] == [700.0, 550.0, 400.0]
    np.testing.assert_allclose(fc.translate, lr.translate[-2:])
    red = np.asarray(lr.data[-1], np.float64)
    assert np.corrcoef(fc.data[..., 0].ravel(), red.ravel())[0, 1] > 0.99
    assert fc.data.min() == 0 and fc.data.max() == 1
    widget.false_colour_edit.setText("1600, 650, 550")  # beyond the cube: said, nothing added
    n = len(viewer.layers)
    assert widget.add_truecolour() is None and len(viewer.layers) == n


def test_false_colour_parsing():
    from napari_hsisr._widgets._truecolour import parse_wavelength_triplet
    from napari_hsisr.core.errors import InputError

    assert parse_wavelength_triplet("860, 650 550") == (860.0, 650.0, 550.0)
    for bad in ("860, 650", "a, b, c", "860, nan, 550"):
        with pytest.raises(InputError):
            parse_wavelength_triplet(bad)


def _register_preview_method():
    from napari_hsisr.core.methods import base
    from napari_hsisr.core.methods.base import MethodInfo, Progress

    def with_previews(inputs):
        C, (Y, X) = inputs.lr.shape[0], inputs.hr.shape[-2:]
        for i in range(12):
            time.sleep(0.01)
            yield Progress(i + 1, 12, message="preview", preview=np.full((C, Y // 8, X // 8), i, np.float32))
        return np.ones((C, Y, X), np.float32)

    base.list_methods()
    base.register(MethodInfo("preview_test", with_previews, "test only: previews", needs_srf=False,
                             needs_psf=False))
    return base


def test_live_preview_layer_reused_then_removed(sample_viewer, qtbot):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    base = _register_preview_method()
    try:
        viewer = sample_viewer
        widget = FusionWidget(viewer)
        qtbot.addWidget(widget)
        widget.method_combo.setCurrentText("preview_test")
        widget.live_check.setChecked(True)
        inserted, shown = [], []

        def on_insert(event):
            inserted.append(event.value.name)
            if event.value.name == "sample_lr_hs_preview":
                layer = event.value
                shown.append(float(layer.data[0, 0, 0]))
                layer.events.data.connect(lambda e: shown.append(float(layer.data[0, 0, 0])))

        viewer.layers.events.inserted.connect(on_insert)
        assert widget.run()
        qtbot.waitUntil(lambda: "sample_lr_hs_preview_test" in viewer.layers and not widget.controller.running,
                        timeout=20000)
        assert inserted.count("sample_lr_hs_preview") == 1  # one layer, reused
        assert shown[0] == 0 and shown[-1] == 11 and shown == sorted(shown)  # each preview the method sent
        assert "sample_lr_hs_preview" not in viewer.layers  # removed at the end of the run
        assert widget.result_combo.currentText() == "sample_lr_hs_preview_test"
        out = viewer.layers["sample_lr_hs_preview_test"]
        assert out.metadata["inputs"] == {"hr": "sample_rgb", "lr": "sample_lr_hs"}
    finally:
        base._REGISTRY.pop("preview_test", None)


def test_blind_estimates_are_offered_for_reuse(sample_viewer):
    """A result carrying estimated_degradation (as blind results do) becomes the known degradation."""
    from napari_hsisr._widgets._fusion_worker import build_degradation
    from napari_hsisr._widgets.fusion_widget import ESTIMATED, FusionWidget
    from napari_hsisr.core.psf import gaussian_psf

    widget = FusionWidget(sample_viewer)
    psf = gaussian_psf(12, 2.5, 1.5, 30)
    srf = np.random.default_rng(1).random((31, 3))
    srf /= srf.sum(0)
    layer = sample_viewer.add_image(np.zeros((31, 256, 256), np.float32), name="blind_sr", metadata={
        "settings": {"estimated_degradation": {"psf_kernel": psf.tolist(), "srf_matrix": srf.tolist()}}})
    assert not widget.use_estimate_button.isVisibleTo(widget)
    assert widget.remember_estimates(layer)
    assert widget.use_estimate_button.isVisibleTo(widget)
    widget.use_estimated_degradation()
    assert widget.psf_combo.currentText() == ESTIMATED and widget.srf_combo.currentText() == ESTIMATED
    assert widget.method_combo.currentText() == "fast"
    deg = build_degradation(widget.request())
    np.testing.assert_allclose(deg.psf, psf)
    np.testing.assert_allclose(deg.srf, srf)
    assert not widget.remember_estimates(sample_viewer.layers["sample_rgb"])  # nothing to offer


def test_probe_sam_and_rmse_against_reference(sample_viewer, qtbot):
    from napari_hsisr._widgets.spectrum_widget import SpectrumWidget, probe_errors

    viewer = sample_viewer
    ref = viewer.layers["sample_reference"]
    tilt = np.linspace(0.5, 1.5, 31, dtype=np.float32)[:, None, None]
    other = viewer.add_image(ref.data * tilt, name="tilted")  # a known spectral distortion
    point = np.array([0, 100.0, 60.0])
    errs = probe_errors([ref, other, viewer.layers["sample_rgb"]], ref, point)
    assert set(errs) == {"tilted"}  # the reference itself and non-cubes are skipped
    b = ref.data[:, 100, 60].astype(float)
    a = b * tilt.ravel()
    sam = np.degrees(np.arccos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1)))
    assert sam > 1
    assert errs["tilted"][0] == pytest.approx(sam, rel=1e-5)
    assert errs["tilted"][1] == pytest.approx(np.sqrt(np.mean((a - b) ** 2)), rel=1e-5)
    # widget: the reference is picked by name and each probe gets a line
    widget = SpectrumWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.reference_combo.currentText() == "sample_reference"
    widget.probes_layer().add([[0, 100, 60]])
    qtbot.waitUntil(lambda: "probe 1 tilted: SAM" in widget.errors_label.text(), timeout=3000)
    widget.reference_combo.setCurrentText("none")
    widget.redraw()
    assert widget.errors_label.text() == ""
