"""Supervised multi-scale fusion network (``msfn``) and its zero-shot variant (``msfn-zeroshot``).

``msfn`` applies shipped (or user-trained, ``hsisr train``) weights in one forward pass. Weights are
trained for one degradation; when the user's PSF or SRF differs from it, the result says so
(``settings["warnings"]``) and suggests ``msfn-zeroshot`` or training.

``msfn-zeroshot`` needs no external data: both observations are degraded once more by the spatial
model (``D y`` on the LR grid, ``D x`` on a grid s times coarser), the network learns
``(D y, D x) -> x`` on the pair itself (random crops, flips/rotations), then maps ``(y, x)``; it can
start from the shipped weights and fine-tune. It needs an LR image of at least ``2 s`` pixels a
side (at x32, a 2048 x 2048 HR image).

Both end, by default, with a data-consistency step (:func:`.fast.project_consistent`): the closed-form
solve of the fast method with the network's cube as the prior, so the result agrees with both
observations; ``consistency=False`` returns the raw network output.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import FusionInputs, MethodInfo, Option, Progress, register

YIELD_EVERY_S = 0.4
PSF_TOLERANCE = 0.02  # relative L2 difference of kernels above which the weights "do not match"
SRF_TOLERANCE_DEG = 2.0  # mean spectral angle between SRF channels above which they "do not match"


def shipped_weights_dir() -> Path:
    return Path(str(resources.files("napari_hsisr") / "data" / "weights"))


def shipped_weights(scale: int) -> Path | None:
    path = shipped_weights_dir() / f"msfn_x{int(scale)}.pt"
    return path if path.exists() else None


def _shipped_scales() -> list[int]:
    return sorted(int(p.stem.split("_x")[1]) for p in shipped_weights_dir().glob("msfn_x*.pt"))


def resolve_weights(weights: str, scale: int) -> Path:
    if weights in ("", "auto"):
        path = shipped_weights(scale)
        if path is None:
            have = ", ".join(f"x{s}" for s in _shipped_scales()) or "none"
            raise InputError(f"No shipped MSFN weights for scale {scale} (shipped: {have}); use method "
                             "'msfn-zeroshot', or train weights with `hsisr train` and pass weights=PATH.")
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


def _check_model(model, inputs: FusionInputs, source: str) -> None:
    C, k = inputs.lr.shape[0], inputs.hr.shape[0]
    cfg = model.config()
    if cfg["bands"] != C or cfg["channels"] != k or cfg["scale"] != inputs.degradation.scale:
        raise InputError(f"{source} are for {cfg['bands']} bands, {cfg['channels']} HR channels, x{cfg['scale']}; "
                         f"this pair has {C} bands, {k} channels, x{inputs.degradation.scale}. Use "
                         "'msfn-zeroshot' or train weights for it with `hsisr train`.")


def _base(model, deg, hr: np.ndarray, lr: np.ndarray, scene=None):
    """The fast method's cube that a residual network refines (None for a plain network)."""
    from .fast import estimate

    return estimate(deg, hr, lr, scene=scene) if model.residual else None


def _infer(model, inputs: FusionInputs, base):
    import torch

    dev = torch.device(inputs.device)
    t = lambda a: None if a is None else torch.as_tensor(  # noqa: E731
        np.ascontiguousarray(a), dtype=torch.float32, device=dev)[None]
    with torch.no_grad():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = model.to(dev)(t(inputs.hr), t(inputs.lr), t(base))[-1]
    return out[0].float().cpu().numpy()


def _finish(inputs, cube, consistency: bool, mu: float):
    """The consistency step; on a tile, only where the tile is kept (plus fast's halo): the
    network needed the wider window, the solve does not."""
    from .fast import project_consistent

    if consistency:
        scene = inputs.scene
        region = scene.solve_region if scene is not None else None
        if region is None:
            cube = project_consistent(inputs.degradation, inputs.hr, inputs.lr, cube, mu=mu,
                                      E=scene.consistency_E if scene is not None else None)
        else:
            part, index = inputs.crop(region), (slice(None), *region)
            cube = cube.copy()  # outside the region: the network's own cube, which no tile keeps
            cube[index] = project_consistent(part.degradation, part.hr, part.lr, cube[index], mu=mu,
                                             E=scene.consistency_E)
    return np.clip(cube, 0, None).astype(np.float32)


def _oom(method: str):
    return InputError(f"Out of GPU memory in method {method!r}; use device='cpu' or a smaller crop.")


def run_msfn(inputs: FusionInputs, weights: str = "auto", consistency: bool = True, mu: float = 1e-3):
    import torch

    from ..training import load_weights

    deg = inputs.degradation
    yield Progress(0, 3, message="loading weights")
    path = resolve_weights(str(weights), deg.scale)
    model, record = load_weights(path, device="cpu")
    _check_model(model, inputs, f"weights {path.name}")
    warnings = []
    diff = degradation_mismatch(deg, record)
    if diff:
        warnings.append(f"The MSFN weights were trained for another degradation ({'; '.join(diff)}): expect "
                        "lower quality. Use 'msfn-zeroshot' (trains on this pair) or train weights for your "
                        "camera with `hsisr train`.")
    yield Progress(1, 3, message="fast estimate + network")
    try:
        cube = _infer(model, inputs, _base(model, deg, inputs.hr, inputs.lr, inputs.scene))
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise _oom("msfn") from None
    yield Progress(2, 3, message="consistency step" if consistency else "done")
    cube = _finish(inputs, cube, bool(consistency), float(mu))
    yield Progress(3, 3, message="done")
    extras = {"warnings": warnings, "weights": {"file": path.name, "sha256": record["sha256"],
                                                 "degradation": record.get("degradation", {}).get("name")}}
    return cube, extras


def _zeroshot_pairs(inputs: FusionInputs):
    """(D y, D x, x) as float32 numpy: the observed pair degraded once more, and its target."""
    deg = inputs.degradation
    s = deg.scale
    y, x = inputs.lr.shape[-2:]
    if y < 2 * s or x < 2 * s or y % s or x % s:
        raise InputError(f"msfn-zeroshot degrades the LR-HS cube ({y}x{x}) once more by {s}: it needs LR sides "
                         f"that are multiples of {s} and at least {2 * s} (HR at least {2 * s * s}); crop to "
                         f"{y // s * s}x{x // s * s} LR pixels, or use 'fast' or 'unsupervised'.")
    hr_lr = deg.spatial(inputs.hr.astype(np.float64))
    lr_lr = deg.spatial(inputs.lr.astype(np.float64))
    return hr_lr.astype(np.float32), lr_lr.astype(np.float32), inputs.lr.astype(np.float32)


def _valid_augmentations(deg) -> list[int]:
    """Flip/rotation codes (see ``training._augment``) that commute with the spatial operator: the
    zero-shot pairs are degraded before they are augmented, which is only right when the kernel
    (and its placement around the block) is unchanged by the flip/rotation."""
    import torch

    from ..nets.augment import augment as _augment

    pb, pa = deg.pad
    if pb != pa:
        return [0]
    k = torch.as_tensor(deg.kernel)[None, None]  # a shift breaks symmetries
    return [c for c in range(8) if torch.allclose(_augment(k, c), k, atol=1e-12)]


def run_zeroshot(inputs: FusionInputs, steps: int = 150, patch: int = 0, batch: int = 4, lr_rate: float = 0.0,
                 width: int = 16, init: str = "shipped", consistency: bool = True, mu: float = 1e-3):
    import torch

    from ..nets.augment import augment as _augment
    from ..nets.msfn import MSFN
    from ..training import load_weights, multilevel_loss

    deg = inputs.degradation
    s = deg.scale
    steps, batch = int(steps), int(batch)
    hr_lr, lr_lr, target = _zeroshot_pairs(inputs)
    y, x = target.shape[-2:]
    patch = int(patch) or min(8 * s, y // s * s, x // s * s)
    if patch % s or patch < 2 * s or patch > min(y, x):
        raise InputError(f"patch must be a multiple of {s} between {2 * s} and {min(y, x) // s * s}, got {patch}.")
    total = steps + 2
    yield Progress(0, total, message="zero-shot pairs")
    dev = torch.device(inputs.device)
    torch.manual_seed(inputs.seed)
    C, k = inputs.lr.shape[0], inputs.hr.shape[0]
    start = None
    shipped = shipped_weights(s) if init == "shipped" else None
    if shipped is not None:
        model, record = load_weights(shipped)
        if model.config()["bands"] == C and model.config()["channels"] == k:
            start = record["file"]
    if start is None:
        model = MSFN(C, k, s, int(width))
    BS = _base(model, deg, hr_lr, lr_lr)  # fast on the degraded pair
    model = model.to(dev).train()
    # measured (x8, 4 CAVE scenes): fine-tuning the shipped weights at 1e-3 loses 2.9 dB, at 3e-5
    # 1.1 dB, against the weights alone; from scratch 1e-3 is the better rate
    lr_rate = float(lr_rate) or (3e-5 if start else 1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=lr_rate)
    gen = torch.Generator().manual_seed(int(inputs.seed))
    t = lambda a: torch.as_tensor(a, device=dev)  # noqa: E731
    HR, LR, TG = t(hr_lr), t(lr_lr), t(target)
    BS = None if BS is None else t(BS)
    n = patch // s
    codes = _valid_augmentations(deg)
    t_last, ema = time.perf_counter(), None
    try:
        for step in range(1, steps + 1):
            hs, ls, ts, bs = [], [], [], []
            for _ in range(batch):
                iy = int(torch.randint(y // s - n + 1, (1,), generator=gen))
                ix = int(torch.randint(x // s - n + 1, (1,), generator=gen))
                code = codes[int(torch.randint(len(codes), (1,), generator=gen))]
                fine, coarse = np.s_[:, iy * s:(iy + n) * s, ix * s:(ix + n) * s], np.s_[:, iy:iy + n, ix:ix + n]
                hs.append(_augment(HR[fine][None], code))
                ls.append(_augment(LR[coarse][None], code))
                ts.append(_augment(TG[fine][None], code))
                if BS is not None:
                    bs.append(_augment(BS[fine][None], code))
            preds = model(torch.cat(hs), torch.cat(ls), torch.cat(bs) if bs else None)
            loss = multilevel_loss(model, preds, torch.cat(ts))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            val = float(loss.detach())
            ema = val if ema is None else 0.9 * ema + 0.1 * val
            now = time.perf_counter()
            if step == 1 or step == steps or now - t_last >= YIELD_EVERY_S:
                t_last = now
                yield Progress(step, total, loss=ema, message=f"zero-shot training {step}/{steps}")
        yield Progress(steps + 1, total, loss=ema, message="network on the observed pair")
        model.eval()
        cube = _infer(model, inputs, _base(model, deg, inputs.hr, inputs.lr, inputs.scene))
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise _oom("msfn-zeroshot") from None
    cube = _finish(inputs, cube, bool(consistency), float(mu))
    yield Progress(total, total, message="done")
    return cube, {"warnings": [], "initial_weights": start or "random", "final_loss": ema, "lr_rate": lr_rate}


_COMMON = (
    Option("consistency", True, "end with the closed-form data-consistency step (fast's solve with the "
           "network's cube as prior)"),
    Option("mu", 1e-3, "weight of the network's cube in the consistency step", minimum=1e-6, maximum=1e3),
)

def scene_setup(req, scene):
    """Generator: what the tiles share (``MethodInfo.scene_setup``): the networks' pinned base's
    subspace (fast with :data:`~.fast.NETWORK_BASE_OPTIONS`), the consistency step's subspace, both
    of the whole LR cube, and the base's guided prior scale. Returns ``(scene, notes)``."""
    from dataclasses import replace

    from ..solvers.guided import default_radius
    from ..solvers.subspace import subspace
    from . import fast

    base = fast.NETWORK_BASE_OPTIONS
    full_lr, valid = req.full_lr()
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
    "Supervised multi-scale fusion network with shipped weights (x8, x32; Nikon D700, Gaussian PSF): seconds.",
    options=(Option("weights", "auto", "'auto' (shipped weights for the scale) or a path to exported weights"),
             *_COMMON),
    uses_torch=True, bytes_per_band=56, bytes_per_coefficient=48, scene_setup=scene_setup,
))

register(MethodInfo(
    "msfn-zeroshot", run_zeroshot,
    "MSFN trained on the observed pair itself (degraded once more); no external data.",
    options=(
        Option("steps", 150, "training steps", minimum=0, maximum=100000),
        Option("patch", 0, "training crop side on the LR grid, in pixels (0: min(8 s, image))", minimum=0,
               maximum=4096),
        Option("batch", 4, "crops per step", minimum=1, maximum=256),
        Option("lr_rate", 0.0, "Adam learning rate (0: 3e-5 when fine-tuning the shipped weights, else 1e-3)",
               minimum=1e-6, maximum=1.0, auto=0.0),
        Option("width", 16, "channels at full resolution when starting from scratch", minimum=4, maximum=128),
        Option("init", "shipped", "'shipped': fine-tune the shipped weights when they fit; 'random': from scratch",
               choices=("shipped", "random")),
        *_COMMON,
    ),
    uses_torch=True, bytes_per_band=64, bytes_per_coefficient=56,
    whole_frame_only="msfn-zeroshot learns from the whole pair and cannot run in tiles; use 'msfn' (shipped weights), "
                     "'fast' or 'unsupervised' for large scenes, or crop the pair.",
))
