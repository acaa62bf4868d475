"""High-level entry points: ``fuse``, ``fuse_iter`` (the one engine entry every front end calls:
the CLI, the dock, batch) and ``evaluate``.

:func:`fuse_iter` fuses the whole frame (:mod:`.frame`) or, when it does not fit in memory or
tiles are asked for, tile by tile (:mod:`.tiling`), in this process or as tasks on a
dask.distributed cluster (``client``). Neither of those modules imports this one.
"""

from __future__ import annotations

import math
from collections.abc import Generator

import numpy as np

from .degradation import Degradation
from .errors import InputError
from .frame import fuse_frame_iter, judged, prepare_inputs, to_lr_frame  # noqa: F401 - public names of this module
from .heap import heap_reused
from .methods import FusionResult, Progress, get_method
from .methods.base import monotone, run_to_end


@heap_reused  # large temporaries reuse freed memory: a third less time on this VM (heap.py)
def fuse_iter(hr_image, lr_cube, degradation: Degradation, method: str = "fast", seed: int = 0,
              device: str = "auto", lr_nodata: float | None = None, grid: str = "hr",
              lr_valid: np.ndarray | None = None, *, tile: int | str | None = None, out=None, client=None,
              safe: bool = True, hr_nodata: float | None = None, provenance: dict | None = None,
              **options) -> Generator[Progress, None, FusionResult]:
    """Generator form of :func:`fuse`: yields :class:`Progress` (a step that never goes back),
    returns a :class:`FusionResult`. Stop at any yield by closing the generator: no result is
    produced and nothing is left at ``out``. Validation happens on the first ``next()``.

    ``tile``: None (whole frame when it fits in memory, else tiles of a size that does),
    ``"auto"`` (the same, and tiles whenever ``out`` or ``client`` is given) or HR pixels a side.
    ``out``: a ``.zarr`` or ``.tif`` path a tiled result is written to tile by tile.
    ``client``: a ``distributed.Client`` whose workers fuse the tiles (:mod:`.tiling`), or a
    ``concurrent.futures.Future`` of one (:func:`.parallel.dask_client_soon`), waited for when the
    tiles are ready to go. ``grid``: ``"hr"`` puts the result on the HR image's pixels, ``"lr"``
    on the LR cube's frame at HR resolution (whole frame only). ``lr_nodata``: the LR cube's nodata value, in its units
    as given; ``lr_valid``: a (y, x) mask of valid LR pixels. ``safe``: the result contract
    (:mod:`.contract`) returns the better safe candidate when the method's cube fails it (whole
    frame; tiles are checked for holes and finiteness). ``hr_nodata``: the HR image's nodata
    value (whole frame). ``provenance``: what the caller knows about the inputs (files, their
    metadata), stored with a tiled result's settings (a whole-frame caller adds it itself).
    """
    tile = _resolved_tile(hr_image, lr_cube, degradation, method, tile, out, client)
    if tile is None and out is None:
        return (yield from fuse_frame_iter(hr_image, lr_cube, degradation, method, seed, device, lr_nodata, grid,
                                           lr_valid, safe=safe, hr_nodata=hr_nodata, **options))
    if hr_nodata is not None:
        raise InputError("hr_nodata is not supported for a fusion in tiles yet; give the HR image's nodata pixels as "
                         "NaN (a float image), or fuse the whole frame (no tile/out).")
    if grid != "hr":
        raise InputError("A tiled fusion puts its result on the HR image's grid; use grid='hr' (or no tiles).")
    from .memory import suggest_tile
    from .tiling import fuse_tiled_iter

    if tile is None:
        tile = suggest_tile(method, np.shape(lr_cube)[0], degradation.scale)
    if get_method(method).needs_srf and degradation.srf is None:  # estimated once for the scene, not per tile
        degradation = scene_response(hr_image, lr_cube, degradation, method, lr_nodata, lr_valid)
    return (yield from monotone(fuse_tiled_iter(hr_image, lr_cube, degradation, method, tile, None, seed, device,
                                                out, lr_nodata, lr_valid, provenance=provenance, client=client,
                                                **options)))


def _resolved_tile(hr_image, lr_cube, degradation, method: str, tile, out, client) -> int | None:
    """The tile side a run uses, or None for the whole frame: ``"auto"`` and None become a size
    that fits in memory (:mod:`.memory`) when the whole frame does not, or when the result goes
    to ``out`` or to a cluster's workers."""
    from .memory import fits, suggest_tile

    if tile is None and _too_big_for_memory(hr_image, lr_cube, degradation, method):
        tile = "auto"  # the tool knows what to do: tiles of a size that fits, not a refusal
    if tile == "auto" and isinstance(degradation, Degradation) and np.ndim(lr_cube) == 3:
        bands = np.shape(lr_cube)[0]
        whole = out is None and client is None and fits(method, np.shape(hr_image)[:2], bands)
        tile = None if whole else suggest_tile(method, bands, degradation.scale)
        if tile is not None and client is not None:
            tile = _tile_for_cluster(np.shape(hr_image)[:2], tile, degradation.scale)
    if tile in (None, "auto"):
        return None
    try:
        return int(tile)
    except (TypeError, ValueError):
        raise InputError(f"tile must be a number of HR pixels or 'auto', got {tile!r}.") from None


CLUSTER_TILES = 16  # an automatic tile size on a cluster makes about this many tiles
CLUSTER_MIN_TILE = 32  # LR pixels a side: smaller tiles would spend more on their halo than on themselves


def _tile_for_cluster(hr_shape, tile: int, scale: int) -> int:
    """``tile``, smaller when the scene would make fewer than :data:`CLUSTER_TILES` tiles, so that
    workers share them (never under :data:`CLUSTER_MIN_TILE` LR pixels a side). It does not depend
    on the number of workers: any cluster gives the same tiles, hence the same result."""
    Y, X = hr_shape
    side = int(math.sqrt(Y * X / CLUSTER_TILES)) // scale * scale
    return min(tile, max(side, CLUSTER_MIN_TILE * scale))  # never larger than memory allows


def fuse(hr_image, lr_cube, degradation: Degradation, method: str = "fast", seed: int = 0,
         device: str = "auto", progress=None, lr_nodata: float | None = None, grid: str = "hr",
         lr_valid: np.ndarray | None = None, tile: int | str | None = None, out=None, client=None,
         **options) -> FusionResult:
    """Fuse an HR image ``(Y, X, k)`` with an LR-HS cube ``(C, y, x)``; run to completion.

    ``progress``, if given, is called with each :class:`Progress`. ``tile``: fuse in tiles of
    about that many HR pixels a side (:mod:`.tiling`), or ``"auto"`` (and None, the default):
    whole when it fits in memory, else in tiles of a size that does (:mod:`.memory`); ``out``: a
    ``.zarr`` (OME-Zarr multiscale image) or ``.tif`` (tiled OME BigTIFF) path for a tiled result
    written to disk tile by tile instead of memory. The inputs may then be lazy arrays
    (memory-mapped, zarr). ``client``: a ``distributed.Client`` whose workers fuse the tiles.
    """
    return run_to_end(fuse_iter(hr_image, lr_cube, degradation, method, seed, device, lr_nodata, grid, lr_valid,
                                tile=tile, out=out, client=client, **options), progress)


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

    inputs, used = judged(inputs, inputs.degradation, method, info)
    return residuals(np.asarray(cube), inputs, used)



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

