"""Camera stress suite (issue 20, item 6): CAVE scenes rendered through many camera pipelines.

    python benchmarks/cameras.py                 # all 19 scenes x every pipeline x bicubic,gsa,fast,blind
    python benchmarks/cameras.py --scenes balloons,flowers --pipelines srgb,jpeg60,bayer,phone \\
        --methods bicubic,gsa,fast
    python benchmarks/cameras.py --jobs 2 --json cameras.json --append docs/benchmarks.md
    python benchmarks/cameras.py --list          # the pipelines and what each changes

Protocol, per scene and pipeline:
  reference  the CAVE cube (/ 65535, watercolors / 255), its centre crop of --crop x --crop pixels
             (default 256; 0 = the whole 512 x 512).
  HR image   the reference rendered by the camera pipeline (napari_hsisr.core.camera.render, seed =
             the scene's index): response, white balance, exposure, tone curve, 8/16 bits, JPEG,
             Bayer + demosaic, noise, vignetting, registration offset (see --list).
  LR cube    the reference blurred by a Gaussian PSF (sigma s/4 on the s x s block) and decimated
             by s (--scale, default 8), Gaussian noise at SNR 40 dB (seed = the scene's index).
  scored     against the reference on the HR image's grid (moved by a pipeline's registration
             offset, as the HR image is), without a border of s pixels.

Methods (what each is told; none is told the camera):
  bicubic  the scale only.
  gsa      the scale; the HR image decoded as sRGB (what a user does with an 8-bit camera image).
  fast     the scale and the true PSF, no response: it is estimated from the pair (the default of a
           user without the camera's data).
  fast-srgb  as fast, told the response "sRGB (CIE 1931, D65)" (a user's usual guess).
  blind-fast blind with solver=fast.
  blind    the scale only (and the wavelengths); estimates the rest.

The table gives, per pipeline, each method's mean / worst PSNR (dB, whole cube, peak 1) and mean /
worst SAM (degrees) over the scenes, and seconds per scene. A "*" marks a method whose result on
some scene is below bicubic's; a "!" one that returned non-finite values or values beyond the
plausible range, [-0.25, 2] x the reference's peak (an exploded cube, not a highlight's overshoot).
Then the worst case overall.

--jobs N > 1 runs the (scene, pipeline, method) tasks on a dask.distributed LocalCluster of N
single-threaded worker processes. Skips (exit 0) when ../shared/data is absent.

    python benchmarks/cameras.py --report a.json,b.json   # the tables again from saved rows; a later
                                                          # file's rows replace an earlier one's
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CAVE = DATA / "cave" / "complete_ms_data"
SCENES = ["balloons", "chart_and_stuffed_toy", "face", "fake_and_real_food", "fake_and_real_peppers", "flowers",
          "oil_painting", "pompoms", "real_and_fake_apples", "superballs", "thread_spools", "watercolors",
          "egyptian_statue", "fake_and_real_strawberries", "fake_and_real_sushi", "fake_and_real_tomatoes",
          "hairs", "real_and_fake_peppers", "stuffed_toys"]
WAVELENGTHS = np.arange(400, 701, 10).astype(np.float64)
METHODS = ("bicubic", "gsa", "fast", "fast-srgb", "blind", "blind-fast")
LR_SNR_DB = 40.0
PLAUSIBLE = (-0.25, 2.0)  # x the reference's peak


# ------------------------------------------------------------------ data
@lru_cache(maxsize=2)
def reference(scene: str, crop: int) -> np.ndarray:
    """The scene's cube (C, Y, X) float64 in [0, 1], centre-cropped to crop x crop (0: whole)."""
    from napari_hsisr.core.io import read_cube

    cube = read_cube(CAVE / f"{scene}_ms").data.astype(np.float64)
    if crop:
        Y, X = cube.shape[1:]
        if crop > min(Y, X):
            raise SystemExit(f"--crop {crop} is larger than the scene ({Y} x {X})")
        top, left = (Y - crop) // 2, (X - crop) // 2
        cube = cube[:, top:top + crop, left:left + crop]
    return np.ascontiguousarray(cube)


def make_pair(scene: str, pipeline_name: str, crop: int, scale: int):
    """``(reference, hr image, lr cube, true Degradation)`` of one scene through one pipeline."""
    import napari_hsisr as hsisr
    from napari_hsisr.core.camera import get_pipeline, render, shift_image
    from napari_hsisr.core.simulate import add_noise

    seed = SCENES.index(scene) if scene in SCENES else 0
    ref = reference(scene, crop)
    if ref.shape[1] % scale or ref.shape[2] % scale:
        raise SystemExit(f"the crop {ref.shape[1]} x {ref.shape[2]} is not a multiple of the scale {scale}")
    true = hsisr.Degradation(scale=scale, psf="gaussian", psf_sigma=scale / 4, wavelengths=WAVELENGTHS)
    pipeline = get_pipeline(pipeline_name)
    hr = render(ref, WAVELENGTHS, pipeline, seed=seed)
    lr = add_noise(true.spatial(ref), LR_SNR_DB, np.random.default_rng(1000 + seed)).astype(np.float32)
    if any(pipeline.offset):  # the scene on the HR image's grid: where the results are put
        ref = np.moveaxis(shift_image(np.moveaxis(ref, 0, -1), pipeline.offset), -1, 0)
    return ref, hr, lr, true


def plan(method: str, true):
    """``(method, Degradation)``: what a user without the camera's data would tell each method."""
    import napari_hsisr as hsisr

    only_s = hsisr.Degradation(scale=true.scale, wavelengths=WAVELENGTHS)
    if method == "bicubic":
        return "bicubic", only_s
    if method == "gsa":
        return "gsa", only_s.with_(hr_encoding="srgb")
    if method == "fast":
        return "fast", true.with_(srf=None, hr_encoding="auto")
    if method == "fast-srgb":
        return "fast", true.with_(srf="sRGB (CIE 1931, D65)", hr_encoding="auto")
    if method in ("blind", "blind-fast"):
        return "blind", only_s
    raise SystemExit(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


# ------------------------------------------------------------------ one task
def run_one(scene: str, pipeline_name: str, method: str, crop: int, scale: int, threads: int) -> dict:
    """Fuse one (scene, pipeline) pair with one method; a row of figures (never raises)."""
    import warnings

    import torch

    import napari_hsisr as hsisr

    torch.set_num_threads(threads)
    row = {"scene": scene, "pipeline": pipeline_name, "method": method}
    try:
        ref, hr, lr, true = make_pair(scene, pipeline_name, crop, scale)
        name, deg = plan(method, true)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opts = {"solver": "fast"} if method == "blind-fast" else {}
            result = hsisr.fuse(hr, lr, deg, method=name, seed=0, device="cpu", **opts)
        row["seconds"] = time.perf_counter() - start
        cube = np.asarray(result.cube, dtype=np.float64)
        finite = bool(np.all(np.isfinite(cube)))
        row["finite"] = finite
        row["min"] = float(np.nanmin(cube)) if finite else float("nan")
        row["max"] = float(np.nanmax(cube)) if finite else float("nan")
        row["ref_max"] = float(ref.max())
        row["plausible"] = _plausible(row)
        if finite:
            inner = (slice(None), slice(scale, -scale), slice(scale, -scale))  # no border: shifted pipelines
            m = hsisr.evaluate(cube[inner], ref[inner], scale=scale, full=False)
            row.update(psnr=m["psnr"], sam=m["sam"], ergas=m["ergas"])
        else:
            row.update(psnr=float("nan"), sam=float("nan"), ergas=float("nan"))
        row["warnings"] = [str(w)[:300] for w in result.settings.get("warnings", [])]
        row["kept"] = result.settings.get("result_check", {}).get("kept", name)
    except Exception as exc:  # noqa: BLE001 - a stress suite reports failures, it does not stop on them
        row.update(error=f"{type(exc).__name__}: {exc}"[:500], psnr=float("nan"), sam=float("nan"),
                   seconds=float("nan"), finite=False, plausible=False, warnings=[])
    return row


def _plausible(row: dict) -> bool:
    peak = row.get("ref_max", 1.0)
    return bool(row.get("finite")) and PLAUSIBLE[0] * peak <= row["min"] and row["max"] <= PLAUSIBLE[1] * peak


def _log(row: dict) -> None:
    if "error" in row:
        text = f"ERROR {row['error']}"
    else:
        text = f"PSNR {row['psnr']:6.2f}  SAM {row['sam']:5.2f}  {row['seconds']:6.1f} s"
        if not row["plausible"]:
            text += f"  IMPLAUSIBLE (min {row['min']:.3g}, max {row['max']:.3g})"
    print(f"  {row['pipeline']:<20} {row['scene']:<27} {row['method']:<8} {text}", file=sys.stderr, flush=True)


def run_all(tasks: list[tuple], crop: int, scale: int, jobs: int, threads: int) -> list[dict]:
    if jobs <= 1:
        rows = []
        for scene, pipe, method in tasks:
            rows.append(run_one(scene, pipe, method, crop, scale, threads))
            _log(rows[-1])
        return rows
    from distributed import Client, LocalCluster, as_completed

    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        # blind first: the long tasks start early and the short ones fill the gaps
        order = sorted(tasks, key=lambda t: t[2] != "blind")
        futures = [client.submit(run_one, s, p, m, crop, scale, threads, pure=False) for s, p, m in order]
        rows = []
        for fut in as_completed(futures):
            rows.append(fut.result())
            _log(rows[-1])
    return rows


# ------------------------------------------------------------------ report
def _fmt(values, worst, digits=2) -> str:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return "-"
    if not np.all(np.isfinite(v)):
        return f"nan ({int(np.sum(~np.isfinite(v)))} failed)"
    return f"{v.mean():.{digits}f} / {worst(v):.{digits}f}"


def report(rows: list[dict], pipelines: list[str], methods: list[str], scenes: list[str], header: str) -> str:

    by = {(r["pipeline"], r["method"], r["scene"]): r for r in rows}
    lines = [header, ""]
    lines.append("| pipeline | " + " | ".join(f"{m} PSNR" for m in methods) + " | "
                 + " | ".join(f"{m} SAM" for m in methods) + " | s/scene (" + ", ".join(methods) + ") |")
    lines.append("|---" * (2 * len(methods) + 2) + "|")
    below: dict[str, list] = {m: [] for m in methods}
    for pipe in pipelines:
        psnr_cells, sam_cells, secs = [], [], []
        for m in methods:
            rs = [by[(pipe, m, s)] for s in scenes if (pipe, m, s) in by]
            mark = ""
            if any(not r.get("plausible", False) for r in rs):
                mark += "!"
            if m != "bicubic":
                for r in rs:
                    b = by.get((pipe, "bicubic", r["scene"]))
                    if b is not None and not (r["psnr"] >= b["psnr"]):  # nan counts as below
                        below[m].append((pipe, r["scene"], r["psnr"], b["psnr"]))
                        mark = mark if "*" in mark else mark + "*"
            psnr_cells.append(_fmt([r["psnr"] for r in rs], np.min) + mark)
            sam_cells.append(_fmt([r["sam"] for r in rs], np.max))
            sec = [r["seconds"] for r in rs if np.isfinite(r.get("seconds", np.nan))]
            secs.append(f"{np.mean(sec):.1f}" if sec else "-")
        lines.append(f"| {pipe} | " + " | ".join(psnr_cells) + " | " + " | ".join(sam_cells) + " | "
                     + " / ".join(secs) + " |")
    lines += ["", ("PSNR and SAM cells: mean / worst over the scenes (worst = lowest PSNR, highest SAM). "
                   "`*`: below bicubic on some scene; `!`: non-finite or implausible values."), ""]
    lines.append("| method | mean PSNR | mean SAM | worst case (pipeline, scene) | scenes below bicubic | "
                 "implausible or failed | s/scene (mean / max) |")
    lines.append("|---|---|---|---|---|---|---|")
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        ps = np.array([r["psnr"] for r in rs], dtype=float)
        worst = rs[int(np.nanargmin(ps))] if np.any(np.isfinite(ps)) else rs[0]
        bad = sum(not r.get("plausible", False) for r in rs)
        sec = np.array([r["seconds"] for r in rs if np.isfinite(r.get("seconds", np.nan))])
        n_below = "-" if m == "bicubic" else f"{len(below[m])} / {len(rs)}"
        lines.append(f"| {m} | {np.nanmean(ps):.2f} | {np.nanmean([r['sam'] for r in rs]):.2f} | "
                     f"{worst['psnr']:.2f} ({worst['pipeline']}, {worst['scene']}) | {n_below} | {bad} | "
                     f"{sec.mean():.1f} / {sec.max():.1f} |" if sec.size else "| - |")
    if any(m != "bicubic" for m in methods) and "bicubic" in methods:
        lines += ["", "Below bicubic (method, pipeline, scene: PSNR vs bicubic):"]
        listed = [(m, *x) for m in methods for x in below[m]]
        listed.sort(key=lambda t: t[3] - t[4])
        for m, pipe, scene, p, b in listed[:25]:
            lines.append(f"- {m}, {pipe}, {scene}: {p:.2f} vs {b:.2f} ({p - b:+.2f} dB)")
        if len(listed) > 25:
            lines.append(f"- ... and {len(listed) - 25} more")
        if not listed:
            lines.append("- none")
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Errors:"] + [f"- {r['method']}, {r['pipeline']}, {r['scene']}: {r['error']}" for r in errors]
    return "\n".join(lines) + "\n"


def report_saved(paths: list[str]) -> str:
    """The report of saved runs (``--json``), merged in order: a later row for the same (scene,
    pipeline, method) replaces an earlier one. Rows saved without the reference's peak get it."""
    merged: dict = {}
    header = []
    peaks: dict = {}
    for path in paths:
        saved = json.loads(Path(path).read_text())
        a = saved["args"]
        header.append(f"{path}: --crop {a['crop']} --scale {a['scale']} --jobs {a['jobs']}")
        for r in saved["rows"]:
            if "ref_max" not in r and r.get("finite"):
                key = (r["scene"], a["crop"])
                if key not in peaks:
                    peaks[key] = float(reference(*key).max())
                r["ref_max"] = peaks[key]
            r["plausible"] = _plausible(r) if r.get("finite") else False
            merged[(r["scene"], r["pipeline"], r["method"])] = r
    rows = list(merged.values())

    def order(key):  # first-seen order
        return list(dict.fromkeys(r[key] for r in rows))

    methods = sorted(order("method"), key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS))
    return report(rows, order("pipeline"), methods, order("scene"),
                  "### Camera stress suite (saved runs)\n\n" + "; ".join(header) + ".")


def main() -> None:
    from napari_hsisr.core.camera import suite_pipelines

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", default=",".join(SCENES), help="comma-separated CAVE scenes (default: all 19)")
    p.add_argument("--pipelines", default="all", help="comma-separated pipeline names (default: all; see --list)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--crop", type=int, default=256, help="centre crop size in HR pixels (0: the whole scene)")
    p.add_argument("--scale", type=int, default=8)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (dask.distributed LocalCluster if > 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per task (default: 2, or 1 with --jobs)")
    p.add_argument("--json", help="also write the per-(scene, pipeline, method) rows to this file")
    p.add_argument("--append", help="also append the markdown report to this file")
    p.add_argument("--list", action="store_true", help="list the pipelines and exit")
    p.add_argument("--report", help="comma-separated JSON files of earlier runs: print their tables, run nothing")
    args = p.parse_args()
    if args.report:
        print(report_saved(args.report.split(",")))
        return
    suite = suite_pipelines()
    if args.list:
        for name, pipe in suite.items():
            print(f"{name:<22} {pipe.describe()}")
        return
    if not CAVE.is_dir():
        print(f"skipped: CAVE data not found at {CAVE}", file=sys.stderr)
        return
    scenes = [s for s in args.scenes.split(",") if s]
    pipelines = list(suite) if args.pipelines == "all" else [s for s in args.pipelines.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    for name in pipelines:
        if name not in suite:
            raise SystemExit(f"unknown pipeline {name!r}; see --list")
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for s in scenes:
        if not (CAVE / f"{s}_ms").is_dir():
            raise SystemExit(f"scene {s!r} not found under {CAVE}")
    threads = args.threads or (1 if args.jobs > 1 else 2)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    tasks = [(s, pipe, m) for pipe in pipelines for s in scenes for m in methods]
    start = time.perf_counter()
    rows = run_all(tasks, args.crop, args.scale, args.jobs, threads)
    wall = time.perf_counter() - start
    crop = f"{args.crop} x {args.crop} centre crop" if args.crop else "whole scenes"
    header = (f"### Camera stress suite: {len(scenes)} scene(s) x {len(pipelines)} pipeline(s), x{args.scale}, "
              f"{crop}, LR SNR {LR_SNR_DB:g} dB\n\n{time.strftime('%Y-%m-%d', time.gmtime())}, "
              f"{platform.machine()} CPU ({os.cpu_count()} cores), {args.jobs} job(s) x {threads} thread(s), "
              f"wall {wall / 60:.1f} min. Scenes: {', '.join(scenes)}.")
    text = report(rows, pipelines, methods, scenes, header)
    print(text)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write("\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "pipelines": {
            n: suite[n].settings() for n in pipelines}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
