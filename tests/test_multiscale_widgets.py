"""The docks on a multiscale cube layer (a large result opened from an OME-Zarr): probes, regions,
pickers, Quality, true colour and save read level 0, and only what they need of it."""

import numpy as np
import pytest

pytest.importorskip("qtpy")

WL = [450.0, 500.0, 550.0, 600.0, 650.0]


@pytest.fixture
def errors(monkeypatch):
    """Messages passed to napari.utils.notifications.show_error."""
    from napari.utils import notifications

    seen = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: seen.append(str(msg)))
    return seen


@pytest.fixture
def cube():
    return np.random.default_rng(0).random((5, 64, 64)).astype(np.float32)


@pytest.fixture
def ms_viewer(make_napari_viewer, tmp_path, monkeypatch, cube):
    """A viewer with ``big`` (a 2-level OME-Zarr result read by our reader) and ``mem`` (the same
    cube in memory)."""
    from napari_hsisr.core.io import ome_zarr as io

    monkeypatch.setattr(io, "PYRAMID_MIN", 64)  # levels 64 x 64 and 32 x 32
    settings = {"method": "fast", "degradation": {"scale": 4}}
    io.write_zarr(cube, tmp_path / "big.zarr", wavelengths=WL, settings=settings)
    viewer = make_napari_viewer()
    (big,) = viewer.open(str(tmp_path / "big.zarr"), plugin="napari-hsisr")
    assert big.multiscale and [lv.shape for lv in big.data] == [(5, 64, 64), (5, 32, 32)]
    viewer.add_image(cube.copy(), name="mem", metadata={"wavelengths": WL})
    return viewer


class Recording:
    """A level-0 array that records every read (napari's LayerDataProtocol: shape, dtype, []),
    and says when it was read whole."""

    def __init__(self, a):
        self.a, self.keys, self.whole = a, [], 0
        self.shape, self.dtype, self.ndim, self.size = a.shape, a.dtype, a.ndim, a.size

    def __getitem__(self, key):
        self.keys.append(key)
        return self.a[key]

    def __array__(self, dtype=None, copy=None):
        self.whole += 1
        return self.a if dtype is None else self.a.astype(dtype)


def _rect(y0, x0, y1, x1):
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float)


def test_probe_and_region_on_a_multiscale_layer_equal_the_in_memory_layer(ms_viewer, cube):
    from skimage.draw import polygon2mask

    from napari_hsisr._widgets import _layers
    from napari_hsisr._widgets.spectrum_widget import region_spectra, spectra_at

    big, mem = ms_viewer.layers["big"], ms_viewer.layers["mem"]
    assert _layers.is_cube(big) and not _layers.is_input_cube(big)
    np.testing.assert_allclose(_layers.layer_wavelengths(big), WL)
    for world, k in [((0, 10.2, 57.9), 1), ((0, 0.0, 63.0), 1), ((0, 31.4, 30.6), 3), ((0, 63, 0), 5)]:
        got = spectra_at([big, mem], world, k)
        np.testing.assert_array_equal(got["big"][1], got["mem"][1])
        np.testing.assert_allclose(got["big"][0], WL)
    y, x = 10, 58
    np.testing.assert_array_equal(spectra_at([big], (0, y, x))["big"][1], cube[:, y, x])
    assert spectra_at([big], (0, 70.0, 3.0)) == {}  # outside
    # regions: a rectangle and a triangle partly outside the image
    poly = np.array([[40.0, 50.0], [70.0, 40.0], [60.0, 75.0]])
    shapes = ms_viewer.add_shapes([_rect(5.2, 7.6, 20.4, 30.1), poly], shape_type=["polygon", "polygon"])
    got = {(i, name): (mean, std) for i, name, _, mean, std in region_spectra([big, mem], shapes)}
    assert set(got) == {(0, "big"), (0, "mem"), (1, "big"), (1, "mem")}
    for i, verts in enumerate([_rect(5.2, 7.6, 20.4, 30.1), poly]):
        values = cube[:, polygon2mask((64, 64), verts)].astype(np.float64)
        np.testing.assert_allclose(got[i, "big"][0], values.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(got[i, "big"][1], values.std(axis=1), rtol=1e-12)
        np.testing.assert_array_equal(got[i, "big"][0], got[i, "mem"][0])
    outside = ms_viewer.add_shapes([_rect(80, 80, 90, 95)], shape_type="polygon")
    assert region_spectra([big], outside) == []


def test_probe_and_region_read_only_their_window_of_level_0(make_napari_viewer, cube):
    from napari_hsisr._widgets.spectrum_widget import region_spectra, spectra_at

    viewer = make_napari_viewer()
    level0 = Recording(cube)
    coarse = cube.reshape(5, 32, 2, 32, 2).mean(axis=(2, 4))
    layer = viewer.add_image([level0, coarse], multiscale=True, name="rec", metadata={"wavelengths": WL})
    level0.keys.clear()  # napari's own slicing for display
    np.testing.assert_array_equal(spectra_at([layer], (0, 12, 34))["rec"][1], cube[:, 12, 34])
    assert level0.keys == [(slice(None), 12, 34)]
    level0.keys.clear()
    shapes = viewer.add_shapes([_rect(5.2, 7.6, 20.4, 30.1)], shape_type="polygon")
    ((_, _, _, mean, _),) = region_spectra([layer], shapes)
    np.testing.assert_allclose(mean, cube[:, 6:21, 8:31].mean(axis=(1, 2)), rtol=1e-6)
    assert level0.keys == [(slice(None), slice(6, 21), slice(8, 31))]  # the bounding box only
    assert level0.whole == 0


def test_multiscale_cube_is_offered_where_a_result_is_not_as_a_fusion_input(ms_viewer, qtbot):
    from napari_hsisr._widgets.fusion_widget import FusionWidget
    from napari_hsisr._widgets.quality_widget import QualityWidget
    from napari_hsisr._widgets.spectrum_widget import SpectrumWidget

    def items(combo):
        return [combo.itemText(i) for i in range(combo.count())]

    spectrum, quality, fusion = SpectrumWidget(ms_viewer), QualityWidget(ms_viewer), FusionWidget(ms_viewer)
    for w in (spectrum, quality, fusion):
        qtbot.addWidget(w)
    assert "big" in items(spectrum.reference_combo) and "big" in [lay.name for lay in spectrum.cube_layers()]
    assert quality.result_combo.currentText() == "big"  # a result (settings with a method)
    assert "big" in items(quality.reference_combo)
    assert fusion.result_combo.currentText() == "big"  # to render / save / reload its settings
    # a fusion reads its LR cube whole: the on-disk result is no LR input
    assert "big" not in items(quality.lr_combo) and "big" not in items(fusion.lr_combo)
    assert "mem" in items(fusion.lr_combo)



def test_quality_reads_level_0_and_refuses_a_result_too_large(ms_viewer, qtbot, errors, monkeypatch, cube,
                                                               evaluate_quality):
    from napari_hsisr._widgets import _layers
    from napari_hsisr._widgets.quality_widget import QualityWidget

    noisy = np.clip(cube + np.random.default_rng(1).normal(0, 0.01, cube.shape), 0, 1).astype(np.float32)
    ms_viewer.add_image(noisy, name="noisy_reference", metadata={"wavelengths": WL})
    widget = QualityWidget(ms_viewer)
    qtbot.addWidget(widget)
    widget.result_combo.setCurrentText("big")
    widget.reference_combo.setCurrentText("noisy_reference")
    m = evaluate_quality(widget)
    widget.result_combo.setCurrentText("mem")
    expected = evaluate_quality(widget)
    assert errors == [] and 30 < m["psnr"] < 50 and m == pytest.approx(expected)
    widget.result_combo.setCurrentText("big")
    sam = widget.add_sam_map()
    assert sam.data.shape == (64, 64)  # level 0's grid, not the coarsest level's
    # a multiscale result over the limit: a clear refusal, nothing read; in-memory layers are never refused
    monkeypatch.setattr(_layers, "WHOLE_READ_MAX", 5 * 64 * 64 - 1)
    assert evaluate_quality(widget) == {} and "too large to read whole for the metrics" in errors[-1]
    assert widget.add_sam_map() is None and "crop it first" in errors[-1]
    n = len(errors)
    widget.result_combo.setCurrentText("mem")
    assert evaluate_quality(widget) and len(errors) == n


def test_true_colour_and_save_of_a_multiscale_result(ms_viewer, monkeypatch, tmp_path, cube):
    from napari_hsisr._widgets import _layers
    from napari_hsisr._widgets._fusion_worker import save_layer
    from napari_hsisr._widgets._truecolour import true_colour
    from napari_hsisr._widgets.fusion_widget import truecolour_layer
    from napari_hsisr.core.errors import InputError
    from napari_hsisr.core.io import read_cube

    big = ms_viewer.layers["big"]
    rgb = truecolour_layer(ms_viewer, big)
    np.testing.assert_allclose(rgb.data, true_colour(cube, WL), atol=1e-6)  # level 0 fits: rendered whole
    assert rgb.metadata["level"] == 0 and list(rgb.scale) == [1, 1]
    save_layer(big, tmp_path / "big.tif")
    np.testing.assert_array_equal(read_cube(tmp_path / "big.tif").data, cube)
    # too large: the finest level that fits, placed over level 0 (2x2-mean pixel centres)
    monkeypatch.setattr(_layers, "WHOLE_READ_MAX", 5 * 64 * 64 - 1)
    rgb = truecolour_layer(ms_viewer, big)
    assert rgb.metadata["level"] == 1 and rgb.data.shape == (32, 32, 3)
    np.testing.assert_allclose(rgb.scale, [2, 2])
    np.testing.assert_allclose(rgb.translate, [0.5, 0.5])
    with pytest.raises(InputError, match="too large to read whole for a TIFF"):
        save_layer(big, tmp_path / "big2.tif")
