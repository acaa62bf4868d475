"""Estimating the forward model from the observed pair itself (no reference needed).

Both observations seen at LR resolution in the HR image's channels must agree:

    D_psf,shift( T^-1(y_k) ) = gain_k * r_k^T x + offset_k        for every LR pixel and channel k

(Simoes et al., "A convex formulation for hyperspectral image superresolution via subspace-based
regularization", IEEE TGRS 2015, estimate the PSF and the response from this identity). We solve
it by alternating least squares, each sub-problem small and well posed:

* response + gain + offset given the PSF: a ridge regression per channel of ``D y_k`` on the LR
  bands and a constant, with a second-difference smoothness penalty along wavelength whose
  weight is chosen by generalised cross-validation; signed (a camera's colour correction makes
  negative lobes), restricted to the bands a camera can see when the wavelengths say so, with
  Huber weights against pixels the model cannot explain (3-D canopy, moving objects);
* PSF and shift given the response: a Gaussian (two widths, an angle, a sub-pixel shift) fitted
  by non-linear least squares, started from a phase-correlation estimate of the shift;
* the tone curve: each candidate encoding is tried and the one whose linear model explains the
  pair best is kept.

LR pixels whose kernel footprint leaves the HR image or covers saturated HR pixels, and nodata
LR pixels, take no part. :func:`fit_gain_offset` is the cheap part alone (per-channel gain and
offset for a known response), used by every model-based method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .physics import (
    SpatialOperator,
    ToneCurve,
    block_mean,
    block_offset,
    check_pair_shapes,
    kernel_centroid,
    padded_numpy,
    shifted_kernel,
)

TONE_CANDIDATES = ("linear", "srgb", "gamma:1.8", "gamma:2.2", "gamma:2.6")
CAMERA_RANGE_NM = (370.0, 750.0)  # what an RGB camera with an IR-cut filter sees


# ---------------------------------------------------------------------- helpers
def spatial(hr: np.ndarray, kernel: np.ndarray, scale: int) -> np.ndarray:
    """``D`` with ``kernel`` (centred convention) on ``(n, Y, X)``, edges replicated (the LR pixels
    that reach past the edge are left out by :func:`footprint_valid` anyway)."""
    return SpatialOperator(kernel, scale, "edge")(hr)


def footprint_valid(kernel: np.ndarray, scale: int, hr_shape, hr_valid: np.ndarray | None = None,
                    mass: float = 0.99) -> np.ndarray:
    """LR pixels (y, x) whose kernel puts at least ``mass`` of its weight on HR pixels that exist
    and are valid (none when the kernel is larger than the image)."""
    Y, X = hr_shape
    if kernel.shape[0] > min(Y, X):
        return np.zeros((Y // scale, X // scale), bool)
    valid = np.ones((Y, X)) if hr_valid is None else hr_valid.astype(np.float64)
    return SpatialOperator(kernel, scale, "zero")(valid) >= mass  # zero: outside the image does not count


def _huber_weights(r: np.ndarray) -> np.ndarray:
    scale = 1.4826 * np.median(np.abs(r - np.median(r))) + 1e-12
    c = 1.345 * scale
    a = np.abs(r)
    return np.where(a <= c, 1.0, c / np.maximum(a, 1e-30))


def _second_difference(n: int) -> np.ndarray:
    D = np.zeros((max(n - 2, 0), n))
    for i in range(n - 2):
        D[i, i:i + 3] = (1.0, -2.0, 1.0)
    return D


# ---------------------------------------------------------------------- radiometry only
def fit_gain_offset(hr: np.ndarray, lr: np.ndarray, kernel: np.ndarray, scale: int, response: np.ndarray,
                    hr_valid=None, lr_valid=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel ``gain`` and ``offset`` with ``D y_k = gain_k (R^T x)_k + offset_k`` (robust
    least squares on the usable LR pixels). Returns ``(gain, offset, relative residual)``."""
    use = usable_lr_pixels(kernel, scale, hr.shape[-2:], hr_valid, lr_valid)
    b = spatial(hr, kernel, scale).reshape(len(hr), -1)[:, use]
    t = np.tensordot(response.T, lr.reshape(len(lr), -1)[:, use], axes=1)
    gain, offset, resid = np.ones(len(hr)), np.zeros(len(hr)), np.zeros(len(hr))
    for k in range(len(hr)):
        A = np.stack([t[k], np.ones(t.shape[1])], 1)
        w = np.ones(len(A))
        for _ in range(3):  # IRLS
            coef = np.linalg.lstsq(A * w[:, None], b[k] * w, rcond=None)[0]
            r = b[k] - A @ coef
            w = np.sqrt(_huber_weights(r))
        if not coef[0] > 0:
            raise InputError(f"HR channel {k + 1} does not follow the LR cube seen through the spectral response "
                             "(its fitted gain is not positive): check the response (srf) and the channel order.")
        gain[k], offset[k] = coef
        resid[k] = np.sqrt(np.mean(r ** 2)) / (np.sqrt(np.mean(b[k] ** 2)) + 1e-12)
    return gain, offset, resid


def usable_lr_pixels(kernel, scale, hr_shape, hr_valid, lr_valid) -> np.ndarray:
    """(y*x,) bool, flat: the LR pixels that relate the pair, valid and with their kernel lying
    on valid HR pixels (:func:`footprint_valid`); an InputError when fewer than 4 are."""
    use = footprint_valid(kernel, scale, hr_shape, hr_valid)
    if lr_valid is not None:
        use &= lr_valid
    if use.sum() < 4:
        raise InputError(f"Only {int(use.sum())} LR pixels are fully covered by valid HR pixels: too few to relate "
                         "the two images. Check that they show the same area (alignment, scale) and that the "
                         "HR image is not mostly saturated.")
    return use.ravel()


# ---------------------------------------------------------------------- response
def fit_response(b: np.ndarray, x: np.ndarray, support: np.ndarray, weights: np.ndarray | None = None,
                 smoothing: float | None = None):
    """Signed response ``W`` (C, k) (gain included) and offsets ``o`` (k,) with
    ``b_k ~ W_k^T x + o_k``. ``b`` (k, n), ``x`` (C, n), ``support`` (C,) bool: bands that may
    respond. The smoothness weight is chosen per channel by generalised cross-validation unless
    given (relative to the data's scale). Returns ``(W, o, chosen smoothing per channel)``."""
    C, n = x.shape
    k = b.shape[0]
    idx = np.flatnonzero(support)
    q = len(idx)
    A = np.concatenate([x[idx].T, np.ones((n, 1))], 1)  # n, q + 1
    D2 = _second_difference(q)
    P = np.zeros((q + 1, q + 1))
    P[:q, :q] = D2.T @ D2 + 1e-6 * np.eye(q)  # a whisper of ridge keeps flat bands determined
    W = np.zeros((C, k))
    o = np.zeros(k)
    chosen = np.zeros(k)
    w_all = np.ones((k, n)) if weights is None else weights
    for j in range(k):
        w = w_all[j]
        Aw = A * np.sqrt(w)[:, None]
        bw = b[j] * np.sqrt(w)
        G = Aw.T @ Aw
        base = np.trace(G[:q, :q]) / max(q, 1)
        grid = [smoothing] if smoothing is not None else list(10.0 ** np.arange(-6, 2.1, 0.5))
        best = None
        for lam in grid:
            Ginv = np.linalg.inv(G + lam * base * P)
            coef = Ginv @ (Aw.T @ bw)
            rss = float(np.sum((bw - Aw @ coef) ** 2))
            dof = float(np.trace(Ginv @ G))
            gcv = n * rss / max(n - dof, 1e-3) ** 2
            if best is None or gcv < best[0]:
                best = (gcv, lam, coef)
        _, chosen[j], coef = best
        W[idx, j], o[j] = coef[:q], coef[q]
    return W, o, chosen


# ---------------------------------------------------------------------- the whole estimate
@dataclass
class Estimate:
    """What :func:`estimate_degradation` found; ``residual`` is per HR channel (relative RMS of
    the LR-grid identity above), ``notes`` says what was decided and why."""

    tone: ToneCurve
    sigma: tuple  # (major, minor) HR pixels
    angle: float  # degrees
    shift: tuple  # (dy, dx) HR pixels
    kernel: np.ndarray
    response: np.ndarray  # (C, k), columns summing to 1 (signed)
    gain: np.ndarray
    offset: np.ndarray
    residual: np.ndarray
    tone_residuals: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    psf_model: str = "gaussian"


def _gauss(scale, p, K):
    """The model's Gaussian on a fixed centred ``K x K`` support (smooth in every parameter: no
    truncation window that moves with the shift)."""
    sy, sx, angle, dy, dx = p
    c = (K - 1) / 2.0 - block_offset(K, scale) - (scale - 1) / 2.0  # support centre minus block centre
    yy, xx = np.mgrid[0:K, 0:K].astype(np.float64)
    x, y = xx - (K - 1) / 2.0 + c - dx, -(yy - (K - 1) / 2.0 + c - dy)
    t = np.deg2rad(angle)
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    k = np.exp(-0.5 * ((u / sy) ** 2 + (v / sx) ** 2))
    return k / k.sum()


def response_support(wavelengths, C: int, k: int) -> np.ndarray:
    """(C,) bool: the bands an RGB camera's response may cover (:data:`CAMERA_RANGE_NM`), all of
    them when the wavelengths are unknown, the HR image is not RGB, or fewer than 3 lie inside."""
    if wavelengths is None or k != 3:
        return np.ones(C, bool)
    wl = np.asarray(wavelengths, dtype=float)
    sup = (wl >= CAMERA_RANGE_NM[0]) & (wl <= CAMERA_RANGE_NM[1])
    return sup if sup.sum() >= 3 else np.ones(C, bool)


def coarse_shift(h: np.ndarray, lr: np.ndarray, scale: int, support: np.ndarray) -> tuple[float, float]:
    """Shift (HR pixels) of the LR sampling relative to the HR grid, by phase correlation of the
    two images' mean intensity at LR resolution (insensitive to gain and offset)."""
    from skimage.registration import phase_cross_correlation

    hr_lr = block_mean(h.mean(0), scale)
    lr_mean = lr[support].mean(0)
    if min(lr_mean.shape) < 4:
        return 0.0, 0.0
    z = lambda a: (a - a.mean()) / (a.std() + 1e-12)  # noqa: E731
    shift, _, _ = phase_cross_correlation(z(hr_lr), z(lr_mean), upsample_factor=10, normalization=None)
    # the shift that registers `moving` (LR) onto `reference` (HR): LR pixels that sample the scene d HR
    # pixels further on show its content d/s LR pixels earlier, which takes a shift of +d/s to undo
    return float(shift[0] * scale), float(shift[1] * scale)


def patch_matrix(h: np.ndarray, scale: int, K: int) -> np.ndarray:
    """``(k, y*x, K*K)``: for every LR pixel the ``K x K`` HR window its kernel reads (centred
    convention, edges replicated), so that ``D_psf(h_k) = P[k] @ psf.ravel()``. In numpy (as
    torch's unfold did it): the response's estimate needs no torch."""
    from numpy.lib.stride_tricks import sliding_window_view

    z = padded_numpy(np.asarray(h, dtype=np.float64), K, scale, "edge")
    windows = sliding_window_view(z, (K, K), axis=(-2, -1))[:, ::scale, ::scale]  # k, y, x, K, K
    return np.ascontiguousarray(windows.reshape(z.shape[0], -1, K * K))


def _crop_centred(kernel: np.ndarray, K: int) -> np.ndarray:
    d = (kernel.shape[0] - K) // 2
    out = kernel[d:d + K, d:d + K]
    return out / out.sum()


def _embed(kernel: np.ndarray, K: int) -> np.ndarray:
    """A centred-convention kernel on a larger centred support ``K`` (same parity of K - s)."""
    d = (K - kernel.shape[0]) // 2
    return np.pad(kernel, d)


def estimate_degradation_iter(hr: np.ndarray, lr: np.ndarray, scale: int, wavelengths=None,
                         tone: ToneCurve | None = None, known_kernel: np.ndarray | None = None,
                         known_response: np.ndarray | None = None, known_shift=None,
                         hr_valid=None, lr_valid=None, size: int | None = None, iterations: int = 3,
                         max_pixels: int = 8192, seed: int = 0, psf_model: str = "gaussian"):
    """Generator: yields a message before each stage (a caller may stop there), returns the
    :class:`Estimate` of tone, PSF (Gaussian), shift, response, gain and offset.

    ``hr`` (k, Y, X) display values (nominally [0, 1]), ``lr`` (C, y, x). ``tone`` None tries
    :data:`TONE_CANDIDATES`; ``known_*`` are held fixed. ``size``: PSF support without the
    shift (default 2 s). At most ``max_pixels`` LR pixels (a seeded random subset) are used.
    """
    from scipy import optimize

    s = int(scale)
    check_pair_shapes(hr.shape, lr.shape, s)
    k, C = hr.shape[0], lr.shape[0]
    size = int(size or 2 * s)
    support = response_support(wavelengths, C, k)
    notes = []
    if not support.all():
        notes.append(f"response restricted to the {int(support.sum())} bands within {CAMERA_RANGE_NM[0]:g}-"
                     f"{CAMERA_RANGE_NM[1]:g} nm (an RGB camera sees nothing beyond)")
    candidates = [tone] if tone is not None else [ToneCurve.parse(t) for t in TONE_CANDIDATES]
    h0 = (tone or ToneCurve("srgb")).decode(hr)  # for the coarse shift (insensitive to the curve)

    # shift search range -> one fixed kernel support for the patch matrices
    if known_shift is not None:
        shift0 = tuple(float(v) for v in known_shift)
    else:
        shift0 = coarse_shift(h0, lr, s, support)
        notes.append(f"coarse shift by phase correlation: ({shift0[0]:+.1f}, {shift0[1]:+.1f}) HR px")
    reach = int(math.ceil(max(abs(shift0[0]), abs(shift0[1])) + (0 if known_shift is not None else s / 2))) + 1
    if known_kernel is not None:
        K = known_kernel.shape[0] + 2 * reach  # the known kernel and its shift search
    else:
        K = size + 2 * reach
    if K > min(hr.shape[-2:]):
        raise InputError(f"The HR image ({hr.shape[-2]}x{hr.shape[-1]}) is smaller than the {K}x{K} window the PSF "
                         f"and shift search need at scale {s}; use a larger image or give the shift (known='shift').")
    # the shift stays where the window holds the kernel's core
    room = max(reach - 1.0, 0.5)
    bounds_lo = [0.3, 0.3, -np.inf, max(shift0[0] - room, -room), max(shift0[1] - room, -room)]
    bounds_hi = [max(1.0, 0.75 * s), max(1.0, 0.75 * s), np.inf, min(shift0[0] + room, room),
                 min(shift0[1] + room, room)]
    rng = np.random.default_rng(seed)
    x_full = lr.reshape(C, -1).astype(np.float64)

    def kernel_of(p):
        if known_kernel is not None:  # the user's kernel, moved by the (estimated or known) shift
            moved = shifted_kernel(known_kernel, s, (p[3], p[4]))
            if moved.shape[0] > K:
                moved = _crop_centred(moved, K)
            return _embed(moved, K)
        return _gauss(s, p, K)

    def rows(kern):
        use = np.flatnonzero(usable_lr_pixels(kern, s, hr.shape[-2:], hr_valid, lr_valid))
        if use.size > max_pixels:
            use = np.sort(rng.choice(use, max_pixels, replace=False))
        return use

    def fit_response_rows(P, use, kern):
        b = P[:, use] @ kern.ravel()  # k, n
        x = x_full[:, use]
        if known_response is not None:
            W, o = _fixed_response_fit(b, x, known_response)
        else:
            wts = None
            for _ in range(2):  # Huber re-weighting against pixels the linear model cannot explain
                W, o, _ = fit_response(b, x, support, wts)
                wts = np.stack([_huber_weights(ri) for ri in b - (W.T @ x + o[:, None])])
        r = b - (W.T @ x + o[:, None])
        resid = np.sqrt(np.mean(r ** 2, 1)) / (np.sqrt(np.mean(b ** 2, 1)) + 1e-12)
        return W, o, resid

    def fit_kernel(P, use, W, o, p0):
        target = (W.T @ x_full[:, use] + o[:, None]).ravel()
        Pu = P[:, use].reshape(-1, K * K)
        free = slice(3 if known_kernel is not None else 0, 5 if known_shift is None else 3)

        def full(q):
            p = p0.copy()
            p[free] = q
            return p

        def residual(q):
            kern = kernel_of(full(q))
            return Pu @ kern.ravel() - target

        def jacobian(q):
            base = kernel_of(full(q)).ravel()
            cols = []
            for i in range(len(q)):
                step = 1e-4 * max(1.0, abs(q[i]))
                qq = q.copy()
                qq[i] += step
                cols.append((kernel_of(full(qq)).ravel() - base) / step)
            return Pu @ np.stack(cols, 1)

        lo, hi = np.array(bounds_lo)[free], np.array(bounds_hi)[free]
        q0 = np.clip(p0[free], lo + 1e-9, hi - 1e-9)
        r = optimize.least_squares(residual, q0, jac=jacobian, bounds=(lo, hi), max_nfev=50)
        return full(r.x)

    p = np.array([s / 3.0, s / 3.0, 0.0, *shift0])

    def alternate(h, p, n_iter):
        P = patch_matrix(h, s, K)
        before = None
        for _ in range(n_iter):
            kern = kernel_of(p)
            use = rows(kern)
            W, o, resid = fit_response_rows(P, use, kern)
            if before is not None and resid.mean() > before[1]:  # a step that fits worse is undone
                p = before[0]
                break
            if known_kernel is None or known_shift is None:
                before = (p, float(resid.mean()))
                p = fit_kernel(P, use, W, o, p)
        kern = kernel_of(p)
        use = rows(kern)
        W, o, resid = fit_response_rows(P, use, kern)
        return p, W, o, resid

    # 1. PSF and shift with a first curve; 2. the best curve; 3. refine. The first curve matters
    # more than it seems: a PSF fitted under the wrong one absorbs the error (x8blind peppers: a
    # linear pair started from sRGB ended at 34 dB), so both usual starts are tried
    yield "estimating PSF, shift and response"
    starts = [tone] if tone is not None else [ToneCurve("linear"), ToneCurve("srgb")]
    best_start = None
    for start in starts:
        fitted = alternate(start.decode(hr), p, iterations)
        if best_start is None or fitted[3].mean() < best_start[3].mean():
            best_start = fitted
    p, W, o, resid = best_start
    chosen = candidates[0]
    if len(candidates) > 1:
        # every curve is judged on LR pixels its fit did not see: a flexible learned curve must
        # explain pixels it was not fitted to, not merely fit its own better
        use = rows(kernel_of(p))
        fit_rows, held_rows = _split_rows(use, rng)
        P = patch_matrix(hr, s, K)  # display values: curves are applied to the windows' taps
        tone_resid = {}
        for cand in candidates:
            yield f"trying encoding {cand.name}"
            tone_resid[cand.name] = _held_out_residual(cand, P, kernel_of(p), fit_rows, held_rows, x_full, support)
        chosen = min(candidates, key=lambda c: tone_resid[c.name])
        if use.size * k >= 50 * TONE_KNOTS:
            yield "learning a monotone tone curve"
            learned = _learn_tone(P, kernel_of(p), x_full, fit_rows, chosen, support)
            if learned is not None:
                tone_resid["learned"] = _held_out_residual(learned, P, kernel_of(p), fit_rows, held_rows, x_full,
                                                           support)
                if tone_resid["learned"] < 0.9 * tone_resid[chosen.name]:  # only when clearly better
                    chosen = learned
        notes.append("encoding " + chosen.name + " (relative residual on held-out LR pixels: " + ", ".join(
            f"{n} {v:.3f}" for n, v in tone_resid.items()) + ")")
        p, W, o, resid = alternate(chosen.decode(hr), p, max(1, iterations - 1))
    else:
        tone_resid = {}
    kern = kernel_of(p)
    n_rows = rows(kern).size * k
    # free taps: a window of the Gaussian's support around its fitted centre
    side = min(K, size + 2)
    centre = ((s - 1) / 2 + p[3] + block_offset(K, s), (s - 1) / 2 + p[4] + block_offset(K, s))
    lo = [int(np.clip(round(c - (side - 1) / 2), 0, K - side)) for c in centre]
    window = np.zeros((K, K), bool)
    window[lo[0]:lo[0] + side, lo[1]:lo[1] + side] = True
    if psf_model == "auto":
        psf_model = "free" if n_rows >= 10 * side * side else "gaussian"
        notes.append(f"PSF model {psf_model} ({n_rows} LR equations for {side}x{side} free taps)")
    if psf_model not in ("free", "gaussian"):
        raise InputError(f"psf_model must be 'auto', 'gaussian' or 'free', got {psf_model!r}.")
    if psf_model == "free" and known_kernel is None:
        yield "refining the PSF (free form)"
        h = chosen.decode(hr)
        P = patch_matrix(h, s, K)
        for _ in range(max(1, iterations - 1)):
            use = rows(kern)
            kern = _free_kernel(P, use, W.T @ x_full[:, use] + o[:, None], kern, window)
            W, o, resid = fit_response_rows(P, rows(kern), kern)
    if np.any(W.sum(0) <= 0) and known_response is None:
        W, o, resid = _non_negative_response(patch_matrix(chosen.decode(hr), s, K), rows(kern), kern, x_full,
                                             support, W, o, resid, notes)
    gain = W.sum(0)
    if np.any(gain <= 0):
        raise InputError("The estimated spectral response of an HR channel sums to <= 0: the HR image does not "
                         "look like the LR cube seen by a camera. Check the channel order, the wavelengths and "
                         "that both images show the same scene.")
    sy, sx, angle = float(abs(p[0])), float(abs(p[1])), float(p[2])  # sigma along the angle, across, degrees
    major, minor, angle = (sy, sx, angle) if sy >= sx else (sx, sy, angle + 90.0)
    if known_kernel is not None:
        major = minor = angle = float("nan")
    trimmed = _trim(kern, s)
    if known_kernel is not None:  # the user's kernel, moved: the shift is the move itself
        shift = (float(p[3]), float(p[4]))
    else:
        cy, cx = kernel_centroid(trimmed, s)
        shift = (cy - (s - 1) / 2.0, cx - (s - 1) / 2.0)
    return Estimate(chosen, (major, minor), ((angle + 90) % 180) - 90 if math.isfinite(angle) else angle,
                    shift, trimmed, W / gain, gain, o, resid, tone_resid, notes,
                    psf_model if known_kernel is None else "given")


def estimate_degradation(*args, **kwargs) -> Estimate:
    """:func:`estimate_degradation_iter` run to the end."""
    gen = estimate_degradation_iter(*args, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


TONE_KNOTS = 9


TONE_SLOPE_RANGE = (1 / 25, 8.0)  # a learned decode's slopes, relative to their mean


def _split_rows(use: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """``use`` (sorted LR pixel indices) split at random into a fitting and a held-out half."""
    pick = rng.permutation(use.size) % 2 == 0
    return use[pick], use[~pick]


def _decoded_lr(curve: ToneCurve, P: np.ndarray, kernel: np.ndarray, rows_: np.ndarray) -> np.ndarray:
    """``D(decode(y))`` (k, n) on LR pixels ``rows_``, from the display patches ``P``."""
    return curve.decode(P[:, rows_]) @ kernel.ravel()


def _held_out_residual(curve, P, kernel, fit_rows, held_rows, x, support) -> float:
    """Mean relative residual on ``held_rows`` of the linear model whose response was fitted on
    ``fit_rows`` under ``curve``."""
    W, o, _ = fit_response(_decoded_lr(curve, P, kernel, fit_rows), x[:, fit_rows], support)
    b = _decoded_lr(curve, P, kernel, held_rows)
    r = b - (W.T @ x[:, held_rows] + o[:, None])
    return float(np.mean(np.sqrt(np.mean(r ** 2, 1)) / (np.sqrt(np.mean(b ** 2, 1)) + 1e-12)))


def _learn_tone(P, kernel, x, rows_, start: ToneCurve, support, rounds: int = 3) -> ToneCurve | None:
    """A monotone piecewise-linear decode per channel (``TONE_KNOTS`` knots on [0, 1]) fitted with
    the response on LR pixels ``rows_``. Its segment slopes are bounded relative to their mean
    (:data:`TONE_SLOPE_RANGE`), so that neither the decode nor its inverse (the encode a result is
    checked with) can amplify noise without bound. ``D(decode(y))`` is linear in the slopes (each
    segment is a clipped ramp of the display values), so every round is a bounded least squares,
    alternated with the response fit. None when no curve can be fitted."""
    from scipy.optimize import lsq_linear, nnls

    knots = np.linspace(0.0, 1.0, TONE_KNOTS)
    width = np.diff(knots)
    k = P.shape[0]
    kern = kernel.ravel()
    patches = P[:, rows_]
    feats = np.stack([np.clip(patches - t, 0.0, w) @ kern for t, w in zip(knots[:-1], width)], -1)  # k, n, J
    xs = x[:, rows_]
    W, o, _ = fit_response(_decoded_lr(start, P, kernel, rows_), xs, support)
    curve = None
    for _ in range(rounds):
        target = W.T @ xs + o[:, None]
        table = []
        for c in range(k):
            slopes, _ = nnls(feats[c], target[c])
            mean = float(np.mean(slopes))
            if not mean > 0:
                return None
            lo, hi = (mean * f for f in TONE_SLOPE_RANGE)
            slopes = lsq_linear(feats[c], target[c], bounds=(lo, hi)).x
            values = np.concatenate([[0.0], np.cumsum(slopes * width)])
            table.append(tuple(values / values[-1]))  # decode(1) = 1; the gain lives in the response
        curve = ToneCurve("table", knots=tuple(knots), table=tuple(table))
        W, o, _ = fit_response(_decoded_lr(curve, P, kernel, rows_), xs, support)
    return curve


def _non_negative_response(P, use, kern, x_full, support, W, o, resid, notes):
    """Channels whose signed response sums to <= 0 (a dark, noisy, heavily processed image can
    drive the smooth signed fit there: CAVE hairs through a phone-like pipeline) refitted with a
    non-negative response and a free offset (non-negative least squares), which cannot."""
    from scipy.optimize import nnls

    b = P[:, use] @ kern.ravel()
    x = x_full[support][:, use].T  # n, q
    ones = np.ones((len(x), 1))
    A = np.concatenate([x, ones, -ones], 1)  # offset = o+ - o-
    W, o, resid = W.copy(), o.copy(), resid.copy()
    bad = np.flatnonzero(W.sum(0) <= 0)
    for j in bad:
        coef, _ = nnls(A, b[j])
        W[:, j] = 0.0
        W[support, j] = coef[:-2]
        o[j] = coef[-2] - coef[-1]
        r = b[j] - (x @ coef[:-2] + o[j])
        resid[j] = np.sqrt(np.mean(r ** 2)) / (np.sqrt(np.mean(b[j] ** 2)) + 1e-12)
    notes.append(f"response of channel(s) {', '.join(str(j + 1) for j in bad)} fitted non-negative (the signed fit "
                 "summed to <= 0)")
    return W, o, resid


def _free_kernel(P: np.ndarray, use: np.ndarray, target: np.ndarray, start: np.ndarray, window: np.ndarray,
                 smooth: float = 1e-3) -> np.ndarray:
    """Non-negative kernel summing to 1, non-zero only inside ``window`` (K x K bool), with
    ``P psi ~ target`` (least squares, a weak gradient penalty): a PSF that no Gaussian describes
    (truncated, asymmetric)."""
    from scipy.optimize import lsq_linear

    K = start.shape[0]
    side = int(np.sqrt(window.sum()))
    free = np.flatnonzero(window.ravel())
    A = P[:, use].reshape(-1, K * K)[:, free]
    b = target.ravel()
    scale_ = np.sqrt(np.mean(A ** 2)) * np.sqrt(len(A) / len(free))
    idx = np.arange(side * side).reshape(side, side)
    pairs = [*zip(idx[:-1].ravel(), idx[1:].ravel()), *zip(idx[:, :-1].ravel(), idx[:, 1:].ravel())]
    grad = np.zeros((len(pairs), len(free)))
    for r, (i, j) in enumerate(pairs):
        grad[r, i], grad[r, j] = -1.0, 1.0
    reg = np.sqrt(smooth) * scale_
    rows = np.concatenate([A, reg * grad, 100 * scale_ * np.ones((1, len(free)))])
    rhs = np.concatenate([b, np.zeros(len(pairs)), [100 * scale_]])
    sol = np.clip(lsq_linear(rows, rhs, bounds=(0, np.inf), method="bvls", tol=1e-10).x, 0.0, None)
    out = np.zeros(K * K)
    out[free] = sol
    return out.reshape(K, K) / out.sum()


def _trim(kernel: np.ndarray, scale: int, mass: float = 1e-5) -> np.ndarray:
    """Drop border rows/columns of a centred-convention kernel that carry (almost) no weight,
    symmetrically so the convention holds."""
    K = kernel.shape[0]
    while K - 2 >= scale:
        ring = kernel.sum() - kernel[1:-1, 1:-1].sum()
        if ring > mass * kernel.sum():
            break
        kernel = kernel[1:-1, 1:-1]
        K -= 2
    return kernel / kernel.sum()


def _fixed_response_fit(b, x, response):
    """Gain and offset per channel for a known response shape: ``W = response * gain``."""
    t = response.T @ x
    W = np.zeros_like(response)
    o = np.zeros(b.shape[0])
    for j in range(b.shape[0]):
        A = np.stack([t[j], np.ones(t.shape[1])], 1)
        g, o[j] = np.linalg.lstsq(A, b[j], rcond=None)[0]
        W[:, j] = response[:, j] * g
    return W, o


def gaussian_parameters_note(est: Estimate) -> str:
    return (f"PSF Gaussian sigma {est.sigma[0]:.2f}/{est.sigma[1]:.2f} HR px at {est.angle:.0f} deg, shift "
            f"({est.shift[0]:+.2f}, {est.shift[1]:+.2f}) HR px")


def is_finite_estimate(est: Estimate) -> bool:
    return all(math.isfinite(v) for v in (*est.sigma, est.angle, *est.shift)) and np.all(np.isfinite(est.response))
