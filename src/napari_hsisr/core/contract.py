"""The result contract: what every finished fusion is checked against before a user sees it.

A method's cube is handed back only when

1. every value is finite and within what the observations make plausible (:func:`plausible_range`),
2. it explains the pair, under the one model the method used (the given degradation, or a blind
   estimate), no worse than the safe candidates: GSA (component substitution: no model to get
   wrong, no iterations to diverge) and, when a candidate is needed, ``fast`` (closed-form
   solves) under the same model,
3. where the HR image has no usable pixels (large saturated, NaN or nodata regions), it comes
   from the LR cube alone (bicubic interpolation), blended over the PSF's reach.

When 1 or 2 fails the better safe candidate is returned instead, with a warning that names the
method, the reason and the two fit scores; ``safe=False`` (CLI ``--keep-raw``) keeps the raw
result for experts, with the same warning. The decision is recorded in
``settings["result_check"]``. One place for every method: a new method is covered without
code of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .validation import check_result

RANGE_HEADROOM = 4.0  # measured: a CAVE cube's maximum is at most 1.83x its x8 LR cube's, per band
OUT_OF_RANGE_TOLERATED = 1e-4  # fraction of values beyond the range that is clipped, not refused
FIT_MARGIN = 1.10  # a candidate replaces the result only when it fits clearly better


@dataclass
class Verdict:
    cube: np.ndarray
    fit: dict
    warnings: list = field(default_factory=list)
    record: dict = field(default_factory=dict)


def plausible_range(lr: np.ndarray, lr_valid) -> tuple[float, float]:
    """Values a cube may take given its LR observation: ``[-h/4, 4 h]`` with ``h`` the LR cube's
    largest valid value. Blur and decimation average, so the scene's peaks exceed the LR
    cube's only by what averaging hides (at most 1.83x per band on the CAVE scenes at x8)."""
    vals = lr[:, lr_valid] if lr_valid is not None else lr.reshape(len(lr), -1)
    top = float(np.max(np.abs(vals))) if vals.size else 1.0
    top = top if top > 0 else 1.0
    return -0.25 * top, RANGE_HEADROOM * top


def fit_score(fit: dict) -> float:
    """One number for how well a result explains the pair: LR relative residual plus the HR
    image's in linear light (what the model describes; the tone curve only rescales it)."""
    return float(fit.get("lr", {}).get("relative", 0.0) + fit.get("hr", {}).get("linear_relative", 0.0))


def range_problem(cube: np.ndarray, lo: float, hi: float) -> tuple[float, str]:
    """Fraction of values that are non-finite or out of ``[lo, hi]``, and a description."""
    finite = np.isfinite(cube)
    bad_finite = cube.size - int(np.count_nonzero(finite))
    safe = np.where(finite, cube, 0.0)
    beyond = int(np.count_nonzero((safe < lo) | (safe > hi)))
    fraction = (bad_finite + beyond) / max(cube.size, 1)
    parts = []
    if bad_finite:
        parts.append(f"{bad_finite} NaN/Inf values")
    if beyond:
        parts.append(f"{beyond} values outside the plausible range [{lo:.3g}, {hi:.3g}] (largest "
                     f"{float(np.max(np.abs(safe))):.3g})")
    return fraction, " and ".join(parts)


def hr_hole_weight(hr_valid: np.ndarray | None) -> np.ndarray | None:
    """(Y, X) weight of the LR-only fill: 1 in the HR image's holes (pixels it does not give), 0
    elsewhere; None when there is no hole. A hard edge: ramps inwards or outwards over the PSF's
    reach were measured worse (flowers, 48-pixel blocks: inside 0.09 dB under bicubic; outside,
    6 dB lost within 4 pixels of the edge)."""
    if hr_valid is None or hr_valid.all():
        return None
    return (~hr_valid).astype(np.float32)


def fill_holes(cube: np.ndarray, inputs, deg) -> tuple[np.ndarray, float]:
    """``cube`` with the HR image's holes taken from the LR cube (bicubic), and the fraction of
    HR pixels so filled."""
    from .methods.bicubic import upsample
    from .methods.fast import lr_displacement

    weight = hr_hole_weight(inputs.hr_valid)
    if weight is None:
        return cube, 0.0
    up = _lr_alone(inputs.lr, deg, upsample, lr_displacement)
    out = cube * (1.0 - weight) + up * weight
    return out.astype(np.float32), float(np.mean(~inputs.hr_valid))


def _lr_alone(lr, deg, upsample, lr_displacement):
    """The LR cube alone on the HR grid: bicubic, moved to where the model puts the LR samples."""
    dy, dx = lr_displacement(deg)
    if dy or dx:
        lr = ndimage.shift(lr, (0, dy / deg.scale, dx / deg.scale), order=3, mode="nearest")
    return upsample(lr, deg.scale)


def linear_hr(inputs, deg) -> np.ndarray:
    """The HR image in linear light under ``deg``'s own tone curve and radiometry (a blind
    estimate's, which differ from the ones the inputs were prepared with)."""
    if inputs.hr_display is None or deg.srf is None or isinstance(deg.hr_gain, str):
        return inputs.hr
    op = deg.spectral_operator
    lin = deg.tone()[0].decode(inputs.hr_display.astype(np.float64))
    return ((lin - op.offset[:, None, None]) / op.gain[:, None, None]).astype(np.float32)


def gsa_candidate(inputs, deg) -> np.ndarray:
    """GSA's cube from the HR image as the model decodes it."""
    from .methods.fast import lr_displacement
    from .methods.gsa import seen_lr_pixels, sharpen

    cube = sharpen(linear_hr(inputs, deg).astype(np.float64), inputs.lr.astype(np.float64), deg.scale,
                   lr_displacement(deg), dtype=np.float32, lr_use=seen_lr_pixels(inputs))
    return np.clip(cube, 0, None)


def fast_candidate(inputs, deg) -> np.ndarray | None:
    """``fast`` under the model the method used (None when that model has no response)."""
    from dataclasses import replace

    from .methods import fast
    from .methods.base import run_to_end

    if deg.srf is None or deg.srf.shape != (inputs.lr.shape[0], inputs.hr.shape[0]):
        return None
    out = run_to_end(fast.run(replace(inputs, hr=linear_hr(inputs, deg), degradation=deg, scene=None)))
    return out[0] if isinstance(out, tuple) else out


def enforce(cube: np.ndarray, inputs, deg, method: str, fit_of, score_of, safe: bool = True) -> Verdict:
    """Check ``cube`` (the method's, on the HR grid) and return what the user gets.

    ``fit_of(cube) -> (fit, warnings)``: the fit report under ``deg`` (the model the method used),
    ``score_of(cube) -> float``: its :func:`fit_score` alone (cheaper: no causes looked for);
    ``safe=False`` keeps the raw result (the warnings still say what the check found)."""
    from .methods import get_method

    info = get_method(method)  # which candidates it may fall back to, whether holes are filled: its own say
    record: dict = {"method": method, "safe": bool(safe)}
    warnings: list[str] = []
    lo, hi = plausible_range(inputs.lr, inputs.lr_valid)
    cube, filled = fill_holes(cube, inputs, deg) if info.fills_holes else (cube, 0.0)
    if filled:
        record["hr_holes_filled_from_lr"] = round(filled, 6)
        warnings.append(f"{100 * filled:.2f} % of the HR image's pixels are unusable (saturated, NaN or nodata) "
                        "in regions larger than a few pixels: the result there comes from the LR cube alone "
                        "(bicubic interpolation).")
    fraction, what = range_problem(cube, lo, hi)
    if 0 < fraction <= OUT_OF_RANGE_TOLERATED and np.all(np.isfinite(cube)):
        cube = np.clip(cube, lo, hi)
        record["clipped_values"] = what
        fraction, what = 0.0, ""
    fit, fit_warnings = fit_of(np.nan_to_num(cube, nan=0.0, posinf=hi, neginf=lo) if fraction else cube)
    score = fit_score(fit)
    record.update(plausible_range=[round(lo, 6), round(hi, 6)], score=round(score, 5))
    if not info.safe_fallbacks:  # nothing safer to fall back to: a degenerate pair is the user's to fix
        check_result(cube, method)
        record["kept"] = method
        return Verdict(cube, fit, warnings + fit_warnings, record)
    candidates, scores = _candidates(inputs, deg, info.safe_fallbacks, score_of, needs_fast=bool(fraction),
                                     score=score)
    record["candidate_scores"] = {k: round(v, 5) for k, v in scores.items()}
    best = min(scores, key=scores.get)
    if not np.isfinite(scores[best]):  # no candidate either: the pair is degenerate for them
        check_result(cube, method)
        clipped = np.clip(cube, lo, hi)
        record["kept"] = f"{method} (no safe candidate could be computed)"
        note = f"; values clipped to the plausible range [{lo:.3g}, {hi:.3g}]" if fraction else ""
        return Verdict(clipped, fit_of(clipped)[0], warnings + fit_warnings + [
            f"the {method} result could not be checked against a safe candidate (none could be computed){note}."],
            record)
    reason = f"it has {what}" if fraction else ""
    if not reason and scores[best] * FIT_MARGIN < score:
        reason = (f"it explains the pair worse than {best} under the same model (residual LR + HR "
                  f"{score:.4f} against {scores[best]:.4f}, {score / max(scores[best], 1e-12):.2f}x)")
    if not reason:
        record["kept"] = method
        return Verdict(cube, fit, warnings + fit_warnings, record)
    if not safe:
        record["kept"] = f"{method} (raw, as asked)"
        return Verdict(np.nan_to_num(cube, nan=0.0), fit, warnings + fit_warnings + [
            f"the {method} result fails the result check: {reason}; kept raw as asked (safe=False)."], record)
    chosen, _ = fill_holes(candidates[best], inputs, deg)
    fit, fit_warnings = fit_of(chosen)
    record.update(kept=best, replaced=method, reason=reason)
    warnings.append(f"the {method} result was replaced by {best}'s: {reason}. Use safe=False (CLI --keep-raw) "
                    "to keep the raw result.")
    return Verdict(np.ascontiguousarray(chosen, dtype=np.float32), fit, warnings + fit_warnings, record)


def _candidates(inputs, deg, fallbacks: tuple, score_of, needs_fast: bool, score: float) -> tuple[dict, dict]:
    """The safe candidates' cubes and scores (inf: not finite). GSA always (cheap); ``fast``, when
    among the method's ``fallbacks``, when ``needs_fast`` (the result is out of range) or the result
    scores worse than GSA."""
    candidates = {"gsa": gsa_candidate(inputs, deg)}
    scores = {"gsa": score_of(candidates["gsa"])}
    if (needs_fast or scores["gsa"] * FIT_MARGIN < score) and "fast" in fallbacks:
        fast_cube = fast_candidate(inputs, deg)
        if fast_cube is not None:
            candidates["fast"] = fast_cube
            scores["fast"] = score_of(fast_cube)
    finite = {k: bool(np.isfinite(v) and np.all(np.isfinite(candidates[k]))) for k, v in scores.items()}
    return candidates, {k: (v if finite[k] else np.inf) for k, v in scores.items()}
