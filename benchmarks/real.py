"""Benchmark fusion on real sensor pairs from ../shared/data (camera RGB images, a real airborne pair).

    python benchmarks/real.py --protocol x8cam --methods bicubic,gsa-raw,gsa,blind,fast,unsupervised
    python benchmarks/real.py --protocol neon-full

Protocols:
  x8cam        12 CAVE scenes; LR-HS = the cube (/ 65535, watercolors / 255) blurred by a Gaussian sigma 2
               on the 8x8 block, decimated by 8, no noise; HR image = the scene's own <scene>_RGB.bmp
               as it is (8-bit sRGB). Reference: the cube.
  x8cam-shift  as x8cam, the HR image displaced by (+3, -5) HR pixels: both cropped to the common area
               (504 x 504); the LR is made from the cube's crop, the HR image is the BMP's crop 3 rows up
               and 5 columns right. Reference: the cube on the HR image's grid (results are on it).
  neon-wald4   NEON HARV: reference = the 40x40 cube (noisy bands dropped, / 10000, negatives 0); LR =
               reference blurred (Gaussian FWHM 4 px, 8x8) and decimated by 4 (10x10); HR image = the
               real RGB averaged over 10x10 blocks (40x40x3, display values / 255). Methods put their
               result on the cube's grid (grid="lr"), where the reference is.
  neon-full    the full-resolution NEON pair (400x400 RGB, 40x40x369 cube, ratio 10): no reference;
               seconds, the fit report, and (with --figure) a picture.

Method labels (the degradation each is told):
  bicubic        scale only
  gsa-raw        scale; the HR image taken as linear (its display values as they are)
  gsa            scale; the HR image decoded as sRGB (x8cam) or as given (neon)
  blind          scale and wavelengths only; estimates the rest (solver unsupervised)
  blind-fast     as blind, solver fast
  fast, unsupervised, msfn   scale, the true PSF, hr_encoding=srgb and the sRGB colour matching
                 functions (srf "sRGB (CIE 1931, D65)"); gain and offset estimated; not told any shift.
                 msfn and unsupervised use the weights in $HSISR_PRIOR_WEIGHTS when it is set.

Each method runs in its own subprocess (its peak resident memory is its own) with 2 torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CAVE = DATA / "cave" / "complete_ms_data"
NEON = DATA / "real_pairs" / "neon_harv"
SCENES = ["balloons", "chart_and_stuffed_toy", "face", "fake_and_real_food", "fake_and_real_peppers", "flowers",
          "oil_painting", "pompoms", "real_and_fake_apples", "superballs", "thread_spools", "watercolors"]
WAVELENGTHS = np.arange(400, 701, 10)
SHIFT = (3, -5)


# ------------------------------------------------------------------ pairs
def cave_pair(scene: str, shift=None):
    """``(reference, hr_uint8 (Y, X, 3), lr, true Degradation)`` of x8cam (or x8cam-shift)."""
    import imageio.v3 as iio

    import napari_hsisr as hsisr
    from napari_hsisr.core.io import read_cube

    folder = CAVE / f"{scene}_ms"
    cube = read_cube(folder).data.astype(np.float64)
    rgb = np.asarray(iio.imread(next(folder.rglob("*_RGB.bmp"))))
    deg = hsisr.Degradation(scale=8, psf="gaussian", psf_sigma=2, wavelengths=WAVELENGTHS)
    if shift is None:
        return cube, rgb, deg.spatial(cube).astype(np.float32), deg
    dy, dx = shift
    Y, X = cube.shape[1:]
    # HR pixel (y, x) shows what the LR frame has at (y - dy, x - dx): crop both to the common area
    top, left = max(dy, 0), max(dx, 0)  # crop origins: LR at (top, left), HR at (top - dy, left - dx)
    h, w = (Y - abs(dy)) // 8 * 8, (X - abs(dx)) // 8 * 8
    lr_part = cube[:, top:top + h, left:left + w]
    hr_part = rgb[top - dy:top - dy + h, left - dx:left - dx + w]
    reference = cube[:, top - dy:top - dy + h, left - dx:left - dx + w]  # the scene on the HR image's grid
    return reference, hr_part, deg.spatial(lr_part).astype(np.float32), deg


def neon_cube():
    from napari_hsisr.core.io import read_cube

    cf = read_cube(NEON / "NEON_D01_HARV_DP3_726000_4699000_reflectance_crop.tif", value_scale=1e-4,
                   wavelengths=NEON / "neon_aop_bands.csv", drop_bands="auto")
    return np.clip(cf.data.astype(np.float64), 0, None), cf.wavelengths


def neon_rgb():
    from napari_hsisr.core.io import read_image

    return read_image(NEON / "2019_D01_HARV_DP3_726000_4699000_image_crop.tif")


def neon_wald4():
    import napari_hsisr as hsisr

    cube, wl = neon_cube()
    deg = hsisr.Degradation(scale=4, psf="gaussian", psf_sigma=4 / (2 * np.sqrt(2 * np.log(2))), psf_size=8,
                            wavelengths=wl)
    rgb = neon_rgb().astype(np.float64)
    hr = rgb.reshape(40, 10, 40, 10, 3).mean(axis=(1, 3)) / 255.0
    return cube, hr, deg.spatial(cube).astype(np.float32), deg


# ------------------------------------------------------------------ methods
def plan(label: str, true_deg, wavelengths, hr_is_camera: bool):
    """``(method, Degradation, options)`` for a method label."""
    import napari_hsisr as hsisr

    s = true_deg.scale
    only_s = hsisr.Degradation(scale=s, wavelengths=wavelengths)
    if label == "bicubic":
        return "bicubic", only_s, {}
    if label == "gsa-raw":
        return "gsa", only_s.with_(hr_encoding="linear"), {}
    if label == "gsa":
        return "gsa", only_s.with_(hr_encoding="srgb" if hr_is_camera else "linear"), {}
    if label == "blind":
        return "blind", only_s, {}
    if label == "blind-fast":
        return "blind", only_s, {"solver": "fast"}
    if label in ("fast", "unsupervised", "msfn"):
        told = true_deg.with_(srf="sRGB (CIE 1931, D65)", hr_encoding="srgb")
        weights = os.environ.get("HSISR_PRIOR_WEIGHTS")  # a cross-validation fold's weights (prior_cv)
        return label, told, ({"weights": weights} if weights and label != "fast" else {})
    raise SystemExit(f"unknown method label {label!r}")


def pairs(protocol: str, scenes):
    if protocol in ("x8cam", "x8cam-shift"):
        for scene in scenes:
            yield scene, cave_pair(scene, SHIFT if protocol == "x8cam-shift" else None)
    elif protocol == "neon-wald4":
        yield "neon_harv", neon_wald4()
    else:
        raise SystemExit(f"unknown protocol {protocol!r}")


def worker(label: str, protocol: str, scenes: list[str], threads: int) -> dict:
    import torch

    import napari_hsisr as hsisr

    torch.set_num_threads(threads)
    rows, base = [], None
    grid = "lr" if protocol.startswith("neon") else "hr"
    for name, (ref, hr, lr, true_deg) in pairs(protocol, scenes):
        method, deg, opts = plan(label, true_deg, true_deg.wavelengths, hr.dtype == np.uint8)
        if base is None:
            base = _rss_mb()
        start = time.perf_counter()
        result = hsisr.fuse(hr, lr, deg, method=method, seed=0, device="cpu", grid=grid, **opts)
        seconds = time.perf_counter() - start
        m = hsisr.evaluate(result.cube, ref, scale=true_deg.scale)
        fit = result.settings.get("fit", {})
        row = {"scene": name, "seconds": seconds, **m, "warnings": result.settings.get("warnings", []),
               "fit_lr": fit.get("lr", {}).get("relative"), "fit_hr": fit.get("hr", {}).get("relative")}
        if "extras" in dir(result) and result.extras.get("shift") is not None:
            row["shift"] = list(result.extras["shift"])
        rows.append(row)
        print(f"  {label:<13} {name:<24} PSNR {m['psnr']:6.2f}  SAM {m['sam']:5.2f}  {seconds:6.2f} s",
              file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "peak_mb": peak, "base_mb": base}


def neon_full(figure: str | None, methods: list[str]) -> None:
    """The real pair at full resolution: seconds and fit report (no reference exists)."""
    import napari_hsisr as hsisr

    cube, wl = neon_cube()
    rgb = neon_rgb()
    print(f"NEON HARV: RGB {rgb.shape} {rgb.dtype}, cube {cube.shape}, ratio 10")
    results = {}
    for label in methods:
        method, deg, opts = plan(label, hsisr.Degradation(scale=10, wavelengths=wl), wl, True)
        if label in ("fast", "unsupervised"):
            deg = deg.with_(psf="gaussian", psf_sigma=4.0, psf_size=20)
        start = time.perf_counter()
        r = hsisr.fuse(rgb, cube.astype(np.float32), deg, method=method, seed=0, device="cpu", **opts)
        fit = r.settings.get("fit", {})
        lr_fit, hr_fit = (fit.get(side, {}).get("relative", float("nan")) for side in ("lr", "hr"))
        warnings = "; ".join(r.settings.get("warnings", [])) or "-"
        seconds = time.perf_counter() - start
        print(f"| {label} | {seconds:.1f} s | LR fit {lr_fit:.3f} | HR fit {hr_fit:.3f} | {warnings} |")
        for note in r.settings.get("estimation_notes", []):
            print(f"    {note}")
        results[label] = r
    if figure:
        _figure(figure, rgb, cube, wl, results)


def _figure(path: str, rgb, cube, wl, results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def false_colour(c):
        idx = [int(np.argmin(np.abs(wl - w))) for w in (860, 650, 550)]  # NIR, red, green
        img = np.moveaxis(c[idx], 0, -1)
        return np.clip(img / np.percentile(img, 99.5, axis=(0, 1)), 0, 1)

    panels = [("RGB camera (0.1 m)", rgb), ("HS cube, false colour (1 m)", false_colour(cube))]
    panels += [(f"{k}, false colour", false_colour(r.cube)) for k, r in results.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", default="x8cam")
    p.add_argument("--methods", default="bicubic,gsa-raw,gsa,blind,fast,unsupervised")
    p.add_argument("--scenes", default=",".join(SCENES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the per-scene rows to this file")
    p.add_argument("--figure", help="neon-full: write a picture of the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    scenes = args.scenes.split(",")
    if not DATA.is_dir():
        raise SystemExit(f"real data not found at {DATA}")
    if args.protocol == "neon-full":
        neon_full(args.figure, args.methods.split(","))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.protocol, scenes, args.threads)))
        return
    results = {}
    for label in args.methods.split(","):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        out = subprocess.run([sys.executable, __file__, "--worker", label, "--protocol", args.protocol,
                              "--scenes", args.scenes, "--threads", str(args.threads)],
                             env=env, stdout=subprocess.PIPE, text=True, check=True)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    n = len(next(iter(results.values()))["rows"])
    print(f"\nprotocol {args.protocol}, {n} scene(s), {args.threads} threads")
    print("| method | PSNR | SAM | ERGAS | SSIM | s/scene | peak MB | warned |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results.items():
        mean = {k: np.mean([row[k] for row in r["rows"]]) for k in ("psnr", "sam", "ergas", "ssim", "seconds")}
        warned = sum(bool(row["warnings"]) for row in r["rows"])
        print(f"| {label} | {mean['psnr']:.2f} | {mean['sam']:.2f} | {mean['ergas']:.2f} | {mean['ssim']:.4f} | "
              f"{mean['seconds']:.1f} | {r['peak_mb']:.0f} | {warned}/{len(r['rows'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
