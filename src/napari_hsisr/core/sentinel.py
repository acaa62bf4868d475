"""Sentinel-2 responses for multispectral HR images from satellites (no Qt, no napari).

The measured Sentinel-2A responses most fusion code uses ship as HIFtool's ``Sentinel2A_191_13.mat``
(``R``: 191 samples x 13 bands, B01..B12 with B8A, no wavelength column). The 191 samples are
400..2400 nm in equal steps: with that grid each band's response centroid falls within 12 nm of
ESA's published centre wavelength for B01..B11 (tests/test_georef.py checks it), so the grid is
taken as that, and said so in the response's name.

``--srf Sentinel2A_191_13.mat:B02,B03,B04,B08`` picks the bands the HR image holds, in its order;
with a band table giving FWHMs, the picked response is integrated over the cube's bands
(:mod:`.band_responses`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: ESA's centre wavelengths of Sentinel-2A (nm), for checks and messages
S2A_CENTRES = (442.7, 492.4, 559.8, 664.6, 704.1, 740.5, 782.8, 832.8, 864.7, 945.1, 1373.5, 1613.7, 2202.4)
HIFTOOL_GRID = np.linspace(400.0, 2400.0, 191)


def split_band_pick(spec):
    """``"file.mat:B02,B03"`` -> (``"file.mat"``, ["B02", "B03"]); anything else unchanged, None."""
    if not isinstance(spec, str) or ".mat:" not in spec.lower():
        return spec, None
    head, _, tail = spec.rpartition(":")
    names = [_band_name(t) for t in tail.split(",") if t.strip()]
    return head, names


def _band_name(text: str) -> str:
    """'b2', 'B02', '2' -> 'B02'; '8a' -> 'B8A'."""
    t = text.strip().upper().lstrip("B")
    return "B8A" if t == "8A" else f"B{int(t):02d}" if t.isdigit() else f"B{t}"


def load_mat_response(path: Path) -> tuple[str, np.ndarray, np.ndarray, tuple[str, ...]]:
    """A response table from a MATLAB file: HIFtool's Sentinel-2A table (``R``, 191 x 13) on its
    400..2400 nm grid, channels B01..B12, as (name, wavelengths, matrix, channels) for
    :class:`.srf.SpectralResponse`; other .mat files are refused with what is expected."""
    from scipy.io import loadmat

    try:
        arrays = {k: v for k, v in loadmat(str(path)).items() if not k.startswith("__")}
    except Exception as exc:  # noqa: BLE001 - v7.3 or not a .mat
        raise InputError(f"{path.name}: not a readable MATLAB response table ({exc}).") from None
    r = np.asarray(arrays.get("R", np.empty(0)), float)
    if r.shape != (191, 13):
        raise InputError(f"{path.name}: holds {sorted(arrays)}; a .mat response is read only as HIFtool's Sentinel-2A "
                         "table (R, 191 x 13); give other responses as CSV (wavelength in nm, one column per channel).")
    return f"Sentinel-2A ({path.name}, 400..2400 nm in 191 steps)", HIFTOOL_GRID, r, S2_BANDS
