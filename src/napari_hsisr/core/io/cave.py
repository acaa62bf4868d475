"""CAVE folders: one 16-bit PNG per band, ``<scene>_ms_NN.png`` (NN = 01 for 400 nm, 10 nm apart)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import CubeFile, read_error

_CAVE_RE = re.compile(r"^(?P<scene>.+)_ms_(?P<nn>\d+)\.png$", re.IGNORECASE)


def find_cave_bands(path: str | os.PathLike) -> list[tuple[int, Path]] | None:
    """Return [(NN, png_path), ...] sorted by NN if ``path`` is (in) a CAVE folder, else None."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if path.is_file() and not _CAVE_RE.match(path.name):
        return None
    for cand in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())) if folder.is_dir() else ():
        bands = []
        for p in cand.iterdir():
            m = _CAVE_RE.match(p.name)
            if m and p.is_file():
                bands.append((int(m.group("nn")), p))
        if bands:
            return sorted(bands)
    return None


def read_cave(path: Path, bands: list[tuple[int, Path]]) -> CubeFile:
    import imageio.v3 as iio

    planes, scales = [], set()
    for _, p in bands:
        try:
            img = np.asarray(iio.imread(p))
        except Exception as exc:
            raise read_error(p, exc) from exc
        if img.ndim == 3:
            img = img[..., 0]
        if img.ndim != 2:
            raise InputError(f"{p}: band image has shape {img.shape}; expected (Y, X) or "
                             "(Y, X, 3/4). Replace the band file.")
        scale = 65535.0 if img.dtype.itemsize >= 2 else 255.0
        scales.add(scale)
        planes.append(img.astype(np.float32) / np.float32(scale))
    shapes = {pl.shape for pl in planes}
    if len(shapes) != 1:
        raise InputError(f"{path}: CAVE bands have different shapes {sorted(shapes)}; expected "
                         "one (Y, X) shape for all bands. Check the folder contents.")
    nns = np.asarray([nn for nn, _ in bands], dtype=float)
    meta = {"format": "cave", "source": str(path), "bands": [str(p) for _, p in bands],
            "value_scale": 1.0 / max(scales) if len(scales) == 1 else [1.0 / s for s in sorted(scales)],
            "scaling": ", ".join(f"divided by {s:g}" for s in sorted(scales))}
    return CubeFile(np.stack(planes), 400.0 + 10.0 * (nns - 1), meta)
