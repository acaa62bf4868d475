import json

import numpy as np

from napari_hsisr.cli import main
from napari_hsisr.core.io import read_cube


def test_methods_lists_options(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "fast" in out and "gsa" in out and "--opt rank=" in out


def test_demo_writes_tiff_and_prints_metrics(tmp_path, capsys):
    out = tmp_path / "demo.tif"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "psnr" in text and "bicubic" in text and "fast" in text
    cube = read_cube(out)
    assert cube.data.shape == (31, 256, 256)
    assert cube.wavelengths[0] == 400 and cube.wavelengths[-1] == 700
    assert cube.metadata["settings"]["method"] == "fast"


def test_demo_compares_with_fast_and_says_when_a_method_is_below_it(tmp_path, capsys):
    out = tmp_path / "demo.tif"
    assert main(["demo", "--method", "bicubic", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fast" in text and "note: bicubic is" in text and "dB below fast" in text
    assert read_cube(out).metadata["settings"]["method"] == "bicubic"


def test_simulate_fuse_evaluate_roundtrip(tmp_path, capsys):
    from napari_hsisr.core.io import write_tiff
    from napari_hsisr.core.sample import sample_scene

    ref, wl = sample_scene(64)
    write_tiff(tmp_path / "ref.tif", ref, wavelengths=wl)
    args = ["--scale", "4", "--psf", "gaussian", "--psf-sigma", "1"]
    assert main(["simulate", str(tmp_path / "ref.tif"), "--out-hr", str(tmp_path / "hr.tif"),
                 "--out-lr", str(tmp_path / "lr.tif"), *args]) == 0
    assert main(["fuse", "--hr", str(tmp_path / "hr.tif"), "--lr", str(tmp_path / "lr.tif"),
                 "--out", str(tmp_path / "sr.tif"), "--opt", "rank=8", *args]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "sr.tif"), str(tmp_path / "ref.tif"), "--scale", "4", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["psnr"] > 30 and set(metrics) >= {"sam", "ergas", "ssim", "rmse"}
    assert read_cube(tmp_path / "sr.tif").metadata["settings"]["options"]["rank"] == 8


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    np.save(tmp_path / "lr.npy", np.zeros((31, 10, 10), np.float32))
    np.save(tmp_path / "hr.npy", np.zeros((3, 10, 10), np.float32))
    code = main(["fuse", "--hr", str(tmp_path / "missing.png"), "--lr", str(tmp_path / "lr.npy"),
                 "--out", str(tmp_path / "o.tif"), "--scale", "8"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.png" in err and "Traceback" not in err
    assert not (tmp_path / "o.tif").exists()


def test_ctrl_c_writes_nothing(tmp_path, monkeypatch, capsys):
    import napari_hsisr.cli as cli

    def interrupted(gen, label):
        next(gen)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_with_progress", interrupted)
    out = tmp_path / "demo.tif"
    assert main(["demo", "--out", str(out)]) == 130
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert "nothing was written" in capsys.readouterr().err


def test_train_writes_weights_that_fuse_uses_and_warns_on_mismatch(tmp_path, capsys):
    from napari_hsisr.core.io import write_tiff
    from napari_hsisr.core.sample import sample_scene

    data = tmp_path / "cubes"
    data.mkdir()
    for i in range(3):
        ref, wl = sample_scene(64)
        write_tiff(data / f"scene{i}.tif", np.roll(ref, 16 * i, axis=-1), wavelengths=wl)
    weights = tmp_path / "w.pt"
    deg = ["--scale", "4", "--psf-sigma", "1"]
    assert main(["train", str(data), "--val", "scene2.tif", "--out", str(weights), "--epochs", "1",
                 "--steps", "2", "--patch", "16", "--batch", "2", "--width", "4", *deg]) == 0
    out = capsys.readouterr()
    assert "wrote" in out.out and "training on 2 cubes" in out.err
    record = json.loads(weights.with_name("w.pt.json").read_text())
    assert record["train"] == ["scene0.tif", "scene1.tif"] and record["validation"] == ["scene2.tif"]
    assert record["degradation"]["scale"] == 4 and len(record["history"]) == 1
    assert "val_psnr" in record["history"][0]
    # continue from the checkpoint for a second epoch
    assert main(["train", str(data), "--val", "scene2.tif", "--out", str(weights), "--epochs", "2", "--resume",
                 "--steps", "2", "--patch", "16", "--batch", "2", "--width", "4", *deg]) == 0
    assert [h["epoch"] for h in json.loads(weights.with_name("w.pt.json").read_text())["history"]] == [1, 2]
    capsys.readouterr()
    # the weights work through `fuse`, and another PSF produces the mismatch warning
    ref, wl = sample_scene(64)
    write_tiff(tmp_path / "ref.tif", ref, wavelengths=wl)
    other = ["--scale", "4", "--psf-sigma", "1.8"]
    assert main(["simulate", str(tmp_path / "ref.tif"), "--out-hr", str(tmp_path / "hr.tif"),
                 "--out-lr", str(tmp_path / "lr.tif"), *other]) == 0
    assert main(["fuse", "--hr", str(tmp_path / "hr.tif"), "--lr", str(tmp_path / "lr.tif"), "--method", "msfn",
                 "--opt", f"weights={weights}", "--out", str(tmp_path / "sr.tif"), *other]) == 0
    err = capsys.readouterr().err
    assert "warning: The MSFN weights were trained for another degradation" in err and "PSF differs" in err
    assert read_cube(tmp_path / "sr.tif").metadata["settings"]["warnings"]


def test_fuse_a_real_style_pair(tmp_path, capsys):
    """An 8-bit LZW camera image not an exact multiple of an int16 x 10000 reflectance cube, with a
    band table that flags a noisy band: blind needs no degradation flags, the ratio is fixed and
    said, the flagged band is dropped, the fit and the estimates are printed."""
    import tifffile

    from napari_hsisr import Degradation, simulate
    from napari_hsisr.core.physics import ToneCurve
    from napari_hsisr.core.sample import sample_scene

    cube, wl = sample_scene(96)
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="Canon 5D Mark II", wavelengths=wl)
    rgb, lr = simulate(cube, deg, seed=0)
    rgb8 = np.round(ToneCurve("srgb").encode(np.clip(rgb, 0, 1)) * 255).astype(np.uint8)
    rgb8 = np.pad(rgb8, ((0, 3), (0, 2), (0, 0)), mode="edge")  # 99 x 98 over 24 x 24: crop to 96 x 96
    tifffile.imwrite(tmp_path / "camera.tif", rgb8, compression="lzw")
    lr_i16 = np.round(np.moveaxis(lr, 0, -1) * 10000).astype(np.int16)  # (y, x, bands) like NEON
    lr_i16[..., 30] = np.random.default_rng(0).integers(0, 20000, lr_i16.shape[:2])  # a broken band
    tifffile.imwrite(tmp_path / "cube.tif", lr_i16, photometric="minisblack", planarconfig="contig")  # YXS
    lines = ["band,nanometer,noise"] + [f"{i + 1},{w / 1000:.4f},{int(i == 30)}" for i, w in enumerate(wl)]
    (tmp_path / "bands.csv").write_text("\n".join(lines) + "\n")
    code = main(["fuse", "--hr", str(tmp_path / "camera.tif"), "--lr", str(tmp_path / "cube.tif"),
                 "--value-scale", "1e-4", "--band-table", str(tmp_path / "bands.csv"), "--drop-bands", "auto",
                 "--method", "blind", "--opt", "solver=fast", "--out", str(tmp_path / "fused.tif")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "cropped" in err or "crop" in err
    assert "fit (relative residual): LR cube" in err and "estimated: encoding srgb" in err
    out = read_cube(tmp_path / "fused.tif")
    assert out.data.shape == (30, 96, 96) and out.wavelengths[-1] == 690
    settings = out.metadata["settings"]
    assert settings["lr_file_metadata"]["dropped_bands"] == [30] and "grid_match" in settings
    from napari_hsisr import evaluate

    assert evaluate(out.data, cube[:30])["psnr"] > 35
    assert main(["fuse", "--hr", str(tmp_path / "camera.tif"), "--lr", str(tmp_path / "cube.tif"),
                 "--drop-bands", "7-x", "--out", str(tmp_path / "x.tif")]) == 2
    assert "--drop-bands" in capsys.readouterr().err


def test_fuse_in_tiles_to_zarr_and_batch(tmp_path, capsys):
    """--tile with a .zarr output (inputs read tile by tile), the same as the whole-frame TIFF;
    'hsisr batch' on a manifest with a broken pair: a summary table, exit 1, the others written."""
    from napari_hsisr.core.io import write_tiff
    from napari_hsisr.core.sample import sample_scene

    ref, wl = sample_scene(128)
    write_tiff(tmp_path / "ref.tif", ref, wavelengths=wl)
    args = ["--scale", "8", "--psf", "gaussian", "--psf-sigma", "2"]
    assert main(["simulate", str(tmp_path / "ref.tif"), "--out-hr", str(tmp_path / "hr.tif"),
                 "--out-lr", str(tmp_path / "lr.tif"), *args]) == 0
    fuse = ["fuse", "--hr", str(tmp_path / "hr.tif"), "--lr", str(tmp_path / "lr.tif")]
    assert main([*fuse, "--out", str(tmp_path / "whole.tif")]) == 0
    assert main([*fuse, "--out", str(tmp_path / "tiled.zarr"), "--tile", "32"]) == 0
    err = capsys.readouterr().err
    assert "tiled: 16 tiles" in err
    whole, tiled = read_cube(tmp_path / "whole.tif"), read_cube(tmp_path / "tiled.zarr")
    np.testing.assert_allclose(tiled.wavelengths, whole.wavelengths)
    assert np.abs(tiled.data - whole.data).mean() < 2e-3
    # the input files are recorded with a result written tile by tile, as with a whole one
    for cube in (whole, tiled):
        settings = cube.metadata["settings"]
        assert settings["hr_file"] == str(tmp_path / "hr.tif") and settings["lr_file"] == str(tmp_path / "lr.tif")
    # a tiled TIFF is written tile by tile (a tiled OME BigTIFF): the same values and wavelengths
    assert main([*fuse, "--out", str(tmp_path / "tiled.tif"), "--tile", "32"]) == 0
    assert "tiled OME BigTIFF" in capsys.readouterr().err
    tiff = read_cube(tmp_path / "tiled.tif")
    np.testing.assert_array_equal(tiff.data, tiled.data)
    np.testing.assert_allclose(tiff.wavelengths, whole.wavelengths)
    assert tiff.metadata["settings"]["lr_file"] == str(tmp_path / "lr.tif")
    assert main([*fuse, "--out", str(tmp_path / "bad.zarr"), "--tile", "abc"]) == 2
    assert "--tile expects" in capsys.readouterr().err

    (tmp_path / "pairs.csv").write_text("name,hr,lr\ngood,hr.tif,lr.tif\nbroken,hr.tif,nothing.tif\n")
    (tmp_path / "out").mkdir()
    assert main(["batch", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "out"), "--workers", "1"]) == 1
    out = capsys.readouterr()
    assert "| good | done |" in out.out and "| broken | failed |" in out.out and "1 done" in out.err
    np.testing.assert_allclose(read_cube(tmp_path / "out" / "good.tif").data, whole.data, atol=1e-6)


def test_fuse_on_local_workers_equals_the_tiles_in_process(tmp_path, capsys):
    """hsisr fuse --workers 1: the tiles as dask tasks, written tile by tile; the same cube (to
    1e-5) as --tile in this process. --workers 0 is refused before anything runs."""
    from napari_hsisr.core.io import write_image, write_tiff
    from napari_hsisr.core.sample import sample_pair

    pair = sample_pair(size=64)
    write_image(tmp_path / "hr.tif", pair.hr)
    write_tiff(tmp_path / "lr.tif", pair.lr, wavelengths=pair.wavelengths)
    base = ["fuse", "--hr", tmp_path / "hr.tif", "--lr", tmp_path / "lr.tif", "--psf-sigma", "2", "--srf", "Nikon D700",
            "--tile", "32"]
    assert main([str(a) for a in base + ["--out", tmp_path / "here.tif"]]) == 0
    assert main([str(a) for a in base + ["--out", tmp_path / "there.tif", "--workers", "1"]]) == 0
    here, there = read_cube(tmp_path / "here.tif"), read_cube(tmp_path / "there.tif")
    np.testing.assert_allclose(np.asarray(there.data), np.asarray(here.data), atol=1e-5, rtol=0)
    assert there.metadata["settings"]["tiling"]["workers"] == 1
    assert main([str(a) for a in base + ["--out", tmp_path / "none.tif", "--workers", "0"]]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err and not (tmp_path / "none.tif").exists()


def test_an_error_raised_while_ctrl_c_unwinds_is_a_stop(monkeypatch, tmp_path, capsys):
    """A library that raises while a KeyboardInterrupt unwinds (a lock released twice) still gives
    the interrupted exit code and message, not 'unexpected error' (seen once in CI with SIGINT)."""
    import napari_hsisr.cli as cli

    def interrupted(args):
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("release unlocked lock")

    args = cli.build_parser().parse_args(["methods"])
    monkeypatch.setattr(args, "func", interrupted)
    assert cli._dispatch(args) == 130
    assert "stopped" in capsys.readouterr().err
