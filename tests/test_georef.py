"""Pairs by map coordinates (issue 25): two georeferenced rasters in their own grids and CRSs put on
the cube's grid refined by an integer ratio, cropped to the common footprint."""

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from napari_hsisr.cli import main
from napari_hsisr.core.errors import InputError
from napari_hsisr.core.georef import pair_by_coordinates, read_georef
from napari_hsisr.core.io import geo_transform, read_cube

rasterio = pytest.importorskip("rasterio")  # the [geo] extra; the names below come after the skip
from rasterio.transform import Affine, from_origin  # noqa: E402
from rasterio.warp import Resampling, calculate_default_transform, reproject  # noqa: E402

E0, N0 = 726000.0, 4699000.0  # a UTM 18N corner


def _write(path, data, transform, crs="EPSG:32618", nodata=None):
    """A (k, Y, X) GeoTIFF written with rasterio (tiled when large, as real tiles are)."""
    k, h, w = data.shape
    extra = {"tiled": True, "blockxsize": 256, "blockysize": 256} if min(h, w) >= 256 else {}
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=k, dtype=data.dtype, crs=crs,
                       transform=transform, nodata=nodata, **extra) as dst:
        dst.write(data)
    return path


def _scene(x, y):
    """A smooth scene in map coordinates (metres): what both sensors see."""
    return 0.5 + 0.2 * np.sin(x / 3.0) * np.cos(y / 4.0) + 0.1 * np.cos((x + y) / 7.0)


def _cube(tmp_path, side=8, px=2.0, e=E0 + 10, n=N0 - 10, bands=6, crs="EPSG:32618", name="cube.tif"):
    xs = e + (np.arange(side) + 0.5) * px
    ys = n - (np.arange(side) + 0.5) * px
    base = _scene(xs[None, :], ys[:, None])
    data = np.stack([base * (1 + 0.1 * b) for b in range(bands)]).astype(np.float32)
    return _write(tmp_path / name, data, from_origin(e, n, px, px), crs)


def _rgb(tmp_path, e, n, side, px, name="rgb.tif", crs="EPSG:32618"):
    xs = e + (np.arange(side) + 0.5) * px
    ys = n - (np.arange(side) + 0.5) * px
    base = _scene(xs[None, :], ys[:, None])
    data = np.clip(np.stack([base * 200, base * 180, base * 160]), 0, 254).astype(np.uint8)
    return _write(tmp_path / name, data, from_origin(e, n, px, px), crs, nodata=255), data


def _to_wgs84(src_path, dst_path):
    with rasterio.open(src_path) as s:
        t, w, h = calculate_default_transform(s.crs, "EPSG:4326", s.width, s.height, *s.bounds)
        out = np.full((s.count, h, w), 255, np.uint8)
        reproject(s.read(), out, src_transform=s.transform, src_crs=s.crs, dst_transform=t, dst_crs="EPSG:4326",
                  resampling=Resampling.bilinear, src_nodata=s.nodata, dst_nodata=255)
    return _write(dst_path, out, t, "EPSG:4326", nodata=255)


def test_crss_that_differ_are_paired_on_the_cube_grid(tmp_path):
    cube = _cube(tmp_path)  # 8 x 8 px of 2 m at (E0+10, N0-10), 16 m a side
    utm, truth = _rgb(tmp_path, E0, N0, 144, 0.25, name="rgb_utm.tif")  # 36 m a side: covers more
    hr = _to_wgs84(utm, tmp_path / "rgb_wgs84.tif")
    pair = pair_by_coordinates(hr, read_cube(cube), cube)
    assert pair.scale == 8 and pair.hr.shape == (64, 64, 3) and pair.hr.dtype == np.uint8
    assert np.shape(pair.lr.data) == (6, 8, 8) and pair.lr.mask is None  # wholly covered: nothing cropped
    assert geo_transform({"geo": pair.output_geo}) == pytest.approx((N0 - 10, E0 + 10, -0.25, 0.25))
    assert any("reprojected from EPSG:4326" in n for n in pair.notes)
    # the HR pixels land where the UTM image had them: the cut of the UTM original, within resampling error
    cut = np.moveaxis(truth[:, 40:104, 40:104], 0, -1).astype(float)
    assert np.abs(pair.hr.astype(float) - cut).mean() < 2.0


def test_an_hr_image_covering_less_crops_the_cube_and_says_how_many(tmp_path):
    cube = _cube(tmp_path)  # 8 x 8 px of 2 m
    # 0.1 m off the output grid (resampled), covering the cube's first 6 rows and 5 columns only
    e, n = E0 + 10 - 0.1, N0 - 10 + 0.1
    _, data = _rgb(tmp_path, e, n, 64, 0.25)
    hr = _write(tmp_path / "part.tif", data[:, :49, :41], from_origin(e, n, 0.25, 0.25), nodata=255)
    pair = pair_by_coordinates(hr, read_cube(cube), cube)
    assert np.shape(pair.lr.data) == (6, 6, 5) and pair.hr.shape == (48, 40, 3)
    assert "cube cropped to the HR image's footprint: 6x5 of 8x8 pixels kept (34 outside)" in pair.notes
    assert geo_transform(pair.lr.metadata) == pytest.approx((N0 - 10, E0 + 10, -2.0, 2.0))  # the top-left kept


def test_an_aligned_hr_image_covering_more_is_sliced_without_rasterio(tmp_path, monkeypatch):
    cube = _cube(tmp_path)
    hr, data = _rgb(tmp_path, E0, N0, 160, 0.5)  # same CRS, pixels on the cube's grid / 4: a pure cut
    monkeypatch.setitem(sys.modules, "rasterio", None)  # the pairing must not need it
    pair = pair_by_coordinates(hr, read_cube(cube), cube)
    np.testing.assert_array_equal(pair.hr, np.moveaxis(data[:, 20:52, 20:52], 0, -1))
    assert pair.scale == 4 and pair.notes == []


def test_reprojection_without_rasterio_names_the_extra(tmp_path, monkeypatch):
    cube = _cube(tmp_path)
    hr = _to_wgs84(_rgb(tmp_path, E0, N0, 144, 0.25)[0], tmp_path / "wgs.tif")
    for name in ("rasterio", "pyproj"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(InputError, match=r'pip install "napari-hsisr\[geo\]"'):
        pair_by_coordinates(hr, read_cube(cube), cube)


def test_no_overlap_is_one_line_and_exit_2(tmp_path, capsys):
    cube = _cube(tmp_path)
    hr, _ = _rgb(tmp_path, E0 + 500, N0, 64, 0.25)  # 500 m east
    code = main(["fuse", "--hr", str(hr), "--lr", str(cube), "--method", "bicubic", "--out", str(tmp_path / "o.tif")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "do not overlap" in err and len(err.splitlines()) == 1


def test_a_cube_without_crs_takes_the_given_one_or_the_images(tmp_path, capsys):
    import tifffile

    xs = E0 + 10 + (np.arange(8) + 0.5) * 2.0
    cube = (_scene(xs[None, :], (N0 - 10 - (np.arange(8) + 0.5) * 2.0)[:, None])[..., None] * np.ones(5)) * 1e4
    tags = [(33550, "d", 3, (2.0, 2.0, 0.0), True), (33922, "d", 6, (0, 0, 0, E0 + 10, N0 - 10, 0), True)]
    tifffile.imwrite(tmp_path / "cube.tif", cube.astype(np.int16), photometric="minisblack", planarconfig="contig",
                     extratags=tags)
    assert read_georef(tmp_path / "cube.tif").crs is None
    hr = _to_wgs84(_rgb(tmp_path, E0, N0, 144, 0.25)[0], tmp_path / "wgs.tif")
    out = tmp_path / "sr.tif"
    assert main(["fuse", "--hr", str(hr), "--lr", str(tmp_path / "cube.tif"), "--lr-crs", "EPSG:32618",
                 "--value-scale", "1e-4", "--method", "bicubic", "--out", str(out)]) == 0
    with rasterio.open(out) as res:  # the result: a GeoTIFF rasterio reads, in the cube's CRS, on the output grid
        assert res.crs.to_epsg() == 32618 and res.shape == (64, 64) and res.count == 5
        assert res.transform.almost_equals(Affine(0.25, 0, E0 + 10, 0, -0.25, N0 - 10))
    # without --lr-crs the cube's transform would be read in the image's degrees: no overlap, said so
    code = main(["fuse", "--hr", str(hr), "--lr", str(tmp_path / "cube.tif"), "--method", "bicubic",
                 "--out", str(tmp_path / "o2.tif")])
    assert code == 2 and "no CRS" in capsys.readouterr().err


def test_plain_pairs_are_not_paired_by_coordinates(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "c.tif", np.random.default_rng(0).random((4, 8, 8)).astype(np.float32))
    tifffile.imwrite(tmp_path / "h.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    assert pair_by_coordinates(tmp_path / "h.tif", read_cube(tmp_path / "c.tif"), tmp_path / "c.tif") is None
    cube = _cube(tmp_path)  # one side georeferenced only: as today
    assert pair_by_coordinates(tmp_path / "h.tif", read_cube(cube), cube) is None


def test_envi_map_info_is_read(tmp_path):
    from napari_hsisr.core.georef import _envi_georef

    ref = _envi_georef({"map info": ["UTM", "1", "1", "726491", "4699078.4", "1", "1", "18", "North", "WGS-84",
                                     "units=Meters"]})
    assert ref.crs == "EPSG:32618" and ref.transform == pytest.approx((4699078.4, 726491.0, -1.0, 1.0))
    ref = _envi_georef({"map info": "{UTM, 2.5, 1.5, 500000, 100, 30, 30, 33, South, WGS-84}"})
    assert ref.crs == "EPSG:32733" and ref.transform == pytest.approx((100 + 15, 500000 - 45, -30, 30))


@pytest.mark.parametrize("offset", [0.0, 0.13])  # on the output grid (sliced), off it (reprojected)
def test_a_4096_tile_reads_only_the_window_over_the_cube(tmp_path, offset):
    side = 4096
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 250, (3, side, side), dtype=np.uint8)
    hr = _write(tmp_path / "tile.tif", tile, from_origin(E0 - offset, N0, 0.25, 0.25), nodata=255)
    del tile
    cube = _cube(tmp_path, side=16, px=4.0, e=E0 + 400, n=N0 - 300)  # 64 m in a 1024 m tile
    lr = read_cube(cube)
    pair_by_coordinates(hr, lr, cube)  # modules imported (their memory is not the pairing's)
    tracemalloc.start()
    pair = pair_by_coordinates(hr, lr, cube)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert pair.hr.shape == (256, 256, 3) and np.shape(pair.lr.data) == (6, 16, 16)
    whole = side * side * 3  # the uint8 frame alone
    # measured 1.3 MiB sliced, 3.1 MiB reprojected (the frame: 48 MiB)
    assert peak < whole / 10, f"pairing peaked at {peak / 2**20:.1f} MiB; the whole frame is {whole / 2**20:.0f} MiB"


def test_neon_pair_in_other_crs_fuses_like_the_hand_aligned_one(tmp_path):
    """The issue's target on the shared NEON pair: the cube cropped to a 30 m plot (UTM 18N tags),
    the camera RGB of the whole 40 m plot reprojected to WGS84."""
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_pairs" / "neon_harv"
    if not data.exists():
        pytest.skip(f"real data not here: {data}")
    with rasterio.open(data / "NEON_D01_HARV_DP3_726000_4699000_reflectance_crop.tif") as s:
        plot = s.read()[:, 5:35, 5:35]
        plot_t = s.transform * Affine.translation(5, 5)
    _write(tmp_path / "cube_plot.tif", plot, plot_t)
    with rasterio.open(data / "2019_D01_HARV_DP3_726000_4699000_image_crop.tif") as s:
        rgb, rgb_t = s.read(), s.transform
    _write(tmp_path / "rgb_utm.tif", rgb, rgb_t, nodata=255)
    _to_wgs84(tmp_path / "rgb_utm.tif", tmp_path / "rgb_wgs84.tif")
    _write(tmp_path / "rgb_hand.tif", rgb[:, 50:350, 50:350], rgb_t * Affine.translation(50, 50), nodata=255)
    fits = {}
    for name in ("hand", "wgs84"):
        out = tmp_path / f"res_{name}.tif"
        assert main(["fuse", "--hr", str(tmp_path / f"rgb_{name}.tif"), "--lr", str(tmp_path / "cube_plot.tif"),
                     "--value-scale", "1e-4", "--band-table", str(data / "neon_aop_bands.csv"), "--drop-bands", "auto",
                     "--method", "fast", "--out", str(out)]) == 0
        fits[name] = read_cube(out).metadata["settings"]["fit"]["lr"]["relative"]
    with rasterio.open(tmp_path / "res_wgs84.tif") as res:
        assert res.crs.to_epsg() == 32618 and res.shape == (300, 300)
        assert res.transform.a == pytest.approx(0.1) and res.transform.e == pytest.approx(-0.1)
        assert abs(res.transform.c - plot_t.c) < 0.05 and abs(res.transform.f - plot_t.f) < 0.05
    assert fits["wgs84"] <= 1.25 * fits["hand"] + 0.005, fits


def test_batch_pairs_by_coordinates(tmp_path):
    cube = _cube(tmp_path)
    hr = _to_wgs84(_rgb(tmp_path, E0, N0, 144, 0.25)[0], tmp_path / "wgs.tif")
    (tmp_path / "pairs.csv").write_text(f"name,hr,lr,method,response\ngeo,{hr.name},{cube.name},bicubic,estimate\n")
    assert main(["batch", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    with rasterio.open(tmp_path / "out" / "geo.tif") as res:
        assert res.crs.to_epsg() == 32618 and res.shape == (64, 64)
        assert res.transform.almost_equals(Affine(0.25, 0, E0 + 10, 0, -0.25, N0 - 10))


def test_envi_cube_with_map_info_is_georeferenced(tmp_path):
    from spectral import envi

    data = np.random.default_rng(0).random((8, 8, 4)).astype(np.float32)
    envi.save_image(str(tmp_path / "c.hdr"), data, metadata={
        "map info": "{UTM, 1, 1, 726010, 4698990, 2, 2, 18, North, WGS-84, units=Meters}"})
    ref = read_georef(tmp_path / "c.hdr", read_cube(tmp_path / "c.hdr").metadata)
    assert ref.crs == "EPSG:32618" and ref.transform == pytest.approx((N0 - 10, E0 + 10, -2.0, 2.0))


def _band_folder(tmp_path):
    """A Sentinel-2 style folder: one uint16 GeoTIFF per band, B02-B04 and B08 at 0.5 m, B05 and B11 at 1 m."""
    folder = tmp_path / "tile"
    folder.mkdir()
    for name, px, gain in (("B02", 0.5, 1.0), ("B03", 0.5, 1.1), ("B04", 0.5, 1.2), ("B05", 1.0, 1.3),
                           ("B08", 0.5, 1.4), ("B11", 1.0, 1.5)):
        n = int(36 / px)
        xs, ys = E0 + (np.arange(n) + 0.5) * px, N0 - (np.arange(n) + 0.5) * px
        band = (_scene(xs[None, :], ys[:, None]) * 5000 * gain).astype(np.uint16)[None]
        _write(folder / f"{name}.tif", band, from_origin(E0, N0, px, px), nodata=0)
    return folder


def test_a_folder_of_band_files_takes_the_finest_bands_or_the_ones_picked(tmp_path):
    cube = _cube(tmp_path)
    folder = _band_folder(tmp_path)
    pair = pair_by_coordinates(folder, read_cube(cube), cube)
    assert pair.scale == 4 and pair.hr.shape == (32, 32, 4) and pair.hr.dtype == np.uint16
    assert any("B02, B03, B04, B08" in n and "left out: B05, B11" in n for n in pair.notes)
    with rasterio.open(folder / "B08.tif") as b08:  # sliced, not resampled: the file's own values
        np.testing.assert_array_equal(pair.hr[..., 3], b08.read(1)[20:52, 20:52])
    picked = pair_by_coordinates(folder, read_cube(cube), cube, hr_bands=[0, 5])  # B02 (0.5 m), B11 (1 m) resampled
    assert picked.hr.shape == (32, 32, 2) and picked.scale == 4
    with rasterio.open(folder / "B11.tif") as b11:
        coarse = b11.read(1)[10:26, 10:26].astype(float)  # B11's 1 m pixels over the cube
    binned = picked.hr[..., 1].astype(float).reshape(16, 2, 16, 2).mean(axis=(1, 3))
    assert np.abs(binned - coarse).mean() < 0.01 * coarse.mean()


def test_sentinel2a_response_on_its_grid_and_picked_bands():
    from napari_hsisr.core.band_responses import band_integrated_srf
    from napari_hsisr.core.sentinel import S2A_CENTRES, load_mat_response
    from napari_hsisr.core.srf import SpectralResponse, pick_channels, resolve_srf

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    mat = data / "srf" / "HIFtool_srflib" / "Sentinel2A_191_13.mat"
    if not mat.exists():
        pytest.skip(f"real data not here: {mat}")
    srf = SpectralResponse(*load_mat_response(mat))
    centroid = (srf.matrix * srf.wavelengths[:, None]).sum(0) / srf.matrix.sum(0)
    assert np.all(np.abs(centroid - np.array(S2A_CENTRES))[:12] < 12)  # the inferred 400..2400 nm grid holds
    wl = np.arange(400.0, 1000.0, 10.0)
    m, name, channels = resolve_srf(f"{mat}:B02,B03,B04,B8", wl, wl.size)
    assert m.shape == (60, 4) and channels == ("B02", "B03", "B04", "B08") and "Sentinel-2A" in name
    assert (wl @ m).tolist() == pytest.approx([492, 560, 665, 833], abs=15)  # centroids near ESA's centres
    fwhm = band_integrated_srf(pick_channels(srf, ["B02", "B03", "B04"]), wl, np.full(wl.size, 10.0))  # EnMAP-like
    assert fwhm.shape == (60, 3) and np.allclose(fwhm.sum(0), 1)
    with pytest.raises(InputError, match="B13 not in"):
        resolve_srf(f"{mat}:B13", wl, wl.size)


def test_scale_overrides_the_ratio_and_a_big_tile_is_sized_by_the_cube(tmp_path):
    from napari_hsisr.core.georef import paired_shape

    cube = _cube(tmp_path)
    hr, _ = _rgb(tmp_path, E0, N0, 144, 0.25)
    pair = pair_by_coordinates(hr, read_cube(cube), cube, scale=4)  # 0.25 m pixels averaged onto 0.5 m
    assert pair.scale == 4 and pair.hr.shape == (32, 32, 3)
    assert any("resampled onto the cube's grid" in n for n in pair.notes)
    assert paired_shape(hr, cube, (8, 8)) == (64, 64)  # not the HR image's 144 x 144
