"""The bad-input and fault matrix: every row is an input through one entry point (API, CLI,
reader, writer) and the one-line outcome it must have. Nothing is written on failure, inputs are
never replaced, no traceback reaches a user."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

import napari_hsisr as hsisr
from napari_hsisr import Degradation, InputError
from napari_hsisr.cli import main
from napari_hsisr.core.io import read_cube, write_tiff
from napari_hsisr.core.sample import sample_pair

PAIR_SIZE, PAIR_SCALE = 32, 4  # the shared `pair` fixture (conftest.py)


@pytest.fixture
def files(tmp_path, pair):
    """hr.tif (Y, X, 3), lr.tif (bands, y, x) with wavelengths, ref.tif; all small."""
    from napari_hsisr.core.io import write_image

    write_image(tmp_path / "hr.tif", pair.hr)
    write_tiff(tmp_path / "lr.tif", pair.lr, wavelengths=pair.wavelengths)
    write_tiff(tmp_path / "ref.tif", pair.reference, wavelengths=pair.wavelengths)
    return tmp_path


def _cli(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _fuse_args(files, *extra, out="out.tif", scale="4"):
    return ["fuse", "--hr", files / "hr.tif", "--lr", files / "lr.tif", "--out", files / out, "--scale", scale,
            "--psf-sigma", "1", *extra]


# ---------------------------------------------------------------------- the API
API_ROWS = [
    # (id, call, expected message)
    ("nan sigma", lambda p: Degradation(scale=4, psf_sigma=float("nan")), "finite"),
    ("nan sigma2", lambda p: Degradation(scale=4, psf_sigma=1, psf_sigma2=float("nan")), "finite"),
    ("nan angle", lambda p: Degradation(scale=4, psf_sigma=1, psf_sigma2=0.5, psf_angle=float("nan")), "finite"),
    ("tiny sigma", lambda p: Degradation(scale=4, psf_sigma=1e-6), "at least 0.1"),
    ("scale None", lambda p: Degradation(scale=None), "scale must be an integer"),
    ("scale huge", lambda p: Degradation(scale=100000), "beyond 1024"),
    ("device tpu", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, device="tpu"), "device 'tpu'"),
    ("unknown method", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, method="magic"), "Unknown method 'magic'"),
    ("mu -1", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, mu=-1), "'mu' of method 'fast' must be >= 1e-06 (or 0"),
    ("mu 1e-30", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, mu=1e-30), "'mu' of method 'fast' must be >= 1e-06"),
    ("lam 1e30", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, lam=1e30), "'lam' of method 'fast' must be <= 10000"),
    ("eps 1e-30", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, eps=1e-30),
     "'eps' of method 'fast' must be >= 1e-08"),
    ("unsupervised mu 1e-30", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, method="unsupervised", mu=1e-30),
     "'mu' of method 'unsupervised' must be >= 1e-06"),
    ("msfn mu 1e9", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, method="msfn", mu=1e9), "must be <= 1000"),
    ("rank -5", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, rank=-5), "'rank' of method 'fast' must be >= 0"),
    ("iterations -1", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, iterations=-1), "'iterations'"),
    ("steps -5", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, method="unsupervised", steps=-5), "'steps'"),
    ("rank abc", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, rank="abc"), "whole number, got 'abc'"),
    ("lam NaN", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, lam="NaN"), "'lam' of method 'fast' must be finite"),
    ("consistency text", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, method="msfn", consistency="maybe"),
     "true or false"),
    ("all-zero HR", lambda p: hsisr.fuse(np.zeros_like(p.hr), p.lr, p.degradation), "HR image: every value is zero"),
    ("all-zero LR", lambda p: hsisr.fuse(p.hr, np.zeros_like(p.lr), p.degradation), "LR-HS cube: every value is zero"),
    ("negative HR", lambda p: hsisr.fuse(p.hr - 0.5, p.lr, p.degradation), "cannot be that negative"),
    ("HR channels first", lambda p: hsisr.fuse(np.moveaxis(p.hr, -1, 0), p.lr, p.degradation), "channels-first"),
    ("LR bands last", lambda p: hsisr.fuse(p.hr, np.moveaxis(p.lr, 0, -1), p.degradation), "bands-last"),
    ("1e39", lambda p: hsisr.fuse(p.hr, np.where(p.lr > 0.5, 1e39, p.lr.astype(np.float64)), p.degradation),
     "beyond what float32 holds"),
    ("huge seed", lambda p: hsisr.fuse(p.hr, p.lr, p.degradation, seed=2**70), "seed must be between"),
    ("swapped pair", lambda p: hsisr.fuse(p.lr, p.hr, p.degradation), "the two look swapped; swap them"),
    ("LR bands last, not square", lambda p: hsisr.fuse(p.hr[:, :16], np.moveaxis(p.lr[:, :, :4], 0, -1),
                                                       p.degradation), "looks bands-last (y, x, C)"),
    ("simulate snr nan", lambda p: hsisr.simulate(p.reference, p.degradation, noise_snr_db=float("nan")),
     "noise_snr_db (the LR-HS SNR) must be a finite number"),
    ("simulate hr snr nan", lambda p: hsisr.simulate(p.reference, p.degradation, hr_snr_db=float("nan")),
     "hr_snr_db (the HR image's SNR) must be a finite number"),
    ("simulate snr -1000", lambda p: hsisr.simulate(p.reference, p.degradation, noise_snr_db=-1000), "-20..200 dB"),
    ("simulate NaN cube", lambda p: hsisr.simulate(np.where(p.reference > 0.5, np.nan, p.reference), p.degradation),
     "reference cube: "),
    ("simulate complex cube", lambda p: hsisr.simulate(p.reference.astype(complex), p.degradation),
     "unsupported data type complex128"),
    ("simulate seed -1", lambda p: hsisr.simulate(p.reference, p.degradation, seed=-1), "seed must be between"),
    ("simulate no degradation", lambda p: hsisr.simulate(p.reference, {"scale": 4}), "must be a napari_hsisr"),
    ("shift 1e9", lambda p: Degradation(scale=4, shift=(1e9, 0)), "more than 16 LR pixels"),
    ("psf_size text", lambda p: Degradation(scale=4, psf_size="x"), "psf_size must be a whole number"),
    ("wavelengths text", lambda p: Degradation(scale=4, srf="Nikon D700", wavelengths="abc"), "wavelengths must be"),
    ("srf 0-D", lambda p: Degradation(scale=4, srf=np.array(1)), "a response matrix is (bands, k)"),
    ("complex PSF", lambda p: Degradation(scale=4, psf=np.ones((4, 4), complex)), "kernel has data type complex"),
    ("gsa one LR pixel", lambda p: hsisr.fuse(p.hr, p.lr[:, :1, :1] * np.ones((1, 1, 1)),
                                              Degradation(scale=32, psf="box"), method="gsa"),
     "method 'gsa' produced"),
]


@pytest.mark.parametrize("row", API_ROWS, ids=[r[0] for r in API_ROWS])
def test_api_refuses_with_one_clear_message(pair, row):
    _, call, expected = row
    with pytest.raises(InputError, match=None) as info:
        call(pair)
    assert expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_options_parse_from_text(pair):
    r = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast", rank="8", band_weights="False")
    assert r.settings["options"]["rank"] == 8 and r.settings["options"]["band_weights"] is False


def test_radiometry_mismatch_warns_but_fuses(pair):
    r = hsisr.fuse(pair.hr * 1000, pair.lr, pair.degradation)
    ref = hsisr.fuse(pair.hr, pair.lr, pair.degradation)
    assert any("differ in level by a factor of 1e+03" in w for w in r.settings["warnings"])
    assert abs(hsisr.evaluate(r.cube, pair.reference)["psnr"] - hsisr.evaluate(ref.cube, pair.reference)["psnr"]) < 0.1


def test_memory_estimate_refuses_what_cannot_fit(pair, monkeypatch):
    import napari_hsisr.core.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1_000_000)
    with pytest.raises(InputError, match=r"Fuse it in tiles: tile=\d+"):
        hsisr.fuse(pair.hr, pair.lr, pair.degradation)


def test_what_does_not_fit_whole_is_fused_in_tiles_without_asking(monkeypatch):
    """Under a cap the whole frame does not fit (about 134 MB needed, 100 MB free): fuse() with no
    tile (and tile='auto') fuses in tiles that do, and says so in the settings; the result matches
    the whole-frame one. The whole-frame step itself still refuses."""
    import napari_hsisr.core.memory as memory
    from napari_hsisr.core.frame import fuse_frame_iter

    pair = sample_pair(size=256)

    whole = hsisr.fuse(pair.hr, pair.lr, pair.degradation)
    monkeypatch.setattr(memory, "available_bytes", lambda: 100_000_000)
    with pytest.raises(InputError, match="Fuse it in tiles"):
        next(fuse_frame_iter(pair.hr, pair.lr, pair.degradation))
    for tile in (None, "auto"):
        tiled = hsisr.fuse(pair.hr, pair.lr, pair.degradation, tile=tile)
        assert tiled.settings["tiling"]["tiles"] >= 4
    p_whole = hsisr.evaluate(whole.cube, pair.reference)["psnr"]
    assert abs(hsisr.evaluate(np.asarray(tiled.cube), pair.reference)["psnr"] - p_whole) < 0.1


def test_auto_tiles_are_bounded_whatever_the_free_memory(monkeypatch):
    import napari_hsisr.core.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 200 * 2**30)  # a big machine: tiles still bounded
    side = memory.suggest_tile("fast", 31, 8)
    window = side + 2 * 9 * 8
    assert memory.estimate_bytes("fast", window * window, 31) <= memory.TILE_WINDOW_BUDGET


# ---------------------------------------------------------------------- the CLI contract
def test_out_that_is_an_input_is_refused_and_the_input_survives(files, capsys):
    before = (files / "lr.tif").read_bytes()
    (files / "sub").mkdir()
    for out in ("lr.tif", "hr.tif", "sub/../lr.tif"):
        code, _, err = _cli(_fuse_args(files, out=out), capsys)
        assert code == 2 and "is an input" in err and err.count("\n") == 1
    os.link(files / "lr.tif", files / "hardlink.tif")  # the same inode under another name
    code, _, err = _cli(_fuse_args(files, out="hardlink.tif"), capsys)
    assert code == 2 and "is an input" in err
    assert (files / "lr.tif").read_bytes() == before


CLI_ROWS = [
    ("unknown method", ["--method", "magic"], "Unknown method 'magic'"),
    ("rank abc", ["--opt", "rank=abc"], "whole number, got 'abc'"),
    ("lam NaN", ["--opt", "lam=NaN"], "must be finite"),
    ("opt without =", ["--opt", "rank"], "--opt expects key=value"),
    ("wavelengths dash", ["--wavelengths", "400-700"], "--wavelengths expects start:stop:step"),
    ("wavelengths zero step", ["--wavelengths", "400:700:0"], "the step must be > 0"),
    ("huge seed", ["--seed", str(2**70)], "seed must be between"),
    ("scale huge", [], "--scale 100000 but the HR image"),
    ("bad shift", ["--shift", "1"], "--shift expects 'dy,dx'"),
    ("drop bands text", ["--drop-bands", "a-b"], "--drop-bands expects"),
    ("bad encoding", ["--hr-encoding", "log"], "hr_encoding 'log'"),
]


@pytest.mark.parametrize("row", CLI_ROWS, ids=[r[0] for r in CLI_ROWS])
def test_cli_user_errors_are_one_line_exit_2(files, capsys, row):
    _, extra, expected = row
    args = _fuse_args(files, *extra, scale="100000" if row[0] == "scale huge" else "4")
    code, _, err = _cli(args, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not (files / "out.tif").exists()


@pytest.mark.parametrize("out,expected", [("folder", "is a folder"), ("missing/out.tif", "does not exist"),
                                          ("out.png", "results are written as TIFF"),
                                          ("/proc/out.tif", "cannot write in /proc")])
def test_output_checked_before_computing(files, capsys, monkeypatch, out, expected):
    import napari_hsisr.core.api as api

    (files / "folder").mkdir()
    monkeypatch.setattr(api, "fuse_iter", lambda *a, **k: pytest.fail("computed before checking --out"))
    target = out if out.startswith("/") else files / out
    code, _, err = _cli(["fuse", "--hr", files / "hr.tif", "--lr", files / "lr.tif", "--out", target], capsys)
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not (files / "missing").exists()  # parent folders are not created silently


def test_read_only_output_folder(files, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    ro = files / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    code, _, err = _cli(_fuse_args(files, out="ro/out.tif"), capsys)
    assert code == 2 and "cannot write" in err


def test_unexpected_errors_are_one_line_unless_debug(files, capsys, monkeypatch):
    import napari_hsisr.core.api as api

    def boom(*a, **k):
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(api, "fuse_iter", boom)
    code, _, err = _cli(_fuse_args(files), capsys)
    assert code == 1 and err.count("\n") == 1 and "run with --debug" in err and "Traceback" not in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", *map(str, _fuse_args(files))])


def test_version_help_methods_srfs(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "napari-hsisr" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["fuse", "--help"])
    text = capsys.readouterr().out
    assert "(default: fast)" in text and "(default: hr)" in text
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "SAM (degrees)" in capsys.readouterr().out
    assert main(["methods"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("    --opt")]
    import re

    fast = lines[:9]
    assert len({re.match(r"    --opt \S+\s{2,}", ln).end() for ln in fast}) == 1  # the help column is aligned
    assert main(["srfs"]) == 0
    assert "nikon_d700_cave" in capsys.readouterr().out


def test_progress_lines_when_not_a_terminal(files, capsys, monkeypatch):
    import napari_hsisr.cli as cli

    monkeypatch.setattr(cli, "PROGRESS_LINE_EVERY_S", 0.0)
    code, _, err = _cli(_fuse_args(files, "--method", "fast"), capsys)
    assert code == 0 and "fast: step" in err


def test_simulate_writes_an_rgb_image_and_fuse_reuses_its_degradation(files, capsys):
    code, _, err = _cli(["simulate", files / "ref.tif", "--out-hr", files / "sim_hr.tif", "--out-lr",
                         files / "sim_lr.tif", "--scale", "4", "--psf-sigma", "1.3"], capsys)
    assert code == 0, err
    with tifffile.TiffFile(files / "sim_hr.tif") as tif:
        assert len(tif.pages) == 1 and tif.pages[0].shape == (32, 32, 3)
    code, _, err = _cli(["fuse", "--hr", files / "sim_hr.tif", "--lr", files / "sim_lr.tif", "--out",
                         files / "sim_sr.tif"], capsys)  # no --scale, no --psf-sigma: the file says
    assert code == 0 and "using the degradation the LR file records" in err
    rec = read_cube(files / "sim_sr.tif").metadata["settings"]["degradation"]
    assert rec["scale"] == 4 and "sigma=1.3" in rec["psf"]


# ---------------------------------------------------------------------- readers and writers
def test_mat_cube_takes_the_last_axis_as_bands(tmp_path):
    import scipy.io

    scipy.io.savemat(tmp_path / "cube.mat", {"cube": np.random.default_rng(0).random((16, 16, 31))})
    assert read_cube(tmp_path / "cube.mat").data.shape == (31, 16, 16)


def test_truncated_multipage_hr_tiff_is_refused(tmp_path):
    path = tmp_path / "hr.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((3, 64, 64)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="hr.tif"):
        hsisr.read_image(path)


def test_plain_srf_matrix_file_is_a_matrix_on_the_bands(tmp_path):
    m = np.random.default_rng(0).random((31, 3))
    np.save(tmp_path / "NikonD700.npy", m)
    deg = Degradation(scale=4, srf=str(tmp_path / "NikonD700.npy"), wavelengths=np.arange(400, 701, 10))
    np.testing.assert_allclose(deg.srf, m / m.sum(0))
    with pytest.raises(InputError, match="one row per band"):
        Degradation(scale=4, srf=str(tmp_path / "NikonD700.npy"), wavelengths=np.arange(400, 701, 20))


def test_writer_says_why_it_cannot_save(tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    from napari_hsisr._writer import write_cube_tiff

    seen = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: seen.append(str(msg)))
    cube = np.full((3, 4, 4), np.nan, np.float32)
    with pytest.raises(InputError):
        write_cube_tiff(str(tmp_path / "x.tif"), cube, {"name": "bad", "metadata": {}})
    assert seen and "NaN" in seen[0] and "bad" in seen[0]
    assert not list(tmp_path.iterdir())


def test_stale_temporary_files_are_removed_on_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.tif.{dead}-abcdef012345.tmp.tif"
    stale.write_bytes(b"half a file")
    alive = tmp_path / f".out.tif.{os.getpid()}-abcdef012345.tmp.tif"  # a writer still running
    alive.write_bytes(b"in progress")
    write_tiff(tmp_path / "out.tif", np.ones((2, 4, 4), np.float32))
    assert not stale.exists() and alive.exists() and (tmp_path / "out.tif").exists()


def test_sigterm_during_a_run_leaves_nothing(files):
    """SIGTERM unwinds like Ctrl-C: exit 130, no output, no temporary file."""
    script = ("import sys, time\n"
              "import napari_hsisr.core.io.tiff as io\n"
              "real = io._atomic_imwrite\n"
              "def slow(*a, **k):\n"
              "    def stall(path, *b, **c):\n"
              "        open(path, 'wb').write(b'x' * 1000)\n"
              "        print('writing', flush=True)\n"
              "        time.sleep(30)\n"
              "    io.tifffile_imwrite = stall\n"
              "    import tifffile; tifffile.imwrite = stall\n"
              "    return real(*a, **k)\n"
              "io._atomic_imwrite = slow\n"
              "from napari_hsisr.cli import main\n"
              f"sys.exit(main({[str(a) for a in _fuse_args(files)]!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "writing" in line
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped: nothing was written" in err
    leftovers = [p.name for p in files.iterdir() if p.name.startswith(".") or p.name == "out.tif"]
    assert leftovers == []
    time.sleep(0)


def test_a_scene_too_large_for_memory_is_fused_in_tiles_without_flags(tmp_path, monkeypatch, capsys):
    """No --tile: a frame whose estimate exceeds the memory there is (about 535 MB needed, 400 MB
    free) is fused in tiles and written tile by tile, not refused (issue 23)."""
    import napari_hsisr.core.memory as memory
    from napari_hsisr.core.io import write_image

    pair = sample_pair(size=512)
    write_image(tmp_path / "hr.tif", pair.hr)
    write_tiff(tmp_path / "lr.tif", pair.lr, wavelengths=pair.wavelengths)
    monkeypatch.setattr(memory, "available_bytes", lambda: 400 * 2**20)
    code, _, err = _cli(["fuse", "--hr", tmp_path / "hr.tif", "--lr", tmp_path / "lr.tif", "--out",
                         tmp_path / "out.tif", "--psf-sigma", "2", "--srf", "nikon_d700_cave"], capsys)
    assert code == 0, err
    assert "fused in tiles" in err and "tiled OME BigTIFF" in err
    assert read_cube(tmp_path / "out.tif").data.shape == (31, 512, 512)
def test_train_without_validation_says_so(tmp_path, capsys, pair):
    np.save(tmp_path / "cube.npy", pair.reference)
    code, out, err = _cli(["train", tmp_path / "cube.npy", "--out", tmp_path / "w.pt", "--epochs", "1", "--steps", "1",
                           "--batch", "1", "--patch", "16", "--width", "4", "--scale", "4", "--psf-sigma", "1",
                           "--wavelengths", "400:700:10", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "nan" not in (out + err).lower() and "no validation cubes" in out + err


def test_corrupt_weights_record_is_one_line(tmp_path, pair):
    import shutil

    from napari_hsisr.core.methods.msfn import shipped_weights

    src = shipped_weights()
    shutil.copy(src, tmp_path / "w.pt")
    (tmp_path / "w.pt.json").write_text("{not json")
    p = sample_pair(size=64)
    with pytest.raises(InputError, match="damaged") as info:
        hsisr.fuse(p.hr, p.lr, p.degradation, method="msfn", weights=str(tmp_path / "w.pt"))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- user errors that ended as exit 1
@pytest.fixture
def bad_files(files, pair):
    """Files a user may pass by mistake: a folder, a crafted pickle posing as weights (with a
    matching record), a state dict that is not MSFN's, garbage as a checkpoint, broken manifests,
    a bands-last cube, complex and NaN cubes."""
    import json
    import pickle

    import torch

    from napari_hsisr.core.training import sha256

    (files / "adir").mkdir()

    class Evil:
        def __reduce__(self):
            return (open, (str(files / "ran"), "w"))

    (files / "crafted.pt").write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    torch.save({"state": {"w": torch.zeros(2)}}, files / "other.pt")
    for name in ("crafted.pt", "other.pt"):
        (files / f"{name}.json").write_text(json.dumps({"sha256": sha256(files / name), "model_config": {
            "bands": 31, "channels": 3, "scale": 4, "width": 16}}))
    (files / "garbage.ckpt").write_bytes(b"junk")
    (files / "bad.yaml").write_text("- {name: [unclosed\n")
    (files / "binary.csv").write_bytes(bytes(range(256)))
    (files / "magic.csv").write_text("name,hr,lr,method\np1,hr.tif,lr.tif,magic\n")
    (files / "rank.csv").write_text("name,hr,lr,options\np1,hr.tif,lr.tif,rank=abc\n")
    (files / "scale.csv").write_text("name,hr,lr,scale\np1,hr.tif,lr.tif,four\n")
    np.save(files / "lr_last.npy", np.moveaxis(pair.lr, 0, -1))
    np.save(files / "complex.npy", pair.reference.astype(np.complex64))
    ref = pair.reference.copy()
    ref[0, 0, 0] = np.nan
    np.save(files / "refnan.npy", ref)
    np.save(files / "ref.npy", pair.reference)
    return files


_SRF = ["--srf", "Nikon D700 (CAVE fusion papers)"]
_TRAIN = ["--out", "w.pt", "--scale", "4", "--psf-sigma", "1", "--wavelengths", "400:700:10", "--epochs", "1",
          "--steps", "1", "--patch", "16", "--batch", "1", "--width", "4", "--device", "cpu", *_SRF]
_SIM = ["--out-hr", "sh.tif", "--out-lr", "sl.tif", "--scale", "4", "--psf-sigma", "1", *_SRF]
USER_ERRORS = [
    # (id, argv relative to the files folder, expected in the one error line); before: exit 1 or no hint
    ("swapped --hr/--lr", ["fuse", "--hr", "lr.tif", "--lr", "hr.tif", "--out", "o.tif"], "look swapped; swap them"),
    ("swapped, tiled", ["fuse", "--hr", "lr.tif", "--lr", "hr.tif", "--out", "o.tif", "--tile", "16"], "look swapped"),
    ("bands-last LR", ["fuse", "--hr", "hr.tif", "--lr", "lr_last.npy", "--out", "o.tif"], "looks bands-last"),
    ("folder as HR", ["fuse", "--hr", "adir", "--lr", "lr.tif", "--out", "o.tif"], "adir: is a folder; give the HR"),
    ("folder as HR, tiled", ["fuse", "--hr", "adir", "--lr", "lr.tif", "--out", "o.tif", "--tile", "16"],
     "is a folder"),
    ("folder as PSF", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--psf", "adir"], "is a folder"),
    ("folder as SRF", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--srf", "adir"], "is a folder"),
    ("folder as band table", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--band-table", "adir"],
     "is a folder"),
    ("crafted weights", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--method", "msfn", "--opt",
                         "weights=crafted.pt"], "not a plain file of torch tensors"),
    ("foreign weights", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--method", "msfn", "--opt",
                         "weights=other.pt"], "is not weights this version can read"),
    ("folder as weights", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--method", "msfn", "--opt",
                           "weights=adir"], "is a folder"),
    ("huge shift", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--shift", "1e9,0"],
     "more than 16 LR pixels"),
    ("mu 1e-30", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--opt", "mu=1e-30"], "'mu'"),
    ("lam 1e30", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--opt", "lam=1e30"], "'lam'"),
    ("flag type", ["fuse", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "o.tif", "--seed", "x"],
     "invalid int value: 'x' (see 'hsisr fuse --help')"),
    ("simulate snr nan", ["simulate", "ref.tif", *_SIM, "--snr", "nan"], "must be a finite number of dB"),
    ("simulate NaN cube", ["simulate", "refnan.npy", *_SIM, "--wavelengths", "400:700:10"], "1 NaN/Inf value"),
    ("simulate complex", ["simulate", "complex.npy", *_SIM, "--wavelengths", "400:700:10"], "complex64"),
    ("simulate seed -1", ["simulate", "ref.tif", *_SIM, "--seed", "-1"], "seed must be between"),
    ("evaluate complex", ["evaluate", "complex.npy", "complex.npy"], "complex.npy: holds complex64 values"),
    ("manifest YAML", ["batch", "bad.yaml", "--out", "adir"], "not valid YAML at line 2"),
    ("manifest binary", ["batch", "binary.csv", "--out", "adir"], "not a text file"),
    ("manifest unknown method", ["batch", "magic.csv", "--out", "adir"], "pair 1 (p1): Unknown method 'magic'"),
    ("manifest bad option", ["batch", "rank.csv", "--out", "adir"], "pair 1 (p1): option 'rank'"),
    ("manifest bad scale", ["batch", "scale.csv", "--out", "adir"], "pair 1 (p1): scale 'four' is not a number"),
    ("train width 0", ["train", "ref.npy", *_TRAIN, "--width", "0"], "width (channels at full resolution)"),
    ("train lr nan", ["train", "ref.npy", *_TRAIN, "--lr-rate", "nan"], "learning rate must be"),
    ("train snr nan", ["train", "ref.npy", *_TRAIN, "--snr", "nan"], "noise SNR must be a finite number"),
    ("train NaN cube", ["train", "refnan.npy", *_TRAIN], "training cube 0: 1 NaN/Inf"),
    ("train bad checkpoint", ["train", "ref.npy", *_TRAIN, "--resume", "--checkpoint", "garbage.ckpt"],
     "checkpoint garbage.ckpt is not a plain file of torch tensors"),
    ("train foreign checkpoint", ["train", "ref.npy", *_TRAIN, "--resume", "--checkpoint", "other.pt"],
     "not a training checkpoint of this program"),
    ("train --out folder", ["train", "ref.npy", *_TRAIN, "--out", "adir"], "--out adir is a folder"),
    ("train --out missing folder", ["train", "ref.npy", *_TRAIN, "--out", "nowhere/w.pt"], "does not exist"),
]


@pytest.mark.parametrize("row", USER_ERRORS, ids=[r[0] for r in USER_ERRORS])
def test_user_errors_are_one_line_exit_2_with_the_likely_mistake(bad_files, capsys, monkeypatch, row):
    _, argv, expected = row
    monkeypatch.chdir(bad_files)
    before = {p.name: p.stat().st_mtime_ns for p in bad_files.iterdir()}
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err and "unexpected" not in err
    assert not (bad_files / "ran").exists()  # the crafted pickle never ran
    assert {p.name: p.stat().st_mtime_ns for p in bad_files.iterdir() if p.name in before} == before
    assert not any((bad_files / n).exists() for n in ("o.tif", "sh.tif", "sl.tif", "w.pt"))
