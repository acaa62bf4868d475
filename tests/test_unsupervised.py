"""The unsupervised CNN fusion on the 64x64 synthetic sample (small and fast)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr.core.errors import InputError  # noqa: E402
from napari_hsisr.core.sample import sample_pair  # noqa: E402

FAST = dict(patch=32, batch=2, width=12, depth=3, patience=0, refits=1)


@pytest.fixture(scope="module")
def pair():
    torch.set_num_threads(2)
    return sample_pair(size=64)


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


def test_zero_steps_zero_refits_is_the_fast_warm_start(pair):
    res, _ = _run(pair, steps=0, refits=0)
    fast = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast").cube
    np.testing.assert_allclose(res.cube, fast, atol=1e-5)


def test_refits_raise_quality_and_keep_consistency(pair):
    warm, _ = _run(pair, steps=0, refits=0)
    refit, _ = _run(pair, steps=0, refits=4)
    # the same as fast's iterations: refits = iterations - 1
    fast5 = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast", iterations=5).cube
    np.testing.assert_allclose(refit.cube, fast5, atol=1e-5)
    psnr = [hsisr.evaluate(r.cube, pair.reference, scale=8)["psnr"] for r in (warm, refit)]
    assert psnr[1] > psnr[0] + 0.5  # measured 39.37 -> 40.51 dB
    lr0, hr0 = _consistency(warm.cube, pair)
    lr1, hr1 = _consistency(refit.cube, pair)
    assert lr1 + hr1 < 1.5 * (lr0 + hr0) + 1e-9
    assert refit.settings["resolved_options"]["rank"] == 20  # noise-free: the cap


def test_residual_mode_fits_without_losing_consistency(pair):
    # fast's result is consistent to the subspace floor already (LR residual 2.2e-7 here, all of it
    # outside the rank-10 subspace), so the fit can only keep it there; its patch loss must fall
    warm, _ = _run(pair, steps=0, refits=0, rank=10)
    res, losses = _run(pair, steps=30, mode="residual", refits=0, rank=10)
    lr0, hr0 = _consistency(warm.cube, pair)
    lr1, hr1 = _consistency(res.cube, pair)
    assert lr1 + hr1 < 1.1 * (lr0 + hr0)
    assert losses[-1] < losses[0]


def test_prior_mode_fits_and_stays_consistent(pair):
    warm, _ = _run(pair, steps=0)
    res, losses = _run(pair, steps=30)
    assert losses[-1] < 0.9 * losses[0]  # the network prior fits the observations better than a0 (0.8 measured)
    lr0, hr0 = _consistency(warm.cube, pair)
    lr1, hr1 = _consistency(res.cube, pair)
    assert lr1 + hr1 < 1.5 * (lr0 + hr0) + 1e-9  # the closed-form solve keeps it consistent
    assert hsisr.evaluate(res.cube, pair.reference, scale=8)["psnr"] > 25


def test_seed_determinism(pair):
    a, _ = _run(pair, steps=15, seed=3)
    b, _ = _run(pair, steps=15, seed=3)
    c, _ = _run(pair, steps=15, seed=4)
    np.testing.assert_array_equal(a.cube, b.cube)
    assert not np.array_equal(a.cube, c.cube)


def test_stop_mid_run(pair):
    gen = hsisr.fuse_iter(pair.hr, pair.lr, pair.degradation, method="unsupervised", device="cpu",
                          **{**FAST, "steps": 10000})
    seen = []
    for p in gen:
        seen.append(p)
        if p.loss is not None:
            break
    gen.close()  # stops inside the fit: no result, no error
    assert seen[-1].step < seen[-1].total
    with pytest.raises(StopIteration):
        next(gen)


def test_bad_patch_is_refused_too_large_one_adapts(pair):
    with pytest.raises(InputError, match="multiple of the scale"):
        _run(pair, steps=5, patch=30)
    res, _ = _run(pair, steps=5, patch=64)  # a 64x64 image cannot hold 64-pixel patches and their margins
    assert res.settings["resolved_options"]["patch"] in (8, 16, 24, 32, 40, 48, 56)
    tiny = sample_pair(size=16)  # LR 2x2: not even one patch; the network is skipped, and it says so
    out = hsisr.fuse(tiny.hr, tiny.lr, tiny.degradation, method="unsupervised", steps=5)
    assert "skipped_cnn" in out.settings["resolved_options"] and np.all(np.isfinite(out.cube))


def test_previews_arrive_during_refits(pair, monkeypatch):
    """The refit rounds send the converging estimate (small, channels first) for a live layer."""
    from napari_hsisr.core.methods import fast

    monkeypatch.setattr(fast, "PREVIEW_EVERY_S", 0.0)  # every round, so a tiny run shows them
    previews = []
    res = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="unsupervised", device="cpu",
                     progress=lambda p: previews.append(p.preview) if p.preview is not None else None,
                     **{**FAST, "steps": 0, "refits": 3})
    assert len(previews) == 3
    C = pair.lr.shape[0]
    assert all(p.shape == (C, 64, 64) and p.dtype == np.float32 for p in previews)
    # the last preview is the result before the final touches (same estimate, block means of 1)
    assert np.corrcoef(previews[-1].ravel(), res.cube.ravel())[0, 1] > 0.99
