"""Bicubic interpolation of the LR-HS cube to the HR grid: the floor every method must beat."""

from __future__ import annotations

import numpy as np

from .base import FusionInputs, MethodInfo, Progress, register

_A = -0.75  # Keys' cubic convolution parameter, as torch's and OpenCV's bicubic use


def _taps(n: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (4, n*scale) and weights (4, n*scale) along one axis: output pixel ``o`` reads
    the input at ``(o + 0.5) / scale - 0.5`` (pixel-area aligned), indices clamped at the borders."""
    x = (np.arange(n * scale) + 0.5) / scale - 0.5
    i0 = np.floor(x)
    t = x - i0
    weights = np.stack([((_A * (t + 1) - 5 * _A) * (t + 1) + 8 * _A) * (t + 1) - 4 * _A,
                        ((_A + 2) * t - (_A + 3)) * t * t + 1,
                        ((_A + 2) * (1 - t) - (_A + 3)) * (1 - t) * (1 - t) + 1,
                        ((_A * (2 - t) - 5 * _A) * (2 - t) + 8 * _A) * (2 - t) - 4 * _A])
    index = np.clip(i0.astype(int)[None] + np.arange(-1, 3)[:, None], 0, n - 1)
    return index, weights


def _matrix(n: int, scale: int):
    """The (n*scale, n) sparse interpolation matrix of one axis (4 weights a row; clamped taps add up)."""
    from scipy import sparse

    index, weights = _taps(n, scale)
    rows = np.tile(np.arange(n * scale), 4)
    return sparse.csr_matrix((weights.ravel(), (rows, index.ravel())), shape=(n * scale, n))


def upsample(cube: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic (Keys, a = -0.75) interpolation of ``(C, y, x)`` by ``scale``, pixel-area aligned.

    LR pixel ``i`` sits at the centre of the HR block it covers (HR coordinate ``i*s + (s-1)/2``),
    matching the block-centred sampling convention; edges replicate the border pixels. The samples
    and weights of torch's ``interpolate(mode="bicubic", align_corners=False)`` (equal to float32
    rounding, as fast: 31 x 640^2 in 0.1 s), in numpy: a method that does not use torch need not
    import it (seconds of a process's start)."""
    z = np.asarray(cube, dtype=np.float64)
    s = int(scale)
    *lead, y, x = z.shape
    rows, cols = _matrix(y, s), _matrix(x, s)
    flat = z.reshape(-1, y, x)
    out = np.empty((flat.shape[0], y * s, x * s), np.float32)
    for c, band in enumerate(flat):
        out[c] = (cols @ (rows @ band).T).T
    return out.reshape(*lead, y * s, x * s)


def run(inputs: FusionInputs):
    yield Progress(0, 1, message="interpolating")
    cube = upsample(inputs.lr, inputs.degradation.scale)
    yield Progress(1, 1, message="done")
    return cube


register(MethodInfo("bicubic", run, "Bicubic interpolation of the LR-HS cube (ignores the HR image).",
                    needs_srf=False, needs_psf=False, bytes_per_band=12, bytes_per_coefficient=0, fills_holes=False,
                    safe_fallbacks=()))
