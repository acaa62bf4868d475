from pathlib import Path

import numpy as np
import pytest

from napari_hsisr._reader import napari_get_reader, read_layers
from napari_hsisr._writer import write_cube_tiff
from napari_hsisr.core.errors import InputError
from napari_hsisr.core.io import (
    BandTable,
    CubeFile,
    ImageFile,
    geo_transform,
    read_band_table,
    read_cube,
    read_image,
    read_image_file,
    to_jsonable,
    write_tiff,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CAVE = SHARED / "cave" / "complete_ms_data"
SETTINGS = {"method": "fast", "scale": 4, "srf": "Nikon D700", "nested": {"a": [1, 2.5]}}


def _cube(rng, c=6, y=9, x=11):
    return rng.random((c, y, x)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["imagej", "ome"])
@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_tiff_roundtrip(tmp_path, rng, fmt, dtype):
    cube = _cube(rng)
    wl = np.linspace(400.5, 700, cube.shape[0])
    out = write_tiff(tmp_path / f"c.{fmt}.tif", cube, wl, SETTINGS, format=fmt, dtype=dtype)
    cf = read_cube(out)
    assert isinstance(cf, CubeFile)
    assert cf.data.shape == cube.shape and cf.data.dtype == np.float32
    tol = 0 if dtype == "float32" else 0.5 / 65535 + 1e-7
    np.testing.assert_allclose(cf.data, cube, atol=tol, rtol=0)
    np.testing.assert_array_equal(cf.wavelengths, wl)
    assert cf.metadata["settings"] == SETTINGS
    assert cf.metadata["format"] == ("ome-tiff" if fmt == "ome" else "tiff")


def test_tiff_numpy_settings_and_single_band(tmp_path, rng):
    settings = {"arr": np.arange(3), "f": np.float32(0.5), "i": np.int64(2), "b": np.bool_(True)}
    cube = rng.random((1, 5, 7))
    cf = read_cube(write_tiff(tmp_path / "one.tif", cube, [550.0], settings))
    assert cf.data.shape == (1, 5, 7)
    assert cf.metadata["settings"] == {"arr": [0, 1, 2], "f": 0.5, "i": 2, "b": True}
    assert to_jsonable({"x": (np.float64(1.0),)}) == {"x": [1.0]}


def test_uint16_scales_instead_of_clipping(tmp_path):
    """uint16 maps the values onto 0..65535 and records how: reading back gives the values written
    (to half a step), however far they go below 0 or above 1; 0..1 keeps its 1/65535 step."""
    import tifffile

    cube = np.array([[[-0.2, 0.5], [1.0, 1.7]]], dtype=np.float32)
    cf = read_cube(write_tiff(tmp_path / "c.tif", cube, dtype="uint16"))
    step = 1.9 / 65535
    np.testing.assert_allclose(cf.data[0], cube[0], atol=step / 2 + 1e-7)
    assert cf.metadata["value_scale"] == pytest.approx(step) and cf.metadata["value_offset"] == pytest.approx(-0.2)
    assert cf.wavelengths is None
    physical = np.linspace(0, 5000, 7 * 9 * 3, dtype=np.float32).reshape(3, 7, 9)  # radiance, not 0..1
    back = read_cube(write_tiff(tmp_path / "p.tif", physical, dtype="uint16")).data
    assert np.unique(back).size == physical.size and np.abs(back - physical).max() <= 5000 / 65535
    unit = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    write_tiff(tmp_path / "u.tif", unit, dtype="uint16")
    assert np.ravel(tifffile.imread(tmp_path / "u.tif")).tolist() == [0, 32768, 65535]


def test_input_not_modified_and_nan_refused(tmp_path, rng):
    cube = _cube(rng).astype(np.float64) * 2
    before = cube.copy()
    write_tiff(tmp_path / "a.tif", cube, dtype="uint16")
    np.testing.assert_array_equal(cube, before)
    cube[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_tiff(tmp_path / "b.tif", cube)
    assert not (tmp_path / "b.tif").exists()
    with pytest.raises(InputError):
        write_tiff(tmp_path / "c.tif", before, wavelengths=[1, 2])


def test_atomic_write(tmp_path, rng, monkeypatch):
    import tifffile

    real = tifffile.imwrite

    def broken(path, *a, **k):
        Path(path).write_bytes(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    target = tmp_path / "out.tif"
    with pytest.raises(OSError):
        write_tiff(target, _cube(rng))
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    # an existing target is left unchanged
    monkeypatch.setattr(tifffile, "imwrite", real)
    write_tiff(target, _cube(rng))
    content = target.read_bytes()
    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError):
        write_tiff(target, _cube(rng) + 1, format="ome")
    assert target.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_truncated_tiff(tmp_path, rng):
    p = write_tiff(tmp_path / "t.tif", _cube(rng, 4, 64, 64))
    data = p.read_bytes()
    bad = tmp_path / "trunc.tif"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="trunc.tif"):
        read_cube(bad)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="junk.tif"):
        read_cube(tmp_path / "junk.tif")


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(InputError, match="nope.tif"):
        read_cube(tmp_path / "nope.tif")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="a.txt"):
        read_cube(tmp_path / "a.txt")


def test_plain_tiff_layouts(tmp_path, rng):
    import tifffile

    tifffile.imwrite(tmp_path / "g.tif", rng.random((8, 9)).astype(np.float32))
    assert read_cube(tmp_path / "g.tif").data.shape == (1, 8, 9)
    rgb = (rng.random((8, 9, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    cf = read_cube(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(cf.data, np.moveaxis(rgb, -1, 0))
    cube = rng.random((5, 8, 9)).astype(np.float32)
    tifffile.imwrite(tmp_path / "c.tif", cube)
    np.testing.assert_array_equal(read_cube(tmp_path / "c.tif").data, cube)


def test_ome_channel_wavelengths_from_other_writers(tmp_path, rng):
    import tifffile

    cube = _cube(rng, 3)
    tifffile.imwrite(tmp_path / "x.ome.tif", cube, ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["450nm", "550 nm", "650.5 nm"]}})
    cf = read_cube(tmp_path / "x.ome.tif")
    np.testing.assert_array_equal(cf.wavelengths, [450, 550, 650.5])
    np.testing.assert_array_equal(cf.data, cube)


def test_envi_roundtrip(tmp_path, rng):
    from spectral import envi

    cube = _cube(rng, 5, 7, 8)
    hdr = tmp_path / "e.hdr"
    envi.save_image(str(hdr), np.moveaxis(cube, 0, -1), dtype=np.float32, force=True,
                    metadata={"wavelength": [0.4, 0.5, 0.6, 0.7, 0.8],
                              "wavelength units": "Micrometers"})
    cf = read_cube(hdr)
    np.testing.assert_array_equal(cf.data, cube)
    np.testing.assert_allclose(cf.wavelengths, [400, 500, 600, 700, 800])


def test_mat_v5(tmp_path, rng):
    import scipy.io

    yxc = rng.random((7, 8, 5))
    scipy.io.savemat(tmp_path / "a.mat", {"cube": yxc, "small": np.ones((2, 2)),
                                          "wavelengths": np.arange(5) * 10 + 400.0})
    cf = read_cube(tmp_path / "a.mat")
    np.testing.assert_array_equal(cf.data, np.moveaxis(yxc, -1, 0))
    np.testing.assert_array_equal(cf.wavelengths, [400, 410, 420, 430, 440])
    with pytest.raises(InputError, match=r"small.*\(2, 2\)"):
        read_cube(tmp_path / "a.mat", variable="small")


def test_mat_2d_needs_shape_and_ambiguous(tmp_path, rng):
    import scipy.io

    scipy.io.savemat(tmp_path / "m.mat", {"Y": rng.random((6, 20))})
    with pytest.raises(InputError, match="nRow"):
        read_cube(tmp_path / "m.mat")
    scipy.io.savemat(tmp_path / "two.mat", {"a": rng.random((4, 5, 3)), "b": rng.random((4, 5, 3))})
    with pytest.raises(InputError, match="variable"):
        read_cube(tmp_path / "two.mat")
    np.testing.assert_array_equal(read_cube(tmp_path / "two.mat", "b").data.shape, (3, 4, 5))
    with pytest.raises(InputError, match="'zz'"):
        read_cube(tmp_path / "two.mat", "zz")


def test_mat_unmixing_layout(tmp_path, rng):
    import scipy.io

    yxc = rng.random((4, 5, 6))  # rows=4, cols=5, bands=6
    y = yxc.reshape(20, 6, order="F").T  # bands x pixels, column-major pixels
    scipy.io.savemat(tmp_path / "u.mat", {"Y": y, "nRow": 4.0, "nCol": 5.0})
    cf = read_cube(tmp_path / "u.mat")
    np.testing.assert_array_equal(cf.data, np.moveaxis(yxc, -1, 0))


def test_mat_v73(tmp_path, rng):
    import h5py

    yxc = rng.random((7, 8, 5))
    with h5py.File(tmp_path / "h.mat", "w") as f:
        f["cube"] = yxc.T  # MATLAB column-major storage -> (C, X, Y) in HDF5
        f["wl"] = (np.arange(5.0) * 0.1 + 0.4)[None, :].T
    cf = read_cube(tmp_path / "h.mat")
    assert cf.metadata["format"] == "mat-v7.3"
    np.testing.assert_array_equal(cf.data, np.moveaxis(yxc, -1, 0))
    np.testing.assert_allclose(cf.wavelengths, [400, 500, 600, 700, 800])


def test_npy(tmp_path, rng):
    cube = _cube(rng)
    np.save(tmp_path / "c.npy", cube)
    np.testing.assert_array_equal(read_cube(tmp_path / "c.npy").data, cube)
    np.save(tmp_path / "g.npy", cube[0])
    assert read_cube(tmp_path / "g.npy").data.shape == (1, 9, 11)
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(InputError, match=r"bad\.npy.*\(2, 3, 4, 5\)"):
        read_cube(tmp_path / "bad.npy")


def _make_cave(root, rng, n=12, rgba=False):
    import imageio.v3 as iio

    inner = root / "scene_ms" / "scene_ms"
    inner.mkdir(parents=True)
    cube = np.zeros((n, 6, 7))
    for nn in rng.permutation(np.arange(1, n + 1)):
        if rgba:
            band = rng.integers(0, 256, (6, 7)).astype(np.uint8)
            img = np.stack([band, band, band, np.full_like(band, 255)], -1)
            cube[nn - 1] = band / 255.0
        else:
            img = rng.integers(0, 65536, (6, 7)).astype(np.uint16)
            cube[nn - 1] = img / 65535.0
        iio.imwrite(inner / f"scene_ms_{nn:02d}.png", img)
    iio.imwrite(inner / "scene_RGB.bmp", np.zeros((6, 7, 3), np.uint8))
    (inner / "notes.txt").write_text("ignore me")
    return root / "scene_ms", cube


@pytest.mark.parametrize("rgba", [False, True])
def test_cave_synthetic(tmp_path, rng, rgba):
    folder, cube = _make_cave(tmp_path, rng, rgba=rgba)
    for p in (folder, folder / "scene_ms", folder / "scene_ms" / "scene_ms_10.png"):
        cf = read_cube(p)
        assert cf.data.dtype == np.float32 and cf.data.shape == (12, 6, 7)
        np.testing.assert_allclose(cf.data, cube, atol=1e-6)
        np.testing.assert_array_equal(cf.wavelengths, 400 + 10 * np.arange(12))
        assert cf.metadata["value_scale"] == pytest.approx(1 / (255 if rgba else 65535))
    assert napari_get_reader(str(folder)) is read_layers


def test_reader_never_raises(tmp_path, rng):
    (tmp_path / "a.txt").write_text("x")
    assert napari_get_reader(str(tmp_path / "a.txt")) is None
    assert napari_get_reader(str(tmp_path / "missing.tif")) is None
    assert napari_get_reader(None) is None
    assert napari_get_reader(12) is None
    assert napari_get_reader(str(tmp_path)) is None  # folder without CAVE bands
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "photo.png", np.zeros((4, 4, 3), np.uint8))
    assert napari_get_reader(str(tmp_path / "photo.png")) is None


def test_reader_and_writer_layers(tmp_path, rng):
    cube = _cube(rng)
    wl = [400.0 + 50 * i for i in range(6)]
    for name in ("w.tif", "w.ome.tif"):
        out = write_cube_tiff(str(tmp_path / name), cube,
                              {"name": "x", "metadata": {"wavelengths": wl, "settings": SETTINGS}})
        assert out == [str(tmp_path / name)]
        reader = napari_get_reader(out[0])
        assert reader is read_layers
        ((data, kwargs, kind),) = reader(out[0])
        assert kind == "image" and data.dtype == np.float32
        np.testing.assert_array_equal(data, cube)
        assert kwargs["name"] == "w"
        assert kwargs["metadata"]["wavelengths"] == wl
        assert kwargs["metadata"]["wavelength_units"] == "nm"
        assert kwargs["metadata"]["settings"] == SETTINGS
    assert len(read_layers([str(tmp_path / "w.tif"), str(tmp_path / "w.ome.tif")])) == 2


def test_reader_rgb_tiff(tmp_path, rng):
    import tifffile

    rgb = (rng.random((8, 9, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    ((data, kwargs, _),) = read_layers(str(tmp_path / "rgb.tif"))
    assert kwargs.get("rgb") is True
    np.testing.assert_array_equal(data, rgb)


def test_read_image(tmp_path, rng):
    import imageio.v3 as iio
    import tifffile

    rgba = rng.integers(0, 256, (6, 7, 4)).astype(np.uint8)
    iio.imwrite(tmp_path / "a.png", rgba)
    img = read_image(tmp_path / "a.png")
    assert img.shape == (6, 7, 3) and img.dtype == np.uint8
    iio.imwrite(tmp_path / "g.png", rgba[..., 0])
    assert read_image(tmp_path / "g.png").shape == (6, 7, 1)
    iio.imwrite(tmp_path / "b.bmp", rgba[..., :3])
    np.testing.assert_array_equal(read_image(tmp_path / "b.bmp"), rgba[..., :3])
    msi = rng.integers(0, 65535, (4, 20, 30)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "m.tif", msi, photometric="minisblack")
    out = read_image(tmp_path / "m.tif")
    assert out.shape == (20, 30, 4) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, np.moveaxis(msi, 0, -1))
    with pytest.raises(InputError, match="none.png"):
        read_image(tmp_path / "none.png")


# ----------------------------------------------------------------------- real data
def _shared(*parts):
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"../shared/data not found ({p})")
    return p


@pytest.mark.parametrize("scene", ["watercolors_ms", "balloons_ms"])
def test_cave_real(scene):
    cf = read_cube(_shared("cave", "complete_ms_data", scene))
    assert cf.data.shape == (31, 512, 512) and cf.data.dtype == np.float32
    assert cf.data.min() >= 0 and cf.data.max() <= 1 and cf.data.max() > 0.1
    np.testing.assert_array_equal(cf.wavelengths, np.arange(400, 701, 10))


def test_samson_real():
    import scipy.io

    p = _shared("remote_sensing", "samson__mhaut", "Samson.mat")
    cf = read_cube(p)
    assert cf.data.shape == (156, 95, 95)
    y = scipy.io.loadmat(p)["Y"]
    expected = np.moveaxis(y.T.reshape(95, 95, 156, order="F"), -1, 0)
    np.testing.assert_array_equal(cf.data, expected)
    assert napari_get_reader(str(p)) is read_layers


def test_truncated_npy_and_mat(tmp_path):
    import scipy.io

    np.save(tmp_path / "x.npy", np.zeros((3, 40, 40)))
    scipy.io.savemat(tmp_path / "x.mat", {"a": np.ones((20, 20, 5))})
    for name in ("x.npy", "x.mat"):
        p = tmp_path / name
        p.write_bytes(p.read_bytes()[:500])
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            read_cube(p)


# ----------------------------------------------------------------------- compressed / GeoTIFF
TIE = (0.0, 0.0, 0.0, 726491.0, 4699078.4, 0.0)
GEOKEYS = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32618)  # projected, area, UTM 18N


def _geotags(scale=0.1, tie=TIE, keys=GEOKEYS, nodata="255", ascii_="WGS 84 / UTM 18N|"):
    tags = [(33550, "d", 3, (scale, scale, 0.0), False), (33922, "d", 6, tie, False),
            (34735, "H", len(keys), keys, False), (34737, "s", 0, ascii_, False)]
    return tags + ([(42113, "s", 0, nodata, False)] if nodata is not None else [])


@pytest.mark.parametrize("compression", ["lzw", "zlib", "deflate"])
@pytest.mark.parametrize("kind", ["rgb8", "msi16"])
def test_read_image_lossless_compressed_tiff(tmp_path, rng, compression, kind):
    import tifffile

    if kind == "rgb8":
        img = rng.integers(0, 256, (33, 47, 3)).astype(np.uint8)
        tifffile.imwrite(tmp_path / "c.tif", img, photometric="rgb", compression=compression)
    else:
        img = rng.integers(0, 65536, (33, 47, 5)).astype(np.uint16)
        tifffile.imwrite(tmp_path / "c.tif", img, photometric="minisblack", planarconfig="contig",
                         compression=compression)
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        assert tif.pages[0].compression != 1  # really compressed
    out = read_image(tmp_path / "c.tif")
    assert out.dtype == img.dtype
    np.testing.assert_array_equal(out, img)


def test_read_image_jpeg_tiff(tmp_path):
    import tifffile

    yy, xx = np.mgrid[0:64, 0:80]
    img = np.stack([yy * 3, xx * 3, (yy + xx) * 2], -1).astype(np.uint8)  # smooth: JPEG keeps it
    tifffile.imwrite(tmp_path / "j.tif", img, photometric="rgb", compression="jpeg")
    out = read_image(tmp_path / "j.tif")
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 3


def test_read_image_file_geotiff(tmp_path, rng):
    import json

    import tifffile

    img = rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "g.tif", img, photometric="rgb", compression="lzw", extratags=_geotags())
    f = read_image_file(tmp_path / "g.tif")
    assert isinstance(f, ImageFile)
    np.testing.assert_array_equal(f.data, img)
    np.testing.assert_array_equal(read_image(tmp_path / "g.tif"), img)
    geo = f.metadata["geo"]
    assert geo["pixel_scale"] == [0.1, 0.1, 0.0] and geo["tiepoint"] == list(TIE)
    assert geo["geokeys"] == list(GEOKEYS) and geo["geo_ascii"] == "WGS 84 / UTM 18N|"
    assert f.metadata["nodata"] == 255.0 and isinstance(f.metadata["nodata"], float)
    assert json.loads(json.dumps(f.metadata)) == f.metadata
    assert geo_transform(f.metadata) == pytest.approx((4699078.4, 726491.0, -0.1, 0.1))
    # plain files: no geo, no nodata
    tifffile.imwrite(tmp_path / "p.tif", img, photometric="rgb")
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "p.png", img)
    for name in ("p.tif", "p.png"):
        meta = read_image_file(tmp_path / name).metadata
        assert "geo" not in meta and "nodata" not in meta and meta["source"].endswith(name)
        assert geo_transform(meta) is None


def test_geo_transform_variants():
    tie = (10.0, 20.0, 0.0, 1000.0, 5000.0, 0.0)  # raster (col 10, row 20) -> map (1000, 5000)
    area = {"geo": {"pixel_scale": [2.0, 3.0, 0.0], "tiepoint": list(tie)}}
    assert geo_transform(area) == pytest.approx((5000.0 + 20 * 3.0, 1000.0 - 10 * 2.0, -3.0, 2.0))
    point = {"geo": {**area["geo"], "geokeys": [1, 1, 0, 1, 1025, 0, 1, 2]}}  # PixelIsPoint
    assert geo_transform(point) == pytest.approx((5060.0 + 1.5, 980.0 - 1.0, -3.0, 2.0))
    mat = [0.5, 0, 0, 300.0, 0, -0.25, 0, 700.0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert geo_transform({"geo": {"transform": mat}}) == pytest.approx((700.0, 300.0, -0.25, 0.5))
    rotated = list(mat)
    rotated[1] = 0.1
    assert geo_transform({"geo": {"transform": rotated}}) is None
    gcps = {"geo": {"pixel_scale": [1, 1, 0], "tiepoint": list(tie) * 2}}  # several tie points
    assert geo_transform(gcps) is None
    assert geo_transform({}) is None and geo_transform(None) is None


def _geocube(tmp_path, data, nodata="-9999", name="cube.tif"):
    """(Y, X, C) array -> GeoTIFF with GDAL_NODATA, like NEON's reflectance crops."""
    import tifffile

    p = tmp_path / name
    tifffile.imwrite(p, data, photometric="minisblack", planarconfig="contig", compression="zlib",
                     extratags=_geotags(scale=1.0, nodata=nodata))
    return p


def test_read_cube_geotiff_nodata_mask(tmp_path, rng):
    yxc = rng.integers(-50, 10000, (6, 7, 4)).astype(np.int16)
    yxc[0, 0] = -9999  # all bands nodata -> masked
    yxc[1, 2, 1] = -9999  # one band only -> still valid
    cf = read_cube(_geocube(tmp_path, yxc))
    np.testing.assert_array_equal(cf.data, np.moveaxis(yxc, -1, 0))  # values unchanged
    assert cf.data.dtype == np.int16
    assert cf.metadata["nodata"] == -9999.0 and cf.metadata["geo"]["pixel_scale"] == [1.0, 1.0, 0.0]
    expected = np.ones((6, 7), bool)
    expected[0, 0] = False
    np.testing.assert_array_equal(cf.mask, expected)
    assert cf.metadata["nodata_per_band"] == [1, 2, 1, 1] and cf.metadata["nodata_pixels"] == 1
    assert geo_transform(cf.metadata) == pytest.approx((4699078.4, 726491.0, -1.0, 1.0))
    # an explicit nodata replaces the file's
    yxc[2, 3] = 0
    cf = read_cube(_geocube(tmp_path, yxc), nodata=0)
    assert cf.metadata["nodata"] == 0.0 and cf.mask.sum() == 6 * 7 - 1 and not cf.mask[2, 3]


def test_read_cube_no_nodata_no_mask(tmp_path, rng):
    cube = _cube(rng)
    cf = read_cube(write_tiff(tmp_path / "c.tif", cube))
    assert cf.mask is None and "nodata" not in cf.metadata and "geo" not in cf.metadata


def test_read_cube_float_nan_is_nodata(tmp_path, rng):
    cube = _cube(rng, 3, 4, 5)
    cube[:, 1, 1] = np.nan
    cube[0, 2, 2] = np.nan
    cube[:, 3, 3] = -1.0
    np.save(tmp_path / "n.npy", cube)
    cf = read_cube(tmp_path / "n.npy")  # NaN alone gives a mask
    assert not cf.mask[1, 1] and cf.mask[2, 2] and cf.mask[3, 3]
    assert cf.metadata["nodata_per_band"] == [2, 1, 1] and "nodata" not in cf.metadata
    cf = read_cube(tmp_path / "n.npy", nodata=-1.0)
    assert not cf.mask[1, 1] and not cf.mask[3, 3] and cf.metadata["nodata_pixels"] == 2
    assert np.isnan(cf.data[0, 1, 1]) and cf.data[0, 3, 3] == -1.0  # values unchanged


def test_read_cube_value_scale(tmp_path, rng):
    yxc = rng.integers(-300, 10000, (5, 6, 3)).astype(np.int16)
    yxc[0, 0, :] = 0
    p = _geocube(tmp_path, yxc, nodata=None)
    cf = read_cube(p, value_scale=1e-4, nodata=0)
    assert cf.data.dtype == np.float32 and cf.metadata["value_scale"] == 1e-4
    np.testing.assert_allclose(cf.data, np.moveaxis(yxc, -1, 0) * 1e-4, rtol=1e-6)
    assert cf.data.min() < 0  # negative reflectance kept, not clipped
    assert not cf.mask[0, 0] and cf.mask.sum() == 29  # nodata compared before scaling
    # combined with our writer's own uint16 scale
    w = write_tiff(tmp_path / "u.tif", rng.random((2, 3, 4)), dtype="uint16")
    cf = read_cube(w, value_scale=2.0)
    assert cf.metadata["value_scale"] == pytest.approx(2.0 / 65535)
    assert cf.data.max() > 1.0
    for bad in (0, float("nan"), "x"):
        with pytest.raises(InputError, match="value_scale"):
            read_cube(p, value_scale=bad)


def test_read_cube_wavelengths_and_drop_bands(tmp_path, rng):
    cube = _cube(rng, 6, 4, 5)
    np.save(tmp_path / "c.npy", cube)
    wl = np.arange(6) * 10 + 400.0
    cf = read_cube(tmp_path / "c.npy", wavelengths=wl, drop_bands=[4, 1, 4])
    np.testing.assert_array_equal(cf.data, cube[[0, 2, 3, 5]])
    np.testing.assert_array_equal(cf.wavelengths, [400, 420, 430, 450])
    assert cf.metadata["dropped_bands"] == [1, 4]
    cf = read_cube(tmp_path / "c.npy", drop_bands=[])
    assert cf.data.shape == (6, 4, 5) and cf.metadata["dropped_bands"] == [] and cf.wavelengths is None
    with pytest.raises(InputError, match=r"5 wavelengths but the cube has 6 bands"):
        read_cube(tmp_path / "c.npy", wavelengths=wl[:5])
    for bad in ([6], [-1], [1.5]):
        with pytest.raises(InputError, match=r"c\.npy.*0\.\.5"):
            read_cube(tmp_path / "c.npy", drop_bands=bad)
    with pytest.raises(InputError, match="all 6 bands"):
        read_cube(tmp_path / "c.npy", drop_bands=range(6))
    with pytest.raises(InputError, match="'auto' needs bad-band flags"):
        read_cube(tmp_path / "c.npy", drop_bands="auto")
    with pytest.raises(InputError, match="'some'"):
        read_cube(tmp_path / "c.npy", drop_bands="some")


def test_read_cube_band_table_auto(tmp_path, rng):
    cube = _cube(rng, 5, 3, 4)
    np.save(tmp_path / "c.npy", cube)
    table = tmp_path / "bands.csv"
    table.write_text("band,nanometer,noise,BandName\n" + "".join(
        f"{i + 1},{0.4 + 0.1 * i:.3f},{int(i in (1, 4))},band_{i + 1}\n" for i in range(5)))
    cf = read_cube(tmp_path / "c.npy", wavelengths=table, drop_bands="auto", value_scale=0.5)
    np.testing.assert_allclose(cf.wavelengths, [400, 600, 700])
    np.testing.assert_allclose(cf.data, cube[[0, 2, 3]] * 0.5)
    assert cf.metadata["dropped_bands"] == [1, 4] and cf.metadata["band_table"] == str(table)
    assert "micrometres" in cf.metadata["band_table_note"]
    np.save(tmp_path / "six.npy", _cube(rng, 6, 3, 4))
    with pytest.raises(InputError, match=r"bands\.csv has 5 wavelengths but the cube has 6"):
        read_cube(tmp_path / "six.npy", wavelengths=table)


def test_read_cube_envi_bbl_and_ignore_value(tmp_path, rng):
    from spectral import envi

    cube = _cube(rng, 4, 5, 6)
    cube[:, 0, 0] = -1.0
    envi.save_image(str(tmp_path / "e.hdr"), np.moveaxis(cube, 0, -1), dtype=np.float32, force=True,
                    metadata={"wavelength": [400, 500, 600, 700], "bbl": [1, 0, 1, 1],
                              "data ignore value": -1})
    cf = read_cube(tmp_path / "e.hdr", drop_bands="auto")
    np.testing.assert_array_equal(cf.data, cube[[0, 2, 3]])
    np.testing.assert_array_equal(cf.wavelengths, [400, 600, 700])
    assert cf.metadata["dropped_bands"] == [1] and cf.metadata["nodata"] == -1.0
    assert not cf.mask[0, 0] and cf.mask.sum() == 29


# ----------------------------------------------------------------------- band tables
def test_band_table_neon_style_micrometres(tmp_path):
    p = tmp_path / "neon.csv"
    p.write_text("band,nanometer,noise,BandName\n1,0.382669985,0,band_1\n2,0.387679994,1,band_2\n"
                 "3,2.5117099,1,band_3\n")
    t = read_band_table(p)
    assert isinstance(t, BandTable)
    np.testing.assert_allclose(t.wavelengths_nm, [382.669985, 387.679994, 2511.7099])
    np.testing.assert_array_equal(t.bad, [False, True, True])
    assert t.names == ["band_1", "band_2", "band_3"]
    assert "'nanometer'" in t.units_note and "micrometres" in t.units_note


def test_band_table_tsv_bbl_inverted_and_units_header(tmp_path):
    p = tmp_path / "b.tsv"
    p.write_text("# exported\nIndex\tWavelength (nm)\tbbl\n0\t450\t1\n1\t550\t0\n\n2\t650\t1\n")
    t = read_band_table(p)
    np.testing.assert_array_equal(t.wavelengths_nm, [450, 550, 650])
    np.testing.assert_array_equal(t.bad, [False, True, False])
    assert t.names is None and t.units_note is None


def test_band_table_whitespace_and_one_column(tmp_path):
    (tmp_path / "w.txt").write_text("band  wl_nm   fwhm\n1 400.5 10\n2 410.0 10\n")
    t = read_band_table(tmp_path / "w.txt")
    np.testing.assert_array_equal(t.wavelengths_nm, [400.5, 410.0])
    assert t.bad is None
    (tmp_path / "one.txt").write_text("0.45\n0.55\n0.65\n")
    np.testing.assert_allclose(read_band_table(tmp_path / "one.txt").wavelengths_nm, [450, 550, 650])
    (tmp_path / "semi.csv").write_text("lambda;water\n500;false\n1400;true\n")
    np.testing.assert_array_equal(read_band_table(tmp_path / "semi.csv").bad, [False, True])


@pytest.mark.parametrize("text,match", [
    ("band,fwhm\n1,10\n", r"no wavelength column in the header \['band', 'fwhm'\]"),
    ("band,wavelength\n1,450\n2,abc\n", r"line 3: column 'wavelength' value 'abc'"),
    ("band,wavelength,bad\n1,450,1\n2,550\n", r"line 3: column 'bad' value '<missing>'"),
    ("450,10\n550,10\n", "no header"),
    ("# nothing\n\n", "empty"),
    ("wavelength\n", "no rows"),
    ("wavelength\n450\n-1\n", "non-positive"),
])
def test_band_table_errors(tmp_path, text, match):
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=match) as info:
        read_band_table(p)
    assert "t.csv" in str(info.value)
    with pytest.raises(InputError, match="not found"):
        read_band_table(tmp_path / "missing.csv")


def test_neon_harv_real():
    d = _shared("real_pairs", "neon_harv")
    rgb = read_image_file(d / "2019_D01_HARV_DP3_726000_4699000_image_crop.tif")  # LZW
    assert rgb.data.shape == (400, 400, 3) and rgb.data.dtype == np.uint8 and rgb.metadata["nodata"] == 255
    cf = read_cube(d / "NEON_D01_HARV_DP3_726000_4699000_reflectance_crop.tif", value_scale=1e-4,
                   wavelengths=d / "neon_aop_bands.csv", drop_bands="auto")
    assert cf.data.shape == (426 - 57, 40, 40) and cf.data.dtype == np.float32
    assert cf.metadata["dropped_bands"][:2] == [192, 193] and cf.metadata["dropped_bands"][-1] == 425
    assert 380 < cf.wavelengths[0] < 385 and 0 < np.median(cf.data) < 1
    oy, ox, py, px = geo_transform(cf.metadata)
    assert (oy, ox) == geo_transform(rgb.metadata)[:2] and (py, px) == (-1.0, 1.0)
    assert geo_transform(rgb.metadata)[2:] == pytest.approx((-0.1, 0.1))
