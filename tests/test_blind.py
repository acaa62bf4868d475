"""Estimating the forward model from the pair (encoding, PSF, shift, response, gain/offset) and
the blind method, on simulated pairs whose truth is known."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr import Degradation, simulate  # noqa: E402
from napari_hsisr.core.estimation import estimate_degradation  # noqa: E402
from napari_hsisr.core.physics import ToneCurve  # noqa: E402
from napari_hsisr.core.sample import sample_scene  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    torch.set_num_threads(2)
    return sample_scene(96)


def _camera(cube, deg, tone="srgb", gain=(1.1, 0.95, 0.8), offset=(0.01, 0.0, 0.02), seed=0):
    """A camera-like HR image: gain, offset, then an encoding, 8-bit."""
    rgb, lr = simulate(cube, deg, seed=seed)
    lin = np.moveaxis(rgb, -1, 0) * np.asarray(gain)[:, None, None] + np.asarray(offset)[:, None, None]
    disp = ToneCurve.parse(tone).encode(np.clip(lin, 0, 1))
    return np.round(np.moveaxis(disp, 0, -1) * 255).astype(np.uint8), lr


def _centred(k, K):
    d = (K - k.shape[0]) // 2
    return np.pad(k, d)


def _angle(a, b):
    cos = np.sum(a * b, 0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
    return np.degrees(np.arccos(np.clip(cos, -1, 1))).mean()


def test_estimate_recovers_tone_gain_offset_psf_and_response(scene):
    cube, wl = scene
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.5, psf_size=8, srf="Canon 5D Mark II", wavelengths=wl)
    rgb8, lr = _camera(cube, deg)
    est = estimate_degradation(np.moveaxis(rgb8, -1, 0) / 255.0, lr, 4, wl)
    assert est.tone.name == "srgb"
    # measured: gain within 0.5 %, offset within 0.002, PSF relative L2 0.03, shift < 0.02 px
    np.testing.assert_allclose(est.gain, [1.1, 0.95, 0.8], rtol=0.02)
    np.testing.assert_allclose(est.offset, [0.01, 0.0, 0.02], atol=0.005)
    K = max(est.kernel.shape[0], 8)
    rel = np.linalg.norm(_centred(est.kernel, K) - _centred(deg.psf, K)) / np.linalg.norm(deg.psf)
    assert rel < 0.15
    assert np.abs(est.shift).max() < 0.2
    # the response renders the scene as the camera does (responses equal on the subspace)
    render = lambda m: np.einsum("ck,cyx->kyx", m, cube)  # noqa: E731
    assert np.linalg.norm(render(est.response) - render(deg.srf)) / np.linalg.norm(render(deg.srf)) < 0.01
    assert est.residual.max() < 0.02


@pytest.mark.parametrize("tone", ["linear", "gamma:2.2"])
def test_estimate_picks_the_encoding(scene, tone):
    cube, wl = scene
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.5, psf_size=8, srf="Nikon D700", wavelengths=wl)
    rgb8, lr = _camera(cube, deg, tone=tone, gain=(1, 1, 1), offset=(0, 0, 0))
    assert estimate_degradation(np.moveaxis(rgb8, -1, 0) / 255.0, lr, 4, wl).tone.name == tone


@pytest.mark.parametrize("shift", [(1.3, -0.7), (-2.6, 3.2)])
def test_estimate_recovers_a_subpixel_shift(scene, shift):
    cube, wl = scene
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="Nikon D700", wavelengths=wl,
                      shift=shift)
    rgb, lr = simulate(cube, deg, seed=0)
    est = estimate_degradation(np.moveaxis(rgb, -1, 0), lr, 4, wl, tone=ToneCurve("linear"), psf_model="gaussian")
    assert np.abs(np.subtract(est.shift, shift)).max() < 0.2  # measured: < 0.02 px
    assert np.abs(np.subtract(est.sigma, 1.2)).max() < 0.2


def test_blind_on_a_camera_pair_beats_gsa_and_returns_the_estimate(scene):
    cube, wl = scene
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.5, psf_size=8, srf="Canon 5D Mark II", wavelengths=wl,
                      shift=(1.0, -1.5))
    rgb8, lr = _camera(cube, deg)
    told_only_s = Degradation(scale=4, wavelengths=wl)
    res = hsisr.fuse(rgb8, lr, told_only_s, method="blind", device="cpu", solver="fast")
    gsa = hsisr.fuse(rgb8, lr, told_only_s, method="gsa")
    # the reference is the cube on the HR image's grid; blind puts its result there
    assert hsisr.evaluate(res.cube, cube)["psnr"] > hsisr.evaluate(gsa.cube, cube)["psnr"] + 3
    est = res.settings["estimated_degradation"]
    assert est["hr_encoding"]["encoding"] == "srgb" and est["srf"] == "estimated"
    assert np.abs(np.subtract(res.extras["shift"], (1.0, -1.5))).max() < 0.2
    again = Degradation.from_settings(est)  # reusable as a known degradation
    np.testing.assert_allclose(again.kernel, res.extras["degradation_object"].kernel)
    assert np.abs(np.subtract(again.lr_translate, (1.5 + 1.0, 1.5 - 1.5))).max() < 0.2
    assert hsisr.fuse(rgb8, lr, again, method="fast").cube.shape == cube.shape


@pytest.mark.parametrize("known", ["psf", "srf", "psf,shift"])
def test_partial_knowledge_keeps_the_known_part(scene, known):
    cube, wl = scene
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.5, psf_size=8, srf="Canon 5D Mark II", wavelengths=wl)
    rgb, lr = simulate(cube, deg, seed=0)
    res = hsisr.fuse(rgb, lr, deg, method="blind", device="cpu", known=known, solver="fast")
    psf, srf = res.extras["psf"], res.extras["srf"]
    if "psf" in known:
        np.testing.assert_array_equal(psf, deg.psf)
        assert _angle(srf, deg.srf) < 10
    else:
        np.testing.assert_array_equal(srf, deg.srf)
        K = max(psf.shape[0], 8)
        assert np.linalg.norm(_centred(psf, K) - _centred(deg.psf, K)) / np.linalg.norm(deg.psf) < 0.15
    assert res.extras["srf"] is not deg.srf  # a copy: the result never aliases the user's arrays
    with pytest.raises(hsisr.InputError, match="known"):
        hsisr.fuse(rgb, lr, deg, method="blind", known="both")


def test_masked_pixels_do_not_change_the_result(scene):
    """Saturated HR pixels and nodata LR pixels are left out: what they hold changes nothing."""
    cube, wl = scene
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="Nikon D700", wavelengths=wl)
    rgb8, lr = _camera(cube, deg, gain=(1, 1, 1), offset=(0, 0, 0))
    lr = lr.copy()
    a_rgb, b_rgb, a_lr, b_lr = rgb8.copy(), rgb8.copy(), lr.copy(), lr.copy()
    a_rgb[10:16, 20:30] = (255, 10, 10)  # a blown red channel; the other channels hold anything
    b_rgb[10:16, 20:30] = (255, 200, 90)
    a_lr[:, 5, 7], b_lr[:, 5, 7] = np.nan, 0.0  # nodata as NaN, or as an all-zero spectrum
    b_lr[3, 12, 3] = np.nan  # one NaN band makes the whole spectrum nodata
    a_lr[:, 12, 3] = 7.0
    a_lr[3, 12, 3] = np.nan
    only_s = Degradation(scale=4, wavelengths=wl)
    for method, d, opts in (("fast", deg.with_(hr_encoding="srgb"), {}), ("blind", only_s, {"solver": "fast"})):
        a = hsisr.fuse(a_rgb, a_lr, d, method=method, **opts)
        b = hsisr.fuse(b_rgb, b_lr, d, method=method, **opts)
        np.testing.assert_allclose(a.cube, b.cube, atol=1e-6)
        assert a.settings["input_scaling"]["hr_masked_pixels"] == 60
        assert a.settings["input_scaling"]["lr_masked_pixels"] == 2
        assert np.all(np.isfinite(a.cube))
    assert hsisr.evaluate(a.cube, cube)["psnr"] > 30


def test_estimate_learns_a_tone_curve_no_preset_describes(scene):
    """A logarithmic camera curve: no preset fits it; the learned monotone table does, and follows
    the true decode up to each channel's gain and offset (which the response absorbs)."""
    cube, wl = scene
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="Nikon D700", wavelengths=wl)
    rgb, lr = simulate(cube, deg, seed=0)
    lin = np.clip(np.moveaxis(rgb, -1, 0), 0, 1)
    encode = lambda v: np.log1p(20 * v) / np.log(21)  # noqa: E731
    est = estimate_degradation(encode(lin), lr, 4, wl)
    assert est.tone.name == "learned"
    presets = [v for n, v in est.tone_residuals.items() if n != "learned"]
    assert est.tone_residuals["learned"] < 0.9 * min(presets)  # measured 0.0068 against 0.0099 (gamma 2.6)
    lo, hi = np.percentile(encode(lin), [5, 95])  # where the image has values
    v = np.linspace(lo, hi, 19)
    true_decode = (21 ** v - 1) / 20
    decoded = est.tone.decode(np.broadcast_to(v, (3, v.size)))
    for c in range(3):
        A = np.stack([decoded[c], np.ones_like(v)], 1)
        fit = A @ np.linalg.lstsq(A, true_decode, rcond=None)[0]
        assert np.sqrt(np.mean((fit - true_decode) ** 2) / np.mean(true_decode ** 2)) < 0.03  # measured 0.010-0.018
