"""The parts of the forward model, as small immutable operators that compose.

A scene ``z`` (cube ``(C, Y, X)``, linear radiance or reflectance) is seen twice:

* LR-HS ``x = D z``: :class:`SpatialOperator`, blur by a ``K x K`` kernel centred on the ``s x s``
  block that an LR pixel covers, then one sample per block. A misalignment between the two grids
  is a shift of that sampling: it is baked into the kernel (:func:`shifted_kernel`), so the
  operator, its adjoint and its Fourier transfer function need no special case.
* HR image ``y = T(G R^T z + o)``: :class:`SpectralOperator` (response ``R`` (C, k), one column per
  channel, normalised shape; a per-channel gain ``G`` and offset ``o``), then a per-channel tone
  curve ``T`` (:class:`ToneCurve`: linear, sRGB, gamma, or a learned monotone table) that turns
  linear light into the display-encoded values a camera writes.

Methods work in linear light: they decode the HR image with ``T^-1`` and undo ``G`` and ``o``
once, and from there on see the plain linear model ``y = R^T z`` (see :mod:`.observations`).

Operators accept torch tensors (CPU or CUDA, any leading batch axes) and numpy arrays (computed
in float64 on the CPU, numpy returned); each linear operator has an exact adjoint.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import InputError
from .parallel import fft_workers

BOUNDARIES = ("reflect", "symmetric", "wrap", "zero")


# ---------------------------------------------------------------------- tone curves
@dataclass(frozen=True)
class ToneCurve:
    """Per-channel display encoding of the HR image: ``display = encode(linear)``.

    ``kind`` is ``"linear"``, ``"srgb"`` (IEC 61966-2-1), ``"gamma"`` (``display = linear^(1/g)``)
    or ``"table"``: a monotone piecewise-linear decode through the points ``(knots, table[k])``
    (display value -> linear value, one row per channel), as estimated by ``blind``.
    """

    kind: str = "linear"
    gamma: float = 1.0
    knots: tuple = ()
    table: tuple = ()  # k rows of len(knots) linear values

    @property
    def name(self) -> str:
        if self.kind == "gamma":
            return f"gamma:{self.gamma:g}"
        return "learned" if self.kind == "table" else self.kind

    @property
    def is_linear(self) -> bool:
        return self.kind == "linear" or (self.kind == "gamma" and self.gamma == 1.0)

    def decode(self, v):
        """Display values (``(k, ...)`` for a table, any shape otherwise) -> linear light."""
        v = np.asarray(v, dtype=np.float64)
        if self.kind == "linear":
            return v.copy()
        if self.kind == "srgb":
            c = np.clip(v, 0.0, None)
            return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        if self.kind == "gamma":
            return np.clip(v, 0.0, None) ** self.gamma
        return np.stack([np.interp(v[i], self.knots, row) for i, row in enumerate(self.table)])

    def encode(self, lin):
        """Linear light -> display values (the inverse of :meth:`decode`)."""
        lin = np.asarray(lin, dtype=np.float64)
        if self.kind == "linear":
            return lin.copy()
        c = np.clip(lin, 0.0, None)
        if self.kind == "srgb":
            return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
        if self.kind == "gamma":
            return c ** (1.0 / self.gamma)
        return np.stack([np.interp(lin[i], row, self.knots) for i, row in enumerate(self.table)])

    def settings(self) -> dict:
        out: dict = {"encoding": self.name}
        if self.kind == "table":
            out.update(knots=list(self.knots), table=[list(r) for r in self.table])
        return out

    @classmethod
    def parse(cls, spec) -> ToneCurve:
        """``"linear"``, ``"srgb"``, ``"gamma:2.2"`` (or a ToneCurve) -> ToneCurve."""
        if isinstance(spec, ToneCurve):
            return spec
        text = str(spec).strip().lower()
        if text in ("linear", "none", "gamma:1"):
            return cls("linear")
        if text in ("srgb", "s-rgb", "display"):
            return cls("srgb")
        if text.startswith("gamma"):
            try:
                g = float(text.split(":", 1)[1])
            except (IndexError, ValueError):
                g = float("nan")
            if not (math.isfinite(g) and 0.2 <= g <= 5.0):
                raise InputError(f"hr_encoding {spec!r}: write the gamma as 'gamma:<g>' with 0.2 <= g <= 5, "
                                 "e.g. 'gamma:2.2'.")
            return cls("gamma", gamma=g)
        raise InputError(f"hr_encoding {spec!r} is not one of 'auto', 'linear', 'srgb', 'gamma:<g>' "
                         "(e.g. gamma:2.2).")


ENCODINGS = ("auto", "linear", "srgb", "gamma:<g>")


def resolve_encoding(spec, dtype) -> tuple[ToneCurve, str]:
    """The tone curve for an HR image of ``dtype``, and why: ``auto`` takes 8- and 16-bit integer
    images as display-encoded sRGB (what cameras write) and float images as linear."""
    if isinstance(spec, ToneCurve) or str(spec).strip().lower() != "auto":
        curve = ToneCurve.parse(spec)
        return curve, f"{curve.name} (given)"
    if np.issubdtype(np.dtype(dtype), np.integer):
        return ToneCurve("srgb"), f"srgb (auto: {np.dtype(dtype)} image taken as display-encoded)"
    return ToneCurve("linear"), f"linear (auto: {np.dtype(dtype)} image taken as linear)"


# ---------------------------------------------------------------------- kernels
def shifted_kernel(kernel: np.ndarray, scale: int, shift) -> np.ndarray:
    """``kernel`` (K x K, centred on the block) moved by ``shift = (dy, dx)`` HR pixels, on a larger
    square support that is still centred on the block (so the operators' convention holds).

    Integer parts move the taps exactly; a fractional part is a bilinear interpolation of the
    taps (mass preserved). A positive ``dy`` means each LR pixel sees the scene ``dy`` HR pixels
    further down than the block it is attached to.
    """
    dy, dx = (float(v) for v in shift)
    if dy == 0 and dx == 0:
        return kernel
    K = kernel.shape[0]
    reach = int(math.ceil(max(abs(dy), abs(dx)))) + 1
    big = np.zeros((K + 2 * reach, K + 2 * reach))
    big[reach:reach + K, reach:reach + K] = kernel
    moved = ndimage.shift(big, (dy, dx), order=1, mode="constant", prefilter=False)
    moved = np.clip(moved, 0.0, None)
    # K + 2 reach keeps K - s's parity, so the block stays centred the same way
    return moved / moved.sum()


def block_offset(K: int, scale: int) -> int:
    """HR pixels a ``K x K`` kernel's first tap lies before its block (the sampling convention of
    :mod:`.degradation`: ``(K - s) // 2``; when ``K - s`` is odd the extra tap lies after)."""
    return (int(K) - int(scale)) // 2


def kernel_centroid(kernel: np.ndarray, scale: int) -> tuple[float, float]:
    """Centre of mass of a centred-convention kernel, relative to the block start (HR pixels)."""
    K = kernel.shape[0]
    before = block_offset(K, scale)
    idx = np.arange(K) - before
    return float(np.sum(kernel.sum(1) * idx)), float(np.sum(kernel.sum(0) * idx))


def block_mean(img: np.ndarray, scale: int) -> np.ndarray:
    """``D`` with a box kernel that is the block itself (``K == s``, so no boundary rule): the mean
    of each ``s x s`` block of ``(..., Y, X)``, for what needs no PSF (GSA, a coarse registration)."""
    s = int(scale)
    *lead, Y, X = img.shape
    check_pair_shapes((Y, X), (Y // s, X // s), s)
    # a reshape, not SpatialOperator's float64 convolution: equal to rounding (tests/test_physics.py)
    # and 10-25x faster (3 x 2048^2 at s=4: 0.15 s against 4.1 s)
    return img.reshape(*lead, Y // s, s, X // s, s).mean(axis=(-3, -1))


# ---------------------------------------------------------------------- operators
@dataclass(frozen=True, eq=False)
class SpatialOperator:
    """Blur by ``kernel`` then keep one sample per ``scale x scale`` block (see module docstring).

    ``kernel`` is ``K x K`` (``K >= scale``), its first tap ``(K - s) // 2`` HR pixels before the
    block; outside the image samples follow ``boundary``.
    """

    kernel: np.ndarray
    scale: int
    boundary: str = "reflect"  # or "edge" (the edge pixel repeated): estimation's, not a user's choice

    @property
    def pad(self) -> tuple[int, int]:
        before = block_offset(self.kernel.shape[0], self.scale)
        return before, self.kernel.shape[0] - self.scale - before

    def __call__(self, z):
        """``(..., C, Y, X) -> (..., C, Y/s, X/s)``: torch in, torch out (differentiable); anything
        else in numpy (float64), which a process that only fuses tiles elsewhere (a cluster's
        caller) can run without importing torch."""
        if _is_tensor(z):
            return spatial_op(z, _as_tensor(self.kernel, z), self.scale, self.boundary)
        return _spatial_numpy(z, self.kernel, self.scale, self.boundary)

    def adjoint(self, x):
        """``(..., C, y, x) -> (..., C, y*s, x*s)``."""
        return _dispatch(x, lambda t: _spatial_adjoint(t, self))

    def circular(self, z: np.ndarray, chunk: int = 32) -> np.ndarray:
        """``D z`` with the image taken as periodic, by FFT (numpy, float64, ``(C, Y, X)``). It equals
        :meth:`__call__` on every LR pixel whose kernel stays inside the image, and is much faster
        for large kernels and many bands (what no-reference checks need)."""
        from scipy import fft

        z = np.asarray(z, dtype=np.float64)
        Y, X = z.shape[-2:]
        Hc = np.conj(self.otf((Y, X)))[..., : X // 2 + 1]
        s = self.scale
        out = np.empty(z.shape[:-2] + (Y // s, X // s))
        flat, flat_out = z.reshape(-1, Y, X), out.reshape(-1, Y // s, X // s)
        for i in range(0, len(flat), chunk):  # chunks keep the complex spectra small
            spec = fft.rfft2(flat[i:i + chunk], workers=fft_workers()) * Hc
            flat_out[i:i + chunk] = fft.irfft2(spec, s=(Y, X), workers=fft_workers())[:, ::s, ::s]
        return out

    def otf(self, shape: tuple[int, int]) -> np.ndarray:
        """HR-grid transfer function of the blur, phase included (circular model): with it,
        ``D z = decimate(ifft2(conj(H) fft2(z)))``."""
        from scipy import fft

        Y, X = shape
        K = self.kernel.shape[0]
        before = self.pad[0]
        if K > min(Y, X):
            raise InputError(f"The {K}x{K} PSF (shift included) is larger than the {Y}x{X} image; use a "
                             "smaller kernel or a larger image.")
        full = np.zeros((Y, X))
        rows = (np.arange(K) - before) % Y
        cols = (np.arange(K) - before) % X
        np.add.at(full, (rows[:, None], cols[None, :]), self.kernel)
        return fft.fft2(full, workers=fft_workers())


@dataclass(frozen=True, eq=False)
class SpectralOperator:
    """``y_k = gain_k * sum_c response[c, k] z_c + offset_k`` (linear light, channels first).

    ``response`` (C, k) is the normalised shape (columns sum to 1; may have negative lobes once
    a colour-correction matrix is folded in); ``gain``/``offset`` (k,) the radiometric part.
    """

    response: np.ndarray
    gain: np.ndarray = field(default=None)
    offset: np.ndarray = field(default=None)

    def __post_init__(self):
        k = self.response.shape[1]
        object.__setattr__(self, "gain", np.ones(k) if self.gain is None else np.asarray(self.gain, float))
        object.__setattr__(self, "offset", np.zeros(k) if self.offset is None else np.asarray(self.offset, float))

    def linear(self, z):
        """``R^T z``: ``(..., C, Y, X) -> (..., k, Y, X)`` (no gain, no offset); torch in, torch out,
        else numpy (float64) without importing torch."""
        return _spectral(z, self.response) if _is_tensor(z) else _spectral_numpy(z, self.response)

    def adjoint(self, y):
        """Adjoint of :meth:`linear`: ``(..., k, Y, X) -> (..., C, Y, X)``."""
        return _spectral(y, self.response.T) if _is_tensor(y) else _spectral_numpy(y, self.response.T)

    def __call__(self, z):
        """``G R^T z + o``."""
        lin = self.linear(z)
        g = self.gain.reshape(-1, 1, 1)
        o = self.offset.reshape(-1, 1, 1)
        if isinstance(lin, np.ndarray):
            return lin * g + o
        return lin * _as_tensor(g, lin) + _as_tensor(o, lin)


def _is_tensor(a) -> bool:
    torch = sys.modules.get("torch")  # not imported: ``a`` cannot be a tensor
    return torch is not None and isinstance(a, torch.Tensor)


def _take(z: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    """``z`` indexed along ``axis`` by :func:`_pad_index`'s indices (-1: a zero sample)."""
    if (idx < 0).any():
        zero = np.zeros(z.shape[:axis % z.ndim] + (1,) + z.shape[axis % z.ndim + 1:])
        z = np.concatenate([z, zero], axis=axis)
        idx = np.where(idx < 0, z.shape[axis] - 1, idx)
    return np.take(z, idx, axis=axis)


def padded_numpy(z: np.ndarray, K: int, scale: int, boundary: str = "reflect") -> np.ndarray:
    """``(..., Y, X)`` array with the HR samples a ``K x K`` kernel reads beyond the image added by
    ``boundary``: :func:`padded_for_kernel` in numpy."""
    *_, Y, X = z.shape
    b = block_offset(K, scale)
    a = K - scale - b
    if not (b or a):
        return z
    return _take(_take(z, _pad_index(Y, b, a, boundary), -2), _pad_index(X, b, a, boundary), -1)


def _spatial_numpy(z, kernel: np.ndarray, scale: int, boundary: str) -> np.ndarray:
    """:func:`spatial_op` in numpy, float64: the same samples (padding by :func:`_pad_index`) and
    sums; equal to it to 3e-15 and 3-4x faster on CPU (31 x 640^2, K = 8 and 12)."""
    from numpy.lib.stride_tricks import sliding_window_view

    z = np.asarray(z, dtype=np.float64)
    *lead, Y, X = z.shape
    s, K = int(scale), int(kernel.shape[-1])
    check_pair_shapes((Y, X), (Y // s, X // s), s)
    z = padded_numpy(z, K, s, boundary)
    y, x = Y // s, X // s
    out = np.zeros((*lead, y, x))
    for u in range(K):  # one kernel row at a time: rows u, u+s, ... against K-wide windows every s columns
        rows = z[..., u:u + (y - 1) * s + 1:s, :]
        out += sliding_window_view(rows, K, axis=-1)[..., :(x - 1) * s + 1:s, :] @ kernel[u]
    return out


# ---------------------------------------------------------------------- torch kernels
def _dispatch(a, fn):
    import torch

    if isinstance(a, torch.Tensor):
        return fn(a)
    out = fn(torch.from_numpy(np.asarray(a, dtype=np.float64)))
    return out.numpy()


def _as_tensor(a, like):
    import torch

    return torch.as_tensor(np.asarray(a), dtype=like.dtype, device=like.device)


def _pad_index(n: int, before: int, after: int, boundary: str) -> np.ndarray:
    mode = {"reflect": "reflect", "symmetric": "symmetric", "wrap": "wrap", "edge": "edge"}.get(boundary)
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


def spatial_op(z, kernel, scale: int, boundary: str = "reflect"):
    """Blur + decimate ``(..., Y, X)`` torch tensors with a ``(K, K)`` kernel *tensor*.

    Differentiable in ``z`` and ``kernel``, so methods that learn the PSF use the same operator as
    everything else.
    """
    import torch.nn.functional as F

    *lead, Y, X = z.shape
    s, K = int(scale), int(kernel.shape[-1])
    check_pair_shapes((Y, X), (Y // s, X // s), s)
    out = F.conv2d(padded_for_kernel(z.reshape(-1, 1, Y, X), K, s, boundary), kernel.reshape(1, 1, K, K), stride=s)
    return out.reshape(*lead, Y // s, X // s)


_TORCH_PADS = {"edge": "replicate", "zero": "constant"}  # any width; torch's reflect and circular are not


def padded_for_kernel(t, K: int, scale: int, boundary: str = "reflect"):
    """``(n, 1, Y, X)`` torch tensor with the HR samples a ``K x K`` kernel reads beyond the image
    added by ``boundary``: what :func:`spatial_op` convolves (and blind's patch matrices unfold)."""
    *_, Y, X = t.shape
    b = block_offset(K, scale)
    a = K - scale - b
    if not (b or a):
        return t
    if boundary in _TORCH_PADS:  # the same samples, one copy instead of two gathers
        import torch.nn.functional as F

        return F.pad(t, (b, a, b, a), mode=_TORCH_PADS[boundary])
    return _gather(_gather(t, _pad_index(Y, b, a, boundary), 2), _pad_index(X, b, a, boundary), 3)


def _spatial_adjoint(x, op: SpatialOperator):
    import torch.nn.functional as F

    *lead, y, xw = x.shape
    s = op.scale
    b, a = op.pad
    Y, X = y * s, xw * s
    K = op.kernel.shape[0]
    up = F.conv_transpose2d(x.reshape(-1, 1, y, xw), _as_tensor(op.kernel, x).reshape(1, 1, K, K), stride=s)
    if b or a:
        up = _scatter(_scatter(up, _pad_index(Y, b, a, op.boundary), 2, Y), _pad_index(X, b, a, op.boundary), 3, X)
    return up.reshape(*lead, Y, X)


def _spectral_numpy(z, matrix: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    *lead, c, Y, X = z.shape
    return (np.asarray(matrix, dtype=np.float64).T @ z.reshape(*lead, c, Y * X)).reshape(*lead, -1, Y, X)


def _spectral(z, matrix):
    import torch

    return torch.einsum("...cyx,ck->...kyx", z, _as_tensor(matrix, z))
