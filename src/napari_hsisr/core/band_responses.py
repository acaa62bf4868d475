"""Responses on a cube's own bands from a band table's centre and FWHM (no Qt, no napari).

EnMAP and PRISMA cubes ship a band table with each band's centre and FWHM (10-30 nm in the SWIR).
Sampling an HR sensor's measured response at the band centres misses what a wide cube band sees;
with the FWHM, each cube band is a Gaussian and the HR channel's response on the cube's bands is
the HR response integrated against it (:func:`band_integrated_srf`). ``hsisr fuse`` does this when
the band table has a FWHM column and ``--srf`` names a response table (a preset or a file).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from .errors import InputError

_FWHM = re.compile(r"^(fwhm|bandwidth|band_width)")


def read_band_fwhm(path) -> np.ndarray | None:
    """The FWHM column (nm) of a CSV band table, or None when it has none. Values all < 1 are
    micrometres (as the NEON-style tables give centres) and converted to nm."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and not r[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError):
        return None
    if len(rows) < 2:
        return None
    header = [h.strip().lower().replace(" ", "_") for h in rows[0]]
    col = next((i for i, h in enumerate(header) if _FWHM.match(h)), None)
    if col is None:
        return None
    try:
        fwhm = np.array([float(r[col]) for r in rows[1:]])
    except (ValueError, IndexError):
        raise InputError(f"{Path(path).name}: the '{rows[0][col].strip()}' column holds a value that is not a "
                         "number; one FWHM per band is needed.") from None
    return fwhm * 1000.0 if np.all(fwhm < 1) else fwhm


def gaussian_band_responses(centres_nm, fwhm_nm, grid_nm) -> np.ndarray:
    """(L, C) Gaussian responses of a cube's bands (EnMAP/PRISMA band tables give centre and FWHM)
    sampled on ``grid_nm``; each column sums to 1."""
    c, f, g = (np.asarray(v, float).reshape(-1) for v in (centres_nm, fwhm_nm, grid_nm))
    if c.shape != f.shape or np.any(f <= 0):
        raise InputError("band table: one positive FWHM (nm) per band centre is needed.")
    sigma = f / (2 * np.sqrt(2 * np.log(2)))
    m = np.exp(-0.5 * ((g[:, None] - c[None, :]) / sigma[None, :]) ** 2)
    return m / np.maximum(m.sum(axis=0, keepdims=True), 1e-300)


def band_integrated_srf(srf, centres_nm, fwhm_nm) -> np.ndarray:
    """(C, k) response of an HR sensor on a cube's bands: each cube band's Gaussian (centre, FWHM)
    integrated against the HR sensor's measured response, rather than the response sampled at the
    band centres (which misses narrow HR bands between wide cube bands). Columns sum to 1."""
    g = np.asarray(srf.wavelengths, float)
    fine = np.arange(g[0], g[-1] + 0.5, 1.0)  # 1 nm: finer than any band
    hr = np.stack([np.interp(fine, g, srf.matrix[:, j], left=0, right=0) for j in range(srf.n_channels)], axis=1)
    m = gaussian_band_responses(centres_nm, fwhm_nm, fine).T @ hr
    s = m.sum(axis=0, keepdims=True)
    if np.any(s <= 0):
        raise InputError(f"{srf.name}: some channels fall outside the cube's bands; pick the channels the cube covers.")
    return m / s


def cube_band_srf(spec, centres_nm, fwhm_nm):
    """(matrix (C, k), name) for a response table ``spec`` (a preset name, a file, a
    ``file.mat:B02,...`` pick, a SpectralResponse) integrated over the cube's Gaussian bands; None
    when ``spec`` is not a table (a matrix on the cube's bands, or a request to estimate it)."""
    from .sentinel import split_band_pick
    from .srf import SpectralResponse, get_preset, load_srf_file, pick_channels

    if not isinstance(spec, (str, Path, SpectralResponse)):
        return None
    spec, pick = split_band_pick(spec)
    try:
        srf = spec if isinstance(spec, SpectralResponse) else (
            load_srf_file(spec) if Path(spec).is_file() else get_preset(str(spec)))
    except InputError:
        return None  # a bare matrix or an unknown name: left to the usual resolution and its message
    if pick:
        srf = pick_channels(srf, pick)
    return band_integrated_srf(srf, centres_nm, fwhm_nm), srf.name
