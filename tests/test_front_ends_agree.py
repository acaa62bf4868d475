"""The docks agree with the core and the CLI: Quality's no-reference figures are the fit report,
its values survive layer changes, the PSF sigma default, pairing, readers, no warnings."""

import numpy as np
import pytest

pytest.importorskip("qtpy")


@pytest.fixture(scope="module")
def small_pair():
    import napari_hsisr as hsisr

    return hsisr.sample_pair(96)


def _quality_on(viewer, qtbot, result, hr, lr, hr_name="hr"):
    from napari_hsisr._widgets.quality_widget import QualityWidget

    viewer.add_image(hr, name=hr_name, rgb=True)
    viewer.add_image(lr, name="lr", metadata={"wavelengths": list(range(400, 701, 10))})
    viewer.add_image(result.cube, name="lr_fast", metadata={"settings": result.settings,
                                                            "inputs": {"hr": hr_name, "lr": "lr"}})
    widget = QualityWidget(viewer)
    qtbot.addWidget(widget)
    assert (widget.result_combo.currentText(), widget.hr_combo.currentText()) == ("lr_fast", hr_name)
    return widget


@pytest.mark.parametrize("method, eight_bit", [("blind", False), ("fast", True)])
def test_quality_shows_the_fit_report(make_napari_viewer, qtbot, evaluate_quality, small_pair, method, eight_bit):
    """A blind result (its estimated PSF and response) and a result of an 8-bit HR image (decoded,
    gains and offsets fitted): Quality's figures are settings['fit'], written the same way."""
    import napari_hsisr as hsisr
    from napari_hsisr._widgets._fusion_worker import fit_summary
    from napari_hsisr.core.fit_report import percent

    p = small_pair
    hr = np.round(np.clip(p.hr, 0, 1) * 255).astype(np.uint8) if eight_bit else p.hr
    kw = {"solver": "fast"} if method == "blind" else {}
    result = hsisr.fuse(hr, p.lr, p.degradation, method=method, **kw)
    widget = _quality_on(make_napari_viewer(), qtbot, result, hr, p.lr)
    got = evaluate_quality(widget)
    fit = result.settings["fit"]
    assert got["lr_fit"] == pytest.approx(fit["lr"]["relative"], abs=1e-5)
    assert got["hr_fit"] == pytest.approx(fit["hr"]["relative"], abs=1e-5)
    shown = [widget.table.item(i, 1).text() for i in range(2)]
    assert shown == [percent(fit["lr"]["relative"]), percent(fit["hr"]["relative"])]
    assert all(text in fit_summary(result.settings) for text in shown)  # the Fusion dock's status line


def test_quality_values_persist_across_layer_changes(make_napari_viewer, qtbot, evaluate_quality, small_pair):
    import napari_hsisr as hsisr

    p = small_pair
    result = hsisr.fuse(p.hr, p.lr, p.degradation, method="fast")
    viewer = make_napari_viewer()
    widget = _quality_on(viewer, qtbot, result, p.hr, p.lr)
    evaluate_quality(widget)
    shown = widget.table.item(0, 1).text()
    assert shown
    viewer.add_points(np.zeros((1, 2)), name="probes")  # e.g. Pin probes, Add SAM map
    viewer.add_image(np.zeros((8, 8)), name="sam")
    viewer.layers.remove("sam")
    assert widget.table.item(0, 1).text() == shown and widget.metrics
    widget.lr_combo.setCurrentText("lr_fast")  # another input chosen: the figures no longer apply
    assert widget.table.item(0, 1).text() == ""
    widget.lr_combo.setCurrentText("lr")
    assert widget.table.item(0, 1).text() == shown


def _ours(warning) -> bool:
    """A warning the plugin causes: raised from its code, or naming its private attributes."""
    return "napari_hsisr" in str(warning.filename) or "hsisr" in str(warning.message)


def test_no_future_or_deprecation_warnings_from_the_plugin(make_napari_viewer, qtbot):
    """The three docks over the sample, the band slider moved, a fusion run: napari 0.10 removes
    private attributes set on a Viewer (they used to warn 20-25 times a run)."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        viewer = make_napari_viewer()
        # as napari adds them: each dock gets the viewer behind napari's public-only proxy
        docks = [viewer.window.add_plugin_dock_widget("napari-hsisr", name)[1]
                 for name in ("Fusion", "Spectrum probe", "Quality")]
        viewer.open_sample("napari-hsisr", "sample_pair")
        for band in (3, 10, 20):
            viewer.dims.set_point(0, band)
        viewer.layers.selection.active = viewer.layers["sample_rgb"]
        fusion = docks[0]
        assert type(fusion).__name__ == "FusionWidget" and fusion.run()
        qtbot.waitUntil(lambda: not fusion.controller.running, timeout=60000)
        viewer.layers.remove("sample_reference")
    bad = [w for w in seen if issubclass(w.category, (FutureWarning, DeprecationWarning)) and _ours(w)]
    assert bad == [], [f"{w.category.__name__}: {w.message}" for w in bad]


def test_dock_psf_sigma_follows_the_scale_until_edited(make_napari_viewer, qtbot):
    """As the CLI (and Degradation): sigma = scale/4 by default; a sigma the user typed stays."""
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = make_napari_viewer()
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    viewer.add_image(np.zeros((256, 256, 3), np.float32), name="hr", rgb=True)
    viewer.add_image(np.zeros((31, 8, 8), np.float32), name="lr", metadata={"wavelengths": list(range(400, 701, 10))})
    assert widget.scale_spin.value() == 32 and widget.sigma_spin.value() == 8.0  # inferred x32: CLI's 8, not 2
    widget.scale_spin.setValue(4)
    assert widget.sigma_spin.value() == 1.0
    widget.sigma_spin.setValue(1.5)  # the user's choice
    widget.scale_spin.setValue(16)
    assert widget.sigma_spin.value() == 1.5 and widget.request().psf_sigma == 1.5


def test_dock_prefers_a_cube_smaller_than_the_hr_image(make_napari_viewer, qtbot):
    """HR, a full-resolution reference cube (CAVE's 512x512, no 'reference' in its name) and the
    LR cube, in any order: the LR combo shows the cube coarser than the HR image."""
    from napari_hsisr._widgets.fusion_widget import FusionWidget
    from napari_hsisr._widgets.quality_widget import QualityWidget

    wl = {"wavelengths": list(range(400, 701, 10))}
    for order in (("hr", "flowers_ms", "lr"), ("flowers_ms", "lr", "hr"), ("lr", "flowers_ms", "hr")):
        viewer = make_napari_viewer()
        fusion, quality = FusionWidget(viewer), QualityWidget(viewer)
        qtbot.addWidget(fusion)
        qtbot.addWidget(quality)
        for name in order:
            if name == "hr":
                viewer.add_image(np.zeros((64, 64, 3), np.float32), name="hr", rgb=True)
            else:
                viewer.add_image(np.zeros((31, 64 if name == "flowers_ms" else 8, 64 if name == "flowers_ms" else 8),
                                          np.float32), name=name, metadata=wl)
        assert fusion.lr_combo.currentText() == "lr", order
        assert fusion.scale_spin.value() == 8 and quality.lr_combo.currentText() == "lr", order
    fusion.lr_combo.setCurrentText("flowers_ms")  # the user's own choice stays when a layer arrives
    viewer.add_points(np.zeros((1, 2)))
    assert fusion.lr_combo.currentText() == "flowers_ms"


def test_tiff_opened_by_napari_keeps_its_wavelengths(make_napari_viewer, qtbot, tmp_path):
    """``viewer.open(path)`` uses napari's own reader (plugin='napari' is its default): the docks
    still find the wavelengths the file carries; ``plugin='napari-hsisr'`` gives them in metadata."""
    from napari_hsisr._widgets import _layers
    from napari_hsisr.core.io import write_tiff

    wl = np.arange(400, 701, 10.0)
    path = tmp_path / "cube.tif"
    write_tiff(path, np.random.default_rng(0).random((31, 16, 16)).astype(np.float32), wavelengths=wl)
    viewer = make_napari_viewer()
    theirs = viewer.open(str(path))[0]
    assert "wavelengths" not in theirs.metadata  # napari's reader: pixels only
    np.testing.assert_allclose(_layers.layer_wavelengths(theirs), wl)
    ours = viewer.open(str(path), plugin="napari-hsisr")[0]
    np.testing.assert_allclose(ours.metadata["wavelengths"], wl)
    scaled = tmp_path / "scaled.tif"  # stored as scaled uint16: napari's raw integers are not the cube
    write_tiff(scaled, np.random.default_rng(0).random((31, 16, 16)).astype(np.float32), wavelengths=wl,
               dtype="uint16")
    assert _layers.layer_wavelengths(viewer.open(str(scaled))[0]) is None


# ---------------------------------------------------------------------- progress and previews
def _steps_of(gen):
    seen = []
    while True:
        try:
            seen.append(next(gen))
        except StopIteration as stop:
            return seen, stop.value


def test_progress_is_monotone_across_stages(small_pair):
    """blind's estimation (1..8) then its solver, a tiled run's scene context then its tiles: one
    counter that never goes back and ends at its total."""
    import napari_hsisr as hsisr
    from napari_hsisr.core.api import fuse_iter

    p = small_pair
    for method, tile, opts in (("blind", None, {"solver": "fast"}), ("fast", 48, {})):
        seen, result = _steps_of(fuse_iter(p.hr, p.lr, p.degradation, method, 0, "cpu", tile=tile, **opts))
        steps = [q.step for q in seen]
        assert isinstance(result, hsisr.FusionResult) and steps == sorted(steps), (method, steps)
        assert seen[-1].step == seen[-1].total and all(q.step <= q.total for q in seen if q.total), method


def test_lr_residual_reads_sensibly_on_a_noise_free_pair():
    from napari_hsisr.core.methods.unsupervised import residual_text

    assert residual_text(1e-8, 2100568.83) == "LR residual 0.01 %"  # not "2100568.83 x noise"
    assert residual_text(0.0004, 3.5) == "LR residual 2.00 %, 3.50 x noise"
    assert residual_text(0.0004, 0.9).endswith("at the noise level")


def test_worker_says_the_setup_stage_first(small_pair):
    from napari_hsisr._widgets._fusion_worker import SETUP_MESSAGE, fusion_steps

    p = small_pair
    first = next(fusion_steps(p.hr, p.lr, p.degradation, "gsa", 0, "cpu", {}))
    assert first.message == SETUP_MESSAGE and first.total == 0


def test_activity_reports_never_nest():
    """napari's activity bar processes Qt events while it updates, which delivers the queued
    reports inside this one: they must neither recurse (RecursionError) nor hold the caller."""
    from napari_hsisr._widgets._fusion_worker import FusionController
    from napari_hsisr.core.methods import Progress

    controller = FusionController(viewer=None)
    queued = [Progress(i, 5000, message=f"step {i}") for i in range(2, 5000)]

    class Bar:  # what napari's progress does: every update runs the event loop (here: the queued reports)
        total, n, desc = 0, 0, ""

        def update(self, k):
            self.n += k
            while queued:
                controller._report_activity(queued.pop(0))

        def set_description(self, text):
            self.desc = text

    controller.activity = Bar()
    controller._report_activity(Progress(1, 5000, message="step 1"))
    assert not queued and controller.activity.n == 4999  # counted, without nesting
    controller._report_activity(Progress(5000, 5000, message="step 5000"))  # the next report catches up
    assert controller.activity.n == 5000 and controller.activity.desc.endswith("step 5000")


def test_dock_says_why_there_is_no_live_preview(make_napari_viewer, qtbot, monkeypatch):
    from napari_hsisr._widgets.fusion_widget import FusionWidget
    from napari_hsisr.core import memory

    viewer = make_napari_viewer()
    viewer.open_sample("napari-hsisr", "sample_pair")
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    widget.live_check.setChecked(True)
    widget.method_combo.setCurrentText("gsa")  # one step: no intermediate estimate
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.controller.running, timeout=60000)
    assert "no live preview: the method gave no intermediate estimate" in widget.progress_label.text()
    monkeypatch.setattr(memory, "fits", lambda *a, **k: False)  # a scene too large: fused in tiles
    assert "tile by tile" in widget._no_preview_reason(widget.request())
