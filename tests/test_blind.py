"""Blind PSF/SRF estimation on a simulated pair with a known Gaussian PSF and camera SRF."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr import Degradation, simulate  # noqa: E402
from napari_hsisr.core.methods.blind import camspec_mean, estimate  # noqa: E402
from napari_hsisr.core.psf import gaussian_psf  # noqa: E402
from napari_hsisr.core.sample import sample_scene  # noqa: E402


@pytest.fixture(scope="module")
def simulated():
    torch.set_num_threads(2)
    cube, wl = sample_scene(64)
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.5, psf_size=8, srf="Canon 5D Mark II", wavelengths=wl)
    rgb, lr = simulate(cube, deg, seed=0)
    return cube, wl, deg, rgb, lr


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_estimate_recovers_psf_and_srf(simulated):
    cube, wl, deg, rgb, lr = simulated
    psf, srf = _drain(estimate(np.moveaxis(rgb, -1, 0), lr, 4, wl, steps=600))
    assert psf.shape == (8, 8) and srf.shape == (31, 3)
    assert psf.min() >= 0 and abs(psf.sum() - 1) < 1e-9
    assert srf.min() >= 0 and np.allclose(srf.sum(0), 1)
    # measured: PSF relative L2 error 0.013 (initial Gaussian sigma s/2: 0.31); SRF mean spectral
    # angle 4.5 deg (camspec-mean init: 8.0 deg); rendering of the scene 0.045 % (init 2.4 %)
    rel_l2 = lambda k: np.linalg.norm(k - deg.psf) / np.linalg.norm(deg.psf)  # noqa: E731
    assert rel_l2(psf) < 0.05 < 0.25 < rel_l2(gaussian_psf(8, 2.0))

    def angle(m):
        cos = np.sum(m * deg.srf, 0) / (np.linalg.norm(m, axis=0) * np.linalg.norm(deg.srf, axis=0))
        return np.degrees(np.arccos(np.clip(cos, -1, 1))).mean()

    assert angle(srf) < 6.0 < 7.5 < angle(camspec_mean(wl, 31))
    render = lambda m: np.einsum("ck,cyx->kyx", m, cube)  # noqa: E731
    rel = lambda m: np.linalg.norm(render(m) - render(deg.srf)) / np.linalg.norm(render(deg.srf))  # noqa: E731
    assert rel(srf) < 0.002 < 0.012 < rel(camspec_mean(wl, 31))
    assert np.abs(srf - deg.srf).sum(0).max() < 0.15


def test_blind_method_runs(simulated):
    cube, wl, deg, rgb, lr = simulated
    unknown = Degradation(scale=4, wavelengths=wl)  # neither PSF nor SRF known
    res = hsisr.fuse(rgb, lr, unknown, method="blind", device="cpu", est_steps=200, steps=10, patch=16,
                     width=8, depth=3)
    assert res.cube.shape == cube.shape
    assert hsisr.evaluate(res.cube, cube, scale=4)["psnr"] > 25
    # the estimates come back with the result, ready to reuse as a known degradation
    psf, srf = res.extras["psf"], res.extras["srf"]
    assert psf.shape[0] >= 4 and psf.sum() == pytest.approx(1.0) and np.allclose(srf.sum(0), 1.0)
    assert res.settings["estimated_degradation"]["srf"] == "estimated"
    reuse = Degradation(scale=4, psf=psf, srf=srf, wavelengths=wl)
    assert hsisr.fuse(rgb, lr, reuse, method="fast").cube.shape == cube.shape


@pytest.mark.parametrize("known", ["psf", "srf"])
def test_partial_knowledge_keeps_the_known_part(simulated, known):
    cube, wl, deg, rgb, lr = simulated
    res = hsisr.fuse(rgb, lr, deg, method="blind", device="cpu", known=known, est_steps=300, steps=0)
    psf, srf = res.extras["psf"], res.extras["srf"]
    if known == "psf":
        np.testing.assert_array_equal(psf, deg.psf)
        assert np.abs(srf - deg.srf).sum(0).max() < 0.15
    else:
        np.testing.assert_array_equal(srf, deg.srf)
        assert np.linalg.norm(psf - deg.psf) / np.linalg.norm(deg.psf) < 0.05
    with pytest.raises(Exception, match="known"):
        hsisr.fuse(rgb, lr, deg, method="blind", known="both")


def test_known_part_is_a_copy_and_keeps_its_name(simulated):
    cube, wl, deg, rgb, lr = simulated
    res = hsisr.fuse(rgb, lr, deg, method="blind", device="cpu", known="srf", est_steps=20, steps=0)
    assert res.extras["srf"] is not deg.srf
    res.extras["srf"][:] = 0
    assert deg.srf.sum() > 0
    assert res.settings["estimated_degradation"]["srf"] == deg.srf_name
