"""Blind fusion: estimate the PSF and the SRF from the pair itself, then run ``unsupervised``.

Estimation (Simoes et al., "A convex formulation for hyperspectral image superresolution via
subspace-based regularization", IEEE TGRS 2015, section on the estimation of B and R, here by
gradient descent). The LR-HS cube seen through the SRF must equal the HR image seen through the
PSF (both are the scene at LR resolution and in the HR image's channels):

    min_{psf, srf}  ||D_psf(y) - srf^T x||^2 / ||srf^T x||^2
                    + alpha ||Delta_lambda srf||^2 + beta ||grad psf||^2

``psf`` (K x K, K = 2 s by default, centred on the block as in :mod:`..degradation`) and ``srf``
(C x k) are softmax-parametrised, so both are non-negative with unit sums (PSF overall, SRF per
column). Weights alpha = beta = 1e-5, measured on 3 CAVE scenes (x8blind): PSF relative L2 error
0.06-0.09 and SRF mean spectral angle 4.1-5.1 deg, against 0.33-0.45 and 8.4-8.6 deg with the
earlier 1e-2 / 1e-3 (the smoothness terms dominated the data term). Initialisation: an isotropic Gaussian of sigma ``s/2`` and the mean of the 28 camspec
cameras resampled on the cube's wavelengths (flat if the wavelengths are unknown). The estimated
degradation then drives :mod:`.unsupervised` (same options).

The estimates come back in ``FusionResult.extras`` (``psf``, ``srf``, ``degradation``) and in
``settings["estimated_degradation"]``. ``known="psf"`` or ``known="srf"`` holds the degradation's
PSF or SRF fixed and estimates only the other.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from .base import FusionInputs, MethodInfo, Option, Progress, register
from . import unsupervised as _unsup
from .unsupervised import run as unsupervised_run

YIELD_EVERY_S = 0.4


def camspec_mean(wavelengths, n_bands: int) -> np.ndarray:
    """Mean of the camspec cameras on the cube's bands, (C, 3), columns summing to 1."""
    from ..srf import _presets, resample_srf

    if wavelengths is None:
        if n_bands != 31:
            return np.full((n_bands, 3), 1.0 / n_bands)
        wavelengths = np.arange(400, 701, 10)
    cams = [resample_srf(r, wavelengths) for name, r in _presets().items()
            if r.n_channels == 3 and r.channels == ("R", "G", "B") and "nikon d700 (cave" not in name.lower()]
    m = np.mean(cams, axis=0)
    return m / m.sum(axis=0)


def estimate(hr: np.ndarray, lr: np.ndarray, scale: int, wavelengths=None, size: int | None = None,
             steps: int = 500, rate: float = 0.05, alpha: float = 1e-5, beta: float = 1e-5,
             srf_init: np.ndarray | None = None, boundary: str = "reflect", known_psf: np.ndarray | None = None,
             known_srf: np.ndarray | None = None):
    """Generator: yields ``(step, loss)``, returns ``(psf (K, K), srf (C, k))`` float64.

    ``known_psf`` / ``known_srf`` are held fixed (the user's partial knowledge); the other is
    estimated."""
    import torch

    from ..degradation import spatial_op
    from ..psf import gaussian_psf

    s = int(scale)
    K = 2 * s if size is None else int(size)
    if K < s:
        raise InputError(f"PSF size {K} must be at least the scale {s}.")
    C, k = lr.shape[0], hr.shape[0]
    if srf_init is None:
        srf_init = camspec_mean(wavelengths, C) if k == 3 else np.full((C, k), 1.0 / C)
    if known_srf is not None:
        srf_init = np.array(known_srf, dtype=np.float64)  # a copy: the result must not alias the user's
    psf0 = gaussian_psf(K, s / 2.0)
    if known_psf is not None:
        psf0 = np.array(known_psf, dtype=np.float64)
        K = psf0.shape[0]
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    psf_logit = torch.log(t(psf0).clamp_min(1e-12)).reshape(-1).clone().requires_grad_(True)
    srf_logit = torch.log(t(srf_init).clamp_min(1e-12)).clone().requires_grad_(True)
    hr_t = t(hr)
    lr_t = t(lr)
    free = [p for p, known in ((psf_logit, known_psf), (srf_logit, known_srf)) if known is None]
    if not free:
        raise InputError("both PSF and SRF are marked known: nothing to estimate; use 'unsupervised' or 'fast'.")
    opt = torch.optim.Adam(free, lr=rate)
    norm = None
    for step in range(1, int(steps) + 1):
        psf = torch.softmax(psf_logit, 0).reshape(1, 1, K, K)
        srf = torch.softmax(srf_logit, 0)
        seen_hr = spatial_op(hr_t, psf, s, boundary)  # k, y, x: the shared forward model
        seen_lr = torch.einsum("ck,cyx->kyx", srf, lr_t)
        if norm is None:
            norm = float(torch.mean(seen_lr.detach() ** 2))
        data = torch.mean((seen_hr - seen_lr) ** 2) / norm
        d2 = srf[2:] - 2 * srf[1:-1] + srf[:-2]
        p2 = psf[0, 0]
        grad = torch.sum((p2[1:] - p2[:-1]) ** 2) + torch.sum((p2[:, 1:] - p2[:, :-1]) ** 2)
        loss = data + alpha * torch.sum(d2 ** 2) * C + beta * grad * K * K
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield step, float(data.detach())
    with torch.no_grad():
        psf = torch.softmax(psf_logit, 0).reshape(K, K).numpy()
        srf = torch.softmax(srf_logit, 0).numpy()
    # a known one comes back exactly as given (softmax of its log only equals it up to rounding)
    return (psf0 if known_psf is not None else psf), (srf_init if known_srf is not None else srf)


def run(inputs: FusionInputs, known: str = "none", psf_size: int = 0, est_steps: int = 500, alpha: float = 1e-5,
        beta: float = 1e-5, **options):
    deg = inputs.degradation
    s = deg.scale
    if known not in ("none", "psf", "srf"):
        raise InputError(f"known must be 'none', 'psf' or 'srf', got {known!r}.")
    if known == "srf" and (deg.srf is None or deg.srf.shape != (inputs.lr.shape[0], inputs.hr.shape[0])):
        raise InputError("known='srf' needs the spectral response in the degradation (one row per band, one "
                         "column per HR channel).")
    est_steps = int(est_steps)
    total = est_steps + 1
    gen = estimate(inputs.hr, inputs.lr, s, deg.wavelengths, size=int(psf_size) or None, steps=est_steps,
                   alpha=alpha, beta=beta, boundary=deg.boundary,
                   known_psf=deg.psf if known == "psf" else None, known_srf=deg.srf if known == "srf" else None)
    t_last = time.perf_counter()
    while True:
        try:
            step, loss = next(gen)
        except StopIteration as stop:
            psf, srf = stop.value
            break
        if time.perf_counter() - t_last >= YIELD_EVERY_S:
            t_last = time.perf_counter()
            yield Progress(step, total, loss=loss, message=f"estimating PSF and SRF {step}/{est_steps}")
    est = deg.with_(psf=psf, srf=srf)
    est.psf_name = deg.psf_name if known == "psf" else f"estimated ({psf.shape[0]}x{psf.shape[0]})"
    est.srf_name = deg.srf_name if known == "srf" else "estimated"
    inner = FusionInputs(inputs.hr, inputs.lr, est, seed=inputs.seed, device=inputs.device)
    cube, extras = yield from unsupervised_run(inner, **options)
    yield Progress(total, total, message=f"done; estimated PSF {psf.shape}, SRF {srf.shape}")
    return cube, {**extras, "psf": psf, "srf": srf, "degradation": est.settings()}


_UNSUP_OPTIONS = _unsup.INFO.options

register(MethodInfo(
    "blind", run,
    "Blind: estimates PSF and SRF from the pair alone, then runs unsupervised (x8blind: 47.3 dB, = known degradation).",
    options=(
        Option("known", "none", "what the degradation already gives exactly: 'none' (estimate both), 'psf' "
               "(estimate only the SRF) or 'srf' (estimate only the PSF)", choices=("none", "psf", "srf")),
        Option("psf_size", 0, "estimated PSF side in HR pixels (0: twice the scale)", minimum=0, maximum=256),
        Option("est_steps", 500, "Adam steps of the PSF/SRF estimation", minimum=1, maximum=100000),
        Option("alpha", 1e-5, "spectral smoothness weight of the SRF", minimum=0.0),
        Option("beta", 1e-5, "spatial smoothness weight of the PSF", minimum=0.0),
    ) + tuple(_UNSUP_OPTIONS),
    needs_srf=False, needs_psf=False, uses_torch=True,
))
