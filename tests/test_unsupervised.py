"""unsupervised on the 64x64 synthetic sample: the learned prior adapted to the pair, and the path
without a prior (fast + refits)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr.core.errors import InputError  # noqa: E402
from napari_hsisr.core.methods.msfn import shipped_weights  # noqa: E402
from napari_hsisr.core.sample import sample_pair  # noqa: E402

FAST = dict(patch=32, batch=2, refits=1)
NO_PRIOR = dict(weights="none")
shipped = pytest.mark.skipif(shipped_weights() is None, reason="no shipped weights")


@pytest.fixture(scope="module")
def pair(pair):
    """The shared pair (conftest.py), with torch on two threads as these tests were measured."""
    torch.set_num_threads(2)
    return pair


def _consistency(cube, pair):
    deg = pair.degradation
    lr_err = np.mean((deg.spatial(cube.astype(np.float64)) - pair.lr) ** 2)
    hr_err = np.mean((deg.spectral(cube.astype(np.float64)) - np.moveaxis(pair.hr, -1, 0)) ** 2)
    return lr_err, hr_err


def _run(pair, **opts):
    losses = []
    res = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="unsupervised", device="cpu",
                     progress=lambda p: losses.append(p.loss) if p.loss is not None else None,
                     **{**FAST, **opts})
    return res, losses


def test_without_a_prior_zero_refits_is_fast(pair):
    res, _ = _run(pair, steps=0, refits=0, **NO_PRIOR)
    fast = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast").cube
    np.testing.assert_allclose(res.cube, fast, atol=1e-5)
    assert res.settings["resolved_options"]["learned_prior"] == "weights='none': fast + 0 refits"


def test_refits_raise_quality_and_keep_consistency(pair):
    warm, _ = _run(pair, steps=0, refits=0, **NO_PRIOR)
    refit, _ = _run(pair, steps=0, refits=4, **NO_PRIOR)
    # the same as fast's iterations: refits = iterations - 1
    fast5 = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast", iterations=5).cube
    np.testing.assert_allclose(refit.cube, fast5, atol=1e-5)
    psnr = [hsisr.evaluate(r.cube, pair.reference, scale=8)["psnr"] for r in (warm, refit)]
    assert psnr[1] > psnr[0] + 0.5 and psnr[1] > 39.0  # measured 39.37 -> 40.51 dB
    lr0, hr0 = _consistency(warm.cube, pair)
    lr1, hr1 = _consistency(refit.cube, pair)
    assert lr1 + hr1 < 1.5 * (lr0 + hr0) + 1e-9
    assert refit.settings["resolved_options"]["rank"] == 20  # noise-free: the cap


@shipped
def test_another_band_grid_runs_without_the_prior_and_says_so():
    ref = sample_pair(size=64).reference[::2]  # 16 bands, 20 nm apart: not the prior's grid
    deg = hsisr.Degradation(scale=8, srf="Nikon D700", wavelengths=np.arange(400, 701, 20))
    hr, lr = hsisr.simulate(ref, deg)
    res = hsisr.fuse(hr, lr, deg, method="unsupervised", refits=2)
    said = res.settings["resolved_options"]["learned_prior"]
    assert said.startswith("no learned prior for this band grid") and said.endswith("fast + 2 refits")
    with pytest.raises(InputError, match="16 bands"):  # named weights that cannot serve it: an error
        hsisr.fuse(hr, lr, deg, method="unsupervised", weights=str(shipped_weights()))


@shipped
def test_zero_steps_is_the_prior_on_the_base_then_the_consistency_step(pair):
    res, _ = _run(pair, steps=0, refits=0)
    msfn = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="msfn")
    np.testing.assert_allclose(res.cube, msfn.cube, atol=1e-5)  # clean pair: the noise-aware mu is msfn's 1e-3
    ro = res.settings["resolved_options"]
    assert ro["learned_prior"] == "msfn_prior.pt" and ro["consistency_mu"] == pytest.approx(1e-3)
    assert "adaptation_steps" not in ro


@shipped
def test_adaptation_is_deterministic_consistent_and_moves_the_result(pair):
    a, losses = _run(pair, steps=3, seed=3, batch=1)
    b, _ = _run(pair, steps=3, seed=3, batch=1)
    c, _ = _run(pair, steps=3, seed=4, batch=1)
    still, _ = _run(pair, steps=0)
    np.testing.assert_array_equal(a.cube, b.cube)
    assert not np.array_equal(a.cube, c.cube) and not np.array_equal(a.cube, still.cube)
    assert a.settings["resolved_options"]["adaptation_steps"] == 3 and len(losses) >= 2
    lr0, hr0 = _consistency(still.cube, pair)
    lr1, hr1 = _consistency(a.cube, pair)
    assert lr1 + hr1 < 2 * (lr0 + hr0) + 1e-9  # the consistency step keeps it consistent


@shipped
def test_re_degraded_pair_is_used_when_the_lr_cube_is_large_enough():
    p = sample_pair(size=128)
    deg4 = hsisr.Degradation(scale=4, psf="gaussian", psf_sigma=1, srf="Nikon D700", wavelengths=p.wavelengths)
    hr, lr = hsisr.simulate(p.reference, deg4)  # LR 32x32 >= 4 s: it can be degraded by 4 once more
    big = hsisr.fuse(hr, lr, deg4, method="unsupervised", steps=2, refits=0)
    small = hsisr.fuse(p.hr, p.lr, p.degradation, method="unsupervised", steps=2, refits=0)  # LR 16 < 32
    assert big.settings["resolved_options"]["adaptation_zero_shot"] is True
    assert small.settings["resolved_options"]["adaptation_zero_shot"] is False


@shipped
def test_stop_mid_run(pair):
    gen = hsisr.fuse_iter(pair.hr, pair.lr, pair.degradation, method="unsupervised", device="cpu",
                          **{**FAST, "steps": 10000})
    seen = []
    for p in gen:
        seen.append(p)
        if p.loss is not None:
            break
    gen.close()  # stops inside the adaptation: no result, no error
    assert seen[-1].step < seen[-1].total
    with pytest.raises(StopIteration):
        next(gen)


def test_previews_arrive_during_refits(pair, monkeypatch):
    """The refit rounds send the converging estimate (small, channels first) for a live layer."""
    from napari_hsisr.core.methods import fast

    monkeypatch.setattr(fast, "PREVIEW_EVERY_S", 0.0)  # every round, so a tiny run shows them
    previews = []
    res = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="unsupervised", device="cpu",
                     progress=lambda p: previews.append(p.preview) if p.preview is not None else None,
                     **{**FAST, **NO_PRIOR, "steps": 0, "refits": 3})
    assert len(previews) == 3
    C = pair.lr.shape[0]
    assert all(p.shape == (C, 64, 64) and p.dtype == np.float32 for p in previews)
    # the last preview is the result before the final touches (same estimate, block means of 1)
    assert np.corrcoef(previews[-1].ravel(), res.cube.ravel())[0, 1] > 0.99


@pytest.fixture(scope="module")
def noisy():
    """The 128x128 sample with LR-HS SNR 30 dB and RGB SNR 40 dB (the x8n benchmark's noise)."""
    p = sample_pair(size=128)
    hr, lr = hsisr.simulate(p.reference, p.degradation, noise_snr_db=30, hr_snr_db=40, seed=1)
    lr_noise = np.mean((lr - p.degradation.spatial(p.reference.astype(np.float64))) ** 2)
    return p, hr, lr, lr_noise


def _psnr(cube, p):
    return hsisr.evaluate(cube, p.reference, scale=8)["psnr"]


@shipped
def test_noisy_pair_closer_to_the_clean_reference_than_fast(noisy):
    """With noise, the base's and the consistency step's prior weight follow the estimated noise,
    and the result lands closer to the clean cube than fast (the prior itself hurts this synthetic
    noisy pair; the self-check sees it and keeps fast + refits)."""
    p, hr, lr, _ = noisy
    fast = hsisr.fuse(hr, lr, p.degradation, method="fast")
    res = hsisr.fuse(hr, lr, p.degradation, method="unsupervised", device="cpu", **{**FAST, "refits": 4, "check": True})
    assert fast.settings["resolved_options"]["mu"] > 0.03  # about 0.08 here, 1e-3 on clean data
    assert res.settings["resolved_options"]["consistency_mu"] == pytest.approx(fast.settings["resolved_options"]["mu"])
    assert _psnr(res.cube, p) > _psnr(fast.cube, p) + 1.0
