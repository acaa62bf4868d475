"""Spectral response functions (SRFs): presets, files, and resampling onto a cube's bands.

An SRF says how a high-resolution image's k channels (e.g. R, G, B) weight the spectrum. Tables
are stored raw (:class:`SpectralResponse`: wavelengths in nm, an (L, k) matrix); to apply one to a
cube with C bands it is resampled onto the cube's wavelengths and each channel is normalised to
sum 1 over the cube's bands, giving a (C, k) matrix ``R`` with ``hr[y, x, :] = cube[:, y, x] @ R``.

Presets (see ``napari_hsisr/data/srf/SOURCES.md`` for provenance):

* the 28 cameras of the Jiang/Liu/Gu/Süsstrunk camspec database (names verbatim, e.g.
  ``"Canon 5DMarkII"``, ``"Nikon D700"``), 400..720 nm every 10 nm, channels R, G, B;
* ``"Nikon D700 (CAVE fusion papers)"`` (alias ``"nikon_d700_cave"``), the HIFtool matrix used by
  the CAVE fusion benchmark protocols, 400..700 nm every 10 nm, channels R, G, B;
* ``"CIE 1931"``: the CIE 1931 2-degree colour matching functions, 360..830 nm every 5 nm,
  channels X, Y, Z.

Preset lookup ignores case, spaces, underscores and hyphens (``"canon_5d_mark_ii"`` finds
``"Canon 5DMarkII"``).

numpy only.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "SpectralResponse",
    "list_presets",
    "get_preset",
    "load_srf_file",
    "resample_srf",
    "resolve_srf",
    "normalize_columns",
    "NIKON_D700_CAVE",
    "CIE_1931",
    "DEFAULT_31_BAND_WAVELENGTHS",
]

NIKON_D700_CAVE = "Nikon D700 (CAVE fusion papers)"
CIE_1931 = "CIE 1931"
SRGB = "sRGB (CIE 1931, D65)"
#: XYZ -> linear sRGB (IEC 61966-2-1): what a camera's colour pipeline aims at for sRGB output
XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])

#: Wavelengths assumed for a 31-band cube given without wavelengths (CAVE / ICVL / Harvard layout).
DEFAULT_31_BAND_WAVELENGTHS = np.linspace(400.0, 700.0, 31)

ALIASES = {
    "nikon_d700_cave": NIKON_D700_CAVE,
    "cie1931_2deg": CIE_1931,
    "cie 1931 2 degree": CIE_1931,
    "cie 1931 2 degree standard observer": CIE_1931,
    "srgb": SRGB,
    "linear srgb": SRGB,
}


@dataclass(frozen=True, eq=False)
class SpectralResponse:
    """A raw spectral response table.

    ``wavelengths`` (L,) in nm, strictly increasing; ``matrix`` (L, k) raw (unnormalised,
    non-negative unless ``signed``) responses, one column per channel; ``channels`` the k channel
    names. Arrays are stored as read-only float64 copies. Instances compare by identity.
    ``signed`` responses have a colour-correction matrix folded in (negative lobes), like sRGB.
    """

    name: str
    wavelengths: np.ndarray
    matrix: np.ndarray
    channels: tuple[str, ...]
    signed: bool = False

    def __post_init__(self) -> None:
        wl = np.array(self.wavelengths, dtype=np.float64).reshape(-1)
        m = np.array(self.matrix, dtype=np.float64)
        if m.ndim == 1:
            m = m[:, None]
        if m.ndim != 2:
            raise InputError(f"SRF {self.name!r}: matrix must be (L, k), got shape {m.shape}.")
        if m.shape[0] != wl.shape[0]:
            raise InputError(
                f"SRF {self.name!r}: {wl.shape[0]} wavelengths but the matrix has {m.shape[0]} rows."
            )
        if wl.shape[0] < 2:
            raise InputError(f"SRF {self.name!r}: need at least 2 wavelength samples, got {wl.shape[0]}.")
        if not (np.all(np.isfinite(wl)) and np.all(np.isfinite(m))):
            raise InputError(f"SRF {self.name!r}: contains NaN/Inf; fix the table.")
        if np.any(m < 0) and not self.signed:
            raise InputError(f"SRF {self.name!r}: contains negative responses; responses must be >= 0.")
        order = np.argsort(wl, kind="stable")
        wl, m = wl[order], m[order]
        if np.any(np.diff(wl) <= 0):
            raise InputError(f"SRF {self.name!r}: wavelengths contain duplicates; each must appear once.")
        channels = tuple(str(c) for c in self.channels)
        if len(channels) != m.shape[1]:
            raise InputError(
                f"SRF {self.name!r}: {len(channels)} channel names for {m.shape[1]} matrix columns."
            )
        wl.setflags(write=False)
        m.setflags(write=False)
        object.__setattr__(self, "wavelengths", wl)
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "channels", channels)

    @property
    def n_channels(self) -> int:
        return int(self.matrix.shape[1])

    def __repr__(self) -> str:  # arrays make the default repr unreadable
        return (
            f"SpectralResponse(name={self.name!r}, {self.wavelengths[0]:g}..{self.wavelengths[-1]:g} nm, "
            f"L={self.wavelengths.shape[0]}, channels={self.channels})"
        )


# ----------------------------------------------------------------------------- presets
def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


def _load_npz(fname: str) -> dict[str, np.ndarray]:
    with files("napari_hsisr.data").joinpath("srf").joinpath(fname).open("rb") as fh:
        with np.load(fh, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


@lru_cache(maxsize=1)
def _presets() -> dict[str, SpectralResponse]:
    out: dict[str, SpectralResponse] = {}
    cam = _load_npz("camspec28.npz")
    for name, mat in zip(cam["names"], cam["matrices"]):
        out[str(name)] = SpectralResponse(str(name), cam["wavelengths"], mat, ("R", "G", "B"))
    nik = _load_npz("nikon_d700_cave.npz")
    out[NIKON_D700_CAVE] = SpectralResponse(NIKON_D700_CAVE, nik["wavelengths"], nik["matrix"], ("R", "G", "B"))
    cie = _load_npz("cie1931_2deg.npz")
    out[CIE_1931] = SpectralResponse(CIE_1931, cie["wavelengths"], cie["matrix"], ("X", "Y", "Z"))
    # the colour matching functions of linear sRGB: what an sRGB camera image encodes once decoded
    out[SRGB] = SpectralResponse(SRGB, cie["wavelengths"], cie["matrix"] @ XYZ_TO_SRGB.T, ("R", "G", "B"), signed=True)
    return out


@lru_cache(maxsize=1)
def _lookup() -> dict[str, str]:
    table = {_key(n): n for n in _presets()}
    for alias, canonical in ALIASES.items():
        table.setdefault(_key(alias), canonical)
    return table


def list_presets() -> list[str]:
    """Canonical names of all built-in SRF presets (28 cameras, the Nikon D700 CAVE matrix, CIE 1931)."""
    return list(_presets())


def find_preset(name: str) -> str | None:
    return _lookup().get(_key(name))


def get_preset(name: str) -> SpectralResponse:
    """The built-in preset called ``name`` (case, spaces, underscores and hyphens ignored)."""
    canonical = find_preset(name)
    if canonical is None:
        close = difflib.get_close_matches(_key(name), list(_lookup()), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(repr(_lookup()[c]) for c in close)}?" if close else ""
        raise InputError(
            f"Unknown spectral response preset {name!r}.{hint} See list_presets() for the "
            f"{len(_presets())} available names, or pass a CSV/NPY file or a (C, k) matrix."
        )
    return _presets()[canonical]


# ----------------------------------------------------------------------------- files
def _parse_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _split(line: str) -> list[str]:
    for delim in (",", ";", "\t"):
        if delim in line:
            return [p.strip() for p in line.split(delim)]
    return line.split()


class _PlainMatrix(Exception):
    """A response file that holds a bare (C, k) matrix rather than a wavelength table."""

    def __init__(self, matrix: np.ndarray):
        super().__init__("plain matrix")
        self.matrix = matrix


def load_srf_file(path: str | Path) -> SpectralResponse:
    """A response table from a file (see :func:`_load_table`); a bare matrix is refused here
    (:func:`resolve_srf` takes it as a matrix on the cube's bands)."""
    try:
        return _load_table(path)
    except _PlainMatrix as plain:
        rows, cols = plain.matrix.shape[:2]
        raise InputError(f"{Path(path).name} holds a {rows} x {cols} matrix without a "
                         "wavelength column; use it as the degradation's srf (one row per band of the cube), or "
                         "add the wavelengths in nm as the first column.") from None


def _load_table(path: str | Path) -> SpectralResponse:
    """Read a spectral response table from a file.

    * ``.csv`` / ``.txt`` / ``.tsv``: first column the wavelength in nm, the other columns one
      channel each. Comma, semicolon, tab or whitespace separated. An optional first row of
      column names (header) gives the channel names (the first header cell, the wavelength
      column's, is ignored). Lines starting with ``#`` and blank lines are skipped.
    * ``.npy``: a 2-D numeric array with the same layout (first column wavelength in nm).

    Without a header, channels are named ``"channel 1"``, ``"channel 2"``, ... The table's name
    is the file's stem.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"SRF file {str(p)!r} is a folder; give the response file (.csv or .npy) itself.")
    if not p.is_file():
        raise InputError(f"SRF file {str(p)!r} does not exist; check the path.")
    suffix = p.suffix.lower()
    header: list[str] | None = None
    if suffix == ".mat":  # HIFtool's Sentinel-2A table (core/sentinel.py)
        from .sentinel import load_mat_response

        return SpectralResponse(*load_mat_response(p))
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"Could not read {p.name} as a .npy array ({exc}).") from exc
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{p.name}: dtype {arr.dtype} is not numeric; expected a 2-D float array.")
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[0] >= 2 and not (np.all(np.diff(arr[:, 0]) > 0) and arr[0, 0] >= 100):
            raise _PlainMatrix(arr)  # no wavelength column: a (C, k) matrix on the cube's own bands
    elif suffix in (".csv", ".txt", ".tsv"):
        try:
            text = p.read_text(encoding="utf-8-sig")
        except Exception as exc:
            raise InputError(f"Could not read {p.name} as text ({exc}).") from exc
        rows: list[list[float]] = []
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            cells = [c for c in _split(line)]
            vals = [_parse_float(c) for c in cells]
            if any(v is None for v in vals):
                if not rows and header is None:
                    header = [c.strip().strip('"').strip("'") for c in cells]
                    continue
                raise InputError(
                    f"{p.name}, line {lineno}: could not read {line!r} as numbers. Expected the "
                    "wavelength (nm) then one value per channel, with at most one header row."
                )
            rows.append([float(v) for v in vals])  # type: ignore[arg-type]
        if not rows:
            raise InputError(f"{p.name}: no numeric rows found.")
        widths = {len(r) for r in rows}
        if len(widths) != 1:
            raise InputError(f"{p.name}: rows have different numbers of columns {sorted(widths)}.")
        arr = np.array(rows, dtype=np.float64)
    else:
        raise InputError(
            f"Unsupported SRF file type {p.suffix!r} ({p.name}); use .csv/.txt (wavelength column "
            "then one column per channel, optional header row) or .npy (same layout, 2-D)."
        )
    if arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] < 2:
        raise InputError(
            f"{p.name}: table has shape {arr.shape}; expected (L, 1 + k) with L >= 2 rows: first "
            "column wavelength in nm, then k >= 1 channel columns."
        )
    wl, m = arr[:, 0], arr[:, 1:]
    if np.all(np.isfinite(wl)) and wl.max() < 100:
        raise InputError(
            f"{p.name}: wavelengths range {wl.min():g}..{wl.max():g}; they must be in nm "
            "(multiply micrometres by 1000)."
        )
    k = m.shape[1]
    if header is not None and len(header) == k + 1:
        channels = tuple(h or f"channel {i + 1}" for i, h in enumerate(header[1:]))
    elif header is not None:
        raise InputError(f"{p.name}: header has {len(header)} names but rows have {k + 1} columns.")
    else:
        channels = tuple(f"channel {i + 1}" for i in range(k))
    return SpectralResponse(p.stem, wl, m, channels)


# ----------------------------------------------------------------------------- resampling
def normalize_columns(m: Any) -> np.ndarray:
    """Return a float64 copy of the (C, k) matrix ``m`` with each column scaled to sum 1.

    Raises :class:`InputError` if ``m`` is not 2-D, not finite, negative, or has a column that
    sums to 0.
    """
    a = np.array(m, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InputError(f"Spectral response matrix must be 2-D (C, k), got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise InputError("Spectral response matrix contains NaN/Inf values.")
    if np.any(a < 0):
        raise InputError("Spectral response matrix has negative entries; responses must be >= 0.")
    s = a.sum(axis=0)
    zero = np.flatnonzero(s <= 0)
    if zero.size:
        raise InputError(
            f"Spectral response column(s) {zero.tolist()} sum to 0; every channel needs some response."
        )
    return a / s


def _check_wavelengths(wavelengths: Any) -> np.ndarray:
    wl = np.asarray(wavelengths, dtype=np.float64).reshape(-1)
    if wl.size == 0 or not np.all(np.isfinite(wl)):
        raise InputError("Cube wavelengths must be a non-empty list of finite numbers (nm).")
    return wl


def resample_srf(srf: SpectralResponse, wavelengths: Any) -> np.ndarray:
    """Resample ``srf`` onto a cube's band wavelengths (nm) and normalise: returns (C, k) float64.

    Each channel is linearly interpolated (``np.interp``) at the cube's wavelengths, with 0
    outside the table's range, then scaled so that it sums to 1 over the cube's bands.
    Raises :class:`InputError` if a channel is 0 at every cube wavelength.
    """
    wl = _check_wavelengths(wavelengths)
    out = np.empty((wl.size, srf.n_channels), dtype=np.float64)
    for j in range(srf.n_channels):
        out[:, j] = np.interp(wl, srf.wavelengths, srf.matrix[:, j], left=0.0, right=0.0)
    sums = out.sum(axis=0)
    for j, s in enumerate(sums):
        if not s > 0:
            what = "sums to <= 0 over the bands" if np.any(out[:, j] != 0) else "is zero at every band"
            raise InputError(
                f"Spectral response {srf.name!r}, channel {srf.channels[j]!r} {what} "
                f"of the cube: the table covers {srf.wavelengths[0]:g}..{srf.wavelengths[-1]:g} nm, "
                f"the cube {wl.min():g}..{wl.max():g} nm. Check the cube's wavelengths (nm) or "
                "choose a response that covers them."
            )
    return out / sums


def resolve_srf(
    spec: Any, wavelengths: Any, n_bands: int
) -> tuple[np.ndarray, str, tuple[str, ...]]:
    """Turn any accepted SRF description into a normalised (C, k) matrix for a C-band cube.

    ``spec`` may be

    * a preset name (see :func:`list_presets`; case/space/underscore/hyphen-insensitive),
    * a path (``str`` or ``Path``) to an existing CSV/TXT/NPY file (see :func:`load_srf_file`),
    * a :class:`SpectralResponse`,
    * an array (C, k) already on the cube's bands: only checked (C == ``n_bands``, finite,
      non-negative) and column-normalised; its name is ``"user matrix"``.

    Tables (presets, files, SpectralResponse) are resampled with :func:`resample_srf` onto
    ``wavelengths`` (nm, length ``n_bands``). If ``wavelengths`` is None and ``n_bands == 31``
    the cube is assumed to span 400..700 nm every 10 nm (the CAVE/ICVL/Harvard layout);
    otherwise wavelengths are required.

    Returns ``(matrix (C, k) float64 with columns summing to 1, name, channel names)``.
    """
    n_bands = int(n_bands)
    if n_bands < 1:
        raise InputError(f"n_bands must be >= 1, got {n_bands}.")

    if isinstance(spec, (np.ndarray, list, tuple)) and not isinstance(spec, str):
        a = np.asarray(spec)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise InputError(f"Spectral response matrix has dtype {a.dtype}; pass numbers.")
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise InputError(f"Spectral response matrix must be (C, k), got shape {a.shape}.")
        if a.shape[0] != n_bands:
            hint = " (it looks transposed: pass it as (C, k))" if a.shape[1] == n_bands else ""
            raise InputError(
                f"Spectral response matrix has shape {a.shape} but the cube has {n_bands} bands; "
                f"expected ({n_bands}, k){hint}."
            )
        m = normalize_columns(a)
        return m, "user matrix", tuple(f"channel {i + 1}" for i in range(m.shape[1]))

    from .sentinel import split_band_pick

    spec, pick = split_band_pick(spec)  # "Sentinel2A_191_13.mat:B02,B03,B04": the HR image's bands
    if isinstance(spec, SpectralResponse):
        srf = spec
    elif isinstance(spec, (str, Path)):
        if isinstance(spec, str) and find_preset(spec) is not None:
            srf = get_preset(spec)
        elif Path(spec).exists():
            try:
                srf = _load_table(spec)
            except _PlainMatrix as plain:  # e.g. HIFtool's NikonD700.npy: 31 x 3, no wavelengths
                m = plain.matrix
                if m.shape[0] != n_bands:
                    raise InputError(
                        f"{Path(spec).name} holds a {m.shape[0]} x {m.shape[1]} matrix without a wavelength column, "
                        f"but the cube has {n_bands} bands; give a table whose first column is the wavelength in "
                        "nm, or a matrix with one row per band.") from None
                matrix = normalize_signed(m, n_bands) if np.any(m < 0) else normalize_columns(m)
                return matrix, f"{Path(spec).name} (matrix on the cube's bands)", tuple(
                    f"channel {i + 1}" for i in range(m.shape[1]))
        elif isinstance(spec, Path) or any(sep in spec for sep in ("/", "\\")) or Path(spec).suffix:
            raise InputError(
                f"Spectral response {str(spec)!r} is neither a preset name nor an existing file; "
                "check the path, or see list_presets()."
            )
        else:
            srf = get_preset(spec)  # raises InputError with suggestions
    else:
        raise InputError(
            f"Cannot use {type(spec).__name__} as a spectral response; pass a preset name, a file "
            "path, a SpectralResponse or a (C, k) array."
        )

    if pick:
        srf = pick_channels(srf, pick)
    if wavelengths is None:
        if n_bands == 31:
            wl = DEFAULT_31_BAND_WAVELENGTHS
        else:
            raise InputError(
                f"The cube has {n_bands} bands and no wavelengths; give the band wavelengths in nm "
                f"to resample the spectral response {srf.name!r} (only 31-band cubes default to "
                "400..700 nm every 10 nm)."
            )
    else:
        wl = _check_wavelengths(wavelengths)
        if wl.size != n_bands:
            raise InputError(
                f"{wl.size} wavelengths given for a cube with {n_bands} bands; give one per band."
            )
    return resample_srf(srf, wl), srf.name, srf.channels


def normalize_signed(m: Any, n_bands: int) -> np.ndarray:
    """A ``(C, k)`` response that may have negative lobes (a camera response with its colour
    correction folded in), scaled so each column sums to 1. Each column must sum to > 0: a
    channel that responds to white light with nothing or less is not a response."""
    a = np.array(m, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != int(n_bands):
        raise InputError(f"Spectral response matrix has shape {a.shape}; expected ({n_bands}, k).")
    if not np.all(np.isfinite(a)):
        raise InputError("Spectral response matrix contains NaN/Inf values.")
    s = a.sum(axis=0)
    bad = np.flatnonzero(s <= 1e-12 * np.abs(a).sum(axis=0).clip(1e-300))
    if bad.size:
        raise InputError(f"Spectral response column(s) {bad.tolist()} sum to <= 0; each channel must respond "
                         "positively to a flat spectrum.")
    return a / s


def pick_channels(srf, names):
    """The response restricted to the named channels, in that order."""
    missing = [n for n in names if n not in srf.channels]
    if missing:
        raise InputError(f"--srf: {', '.join(missing)} not in {srf.name}; its channels are {', '.join(srf.channels)}.")
    idx = [srf.channels.index(n) for n in names]
    return SpectralResponse(f"{srf.name} {','.join(names)}", srf.wavelengths, srf.matrix[:, idx], tuple(names))
