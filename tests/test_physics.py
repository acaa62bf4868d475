"""Every linear operator of the forward model against its adjoint: <A x, y> == <x, A^T y>.

One parametrised test over the operators (physics' spatial and spectral operators, the degradation
built from them with a shifted kernel, their composition, and the Fourier solver's circular blur +
decimation), at several scales, kernel sizes (the block offset ``(K - s) // 2`` and an uneven
padding), boundaries and shapes, on numpy and torch inputs. An adjoint that is off by a flip, a
one-pixel offset or a boundary rule fails by far more than the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_hsisr.core.degradation import Degradation
from napari_hsisr.core.physics import SpatialOperator, SpectralOperator, shifted_kernel

BOUNDARIES = ("reflect", "symmetric", "wrap", "zero")


def _kernel(rng, size: int) -> np.ndarray:
    k = rng.random((size, size))  # no symmetry: a flipped adjoint cannot pass
    return k / k.sum()


def _spatial(rng, scale, size, boundary, lead=(3,), lr=(4, 5)):
    op = SpatialOperator(_kernel(rng, size), scale, boundary)
    hr = (lr[0] * scale, lr[1] * scale)
    return op, op.adjoint, (*lead, *hr), (*lead, *lr)


def _shifted(rng, scale, shift, boundary):
    """A degradation's spatial operator: a Gaussian PSF moved by a fractional misregistration."""
    deg = Degradation(scale=scale, psf="gaussian", psf_sigma=scale / 3, psf_size=scale + 2, boundary=boundary,
                      shift=shift)
    assert deg.kernel.shape[0] > scale + 2  # the shift widened the support: a new offset
    return deg.spatial, deg.spatial_adjoint, (2, 5 * scale, 4 * scale), (2, 5, 4)


def _spectral(rng, bands, channels):
    response = rng.standard_normal((bands, channels))  # negative lobes, as a colour-corrected camera
    op = SpectralOperator(response / response.sum(0))
    return op.linear, op.adjoint, (bands, 6, 7), (channels, 6, 7)


def _preset_spectral(rng):
    deg = Degradation(scale=4, srf="Nikon D700", wavelengths=np.linspace(400, 700, 31))
    return deg.spectral, deg.spectral_adjoint, (31, 8, 8), (3, 8, 8)


def _composed(rng, scale, boundary):
    """The HR image seen at LR resolution, ``D R^T``: what blind estimation compares."""
    deg = Degradation(scale=scale, psf="gaussian", psf_size=scale + 1, srf="Nikon D700",
                      wavelengths=np.linspace(400, 700, 31), boundary=boundary, shift=(0.5, -0.25))
    return (lambda z: deg.spatial(deg.spectral(z)), lambda x: deg.spectral_adjoint(deg.spatial_adjoint(x)),
            (31, 4 * scale, 3 * scale), (3, 4, 3))


def _fourier(rng, scale, size):
    """The Fourier solver's circular blur + decimation on its extended domain."""
    from napari_hsisr.core.solvers.fourier import SubspaceSystem

    deg = Degradation(scale=scale, psf=_kernel(rng, size))
    Y, X, p = 4 * scale, 5 * scale, 2
    system = SubspaceSystem(deg, rng.random((3, Y, X)), rng.random((p, Y // scale, X // scale)),
                            rng.random((3, p)), lam=1.0, mu=1e-2)
    ye, xe = system.ext[0] // scale, system.ext[1] // scale
    return system.lr, system.adjoint_lr, (p, *system.ext), (p, ye, xe)


CASES = {
    **{f"spatial s={s} K={k} {b}": (_spatial, dict(scale=s, size=k, boundary=b))
       for s, k in ((2, 2), (2, 3), (2, 5), (3, 4), (3, 6), (4, 4), (4, 7)) for b in BOUNDARIES},
    **{f"spatial s={s} K={k} edge": (_spatial, dict(scale=s, size=k, boundary="edge"))  # estimation's rule
       for s, k in ((2, 3), (3, 6), (4, 9))},
    "spatial with a batch axis": (_spatial, dict(scale=3, size=5, boundary="reflect", lead=(2, 3))),
    "spatial, one LR row": (_spatial, dict(scale=2, size=2, boundary="zero", lr=(1, 6))),
    **{f"shifted {shift} {b}": (_shifted, dict(scale=4, shift=shift, boundary=b))
       for shift in ((0.4, -1.3), (-2.0, 0.75)) for b in BOUNDARIES},
    "spectral 31 -> 3": (_spectral, dict(bands=31, channels=3)),
    "spectral 5 -> 8": (_spectral, dict(bands=5, channels=8)),
    "spectral Nikon D700 preset": (_preset_spectral, {}),
    **{f"spatial after spectral s={s} {b}": (_composed, dict(scale=s, boundary=b))
       for s in (2, 4) for b in ("reflect", "zero")},
    **{f"fourier s={s} K={k}": (_fourier, dict(scale=s, size=k)) for s, k in ((2, 2), (2, 5), (4, 7))},
}


# the Fourier solver works on numpy arrays only; every other operator also takes torch tensors
PARAMS = [pytest.param(case, as_torch, id=f"{case} {'torch' if as_torch else 'numpy'}")
          for case in CASES for as_torch in (False, True) if not (as_torch and case.startswith("fourier"))]


@pytest.mark.parametrize("case, as_torch", PARAMS)
def test_every_linear_operator_matches_its_adjoint(case, as_torch):
    rng = np.random.default_rng(sum(map(ord, case)))
    factory, params = CASES[case]
    forward, adjoint, in_shape, out_shape = factory(rng, **params)
    x = rng.standard_normal(in_shape)
    y = rng.standard_normal(out_shape)
    if as_torch:
        import torch

        ax, aty = forward(torch.from_numpy(x)).numpy(), adjoint(torch.from_numpy(y)).numpy()
    else:
        ax, aty = forward(x), adjoint(y)
    assert ax.shape == out_shape and aty.shape == in_shape
    lhs, rhs = float(np.vdot(ax, y)), float(np.vdot(x, aty))
    scale = np.linalg.norm(ax) * np.linalg.norm(y) + np.linalg.norm(x) * np.linalg.norm(aty)
    assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)


def test_the_adjoint_test_catches_a_wrong_adjoint():
    """The check above is sharp: a kernel flipped in the adjoint (the classic mistake) fails it."""
    rng = np.random.default_rng(0)
    op = SpatialOperator(_kernel(rng, 5), 3, "reflect")
    flipped = SpatialOperator(op.kernel[::-1, ::-1].copy(), 3, "reflect")
    x, y = rng.standard_normal((2, 12, 15)), rng.standard_normal((2, 4, 5))
    assert abs(np.vdot(op(x), y) - np.vdot(x, flipped.adjoint(y))) > 1e-3 * abs(np.vdot(op(x), y))


def test_a_whole_pixel_shift_moves_the_samples_by_that_many_pixels():
    """The shift baked into the kernel: (0, 1) samples the scene one HR pixel to the right."""
    rng = np.random.default_rng(1)
    kernel = _kernel(rng, 4)
    z = rng.random((1, 16, 20))
    moved = SpatialOperator(shifted_kernel(kernel, 4, (0.0, 1.0)), 4, "wrap")(z)
    expected = SpatialOperator(kernel, 4, "wrap")(np.roll(z, -1, axis=-1))
    np.testing.assert_allclose(moved, expected, atol=1e-12)


# ---------------------------------------------------------------------- one blur-and-decimate
def _direct(z, kernel, scale, mode):
    """``x[c, i, j] = sum_uv k[u, v] z[c, i s - p + u, j s - p + v]`` evaluated tap by tap, the
    samples outside the image by numpy's pad ``mode`` (``p = (K - s) // 2`` written out here)."""
    K = kernel.shape[0]
    p = (K - scale) // 2
    zp = np.pad(z, ((0, 0), (p, K - scale - p), (p, K - scale - p)), mode=mode)
    y, x = z.shape[1] // scale, z.shape[2] // scale
    out = np.zeros((len(z), y, x))
    for u in range(K):
        for v in range(K):
            out += kernel[u, v] * zp[:, u:u + y * scale:scale, v:v + x * scale:scale]
    return out


@pytest.mark.parametrize("scale, size", [(2, 2), (3, 6), (4, 9), (8, 19)])
def test_estimation_sees_the_pair_through_the_operator(scale, size):
    """Blind estimation, gain fitting and the fit report use the physics operator with its edge
    rule (estimation.spatial), its patch matrices read the same windows, and the LR pixels they
    count are the operator applied to the validity mask with zero outside (footprint_valid)."""
    from napari_hsisr.core.estimation import footprint_valid, patch_matrix, spatial

    rng = np.random.default_rng(scale * 100 + size)
    kernel = _kernel(rng, size)
    z = rng.random((2, 5 * scale, 4 * scale))
    expected = _direct(z, kernel, scale, "edge")
    np.testing.assert_allclose(spatial(z, kernel, scale), expected, rtol=0, atol=1e-13)
    np.testing.assert_allclose(patch_matrix(z, scale, size) @ kernel.ravel(), expected.reshape(2, -1), rtol=0,
                               atol=1e-13)
    valid = rng.random(z.shape[1:]) > 0.1
    mass = _direct(valid[None].astype(float), kernel, scale, "constant")[0]
    np.testing.assert_array_equal(footprint_valid(kernel, scale, valid.shape, valid), mass >= 0.99)
    if size > scale:  # the edge rule matters: the reflect one gives other border samples
        assert not np.allclose(spatial(z, kernel, scale), SpatialOperator(kernel, scale, "reflect")(z))


@pytest.mark.parametrize("scale", [2, 3, 8])
def test_block_mean_is_the_operator_with_the_block_as_kernel(scale):
    """GSA and the coarse registration average blocks by a reshape (much faster than the float64
    convolution); it is the spatial operator with a box kernel of side s, to rounding."""
    from napari_hsisr.core.physics import block_mean

    rng = np.random.default_rng(scale)
    z = rng.standard_normal((3, 4 * scale, 5 * scale))
    box = np.full((scale, scale), 1.0 / scale ** 2)
    np.testing.assert_allclose(block_mean(z, scale), SpatialOperator(box, scale, "zero")(z), rtol=0, atol=1e-14)
    np.testing.assert_allclose(block_mean(z, scale), _direct(z, box, scale, "constant"), rtol=0, atol=1e-14)
    assert block_mean(z[0], scale).shape == (4, 5)


def test_the_circular_operator_is_the_operator_inside_the_image():
    """The no-reference checks' FFT form of D (the image taken as periodic) is the operator itself
    on every LR pixel whose kernel stays inside the image, and differs at the border."""
    from napari_hsisr.core.estimation import footprint_valid

    rng = np.random.default_rng(5)
    op = SpatialOperator(_kernel(rng, 7), 3, "reflect")
    z = rng.random((2, 24, 30))
    inside = footprint_valid(op.kernel, 3, z.shape[1:], mass=1 - 1e-9)
    assert inside.any() and not inside.all()
    np.testing.assert_allclose(op.circular(z)[:, inside], op(z)[:, inside], rtol=0, atol=1e-12)
    assert not np.allclose(op.circular(z)[:, ~inside], op(z)[:, ~inside])


@pytest.mark.parametrize("boundary", ["reflect", "symmetric", "wrap", "edge", "zero"])
@pytest.mark.parametrize("scale, size", [(2, 2), (4, 7), (8, 12), (3, 3)])
def test_the_numpy_operator_equals_the_torch_one(boundary, scale, size):
    """numpy in: numpy's strided sums (no torch import); torch in: conv2d. The same samples and sums."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(scale * 100 + size)
    kernel = rng.random((size, size))
    op = SpatialOperator(kernel / kernel.sum(), scale, boundary)
    z = rng.random((2, 3, 6 * scale, 5 * scale))
    np.testing.assert_allclose(op(z), op(torch.from_numpy(z)).numpy(), rtol=0, atol=1e-14)


def test_the_methods_without_torch_never_import_it():
    """fast, gsa and bicubic, whole frame (the response and encoding estimated, the result check
    with its GSA candidate) and in tiles as a cluster's worker runs them, never import torch (5 s
    of a process's start-up): torch is made unimportable and they still run."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "import numpy as np, napari_hsisr as h\n"
            "from napari_hsisr.core.sample import sample_pair\n"
            "from napari_hsisr.core.parallel import limited\n"
            "from napari_hsisr.core.tiling import warm_worker\n"
            "p = sample_pair(size=64)\n"
            "told = p.degradation.with_(srf=None, hr_encoding='auto')\n"
            "for m in ('fast', 'gsa', 'bicubic'):\n"
            "    assert np.isfinite(h.fuse(p.hr, p.lr, told, method=m).cube).all()\n"
            "warm_worker('fast')\n"  # what a cluster's worker does first, then each tile under limited(1)
            "with limited(1, torch_too=False):\n"
            "    r = h.fuse(p.hr, p.lr, p.degradation, method='fast', tile=32)\n"
            "assert np.isfinite(r.cube).all()\n"
            "print('ran')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ran"


@pytest.mark.parametrize("shape, scale", [((31, 17, 23), 8), ((3, 5, 4), 4), ((2, 9, 9), 32), ((1, 1, 1), 2)])
def test_bicubic_in_numpy_equals_torchs(shape, scale):
    """The same samples and weights as torch's interpolate(mode='bicubic', align_corners=False),
    borders included (a 1-pixel image, a scale larger than the image)."""
    import torch
    import torch.nn.functional as F

    from napari_hsisr.core.methods.bicubic import upsample

    cube = np.random.default_rng(0).random(shape).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(cube)[None], scale_factor=scale, mode="bicubic", align_corners=False)[0]
    got = upsample(cube, scale)
    assert got.dtype == np.float32 and got.shape == tuple(ref.shape)
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-6)
