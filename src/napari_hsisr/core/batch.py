"""Many pairs on a dask.distributed cluster: a field campaign, a folder of scenes.

A manifest (CSV or YAML) lists pairs: ``name, hr, lr`` and optionally ``method``, ``scale``,
``psf``, ``psf_sigma``, ``psf_size``, ``psf_sigma2``, ``psf_angle``, ``boundary``, ``shift`` (``dy,dx``),
``srf`` (or ``response``; ``estimate``: from the pair), ``wavelengths``
(``start:stop:step`` nm), ``hr_encoding`` (or ``encoding``), ``tile``, ``options``
(``key=value;key=value``) and the LR file's ``value_scale`` (default ``auto``: the file's documented
scale), ``band_table`` (default: the one beside the file), ``drop_bands`` (``auto`` or 1-based
numbers as ``193-210,284-315``) and ``lr_nodata``, as ``hsisr fuse`` takes them. Relative paths are
relative to the manifest; the output folder is created when missing.
:func:`fuse_many` submits one task per pair to a ``LocalCluster`` (one single-threaded worker
process per core) or to an existing scheduler; each task reads its pair, fuses it (in tiles when
``tile`` is set) and writes ``<out>/<name>.tif`` atomically with its settings. A pair that fails
is reported and the others go on; a pair whose output exists, reads back whole and records the same
request (inputs with their sizes and times, every setting, the seed) is skipped, so a campaign can
be re-run after an interruption; a damaged output is redone.

Outputs follow :mod:`.outputs`, checked for every pair before any work starts: a name is a plain
file name (no folder, no ``..``; an empty one is ``<LR file's stem>_fused``), no two pairs write one
output, no output is any pair's input, and an existing output is replaced only when it is a fusion
result of ours.
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
from .io import parse_band_numbers
from .outputs import claim, confine_name, remove_stale, same_file

COLUMNS = ("name", "hr", "lr", "method", "scale", "psf", "psf_sigma", "psf_size", "psf_sigma2", "psf_angle",
           "boundary", "shift", "srf", "wavelengths", "hr_encoding", "tile", "options", "value_scale", "band_table",
           "drop_bands", "lr_nodata", "lr_crs", "hr_bands")
# the command line's words for two columns (hsisr fuse --srf/--hr-encoding say response and encoding)
ALIASES = {"response": "srf", "encoding": "hr_encoding"}


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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a manifest is a CSV or YAML "
                         "text file.") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or []
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise InputError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', None) or exc}); a manifest "
                             "is a list of pairs such as '- {name: a, hr: a.tif, lr: a_lr.tif}'.") from None
        rows = data.get("pairs", []) if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"{path}: a YAML manifest is a list of pairs (name, hr, lr, ...).")
    elif path.suffix.lower() == ".csv":
        import io

        try:
            rows = [{k.strip(): (v or "").strip() if isinstance(v, str) else v for k, v in r.items() if k}
                    for r in csv.DictReader(io.StringIO(text, newline=""))]
        except csv.Error as exc:
            raise InputError(f"{path}: not a readable CSV ({exc}); a manifest has a header row "
                             "name,hr,lr,...") from None
    else:
        raise InputError(f"{path}: a manifest is a .csv or .yaml file.")
    out, seen = [], set()
    for i, row in enumerate(rows, start=1):
        row = {ALIASES.get(k, k): v for k, v in row.items() if v not in (None, "")}
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise InputError(f"{path}: pair {i} has unknown column(s) {sorted(unknown)}; the columns are "
                             f"{', '.join(COLUMNS)}.")
        for need in ("hr", "lr"):
            if need not in row:
                raise InputError(f"{path}: pair {i} has no '{need}' path.")
        # an empty name is not the LR file's own stem: with --out in the LR's folder that is the input
        row["name"] = confine_name(row.get("name") or f"{Path(str(row['lr'])).stem}_fused", f"{path}: pair {i}'s name")
        if row["name"].casefold() in seen:  # one file on case-insensitive file systems
            raise InputError(f"{path}: two pairs are named {row['name']!r}; names must be unique (they name "
                             "the outputs).")
        seen.add(row["name"].casefold())
        for key in ("hr", "lr", "band_table"):
            if key in row:
                p = Path(str(row[key]))
                row[key] = str(p if p.is_absolute() else (path.parent / p))
        _check_row(row, f"{path}: pair {i} ({row['name']})")
        out.append(row)
    if not out:
        raise InputError(f"{path}: the manifest lists no pairs.")
    return out


def _check_row(row: dict, where: str) -> None:
    """A row's values checked before any cluster starts (a method that does not exist, an option it
    does not take or out of its range, a scale, sigma or tile that is not a number): a user's error
    is one line and exit 2, not a failed pair after the cluster ran."""
    import math

    from .methods import get_method

    def number(key):
        try:
            return float(row[key])
        except (TypeError, ValueError):
            raise InputError(f"{where}: {key} {row[key]!r} is not a number.") from None

    try:
        get_method(str(row.get("method") or "fast")).parse_options(_options(row.get("options")))
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if row.get("scale") not in (None, "") and not (number("scale").is_integer() and number("scale") >= 2):
        raise InputError(f"{where}: scale must be an integer >= 2, got {row['scale']!r}.")
    for key in ("psf_sigma", "psf_sigma2", "psf_angle", "psf_size"):
        if row.get(key) not in (None, "") and not math.isfinite(number(key)):
            raise InputError(f"{where}: {key} must be a finite number, got {row[key]!r}.")
    if row.get("boundary") not in (None, "", "reflect", "symmetric", "wrap", "zero"):
        raise InputError(f"{where}: boundary is one of reflect, symmetric, wrap, zero, got {row['boundary']!r}.")
    if row.get("shift") not in (None, ""):
        from .degradation import parse_shift

        try:
            parse_shift(row["shift"])
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    if row.get("tile") not in (None, "", "auto") and not (number("tile").is_integer() and number("tile") > 0):
        raise InputError(f"{where}: tile must be a positive number of HR pixels or 'auto', got {row['tile']!r}.")
    if str(row.get("value_scale", "auto")).lower() != "auto" and not math.isfinite(number("value_scale")):
        raise InputError(f"{where}: value_scale must be a number (e.g. 1e-4) or 'auto', got {row['value_scale']!r}.")
    if row.get("lr_nodata") not in (None, ""):
        number("lr_nodata")
    try:
        parse_band_numbers(row.get("drop_bands"), "drop_bands")
        parse_band_numbers(row.get("hr_bands"), "hr_bands")
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def output_path(row: dict, out_dir) -> Path:
    return Path(out_dir) / f"{confine_name(row.get('name'), 'pair name')}.tif"


def check_outputs(rows: list[dict], out_dir) -> list[Path]:
    """Every pair's output checked before any work starts (:mod:`.outputs`): unique, inside
    ``out_dir``, none of them any pair's input, none replacing what is not a fusion result of ours."""
    outs = [output_path(row, out_dir) for row in rows]
    seen: dict[str, str] = {}
    for row, out in zip(rows, outs):
        key = str(out.resolve()).casefold()
        if key in seen:
            raise InputError(f"pairs {seen[key]!r} and {row['name']!r} both write {out}; give them different names.")
        seen[key] = row["name"]
    inputs = [(r["name"], r[k]) for r in rows for k in ("hr", "lr")]
    for row, out in zip(rows, outs):
        for name, other in inputs:
            if same_file(out, other):
                raise InputError(f"pair {row['name']!r} would write {out}, which is pair {name!r}'s input; give it "
                                 "another name or --out folder (nothing was written).")
        claim(out, fused=True, flag=f"pair {row['name']!r}: output")
    return outs


def request_key(row: dict, seed: int = 0, device: str = "cpu") -> str:
    """What makes an output up to date: the row, the seed and device, and its input files' sizes
    and times."""
    stamp = {}
    for key in ("hr", "lr"):
        try:
            st = os.stat(row[key])
            stamp[key] = [st.st_size, int(st.st_mtime)]
        except OSError:
            stamp[key] = None
    text = json.dumps({"row": row, "files": stamp, "seed": int(seed), "device": str(device)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def up_to_date(path: Path, key: str) -> bool:
    """Whether a kept output is complete (every page read back: a truncated or damaged file is not),
    finite, of the size it records and made by the request ``key``."""
    import numpy as np

    from .io import read_cube

    try:
        cube = read_cube(path)
    except Exception:  # noqa: BLE001 - unreadable: redone
        return False
    settings = cube.metadata.get("settings") or {}
    shape = settings.get("hr_shape") or []
    return ((settings.get("batch") or {}).get("request") == key and cube.data.ndim == 3
            and list(cube.data.shape[1:]) == list(shape[:2]) and bool(np.isfinite(cube.data).all()))


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


def pair_degradation(row: dict, lr, scale: int, hr_dtype=None):
    """The degradation a manifest row describes (:class:`.degradation.DegradationSpec`, as
    ``hsisr fuse`` builds it from its flags) with the command line's defaults (Gaussian PSF of sigma
    scale/4, the CAVE Nikon D700 response); with no degradation column, the one the LR file
    records (``hsisr simulate``) when it has one."""
    import numpy as np

    from .degradation import DegradationSpec
    from .srf import NIKON_D700_CAVE

    def given(key, kind=str):
        return None if row.get(key) in (None, "") else kind(row[key])

    spec = DegradationSpec(
        scale=int(row.get("scale") or scale), psf=given("psf"), psf_sigma=given("psf_sigma", float),
        psf_size=given("psf_size", lambda v: int(float(v))), psf_sigma2=given("psf_sigma2", float),
        psf_angle=given("psf_angle", float), boundary=given("boundary"), srf=given("srf"),
        wavelengths=given("wavelengths") or lr.wavelengths, n_bands=int(np.shape(lr.data)[0]), shift=given("shift"),
        hr_encoding=str(row.get("hr_encoding") or "auto"))
    recorded = (lr.metadata.get("settings") or {}).get("degradation")
    return spec.build(recorded if isinstance(recorded, dict) else None, hr_dtype, default_srf=NIKON_D700_CAVE)[0]


def read_pair_cube(row: dict):
    """A row's LR cube read as ``hsisr fuse`` reads it: the file's documented scale unless the row
    gives one, its band table (the row's, else the one beside it), bands dropped, nodata."""
    from .io import read_cube

    scale = row.get("value_scale", "auto")
    return read_cube(row["lr"], value_scale="auto" if str(scale).lower() == "auto" else float(scale),
                     wavelengths=row.get("band_table") or "auto",
                     drop_bands=parse_band_numbers(row.get("drop_bands"), "drop_bands"),
                     nodata=None if row.get("lr_nodata") in (None, "") else float(row["lr_nodata"]))


def fuse_pair(row: dict, out_dir: str, seed: int = 0, device: str = "cpu", threads: int = 1) -> PairOutcome:
    """One manifest row, start to end, in this process: read, fuse, write ``<out_dir>/<name>.tif``.
    Never raises: a failure is the outcome's status and one-line message."""
    start = time.perf_counter()
    name = row.get("name", "?")
    key = request_key(row, seed, device)
    try:
        out = output_path(row, out_dir)
        if out.exists() and up_to_date(out, key):
            return PairOutcome(name, "skipped", 0.0, str(out), message="up to date")
        import numpy as np
        import torch

        torch.set_num_threads(max(1, int(threads)))
        from .api import fuse
        from .grids import match_ratio
        from .io import output_geo, read_image_file, write_tiff

        lr = read_pair_cube(row)
        geo_pair = _pair_by_coordinates(row, lr)  # two georeferenced files: the HR image on the cube's grid
        if geo_pair is not None:
            lr, hr_file = geo_pair
        else:
            hr_file = read_image_file(row["hr"])
        hr = hr_file.data
        match = match_ratio(hr.shape[:2], lr.data.shape[-2:])
        if match.action != "exact":
            raise InputError(f"HR image {hr.shape[0]}x{hr.shape[1]} is not a whole multiple of the LR cube "
                             f"{lr.data.shape[1]}x{lr.data.shape[2]}: {match.message}")
        deg = pair_degradation(row, lr, match.scale, hr.dtype)
        wl = deg.wavelengths
        method = str(row.get("method") or "fast")
        tile = row.get("tile")
        result = fuse(hr, lr.data, deg, method, seed, device, lr_valid=lr.mask,  # lr_nodata: in lr.mask
                      tile=None if tile in (None, "") else (tile if tile == "auto" else int(tile)),
                      **_options(row.get("options")))
        result.settings.update(hr_file=row["hr"], lr_file=row["lr"], batch={"request": key, "row": row})
        geo = output_geo(hr_file.metadata, lr.metadata, match.scale)  # a georeferenced pair: a GeoTIFF a GIS places
        write_tiff(out, np.asarray(result.cube), wavelengths=wl, settings=result.settings,
                   inputs=(row["hr"], row["lr"]), format="geotiff" if geo else "imagej", geo=geo)
        fit = result.settings.get("fit", {})
        return PairOutcome(name, "done", round(time.perf_counter() - start, 2), str(out),
                           fit.get("lr", {}).get("relative"), fit.get("hr", {}).get("relative"),
                           "; ".join(result.settings.get("warnings", []))[:300])
    except Exception as exc:  # noqa: BLE001 - one failed pair must not stop a campaign
        message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        return PairOutcome(name, "failed", round(time.perf_counter() - start, 2), None,
                           message=message.splitlines()[0][:300] if message else type(exc).__name__)


def _pair_by_coordinates(row: dict, lr):
    """(cube cropped, HR image on its grid) for a georeferenced pair (:mod:`.georef`), else None."""
    from .georef import as_image_file, pair_by_coordinates

    scale = row.get("scale")
    pair = pair_by_coordinates(row["hr"], lr, row["lr"], scale=None if scale in (None, "") else int(float(scale)),
                               lr_crs=row.get("lr_crs"), hr_bands=parse_band_numbers(row.get("hr_bands"), "hr_bands"))
    return None if pair is None else (pair.lr, as_image_file(pair, row["hr"]))


def fuse_many(pairs, out_dir: str | os.PathLike, client=None, scheduler: str | None = None,
              workers: int | None = None, seed: int = 0, device: str = "cpu", progress=None) -> list[PairOutcome]:
    """Fuse every pair of a manifest (a path, or rows as :func:`read_manifest` returns them) on
    dask.distributed: ``client`` (an existing ``distributed.Client``), else ``scheduler`` (an
    address), else a ``LocalCluster`` of ``workers`` single-threaded processes (default: one per
    core). ``progress(done, total, outcome)`` is called as pairs finish. Returns the outcomes in
    manifest order."""
    from distributed import as_completed

    from .parallel import dask_client

    rows = read_manifest(pairs) if isinstance(pairs, (str, os.PathLike)) else list(pairs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; --out names the folder the results go in.")
    try:  # a campaign's results folder is the tool's to make (its parents too, as mkdir -p)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror}).") from None
    outs = check_outputs(rows, out)  # before any cluster starts
    try:
        with dask_client(workers, scheduler, client) as client:
            run = uuid.uuid4().hex[:8]  # a fresh key per call: a client keeps earlier calls' results by key
            futures = {client.submit(fuse_pair, row, str(out), seed, device, 1, key=f"hsisr-{run}-{i}-{row['name']}",
                                     pure=False): i for i, row in enumerate(rows)}
            outcomes: list = [None] * len(rows)
            for done, fut in enumerate(as_completed(futures), start=1):
                i = futures[fut]
                try:
                    outcomes[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker lost mid-task, say
                    outcomes[i] = PairOutcome(rows[i]["name"], "failed", 0.0, None,
                                              message=f"{type(exc).__name__}: {exc}")
                if progress is not None:
                    progress(done, len(rows), outcomes[i])
            return outcomes
    finally:
        for path in outs:  # what workers stopped mid-write left (their processes are gone now)
            remove_stale(path)


def summary_table(outcomes: list[PairOutcome]) -> str:
    """A Markdown table: pair, status, seconds, LR and HR fit (%), message."""
    lines = ["| pair | status | seconds | LR fit % | HR fit % | message |", "|---|---|---|---|---|---|"]
    pct = lambda v: "" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for o in outcomes:
        lines.append(f"| {o.name} | {o.status} | {o.seconds:.1f} | {pct(o.fit_lr)} | {pct(o.fit_hr)} | "
                     f"{o.message.replace('|', '/')} |")
    return "\n".join(lines)
