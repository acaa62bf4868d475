"""Peak memory of ``hsisr fuse`` on a big scene given without tile flags.

    python benchmarks/big_scene.py --size 4096 --bands 31 [--keep DIR] [-- extra hsisr flags]

A synthetic x8 pair (random smooth abundances of 5 random smooth spectra, Gaussian PSF sigma 2,
the Nikon D700 response) is written to a temporary folder: the HR image as a float32 TIFF, the LR
cube as a float32 ImageJ TIFF with wavelengths. Then ``hsisr fuse --method fast --out x.tif`` runs
in its own process (no ``--tile``; ``--estimate``: no ``--srf``/``--psf-sigma`` either) and the peak
resident memory of that process (``ru_maxrss`` of the child, Python and torch included) and its wall
time are printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def smooth_field(shape, n, sigma, rng) -> np.ndarray:
    """``n`` random fields of ``shape``, smoothed with a Gaussian of ``sigma`` pixels, in 0..1."""
    from scipy import ndimage

    out = np.empty((n,) + tuple(shape), np.float32)
    for i in range(n):
        f = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), sigma)
        out[i] = (f - f.min()) / max(float(f.max() - f.min()), 1e-6)
    return out


def make_pair(folder: Path, size: int, bands: int, scale: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """HR (size, size, 3) and LR (bands, size/scale, size/scale), written as TIFFs in ``folder``."""
    from scipy import ndimage

    from napari_hsisr.core.io import write_image, write_tiff
    from napari_hsisr.core.srf import resolve_srf

    rng = np.random.default_rng(seed)
    wl = np.linspace(400, 700, bands)
    spectra = 0.05 + 0.9 * smooth_field((bands,), 5, bands / 6, rng).reshape(5, bands)  # (5, C)
    small = smooth_field((size // scale, size // scale), 5, 3, rng)
    abund = np.stack([ndimage.zoom(a, scale, order=3) for a in small]).clip(0, None)  # (5, Y, X)
    abund /= abund.sum(0, keepdims=True) + 1e-6
    srf = resolve_srf("nikon_d700_cave", wl, bands)[0]  # (C, 3)
    hr = np.einsum("nyx,nk->yxk", abund, (spectra @ srf).astype(np.float32), dtype=np.float32)
    blurred = np.stack([ndimage.gaussian_filter(a, 2.0, mode="reflect") for a in abund])
    c = (scale - 1) / 2  # LR pixel i samples the centre of HR block i
    lr_ab = np.stack([ndimage.map_coordinates(b, np.mgrid[c:size:scale, c:size:scale], order=1) for b in blurred])
    lr = np.einsum("nyx,nc->cyx", lr_ab, spectra.astype(np.float32), dtype=np.float32)
    hr_path, lr_path = folder / "hr.tif", folder / "lr.tif"
    write_image(hr_path, hr)
    write_tiff(lr_path, lr, wavelengths=wl)
    return hr_path, lr_path


def measure(hr: Path, lr: Path, out: Path, extra: list[str], estimate: bool = False) -> dict:
    given = [] if estimate else ["--psf-sigma", "2", "--srf", "nikon_d700_cave"]
    cmd = [sys.executable, "-m", "napari_hsisr.cli", "fuse", "--hr", str(hr), "--lr", str(lr), "--method", "fast",
           *given, "--out", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**__import__("os").environ,
                                                                     "PYTHONPATH": str(ROOT / "src")})
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child: this one
    return {"rc": proc.returncode, "seconds": round(seconds, 1), "peak_gb": round(peak_kb * 1024 / 1e9, 3),
            "stderr_tail": proc.stderr.strip().splitlines()[-4:], "stdout": proc.stdout.strip()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--bands", type=int, default=31)
    p.add_argument("--keep", help="folder to write (and reuse) the pair in, instead of a temporary one")
    p.add_argument("--estimate", action="store_true", help="no --srf/--psf-sigma: the response estimated")
    p.add_argument("extra", nargs="*", help="extra hsisr fuse flags (after --)")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        hr, lr = folder / "hr.tif", folder / "lr.tif"
        if not (hr.exists() and lr.exists()):
            hr, lr = make_pair(folder, args.size, args.bands)
        out = Path(tmp) / "x.tif"
        row = {"size": args.size, "bands": args.bands, "estimate": args.estimate,
               **measure(hr, lr, out, args.extra, args.estimate)}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
