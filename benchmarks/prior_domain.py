"""The learned prior on scenes unlike its training data: does it ever make a result worse than fast?

    python benchmarks/prior_domain.py [--weights a.pt,b.pt] [--protocols x8,x8n] [--methods fast,msfn]

Scenes none of the prior's training saw: the bundled synthetic sample (ColorChecker spectra in a
chart of patches, discs and stripes; seeds 7 and 8), an AVIRIS crop (Jasper Ridge, 96 x 96) and a
SAMSON crop (88 x 88) of ../shared/data resampled to the prior's 31 bands (400..700 nm, linear
interpolation; each cube scaled to a maximum of 1). Protocols as in benchmarks/cave.py (x8: Nikon
D700, Gaussian sigma 2; x8n: LR SNR 30 dB, RGB 40 dB); every method is told the true degradation.
One row per scene, protocol and weights: PSNR of fast, of each method, and the gain. The remote-
sensing rows skip (with a note) where ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cave import ROOT, WAVELENGTHS, method_options, protocol

REMOTE = ROOT.parent / "shared" / "data" / "remote_sensing"
# Jasper Ridge keeps 198 of AVIRIS's 224 bands (380..2500 nm): these were removed (water, noise)
JASPER_REMOVED = {*range(0, 3), *range(107, 112), *range(153, 166), *range(219, 224)}


def to_prior_bands(cube_yxb: np.ndarray, wl: np.ndarray) -> np.ndarray:
    """(Y, X, B) on ``wl`` -> (31, Y, X) on 400..700 nm, scaled to a maximum of 1."""
    flat = cube_yxb.reshape(-1, cube_yxb.shape[-1])
    out = np.stack([np.interp(WAVELENGTHS, wl, p) for p in flat], 1).reshape(31, *cube_yxb.shape[:2])
    out = np.clip(out, 0, None)
    return (out / out.max()).astype(np.float32)


def scenes() -> dict:
    from scipy.io import loadmat

    from napari_hsisr.core.sample import sample_scene

    out = {f"sample (seed {s})": sample_scene(256, s)[0] for s in (7, 8)}
    jasper = REMOTE / "jasper_ridge__mhaut" / "JasperRidge2_R198.mat"
    samson = REMOTE / "samson__mhaut" / "Samson.mat"
    if jasper.exists() and samson.exists():
        wl = np.linspace(380, 2500, 224)[[i for i in range(224) if i not in JASPER_REMOVED]]
        y = loadmat(jasper)["Y"].astype(np.float64)
        out["AVIRIS Jasper Ridge"] = to_prior_bands(y.T.reshape(100, 100, 198, order="F"), wl)[:, :96, :96]
        y = loadmat(samson)["Y"].astype(np.float64)
        out["SAMSON"] = to_prior_bands(y.T.reshape(95, 95, 156, order="F"), np.linspace(401, 889, 156))[:, :88, :88]
    else:
        print(f"note: {REMOTE} absent: the remote-sensing scenes are skipped", file=sys.stderr)
    return out


def main(argv=None) -> int:
    import napari_hsisr as hsisr
    from napari_hsisr.core.methods.msfn import shipped_weights

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(shipped_weights()), help="comma-separated prior weights to compare")
    ap.add_argument("--protocols", default="x8,x8n")
    ap.add_argument("--methods", default="msfn", help="methods that use the prior (fast is always run); "
                                                      "name#label with --opt label:key=value (JSON value)")
    ap.add_argument("--opt", action="append", default=[], help="label:key=value, e.g. msfn#e4:ensemble=4")
    args = ap.parse_args(argv)
    opts = method_options(args.opt)
    weights = [w for w in args.weights.split(",") if w]
    label = {w: "/".join(Path(w).parts[-2:]) for w in weights}  # folder too: runs name their weights alike
    print("| scene | protocol | weights | method | fast PSNR | PSNR | gain dB | SAM fast | SAM | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    gains: dict = {}
    for name, cube in scenes().items():
        for proto in args.protocols.split(","):
            deg, lr_snr, hr_snr = protocol(proto)
            rgb, lr = hsisr.simulate(cube, deg, noise_snr_db=lr_snr, hr_snr_db=hr_snr, seed=0)
            fast = hsisr.evaluate(hsisr.fuse(rgb, lr, deg, method="fast").cube, cube, scale=deg.scale)
            for w in weights:
                for method in args.methods.split(","):
                    start = time.perf_counter()
                    res = hsisr.fuse(rgb, lr, deg, method=method.partition("#")[0], weights=w, seed=0, device="cpu",
                                     **opts.get(method, {}))
                    seconds = time.perf_counter() - start
                    q = hsisr.evaluate(res.cube, cube, scale=deg.scale)
                    gain = q["psnr"] - fast["psnr"]
                    gains.setdefault((label[w], method), []).append(gain)
                    print(f"| {name} | {proto} | {label[w]} | {method} | {fast['psnr']:.2f} | {q['psnr']:.2f} | "
                          f"{gain:+.2f} | {fast['sam']:.2f} | {q['sam']:.2f} | {seconds:.1f} |", flush=True)
    print()
    for (w, method), g in gains.items():
        print(f"{w} {method}: mean gain {np.mean(g):+.2f} dB, worst {np.min(g):+.2f} dB over {len(g)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
