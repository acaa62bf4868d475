"""One scene's tiles on a local dask cluster: ``hsisr fuse --tile auto --workers N``, N = 1 and 2.

    python benchmarks/tiles_on_cluster.py [--scene balloons] [--size 2048] [--workers 1 2] [--method fast]

A CAVE scene (512x512, 31 bands, from ../shared/data) is mirrored into a ``size`` x ``size``
reference (tiles alternately flipped: no seams), simulated as an x8 pair (Gaussian PSF, the Nikon
D700 response; the LR file records the degradation, which ``hsisr fuse`` then uses) and written
to a temporary folder. Each worker count runs ``hsisr fuse`` in its own process (cluster start
included in the wall time); the table gives the wall time, its ratio to the first row, the
tiles, and the largest absolute difference of each result from the first one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


def mirrored_scene(scene: str, size: int) -> np.ndarray:
    """The CAVE scene ``scene`` (31, 512, 512) in [0, 1], mirrored into (31, size, size)."""
    from napari_hsisr.core.io import read_cube

    folder = DATA / "cave" / "complete_ms_data" / f"{scene}_ms"
    cube = np.asarray(read_cube(folder).data, dtype=np.float32)
    cube = cube / max(float(cube.max()), 1e-6) if cube.max() > 1.5 else cube
    n = -(-size // cube.shape[-1])
    rows = [np.concatenate([cube[:, ::(-1) ** i, ::(-1) ** j] for j in range(n)], axis=2) for i in range(n)]
    return np.ascontiguousarray(np.concatenate(rows, axis=1)[:, :size, :size])


def make_pair(folder: Path, scene: str, size: int, scale: int = 8) -> tuple[Path, Path]:
    from napari_hsisr.core.degradation import Degradation
    from napari_hsisr.core.io import write_image, write_tiff
    from napari_hsisr.core.simulate import simulate

    ref = mirrored_scene(scene, size)
    deg = Degradation(scale=scale, psf="gaussian", srf="Nikon D700", wavelengths=np.arange(400, 701, 10.0),
                      hr_encoding="linear")
    hr, lr = simulate(ref, deg, noise_snr_db=40, seed=0)
    settings = {"simulated_from": f"CAVE {scene}, mirrored to {size}", "degradation": deg.settings()}
    hr_path, lr_path = folder / "hr.tif", folder / "lr.tif"
    write_image(hr_path, hr.astype(np.float32), settings=settings)
    write_tiff(lr_path, lr, wavelengths=deg.wavelengths, settings=settings)
    return hr_path, lr_path


def run(hr: Path, lr: Path, out: Path, workers: int, method: str) -> tuple[float, np.ndarray, dict]:
    from napari_hsisr.core.io import read_cube

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "napari_hsisr.cli", "fuse", "--hr", str(hr), "--lr", str(lr), "--out", str(out),
           "--method", method, "--tile", "auto", "--workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"hsisr fuse --workers {workers} failed:\n{done.stderr[-2000:]}")
    seconds = time.perf_counter() - start
    result = read_cube(out)
    return seconds, np.asarray(result.data, dtype=np.float32), (result.metadata.get("settings") or {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", default="balloons")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--method", default="fast")
    args = p.parse_args()
    if not (DATA / "cave").is_dir():
        sys.exit(f"no CAVE data at {DATA / 'cave'}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hr, lr = make_pair(folder, args.scene, args.size)
        rows, first = [], None
        for n in args.workers:
            seconds, cube, settings = run(hr, lr, folder / f"w{n}.tif", n, args.method)
            first = (seconds, cube) if first is None else first
            tiling = settings.get("tiling") or {}
            rows.append((n, seconds, seconds / first[0], tiling.get("tiles"), tiling.get("tile"),
                         float(np.abs(cube - first[1]).max())))
    print(f"{args.scene} mirrored to {args.size}x{args.size}, x8, 31 bands, {args.method}, --tile auto; "
          f"{os.cpu_count()} cores")
    print(f"{'workers':>8} {'seconds':>9} {'ratio':>7} {'tiles':>6} {'tile':>6} {'max |diff|':>11}")
    for n, seconds, ratio, tiles, tile, diff in rows:
        print(f"{n:>8} {seconds:>9.1f} {ratio:>7.2f} {tiles!s:>6} {tile!s:>6} {diff:>11.2e}")


if __name__ == "__main__":
    main()
