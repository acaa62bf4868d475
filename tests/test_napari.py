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


def test_reader_declines_unknown_files(tmp_path):
    from napari_hsisr._reader import napari_get_reader

    (tmp_path / "notes.txt").write_text("hello")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path / "absent.tif")) is None
