"""Real files without flags (issue 23): documented value scales and band tables found as the
napari reader finds them, noisy bands marked, GeoTIFF results on the output grid, batch manifests
that carry the real-file options, shell wording in errors."""

import numpy as np
import pytest
import tifffile

from napari_hsisr.cli import main
from napari_hsisr.core.io import geo_transform, output_geo, parse_band_numbers, read_cube, write_tiff

NEON_NAME = "NEON_D01_HARV_DP3_726000_4699000_reflectance_crop.tif"
UTM18N = [1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32618, 3076, 0, 1, 9001]


def _neon_like(folder, bands=12, side=8):
    """A NEON-named int16 reflectance x 10000 cube (Y, X, bands) with its band table beside it."""
    rng = np.random.default_rng(0)
    cube = (2000 + 3000 * rng.random((side, side, bands))).astype(np.int16)
    tags = [(33550, "d", 3, (1.0, 1.0, 0.0), True), (33922, "d", 6, (0, 0, 0, 726491.0, 4699078.4, 0), True)]
    tifffile.imwrite(folder / NEON_NAME, cube, photometric="minisblack", planarconfig="contig",
                     extratags=tags)
    rows = ["band,nanometer,noise"] + [f"{i + 1},{0.4 + 0.02 * i:.3f},{int(i in (3, 4))}" for i in range(bands)]
    (folder / "neon_aop_bands.csv").write_text("\n".join(rows) + "\n")
    return folder / NEON_NAME


def test_reader_applies_the_documented_scale_and_marks_noisy_bands(tmp_path):
    from napari_hsisr._reader import read_layers

    data, kwargs, _ = read_layers(str(_neon_like(tmp_path)))[0]
    meta = kwargs["metadata"]
    assert data.dtype == np.float32 and 0.19 < data.min() and data.max() < 0.51  # reflectance, not x 10000
    assert meta["value_scale"] == pytest.approx(1e-4) and "NEON" in meta["value_scale_source"]
    assert meta["bad_bands"] == [3, 4] and meta["wavelengths"][0] == pytest.approx(400)


def test_gdal_band_scale_is_documented_and_float_data_are_left_alone(tmp_path):
    gdal = ('<GDALMetadata><Item name="SCALE" sample="0" role="scale">0.001</Item>'
            '<Item name="SCALE" sample="1" role="scale">0.001</Item></GDALMetadata>')
    tifffile.imwrite(tmp_path / "c.tif", np.full((2, 4, 4), 500, np.uint16), extratags=[(42112, "s", 0, gdal, True)])
    assert read_cube(tmp_path / "c.tif", value_scale="auto").data.max() == pytest.approx(0.5)
    assert read_cube(tmp_path / "c.tif").data.dtype == np.uint16  # the API reads the file as it is by default
    tifffile.imwrite(tmp_path / "f.tif", np.full((5, 4, 4), 0.5, np.float32))
    assert "value_scale" not in read_cube(tmp_path / "f.tif", value_scale="auto").metadata


def test_drop_bands_renumbers_the_noisy_bands_left():
    assert parse_band_numbers("2-3, 7") == [1, 2, 6] and parse_band_numbers(" AUTO ") == "auto"
    assert parse_band_numbers("") is None


def test_geotiff_round_trip_scaled_to_the_output_grid(tmp_path):
    lr_meta = {"geo": {"pixel_scale": [1.0, 1.0, 0.0], "tiepoint": [0, 0, 0, 726491.0, 4699078.4, 0],
                       "geokeys": UTM18N}}
    geo = output_geo(None, lr_meta, 8, "hr")
    cube = np.random.default_rng(1).random((5, 16, 16)).astype(np.float32)
    write_tiff(tmp_path / "g.tif", cube, wavelengths=np.arange(5) + 500.0, format="geotiff", geo=geo)
    back = read_cube(tmp_path / "g.tif")
    np.testing.assert_array_equal(back.data, cube)
    assert back.wavelengths[0] == 500 and back.metadata["geo"]["geokeys"] == UTM18N  # the CRS
    assert geo_transform(back.metadata) == pytest.approx((4699078.4, 726491.0, -0.125, 0.125))
    with tifffile.TiffFile(tmp_path / "g.tif") as tif:  # one page of 5 bands, as a GIS reads a raster
        assert len(tif.pages) == 1 and tif.pages[0].samplesperpixel == 5


def test_fuse_neon_like_pair_without_flags_writes_a_geotiff(tmp_path, capsys):
    lr = _neon_like(tmp_path, bands=31)
    hr = (np.random.default_rng(2).random((32, 32, 3)) * 255).astype(np.uint8)
    # the camera's own tie point (0.5 m east of the cube's): paired by map coordinates (issue 25), the cube's
    # first column is half covered, so it is cropped and the result starts at the cube's second column
    tags = [(33550, "d", 3, (0.25, 0.25, 0.0), True), (33922, "d", 6, (0, 0, 0, 726491.5, 4699078.4, 0), True),
            (34735, "H", len(UTM18N), UTM18N, True)]
    tifffile.imwrite(tmp_path / "rgb.tif", hr, photometric="rgb", extratags=tags)
    out = tmp_path / "sr.tif"
    assert main(["fuse", "--hr", str(tmp_path / "rgb.tif"), "--lr", str(lr), "--method", "bicubic",
                 "--drop-bands", "auto", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "values x 0.0001" in err and "neon_aop_bands.csv" in err and "GeoTIFF" in err
    back = read_cube(out)
    assert back.data.shape == (29, 32, 28) and back.data.max() < 1  # reflectance, 2 noisy bands dropped
    assert "cube cropped to the HR image's footprint: 8x7 of 8x8" in err
    assert geo_transform(back.metadata) == pytest.approx((4699078.4, 726492.0, -0.25, 0.25))
    assert back.metadata["geo"]["geokeys"] == UTM18N
    tiled = tmp_path / "tiled.tif"  # written tile by tile (a tiled OME BigTIFF): the same georeferencing
    assert main(["fuse", "--hr", str(tmp_path / "rgb.tif"), "--lr", str(lr), "--method", "bicubic",
                 "--tile", "16", "--out", str(tiled)]) == 0
    assert geo_transform(read_cube(tiled).metadata) == pytest.approx((4699078.4, 726492.0, -0.25, 0.25))


def test_batch_creates_its_folder_and_carries_the_real_file_options(tmp_path, capsys):
    from napari_hsisr.core.batch import read_manifest

    lr = _neon_like(tmp_path, bands=31)
    hr = (np.random.default_rng(3).random((32, 32, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", hr, photometric="rgb")
    (tmp_path / "pairs.csv").write_text("name,hr,lr,method,response,encoding,value_scale,drop_bands\n"
                                        f"neon,rgb.tif,{lr.name},bicubic,estimate,srgb,1e-4,4-5\n")
    row = read_manifest(tmp_path / "pairs.csv")[0]
    assert row["srf"] == "estimate" and row["hr_encoding"] == "srgb" and row["drop_bands"] == "4-5"
    out = tmp_path / "results" / "run1"  # neither folder exists
    assert main(["batch", str(tmp_path / "pairs.csv"), "--out", str(out), "--workers", "1"]) == 0
    back = read_cube(out / "neon.tif")
    assert back.data.shape == (29, 32, 32) and back.data.max() < 1
    assert geo_transform(back.metadata) == pytest.approx((4699078.4, 726491.0, -0.25, 0.25))  # the LR's, / 4
    (tmp_path / "bad.csv").write_text(f"name,hr,lr,drop_bands\nx,rgb.tif,{lr.name},5-a\n")
    assert main(["batch", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    assert "drop_bands" in capsys.readouterr().err


def test_shell_words_in_errors_and_units_in_tables(tmp_path, capsys):
    np.save(tmp_path / "lr.npy", np.random.default_rng(0).random((31, 8, 8)).astype(np.float32))
    np.save(tmp_path / "hr.npy", np.random.default_rng(0).random((32, 32, 3)).astype(np.float32))
    code = main(["fuse", "--hr", str(tmp_path / "hr.npy"), "--lr", str(tmp_path / "lr.npy"), "--srf", "nikonn_d7",
                 "--out", str(tmp_path / "o.tif")])
    err = capsys.readouterr().err
    assert code == 2 and "'hsisr srfs'" in err and "list_presets()" not in err
    write_tiff(tmp_path / "a.tif", np.random.default_rng(0).random((3, 16, 16)))
    assert main(["evaluate", str(tmp_path / "a.tif"), str(tmp_path / "a.tif")]) == 0
    assert "rmse 0-255" in capsys.readouterr().out


def test_real_neon_cube_opens_in_reflectance_with_its_noisy_bands_marked():
    from pathlib import Path

    from napari_hsisr._reader import read_layers

    neon = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_pairs" / "neon_harv" / NEON_NAME
    if not neon.exists():
        pytest.skip(f"real data not here: {neon}")
    data, kwargs, _ = read_layers(str(neon))[0]
    meta = kwargs["metadata"]
    assert data.shape == (426, 40, 40) and float(np.percentile(data, 99)) < 1.5  # reflectance, not x 10000
    assert len(meta["bad_bands"]) == 57 and meta["bad_bands"][0] == 192  # bands 193-210, 284-315, 420-426
    assert meta["wavelengths"][0] == pytest.approx(382.67) and geo_transform(meta)[2:] == (-1.0, 1.0)
