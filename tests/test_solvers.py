"""The numerical building blocks in core/solvers on tiny problems whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import fft

from napari_hsisr.core.degradation import Degradation
from napari_hsisr.core.physics import SpatialOperator
from napari_hsisr.core.solvers.fourier import SubspaceSystem, fold, sylvester_solve, tile
from napari_hsisr.core.solvers.guided import GuidedFilter
from napari_hsisr.core.solvers.subspace import noise_covariance, signal_rank, subspace


def _kernel(rng, size):
    k = rng.random((size, size))
    return k / k.sum()


def _circular(H, s):
    def down(a):
        return np.real(fft.ifft2(fold(np.conj(H) * fft.fft2(a), s)))

    def up(x):
        return np.real(fft.ifft2(H * tile(fft.fft2(x), s)))

    return down, up


@pytest.mark.parametrize("scale, size", [(2, 2), (2, 5), (4, 7)])
def test_fourier_blur_and_decimation_is_the_spatial_operator_on_a_periodic_image(scale, size):
    """The solver's circular model is physics' operator with the 'wrap' boundary, offset included."""
    rng = np.random.default_rng(scale * 10 + size)
    op = SpatialOperator(_kernel(rng, size), scale, "wrap")
    z = rng.random((2, 6 * scale, 5 * scale))
    down, _ = _circular(op.otf(z.shape[-2:]), scale)
    np.testing.assert_allclose(down(z), op(z), atol=1e-12)
    np.testing.assert_allclose(op.circular(z), op(z), atol=1e-12)


@pytest.mark.parametrize("scale, size", [(2, 2), (3, 5), (4, 4)])
def test_sylvester_solve_satisfies_its_normal_equations(scale, size):
    """``a = sylvester_solve(q)`` solves ``D^T D a + M a = q`` for a symmetric positive ``M``."""
    rng = np.random.default_rng(size)
    p, Y, X = 3, 8 * scale, 6 * scale
    H = SpatialOperator(_kernel(rng, size), scale, "wrap").otf((Y, X))
    B = rng.standard_normal((p, p))
    M = B @ B.T + 0.1 * np.eye(p)
    q = rng.standard_normal((p, Y, X))
    a = sylvester_solve(fft.fft2(q), H, scale, M)
    down, up = _circular(H, scale)
    residual = up(down(a)) + np.tensordot(M, a, axes=1) - q
    assert np.linalg.norm(residual) <= 1e-10 * np.linalg.norm(q)


def _system(rng, scale=2, size=2, holes=False, **kw):
    Y, X, p, k = 12 * scale, 10 * scale, 3, 4
    deg = Degradation(scale=scale, psf=_kernel(rng, size))
    hr_valid = None
    if holes:
        hr_valid = np.ones((Y, X), bool)
        hr_valid[5:14, 3:11] = False  # a large saturated region: no HR data term there
    return SubspaceSystem(deg, rng.random((k, Y, X)), rng.random((p, Y // scale, X // scale)),
                          rng.standard_normal((k, p)), lam=1.0, mu=0.05, hr_valid=hr_valid, **kw)


def test_unmasked_subspace_solve_is_the_exact_minimiser():
    """No mask, no margin (K = s): the closed-form solve satisfies the normal equations exactly."""
    rng = np.random.default_rng(3)
    system = _system(rng)
    assert not system.masked and system.margin == (0, 0)
    prior = rng.random((3, *system.shape))
    a = system(prior)
    rhs = system.rhs(system.extend(prior))
    assert np.linalg.norm(system._normal(a) - rhs) <= 1e-10 * np.linalg.norm(rhs)


@pytest.mark.parametrize("size, holes", [(2, True), (5, False), (5, True)], ids=["holes", "margins", "both"])
def test_masked_conjugate_gradients_reduce_the_residual_to_the_tolerance(size, holes):
    """Masks (holes in the HR image) or an extended domain (a kernel wider than the block) need CG:
    more iterations never leave a larger residual, and the default run reaches the tolerance."""
    residuals = []
    for max_iter in (1, 2, 4, 100):
        rng = np.random.default_rng(size)
        system = _system(rng, size=size, holes=holes, max_iter=max_iter, tol=1e-6)
        prior = rng.random((3, *system.shape))
        assert system.masked
        system(prior)
        residuals.append(system.relative_residual)
    assert all(later <= earlier * (1 + 1e-9) for earlier, later in zip(residuals, residuals[1:])), residuals
    assert residuals[0] > 1e-6 and residuals[-1] < 1e-6, residuals  # one step is not enough; CG gets there


@pytest.mark.parametrize("weighted", [False, True])
def test_guided_filter_reproduces_a_target_linear_in_the_guide(weighted):
    """A target that is exactly ``A^T guide + b`` is its own guided filter (eps -> 0), with or
    without pixel weights (a masked region takes no part)."""
    rng = np.random.default_rng(4)
    guide = rng.random((3, 24, 20))
    A, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    target = np.einsum("kp,kyx->pyx", A, guide) + b[:, None, None]
    weights = None
    if weighted:
        weights = np.ones((24, 20))
        weights[8:14, 5:12] = 0.0
    out = GuidedFilter(guide, radius=2, eps=1e-9, weights=weights)(target)
    np.testing.assert_allclose(out, target, atol=1e-5)


def test_guided_filter_with_a_large_eps_tends_to_the_local_mean():
    rng = np.random.default_rng(5)
    guide, target = rng.random((3, 16, 16)), rng.random((1, 16, 16))
    from scipy import ndimage

    mean = ndimage.uniform_filter(ndimage.uniform_filter(target, size=(1, 5, 5), mode="reflect"),
                                  size=(1, 5, 5), mode="reflect")
    np.testing.assert_allclose(GuidedFilter(guide, radius=2, eps=1e8)(target), mean, atol=1e-6)


def test_subspace_rank_and_noise_of_a_low_rank_cube():
    """A cube of 3 spectra mixed per pixel, plus white noise: HySime finds rank 3 and the noise
    level, and the 3-vector subspace reproduces the cube to the noise."""
    rng = np.random.default_rng(6)
    C, n, sigma = 30, 40 * 40, 0.01
    spectra, abundances = rng.random((C, 3)), rng.random((3, n))
    clean = (spectra @ abundances).reshape(C, 40, 40)
    cube = clean + sigma * rng.standard_normal(clean.shape)
    assert signal_rank(cube) == 3
    noise = np.diag(noise_covariance(cube))
    # each band's residual after regressing on the others carries some of their noise: a few % above
    assert 0.9 < noise.mean() / sigma ** 2 < 1.2 and np.all((noise > 0.7 * sigma ** 2) & (noise < 1.5 * sigma ** 2))
    E = subspace(cube, 3)
    projected = np.tensordot(E @ E.T, cube, axes=1)
    assert np.sqrt(np.mean((projected - clean) ** 2)) < sigma
    np.testing.assert_allclose(E.T @ E, np.eye(3), atol=1e-12)
