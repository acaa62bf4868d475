"""napari integration: manifest, sample data, reader and writer through a real viewer (Xvfb)."""

import numpy as np
import pytest


def test_manifest_validates_and_imports():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-hsisr")
    manifest.validate_imports()  # what `npe2 validate napari-hsisr --imports` checks
    contrib = manifest.contributions
    assert contrib.readers and contrib.writers and contrib.sample_data


def test_sample_layers_are_aligned(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-hsisr", "sample_pair")
    by_name = {layer.name: layer for layer in layers}
    rgb, lr = by_name["sample_rgb"], by_name["sample_lr_hs"]
    assert rgb.rgb and lr.data.shape == (31, 32, 32)
    np.testing.assert_allclose(lr.scale[-2:], [8, 8])
    # LR pixel (0, 0) covers HR pixels 0..7: its centre maps to world 3.5
    np.testing.assert_allclose(lr.data_to_world((0, 0, 0))[-2:], [3.5, 3.5])
    assert len(lr.metadata["wavelengths"]) == 31


def test_reader_and_writer_roundtrip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    cube = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    wl = [450.0, 500.0, 550.0, 600.0, 650.0]
    viewer.add_image(cube, name="cube", metadata={"wavelengths": wl, "settings": {"method": "fast"}})
    path = tmp_path / "cube.tif"
    viewer.layers.save(str(path), plugin="napari-hsisr")
    assert path.exists()
    layers = viewer.open(str(path), plugin="napari-hsisr")
    np.testing.assert_allclose(layers[0].data, cube)
    np.testing.assert_allclose(layers[0].metadata["wavelengths"], wl)


def test_reader_opens_an_ome_zarr_result_as_a_multiscale_layer(make_napari_viewer, tmp_path, monkeypatch):
    """A large result (here a small one with the pyramid threshold lowered) is a dask-backed
    multiscale layer: napari reads the level that fits the zoom."""
    from napari_hsisr.core.io import ome_zarr as io

    monkeypatch.setattr(io, "PYRAMID_MIN", 32)
    cube = np.random.default_rng(0).random((4, 64, 64)).astype(np.float32)
    io.write_zarr(cube, tmp_path / "big.zarr", wavelengths=[450, 500, 550, 600], settings={"method": "fast"})
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "big.zarr"), plugin="napari-hsisr")
    assert layer.multiscale and [lv.shape for lv in layer.data] == [(4, 64, 64), (4, 32, 32), (4, 16, 16)]
    np.testing.assert_array_equal(np.asarray(layer.data[0]), cube)
    assert layer.metadata["wavelengths"] == [450.0, 500.0, 550.0, 600.0]


def test_reader_declines_unknown_files(tmp_path):
    from napari_hsisr._reader import napari_get_reader

    (tmp_path / "notes.txt").write_text("hello")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path / "absent.tif")) is None


def test_menu_actions_open_a_cave_folder_and_save_with_wavelengths(make_napari_viewer, tmp_path):
    """File > IO Utilities: a CAVE folder opens with this plugin's reader (no reader question), and
    'Save cube with wavelengths' keeps them (napari's own TIFF writer, listed first, drops them)."""
    import imageio.v3 as iio

    from napari_hsisr._widgets._menu_actions import open_cube, save_cube
    from napari_hsisr.core.io import read_cube

    folder = tmp_path / "toy_ms" / "toy_ms"
    folder.mkdir(parents=True)
    for n in range(1, 6):
        iio.imwrite(folder / f"toy_ms_{n:02d}.png", np.full((8, 8), 1000 * n, np.uint16))
    viewer = make_napari_viewer()
    layers = open_cube(viewer, str(tmp_path / "toy_ms"))
    assert len(layers) == 1 and layers[0].data.shape == (5, 8, 8)
    np.testing.assert_allclose(layers[0].metadata["wavelengths"], [400, 410, 420, 430, 440])
    viewer.layers.selection.active = layers[0]
    out = save_cube(viewer, str(tmp_path / "saved.tif"))
    back = read_cube(out)
    np.testing.assert_allclose(back.wavelengths, [400, 410, 420, 430, 440])
    manifest_menus = __import__("npe2").PluginManifest.from_distribution("napari-hsisr").contributions.menus
    assert "napari/file/io_utilities" in manifest_menus and "napari/layers/context" in manifest_menus
