"""One frame fused whole: the inputs validated and decoded, the method run, the result checked.

:func:`fuse_frame_iter` is the engine's step for a frame that fits in memory (a whole scene, or
one tile of a tiled run, :mod:`.tiling`); the public entry that chooses between them is
:func:`.api.fuse_iter`. This module imports neither :mod:`.api` nor :mod:`.tiling`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Generator

import numpy as np

from .degradation import Degradation
from .errors import InputError
from .methods import FusionInputs, FusionResult, Progress, get_method
from .methods.base import SceneContext, monotone
from .parallel import blas_pinned
from .validation import (
    check_layout,
    check_lr,
    check_result,
    check_seed,
    check_values,
    hr_to_channels_first,
    resolve_device,
    to_unit_float,
)


def prepare_inputs(hr_image, lr_cube, degradation: Degradation, method: str, seed: int = 0,
                   device: str = "auto", lr_nodata: float | None = None,
                   lr_valid: np.ndarray | None = None, check_range: bool = True,
                   hr_clip: float | None = None, hr_nodata: float | None = None) -> FusionInputs:
    """Validate and convert the pair; copies, never modifies, the caller's arrays.

    The HR image is decoded to linear light, saturated/NaN pixels and nodata LR pixels are masked,
    and for methods that use the spectral response the per-channel gain and offset are
    estimated when the degradation says ``"auto"`` (:func:`..observations.prepare`).
    ``check_range=False`` skips the refusal of empty or mostly negative data: a tile of a scene
    may be dark (noise around zero) or nodata where the scene as a whole is fine. ``hr_clip``: a
    float HR image's clipping level (a tile's: the scene's, not its own maximum). ``hr_nodata``: the
    HR image's nodata value in its units as given: pixels with every channel at it are masked."""
    from .observations import prepare

    info = get_method(method)
    if not isinstance(degradation, Degradation):
        raise InputError("degradation must be a napari_hsisr.Degradation (scale, psf, srf, wavelengths).")
    hr_dtype = np.asarray(hr_image).dtype
    hr, hr_info = to_unit_float(hr_image, "HR image", allow_nan=True)
    lr, lr_info = to_unit_float(lr_cube, "LR-HS cube", allow_nan=True)
    check_layout(hr.shape, lr.shape)  # swapped or bands-last: say so
    if hr_nodata is not None:
        hr = _mask_hr_nodata(hr_image, hr, hr_nodata)
    hr = hr_to_channels_first(hr)
    lr = check_lr(lr)
    degradation.check_shapes(hr.shape, lr.shape)
    if check_range:
        hr_info.update(check_values(hr, "HR image"))
        lr_info.update(check_values(lr, "LR-HS cube"))
    if info.needs_srf and degradation.srf is not None:  # none given: estimated from the pair (observations)
        C, k = degradation.srf.shape
        if C != lr.shape[0]:
            raise InputError(f"LR-HS cube has {lr.shape[0]} bands but the spectral response covers {C}; "
                             "give the cube's wavelengths to Degradation(wavelengths=...).")
        if k != hr.shape[0]:
            raise InputError(f"HR image has {hr.shape[0]} channels but the spectral response has {k}; "
                             "choose a response with one column per HR channel.")
    prep = prepare(hr, hr_dtype, lr, degradation, fit_radiometry=info.needs_srf,
                   lr_valid_given=_given_lr_valid(lr_cube, lr_nodata, lr_valid, lr.shape), hr_clip=hr_clip)
    return FusionInputs(prep.hr, prep.lr, prep.degradation, seed=check_seed(seed),
                        device=resolve_device(device, info.uses_torch),
                        value_scaling={"hr": hr_info, "lr": lr_info, **prep.notes}, hr_valid=prep.hr_valid,
                        lr_valid=prep.lr_valid, hr_display=prep.hr_display,
                        encoding_given=degradation.encoding_given)


def _mask_hr_nodata(hr_image, hr: np.ndarray, nodata: float) -> np.ndarray:
    """``hr`` (float, as ``to_unit_float`` made it) with NaN where every channel of the image *as
    given* equals ``nodata`` (NaN pixels are masked downstream)."""
    raw = np.asarray(hr_image)
    where = np.all(raw == nodata, axis=-1) if raw.ndim == 3 else raw == nodata
    if not where.any():
        return hr
    hr = np.array(hr, dtype=np.float32 if hr.dtype != np.float64 else np.float64)
    hr[where] = np.nan
    return hr


def _given_lr_valid(lr_cube, lr_nodata, lr_valid, shape):
    """What the caller says about valid LR pixels: ``lr_nodata`` compared with the cube *as given*
    (before integers are scaled), and an explicit ``lr_valid`` (y, x) mask."""
    out = None
    if lr_nodata is not None:
        raw = np.asarray(lr_cube)
        out = ~np.all(raw == lr_nodata, axis=0)
    if lr_valid is not None:
        mask = np.asarray(lr_valid, dtype=bool)
        if mask.shape != tuple(shape[-2:]):
            raise InputError(f"lr_valid has shape {mask.shape} but the LR cube is {shape[-2]}x{shape[-1]}; give one "
                             "value per LR pixel (True = valid).")
        out = mask if out is None else out & mask
    return out


@blas_pinned  # one BLAS thread in every step: the same bits at any thread count (core/parallel.py)
def fuse_frame_iter(hr_image, lr_cube, degradation: Degradation, method: str = "fast", seed: int = 0,
                    device: str = "auto", lr_nodata: float | None = None, grid: str = "hr",
                    lr_valid: np.ndarray | None = None, scene: SceneContext | None = None, safe: bool = True,
                    hr_nodata: float | None = None, **options) -> Generator[Progress, None, FusionResult]:
    """The whole frame fused (no tiles; :func:`.api.fuse_iter` is the public entry that tiles):
    yields :class:`Progress`, returns a :class:`FusionResult`.

    Stop at any yield by closing the generator: no result is produced. Validation happens on
    the first ``next()``. ``grid``: ``"hr"`` puts the result on the HR image's pixels (the LR
    layer moves to where it belongs), ``"lr"`` on the LR cube's frame at HR resolution (the
    result is resampled by the degradation's shift, e.g. to compare with a reference on the
    cube's grid). ``lr_nodata``: the LR cube's nodata value, in the units of ``lr_cube`` as given
    (NaN and all-zero spectra always are nodata); ``lr_valid``: a (y, x) mask of valid LR pixels
    (e.g. ``read_cube(...).mask``). ``scene``: what a tiled run computed once for the whole scene
    (:mod:`.tiling`); not for direct use. ``safe``: the result contract (:mod:`.contract`) returns
    the better safe candidate (GSA, ``fast``) when the method's cube is non-finite, implausible or
    explains the pair worse; ``False`` keeps the raw cube (the warning still says so).
    ``hr_nodata``: the HR image's nodata value (in its units as given).
    """
    if grid not in ("hr", "lr"):
        raise InputError(f"grid must be 'hr' (the HR image's pixels) or 'lr' (the LR cube's frame), got {grid!r}.")
    info = get_method(method)
    opts = info.parse_options(options)  # types and bounds checked before any work
    if isinstance(degradation, Degradation) and np.ndim(hr_image) >= 2 and np.ndim(lr_cube) == 3:
        from .memory import check_fits

        check_fits(method, np.shape(hr_image)[:2], np.shape(lr_cube)[0], degradation.scale)
    inputs = prepare_inputs(hr_image, lr_cube, degradation, method, seed, device, lr_nodata, lr_valid,
                            check_range=scene is None,  # a tile: the scene was checked
                            hr_clip=scene.hr_clip if scene is not None else None, hr_nodata=hr_nodata)
    inputs.scene = scene
    _seed_everything(inputs.seed, info.uses_torch)
    start = time.perf_counter()
    out = yield from monotone(info.run(inputs, **opts))
    cube, extras = out if isinstance(out, tuple) else (out, {})
    used = extras.get("degradation_object", inputs.degradation)
    check = None
    # a tile: holes filled, judged on its kept part
    if scene is not None and (scene.skip_fit or scene.keep is not None):
        from .contract import fill_holes

        cube, _ = fill_holes(cube, inputs, used)
        check_result(cube, method)
        if scene.skip_fit:  # a tiled run checks the fit on a sample of its tiles
            fit, fit_warnings = {}, []
        else:
            keep = scene.keep
            fit, fit_warnings = _fit_report(cube[(slice(None),) + keep], inputs.crop(keep), used, method, info)
    else:
        from .contract import enforce

        verdict = enforce(cube, inputs, used, method, lambda c: _fit_report(c, inputs, used, method, info),
                          lambda c: _fit_report(c, inputs, used, method, info, causes=False)[0], safe=bool(safe))
        cube, fit, fit_warnings, check = verdict.cube, verdict.fit, verdict.warnings, verdict.record
    frame = {"frame": grid}
    if grid == "lr":
        cube, frame["resampled_by"] = to_lr_frame(cube, used)
    elapsed = time.perf_counter() - start
    settings = {
        "method": method, "options": opts, "seed": inputs.seed, "device": inputs.device,
        "degradation": inputs.degradation.settings(), "input_scaling": inputs.value_scaling,
        "hr_shape": list(np.shape(hr_image)), "lr_shape": list(np.shape(lr_cube)),
        "seconds": round(elapsed, 3), "versions": versions(), "grid": frame,
    }
    if "degradation" in extras:  # what the method actually used (e.g. a blind estimate)
        settings["estimated_degradation"] = extras["degradation"]
    if extras.get("notes"):  # what an estimation decided and why
        settings["estimation_notes"] = list(extras["notes"])
    if extras.get("resolved"):  # what automatic options (0 = estimate) settled on, e.g. the rank
        settings["resolved_options"] = dict(extras["resolved"])
    settings["fit"] = fit
    if check:
        settings["result_check"] = check
    warnings = (inputs.value_scaling.pop("warnings", []) + list(extras.get("warnings", []))  # e.g. msfn weights
                + fit_warnings)
    if warnings:
        settings["warnings"] = warnings
    return FusionResult(np.ascontiguousarray(cube, dtype=np.float32), settings, extras)


def _fit_report(cube, inputs, used, method, info, causes: bool = True):
    """No-reference fit of a cube and its warnings under the degradation used; with
    ``causes=False`` the fit score alone (:func:`.contract.fit_score`, no warnings looked for)."""
    from .contract import fit_score
    from .fit_report import report, residuals

    inputs, used = judged(inputs, used, method, info)
    if not causes:
        return fit_score(residuals(cube, inputs, used)), []
    return report(cube, inputs, used, method)


def judged(inputs, used, method, info):
    """What the fit judges: without a response (a method that uses none) only the LR side."""
    if not (info.needs_srf or info.fit_uses_response):
        inputs = FusionInputs(inputs.hr, inputs.lr, used, hr_valid=inputs.hr_valid, lr_valid=inputs.lr_valid)
        used = used.with_(srf=None) if used.srf is not None else used
    return inputs, used


def to_lr_frame(cube: np.ndarray, deg: Degradation) -> tuple[np.ndarray, list]:
    """``cube`` (on the HR image's grid) resampled onto the LR cube's frame: shifted by the offset
    of the LR sampling from the block-centred convention (cubic spline, edges repeated)."""
    from scipy import ndimage

    ty, tx = deg.lr_translate
    centre = (deg.scale - 1) / 2.0  # the LR cube's own frame: pixel i at the centre of block i
    dy, dx = ty - centre, tx - centre
    if abs(dy) < 1e-6 and abs(dx) < 1e-6:
        return cube, [0.0, 0.0]
    moved = np.stack([ndimage.shift(band, (-dy, -dx), order=3, mode="nearest") for band in cube])
    return moved.astype(np.float32), [round(-dy, 4), round(-dx, 4)]


def _seed_everything(seed: int, torch_too: bool) -> None:
    np.random.seed(seed % 2**32)  # torch takes any seed below 2**63 (check_seed)
    if torch_too:
        import torch

        torch.manual_seed(seed)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("napari-hsisr", "numpy", "scipy", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out

