"""Fusion of scenes larger than memory: tiles on the HR grid, a shared scene context, blending.

The HR grid is cut into tiles whose edges fall on LR pixel edges (multiples of the scale). Each
tile is fused on a larger window, its *halo*, so that the PSF, the guided-filter windows and a
network's receptive field see real data at the tile's edges; only the tile and a blending band
around it are kept. Neighbouring tiles overlap by that band and are blended with linear ramps
that sum to one (a partition of unity), so there is no seam.

What is global is computed once for the scene (:func:`scene_context`) and shared by every tile: the
spectral subspace, band weights, rank and noise level (from the whole LR cube, which is ``scale^2``
times smaller than the result), the guided prior's and the refits' regularisation scales (the local
variance of the HR image seen on the LR grid and of the HR image itself, streamed over the scene),
the prior's choice and the HR image's gain and offset (from a central crop), and for ``blind`` the
estimated degradation (from that crop); the tiles then run the blind method's solver with it as a
known degradation. Memory follows the tile size, not the scene, when the inputs are lazy arrays
(``np.memmap``, zarr, :func:`~.io.open_cube_lazy`) and the result goes to disk
(``out="result.zarr"``: an OME-Zarr multiscale image; ``out="result.tif"``: a tiled OME BigTIFF),
written tile by tile (:mod:`.tiled_output`) and renamed into place at the end: a stopped or failed
run leaves nothing at ``out``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .degradation import Degradation
from .errors import InputError
from .methods import FusionResult, Progress, get_method
from .methods.base import SceneContext, SceneRequest, relayed, run_to_end
from .parallel import blas_pinned, ready_client
from .tiled_output import make_output

FIT_TILES = 16  # tiles whose fit (residuals against both observations) is computed, spread evenly
SCENE_CROP = 512  # HR pixels a side of the central crop that gains, prior choice and blind use


@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` is the part it owns, ``window`` the part it is fused on (halo included),
    ``keep`` the part written (core plus the blending band), all HR (row, column) slices."""

    index: int
    core: tuple[slice, slice]
    window: tuple[slice, slice]
    keep: tuple[slice, slice]

    def lr_window(self, scale: int) -> tuple[slice, slice]:
        return tuple(slice(s.start // scale, s.stop // scale) for s in self.window)


def _cuts(n: int, tile: int) -> list[tuple[int, int]]:
    """Core intervals of at least ``tile`` (and less than twice it) covering ``0..n``, evenly."""
    count = max(1, n // tile)
    edges = [round(i * n / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def plan_tiles(hr_shape: tuple[int, int], scale: int, tile: int, halo: int, blend: int) -> list[Tile]:
    """Tiles of about ``tile`` HR pixels a side, edges on multiples of ``scale``; ``halo`` and
    ``blend`` (HR pixels, multiples of the scale) as described in the module docstring."""
    s = int(scale)
    Y, X = hr_shape
    for name, v in (("tile", tile), ("halo", halo), ("blend", blend)):
        if v % s:
            raise InputError(f"{name} must be a multiple of the scale {s}, got {v}.")
    rows = [(a * s, b * s) for a, b in _cuts(Y // s, tile // s)]
    cols = [(a * s, b * s) for a, b in _cuts(X // s, tile // s)]
    tiles = []
    for r0, r1 in rows:
        for c0, c1 in cols:
            core = (slice(r0, r1), slice(c0, c1))
            keep = (slice(max(0, r0 - blend), min(Y, r1 + blend)), slice(max(0, c0 - blend), min(X, c1 + blend)))
            window = (slice(max(0, r0 - blend - halo), min(Y, r1 + blend + halo)),
                      slice(max(0, c0 - blend - halo), min(X, c1 + blend + halo)))
            tiles.append(Tile(len(tiles), core, window, keep))
    return tiles


def _ramp(keep: slice, core: slice, n: int, blend: int) -> np.ndarray:
    """1-D weights over ``keep``: 1 inside, linear over the ``2 * blend`` band centred on each core
    edge that has a neighbour (complementary to the neighbour's ramp: they sum to one)."""
    x = np.arange(keep.start, keep.stop, dtype=np.float64) + 0.5
    w = np.ones_like(x)
    if blend > 0 and core.start > 0:
        w = np.minimum(w, np.clip((x - (core.start - blend)) / (2 * blend), 0, 1))
    if blend > 0 and core.stop < n:
        w = np.minimum(w, np.clip(((core.stop + blend) - x) / (2 * blend), 0, 1))
    return w


def blend_weights(tile: Tile, hr_shape: tuple[int, int], blend: int) -> np.ndarray:
    """(keep rows, keep columns) float32 weights of ``tile``; over all tiles they sum to one."""
    wy = _ramp(tile.keep[0], tile.core[0], hr_shape[0], blend)
    wx = _ramp(tile.keep[1], tile.core[1], hr_shape[1], blend)
    return np.outer(wy, wx).astype(np.float32)


def default_halo(method: str, deg: Degradation) -> int:
    """HR pixels of context a tile needs beyond what it keeps (a multiple of the scale): the PSF's
    reach plus the guided prior's window radius for ``fast`` and ``msfn`` (whose network adds
    little: x8, CAVE scenes mirrored to 1024^2, 336- and 512-pixel tiles, 4 LR pixels of halo:
    the tiled result within 2.6e-4 of the whole frame's everywhere, PSNR equal to 1e-4 dB; 2 LR
    pixels: up to 6e-3, +0.0009 dB), and the CNN's receptive field for ``unsupervised``/``blind``."""
    from .solvers.guided import default_radius

    s = deg.scale
    psf_reach = math.ceil(deg.kernel.shape[0] / s) + 1
    lr_pixels = psf_reach + default_radius(s)
    field = get_method(method).receptive_field  # e.g. a CNN's (HR pixels)
    if field:
        lr_pixels = max(lr_pixels, math.ceil(field / s) + psf_reach)
    return lr_pixels * s


def _hr_layout(hr) -> tuple[int, int, int]:
    """(Y, X, k) of an HR array given as (Y, X, k) or (Y, X), without reading it."""
    shape = tuple(np.shape(hr))
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if len(shape) != 3:
        raise InputError(f"HR image: expected (Y, X, k) like an RGB layer, got shape {shape}.")
    return shape


def _has_data(hr_t, lr_t, valid_t, lr_nodata, hr_clip: float | None) -> bool:
    """Whether a window has anything to fuse: some usable HR pixel (finite and under the clipping
    level, the scene's for a float image: :func:`~.observations.saturation_mask`) and some valid LR
    pixel. A flight line's nodata wedge or an over-exposed region can cover whole tiles."""
    from .observations import nodata_mask, saturation_mask
    from .validation import hr_to_channels_first

    hr = np.asarray(hr_t)
    unit = hr / np.iinfo(hr.dtype).max if np.issubdtype(hr.dtype, np.integer) else hr  # as prepare_inputs scales
    lr_ok = nodata_mask(np.asarray(lr_t, dtype=np.float64), lr_nodata)
    if valid_t is not None:
        lr_ok &= np.asarray(valid_t, bool)
    return bool(lr_ok.any() and saturation_mask(hr_to_channels_first(unit), hr.dtype, hr_clip).any())


def _central_crop(Y: int, X: int, s: int, side: int) -> tuple[slice, slice]:
    h, w = min(Y, side) // s * s, min(X, side) // s * s
    r0, c0 = (Y - h) // 2 // s * s, (X - w) // 2 // s * s
    return slice(r0, r0 + h), slice(c0, c0 + w)


def _lr_slice(lr, rows: slice, cols: slice, s: int) -> np.ndarray:
    return np.asarray(lr[:, rows.start // s:rows.stop // s, cols.start // s:cols.stop // s])


def _hr_slice(hr, rows: slice, cols: slice) -> np.ndarray:
    return np.asarray(hr[rows, cols])


def scene_context(hr, lr, deg: Degradation, method: str, options: dict, seed: int, device: str,
                  lr_nodata, lr_valid, crop: int = SCENE_CROP, tiles: list[Tile] | None = None):
    """Generator: what every tile shares. Returns ``(degradation, tile method, tile options, scene,
    notes, extras)``: the degradation with the encoding, gains and offsets resolved on the central
    crop (or estimated: a method's ``scene_estimate``, e.g. ``blind``, which names the method the
    tiles run), and the :class:`~.methods.base.SceneContext` the tile method's ``scene_setup``
    computes (e.g. the subspace of the whole LR cube, the prior's choice and, given ``tiles``, the
    guided prior's regularisation scale, streamed over the scene)."""
    from .frame import prepare_inputs
    from .observations import nodata_mask

    s = deg.scale
    Y, X, _ = _hr_layout(hr)
    rows, cols = _central_crop(Y, X, s, crop)
    hr_c, lr_c = _hr_slice(hr, rows, cols), _lr_slice(lr, rows, cols, s)
    valid_c = None if lr_valid is None else np.asarray(lr_valid)[rows.start // s:rows.stop // s,
                                                                cols.start // s:cols.stop // s]
    notes = [f"scene context from the central {rows.stop - rows.start}x{cols.stop - cols.start} HR pixels "
             "(encoding, gains, prior choice) and the whole LR cube (subspace)"]

    def crop_inputs_for(name: str):
        def crop_inputs(degradation: Degradation, scene: SceneContext | None = None):
            inputs = prepare_inputs(hr_c, lr_c, degradation, name, seed, device, lr_nodata, valid_c)
            inputs.scene = scene
            return inputs
        return crop_inputs

    def full_lr():
        """The whole LR cube (float64, non-finite values 0) and its valid pixels (None: all)."""
        cube = np.asarray(lr, dtype=np.float64)
        valid = nodata_mask(cube, lr_nodata)
        if lr_valid is not None:
            valid &= np.asarray(lr_valid, bool)
        return np.where(np.isfinite(cube), cube, 0.0), (None if valid.all() else valid)

    info = get_method(method)
    if info.scene_estimate is not None:
        request = SceneRequest(hr, lr, deg, dict(options), crop_inputs_for(method), full_lr, None, s)
        used, tile_method, tile_options, est_notes, extras = yield from info.scene_estimate(request)
        notes += est_notes
    else:
        used = crop_inputs_for(method)(deg).degradation  # encoding, gains and offsets resolved on the crop
        tile_method, tile_options, extras = method, dict(options), {}
        yield Progress(1, 2, message="scene context")
    scene = SceneContext()
    if tiles is not None and np.issubdtype(np.dtype(getattr(hr, "dtype", np.float32)), np.floating):
        scene = SceneContext(hr_clip=scene_clip_level(hr, tiles))  # else each tile would take its own maximum
    setup = get_method(tile_method).scene_setup
    if setup is not None:
        def guide_variance(radius: int, refit_radius: int | None = None, hr_clip=scene.hr_clip):
            return scene_guide_variance(hr, lr, used, tile_method, seed, device, lr_nodata, lr_valid, tiles, radius,
                                        refit_radius, hr_clip)

        request = SceneRequest(hr, lr, used, tile_options, crop_inputs_for(tile_method), full_lr,
                               guide_variance if tiles is not None else None, s)
        scene, setup_notes = yield from setup(request, scene)
        notes += setup_notes
    return used, tile_method, tile_options, scene, notes, extras


def scene_clip_level(hr, tiles: list[Tile]) -> float:
    """A float HR image's clipping level, as :func:`~.observations.saturation_mask` finds it for
    the whole frame (a plateau at the scene's maximum), from the tiles' cores read one by one."""
    from .observations import float_clip_level

    top, at_top, pixels = -np.inf, 0, 0
    for t in tiles:
        core = np.asarray(_hr_slice(hr, *t.core), dtype=np.float32)
        vals = np.where(np.isfinite(core), core, -np.inf)
        pixels += vals.shape[0] * vals.shape[1]
        m = float(vals.max())
        if m > top:
            top, at_top = m, 0
        if m == top:
            at_top += int(np.count_nonzero(vals >= top))
    return float_clip_level(top, at_top, pixels)


def scene_guide_variance(hr, lr, deg: Degradation, method: str, seed: int, device: str, lr_nodata, lr_valid,
                         tiles: list[Tile], radius: int, refit_radius: int | None = None,
                         hr_clip: float | None = None):
    """Generator: the scene's mean local variance of ``D y`` (the HR image seen on the LR grid),
    which the guided prior's ``eps`` is relative to (:class:`~.solvers.guided.GuidedFilter`), and,
    given ``refit_radius``, that of the HR image itself in the refits' windows (else None). Each
    tile's own would regularise it differently from the whole frame (x8, balloons mirrored to
    1024: a 512-pixel tile's is 27 % lower, and its prior 0.04 dB higher, than in the whole
    frame). Streamed tile by tile, each core with enough context for the PSF and the windows;
    masks are ignored here (frames without masks get the whole frame's value, up to its edges)."""
    from .frame import prepare_inputs
    from .solvers.guided import local_variance

    s = deg.scale
    Y, X, _ = _hr_layout(hr)
    margin = (math.ceil(deg.kernel.shape[0] / s) + radius + 1 + math.ceil((refit_radius or 0) / s)) * s
    total, count, hr_total = 0.0, 0, 0.0
    for t in tiles:
        yield Progress(t.index, len(tiles), message=f"scene guide variance {t.index + 1}/{len(tiles)}")
        rows, cols = (slice(max(0, c.start - margin), min(n, c.stop + margin)) for c, n in zip(t.core, (Y, X)))
        valid = None if lr_valid is None else np.asarray(lr_valid)[rows.start // s:rows.stop // s,
                                                                   cols.start // s:cols.stop // s]
        hr_w, lr_w = _hr_slice(hr, rows, cols), _lr_slice(lr, rows, cols, s)
        if not _has_data(hr_w, lr_w, valid, lr_nodata, hr_clip):
            continue
        inputs = prepare_inputs(hr_w, lr_w, deg, method, seed, device, lr_nodata, valid, check_range=False,
                                hr_clip=hr_clip)
        var = local_variance(deg.spatial(inputs.hr.astype(np.float64)), radius)
        core = var[(t.core[0].start - rows.start) // s:(t.core[0].stop - rows.start) // s,
                   (t.core[1].start - cols.start) // s:(t.core[1].stop - cols.start) // s]
        total, count = total + float(core.sum()), count + core.size
        if refit_radius:
            hr_var = local_variance(inputs.hr.astype(np.float64), refit_radius)
            hr_total += float(hr_var[t.core[0].start - rows.start:t.core[0].stop - rows.start,
                                     t.core[1].start - cols.start:t.core[1].stop - cols.start].sum())
    if not count:
        return None, None
    return total / count, (hr_total / (count * s * s) if refit_radius else None)


PER_TILE = 100  # progress steps per tile


@dataclass(frozen=True)
class _TileJob:
    """How a tile's inputs are cut from the scene: its windows, its mask, what of it is kept."""

    hr: object
    lr: object
    lr_valid: object
    scale: int
    checked: set
    solve_halo: int
    hr_clip: float | None
    lr_nodata: float | None

    def inputs(self, t: Tile):
        """``(hr, lr, valid, tile keys)`` of tile ``t``, or None when it has nothing to fuse.
        The tile keys join the scene context for this tile only."""
        rows, cols = t.window
        s = self.scale
        hr_t, lr_t = _hr_slice(self.hr, rows, cols), _lr_slice(self.lr, rows, cols, s)
        valid_t = None if self.lr_valid is None else np.asarray(self.lr_valid)[t.lr_window(s)]
        if not _has_data(hr_t, lr_t, valid_t, self.lr_nodata, self.hr_clip):
            return None
        inner = tuple(slice(k.start - w.start, k.stop - w.start) for k, w in zip(t.keep, t.window))
        # msfn's consistency step (fast's solve) needs only fast's halo around what is kept
        solve = tuple(slice(max(0, k.start - self.solve_halo), min(w.stop - w.start, k.stop + self.solve_halo))
                      for k, w in zip(inner, t.window))
        return hr_t, lr_t, valid_t, {"skip_fit": t.index not in self.checked, "keep": inner, "solve_region": solve}


def _tile_run(shared: dict, hr_t, lr_t, valid_t, keys: dict):
    """The whole-frame engine on one tile's window, the scene context shared: a generator."""
    from .frame import fuse_frame_iter

    return fuse_frame_iter(hr_t, lr_t, shared["degradation"], shared["method"], shared["seed"], shared["device"],
                           shared["lr_nodata"], "hr", valid_t, scene=shared["scene"].for_tile(**keys),
                           **shared["options"])


def _kept(res, keys: dict):
    """What a tile's result contributes: its kept part, and its fit and warnings."""
    return res.cube[(slice(None),) + keys["keep"]], {"fit": res.settings.get("fit", {}),
                                                     "warnings": list(res.settings.get("warnings", [])),
                                                     "device": res.settings.get("device")}


def _empty(t: Tile, C: int, output, empty: list) -> None:
    output.add(t.index, t.keep, np.zeros((C,) + tuple(k.stop - k.start for k in t.keep), np.float32))  # nothing: 0
    empty.append(t.index)


def _tiles_here(tiles, job: _TileJob, shared: dict, take, empty: list, output, C: int):
    """Generator: the tiles fused one after the other in this process (memory holds one tile)."""
    total = PER_TILE * len(tiles)
    for t in tiles:
        got = job.inputs(t)
        if got is None:
            _empty(t, C, output, empty)
            continue
        *arrays, keys = got
        res = yield from relayed(_tile_run(shared, *arrays, keys), lambda p, t=t: Progress(
            t.index * PER_TILE + int(p.step / max(p.total, 1) * (PER_TILE - 1)), total, p.loss,
            f"tile {t.index + 1}/{len(tiles)}: {p.message}"))
        take(t, *_kept(res, keys))
        del res, got, arrays  # before the next tile is read


def fuse_tile_task(shared: dict, hr_t, lr_t, valid_t, keys: dict):
    """One tile on a dask worker: one thread for torch, the FFTs and BLAS (a worker per core), the
    same steps as in the caller's process (:func:`_tiles_here`)."""
    from .heap import reused_heap
    from .parallel import limited

    with limited(1, torch_too=get_method(shared["method"]).uses_torch), reused_heap(trim=False):
        return _kept(run_to_end(_tile_run(shared, hr_t, lr_t, valid_t, keys)), keys)


IN_FLIGHT_PER_WORKER = 2  # tiles sent ahead per worker: workers never wait, memory holds few windows


def _tiles_on_cluster(client, tiles, job: _TileJob, shared: dict, take, empty: list, output, C: int):
    """Generator: the tiles as tasks on a dask.distributed ``client``, the scene context sent to
    every worker once; results are blended and written here (one writer), in the order they
    finish, a progress report per finished tile. Closing it cancels the tiles not yet done."""
    import uuid

    from distributed import as_completed

    total = PER_TILE * len(tiles)
    [context] = client.scatter([shared], broadcast=True, hash=False)
    run = uuid.uuid4().hex[:8]  # fresh keys: a client keeps earlier results by key
    todo, pending = iter(tiles), {}
    window = IN_FLIGHT_PER_WORKER * _worker_count(client)
    done = 0
    queue = as_completed()

    def submit_next() -> bool:
        nonlocal done
        for t in todo:
            got = job.inputs(t)
            if got is None:
                _empty(t, C, output, empty)
                done += 1
                continue
            *arrays, keys = got
            fut = client.submit(fuse_tile_task, context, *arrays, keys, key=f"hsisr-tile-{run}-{t.index}", pure=False)
            pending[fut] = t
            queue.add(fut)
            return True
        return False

    try:
        while len(pending) < window and submit_next():
            pass
        for fut in queue:
            t = pending.pop(fut)
            take(t, *fut.result())  # a tile's error is raised here, as in this process
            done += 1
            fut.release()
            submit_next()
            yield Progress(done * PER_TILE, total, message=f"tile {t.index + 1}/{len(tiles)} done ({done} of "
                                                           f"{len(tiles)}) on the cluster")
    finally:
        if pending:  # stopped or failed: what is still queued or running is dropped
            client.cancel(list(pending))
        client.cancel([context])


def _worker_count(client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))



@blas_pinned  # the scene passes too: the same bits at any BLAS thread count (core/parallel.py)
def fuse_tiled_iter(hr_image, lr_cube, degradation: Degradation, method: str = "fast", tile: int = 512,
                    halo: int | None = None, seed: int = 0, device: str = "auto", out=None,
                    lr_nodata: float | None = None, lr_valid=None, *, provenance: dict | None = None, client=None,
                    **options):
    """Generator form of :func:`fuse_tiled`: yields Progress (per tile), returns a FusionResult
    whose ``cube`` is a numpy array, or the array at ``out`` read lazily (Zarr level 0, TIFF).
    ``provenance`` (input files and their metadata) joins the settings stored with the result.
    ``client``: a ``distributed.Client`` whose workers fuse the tiles (the scene context is sent
    to each once; this process reads the windows, blends and writes the results), or a Future of
    one (:func:`.parallel.dask_client_soon`: the cluster starts while the scene context is computed)."""
    from .frame import versions
    from .outputs import array_files
    from .tiled_output import check_out

    info = get_method(method)
    opts = info.parse_options(options)
    inputs = array_files(hr_image) + array_files(lr_cube) + [p for k in ("hr_file", "lr_file")
                                                             if (p := (provenance or {}).get(k))]
    check_out(out, inputs)  # before any work: out replaces no input and nothing that is not a result of ours
    if info.whole_frame_only:
        raise InputError(info.whole_frame_only)
    if not isinstance(degradation, Degradation):
        raise InputError("degradation must be a napari_hsisr.Degradation (scale, psf, srf, wavelengths).")
    s = degradation.scale
    Y, X, _ = _hr_layout(hr_image)
    C = int(np.shape(lr_cube)[0])
    degradation.check_shapes((Y, X), tuple(np.shape(lr_cube))[-2:])
    tile = int(tile)
    if tile < 4 * s:
        raise InputError(f"tile must be at least 4 LR pixels ({4 * s} HR pixels at scale {s}), got {tile}.")
    tile = tile // s * s
    halo = default_halo(method, degradation) if halo is None else int(halo) // s * s
    blend = max(s, min(halo // 2, tile // 2) // s * s)  # ramps of neighbours must not cross
    tiles = plan_tiles((Y, X), s, tile, halo, blend)
    start = time.perf_counter()
    used, tile_method, tile_opts, scene, notes, extras = yield from scene_context(
        hr_image, lr_cube, degradation, method, opts, seed, device, lr_nodata, lr_valid, tiles=tiles)
    checked = set(np.unique(np.linspace(0, len(tiles) - 1, min(len(tiles), FIT_TILES)).round().astype(int)).tolist())
    job = _TileJob(hr_image, lr_cube, lr_valid, s, checked, default_halo("fast", used), scene.hr_clip, lr_nodata)
    shared = {"degradation": used, "method": tile_method, "seed": seed, "device": device, "lr_nodata": lr_nodata,
              "scene": scene, "options": tile_opts}
    reports, empty = {}, []  # per tile index: its fit and warnings, combined in tile order at the end
    output = make_output((C, Y, X), out, [t.keep for t in tiles], inputs)  # from here on discarded if stopped
    try:
        def take(t, kept, report):
            output.add(t.index, t.keep, kept * blend_weights(t, (Y, X), blend))
            reports[t.index] = report

        client = ready_client(client)
        if client is None:
            runs = _tiles_here(tiles, job, shared, take, empty, output, C)
        else:
            runs = _tiles_on_cluster(client, tiles, job, shared, take, empty, output, C)
        yield from runs
        fits = [reports[i]["fit"] for i in sorted(reports) if i in checked]
        warnings: dict = {}
        for i in sorted(reports):
            for w in reports[i]["warnings"]:
                warnings[w] = warnings.get(w, 0) + 1
        if empty:
            notes.append(f"{len(empty)} of {len(tiles)} tiles had no valid HR or LR pixel (nodata): their result is 0")
        settings = {
            "method": method, "options": opts, "seed": seed, "device": _devices(reports, device),
            "degradation": degradation.settings(), "hr_shape": [Y, X], "lr_shape": list(np.shape(lr_cube)),
            "tiling": {"tile": tile, "halo": halo, "blend": blend, "tiles": len(tiles), "tile_method": tile_method,
                       "scene_crop": SCENE_CROP, "tiles_without_data": len(empty),
                       **({"workers": _worker_count(client)} if client is not None else {})},
            "fit": {**_combine_fits(fits), "tiles_checked": len(checked)}, "estimation_notes": notes,
            "versions": versions(),
            "seconds": round(time.perf_counter() - start, 3), "grid": {"frame": "hr"},
        }
        if info.scene_estimate is not None or used is not degradation:
            settings["estimated_degradation"] = used.settings()
        if warnings:
            settings["warnings"] = [w if n == len(tiles) else f"{w} ({n} of {len(tiles)} tiles)"
                                    for w, n in warnings.items()]
        settings.update(provenance or {})
        cube = output.commit({"wavelengths": _wavelengths(degradation, C), "settings": _jsonable(settings)})
    except BaseException:
        output.discard()  # stopped (GeneratorExit), failed or interrupted: nothing at `out`
        raise
    yield Progress(PER_TILE * len(tiles), PER_TILE * len(tiles), message=f"done: {len(tiles)} tiles")
    return FusionResult(cube, settings, {**extras, "degradation_object": used})


def _devices(reports: dict, asked: str) -> str:
    """Where the tiles ran (each resolves ``device`` itself: a cluster's workers may have a GPU that
    this process lacks): one device, or several joined, or ``asked`` when no tile ran."""
    seen = sorted({r["device"] for r in reports.values() if r.get("device")})
    return ", ".join(seen) if seen else asked


def _wavelengths(deg: Degradation, C: int):
    wl = deg.wavelengths
    return None if wl is None else [float(v) for v in np.asarray(wl).ravel()][:C]


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _combine_fits(fits: list[dict]) -> dict:
    """The tiles' relative residuals combined into the scene's: the residual energy of all tiles
    over their observations' energy (what the whole frame's figure is), from each tile's relative
    residual, observed RMS and pixel count. An area-weighted mean of the relative figures would
    let a dark tile weigh as much as a bright one (flowers' camera RGB: 13.8 % against the whole
    frame's 10.6 % for the same cube)."""
    out = {}
    for side in ("lr", "hr"):
        parts = [f[side] for f in fits if f.get(side)]
        if parts:
            energy = [p["rms_observed"] ** 2 * p["pixels"] for p in parts]
            relative = math.sqrt(sum(p["relative"] ** 2 * e for p, e in zip(parts, energy)) / (sum(energy) or 1.0))
            out[side] = {"relative": round(relative, 5), "worst_tile": round(max(p["relative"] for p in parts), 5)}
    return out


def fuse_tiled(hr_image, lr_cube, degradation: Degradation, method: str = "fast", tile: int = 512,
               halo: int | None = None, seed: int = 0, device: str = "auto", out=None, progress=None,
               lr_nodata: float | None = None, lr_valid=None, **options) -> FusionResult:
    """:func:`~.api.fuse` tile by tile (see the module docstring). ``tile``: HR pixels a side
    (rounded to the scale); ``halo``: HR pixels of context (default from the PSF and the method);
    ``out``: a ``.zarr`` (OME-Zarr, with lower-resolution levels) or ``.tif`` (tiled OME BigTIFF)
    path to write the result to instead of memory."""
    return run_to_end(fuse_tiled_iter(hr_image, lr_cube, degradation, method, tile, halo, seed, device, out,
                                      lr_nodata, lr_valid, **options), progress)


def warm_worker(method: str = "fast") -> None:
    """Import what a tile task of ``method`` needs (torch alone takes seconds, and only the methods
    that use it import it), so that a fresh worker does it while the caller still reads the pair
    and computes the scene context, not on its first tile."""
    from . import frame  # noqa: F401

    if get_method(method).uses_torch:
        import torch  # noqa: F401
