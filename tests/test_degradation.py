import numpy as np
import pytest
import torch

from napari_hsisr import Degradation, InputError, gaussian_psf


def brute_force_spatial(z, psf, s, boundary):
    """Direct evaluation of x[c,i,j] = sum_uv psf[u,v] z[c, i*s-p+u, j*s-p+v]."""
    C, Y, X = z.shape
    K = psf.shape[0]
    p = (K - s) // 2
    mode = {"zero": "constant", "wrap": "wrap", "reflect": "reflect", "symmetric": "symmetric"}[boundary]
    zp = np.pad(z, ((0, 0), (p, K - s - p), (p, K - s - p)), mode=mode)
    out = np.zeros((C, Y // s, X // s))
    for c in range(C):
        for i in range(Y // s):
            for j in range(X // s):
                for u in range(K):
                    for v in range(K):
                        out[c, i, j] += psf[u, v] * zp[c, i * s + u, j * s + v]
    return out


@pytest.mark.parametrize("s,K,boundary", [(2, 2, "reflect"), (3, 3, "zero"), (3, 6, "reflect"),
                                          (4, 7, "symmetric"), (2, 5, "wrap"), (5, 9, "zero")])
def test_spatial_matches_brute_force(rng, s, K, boundary):
    psf = rng.random((K, K))
    deg = Degradation(scale=s, psf=psf, boundary=boundary)
    z = rng.random((2, 4 * s, 3 * s))
    np.testing.assert_allclose(deg.spatial(z), brute_force_spatial(z, deg.psf, s, boundary), atol=1e-12)


@pytest.mark.parametrize("s,K,boundary", [(2, 2, "reflect"), (3, 6, "reflect"), (4, 7, "symmetric"),
                                          (2, 5, "wrap"), (5, 9, "zero")])
def test_spatial_adjoint(rng, s, K, boundary):
    deg = Degradation(scale=s, psf=rng.random((K, K)), boundary=boundary)
    z = rng.standard_normal((3, 4 * s, 5 * s))
    x = rng.standard_normal((3, 4, 5))
    lhs = np.sum(deg.spatial(z) * x)
    rhs = np.sum(z * deg.spatial_adjoint(x))
    assert lhs == pytest.approx(rhs, rel=1e-10)


def test_spectral_adjoint(rng):
    srf = rng.random((6, 4))
    deg = Degradation(scale=2, srf=srf)
    np.testing.assert_allclose(deg.srf.sum(0), 1.0)  # channels normalised to sum 1
    z = rng.standard_normal((6, 4, 4))
    y = rng.standard_normal((4, 4, 4))
    assert np.sum(deg.spectral(z) * y) == pytest.approx(np.sum(z * deg.spectral_adjoint(y)), rel=1e-10)
    np.testing.assert_allclose(deg.spectral(z)[:, 1, 2], deg.srf.T @ z[:, 1, 2])


def test_torch_and_numpy_agree_and_batch(rng):
    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.5, psf_size=8)
    z = rng.random((2, 3, 16, 16))
    out_np = deg.spatial(z)
    out_t = deg.spatial(torch.from_numpy(z).float())
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-6)
    assert out_np.shape == (2, 3, 4, 4)


def test_block_average_is_block_mean(rng):
    deg = Degradation(scale=3, psf="box")
    z = rng.random((2, 6, 9))
    expected = z.reshape(2, 2, 3, 3, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(deg.spatial(z), expected)


def test_lr_offset_is_kernel_centre():
    assert Degradation(scale=8).lr_offset == 3.5  # centre of the 8x8 block
    assert Degradation(scale=8, psf="gaussian", psf_size=12).lr_offset == 3.5
    assert Degradation(scale=2, psf="box", psf_size=3).lr_offset == 1.0


def test_gaussian_psf_anisotropic_rotation():
    k = gaussian_psf(31, 4.0, 1.0, angle_deg=90)
    var_rows = np.sum(k * (np.arange(31)[:, None] - 15) ** 2)
    var_cols = np.sum(k * (np.arange(31)[None, :] - 15) ** 2)
    assert var_rows > 10 * var_cols  # major axis vertical after 90 degrees
    assert k.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(gaussian_psf(9, 2.0, 1.0, 30), gaussian_psf(9, 2.0, 1.0, 210), atol=1e-15)


@pytest.mark.parametrize("bad", [0, 1, -2, 2.5, True])
def test_bad_scale(bad):
    with pytest.raises(InputError, match="scale"):
        Degradation(scale=bad)


def test_small_psf_and_bad_kernel():
    with pytest.raises(InputError, match="at least"):
        Degradation(scale=4, psf=np.ones((3, 3)))
    with pytest.raises(InputError, match="negative"):
        Degradation(scale=2, psf=-np.ones((2, 2)))
    with pytest.raises(InputError, match="square"):
        Degradation(scale=2, psf=np.ones((2, 3)))


def test_shape_errors_suggest_crop():
    deg = Degradation(scale=8)
    with pytest.raises(InputError, match="crop it to 96x96"):
        deg.check_shapes((100, 100), (12, 12))
    with pytest.raises(InputError, match="must be 12x12"):
        deg.check_shapes((96, 96), (10, 10))


def test_psf_file_roundtrip(tmp_path):
    k = gaussian_psf(5, 1.0)
    np.save(tmp_path / "k.npy", k)
    np.savetxt(tmp_path / "k.csv", k, delimiter=",")
    for name in ("k.npy", "k.csv"):
        deg = Degradation(scale=4, psf=str(tmp_path / name))
        np.testing.assert_allclose(deg.psf, k)
    (tmp_path / "bad.csv").write_text("1,2\n3\n")
    with pytest.raises(InputError, match="bad.csv"):
        Degradation(scale=2, psf=str(tmp_path / "bad.csv"))


# ---------------------------------------------------------------------- one builder from user input
def test_spec_round_trip_keeps_shift_encoding_gain_and_offset():
    """A recorded degradation rebuilt through the one user-input builder is the same degradation:
    kernel, response, wavelengths, boundary, shift, encoding, gains and offsets."""
    from napari_hsisr.core.degradation import DegradationSpec

    deg = Degradation(scale=4, psf="gaussian", psf_sigma=1.3, psf_size=7, srf="Nikon D700", n_bands=31,
                      boundary="symmetric", shift=(0.75, -1.25), hr_encoding="gamma:2.2", hr_gain=[1.1, 0.9, 1.05],
                      hr_offset=[0.01, 0.0, -0.02])
    rebuilt, note = DegradationSpec.from_settings(deg.settings()).build()
    assert note == ""
    a, b = deg.settings(), rebuilt.settings()
    for key in ("shift", "hr_encoding", "hr_gain", "hr_offset", "boundary", "scale"):
        assert b[key] == a[key], key
    np.testing.assert_allclose(b["psf_kernel"], a["psf_kernel"], atol=1e-12)
    np.testing.assert_allclose(b["srf_matrix"], a["srf_matrix"], atol=1e-12)
    assert rebuilt.encoding_given and not Degradation(scale=4).encoding_given


def test_spec_parses_text_and_names_flags():
    from napari_hsisr.core.degradation import DegradationSpec

    deg, _ = DegradationSpec(scale=4, shift="0.5,-1", wavelengths="400:700:10", srf="estimate").build()
    assert deg.shift == (0.5, -1.0) and deg.wavelengths.size == 31 and deg.srf is None
    assert deg.psf_name.startswith("gaussian(sigma=1")  # the command line's default: sigma scale/4
    with pytest.raises(InputError, match="^--shift expects 'dy,dx'"):
        DegradationSpec(scale=4, shift="1", flags=True).build()
    with pytest.raises(InputError, match="^wavelengths expects start:stop:step"):
        DegradationSpec(scale=4, wavelengths="400-700").build()


def test_recorded_degradation_is_used_only_when_nothing_describes_one():
    from napari_hsisr.core.degradation import DegradationSpec

    recorded = Degradation(scale=4, psf="box", srf="Nikon D700", n_bands=31).settings()
    deg, note = DegradationSpec(scale=4).build(recorded)
    assert deg.psf_name == "box(size=4)" and "records" in note
    deg, _ = DegradationSpec(scale=4).build(recorded, hr_dtype=np.uint8)  # a camera image: response estimated
    assert deg.srf is None and deg.psf_name == "box(size=4)"
    deg, note = DegradationSpec(scale=4, psf_sigma=1.5).build(recorded)
    assert note == "" and deg.psf_name.startswith("gaussian(sigma=1.5")
    with pytest.raises(InputError, match="records scale 4"):
        DegradationSpec(scale=2).build(recorded)


def test_batch_row_takes_every_degradation_column():
    """A manifest row's size, second sigma, angle, shift and boundary are used (they were ignored)."""
    from types import SimpleNamespace

    from napari_hsisr.core.batch import pair_degradation

    lr = SimpleNamespace(wavelengths=np.arange(400, 701, 10.0), data=np.zeros((31, 4, 4)), metadata={})
    row = {"psf": "gaussian", "psf_sigma": "1.5", "psf_size": "9", "psf_sigma2": "2.5", "psf_angle": "30",
           "shift": "0.5,-0.5", "boundary": "wrap", "srf": "estimate"}
    deg = pair_degradation(row, lr, 4)
    assert deg.psf.shape == (9, 9) and deg.boundary == "wrap" and deg.shift == (0.5, -0.5) and deg.srf is None
    assert "sigma2=2.5, angle=30" in deg.psf_name
