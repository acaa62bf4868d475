"""The camera-pipeline renderer (core/camera.py): each stage does what it says, on small arrays."""

import numpy as np
import pytest

from napari_hsisr.core import camera as cam
from napari_hsisr.core.camera import CameraPipeline, render
from napari_hsisr.core.errors import InputError

WL = np.arange(400, 701, 10).astype(float)


def scene(size=32, seed=0):
    """A small smooth random reflectance cube (31, size, size) in [0.05, 0.8]."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    c = ndimage.gaussian_filter(rng.random((31, size, size)), (3, 2, 2))
    c = (c - c.min()) / (c.max() - c.min())
    return 0.05 + 0.75 * c


def flat(value=0.5, size=16):
    return np.full((31, size, size), value)


def test_deterministic_for_a_seed_and_noise_depends_on_it():
    p = cam.get_pipeline("phone")
    z = scene()
    a, b = render(z, WL, p, seed=3), render(z, WL, p, seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render(z, WL, p, seed=4))
    assert np.array_equal(render(z, WL, "srgb", seed=1), render(z, WL, "srgb", seed=2))  # no noise, no rng


@pytest.mark.parametrize("name", list(cam.suite_pipelines()))
def test_every_suite_pipeline_renders_its_dtype_and_shape(name):
    p = cam.get_pipeline(name)
    out = render(scene(24), WL, p, seed=0)
    assert out.shape == (24, 24, 3)
    assert out.dtype == (np.uint8 if p.bit_depth == 8 else np.uint16)
    assert out.max() > 0


def test_suite_covers_the_issue():
    suite = cam.suite_pipelines()
    assert len(suite) >= 25
    responses = {p.response for p in suite.values()}
    assert cam.SRGB_RESPONSE in responses and len(responses - {cam.SRGB_RESPONSE}) >= 6
    assert {p.white_balance for p in suite.values()} == {"none", "grey_world", "daylight"}
    tones = {p.tone for p in suite.values()}
    assert {"srgb", "gamma:1.8", "gamma:2.6", "hable", "aces"} <= tones
    assert any(t.startswith("logistic") for t in tones) and any(t.startswith("toe") for t in tones)
    assert {60, 95} <= {p.jpeg_quality for p in suite.values()}
    assert any(p.bayer for p in suite.values()) and any(p.full_well for p in suite.values())
    assert any(p.vignetting for p in suite.values()) and any(p.exposure > 1.5 for p in suite.values())
    assert {(0.5, -0.5), (2.0, -2.0)} <= {p.offset for p in suite.values()}
    for p in suite.values():  # a frozen, hashable record that round-trips through settings()
        hash(p)
        assert CameraPipeline(**{**p.settings(), "offset": tuple(p.settings()["offset"])}) == p


@pytest.mark.parametrize("response", ["Canon 60D", "Nokia N900", cam.SRGB_RESPONSE])
def test_white_patch_is_neutral_after_daylight_and_grey_world(response):
    white = flat(0.6)
    for wb in ("daylight", "grey_world"):
        out = render(white, WL, CameraPipeline(response=response, white_balance=wb, tone="linear", bit_depth=16))
        assert np.ptp(out.reshape(-1, 3).mean(0)) <= 1, (wb, out[0, 0])
    # grey world on a scene: the image mean is grey
    _, lin = render(scene(), WL, CameraPipeline(response=response, white_balance="grey_world"), return_linear=True)
    m = lin.reshape(-1, 3).mean(0)
    assert np.ptp(m) < 1e-9 * m.max() + 1e-12
    # no white balance: a camera's raw white has its colour cast
    if response != cam.SRGB_RESPONSE:
        raw = render(white, WL, CameraPipeline(response=response, white_balance="none", tone="linear", bit_depth=16))
        assert np.ptp(raw.reshape(-1, 3).mean(0)) > 0.05 * 65535 * 0.6


def test_tone_curves_monotone_onto_unit_interval_with_toe_and_shoulder():
    x = np.linspace(0, 1, 4001)
    srgb = cam.tone_curve("srgb")(x)
    for spec in ("linear", "srgb", "gamma:1.8", "gamma:2.6", "logistic:5", "hable", "aces", "toe:0.04", "log:50"):
        y = cam.tone_curve(spec)(x)
        assert y[0] == pytest.approx(0, abs=1e-12) and y[-1] == pytest.approx(1, abs=1e-9), spec
        assert np.all(np.diff(y) >= -1e-12), spec
        assert np.all(np.diff(y)[1:-1] > 0) or spec == "linear", spec
    top = x > 0.9
    for spec in ("logistic:5", "hable", "aces"):  # shoulder: flatter than sRGB near white
        y = cam.tone_curve(spec)(x)
        assert np.ptp(y[top]) < 0.8 * np.ptp(srgb[top]), spec
    shadows = (x > 0.005) & (x < 0.03)
    for spec in ("logistic:5", "aces", "toe:0.04"):  # toe: darker than sRGB in the deep shadows
        y = cam.tone_curve(spec)(x)
        assert np.all(y[shadows] < srgb[shadows]), spec
    s = cam.tone_curve("logistic:5")(x)  # an S in the display domain: slope at the ends < in the middle
    u = cam.tone_curve("srgb")(x)
    slope = np.gradient(s, u)
    assert slope[np.argmin(abs(u - 0.5))] > 2 * max(slope[5], slope[-5])
    with pytest.raises(InputError):
        cam.tone_curve("gamma:9")
    with pytest.raises(InputError):
        cam.tone_curve("velvia")


def test_jpeg_changes_the_image_within_a_bound():
    base = render(scene(64), WL, "srgb")
    for q, bound in ((95, 3.0), (60, 8.0)):
        out = render(scene(64), WL, CameraPipeline(jpeg_quality=q))
        diff = out.astype(float) - base
        assert np.any(diff != 0)
        assert np.sqrt(np.mean(diff ** 2)) < bound, q
    with pytest.raises(InputError):
        CameraPipeline(jpeg_quality=80, bit_depth=16)


def test_jpeg_420_subsamples_chroma():
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 1] = 128
    img[:, ::2, 0] = 255  # a one-pixel red/green stripe: chroma at the Nyquist frequency
    full = cam.jpeg_roundtrip(img, 95, "444")
    sub = cam.jpeg_roundtrip(img, 95, "420")
    def err(a):
        return np.abs(a.astype(float) - img).mean()

    assert err(sub) > 2 * err(full)


def test_bayer_demosaic_of_a_flat_image_is_flat_and_keeps_the_samples():
    img = np.empty((17, 20, 3))
    img[:] = (0.2, 0.5, 0.7)
    for pattern in cam.BAYER_PATTERNS:
        out = cam.demosaic_bilinear(cam.mosaic(img, pattern), pattern)
        np.testing.assert_allclose(out, img, atol=1e-12)
    z = scene(32)
    rgb = np.tensordot(z, cam.camera_response(cam.SRGB_RESPONSE, WL), axes=(0, 0))
    out = cam.demosaic_bilinear(cam.mosaic(rgb), "RGGB")
    masks = cam.bayer_masks(rgb.shape[:2])
    np.testing.assert_allclose(out[masks], rgb[masks])  # measured samples are kept as they are
    p = CameraPipeline(bayer="RGGB", tone="linear", bit_depth=16)
    flat_out = render(flat(0.4), WL, p)
    assert np.ptp(flat_out) <= 1


def test_vignetting_darkens_corners():
    for model in ("cos4", "poly"):
        v = cam.vignetting_map((33, 41), 0.4, model)
        assert v[16, 20] == pytest.approx(1.0)
        assert v[0, 0] == pytest.approx(0.6) and v[-1, -1] == pytest.approx(0.6)
        out = render(flat(0.5, 33), WL, CameraPipeline(vignetting=0.4, vignetting_model=model)).astype(float)
        assert out[0, 0].mean() < out[16, 16].mean() - 20
    assert np.all(cam.vignetting_map((8, 8), 0.0) == 1)


def test_shift_moves_content():
    z = np.full((31, 32, 32), 0.1)
    z[:, 10:14, 12:16] = 0.8
    base = render(z, WL, "srgb").astype(float)[..., 1]
    moved = render(z, WL, CameraPipeline(offset=(2.0, -3.0))).astype(float)[..., 1]
    np.testing.assert_array_equal(moved[12:16, 9:13], base[10:14, 12:16])

    def centroid(a):
        w = np.clip(a - np.median(a), 0, None)
        yy, xx = np.mgrid[:a.shape[0], :a.shape[1]]
        return (w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()

    yy, xx = np.mgrid[:32, :32]
    blob = 0.1 + 0.6 * np.exp(-((yy - 15.0) ** 2 + (xx - 17.0) ** 2) / (2 * 2.5 ** 2))
    z = np.broadcast_to(blob, (31, 32, 32))
    half = render(z, WL, CameraPipeline(offset=(0.5, 0.5), tone="linear", bit_depth=16)).astype(float)[..., 1]
    ref = render(z, WL, CameraPipeline(tone="linear", bit_depth=16)).astype(float)[..., 1]
    (y0, x0), (y1, x1) = centroid(ref), centroid(half)
    assert y1 - y0 == pytest.approx(0.5, abs=0.05) and x1 - x0 == pytest.approx(0.5, abs=0.05)


def test_noise_is_poisson_gaussian():
    rng = np.random.default_rng(0)
    sig = np.full((200, 200), 0.25)
    out = cam.sensor_noise(sig, 1000.0, 5.0, rng)
    # variance in electrons: 0.25 * 1000 (shot) + 25 (read)
    assert np.var(out * 1000) == pytest.approx(275, rel=0.05)
    assert np.mean(out) == pytest.approx(0.25, abs=0.002)
    assert np.array_equal(cam.sensor_noise(sig, None, 5.0, rng), sig)


def test_exposure_push_clips_highlights_and_dtype_range():
    z = scene()
    out = render(z, WL, CameraPipeline(exposure=3.0))
    assert out.dtype == np.uint8 and np.mean(out == 255) > 0.2
    assert np.mean(render(z, WL, "srgb") == 255) < 0.01
    o16 = render(z, WL, CameraPipeline(bit_depth=16, tone="linear"))
    assert o16.dtype == np.uint16 and o16.max() <= 65535 and o16.max() > 255


def test_matrix_response_and_bad_input():
    R = np.abs(np.random.default_rng(0).random((31, 3)))
    p = CameraPipeline(response=R)
    hash(p)
    assert render(scene(), WL, p).shape == (32, 32, 3)
    with pytest.raises(InputError):
        CameraPipeline(response=np.ones((31, 4)))
    with pytest.raises(InputError):
        CameraPipeline(white_balance="auto")
    with pytest.raises(InputError):
        render(scene()[:10], WL, "srgb")  # 10 bands, 31 wavelengths: the matrix response can't match
    with pytest.raises(InputError):
        cam.get_pipeline("nope")


def test_random_pipelines_render():
    rng = np.random.default_rng(5)
    for _ in range(5):
        p = cam.random_pipeline(rng)
        out = render(scene(16), WL, p, seed=1)
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_stress_suite_harness_on_a_small_crop(cave_dir, tmp_path):
    """benchmarks/cameras.py: one real scene, one pipeline, bicubic and gsa on a 64 x 64 crop."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cameras.py"
    spec = importlib.util.spec_from_file_location("bench_cameras", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ref, hr, lr, true = bench.make_pair("balloons", "jpeg60", 64, 8)
    assert ref.shape == (31, 64, 64) and hr.shape == (64, 64, 3) and hr.dtype == np.uint8
    assert lr.shape == (31, 8, 8) and true.scale == 8
    import torch

    threads = torch.get_num_threads()  # run_one sets the thread count: keep the session's
    rows = [bench.run_one("balloons", "jpeg60", m, 64, 8, threads) for m in ("bicubic", "gsa")]
    assert all("error" not in r and r["plausible"] and np.isfinite(r["psnr"]) for r in rows), rows
    text = bench.report(rows, ["jpeg60"], ["bicubic", "gsa"], ["balloons"], "header")
    assert "| jpeg60 |" in text and "worst case" in text
    # --report: saved rows re-rendered, a later file's row replacing an earlier one's
    import json

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    args = {"crop": 64, "scale": 8, "jobs": 1}
    first.write_text(json.dumps({"args": args, "rows": rows}))
    better = dict(rows[1], psnr=rows[1]["psnr"] + 10.0)
    second.write_text(json.dumps({"args": args, "rows": [better]}))
    text = bench.report_saved([str(first), str(second)])
    assert f"{better['psnr']:.2f}" in text and f"{rows[1]['psnr']:.2f} /" not in text
