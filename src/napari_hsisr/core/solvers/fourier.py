"""The closed-form subspace solve of the fast method, and its masked version.

Unknown: subspace coefficients ``a`` (p, Y, X), cube ``z = E a``. Objective

    ||m_x (D a - x_a)||^2 + lam ||m_y (RE a - y)||^2 + mu ||a - a0||^2

with ``x_a = E^T x`` the LR cube in the subspace, ``RE = R^T E`` and masks ``m_x`` (LR pixels
observed and valid) and ``m_y`` (HR pixels observed and unsaturated).

Without masks the normal equations are a Sylvester equation; with the blur taken as circular
it is diagonalised by an eigendecomposition of ``lam (RE)^T RE + mu I`` and the FFT, with the
decimation handled by folding the spectrum (Wei, Dobigeon, Tourneret, "Fast fusion of multi-band
images based on solving a Sylvester equation", IEEE TIP 2015).

Real pairs break the circular model in two places: LR pixels near the edges see scene content
outside the HR image (a kernel larger than the block, a misregistration), and some pixels must
not count (saturated, nodata). :class:`SubspaceSystem` therefore solves on a domain extended by
whole LR pixels around the image, where the scene is unknown and nothing is observed, with the
masks in the data terms, by conjugate gradients preconditioned with the unmasked Fourier solve.
With no mask and no extension that preconditioner is the exact inverse: one step, and the
result is the plain closed-form solve.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

from ..parallel import fft_workers


def fold(spec: np.ndarray, s: int) -> np.ndarray:
    """Spectrum of the decimated signal: average of the ``s x s`` aliases (last two axes)."""
    *lead, Y, X = spec.shape
    return spec.reshape(*lead, s, Y // s, s, X // s).mean(axis=(-4, -2))


def tile(spec: np.ndarray, s: int) -> np.ndarray:
    """Spectrum of the zero-inserted upsampled signal."""
    return np.tile(spec, (1,) * (spec.ndim - 2) + (s, s))


def sylvester_solve(Qhat: np.ndarray, H: np.ndarray, s: int, M: np.ndarray) -> np.ndarray:
    """Solve ``D^T D a + M a = q`` (a Sylvester equation) for all rows, in the Fourier domain.

    ``Qhat`` (p, Y, X) is the FFT of ``q``; ``H`` the OTF; ``M`` the symmetric (p, p) matrix.
    Uses Woodbury per eigen-row: ``w = (q - D^T (c I + D D^T)^{-1} D q) / c``.
    """
    evals, V = np.linalg.eigh(M)
    What = np.tensordot(V.T, Qhat, axes=1)
    g = fold(np.abs(H) ** 2, s)  # spectrum of D D^T on the LR grid
    Y, X = H.shape
    Hb = H.reshape(s, Y // s, s, X // s)  # the s x s aliases as axes: fold is a mean over 0 and 2,
    Hc = np.conj(Hb)                      # tile a broadcast (no copies of the spectrum)
    for i, c in enumerate(evals):
        Wi = What[i].reshape(s, Y // s, s, X // s)  # a view: updated in place
        v = (Hc * Wi).mean(axis=(0, 2)) / (c + g)
        Wi -= Hb * v[None, :, None, :]
        Wi /= c
    return np.real(fft.ifft2(np.tensordot(V, What, axes=1), workers=fft_workers()))


class SubspaceSystem:
    """The solve ``prior -> a`` for one pair, on the image's domain extended as needed.

    ``deg`` gives the spatial operator (kernel, shift included); ``hr`` (k, Y, X) is the HR image in
    linear light with gain and offset removed; ``xa`` (p, y, x) the LR cube in the subspace;
    ``RE`` (k, p); ``hr_valid`` (Y, X) and ``lr_valid`` (y, x) boolean masks or None.
    Everything that does not depend on the prior is computed once.
    """

    def __init__(self, deg, hr: np.ndarray, xa: np.ndarray, RE: np.ndarray, lam: float, mu: float,
                 hr_valid: np.ndarray | None = None, lr_valid: np.ndarray | None = None,
                 tol: float = 1e-4, max_iter: int = 100):
        s = deg.scale
        self.s, self.lam, self.mu, self.RE = s, float(lam), float(mu), RE
        self.tol, self.max_iter = tol, max_iter
        Y, X = hr.shape[-2:]
        before, after = deg.pad
        m0, m1 = s * math.ceil(before / s), s * math.ceil(after / s)  # whole LR pixels of margin
        self.margin = (m0, m1)
        self.shape = (Y, X)
        self.ext = (Y + m0 + m1, X + m0 + m1)
        l0, l1 = m0 // s, m1 // s
        self.inner = (slice(m0, m0 + Y), slice(m0, m0 + X))
        self.inner_lr = (slice(l0, l0 + xa.shape[1]), slice(l0, l0 + xa.shape[2]))
        # masks on the extended grids: nothing is observed in the margins
        my = np.zeros(self.ext, bool)
        my[self.inner] = True if hr_valid is None else hr_valid
        mx = np.zeros((self.ext[0] // s, self.ext[1] // s), bool)
        mx[self.inner_lr] = True if lr_valid is None else lr_valid
        self.H = deg.spatial_operator.otf(self.ext)
        if m0 or m1:
            # an LR pixel that sees mostly beyond the HR image's edge (a misregistered pair) would
            # tie the edge to content nobody observed at high resolution: leave it out. Measured on
            # CAVE with a (3, -5) shift: the two edge columns go from 39 to 55 dB.
            inside = np.zeros(self.ext)
            inside[self.inner] = 1.0
            mx &= self.lr(inside[None])[0] >= 0.5
        self.hr_mask, self.lr_mask = my, mx
        self.masked = not (my.all() and mx.all())
        self.hr_weight = my.astype(np.float64)
        # masked HR pixels inside the image (large holes: small ones are interpolated before, see
        # observations.inpaint_small_holes): no HR data term; their prior is the LR cube's own
        # (masked_prior) at the same weight as elsewhere, so that the unmasked preconditioner stays
        # exact in mu. A 10x weight there took blind's first solve on a 512^2 camera pair with 1.5 %
        # clipped pixels to 150 s (the CG's iteration limit) for no better result.
        self.holes = None if hr_valid is None or hr_valid.all() else ~hr_valid
        self.outside = np.ones(self.ext, bool)  # the margins: scene the HR image does not show
        self.outside[self.inner] = False
        # observations, filled where unobserved so that the priors have something to work on
        self.hr = np.pad(hr, ((0, 0), (m0, m1), (m0, m1)), mode="symmetric") if (m0 or m1) else hr.copy()
        self.xa = np.pad(xa, ((0, 0), (l0, l1), (l0, l1)), mode="symmetric") if (l0 or l1) else xa.copy()
        p = RE.shape[1]
        self.M = self.lam * RE.T @ RE + self.mu * np.eye(p)
        rhs_data = self.adjoint_lr(np.where(mx, self.xa, 0.0))
        rhs_hr = self.lam * np.tensordot(RE.T, self.hr_weight * self.hr, axes=1)
        self._rhs_fixed = rhs_data + rhs_hr
        self.iterations = 0
        self.relative_residual = 0.0  # of the last masked solve's normal equations
        self._lr_up = None

    # ---------------------------------------------------------------- operators on the extended grid
    def lr(self, a: np.ndarray) -> np.ndarray:
        """``D a``: (p, Ye, Xe) -> (p, ye, xe)."""
        folded = fold(np.conj(self.H) * fft.fft2(a, workers=fft_workers()), self.s)
        return np.real(fft.ifft2(folded, workers=fft_workers()))

    def adjoint_lr(self, x: np.ndarray) -> np.ndarray:
        """``D^T x``: (p, ye, xe) -> (p, Ye, Xe)."""
        return np.real(fft.ifft2(self.H * tile(fft.fft2(x, workers=fft_workers()), self.s), workers=fft_workers()))

    def _normal(self, a: np.ndarray) -> np.ndarray:
        lr = self.adjoint_lr(np.where(self.lr_mask, self.lr(a), 0.0))
        hr = np.tensordot(self.RE, a, axes=1)
        hr = self.lam * np.tensordot(self.RE.T, self.hr_weight * hr, axes=1)
        return lr + hr + self.mu * a

    def _precondition(self, q: np.ndarray) -> np.ndarray:
        return sylvester_solve(fft.fft2(q, workers=fft_workers()), self.H, self.s, self.M)

    # ---------------------------------------------------------------- public
    def set_mu(self, mu: float) -> None:
        """Change the prior's weight (the right-hand side and the preconditioner follow)."""
        self.mu = float(mu)
        self.M = self.lam * self.RE.T @ self.RE + self.mu * np.eye(self.RE.shape[1])

    def extend(self, a: np.ndarray) -> np.ndarray:
        """A (p, Y, X) field on the extended domain (mirrored into the margins)."""
        m0, m1 = self.margin
        return np.pad(a, ((0, 0), (m0, m1), (m0, m1)), mode="symmetric") if (m0 or m1) else a

    def rhs(self, prior_ext: np.ndarray) -> np.ndarray:
        """Right-hand side of the normal equations for a prior on the extended domain."""
        prior_ext = self.masked_prior(self.outside_prior(prior_ext))
        return self._rhs_fixed + self.mu * prior_ext

    def lr_up(self) -> np.ndarray:
        """The LR cube's coefficients interpolated to the extended HR grid (computed once)."""
        if self._lr_up is None:
            from .guided import lr_to_hr

            self._lr_up = lr_to_hr(self.xa, self.s)
        return self._lr_up

    def outside_prior(self, prior_ext: np.ndarray) -> np.ndarray:
        """The prior with the margins replaced by the LR cube's own coefficients, interpolated.

        LR pixels at the edge of a misregistered pair see scene content that the HR image does not
        show; what they see beyond its edge is best guessed from their own spectra (measured on
        CAVE with a (3, -5) pixel shift: the two edge columns gain 10 dB over a mirrored HR prior,
        which makes them worse than leaving the margin free)."""
        if not self.outside.any():
            return prior_ext
        return np.where(self.outside[None], self.lr_up(), prior_ext)

    def masked_prior(self, prior_ext: np.ndarray) -> np.ndarray:
        """The prior at masked HR pixels inside the image replaced by the LR cube's own
        coefficients, interpolated (as in the margins): the maps applied to a filled HR value
        there are not to be trusted, and a prior that agrees with the LR cube leaves the LR
        pixels across a hole's edge nothing to push onto the valid pixels beside it (a 24-pixel
        block on the synthetic scene: 25 dB within 2 pixels of its edge, against 16 with the
        neighbours' prior). Holes of a few pixels never get here: they are interpolated first
        (:func:`..observations.inpaint_small_holes`)."""
        if self.holes is None:
            return prior_ext
        masked = np.zeros(self.ext, bool)
        masked[self.inner] = self.holes
        return np.where(masked[None], self.lr_up(), prior_ext)

    def crop(self, a: np.ndarray) -> np.ndarray:
        return a[(slice(None),) + self.inner]

    def solve_extended(self, prior_ext: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """``a`` on the extended domain for a prior given on it."""
        rhs = self.rhs(prior_ext)
        x = self._precondition(rhs) if start is None else start
        if not self.masked:
            return x
        r = rhs - self._normal(x)
        z = self._precondition(r)
        d = z.copy()
        rz = float(np.vdot(r, z))
        norm0 = math.sqrt(float(np.vdot(rhs, rhs))) or 1.0
        best = (math.sqrt(float(np.vdot(r, r))), x.copy())  # the rollback: the iterate with the least residual
        for it in range(1, self.max_iter + 1):
            Nd = self._normal(d)
            alpha = rz / float(np.vdot(d, Nd))
            x += alpha * d
            r -= alpha * Nd
            self.iterations = it
            res = math.sqrt(float(np.vdot(r, r)))
            if not math.isfinite(res):  # lost (a degenerate system): keep the best iterate so far
                break
            if res < best[0]:
                best = (res, x.copy()) if res >= self.tol * norm0 else (res, x)
            if res < self.tol * norm0:
                break
            z = self._precondition(r)
            rz_new = float(np.vdot(r, z))
            d = z + (rz_new / rz) * d
            rz = rz_new
        self.relative_residual = best[0] / norm0
        return best[1]

    def __call__(self, prior: np.ndarray) -> np.ndarray:
        """``a`` (p, Y, X) for a prior (p, Y, X) on the image's domain."""
        return self.crop(self.solve_extended(self.extend(prior)))
