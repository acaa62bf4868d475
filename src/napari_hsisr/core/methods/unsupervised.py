"""Unsupervised fusion: priors fitted to the two observations on the image itself, no training data.

The cube is written in the spectral subspace of the LR-HS cube, ``z = E a`` (``E`` C x p, the
leading left singular vectors, rank estimated from the noise as in :mod:`.fast`). Three stages:

1. Warm start: fast's guided prior and closed-form solve
   ``min_a ||D E a - x||^2 + lam ||R E a - y||^2 + mu ||a - prior||^2``.
2. Prior refits (``refits``, default 12): the prior becomes the guided filter of the current
   solution by the HR image in ``(2 refit_radius + 1)^2`` HR-pixel windows, and the solve runs
   again. The solve keeps both observations matched; each refit replaces the part of the cube
   the observations do not determine (their common null space) by a locally linear function of
   the HR image at a scale finer than the LR grid. Measured on 4 CAVE scenes at x8: +0.5 dB over
   fast after 12 refits (+0.6 after 24), +0.25 dB at x32, +0.05 dB with noise (x8n).
3. CNN prior (``steps``, default 200): a small fully-convolutional network ``F_theta``
   (``depth`` 3x3 convs, ``width`` channels, last layer zero at start) corrects base
   coefficients ``b`` given the HR image ``y``, ``a_theta = b + F_theta([y, b])``, and
   ``theta`` is fitted with Adam to the consistency loss, each data term weighted by its
   estimated noise (:func:`noise_variances`: per LR coefficient and per HR channel, normalised
   to mean 1; LR term taken in the subspace, which differs from ``||x - D E a||^2`` by a constant)

       ||W_x (E^T x - D a_theta)||^2 / n_x + lam ||W_y (y - R E a_theta)||^2 / n_y

   The fit stops when the LR residual's mean square per coefficient reaches the estimated noise
   variance (the discrepancy principle: fitting further fits the noise), when the loss stalls
   (``patience``) or after ``steps``. In ``prior`` mode (default) ``b`` is the last prior and
   ``a_theta`` replaces it in a final solve; in ``residual`` mode ``b`` is the last solution and
   ``a_theta`` is the answer. Measured on the 12 CAVE scenes (docs/benchmarks.md): the network
   adds nothing measurable on top of stage 2 (within 0.002 dB per scene at x8 and x8n). After the
   refits the LR residual is already below the estimated noise (0.02-0.5 of it on CAVE, clean or
   noisy; on clean cubes HySime's estimate is model error), so the rule ends the fit after its
   first 10 steps; run longer, it gained 0.01 dB at x8 (4 scenes). The consistency loss cannot
   see the null space that stage 2 works on, and the solve already matches both observations, so
   the network has almost nothing left to fit; it is the place where a stronger generator plugs
   in, and ``steps=0`` skips it.

Patches are ``patch`` HR pixels square (a multiple of ``s``) at offsets that are multiples of
``s``; the network runs on the patch enlarged by the PSF support (``deg.pad``) and its receptive
radius, so the patch's LR pixels are computed exactly as the full-frame operator does (valid
convolution, no boundary rule needed) and the network output equals the full-frame output there.
Only patches whose enlarged window lies inside the image are drawn. Training stops after
``steps`` steps, or earlier when the smoothed loss has not improved by 0.1 % for ``patience``
steps; the network is then applied once, full frame (reflect-padded).

Deterministic for a seed on the CPU (torch seeded; patches drawn from a seeded generator).
On CUDA the network runs under bfloat16 (float16 + GradScaler) autocast; losses are float32.
Stages 1-2 run on the CPU with numpy/scipy FFTs whatever the device.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from .base import PREVIEW_EVERY_S, FusionInputs, MethodInfo, Option, Progress, register, small_preview

YIELD_EVERY_S = 0.4


def _net(in_ch: int, out_ch: int, width: int, depth: int):
    import torch
    from torch import nn

    layers: list = [nn.Conv2d(in_ch, width, 3, padding=1), nn.LeakyReLU(0.1)]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.1)]
    last = nn.Conv2d(width, out_ch, 3, padding=1)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    layers.append(last)
    return nn.Sequential(*layers)


def _fit_patches(Y: int, X: int, s: int, patch: int, margin_b: int, margin_a: int):
    """LR offsets (i0, j0) whose enlarged HR window stays in the image, per axis."""
    n = patch // s

    def axis(N):
        lo = -(-margin_b // s)  # ceil
        hi = (N - margin_a) // s - n  # last i0 with (i0 + n) s + margin_a <= N
        return lo, hi

    return axis(Y), axis(X), n


def fitting_patch(Y: int, X: int, s: int, patch: int, pads: tuple[int, int], depth: int) -> int:
    """The largest patch side (a multiple of ``s``, at most ``patch``) whose enlarged window fits
    in a ``Y x X`` image; 0 when not even one LR pixel's does."""
    mb, ma = pads[0] + depth, pads[1] + depth
    for side in range(patch // s * s, 0, -s):
        (ylo, yhi), (xlo, xhi), _ = _fit_patches(Y, X, s, side, mb, ma)
        if yhi >= ylo and xhi >= xlo:
            return side
    return 0


class _Problem:
    """Everything the fit needs, as torch tensors on the device.

    ``base`` (p, Y, X) are the coefficients the network corrects; the network sees the HR image
    and ``base`` normalised per coefficient.
    """

    def __init__(self, inputs: FusionInputs, st, base: np.ndarray, depth: int, out_gain: float):
        import torch

        deg = inputs.degradation
        self.device = torch.device(inputs.device)
        self.s = deg.scale
        self.pb, self.pa = deg.pad
        self.K = deg.kernel_size
        self.R = depth  # receptive radius of `depth` 3x3 convs
        scale = base.reshape(len(base), -1).std(axis=1) + 1e-6
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)  # noqa: E731
        sys = st.system
        self.RE = t(sys.RE)  # k, p (band weights included)
        self.psf = t(deg.kernel)[None, None]
        self.hr = t(inputs.hr)  # k, Y, X
        self.xa = t(sys.xa[(slice(None),) + sys.inner_lr])  # p, y, x: LR in the subspace
        ones_hr = np.ones(inputs.hr.shape[-2:]) if inputs.hr_valid is None else inputs.hr_valid
        ones_lr = np.ones(inputs.lr.shape[-2:]) if inputs.lr_valid is None else inputs.lr_valid
        self.hr_mask, self.lr_mask = t(ones_hr)[None], t(ones_lr)[None]
        self.base = t(base)  # p, Y, X
        var_a, sigma_hr = noise_variances(st, inputs.hr)
        # data terms weighted by the inverse noise variance of each LR coefficient and HR channel,
        # normalised to mean 1 so that ``lam`` keeps its meaning; var_a also scales the discrepancy
        self.lr_weight = t(var_a.mean() / var_a)[:, None, None]
        self.hr_weight = t(np.mean(sigma_hr ** 2) / sigma_hr ** 2)[:, None, None]
        self.var_a = t(var_a)[:, None, None]
        self.inp = torch.cat([self.hr, t(base / scale[:, None, None])], 0)  # k + p, Y, X
        self.out_scale = t(scale * out_gain)[:, None, None]

    def coeffs(self, net, inp, base):
        """(B, k+p, h, w), (B, p, h, w) -> (B, p, h, w)."""
        return base + net(inp).float() * self.out_scale[None]

    def spatial_valid(self, a):
        """Blur + decimate, valid convolution: (B, p, n s + K - s, ...) -> (B, p, n, n)."""
        import torch.nn.functional as F

        B, p, h, w = a.shape
        # the spatial operator's convolution alone: the patch already carries the samples its boundary rule adds
        out = F.conv2d(a.reshape(B * p, 1, h, w), self.psf, stride=self.s)
        return out.reshape(B, p, *out.shape[-2:])


def noise_variances(st, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise variance of each LR coefficient (HySime's band noise variances seen through the
    subspace: its off-diagonal terms are regression artefacts, negatively correlated between
    neighbouring bands, which made smooth coefficients look 10-20x quieter than they are on the
    sample pair at SNR 30 dB) and noise standard deviation of each HR channel (median absolute Haar diagonal
    detail / 0.6745, Donoho's estimator; texture makes it an upper bound)."""
    var_a = (st.E ** 2).T @ np.clip(np.diag(st.noise_cov), 0.0, None)
    var_a = np.maximum(var_a, 1e-12 * max(float(var_a.max()), 1e-30))
    h = np.asarray(hr, dtype=np.float64)[:, : hr.shape[-2] // 2 * 2, : hr.shape[-1] // 2 * 2]
    d = (h[:, 0::2, 0::2] - h[:, 0::2, 1::2] - h[:, 1::2, 0::2] + h[:, 1::2, 1::2]) / 2
    sigma_hr = np.median(np.abs(d.reshape(len(d), -1)), axis=1) / 0.6745
    sigma_hr = np.maximum(sigma_hr, max(float(sigma_hr.max()), 1e-6) * 1e-3)
    return var_a, sigma_hr


def residual_text(rel2: float, chi2: float) -> str:
    """The LR residual as the fit report gives it (relative RMS, %), and against the noise where
    that is a readable number: a noise-free pair's noise estimate is ~0, its ratio meaningless."""
    text = f"LR residual {100 * np.sqrt(max(rel2, 0.0)):.2f} %"
    if chi2 <= 1.0:
        return text + ", at the noise level"
    return text + (f", {chi2:.2f} x noise" if chi2 < 100 else "")


DISCREPANCY = 1.0  # stop when the LR residual's mean square per coefficient reaches its noise variance


def _fit(inputs, st, base, steps, patch, batch, lr_rate, lam, width, depth, patience, total, out_gain,
         done, stats):
    """Fit the correction network on patches; yields Progress, returns full-frame coefficients."""
    import torch

    s = inputs.degradation.scale
    torch.manual_seed(inputs.seed)
    prob = _Problem(inputs, st, base, depth, out_gain)
    p, k = base.shape[0], prob.hr.shape[0]
    Y, X = prob.hr.shape[-2:]
    R, pb = prob.R, prob.pb
    mb, ma = pb + R, prob.pa + R
    (ylo, yhi), (xlo, xhi), n = _fit_patches(Y, X, s, patch, mb, ma)
    if yhi < ylo or xhi < xlo:
        raise InputError(f"Image {Y}x{X} is too small for {patch}-pixel patches with this PSF and network; "
                         f"use a smaller patch (a multiple of {s}).")
    net = _net(k + p, p, width, depth).to(prob.device)
    opt = torch.optim.Adam(net.parameters(), lr=float(lr_rate))
    cuda = prob.device.type == "cuda"
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and amp_dtype == torch.float16)
    gen = torch.Generator().manual_seed(int(inputs.seed))
    lam = float(lam)
    hw = n * s + mb + ma  # network window: patch + PSF support + receptive radius

    def windows(t, iys, ixs, off, size, step):
        return torch.stack([t[:, iy * step - off:iy * step - off + size, ix * step - off:ix * step - off + size]
                            for iy, ix in zip(iys, ixs)])

    def loss_on(iys, ixs):
        with torch.autocast(prob.device.type, dtype=amp_dtype, enabled=cuda):
            a = prob.coeffs(net, windows(prob.inp, iys, ixs, mb, hw, s), windows(prob.base, iys, ixs, mb, hw, s))
        a = a[:, :, R:hw - R, R:hw - R]  # exact part: the patch and its PSF support
        lr_hat = prob.spatial_valid(a)
        hr_hat = torch.einsum("kp,bpyx->bkyx", prob.RE, a[:, :, pb:pb + n * s, pb:pb + n * s])
        lr_m, hr_m = windows(prob.lr_mask, iys, ixs, 0, n, 1), windows(prob.hr_mask, iys, ixs, 0, n * s, s)
        lr_sq = lr_m * (lr_hat - windows(prob.xa, iys, ixs, 0, n, 1)) ** 2
        hr_sq = hr_m * (hr_hat - windows(prob.hr, iys, ixs, 0, n * s, s)) ** 2
        chi2 = torch.mean(lr_sq / prob.var_a[None]).detach()  # 1 at the LR noise level
        rel2 = (torch.mean(lr_sq) / torch.clamp(torch.mean(lr_m * windows(prob.xa, iys, ixs, 0, n, 1) ** 2),
                                                 min=1e-30)).detach()  # the fit report's measure, squared
        return (torch.mean(prob.lr_weight[None] * lr_sq) + lam * torch.mean(prob.hr_weight[None] * hr_sq), chi2,
                rel2)

    def full_frame():
        with torch.no_grad():
            def pad(t):
                return torch.nn.functional.pad(t[None], (R, R, R, R), mode="reflect")

            with torch.autocast(prob.device.type, dtype=amp_dtype, enabled=cuda):
                a = prob.coeffs(net, pad(prob.inp), pad(prob.base))[0, :, R:R + Y, R:R + X]
        return a.float().cpu().numpy().astype(np.float64)

    t_last = t_preview = time.perf_counter()
    best, ema, since, loss0, step, chi_ema, rel_ema, reason = float("inf"), None, 0, None, 0, None, None, "steps"
    for step in range(1, steps + 1):
        iys = torch.randint(ylo, yhi + 1, (batch,), generator=gen).tolist()
        ixs = torch.randint(xlo, xhi + 1, (batch,), generator=gen).tolist()
        opt.zero_grad(set_to_none=True)
        loss, chi2, rel2 = loss_on(iys, ixs)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        val = float(loss.detach())
        loss0 = val if loss0 is None else loss0
        ema = val if ema is None else 0.9 * ema + 0.1 * val
        chi_ema = float(chi2) if chi_ema is None else 0.9 * chi_ema + 0.1 * float(chi2)
        rel_ema = float(rel2) if rel_ema is None else 0.9 * rel_ema + 0.1 * float(rel2)
        if ema < best * (1 - 1e-3):
            best, since = ema, 0
        else:
            since += 1
        now = time.perf_counter()
        if patience > 0 and since >= patience:
            reason = "loss stalled"
        elif step >= 10 and chi_ema <= DISCREPANCY:  # further fitting would fit the LR noise
            reason = "LR residual at the noise level"
        stop_early = reason != "steps"
        preview = None
        if now - t_preview >= PREVIEW_EVERY_S:  # the fit converging, for a viewer
            preview, t_preview = small_preview(st.cube(st.system.extend(full_frame()))), time.perf_counter()
        if step == 1 or now - t_last >= YIELD_EVERY_S or step == steps or stop_early or preview is not None:
            t_last = now
            yield Progress(done + step, total, loss=ema, preview=preview,
                           message=f"fit {step}/{steps} (first loss {loss0:.3g}, {residual_text(rel_ema, chi_ema)})")
        if stop_early:
            break
    stats["cnn_steps"], stats["cnn_stop"], stats["lr_residual_over_noise"] = step, reason, round(chi_ema or 0.0, 3)
    yield Progress(done + steps + 1, total, loss=ema, message=f"full-frame inference after {step} steps")
    net.eval()
    return full_frame()


def run(inputs: FusionInputs, refits: int = 12, refit_radius: int = 4, steps: int = 200, patch: int = 0,
        batch: int = 2, lr_rate: float = 3e-3, lam: float = 1.0, rank: int = 0, eps: float = 0.0,
        width: int = 32, depth: int = 4, patience: int = 60, mode: str = "prior", mu: float = 0.0,
        out_gain: float = 0.05, prior: str = "auto", band_weights: bool = True):
    prior_kind = prior
    import torch

    from . import fast as F

    deg = inputs.degradation
    s = deg.scale
    steps, patch, batch, depth, width = int(steps), int(patch), int(batch), int(depth), int(width)
    refits = int(refits)
    adapted: dict = {}
    patch = patch or s * max(2, 64 // s)  # auto: about 64 HR pixels, a whole number of LR pixels
    if patch % s or patch < s:
        raise InputError(f"patch must be a positive multiple of the scale {s}, got {patch}; "
                         f"try {max(s, patch // s * s)}.")
    if depth < 2:
        raise InputError(f"depth must be at least 2, got {depth}.")
    if mode not in ("prior", "residual"):
        raise InputError(f"mode must be 'prior' or 'residual', got {mode!r}.")
    if steps > 0:  # small or odd-sized images: the patches adapt, and say so
        fits = fitting_patch(*inputs.hr.shape[-2:], s, patch, deg.pad, depth)
        if fits != patch:
            adapted = {"patch": fits} if fits else {"skipped_cnn": "image too small for one patch"}
        patch, steps = (fits, steps) if fits else (patch, 0)
    total = 2 * refits + steps + 2
    yield Progress(0, total, message="subspace and guided prior")
    st = F.setup(inputs, rank, eps, lam, mu, band_weights)
    info: dict = {}
    prior = F.build_prior(st, inputs, prior_kind, 0, st.eps, info)
    st = F.conservative(st, info)
    if info.get("prior_guided_weight", 1.0) < 0.5 and (refits or steps):
        # the HR image explains the cube's detail poorly (see fast.prior_weight): refits and the
        # network both fit the HR image's colour at full resolution and distort the spectra
        # (NEON Wald test: SAM 2.59 -> 3.80); the conservative solve is the answer
        info["skipped"] = "refits and CNN: the HR image's colour does not carry the spectral detail"
        refits, steps = 0, 0
        total = 2
    yield Progress(0, total, message=f"warm start (fast solve, rank {st.rank})")
    a, last_prior = yield from F.refit_rounds(st, st.system.solve_extended(prior), refits, int(refit_radius),
                                              st.eps, 0, total, inputs.scene)
    prior = prior if last_prior is None else last_prior
    base = st.system.crop(prior if mode == "prior" else a)
    if steps > 0:
        yield Progress(2 * refits, total, message="CNN prior: setting up")
        try:
            fitted = yield from _fit(inputs, st, base, steps, patch, batch, lr_rate, lam, width, depth, patience,
                                     total, out_gain, 2 * refits, info)
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise InputError(f"Out of GPU memory in method 'unsupervised' (patch {patch}, batch {batch}, "
                             f"width {width}); use smaller patches (patch={max(s, patch // 2 // s * s)}), a "
                             "smaller batch or width, or device='cpu'.") from None
        yield Progress(total - 1, total, message="final solve")
        if mode == "prior":
            prior_ext = prior.copy()
            prior_ext[(slice(None),) + st.system.inner] = fitted
            a = st.system.solve_extended(prior_ext, start=a if st.system.masked else None)
        else:
            a = st.system.extend(fitted)
    cube = st.cube(a)  # float32 already
    np.clip(cube, 0, None, out=cube)
    yield Progress(total, total, message="done")
    return cube, {"resolved": {**F._resolved(st), **info, **adapted}}


def scene_setup(req, scene):
    """Generator: fast's scene context (``MethodInfo.scene_setup``), the refits counted by ``refits``."""
    from . import fast

    return (yield from fast.scene_setup(req, scene, refits=req.options.get("refits", 0)))


INFO = register(MethodInfo(
    "unsupervised", run,
    "Unsupervised: fast + prior refits on the HR grid + CNN prior, fitted to the pair alone (~30 s).",
    options=(
        Option("refits", 12, "prior refits on the HR grid, each followed by the closed-form solve",
               minimum=0, maximum=100),
        Option("refit_radius", 4, "window radius of the prior refits, in HR pixels", minimum=1, maximum=64),
        Option("steps", 200, "Adam steps (at most; stops early when the loss stalls)", minimum=0, maximum=100000),
        Option("patch", 0, "training patch side in HR pixels, a multiple of the scale (0: about 64, e.g. 60 at "
               "scale 10 or 12; smaller when the image is small)", minimum=0, maximum=4096),
        Option("batch", 2, "patches per step", minimum=1, maximum=256),
        Option("lr_rate", 3e-3, "Adam learning rate", minimum=1e-6, maximum=1.0),
        Option("lam", 1.0, "weight of the HR-image term", minimum=1e-4, maximum=1e4),
        Option("rank", 0, "spectral subspace dimension (0: estimated from the LR-HS noise, at most 20)",
               minimum=0, maximum=64),
        Option("eps", 0.0, "guided prior regularisation, relative (0: from the LR-HS noise)", minimum=1e-8,
               maximum=10.0, auto=0.0),
        Option("width", 32, "network channels", minimum=4, maximum=256),
        Option("depth", 4, "network conv layers (3x3)", minimum=2, maximum=16),
        Option("patience", 60, "early stop after this many steps without improvement (0: never)", minimum=0,
               maximum=100000),
        Option("mode", "prior", "'prior': the network refines the last prior and a closed-form solve enforces "
               "both observations; 'residual': the network corrects the last solution directly",
               choices=("prior", "residual")),
        Option("mu", 0.0, "weight of the priors in the closed-form solves (0: from the LR-HS noise, 1e-3 on "
               "clean data, about 0.1 at SNR 30 dB)", minimum=1e-6, maximum=1e3, auto=0.0),
        Option("out_gain", 0.05, "initial scale of the network's correction", minimum=0.0, maximum=10.0),
        Option("prior", "auto", "first prior: 'guided', 'cs' (component substitution) or 'auto' (chosen from "
               "the pair, see fast)", choices=("auto", "guided", "cs")),
        Option("band_weights", True, "down-weight LR bands much noisier than the median (HySime estimate)"),
    ),
    uses_torch=True, receptive_field=32, bytes_per_band=48, bytes_per_coefficient=64, scene_setup=scene_setup,
))
