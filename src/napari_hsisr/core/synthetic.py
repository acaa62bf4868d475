"""Procedural reflectance scenes for training the learned prior beyond the 19 CAVE scenes.

Trained on CAVE alone, the prior lowered every scene unlike CAVE that it was tried on (the bundled
ColorChecker sample -8.0 dB, an AVIRIS and a SAMSON crop -2.8 and -0.6 dB against ``fast``, x8).
These scenes add what CAVE lacks, from no measured data at all (so no fold can leak into them):

* **spectra** drawn at random, smooth as reflectances are: a baseline, Gaussian bumps and dips,
  and with some probability a steep rise (the red edge of vegetation, the cut-on of a pigment);
* **layouts**: Voronoi cells (hard edges at every angle), ellipses from 1 to 24 pixels across,
  thin lines at random angles, and soft mixtures through smooth random fields (mixed pixels, as
  in remote sensing), combined at random;
* **shading**: a smooth multiplicative field; half of the scenes blurred slightly (a camera's
  optics), half with edges as hard as a pixel.

The scenes are deterministic functions of their index. The bundled sample
(:mod:`.sample`) uses none of this: its ColorChecker spectra stay unseen.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

WAVELENGTHS = np.arange(400, 701, 10.0)


def random_spectrum(rng: np.random.Generator, wl: np.ndarray = WAVELENGTHS) -> np.ndarray:
    """A smooth reflectance on ``wl`` with a peak between 0.03 and 0.95."""
    s = np.full(wl.shape, rng.uniform(0.0, 0.4))
    for _ in range(int(rng.integers(1, 5))):
        width = rng.uniform(15, 150)
        s += rng.uniform(-0.4, 1.0) * np.exp(-0.5 * ((wl - rng.uniform(360, 740)) / width) ** 2)
    if rng.random() < 0.4:  # a steep rise: red edge, pigment cut-on
        s += rng.uniform(0.2, 1.0) / (1 + np.exp(-(wl - rng.uniform(480, 720)) / rng.uniform(5, 30)))
    s = np.clip(s, 0, None) + 1e-3
    return s / s.max() * rng.uniform(0.03, 0.95)


def _smooth_field(rng, shape, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def _voronoi(rng, size: int, cells: int) -> np.ndarray:
    pts = rng.uniform(0, size, (cells, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    return np.argmin(d, axis=-1)


def _soft_labels(rng, size: int, materials: int) -> np.ndarray:
    """(materials, Y, X) abundances: a softmax of smooth random fields, from nearly hard to well mixed."""
    sigma = rng.uniform(2, 24)
    logits = np.stack([_smooth_field(rng, (size, size), sigma) for _ in range(materials)])
    a = np.exp(logits * rng.uniform(1, 8))
    return a / a.sum(0)


def synthetic_scene(index: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """Reference cube ``(31, size, size)`` float32 (400..700 nm every 10 nm), deterministic in
    ``(index, seed)``."""
    rng = np.random.default_rng([seed, 0x5CE4E, index])
    materials = int(rng.integers(4, 16))
    spectra = np.stack([random_spectrum(rng) for _ in range(materials)])  # (M, 31)
    if rng.random() < 0.5:
        weights = _soft_labels(rng, size, materials)
    else:
        label = _voronoi(rng, size, int(rng.integers(3, 40))) % materials
        weights = (np.arange(materials)[:, None, None] == label[None]).astype(np.float64)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(0, 60))):  # ellipses, from sub-LR-pixel to large
        cy, cx = rng.uniform(0, size, 2)
        a, b = rng.uniform(0.7, 12, 2)
        t = rng.uniform(0, np.pi)
        u, v = (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t), -(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
        m = (u / a) ** 2 + (v / b) ** 2 < 1
        weights[:, m] = 0
        weights[rng.integers(materials), m] = 1
    for _ in range(int(rng.integers(0, 6))):  # thin lines at random angles
        t, w = rng.uniform(0, np.pi), rng.uniform(0.5, 2.5)
        cy, cx = rng.uniform(0, size, 2)
        m = np.abs((yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)) < w / 2
        weights[:, m] = 0
        weights[rng.integers(materials), m] = 1
    cube = np.tensordot(spectra.T, weights, axes=1)  # (31, Y, X)
    shading = np.clip(1 + rng.uniform(0, 0.25) * _smooth_field(rng, (size, size), rng.uniform(16, 64)), 0.3, 1.6)
    cube = cube * shading
    if rng.random() < 0.5:  # a camera's own blur, or none (edges as hard as a pixel)
        cube = ndimage.gaussian_filter(cube, (0, *[rng.uniform(0.3, 1.0)] * 2))
    return (cube / max(1.0, float(cube.max()))).astype(np.float32)
