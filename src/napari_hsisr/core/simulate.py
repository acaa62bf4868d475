"""Simulate an observed (HR image, LR-HS cube) pair from a reference cube."""

from __future__ import annotations

import numpy as np

from .degradation import Degradation
from .errors import InputError
from .parallel import one_blas_thread
from .physics import ToneCurve
from .validation import check_finite_cube, check_seed, check_snr


def add_noise(signal: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean Gaussian noise per band/channel (axis 0) at the given SNR.

    ``sigma_b = sqrt(mean(signal_b^2) / 10^(SNR/10))``. Returns a new array.
    """
    if snr_db is None:
        return signal.copy()
    power = np.mean(signal.reshape(len(signal), -1) ** 2, axis=1)
    sigma = np.sqrt(power / 10 ** (snr_db / 10))
    return signal + rng.standard_normal(signal.shape) * sigma[:, None, None]


@one_blas_thread()  # the same bits at any BLAS thread count, as fusions (core/parallel.py)
def simulate(reference_cube, degradation: Degradation, noise_snr_db: float | None = None,
             hr_snr_db: float | None = None, seed: int | None = 0):
    """Degrade a reference cube ``(C, Y, X)`` into ``(hr_image (Y, X, k), lr_cube (C, Y/s, X/s))``
    with the whole forward model: blur and decimation (the shift included) for the LR cube; the
    response, the gain and offset (1 and 0 while ``"auto"``), noise, then the tone curve (an
    ``hr_encoding`` other than ``"auto"``) for the HR image.

    ``noise_snr_db`` sets the LR-HS SNR and ``hr_snr_db`` the HR image's (default: same as
    ``noise_snr_db``); None means noise-free. A cube holding NaN/Inf, a non-finite SNR or one
    outside -20..200 dB is refused (``InputError``), never turned into NaN outputs. Outputs are float32
    (quantise them yourself to mimic an 8-bit camera); the input is not modified.
    """
    if not isinstance(degradation, Degradation):
        raise InputError("degradation must be a napari_hsisr.Degradation (scale, psf, srf, wavelengths), got "
                         f"{type(degradation).__name__}.")
    # a NaN anywhere (in the cube or an SNR) would spread through the blur into NaN outputs: refuse it here
    noise_snr_db = check_snr(noise_snr_db, "noise_snr_db (the LR-HS SNR)")
    hr_snr_db = check_snr(hr_snr_db, "hr_snr_db (the HR image's SNR)")
    seed = None if seed is None else check_seed(seed)
    cube = check_finite_cube(reference_cube, "reference cube")
    if degradation.srf is not None and degradation.srf.shape[0] != cube.shape[0]:
        raise InputError(f"reference cube has {cube.shape[0]} bands but the spectral response has "
                         f"{degradation.srf.shape[0]} rows; give matching wavelengths.")
    rng = np.random.default_rng(seed)
    hr_snr_db = noise_snr_db if hr_snr_db is None else hr_snr_db
    lr = add_noise(degradation.spatial(cube), noise_snr_db, rng)
    hr = add_noise(degradation.spectral_operator(cube), hr_snr_db, rng)  # sensor noise is in linear light
    if isinstance(degradation.hr_encoding, ToneCurve) and not degradation.hr_encoding.is_linear:
        hr = degradation.hr_encoding.encode(hr)
    return np.moveaxis(hr, 0, -1).astype(np.float32), lr.astype(np.float32)
