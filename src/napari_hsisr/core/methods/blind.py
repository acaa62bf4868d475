"""Blind fusion: estimate the forward model from the pair itself, then fuse with it.

Estimated (:mod:`..estimation`): the HR image's tone curve (linear, sRGB or a gamma, whichever
explains the pair best), a Gaussian PSF (two widths and an angle), the misregistration between
the grids (sub-pixel shift), a signed spectral response restricted to the bands a camera sees,
and per-channel gain and offset. Whatever the user knows is held fixed: ``known`` lists any of
``psf``, ``srf``, ``shift`` (the degradation's values are used), and an ``hr_encoding`` other than
``auto`` is taken as given. Then ``unsupervised`` (default) or ``fast`` (``solver``) runs with the
estimate.

The estimate comes back in ``FusionResult.extras`` (``psf``, ``shift``, ``srf``, ``gain``,
``offset``, ``encoding``, ``degradation``) and in ``settings["estimated_degradation"]``; the
decisions in ``settings["estimation_notes"]``. ``Degradation.from_settings`` rebuilds it for reuse.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import InputError
from . import unsupervised as _unsup
from .base import FusionInputs, MethodInfo, Option, Progress, register, relayed

KNOWN_PARTS = ("psf", "srf", "shift")


def camspec_mean(wavelengths, n_bands: int) -> np.ndarray:
    """Mean of the camspec cameras on the cube's bands, (C, 3), columns summing to 1."""
    from ..srf import get_preset, list_presets, resample_srf

    if wavelengths is None:
        if n_bands != 31:
            return np.full((n_bands, 3), 1.0 / n_bands)
        wavelengths = np.arange(400, 701, 10)
    cams = [resample_srf(r, wavelengths) for name, r in ((n, get_preset(n)) for n in list_presets())
            if r.n_channels == 3 and r.channels == ("R", "G", "B") and "nikon d700 (cave" not in name.lower()]
    m = np.mean(cams, axis=0)
    return m / m.sum(axis=0)


def parse_known(known) -> set[str]:
    parts = {p.strip().lower() for p in str(known or "none").replace("+", ",").split(",") if p.strip()}
    parts.discard("none")
    bad = parts - set(KNOWN_PARTS)
    if bad:
        raise InputError(f"known must be 'none' or a comma-separated list of {', '.join(KNOWN_PARTS)}; "
                         f"got {known!r}.")
    if {"psf", "srf"} <= parts and "shift" in parts:
        raise InputError("known lists the PSF, the SRF and the shift: nothing left to estimate but the gains; "
                         "use 'fast' or 'unsupervised' (they fit gain and offset themselves).")
    return parts


def estimated_degradation(deg, est, known: set[str]):
    """The Degradation an :class:`~..estimation.Estimate` describes (known parts kept). The
    estimated kernel already holds the shift (napari's translate follows its centroid)."""
    kw = dict(srf=deg.srf if "srf" in known else est.response, hr_encoding=est.tone, hr_gain=est.gain,
              hr_offset=est.offset)
    if "psf" not in known:
        kw.update(psf=est.kernel, shift=(0.0, 0.0))
    elif "shift" not in known:  # the user's PSF, at the estimated registration
        kw.update(shift=est.shift)
    new = deg.with_(**kw)
    if "psf" not in known:
        new.psf_name = (f"estimated {est.psf_model} ({est.kernel.shape[0]}x{est.kernel.shape[0]}, "
                        f"shift {est.shift[0]:+.2f}, {est.shift[1]:+.2f})")
    if "srf" not in known:
        new.srf_name = "estimated"
        new.channels = deg.channels or tuple(f"channel {i + 1}" for i in range(est.response.shape[1]))
    return new


def estimate_iter(inputs: FusionInputs, known: str = "none", psf_model: str = "auto", psf_size: int = 0,
                  est_iterations: int = 3):
    """Generator (Progress 0..8): the degradation estimated from the pair. Returns
    ``(Estimate, its Degradation, notes, known parts)``; a tiled run calls it once for the scene."""
    from ..estimation import estimate_degradation_iter, gaussian_parameters_note

    deg = inputs.degradation
    s = deg.scale
    parts = parse_known(known)
    C, k = inputs.lr.shape[0], inputs.hr.shape[0]
    if "srf" in parts and (deg.srf is None or deg.srf.shape != (C, k)):
        raise InputError("known='srf' needs the spectral response in the degradation (one row per band, one "
                         "column per HR channel).")
    size = int(psf_size) or 2 * s
    hr_display = inputs.hr_display if inputs.hr_display is not None else inputs.hr
    est_gen = estimate_degradation_iter(
        hr_display.astype(np.float64), inputs.lr.astype(np.float64), s, deg.wavelengths,
        tone=deg.tone()[0] if inputs.encoding_given else None,
        known_kernel=deg.psf if "psf" in parts else None,
        known_response=deg.srf if "srf" in parts else None,
        known_shift=deg.shift if "shift" in parts else None,
        hr_valid=inputs.hr_valid, lr_valid=inputs.lr_valid, size=size, iterations=int(est_iterations),
        seed=inputs.seed, psf_model=psf_model)
    total = 8
    steps = iter(range(1, 1 << 30))
    est = yield from relayed(est_gen, lambda message: Progress(min(next(steps), total - 1), total, message=message))
    est_deg = estimated_degradation(deg, est, parts)
    notes = list(est.notes) + [gaussian_parameters_note(est) if "psf" not in parts else "PSF given",
                               "fit residual per channel: " + ", ".join(f"{v:.3f}" for v in est.residual)]
    yield Progress(total, total, message="estimated: " + notes[-2])
    return est, est_deg, notes, parts


def run(inputs: FusionInputs, known: str = "none", psf_model: str = "auto", psf_size: int = 0,
        est_iterations: int = 3, solver: str = "unsupervised", **options):
    if solver not in ("unsupervised", "fast"):
        raise InputError(f"solver must be 'unsupervised' or 'fast', got {solver!r}.")
    deg = inputs.degradation
    hr_display = inputs.hr_display if inputs.hr_display is not None else inputs.hr
    est, est_deg, notes, parts = yield from estimate_iter(inputs, known, psf_model, psf_size, est_iterations)
    op = est_deg.spectral_operator
    hr_lin = (est.tone.decode(hr_display) - op.offset[:, None, None]) / op.gain[:, None, None]
    inner = FusionInputs(hr_lin.astype(np.float32), inputs.lr, est_deg, seed=inputs.seed, device=inputs.device,
                         value_scaling=inputs.value_scaling, hr_valid=inputs.hr_valid, lr_valid=inputs.lr_valid,
                         hr_display=hr_display)
    if solver == "fast":
        from . import fast

        fast_opts = {o: options[o] for o in ("rank", "lam", "mu", "eps", "refit_radius", "prior", "band_weights")
                     if o in options}
        cube, extras = yield from fast.run(inner, **fast_opts)
    else:
        cube, extras = yield from _unsup.run(inner, **options)
    known_or = lambda part, mine, theirs: (theirs if part in parts else mine).copy()  # noqa: E731
    from ..observations import radiometry_warnings

    extras = {**extras, "warnings": list(extras.get("warnings", [])) + radiometry_warnings(op.gain)}
    return cube, {**extras, "psf": known_or("psf", est_deg.psf, deg.psf), "shift": est.shift,
                  "srf": known_or("srf", est_deg.srf, deg.srf),
                  "gain": op.gain.copy(), "offset": op.offset.copy(), "encoding": est.tone.name,
                  "degradation": est_deg.settings(), "degradation_object": est_deg, "notes": notes,
                  "tone_residuals": est.tone_residuals}


# blind's own defaults for the unsupervised stage: no CNN fit (it adds nothing measurable after the
# refits, docs/benchmarks.md, and took 70 of blind's 350 s on a 512^2 camera pair here)
_BLIND_DEFAULTS = {"steps": 0}
_UNSUP_OPTIONS = tuple(replace(o, default=_BLIND_DEFAULTS[o.name]) if o.name in _BLIND_DEFAULTS else o
                       for o in _unsup.INFO.options)

ESTIMATION_OPTIONS = ("known", "psf_model", "psf_size", "est_iterations")


def scene_estimate(req):
    """Generator (``MethodInfo.scene_estimate``): the degradation estimated once on the scene's
    central crop; the tiles then run the solver (``solver`` option) with it as a known degradation.
    Returns ``(degradation, tile method, tile options, notes, extras)``."""
    from .base import get_method

    tile_options = dict(req.options)
    est_opts = {k: tile_options.pop(k) for k in ESTIMATION_OPTIONS if k in tile_options}
    est, used, notes, _ = yield from estimate_iter(req.crop_inputs(req.degradation), **est_opts)
    solver = tile_options.pop("solver", "unsupervised")
    if solver == "fast":
        tile_options = {k: v for k, v in tile_options.items() if k in {o.name for o in get_method("fast").options}}
    extras = {"psf": used.psf, "srf": used.srf, "shift": est.shift, "degradation": used.settings(),
              "degradation_object": used, "encoding": est.tone.name}
    return used, solver, tile_options, list(notes), extras


register(MethodInfo(
    "blind", run,
    "Blind: estimates encoding, PSF, shift, response and gains from the pair alone, then runs unsupervised.",
    options=(
        Option("known", "none", "parts of the degradation to hold fixed: 'none' or a comma list of psf, srf, "
               "shift (an hr_encoding other than auto is always held)"),
        Option("psf_model", "auto", "estimated PSF: 'gaussian' (widths, angle, shift), 'free' (any non-negative "
               "kernel) or 'auto' (free when the pair has enough LR pixels for it)",
               choices=("auto", "gaussian", "free")),
        Option("psf_size", 0, "PSF support in HR pixels before the shift (0: twice the scale)", minimum=0,
               maximum=256),
        Option("est_iterations", 3, "alternations between the response and the PSF/shift fits", minimum=1,
               maximum=20),
        Option("solver", "unsupervised", "fusion run with the estimate", choices=("unsupervised", "fast")),
    ) + tuple(_UNSUP_OPTIONS),
    needs_srf=False, needs_psf=False, uses_torch=True, receptive_field=32, bytes_per_band=56,
    bytes_per_coefficient=72, fit_uses_response=True, scene_estimate=scene_estimate,
))
