import math

import numpy as np
import pytest

from napari_hsisr.core import metrics as M
from napari_hsisr.core.errors import InputError


@pytest.fixture
def tiny():
    # 2 bands x 1 x 2 pixels.
    # reference: band0 = [1.0, 0.5], band1 = [0.5, 0.5]
    # estimate : band0 = [0.5, 0.5], band1 = [0.5, 1.0]
    ref = np.array([[[1.0, 0.5]], [[0.5, 0.5]]])
    est = np.array([[[0.5, 0.5]], [[0.5, 1.0]]])
    return est, ref


def test_psnr_hand_computed(tiny):
    est, ref = tiny
    # squared errors: band0 [0.25, 0], band1 [0, 0.25] -> MSE over 4 voxels = 0.5/4 = 0.125
    assert M.psnr(est, ref) == pytest.approx(10 * math.log10(1 / 0.125))  # 9.0309 dB
    assert M.psnr(est, ref, peak=2.0) == pytest.approx(10 * math.log10(4 / 0.125))
    # per band: MSE_0 = 0.125, MSE_1 = 0.125 -> both 9.0309 dB
    assert M.psnr_bandwise(est, ref) == pytest.approx(10 * math.log10(8))


def test_psnr_bandwise_differs_from_whole():
    ref = np.zeros((2, 1, 2))
    est = ref.copy()
    est[0] = 0.1  # MSE_0 = 0.01, MSE_1 = 0 (-> inf)
    assert M.psnr_bandwise(est, ref) == math.inf
    est[1] = 0.2  # MSE_1 = 0.04
    # whole: MSE = (0.01 * 2 + 0.04 * 2) / 4 = 0.025
    assert M.psnr(est, ref) == pytest.approx(10 * math.log10(1 / 0.025))
    # bandwise: mean(20, 13.979) = 16.9897
    assert M.psnr_bandwise(est, ref) == pytest.approx((20 + 10 * math.log10(1 / 0.04)) / 2)


def test_sam_hand_computed(tiny):
    est, ref = tiny
    # pixel 0: e = (0.5, 0.5), r = (1, 0.5): cos = 0.75 / (0.7071 * 1.1180) = 0.948683 -> 18.4349 deg
    # pixel 1: e = (0.5, 1.0), r = (0.5, 0.5): same angle by symmetry -> 18.4349 deg
    a = math.degrees(math.acos(0.75 / (math.sqrt(0.5) * math.sqrt(1.25))))
    assert a == pytest.approx(18.43494882)
    np.testing.assert_allclose(M.sam_map(est, ref), [[a, a]])
    assert M.sam(est, ref) == pytest.approx(a)


def test_sam_orthogonal_and_zero_pixels():
    ref = np.array([[[1.0, 0.0, 0.3]], [[0.0, 0.0, 0.0]]])
    est = np.array([[[0.0, 0.0, 0.6]], [[2.0, 1.0, 0.0]]])
    # pixel 0: (0,2) vs (1,0) -> 90 deg; pixel 1: ref spectrum is zero -> excluded (NaN in map);
    # pixel 2: (0.6, 0) vs (0.3, 0) -> 0 deg. Mean over valid pixels = 45.
    m = M.sam_map(est, ref)
    assert m[0, 0] == pytest.approx(90.0)
    assert math.isnan(m[0, 1])
    assert m[0, 2] == pytest.approx(0.0, abs=1e-12)
    assert M.sam(est, ref) == pytest.approx(45.0)
    assert math.isnan(M.sam(np.zeros((2, 1, 1)), np.ones((2, 1, 1))))


def test_ergas_hand_computed(tiny):
    est, ref = tiny
    # MSE_0 = 0.125, mean(ref_0) = 0.75 -> 0.125 / 0.5625 = 0.222222
    # MSE_1 = 0.125, mean(ref_1) = 0.5  -> 0.125 / 0.25   = 0.5
    # ERGAS = 100 / 8 * sqrt((0.222222 + 0.5) / 2) = 12.5 * 0.600925 = 7.51157
    expected = 100 / 8 * math.sqrt((0.125 / 0.75**2 + 0.125 / 0.5**2) / 2)
    assert M.ergas(est, ref, 8) == pytest.approx(expected)
    assert M.ergas(est, ref, 4) == pytest.approx(2 * expected)
    with pytest.raises(InputError):
        M.ergas(est, ref, 0)


def test_rmse_hand_computed(tiny):
    est, ref = tiny
    # RMSE = sqrt(0.125) = 0.353553 -> x255 = 90.1561
    assert M.rmse(est, ref) == pytest.approx(255 * math.sqrt(0.125))
    # per pixel over bands: pixel 0 sqrt((0.25 + 0) / 2), pixel 1 sqrt((0 + 0.25) / 2)
    np.testing.assert_allclose(M.rmse_map(est, ref), [[math.sqrt(0.125), math.sqrt(0.125)]])


def test_identical_inputs(rng):
    ref = rng.random((3, 16, 16))
    assert M.psnr(ref, ref.copy()) == math.inf
    assert M.psnr_bandwise(ref, ref.copy()) == math.inf
    assert M.sam(ref, ref.copy()) == 0.0
    assert M.ssim(ref, ref.copy()) == pytest.approx(1.0)
    assert M.ergas(ref, ref.copy(), 8) == 0.0
    assert M.rmse(ref, ref.copy()) == 0.0
    assert np.all(M.rmse_map(ref, ref.copy()) == 0)


def test_ssim_matches_skimage_and_decreases(rng):
    from skimage.metrics import structural_similarity

    ref = rng.random((2, 20, 24))
    est = np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1)
    expected = np.mean(
        [
            structural_similarity(
                est[b], ref[b], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
            )
            for b in range(2)
        ]
    )
    assert M.ssim(est, ref) == pytest.approx(expected)
    assert M.ssim(est, ref) < 1.0
    with pytest.raises(InputError, match="11x11"):
        M.ssim(np.zeros((1, 5, 5)), np.zeros((1, 5, 5)))


def test_evaluate_keys_and_types(rng):
    ref = rng.random((3, 16, 16))
    est = np.clip(ref + 0.01 * rng.standard_normal(ref.shape), 0, 1)
    res = M.evaluate(est, ref, scale=4)
    assert list(res) == ["psnr", "psnr_bandwise", "sam", "ergas", "ssim", "rmse"]
    assert all(type(v) is float for v in res.values())
    assert res["psnr"] == pytest.approx(M.psnr(est, ref))
    assert res["ergas"] == pytest.approx(M.ergas(est, ref, 4))
    assert res["ssim"] == pytest.approx(M.ssim(est, ref))
    fast = M.evaluate(est, ref, full=False)
    assert set(fast) == {"psnr", "psnr_bandwise", "sam", "rmse"}


def test_shape_mismatch_and_bad_values():
    a = np.zeros((2, 3, 3))
    b = np.zeros((2, 3, 4))
    with pytest.raises(InputError, match=r"\(2, 3, 3\).*\(2, 3, 4\)"):
        M.psnr(a, b)
    for f in (M.psnr_bandwise, M.sam, M.sam_map, M.ssim, M.rmse, M.rmse_map, M.evaluate):
        with pytest.raises(InputError):
            f(a, b)
    with pytest.raises(InputError):
        M.ergas(a, b, 2)
    c = a.copy()
    c[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        M.psnr(c, a)
    c[0, 0, 0] = np.inf
    with pytest.raises(InputError):
        M.sam(a, c)
    with pytest.raises(InputError):
        M.psnr(np.zeros((3, 3)), np.zeros((3, 3)))


def test_inputs_unchanged(rng):
    ref = rng.random((3, 12, 12))
    est = rng.random((3, 12, 12)).astype(np.float32)
    ref0, est0 = ref.copy(), est.copy()
    M.evaluate(est, ref, scale=2)
    M.sam_map(est, ref)
    M.rmse_map(est, ref)
    np.testing.assert_array_equal(ref, ref0)
    np.testing.assert_array_equal(est, est0)
    assert est.dtype == np.float32


class _FakeDegradation:
    """Block-average by 2 and a fixed 2x3 band-to-channel matrix."""

    def __init__(self):
        self.R = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])  # (C=3, k=2)

    def spatial(self, z):
        c, h, w = z.shape
        return z.reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))

    def spectral(self, z):
        return np.einsum("ck,cyx->kyx", self.R, z)


def test_consistency(rng):
    deg = _FakeDegradation()
    cube = rng.random((3, 4, 6)) * 0.5
    lr = deg.spatial(cube)
    hr = np.moveaxis(deg.spectral(cube), 0, -1)  # (Y, X, k)
    res = M.consistency(cube, hr, lr, deg)
    assert set(res) == {"lr_psnr", "lr_sam", "hr_psnr", "hr_sam"}
    assert res["lr_psnr"] == math.inf and res["hr_psnr"] == math.inf
    assert res["lr_sam"] == pytest.approx(0.0, abs=1e-6)
    assert res["hr_sam"] == pytest.approx(0.0, abs=1e-6)

    lr_noisy = lr + 0.1
    res2 = M.consistency(cube, hr, lr_noisy, deg)
    # every LR voxel is off by 0.1 -> MSE 0.01 -> 20 dB
    assert res2["lr_psnr"] == pytest.approx(20.0)
    assert res2["hr_psnr"] == math.inf

    with pytest.raises(InputError, match="spatial"):
        M.consistency(cube, hr, lr[:, :1], deg)
    with pytest.raises(InputError, match="hr_image"):
        M.consistency(cube, hr[..., 0], lr, deg)
