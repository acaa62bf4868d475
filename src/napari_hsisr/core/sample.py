"""A synthetic scene built from measured reflectance spectra (no download, no CAVE images).

Materials are the 24 patches of the ColorChecker chart measured by N. Ohta (1997) (ISO 17321-1;
numbers in ``data/colorchecker_ohta.npz``, 400..700 nm every 10 nm). The scene mixes them in
patches, discs smaller and larger than an LR pixel, and thin stripes, under smooth shading, so that
spatial detail below the LR pixel size and spectral detail beyond RGB both matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from .degradation import Degradation
from .simulate import simulate


@dataclass
class SamplePair:
    reference: np.ndarray  # (31, Y, X) float32
    hr: np.ndarray  # (Y, X, 3) float32
    lr: np.ndarray  # (31, Y/s, X/s) float32
    wavelengths: np.ndarray
    degradation: Degradation


def reflectance_library() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(wavelengths (31,), reflectance (24, 31), names)`` of the ColorChecker patches."""
    with files("napari_hsisr.data").joinpath("colorchecker_ohta.npz").open("rb") as fh:
        d = np.load(fh, allow_pickle=False)
        return d["wavelengths"], d["reflectance"], [str(n) for n in d["names"]]


def sample_scene(size: int = 256, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Reference cube ``(31, size, size)`` in [0, 1] and its wavelengths."""
    wl, refl, _ = reflectance_library()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    label = (yy * 4 // size) * 6 + (xx * 6 // size)  # 4 x 6 chart of patches
    weights = np.zeros((len(refl), size, size))
    np.put_along_axis(weights, label[None], 1.0, axis=0)
    for _ in range(60):  # discs from 1.5 to 20 pixels in radius
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(1.5, 20) if rng.random() < 0.5 else rng.uniform(1.5, 4)
        m = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
        weights[:, m] = 0
        weights[rng.integers(len(refl)), m] = 1.0
    stripes = (np.sin(2 * np.pi * xx / 5.0) > 0.6) & (yy > size * 0.8)  # thinner than an LR pixel
    weights[:, stripes] = 0
    weights[18, stripes] = 1.0  # white stripes
    cube = np.tensordot(refl.T, weights, axes=1)  # (31, Y, X)
    shading = 0.75 + 0.25 * np.cos(2 * np.pi * (xx / size - 0.3)) * np.sin(np.pi * yy / size + 0.5)
    return (cube * shading).astype(np.float32), wl


def sample_pair(size: int = 256, scale: int = 8, seed: int = 7) -> SamplePair:
    """The bundled sample: reference, Nikon D700 RGB and x8 LR-HS (Gaussian sigma 2 on the block)."""
    cube, wl = sample_scene(size, seed)
    deg = Degradation(scale=scale, psf="gaussian", psf_sigma=scale / 4, srf="Nikon D700 (CAVE fusion papers)",
                      wavelengths=wl)
    hr, lr = simulate(cube, deg, seed=seed)
    return SamplePair(cube, hr, lr, wl, deg)
