import numpy as np
import pytest

import napari_hsisr as hsisr


def test_inputs_not_modified(pair):
    hr, lr = pair.hr.copy(), pair.lr.copy()
    hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast")
    np.testing.assert_array_equal(hr, pair.hr)
    np.testing.assert_array_equal(lr, pair.lr)


def test_integer_inputs_scaled_and_recorded(pair):
    hr16 = np.round(np.clip(pair.hr, 0, 1) * 65535).astype(np.uint16)
    linear = pair.degradation.with_(hr_encoding="linear")  # a linear 16-bit image (auto would say sRGB)
    r = hsisr.fuse(hr16, pair.lr, linear, method="fast")
    ref = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast")
    assert np.abs(r.cube - ref.cube).max() < 1e-3
    assert r.settings["input_scaling"]["hr"]["scaled_by"] == pytest.approx(1 / 65535)


def test_auto_encoding_decodes_camera_images(pair):
    """auto: an 8-bit image is display-encoded (sRGB); fusing the sRGB-encoded simulation then
    gives the linear result, and the decision is recorded."""
    from napari_hsisr.core.physics import ToneCurve

    hr8 = np.round(ToneCurve("srgb").encode(np.clip(pair.hr, 0, 1)) * 255).astype(np.uint8)
    r = hsisr.fuse(hr8, pair.lr, pair.degradation, method="fast")
    ref = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="fast")
    assert "srgb (auto" in r.settings["input_scaling"]["hr_encoding"]
    assert r.settings["degradation"]["hr_encoding"]["encoding"] == "srgb"
    assert hsisr.evaluate(r.cube, pair.reference)["psnr"] > hsisr.evaluate(ref.cube, pair.reference)["psnr"] - 1.5
    as_linear = hsisr.fuse(hr8, pair.lr, pair.degradation.with_(hr_encoding="linear"), method="fast")
    assert hsisr.evaluate(as_linear.cube, pair.reference)["psnr"] < hsisr.evaluate(r.cube, pair.reference)["psnr"] - 3


@pytest.mark.parametrize("hr_slice,lr_slice,match", [
    ((slice(0, 60), slice(None)), (slice(None), slice(None)), "crop it to 56x64"),
    ((slice(None), slice(None)), (slice(0, 7), slice(None)), "must be 8x8"),
])
def test_size_mismatch_messages(pair, hr_slice, lr_slice, match):
    with pytest.raises(hsisr.InputError, match=match):
        hsisr.fuse(pair.hr[hr_slice], pair.lr[(slice(None),) + lr_slice], pair.degradation)


def test_channel_and_band_mismatch(pair):
    with pytest.raises(hsisr.InputError, match="HR image has 2 channels"):
        hsisr.fuse(pair.hr[..., :2], pair.lr, pair.degradation)
    with pytest.raises(hsisr.InputError, match="30 bands"):
        hsisr.fuse(pair.hr, pair.lr[:30], pair.degradation)


def test_nan_pixels_left_out_all_nan_refused(pair):
    lr = pair.lr.copy()
    lr[0, 0, 0] = np.nan
    r = hsisr.fuse(pair.hr, lr, pair.degradation)
    assert np.all(np.isfinite(r.cube)) and r.settings["input_scaling"]["lr_masked_pixels"] == 1
    with pytest.raises(hsisr.InputError, match="NaN"):
        hsisr.fuse(pair.hr, np.full_like(lr, np.nan), pair.degradation)


def test_bad_device(pair):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(hsisr.InputError, match="CUDA"):
        hsisr.fuse(pair.hr, pair.lr, pair.degradation, device="cuda")


def test_simulate_noise_snr_and_seed(pair):
    deg = pair.degradation
    hr0, lr0 = hsisr.simulate(pair.reference, deg)
    hr1, lr1 = hsisr.simulate(pair.reference, deg, noise_snr_db=30, hr_snr_db=40, seed=1)
    hr2, lr2 = hsisr.simulate(pair.reference, deg, noise_snr_db=30, hr_snr_db=40, seed=1)
    np.testing.assert_array_equal(lr1, lr2)
    snr = 10 * np.log10(np.mean(lr0.astype(float) ** 2) / np.mean((lr1.astype(float) - lr0) ** 2))
    assert snr == pytest.approx(30, abs=0.5)
    snr_hr = 10 * np.log10(np.mean(hr0.astype(float) ** 2) / np.mean((hr1.astype(float) - hr0) ** 2))
    assert snr_hr == pytest.approx(40, abs=0.5)


def test_import_does_not_pull_torch_or_qt():
    import subprocess
    import sys

    code = ("import sys, napari_hsisr; bad=[m for m in ('torch','qtpy','PyQt6','napari') if m in sys.modules];"
            "print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
