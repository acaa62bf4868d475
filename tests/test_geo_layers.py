"""Georeferenced layers in napari (issue 25 item 4): files placed on the map, the Fusion dock pairing
them by coordinates and drawing the common footprint, results that keep their georeferencing."""

import numpy as np
import pytest

pytest.importorskip("qtpy")
rasterio = pytest.importorskip("rasterio")

from test_georef import E0, N0, _cube, _rgb, _to_wgs84  # noqa: E402 - after the skips

from napari_hsisr._widgets._geo_layers import FOOTPRINT, map_to_world  # noqa: E402


@pytest.fixture
def errors(monkeypatch):
    from napari.utils import notifications

    seen = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: seen.append(str(msg)))
    return seen


def _open(viewer, *paths):
    for p in paths:
        viewer.open(str(p), plugin="napari-hsisr")
    return [viewer.layers[p.stem] for p in paths]


def _pixel(layer, easting, northing):
    world = map_to_world(layer.metadata["georef"], easting, northing)
    return tuple(int(v) for v in np.round(layer.world_to_data((0.0,) * (layer.ndim - 2) + world))[-2:])


def _dock(viewer, qtbot, method="bicubic"):
    from napari_hsisr._widgets.fusion_widget import FusionWidget

    widget = FusionWidget(viewer)
    qtbot.addWidget(widget)
    widget.method_combo.setCurrentText(method)
    return widget


def _run(widget, qtbot, name):
    assert widget.run(), widget.state.message
    qtbot.waitUntil(lambda: name in widget.viewer.layers, timeout=60000)
    qtbot.waitUntil(lambda: not widget.controller.running, timeout=60000)
    return widget.viewer.layers[name]


def test_layers_from_two_files_in_one_crs_overlay_on_the_map(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    cube_path = _cube(tmp_path)  # 8 x 8 pixels of 2 m from (E0 + 10, N0 - 10)
    rgb_path, _ = _rgb(tmp_path, E0, N0, 144, 0.25)  # 36 m of 0.25 m pixels from (E0, N0): covers more
    rgb, cube = _open(viewer, rgb_path, cube_path)
    assert rgb.rgb and cube.ndim == 3
    for layer in (rgb, cube):
        assert layer.metadata["georef"]["crs"] == "EPSG:32618"
    assert rgb.metadata["georef"]["world_origin"] == cube.metadata["georef"]["world_origin"]  # one CRS, one origin
    np.testing.assert_allclose(rgb.scale, (0.25, 0.25))
    np.testing.assert_allclose(cube.scale[-2:], (2.0, 2.0))
    # a map point 3.7 m east and 5.3 m south of the cube's corner: cube pixel (2, 1), RGB pixel (61, 54)
    e, n = E0 + 10 + 3.7, N0 - 10 - 5.3
    assert _pixel(cube, e, n) == (2, 1)
    assert _pixel(rgb, e, n) == (int((N0 - n) / 0.25), int((e - E0) / 0.25)) == (61, 54)
    # north is up: a point further north is on a smaller row
    assert _pixel(rgb, e, n + 1)[0] == _pixel(rgb, e, n)[0] - 4


def test_dock_fuses_a_georeferenced_pair_on_the_cube_footprint_and_keeps_the_georeferencing(
        make_napari_viewer, qtbot, tmp_path, errors):
    from napari_hsisr._writer import write_cube_tiff

    viewer = make_napari_viewer()
    rgb, cube = _open(viewer, _rgb(tmp_path, E0, N0, 144, 0.25)[0], _cube(tmp_path))
    rgb_before = np.array(rgb.data)
    widget = _dock(viewer, qtbot)
    assert (widget.hr_combo.currentText(), widget.lr_combo.currentText()) == ("rgb", "cube")
    # before Run: the ratio from the pixel sizes (locked), the overlap drawn, the pairing said
    assert widget.scale_spin.value() == 8 and not widget.scale_spin.isEnabled()
    assert "paired by map coordinates" in widget.data_view.pair_note.text()
    assert FOOTPRINT in viewer.layers
    out = _run(widget, qtbot, "cube_bicubic")
    assert not errors
    assert out.data.shape == (6, 64, 64)  # the cube's 8 x 8 pixels refined by 8, not the RGB's 144 x 144
    np.testing.assert_allclose(out.scale[-2:], (0.25, 0.25))
    # it overlays the cube: the same map point falls in result pixel 8 x the cube's (+ its place inside)
    e, n = E0 + 10 + 3.7, N0 - 10 - 5.3
    assert _pixel(out, e, n) == (int(5.3 / 0.25), int(3.7 / 0.25))
    assert _pixel(cube, e, n) == (2, 1)
    geo = out.metadata["settings"]["output_geo"]
    assert out.metadata["georef"]["transform"] == [N0 - 10, E0 + 10, -0.25, 0.25] and geo == out.metadata["geo"]
    assert "paired by map coordinates (ratio 8, EPSG:32618)" in widget.state.message
    np.testing.assert_array_equal(rgb.data, rgb_before)  # the inputs are not changed
    assert viewer.layers.index(FOOTPRINT) == len(viewer.layers) - 1  # above the result
    corners = np.asarray(viewer.layers[FOOTPRINT].data[0]) + viewer.layers[FOOTPRINT].translate
    world_nw = map_to_world(cube.metadata["georef"], E0 + 10, N0 - 10)
    np.testing.assert_allclose(corners.min(0), world_nw)
    np.testing.assert_allclose(corners.max(0) - corners.min(0), (16.0, 16.0))  # the cube's 8 x 2 m
    # saved from the dock and through the plugin's writer: GeoTIFFs a GIS places
    paths = [widget.save_result(tmp_path / "dock.tif")]
    paths += [tmp_path / "writer.tif"]
    write_cube_tiff(str(paths[1]), out.data, {"name": out.name, "metadata": out.metadata})
    for path in paths:
        with rasterio.open(path) as res:
            assert res.crs.to_epsg() == 32618 and res.shape == (64, 64) and res.count == 6
            assert res.transform.almost_equals(rasterio.Affine(0.25, 0, E0 + 10, 0, -0.25, N0 - 10))


def test_an_hr_image_in_another_crs_is_said_and_the_result_is_in_the_cubes(make_napari_viewer, qtbot, tmp_path,
                                                                             errors):
    viewer = make_napari_viewer()
    wgs = _to_wgs84(_rgb(tmp_path, E0, N0, 144, 0.25)[0], tmp_path / "wgs.tif")
    rgb, cube = _open(viewer, wgs, _cube(tmp_path))
    assert rgb.metadata["georef"]["crs"] == "EPSG:4326"
    widget = _dock(viewer, qtbot)
    note = widget.data_view.pair_note.text()
    assert "'wgs' is in EPSG:4326: shown in its own CRS, not overlaid" in note and widget.scale_spin.value() == 8
    out = _run(widget, qtbot, "cube_bicubic")
    assert not errors and out.data.shape == (6, 64, 64)
    assert "reprojected from EPSG:4326" in widget.state.message
    np.testing.assert_allclose(out.translate[-2:], np.add(map_to_world(cube.metadata["georef"], E0 + 10, N0 - 10),
                                                          0.125))


def test_no_overlap_says_so_and_leaves_no_footprint_nor_result(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    rgb, cube = _open(viewer, _rgb(tmp_path, E0 + 500, N0, 64, 0.25)[0], _cube(tmp_path))
    widget = _dock(viewer, qtbot)
    assert "do not overlap" in widget.data_view.pair_note.text()
    assert FOOTPRINT not in viewer.layers
    assert not widget.run()
    assert errors and "do not overlap" in errors[-1] and len(errors[-1].splitlines()) == 1
    assert FOOTPRINT not in viewer.layers and "cube_bicubic" not in viewer.layers


def test_the_footprint_is_replaced_and_goes_with_a_plain_pair(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    part = tmp_path / "part"
    part.mkdir()
    # an HR image over the cube's north-west quarter only: the footprint, then the run, keep 4 x 4 cube pixels
    rgb, cube = _open(viewer, _rgb(part, E0 + 10, N0 - 10, 64, 0.125, name="half.tif")[0], _cube(tmp_path))
    widget = _dock(viewer, qtbot)
    assert widget.scale_spin.value() == 16
    corners = np.asarray(viewer.layers[FOOTPRINT].data[0])
    np.testing.assert_allclose(corners.max(0) - corners.min(0), (8.0, 8.0))
    out = _run(widget, qtbot, "cube_bicubic")
    assert out.data.shape == (6, 64, 64) and "cube cropped to the HR image's footprint: 4x4 of 8x8" in \
        widget.state.message
    assert sum(isinstance(lay, type(viewer.layers[FOOTPRINT])) for lay in viewer.layers) == 1
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="plain", rgb=True)
    widget.hr_combo.setCurrentText("plain")
    assert FOOTPRINT not in viewer.layers and widget.scale_spin.isEnabled()


def test_a_file_without_crs_does_not_give_its_origin_to_another_crs(monkeypatch):
    """A no-CRS file opened first (another test, an earlier file) must not put a WGS84 layer at a
    UTM origin (degrees minus 4.7e6: napari's sliders overflow)."""
    from napari_hsisr._widgets import _geo_layers

    monkeypatch.setattr(_geo_layers, "_ORIGINS", [])
    utm = _geo_layers.world_origin(None, [4699078.4, 726491.0, -1.0, 1.0])
    assert _geo_layers.world_origin("EPSG:4326", [42.4, -72.2, -2.6e-6, 2.6e-6]) != utm
    assert _geo_layers.world_origin(None, [4699000.0, 726400.0, -0.1, 0.1]) == utm  # no CRS: the first origin
