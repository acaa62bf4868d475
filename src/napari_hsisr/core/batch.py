"""Many pairs on a dask.distributed cluster: a field campaign, a folder of scenes.

A manifest (CSV or YAML) lists pairs: ``name, hr, lr`` and optionally ``method``, ``scale``,
``psf``, ``psf_sigma``, ``srf``, ``wavelengths`` (``start:stop:step`` nm), ``hr_encoding``,
``tile`` and ``options`` (``key=value;key=value``). Relative paths are relative to the manifest.
:func:`fuse_many` submits one task per pair to a ``LocalCluster`` (one single-threaded worker
process per core) or to an existing scheduler; each task reads its pair, fuses it (in tiles when
``tile`` is set) and writes ``<out>/<name>.tif`` atomically with its settings. A pair that fails
is reported and the others go on; a pair whose output exists and records the same request (inputs
with their sizes and times, and every setting) is skipped, so a campaign can be re-run after an
interruption.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

COLUMNS = ("name", "hr", "lr", "method", "scale", "psf", "psf_sigma", "srf", "wavelengths", "hr_encoding",
           "tile", "options")


@dataclass
class PairOutcome:
    name: str
    status: str  # "done", "skipped", "failed"
    seconds: float
    output: str | None
    fit_lr: float | None = None
    fit_hr: float | None = None
    message: str = ""

    def row(self) -> dict:
        return dict(self.__dict__)


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """The manifest's pairs as dicts (paths made absolute); CSV (header row) or YAML (a list of
    mappings, or a mapping with ``pairs:``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found.")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(path.read_text()) or []
        rows = data.get("pairs", []) if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"{path}: a YAML manifest is a list of pairs (name, hr, lr, ...).")
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as fh:
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(fh)]
    else:
        raise InputError(f"{path}: a manifest is a .csv or .yaml file.")
    out, seen = [], set()
    for i, row in enumerate(rows, start=1):
        row = {k: v for k, v in row.items() if v not in (None, "")}
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise InputError(f"{path}: pair {i} has unknown column(s) {sorted(unknown)}; the columns are "
                             f"{', '.join(COLUMNS)}.")
        for need in ("hr", "lr"):
            if need not in row:
                raise InputError(f"{path}: pair {i} has no '{need}' path.")
        row["name"] = str(row.get("name") or Path(str(row["lr"])).stem)
        if row["name"] in seen:
            raise InputError(f"{path}: two pairs are named {row['name']!r}; names must be unique (they name "
                             "the outputs).")
        seen.add(row["name"])
        for key in ("hr", "lr"):
            p = Path(str(row[key]))
            row[key] = str(p if p.is_absolute() else (path.parent / p))
        out.append(row)
    if not out:
        raise InputError(f"{path}: the manifest lists no pairs.")
    return out


def request_key(row: dict) -> str:
    """What makes an output up to date: the row and its input files' sizes and times."""
    stamp = {}
    for key in ("hr", "lr"):
        try:
            st = os.stat(row[key])
            stamp[key] = [st.st_size, int(st.st_mtime)]
        except OSError:
            stamp[key] = None
    text = json.dumps({"row": row, "files": stamp}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _recorded_key(path: Path) -> str | None:
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            from .io import _tiff_json

            info = _tiff_json(tif) or {}
        return (info.get("settings") or {}).get("batch", {}).get("request")
    except Exception:  # noqa: BLE001 - unreadable: not up to date
        return None


def _options(text) -> dict:
    if isinstance(text, dict):
        return dict(text)
    out = {}
    for part in str(text or "").replace(",", ";").split(";"):
        if part.strip():
            if "=" not in part:
                raise InputError(f"options: {part!r} is not key=value.")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def pair_degradation(row: dict, lr, scale: int):
    """The degradation a manifest row describes, with the command line's defaults (Gaussian PSF of
    sigma scale/4, the CAVE Nikon D700 response); with no degradation column, the one the LR file
    records (``hsisr simulate``) when it has one."""
    import numpy as np

    from .degradation import Degradation
    from .srf import NIKON_D700_CAVE

    wl = lr.wavelengths
    if row.get("wavelengths"):
        try:
            a, b, c = (float(v) for v in str(row["wavelengths"]).split(":"))
        except ValueError:
            raise InputError(f"wavelengths {row['wavelengths']!r}: expected start:stop:step in nm.") from None
        wl = np.arange(a, b + c / 2, c)
    recorded = (lr.metadata.get("settings") or {}).get("degradation")
    if isinstance(recorded, dict) and not any(row.get(k) for k in ("psf", "psf_sigma", "srf")):
        return Degradation.from_settings(recorded)
    kw = {"scale": int(row.get("scale") or scale), "wavelengths": wl, "n_bands": int(np.shape(lr.data)[0]),
          "psf": str(row.get("psf") or "gaussian"), "srf": str(row.get("srf") or NIKON_D700_CAVE),
          "hr_encoding": str(row.get("hr_encoding") or "auto")}
    if row.get("psf_sigma"):
        kw["psf_sigma"] = float(row["psf_sigma"])
    return Degradation(**kw)


def fuse_pair(row: dict, out_dir: str, seed: int = 0, device: str = "cpu", threads: int = 1) -> PairOutcome:
    """One manifest row, start to end, in this process: read, fuse, write ``<out_dir>/<name>.tif``.
    Never raises: a failure is the outcome's status and one-line message."""
    start = time.perf_counter()
    name = row.get("name", "?")
    out = Path(out_dir) / f"{name}.tif"
    key = request_key(row)
    try:
        if out.exists() and _recorded_key(out) == key:
            return PairOutcome(name, "skipped", 0.0, str(out), message="up to date")
        import numpy as np
        import torch

        torch.set_num_threads(max(1, int(threads)))
        from .api import _fuse_gen, run_to_end
        from .grids import match_ratio
        from .io import read_cube, read_image, write_tiff

        lr = read_cube(row["lr"])
        hr = read_image(row["hr"])
        match = match_ratio(hr.shape[:2], lr.data.shape[-2:])
        if match.action != "exact":
            raise InputError(f"HR image {hr.shape[0]}x{hr.shape[1]} is not a whole multiple of the LR cube "
                             f"{lr.data.shape[1]}x{lr.data.shape[2]}: {match.message}")
        deg = pair_degradation(row, lr, match.scale)
        wl = deg.wavelengths
        method = str(row.get("method") or "fast")
        tile = row.get("tile")
        gen = _fuse_gen(hr, lr.data, deg, method, seed, device, None, "hr", lr.mask,
                        None if tile in (None, "") else (tile if tile == "auto" else int(tile)), None,
                        _options(row.get("options")))
        result = run_to_end(gen)
        result.settings.update(hr_file=row["hr"], lr_file=row["lr"], batch={"request": key, "row": row})
        write_tiff(out, np.asarray(result.cube), wavelengths=wl, settings=result.settings)
        fit = result.settings.get("fit", {})
        return PairOutcome(name, "done", round(time.perf_counter() - start, 2), str(out),
                           fit.get("lr", {}).get("relative"), fit.get("hr", {}).get("relative"),
                           "; ".join(result.settings.get("warnings", []))[:300])
    except Exception as exc:  # noqa: BLE001 - one failed pair must not stop a campaign
        message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        return PairOutcome(name, "failed", round(time.perf_counter() - start, 2), None,
                           message=message.splitlines()[0][:300] if message else type(exc).__name__)


def fuse_many(pairs, out_dir: str | os.PathLike, client=None, scheduler: str | None = None,
              workers: int | None = None, seed: int = 0, device: str = "cpu", progress=None) -> list[PairOutcome]:
    """Fuse every pair of a manifest (a path, or rows as :func:`read_manifest` returns them) on
    dask.distributed: ``client`` (an existing ``distributed.Client``), else ``scheduler`` (an
    address), else a ``LocalCluster`` of ``workers`` single-threaded processes (default: one per
    core). ``progress(done, total, outcome)`` is called as pairs finish. Returns the outcomes in
    manifest order."""
    from distributed import Client, LocalCluster, as_completed

    rows = read_manifest(pairs) if isinstance(pairs, (str, os.PathLike)) else list(pairs)
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"{out}: the output folder does not exist; create it first (mkdir -p {out}).")
    cluster = own = None
    if client is None:
        if scheduler:
            client = own = Client(scheduler)
        else:
            n = int(workers or os.cpu_count() or 1)
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
            client = own = Client(cluster)
    try:
        run = uuid.uuid4().hex[:8]  # a fresh key per call: a client keeps earlier calls' results by key
        futures = {client.submit(fuse_pair, row, str(out), seed, device, 1, key=f"hsisr-{run}-{i}-{row['name']}",
                                 pure=False): i for i, row in enumerate(rows)}
        outcomes: list = [None] * len(rows)
        for done, fut in enumerate(as_completed(futures), start=1):
            i = futures[fut]
            try:
                outcomes[i] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker lost mid-task, say
                outcomes[i] = PairOutcome(rows[i]["name"], "failed", 0.0, None, message=f"{type(exc).__name__}: {exc}")
            if progress is not None:
                progress(done, len(rows), outcomes[i])
        return outcomes
    finally:
        if own is not None:
            own.close()
        if cluster is not None:
            cluster.close()


def summary_table(outcomes: list[PairOutcome]) -> str:
    """A Markdown table: pair, status, seconds, LR and HR fit (%), message."""
    lines = ["| pair | status | seconds | LR fit % | HR fit % | message |", "|---|---|---|---|---|---|"]
    pct = lambda v: "" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for o in outcomes:
        lines.append(f"| {o.name} | {o.status} | {o.seconds:.1f} | {pct(o.fit_lr)} | {pct(o.fit_hr)} | "
                     f"{o.message.replace('|', '/')} |")
    return "\n".join(lines)
