"""hsisr: hyperspectral super-resolution from the command line. Fuse a high-resolution RGB or
multispectral image with a low-resolution hyperspectral cube of the same scene (fuse), simulate
pairs (simulate), measure results (evaluate), train network weights (train).

Errors are one line on stderr with exit code 2 (bad input) or 1 (unexpected: run with --debug for
the traceback); nothing is written on failure."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .core.errors import InputError
from .core.srf import NIKON_D700_CAVE


def _add_degradation_args(p: argparse.ArgumentParser, scale_required: bool = True) -> None:
    g = p.add_argument_group("degradation")
    g.add_argument("--scale", type=int, required=scale_required,
                   help="HR/LR size ratio, integer >= 2" + ("" if scale_required else
                                                           " (default: from the two sizes; an inexact ratio "
                                                           "is fixed by cropping or resampling the HR image)"))
    g.add_argument("--psf", help="'gaussian', 'box' or a kernel file (.npy/.csv/.tif) (default: gaussian, or what "
                                 "the LR file records)")
    g.add_argument("--psf-sigma", type=float, help="Gaussian sigma in HR pixels (default: scale/4)")
    g.add_argument("--psf-sigma2", type=float, help="second sigma of an anisotropic Gaussian, HR pixels")
    g.add_argument("--psf-angle", type=float, help="rotation of the major axis, degrees (default: 0)")
    g.add_argument("--psf-size", type=int, help="kernel support K >= scale, HR pixels (default: scale)")
    g.add_argument("--boundary", choices=["reflect", "symmetric", "wrap", "zero"], help="default: reflect")
    g.add_argument("--srf", help="spectral response preset name or CSV/NPY file, see 'hsisr srfs' (default: fuse "
                                 "estimates it from the pair, or takes what the LR file records for a simulated HR "
                                 f"image; simulate uses {NIKON_D700_CAVE})")
    g.add_argument("--wavelengths", help="band centres as start:stop:step in nm, e.g. 400:700:10 (default: from "
                                         "the file)")
    g.add_argument("--hr-encoding", default="auto",
                   help="how the HR image encodes light: auto (8/16-bit images sRGB, float linear), linear, srgb, "
                        "gamma:<g>")
    g.add_argument("--shift", help="LR sampling offset from the block centre, 'dy,dx' in HR pixels (misregistration); "
                                   "write a negative first value as --shift=-1.5,2")


DEFAULT_SRF = None  # estimated from the pair: a camera's response is rarely the one a default would guess
SIMULATION_SRF = NIKON_D700_CAVE  # hsisr simulate's default camera


def _degradation(args, wavelengths=None, n_bands=None, recorded: dict | None = None, hr_dtype=None,
                 default_srf=DEFAULT_SRF):
    """The degradation the flags describe (:class:`.core.degradation.DegradationSpec`); when none
    of them is given and the LR file records the degradation it was simulated with, that one.
    Without ``--srf`` fusion estimates the response from the pair; simulation and training, which
    render through one, take ``default_srf``."""
    from .core.degradation import DegradationSpec

    spec = DegradationSpec(
        scale=args.scale, psf=args.psf, psf_sigma=args.psf_sigma, psf_size=args.psf_size,
        psf_sigma2=args.psf_sigma2, psf_angle=args.psf_angle, boundary=args.boundary, srf=args.srf,
        wavelengths=args.wavelengths or wavelengths, n_bands=n_bands, shift=getattr(args, "shift", None),
        hr_encoding=getattr(args, "hr_encoding", "auto"), flags=True)
    deg, note = spec.build(recorded, hr_dtype, default_srf)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return deg


def _fuse_options(args) -> dict:
    """The method's options, ``safe=False`` for ``--keep-raw`` and ``hr_nodata``."""
    out = _parse_options(args.opt)
    if getattr(args, "keep_raw", False):
        out["safe"] = False
    if getattr(args, "hr_nodata", None) is not None:
        out["hr_nodata"] = args.hr_nodata
    return out


def _parse_options(pairs: list[str]) -> dict:
    """``--opt key=value`` pairs as text: the method's options parse and check them."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--opt expects key=value, got {pair!r}.")
        out[key.strip()] = value
    return out


PROGRESS_LINE_EVERY_S = 10.0


def _run_with_progress(gen, label: str):
    """Drive a fusion generator with a tqdm bar (a terminal) or a progress line every 10 s (logs,
    scripts, notebooks); Ctrl-C closes it and writes nothing."""
    from tqdm import tqdm

    from .core.methods.base import run_to_end

    tty = sys.stderr.isatty()
    bar = tqdm(total=None, desc=label, unit="step", file=sys.stderr, leave=False, disable=not tty)
    start = last = time.perf_counter()

    def show(p):
        nonlocal last
        now = time.perf_counter()
        if not tty and now - last >= PROGRESS_LINE_EVERY_S:
            last = now
            print(f"{label}: step {p.step}/{p.total} after {now - start:.0f} s  {p.message}", file=sys.stderr,
                  flush=True)
        bar.total = p.total
        bar.n = p.step
        bar.set_postfix_str(p.message + (f" loss={p.loss:.3g}" if p.loss is not None else ""))
        bar.refresh()

    try:
        return run_to_end(gen, show)  # Ctrl-C closes the generator: nothing is written
    finally:
        bar.close()


# units as `hsisr evaluate --help` gives them: RMSE is on the 0-255 scale of 8-bit data
METRIC_HEADS = {"psnr": "psnr dB", "psnr_bandwise": "band psnr dB", "sam": "sam deg", "ergas": "ergas",
                "ssim": "ssim", "rmse": "rmse 0-255", "seconds": "seconds"}


def _print_metrics(rows: dict[str, dict]) -> None:
    keys = list(METRIC_HEADS)
    head = f"{'method':<10}" + "".join(f"{METRIC_HEADS[k]:>14}" for k in keys)
    print(head)
    for name, m in rows.items():
        print(f"{name:<10}" + "".join(f"{m[k]:>14.4f}" if k in m else f"{'-':>14}" for k in keys))


# ------------------------------------------------------------------ commands
def cmd_methods(args) -> int:
    from .core.methods import list_methods

    infos = list_methods()
    width = max(len(i.name) for i in infos)
    for info in infos:
        print(f"{info.name:<{width}}  {info.summary}")
        if info.options:
            cells = [f"--opt {o.name}={o.default}" for o in info.options]
            col = max(len(c) for c in cells)
            for cell, o in zip(cells, info.options):
                print(f"    {cell:<{col}}  {o.help}{o.range_text()}")
    return 0


def cmd_srfs(args) -> int:
    from .core.srf import ALIASES as _ALIASES, list_presets

    aliases: dict = {}
    for alias, name in _ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    for name in list_presets():
        print(name + (f"  (also: {', '.join(aliases[name])})" if name in aliases else ""))
    return 0


def cmd_demo(args) -> int:
    from .core.api import evaluate, fuse_iter
    from .core.io import check_output, write_tiff
    from .core.sample import sample_pair

    check_output(args.out, fused=True)
    pair = sample_pair()
    print(f"sample: HR RGB {pair.hr.shape}, LR-HS {pair.lr.shape}, reference {pair.reference.shape}, "
          f"scale {pair.degradation.scale}")
    rows, best = {}, None
    for method in dict.fromkeys(["bicubic", "fast", args.method]):  # fast: the safe baseline to compare with
        gen = fuse_iter(pair.hr, pair.lr, pair.degradation, method=method, seed=args.seed, device=args.device)
        start = time.perf_counter()
        result = _run_with_progress(gen, method)
        rows[method] = {**evaluate(result.cube, pair.reference, scale=pair.degradation.scale),
                        "seconds": time.perf_counter() - start}
        if method == args.method:
            best = result
    _print_metrics(rows)
    loss = rows["fast"]["psnr"] - rows[args.method]["psnr"]
    if loss > 0.1:
        print(f"note: {args.method} is {loss:.2f} dB below fast on this sample; the written cube is {args.method}'s. "
              "A method's gain depends on the scene: compare with fast on data like yours (docs/benchmarks.md).")
    path = write_tiff(args.out, best.cube, wavelengths=pair.wavelengths, settings=best.settings,
                      format=args.format or "imagej", dtype=args.dtype)
    print(f"wrote {path}")
    return 0


def cmd_simulate(args) -> int:
    from .core.io import check_output, read_cube, write_image, write_tiff
    from .core.simulate import simulate

    for flag, out in (("--out-hr", args.out_hr), ("--out-lr", args.out_lr)):
        check_output(out, inputs=(args.reference,), flag=flag)
    if Path(args.out_hr).resolve() == Path(args.out_lr).resolve():
        raise InputError("--out-hr and --out-lr are the same file; give two names.")
    ref = read_cube(args.reference, variable=args.variable)
    deg = _degradation(args, ref.wavelengths, len(ref.data), default_srf=SIMULATION_SRF)
    cube = _unit_scaled(ref.data, f"{args.reference}")
    hr, lr = simulate(cube, deg, noise_snr_db=args.snr, hr_snr_db=args.hr_snr, seed=args.seed)
    settings = {"simulated_from": str(args.reference), "degradation": deg.settings(), "snr_db": args.snr,
                "hr_snr_db": args.hr_snr, "seed": args.seed}
    write_image(args.out_hr, hr, settings=settings)  # an RGB/MSI image (Y, X, k), not a stack of grey pages
    write_tiff(args.out_lr, lr, wavelengths=deg.wavelengths, settings=settings)
    print(f"wrote {args.out_hr} {hr.shape} and {args.out_lr} {lr.shape}")
    return 0


def cmd_fuse(args) -> int:
    from contextlib import nullcontext
    from functools import partial

    from ._cli_inputs import input_provenance, integrate_over_bands, read_pair
    from .core.api import fuse_iter
    from .core.fit_report import describe
    from .core.io import TIFF_SUFFIXES, check_output, write_tiff
    from .core.parallel import dask_client_soon
    from .core.tiling import warm_worker

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}.")
    if (args.workers or args.scheduler) and not args.tile:
        args.tile = "auto"  # the cluster's workers fuse tiles
    zarr_out = str(args.out).lower().endswith(".zarr")
    check_output(args.out, inputs=(args.hr, args.lr), suffixes=TIFF_SUFFIXES + ((".zarr",) if args.tile else ()),
                 fused=True)
    if zarr_out and not args.tile:
        args.tile = "auto"  # a Zarr result is written tile by tile
    if args.tile is None and _whole_frame_too_big(args):
        args.tile = "auto"  # not a refusal: tiles of a size that fits, read and written tile by tile
    lr, hr, hr_file, match = read_pair(args)
    integrate_over_bands(args, lr)  # a band table with FWHM: the response over each band's Gaussian
    recorded = (lr.metadata.get("settings") or {}).get("degradation")
    deg = _degradation(args, lr.wavelengths, np.shape(lr.data)[0], recorded if isinstance(recorded, dict) else None,
                       hr.dtype)
    tile = None if args.tile is None else (args.tile if args.tile == "auto" else _tile_size(args.tile))
    streamed = zarr_out or _streamed_tiff(args, tile, np.shape(hr), np.shape(lr.data)[0])
    provenance = input_provenance(args, lr, hr_file, match)  # stored with a streamed result too
    # started in the background: the scene context is computed while the workers start
    cluster = dask_client_soon(args.workers, args.scheduler, warm=partial(warm_worker, args.method)) \
        if args.workers or args.scheduler \
        else nullcontext()
    with cluster as client:
        gen = fuse_iter(hr, lr.data, deg, args.method, args.seed, args.device, None, args.grid, lr.mask, tile=tile,
                        out=args.out if streamed else None, client=client, provenance=provenance,
                        **_fuse_options(args))  # --lr-nodata: in lr.mask
        result = _run_with_progress(gen, args.method)
    result.settings.update(provenance)
    for warning in result.settings.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    for side in (result.settings.get("input_scaling") or {}).values():  # e.g. 12-bit data stored in uint16
        if isinstance(side, dict) and side.get("note"):
            print(f"note: {side['note']}", file=sys.stderr)
    fit = result.settings.get("fit", {})
    if describe(fit):
        print("fit (relative residual): " + describe(fit), file=sys.stderr)
    for note in result.settings.get("estimation_notes", []):
        print(f"estimated: {note}", file=sys.stderr)
    tiling = result.settings.get("tiling")
    if tiling:
        print(f"tiled: {tiling['tiles']} tiles of about {tiling['tile']} HR pixels (halo {tiling['halo']})",
              file=sys.stderr)
    if not streamed:  # a Zarr or tiled-TIFF result was written tile by tile
        geo = provenance.get("output_geo")
        write_tiff(args.out, np.asarray(result.cube), settings=result.settings, format=_output_format(args, geo),
                   dtype=args.dtype, wavelengths=lr.wavelengths if lr.wavelengths is not None else deg.wavelengths,
                   inputs=(args.hr, args.lr), geo=geo)
    print(f"wrote {args.out} {tuple(result.cube.shape)} in {result.settings['seconds']:.2f} s")
    return 0


def _whole_frame_too_big(args) -> bool:
    """Whether fusing the whole frame would not fit in memory (shapes read from the files' headers
    where the format allows); a file that cannot be opened so is left to the usual reading."""
    from .core.georef import paired_shape
    from .core.io import open_cube_lazy, open_image_lazy
    from .core.memory import estimate_bytes, fits

    try:
        lr_shape = np.shape(open_cube_lazy(args.lr).data)
        hr_shape = paired_shape(args.hr, args.lr, lr_shape[1:], args.scale, getattr(args, "lr_crs", None)) \
            or np.shape(open_image_lazy(args.hr))[:2]  # georeferenced: the cube's extent, not the HR tile's
        bands = lr_shape[0]
    except InputError:
        return False
    if fits(args.method, tuple(hr_shape), bands):
        return False
    need = estimate_bytes(args.method, hr_shape[0] * hr_shape[1], bands) / 2**30
    print(f"note: the whole {hr_shape[0]}x{hr_shape[1]} frame needs about {need:.1f} GB: fused in tiles (--tile to "
          "choose their size)", file=sys.stderr)
    return True


def _output_format(args, geo) -> str:
    """--format, or by default: a GeoTIFF for georeferenced inputs (a GIS places it), else ImageJ."""
    if args.format:
        return args.format
    if geo and not str(args.out).lower().endswith(".ome.tif"):
        print("note: georeferenced inputs: the result is a GeoTIFF on the output grid (--format imagej for an ImageJ "
              "hyperstack)", file=sys.stderr)
        return "geotiff"
    return "imagej"


def _streamed_tiff(args, tile, hr_shape, bands: int) -> bool:
    """Whether a tiled run writes its TIFF tile by tile (a tiled OME BigTIFF, float32) rather than
    holding the whole result: when tiles run (``auto``: when the whole frame does not fit) and
    float32 is asked (uint16 is written from the whole cube)."""
    from .core.memory import fits

    if tile is None or args.dtype != "float32":
        return False
    if tile == "auto" and fits(args.method, tuple(hr_shape[:2]), bands):  # the HR image is (Y, X, k)
        return False
    if args.format != "ome":
        print("note: a tiled result is written tile by tile as a tiled OME BigTIFF (wavelengths, settings and "
              f"georeferencing kept); --format {args.format or 'imagej'} does not apply", file=sys.stderr)
    return True


def cmd_batch(args) -> int:
    from tqdm import tqdm

    from .core.batch import fuse_many, read_manifest, summary_table

    rows = read_manifest(args.manifest)  # errors in the manifest before any cluster starts
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}.")
    bar = tqdm(total=len(rows), desc="pairs", unit="pair", file=sys.stderr, disable=not sys.stderr.isatty())
    finished = []

    def progress(done, total, outcome):
        bar.update(1)
        finished.append(outcome)
        if not sys.stderr.isatty():
            line = f"pairs: {done}/{total}  {outcome.name}: {outcome.status} {_in_shell_words(outcome.message)}"
            print(line.rstrip(), file=sys.stderr, flush=True)

    try:
        outcomes = fuse_many(rows, args.out, scheduler=args.scheduler, workers=args.workers, seed=args.seed,
                             device=args.device, progress=progress)
    except Exception as exc:
        if not _while_interrupted(exc):
            raise
        return _batch_stopped(finished)
    except KeyboardInterrupt:
        return _batch_stopped(finished)
    finally:
        bar.close()
    for outcome in outcomes:  # a pair's error from the core, in the shell's words
        outcome.message = _in_shell_words(outcome.message)
    print(summary_table(outcomes))
    failed = [o for o in outcomes if o.status == "failed"]
    counts = {k: sum(o.status == k for o in outcomes) for k in ("done", "skipped", "failed")}
    print(f"{counts['done']} done, {counts['skipped']} skipped (up to date), {counts['failed']} failed",
          file=sys.stderr)
    return 1 if failed else 0


def _batch_stopped(finished: list) -> int:
    """Ctrl-C or SIGTERM in a batch: the pairs that finished before stay written (each output
    is written whole or not at all); say which, and how to go on."""
    done = [o.name for o in finished if o.status == "done"]
    kept = f"{len(done)} finished pair(s) kept ({', '.join(done)})" if done else "no pair had finished"
    print(f"stopped: {kept}; the pairs in progress wrote nothing. Run the same command again to fuse the rest "
          "(finished pairs are skipped as up to date).", file=sys.stderr)
    return 130


def _tile_size(text) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InputError(f"--tile expects a number of HR pixels (e.g. 512) or 'auto', got {text!r}.") from None
    if value <= 0:
        raise InputError(f"--tile must be positive, got {value}.")
    return value


def cmd_evaluate(args) -> int:
    from .core.api import evaluate
    from .core.io import read_cube

    est, ref = read_cube(args.result).data, read_cube(args.reference, variable=args.variable).data
    ref = _unit_scaled(ref, f"{args.reference}")
    metrics = evaluate(est, ref, scale=args.scale)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics({"result": metrics})
    return 0


def _unit_scaled(data, name: str):
    """A cube read from a file: integers divided by their dtype's maximum, floats as they are;
    booleans, complex or text data refused in one line (as the API refuses them)."""
    from .core.validation import as_array

    data = as_array(data, name)
    return data / np.iinfo(data.dtype).max if np.issubdtype(data.dtype, np.integer) else data


def _collect_cubes(paths: list[str]) -> list[tuple[str, np.ndarray, object]]:
    """Cubes from files or folders; a folder that is not itself a cube is searched one level down
    (e.g. CAVE's ``complete_ms_data``). Integer cubes are scaled by their dtype's maximum."""
    from pathlib import Path

    from .core.io import read_cube

    out = []
    for raw in paths:
        path = Path(raw)
        try:
            found = [(path.name, read_cube(path))]
        except InputError:
            if not path.is_dir():
                raise
            found, skipped = [], []
            for child in sorted(path.iterdir()):
                try:
                    cf = read_cube(child)
                except InputError as exc:
                    skipped.append(f"{child.name}: {exc}")
                    continue
                if cf.data.ndim == 3 and cf.data.shape[0] > 3:  # not a kernel, mask or RGB image
                    found.append((child.name, cf))
                else:
                    skipped.append(f"{child.name}: shape {cf.data.shape} is not a (bands, Y, X) cube")
            if not found:
                raise InputError(f"no cube found in {path} (or in its sub-folders): "
                                 + "; ".join(skipped[:3])) from None
            for line in skipped:
                print(f"skipped {line}", file=sys.stderr)
        for name, cf in found:
            data = _unit_scaled(cf.data, name)
            out.append((name, np.asarray(data, dtype=np.float32), cf.wavelengths))
    return out


def cmd_train_config(args) -> int:
    """``hsisr train --config cfg.json``: the learned prior over many degradations (the shipped
    ``msfn`` weights come from ``configs/msfn_prior.json``)."""
    from tqdm import tqdm

    from .core.methods.base import run_to_end
    from .core.prior_training import PriorConfig, train_prior

    cfg = PriorConfig.load(args.config)
    if args.fold is not None:
        cfg.fold = None if args.fold < 0 else args.fold
    if args.out:
        cfg.out = str(Path(args.out).resolve())
    if args.init:
        cfg.init = str(Path(args.init).resolve())
    train, held = cfg.split()
    print(f"training on {len(train)} scenes, holding out {held or 'none'}; weights -> {cfg.out}", file=sys.stderr)
    bar = tqdm(total=cfg.steps, desc="train", file=sys.stderr, disable=None)

    def show(p):
        if isinstance(p, tuple):
            bar.set_description(f"bank {p[0]}/{p[1]}")
        else:
            bar.set_description("train")
            bar.n = p["step"]
            bar.refresh()

    try:
        record = run_to_end(train_prior(cfg, log=lambda line: tqdm.write(line, file=sys.stderr)), show)
    except KeyboardInterrupt:
        print(f"stopped: the last checkpoint ({Path(cfg.out).with_suffix('.ckpt')}) resumes it", file=sys.stderr)
        return 130
    finally:
        bar.close()
    print(f"wrote {cfg.out} (+ .json record, sha256 {record['sha256'][:12]}...)")
    return 0


def cmd_train(args) -> int:
    from tqdm import tqdm

    if args.config:
        return cmd_train_config(args)
    if not args.data or not args.out or not args.scale:
        raise InputError("hsisr train needs cube files or folders, --out and --scale (or --config FILE).")

    from .core.methods.base import run_to_end
    from .core.training import TrainSettings, export_weights, train_iter
    from .core.validation import resolve_device

    for flag, target in (("--out", args.out), ("--checkpoint", args.checkpoint)):
        if target and Path(target).is_dir():
            raise InputError(f"{flag} {target} is a folder; give a file name such as {Path(target) / 'weights.pt'}.")
        if target and not Path(target).resolve().parent.is_dir():  # refused before training, not after an epoch
            raise InputError(f"{flag} {target}: the folder {Path(target).parent} does not exist; create it first "
                             f"(mkdir -p {Path(target).parent}).")
    cubes = _collect_cubes(args.data)
    val_names = set(args.val or [])
    if args.scenes:
        keep = set(args.scenes) | val_names
        names = {c[0] for c in cubes} | {c[0].removesuffix("_ms") for c in cubes}
        unknown = sorted(keep - names)
        if unknown:
            raise InputError(f"cube(s) {unknown} not found; available: {sorted(c[0] for c in cubes)}.")
        cubes = [c for c in cubes if c[0] in keep or c[0].removesuffix("_ms") in keep]
    is_val = lambda name: name in val_names or name.removesuffix("_ms") in val_names  # noqa: E731
    train = [c for c in cubes if not is_val(c[0])]
    val = [c for c in cubes if is_val(c[0])]
    missing = val_names - {c[0] for c in val} - {c[0].removesuffix("_ms") for c in val}
    if missing:
        raise InputError(f"validation cube(s) {sorted(missing)} not found among {[c[0] for c in cubes]}.")
    deg = _degradation(args, cubes[0][2], len(cubes[0][1]), default_srf=SIMULATION_SRF)
    settings = TrainSettings(epochs=args.epochs, steps_per_epoch=args.steps, patch=args.patch or 8 * args.scale,
                             batch=args.batch, lr_rate=args.lr_rate, width=args.width, seed=args.seed,
                             noise_snr_db=args.snr, device=resolve_device(args.device))
    print(f"training on {len(train)} cubes ({', '.join(c[0] for c in train)}), validating on {len(val)} "
          f"({', '.join(c[0] for c in val) or 'none'})", file=sys.stderr)
    checkpoint = args.checkpoint or f"{args.out}.ckpt"
    gen = train_iter([c[1] for c in train], [c[1] for c in val], deg, settings, checkpoint=checkpoint,
                     resume=args.resume)
    bar = tqdm(total=settings.epochs * settings.steps_per_epoch, desc="train", file=sys.stderr, disable=None)
    start = time.perf_counter()

    def show(p):
        bar.n = p.step
        bar.set_postfix_str(f"epoch {p.epoch} loss={p.loss:.4g}")
        bar.refresh()
        if p.val is not None and np.isfinite(p.val.get("psnr", np.nan)):
            tqdm.write(f"epoch {p.epoch}: loss {p.loss:.4g}  val PSNR {p.val['psnr']:.2f} dB  "
                       f"SAM {p.val['sam']:.2f} deg", file=sys.stderr)
        elif p.val is not None:
            tqdm.write(f"epoch {p.epoch}: loss {p.loss:.4g}  (no validation cubes: give --val)", file=sys.stderr)

    try:
        model = run_to_end(gen, show)
    except KeyboardInterrupt:  # run_to_end closed the generator
        print(f"stopped: completed epochs (if any) are in {checkpoint}; continue with --resume", file=sys.stderr)
        return 130
    finally:
        bar.close()
    record = {
        "degradation": {**deg.settings(), "name": args.name or f"x{args.scale}"},
        "noise_snr_db": args.snr, "train": [c[0] for c in train], "validation": [c[0] for c in val],
        "settings": settings.as_dict(), "history": model.history,
        "train_seconds_this_run": round(time.perf_counter() - start, 1),
    }
    record = export_weights(model, args.out, record)
    last = model.history[-1] if model.history else {}
    val = last.get("val_psnr", float("nan"))
    print(f"wrote {args.out} (+ .json record, sha256 {record['sha256'][:12]}...); "
          + (f"final val PSNR {val:.2f} dB" if np.isfinite(val) else "no validation cubes (--val) to measure it"))
    return 0


class _Parser(argparse.ArgumentParser):
    """A flag's error is one line and exit 2 like every other user error (argparse prints the whole
    usage block first); the line says where the usage is."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Defaults shown in --help (when there is one), descriptions kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default is not None and action.default is not argparse.SUPPRESS and action.default is not False
        if shown and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="hsisr", description=__doc__, formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"hsisr (napari-hsisr) {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of unexpected errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, formatter_class=_Formatter, **k)  # defaults in every --help

    def common_run(q):
        q.add_argument("--method", default="fast", help="fusion method, see 'hsisr methods'")
        q.add_argument("--seed", type=int, default=0, help="random seed: same seed, same result")
        q.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
        q.add_argument("--format", choices=["imagej", "ome", "geotiff"],
                       help="TIFF flavour of the output (default: geotiff for georeferenced inputs, else imagej)")
        q.add_argument("--dtype", default="float32", choices=["float32", "uint16"],
                       help="output values: float32, or uint16 (mapped onto 0..65535 without clipping; the "
                            "scale is stored and undone when read)")

    q = sub.add_parser("demo", help="fuse the bundled sample, print quality and time, write a TIFF")
    q.add_argument("--out", default="demo.tif", help="the fused cube to write")
    common_run(q)
    q.set_defaults(func=cmd_demo)

    q = sub.add_parser("methods", help="list fusion methods and their options")
    q.set_defaults(func=cmd_methods)
    q = sub.add_parser("srfs", help="list spectral response presets")
    q.set_defaults(func=cmd_srfs)

    q = sub.add_parser("simulate", help="reference cube -> (HR image, LR-HS cube) pair")
    q.add_argument("reference")
    q.add_argument("--variable", help="variable name inside a .mat file")
    q.add_argument("--out-hr", required=True, help="the simulated HR image to write (TIFF, Y x X x k)")
    q.add_argument("--out-lr", required=True, help="the simulated LR-HS cube to write (TIFF, with wavelengths and "
                                                     "the degradation, which 'hsisr fuse' then uses)")
    q.add_argument("--snr", type=float, help="LR-HS SNR in dB (default: no noise)")
    q.add_argument("--hr-snr", type=float, help="HR image SNR in dB (default: --snr)")
    q.add_argument("--seed", type=int, default=0)
    _add_degradation_args(q)
    q.set_defaults(func=cmd_simulate)

    q = sub.add_parser("fuse", help="HR image + LR-HS cube -> HR-HS cube (TIFF)")
    q.add_argument("--hr", required=True, help="HR RGB/MSI image (PNG, BMP, TIFF incl. LZW/deflate GeoTIFF, JPEG), "
                                               "or a folder of georeferenced per-band files (a Sentinel-2 tile's "
                                               "bands)")
    q.add_argument("--lr", required=True, help="LR-HS cube (TIFF, ENVI .hdr, .mat, .npy, CAVE folder)")
    q.add_argument("--variable", help="variable name inside a .mat file")
    q.add_argument("--out", required=True, help="the fused cube to write (.tif, .tiff or .ome.tif; a tiled run "
                                                "(--tile, or a frame too big for memory) writes a tiled OME BigTIFF "
                                                "tile by tile; .zarr: an OME-Zarr multiscale image written tile by "
                                                "tile, for results larger than memory)")
    q.add_argument("--tile", help="fuse in tiles of about this many HR pixels a side, or 'auto' (whole when it "
                                  "fits in memory); the inputs are then read tile by tile where the format allows "
                                  "(default: auto for a frame that does not fit in memory, else whole)")
    q.add_argument("--opt", action="append", metavar="KEY=VALUE", help="method option, repeatable; see "
                                                                       "'hsisr methods'")
    q.add_argument("--grid", default="hr", choices=["hr", "lr"],
                   help="put the result on the HR image's pixels (hr) or on the LR cube's frame (lr)")
    q.add_argument("--keep-raw", action="store_true",
                   help="keep the method's result even when it fails the result check (non-finite, implausible, or "
                        "explaining the pair worse than GSA/fast); by default the better safe candidate is returned")
    q.add_argument("--workers", type=int, help="fuse the tiles on a local dask cluster of this many single-threaded "
                                               "worker processes (implies --tile auto unless --tile is given)")
    q.add_argument("--scheduler", help="address of a dask scheduler whose workers fuse the tiles (e.g. tcp://10.0.0.5:8786)")
    real = q.add_argument_group("real files")
    real.add_argument("--value-scale", default="auto",
                      help="multiply the LR cube by this (e.g. 1e-4 for reflectance x 10000); 'auto': the scale "
                           "the file documents (GDAL band scale, ENVI reflectance scale factor, NEON reflectance)")
    real.add_argument("--lr-nodata", type=float,
                      help="LR nodata value (default: the file's own, NaN, all-zero spectra)")
    real.add_argument("--hr-nodata", type=float,
                      help="HR nodata value in the image's own units (e.g. 0 for a mosaic's black fill): pixels with "
                           "every channel at it are masked")
    real.add_argument("--band-table", help="CSV band table giving the wavelengths (and bad-band flags) (default: "
                                           "the one band table beside an LR file without wavelengths)")
    real.add_argument("--drop-bands", help="'auto' (the band table's/ENVI bad-band flags) or 1-based numbers, e.g. "
                                           "193-210,284-315")
    real.add_argument("--lr-crs", help="the cube's CRS when its file has a map transform but none, e.g. EPSG:32618 "
                                       "(georeferenced pairs are paired by map coordinates)")
    real.add_argument("--hr-bands", help="1-based HR bands to use from a georeferenced multi-band image, e.g. 2-4 "
                                         "(default: all)")
    common_run(q)
    _add_degradation_args(q, scale_required=False)
    q.set_defaults(func=cmd_fuse)

    q = sub.add_parser("batch", help="fuse every pair of a manifest (CSV/YAML) on dask.distributed")
    q.add_argument("manifest", help="CSV or YAML: name, hr, lr[, method, scale, psf, psf_sigma, psf_size, psf_sigma2, "
                                    "psf_angle, boundary, shift, srf (or response; 'estimate'), wavelengths, "
                                    "hr_encoding (or encoding), tile, options, value_scale, band_table, drop_bands, "
                                    "lr_nodata, lr_crs, hr_bands]; paths relative to the manifest")
    q.add_argument("--out", required=True, help="folder for <name>.tif, created when missing (pairs already done "
                                                "there are skipped)")
    q.add_argument("--workers", type=int, help="local worker processes, one thread each (default: one per core)")
    q.add_argument("--scheduler", help="address of an existing dask scheduler (e.g. tcp://10.0.0.5:8786) "
                                       "instead of a local cluster")
    q.add_argument("--seed", type=int, default=0, help="random seed of every pair")
    q.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (on the workers)")
    q.set_defaults(func=cmd_batch)

    q = sub.add_parser("evaluate", help="result vs reference -> metrics",
                       description="Quality of a result against a reference cube: PSNR (dB, whole cube, peak 1), "
                                   "band-wise PSNR (dB), SAM (degrees), ERGAS (needs --scale), SSIM (0..1), RMSE "
                                   "(on the 0-255 scale).")
    q.add_argument("result")
    q.add_argument("reference")
    q.add_argument("--variable", help="variable name inside a .mat reference")
    q.add_argument("--scale", type=int, help="scale factor, for ERGAS")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evaluate)

    q = sub.add_parser("train", help="train MSFN weights on reference cubes (pairs simulated on the fly)")
    q.add_argument("data", nargs="*", help="cube files or folders (CAVE-style folders, TIFF, ENVI, .mat)")
    q.add_argument("--config", help="JSON config of a learned-prior run (the shipped msfn weights: "
                   "configs/msfn_prior.json); the other flags but --fold and --out are then unused")
    q.add_argument("--fold", type=int, help="with --config: hold out fold K (-1: none)")
    q.add_argument("--init", help="with --config: weights to start from (a fine-tune of that fold's weights)")
    q.add_argument("--val", nargs="*", help="names of the cubes held out for validation")
    q.add_argument("--scenes", nargs="*", help="use only these cubes (plus --val)")
    q.add_argument("--out", help="weights file to write (.pt; a .json record is written beside)")
    q.add_argument("--name", help="name of the degradation in the record (default x<scale>)")
    q.add_argument("--checkpoint", help="checkpoint path (default <out>.ckpt)")
    q.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    q.add_argument("--epochs", type=int, default=20)  # values < 1 are refused by train_iter
    q.add_argument("--steps", type=int, default=100, help="steps per epoch")
    q.add_argument("--patch", type=int, help="HR crop side (multiple of the scale; default 8 x scale)")
    q.add_argument("--batch", type=int, default=8)
    q.add_argument("--lr-rate", type=float, default=1e-3)
    q.add_argument("--width", type=int, default=16, help="channels at full resolution")
    q.add_argument("--snr", type=float, help="noise SNR in dB for both observations (default: none)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="auto")
    _add_degradation_args(q, scale_required=False)  # a --config run draws its own degradations
    q.set_defaults(func=cmd_train)
    return p


def _terminate(signum, frame):  # SIGTERM and SIGHUP unwind like Ctrl-C: temporary files are removed
    raise KeyboardInterrupt


_UNWIND = ("SIGTERM", "SIGHUP")


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    args = build_parser().parse_args(argv)
    on_main = threading.current_thread() is threading.main_thread()
    sigs = [getattr(signal, n) for n in _UNWIND if hasattr(signal, n)] if on_main else []
    previous = {sig: signal.signal(sig, _terminate) for sig in sigs}
    try:
        return _dispatch(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# the core's errors name the Python API; on the command line the same thing is a command
_SHELL_WORDS = {"list_presets()": "'hsisr srfs'", "list_methods()": "'hsisr methods'"}


def _in_shell_words(message: str) -> str:
    for api, command in _SHELL_WORDS.items():
        message = message.replace(api, command)
    return message


def _while_interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a KeyboardInterrupt (Ctrl-C, SIGTERM, SIGHUP) unwound."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__ or exc.__cause__
    return False


def _dispatch(args) -> int:
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {_in_shell_words(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped: nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hsisr srfs | head`
        return 0
    except MemoryError:
        if args.debug:
            raise
        print("error: out of memory: crop the images, or fuse them in parts (nothing was written)", file=sys.stderr)
        return 2
    except Exception as exc:
        if _while_interrupted(exc):  # Ctrl-C landed inside a library's lock: its unwinding raised this
            print("stopped: nothing was written", file=sys.stderr)
            return 130
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (nothing was written; run with --debug for the "
              "traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
