"""Benchmark fusion methods on the CAVE scenes of ../shared/data under a named protocol.

    python benchmarks/cave.py --protocol x8 --methods bicubic,gsa,fast [--scenes balloons,flowers]

Prints one row per method: mean PSNR (whole cube, peak 1), SAM (degrees), ERGAS, SSIM, seconds
per scene and peak memory. Each method runs in its own subprocess, so that its peak resident
memory (``ru_maxrss``) is its own; "peak MB" is that figure, "above base MB" subtracts the resident
memory after imports and after loading one scene (the data themselves).

Protocols (cube = CAVE / 65535, watercolors / 255; SRF channels normalised to sum 1):
  x8      s=8, Nikon D700 (HIFtool matrix), Gaussian sigma 2 on the 8x8 block, no noise
  x32     s=32, Gaussian sigma 8 on the 32x32 block, no noise
  x8n     x8 with noise: LR-HS SNR 30 dB, RGB SNR 40 dB
  x8blind s=8, anisotropic Gaussian (2.5, 1.5 px, 30 deg) on 12x12 centred on the block, reflect
          boundary, Canon 5D Mark II (camspec); methods get the true degradation (oracle)
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
CAVE = ROOT.parent / "shared" / "data" / "cave" / "complete_ms_data"
SCENES = ["balloons", "chart_and_stuffed_toy", "face", "fake_and_real_food", "fake_and_real_peppers", "flowers",
          "oil_painting", "pompoms", "real_and_fake_apples", "superballs", "thread_spools", "watercolors"]
WAVELENGTHS = np.arange(400, 701, 10)


def protocol(name: str):
    """``(Degradation, lr_snr_db, hr_snr_db)`` of a named protocol."""
    from napari_hsisr import Degradation

    nikon = "Nikon D700 (CAVE fusion papers)"
    if name == "x8":
        return Degradation(scale=8, psf="gaussian", psf_sigma=2, srf=nikon, wavelengths=WAVELENGTHS), None, None
    if name == "x32":
        return Degradation(scale=32, psf="gaussian", psf_sigma=8, srf=nikon, wavelengths=WAVELENGTHS), None, None
    if name == "x8n":
        return Degradation(scale=8, psf="gaussian", psf_sigma=2, srf=nikon, wavelengths=WAVELENGTHS), 30.0, 40.0
    if name == "x8blind":
        deg = Degradation(scale=8, psf="gaussian", psf_sigma=2.5, psf_sigma2=1.5, psf_angle=30, psf_size=12,
                          boundary="reflect", srf="Canon 5D Mark II", wavelengths=WAVELENGTHS)
        return deg, None, None
    raise SystemExit(f"unknown protocol {name!r}; choose x8, x32, x8n or x8blind")


def degradation_errors(extras: dict, deg) -> dict:
    """Relative L2 error of an estimated PSF and mean spectral angle (degrees) of the SRF channels.

    Kernels of different supports are compared on the larger one, each centred on the s x s block
    (the convention of Degradation: a K x K kernel starts (K - s) // 2 pixels before the block)."""
    from napari_hsisr.core.physics import block_offset

    out = {}
    if extras.get("psf") is not None:
        est, true = np.asarray(extras["psf"], float), deg.psf
        K = max(len(est), len(true))

        def embed(k):
            full = np.zeros((K, K))
            o = block_offset(K, deg.scale) - block_offset(len(k), deg.scale)
            full[o:o + len(k), o:o + len(k)] = k
            return full

        out["psf_rel_l2"] = float(np.linalg.norm(embed(est) - embed(true)) / np.linalg.norm(true))
    if extras.get("srf") is not None:
        est, true = np.asarray(extras["srf"], float), deg.srf
        cos = np.sum(est * true, 0) / (np.linalg.norm(est, axis=0) * np.linalg.norm(true, axis=0))
        out["srf_angle"] = float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())
    return out


def method_options(items: list[str]) -> dict[str, dict]:
    """``--opt`` values ``label:key=value`` (JSON value) as ``{label: {key: value}}``; a label is a
    method name or ``name#label`` (shared by cave.py, prior_cv.py and prior_domain.py)."""
    opts: dict[str, dict] = {}
    for item in items:
        label, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        opts.setdefault(label, {})[key] = json.loads(value)
    return opts


def worker(method: str, proto: str, scenes: list[str], threads: int, options: dict) -> dict:
    import torch

    import napari_hsisr as hsisr
    from napari_hsisr.core.io import read_cube

    torch.set_num_threads(threads)
    deg, lr_snr, hr_snr = protocol(proto)
    rows = []
    base = None
    for i, scene in enumerate(scenes):
        cube = read_cube(CAVE / f"{scene}_ms").data
        rgb, lr = hsisr.simulate(cube, deg, noise_snr_db=lr_snr, hr_snr_db=hr_snr, seed=i)
        if base is None:
            base = _rss_mb()
        start = time.perf_counter()
        result = hsisr.fuse(rgb, lr, deg, method=method, seed=0, device="cpu", **options)
        seconds = time.perf_counter() - start
        m = hsisr.evaluate(result.cube, cube, scale=deg.scale)
        rows.append({"scene": scene, "seconds": seconds, **m, **degradation_errors(result.extras, deg)})
        print(f"  {method:<10} {scene:<24} PSNR {m['psnr']:6.2f}  SAM {m['sam']:5.2f}  {seconds:6.2f} s",
              file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "peak_mb": peak, "base_mb": base}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", default="x8")
    p.add_argument("--methods", default="bicubic,gsa,fast")
    p.add_argument("--scenes", default=",".join(SCENES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--opt", action="append", default=[],
                   help="method:key=value (JSON value); a method given as name#label gets label:key=value")
    p.add_argument("--json", help="also write the per-scene rows to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    scenes = args.scenes.split(",")
    if args.worker:
        opts = json.loads(os.environ.get("HSISR_BENCH_OPTS", "{}"))
        print(json.dumps(worker(args.worker, args.protocol, scenes, args.threads, opts)))
        return
    if not CAVE.is_dir():
        raise SystemExit(f"CAVE data not found at {CAVE}")
    results = {}
    given = method_options(args.opt)
    for label in args.methods.split(","):
        method = label.partition("#")[0]  # "msfn#raw" runs msfn with the options given to "msfn#raw"
        opts = given.get(label, {})
        env = {**os.environ, "HSISR_BENCH_OPTS": json.dumps(opts), "OMP_NUM_THREADS": str(args.threads)}
        out = subprocess.run([sys.executable, __file__, "--worker", method, "--protocol", args.protocol,
                              "--scenes", args.scenes, "--threads", str(args.threads)],
                             env=env, stdout=subprocess.PIPE, text=True, check=True)
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nprotocol {args.protocol}, {len(scenes)} scenes, {args.threads} threads")
    print("| method | PSNR | SAM | ERGAS | SSIM | s/scene | peak MB | above base MB |")
    print("|---|---|---|---|---|---|---|---|")
    for method, r in results.items():
        mean = {k: np.mean([row[k] for row in r["rows"]]) for k in ("psnr", "sam", "ergas", "ssim", "seconds")}
        print(f"| {method} | {mean['psnr']:.2f} | {mean['sam']:.2f} | {mean['ergas']:.2f} | {mean['ssim']:.4f} | "
              f"{mean['seconds']:.2f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['base_mb']:.0f} |")
    for method, r in results.items():
        if "psf_rel_l2" in r["rows"][0] or "srf_angle" in r["rows"][0]:
            est = {k: np.mean([row.get(k, np.nan) for row in r["rows"]]) for k in ("psf_rel_l2", "srf_angle")}
            print(f"{method}: estimated PSF relative L2 error {est['psf_rel_l2']:.3f}, "
                  f"SRF mean spectral angle {est['srf_angle']:.2f} deg (means over scenes)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
