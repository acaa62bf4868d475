"""msfn: the shipped learned prior, and the multi-scale fusion network users train for one degradation."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr.core.errors import InputError  # noqa: E402
from napari_hsisr.core.methods.msfn import shipped_weights  # noqa: E402
from napari_hsisr.core.nets.msfn import MSFN, stage_factors  # noqa: E402
from napari_hsisr.core.sample import sample_pair  # noqa: E402
from napari_hsisr.core.training import TrainSettings, export_weights, load_weights, sha256, train_iter  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from msfn_reference_output import reference_output  # noqa: E402

REFERENCE_OUTPUT = Path(__file__).parent / "data" / "msfn_x8_reference_output.npz"


@pytest.fixture(scope="module")
def pair(pair):
    """The shared pair (conftest.py), with torch on two threads as these tests were measured."""
    torch.set_num_threads(2)
    return pair


@pytest.mark.parametrize("scale, factors", [(2, [2]), (8, [2, 2, 2]), (12, [2, 2, 3]), (5, [5]), (32, [2] * 5)])
def test_stage_factors(scale, factors):
    assert stage_factors(scale) == factors


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("scale, bands, channels", [(2, 31, 3), (4, 8, 3), (6, 20, 4), (8, 31, 3), (5, 10, 6)])
def test_shapes_every_level(scale, bands, channels, residual):
    net = MSFN(bands, channels, scale, width=8, residual=residual)
    n = 3
    base = torch.rand(2, bands, n * scale, n * scale) if residual else None
    preds = net(torch.rand(2, channels, n * scale, n * scale), torch.rand(2, bands, n, n), base)
    sizes = [n]
    for f in stage_factors(scale):
        sizes.append(sizes[-1] * f)
    assert [p.shape for p in preds] == [(2, bands, s, s) for s in sizes[1:]]
    targets = net.level_targets(torch.rand(2, bands, n * scale, n * scale))
    assert [t.shape for t in targets] == [p.shape for p in preds]


def test_untrained_network_interpolates_the_lr_cube():
    """Heads start at zero: the output is the LR cube grown by the bilinear transposed convs, so a
    constant LR cube gives the same constant everywhere, borders included."""
    net = MSFN(5, 3, 8, width=8, residual=False)
    out = net(torch.rand(1, 3, 32, 32), torch.full((1, 5, 4, 4), 0.3))[-1]
    np.testing.assert_allclose(out.detach().numpy(), 0.3, atol=1e-6)


def test_untrained_residual_network_returns_its_base():
    net = MSFN(5, 3, 8, width=8)
    base = torch.rand(1, 5, 32, 32)
    preds = net(torch.rand(1, 3, 32, 32), torch.rand(1, 5, 4, 4), base)
    torch.testing.assert_close(preds[-1], base)
    torch.testing.assert_close(preds[0], torch.nn.functional.avg_pool2d(base, 4))
    with pytest.raises(ValueError, match="base"):
        net(torch.rand(1, 3, 32, 32), torch.rand(1, 5, 4, 4))


def _train(cube, epochs, checkpoint=None, resume=False, steps=6, residual=True, stop_after=None):
    settings = TrainSettings(epochs=epochs, steps_per_epoch=steps, patch=32, batch=4, width=8, seed=3, lr_rate=3e-3,
                             residual=residual)
    gen = train_iter([cube[:, :, :64]], [cube[:, :, 64:]], sample_pair(size=128).degradation, settings,
                     checkpoint=checkpoint, resume=resume)
    vals = []
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value, vals
        if p.val is not None:
            vals.append(p.val["psnr"])
            if stop_after is not None and p.epoch == stop_after:
                gen.close()  # interrupted: the checkpoint holds the last completed epoch
                return None, vals


def test_short_training_improves_validation_and_resumes(tmp_path):
    cube = sample_pair(size=128).reference
    model, vals = _train(cube, epochs=4)
    assert len(vals) == 4
    assert vals[-1] > vals[0] + 0.3, vals
    # interrupted after 2 of 4 epochs, then resumed == 4 in one go (deterministic)
    ckpt = tmp_path / "ckpt.pt"
    _train(cube, epochs=4, checkpoint=ckpt, stop_after=2)
    resumed, vals2 = _train(cube, epochs=4, checkpoint=ckpt, resume=True)
    assert len(vals2) == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    np.testing.assert_allclose(vals2[-1], vals[-1], atol=1e-4)


def test_export_load_checksum_and_tamper(tmp_path):
    net = MSFN(31, 3, 8, width=8)
    with torch.no_grad():
        net.heads[-1].bias.fill_(0.01)  # not all zeros, so a changed value is detectable
    path = tmp_path / "w.pt"
    record = export_weights(net, path, {"degradation": {"scale": 8}})
    assert record["sha256"] == sha256(path)
    model, rec = load_weights(path)
    assert rec["model_config"] == net.config()
    for (name, a), b in zip(net.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3, msg=name)  # stored as float16
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum"):
        load_weights(path)


shipped = pytest.mark.skipif(shipped_weights() is None, reason="no shipped weights")


@shipped
def test_shipped_weights_reproduce_stored_output(pair):
    model, record = load_weights(shipped_weights())
    assert record["sha256"] == sha256(shipped_weights())
    stored = np.load(REFERENCE_OUTPUT)
    out = reference_output(model, pair)
    assert stored["sha256"] == record["sha256"], "regenerate with scripts/msfn_reference_output.py"
    np.testing.assert_allclose(out, stored["output"], atol=2e-4)


@shipped
def test_shipped_record_says_what_the_weights_saw():
    record = json.loads(shipped_weights().with_name("msfn_prior.pt.json").read_text())
    assert record["kind"] == "spectral_prior" and len(record["trained_scenes"]) == 19
    assert record["held_out_scenes"] == [] and len(record["held_out_cameras"]) == 4
    assert record["config"]["steps"] == record["history"][-1]["step"] and record["code_version"]
    assert shipped_weights().stat().st_size < 25 * 2**20


@shipped
def test_shipped_weights_refuse_a_tampered_copy(tmp_path):
    src = shipped_weights()
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_name(src.name + ".json"), dst.with_name(dst.name + ".json"))
    raw = bytearray(dst.read_bytes())
    raw[-10] ^= 0x01
    dst.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum"):
        small = sample_pair(size=64)
        hsisr.fuse(small.hr, small.lr, small.degradation, method="msfn", weights=str(dst))


@shipped
def test_msfn_has_no_warning_and_is_consistent(pair):
    res = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="msfn", device="cpu")
    assert res.cube.shape == pair.reference.shape
    assert "warnings" not in res.settings
    assert res.extras["weights"]["sha256"] == sha256(shipped_weights())
    assert len(res.extras["weights"]["trained_scenes"]) == 19
    raw = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="msfn", device="cpu", consistency=False)
    deg = pair.degradation
    err = lambda c: np.mean((deg.spatial(c.astype(np.float64)) - pair.lr) ** 2)  # noqa: E731
    assert err(res.cube) < 0.5 * err(raw.cube)  # measured 0.14


@shipped
def test_msfn_outside_its_trained_scales_returns_fast_and_says_so():
    """At x3 (trained: 4-32) the prior lost 10 dB to fast on the synthetic sample: the result is
    fast's with the consistency step, and a warning says why."""
    ref = sample_pair(size=96).reference
    deg = hsisr.Degradation(scale=3, psf="gaussian", psf_sigma=1, srf="Canon 5D Mark II",
                            wavelengths=np.arange(400, 701, 10))
    hr, lr = hsisr.simulate(ref, deg)
    res = hsisr.fuse(hr, lr, deg, method="msfn")
    fast = hsisr.fuse(hr, lr, deg, method="fast")
    (warning,) = res.settings["warnings"]
    assert "trained for scales 4 to 32" in warning and "fast's" in warning
    assert res.settings["resolved_options"]["prior_check"]["use_prior"] is False
    assert hsisr.evaluate(res.cube, ref)["psnr"] > hsisr.evaluate(fast.cube, ref)["psnr"] - 0.05


@shipped
def test_msfn_self_check_on_the_pair_degraded_once_more():
    """check=True: the prior is kept only if it does not make the pair degraded once more worse;
    on the synthetic sample (x4, a held-out camera) it does, so the result is fast's, with a warning."""
    ref = sample_pair(size=192).reference
    deg = hsisr.Degradation(scale=4, psf="gaussian", psf_sigma=1.3, srf="Nokia N900",
                            wavelengths=np.arange(400, 701, 10))
    hr, lr = hsisr.simulate(ref, deg)
    res = hsisr.fuse(hr, lr, deg, method="msfn", check=True)
    check = res.settings["resolved_options"]["prior_check"]
    assert check["checked"] and ("warnings" in res.settings) == (not check["use_prior"])
    if not check["use_prior"]:
        assert "worse" in res.settings["warnings"][0]
    unchecked = hsisr.fuse(hr, lr, deg, method="msfn")
    assert unchecked.settings["resolved_options"]["prior_check"] == {"checked": False, "use_prior": True}


@shipped
def test_msfn_refuses_another_band_grid_with_what_to_do():
    ref = sample_pair(size=64).reference[::2]  # 16 bands, 20 nm apart
    deg = hsisr.Degradation(scale=8, srf="Nikon D700", wavelengths=np.arange(400, 701, 20))
    hr, lr = hsisr.simulate(ref, deg)
    with pytest.raises(InputError, match="31 bands at 400..700 nm.*16 bands.*'fast'"):
        hsisr.fuse(hr, lr, deg, method="msfn")


def test_untrained_prior_returns_its_base_any_size():
    from napari_hsisr.core.nets.prior import SpectralPrior

    net = SpectralPrior(5, width=4)
    for shape in [(1, 5, 32, 32), (2, 5, 23, 37)]:
        base = torch.rand(shape)
        torch.testing.assert_close(net(base, 8), base)


@shipped
def test_the_prior_averaged_over_flips_and_rotations_is_equivariant_to_them(pair):
    """ensemble=8: the mean of the network over the square's 8 symmetries commutes with each of
    them (a flipped or turned scene gives the flipped or turned cube); one pass does not (the
    network is not equivariant: the check can fail)."""
    from napari_hsisr.core.methods.msfn import dihedral, infer_prior

    model, _ = load_weights(shipped_weights())
    base = np.ascontiguousarray(pair.reference[:, :48, :40], dtype=np.float32)  # not square
    for k in (1, 4, 6):
        turned = np.ascontiguousarray(dihedral(base, k))
        once = np.abs(infer_prior(model, turned, 8) - dihedral(infer_prior(model, base, 8), k)).max()
        mean = infer_prior(model, turned, 8, transforms=8) - dihedral(infer_prior(model, base, 8, transforms=8), k)
        assert np.abs(mean).max() < 1e-5 < once


@shipped
def test_each_pass_of_the_prior_is_a_progress_report_and_a_place_to_stop(pair):
    """ensemble=4 runs the network four times: the progress says which pass, and a run stopped
    between passes ends there (a large frame's passes take seconds each on a CPU)."""
    hr = pair.hr
    seen = []
    hsisr.fuse(hr, pair.lr, pair.degradation, method="msfn", progress=lambda p: seen.append(p.message))
    passes = [m for m in seen if m.startswith("learned prior: pass")]
    assert passes == [f"learned prior: pass {k}/4" for k in (1, 2, 3, 4)]
    gen = hsisr.fuse_iter(hr, pair.lr, pair.degradation, method="msfn")
    for p in gen:
        if p.message == "learned prior: pass 2/4":
            break
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_user_trained_msfn_weights_still_load_and_warn_on_another_degradation(tmp_path):
    cube = sample_pair(size=128).reference
    model, _ = _train(cube, epochs=1, steps=1)
    deg = sample_pair(size=128).degradation
    export_weights(model, tmp_path / "mine.pt", {"degradation": {**deg.settings(), "name": "x8"}})
    other = hsisr.Degradation(scale=8, psf="gaussian", psf_sigma=3.5, srf="Canon 5D Mark II",
                              wavelengths=np.arange(400, 701, 10))
    hr, lr = hsisr.simulate(cube, other)
    res = hsisr.fuse(hr, lr, other, method="msfn", weights=str(tmp_path / "mine.pt"))
    (warning,) = res.settings["warnings"]
    assert "PSF differs" in warning and "SRF differs" in warning and "weights='auto'" in warning
    with pytest.raises(InputError, match="3 HR channels, x8.*x4"):
        small = hsisr.Degradation(scale=4, srf="Nikon D700", wavelengths=np.arange(400, 701, 10))
        hsisr.fuse(*hsisr.simulate(cube, small), small, method="msfn", weights=str(tmp_path / "mine.pt"))


def test_residual_training_step_runs_with_fast_base():
    cube = sample_pair(size=128).reference
    model, vals = _train(cube, epochs=1, steps=2, residual=True)
    assert model.residual and len(vals) == 1 and np.isfinite(vals[0])


def test_training_refuses_bad_counts_and_resume_with_another_degradation(tmp_path):
    cube = sample_pair(size=128).reference
    deg = sample_pair(size=128).degradation
    bad = TrainSettings(epochs=0, steps_per_epoch=2, patch=32, batch=2, width=4)
    with pytest.raises(InputError, match="at least 1"):
        next(train_iter([cube], [], deg, bad))
    ok = TrainSettings(epochs=1, steps_per_epoch=1, patch=32, batch=1, width=4, residual=False)
    ckpt = tmp_path / "c.pt"
    list(train_iter([cube], [cube[:, :60, :60]], deg, ok, checkpoint=ckpt))  # 60 is not a multiple of 8
    other = deg.with_(psf=np.full((8, 8), 1 / 64))
    with pytest.raises(InputError, match="another degradation"):
        next(train_iter([cube], [], other, ok, checkpoint=ckpt, resume=True))
