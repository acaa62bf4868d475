"""The learned prior's training (hsisr train --config) end to end on a tiny CAVE-style folder."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr.cli import main  # noqa: E402
from napari_hsisr.core.errors import InputError  # noqa: E402
from napari_hsisr.core.prior_training import PriorConfig, random_degradation, training_cameras  # noqa: E402
from napari_hsisr.core.sample import sample_pair  # noqa: E402


def _cave_folder(root, names):
    import imageio.v3 as iio

    ref = sample_pair(size=64).reference
    for k, name in enumerate(names):
        folder = root / f"{name}_ms"
        folder.mkdir(parents=True)
        cube = np.rot90(ref, k, axes=(1, 2))
        for i, band in enumerate(cube, 1):
            iio.imwrite(folder / f"{name}_ms_{i:02d}.png", np.round(np.clip(band, 0, 1) * 65535).astype(np.uint16))
    return root


def test_config_split_folds_and_refusals(tmp_path):
    cfg = PriorConfig(scenes=["e", "a", "d", "c", "b"], folds=2, fold=1)
    assert cfg.split() == (["a", "c", "e"], ["b", "d"])  # sorted, every 2nd from the fold's index
    cfg.fold = None
    assert cfg.split() == (["a", "b", "c", "d", "e"], [])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(InputError, match="unknown keys \\['stepz'\\]"):
        PriorConfig.load(bad)


def test_random_degradations_cover_the_ranges_and_keep_held_out_cameras_out():
    cams = training_cameras()
    assert not set(cams) & set(PriorConfig().held_out_cameras) and len(cams) == 25  # 24 camspec cameras + sRGB
    rng = np.random.default_rng(0)
    draws = [random_degradation(rng, cams) for _ in range(60)]
    assert {d.scale for d, _ in draws} == {4, 8, 16, 32}
    assert {desc["psf"] for _, desc in draws} == {"gaussian", "anisotropic", "box"}
    for deg, desc in draws:
        if desc["psf"] != "box":
            assert deg.scale / 8 <= desc["psf_sigma"] <= deg.scale / 2
        assert not any(c in desc["camera"] for c in PriorConfig().held_out_cameras)
    assert any(" + " in desc["camera"] for _, desc in draws)  # mixtures of two cameras


def test_train_a_fold_export_and_fuse_with_it(tmp_path, capsys):
    data = _cave_folder(tmp_path / "cave", ["aa", "bb", "cc"])
    cfg = {"data": str(data), "bank": "bank", "out": "runs/p.pt", "fold": 0, "folds": 3, "per_scene": 1,
           "held_per_scene": 1, "scales": [4], "steps": 4, "batch": 2, "patch": 32, "eval_every": 2,
           "eval_items": 2, "threads": 1, "workers": 2}  # the bank on a 2-process LocalCluster
    (tmp_path / "runs").mkdir()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    assert main(["train", "--config", str(path)]) == 0
    record = json.loads((tmp_path / "runs" / "p.pt.json").read_text())
    assert record["kind"] == "spectral_prior" and record["held_out_scenes"] == ["aa"]
    assert record["trained_scenes"] == ["bb", "cc"] and record["config"]["steps"] == 4
    assert [h["step"] for h in record["history"]] == [2, 4]
    assert record["history"][-1]["held_out_scenes"]["items"] == 1  # aa's one training-camera draw
    assert len(list((tmp_path / "bank").glob("*.npy"))) == 6  # 3 scenes x (1 + 1 held-out camera)
    lines = (tmp_path / "runs" / "p.log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]
    p = sample_pair(size=64)
    res = hsisr.fuse(p.hr, p.lr, p.degradation, method="msfn", weights=str(tmp_path / "runs" / "p.pt"))
    assert res.extras["weights"]["trained_scenes"] == ["bb", "cc"] and np.all(np.isfinite(res.cube))

    # a fine-tune of those weights with procedural scenes and camera-written HR images added
    path.write_text(json.dumps({**cfg, "steps": 2, "workers": 1, "synthetic": 1, "synthetic_fraction": 1.0,
                                "camera_per_scene": 1}))
    out = tmp_path / "runs" / "ft.pt"
    assert main(["train", "--config", str(path), "--init", str(tmp_path / "runs" / "p.pt"), "--out", str(out)]) == 0
    tuned = json.loads(out.with_name("ft.pt.json").read_text())
    assert tuned["init"]["sha256"] == record["sha256"] and tuned["synthetic_scenes"] == 1
    assert len(list((tmp_path / "bank").glob("synthetic-000_train*.npy"))) == 1
    cams = [json.loads(f.read_text()) for f in sorted((tmp_path / "bank").glob("*_cam100.json"))]
    assert [d["scene"] for d in cams] == ["aa", "bb", "cc", "synthetic-000"]  # every scene, measured or not
    for d in cams:  # an 8-bit camera image (tone curve, maybe JPEG), fused with response and encoding estimated
        assert d["camera_pipeline"]["bit_depth"] == 8 and d["camera_pipeline"]["tone"] and d["hr_8bit"]
        assert d["camera"] in training_cameras() and np.isfinite(d["base_psnr"])
    assert tuned["sha256"] != record["sha256"]  # it trained: two steps on the synthetic scene moved the weights
    path.write_text(json.dumps({**cfg, "init": str(tmp_path / "cfg.json")}))
    assert main(["train", "--config", str(path)]) == 2  # not weights: one line saying what to give
    assert "init" in capsys.readouterr().err


def test_synthetic_scenes_are_deterministic_varied_reflectances():
    from napari_hsisr.core.synthetic import synthetic_scene

    a, b = synthetic_scene(3, size=64), synthetic_scene(4, size=64)
    assert a.shape == (31, 64, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, synthetic_scene(3, size=64))
    assert not np.allclose(a, b)
    for cube in (a, b):
        assert cube.min() >= 0 and cube.max() <= 1
        spectra = cube.reshape(31, -1)
        assert np.linalg.matrix_rank(spectra - spectra.mean(1, keepdims=True), tol=1e-3) >= 3  # several materials


def test_a_stopped_run_resumes_and_another_config_is_refused(tmp_path):
    from napari_hsisr.core.methods.base import run_to_end
    from napari_hsisr.core.prior_training import train_prior

    data = _cave_folder(tmp_path / "cave", ["aa", "bb"])
    cfg = PriorConfig(data=str(data), bank=str(tmp_path / "bank"), out=str(tmp_path / "p.pt"), per_scene=1,
                      held_per_scene=0, scales=(4,), steps=4, batch=2, patch=32, eval_every=2, eval_items=1,
                      threads=1, workers=1)
    from napari_hsisr.core.training import load_weights

    run_to_end(train_prior(cfg))
    whole = load_weights(tmp_path / "p.pt")[0].state_dict()
    for f in tmp_path.glob("p.*"):
        f.unlink()
    gen = train_prior(cfg)
    for p in gen:
        if isinstance(p, dict) and p["step"] == 3:
            gen.close()  # stopped after step 3: the checkpoint holds step 2
            break
    run_to_end(train_prior(cfg))
    resumed = load_weights(tmp_path / "p.pt")[0].state_dict()
    for name, value in whole.items():  # the same weights as one uninterrupted run
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)
    with pytest.raises(InputError, match="another config"):
        for f in tmp_path.glob("p.pt*"):
            f.unlink()
        cfg.lr_rate = 2e-3
        run_to_end(train_prior(cfg))
