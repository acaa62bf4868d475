"""High-level entry points: ``fuse``, ``fuse_iter`` and ``evaluate``."""

from __future__ import annotations

import platform
import time
from typing import Generator

import numpy as np

from .degradation import Degradation
from .errors import InputError
from .methods import FusionInputs, FusionResult, Progress, get_method
from .methods.base import monotone
from .parallel import blas_pinned
from .validation import (check_layout, check_lr, check_result, check_seed, check_values, hr_to_channels_first,
                         resolve_device, to_unit_float)


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
    return FusionInputs(prep.hr, prep.lr, prep.degradation, seed=check_seed(seed), device=resolve_device(device),
                        value_scaling={"hr": hr_info, "lr": lr_info, **prep.notes}, hr_valid=prep.hr_valid,
                        lr_valid=prep.lr_valid, hr_display=prep.hr_display)


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
def fuse_iter(hr_image, lr_cube, degradation: Degradation, method: str = "fast", seed: int = 0,
              device: str = "auto", lr_nodata: float | None = None, grid: str = "hr",
              lr_valid: np.ndarray | None = None, scene: dict | None = None, safe: bool = True,
              hr_nodata: float | None = None, **options) -> Generator[Progress, None, FusionResult]:
    """Generator form of :func:`fuse`: yields :class:`Progress`, returns a :class:`FusionResult`.

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
                            hr_clip=(scene or {}).get("hr_clip"), hr_nodata=hr_nodata)
    inputs.scene = scene
    _seed_everything(inputs.seed, info.uses_torch)
    start = time.perf_counter()
    out = yield from monotone(info.run(inputs, **opts))
    cube, extras = out if isinstance(out, tuple) else (out, {})
    used = extras.get("degradation_object", inputs.degradation)
    check = None
    if (scene or {}).get("skip_fit") or (scene or {}).get("keep"):  # a tile: holes filled, judged on its kept part
        from .contract import fill_holes

        cube, _ = fill_holes(cube, inputs, used)
        check_result(cube, method)
        if (scene or {}).get("skip_fit"):  # a tiled run checks the fit on a sample of its tiles
            fit, fit_warnings = {}, []
        else:
            keep = scene["keep"]
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
        "seconds": round(elapsed, 3), "versions": _versions(), "grid": frame,
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

    inputs, used = _judged(inputs, used, method, info)
    if not causes:
        return fit_score(residuals(cube, inputs, used)), []
    return report(cube, inputs, used, method)


def _judged(inputs, used, method, info):
    """What the fit judges: without a response (a method that uses none) only the LR side."""
    if not (info.needs_srf or method == "blind"):
        inputs = FusionInputs(inputs.hr, inputs.lr, used, hr_valid=inputs.hr_valid, lr_valid=inputs.lr_valid)
        used = used.with_(srf=None) if used.srf is not None else used
    return inputs, used


def result_fit(cube, hr_image, lr_cube, settings: dict) -> dict:
    """The fit report of a result (``settings["fit"]``) recomputed from the pair it was fused from,
    under the degradation that made it: blind's estimate when there is one, the recorded gains,
    offsets and encoding. What every front end shows when it judges a result without a reference."""
    settings = settings or {}
    record = settings.get("estimated_degradation") or settings.get("degradation")
    if not record or not record.get("scale") or record.get("psf_kernel") is None:
        raise InputError("The result has no recorded degradation (settings['degradation']); "
                         "choose a reference layer instead.")
    method = str(settings.get("method") or "fast")
    info = get_method(method)
    deg = Degradation.from_settings(record)
    inputs = prepare_inputs(hr_image, lr_cube, deg, method, check_range=False)  # decoded as the run decoded it
    if (settings.get("grid") or {}).get("frame") == "lr":
        raise InputError("The result is on the LR cube's frame (grid='lr'); its fit is the one recorded in its "
                         "settings.")
    from .fit_report import residuals

    inputs, used = _judged(inputs, inputs.degradation, method, info)
    return residuals(np.asarray(cube), inputs, used)


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


def fuse(hr_image, lr_cube, degradation: Degradation, method: str = "fast", seed: int = 0,
         device: str = "auto", progress=None, lr_nodata: float | None = None, grid: str = "hr",
         lr_valid: np.ndarray | None = None, tile: int | str | None = None, out=None,
         **options) -> FusionResult:
    """Fuse an HR image ``(Y, X, k)`` with an LR-HS cube ``(C, y, x)``; run to completion.

    ``progress``, if given, is called with each :class:`Progress`. ``tile``: fuse in tiles of
    about that many HR pixels a side (:mod:`.tiling`), or ``"auto"`` (and None, the default):
    whole when it fits in memory, else in tiles of a size that does (:mod:`.memory`); ``out``: a ``.zarr`` (OME-Zarr multiscale image) or
    ``.tif`` (tiled OME BigTIFF) path for a tiled result written to disk tile by tile instead of
    memory. The inputs may then be lazy arrays (memory-mapped, zarr).
    """
    gen = _fuse_gen(hr_image, lr_cube, degradation, method, seed, device, lr_nodata, grid, lr_valid, tile, out,
                    options)
    return run_to_end(gen, progress)


def run_to_end(gen, progress=None):
    """Drive a fusion generator to its result, calling ``progress`` with each :class:`Progress`."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(p)


def _fuse_gen(hr_image, lr_cube, degradation, method, seed, device, lr_nodata, grid, lr_valid, tile, out, options,
              provenance: dict | None = None):
    """``provenance``: what the caller knows about the inputs (files, their metadata), recorded in
    a tiled result's stored settings (written before the run returns; a whole-frame caller adds it
    to ``result.settings`` itself)."""
    from .memory import fits, suggest_tile

    if tile is None and _too_big_for_memory(hr_image, lr_cube, degradation, method):
        tile = "auto"  # the tool knows what to do: tiles of a size that fits, not a refusal
    if tile == "auto" and isinstance(degradation, Degradation) and np.ndim(lr_cube) == 3:
        whole = out is None and fits(method, np.shape(hr_image)[:2], np.shape(lr_cube)[0])
        tile = None if whole else suggest_tile(method, np.shape(lr_cube)[0], degradation.scale)
    if tile is None and out is None:
        return fuse_iter(hr_image, lr_cube, degradation, method, seed, device, lr_nodata, grid, lr_valid, **options)
    options.pop("safe", None)  # tiles are checked for holes and finiteness, not against candidates
    if options.get("hr_nodata") is not None:
        raise InputError("hr_nodata is not supported for a fusion in tiles yet; give the HR image's nodata pixels as "
                         "NaN (a float image), or fuse the whole frame (no tile/out).")
    options.pop("hr_nodata", None)
    if grid != "hr":
        raise InputError("A tiled fusion puts its result on the HR image's grid; use grid='hr' (or no tiles).")
    from .tiling import fuse_tiled_iter

    if tile in (None, "auto"):
        tile = suggest_tile(method, np.shape(lr_cube)[0], degradation.scale)
    try:
        tile = int(tile)
    except (TypeError, ValueError):
        raise InputError(f"tile must be a number of HR pixels or 'auto', got {tile!r}.") from None
    if get_method(method).needs_srf and degradation.srf is None:  # estimated once for the scene, not per tile
        degradation = scene_response(hr_image, lr_cube, degradation, method, lr_nodata, lr_valid)
    return monotone(fuse_tiled_iter(hr_image, lr_cube, degradation, method, tile, None, seed, device, out, lr_nodata,
                                    lr_valid, provenance=provenance, **options))


def _too_big_for_memory(hr_image, lr_cube, degradation, method: str) -> bool:
    """Whether a whole-frame fusion of this pair would not fit in the memory there is, and tiles would
    (when even the smallest tile does not, the whole-frame check refuses, saying so)."""
    from .memory import fits, tiles_fit

    if not isinstance(degradation, Degradation) or np.ndim(lr_cube) != 3 or np.ndim(hr_image) < 2:
        return False
    bands = np.shape(lr_cube)[0]
    return not fits(method, np.shape(hr_image)[:2], bands) and tiles_fit(method, bands, degradation.scale)


SCENE_RESPONSE_WINDOW = 1024  # HR pixels a side of the central window a tiled scene's response is estimated on


def scene_response(hr_image, lr_cube, degradation, method, lr_nodata=None, lr_valid=None) -> Degradation:
    """``degradation`` with the response, encoding and gains estimated from a central window of
    the scene (:func:`.observations.estimate_response`), so that every tile uses the same."""
    s = degradation.scale
    Y, X = np.shape(hr_image)[:2]
    h, w = (min(n, SCENE_RESPONSE_WINDOW) // s * s for n in (Y, X))
    top, left = (Y - h) // 2 // s * s, (X - w) // 2 // s * s
    window = (slice(top // s, (top + h) // s), slice(left // s, (left + w) // s))
    hr_win = np.asarray(hr_image[top:top + h, left:left + w])
    lr_win = np.asarray(lr_cube[(slice(None),) + window])
    valid = None if lr_valid is None else np.asarray(lr_valid)[window]
    return prepare_inputs(hr_win, lr_win, degradation, method, lr_nodata=lr_nodata, lr_valid=valid).degradation


def evaluate(estimate, reference, scale: int | None = None, full: bool = True) -> dict:
    """Quality of ``estimate`` against ``reference`` (both ``(C, Y, X)``); see :mod:`.metrics`."""
    from .metrics import evaluate as _evaluate

    return _evaluate(estimate, reference, scale=scale, full=full)


def _seed_everything(seed: int, torch_too: bool) -> None:
    np.random.seed(seed % 2**32)  # torch takes any seed below 2**63 (check_seed)
    if torch_too:
        import torch

        torch.manual_seed(seed)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("napari-hsisr", "numpy", "scipy", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
