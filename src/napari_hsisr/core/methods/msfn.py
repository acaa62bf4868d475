"""Supervised fusion (``msfn``): a learned prior applied to the fast method's cube.

The shipped weights (``data/weights/msfn_prior.pt``, :mod:`..nets.prior`) serve every scale, PSF and
camera: the network refines what ``fast`` made with the pair's own degradation, and the
data-consistency step (:func:`.fast.project_consistent`: fast's solve with the network's cube as the
prior) makes the result honour that degradation; ``consistency=False`` returns the raw network
output. They were trained on the 19 CAVE scenes of the shared data over random degradations
(:mod:`..prior_training`, ``hsisr train --config configs/msfn_prior.json``), for 31 bands at
400..700 nm.

Weights a user trained for one degradation with the older recipe (``hsisr train --scale ...``: the
multi-scale fusion network of :mod:`..nets.msfn`) still load; when the pair's PSF or response
differs from theirs the result says so (``settings["warnings"]``).
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import FusionInputs, MethodInfo, Option, Progress, register, run_to_end

CHECK_MIN_RATIO = 2  # the self-check needs an LR cube of at least 2 s pixels a side (a 2 x 2 coarse LR cube)
PRIOR_HALO = 24  # HR pixels: the reach of nets.prior's receptive field, the tile halo of msfn and unsupervised
PSF_TOLERANCE = 0.02  # relative L2 difference of kernels above which the weights "do not match"
SRF_TOLERANCE_DEG = 2.0  # mean spectral angle between SRF channels above which they "do not match"


def shipped_weights_dir() -> Path:
    return Path(str(resources.files("napari_hsisr") / "data" / "weights"))


def shipped_weights(scale: int | None = None) -> Path | None:
    """The shipped weights (one file for every scale; ``scale`` is accepted and unused)."""
    path = shipped_weights_dir() / "msfn_prior.pt"
    return path if path.exists() else None


def resolve_weights(weights: str, scale: int) -> Path:
    if weights in ("", "auto"):
        path = shipped_weights(scale)
        if path is None:
            raise InputError("This installation has no shipped MSFN weights (data/weights/msfn_prior.pt); "
                             "reinstall the package, or train weights with `hsisr train --config` and pass "
                             "weights=PATH.")
        return path
    path = Path(weights).expanduser()
    if not path.exists():
        raise InputError(f"weights file {path} not found.")
    return path


def degradation_mismatch(deg, record: dict) -> list[str]:
    """Human-readable differences between ``deg`` and the degradation the weights were trained for."""
    trained = record.get("degradation", {})
    out = []
    if trained.get("boundary", deg.boundary) != deg.boundary:
        out.append(f"boundary '{deg.boundary}' (weights: '{trained['boundary']}')")
    if int(trained.get("scale", deg.scale)) != deg.scale:
        out.append(f"scale {deg.scale} (weights: {trained['scale']})")
    k_t = np.asarray(trained.get("psf_kernel", deg.kernel), dtype=float)
    if k_t.shape != deg.kernel.shape:  # the kernel the operators use: a shift is in it
        out.append(f"PSF size {deg.kernel.shape[0]} (weights: {k_t.shape[0]})")
    else:
        rel = float(np.linalg.norm(deg.kernel - k_t) / np.linalg.norm(k_t))
        if rel > PSF_TOLERANCE:
            out.append(f"PSF differs by {100 * rel:.0f} % (relative L2) from the weights' "
                       f"{trained.get('psf', '?')} kernel")
    srf_t = trained.get("srf_matrix")
    if srf_t is not None and deg.srf is not None:
        srf_t = np.asarray(srf_t, dtype=float)
        if srf_t.shape != deg.srf.shape:
            out.append(f"SRF shape {deg.srf.shape} (weights: {srf_t.shape})")
        else:
            cos = np.sum(srf_t * deg.srf, 0) / (np.linalg.norm(srf_t, axis=0) * np.linalg.norm(deg.srf, axis=0))
            angle = float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())
            if not angle <= SRF_TOLERANCE_DEG:  # NaN (an all-zero channel) is a mismatch too
                out.append(f"SRF differs by {angle:.1f} deg (mean spectral angle) from the weights' "
                           f"{trained.get('srf', '?')}")
    return out


def prior_fits(record: dict, bands: int, wavelengths) -> bool:
    """Whether prior weights serve a cube of ``bands`` bands at ``wavelengths`` (None: unknown)."""
    wl = np.asarray(record.get("wavelengths", []), dtype=float)
    return bands == wl.size and (wavelengths is None or (wavelengths.size == wl.size and
                                                         np.allclose(wavelengths, wl, atol=2.0)))


def check_prior(record: dict, inputs: FusionInputs, source: str) -> None:
    """The prior's weights know one band grid; a cube on another one is refused with what to do."""
    C = inputs.lr.shape[0]
    wl = np.asarray(record.get("wavelengths", []), dtype=float)
    given = inputs.degradation.wavelengths
    if not prior_fits(record, C, given):
        span = f" ({given.min():.0f}..{given.max():.0f} nm)" if given is not None and given.size else ""
        have = f"{C} bands{span}"
        raise InputError(f"{source} are for {wl.size} bands at {wl.min():.0f}..{wl.max():.0f} nm every "
                         f"{wl[1] - wl[0]:.0f} nm; this cube has {have}. Use 'fast' or 'unsupervised', or train "
                         "weights on cubes of your band grid with `hsisr train --config`.")


def _check_model(model, inputs: FusionInputs, source: str) -> None:
    C, k = inputs.lr.shape[0], inputs.hr.shape[0]
    cfg = model.config()
    if cfg["bands"] != C or cfg["channels"] != k or cfg["scale"] != inputs.degradation.scale:
        raise InputError(f"{source} are for {cfg['bands']} bands, {cfg['channels']} HR channels, x{cfg['scale']}; "
                         f"this pair has {C} bands, {k} channels, x{inputs.degradation.scale}. Use "
                         "the shipped weights (weights='auto') or train weights for it with `hsisr train`.")


def _base(model, deg, hr: np.ndarray, lr: np.ndarray, scene=None):
    """The fast method's cube that a residual network refines (None for a plain network)."""
    from .fast import estimate

    return estimate(deg, hr, lr, scene=scene) if model.residual else None


def is_prior(record: dict) -> bool:
    return record.get("kind") == "spectral_prior"


def dihedral(cube: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """Transform ``k`` (0-7) of the square's 8 symmetries on the last two axes: ``k % 4`` quarter
    turns, then a left-right flip when ``k >= 4``; ``inverse`` undoes it."""
    turns, flip = k % 4, k >= 4
    if inverse:
        cube = cube[..., ::-1] if flip else cube
        return np.rot90(cube, -turns, axes=(-2, -1))
    cube = np.rot90(cube, turns, axes=(-2, -1))
    return cube[..., ::-1] if flip else cube


def infer_prior(model, base: np.ndarray, scale: int, device: str = "cpu", scene=None,
                transforms: int = 1) -> np.ndarray:
    """The prior network on a (C, Y, X) cube -> (C, Y, X) float32; in a tiled run (``scene``) with
    the scene's normalisation level. ``transforms`` > 1: the mean of the network over the first
    ``transforms`` of the 8 flips and rotations (:func:`dihedral`; the network is not equivariant)."""
    return run_to_end(infer_prior_iter(model, base, scale, device, scene, transforms))


def infer_prior_iter(model, base: np.ndarray, scale: int, device: str = "cpu", scene=None, transforms: int = 1,
                     step: Progress | None = None):
    """Generator form of :func:`infer_prior`: yields ``step`` (with the pass in its message) before
    each pass of the network, so that a caller can show it and stop between passes."""
    import torch

    dev = torch.device(device)
    level = None if scene is None else scene.prior_level
    n = max(1, int(transforms))
    if level is None and n > 1:  # each transform divided by the same level
        level = max(float(np.mean(base, dtype=np.float64)), 1e-6)
    total = None
    for k in range(n):
        if step is not None:
            yield replace(step, message=f"{step.message}: pass {k + 1}/{n}" if n > 1 else step.message)
        with torch.no_grad():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                x = torch.as_tensor(np.ascontiguousarray(dihedral(base, k)), dtype=torch.float32, device=dev)[None]
                out = dihedral(model.to(dev)(x, scale, level)[0].float().cpu().numpy(), k, inverse=True)
        if total is None:
            total = out  # the network's own output array (a view of it): summed into in place
        else:
            total += out
    if n > 1:
        total /= n
    return np.ascontiguousarray(total)


def _infer(model, inputs: FusionInputs, base):
    import torch

    dev = torch.device(inputs.device)
    t = lambda a: None if a is None else torch.as_tensor(  # noqa: E731
        np.ascontiguousarray(a), dtype=torch.float32, device=dev)[None]
    with torch.no_grad():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = model.to(dev)(t(inputs.hr), t(inputs.lr), t(base))[-1]
    return out[0].float().cpu().numpy()


def finish(inputs, cube, consistency: bool, mu: float):
    """The consistency step; on a tile, only where the tile is kept (plus fast's halo): the
    network needed the wider window, the solve does not."""
    from .fast import project_consistent

    if consistency:
        scene = inputs.scene
        region = scene.solve_region if scene is not None else None
        if region is None:
            cube = project_consistent(inputs.degradation, inputs.hr, inputs.lr, cube, mu=mu,
                                      hr_valid=inputs.hr_valid, lr_valid=inputs.lr_valid,
                                      E=scene.consistency_E if scene is not None else None)
        else:
            part, index = inputs.crop(region), (slice(None), *region)
            cube = cube.copy()  # outside the region: the network's own cube, which no tile keeps
            cube[index] = project_consistent(part.degradation, part.hr, part.lr, cube[index], mu=mu,
                                             hr_valid=part.hr_valid, lr_valid=part.lr_valid,
                                             E=scene.consistency_E)
    return np.clip(cube, 0, None).astype(np.float32)


def oom_error(method: str):
    return InputError(f"Out of GPU memory in method {method!r}; use device='cpu' or a smaller crop.")


def coarse_pair(inputs: FusionInputs, base_gen, min_ratio: int = 4):
    """``(base cube, target x)`` float32 of the pair degraded once more by its own spatial operator
    (``D y`` on the LR grid, ``D x`` on a grid ``s`` times coarser; ``x`` is that pair's truth),
    the base made by ``base_gen(FusionInputs) -> generator returning (cube, extras)``; None when
    the LR cube is under ``min_ratio * s`` pixels a side."""
    from .base import run_to_end

    deg = inputs.degradation
    s = deg.scale
    y, x = inputs.lr.shape[-2:]
    if min(y, x) < min_ratio * s:
        return None
    y, x = y // s * s, x // s * s
    hr_c = deg.spatial(inputs.hr[:, :y * s, :x * s].astype(np.float64)).astype(np.float32)
    lr_c = deg.spatial(inputs.lr[:, :y, :x].astype(np.float64)).astype(np.float32)
    base_c, _ = run_to_end(base_gen(FusionInputs(hr_c, lr_c, deg, seed=inputs.seed)))
    return base_c.astype(np.float32), np.ascontiguousarray(inputs.lr[:, :y, :x], dtype=np.float32)


def self_check(model, inputs: FusionInputs, base_gen) -> dict:
    """The prior against its base on the pair degraded once more, where the truth is known: the
    network is kept only where it does not make that pair worse (a scene or a degradation unlike
    its training data can). Returns ``{"checked", "gain_db", "use_prior"}``."""
    pair = coarse_pair(inputs, base_gen, CHECK_MIN_RATIO)
    if pair is None:
        return {"checked": False, "use_prior": True}
    base_c, truth = pair
    net_c = infer_prior(model, base_c, inputs.degradation.scale, inputs.device)
    err = lambda c: float(np.mean((np.clip(c, 0, None) - truth) ** 2)) + 1e-20  # noqa: E731
    gain = 10 * np.log10(err(base_c) / err(net_c))
    return {"checked": True, "gain_db": round(float(gain), 3), "use_prior": bool(gain >= 0)}


def scene_or_self_check(model, record: dict, inputs: FusionInputs, base_gen, enabled: bool) -> dict:
    """Whether to use the prior: not at a scale outside those it was trained on (on the synthetic
    sample at x3 it lost 10 dB to fast); with ``enabled``, the scene's self-check verdict in a tiled
    run (one for all tiles: a tile's own could differ from its neighbours' and show seams), else
    the check on these inputs."""
    scales = record.get("config", {}).get("scales") or []
    s = inputs.degradation.scale
    if scales and not min(scales) <= s <= max(scales):
        return {"checked": False, "use_prior": False, "scale_outside": [min(scales), max(scales)]}
    if not enabled:
        return {"checked": False, "use_prior": True}
    scene = inputs.scene
    if scene is not None and scene.prior_check is not None:
        return scene.prior_check
    return self_check(model, inputs, base_gen)


def with_prior_check(req, scene, base_gen):
    """``scene`` with the consistency step's subspace and the prior's verdict on the central crop."""
    from dataclasses import replace

    from ..solvers.subspace import subspace
    from ..training import load_weights

    full_lr, valid = req.full_lr()
    # the network's input level: the whole frame's base mean, which the LR cube's mean approximates
    level = float(full_lr.mean() if valid is None else full_lr[:, valid].mean())
    scene = replace(scene, consistency_E=subspace(full_lr, 16, valid), prior_level=level)
    del full_lr
    if req.options.get("check", False):
        model, _ = load_weights(resolve_weights(str(req.options.get("weights", "auto")), req.scale))
        scene = replace(scene, prior_check=self_check(model, req.crop_inputs(req.degradation, scene), base_gen))
    return scene


def check_warning(check: dict, what: str) -> str:
    if "scale_outside" in check:
        lo, hi = check["scale_outside"]
        return (f"The learned prior was trained for scales {lo} to {hi}, not this pair's, so the result is {what}'s "
                "(with the consistency step). Train weights for your scale with `hsisr train --config`.")
    return (f"The learned prior made this pair, degraded once more, worse ({check['gain_db']:+.2f} dB against "
            f"{what}), so the result is {what}'s (with the consistency step): the scene or its degradation is "
            "unlike the prior's training data.")


def prior_base(inputs: FusionInputs):
    """Generator: the fast method's cube with the options the prior was trained on (its defaults)."""
    from ..prior_training import BASE_OPTIONS
    from . import fast

    return (yield from fast.run(inputs, **BASE_OPTIONS))


def run_msfn(inputs: FusionInputs, weights: str = "auto", consistency: bool = True, mu: float = 0.0,
             check: bool = False, ensemble: int = 4):
    import torch

    from ..training import load_weights
    from .base import relayed

    deg = inputs.degradation
    yield Progress(0, 4, message="loading weights")
    path = resolve_weights(str(weights), deg.scale)
    model, record = load_weights(path, device="cpu")
    warnings = []
    try:
        if is_prior(record):
            check_prior(record, inputs, f"weights {path.name}")
            base, base_extras = yield from relayed(prior_base(inputs),
                                                   lambda p: Progress(1, 4, message=f"fast: {p.message}"))
            # the base's prior weight follows the LR-HS noise; so does the consistency step's
            mu = float(mu) or float(base_extras.get("resolved", {}).get("mu", 1e-3))
            yield Progress(2, 4, message="learned prior (checked on the pair degraded once more)")
            verdict = scene_or_self_check(model, record, inputs, prior_base, check)
            cube = (yield from infer_prior_iter(model, base, deg.scale, inputs.device, inputs.scene, ensemble,
                                                Progress(2, 4, message="learned prior"))) \
                if verdict["use_prior"] else base
            if not verdict["use_prior"]:
                warnings.append(check_warning(verdict, "fast"))
        else:
            _check_model(model, inputs, f"weights {path.name}")
            diff = degradation_mismatch(deg, record)
            if diff:
                warnings.append(f"The MSFN weights were trained for another degradation ({'; '.join(diff)}): expect "
                                "lower quality. Use the shipped weights (weights='auto'), which serve any PSF and "
                                "camera, or train weights for yours with `hsisr train`.")
            yield Progress(2, 4, message="fast estimate + network")
            cube = _infer(model, inputs, _base(model, deg, inputs.hr, inputs.lr, inputs.scene))
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise oom_error("msfn") from None
    mu = float(mu) or 1e-3
    yield Progress(3, 4, message="consistency step" if consistency else "done")
    cube = finish(inputs, cube, bool(consistency), mu)
    yield Progress(4, 4, message="done")
    resolved = {"consistency_mu": mu, **({"prior_check": verdict} if is_prior(record) else {})}
    extras = {"warnings": warnings, "resolved": resolved,
              "weights": {"file": path.name, "sha256": record["sha256"], "kind": record.get("kind", "msfn"),
                          "trained_scenes": record.get("trained_scenes", record.get("train")),
                          "degradation": record.get("degradation", {}).get("name")}}
    return cube, extras


_COMMON = (
    Option("consistency", True, "end with the closed-form data-consistency step (fast's solve with the "
           "network's cube as prior)"),
    Option("mu", 0.0, "weight of the network's cube in the consistency step (0: the weight fast chose from the "
           "LR-HS noise, 1e-3 on clean data)", minimum=1e-6, maximum=1e3, auto=0.0),
    Option("check", False, "experimental: keep the learned prior only if it does not make the pair, degraded "
           "once more, worse than its base (on CAVE this check rejected the prior where it helped)"),
)


# 4 quarter turns: +0.04 dB at x8 and +0.03 at x32 over one pass (19 held-out CAVE scenes), 0.02 less
# lost out of domain; the 4 flipped ones add 0.01 or nothing (docs/benchmarks.md)
ENSEMBLE = Option("ensemble", 4, "average the learned prior over this many of the cube's 8 rotations and flips "
                  "(1: one pass; each costs one more pass of the network)", minimum=1, maximum=8)


def scene_setup(req, scene):
    """Generator: what the tiles share (``MethodInfo.scene_setup``), computed once for the whole
    scene: the base's (fast's own scene setup: subspace, prior choice, guided prior scale; for old
    MSFN weights the pinned base's subspace), the consistency step's subspace and the prior's
    self-check on the central crop. Returns ``(scene, notes)``."""
    from dataclasses import replace

    from ..prior_training import BASE_OPTIONS
    from ..solvers.guided import default_radius
    from ..solvers.subspace import subspace
    from ..training import load_weights
    from . import fast

    _, record = load_weights(resolve_weights(str(req.options.get("weights", "auto")), req.scale))
    if is_prior(record):
        scene, notes = yield from fast.scene_setup(replace(req, options=dict(BASE_OPTIONS)), scene)
        return with_prior_check(req, scene, prior_base), notes
    full_lr, valid = req.full_lr()
    base = fast.NETWORK_BASE_OPTIONS
    scene = replace(scene,
                    subspace=fast.scene_subspace(full_lr, valid, base["rank"], base["eps"], base["band_weights"]),
                    consistency_E=subspace(full_lr, 16, valid))
    del full_lr
    if req.guide_variance is not None:
        radius = default_radius(req.scale)
        lr_value, _ = yield from req.guide_variance(radius, None)
        scene = replace(scene, guide_variance={"radius": radius, "value": lr_value})
    return scene, []


register(MethodInfo(
    "msfn", run_msfn,
    "Learned prior (shipped weights: any scale, PSF and camera; 31 bands, 400-700 nm; learned on close-range "
    "CAVE scenes: on other scene types compare with fast) refining fast's cube, then a data-consistency step: "
    "seconds.",
    options=(Option("weights", "auto", "'auto' (shipped weights for the scale) or a path to exported weights"),
             *_COMMON, ENSEMBLE),
    uses_torch=True, receptive_field=PRIOR_HALO, bytes_per_band=56, bytes_per_coefficient=48, scene_setup=scene_setup,
))
