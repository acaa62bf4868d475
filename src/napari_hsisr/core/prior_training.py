"""Training the learned prior (:mod:`.nets.prior`, the ``msfn`` weights) over many degradations.

One run is described by a JSON config (:class:`PriorConfig`, ``hsisr train --config``):

1. **Bank** (cached on disk, shared by every fold): for each reference scene, ``per_scene`` random
   degradations (:func:`random_degradation`: scale 4-32, Gaussian / anisotropic / box PSFs with
   sigma s/8..s/2, small shifts, a training camera or a mixture of two, LR SNR 20-50 dB and HR
   30-50 dB or none, 8-bit HR images), each simulated by the shared forward model and fused by
   ``fast`` (its defaults); the bank keeps the fast cube (float16). ``held_per_scene`` more use
   the held-out cameras: they only validate.
2. **Training**: random crops of (fast cube, reference) with flips and rotations; L1 error relative
   to the crop's level; Adam with a cosine schedule; a checkpoint and a JSON-lines log every
   ``eval_every`` steps, with validation on the held-out scenes (a fold) and on the held-out cameras.
3. **Export**: float16 weights plus their record (scenes seen, config, code version, history).

``synthetic``: that many procedural scenes (:mod:`.synthetic`: random smooth spectra in random
layouts, no measured data) join every fold's training and draw ``synthetic_fraction`` of its
crops; trained on CAVE alone the prior lowered every scene unlike CAVE it was tried on.
``init``: weights to start from (``hsisr train --config ... --init W``: a fine-tune; the record
names them). The shipped weights are ``configs/msfn_prior.json`` then
``configs/msfn_prior_finetune.json`` started from its result.

``camera_per_scene``: that many more items per scene (measured and procedural) whose HR image
is what a random camera writes (:func:`.camera.random_pipeline`, the renderer of the camera stress
suite: response, white balance, tone curve, 8 bits, JPEG, Bayer mosaic, noise, vignetting, a
sub-pixel offset), fused as a user fuses a camera image: response and encoding estimated.
``fold``: None trains on every scene (the shipped weights); ``k`` holds out the scenes
``sorted(scenes)[k::folds]`` (k-fold cross-validation; report quality only on held-out scenes).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .errors import InputError

WAVELENGTHS = np.arange(400, 701, 10)
HELD_OUT_CAMERAS = ("Nokia N900", "Olympus E-PL2", "Pentax Q", "Point Grey Grasshopper2 14S5C")
CAMERA_INDEX = 100  # camera items are numbered from here: (scene, index) names one item of any kind
SYNTHETIC_PREFIX = "synthetic-"  # scene names of procedural scenes: synthetic-007 is synthetic_scene(7)
# the fast method's own defaults: the network refines exactly what a user's `fast` run returns
BASE_OPTIONS = {"rank": 0, "eps": 0.0, "mu": 0.0, "band_weights": True, "prior": "auto"}


@dataclass
class PriorConfig:
    data: str = "../shared/data/cave/complete_ms_data"
    scenes: list = field(default_factory=list)  # empty: every scene folder in `data`
    bank: str = "prior_bank"
    out: str = "msfn_prior.pt"
    fold: int | None = None
    folds: int = 4
    per_scene: int = 10
    held_per_scene: int = 2
    camera_per_scene: int = 0  # more per scene whose HR image a random camera wrote (tone curve, 8 bits, JPEG...)
    scales: tuple = (4, 8, 16, 32)
    held_out_cameras: tuple = HELD_OUT_CAMERAS
    width: int = 24
    steps: int = 6000
    batch: int = 8
    patch: int = 64
    lr_rate: float = 1e-3
    seed: int = 0
    eval_every: int = 500
    eval_items: int = 6  # per validation set (held-out scenes, held-out cameras), spread over the scenes
    threads: int = 2
    workers: int = 2  # bank building: processes of a dask LocalCluster
    synthetic: int = 0  # procedural scenes (:mod:`.synthetic`) added to every fold's training
    synthetic_fraction: float = 0.3  # share of training crops drawn from them
    init: str = ""  # weights to start from (a fine-tune), else a zero-initialised head

    @classmethod
    def load(cls, path) -> PriorConfig:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"training config {path} cannot be read as JSON ({exc}).") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"training config {path}: unknown keys {unknown}; known: {sorted(known)}.")
        cfg = cls(**raw)
        base = Path(path).resolve().parent  # relative paths are relative to the config file
        for name in ("data", "bank", "out", "init"):
            if name == "init" and not cfg.init:
                continue
            p = Path(getattr(cfg, name)).expanduser()
            setattr(cfg, name, str(p if p.is_absolute() else base / p))
        cfg.scales, cfg.held_out_cameras = tuple(cfg.scales), tuple(cfg.held_out_cameras)
        return cfg

    def as_dict(self) -> dict:
        return asdict(self)

    def scene_names(self) -> list[str]:
        if self.scenes:
            return sorted(self.scenes)
        folder = Path(self.data)
        if not folder.is_dir():
            raise InputError(f"training data folder {folder} not found; set 'data' in the config.")
        return sorted(p.name[:-3] for p in folder.iterdir() if p.is_dir() and p.name.endswith("_ms"))

    def synthetic_names(self) -> list[str]:
        return [f"{SYNTHETIC_PREFIX}{i:03d}" for i in range(int(self.synthetic))]

    def split(self) -> tuple[list[str], list[str]]:
        """(training scenes, held-out scenes) of this run (measured scenes only: the synthetic
        ones train every fold)."""
        names = self.scene_names()
        if self.fold is None:
            return names, []
        if not 0 <= self.fold < self.folds:
            raise InputError(f"fold must be in 0..{self.folds - 1}, got {self.fold}.")
        held = names[self.fold::self.folds]
        return [n for n in names if n not in held], held


def training_cameras(held_out=HELD_OUT_CAMERAS) -> list[str]:
    from .srf import CIE_1931, NIKON_D700_CAVE, list_presets

    return [n for n in list_presets() if n not in (CIE_1931, NIKON_D700_CAVE, *held_out)]


def _response(rng, cameras) -> tuple[np.ndarray | str, str]:
    from .degradation import Degradation

    first = cameras[int(rng.integers(len(cameras)))]
    if rng.random() >= 0.3 or len(cameras) < 2:
        return first, first
    second = cameras[int(rng.integers(len(cameras)))]
    a = float(rng.uniform(0.2, 0.8))
    m = [Degradation(scale=2, srf=c, wavelengths=WAVELENGTHS).srf for c in (first, second)]
    mix = a * m[0] + (1 - a) * m[1]
    return mix / mix.sum(0, keepdims=True), f"{a:.2f} {first} + {1 - a:.2f} {second}"


def random_degradation(rng: np.random.Generator, cameras: list[str], scales=(4, 8, 16, 32)) -> tuple:
    """``(Degradation, description dict)`` drawn for training."""
    from .degradation import Degradation

    s = int(scales[int(rng.integers(len(scales)))])
    kind = str(rng.choice(["gaussian", "anisotropic", "box"], p=[0.45, 0.4, 0.15]))
    psf = {"psf": "box"} if kind == "box" else {"psf": "gaussian", "psf_sigma": float(rng.uniform(s / 8, s / 2))}
    if kind == "anisotropic":
        psf.update(psf_sigma2=psf["psf_sigma"] * float(rng.uniform(0.4, 0.9)), psf_angle=float(rng.uniform(0, 180)))
    shift = tuple(float(v) for v in rng.uniform(-s / 4, s / 4, 2)) if rng.random() < 0.25 else (0.0, 0.0)
    srf, camera = _response(rng, cameras)
    deg = Degradation(scale=s, srf=srf, wavelengths=WAVELENGTHS, shift=shift, **psf)
    noisy = rng.random() >= 0.3
    desc = {"scale": s, "psf": kind, **{k: v for k, v in psf.items() if k != "psf"}, "shift": list(shift),
            "camera": camera, "lr_snr_db": float(rng.uniform(20, 50)) if noisy else None,
            "hr_snr_db": float(rng.uniform(30, 50)) if noisy else None, "hr_8bit": bool(rng.random() < 0.3)}
    return deg, desc


def read_reference(data: str, scene: str) -> np.ndarray:
    from .io import read_cube

    if scene.startswith(SYNTHETIC_PREFIX):
        from .synthetic import synthetic_scene

        return synthetic_scene(int(scene[len(SYNTHETIC_PREFIX):]))
    return np.ascontiguousarray(read_cube(Path(data) / f"{scene}_ms").data, dtype=np.float32)


def _item_kind(camera: bool, held: bool) -> str:
    """The item's file name part: what made its HR image, and whether its camera is held out."""
    return "cam" if camera else ("held" if held else "train")


def bank_item(data: str, bank: str, scene: str, index: int, held: bool, seed: int, cameras: list[str],
              scales, camera: bool = False) -> dict:
    """Simulate one random degradation of ``scene``, fuse it with ``fast``, keep the cube (float16).
    ``camera``: the HR image is what a random camera writes (see the module docstring). Deterministic
    for (seed, scene, index, held, camera). Returns the item's description."""
    import zlib

    path = Path(bank) / f"{scene}_{_item_kind(camera, held)}{index:02d}"
    if path.with_suffix(".json").exists() and path.with_suffix(".npy").exists():
        return json.loads(path.with_suffix(".json").read_text())
    rng = np.random.default_rng([seed, zlib.crc32(scene.encode()), index, int(held)] + ([2] if camera else []))
    deg, desc = random_degradation(rng, cameras, scales)
    ref = read_reference(data, scene)
    if camera:
        base = _camera_base(ref, deg, desc, rng, cameras)
    else:
        base = _simulated_base(ref, deg, desc, rng)
    from .metrics import psnr

    desc.update(scene=scene, index=index, held_camera=held,
                base_psnr=float(psnr(np.clip(base, 0, None), ref, peak=1.0)))
    from .io import atomic_path

    with atomic_path(path.with_suffix(".npy")) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, base.astype(np.float16))
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(desc))
    return desc


def _simulated_base(ref, deg, desc: dict, rng) -> np.ndarray:
    """``fast``'s cube from the pair the forward model makes, told the true degradation."""
    from .methods.fast import estimate
    from .parallel import one_blas_thread
    from .simulate import simulate

    rgb, lr = simulate(ref, deg, noise_snr_db=desc["lr_snr_db"], hr_snr_db=desc["hr_snr_db"],
                       seed=int(rng.integers(2 ** 31)))
    hr = np.moveaxis(rgb, -1, 0)
    if desc["hr_8bit"]:
        hr = np.round(np.clip(hr / max(float(hr.max()), 1e-6), 0, 1) * 255) / 255 * float(hr.max())
    with one_blas_thread():
        return estimate(deg, np.ascontiguousarray(hr, dtype=np.float32), lr, **BASE_OPTIONS)


def _camera_base(ref, deg, desc: dict, rng, cameras: list[str]) -> np.ndarray:
    """``fast``'s cube from a camera's image (uint8) and the simulated LR cube, told what a user with
    a camera image knows: the PSF and scale, not the response nor the encoding (estimated)."""
    from dataclasses import asdict

    from .api import fuse
    from .camera import random_pipeline, render
    from .simulate import simulate

    pipeline = random_pipeline(rng, responses=cameras)
    image = render(ref, WAVELENGTHS, pipeline, seed=int(rng.integers(2 ** 31)))
    _, lr = simulate(ref, deg, noise_snr_db=desc["lr_snr_db"], hr_snr_db=None, seed=int(rng.integers(2 ** 31)))
    lr = np.clip(lr, 0, None)  # what a sensor reads at 20 dB on a dark scene; the engine refuses -10 % of the peak
    told = deg.with_(srf=None, hr_encoding="auto")
    base = fuse(image, lr, told, method="fast", safe=False, **BASE_OPTIONS).cube
    desc.update(camera_pipeline={k: v for k, v in asdict(pipeline).items() if k != "name"}, hr_8bit=True,
                camera=pipeline.response, hr_snr_db=None)
    return np.asarray(base)


def build_bank(cfg: PriorConfig, scenes: list[str], synthetic: list[str] = ()):
    """Generator: fills ``cfg.bank`` for ``scenes`` (cached items are kept), on a dask LocalCluster of
    ``cfg.workers`` processes (one: in this process); yields ``(done, total)``; returns the item
    descriptions."""
    from distributed import as_completed

    from .parallel import dask_client

    Path(cfg.bank).mkdir(parents=True, exist_ok=True)
    train_cams, held_cams = training_cameras(cfg.held_out_cameras), list(cfg.held_out_cameras)
    jobs = [(s, i, False, False) for s in [*scenes, *synthetic] for i in range(cfg.per_scene)]
    jobs += [(s, i, True, False) for s in scenes for i in range(cfg.held_per_scene)]
    jobs += [(s, CAMERA_INDEX + i, False, True) for s in [*scenes, *synthetic] for i in range(cfg.camera_per_scene)]
    items = []
    if cfg.workers <= 1:  # in this process: no cluster to start
        for n, (s, i, h, c) in enumerate(jobs, 1):
            items.append(bank_item(cfg.data, cfg.bank, s, i, h, cfg.seed, held_cams if h else train_cams, cfg.scales,
                                   c))
            yield n, len(jobs)
        return sorted(items, key=lambda d: (d["scene"], d["held_camera"], d["index"]))
    with dask_client(workers=cfg.workers) as client:
        futures = [client.submit(bank_item, cfg.data, cfg.bank, s, i, h, cfg.seed, held_cams if h else train_cams,
                                 cfg.scales, c, pure=False) for s, i, h, c in jobs]
        for n, fut in enumerate(as_completed(futures), 1):
            items.append(fut.result())
            yield n, len(jobs)
    return sorted(items, key=lambda d: (d["scene"], d["held_camera"], d["index"]))


def _load_item(bank: str, desc: dict) -> np.ndarray:
    kind = _item_kind(bool(desc.get("camera_pipeline")), desc["held_camera"])
    name = f"{desc['scene']}_{kind}{desc['index']:02d}.npy"
    return np.load(Path(bank) / name, mmap_mode="r")


def evaluate_items(model, refs: dict, items: list[dict], bank: str) -> dict:
    """Mean PSNR of the fast cube and of the network's (raw, no consistency step) over ``items``."""
    import torch

    from .metrics import psnr

    base_db, net_db = [], []
    model.eval()
    with torch.no_grad():
        for desc in items:
            base = np.asarray(_load_item(bank, desc), dtype=np.float32)
            out = model(torch.from_numpy(base)[None], desc["scale"])[0].clamp_min(0).numpy()
            ref = refs[desc["scene"]]
            base_db.append(float(psnr(np.clip(base, 0, None), ref, peak=1.0)))
            net_db.append(float(psnr(out, ref, peak=1.0)))
    model.train()
    if not base_db:
        return {}
    return {"fast_psnr": float(np.mean(base_db)), "net_psnr": float(np.mean(net_db)),
            "gain_db": float(np.mean(net_db) - np.mean(base_db)),
            "worst_gain_db": float(np.min(np.subtract(net_db, base_db))),
            "items": len(base_db)}


def _run_id(cfg: PriorConfig) -> str:
    """What a checkpoint must have been made with to be resumed (not threads, workers or paths)."""
    keep = {k: v for k, v in cfg.as_dict().items() if k not in ("threads", "workers", "data", "bank", "out")}
    return json.dumps(keep, sort_keys=True, default=list)


def code_version() -> str:
    """The package version and, in a git checkout, the commit (with ``+dirty`` for local changes)."""
    import subprocess

    from .. import __version__

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty=+dirty"], cwd=here, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__} ({commit})" if commit else __version__


def _spread(items: list[dict], n: int) -> list[dict]:
    """``n`` items spread over the list (every scene, not the first few)."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _initial_weights(cfg: PriorConfig, model) -> dict | None:
    """Load ``cfg.init`` into ``model`` (a fine-tune); returns what the record says of it."""
    if not cfg.init:
        return None
    from .training import load_weights

    try:
        start, record = load_weights(Path(cfg.init), device="cpu")
    except InputError as exc:
        raise InputError(f"init (the weights to start from): {exc}") from None
    if record.get("kind") != "spectral_prior" or start.config() != model.config():
        raise InputError(f"init weights {cfg.init} are not a learned prior of width {cfg.width}; give weights "
                         "made by `hsisr train --config` with the same width, or no init.")
    model.load_state_dict(start.state_dict())
    return {"file": Path(cfg.init).name, "sha256": record.get("sha256"), "code_version": record.get("code_version")}


def train_prior(cfg: PriorConfig, log=print):
    """Generator: builds the bank, trains, exports; yields progress dicts; returns the record.
    Torch's thread count is the config's while it runs and the caller's again after."""
    import torch

    threads = torch.get_num_threads()
    try:
        return (yield from _train(cfg, log))
    finally:
        torch.set_num_threads(threads)


def _train(cfg: PriorConfig, log):
    import torch

    from .nets.augment import augment
    from .nets.prior import SpectralPrior
    from .training import atomic_torch_save, export_weights

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(int(cfg.threads))
    version = code_version()  # of the code that trains, not of a checkout changed meanwhile
    train_scenes, held_scenes = cfg.split()
    t0 = time.perf_counter()
    synthetic = cfg.synthetic_names()
    items = yield from build_bank(cfg, train_scenes + held_scenes, synthetic)
    bank_s = time.perf_counter() - t0
    refs = {s: read_reference(cfg.data, s) for s in train_scenes + held_scenes + synthetic}
    measured = [d for d in items if d["scene"] in train_scenes and not d["held_camera"]]
    procedural = [d for d in items if d["scene"] in synthetic]
    train_items = measured + procedural
    val_scene = _spread([d for d in items if d["scene"] in held_scenes and not d["held_camera"]], cfg.eval_items)
    val_camera = _spread([d for d in items if d["held_camera"]], cfg.eval_items)
    bases = {(d["scene"], d["index"]): _load_item(cfg.bank, d) for d in train_items}
    model = SpectralPrior(len(WAVELENGTHS), cfg.width)
    init = _initial_weights(cfg, model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i, cfg.steps) / cfg.steps)))
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    ckpt, log_path = out.with_suffix(".ckpt"), out.with_suffix(".log.jsonl")
    history, step0 = [], 0
    if ckpt.exists():
        from .training import load_tensors

        state = load_tensors(ckpt, "checkpoint", "delete it to start again")
        if state.get("run") != _run_id(cfg):
            raise InputError(f"checkpoint {ckpt} was made with another config (or another fold); resume with the "
                             "same one, or delete the checkpoint to start again.")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = json.loads(state["rng"])
        history, step0 = json.loads(state["history"]), int(state["step"])
    P, B = cfg.patch, cfg.batch
    running, t_last = [], time.perf_counter()
    for step in range(step0 + 1, cfg.steps + 1):
        xs, ts, scales = [], [], []
        for _ in range(B):
            pool = procedural if procedural and rng.random() < cfg.synthetic_fraction else measured
            d = pool[int(rng.integers(len(pool)))]
            base, ref = bases[(d["scene"], d["index"])], refs[d["scene"]]
            iy, ix = (int(rng.integers(n - P + 1)) for n in ref.shape[1:])
            code = int(rng.integers(8))
            crop = np.asarray(base[:, iy:iy + P, ix:ix + P], dtype=np.float32)
            xs.append(augment(torch.from_numpy(crop)[None], code))
            ts.append(augment(torch.from_numpy(ref[:, iy:iy + P, ix:ix + P])[None], code))
            scales.append(d["scale"])
        # one scale per forward pass is the network's input; batches mix scales, so run per scale
        loss = 0.0
        for s in sorted(set(scales)):
            idx = [i for i, v in enumerate(scales) if v == s]
            x, t = torch.cat([xs[i] for i in idx]), torch.cat([ts[i] for i in idx])
            level = x.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
            loss = loss + torch.abs(model(x, s) - t).div(level).mean() * len(idx) / B
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            entry = {"step": step, "train_loss": float(np.mean(running)), "seconds": time.perf_counter() - t_last,
                     "held_out_scenes": evaluate_items(model, refs, val_scene, cfg.bank),
                     "held_out_cameras": evaluate_items(model, refs, val_camera, cfg.bank)}
            running, t_last = [], time.perf_counter()
            history.append(entry)
            with open(log_path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")
            atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "rng": json.dumps(rng.bit_generator.state),
                                "history": json.dumps(history), "step": step, "run": _run_id(cfg)}, ckpt)
            log(json.dumps(entry))
        yield {"step": step, "total": cfg.steps, "loss": running[-1] if running else None}
    record = {"kind": "spectral_prior", "wavelengths": WAVELENGTHS.tolist(), "trained_scenes": train_scenes,
              "held_out_scenes": held_scenes, "held_out_cameras": list(cfg.held_out_cameras),
              "synthetic_scenes": len(synthetic), "init": init,
              "config": cfg.as_dict(), "code_version": version, "base_options": BASE_OPTIONS,
              "bank_seconds": round(bank_s, 1), "history": history}
    model.eval()
    return export_weights(model, out, record)
