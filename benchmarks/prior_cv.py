"""Cross-validated quality of the learned prior (issue 22): every figure on scenes the weights never saw.

    python benchmarks/prior_cv.py --runs build/prior_runs [--protocols x8,x32,x8n,x8blind,cams]
        [--methods fast,msfn,unsupervised,unsupervised#steps0] [--json cv.json] [--report cv.json]

For fold k the weights ``<runs>/fold<k>.pt`` (``hsisr train --config configs/msfn_prior.json --fold k``)
are applied to the scenes that fold held out (their record lists them), under the protocols of
benchmarks/cave.py (every method is told the true degradation) and ``cams``: x8 through each of the
4 cameras kept out of training (Gaussian sigma 2). Per protocol and method: mean and worst PSNR,
mean SAM over the 19 scenes, the mean gain over ``fast`` and its worst scene, seconds per scene.
Methods as in cave.py: ``name#label`` with ``--opt label:key=value``; ``unsupervised#steps0`` is
the adaptation ablation (``steps=0``). Skips (exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cave import CAVE, WAVELENGTHS, method_options, protocol

HELD_OUT_CAMERAS = ("Nokia N900", "Olympus E-PL2", "Pentax Q", "Point Grey Grasshopper2 14S5C")


def degradations(name: str):
    """[(label, Degradation, lr_snr, hr_snr)] of a protocol name (``cams``: one per held-out camera)."""
    from napari_hsisr import Degradation

    if name == "cams":
        return [(f"x8 {c}", Degradation(scale=8, psf="gaussian", psf_sigma=2, srf=c, wavelengths=WAVELENGTHS),
                 None, None) for c in HELD_OUT_CAMERAS]
    deg, lr_snr, hr_snr = protocol(name)
    return [(name, deg, lr_snr, hr_snr)]


def run(runs: Path, protocols: list[str], methods: list[str], opts: dict, threads: int) -> list[dict]:
    import torch

    import napari_hsisr as hsisr
    from napari_hsisr.core.io import read_cube

    torch.set_num_threads(threads)
    rows = []
    for ckpt in sorted(runs.glob("fold*.pt")):
        record = json.loads(ckpt.with_name(ckpt.name + ".json").read_text())
        for i, scene in enumerate(record["held_out_scenes"]):
            cube = read_cube(CAVE / f"{scene}_ms").data
            for proto in protocols:
                for label, deg, lr_snr, hr_snr in degradations(proto):
                    rgb, lr = hsisr.simulate(cube, deg, noise_snr_db=lr_snr, hr_snr_db=hr_snr, seed=i)
                    for m in methods:
                        method = m.partition("#")[0]
                        options = dict(opts.get(m, {}))
                        if method in ("msfn", "unsupervised") and "weights" not in options:
                            options["weights"] = str(ckpt)
                        start = time.perf_counter()
                        res = hsisr.fuse(rgb, lr, deg, method=method, seed=0, device="cpu", **options)
                        seconds = time.perf_counter() - start
                        q = hsisr.evaluate(res.cube, cube, scale=deg.scale)
                        check = res.settings.get("resolved_options", {}).get("prior_check", {})
                        rows.append({"fold": ckpt.stem, "scene": scene, "protocol": label, "method": m,
                                     "psnr": q["psnr"], "sam": q["sam"], "seconds": seconds,
                                     "prior_used": check.get("use_prior")})
                        print(f"{ckpt.stem} {scene:<26} {label:<28} {m:<22} {q['psnr']:6.2f} dB  SAM {q['sam']:5.2f}"
                              f"  {seconds:6.1f} s", file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict]) -> None:
    print("| protocol | method | PSNR | worst PSNR | SAM | vs fast | worst vs fast | s/scene | scenes | prior kept |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for proto in dict.fromkeys(r["protocol"] for r in rows):
        fast = {r["scene"]: r["psnr"] for r in rows if r["protocol"] == proto and r["method"] == "fast"}
        for m in dict.fromkeys(r["method"] for r in rows if r["protocol"] == proto):
            sel = [r for r in rows if r["protocol"] == proto and r["method"] == m]
            psnr = np.array([r["psnr"] for r in sel])
            gain = np.array([r["psnr"] - fast[r["scene"]] for r in sel if r["scene"] in fast])
            g = f"{gain.mean():+.2f} | {gain.min():+.2f}" if gain.size and m != "fast" else " | "
            print(f"| {proto} | {m} | {psnr.mean():.2f} | {psnr.min():.2f} | "
                  f"{np.mean([r['sam'] for r in sel]):.2f} | {g} | {np.mean([r['seconds'] for r in sel]):.1f} | "
                  f"{len(sel)} | {sum(r.get('prior_used') is not False for r in sel) if m != 'fast' else ''} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="build/prior_runs")
    p.add_argument("--protocols", default="x8,x32,x8n,x8blind,cams")
    p.add_argument("--methods", default="fast,msfn")
    p.add_argument("--opt", action="append", default=[], help="label:key=value (JSON value)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the per-scene rows here")
    p.add_argument("--report", help="only print the tables of saved rows (comma-separated files)")
    args = p.parse_args()
    if args.report:
        report([r for f in args.report.split(",") for r in json.loads(Path(f).read_text())])
        return
    if not CAVE.is_dir():
        print(f"skipped: CAVE data not found at {CAVE}")
        return
    rows = run(Path(args.runs), args.protocols.split(","), args.methods.split(","), method_options(args.opt),
               args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    report(rows)


if __name__ == "__main__":
    main()
