"""Fast model-based fusion: spectral subspace + guided prior + closed-form solve.

1. Subspace. ``z = E a`` with ``E`` (C x p) the leading left singular vectors of the LR-HS
   cube (noise in the discarded components is dropped too); ``p`` follows the LR-HS noise
   (:func:`~..solvers.subspace.signal_rank`: 16-20 for clean data, about 10 at SNR 30 dB).
   Bands much noisier than the median (water absorption, sensor edges) are down-weighted first
   (``band_weights``), so they neither steer the subspace nor dominate the LR data term.
2. Prior ``a0``. A local linear map from the HR image to the subspace coefficients, fitted on the
   LR grid between the degraded HR image ``D y`` and ``E^T x`` in sliding windows (the
   guided-filter estimator of He et al., TPAMI 2013), interpolated to the HR grid and applied to
   ``y``. Windows leave out LR pixels whose footprint is not fully seen by valid HR pixels.
3. Solve ``min_a ||m_x (D E a - x)||^2 + lam ||m_y (R E a - y)||^2 + mu ||a - a0||^2``, with the
   prior's weight ``mu`` following the LR-HS noise (:func:`auto_mu`: the noisier the cube, the less
   its data term is trusted against the prior)
   (:class:`~..solvers.fourier.SubspaceSystem`): in closed form in the Fourier domain when every
   pixel counts and the kernel stays inside the block (Wei et al., IEEE TIP 2015); otherwise on a
   domain extended by the kernel's reach, with the masks, by conjugate gradients preconditioned
   with that closed form. So a misregistered LR cube whose edge pixels see beyond the HR image,
   saturated HR pixels and nodata LR pixels take no part, instead of being wrapped around.
4. Optionally repeat 3 with the prior re-fitted on the HR grid: the guided filter of the last
   solution by the HR image in small windows (``iterations``, ``refit_radius``). Each pass moves
   the part of the cube that neither observation constrains towards a locally linear function
   of the HR image at a finer scale than the LR grid; ``unsupervised`` runs 12 of them.

The HR image reaches the method in linear light with the degradation's gain and offset removed
(:mod:`..observations`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..degradation import Degradation
from ..solvers.fourier import SubspaceSystem
from ..solvers.guided import GuidedFilter, default_radius, prior_from_lr
from ..solvers.subspace import band_weights, default_eps, noise_covariance, noise_to_signal, signal_rank, subspace
from .base import (
    PREVIEW_EVERY_S,
    FusionInputs,
    MethodInfo,
    Option,
    Progress,
    SceneContext,
    SceneRequest,
    register,
    run_to_end,
    small_preview,
)


@dataclass
class Setup:
    """What every subspace method computes first (:func:`setup`)."""

    E: np.ndarray  # (C, p) basis of the (band-weighted) subspace
    weights: np.ndarray  # (C,) band weights: the solve works on w * z
    system: SubspaceSystem  # prior -> coefficients, on the extended domain
    rank: int
    eps: float
    mu: float  # the prior's weight in the solve (resolved from the noise when given as 0)
    noise_cov: np.ndarray  # (C, C) HySime noise covariance of the band-weighted LR cube
    mu_requested: float = 0.0  # the caller's mu (0: none)

    def cube(self, a_ext: np.ndarray) -> np.ndarray:
        """(C, Y, X) float32 cube from coefficients on the extended domain (float32: a 200-band
        cube is then 4 bytes a value wherever it is held)."""
        z = np.tensordot(self.E.astype(np.float32), self.system.crop(a_ext).astype(np.float32), axes=1)
        z /= self.weights.astype(np.float32)[:, None, None]
        return z


def setup(inputs: FusionInputs, rank: int = 0, eps: float = 0.0, lam: float = 1.0, mu: float = 0.0,
          weighting: bool = True) -> Setup:
    """Subspace, band weights, LR coefficients and the solver; rank, eps and mu 0 are estimated from
    the LR-HS cube's noise (:func:`~..solvers.subspace.signal_rank`, :func:`~..solvers.subspace.default_eps`,
    :func:`auto_mu`)."""
    deg = inputs.degradation
    scene = inputs.scene.subspace if inputs.scene is not None else None
    if scene is None:  # a tile of a larger scene takes the scene's subspace (scene_setup)
        scene = scene_subspace(inputs.lr, inputs.lr_valid, rank, eps, weighting)
    w, rank, eps, E = scene["weights"], scene["rank"], scene["eps"], scene["E"]
    mu_requested = float(mu)
    mu = mu_requested or auto_mu(scene["nsr"])
    lr = inputs.lr.astype(np.float64) * w[:, None, None]
    xa = np.tensordot(E.T, lr, axes=1)  # p, y, x
    RE = (deg.srf / w[:, None]).T @ E  # the HR image sees z = (w z) / w
    system = SubspaceSystem(deg, inputs.hr.astype(np.float64), xa, RE, lam, mu, inputs.hr_valid, inputs.lr_valid)
    return Setup(E, w, system, rank, eps, mu, scene["noise_cov"], mu_requested)


MU_FLOOR = 1e-3  # the prior's weight on clean data
MU_PER_NSR = 60.0  # and its growth with the LR-HS cube's noise-to-signal power ratio


def auto_mu(nsr: float) -> float:
    """The guided prior's weight in the solve, from the LR-HS noise-to-signal power ratio ``nsr``.

    The LR term has weight 1, so ``mu`` is the ratio of the LR coefficients' noise variance to the
    prior's error variance, and it grows with the noise. Measured on 4 CAVE scenes with ``fast``:
    at LR-HS SNR 30 dB (nsr 1.6-1.9e-3) the best fixed ``mu`` is 0.1 (45.61 dB, SAM 4.70, against
    45.07 dB, SAM 6.37 with 1e-3; 0.03: 45.59, 0.3: 45.51), while clean cubes (nsr 1e-5 to
    1.5e-4) lose at most 0.04 dB up to 1e-2 (x8 and x32). ``60 nsr`` gives 0.1 at SNR 30 dB and
    stays within that range on clean data."""
    return max(MU_FLOOR, MU_PER_NSR * float(nsr))


def scene_subspace(lr: np.ndarray, valid: np.ndarray | None, rank: int = 0, eps: float = 0.0,
                   weighting: bool = True) -> dict:
    """Band weights, rank, eps and the basis ``E`` from an LR-HS cube (C, y, x): what :func:`setup`
    computes first, and what every tile of a tiled run shares (computed on the whole LR cube)."""
    lr = lr.astype(np.float64)
    noise_cov = noise_covariance(lr, valid)
    w = band_weights(noise_cov) if weighting else np.ones(len(lr))
    if not np.all(w == 1):
        lr = lr * w[:, None, None]
        noise_cov = noise_cov * np.outer(w, w)
    rank = int(rank) or signal_rank(lr, noise_cov=noise_cov, valid=valid)
    nsr = noise_to_signal(lr, noise_cov, valid)
    eps = float(eps) or default_eps(nsr)
    return {"weights": w, "rank": rank, "eps": eps, "nsr": nsr, "noise_cov": noise_cov, "E": subspace(lr, rank, valid)}


def guided_prior(st: Setup, radius: int = 0, eps: float = 1e-3, scene: SceneContext | None = None) -> np.ndarray:
    """Step 2 on the extended domain: the guided prior ``a0`` (p, Ye, Xe); ``radius`` 0 picks
    :func:`~..solvers.guided.default_radius`. A tile of a larger scene is regularised relative to
    the scene's guide variance (``scene.guide_variance``, see :func:`scene_setup`), not its own."""
    sys = st.system
    radius = int(radius) or default_radius(sys.s)
    hr_lr = sys.lr(sys.hr)  # D y
    weights = None
    if sys.masked:  # LR pixels observed, weighted by how much of their footprint the HR image sees validly
        seen = sys.lr(sys.hr_mask[None].astype(np.float64))[0]
        weights = sys.lr_mask * np.clip((seen - 0.5) / 0.5, 0.0, 1.0)
    variance = scene_variance(scene, "guide_variance", radius)
    return prior_from_lr(sys.hr, hr_lr, sys.xa, sys.s, radius, eps, weights, variance)


def lr_displacement(deg: Degradation) -> tuple[float, float]:
    """Where the LR pixels sit relative to the block centres (HR pixels): the model's shift."""
    ty, tx = deg.lr_translate
    return ty - (deg.scale - 1) / 2.0, tx - (deg.scale - 1) / 2.0


def cs_prior(st: Setup, inputs: FusionInputs) -> np.ndarray:
    """The component-substitution prior on the extended domain: GSA's cube (each band's LR values
    with the HR image's detail injected by a global gain), in the subspace."""
    from . import gsa

    deg = inputs.degradation
    cube = gsa.sharpen(inputs.hr.astype(np.float64), inputs.lr.astype(np.float32), deg.scale, lr_displacement(deg),
                       dtype=np.float32, lr_use=gsa.seen_lr_pixels(inputs))
    cube *= st.weights.astype(np.float32)[:, None, None]
    return st.system.extend(np.tensordot(st.E.T, cube, axes=1))


def prior_weight(st: Setup, radius: int, eps: float) -> tuple[float, float]:
    """How much to trust the guided prior over the component-substitution one, from the pair.

    Both predict the LR cube's coefficients from the HR image seen at LR resolution: the guided
    maps from the local colour, CS from the local brightness alone. Their leave-one-out errors on
    the LR grid say whether colour carries the spectral detail (CAVE scenes: error ratio 0.02-0.05,
    material changes) or little beyond brightness (a forest canopy seen by an airborne camera:
    0.57, shading). Local colour maps learnt between LR pixels then do not carry over to the
    detail inside them, and injecting brightness (CS) keeps the spectra (NEON, Wald test at 4 m:
    SAM 2.6 against 3.9). Returns ``(weight of the guided prior, error ratio)``: weight 1 below a
    ratio of 0.1, 0 above 0.5, linear between.
    """
    from ..solvers.guided import loo_error

    sys = st.system
    xa = sys.xa[(slice(None),) + sys.inner_lr]
    hr_lr = sys.lr(sys.hr)[(slice(None),) + sys.inner_lr]
    valid = sys.lr_mask[sys.inner_lr]
    if not sys.hr_mask[sys.inner].all():
        # judged only where every window is fully seen by valid HR pixels: a saturated or NaN block
        # (filled with its neighbours' values) explains nothing and flipped flowers to the CS prior
        from scipy import ndimage

        seen = sys.lr(sys.hr_mask[None].astype(np.float64))[0][sys.inner_lr] >= 0.99
        seen = ndimage.binary_erosion(seen, np.ones((2 * radius + 1,) * 2, bool), border_value=1)
        valid = valid & seen if seen.sum() >= 4 else valid
    guided_err, cs_err = loo_error(hr_lr, xa, radius, eps, None if valid.all() else valid)
    ratio = float(guided_err / max(cs_err, 1e-30))
    return float(np.clip((0.5 - ratio) / 0.4, 0.0, 1.0)), ratio


def build_prior(st: Setup, inputs: FusionInputs, prior: str, radius: int, eps: float, info: dict) -> np.ndarray:
    """The prior of the first solve: ``guided``, ``cs`` or ``auto`` (a blend weighted by
    :func:`prior_weight`); ``info`` records what was chosen."""
    radius = int(radius) or default_radius(st.system.s)
    if prior not in ("auto", "guided", "cs"):
        from ..errors import InputError

        raise InputError(f"prior must be 'auto', 'guided' or 'cs', got {prior!r}.")
    w = {"guided": 1.0, "cs": 0.0}.get(prior)
    if w is None and inputs.scene is not None and inputs.scene.prior_guided_weight is not None:  # the scene's
        w = float(inputs.scene.prior_guided_weight)
    if w is None:
        w, ratio = prior_weight(st, radius, eps)
        info["prior_error_ratio"] = round(ratio, 4)
    info["prior_guided_weight"] = round(w, 3)
    out = guided_prior(st, radius, eps, inputs.scene) if w > 0 else 0.0
    if w < 1:
        out = w * out + (1 - w) * cs_prior(st, inputs)
    return out


REFIT_CHUNK = 6  # coefficient channels per refit call (chunks keep progress and stop frequent)


def scene_variance(scene: SceneContext | None, key: str, radius: int) -> float | None:
    """A tiled scene's guide variance for windows of ``radius`` (``"guide_variance"``: the LR-grid
    prior's, ``"refit_variance"``: the HR-grid refits'), or None (a whole frame uses its own)."""
    known = getattr(scene, key) if scene is not None else None
    return known["value"] if known and known["radius"] == int(radius) else None


def refit_rounds(st: Setup, a: np.ndarray, rounds: int, radius: int, eps: float, step0: int, total: int,
                 scene: SceneContext | None = None):
    """Generator: ``rounds`` times, re-fit the prior from ``a`` (extended domain; the guided filter
    of ``a`` by the HR image) and solve again. Yields Progress from ``step0 + 1`` (channels in
    chunks: they are independent, and chunks keep progress frequent); returns the last solution
    and prior (``None`` if no round). ``scene``: a tiled run's, whose guide variance regularises
    the refits as in the whole frame."""
    import time

    sys = st.system
    weights = sys.hr_mask if sys.masked else None
    variance = scene_variance(scene, "refit_variance", radius)
    refit = GuidedFilter(sys.hr, radius, eps, weights, variance) if rounds else None  # one guide for every round
    prior = None
    last_preview = -float("inf")  # the first estimate at once, then every PREVIEW_EVERY_S
    for i in range(rounds):
        prior = np.empty_like(a)
        for c in range(0, len(a), REFIT_CHUNK):
            yield Progress(step0 + 2 * i + 1, total, message=f"prior refit {i + 1}/{rounds}")
            prior[c:c + REFIT_CHUNK] = refit(a[c:c + REFIT_CHUNK])
        a = sys.solve_extended(prior, start=a if sys.masked else None)
        preview = None
        if time.perf_counter() - last_preview >= PREVIEW_EVERY_S:  # the estimate converging, for a viewer
            preview, last_preview = small_preview(st.cube(a)), time.perf_counter()
        yield Progress(step0 + 2 * i + 2, total, message=f"solve {i + 2}/{rounds + 1}", preview=preview)
    return a, prior


def run(inputs: FusionInputs, rank: int = 0, lam: float = 1.0, mu: float = 0.0, radius: int = 0,
        eps: float = 0.0, iterations: int = 1, refit_radius: int = 4, band_weights: bool = True,
        prior: str = "auto"):
    total = 2 * iterations + 1
    yield Progress(0, total, message="subspace")
    st = setup(inputs, rank, eps, lam, mu, band_weights)
    yield Progress(1, total, message=f"prior (rank {st.rank})")
    info: dict = {}
    a0 = build_prior(st, inputs, prior, radius, st.eps, info)
    st = conservative(st, info)
    yield Progress(2, total, message=f"solve 1/{iterations}")
    a, _ = yield from refit_rounds(st, st.system.solve_extended(a0), int(iterations) - 1, int(refit_radius),
                                   st.eps, 2, total, inputs.scene)
    cube = st.cube(a)
    np.clip(cube, 0, None, out=cube)
    yield Progress(total, total, message="done")
    return cube, {"resolved": {**_resolved(st), **info}}


def conservative(st: Setup, info: dict) -> Setup:
    """When the component-substitution prior dominates, the HR image explains the cube poorly: the
    prior then weighs more in the solve, ``0.16 / s^2`` (the LR term's weight per HR pixel falls as
    ``1 / s^2``). Measured on NEON: at s = 4 (Wald test) 0.01 brings SAM from 2.78 to 2.60 with the
    same PSNR; at s = 10 (the full pair) 0.0016 keeps the LR residual at 7.0 % (0.01: 12.9 %).
    This rule replaces the noise-based weight (:func:`auto_mu`) rather than adding to it: on the
    full NEON pair, whose HySime ratio (1.1e-4) is model error more than noise, stacking them
    (0.0065) raised the LR residual to 9.6 % with no reference to say it helped."""
    if info.get("prior_guided_weight", 1.0) < 0.5:
        st.mu = max(st.mu_requested or MU_FLOOR, 0.16 / st.system.s ** 2)
        st.system.set_mu(st.mu)
    return st


def _resolved(st: Setup) -> dict:
    out = {"rank": st.rank, "eps": st.eps, "mu": round(st.mu, 6)}
    low = np.flatnonzero(st.weights < 1)
    if low.size:  # the bands taken as noisy, and their weights
        out["down_weighted_bands"] = {int(b): round(float(st.weights[b]), 3) for b in low}
    if st.system.masked:
        out["masked_solve_iterations"] = st.system.iterations
    return out


def scene_setup(req: SceneRequest, scene: SceneContext, refits: int | None = None):
    """Generator: what the tiles of a scene share, computed once (``MethodInfo.scene_setup``): the
    subspace, band weights, rank and noise level of the whole LR cube, the prior's choice (on the
    central crop) and, for tiles, the guided prior's and refits' regularisation scales (streamed
    over the scene). ``refits``: prior refits per tile (default: ``iterations - 1``). Returns
    ``(scene, notes)``."""
    from dataclasses import replace

    opts, notes = req.options, []
    full_lr, valid = req.full_lr()
    scene = replace(scene, subspace=scene_subspace(full_lr, valid, opts.get("rank", 0), opts.get("eps", 0.0),
                                                   opts.get("band_weights", True)))
    del full_lr
    if opts.get("prior", "auto") == "auto":
        st = setup(req.crop_inputs(req.degradation, scene), weighting=opts.get("band_weights", True))
        weight, ratio = prior_weight(st, default_radius(req.scale), st.eps)
        scene = replace(scene, prior_guided_weight=weight)
        notes.append(f"prior chosen for the scene: guided weight {weight:.2f} (error ratio {ratio:.3f})")
    guided = opts.get("prior", "auto") != "cs" and (scene.prior_guided_weight is None or scene.prior_guided_weight > 0)
    if req.guide_variance is not None and guided:
        radius = int(opts.get("radius", 0)) or default_radius(req.scale)
        refits = opts.get("iterations", 1) - 1 if refits is None else refits
        refit_radius = int(opts.get("refit_radius", 4)) if refits else None
        lr_value, hr_value = yield from req.guide_variance(radius, refit_radius)
        scene = replace(scene, guide_variance={"radius": radius, "value": lr_value},
                        refit_variance={"radius": refit_radius, "value": hr_value} if refit_radius else None)
    return scene, notes


register(MethodInfo(
    "fast", run, "Model-based fusion: spectral subspace, guided prior and closed-form solve (seconds).",
    options=(
        Option("rank", 0, "spectral subspace dimension (0: estimated from the LR-HS noise, at most 20)",
               minimum=0, maximum=64),
        Option("lam", 1.0, "weight of the HR-image term", minimum=1e-4, maximum=1e4),
        Option("mu", 0.0, "weight of the guided prior (0: from the LR-HS noise, 1e-3 on clean data, about "
               "0.1 at SNR 30 dB)", minimum=1e-6, maximum=1e3, auto=0.0),
        Option("radius", 0, "guided prior window radius in LR pixels (0: 2 for scale <= 8, else 1)",
               minimum=0, maximum=16),
        Option("eps", 0.0, "guided prior regularisation, relative (0: the LR-HS noise-to-signal ratio, "
               "at least 1e-4)", minimum=1e-8, maximum=10.0, auto=0.0),
        Option("iterations", 1, "solves; each after the first re-fits the prior on the HR grid",
               minimum=1, maximum=50),
        Option("refit_radius", 4, "window radius of the prior re-fits, in HR pixels", minimum=1, maximum=64),
        Option("band_weights", True, "down-weight LR bands much noisier than the median (HySime estimate)"),
        Option("prior", "auto", "'guided' (local colour -> spectrum maps), 'cs' (component substitution: brightness "
               "detail injected into the LR spectra) or 'auto' (chosen from the pair)",
               choices=("auto", "guided", "cs")),
    ),
    bytes_per_band=40, bytes_per_coefficient=40, safe_fallbacks=("gsa",), scene_setup=scene_setup,
))


# The networks' base: fast as it was when the shipped msfn weights were trained (fixed rank and
# eps, no band weights). Changing it would shift what the residual networks correct, so it is pinned.
NETWORK_BASE_OPTIONS = {"rank": 10, "eps": 1e-3, "mu": 1e-3, "band_weights": False, "prior": "guided"}


def estimate(deg: Degradation, hr: np.ndarray, lr: np.ndarray, scene: SceneContext | None = None,
             **options) -> np.ndarray:
    """The fast method's cube for ``hr`` (k, Y, X) and ``lr`` (C, y, x), without the API's checks
    (for networks that refine it, on crops during training), with :data:`NETWORK_BASE_OPTIONS`
    unless ``options`` say otherwise; ``scene``: a tiled run's shared subspace."""
    return run_to_end(run(FusionInputs(hr, lr, deg, scene=scene), **{**NETWORK_BASE_OPTIONS, **options}))[0]


def project_consistent(deg: Degradation, hr: np.ndarray, lr: np.ndarray, prior_cube: np.ndarray,
                       rank: int = 16, lam: float = 1.0, mu: float = 1e-3, hr_valid=None, lr_valid=None,
                       E: np.ndarray | None = None) -> np.ndarray:
    """Data-consistency step for a network's cube: fast's solve with ``prior_cube`` as the prior,
    inside the LR cube's ``rank``-dimensional subspace; the prior's part outside that subspace
    (which the LR-HS cube barely constrains) is kept as is.

    ``hr`` (k, Y, X), ``lr`` (C, y, x), ``prior_cube`` (C, Y, X); returns (C, Y, X) float32.
    ``E``: the subspace to use (a tiled run's, from the whole LR cube) instead of ``lr``'s own.
    """
    lr = lr.astype(np.float64)
    E = subspace(lr, rank, lr_valid) if E is None else E
    xa = np.tensordot(E.T, lr, axes=1)
    # the cube-sized products in float32 (the network's precision): the cube is C / p times the
    # coefficients, and float64 copies of it were most of this step's time and memory
    prior_cube = np.asarray(prior_cube, dtype=np.float32)
    E32 = E.astype(np.float32)
    a0 = np.tensordot(E32.T, prior_cube, axes=1).astype(np.float64)
    system = SubspaceSystem(deg, hr.astype(np.float64), xa, deg.srf.T @ E, lam, mu, hr_valid, lr_valid)
    change = (system(a0) - a0).astype(np.float32)
    return prior_cube + np.tensordot(E32, change, axes=1)  # the solve moves the prior inside the subspace only
