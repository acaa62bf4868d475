"""Scenes larger than memory, and many pairs: seconds, peak memory, seconds per megapixel.

    python benchmarks/scale.py sizes --methods fast,msfn --sizes 512,1024,2048,4096
    python benchmarks/scale.py bands200
    python benchmarks/scale.py batch --pairs 8

``sizes``: x8, Gaussian sigma 2, Nikon D700 response, 31 bands; the scene is CAVE balloons
mirrored to the size (its HR image and LR cube mirrored the same way: the symmetric Gaussian
centred on the 8x8 block commutes with the mirroring). The inputs are written to .npy files and
memory-mapped, every run is its own process (peak RSS = that process's ``VmHWM``, Python and
torch included), and tiled runs write their result to an OME-Zarr store (``--out .tif``: a tiled
BigTIFF). At 512 and 1024 the whole frame runs too, and at 1024 the tiled and whole results are
compared (PSNR against the mirrored reference); rows at those sizes are the median of ``--repeat``
runs (one run of a few seconds can be 2x off on a shared machine).

``bands200``: ``fast`` on 2048 x 2048 x 198 bands (AVIRIS Jasper Ridge, 100 x 100, mirrored), x8,
an RGB made with the sRGB colour-matching response (wavelengths taken as evenly spaced over
380..2500 nm: the water bands the file dropped are not known here; this is a memory and speed test).

``batch``: ``hsisr batch``'s engine (:func:`fuse_many`) on CAVE pairs (x8 simulated, ``fast``)
with 1 and 2 local workers; each output is compared with the pair fused in this process.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CAVE = DATA / "cave" / "complete_ms_data"
WL = np.arange(400, 701, 10)


def mirror(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` (..., Y, X) tiled with mirrored copies to (..., size, size) (Y, X divide size or not)."""
    Y, X = a.shape[-2:]
    row = np.concatenate([a, a[..., :, ::-1]], axis=-1)
    block = np.concatenate([row, row[..., ::-1, :]], axis=-2)  # 2Y x 2X, seamless
    reps = (-(-size // block.shape[-2]), -(-size // block.shape[-1]))
    tiled = np.tile(block, (1,) * (a.ndim - 2) + reps)
    return np.ascontiguousarray(tiled[..., :size, :size])


def make_pair(folder: Path, size: int):
    import napari_hsisr as hsisr
    from napari_hsisr.core.io import read_cube

    deg = hsisr.Degradation(scale=8, psf="gaussian", psf_sigma=2, srf="Nikon D700 (CAVE fusion papers)",
                            wavelengths=WL)
    cube = read_cube(CAVE / "balloons_ms").data.astype(np.float32)
    hr, lr = hsisr.simulate(cube, deg, seed=0)  # (Y, X, 3), (31, 64, 64)
    np.save(folder / "hr.npy", mirror(np.moveaxis(hr, -1, 0), size).transpose(1, 2, 0))
    np.save(folder / "lr.npy", mirror(lr, size // 8))
    if size <= 1024:
        np.save(folder / "ref.npy", mirror(cube, size))


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ``ru_maxrss``: Linux carries that across
    fork and exec, so a child would report its parent's memory at the fork."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(folder: str, method: str, tile: int, out: str) -> dict:
    """In a fresh process: fuse the memory-mapped pair; seconds and peak RSS."""
    import torch

    import napari_hsisr as hsisr

    torch.set_num_threads(2)
    folder = Path(folder)
    hr = np.load(folder / "hr.npy", mmap_mode="r")
    lr = np.load(folder / "lr.npy", mmap_mode="r")
    deg = hsisr.Degradation(scale=8, psf="gaussian", psf_sigma=2, srf="Nikon D700 (CAVE fusion papers)",
                            wavelengths=WL, hr_encoding="linear")
    start = time.perf_counter()
    if tile:
        res = hsisr.fuse(hr, lr, deg, method=method, tile=tile, out=out or None, device="cpu")
    else:
        res = hsisr.fuse(np.asarray(hr), np.asarray(lr), deg, method=method, device="cpu")
    seconds = time.perf_counter() - start
    peak = peak_mb()  # before the evaluation's copies
    psnr = None
    if (folder / "ref.npy").exists():
        ref = np.load(folder / "ref.npy", mmap_mode="r")
        psnr = hsisr.evaluate(np.asarray(res.cube), np.asarray(ref), scale=8, full=False)["psnr"]
    return {"seconds": seconds, "peak_mb": peak, "psnr": psnr}


def _subprocess(*args) -> dict:
    proc = subprocess.run([sys.executable, __file__, "_one", *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_run(tries: list[dict]) -> dict:
    """One row from repeated runs: the median seconds (one run on a shared 2-core machine can be
    2x off), the highest peak; the first error if any run failed."""
    failed = [r for r in tries if "error" in r]
    if failed:
        return failed[0]
    out = dict(tries[0])
    out["seconds"] = float(np.median([r["seconds"] for r in tries]))
    out["peak_mb"] = max(r["peak_mb"] for r in tries)
    out["runs"] = len(tries)
    return out


def sizes(methods, sizes_, tile, suffix=".zarr", whole=True, repeat=1):
    rows = []
    for size in sizes_:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            folder = Path(tmp)
            make_pair(folder, size)
            for method in methods:
                runs = [("tiled" if suffix == ".zarr" else f"tiled, {suffix}", tile)]
                runs += [("whole", 0)] if size <= 1024 and whole else []
                for label, t in runs:
                    out = str(folder / f"{method}{suffix}") if t else ""
                    tries = [_subprocess(folder, method, t, out) for _ in range(repeat if size <= 1024 else 1)]
                    r = _median_run(tries)
                    r.update(method=method, size=size, mode=label)
                    rows.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    if out and Path(out).is_dir():
                        shutil.rmtree(out, ignore_errors=True)
                    elif out:
                        Path(out).unlink(missing_ok=True)
    print("\n| method | HR size | mode | seconds | s / megapixel | peak RSS MB | PSNR |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | {r['size']}^2 | {r['mode']} | failed: {r['error']} | | | |")
            continue
        mp = r["size"] ** 2 / 1e6
        psnr = "" if r["psnr"] is None else f"{r['psnr']:.3f}"
        print(f"| {r['method']} | {r['size']}^2 | {r['mode']} | {r['seconds']:.1f} | {r['seconds'] / mp:.2f} | "
              f"{r['peak_mb']:.0f} | {psnr} |")


def bands200(size: int, tile: int):
    import napari_hsisr as hsisr
    from napari_hsisr.core.io import read_cube

    cube = read_cube(DATA / "remote_sensing" / "jasper_ridge__mhaut" / "JasperRidge2_R198.mat").data
    cube = cube.astype(np.float32) / np.float32(max(float(cube.max()), 1.0))
    wl = np.linspace(380, 2500, cube.shape[0])
    deg = hsisr.Degradation(scale=8, psf="gaussian", psf_sigma=2, srf="sRGB (CIE 1931, D65)", wavelengths=wl)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = Path(tmp)
        big = mirror(cube, size)
        np.save(folder / "lr.npy", deg.spatial(big.astype(np.float64)).astype(np.float32))
        np.save(folder / "hr.npy", np.moveaxis(np.clip(deg.spectral(big), 0, None), 0, -1).astype(np.float32))
        del big
        script = ("import sys, json, time, resource, numpy as np, torch, napari_hsisr as h\n"
                  "torch.set_num_threads(2)\n"
                  f"hr = np.load({str(folder / 'hr.npy')!r}, mmap_mode='r'); lr = np.load({str(folder / 'lr.npy')!r}, "
                  "mmap_mode='r')\n"
                  f"deg = h.Degradation(scale=8, psf='gaussian', psf_sigma=2, srf='sRGB (CIE 1931, D65)', "
                  f"wavelengths=np.linspace(380, 2500, {cube.shape[0]}), hr_encoding='linear')\n"
                  "t = time.perf_counter()\n"
                  f"r = h.fuse(hr, lr, deg, method='fast', tile={tile}, out={str(folder / 'out.zarr')!r})\n"
                  f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import scale\n"
                  "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_mb': scale.peak_mb(), "
                  "'tiles': r.settings['tiling']['tiles'], 'fit': r.settings['fit']}))\n")
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:])
            return
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    mp = size * size / 1e6
    print("\n| method | HR size | bands | seconds | s / megapixel | peak RSS MB | tiles | LR fit |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| fast | {size}^2 | {cube.shape[0]} | {r['seconds']:.1f} | {r['seconds'] / mp:.2f} | {r['peak_mb']:.0f} | "
          f"{r['tiles']} | {100 * r['fit']['lr']['relative']:.2f} % |")


def batch(n_pairs: int):
    import tifffile

    import napari_hsisr as hsisr
    from napari_hsisr.core.batch import fuse_many, fuse_pair, read_manifest
    from napari_hsisr.core.io import read_cube, write_tiff

    scenes = sorted(p.name[:-3] for p in CAVE.iterdir() if p.name.endswith("_ms"))[:n_pairs]
    deg = hsisr.Degradation(scale=8, psf="gaussian", psf_sigma=2, srf="Nikon D700 (CAVE fusion papers)",
                            wavelengths=WL)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = Path(tmp)
        lines = ["name,hr,lr,method,psf_sigma,hr_encoding"]
        for i, scene in enumerate(scenes):
            hr, lr = hsisr.simulate(read_cube(CAVE / f"{scene}_ms").data, deg, seed=i)
            tifffile.imwrite(folder / f"{scene}_hr.tif", hr.astype(np.float32), photometric="rgb")
            write_tiff(folder / f"{scene}_lr.tif", lr, wavelengths=WL)
            lines.append(f"{scene},{scene}_hr.tif,{scene}_lr.tif,fast,2,linear")
        (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
        rows = read_manifest(folder / "pairs.csv")
        single = folder / "single"
        single.mkdir()
        for row in rows:
            fuse_pair(row, str(single), threads=2)
        table = []
        for workers in (1, 2):
            out = folder / f"out{workers}"
            out.mkdir()
            start = time.perf_counter()
            outcomes = fuse_many(rows, out, workers=workers)
            wall = time.perf_counter() - start
            same = all(np.array_equal(read_cube(out / f"{r['name']}.tif").data,
                                      read_cube(single / f"{r['name']}.tif").data) for r in rows)
            table.append((workers, wall, sum(o.status == "done" for o in outcomes), same))
    print("\n| workers | pairs | wall s (cluster start included) | done | every output equals the single-process one |")
    print("|---|---|---|---|---|")
    for workers, wall, done, same in table:
        print(f"| {workers} | {len(scenes)} | {wall:.1f} | {done} | {'yes' if same else 'NO'} |")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("sizes")
    q.add_argument("--methods", default="fast,msfn")
    q.add_argument("--sizes", default="512,1024,2048,4096")
    q.add_argument("--tile", type=int, default=512)
    q.add_argument("--out", default=".zarr", choices=[".zarr", ".tif"], help="tiled runs write an OME-Zarr or a "
                                                                             "tiled BigTIFF")
    q.add_argument("--no-whole", action="store_true", help="skip the whole-frame runs at 512 and 1024")
    q.add_argument("--repeat", type=int, default=3, help="runs per row at 512 and 1024 (median seconds)")
    q = sub.add_parser("bands200")
    q.add_argument("--size", type=int, default=2048)
    q.add_argument("--tile", type=int, default=512)
    q = sub.add_parser("batch")
    q.add_argument("--pairs", type=int, default=8)
    q = sub.add_parser("_one")
    q.add_argument("folder")
    q.add_argument("method")
    q.add_argument("tile", type=int)
    q.add_argument("out", nargs="?", default="")
    a = p.parse_args()
    if a.cmd == "_one":
        print(json.dumps(run_one(a.folder, a.method, a.tile, a.out)))
    elif a.cmd == "sizes":
        sizes(a.methods.split(","), [int(v) for v in a.sizes.split(",")], a.tile, a.out, not a.no_whole, a.repeat)
    elif a.cmd == "bands200":
        bands200(a.size, a.tile)
    else:
        batch(a.pairs)


if __name__ == "__main__":
    main()
