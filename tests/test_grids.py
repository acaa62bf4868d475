import numpy as np
import pytest

from napari_hsisr.core.errors import InputError
from napari_hsisr.core.grids import GridMatch, apply_match, match_ratio


def test_exact(rng):
    m = match_ratio((40, 60), (10, 15))
    assert isinstance(m, GridMatch)
    assert (m.action, m.scale, m.hr_target, m.crop, m.zoom) == ("exact", 4, (40, 60), None, None)
    assert "ratio 4 exactly" in m.message
    img = rng.integers(0, 256, (40, 60, 3)).astype(np.uint8)
    out = apply_match(img, m)
    assert out.dtype == np.uint8 and out is not img
    np.testing.assert_array_equal(out, img)
    out[0, 0, 0] += 1
    assert out[0, 0, 0] != img[0, 0, 0]  # a copy, not a view


def test_crop(rng):
    m = match_ratio((43, 61), (10, 15))
    assert (m.action, m.scale, m.hr_target, m.crop, m.zoom) == ("crop", 4, (40, 60), (0, 0, 3, 1), None)
    assert "cropped 3 trailing rows and 1 trailing column" in m.message and "40x60" in m.message
    img = rng.random((43, 61, 2)).astype(np.float64)
    before = img.copy()
    out = apply_match(img, m)
    assert out.shape == (40, 60, 2) and out.dtype == np.float64
    np.testing.assert_array_equal(out, img[:40, :60])
    np.testing.assert_array_equal(img, before)


def test_crop_beyond_tolerance_on_small_grids():
    # 3 extra rows over a 10-row LR grid differ by > 2 % in ratio, but a crop still fits
    m = match_ratio((43, 40), (10, 10))  # ratios 4.3 and 4.0
    assert m.action == "crop" and m.crop == (0, 0, 3, 0) and m.hr_target == (40, 40)


def test_resample_up(rng):
    m = match_ratio((4000, 3000), (512, 384))
    assert (m.action, m.scale, m.hr_target, m.crop) == ("resample", 8, (4096, 3072), None)
    assert m.zoom == pytest.approx((1.024, 1.024))
    assert m.message == ("HR image 4000x3000 over LR 512x384: ratio 7.81 -> resampled the HR image "
                         "by 1.024 to 4096x3072 (scale 8)")
    small = match_ratio((39, 58), (10, 15))
    assert small.action == "resample" and small.hr_target == (40, 60)
    img = np.tile(np.linspace(0, 255, 58), (39, 1))[..., None].astype(np.uint8)
    before = img.copy()
    out = apply_match(img, small)
    assert out.shape == (40, 60, 1) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255 and out.max() > 200  # range preserved, not 0..1
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize("hr,shrink", [((170, 170), True), ((39, 58), False), ((170, 167), True)])
def test_resample_anti_aliasing_only_when_shrinking(monkeypatch, rng, hr, shrink):
    import skimage.transform

    calls = []
    real = skimage.transform.resize

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(skimage.transform, "resize", spy)
    m = match_ratio(hr, (40, 40) if hr[0] > 100 else (10, 15))
    assert m.action == "resample" and (min(m.zoom) < 1) == shrink
    out = apply_match(rng.random(hr).astype(np.float64), m)
    assert out.shape == m.hr_target and out.dtype == np.float32
    assert calls == [dict(order=1, anti_aliasing=shrink, preserve_range=True)]


def test_resample_down():
    m = match_ratio((170, 170), (40, 40))  # ratio 4.25 -> scale 4, 10 rows too many to crop
    assert m.action == "resample" and m.scale == 4 and m.hr_target == (160, 160)
    assert m.zoom == pytest.approx((160 / 170, 160 / 170))
    assert "resampled the HR image by 0.941 to 160x160 (scale 4)" in m.message
    ramp = np.tile(np.arange(170, dtype=np.uint16) * 100, (170, 1))[..., None]
    out = apply_match(ramp, m)
    assert out.shape == (160, 160, 1) and out.dtype == np.float32
    # a linear ramp stays linear: first/last columns keep (nearly) the end values
    assert out[0, 0, 0] == pytest.approx(0, abs=60) and out[0, -1, 0] == pytest.approx(16900, abs=60)
    assert np.all(np.diff(out[0, :, 0]) > 0)


@pytest.mark.parametrize("hr,lr,match", [
    ((70, 70), (60, 60), r"ratio 1\.17 rounds to scale 1"),
    ((100, 200), (10, 10), r"row ratio 10\.000 and the column ratio 20\.000"),
    ((100, 130), (10, 12), "may not show the same area"),
    ((0, 10), (1, 1), "positive integers"),
    ((10, 10, 3), (1, 1), "positive integers"),
])
def test_refused(hr, lr, match):
    with pytest.raises(InputError, match=match):
        match_ratio(hr, lr)


def test_tolerance_is_a_parameter():
    with pytest.raises(InputError):
        match_ratio((100, 130), (10, 12))
    assert match_ratio((100, 130), (10, 12), tolerance=0.1).action == "resample"


def test_apply_refuses_other_shape(rng):
    m = match_ratio((40, 60), (10, 15))
    with pytest.raises(InputError, match=r"\(41, 60, 3\).*40x60"):
        apply_match(rng.random((41, 60, 3)), m)
