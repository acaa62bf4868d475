"""Real pairs: the forward model's real-world parts, the masked solver, the fit report and its
warnings, the output grid, and small crops of the real pairs in ../shared/data (skipped when absent)."""

from pathlib import Path

import numpy as np
import pytest

import napari_hsisr as hsisr
from napari_hsisr import Degradation, simulate
from napari_hsisr.core.physics import ToneCurve
from napari_hsisr.core.sample import sample_pair, sample_scene

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CAVE = DATA / "cave" / "complete_ms_data"
NEON = DATA / "real_pairs" / "neon_harv"


@pytest.mark.parametrize("name", ["linear", "srgb", "gamma:2.2"])
def test_tone_curves_invert(name):
    v = np.linspace(0, 1, 101)
    curve = ToneCurve.parse(name)
    np.testing.assert_allclose(curve.decode(curve.encode(v)), v, atol=1e-12)
    assert curve.decode(0.5) <= 0.5 + 1e-12  # display values overstate dark linear light


def test_bad_encoding_is_one_clear_error():
    with pytest.raises(hsisr.InputError, match="gamma:<g>"):
        Degradation(scale=4, hr_encoding="gamma:9")
    with pytest.raises(hsisr.InputError, match="'auto', 'linear', 'srgb'"):
        Degradation(scale=4, hr_encoding="log")


def test_shift_moves_the_sampling_and_the_layer(rng):
    """A shift of whole pixels is exactly a translation of the LR sampling."""
    z = rng.random((2, 32, 32))
    base = Degradation(scale=4, psf="box")
    moved = Degradation(scale=4, psf="box", shift=(4, -4))
    # LR pixel (i, j) of the moved sampling sees the block of (i + 1, j - 1)
    np.testing.assert_allclose(moved.spatial(z)[:, 1:-2, 2:-1], base.spatial(z)[:, 2:-1, 1:-2], atol=1e-12)
    assert moved.lr_translate == pytest.approx((1.5 + 4, 1.5 - 4))
    x = rng.standard_normal((2, 8, 8))
    assert np.sum(moved.spatial(z) * x) == pytest.approx(np.sum(z * moved.spatial_adjoint(x)), rel=1e-10)


def test_circular_operator_equals_the_boundary_one_inside(rng):
    from napari_hsisr.core.estimation import footprint_valid

    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.5, psf_size=8, shift=(2.3, -1.7))
    z = rng.random((3, 48, 40))
    inside = footprint_valid(deg.kernel, 4, (48, 40), mass=1 - 1e-12)
    assert inside.sum() > 50
    np.testing.assert_allclose(deg.spatial_operator.circular(z)[:, inside], deg.spatial(z)[:, inside], atol=1e-12)


def test_masked_solver_is_the_closed_form_without_masks_and_the_least_squares_with_them(rng):
    """PCG on the extended domain: one step without masks; the masked normal equations' solution
    (checked against a dense solve) with them."""
    from napari_hsisr.core.solvers.fourier import SubspaceSystem

    deg = Degradation(scale=2, psf="gaussian", psf_sigma=0.8, psf_size=4)
    p, k, Y = 2, 2, 8
    hr = rng.random((k, Y, Y))
    xa = rng.random((p, Y // 2, Y // 2))
    RE = rng.random((k, p))
    prior = rng.random((p, Y, Y))
    plain = SubspaceSystem(Degradation(scale=2, psf="box"), hr, xa, RE, 1.0, 0.1)
    plain(prior)
    assert not plain.masked and plain.iterations == 0
    hr_valid = np.ones((Y, Y), bool)
    hr_valid[2:4, 3:6] = False
    lr_valid = np.ones((Y // 2, Y // 2), bool)
    lr_valid[1, 2] = False
    sys_ = SubspaceSystem(deg, hr, xa, RE, 1.0, 0.1, hr_valid, lr_valid, tol=1e-12, max_iter=500)
    a = sys_.solve_extended(sys_.extend(prior))
    # dense normal equations on the extended domain
    n = p * sys_.ext[0] * sys_.ext[1]
    basis = np.eye(n).reshape(n, p, *sys_.ext)
    N = np.stack([sys_._normal(b).ravel() for b in basis], 1)
    rhs = sys_.rhs(sys_.extend(prior))
    np.testing.assert_allclose(a.ravel(), np.linalg.solve(N, rhs.ravel()), atol=1e-8)


def test_isolated_masked_pixels_do_not_spike():
    """5 % of HR pixels NaN at random: the masked pixels get the inpainted prior, no spikes."""
    p = sample_pair(size=128, scale=4)
    hr = p.hr.copy()
    masked = np.random.default_rng(0).random(hr.shape[:2]) < 0.05
    hr[masked] = np.nan
    res = hsisr.fuse(hr, p.lr, p.degradation, method="fast")
    err = np.abs(res.cube - p.reference).max(0)
    assert err[masked].max() < 1.0 and err[~masked].max() < 0.7  # measured 0.83 / 0.52; free: 4.7
    clean = hsisr.fuse(p.hr, p.lr, p.degradation, method="fast")
    keep = ~masked
    mse = lambda c: np.mean((c - p.reference)[:, keep] ** 2)  # noqa: E731
    assert mse(res.cube) < 6 * mse(clean.cube)  # measured 6.5e-5 against 1.4e-5 (every LR pixel has ~1 hole)


def test_fit_report_is_quiet_on_a_simulated_pair_and_warns_on_a_wrong_encoding(pair):
    ok = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast")
    assert ok.settings["fit"]["lr"]["relative"] < 0.01 and ok.settings["fit"]["hr"]["relative"] < 0.01
    assert "warnings" not in ok.settings
    hr8 = np.round(ToneCurve("srgb").encode(np.clip(pair.hr, 0, 1)) * 255).astype(np.uint8)
    wrong = hsisr.fuse(hr8, pair.lr, pair.degradation.with_(hr_encoding="linear"), method="fast")
    text = " ".join(wrong.settings["warnings"])
    assert "does not explain" in text and "hr_encoding='srgb'" in text
    right = hsisr.fuse(hr8, pair.lr, pair.degradation, method="fast")  # auto: sRGB for 8-bit
    assert "warnings" not in right.settings


def test_fit_report_names_a_misregistration(rng):
    cube, wl = sample_scene(96)
    true = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="Nikon D700", wavelengths=wl,
                       shift=(3.0, -2.0))
    rgb, lr = simulate(cube, true, seed=0)
    told_no_shift = true.with_(shift=(0.0, 0.0))
    res = hsisr.fuse(rgb, lr, told_no_shift.with_(hr_encoding="linear"), method="fast")
    assert any("misregistration" in w for w in res.settings.get("warnings", []))
    fixed = hsisr.fuse(rgb, lr, true.with_(hr_encoding="linear"), method="fast")
    assert hsisr.evaluate(fixed.cube, cube)["psnr"] > hsisr.evaluate(res.cube, cube)["psnr"] + 3


def test_result_on_the_lr_frame(rng):
    """grid='lr' resamples the result onto the LR cube's frame by the model's shift."""
    cube, wl = sample_scene(64)
    true = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="Nikon D700", wavelengths=wl,
                       shift=(2.0, 1.0))
    rgb, lr = simulate(cube, true, seed=0)
    d = true.with_(hr_encoding="linear")
    on_hr = hsisr.fuse(rgb, lr, d, method="fast")
    on_lr = hsisr.fuse(rgb, lr, d, method="fast", grid="lr")
    assert on_lr.settings["grid"] == {"frame": "lr", "resampled_by": [-2.0, -1.0]}
    np.testing.assert_allclose(on_lr.cube[:, 10:50, 10:50], on_hr.cube[:, 12:52, 11:51], atol=1e-5)
    with pytest.raises(hsisr.InputError, match="grid"):
        hsisr.fuse(rgb, lr, d, method="fast", grid="xy")


def test_unseen_bands_stay_consistent_with_the_lr_cube():
    """Bands an RGB camera cannot see (here 760-1000 nm, made from the visible ones so the cube
    stays low rank) take their detail through the subspace only: the result still reproduces the
    LR cube in them and is closer to the truth than bicubic."""
    cube, wl = sample_scene(96)
    nir = 0.5 * cube[-10:] + 0.3 * cube[10:20]  # some NIR response correlated with the visible
    wl_all = np.concatenate([wl, np.linspace(760, 1000, 10)])
    full = np.concatenate([cube, nir])
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="sRGB", wavelengths=wl_all)
    rgb, lr = simulate(full, deg, seed=0)
    assert np.abs(deg.srf[-10:]).max() < 1e-3  # the camera is (nearly) blind there
    res = hsisr.fuse(rgb, lr, deg.with_(hr_encoding="linear"), method="fast")
    unseen = slice(31, 41)
    lr_fit = np.array(res.settings["fit"]["lr"]["per_band"])[unseen]
    assert lr_fit.max() < 0.01
    bic = hsisr.fuse(rgb, lr, deg, method="bicubic")
    psnr_unseen = {name: hsisr.evaluate(c[unseen], full[unseen])["psnr"] for name, c in (("fused", res.cube),
                                                                                        ("bicubic", bic.cube))}
    assert psnr_unseen["fused"] > psnr_unseen["bicubic"] + 3


# ---------------------------------------------------------------------- real data (small crops)
def _cave_crop(scene="balloons", size=128):
    import imageio.v3 as iio

    from napari_hsisr.core.io import read_cube

    folder = CAVE / f"{scene}_ms"
    cube = read_cube(folder).data[:, 200:200 + size, 200:200 + size].astype(np.float64)
    rgb = np.asarray(iio.imread(next(folder.rglob("*_RGB.bmp"))))[200:200 + size, 200:200 + size]
    return cube, rgb


@pytest.mark.skipif(not CAVE.is_dir(), reason="../shared/data/cave not present")
def test_camera_rgb_crop_blind_beats_gsa_on_the_linearised_image():
    """CAVE's own 8-bit sRGB image over a simulated x8 LR cube (the x8cam protocol on a crop)."""
    cube, rgb = _cave_crop()
    wl = np.arange(400, 701, 10)
    true = Degradation(scale=8, psf="gaussian", psf_sigma=2, wavelengths=wl)
    lr = true.spatial(cube).astype(np.float32)
    only_s = Degradation(scale=8, wavelengths=wl)
    blind = hsisr.fuse(rgb, lr, only_s, method="blind", solver="fast")
    gsa = hsisr.fuse(rgb, lr, only_s.with_(hr_encoding="srgb"), method="gsa")
    e_blind, e_gsa = hsisr.evaluate(blind.cube, cube), hsisr.evaluate(gsa.cube, cube)
    assert blind.settings["estimated_degradation"]["hr_encoding"]["encoding"] == "srgb"
    assert e_blind["psnr"] > e_gsa["psnr"] + 2 and e_blind["sam"] < e_gsa["sam"]
    assert "warnings" not in blind.settings


@pytest.mark.skipif(not NEON.is_dir(), reason="../shared/data/real_pairs/neon_harv not present")
def test_neon_real_pair_reads_and_blind_beats_gsa_in_the_wald_test():
    from napari_hsisr.core.io import read_cube, read_image

    cf = read_cube(NEON / "NEON_D01_HARV_DP3_726000_4699000_reflectance_crop.tif", value_scale=1e-4,
                   wavelengths=NEON / "neon_aop_bands.csv", drop_bands="auto")
    rgb = read_image(NEON / "2019_D01_HARV_DP3_726000_4699000_image_crop.tif")  # LZW GeoTIFF
    assert rgb.shape == (400, 400, 3) and rgb.dtype == np.uint8 and cf.data.shape == (369, 40, 40)
    cube = np.clip(cf.data.astype(np.float64), 0, None)
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=4 / 2.3548, psf_size=8, wavelengths=cf.wavelengths)
    lr = deg.spatial(cube)
    hr = rgb.reshape(40, 10, 40, 10, 3).mean(axis=(1, 3)) / 255.0
    only_s = Degradation(scale=4, wavelengths=cf.wavelengths)
    blind = hsisr.fuse(hr, lr, only_s, method="blind", solver="fast", grid="lr")
    gsa = hsisr.fuse(hr, lr, only_s, method="gsa")
    e_blind, e_gsa = hsisr.evaluate(blind.cube, cube), hsisr.evaluate(gsa.cube, cube)
    # measured: 30.92 dB / SAM 2.59 against 27.18 / 2.72
    assert e_blind["psnr"] > e_gsa["psnr"] + 1 and e_blind["sam"] <= e_gsa["sam"]
    assert blind.settings["result_check"]["kept"] == "blind"


def test_reader_takes_wavelengths_from_the_band_table_beside_the_cube(tmp_path):
    import tifffile

    from napari_hsisr._reader import read_layers

    cube = np.random.default_rng(0).integers(0, 10000, (6, 5, 12)).astype(np.int16)  # (Y, X, bands)
    tifffile.imwrite(tmp_path / "cube.tif", cube, photometric="minisblack", planarconfig="contig")
    rows = ["band,nanometer,noise"] + [f"{i + 1},{0.4 + 0.05 * i:.3f},{int(i in (3, 4))}" for i in range(12)]
    (tmp_path / "bands.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "notes.txt").write_text("not a band table\n")
    data, kwargs, kind = read_layers(str(tmp_path / "cube.tif"))[0]
    assert data.shape == (12, 6, 5) and kind == "image"
    np.testing.assert_allclose(kwargs["metadata"]["wavelengths"], 400 + 50 * np.arange(12))
    assert kwargs["metadata"]["bad_bands"] == [3, 4]
