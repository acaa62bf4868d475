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
    # PSF: L1 error 0.19 measured (initial Gaussian sigma s/2: 0.35)
    assert np.abs(psf - deg.psf).sum() < 0.25 < np.abs(gaussian_psf(8, 2.0) - deg.psf).sum()
    # SRF: the matrix itself is poorly identifiable (31 x 3 unknowns seen through a low-rank cube);
    # what the pair determines is the camera's rendering of the scene: 0.85 % measured (init 2.4 %)
    render = lambda m: np.einsum("ck,cyx->kyx", m, cube)  # noqa: E731
    rel = lambda m: np.linalg.norm(render(m) - render(deg.srf)) / np.linalg.norm(render(deg.srf))  # noqa: E731
    assert rel(srf) < 0.012 < rel(camspec_mean(wl, 31))
    assert np.abs(srf - deg.srf).sum(0).max() < 0.25


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
