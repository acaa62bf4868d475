"""The result contract (core/contract.py) and what real camera pipelines need from the engine:
a diverging method yields the safe candidate with a warning, HR holes are filled from the LR
cube, the encoding is chosen on held-out pixels with bounded slopes, and a camera image with no
response given gets one estimated from the pair."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr import Degradation, simulate  # noqa: E402
from napari_hsisr.core.estimation import TONE_SLOPE_RANGE, estimate_degradation  # noqa: E402
from napari_hsisr.core.methods import fast  # noqa: E402
from napari_hsisr.core.methods.base import MethodInfo, Progress, register  # noqa: E402
from napari_hsisr.core.physics import ToneCurve  # noqa: E402
from napari_hsisr.core.sample import sample_scene  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    torch.set_num_threads(2)
    return sample_scene(96)


@pytest.fixture(scope="module")
def scene_pair(scene):
    cube, wl = scene
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf="Nikon D700", wavelengths=wl)
    rgb, lr = simulate(cube, deg, seed=0)
    return cube, rgb, lr, deg


def _psnr(a, b, where=None):
    err = (np.asarray(a, float) - b) ** 2
    return 10 * np.log10(1.0 / np.mean(err if where is None else err[:, where]))


def _register_test_method(name, transform):
    """A method that runs ``fast`` and then spoils its cube (a divergence, a bias)."""
    def run(inputs, **options):
        yield Progress(0, 1, message="spoiling")
        cube, extras = yield from fast.run(inputs)
        return transform(cube), extras

    register(MethodInfo(name, run, "test method", needs_srf=True))


def test_a_diverging_method_yields_the_safe_candidate_and_says_so(scene_pair):
    cube, rgb, lr, deg = scene_pair
    _register_test_method("test-explodes", lambda c: c * 1e9)
    res = hsisr.fuse(rgb, lr, deg, method="test-explodes")
    check = res.settings["result_check"]
    assert check["replaced"] == "test-explodes" and check["kept"] in ("gsa", "fast")
    assert "plausible range" in check["reason"]
    assert any("replaced by" in w and "test-explodes" in w for w in res.settings["warnings"])
    assert np.all(np.isfinite(res.cube)) and res.cube.max() < 4 * lr.max()
    # the candidate is a real fusion, not a placeholder: at least as good as GSA
    assert _psnr(res.cube, cube) >= _psnr(hsisr.fuse(rgb, lr, deg, method="gsa").cube, cube) - 0.01
    raw = hsisr.fuse(rgb, lr, deg, method="test-explodes", safe=False)  # experts keep the raw cube
    assert raw.cube.max() > 1e6 and "kept raw" in " ".join(raw.settings["warnings"])


def test_a_result_that_explains_the_pair_worse_is_replaced(scene_pair):
    cube, rgb, lr, deg = scene_pair
    _register_test_method("test-biased", lambda c: c * 0.7)  # in range, but 30 % too dark
    res = hsisr.fuse(rgb, lr, deg, method="test-biased")
    check = res.settings["result_check"]
    assert check["kept"] in ("gsa", "fast") and "explains the pair worse" in check["reason"]
    assert _psnr(res.cube, cube) > _psnr(hsisr.fuse(rgb, lr, deg, method="test-biased", safe=False).cube, cube) + 5


def test_a_good_result_is_kept_unchanged(scene_pair):
    cube, rgb, lr, deg = scene_pair
    res = hsisr.fuse(rgb, lr, deg, method="fast")
    assert res.settings["result_check"]["kept"] == "fast" and "replaced" not in res.settings["result_check"]
    assert _psnr(res.cube, cube) > 40  # measured 46.6


def test_hr_holes_are_filled_from_the_lr_cube(cave_dir):
    """A NaN block and a clipped block on a CAVE crop: inside them the result is the LR cube's
    (bicubic), outside them it is what the whole image gives."""
    from napari_hsisr.core.io import read_cube

    cube = read_cube(cave_dir / "egyptian_statue_ms").data.astype(np.float64)[:, 160:352, 160:352]
    deg = Degradation(scale=8, psf="gaussian", psf_sigma=2, srf="Nikon D700 (CAVE fusion papers)",
                      wavelengths=np.arange(400, 701, 10))
    rgb, lr = simulate(cube, deg, seed=0)
    bad, mask = rgb.copy(), np.zeros(rgb.shape[:2], bool)
    bad[24:72, 24:72] = np.nan
    bad[112:160, 96:144] = np.nanmax(rgb)  # clipped: a plateau at the image's maximum
    mask[24:72, 24:72] = mask[112:160, 96:144] = True
    bicubic = hsisr.fuse(rgb, lr, deg, method="bicubic").cube
    for method, loss in (("fast", 0.3), ("gsa", 0.5)):  # measured: fast -0.00 dB, gsa -0.12
        clean = hsisr.fuse(rgb, lr, deg, method=method).cube
        res = hsisr.fuse(bad, lr, deg, method=method)
        assert _psnr(res.cube, cube, mask) >= _psnr(bicubic, cube, mask) - 0.01
        assert _psnr(res.cube, cube, ~mask) >= _psnr(clean, cube, ~mask) - loss
        assert res.settings["result_check"]["hr_holes_filled_from_lr"] == pytest.approx(mask.mean(), rel=0.01)
        assert any("LR cube alone" in w for w in res.settings["warnings"])
        assert not any("misregistration" in w for w in res.settings["warnings"])


def test_an_hr_nodata_value_masks_its_pixels(scene_pair):
    """A uint8 camera image whose no-data fill is 0 (a mosaic's black border): with hr_nodata=0
    those pixels are holes, filled from the LR cube, and say so."""
    cube, rgb, lr, deg = scene_pair
    img = np.round(np.clip(rgb, 0, 1) * 254 + 1).astype(np.uint8)  # 1..255: 0 only where nodata
    img[:, :32] = 0
    srgb = deg.with_(hr_encoding="linear")
    plain = hsisr.fuse(img, lr, srgb, method="fast")
    masked = hsisr.fuse(img, lr, srgb, method="fast", hr_nodata=0)
    assert masked.settings["result_check"]["hr_holes_filled_from_lr"] == pytest.approx(1 / 3, rel=0.01)
    left = (slice(None), slice(None), slice(0, 32))
    assert _psnr(masked.cube[left], cube[left]) > _psnr(plain.cube[left], cube[left]) + 5
    with pytest.raises(hsisr.InputError, match="hr_nodata"):
        hsisr.fuse(img, lr, srgb, method="fast", hr_nodata=0, tile=48)


def test_isolated_nan_pixels_are_interpolated_not_masked(cave_dir):
    """5 % isolated NaN pixels: interpolated from their neighbours (median of the valid ones
    around) instead of removing from the fit every LR pixel whose footprint covers one (which is
    nearly all of them: 32 dB against 48.6 before)."""
    from napari_hsisr.core.io import read_cube

    cube = read_cube(cave_dir / "balloons_ms").data.astype(np.float64)[:, :256, :256]
    deg = Degradation(scale=8, psf="gaussian", psf_sigma=2, srf="Nikon D700 (CAVE fusion papers)",
                      wavelengths=np.arange(400, 701, 10))
    rgb, lr = simulate(cube, deg, seed=0)
    dotted = rgb.copy()
    dotted[np.random.default_rng(1).random(rgb.shape[:2]) < 0.05] = np.nan
    res = hsisr.fuse(dotted, lr, deg, method="fast")
    assert res.settings["input_scaling"]["hr_small_holes_interpolated"] > 0.04 * 256 * 256
    assert "hr_holes_filled_from_lr" not in res.settings["result_check"]
    clean = _psnr(hsisr.fuse(rgb, lr, deg, method="fast").cube, cube)
    assert _psnr(res.cube, cube) > clean - 1.0  # measured 50.74 against 51.05


def _camera_image(cube, wl, srf, encode, gain=(1.0, 0.9, 0.7)):
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, srf=srf, wavelengths=wl)
    rgb, lr = simulate(cube, deg, seed=0)
    lin = np.clip(np.moveaxis(rgb, -1, 0) * np.asarray(gain)[:, None, None], 0, 1)
    return np.round(np.moveaxis(encode(lin), 0, -1) * 255).astype(np.uint8), lr, deg


def _s_curve(v):
    f = lambda t: 1 / (1 + np.exp(-6 * (t - 0.5)))  # noqa: E731
    return (f(v ** (1 / 2.2)) - f(0)) / (f(1) - f(0))


@pytest.mark.parametrize("name, encode, expected", [
    ("srgb", ToneCurve("srgb").encode, ("srgb",)),
    ("gamma 2.6", ToneCurve("gamma", gamma=2.6).encode, ("gamma:2.6", "learned")),
    ("S-curve", _s_curve, ("learned",)),
])
def test_encoding_is_chosen_on_held_out_pixels_with_bounded_slopes(scene, name, encode, expected):
    cube, wl = scene
    rgb8, lr, _ = _camera_image(cube, wl, "Canon 5D Mark II", encode)
    est = estimate_degradation(np.moveaxis(rgb8, -1, 0) / 255.0, lr, 4, wl)
    assert est.tone.name in expected, est.notes
    if est.tone.kind == "table":  # neither the decode nor its inverse can blow noise up
        for row in est.tone.table:
            slopes = np.diff(row) / np.diff(est.tone.knots)
            assert slopes.min() >= TONE_SLOPE_RANGE[0] * slopes.mean() * 0.999
            assert slopes.max() <= TONE_SLOPE_RANGE[1] * slopes.mean() * 1.001
    assert any("held-out" in n for n in est.notes)


def test_a_camera_image_without_a_response_gets_one_estimated(scene):
    """A Canon-rendered 8-bit image with no response given: estimated from the pair, said in the
    warnings, and far better than assuming another camera (what the default used to do)."""
    cube, wl = scene
    rgb8, lr, true = _camera_image(cube, wl, "Canon 5D Mark II", ToneCurve("srgb").encode)
    no_srf = Degradation(scale=4, psf="gaussian", psf_sigma=1.2, psf_size=8, wavelengths=wl)
    res = hsisr.fuse(rgb8, lr, no_srf, method="fast")
    assert any("no spectral response was given" in w for w in res.settings["warnings"])
    assert res.settings["degradation"]["srf"] == "estimated from the pair"
    assumed = hsisr.fuse(rgb8, lr, no_srf.with_(srf="Nikon D700 (CAVE fusion papers)"), method="fast", safe=False)
    told = hsisr.fuse(rgb8, lr, true.with_(hr_encoding="srgb"), method="fast")
    assert any("likely cause: response" in w for w in assumed.settings["warnings"])  # the warning names it
    got, wrong, right = (_psnr(r.cube, cube) for r in (res, assumed, told))
    assert got > wrong + 2 and got > right - 1.5, (got, wrong, right)


def test_a_response_that_sums_to_zero_is_refitted_non_negative():
    """A dark, heavily processed image can drive the signed response fit of a channel to a sum
    <= 0 (CAVE hairs through the 'phone' camera pipeline): that channel is refitted non-negative
    instead of the estimate failing."""
    from napari_hsisr.core.estimation import _non_negative_response

    rng = np.random.default_rng(0)
    C, n, K = 8, 400, 3
    x = rng.random((C, n))
    true = np.abs(rng.normal(size=C))
    kern = np.zeros((K, K))
    kern[1, 1] = 1.0
    P = np.zeros((1, n, K * K))
    P[0, :, 4] = true @ x + 0.05  # the centre tap sees the channel's value
    W, o, resid = np.full((C, 1), -0.1), np.zeros(1), np.ones(1)
    notes = []
    W2, o2, r2 = _non_negative_response(P, np.arange(n), kern, x, np.ones(C, bool), W, o, resid, notes)
    assert W2.sum() > 0 and np.all(W2 >= 0) and r2[0] < 1e-6
    np.testing.assert_allclose(W2[:, 0], true, atol=1e-6)
    assert o2[0] == pytest.approx(0.05, abs=1e-6) and "non-negative" in notes[0]
