"""True-colour rendering of a cube (pure numpy, no Qt): SRF or CIE 1931 -> sRGB with gamma."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError

CIE = "CIE 1931"

#: XYZ (D65) -> linear sRGB (IEC 61966-2-1).
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_gamma(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function on values clipped to [0, 1]."""
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def cube_wavelengths_or_default(wavelengths, n_bands: int) -> np.ndarray:
    if wavelengths is not None:
        wl = np.asarray(wavelengths, dtype=np.float64).ravel()
        if wl.size != n_bands:
            raise InputError(f"{wl.size} wavelengths for a cube with {n_bands} bands; give one per band.")
        return wl
    from ..core.srf import DEFAULT_31_BAND_WAVELENGTHS

    if n_bands == 31:
        return DEFAULT_31_BAND_WAVELENGTHS
    raise InputError(f"The cube has {n_bands} bands and no wavelengths; set metadata['wavelengths'] (nm) "
                     "to render it in true colour.")


def _table(srf):
    from ..core.srf import SpectralResponse, get_preset, load_srf_file

    if isinstance(srf, SpectralResponse):
        return srf
    from ..core.srf import find_preset

    if isinstance(srf, str) and find_preset(srf) is not None:
        return get_preset(srf)
    return load_srf_file(srf)


def true_colour(cube, wavelengths=None, srf=CIE, gamma: bool = True) -> np.ndarray:
    """Render a ``(C, Y, X)`` cube as a ``(Y, X, 3)`` float32 image in [0, 1].

    ``srf="CIE 1931"`` (default): the colour matching functions are interpolated at the cube's
    wavelengths, X/Y/Z are scaled so that a flat spectrum of 1 maps to the D65 white (white
    reflectance renders white), then converted to linear sRGB. Any other 3-channel response
    (a camera preset or file, channels R, G, B): each channel is resampled onto the cube's bands
    and normalised to sum 1 (a flat spectrum of 1 gives (1, 1, 1)), giving linear camera RGB.
    Finally values are clipped to [0, 1] and, with ``gamma``, encoded with the sRGB curve.
    """
    z = np.asarray(cube, dtype=np.float32)
    if z.ndim != 3:
        raise InputError(f"True colour needs a (bands, Y, X) cube, got shape {z.shape}.")
    wl = cube_wavelengths_or_default(wavelengths, z.shape[0])
    table = _table(srf)
    if table.n_channels != 3:
        raise InputError(f"Spectral response {table.name!r} has {table.n_channels} channels; "
                         "true colour needs 3 (R, G, B or X, Y, Z).")
    if table.name == CIE:
        m = np.stack([np.interp(wl, table.wavelengths, table.matrix[:, j], left=0.0, right=0.0)
                      for j in range(3)], axis=1)  # (C, 3) raw CMFs at the cube's bands
        white = m.sum(axis=0)
        if not np.all(white > 0):
            raise InputError(f"CIE 1931 covers {table.wavelengths[0]:g}..{table.wavelengths[-1]:g} nm; "
                             f"the cube's bands ({wl.min():g}..{wl.max():g} nm) miss it.")
        m = m * (D65_WHITE / white)  # flat spectrum -> D65 white
        m = m @ XYZ_TO_SRGB.T  # (C, 3) straight to linear sRGB
    else:
        from ..core.srf import resample_srf

        m = resample_srf(table, wl)
    rgb = np.tensordot(z, m.astype(np.float32), axes=([0], [0]))  # (Y, X, 3)
    rgb = srgb_gamma(rgb) if gamma else np.clip(rgb, 0.0, 1.0)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def parse_wavelength_triplet(text: str) -> tuple[float, float, float]:
    """``"860, 650, 550"`` -> (860.0, 650.0, 550.0): the wavelengths (nm) shown as R, G, B."""
    parts = [p for p in str(text).replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise InputError(f"False colour needs three wavelengths in nm for R, G, B (e.g. '860, 650, 550'), "
                         f"got {text!r}.")
    return values  # type: ignore[return-value]


def false_colour(cube, wavelengths, rgb_nm, percentiles=(1.0, 99.0)) -> tuple[np.ndarray, list[float]]:
    """A ``(Y, X, 3)`` float32 composite of the bands nearest to three wavelengths (any: NIR, SWIR).

    Each channel is stretched on its own from the ``percentiles`` of its band to [0, 1], as a
    colour-infrared composite usually is (vegetation red with 860/650/550 nm). Returns the image
    and the wavelengths of the bands actually used. Bands further than half the cube's widest band
    spacing from a request are refused: the cube does not cover that wavelength."""
    z = np.asarray(cube)
    if z.ndim != 3:
        raise InputError(f"False colour needs a (bands, Y, X) cube, got shape {z.shape}.")
    wl = cube_wavelengths_or_default(wavelengths, z.shape[0])
    tolerance = 0.5 * float(np.max(np.diff(np.sort(wl)))) if wl.size > 1 else 0.0
    out, used = np.empty(z.shape[1:] + (3,), np.float32), []
    for j, nm in enumerate(rgb_nm):
        b = int(np.argmin(np.abs(wl - nm)))
        if abs(wl[b] - nm) > tolerance + 1e-6:
            raise InputError(f"The cube covers {wl.min():g}..{wl.max():g} nm; {nm:g} nm is outside it. "
                             "Choose three wavelengths within that range.")
        band = np.asarray(z[b], dtype=np.float32)
        finite = band[np.isfinite(band)]
        lo, hi = np.percentile(finite, percentiles) if finite.size else (0.0, 1.0)
        out[..., j] = np.clip((band - lo) / max(float(hi - lo), 1e-12), 0.0, 1.0)
        used.append(float(wl[b]))
    return np.nan_to_num(out), used
