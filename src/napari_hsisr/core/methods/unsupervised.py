"""Unsupervised fusion (seed 2): priors fitted to the observed pair, then the learned prior.

With a learned prior for the cube's band grid (the shipped ``msfn`` weights: 31 bands, 400-700 nm):

1. Base: the fast method's cube followed by ``refits`` prior refits (see below: the priors fitted
   to the pair's own HR image).
2. Adaptation (``steps``, default 0: off, it lowered the result in the cross-validation of
   docs/benchmarks.md; Adam at ``lr_rate``): the pretrained network ``F`` is fine-tuned on the
   pair itself, with its pretrained weights as the anchor (``anchor`` x the mean squared change of
   the weights). Two losses, each an L1 error relative to its target's level:

   * re-degradation (zero-shot): the pair degraded once more by its own spatial operator
     (``D y`` on the LR grid, ``D x`` on a grid ``s`` times coarser) goes through the same base,
     and ``F`` of that cube must give ``x``: the only signal the pair has about the part of the cube neither
     observation constrains (needs an LR cube of at least ``4 s`` pixels a side; skipped otherwise);
   * consistency: ``D F(base)`` must match ``x`` and ``R F(base)`` must match ``y`` (``lam``), on
     patches, through the known degradation.

3. The data-consistency step of ``msfn`` (fast's solve with ``F(base)`` as the prior, weight
   ``mu``; 0: the weight fast chose from the LR-HS noise).

With ``refits=0`` and ``steps=0`` it is ``msfn`` with the noise-aware consistency weight.
Deterministic for a seed on the CPU.

The refits: the prior becomes the guided filter of the current solution by the HR image in
``(2 refit_radius + 1)^2`` windows and the closed-form solve runs again (+0.5 dB over fast at x8
on CAVE, +0.25 at x32). Without a prior for the grid (another band count, or ``weights='none'``)
the method is fast and the refits alone; the result says which path ran and why.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from .base import FusionInputs, MethodInfo, Option, Progress, register
from .msfn import ENSEMBLE, PRIOR_HALO

YIELD_EVERY_S = 0.4
ADAPT_MARGIN = 8  # HR pixels of context around a consistency patch (the network's border effect)


def residual_text(rel2: float, chi2: float) -> str:
    """The LR residual as the fit report gives it (relative RMS, %), and against the noise where
    that is a readable number: a noise-free pair's noise estimate is ~0, its ratio meaningless."""
    text = f"LR residual {100 * np.sqrt(max(rel2, 0.0)):.2f} %"
    if chi2 <= 1.0:
        return text + ", at the noise level"
    return text + (f", {chi2:.2f} x noise" if chi2 < 100 else "")



def _prior(weights: str, inputs: FusionInputs):
    """``(model, record, why_not)``: the learned prior for this pair, or None and the reason."""
    from ..training import load_weights
    from .msfn import check_prior, is_prior, resolve_weights

    if str(weights) == "none":
        return None, None, "weights='none'"
    path = resolve_weights(str(weights), inputs.degradation.scale)
    model, record = load_weights(path)
    if not is_prior(record):
        raise InputError(f"weights {path.name} are a fusion network for one degradation, not a learned prior; "
                         "give prior weights (hsisr train --config) or weights='auto'.")
    try:
        check_prior(record, inputs, f"weights {path.name}")
    except InputError as exc:
        if str(weights) not in ("", "auto"):
            raise
        return None, None, f"no learned prior for this band grid ({str(exc).split(';')[0].split(' are for ')[-1]})"
    return model, record, ""


def _adapt(model, inputs: FusionInputs, base: np.ndarray, steps: int, lr_rate: float, anchor: float, lam: float,
           zero_shot: float, patch: int, batch: int, base_options: dict, info: dict):
    """Generator: fine-tunes ``model`` in place on the pair (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    from ..nets.augment import augment
    from .msfn import coarse_pair

    deg = inputs.degradation
    s, (pb, pa) = deg.scale, deg.pad
    torch.manual_seed(inputs.seed)
    gen = np.random.default_rng(inputs.seed)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    zs = coarse_pair(inputs, lambda coarse: _refits(coarse, **base_options)) if zero_shot > 0 else None
    info["adaptation_zero_shot"] = zs is not None
    B, X, Y = t(base), t(inputs.lr), t(inputs.hr)
    Bc, Tc = (t(zs[0]), t(zs[1])) if zs is not None else (None, None)
    # saturated HR pixels and nodata LR pixels do not count
    hr_mask = t(np.ones(Y.shape[-2:]) if inputs.hr_valid is None else inputs.hr_valid)
    lr_mask = t(np.ones(X.shape[-2:]) if inputs.lr_valid is None else inputs.lr_valid)
    K, srf = t(deg.kernel)[None, None], t(deg.srf)
    lr_level, hr_level = float(X.abs().mean()) + 1e-9, float(Y.abs().mean()) + 1e-9
    anchor_params = [p.detach().clone() for p in model.parameters()]
    n_params = sum(p.numel() for p in anchor_params)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=float(lr_rate))
    ly, lx = inputs.lr.shape[-2:]
    n = max(1, min(patch // s, ly, lx))  # consistency patch, LR pixels
    m = ADAPT_MARGIN
    # consistency patches (LR offsets) whose window, PSF support and margin lie inside the image
    ok_y = [i for i in range(ly - n + 1) if i * s - pb - m >= 0 and (i + n) * s + pa + m <= B.shape[-2]]
    ok_x = [j for j in range(lx - n + 1) if j * s - pb - m >= 0 and (j + n) * s + pa + m <= B.shape[-1]]
    t_last, ema, step = time.perf_counter(), None, 0
    for step in range(1, steps + 1):
        loss, data = 0.0, False
        if zs is not None:  # the re-degraded pair: F(fast of (D y, D x)) -> x
            side = min(patch, *Bc.shape[-2:])
            crops, targets = [], []
            for _ in range(batch):
                iy, ix = (int(gen.integers(d - side + 1)) for d in Bc.shape[-2:])
                code = int(gen.integers(8))
                crops.append(augment(Bc[None, :, iy:iy + side, ix:ix + side], code))
                targets.append(augment(Tc[None, :, iy:iy + side, ix:ix + side], code))
            out = model(torch.cat(crops), s)
            loss, data = loss + zero_shot * torch.mean(torch.abs(out - torch.cat(targets))) / lr_level, True
        if ok_y and ok_x:  # consistency on the observed pair: D F(base) = x, R F(base) = y
            i, j = ok_y[int(gen.integers(len(ok_y)))], ok_x[int(gen.integers(len(ok_x)))]
            y0, x0 = i * s - pb - m, j * s - pb - m
            win = B[None, :, y0:y0 + n * s + pb + pa + 2 * m, x0:x0 + n * s + pb + pa + 2 * m]
            z = model(win, s)[0, :, m:-m, m:-m]
            lr_hat = F.conv2d(z[:, None], K, stride=s)[:, 0]
            hr_hat = torch.einsum("ck,cyx->kyx", srf, z[:, pb:pb + n * s, pb:pb + n * s])
            lr_err = torch.abs(lr_hat - X[:, i:i + n, j:j + n]) * lr_mask[i:i + n, j:j + n]
            hr_rows, hr_cols = slice(i * s, (i + n) * s), slice(j * s, (j + n) * s)
            hr_err = torch.abs(hr_hat - Y[:, hr_rows, hr_cols]) * hr_mask[hr_rows, hr_cols]
            loss, data = loss + torch.mean(lr_err) / lr_level + lam * torch.mean(hr_err) / hr_level, True
        if not data:
            info["adaptation"] = "skipped: the image is too small for one patch"
            break
        if anchor > 0:
            drift = sum(torch.sum((p - p0) ** 2) for p, p0 in zip(model.parameters(), anchor_params))
            loss = loss + anchor * drift / n_params
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        val = float(loss.detach())
        ema = val if ema is None else 0.9 * ema + 0.1 * val
        now = time.perf_counter()
        if step == 1 or step == steps or now - t_last >= YIELD_EVERY_S:
            t_last = now
            yield Progress(step, steps, loss=ema, message=f"adapting the prior {step}/{steps}")
    model.eval()
    info["adaptation_steps"], info["adaptation_loss"] = step, None if ema is None else round(ema, 6)


def run(inputs: FusionInputs, steps: int = 0, lr_rate: float = 1e-4, anchor: float = 1.0, lam: float = 1.0,
        zero_shot: float = 1.0, patch: int = 64, batch: int = 4, weights: str = "auto", mu: float = 0.0,
        refits: int = 12, refit_radius: int = 4, rank: int = 0, eps: float = 0.0, prior: str = "auto",
        band_weights: bool = True, check: bool = False, ensemble: int = 4):
    import torch

    from .base import relayed
    from .msfn import check_warning, finish, infer_prior_iter, oom_error, scene_or_self_check

    deg = inputs.degradation
    steps, patch, batch, refits = int(steps), int(patch), int(batch), int(refits)
    model, record, why_not = _prior(weights, inputs)
    base_options = _base_options(refits=refits, refit_radius=refit_radius, rank=rank, eps=eps, lam=lam, mu=mu,
                                 prior=prior, band_weights=band_weights)
    if model is None:
        cube, extras = yield from _refits(inputs, **base_options)
        extras["resolved"]["learned_prior"] = why_not + f": fast + {refits} refits"
        return cube, extras
    total = 2 * refits + steps + 4
    base, base_extras = yield from relayed(_refits(inputs, **base_options),
                                           lambda p: Progress(p.step, total, preview=p.preview, message=p.message))
    info = {"learned_prior": record["file"], **base_extras["resolved"]}
    done = 2 * refits + 2
    try:
        if steps > 0:
            yield from relayed(_adapt(model, inputs, base, steps, lr_rate, float(anchor), float(lam),
                                      float(zero_shot), patch, batch, base_options, info),
                               lambda p: Progress(done + p.step, total, loss=p.loss, message=p.message))
        yield Progress(done + steps + 1, total, message="learned prior (checked on the pair degraded once more)")
        verdict = scene_or_self_check(model, record, inputs, lambda coarse: _refits(coarse, **base_options), check)
        info["prior_check"] = verdict
        cube = (yield from infer_prior_iter(model, base, deg.scale, inputs.device, inputs.scene, ensemble,
                                            Progress(done + steps + 1, total, message="learned prior"))) \
            if verdict["use_prior"] else base
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise oom_error("unsupervised") from None
    mu = float(mu) or float(info.get("mu", 1e-3))
    info["consistency_mu"] = mu
    yield Progress(total - 1, total, message="consistency step")
    cube = finish(inputs, cube, True, mu)
    yield Progress(total, total, message="done")
    warnings = [] if verdict["use_prior"] else [check_warning(verdict, "fast + refits")]
    return cube, {"resolved": info, "warnings": warnings,
                  "weights": {"file": record["file"], "sha256": record["sha256"],
                              "trained_scenes": record.get("trained_scenes")}}


def _base_options(refits=12, refit_radius=4, rank=0, eps=0.0, lam=1.0, mu=0.0, prior="auto", band_weights=True,
                  **_) -> dict:
    """The options of the base (fast + refits) among the method's options."""
    return dict(refits=int(refits), refit_radius=int(refit_radius), rank=rank, eps=eps, lam=float(lam), mu=mu,
                prior_kind=prior, band_weights=band_weights)


def _refits(inputs, refits, refit_radius, rank, eps, lam, mu, prior_kind, band_weights):
    """Generator: fast's solve followed by ``refits`` prior refits (with ``refits=0`` and the
    default options, exactly fast's cube)."""
    from . import fast as F

    total = 2 * refits + 2
    yield Progress(0, total, message="subspace and guided prior")
    st = F.setup(inputs, rank, eps, lam, mu, band_weights)
    info: dict = {}
    prior = F.build_prior(st, inputs, prior_kind, 0, st.eps, info)
    st = F.conservative(st, info)
    if info.get("prior_guided_weight", 1.0) < 0.5 and refits:
        # the HR image explains the cube's detail poorly (see fast.prior_weight): refits fit the HR
        # image's colour at full resolution and distort the spectra (NEON Wald test: SAM 2.59 -> 3.80)
        info["skipped"] = "refits: the HR image's colour does not carry the spectral detail"
        refits, total = 0, 2
    yield Progress(0, total, message=f"warm start (fast solve, rank {st.rank})")
    a, _ = yield from F.refit_rounds(st, st.system.solve_extended(prior), refits, int(refit_radius), st.eps, 0,
                                     total, inputs.scene)
    cube = st.cube(a)
    np.clip(cube, 0, None, out=cube)
    yield Progress(total, total, message="done")
    return cube, {"resolved": {**F._resolved(st), **info}}


def scene_setup(req, scene):
    """Generator: what the tiles share (``MethodInfo.scene_setup``): fast's scene context with the
    refits, and, when a learned prior serves the pair, the consistency step's subspace and the
    prior's self-check on the central crop (through the same base)."""
    from ..training import load_weights
    from . import fast, msfn

    scene, notes = yield from fast.scene_setup(req, scene, refits=req.options.get("refits", 0))
    weights = str(req.options.get("weights", "auto"))
    if weights != "none":
        _, record = load_weights(msfn.resolve_weights(weights, req.scale))
        if msfn.is_prior(record) and msfn.prior_fits(record, req.lr.shape[0], req.degradation.wavelengths):
            base_options = _base_options(**req.options)
            scene = msfn.with_prior_check(req, scene, lambda coarse: _refits(coarse, **base_options))
    return scene, notes


INFO = register(MethodInfo(
    "unsupervised", run,
    "Unsupervised: fast + prior refits fitted to the pair, then the learned prior (optionally adapted to the pair; "
    "learned on close-range CAVE scenes) and a consistency step; without a prior for the band grid, fast + refits "
    "(~10-60 s).",
    options=(
        Option("steps", 0, "adaptation steps of the learned prior on the pair (0: none; measured to lower the "
               "result on CAVE, see docs/benchmarks.md)", minimum=0, maximum=100000),
        Option("lr_rate", 1e-4, "Adam learning rate of the adaptation", minimum=1e-7, maximum=1.0),
        Option("anchor", 1.0, "weight of the pretrained weights as anchor (mean squared change)", minimum=0.0,
               maximum=1e6),
        Option("lam", 1.0, "weight of the HR-image term", minimum=1e-4, maximum=1e4),
        Option("zero_shot", 1.0, "weight of the re-degradation loss (0: consistency only)", minimum=0.0,
               maximum=1e3),
        Option("patch", 64, "adaptation patch side in HR pixels", minimum=8, maximum=4096),
        Option("batch", 4, "re-degraded patches per step", minimum=1, maximum=256),
        Option("weights", "auto", "'auto' (the shipped prior), a path to prior weights, or 'none' (fast + refits)"),
        Option("mu", 0.0, "weight of the prior in the closed-form solves (0: from the LR-HS noise, 1e-3 on "
               "clean data, about 0.1 at SNR 30 dB)", minimum=1e-6, maximum=1e3, auto=0.0),
        Option("refits", 12, "without a learned prior: prior refits on the HR grid, each followed by the "
               "closed-form solve", minimum=0, maximum=100),
        Option("refit_radius", 4, "window radius of the prior refits, in HR pixels", minimum=1, maximum=64),
        Option("rank", 0, "without a learned prior: spectral subspace dimension (0: estimated, at most 20)",
               minimum=0, maximum=64),
        Option("eps", 0.0, "without a learned prior: guided prior regularisation, relative (0: from the noise)",
               minimum=1e-8, maximum=10.0, auto=0.0),
        Option("prior", "auto", "without a learned prior: first prior, 'guided', 'cs' or 'auto'",
               choices=("auto", "guided", "cs")),
        Option("band_weights", True, "without a learned prior: down-weight LR bands much noisier than the median"),
        Option("check", False, "experimental: keep the learned prior only if it does not make the pair, degraded "
               "once more, worse than its base (on CAVE this check rejected the prior where it helped)"),
        ENSEMBLE,
    ),
    uses_torch=True, receptive_field=PRIOR_HALO, bytes_per_band=56, bytes_per_coefficient=64, scene_setup=scene_setup,
))
