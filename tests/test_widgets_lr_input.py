"""The Fusion dock's LR input controls (issue 23): value scale, band table and band drop as
hsisr fuse takes them, applied to a copy of the layer."""

import numpy as np
import pytest

pytest.importorskip("qtpy")


def test_dock_scales_and_drops_bands_as_the_cli_does(make_napari_viewer, qtbot, tmp_path):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    viewer = make_napari_viewer()
    rgb = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    lr = (np.random.default_rng(1).random((6, 8, 8)) * 5000 + 1000).astype(np.float32)  # reflectance x 10000
    viewer.add_image(rgb, name="hr", rgb=True)
    lr_layer = viewer.add_image(lr.copy(), name="lr", metadata={"bad_bands": [4]})
    table = tmp_path / "bands.csv"
    table.write_text("band,nanometer,noise\n" + "".join(f"{i + 1},{0.45 + 0.05 * i:.2f},{int(i == 1)}\n"
                                                         for i in range(6)))
    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    lr_input = widget.data_view.lr_input
    lr_input.value_scale.setText("1e-4")
    lr_input.band_table.setText(str(table))
    lr_input.drop_bands.setText("auto")  # the table's noisy band 2 (the table's flags replace the layer's)
    widget.method_combo.setCurrentText("bicubic")
    assert widget.run()
    qtbot.waitUntil(lambda: "lr_bicubic" in viewer.layers, timeout=30000)
    qtbot.waitUntil(lambda: not widget.controller.running, timeout=30000)  # the layer comes before the worker ends
    result = viewer.layers["lr_bicubic"]
    assert result.data.shape == (5, 32, 32) and float(np.max(result.data)) < 1  # reflectance, one band dropped
    np.testing.assert_allclose(result.metadata["wavelengths"], [450, 550, 600, 650, 700])
    np.testing.assert_array_equal(lr_layer.data, lr)  # the layer itself is left as it was
    assert "bad_bands" not in result.metadata
    lr_input.drop_bands.setText("x-1")
    assert not widget.run()
    lr_input.band_table.setText("")
    lr_input.drop_bands.setText("1")
    assert widget.run()
    qtbot.waitUntil(lambda: "lr_bicubic[1]" in viewer.layers, timeout=30000)
    assert viewer.layers["lr_bicubic[1]"].metadata["bad_bands"] == [3]  # the layer's noisy band 5, renumbered


def test_spectrum_plot_skips_the_noisy_bands(make_napari_viewer):
    from napari_hsisr._widgets.spectrum_widget import without_bad_bands

    viewer = make_napari_viewer()
    layer = viewer.add_image(np.ones((5, 4, 4), np.float32), metadata={"bad_bands": [1, 3]})
    shown = without_bad_bands(np.arange(5.0), layer)
    assert np.isnan(shown[[1, 3]]).all() and shown[[0, 2, 4]].tolist() == [0, 2, 4]


def test_quality_band_plot_skips_the_reference_noisy_bands(make_napari_viewer, qtbot, evaluate_quality):
    from napari_hsisr._widgets.quality_widget import QualityWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    ref = rng.random((6, 16, 16)).astype(np.float32)
    viewer.add_image(ref, name="reference", metadata={"wavelengths": np.arange(6) * 50.0 + 400, "bad_bands": [2, 5]})
    viewer.add_image(ref + rng.normal(0, 0.01, ref.shape).astype(np.float32), name="result")
    widget = QualityWidget(viewer)
    qtbot.addWidget(widget)
    widget.result_combo.setCurrentText("result")
    widget.reference_combo.setCurrentText("reference")
    assert evaluate_quality(widget)["psnr"] > 30
    for line in widget.band_ax.get_lines() + widget.band_ax.right_ax.get_lines():
        y = np.asarray(line.get_ydata(), float)
        assert np.isnan(y[[2, 5]]).all() and np.isfinite(y[[0, 1, 3, 4]]).all(), line.get_label()
