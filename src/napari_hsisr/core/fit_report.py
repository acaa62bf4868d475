"""How well a result explains the two observations it came from, without a reference.

Every result is passed back through the forward model it was made with (the known or the
estimated degradation): the LR cube it predicts against the LR cube given, the HR image it
predicts (response, gain, offset, then the tone curve) against the HR image given, each overall
and per band/channel, on the pixels that count (valid, and for the LR cube only pixels whose
kernel lies inside the HR image). A method that enforces the model reproduces both to the
noise level; when it cannot, the model does not describe the pair, and the report says which
part is the likely cause: the encoding, a misregistration, bands the camera sees that the cube
lacks, or the radiometry.
"""

from __future__ import annotations

import numpy as np

WARN_AT = 0.05  # relative RMS residual above which the model "does not explain" an observation


def _relative(res: np.ndarray, obs: np.ndarray) -> tuple[float, list]:
    """Relative RMS residual overall and per leading index, ``res``/``obs`` (n, pixels)."""
    per = np.sqrt(np.mean(res ** 2, 1)) / (np.sqrt(np.mean(obs ** 2, 1)) + 1e-12)
    total = float(np.sqrt(np.mean(res ** 2)) / (np.sqrt(np.mean(obs ** 2)) + 1e-12))
    return total, [round(float(v), 5) for v in per]


def residuals(cube: np.ndarray, inputs, deg) -> dict:
    """``{"lr": {...}, "hr": {...}}``: relative RMS residuals of ``cube`` (C, Y, X) under ``deg``."""
    from .estimation import footprint_valid

    cube = np.asarray(cube, dtype=np.float64)
    out: dict = {}
    lr = inputs.lr.astype(np.float64)
    use = footprint_valid(deg.kernel, deg.scale, cube.shape[-2:])
    if inputs.lr_valid is not None:
        use &= inputs.lr_valid
    # a relative residual needs a signal: none when no LR pixel is usable (a kernel larger than the
    # image), or where an observation is all zero (a tile inside a nodata region)
    if use.any() and np.any(lr[:, use]):
        op = deg.spatial_operator
        # both exact on the pixels used; sums over the kernel cost (K/s)^2 a pixel, the FFT about
        # what K = 4s does (31 x 608^2: 0.03 s against 0.5 s at K = s, 0.21 s at K = 3s)
        pred = op(cube) if op.kernel.shape[0] <= 4 * deg.scale else op.circular(cube)
        # bands weighted as the fusion weighs them: a water-absorption band is noise that no result
        # should reproduce, and must not decide whether the result explains the cube
        w = _band_weights(lr, inputs.lr_valid)[:, None]
        total, _ = _relative(w * (pred - lr)[:, use], w * lr[:, use])
        _, per = _relative((pred - lr)[:, use], lr[:, use])
        out["lr"] = {"relative": round(total, 5), "per_band": per, "pixels": int(use.sum()),
                     "rms_observed": float(np.sqrt(np.mean((w * lr[:, use]) ** 2)))}
        if np.any(w < 1):
            out["lr"]["noisy_bands_down_weighted"] = int(np.sum(w < 1))
    keep = np.ones(cube.shape[-2:], bool) if inputs.hr_valid is None else inputs.hr_valid
    if deg.srf is not None and deg.srf.shape[0] == cube.shape[0] and inputs.hr_display is not None \
            and deg.srf.shape[1] == inputs.hr_display.shape[0] and np.any(inputs.hr_display[:, keep]):
        tone, _ = deg.tone()
        lin = deg.spectral_operator(cube)
        display = tone.encode(lin)
        obs = inputs.hr_display.astype(np.float64)
        total, per = _relative((display - obs)[:, keep], obs[:, keep])
        lin_total, _ = _relative((lin - tone.decode(obs))[:, keep], tone.decode(obs)[:, keep])
        out["hr"] = {"relative": round(total, 5), "per_channel": per, "linear_relative": round(lin_total, 5),
                     "pixels": int(keep.sum()), "rms_observed": float(np.sqrt(np.mean(obs[:, keep] ** 2))),
                     "encoding": tone.name}
    return out


SIDES = (("lr", "LR cube"), ("hr", "HR image"))


def percent(relative: float) -> str:
    """A relative residual as every front end writes it."""
    return f"{100 * relative:.2f} %"


def describe(fit: dict) -> str:
    """``"LR cube 0.66 %, HR image 0.17 %"``: the fit report in one line (status, Quality, CLI)."""
    return ", ".join(f"{name} {percent(fit[key]['relative'])}" for key, name in SIDES if key in (fit or {}))


def _band_weights(lr: np.ndarray, valid) -> np.ndarray:
    from .solvers.subspace import band_weights, noise_covariance

    try:
        return band_weights(noise_covariance(lr, valid))
    except np.linalg.LinAlgError:
        return np.ones(len(lr))


def likely_causes(inputs, deg) -> list[str]:
    """What may keep the model from explaining the pair, tested on the LR grid (cheap)."""
    from .estimation import coarse_shift, fit_gain_offset
    from .physics import ToneCurve

    causes = []
    masked = 0.0 if inputs.hr_valid is None else float(np.mean(~inputs.hr_valid))
    if masked >= 0.005:
        causes.append(f"masked pixels: {100 * masked:.1f} % of the HR image is unusable (saturated, NaN or nodata); "
                      "the result there comes from the LR cube alone")
    display = inputs.hr_display.astype(np.float64)
    lr = inputs.lr.astype(np.float64)
    tone, _ = deg.tone()
    fits = {}
    for cand in dict.fromkeys([tone.name, "linear", "srgb"]):
        curve = tone if cand == tone.name else ToneCurve.parse(cand)
        try:
            _, _, resid = fit_gain_offset(curve.decode(display), lr, deg.kernel, deg.scale, deg.srf,
                                          inputs.hr_valid, inputs.lr_valid)
            fits[cand] = float(np.mean(resid))
        except Exception:  # noqa: BLE001 - a cause we cannot test is simply not named
            continue
    best = min(fits, key=fits.get) if fits else tone.name
    if best != tone.name and fits[best] < 0.5 * fits[tone.name]:
        causes.append(f"encoding: the HR image fits the model {fits[tone.name] / fits[best]:.1f}x better decoded as "
                      f"{best} than as {tone.name}; set hr_encoding='{best}' (or use blind)")
    lin = (tone if best == tone.name else ToneCurve.parse(best)).decode(display)
    free = _free_response_residual(tone.decode(display), lr, deg, inputs)  # under the model's own curve
    given = fits.get(tone.name, np.inf)  # inf: the given response cannot even be fitted with positive gains
    if free is not None and free < 0.5 * given:
        ratio = f"{given / max(free, 1e-12):.1f}x better" if np.isfinite(given) else "where it cannot"
        causes.append(f"response: a response fitted to the pair explains the HR image {ratio} than the given one "
                      f"({deg.srf_name or 'user matrix'}); omit srf to have it estimated from the pair (CLI: no "
                      "--srf; dock: 'estimate from the pair'), or use blind")
    support = deg.srf.sum(1) != 0 if deg.srf is not None else np.ones(len(lr), bool)
    dy, dx = coarse_shift(lin, lr, deg.scale, support if support.sum() >= 1 else np.ones(len(lr), bool))
    ty, tx = deg.lr_translate  # what the model already accounts for (from the block centre)
    dy, dx = dy - (ty - (deg.scale - 1) / 2.0), dx - (tx - (deg.scale - 1) / 2.0)
    if np.hypot(dy, dx) >= max(0.5, 0.1 * deg.scale):
        causes.append(f"misregistration: the LR cube looks displaced by about ({dy:+.1f}, {dx:+.1f}) HR pixels from "
                      "where the model puts it; use blind (it estimates the shift) or give Degradation(shift=...)")
    wl = deg.wavelengths
    if wl is not None and deg.srf is not None and inputs.hr_display.shape[0] == 3:
        if wl.min() > 450 or wl.max() < 650:
            causes.append(f"bands: the cube covers {wl.min():g}-{wl.max():g} nm, not all of what an RGB camera sees "
                          "(400-700 nm)")
    gain = np.asarray(deg.hr_gain) if not isinstance(deg.hr_gain, str) else None
    if gain is not None and (gain.max() / max(gain.min(), 1e-12) > 2.0):
        causes.append(f"radiometry: the HR channels' gains differ by {gain.max() / gain.min():.1f}x (white balance or "
                      "a wrong response)")
    return causes


def _free_response_residual(lin, lr, deg, inputs) -> float | None:
    """Mean relative residual of ``D y = W^T x + o`` with ``W`` fitted freely (the response
    estimate of blind, PSF held), on the LR grid; None when it cannot be fitted."""
    from .estimation import fit_response, response_support, spatial, usable_lr_pixels

    try:
        use = usable_lr_pixels(deg.kernel, deg.scale, lin.shape[-2:], inputs.hr_valid, inputs.lr_valid)
    except Exception:  # noqa: BLE001 - too few usable pixels: no cause named
        return None
    b = spatial(lin, deg.kernel, deg.scale).reshape(len(lin), -1)[:, use]
    x = lr.reshape(len(lr), -1)[:, use]
    W, o, _ = fit_response(b, x, response_support(deg.wavelengths, len(lr), len(lin)))
    r = b - (W.T @ x + o[:, None])
    return float(np.mean(np.sqrt(np.mean(r ** 2, 1)) / (np.sqrt(np.mean(b ** 2, 1)) + 1e-12)))


def report(cube: np.ndarray, inputs, deg, method: str) -> tuple[dict, list[str]]:
    """The fit report of a result and the warnings it raises."""
    fit = residuals(cube, inputs, deg)
    warnings = []
    bad = [name for name in ("lr", "hr") if fit.get(name, {}).get("relative", 0.0) > WARN_AT]
    if bad:
        names = {"lr": "the LR cube", "hr": "the HR image"}
        what = " and ".join(f"{names[b]} ({100 * fit[b]['relative']:.1f} % residual)" for b in bad)
        causes = likely_causes(inputs, deg) if deg.srf is not None and inputs.hr_display is not None else []
        hint = ("; likely cause: " + "; ".join(causes)) if causes else (
            "; the camera explains the cube only so far (viewing geometry, time between acquisitions, 3-D scene): "
            "detail taken from the HR image is uncertain")
        warnings.append(f"the {method} result does not explain {what} under its degradation{hint}.")
    return fit, warnings
