"""The forward model shared by simulation, every fusion method and the metrics.

Observations of a scene ``z`` (cube ``(C, Y, X)``):

* LR-HS ``x = D z``: blur by the PSF, then keep one sample per ``s x s`` block;
* HR image ``y = R z``: per pixel, ``y_k = sum_c srf[c, k] z_c`` (``srf`` is ``(C, k)``).

Sampling convention. LR pixel ``(i, j)`` covers the HR block ``[i*s, (i+1)*s) x [j*s, (j+1)*s)``.
A ``K x K`` PSF (``K >= s``) is centred on that block: with ``p = (K - s) // 2``,

    x[c, i, j] = sum_{u, v} psf[u, v] * z[c, i*s - p + u, j*s - p + v]

so ``K == s`` integrates exactly the block (block-aligned decimation). When ``K - s`` is odd the
extra row/column of the kernel lies after the block. Samples outside the image are taken by the
``boundary`` rule: ``"reflect"`` (mirror about the edge pixel, numpy's ``reflect``), ``"symmetric"``
(mirror including the edge pixel), ``"wrap"`` (periodic) or ``"zero"``. With ``K == s`` no sample is
outside the image and the rule does not matter.

Operators run in torch (CPU or CUDA, any leading batch axes) and accept numpy arrays too, in
which case they compute in float64 on the CPU and return numpy. Each has an exact adjoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .psf import box_psf, gaussian_psf, load_psf, normalize_psf

BOUNDARIES = ("reflect", "symmetric", "wrap", "zero")


def make_psf(spec, scale: int, sigma: float | None = None, size: int | None = None,
             sigma2: float | None = None, angle_deg: float = 0.0) -> tuple[np.ndarray, str]:
    """Turn a PSF spec into ``(kernel, description)``.

    ``spec`` is a ``(K, K)`` array, a path to a kernel file, ``"box"`` (average over ``size``,
    default ``s``) or ``"gaussian"`` (``sigma`` default ``s/4``, ``size`` default ``s``; ``sigma2``
    and ``angle_deg`` make it anisotropic and rotated).
    """
    if isinstance(spec, np.ndarray) or isinstance(spec, (list, tuple)):
        return normalize_psf(spec, source="PSF array"), "user kernel"
    name = str(spec).strip().lower()
    if name == "gaussian":
        sigma = scale / 4.0 if sigma is None else float(sigma)
        size = scale if size is None else int(size)
        desc = f"gaussian(sigma={sigma:g}" + (f", sigma2={sigma2:g}, angle={angle_deg:g}" if sigma2 else "")
        return gaussian_psf(size, sigma, sigma2, angle_deg), desc + f", size={size})"
    if name in {"box", "average", "mean"}:
        size = scale if size is None else int(size)
        return box_psf(size), f"box(size={size})"
    return load_psf(spec), f"file:{spec}"


@dataclass(eq=False)
class Degradation:
    """Spatial (PSF + decimation) and spectral (SRF) degradation of a cube.

    Parameters
    ----------
    scale : int
        Ratio between HR and LR pixel sizes, any integer >= 2.
    psf : array, path, ``"gaussian"`` or ``"box"``
        Blur kernel (see :func:`make_psf`); ``psf_sigma``, ``psf_size``, ``psf_sigma2`` and
        ``psf_angle`` parametrise the named kernels.
    srf : preset name, path, ``(C, k)`` array, or None
        Spectral response; resampled onto ``wavelengths`` and normalised per channel to sum 1.
        None means no spectral operator (LR-only workflows).
    wavelengths : array of C band centres in nm, or None (31 bands assume 400..700 nm).
    n_bands : number of bands C when ``wavelengths`` is None and ``srf`` is a preset.
    boundary : rule for samples outside the image (see module docstring).
    """

    scale: int
    psf: Any = "gaussian"
    srf: Any = None
    wavelengths: Any = None
    n_bands: int | None = None
    boundary: str = "reflect"
    psf_sigma: float | None = None
    psf_size: int | None = None
    psf_sigma2: float | None = None
    psf_angle: float = 0.0
    psf_name: str = field(init=False, default="")
    srf_name: str = field(init=False, default="")
    channels: tuple = field(init=False, default=())

    def __post_init__(self):
        if isinstance(self.scale, bool) or not float(self.scale).is_integer() or int(self.scale) < 2:
            raise InputError(f"scale must be an integer >= 2, got {self.scale!r}.")
        self.scale = int(self.scale)
        if self.boundary not in BOUNDARIES:
            raise InputError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}.")
        kernel, self.psf_name = make_psf(self.psf, self.scale, self.psf_sigma, self.psf_size,
                                         self.psf_sigma2, self.psf_angle)
        if kernel.shape[0] < self.scale:
            raise InputError(f"PSF is {kernel.shape[0]}x{kernel.shape[0]} but must be at least "
                             f"scale x scale ({self.scale}x{self.scale}); use a larger kernel.")
        self.psf = kernel
        if self.wavelengths is not None:
            self.wavelengths = np.asarray(self.wavelengths, dtype=np.float64).ravel().copy()
            if self.n_bands is not None and self.n_bands != self.wavelengths.size:
                raise InputError(f"{self.wavelengths.size} wavelengths given for {self.n_bands} bands.")
            self.n_bands = self.wavelengths.size
        if self.srf is not None:
            from .srf import resolve_srf

            n = self.n_bands
            if n is None:
                n = np.shape(self.srf)[0] if isinstance(self.srf, (np.ndarray, list, tuple)) else 31
            self.srf, self.srf_name, self.channels = resolve_srf(self.srf, self.wavelengths, n)
            self.n_bands = self.srf.shape[0]

    # ------------------------------------------------------------------ description
    @property
    def kernel_size(self) -> int:
        return int(self.psf.shape[0])

    @property
    def pad(self) -> tuple[int, int]:
        """HR samples needed before the first and after the last block."""
        before = (self.kernel_size - self.scale) // 2
        return before, self.kernel_size - self.scale - before

    @property
    def lr_offset(self) -> float:
        """HR coordinate of LR pixel 0's kernel centre: napari ``translate`` of an LR layer
        whose ``scale`` is ``s`` (LR pixel ``i`` sits at ``i*s + lr_offset``)."""
        return (self.kernel_size - 1) / 2.0 - self.pad[0]

    def settings(self) -> dict:
        """JSON-friendly record of this degradation (kernel and SRF values included)."""
        return {
            "scale": self.scale, "psf": self.psf_name, "psf_kernel": self.psf.tolist(),
            "boundary": self.boundary, "srf": self.srf_name,
            "srf_matrix": None if self.srf is None else self.srf.tolist(),
            "channels": list(self.channels),
            "wavelengths": None if self.wavelengths is None else self.wavelengths.tolist(),
        }

    def with_(self, **changes) -> "Degradation":
        """A copy with some fields replaced (e.g. an estimated PSF)."""
        kw = dict(scale=self.scale, psf=self.psf, srf=self.srf, wavelengths=self.wavelengths,
                  n_bands=self.n_bands, boundary=self.boundary)
        kw.update(changes)
        new = Degradation(**kw)
        if "psf" not in changes:
            new.psf_name = self.psf_name
        if "srf" not in changes:
            new.srf_name, new.channels = self.srf_name, self.channels
        return new

    def check_shapes(self, hr_shape: tuple, lr_shape: tuple) -> None:
        """Raise an InputError unless HR ``(Y, X)`` is exactly ``scale`` times LR ``(y, x)``."""
        check_pair_shapes(hr_shape, lr_shape, self.scale)

    # ------------------------------------------------------------------ operators
    def spatial(self, z):
        """Blur + decimate: ``(..., C, Y, X) -> (..., C, Y/s, X/s)``."""
        return _dispatch(z, lambda t: _spatial(t, self))

    def spatial_adjoint(self, x, hr_shape: tuple[int, int] | None = None):
        """Adjoint of :meth:`spatial`: ``(..., C, y, x) -> (..., C, y*s, x*s)``."""
        return _dispatch(x, lambda t: _spatial_adjoint(t, self))

    def spectral(self, z):
        """Apply the SRF: ``(..., C, Y, X) -> (..., k, Y, X)`` (channels first)."""
        self._need_srf()
        return _dispatch(z, lambda t: _spectral(t, self.srf))

    def spectral_adjoint(self, y):
        """Adjoint of :meth:`spectral`: ``(..., k, Y, X) -> (..., C, Y, X)``."""
        self._need_srf()
        return _dispatch(y, lambda t: _spectral(t, self.srf.T))

    def _need_srf(self):
        if self.srf is None:
            raise InputError("This degradation has no spectral response: give srf=... "
                             "(a preset name such as 'Nikon D700', a file, or a (bands, k) matrix).")


def check_pair_shapes(hr_shape, lr_shape, scale: int) -> None:
    (Y, X), (y, x) = tuple(hr_shape[-2:]), tuple(lr_shape[-2:])
    if Y % scale or X % scale:
        raise InputError(
            f"HR image is {Y}x{X}, not a whole multiple of scale {scale}: crop it to "
            f"{Y // scale * scale}x{X // scale * scale} (and the LR cube to {Y // scale}x{X // scale}).")
    if (Y // scale, X // scale) != (y, x):
        raise InputError(
            f"HR image is {Y}x{X} but LR cube is {y}x{x}; with scale {scale} the LR cube must be "
            f"{Y // scale}x{X // scale}. Check the scale factor (HR/LR = {Y / max(y, 1):g}) or crop both.")


# ---------------------------------------------------------------------- torch kernels
def _dispatch(a, fn):
    import torch

    if isinstance(a, torch.Tensor):
        return fn(a)
    out = fn(torch.from_numpy(np.asarray(a, dtype=np.float64)))
    return out.numpy()


def _pad_index(n: int, before: int, after: int, boundary: str) -> np.ndarray:
    mode = {"reflect": "reflect", "symmetric": "symmetric", "wrap": "wrap"}.get(boundary)
    if mode is None:  # zero: -1 marks samples that read zero
        return np.pad(np.arange(n), (before, after), mode="constant", constant_values=-1)
    if mode == "reflect" and max(before, after) >= n:
        raise InputError(f"Image side {n} is too small for a {before + after}-pixel reflect border.")
    return np.pad(np.arange(n), (before, after), mode=mode)


def _gather(t, idx, dim):
    import torch

    idx_t = torch.as_tensor(idx, device=t.device)
    if (idx_t < 0).any():
        zero = torch.zeros_like(t.narrow(dim, 0, 1))
        t = torch.cat([t, zero], dim)
        idx_t = torch.where(idx_t < 0, t.shape[dim] - 1, idx_t)
    return t.index_select(dim, idx_t)


def _scatter(t, idx, dim, n):
    import torch

    idx_t = torch.as_tensor(idx, device=t.device)
    keep = idx_t >= 0
    shape = list(t.shape)
    shape[dim] = n
    out = torch.zeros(shape, dtype=t.dtype, device=t.device)
    return out.index_add_(dim, idx_t[keep], t.index_select(dim, keep.nonzero().squeeze(1)))


def _kernel(deg, t):
    import torch

    return torch.as_tensor(deg.psf, dtype=t.dtype, device=t.device)[None, None]


def spatial_op(z, kernel, scale: int, boundary: str = "reflect"):
    """Blur + decimate ``(..., Y, X)`` torch tensors with a ``(K, K)`` kernel *tensor*.

    The convention of :class:`Degradation`; differentiable in ``z`` and ``kernel``, so methods that
    learn the PSF (``blind``) use the same operator as everything else.
    """
    import torch.nn.functional as F

    *lead, Y, X = z.shape
    s, K = int(scale), int(kernel.shape[-1])
    check_pair_shapes((Y, X), (Y // s, X // s), s)
    b = (K - s) // 2
    a = K - s - b
    flat = z.reshape(-1, 1, Y, X)
    if b or a:
        flat = _gather(_gather(flat, _pad_index(Y, b, a, boundary), 2), _pad_index(X, b, a, boundary), 3)
    out = F.conv2d(flat, kernel.reshape(1, 1, K, K), stride=s)
    return out.reshape(*lead, Y // s, X // s)


def _spatial(z, deg):
    return spatial_op(z, _kernel(deg, z), deg.scale, deg.boundary)


def _spatial_adjoint(x, deg):
    import torch.nn.functional as F

    *lead, y, xw = x.shape
    s = deg.scale
    b, a = deg.pad
    Y, X = y * s, xw * s
    up = F.conv_transpose2d(x.reshape(-1, 1, y, xw), _kernel(deg, x), stride=s)
    if b or a:
        up = _scatter(_scatter(up, _pad_index(Y, b, a, deg.boundary), 2, Y), _pad_index(X, b, a, deg.boundary), 3, X)
    return up.reshape(*lead, Y, X)


def _spectral(z, matrix):
    import torch

    m = torch.as_tensor(matrix, dtype=z.dtype, device=z.device)
    return torch.einsum("...cyx,ck->...kyx", z, m)
