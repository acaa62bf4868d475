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
